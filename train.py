"""
Train a GPT whose MLP is chosen by `mlp` (swiglu, gelu, ...) on a folder made by data/prepare.py.

    python train.py config/swiglu.py                      # one process: GPU, MPS or CPU
    python train.py config/swiglu.py --batch_size=32 --compile=True
    python train.py config/swiglu.py --init_from=resume   # continue the run in out_dir
    torchrun --standalone --nproc_per_node=4 train.py config/gpt2_124m_swiglu.py

What makes a SwiGLU run and its GELU twin comparable: training batches depend on `seed` and the
iteration alone (never on the RNG that initialised the model), and validation uses one fixed set
of batches for every eval of every run. A resumed run continues the same run: same batches, same
RNG state, same metrics file, same wandb run.
"""

import math
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields
from functools import partial

try:  # torch takes seconds to import: a Ctrl-C meanwhile ends the script as quietly as one in main()
    import numpy as np
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from tqdm import tqdm

    from core.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, model_from_checkpoint, remove_stale_temp, save_checkpoint
    from core.configurator import ConfigError, HelpRequested, load_config
    from core.hardware import autocast, check_device, check_dtype, device_type, enable_tf32, peak_flops, resolve_device, resolve_dtype
    from core.metrics import MetricsLog, start_metrics, start_wandb
    from data.dataset import TokenDataset, batch_from_offsets, open_dataset
    from data.tokenizer import DataError
    from model import GPT, SPEED_FIELDS, GPTConfig
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("train.py: interrupted", file=sys.stderr)
    sys.exit(130)

EVAL_SEED = 20240601  # fixed, so every run of every arm is evaluated on the same batches


