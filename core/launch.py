"""Launching a comparison's runs: the scripts it can run, --sweep's syntax, the plan of runs and
their folders, and training each planned run that is not complete yet (resuming interrupted ones).

A sweep names one key, or several keys varied together, and the values they take:

    --sweep=learning_rate=1e-3,2e-3,4e-3          one key, three points
    --sweep=n_layer/n_head/n_embd=2/2/48,4/4/144   three keys together (a shape), two points

Every (config, seed) runs at every point, each point in its own folder named like
"n_layer=2,n_head=2,n_embd=48" (Hydra's multirun habit), which core/runs.py reads back.
"""

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.configurator import load_config
from core.metrics import METRICS_NAME
from core.runs import load_run

ROOT = Path(__file__).resolve().parent.parent  # where the launched scripts are
# keys that the launch sets itself for every run; users pass them through compare.py's own options.
RESERVED_OVERRIDES = {"seed", "out_dir", "init_from", "wandb_group", "wandb_run_name"}


@dataclass(frozen=True)
class Script:
    """A training script compare.py can launch, and how."""

    config_class: str  # its config dataclass in core/configs.py (imported lazily: it imports torch)
    fresh_init_from: str | None  # --init_from for a fresh run; None leaves it to the config file


SCRIPTS = {
    "train.py": Script("TrainConfig", "scratch"),
    # a classifier's config names what it starts from: scratch, or a pretrained run to fine-tune
    "classify.py": Script("ClassifyConfig", None),
}


@dataclass(frozen=True)
class Sweep:
    """What a sweep varies: keys varied together, and one tuple of values (as typed) per point."""

    keys: tuple
    points: tuple

    def label(self, values):
        """'n_layer=2,n_embd=48': the point's folder name."""
        return ",".join(f"{key}={value}" for key, value in zip(self.keys, values, strict=True))

    def overrides(self, values):
        """The point's --key=value for the launched script."""
        return [f"--{key}={value}" for key, value in zip(self.keys, values, strict=True)]


