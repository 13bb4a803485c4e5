import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import ctrl_c_while_importing, make_corpus, tiny_argv, tiny_config, write_sharded

import train as train_module
from core.checkpoint import load_checkpoint
from core.configs import TrainConfig
from core.configurator import load_config
from core.metrics import finished_part, read_metrics
from data.dataset import ShardedTokens
from data.prepare import prepare
from train import eval_offsets, get_batch, micro_batch, train, train_offsets

ROOT = Path(__file__).resolve().parent.parent


def events(out_dir, kind):
    return [r for r in read_metrics(out_dir) if r["event"] == kind]


def test_training_lowers_the_loss_and_writes_metrics(char_data, tmp_path):
    summary = train(tiny_config(char_data, tmp_path / "run"))
    evals = events(tmp_path / "run", "eval")
    assert [e["iter"] for e in evals] == [0, 20, 40]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5
    assert summary["final_val_loss"] == evals[-1]["val_loss"] and not summary["interrupted"]
    config = events(tmp_path / "run", "config")
    assert len(config) == 1 and config[0]["config"]["mlp"] == "swiglu"
    assert config[0]["model"]["params_mlp"] > 0 and config[0]["data"]["tokenizer"] == "char"
    trains = events(tmp_path / "run", "train")
    assert [t["iter"] for t in trains] == list(range(5, 41, 5))
    assert all(t["tokens"] == t["iter"] * 8 * 32 and t["tokens_per_s"] > 0 and t["mfu"] is None for t in trains)
    assert events(tmp_path / "run", "end")[0]["iter"] == 40
    assert (tmp_path / "run" / "ckpt.pt").exists()


