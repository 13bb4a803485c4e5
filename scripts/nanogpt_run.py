"""
Run one of nanoGPT's own scripts unmodified, with its MLP swapped for SwiGLU when asked.

    python3 scripts/nanogpt_run.py --mlp swiglu --json out.json bench.py --batch_size=16 --real_data=False
    python3 scripts/nanogpt_run.py --mlp gelu train.py config/train_shakespeare_char.py

nanoGPT's code (MIT) is read from --nanogpt (default .anchors/nanogpt, where scripts/gpu_prepare.sh
copies it) and runs with that folder as its working directory, as nanoGPT expects. Only its
`model.MLP` is replaced, before its script builds the model; everything else is its own. With
--json, what the script left behind is measured: tokens/s and MFU (bench.py) or the best val loss
(train.py), and the peak GPU memory.

A measurement tool, not one of the project's scripts: its few flags come before nanoGPT's script,
and everything after that belongs to nanoGPT's own configurator, so plain argparse suits it.
"""

import argparse
import json
import math
import os
import runpy
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class SwiGLU(nn.Module):
    """W_down(SiLU(W_gate x) * W_up x) with the 2/3 rule, written the plain way a nanoGPT user would.

    The down-projection is named c_proj so that nanoGPT's init scales it like its GELU MLP's.
    """

    def __init__(self, config):
        super().__init__()
        hidden = 16 * math.ceil(round(8 * config.n_embd / 3) / 16)
        self.w_gate = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.w_up = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.silu(self.w_gate(x)) * self.w_up(x)))


def measurements(namespace, peak_tflops):
    """What a finished nanoGPT script's globals say about its run."""
    result = {"peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None}
    model = namespace.get("model")
    if model is not None:
        result["params"] = sum(p.numel() for p in model.parameters())
    if "best_val_loss" in namespace:  # train.py
        result["best_val_loss"] = float(namespace["best_val_loss"])
    if "dt" in namespace and "num_steps" in namespace:  # bench.py: dt is the timed stage's wall time
        cfg = model.config
        seconds = namespace["dt"] / namespace["num_steps"]
        tokens_per_s = namespace["batch_size"] * namespace["block_size"] / seconds
        # nanoGPT's own FLOP count (its estimate_mfu), over the peak given here instead of an A100's
        flops_per_token = 6 * model.get_num_params() + 12 * cfg.n_layer * cfg.n_embd * namespace["block_size"]
        result.update(
            ms_per_step=1000 * seconds,
            tokens_per_s=tokens_per_s,
            tflops=flops_per_token * tokens_per_s / 1e12,
            mfu=flops_per_token * tokens_per_s / (peak_tflops * 1e12),
        )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--nanogpt", default=".anchors/nanogpt", help="folder holding nanoGPT's code")
    parser.add_argument("--mlp", choices=("gelu", "swiglu"), default="gelu")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--peak", type=float, default=989.0, help="device peak in TFLOP/s for MFU (H100/H200 SXM dense bf16)")
    parser.add_argument("script", help="nanoGPT's script, e.g. bench.py or train.py")
    args, rest = parser.parse_known_args()
    json_path = Path(args.json).resolve() if args.json else None
    os.chdir(args.nanogpt)
    sys.path.insert(0, os.getcwd())
    import model as nanogpt_model  # nanoGPT's model.py, from the folder just entered

    if args.mlp == "swiglu":
        nanogpt_model.MLP = SwiGLU  # Block looks MLP up when it is built
    sys.argv = [args.script, *rest]
    namespace = runpy.run_path(args.script, run_name="__main__")
    result = {"source": "nanoGPT", "mlp": args.mlp, "script": args.script, "args": rest, **measurements(namespace, args.peak)}
    print(json.dumps(result))
    if json_path:
        json_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
