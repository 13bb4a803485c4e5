"""Tests for core/metrics.py: metrics.jsonl as a reader sees it after runs, crashes and resumes; the wandb mode
chosen from the environment; and what a real offline wandb run receives."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.atomic import temp_path
from core.metrics import METRICS_NAME, MetricsLog, finished_part, read_metrics, resolve_wandb_mode, start_metrics, start_wandb

CONFIG = {"event": "config", "config": {"mlp": "swiglu", "max_iters": 20}}


def train(i, loss=2.0):
    return {"event": "train", "iter": i, "tokens": i * 256, "loss": loss, "lr": 0.01, "tokens_per_s": 1000.0, "mfu": None}


def evaluation(i, val_loss=2.5):
    return {"event": "eval", "iter": i, "tokens": i * 256, "train_loss": 2.0, "val_loss": val_loss, "val_ppl": 12.2}


def end(i):
    return {"event": "end", "iter": i, "tokens": i * 256, "best_val_loss": 2.5, "final_val_loss": 2.5}


def write_run(out_dir, records, config=CONFIG, resumed_at=None):
    """A run that began (or resumed) metrics.jsonl and logged `records`."""
    start_metrics(out_dir, config, resumed_at=resumed_at)
    log = MetricsLog(out_dir)
    for record in records:
        log.write(record)
    log.close()


def lines(out_dir):
    return (Path(out_dir) / METRICS_NAME).read_text().splitlines()


def test_a_run_writes_its_config_then_its_records_in_order(tmp_path):
    records = [evaluation(0), train(5), train(10), evaluation(10), end(10)]
    write_run(tmp_path, records)
    assert read_metrics(tmp_path) == [CONFIG, *records]
    assert all(json.loads(line) for line in lines(tmp_path))  # one JSON object a line


def test_each_record_is_on_disk_as_soon_as_it_is_written(tmp_path):
    start_metrics(tmp_path, CONFIG)
    log = MetricsLog(tmp_path)
    log.write(train(5))
    assert read_metrics(tmp_path) == [CONFIG, train(5)]  # a reader (or a crash) sees it before close
    log.close()


def strict_json(line):
    """json.loads that refuses NaN and Infinity, which are not JSON (Python writes and reads them by default)."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_numbers_that_are_not_finite_are_written_as_null(tmp_path):
    resumed = {**CONFIG, "model": {"scale": float("-inf")}}
    write_run(tmp_path, [evaluation(5, val_loss=float("nan")), train(10, loss=float("inf"))], config=resumed)
    records = [strict_json(line) for line in lines(tmp_path)]
    assert records[0]["model"]["scale"] is None and records[1]["val_loss"] is None and records[2]["loss"] is None
    assert records[1]["train_loss"] == 2.0  # the finite numbers of the same record stay


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    from core.entry import RunFailed

    start_metrics(tmp_path, CONFIG)
    (tmp_path / METRICS_NAME).unlink()
    (tmp_path / METRICS_NAME).symlink_to("/dev/full")  # every write to it fails with ENOSPC
    log = MetricsLog(tmp_path)
    with pytest.raises(RunFailed) as failed:
        log.write(train(5))
    assert str(failed.value) == f"could not write {tmp_path / METRICS_NAME} (No space left on device)"


def test_a_fresh_start_replaces_an_old_file(tmp_path):
    write_run(tmp_path, [train(5), end(5)])
    start_metrics(tmp_path, {**CONFIG, "config": {"mlp": "gelu"}})
    assert read_metrics(tmp_path) == [{**CONFIG, "config": {"mlp": "gelu"}}]


def test_read_metrics_skips_a_line_cut_short_and_everything_after_it(tmp_path):
    write_run(tmp_path, [train(5), train(10)])
    path = tmp_path / METRICS_NAME
    whole = path.read_text()
    path.write_text(whole + json.dumps(train(15))[:20])  # a crash in the middle of a write
    assert read_metrics(tmp_path) == [CONFIG, train(5), train(10)]
    path.write_text(whole + '{"event": "tra\n' + json.dumps(train(20)) + "\n")
    assert read_metrics(tmp_path) == [CONFIG, train(5), train(10)]


def test_read_metrics_of_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path)


def test_a_resume_keeps_the_records_up_to_the_checkpoint_and_drops_those_past_it(tmp_path):
    # checkpoint at 10; the run went on to 15 before it was killed
    write_run(tmp_path, [evaluation(0), train(5), train(10), evaluation(10), train(15)])
    start_metrics(tmp_path, CONFIG, resumed_at=10)
    assert read_metrics(tmp_path) == [CONFIG, evaluation(0), train(5), train(10), evaluation(10), {**CONFIG, "resumed_at": 10}]
    assert not temp_path(tmp_path / METRICS_NAME).exists()


def test_a_resumed_run_logs_after_its_config_line(tmp_path):
    write_run(tmp_path, [train(5), train(10), train(15)])
    write_run(tmp_path, [train(15), end(20)], resumed_at=10)
    iters = [(r["event"], r.get("iter", r.get("resumed_at"))) for r in read_metrics(tmp_path)]
    assert iters == [("config", None), ("train", 5), ("train", 10), ("config", 10), ("train", 15), ("end", 20)]


def test_a_resume_keeps_earlier_config_and_end_lines(tmp_path):
    # finished at 20, then resumed from that checkpoint with a larger max_iters
    write_run(tmp_path, [train(10), train(20), evaluation(20), end(20)])
    bigger = {"event": "config", "config": {"mlp": "swiglu", "max_iters": 40}}
    start_metrics(tmp_path, bigger, resumed_at=20)
    assert read_metrics(tmp_path) == [CONFIG, train(10), train(20), evaluation(20), end(20), {**bigger, "resumed_at": 20}]


