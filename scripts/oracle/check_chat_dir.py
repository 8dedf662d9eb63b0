#!/usr/bin/env python3
"""Load a model directory loam wrote with transformers, as a user would, and report how it
renders a conversation and where generation stops.

usage: check_chat_dir.py --messages JSON DIR...

For each DIR: `AutoTokenizer.from_pretrained(DIR).apply_chat_template(messages,
tokenize=False)` without and with the generation prompt, `GenerationConfig.from_pretrained`'s
`eos_token_id` (as a list), and whether `AutoModelForCausalLM.from_pretrained(DIR)` loads.
Prints one JSON line per DIR: {"dir", "rendered", "rendered_generation_prompt",
"eos_token_id", "model_loads"}. Used by tests/templates.rs.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", required=True, help="a JSON list of {role, content}")
    ap.add_argument("dirs", nargs="+")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    messages = json.loads(args.messages)
    for d in args.dirs:
        tokenizer = AutoTokenizer.from_pretrained(d)
        eos = GenerationConfig.from_pretrained(d).eos_token_id
        AutoModelForCausalLM.from_pretrained(d)
        print(json.dumps({
            "dir": d,
            "rendered": tokenizer.apply_chat_template(messages, tokenize=False),
            "rendered_generation_prompt": tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True),
            "eos_token_id": eos if isinstance(eos, list) else [eos],
            "model_loads": True,
        }, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
