#!/usr/bin/python3
"""PyTorch's batch-1 latency on the float jet tagger (16-64-32-32-5, ReLU), for bench/cpp_latency.cpp.

Prints one line: `median_ns X` (median over 31 timed groups of `reps` calls, after a warm-up), on
`--threads` threads, under torch.no_grad(). Needs Debian's python3-torch (/usr/bin/python3).

  /usr/bin/python3 bench/cpp_latency.py [--threads 1] [--reps 200]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 5)).eval()
    x = torch.randn(1, 16)
    per = []
    with torch.no_grad():
        for _ in range(500):
            model(x)
        for _ in range(31):
            t0 = time.perf_counter_ns()
            for _ in range(a.reps):
                model(x)
            per.append((time.perf_counter_ns() - t0) / a.reps)
    print("median_ns %.1f" % statistics.median(per))


if __name__ == "__main__":
    main()
