"""
Benchmark streaming prepare (data/prepare.py --hf_dataset) against tiktoken's own batch encoding.

    python scripts/bench_prepare.py ../shared/corpora/shakespeare --sizes_mb=100,200,400 --num_proc=2

For each size it writes a folder of parquet files of that much text (the source's files cut into
documents of about 4 kB, repeated; row groups of 1,000 documents), then measures on the same documents and threads:
  - tiktoken, text already in memory, the encode calls alone: encode_ordinary_batch(documents,
    num_threads), its own batch encoding, and encode_to_numpy on as many threads, the encoder
    without Python lists of ints (what prepare calls): the rate a pipeline cannot beat;
  - ours: `python data/prepare.py --hf_dataset=<folder>` in a fresh process, its tokens/s over the
    time it reports (reading parquet, encoding, writing shards; not the interpreter's start-up), its
    wall time with start-up, and its peak RSS (the kernel's, from wait4).
It prints a markdown table. Needs pyarrow (a dependency of datasets) and the GPT-2 BPE files
(TIKTOKEN_CACHE_DIR offline).
"""

import functools
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from core.configurator import load_options  # noqa: E402
from core.entry import RunFailed, UserError, run_main  # noqa: E402
from data.tokenizer import get_tokenizer  # noqa: E402

DOC_CHARS = 4000  # FineWeb-Edu's documents are a few kB each
USAGE = "python scripts/bench_prepare.py SOURCE_DIR [--key=value ...]"
FILE_MB = 50  # parquet files of about this much text, as FineWeb's are a few hundred MB
ROW_GROUP = 1000  # documents per parquet row group (4 MB): what a reader holds at a time


@dataclass
class BenchOptions:
    sizes_mb: tuple[str, ...] = ("100", "200", "400")  # corpus sizes to measure, in MB of text
    num_proc: int = 2  # threads, for both
    tokenizer: str = "gpt2"
    work_dir: str = "/tmp/bench_prepare"  # where the parquet corpora and the shards go (removed after)


def documents_of(source: Path) -> list[str]:
    """The source folder's text files cut into documents of about DOC_CHARS characters at line ends."""
    docs = []
    for path in sorted(source.rglob("*.txt")):
        text = path.read_text(encoding="utf-8")
        start = 0
        while start < len(text):
            end = text.find("\n", start + DOC_CHARS)
            end = len(text) if end == -1 else end + 1
            docs.append(text[start:end])
            start = end
    return docs


def write_corpus(folder: Path, docs: list[str], megabytes: int) -> int:
    """Parquet files in `folder` holding `megabytes` MB of text, the documents repeated in order; returns the document count."""
    folder.mkdir(parents=True, exist_ok=True)
    target, written, count, part, batch, size = megabytes * 1e6, 0, 0, 0, [], 0
    while written < target:
        for doc in docs:
            batch.append(doc)
            size += len(doc.encode())
            if size >= FILE_MB * 1e6 or written + size >= target:
                pq.write_table(pa.table({"text": batch}), folder / f"part-{part:05d}.parquet", row_group_size=ROW_GROUP)
                written, count, part, batch, size = written + size, count + len(batch), part + 1, [], 0
                if written >= target:
                    break
    return count


def tiktoken_rates(folder: Path, tokenizer: str, threads: int) -> tuple[float, float, int]:
    """tiktoken on the folder's documents, text already in memory, timing the encode calls alone:
    (tokens/s of encode_ordinary_batch, which returns lists of ints; tokens/s of encode_to_numpy
    on `threads` threads, the encoder with no Python ints; tokens), one end-of-text id per document."""
    encoding = get_tokenizer(tokenizer).encoding
    tokens, batch_seconds, numpy_seconds = 0, 0.0, 0.0
    with ThreadPoolExecutor(threads) as pool:
        for path in sorted(folder.glob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000, columns=["text"]):
                texts = batch.column("text").to_pylist()
                started = time.perf_counter()
                encoded = encoding.encode_ordinary_batch(texts, num_threads=threads)
                batch_seconds += time.perf_counter() - started
                started = time.perf_counter()
                list(pool.map(functools.partial(encoding.encode_to_numpy, disallowed_special=()), texts))
                numpy_seconds += time.perf_counter() - started
                tokens += sum(map(len, encoded)) + len(texts)
    return tokens / batch_seconds, tokens / numpy_seconds, tokens


def ours(folder: Path, out: Path, options: BenchOptions) -> dict:
    """Run data/prepare.py on the folder: its reported time, wall time, tokens and peak RSS.

    The peak is the child's VmHWM, read while it runs: wait4's ru_maxrss would count the pages of
    this process that the child shares between fork and exec.
    """
    argv = [sys.executable, "data/prepare.py", f"--hf_dataset={folder}", f"--out_dir={out}", f"--tokenizer={options.tokenizer}"]
    argv += [f"--num_proc={options.num_proc}", "--val_tokens=1000000", "--overwrite=True"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(out.parent / "hf_cache")}
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_kb = 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - started
    err = process.stderr.read()
    if process.returncode != 0:
        raise RunFailed(f"prepare failed: {err.strip().splitlines()[-1]}")
    match = re.search(r"wrote .*: ([\d,]+) train \+ ([\d,]+) val tokens .* in ([\d.]+)s", err)
    tokens = int(match[1].replace(",", "")) + int(match[2].replace(",", ""))
    return {"tokens": tokens, "seconds": float(match[3]), "wall": wall, "rss_mb": peak_kb / 1024}


def _high_water_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def bench(argv: list[str]) -> None:
    """Measure every size and print the table's rows as they come."""
    options, inputs = load_options(BenchOptions, argv, "scripts/bench_prepare.py", USAGE, description=__doc__.strip().splitlines()[0])
    if len(inputs) != 1:
        raise UserError("give one source folder of .txt files")
    docs = documents_of(Path(inputs[0]))
    work = Path(options.work_dir)
    print(
        "| text | documents | tiktoken batch tokens/s | tiktoken to numpy tokens/s | ours tokens/s | ours / batch | ours / numpy "
        "| ours wall (start-up included) | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for megabytes in map(int, options.sizes_mb):
        folder = work / f"corpus_{megabytes}mb"
        count = write_corpus(folder, docs, megabytes)
        batch_rate, numpy_rate, reference_tokens = tiktoken_rates(folder, options.tokenizer, options.num_proc)
        result = ours(folder, work / "out", options)
        if result["tokens"] != reference_tokens:
            raise RunFailed(f"token counts differ: prepare {result['tokens']}, tiktoken {reference_tokens}")
        rate = result["tokens"] / result["seconds"]
        print(
            f"| {megabytes} MB | {count:,} | {batch_rate / 1e6:.2f}M | {numpy_rate / 1e6:.2f}M | {rate / 1e6:.2f}M "
            f"| {rate / batch_rate:.2f} | {rate / numpy_rate:.2f} "
            f"| {result['wall']:.1f} s | {result['rss_mb']:.0f} MB |",
            flush=True,
        )
        shutil.rmtree(folder)
        shutil.rmtree(work / "out")


if __name__ == "__main__":
    sys.exit(run_main("scripts/bench_prepare.py", lambda: bench(sys.argv[1:])))
