#!/usr/bin/env python3
"""Load merged model directories (written by `loam merge`) with transformers; print losses.

usage: check_merge.py --data TEXT.parquet [--seq-len 64] MODEL_DIR...

For every directory: `AutoModelForCausalLM.from_pretrained(DIR)` (sdpa; Gemma 2 eager) with
dtype "auto" (the
dtype config.json declares; reported as `dtype`) and a clean loading report (no missing,
unexpected or mismatched keys), then the same weights upcast to float32 and loam's eval
contract on the `text` column (common.eval_text_loss). Prints one JSON object per dir:
  {"model": DIR, "dtype": "torch.bfloat16", "loss": .., "tokens": ..}
Used by tests/export.rs.
"""

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import common  # noqa: E402
import fixtures_families  # noqa: E402
import fixtures_models  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    texts = fixtures_models.read_text_parquet(Path(args.data))
    for d in args.models:
        model, info = AutoModelForCausalLM.from_pretrained(
            d, dtype="auto", attn_implementation=fixtures_families.attention_for(Path(d)),
            output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            raise SystemExit(f"{d}: transformers' loading report is not clean: {bad}")
        dtype = str(next(model.parameters()).dtype)
        model = model.float().eval()
        # tokenizer.json exactly as written, as loam reads it: AutoTokenizer would pick
        # Qwen2Tokenizer for model_type qwen2 and re-pre-tokenize (the tiny qwen2 fixture
        # carries SmolLM2's tokenizer.json, whose digit / newline splitting differs).
        tok = PreTrainedTokenizerFast.from_pretrained(d)
        ev = common.eval_text_loss(model, tok, texts, args.seq_len)
        print(json.dumps({"model": d, "dtype": dtype, "loss": ev["loss"],
                          "tokens": ev["tokens"], "class": type(model).__name__}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
