#!/usr/bin/env bash
# Before the GPU calls, on this machine: copy nanoGPT's code and prepare the character data into
# ignored folders that the calls carry (and record the commit). Then, with the device tool, one
# call right after the other (the machine goes back after 30 s idle):
#   run(command="bash scripts/gpu_call_a.sh", carry=[".anchors"])
#   run(command="bash scripts/gpu_call_b.sh", carry=[".anchors", "data/shakespeare_char"])
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
shared=${SHARED:-../shared}
rm -rf .anchors/nanogpt
mkdir -p .anchors
cp -r "$shared/anchors/nanogpt" .anchors/nanogpt
chmod -R u+w .anchors  # shared/ is read-only; nanoGPT writes its out_dir next to its code
echo "$(git rev-parse --short HEAD)$(git status --porcelain --untracked-files=no | grep -q . && echo ' with uncommitted changes')" > .anchors/COMMIT
[ -f data/shakespeare_char/meta.json ] ||
  $PY data/prepare.py "$shared/corpora/shakespeare" --tokenizer=char --out_dir=data/shakespeare_char
# nanoGPT reads the vocabulary size from meta.pkl next to the same train.bin and val.bin
$PY -c "import json, pickle; m = json.load(open('data/shakespeare_char/meta.json')); pickle.dump({'vocab_size': m['vocab_size']}, open('data/shakespeare_char/meta.pkl', 'wb'))"
du -sh .anchors data/shakespeare_char
