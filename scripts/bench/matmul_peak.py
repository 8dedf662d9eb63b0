#!/usr/bin/env python3
"""This machine's matmul throughput with libtorch (the library both loam and the reference
use), the ceiling for model FLOP utilisation. Prints JSON {"bf16": GFLOP/s, "f32": GFLOP/s}:
the best of a large square matmul and SmolLM2-135M's own MLP shape [1024 x 576] @ [576 x 1536].
"""

import json
import time

import torch


def gflops(m: int, k: int, n: int, dtype, seconds: float = 2.0) -> float:
    a = torch.randn(m, k, dtype=dtype)
    b = torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - t0) / 1e9


if __name__ == "__main__":
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        out[name] = round(max(gflops(2048, 2048, 2048, dtype), gflops(1024, 576, 1536, dtype)), 1)
    out["threads"] = torch.get_num_threads()
    print(json.dumps(out))
