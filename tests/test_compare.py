"""Tests for compare.py: its command line (options, old spellings, one-line refusals before
anything runs) and, with the real train.py, a launch that resumes after Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ctrl_c_while_importing
from test_report import FINAL_CLASSIFY, MAX_ITERS, arm, write_arms, write_classify_arms, write_classify_run, write_run

import compare
import core.configs
import core.launch
import core.runs
from core.configurator import load_config


@pytest.fixture
def runs_root(tmp_path):
    return write_arms(tmp_path / "runs")


def run_report(args, tmp_path):
    """Run compare.main in report mode into tmp_path/report; return (status, summary or None)."""
    out = tmp_path / "report"
    status = compare.main([*map(str, args), f"--out={out}"])
    summary_path = out / "summary.json"
    return status, json.loads(summary_path.read_text()) if summary_path.exists() else None


# --- command line -------------------------------------------------------------------------------


def test_help_exits_cleanly(capsys):
    assert compare.main(["-h"]) == 0
    printed = capsys.readouterr().out
    options = ("--seeds=", "--runs_dir=", "--out=", "--baseline=", "--group=", "--allow_mismatch=", "--wandb=", "--script=", "--sweep=")
    for option in options:
        assert option in printed
    assert 'init_from = "runs/char/shakespeare_char_swiglu-s{seed}"' in printed


def test_overrides_are_split_from_compare_options():
    options, paths, overrides = compare.parse_arguments(
        ["a.py", "--seeds=2", "--max_iters=10", "--out=r", "--mlp=relu2", "b.py", "--wandb"]
    )
    assert overrides == ["--max_iters=10", "--mlp=relu2"]
    assert paths == [Path("a.py"), Path("b.py")]
    assert options.seed_list == [0, 1] and options.out == "r" and options.wandb
    assert compare.parse_seeds("3") == [0, 1, 2] and compare.parse_seeds("4,7") == [4, 7]


def test_the_old_spellings_still_work_with_a_note(capsys):
    options, paths, overrides = compare.parse_arguments(
        ["a.py", "--seeds", "4,7", "--runs-dir", "elsewhere", "--allow-mismatch", "--max_iters=10"]
    )
    assert options.seed_list == [4, 7] and options.runs_dir == "elsewhere" and options.allow_mismatch
    assert paths == [Path("a.py")] and overrides == ["--max_iters=10"]
    err = capsys.readouterr().err
    assert "compare.py: note: `--seeds 4,7` is deprecated, write --seeds=4,7\n" in err
    assert "compare.py: note: `--runs-dir elsewhere` is deprecated, write --runs_dir=elsewhere\n" in err


def test_an_old_style_report_command_still_works(runs_root, tmp_path, capsys):
    write_run(runs_root / "odd-s0", "geglu", 0, 2.0, max_iters=2 * MAX_ITERS)  # needs --allow-mismatch
    status = compare.main([str(runs_root), "--out", str(tmp_path / "r"), "--baseline", "swiglu", "--allow-mismatch"])
    assert status == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["baseline"] == "swiglu" and "differ" in summary["mismatch"]
    err = capsys.readouterr().err
    assert "note: `--out " in err and "note: `--baseline swiglu` is deprecated" in err


def test_baseline_can_be_chosen(runs_root, tmp_path):
    status = compare.main([str(runs_root), f"--out={tmp_path / 'r'}", "--baseline=swiglu"])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert status == 0 and summary["baseline"] == "swiglu"
    assert arm(summary, "gelu")["vs_baseline"]["diff_mean"] == pytest.approx(0.06)
    assert compare.main([str(runs_root), f"--out={tmp_path / 'r'}", "--baseline=geglu"]) == 2


def test_mismatched_runs_are_refused_in_one_line_unless_allowed(runs_root, tmp_path, capsys):
    write_run(runs_root / "odd-s0", "geglu", 0, 2.0, max_iters=2 * MAX_ITERS)
    status, _ = run_report([runs_root], tmp_path)
    error = capsys.readouterr().err
    assert status == 2
    assert error.count("\n") == 1 and "differ" in error and "odd-s0" in error and "--allow_mismatch" in error
    assert not (tmp_path / "report").exists()
    status, summary = run_report([runs_root, "--allow_mismatch"], tmp_path)
    assert status == 0 and "differ" in summary["mismatch"]


def test_user_errors_exit_2_with_one_line(runs_root, tmp_path, capsys):
    config = tmp_path / "gelu.py"
    config.write_text("mlp = 'gelu'\n")
    (tmp_path / "empty").mkdir()
    cases = [
        [str(config), "--seed=3"],  # compare.py sets the seed itself
        [str(runs_root), "--max_iters=10"],  # overrides only make sense when launching
        [str(config), str(runs_root)],  # launch and report mixed
        [str(tmp_path / "missing.py")],
        [str(tmp_path / "empty")],  # no runs in it
        [],  # nothing to launch or report on
        [str(runs_root), "--out"],
    ]  # an option without its value
    for args in cases:
        assert compare.main(args) == 2, args
        assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "mistake, words",
    [
        (["--max_iter=5"], "unknown config key 'max_iter' on the command line; did you mean max_iters"),
        (["--max_iters=0"], "max_iters must be positive, got 0"),
        (["--max_iters", "5"], "expected --max_iters=value, got '--max_iters'"),
        ([], None),  # the second config file binds a name train.py does not know
    ],
)
def test_a_train_mistake_fails_before_any_run_starts(tmp_path, capsys, monkeypatch, mistake, words):
    (tmp_path / "gelu.py").write_text("mlp = 'gelu'\n")
    (tmp_path / "swiglu.py").write_text("mlp = 'swiglu'\n" + ("n_layers = 2\n" if words is None else ""))
    monkeypatch.setattr(core.launch, "run_training", lambda command: pytest.fail(f"a run started: {command}"))
    status = compare.main([str(tmp_path / "gelu.py"), str(tmp_path / "swiglu.py"), *mistake, f"--runs_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert (words or f"unknown config key 'n_layers' in {tmp_path / 'swiglu.py'}; did you mean n_layer") in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("mode", ["report", "launch"])
def test_an_out_path_that_is_a_file_is_refused_before_anything_runs(runs_root, tmp_path, capsys, mode):
    (tmp_path / "gelu.py").write_text("mlp = 'gelu'\n")
    (tmp_path / "taken").write_text("not a folder")
    args = [runs_root] if mode == "report" else [tmp_path / "gelu.py", f"--runs_dir={tmp_path / 'launched'}"]
    for out in ("taken", "taken/report"):
        assert compare.main([*map(str, args), f"--out={tmp_path / out}"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: the report folder {tmp_path / out} cannot be made: {tmp_path / 'taken'} is a file; choose another --out\n"
    assert not (tmp_path / "launched").exists()


# Each breaks the second seed of swiglu: (line index, what that line becomes, the error's words).
BROKEN_METRICS = {
    "config without config": (
        0,
        {"event": "config", "tokens_per_iter": 1000},
        "line 1: the config record has no numeric config.seed, config.max_iters",
    ),
    "config without seed": (
        0,
        {"event": "config", "config": {"max_iters": 100}, "tokens_per_iter": 1000},
        "line 1: the config record has no numeric config.seed",
    ),
    "eval without val_loss": (
        -2,
        {"event": "eval", "iter": 100, "tokens": 100_000, "time": 1.0},
        "line 15: the eval record has no numeric val_loss",
    ),
    "end with a string loss": (
        -1,
        {"event": "end", "iter": 100, "time": 1.0, "best_val_loss": "low", "final_val_loss": 2.0},
        "line 16: the end record has no numeric best_val_loss",
    ),
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
    assert compare.main([str(tmp_path / "run"), f"--out={tmp_path / 'report'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "run" / "metrics.jsonl") in err and err.count("\n") == 1


def test_a_finished_run_without_evaluations_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "runs" / "gelu-s0", "gelu", 0, 2.0)
    metrics = run / "metrics.jsonl"
    metrics.write_text("".join(line + "\n" for line in metrics.read_text().splitlines() if '"eval"' not in line))
    assert compare.main([str(run), f"--out={tmp_path / 'report'}"]) == 2
    assert "has an end record but no eval records" in capsys.readouterr().err


def test_ctrl_c_while_numpy_imports_is_one_line():
    result = ctrl_c_while_importing("compare.py", "numpy", "runs")
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "compare.py: interrupted by SIGINT\n")


@pytest.mark.parametrize("seeds", ["0", "-1", "1,1", "x"])
def test_bad_seed_lists_are_one_line(seeds, tmp_path, capsys):
    config = tmp_path / "gelu.py"
    config.write_text("mlp = 'gelu'\n")
    assert compare.main([str(config), f"--seeds={seeds}", f"--runs_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_run_state(tmp_path):
    assert core.launch.run_state(tmp_path / "nothing") == "fresh"
    interrupted = write_run(tmp_path / "a", "gelu", 0, 2.0, complete=False)
    assert core.launch.run_state(interrupted) == "fresh"  # metrics but no checkpoint: start over
    (interrupted / "ckpt.pt").write_bytes(b"")
    assert core.launch.run_state(interrupted) == "interrupted"
    assert core.launch.run_state(write_run(tmp_path / "b", "gelu", 0, 2.0)) == "complete"


@pytest.mark.parametrize("write", [write_arms, write_classify_arms])
def test_wandb_logs_offline(tmp_path, offline_wandb, write):
    assert compare.main([str(write(tmp_path / "runs")), f"--out={tmp_path / 'r'}", "--wandb"]) == 0
    assert list((tmp_path / "wandb").glob("offline-run-*"))


# --- launching classify.py runs ------------------------------------------------------------------


@dataclass
class StandInClassifyConfig:
    """The part of classify.py's ClassifyConfig that compare.py relies on."""

    mlp: str = "swiglu"
    init_from: str = "scratch"  # '{seed}' becomes the seed
    labels: str = ""
    max_iters: int = MAX_ITERS
    seed: int = 1337
    out_dir: str = "out-classify"
    wandb_group: str = ""
    wandb_run_name: str = ""

    def __post_init__(self):
        self.init_from = self.init_from.replace("{seed}", str(self.seed))
        if self.init_from not in ("scratch", "resume") and not Path(self.init_from).is_dir():
            raise ValueError(f"init_from={self.init_from}: no such run folder")


