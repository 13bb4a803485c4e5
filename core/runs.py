"""Reading runs for a report: each run's metrics.jsonl, checked record by record, and the folders a report is given.

Two kinds of run, told apart by the "task" of their config record (TASKS says what a report
reads and writes for each): language models from train.py (no "task": "lm"), compared on final
val loss, lower is better; sequence classifiers from classify.py ("classify"), compared on final
test accuracy and macro-F1, higher is better. One report holds runs of one task, all of them
comparable (check_comparable): the same data, data per step and iterations.

A report is given run folders, folders of runs (find_run_dirs), or one sweep's folder: point
folders named like "n_layer=2,n_embd=48", each holding run folders (find_sweep_points).
"""

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from core.entry import UserError
from core.metrics import METRICS_NAME, finished_part, read_metrics


class ReportError(UserError):
    """The runs cannot be reported on as asked: one line for the user."""


# -----------------------------------------------------------------------------
# What a report reads and writes, per task


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


def human_count(n):
    """1234567 -> '1.23M': parameter, token and example counts at a glance."""
    if n is None:
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


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
# One run


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
    problem: str | None = None  # why its numbers cannot be used (a NaN loss, say): the report leaves it out, naming this
    diags: list = dataclasses.field(default_factory=list)  # "diag" lines (train.py --diagnostics=True)

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

    @property
    def usable(self):
        """True for a run the report averages in: complete, and every number it reads is finite."""
        return self.complete and self.problem is None

    def describe_left_out(self):
        """'runs/gelu-s0 (iter 50 of 100)', or what is wrong with its numbers: why the report leaves it out."""
        if self.problem:
            return f"{self.dir} ({self.problem})"
        return f"{self.dir} (iter {self.last_iter} of {self.config['max_iters']})"


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
    # Only the finished part counts: a resume that diverged after the end line does not spoil the run that finished.
    problem = next((f"{METRICS_NAME} line {n}: {p}" for n, p in enumerate((not_finite(e, task) for e in finished), start=1) if p), None)
    pending = len(finished) < len(events)
    diags = by_kind.get("diag", [])
    return Run(run_dir, by_kind["config"][-1], by_kind["train"], by_kind["eval"], end, resume_pending=pending, problem=problem, diags=diags)


def record_problem(record, task):
    """None if the report can read this metrics record of a `task` run, else what is wrong with it.

    A number field that is null, NaN or infinite is no problem here: it is a run that went wrong
    (metrics.py writes a non-finite number as null), which not_finite names and the report leaves out.
    """
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    kind = record.get("event")
    if kind == "config" and record.get("task", "lm") != task:
        return f"a config record of task {record.get('task', 'lm')!r} in a run of task {task!r}"
    lacking = [name for name in TASKS[task].needed.get(kind, ()) if not is_number_or_null(nested_get(record, name, MISSING))]
    if lacking:
        return f"the {kind} record has no numeric {', '.join(lacking)}"
    if kind == "config" and not all(isinstance(record.get(key, {}), dict) for key in ("data", "model")):
        return "the config record's data or model is not an object"
    return None


def not_finite(record, task):
    """None if every number the report reads from this (well-formed) record is finite, else which is not, in one phrase."""
    for name in TASKS[task].needed.get(record.get("event"), ()):
        value = nested_get(record, name)
        if not is_finite_number(value):
            shown = "null" if value is None else json.dumps(value)  # as the file spells it: NaN, Infinity, null
            return f"the {record['event']} record's {name} is {shown}, not a finite number"
    return None


MISSING = object()  # nested_get's answer for a field that is absent, told apart from one that is null


def nested_get(record, dotted, missing=None):
    """record["a"]["b"] for "a.b", or `missing` where a level is absent or not an object."""
    for key in dotted.split("."):
        record = record.get(key, missing) if isinstance(record, dict) else missing
    return record


def is_number(value):
    """True for an int or float that is not a bool (JSON's true is not a loss)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value):
    """A number that is not NaN or infinite (an int always is: JSON's big integers are no float)."""
    return is_number(value) and (not isinstance(value, float) or math.isfinite(value))


def is_number_or_null(value):
    """A number, or JSON's null where a number was not finite: what a number field of a metrics record may hold."""
    return value is None or is_number(value)


# -----------------------------------------------------------------------------
# Runs together


def assign_arm_labels(runs):
    """Label each run by its MLP variant, or by its folder name when that is ambiguous.

    Two configs with the same `mlp` (say SwiGLU at two widths) would collide on the same
    (arm, seed); then every run is labelled by its folder name minus the "-s<seed>" suffix,
    which is the config file's stem for runs launched by compare.py.
    """

    def label_by_folder(run):
        name = run.dir.name
        suffix = f"-s{run.seed}"
        return name[: -len(suffix)] if name.endswith(suffix) else name

    # a run whose seed is not a number (null, NaN) pairs with nothing: it is left out unlabelled, and cannot collide
    runs = [run for run in runs if is_finite_number(run.seed)]
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
# The folders a report is given


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


# A point's folder name holds its values, and a folder name cannot hold '/': a value's '/' is written
# %2F there, and its '%' %25, so that every value reads back as it was typed (data_dir=data%2Fa).
LABEL_ESCAPES = {"%": "%25", "/": "%2F"}


def encode_label_value(value):
    """A swept value as its point's folder name spells it: 'data/a' -> 'data%2Fa'."""
    return "".join(LABEL_ESCAPES.get(char, char) for char in value)


def decode_label_value(text):
    """encode_label_value's inverse: 'data%2Fa' -> 'data/a' (any other '%' is kept as it is)."""
    return re.sub("%25|%2F", lambda match: {code: char for char, code in LABEL_ESCAPES.items()}[match.group(0)], text)


def point_label(keys, values):
    """'n_layer=2,n_embd=48': the folder name of the sweep point where `keys` take `values` (texts as typed)."""
    return ",".join(f"{key}={encode_label_value(value)}" for key, value in zip(keys, values, strict=True))


def parse_point_label(label):
    """'n_layer=2,n_embd=48' -> {'n_layer': '2', 'n_embd': '48'}; None if the name is not a point's. point_label's inverse."""
    pairs = [part.partition("=") for part in label.split(",")]
    if not all(key and sep and value for key, sep, value in pairs):
        return None
    return {key: decode_label_value(value) for key, _, value in pairs}


def find_sweep_points(paths):
    """{point label: run folders} if `paths` is one sweep folder (point folders of run folders), else None."""
    if len(paths) != 1:
        return None
    root = Path(paths[0])
    points = {}
    for metrics in sorted(root.glob(f"*/*/{METRICS_NAME}")):
        if parse_point_label(metrics.parent.parent.name) is not None:
            points.setdefault(metrics.parent.parent.name, []).append(metrics.parent)
    plain = (root / METRICS_NAME).is_file() or any(root.glob(f"*/{METRICS_NAME}"))
    if plain and points:
        raise ReportError(f"{root} holds both runs and a sweep's point folders: give the runs, or move the sweep to its own --runs_dir")
    return points or None


def load_points(run_dirs_by_point):
    """{point label: its runs} from {point label: its run folders}."""
    return {label: [load_run(d) for d in dirs] for label, dirs in run_dirs_by_point.items()}
