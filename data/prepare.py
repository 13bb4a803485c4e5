"""Turn a text corpus into token files: train.bin, val.bin and meta.json, or token shards for a Hugging Face dataset.

    python data/prepare.py shakespeare --tokenizer=char          (presets: shakespeare, pystdlib, quickstart)
    python data/prepare.py books/ notes.txt 'papers/**/*.md' --out_dir=data/mine
    python data/prepare.py --hf_dataset=HuggingFaceFW/fineweb-edu --hf_config=sample-10BT --out_dir=data/fineweb10B
    python data/prepare.py --hf_dataset=json --hf_data_files=corpus.jsonl --out_dir=data/mine

The pipeline: documents (a file or a dataset row each) are read in blocks, cut into pieces of
about a megabyte where the cut cannot change the tokens, encoded by threads (tiktoken releases
the GIL) a few batches at a time, so memory stays bounded, and written in corpus order as one
token stream, each document followed by the end-of-text id. The last ceil(val_fraction * total)
tokens of the stream are val.bin, the rest train.bin: a contiguous tail, so it works for a single
document too. Ids are stored as uint16 when the vocabulary fits, else uint32. meta.json records
the tokenizer, vocab size, dtype, end-of-text id, token counts, the largest id in either file
(max_token_id: data/dataset.py checks it against the vocab size instead of reading every token),
document count and source (and, for `char`, the vocabulary).

A Hugging Face dataset (a hub name, a local folder of parquet or jsonl files, or a loader with
--hf_data_files) is streamed, never downloaded whole, into fixed-size token shards: the first
whole documents of at least --val_tokens tokens are val.bin, the rest train_000000.bin, ... of
--shard_tokens each, and meta.json lists every shard with its token count and SHA-256. A run that
is stopped (kill -9 included) resumes from its last finished shard when the same command runs
again. data/shards.py has the layout and the writer.

Safety. Token files are written as *.tmp and renamed when complete; meta.json, written last, marks
a folder as a finished dataset. An out_dir holding a dataset from another source or tokenizer is
refused unless --overwrite; the same dataset is rebuilt (byte-identical). Ctrl-C or SIGTERM stops
the threads, removes the temporary files and exits with 128 + the signal number.
"""

