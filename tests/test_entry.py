"""Tests for core/entry.py: the exit status and the one line every script ends with, for each way main() can end."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.configurator import ConfigError
from core.entry import HelpRequested, Interrupted, RunFailed, UserError, interrupt_guard, raise_interrupted, run_main, signal_name

ROOT = Path(__file__).resolve().parent.parent


def raising(error):
    def body():
        raise error

    return body


@pytest.mark.parametrize("returned,status", [(None, 0), (0, 0), (3, 3), (1, 1)])
def test_the_body_returns_the_exit_status(capsys, returned, status):
    assert run_main("x.py", lambda: returned) == status
    assert capsys.readouterr().err == ""


def test_help_goes_to_stdout_with_status_0(capsys):
    assert run_main("x.py", raising(HelpRequested("usage: x.py [--key=value ...]\n\noptions: ..."))) == 0
    out, err = capsys.readouterr()
    assert out == "usage: x.py [--key=value ...]\n\noptions: ...\n"
    assert err == ""


@pytest.mark.parametrize("error", [UserError("no such key: lr"), ConfigError("no such key: lr")])
def test_a_user_mistake_is_one_error_line_and_status_2(capsys, error):
    assert run_main("x.py", raising(error)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: no such key: lr\n"


@pytest.mark.parametrize(
    "error,line",
    [
        (RunFailed("loss became non-finite at iteration 7"), "error: loss became non-finite at iteration 7\n"),
        (OSError(28, "No space left on device"), "error: [Errno 28] No space left on device\n"),
    ],
)
def test_a_failed_run_or_write_is_one_error_line_and_status_1(capsys, error, line):
    assert run_main("x.py", raising(error)) == 1
    assert capsys.readouterr().err == line


def test_other_exceptions_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        run_main("x.py", lambda: 1 / 0)


def test_ctrl_c_is_status_130_with_one_line(capsys):
    assert run_main("x.py", raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "x.py: interrupted by SIGINT\n"


def test_the_interruption_line_says_what_was_left(capsys):
    assert run_main("x.py", raising(KeyboardInterrupt()), on_interrupt="out/ckpt.pt is untouched") == 130
    assert capsys.readouterr().err == "x.py: interrupted by SIGINT; out/ckpt.pt is untouched\n"


@pytest.fixture(params=[signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def stop_signal_caught(request):
    """A stop signal recorded by a handler of the test's own, so a run_main that failed to take it over cannot kill pytest."""
    received = []

    def handler(signum, frame):
        received.append(signum)

    previous = signal.signal(request.param, handler)
    yield request.param, handler, received
    signal.signal(request.param, previous)


def test_a_real_stop_signal_during_the_body_is_128_plus_it_and_runs_finally(capsys, stop_signal_caught):
    signum, handler, received = stop_signal_caught
    cleaned_up = []

    def body():
        try:
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
            return 0
        finally:
            cleaned_up.append(True)

    assert run_main("x.py", body) == 128 + signum  # 143 for SIGTERM, 129 for SIGHUP (the terminal closed)
    assert cleaned_up == [True]
    assert capsys.readouterr().err == f"x.py: interrupted by {signal.Signals(signum).name}\n"
    assert received == []  # run_main's handler took it, not the one before
    assert signal.getsignal(signum) is handler  # and put that one back


def test_the_previous_sigterm_handler_is_restored_after_a_normal_return_and_an_error():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        seen = []
        assert run_main("x.py", lambda: seen.append(signal.getsignal(signal.SIGTERM))) == 0
        assert seen == [raise_interrupted]  # while the body runs, SIGTERM takes Ctrl-C's path
        assert signal.getsignal(signal.SIGTERM) is mine
        assert run_main("x.py", raising(UserError("bad"))) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_handler_the_body_sets_itself_wins_while_it_runs():
    received = []

    def body():
        signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert run_main("x.py", body) == 0
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_main_works_outside_the_main_thread(capsys):
    results = []
    thread = threading.Thread(target=lambda: results.append(run_main("x.py", raising(UserError("bad key")))))
    thread.start()
    thread.join(timeout=10)
    assert results == [2]
    assert "error: bad key" in capsys.readouterr().err


def test_interrupted_carries_the_signal():
    assert isinstance(Interrupted(signal.SIGTERM), KeyboardInterrupt)
    assert signal_name(Interrupted(signal.SIGTERM)) == "SIGTERM"
    assert signal_name(Interrupted(signal.SIGINT)) == "SIGINT"
    assert signal_name(KeyboardInterrupt()) == "SIGINT"
    assert str(Interrupted(signal.SIGTERM)) == "SIGTERM"


def test_interrupt_guard_lets_an_imported_module_pass_the_interrupt_on():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with interrupt_guard("train", "train.py"):
            assert signal.getsignal(signal.SIGTERM) is before  # an imported module leaves SIGTERM alone
            raise KeyboardInterrupt
    with interrupt_guard("train", "train.py"):
        pass  # no interrupt: nothing happens
    assert signal.getsignal(signal.SIGTERM) is before


GUARDED = """
import os, signal
from core.entry import Interrupted, interrupt_guard
with interrupt_guard("__main__", "x.py"):
    {body}
print("not reached")
"""


def run_guarded(body):
    program = GUARDED.format(body=body)
    return subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "body,status,line",
    [
        ("raise KeyboardInterrupt", 130, "SIGINT"),
        ("os.kill(os.getpid(), signal.SIGINT); [None for _ in range(10**6)]", 130, "SIGINT"),
        ("os.kill(os.getpid(), signal.SIGTERM); [None for _ in range(10**6)]", 143, "SIGTERM"),
    ],
)
def test_interrupt_guard_in_a_script_exits_with_one_line(body, status, line):
    result = run_guarded(body)
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"x.py: interrupted by {line}\n"


def test_interrupt_guard_in_a_script_hands_sigterm_back_after_the_imports():
    result = run_guarded("pass\nprint(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\nnot reached\n"


def test_an_ignored_signal_stays_ignored_so_nohup_runs_outlive_the_terminal():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does before starting the script
    try:
        seen = []
        assert run_main("x.py", lambda: seen.append(signal.getsignal(signal.SIGHUP))) == 0
        assert seen == [signal.SIG_IGN]
        with interrupt_guard("__main__", "x.py"):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
