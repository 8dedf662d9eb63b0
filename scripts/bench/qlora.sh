#!/usr/bin/env bash
# QLoRA memory benchmark: a 4-bit base against a 16-bit one, and against PEFT + bitsandbytes,
# on the same model, data and settings, in one run.
#
#   scripts/bench/qlora.sh [--shape llama-1b|llama-8b] [--dtype f32|bf16] [--steps N]
#                          [--seq-len N] [--device cpu|cuda] [--dir DIR]
#
#   --shape    a random model of Llama-3.2-1B's shape (default: hidden 2048, 16 layers,
#              intermediate 8192, 32/8 heads, vocab 128256, tied embeddings) or Llama-3.1-8B's
#              (4096, 32 layers, 14336, 32/8 heads, vocab 128256, untied); saved in bf16 with
#              SmolLM2's tokenizer (ids below 49152 only)
#   --dtype    compute dtype (default f32 on the CPU, bf16 on CUDA)
#   --steps N  optimizer steps per run (default 3); tokens/s is the median of all but the first
#   --seq-len  tokens per step, one sequence (default 128)
#   --device   cpu (default) or cuda: peak GPU memory (nvidia-smi) is reported too
#   --dir DIR  work directory (default /tmp/loam-bench-qlora); the model is built there once
#
# Runs, each with LoRA r 16, alpha 32, dropout 0 on all linear layers, AdamW at a constant
# lr 1e-4, activation checkpointing on (QLoRA's usual setting), every token trained:
#   loam nf4            model.quantize = "nf4" on the bf16 checkpoint (quantized as it loads)
#   loam 16-bit         the same checkpoint, not quantized
#   PEFT + bitsandbytes scripts/bench/peft_train.py --quantize nf4 (transformers 4-bit load,
#                       BitsAndBytesConfig nf4 + double quantization, gradient checkpointing)
# Prints peak RSS of each process (scripts/bench/measure.py), tokens/s, loam's 4-bit share,
# and the ratios the QLoRA issue sets goals for. See scripts/bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/bench/common.sh"
SHAPE=llama-1b
DTYPE=""
STEPS=3
SEQ=128
DEVICE=cpu
DIR=/tmp/loam-bench-qlora
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) SHAPE="$2"; shift 2 ;;
    --dtype) DTYPE="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --seq-len) SEQ="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$DTYPE" ] || { [ "$DEVICE" = cpu ] && DTYPE=f32 || DTYPE=bf16; }
TOKENIZER="$LOAM_FIXTURES/models/smollm2-135m"
bench_preflight "$TOKENIZER/tokenizer.json"
mkdir -p "$DIR"

# The random model, built once per shape.
MODEL="$DIR/$SHAPE"
if [ ! -s "$MODEL/model.safetensors" ] && [ ! -s "$MODEL/model.safetensors.index.json" ]; then
  echo "building a random $SHAPE-shaped model in $MODEL (bf16)"
  SRC="$DIR/$SHAPE-config"
  mkdir -p "$SRC"
  cp "$TOKENIZER"/{tokenizer.json,tokenizer_config.json,generation_config.json} "$SRC"/
  "$PY" - "$SHAPE" "$SRC/config.json" <<'EOF'
import json, sys
shapes = {
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                     tie_word_embeddings=True),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                     tie_word_embeddings=False),
}
cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256,
           rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072,
           hidden_act="silu", bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16",
           **shapes[sys.argv[1]])
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
EOF
  "$PY" "$ROOT/scripts/bench/random_model.py" "$SRC" "$MODEL" bf16
fi

# Rows of >= SEQ tokens of text.
DATA="$DIR/text.parquet"
[ -s "$DATA" ] || "$PY" - "$DATA" <<'EOF'
import random, sys
import pyarrow as pa, pyarrow.parquet as pq
words = ("the model learns a language from text written by its speakers "
         "mae'r model yn dysgu iaith o destun a ysgrifennwyd gan ei siaradwyr").split()
rng = random.Random(0)
pq.write_table(pa.table({"text": [" ".join(rng.choice(words) for _ in range(1500))
                                  for _ in range(50)]}), sys.argv[1])
EOF

RESULTS="$DIR/results.jsonl"
: > "$RESULTS"
measure() {
  local run="$1"; shift
  local gpu=(); [ "$DEVICE" = cpu ] || gpu=(--gpu)
  "$PY" "$ROOT/scripts/bench/measure.py" --out "$run.peak.json" --log "$run.log" "${gpu[@]}" -- "$@" \
    || { tail -20 "$run.log"; exit 1; }
}

