"""Read training runs and report how their MLP variants compare: a figure, a table, a paired test.

The reporting half of compare.py (which launches the runs and is the command to use): it reads
each run's metrics.jsonl, checks the runs are comparable, and writes a figure of curves,
summary.md and summary.json; optionally it also logs the table and the figure to wandb.

Two kinds of run, told apart by the "task" of their config record (TASKS says what the report
reads and writes for each): language models from train.py (no "task": "lm"), compared on final
val loss, lower is better; sequence classifiers from classify.py ("classify"), compared on final
test accuracy and macro-F1, higher is better. One report holds runs of one task.

Statistics: runs are paired by seed (same seed = same initial data order), so the per-seed
difference d_i = final(arm, seed_i) - final(baseline, seed_i) of a compared metric removes the
shared part of the noise. We report mean(d) with a 95% Student-t confidence interval and a
two-sided paired t-test p-value, both from scipy.stats.ttest_rel, and a power estimate from
statsmodels: the smallest difference these seeds detect 80% of the time at the measured spread,
and how many seeds the measured difference would need.
"""

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.metrics import METRICS_NAME, finished_part, read_metrics, resolve_wandb_mode


class ReportError(Exception):
    """The runs cannot be reported on as asked: one line for the user."""


# -----------------------------------------------------------------------------
# What the report reads and writes, per task


class Panel(NamedTuple):
    """One plot of the figure: y against x over the runs' `kind` ("train" or "eval") records."""

    kind: str
    x: str
    y: str
    y_label: str
    x_label: str
    floor: str | None = None  # a data field drawn as a dashed line: the accuracy of always guessing the majority class


class Comparison(NamedTuple):
    """An end-record metric tested against the baseline's, paired by seed."""

    key: str  # the end record's field
    label: str  # its name in the table's Δ column
    summary_key: str  # where an arm's summary holds the test (None in the baseline's own)
    wandb_prefix: str  # of the test's columns in the wandb table


class Reach(NamedTuple):
    """How much data an arm's mean eval curve needs to reach the baseline's mean final value."""

    eval_key: str  # the curve: an eval record's field
    end_key: str  # the target: the end record's field, averaged over the baseline's seeds
    label: str  # its name in the table


@dataclass(frozen=True)
class Task:
    """What the report reads from one kind of run and what it writes about it."""

    needed: dict  # event -> the numeric fields the report reads from that kind of record (the scripts write more)
    data_fields: tuple  # the data's fields that must be equal for runs to be comparable
    config_fields: tuple  # config fields that must be equal too
    unit: str  # what a step consumes; records hold <unit>_per_iter (config), <unit>_per_s (train) and <unit> (eval)
    finals: tuple  # (end-record field, table label): each arm's mean ± std over seeds
    comparisons: tuple  # the paired tests against the baseline
    floors: tuple  # (data field, table label): reference values from the data, one column each
    reach: Reach
    higher_is_better: bool
    panels: tuple  # the figure, two panels a row
    figure: str  # the figure's file name
    describe_data: Callable  # the config record's data -> a few words for the report's first line


def describe_lm_data(data):
    """'shakespeare (char, 1M train tokens)': a language model's data in a few words."""
    return f"{data.get('source', '?')} ({data.get('tokenizer', '?')}, {human_count(data.get('train_tokens'))} train tokens)"


def describe_classify_data(data):
    """'reviews (2 classes: neg, pos; 20k train / 5k test examples; gpt2)': a classifier's data in a few words."""
    names = data.get("label_names") or []
    return (
        f"{data.get('source', '?')} ({len(names)} classes: {', '.join(map(str, names))}; "
        f"{human_count(data.get('train_examples'))} train / {human_count(data.get('test_examples'))} test examples; "
        f"{data.get('tokenizer', '?')})"
    )


