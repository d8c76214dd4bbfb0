#!/usr/bin/python3
"""Writes torchvision's VisionTransformer as ONNX (torch.onnx.export) with a reference output.

usage: make_torchvision_vit.py OUT_DIR OPSET...
  Writes, for each OPSET N, OUT_DIR/vit_opsetN.onnx (exported with a dynamic batch:
  dynamic_axes={'input': {0: 'N'}}), OUT_DIR/vit_opsetN_static.onnx (no dynamic_axes: the batch
  of 1 is fixed in the file), and OUT_DIR/vit_opsetN_output.npy (PyTorch's logits, float32
  [1, 10]); OUT_DIR/vit_input.npy (the input, float32 [1, 3, 32, 32]), OUT_DIR/vit_input5.npy and
  OUT_DIR/vit_output5.npy (a batch of 5 and its logits); OUT_DIR/vit_heads_masked_output.npy and
  OUT_DIR/vit_heads_masked_output5.npy: the logits for both inputs with heads 1 and 3 of encoder
  layer 0 and head 0 of layer 1 masked (their out_proj input columns zeroed), the reference for
  whole-head pruning.
  (One process for all opsets: importing torch takes seconds.)
The model is torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10) initialised with seed 0; its encoder
uses nn.MultiheadAttention, which the exporter writes as a packed in_proj weight split by Slice.
Exit 0 on success; 3 when torch/torchvision are not importable (the caller skips).
"""
import copy
import os
import sys
import warnings

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:  # pragma: no cover
    print(f"torch/torchvision unavailable: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    warnings.simplefilter("ignore")  # the tracer's notes on torchvision's shape asserts
    out_dir, opsets = sys.argv[1], [int(a) for a in sys.argv[2:]]
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                 hidden_dim=64, mlp_dim=128, num_classes=10)
    # The default head is zero-initialised (all logits equal the zero bias): give it weights so
    # the comparison sees the whole network.
    with torch.no_grad():
        for p in model.heads.parameters():
            p.normal_(0.0, 0.2)
    model.eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x5 = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x)
        y5 = model(x5)
    np.save(os.path.join(out_dir, "vit_input.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(out_dir, "vit_input5.npy"), x5.numpy().astype(np.float32))
    np.save(os.path.join(out_dir, "vit_output5.npy"), y5.numpy().astype(np.float32))
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for layer, heads in ((0, (1, 3)), (1, (0,))):
            attn = masked.encoder.layers[layer].self_attention
            dh = attn.embed_dim // attn.num_heads
            for h in heads:
                attn.out_proj.weight[:, h * dh:(h + 1) * dh] = 0.0
        np.save(os.path.join(out_dir, "vit_heads_masked_output.npy"), masked(x).numpy().astype(np.float32))
        np.save(os.path.join(out_dir, "vit_heads_masked_output5.npy"), masked(x5).numpy().astype(np.float32))
    for opset in opsets:
        path = os.path.join(out_dir, f"vit_opset{opset}.onnx")
        torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        static = os.path.join(out_dir, f"vit_opset{opset}_static.onnx")
        torch.onnx.export(model, x, static, opset_version=opset, input_names=["input"], output_names=["logits"])
        np.save(os.path.join(out_dir, f"vit_opset{opset}_output.npy"), y.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
