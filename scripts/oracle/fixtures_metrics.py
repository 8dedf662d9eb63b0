#!/usr/bin/env python3
"""Build the bits-per-byte references for `loam eval`'s test.

    $HOME/.cache/loam/venv/bin/python scripts/oracle/fixtures_metrics.py [--out DIR] [--force]

DIR defaults to $LOAM_FIXTURES or ~/.cache/loam/fixtures and must already hold the model
fixtures (fixtures_models.py). Writes DIR/metrics/:

  text.parquet    column `text`: multilingual rows (Welsh, Swahili, Chinese, Amharic, Hindi,
                  combining marks, emoji with skin tones and ZWJ sequences, a flag)
  chat.parquet    column `messages` (list of {role, content}): one- and two-turn chats, a
                  system turn, multilingual assistant answers with emoji
  alpaca.parquet  columns `instruction`, `input` (some empty), `output`
  expected.json   {"model": "models/smollm2-135m", "cases": {name: {file, format, seq_len,
                  rows, tokens, nll, bytes, chars, bits_per_byte, bits_per_char}}}

Each case is loam's eval contract computed here with transformers (SmolLM2-135M in f32,
sdpa; log-softmax and sums in float64): rows on their own, truncated to seq_len, the
summed NLL of the loss-bearing tokens, and the text those tokens stand for measured with
Python's len(s.encode()) and len(s):
  text    tokenizer(text) + EOS, every token after the first predicted; the text is the
          row's text (cut at the last kept token's offset when truncated: case text-seq8)
  chat    apply_chat_template; loss on the assistant turns (content + end of turn) found
          by prefix rendering (fixtures_data.prefix_spans); the text is their contents
  alpaca  the Stanford prompt (instruction, input) + output + EOS, loss on the output and
          EOS; the text is the output

Idempotent: DIR/metrics.stamp holds a hash of this file, common.py, fixtures_data.py, the
package versions and DIR/models.stamp.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import common  # noqa: E402
import fixtures_data  # noqa: E402
import fixtures_models  # noqa: E402
from common import log  # noqa: E402

STAMP_NAME = "metrics.stamp"
OWNED = "metrics"
SEQ_LEN = 256

TEXTS = [
    "Mae hen wlad fy nhadau yn annwyl i mi, gwlad beirdd a chantorion. 🏴󠁧󠁢󠁷󠁬󠁳󠁿",
    "Habari ya asubuhi! Leo ni siku nzuri sana. 😀👍🏽",
    "你好，世界。今天天气很好，我们去公园散步吧。",
    "ሰላም ለዓለም። እንደምን አደርክ?",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "Cafe\u0301 nai\u0308ve, Zoë, Ångström — combining marks and precomposed: café.",
    "Family: 👨‍👩‍👧‍👦, rainbow flag 🏳️‍🌈, keycap 1️⃣.",
    "The quick brown fox jumps over the lazy dog.",
]

CHATS = [
    [{"role": "user", "content": "Translate into Welsh: Good morning"},
     {"role": "assistant", "content": "Bore da! ☀️"}],
    [{"role": "system", "content": "You translate into Swahili."},
     {"role": "user", "content": "Thank you very much"},
     {"role": "assistant", "content": "Asante sana 🙏🏾"}],
    [{"role": "user", "content": "Say hello in Chinese"},
     {"role": "assistant", "content": "你好！👋"},
     {"role": "user", "content": "And goodbye?"},
     {"role": "assistant", "content": "再见。😊 Zàijiàn."}],
    [{"role": "user", "content": "Spell café with a combining accent"},
     {"role": "assistant", "content": "Cafe\u0301 — e + U+0301."}],
]

ALPACA = [
    {"instruction": "Translate into Welsh.", "input": "Open file", "output": "Agor ffeil 📂"},
    {"instruction": "Greet the user in Amharic.", "input": "", "output": "ሰላም! እንኳን ደህና መጡ። 👋🏿"},
    {"instruction": "Give the Chinese for 'thank you'.", "input": "", "output": "谢谢 (xièxie) 🙂"},
]

ALPACA_PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that "
                       "provides further context. Write a response that appropriately completes "
                       "the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n"
                       "### Response:\n")
ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that "
                 "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
                 "### Response:\n")


def compute_stamp(out_dir: Path) -> str:
    h = hashlib.sha256()
    h.update(common.source_stamp([Path(__file__).resolve(), HERE / "common.py",
                                  HERE / "fixtures_data.py"]).encode())
    try:
        h.update((out_dir / fixtures_models.STAMP_NAME).read_bytes())
    except OSError:
        h.update(b"no models stamp")
    return h.hexdigest()


def write_parquet(tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": TEXTS}), tmp / "text.parquet", row_group_size=4)
    pq.write_table(pa.table({"messages": CHATS}), tmp / "chat.parquet", row_group_size=3)
    pq.write_table(pa.table({k: [r[k] for r in ALPACA] for k in ("instruction", "input", "output")}),
                   tmp / "alpaca.parquet")


def row_nll(model, ids: list[int], trained: list[bool]) -> tuple[float, int]:
    """Summed NLL of the trained targets (position t >= 1 predicted from t - 1), float64."""
    import torch

    targets = [t for t in range(1, len(ids)) if trained[t]]
    if not targets:
        return 0.0, 0
    with torch.no_grad():
        x = torch.tensor([ids])
        lp = torch.log_softmax(model(input_ids=x).logits[0].double(), dim=-1)
    return float(-sum(lp[t - 1, ids[t]] for t in targets)), len(targets)


def case(name, file, fmt, seq_len, rows) -> dict:
    """rows: (nll, tokens, trained text) per row."""
    nll = sum(r[0] for r in rows)
    tokens = sum(r[1] for r in rows)
    text = "".join(r[2] for r in rows)
    n_bytes, n_chars = len(text.encode("utf-8")), len(text)
    bits = nll / math.log(2)
    out = {"file": file, "format": fmt, "seq_len": seq_len, "rows": len(rows), "tokens": tokens,
           "nll": nll, "bytes": n_bytes, "chars": n_chars,
           "bits_per_byte": bits / n_bytes, "bits_per_char": bits / n_chars}
    log(f"{name}: {tokens} tokens, {n_bytes} bytes, {n_chars} chars, "
        f"loss {nll / tokens:.4f}, bits/byte {out['bits_per_byte']:.4f}")
    return out


def text_rows(model, tok, seq_len):
    rows = []
    for text in TEXTS:
        ids = common.eval_row_ids(tok, text, seq_len)
        nll, n = row_nll(model, ids, [True] * len(ids))
        enc = tok(text, return_offsets_mapping=True)
        kept = enc["offset_mapping"][:len(ids)]
        cut = max((e for _, e in kept), default=0)  # character offsets
        rows.append((nll, n, text[:cut]))
    return rows


def chat_rows(model, tok):
    rows = []
    for messages in CHATS:
        rendered = tok.apply_chat_template(messages, tokenize=False)
        enc = tok(rendered, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        assert ids == list(tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        assert len(ids) <= SEQ_LEN
        spans = fixtures_data.prefix_spans(tok, messages)
        mask = fixtures_data.mask_from_spans(enc["offset_mapping"], spans)
        nll, n = row_nll(model, ids, [bool(m) for m in mask])
        rows.append((nll, n, "".join(m["content"] for m in messages if m["role"] == "assistant")))
    return rows


def alpaca_rows(model, tok):
    rows = []
    for r in ALPACA:
        template = ALPACA_PROMPT_INPUT if r["input"] else ALPACA_PROMPT
        prompt = template.replace("{instruction}", r["instruction"]).replace("{input}", r["input"])
        enc = tok(prompt + r["output"], return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        trained = [e > len(prompt) for _, e in enc["offset_mapping"]]
        if ids[-1] != tok.eos_token_id:
            ids.append(tok.eos_token_id)
            trained.append(True)
        assert len(ids) <= SEQ_LEN
        nll, n = row_nll(model, ids, trained)
        rows.append((nll, n, r["output"]))
    return rows


def build(out_dir: Path, tmp: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    fixtures_models.set_threads(1)
    mdir = out_dir / "models" / fixtures_models.SMOL_NAME
    tok = AutoTokenizer.from_pretrained(mdir)
    model = fixtures_models.load_from_disk(mdir, torch.float32)
    write_parquet(tmp)
    cases = {
        "text": case("text", "text.parquet", "text", SEQ_LEN, text_rows(model, tok, SEQ_LEN)),
        "text-seq8": case("text-seq8", "text.parquet", "text", 8, text_rows(model, tok, 8)),
        "chat": case("chat", "chat.parquet", "chat", SEQ_LEN, chat_rows(model, tok)),
        "alpaca": case("alpaca", "alpaca.parquet", "alpaca", SEQ_LEN, alpaca_rows(model, tok)),
    }
    common.write_json(tmp / "expected.json",
                      {"model": f"models/{fixtures_models.SMOL_NAME}", "cases": cases})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out_dir = (args.out or common.default_out_dir()).expanduser().resolve()
    stamp_file = out_dir / STAMP_NAME
    if not (out_dir / fixtures_models.STAMP_NAME).is_file():
        print(f"error: {out_dir} has no model fixtures; run fixtures_models.py first",
              file=sys.stderr)
        return 1
    stamp = compute_stamp(out_dir)
    if not args.force and common.stamp_matches(stamp_file, stamp) and (out_dir / OWNED / "expected.json").is_file():
        print(f"metrics fixtures up to date: {out_dir / OWNED} (stamp {stamp[:12]})")
        return 0
    if stamp_file.exists():
        stamp_file.unlink()
    tmp = out_dir / f".tmp-metrics-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(out_dir, tmp)
        common.replace_path(tmp, out_dir / OWNED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp_file.write_text(stamp + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
