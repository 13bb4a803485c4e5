"""Files written whole or not at all: a crash, a kill or a full disk never leaves half a file in place.

Every file the project writes in one piece (checkpoints, metrics.jsonl on resume, downloads,
meta.json) goes through atomic_write: the bytes go to `<name>.tmp`, are flushed to disk, a
rename puts them in place and the folder is flushed too, so a reader sees the old file or the
new one, never a mix. (prepare.py's train.bin and val.bin are renamed together, before meta.json.)
"""

import contextlib
import os
from pathlib import Path


def temp_path(path):
    """Where atomic_write writes `path` before the rename: `<path>.tmp` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def remove_file(path):
    """Delete `path` if it is a file or a link (never a folder, which we did not make); True if it was there."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    return False


def _fsync_folder(folder):
    """Flush a folder's entries (the rename) to disk, where the OS allows opening folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def write_whole(path, content):
    """Write `content` (str or bytes) to `path` through atomic_write; a failure is an OSError whose one line
    names the path and the OS's reason (a full disk: No space left on device), the previous file left as it was."""
    try:
        with atomic_write(path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
    except OSError as e:
        raise OSError(f"could not write {path} ({e.strerror or e}); it is as it was") from None


@contextlib.contextmanager
def atomic_write(path, mode="w"):
    """Open `path`'s temp file for writing; when the block ends without error, fsync it and rename it over `path`.

    Any error (or Ctrl-C) inside the block or during the rename removes the temp file and leaves
    `path` exactly as it was, then propagates.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        with contextlib.suppress(OSError):  # cleaning up must not hide the error that got us here
            remove_file(tmp)
