"""Tests for classify.py: it learns a task, padding changes nothing, batches follow the seed alone,
resume is exact, a pretrained train.py run fine-tunes, and bad input is one line."""

import csv
import random

import numpy as np
import pytest
import torch
from conftest import tiny_config

import classify as classify_module
from classify import classify, train_indices
from core.configs import ClassifyConfig
from core.metrics import read_metrics
from model import GPT, GPTClassifier, GPTConfig
from train import train

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "to", "house"]


def write_task(folder, n_train=240, n_test=80, seed=0):
    """A three-class task a tiny model learns in seconds: the label is the mood word each text holds."""
    rng = random.Random(seed)
    moods = {"negative": "awful", "neutral": "plain", "positive": "lovely"}

    def rows(n):
        for _ in range(n):
            label = rng.choice(list(moods))
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
            words.insert(rng.randint(0, len(words)), moods[label])
            yield {"text": " ".join(words) + "!", "label": label}

    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.csv", n_train), ("test.csv", n_test)):
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(rows(n))
    return folder / "train.csv", folder / "test.csv"


def tiny_classify(task, out_dir, **overrides):
    train_file, test_file = task
    base = dict(
        train_file=str(train_file),
        test_file=str(test_file),
        out_dir=str(out_dir),
        tokenizer="char",
        n_layer=1,
        n_head=2,
        n_embd=32,
        block_size=64,
        batch_size=16,
        max_iters=60,
        eval_interval=30,
        log_interval=10,
        learning_rate=3e-3,
        warmup_iters=5,
        device="cpu",
        dtype="float32",
        dropout=0.0,
    )
    return ClassifyConfig(**{**base, **overrides})


def events(out_dir, kind):
    return [r for r in read_metrics(out_dir) if r["event"] == kind]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return write_task(tmp_path_factory.mktemp("task"))


def test_a_classifier_from_scratch_learns_the_task_and_logs_every_metric(task, tmp_path):
    summary = classify(tiny_classify(task, tmp_path / "run"))
    config, evals = events(tmp_path / "run", "config")[0], events(tmp_path / "run", "eval")
    assert config["task"] == "classify" and config["data"]["label_names"] == ["negative", "neutral", "positive"]
    assert [e["iter"] for e in evals] == [30, 60]
    last = evals[-1]
    assert last["accuracy"] > last["majority_accuracy"] + 0.3, last
    assert summary["final_accuracy"] == last["accuracy"] and summary["final_macro_f1"] == last["macro_f1"]
    confusion = np.array(last["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 80
    assert last["accuracy"] == pytest.approx(np.trace(confusion) / 80)
    f1s = [last["per_class"][name]["f1"] for name in ("negative", "neutral", "positive")]
    assert last["macro_f1"] == pytest.approx(np.mean(f1s))
    assert [c["support"] for c in last["per_class"].values()] == confusion.sum(axis=1).tolist()
    end = events(tmp_path / "run", "end")[0]
    assert end["final_accuracy"] == last["accuracy"] and end["iter"] == 60
    assert (tmp_path / "run" / "ckpt.pt").exists()


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_changes_nothing(pooling):
    torch.manual_seed(0)
    model = GPTClassifier(GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16, mlp="swiglu")), 3, pooling).eval()
    texts = [torch.randint(1, 40, (n,)) for n in (3, 9, 16)]
    alone = torch.cat([model(t[None], torch.tensor([len(t)]))[0] for t in texts])
    batch = torch.zeros(3, 16, dtype=torch.long)
    for row, t in enumerate(texts):
        batch[row, : len(t)] = t
    batch[0, 3:] = 7  # whatever the pad id
    padded, _ = model(batch, torch.tensor([3, 9, 16]))
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-6)


def test_training_texts_follow_the_seed_and_iteration_alone():
    first = train_indices(3, 0, 16, 100)
    torch.manual_seed(123)  # the model's RNG has no say
    assert (train_indices(3, 0, 16, 100) == first).all()
    assert not (train_indices(4, 0, 16, 100) == first).all()
    epoch = np.concatenate([train_indices(3, it, 10, 100) for it in range(10)])
    assert sorted(epoch) == list(range(100))  # an epoch sees every text once


def test_resume_continues_the_same_run_exactly(task, tmp_path):
    whole = tiny_classify(task, tmp_path / "whole", dropout=0.1, always_save_checkpoint=True)
    classify(whole)
    classify(tiny_classify(task, tmp_path / "split", dropout=0.1, always_save_checkpoint=True, max_iters=30, lr_decay_iters=60))
    classify(tiny_classify(task, tmp_path / "split", dropout=0.1, always_save_checkpoint=True, init_from="resume"))
    assert [r["loss"] for r in events(tmp_path / "split", "train")] == [r["loss"] for r in events(tmp_path / "whole", "train")]
    assert events(tmp_path / "split", "eval")[-1]["accuracy"] == events(tmp_path / "whole", "eval")[-1]["accuracy"]
    assert [c.get("resumed_at") for c in events(tmp_path / "split", "config")] == [None, 30]