@dataclass
class TrainConfig:
    # data and output
    data_dir: str = "data/quickstart"  # a folder written by data/prepare.py
    out_dir: str = "out"  # ckpt.pt and metrics.jsonl are written here
    init_from: str = "scratch"  # 'scratch' (out_dir must hold no checkpoint) or 'resume'
    # evaluation and logging
    eval_interval: int = 250  # evaluate (and maybe checkpoint) every this many iterations
    eval_iters: int = 20  # batches per split in each evaluation
    log_interval: int = 10  # log train loss, lr, tokens/s, MFU every this many iterations
    always_save_checkpoint: bool = False  # save at every eval, not only when val loss improves
    wandb_log: bool = False  # also log to Weights & Biases
    wandb_project: str = "swiglu-gpt"
    wandb_group: str = ""  # '' = '<data folder>-<n_layer>x<n_embd>', shared by both arms
    wandb_run_name: str = ""  # '' = '<mlp>-s<seed>'
    wandb_mode: str = ""  # '' = online when logged in, else offline; or 'online', 'offline', 'disabled'
    # batch
    batch_size: int = 12  # sequences per micro-step per process
    block_size: int = 256  # context length
    gradient_accumulation_steps: int = 1  # micro-steps per iteration, summed over all processes
    # model (see model.GPTConfig)
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm layers
    mlp: str = "swiglu"  # gelu, relu, relu2, swiglu, geglu, reglu
    multiple_of: int = 16  # gated MLP hidden size is rounded up to a multiple of this
    mlp_hidden: int | None = None  # None = 4*n_embd (plain) or the 2/3 rule (gated)
    swish_beta: bool = False  # swiglu: learnable beta, gamma in the gate x*sigmoid(beta*x + gamma)
    vocab_size: int | None = None  # None = the data's, padded to a multiple of 64 when >= 1024
    # optimizer (AdamW) and schedule (linear warmup, cosine decay)
    learning_rate: float = 6e-4
    max_iters: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip the gradient norm to this; 0 = no clipping
    decay_lr: bool = True
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None = max_iters
    min_lr: float | None = None  # None = learning_rate / 10
    # system
    device: str = "auto"  # auto = cuda, then mps, then cpu
    dtype: str = "auto"  # auto = bfloat16 autocast where supported, else float32
    compile: bool = False  # torch.compile the model
    seed: int = 1337  # model init and data order (separate generators)
    # speed switches: each computes the same losses as the plain path, within float tolerance
    compile_mode: str = "default"  # torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune
    loss_chunk_size: int = 0  # >0: loss in chunks of this many tokens, never materialising full logits
    fused_gate_up: bool = False  # gated MLPs: W_gate and W_up in one matmul (same parameters)
    autocast: bool = True  # bfloat16 through torch.autocast; False: bf16 activations cast explicitly, fp32 master weights
    sdpa_backend: str = "auto"  # attention kernel tried first: auto (PyTorch's order), cudnn, flash, efficient, math
    fused_adamw: bool = True  # fused AdamW kernel where supported (CUDA)
    prefetch: bool = True  # CUDA: copy the next batch from pinned memory while the GPU computes
    peak_tflops: float | None = None  # the device's peak for MFU; None = look it up

    def __post_init__(self):
        choices = {
            "init_from": ("scratch", "resume"),
            "wandb_mode": ("", "online", "offline", "disabled"),
            "compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
            "sdpa_backend": ("auto", *SDPA_BACKENDS),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {getattr(self, name)!r}")
        for name in ("eval_interval", "eval_iters", "log_interval", "batch_size", "block_size", "gradient_accumulation_steps", "max_iters"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        check_device(self.device)
        check_dtype(self.dtype)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        GPTConfig(**model_fields(self), **speed_fields(self, self.dtype), vocab_size=self.vocab_size or 1)  # validates the model keys
        # readable defaults, recorded with the run so a report can find the group again
        self.wandb_group = self.wandb_group or f"{os.path.basename(os.path.normpath(self.data_dir))}-{self.n_layer}x{self.n_embd}"
        self.wandb_run_name = self.wandb_run_name or f"{self.mlp}-s{self.seed}"


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message is one line for the user."""


def model_fields(cfg):
    """The TrainConfig values that define the model: GPTConfig's fields but vocab_size and the speed-only ones."""
    return {f.name: getattr(cfg, f.name) for f in fields(GPTConfig) if f.name != "vocab_size" and f.name not in SPEED_FIELDS}


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


SDPA_BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


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


def speed_fields(cfg, dtype):
    """The GPTConfig fields that only change speed (SPEED_FIELDS), as cfg and the resolved dtype ask."""
    explicit_bf16 = not cfg.autocast and dtype == "bfloat16"
    return {
        "loss_chunk_size": cfg.loss_chunk_size,
        "fused_gate_up": cfg.fused_gate_up,
        "compute_dtype": "bfloat16" if explicit_bf16 else None,
    }


def padded_vocab_size(data_vocab_size):
    """Large vocabularies are padded to a multiple of 64 (GPT-2's 50257 -> 50304): faster matmuls."""
    return data_vocab_size if data_vocab_size < 1024 else 64 * math.ceil(data_vocab_size / 64)


def get_lr(it, cfg):
    """Learning rate at iteration `it`: linear warmup, then cosine decay to min_lr."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    min_lr = cfg.min_lr if cfg.min_lr is not None else cfg.learning_rate / 10
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= decay_iters:
        return min_lr
    progress = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - min_lr)


def train_offsets(seed, iteration, count, n_tokens, block_size):
    """Start positions of iteration's training sequences: a function of (seed, iteration) alone."""
    return np.random.default_rng([seed, iteration]).integers(0, n_tokens - block_size, size=count)


def eval_offsets(count, n_tokens, block_size):
    """The fixed evaluation positions, the same for every eval and every run."""
    return np.random.default_rng(EVAL_SEED).integers(0, n_tokens - block_size, size=count)


def to_device(x, y, device, prefetch):
    """The batch on `device`; on CUDA with prefetch, through pinned memory so the copy overlaps GPU work."""
    if prefetch and device_type(device) == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def get_batch(tokens, cfg, iteration, index, device):
    """Micro-batch `index` of iteration's global batch (batch_size * gradient_accumulation_steps sequences)."""
    offsets = train_offsets(cfg.seed, iteration, cfg.batch_size * cfg.gradient_accumulation_steps, len(tokens), cfg.block_size)
    x, y = batch_from_offsets(tokens, offsets[index * cfg.batch_size : (index + 1) * cfg.batch_size], cfg.block_size)
    return to_device(x, y, device, cfg.prefetch)


def make_optimizer(model, cfg, device):
    """AdamW as cfg says, with the fused kernel where PyTorch has one (CUDA, CPU) and it is switched on."""
    fused = cfg.fused_adamw and device_type(device) in ("cuda", "cpu")
    return model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), fused=fused)