@pytest.fixture
def stand_in_classify(monkeypatch):
    """classify.py's contract (its ClassifyConfig in core/configs.py) without training anything."""
    monkeypatch.setattr(core.configs, "ClassifyConfig", StandInClassifyConfig)
    return StandInClassifyConfig


def test_launch_commands_of_each_script():
    run = core.launch.PlannedRun(Path("cls_gelu.py"), 1, Path("runs") / "cls_gelu-s1")
    for script, fresh in (("train.py", ["--init_from=scratch"]), ("classify.py", [])):
        for state, init_from in (("fresh", fresh), ("interrupted", ["--init_from=resume"])):
            command = core.launch.launch_command(script, run, state, ["--max_iters=5"], "g")
            assert command == [
                sys.executable,
                str(Path(compare.__file__).resolve().parent / script),
                "cls_gelu.py",
                "--max_iters=5",
                "--seed=1",
                f"--out_dir={run.out_dir}",
                *init_from,
                "--wandb_group=g",
                "--wandb_run_name=cls_gelu-s1",
            ], (script, state)


def test_classify_launch_trains_every_pair_then_reports_accuracy(stand_in_classify, tmp_path, monkeypatch):
    """Fresh runs pass no --init_from (the config's pretrained run, one per seed, is used); an
    interrupted one passes --init_from=resume; the report compares accuracy and macro-F1."""
    for mlp in ("gelu", "swiglu"):
        (tmp_path / f"cls_{mlp}.py").write_text(f"mlp = {mlp!r}\ninit_from = {str(tmp_path / f'pre_{mlp}-s{{seed}}')!r}\n")
        for seed in (0, 1):
            (tmp_path / f"pre_{mlp}-s{seed}").mkdir()
    commands = []

    def fake_training(command):
        commands.append(command)
        cfg = load_config(StandInClassifyConfig, command[2:])  # as classify.py reads its command line
        finals = FINAL_CLASSIFY[cfg.mlp]
        write_classify_run(Path(cfg.out_dir), cfg.mlp, cfg.seed, finals["accuracy"][cfg.seed], finals["macro_f1"][cfg.seed])
        return 0

    monkeypatch.setattr(core.launch, "run_training", fake_training)
    configs = [str(tmp_path / "cls_gelu.py"), str(tmp_path / "cls_swiglu.py")]
    launch = [*configs, "--script=classify.py", "--seeds=2", f"--runs_dir={tmp_path / 'runs'}", "--labels=neg,pos"]
    assert compare.main(launch) == 0
    assert [Path(c[1]).name for c in commands] == ["classify.py"] * 4
    assert not any(arg.startswith("--init_from") for command in commands for arg in command)
    assert all("--labels=neg,pos" in command for command in commands)
    summary = json.loads((tmp_path / "runs" / "report" / "summary.json").read_text())
    assert arm(summary, "swiglu")["vs_baseline_accuracy"]["diff_mean"] == pytest.approx(0.02)  # (+0.03, +0.01) over seeds 0, 1
    assert (tmp_path / "runs" / "report" / "accuracy_curves.png").is_file()

    # swiglu-s1 was stopped halfway and holds a checkpoint: the next launch resumes it alone
    interrupted = tmp_path / "runs" / "cls_swiglu-s1"
    write_classify_run(interrupted, "swiglu", 1, 0.85, 0.83, complete=False)
    (interrupted / "ckpt.pt").write_bytes(b"")
    commands.clear()
    assert compare.main(launch) == 0
    assert len(commands) == 1 and f"--out_dir={interrupted}" in commands[0] and "--init_from=resume" in commands[0]


