"""data/lm_eval_tasks.py: the held-out text is the val split, lm-eval loads and runs both tasks offline, mistakes change nothing."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, make_corpus, tiny_config, tiny_encoding

import data.lm_eval_tasks as tasks_module
from data.dataset import open_dataset
from data.lm_eval_tasks import document_spans, heldout_documents, main
from data.prepare import prepare
from data.tokenizer import CHAR_SEPARATOR, TiktokenTokenizer, tokenizer_from_meta

TASKS = ["swiglu_heldout", "swiglu_sentiment"]
ROWS = [  # the characters of make_corpus's words, and one more
    ("the big red house", "positive"),
    ("a cat sat on a mat", "neutral"),
    ("the dog ran #sad", "negative"),  # '#' is not in the dataset's vocabulary
    ("a big cat", "positive"),
    ("the dog and the cat", "neutral"),
    ("bad red mat", "negative"),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A character dataset whose val split holds several documents, the first one partial."""
    out = tmp_path_factory.mktemp("data") / "char"
    prepare(make_corpus(n_docs=8, words_per_doc=1000), out, "char", val_fraction=0.4)
    return out


@pytest.fixture
def labelled_file(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in ROWS), encoding="utf-8")
    return path


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of main(argv)."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- the held-out text


def test_heldout_holds_exactly_the_val_split(data_dir, labelled_file, tmp_path, capsys):
    code, out, err = run_cli(capsys, f"--data_dir={data_dir}", f"--labelled_file={labelled_file}", f"--tasks_dir={tmp_path / 'tasks'}")
    assert code == 0, err
    dataset = open_dataset(data_dir)
    val_text = tokenizer_from_meta(dataset.meta).decode(dataset.val)
    documents = [row["text"] for row in read_jsonl(tmp_path / "tasks" / "heldout.jsonl")]

    assert len(documents) >= 3 and all(documents)
    assert documents == [piece for piece in val_text.split(CHAR_SEPARATOR) if piece]
    assert CHAR_SEPARATOR.join(documents) + CHAR_SEPARATOR == val_text  # the split ends with a document's end-of-text id
    assert not any(val_text.startswith(doc) for doc in make_corpus(n_docs=8, words_per_doc=50))  # the first one is a tail
    assert f"{len(documents):,} documents, {len(val_text.encode()) - len(documents):,} bytes" in out
    assert "6 rows, 3 classes: negative (2), neutral (2), positive (2)" in out
    assert "1 of the rows hold characters the vocabulary lacks ('#')" in out
    assert "lm_eval --model hf" in out and "--tasks swiglu_heldout,swiglu_sentiment" in out


def test_documents_split_at_every_end_of_text_id_across_scan_chunks(monkeypatch):
    tokenizer = TiktokenTokenizer(tiny_encoding())
    eot = tokenizer.eot_id
    pieces = ["the cat", "sat on", "the mat.\n\n", "x"]
    ids = [eot]  # the split may start with one: no empty first document
    for piece in pieces:
        ids += tokenizer.encode(piece) + [eot, eot]  # consecutive ids: no empty document between them
    tokens = np.array(ids[:-2], dtype=np.uint16)  # the last document without its id: a split ends anywhere
    monkeypatch.setattr(tasks_module, "SCAN_CHUNK", 3)  # ids on and across chunk boundaries

    assert [tokenizer.decode(tokens[a:b]) for a, b in document_spans(tokens, eot)] == pieces
    assert heldout_documents(tokens, tokenizer) == pieces
    assert heldout_documents(tokens, tokenizer, max_docs=2) == pieces[:2]


# ---------------------------------------------------------------- lm-eval


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # get_task_dict, which lm-eval 0.4.9 has and 0.4.13 deprecates
def test_lm_eval_finds_and_builds_both_tasks_offline(data_dir, labelled_file, tmp_path, capsys, monkeypatch):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # lm-eval must find the data by the YAML's paths, not from the working directory
    tasks_dir = tmp_path / "tasks"
    argv = [f"--data_dir={data_dir}", f"--labelled_file={labelled_file}", f"--tasks_dir={tasks_dir}", "--labels=positive,negative"]
    assert run_cli(capsys, *argv)[0] == 0
    sentiment = yaml.safe_load((tasks_dir / "swiglu_sentiment.yaml").read_text())
    assert sentiment["doc_to_choice"] == ["positive", "negative"] and sentiment["doc_to_text"] == "Text: {{text}}\nSentiment:"

    manager = TaskManager(include_path=str(tasks_dir), include_defaults=False)  # the defaults take 8 s to index
    assert set(TASKS) <= set(manager.all_tasks)
    built = get_task_dict(TASKS, manager)
    heldout, tweets = list(built["swiglu_heldout"].test_docs()), list(built["swiglu_sentiment"].test_docs())
    assert heldout == read_jsonl(tasks_dir / "heldout.jsonl")
    kept = [(text, label) for text, label in ROWS if label != "neutral"]
    assert [(doc["text"], sentiment["doc_to_choice"][doc["label"]]) for doc in tweets] == kept
    task = built["swiglu_sentiment"]
    assert task.doc_to_text(tweets[0]) == f"Text: {kept[0][0]}\nSentiment:" and task.doc_to_target(tweets[0]) == 0


