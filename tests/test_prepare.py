"""data/prepare.py and data/tokenizer.py: round trips, splits, determinism, bad input, safe writes."""

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tiktoken

import data.prepare as prepare_module
from data.prepare import Corpus, HFCorpus, file_corpus, main, prepare
from data.tokenizer import DataError, char_tokenizer, get_tokenizer, tokenizer_from_meta

PREPARE_PY = Path(prepare_module.__file__)
EOT = "<|endoftext|>"
DOCS = {
    "b.txt": "Then the king said: ring the bell.\n\nTHE END\n",
    "a.txt": "héllo wörld 😀\r\nit's <|endoftext|> as plain text\n",
    "sub/c.md": "# notes\n\n    indented line\nthe thing\n",
}
ORDERED = [DOCS["a.txt"], DOCS["b.txt"], DOCS["sub/c.md"]]  # sorted by path


def read_tokens(out_dir):
    """(meta, train + val tokens as one array)."""
    meta = json.loads((out_dir / "meta.json").read_text())
    train = np.fromfile(out_dir / "train.bin", dtype=meta["dtype"])
    val = np.fromfile(out_dir / "val.bin", dtype=meta["dtype"])
    return meta, np.concatenate([train, val])


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def run_cli(argv, capsys):
    """Exit code and stderr of main(argv)."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *fragments):
    """Exit code 2 and one `error:` line, last; progress notes may come before it."""
    assert code == 2
    lines = err.splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert not any(line.startswith("error: ") for line in lines[:-1])
    err = lines[-1]
    for fragment in fragments:
        assert fragment in err


# ---------------------------------------------------------------- round trips


def test_folder_round_trip_separates_documents(tmp_path, write_files, tiny_tokenizer):
    folder = write_files({**DOCS, ".hidden.txt": "skip me", "image.bin": b"\x89PNG\x00\x00"})
    meta = prepare(file_corpus([str(folder)]), tmp_path / "out", tiny_tokenizer)
    meta_on_disk, tokens = read_tokens(tmp_path / "out")

    assert meta == meta_on_disk
    assert tiny_tokenizer.decode(tokens) == "".join(doc + EOT for doc in ORDERED)
    # the literal "<|endoftext|>" in a.txt is text; only the three separators are end-of-text ids
    assert np.flatnonzero(tokens == tiny_tokenizer.eot_id).tolist() == [
        len(tiny_tokenizer.encode("".join(ORDERED[:k + 1]))) + k for k in range(3)
    ]
    assert meta["documents"] == 3 and meta["dtype"] == "uint16"
    assert meta["train_tokens"] + meta["val_tokens"] == len(tokens)
    assert (meta["tokenizer"], meta["vocab_size"], meta["eot_id"]) == ("tiny", 265, 264)
    assert str(folder) in meta["source"]


def test_glob_and_file_inputs(tmp_path, write_files, tiny_tokenizer):
    folder = write_files(DOCS)
    corpus = file_corpus([str(folder / "*.txt"), str(folder / "sub" / "c.md"), str(folder / "a.txt")])
    prepare(corpus, tmp_path / "out", tiny_tokenizer)
    _, tokens = read_tokens(tmp_path / "out")
    assert tiny_tokenizer.decode(tokens) == "".join(doc + EOT for doc in ORDERED)  # a.txt only once


def test_long_document_is_cut_without_changing_tokens(tmp_path, monkeypatch, tiny_tokenizer):
    monkeypatch.setattr(prepare_module, "PIECE_CHARS", 64)
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 100)
    text = "".join(f"the line {i}\n\n  indented {i}\nthing{i}, then\n" for i in range(200))
    assert len(list(prepare_module._document_pieces([text]))) > 10
    prepare([text], tmp_path / "out", tiny_tokenizer, num_proc=2)
    _, tokens = read_tokens(tmp_path / "out")
    assert tokens.tolist() == tiny_tokenizer.encode(text) + [tiny_tokenizer.eot_id]


def test_char_tokenizer(tmp_path):
    texts = ["hello\n", "", "world!"]
    meta = prepare(texts, tmp_path / "out", "char")
    _, tokens = read_tokens(tmp_path / "out")
    assert meta["vocab"] == "\x00\n!dehlorw" and meta["vocab_size"] == 10 and meta["eot_id"] == 0
    assert meta["max_token_id"] == tokens.max() == 9  # "w"
    assert meta["documents"] == 2  # the empty document adds nothing, not even a separator
    tokenizer = tokenizer_from_meta(meta)
    assert tokenizer.decode(tokens) == "hello\n\x00world!\x00"
    assert tokenizer.encode("low") == [6, 7, 9]


def test_char_tokenizer_rejects_unknown_characters_and_the_separator():
    tokenizer = char_tokenizer("ab")
    with pytest.raises(DataError, match="'z'"):
        tokenizer.encode("abz")
    with pytest.raises(DataError, match="NUL"):
        tokenizer.encode("a\x00b")


def test_uint32_when_the_vocabulary_exceeds_uint16(tmp_path, wide_tokenizer):
    meta = prepare(["one", "two"], tmp_path / "out", wide_tokenizer, val_fraction=0.5)
    _, tokens = read_tokens(tmp_path / "out")
    assert meta["dtype"] == "uint32" and meta["vocab_size"] == 70_001
    assert (tmp_path / "out" / "train.bin").stat().st_size == 4 * meta["train_tokens"]
    assert tokens.tolist() == [*b"one", 70_000, *b"two", 70_000]


def test_val_split_is_the_contiguous_tail(tmp_path, tiny_tokenizer):
    text = "the thing in the ring " * 50
    meta = prepare([text], tmp_path / "out", tiny_tokenizer, val_fraction=0.25)
    stream = tiny_tokenizer.encode(text) + [tiny_tokenizer.eot_id]
    val = np.fromfile(tmp_path / "out" / "val.bin", dtype=np.uint16)
    assert meta["val_tokens"] == len(val) == math.ceil(0.25 * len(stream))
    assert val.tolist() == stream[-len(val):]


def test_same_input_gives_the_same_bytes(tmp_path, write_files, tiny_tokenizer):
    folder = write_files(DOCS)
    prepare(file_corpus([str(folder)]), tmp_path / "one", tiny_tokenizer)
    prepare(file_corpus([str(folder)]), tmp_path / "two", tiny_tokenizer)
    first = folder_bytes(tmp_path / "one")
    assert first == folder_bytes(tmp_path / "two")
    prepare(file_corpus([str(folder)]), tmp_path / "one", tiny_tokenizer)  # same dataset: rebuilt in place
    assert folder_bytes(tmp_path / "one") == first


def test_two_workers_give_the_same_bytes_as_one(tmp_path, monkeypatch, write_files, tiny_tokenizer):
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 50)  # many batches, so both workers take part
    folder = write_files({f"doc{i:03}.txt": f"the thing {i} in the ring\n" * (i % 7 + 1) for i in range(60)})
    prepare(file_corpus([str(folder)]), tmp_path / "one", tiny_tokenizer, num_proc=1)
    prepare(file_corpus([str(folder)]), tmp_path / "two", tiny_tokenizer, num_proc=2)
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")


def test_meta_records_the_largest_id_of_any_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 20)  # one batch per document
    texts = ["abc abc abc " * 3] * 10 + ["only here: z"] + ["cab cab " * 4] * 10
    meta = prepare(texts, tmp_path / "out", "char", num_proc=2)
    _, tokens = read_tokens(tmp_path / "out")
    assert meta["max_token_id"] == tokens.max() == meta["vocab"].index("z")


def test_hugging_face_json_loader(tmp_path):
    rows = ["first row", "second\nrow", None, "third"]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"text": r, "id": i}) + "\n" for i, r in enumerate(rows)))
    corpus = HFCorpus("json", data_files=[str(tmp_path / "rows.jsonl")], cache_dir=str(tmp_path / "hf"))
    meta = prepare(corpus, tmp_path / "out", "char")
    _, tokens = read_tokens(tmp_path / "out")
    assert tokenizer_from_meta(meta).decode(tokens) == "first row\x00second\nrow\x00third\x00"
    with pytest.raises(DataError, match="no column 'body'.*--text-column"):
        HFCorpus("json", data_files=[str(tmp_path / "rows.jsonl")], text_column="body",
                 cache_dir=str(tmp_path / "hf"))


def test_tokenizer_survives_pickling(tiny_tokenizer):
    clone = pickle.loads(pickle.dumps(tiny_tokenizer))
    text = "the thing in the ring"
    assert clone.encode(text) == tiny_tokenizer.encode(text) != list(text.encode())
    assert (clone.name, clone.vocab_size, clone.eot_id) == ("tiny", 265, 264)


# ---------------------------------------------------------------- presets


def test_pystdlib_preset_works_offline(tmp_path, capsys):
    code, err = run_cli(["pystdlib", "--max-mb", "0.05", "--tokenizer", "char", "--out-dir", tmp_path / "out"],
                        capsys)
    assert code == 0, err
    assert "source: preset pystdlib: Python" in err
    assert "standard library" in json.loads((tmp_path / "out" / "meta.json").read_text())["source"]


def test_shakespeare_preset_without_network_fails_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_module, "CACHE_DIR", tmp_path / "cache")
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port: the download fails at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    code, err = run_cli(["shakespeare", "--tokenizer", "char", "--out-dir", tmp_path / "out"], capsys)
    assert_one_line_error(code, err, "could not download", "--input PATH")

    code, err = run_cli(["quickstart", "--max-mb", "0.05", "--tokenizer", "char", "--out-dir", tmp_path / "qs"],
                        capsys)
    assert code == 0, err
    assert "using the Python standard library" in err and "source: preset pystdlib" in err


# ---------------------------------------------------------------- bad input


def test_missing_path(tmp_path, capsys):
    code, err = run_cli(["--input", tmp_path / "nope.txt", "--out-dir", tmp_path / "out", "--tokenizer", "char"],
                        capsys)
    assert_one_line_error(code, err, "input not found", "nope.txt")


def test_empty_corpus(tmp_path, write_files, capsys):
    folder = write_files({"empty.txt": "", "also_empty.txt": ""})
    code, err = run_cli(["--input", folder, "--out-dir", tmp_path / "out", "--tokenizer", "char"], capsys)
    assert_one_line_error(code, err, "empty corpus")
    assert not (tmp_path / "out" / "train.bin").exists()


def test_folder_without_text_files(tmp_path, write_files, capsys):
    folder = write_files({"model.bin": b"\x00\x01\x02", ".notes.txt": "hidden"})
    code, err = run_cli(["--input", folder, "--out-dir", tmp_path / "out", "--tokenizer", "char"], capsys)
    assert_one_line_error(code, err, "no text files in folder")
    code, err = run_cli(["--input", folder / "*.txt", "--out-dir", tmp_path / "out", "--tokenizer", "char"], capsys)
    assert_one_line_error(code, err, "no text files match")


def test_file_that_is_not_utf8(tmp_path, write_files, capsys):
    folder = write_files({"a.txt": "fine\n", "b.txt": b"caf\xe9\n"})
    argv = ["--input", folder, "--out-dir", tmp_path / "out", "--tokenizer", "char"]
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "b.txt", "--encoding-errors replace")
    assert not list((tmp_path / "out").glob("*"))  # nothing half-written

    code, err = run_cli(argv + ["--encoding-errors", "replace"], capsys)
    assert code == 0, err
    meta, tokens = read_tokens(tmp_path / "out")
    assert tokenizer_from_meta(meta).decode(tokens) == "fine\n\x00caf\ufffd\n\x00"


def test_unknown_tokenizer(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    code, err = run_cli(["--input", folder, "--out-dir", tmp_path / "out", "--tokenizer", "gpt5"], capsys)
    assert_one_line_error(code, err, "unknown tokenizer 'gpt5'", "r50k_base", "char")


@pytest.mark.parametrize("fraction", ["0", "1", "1.5", "-0.1"])
def test_val_fraction_out_of_range(tmp_path, write_files, capsys, fraction):
    folder = write_files(DOCS)
    code, err = run_cli(["--input", folder, "--out-dir", tmp_path / "out", "--tokenizer", "char",
                         "--val-fraction", fraction], capsys)
    assert_one_line_error(code, err, "--val-fraction must be between 0 and 1")


def test_out_dir_with_a_different_dataset_needs_overwrite(tmp_path, write_files, capsys):
    first = write_files({"a.txt": "first corpus\n"}, "first")
    second = write_files({"a.txt": "second corpus\n"}, "second")
    out = tmp_path / "out"
    assert run_cli(["--input", first, "--out-dir", out, "--tokenizer", "char"], capsys)[0] == 0
    before = folder_bytes(out)

    code, err = run_cli(["--input", second, "--out-dir", out, "--tokenizer", "char"], capsys)
    assert_one_line_error(code, err, "already holds a different dataset", "--overwrite")
    assert folder_bytes(out) == before

    code, err = run_cli(["--input", second, "--out-dir", out, "--tokenizer", "char", "--overwrite"], capsys)
    assert code == 0, err
    assert str(second) in json.loads((out / "meta.json").read_text())["source"]


def test_out_dir_that_cannot_be_created(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "out"  # fails even for root, unlike a read-only folder
    code, err = run_cli(["--input", folder, "--out-dir", out, "--tokenizer", "char"], capsys)
    assert_one_line_error(code, err, f"cannot create --out-dir {out}: Not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_dir(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = run_cli(["--input", folder, "--out-dir", locked / "out", "--tokenizer", "char"], capsys)
        assert_one_line_error(code, err, f"cannot create --out-dir {locked / 'out'}: Permission denied")
        code, err = run_cli(["--input", folder, "--out-dir", locked, "--tokenizer", "char"], capsys)
        assert_one_line_error(code, err, f"--out-dir {locked} is not writable")
    finally:
        locked.chmod(0o755)


def test_source_must_be_given_exactly_once(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    assert_one_line_error(*run_cli(["--out-dir", tmp_path / "out"], capsys), "exactly one source")
    assert_one_line_error(*run_cli(["pystdlib", "--input", folder], capsys), "exactly one source")
    assert_one_line_error(*run_cli(["--input", folder], capsys), "--out-dir DIR is required")


def test_gpt2_without_network_or_cache_names_tiktoken_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget encodings loaded earlier
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(DataError, match=r"tried gpt2, r50k_base.*TIKTOKEN_CACHE_DIR") as error:
        get_tokenizer("gpt2")
    assert "\n" not in str(error.value)


def test_help_documents_presets_and_offline_use(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--input", "--hf-dataset", "--tokenizer", "--val-fraction", "--num-proc", "pystdlib",
                 "shakespeare", "TIKTOKEN_CACHE_DIR"):
        assert word in out


# ---------------------------------------------------------------- interrupted writes


class InterruptedCorpus(Corpus):
    """Yields one document, then behaves like Ctrl-C."""

    description = "interrupted"

    def documents(self):
        yield ["the first document\n"]
        raise KeyboardInterrupt


def test_interruption_keeps_the_previous_dataset(tmp_path, tiny_tokenizer):
    out = tmp_path / "out"
    prepare(["an earlier, complete dataset"], out, tiny_tokenizer)
    before = folder_bytes(out)
    with pytest.raises(KeyboardInterrupt):
        prepare(InterruptedCorpus(), out, tiny_tokenizer, overwrite=True)
    assert folder_bytes(out) == before  # no *.tmp left, old files untouched


def test_worker_failure_leaves_no_files(tmp_path):
    texts = ["abc" * 10] * 20 + ["abz"]  # 'z' is outside the vocabulary
    with pytest.raises(DataError, match="'z'"):
        prepare(texts, tmp_path / "out", char_tokenizer("abc"), num_proc=2)
    assert list((tmp_path / "out").iterdir()) == []


def test_ctrl_c_before_the_work_starts(tmp_path, write_files, monkeypatch, capsys):
    def interrupt(inputs):
        raise KeyboardInterrupt
    monkeypatch.setattr(prepare_module, "find_text_files", interrupt)
    code, err = run_cli(["--input", write_files(DOCS), "--out-dir", tmp_path / "out", "--tokenizer", "char"], capsys)
    assert code == 130 and err.startswith("interrupted by SIGINT") and err.count("\n") == 1, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_modules_load(signum):
    """The signal arrives as data/prepare.py imports numpy: one line, no traceback."""
    signal_on_numpy_import = f"""
