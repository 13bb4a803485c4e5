"""core/paths.py: what a run records of the paths it was given (results are committed and shared)."""

import os
from pathlib import Path

import pytest

from core.paths import REPO, recorded_path
from data.labelled import load_labelled
from data.prepare import file_corpus


def test_a_path_is_recorded_relative_to_the_repository_from_any_folder(monkeypatch, tmp_path):
    (tmp_path / "corpus").mkdir()
    beside = os.path.relpath(tmp_path / "corpus", REPO)
    for cwd in (tmp_path, tmp_path / "corpus", REPO):
        monkeypatch.chdir(cwd)
        assert recorded_path(os.path.join(REPO, "config", "swiglu.py")) == os.path.join("config", "swiglu.py")
        assert recorded_path(os.path.relpath(tmp_path / "corpus")) == beside  # typed relative to where the command ran
        assert recorded_path(tmp_path / "corpus") == beside  # typed absolute
    assert recorded_path(REPO) == "."
    assert not os.path.isabs(beside)


def test_the_same_name_in_two_folders_is_two_sources(monkeypatch, tmp_path):
    """prepare.py tells a rebuild from a different dataset by the recorded source."""
    names = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "input.txt").write_text(f"text of {folder}\n")
        monkeypatch.chdir(tmp_path / folder)
        names.append(file_corpus(["input.txt"]).description)
    assert names[0] != names[1] and names[0] == "files: " + recorded_path(tmp_path / "a" / "input.txt")


def test_labelled_data_records_its_files_relative_to_the_repository(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # not the user's cache
    monkeypatch.chdir(tmp_path)
    Path("train.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    Path("test.csv").write_text("text,label\nfine,pos\n")
    data = load_labelled("train.csv", "test.csv")
    train, test = (recorded_path(tmp_path / name) for name in ("train.csv", "test.csv"))
    assert data.source == f"files: train={train} test={test} text=text label=label"
