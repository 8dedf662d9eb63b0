#!/usr/bin/env python3
"""Check a GGUF written by `loam gguf export` with llama.cpp itself (llama-cpp-python).

usage: check_llama_cpp.py FILE.gguf MODEL_DIR [--min-agreement 0.97] [--min-cosine C]
                          [--imported DIR] [--expect-mismatch TEXT]... [--threads N]
                          [--texts TEXT.parquet]

MODEL_DIR is the Hugging Face directory the GGUF was exported from. Over the oracle's
multilingual texts (fixtures_data.py's tokenizer texts: English, Welsh, Swahili, Amharic,
Chinese, emoji, code, special tokens; plus a few longer sentences; with --texts, also the
first 60 rows of that Parquet file's `text` column):
  - llama.cpp's tokenizer gives transformers' ids: `tokenizer(text)` (special tokens added as
    the tokenizer's post-processor adds them, special tokens in the text parsed) against
    `llama_tokenize(text, add_special=True, parse_special=True)`, which adds BOS / EOS as the
    GGUF's `tokenizer.ggml.add_bos_token` / `add_eos_token` say;
  - llama.cpp's next-token logits (logits_all) have the same argmax as transformers' f32
    model at >= 97% of all positions.

  - with --min-cosine, the mean cosine similarity of the two logit vectors over all positions
    is at least C (for quantized exports);
  - with --imported DIR (loam's `gguf import` of FILE), transformers' tokenizer of DIR gives
    the same ids as MODEL_DIR's on every text (llama.cpp's on a --expect-mismatch text);
  - each --expect-mismatch TEXT (a prefix of one of the texts) names a text that llama.cpp is
    known to tokenize differently: it is left out of the logit comparison, and must differ.

LongRoPE (Phi-3): transformers picks the short or long factors by the length of the
sequence, llama.cpp by its context size (a multiple of 256). For such a model each text is
run in a context of its length rounded up to 256, so the two choose alike whenever
`original_max_position_embeddings` is a multiple of 256, and texts longer than that length
are added, so that the long factors are checked too.

Prints the measured agreement; exits 0 when all hold, 1 otherwise (every mismatch printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from fixtures_data import TEXTS as DATA_TEXTS  # noqa: E402

# Longer running text, for more positions.
PROSE = [
    "The quick brown fox jumps over the lazy dog. In 1969, 3 astronauts flew to the Moon.",
    "Mae'r tywydd yn braf heddiw, ac rydw i'n mynd i'r traeth gyda fy ffrindiau.",
    "Habari ya leo? Watoto wanacheza mpira uwanjani na walimu wanawaangalia kwa furaha.",
    "ቋንቋ የሰው ልጅ ትልቁ ሀብት ነው፤ በየቀኑ አዳዲስ ቃላት እንማራለን።",
    "机器学习正在改变我们工作和学习的方式，开源模型让每个人都能参与。",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
]
TEXTS = [t for t in DATA_TEXTS if t] + PROSE
CTX_STEP = 256  # llama.cpp rounds n_ctx up to this


def longrope_original(model_dir: Path) -> int | None:
    """`original_max_position_embeddings` of a LongRoPE model, else None."""
    import json

    cfg = json.loads((model_dir / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type")) not in ("longrope", "su"):
        return None
    return int(cfg.get("original_max_position_embeddings") or rope["original_max_position_embeddings"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", type=Path)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--min-agreement", type=float, default=0.97)
    ap.add_argument("--min-cosine", type=float, default=None)
    ap.add_argument("--imported", type=Path, default=None)
    ap.add_argument("--expect-mismatch", action="append", default=[])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--texts", type=Path, help="also the first 60 rows of this Parquet's `text` column")
    args = ap.parse_args()

    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    ref = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    contexts = {}

    def llama(n_ctx: int):
        if n_ctx not in contexts:
            contexts[n_ctx] = Llama(model_path=str(args.gguf), n_ctx=n_ctx, n_batch=n_ctx,
                                    n_ubatch=n_ctx, logits_all=True, n_threads=args.threads,
                                    n_threads_batch=args.threads, n_gpu_layers=0, seed=0,
                                    verbose=False)
        return contexts[n_ctx]

    original = longrope_original(args.model_dir)
    texts = list(TEXTS) + (read_texts(args.texts)[:60] if args.texts else [])
    if original is not None:
        # enough prose to run past the original length by a few dozen tokens
        long = " ".join(PROSE)
        while len(tok(long)["input_ids"]) <= original + 32:
            long += " " + " ".join(PROSE)
        texts.append(long)

    errors = []
    agree = total = 0
    cosines = []
    expected_mismatch = 0
    llama_ids = {}
    for text in texts:
        want = tok(text)["input_ids"]
        n_ctx = 512 if original is None else -(-len(want) // CTX_STEP) * CTX_STEP
        llm = llama(n_ctx)
        got = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        llama_ids[text] = got
        if any(text.startswith(p) for p in args.expect_mismatch):
            if got == want:
                errors.append(f"expected llama.cpp to tokenize {text[:40]!r} differently, it did not")
            expected_mismatch += 1
            continue
        if got != want:
            errors.append(f"tokens differ on {text[:40]!r}:\n  llama.cpp    {got}\n  transformers {want}")
            continue
        assert len(want) <= llm.n_ctx(), f"{len(want)} tokens: raise n_ctx"
        llm.reset()
        llm.eval(want)
        ours = np.array(llm.scores[: len(want)])
        with torch.no_grad():
            theirs = ref(torch.tensor([want])).logits[0].numpy()
        agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        total += len(want)
        num = (ours * theirs).sum(-1)
        den = np.linalg.norm(ours, axis=-1) * np.linalg.norm(theirs, axis=-1)
        cosines.extend((num / den).tolist())
    if args.imported is not None:
        back = AutoTokenizer.from_pretrained(args.imported)
        for text in texts:
            # A known llama.cpp difference is what the GGUF holds: import gives llama.cpp's ids.
            known = any(text.startswith(p) for p in args.expect_mismatch)
            want = llama_ids[text] if known else tok(text)["input_ids"]
            if back(text)["input_ids"] != want:
                errors.append(f"the imported tokenizer differs on {text[:40]!r}")
    for llm in contexts.values():
        llm.close()  # now, not in __del__ at interpreter exit (which prints a spurious error)
    rate = agree / total if total else 0.0
    cosine = float(np.mean(cosines)) if cosines else 0.0
    longest = max(len(tok(t)["input_ids"]) for t in texts)
    same = len(texts) - expected_mismatch - sum(e.startswith("tokens differ") for e in errors)
    print(f"llama.cpp {llm_version()}: tokenization identical on {same}/{len(texts)} texts"
          f"{f' ({expected_mismatch} known to differ)' if expected_mismatch else ''} (longest {longest} tokens); top-1 "
          f"agreement with transformers {rate:.4f} ({agree}/{total} positions); mean logit "
          f"cosine {cosine:.5f}"
          f"{'; imported tokenizer checked' if args.imported is not None else ''}")
    if total and rate < args.min_agreement:
        errors.append(f"top-1 agreement {rate:.4f} < {args.min_agreement}")
    if args.min_cosine is not None and cosine < args.min_cosine:
        errors.append(f"mean cosine {cosine:.5f} < {args.min_cosine}")
    if errors:
        print("\n".join(errors))
        return 1
    return 0


def read_texts(path: Path) -> list[str]:
    import pyarrow.parquet as pq
    return pq.read_table(path).column("text").to_pylist()


def llm_version() -> str:
    import llama_cpp
    return llama_cpp.__version__


if __name__ == "__main__":
    sys.exit(main())
