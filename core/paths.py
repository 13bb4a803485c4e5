"""How a path given by the user is written into results (meta.json, metrics.jsonl, reports)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # not resolved: compared with abspath's unresolved paths


def recorded_path(path):
    """`path` relative to the repository, whatever folder the command ran in ('../shared/x' for a folder beside it).

    Results are shared and committed: an absolute path of the machine that made them names a
    folder that exists nowhere else, and a path as typed means another file from another folder
    (prepare.py compares sources to tell a rebuild from a different dataset). Where no relative
    path exists (another drive on Windows) it is the absolute path.
    """
    absolute = os.path.abspath(path)
    try:
        return os.path.relpath(absolute, REPO)
    except ValueError:
        return absolute
