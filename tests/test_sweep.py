"""Tests for sweeps: compare.py --sweep (syntax, plan, one-line refusals, a real launch that is
resumable) and their report (axis, per-point tests, each arm at its own best point with a
cross-fitted CI) and the power estimate that every report prints."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_report import write_run

import compare
import core.launch
import core.render
import core.runs
import core.stats

# --- syntax and plan ------------------------------------------------------------------------------


def test_one_key_and_keys_varied_together_parse():
    one = core.launch.parse_sweep("learning_rate=1e-3,3e-3")
    assert one.keys == ("learning_rate",) and one.points == (("1e-3",), ("3e-3",))
    shape = core.launch.parse_sweep("n_layer/n_head/n_embd=2/2/48,4/4/96")
    assert shape.keys == ("n_layer", "n_head", "n_embd")
    assert shape.label(shape.points[1]) == "n_layer=4,n_head=4,n_embd=96"
    assert shape.overrides(shape.points[0]) == ["--n_layer=2", "--n_head=2", "--n_embd=48"]
    assert core.runs.parse_point_label("n_layer=4,n_head=4,n_embd=96") == {"n_layer": "4", "n_head": "4", "n_embd": "96"}
    assert core.runs.parse_point_label("swiglu-s0") is None


def test_a_grid_is_the_product_of_its_groups_in_order():
    grid = core.launch.parse_sweep("learning_rate/min_lr=2e-3/2e-4,8e-3/8e-4;warmup_iters=30,150")
    assert grid.keys == ("learning_rate", "min_lr", "warmup_iters") and grid.by_keys == ("warmup_iters",)
    assert grid.points == (("2e-3", "2e-4", "30"), ("2e-3", "2e-4", "150"), ("8e-3", "8e-4", "30"), ("8e-3", "8e-4", "150"))
    assert grid.label(grid.points[1]) == "learning_rate=2e-3,min_lr=2e-4,warmup_iters=150"
    assert core.launch.parse_sweep("learning_rate=1e-3,2e-3").by_keys == ()  # one group: a plain sweep


@pytest.mark.parametrize(
    "text, words",
    [
        ("learning_rate", "expected KEY=V1,V2,... or KEY1/KEY2=A1/A2,B1/B2"),
        ("learning_rate=", "expected KEY=V1,V2"),
        ("n_layer/n_embd=2/48,4", "'4' gives 1 value(s) for 2 key(s) (n_layer/n_embd)"),
        ("learning_rate=1e-3", "a sweep needs at least two points"),
        ("learning_rate=1e-3,1e-3", "a point is given twice"),
        ("learning_rate=1e-3,,2e-3", "an empty value"),
        ("n_layer/data_dir=1/data/a,2/data/b", "the values of keys varied together are split at '/', so they cannot contain one"),
        ("learning_rate=1e-3,2e-3,", "an empty value (two commas in a row, or one at the end)"),
        ("learning_rate=" + "1" * 250 + ",2", "would be longer than a folder name can be (255 bytes)"),
        ("learning_rate=1e-3,0.001", "--sweep gives one point twice: --learning_rate=1e-3 and --learning_rate=0.001 both read as"),
        ("n_layer/dropout=1/0,1/0.0", "--sweep gives one point twice: --n_layer=1 --dropout=0 and --n_layer=1 --dropout=0.0 both read"),
        ("n_embd/n_embd=1/2,3/4", "a key is named twice"),
        ("seed=1,2", "seed is set by compare.py for each run and cannot be swept"),
        ("learning_rate=1e-3,2e-3;learning_rate=3e-3,4e-3", "learning_rate is named in two groups"),
        ("learning_rate=1e-3,2e-3;warmup_iters=30", "at least two points in each group"),
        ("learning_rate=1e-3,2e-3;", "expected KEY=V1,V2"),
        ("warmup_iters=30,150;learning_rate=1e-3,0.001", "both read as"),
    ],
)
def test_a_malformed_sweep_is_one_line_before_anything_runs(tmp_path, capsys, text, words):
    (tmp_path / "gelu.py").write_text("mlp = 'gelu'\n")
    status = compare.main([str(tmp_path / "gelu.py"), f"--sweep={text}", f"--runs_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert status == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_one_keys_values_may_be_paths_and_their_folders_read_back_as_typed():
    sweep = core.launch.parse_sweep("data_dir=data/a,../shared/b%2Fc, /abs/d")
    assert sweep.points == (("data/a",), ("../shared/b%2Fc",), ("/abs/d",))
    plan = core.launch.plan_sweep([Path("gelu.py")], [0], Path("runs"), sweep)
    # one folder per point directly under runs_dir, whatever its value holds; the run trains with the value as typed
    assert [run.out_dir.parent.parent for run in plan] == [Path("runs")] * 3
    assert plan[1].overrides == ["--data_dir=../shared/b%2Fc"]
    labels = list(core.launch.run_dirs_by_point(plan))
    assert labels == ["data_dir=data%2Fa", "data_dir=..%2Fshared%2Fb%252Fc", "data_dir=%2Fabs%2Fd"]
    assert [core.runs.parse_point_label(label) for label in labels] == [{"data_dir": value} for (value,) in sweep.points]


@pytest.mark.parametrize("values", [("a/b", "1"), ("%", "%2F"), ("%25/", "x=y"), ("100%", "a%2Fb/c"), ("/", "//")])
def test_a_point_label_is_one_folder_name_that_parses_back_to_its_values(values):
    keys = ("data_dir", "wandb_project")
    label = core.runs.point_label(keys, values)
    assert "/" not in label and label not in (".", "..")
    assert core.runs.parse_point_label(label) == dict(zip(keys, values, strict=True))


def test_a_sweep_folder_of_paths_is_reported_with_the_paths(tmp_path):
    for data_dir in ("data/a", "data/b"):
        for seed in range(2):
            for arm, final in (("gelu", 2.0 + seed / 10), ("swiglu", 1.9 + seed / 8)):
                point = tmp_path / "runs" / core.runs.point_label(("data_dir",), (data_dir,))
                write_run(point / f"{arm}-s{seed}", arm, seed, final, config_extra={"data_dir": data_dir})
    assert compare.main([str(tmp_path / "runs"), f"--out={tmp_path / 'r'}"]) == 0
    result = json.loads((tmp_path / "r" / "sweep.json").read_text())
    assert result["keys"] == ["data_dir"] and [p["values"] for p in result["points"]] == [{"data_dir": "data/a"}, {"data_dir": "data/b"}]


def test_sweep_refusals_name_the_problem(tmp_path, capsys):
    (tmp_path / "gelu.py").write_text("mlp = 'gelu'\n")
    config, runs = str(tmp_path / "gelu.py"), f"--runs_dir={tmp_path / 'runs'}"
    cases = [
        ([config, runs, "--sweep=learning_rate=1e-3,2e-3", "--learning_rate=5e-4"], "--learning_rate is swept by --sweep and given"),
        ([config, runs, "--sweep=n_embd=32,oops"], "n_embd"),  # train.py's own message for a bad value
        ([config, runs, "--sweep=n_emb=32,64"], "n_emb"),  # and for an unknown key (it suggests n_embd)
        ([str(tmp_path), "--sweep=learning_rate=1e-3,2e-3"], "--sweep launches runs: give config files with it"),
    ]
    for argv, words in cases:
        assert compare.main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_a_sweep_plans_every_point_seed_major_in_its_own_folder():
    sweep = core.launch.parse_sweep("n_layer/n_embd=1/16,2/32")
    plan = core.launch.plan_sweep([Path("swiglu.py"), Path("gelu.py")], [0, 1], Path("runs"), sweep)
    assert [(run.seed, run.out_dir.parent.name, run.config_file.stem) for run in plan] == [
        (seed, point, arm) for seed in (0, 1) for point in ("n_layer=1,n_embd=16", "n_layer=2,n_embd=32") for arm in ("swiglu", "gelu")
    ]
    assert plan[2].out_dir == Path("runs/n_layer=2,n_embd=32/swiglu-s0")
    assert plan[2].overrides == ["--n_layer=2", "--n_embd=32"]
    command = core.launch.launch_command("train.py", plan[2], "fresh", ["--max_iters=5"], "group")
    # the point's keys come after the launch's own, so they are what the run trains with
    assert command[command.index("--max_iters=5") + 1 : command.index("--max_iters=5") + 3] == ["--n_layer=2", "--n_embd=32"]
    assert "--wandb_run_name=swiglu-s0-n_layer=2,n_embd=32" in command and "--wandb_group=group" in command


# --- a real sweep with train.py ---------------------------------------------------------------------

TINY_SWEEP = [
    "--n_layer=1",
    "--block_size=16",
    "--batch_size=4",
    "--max_iters=20",
    "--eval_interval=10",
    "--eval_iters=2",
    "--log_interval=10",
    "--warmup_iters=2",
    "--learning_rate=3e-3",
    "--device=cpu",
    "--prefetch=False",
]


@pytest.mark.slow
def test_a_size_sweep_trains_every_point_reports_it_and_skips_it_when_complete(char_data, tmp_path, capsys):
    for mlp in ("swiglu", "gelu"):
        (tmp_path / f"{mlp}.py").write_text(f"mlp = {mlp!r}\n")
    argv = [
        str(tmp_path / "swiglu.py"),
        str(tmp_path / "gelu.py"),
        "--seeds=2",
        f"--runs_dir={tmp_path / 'runs'}",
        "--sweep=n_head/n_embd=2/12,2/24",
        f"--data_dir={char_data}",
        *TINY_SWEEP,
    ]
    assert compare.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count(": fresh") == 8
    result = json.loads((tmp_path / "runs" / "report" / "sweep.json").read_text())
    assert (tmp_path / "runs" / "report" / "sweep.png").stat().st_size > 10_000
    assert result["keys"] == ["n_head", "n_embd"] and result["arms"] == ["swiglu", "gelu"]
    assert result["axis"] == {"label": "non-embedding parameters (gelu)", "log": True}
    assert [p["label"] for p in result["points"]] == ["n_head=2,n_embd=12", "n_head=2,n_embd=24"]
    for point in result["points"]:
        runs = [core.runs.load_run(d) for d in sorted((tmp_path / "runs" / point["label"]).iterdir())]
        # each run trained at its point, in the sweep's wandb group
        assert {run.config["n_embd"] for run in runs} == {point["values"]["n_embd"]}
        assert {run.config["wandb_group"] for run in runs} == {"sweep-swiglu-gelu-n_head-n_embd"}
        finals = {(run.config["mlp"], run.seed): run.end["final_val_loss"] for run in runs}
        arms = {arm["arm"]: arm for arm in point["arms"]}
        assert arms["swiglu"]["vs_baseline"]["diff_mean"] == pytest.approx(
            np.mean([finals["swiglu", s] - finals["gelu", s] for s in (0, 1)]), abs=1e-12
        )
        assert point["x"] == arms["gelu"]["params_non_embedding"]
    assert result["points"][0]["x"] < result["points"][1]["x"]
    assert "own_best" not in result  # the model's size changes: "its own best size" is no question
    markdown = (tmp_path / "runs" / "report" / "sweep.md").read_text()
    assert "| n_head=2,n_embd=12 |" in markdown and "detectable Δ (80% power)" in markdown

    # Launch again: everything is complete, nothing is touched, and the report is the same.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/*/*")}
    assert compare.main(argv) == 0
    assert capsys.readouterr().out.count("complete, skipped") == 8
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert json.loads((tmp_path / "runs" / "report" / "sweep.json").read_text()) == result
    # and the sweep's folder alone reports it again
    assert compare.main([str(tmp_path / "runs"), f"--out={tmp_path / 'again'}"]) == 0
    assert json.loads((tmp_path / "again" / "sweep.json").read_text()) == result


# --- the report of a sweep (written runs) --------------------------------------------------------

# final val loss by learning rate, arm and seed: seed 2 is lucky for swiglu at 1e-3 alone. In-sample
# it pulls swiglu's choice to 1e-3 and is scored there; cross-fitted, seed 2 is scored at the 3e-3
# that seeds 0 and 1 choose, and seeds 0 and 1 at the 1e-3 that the lucky seed helps choose.
LR_FINALS = {
    "1e-3": {"gelu": [2.30, 2.32, 2.31], "swiglu": [2.26, 2.27, 1.90]},
    "3e-3": {"gelu": [2.20, 2.21, 2.22], "swiglu": [2.15, 2.16, 2.17]},
    "1e-2": {"gelu": [2.25, 2.24, 2.26], "swiglu": [2.40, 2.41, 2.42]},
}


def write_lr_sweep(root):
    for lr, arms in LR_FINALS.items():
        for arm, finals in arms.items():
            for seed, final in enumerate(finals):
                write_run(root / f"learning_rate={lr}" / f"{arm}-s{seed}", arm, seed, final, config_extra={"learning_rate": float(lr)})
    return root


def test_each_arm_at_its_own_best_learning_rate_is_cross_fitted_by_seed(tmp_path):
    root = write_lr_sweep(tmp_path / "runs")
    assert compare.main([str(root), f"--out={tmp_path / 'r'}"]) == 0
    result = json.loads((tmp_path / "r" / "sweep.json").read_text())
    assert result["axis"] == {"label": "learning_rate", "log": True}
    assert [p["x"] for p in result["points"]] == [1e-3, 3e-3, 1e-2]
    best = result["own_best"]["swiglu"]
    assert best["best_in_sample"] == {"swiglu": "learning_rate=1e-3", "gelu": "learning_rate=3e-3"}

    # By hand: without seed s, each arm's best learning rate is the lowest mean over the other seeds.
    lrs = list(LR_FINALS)
    diffs = []
    for seed in range(3):
        others = [s for s in range(3) if s != seed]
        pick = {arm: min(lrs, key=lambda lr, arm=arm: np.mean([LR_FINALS[lr][arm][s] for s in others])) for arm in ("swiglu", "gelu")}
        diffs.append(LR_FINALS[pick["swiglu"]]["swiglu"][seed] - LR_FINALS[pick["gelu"]]["gelu"][seed])
    assert [c["swiglu"] for c in best["cross_fitted_choices"]] == ["learning_rate=1e-3", "learning_rate=1e-3", "learning_rate=3e-3"]
    test = stats.ttest_1samp(diffs, 0.0)
    assert best["cross_fitted"]["diff_mean"] == pytest.approx(np.mean(diffs))
    assert best["cross_fitted"]["ci95"] == pytest.approx(list(test.confidence_interval()))
    assert best["cross_fitted"]["p_value"] == pytest.approx(test.pvalue)
    # in-sample the lucky seed counts for swiglu's choice and for its score: a flattering gap
    in_sample = [LR_FINALS["1e-3"]["swiglu"][s] - LR_FINALS["3e-3"]["gelu"][s] for s in range(3)]
    assert best["in_sample"]["diff_mean"] == pytest.approx(np.mean(in_sample))
    assert best["in_sample"]["diff_mean"] < best["cross_fitted"]["diff_mean"]
    markdown = (tmp_path / "r" / "sweep.md").read_text()
    assert (
        "Cross-fitted (the choice never sees the seed it is scored on)" in markdown
        and "In-sample (chosen and scored on the same seeds" in markdown
    )


def test_a_grid_folder_is_reported_as_the_sweep_at_each_point_of_its_later_group(tmp_path):
    """LR_FINALS at warmup 30, and shifted at warmup 150 where swiglu's best moves to 1e-2: each report sees its points alone."""
    root = tmp_path / "runs"
    at_150 = {"1e-3": {"gelu": [2.3, 2.3, 2.3], "swiglu": [2.3, 2.3, 2.3]}, "3e-3": LR_FINALS["3e-3"], "1e-2": LR_FINALS["3e-3"]}
    at_150 = {**at_150, "1e-2": {"gelu": [2.25, 2.25, 2.26], "swiglu": [2.05, 2.06, 2.04]}}
    for warmup, table in (("30", LR_FINALS), ("150", at_150)):
        for lr, arms in table.items():
            for arm, finals in arms.items():
                for seed, final in enumerate(finals):
                    folder = root / f"learning_rate={lr},warmup_iters={warmup}" / f"{arm}-s{seed}"
                    write_run(folder, arm, seed, final, config_extra={"learning_rate": float(lr), "warmup_iters": int(warmup)})
    assert compare.main([str(root), f"--out={tmp_path / 'r'}", "--by=warmup_iters"]) == 0
    grid = json.loads((tmp_path / "r" / "grid.json").read_text())
    assert grid["by"] == ["warmup_iters"] and set(grid["reports"]) == {"warmup_iters=30", "warmup_iters=150"}
    for warmup, table in (("30", LR_FINALS), ("150", at_150)):
        report = grid["reports"][f"warmup_iters={warmup}"]
        assert report == json.loads((tmp_path / "r" / f"warmup_iters={warmup}" / "sweep.json").read_text())
        assert [p["x"] for p in report["points"]] == [1e-3, 3e-3, 1e-2]  # the axis is the first group's key
        best = {arm: min(table, key=lambda lr, arm=arm: np.mean(table[lr][arm])) for arm in ("swiglu", "gelu")}
        chosen = report["own_best"]["swiglu"]["best_in_sample"]
        assert chosen == {arm: f"learning_rate={lr},warmup_iters={warmup}" for arm, lr in best.items()}
    markdown = (tmp_path / "r" / "grid.md").read_text()
    assert "## warmup_iters=30" in markdown and "](warmup_iters=150/sweep.png)" in markdown
    # --by with a key the points lack, or on runs that are no sweep, is one line
    assert compare.main([str(root), f"--out={tmp_path / 'x'}", "--by=block_size"]) == 2
    assert compare.main([str(root / "learning_rate=1e-3,warmup_iters=30"), f"--out={tmp_path / 'y'}", "--by=warmup_iters"]) == 2


