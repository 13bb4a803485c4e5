"""diagnostics=True: per-layer statistics at each log, measured as a reader would recompute them, and no effect on training."""

import contextlib
import copy as copy_module
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from core.checkpoint import load_checkpoint, model_from_checkpoint
from core.diagnostics import attention_stats
from core.lifecycle import TrainingError
from core.step import train_step
from model import GPT, GPTConfig
from train import eval_offsets, train

BLOCKS = {
    "gpt2 swiglu": dict(mlp="swiglu"),
    "gpt2 gelu": dict(mlp="gelu", dropout=0.1),
    "modern swiglu": dict(mlp="swiglu", norm="rmsnorm", pos="rope", qk_norm=True, bias=False, tie_embeddings=False),
}
PER_LAYER = ("resid_rms", "mlp_out_rms", "pre_mean", "pre_std", "pre_absmax", "pre_off", "dead_units", "attn_logit_max", "attn_entropy")


def records(out_dir, kind):
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == kind]


@pytest.mark.parametrize("block", BLOCKS.values(), ids=BLOCKS.keys())
def test_each_log_has_every_layers_statistics_and_training_is_unchanged(char_data, tmp_path, block):
    train(tiny_config(char_data, tmp_path / "on", diagnostics=True, **block))
    train(tiny_config(char_data, tmp_path / "off", **block))
    assert [r["loss"] for r in records(tmp_path / "on", "train")] == [r["loss"] for r in records(tmp_path / "off", "train")]
    assert records(tmp_path / "off", "diag") == []
    diags = records(tmp_path / "on", "diag")
    assert [r["iter"] for r in diags] == [r["iter"] for r in records(tmp_path / "on", "train")]
    for record in diags:
        expected = {f"L{i}/{name}" for i in range(2) for name in PER_LAYER} | {"grad_norm"}
        assert expected <= set(record)
        assert sum(key.startswith("update/L") for key in record) == 2 * (4 if block["mlp"] == "gelu" else 5)  # attention 2, MLP 2 or 3
        assert all(isinstance(v, float) and math.isfinite(v) for k, v in record.items() if k not in ("event", "iter"))
        assert 0 <= record["L0/pre_off"] <= 1 and 0 <= record["L0/attn_entropy"] <= math.log(32)


def test_mlp_output_rms_and_attention_are_those_of_the_saved_model(char_data, tmp_path):
    """Recomputed from the final checkpoint on the probe batch (the first val evaluation batch), by a plain forward pass."""
    from data.dataset import batch_from_offsets, open_dataset

    cfg = tiny_config(char_data, tmp_path / "run", diagnostics=True)
    train(cfg)
    model = model_from_checkpoint(load_checkpoint(cfg.out_dir)).eval()
    val = open_dataset(char_data).val
    offsets = eval_offsets(cfg.eval_iters * cfg.batch_size, len(val), cfg.block_size)[: cfg.batch_size]
    x, _ = batch_from_offsets(val, offsets, cfg.block_size)
    with torch.no_grad():
        h = model.transformer.wte(x) + model.transformer.wpe(torch.arange(x.size(1)))
        block = model.transformer.h[0]
        a = block.ln_1(h)
        q, k, _ = block.attn.heads(a)
        logits = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~torch.ones(32, 32).tril().bool(), -1e9)
        weights = torch.softmax(logits, -1)
        h = h + block.attn(a)
        mlp_out = block.mlp(block.ln_2(h))
    last = records(cfg.out_dir, "diag")[-1]
    assert last["L0/mlp_out_rms"] == pytest.approx(mlp_out.pow(2).mean().sqrt().item(), rel=1e-5)
    assert last["L0/resid_rms"] == pytest.approx((h + mlp_out).pow(2).mean().sqrt().item(), rel=1e-5)
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1).mean().item()
    assert last["L0/attn_entropy"] == pytest.approx(entropy, rel=1e-4)
    assert last["L0/attn_logit_max"] == pytest.approx(logits.max().item(), rel=1e-5)


