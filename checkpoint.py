"""Checkpoints: written atomically, readable whether or not the model that wrote them was compiled."""

import os
from pathlib import Path

import torch

from metrics import CHECKPOINT_NAME
from model import GPT, GPTConfig


class CheckpointError(ValueError):
    """A checkpoint that is missing or unreadable; the message is one line for the user."""


def clean_state_dict(state_dict):
    """Strip the prefixes that torch.compile and DDP add to parameter names."""
    prefixes = ("_orig_mod.", "module.")
    cleaned = {}
    for key, value in state_dict.items():
        while key.startswith(prefixes):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def save_checkpoint(out_dir, state):
    """Write `state` to out_dir/ckpt.pt through a temporary file and a rename.

    A crash or a kill during the write leaves the previous checkpoint as it was.
    """
    path = Path(out_dir) / CHECKPOINT_NAME
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(out_dir, map_location="cpu"):
    """The state dict saved by save_checkpoint in out_dir."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None


def model_from_checkpoint(checkpoint):
    """A GPT built from a checkpoint's model_args with its weights loaded."""
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict(clean_state_dict(checkpoint["model"]))
    return model
