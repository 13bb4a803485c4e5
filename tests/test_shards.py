"""data/prepare.py --hf_dataset: streaming into token shards (data/shards.py), resuming, and what the loader makes of them."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT

from core.entry import RunFailed
from data.dataset import open_dataset
from data.prepare import Corpus, main, prepare_shards
from data.tokenizer import CharTokenizer, DataError

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red", "house", "."]


def make_rows(n_rows=300, max_words=120, seed=0):
    """Documents of 0 to max_words words (so some rows are empty), and a None row: the shapes a real dataset has."""
    rng = random.Random(seed)
    rows = [" ".join(rng.choices(WORDS, k=rng.randint(0, max_words))) for _ in range(n_rows)]
    rows[7] = None
    return rows


def expected_stream(rows, tokenizer):
    """The token stream: every non-empty row's tokens, then the end-of-text id."""
    return np.array([t for row in rows if row for t in [*tokenizer.encode(row), tokenizer.eot_id]])


def shard_stream(folder):
    """val.bin then the train shards, as meta.json lists them, as one array."""
    meta = json.loads((folder / "meta.json").read_text())
    files = meta["shards"]["val"] + meta["shards"]["train"]
    return np.concatenate([np.fromfile(folder / shard["file"], dtype=meta["dtype"]) for shard in files])


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".writer"}


def row_corpus(rows, fail_at=None):
    """A Corpus of rows, as data/prepare.py's hf_corpus yields them; with fail_at, reading fails
    at that row as a lost connection does (the description stays, so a rerun is the same dataset)."""

    def documents():
        for i, text in enumerate(rows):
            if i == fail_at:
                raise RunFailed("reading the dataset failed: connection lost")
            yield [text] if text else []

    return Corpus("rows: test corpus", documents)


@pytest.fixture
def parquet_folder(tmp_path):
    """make_rows() as a folder of four parquet files with a second column: the shape of a FineWeb download."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    rows, folder = make_rows(), tmp_path / "corpus"
    folder.mkdir()
    for i in range(4):
        part = rows[i * 75 : (i + 1) * 75]
        pq.write_table(pa.table({"text": part, "id": list(range(len(part)))}), folder / f"part-{i:05d}.parquet")
    return folder


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """Hugging Face caches in tmp_path and the hub offline (it is not reachable from CI)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "hf" / "downloads")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *fragments, status=2):
    assert code == status, err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in last, last


# ---------------------------------------------------------------- the layout


def test_shards_hold_the_stream_val_first_at_a_document_end(tmp_path, tiny_tokenizer):
    rows = make_rows()
    meta = prepare_shards(row_corpus(rows), tmp_path / "out", tiny_tokenizer, shard_tokens=2000, val_tokens=1500, num_proc=2)
    stream = expected_stream(rows, tiny_tokenizer)
    assert np.array_equal(shard_stream(tmp_path / "out"), stream)

    val, train = meta["shards"]["val"], meta["shards"]["train"]
    assert len(val) == 1 and val[0]["file"] == "val.bin"
    # validation: the first whole documents of at least val_tokens tokens, so no document is in both splits
    assert val[0]["tokens"] >= 1500 and stream[val[0]["tokens"] - 1] == tiny_tokenizer.eot_id
    assert np.count_nonzero(stream[: val[0]["tokens"] - 1] == tiny_tokenizer.eot_id) < np.count_nonzero(stream == tiny_tokenizer.eot_id)
    assert [s["tokens"] for s in train[:-1]] == [2000] * (len(train) - 1) and 0 < train[-1]["tokens"] <= 2000
    assert [s["file"] for s in train] == [f"train_{i:06d}.bin" for i in range(len(train))]
    for shard in val + train:
        assert shard["sha256"] == hashlib.sha256((tmp_path / "out" / shard["file"]).read_bytes()).hexdigest()
    assert (meta["train_tokens"], meta["val_tokens"]) == (sum(s["tokens"] for s in train), val[0]["tokens"])
    assert meta["documents"] == sum(1 for row in rows if row)
    assert meta["max_token_id"] == int(stream.max()) and meta["shard_tokens"] == 2000
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == meta
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(["meta.json"] + [s["file"] for s in val + train])


def test_the_loader_reads_the_shards_as_one_stream(tmp_path, tiny_tokenizer):
    rows = make_rows()
    prepare_shards(row_corpus(rows), tmp_path / "out", tiny_tokenizer, shard_tokens=2000, val_tokens=1500)
    data, stream = open_dataset(tmp_path / "out"), shard_stream(tmp_path / "out")
    assert np.array_equal(np.asarray(data.val[:]), stream[: len(data.val)])
    train = stream[len(data.val) :]
    assert len(data.train) == len(train)
    assert np.array_equal(np.asarray(data.train[1990:2010]), train[1990:2010])  # across a shard boundary


