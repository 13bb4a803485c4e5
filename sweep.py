"""Sweeps: the paired comparison of compare.py at several values of a setting, and their report.

A sweep names one key, or several keys varied together, and the values they take:

    --sweep=learning_rate=1e-3,2e-3,4e-3          one key, three points
    --sweep=n_layer/n_head/n_embd=2/2/48,4/4/144   three keys together (a shape), two points

compare.py runs every (config, seed) at every point, each point in its own folder named like
"n_layer=2,n_head=2,n_embd=48" (Hydra's multirun habit), and this module reports the result:

- at each point, each arm's mean final value and the paired difference from the baseline with
  its 95% CI and p-value (report.py's paired t-test on the seeds both arms ran), plus a power
  estimate: the smallest difference those seeds detect 80% of the time, and how many seeds the
  measured difference would need;
- sweep.png: the difference with its CI, and each arm's final value, against the swept value,
  or against non-embedding parameters (log axis) where the swept keys change the model's size;
- where the model is the same at every point (a learning-rate sweep, say), each arm at its own
  best point. Choosing the best point and testing the difference on the same seeds would flatter
  whichever arm's noise happened to help it, so the CI is cross-fitted: for each seed, each arm's
  best point is chosen on the other seeds alone, and the differences at those choices, one per
  seed, enter the t-test. The in-sample choice (all seeds) is reported too, marked as such.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.metrics import METRICS_NAME
from report import (
    ReportError,
    assign_arm_labels,
    check_comparable,
    common_task,
    format_mean_std,
    format_paired,
    format_seeds_needed,
    human_count,
    make_report_dir,
    paired_t_test,
    start_report_run,
    summarize,
    write_tables,
)


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


def parse_point_label(label):
    """'n_layer=2,n_embd=48' -> {'n_layer': '2', 'n_embd': '48'}; None if the name is not a point's."""
    pairs = [part.partition("=") for part in label.split(",")]
    if not all(key and sep and value for key, sep, value in pairs):
        return None
    return {key: value for key, _, value in pairs}


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


# -----------------------------------------------------------------------------
# Statistics of a sweep


@dataclass
class Point:
    """One point of a sweep: its swept values and the report.summarize() of its complete runs."""

    label: str
    values: dict  # swept key -> the value the runs' config records hold
    summary: dict
    finals: dict  # arm -> {seed: final value of the compared metric}


def read_point(label, runs, arms, allow_mismatch, baseline):
    """A Point from one point's runs, or None while some arm of the sweep (`arms`) has no complete run
    there yet; and the descriptions of the runs left out."""
    task = common_task(runs)
    mismatch = check_comparable(runs, task)
    if mismatch and not allow_mismatch:
        raise ReportError(f"at {label}: {mismatch}")
    complete = sorted((run for run in runs if run.complete), key=lambda run: str(run.dir))  # the same report however found
    incomplete = [f"{run.dir} (iter {run.last_iter} of {run.config['max_iters']})" for run in runs if not run.complete]
    waiting = sorted(set(arms) - {run.arm for run in complete})
    if waiting:  # a sweep still running: this point cannot be compared yet
        return None, incomplete + [f"{run.dir} (complete, waiting for a complete {waiting[0]} run at {label})" for run in complete]
    keys = parse_point_label(label) or {}
    values = {key: complete[0].config.get(key, text) for key, text in keys.items()}
    key = task.comparisons[0].key
    finals = {}
    for run in complete:
        finals.setdefault(run.arm, {})[run.seed] = run.end[key]
    return Point(label, values, summarize(complete, baseline, task), finals), incomplete


@dataclass
class Axis:
    """The x axis of a sweep's figure: a value per point, its label and scale."""

    label: str
    x: list
    log: bool
    ticks: list | None = None  # tick labels of a categorical axis


def sweep_axis(points, baseline):
    """Non-embedding parameters where the model's size changes, else the first swept key's value.

    A numeric key whose values span 4x or more (learning rates, usually swept in factors of 2 or
    3) gets a log axis; a key that is not a number is drawn at equal spacing with the values as
    tick labels.
    """
    params = [arm_summary(point, baseline)["params_non_embedding"] for point in points]
    if None not in params and len(set(params)) > 1:
        return Axis(f"non-embedding parameters ({baseline})", [float(p) for p in params], log=True)
    key = next(iter(points[0].values), None)
    values = [point.values.get(key) for point in points]
    if key and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        log = min(values) > 0 and max(values) >= 4 * min(values)
        return Axis(key, [float(v) for v in values], log=log)
    return Axis(key or "point", list(range(len(points))), log=False, ticks=[point.label for point in points])