def test_resume_refuses_what_train_py_refuses_and_changes_nothing(task, tmp_path):
    """Another seed or batch size would train on other texts; a max_iters before the checkpoint would undo it."""
    out = tmp_path / "run"
    classify(tiny_classify(task, out, max_iters=20, eval_interval=10))
    before = {name: (out / name).read_bytes() for name in ("ckpt.pt", "metrics.jsonl")}
    for change, words in ((dict(seed=7), "seed=1337"), (dict(batch_size=8), "batch_size=16"), (dict(max_iters=10), "max_iters >= 20")):
        with pytest.raises(ValueError, match=words):
            classify(tiny_classify(task, out, init_from="resume", **{"max_iters": 40, **change}))
    assert {name: (out / name).read_bytes() for name in before} == before


def test_fine_tuning_a_train_run_uses_its_tokenizer_and_drops_unknown_characters(task, char_data, tmp_path):
    pretrained = tmp_path / "lm-s0"
    train(tiny_config(char_data, pretrained, max_iters=10, eval_interval=10))
    seed_template = str(tmp_path / "lm-s{seed}")
    summary = classify(tiny_classify(task, tmp_path / "run", init_from=seed_template, seed=0, max_iters=10, eval_interval=10))
    config = events(tmp_path / "run", "config")[0]
    assert config["config"]["init_from"] == str(pretrained)
    assert config["data"]["tokenizer"] == "char" and config["model"]["params_mlp"] > 0
    assert 0 < config["data"]["unknown_char_share"] < 0.2  # the LM's corpus has no '!'
    assert summary["iter"] == 10


def run_main(argv, capsys):
    code = classify_module.main(argv)
    return code, capsys.readouterr().err.strip()


def test_bad_inputs_give_one_clear_line(task, tmp_path, capsys):
    train_file, test_file = task
    base = [f"--train_file={train_file}", f"--test_file={test_file}", "--tokenizer=char", "--device=cpu", "--max_iters=2"]
    meta_run = tmp_path / "lost-tokenizer"
    meta_run.mkdir()
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16))
    meta = {"tokenizer": "no_such_encoding", "vocab_size": 64, "eot_id": 0}
    torch.save({"model": model.state_dict(), "model_args": vars(model.config), "data_meta": meta}, meta_run / "ckpt.pt")
    (tmp_path / "empty-run").mkdir()
    cases = [
        ([*base, "--text_column=txt", f"--out_dir={tmp_path / 'a'}"], "txt"),
        ([*base, f"--init_from={tmp_path / 'empty-run'}", f"--out_dir={tmp_path / 'e'}"], "no checkpoint"),
        ([*base, f"--init_from={tmp_path / 'nowhere'}", f"--out_dir={tmp_path / 'b'}"], "no checkpoint"),
        ([*base, f"--init_from={meta_run}", f"--out_dir={tmp_path / 'c'}"], "no_such_encoding"),
        ([*base, "--pooling=max"], "pooling"),
        ([*base, "--labels=negative,happy", f"--out_dir={tmp_path / 'd'}"], "happy"),
    ]
    for argv, message in cases:
        code, err = run_main(argv, capsys)
        assert code == 2 and message in err and "\n" not in err, (argv, err)


def test_a_checkpoint_of_the_other_script_is_one_line_and_touches_nothing(task, char_data, tmp_path, capsys):
    """Fine-tuning needs a train.py run; resuming needs a classify.py run: each refusal says which, and makes no folder."""
    train_file, test_file = task
    base = [f"--train_file={train_file}", f"--test_file={test_file}", "--tokenizer=char", "--device=cpu", "--max_iters=2"]
    classified = tmp_path / "classified"
    classify(tiny_classify(task, classified, max_iters=2, eval_interval=2))
    code, err = run_main([*base, f"--init_from={classified}", f"--out_dir={tmp_path / 'new'}"], capsys)
    assert code == 2 and "is a classify.py run, not a language model" in err and f"--out_dir={classified}" in err, err
    assert not (tmp_path / "new").exists()
    pretrained = tmp_path / "lm"
    train(tiny_config(char_data, pretrained, max_iters=2, eval_interval=2))
    code, err = run_main([*base, f"--out_dir={pretrained}", "--init_from=resume"], capsys)
    assert code == 2 and "lacks label_names, pooling" in err and "written by this project's classify.py" in err, err
