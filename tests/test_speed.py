"""Every speed switch computes what the plain path computes, and bench.py reports both arms."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hardware import autocast
from model import GPT, GPTConfig
from train import TrainConfig, make_optimizer, model_fields, to_device, train_step

ROOT = Path(__file__).resolve().parent.parent
PLAIN = TrainConfig(n_layer=2, n_head=2, n_embd=48, block_size=16, batch_size=4, vocab_size=101, mlp="swiglu",
                    device="cpu", dtype="float32", compile=False, loss_chunk_size=0, fused_adamw=False, prefetch=False,
                    gradient_accumulation_steps=2, learning_rate=1e-2)


def run_steps(cfg, n_steps=3):
    """Gradients of the first micro-batch, then losses and final weights after n_steps of train_step."""
    torch.manual_seed(0)
    raw = GPT(GPTConfig(**model_fields(cfg), vocab_size=cfg.vocab_size))
    optimizer = make_optimizer(raw, cfg, "cpu")
    model = torch.compile(raw) if cfg.compile else raw
    data = torch.randint(0, cfg.vocab_size, (n_steps * 2 + 1, cfg.batch_size, cfg.block_size + 1), generator=torch.Generator().manual_seed(1))
    fetch = lambda k: to_device(data[k, :, :-1], data[k, :, 1:], "cpu", cfg.prefetch)  # noqa: E731
    model(*fetch(0))[1].backward()
    grads = {name: p.grad.clone() for name, p in raw.named_parameters()}
    optimizer.zero_grad(set_to_none=True)
    batch, losses = fetch(0), []
    for step in range(n_steps):
        loss, batch = train_step(model, optimizer, batch, lambda k: fetch(2 * step + k), 2, 1.0, autocast("cpu", "float32"))
        losses.append(loss.item())
    return grads, losses, {k: v.detach().clone() for k, v in raw.state_dict().items()}


def assert_same_training(switched, rtol=1e-5, atol=1e-6, compare_weights=False):
    """Same gradients and losses as PLAIN; weights too where the gradients are bit-identical.

    Adam's update is about lr * sign(gradient), so float noise in a near-zero gradient moves a
    weight by up to 2 * lr: weights are compared only when the switch leaves gradients alone.
    """
    grads_a, losses_a, weights_a = run_steps(PLAIN)
    grads_b, losses_b, weights_b = run_steps(switched)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=rtol, atol=atol, msg=name)
    assert losses_a == pytest.approx(losses_b, rel=rtol, abs=atol)
    if compare_weights:
        for name in weights_a:
            torch.testing.assert_close(weights_a[name], weights_b[name], rtol=rtol, atol=atol, msg=name)


def test_chunked_loss_trains_like_full_logits():
    assert_same_training(replace(PLAIN, loss_chunk_size=24))


def test_fused_adamw_trains_like_the_plain_optimizer():
    assert_same_training(replace(PLAIN, fused_adamw=True), compare_weights=True)


def test_prefetch_falls_back_to_plain_copies_off_cuda():
    assert_same_training(replace(PLAIN, prefetch=True), rtol=0, atol=0, compare_weights=True)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_model_trains_like_eager():
    assert_same_training(replace(PLAIN, compile=True, loss_chunk_size=24), rtol=1e-4, atol=1e-5)


def test_bench_times_both_arms_from_one_process(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--n_layer=1", "--n_head=2", "--n_embd=48", "--block_size=16", "--batch_size=2", "--vocab_size=64", "--device=cpu",
            "--compare", "mlp=gelu,swiglu", "--steps=2", "--warmup=1", f"--json={out}"]
    result = subprocess.run([sys.executable, "bench.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [r["mlp"] for r in rows] == ["gelu", "swiglu"]
    assert all(r["ms_per_step"] > 0 and r["tokens_per_s"] > 0 and r["mfu"] is None for r in rows)
    assert "gelu" in result.stdout and "swiglu" in result.stdout and "ms/step" in result.stdout


def test_bench_with_a_peak_reports_mfu(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--n_layer=1", "--n_head=2", "--n_embd=48", "--block_size=16", "--batch_size=2", "--vocab_size=64", "--device=cpu",
            "--steps=1", "--warmup=0", "--peak=1", f"--json={out}"]
    subprocess.run([sys.executable, "bench.py", *args], cwd=ROOT, check=True, capture_output=True, timeout=300)
    row = json.loads(out.read_text())[0]
    assert row["mfu"] == pytest.approx(row["tflops"] / 1.0)


@pytest.mark.parametrize("args,message", [(["--compare", "nope=1,2"], "KEY=V1"), (["--compare", "mlp=gelu,swishglu"], "mlp"), (["--steps=0"], "steps")])
def test_bench_bad_input_is_one_line(args, message):
    result = subprocess.run([sys.executable, "bench.py", "--device=cpu", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
