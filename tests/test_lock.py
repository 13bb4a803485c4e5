"""core/lock.py: one writer per folder, for train.py, classify.py and data/prepare.py; a killed holder never blocks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_corpus, tiny_argv, tiny_config

import train as train_module
from core.checkpoint import load_checkpoint
from core.lock import HOLDER_NAME, FolderBusy, exclusive_folder
from core.metrics import read_metrics
from data.prepare import prepare
from train import train

HOLD_AND_WAIT = """
import sys, time
sys.path.insert(0, {root!r})
from core.lock import exclusive_folder
with exclusive_folder({folder!r}):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_in_another_process(folder):
    """A process that holds `folder` (and has said so); the caller ends it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT.format(root=str(ROOT), folder=str(folder))], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "held\n"
    return process


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(tmp_path):
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(FolderBusy) as refused, exclusive_folder(tmp_path):
            pass
        message = str(refused.value)
        assert f"{tmp_path} is in use by pid {holder.pid} (-c" in message and "choose another out_dir" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()


def test_two_opens_in_one_process_conflict_too(tmp_path):
    """flock belongs to an open file, not a process: a test can hold a folder that the code under test is refused."""
    with exclusive_folder(tmp_path, "--out"), pytest.raises(FolderBusy, match="wait for it to end or choose another --out"):
        with exclusive_folder(tmp_path, "--out"):
            pass


def test_a_killed_holder_never_blocks_and_a_released_folder_is_left_clean(tmp_path):
    holder = hold_in_another_process(tmp_path)
    holder.send_signal(signal.SIGKILL)  # no clean-up runs: the .writer file stays behind
    holder.wait()
    assert (tmp_path / HOLDER_NAME).exists()
    with exclusive_folder(tmp_path):  # the kernel released the lock with the process
        assert json.loads((tmp_path / HOLDER_NAME).read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []


def test_prepare_train_and_classify_refuse_a_folder_in_use(tmp_path, char_data):
    from test_classify import tiny_classify, write_task

    from classify import classify

    task = write_task(tmp_path / "task", n_train=40, n_test=10)
    for folder in ("data", "run", "classify"):
        (tmp_path / folder).mkdir()
    holder = hold_in_another_process(tmp_path / "data")
    try:
        with pytest.raises(FolderBusy, match="choose another --out_dir"):
            prepare(make_corpus(), tmp_path / "data", "char")
    finally:
        holder.kill()
        holder.wait()
    for folder, start in (
        ("run", lambda: train(tiny_config(char_data, tmp_path / "run"))),
        ("classify", lambda: classify(tiny_classify(task, tmp_path / "classify"))),
    ):
        holder = hold_in_another_process(tmp_path / folder)
        try:
            with pytest.raises(FolderBusy):
                start()
        finally:
            holder.kill()
            holder.wait()
        assert list((tmp_path / folder).iterdir()) == [tmp_path / folder / HOLDER_NAME]  # the holder's, left by its kill


@pytest.mark.slow
@pytest.mark.parametrize("second", ["scratch", "resume"])
def test_a_second_train_run_on_a_running_out_dir_is_refused_and_the_first_finishes(char_data, tmp_path, capsys, second):
    out = tmp_path / "run"
    args = tiny_argv(data_dir=char_data, out_dir=out, max_iters=300, eval_interval=100, eval_iters=2, log_interval=1)
    first = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "ckpt.pt").exists():  # the first eval's checkpoint
        time.sleep(0.05)
    assert train_module.main([*args, f"--init_from={second}", "--seed=7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out} is in use by pid {first.pid} (train.py ") and err.count("\n") == 1, err
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert load_checkpoint(out)["iter"] == 300 and read_metrics(out)[-1]["event"] == "end"
    assert not Path(out, HOLDER_NAME).exists()
