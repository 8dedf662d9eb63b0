#!/usr/bin/env bash
# Training benchmark: loam vs PEFT + transformers, same machine, model, data, settings.
#
#   scripts/bench/train.sh [--steps N] [--dtypes "bf16 f32"] [--shapes "4x256 1x1024"]
#                          [--repeat N] [--dir DIR] [--device cpu|cuda]
#
#   --steps N    optimizer steps per run (default 12); the first 3 are warm-up, the median
#                step time of the rest is reported
#   --dtypes     compute dtypes to run (default "bf16 f32")
#   --shapes     micro_batch x seq_len per step (default "4x256 1x1024")
#   --repeat N   run each configuration N times, alternating loam and the reference, and pool
#                the steady steps (default 1): on a noisy machine neither stack gets only
#                the quiet minutes
#   --dir DIR    work directory (default /tmp/loam-bench-train)
#   --device     cpu (default) or cuda: both stacks run there, and the table adds each one's
#                peak GPU memory (nvidia-smi) and MFU against the GPU's matmul peak
#
# Workload (the benchmark issue): SmolLM2-135M-Instruct ($LOAM_FIXTURES/models/smollm2-135m),
# LoRA r 16, alpha 32, dropout 0 on all linear layers, AdamW (lr 1e-4 constant, no weight
# decay), clipping at 1.0, every token trained, one micro-batch per step. loam runs with
# activation checkpointing off and on; the reference (scripts/bench/peft_train.py) likewise
# with gradient checkpointing off and on.
# Prints a table: tokens/s, peak RSS (scripts/bench/measure.py), MFU against
# scripts/bench/matmul_peak.py, and loam / reference ratios. See scripts/bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/bench/common.sh"
MODEL="${LOAM_BENCH_MODEL:-$LOAM_FIXTURES/models/smollm2-135m}"
STEPS=12
REPEAT=1
DTYPES="bf16 f32"
SHAPES="4x256 1x1024"
DIR=/tmp/loam-bench-train
DEVICE=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --dtypes) DTYPES="$2"; shift 2 ;;
    --shapes) SHAPES="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_preflight "$MODEL/config.json"
mkdir -p "$DIR"

# Documents of ≥ 1024 tokens of multilingual text: every row is full after truncation.
DATA="$DIR/text.parquet"
[ -s "$DATA" ] || "$PY" - "$DATA" <<'EOF'
import random, sys
import pyarrow as pa, pyarrow.parquet as pq
words = ("the model learns a language from text written by its speakers "
         "mae'r model yn dysgu iaith o destun a ysgrifennwyd gan ei siaradwyr "
         "mfano huu unajifunza lugha kutoka kwa maandishi ya wazungumzaji wake "
         "模型 从 说话者 写的 文本 中 学习 语言 ").split()
rng = random.Random(0)
docs = [" ".join(rng.choice(words) for _ in range(1500)) for _ in range(200)]
pq.write_table(pa.table({"text": docs}), sys.argv[1])
EOF

PEAK=$("$PY" "$ROOT/scripts/bench/matmul_peak.py" "$DEVICE")
echo "matmul peak (GFLOP/s): $PEAK"
RESULTS="$DIR/results.jsonl"
: > "$RESULTS"

# Runs a command, logging to $1.log and writing its peak memory to $1.peak.json.
measure() {
  local run="$1"; shift
  local gpu=(); [ "$DEVICE" = cpu ] || gpu=(--gpu)
  "$PY" "$ROOT/scripts/bench/measure.py" --out "$run.peak.json" --log "$run.log" "${gpu[@]}" -- "$@" \
    || { tail -20 "$run.log"; exit 1; }
}

for dtype in $DTYPES; do
  for shape in $SHAPES; do
    mb="${shape%x*}"; seq="${shape#*x}"
    for ckpt in false true; do
      for rep in $(seq "$REPEAT"); do
        run="$DIR/loam-$dtype-$shape-ckpt-$ckpt-$rep"
        rm -rf "$run"
        cat > "$DIR/recipe.toml" <<EOF
[model]
path = "$MODEL"
dtype = "$dtype"
device = "$DEVICE"
[lora]
r = 16
alpha = 32
dropout = 0.0
targets = "all-linear"
[data]
seq_len = $seq
packing = false
shuffle = false
train_on = "all"
overlong = "truncate"
[[data.train]]
path = "$DATA"
format = "text"
[train]
steps = $STEPS
micro_batch = $mb
grad_accum = 1
lr = 1e-4
schedule = "constant"
warmup = 0
weight_decay = 0.0
max_grad_norm = 1.0
checkpoint_every = 0
eval_every = 0
activation_checkpointing = $ckpt
[output]
dir = "$run"
EOF
        echo "loam       $dtype $shape checkpointing=$ckpt (load $(cut -d' ' -f1 /proc/loadavg))"
        measure "$run" "$LOAM_BIN" train "$DIR/recipe.toml"
        "$PY" - "$run/metrics.jsonl" "$run.peak.json" "$dtype" "$shape" "$ckpt" >> "$RESULTS" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
# seconds per step from loam's per-step rate (trained tokens / tokens_per_s)
secs = [s["tokens"] / s["tokens_per_s"] for s in steps]
print(json.dumps({"stack": "loam", "dtype": sys.argv[3], "shape": sys.argv[4],
                  "checkpointing": sys.argv[5] == "true", "seconds": secs,
                  "losses": [s["loss"] for s in steps], **json.load(open(sys.argv[2]))}))
EOF
        ref="$DIR/ref-$dtype-$shape-ckpt-$ckpt-$rep"
        flag=(); [ "$ckpt" = true ] && flag=(--checkpointing)
        echo "reference  $dtype $shape checkpointing=$ckpt (load $(cut -d' ' -f1 /proc/loadavg))"
        measure "$ref" "$PY" "$ROOT/scripts/bench/peft_train.py" --model "$MODEL" --data "$DATA" \
          --dtype "$dtype" --micro-batch "$mb" --seq-len "$seq" --steps "$STEPS" "${flag[@]}" \
          --device "$DEVICE" --out "$ref.json"
        "$PY" - "$ref.json" "$ref.peak.json" "$dtype" "$shape" "$ckpt" >> "$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"stack": "reference", "dtype": sys.argv[3], "shape": sys.argv[4],
                  "checkpointing": sys.argv[5] == "true", "seconds": r["seconds"],
                  "losses": r["losses"], **json.load(open(sys.argv[2]))}))
EOF
      done
    done
  done
done

"$PY" "$ROOT/scripts/bench/train_table.py" "$RESULTS" "$MODEL" "$PEAK"
[ "$DEVICE" = cpu ] || echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load now $(cut -d' ' -f1-3 /proc/loadavg)"