def train_step(model, optimizer, batch, fetch, micro_steps, grad_clip, ctx):
    """One optimizer step over `micro_steps` micro-batches; returns (mean loss tensor, next batch).

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
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, (x, y)


def eval_batches(splits, cfg, device):
    """The fixed evaluation batches of each split, built once and kept on the device."""
    batches = {}
    for name, tokens in splits.items():
        offsets = eval_offsets(cfg.eval_iters * cfg.batch_size, len(tokens), cfg.block_size)
        x, y = batch_from_offsets(tokens, offsets, cfg.block_size)
        batches[name] = list(zip(x.to(device).split(cfg.batch_size), y.to(device).split(cfg.batch_size), strict=True))
    return batches


@torch.no_grad()
def estimate_loss(model, batches, ctx):
    """Mean loss over each split's evaluation batches (from eval_batches)."""
    model.eval()
    out = {}
    for name, split_batches in batches.items():
        total = torch.zeros((), device=split_batches[0][0].device)
        for x, y in split_batches:
            with ctx:
                _, loss = model(x, y)
            total += loss.float()
        out[name] = (total / len(split_batches)).item()
    model.train()
    return out


@contextmanager
def stop_on_signals():
    """Yields a dict whose 'signal' is set by SIGINT/SIGTERM, so the loop can save and stop."""
    requested = {"signal": None}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda signum, frame: requested.update(signal=signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    else:
        previous = {}
    try:
        yield requested
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def setup_distributed(cfg):
    """(rank, world_size, device); starts the process group under torchrun."""
    device = resolve_device(cfg.device)
    if "RANK" not in os.environ:
        return 0, 1, device
    rank, local_rank, world_size = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if cfg.gradient_accumulation_steps % world_size:
        raise ConfigError(
            f"gradient_accumulation_steps ({cfg.gradient_accumulation_steps}) must be a multiple of the number of processes ({world_size})"
        )
    if device_type(device) == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend="nccl" if device_type(device) == "cuda" else "gloo")
    return rank, world_size, device


def load_data(cfg):
    """The dataset, checked against block_size."""
    data = open_dataset(cfg.data_dir)
    for split in ("train", "val"):
        n = len(getattr(data, split))
        if n <= cfg.block_size:
            raise DataError(
                f"the {split} split of {cfg.data_dir} has {n} tokens; block_size={cfg.block_size} needs at least {cfg.block_size + 1}"
            )
    return data


def build_model(cfg, data, checkpoint, dtype):
    """A fresh GPT for cfg, or the checkpoint's (after checking that cfg describes the same model)."""
    speed = speed_fields(cfg, dtype)
    if checkpoint is None:
        model_config = GPTConfig(**model_fields(cfg), **speed, vocab_size=cfg.vocab_size or padded_vocab_size(data.vocab_size))
        torch.manual_seed(cfg.seed)  # the model's init depends on the seed; the data order never on this RNG
        model = GPT(model_config)
    else:
        saved = checkpoint["model_args"]
        for key, value in model_fields(cfg).items():
            if saved.get(key) != value:
                raise ConfigError(
                    f"init_from=resume: the checkpoint in {cfg.out_dir} has {key}={saved.get(key)!r}, the config says {value!r}"
                )
        model = model_from_checkpoint(checkpoint)
        for key, value in speed.items():  # speed switches may change across a resume
            setattr(model.config, key, value)
    if data.vocab_size > model.config.vocab_size:
        raise DataError(
            f"the data's vocabulary ({data.vocab_size} tokens) is larger than the model's vocab_size ({model.config.vocab_size})"
        )
    return model


# Keys that define which batches a run sees: a resumed run must keep them (the schedule, the
# length and the optimizer's hyperparameters may change).
RUN_DEFINING_KEYS = ("seed", "batch_size", "block_size", "gradient_accumulation_steps")


def same_dataset_fields(meta):
    """A data folder's meta.json without what prepare.py may add without changing the tokens."""
    return {key: value for key, value in meta.items() if key != "max_token_id"}


