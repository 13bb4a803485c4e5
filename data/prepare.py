"""Turn a text corpus into token files: train.bin, val.bin and meta.json.

    python data/prepare.py --input PATH [PATH ...] --out-dir DIR [--tokenizer gpt2] [--val-fraction 0.1]
    python data/prepare.py --hf-dataset NAME [--hf-config C] [--hf-split S] [--text-column text] --out-dir DIR
    python data/prepare.py shakespeare | pystdlib | quickstart     (named presets)

Output format. Documents are tokenized in corpus order and each one is followed by
the end-of-text id, giving one token stream. The validation split is the last
ceil(val_fraction * total) tokens of that stream (a contiguous tail, so it works for
a single document too and is the same for the same input); train.bin holds the rest.
Token ids are stored flat as uint16 when the vocabulary fits, else uint32. meta.json
records the tokenizer, vocab size, dtype, end-of-text id, token counts, the largest
token id in either file (max_token_id: data/dataset.py checks it against the vocab
size instead of reading every token), document count and source description (and,
for `char`, the vocabulary).

Safety. Files are written as *.tmp and renamed only when complete; meta.json,
written last, is what marks a folder as a finished dataset. An out-dir holding a
dataset from another source or tokenizer is refused unless --overwrite; the same
dataset is simply rebuilt (the result is byte-identical). Ctrl-C or SIGTERM stops
the workers, removes the temporary files and exits with 128 + the signal number.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python data/prepare.py`: import `data` from the repo root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)


def _exit_at_once(signum, frame):
    print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    # A signal while the modules below load has nothing to clean up: one line, no traceback.
    # main() puts a handler in place that stops the workers and removes temporary files.
    signal.signal(signal.SIGINT, _exit_at_once)
    signal.signal(signal.SIGTERM, _exit_at_once)

import argparse
import contextlib
import glob
import json
import math
import multiprocessing
import multiprocessing.pool
import os
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from configurator import OneLineArgumentParser
from data.tokenizer import (DataError, Tokenizer, available_tokenizers, char_tokenizer, first_line,
                            get_tokenizer)

DATA_DIR = Path(__file__).resolve().parent
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nanogpt-data"

READ_CHARS = 1 << 20  # characters read from a file at a time
# A long document is cut into pieces of about PIECE_CHARS so that memory stays
# bounded and one big file still spreads over the workers (see _safe_cut).
PIECE_CHARS = 1 << 20
MAX_PIECE_CHARS = 8 * PIECE_CHARS
BATCH_CHARS = 1 << 20  # text sent to a worker per task
COPY_BYTES = 16 << 20
BINARY_SNIFF_BYTES = 8192
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# ---------------------------------------------------------------- corpora


class Corpus:
    """A re-readable stream of documents; each document is an iterable of text blocks.

    `description` identifies the source in meta.json; `size_bytes`, when known,
    sizes the progress bar.
    """

    description: str = ""
    size_bytes: int | None = None

    def documents(self) -> Iterator[Iterable[str]]:
        raise NotImplementedError


class TextCorpus(Corpus):
    """Documents given as strings (tests, small in-memory corpora)."""

    def __init__(self, texts: Iterable[str], description: str = "in-memory texts"):
        self.texts = list(texts)
        self.description = description

    def documents(self) -> Iterator[Iterable[str]]:
        for text in self.texts:
            yield [text]


class FileCorpus(Corpus):
    """Text files, one file = one document, read as UTF-8 in blocks."""

    def __init__(self, files: list[Path], description: str, encoding_errors: str = "strict"):
        self.files = files
        self.description = description
        self.encoding_errors = encoding_errors
        self.size_bytes = sum(f.stat().st_size for f in files)

    def documents(self) -> Iterator[Iterable[str]]:
        for path in self.files:
            yield _read_blocks(path, self.encoding_errors)


class HFCorpus(Corpus):
    """One column of a Hugging Face dataset, one row = one document."""

    def __init__(self, name: str, config: str | None = None, split: str = "train",
                 text_column: str = "text", data_files: list[str] | None = None,
                 cache_dir: str | None = None):
        try:
            import datasets

            self.dataset = datasets.load_dataset(
                name, config, split=split, data_files=data_files, cache_dir=cache_dir
            )
        except Exception as e:  # hub, network and loader errors come in many types
            raise DataError(f"could not load Hugging Face dataset {name!r}: {first_line(e)}") from None
        if text_column not in self.dataset.column_names:
            raise DataError(
                f"dataset {name!r} has no column {text_column!r}; its columns are "
                f"{', '.join(self.dataset.column_names)} (choose one with --text-column)"
            )
        self.text_column = text_column
        parts = [name, config, f"split={split}", data_files and f"files={','.join(data_files)}"]
        self.description = "hf: " + " ".join(p for p in parts if p) + f" column={text_column}"

    def documents(self) -> Iterator[Iterable[str]]:
        rows = self.dataset.select_columns([self.text_column])
        for batch in rows.iter(batch_size=1000):
            for text in batch[self.text_column]:
                if text is None:
                    continue
                if not isinstance(text, str):
                    raise DataError(f"column {self.text_column!r} holds {type(text).__name__}, not text")
                yield [text]


def _read_blocks(path: Path, encoding_errors: str) -> Iterator[str]:
    try:
        # utf-8-sig drops a byte-order mark; newline="" keeps line endings as they are
        with open(path, encoding="utf-8-sig", errors=encoding_errors, newline="") as f:
            while block := f.read(READ_CHARS):
                yield block
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; fix it or pass --encoding-errors replace") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\x00" in f.read(BINARY_SNIFF_BYTES)


def _text_files_below(folder: Path, suffix: str = "", skip_dirs: frozenset = frozenset()) -> list[Path]:
    """Text files below `folder`, sorted by path; hidden entries and binary files skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip_dirs]
        for name in files:
            path = Path(root, name)
            if not name.startswith(".") and name.endswith(suffix) and path.is_file() and not _looks_binary(path):
                found.append(path)
    return sorted(found)