BLOCK_SIZE = 32  # the trained run's block: what the export gives as max_position_embeddings, lm-eval's window


@pytest.fixture(scope="module")
def exported_run(data_dir, tmp_path_factory):
    """A tiny modern-block SwiGLU run trained by train.py on data_dir and exported by export.py.

    Its last evaluation samples 200 * 8 windows of 32 tokens from a val split of about 13k tokens, so
    its val/bpb covers the split about four times over, as lm-eval's rolling windows cover it once.
    """
    import export
    import train

    out = tmp_path_factory.mktemp("runs") / "swiglu"
    block = dict(mlp="swiglu", norm="rmsnorm", pos="rope", block_size=BLOCK_SIZE)
    train.train(tiny_config(data_dir, out, max_iters=100, eval_interval=100, eval_iters=200, **block))
    assert export.main([f"--out_dir={out}"]) == 0
    return out


@pytest.fixture(scope="module")
def lm_eval_results(data_dir, exported_run, tmp_path_factory):
    """(lm-eval's results of both tasks on the exported run, the task folder), offline."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    tasks_dir = tmp_path_factory.mktemp("lm_eval") / "tasks"
    labelled_file = tasks_dir.parent / "tweets.csv"
    labelled_file.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in ROWS), encoding="utf-8")
    assert main([f"--data_dir={data_dir}", f"--labelled_file={labelled_file}", f"--tasks_dir={tasks_dir}"]) == 0
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("HF_DATASETS_OFFLINE", "1")
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={exported_run / 'hf'}",
            tasks=TASKS,
            task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
            device="cpu",
            batch_size=4,
        )
    return results, tasks_dir


@torch.no_grad()
def rolling_loglikelihood(model, ids, prefix_id, window):
    """lm-eval's loglikelihood_rolling, written out: the document after one prefix token, cut into windows of `window`
    predicted tokens; each window's input is the `window` tokens before its last prediction (fewer for the first)."""
    stream = torch.tensor([prefix_id, *ids])
    total = 0.0
    for start in range(0, len(ids), window):
        end = min(start + window, len(ids))  # predicts ids[start:end] = stream[start + 1 : end + 1]
        inputs = stream[max(0, end - window) : end]
        logprobs = model(inputs[None]).logits[0].log_softmax(-1)[-(end - start) :]
        total += logprobs.gather(1, stream[start + 1 : end + 1, None]).sum().item()
    return total