@pytest.mark.slow
def test_a_grid_launch_trains_every_combination_and_reports_each_later_point(char_data, tmp_path, capsys):
    for mlp in ("swiglu", "gelu"):
        (tmp_path / f"{mlp}.py").write_text(f"mlp = {mlp!r}\n")
    argv = [str(tmp_path / "swiglu.py"), str(tmp_path / "gelu.py"), "--seeds=2", f"--runs_dir={tmp_path / 'runs'}"]
    argv += ["--sweep=learning_rate=1e-3,3e-3;warmup_iters=2,8", f"--data_dir={char_data}"]
    argv += [arg for arg in TINY_SWEEP if not arg.startswith(("--learning_rate", "--warmup_iters"))]
    assert compare.main(argv) == 0
    assert capsys.readouterr().out.count(": fresh") == 16
    for lr in ("1e-3", "3e-3"):
        for warmup in ("2", "8"):
            runs = [core.runs.load_run(d) for d in (tmp_path / "runs" / f"learning_rate={lr},warmup_iters={warmup}").iterdir()]
            assert {(run.config["learning_rate"], run.config["warmup_iters"]) for run in runs} == {(float(lr), int(warmup))}
    grid = json.loads((tmp_path / "runs" / "report" / "grid.json").read_text())
    assert set(grid["reports"]) == {"warmup_iters=2", "warmup_iters=8"}
    assert all("own_best" in report for report in grid["reports"].values())
    # the folder alone, with --by, reports it again
    assert compare.main([str(tmp_path / "runs"), f"--out={tmp_path / 'again'}", "--by=warmup_iters"]) == 0
    assert json.loads((tmp_path / "again" / "grid.json").read_text()) == grid


