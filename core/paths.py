"""How a path given by the user is written into results (meta.json, metrics.jsonl, reports)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def recorded_path(path):
    """`path` relative to the repository when it lies inside it, else as the user typed it.

    Results are shared and committed: an absolute path of the machine that made them names a
    folder that exists nowhere else.
    """
    absolute = Path(os.path.abspath(path))
    if absolute.is_relative_to(REPO):
        return str(absolute.relative_to(REPO)) or "."
    return str(path)