def find_text_files(inputs: list[str]) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, duplicate-free file list.

    A named file must be text; inside folders and glob matches, binary files are skipped.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _text_files_below(path)
            if not found:
                raise DataError(f"no text files in folder {item}")
        elif path.is_file():
            if _looks_binary(path):
                raise DataError(f"{item} is not a text file (it contains NUL bytes)")
            found = [path]
        elif _is_pattern(item):
            found = []
            for match in map(Path, sorted(glob.glob(item, recursive=True))):
                if match.is_dir():
                    found += _text_files_below(match)
                elif not _looks_binary(match):
                    found.append(match)
            if not found:
                raise DataError(f"no text files match {item!r}")
        else:
            raise DataError(f"input not found: {item}")
        files.extend(found)
    return list(dict.fromkeys(files))


def _is_pattern(item: str) -> bool:
    return any(c in item for c in "*?[")


def _cap_size(files: list[Path], max_mb: float | None) -> list[Path]:
    """The leading files whose sizes add up to at most max_mb (always at least one)."""
    if max_mb is None:
        return files
    budget, kept = max_mb * 1e6, []
    for f in files:
        budget -= f.stat().st_size
        if budget < 0 and kept:
            break
        kept.append(f)
    return kept


def file_corpus(inputs: list[str], encoding_errors: str = "strict", max_mb: float | None = None) -> FileCorpus:
    """A corpus from local files, folders and globs (see `find_text_files`)."""
    files = _cap_size(find_text_files(inputs), max_mb)
    described = ", ".join(os.path.abspath(i) for i in inputs)
    cap = f" (first {max_mb:g} MB)" if max_mb is not None else ""
    return FileCorpus(files, f"files: {described}{cap}", encoding_errors)


# ---------------------------------------------------------------- presets


def shakespeare_corpus(args, say) -> Corpus:
    """The 1.1 MB tiny-Shakespeare text, downloaded once and cached."""
    path = CACHE_DIR / "tinyshakespeare.txt"
    if not path.exists():
        say(f"downloading tiny Shakespeare from {SHAKESPEARE_URL}")
        _download(SHAKESPEARE_URL, path)
    return FileCorpus([path], f"preset shakespeare: tiny Shakespeare ({SHAKESPEARE_URL})", args.encoding_errors)


