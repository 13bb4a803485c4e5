from dataclasses import dataclass
from pathlib import Path

import pytest

from core.configs import ClassifyConfig, TrainConfig
from core.configurator import ConfigError, HelpRequested, load_config, load_options
from model import GPTConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


@dataclass
class Demo:
    lr: float = 1e-3  # the learning rate
    steps: int = 10  # how many steps
    name: str = "run"
    fast: bool = False
    limit: int | None = None  # optional cap


def test_precedence_defaults_then_files_left_to_right_then_command_line(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("steps = 20\nname = 'from_a'\n")
    b.write_text("name = 'from_b'\nlr = 3\n")
    cfg = load_config(Demo, [str(a), str(b), "--steps=30"])
    assert cfg == Demo(lr=3.0, steps=30, name="from_b")
    assert isinstance(cfg.lr, float)


def test_command_line_values_are_converted_to_the_field_type():
    cfg = load_config(Demo, ["--lr=5", "--fast=True", "--name=cpu", "--limit=7"])
    assert (cfg.lr, cfg.fast, cfg.name, cfg.limit) == (5.0, True, "cpu", 7)
    assert load_config(Demo, ["--limit=None"]).limit is None
    assert load_config(Demo, ["--fast=false"]).fast is False


def test_text_fields_keep_literal_looking_text():
    assert load_config(Demo, ["--name=1984"]).name == "1984"
    assert load_config(Demo, ["--name=True"]).name == "True"
    assert load_config(Demo, ["--name=None"]).name == "None"
    assert load_config(Demo, ["--limit=None"]).limit is None


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    with pytest.raises(ConfigError, match="'step'.*did you mean steps"):
        load_config(Demo, ["--step=3"])
    bad = tmp_path / "bad.py"
    bad.write_text("lerning_rate = 1\n")
    with pytest.raises(ConfigError, match="lerning_rate.*bad.py"):
        load_config(TrainConfig, [str(bad)])
    with pytest.raises(ConfigError, match="did you mean learning_rate"):
        load_config(TrainConfig, [str(bad)])


@pytest.mark.parametrize(
    "arg,message",
    [("--steps=abc", "steps.*int"), ("--steps=1.5", "steps.*int"), ("--fast=3", "fast.*bool"), ("--steps", "expected --steps=value")],
)
def test_wrong_type_is_one_clear_error(arg, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(Demo, [arg])
    assert "\n" not in str(err.value)


def test_config_file_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Demo, [str(tmp_path / "missing.py")])
    broken = tmp_path / "broken.py"
    broken.write_text("steps = = 3\n")
    with pytest.raises(ConfigError, match="broken.py line 1"):
        load_config(Demo, [str(broken)])


def test_config_file_may_import_and_compute(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("import math\nsteps = int(math.sqrt(49))\n")
    assert load_config(Demo, [str(f)]).steps == 7


def test_help_lists_every_key_with_default_and_comment():
    with pytest.raises(HelpRequested) as help_:
        load_config(Demo, ["-h"])
    text = str(help_.value)
    assert "--lr=0.001" in text and "the learning rate" in text and "--limit=None" in text
    assert "only ones you trust as code" in text  # a config file is code, and -h says so
    with pytest.raises(HelpRequested) as help_:
        load_config(TrainConfig, ["--help"])
    assert all(f"--{key}=" in str(help_.value) for key in ("learning_rate", "mlp", "wandb_mode", "init_from"))


def test_invalid_values_are_config_errors():
    with pytest.raises(ConfigError, match="mlp must be one of"):
        load_config(TrainConfig, ["--mlp=swishglu"])
    with pytest.raises(ConfigError, match="init_from"):
        load_config(TrainConfig, ["--init_from=gpt3"])
    with pytest.raises(ConfigError, match="device must be"):
        load_config(TrainConfig, ["--device=gpu"])
    with pytest.raises(ConfigError, match="compile_mode"):
        load_config(TrainConfig, ["--compile_mode=fast"])


def test_every_shipped_config_loads_and_builds_a_model():
    files = sorted(CONFIG_DIR.glob("*.py"))
    assert len(files) >= 6
    for f in files:
        cfg = load_config(ClassifyConfig if f.name.startswith("classify_") else TrainConfig, [str(f)])
        GPTConfig(**{k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "mlp", "block_size", "dropout")}, vocab_size=50304)


def test_twin_configs_differ_in_mlp_alone():
    twins = [(f, f.with_name(f.name.replace("swiglu", "gelu"))) for f in CONFIG_DIR.glob("*swiglu*.py") if "_char_" not in f.name]
    twins += [(CONFIG_DIR / "classify_tweets.py", CONFIG_DIR / f"classify_tweets_{arm}.py") for arm in ("gelu", "relu")]
    for swiglu, other in twins:
        cls = ClassifyConfig if swiglu.name.startswith("classify_") else TrainConfig
        a, b = load_config(cls, [str(swiglu)]), load_config(cls, [str(other)])
        assert (a.mlp, b.mlp) == ("swiglu", other.stem.split("_")[-1])
        differing = {k for k in vars(a) if getattr(a, k) != getattr(b, k)}
        assert differing == {"mlp", "out_dir", "wandb_run_name"}, swiglu.name


def test_fine_tuning_twins_differ_in_their_backbone_alone():
    a, b = (load_config(ClassifyConfig, [str(CONFIG_DIR / f"classify_tweets_char_{arm}.py"), "--seed=2"]) for arm in ("swiglu", "gelu"))
    assert (a.init_from, b.init_from) == tuple(f"runs/shakespeare_char_small/shakespeare_char_{arm}-s2" for arm in ("swiglu", "gelu"))
    assert {k for k in vars(a) if getattr(a, k) != getattr(b, k)} == {"init_from", "out_dir", "wandb_run_name"}


@dataclass
class Options:
    seeds: str = "3"  # how many seeds
    runs_dir: str = "out"
    wandb: bool = False
    files: tuple[str, ...] = ()
    allow_mismatch: bool = False


def test_options_leave_positionals_and_foreign_keys_to_the_caller():
    options, rest = load_options(
        Options, ["a.py", "--seeds=1,2", "--wandb", "b.py", "--max_iters=3"], "t.py", "t.py [PATH ...]", passthrough=True
    )
    assert options == Options(seeds="1,2", wandb=True) and rest == ["a.py", "b.py", "--max_iters=3"]
    assert load_options(Options, ["--files=a.txt,b.txt"], "t.py", "")[0].files == ("a.txt", "b.txt")
    with pytest.raises(ConfigError, match="'max_iters'"):
        load_options(Options, ["--max_iters=3"], "t.py", "")


def test_argparse_spellings_still_work_with_a_one_line_note(capsys):
    argv = ["--runs-dir", "runs", "--seeds", "5", "--files", "a", "b", "x.py", "--wandb", "--allow-mismatch"]
    options, rest = load_options(Options, argv, "t.py", "")
    assert options == Options(seeds="5", runs_dir="runs", wandb=True, files=("a", "b", "x.py"), allow_mismatch=True) and rest == []
    assert load_options(Options, ["--runs-dir=r", "y.py"], "t.py", "") == (Options(runs_dir="r"), ["y.py"])
    notes = capsys.readouterr().err.splitlines()
    assert notes == [
        "t.py: note: `--runs-dir runs` is deprecated, write --runs_dir=runs",
        "t.py: note: `--seeds 5` is deprecated, write --seeds=5",
        "t.py: note: `--files a b x.py` is deprecated, write --files=a,b,x.py",
        "t.py: note: --allow-mismatch is deprecated, write --allow_mismatch",
        "t.py: note: --runs-dir is deprecated, write --runs_dir",
    ]


def test_options_help_uses_the_scripts_usage_and_comments():
    with pytest.raises(HelpRequested) as help_:
        load_options(Options, ["-h"], "t.py", "t.py [PATH ...] [--key=value ...]", more_help="\nmore")
    text = str(help_.value)
    assert text.startswith("usage: t.py [PATH ...]") and "--seeds='3'  (str) how many seeds" in text and text.endswith("more")
    assert "config files" not in text.lower()
