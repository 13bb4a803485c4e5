"""Read training runs and report how their MLP variants compare: a figure, a table, a paired test.

The reporting half of compare.py (which launches the runs and is the command to use): it reads
each run's metrics.jsonl, checks the runs are comparable, and writes loss_curves.png, summary.md
and summary.json; optionally it also logs the table and the figure to wandb.

Statistics: runs are paired by seed (same seed = same initial data order), so the per-seed
difference d_i = final_val(arm, seed_i) - final_val(baseline, seed_i) removes the shared part of
the noise. We report mean(d) with a 95% Student-t confidence interval and a two-sided paired
t-test p-value, both from scipy.stats.ttest_rel.
"""

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metrics import METRICS_NAME, finished_part, read_metrics, resolve_wandb_mode

# What must be equal for losses to be comparable across runs.
DATA_FIELDS = ("tokenizer", "vocab_size", "train_tokens", "val_tokens", "source")
# The numeric fields the report reads from each kind of metrics.jsonl record (train.py writes more).
NEEDED_FIELDS = {
    "config": ("config.seed", "config.max_iters", "tokens_per_iter"),
    "train": ("iter", "tokens", "time", "loss", "tokens_per_s"),
    "eval": ("iter", "tokens", "time", "val_loss"),
    "end": ("iter", "time", "best_val_loss", "final_val_loss"),
}


class ReportError(Exception):
    """The runs cannot be reported on as asked: one line for the user."""


# -----------------------------------------------------------------------------
# Reading runs


@dataclass
class Run:
    """One training run as recorded in its metrics.jsonl."""

    dir: Path
    record: dict  # the last "config" line: config, model, data, tokens_per_iter, world_size
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
    for number, event in enumerate(events, start=1):
        problem = record_problem(event)
        if problem:
            raise ReportError(f"{path} line {number}: {problem}; leave this run out or train it again")
    # a finished run stays finished whatever a later, unfinished resume left after its end line
    by_kind = {"config": [], "train": [], "eval": [], "end": []}
    finished = finished_part(events)
    for event in finished:
        by_kind.setdefault(event.get("event"), []).append(event)
    end = by_kind["end"][-1] if by_kind["end"] else None
    if end is not None and not by_kind["eval"]:  # train.py evaluates before it ends: the curves need it
        raise ReportError(f"{path} has an end record but no eval records; leave this run out or train it again")
    return Run(run_dir, by_kind["config"][-1], by_kind["train"], by_kind["eval"], end, resume_pending=len(finished) < len(events))


