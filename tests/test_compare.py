"""Tests for compare.py: the statistics against hand computations on fixed fake metrics, the
report files, the refusals, and (with the real train.py) a launch that resumes after Ctrl-C."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import compare
from conftest import ctrl_c_while_importing

TOKENS_PER_ITER = 1000
MAX_ITERS = 100
DATA = {"tokenizer": "char", "vocab_size": 65, "train_tokens": 1_000_000, "val_tokens": 100_000,
        "source": "fake shakespeare"}
# Final validation loss per arm and seed. Differences from gelu, by seed:
#   swiglu: -0.05, -0.08, -0.05    relu2: +0.05, -0.02, +0.05
FINAL_VAL = {"gelu": [2.00, 2.10, 2.05], "swiglu": [1.95, 2.02, 2.00], "relu2": [2.05, 2.08, 2.10]}
T_975_DF2 = 4.302652729911275  # t quantile for a 95% interval with 2 degrees of freedom (tables)


def write_run(run_dir, mlp, seed, final_val, *, complete=True, data=DATA,
              tokens_per_iter=TOKENS_PER_ITER, max_iters=MAX_ITERS, config_extra=None):
    """A metrics.jsonl as train.py writes it: evals at 0, max/2 and max; val loss 4.0, final + 0.5, final."""
    run_dir.mkdir(parents=True)
    seconds_per_iter = 0.01 * (1 + seed / 10)  # seeds run at slightly different speeds
    lines = [{"event": "config",
              "config": {"mlp": mlp, "seed": seed, "max_iters": max_iters, "n_layer": 2, "n_head": 2,
                         "n_embd": 32, "block_size": 16, "wandb_project": "test", "wandb_group": "g",
                         **(config_extra or {})},
              "model": {"params_total": 10_000 + len(mlp), "params_non_embedding": 8_000,
                        "params_mlp": 4_000, "flops_per_token": 60_000},
              "data": data, "tokens_per_iter": tokens_per_iter, "world_size": 1}]
    last_iter = max_iters if complete else max_iters // 2
    for it in range(0, last_iter + 1, 10):
        lines.append({"event": "train", "iter": it, "tokens": it * tokens_per_iter, "flops": 0.0,
                      "time": it * seconds_per_iter, "loss": 4.0 - 2.0 * it / max_iters,
                      "lr": 1e-3, "tokens_per_s": 5000.0 + seed, "mfu": None})
    for it, val in [(0, 4.0), (max_iters // 2, final_val + 0.5), (max_iters, final_val)]:
        if it <= last_iter:
            lines.append({"event": "eval", "iter": it, "tokens": it * tokens_per_iter, "flops": 0.0,
                          "time": it * seconds_per_iter, "train_loss": val - 0.1, "val_loss": val,
                          "val_ppl": math.exp(val)})
    if complete:
        lines.append({"event": "end", "iter": max_iters, "tokens": max_iters * tokens_per_iter,
                      "time": max_iters * seconds_per_iter, "best_val_loss": final_val,
                      "final_val_loss": final_val})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_dir


@pytest.fixture
def runs_root(tmp_path):
    """3 arms x 3 seeds of fake complete runs under tmp_path/runs."""
    root = tmp_path / "runs"
    for mlp, finals in FINAL_VAL.items():
        for seed, final in enumerate(finals):
            write_run(root / f"{mlp}-s{seed}", mlp, seed, final)
    return root


def run_report(args, tmp_path):
    """Run compare.main in report mode into tmp_path/report; return (status, summary or None)."""
    out = tmp_path / "report"
    status = compare.main([*map(str, args), "--out", str(out)])
    summary_path = out / "summary.json"
    return status, json.loads(summary_path.read_text()) if summary_path.exists() else None


def arm(summary, name):
    return next(a for a in summary["arms"] if a["arm"] == name)


# --- Student-t distribution -------------------------------------------------------------------

@pytest.mark.parametrize("t, df", [(2.776, 4), (12.706, 1), (2.262, 9), (2.086, 20), (1.960, 10**6)])
def test_t_two_sided_p_matches_tables(t, df):
    # Textbook critical values of the two-sided 5% test.
    assert compare.t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert compare.t_two_sided_p(-t, df) == compare.t_two_sided_p(t, df)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 6.0, 40.0])
def test_t_cdf_matches_closed_form_for_two_degrees_of_freedom(t):
    # For df=2 the two-sided p-value is 1 - |t| / sqrt(t^2 + 2).
    assert compare.t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-12, abs=1e-15)
    assert compare.t_cdf(t, 2) + compare.t_cdf(-t, 2) == pytest.approx(1.0)


def test_t_quantile_inverts_the_cdf():
    # For df=2 the quantile has the closed form (2q - 1) / sqrt(2 q (1 - q)).
    q = 0.975
    assert compare.t_quantile(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-12)
    assert compare.t_quantile(q, 2) == pytest.approx(T_975_DF2, rel=1e-9)
    assert compare.t_quantile(q, 1) == pytest.approx(12.706, abs=1e-3)
    assert compare.t_quantile(q, 4) == pytest.approx(2.776, abs=1e-3)
    assert compare.t_quantile(0.025, 9) == pytest.approx(-2.262, abs=1e-3)


def test_paired_t_test_with_one_pair_gives_no_interval():
    result = compare.paired_t_test([0.1])
    assert result["diff_mean"] == pytest.approx(0.1)
    assert result["ci95"] is None and result["p_value"] is None and "at least 2" in result["note"]


# --- the report ---------------------------------------------------------------------------------

def test_statistics_match_hand_computation(runs_root, tmp_path):
    status, summary = run_report([runs_root], tmp_path)
    assert status == 0
    assert summary["baseline"] == "gelu"

    swiglu = arm(summary, "swiglu")
    # By hand: d = (-0.05, -0.08, -0.05); mean -0.06; deviations (0.01, -0.02, 0.01), so
    # sd = sqrt(0.0006 / 2) = sqrt(0.0003); standard error sd / sqrt(3) = 0.01; t = -6.
    paired = swiglu["vs_baseline"]
    assert paired["seeds"] == [0, 1, 2]
    assert paired["diff_mean"] == pytest.approx(-0.06)
    assert paired["diff_std"] == pytest.approx(math.sqrt(0.0003))
    assert paired["t"] == pytest.approx(-6.0)
    assert paired["ci95"] == pytest.approx([-0.06 - T_975_DF2 * 0.01, -0.06 + T_975_DF2 * 0.01])
    assert paired["p_value"] == pytest.approx(1 - 6 / math.sqrt(38))  # df=2 closed form

    relu2 = arm(summary, "relu2")["vs_baseline"]
    # d = (0.05, -0.02, 0.05): mean 0.08/3, deviations (0.07, -0.14, 0.07)/3.
    mean, sd = 0.08 / 3, math.sqrt((0.07**2 + 0.14**2 + 0.07**2) / 9 / 2)
    assert relu2["diff_mean"] == pytest.approx(mean)
    assert relu2["diff_std"] == pytest.approx(sd)
    t = mean / (sd / math.sqrt(3))
    assert relu2["p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2))

    gelu = arm(summary, "gelu")
    assert gelu["vs_baseline"] is None
    assert gelu["n_seeds"] == 3
    assert gelu["final_val_loss"]["mean"] == pytest.approx(2.05)
    assert gelu["final_val_loss"]["std"] == pytest.approx(0.05)
    assert gelu["tokens_per_s"] == pytest.approx(5001.0)


def test_tokens_to_reach_baseline_final_loss(runs_root, tmp_path):
    _, summary = run_report([runs_root], tmp_path)
    # swiglu's mean val curve: 4.0 at 0 tokens, 2.49 at 50k, 1.99 at 100k. The baseline's mean
    # final loss 2.05 is crossed at 50k + (2.49 - 2.05) / (2.49 - 1.99) * 50k = 94k tokens.
    reach = arm(summary, "swiglu")["reach_baseline_final"]
    assert reach["tokens"] == pytest.approx(94_000)
    assert reach["fraction"] == pytest.approx(0.94)
    assert arm(summary, "gelu")["reach_baseline_final"]["fraction"] == pytest.approx(1.0)
    assert arm(summary, "relu2")["reach_baseline_final"]["tokens"] is None  # ends at 2.0767 > 2.05


def test_report_lists_every_arm_and_writes_a_valid_png(runs_root, tmp_path, capsys):
    status, summary = run_report([runs_root], tmp_path)
    assert status == 0
    printed = capsys.readouterr().out
    markdown = (tmp_path / "report" / "summary.md").read_text()
    for name in FINAL_VAL:
        assert f"| {name} |" in markdown and f"| {name} |" in printed
    assert [a["arm"] for a in summary["arms"]] == ["gelu", "relu2", "swiglu"]
    assert "fake shakespeare" in markdown

    png = tmp_path / "report" / "loss_curves.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.pyplot as plt
    image = plt.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_baseline_can_be_chosen(runs_root, tmp_path):
    status = compare.main([str(runs_root), "--out", str(tmp_path / "r"), "--baseline", "swiglu"])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert status == 0 and summary["baseline"] == "swiglu"
    assert arm(summary, "gelu")["vs_baseline"]["diff_mean"] == pytest.approx(0.06)
    assert compare.main([str(runs_root), "--out", str(tmp_path / "r"), "--baseline", "geglu"]) == 2


@pytest.mark.parametrize("change", [{"data": {**DATA, "train_tokens": 5}},
                                    {"tokens_per_iter": 2 * TOKENS_PER_ITER},
                                    {"max_iters": 2 * MAX_ITERS},
                                    {"config_extra": {"eval_iters": 99}}])
def test_mismatched_runs_are_refused_unless_allowed(runs_root, tmp_path, capsys, change):
    write_run(runs_root / "odd-s0", "geglu", 0, 2.0, **change)
    status, _ = run_report([runs_root], tmp_path)
    error = capsys.readouterr().err
    assert status == 2
    assert error.count("\n") == 1 and "differ" in error and "odd-s0" in error
    assert not (tmp_path / "report").exists()

    status, summary = run_report([runs_root, "--allow-mismatch"], tmp_path)
    assert status == 0 and "differ" in summary["mismatch"]
    assert "geglu" in [a["arm"] for a in summary["arms"]]


def test_incomplete_runs_are_named_and_left_out(runs_root, tmp_path, capsys):
    (runs_root / "swiglu-s1" / "metrics.jsonl").unlink()
    (runs_root / "swiglu-s1").rmdir()
    write_run(runs_root / "swiglu-s1", "swiglu", 1, 2.02, complete=False)
    status, summary = run_report([runs_root], tmp_path)
    assert status == 0
    assert len(summary["incomplete_runs"]) == 1 and "swiglu-s1" in summary["incomplete_runs"][0]
    assert "iter 50 of 100" in summary["incomplete_runs"][0]
    assert "swiglu-s1" in capsys.readouterr().out
    paired = arm(summary, "swiglu")["vs_baseline"]
    assert paired["seeds"] == [0, 2] and paired["diff_mean"] == pytest.approx(-0.05)


def test_single_seed_reports_no_interval(tmp_path, capsys):
    write_run(tmp_path / "runs" / "gelu-s0", "gelu", 0, 2.0)
    write_run(tmp_path / "runs" / "swiglu-s0", "swiglu", 0, 1.9)
    status, summary = run_report([tmp_path / "runs"], tmp_path)
    assert status == 0
    assert arm(summary, "swiglu")["vs_baseline"]["p_value"] is None
    assert "at least 2" in capsys.readouterr().out


def test_same_mlp_in_two_configs_is_labelled_by_folder(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "runs" / f"swiglu-s{seed}", "swiglu", seed, 2.0 + seed / 10)
        write_run(tmp_path / "runs" / f"swiglu_wide-s{seed}", "swiglu", seed, 1.9 + seed / 10)
    status = compare.main([str(tmp_path / "runs"), "--out", str(tmp_path / "r"), "--baseline", "swiglu"])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert status == 0
    assert sorted(a["arm"] for a in summary["arms"]) == ["swiglu", "swiglu_wide"]
    assert arm(summary, "swiglu_wide")["vs_baseline"]["diff_mean"] == pytest.approx(-0.1)


def test_a_cut_off_last_line_is_ignored(tmp_path):
    run_dir = write_run(tmp_path / "gelu-s0", "gelu", 0, 2.0, complete=False)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"event": "train", "it')
    run = compare.load_run(run_dir)
    assert not run.complete and run.last_iter == 50


# --- command line -------------------------------------------------------------------------------

def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["-h"])
    assert exit_info.value.code == 0
    assert "--seeds" in capsys.readouterr().out


def test_overrides_are_split_from_compare_flags():
    parser = compare.build_parser()
    overrides, own = compare.split_overrides(
        ["a.py", "--seeds=2", "--max_iters=10", "--out", "r", "--mlp=relu2"], parser)
    assert overrides == ["--max_iters=10", "--mlp=relu2"]
    assert own == ["a.py", "--seeds=2", "--out", "r"]
    assert compare.parse_seeds("3") == [0, 1, 2] and compare.parse_seeds("4,7") == [4, 7]


def test_user_errors_exit_2_with_one_line(runs_root, tmp_path, capsys):
    config = tmp_path / "gelu.py"
    config.write_text("mlp = 'gelu'\n")
    (tmp_path / "empty").mkdir()
    cases = [[str(config), "--seed=3"],           # compare.py sets the seed itself
             [str(runs_root), "--max_iters=10"],  # overrides only make sense when launching
             [str(config), str(runs_root)],       # launch and report mixed
             [str(tmp_path / "missing.py")],
             [str(tmp_path / "empty")]]           # no runs in it
    for args in cases:
        assert compare.main(args) == 2, args
        assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("mode", ["report", "launch"])
def test_an_out_path_that_is_a_file_is_refused_before_anything_runs(runs_root, tmp_path, capsys, mode):
    (tmp_path / "gelu.py").write_text("mlp = 'gelu'\n")
    (tmp_path / "taken").write_text("not a folder")
    paths = [runs_root] if mode == "report" else [tmp_path / "gelu.py", "--runs-dir", tmp_path / "launched"]
    for out in ("taken", "taken/report"):
        assert compare.main([*map(str, paths), "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: the report folder {tmp_path / out} cannot be made: {tmp_path / 'taken'} is a file; choose another --out\n"
    assert not (tmp_path / "launched").exists()


# Each breaks the second seed of swiglu: (line index, what that line becomes, the error's words).
BROKEN_METRICS = {
    "config without config": (0, {"event": "config", "tokens_per_iter": 1000}, "line 1: the config record has no numeric config.seed, config.max_iters"),
    "config without seed": (0, {"event": "config", "config": {"max_iters": 100}, "tokens_per_iter": 1000}, "line 1: the config record has no numeric config.seed"),
    "eval without val_loss": (-2, {"event": "eval", "iter": 100, "tokens": 100_000, "time": 1.0}, "line 15: the eval record has no numeric val_loss"),
    "end with a string loss": (-1, {"event": "end", "iter": 100, "time": 1.0, "best_val_loss": "low", "final_val_loss": 2.0}, "line 16: the end record has no numeric best_val_loss"),
    "a JSON list": (3, [1, 2], "line 4: a JSON list, not an object"),
    "a JSON number": (3, 7, "line 4: a JSON int, not an object"),
    "a first line that is not an object": (0, "config", "does not start with a config record"),
}


@pytest.mark.parametrize("case", BROKEN_METRICS)
def test_a_metrics_file_without_the_fields_compare_reads_is_one_line(runs_root, tmp_path, capsys, case):
    index, replacement, words = BROKEN_METRICS[case]
    metrics = runs_root / "swiglu-s1" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[index] = json.dumps(replacement)
    metrics.write_text("\n".join(lines) + "\n")
    status, summary = run_report([runs_root], tmp_path)
    err = capsys.readouterr().err
    assert status == 2 and summary is None
    assert err.startswith(f"error: {metrics}") and words in err and err.count("\n") == 1


@pytest.mark.parametrize("content", [bytes(range(256)), b'{"event": "config"}\n' + b"\xff" * 10])
def test_a_binary_metrics_file_is_one_line(tmp_path, capsys, content):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_bytes(content)
    assert compare.main([str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "run" / "metrics.jsonl") in err and err.count("\n") == 1


def test_a_finished_run_without_evaluations_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "runs" / "gelu-s0", "gelu", 0, 2.0)
    metrics = run / "metrics.jsonl"
    metrics.write_text("".join(line + "\n" for line in metrics.read_text().splitlines() if '"eval"' not in line))
    assert compare.main([str(run), "--out", str(tmp_path / "report")]) == 2
    assert "has an end record but no eval records" in capsys.readouterr().err


def test_ctrl_c_while_numpy_imports_is_one_line():
    result = ctrl_c_while_importing("compare.py", "numpy", "runs")
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "compare.py: interrupted\n")


@pytest.mark.parametrize("seeds", ["0", "-1", "1,1", "x"])
def test_bad_seed_lists_are_one_line(seeds, tmp_path, capsys):
    config = tmp_path / "gelu.py"
    config.write_text("mlp = 'gelu'\n")
    with pytest.raises(SystemExit) as exit_:
        compare.main([str(config), "--seeds", seeds])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_run_state(tmp_path):
    assert compare.run_state(tmp_path / "nothing") == "fresh"
    interrupted = write_run(tmp_path / "a", "gelu", 0, 2.0, complete=False)
    assert compare.run_state(interrupted) == "fresh"  # metrics but no checkpoint: start over
    (interrupted / "ckpt.pt").write_bytes(b"")
    assert compare.run_state(interrupted) == "interrupted"
    assert compare.run_state(write_run(tmp_path / "b", "gelu", 0, 2.0)) == "complete"


def test_wandb_logs_offline(runs_root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert compare.main([str(runs_root), "--out", str(tmp_path / "r"), "--wandb"]) == 0
    assert list((tmp_path / "wandb").glob("offline-run-*"))


# --- launching with the real train.py -------------------------------------------------------------

TINY_TRAINING = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4",
                 "--max_iters=200", "--eval_interval=10", "--eval_iters=2", "--log_interval=10",
                 "--warmup_iters=5", "--learning_rate=3e-3", "--device=cpu", "--prefetch=False"]


def metrics_lines(run_dir):
    return (run_dir / "metrics.jsonl").read_text().splitlines()


def test_interrupted_launch_resumes_and_complete_runs_are_skipped(char_data, tmp_path):
    """Ctrl-C during the first run, launch again (it resumes, the second run starts), launch a
    third time (both are skipped)."""
    for mlp in ("gelu", "swiglu"):
        (tmp_path / f"{mlp}.py").write_text(f"mlp = {mlp!r}\n")
    command = [sys.executable, str(Path(compare.__file__).resolve()), "gelu.py", "swiglu.py",
               "--seeds", "1", "--runs-dir", "runs", f"--data_dir={char_data}", *TINY_TRAINING]
    gelu, swiglu = tmp_path / "runs" / "gelu-s0", tmp_path / "runs" / "swiglu-s0"

    # First launch: interrupt the gelu run once it has a checkpoint.
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (gelu / "ckpt.pt").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGINT)
    output = first.communicate(timeout=60)[0]
    assert first.returncode == 130, output
    assert "run the same command again to resume" in output
    assert not compare.load_run(gelu).complete and not swiglu.exists()
    interrupted_lines = metrics_lines(gelu)
    assert compare.load_run(gelu).last_iter < 200

    # Second launch: gelu resumes where it stopped, swiglu starts.
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{Path('runs') / 'gelu-s0'}: interrupted" in second.stdout
    assert f"{Path('runs') / 'swiglu-s0'}: fresh" in second.stdout
    lines = metrics_lines(gelu)
    # nothing from before the stop was lost; a second config line says how the run went on
    assert lines[1: len(interrupted_lines)] == interrupted_lines[1:]
    records = [json.loads(line) for line in lines]
    configs = [r for r in records if r["event"] == "config"]  # the resume appends its own, marked resumed_at
    assert [c["config"]["init_from"] for c in configs] == ["scratch", "resume"] and "resumed_at" in configs[1]
    assert [r["iter"] for r in records if r["event"] == "train"] == list(range(10, 201, 10))
    assert compare.load_run(gelu).complete and compare.load_run(swiglu).complete

    # Third launch: nothing left to train.
    before = {p: p.stat().st_mtime_ns for run in (gelu, swiglu) for p in run.iterdir()}
    third = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0, third.stdout + third.stderr
    assert third.stdout.count("complete, skipped") == 2
    assert {p: p.stat().st_mtime_ns for p in before} == before
    summary = json.loads((tmp_path / "runs" / "report" / "summary.json").read_text())
    assert [a["arm"] for a in summary["arms"]] == ["gelu", "swiglu"]


def test_an_unfinished_resume_after_the_end_keeps_the_run_finished(tmp_path):
    """A finished run whose extension failed or was interrupted still reports as the run that finished."""
    run_dir = write_run(tmp_path / "gelu-s0", "gelu", 0, 2.0)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    resumed = {**records[0], "resumed_at": MAX_ITERS, "config": {**records[0]["config"], "max_iters": 2 * MAX_ITERS}}
    extra = [resumed, {**records[1], "iter": MAX_ITERS + 10, "loss": float("nan")}]
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in extra))
    run = compare.load_run(run_dir)
    assert run.complete and run.config["max_iters"] == MAX_ITERS and run.end["final_val_loss"] == 2.0
    assert max(line["iter"] for line in run.train) == MAX_ITERS
    (run_dir / "ckpt.pt").write_bytes(b"")  # the extension's checkpoint: a launch resumes it
    assert run.resume_pending and compare.run_state(run_dir) == "interrupted"
    # once the extension finishes, its end line and config are the run's
    end = {**records[-1], "iter": 2 * MAX_ITERS, "final_val_loss": 1.5}
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**records[-2], "iter": 2 * MAX_ITERS, "val_loss": 1.5}) + "\n" + json.dumps(end) + "\n")
    run = compare.load_run(run_dir)
    assert run.complete and run.config["max_iters"] == 2 * MAX_ITERS and run.end["final_val_loss"] == 1.5
    assert not run.resume_pending and compare.run_state(run_dir) == "complete"