def test_a_run_with_a_nan_loss_is_left_out_of_the_sweep_and_its_verdict(tmp_path):
    from test_report import spoil, strict_json

    root = write_lr_sweep(tmp_path / "runs")
    nan_run = root / "learning_rate=1e-2" / "swiglu-s0"
    line = spoil(nan_run, -1, final_val_loss=float("nan"))
    assert compare.main([str(root), f"--out={tmp_path / 'r'}"]) == 0
    result = strict_json(tmp_path / "r" / "sweep.json")
    assert result["incomplete_runs"] == [
        f"{nan_run} (metrics.jsonl line {line}: the end record's final_val_loss is NaN, not a finite number)"
    ]
    # the same report as without the run: swiglu has two seeds at 1e-2, and only seeds 1 and 2 ran everywhere
    shutil.rmtree(nan_run)
    assert compare.main([str(root), f"--out={tmp_path / 'without'}"]) == 0
    without = json.loads((tmp_path / "without" / "sweep.json").read_text())
    assert {**result, "incomplete_runs": []} == without
    assert result["own_best"]["swiglu"]["seeds"] == [1, 2]


def test_a_sweep_still_running_reports_its_finished_points(tmp_path):
    root = write_lr_sweep(tmp_path / "runs")
    write_run(root / "learning_rate=3e-2" / "swiglu-s0", "swiglu", 0, 2.5, config_extra={"learning_rate": 3e-2})
    write_run(root / "learning_rate=3e-2" / "gelu-s0", "gelu", 0, 2.6, complete=False, config_extra={"learning_rate": 3e-2})
    assert compare.main([str(root), f"--out={tmp_path / 'r'}"]) == 0
    result = json.loads((tmp_path / "r" / "sweep.json").read_text())
    assert [p["label"] for p in result["points"]] == [f"learning_rate={lr}" for lr in LR_FINALS]
    assert len(result["incomplete_runs"]) == 2
    assert "waiting for a complete gelu run at learning_rate=3e-2" in (tmp_path / "r" / "sweep.md").read_text()


