#!/usr/bin/env bash
# GPU call B: baby-GPT time to quality (6 x 6 x 384, block 256, batch 64, character Shakespeare):
# nanoGPT's train.py with its config/train_shakespeare_char.py as shipped, then ours with SwiGLU.
#   bash scripts/gpu_call_b.sh [OUT_DIR]    right after call A; carry .anchors and data/shakespeare_char
# Every line of output is timed from process start (scripts/timed_run.py), so the curves are val
# loss against the wall time a user waits, compilation and evaluations included.
set -uo pipefail
cd "$(dirname "$0")/.."
work=/tmp/gpu_call_b
rm -rf "$work" .anchors/nanogpt/out-shakespeare-char .anchors/nanogpt/data
source scripts/gpu_lib.sh
record_environment
ln -s ../../data .anchors/nanogpt/data  # nanoGPT reads data/<dataset>/ from its own folder

step nanogpt_char 200 $PY scripts/timed_run.py "$work/nanogpt_char.tlog" -- \
  $PY scripts/nanogpt_run.py --mlp gelu --json "$work/nanogpt_char.json" train.py config/train_shakespeare_char.py
fast="--compile=True --compile_mode=reduce-overhead --fused_gate_up=True --dtype=bfloat16"
# a cheaper evaluation first (40 batches, 655k tokens per split, instead of 200), then as shipped
step ours_char_eval40 120 $PY scripts/timed_run.py "$work/ours_char_eval40.tlog" -- \
  $PY train.py config/shakespeare_char_swiglu.py --out_dir="$work/ours_char_eval40" $fast --eval_iters=40
step ours_char 150 $PY scripts/timed_run.py "$work/ours_char.tlog" -- \
  $PY train.py config/shakespeare_char_swiglu.py --out_dir="$work/ours_char" $fast
finish b "$work" "$out"
