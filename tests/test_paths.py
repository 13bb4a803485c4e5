"""core/paths.py: what a run records of the paths it was given (results are committed and shared)."""

import os
from pathlib import Path

import pytest

from core.paths import REPO, recorded_path
from data.labelled import load_labelled
from data.prepare import file_corpus


def test_a_path_inside_the_repository_is_recorded_relative_to_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # wherever the command runs from
    assert recorded_path(REPO / "config" / "swiglu.py") == os.path.join("config", "swiglu.py")
    assert recorded_path(os.path.relpath(REPO / "config", tmp_path)) == "config"
    assert recorded_path(REPO) == "."


def test_a_path_outside_the_repository_is_recorded_as_typed(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    assert recorded_path("corpus") == "corpus"
    assert recorded_path(Path("../x/y.txt")) == os.path.join("..", "x", "y.txt")
    assert recorded_path(str(tmp_path / "corpus")) == str(tmp_path / "corpus")  # typed absolute: the user's own words


def test_prepare_records_its_inputs_as_typed(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    Path("a.txt").write_text("some text\n")
    assert file_corpus(["a.txt"]).description == "files: a.txt"


def test_labelled_data_records_its_files_as_typed(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # not the user's cache
    monkeypatch.chdir(tmp_path)
    Path("train.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    Path("test.csv").write_text("text,label\nfine,pos\n")
    data = load_labelled("train.csv", "test.csv")
    assert data.source == "files: train=train.csv test=test.csv text=text label=label"
