#!/usr/bin/python3
"""Fine-tuning throughput of small_cnn on Fashion-MNIST in PyTorch (Debian python3-torch, the
same libtorch 1.13 squeeze links): the twin of bench/train_throughput.cpp. Same architecture,
initialisation family, optimizer (Adam, lr 1e-3), batch size, threads and in-memory data with the
same normalization; prints one JSON line.
    /usr/bin/python3 bench/train_throughput.py [steps] [batch] [threads]
"""
import gzip
import json
import sys
import time

import numpy as np
import torch
from torch import nn

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(read_idx(f"{DATA}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
    x = (x - x.mean()) / x.std()
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def run(n, seed):
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(x.shape[0], generator=g)
        seen = 0
        start = time.perf_counter()
        for i in range(n):
            idx = order[i * batch:(i + 1) * batch]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()
            seen += xb.shape[0]
        return seen / (time.perf_counter() - start)

    run(5, 0)  # warm-up
    rate = run(steps, 1)
    print(json.dumps({"impl": "pytorch", "steps": steps, "batch": batch, "threads": torch.get_num_threads(),
                      "samples_per_s": round(rate, 1)}))


if __name__ == "__main__":
    main()
