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
from conftest import GPT2_PATTERN, MERGES, make_corpus

import data.prepare as prepare_module
from core.entry import RunFailed
from core.paths import recorded_path
from data.prepare import Corpus, file_corpus, main, prepare
from data.tokenizer import CharTokenizer, DataError, get_tokenizer, tokenizer_from_meta

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
        len(tiny_tokenizer.encode("".join(ORDERED[: k + 1]))) + k for k in range(3)
    ]
    assert meta["documents"] == 3 and meta["dtype"] == "uint16"
    assert meta["train_tokens"] + meta["val_tokens"] == len(tokens)
    assert (meta["tokenizer"], meta["vocab_size"], meta["eot_id"]) == ("tiny", 265, 264)
    assert recorded_path(folder) in meta["source"]


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
    pieces, encode = [], tiny_tokenizer.encode_to_numpy
    monkeypatch.setattr(tiny_tokenizer, "encode_to_numpy", lambda piece: pieces.append(piece) or encode(piece))
    prepare([text], tmp_path / "out", tiny_tokenizer, num_proc=2)
    assert len(pieces) > 10 and sum(map(len, pieces)) == len(text)  # the document was cut, nothing lost
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
    tokenizer = CharTokenizer("ab")
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
    assert val.tolist() == stream[-len(val) :]


def test_same_input_gives_the_same_bytes(tmp_path, write_files, tiny_tokenizer):
    folder = write_files(DOCS)
    prepare(file_corpus([str(folder)]), tmp_path / "one", tiny_tokenizer)
    prepare(file_corpus([str(folder)]), tmp_path / "two", tiny_tokenizer)
    first = folder_bytes(tmp_path / "one")
    assert first == folder_bytes(tmp_path / "two")
    prepare(file_corpus([str(folder)]), tmp_path / "one", tiny_tokenizer)  # same dataset: rebuilt in place
    assert folder_bytes(tmp_path / "one") == first


def test_two_threads_give_the_same_bytes_as_one(tmp_path, monkeypatch, write_files, tiny_tokenizer):
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 50)  # many batches, so both threads take part
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


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Hugging Face's dataset cache in tmp_path, not the user's."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "hf" / "downloads")


def test_hugging_face_json_loader(tmp_path, hf_cache, capsys):
    rows = ["first row", "second\nrow", None, "third"]
    for name, part in (("a.jsonl", rows[:3]), ("b.jsonl", rows[3:])):
        (tmp_path / name).write_text("".join(json.dumps({"text": r, "id": 0}) + "\n" for r in part))
    files = f"{tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}"
    argv = ["--hf_dataset=json", f"--hf_data_files={files}", "--tokenizer=char", "--val_tokens=5", f"--out_dir={tmp_path / 'out'}"]
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    val, train = (np.fromfile(tmp_path / "out" / meta["shards"][split][0]["file"], dtype=meta["dtype"]) for split in ("val", "train"))
    # streamed: the validation split is the first whole documents, the train shards the rest
    decode = tokenizer_from_meta(meta).decode
    assert (decode(val), decode(train)) == ("first row\x00", "second\nrow\x00third\x00")
    assert meta["source"] == f"hf: json split=train files={files} column=text"
    assert (tmp_path / "hf").is_dir()  # the cache went where hf_cache put it, not into the user's

    code, err = run_cli(
        ["--hf_dataset=json", f"--hf_data_files={files}", "--text_column=body", "--tokenizer=char", f"--out_dir={tmp_path / 'out2'}"],
        capsys,
    )
    assert_one_line_error(code, err, "no column 'body'", "its columns are text, id", "--text_column")


def test_tokenizer_survives_pickling(tiny_tokenizer):
    clone = pickle.loads(pickle.dumps(tiny_tokenizer))
    text = "the thing in the ring"
    assert clone.encode(text) == tiny_tokenizer.encode(text) != list(text.encode())
    assert (clone.name, clone.vocab_size, clone.eot_id) == ("tiny", 265, 264)


# ---------------------------------------------------------------- presets


def test_pystdlib_preset_works_offline(tmp_path, capsys):
    code, err = run_cli(["pystdlib", "--max_mb=0.05", "--tokenizer=char", f"--out_dir={tmp_path / 'out'}"], capsys)
    assert code == 0, err
    assert "source: preset pystdlib: Python" in err and ", first 0.05 MB" in err  # the wording of earlier folders
    assert "standard library" in json.loads((tmp_path / "out" / "meta.json").read_text())["source"]


