"""Reader for folders written by data/prepare.py: validates them and memory-maps the tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.tokenizer import DataError

DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
# The meta.json keys this reader uses and the JSON type of each; int means a non-negative integer.
REQUIRED_META = {"tokenizer": str, "vocab_size": int, "eot_id": int, "dtype": str, "train_tokens": int, "val_tokens": int}
# max_token_id (the largest id in train.bin and val.bin) is absent from folders written before
# prepare recorded it; vocab is there for the char tokenizer only.
OPTIONAL_META = {"max_token_id": int, "vocab": str}
TYPE_NAMES = {int: "a non-negative integer", str: "a string"}
ID_CHECK_CHUNK = 1 << 24  # tokens scanned at a time when checking ids (64 MB of uint32)


@dataclass
class TokenDataset:
    """A prepared dataset: `train` and `val` are read-only np.memmap token arrays."""

    data_dir: Path
    meta: dict
    train: np.memmap
    val: np.memmap

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]


def open_dataset(data_dir: str | Path) -> TokenDataset:
    """Open and validate a prepared folder; raise DataError saying what is wrong.

    Checks that meta.json is complete and well typed, that each bin file holds
    exactly the recorded number of tokens of the recorded dtype, and that every id
    is below the vocab size. The last check reads no token when meta.json records
    max_token_id (as data/prepare.py does): that number is compared with the vocab
    size, so opening costs the same for any corpus size. Only a folder written
    before max_token_id existed has its ids scanned (in bounded chunks, every token once).
    """
    data_dir = Path(data_dir)
    hint = "prepare it with: python data/prepare.py --help"
    if not data_dir.is_dir():
        raise DataError(f"dataset folder not found: {data_dir} ({hint})")
    meta = _read_meta(data_dir / "meta.json", hint)
    dtype = np.dtype(DTYPES[meta["dtype"]])
    if meta["vocab_size"] > np.iinfo(dtype).max + 1:
        raise DataError(f"{data_dir}/meta.json: vocab size {meta['vocab_size']} does not fit dtype {dtype.name}")
    splits = {split: _open_split(data_dir / f"{split}.bin", dtype, meta[f"{split}_tokens"], hint) for split in ("train", "val")}
    if "max_token_id" in meta:
        if meta["max_token_id"] >= meta["vocab_size"]:
            raise DataError(f"{data_dir}/meta.json: max_token_id {meta['max_token_id']} is not below vocab_size {meta['vocab_size']}")
    else:
        for split, tokens in splits.items():
            _check_ids(tokens, meta["vocab_size"], data_dir / f"{split}.bin")
    return TokenDataset(data_dir, meta, splits["train"], splits["val"])


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
            shown = json.dumps(meta[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise DataError(f"{path}: {key} must be {TYPE_NAMES[expected]}, not {shown}")
    if meta["dtype"] not in DTYPES:
        raise DataError(f"{path}: unsupported dtype {meta['dtype']!r} (expected uint16 or uint32)")
    return meta


def _is_a(value, expected: type) -> bool:
    if isinstance(value, bool):  # JSON true/false is a Python int, but never a count or an id
        return False
    return isinstance(value, expected) and not (expected is int and value < 0)


def _open_split(path: Path, dtype: np.dtype, expected_tokens: int, hint: str) -> np.memmap:
    if not path.is_file():
        raise DataError(f"{path} is missing ({hint})")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise DataError(
            f"{path} has {size} bytes, not a multiple of {dtype.itemsize} ({dtype.name}): the file is truncated or not from this dataset"
        )
    if size // dtype.itemsize != expected_tokens:
        raise DataError(f"{path} holds {size // dtype.itemsize} tokens but meta.json says {expected_tokens}")
    if expected_tokens == 0:
        raise DataError(f"{path} is empty")
    return np.memmap(path, dtype=dtype, mode="r")


def _check_ids(tokens: np.ndarray, vocab_size: int, path: Path) -> None:
    for start in range(0, len(tokens), ID_CHECK_CHUNK):
        largest = int(tokens[start : start + ID_CHECK_CHUNK].max())
        if largest >= vocab_size:
            raise DataError(f"{path} holds token id {largest}, not below the vocab size {vocab_size}")


def batch_from_offsets(tokens: np.ndarray, offsets, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x = tokens[o:o+T] and targets y = tokens[o+1:o+T+1] for each offset o.

    Returns two int64 tensors of shape (len(offsets), block_size).
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
    if offsets.size == 0 or offsets.min() < 0 or offsets.max() + block_size + 1 > len(tokens):
        raise ValueError(f"need at least one offset, each in [0, {len(tokens) - block_size - 1}] for block size {block_size}")
    windows = torch.from_numpy(np.stack([np.asarray(tokens[o : o + block_size + 1], dtype=np.int64) for o in offsets]))
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()
