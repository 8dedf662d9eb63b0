#!/usr/bin/env python3
"""Check a GGUF written by `loam gguf export` with llama.cpp itself (llama-cpp-python).

usage: check_llama_cpp.py FILE.gguf MODEL_DIR [--min-agreement 0.97] [--threads N] [--texts TEXT.parquet]

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

Prints the measured agreement; exits 0 when both hold, 1 otherwise (every mismatch printed).
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", type=Path)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--min-agreement", type=float, default=0.97)
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
    llm = Llama(model_path=str(args.gguf), n_ctx=512, n_batch=512, n_ubatch=512,
                logits_all=True, n_threads=args.threads, n_threads_batch=args.threads,
                n_gpu_layers=0, seed=0, verbose=False)

    texts = TEXTS + (read_texts(args.texts)[:60] if args.texts else [])
    errors = []
    agree = total = 0
    for text in texts:
        want = tok(text)["input_ids"]
        got = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
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
    llm.close()  # now, not in __del__ at interpreter exit (which prints a spurious error)
    rate = agree / total if total else 0.0
    print(f"llama.cpp {llm_version()}: tokenization identical on {len(texts) - len(errors)}/{len(texts)} "
          f"texts; top-1 agreement with transformers {rate:.4f} ({agree}/{total} positions)")
    if total and rate < args.min_agreement:
        errors.append(f"top-1 agreement {rate:.4f} < {args.min_agreement}")
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