def test_lm_eval_runs_both_tasks_on_an_exported_model(exported_run, lm_eval_results):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    results, tasks_dir = lm_eval_results
    heldout, sentiment = results["results"]["swiglu_heldout"], results["results"]["swiglu_sentiment"]
    assert 0 <= sentiment["acc,none"] <= 1 and 0 <= sentiment["acc_norm,none"] <= 1
    assert results["n-samples"]["swiglu_sentiment"]["effective"] == len(ROWS)
    # the first context token is the tokenizer's bos (our end-of-text), the window the config's max_position_embeddings
    model = AutoModelForCausalLM.from_pretrained(exported_run / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(exported_run / "hf")
    documents = [row["text"] for row in read_jsonl(tasks_dir / "heldout.jsonl")]
    loglikelihood = sum(rolling_loglikelihood(model, tokenizer.encode(doc), tokenizer.bos_token_id, BLOCK_SIZE) for doc in documents)
    expected = -loglikelihood / math.log(2) / sum(len(doc.encode()) for doc in documents)
    assert heldout["bits_per_byte,none"] == pytest.approx(expected, rel=1e-5)
    # each choice is scored as " " + the label name after the prompt
    arguments = [tuple(a) for a in results["samples"]["swiglu_sentiment"][0]["arguments"]]
    assert arguments == [(f"Text: {ROWS[0][0]}\nSentiment:", f" {label}") for label in ("negative", "neutral", "positive")]


def test_lm_eval_bits_per_byte_equals_our_val_bpb(exported_run, lm_eval_results):
    """The same text, two ways: train.py's val/bpb (random windows across documents) and lm-eval's
    (each document alone, in rolling windows). A trained model: at init every position costs ln(vocab) either way.
    What is left between them is how a document's first characters are scored (after the document before it, or
    after a lone end-of-text): 0.3% with these 4k-character documents, 0.9% with 1.6k-character ones."""
    results, _ = lm_eval_results
    records = [json.loads(line) for line in (exported_run / "metrics.jsonl").read_text().splitlines()]
    ours = [r["val_bpb"] for r in records if r.get("val_bpb") is not None][-1]
    vocab = open_dataset(records[0]["config"]["data_dir"]).meta["vocab_size"]
    assert ours < 0.6 * math.log2(vocab)  # it learnt something: a uniform guess costs log2(vocab) bits per character
    assert results["results"]["swiglu_heldout"]["bits_per_byte,none"] == pytest.approx(ours, rel=0.01)


# ---------------------------------------------------------------- the folder


def test_rerun_replaces_our_files_and_drops_a_stale_task(data_dir, labelled_file, tmp_path, capsys):
    tasks_dir = tmp_path / "tasks"
    assert run_cli(capsys, f"--data_dir={data_dir}", f"--labelled_file={labelled_file}", f"--tasks_dir={tasks_dir}")[0] == 0
    assert run_cli(capsys, f"--data_dir={data_dir}", f"--tasks_dir={tasks_dir}", "--max_docs=1")[0] == 0

    assert sorted(p.name for p in tasks_dir.iterdir()) == ["heldout.jsonl", "swiglu_heldout.yaml"]
    assert len(read_jsonl(tasks_dir / "heldout.jsonl")) == 1
    heldout = yaml.safe_load((tasks_dir / "swiglu_heldout.yaml").read_text())
    assert heldout["dataset_kwargs"]["data_files"]["test"] == str(tasks_dir / "heldout.jsonl")
    assert heldout["output_type"] == "loglikelihood_rolling" and heldout["doc_to_target"] == "text"


def test_overwrite_writes_beside_other_files_and_keeps_them(data_dir, tmp_path, capsys):
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "notes.txt").write_text("mine")
    assert run_cli(capsys, f"--data_dir={data_dir}", f"--tasks_dir={tasks_dir}", "--overwrite")[0] == 0
    assert sorted(p.name for p in tasks_dir.iterdir()) == ["heldout.jsonl", "notes.txt", "swiglu_heldout.yaml"]
    assert (tasks_dir / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("existing", [True, False])
def test_an_interruption_while_writing_leaves_the_folder_as_it_was(data_dir, labelled_file, tmp_path, capsys, monkeypatch, existing):
    tasks_dir = tmp_path / "tasks"
    if existing:
        assert run_cli(capsys, f"--data_dir={data_dir}", f"--tasks_dir={tasks_dir}", "--max_docs=1")[0] == 0
    before = folder_bytes(tasks_dir) if existing else None
    calls = []

    def ctrl_c_at_the_third_file(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(tasks_module.os, "fsync", ctrl_c_at_the_third_file)
    code, _, err = run_cli(capsys, f"--data_dir={data_dir}", f"--labelled_file={labelled_file}", f"--tasks_dir={tasks_dir}")

    assert code == 130 and "interrupted by SIGINT; the task folder was left as it was" in err
    if existing:
        assert folder_bytes(tasks_dir) == before  # no temp file left, no file of the new run in place
    else:
        assert not tasks_dir.exists()  # the folder this run made goes too


# ---------------------------------------------------------------- mistakes


def test_help_lists_the_keys(capsys):
    code, out, _ = run_cli(capsys, "-h")
    assert code == 0
    for key in ("--data_dir=", "--labelled_file=", "--tasks_dir=", "--labels=", "--max_docs=", "--overwrite="):
        assert key in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "--data_dir=DIR is required"),
        (["--data_dir={tmp}/nowhere"], "dataset folder not found"),
        (["--data_dir={data}", "--labelled_file={tmp}/missing.csv"], "missing.csv not found"),
        (["--data_dir={data}", "--labelled_file={labelled}", "--label_column=sentiment"], "has no column 'sentiment'"),
        (["--data_dir={data}", "--labelled_file={labelled}", "--labels=positive,angry"], "has no label 'angry'"),
        (["--data_dir={data}", "--max_docs=-1"], "max_docs must be"),
        (["--data_dir={data}", "--tasks={tmp}"], "unknown config key 'tasks'"),
        (["--data_dir={data}", "stray"], "unexpected argument 'stray'"),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(data_dir, labelled_file, tmp_path, capsys, argv, fragment):
    tasks_dir = tmp_path / "tasks"
    filled = [arg.format(tmp=tmp_path, data=data_dir, labelled=labelled_file) for arg in argv]
    code, out, err = run_cli(capsys, *filled, f"--tasks_dir={tasks_dir}")
    assert code == 2 and not out
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert not tasks_dir.exists()


def test_a_folder_of_other_files_is_refused_and_left_alone(data_dir, tmp_path, capsys):
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, f"--data_dir={data_dir}", f"--tasks_dir={tasks_dir}")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --tasks_dir {tasks_dir} holds files not written here (notes.txt)") and "--overwrite" in err
    assert folder_bytes(tasks_dir) == {"notes.txt": b"mine"}


def test_the_script_runs_from_the_repo_root(tmp_path):
    result = subprocess.run(
        [sys.executable, "data/lm_eval_tasks.py", f"--data_dir={tmp_path / 'nowhere'}", f"--tasks_dir={tmp_path / 'tasks'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: dataset folder not found") and result.stderr.count("\n") == 1
    assert not (tmp_path / "tasks").exists()


def test_a_file_as_tasks_dir_is_refused(data_dir, tmp_path, capsys):
    (tmp_path / "tasks").write_text("x")
    code, _, err = run_cli(capsys, f"--data_dir={data_dir}", f"--tasks_dir={tmp_path / 'tasks'}")
    assert code == 2 and "is a file, not a folder" in err
