#!/usr/bin/env bash
# Training benchmark: loam vs PEFT + transformers, same machine, model, data, settings.
#
#   scripts/bench/train.sh [--steps N] [--dtypes "bf16 f32"] [--shapes "4x256 1x1024"]
#                          [--checkpointing "false true"] [--rounds N] [--max-load L]
#                          [--settle S] [--dir DIR] [--device cpu|cuda]
#
#   --steps N    optimizer steps per run (default 12); the first 3 are warm-up, the median
#                step time of the rest is the run's tokens/s
#   --dtypes     compute dtypes to run (default "bf16 f32"; "f32" on a CPU without native
#                bf16, where libtorch's bf16 matmul is a scalar loop for both stacks)
#   --shapes     micro_batch x seq_len per step (default "4x256 1x1024")
#   --checkpointing  activation checkpointing settings to run (default "false true")
#   --rounds N   rounds per configuration (default 3): each round runs both stacks, the
#                first one alternating, and the table reports the median of the rounds'
#                loam / reference ratios with their spread (--repeat is the old name)
#   --max-load L a run that starts with the 1-minute load average above L is flagged in the
#                table (default 1.0)
#   --settle S   before each run, wait up to S seconds for the load average to fall to
#                --max-load (default 90; the previous run's own load takes about a minute
#                to decay); 0 starts at once
#   --dir DIR    work directory (default /tmp/loam-bench-train)
#   --device     cpu (default) or cuda: both stacks run there, and the table adds each one's
#                peak GPU memory (nvidia-smi) and MFU against the GPU's matmul peak
#
# Workload (the benchmark issue): SmolLM2-135M-Instruct ($LOAM_FIXTURES/models/smollm2-135m,
# or $LOAM_BENCH_MODEL), LoRA r 16, alpha 32, dropout 0 on all linear layers, AdamW (lr 1e-4
# constant, no weight decay), clipping at 1.0, every token trained, one micro-batch per step.
# loam runs with activation checkpointing off and on; the reference
# (scripts/bench/peft_train.py) likewise with gradient checkpointing off and on.
# Prints a table: tokens/s, peak RSS (scripts/bench/measure.py), MFU against
# scripts/bench/matmul_peak.py, and loam / reference ratios (median of the rounds, min-max),
# then every run with the load it started at. See scripts/bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/bench/common.sh"
MODEL="${LOAM_BENCH_MODEL:-$LOAM_FIXTURES/models/smollm2-135m}"
STEPS=12
ROUNDS=3
DTYPES=
SHAPES="4x256 1x1024"
CHECKPOINTING="false true"
MAX_LOAD=1.0
SETTLE=90
DIR=/tmp/loam-bench-train
DEVICE=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --dtypes) DTYPES="$2"; shift 2 ;;
    --shapes) SHAPES="$2"; shift 2 ;;
    --checkpointing) CHECKPOINTING="$2"; shift 2 ;;
    --rounds|--repeat) ROUNDS="$2"; shift 2 ;;
    --max-load) MAX_LOAD="$2"; shift 2 ;;
    --settle) SETTLE="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_preflight "$MODEL/config.json"
mkdir -p "$DIR"
if [ -z "$DTYPES" ]; then
  if [ "$DEVICE" != cpu ] || cpu_has_native_bf16; then
    DTYPES="bf16 f32"
  else
    DTYPES="f32"
    echo "this CPU has no native bf16 (AVX-512 bf16 or AMX): benchmarking f32 only (--dtypes to override)"
  fi
fi

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

# Waits (up to --settle seconds) for the load average to fall to --max-load, then prints
# the load the run starts at.
settled_load() {
  local waited=0
  while awk -v max="$MAX_LOAD" '{ exit !($1 > max) }' /proc/loadavg && [ "$waited" -lt "$SETTLE" ]; do
    sleep 5; waited=$((waited + 5))
  done
  cut -d' ' -f1 /proc/loadavg
}

# One loam run of configuration ($dtype, $shape, $ckpt), round $round.
run_loam() {
  local run="$DIR/loam-$dtype-$shape-ckpt-$ckpt-$round"
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
  local load; load=$(settled_load)
  echo "round $round loam       $dtype $shape checkpointing=$ckpt (load $load)"
  measure "$run" "$LOAM_BIN" train "$DIR/recipe.toml"
  "$PY" - "$run/metrics.jsonl" "$run.peak.json" "$dtype" "$shape" "$ckpt" "$round" "$load" >> "$RESULTS" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
# seconds per step from loam's per-step rate (trained tokens / tokens_per_s)
secs = [s["tokens"] / s["tokens_per_s"] for s in steps]
print(json.dumps({"stack": "loam", "dtype": sys.argv[3], "shape": sys.argv[4],
                  "checkpointing": sys.argv[5] == "true", "round": int(sys.argv[6]),
                  "load_before": float(sys.argv[7]), "seconds": secs,
                  "losses": [s["loss"] for s in steps], **json.load(open(sys.argv[2]))}))
EOF
}

# One reference run of the same.
run_reference() {
  local ref="$DIR/ref-$dtype-$shape-ckpt-$ckpt-$round"
  local flag=(); [ "$ckpt" = true ] && flag=(--checkpointing)
  local load; load=$(settled_load)
  echo "round $round reference  $dtype $shape checkpointing=$ckpt (load $load)"
  measure "$ref" "$PY" "$ROOT/scripts/bench/peft_train.py" --model "$MODEL" --data "$DATA" \
    --dtype "$dtype" --micro-batch "$mb" --seq-len "$seq" --steps "$STEPS" "${flag[@]}" \
    --device "$DEVICE" --out "$ref.json"
  "$PY" - "$ref.json" "$ref.peak.json" "$dtype" "$shape" "$ckpt" "$round" "$load" >> "$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"stack": "reference", "dtype": sys.argv[3], "shape": sys.argv[4],
                  "checkpointing": sys.argv[5] == "true", "round": int(sys.argv[6]),
                  "load_before": float(sys.argv[7]), "seconds": r["seconds"],
                  "losses": r["losses"], **json.load(open(sys.argv[2]))}))
EOF
}

for dtype in $DTYPES; do
  for shape in $SHAPES; do
    mb="${shape%x*}"; seq="${shape#*x}"
    for ckpt in $CHECKPOINTING; do
      for round in $(seq "$ROUNDS"); do
        # Alternate which stack goes first, so neither always runs in the other's wake.
        if [ $((round % 2)) -eq 1 ]; then run_loam; run_reference; else run_reference; run_loam; fi
      done
    done
  done
done

"$PY" "$ROOT/scripts/bench/train_table.py" "$RESULTS" "$MODEL" "$PEAK" --max-load "$MAX_LOAD"
[ "$DEVICE" = cpu ] || echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i 0)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load now $(cut -d' ' -f1-3 /proc/loadavg)"
