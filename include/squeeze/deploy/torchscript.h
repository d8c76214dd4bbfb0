// TorchScript export: a .pt file that PyTorch's torch.jit.load opens and that computes the numbers
// squeeze computes. Quantized graphs stay quantized: weights are stored as qint8/quint8 tensors
// (so an int8 model's file is about the size of its .sqz) and dequantized in forward(); every
// activation spec (out_qspec) becomes torch.fake_quantize_per_tensor_affine /
// _per_channel_affine (half-up rounding written out with floor); a dynamic int8 Linear
// fake-quantizes its input with the batch's own uint8 parameters. PyTorch thus reproduces squeeze's
// simulated quantized execution (quant::set_int8_enabled(false)); its fake quantize multiplies by
// 1/scale where squeeze divides, which can move a value on a rounding boundary by one step.
#pragma once

#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

// Writes atomically. Throws UnsupportedError for ops without a TorchScript translation, ConfigError
// for an invalid quantization spec.
void export_torchscript(const ir::Graph& graph, const std::string& path);

}  // namespace squeeze::deploy