def test_classify_configs_are_checked_for_every_seed_before_any_run(stand_in_classify, tmp_path, capsys, monkeypatch):
    (tmp_path / "cls_gelu.py").write_text(f"mlp = 'gelu'\ninit_from = {str(tmp_path / 'pre-s{seed}')!r}\n")
    (tmp_path / "pre-s0").mkdir()  # seed 1's pretrained run is missing
    monkeypatch.setattr(core.launch, "run_training", lambda command: pytest.fail(f"a run started: {command}"))
    runs_dir = f"--runs_dir={tmp_path / 'runs'}"
    assert compare.main([str(tmp_path / "cls_gelu.py"), "--script=classify.py", "--seeds=2", runs_dir]) == 2
    assert capsys.readouterr().err == f"error: init_from={tmp_path / 'pre-s1'}: no such run folder\n"
    # a ClassifyConfig key is not a TrainConfig key: the check follows --script
    assert compare.main([str(tmp_path / "cls_gelu.py"), "--seeds=1", "--labels=a,b", runs_dir]) == 2
    assert "unknown config key 'labels'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_unknown_script_is_one_line(tmp_path, capsys):
    (tmp_path / "gelu.py").write_text("mlp = 'gelu'\n")
    assert compare.main([str(tmp_path / "gelu.py"), "--script=eval.py"]) == 2
    assert capsys.readouterr().err == "error: --script expects train.py or classify.py, got 'eval.py'\n"