def test_shakespeare_preset_without_network_fails_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_module, "CACHE_DIR", tmp_path / "cache")
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port: the download fails at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    code, err = run_cli(["shakespeare", "--tokenizer=char", f"--out_dir={tmp_path / 'out'}"], capsys)
    assert_one_line_error(code, err, "could not download", "input path", "pystdlib")
    assert not (tmp_path / "out").exists() and list((tmp_path / "cache").iterdir()) == []  # no partial download

    code, err = run_cli(["quickstart", "--max_mb=0.05", "--tokenizer=char", f"--out_dir={tmp_path / 'qs'}"], capsys)
    assert code == 0, err
    assert "using the Python standard library" in err and "source: preset pystdlib" in err


# ---------------------------------------------------------------- command line


def test_inputs_are_positional_arguments(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    argv = [
        folder / "a.txt",
        folder / "*.txt",
        str(folder / "sub") + "/**/*.md",
        "--tokenizer=char",
        f"--out_dir={tmp_path / 'out'}",
        "--val_fraction=0.25",
        "--num_proc=2",
    ]
    code, err = run_cli(argv, capsys)
    assert code == 0 and "note:" not in err, err
    meta, tokens = read_tokens(tmp_path / "out")
    assert tokenizer_from_meta(meta).decode(tokens) == "".join(doc + "\x00" for doc in ORDERED)
    assert meta["val_fraction"] == 0.25 and meta["source"].startswith(f"files: {recorded_path(folder / 'a.txt')}, ")


def test_old_spellings_still_work_with_a_note(tmp_path, write_files, capsys):
    """The argparse days' command lines give the same dataset, with one note per old spelling."""
    folder = write_files(DOCS)
    new = [folder, "--tokenizer=char", f"--out_dir={tmp_path / 'new'}", "--val_fraction=0.25", "--num_proc=2"]
    assert run_cli(new, capsys)[0] == 0
    old = [
        "--input",
        folder,
        "--tokenizer",
        "char",
        "--out-dir",
        tmp_path / "old",
        "--val-fraction",
        "0.25",
        "--num-proc",
        "2",
        "--overwrite",
    ]
    code, err = run_cli(old, capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 5 and all(line.startswith("data/prepare.py: note: ") for line in notes), err
    assert "--input is deprecated" in notes[0]
    for written in ("--tokenizer=char", f"--out_dir={tmp_path / 'old'}", "--val_fraction=0.25", "--num_proc=2"):
        assert any(f"write {written}" in line for line in notes), (written, err)
    assert folder_bytes(tmp_path / "old") == folder_bytes(tmp_path / "new")

    code, err = run_cli([f"--input={folder}", f"--out_dir={tmp_path / 'eq'}", "--tokenizer=char", "--val_fraction=0.25"], capsys)
    assert code == 0 and "--input is deprecated" in err, err
    assert folder_bytes(tmp_path / "eq") == folder_bytes(tmp_path / "new")


def test_old_spelling_of_several_hugging_face_files(tmp_path, hf_cache, capsys):
    for name, text in (("a.jsonl", "one"), ("b.jsonl", "two")):
        (tmp_path / name).write_text(json.dumps({"text": text}) + "\n")
    code, err = run_cli(
        [
            "--hf-dataset",
            "json",
            "--hf-data-files",
            tmp_path / "a.jsonl",
            tmp_path / "b.jsonl",
            "--tokenizer=char",
            f"--out_dir={tmp_path / 'out'}",
            "--val_tokens=2",
        ],
        capsys,
    )
    assert code == 0, err
    assert f"write --hf_data_files={tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}" in err
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["source"] == f"hf: json split=train files={tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'} column=text"
    assert (meta["val_tokens"], meta["train_tokens"]) == (4, 4)  # one\0 and two\0


def test_help_documents_options_presets_and_offline_use(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python data/prepare.py PRESET | PATH ... | --hf_dataset=NAME")
    for word in (
        "--out_dir=",
        "--hf_dataset=",
        "--hf_data_files=",
        "--tokenizer='gpt2'",
        "--val_fraction=None",
        "--shard_tokens=",
        "--max_tokens=",
        "resumes",
        "--num_proc=",
        "threads that encode",
        "pystdlib",
        "shakespeare",
        "quickstart",
        "TIKTOKEN_CACHE_DIR",
        "--hf_dataset=json --hf_data_files=corpus.jsonl",
    ):
        assert word in out, word


# ---------------------------------------------------------------- bad input


def test_missing_path(tmp_path, capsys):
    code, err = run_cli([tmp_path / "nope.txt", f"--out_dir={tmp_path / 'out'}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, "input not found", "nope.txt")


def test_empty_corpus(tmp_path, write_files, capsys):
    folder = write_files({"empty.txt": "", "also_empty.txt": ""})
    code, err = run_cli([folder, f"--out_dir={tmp_path / 'out'}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, "empty corpus")
    assert list((tmp_path / "out").iterdir()) == []


def test_corpus_too_small_to_split(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("a")  # two tokens with the separator, both needed for validation
    code, err = run_cli([tmp_path / "a.txt", f"--out_dir={tmp_path / 'out'}", "--tokenizer=char", "--val_fraction=0.9"], capsys)
    assert_one_line_error(code, err, "corpus too small to split: 2 tokens")
    assert list((tmp_path / "out").iterdir()) == []


def test_folder_without_text_files(tmp_path, write_files, capsys):
    folder = write_files({"model.bin": b"\x00\x01\x02", ".notes.txt": "hidden"})
    code, err = run_cli([folder, f"--out_dir={tmp_path / 'out'}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, "no text files in folder")
    code, err = run_cli([folder / "*.txt", f"--out_dir={tmp_path / 'out'}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, "no text files match")
    code, err = run_cli([folder / "model.bin", f"--out_dir={tmp_path / 'out'}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, "model.bin is not a text file")


def test_file_that_is_not_utf8(tmp_path, write_files, capsys):
    folder = write_files({"a.txt": "fine\n", "b.txt": b"caf\xe9\n"})
    argv = [folder, f"--out_dir={tmp_path / 'out'}", "--tokenizer=char"]
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "b.txt", "--encoding_errors=replace")
    assert not list((tmp_path / "out").glob("*"))  # nothing half-written

    code, err = run_cli(argv + ["--encoding_errors=replace"], capsys)
    assert code == 0, err
    meta, tokens = read_tokens(tmp_path / "out")
    assert tokenizer_from_meta(meta).decode(tokens) == "fine\n\x00caf\ufffd\n\x00"


def test_unknown_tokenizer(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    code, err = run_cli([folder, f"--out_dir={tmp_path / 'out'}", "--tokenizer=gpt5"], capsys)
    assert_one_line_error(code, err, "unknown tokenizer 'gpt5'", "r50k_base", "char")


@pytest.mark.parametrize(
    "option, message",
    [
        *[(f"--val_fraction={f}", "val_fraction must be between 0 and 1") for f in ("0", "1", "1.5", "-0.1")],
        ("--num_proc=0", "num_proc must be at least 1"),
        ("--encoding_errors=ignore", "encoding_errors must be strict or replace"),
        ("--val_fraction=half", "val_fraction on the command line must be float"),
        ("--out_dri=x", "unknown config key 'out_dri' on the command line; did you mean out_dir?"),
    ],
)
def test_bad_option(tmp_path, write_files, capsys, option, message):
    folder = write_files(DOCS)
    code, err = run_cli([folder, f"--out_dir={tmp_path / 'out'}", "--tokenizer=char", option], capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "out").exists()


def test_out_dir_with_a_different_dataset_needs_overwrite(tmp_path, write_files, capsys):
    first = write_files({"a.txt": "first corpus\n"}, "first")
    second = write_files({"a.txt": "second corpus\n"}, "second")
    out = tmp_path / "out"
    assert run_cli([first, f"--out_dir={out}", "--tokenizer=char"], capsys)[0] == 0
    before = folder_bytes(out)

    code, err = run_cli([second, f"--out_dir={out}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, "already holds a different dataset", "--overwrite")
    assert folder_bytes(out) == before

    code, err = run_cli([second, f"--out_dir={out}", "--tokenizer=char", "--overwrite"], capsys)
    assert code == 0, err
    assert recorded_path(second) in json.loads((out / "meta.json").read_text())["source"]


def test_out_dir_that_cannot_be_created(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "out"  # fails even for root, unlike a read-only folder
    code, err = run_cli([folder, f"--out_dir={out}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, f"cannot create --out_dir {out}: Not a directory")
    code, err = run_cli([folder, f"--out_dir={tmp_path / 'a_file'}", "--tokenizer=char"], capsys)
    assert_one_line_error(code, err, f"--out_dir {tmp_path / 'a_file'} is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_dir(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = run_cli([folder, f"--out_dir={locked / 'out'}", "--tokenizer=char"], capsys)
        assert_one_line_error(code, err, f"cannot create --out_dir {locked / 'out'}: Permission denied")
        code, err = run_cli([folder, f"--out_dir={locked}", "--tokenizer=char"], capsys)
        assert_one_line_error(code, err, f"--out_dir {locked} is not writable")
    finally:
        locked.chmod(0o755)


def test_source_must_be_given_exactly_once(tmp_path, write_files, capsys):
    folder = write_files(DOCS)
    out = f"--out_dir={tmp_path / 'out'}"
    for argv in ([out], ["pystdlib", folder, out], [folder, "--hf_dataset=json", out], ["--input", folder, "quickstart"]):
        assert_one_line_error(*run_cli(argv, capsys), "exactly one source")
    assert_one_line_error(*run_cli([folder], capsys), "--out_dir=DIR is required")
    assert_one_line_error(*run_cli(["--hf_dataset=json"], capsys), "--out_dir=DIR is required")
    assert not (tmp_path / "out").exists()


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


# ---------------------------------------------------------------- interrupted writes


def interrupted_documents():
    """One document, then what Ctrl-C does."""
    yield ["the first document\n"]
    raise KeyboardInterrupt


def test_interruption_keeps_the_previous_dataset(tmp_path, tiny_tokenizer):
    out = tmp_path / "out"
    prepare(["an earlier, complete dataset"], out, tiny_tokenizer)
    before = folder_bytes(out)
    with pytest.raises(KeyboardInterrupt):
        prepare(Corpus("interrupted", interrupted_documents), out, tiny_tokenizer, overwrite=True)
    assert folder_bytes(out) == before  # no *.tmp left, old files untouched


def test_thread_failure_leaves_no_files(tmp_path):
    texts = ["abc" * 10] * 20 + ["abz"]  # 'z' is outside the vocabulary
    with pytest.raises(DataError, match="'z'"):
        prepare(texts, tmp_path / "out", CharTokenizer("abc"), num_proc=2)
    assert list((tmp_path / "out").iterdir()) == []


def test_ctrl_c_before_the_work_starts(tmp_path, write_files, monkeypatch, capsys):
    def interrupt(inputs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "find_text_files", interrupt)
    code, err = run_cli([write_files(DOCS), f"--out_dir={tmp_path / 'out'}", "--tokenizer=char"], capsys)
    assert code == 130 and err.startswith("data/prepare.py: interrupted by SIGINT; no partial files") and err.count("\n") == 1, err


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
    expected_err = f"data/prepare.py: interrupted by {signal.Signals(signum).name}\n"
    assert (result.returncode, result.stdout, result.stderr) == (128 + signum, "", expected_err)


# tiktoken's plugin mechanism (a module in the tiktoken_ext namespace package) makes conftest's tiny
# BPE encoding a --tokenizer name for a child process: slow enough to interrupt, and offline.
TINY_PLUGIN = f"""
def tiny():
    ranks = {{bytes([i]): i for i in range(256)}}
    for merge in {MERGES!r}:
        ranks[merge] = len(ranks)
    return {{"name": "tiny", "pat_str": {GPT2_PATTERN!r}, "mergeable_ranks": ranks,
            "special_tokens": {{"<|endoftext|>": len(ranks)}}}}

ENCODING_CONSTRUCTORS = {{"tiny": tiny}}
"""


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    """32 MB of text and a PYTHONPATH with the tiny encoding: half a second or more of tokenizing."""
    folder = tmp_path_factory.mktemp("big")
    for i in range(16):
        (folder / f"doc{i}.txt").write_text(f"the cat {i} sat on the mat\n" * 80_000)
    plugin = tmp_path_factory.mktemp("plugin")
    (plugin / "tiktoken_ext").mkdir()
    (plugin / "tiktoken_ext" / "tiny_for_tests.py").write_text(TINY_PLUGIN)
    return folder, {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}


def file_size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_tiny_plugin_encodes_like_the_fixture(tmp_path, big_corpus, tiny_tokenizer):
    """The child processes below tokenize with conftest's tiny encoding."""
    folder, env = big_corpus
    (tmp_path / "a.txt").write_text(DOCS["a.txt"] * 3)
    subprocess.run(
        [sys.executable, str(PREPARE_PY), str(tmp_path / "a.txt"), f"--out_dir={tmp_path / 'out'}", "--tokenizer=tiny"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    _, tokens = read_tokens(tmp_path / "out")
    assert tokens.tolist() == tiny_tokenizer.encode(DOCS["a.txt"] * 3) + [tiny_tokenizer.eot_id]


@pytest.mark.parametrize(
    "signum, whole_group",
    [
        (signal.SIGTERM, False),  # kill PID
        (signal.SIGINT, True),  # Ctrl-C: the terminal signals every process of the group
        (signal.SIGTERM, True),  # a job scheduler stopping all processes of a job
        (signal.SIGHUP, True),  # the terminal closed
    ],
    ids=["kill", "ctrl-c", "scheduler", "hangup"],
)
def test_signal_while_threads_encode(tmp_path, big_corpus, signum, whole_group):
    folder, env = big_corpus
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(PREPARE_PY), str(folder), f"--out_dir={out}", "--tokenizer=tiny", "--num_proc=2"],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not file_size(out / "train.bin.tmp"):  # the first tokens are written
            assert process.poll() is None and time.monotonic() < deadline, "prepare ended before it was interrupted"
            time.sleep(0.005)
        (os.killpg if whole_group else os.kill)(process.pid, signum)
        err = process.communicate(timeout=30)[1].decode()  # bytes: keep the progress bar's \r as it is
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    lines = err.rstrip("\n").split("\n")  # "source: ...", the progress bar (redrawn after \r), the interruption
    assert len(lines) <= 3 and lines[-1].startswith(f"data/prepare.py: interrupted by {signal.Signals(signum).name}"), err
    assert list(out.iterdir()) == []  # no meta.json, no temporary file


def test_a_lone_surrogate_in_a_text_is_replaced_as_tiktoken_does(tmp_path, tiny_tokenizer):
    prepare(["ab\ud800cd " * 50], tmp_path / "out", tiny_tokenizer)
    tokens = np.fromfile(tmp_path / "out" / "train.bin", dtype=np.uint16)
    assert tiny_tokenizer.decode(tokens).startswith("ab\ufffdcd ab\ufffdcd")


@pytest.mark.parametrize("option,message", [(dict(val_fraction=0), "val_fraction"), (dict(num_proc=0), "num_proc")])
def test_prepare_checks_its_arguments_as_the_command_line_does(tmp_path, tiny_tokenizer, option, message):
    with pytest.raises(DataError, match=message):
        prepare(make_corpus(), tmp_path / "out", tiny_tokenizer, **option)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_one_line_naming_the_folder_and_keeps_the_old_dataset(tmp_path, tiny_tokenizer, capsys):
    out = tmp_path / "out"
    prepare(make_corpus(), out, tiny_tokenizer)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "train.bin.tmp").symlink_to("/dev/full")  # every write to it fails with ENOSPC
    with pytest.raises(RunFailed) as failed:
        prepare(make_corpus(), out, tiny_tokenizer, overwrite=True)
    assert str(failed.value) == f"could not write the dataset into {out} (No space left on device); no partial files were left"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_byte_lengths_count_the_text_of_each_id_and_nothing_for_end_of_text(tiny_tokenizer):
    lengths = tiny_tokenizer.byte_lengths()
    text = "the thing\n\nin éé"
    ids = tiny_tokenizer.encode(text) + [tiny_tokenizer.eot_id]
    assert lengths[ids].sum() == len(text.encode()) and lengths[tiny_tokenizer.eot_id] == 0
    chars = CharTokenizer("abé")
    assert chars.byte_lengths()[chars.encode("abé")].sum() == len("abé".encode()) and chars.byte_lengths()[chars.eot_id] == 0
