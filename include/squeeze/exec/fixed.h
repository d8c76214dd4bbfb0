// Exact fixed-point execution of a layer, as hls4ml's dense_latency computes it (the eval-mode
// kernel of a Linear whose types the fixed_point pass set; src/exec/fixed.cpp).
//
// Where the types of a layer live (the contract the fixed_point pass writes, the executor, the
// exporters and the FPGA cost model read):
//   input       node attribute "fixed.input"  (string, e.g. "ap_fixed<16,6>")
//   weight      Param "weight" .qspec          (bits = W; the type: fixed::of_spec(*qspec))
//   bias        Param "bias"   .qspec          (optional; likewise)
//   accumulator node attribute "fixed.accum"   (string)
//   result      Node::out_qspec                (the layer's output type: fixed::of_spec)
// Parse both attributes with fixed::parse_type (they are written by fixed::to_string); a
// fixed-point QuantSpec holds its type's text in `rounding` (ir/fixed_point.h, to_spec).
//
// The arithmetic (mantissas in int64, ir/fixed_point.h):
//   x     = (input) x                       the layer input assigned to the input type
//   p_ij  = (accum) (x_j * w_ij)            each full-precision product assigned to the accumulator
//   acc_i = (accum) b_i                     the bias assigned to the accumulator
//   acc_i = (accum) (acc_i + p_ij), j = 0..n-1 in order (each addition overflows per the accum's
//           mode; with AP_WRAP and N = 0 the order does not matter and the sum is taken at once)
//   y_i   = (result) acc_i
// The result is returned as float32 (exact: value types are at most 24 bits, checked by the pass).
#pragma once

#include <ATen/core/Tensor.h>

#include "squeeze/ir/fixed_point.h"
#include "squeeze/ir/graph.h"

namespace squeeze::exec {

constexpr const char* kFixedInputAttr = "fixed.input";
constexpr const char* kFixedAccumAttr = "fixed.accum";

// True when the node carries the fixed-point layer contract above (fixed.accum set).
bool is_fixed_layer(const ir::Node& node);

struct FixedLayerTypes {
  fixed::FixedType input, weight, accum, result;
  std::optional<fixed::FixedType> bias;
};
// The layer's types; throws GraphError naming the node when one is missing or malformed.
FixedLayerTypes fixed_layer_types(const ir::Node& node);

// Linear y = x W^T + b in exact fixed point (x: [..., in]); see above.
at::Tensor fixed_linear(const ir::Node& node, const at::Tensor& x);

}  // namespace squeeze::exec
