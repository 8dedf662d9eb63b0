#!/usr/bin/env python3
"""The reference for scripts/bench/train.sh: a plain PEFT + transformers LoRA training loop.

    python peft_train.py --model DIR --data FILE.parquet --dtype bf16 --micro-batch 4
                         --seq-len 256 --steps 20 [--checkpointing] [--device cuda]
                         [--quantize nf4] --out FILE.json

transformers' AutoModelForCausalLM (SDPA attention) with peft's LoRA on all linear layers
(r 16, alpha 32, dropout 0), torch.optim.AdamW, gradient clipping at 1.0, no Trainer. Each
step is one micro-batch of `micro_batch` rows of `seq_len` tokens: the documents of the text
column, tokenized and truncated to seq_len (every one is at least that long; after the last,
the first again), every token trained. Writes per-step seconds and the peak RSS (getrusage)
to --out. On CUDA each step ends with a synchronize, so its time is the GPU's work, not only
the launches. With --quantize nf4 it is QLoRA as PEFT + bitsandbytes do it: the model loaded
with BitsAndBytesConfig(load_in_4bit, nf4, double quantization, compute dtype = --dtype),
LoRA on its Linear4bit layers (no prepare_model_for_kbit_training: it would upcast the
embeddings to f32).
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quantize", choices=["none", "nf4"], default="none")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import pyarrow.parquet as pq
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    if args.quantize == "nf4":
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype,
                                                     attn_implementation="sdpa",
                                                     quantization_config=config,
                                                     device_map=args.device)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype,
                                                     attn_implementation="sdpa").to(args.device)
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.0,
                                             target_modules="all-linear", bias="none",
                                             task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)

    texts = pq.read_table(args.data, columns=["text"]).column("text").to_pylist()
    need = args.steps * args.micro_batch
    rows = []
    for text in texts:
        ids = tok(text)["input_ids"][: args.seq_len]
        if len(ids) == args.seq_len:
            rows.append(ids)
        if len(rows) == need:
            break
    assert rows, f"no document of >= {args.seq_len} tokens"
    # Past the end of the data, start again from the top (loam's next epoch, unshuffled).
    rows = [rows[i % len(rows)] for i in range(need)]

    seconds, losses = [], []
    for step in range(args.steps):
        batch = torch.tensor(rows[step * args.micro_batch:(step + 1) * args.micro_batch],
                             device=args.device)
        t0 = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        losses.append(float(loss.detach()))
        seconds.append(time.perf_counter() - t0)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(args.out, "w") as f:
        json.dump({"seconds": seconds, "losses": losses, "peak_rss_bytes": peak_kib * 1024,
                   "threads": torch.get_num_threads(),
                   "trainable": sum(p.numel() for p in params)}, f)


if __name__ == "__main__":
    main()