def initial_counters(cfg, checkpoint, data):
    """The loop's counters: fresh, or where the checkpoint left off (after checking it is the same run)."""
    if checkpoint is None:
        return {"iter": 0, "best_val_loss": float("inf"), "val_loss": None, "elapsed_before": 0.0, "wandb_run_id": None}
    if cfg.max_iters < checkpoint["iter"]:  # the run would end before its own checkpoint
        raise ConfigError(
            f"init_from=resume: the checkpoint in {cfg.out_dir} is at iteration {checkpoint['iter']}, "
            f"past max_iters={cfg.max_iters}; give max_iters >= {checkpoint['iter']} to finish or extend the run"
        )
    for key in RUN_DEFINING_KEYS:
        if checkpoint["config"][key] != getattr(cfg, key):
            raise ConfigError(
                f"init_from=resume: the checkpoint was trained with {key}={checkpoint['config'][key]!r}, "
                f"the config says {getattr(cfg, key)!r}"
            )
    if same_dataset_fields(checkpoint["data_meta"]) != same_dataset_fields(data.meta):
        raise ConfigError(f"init_from=resume: {cfg.data_dir} is not the dataset the checkpoint in {cfg.out_dir} was trained on")
    return {
        "iter": checkpoint["iter"],
        "best_val_loss": checkpoint["best_val_loss"],
        "val_loss": checkpoint["val_loss"],
        "elapsed_before": checkpoint["elapsed"],
        "wandb_run_id": checkpoint["wandb_run_id"],
    }


def restore_optimizer(optimizer, checkpoint, cfg):
    """The saved Adam moments, with this config's hyperparameters (the state dict would restore the old ones)."""
    optimizer.load_state_dict(checkpoint["optimizer"])
    decayed, plain = optimizer.param_groups
    for group in (decayed, plain):
        group["betas"] = (cfg.beta1, cfg.beta2)
    decayed["weight_decay"] = cfg.weight_decay


def rng_state():
    """This process's dropout RNG state (CPU, and CUDA where there is one), for the checkpoint."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def restore_rng(states, rank, cfg):
    """This process's dropout RNG from the checkpoint, or a fresh stream when the process count changed."""
    if rank >= len(states):
        torch.manual_seed(cfg.seed + 1 + rank + 1000 * len(states))
        return
    torch.set_rng_state(states[rank]["torch"].cpu())
    if torch.cuda.is_available() and states[rank]["cuda"] is not None:
        torch.cuda.set_rng_state(states[rank]["cuda"].cpu())


def train(cfg):
    """Train as cfg says; returns a summary dict (final and best val loss, iterations, tokens, time)."""
    rank, world_size, device = setup_distributed(cfg)
    try:
        run = start_run(cfg, rank, world_size, device)
        return finish_run(run, train_loop(run))
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()


@dataclass
class TrainingRun:
    """What the training loop works with: built once by start_run, its counters updated as it goes."""

    cfg: TrainConfig
    rank: int
    world_size: int
    device: str
    data: TokenDataset
    raw_model: GPT
    model: torch.nn.Module  # raw_model, compiled and wrapped in DDP as asked
    optimizer: torch.optim.Optimizer
    ctx: StepContext
    fixed_batches: dict  # each split's evaluation batches (eval_batches)
    log: MetricsLog | None  # rank 0 only
    report: dict  # raw_model.param_report(): parameter counts, FLOPs per token
    peak: float | None  # the device's peak FLOP/s, for MFU
    iter: int
    best_val_loss: float
    val_loss: float | None
    elapsed_before: float  # wall time of the earlier parts of a resumed run
    wandb_run_id: str | None
    last_saved: int | None  # the iteration of the checkpoint in out_dir
    first_bad: torch.Tensor  # first iteration whose loss was not finite, -1 if none; read only at sync points
    bar: tqdm | None = None  # the progress bar, shown by rank 0
    started: float = 0.0  # when this part of the run began training (after start-up)
    # tokens/s is measured over the window since the last train record, evaluation time left out
    window_start: float = 0.0
    window_iter: int = 0
    eval_seconds: float = 0.0

    @property
    def master(self):
        return self.rank == 0

    @property
    def micro_steps(self):
        return self.cfg.gradient_accumulation_steps // self.world_size

    @property
    def tokens_per_iter(self):
        return self.cfg.batch_size * self.cfg.gradient_accumulation_steps * self.cfg.block_size

    def elapsed(self):
        """Wall time of the whole run, resumed parts included."""
        return self.elapsed_before + time.time() - self.started

    def progress(self):
        """The fields every train and eval record starts with."""
        return {
            "iter": self.iter,
            "tokens": self.iter * self.tokens_per_iter,
            "flops": self.iter * self.tokens_per_iter * self.report["flops_per_token"],
            "time": self.elapsed(),
        }


