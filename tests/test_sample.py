import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ctrl_c_while_importing, tiny_config

import sample
from model import GPT, GPTConfig
from train import train

ROOT = Path(sample.__file__).resolve().parent


@pytest.fixture(scope="module")
def trained_run(char_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    train(tiny_config(char_data, out, max_iters=30, eval_interval=30, eval_iters=2, log_interval=10))
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


@pytest.mark.parametrize(
    "args,message",
    [
        (["--start=FILE:/nowhere.txt"], "prompt file not found"),
        (["--top_p=2"], "top_p"),
        (["--tempreature=1"], "temperature"),
        (["--top_k=0"], "top_k"),
        (["--device=gpu"], "device"),
        (["--start=Zebra"], "not in the char vocabulary"),
    ],
)
def test_bad_input_is_one_line(trained_run, capsys, args, message):
    code, _, err = sample_text(trained_run, capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = sample_text(tmp_path, capsys)
    assert code == 2 and "no checkpoint" in err


def test_a_binary_prompt_file_is_one_line(trained_run, capsys, tmp_path):
    prompt = tmp_path / "prompt.bin"
    prompt.write_bytes(bytes(range(256)))
    code, _, err = sample_text(trained_run, capsys, f"--start=FILE:{prompt}")
    assert code == 2 and err == f"error: prompt file {prompt} is not UTF-8 text; give a text file or the prompt itself\n"


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_a_device_this_machine_lacks_is_one_line(trained_run, capsys, device):
    code, _, err = sample_text(trained_run, capsys, f"--device={device}")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: device '{device}' was asked for but ") and err.endswith("; use --device=cpu or --device=auto\n")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "code_ran"

    class RunsCode:
        def __reduce__(self):
            return open, (str(marker), "w")

    torch.save({"model": RunsCode()}, tmp_path / "ckpt.pt")
    code, _, err = sample_text(tmp_path, capsys)
    assert code == 2 and err.count("\n") == 1 and "not plain data" in err
    assert not marker.exists()


def test_ctrl_c_while_torch_imports_is_one_line():
    result = ctrl_c_while_importing("sample.py", "torch")
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "sample.py: interrupted by SIGINT\n")


def test_ctrl_c_while_sampling_is_one_line(trained_run):
    program = f"""
import os, signal, sys
import sample
signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))  # a real Ctrl-C, 0.5 s into main()
signal.setitimer(signal.ITIMER_REAL, 0.5)
sys.exit(sample.main(["--out_dir={trained_run}", "--device=cpu", "--start=the", "--max_new_tokens=1000000"]))
"""
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "sample.py: interrupted by SIGINT\n")


def test_sampling_never_picks_ids_past_the_tokenizers_vocabulary():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        model.lm_head.weight[40:] *= 50  # make the padded ids the likeliest
    out = model.generate(torch.zeros(4, 1, dtype=torch.long), 20, top_k=None, vocab_limit=40, generator=torch.Generator().manual_seed(0))
    assert out.max() < 40
    assert model.generate(torch.zeros(4, 1, dtype=torch.long), 20, top_k=None, generator=torch.Generator().manual_seed(0)).max() >= 40
