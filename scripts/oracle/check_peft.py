#!/usr/bin/env python3
"""Load adapters with PEFT onto their transformers base and print each one's eval loss.

usage: check_peft.py --model BASE_DIR --data TEXT.parquet [--seq-len 64] ADAPTER_DIR...

For every adapter: `PeftModel.from_pretrained(base, ADAPTER_DIR)` (f32, CPU, sdpa; Gemma 2
eager), then
loam's eval contract on the `text` column (common.eval_text_loss, the code behind the
fixtures' eval_text.json). Prints one JSON object per adapter on stdout:
  {"adapter": DIR, "loss": .., "tokens": .., "missing": [..], "unexpected": [..], "differ": [..]}
where missing / unexpected list keys of the file the model lacks / keys of the model the file
lacks, and differ those whose loaded value is not the saved one (all must be empty for a
faithful load). Used by tests/export.rs.
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
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("adapters", nargs="+")
    args = ap.parse_args()

    import torch
    from peft import PeftModel, get_peft_model_state_dict, load_peft_weights
    from transformers import PreTrainedTokenizerFast

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    # tokenizer.json exactly as written, as loam reads it: AutoTokenizer would pick
    # Qwen2Tokenizer for model_type qwen2 and re-pre-tokenize (the tiny qwen2 fixture
    # carries SmolLM2's tokenizer.json, whose digit / newline splitting differs).
    tok = PreTrainedTokenizerFast.from_pretrained(args.model)
    texts = fixtures_models.read_text_parquet(Path(args.data))
    for adapter in args.adapters:
        attn = fixtures_families.attention_for(Path(args.model))
        base = fixtures_models.load_from_disk(Path(args.model), torch.float32, attn=attn)
        model = PeftModel.from_pretrained(base, adapter)
        model.eval()
        # Every adapter tensor must land in the model unchanged (PEFT only warns otherwise).
        saved = load_peft_weights(adapter)
        live = get_peft_model_state_dict(model)
        differ = sorted(k for k in saved.keys() & live.keys()
                        if not torch.equal(saved[k].float(), live[k].float()))
        ev = common.eval_text_loss(model, tok, texts, args.seq_len)
        print(json.dumps({
            "adapter": adapter,
            "loss": ev["loss"],
            "tokens": ev["tokens"],
            "missing": sorted(saved.keys() - live.keys()),
            "unexpected": sorted(live.keys() - saved.keys()),
            "differ": differ,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
