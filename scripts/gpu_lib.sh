# Sourced by gpu_call_a.sh and gpu_call_b.sh. Steps run one after another; a failed step is
# reported with the end of its log and makes the call exit non-zero at the end, but the steps
# after it still run. A step that would end past the call's budget is skipped and says so.
# Logs and checkpoints stay in $work (under /tmp); only a few small files go to $out, because
# the device tool brings back at most 8 files.
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
out=${1:-${OUT:-gpu_out}}
budget=${BUDGET_S:-400}  # seconds for all steps: the call's 7 minutes, less start-up and the report
mkdir -p "$out" "$work"
failed=()

record_environment() {
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo "commit $(cat .anchors/COMMIT 2>/dev/null || echo unknown)"
    date -u +%Y-%m-%dT%H:%M:%SZ
  } 2>&1 | tee "$out/environment.txt"
}

step() {  # NAME SECONDS COMMAND...: run COMMAND with a time limit, its output in $work/NAME.log
  local name=$1 limit=$2
  shift 2
  if (( SECONDS + limit > budget )); then
    echo "SKIPPED $name: it could run past the call's budget of ${budget}s" | tee -a "$work/skipped.txt"
    return
  fi
  echo "=== $name (at ${SECONDS}s, limit ${limit}s)"
  if ! timeout "$limit" "$@" > "$work/$name.log" 2>&1; then
    failed+=("$name")
    echo "FAILED $name; the end of its log:"
    tail -n 15 "$work/$name.log"
  fi
}

finish() {  # collect the logs into one file, print the report, exit non-zero if a step failed
  for log in "$work"/*.log; do echo "===== $(basename "$log")"; cat "$log"; done > "$out/logs.txt"
  [ -f "$work/skipped.txt" ] && cat "$work/skipped.txt"
  $PY scripts/gpu_report.py "$@" || failed+=(report)
  if (( ${#failed[@]} )); then
    echo "FAILED steps: ${failed[*]} (full logs in logs.txt)" >&2
    exit 1
  fi
}