TASKS = {
    "lm": Task(
        needed={
            "config": ("config.seed", "config.max_iters", "tokens_per_iter"),
            "train": ("iter", "tokens", "time", "loss", "tokens_per_s"),
            "eval": ("iter", "tokens", "time", "val_loss"),
            "end": ("iter", "time", "best_val_loss", "final_val_loss"),
        },
        data_fields=("tokenizer", "vocab_size", "train_tokens", "val_tokens", "source"),
        # these decide which batches train and evaluate a run: equal tokens per step is not enough
        config_fields=("max_iters", "batch_size", "block_size", "gradient_accumulation_steps", "eval_iters"),
        unit="tokens",
        finals=(("final_val_loss", "final val loss"), ("best_val_loss", "best val loss")),
        comparisons=(Comparison("final_val_loss", "final val", "vs_baseline", ""),),
        floors=(),
        reach=Reach("val_loss", "final_val_loss", "loss"),
        higher_is_better=False,
        panels=(
            Panel("eval", "tokens", "val_loss", "validation loss", "tokens"),
            Panel("train", "tokens", "loss", "training loss", "tokens"),
            Panel("eval", "time", "val_loss", "validation loss", "wall time (s)"),
            Panel("train", "time", "loss", "training loss", "wall time (s)"),
        ),
        figure="loss_curves.png",
        describe_data=describe_lm_data,
    ),
    "classify": Task(
        needed={
            "config": ("config.seed", "config.max_iters", "examples_per_iter", "data.majority_accuracy"),
            "train": ("iter", "examples_per_s"),
            "eval": ("iter", "examples", "time", "accuracy", "macro_f1"),
            "end": ("iter", "time", "final_accuracy", "final_macro_f1"),
        },
        data_fields=("source", "label_names", "train_examples", "test_examples"),
        config_fields=("max_iters",),
        unit="examples",
        finals=(("final_accuracy", "final accuracy"), ("final_macro_f1", "final macro-F1")),
        comparisons=(
            Comparison("final_accuracy", "accuracy", "vs_baseline_accuracy", "accuracy_"),
            Comparison("final_macro_f1", "macro-F1", "vs_baseline_macro_f1", "macro_f1_"),
        ),
        floors=(("majority_accuracy", "majority accuracy"),),
        reach=Reach("macro_f1", "final_macro_f1", "macro-F1"),
        higher_is_better=True,
        panels=(
            Panel("eval", "iter", "accuracy", "test accuracy", "steps", floor="majority_accuracy"),
            Panel("eval", "iter", "macro_f1", "test macro-F1", "steps"),
        ),
        figure="accuracy_curves.png",
        describe_data=describe_classify_data,
    ),
}


# -----------------------------------------------------------------------------
# Reading runs


@dataclass
class Run:
    """One training run as recorded in its metrics.jsonl."""

    dir: Path
    record: dict  # the last "config" line: config, model, data, <unit>_per_iter, world_size (and task, but for train.py)
    train: list  # "train" lines
    evals: list  # "eval" lines
    end: dict | None  # the "end" line, if training finished
    arm: str = ""
    resume_pending: bool = False  # records after the last end line: a resume that has not finished

    @property
    def config(self):
        return self.record["config"]

    @property
    def seed(self):
        return self.config["seed"]

    @property
    def task_name(self):
        return self.record.get("task", "lm")  # train.py's config records name no task

    @property
    def task(self):
        return TASKS[self.task_name]

    @property
    def complete(self):
        return self.end is not None and self.end["iter"] == self.config["max_iters"]

    @property
    def last_iter(self):
        lines = self.train + self.evals
        return max((line["iter"] for line in lines), default=0)


def load_run(run_dir):
    """Parse run_dir/metrics.jsonl (a line cut short by a crash ends it), checking every record we read."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_NAME
    if not path.is_file():
        raise ReportError(f"no {METRICS_NAME} in {run_dir}")
    try:
        events = read_metrics(run_dir)
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"cannot read {path} ({type(error).__name__}): is it a metrics file written by train.py?") from None
    if not events or not isinstance(events[0], dict) or events[0].get("event") != "config":
        raise ReportError(f"{path} does not start with a config record")
    task = events[0].get("task", "lm")
    if not isinstance(task, str) or task not in TASKS:
        raise ReportError(f"{path} line 1: unknown task {task!r} (the report reads {' and '.join(TASKS)} runs)")
    for number, event in enumerate(events, start=1):
        problem = record_problem(event, task)
        if problem:
            raise ReportError(f"{path} line {number}: {problem}; leave this run out or train it again")
    # a finished run stays finished whatever a later, unfinished resume left after its end line
    by_kind = {"config": [], "train": [], "eval": [], "end": []}
    finished = finished_part(events)
    for event in finished:
        by_kind.setdefault(event.get("event"), []).append(event)
    end = by_kind["end"][-1] if by_kind["end"] else None
    if end is not None and not by_kind["eval"]:  # the scripts evaluate before they end: the curves need it
        raise ReportError(f"{path} has an end record but no eval records; leave this run out or train it again")
    return Run(run_dir, by_kind["config"][-1], by_kind["train"], by_kind["eval"], end, resume_pending=len(finished) < len(events))


def record_problem(record, task="lm"):
    """None if the report can use this metrics record of a `task` run, else what is wrong with it."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    kind = record.get("event")
    if kind == "config" and record.get("task", "lm") != task:
        return f"a config record of task {record.get('task', 'lm')!r} in a run of task {task!r}"
    lacking = [name for name in TASKS[task].needed.get(kind, ()) if not is_number(nested_get(record, name))]
    if lacking:
        return f"the {kind} record has no numeric {', '.join(lacking)}"
    if kind == "config" and not all(isinstance(record.get(key, {}), dict) for key in ("data", "model")):
        return "the config record's data or model is not an object"
    return None


