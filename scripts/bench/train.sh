#!/usr/bin/env bash
# Training benchmark: loam vs PEFT + transformers, same machine, model, data, settings.
#
#   scripts/bench/train.sh [--steps N] [--dtypes "bf16 f32"] [--shapes "4x256 1x1024"]
#                          [--dir DIR] [--device cpu|cuda]
#
#   --steps N    optimizer steps per run (default 12); the first 3 are warm-up, the median
#                step time of the rest is reported
#   --dtypes     compute dtypes to run (default "bf16 f32")
#   --shapes     micro_batch x seq_len per step (default "4x256 1x1024")
#   --dir DIR    work directory (default /tmp/loam-bench-train)
#
# Workload (the benchmark issue): SmolLM2-135M-Instruct ($LOAM_FIXTURES/models/smollm2-135m),
# LoRA r 16, alpha 32, dropout 0 on all linear layers, AdamW, clipping at 1.0, every token
# trained, one micro-batch per step. loam runs with activation checkpointing off and on; the
# reference (scripts/bench/peft_train.py) likewise with gradient checkpointing off and on.
# Prints a table: tokens/s, peak RSS (GNU time), MFU against scripts/bench/matmul_peak.py,
# and loam / reference ratios. See scripts/bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/bench/common.sh"
MODEL="${LOAM_BENCH_MODEL:-$LOAM_FIXTURES/models/smollm2-135m}"
STEPS=12
DTYPES="bf16 f32"
SHAPES="4x256 1x1024"
DIR=/tmp/loam-bench-train
DEVICE=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --dtypes) DTYPES="$2"; shift 2 ;;
    --shapes) SHAPES="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
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

PEAK=$("$PY" "$ROOT/scripts/bench/matmul_peak.py")
echo "matmul peak (GFLOP/s): $PEAK"
RESULTS="$DIR/results.jsonl"
: > "$RESULTS"

peak_rss() { awk -F': ' '/Maximum resident set size/ {print $2 * 1024}' "$1"; }

for dtype in $DTYPES; do
  for shape in $SHAPES; do
    mb="${shape%x*}"; seq="${shape#*x}"
    for ckpt in false true; do
      run="$DIR/loam-$dtype-$shape-ckpt-$ckpt"
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
warmup = 0
max_grad_norm = 1.0
checkpoint_every = 0
eval_every = 0
activation_checkpointing = $ckpt
[output]
dir = "$run"
EOF
      echo "loam       $dtype $shape checkpointing=$ckpt (load $(cut -d' ' -f1 /proc/loadavg))"
      /usr/bin/time -v "$LOAM_BIN" train "$DIR/recipe.toml" > "$run.log" 2> "$run.time" || { tail -20 "$run.time"; exit 1; }
      "$PY" - "$run/metrics.jsonl" "$(peak_rss "$run.time")" "$dtype" "$shape" "$ckpt" >> "$RESULTS" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
# seconds per step from loam's per-step rate (trained tokens / tokens_per_s)
secs = [s["tokens"] / s["tokens_per_s"] for s in steps]
print(json.dumps({"stack": "loam", "dtype": sys.argv[3], "shape": sys.argv[4],
                  "checkpointing": sys.argv[5] == "true", "seconds": secs,
                  "losses": [s["loss"] for s in steps], "peak_rss_bytes": int(float(sys.argv[2]))}))
EOF
      ref="$DIR/ref-$dtype-$shape-ckpt-$ckpt"
      flag=(); [ "$ckpt" = true ] && flag=(--checkpointing)
      echo "reference  $dtype $shape checkpointing=$ckpt (load $(cut -d' ' -f1 /proc/loadavg))"
      /usr/bin/time -v "$PY" "$ROOT/scripts/bench/peft_train.py" --model "$MODEL" --data "$DATA" \
        --dtype "$dtype" --micro-batch "$mb" --seq-len "$seq" --steps "$STEPS" "${flag[@]}" \
        --out "$ref.json" > "$ref.log" 2> "$ref.time" || { tail -20 "$ref.time"; exit 1; }
      "$PY" - "$ref.json" "$(peak_rss "$ref.time")" "$dtype" "$shape" "$ckpt" >> "$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"stack": "reference", "dtype": sys.argv[3], "shape": sys.argv[4],
                  "checkpointing": sys.argv[5] == "true", "seconds": r["seconds"],
                  "losses": r["losses"], "peak_rss_bytes": int(float(sys.argv[2]))}))
EOF
    done
  done
done

"$PY" "$ROOT/scripts/bench/train_table.py" "$RESULTS" "$MODEL" "$PEAK"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load now $(cut -d' ' -f1-3 /proc/loadavg)"
