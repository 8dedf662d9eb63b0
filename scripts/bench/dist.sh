#!/usr/bin/env bash
# Data-parallel benchmark: tokens/s of `loam train` on 1 process and on N processes under
# torchrun (Gloo on the CPU, NCCL on GPUs), the gradient all-reduce's share of a step, and
# the scaling efficiency.
#
#   scripts/bench/dist.sh [--procs "1 2"] [--steps N] [--dtype bf16|f32] [--shape 4x256]
#                         [--threads T] [--device cpu|cuda] [--dir DIR]
#
#   --procs     process counts to run (default "1 2"; on a GPU machine e.g. "1 2 4 8")
#   --steps N   optimizer steps per run (default 8); the first 2 are warm-up, the median of
#               the rest is reported
#   --threads T OpenMP threads per process (default 1, as torchrun sets them): each process
#               gets the same share of the CPU, so N processes ask for N× the cores
#   --device    cpu (default) or cuda (each rank takes GPU LOCAL_RANK)
#
# Workload: SmolLM2-135M-Instruct ($LOAM_FIXTURES/models/smollm2-135m), LoRA r 16 / alpha 32 /
# dropout 0 on all linear layers (4.9 M adapter parameters: 19.5 MB of f32 gradients
# all-reduced per step), micro_batch x seq_len per process and grad_accum 1, activation
# checkpointing off, every token trained. The global batch grows with the processes (weak
# scaling): efficiency = tokens/s(N) / (N × tokens/s(1)).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/bench/common.sh"
MODEL="${LOAM_BENCH_MODEL:-$LOAM_FIXTURES/models/smollm2-135m}"
PROCS="1 2"
STEPS=8
DTYPE=bf16
SHAPE=4x256
THREADS=1
DEVICE=cpu
DIR=/tmp/loam-bench-dist
while [ $# -gt 0 ]; do
  case "$1" in
    --procs) PROCS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --dtype) DTYPE="$2"; shift 2 ;;
    --shape) SHAPE="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
bench_preflight "$MODEL/config.json"
TORCHRUN="$LOAM_VENV/bin/torchrun"
[ -x "$TORCHRUN" ] || { echo "no torchrun at $TORCHRUN: run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$DIR"
MB="${SHAPE%x*}"
SEQ="${SHAPE#*x}"

# Rows of at least seq_len tokens, so every micro-batch is full.
DATA="$DIR/text.parquet"
if [ ! -f "$DATA" ]; then
  "$PY" - "$DATA" <<'EOF'
import sys, pyarrow as pa, pyarrow.parquet as pq
words = "the quick brown fox jumps over the lazy dog while a community translates its software".split()
rows = [" ".join(words[(i + j) % len(words)] for j in range(1500)) for i in range(512)]
pq.write_table(pa.table({"text": rows}), sys.argv[1], row_group_size=64)
EOF
fi
cat > "$DIR/recipe.toml" <<EOF
[model]
path = "$MODEL"
dtype = "$DTYPE"
device = "$DEVICE"
[lora]
r = 16
alpha = 32
dropout = 0.0
targets = "all-linear"
[data]
seq_len = $SEQ
packing = true
shuffle = false
train_on = "all"
overlong = "split"
[[data.train]]
path = "$DATA"
format = "text"
[train]
steps = $STEPS
micro_batch = $MB
grad_accum = 1
lr = 1e-4
schedule = "constant"
warmup = 0
max_grad_norm = 1.0
checkpoint_every = 0
eval_every = 0
activation_checkpointing = false
EOF

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "machine: $(nproc) cores, load average before: $(load); $DTYPE, ${MB}x${SEQ} per process, $THREADS thread(s) each" >&2
printf '| processes | tokens/s (global) | step s | all-reduce s | all-reduce share | efficiency |\n'
printf '| --- | --- | --- | --- | --- | --- |\n'
base=""
for n in $PROCS; do
  out="$DIR/run-$n"
  rm -rf "$out"
  if [ "$n" = 1 ]; then
    OMP_NUM_THREADS=$THREADS "$LOAM_BIN" train "$DIR/recipe.toml" --out "$out" 2>"$DIR/log-$n.txt"
  else
    OMP_NUM_THREADS=$THREADS "$TORCHRUN" --standalone --nproc-per-node "$n" --no-python \
      "$LOAM_BIN" train "$DIR/recipe.toml" --out "$out" 2>"$DIR/log-$n.txt"
  fi
  row="$("$PY" - "$out/metrics.jsonl" "$n" "${base:-0}" <<'EOF'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])][2:]
n, base = int(sys.argv[2]), float(sys.argv[3])
tps = statistics.median(l["tokens_per_s"] for l in lines)
step = statistics.median(l["tokens"] / l["tokens_per_s"] for l in lines)
ar = statistics.median(l.get("allreduce_s", 0.0) for l in lines)
eff = tps / (n * base) if base else 1.0
print(f"{tps:.1f} {step:.3f} {ar:.4f} {ar / step:.1%} {eff:.1%}")
EOF
)"
  read -r tps step ar share eff <<<"$row"
  [ -n "$base" ] || base="$tps"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$n" "$tps" "$step" "$ar" "$share" "$eff"
done
echo "load average after: $(load)" >&2
