"""Compare MLP variants (SwiGLU vs GELU, ...) over several seeds: launch the runs, then report.

One run per arm proves nothing: at small scale the seed-to-seed spread is often as large as the
effect. This script trains every (config, seed) pair on the same data, then reads the runs'
metrics.jsonl files and answers, with a figure and a paired test, whether an arm beat the
baseline, by how much, and how many tokens it needed to reach the baseline's final loss.

Launch (train, skipping complete runs and resuming interrupted ones, then report):
    python compare.py config/swiglu.py config/gelu.py --seeds 3 --max_iters=2000
Report on existing runs (no network, no wandb account needed):
    python compare.py out/compare/swiglu-s0 out/compare/gelu-s0 ... --out report/
    python compare.py out/compare --out report/      # every run under a folder

Writes loss_curves.png, summary.md and summary.json to --out; with --wandb, also logs the table
and the figure to a wandb run in the runs' group.

Statistics: runs are paired by seed (same seed = same initial data order), so the per-seed
difference d_i = final_val(arm, seed_i) - final_val(baseline, seed_i) removes the shared part of
the noise. We report mean(d) with a 95% Student-t confidence interval and a two-sided paired
t-test p-value. The t distribution is computed here (regularized incomplete beta function) so
the project needs no scipy.
"""

import argparse
import json
import math
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

try:  # a Ctrl-C while numpy imports ends the script as quietly as one in main()
    import numpy as np

    from configurator import OneLineArgumentParser
    from metrics import CHECKPOINT_NAME, METRICS_NAME, finished_part, read_metrics, resolve_wandb_mode
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("compare.py: interrupted", file=sys.stderr)
    sys.exit(130)

TRAIN_PY = Path(__file__).resolve().parent / "train.py"
# train.py keys that compare.py sets itself for every run; users pass them through its own flags.
RESERVED_OVERRIDES = {"seed", "out_dir", "init_from", "wandb_group", "wandb_run_name"}
# What must be equal for losses to be comparable across runs.
DATA_FIELDS = ("tokenizer", "vocab_size", "train_tokens", "val_tokens", "source")
# The numeric fields this script reads from each kind of metrics.jsonl record (train.py writes more).
NEEDED_FIELDS = {
    "config": ("config.seed", "config.max_iters", "tokens_per_iter"),
    "train": ("iter", "tokens", "time", "loss", "tokens_per_s"),
    "eval": ("iter", "tokens", "time", "val_loss"),
    "end": ("iter", "time", "best_val_loss", "final_val_loss"),
}


class CompareError(Exception):
    """A user error: reported as one line on stderr, exit status 2."""


# -----------------------------------------------------------------------------
# Student-t distribution (no scipy)

