"""Launching a comparison's runs: the scripts it can run, --sweep's syntax, the plan of runs and
their folders, and training each planned run that is not complete yet (resuming interrupted ones).

A sweep names one key, or several keys varied together, and the values they take:

    --sweep=learning_rate=1e-3,2e-3,4e-3          one key, three points
    --sweep=n_layer/n_head/n_embd=2/2/48,4/4/144   three keys together (a shape), two points
    --sweep=data_dir=data/a,data/b                 one key: its values may hold '/' (paths)
    --sweep='learning_rate=1e-3,4e-3;warmup_iters=30,150'   a grid: every combination of the groups (4 points)

Every (config, seed) runs at every point, each point in its own folder named like
"n_layer=2,n_head=2,n_embd=48" (Hydra's multirun habit), which core/runs.py reads back.

A launched run ends with its launcher: a stop signal (Ctrl-C, SIGTERM, SIGHUP) reaches it as
SIGINT, so it saves a checkpoint, and on Linux even a launcher killed outright (SIGKILL) takes it
along, by the SIGTERM the kernel sends it then (it saves and stops on that too).
"""

import ctypes
import itertools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.configurator import ConfigError, load_config
from core.metrics import METRICS_NAME
from core.runs import load_run, point_label

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
    """What a sweep varies: keys varied together, and one tuple of values (as typed) per point.

    A grid (groups separated by ';') is the product of its groups' points; `groups` holds each
    group's keys, the first being the one each arm is tuned over in the report.
    """

    keys: tuple
    points: tuple
    groups: tuple = ()

    def label(self, values):
        """'n_layer=2,n_embd=48': the point's folder name (a '/' in a value is written %2F, see core/runs.py)."""
        return point_label(self.keys, values)

    def overrides(self, values):
        """The point's --key=value for the launched script."""
        return [f"--{key}={value}" for key, value in zip(self.keys, values, strict=True)]

    @property
    def by_keys(self):
        """The keys of every group after the first: a grid is reported once per point of them."""
        return tuple(key for group in self.groups[1:] for key in group)


def parse_sweep(text, reserved=()):
    """'lr=1e-3,3e-3', 'n_layer/n_embd=2/48,4/96' or a grid 'lr=1e-3,3e-3;warmup_iters=30,300' -> Sweep;
    ValueError with one line if malformed."""
    groups = [parse_group(part, text, reserved) for part in text.split(";")]
    keys = tuple(key for group in groups for key in group.keys)
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"--sweep={text}: {twice} is named in two groups: a key is swept in one group only")
    points = tuple(sum(combination, ()) for combination in itertools.product(*(group.points for group in groups)))
    sweep = Sweep(keys, points, tuple(group.keys for group in groups) if len(groups) > 1 else ())
    long = next((sweep.label(values) for values in points if len(sweep.label(values).encode()) > 255), None)
    if long:  # the point's folder could not be made, and only after the points before it had trained
        raise ValueError(f"--sweep={text}: the point folder {long!r} would be longer than a folder name can be (255 bytes)")
    return sweep


def parse_group(group_text, text, reserved):
    """One group of --sweep=`text` ('KEY=V1,V2' or 'K1/K2=A1/A2,B1/B2') -> Sweep of its keys and points."""
    example = "expected KEY=V1,V2,... or KEY1/KEY2=A1/A2,B1/B2 (a grid: groups separated by ';')"
    keys_text, sep, values_text = group_text.partition("=")
    keys = tuple(key.strip().lstrip("-").replace("-", "_") for key in keys_text.split("/"))
    if not sep or not all(keys) or not values_text:
        raise ValueError(f"--sweep={text}: {example}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"--sweep={text}: a key is named twice")
    taken = sorted(set(keys) & set(reserved))
    if taken:
        raise ValueError(f"--sweep={text}: {taken[0]} is set by compare.py for each run and cannot be swept")
    points = tuple(split_point(text, point, keys) for point in values_text.split(","))
    if len(points) < 2:
        raise ValueError(f"--sweep={text}: a sweep needs at least two points in each group (one point is a plain comparison)")
    if len(set(points)) != len(points):
        raise ValueError(f"--sweep={text}: a point is given twice")
    return Sweep(keys, points)


def split_point(text, point, keys):
    """One point's values from its text in --sweep=`text`: the text itself for one key, '/'-separated parts for several.

    Only keys varied together need '/' between their values, so one key's values may hold it (paths).
    """
    values = (point.strip(),) if len(keys) == 1 else tuple(value.strip() for value in point.split("/"))
    if not all(values):
        between = "commas" if len(keys) == 1 else "commas or slashes"
        raise ValueError(f"--sweep={text}: an empty value (two {between} in a row, or one at the end); expected KEY=V1,V2,...")
    if len(values) != len(keys):
        raise ValueError(
            f"--sweep={text}: {point!r} gives {len(values)} value(s) for {len(keys)} key(s) ({'/'.join(keys)}); the values of "
            "keys varied together are split at '/', so they cannot contain one (a path can be swept as a key of its own)"
        )
    return values


def check_run_configs(script, config_files, overrides, seeds, points=((),)):
    """Raise ConfigError now, not after the first run, if `script` would refuse a config or an override.

    Each config is checked with each seed (classify.py puts the seed into init_from) and with
    each of `points`, the --key=value of every sweep point, which must differ once read.
    """
    from core import configs

    config_class = getattr(configs, SCRIPTS[script].config_class)
    for config_file in config_files:
        for seed in seeds:
            read = [load_config(config_class, [str(config_file), *overrides, *point, f"--seed={seed}"], "compare.py") for point in points]
            check_distinct_points(points, read)


def check_distinct_points(points, configs):
    """ConfigError if two sweep points (their --key=value) give their keys the same values once the config reads them.

    1e-3 and 0.001 are different texts and one learning rate: both would train the same runs twice.
    """
    seen = {}
    for point, config in zip(points, configs, strict=True):
        keys = [arg[2:].split("=", 1)[0] for arg in point]
        read = tuple(repr(getattr(config, key)) for key in keys)  # repr: 1 and True are equal in Python, not in a config
        if point and read in seen:
            values = ", ".join(f"{key}={getattr(config, key)!r}" for key in keys)
            raise ConfigError(f"--sweep gives one point twice: {' '.join(seen[read])} and {' '.join(point)} both read as {values}")
        seen[read] = point


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
    A SIGTERM (a job scheduler, `kill`) or SIGHUP (the terminal closed) arrives here as
    core.entry.Interrupted, a KeyboardInterrupt, and is forwarded the same way, as SIGINT. Should
    we be killed outright, the kernel stops the child for us (on Linux, see end_with_launcher).
    """
    process = subprocess.Popen(command, process_group=0, preexec_fn=end_with_launcher())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise


PR_SET_PDEATHSIG = 1  # prctl's option, from <linux/prctl.h>


def end_with_launcher():
    """On Linux, a preexec_fn that has the kernel send the child SIGTERM when this process dies, however it dies; else None.

    Without it a launcher killed by SIGKILL (or the OOM killer) leaves its run training on, unseen,
    holding its folder. The child's SIGTERM handler saves a checkpoint and stops, so the next launch resumes.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # looked up before the fork: the child only makes the call
    launcher = os.getpid()

    def arrange():
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != launcher:  # the launcher died before the call took effect: no signal will come
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


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
