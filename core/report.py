"""The reporter compare.py calls: from loaded runs to a report on disk, for a comparison and for a sweep.

Both start the same way (check_runs): the runs must be of one task and comparable (unless
allow_mismatch), and only complete runs whose numbers are all finite are reported; the others
are named as left out. A comparison (report) writes the task's figure of curves, summary.md and
summary.json; a sweep (report_sweep), a comparison at each point, writes sweep.png, sweep.md and
sweep.json; a grid (report_grid) writes a sweep's report for each point of its later groups, in
its own folder, and grid.md and grid.json beside them. With use_wandb either also logs its table and figure to a wandb run in the runs'
group. Each returns what its JSON file holds.

Writing (write_report) holds the report folder against a second report (core/lock.py) and writes
each file whole or not at all (core/atomic.py): a full disk leaves the previous files, never an
empty figure. JSON is strict: a statistic that is undefined or infinite is null, never NaN.
core/stats.py explains the statistics.
"""

import io
import json
from pathlib import Path

from core.atomic import write_whole
from core.lock import exclusive_folder
from core.metrics import finite_or_null
from core.render import (
    describe_setup,
    log_sweep_to_wandb,
    log_to_wandb,
    markdown_table,
    plot_curves,
    plot_sweep,
    sweep_markdown,
    sweep_title,
)
from core.runs import ReportError, assign_arm_labels, check_comparable, common_task, parse_point_label, point_label
from core.stats import Point, along_axis, group_by_arm, is_tuning_sweep, own_best, summarize


def check_runs(runs, allow_mismatch, where=""):
    """(task, mismatch, complete runs with finite numbers, the others described): what every report starts from.

    ReportError if the runs are of different tasks, or differ in what makes them comparable
    without allow_mismatch (`where` says which point of a sweep); else mismatch is that
    difference in one line, or None.
    """
    task = common_task(runs)
    mismatch = check_comparable(runs, task)
    if mismatch and not allow_mismatch:
        raise ReportError(f"{where}{mismatch}")
    usable = [run for run in runs if run.usable]
    left_out = [run.describe_left_out() for run in runs if not run.usable]
    return task, mismatch, usable, left_out


def make_report_dir(out_dir):
    """The report folder as a Path, made if need be; ReportError if it cannot be."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot create the report folder {out_dir} ({error.strerror})") from None
    return out_dir


def png_bytes(draw):
    """The PNG that draw(file) saves, in memory: drawing fails before the disk is touched, and the file is written whole."""
    buffer = io.BytesIO()
    draw(buffer)
    return buffer.getvalue()


def write_report(out_dir, figure, stem, header, table, result):
    """The figure (file name, PNG bytes), <stem>.md (a header line, then the Markdown table) and <stem>.json in out_dir.

    The caller holds out_dir. Each file is written whole or left as it was; then the table goes on screen too.
    """
    figure_name, png = figure
    files = {
        figure_name: png,
        f"{stem}.md": f"{header}\n\n{table}".encode(),
        # strict JSON: null where a number is undefined or infinite (t of equal differences), never NaN
        f"{stem}.json": (json.dumps(result, indent=2, allow_nan=False) + "\n").encode(),
    }
    for name, content in files.items():
        write_whole(out_dir / name, content)
    print(header)
    print(table, end="")
    print("wrote " + ", ".join(str(out_dir / name) for name in files))


# -----------------------------------------------------------------------------
# A comparison


def report(runs, out_dir, baseline, allow_mismatch=False, use_wandb=False):
    """Check, summarize and write the report for runs (all of one task); return the summary dict."""
    task, mismatch, complete, left_out = check_runs(runs, allow_mismatch)
    assign_arm_labels(runs)
    if not complete:
        raise ReportError("no complete runs to report on; left out: " + "; ".join(left_out))
    summary = summarize(complete, baseline, task)
    summary["incomplete_runs"] = left_out
    summary["mismatch"] = mismatch
    png = png_bytes(lambda out: plot_curves(group_by_arm(complete), summary, out, task))
    clean = finite_or_null(summary)  # strict JSON: null where a number is undefined or infinite, never NaN

    out_dir = make_report_dir(out_dir)
    with exclusive_folder(out_dir, "--out"):
        write_report(out_dir, (task.figure, png), "summary", describe_setup(summary, task), markdown_table(summary, task), clean)
        if use_wandb:
            log_to_wandb(summary, out_dir / task.figure, complete[0].config, task)
    return clean


# -----------------------------------------------------------------------------
# A sweep


def read_point(label, runs, arms, allow_mismatch, baseline):
    """A Point from one point's runs, or None while some arm of the sweep (`arms`) has no complete run
    there yet; and the descriptions of the runs left out."""
    task, _, complete, incomplete = check_runs(runs, allow_mismatch, where=f"at {label}: ")
    complete.sort(key=lambda run: str(run.dir))  # the same report however the runs were found
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
    arms = sorted({run.arm for run in all_runs if run.arm})  # a run without a numeric seed has no arm: it is left out
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
    points, axis = along_axis(points, baseline)
    return task, points, axis, incomplete


def sweep_result(task, points, axis, incomplete, baseline):
    """What sweep.json holds: every point's comparison and, in a tuning sweep, each arm at its own best point."""
    arms = sorted((entry["arm"] for entry in points[0].summary["arms"]), key=lambda arm: arm == baseline)  # the baseline last
    result = {
        "keys": list(parse_point_label(points[0].label) or {}),
        "baseline": baseline,
        "metric": task.comparisons[0].key,
        "arms": arms,
        "axis": {"label": axis.label, "log": axis.log},
        "data": points[0].summary["data"],
        "points": [
            {"label": p.label, "values": p.values, "x": x, **p.summary, "finals_by_seed": p.finals}
            for p, x in zip(points, axis.x, strict=True)
        ],
        "incomplete_runs": incomplete,
    }
    if is_tuning_sweep(points, baseline, task.unit):
        result["own_best"] = {arm: own_best(points, arm, baseline, task.higher_is_better) for arm in arms if arm != baseline}
    return result