def regularized_incomplete_beta(a, b, x):
    """I_x(a, b) by its continued fraction, evaluated with the modified Lentz method.

    The fraction converges fast for x < (a + 1) / (a + b + 2); above that we use the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a).
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - regularized_incomplete_beta(b, a, 1.0 - x)
    log_front = (a * math.log(x) + b * math.log1p(-x)
                 + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    front = math.exp(log_front) / a
    # I_x = front / (1 + d1 / (1 + d2 / (1 + ...))), with
    # d_{2m+1} = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)) and d_{2m} = m(b-m)x / ((a+2m-1)(a+2m)).
    tiny, eps = 1e-300, 1e-15
    value, c, d = 1.0, 1.0, 0.0
    for j in range(1, 10_000):
        m = j // 2
        if j % 2:
            coef = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            coef = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + coef / c
        c = c if abs(c) > tiny else tiny
        value *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return front / value


def t_two_sided_p(t, df):
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t, df):
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = t_two_sided_p(t, df) / 2.0
    return 1.0 - tail if t >= 0 else tail


def t_quantile(q, df):
    """The t with P(T <= t) = q, found by bisection on t_cdf (it is monotonic)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    hi = 1.0
    while t_cdf(hi, df) < q or t_cdf(-hi, df) > q:
        hi *= 2.0
    lo = -hi
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def paired_t_test(differences, confidence=0.95):
    """Mean, sample std, confidence interval and two-sided p-value of paired differences.

    With fewer than two pairs there is no spread to test against: ci, t and p are None.
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    result = {"n_pairs": n, "diff_mean": float(d.mean()) if n else None,
              "diff_std": None, "ci95": None, "t": None, "p_value": None, "note": None}
    if n < 2:
        result["note"] = f"{n} paired seed(s): need at least 2 for a confidence interval and p-value"
        return result
    mean, std = float(d.mean()), float(d.std(ddof=1))
    sem = std / math.sqrt(n)
    half_width = t_quantile(0.5 + confidence / 2.0, n - 1) * sem
    if sem == 0.0:  # identical differences: the test is degenerate but the answer is clear
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / sem
    result.update(diff_std=std, ci95=[mean - half_width, mean + half_width],
                  t=t, p_value=t_two_sided_p(t, n - 1))
    return result


# -----------------------------------------------------------------------------
# Reading runs

@dataclass
class Run:
    """One training run as recorded in its metrics.jsonl."""
    dir: Path
    record: dict        # the last "config" line: config, model, data, tokens_per_iter, world_size
    train: list         # "train" lines
    evals: list         # "eval" lines
    end: dict | None    # the "end" line, if training finished
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
        raise CompareError(f"no {METRICS_NAME} in {run_dir}")
    try:
        events = read_metrics(run_dir)
    except (OSError, UnicodeDecodeError) as error:
        raise CompareError(f"cannot read {path} ({type(error).__name__}): is it a metrics file written by train.py?") from None
    if not events or not isinstance(events[0], dict) or events[0].get("event") != "config":
        raise CompareError(f"{path} does not start with a config record")
    for number, event in enumerate(events, start=1):
        problem = record_problem(event)
        if problem:
            raise CompareError(f"{path} line {number}: {problem}; leave this run out or train it again")
    # a finished run stays finished whatever a later, unfinished resume left after its end line
    by_kind = {"config": [], "train": [], "eval": [], "end": []}
    finished = finished_part(events)
    for event in finished:
        by_kind.setdefault(event.get("event"), []).append(event)
    end = by_kind["end"][-1] if by_kind["end"] else None
    if end is not None and not by_kind["eval"]:  # train.py evaluates before it ends: the curves need it
        raise CompareError(f"{path} has an end record but no eval records; leave this run out or train it again")
    return Run(run_dir, by_kind["config"][-1], by_kind["train"], by_kind["eval"], end, resume_pending=len(finished) < len(events))


def record_problem(record):
    """None if compare.py can use this metrics record, else what is wrong with it."""
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
            raise CompareError(f"{path} holds no {METRICS_NAME}, neither itself nor in a subfolder")
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
            for run, (arm, _) in zip(runs, keys):
                run.arm = arm
            return
    raise CompareError("two runs share the same arm and seed: "
                       "pass each run once, or give the configs distinct file names")


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
                return (f"runs differ in {field}: {runs[0].dir} has {reference[field]!r}, "
                        f"{run.dir} has {value!r} (pass --allow-mismatch to compare anyway)")
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
        curves.append((np.array([line[x_key] for line in lines], dtype=float),
                       np.array([line[y_key] for line in lines], dtype=float)))
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


def mean_std(values):
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else None}


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
        "tokens_per_s": float(np.mean([np.median([t["tokens_per_s"] for t in run.train])
                                       for run in runs])) if all(r.train for r in runs) else None,
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
        pairs = [(run.seed, run.end["final_val_loss"] - base_by_seed[run.seed])
                 for run in runs if run.seed in base_by_seed]
        summary["vs_baseline"] = {"seeds": [seed for seed, _ in pairs],
                                  **paired_t_test([diff for _, diff in pairs])}
    return summary


def summarize(runs, baseline):
    """The whole report as a JSON-able dict. `runs` are complete runs with arm labels."""
    arms = {}
    for run in runs:
        arms.setdefault(run.arm, []).append(run)
    if baseline not in arms:
        raise CompareError(f"baseline arm {baseline!r} has no complete runs; "
                           f"arms present: {', '.join(arms)} (choose one with --baseline)")
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
        "arms": [summarize_arm(arm, arm_runs, baseline, baseline_runs, baseline_final)
                 for arm, arm_runs in arms.items()],
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
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["std"] is not None else "")


def markdown_table(summary):
    """The summary as a Markdown table, one row per arm, with notes underneath."""
    base = summary["baseline"]
    header = ["arm", "seeds", "params", "final val loss", "best val loss", "tokens/s",
              f"Δ final val vs {base} [95% CI]", "p (paired t)", f"tokens to {base}'s final loss"]
    rows, notes = [], []
    for arm in summary["arms"]:
        paired = arm["vs_baseline"]
        if paired is None:
            diff, p = "(baseline)", "—"
        elif paired["ci95"] is None:
            diff, p = (f"{paired['diff_mean']:+.4f}" if paired["n_pairs"] else "—"), "—"
            notes.append(f"{arm['arm']}: {paired['note']}")
        else:
            lo, hi = paired["ci95"]
            diff = f"{paired['diff_mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            p = f"{paired['p_value']:.3g}"
        reach = arm["reach_baseline_final"]
        reached = ("never" if reach["tokens"] is None
                   else f"{human_count(reach['tokens'])} ({reach['fraction']:.0%})")
        tokens_per_s = "?" if arm["tokens_per_s"] is None else human_count(arm["tokens_per_s"])
        rows.append([arm["arm"], str(arm["n_seeds"]), f"{arm['params_total']:,}",
                     format_loss(arm["final_val_loss"]), format_loss(arm["best_val_loss"]),
                     tokens_per_s, diff, p, reached])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [f"- {note}" for note in notes]
    lines += [f"- incomplete, left out: {run}" for run in summary.get("incomplete_runs", [])]
    return "\n".join(lines) + "\n"


def describe_setup(summary):
    """One line naming the data and the model, for the figure title and the Markdown header."""
    data, model = summary["data"], summary["model"]
    return (f"data: {data.get('source', '?')} ({data.get('tokenizer', '?')}, "
            f"{human_count(data.get('train_tokens'))} train tokens) · model: "
            f"n_layer={model['n_layer']}, n_head={model['n_head']}, n_embd={model['n_embd']}, "
            f"block_size={model['block_size']} · {human_count(summary['tokens_per_iter'])} tokens/step "
            f"× {summary['max_iters']} steps")


def plot_curves(arm_runs, summary, path):
    """2x2 figure: val and train loss against tokens and against wall time; mean and min-max band."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers or in tests
    import matplotlib.pyplot as plt

    panels = [("eval", "tokens", "val_loss", "validation loss", "tokens"),
              ("train", "tokens", "loss", "training loss", "tokens"),
              ("eval", "time", "val_loss", "validation loss", "wall time (s)"),
              ("train", "time", "loss", "training loss", "wall time (s)")]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for ax, (kind, x_key, y_key, y_label, x_label) in zip(axes.flat, panels):
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
    run = wandb.init(project=config.get("wandb_project"), group=config.get("wandb_group") or None,
                     mode=resolve_wandb_mode(""), job_type="compare", name=f"compare-{'-vs-'.join(a['arm'] for a in summary['arms'])}",
                     config={"baseline": summary["baseline"], "data": summary["data"],
                             "model": summary["model"], "max_iters": summary["max_iters"]})
    columns = ["arm", "n_seeds", "params_total", "final_val_loss_mean", "final_val_loss_std",
               "diff_vs_baseline", "ci95_low", "ci95_high", "p_value", "tokens_to_baseline_final"]
    table = wandb.Table(columns=columns)
    for arm in summary["arms"]:
        paired = arm["vs_baseline"] or {}
        ci = paired.get("ci95") or [None, None]
        table.add_data(arm["arm"], arm["n_seeds"], arm["params_total"],
                       arm["final_val_loss"]["mean"], arm["final_val_loss"]["std"],
                       paired.get("diff_mean"), ci[0], ci[1], paired.get("p_value"),
                       arm["reach_baseline_final"]["tokens"])
    run.log({"summary": table, "loss_curves": wandb.Image(str(figure_path))})
    run.finish()


