#!/usr/bin/env python3
"""Runs one benchmarked command and writes its peak memory: what GNU time reports, plus the
GPU's, with no dependency beyond Python.

    measure.py --out PEAK.json --log RUN.log [--gpu] -- COMMAND [ARGS...]

Writes {"peak_rss_bytes": N, "peak_gpu_bytes": N|null, "exit": code}. The peak RSS is the
child's own (wait4's ru_maxrss). With --gpu, `nvidia-smi` samples the memory used on GPU 0
every 50 ms while the command runs; the peak less the reading before it started is the
command's (its CUDA context, its allocator's cache and its tensors), measured the same way
for every stack. The command's stdout and stderr go to --log. Exits with the command's code.
"""

import argparse
import json
import os
import subprocess
import sys
import threading

SMI = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]


def gpu_used_mib() -> int:
    return int(subprocess.check_output(SMI, text=True).split()[0])


def sample_gpu(peak: list[int], stop: threading.Event) -> None:
    """Keeps peak[0] at the highest reading of a streaming nvidia-smi until stop is set."""
    smi = subprocess.Popen(SMI + ["-lms", "50"], stdout=subprocess.PIPE, text=True)
    for line in smi.stdout:
        if line.strip().isdigit():
            peak[0] = max(peak[0], int(line))
        if stop.is_set():
            break
    smi.kill()
    smi.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command to run")

    stop, peak, sampler, baseline = threading.Event(), [0], None, 0
    if args.gpu:
        baseline = gpu_used_mib()
        peak[0] = baseline
        sampler = threading.Thread(target=sample_gpu, args=(peak, stop), daemon=True)
        sampler.start()
    with open(args.log, "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if sampler:
        stop.set()
        sampler.join(timeout=5)
    with open(args.out, "w") as f:
        json.dump({"peak_rss_bytes": usage.ru_maxrss * 1024,
                   "peak_gpu_bytes": (peak[0] - baseline) * 2**20 if args.gpu else None,
                   "exit": code}, f)
    return code


if __name__ == "__main__":
    sys.exit(main())
