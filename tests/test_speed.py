"""Every speed switch computes what the plain path computes, and bench.py reports both arms."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import tiny_argv

import train as train_module
from core.configs import TrainConfig
from core.lifecycle import make_optimizer
from core.step import SDPA_BACKENDS, StepContext, train_step
from data.dataset import batch_from_offsets
from model import GPT, GPTConfig, chunked_cross_entropy
from train import eval_batches, eval_offsets, to_device

ROOT = Path(__file__).resolve().parent.parent
PLAIN = TrainConfig(
    n_layer=2,
    n_head=2,
    n_embd=48,
    block_size=16,
    batch_size=4,
    vocab_size=101,
    mlp="swiglu",
    device="cpu",
    dtype="float32",
    compile=False,
    loss_chunk_size=0,
    fused_adamw=False,
    prefetch=False,
    gradient_accumulation_steps=2,
    learning_rate=1e-2,
)


def run_steps(cfg, n_steps=3):
    """Gradients of the first micro-batch, then losses and final weights after n_steps of train_step."""
    torch.manual_seed(0)
    raw = GPT(GPTConfig(**cfg.model_fields(), **cfg.speed_fields(cfg.dtype), vocab_size=cfg.vocab_size))
    optimizer = make_optimizer(raw, cfg, "cpu")
    model = torch.compile(raw) if cfg.compile else raw
    ctx = StepContext(cfg, "cpu", cfg.dtype)
    data = torch.randint(
        0, cfg.vocab_size, (n_steps * 2 + 1, cfg.batch_size, cfg.block_size + 1), generator=torch.Generator().manual_seed(1)
    )
    fetch = lambda k: to_device(data[k, :, :-1], data[k, :, 1:], "cpu", cfg.prefetch)  # noqa: E731
    with ctx:
        loss = model(*fetch(0))[1]
    loss.backward()
    grads = {name: p.grad.clone() for name, p in raw.named_parameters()}
    optimizer.zero_grad(set_to_none=True)
    batch, losses = fetch(0), []
    for step in range(n_steps):
        loss, batch, _ = train_step(model, optimizer, batch, lambda k, step=step: fetch(2 * step + k), 2, 1.0, ctx)
        losses.append(loss.item())
    return grads, losses, {k: v.detach().clone() for k, v in raw.state_dict().items()}


def assert_same_training(switched, rtol=1e-5, atol=1e-6, compare_weights=False, plain=PLAIN):
    """Same gradients and losses as PLAIN; weights too where the gradients are bit-identical.

    Adam's update is about lr * sign(gradient), so float noise in a near-zero gradient moves a
    weight by up to 2 * lr: weights are compared only when the switch leaves gradients alone.
    """
    grads_a, losses_a, weights_a = run_steps(plain)
    grads_b, losses_b, weights_b = run_steps(switched)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=rtol, atol=atol, msg=name)
    assert losses_a == pytest.approx(losses_b, rel=rtol, abs=atol)
    if compare_weights:
        for name in weights_a:
            torch.testing.assert_close(weights_a[name], weights_b[name], rtol=rtol, atol=atol, msg=name)


def test_chunked_loss_trains_like_full_logits():
    assert_same_training(replace(PLAIN, loss_chunk_size=24))
    chunked = GPT(GPTConfig(**{**PLAIN.model_fields(), "loss_chunk_size": 24}, vocab_size=101))
    x = torch.zeros(2, 8, dtype=torch.long)
    assert chunked(x, x)[0] is None  # the chunked path ran: no full logits were made


def test_fused_gate_up_trains_like_two_matmuls():
    assert_same_training(replace(PLAIN, fused_gate_up=True))


@pytest.mark.parametrize("fused,separate_calls", [(False, 2), (True, 0)])
def test_fused_gate_up_replaces_the_two_matmuls(fused, separate_calls):
    model = GPT(GPTConfig(**{**PLAIN.model_fields(), "fused_gate_up": fused}, vocab_size=101))
    calls = []
    mlp = model.transformer.h[0].mlp
    for layer in (mlp.w_gate, mlp.w_up):
        layer.register_forward_hook(lambda module, args, out: calls.append(module))
    model(torch.zeros(1, 8, dtype=torch.long))
    assert len(calls) == separate_calls


@pytest.mark.parametrize("mlp", ["swiglu", "geglu"])
def test_fused_gate_up_keeps_the_parameters_and_their_init(mlp):
    def weights(fused):
        torch.manual_seed(0)
        return GPT(GPTConfig(**{**PLAIN.model_fields(), "mlp": mlp, "fused_gate_up": fused}, vocab_size=101)).state_dict()

    separate, fused = weights(False), weights(True)
    assert list(separate) == list(fused)  # a checkpoint loads whichever way the switch is set
    for name in separate:
        torch.testing.assert_close(separate[name], fused[name], rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["cudnn", "flash", "efficient", "math"])
def test_preferred_attention_kernel_goes_first_while_the_step_runs(backend):
    """SDPA tries kernels in this order on CUDA (the CPU dispatcher picks its own, hence the private read)."""
    default = torch._C._get_sdp_priority_order()
    with StepContext(replace(PLAIN, sdpa_backend=backend), "cpu", "float32"):
        order = torch._C._get_sdp_priority_order()
    assert order[0] == SDPA_BACKENDS[backend].value and sorted(order) == sorted(default)
    assert torch._C._get_sdp_priority_order() == default  # restored after the step
    with StepContext(PLAIN, "cpu", "float32"):
        assert torch._C._get_sdp_priority_order() == default  # auto leaves PyTorch's order alone


def test_math_attention_trains_like_the_default_kernel():
    assert_same_training(replace(PLAIN, sdpa_backend="math"))


def test_explicit_bf16_trains_like_bf16_autocast():
    """Explicit bf16 activations keep fp32 master weights and land within bf16 rounding of autocast."""
    autocast_bf16 = replace(PLAIN, dtype="bfloat16")
    explicit = replace(autocast_bf16, autocast=False)
    assert_same_training(explicit, rtol=3e-2, atol=2e-3, plain=autocast_bf16)
    grads, _, weights = run_steps(explicit)
    assert all(g.dtype == torch.float32 for g in grads.values()) and all(w.dtype == torch.float32 for w in weights.values())


def test_explicit_bf16_runs_activations_in_bf16():
    cfg = replace(PLAIN, dtype="bfloat16", autocast=False)
    model = GPT(GPTConfig(**cfg.model_fields(), **cfg.speed_fields("bfloat16"), vocab_size=cfg.vocab_size))
    seen = []
    model.transformer.h[0].mlp.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    logits, _ = model(torch.zeros(1, 8, dtype=torch.long))
    assert seen == [torch.bfloat16] and logits.dtype == torch.bfloat16
    assert replace(cfg, autocast=True).speed_fields("bfloat16")["compute_dtype"] is None
    assert cfg.speed_fields("float32")["compute_dtype"] is None  # nothing to cast to in fp32


def loss_and_grads(loss_fn, hidden, weight):
    """(loss, grad hidden, grad weight) of loss_fn(hidden, weight) in the current autocast state."""
    h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    loss = loss_fn(h, w)
    loss.backward()
    return loss, h.grad, w.grad


def chunked_and_full(hidden, weight, targets, chunk=5):
    """loss_and_grads of the chunked loss and of the loss from full logits."""
    chunked = loss_and_grads(lambda h, w: chunked_cross_entropy(h, w, targets, chunk), hidden, weight)
    full = loss_and_grads(lambda h, w: torch.nn.functional.cross_entropy((h @ w.t()).float(), targets, ignore_index=-1), hidden, weight)
    return chunked, full


def test_chunked_loss_under_bf16_autocast_matches_full_logits():
    torch.manual_seed(0)
    hidden, weight, targets = torch.randn(23, 16), torch.randn(50, 16) * 0.3, torch.randint(0, 50, (23,))
    targets[3] = -1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (loss_c, gh_c, gw_c), (loss_f, gh_f, gw_f) = chunked_and_full(hidden, weight, targets)
    assert loss_c.dtype == torch.float32 and gh_c.dtype == torch.float32 and gw_c.dtype == torch.float32
    torch.testing.assert_close(loss_c, loss_f, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(gh_c, gh_f, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(gw_c, gw_f, rtol=2e-2, atol=2e-3)


def test_chunked_loss_takes_bf16_activations_with_fp32_weights():
    torch.manual_seed(0)
    hidden, weight, targets = torch.randn(23, 16), torch.randn(50, 16) * 0.3, torch.randint(0, 50, (23,))
    loss_c, gh_c, gw_c = loss_and_grads(lambda h, w: chunked_cross_entropy(h, w, targets, 5), hidden.bfloat16(), weight)
    (loss_r, gh_r, gw_r), _ = chunked_and_full(hidden.bfloat16().double(), weight.double(), targets)
    assert gh_c.dtype == torch.bfloat16 and gw_c.dtype == torch.float32
    torch.testing.assert_close(loss_c.double(), loss_r, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(gh_c.double(), gh_r, rtol=3e-2, atol=3e-3)
    torch.testing.assert_close(gw_c.double(), gw_r, rtol=3e-2, atol=3e-3)


def test_cuda_graphs_with_gradient_accumulation_are_refused(char_data, tmp_path, capsys):
    argv = tiny_argv(
        data_dir=char_data, out_dir=tmp_path / "run", compile=True, compile_mode="reduce-overhead", gradient_accumulation_steps=2
    )
    assert train_module.main(argv) == 2
    err = capsys.readouterr().err
    assert "CUDA graphs" in err and "gradient_accumulation_steps" in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "ckpt.pt").exists()
    result = subprocess.run(
        [sys.executable, "bench.py", "--device=cpu", "--compile=True", "--compile_mode=max-autotune", "--gradient_accumulation_steps=4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "CUDA graphs" in result.stderr and result.stderr.count("\n") == 1


def test_eval_batches_are_the_fixed_evaluation_batches():
    tokens = torch.arange(1000).numpy()
    cfg = replace(PLAIN, eval_iters=3, batch_size=4, block_size=16)
    batches = eval_batches({"val": tokens}, cfg, "cpu")["val"]
    x, y = batch_from_offsets(tokens, eval_offsets(12, 1000, 16), 16)
    assert len(batches) == 3
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), x)
    torch.testing.assert_close(torch.cat([b[1] for b in batches]), y)


def test_fused_adamw_trains_like_the_plain_optimizer():
    assert_same_training(replace(PLAIN, fused_adamw=True), compare_weights=True)


def test_prefetch_falls_back_to_plain_copies_off_cuda():
    assert_same_training(replace(PLAIN, prefetch=True), rtol=0, atol=0, compare_weights=True)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_model_trains_like_eager():
    assert_same_training(replace(PLAIN, compile=True, loss_chunk_size=24), rtol=1e-4, atol=1e-5)


BENCH = dict(n_layer=1, block_size=16, batch_size=2, vocab_size=64, steps=1, warmup=0)  # bench.py's own keys mix with train.py's


@pytest.mark.slow
def test_bench_times_both_arms_from_one_process(tmp_path):
    out = tmp_path / "bench.json"
    args = tiny_argv(**{**BENCH, "steps": 2, "warmup": 1}, n_embd=48, compare="mlp=gelu,swiglu", json=out)
    result = subprocess.run([sys.executable, "bench.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [r["mlp"] for r in rows] == ["gelu", "swiglu"]
    assert all(r["ms_per_step"] > 0 and r["tokens_per_s"] > 0 and r["mfu"] is None for r in rows)
    assert "gelu" in result.stdout and "swiglu" in result.stdout and "ms/step" in result.stdout


@pytest.mark.slow
def test_bench_runs_each_row_in_its_own_process(tmp_path):
    """A small model after a large one reports its own, smaller peak memory."""
    out = tmp_path / "bench.json"
    args = tiny_argv(**{**BENCH, "vocab_size": 50304}, compare="n_embd=512,16", json=out)
    subprocess.run([sys.executable, "bench.py", *args], cwd=ROOT, check=True, capture_output=True, timeout=300)
    big, small = json.loads(out.read_text())
    assert small["peak_memory_gb"] < big["peak_memory_gb"] - 0.2


@pytest.mark.slow
def test_bench_profile_prints_the_costliest_operators(tmp_path):
    args = tiny_argv(**BENCH, profile=True)
    result = subprocess.run([sys.executable, "bench.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "profile of one step" in result.stdout and "aten::mm" in result.stdout and "Self CPU" in result.stdout


@pytest.mark.slow
def test_bench_with_a_peak_reports_mfu(tmp_path):
    out = tmp_path / "bench.json"
    args = tiny_argv(**BENCH, peak=1, json=out)
    subprocess.run([sys.executable, "bench.py", *args], cwd=ROOT, check=True, capture_output=True, timeout=300)
    row = json.loads(out.read_text())[0]
    assert row["mfu"] == pytest.approx(row["tflops"] / 1.0)


@pytest.mark.parametrize(
    "args,message", [(["--compare=nope=1,2"], "KEY=V1"), (["--compare=mlp=gelu,swishglu"], "mlp"), (["--steps=0"], "steps")]
)
def test_bench_bad_input_is_one_line(args, message):
    result = subprocess.run([sys.executable, "bench.py", "--device=cpu", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_on_a_missing_device_is_one_line():
    result = subprocess.run([sys.executable, "bench.py", "--device=cuda"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "device 'cuda'" in result.stderr and result.stderr.count("\n") == 1


def test_explicit_bf16_gradients_are_as_precise_as_autocast():
    """LayerNorm stays in float32 under explicit bf16, as under autocast: its weight's gradient sums over every token."""
    cfg = replace(PLAIN, n_layer=1, n_embd=64, block_size=256, batch_size=8, dtype="float32")
    idx = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size + 1), generator=torch.Generator().manual_seed(0))

    def gradients(dtype, autocast):
        variant = replace(cfg, dtype=dtype, autocast=autocast)
        torch.manual_seed(0)
        model = GPT(GPTConfig(**variant.model_fields(), **variant.speed_fields(dtype), vocab_size=cfg.vocab_size))
        with StepContext(variant, "cpu", dtype):
            loss = model(idx[:, :-1], idx[:, 1:])[1]
        loss.backward()
        return {name: p.grad for name, p in model.named_parameters()}

    exact = gradients("float32", True)

    def worst_error(grads):
        return max(((grads[k] - exact[k]).norm() / exact[k].norm()).item() for k in exact)

    assert worst_error(gradients("bfloat16", False)) < 2 * worst_error(gradients("bfloat16", True))