def record_problem(record):
    """None if the report can use this metrics record, else what is wrong with it."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    kind = record.get("event")
    lacking = [name for name in NEEDED_FIELDS.get(kind, ()) if not is_number(nested_get(record, name))]
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


def check_comparable(runs):
    """None if all runs saw the same data, tokens per step and iterations; else one line why not."""

    def signature(run):
        data = run.record.get("data", {})
        fields = {f"data.{key}": data.get(key) for key in DATA_FIELDS}
        fields["tokens_per_iter"] = run.record.get("tokens_per_iter")
        # these decide which batches train and evaluate a run: equal tokens per step is not enough
        for key in ("max_iters", "batch_size", "block_size", "gradient_accumulation_steps", "eval_iters"):
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
        why = f"the {n} paired differences are all zero" if not d.any() else "a final loss is not a number"
        result["note"] = f"{why}: the t-test is undefined, so no confidence interval or p-value"
        return result
    result.update(ci95=[float(ci.low), float(ci.high)], t=float(test.statistic), p_value=float(test.pvalue))
    if caught:
        result["note"] = f"scipy warns: {str(caught[0].message).splitlines()[0]}"
    return result


def mean_std(values):
    """Mean and sample standard deviation (None for a single value) of a list of numbers."""
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None}


def summarize_arm(arm, runs, baseline, baseline_runs, baseline_final):
    """Per-arm numbers for the table; `vs_baseline` holds the paired test (None for the baseline)."""
    model = runs[0].record.get("model", {})
    total_tokens = runs[0].config["max_iters"] * runs[0].record["tokens_per_iter"]
    tokens, val_by_tokens, _, _ = arm_curve(runs, "eval", "tokens", "val_loss")
    times, val_by_time, _, _ = arm_curve(runs, "eval", "time", "val_loss")
    reach_tokens = first_crossing(tokens, val_by_tokens, baseline_final)
    summary = {
        "arm": arm,
        "runs": [str(run.dir) for run in runs],
        "seeds": [run.seed for run in runs],
        "n_seeds": len(runs),
        "params_total": model.get("params_total"),
        "params_non_embedding": model.get("params_non_embedding"),
        "params_mlp": model.get("params_mlp"),
        "flops_per_token": model.get("flops_per_token"),
        "final_val_loss": mean_std([run.end["final_val_loss"] for run in runs]),
        "best_val_loss": mean_std([run.end["best_val_loss"] for run in runs]),
        # The median over logged steps ignores the slow first steps (compilation, warm-up).
        "tokens_per_s": float(np.mean([np.median([t["tokens_per_s"] for t in run.train]) for run in runs]))
        if all(r.train for r in runs)
        else None,
        "wall_time_s": float(np.mean([run.end["time"] for run in runs])),
        "reach_baseline_final": {
            "tokens": reach_tokens,
            "fraction": reach_tokens / total_tokens if reach_tokens is not None else None,
            "time_s": first_crossing(times, val_by_time, baseline_final),
        },
        "vs_baseline": None,
    }
    if arm != baseline:
        base_by_seed = {run.seed: run.end["final_val_loss"] for run in baseline_runs}
        paired = [run for run in runs if run.seed in base_by_seed]
        summary["vs_baseline"] = {
            "seeds": [run.seed for run in paired],
            **paired_t_test([run.end["final_val_loss"] for run in paired], [base_by_seed[run.seed] for run in paired]),
        }
    return summary


def summarize(runs, baseline):
    """The whole report as a JSON-able dict. `runs` are complete runs with arm labels."""
    arms = {}
    for run in runs:
        arms.setdefault(run.arm, []).append(run)
    if baseline not in arms:
        raise ReportError(f"baseline arm {baseline!r} has no complete runs; arms present: {', '.join(arms)} (choose one with --baseline)")
    baseline_runs = arms[baseline]
    baseline_final = float(np.mean([run.end["final_val_loss"] for run in baseline_runs]))
    first = runs[0]
    return {
        "baseline": baseline,
        "baseline_final_val_loss": baseline_final,
        "data": first.record.get("data", {}),
        "model": {key: first.config.get(key) for key in ("n_layer", "n_head", "n_embd", "block_size")},
        "tokens_per_iter": first.record.get("tokens_per_iter"),
        "max_iters": first.config.get("max_iters"),
        "arms": [summarize_arm(arm, arm_runs, baseline, baseline_runs, baseline_final) for arm, arm_runs in arms.items()],
    }


# -----------------------------------------------------------------------------
# Output: table, figure, wandb


def human_count(n):
    """1234567 -> '1.23M': parameter and token counts at a glance."""
    if n is None:
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def format_loss(stat):
    """'1.2345 ± 0.0123' from a mean_std dict (no ± for a single seed)."""
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["std"] is not None else "")


def markdown_table(summary):
    """The summary as a Markdown table, one row per arm, with notes underneath."""
    base = summary["baseline"]
    header = [
        "arm",
        "seeds",
        "params",
        "final val loss",
        "best val loss",
        "tokens/s",
        f"Δ final val vs {base} [95% CI]",
        "p (paired t)",
        f"tokens to {base}'s final loss",
    ]
    rows, notes = [], []
    for arm in summary["arms"]:
        paired = arm["vs_baseline"]
        if paired is None:
            diff, p = "(baseline)", "—"
        elif paired["ci95"] is None:
            diff, p = (f"{paired['diff_mean']:+.4f}" if paired["n_pairs"] else "—"), "—"
        else:
            lo, hi = paired["ci95"]
            diff = f"{paired['diff_mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            p = f"{paired['p_value']:.3g}"
        if paired and paired["note"]:
            notes.append(f"{arm['arm']}: {paired['note']}")
        reach = arm["reach_baseline_final"]
        reached = "never" if reach["tokens"] is None else f"{human_count(reach['tokens'])} ({reach['fraction']:.0%})"
        tokens_per_s = "?" if arm["tokens_per_s"] is None else human_count(arm["tokens_per_s"])
        rows.append(
            [
                arm["arm"],
                str(arm["n_seeds"]),
                f"{arm['params_total']:,}",
                format_loss(arm["final_val_loss"]),
                format_loss(arm["best_val_loss"]),
                tokens_per_s,
                diff,
                p,
                reached,
            ]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [f"- {note}" for note in notes]
    lines += [f"- incomplete, left out: {run}" for run in summary.get("incomplete_runs", [])]
    return "\n".join(lines) + "\n"


def describe_setup(summary):
    """One line naming the data and the model, for the figure title and the Markdown header."""
    data, model = summary["data"], summary["model"]
    return (
        f"data: {data.get('source', '?')} ({data.get('tokenizer', '?')}, "
        f"{human_count(data.get('train_tokens'))} train tokens) · model: "
        f"n_layer={model['n_layer']}, n_head={model['n_head']}, n_embd={model['n_embd']}, "
        f"block_size={model['block_size']} · {human_count(summary['tokens_per_iter'])} tokens/step "
        f"× {summary['max_iters']} steps"
    )


def plot_curves(arm_runs, summary, path):
    """2x2 figure: val and train loss against tokens and against wall time; mean and min-max band."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in tests
    import matplotlib.pyplot as plt

    panels = [
        ("eval", "tokens", "val_loss", "validation loss", "tokens"),
        ("train", "tokens", "loss", "training loss", "tokens"),
        ("eval", "time", "val_loss", "validation loss", "wall time (s)"),
        ("train", "time", "loss", "training loss", "wall time (s)"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (kind, x_key, y_key, y_label, x_label) in zip(axes.flat, panels, strict=True):
        for color, (arm, runs) in enumerate(arm_runs.items()):
            if not all(run.train if kind == "train" else run.evals for run in runs):
                continue
            x, mean, low, high = arm_curve(runs, kind, x_key, y_key)
            ax.plot(x, mean, color=f"C{color}", label=f"{arm} (n={len(runs)})")
            ax.fill_between(x, low, high, color=f"C{color}", alpha=0.25, linewidth=0)
        ax.set(xlabel=x_label, ylabel=y_label, title=f"{y_label} vs {x_label} (mean, min–max band)")
        ax.grid(alpha=0.3)
        ax.legend()
    params = ", ".join(f"{arm['arm']} {arm['params_total']:,}" for arm in summary["arms"])
    fig.suptitle(f"{describe_setup(summary)}\nparameters: {params}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_to_wandb(summary, figure_path, runs):
    """Log the table and the figure to a wandb run grouped with the training runs."""
    import wandb

    config = runs[0].config
    run = wandb.init(
        project=config.get("wandb_project"),
        group=config.get("wandb_group") or None,
        mode=resolve_wandb_mode(""),
        job_type="compare",
        name=f"compare-{'-vs-'.join(a['arm'] for a in summary['arms'])}",
        config={"baseline": summary["baseline"], "data": summary["data"], "model": summary["model"], "max_iters": summary["max_iters"]},
    )
    columns = [
        "arm",
        "n_seeds",
        "params_total",
        "final_val_loss_mean",
        "final_val_loss_std",
        "diff_vs_baseline",
        "ci95_low",
        "ci95_high",
        "p_value",
        "tokens_to_baseline_final",
    ]
    table = wandb.Table(columns=columns)
    for arm in summary["arms"]:
        paired = arm["vs_baseline"] or {}
        ci = paired.get("ci95") or [None, None]
        table.add_data(
            arm["arm"],
            arm["n_seeds"],
            arm["params_total"],
            arm["final_val_loss"]["mean"],
            arm["final_val_loss"]["std"],
            paired.get("diff_mean"),
            ci[0],
            ci[1],
            paired.get("p_value"),
            arm["reach_baseline_final"]["tokens"],
        )
    run.log({"summary": table, "loss_curves": wandb.Image(str(figure_path))})
    run.finish()


def report(runs, out_dir, baseline, allow_mismatch=False, use_wandb=False):
    """Check, summarize and write the report for runs; return the summary dict."""
    mismatch = check_comparable(runs)
    if mismatch and not allow_mismatch:
        raise ReportError(mismatch)
    assign_arm_labels(runs)
    complete = [run for run in runs if run.complete]
    incomplete = [f"{run.dir} (iter {run.last_iter} of {run.config['max_iters']})" for run in runs if not run.complete]
    if not complete:
        raise ReportError("no complete runs to report on; incomplete: " + "; ".join(incomplete))
    summary = summarize(complete, baseline)
    summary["incomplete_runs"] = incomplete
    summary["mismatch"] = mismatch

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot create the report folder {out_dir} ({error.strerror})") from None
    arm_runs = {}
    for run in complete:
        arm_runs.setdefault(run.arm, []).append(run)
    figure_path = out_dir / "loss_curves.png"
    plot_curves(arm_runs, summary, figure_path)
    table = markdown_table(summary)
    (out_dir / "summary.md").write_text(f"{describe_setup(summary)}\n\n{table}")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(describe_setup(summary))
    print(table, end="")
    print(f"wrote {figure_path}, {out_dir / 'summary.md'}, {out_dir / 'summary.json'}")
    if use_wandb:
        log_to_wandb(summary, figure_path, complete)
    return summary
