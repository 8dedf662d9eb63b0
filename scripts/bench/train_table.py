#!/usr/bin/env python3
"""Prints scripts/bench/train.sh's table from its results.jsonl.

    train_table.py RESULTS.jsonl MODEL_DIR '{"bf16": GFLOP/s, "f32": GFLOP/s}' [--markdown]

--markdown prints the table as the README carries it. Runs on a GPU (peak_gpu_bytes in the
results) add each stack's peak GPU memory and its ratio.

The first and last steps' losses are printed for both stacks as a check that they train the
same thing: LoRA's B starts at zero, so the first is the base model's loss on the same first
micro-batch; the last differs only by the adapters' random initialisation.

tokens/s = micro_batch x seq_len / the median step time after 3 warm-up steps, pooled over
the runs of a configuration (train.sh --repeat); peak memory is the largest of those runs.
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
    runs = defaultdict(list)
    for r in results:
        runs[(r["dtype"], r["shape"], r["checkpointing"], r["stack"])].append(r)
    rows = defaultdict(dict)
    for (dtype, shape, ckpt, stack), repeats in runs.items():
        mb, seq = map(int, shape.split("x"))
        steady = [s for r in repeats for s in (r["seconds"][WARMUP:] or r["seconds"])]
        tps = mb * seq / statistics.median(steady)
        mfu = tps * flops_per_token(cfg, seq) / (peak[dtype] * 1e9)
        gpu = [r["peak_gpu_bytes"] for r in repeats if r.get("peak_gpu_bytes") is not None]
        rows[(dtype, shape, ckpt)][stack] = (
            tps, max(r["peak_rss_bytes"] for r in repeats), mfu, max(gpu) if gpu else None,
            (repeats[0]["losses"][0], repeats[0]["losses"][-1]))
    head = (f"{'dtype':5} {'shape':7} {'ckpt':4} | {'loam tok/s':>10} {'ref tok/s':>9} "
            f"{'ratio':>5} | {'loam RSS':>9} {'ref RSS':>9} {'ratio':>5} | "
            f"{'loam MFU':>8} {'ref MFU':>7}")
    complete = [(k, v) for k, v in sorted(rows.items()) if "loam" in v and "reference" in v]
    gpu = any(v["loam"][3] is not None for _, v in complete)
    if "--markdown" in sys.argv[4:]:
        print("| dtype | micro-batch × tokens | checkpointing | loam tokens/s | reference "
              "tokens/s | ratio | loam peak RSS | reference peak RSS | ratio | "
              + ("loam peak GPU memory | reference peak GPU memory | ratio | " if gpu else "")
              + "MFU loam / reference |")
        print("| --- " * (13 if gpu else 10) + "|")
        for (dtype, shape, ckpt), v in complete:
            (lt, lr, lm, lg, _), (rt, rr, rm, rg, _) = v["loam"], v["reference"]
            gpu_cells = (f"{lg / 2**30:.2f} GiB | {rg / 2**30:.2f} GiB | {lg / rg:.2f}× | "
                         if gpu else "")
            print(f"| {dtype} | {shape.replace('x', ' × ')} | {'on' if ckpt else 'off'} | "
                  f"{lt:.0f} | {rt:.0f} | {lt / rt:.2f}× | {lr / 2**30:.2f} GiB | "
                  f"{rr / 2**30:.2f} GiB | {lr / rr:.2f}× | {gpu_cells}"
                  f"{100 * lm:.1f}% / {100 * rm:.1f}% |")
        return
    if gpu:
        head += f" | {'loam GPU':>9} {'ref GPU':>9} {'ratio':>5}"
    head += f" | {'first-step loss loam / ref':>26} | {'last-step loss loam / ref':>25}"
    print(head)
    print("-" * len(head))
    for (dtype, shape, ckpt), v in complete:
        (lt, lr, lm, lg, ll), (rt, rr, rm, rg, rl) = v["loam"], v["reference"]
        line = (f"{dtype:5} {shape:7} {'on' if ckpt else 'off':4} | {lt:10.0f} {rt:9.0f} "
                f"{lt / rt:5.2f} | {lr / 2**30:6.2f}GiB {rr / 2**30:6.2f}GiB {lr / rr:5.2f} | "
                f"{100 * lm:7.1f}% {100 * rm:6.1f}%")
        if gpu:
            line += f" | {lg / 2**30:6.2f}GiB {rg / 2**30:6.2f}GiB {lg / rg:5.2f}"
        print(line + f" | {ll[0]:14.4f} / {rl[0]:.4f} | {ll[1]:13.4f} / {rl[1]:.4f}")
    print(f"matmul peak: bf16 {peak['bf16']} GFLOP/s, f32 {peak['f32']} GFLOP/s "
          f"({peak.get('threads')} threads)")


if __name__ == "__main__":
    main()