# --- launching with the real train.py -------------------------------------------------------------

TINY_LAUNCH = [
    "--n_layer=1",
    "--n_head=2",
    "--n_embd=16",
    "--block_size=16",
    "--batch_size=4",
    "--max_iters=200",
    "--eval_interval=10",
    "--eval_iters=2",
    "--log_interval=10",
    "--warmup_iters=5",
    "--learning_rate=3e-3",
    "--device=cpu",
    "--prefetch=False",
]


def metrics_lines(run_dir):
    return (run_dir / "metrics.jsonl").read_text().splitlines()


@pytest.mark.slow
def test_interrupted_launch_resumes_and_complete_runs_are_skipped(char_data, tmp_path):
    """Ctrl-C during the first run, launch again (it resumes, the second run starts), launch a
    third time (both are skipped)."""
    for mlp in ("gelu", "swiglu"):
        (tmp_path / f"{mlp}.py").write_text(f"mlp = {mlp!r}\n")
    command = [
        sys.executable,
        str(Path(compare.__file__).resolve()),
        "gelu.py",
        "swiglu.py",
        "--seeds=1",
        "--runs_dir=runs",
        f"--data_dir={char_data}",
        *TINY_LAUNCH,
    ]
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
    assert not core.runs.load_run(gelu).complete and not swiglu.exists()
    interrupted_lines = metrics_lines(gelu)
    assert core.runs.load_run(gelu).last_iter < 200

    # Second launch: gelu resumes where it stopped, swiglu starts.
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{Path('runs') / 'gelu-s0'}: interrupted" in second.stdout
    assert f"{Path('runs') / 'swiglu-s0'}: fresh" in second.stdout
    lines = metrics_lines(gelu)
    # nothing from before the stop was lost; a second config line says how the run went on
    assert lines[1 : len(interrupted_lines)] == interrupted_lines[1:]
    records = [json.loads(line) for line in lines]
    configs = [r for r in records if r["event"] == "config"]  # the resume appends its own, marked resumed_at
    assert [c["config"]["init_from"] for c in configs] == ["scratch", "resume"] and "resumed_at" in configs[1]
    assert [r["iter"] for r in records if r["event"] == "train"] == list(range(10, 201, 10))
    assert core.runs.load_run(gelu).complete and core.runs.load_run(swiglu).complete

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
    run = core.runs.load_run(run_dir)
    assert run.complete and run.config["max_iters"] == MAX_ITERS and run.end["final_val_loss"] == 2.0
    assert run.usable and run.problem is None  # the NaN after the end line is not the finished run's
    assert max(line["iter"] for line in run.train) == MAX_ITERS
    (run_dir / "ckpt.pt").write_bytes(b"")  # the extension's checkpoint: a launch resumes it
    assert run.resume_pending and core.launch.run_state(run_dir) == "interrupted"
    # once the extension finishes, its end line and config are the run's
    end = {**records[-1], "iter": 2 * MAX_ITERS, "final_val_loss": 1.5}
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**records[-2], "iter": 2 * MAX_ITERS, "val_loss": 1.5}) + "\n" + json.dumps(end) + "\n")
    run = core.runs.load_run(run_dir)
    assert run.complete and run.config["max_iters"] == 2 * MAX_ITERS and run.end["final_val_loss"] == 1.5
    assert not run.resume_pending and core.launch.run_state(run_dir) == "complete"


