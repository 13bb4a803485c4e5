"""Tests for the reporter (core/report.py, core/runs.py, core/stats.py): the paired test against
textbook numbers and hand computations, and the report itself on fixed fake metrics (its numbers,
its files, what it refuses)."""

import json
import math
import os
import re
import shutil
import statistics
import warnings
from pathlib import Path

import pytest
from scipy import stats

import compare
import core.report
import core.runs
import core.stats
from core.lock import exclusive_folder
from core.metrics import read_metrics

TOKENS_PER_ITER = 1000
MAX_ITERS = 100
DATA = {"tokenizer": "char", "vocab_size": 65, "train_tokens": 1_000_000, "val_tokens": 100_000, "source": "fake shakespeare"}
# Final validation loss per arm and seed. Differences from gelu, by seed:
#   swiglu: -0.05, -0.08, -0.05    relu2: +0.05, -0.02, +0.05
FINAL_VAL = {"gelu": [2.00, 2.10, 2.05], "swiglu": [1.95, 2.02, 2.00], "relu2": [2.05, 2.08, 2.10]}
T_975_DF2 = 4.302652729911275  # t quantile for a 95% interval with 2 degrees of freedom (tables)


def write_run(
    run_dir,
    mlp,
    seed,
    final_val,
    *,
    complete=True,
    data=DATA,
    tokens_per_iter=TOKENS_PER_ITER,
    max_iters=MAX_ITERS,
    config_extra=None,
    params_non_embedding=8_000,
):
    """A metrics.jsonl as train.py writes it: evals at 0, max/2 and max; val loss 4.0, final + 0.5, final."""
    run_dir.mkdir(parents=True)
    seconds_per_iter = 0.01 * (1 + seed / 10)  # seeds run at slightly different speeds
    config = {"mlp": mlp, "seed": seed, "max_iters": max_iters, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    config.update({"wandb_project": "test", "wandb_group": "g", **(config_extra or {})})
    model = {"params_total": 10_000 + len(mlp), "params_non_embedding": params_non_embedding}
    model.update(params_mlp=4_000, flops_per_token=60_000)
    lines = [{"event": "config", "config": config, "model": model, "data": data, "tokens_per_iter": tokens_per_iter, "world_size": 1}]

    def progress(it):
        return {"iter": it, "tokens": it * tokens_per_iter, "flops": 0.0, "time": it * seconds_per_iter}

    last_iter = max_iters if complete else max_iters // 2
    for it in range(0, last_iter + 1, 10):
        train = {"loss": 4.0 - 2.0 * it / max_iters, "lr": 1e-3, "tokens_per_s": 5000.0 + seed, "mfu": None}
        lines.append({"event": "train", **progress(it), **train})
    for it, val in [(0, 4.0), (max_iters // 2, final_val + 0.5), (max_iters, final_val)]:
        if it <= last_iter:
            lines.append({"event": "eval", **progress(it), "train_loss": val - 0.1, "val_loss": val, "val_ppl": math.exp(val)})
    if complete:
        end = {"iter": max_iters, "tokens": max_iters * tokens_per_iter, "time": max_iters * seconds_per_iter}
        lines.append({"event": "end", **end, "best_val_loss": final_val, "final_val_loss": final_val})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_dir


def write_arms(root):
    """3 arms x 3 seeds of fake complete runs (FINAL_VAL) under root; returns root."""
    for mlp, finals in FINAL_VAL.items():
        for seed, final in enumerate(finals):
            write_run(root / f"{mlp}-s{seed}", mlp, seed, final)
    return root


@pytest.fixture
def runs_root(tmp_path):
    return write_arms(tmp_path / "runs")


def make_report(paths, out, baseline="gelu", allow_mismatch=False):
    """core.report.report on every run under `paths`, as compare.py's report mode calls it."""
    runs = [core.runs.load_run(run_dir) for run_dir in core.runs.find_run_dirs(paths)]
    return core.report.report(runs, out, baseline, allow_mismatch)


def arm(summary, name):
    return next(a for a in summary["arms"] if a["arm"] == name)


# --- the paired t-test ----------------------------------------------------------------------------


def test_paired_t_test_matches_students_sleep_data():
    # Cushny and Peebles' hours of extra sleep under two drugs, the example of Student (1908);
    # textbooks (and R's t.test on its `sleep` data) give t = 4.0621, df = 9, p = 0.002833,
    # 95% CI [0.7001, 2.4599] for the mean difference 1.58.
    drug_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    drug_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    result = core.stats.paired_t_test(drug_2, drug_1)
    assert result["n_pairs"] == 10 and result["diff_mean"] == pytest.approx(1.58)
    assert result["t"] == pytest.approx(4.0621, abs=1e-4)
    assert result["p_value"] == pytest.approx(0.002833, abs=1e-6)
    assert result["ci95"] == pytest.approx([0.7001, 2.4599], abs=1e-4)
    assert result["note"] is None


@pytest.mark.parametrize("critical_t, df", [(12.706, 1), (4.303, 2), (2.776, 4), (2.262, 9), (2.086, 20)])
def test_differences_at_the_tabled_critical_t_give_p_005_and_an_interval_touching_zero(critical_t, df):
    # Textbook two-sided 5% critical values: differences whose t equals one have p = 0.05 and a
    # 95% interval whose lower end is 0.
    n = df + 1
    spread = [(-1) ** i * (1 + i % 3) for i in range(n)]
    spread = [s - sum(spread) / n for s in spread]  # mean 0
    sem = math.sqrt(sum(s * s for s in spread) / (n - 1) / n)
    differences = [critical_t * sem + s for s in spread]
    result = core.stats.paired_t_test(differences, [0.0] * n)
    assert result["t"] == pytest.approx(critical_t)
    assert result["p_value"] == pytest.approx(0.05, abs=2e-4)
    assert result["ci95"][0] == pytest.approx(0.0, abs=1e-3 * sem)


def test_paired_t_test_with_one_pair_gives_no_interval():
    result = core.stats.paired_t_test([2.1], [2.0])
    assert result["diff_mean"] == pytest.approx(0.1)
    assert result["ci95"] is None and result["p_value"] is None and "at least 2" in result["note"]


def test_differences_that_are_all_zero_say_so_instead_of_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing leaks to stderr either
        result = core.stats.paired_t_test([2.0, 2.1, 1.9], [2.0, 2.1, 1.9])
    assert result["diff_mean"] == 0.0 and result["diff_std"] == 0.0
    assert result["ci95"] is None and result["t"] is None and result["p_value"] is None
    assert "all zero" in result["note"]


def test_equal_nonzero_differences_are_certain_and_scipys_warning_is_a_note():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = core.stats.paired_t_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert result["t"] == math.inf and result["p_value"] == 0.0
    assert result["ci95"] == pytest.approx([0.5, 0.5])
    assert result["note"] is None or result["note"].startswith("scipy warns: ")


# --- the report ---------------------------------------------------------------------------------


def test_statistics_match_hand_computation(runs_root, tmp_path):
    summary = make_report([runs_root], tmp_path / "report")
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
    sem = sd / math.sqrt(3)
    t = mean / sem
    assert relu2["t"] == pytest.approx(t)
    assert relu2["p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert relu2["p_value"] == pytest.approx(2 * stats.t.sf(t, df=2))
    half_width = stats.t.ppf(0.975, df=2) * sem
    assert relu2["ci95"] == pytest.approx([mean - half_width, mean + half_width])

    gelu = arm(summary, "gelu")
    assert gelu["vs_baseline"] is None
    assert gelu["n_seeds"] == 3
    assert gelu["final_val_loss"]["mean"] == pytest.approx(2.05)
    assert gelu["final_val_loss"]["std"] == pytest.approx(0.05)
    assert gelu["tokens_per_s"] == pytest.approx(5001.0)


def test_tokens_to_reach_baseline_final_loss(runs_root, tmp_path):
    summary = make_report([runs_root], tmp_path / "report")
    # swiglu's mean val curve: 4.0 at 0 tokens, 2.49 at 50k, 1.99 at 100k. The baseline's mean
    # final loss 2.05 is crossed at 50k + (2.49 - 2.05) / (2.49 - 1.99) * 50k = 94k tokens.
    reach = arm(summary, "swiglu")["reach_baseline_final"]
    assert reach["tokens"] == pytest.approx(94_000)
    assert reach["fraction"] == pytest.approx(0.94)
    assert arm(summary, "gelu")["reach_baseline_final"]["fraction"] == pytest.approx(1.0)
    assert arm(summary, "relu2")["reach_baseline_final"]["tokens"] is None  # ends at 2.0767 > 2.05


def test_report_lists_every_arm_and_writes_a_valid_png(runs_root, tmp_path, capsys):
    summary = make_report([runs_root], tmp_path / "report")
    printed = capsys.readouterr().out
    markdown = (tmp_path / "report" / "summary.md").read_text()
    for name in FINAL_VAL:
        assert f"| {name} |" in markdown and f"| {name} |" in printed
    assert [a["arm"] for a in summary["arms"]] == ["gelu", "relu2", "swiglu"]
    assert "fake shakespeare" in markdown
    assert json.loads((tmp_path / "report" / "summary.json").read_text()) == summary

    png = tmp_path / "report" / "loss_curves.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.pyplot as plt

    image = plt.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_arms_with_equal_losses_are_reported_with_a_note(tmp_path):
    for seed, final in enumerate([2.0, 2.1]):
        write_run(tmp_path / "runs" / f"gelu-s{seed}", "gelu", seed, final)
        write_run(tmp_path / "runs" / f"swiglu-s{seed}", "swiglu", seed, final)
    summary = make_report([tmp_path / "runs"], tmp_path / "report")
    assert arm(summary, "swiglu")["vs_baseline"]["p_value"] is None
    assert "swiglu: the 2 paired differences are all zero" in (tmp_path / "report" / "summary.md").read_text()
    assert "NaN" not in (tmp_path / "report" / "summary.json").read_text()


@pytest.mark.parametrize(
    "change",
    [
        {"data": {**DATA, "train_tokens": 5}},
        {"tokens_per_iter": 2 * TOKENS_PER_ITER},
        {"max_iters": 2 * MAX_ITERS},
        {"config_extra": {"eval_iters": 99}},
    ],
)
def test_mismatched_runs_are_refused_unless_allowed(runs_root, tmp_path, change):
    write_run(runs_root / "odd-s0", "geglu", 0, 2.0, **change)
    with pytest.raises(core.runs.ReportError, match="differ.*odd-s0.*--allow_mismatch") as refusal:
        make_report([runs_root], tmp_path / "report")
    assert "\n" not in str(refusal.value)
    assert not (tmp_path / "report").exists()

    summary = make_report([runs_root], tmp_path / "report", allow_mismatch=True)
    assert "differ" in summary["mismatch"]
    assert "geglu" in [a["arm"] for a in summary["arms"]]


def test_incomplete_runs_are_named_and_left_out(runs_root, tmp_path, capsys):
    (runs_root / "swiglu-s1" / "metrics.jsonl").unlink()
    (runs_root / "swiglu-s1").rmdir()
    write_run(runs_root / "swiglu-s1", "swiglu", 1, 2.02, complete=False)
    summary = make_report([runs_root], tmp_path / "report")
    assert len(summary["incomplete_runs"]) == 1 and "swiglu-s1" in summary["incomplete_runs"][0]
    assert "iter 50 of 100" in summary["incomplete_runs"][0]
    assert "swiglu-s1" in capsys.readouterr().out
    paired = arm(summary, "swiglu")["vs_baseline"]
    assert paired["seeds"] == [0, 2] and paired["diff_mean"] == pytest.approx(-0.05)


def test_single_seed_reports_no_interval(tmp_path, capsys):
    write_run(tmp_path / "runs" / "gelu-s0", "gelu", 0, 2.0)
    write_run(tmp_path / "runs" / "swiglu-s0", "swiglu", 0, 1.9)
    summary = make_report([tmp_path / "runs"], tmp_path / "report")
    assert arm(summary, "swiglu")["vs_baseline"]["p_value"] is None
    assert "at least 2" in capsys.readouterr().out


def test_same_mlp_in_two_configs_is_labelled_by_folder(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "runs" / f"swiglu-s{seed}", "swiglu", seed, 2.0 + seed / 10)
        write_run(tmp_path / "runs" / f"swiglu_wide-s{seed}", "swiglu", seed, 1.9 + seed / 10)
    summary = make_report([tmp_path / "runs"], tmp_path / "r", baseline="swiglu")
    assert sorted(a["arm"] for a in summary["arms"]) == ["swiglu", "swiglu_wide"]
    assert arm(summary, "swiglu_wide")["vs_baseline"]["diff_mean"] == pytest.approx(-0.1)


def test_an_absent_baseline_is_refused(runs_root, tmp_path):
    with pytest.raises(core.runs.ReportError, match="baseline arm 'geglu' has no complete runs"):
        make_report([runs_root], tmp_path / "r", baseline="geglu")


def test_a_cut_off_last_line_is_ignored(tmp_path):
    run_dir = write_run(tmp_path / "gelu-s0", "gelu", 0, 2.0, complete=False)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"event": "train", "it')
    run = core.runs.load_run(run_dir)
    assert not run.complete and run.last_iter == 50


# --- classify runs ------------------------------------------------------------------------------

LABELS = ["negative", "neutral", "positive"]
EXAMPLES_PER_ITER = 32
CLASSIFY_DATA = {
    "source": "fake tweets",
    "label_names": LABELS,
    "train_examples": 900,
    "test_examples": 300,
    "train_counts": {"negative": 360, "neutral": 270, "positive": 270},
    "test_counts": {"negative": 120, "neutral": 90, "positive": 90},
    "majority_accuracy": 0.4,
    "tokenizer": "gpt2",
    "vocab_size": 50257,
    "unknown_char_share": None,
    "truncated_share": 0.02,
}
# Final test accuracy and macro-F1 per arm and seed. Differences from gelu, by seed:
#   swiglu: accuracy +0.03, +0.01, +0.04; macro-F1 +0.02, +0.03, +0.02
FINAL_CLASSIFY = {
    "gelu": {"accuracy": [0.80, 0.84, 0.82], "macro_f1": [0.78, 0.80, 0.79]},
    "swiglu": {"accuracy": [0.83, 0.85, 0.86], "macro_f1": [0.80, 0.83, 0.81]},
    "relu2": {"accuracy": [0.75, 0.80, 0.78], "macro_f1": [0.70, 0.74, 0.72]},
}
CLASSIFY_HEADER = (
    "| arm | seeds | params | final accuracy | final macro-F1 | majority accuracy | examples/s "
    "| Δ accuracy vs gelu [95% CI] | p (paired t) | Δ macro-F1 vs gelu [95% CI] | p (paired t) "
    "| examples to gelu's final macro-F1 |"
)


def write_classify_run(
    run_dir, mlp, seed, accuracy, macro_f1, *, complete=True, data=CLASSIFY_DATA, examples_per_iter=EXAMPLES_PER_ITER, max_iters=MAX_ITERS
):
    """A metrics.jsonl as classify.py writes it: evals at max/2 and max, accuracy and macro-F1 at final - 0.1 then final."""
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds_per_iter = 0.02 * (1 + seed / 10)
    config = {"mlp": mlp, "seed": seed, "max_iters": max_iters, "init_from": "scratch", "labels": "", "batch_size": examples_per_iter}
    config.update(n_layer=2, n_head=2, n_embd=32, block_size=64, wandb_project="test", wandb_group="g")
    model = {
        "params_total": 20_000 + len(mlp),
        "params_non_embedding": 9_000,
        "params_mlp": 4_000,
        "mlp_hidden": 128,
        "flops_per_token": 60_000,
    }
    lines = [
        {
            "event": "config",
            "task": "classify",
            "config": config,
            "model": model,
            "data": data,
            "examples_per_iter": examples_per_iter,
            "world_size": 1,
        }
    ]

    def progress(it):
        return {"iter": it, "examples": it * examples_per_iter, "time": it * seconds_per_iter}

    last_iter = max_iters if complete else max_iters // 2
    for it in range(10, last_iter + 1, 10):
        lines.append({"event": "train", **progress(it), "loss": 1.1 - it / max_iters, "lr": 1e-3, "examples_per_s": 200.0 + seed})
    support = data["test_counts"]
    for it, shortfall in [(max_iters // 2, 0.1), (max_iters, 0.0)]:
        if it <= last_iter:
            f1 = macro_f1 - shortfall
            per_class = {name: {"precision": f1, "recall": f1, "f1": f1, "support": support[name]} for name in data["label_names"]}
            confusion = [[support[name] if i == j else 0 for j in range(len(support))] for i, name in enumerate(data["label_names"])]
            lines.append(
                {
                    "event": "eval",
                    **progress(it),
                    "test_loss": 1.0 - f1,
                    "accuracy": accuracy - shortfall,
                    "macro_f1": f1,
                    "per_class": per_class,
                    "confusion": confusion,
                    "majority_accuracy": data["majority_accuracy"],
                }
            )
    if complete:
        end = {"best_macro_f1": macro_f1, "final_accuracy": accuracy, "final_macro_f1": macro_f1, "final_test_loss": 1.0 - macro_f1}
        lines.append({"event": "end", **progress(max_iters), **end})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_dir


def write_classify_arms(root, arms=("gelu", "swiglu", "relu2")):
    """The FINAL_CLASSIFY arms x 3 seeds of fake complete classify runs under root; returns root."""
    for mlp in arms:
        finals = FINAL_CLASSIFY[mlp]
        for seed, (accuracy, macro_f1) in enumerate(zip(finals["accuracy"], finals["macro_f1"], strict=True)):
            write_classify_run(root / f"{mlp}-s{seed}", mlp, seed, accuracy, macro_f1)
    return root


def paired_by_hand(arm, baseline):
    """Mean, sd, t, p and 95% interval of the paired differences of three pairs, without scipy."""
    d = [a - b for a, b in zip(arm, baseline, strict=True)]
    mean, sd = statistics.mean(d), statistics.stdev(d)
    sem = sd / math.sqrt(len(d))
    t = mean / sem
    p = 1 - abs(t) / math.sqrt(t * t + 2)  # two-sided p for 2 degrees of freedom, in closed form
    return mean, sd, t, p, [mean - T_975_DF2 * sem, mean + T_975_DF2 * sem]


def table_row(markdown, name):
    """The cells of arm `name`'s row of a summary.md table."""
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
    return line.strip("| ").split(" | ")


def test_classify_statistics_and_table_match_hand_computation(tmp_path):
    summary = make_report([write_classify_arms(tmp_path / "runs")], tmp_path / "report")
    markdown = (tmp_path / "report" / "summary.md").read_text()
    assert CLASSIFY_HEADER in markdown.splitlines()
    swiglu = arm(summary, "swiglu")
    row = table_row(markdown, "swiglu")
    assert row[:3] == ["swiglu", "3", "20,006"]
    for column, metric in ((3, "accuracy"), (4, "macro_f1")):
        values = FINAL_CLASSIFY["swiglu"][metric]
        assert swiglu[f"final_{metric}"]["mean"] == pytest.approx(statistics.mean(values))
        assert swiglu[f"final_{metric}"]["std"] == pytest.approx(statistics.stdev(values))
        assert row[column] == f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
    assert swiglu["majority_accuracy"] == 0.4 and row[5] == "0.4000"
    assert swiglu["examples_per_s"] == pytest.approx(201.0) and row[6] == "201"

    for column, metric, summary_key in ((7, "accuracy", "vs_baseline_accuracy"), (9, "macro_f1", "vs_baseline_macro_f1")):
        mean, sd, t, p, ci = paired_by_hand(FINAL_CLASSIFY["swiglu"][metric], FINAL_CLASSIFY["gelu"][metric])
        paired = swiglu[summary_key]
        assert paired["seeds"] == [0, 1, 2]
        assert paired["diff_mean"] == pytest.approx(mean) and paired["diff_std"] == pytest.approx(sd)
        assert paired["t"] == pytest.approx(t) and paired["p_value"] == pytest.approx(p)
        assert paired["ci95"] == pytest.approx(ci)
        assert row[column : column + 2] == [f"{mean:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]", f"{p:.3g}"]
    assert mean == pytest.approx(0.07 / 3)  # the macro-F1 differences (0.02, 0.03, 0.02), as the comment says

    gelu = arm(summary, "gelu")
    assert gelu["vs_baseline_accuracy"] is None and gelu["vs_baseline_macro_f1"] is None
    assert table_row(markdown, "gelu")[7:11] == ["(baseline)", "—", "(baseline)", "—"]
    assert summary["examples_per_iter"] == EXAMPLES_PER_ITER and summary["data"]["label_names"] == LABELS
    assert "fake tweets (3 classes: negative, neutral, positive; 900 train / 300 test examples; gpt2)" in markdown
    assert json.loads((tmp_path / "report" / "summary.json").read_text()) == summary


def test_classify_examples_to_reach_the_baselines_final_macro_f1(tmp_path):
    summary = make_report([write_classify_arms(tmp_path / "runs")], tmp_path / "report")
    # gelu's mean final macro-F1 is 0.79. swiglu's mean curve: 0.81333 - 0.1 at 50 steps (1600
    # examples), 0.81333 at 100 (3200): it rises to 0.79 at 50 + (0.79 - 0.71333) / 0.1 * 50 steps.
    steps = 50 + (0.79 - (statistics.mean(FINAL_CLASSIFY["swiglu"]["macro_f1"]) - 0.1)) / 0.1 * 50
    reach = arm(summary, "swiglu")["reach_baseline_final"]
    assert summary["baseline_final_macro_f1"] == pytest.approx(0.79)
    assert reach["examples"] == pytest.approx(steps * EXAMPLES_PER_ITER) and reach["fraction"] == pytest.approx(steps / MAX_ITERS)
    assert arm(summary, "gelu")["reach_baseline_final"]["fraction"] == pytest.approx(1.0)
    assert arm(summary, "relu2")["reach_baseline_final"]["examples"] is None  # ends at 0.72
    markdown = (tmp_path / "report" / "summary.md").read_text()
    assert table_row(markdown, "relu2")[-1] == "never"
    assert table_row(markdown, "swiglu")[-1] == f"{steps * EXAMPLES_PER_ITER / 1000:.3g}k ({steps / MAX_ITERS:.0%})"


def test_classify_report_draws_accuracy_curves(tmp_path):
    make_report([write_classify_arms(tmp_path / "runs")], tmp_path / "report")
    png = tmp_path / "report" / "accuracy_curves.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not (tmp_path / "report" / "loss_curves.png").exists()
    import matplotlib.pyplot as plt

    image = plt.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 400


def test_language_model_report_keeps_its_table_and_fields(runs_root, tmp_path):
    summary = make_report([runs_root], tmp_path / "report")
    header = (
        "| arm | seeds | params | final val loss | best val loss | tokens/s | Δ final val vs gelu [95% CI] "
        "| p (paired t) | tokens to gelu's final loss |"
    )
    assert (tmp_path / "report" / "summary.md").read_text().splitlines()[2] == header
    assert list(summary) == "baseline baseline_final_val_loss data model tokens_per_iter max_iters arms incomplete_runs mismatch".split()
    assert (
        list(arm(summary, "swiglu"))
        == (
            "arm runs seeds n_seeds params_total params_non_embedding params_mlp flops_per_token final_val_loss best_val_loss "
            "tokens_per_s wall_time_s reach_baseline_final vs_baseline"
        ).split()
    )


def test_runs_of_different_tasks_are_refused_in_one_line(runs_root, tmp_path):
    write_classify_run(runs_root / "swiglu-cls-s0", "swiglu", 0, 0.8, 0.7)
    for allow_mismatch in (False, True):
        with pytest.raises(core.runs.ReportError, match="runs of different tasks cannot be compared") as refusal:
            make_report([runs_root], tmp_path / "report", allow_mismatch=allow_mismatch)
        assert "swiglu-cls-s0 a 'classify' run" in str(refusal.value) and "\n" not in str(refusal.value)
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"data": {**CLASSIFY_DATA, "label_names": ["negative", "positive"]}}, "data.label_names"),
        ({"data": {**CLASSIFY_DATA, "label_names": ["positive", "neutral", "negative"]}}, "data.label_names"),
        ({"data": {**CLASSIFY_DATA, "source": "other tweets"}}, "data.source"),
        ({"data": {**CLASSIFY_DATA, "test_examples": 299}}, "data.test_examples"),
        ({"data": {**CLASSIFY_DATA, "train_examples": 901}}, "data.train_examples"),
        ({"examples_per_iter": 2 * EXAMPLES_PER_ITER}, "examples_per_iter"),
        ({"max_iters": 2 * MAX_ITERS}, "max_iters"),
    ],
)
def test_mismatched_classify_runs_are_refused_unless_allowed(tmp_path, change, field):
    root = write_classify_arms(tmp_path / "runs", arms=("gelu", "swiglu"))
    write_classify_run(root / "odd-s0", "geglu", 0, 0.8, 0.7, **change)
    with pytest.raises(core.runs.ReportError, match=f"runs differ in {field}: .*odd-s0.*--allow_mismatch") as refusal:
        make_report([root], tmp_path / "report")
    assert "\n" not in str(refusal.value)
    summary = make_report([root], tmp_path / "report", allow_mismatch=True)
    assert "geglu" in [a["arm"] for a in summary["arms"]]


def test_classify_notes_name_the_metric(tmp_path):
    for seed, (accuracy, macro_f1) in enumerate([(0.8, 0.7), (0.9, 0.75)]):
        write_classify_run(tmp_path / "runs" / f"gelu-s{seed}", "gelu", seed, accuracy, macro_f1)
        write_classify_run(tmp_path / "runs" / f"swiglu-s{seed}", "swiglu", seed, accuracy, macro_f1 + 0.01 * seed)
    make_report([tmp_path / "runs"], tmp_path / "report")
    markdown = (tmp_path / "report" / "summary.md").read_text()
    assert "- swiglu (accuracy): the 2 paired differences are all zero" in markdown
    # macro-F1's differences vary: no note on them, only what their spread lets 2 seeds detect
    macro_f1_notes = [line for line in markdown.splitlines() if line.startswith("- swiglu (macro-F1)")]
    assert len(macro_f1_notes) == 1 and "power: at the measured spread" in macro_f1_notes[0]


@pytest.mark.parametrize(
    "line, replacement, words",
    [
        (0, {"task": "translate"}, "line 1: unknown task 'translate'"),
        (0, {"data": {**CLASSIFY_DATA, "majority_accuracy": "40%"}}, "line 1: the config record has no numeric data.majority_accuracy"),
        (0, {"examples_per_iter": [32]}, "line 1: the config record has no numeric examples_per_iter"),
        (-2, {"macro_f1": "high"}, "the eval record has no numeric macro_f1"),
        (-1, {"final_accuracy": True}, "the end record has no numeric final_accuracy"),
        (-1, {"event": "config", "task": "lm"}, "a config record of task 'lm' in a run of task 'classify'"),
    ],
)
def test_a_classify_record_without_what_the_report_reads_is_one_line(tmp_path, line, replacement, words):
    run_dir = write_classify_run(tmp_path / "gelu-s0", "gelu", 0, 0.8, 0.7)
    records = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    records[line] = {**records[line], **replacement}
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(core.runs.ReportError, match=words) as refusal:
        core.runs.load_run(run_dir)
    assert "\n" not in str(refusal.value)


def test_an_incomplete_classify_run_is_left_out(tmp_path):
    root = write_classify_arms(tmp_path / "runs", arms=("gelu", "swiglu"))
    write_classify_run(root / "swiglu-s1", "swiglu", 1, 0.85, 0.83, complete=False)
    summary = make_report([root], tmp_path / "report")
    assert len(summary["incomplete_runs"]) == 1 and "swiglu-s1 (iter 50 of 100)" in summary["incomplete_runs"][0]
    assert arm(summary, "swiglu")["vs_baseline_macro_f1"]["seeds"] == [0, 2]


# --- the reports kept in the repository ----------------------------------------------------------

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
# a machine's absolute path: a slash that starts a word, then a folder ("/work/shared/...", "/home/me/...")
ABSOLUTE_PATH = re.compile(r"(?<![\w.~/])/[\w.-]+/")


def strings_in(value):
    """Every string of a parsed JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def test_the_absolute_path_pattern_tells_a_machines_path_from_a_relative_one():
    for text in ("files: /work/shared/corpora/shakespeare", "files: train=/home/me/train.csv", "/tmp/report/summary.md"):
        assert ABSOLUTE_PATH.search(text), text
    for text in ("files: ../shared/corpora/shakespeare", "docs/results/sweep_lr/runs", "2.05k tokens/step", "n_layer/n_head/n_embd", "+/-"):
        assert not ABSOLUTE_PATH.search(text), text


def test_the_kept_reports_and_runs_name_no_absolute_path():
    """Reports in docs/results are read on other machines: the paths in them are relative to the repository."""
    checked, found = 0, []
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix == ".md":
            texts = [path.read_text()]
        elif path.suffix == ".json":
            texts = list(strings_in(json.loads(path.read_text())))
        elif path.name == "metrics.jsonl":
            texts = list(strings_in(read_metrics(path.parent)))
        else:
            continue
        checked += 1
        found += [f"{path.relative_to(RESULTS)}: {text!r}" for text in texts if ABSOLUTE_PATH.search(text)]
    assert checked > 0 and not found, found[:5]


# --- numbers that are not finite --------------------------------------------------------------------


def strict_json(path):
    """The JSON file at path, failing on NaN, Infinity and -Infinity, which JSON does not have (Python writes them)."""
    return json.loads(path.read_text(), parse_constant=lambda constant: pytest.fail(f"{path} holds {constant}"))


def spoil(run_dir, index, **fields):
    """Set fields of record `index` of a run's metrics.jsonl, written the way Python's json writes them (NaN as NaN)."""
    metrics = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    for dotted, value in fields.items():
        *parents, key = dotted.split("__")
        target = records[index]
        for parent in parents:
            target = target[parent]
        target[key] = value
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    return index + 1 if index >= 0 else len(records) + index + 1  # its line number


def without_left_out(summary):
    return {key: value for key, value in summary.items() if key != "incomplete_runs"}


@pytest.mark.parametrize(
    "index, field, value, shown",
    [
        (-1, "final_val_loss", math.nan, "NaN"),
        (-1, "best_val_loss", math.inf, "Infinity"),
        (-2, "val_loss", None, "null"),  # what metrics.py writes for a non-finite number
        (3, "loss", -math.inf, "-Infinity"),
        (0, "config__seed", math.nan, "NaN"),
    ],
)
def test_a_run_whose_numbers_are_not_finite_is_named_and_left_out(runs_root, tmp_path, capsys, index, field, value, shown):
    clean = make_report([runs_root], tmp_path / "clean", baseline="gelu")
    line = spoil(runs_root / "swiglu-s1", index, **{field: value})
    summary = make_report([runs_root], tmp_path / "report")
    kind = ["config", "train", "eval", "end"][[0, 3, -2, -1].index(index)]
    where = f"metrics.jsonl line {line}: the {kind} record's {field.replace('__', '.')}"
    reason = f"{runs_root / 'swiglu-s1'} ({where} is {shown}, not a finite number)"
    assert summary["incomplete_runs"] == [reason]
    assert f"- left out: {reason}" in (tmp_path / "report" / "summary.md").read_text() and reason in capsys.readouterr().out
    assert strict_json(tmp_path / "report" / "summary.json") == summary
    # never averaged in: the report is the one of the runs without it
    shutil.rmtree(runs_root / "swiglu-s1")
    assert without_left_out(summary) == without_left_out(make_report([runs_root], tmp_path / "without"))
    assert arm(summary, "swiglu")["vs_baseline"]["seeds"] == [0, 2] and without_left_out(summary) != without_left_out(clean)


def test_a_classify_run_with_a_nan_macro_f1_is_left_out(tmp_path):
    root = write_classify_arms(tmp_path / "runs", arms=("gelu", "swiglu"))
    line = spoil(root / "gelu-s2", -2, macro_f1=math.nan)
    summary = make_report([root], tmp_path / "report")
    assert summary["incomplete_runs"] == [
        f"{root / 'gelu-s2'} (metrics.jsonl line {line}: the eval record's macro_f1 is NaN, not a finite number)"
    ]
    assert arm(summary, "swiglu")["vs_baseline_macro_f1"]["seeds"] == [0, 1]
    strict_json(tmp_path / "report" / "summary.json")


def test_when_every_run_of_an_arm_is_left_out_the_arm_is_not_reported(runs_root, tmp_path):
    for seed in range(3):
        spoil(runs_root / f"relu2-s{seed}", -1, final_val_loss=None)
    summary = make_report([runs_root], tmp_path / "report")
    assert [a["arm"] for a in summary["arms"]] == ["gelu", "swiglu"] and len(summary["incomplete_runs"]) == 3
    for seed in range(3):
        spoil(runs_root / f"gelu-s{seed}", -1, final_val_loss=math.nan)
    with pytest.raises(core.runs.ReportError, match="baseline arm 'gelu' has no complete runs"):
        make_report([runs_root], tmp_path / "report")


def test_an_infinite_t_is_null_in_the_json(tmp_path):
    # every difference is exactly -0.25: scipy's t is -inf, which JSON cannot hold
    for seed, final in enumerate([2.0, 2.5]):
        write_run(tmp_path / "runs" / f"gelu-s{seed}", "gelu", seed, final)
        write_run(tmp_path / "runs" / f"swiglu-s{seed}", "swiglu", seed, final - 0.25)
    summary = make_report([tmp_path / "runs"], tmp_path / "report")
    written = strict_json(tmp_path / "report" / "summary.json")
    assert written == summary and arm(written, "swiglu")["vs_baseline"]["t"] is None
    assert arm(written, "swiglu")["vs_baseline"]["ci95"] == [-0.25, -0.25]


# --- writing the report: a full disk, a second writer ----------------------------------------------

FULL = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")


def folder_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@FULL
@pytest.mark.parametrize("name", ["loss_curves.png", "summary.md", "summary.json"])
def test_a_full_disk_is_one_line_and_leaves_each_file_whole(runs_root, tmp_path, capsys, name):
    out = tmp_path / "report"
    assert compare.main([str(runs_root), f"--out={out}"]) == 0
    before = folder_bytes(out)
    shutil.rmtree(runs_root / "relu2-s0")  # the next report differs from this one
    (out / f"{name}.tmp").symlink_to("/dev/full")  # where the file is written before its rename: every write fails with ENOSPC
    capsys.readouterr()
    assert compare.main([str(runs_root), f"--out={out}"]) == 1
    assert capsys.readouterr().err == f"error: could not write {out / name} (No space left on device); it is as it was\n"
    after = folder_bytes(out)
    assert sorted(after) == sorted(before) and after[name] == before[name]  # no temporary file, no lock file left
    assert compare.main([str(runs_root), f"--out={tmp_path / 'new'}"]) == 0
    new = folder_bytes(tmp_path / "new")
    assert new[name] != before[name] and all(after[file] in (before[file], new[file]) for file in after)  # each one report's, whole


@FULL
def test_a_full_disk_leaves_no_empty_figure_in_a_new_report_folder(tmp_path, capsys):
    from test_sweep import write_lr_sweep

    out = tmp_path / "report"
    out.mkdir()
    (out / "sweep.png.tmp").symlink_to("/dev/full")
    assert compare.main([str(write_lr_sweep(tmp_path / "runs")), f"--out={out}"]) == 1
    assert capsys.readouterr().err == f"error: could not write {out / 'sweep.png'} (No space left on device); it is as it was\n"
    assert list(out.iterdir()) == []


def test_a_second_report_into_the_same_folder_is_refused_in_one_line(runs_root, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    with exclusive_folder(out, "--out"):  # another writer (flock: two opens conflict even in one process)
        assert compare.main([str(runs_root), f"--out={out}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out} is in use by pid {os.getpid()} (") and err.count("\n") == 1
        assert err.endswith("; wait for it to end or choose another --out\n")
        assert sorted(p.name for p in out.iterdir()) == [".writer"]  # the holder's; nothing of ours
    assert compare.main([str(runs_root), f"--out={out}"]) == 0  # released: the report is written
    assert (out / "summary.json").is_file() and not (out / ".writer").exists()