def test_a_point_where_an_arm_has_not_started_waits(tmp_path):
    root = write_lr_sweep(tmp_path / "runs")
    write_run(root / "learning_rate=3e-2" / "gelu-s0", "gelu", 0, 2.6, config_extra={"learning_rate": 3e-2})  # swiglu not begun
    assert compare.main([str(root), f"--out={tmp_path / 'r'}"]) == 0
    result = json.loads((tmp_path / "r" / "sweep.json").read_text())
    assert len(result["points"]) == len(LR_FINALS)
    assert result["incomplete_runs"] == [
        f"{root / 'learning_rate=3e-2' / 'gelu-s0'} (complete, waiting for a complete swiglu run at learning_rate=3e-2)"
    ]


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda root: write_run(root / "dropout=0.1" / "gelu-s0", "gelu", 0, 2.0), "the folder mixes sweeps of different keys"),
        (lambda root: write_run(root / "gelu-s0", "gelu", 0, 2.0), "holds both runs and a sweep's point folders"),
        (lambda root: None, "baseline arm 'relu' has no runs in the sweep; arms present: gelu, swiglu"),
    ],
)
def test_a_folder_that_is_not_one_sweep_is_refused_in_one_line(tmp_path, capsys, setup, words):
    root = write_lr_sweep(tmp_path / "runs")
    setup(root)
    baseline = ["--baseline=relu"] if "relu" in words else []
    assert compare.main([str(root), f"--out={tmp_path / 'r'}", *baseline]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_a_key_that_is_not_a_number_is_drawn_as_categories(tmp_path):
    for beta2 in ("a", "b"):
        for arm, final in (("gelu", 2.0), ("swiglu", 1.9)):
            for seed in range(2):
                write_run(tmp_path / "runs" / f"schedule={beta2}" / f"{arm}-s{seed}", arm, seed, final + 0.01 * seed)
    assert compare.main([str(tmp_path / "runs"), f"--out={tmp_path / 'r'}"]) == 0
    result = json.loads((tmp_path / "r" / "sweep.json").read_text())
    assert result["axis"] == {"label": "schedule", "log": False} and [p["x"] for p in result["points"]] == [0, 1]


# --- power --------------------------------------------------------------------------------------------


def rejection_rate(effect, n, trials=4000, seed=0):
    """How often a two-sided paired t-test at 5% rejects for n normal differences of mean `effect`, std 1."""
    samples = np.random.default_rng(seed).normal(effect, 1.0, size=(trials, n))
    return float(np.mean(stats.ttest_1samp(samples, 0.0, axis=1).pvalue < 0.05))


@pytest.mark.parametrize("n", [3, 5])
def test_the_detectable_difference_is_detected_four_times_in_five(n):
    estimate = core.stats.power_estimate(0.01, 1.0, n)
    assert 0.76 < rejection_rate(estimate["detectable_diff"], n) < 0.84
    assert 0.3 < rejection_rate(estimate["detectable_diff"] / 2, n) < 0.6  # half of it: clearly less often


@pytest.mark.parametrize("diff", [0.4, 1.0, 3.0])
def test_the_seeds_needed_are_the_fewest_that_detect_the_difference(diff):
    needed = core.stats.power_estimate(diff, 1.0, 3)["seeds_needed"]
    assert rejection_rate(diff, needed) >= 0.77
    if needed > 2:
        assert rejection_rate(diff, needed - 1) < 0.83


def test_no_power_estimate_without_a_spread():
    assert core.stats.power_estimate(0.1, None, 1)["detectable_diff"] is None
    zero = {"diff_mean": 0.0, "diff_std": 0.1, "n_pairs": 3, "power": core.stats.power_estimate(0.0, 0.1, 3)}
    tiny = {"diff_mean": 1e-5, "diff_std": 1.0, "n_pairs": 3, "power": core.stats.power_estimate(1e-5, 1.0, 3)}
    assert core.render.format_seeds_needed(zero) == "—" and "the measured difference is zero" in core.render.describe_power(zero)
    assert core.render.format_seeds_needed(tiny) == "over 1000" and "needs over 1000 seeds" in core.render.describe_power(tiny)


def test_the_comparison_report_says_what_its_seeds_can_detect(tmp_path):
    from test_report import write_arms

    write_arms(tmp_path / "runs")
    assert compare.main([str(tmp_path / "runs"), f"--out={tmp_path / 'r'}"]) == 0
    markdown = (tmp_path / "r" / "summary.md").read_text()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    swiglu = next(arm for arm in summary["arms"] if arm["arm"] == "swiglu")["vs_baseline"]
    detectable = core.stats.power_estimate(swiglu["diff_mean"], swiglu["diff_std"], 3)["detectable_diff"]
    assert f"3 seeds detect a difference of ±{detectable:.4f} with 80% power" in markdown


def test_wandb_gets_the_sweep_table_and_figure_offline(tmp_path, offline_wandb):
    assert compare.main([str(write_lr_sweep(tmp_path / "runs")), f"--out={tmp_path / 'r'}", "--wandb"]) == 0
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    (table,) = run.glob("files/media/table/sweep_*.table.json")
    rows = json.loads(table.read_text())
    assert len(rows["data"]) == len(LR_FINALS) * 2 and "diff_vs_baseline" in rows["columns"]
    assert list(run.glob("files/media/images/sweep_figure_*.png"))
