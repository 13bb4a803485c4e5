"""Tests for checkpoint.py: what loads (a real training run's checkpoint, plain data), what is refused
with one line (code in the pickle, foreign or damaged files), and that a failed save loses nothing."""

import os

import pytest
import torch
from conftest import tiny_config

from core.atomic import temp_path
from core.checkpoint import (
    CHECKPOINT_NAME,
    MODEL_KEYS,
    RESUME_KEYS,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    remove_stale_temp,
    save_checkpoint,
)
from train import train


@pytest.fixture(scope="module")
def trained_run(char_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    train(
        tiny_config(
            char_data,
            out,
            n_layer=1,
            n_embd=16,
            block_size=16,
            batch_size=4,
            max_iters=10,
            eval_interval=10,
            eval_iters=1,
            log_interval=10,
            dropout=0.1,
        )
    )
    return out


class RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a crafted checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def one_line_error(out_dir, **kwargs):
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(out_dir, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_real_training_checkpoint_loads_as_plain_data(trained_run):
    checkpoint = load_checkpoint(trained_run)
    assert set(RESUME_KEYS) <= set(checkpoint) and checkpoint["iter"] == 10
    assert isinstance(checkpoint["rng"][0]["torch"], torch.Tensor) and checkpoint["optimizer"]["state"]
    model = model_from_checkpoint(checkpoint)
    assert model.config.n_layer == 1 and torch.equal(model.lm_head.weight, checkpoint["model"]["lm_head.weight"])


def test_plain_data_of_every_kind_train_py_writes_round_trips(tmp_path):
    state = {
        "model": {"w": torch.ones(2)},
        "iter": 3,
        "best_val_loss": float("inf"),
        "val_loss": None,
        "elapsed": 1.5,
        "wandb_run_id": "abc",
        "betas": (0.9, 0.95),
        "rng": [{"torch": torch.get_rng_state(), "cuda": None}],
        "flag": True,
    }
    save_checkpoint(tmp_path, state)
    loaded = load_checkpoint(tmp_path, required=())
    assert loaded["best_val_loss"] == float("inf") and loaded["betas"] == (0.9, 0.95) and loaded["val_loss"] is None
    assert torch.equal(loaded["rng"][0]["torch"], state["rng"][0]["torch"])


def test_a_checkpoint_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"model": RunsCodeWhenUnpickled(marker), "model_args": {}, "data_meta": {}}, tmp_path / "ckpt.pt")
    message = one_line_error(tmp_path, required=MODEL_KEYS)
    assert "not plain data" in message and "will not be loaded" in message and str(tmp_path / "ckpt.pt") in message
    assert not marker.exists()
    torch.load(tmp_path / "ckpt.pt", weights_only=False)  # the old way of loading: the payload is live
    assert marker.exists()


def test_a_foreign_checkpoint_names_the_keys_it_lacks(tmp_path):
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "ckpt.pt")
    message = one_line_error(tmp_path)
    assert str(tmp_path / "ckpt.pt") in message and "lacks model_args, data_meta, optimizer" in message
    assert "lacks model_args, data_meta;" in one_line_error(tmp_path, required=MODEL_KEYS)


def test_a_checkpoint_that_is_not_a_dict_is_refused(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "ckpt.pt")
    assert "holds a list, not a dict" in one_line_error(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "text", "empty", "pickle"])