def report(runs, out_dir, baseline, allow_mismatch=False, use_wandb=False):
    """Check, summarize and write the report for runs; return the summary dict."""
    mismatch = check_comparable(runs)
    if mismatch and not allow_mismatch:
        raise CompareError(mismatch)
    assign_arm_labels(runs)
    complete = [run for run in runs if run.complete]
    incomplete = [f"{run.dir} (iter {run.last_iter} of {run.config['max_iters']})"
                  for run in runs if not run.complete]
    if not complete:
        raise CompareError("no complete runs to report on; incomplete: " + "; ".join(incomplete))
    summary = summarize(complete, baseline)
    summary["incomplete_runs"] = incomplete
    summary["mismatch"] = mismatch

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CompareError(f"cannot create the report folder {out_dir} ({error.strerror})") from None
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


def check_out_dir(out_dir):
    """Raise CompareError if out_dir, or the nearest part of it that exists, is a file, not a folder."""
    existing = next(path for path in (out_dir, *out_dir.parents) if path.exists())
    if not existing.is_dir():
        raise CompareError(f"the report folder {out_dir} cannot be made: {existing} is a file; choose another --out")


# -----------------------------------------------------------------------------
# Launching runs

@dataclass
class PlannedRun:
    config_file: Path
    seed: int
    out_dir: Path


