#!/usr/bin/env bash
# Merge benchmark: `loam merge` against PEFT's merge_and_unload + save_pretrained, and the
# disk's own copy speed, on the same base model and adapter.
#
#   scripts/bench/merge.sh [--model DIR] [--adapter DIR] [--dir DIR]
#
#   --model DIR    base model (default $LOAM_FIXTURES/models/smollm2-135m, f32, 538 MB)
#   --adapter DIR  PEFT LoRA adapter for it (default: one made here by `loam train`, 1 step,
#                  r 16 on all linear layers)
#   --dir DIR      work directory (default /tmp/loam-bench-merge)
#
# Prints wall time, GB/s of merged weights written, and peak RSS (GNU time) for loam and the
# reference, and `cp` of the same safetensors as the disk's copy speed. Every run starts with
# a warm page cache (the base was just read), so the numbers compare the tools, not the disk.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/bench/common.sh"
MODEL="$LOAM_FIXTURES/models/smollm2-135m"
ADAPTER=""
DIR=/tmp/loam-bench-merge
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --adapter) ADAPTER="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_preflight "$MODEL/config.json"
need_gnu_time
mkdir -p "$DIR"

if [ -z "$ADAPTER" ]; then
  ADAPTER="$DIR/run/adapter"
  if [ ! -f "$ADAPTER/adapter_model.safetensors" ]; then
    "$PY" -c "import pyarrow as pa, pyarrow.parquet as pq, sys; pq.write_table(pa.table({'text': ['a merge benchmark needs one trained step'] * 8}), sys.argv[1])" "$DIR/text.parquet"
    cat > "$DIR/recipe.toml" <<TOML
[model]
path = "$MODEL"
dtype = "f32"
device = "cpu"
[lora]
r = 16
alpha = 32
targets = "all-linear"
[data]
seq_len = 32
[[data.train]]
path = "$DIR/text.parquet"
format = "text"
[train]
steps = 1
micro_batch = 2
lr = 1e-3
checkpoint_every = 0
eval_every = 0
[output]
dir = "$DIR/run"
TOML
    rm -rf "$DIR/run"
    "$LOAM_BIN" train "$DIR/recipe.toml" > /dev/null 2>&1 || { echo "could not make an adapter: $LOAM_BIN train $DIR/recipe.toml" >&2; exit 1; }
  fi
fi

seconds() { awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$1"; }
rss_gb() { awk -F': ' '/Maximum resident set size/ {printf "%.2f", $2 / 1048576}' "$1"; }
bytes() { du -cb "$1"/*.safetensors | tail -1 | cut -f1; }
cat "$MODEL"/*.safetensors > /dev/null   # warm the page cache for every contender

rm -rf "$DIR/copy" && mkdir -p "$DIR/copy"
/usr/bin/time -v sh -c "cp '$MODEL'/*.safetensors '$DIR/copy/' && sync" 2> "$DIR/copy.time"
rm -rf "$DIR/loam"
/usr/bin/time -v "$LOAM_BIN" merge --model "$MODEL" --adapter "$ADAPTER" --out "$DIR/loam" 2> "$DIR/loam.time" > /dev/null
sync
rm -rf "$DIR/peft"
/usr/bin/time -v "$PY" - "$MODEL" "$ADAPTER" "$DIR/peft" 2> "$DIR/peft.time" <<'PYEOF'
import sys
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype="auto")
merged = PeftModel.from_pretrained(base, sys.argv[2]).merge_and_unload()
merged.save_pretrained(sys.argv[3])
PYEOF
sync

printf '\n%-22s %9s %9s %11s\n' "merge of $(basename "$MODEL")" "seconds" "GB/s" "peak RSS GB"
for who in copy loam peft; do
  s=$(seconds "$DIR/$who.time"); b=$(bytes "$DIR/$who")
  printf '%-22s %9.2f %9.2f %11s\n' "$who" "$s" "$(awk -v b="$b" -v s="$s" 'BEGIN {print b / s / 1e9}')" "$([ "$who" = copy ] && echo - || rss_gb "$DIR/$who.time")"
done
echo "weights written: $(bytes "$DIR/loam") bytes; machine: $(nproc) cores, load now $(cut -d' ' -f1-3 /proc/loadavg)"
