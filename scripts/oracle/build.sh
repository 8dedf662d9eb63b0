#!/usr/bin/env bash
# Builds the reference fixtures (tiny models, expected logits and losses, tokenizer and
# template expectations, GGUF files, GGUFs from llama.cpp's own converter) into
# $LOAM_FIXTURES with the Python reference stack.
# Each script is a no-op when its stamp says it is up to date.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/env.sh"
for script in fixtures_models.py fixtures_data.py fixtures_gguf.py fixtures_llama_cpp.py fixtures_tokenizers.py fixtures_train.py fixtures_generate.py fixtures_metrics.py fixtures_qlora.py fixtures_families.py fixtures_vocab.py fixtures_preference.py; do
  printf '\033[1m[oracle]\033[0m %s\n' "$script" >&2
  "$LOAM_VENV/bin/python" "$ROOT/scripts/oracle/$script" --out "$LOAM_FIXTURES"
done
