"""One optimizer step of the language model, and the context its forward passes run in.

train.py trains with it and bench.py times it, so the step bench.py measures is the one a run takes.
"""

from contextlib import ExitStack

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from core.configurator import ConfigError
from core.hardware import autocast

SDPA_BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}

# compile modes that capture CUDA graphs: a replay overwrites the previous replay's outputs, so
# gradients summed over several micro-steps come out wrong (or the step crashes)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_cuda_graphs(cfg, micro_steps):
    """Refuse CUDA graphs with gradient accumulation (ConfigError)."""
    if cfg.compile and cfg.compile_mode in CUDA_GRAPH_MODES and micro_steps > 1:
        raise ConfigError(
            f"compile_mode={cfg.compile_mode} (CUDA graphs) needs one micro-step per optimizer step per process, "
            f"got {micro_steps}; use compile_mode=default or max-autotune-no-cudagraphs, or fewer gradient_accumulation_steps"
        )


class StepContext:
    """The context every forward pass runs in: bf16 autocast (unless cast explicitly) and the attention kernel order.

    Re-entered at every micro-step; sdpa_kernel is a one-shot context, so a fresh one is made each time.
    """

    def __init__(self, cfg, device, dtype):
        self.autocast = autocast(device, dtype if cfg.autocast else "float32")
        self.backends = None
        if cfg.sdpa_backend != "auto":  # the chosen kernel first, the rest after it as fallbacks
            first = SDPA_BACKENDS[cfg.sdpa_backend]
            self.backends = [first, *(b for b in SDPA_BACKENDS.values() if b != first)]
        self.stack = None

    def __enter__(self):
        self.stack = ExitStack()
        if self.backends:
            self.stack.enter_context(sdpa_kernel(self.backends, set_priority=True))
        self.stack.enter_context(self.autocast)
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)


def train_step(model, optimizer, batch, fetch, micro_steps, grad_clip, ctx):
    """One optimizer step over `micro_steps` micro-batches; returns (mean loss tensor, next batch, gradient norm).

    The gradient norm is clip_grad_norm_'s (before clipping), a tensor; None when grad_clip is 0.

    `batch` is the first micro-batch; fetch(k) returns micro-batch k, and is called before the
    backward pass so the copy overlaps GPU work. Nothing here waits for the GPU.
    """
    x, y = batch
    loss_sum = torch.zeros((), device=x.device)
    for micro in range(micro_steps):
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model.require_backward_grad_sync = micro == micro_steps - 1  # all-reduce once per step
        with ctx:
            _, loss = model(x, y)
            loss = loss / micro_steps
        x, y = fetch(micro + 1)
        loss.backward()
        loss_sum += loss.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, (x, y), grad_norm
