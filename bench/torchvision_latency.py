#!/usr/bin/python3
"""squeeze against PyTorch and ONNX Runtime on nine torchvision CNNs, unpruned and pruned (issue 14).

For each model exported by bench/torchvision_export.py (64x64, random weights, calibrated BatchNorm
statistics): squeeze prunes 50% of the channels (L1, local) and writes the pruned graph as ONNX and
TorchScript; then the unpruned and pruned graphs run in three engines, in one process each, at
batch 1 and batch 32, interleaved in rounds (every engine and variant runs a few times per round):
  squeeze      build/bench/latency_worker (exec::Executor, as `squeeze bench`)
  PyTorch      the TorchScript squeeze exported, after torch.jit.freeze + optimize_for_inference
               (this process; Debian's python3-torch, the same libtorch)
  ONNX Runtime bench/ort_worker.js on the same ONNX files (the unpruned one is the export itself)
Same threads everywhere. Prints per model and batch the medians, the pruned speedup over the FLOPs
gain, and squeeze's latency over PyTorch's and ONNX Runtime's, then the summary the issue asks for.

  /usr/bin/python3 bench/torchvision_latency.py MODEL_DIR [--threads 2] [--models a,b] [--rounds 6] [--burst 0.25]
        [--batches 1,32] [--json OUT.json]
MODEL_DIR holds <model>.onnx (bench/torchvision_export.py MODEL_DIR writes them); the pruned files
are written there too. Needs build/bench/latency_worker (make build) and .deps/onnxruntime (make deps).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "regnet_x_400mf", "densenet121", "googlenet",
          "shufflenet_v2_x0_5", "mnasnet0_5", "squeezenet1_1"]


class Worker:
    """A worker process speaking the line protocol of bench/latency_worker.cpp and ort_worker.js."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"{line.split()[0]}: {reply['error']}")
        return reply

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=30)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def torch_runner(path, batch):
    model = torch.jit.load(path).eval()
    with torch.no_grad():
        model = torch.jit.optimize_for_inference(torch.jit.freeze(model))
    x = torch.randn(batch, 3, args.size, args.size)

    def run(n):
        us = []
        with torch.no_grad():
            for _ in range(n):
                t0 = time.perf_counter()
                model(x)
                us.append((time.perf_counter() - t0) * 1e6)
        return us
    return run


