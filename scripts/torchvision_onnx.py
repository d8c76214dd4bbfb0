#!/usr/bin/python3
"""Exports a torchvision ImageNet classifier as ONNX, as a Torch-Pruning or NNI user has one.

usage: torchvision_onnx.py ARCH SIZE OUT.onnx [--seed N] [--classes K]
  ARCH: resnet18 | mobilenet_v2 | squeezenet1_1; SIZE: the input height and width (the model
  takes float32 [N, 3, SIZE, SIZE], N dynamic); K: output classes (default 1000, ImageNet's).
  The weights are torchvision's random initialisation (seeded): no pretrained weights are
  installed on this machine (no Debian package ships them, and nothing is downloaded), so a
  fine-tuned accuracy is that of the architecture trained from scratch on the new data.
  Written with torch.onnx.export, opset 13, in eval mode (Dropout and BatchNorm as inference).
Exit 0 on success; 3 when torch/torchvision are not importable (a caller may skip).
"""
import argparse
import os
import sys
import warnings

try:
    import torch
    import torchvision
except ImportError as e:  # pragma: no cover
    print(f"torch/torchvision unavailable: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=["resnet18", "mobilenet_v2", "squeezenet1_1"])
    ap.add_argument("size", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=1000)
    a = ap.parse_args()
    if a.size < 32:
        ap.error(f"size {a.size} is too small for {a.arch}; use 32 or more")
    warnings.simplefilter("ignore")
    torch.manual_seed(a.seed)
    model = getattr(torchvision.models, a.arch)(num_classes=a.classes).eval()
    x = torch.rand(2, 3, a.size, a.size)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    torch.onnx.export(model, x, tmp, opset_version=13, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    os.replace(tmp, a.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {a.out}: torchvision {a.arch}, {n} parameters, input [N, 3, {a.size}, {a.size}], "
          f"{a.classes} classes, random init (seed {a.seed})")


if __name__ == "__main__":
    main()
