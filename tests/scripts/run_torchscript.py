#!/usr/bin/python3
"""Runs a TorchScript file written by squeeze in PyTorch (Debian's python3-torch).

usage: run_torchscript.py MODEL.pt SHAPE INPUT.f32 OUTPUT.f32
  SHAPE      comma-separated input shape, e.g. 2,1,28,28
  INPUT.f32  raw little-endian float32 input
  OUTPUT.f32 written: the first output as raw float32
Exit 0 on success; 3 when torch is not importable (the caller skips).
"""
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"torch unavailable: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    model_path, shape, in_path, out_path = sys.argv[1:5]
    shape = [int(s) for s in shape.split(",") if s]
    model = torch.jit.load(model_path)
    model.eval()
    x = torch.from_numpy(np.fromfile(in_path, dtype="<f4").reshape(shape).copy())
    with torch.no_grad():
        y = model(x)
    if isinstance(y, (tuple, list)):
        y = y[0]
    y.detach().cpu().numpy().astype("<f4").tofile(out_path)


if __name__ == "__main__":
    main()
