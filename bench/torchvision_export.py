#!/usr/bin/python3
"""Exports the nine torchvision CNNs of the latency benchmark (issue 14) to ONNX at 64x64.

Random weights (torchvision's own initialisation, seeded) and non-trivial BatchNorm statistics:
every model runs a few batches of random images in train mode with momentum 1 so that each
BatchNorm's running mean and variance are those of real activations, not 0 and 1 (which would
make folding a no-op and flatter the unpruned baseline). Batch is a dynamic axis.

  /usr/bin/python3 bench/torchvision_export.py OUT_DIR [--models a,b] [--size 64] [--seed 0]

Writes OUT_DIR/<model>.onnx and prints one line per model. Run it with /usr/bin/python3 (a pyenv
python3 on PATH may lack torch).
"""
import argparse
import os
import sys

import torch
import torchvision

MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "regnet_x_400mf", "densenet121", "googlenet",
          "shufflenet_v2_x0_5", "mnasnet0_5", "squeezenet1_1"]


def build(name):
    kwargs = {"weights": None}
    if name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=True)
    return getattr(torchvision.models, name)(**kwargs)


def calibrate_batchnorm(model, size, batches=4):
    """Running statistics from random images (momentum 1: the last batch's statistics)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(16, 3, size, size))
    model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.models.split(","):
        if name not in MODELS:
            sys.exit(f"unknown model '{name}'; valid: {', '.join(MODELS)}")
        torch.manual_seed(a.seed)
        model = build(name)
        calibrate_batchnorm(model, a.size)
        x = torch.randn(1, 3, a.size, a.size)
        path = os.path.join(a.out, name + ".onnx")
        tmp = path + ".tmp"
        torch.onnx.export(model, x, tmp, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=13,
                          do_constant_folding=True)
        os.replace(tmp, path)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params} parameters -> {path}")


if __name__ == "__main__":
    main()
