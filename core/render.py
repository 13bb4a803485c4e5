"""What a report looks like: Markdown tables, matplotlib figures and wandb tables, of a comparison
(summary.md, the task's curves) and of a sweep (sweep.md, sweep.png).

Nothing here computes a statistic: every number comes from core/stats.py's summaries, and this
module only formats and draws them. matplotlib and wandb are imported where they are used, so a
command that never draws (-h, a refused option) does not wait for them.
"""

import numpy as np

from core.metrics import resolve_wandb_mode
from core.runs import human_count
from core.stats import arm_curve, arm_summary

# -----------------------------------------------------------------------------
# Cells


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


def format_power(paired):
    """The two power cells: detectable difference at these seeds, seeds the measured difference needs."""
    detectable = ((paired or {}).get("power") or {}).get("detectable_diff")
    return ["—" if detectable is None else f"±{detectable:.4f}", format_seeds_needed(paired or {})]


def describe_power(paired):
    """One sentence on what this many seeds can separate, from a paired test's power estimate."""
    power = paired["power"]
    needed = format_seeds_needed(paired)
    return (
        f"power: at the measured spread (std of the differences {paired['diff_std']:.4f}), {paired['n_pairs']} seeds detect a "
        f"difference of ±{power['detectable_diff']:.4f} with {power['power']:.0%} power (two-sided, α = {power['alpha']}); "
        + ("the measured difference is zero" if needed == "—" else f"the measured {paired['diff_mean']:+.4f} needs {needed} seeds")
    )


