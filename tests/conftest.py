"""Shared fixtures. Data fixtures build tiny tiktoken encodings in-process: no network, no ../shared."""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import torch

from data.prepare import prepare
from data.tokenizer import TiktokenTokenizer

# Tiny test models run several times faster on one thread than on two that contend; child
# processes (train.py, torchrun, compare.py) inherit the setting.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent

# Runs a script after arranging a real SIGINT the moment it starts importing `module`.
CTRL_C_AT_IMPORT = """
import os, runpy, signal, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, CtrlC())
sys.argv = {argv!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def ctrl_c_while_importing(script, module, *args):
    """Run the project's `script` with a real Ctrl-C as it starts importing `module`."""
    program = CTRL_C_AT_IMPORT.format(module=module, argv=[script, *args], script=script)
    return subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)


# GPT-2's split pattern, so the tiny encodings pre-tokenize exactly like gpt2
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
MERGES = [b"th", b"he", b"the", b" t", b" the", b"in", b"ing", b"\n\n"]


def tiny_encoding(name: str = "tiny", eot_id: int | None = None) -> tiktoken.Encoding:
    """Byte-level BPE with a few merges; <|endoftext|> gets the next free id unless eot_id is given."""
    ranks = {bytes([i]): i for i in range(256)}
    for merge in MERGES:
        ranks[merge] = len(ranks)
    eot = len(ranks) if eot_id is None else eot_id
    return tiktoken.Encoding(name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": eot})


@pytest.fixture
def tiny_tokenizer():
    return TiktokenTokenizer(tiny_encoding())


@pytest.fixture
def wide_tokenizer():
    """End-of-text id 70000: the vocabulary no longer fits uint16."""
    return TiktokenTokenizer(tiny_encoding("tiny_wide", eot_id=70_000))


@pytest.fixture
def write_files(tmp_path):
    """write_files({"a.txt": "text", "sub/b.bin": b"bytes"}) -> folder holding those files."""

    def write(files: dict, folder: str = "corpus") -> Path:
        root = tmp_path / folder
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", newline="")
        root.mkdir(parents=True, exist_ok=True)
        return root

    return write


# The model and schedule every training test starts from: a second of CPU per 40 iterations, and
# big enough to learn make_corpus's language. Tests override only what they are about.
TINY_TRAINING = dict(
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=8,
    max_iters=40,
    eval_interval=20,
    eval_iters=4,
    log_interval=5,
    learning_rate=1e-2,
    warmup_iters=5,
    device="cpu",
    dtype="float32",
    mlp="swiglu",
)


def tiny_config(data_dir, out_dir, **overrides):
    """A TrainConfig of TINY_TRAINING for data_dir and out_dir, with `overrides`."""
    from core.configs import TrainConfig

    return TrainConfig(**{**TINY_TRAINING, "data_dir": str(data_dir), "out_dir": str(out_dir), **overrides})


def tiny_argv(**overrides):
    """TINY_TRAINING with `overrides` as train.py's --key=value arguments (data_dir, out_dir among them when given)."""
    return [f"--{key}={value}" for key, value in {**TINY_TRAINING, **overrides}.items()]


def make_corpus(n_docs=12, words_per_doc=400, seed=0):
    """Documents of a tiny made-up language with enough structure for a model to learn."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red", "house", "."]
    return [" ".join(rng.choice(words) for _ in range(words_per_doc)) for _ in range(n_docs)]


@pytest.fixture(scope="session")
def char_data(tmp_path_factory):
    """A prepared character-level dataset of about 20k tokens (path as a string)."""
    out = tmp_path_factory.mktemp("data") / "tiny_char"
    prepare(make_corpus(), out, "char", val_fraction=0.1)
    return str(out)


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """The real wandb, logging offline under tmp_path/wandb (the test skips where wandb is not installed)."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb.teardown()  # wandb keeps the settings of its first run in this process, WANDB_DIR included
    return wandb


def write_sharded(source, dest, shard_tokens):
    """A copy of the single-file folder `source` in the sharded layout at `dest`: train.bin cut into
    shards of shard_tokens tokens (the last one shorter), val.bin as it is, meta.json listing them."""
    dest.mkdir(parents=True)
    meta = json.loads((source / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    train = np.fromfile(source / "train.bin", dtype=dtype)
    shutil.copyfile(source / "val.bin", dest / "val.bin")
    for i, start in enumerate(range(0, len(train), shard_tokens)):
        train[start : start + shard_tokens].tofile(dest / f"train_{i:06d}.bin")

    def entries(names):
        return [
            {
                "file": n,
                "tokens": (dest / n).stat().st_size // dtype.itemsize,
                "sha256": hashlib.sha256((dest / n).read_bytes()).hexdigest(),
            }
            for n in names
        ]

    names = sorted(path.name for path in dest.glob("train_*.bin"))
    meta.update(shard_tokens=shard_tokens, shards={"val": entries(["val.bin"]), "train": entries(names)})
    (dest / "meta.json").write_text(json.dumps(meta, indent=1))
    return dest
