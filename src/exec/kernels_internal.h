// Shared between the kernel files (kernels.cpp: core ops; kernels_extra.cpp: further ops).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/exec/executor.h"
#include "squeeze/ir/graph.h"

namespace squeeze::exec {

// Kernels of the ops in ir/ops_extra.cpp.
std::map<std::string, Kernel> extra_kernels();

// The uint8 affine spec ONNX's DynamicQuantizeLinear gives x, computed in float32 exactly as its
// definition (and ONNX Runtime) does: the range [min(x), max(x)] widened to include 0,
// scale = (max - min) / 255 (1 when max == min), zero point = round_half_even(clamp(-min / scale,
// 0, 255)). Quantizing with it (quant::quantize: round_half_even(x / scale) + zero point, clamped
// to [0, 255]) is DynamicQuantizeLinear's y. Shared by that op's kernel and every dynamically
// quantized Conv/Linear (exec/int8.cpp), so an imported model and squeeze's own agree bit for bit.
// Throws InputError when x holds NaN or infinities.
ir::QuantSpec dynamic_quantize_spec(const at::Tensor& x);

// ONNX pads [begins..., ends...] as libtorch's symmetric padding when they are symmetric;
// otherwise pads x explicitly (with `fill`) and returns zero padding.
std::vector<int64_t> symmetric_pads(const ir::Node& n, at::Tensor& x, size_t nd, double fill);

// Inference 2-D convolutions on oneDNN primitives built once per layer and input shape, with the
// weight reordered once into the primitive's layout and a following activation fused (see
// packed_conv.cpp). Activations are channels-last float32; no autograd.
struct PackedConv;
struct ConvGeometry {
  std::vector<int64_t> strides{1, 1}, dilations{1, 1};
  std::vector<int64_t> pads{0, 0, 0, 0};  // ONNX order: top, left, bottom, right
  int64_t groups = 1;
};
// An activation applied as the convolution's post-op: op is the IR op; alpha is LeakyRelu's slope
// or Clip's min, beta Clip's max.
struct FusedActivation {
  std::string op;
  double alpha = 0.0, beta = 0.0;
  bool has_min = false, has_max = false;
};
// The IR ops a FusedActivation can be.
bool fusable_activation(const std::string& op);
// False when SQUEEZE_PACKED_CONV=0 or oneDNN has no CPU engine (the executor then calls
// at::convolution).
bool packed_conv_available();
// nullptr when oneDNN cannot build this convolution (the caller runs at::convolution).
std::shared_ptr<PackedConv> pack_conv(const at::Tensor& weight, const at::Tensor& bias, const ConvGeometry& geometry,
                                      at::IntArrayRef input_sizes, const FusedActivation* activation);
// x: channels-last contiguous, of the sizes the convolution was packed for. Output channels-last.
at::Tensor run_packed_conv(const PackedConv& packed, const at::Tensor& x);
// oneDNN's name of the implementation it chose (e.g. "brgconv:avx512_core", "jit:avx2").
const std::string& packed_conv_impl(const PackedConv& packed);

}  // namespace squeeze::exec