def measure(runners, rounds, burst_s):
    """Interleaved rounds: each engine in turn runs one untimed call and then about burst_s seconds
    of timed calls (long bursts: a virtual CPU idle for a while runs its first calls slowly).
    Returns each runner's timings in microseconds."""
    per_burst = {}
    for k, run in runners.items():  # warm-up: first calls pack weights, build primitives, JIT
        run(3)
        per_burst[k] = max(3, min(200, int(burst_s * 1e6 / statistics.median(run(3)))))
    times = {k: [] for k in runners}
    for _ in range(rounds):
        for k, run in runners.items():
            run(1)
            times[k] += run(per_burst[k])
            time.sleep(args.pause)  # let the last engine's spinning threads go to sleep
    return times


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--scope", default="local")
    ap.add_argument("--burst", type=float, default=0.25, help="seconds each engine runs per round")
    ap.add_argument("--pause", type=float, default=0.01, help="seconds between engines (their threads stop spinning)")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    worker_bin = os.path.join(ROOT, "build", "bench", "latency_worker")
    if not os.path.exists(worker_bin):
        sys.exit(f"{worker_bin} not found: run make build first")
    sq = Worker([worker_bin])
    ort = Worker(["node", os.path.join(HERE, "ort_worker.js")])
    results = []
    print(f"CPU: {cpu_model()}; threads {args.threads}; PyTorch {torch.__version__}; "
          f"pruning {args.ratio:.0%} of channels ({args.scope}, L1)", flush=True)
    for name in args.models.split(","):
        onnx_path = os.path.join(args.dir, name + ".onnx")
        stem = os.path.join(args.dir, name)
        info = sq.ask(f"load {name}:base {onnx_path} {args.threads}")
        sq.ask(f"torchscript {name}:base {stem}_base.pt")
        pruned = sq.ask(f"prune {name}:base {name}:pruned {args.ratio} {args.scope} {stem}_pruned")
        ort_ver = ort.ask(f"load {name}:base {onnx_path} {args.threads}")["version"]
        ort.ask(f"load {name}:pruned {stem}_pruned.onnx {args.threads}")
        flops_gain = pruned["flops"] / pruned["pruned_flops"]
        for batch in [int(b) for b in args.batches.split(",")]:
            dims = f"{batch},3,{args.size},{args.size}"
            convs = {}

            def sq_run(variant):
                def run(n):
                    reply = sq.ask(f"run {name}:{variant} {n} {dims}")
                    convs[variant] = reply["convs"]
                    return reply["us"]
                return run

            def ort_run(variant):
                return lambda n: ort.ask(f"run {name}:{variant} {n} {dims}")["us"]

            runners = {("squeeze", "base"): sq_run("base"), ("squeeze", "pruned"): sq_run("pruned"),
                       ("pytorch", "base"): torch_runner(f"{stem}_base.pt", batch),
                       ("pytorch", "pruned"): torch_runner(f"{stem}_pruned.pt", batch),
                       ("ort", "base"): ort_run("base"), ("ort", "pruned"): ort_run("pruned")}
            t = measure(runners, args.rounds, args.burst)
            med = {k: statistics.median(v) for k, v in t.items()}
            row = {"model": name, "batch": batch, "flops_gain": flops_gain, "prune_s": pruned["prune_s"],
                   "params": pruned["params"], "pruned_params": pruned["pruned_params"],
                   "median_us": {f"{e}_{v}": m for (e, v), m in med.items()}, "runs": len(t[("squeeze", "base")]),
                   "squeeze_convs": convs, "isa": info["isa"], "ort_version": ort_ver}
            row["speedup"] = med[("squeeze", "base")] / med[("squeeze", "pruned")]
            row["speedup_over_flops"] = row["speedup"] / flops_gain
            for v in ("base", "pruned"):
                row[f"vs_pytorch_{v}"] = med[("squeeze", v)] / med[("pytorch", v)]
                row[f"vs_ort_{v}"] = med[("squeeze", v)] / med[("ort", v)]
            results.append(row)
            print(f"{name:<20} b{batch:<3} squeeze {med[('squeeze', 'base')]:9.0f} -> {med[('squeeze', 'pruned')]:9.0f} us"
                  f"  pytorch {med[('pytorch', 'base')]:9.0f} -> {med[('pytorch', 'pruned')]:9.0f}"
                  f"  ort {med[('ort', 'base')]:9.0f} -> {med[('ort', 'pruned')]:9.0f}"
                  f"  FLOPs x{flops_gain:4.2f} speedup x{row['speedup']:4.2f} (/FLOPs {row['speedup_over_flops']:4.2f})"
                  f"  squeeze/pytorch {row['vs_pytorch_base']:4.2f} {row['vs_pytorch_pruned']:4.2f}"
                  f"  squeeze/ort {row['vs_ort_base']:4.2f} {row['vs_ort_pruned']:4.2f}", flush=True)
        print(f"  {name}: oneDNN ISA {info['isa']}; squeeze convolutions {convs.get('base')}; "
              f"pruning took {pruned['prune_s']:.2f} s", flush=True)
    sq.close()
    ort.close()
    print("\nsummary (ratios of medians from this one run):")
    for batch in sorted({r["batch"] for r in results}):
        rs = [r for r in results if r["batch"] == batch]
        so = [r["speedup_over_flops"] for r in rs]
        print(f"  batch {batch}: speedup/FLOPs median {statistics.median(so):.2f}, min {min(so):.2f}; "
              f"squeeze/pytorch pruned max {max(r['vs_pytorch_pruned'] for r in rs):.2f}; "
              f"squeeze/ort worst {max(max(r['vs_ort_base'], r['vs_ort_pruned']) for r in rs):.2f}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"cpu": cpu_model(), "threads": args.threads, "results": results}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