for quantize in nf4 none; do
  run="$DIR/loam-$quantize"
  rm -rf "$run"
  cat > "$DIR/recipe.toml" <<EOF
[model]
path = "$MODEL"
dtype = "$DTYPE"
device = "$DEVICE"
quantize = "$quantize"
[lora]
r = 16
alpha = 32
dropout = 0.0
targets = "all-linear"
[data]
seq_len = $SEQ
packing = false
shuffle = false
train_on = "all"
[[data.train]]
path = "$DATA"
format = "text"
[train]
steps = $STEPS
micro_batch = 1
grad_accum = 1
lr = 1e-4
schedule = "constant"
warmup = 0
max_grad_norm = 1.0
checkpoint_every = 0
eval_every = 0
activation_checkpointing = true
[output]
dir = "$run"
EOF
  echo "loam quantize=$quantize $DTYPE (load $(cut -d' ' -f1 /proc/loadavg))"
  measure "$run" "$LOAM_BIN" train "$DIR/recipe.toml"
  "$PY" - "$run" "$quantize" >> "$RESULTS" <<'EOF'
import json, re, sys
run, quantize = sys.argv[1], sys.argv[2]
steps = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
log = open(f"{run}.log").read()
m = re.search(r"linears in 4 bits \([^)]*\): ([0-9.]+) MB", log)
print(json.dumps({"stack": f"loam {quantize}", "seconds": [s["tokens"] / s["tokens_per_s"] for s in steps],
                  "tokens": steps[0]["tokens"], "losses": [s["loss"] for s in steps],
                  "four_bit_bytes": float(m.group(1)) * 1e6 if m else None,
                  **json.load(open(f"{run}.peak.json"))}))
EOF
done

ref="$DIR/peft-bnb-nf4"
echo "PEFT + bitsandbytes nf4 $DTYPE (load $(cut -d' ' -f1 /proc/loadavg))"
measure "$ref" "$PY" "$ROOT/scripts/bench/peft_train.py" --model "$MODEL" --data "$DATA" \
  --dtype "$DTYPE" --micro-batch 1 --seq-len "$SEQ" --steps "$STEPS" --checkpointing \
  --device "$DEVICE" --quantize nf4 --out "$ref.json"
"$PY" - "$ref" "$SEQ" >> "$RESULTS" <<'EOF'
import json, sys
r = json.load(open(f"{sys.argv[1]}.json"))
print(json.dumps({"stack": "PEFT + bitsandbytes nf4", "seconds": r["seconds"],
                  "tokens": int(sys.argv[2]) - 1, "losses": r["losses"],
                  **json.load(open(f"{sys.argv[1]}.peak.json"))}))
EOF

"$PY" - "$RESULTS" "$MODEL/config.json" "$DTYPE" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cfg = json.load(open(sys.argv[2]))
elt = {"f32": 4, "bf16": 2}[sys.argv[3]]
embed = cfg["vocab_size"] * cfg["hidden_size"] * (1 if cfg["tie_word_embeddings"] else 2)
gib = lambda b: f"{b / 2**30:.2f} GiB"
by = {r["stack"]: r for r in rows}
print(f"\n| run | peak RSS | peak GPU | tokens/s | step-1 loss |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    steady = r["seconds"][1:] or r["seconds"]
    tps = r["tokens"] / statistics.median(steady)
    gpu = gib(r["peak_gpu_bytes"]) if r.get("peak_gpu_bytes") else "–"
    print(f"| {r['stack']} | {gib(r['peak_rss_bytes'])} | {gpu} | {tps:.2f} | {r['losses'][0]:.4f} |")
q, d, p = by["loam nf4"], by["loam none"], by["PEFT + bitsandbytes nf4"]
own = q["four_bit_bytes"] + embed * elt
print(f"\nloam nf4 / PEFT + bitsandbytes peak RSS: {q['peak_rss_bytes'] / p['peak_rss_bytes']:.2f}x "
      f"(goal <= 0.6x); loam nf4 / loam 16-bit: {q['peak_rss_bytes'] / d['peak_rss_bytes']:.2f}x")
print(f"the 4-bit model's own size: linears {gib(q['four_bit_bytes'])} + embeddings in "
      f"{sys.argv[3]} {gib(embed * elt)} = {gib(own)}; loam nf4's peak RSS is "
      f"{q['peak_rss_bytes'] / own:.2f}x that (goal <= 1.2x with activations)")
EOF
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load now $(cut -d' ' -f1-3 /proc/loadavg)"
