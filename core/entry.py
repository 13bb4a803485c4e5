"""How every script starts and ends: the import-time Ctrl-C guard, one-line errors, one set of exit statuses.

    0    done (or -h)
    1    the work started and could not go on (RunFailed: a non-finite loss; OSError: a failed write)
    2    a mistake in what was given (UserError: a key, a file, a folder), found before anything changed
    130  SIGINT (Ctrl-C), 143 SIGTERM, 129 SIGHUP (the terminal closed): 128 + the signal number, as shells report it

Each script's main() is `return run_main(prog, lambda: ...)`; its slow imports sit under
`with interrupt_guard(__name__, prog):`. This module imports nothing of the project's and nothing
slow, so the guard is in place before torch starts loading.
"""

import contextlib
import signal
import sys
import threading


class UserError(Exception):
    """A mistake in the user's input, explained in one line: exit status 2."""


class RunFailed(Exception):
    """The run cannot go on (a non-finite loss, say), explained in one line: exit status 1."""


class HelpRequested(Exception):
    """-h or --help was given; the message is the help text (exit status 0)."""


# the signals that stop a script the way Ctrl-C does: a scheduler's SIGTERM, a closed terminal's SIGHUP
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived (SIGINT, SIGTERM, SIGHUP); like Ctrl-C it runs every `finally` on its way out."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum, frame):
    """A signal handler that takes the Ctrl-C path: Interrupted carries the signal to the exit status."""
    raise Interrupted(signum)


def take_signals(signals, handler):
    """Give each of `signals` to `handler`, but one ignored (nohup ignores SIGHUP: the run must outlive the terminal).

    Returns the handlers it replaced, for restore_signals. Only the main thread may set handlers:
    elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}


def restore_signals(previous):
    """Put back the handlers take_signals replaced."""
    for s, handler in previous.items():
        signal.signal(s, handler)


def signal_name(error):
    """SIGINT, SIGTERM or SIGHUP: the signal a KeyboardInterrupt stands for (a plain one is Ctrl-C's)."""
    return signal.Signals(getattr(error, "signum", signal.SIGINT)).name


@contextlib.contextmanager
def interrupt_guard(module_name, prog):
    """Around a script's slow imports: a stop signal while they load ends it with one line and 128 + the signal.

    When the script is imported (by a test, by another module) nothing changes: an interrupt propagates as usual.
    """
    if module_name != "__main__":
        yield
        return
    previous = take_signals(STOP_SIGNALS, raise_interrupted)
    try:
        yield
    except KeyboardInterrupt as e:
        print(f"{prog}: interrupted by {signal_name(e)}", file=sys.stderr)
        sys.exit(128 + getattr(e, "signum", signal.SIGINT))
    finally:
        restore_signals(previous)


def run_main(prog, body, on_interrupt=""):
    """Run `body()` as a script's main() and return its exit status (see the module docstring).

    `body` returns an exit status or None (0). SIGTERM and SIGHUP take Ctrl-C's path while it
    runs (unless ignored, as nohup ignores SIGHUP, or the body sets its own handlers);
    `on_interrupt` is added to the interruption's line (what was left as it was, how to go on).
    """
    previous = take_signals(STOP_SIGNALS, raise_interrupted)
    try:
        return body() or 0
    except HelpRequested as e:
        print(e)
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RunFailed, OSError) as e:  # OSError: a write failed (disk full, permissions)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"{prog}: interrupted by {signal_name(e)}" + (f"; {on_interrupt}" if on_interrupt else ""), file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        restore_signals(previous)