def test_a_second_resume_from_the_same_checkpoint_drops_the_first_trys_config_and_records(tmp_path):
    write_run(tmp_path, [train(5), train(10), train(15)])
    write_run(tmp_path, [train(15), train(20)], resumed_at=10)  # killed again before the next checkpoint
    start_metrics(tmp_path, CONFIG, resumed_at=10)
    assert read_metrics(tmp_path) == [CONFIG, train(5), train(10), {**CONFIG, "resumed_at": 10}]


def test_a_resume_from_a_later_checkpoint_keeps_the_earlier_resumes_config(tmp_path):
    write_run(tmp_path, [train(5), train(10), train(15)])
    write_run(tmp_path, [train(15), train(20), train(25)], resumed_at=10)  # a checkpoint at 20 this time
    start_metrics(tmp_path, CONFIG, resumed_at=20)
    resumed = [r["resumed_at"] for r in read_metrics(tmp_path) if "resumed_at" in r]
    assert resumed == [10, 20]
    assert [r["iter"] for r in read_metrics(tmp_path) if r["event"] == "train"] == [5, 10, 15, 20]


def test_a_resume_repairs_a_line_cut_short_by_the_crash(tmp_path):
    write_run(tmp_path, [train(5), train(10)])
    with open(tmp_path / METRICS_NAME, "a") as f:
        f.write(json.dumps(train(15))[:25])
    write_run(tmp_path, [train(15)], resumed_at=10)
    assert [json.loads(line)["event"] for line in lines(tmp_path)] == ["config", "train", "train", "config", "train"]


def test_a_resume_without_a_metrics_file_starts_one(tmp_path):
    start_metrics(tmp_path, CONFIG, resumed_at=30)
    assert read_metrics(tmp_path) == [{**CONFIG, "resumed_at": 30}]


def test_finished_part_ends_at_the_last_end_record():
    first = [CONFIG, train(10), end(10)]
    second = [{**CONFIG, "resumed_at": 10}, train(20), end(20)]
    unfinished = [{**CONFIG, "resumed_at": 20}, train(25)]
    assert finished_part(first + unfinished) == first
    assert finished_part(first + second + unfinished) == first + second
    assert finished_part(first + second) == first + second
    assert finished_part([CONFIG, train(5)]) == [CONFIG, train(5)]  # never finished: all of it
    assert finished_part([]) == []


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No W&B login, mode or host in the environment; netrc is tmp_path/netrc (absent until written)."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def write_netrc(path, host):
    path.write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    path.chmod(0o600)


def test_an_explicit_wandb_mode_wins(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_wandb_mode("online") == "online"
    assert resolve_wandb_mode("disabled") == "disabled"


def test_wandb_mode_from_the_environment(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("") == "disabled"


def test_offline_when_not_logged_in(wandb_env):
    assert resolve_wandb_mode("") == "offline"


def test_online_with_an_api_key(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert resolve_wandb_mode("") == "online"


def test_online_with_a_netrc_entry_for_the_wandb_host(wandb_env):
    write_netrc(wandb_env, "api.wandb.ai")
    assert resolve_wandb_mode("") == "online"


def test_a_netrc_entry_for_another_host_is_not_a_login(wandb_env):
    write_netrc(wandb_env, "github.com")
    assert resolve_wandb_mode("") == "offline"


def test_a_netrc_entry_for_a_private_wandb_server(wandb_env, monkeypatch):
    write_netrc(wandb_env, "wandb.example.com")
    assert resolve_wandb_mode("") == "offline"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert resolve_wandb_mode("") == "online"


def test_a_broken_netrc_means_offline(wandb_env):
    wandb_env.write_text("machine api.wandb.ai login user password\n   nonsense tokens here\n")
    assert resolve_wandb_mode("") == "offline"


def wandb_records(run_dir):
    """The records of an offline run's .wandb log, read with wandb's own CLI."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    result = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_train_and_eval_records_reach_an_offline_wandb_run(tmp_path, offline_wandb, capsys):
    out = tmp_path / "run"
    out.mkdir()
    run = start_wandb("proj", "grp", "swiglu-s1", "", {"mlp": "swiglu"}, None, out)
    assert "wandb: logging offline" in capsys.readouterr().out  # WANDB_MODE decides when no mode is given
    write_run(out, [])
    log = MetricsLog(out, run)
    for record in [train(5, loss=2.75), train(10, loss=2.5), evaluation(10, val_loss=2.25), end(10)]:
        log.write(record)
    log.close({"best_val_loss": 2.25})
    assert [r["event"] for r in read_metrics(out)] == ["config", "train", "train", "eval", "end"]

    run_dirs = list((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    records = wandb_records(run_dirs[0])
    history = {r["history"]["step"]["num"]: r["history"]["item"] for r in records if r["type"] == "history"}
    assert sorted(history) == [5, 10]  # wandb's step is the iteration; eval and train at 10 share a row
    assert history[5]["train/loss"] == 2.75 and history[5]["progress/tokens"] == 5 * 256
    assert history[10]["train/loss"] == 2.5 and history[10]["val/loss"] == 2.25 and history[10]["eval/train_loss"] == 2.0
    assert "perf/mfu" not in history[5]  # None (no known peak) is left out, not logged
    assert all("event" not in row and "iter" not in row for row in history.values())
    summary = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    assert summary["best_val_loss"] == 2.25
    (started,) = [r["run"] for r in records if r["type"] == "run"]
    assert started["config"]["update"]["mlp"] == "swiglu" and started["run_group"] == "grp" and started["display_name"] == "swiglu-s1"
    assert [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [0]  # the run was finished