def test_max_tokens_is_a_prefix_of_the_stream(tmp_path, tiny_tokenizer):
    rows = make_rows()
    meta = prepare_shards(row_corpus(rows), tmp_path / "out", tiny_tokenizer, shard_tokens=2000, val_tokens=1500, max_tokens=4321)
    assert meta["train_tokens"] + meta["val_tokens"] == 4321
    assert np.array_equal(shard_stream(tmp_path / "out"), expected_stream(rows, tiny_tokenizer)[:4321])


def test_a_parquet_folder_and_jsonl_files_stream_through_the_same_call(tmp_path, parquet_folder, hf_env, capsys):
    rows = make_rows()
    common = ["--tokenizer=char", "--shard_tokens=3000", "--val_tokens=2000", "--num_proc=2"]
    code, err = run_cli([f"--hf_dataset={parquet_folder}", f"--out_dir={tmp_path / 'pq'}", *common], capsys)
    assert code == 0, err
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps({"text": row, "n": i}) + "\n" for i, row in enumerate(rows)))
    code, err = run_cli(["--hf_dataset=json", f"--hf_data_files={jsonl}", f"--out_dir={tmp_path / 'js'}", *common], capsys)
    assert code == 0, err

    meta = json.loads((tmp_path / "pq" / "meta.json").read_text())
    tokenizer = CharTokenizer(meta["vocab"])
    assert np.array_equal(shard_stream(tmp_path / "pq"), expected_stream(rows, tokenizer))
    assert np.array_equal(shard_stream(tmp_path / "js"), shard_stream(tmp_path / "pq"))
    assert meta["source"] == f"hf: {parquet_folder} split=train column=text"


# ---------------------------------------------------------------- resuming


def long_rows():
    """About 4.5 MB of text. The encoder's batches are about a megabyte, and the next batches are read
    while one is encoded: a run stopped after row 4000 has shards of the first batches finished."""
    return make_rows(4500, max_words=600)


RESUME_SIZES = dict(shard_tokens=100_000, val_tokens=60_000)


@pytest.mark.parametrize("fail_at", [1, 4200, 4499])
def test_a_run_stopped_anywhere_resumes_to_the_same_bytes(tmp_path, tiny_tokenizer, fail_at):
    rows = long_rows()
    prepare_shards(row_corpus(rows), tmp_path / "whole", tiny_tokenizer, **RESUME_SIZES)
    with pytest.raises(RunFailed, match="connection lost"):
        prepare_shards(row_corpus(rows, fail_at=fail_at), tmp_path / "cut", tiny_tokenizer, **RESUME_SIZES)
    assert not (tmp_path / "cut" / "meta.json").exists()  # an unfinished folder never looks like a dataset
    assert not list((tmp_path / "cut").glob("*.tmp"))
    progress = json.loads((tmp_path / "cut" / "progress.json").read_text()) if fail_at > 1 else None
    messages = []
    prepare_shards(row_corpus(rows), tmp_path / "cut", tiny_tokenizer, **RESUME_SIZES, say=messages.append)
    assert folder_bytes(tmp_path / "cut") == folder_bytes(tmp_path / "whole")
    if progress:  # shards were finished before the stop, and the rerun started after them, inside a document
        assert messages[0].startswith(f"continuing after {progress['state']['position']:,} tokens")
        assert progress["state"]["skip"] > 0


def test_resuming_does_not_tokenize_finished_shards_again(tmp_path, tiny_tokenizer):
    rows = long_rows()
    with pytest.raises(RunFailed):
        prepare_shards(row_corpus(rows, fail_at=4499), tmp_path / "out", tiny_tokenizer, **RESUME_SIZES)
    progress = json.loads((tmp_path / "out" / "progress.json").read_text())
    read = []

    def documents():  # the rerun's rows, counting those whose text is asked for
        for i, text in enumerate(rows):
            yield _Counted(text, i, read)

    prepare_shards(Corpus("rows: test corpus", documents), tmp_path / "out", tiny_tokenizer, **RESUME_SIZES)
    assert min(read) == progress["state"]["row"] > 1000


class _Counted:
    """A row's document (a list of one block, or none) that records its row index when read."""

    def __init__(self, text, index, read):
        self.text, self.index, self.read = text, index, read

    def __iter__(self):
        self.read.append(self.index)
        return iter([self.text] if self.text else [])