import os, runpy, sys
class Signal:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            os.kill(os.getpid(), {int(signum)})
sys.meta_path.insert(0, Signal())
sys.argv = ["data/prepare.py", "--help"]
runpy.run_path({str(PREPARE_PY)!r}, run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", signal_on_numpy_import], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        128 + signum, "", f"interrupted by {signal.Signals(signum).name}\n")


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    """18 MB of text: a second or more of tokenizing, time enough to interrupt it."""
    folder = tmp_path_factory.mktemp("big")
    for i in range(8):
        (folder / f"doc{i}.txt").write_text(f"the cat {i} sat on the mat\n" * 80_000)
    return folder


def file_size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("signum, whole_group", [
    (signal.SIGTERM, False),  # kill PID
    (signal.SIGINT, True),    # Ctrl-C: the terminal signals every process of the group, workers too
    (signal.SIGTERM, True),   # a job scheduler stopping all processes of a job
], ids=["kill", "ctrl-c", "scheduler"])
def test_signal_while_workers_encode(tmp_path, big_corpus, signum, whole_group):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(PREPARE_PY), "--input", str(big_corpus), "--out-dir", str(out),
                                "--tokenizer", "char", "--num-proc", "2"],
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not file_size(out / "train.bin.tmp"):  # the workers' first tokens are written
            assert process.poll() is None and time.monotonic() < deadline, "prepare ended before it was interrupted"
            time.sleep(0.005)
        (os.killpg if whole_group else os.kill)(process.pid, signum)
        err = process.communicate(timeout=30)[1].decode()  # bytes: keep the progress bar's \r as it is
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    lines = err.rstrip("\n").split("\n")  # "source: ...", the progress bar (redrawn after \r), the interruption
    assert len(lines) <= 3 and lines[-1].startswith(f"interrupted by {signal.Signals(signum).name}"), err
    assert list(out.iterdir()) == []  # no meta.json, no temporary file
