#!/usr/bin/env python3
"""Check what `loam vocab extend` wrote, and what loam exports from it, with the Python stack.

usage:
  check_vocab.py tokenizer DIR BASE_DIR --data TEXT.parquet --out IDS.json
  check_vocab.py generate MODEL_DIR --prompt TEXT... [--max-new-tokens 16]

tokenizer: transformers' AutoTokenizer on DIR and on BASE_DIR, over the corpus' texts and a few
  probes. Checks (exit 1 on any failure, each printed): every base token keeps its id; the
  extended ids, each new token expanded to the base tokens it replaces (DIR/vocab_extension.json),
  are the base ids (so text without new merges tokenizes exactly as before); every new token's
  embedding row (and untied lm_head row) is the mean of the base rows of the base tokenizer's BPE
  segmentation of that token, padding rows the mean of all base token rows, base rows unchanged;
  config.json's vocab_size. Writes `tokenizer(text)["input_ids"]` per text to IDS.json, for loam's
  tokenizer to be compared with. Prints one JSON line of counts.
generate: transformers' greedy `generate` (f32) for each raw prompt (`tokenizer(prompt)`), one
  JSON line each: {"prompt", "token_ids"} (the new tokens only, EOS excluded).
Used by tests/vocab.rs.
"""

from __future__ import annotations

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
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import common  # noqa: E402

PROBES = [
    "Hello, world! def f(x): return x ** 2",
    "   spaces  and\ttabs\n\nnewlines",
    "<|im_start|>user\nmae hen wlad<|im_end|>",
    "12345 ሰላም123ዓለም 🙂 émigré",
    "Mae'r tywydd yn braf heddiw, ac rydw i'n mynd i'r traeth.",
    "ቋንቋ የሰው ልጅ ትልቁ ሀብት ነው፤ በየቀኑ አዳዲስ ቃላት እንማራለን።",
]


def read_texts(path: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(path).column("text").to_pylist()


def weights(d: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def check_tokenizer(args) -> int:
    import torch
    from transformers import AutoTokenizer

    d, base_dir = Path(args.dir), Path(args.base)
    tok, base = AutoTokenizer.from_pretrained(d), AutoTokenizer.from_pretrained(base_dir)
    report = json.loads((d / "vocab_extension.json").read_text())
    parts = {t["id"]: t["parts"] for t in report["new_tokens"]}
    errors = []
    base_vocab, vocab = base.get_vocab(), tok.get_vocab()
    moved = [t for t, i in base_vocab.items() if vocab.get(t) != i]
    if moved:
        errors.append(f"{len(moved)} base tokens changed id, e.g. {moved[:3]}")
    if len(tok) != report["tokenizer_size"]:
        errors.append(f"len(tokenizer) {len(tok)} != tokenizer_size {report['tokenizer_size']}")

    texts = read_texts(args.data) + PROBES
    ids_out, new_seen, unchanged = [], 0, 0
    for text in texts:
        ext = tok(text, add_special_tokens=False)["input_ids"]
        want = base(text, add_special_tokens=False)["input_ids"]
        expanded = [p for i in ext for p in parts.get(i, [i])]
        if expanded != want:
            errors.append(f"expanded ids differ from the base's on {text[:40]!r}")
        n_new = sum(i in parts for i in ext)
        new_seen += n_new
        unchanged += n_new == 0 and ext == want
        ids_out.append({"text": text, "input_ids": tok(text)["input_ids"]})
    Path(args.out).write_text(json.dumps(ids_out, ensure_ascii=False))

    config = json.loads((d / "config.json").read_text())
    if config["vocab_size"] != report["vocab_size"]:
        errors.append(f"config vocab_size {config['vocab_size']} != {report['vocab_size']}")
    new_w, base_w = weights(d), weights(base_dir)
    names = ["model.embed_tokens.weight"] + (["lm_head.weight"] if "lm_head.weight" in base_w else [])
    worst = 0.0
    first = report["first_new_id"]
    for name in names:
        w, b = new_w[name].double(), base_w[name].double()
        if w.shape[0] != config["vocab_size"]:
            errors.append(f"{name}: {w.shape[0]} rows, vocab_size {config['vocab_size']}")
        if not torch.equal(w[: b.shape[0]][: first], b[: first]):
            errors.append(f"{name}: base rows changed")
        for t in report["new_tokens"]:
            # the base tokenizer's own BPE segmentation of the token, not loam's record
            pieces = base.backend_tokenizer.model.tokenize(t["token"])
            seg = [p.id for p in pieces]
            if seg != t["parts"]:
                errors.append(f"{t['token']!r}: base segmentation {seg} != parts {t['parts']}")
            want = b[seg].mean(0)
            worst = max(worst, float((w[t["id"]] - want).abs().max() / want.abs().max()))
        pad = b[:first].mean(0)
        for i in range(report["tokenizer_size"], w.shape[0]):
            worst = max(worst, float((w[i] - pad).abs().max() / pad.abs().max()))
    if worst > 1e-6:
        errors.append(f"new / padding rows differ from the means by {worst:.2e} (relative)")
    for e in errors:
        print(f"FAIL: {e}", file=sys.stderr)
    print(json.dumps({"texts": len(texts), "new_tokens_seen": new_seen,
                      "texts_without_new_tokens_unchanged": unchanged,
                      "row_rel_diff": worst, "errors": len(errors)}))
    return 1 if errors else 0


def generate(args) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    for prompt in args.prompt:
        g = common.greedy(model, tok(prompt)["input_ids"], eos, args.max_new_tokens)
        print(json.dumps({"prompt": prompt, **g}, ensure_ascii=False))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokenizer")
    t.add_argument("dir")
    t.add_argument("base")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    g = sub.add_parser("generate")
    g.add_argument("model_dir")
    g.add_argument("--prompt", nargs="+", required=True)
    g.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()
    return {"tokenizer": check_tokenizer, "generate": generate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