@pytest.mark.slow
def test_kill_9_during_a_streaming_prepare_then_rerun_gives_identical_shards(tmp_path, hf_env):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(4):
        pq.write_table(pa.table({"text": make_rows(1000, max_words=600, seed=i)}), folder / f"part-{i:05d}.parquet")
    argv = [sys.executable, "data/prepare.py", f"--hf_dataset={folder}", "--tokenizer=char", "--shard_tokens=200000"]
    argv += ["--val_tokens=100000", "--num_proc=1"]

    def run(out, **kwargs):
        return subprocess.run([*argv, f"--out_dir={out}"], cwd=ROOT, env=hf_env, capture_output=True, text=True, timeout=120, **kwargs)

    assert run(tmp_path / "whole").returncode == 0
    cut = tmp_path / "cut"
    process = subprocess.Popen([*argv, f"--out_dir={cut}"], cwd=ROOT, env=hf_env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _finished_shards(cut, at_least=2) and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (cut / "meta.json").exists(), "the run finished before the kill: the corpus is too small to test a kill"
    result = run(cut)
    assert result.returncode == 0, result.stderr
    assert "continuing after" in result.stderr
    assert folder_bytes(cut) == folder_bytes(tmp_path / "whole")


def _finished_shards(folder, at_least):
    try:
        return len(json.loads((folder / "progress.json").read_text())["state"]["shards"]["train"]) >= at_least
    except (OSError, ValueError):
        return False


def test_a_run_stopped_after_its_last_shard_finishes_without_reading_more(tmp_path, tiny_tokenizer):
    rows, out = make_rows(), tmp_path / "out"
    meta = prepare_shards(row_corpus(rows), out, tiny_tokenizer, shard_tokens=2000, val_tokens=1500, max_tokens=6000)
    before = folder_bytes(out)
    # the folder as a kill between the last shard's progress.json and meta.json leaves it
    state = {"position": 6000, "row": 10**6, "skip": 0, "documents": meta["documents"], "max_token_id": meta["max_token_id"]}
    progress = {"identity": meta["identity"], "tokenizer": tiny_tokenizer.meta(), "state": {**state, "shards": meta["shards"]}}
    (out / "progress.json").write_text(json.dumps(progress))
    (out / "meta.json").unlink()
    prepare_shards(row_corpus(rows, fail_at=0), out, tiny_tokenizer, shard_tokens=2000, val_tokens=1500, max_tokens=6000)
    assert folder_bytes(out) == before  # finished from progress.json alone: the source (failing at its first row) was not read


@pytest.mark.parametrize("at_val_end", [False, True])
def test_max_tokens_inside_the_validation_split_is_refused(tmp_path, tiny_tokenizer, at_val_end):
    rows = make_rows()
    eot_ends = np.flatnonzero(expected_stream(rows, tiny_tokenizer) == tiny_tokenizer.eot_id) + 1
    max_tokens = int(eot_ends[eot_ends >= 1500][0]) if at_val_end else 1501  # where val.bin would end, or inside it
    with pytest.raises(DataError, match="leaves no tokens for training.*raise --max_tokens or lower --val_tokens"):
        prepare_shards(row_corpus(rows), tmp_path / "out", tiny_tokenizer, shard_tokens=2000, val_tokens=1500, max_tokens=max_tokens)
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name != ".writer"]


def test_a_dataset_of_empty_rows_is_one_line(tmp_path, tiny_tokenizer):
    with pytest.raises(DataError, match="no text: every row of rows: test corpus is empty"):
        prepare_shards(row_corpus(["", None, ""]), tmp_path / "out", tiny_tokenizer, val_tokens=10)


def test_a_finished_folder_is_left_as_it_is(tmp_path, tiny_tokenizer):
    prepare_shards(row_corpus(make_rows()), tmp_path / "out", tiny_tokenizer, shard_tokens=2000, val_tokens=1500)
    before = folder_bytes(tmp_path / "out")
    (tmp_path / "out" / "progress.json").write_text("{}")  # as a stop between meta.json and its removal leaves it
    messages = []
    prepare_shards(row_corpus(make_rows()), tmp_path / "out", tiny_tokenizer, shard_tokens=2000, val_tokens=1500, say=messages.append)
    assert folder_bytes(tmp_path / "out") == before and "nothing to do" in messages[0]


# ---------------------------------------------------------------- bad input