def test_wandb_offline_run_holds_train_and_val_loss(char_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    train(tiny_config(char_data, out, wandb_log=True, wandb_mode="offline", max_iters=10, eval_interval=5))
    run_dirs = list((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    wandb_cli = Path(sys.executable).with_name("wandb")
    result = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(run_dirs[0])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert '"type":"history"' in text.replace(" ", "")
    assert "train/loss" in text and "val/loss" in text
    assert "swiglu" in text  # the run config carries the MLP


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_continues_the_same_run_exactly(char_data, tmp_path, optimizer):
    common = dict(max_iters=30, lr_decay_iters=30, eval_interval=10, log_interval=1, dropout=0.1, always_save_checkpoint=True)
    common["optimizer"] = optimizer  # Muon's momentum buffers are saved and restored as AdamW's moments are
    train(tiny_config(char_data, tmp_path / "whole", **common))
    train(tiny_config(char_data, tmp_path / "split", **{**common, "max_iters": 15}))
    assert load_checkpoint(tmp_path / "split")["iter"] == 15
    train(tiny_config(char_data, tmp_path / "split", **common, init_from="resume"))
    whole, split = events(tmp_path / "whole", "train"), events(tmp_path / "split", "train")
    assert [r["loss"] for r in split] == [r["loss"] for r in whole]
    assert [r["iter"] for r in split] == list(range(1, 31))
    split_evals = {r["iter"]: r["val_loss"] for r in events(tmp_path / "split", "eval")}
    assert set(split_evals) == {0, 10, 15, 20, 30}  # 15: the end of the first part
    assert all(split_evals[r["iter"]] == r["val_loss"] for r in events(tmp_path / "whole", "eval"))
    # the first part's config and end lines stay: they were true; the resume adds its own
    assert [c.get("resumed_at") for c in events(tmp_path / "split", "config")] == [None, 15]
    assert [e["iter"] for e in events(tmp_path / "split", "end")] == [15, 30]


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_saves_a_checkpoint_and_resume_finishes_the_same_run(char_data, tmp_path, signum, code):
    args = tiny_argv(data_dir=char_data, max_iters=200, eval_interval=100, eval_iters=2, log_interval=1)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args, f"--out_dir={out}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and len(events(out, "train")) >= 3):
        time.sleep(0.1)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    stopped_at = load_checkpoint(out)["iter"]
    assert 3 <= stopped_at < 200
    assert "resume" in stderr
    resumed = subprocess.run(
        [sys.executable, "train.py", *args, f"--out_dir={out}", "--init_from=resume"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [r["iter"] for r in events(out, "train")] == list(range(1, 201))
    whole = tmp_path / "whole"
    train(load_config(TrainConfig, [*args, f"--out_dir={whole}"]))
    assert [r["loss"] for r in events(out, "train")] == [r["loss"] for r in events(whole, "train")]


def test_batches_depend_on_seed_and_iteration_alone(char_data):
    from data.dataset import open_dataset

    tokens = open_dataset(char_data).train
    gelu = tiny_config(char_data, "unused", mlp="gelu", gradient_accumulation_steps=2)
    swiglu = replace(gelu, mlp="swiglu", n_embd=48)
    for it in (0, 1, 7):
        torch.manual_seed(it)  # the RNG that initialises models must not matter
        x1, y1 = get_batch(tokens, gelu, it, 1, "cpu")
        torch.randn(1000)
        x2, y2 = get_batch(tokens, swiglu, it, 1, "cpu")
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1[:, 1:], y1[:, :-1])
    assert not torch.equal(get_batch(tokens, gelu, 0, 0, "cpu")[0], get_batch(tokens, gelu, 1, 0, "cpu")[0])
    assert not torch.equal(get_batch(tokens, gelu, 0, 0, "cpu")[0], get_batch(tokens, replace(gelu, seed=2), 0, 0, "cpu")[0])
    assert (eval_offsets(10, 1000, 32) == eval_offsets(10, 1000, 32)).all()


def test_two_arms_with_one_seed_see_the_same_data_and_differ_only_in_the_mlp(char_data, tmp_path):
    # n_embd=48: the 2/3 rule gives exactly 128 = 8/3 * 48
    gelu = train(tiny_config(char_data, tmp_path / "gelu", mlp="gelu", n_embd=48, max_iters=5, eval_interval=5))
    swiglu = train(tiny_config(char_data, tmp_path / "swiglu", mlp="swiglu", n_embd=48, max_iters=5, eval_interval=5))
    assert gelu["tokens"] == swiglu["tokens"]
    assert gelu["params_mlp"] == swiglu["params_mlp"]
    a, b = events(tmp_path / "gelu", "config")[0], events(tmp_path / "swiglu", "config")[0]
    assert a["data"] == b["data"] and a["tokens_per_iter"] == b["tokens_per_iter"]


def run_main(argv, capsys):
    code = train_module.main(argv)
    return code, capsys.readouterr().err.strip()


def test_bad_inputs_give_one_clear_line(char_data, tmp_path, capsys):
    base = tiny_argv(data_dir=char_data, n_layer=1, n_embd=16, max_iters=2, eval_iters=1)
    cases = [
        ([*base, f"--out_dir={tmp_path / 'a'}", "--block_size=100000"], "block_size=100000"),
        ([*base, f"--out_dir={tmp_path / 'b'}", "--vocab_size=4"], "vocabulary"),
        ([*base, f"--out_dir={tmp_path / 'c'}", f"--data_dir={tmp_path / 'nowhere'}"], "nowhere"),
        ([*base, f"--out_dir={tmp_path / 'd'}", "--init_from=resume"], "no checkpoint"),
        ([*base, "--lerning_rate=1"], "did you mean learning_rate"),
        ([*base, "--batch_size=big"], "batch_size"),
        ([*base, "--mlp=swishglu"], "swiglu"),
    ]
    for argv, message in cases:
        code, err = run_main(argv, capsys)
        assert code == 2, argv
        assert message in err and err.startswith("error: ") and "\n" not in err, err


def test_scratch_run_refuses_to_overwrite_a_checkpoint(char_data, tmp_path, capsys):
    cfg = tiny_config(char_data, tmp_path / "run", max_iters=4, eval_interval=2)
    train(cfg)
    before = (tmp_path / "run" / "ckpt.pt").read_bytes()
    code, err = run_main([f"--data_dir={char_data}", f"--out_dir={tmp_path / 'run'}", "--device=cpu"], capsys)
    assert code == 2 and "init_from=resume" in err
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == before


def test_muon_trains_and_a_resume_with_the_other_optimizer_is_refused(char_data, tmp_path):
    summary = train(tiny_config(char_data, tmp_path / "run", max_iters=30, eval_interval=30, optimizer="muon", muon_lr=0.02))
    evals = events(tmp_path / "run", "eval")
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5 and summary["iter"] == 30
    with pytest.raises(ValueError, match="optimizer=muon, the config says adamw"):
        train(tiny_config(char_data, tmp_path / "run", max_iters=40, init_from="resume"))


def test_resume_with_a_different_model_is_refused(char_data, tmp_path):
    train(tiny_config(char_data, tmp_path / "run", max_iters=4, eval_interval=2))
    with pytest.raises(ValueError, match="mlp='swiglu'"):
        train(tiny_config(char_data, tmp_path / "run", max_iters=8, mlp="gelu", init_from="resume"))


def test_resume_refuses_other_batches_or_data_and_finishes_a_finished_run(char_data, tmp_path):
    train(tiny_config(char_data, tmp_path / "run", max_iters=4, eval_interval=2))
    with pytest.raises(ValueError, match="batch_size=8"):
        train(tiny_config(char_data, tmp_path / "run", batch_size=4, init_from="resume"))
    other = tmp_path / "other_data"
    prepare(make_corpus(seed=1), other, "char")
    with pytest.raises(ValueError, match="not the dataset"):
        train(tiny_config(str(other), tmp_path / "run", init_from="resume"))
    summary = train(tiny_config(char_data, tmp_path / "run", max_iters=4, init_from="resume"))
    assert summary["final_val_loss"] == events(tmp_path / "run", "eval")[-1]["val_loss"]
    assert [e["final_val_loss"] for e in events(tmp_path / "run", "end")] == [summary["final_val_loss"]] * 2


def test_resume_below_the_checkpoint_is_refused_and_changes_nothing(char_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_config(char_data, out, max_iters=10, eval_interval=5))
    before = {name: (out / name).read_bytes() for name in ("ckpt.pt", "metrics.jsonl")}
    argv = tiny_argv(data_dir=char_data, out_dir=out, init_from="resume", max_iters=4)
    code, err = run_main(argv, capsys)
    assert code == 2 and "iteration 10" in err and "max_iters >= 10" in err and "\n" not in err
    assert {name: (out / name).read_bytes() for name in before} == before


def diverging_resume_argv(data_dir, out_dir):
    """train.py's arguments to extend the run in out_dir to 30 iterations with a learning rate that makes the loss non-finite."""
    overrides = dict(max_iters=30, eval_interval=5, log_interval=1, learning_rate=1e30, decay_lr=False, grad_clip=0)
    return tiny_argv(data_dir=data_dir, out_dir=out_dir, init_from="resume", **overrides)


def test_a_failed_extension_never_makes_a_finished_run_look_unfinished(char_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_config(char_data, out, max_iters=10, eval_interval=5))
    finished = read_metrics(out)
    argv = diverging_resume_argv(char_data, out)
    assert run_main(argv, capsys)[0] == 1
    records = read_metrics(out)
    assert records[: len(finished)] == finished  # every line of the finished run is still there
    assert records[len(finished)]["resumed_at"] == 10 and records[len(finished)]["config"]["max_iters"] == 30
    assert finished_part(records) == finished


def test_out_dir_that_is_a_file_is_one_line(char_data, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    argv = tiny_argv(data_dir=char_data, out_dir=tmp_path / "taken")
    code, err = run_main(argv, capsys)
    assert code == 2 and "taken" in err and "\n" not in err
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(char_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_config(char_data, out, max_iters=10, eval_interval=5))
    before = (out / "ckpt.pt").read_bytes()
    argv = diverging_resume_argv(char_data, out)
    code, err = run_main(argv, capsys)
    assert code == 1
    assert "non-finite at iteration" in err and "iteration 10" in err
    assert (out / "ckpt.pt").read_bytes() == before


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes_matches_one_process(char_data, tmp_path):
    args = tiny_argv(
        data_dir=char_data, batch_size=4, gradient_accumulation_steps=2, max_iters=6, eval_interval=6, eval_iters=2, log_interval=1
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "train.py",
            *args,
            f"--out_dir={tmp_path / 'ddp'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "train.py", *args, f"--out_dir={tmp_path / 'one'}"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp, one = events(tmp_path / "ddp", "train"), events(tmp_path / "one", "train")
    assert events(tmp_path / "ddp", "config")[0]["world_size"] == 2
    assert len(ddp) == len(one) == 6
    # the logged loss is the whole batch's (averaged over processes), and the same weights give the same val loss
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in one], abs=1e-4)
    for a, b in zip(events(tmp_path / "ddp", "eval"), events(tmp_path / "one", "eval"), strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
    assert json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[0])["event"] == "config"


def test_under_two_processes_each_rank_takes_its_own_part_of_the_global_batch(tmp_path):
    """micro_batch of rank r takes micro-batches r*steps .. r*steps+steps-1 of the iteration's global batch."""
    # tokens that are their own positions, in shards: a window's first input is its offset
    parts = np.array_split(np.arange(50_000, dtype=np.uint32), 3)
    paths = [tmp_path / f"train_{i}.bin" for i in range(len(parts))]
    for path, part in zip(paths, parts, strict=True):
        part.tofile(path)
    tokens = ShardedTokens(paths, [len(part) for part in parts], np.uint32)
    cfg = tiny_config("unused", "unused", batch_size=3, gradient_accumulation_steps=4)
    steps = cfg.gradient_accumulation_steps // 2
    for iteration in (0, 7):
        global_batch = train_offsets(cfg.seed, iteration, cfg.batch_size * cfg.gradient_accumulation_steps, len(tokens), cfg.block_size)
        taken = []
        for rank in (0, 1):
            run = SimpleNamespace(data=SimpleNamespace(train=tokens), cfg=cfg, iter=iteration, rank=rank, micro_steps=steps, device="cpu")
            batches = [micro_batch(run, k) for k in range(steps + 1)]
            taken.append(torch.cat([x[:, 0] for x, _ in batches[:steps]]).tolist())
            for x, y in batches:
                assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1], x[:, -1] + 1)  # windows of consecutive tokens
            # the micro-batch after the last is the next iteration's first of this rank: train_step fetches it ahead
            assert torch.equal(batches[steps][0], get_batch(tokens, cfg, iteration + 1, rank * steps, "cpu")[0])
        # offsets are drawn with replacement, so two could coincide by chance; with these draws none does
        assert not set(taken[0]) & set(taken[1]) and len(taken[0]) == len(taken[1]) == cfg.batch_size * steps
        assert taken[0] + taken[1] == global_batch.tolist()


# A run of 8 iterations that resumes at 4 and is compared with runs of other process counts and data layouts
SHARD_RUN = dict(batch_size=4, gradient_accumulation_steps=2, max_iters=8, lr_decay_iters=8, eval_interval=4, eval_iters=2, log_interval=1)


def torchrun(*args):
    """train.py under torchrun with two CPU processes (gloo)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def sharded_char_data(char_data, tmp_path_factory):
    """char_data's folder in the sharded layout: train.bin in 4 shards, val.bin as it is."""
    train_tokens = json.loads((Path(char_data) / "meta.json").read_text())["train_tokens"]
    return write_sharded(Path(char_data), tmp_path_factory.mktemp("data") / "sharded", shard_tokens=math.ceil(train_tokens / 4))


@pytest.fixture(scope="module")
def ddp_run_on_shards(sharded_char_data, tmp_path_factory):
    """out_dir of an 8-iteration run of two processes on sharded_char_data."""
    out = tmp_path_factory.mktemp("runs") / "ddp"
    torchrun(*tiny_argv(data_dir=sharded_char_data, out_dir=out, **SHARD_RUN))
    return out


@pytest.mark.slow
def test_a_run_on_shards_matches_one_process_and_the_unsharded_folder(char_data, sharded_char_data, ddp_run_on_shards, tmp_path):
    assert len(json.loads((sharded_char_data / "meta.json").read_text())["shards"]["train"]) == 4
    for data_dir, out in [(sharded_char_data, tmp_path / "one"), (char_data, tmp_path / "plain")]:
        train(load_config(TrainConfig, tiny_argv(data_dir=data_dir, out_dir=out, **SHARD_RUN)))
    ddp, one, plain = (
        {kind: events(out, kind) for kind in ("train", "eval")} for out in (ddp_run_on_shards, tmp_path / "one", tmp_path / "plain")
    )
    assert events(ddp_run_on_shards, "config")[0]["world_size"] == 2 and len(ddp["train"]) == 8
    assert [r["loss"] for r in ddp["train"]] == pytest.approx([r["loss"] for r in one["train"]], abs=1e-4)
    assert [r["val_loss"] for r in ddp["eval"]] == pytest.approx([r["val_loss"] for r in one["eval"]], abs=1e-4)
    # the same tokens in one file or in four: the same batches, so the very same losses
    assert [r["loss"] for r in one["train"]] == [r["loss"] for r in plain["train"]]
    assert [r["val_loss"] for r in one["eval"]] == [r["val_loss"] for r in plain["eval"]]


@pytest.mark.slow
def test_a_run_on_shards_resumed_under_torchrun_continues_exactly(sharded_char_data, ddp_run_on_shards, tmp_path):
    out = tmp_path / "split"
    torchrun(*tiny_argv(data_dir=sharded_char_data, out_dir=out, **{**SHARD_RUN, "max_iters": 4}))
    assert load_checkpoint(out)["iter"] == 4
    torchrun(*tiny_argv(data_dir=sharded_char_data, out_dir=out, init_from="resume", **SHARD_RUN))
    split, whole = events(out, "train"), events(ddp_run_on_shards, "train")
    assert [r["iter"] for r in split] == list(range(1, 9))
    assert [r["loss"] for r in split] == [r["loss"] for r in whole]
    assert [r["val_loss"] for r in events(out, "eval")] == [r["val_loss"] for r in events(ddp_run_on_shards, "eval")]


def test_ctrl_c_while_torch_imports_is_one_line():
    result = ctrl_c_while_importing("train.py", "torch")
    assert (result.returncode, result.stderr) == (130, "train.py: interrupted by SIGINT\n")


def test_ctrl_c_while_starting_is_one_line_and_changes_nothing(char_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(char_data, out, max_iters=4, eval_interval=2))
    before = {name: (out / name).read_bytes() for name in ("ckpt.pt", "metrics.jsonl")}
    program = f"""
import os, signal, sys
import train
def interrupted_load(cfg):  # a real SIGINT while the data is being opened
    os.kill(os.getpid(), signal.SIGINT)
train.load_data = interrupted_load
sys.exit(train.main({tiny_argv(data_dir=char_data, out_dir=out, init_from="resume", max_iters=8)!r}))
"""
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and result.stderr.count("\n") == 1 and "interrupted" in result.stderr, result.stderr
    assert {name: (out / name).read_bytes() for name in before} == before


def test_a_temporary_file_left_by_a_kill_during_a_save_is_removed(char_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "ckpt.pt.tmp").write_bytes(b"half a checkpoint")
    # a run that stops before its first save still clears it: the clean-up is at start-up
    with pytest.raises(train_module.TrainingError):
        train(tiny_config(char_data, out, max_iters=4, eval_interval=2, learning_rate=1e30, decay_lr=False, grad_clip=0))
    assert not (out / "ckpt.pt.tmp").exists() and not (out / "ckpt.pt").exists()


def test_resume_accepts_the_same_data_reprepared_with_max_token_id(char_data, tmp_path):
    """A checkpoint from a folder written before prepare.py recorded max_token_id resumes on the new folder."""
    data = tmp_path / "data"
    shutil.copytree(char_data, data)
    meta = json.loads((data / "meta.json").read_text())
    legacy = {k: v for k, v in meta.items() if k != "max_token_id"}
    (data / "meta.json").write_text(json.dumps(legacy))
    train(tiny_config(str(data), tmp_path / "run", max_iters=4, eval_interval=2))
    (data / "meta.json").write_text(json.dumps(meta))
    summary = train(tiny_config(str(data), tmp_path / "run", max_iters=6, eval_interval=2, init_from="resume"))
    assert summary["iter"] == 6 and "max_token_id" in meta


def test_val_bpb_is_the_loss_of_text_targets_in_bits_per_byte(tmp_path):
    """Counted apart from train.py: the final weights' loss at each eval target, end-of-text targets left out."""
    import torch.nn.functional as F

    from core.checkpoint import model_from_checkpoint
    from data.dataset import batch_from_offsets, open_dataset
    from data.tokenizer import tokenizer_from_meta

    data_dir = tmp_path / "data"
    prepare(make_corpus(n_docs=40, words_per_doc=30), data_dir, "char", val_fraction=0.3)  # short documents: many end-of-text targets
    cfg = tiny_config(data_dir, tmp_path / "run", max_iters=20, eval_interval=20, always_save_checkpoint=True)
    train(cfg)
    data = open_dataset(data_dir)
    tokenizer = tokenizer_from_meta(data.meta)
    x, y = batch_from_offsets(data.val, eval_offsets(cfg.eval_iters * cfg.batch_size, len(data.val), cfg.block_size), cfg.block_size)
    model = model_from_checkpoint(load_checkpoint(cfg.out_dir)).eval()
    with torch.no_grad():
        nats = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten(), reduction="none")
    targets = y.flatten().tolist()
    is_text = torch.tensor([t != tokenizer.eot_id for t in targets])
    assert 0 < (~is_text).sum() < len(targets) / 10
    text_bytes = sum(len(tokenizer.decode([t]).encode()) for t in targets if t != tokenizer.eot_id)
    record = events(cfg.out_dir, "eval")[-1]
    assert record["val_loss"] == pytest.approx(nats.mean().item(), rel=1e-5)
    assert record["val_bpb"] == pytest.approx(nats[is_text].sum().item() / math.log(2) / text_bytes, rel=1e-5)
    # the end-of-text targets are scored in the loss and left out of bits per byte
    assert record["val_bpb"] != pytest.approx(record["val_loss"] / math.log(2) * len(targets) / text_bytes, rel=1e-3)
