"""Hugging Face interop: export to transformers, import from it (init_from), each block on the class that computes it."""

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from conftest import ROOT, tiny_argv, tiny_config, tiny_encoding

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig  # noqa: E402

import export  # noqa: E402
import sample  # noqa: E402
import train  # noqa: E402
from core.checkpoint import save_checkpoint  # noqa: E402
from core.hf import gpt_from_hf, load_hf_model, model_type, save_tokenizer  # noqa: E402
from data.dataset import open_dataset  # noqa: E402
from data.tokenizer import CharTokenizer, TiktokenTokenizer  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

CHARS = "abcdefgh \n"
TINY = dict(block_size=16, n_layer=2, n_head=2, n_embd=16)
# every block and arm that a transformers class computes, and the class
EXPORTABLE = [
    (dict(mlp="gelu"), "gpt2"),
    (dict(mlp="gelu_tanh", bias=False), "gpt2"),
    (dict(mlp="relu2", tie_embeddings=False), "gpt2"),
    (dict(mlp="swiglu", norm="rmsnorm", pos="rope", bias=False), "llama"),
    (dict(mlp="geglu", norm="rmsnorm", pos="rope", bias=True, rope_theta=500.0), "llama"),
    (dict(mlp="gelu", norm="rmsnorm", pos="rope", bias=False, tie_embeddings=False), "arcee"),
    (dict(mlp="swiglu", norm="rmsnorm", pos="rope", qk_norm=True, bias=False), "qwen3"),
    (dict(mlp="relu2", norm="rmsnorm", pos="rope", qk_norm=True, bias=False), "apertus"),
]


def random_gpt(vocab_size, **block):
    """A tiny GPT whose norm weights and biases are not their init values, so a mapping that drops them shows."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, **{**TINY, **block})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def export_run(tmp_path, model, meta, *args):
    """Save `model` as a run's checkpoint and export it with export.py; (exit status, the folder)."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    save_checkpoint(run, {"model": model.state_dict(), "model_args": asdict(model.config), "data_meta": meta})
    return export.main([f"--out_dir={run}", *args]), run / "hf"


