#!/usr/bin/python3
"""PyTorch on the exact graphs of bench/structured_speed.cpp: does pruning speed them up there?

Reads the index that `structured_speed THREADS BUDGET export=DIR` writes (TorchScript files of
every baseline and pruned model), runs each pair interleaved at batch 1 and 64 in PyTorch 1.13
(Debian's python3-torch, the same libtorch) as loaded and after torch.jit.optimize_for_inference
(frozen, conv-bn folded, oneDNN layouts), and prints FLOPs-free speedups to set beside squeeze's.
Run it with /usr/bin/python3 (a pyenv python3 on PATH may lack torch).

  /usr/bin/python3 bench/structured_speed.py DIR [--threads 2] [--budget 2.0]
"""
import argparse
import statistics
import time

import torch


def measure(models, x, budget):
    times = [[] for _ in models]
    with torch.no_grad():
        for m in models:
            for _ in range(3):
                m(x)
        start = time.perf_counter()
        while time.perf_counter() - start < budget or len(times[0]) < 5:
            for i, m in enumerate(models):  # interleaved, like deploy::measure_latency
                t0 = time.perf_counter()
                m(x)
                times[i].append((time.perf_counter() - t0) * 1e6)
            if len(times[0]) >= 200:
                break
    return [statistics.median(t) for t in times]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=2.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"{'model':<50} {'variant':<22} {'b1 base us':>11} {'b1 pruned':>10} {'b1 x':>6} "
          f"{'b64 base us':>12} {'b64 pruned':>11} {'b64 x':>6}")
    for line in open(f"{a.dir}/index.tsv"):
        stem, label = line.rstrip("\n").split("\t")
        base = torch.jit.load(stem + "_base.pt").eval()
        pruned = torch.jit.load(stem + "_pruned.pt").eval()
        variants = {"as loaded": (base, pruned),
                    "optimize_for_inference": tuple(torch.jit.optimize_for_inference(torch.jit.freeze(m))
                                                    for m in (base, pruned))}
        for name, (mb, mp) in variants.items():
            row = []
            for batch in (1, 64):
                x = torch.randn(batch, *(1, 28, 28) if "small_cnn" in label else (3, 32, 32))
                tb, tp = measure([mb, mp], x, a.budget)
                row += [tb, tp, tb / tp]
            print(f"{label:<50} {name:<22} {row[0]:11.1f} {row[1]:10.1f} {row[2]:6.2f} "
                  f"{row[3]:12.1f} {row[4]:11.1f} {row[5]:6.2f}")


if __name__ == "__main__":
    main()