def nested_get(record, dotted):
    """record["a"]["b"] for "a.b", or None where a level is missing or not an object."""
    for key in dotted.split("."):
        record = record.get(key) if isinstance(record, dict) else None
    return record


def is_number(value):
    """True for an int or float that is not a bool (JSON's true is not a loss)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def find_run_dirs(paths):
    """Run folders named on the command line: each path is a run, or a folder of runs."""
    run_dirs = []
    for path in map(Path, paths):
        if (path / METRICS_NAME).is_file():
            run_dirs.append(path)
            continue
        children = sorted(p.parent for p in path.glob(f"*/{METRICS_NAME}"))
        if not children:
            raise ReportError(f"{path} holds no {METRICS_NAME}, neither itself nor in a subfolder")
        run_dirs.extend(children)
    return run_dirs


def assign_arm_labels(runs):
    """Label each run by its MLP variant, or by its folder name when that is ambiguous.

    Two configs with the same `mlp` (say SwiGLU at two widths) would collide on the same
    (arm, seed); then every run is labelled by its folder name minus the "-s<seed>" suffix,
    which is the config file's stem for runs launched by this script.
    """

    def label_by_folder(run):
        name = run.dir.name
        suffix = f"-s{run.seed}"
        return name[: -len(suffix)] if name.endswith(suffix) else name

    for labeller in (lambda run: str(run.config.get("mlp", label_by_folder(run))), label_by_folder):
        keys = [(labeller(run), run.seed) for run in runs]
        if len(set(keys)) == len(keys):
            for run, (arm, _) in zip(runs, keys, strict=True):
                run.arm = arm
            return
    raise ReportError("two runs share the same arm and seed: pass each run once, or give the configs distinct file names")


def common_task(runs):
    """The Task all runs share; ReportError if they are of different tasks (no --allow_mismatch for that)."""
    first = runs[0]
    other = next((run for run in runs if run.task_name != first.task_name), None)
    if other is not None:
        raise ReportError(
            f"runs of different tasks cannot be compared: {first.dir} is a {first.task_name!r} run, "
            f"{other.dir} a {other.task_name!r} run; report each task on its own"
        )
    return first.task


def check_comparable(runs, task):
    """None if all runs saw the same data, data per step and iterations; else one line why not."""

    def signature(run):
        data = run.record.get("data", {})
        fields = {f"data.{key}": data.get(key) for key in task.data_fields}
        per_iter = f"{task.unit}_per_iter"
        fields[per_iter] = run.record.get(per_iter)
        for key in task.config_fields:
            fields[key] = run.config.get(key)
        return fields

    reference = signature(runs[0])
    for run in runs[1:]:
        for field, value in signature(run).items():
            if value != reference[field]:
                return (
                    f"runs differ in {field}: {runs[0].dir} has {reference[field]!r}, "
                    f"{run.dir} has {value!r} (pass --allow_mismatch to compare anyway)"
                )
    return None


# -----------------------------------------------------------------------------
# Curves and summary statistics


def mean_curve(curves):
    """Mean, min and max of several (x, y) curves on their common x range.

    Seeds of one arm log at the same token counts but not at the same wall times, so each
    curve is linearly interpolated onto the union of all x values inside the shared range.
    """
    lo = max(x[0] for x, _ in curves)
    hi = min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def arm_curve(runs, kind, x_key, y_key):
    """The mean curve of y_key against x_key over the runs' `kind` ("train" or "eval") lines."""
    curves = []
    for run in runs:
        lines = run.train if kind == "train" else run.evals
        curves.append((np.array([line[x_key] for line in lines], dtype=float), np.array([line[y_key] for line in lines], dtype=float)))
    return mean_curve(curves)


