"""One writer per folder: a second run, prepare or report writing into a folder in use is refused in one line.

The lock is the kernel's flock on the folder itself, so it ends with the process that holds it,
however that process ends (kill -9 included): a stale lock never blocks. Who holds it (pid,
command, since when) is written to the folder's `.writer` file, for the refusal's message only,
and removed on release. Locks are advisory: they keep this project's scripts apart, not others.
"""

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path

from core.entry import UserError

HOLDER_NAME = ".writer"


class FolderBusy(UserError):
    """Another process is writing into the folder; the message names it."""


def describe_holder(folder):
    """'pid 123 (train.py --out_dir=x ..., since 12:00:01)', or what is known of the holder."""
    try:
        holder = json.loads((Path(folder) / HOLDER_NAME).read_text())
        command = " ".join(holder["argv"])
        command = command if len(command) <= 80 else command[:77] + "..."
        return f"pid {holder['pid']} ({command}, since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def exclusive_folder(folder, option="out_dir"):
    """Hold the existing `folder` for writing during the block; FolderBusy when another process holds it.

    `option` is what the user changes to write elsewhere (named in the refusal).
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderBusy(f"{folder} is in use by {describe_holder(folder)}; wait for it to end or choose another {option}") from None
    holder = Path(folder) / HOLDER_NAME
    try:
        with contextlib.suppress(OSError):  # the message's details only: a full disk must not stop the run here
            holder.write_text(
                json.dumps({"pid": os.getpid(), "argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "since": time.strftime("%H:%M:%S")})
            )
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        os.close(fd)