def plan_runs(config_files, seeds, runs_dir):
    """Every (config, seed) pair, each in its own folder <runs_dir>/<config stem>-s<seed>.

    Seed-major order: after any prefix of the launch, the finished runs already form pairs.
    """
    return [PlannedRun(Path(cfg), seed, Path(runs_dir) / f"{Path(cfg).stem}-s{seed}")
            for seed in seeds for cfg in config_files]


def run_state(out_dir):
    """'complete' (end line at max_iters), 'interrupted' (a checkpoint to resume) or 'fresh'."""
    if (out_dir / METRICS_NAME).is_file():
        run = load_run(out_dir)
        if run.complete and not run.resume_pending:
            return "complete"
    return "interrupted" if (out_dir / CHECKPOINT_NAME).is_file() else "fresh"


def run_training(command):
    """Run train.py and return its exit status; on Ctrl-C let it checkpoint before we stop.

    The child gets its own process group so that a Ctrl-C reaches it exactly once, forwarded
    by us: train.py then saves a checkpoint and exits, and the next launch resumes from it.
    """
    process = subprocess.Popen(command, process_group=0)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def launch_runs(plan, overrides, group):
    """Train every planned run that is not complete yet; return 0, or the first failing status."""
    # A SIGTERM (a job scheduler, `kill`) stops the launch the same careful way as Ctrl-C.
    previous_handler = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        for number, run in enumerate(plan, start=1):
            state = run_state(run.out_dir)
            print(f"[{number}/{len(plan)}] {run.out_dir}: {state}"
                  + (", skipped" if state == "complete" else ""), flush=True)
            if state == "complete":
                continue
            command = [sys.executable, str(TRAIN_PY), str(run.config_file), *overrides,
                       f"--seed={run.seed}", f"--out_dir={run.out_dir}",
                       f"--init_from={'resume' if state == 'interrupted' else 'scratch'}",
                       f"--wandb_group={group}", f"--wandb_run_name={run.out_dir.name}"]
            status = run_training(command)
            if status != 0:
                print(f"compare.py: training {run.out_dir} failed with exit status {status}",
                      file=sys.stderr)
                return status
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return 0