def first_crossing(x, y, target):
    """The first x where the piecewise-linear curve y(x) falls to target or below, else None."""
    # The slack lets the baseline reach its own final loss when means round differently.
    below = np.nonzero(y <= target + 1e-12 * abs(target))[0]
    if len(below) == 0:
        return None
    i = below[0]
    if i == 0:
        return float(x[0])
    # y[i-1] > target >= y[i]: interpolate linearly inside that segment.
    frac = (y[i - 1] - target) / (y[i - 1] - y[i])
    return float(x[i - 1] + frac * (x[i] - x[i - 1]))


def paired_t_test(arm, baseline, confidence=0.95):
    """The paired differences arm[i] - baseline[i]: mean, sample std, scipy's t-test and its interval.

    With fewer than two pairs there is no spread to test against, and when every difference is
    zero scipy's t is 0/0 (nan): then ci95, t and p_value are None and `note` says why.
    """
    # scipy.stats takes most of a second to import: -h, a mistyped option and a launch's first
    # run should not wait for it.
    from scipy import stats

    d = np.asarray(arm, dtype=float) - np.asarray(baseline, dtype=float)
    n = len(d)
    result = {
        "n_pairs": n,
        "diff_mean": float(d.mean()) if n else None,
        "diff_std": float(d.std(ddof=1)) if n > 1 else None,
        "ci95": None,
        "t": None,
        "p_value": None,
        "note": None,
        "power": None,
    }
    if n < 2:
        result["note"] = f"{n} paired seed(s): need at least 2 for a confidence interval and p-value"
        return result
    # Equal differences make scipy warn about precision (its t is then infinite): the note puts
    # that warning in the report, next to the numbers it is about, not on stderr.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test = stats.ttest_rel(arm, baseline)
        ci = test.confidence_interval(confidence_level=confidence)
    if math.isnan(test.pvalue):  # 0/0 when every difference is zero; nan in, nan out otherwise
        why = f"the {n} paired differences are all zero" if not d.any() else "a final value is not a number"
        result["note"] = f"{why}: the t-test is undefined, so no confidence interval or p-value"
        return result
    result.update(ci95=[float(ci.low), float(ci.high)], t=float(test.statistic), p_value=float(test.pvalue))
    result["power"] = power_estimate(result["diff_mean"], result["diff_std"], n)
    if caught:
        result["note"] = f"scipy warns: {str(caught[0].message).splitlines()[0]}"
    return result


def power_estimate(diff_mean, diff_std, n_pairs, power=0.8, alpha=0.05):
    """What a paired t-test with this spread can see: the detectable difference now, the seeds the measured one needs.

    detectable_diff: the smallest |difference| that n_pairs seeds detect (two-sided, alpha) with
    probability `power`, given the measured seed-to-seed std of the differences.
    seeds_needed: how many paired seeds detect the measured difference with that probability.
    Both are estimates: the std itself is measured on few seeds.
    """
    from statsmodels.stats.power import TTestPower  # slow to import: only reports need it

    result = {"power": power, "alpha": alpha, "detectable_diff": None, "seeds_needed": None}
    if n_pairs is None or n_pairs < 2 or not diff_std or not math.isfinite(diff_std):
        return result
    analysis = TTestPower()
    effect = float(np.squeeze(analysis.solve_power(effect_size=None, nobs=n_pairs, alpha=alpha, power=power)))
    if math.isfinite(effect):
        result["detectable_diff"] = effect * diff_std
    if diff_mean:
        result["seeds_needed"] = seeds_for_power(analysis, abs(diff_mean) / diff_std, power, alpha)
    return result


