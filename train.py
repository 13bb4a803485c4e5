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

Here: the batches, the model, the loop and the evaluation. The keys are TrainConfig's
(core/configs.py; `python train.py -h` lists them); the step is core/step.py's; what every
trainer shares (out_dir, resume, signals, schedule, checkpoints, metrics, wandb) is core/lifecycle.py.
"""

import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from functools import partial

from core.entry import interrupt_guard

with interrupt_guard(__name__, "train.py"):  # torch takes seconds to import
    import numpy as np
    import torch
    from tqdm import tqdm

    from core.checkpoint import RESUME_KEYS, model_from_checkpoint
    from core.configs import TrainConfig
    from core.configurator import ConfigError
    from core.diagnostics import Diagnostics
    from core.hardware import device_type, enable_tf32, peak_flops, resolve_device, resolve_dtype
    from core.hf import check_tokenizer, gpt_from_hf, load_hf_model
    from core.lifecycle import (
        Run,
        TrainingError,
        check_resumable,
        claim_out_dir,
        finish_run,
        get_lr,
        make_optimizer,
        open_metrics,
        restore_optimizer,
        resume_checkpoint,
        run_trainer,
        save_run,
        seed_dropout,
        set_lr,
        stop_message,
        stop_on_signals,
    )
    from core.step import StepContext, check_cuda_graphs, train_step
    from data.dataset import TokenDataset, batch_from_offsets, open_dataset
    from data.tokenizer import DataError, tokenizer_from_meta
    from model import GPT, GPTConfig

EVAL_SEED = 20240601  # fixed, so every run of every arm is evaluated on the same batches


def padded_vocab_size(data_vocab_size):
    """Large vocabularies are padded to a multiple of 64 (GPT-2's 50257 -> 50304): faster matmuls."""
    return data_vocab_size if data_vocab_size < 1024 else 64 * math.ceil(data_vocab_size / 64)


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


def eval_batches(splits, cfg, device):
    """The fixed evaluation batches of each split, built once and kept on the device."""
    batches = {}
    for name, tokens in splits.items():
        offsets = eval_offsets(cfg.eval_iters * cfg.batch_size, len(tokens), cfg.block_size)
        x, y = batch_from_offsets(tokens, offsets, cfg.block_size)
        batches[name] = list(zip(x.to(device).split(cfg.batch_size), y.to(device).split(cfg.batch_size), strict=True))
    return batches


@dataclass
class TextTargets:
    """The val batches' targets seen as text, for bits per byte (from text_targets)."""

    masked: list  # per batch: its targets with those of no text set to -1 (ignored), or None where all are text
    counts: list[int]  # per batch: how many targets are text
    bytes: int  # UTF-8 bytes of text of all the batches' targets


def text_targets(data, batches):
    """TextTargets of `batches`, or None where the tokenizer cannot be loaded on this machine.

    Bits per byte is the loss of the targets that are text over their bytes: end-of-text ids (no
    bytes) are left out of both, as lm-eval scores each document alone and nanochat masks them.
    It does not depend on the tokenizer, so character and BPE runs compare.
    """
    try:
        lengths = torch.from_numpy(tokenizer_from_meta(data.meta).byte_lengths())
    except DataError:
        return None
    masked, counts, total = [], [], 0
    for _, y in batches:
        y_bytes = lengths[y.cpu()]
        is_text = (y_bytes > 0).to(y.device)
        masked.append(None if bool(is_text.all()) else torch.where(is_text, y, -1))
        counts.append(int(is_text.sum()))
        total += int(y_bytes.sum())
    return TextTargets(masked, counts, total) if total else None


@torch.no_grad()
def estimate_loss(model, batches, ctx, text=None):
    """Mean loss over each split's evaluation batches (from eval_batches); with `text` (text_targets of the
    val batches) also "val_bpb", their bits per byte of text. A val batch whose targets are all text is
    run once for both; one holding an end-of-text target runs again with it masked."""
    model.eval()
    out = {}
    for name, split_batches in batches.items():
        losses = []
        for x, y in split_batches:
            with ctx:
                _, loss = model(x, y)
            losses.append(loss.float())
        out[name] = torch.stack(losses).mean().item()
        if name == "val" and text is not None:
            nats = torch.zeros((), dtype=torch.float64, device=losses[0].device)
            for (x, _), masked, count, loss in zip(split_batches, text.masked, text.counts, losses, strict=True):
                if masked is not None:
                    with ctx:
                        _, loss = model(x, masked)
                nats += loss.double() * count
            out["val_bpb"] = nats.item() / math.log(2) / text.bytes
    model.train()
    return out


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
    """A fresh GPT for cfg, a pretrained one (init_from=gpt2 or a transformers folder), or the checkpoint's."""
    if checkpoint is not None:
        model = resumed_model(cfg, checkpoint)
    elif cfg.init_from == "scratch":
        torch.manual_seed(cfg.seed)  # the model's init depends on the seed; the data order never on this RNG
        model = GPT(GPTConfig(**cfg.model_fields(), vocab_size=cfg.vocab_size or padded_vocab_size(data.vocab_size)))
    else:
        model = pretrained_model(cfg, data)
    for key, value in cfg.speed_fields(dtype).items():  # speed switches are this run's, whatever the checkpoint's
        setattr(model.config, key, value)
    if data.vocab_size > model.config.vocab_size:
        raise DataError(
            f"the data's vocabulary ({data.vocab_size} tokens) is larger than the model's vocab_size ({model.config.vocab_size})"
        )
    return model


def resumed_model(cfg, checkpoint):
    """The checkpoint's model, after checking that cfg describes it (a pretrained start's shape is taken as saved)."""
    # a key newer than the checkpoint has the value every model had before it: its default
    saved = {**{f.name: f.default for f in fields(GPTConfig)}, **checkpoint["model_args"]}
    if checkpoint.get("pretrained_from"):
        cfg.take_model_fields(saved)  # the config file never described a pretrained model's shape
    for key, value in cfg.model_fields().items():
        if saved[key] != value:
            raise ConfigError(f"init_from=resume: the checkpoint in {cfg.out_dir} has {key}={saved[key]!r}, the config says {value!r}")
    return model_from_checkpoint(checkpoint)


def pretrained_model(cfg, data):
    """OpenAI's GPT-2 or a transformers folder's model as our GPT, with cfg's dropout and block_size; its shape goes into cfg."""
    check_tokenizer(cfg.init_from, data.meta)
    model = gpt_from_hf(load_hf_model(cfg.init_from), dropout=cfg.dropout, block_size=cfg.block_size)
    cfg.take_model_fields(vars(model.config))  # recorded with the run, so reports and a resume see the real model
    c = model.config
    print(f"init_from={cfg.init_from}: {c.n_layer} layers, {c.n_head} heads, n_embd={c.n_embd}, mlp={c.mlp}, norm={c.norm}, pos={c.pos}")
    return model


# Keys that define which batches a run sees: a resumed run must keep them (the schedule, the
# length and the optimizer's hyperparameters may change).
RUN_DEFINING_KEYS = ("seed", "batch_size", "block_size", "gradient_accumulation_steps")


def same_dataset_fields(meta):
    """A data folder's meta.json without what prepare.py may add without changing the tokens."""
    return {key: value for key, value in meta.items() if key != "max_token_id"}


def check_same_run(cfg, checkpoint, data):
    """Refuse (ConfigError) a resume that would train another run: other batches, or other data."""
    check_resumable(cfg, checkpoint, RUN_DEFINING_KEYS)
    if same_dataset_fields(checkpoint["data_meta"]) != same_dataset_fields(data.meta):
        raise ConfigError(f"init_from=resume: {cfg.data_dir} is not the dataset the checkpoint in {cfg.out_dir} was trained on")


def train(cfg):
    """Train as cfg says; returns a summary dict (final and best val loss, iterations, tokens, time)."""
    rank, world_size, device = setup_distributed(cfg)
    try:
        check_cuda_graphs(cfg, cfg.gradient_accumulation_steps // world_size)
        data = load_data(cfg)
        with claim_out_dir(cfg, master=rank == 0):
            run = start_run(cfg, data, rank, world_size, device)
            return finish(run, train_loop(run))
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()


@dataclass(kw_only=True)
class TrainingRun(Run):
    """What the training loop works with: built once by start_run, its counters updated as it goes."""

    data: TokenDataset
    raw_model: GPT
    model: torch.nn.Module  # raw_model, compiled and wrapped in DDP as asked
    ctx: StepContext
    fixed_batches: dict  # each split's evaluation batches (eval_batches)
    report: dict  # raw_model.param_report(): parameter counts, FLOPs per token
    peak: float | None  # the device's peak FLOP/s, for MFU
    first_bad: torch.Tensor  # first iteration whose loss was not finite, -1 if none; read only at sync points
    val_text: TextTargets | None = None  # the fixed val batches' targets as text, for bits per byte
    diagnostics: Diagnostics | None = None  # cfg.diagnostics: per-layer statistics at each log (rank 0)
    pretrained_from: str | None = None  # the init_from (gpt2, a folder) this run's weights started from; None = scratch
    best_val_loss: float = float("inf")
    val_loss: float | None = None
    bar: tqdm | None = None  # the progress bar, shown by rank 0

    @property
    def micro_steps(self):
        return self.cfg.gradient_accumulation_steps // self.world_size

    @property
    def tokens_per_iter(self):
        return self.cfg.batch_size * self.cfg.gradient_accumulation_steps * self.cfg.block_size

    def progress(self):
        """The fields every train and eval record starts with."""
        return {
            "iter": self.iter,
            "tokens": self.iter * self.tokens_per_iter,
            "flops": self.iter * self.tokens_per_iter * self.report["flops_per_token"],
            "time": self.elapsed(),
        }


def logs_at(iteration, cfg):
    """True when the train record (and the diagnostics) is written after `iteration` steps."""
    return iteration % cfg.log_interval == 0 or iteration == cfg.max_iters


def train_loop(run):
    """Step until max_iters or a signal, evaluating, logging and saving on the way; returns the signal that stopped it, if any."""
    cfg = run.cfg
    with stop_on_signals() as stop:
        if run.iter == 0:
            evaluate(run)
        batch = micro_batch(run, 0)
        while run.iter < cfg.max_iters:
            lr = get_lr(run.iter, cfg)
            set_lr(run.optimizer, lr)
            if run.diagnostics and logs_at(run.iter + 1, cfg):
                run.diagnostics.snapshot()  # the weights before the step whose update is logged
            loss_sum, batch, grad_norm = train_step(
                run.model, run.optimizer, batch, partial(micro_batch, run), run.micro_steps, cfg.grad_clip, run.ctx
            )
            run.first_bad = torch.where((run.first_bad < 0) & ~torch.isfinite(loss_sum), run.iter, run.first_bad)
            run.iter += 1
            run.bar.update(1)

            at_end = run.iter == cfg.max_iters
            at_log = logs_at(run.iter, cfg)
            if at_log:
                log_diagnostics(run, grad_norm)  # first: a diverging run still records what ran away
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
                    run.bar.write(stop_message(run, stop_signal), file=sys.stderr)
                run.bar.close()
                return stop_signal
    run.bar.close()
    return None


def start_run(cfg, data, rank, world_size, device):
    """Everything the loop needs: model, optimizer, metrics, fresh or from out_dir's checkpoint."""
    checkpoint = resume_checkpoint(cfg, device, RESUME_KEYS, "train.py")
    if checkpoint is not None:
        check_same_run(cfg, checkpoint, data)
    dtype = resolve_dtype(cfg.dtype, device)
    enable_tf32(device)
    raw_model = build_model(cfg, data, checkpoint, dtype).to(device)
    optimizer = make_optimizer(raw_model, cfg, device)
    if checkpoint is not None:
        restore_optimizer(optimizer, checkpoint, cfg)
    seed_dropout(cfg, rank, checkpoint)
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
        report=raw_model.param_report(),
        peak=peak_flops(device, cfg.peak_tflops),
        first_bad=torch.full((), -1, device=device),
    )
    run.val_text = text_targets(data, run.fixed_batches["val"])
    if cfg.diagnostics and run.master:
        run.diagnostics = Diagnostics(raw_model, run.fixed_batches["val"][0][0])
    run.pretrained_from = (
        checkpoint.get("pretrained_from") if checkpoint is not None else cfg.init_from if cfg.init_from != "scratch" else None
    )
    if checkpoint is not None:
        run.continue_from(checkpoint)
        run.best_val_loss, run.val_loss = checkpoint["best_val_loss"], checkpoint["val_loss"]
    if run.master:
        start_logs(run, dtype)
    run.start_clock()
    run.bar = tqdm(total=cfg.max_iters, initial=run.iter, disable=None if run.master else True, dynamic_ncols=True)
    return run


def start_logs(run, dtype):
    """Say what is being trained where, and open metrics.jsonl and the wandb run (rank 0)."""
    print(run.raw_model.param_report_line())
    print(f"device {run.device}, dtype {dtype}, {run.world_size} process(es), {run.tokens_per_iter:,} tokens per iteration")
    record = {"config": asdict(run.cfg), "model": run.report, "data": run.data.meta, "tokens_per_iter": run.tokens_per_iter}
    open_metrics(
        run, {**record, "world_size": run.world_size}, {**run.report, "tokens_per_iter": run.tokens_per_iter, "data": run.data.meta}
    )


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
    iterations, seconds = run.take_window()
    tokens_per_s = iterations * run.tokens_per_iter / seconds
    mfu = run.report["flops_per_token"] * tokens_per_s / (run.peak * run.world_size) if run.peak else None
    if run.world_size > 1:  # the loss of the whole batch, not of rank 0's slice
        torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)
    if not run.master:
        return
    loss = loss_sum.item()
    run.log.write({"event": "train", **run.progress(), "loss": loss, "lr": lr, "tokens_per_s": tokens_per_s, "mfu": mfu})
    run.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}")
    if run.bar.disable:
        print(f"iter {run.iter}: loss {loss:.4f}, lr {lr:.2e}, {tokens_per_s:,.0f} tokens/s" + (f", MFU {mfu:.1%}" if mfu else ""))


