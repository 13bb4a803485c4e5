#!/usr/bin/env bash
# GPU call A: the GPT-2 124M training step (batch 16 x 1024, bf16, torch.compile), nanoGPT's own
# bench.py (GELU, and SwiGLU swapped in) side by side with ours (plain, all switches, each switch).
#   bash scripts/gpu_call_a.sh [OUT_DIR]    after scripts/gpu_prepare.sh; carry .anchors
# Rows run in order of importance, so a slow compile costs the least useful rows.
set -uo pipefail
cd "$(dirname "$0")/.."
work=/tmp/gpu_call_a
rm -rf "$work"
source scripts/gpu_lib.sh
record_environment

nano() {  # ARM: nanoGPT's bench.py, random tokens as in its real_data=False mode
  step "nanogpt_$1" 150 $PY scripts/nanogpt_run.py --mlp "$1" --json "$work/nanogpt_$1.json" bench.py --batch_size=16 --real_data=False --compile=True
}
ours() {  # NAME [--key=value ...]: our bench.py, each row in a fresh process
  local name=$1
  shift
  step "ours_$name" 200 $PY bench.py config/gpt2_124m_swiglu.py --batch_size=16 --gradient_accumulation_steps=1 \
    --dtype=bfloat16 --compile=True --steps=20 --warmup=5 --json="$work/ours_$name.json" "$@"
}
all="--loss_chunk_size=4096 --fused_gate_up=True --sdpa_backend=cudnn --autocast=False --compile_mode=reduce-overhead"

nano swiglu
ours all $all --compare mlp=swiglu,gelu --profile
ours plain --compare mlp=swiglu,gelu
nano gelu
ours chunked --loss_chunk_size=4096
ours graphs --compile_mode=reduce-overhead
ours fused --fused_gate_up=True
ours cudnn --sdpa_backend=cudnn
ours explicit_bf16 --autocast=False
finish a "$work" "$out"