def seeds_for_power(analysis, effect_size, power, alpha, most=1001):
    """The fewest paired seeds (2 or more) whose t-test has `power` at this effect size; None if over `most`.

    A search over whole counts (power grows with the count) rather than statsmodels' root
    finder, which fails where two seeds already suffice. Where the noncentrality is so large
    that the power is 1 to many decimals, scipy's noncentral t returns nan: that counts as 1.
    """

    def enough(n):
        value = analysis.power(effect_size=effect_size, nobs=n, alpha=alpha)
        return math.isnan(value) or value >= power

    low, high = 1, 2  # enough(low) is false by convention: a single seed has no spread
    while not enough(high):
        if high >= most:
            return None
        low, high = high, min(2 * high, most)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def paired_by_seed(runs, baseline_runs, key):
    """The paired t-test of end[key] between the runs and the baseline's runs of the same seeds."""
    base_by_seed = {run.seed: run.end[key] for run in baseline_runs}
    paired = [run for run in runs if run.seed in base_by_seed]
    return {
        "seeds": [run.seed for run in paired],
        **paired_t_test([run.end[key] for run in paired], [base_by_seed[run.seed] for run in paired]),
    }


def mean_std(values):
    """Mean and sample standard deviation (None for a single value) of a list of numbers."""
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None}


def reach_baseline_final(task, runs, baseline_final):
    """How much data (and wall time) the runs' mean eval curve needs to reach the baseline's final value."""
    eval_key = task.reach.eval_key
    # first_crossing looks for a fall to the target: for a higher-is-better metric, a rise is a fall of its negative
    sign = -1.0 if task.higher_is_better else 1.0
    amounts, by_amount, _, _ = arm_curve(runs, "eval", task.unit, eval_key)
    times, by_time, _, _ = arm_curve(runs, "eval", "time", eval_key)
    reached = first_crossing(amounts, sign * by_amount, sign * baseline_final)
    total = runs[0].config["max_iters"] * runs[0].record[f"{task.unit}_per_iter"]
    return {
        task.unit: reached,
        "fraction": reached / total if reached is not None else None,
        "time_s": first_crossing(times, sign * by_time, sign * baseline_final),
    }


def summarize_arm(task, arm, runs, baseline, baseline_runs, baseline_final):
    """Per-arm numbers for the table; each comparison's summary_key holds its paired test (None for the baseline)."""
    model = runs[0].record.get("model", {})
    speed = f"{task.unit}_per_s"
    summary = {
        "arm": arm,
        "runs": [str(run.dir) for run in runs],
        "seeds": [run.seed for run in runs],
        "n_seeds": len(runs),
        "params_total": model.get("params_total"),
        "params_non_embedding": model.get("params_non_embedding"),
        "params_mlp": model.get("params_mlp"),
        "flops_per_token": model.get("flops_per_token"),
    }
    summary.update({key: mean_std([run.end[key] for run in runs]) for key, _ in task.finals})
    summary.update({key: runs[0].record["data"][key] for key, _ in task.floors})  # the data's: equal for comparable runs
    # The median over logged steps ignores the slow first steps (compilation, warm-up).
    summary[speed] = float(np.mean([np.median([t[speed] for t in run.train]) for run in runs])) if all(r.train for r in runs) else None
    summary["wall_time_s"] = float(np.mean([run.end["time"] for run in runs]))
    summary["reach_baseline_final"] = reach_baseline_final(task, runs, baseline_final)
    for comparison in task.comparisons:
        summary[comparison.summary_key] = None if arm == baseline else paired_by_seed(runs, baseline_runs, comparison.key)
    return summary


def summarize(runs, baseline, task):
    """The whole report as a JSON-able dict. `runs` are complete runs of `task` with arm labels."""
    arms = {}
    for run in runs:
        arms.setdefault(run.arm, []).append(run)
    if baseline not in arms:
        raise ReportError(f"baseline arm {baseline!r} has no complete runs; arms present: {', '.join(arms)} (choose one with --baseline)")
    baseline_runs = arms[baseline]
    end_key = task.reach.end_key
    baseline_final = float(np.mean([run.end[end_key] for run in baseline_runs]))
    first = runs[0]
    per_iter = f"{task.unit}_per_iter"
    return {
        "baseline": baseline,
        f"baseline_{end_key}": baseline_final,
        "data": first.record.get("data", {}),
        "model": {key: first.config.get(key) for key in ("n_layer", "n_head", "n_embd", "block_size")},
        per_iter: first.record.get(per_iter),
        "max_iters": first.config.get("max_iters"),
        "arms": [summarize_arm(task, arm, arm_runs, baseline, baseline_runs, baseline_final) for arm, arm_runs in arms.items()],
    }


# -----------------------------------------------------------------------------
# Output: table, figure, wandb


