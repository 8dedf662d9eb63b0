#!/usr/bin/env python3
"""Prints scripts/bench/train.sh's table from its results.jsonl.

    train_table.py RESULTS.jsonl MODEL_DIR '{"bf16": GFLOP/s, "f32": GFLOP/s}' [--markdown]

--markdown prints the table as the README carries it.

tokens/s = micro_batch x seq_len / the median step time after 3 warm-up steps.
Model FLOPs per token of LoRA training (base frozen, so no weight gradients for it):
  4 N  (forward 2N, input gradients 2N; N = weights of every linear incl. lm_head)
+ 6 L T d  (causal attention scores and mixing, forward and backward; d = heads x head_dim)
+ 6 r (in + out) per adapted linear (LoRA forward, input and weight gradients).
Recomputation under activation checkpointing is not counted (it is not model FLOPs).
MFU = model FLOP/s / the measured matmul peak of that dtype.
"""

import json
import statistics
import sys
from collections import defaultdict

R = 16
WARMUP = 3


def flops_per_token(cfg: dict, seq_len: int) -> float:
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads",
                                                    cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or h // heads
    shapes = [(h, heads * hd), (h, kv * hd), (h, kv * hd), (heads * hd, h),
              (h, inter), (h, inter), (inter, h)]
    n = layers * sum(i * o for i, o in shapes) + h * cfg["vocab_size"]
    lora = layers * sum(6 * R * (i + o) for i, o in shapes)
    return 4 * n + 6 * layers * seq_len * heads * hd + lora


def main() -> None:
    results = [json.loads(l) for l in open(sys.argv[1])]
    cfg = json.load(open(f"{sys.argv[2]}/config.json"))
    peak = json.loads(sys.argv[3])
    rows = defaultdict(dict)
    for r in results:
        mb, seq = map(int, r["shape"].split("x"))
        steady = r["seconds"][WARMUP:] or r["seconds"]
        tps = mb * seq / statistics.median(steady)
        mfu = tps * flops_per_token(cfg, seq) / (peak[r["dtype"]] * 1e9)
        rows[(r["dtype"], r["shape"], r["checkpointing"])][r["stack"]] = (
            tps, r["peak_rss_bytes"], mfu)
    head = (f"{'dtype':5} {'shape':7} {'ckpt':4} | {'loam tok/s':>10} {'ref tok/s':>9} "
            f"{'ratio':>5} | {'loam RSS':>9} {'ref RSS':>9} {'ratio':>5} | "
            f"{'loam MFU':>8} {'ref MFU':>7}")
    complete = [(k, v) for k, v in sorted(rows.items()) if "loam" in v and "reference" in v]
    if "--markdown" in sys.argv[4:]:
        print("| dtype | micro-batch × tokens | checkpointing | loam tokens/s | reference "
              "tokens/s | ratio | loam peak RSS | reference peak RSS | ratio | MFU loam / "
              "reference |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for (dtype, shape, ckpt), v in complete:
            (lt, lr, lm), (rt, rr, rm) = v["loam"], v["reference"]
            print(f"| {dtype} | {shape.replace('x', ' × ')} | {'on' if ckpt else 'off'} | "
                  f"{lt:.0f} | {rt:.0f} | {lt / rt:.2f}× | {lr / 2**30:.2f} GiB | "
                  f"{rr / 2**30:.2f} GiB | {lr / rr:.2f}× | {100 * lm:.1f}% / {100 * rm:.1f}% |")
        return
    print(head)
    print("-" * len(head))
    for (dtype, shape, ckpt), v in complete:
        (lt, lr, lm), (rt, rr, rm) = v["loam"], v["reference"]
        print(f"{dtype:5} {shape:7} {'on' if ckpt else 'off':4} | {lt:10.0f} {rt:9.0f} "
              f"{lt / rt:5.2f} | {lr / 2**30:6.2f}GiB {rr / 2**30:6.2f}GiB {lr / rr:5.2f} | "
              f"{100 * lm:7.1f}% {100 * rm:6.1f}%")
    print(f"matmul peak: bf16 {peak['bf16']} GFLOP/s, f32 {peak['f32']} GFLOP/s "
          f"({peak.get('threads')} threads)")


if __name__ == "__main__":
    main()
