#!/usr/bin/env python3
"""Check a LoRA GGUF written by `loam gguf export-adapter` with llama.cpp itself.

usage: check_llama_cpp_lora.py BASE.gguf ADAPTER.gguf MERGED.gguf [--min-agreement 0.97]
                               [--max-base-agreement A] [--rslora-r R] [--threads N]

BASE.gguf is the base model, ADAPTER.gguf the adapter, MERGED.gguf the merged model
(`loam merge` then `loam gguf export`). Over check_llama_cpp.py's multilingual texts,
llama.cpp with the adapter applied to the base (`lora_path=`, scale 1) must predict the same
top-1 token as llama.cpp on the merged model at >= --min-agreement of all positions.

So that the check can fail, the adapter must matter: with --max-base-agreement, the base alone
must agree with the merged model at no more than A of the positions. With --rslora-r R (an
rsLoRA adapter of rank R), the adapter applied at scale 1/sqrt(R) — what llama.cpp's own
convert_lora_to_gguf.py gives, as it writes alpha and ignores use_rslora — must fall below
--min-agreement. Prints the measured numbers; exits 0 when all hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))

from check_llama_cpp import TEXTS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("adapter", type=Path)
    ap.add_argument("merged", type=Path)
    ap.add_argument("--min-agreement", type=float, default=0.97)
    ap.add_argument("--max-base-agreement", type=float, default=None)
    ap.add_argument("--rslora-r", type=int, default=None)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()

    import numpy as np
    from llama_cpp import Llama

    def load(path: Path, **kw) -> Llama:
        return Llama(model_path=str(path), n_ctx=512, n_batch=512, n_ubatch=512,
                     logits_all=True, n_threads=args.threads, n_threads_batch=args.threads,
                     n_gpu_layers=0, seed=0, verbose=False, **kw)

    merged = load(args.merged)
    texts = [merged.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in TEXTS]

    def argmax(llm: Llama) -> list:
        out = []
        for ids in texts:
            llm.reset()
            llm.eval(ids)
            out.append(np.array(llm.scores[: len(ids)]).argmax(-1))
        return out

    want = argmax(merged)
    merged.close()

    def agreement(**kw) -> float:
        llm = load(args.base, **kw)
        got = argmax(llm)
        llm.close()
        same = sum(int((a == b).sum()) for a, b in zip(got, want))
        return same / sum(len(a) for a in want)

    errors = []
    with_adapter = agreement(lora_path=str(args.adapter))
    line = (f"llama.cpp: base + LoRA GGUF vs merged model, top-1 agreement {with_adapter:.4f} "
            f"over {sum(len(a) for a in want)} positions")
    if with_adapter < args.min_agreement:
        errors.append(f"top-1 agreement {with_adapter:.4f} < {args.min_agreement}")
    if args.max_base_agreement is not None:
        base = agreement()
        line += f"; base alone {base:.4f}"
        if base > args.max_base_agreement:
            errors.append(f"the adapter changes too little: base alone agrees {base:.4f} "
                          f"> {args.max_base_agreement}")
    if args.rslora_r is not None:
        scale = 1 / math.sqrt(args.rslora_r)
        ignored = agreement(lora_path=str(args.adapter), lora_scale=scale)
        line += f"; rsLoRA ignored (scale x{scale:.3f}) {ignored:.4f}"
        if ignored >= args.min_agreement:
            errors.append(f"ignoring rsLoRA still agrees {ignored:.4f}: the check cannot tell")
    print(line)
    if errors:
        print("\n".join(errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