def human_count(n):
    """1234567 -> '1.23M': parameter, token and example counts at a glance."""
    if n is None:
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def format_mean_std(stat):
    """'1.2345 ± 0.0123' from a mean_std dict (no ± for a single seed)."""
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["std"] is not None else "")


def format_paired(paired):
    """The Δ and p cells of one paired test (None: the baseline's own row)."""
    if paired is None:
        return ["(baseline)", "—"]
    if paired["ci95"] is None:
        return [f"{paired['diff_mean']:+.4f}" if paired["n_pairs"] else "—", "—"]
    lo, hi = paired["ci95"]
    return [f"{paired['diff_mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]", f"{paired['p_value']:.3g}"]


def format_seeds_needed(paired):
    """The seeds a paired test's measured difference needs for its power: '12', 'over 1000', or '—' (no difference)."""
    power = paired.get("power") or {}
    needed = power.get("seeds_needed")
    if needed is None:
        return "—" if not paired.get("diff_mean") or power.get("detectable_diff") is None else "over 1000"
    return str(needed) if needed <= 1000 else "over 1000"


def describe_power(paired):
    """One sentence on what this many seeds can separate, from a paired test's power estimate."""
    power = paired["power"]
    needed = format_seeds_needed(paired)
    return (
        f"power: at the measured spread (std of the differences {paired['diff_std']:.4f}), {paired['n_pairs']} seeds detect a "
        f"difference of ±{power['detectable_diff']:.4f} with {power['power']:.0%} power (two-sided, α = {power['alpha']}); "
        + ("the measured difference is zero" if needed == "—" else f"the measured {paired['diff_mean']:+.4f} needs {needed} seeds")
    )


def markdown_table(summary, task):
    """The summary as a Markdown table, one row per arm, with notes underneath."""
    base = summary["baseline"]
    speed = f"{task.unit}_per_s"
    header = [
        "arm",
        "seeds",
        "params",
        *(label for _, label in task.finals),
        *(label for _, label in task.floors),
        f"{task.unit}/s",
        *(column for c in task.comparisons for column in (f"Δ {c.label} vs {base} [95% CI]", "p (paired t)")),
        f"{task.unit} to {base}'s final {task.reach.label}",
    ]
    rows, notes = [], []
    for arm in summary["arms"]:
        row = [arm["arm"], str(arm["n_seeds"]), f"{arm['params_total']:,}"]
        row += [format_mean_std(arm[key]) for key, _ in task.finals]
        row += [f"{arm[key]:.4f}" for key, _ in task.floors]
        row.append("?" if arm[speed] is None else human_count(arm[speed]))
        for comparison in task.comparisons:
            paired = arm[comparison.summary_key]
            row += format_paired(paired)
            # with one comparison the arm says it all; with several, name the metric
            where = arm["arm"] if len(task.comparisons) == 1 else f"{arm['arm']} ({comparison.label})"
            if paired and paired["note"]:
                notes.append(f"{where}: {paired['note']}")
            if paired and paired["power"] and paired["power"]["detectable_diff"] is not None:
                notes.append(f"{where}: {describe_power(paired)}")
        reach = arm["reach_baseline_final"]
        row.append("never" if reach[task.unit] is None else f"{human_count(reach[task.unit])} ({reach['fraction']:.0%})")
        rows.append(row)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [f"- {note}" for note in notes]
    lines += [f"- incomplete, left out: {run}" for run in summary.get("incomplete_runs", [])]
    return "\n".join(lines) + "\n"


def describe_setup(summary, task):
    """One line naming the data and the model, for the figure title and the Markdown header."""
    model = ", ".join(f"{key}={value}" for key, value in summary["model"].items() if value is not None)
    return (
        f"data: {task.describe_data(summary['data'])} · model: {model or '?'} · "
        f"{human_count(summary[f'{task.unit}_per_iter'])} {task.unit}/step × {summary['max_iters']} steps"
    )