def pystdlib_corpus(args, say) -> Corpus:
    """The .py sources of this Python's standard library: present on every machine."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
    files = _cap_size(_text_files_below(stdlib, ".py", skip), args.max_mb)
    if not files:
        raise DataError(f"no Python sources found in {stdlib}; use --input PATH")
    version = ".".join(map(str, sys.version_info[:2]))
    cap = f", first {args.max_mb:g} MB" if args.max_mb is not None else ""
    return FileCorpus(files, f"preset pystdlib: Python {version} standard library sources in {stdlib}{cap}",
                      args.encoding_errors)


def quickstart_corpus(args, say) -> Corpus:
    """Tiny Shakespeare when it can be downloaded, otherwise the Python standard library."""
    try:
        return shakespeare_corpus(args, say)
    except DataError as e:
        say(f"note: {e}")
        say("note: using the Python standard library sources instead (always available offline)")
        return pystdlib_corpus(args, say)


PRESETS = {"shakespeare": shakespeare_corpus, "pystdlib": pystdlib_corpus, "quickstart": quickstart_corpus}


def _download(url: str, path: Path, timeout: float = 15) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(COPY_BYTES):
                out.write(chunk)
        os.replace(tmp, path)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"could not download {url} ({reason}); pass a local copy with --input PATH, "
            f"or use the offline preset 'pystdlib'"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- tokenizing


def _safe_cut(text: str, end: int) -> int:
    """Position just after the last newline before `end` that sits between two
    non-space characters; 0 if there is none.

    tiktoken's split patterns always end a pre-token at such a newline, so
    encoding the two halves separately gives exactly the tokens of the whole.
    """
    limit = min(end, len(text) - 1)
    while (i := text.rfind("\n", 1, limit)) != -1:
        if not text[i - 1].isspace() and not text[i + 1].isspace():
            return i + 1
        limit = i
    return 0


def _document_pieces(blocks: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Cut one document into (piece, is_last) pairs of bounded size.

    Only a line with no safe cut in MAX_PIECE_CHARS (e.g. minified text) is cut
    blindly, which may change the tokens at that one boundary.
    """
    buffer, cut_any = "", False
    for block in blocks:
        buffer += block
        while len(buffer) >= PIECE_CHARS:
            cut = _safe_cut(buffer, PIECE_CHARS) or _safe_cut(buffer, len(buffer))
            if not cut:
                if len(buffer) < MAX_PIECE_CHARS:
                    break
                cut = len(buffer)
            yield buffer[:cut], False
            buffer, cut_any = buffer[cut:], True
    if buffer or cut_any:
        yield buffer, True


def _batches(corpus: Corpus) -> Iterator[list[tuple[str, bool]]]:
    batch, size = [], 0
    for document in corpus.documents():
        for piece, is_last in _document_pieces(document):
            batch.append((piece, is_last))
            size += len(piece)
            if size >= BATCH_CHARS:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def encode_batch(tokenizer: Tokenizer, dtype: np.dtype,
                 batch: list[tuple[str, bool]]) -> tuple[bytes, int, int, int]:
    """Token bytes of a batch of pieces (end-of-text after each document's last piece),
    with the UTF-8 size of its text, the number of documents it completes and its
    largest token id (0 if it has no token)."""
    ids: list[int] = []
    text_bytes = documents = 0
    for text, is_last in batch:
        ids += tokenizer.encode(text)
        text_bytes += len(text.encode("utf-8", "surrogatepass"))
        if is_last:
            ids.append(tokenizer.eot_id)
            documents += 1
    tokens = np.asarray(ids, dtype=dtype)
    return tokens.tobytes(), text_bytes, documents, int(tokens.max(initial=0))


_worker_state: tuple[Tokenizer, np.dtype] | None = None


def _init_worker(tokenizer: Tokenizer, dtype: np.dtype) -> None:
    # Ctrl-C reaches every process of the terminal's group, and a scheduler may send SIGTERM
    # to all of them. Only the parent acts on these; it stops the workers (_stop_workers).
    # A worker killed here would print tracebacks, or die holding the task queue's lock.
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    global _worker_state
    _worker_state = (tokenizer, dtype)