def train_loop(run):
    """Step until max_iters or a signal, evaluating, logging and saving on the way; returns the signal that stopped it, if any."""
    cfg = run.cfg
    with stop_on_signals() as stop:
        if run.iter == 0:
            evaluate(run)
        batch = micro_batch(run, 0)
        while run.iter < cfg.max_iters:
            lr = get_lr(run.iter, cfg)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            loss_sum, batch = train_step(
                run.model, run.optimizer, batch, partial(micro_batch, run), run.micro_steps, cfg.grad_clip, run.ctx
            )
            run.first_bad = torch.where((run.first_bad < 0) & ~torch.isfinite(loss_sum), run.iter, run.first_bad)
            run.iter += 1
            run.bar.update(1)

            at_end = run.iter == cfg.max_iters
            at_log = run.iter % cfg.log_interval == 0 or at_end
            if at_log:
                log_training(run, loss_sum, lr)  # raises TrainingError if a loss so far was not finite
            stop_signal = signal_to_stop(run, stop, at_log)
            if run.iter % cfg.eval_interval == 0 or at_end:
                improved = evaluate(run)  # raises TrainingError too
                if improved or cfg.always_save_checkpoint or at_end:
                    save(run)
            if stop_signal and not at_end:
                check_finite(run)
                save(run)
                if run.master:
                    run.bar.write(
                        f"stopped by signal {stop_signal} at iteration {run.iter}; checkpoint saved, continue with --init_from=resume",
                        file=sys.stderr,
                    )
                run.bar.close()
                return stop_signal
    run.bar.close()
    return None


def start_run(cfg, rank, world_size, device):
    """Everything the loop needs: data, model, optimizer, metrics, fresh or from out_dir's checkpoint."""
    check_cuda_graphs(cfg, cfg.gradient_accumulation_steps // world_size)
    data = load_data(cfg)
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
    except OSError as e:  # a file of that name, or no permission
        raise ConfigError(f"out_dir {cfg.out_dir} cannot be used as a folder: {e.strerror}") from None
    if rank == 0:
        remove_stale_temp(cfg.out_dir)  # left by a kill during a save; ckpt.pt itself is whole
    checkpoint = None
    if cfg.init_from == "resume":
        checkpoint = load_checkpoint(cfg.out_dir, map_location=device)
    elif os.path.exists(os.path.join(cfg.out_dir, CHECKPOINT_NAME)):
        raise ConfigError(f"{cfg.out_dir} already holds a checkpoint; continue it with --init_from=resume or choose another out_dir")
    counters = initial_counters(cfg, checkpoint, data)

    dtype = resolve_dtype(cfg.dtype, device)
    enable_tf32(device)
    raw_model = build_model(cfg, data, checkpoint, dtype).to(device)
    optimizer = make_optimizer(raw_model, cfg, device)
    if checkpoint is not None:
        restore_optimizer(optimizer, checkpoint, cfg)
        restore_rng(checkpoint["rng"], rank, cfg)
    else:
        torch.manual_seed(cfg.seed + 1 + rank)  # dropout's stream: its own per process
    model = torch.compile(raw_model, mode=cfg.compile_mode) if cfg.compile else raw_model
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device_type(device) == "cuda" else None)

    run = TrainingRun(
        cfg=cfg,
        rank=rank,
        world_size=world_size,
        device=device,
        data=data,
        raw_model=raw_model,
        model=model,
        optimizer=optimizer,
        ctx=StepContext(cfg, device, dtype),
        fixed_batches=eval_batches({"train": data.train, "val": data.val}, cfg, device),
        log=None,
        report=raw_model.param_report(),
        peak=peak_flops(device, cfg.peak_tflops),
        **counters,
        last_saved=counters["iter"] if checkpoint is not None else None,
        first_bad=torch.full((), -1, device=device),
    )
    if run.master:
        print(raw_model.param_report_line())
        print(f"device {device}, dtype {dtype}, {world_size} process(es), {run.tokens_per_iter:,} tokens per iteration")
        run.log = open_metrics(run, resumed=checkpoint is not None)
    run.started = run.window_start = time.time()  # the clock starts with training, after wandb's start-up
    run.window_iter = run.iter
    run.bar = tqdm(total=cfg.max_iters, initial=run.iter, disable=None if run.master else True, dynamic_ncols=True)
    return run


