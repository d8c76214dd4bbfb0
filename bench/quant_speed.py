#!/usr/bin/python3
"""PyTorch's own int8 on the models of bench/quant_speed.cpp (small_cnn, resnet20).

Float, static int8 (FX graph mode, ONEDNN engine, conv-bn-relu fused) and dynamic int8 (Linear
layers only, as quantize_dynamic does), measured interleaved at batch 1 and 64. Prints one JSON
object per line: {"model", "variant", "batch", "median_us"}. Needs Debian's python3-torch: run
it with /usr/bin/python3 (a pyenv python3 on PATH may lack torch).

  /usr/bin/python3 bench/quant_speed.py [--threads 1] [--budget 2.0]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx


class SmallCNN(nn.Module):
    """models/zoo.cpp small_cnn: two conv layers + two linear layers (width 32)."""

    def __init__(self, w=32, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.fc1 = nn.Linear(2 * w * 7 * 7, 4 * w)
        self.fc2 = nn.Linear(4 * w, classes)
        self.pool = nn.MaxPool2d(2, 2)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.25)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(self.drop(self.relu(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu1(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        s = x if self.down is None else self.down(x)
        return self.relu2(y + s)


class ResNet20(nn.Module):
    """models/zoo.cpp resnet20: CIFAR-style, 3 stages of 3 basic blocks, width 16."""

    def __init__(self, w=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        blocks, cin = [], w
        for stage in range(3):
            for i in range(3):
                cout = w << stage
                blocks.append(Block(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def measure(models, x, budget_s, warmup=3, min_runs=5, max_runs=200):
    times = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            for _ in range(warmup):
                m(x)
        start = time.perf_counter()
        rounds = 0
        while rounds < max_runs and (rounds < min_runs or time.perf_counter() - start < budget_s):
            for k, m in models.items():  # interleaved rounds, as deploy::measure_latency
                t0 = time.perf_counter()
                m(x)
                times[k].append((time.perf_counter() - t0) * 1e6)
            rounds += 1
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=2.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.backends.quantized.engine = "onednn"
    for name, model, shape in [("small_cnn", SmallCNN(), (1, 28, 28)), ("resnet20", ResNet20(), (3, 32, 32))]:
        model.eval()
        calib = torch.randn(64, *shape)
        prepared = prepare_fx(model, get_default_qconfig_mapping("onednn"), example_inputs=(calib[:1],))
        with torch.no_grad():
            for i in range(4):
                prepared(calib[i * 16:(i + 1) * 16])
        static = convert_fx(prepared)
        dynamic = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            res = measure({"float": model, "static_int8": static, "dynamic_int8": dynamic}, x, args.budget)
            for variant, us in res.items():
                print(json.dumps({"model": name, "variant": variant, "batch": batch, "median_us": round(us, 1)}),
                      flush=True)


if __name__ == "__main__":
    main()