def report_sweep(runs_by_point, out_dir, baseline, allow_mismatch=False, use_wandb=False):
    """Report a sweep, {point label: its runs}: write sweep.png, sweep.md and sweep.json; return the result."""
    task, points, axis, incomplete = read_sweep(runs_by_point, baseline, allow_mismatch)
    result = sweep_result(task, points, axis, incomplete, baseline)
    title = sweep_title(result, points, task)
    png = png_bytes(lambda out: plot_sweep(points, axis, result, task, out, title))
    clean = finite_or_null(result)
    out_dir = make_report_dir(out_dir)
    with exclusive_folder(out_dir, "--out"):
        write_report(out_dir, ("sweep.png", png), "sweep", title, sweep_markdown(result, task), clean)
        if use_wandb:  # project and group: the runs'
            log_sweep_to_wandb(result, out_dir / "sweep.png", next(iter(runs_by_point.values()))[0].config, task)
    return clean


# -----------------------------------------------------------------------------
# A grid: a sweep reported once per point of its later groups


def split_by(runs_by_point, by):
    """{label of the `by` keys' values: {point label: its runs}}; ReportError if the points lack a `by` key."""
    subsets = {}
    for label, runs in runs_by_point.items():
        values = parse_point_label(label) or {}
        missing = [key for key in by if key not in values]
        if missing:
            raise ReportError(f"--by={'/'.join(by)}: the sweep's points have no key {missing[0]} (theirs: {', '.join(values)})")
        subsets.setdefault(point_label(by, [values[key] for key in by]), {})[label] = runs
    if len(subsets) < 2:
        raise ReportError(f"--by={'/'.join(by)}: every point of the sweep has the same {'/'.join(by)}; report it without --by")
    return subsets


def report_grid(runs_by_point, out_dir, by, baseline, allow_mismatch=False, use_wandb=False):
    """Report a grid, {point label: its runs}: a sweep report over the other keys for each value of the `by` keys,
    in out_dir/<by label>/, then grid.md (each one's table and verdict, in turn) and grid.json; returns grid.json's content."""
    out_dir = make_report_dir(out_dir)
    reports = {}
    for label, subset in split_by(runs_by_point, by).items():
        reports[label] = report_sweep(subset, out_dir / label, baseline, allow_mismatch, use_wandb)
    result = {"by": list(by), "reports": reports}
    sections = [f"## {label}\n\n![{label}]({label}/sweep.png)\n\n" + (out_dir / label / "sweep.md").read_text() for label in reports]
    with exclusive_folder(out_dir, "--out"):
        write_whole(out_dir / "grid.md", (f"# A grid: the sweep at each {'/'.join(by)}\n\n" + "\n".join(sections)).encode())
        write_whole(out_dir / "grid.json", (json.dumps(result, indent=2, allow_nan=False) + "\n").encode())
    print(f"wrote {out_dir / 'grid.md'}, {out_dir / 'grid.json'}")
    return result
