// Shared between the kernel files (kernels.cpp: core ops; kernels_extra.cpp: further ops).
#pragma once

#include <map>
#include <string>

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

}  // namespace squeeze::exec
