"""Compare MLP variants (SwiGLU vs GELU, ...) over several seeds: launch the runs, then report.

One run per arm proves nothing: at small scale the seed-to-seed spread is often as large as the
effect. This script trains every (config, seed) pair on the same data, then reads the runs'
metrics.jsonl files and answers, with a figure and a paired test, whether an arm beat the
baseline, by how much, and how many tokens it needed to reach the baseline's final loss.

Launch (train, skipping complete runs and resuming interrupted ones, then report):
    python compare.py config/swiglu.py config/gelu.py --seeds=3 --max_iters=2000
Report on existing runs (no network, no wandb account needed):
    python compare.py out/compare/swiglu-s0 out/compare/gelu-s0 ... --out=report
    python compare.py out/compare --out=report      # every run under a folder
Sweep: the same comparison at several values of one key, or of keys varied together, then a
report of how the difference moves with them:
    python compare.py config/swiglu.py config/gelu.py --sweep=learning_rate=1e-3,2e-3,4e-3
    python compare.py config/swiglu.py config/gelu.py --sweep=n_layer/n_head/n_embd=2/2/48,4/4/144
    python compare.py out/compare                   # a sweep's folder: its report again

Options are --key=value, like train.py's (`python compare.py -h` lists them); any other
--key=value is a key of the launched script, checked before the first run starts and passed to
every run. The script is train.py (language models), or classify.py with --script=classify.py
(sequence classifiers, compared on test accuracy and macro-F1).

This file is the command line; core/launch.py plans and trains the runs, and core/report.py
reads them and writes the report (a figure of curves, summary.md and summary.json in --out; with
--wandb, a wandb run in the runs' group too); core/stats.py explains the statistics.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from core.entry import interrupt_guard, run_main

with interrupt_guard(__name__, "compare.py"):  # numpy loads through core.runs
    from core.atomic import write_whole
    from core.configurator import ConfigError, load_options
    from core.launch import RESERVED_OVERRIDES, SCRIPTS, check_run_configs, launch_runs, parse_sweep, plan_launch, run_dirs_by_point
    from core.render import plot_diagnostics
    from core.report import make_report_dir, png_bytes, report, report_grid, report_sweep
    from core.runs import find_run_dirs, find_sweep_points, load_points, load_run


USAGE = "compare.py CONFIG_FILE.py ... [--option=value ...] [--train_key=value ...]\n       compare.py RUN_DIR ... [--option=value ...]"
DESCRIPTION = (
    "Train MLP variants over several seeds and compare them (given config files),\n"
    "or report on existing runs (given run folders, or folders of runs)."
)
MORE_HELP = """

Any other --key=value is a key of the launched script (`python train.py -h` or `python
classify.py -h` lists them), passed to every run; compare.py sets seed, out_dir, init_from,
wandb_group and wandb_run_name itself.

With --script=classify.py a fresh run starts as its config file's init_from says (scratch, or a
pretrained run folder to fine-tune) and an interrupted one resumes. classify.py replaces {seed}
in init_from with the run's seed, so one config fine-tunes each seed's own pretrained run, e.g.
  init_from = "runs/char/shakespeare_char_swiglu-s{seed}"

examples:
  python compare.py config/swiglu.py config/gelu.py --seeds=3 --max_iters=2000
  python compare.py classify_swiglu.py classify_gelu.py --script=classify.py --seeds=3
  python compare.py out/compare --out=report

