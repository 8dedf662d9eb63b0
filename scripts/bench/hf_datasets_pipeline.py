#!/usr/bin/env python3
"""Reference pipeline for the loam data benchmark: Parquet -> chat template -> tokens ->
assistant mask -> packed 2048-token sequences, with Hugging Face `datasets`.

    hf_datasets_pipeline.py --model DIR --data FILE_OR_GLOB [--seq-len 2048] [--num-proc 2]

The same work `loam data stats` does for a chat source with train_on = "assistant", packing on:
  1. load_dataset("parquet", data_files=...)          (datasets converts it to an Arrow cache)
  2. map(batched=True, num_proc=N): render every conversation with the model's own chat template
     (tokenizer.apply_chat_template, jinja), tokenize the rendered text with the fast tokenizer
     (offsets on), and build labels: exactly the assistant content tokens and each assistant
     turn's <|im_end|> are trained, everything else is -100. SmolLM2's ChatML template has no
     {% generation %} markers, so return_assistant_tokens_mask cannot be used; the assistant
     spans are found in the rendered string (after "<|im_start|>assistant\\n" up to and including
     the next "<|im_end|>") and mapped to tokens through the offsets -- what
     return_assistant_tokens_mask does internally with char_to_token.
  3. map(batched=True, num_proc=N): truncate each document to seq_len, then greedy next-fit
     packing into seq_len bins (a document that does not fit closes the bin), with position_ids
     restarting at each document. The packer's carry does not cross map batches.
Prints one JSON line of counts: rows, tokens (before truncation, as loam's "tokens"),
trained_tokens (after truncation, as loam's "trained tokens"), packed_tokens, sequences, and the
peak RSS of this process and of its largest worker (the workers' memory is not summed anywhere).
"""
import argparse
import glob
import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from datasets import disable_progress_bars, load_dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

ASSISTANT_OPEN = "<|im_start|>assistant\n"
END = "<|im_end|>"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, nargs="+")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1000)
    args = ap.parse_args()
    disable_progress_bars()
    t0 = time.time()

    tok = AutoTokenizer.from_pretrained(args.model)
    seq_len = args.seq_len
    files = sorted(f for pat in args.data for f in glob.glob(pat))
    if not files:
        sys.exit(f"no files match {args.data}")

    ds = load_dataset("parquet", data_files=files, split="train")
    t_load = time.time()

    def encode(batch):
        texts = tok.apply_chat_template(batch["messages"], tokenize=False)
        enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        labels, n_tok, n_trained = [], [], []  # n_trained: after truncation to seq_len, as loam counts
        for text, ids, offs in zip(texts, enc["input_ids"], enc["offset_mapping"]):
            starts = np.fromiter((o[0] for o in offs), dtype=np.int64, count=len(offs))
            trained = np.zeros(len(ids), dtype=bool)
            pos = text.find(ASSISTANT_OPEN)
            while pos >= 0:
                lo = pos + len(ASSISTANT_OPEN)
                hi = text.find(END, lo)
                hi = len(text) if hi < 0 else hi + len(END)
                trained[(starts >= lo) & (starts < hi)] = True
                pos = text.find(ASSISTANT_OPEN, hi)
            lab = np.asarray(ids, dtype=np.int64)
            lab[~trained] = -100
            labels.append(lab)
            n_tok.append(len(ids))
            n_trained.append(int(trained[:seq_len].sum()))
        return {"input_ids": enc["input_ids"], "labels": labels, "n_tok": n_tok, "n_trained": n_trained}

    ds = ds.map(encode, batched=True, batch_size=args.batch_size, num_proc=args.num_proc,
                remove_columns=ds.column_names)
    t_tok = time.time()

    def pack(batch):
        out_ids, out_lab, out_pos = [], [], []
        cur_ids, cur_lab, cur_pos = [], [], []
        for ids, lab in zip(batch["input_ids"], batch["labels"]):
            ids, lab = ids[:seq_len], lab[:seq_len]
            if cur_ids and len(cur_ids) + len(ids) > seq_len:
                out_ids.append(cur_ids); out_lab.append(cur_lab); out_pos.append(cur_pos)
                cur_ids, cur_lab, cur_pos = [], [], []
            cur_ids = cur_ids + ids
            cur_lab = cur_lab + lab
            cur_pos = cur_pos + list(range(len(ids)))
        if cur_ids:
            out_ids.append(cur_ids); out_lab.append(cur_lab); out_pos.append(cur_pos)
        return {"input_ids": out_ids, "labels": out_lab, "position_ids": out_pos}

    packed = ds.map(pack, batched=True, batch_size=args.batch_size, num_proc=args.num_proc,
                    remove_columns=ds.column_names)
    t_pack = time.time()

    tbl = ds.data
    packed_tokens = int(pc.sum(pc.list_value_length(packed.data.column("input_ids"))).as_py())
    print(json.dumps({
        "rows": len(ds),
        "tokens": int(pc.sum(tbl.column("n_tok")).as_py()),
        "trained_tokens": int(pc.sum(tbl.column("n_trained")).as_py()),
        "packed_tokens": packed_tokens,
        "sequences": len(packed),
        "load_s": round(t_load - t0, 2),
        "tokenize_s": round(t_tok - t_load, 2),
        "pack_s": round(t_pack - t_tok, 2),
        "maxrss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "maxrss_largest_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
