import pytest
import torch

import sample
from checkpoint import clean_state_dict, load_checkpoint, model_from_checkpoint, save_checkpoint
from model import GPT, GPTConfig
from train import TrainConfig, train


@pytest.fixture(scope="module")
def trained_run(char_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    train(TrainConfig(data_dir=char_data, out_dir=str(out), n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8,
                      max_iters=30, eval_interval=30, eval_iters=2, log_interval=10, learning_rate=1e-2, device="cpu", dtype="float32"))
    return out


def sample_text(run, capsys, *args):
    code = sample.main([f"--out_dir={run}", "--device=cpu", "--num_samples=2", "--max_new_tokens=40", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_same_seed_same_text_other_seed_other_text(trained_run, capsys):
    code, first, _ = sample_text(trained_run, capsys, "--start=the cat", "--seed=3")
    assert code == 0
    assert sample_text(trained_run, capsys, "--start=the cat", "--seed=3")[1] == first
    assert sample_text(trained_run, capsys, "--start=the cat", "--seed=4")[1] != first
    texts = first.split("---------------\n")
    assert len(texts) == 3 and all(t.startswith("the cat") for t in texts[:2])
    assert set("".join(texts)) <= set("thecatsonmdgrbiu .\n-\x00")  # the char vocabulary of the training data


def test_prompt_from_file_and_greedy_decoding(trained_run, capsys, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("the dog")
    code, out, _ = sample_text(trained_run, capsys, f"--start=FILE:{prompt}", "--temperature=0", "--top_k=None")
    assert code == 0
    first, second = out.split("---------------\n")[:2]
    assert first == second and first.startswith("the dog")  # greedy: both samples are the same


@pytest.mark.parametrize("args,message", [(["--start=FILE:/nowhere.txt"], "prompt file not found"), (["--top_p=2"], "top_p"),
                                          (["--tempreature=1"], "temperature"), (["--top_k=0"], "top_k"), (["--device=gpu"], "device"),
                                          (["--start=Zebra"], "not in the char vocabulary")])
def test_bad_input_is_one_line(trained_run, capsys, args, message):
    code, _, err = sample_text(trained_run, capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = sample_text(tmp_path, capsys)
    assert code == 2 and "no checkpoint" in err


def test_sampling_never_picks_ids_past_the_tokenizers_vocabulary():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        model.lm_head.weight[40:] *= 50  # make the padded ids the likeliest
    out = model.generate(torch.zeros(4, 1, dtype=torch.long), 20, top_k=None, vocab_limit=40, generator=torch.Generator().manual_seed(0))
    assert out.max() < 40
    assert model.generate(torch.zeros(4, 1, dtype=torch.long), 20, top_k=None, generator=torch.Generator().manual_seed(0)).max() >= 40


def test_checkpoint_of_a_compiled_model_loads_into_a_plain_one_and_back(tmp_path):
    config = GPTConfig(block_size=8, vocab_size=32, n_layer=1, n_head=2, n_embd=16, mlp="swiglu")
    compiled = torch.compile(GPT(config))  # compiles lazily: building the wrapper is cheap
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    save_checkpoint(tmp_path, {"model": compiled.state_dict(), "model_args": vars(config)})
    plain = model_from_checkpoint(load_checkpoint(tmp_path))
    for (name, a), b in zip(compiled._orig_mod.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name
    other = torch.compile(GPT(config))
    other._orig_mod.load_state_dict(clean_state_dict(plain.state_dict()))
    assert torch.equal(other._orig_mod.lm_head.weight, plain.lm_head.weight)


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path):
    save_checkpoint(tmp_path, {"iter": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path, {"iter": 2, "bad": Unpicklable()})
    assert load_checkpoint(tmp_path)["iter"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