@pytest.mark.parametrize("block,kind", EXPORTABLE)
def test_exported_model_computes_our_logits(tmp_path, block, kind):
    tokenizer = CharTokenizer(CHARS)
    model = random_gpt(tokenizer.vocab_size, **block)
    code, folder = export_run(tmp_path, model, tokenizer.meta())
    assert code == 0
    hf_model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert hf_model.config.model_type == kind
    idx = torch.randint(0, tokenizer.vocab_size, (3, TINY["block_size"]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(idx)[0], hf_model(idx).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    # and back: the folder imports as the same function
    with torch.no_grad():
        assert (gpt_from_hf(hf_model).eval()(idx)[0] - ours).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    "block,message",
    [
        (dict(mlp="swiglu"), "gated MLP"),
        (dict(mlp="swiglu", swish_beta=True, norm="rmsnorm", pos="rope"), "learnable swish"),
        (dict(mlp="gelu", norm="rmsnorm"), "norm=rmsnorm with pos=learned"),
        (dict(mlp="gelu", norm="rmsnorm", pos="rope", qk_norm=True, bias=True), "use bias=False"),
    ],
)
def test_a_block_no_class_computes_is_refused_in_one_line(tmp_path, capsys, block, message):
    tokenizer = CharTokenizer(CHARS)
    code, folder = export_run(tmp_path, random_gpt(tokenizer.vocab_size, **block), tokenizer.meta())
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not folder.exists() and [p.name for p in tmp_path.joinpath("run").iterdir()] == ["ckpt.pt"]


def test_missing_or_foreign_checkpoint_and_existing_folder_are_refused(tmp_path, capsys):
    assert export.main([f"--out_dir={tmp_path / 'nowhere'}"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign" / "ckpt.pt")
    assert export.main([f"--out_dir={tmp_path / 'foreign'}"]) == 2
    assert "lacks model, model_args, data_meta" in capsys.readouterr().err
    tokenizer = CharTokenizer(CHARS)
    model = random_gpt(tokenizer.vocab_size, mlp="gelu")
    assert export_run(tmp_path, model, tokenizer.meta())[0] == 0
    capsys.readouterr()
    code, folder = export_run(tmp_path, random_gpt(tokenizer.vocab_size, mlp="relu"), tokenizer.meta())
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert AutoModelForCausalLM.from_pretrained(folder).config.activation_function == "gelu"  # untouched
    code, folder = export_run(tmp_path, random_gpt(tokenizer.vocab_size, mlp="relu"), tokenizer.meta(), "--overwrite=True")
    assert code == 0 and AutoModelForCausalLM.from_pretrained(folder).config.activation_function == "relu"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ckpt.pt", "hf"]  # no staging folder left


@pytest.mark.parametrize("tokenizer", [CharTokenizer(CHARS + "é日"), TiktokenTokenizer(tiny_encoding())], ids=["char", "bpe"])
def test_exported_tokenizer_gives_our_ids_and_text(tmp_path, tokenizer):
    save_tokenizer(tokenizer, tmp_path, block_size=16)
    theirs = AutoTokenizer.from_pretrained(tmp_path)
    text = "the cat\n\n  had a bed  é日\tthe end" if isinstance(tokenizer, TiktokenTokenizer) else "bad cafe\n héé日 "
    ids = tokenizer.encode(text)
    assert theirs.encode(text) == ids and theirs.decode(ids) == text
    assert theirs.eos_token_id == theirs.bos_token_id == tokenizer.eot_id
    assert len(theirs) == tokenizer.vocab_size


@pytest.fixture(scope="module")
def trained_runs(char_data, tmp_path_factory):
    """Two trained tiny runs, the GPT-2 block and the modern block, each exported by export.py."""
    runs = {}
    for name, block in {"gpt2": dict(mlp="gelu"), "llama": dict(mlp="swiglu", norm="rmsnorm", pos="rope")}.items():
        out = tmp_path_factory.mktemp("runs") / name
        train.train(tiny_config(char_data, out, max_iters=60, eval_interval=60, **block))
        assert export.main([f"--out_dir={out}"]) == 0
        runs[name] = out
    return runs


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_greedy_generation_in_transformers_equals_sample_py(trained_runs, capsys, name):
    run = trained_runs[name]
    capsys.readouterr()
    args = [f"--out_dir={run}", "--device=cpu", "--start=the dog", "--temperature=0", "--num_samples=1", "--max_new_tokens=20"]
    assert sample.main(args) == 0
    ours = capsys.readouterr().out.split("---------------\n")[0][:-1]  # print's newline
    tokenizer = AutoTokenizer.from_pretrained(run / "hf")
    model = AutoModelForCausalLM.from_pretrained(run / "hf").eval()
    prompt = tokenizer("the dog", return_tensors="pt").input_ids
    no_stop = GenerationConfig(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=tokenizer.eos_token_id)
    theirs = tokenizer.decode(model.generate(prompt, generation_config=no_stop)[0])
    assert len(ours) == len("the dog") + 20 and theirs == ours


def test_init_from_an_exported_folder_continues_from_its_weights(trained_runs, char_data, tmp_path):
    folder = trained_runs["llama"] / "hf"
    summary = train.train(tiny_config(char_data, tmp_path / "tuned", init_from=str(folder), max_iters=1, eval_interval=1, n_layer=5))
    record = json.loads((trained_runs["llama"] / "metrics.jsonl").read_text().splitlines()[-2])
    assert abs(summary["best_val_loss"] - record["val_loss"]) < 0.05  # one small step from the exported weights
    saved = torch.load(tmp_path / "tuned" / "ckpt.pt", weights_only=True)
    assert saved["model_args"]["n_layer"] == 2 and saved["config"]["n_layer"] == 2  # the shape is the folder's, not the config's
    assert saved["model_args"]["mlp"] == "swiglu" and saved["pretrained_from"] == str(folder)
    # a resume takes that shape too, though the config still says n_layer=5
    resumed = train.train(tiny_config(char_data, tmp_path / "tuned", init_from="resume", max_iters=2, eval_interval=1, n_layer=5))
    assert resumed["iter"] == 2 and not resumed["interrupted"]


def test_init_from_a_folder_of_another_tokenizer_is_refused(trained_runs, tmp_path, capsys):
    from data.prepare import prepare

    other = tmp_path / "other_chars"
    prepare(["xyz " * 200], other, "char", val_fraction=0.1)
    args = tiny_argv(data_dir=other, out_dir=tmp_path / "out", init_from=trained_runs["gpt2"] / "hf")
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "is not the one the model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "ckpt.pt").exists()


def save_tiny_gpt2(folder, vocab_size, **config):
    """A randomly initialised tiny GPT2LMHeadModel, as OpenAI's (gelu_new, biases, tied), saved with save_pretrained."""
    torch.manual_seed(0)
    gpt2_config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=32, n_embd=32, n_layer=2, n_head=2, **config)
    model = transformers.GPT2LMHeadModel(gpt2_config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model


def test_import_of_a_gpt2_folder_gives_its_logits(tmp_path):
    theirs = save_tiny_gpt2(tmp_path / "gpt2", vocab_size=50)
    ours = gpt_from_hf(load_hf_model(str(tmp_path / "gpt2"))).eval()
    assert ours.config.mlp == "gelu_tanh" and ours.config.bias and model_type(ours.config) == "gpt2"
    idx = torch.randint(0, 50, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(idx)[0] - theirs(idx).logits).abs().max().item() <= 1e-4
    cropped = gpt_from_hf(load_hf_model(str(tmp_path / "gpt2")), block_size=8).eval()
    with torch.no_grad():  # nanoGPT's crop: a shorter context, the same logits on it
        assert (cropped(idx[:, :8])[0] - theirs(idx[:, :8]).logits).abs().max().item() <= 1e-4


def test_fine_tuning_from_a_gpt2_folder_trains(char_data, tmp_path):
    save_tiny_gpt2(tmp_path / "gpt2", vocab_size=64)
    cfg = tiny_config(
        char_data, tmp_path / "out", init_from=str(tmp_path / "gpt2"), mlp="swiglu", dropout=0.1, max_iters=20, eval_interval=20
    )
    summary = train.train(cfg)
    assert summary["final_val_loss"] < 3.0  # from ln(64) = 4.16 at random init: it learned
    assert cfg.mlp == "gelu_tanh" and cfg.dropout == 0.1 and cfg.wandb_run_name == "gpt2-s1337"
    assert open_dataset(char_data).vocab_size <= 64


@pytest.mark.parametrize(
    "init_from,message",
    [
        ("gpt2-huge", "unknown GPT-2 name 'gpt2-huge'"),
        ("{tmp}", "holds no config.json"),
        ("{tmp}/missing", "neither scratch, resume"),
    ],
)
def test_bad_init_from_is_one_line(char_data, tmp_path, capsys, init_from, message):
    code = train.main(tiny_argv(data_dir=char_data, out_dir=tmp_path / "out", init_from=init_from.format(tmp=tmp_path)))
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_architecture_we_do_not_compute_is_refused(char_data, tmp_path, capsys):
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2
    )
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "gqa")
    transformers.GPTNeoXForCausalLM(
        transformers.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    ).save_pretrained(tmp_path / "neox")
    capsys.readouterr()
    for folder, message in ((tmp_path / "gqa", "num_key_value_heads=2"), (tmp_path / "neox", "a gpt_neox model is not a block we compute")):
        assert train.main(tiny_argv(data_dir=char_data, out_dir=tmp_path / "out", init_from=folder)) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "ckpt.pt").exists()


def test_gpt2_without_network_says_so_in_one_line(tmp_path):
    # a fresh process: huggingface_hub reads HF_HUB_OFFLINE (the state of a machine without network) when imported
    program = "from core.hf import HFError, load_hf_model\ntry:\n    load_hf_model('gpt2')\nexcept HFError as e:\n    print(e)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}  # and no cached copy
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().startswith("could not download gpt2 from the Hugging Face hub")
    assert done.stdout.strip().endswith("init_from=gpt2 needs network")