def plot_curves(arm_runs, summary, path, task):
    """The task's panels, two a row: each arm's mean curve with a min–max band over its seeds."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in tests
    import matplotlib.pyplot as plt

    rows = len(task.panels) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(13, 4.5 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, task.panels, strict=True):
        for color, (arm, runs) in enumerate(arm_runs.items()):
            if not all(run.train if panel.kind == "train" else run.evals for run in runs):
                continue
            x, mean, low, high = arm_curve(runs, panel.kind, panel.x, panel.y)
            ax.plot(x, mean, color=f"C{color}", label=f"{arm} (n={len(runs)})")
            ax.fill_between(x, low, high, color=f"C{color}", alpha=0.25, linewidth=0)
        if panel.floor:
            ax.axhline(summary["data"][panel.floor], color="gray", linestyle="--", label=panel.floor.replace("_", " "))
        ax.set(xlabel=panel.x_label, ylabel=panel.y_label, title=f"{panel.y_label} vs {panel.x_label} (mean, min–max band)")
        ax.grid(alpha=0.3)
        ax.legend()
    params = ", ".join(f"{arm['arm']} {arm['params_total']:,}" for arm in summary["arms"])
    fig.suptitle(f"{describe_setup(summary, task)}\nparameters: {params}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def start_report_run(run_config, job_type, name, config):
    """A wandb run for a report, in the project and group of the runs it reports on (run_config: one run's config)."""
    import wandb

    return wandb.init(
        project=run_config.get("wandb_project"),
        group=run_config.get("wandb_group") or None,
        mode=resolve_wandb_mode(""),
        job_type=job_type,
        name=name,
        config=config,
    )


def log_to_wandb(summary, figure_path, runs, task):
    """Log the table and the figure to a wandb run grouped with the training runs."""
    import wandb

    run = start_report_run(
        runs[0].config,
        "compare",
        f"compare-{'-vs-'.join(a['arm'] for a in summary['arms'])}",
        {"baseline": summary["baseline"], "data": summary["data"], "model": summary["model"], "max_iters": summary["max_iters"]},
    )
    columns = ["arm", "n_seeds", "params_total"]
    for c in task.comparisons:
        columns += [f"{c.key}_mean", f"{c.key}_std"]
        columns += [c.wandb_prefix + name for name in ("diff_vs_baseline", "ci95_low", "ci95_high", "p_value")]
    columns.append(f"{task.unit}_to_baseline_final")
    table = wandb.Table(columns=columns)
    for arm in summary["arms"]:
        row = [arm["arm"], arm["n_seeds"], arm["params_total"]]
        for c in task.comparisons:
            paired = arm[c.summary_key] or {}
            ci = paired.get("ci95") or [None, None]
            row += [arm[c.key]["mean"], arm[c.key]["std"], paired.get("diff_mean"), ci[0], ci[1], paired.get("p_value")]
        row.append(arm["reach_baseline_final"][task.unit])
        table.add_data(*row)
    run.log({"summary": table, Path(figure_path).stem: wandb.Image(str(figure_path))})
    run.finish()


def make_report_dir(out_dir):
    """The report folder as a Path, made if need be; ReportError if it cannot be."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot create the report folder {out_dir} ({error.strerror})") from None
    return out_dir


def write_tables(out_dir, stem, header, table, result, figure_path):
    """<stem>.md (a header line, then the Markdown table) and <stem>.json in out_dir, and the same on screen."""
    (out_dir / f"{stem}.md").write_text(f"{header}\n\n{table}")
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(header)
    print(table, end="")
    print(f"wrote {figure_path}, {out_dir / f'{stem}.md'}, {out_dir / f'{stem}.json'}")


def report(runs, out_dir, baseline, allow_mismatch=False, use_wandb=False):
    """Check, summarize and write the report for runs (all of one task); return the summary dict."""
    task = common_task(runs)
    mismatch = check_comparable(runs, task)
    if mismatch and not allow_mismatch:
        raise ReportError(mismatch)
    assign_arm_labels(runs)
    complete = [run for run in runs if run.complete]
    incomplete = [f"{run.dir} (iter {run.last_iter} of {run.config['max_iters']})" for run in runs if not run.complete]
    if not complete:
        raise ReportError("no complete runs to report on; incomplete: " + "; ".join(incomplete))
    summary = summarize(complete, baseline, task)
    summary["incomplete_runs"] = incomplete
    summary["mismatch"] = mismatch

    out_dir = make_report_dir(out_dir)
    arm_runs = {}
    for run in complete:
        arm_runs.setdefault(run.arm, []).append(run)
    figure_path = out_dir / task.figure
    plot_curves(arm_runs, summary, figure_path, task)
    write_tables(out_dir, "summary", describe_setup(summary, task), markdown_table(summary, task), summary, figure_path)
    if use_wandb:
        log_to_wandb(summary, figure_path, complete, task)
    return summary
