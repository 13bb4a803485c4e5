#!/usr/bin/env bash
# Every GPU measurement of docs/performance.md in one call: `bash scripts/gpu_bench.sh [OUT_DIR]`.
# Writes full logs and JSON under OUT_DIR (default: $OUT, else gpu_bench_out) and prints a short
# table last. Needs torch with CUDA; set TIKTOKEN_CACHE_DIR (or network) for the char data step.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_bench_out}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"

gpt2="config/gpt2_124m_swiglu.py --batch_size=16 --gradient_accumulation_steps=1 --vocab_size=50304"
run() {  # name, then bench.py arguments
  local name=$1; shift
  timeout 300 python bench.py "$@" --steps=20 --warmup=5 --json="$out/$name.json" 2>&1 | tee "$out/$name.log"
}
# 1. nanoGPT's recipe (compile, bf16, fused AdamW, full fp32 logits) for both arms
run plain $gpt2 --compile=True --compare mlp=gelu,swiglu
# 2. every speed switch on: chunked loss (no full-vocabulary logits), then CUDA graphs on top
run chunked $gpt2 --compile=True --loss_chunk_size=4096 --compare mlp=gelu,swiglu
run graphs $gpt2 --compile=True --loss_chunk_size=4096 --compile_mode=reduce-overhead --compare mlp=gelu,swiglu

# 3. time to quality: the baby GPT, nanoGPT's recipe vs every switch on (needs data/shakespeare_char:
#    python data/prepare.py --input PATH/TO/shakespeare --tokenizer char --out-dir data/shakespeare_char)
if [ -f data/shakespeare_char/meta.json ]; then
  for arm in gelu swiglu; do
    timeout 400 python train.py config/shakespeare_char_$arm.py --compile=True --out_dir="$out/baby_plain_$arm" \
      --fused_adamw=False --prefetch=False 2>&1 | tail -n 3 | tee "$out/baby_plain_$arm.log"
    timeout 400 python train.py config/shakespeare_char_$arm.py --compile=True --out_dir="$out/baby_fast_$arm" \
      --compile_mode=reduce-overhead 2>&1 | tail -n 3 | tee "$out/baby_fast_$arm.log"
  done
fi

python - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print(f"{'setting':>10} {'mlp':>7} {'ms/step':>8} {'tok/s':>9} {'TFLOP/s':>8} {'MFU':>6} {'mem GB':>7}")
for name in ("plain", "chunked", "graphs"):
    path = out / f"{name}.json"
    for r in json.loads(path.read_text()) if path.exists() else []:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] else "n/a"
        print(f"{name:>10} {r['mlp']:>7} {r['ms_per_step']:8.1f} {r['tokens_per_s']:9,.0f} {r['tflops']:8.1f} {mfu:>6} {r['peak_memory_gb']:7.1f}")
EOF