def _encode_in_worker(batch):
    return encode_batch(*_worker_state, batch)


def _encoded_batches(batches, tokenizer: Tokenizer, dtype: np.dtype, num_proc: int):
    """encode_batch results in corpus order, computed by num_proc processes.

    Pool.imap would read the whole corpus ahead of slow workers; keeping at most
    two tasks per worker in flight bounds memory.
    """
    if num_proc == 1:
        for batch in batches:
            yield encode_batch(tokenizer, dtype, batch)
        return
    with contextlib.ExitStack() as stack:
        # Until _init_worker has run, a worker has the parent's handlers: deferring ones, so
        # that a Ctrl-C now neither stops a half-built pool nor raises in a worker.
        with _signals_deferred():
            pool = multiprocessing.Pool(num_proc, initializer=_init_worker, initargs=(tokenizer, dtype))
            stack.callback(_stop_workers, pool)
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(_encode_in_worker, (batch,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _stop_workers(pool: multiprocessing.pool.Pool) -> None:
    """Let the workers finish the batches already sent (at most 2 * num_proc) and exit.

    Also the way out after an error or a signal: Pool.terminate could hang, as a worker
    that ignores its SIGTERM blocks sending a result that no one reads any more.
    """
    pool.close()
    pool.join()


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back during the block; the first that came is delivered at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (and Python runs them there)
        return
    arrived: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if arrived:
            signal.raise_signal(arrived[0])


def _write_token_stream(corpus, tokenizer, dtype, path: Path, num_proc: int,
                        progress: bool) -> tuple[int, int, int]:
    """Write every token of the corpus to `path`; return (token count, document count, largest id)."""
    tokens = documents = max_id = 0
    with open(path, "wb") as out, tqdm(total=corpus.size_bytes, unit="B", unit_scale=True,
                                       desc="tokenizing", disable=not progress) as bar:
        for data, text_bytes, batch_documents, batch_max_id in _encoded_batches(_batches(corpus), tokenizer,
                                                                                dtype, num_proc):
            out.write(data)
            tokens += len(data) // dtype.itemsize
            documents += batch_documents
            max_id = max(max_id, batch_max_id)
            bar.update(text_bytes)
    return tokens, documents, max_id


def _move_tail(stream: Path, tail: Path, keep_bytes: int) -> None:
    """Move everything after the first keep_bytes of `stream` into `tail`, in chunks."""
    with open(stream, "rb") as src, open(tail, "wb") as dst:
        src.seek(keep_bytes)
        while chunk := src.read(COPY_BYTES):
            dst.write(chunk)
    os.truncate(stream, keep_bytes)


def _corpus_characters(corpus: Corpus) -> set[str]:
    chars: set[str] = set()
    for document in corpus.documents():
        for block in document:
            chars.update(block)
    return chars


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


# ---------------------------------------------------------------- output folder


def _check_out_dir(out_dir: Path, source: str, tokenizer_name: str, overwrite: bool) -> None:
    """Refuse to replace a different dataset unless overwrite is set."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out-dir {out_dir} is a file, not a folder")
    if overwrite or not out_dir.exists():
        return
    meta_path = out_dir / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("source") == source and meta.get("tokenizer") == tokenizer_name:
            return
        held = f"{meta.get('source', 'unknown source')}, tokenizer {meta.get('tokenizer', '?')}"
        raise DataError(f"{out_dir} already holds a different dataset ({held}); "
                        f"choose another --out-dir or pass --overwrite")
    if (out_dir / "train.bin").exists() or (out_dir / "val.bin").exists():
        raise DataError(f"{out_dir} holds token files without meta.json; choose another --out-dir or pass --overwrite")


def _make_out_dir(out_dir: Path) -> None:
    """Create out_dir (and its parents) and make sure files can be written there."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a read-only parent, or a regular file on the path
        raise DataError(f"cannot create --out-dir {out_dir}: {e.strerror or e}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DataError(f"--out-dir {out_dir} is not writable")


def _publish(out_dir: Path, train_tmp: Path, val_tmp: Path, meta: dict) -> None:
    # Dropping the old meta.json first means an interruption between the renames
    # leaves a folder that open_dataset rejects, never a mismatched "finished" one.
    (out_dir / "meta.json").unlink(missing_ok=True)
    os.replace(val_tmp, out_dir / "val.bin")
    os.replace(train_tmp, out_dir / "train.bin")
    meta_tmp = out_dir / "meta.json.tmp"
    meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(meta_tmp, out_dir / "meta.json")


def check_val_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction:g}")


def prepare(corpus: Corpus | Iterable[str], out_dir: str | Path, tokenizer: Tokenizer | str = "gpt2", *,
            val_fraction: float = 0.1, num_proc: int = 1, overwrite: bool = False,
            progress: bool = False) -> dict:
    """Tokenize `corpus` into out_dir/{train.bin,val.bin,meta.json} and return the meta dict.

    `corpus` is a Corpus or a list of document strings; `tokenizer` is a Tokenizer,
    a tiktoken name, or "char" (vocabulary = the corpus's characters plus NUL, found
    in a first pass). See the module docstring for the format and the split rule.
    """
    check_val_fraction(val_fraction)
    if num_proc < 1:
        raise DataError(f"--num-proc must be at least 1, got {num_proc}")
    if not isinstance(corpus, Corpus):
        corpus = TextCorpus(corpus)
    out_dir = Path(out_dir)
    tokenizer_name = tokenizer if isinstance(tokenizer, str) else tokenizer.name
    _check_out_dir(out_dir, corpus.description, tokenizer_name, overwrite)
    _make_out_dir(out_dir)  # before the char vocabulary pass, which reads the whole corpus
    if tokenizer == "char":
        tokenizer = char_tokenizer(sorted(_corpus_characters(corpus)))
    elif isinstance(tokenizer, str):
        tokenizer = get_tokenizer(tokenizer)
    dtype = token_dtype(tokenizer.vocab_size)

    train_tmp, val_tmp = out_dir / "train.bin.tmp", out_dir / "val.bin.tmp"
    try:
        total, documents, max_token_id = _write_token_stream(corpus, tokenizer, dtype, train_tmp, num_proc, progress)
        if total == 0:
            raise DataError(f"empty corpus: no text in {corpus.description}")
        val_tokens = math.ceil(val_fraction * total)
        if val_tokens >= total:
            raise DataError(f"corpus too small to split: only {total} tokens")
        _move_tail(train_tmp, val_tmp, (total - val_tokens) * dtype.itemsize)
        meta = {
            **tokenizer.meta(),
            "dtype": dtype.name,
            "train_tokens": total - val_tokens,
            "val_tokens": val_tokens,
            "max_token_id": max_token_id,
            "documents": documents,
            "val_fraction": val_fraction,
            "source": corpus.description,
        }
        with _signals_deferred():  # the renames go through whole: a signal is handled after them
            _publish(out_dir, train_tmp, val_tmp, meta)
    finally:
        train_tmp.unlink(missing_ok=True)
        val_tmp.unlink(missing_ok=True)
    return meta


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python data/prepare.py",
        description="Tokenize a text corpus into train.bin, val.bin and meta.json for training.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "presets (default out-dir data/<preset>):\n"
            "  shakespeare  tiny Shakespeare (1.1 MB), downloaded once and cached in "
            f"{CACHE_DIR}\n"
            "  pystdlib     this Python's standard library .py sources: works offline\n"
            "  quickstart   shakespeare if it can be downloaded, else pystdlib\n\n"
            "examples:\n"
            "  python data/prepare.py quickstart --tokenizer char\n"
            "  python data/prepare.py --input books/ notes.txt 'papers/**/*.md' --out-dir data/mine\n"
            "  python data/prepare.py --hf-dataset json --hf-data-files corpus.jsonl --out-dir data/mine\n\n"
            "Offline, tiktoken reads its files from TIKTOKEN_CACHE_DIR; 'gpt2' falls back to the\n"
            "identical 'r50k_base'. Documents are separated by the end-of-text token; the\n"
            "validation split is the last --val-fraction of the token stream."
        ),
    )
    parser.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="a named corpus (see below)")
    parser.add_argument("--input", nargs="+", metavar="PATH",
                        help="text files, folders (every text file below, sorted) or glob patterns")
    parser.add_argument("--hf-dataset", metavar="NAME",
                        help="Hugging Face dataset: a hub name or a local loader (text, json, parquet, csv)")
    parser.add_argument("--hf-config", metavar="C", help="dataset configuration name")
    parser.add_argument("--hf-split", metavar="S", default="train", help="dataset split (default: train)")
    parser.add_argument("--hf-data-files", nargs="+", metavar="FILE", help="files for a local loader")
    parser.add_argument("--text-column", default="text", help="dataset column holding the text (default: text)")
    parser.add_argument("--out-dir", metavar="DIR", help="output folder (default for presets: data/<preset>)")
    parser.add_argument("--tokenizer", default="gpt2",
                        help="a tiktoken encoding name, or 'char' for characters (default: gpt2)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of tokens for validation, 0 < f < 1 (default: 0.1)")
    parser.add_argument("--num-proc", type=int, default=min(os.cpu_count() or 1, 8),
                        help="tokenizer worker processes (default: CPU count, at most 8)")
    parser.add_argument("--encoding-errors", choices=["strict", "replace"], default="strict",
                        help="what to do with bytes that are not UTF-8 (default: strict = stop)")
    parser.add_argument("--max-mb", type=float, metavar="MB",
                        help="for file sources: use only the first files, up to MB megabytes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a different dataset already in --out-dir")
    return parser