def open_metrics(run, resumed):
    """metrics.jsonl begun (or continued) with this run's config line, and the wandb run if asked for."""
    cfg, report, meta = run.cfg, run.report, run.data.meta
    wandb_run = None
    if cfg.wandb_log:
        wandb_config = {**asdict(cfg), **report, "tokens_per_iter": run.tokens_per_iter, "data": meta}
        wandb_run = start_wandb(
            cfg.wandb_project, cfg.wandb_group, cfg.wandb_run_name, cfg.wandb_mode, wandb_config, run.wandb_run_id, cfg.out_dir
        )
        run.wandb_run_id = wandb_run.id
    config_record = {
        "event": "config",
        "config": asdict(cfg),
        "model": report,
        "data": meta,
        "tokens_per_iter": run.tokens_per_iter,
        "world_size": run.world_size,
    }
    start_metrics(cfg.out_dir, config_record, resumed_at=run.iter if resumed else None)
    return MetricsLog(cfg.out_dir, wandb_run)


def micro_batch(run, k):
    """Micro-batch k of this process for the current iteration; k == micro_steps is the next iteration's first."""
    steps = run.micro_steps
    return get_batch(run.data.train, run.cfg, run.iter + k // steps, run.rank * steps + k % steps, run.device)


def check_finite(run):
    """Raise TrainingError if a loss so far was not finite (a collective: every process calls it and stops together)."""
    if run.world_size > 1:  # all processes must stop together, or the others wait forever
        torch.distributed.all_reduce(run.first_bad, op=torch.distributed.ReduceOp.MAX)
    bad = int(run.first_bad.item())
    if bad >= 0:
        kept = (
            f"the checkpoint in {run.cfg.out_dir} is from iteration {run.last_saved}"
            if run.last_saved is not None
            else "no checkpoint was saved"
        )
        raise TrainingError(f"loss became non-finite at iteration {bad}; stopped without saving, {kept}")


def log_training(run, loss_sum, lr):
    """The train record: the loss of the whole batch, lr, and throughput since the last one (evaluation time left out).

    Checks first that every loss so far was finite (check_finite), so a diverged run stops here.
    """
    check_finite(run)
    now = time.time()
    tokens_per_s = (run.iter - run.window_iter) * run.tokens_per_iter / max(1e-9, now - run.window_start - run.eval_seconds)
    mfu = run.report["flops_per_token"] * tokens_per_s / (run.peak * run.world_size) if run.peak else None
    run.window_start, run.window_iter, run.eval_seconds = now, run.iter, 0.0
    if run.world_size > 1:  # the loss of the whole batch, not of rank 0's slice
        torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)
    if not run.master:
        return
    loss = loss_sum.item()
    run.log.write({"event": "train", **run.progress(), "loss": loss, "lr": lr, "tokens_per_s": tokens_per_s, "mfu": mfu})
    run.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}")
    if run.bar.disable:
        print(f"iter {run.iter}: loss {loss:.4f}, lr {lr:.2e}, {tokens_per_s:,.0f} tokens/s" + (f", MFU {mfu:.1%}" if mfu else ""))