def parse_sweep(text, reserved=()):
    """'lr=1e-3,3e-3' or 'n_layer/n_embd=2/48,4/96' -> Sweep; ValueError with one line if malformed."""
    example = "expected KEY=V1,V2,... or KEY1/KEY2=A1/A2,B1/B2"
    keys_text, sep, values_text = text.partition("=")
    keys = tuple(key.strip().lstrip("-").replace("-", "_") for key in keys_text.split("/"))
    if not sep or not all(keys) or not values_text:
        raise ValueError(f"--sweep={text}: {example}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"--sweep={text}: a key is named twice")
    taken = sorted(set(keys) & set(reserved))
    if taken:
        raise ValueError(f"--sweep={text}: {taken[0]} is set by compare.py for each run and cannot be swept")
    points = []
    for point in values_text.split(","):
        values = tuple(value.strip() for value in point.split("/"))
        if not all(values):
            raise ValueError(f"--sweep={text}: an empty value (two commas or slashes in a row, or one at the end); {example}")
        if len(values) != len(keys):
            raise ValueError(
                f"--sweep={text}: {point!r} gives {len(values)} value(s) for {len(keys)} key(s) ({'/'.join(keys)}); "
                "values are split at ',' and '/', so a swept value cannot contain them"
            )
        points.append(values)
    if len(points) < 2:
        raise ValueError(f"--sweep={text}: a sweep needs at least two points (one point is a plain comparison)")
    if len(set(points)) != len(points):
        raise ValueError(f"--sweep={text}: a point is given twice")
    return Sweep(keys, tuple(points))


def check_run_configs(script, config_files, overrides, seeds, points=((),)):
    """Raise ConfigError now, not after the first run, if `script` would refuse a config or an override.

    Each config is checked with each seed (classify.py puts the seed into init_from) and with
    each of `points`, the --key=value of every sweep point.
    """
    from core import configs

    config_class = getattr(configs, SCRIPTS[script].config_class)
    for config_file in config_files:
        for seed in seeds:
            for point in points:
                load_config(config_class, [str(config_file), *overrides, *point, f"--seed={seed}"], prog="compare.py")


# -----------------------------------------------------------------------------
# The plan


@dataclass
class PlannedRun:
    """One (config, seed) pair of a launch, the folder its run goes to and, in a sweep, its point's keys."""

    config_file: Path
    seed: int
    out_dir: Path
    overrides: tuple = ()  # the sweep point's --key=value, after the launch's own
    name: str = ""  # the wandb run name; '' = the folder's name

    @property
    def run_name(self):
        return self.name or self.out_dir.name


def plan_runs(config_files, seeds, runs_dir):
    """Every (config, seed) pair, each in its own folder <runs_dir>/<config stem>-s<seed>.

    Seed-major order: after any prefix of the launch, the finished runs already form pairs.
    """
    return [PlannedRun(Path(cfg), seed, Path(runs_dir) / f"{Path(cfg).stem}-s{seed}") for seed in seeds for cfg in config_files]


def plan_sweep(config_files, seeds, runs_dir, sweep: Sweep):
    """Every (config, seed, point) of a sweep, in <runs_dir>/<point label>/<config stem>-s<seed>.

    Seed-major, then point: after each whole seed every point has that seed's pairs, so a sweep
    stopped early still draws the whole picture, only with wider intervals.
    """
    return [
        PlannedRun(
            Path(cfg),
            seed,
            Path(runs_dir) / sweep.label(values) / f"{Path(cfg).stem}-s{seed}",
            sweep.overrides(values),
            f"{Path(cfg).stem}-s{seed}-{sweep.label(values)}",
        )
        for seed in seeds
        for values in sweep.points
        for cfg in config_files
    ]


def plan_launch(config_files, seeds, runs_dir, sweep=None, group=""):
    """(planned runs, wandb group) of a comparison, or of a sweep; group '' names one after the configs (and swept keys)."""
    stems = [Path(cfg).stem for cfg in config_files]
    if sweep:
        return plan_sweep(config_files, seeds, runs_dir, sweep), group or "sweep-" + "-".join(stems) + "-" + "-".join(sweep.keys)
    return plan_runs(config_files, seeds, runs_dir), group or "compare-" + "-".join(stems)


def run_dirs_by_point(plan):
    """{point label: run folders} of a sweep's plan."""
    by_point = {}
    for run in plan:
        by_point.setdefault(run.out_dir.parent.name, []).append(run.out_dir)
    return by_point


# -----------------------------------------------------------------------------
# Training


def run_state(out_dir):
    """'complete' (end line at max_iters), 'interrupted' (a checkpoint to resume) or 'fresh'."""
    from core.checkpoint import CHECKPOINT_NAME  # checkpoint imports torch, which a report never needs

    if (out_dir / METRICS_NAME).is_file():
        run = load_run(out_dir)
        if run.complete and not run.resume_pending:
            return "complete"
    return "interrupted" if (out_dir / CHECKPOINT_NAME).is_file() else "fresh"


def run_training(command):
    """Run a training command and return its exit status; on Ctrl-C let it checkpoint before we stop.

    The child gets its own process group so that a Ctrl-C reaches it exactly once, forwarded
    by us: the script then saves a checkpoint and exits, and the next launch resumes from it.
    A SIGTERM (a job scheduler, `kill`) arrives here as core.entry.Interrupted, a
    KeyboardInterrupt, and is forwarded the same way.
    """
    process = subprocess.Popen(command, process_group=0)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise


def launch_command(script, run, state, overrides, group):
    """The command line that trains `run` (a PlannedRun in `state` 'fresh' or 'interrupted') with `script`."""
    init_from = "resume" if state == "interrupted" else SCRIPTS[script].fresh_init_from
    return [
        sys.executable,
        str(ROOT / script),
        str(run.config_file),
        *overrides,
        *run.overrides,
        f"--seed={run.seed}",
        f"--out_dir={run.out_dir}",
        *([f"--init_from={init_from}"] if init_from else []),
        f"--wandb_group={group}",
        f"--wandb_run_name={run.run_name}",
    ]


def launch_runs(plan, overrides, group, script="train.py"):
    """Train every planned run that is not complete yet; return 0, or the first failing status."""
    for number, run in enumerate(plan, start=1):
        state = run_state(run.out_dir)
        print(f"[{number}/{len(plan)}] {run.out_dir}: {state}" + (", skipped" if state == "complete" else ""), flush=True)
        if state == "complete":
            continue
        status = run_training(launch_command(script, run, state, overrides, group))
        if status != 0:
            print(f"compare.py: training {run.out_dir} failed with exit status {status}", file=sys.stderr)
            return status
    return 0
