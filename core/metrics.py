"""
Run metrics: out_dir/metrics.jsonl always, Weights & Biases when asked.

metrics.jsonl holds one JSON object per line, each with an "event":
  config  first line, and again at each resume (with resumed_at): the run's config, parameter
          counts, the data's meta, tokens per iteration
  train   every log_interval: iter, tokens, flops, time, loss, lr, tokens_per_s, mfu
  eval    every eval_interval and at the end: iter, tokens, flops, time, train_loss, val_loss, val_ppl,
          val_bpb (bits per byte of text: comparable across tokenizers; null where the tokenizer is not at hand)
  diag    with diagnostics=True, every log_interval, just before that log's train record: iter; per block i
          L<i>/resid_rms, mlp_out_rms, pre_mean, pre_std, pre_absmax, pre_off, dead_units, attn_logit_max,
          attn_entropy; update/<weight> (||Δw||/||w|| of the logged step); grad_norm (core/diagnostics.py
          defines each); in wandb each field f is diag/f (diag/L0/mlp_out_rms, diag/update/L0.mlp.w_gate)
  end     when training finished: iter, tokens, time, best_val_loss, final_val_loss
classify.py's runs use the same events (the config line says "task": "classify"): train has
examples and examples_per_s instead of tokens; eval has test_loss, accuracy, macro_f1, per_class
and confusion; end has best_macro_f1, final_accuracy, final_macro_f1 and final_test_loss.
A resumed run appends a config line marked "resumed_at" (the checkpoint's iteration) after the
records up to its checkpoint; records past the checkpoint are dropped, because the resume repeats
that training exactly. Nothing else is ever removed: finished_part() gives what a reader should use.
Every line is valid JSON: a number that is not finite (a diverged loss) is written as null.
"""

import json
import math
import netrc
import os
from pathlib import Path
from urllib.parse import urlsplit

from core.atomic import write_whole
from core.entry import RunFailed

METRICS_NAME = "metrics.jsonl"

# metrics.jsonl field -> wandb key, per event; wandb's step is the iteration
WANDB_KEYS = {
    "train": {
        "loss": "train/loss",
        "lr": "train/lr",
        "tokens": "progress/tokens",
        "flops": "progress/flops",
        "time": "progress/time",
        "tokens_per_s": "perf/tokens_per_s",
        "mfu": "perf/mfu",
        "examples": "progress/examples",  # classify.py's runs count texts, not tokens
        "examples_per_s": "perf/examples_per_s",
    },
    "eval": {
        "val_loss": "val/loss",
        "val_ppl": "val/ppl",
        "val_bpb": "val/bpb",
        "train_loss": "eval/train_loss",
        "test_loss": "test/loss",  # classify.py
        "accuracy": "test/accuracy",
        "macro_f1": "test/macro_f1",
    },
}


def read_metrics(out_dir):
    """Every record of out_dir/metrics.jsonl, in order (an unfinished last line is skipped)."""
    path = Path(out_dir) / METRICS_NAME
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a crash: everything after it is suspect too
    return records


def start_metrics(out_dir, config_record, resumed_at=None):
    """Begin metrics.jsonl with this run's config line, or continue it when resuming.

    A resumed run keeps every record up to its checkpoint's iteration `resumed_at`, earlier config
    and end lines included, and appends its own config line marked with `resumed_at`. Only the
    records past `resumed_at` go (with the config line of an earlier try from the same
    checkpoint): they describe training the checkpoint does not hold, which the resume repeats.
    """
    path = Path(out_dir) / METRICS_NAME
    kept = []
    if resumed_at is not None:
        config_record = {**config_record, "resumed_at": resumed_at}
        if path.exists():
            kept = [r for r in read_metrics(out_dir) if record_precedes(r, resumed_at)]
    write_whole(path, "".join(json.dumps(finite_or_null(r), allow_nan=False) + "\n" for r in [*kept, config_record]))


def finite_or_null(value):
    """`value` with every NaN or infinity (at any depth) as None: JSON has no such numbers, and a reader must not average them in."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def record_precedes(record, resumed_at):
    """True for a record written before the checkpoint at iteration resumed_at was."""
    if record.get("event") == "config":
        return record.get("resumed_at", -1) < resumed_at
    return record.get("iter", resumed_at + 1) <= resumed_at


def finished_part(records):
    """The records that describe a run as far as it finished.

    Everything up to the last end record when there is one: what follows it is a resume that has
    not finished (interrupted, or stopped by a non-finite loss), and it must not make a finished
    run look unfinished. Without an end record, all of them.
    """
    ends = [i for i, r in enumerate(records) if r.get("event") == "end"]
    return records[: ends[-1] + 1] if ends else records


def wandb_logged_in():
    """True when an API key is in the environment or in the netrc file for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).netloc
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode):
    """'' -> WANDB_MODE if set, else online when logged in and offline otherwise."""
    if mode:
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")


class MetricsLog:
    """Appends records to metrics.jsonl and mirrors train/eval points to a wandb run."""

    def __init__(self, out_dir, wandb_run=None):
        self.path = Path(out_dir) / METRICS_NAME
        self.file = open(self.path, "a")
        self.wandb_run = wandb_run

    def write(self, record):
        record = finite_or_null(record)
        try:
            self.file.write(json.dumps(record, allow_nan=False) + "\n")
            self.file.flush()
        except OSError as e:
            raise RunFailed(f"could not write {self.path} ({e.strerror or e})") from None
        if self.wandb_run is not None and record["event"] in WANDB_KEYS:
            names = WANDB_KEYS[record["event"]]
            point = {names[k]: v for k, v in record.items() if k in names and v is not None}
            self.wandb_run.log(point, step=record["iter"])
        elif self.wandb_run is not None and record["event"] == "diag":  # its keys are per layer: each under diag/
            point = {f"diag/{k}": v for k, v in record.items() if k not in ("event", "iter") and v is not None}
            self.wandb_run.log(point, step=record["iter"])

    def close(self, summary=None):
        self.file.close()
        if self.wandb_run is not None:
            if summary:
                self.wandb_run.summary.update(summary)
            self.wandb_run.finish()


def start_wandb(project, group, name, mode, run_config, run_id, out_dir):
    """A wandb run for this training run, resumed when run_id names an earlier one."""
    import wandb  # optional: only runs that log to wandb need it

    mode = resolve_wandb_mode(mode)
    print(f"wandb: logging {mode}" + (" (read it with `wandb leet`, upload with `wandb sync`)" if mode == "offline" else ""))
    return wandb.init(
        project=project,
        group=group,
        name=name,
        config=run_config,
        id=run_id,
        resume="allow",
        mode=mode,
        dir=str(out_dir),
    )