def model_and_budget(point, arm, unit):
    """(non-embedding parameters, `unit`s per step, steps) of the arm at a point: what a tuning sweep keeps fixed."""
    return arm_summary(point, arm)["params_non_embedding"], point.summary[f"{unit}_per_iter"], point.summary["max_iters"]


def arm_summary(point, arm):
    """The arm's entry of a point's summary."""
    return next(entry for entry in point.summary["arms"] if entry["arm"] == arm)


def own_best(points, arm, baseline, higher_is_better):
    """Each arm at its own best point, in-sample and cross-fitted by seed (see the module docstring).

    Only seeds that both arms ran at every point take part.
    """
    seeds = sorted(set.intersection(*(set(point.finals.get(name, {})) for point in points for name in (arm, baseline))))
    if len(seeds) < 2:
        return {"note": f"{len(seeds)} seed(s) ran at every point for both arms: need at least 2 to choose on some and test on another"}
    pick = max if higher_is_better else min

    def best(name, chosen_on):
        return pick(range(len(points)), key=lambda i: np.mean([points[i].finals[name][s] for s in chosen_on]))

    arm_best, base_best = best(arm, seeds), best(baseline, seeds)
    in_sample = paired_t_test([points[arm_best].finals[arm][s] for s in seeds], [points[base_best].finals[baseline][s] for s in seeds])
    arm_values, base_values, choices = [], [], []
    for seed in seeds:
        others = [s for s in seeds if s != seed]
        a, b = best(arm, others), best(baseline, others)
        arm_values.append(points[a].finals[arm][seed])
        base_values.append(points[b].finals[baseline][seed])
        choices.append({"seed": seed, arm: points[a].label, baseline: points[b].label})
    cross_fitted = paired_t_test(arm_values, base_values)
    return {
        "seeds": seeds,
        "best_in_sample": {arm: points[arm_best].label, baseline: points[base_best].label},
        "in_sample": in_sample,
        "cross_fitted": cross_fitted,
        "cross_fitted_choices": choices,
        "note": None,
    }


# -----------------------------------------------------------------------------
# The report: sweep.png, sweep.md, sweep.json