def test_a_damaged_checkpoint_is_one_short_line(trained_run, tmp_path, damage):
    good = (trained_run / "ckpt.pt").read_bytes()
    path = tmp_path / "ckpt.pt"
    path.write_bytes(
        {"truncated": good[: len(good) // 2], "text": b"not a checkpoint\n", "empty": b"", "pickle": b"\x80\x02}q\x00."}[damage]
    )  # a plain pickle of {}, not torch's format
    message = one_line_error(tmp_path)
    assert "not a PyTorch checkpoint or truncated" in message
    assert len(message) - len(str(path)) < 160


@pytest.fixture
def saved_once(tmp_path):
    """out_dir holding a checkpoint; returns (out_dir, its bytes)."""
    save_checkpoint(tmp_path, {"iter": 1, "w": torch.arange(10)})
    return tmp_path, (tmp_path / "ckpt.pt").read_bytes()


def assert_save_fails_and_keeps(out_dir, old_bytes, state=None):
    with pytest.raises(CheckpointError) as error:
        save_checkpoint(out_dir, state or {"iter": 2, "w": torch.zeros(10)})
    message = str(error.value)
    assert "\n" not in message and f"could not write checkpoint to {out_dir / 'ckpt.pt'}" in message
    assert "previous checkpoint there is intact" in message
    assert (out_dir / "ckpt.pt").read_bytes() == old_bytes
    return message


def test_an_unwritable_temporary_file_keeps_the_previous_checkpoint(saved_once):
    out_dir, old = saved_once
    temp_path(out_dir / CHECKPOINT_NAME).mkdir()  # open() of the tmp fails as in a read-only folder, even for root
    assert "Is a directory" in assert_save_fails_and_keeps(out_dir, old)
    assert load_checkpoint(out_dir, required=())["iter"] == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_keeps_the_previous_checkpoint(saved_once):
    out_dir, old = saved_once
    temp_path(out_dir / CHECKPOINT_NAME).symlink_to("/dev/full")  # every write to it fails with ENOSPC
    assert "No space left on device" in assert_save_fails_and_keeps(out_dir, old)
    assert sorted(p.name for p in out_dir.iterdir()) == ["ckpt.pt"]


def test_a_failure_while_pickling_keeps_the_previous_checkpoint(saved_once):
    out_dir, old = saved_once

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    assert "(disk full)" in assert_save_fails_and_keeps(out_dir, old, {"iter": 2, "bad": Unpicklable()})
    assert sorted(p.name for p in out_dir.iterdir()) == ["ckpt.pt"]


def test_an_out_dir_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="could not write checkpoint to .*Not a directory.*no checkpoint was saved"):
        save_checkpoint(tmp_path / "file" / "run", {"iter": 1})


def test_a_stale_temporary_file_is_removed(saved_once):
    out_dir, old = saved_once
    temp_path(out_dir / CHECKPOINT_NAME).write_bytes(b"half a checkpoint from a killed run")
    assert remove_stale_temp(out_dir) is True
    assert not temp_path(out_dir / CHECKPOINT_NAME).exists() and (out_dir / "ckpt.pt").read_bytes() == old
    assert remove_stale_temp(out_dir) is False
    temp_path(out_dir / CHECKPOINT_NAME).mkdir()  # not something save_checkpoint makes: left alone
    assert remove_stale_temp(out_dir) is False and temp_path(out_dir / CHECKPOINT_NAME).is_dir()


def test_a_refused_file_gets_its_line_without_a_warning_before_it(tmp_path, recwarn):
    import pickle

    (tmp_path / "ckpt.pt").write_bytes(pickle.dumps({"model": {}}))  # a crafted plain pickle, not torch's format
    assert "not a PyTorch checkpoint" in one_line_error(tmp_path)
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c.update(data_meta="char"), "data_meta is a str, not a dict"),
        (lambda c: c["model_args"].update(n_embd=24), "weights do not fit its model_args"),
        (lambda c: c["model_args"].update(n_layer="two"), "model_args describe no model"),
    ],
    ids=["data_meta a string", "n_embd changed", "n_layer a word"],
)
def test_a_hand_edited_checkpoint_is_one_line_in_sample_py(trained_run, tmp_path, capsys, edit, words):
    import sample

    checkpoint = load_checkpoint(trained_run)
    edit(checkpoint)
    save_checkpoint(tmp_path, checkpoint)
    assert sample.main([f"--out_dir={tmp_path}", "--device=cpu", "--max_new_tokens=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