# ruff: noqa: E402 (the imports after the guard are late on purpose)

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python data/prepare.py`: import from the repo root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from core.entry import interrupt_guard

with interrupt_guard(__name__, "data/prepare.py"):  # nothing to clean up yet: one line, no traceback
    import contextlib
    import functools
    import glob
    import itertools
    import json
    import math
    import os
    import shutil
    import signal
    import sysconfig
    import time
    import urllib.request
    from collections.abc import Callable, Iterable
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import dataclass
    from typing import NamedTuple

    import numpy as np
    from tqdm import tqdm

    from core.atomic import atomic_write, remove_file, temp_path
    from core.configurator import load_options, note
    from core.entry import STOP_SIGNALS as ENTRY_STOP_SIGNALS
    from core.entry import Interrupted, RunFailed, restore_signals, run_main, take_signals
    from core.lock import exclusive_folder
    from core.paths import recorded_path
    from data.shards import ShardWriter
    from data.tokenizer import CharTokenizer, DataError, TiktokenTokenizer, Tokenizer, get_tokenizer

DATA_DIR = Path(__file__).resolve().parent
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nanogpt-data"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
PIECE_CHARS = 1 << 20  # text read at a time, and the size long documents are cut to
MAX_PIECE_CHARS = 8 * PIECE_CHARS  # a longer line (minified text) is cut anywhere, which may change one token
BATCH_CHARS = 1 << 20  # text one thread encodes at a time: short documents go together
STOP_SIGNALS = (signal.SIGINT, *ENTRY_STOP_SIGNALS)  # Ctrl-C, a scheduler's SIGTERM, a closed terminal's SIGHUP
SHARD_TOKENS = 100_000_000  # a train shard: 200 MB of GPT-2 tokens, so 100 files for 10B tokens
VAL_TOKENS = 10_000_000  # enough for nanoGPT's 200 evaluation batches of 12 x 1024 tokens four times over


@dataclass
class PrepareOptions:
    out_dir: str = ""  # output folder; for a preset the default is data/<preset>
    tokenizer: str = "gpt2"  # a tiktoken encoding name, or char for characters
    val_fraction: float | None = None  # file sources: the share of the tokens for validation, 0 < f < 1 (default 0.1)
    num_proc: int = min(os.cpu_count() or 1, 8)  # threads that encode; the default is the CPU count, at most 8
    encoding_errors: str = "strict"  # bytes that are not UTF-8: strict (stop) or replace
    max_mb: float | None = None  # for file sources: only the first files, up to this many megabytes
    overwrite: bool = False  # replace a different dataset already in out_dir
    hf_dataset: str = ""  # a Hugging Face dataset, streamed into shards: a hub name, a folder of parquet/jsonl, or json, parquet, csv, text
    hf_config: str | None = None  # the dataset's configuration name
    hf_split: str = "train"  # the dataset's split
    hf_data_files: tuple[str, ...] = ()  # files for a local loader
    text_column: str = "text"  # the dataset's column holding the text
    shard_tokens: int | None = None  # --hf_dataset: tokens per train shard (default 100M)
    val_tokens: int | None = None  # --hf_dataset: validation = the first whole documents of at least this many tokens (default 10M)
    max_tokens: int | None = None  # --hf_dataset: stop after this many tokens in all (a quick subset)

    def __post_init__(self):
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction:g}")
        if self.num_proc < 1:
            raise ValueError(f"num_proc must be at least 1, got {self.num_proc}")
        if self.encoding_errors not in ("strict", "replace"):
            raise ValueError(f"encoding_errors must be strict or replace, got {self.encoding_errors!r}")


USAGE = "python data/prepare.py PRESET | PATH ... | --hf_dataset=NAME [--key=value ...]"
MORE_HELP = f"""

sources (give one):
  shakespeare    preset: tiny Shakespeare (1.1 MB), downloaded once and cached in {CACHE_DIR}
  pystdlib       preset: this Python's standard library .py sources, always there (offline too)
  quickstart     preset: shakespeare if it can be downloaded, else pystdlib
  PATH ...       text files, folders (every text file below, sorted) and quoted glob patterns
  --hf_dataset   a Hugging Face dataset, with --hf_config, --hf_split, --hf_data_files, --text_column
A preset writes to data/<preset> unless --out_dir says otherwise; a path named like a preset is ./NAME.

examples:
  python data/prepare.py quickstart --tokenizer=char
  python data/prepare.py books/ notes.txt 'papers/**/*.md' --out_dir=data/mine
  python data/prepare.py --hf_dataset=HuggingFaceFW/fineweb-edu --hf_config=sample-10BT --out_dir=data/fineweb10B
  python data/prepare.py --hf_dataset=path/to/parquet_folder --max_tokens=100_000_000 --out_dir=data/sample
  python data/prepare.py --hf_dataset=json --hf_data_files=corpus.jsonl --out_dir=data/mine

Offline, tiktoken reads its files from TIKTOKEN_CACHE_DIR; 'gpt2' falls back to the identical
'r50k_base'. Documents are separated by the end-of-text token. Files and presets: one train.bin
and val.bin, the validation split the last val_fraction (default 0.1) of the token stream.
--hf_dataset streams into shards: val.bin holds the first whole documents of at least val_tokens
(default 10M) tokens, then train_000000.bin, ... hold shard_tokens (default 100M) each; a stopped
run resumes from its last finished shard when the same command is given again."""


# ---------------------------------------------------------------- sources


@dataclass
class Corpus:
    """Documents to tokenize, each an iterable of text blocks; documents() starts over at every call."""

    description: str  # the source, as meta.json records it
    documents: Callable[[], Iterable[Iterable[str]]]
    size_bytes: int | None = None  # sizes the progress bar


def file_corpus(inputs: list, options: PrepareOptions | None = None, description: str = "") -> Corpus:
    """Text files, folders and glob patterns (see find_text_files), one document per file; with
    options.max_mb, only the leading files that fit (at least one)."""
    options = options or PrepareOptions()
    files = find_text_files(inputs)
    if options.max_mb is not None:
        sizes = itertools.accumulate(f.stat().st_size for f in files)
        files = files[: max(1, sum(size <= options.max_mb * 1e6 for size in sizes))]
    if not description:  # meta.json's source: a folder prepared again from the same inputs matches it
        cap = f" (first {options.max_mb:g} MB)" if options.max_mb is not None else ""
        description = "files: " + ", ".join(recorded_path(i) for i in inputs) + cap
    return Corpus(description, lambda: (_read_blocks(f, options.encoding_errors) for f in files), sum(f.stat().st_size for f in files))


def _read_blocks(path: Path, errors: str):
    try:
        # utf-8-sig drops a byte-order mark; newline="" keeps line endings as they are
        with open(path, encoding="utf-8-sig", errors=errors, newline="") as f:
            while block := f.read(PIECE_CHARS):
                yield block
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; fix it or pass --encoding_errors=replace") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def find_text_files(inputs: list[str]) -> list[Path]:
    """Files, folders and glob patterns as a sorted, duplicate-free list of text files.

    A file named outright must be text; in folders and glob matches, binary files are skipped.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            if _is_binary(path):
                raise DataError(f"{item} is not a text file (it contains NUL bytes)")
            found = [path]
        elif path.is_dir():
            found = _text_files(path)
        elif any(c in item for c in "*?["):
            found = [f for match in sorted(glob.glob(item, recursive=True)) for f in _text_files(Path(match))]
        else:
            raise DataError(f"input not found: {item}")
        if not found:
            raise DataError(f"no text files in folder {item}" if path.is_dir() else f"no text files match {item!r}")
        files += found
    return list(dict.fromkeys(files))


def _text_files(path: Path, suffix: str = "", skip_dirs: frozenset = frozenset()) -> list[Path]:
    """`path` if it is a file, else the files below it, sorted; hidden ones, skip_dirs and binary files left out."""
    candidates = [path] if path.is_file() else []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip_dirs]
        candidates += [Path(root, n) for n in names if not n.startswith(".") and n.endswith(suffix)]
    return sorted(f for f in candidates if f.is_file() and not _is_binary(f))


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\x00" in f.read(8192)


def hf_corpus(options: PrepareOptions) -> Corpus:
    """One column of a Hugging Face dataset, streamed (nothing is downloaded ahead): one row = one
    document, a missing text an empty one. A hub name, a local folder of parquet or jsonl files, or a
    loader (json, parquet, csv, text) with --hf_data_files all go through the same call."""
    name, column = options.hf_dataset, options.text_column
    # datasets imports torch when it is installed, to share streams with DataLoader workers: 180 MB
    # of memory this process never uses (the variable only counts before datasets' first import)
    os.environ.setdefault("USE_TORCH", "0")
    try:
        import datasets

        files = list(options.hf_data_files) or None
        rows = datasets.load_dataset(name, options.hf_config, split=options.hf_split, data_files=files, streaming=True)
        first = next(iter(rows.take(1)), None)
    except Exception as e:  # hub, network and loader errors come in many types
        raise DataError(f"could not load Hugging Face dataset {name!r}: {_first_line(e)}") from None
    if first is None:
        raise DataError(f"dataset {name!r} has no rows in split {options.hf_split!r}")
    if column not in first:
        raise DataError(f"dataset {name!r} has no column {column!r}; its columns are {', '.join(first)} (choose one with --text_column)")

    def documents():
        try:
            for batch in rows.select_columns([column]).iter(batch_size=1000):
                for text in batch[column]:
                    if text is not None and not isinstance(text, str):
                        raise DataError(f"column {column!r} holds {type(text).__name__}, not text")
                    yield [text] if text else []
        except (DataError, KeyboardInterrupt):
            raise
        except Exception as e:  # a lost connection or a damaged file, midway: finished shards stay for a resume
            raise RunFailed(f"reading Hugging Face dataset {name!r} failed: {_first_line(e)}") from None

    files = options.hf_data_files and f"files={','.join(options.hf_data_files)}"
    parts = [name, options.hf_config, f"split={options.hf_split}", files, f"column={column}"]
    return Corpus("hf: " + " ".join(p for p in parts if p), documents)


def _first_line(error: Exception) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def shakespeare(options: PrepareOptions, say) -> Corpus:
    path = CACHE_DIR / "tinyshakespeare.txt"
    if not path.exists():
        say(f"downloading tiny Shakespeare from {SHAKESPEARE_URL}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(SHAKESPEARE_URL, timeout=15) as response, atomic_write(path, "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as e:  # URLError and timeouts are OSErrors
            raise DataError(
                f"could not download {SHAKESPEARE_URL} ({getattr(e, 'reason', None) or e}); "
                "give a local copy as input path, or use the offline preset pystdlib"
            ) from None
    return file_corpus([path], options, f"preset shakespeare: tiny Shakespeare ({SHAKESPEARE_URL})")


def pystdlib(options: PrepareOptions, say) -> Corpus:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
    files = _text_files(stdlib, ".py", skip)
    if not files:
        raise DataError(f"no Python sources found in {stdlib}; give input paths instead")
    version = ".".join(map(str, sys.version_info[:2]))
    cap = f", first {options.max_mb:g} MB" if options.max_mb is not None else ""
    return file_corpus(files, options, f"preset pystdlib: Python {version} standard library sources in {stdlib}{cap}")


def quickstart(options: PrepareOptions, say) -> Corpus:
    try:
        return shakespeare(options, say)
    except DataError as e:
        say(f"note: {e}")
        say("note: using the Python standard library sources instead (always available offline)")
        return pystdlib(options, say)


PRESETS = {"shakespeare": shakespeare, "pystdlib": pystdlib, "quickstart": quickstart}


# ---------------------------------------------------------------- tokens


def _safe_cut(text: str, end: int) -> int:
    """Position just after the last newline before `end` that sits between two non-space
    characters; 0 if there is none. tiktoken's split patterns always end a pre-token at such
    a newline, so encoding the two halves separately gives exactly the tokens of the whole."""
    limit = min(end, len(text) - 1)
    while (i := text.rfind("\n", 1, limit)) != -1:
        if not text[i - 1].isspace() and not text[i + 1].isspace():
            return i + 1
        limit = i
    return 0


class Piece(NamedTuple):
    """A stretch of one document's text, what a thread encodes, and where it sits in the corpus."""

    text: str
    last: bool  # the document's last piece: its tokens are followed by the end-of-text id
    document: int  # the document's index in the corpus (a dataset's row; empty ones count)


def _pieces(documents: Iterable[Iterable[str]], start: int = 0):
    """Pieces of at most about PIECE_CHARS of every document; `start` is the first document's index."""
    for index, document in enumerate(documents, start):
        buffer, cut_any = "", False
        for block in document:
            buffer += block
            while len(buffer) >= PIECE_CHARS:
                cut = _safe_cut(buffer, PIECE_CHARS) or _safe_cut(buffer, len(buffer))
                if not cut and len(buffer) < MAX_PIECE_CHARS:
                    break  # read on: a safe cut may come
                cut = cut or len(buffer)
                yield Piece(buffer[:cut], False, index)
                buffer, cut_any = buffer[cut:], True
        if buffer or cut_any:  # an empty document adds nothing, not even a separator
            yield Piece(buffer, True, index)


def _batches(pieces: Iterable[Piece]):
    """Lists of pieces of about BATCH_CHARS characters in all: one thread's task."""
    batch, size = [], 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece.text)
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _encode(tokenizer: Tokenizer, dtype: np.dtype, batch: list[Piece]) -> tuple[np.ndarray, np.ndarray]:
    """The batch's token ids as `dtype`, the end-of-text id after each document's last piece; and where
    each piece's ids end among them."""
    encoded = [tokenizer.encode_to_numpy(piece.text) for piece in batch]
    ends = np.cumsum([len(ids) + piece.last for ids, piece in zip(encoded, batch, strict=True)])
    out = np.empty(int(ends[-1]), dtype)
    for ids, piece, end in zip(encoded, batch, ends, strict=True):
        out[end - piece.last - len(ids) : end - piece.last] = ids
        if piece.last:
            out[end - 1] = tokenizer.eot_id
    return out, ends


def _encoded(batches: Iterable[list[Piece]], tokenizer: Tokenizer, dtype: np.dtype, num_proc: int):
    """(batch, its ids, its pieces' ends) for every batch, in order, encoded by num_proc threads
    while this thread reads the next batches."""
    # Two batches per thread at a time, and as many read ahead, keep memory bounded. Fresh threads for each chunk, as
    # tiktoken's own encode_ordinary_batch has: with threads that lived through the whole run,
    # about half the runs took 5.8 s instead of 3.3 s (60 MB of text, 2 threads, 2 cores).
    chunk = list(itertools.islice(batches, 2 * num_proc))
    while chunk:
        pool = ThreadPoolExecutor(num_proc)
        encoding = [pool.submit(_encode, tokenizer, dtype, batch) for batch in chunk]
        pool.shutdown(wait=False)  # its threads end with their tasks
        following = list(itertools.islice(batches, 2 * num_proc))  # reading (a dataset's rows) overlaps the encoding
        for batch, future in zip(chunk, encoding, strict=True):
            yield batch, *future.result()
        chunk = following


def _write_tokens(corpus: Corpus, tokenizer: Tokenizer, dtype: np.dtype, out, num_proc: int, progress: bool) -> tuple[int, int, int]:
    """Write the corpus's token stream to file `out`; return (tokens, documents, largest id)."""
    tokens = documents = max_id = 0
    batches = _batches(_pieces(corpus.documents()))
    with tqdm(total=corpus.size_bytes, unit="B", unit_scale=True, desc="tokenizing", disable=not progress) as bar:
        for batch, ids, _ in _encoded(batches, tokenizer, dtype, num_proc):
            out.write(ids.tobytes())
            tokens += len(ids)
            documents += sum(piece.last for piece in batch)
            max_id = max(max_id, int(ids.max(initial=0)))
            bar.update(sum(len(piece.text.encode("utf-8", "surrogatepass")) for piece in batch))
    return tokens, documents, max_id


# ---------------------------------------------------------------- output folder


def _make_out_dir(out_dir: Path) -> None:
    """Create the folder (a file in its way, or one we cannot write into, is refused)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out_dir {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a read-only parent, or a regular file on the path
        raise DataError(f"cannot create --out_dir {out_dir}: {e.strerror or e}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DataError(f"--out_dir {out_dir} is not writable")


def _check_replaceable(out_dir: Path, source: str, tokenizer_name: str, overwrite: bool) -> None:
    """Refuse to replace a different dataset (or token files without meta.json) unless `overwrite`."""
    if overwrite:
        return
    if (out_dir / "meta.json").exists():
        try:
            meta = json.loads((out_dir / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        if (meta.get("source"), meta.get("tokenizer")) != (source, tokenizer_name):
            held = f"{meta.get('source', 'unknown source')}, tokenizer {meta.get('tokenizer', '?')}"
            raise DataError(f"{out_dir} already holds a different dataset ({held}); choose another --out_dir or pass --overwrite")
    elif (out_dir / "train.bin").exists() or (out_dir / "val.bin").exists():
        raise DataError(f"{out_dir} holds token files without meta.json; choose another --out_dir or pass --overwrite")


@contextlib.contextmanager
def _signal_handler(handler):
    """The stop signals call `handler` during the block (core/entry.take_signals: main thread only, ignored ones stay so)."""
    previous = take_signals(STOP_SIGNALS, handler)
    try:
        yield
    finally:
        restore_signals(previous)


@contextlib.contextmanager
def _signals_deferred():
    """Hold the stop signals back during the block; the first that came is delivered at its end."""
    arrived = []
    try:
        with _signal_handler(lambda signum, frame: arrived.append(signum)):
            yield
    finally:  # delivered even when the block failed: Ctrl-C still ends the run as Ctrl-C does
        if arrived:
            signal.raise_signal(arrived[0])


def _char_tokenizer(corpus: Corpus) -> CharTokenizer:
    """A character vocabulary of every character in the corpus (a first pass over it)."""
    chars = set()
    for document in corpus.documents():
        for block in document:
            chars.update(block)
    return CharTokenizer(sorted(chars))


def _publish(out_dir: Path, meta: dict, train_tmp: Path, val_tmp: Path) -> None:
    """Put the finished token files in place, then meta.json, which marks the folder as a finished dataset."""
    with _signals_deferred():  # the renames go through whole: a signal is handled after them
        remove_file(out_dir / "meta.json")  # until the new one is in place, the folder is no finished dataset
        os.replace(val_tmp, out_dir / "val.bin")
        os.replace(train_tmp, out_dir / "train.bin")
        with atomic_write(out_dir / "meta.json") as f:
            f.write(json.dumps(meta, indent=2) + "\n")


def prepare(
    corpus: Corpus | Iterable[str],
    out_dir: str | Path,
    tokenizer: Tokenizer | str = "gpt2",
    *,
    val_fraction: float = 0.1,
    num_proc: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Tokenize `corpus` into out_dir/{train.bin,val.bin,meta.json} and return the meta dict.

    `corpus` is a Corpus or a list of document strings; `tokenizer` is a Tokenizer, a tiktoken
    name, or "char" (vocabulary = the corpus's characters plus NUL, found in a first pass).
    """
    try:
        PrepareOptions(val_fraction=val_fraction, num_proc=num_proc)  # the command line's checks, for callers too
    except ValueError as e:
        raise DataError(str(e)) from None
    if not isinstance(corpus, Corpus):
        texts = list(corpus)
        corpus = Corpus("in-memory texts", lambda: ([text] for text in texts))
    out_dir = Path(out_dir)
    _make_out_dir(out_dir)
    with exclusive_folder(out_dir, "--out_dir"):  # two prepares into one folder would mix their files
        _check_replaceable(out_dir, corpus.description, getattr(tokenizer, "name", tokenizer), overwrite)
        if tokenizer == "char":
            tokenizer = _char_tokenizer(corpus)
        elif isinstance(tokenizer, str):
            tokenizer = get_tokenizer(tokenizer)
        return _write_dataset(corpus, out_dir, tokenizer, val_fraction, num_proc, progress)


def _write_dataset(corpus: Corpus, out_dir: Path, tokenizer: Tokenizer, val_fraction: float, num_proc: int, progress: bool) -> dict:
    """Encode the corpus into temporary token files, split off val, publish them with meta.json; returns the meta dict."""
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32)
    train_tmp, val_tmp = temp_path(out_dir / "train.bin"), temp_path(out_dir / "val.bin")
    try:
        with open(train_tmp, "w+b") as stream:
            total, documents, max_token_id = _write_tokens(corpus, tokenizer, dtype, stream, num_proc, progress)
            if total == 0:
                raise DataError(f"empty corpus: no text in {corpus.description}")
            val_tokens = math.ceil(val_fraction * total)
            if not 0 < val_tokens < total:
                raise DataError(f"corpus too small to split: {total} tokens, val_fraction {val_fraction:g}")
            stream.seek((total - val_tokens) * dtype.itemsize)  # the tail of the stream is val.bin
            with open(val_tmp, "wb") as val:
                shutil.copyfileobj(stream, val, 16 << 20)
            stream.truncate((total - val_tokens) * dtype.itemsize)
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
        _publish(out_dir, meta, train_tmp, val_tmp)
    except OSError as e:  # a full disk, most often: name the folder, not only errno's words
        raise RunFailed(f"could not write the dataset into {out_dir} ({e.strerror or e}); no partial files were left") from None
    finally:
        remove_file(train_tmp)
        remove_file(val_tmp)
    return meta


def prepare_shards(
    corpus: Corpus,
    out_dir: str | Path,
    tokenizer: Tokenizer | str = "gpt2",
    *,
    shard_tokens: int = SHARD_TOKENS,
    val_tokens: int = VAL_TOKENS,
    max_tokens: int | None = None,
    num_proc: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    say=lambda message: None,
) -> dict:
    """Stream `corpus` into token shards in out_dir (the layout: data/shards.py) and return the meta dict.

    A folder holding an unfinished run of the same corpus, tokenizer and sizes is continued from
    its last finished shard; one holding the finished dataset is returned as it is.
    """
    out_dir = Path(out_dir)
    _make_out_dir(out_dir)
    name = getattr(tokenizer, "name", tokenizer)
    sizes = {"shard_tokens": shard_tokens, "val_tokens": val_tokens, "max_tokens": max_tokens}
    identity = {"source": corpus.description, "tokenizer": name, **sizes}
    with exclusive_folder(out_dir, "--out_dir"):
        writer = ShardWriter(out_dir, identity, **sizes)
        if overwrite:
            writer.clear()
        if meta := writer.finished_meta():
            remove_file(out_dir / "progress.json")  # left by a stop between meta.json and its removal
            say(f"{out_dir} already holds this dataset, finished; nothing to do")
            return meta
        recorded = writer.recorded_tokenizer()
        if tokenizer == "char":  # a resumed run keeps its vocabulary: the corpus is not read twice
            tokenizer = CharTokenizer(recorded["vocab"]) if recorded else _char_tokenizer(corpus)
        elif isinstance(tokenizer, str):
            tokenizer = get_tokenizer(tokenizer)
        writer.start(tokenizer.meta(), np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32))
        if writer.written:
            say(f"continuing after {writer.written:,} tokens in finished shards (row {writer.resume_row:,} of the source)")
        try:
            return _stream(corpus, tokenizer, writer, num_proc, progress)
        except OSError as e:  # a full disk, most often
            raise RunFailed(
                f"could not write a shard into {out_dir} ({e.strerror or e}); the finished shards are kept "
                "and the same command continues from them"
            ) from None
        finally:
            writer.abort()


def _stream(corpus: Corpus, tokenizer: Tokenizer, writer: ShardWriter, num_proc: int, progress: bool) -> dict:
    """Encode the corpus from the writer's resume row on and hand every batch to it; returns the finished meta."""
    row = writer.resume_row
    if writer.full:  # a run stopped after its last shard, before meta.json
        return writer.finish((row, 0))
    position = writer.written - writer.skip_tokens  # the stream position where row `row` starts
    doc_start, starts_document = position, True
    pieces = _pieces(itertools.islice(corpus.documents(), row, None), start=row)
    bar = tqdm(total=writer.max_tokens, initial=writer.written, unit="tok", unit_scale=True, desc="tokenizing", disable=not progress)
    with bar:
        for batch, ids, ends in _encoded(_batches(pieces), tokenizer, writer.dtype, num_proc):
            piece_ends = position + ends
            doc_starts = []  # where each piece's document starts in the stream
            for piece, start in zip(batch, position + np.concatenate([[0], ends[:-1]]), strict=True):
                doc_start = int(start) if starts_document else doc_start
                doc_starts.append(doc_start)
                starts_document = piece.last

            before = writer.written
            resume_point = functools.partial(_resume_point, batch, piece_ends, doc_starts)
            writer.write(ids, position, piece_ends[[piece.last for piece in batch]], resume_point)
            bar.update(writer.written - before)
            position += len(ids)
            row = batch[-1].document + 1
            if writer.full:
                break
    return writer.finish((row, 0))


def _resume_point(batch: list[Piece], piece_ends: np.ndarray, doc_starts: list[int], at: int) -> tuple[int, int]:
    """Where a stream stopped at position `at` (within the batch) restarts: (row, how many of its tokens come before `at`)."""
    i = int(np.searchsorted(piece_ends, at, side="right"))
    if i == len(batch) and batch[-1].last:
        return batch[-1].document + 1, 0
    i = min(i, len(batch) - 1)
    return batch[i].document, at - doc_starts[i]


# ---------------------------------------------------------------- command line


def run(options: PrepareOptions, inputs: list[str], say) -> dict:
    """Check the source, load the tokenizer, read the source, write the dataset: mistakes surface before slow work."""
    preset = inputs[0] if len(inputs) == 1 and inputs[0] in PRESETS else None
    if bool(inputs) == bool(options.hf_dataset) or (not preset and set(inputs) & PRESETS.keys()):
        raise DataError("give exactly one source: a preset name, input paths, or --hf_dataset=NAME")
    if not options.out_dir and not preset:
        raise DataError("--out_dir=DIR is required with input paths and with --hf_dataset")
    _check_split_options(options)
    tokenizer = "char" if options.tokenizer == "char" else get_tokenizer(options.tokenizer)
    if isinstance(tokenizer, TiktokenTokenizer) and tokenizer.encoding.name != tokenizer.name:
        say(f"note: tokenizer {tokenizer.name!r} loaded from the identical {tokenizer.encoding.name!r} files")
    if preset:
        corpus = PRESETS[preset](options, say)
    elif options.hf_dataset:
        corpus = hf_corpus(options)
    else:
        corpus = file_corpus(inputs, options)
    out_dir = Path(options.out_dir or DATA_DIR / preset)
    say(f"source: {corpus.description}")
    started = time.perf_counter()
    common = dict(num_proc=options.num_proc, overwrite=options.overwrite, progress=True)
    if options.hf_dataset:
        shard_tokens = SHARD_TOKENS if options.shard_tokens is None else options.shard_tokens
        val_tokens = VAL_TOKENS if options.val_tokens is None else options.val_tokens
        sizes = dict(shard_tokens=shard_tokens, val_tokens=val_tokens, max_tokens=options.max_tokens)
        meta = prepare_shards(corpus, out_dir, tokenizer, **sizes, say=say, **common)
    else:
        meta = prepare(corpus, out_dir, tokenizer, val_fraction=options.val_fraction or 0.1, **common)
    say(
        f"wrote {out_dir}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens "
        f"from {meta['documents']:,} documents, tokenizer {meta['tokenizer']} "
        f"(vocab {meta['vocab_size']:,}, {meta['dtype']}) in {time.perf_counter() - started:.1f}s"
    )
    return meta


def _check_split_options(options: PrepareOptions) -> None:
    """How the tokens are split depends on the source: refuse the other source's options rather than ignore them."""
    sharded = {"shard_tokens": options.shard_tokens, "val_tokens": options.val_tokens, "max_tokens": options.max_tokens}
    if options.hf_dataset and options.val_fraction is not None:
        raise DataError("--val_fraction is for file sources: a streamed --hf_dataset holds out its first --val_tokens tokens instead")
    if not options.hf_dataset and (given := [key for key, value in sharded.items() if value is not None]):
        raise DataError(f"--{given[0]} is for --hf_dataset (token shards); file sources write train.bin and val.bin (--val_fraction)")


def _interrupt(signum, frame):
    for s in STOP_SIGNALS:  # a second Ctrl-C must not cut short the clean-up the first one started
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Exit status as core.entry.run_main's: 0, 2 for a mistake (one `error:` line), 128 + the signal number
    for SIGINT, SIGTERM or SIGHUP."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg == "--input" or arg.startswith("--input=") for arg in argv):  # the argparse days' spelling
        note("data/prepare.py", "--input is deprecated: give the paths as arguments, without --input")
        argv = [arg.removeprefix("--input=") for arg in argv if arg != "--input"]

    def body():
        with _signal_handler(_interrupt):
            description = "Tokenize a text corpus into train.bin, val.bin and meta.json (a Hugging Face dataset: into token shards)."
            options, inputs = load_options(PrepareOptions, argv, "data/prepare.py", USAGE, more_help=MORE_HELP, description=description)
            run(options, inputs, lambda message: print(message, file=sys.stderr))

    kept = "no partial files were left in the output folder (finished shards stay: the same command continues from them)"
    return run_main("data/prepare.py", body, on_interrupt=kept)


if __name__ == "__main__":
    sys.exit(main())
