"""Device choice, mixed precision and the peak-FLOPs table shared by train.py, sample.py and bench.py."""

import contextlib
import re

import torch

from core.configurator import ConfigError

# Dense bf16 tensor-core peak in FLOP/s (no sparsity), matched against torch.cuda.get_device_name().
# Order matters: the first key found in the name (as whole words) wins (e.g. "H100 PCIe" before "H100").
PEAK_BF16_FLOPS = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A6000", 155e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),  # fp16; V100 has no bf16
    ("T4", 65e12),  # fp16
]


def check_device(name):
    """Raise ValueError unless `name` is auto, cpu, mps, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N; got {name!r}")


def check_dtype(name):
    """Raise ValueError unless `name` is auto, float32 or bfloat16 (the dtype option of every script)."""
    if name not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"dtype must be auto, float32 or bfloat16; got {name!r}")


def enable_tf32(device):
    """Let float32 matmuls use TF32 tensor cores on CUDA (bf16 autocast covers most of the rest)."""
    if device_type(device) == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def resolve_device(name="auto"):
    """'auto' -> cuda, then mps, then cpu; any other name is returned as given, once it is known to exist.

    Raises ConfigError (a ValueError) with one line when the device asked for is not on this machine.
    """
    if name != "auto":
        check_device_available(name)
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def check_device_available(device):
    """Raise ConfigError unless `device` (cpu, mps, cuda or cuda:N) exists on this machine."""
    problem = _missing_device(device)
    if problem:
        raise ConfigError(f"device {device!r} was asked for but {problem}; use --device=cpu or --device=auto")


def _missing_device(device):
    """Why `device` cannot be used here, or None when it can."""
    kind, _, index = device.partition(":")
    build = f"torch {torch.__version__}"
    if kind == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            return f"{build} is built without CUDA"
        count = torch.cuda.device_count()
        if count == 0:
            return "CUDA finds no GPU on this machine"
        if index and int(index) >= count:
            return f"CUDA finds only {count} GPU(s), numbered from 0"
    elif kind == "mps" and not torch.backends.mps.is_available():
        return f"{build} is built without MPS" if not torch.backends.mps.is_built() else "MPS is not available on this machine"
    return None


def device_type(device):
    """'cuda', 'mps' or 'cpu' for a device string such as 'cuda:1'."""
    return device.split(":")[0]


def resolve_dtype(name, device):
    """'auto' -> bfloat16 on GPUs that support it, else float32 (bf16 on CPU is slower, not faster)."""
    if name != "auto":
        return name
    if device_type(device) == "cuda" and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def autocast(device, dtype):
    """A context in which the forward pass runs in `dtype` ('float32' means no autocast)."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type(device), dtype=getattr(torch, dtype))


def peak_flops(device, override_tflops=None):
    """The device's dense bf16 peak in FLOP/s, or None when unknown (CPU, MPS, an unlisted GPU)."""
    if override_tflops:
        return override_tflops * 1e12
    if device_type(device) != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    # whole words only: "L4" must not match an L40, nor "T4" a T400
    return next((flops for key, flops in PEAK_BF16_FLOPS if re.search(rf"\b{re.escape(key)}\b", name)), None)
