#!/usr/bin/env bash
# GPU call A: the GPT-2 124M training step (batch 16 x 1024, bf16, torch.compile), nanoGPT's own
# bench.py (SwiGLU swapped in, and GELU) side by side with ours (plain, all switches, each switch).
#   bash scripts/gpu_call_a.sh [OUT_DIR]    right after scripts/gpu_prepare.sh; carry .anchors
# Rows run in order of importance, so a slow compile costs the least useful rows. First, a few
# seconds of correctness checks of the switches on the GPU (scripts/gpu_check.py).
set -uo pipefail
cd "$(dirname "$0")/.."
work=/tmp/gpu_call_a
rm -rf "$work"
source scripts/gpu_lib.sh
record_environment

nano() {  # ARM: nanoGPT's bench.py, random tokens as in its real_data=False mode
  step "nanogpt_$1" 120 $PY scripts/nanogpt_run.py --mlp "$1" --json "$work/nanogpt_$1.json" bench.py --batch_size=16 --real_data=False --compile=True
}
ours() {  # NAME SECONDS [--key=value ...]: our bench.py, each row in a fresh process
  local name=$1 limit=$2
  shift 2
  step "ours_$name" "$limit" $PY bench.py config/gpt2_124m_swiglu.py --batch_size=16 --gradient_accumulation_steps=1 \
    --dtype=bfloat16 --compile=True --steps=20 --warmup=5 --json="$work/ours_$name.json" "$@"
}
all="--loss_chunk_size=4096 --fused_gate_up=True --sdpa_backend=cudnn --autocast=False --compile_mode=reduce-overhead"

step check 60 $PY scripts/gpu_check.py
nano swiglu
ours plain 100 --compare=mlp=swiglu
ours all 200 $all --compare=mlp=swiglu,gelu --profile
nano gelu
ours graphs 90 --compile_mode=reduce-overhead
ours chunked 90 --loss_chunk_size=4096
ours fused 90 --fused_gate_up=True
ours cudnn 90 --sdpa_backend=cudnn
ours explicit_bf16 90 --autocast=False
finish a "$work" "$out"
