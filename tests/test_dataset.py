"""data/dataset.py: opening prepared folders, rejecting damaged ones, and cutting batches."""

import json

import numpy as np
import pytest
import torch
from conftest import write_sharded

import data.dataset as dataset_module
from data.dataset import ShardedTokens, batch_from_offsets, open_dataset
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


@pytest.fixture
def sharded(prepared, tmp_path):
    """`prepared` in the sharded layout: 33 train tokens in shards of 10, 10, 10 and 3."""
    return write_sharded(prepared, tmp_path / "sharded", shard_tokens=10)


def edit_shards(folder, change):
    """Apply change(shards) to meta.json's "shards" object."""
    meta = json.loads((folder / "meta.json").read_text())
    change(meta["shards"])
    (folder / "meta.json").write_text(json.dumps(meta))


def test_sharded_folder_reads_as_the_shards_concatenated(prepared, sharded):
    whole = open_dataset(prepared).train
    ds = open_dataset(sharded)
    assert isinstance(ds.train, ShardedTokens) and len(ds.train.paths) == 4
    assert (len(ds.train), ds.train.dtype) == (len(whole), whole.dtype) == (33, np.uint16)
    assert isinstance(ds.val, np.memmap) and np.array_equal(ds.val, open_dataset(prepared).val)
    n = len(whole)
    for start in range(-2, n + 2):  # every slice, those across one or more boundaries among them
        for stop in [*range(start, n + 2), None, -1]:
            assert np.array_equal(ds.train[start:stop], whole[start:stop]), (start, stop)
    assert ds.train[:].dtype == np.uint16 and not ds.train[3:5].flags.writeable
    assert [ds.train[i] for i in range(-n, n)] == [whole[i] for i in range(-n, n)]
    assert ds.train[np.int64(10)] == whole[10]
    for bad, error in [(n, IndexError), (-n - 1, IndexError), (slice(0, 9, 2), IndexError), (1.0, TypeError)]:
        with pytest.raises(error):
            ds.train[bad]


def test_shards_are_mapped_when_first_read(sharded):
    ds = open_dataset(sharded)
    (sharded / "train_000002.bin").unlink()  # after opening: only reading it can miss it
    assert len(ds.train[:20]) == 20
    with pytest.raises(FileNotFoundError):
        ds.train[25]


def test_batches_across_shard_boundaries_are_those_of_the_concatenated_tokens(prepared, sharded):
    whole, shards = open_dataset(prepared).train, open_dataset(sharded).train
    offsets = range(len(whole) - 8)  # every window of 8 + 1 tokens: many cross a boundary, some two
    for a, b in zip(batch_from_offsets(whole, offsets, 8), batch_from_offsets(shards, offsets, 8), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="offset"):
        batch_from_offsets(shards, [len(whole) - 8], 8)


def test_a_split_of_one_shard_is_a_memmap(prepared, tmp_path):
    sharded = write_sharded(prepared, tmp_path / "one", shard_tokens=100)
    ds = open_dataset(sharded)
    assert isinstance(ds.train, np.memmap) and str(ds.train.filename) == str(sharded / "train_000000.bin")
    assert np.array_equal(ds.train, open_dataset(prepared).train)


def test_empty_shards_add_nothing(prepared, sharded):
    (sharded / "train_empty.bin").write_bytes(b"")
    edit_shards(sharded, lambda shards: shards["train"].insert(2, {"file": "train_empty.bin", "tokens": 0, "sha256": ""}))
    assert np.array_equal(open_dataset(sharded).train[:], open_dataset(prepared).train)


def truncate(path, nbytes):
    path.write_bytes(path.read_bytes()[:-nbytes])