Sweeps: --sweep=KEY=V1,V2,... runs the whole comparison (every config, every seed) once per
value, with --KEY=V added to those runs; --sweep=KEY1/KEY2=A1/A2,B1/B2 varies several keys
together (a model's shape: n_layer/n_head/n_embd). One key's values may hold '/' (paths:
--sweep=data_dir=data/a,data/b). Each run goes to <runs_dir>/<KEY1=A1,KEY2=A2>/<config
name>-s<seed> (a '/' in a value written %2F), all of them in one wandb group (the swept keys
are in each run's config), and the report in --out plots the paired difference and each arm's
final value against the swept value (against non-embedding parameters where the swept keys
change the model's size), in sweep.png, sweep.md and sweep.json. Where the model stays the
same (a learning-rate sweep), it also compares each arm at its own best value.
  python compare.py config/sweep_swiglu.py config/sweep_gelu.py --sweep=learning_rate/min_lr=1e-3/1e-4,4e-3/4e-4
  python compare.py out/compare                  # report a sweep's folder again

Grids: groups joined by ';' (quote the argument) run every combination of their points, e.g.
learning rate x warmup; the first group is what each arm is tuned over, and the report is the
sweep's at each point of the later groups (--by, set for you), in <out>/<point>/, with
grid.md and grid.json beside them. Equal values spelled twice (1e-3,0.001) are refused.
  python compare.py config/sweep_swiglu.py config/sweep_gelu.py \\
      --sweep='learning_rate/min_lr=2e-3/2e-4,8e-3/8e-4;warmup_iters=30,150'
  python compare.py out/compare --by=warmup_iters  # report a grid's folder again"""


# -----------------------------------------------------------------------------
# Options


def parse_seeds(text):
    """'3' -> [0, 1, 2]; '1,5,7' -> [1, 5, 7]."""
    try:
        seeds = [int(part) for part in text.split(",")] if "," in text else list(range(int(text)))
    except ValueError:
        raise ValueError(f"--seeds expects a count or a comma list of seeds, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds expects at least one seed and no repeats, got {text!r}")
    return seeds


@dataclass
class CompareOptions:
    """compare.py's own options; the comments after the fields are its -h text."""

    seeds: str = "3"  # a count N (seeds 0..N-1) or a comma list of seeds such as 1,5,7
    runs_dir: str = (
        "out/compare"  # launched runs go to <runs_dir>/<config name>-s<seed> (a sweep's: <runs_dir>/<point>/...); one sweep per folder
    )
    out: str = ""  # report folder; '' = <runs_dir>/report
    baseline: str = "gelu"  # the arm the others are compared with
    group: str = ""  # wandb group of the launched runs; '' = compare-<config names>
    allow_mismatch: bool = False  # compare runs even if their data, data per step or iterations differ
    wandb: bool = False  # also log the table and the figure to wandb
    script: str = "train.py"  # what each run is: train.py (language model) or classify.py (sequence classifier)
    sweep: str = ""  # KEY=V1,V2,... or KEY1/KEY2=A1/A2,B1/B2 (keys varied together); groups joined by ';' make a grid
    by: str = ""  # KEY or KEY1/KEY2: report a sweep's folder once per value of these keys (a grid's later groups; set when launching one)
    diag: str = (
        ""  # comma list of diag keys (L0/mlp_out_rms,update/L0.mlp.w_up,...): plot them for the runs given, in <out>/diagnostics.png
    )

    def __post_init__(self):
        self.seed_list = parse_seeds(self.seeds)
        self.sweep_plan = parse_sweep(self.sweep, RESERVED_OVERRIDES) if self.sweep else None
        if self.script not in SCRIPTS:
            raise ValueError(f"--script expects {' or '.join(SCRIPTS)}, got {self.script!r}")


# -----------------------------------------------------------------------------
# Command line


def parse_arguments(argv):
    """(options, paths, overrides): compare.py's options, the config files or run folders, the script's --key=value."""
    options, rest = load_options(CompareOptions, argv, "compare.py", USAGE, description=DESCRIPTION, passthrough=True, more_help=MORE_HELP)
    overrides = [arg for arg in rest if arg.startswith("--")]
    paths = [Path(arg) for arg in rest if not arg.startswith("--")]
    return options, paths, overrides


def check_out_dir(out_dir):
    """Raise ConfigError if out_dir, or the nearest part of it that exists, is a file, not a folder."""
    existing = next(path for path in (out_dir, *out_dir.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigError(f"the report folder {out_dir} cannot be made: {existing} is a file; choose another --out")


def main(argv=None):
    return run_main(
        "compare.py", lambda: run_command(sys.argv[1:] if argv is None else argv), on_interrupt="run the same command again to resume"
    )


def override_keys(overrides):
    """The keys of --key=value (or --kebab-key=value) arguments, as field names."""
    return {arg[2:].split("=", 1)[0].replace("-", "_") for arg in overrides}


def run_command(argv):
    """Launch (config files) or report (run folders) as argv says; returns the exit status."""
    options, paths, overrides = parse_arguments(argv)
    if not paths:
        raise ConfigError("give config files (*.py) to launch runs, or run folders to report on (see compare.py -h)")
    out_dir = Path(options.out) if options.out else Path(options.runs_dir) / "report"
    check_out_dir(out_dir)  # now, not after hours of training
    reserved = sorted(override_keys(overrides) & RESERVED_OVERRIDES)
    if reserved:
        raise ConfigError(f"--{reserved[0]} is set by compare.py for each run (use --seeds, --runs_dir, --group instead)")
    if not any(p.suffix == ".py" for p in paths):
        return report_folders(options, paths, overrides, out_dir)
    status, run_dirs = launch(options, paths, overrides)
    if options.sweep_plan and options.sweep_plan.by_keys and not options.by:
        options.by = "/".join(options.sweep_plan.by_keys)
    return status or report_on(options, out_dir, run_dirs)


def report_folders(options, paths, overrides, out_dir):
    """Report mode: the runs in `paths`, or the sweep in the one folder given; returns the exit status."""
    if overrides:
        raise ConfigError(f"{overrides[0]} is not a compare.py option, and train.py keys only apply when launching runs from config files")
    if options.sweep_plan:
        raise ConfigError("--sweep launches runs: give config files with it (a sweep's folder is reported without it)")
    if options.diag:
        return plot_diagnostics_of(paths, options.diag.split(","), out_dir)
    return report_on(options, out_dir, find_sweep_points(paths) or find_run_dirs(paths))


def plot_diagnostics_of(paths, keys, out_dir):
    """--diag: the diag records' `keys` against iteration for the runs in `paths`, in out_dir/diagnostics.png; returns 0."""
    runs = [load_run(d) for d in find_run_dirs(paths)]
    if not any(run.diags for run in runs):
        raise ConfigError("--diag plots diag records, and none of these runs has one: train with --diagnostics=True")
    known = {key for run in runs for record in run.diags for key in record} - {"event", "iter"}
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise ConfigError(f"--diag: no diag record has {unknown[0]!r}; they have e.g. {', '.join(sorted(known)[:4])}")
    png = png_bytes(lambda out: plot_diagnostics(runs, keys, out))
    make_report_dir(out_dir)
    write_whole(out_dir / "diagnostics.png", png)
    print(f"wrote {out_dir / 'diagnostics.png'}")
    return 0


def report_on(options, out_dir, run_dirs):
    """Write the report of run folders (a comparison) or of {point label: run folders} (a sweep); returns 0."""
    if isinstance(run_dirs, dict) and options.by:
        report_grid(load_points(run_dirs), out_dir, options.by.split("/"), options.baseline, options.allow_mismatch, options.wandb)
    elif isinstance(run_dirs, dict):
        report_sweep(load_points(run_dirs), out_dir, options.baseline, options.allow_mismatch, options.wandb)
    elif options.by:
        raise ConfigError("--by reports a sweep's folder per value of its keys: give one sweep folder")
    else:
        report([load_run(d) for d in run_dirs], out_dir, options.baseline, options.allow_mismatch, options.wandb)
    return 0


def launch(options, paths, overrides):
    """Check, then train every run of the launch: (exit status, run folders, or {point label: run folders} for a sweep).

    `paths` are the command line's: config files, or a mistake that this names.
    """
    sweep = options.sweep_plan
    swept = sorted(override_keys(overrides) & set(sweep.keys if sweep else ()))
    if swept:
        raise ConfigError(f"--{swept[0]} is swept by --sweep and given on its own too: give it once")
    points = [sweep.overrides(values) for values in sweep.points] if sweep else [()]
    # Before the mixed-paths check: `--max_iters 2000` leaves 2000 among the paths, and
    # the script's own message for that ("expected --max_iters=value") says what went wrong.
    config_files = [p for p in paths if p.suffix == ".py"]
    check_run_configs(options.script, config_files, overrides, options.seed_list, points)
    other = next((p for p in paths if p.suffix != ".py"), None)
    if other is not None:
        raise ConfigError(f"{other} is not a config file: give either config files (to launch) or run folders (to report), not both")
    stems = [p.stem for p in config_files]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"two config files share a name ({stems}): their runs would share folders")
    plan, group = plan_launch(config_files, options.seed_list, options.runs_dir, sweep, options.group)
    status = launch_runs(plan, overrides, group, options.script)
    return status, run_dirs_by_point(plan) if sweep else [run.out_dir for run in plan]


if __name__ == "__main__":
    sys.exit(main())
