"""Reader for folders written by data/prepare.py: validates them and memory-maps the tokens.

A folder holds meta.json and the tokens of each split as raw arrays of meta["dtype"], in one of
two layouts:

- single file: train.bin and val.bin.
- sharded (large corpora, streamed by prepare): meta["shards"] lists each split's files in
  order, {"train": [{"file": "train_000000.bin", "tokens": N, "sha256": HEX}, ...], "val": [...]};
  the split is their concatenation.

Either way a split is one long 1-D token array: a read-only np.memmap where it is one file, a
ShardedTokens where it is several. Opening reads no token (see open_dataset).
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.tokenizer import DataError

DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
SPLITS = ("train", "val")
# The meta.json keys this reader uses and the JSON type of each; int means a non-negative integer.
REQUIRED_META = {"tokenizer": str, "vocab_size": int, "eot_id": int, "dtype": str, "train_tokens": int, "val_tokens": int}
# max_token_id (the largest id in the split files) is absent from folders written before
# prepare recorded it; vocab is there for the char tokenizer only; shards only in sharded folders.
OPTIONAL_META = {"max_token_id": int, "vocab": str, "shards": dict}
TYPE_NAMES = {int: "a non-negative integer", str: "a string", dict: "an object"}
ID_CHECK_CHUNK = 1 << 24  # tokens scanned at a time when checking ids (64 MB of uint32)
REPREPARE = "prepare the folder again"


class ShardedTokens:
    """Several token files read as one 1-D array: the shards concatenated in order.

    Offers what training uses of an np.memmap: len(), dtype, integer indexing, and slices with
    step 1, which may cross shard boundaries (the result is then a concatenated copy). Each shard
    is memory-mapped on first access and kept, so creating one costs nothing per token.
    """

    def __init__(self, paths: list[Path], lengths: list[int], dtype: np.dtype):
        if len(paths) != len(lengths) or 0 in lengths:
            raise ValueError("need one length per shard, none zero")  # an empty file cannot be memory-mapped
        self.paths = list(paths)
        self.dtype = np.dtype(dtype)
        self.starts = np.cumsum([0, *lengths])  # shard i holds positions starts[i] up to starts[i + 1]
        self._maps: list[np.memmap | None] = [None] * len(self.paths)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __repr__(self) -> str:
        return f"ShardedTokens({len(self)} {self.dtype.name} tokens in {len(self.paths)} shards)"

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("ShardedTokens slices take step 1 only")
            return self._range(start, stop)
        i = operator.index(key)  # a TypeError for anything but an integer, as numpy gives
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of bounds for {len(self)} tokens")
        i %= len(self)
        shard = self._shard_of(i)
        return self._shard(shard)[i - self.starts[shard]]

    def _shard_of(self, position: int) -> int:
        return int(np.searchsorted(self.starts, position, side="right")) - 1

    def _shard(self, shard: int) -> np.memmap:
        if self._maps[shard] is None:
            self._maps[shard] = np.memmap(self.paths[shard], dtype=self.dtype, mode="r")
        return self._maps[shard]

    def _range(self, start: int, stop: int) -> np.ndarray:
        if start >= stop:
            return np.empty(0, dtype=self.dtype)
        parts = []
        for shard in range(self._shard_of(start), self._shard_of(stop - 1) + 1):
            first = self.starts[shard]
            parts.append(self._shard(shard)[max(start, first) - first : min(stop, self.starts[shard + 1]) - first])
        return np.asarray(parts[0]) if len(parts) == 1 else np.concatenate(parts)


Tokens = np.memmap | ShardedTokens


@dataclass
class TokenDataset:
    """A prepared dataset: `train` and `val` are 1-D token arrays (np.memmap, or ShardedTokens for several shards)."""

    data_dir: Path
    meta: dict
    train: Tokens
    val: Tokens

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]


def open_dataset(data_dir: str | Path) -> TokenDataset:
    """Open and validate a prepared folder, single-file or sharded; raise DataError saying what is wrong.

    Checks that meta.json is complete and well typed, that each token file holds exactly the
    recorded number of tokens of the recorded dtype, and that every id is below the vocab size.
    In a sharded folder it also checks that meta["shards"] is well formed, that every listed
    file is there, and that each split's shards add up to meta's {split}_tokens; all of this
    costs one stat per file. No split may be empty.

    The id check reads no token when meta.json records max_token_id (as data/prepare.py does):
    that number is compared with the vocab size, so opening costs the same for any corpus size.
    Only a folder written before max_token_id existed has its ids scanned (in bounded chunks,
    every token once).
    """
    data_dir = Path(data_dir)
    hint = "prepare it with: python data/prepare.py --help"
    if not data_dir.is_dir():
        raise DataError(f"dataset folder not found: {data_dir} ({hint})")
    meta = _read_meta(data_dir / "meta.json", hint)
    dtype = np.dtype(DTYPES[meta["dtype"]])
    if meta["vocab_size"] > np.iinfo(dtype).max + 1:
        raise DataError(f"{data_dir}/meta.json: vocab size {meta['vocab_size']} does not fit dtype {dtype.name}")
    if "shards" in meta:
        files = {split: _shard_files(data_dir, meta, split, dtype) for split in SPLITS}
    else:
        files = {split: [_single_file(data_dir / f"{split}.bin", dtype, meta[f"{split}_tokens"], hint)] for split in SPLITS}
    if "max_token_id" in meta:
        if meta["max_token_id"] >= meta["vocab_size"]:
            raise DataError(f"{data_dir}/meta.json: max_token_id {meta['max_token_id']} is not below vocab_size {meta['vocab_size']}")
    else:
        for path, tokens in [file for split in SPLITS for file in files[split]]:
            if tokens:  # an empty file cannot be memory-mapped, and holds no id to check
                _check_ids(np.memmap(path, dtype=dtype, mode="r"), meta["vocab_size"], path)
    return TokenDataset(data_dir, meta, *(_split_tokens(files[split], dtype) for split in SPLITS))


def _read_meta(path: Path, hint: str) -> dict:
    if not path.is_file():
        raise DataError(f"{path} is missing: the folder is not a finished dataset ({hint})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path} does not hold a JSON object")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)} ({hint})")
    for key, expected in {**REQUIRED_META, **OPTIONAL_META}.items():
        if key in meta and not _is_a(meta[key], expected):
            raise DataError(f"{path}: {key} must be {TYPE_NAMES[expected]}, not {_shown(meta[key])}")
    if meta["dtype"] not in DTYPES:
        raise DataError(f"{path}: unsupported dtype {meta['dtype']!r} (expected uint16 or uint32)")
    return meta


def _is_a(value, expected: type) -> bool:
    if isinstance(value, bool):  # JSON true/false is a Python int, but never a count or an id
        return False
    return isinstance(value, expected) and not (expected is int and value < 0)


def _shown(value) -> str:
    """value as JSON, cut short to keep an error message to one short line."""
    shown = json.dumps(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _single_file(path: Path, dtype: np.dtype, tokens: int, hint: str) -> tuple[Path, int]:
    """(path, tokens) of a single-file split, after checking the file."""
    _check_size(path, dtype, tokens, missing=f" ({hint})", changed=": the file is truncated or not from this dataset")
    if tokens == 0:
        raise DataError(f"{path} is empty")
    return path, tokens


def _shard_files(data_dir: Path, meta: dict, split: str, dtype: np.dtype) -> list[tuple[Path, int]]:
    """(path, tokens) of each shard of a split of a sharded folder, after checking meta["shards"] and the files."""
    meta_path = data_dir / "meta.json"
    entries = meta["shards"].get(split)
    if not isinstance(entries, list):
        raise DataError(f"{meta_path}: shards.{split} must be a list of shards, not {_shown(entries)}; {REPREPARE}")
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and _is_a(entry.get("tokens"), int) and _is_a(entry.get("sha256"), str)):
            raise DataError(
                f'{meta_path}: shards.{split}[{i}] must be {{"file": NAME, "tokens": N, "sha256": HEX}}, not {_shown(entry)}; {REPREPARE}'
            )
        name = entry.get("file")
        # a plain name, so that meta.json can only point at files inside the folder
        if not (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name):
            raise DataError(f"{meta_path}: shards.{split}[{i}].file must be a file name in the folder, not {_shown(name)}; {REPREPARE}")
    total = sum(entry["tokens"] for entry in entries)
    if total != meta[f"{split}_tokens"]:
        raise DataError(
            f"{meta_path}: the {split} shards hold {total} tokens in all but {split}_tokens says {meta[f'{split}_tokens']}; {REPREPARE}"
        )
    if total == 0:
        raise DataError(f"{meta_path}: the {split} split is empty ({len(entries)} shards, no token); {REPREPARE} with more text")
    files = [(data_dir / entry["file"], entry["tokens"]) for entry in entries]
    for path, tokens in files:
        _check_size(
            path,
            dtype,
            tokens,
            missing=f", but meta.json lists it: the shard was deleted after prepare; {REPREPARE}",
            changed=f": the shard was truncated or changed after prepare; {REPREPARE}",
        )
    return files


def _check_size(path: Path, dtype: np.dtype, tokens: int, missing: str, changed: str) -> None:
    """Raise DataError unless path holds exactly `tokens` tokens of dtype; `missing` and `changed` end the messages."""
    if not path.is_file():
        raise DataError(f"{path} is missing{missing}")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise DataError(f"{path} has {size} bytes, not a multiple of {dtype.itemsize} ({dtype.name}){changed}")
    if size // dtype.itemsize != tokens:
        raise DataError(f"{path} holds {size // dtype.itemsize} tokens but meta.json says {tokens}{changed}")


def _split_tokens(files: list[tuple[Path, int]], dtype: np.dtype) -> Tokens:
    """A split's tokens: an np.memmap of its one file, or ShardedTokens over several."""
    files = [(path, tokens) for path, tokens in files if tokens]  # an empty shard adds nothing, and cannot be mapped
    if len(files) == 1:
        return np.memmap(files[0][0], dtype=dtype, mode="r")
    return ShardedTokens([path for path, _ in files], [tokens for _, tokens in files], dtype)


def _check_ids(tokens: np.ndarray, vocab_size: int, path: Path) -> None:
    for start in range(0, len(tokens), ID_CHECK_CHUNK):
        largest = int(tokens[start : start + ID_CHECK_CHUNK].max())
        if largest >= vocab_size:
            raise DataError(f"{path} holds token id {largest}, not below the vocab size {vocab_size}")


def batch_from_offsets(tokens: Tokens | np.ndarray, offsets, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x = tokens[o:o+T] and targets y = tokens[o+1:o+T+1] for each offset o.

    `tokens` is any 1-D token array: np.ndarray, np.memmap or ShardedTokens.
    Returns two int64 tensors of shape (len(offsets), block_size).
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
    if offsets.size == 0 or offsets.min() < 0 or offsets.max() + block_size + 1 > len(tokens):
        raise ValueError(f"need at least one offset, each in [0, {len(tokens) - block_size - 1}] for block size {block_size}")
    windows = torch.from_numpy(np.stack([np.asarray(tokens[o : o + block_size + 1], dtype=np.int64) for o in offsets]))
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