def _corpus_from_args(args, say) -> Corpus:
    chosen = [bool(args.preset), bool(args.input), bool(args.hf_dataset)]
    if sum(chosen) != 1:
        raise DataError("give exactly one source: a preset name, --input PATH ..., or --hf-dataset NAME")
    if args.preset:
        return PRESETS[args.preset](args, say)
    if args.input:
        return file_corpus(args.input, args.encoding_errors, args.max_mb)
    return HFCorpus(args.hf_dataset, args.hf_config, args.hf_split, args.text_column, args.hf_data_files)


def _run(args, say) -> dict:
    check_val_fraction(args.val_fraction)
    if args.tokenizer != "char" and args.tokenizer not in available_tokenizers():
        raise DataError(f"unknown tokenizer {args.tokenizer!r}; available: {', '.join(available_tokenizers())}")
    if not args.out_dir and not args.preset:
        raise DataError("--out-dir DIR is required with --input and --hf-dataset")
    corpus = _corpus_from_args(args, say)
    tokenizer = "char" if args.tokenizer == "char" else get_tokenizer(args.tokenizer)
    if isinstance(tokenizer, Tokenizer) and tokenizer.encoding.name != tokenizer.name:
        say(f"note: tokenizer {tokenizer.name!r} loaded from the identical {tokenizer.encoding.name!r} files")
    out_dir = Path(args.out_dir) if args.out_dir else DATA_DIR / args.preset
    say(f"source: {corpus.description}")
    started = time.perf_counter()
    meta = prepare(corpus, out_dir, tokenizer, val_fraction=args.val_fraction, num_proc=args.num_proc,
                   overwrite=args.overwrite, progress=True)
    say(f"wrote {out_dir}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens "
        f"from {meta['documents']:,} documents, tokenizer {meta['tokenizer']} "
        f"(vocab {meta['vocab_size']:,}, {meta['dtype']}) in {time.perf_counter() - started:.1f}s")
    return meta


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. Like KeyboardInterrupt it runs every `finally` on its way
    out and no `except Exception` stops it; `signum` says which signal it was."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise_interrupted():
    """While active, SIGINT and SIGTERM raise Interrupted (in the main thread).

    The first signal also makes both ignored, so that a second Ctrl-C cannot cut short
    the clean-up the first one started (stopping the workers, removing temporary files).
    """
    def stop(signum, frame):
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code: 2 for bad input, 128 + the signal
    number when SIGINT (130) or SIGTERM (143) stops it."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed usage or help
        return e.code if isinstance(e.code, int) else 2

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        with _signals_raise_interrupted():
            _run(args, say)
    except DataError as e:
        say(f"error: {e}")
        return 2
    except (KeyboardInterrupt, Interrupted) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        say(f"interrupted by {signal.Signals(signum).name}: no partial files were left in the output folder")
        return 128 + signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
