#!/usr/bin/env python3
"""Build transformers' greedy generations for `loam generate`'s test.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_generate.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures and must already hold the model
fixtures (fixtures_models.py). Writes DIR/expected/smollm2-135m/generate.json: for each
prompt, whether it went through the chat template, the prompt's token ids, and the ids
`model.generate(do_sample=False, max_new_tokens=32)` produced after it (f32, SDPA), with
the stop token, if any, removed (loam does not print it), and how many of them transformers
chose clearly (`decided`, see common.greedy).

Idempotent: DIR/generate.stamp holds a hash of this file, common.py, the package versions
and DIR/models.stamp.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import common  # noqa: E402
import fixtures_models  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "generate.stamp"
MAX_NEW_TOKENS = 32
# (prompt, through the chat template?)
PROMPTS = [
    ("What is the capital of France?", True),
    ("Translate into Welsh: Good morning, how are you?", True),
    ("Write a short poem about the sea.", True),
    ("The three primary colours are", False),
    ("Habari ya asubuhi! Leo ni siku", False),
]


def compute_stamp(out_dir: Path) -> str:
    h = hashlib.sha256()
    h.update(common.source_stamp([Path(__file__).resolve(), HERE / "common.py"]).encode())
    h.update(json.dumps(common.package_versions(), sort_keys=True).encode())
    try:
        h.update((out_dir / fixtures_models.STAMP_NAME).read_bytes())
    except OSError:
        h.update(b"no models stamp")
    return h.hexdigest()


def build(out_dir: Path) -> list[dict]:
    import torch
    from transformers import AutoTokenizer, GenerationConfig

    fixtures_models.set_threads(1)
    mdir = out_dir / "models" / fixtures_models.SMOL_NAME
    tok = AutoTokenizer.from_pretrained(mdir)
    model = fixtures_models.load_from_disk(mdir, torch.float32)
    gen = GenerationConfig.from_pretrained(mdir)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    # in chat mode loam also stops at the template's end of turn: the same token here
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    out = []
    for prompt, chat in PROMPTS:
        if chat:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                          add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]
            stop = sorted(set(eos) | {end_of_turn})
        else:
            ids = tok(prompt)["input_ids"]
            stop = sorted(set(eos))
        g = common.greedy(model, ids, stop, MAX_NEW_TOKENS)
        new, stopped = g["ids"], g["stop"] == "stop_token"
        text = tok.decode(new, skip_special_tokens=True)
        log(f"{'chat' if chat else 'raw '} {prompt!r} -> {text!r}"
            f"{' (stop token)' if stopped else ''}")
        out.append({"prompt": prompt, "chat": chat, "prompt_ids": ids, **g, "text": text})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).expanduser().resolve()
    target = out_dir / "expected" / fixtures_models.SMOL_NAME / "generate.json"
    stamp_file = out_dir / STAMP_NAME
    if not (out_dir / fixtures_models.STAMP_NAME).is_file():
        print(f"error: {out_dir} has no model fixtures; run fixtures_models.py first",
              file=sys.stderr)
        return 1
    stamp = compute_stamp(out_dir)
    if not args.force and common.stamp_matches(stamp_file, stamp) and target.is_file():
        print(f"generate fixtures up to date: {target} (stamp {stamp[:12]})")
        return 0
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = target.with_suffix(".json.tmp")
    common.write_json(tmp, {"max_new_tokens": MAX_NEW_TOKENS, "generations": build(out_dir)})
    tmp.replace(target)
    stamp_file.write_text(stamp + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
