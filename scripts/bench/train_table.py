#!/usr/bin/env python3
"""Prints scripts/bench/train.sh's table from its results.jsonl.

    train_table.py RESULTS.jsonl MODEL_DIR '{"bf16": GFLOP/s, "f32": GFLOP/s}' [--markdown]
                   [--max-load L]

--markdown prints the table as the README carries it. Then every run is listed with the load
average it started at; runs that started above --max-load (default 1.0) are flagged. Runs on a GPU (peak_gpu_bytes in the
results) add each stack's peak GPU memory and its ratio.

The first and last steps' losses are printed for both stacks as a check that they train the
same thing: LoRA's B starts at zero, so the first is the base model's loss on the same first
micro-batch; the last differs only by the adapters' random initialisation.

A run's tokens/s = micro_batch x seq_len / its median step time after 3 warm-up steps; a
configuration's is the median over its rounds (train.sh --rounds), and its ratio is the
median of the rounds' loam / reference ratios, printed with their min-max spread. Peak
memory is the largest of the rounds.
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


def run_tokens_per_s(run: dict, tokens: int) -> float:
    """One run's tokens/s: tokens per step / the median step time after the warm-up."""
    return tokens / statistics.median(run["seconds"][WARMUP:] or run["seconds"])


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}×" if len(values) > 1 else "one round"


def main() -> None:
    args = sys.argv[1:]
    markdown = "--markdown" in args
    max_load = float(args[args.index("--max-load") + 1]) if "--max-load" in args else 1.0
    results = [json.loads(l) for l in open(args[0])]
    cfg = json.load(open(f"{args[1]}/config.json"))
    peak = json.loads(args[2])
    runs = defaultdict(list)
    for r in results:
        runs[(r["dtype"], r["shape"], r["checkpointing"], r["stack"])].append(r)
    rows = defaultdict(dict)
    for (dtype, shape, ckpt, stack), repeats in runs.items():
        mb, seq = map(int, shape.split("x"))
        per_round = {r.get("round", n + 1): run_tokens_per_s(r, mb * seq)
                     for n, r in enumerate(repeats)}
        tps = statistics.median(per_round.values())
        mfu = tps * flops_per_token(cfg, seq) / (peak[dtype] * 1e9)
        gpu = [r["peak_gpu_bytes"] for r in repeats if r.get("peak_gpu_bytes") is not None]
        rows[(dtype, shape, ckpt)][stack] = dict(
            tps=tps, per_round=per_round, rss=max(r["peak_rss_bytes"] for r in repeats),
            mfu=mfu, gpu=max(gpu) if gpu else None,
            losses=(repeats[0]["losses"][0], repeats[0]["losses"][-1]))
    complete = [(k, v) for k, v in sorted(rows.items()) if "loam" in v and "reference" in v]
    for _, v in complete:
        loam, ref = v["loam"]["per_round"], v["reference"]["per_round"]
        v["ratios"] = [loam[k] / ref[k] for k in sorted(loam) if k in ref]
        v["ratio"] = statistics.median(v["ratios"]) if v["ratios"] else float("nan")
    noisy = [r for r in results if r.get("load_before", 0.0) > max_load]
    gpu = any(v["loam"]["gpu"] is not None for _, v in complete)
    if markdown:
        print("| dtype | micro-batch × tokens | checkpointing | loam tokens/s | reference "
              "tokens/s | ratio, median of rounds (spread) | loam peak RSS | reference peak "
              "RSS | ratio | "
              + ("loam peak GPU memory | reference peak GPU memory | ratio | " if gpu else "")
              + "MFU loam / reference |")
        print("| --- " * (13 if gpu else 10) + "|")
        for (dtype, shape, ckpt), v in complete:
            lo, re = v["loam"], v["reference"]
            gpu_cells = (f"{lo['gpu'] / 2**30:.2f} GiB | {re['gpu'] / 2**30:.2f} GiB | "
                         f"{lo['gpu'] / re['gpu']:.2f}× | " if gpu else "")
            print(f"| {dtype} | {shape.replace('x', ' × ')} | {'on' if ckpt else 'off'} | "
                  f"{lo['tps']:.0f} | {re['tps']:.0f} | {v['ratio']:.2f}× "
                  f"({spread(v['ratios'])}) | {lo['rss'] / 2**30:.2f} GiB | "
                  f"{re['rss'] / 2**30:.2f} GiB | {lo['rss'] / re['rss']:.2f}× | {gpu_cells}"
                  f"{100 * lo['mfu']:.1f}% / {100 * re['mfu']:.1f}% |")
    else:
        head = (f"{'dtype':5} {'shape':7} {'ckpt':4} | {'loam tok/s':>10} {'ref tok/s':>9} "
                f"{'ratio':>5} {'spread':>11} | {'loam RSS':>9} {'ref RSS':>9} {'ratio':>5} | "
                f"{'loam MFU':>8} {'ref MFU':>7}")
        if gpu:
            head += f" | {'loam GPU':>9} {'ref GPU':>9} {'ratio':>5}"
        head += f" | {'first-step loss loam / ref':>26} | {'last-step loss loam / ref':>25}"
        print(head)
        print("-" * len(head))
        for (dtype, shape, ckpt), v in complete:
            lo, re = v["loam"], v["reference"]
            line = (f"{dtype:5} {shape:7} {'on' if ckpt else 'off':4} | {lo['tps']:10.0f} "
                    f"{re['tps']:9.0f} {v['ratio']:5.2f} {spread(v['ratios']):>11} | "
                    f"{lo['rss'] / 2**30:6.2f}GiB {re['rss'] / 2**30:6.2f}GiB "
                    f"{lo['rss'] / re['rss']:5.2f} | {100 * lo['mfu']:7.1f}% "
                    f"{100 * re['mfu']:6.1f}%")
            if gpu:
                line += (f" | {lo['gpu'] / 2**30:6.2f}GiB {re['gpu'] / 2**30:6.2f}GiB "
                         f"{lo['gpu'] / re['gpu']:5.2f}")
            (l0, l1), (r0, r1) = lo["losses"], re["losses"]
            print(line + f" | {l0:14.4f} / {r0:.4f} | {l1:13.4f} / {r1:.4f}")
        print(f"matmul peak: bf16 {peak['bf16']} GFLOP/s, f32 {peak['f32']} GFLOP/s "
              f"({peak.get('threads')} threads)")
    print()
    print("Runs (tokens/s = tokens per step / the run's median step after 3 warm-up steps; "
          "load = 1-minute load average at its start):")
    for r in results:
        mb, seq = map(int, r["shape"].split("x"))
        load = r.get("load_before")
        flag = "  <- started above --max-load" if load is not None and load > max_load else ""
        print(f"  {r['dtype']} {r['shape']} checkpointing {'on ' if r['checkpointing'] else 'off'}"
              f" round {r.get('round', '?')} {r['stack']:9} {run_tokens_per_s(r, mb * seq):7.1f}"
              f" tokens/s, load {load if load is not None else '?'}{flag}")
    if noisy:
        print(f"{len(noisy)} of {len(results)} runs started with the load average above "
              f"{max_load}: their numbers are not from a quiet machine")


if __name__ == "__main__":
    main()