def test_another_tokenizer_or_size_in_the_same_folder_is_refused(tmp_path, tiny_tokenizer):
    rows, out = long_rows(), tmp_path / "out"
    with pytest.raises(RunFailed):
        prepare_shards(row_corpus(rows, fail_at=4499), out, tiny_tokenizer, **RESUME_SIZES)
    before = folder_bytes(out)
    assert "progress.json" in before
    with pytest.raises(DataError, match="holds an unfinished dataset of other settings.*--overwrite"):
        prepare_shards(row_corpus(rows), out, "char", **RESUME_SIZES)
    with pytest.raises(DataError, match="unfinished dataset of other settings"):
        prepare_shards(row_corpus(rows), out, tiny_tokenizer, shard_tokens=50_000, val_tokens=60_000)
    assert folder_bytes(out) == before
    prepare_shards(row_corpus(rows), out, tiny_tokenizer, **RESUME_SIZES)  # the same settings finish it
    with pytest.raises(DataError, match="already holds a different dataset"):
        prepare_shards(row_corpus(rows), out, "char", **RESUME_SIZES)
    meta = prepare_shards(row_corpus(rows), out, "char", **RESUME_SIZES, overwrite=True)
    assert meta["tokenizer"] == "char" and not (out / "progress.json").exists()
    assert np.array_equal(shard_stream(out), expected_stream(rows, CharTokenizer(meta["vocab"])))


def test_a_missing_column_or_an_unknown_dataset_is_one_line(tmp_path, parquet_folder, hf_env, capsys):
    out = tmp_path / "out"
    code, err = run_cli([f"--hf_dataset={parquet_folder}", "--text_column=body", "--tokenizer=char", f"--out_dir={out}"], capsys)
    assert_one_line_error(code, err, "no column 'body'", "its columns are text, id", "--text_column")
    code, err = run_cli(["--hf_dataset=no-such-user/no-such-dataset", "--tokenizer=char", f"--out_dir={out}"], capsys)
    assert_one_line_error(code, err, "could not load Hugging Face dataset 'no-such-user/no-such-dataset'")
    assert not out.exists() or not list(out.iterdir())


def test_a_corpus_smaller_than_its_validation_split_is_refused(tmp_path, tiny_tokenizer):
    with pytest.raises(DataError, match="inside the validation split.*lower --val_tokens"):
        prepare_shards(row_corpus(make_rows(20)), tmp_path / "out", tiny_tokenizer, val_tokens=10**6)
    assert not (tmp_path / "out" / "meta.json").exists() and not list((tmp_path / "out").glob("*.bin*"))
    with pytest.raises(DataError, match="max_tokens .* must be larger than val_tokens"):
        prepare_shards(row_corpus(make_rows(20)), tmp_path / "out", tiny_tokenizer, val_tokens=1000, max_tokens=1000)


def test_options_of_the_other_kind_of_source_are_refused(tmp_path, parquet_folder, write_files, hf_env, capsys):
    folder = write_files({"a.txt": "some text\n"})
    code, err = run_cli([f"--hf_dataset={parquet_folder}", "--val_fraction=0.2", f"--out_dir={tmp_path / 'a'}"], capsys)
    assert_one_line_error(code, err, "--val_fraction is for file sources", "--val_tokens")
    code, err = run_cli([folder, "--max_tokens=1000", "--tokenizer=char", f"--out_dir={tmp_path / 'b'}"], capsys)
    assert_one_line_error(code, err, "--max_tokens is for --hf_dataset")
    code, err = run_cli([f"--hf_dataset={parquet_folder}", "--shard_tokens=0", "--tokenizer=char", f"--out_dir={tmp_path / 'c'}"], capsys)
    assert_one_line_error(code, err, "shard_tokens and val_tokens must be positive, got 0 and 10000000")


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_a_full_disk_mid_shard_keeps_the_finished_shards_and_a_rerun_finishes(tmp_path, parquet_folder, hf_env):
    argv = [sys.executable, "data/prepare.py", f"--hf_dataset={parquet_folder}", "--tokenizer=char", "--shard_tokens=6000"]
    argv += ["--val_tokens=2000"]

    def limit_file_size():  # a file may not grow past 8 kB: the first train shard (12 kB) cannot be written whole
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8000, 8000))

    out = tmp_path / "out"
    full = subprocess.run([*argv, f"--out_dir={out}"], cwd=ROOT, env=hf_env, capture_output=True, text=True, preexec_fn=limit_file_size)
    assert full.returncode == 1 and full.stderr.splitlines()[-1].startswith("error: could not write a shard"), full.stderr
    assert "File too large" in full.stderr and "continues from them" in full.stderr
    assert sorted(p.name for p in out.iterdir() if p.name != ".writer") == ["progress.json", "val.bin"]
    again = subprocess.run([*argv, f"--out_dir={out}"], cwd=ROOT, env=hf_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    rows = make_rows()
    assert np.array_equal(shard_stream(out), expected_stream(rows, CharTokenizer(json.loads((out / "meta.json").read_text())["vocab"])))