# -----------------------------------------------------------------------------
# Command line

def parse_seeds(text):
    """'3' -> [0, 1, 2]; '1,5,7' -> [1, 5, 7]."""
    try:
        seeds = [int(part) for part in text.split(",")] if "," in text else list(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a comma list of seeds, got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected at least one seed and no repeats, got {text!r}")
    return seeds


def build_parser():
    parser = OneLineArgumentParser(
        prog="compare.py", allow_abbrev=False,
        description="Train MLP variants over several seeds and compare them (given config files),\n"
                    "or report on existing runs (given run folders). Any other --key=value is\n"
                    "passed to train.py for every run.",
        epilog="examples:\n"
               "  python compare.py config/swiglu.py config/gelu.py --seeds 3 --max_iters=2000\n"
               "  python compare.py out/compare --out report",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="CONFIG_OR_RUN_DIR",
                        help="config files (*.py) to launch, or run folders / folders of runs to report on")
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2],
                        help="number of seeds (0..N-1) or a comma list of seeds (default: 3)")
    parser.add_argument("--runs-dir", default="out/compare",
                        help="where launched runs go, one folder per config and seed (default: out/compare)")
    parser.add_argument("--out", help="report folder (default: <runs-dir>/report)")
    parser.add_argument("--baseline", default="gelu", help="arm the others are compared to (default: gelu)")
    parser.add_argument("--group", help="wandb group of the launched runs (default: compare-<config stems>)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare runs even if their data, tokens per step or iterations differ")
    parser.add_argument("--wandb", action="store_true", help="also log the table and figure to wandb")
    return parser


def split_overrides(argv, parser):
    """Separate train.py's --key=value overrides from compare.py's own arguments."""
    own_flags = {opt for action in parser._actions for opt in action.option_strings}
    overrides, own = [], []
    for arg in argv:
        is_override = arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] not in own_flags
        (overrides if is_override else own).append(arg)
    return overrides, own


def main(argv=None):
    try:
        return run_command(sys.argv[1:] if argv is None else argv)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compare.py: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def run_command(argv):
    """Launch (config files) or report (run folders) as argv says; returns the exit status."""
    parser = build_parser()
    overrides, own = split_overrides(argv, parser)
    args = parser.parse_args(own)
    out_dir = Path(args.out) if args.out else Path(args.runs_dir) / "report"
    check_out_dir(out_dir)  # now, not after hours of training
    reserved = sorted({o[2:].split("=", 1)[0] for o in overrides} & RESERVED_OVERRIDES)
    if reserved:
        raise CompareError(f"--{reserved[0]} is set by compare.py for each run "
                           "(use --seeds, --runs-dir, --group instead)")
    paths = [Path(p) for p in args.paths]
    launch = all(p.suffix == ".py" for p in paths)
    if launch:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CompareError(f"config file not found: {missing[0]}")
        plan = plan_runs(paths, args.seeds, args.runs_dir)
        stems = [p.stem for p in paths]
        if len(set(stems)) != len(stems):
            raise CompareError(f"two config files share a name ({stems}): their runs would share folders")
        group = args.group or "compare-" + "-".join(p.stem for p in paths)
        status = launch_runs(plan, overrides, group)
        if status != 0:
            return status
        run_dirs = [run.out_dir for run in plan]
    else:
        if any(p.suffix == ".py" for p in paths):
            raise CompareError("give either config files (to launch) or run folders (to report), not both")
        if overrides:
            raise CompareError(f"{overrides[0]} only applies when launching runs from config files")
        run_dirs = find_run_dirs(paths)
    runs = [load_run(d) for d in run_dirs]
    report(runs, out_dir, args.baseline, args.allow_mismatch, args.wandb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
