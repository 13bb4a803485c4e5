"""The life of a training run, the same for every trainer (train.py, classify.py).

A run starts in out_dir (fresh, refusing to overwrite a run there, or resumed from its
checkpoint after checking that the config continues the same run), opens metrics.jsonl and the
wandb run, steps with AdamW on a warmup-cosine schedule while SIGINT, SIGTERM and SIGHUP are turned
into a request to save and stop, checkpoints atomically with each process's RNG state, and ends with
an end record and a summary. Each trainer keeps its own loop, model, batches and evaluation and
calls these for the rest.
"""

import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from core.checkpoint import CHECKPOINT_NAME, load_checkpoint, remove_stale_temp, save_checkpoint
from core.configurator import ConfigError, load_config
from core.entry import STOP_SIGNALS, RunFailed, restore_signals, run_main, take_signals
from core.hardware import device_type
from core.lock import exclusive_folder
from core.metrics import MetricsLog, start_metrics, start_wandb


class TrainingError(RunFailed):
    """Training cannot go on (a non-finite loss); the message is one line for the user."""


# ---- the schedule, the optimizer, the RNG ----------------------------------------------------


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


def set_lr(optimizer, lr):
    """Give every parameter group learning rate `lr` (times its lr_scale: Muon's groups run at muon_lr)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def make_optimizer(model, cfg, device):
    """AdamW as cfg says, with the fused kernel where PyTorch has one (CUDA, CPU) and it is switched on; with
    optimizer='muon', Muon for the blocks' matrices and AdamW for the rest (model.configure_optimizers)."""
    fused = cfg.fused_adamw and device_type(device) in ("cuda", "cpu")
    muon = dict(muon_lr=cfg.muon_lr, muon_momentum=cfg.muon_momentum) if cfg.optimizer == "muon" else {}
    return model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), fused=fused, **muon)


def restore_optimizer(optimizer, checkpoint, cfg):
    """The saved moments, with this config's hyperparameters (the state dict would restore the old ones)."""
    saved = checkpoint["config"].get("optimizer", "adamw")  # runs from before the switch used AdamW
    if saved != cfg.optimizer:
        raise ConfigError(f"init_from=resume: the checkpoint was trained with optimizer={saved}, the config says {cfg.optimizer}")
    optimizer.load_state_dict(checkpoint["optimizer"])
    for group in optimizer.param_groups:
        if "betas" in group:  # AdamW's
            group["betas"] = (cfg.beta1, cfg.beta2)
        else:  # Muon's
            group["momentum"] = cfg.muon_momentum
            group["lr_scale"] = cfg.muon_lr / cfg.learning_rate
        if group["params"] and group["params"][0].dim() >= 2:  # matrices decay, vectors never
            group["weight_decay"] = cfg.weight_decay


