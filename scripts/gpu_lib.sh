# Sourced by gpu_call_a.sh and gpu_call_b.sh. Steps run one after another, each with a time limit
# cut down to what is left of the call's budget; a step with too little time left is skipped and
# named, a step cut at the budget is named, and a step that fails or hangs within its own limit
# prints the end of its log and makes the call exit non-zero, but the steps after it still run.
# Logs and checkpoints stay in $work (under /tmp); only a few small files go to $out, because
# the device tool brings back at most 8 files.
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
out=${1:-${OUT:-gpu_out}}
budget=${BUDGET_S:-330}  # seconds for all steps; two calls and a machine start fit 15 minutes
mkdir -p "$out" "$work"
failed=()

record_environment() {
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    $PY -c "import numpy, tqdm, tiktoken, matplotlib" || echo "MISSING a package ours needs (above)"
    echo "commit $(cat .anchors/COMMIT 2>/dev/null || echo unknown)"
    date -u +%Y-%m-%dT%H:%M:%SZ
  } 2>&1 | tee "$out/environment.txt"
}

step() {  # NAME SECONDS COMMAND...: run COMMAND, its output in $work/NAME.log
  local name=$1 limit=$2 left=$((budget - SECONDS)) status
  shift 2
  if ((left < 40)); then
    echo "SKIPPED $name: ${left}s left of the call's ${budget}s" | tee -a "$work/skipped.txt"
    return
  fi
  local capped=$((limit > left))
  ((capped)) && limit=$left
  echo "=== $name (at ${SECONDS}s, limit ${limit}s)"
  timeout "$limit" "$@" > "$work/$name.log" 2>&1
  status=$?
  if ((status == 124 && capped)); then
    echo "CUT $name at the call's budget (${budget}s)" | tee -a "$work/skipped.txt"
  elif ((status != 0)); then
    failed+=("$name")
    echo "FAILED $name (status $status); the end of its log:"
    tail -n 15 "$work/$name.log"
  fi
}

finish() {  # collect the logs into one file, print the report, exit non-zero if a step failed
  for log in "$work"/*.log; do echo "===== $(basename "$log")"; cat "$log"; done > "$out/logs.txt"
  [ -f "$work/skipped.txt" ] && cat "$work/skipped.txt"
  $PY scripts/gpu_report.py "$@" || failed+=(report)
  if ((${#failed[@]})); then
    echo "FAILED steps: ${failed[*]} (full logs in logs.txt)" >&2
    exit 1
  fi
}
