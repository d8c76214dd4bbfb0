// Quantization arithmetic on ir::QuantSpec: integer ranges, choosing scales and zero points from
// observed ranges, quantize / dequantize / fake-quantize (with a straight-through estimator for
// training). Shared by the quantization passes, the executor's hooks and the exporters.
//
// Conventions (documented once, relied on everywhere):
//   range      signed b bits: [-2^(b-1), 2^(b-1)-1], narrow: [-(2^(b-1)-1), 2^(b-1)-1];
//              unsigned: [0, 2^b-1], narrow: [1, 2^b-1]. With reduce_range every formula here
//              uses b-1 bits (the grid), while storage keeps b bits.
//   quantize   q = clamp(round(x / scale) + zero_point, qmin, qmax), division in float32,
//              round = half_even (nearbyint, as PyTorch and ONNX) or half_up (floor(v + 0.5)).
//   dequantize x = float32(q - zero_point) * scale, exactly the expression load_sqz uses, so a
//              dequantized tensor is stored bit-exactly as packed integers by save_sqz.
//   symmetric  signed: zero_point 0, scale = max|x| / (2^(b-1)-1);
//              unsigned: zero_point 2^(b-1), scale = max|x| / (2^(b-1)-1).
//   affine     the range is widened to include 0; scale = (max - min) / (qmax - qmin),
//              zero_point = qmin - round(min / scale), clamped to [qmin, qmax].
//   power_of_two  scale rounded up to the next power of two (the range stays covered); the
//              zero point is recomputed for that scale.
//   A zero range gives scale 1 (every value quantizes to the zero point).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::quant {

struct QRange {
  int64_t qmin = 0, qmax = 0;
};

// Integer range of a spec. Throws ConfigError for bits outside 2..16 (32 is not an integer grid
// squeeze quantizes to).
QRange qrange(const ir::QuantSpec& spec);
// The bits of the grid: spec.bits, or spec.bits - 1 with reduce_range.
int grid_bits(const ir::QuantSpec& spec);

// Throws ConfigError naming `where` for a spec that cannot be used: bits, rounding, a symmetric
// unsigned narrow spec, scale/zero point shapes that do not match the axis.
void validate_spec(const ir::QuantSpec& spec, const std::string& where);

// Fills spec.scale (float32) and spec.zero_point (int64) from observed minimum and maximum:
// scalars for per-tensor specs, or 1-D tensors (one per channel) when spec.axis >= 0.
void choose_qparams(ir::QuantSpec& spec, const at::Tensor& min, const at::Tensor& max);
// Per-tensor convenience.
void choose_qparams(ir::QuantSpec& spec, double min, double max);

// Rounds to integers in float: "half_even" or "half_up".
at::Tensor round_values(const at::Tensor& x, const std::string& rounding);

// Integers (int64) of x on the spec's grid, clamped to the range.
at::Tensor quantize(const at::Tensor& x, const ir::QuantSpec& spec);
// float32(q - zero_point) * scale for integer (or integral float) q.
at::Tensor dequantize(const at::Tensor& q, const ir::QuantSpec& spec);
// dequantize(quantize(x)). When x requires grad, the gradient is the straight-through estimator:
// identity inside the representable range, zero outside (clipped STE, as PyTorch's fake quant).
at::Tensor fake_quantize(const at::Tensor& x, const ir::QuantSpec& spec);

// Scale and zero point shaped to broadcast against a tensor of rank `rank` along spec.axis.
at::Tensor broadcast_scale(const ir::QuantSpec& spec, int64_t rank);
at::Tensor broadcast_zero_point(const ir::QuantSpec& spec, int64_t rank);

// True when every value of x already lies on the grid (what save_sqz needs to pack it).
bool on_grid(const at::Tensor& x, const ir::QuantSpec& spec);

// Puts every float parameter that has a quantization spec back on its grid (masked values stay
// zero; scales made positive). Training moves the shadow weights of a quantized graph between
// grid points; after it, this makes the stored weights the ones the forward pass used.
void snap_to_grid(ir::Graph& graph);

// "int8 per-channel(axis 0) symmetric" style description for summaries.
std::string describe(const ir::QuantSpec& spec);

}  // namespace squeeze::quant