def rng_state():
    """This process's dropout RNG state (CPU, and CUDA where there is one), for the checkpoint."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def seed_dropout(cfg, rank, checkpoint):
    """This process's dropout RNG: the checkpoint's state, or a stream of its own apart from the init's.

    A resume with more processes than the checkpoint has states gives the new ones fresh streams.
    """
    states = checkpoint["rng"] if checkpoint is not None else []
    if rank >= len(states):
        torch.manual_seed(cfg.seed + 1 + rank + 1000 * len(states))
        return
    torch.set_rng_state(states[rank]["torch"].cpu())
    if torch.cuda.is_available() and states[rank]["cuda"] is not None:
        torch.cuda.set_rng_state(states[rank]["cuda"].cpu())


@contextmanager
def stop_on_signals():
    """Yields a dict whose 'signal' is set by SIGINT, SIGTERM or SIGHUP (unless ignored, as under nohup), so the loop can save and stop."""
    requested = {"signal": None}
    previous = take_signals((signal.SIGINT, *STOP_SIGNALS), lambda signum, frame: requested.update(signal=signum))
    try:
        yield requested
    finally:
        restore_signals(previous)


# ---- start: out_dir, resume, metrics ---------------------------------------------------------


@contextmanager
def claim_out_dir(cfg, master=True):
    """Make out_dir and hold it for this run while the block runs: a second writer is refused (core/lock.py).

    Only the master process holds it, and it alone removes the temporary file that a kill during
    a save leaves (the checkpoint itself is whole): with the folder held, that file is no other
    run's save in progress.
    """
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
    except OSError as e:  # a file of that name, or no permission
        raise ConfigError(f"out_dir {cfg.out_dir} cannot be used as a folder: {e.strerror}") from None
    if not master:
        yield
        return
    with exclusive_folder(cfg.out_dir):
        remove_stale_temp(cfg.out_dir)
        yield


def resume_checkpoint(cfg, device, required, script):
    """The checkpoint to continue (init_from=resume), else None, refusing to overwrite a run in out_dir.

    `required` are the keys a checkpoint of `script` holds; a checkpoint without them is named as
    not `script`'s.
    """
    if cfg.init_from == "resume":
        return load_checkpoint(cfg.out_dir, map_location=device, required=required, written_by=script)
    if (Path(cfg.out_dir) / CHECKPOINT_NAME).exists():
        raise ConfigError(f"{cfg.out_dir} already holds a checkpoint; continue it with --init_from=resume or choose another out_dir")
    return None


def check_resumable(cfg, checkpoint, run_keys):
    """Refuse (ConfigError) a resume that would not continue the run in out_dir.

    A max_iters before the checkpoint's iteration would end the run before its own checkpoint;
    `run_keys` decide what the run trains on (which batches, which texts) and must keep their values.
    """
    if cfg.max_iters < checkpoint["iter"]:
        raise ConfigError(
            f"init_from=resume: the checkpoint in {cfg.out_dir} is at iteration {checkpoint['iter']}, "
            f"past max_iters={cfg.max_iters}; give max_iters >= {checkpoint['iter']} to finish or extend the run"
        )
    for key in run_keys:
        if checkpoint["config"].get(key) != getattr(cfg, key):
            raise ConfigError(
                f"init_from=resume: the checkpoint was trained with {key}={checkpoint['config'].get(key)!r}, "
                f"the config says {getattr(cfg, key)!r}"
            )


@dataclass(kw_only=True)
class Run:
    """What every trainer's loop works with; each trainer's own run adds its model, data and scores."""

    cfg: object  # the trainer's config (a core.configs.RunConfig)
    device: str
    optimizer: torch.optim.Optimizer
    rank: int = 0
    world_size: int = 1
    log: MetricsLog | None = None  # the master process's only
    iter: int = 0
    elapsed_before: float = 0.0  # wall time of the earlier parts of a resumed run
    wandb_run_id: str | None = None
    last_saved: int | None = None  # the iteration of the checkpoint in out_dir
    started: float = 0.0  # when this part of the run began training (after start-up)
    # throughput is measured over the window since the last train record, evaluation time left out
    window_start: float = 0.0
    window_iter: int = 0
    eval_seconds: float = 0.0

    @property
    def master(self):
        return self.rank == 0

    def elapsed(self):
        """Wall time of the whole run, resumed parts included."""
        return self.elapsed_before + time.time() - self.started

    def continue_from(self, checkpoint):
        """Take the counters every run saves from the checkpoint being resumed."""
        self.iter, self.elapsed_before = checkpoint["iter"], checkpoint["elapsed"]
        self.wandb_run_id, self.last_saved = checkpoint.get("wandb_run_id"), checkpoint["iter"]

    def start_clock(self):
        """Training begins now: after start-up (wandb's included), which the clock leaves out."""
        self.started = self.window_start = time.time()
        self.window_iter = self.iter

    def take_window(self):
        """(iterations, seconds of training) since the last call, evaluation time left out; starts a new window."""
        now = time.time()
        window = (self.iter - self.window_iter, max(1e-9, now - self.window_start - self.eval_seconds))
        self.window_start, self.window_iter, self.eval_seconds = now, self.iter, 0.0
        return window


def open_metrics(run, config_record, wandb_config):
    """metrics.jsonl begun (or continued from the checkpoint's iteration) with config_record, and the wandb run if asked for.

    The wandb run's config is the trainer's config plus `wandb_config`; a resumed run continues
    the same wandb run.
    """
    cfg = run.cfg
    wandb_run = None
    if cfg.wandb_log:
        wandb_run = start_wandb(
            cfg.wandb_project,
            cfg.wandb_group,
            cfg.wandb_run_name,
            cfg.wandb_mode,
            {**asdict(cfg), **wandb_config},
            run.wandb_run_id,
            cfg.out_dir,
        )
        run.wandb_run_id = wandb_run.id
    start_metrics(cfg.out_dir, {"event": "config", **config_record}, resumed_at=run.last_saved)
    run.log = MetricsLog(cfg.out_dir, wandb_run)


# ---- save and finish -------------------------------------------------------------------------


def save_run(run, state):
    """Checkpoint the trainer's `state` with what every resume needs; every process calls it, the master writes.

    Added to `state`: the optimizer, the config, the counters and each process's RNG state
    (gathered from all of them: each has its own dropout stream).
    """
    rngs = [rng_state()]
    if run.world_size > 1:
        rngs = [None] * run.world_size
        torch.distributed.all_gather_object(rngs, rng_state())
    if run.master:
        save_checkpoint(
            run.cfg.out_dir,
            {
                **state,
                "optimizer": run.optimizer.state_dict(),
                "config": asdict(run.cfg),
                "iter": run.iter,  # also the data position: batches are a function of (seed, iter)
                "elapsed": run.elapsed(),
                "wandb_run_id": run.wandb_run_id,
                "rng": rngs,
            },
        )
    run.last_saved = run.iter


def stop_message(run, signum):
    """What a run stopped by a signal tells the user."""
    return f"stopped by signal {signum} at iteration {run.iter}; checkpoint saved, continue with --init_from=resume"


def finish_run(run, stopped_by, progress, scores):
    """Write the end record (when max_iters was reached) and close the logs; returns the run's summary.

    `progress` is how far the run got beyond iterations (tokens, or texts seen); `scores` its
    best and final evaluation, which also go to wandb's summary.
    """
    elapsed = run.elapsed()
    if run.master:
        if run.iter == run.cfg.max_iters:
            run.log.write({"event": "end", "iter": run.iter, **progress, "time": elapsed, **scores})
        run.log.close(scores)
    return {
        "iter": run.iter,
        **progress,
        "time": elapsed,
        **scores,
        "interrupted": run.iter < run.cfg.max_iters,
        "signal": stopped_by,
        "out_dir": run.cfg.out_dir,
    }


def run_trainer(config_class, train, prog, description, argv, on_interrupt):
    """The main() of a training script: load its config, call `train(cfg)`, return the exit status.

    As core.entry.run_main, and 128 + the signal that stopped the loop (130 SIGINT, 143 SIGTERM)
    when `train`'s summary says it was interrupted.
    """
    argv = sys.argv[1:] if argv is None else argv

    def body():
        summary = train(load_config(config_class, argv, prog=prog, description=description))
        return 128 + summary["signal"] if summary["interrupted"] else 0

    return run_main(prog, body, on_interrupt)