def signal_to_stop(run, stop, at_log):
    """The signal that stops training at this iteration, or None.

    One process stops at the first iteration after a signal. Several must save and stop at the
    same iteration, so they decide together at log points only, in a collective every process
    calls, and a signal seen by any of them stops all.
    """
    if run.world_size == 1:
        return stop["signal"]
    if not at_log:
        return None
    flag = torch.tensor(float(stop["signal"] is not None), device=run.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return (stop["signal"] or signal.SIGTERM) if flag.item() else None


def evaluate(run):
    """Evaluate on the fixed batches and log it; True when the val loss is the best so far.

    Then checks that every loss so far was finite (check_finite): a diverged run is never saved.
    """
    t0 = time.time()
    losses = estimate_loss(run.model, run.fixed_batches, run.ctx)
    run.val_loss = losses["val"]
    improved = run.val_loss < run.best_val_loss
    run.best_val_loss = min(run.best_val_loss, run.val_loss)
    if run.master:
        run.log.write(
            {
                "event": "eval",
                **run.progress(),
                "train_loss": losses["train"],
                "val_loss": run.val_loss,
                "val_ppl": math.exp(min(run.val_loss, 50)),
            }
        )
        run.bar.write(f"iter {run.iter}: train loss {losses['train']:.4f}, val loss {run.val_loss:.4f}")
    run.eval_seconds += time.time() - t0
    check_finite(run)
    return improved


def save(run):
    """Checkpoint the run: every process takes part (its RNG state is gathered), rank 0 writes."""
    rngs = [rng_state()]
    if run.world_size > 1:
        rngs = [None] * run.world_size
        torch.distributed.all_gather_object(rngs, rng_state())
    if run.master:
        save_checkpoint(
            run.cfg.out_dir,
            {
                "model": run.raw_model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "model_args": asdict(run.raw_model.config),
                "config": asdict(run.cfg),
                "data_meta": run.data.meta,
                "iter": run.iter,  # also the data position: batches are a function of (seed, iter)
                "best_val_loss": run.best_val_loss,
                "val_loss": run.val_loss,
                "elapsed": run.elapsed(),
                "wandb_run_id": run.wandb_run_id,
                "rng": rngs,  # one state per process: each has its own dropout stream
            },
        )
    run.last_saved = run.iter


def finish_run(run, stopped_by):
    """Write the end record (when max_iters was reached) and close the logs; returns the run's summary."""
    cfg = run.cfg
    summary = {
        "iter": run.iter,
        "tokens": run.iter * run.tokens_per_iter,
        "time": run.elapsed(),
        "best_val_loss": run.best_val_loss,
        "final_val_loss": run.val_loss,
        "interrupted": run.iter < cfg.max_iters,
        "signal": stopped_by,
        "out_dir": cfg.out_dir,
        **run.report,
    }
    if run.master:
        if run.iter == cfg.max_iters:
            run.log.write(
                {
                    "event": "end",
                    "iter": run.iter,
                    "tokens": summary["tokens"],
                    "time": summary["time"],
                    "best_val_loss": run.best_val_loss,
                    "final_val_loss": run.val_loss,
                }
            )
        run.log.close({"best_val_loss": run.best_val_loss, "final_val_loss": run.val_loss})
        print(f"done: {run.iter} iterations, {summary['tokens']:,} tokens, {summary['time']:.1f}s, best val loss {run.best_val_loss:.4f}")
    return summary


def run_script(config_class, run, prog, description, argv, untouched):
    """The main() of a training script (train.py, classify.py): load its config, run it, return the exit status.

    `run(cfg)` returns a summary with "interrupted" and "signal"; `untouched` says, for a Ctrl-C
    before the loop handles signals itself, what in out_dir was left as it was.
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        summary = run(load_config(config_class, argv, prog=prog, description=description))
    except HelpRequested as e:
        print(e)
        return 0
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (TrainingError, OSError) as e:  # OSError: a write failed (disk full, permissions) outside the checkpoint
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the training loop handles signals itself
        print(f"{prog}: interrupted while starting; {untouched}", file=sys.stderr)
        return 130
    return 128 + summary["signal"] if summary["interrupted"] else 0  # shell convention: 130 SIGINT, 143 SIGTERM


def main(argv=None):
    return run_script(TrainConfig, train, "train.py", __doc__.strip().splitlines()[0], argv, "the checkpoint in out_dir is untouched")


if __name__ == "__main__":
    sys.exit(main())