SHARD_PROBLEMS = {
    "missing shard": (
        lambda d: (d / "train_000003.bin").unlink(),
        "train_000003.bin is missing, but meta.json lists it: the shard was deleted after prepare; prepare the folder again",
    ),
    "missing val": (lambda d: (d / "val.bin").unlink(), "val.bin is missing, but meta.json lists it"),
    "truncated shard": (
        lambda d: truncate(d / "train_000001.bin", 2),
        "train_000001.bin holds 9 tokens but meta.json says 10: the shard was truncated or changed after prepare; prepare the folder again",
    ),
    "odd size": (
        lambda d: truncate(d / "train_000001.bin", 1),
        "train_000001.bin has 19 bytes, not a multiple of 2 (uint16): the shard was",
    ),
    "counts not summing": (
        lambda d: edit_shards(d, lambda s: s["train"][0].update(tokens=9)),
        "meta.json: the train shards hold 32 tokens in all but train_tokens says 33; prepare the folder again",
    ),
    "file outside the folder": (
        lambda d: edit_shards(d, lambda s: s["train"][1].update(file="../x.bin")),
        'meta.json: shards.train[1].file must be a file name in the folder, not "../x.bin"; prepare the folder again',
    ),
    "file in a subfolder": (lambda d: edit_shards(d, lambda s: s["val"][0].update(file="sub/val.bin")), 'not "sub/val.bin"'),
    "file ..": (
        lambda d: edit_shards(d, lambda s: s["val"][0].update(file="..")),
        'shards.val[0].file must be a file name in the folder, not ".."',
    ),
    "file not a string": (
        lambda d: edit_shards(d, lambda s: s["val"][0].update(file=3)),
        "shards.val[0].file must be a file name in the folder, not 3",
    ),
    "tokens negative": (
        lambda d: edit_shards(d, lambda s: s["train"][2].update(tokens=-1)),
        'shards.train[2] must be {"file": NAME, "tokens": N',
    ),
    "tokens a string": (lambda d: edit_shards(d, lambda s: s["train"][2].update(tokens="10")), "shards.train[2] must be"),
    "no sha256": (lambda d: edit_shards(d, lambda s: s["train"][3].pop("sha256")), "shards.train[3] must be"),
    "entry not an object": (lambda d: edit_shards(d, lambda s: s["val"].append("val.bin")), 'shards.val[1] must be {"file": NAME'),
    "empty split": (
        lambda d: (edit_shards(d, lambda s: s["val"].clear()), edit_meta(d, val_tokens=0)),
        "meta.json: the val split is empty (0 shards, no token); prepare the folder again with more text",
    ),
    "split of empty shards": (
        lambda d: ((d / "val.bin").write_bytes(b""), edit_shards(d, lambda s: s["val"][0].update(tokens=0)), edit_meta(d, val_tokens=0)),
        "the val split is empty (1 shards, no token)",
    ),
    "split not listed": (lambda d: edit_shards(d, lambda s: s.pop("val")), "meta.json: shards.val must be a list of shards, not null"),
    "shards not an object": (lambda d: edit_meta(d, shards=[]), "meta.json: shards must be an object, not []"),
}


@pytest.mark.parametrize("problem", SHARD_PROBLEMS)
def test_a_damaged_sharded_folder_is_one_line_naming_the_file(sharded, problem):
    damage, expected = SHARD_PROBLEMS[problem]
    damage(sharded)
    with pytest.raises(DataError) as error:
        open_dataset(sharded)
    message = str(error.value)
    assert message.startswith(str(sharded)) and expected in message and "\n" not in message, message


def test_sharded_folder_without_max_token_id_has_each_shard_scanned(sharded):
    edit_meta(sharded, drop=["max_token_id"])
    assert len(open_dataset(sharded).train) == 33
    vocab_size = json.loads((sharded / "meta.json").read_text())["vocab_size"]
    tokens = np.fromfile(sharded / "train_000002.bin", dtype=np.uint16)
    tokens[0] = vocab_size
    tokens.tofile(sharded / "train_000002.bin")
    with pytest.raises(DataError, match=f"train_000002.bin holds token id {vocab_size}, not below the vocab size"):
        open_dataset(sharded)
