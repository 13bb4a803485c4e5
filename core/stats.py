"""The numbers of a report: mean curves over seeds, paired tests by seed with their power, and for a
sweep its x axis and each arm at its own best point.

Runs are paired by seed (same seed = same initial data order), so the per-seed difference
d_i = final(arm, seed_i) - final(baseline, seed_i) of a compared metric removes the shared part of
the noise. We report mean(d) with a 95% Student-t confidence interval and a two-sided paired t-test
p-value, both from scipy.stats.ttest_rel, and a power estimate from statsmodels: the smallest
difference these seeds detect 80% of the time at the measured spread, and how many seeds the
measured difference would need.

Where a sweep keeps the model the same at every point (a learning-rate sweep, say), each arm is
also compared at its own best point. Choosing the best point and testing the difference on the
same seeds would flatter whichever arm's noise happened to help it, so the CI is cross-fitted: for
each seed, each arm's best point is chosen on the other seeds alone, and the differences at those
choices, one per seed, enter the t-test. The in-sample choice (all seeds) is reported too.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np

from core.runs import ReportError, is_number

# -----------------------------------------------------------------------------
# Curves


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


# -----------------------------------------------------------------------------
# Paired tests and their power


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


# -----------------------------------------------------------------------------
# The summary of one comparison


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
    """The whole comparison as a JSON-able dict. `runs` are complete runs of `task` with arm labels."""
    arms = group_by_arm(runs)
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


def group_by_arm(runs):
    """{arm: its runs}, the arms in the order their first run comes."""
    arms = {}
    for run in runs:
        arms.setdefault(run.arm, []).append(run)
    return arms


# -----------------------------------------------------------------------------
# A sweep: its points, their axis, each arm at its own best point


@dataclass
class Point:
    """One point of a sweep: its swept values and the summarize() of its complete runs."""

    label: str
    values: dict  # swept key -> the value the runs' config records hold
    summary: dict
    finals: dict  # arm -> {seed: final value of the compared metric}


@dataclass
class Axis:
    """The x axis of a sweep's figure: a value per point, its label and scale."""

    label: str
    x: list
    log: bool
    ticks: list | None = None  # tick labels of a categorical axis


def arm_summary(point, arm):
    """The arm's entry of a point's summary."""
    return next(entry for entry in point.summary["arms"] if entry["arm"] == arm)


def model_and_budget(point, arm, unit):
    """(non-embedding parameters, `unit`s per step, steps) of the arm at a point: what a tuning sweep keeps fixed."""
    return arm_summary(point, arm)["params_non_embedding"], point.summary[f"{unit}_per_iter"], point.summary["max_iters"]


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
    if key and all(is_number(v) for v in values):
        log = min(values) > 0 and max(values) >= 4 * min(values)
        return Axis(key, [float(v) for v in values], log=log)
    return Axis(key or "point", list(range(len(points))), log=False, ticks=[point.label for point in points])


def along_axis(points, baseline):
    """(points in the order of their x, the Axis): a sweep read in any order is drawn and tabled the same."""
    axis = sweep_axis(points, baseline)
    order = sorted(range(len(points)), key=lambda i: axis.x[i])
    points = [points[i] for i in order]
    axis.x = [axis.x[i] for i in order]
    if axis.ticks:
        axis.x, axis.ticks = list(range(len(points))), [point.label for point in points]
    return points, axis


def is_tuning_sweep(points, baseline, unit):
    """True if the baseline's model and budget are the same at every point: then "each arm at its own best" is a question."""
    return len(points) > 1 and len({model_and_budget(p, baseline, unit) for p in points}) == 1


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