def test_update_ratio_is_the_step_between_two_checkpoints(char_data, tmp_path):
    common = dict(max_iters=40, lr_decay_iters=40, eval_interval=20, log_interval=5)
    train(tiny_config(char_data, tmp_path / "run", **{**common, "max_iters": 39}))
    before = load_checkpoint(tmp_path / "run")["model"]
    train(tiny_config(char_data, tmp_path / "run", **common, init_from="resume", diagnostics=True))
    after = load_checkpoint(tmp_path / "run")["model"]
    last = records(tmp_path / "run", "diag")[-1]
    assert last["iter"] == 40
    for ours, name in [("L0.mlp.w_up", "transformer.h.0.mlp.w_up.weight"), ("wte", "transformer.wte.weight")]:
        expected = ((after[name] - before[name]).norm() / before[name].norm()).item()
        assert last[f"update/{ours}"] == pytest.approx(expected, rel=1e-4)
    assert last["grad_norm"] > 0


def test_a_diverging_run_records_its_statistics_at_the_log_that_stops_it(char_data, tmp_path):
    overrides = dict(diagnostics=True, learning_rate=1e30, decay_lr=False, warmup_iters=0, grad_clip=0, log_interval=1, max_iters=10)
    with pytest.raises(TrainingError, match="non-finite"):
        train(tiny_config(char_data, tmp_path / "run", **overrides))
    diags, trains = records(tmp_path / "run", "diag"), records(tmp_path / "run", "train")
    assert diags[-1]["iter"] == trains[-1]["iter"] + 1  # the train record of that log was never written
    assert "grad_norm" not in diags[-1]  # grad_clip=0: nothing computed the norm


@pytest.mark.parametrize("grad_clip", [0.05, 100.0])
def test_train_step_returns_the_gradient_norm_before_clipping(grad_clip):
    """The norm of the gradient summed over the micro-steps, computed by hand on a copy, whether it clips or not."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, mlp="swiglu"))
    copy = copy_module.deepcopy(model)
    batches = [(torch.randint(0, 50, (4, 16)), torch.randint(0, 50, (4, 16))) for _ in range(3)]
    for x, y in batches[:2]:
        (copy(x, y)[1] / 2).backward()
    by_hand = torch.cat([p.grad.flatten() for p in copy.parameters() if p.grad is not None]).norm().item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    _, _, grad_norm = train_step(model, optimizer, batches[0], batches.__getitem__, 2, grad_clip, contextlib.nullcontext())
    assert grad_norm.item() == pytest.approx(by_hand, rel=1e-5)
    assert train_step(model, optimizer, batches[0], batches.__getitem__, 2, 0.0, contextlib.nullcontext())[2] is None


def test_attention_stats_of_a_hand_made_case():
    """Query 0 sees only key 0 (entropy 0); query 1 sees keys 0 and 1 with equal logits 2 (entropy ln 2)."""
    q = torch.tensor([[1.0, 0.0], [2.0, 2.0]]).reshape(1, 1, 2, 2) * math.sqrt(2)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    logit_max, entropy = attention_stats(q, k)
    assert logit_max == pytest.approx(2.0)
    assert entropy == pytest.approx(math.log(2) / 2)


def test_wandb_gets_the_statistics_under_diag(char_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    train(tiny_config(char_data, out, wandb_log=True, wandb_mode="offline", max_iters=10, eval_interval=5, diagnostics=True))
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    wandb_cli = Path(sys.executable).with_name("wandb")
    result = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "diag/L1/mlp_out_rms" in result.stdout and "diag/update/L0.mlp.w_gate" in result.stdout


def test_compare_plots_chosen_diag_keys_and_refuses_what_no_record_has(char_data, tmp_path, capsys):
    import compare

    train(tiny_config(char_data, tmp_path / "on", diagnostics=True, max_iters=10, eval_interval=10))
    train(tiny_config(char_data, tmp_path / "off", max_iters=10, eval_interval=10))
    out = tmp_path / "plot"
    assert compare.main([str(tmp_path / "on"), "--diag=L0/mlp_out_rms,update/L1.mlp.w_up", f"--out={out}"]) == 0
    assert (out / "diagnostics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert compare.main([str(tmp_path / "on"), "--diag=L9/mlp_out_rms", f"--out={tmp_path / 'x'}"]) == 2
    assert compare.main([str(tmp_path / "off"), "--diag=L0/mlp_out_rms", f"--out={tmp_path / 'y'}"]) == 2
    err = capsys.readouterr().err
    assert "no diag record has 'L9/mlp_out_rms'" in err and "train with --diagnostics=True" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
