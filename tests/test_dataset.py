"""data/dataset.py: opening prepared folders, rejecting damaged ones, and cutting batches."""

import json

import numpy as np
import pytest
import torch

import data.dataset as dataset_module
from data.dataset import batch_from_offsets, open_dataset
from data.prepare import prepare
from data.tokenizer import DataError, tokenizer_from_meta

TEXTS = ["to be or not to be\n", "that is the question\n"]


@pytest.fixture
def prepared(tmp_path):
    """A char-level dataset folder built from TEXTS."""
    prepare(TEXTS, tmp_path / "ds", "char", val_fraction=0.2)
    return tmp_path / "ds"


def edit_meta(folder, drop=(), **changes):
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    for key in drop:
        del meta[key]
    (folder / "meta.json").write_text(json.dumps(meta))


def put_id_beyond_the_vocabulary(folder):
    """Make the last train token vocab_size (one past the largest valid id); return vocab_size."""
    tokens = np.fromfile(folder / "train.bin", dtype=np.uint16)
    vocab_size = json.loads((folder / "meta.json").read_text())["vocab_size"]
    tokens[-1] = vocab_size
    tokens.tofile(folder / "train.bin")
    return vocab_size


def test_open_dataset_serves_the_prepared_tokens(prepared):
    ds = open_dataset(prepared)
    assert ds.data_dir == prepared
    assert isinstance(ds.train, np.memmap) and ds.train.dtype == np.uint16 and ds.val.dtype == np.uint16
    assert (len(ds.train), len(ds.val)) == (ds.meta["train_tokens"], ds.meta["val_tokens"])
    assert ds.vocab_size == ds.meta["vocab_size"] == len(set("".join(TEXTS))) + 1
    text = tokenizer_from_meta(ds.meta).decode(np.concatenate([ds.train, ds.val]))
    assert text == "".join(t + "\x00" for t in TEXTS)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        open_dataset(tmp_path / "nothing")


def test_missing_meta(prepared):
    (prepared / "meta.json").unlink()
    with pytest.raises(DataError, match="meta.json is missing.*data/prepare.py"):
        open_dataset(prepared)


def test_unreadable_or_incomplete_meta(prepared):
    (prepared / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        open_dataset(prepared)
    (prepared / "meta.json").write_text(json.dumps({"tokenizer": "char", "dtype": "uint16"}))
    with pytest.raises(DataError, match="lacks vocab_size, eot_id, train_tokens, val_tokens"):
        open_dataset(prepared)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("vocab_size", "85", "a non-negative integer"),
        ("vocab_size", True, "a non-negative integer"),
        ("train_tokens", 1.5, "a non-negative integer"),
        ("val_tokens", -3, "a non-negative integer"),
        ("eot_id", "0", "a non-negative integer"),
        ("max_token_id", None, "a non-negative integer"),
        ("dtype", 3, "a string"),
        ("tokenizer", ["char"], "a string"),
        ("vocab", list("abcdefghijklmnopqrstuvwxyz"), "a string"),
    ],
)
def test_meta_field_of_the_wrong_type(prepared, key, value, expected):
    edit_meta(prepared, **{key: value})
    with pytest.raises(DataError) as error:
        open_dataset(prepared)
    message = str(error.value)
    assert message.startswith(f"{prepared / 'meta.json'}: {key} must be {expected}, not ")
    assert json.dumps(value)[:30] in message  # long values are cut short, to keep one short line
    assert "\n" not in message and len(message) < len(str(prepared)) + 100


def test_meta_records_the_largest_id_so_open_reads_no_token(prepared):
    meta = json.loads((prepared / "meta.json").read_text())
    tokens = np.concatenate([np.fromfile(prepared / f"{split}.bin", dtype=np.uint16) for split in ("train", "val")])
    assert meta["max_token_id"] == tokens.max() == meta["vocab_size"] - 1

    # an id out of range in the file goes unseen: proof that opening does not scan the tokens
    put_id_beyond_the_vocabulary(prepared)
    assert len(open_dataset(prepared).train) == meta["train_tokens"]

    edit_meta(prepared, max_token_id=meta["vocab_size"])
    with pytest.raises(DataError, match=f"max_token_id {meta['vocab_size']} is not below vocab_size"):
        open_dataset(prepared)


def test_missing_bin_file(prepared):
    (prepared / "val.bin").unlink()
    with pytest.raises(DataError, match="val.bin is missing"):
        open_dataset(prepared)


def test_size_not_a_multiple_of_the_dtype(prepared):
    with open(prepared / "train.bin", "ab") as f:
        f.write(b"\x01")
    with pytest.raises(DataError, match="not a multiple of 2"):
        open_dataset(prepared)


def test_token_count_differs_from_meta(prepared):
    with open(prepared / "train.bin", "ab") as f:
        f.write(b"\x01\x00")
    with pytest.raises(DataError, match="meta.json says"):
        open_dataset(prepared)


def test_folder_without_max_token_id_has_its_ids_scanned(prepared, monkeypatch):
    """Folders written before prepare recorded max_token_id still open, checked the slow way."""
    monkeypatch.setattr(dataset_module, "ID_CHECK_CHUNK", 3)
    edit_meta(prepared, drop=["max_token_id"])
    assert len(open_dataset(prepared).val) > 0

    vocab_size = put_id_beyond_the_vocabulary(prepared)  # found in the last chunk
    with pytest.raises(DataError, match=f"train.bin holds token id {vocab_size}, not below the vocab size"):
        open_dataset(prepared)


def test_dtype_that_cannot_hold_the_vocabulary(prepared):
    edit_meta(prepared, vocab_size=70_000)
    with pytest.raises(DataError, match="does not fit dtype uint16"):
        open_dataset(prepared)
    edit_meta(prepared, dtype="float32")
    with pytest.raises(DataError, match="unsupported dtype 'float32'"):
        open_dataset(prepared)


def test_tokenizer_that_does_not_match_meta(prepared):
    edit_meta(prepared, vocab="\x00abc")
    with pytest.raises(DataError, match="vocab size 4"):
        tokenizer_from_meta(open_dataset(prepared).meta)


def test_batch_from_offsets():
    tokens = np.arange(20, dtype=np.uint16)
    x, y = batch_from_offsets(tokens, [0, 5, 11], block_size=8)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (3, 8)
    assert x[1].tolist() == list(range(5, 13))
    assert torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="offset"):
        batch_from_offsets(tokens, [12], block_size=8)  # its target would run past the end
    with pytest.raises(ValueError, match="offset"):
        batch_from_offsets(tokens, [-1], block_size=8)