# --- the launcher's end is its run's end ------------------------------------------------------------


def start_long_launch(tmp_path, char_data, sweep=False):
    """compare.py launching a gelu run (of a sweep) far too long to finish; returns (the process, the run folder, train.py's pid).

    Its output goes to files: a pipe nobody reads once the launcher is gone would stop the run writing.
    """
    (tmp_path / "gelu.py").write_text("mlp = 'gelu'\n")
    command = [sys.executable, str(Path(compare.__file__).resolve()), "gelu.py", "--seeds=1", "--runs_dir=runs", f"--data_dir={char_data}"]
    command += [*TINY_LAUNCH, "--max_iters=1000000", "--lr_decay_iters=1000000", *(["--sweep=dropout=0.0,0.1"] if sweep else [])]
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        launcher = subprocess.Popen(command, cwd=tmp_path, stdout=stdout, stderr=stderr)
    run_dir = tmp_path / "runs" / ("dropout=0.0" if sweep else "") / "gelu-s0"
    deadline = time.time() + 60
    while not (run_dir / "ckpt.pt").exists() and launcher.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert (run_dir / "ckpt.pt").exists(), (tmp_path / "stderr").read_text()
    child = json.loads((run_dir / ".writer").read_text())["pid"]  # the run's folder lock names its writer (core/lock.py)
    assert "train.py" in Path(f"/proc/{child}/cmdline").read_bytes().decode()
    return launcher, run_dir, child


def process_ended(pid):
    """True once `pid` has exited (gone, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until_ended(pid, seconds):
    deadline = time.time() + seconds
    while not process_ended(pid) and time.time() < deadline:
        time.sleep(0.05)
    return process_ended(pid)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_launcher_killed_outright_takes_its_run_along_which_saves_first(char_data, tmp_path):
    launcher, run_dir, child = start_long_launch(tmp_path, char_data)
    saved = (run_dir / "ckpt.pt").stat().st_mtime_ns
    launcher.kill()  # SIGKILL: no handler of ours runs
    assert launcher.wait(timeout=10) == -signal.SIGKILL
    try:
        assert wait_until_ended(child, 30), "train.py kept training after its launcher was killed"
    finally:
        if not process_ended(child):  # a failed test leaves no run training on
            os.kill(child, signal.SIGKILL)
    # it stopped on the kernel's SIGTERM, as after `kill`: with a fresh checkpoint, so a launch resumes it
    assert (run_dir / "ckpt.pt").stat().st_mtime_ns > saved
    assert core.launch.run_state(run_dir) == "interrupted" and not (run_dir / ".writer").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stop, sweep", [(signal.SIGHUP, False), (signal.SIGTERM, False), (signal.SIGTERM, True)])
def test_a_stopped_launcher_stops_its_run_with_a_checkpoint_and_one_line(char_data, tmp_path, stop, sweep):
    launcher, run_dir, child = start_long_launch(tmp_path, char_data, sweep)
    launcher.send_signal(stop)
    assert launcher.wait(timeout=60) == 128 + stop
    assert process_ended(child)  # the launcher waited for it
    lines = (tmp_path / "stderr").read_text().splitlines()
    ours = [line for line in lines if line.startswith("compare.py")]
    assert ours == [f"compare.py: interrupted by {signal.Signals(stop).name}; run the same command again to resume"], lines
    assert not [line for line in lines if "Traceback" in line], lines
    assert core.launch.run_state(run_dir) == "interrupted"
    last = core.runs.load_run(run_dir).last_iter
    assert 0 < last < 1000000
