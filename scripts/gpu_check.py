"""
Check on the GPU that each speed switch computes what the plain path computes (the CPU tests
cannot reach the CUDA-only code: addmm with out_dtype in the chunked loss, cuDNN attention).

    python3 scripts/gpu_check.py

Prints the worst relative gradient error of plain bf16 autocast and of each switch against
float32, and exits non-zero when a switch is much worse than autocast itself.
"""

import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.configs import TrainConfig  # noqa: E402
from core.step import StepContext  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run of this script
TOLERANCE = 3e-2  # never fail below this: bf16 has 8 bits of mantissa


def loss_and_grads(cfg, idx):
    """Loss and gradients of one forward/backward of the GPT that cfg describes, on idx."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**cfg.model_fields(), **cfg.speed_fields(cfg.dtype), vocab_size=cfg.vocab_size)).to(DEVICE)
    with StepContext(cfg, DEVICE, cfg.dtype):
        _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    return loss.detach().float(), {name: p.grad.float() for name, p in model.named_parameters()}


def relative_error(a, b):
    return ((a - b).norm() / b.norm().clamp(min=1e-12)).item()


def main():
    fp32 = TrainConfig(n_layer=2, n_head=4, n_embd=256, block_size=512, vocab_size=50304, mlp="swiglu", dtype="float32", device=DEVICE)
    idx = torch.randint(0, fp32.vocab_size, (8, fp32.block_size + 1), device=DEVICE)
    reference_loss, reference_grads = loss_and_grads(fp32, idx)
    plain = replace(fp32, dtype="bfloat16")
    switches = {
        "loss_chunk_size=1024": dict(loss_chunk_size=1024),
        "fused_gate_up": dict(fused_gate_up=True),
        "sdpa_backend=cudnn": dict(sdpa_backend="cudnn"),
        "autocast=False": dict(autocast=False),
    }
    switches = {"plain bf16 autocast": {}, **switches, "all": {k: v for s in switches.values() for k, v in s.items()}}
    errors = {}
    for name, change in switches.items():
        loss, grads = loss_and_grads(replace(plain, **change), idx)
        errors[name] = max(relative_error(grads[k], reference_grads[k]) for k in reference_grads)
        print(
            f"{name:>22}: loss {loss.item():.5f} (fp32 {reference_loss.item():.5f}), worst gradient rel. error vs fp32 {errors[name]:.1e}"
        )
    # a switch may round differently from autocast, but not much worse than autocast itself does
    limit = max(TOLERANCE, 2 * errors["plain bf16 autocast"])
    bad = [name for name, error in errors.items() if error > limit]
    print(f"limit {limit:.1e}: " + (f"FAILED {', '.join(bad)}" if bad else "every switch within it"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