def table_lines(header, rows):
    """A Markdown table's lines: the header, its rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# -----------------------------------------------------------------------------
# A comparison: summary.md and the curves


def describe_setup(summary, task):
    """One line naming the data and the model, for the figure title and the Markdown header."""
    model = ", ".join(f"{key}={value}" for key, value in summary["model"].items() if value is not None)
    return (
        f"data: {task.describe_data(summary['data'])} · model: {model or '?'} · "
        f"{human_count(summary[f'{task.unit}_per_iter'])} {task.unit}/step × {summary['max_iters']} steps"
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
    lines = table_lines(header, rows)
    lines += [f"- {note}" for note in notes]
    lines += [f"- left out: {run}" for run in summary.get("incomplete_runs", [])]
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib.pyplot drawing to files only: no display on servers or in tests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(plt, fig, out):
    """Save the figure as PNG to `out`, a path or a binary file, and free it whatever happens."""
    try:
        fig.tight_layout()
        fig.savefig(out, dpi=110, format="png")
    finally:
        plt.close(fig)


def plot_curves(arm_runs, summary, out, task):
    """The task's panels, two a row, as a PNG in `out` (a path or a binary file): each arm's mean curve, min–max band over seeds."""
    plt = pyplot()
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
    save_png(plt, fig, out)


def plot_diagnostics(runs, keys, out):
    """Each of `keys` (fields of the runs' diag records) against iteration, a panel each, a line per run, as a PNG in `out`.

    A quantity that spans more than 20x and stays positive (an RMS, a logit) is drawn on a log axis.
    """
    plt = pyplot()
    columns = min(len(keys), 3)
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):  # a last row may have empty panels
        values = []
        for color, run in enumerate(runs):
            iters = [d["iter"] for d in run.diags if d.get(key) is not None]
            ys = [d[key] for d in run.diags if d.get(key) is not None]
            if ys:
                ax.plot(iters, ys, color=f"C{color}", label=run.dir.name)
                values += ys
        if values and min(values) > 0 and max(values) > 20 * min(values):
            ax.set_yscale("log")
        ax.set(xlabel="iteration", title=key)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    save_png(plt, fig, out)


# -----------------------------------------------------------------------------
# A sweep: sweep.md and sweep.png


def sweep_title(result, points, task):
    """The data, the budget (where it is the same at every point) and the swept keys, in one line."""
    budgets = {(point.summary[f"{task.unit}_per_iter"], point.summary["max_iters"]) for point in points}
    per_step, steps = next(iter(budgets))
    budget = f"{human_count(per_step)} {task.unit}/step × {steps} steps" if len(budgets) == 1 else "the budget varies"
    return f"data: {task.describe_data(result['data'])} · {budget} · sweep of {'/'.join(result['keys'])}"


def sweep_markdown(result, task):
    """sweep.md: one row per point, then each arm at its own best point where the model stays the same."""
    metric = task.comparisons[0]
    base = result["baseline"]
    others = [arm for arm in result["arms"] if arm != base]
    header = ["point", "non-embedding params", *(f"{arm} {metric.key.replace('_', ' ')}" for arm in result["arms"])]
    for arm in others:
        header += [f"Δ {arm} − {base} [95% CI]", "p", "detectable Δ (80% power)", "seeds for measured Δ"]
    rows = []
    for point in result["points"]:
        arms = {entry["arm"]: entry for entry in point["arms"]}
        row = [point["label"], human_count(arms[base]["params_non_embedding"])]
        for arm in result["arms"]:
            row.append(f"{format_mean_std(arms[arm][metric.key])} (n={arms[arm]['n_seeds']})")
        for arm in others:
            paired = arms[arm][metric.summary_key]
            row += format_paired(paired) + format_power(paired)
        rows.append(row)
    lines = table_lines(header, rows)
    lines.append("")
    lines.append(
        "Δ: paired by seed; the 95% CI and p from a paired t-test over the seeds both arms ran. Detectable Δ: the smallest "
        "difference these seeds detect with 80% power (two-sided, α = 0.05) at the measured spread; seeds for measured Δ: "
        "how many seeds would detect the measured difference with 80% power. Both rest on a spread measured on few seeds."
    )
    for arm, best in result.get("own_best", {}).items():
        lines += ["", f"**Each arm at its own best point ({arm} vs {base})**", *own_best_lines(arm, base, best, metric, task)]
    if result["incomplete_runs"]:
        lines += ["", "**Left out**"]
        lines += [f"- {run}" for run in result["incomplete_runs"]]
    return "\n".join(lines) + "\n"


def own_best_lines(arm, base, best, metric, task):
    """sweep.md's list on `arm` and the baseline each at its own best point: how chosen, in-sample, cross-fitted."""
    if best["note"]:
        return [f"- {best['note']}"]
    chosen = "lower" if not task.higher_is_better else "higher"
    in_diff, in_p = format_paired(best["in_sample"])
    (diff, p), (detectable, needed) = format_paired(best["cross_fitted"]), format_power(best["cross_fitted"])
    choices = "; ".join(f"seed {c['seed']}: {arm} {c[arm]}, {base} {c[base]}" for c in best["cross_fitted_choices"])
    return [
        f"- How the best point is chosen: the {chosen} mean {metric.key.replace('_', ' ')} over seeds "
        f"{', '.join(map(str, best['seeds']))} (those both arms ran at every point), for each arm on its own.",
        f"- In-sample (chosen and scored on the same seeds, so optimistic for both arms): {arm} at "
        f"{best['best_in_sample'][arm]}, {base} at {best['best_in_sample'][base]}: Δ {in_diff}, p {in_p}",
        f"- Cross-fitted (the choice never sees the seed it is scored on): for each seed, each arm's best point is chosen "
        f"on the other seeds and that seed's difference is taken there: Δ {diff}, p {p}; detectable Δ {detectable}, "
        f"seeds for measured Δ {needed}. The t-interval treats the per-seed differences as independent, which their "
        "shared choices make approximate.",
        f"- Choices made without each seed: {choices}.",
    ]


def plot_sweep(points, axis, result, task, out, title):
    """As a PNG in `out` (a path or a binary file), left: each arm's difference from the baseline with its 95% CI;
    right: each arm's mean final value ± std.

    Where the report compares each arm at its own best point, a star marks that point (in-sample)
    and the left panel states the cross-fitted difference.
    """
    plt = pyplot()
    metric, baseline = task.comparisons[0], result["baseline"]
    best_points, notes = {}, []
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
        if arm != baseline:
            plot_differences(left, x, [s[metric.summary_key] for s in stats], f"C{color}", f"{arm} − {baseline} (95% CI)")
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
    save_png(plt, fig, out)


def plot_differences(ax, x, tests, color, label):
    """One arm's paired differences from the baseline along the sweep, each with its 95% CI."""
    diffs = np.array([np.nan if t["diff_mean"] is None else t["diff_mean"] for t in tests])
    lows = np.array([t["ci95"][0] if t["ci95"] else np.nan for t in tests])
    highs = np.array([t["ci95"][1] if t["ci95"] else np.nan for t in tests])
    # no bar where there is no interval (one seed)
    ax.errorbar(x, diffs, yerr=np.nan_to_num([diffs - lows, highs - diffs]), color=color, marker="o", capsize=4, label=label)


# -----------------------------------------------------------------------------
# wandb


def log_wandb_report(run_config, job_type, name, config, table, figure):
    """Log a report's table and figure to a new wandb run in the project and group of the runs it reports on.

    run_config: one reported run's config; table: (key, columns, rows); figure: (key, path).
    """
    import wandb

    run = wandb.init(
        project=run_config.get("wandb_project"),
        group=run_config.get("wandb_group") or None,
        mode=resolve_wandb_mode(""),
        job_type=job_type,
        name=name,
        config=config,
    )
    table_key, columns, rows = table
    wandb_table = wandb.Table(columns=columns)
    for row in rows:
        wandb_table.add_data(*row)
    figure_key, figure_path = figure
    run.log({table_key: wandb_table, figure_key: wandb.Image(str(figure_path))})
    run.finish()


def paired_cells(paired):
    """A paired test's wandb columns: difference, CI low, CI high, p (None for the baseline's own)."""
    paired = paired or {}
    ci = paired.get("ci95") or [None, None]
    return [paired.get("diff_mean"), ci[0], ci[1], paired.get("p_value")]


def log_to_wandb(summary, figure_path, run_config, task):
    """A comparison's table (a row per arm) and figure."""
    columns = ["arm", "n_seeds", "params_total"]
    for c in task.comparisons:
        columns += [f"{c.key}_mean", f"{c.key}_std"]
        columns += [c.wandb_prefix + name for name in ("diff_vs_baseline", "ci95_low", "ci95_high", "p_value")]
    columns.append(f"{task.unit}_to_baseline_final")
    rows = []
    for arm in summary["arms"]:
        row = [arm["arm"], arm["n_seeds"], arm["params_total"]]
        for c in task.comparisons:
            row += [arm[c.key]["mean"], arm[c.key]["std"], *paired_cells(arm[c.summary_key])]
        rows.append([*row, arm["reach_baseline_final"][task.unit]])
    name = f"compare-{'-vs-'.join(a['arm'] for a in summary['arms'])}"
    config = {key: summary[key] for key in ("baseline", "data", "model", "max_iters")}
    log_wandb_report(run_config, "compare", name, config, ("summary", columns, rows), (figure_path.stem, figure_path))


def log_sweep_to_wandb(result, figure_path, run_config, task):
    """A sweep's table (a row per point and arm) and figure."""
    metric = task.comparisons[0]
    columns = ["point", "x", "arm", "n_seeds", "params_non_embedding", f"{metric.key}_mean", f"{metric.key}_std"]
    columns += ["diff_vs_baseline", "ci95_low", "ci95_high", "p_value"]
    rows = [
        [point["label"], point["x"], arm["arm"], arm["n_seeds"], arm["params_non_embedding"]]
        + [arm[metric.key]["mean"], arm[metric.key]["std"], *paired_cells(arm[metric.summary_key])]
        for point in result["points"]
        for arm in point["arms"]
    ]
    config = {"baseline": result["baseline"], "keys": result["keys"], "data": result["data"]}
    name = f"sweep-{'-'.join(result['keys'])}"
    log_wandb_report(run_config, "sweep-report", name, config, ("sweep", columns, rows), ("sweep_figure", figure_path))
