"""
Sample text from a trained model (KV-cached generation, the tokenizer the data was prepared with).

    python sample.py --out_dir=out/swiglu --start="ROMEO:" --num_samples=3 --max_new_tokens=200
    python sample.py --out_dir=out/swiglu --start=FILE:prompt.txt --top_p=0.9 --seed=7

FILE:path reads any file the user running the script can read (it must be UTF-8 text); the
checkpoint is loaded as plain data only, so a ckpt.pt from elsewhere cannot run code.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from core.entry import interrupt_guard, run_main

with interrupt_guard(__name__, "sample.py"):  # torch takes seconds to import
    import torch

    from core.checkpoint import MODEL_KEYS, load_checkpoint, model_from_checkpoint
    from core.configurator import ConfigError, load_config
    from core.hardware import autocast, check_device, check_dtype, resolve_device, resolve_dtype
    from data.tokenizer import tokenizer_from_meta


@dataclass
class SampleConfig:
    out_dir: str = "out"  # the training run whose ckpt.pt to load
    start: str = "\n"  # the prompt, or FILE:path to read it from a UTF-8 file (any file this user can read)
    num_samples: int = 3
    max_new_tokens: int = 200
    temperature: float = 0.8  # 0 = greedy
    top_k: int | None = 200  # keep the k most likely tokens; None = all
    top_p: float | None = None  # nucleus sampling: keep the smallest set holding this much probability
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self):
        check_device(self.device)
        check_dtype(self.dtype)
        if self.top_k is not None and self.top_k <= 0:
            raise ValueError(f"top_k must be positive or None, got {self.top_k}")
        if self.num_samples <= 0 or self.max_new_tokens < 0:
            raise ValueError("num_samples must be positive and max_new_tokens non-negative")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def read_prompt(start):
    """The prompt text: `start` itself, or the file it names as FILE:path."""
    if not start.startswith("FILE:"):
        return start
    path = Path(start[len("FILE:") :])
    if not path.is_file():
        raise ConfigError(f"prompt file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"prompt file {path} is not UTF-8 text; give a text file or the prompt itself") from None
    except OSError as e:
        raise ConfigError(f"cannot read prompt file {path} ({e.strerror})") from None


def generate_samples(cfg):
    """The generated texts (prompt included), reproducible for a given seed."""
    device = resolve_device(cfg.device)  # the device and the prompt before the slow load: mistakes show at once
    text = read_prompt(cfg.start)
    checkpoint = load_checkpoint(cfg.out_dir, required=MODEL_KEYS)
    tokenizer = tokenizer_from_meta(checkpoint["data_meta"])
    model = model_from_checkpoint(checkpoint).to(device).eval()
    prompt = tokenizer.encode(text) or [tokenizer.eot_id]
    idx = torch.tensor([prompt] * cfg.num_samples, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    with autocast(device, resolve_dtype(cfg.dtype, device)):
        out = model.generate(
            idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, generator=generator, vocab_limit=tokenizer.vocab_size
        )
    return [tokenizer.decode(row.tolist()) for row in out]


def print_samples(argv):
    """Load the config, generate, print each sample followed by a separator line."""
    cfg = load_config(SampleConfig, argv, prog="sample.py", description=__doc__.strip().splitlines()[0])
    for text in generate_samples(cfg):
        print(text)
        print("---------------")


def main(argv=None):
    return run_main("sample.py", lambda: print_samples(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
