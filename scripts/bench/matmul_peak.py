#!/usr/bin/env python3
"""This machine's matmul throughput with libtorch (the library both loam and the reference
use), the ceiling for model FLOP utilisation. Prints JSON {"bf16": GFLOP/s, "f32": GFLOP/s}:
the best of a large square matmul and SmolLM2-135M's own MLP shape [1024 x 576] @ [576 x 1536].

    matmul_peak.py [cuda]

With `cuda`, the GPU's: the square matmul is 8192 wide (smaller ones do not fill an H100),
f32 is true f32 (no TF32, as in training), and every timing ends with a synchronize.
"""

import json
import sys
import time

import torch


def gflops(m: int, k: int, n: int, dtype, device: str, seconds: float = 2.0) -> float:
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
        if runs % 16 == 0:
            sync()
    sync()
    return 2 * m * k * n * runs / (time.perf_counter() - t0) / 1e9


if __name__ == "__main__":
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    square = 8192 if device == "cuda" else 2048
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        out[name] = round(max(gflops(square, square, square, dtype, device),
                              gflops(1024, 576, 1536, dtype, device)), 1)
    out["threads"] = torch.get_num_threads()
    out["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(json.dumps(out))