def log_diagnostics(run, grad_norm):
    """With diagnostics=True, rank 0's diag record (core/diagnostics.py); its time is left out of throughput, as evaluation's is."""
    if run.diagnostics is None:
        return
    t0 = time.time()
    run.log.write({"event": "diag", "iter": run.iter, **run.diagnostics.record(grad_norm)})
    run.eval_seconds += time.time() - t0


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
    losses = estimate_loss(run.model, run.fixed_batches, run.ctx, run.val_text)
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
                "val_bpb": losses.get("val_bpb"),
            }
        )
        run.bar.write(f"iter {run.iter}: train loss {losses['train']:.4f}, val loss {run.val_loss:.4f}")
    run.eval_seconds += time.time() - t0
    check_finite(run)
    return improved


def save(run):
    """Checkpoint the run (core.lifecycle.save_run): the weights, the data's meta and the losses so far."""
    state = {
        "model": run.raw_model.state_dict(),
        "model_args": asdict(run.raw_model.config),
        "data_meta": run.data.meta,
        "pretrained_from": run.pretrained_from,
        "best_val_loss": run.best_val_loss,
        "val_loss": run.val_loss,
    }
    save_run(run, state)


def finish(run, stopped_by):
    """The end record and the summary (core.lifecycle.finish_run), with the model's parameter counts."""
    scores = {"best_val_loss": run.best_val_loss, "final_val_loss": run.val_loss}
    summary = finish_run(run, stopped_by, {"tokens": run.iter * run.tokens_per_iter}, scores)
    if run.master:
        print(f"done: {run.iter} iterations, {summary['tokens']:,} tokens, {summary['time']:.1f}s, best val loss {run.best_val_loss:.4f}")
    return {**summary, **run.report}


def main(argv=None):
    description = __doc__.strip().splitlines()[0]
    return run_trainer(TrainConfig, train, "train.py", description, argv, "the checkpoint in out_dir is untouched")


if __name__ == "__main__":
    sys.exit(main())