def plot_sweep(points, axis, result, task, path, title):
    """Left: each arm's difference from the baseline with its 95% CI; right: each arm's mean final value ± std.

    Where the report compares each arm at its own best point, a star marks that point (in-sample)
    and the left panel states the cross-fitted difference.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers or in tests
    import matplotlib.pyplot as plt

    metric, baseline = task.comparisons[0], result["baseline"]
    best_points = {}
    notes = []
    for arm, best in result.get("own_best", {}).items():
        if not best["note"]:
            best_points.update(best["best_in_sample"])
            notes.append(f"each arm at its own best point, {arm} − {baseline}: {format_paired(best['cross_fitted'])[0]} (cross-fitted)")
    labels = [point.label for point in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    x = np.array(axis.x)
    for color, arm in enumerate(result["arms"]):
        stats = [arm_summary(point, arm) for point in points]
        means = np.array([s[metric.key]["mean"] for s in stats])
        stds = np.array([s[metric.key]["std"] or 0.0 for s in stats])
        right.errorbar(x, means, yerr=stds, color=f"C{color}", marker="o", capsize=3, label=f"{arm} (mean ± std over seeds)")
        if arm in best_points:
            i = labels.index(best_points[arm])
            right.plot([x[i]], [means[i]], marker="*", markersize=16, color=f"C{color}", linestyle="none", label=f"{arm}: best (in-sample)")
        if arm == baseline:
            continue
        tests = [s[metric.summary_key] for s in stats]
        diffs = np.array([np.nan if t["diff_mean"] is None else t["diff_mean"] for t in tests])
        lows = np.array([t["ci95"][0] if t["ci95"] else np.nan for t in tests])
        highs = np.array([t["ci95"][1] if t["ci95"] else np.nan for t in tests])
        left.errorbar(
            x,
            diffs,
            yerr=np.nan_to_num([diffs - lows, highs - diffs]),  # no bar where there is no interval (one seed)
            color=f"C{color}",
            marker="o",
            capsize=4,
            label=f"{arm} − {baseline} (95% CI)",
        )
    left.axhline(0.0, color="gray", linestyle="--", linewidth=1)
    left.set(
        ylabel=f"Δ {metric.label} ({'higher' if task.higher_is_better else 'lower'} is better)", title=f"paired difference vs {baseline}"
    )
    right.set(ylabel=metric.key.replace("_", " "), title="each arm")
    if notes:
        left.text(0.02, 0.02, "\n".join(notes), transform=left.transAxes, fontsize=8, va="bottom")
    for ax in (left, right):
        ax.set_xlabel(axis.label)
        if axis.log:
            ax.set_xscale("log")
        if axis.ticks:
            ax.set_xticks(axis.x, axis.ticks, rotation=20, fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_power(paired):
    """The two power cells: detectable difference at these seeds, seeds the measured difference needs."""
    detectable = ((paired or {}).get("power") or {}).get("detectable_diff")
    return ["—" if detectable is None else f"±{detectable:.4f}", format_seeds_needed(paired or {})]


def sweep_markdown(result, task):
    """sweep.md: one row per point, then each arm at its own best point where the model stays the same."""
    metric = task.comparisons[0]
    base = result["baseline"]
    others = [arm for arm in result["arms"] if arm != base]
    header = ["point", "non-embedding params", *(f"{arm} {metric.key.replace('_', ' ')}" for arm in result["arms"])]
    for arm in others:
        header += [f"Δ {arm} − {base} [95% CI]", "p", "detectable Δ (80% power)", "seeds for measured Δ"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in result["points"]:
        arms = {entry["arm"]: entry for entry in point["arms"]}
        row = [point["label"], human_count(arms[base]["params_non_embedding"])]
        for arm in result["arms"]:
            row.append(f"{format_mean_std(arms[arm][metric.key])} (n={arms[arm]['n_seeds']})")
        for arm in others:
            paired = arms[arm][metric.summary_key]
            row += format_paired(paired) + format_power(paired)
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "Δ: paired by seed; the 95% CI and p from a paired t-test over the seeds both arms ran. Detectable Δ: the smallest "
        "difference these seeds detect with 80% power (two-sided, α = 0.05) at the measured spread; seeds for measured Δ: "
        "how many seeds would detect the measured difference with 80% power. Both rest on a spread measured on few seeds."
    )
    for arm, best in result.get("own_best", {}).items():
        lines.append("")
        lines.append(f"**Each arm at its own best point ({arm} vs {base})**")
        if best["note"]:
            lines.append(f"- {best['note']}")
            continue
        chosen = "lower" if not task.higher_is_better else "higher"
        lines.append(
            f"- How the best point is chosen: the {chosen} mean {metric.key.replace('_', ' ')} over seeds "
            f"{', '.join(map(str, best['seeds']))} (those both arms ran at every point), for each arm on its own."
        )
        diff, p = format_paired(best["in_sample"])
        lines.append(
            f"- In-sample (chosen and scored on the same seeds, so optimistic for both arms): {arm} at "
            f"{best['best_in_sample'][arm]}, {base} at {best['best_in_sample'][base]}: Δ {diff}, p {p}"
        )
        (diff, p), (detectable, needed) = format_paired(best["cross_fitted"]), format_power(best["cross_fitted"])
        lines.append(
            f"- Cross-fitted (the choice never sees the seed it is scored on): for each seed, each arm's best point is chosen "
            f"on the other seeds and that seed's difference is taken there: Δ {diff}, p {p}; detectable Δ {detectable}, "
            f"seeds for measured Δ {needed}. The t-interval treats the per-seed differences as independent, which their "
            "shared choices make approximate."
        )
        choices = "; ".join(f"seed {c['seed']}: {arm} {c[arm]}, {base} {c[base]}" for c in best["cross_fitted_choices"])
        lines.append(f"- Choices made without each seed: {choices}.")
    if result["incomplete_runs"]:
        lines += ["", "**Left out**"]
        lines += [f"- {run}" for run in result["incomplete_runs"]]
    return "\n".join(lines) + "\n"


def read_sweep(runs_by_point, baseline, allow_mismatch):
    """(task, points in axis order, axis, incomplete runs) of a sweep given as {point label: its runs}."""
    all_runs = [run for runs in runs_by_point.values() for run in runs]
    if not all_runs:
        raise ReportError("the sweep has no runs")
    task = common_task(all_runs)
    key_sets = {tuple(parse_point_label(label) or ()) for label in runs_by_point}
    if len(key_sets) > 1:
        raise ReportError(
            f"the folder mixes sweeps of different keys ({'; '.join('/'.join(keys) for keys in sorted(key_sets))}): report each on its own"
        )
    for runs in runs_by_point.values():
        assign_arm_labels(runs)
    arms = sorted({run.arm for run in all_runs})
    if baseline not in arms:
        raise ReportError(
            f"baseline arm {baseline!r} has no runs in the sweep; arms present: {', '.join(arms)} (choose one with --baseline)"
        )
    points, incomplete = [], []
    for label, runs in runs_by_point.items():
        point, left_out = read_point(label, runs, arms, allow_mismatch, baseline)
        incomplete += left_out
        if point is not None:
            points.append(point)
    if not points:
        raise ReportError("no point of the sweep has complete runs of every arm yet; left out: " + "; ".join(incomplete))
    axis = sweep_axis(points, baseline)
    order = sorted(range(len(points)), key=lambda i: axis.x[i])
    points = [points[i] for i in order]
    axis.x = [axis.x[i] for i in order]
    if axis.ticks:
        axis.x, axis.ticks = list(range(len(points))), [point.label for point in points]
    return task, points, axis, incomplete


def report_sweep(runs_by_point, out_dir, baseline, allow_mismatch=False, use_wandb=False):
    """Report a sweep, {point label: its runs}: write sweep.png, sweep.md and sweep.json; return the result."""
    task, points, axis, incomplete = read_sweep(runs_by_point, baseline, allow_mismatch)
    arms = sorted((entry["arm"] for entry in points[0].summary["arms"]), key=lambda arm: arm == baseline)  # the baseline last
    first = points[0].summary
    result = {
        "keys": list(parse_point_label(points[0].label) or {}),
        "baseline": baseline,
        "metric": task.comparisons[0].key,
        "arms": arms,
        "axis": {"label": axis.label, "log": axis.log},
        "data": first["data"],
        "points": [
            {"label": p.label, "values": p.values, "x": x, **p.summary, "finals_by_seed": p.finals}
            for p, x in zip(points, axis.x, strict=True)
        ],
        "incomplete_runs": incomplete,
    }
    if (
        len(points) > 1 and len({model_and_budget(p, baseline, task.unit) for p in points}) == 1
    ):  # a tuning sweep: "its own best" is a question
        result["own_best"] = {arm: own_best(points, arm, baseline, task.higher_is_better) for arm in arms if arm != baseline}

    out_dir = make_report_dir(out_dir)
    budgets = {model_and_budget(p, baseline, task.unit)[1:] for p in points}
    per_step, steps = next(iter(budgets))
    budget = f"{human_count(per_step)} {task.unit}/step × {steps} steps" if len(budgets) == 1 else "the budget varies"
    title = f"data: {task.describe_data(first['data'])} · {budget} · sweep of {'/'.join(result['keys'])}"
    figure = out_dir / "sweep.png"
    plot_sweep(points, axis, result, task, figure, title)
    write_tables(out_dir, "sweep", title, sweep_markdown(result, task), result, figure)
    if use_wandb:
        log_sweep_to_wandb(result, figure, next(iter(runs_by_point.values()))[0].config, task)  # project and group: the runs'
    return result


def log_sweep_to_wandb(result, figure_path, config, task):
    """Log the sweep's table (a row per point and arm) and figure to a wandb run in the runs' group."""
    import wandb

    metric = task.comparisons[0]
    run_config = {"baseline": result["baseline"], "keys": result["keys"], "data": result["data"]}
    run = start_report_run(config, "sweep-report", f"sweep-{'-'.join(result['keys'])}", run_config)
    columns = ["point", "x", "arm", "n_seeds", "params_non_embedding", f"{metric.key}_mean", f"{metric.key}_std"]
    columns += ["diff_vs_baseline", "ci95_low", "ci95_high", "p_value"]
    table = wandb.Table(columns=columns)
    for point in result["points"]:
        for arm in point["arms"]:
            paired = arm[metric.summary_key] or {}
            ci = paired.get("ci95") or [None, None]
            stat = arm[metric.key]
            table.add_data(
                point["label"],
                point["x"],
                arm["arm"],
                arm["n_seeds"],
                arm["params_non_embedding"],
                stat["mean"],
                stat["std"],
                paired.get("diff_mean"),
                ci[0],
                ci[1],
                paired.get("p_value"),
            )
    run.log({"sweep": table, "sweep_figure": wandb.Image(str(figure_path))})
    run.finish()
