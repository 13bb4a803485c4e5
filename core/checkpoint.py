"""Checkpoints: written atomically, loaded as plain data only.

A checkpoint is loaded with torch.load(weights_only=True): tensors, numbers, strings, None and
lists, tuples and dicts of them, which is all train.py writes. Anything else in the pickle (an
object whose unpickling would call a function) is refused, so a crafted ckpt.pt cannot run code.
"""

import io
import pickle
import re
import warnings
from pathlib import Path

import torch

from core.atomic import atomic_write, remove_file, temp_path
from core.entry import UserError
from model import GPT, SPEED_FIELDS, GPTConfig

CHECKPOINT_NAME = "ckpt.pt"

# What sample.py needs to rebuild the model and its tokenizer; resuming a run needs the rest too.
MODEL_KEYS = ("model", "model_args", "data_meta")
RESUME_KEYS = (*MODEL_KEYS, "optimizer", "config", "iter", "best_val_loss", "val_loss", "elapsed", "wandb_run_id", "rng")
# the keys whose type a hand-edited checkpoint may have changed, checked before anything reads them
PLAIN_TYPES = {"model": dict, "model_args": dict, "data_meta": dict, "config": dict, "optimizer": dict, "rng": list, "iter": int}


def foreign(script):
    """What to do about a file we refuse."""
    return f"use a checkpoint written by this project's {script}"


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, unsafe or unwritable; the message is one line for the user."""


def remove_stale_temp(out_dir):
    """Delete the ckpt.pt.tmp that a run killed during a save leaves behind; True if there was one.

    Call it when a run starts, before its first save. load_checkpoint does not: sample.py may
    read a run's checkpoint while train.py is writing the next one, and that tmp is not stale.
    """
    tmp = temp_path(Path(out_dir) / CHECKPOINT_NAME)
    try:
        return remove_file(tmp)
    except OSError as e:
        raise CheckpointError(f"cannot remove the leftover {tmp} ({e.strerror}); delete it by hand") from None


def save_checkpoint(out_dir, state):
    """Write `state` to out_dir/ckpt.pt atomically (atomic.atomic_write).

    A crash, a kill or a failed write (disk full, read-only folder) leaves the previous
    checkpoint as it was; a failed write raises CheckpointError saying so.
    """
    path = Path(out_dir) / CHECKPOINT_NAME
    try:
        with atomic_write(path, "wb") as f:
            torch.save(state, f)
    except RuntimeError:  # torch's writer hides the OS's reason (a full disk reads "enforce fail at inline_container.cc")
        _write_through_python(path, state)
    except OSError as e:
        _refuse_write(path, e)
    return path


def _write_through_python(path, state):
    """Serialise in memory and write the bytes with Python's own file calls, which raise the OS's reason.

    Only after torch's own writer failed: the memory it costs is spent on the error path alone.
    """
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)  # fails again when the state itself cannot be saved: that is the reason then
        with atomic_write(path, "wb") as f:
            f.write(buffer.getbuffer())
    except (OSError, RuntimeError) as e:
        _refuse_write(path, e)


def _refuse_write(path, error):
    """Raise the CheckpointError of a failed save: the reason, and whether the previous checkpoint is still there."""
    kept = "the previous checkpoint there is intact" if path.is_file() else "no checkpoint was saved"
    raise CheckpointError(f"could not write checkpoint to {path} ({_reason(error)}); {kept}") from None


def _reason(error):
    """A short reason for a failed read or write: the OS's words, or the first line of torch's message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:100]


def load_checkpoint(out_dir, map_location="cpu", required=RESUME_KEYS, written_by="train.py"):
    """The dict saved by save_checkpoint in out_dir, checked to hold the `required` keys (those `written_by` saves).

    Raises CheckpointError when the file is missing, unreadable, not a PyTorch checkpoint, holds
    anything but plain data (refused before any of it can run), lacks a required key, or has one
    of another type than this project writes.
    """
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    checkpoint = _read_plain_data(path, map_location, written_by)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict; {foreign(written_by)}")
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}; {foreign(written_by)}")
    for key, kind in PLAIN_TYPES.items():
        if key in checkpoint and not isinstance(checkpoint[key], kind):
            found = type(checkpoint[key]).__name__
            raise CheckpointError(f"checkpoint {path}: {key} is a {found}, not a {kind.__name__}; {foreign(written_by)}")
    return checkpoint


def _read_plain_data(path, map_location, written_by):
    """torch.load(weights_only=True), with each way it can fail turned into one short line."""
    try:
        f = open(path, "rb")  # opened apart: torch itself raises OSError for some truncated files
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({_reason(e)})") from None
    try:
        with f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about some refused files before raising: the line below says it all
            return torch.load(f, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, UnpicklingError, ... for damaged files
        # the weights-only unpickler names the first object it refused as "GLOBAL module.name";
        # without such a name the pickle itself is broken (random bytes, a plain pickle.dump file)
        unsafe = re.search(r"GLOBAL (\S+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if unsafe:
            raise CheckpointError(
                f"checkpoint {path} holds objects that are not plain data ({unsafe[1]}) and will not be loaded; {foreign(written_by)}"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint or truncated ({type(e).__name__})") from None


def gpt_from_args(model_args, **overrides):
    """An untrained GPT of a checkpoint's model_args (with `overrides`), its speed-only settings left at their defaults."""
    args = {key: value for key, value in model_args.items() if key not in SPEED_FIELDS}
    try:
        return GPT(GPTConfig(**{**args, **overrides}))
    except (TypeError, ValueError) as e:  # an unknown key, or a value GPTConfig refuses
        raise CheckpointError(f"the checkpoint's model_args describe no model this project builds: {e}") from None


def load_weights(model, checkpoint):
    """Load the checkpoint's weights into `model`; CheckpointError when they do not fit it (a hand-edited model_args)."""
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(f"the checkpoint's weights do not fit its model_args: {detail[:200]}") from None


def model_from_checkpoint(checkpoint, **overrides):
    """A GPT built from a checkpoint's model_args (with `overrides`, e.g. dropout) and its weights loaded.

    The speed-only settings the run trained with are left at their defaults: they suit the
    machine that trained it, and the caller (a resume) sets its own.
    """
    model = gpt_from_args(checkpoint["model_args"], **overrides)
    load_weights(model, checkpoint)
    return model
