// General ops beyond the core set (mostly for imported ONNX graphs). Each needs a kernel in
// src/exec/kernels_extra.cpp. Attribute names follow ONNX, like the core ops; where ONNX takes an
// operand as an input (Tile repeats, Expand shape) the IR takes it as an attribute when the
// importer could fold it to a constant.
#include <algorithm>

#include "ops_internal.h"
#include "squeeze/util/error.h"

namespace squeeze::ir {

namespace {

std::vector<Shape> same_shape(const Node&, const std::vector<Shape>& in) { return {in[0]}; }

int64_t per_output(const Node&, const std::vector<Shape>&, const std::vector<Shape>& out) {
  int64_t n = 0;
  for (const auto& s : out) n += shape::count(s);
  return n;
}
int64_t none(const Node&, const std::vector<Shape>&, const std::vector<Shape>&) { return 0; }

std::vector<Shape> broadcast_all(const Node& n, const std::vector<Shape>& in) {
  Shape out = in[0];
  for (size_t i = 1; i < in.size(); ++i) out = shape::broadcast(out, in[i], n);
  return {out};
}

OpDef make(const std::string& name, int min_in, int max_in,
           std::function<std::vector<Shape>(const Node&, const std::vector<Shape>&)> infer,
           std::function<int64_t(const Node&, const std::vector<Shape>&, const std::vector<Shape>&)> flops) {
  OpDef d;
  d.name = name;
  d.min_inputs = min_in;
  d.max_inputs = max_in;
  d.infer = std::move(infer);
  d.flops = std::move(flops);
  return d;
}

// Gather{axis}(data, indices): numpy take along one axis; negative indices count from the end.
std::vector<Shape> gather_infer(const Node& n, const std::vector<Shape>& in) {
  int64_t axis = shape::norm_axis(n.attr_int("axis", 0), in[0].size(), n);
  Shape out(in[0].begin(), in[0].begin() + axis);
  out.insert(out.end(), in[1].begin(), in[1].end());
  out.insert(out.end(), in[0].begin() + axis + 1, in[0].end());
  return {out};
}

// Expand{shape}(x) or Expand(x, shape): bidirectional (numpy) broadcast to a shape.
std::vector<Shape> expand_infer(const Node& n, const std::vector<Shape>& in) {
  if (in.size() == 1) return {shape::broadcast(in[0], n.attr_ints("shape"), n)};
  if (in[1].size() != 1 || in[1][0] == kDynamic)
    throw GraphError(msg("node '", n.name, "' (Expand): the shape operand must be a 1-D tensor of known length"));
  size_t r = std::max<size_t>(in[0].size(), static_cast<size_t>(in[1][0]));
  Shape out(r, kDynamic);
  for (size_t i = 0; i < in[0].size(); ++i) {
    int64_t d = in[0][i];
    if (d != 1) out[r - in[0].size() + i] = d;  // the target may only repeat size-1 dims
  }
  if (n.has_attr("shape")) {
    // The static part of the run-time target (-1 where only the run time knows), as the importer
    // writes it for a constant broadcast over the batch.
    auto hint = n.attr_ints("shape");
    if (hint.size() != static_cast<size_t>(in[1][0]))
      throw GraphError(msg("node '", n.name, "' (Expand): the shape hint has ", hint.size(), " dims, the shape operand ",
                           in[1][0]));
    for (size_t i = 0; i < hint.size(); ++i) {
      size_t o = r - hint.size() + i;
      if (hint[i] > 1 && out[o] == kDynamic) out[o] = hint[i];
      if (hint[i] == 1 && o >= r - in[0].size()) out[o] = in[0][o - (r - in[0].size())];
    }
  }
  return {out};
}

std::vector<Shape> tile_infer(const Node& n, const std::vector<Shape>& in) {
  auto reps = n.attr_ints("repeats");
  if (reps.size() != in[0].size())
    throw GraphError(msg("node '", n.name, "' (Tile): ", reps.size(), " repeats for a rank-", in[0].size(), " input"));
  Shape out = in[0];
  for (size_t i = 0; i < out.size(); ++i) out[i] = shape::mul(out[i], reps[i]);
  return {out};
}

std::vector<Shape> shape_infer(const Node& n, const std::vector<Shape>& in) {
  int64_t r = static_cast<int64_t>(in[0].size());
  int64_t start = n.attr_int("start", 0), end = n.attr_int("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, 0, r);
  return {{std::max<int64_t>(end - start, 0)}};
}

std::vector<int64_t> sorted_axes(const Node& n, size_t rank) {
  std::vector<int64_t> axes = n.attr_ints("axes", {});
  for (auto& a : axes) a = shape::norm_axis(a, rank, n);
  std::sort(axes.begin(), axes.end());
  return axes;
}

std::vector<Shape> reduce_infer(const Node& n, const std::vector<Shape>& in) {
  auto axes = sorted_axes(n, in[0].size());
  bool keep = n.attr_int("keepdims", 1) != 0;
  Shape out;
  for (size_t i = 0; i < in[0].size(); ++i) {
    bool reduced = axes.empty() || std::binary_search(axes.begin(), axes.end(), static_cast<int64_t>(i));
    if (!reduced)
      out.push_back(in[0][i]);
    else if (keep)
      out.push_back(1);
  }
  return {out};
}

std::vector<Shape> arg_infer(const Node& n, const std::vector<Shape>& in) {
  int64_t axis = shape::norm_axis(n.attr_int("axis", 0), in[0].size(), n);
  Shape out = in[0];
  if (n.attr_int("keepdims", 1))
    out[axis] = 1;
  else
    out.erase(out.begin() + axis);
  return {out};
}

std::vector<Shape> instancenorm_infer(const Node& n, const std::vector<Shape>& in) {
  if (in[0].size() < 3)
    throw GraphError(msg("node '", n.name, "' (InstanceNorm): input ", shape_str(in[0]), " needs rank >= 3"));
  int64_t c = n.param("weight").value.numel();
  if (in[0][1] != kDynamic && in[0][1] != c)
    throw GraphError(msg("node '", n.name, "' (InstanceNorm): input has ", in[0][1], " channels, parameters have ", c));
  return {in[0]};
}

std::vector<Shape> depth_to_space_infer(const Node& n, const std::vector<Shape>& in) {
  if (in[0].size() != 4) throw GraphError(msg("node '", n.name, "' (", n.op, "): needs a rank-4 input"));
  int64_t b = n.attr_int("blocksize");
  Shape out = in[0];
  auto div = [&](int64_t v, int64_t k) {
    if (v == kDynamic) return kDynamic;
    if (v % k != 0)
      throw GraphError(msg("node '", n.name, "' (", n.op, "): dimension ", v, " is not divisible by ", k));
    return v / k;
  };
  if (n.op == "DepthToSpace") {
    out[1] = div(in[0][1], b * b);
    out[2] = shape::mul(in[0][2], b);
    out[3] = shape::mul(in[0][3], b);
  } else {
    out[1] = shape::mul(in[0][1], b * b);
    out[2] = div(in[0][2], b);
    out[3] = div(in[0][3], b);
  }
  return {out};
}

// --- integer ops of dynamically quantized ONNX models (ONNX Runtime's quantize_dynamic) ---

// DynamicQuantizeLinear(x) -> y (uint8, x's shape), y_scale (float scalar), y_zero_point (uint8
// scalar).
std::vector<Shape> dynamic_quantize_infer(const Node&, const std::vector<Shape>& in) { return {in[0], {}, {}}; }

// MatMulInteger(A, B[, a_zero_point, b_zero_point]) -> int32: numpy matmul of (A - a_zp) and
// (B - b_zp); a_zp is a scalar or one per row of A, b_zp a scalar or one per column of B.
std::vector<Shape> matmul_integer_infer(const Node& n, const std::vector<Shape>& in) {
  return op_def("MatMul").infer(n, {in[0], in[1]});
}

int64_t matmul_integer_flops(const Node& n, const std::vector<Shape>& in, const std::vector<Shape>& out) {
  return op_def("MatMul").flops(n, {in[0], in[1]}, out);
}

// ConvInteger(x, w[, x_zero_point, w_zero_point]) -> int32, the weight an input [M, C/group, k...];
// attrs strides, pads, dilations, group as Conv. w_zp is a scalar or one per output channel.
std::vector<Shape> conv_integer_infer(const Node& n, const std::vector<Shape>& in) {
  const Shape& x = in[0];
  const Shape& w = in[1];
  if (w.size() < 3 || x.size() != w.size())
    throw GraphError(msg("node '", n.name, "' (ConvInteger): input of rank ", x.size(), " and weight of rank ", w.size(),
                         " (both need the same rank >= 3)"));
  size_t nd = w.size() - 2;
  auto strides = n.attr_ints("strides", std::vector<int64_t>(nd, 1));
  auto dil = n.attr_ints("dilations", std::vector<int64_t>(nd, 1));
  auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  if (strides.size() != nd || dil.size() != nd || pads.size() != 2 * nd)
    throw GraphError(msg("node '", n.name, "' (ConvInteger): strides, dilations or pads do not match ", nd,
                         " spatial dims"));
  int64_t groups = n.attr_int("group", 1);
  if (x[1] != kDynamic && w[1] != kDynamic && x[1] != w[1] * groups)
    throw GraphError(msg("node '", n.name, "' (ConvInteger): input has ", x[1], " channels but the weight expects ",
                         w[1] * groups, " (group=", groups, ")"));
  Shape out{x[0], w[0]};
  for (size_t i = 0; i < nd; ++i)
    out.push_back(w[i + 2] == kDynamic ? kDynamic
                                       : shape::pool_out(x[i + 2], w[i + 2], strides[i], pads[i], pads[i + nd], dil[i], false));
  return {out};
}

int64_t conv_integer_flops(const Node&, const std::vector<Shape>& in, const std::vector<Shape>& out) {
  int64_t per_out = 1;
  for (size_t d = 1; d < in[1].size(); ++d) per_out = shape::mul(per_out, in[1][d]);
  return std::max<int64_t>(shape::mul(2 * per_out, shape::numel(out[0], true)), 0);
}

}  // namespace

std::vector<OpDef> extra_ops() {
  std::vector<OpDef> ops;
  ops.push_back(make("Gather", 2, 2, gather_infer, none));  // attr axis; inputs data, indices
  // attr shape, or a runtime shape input (then attr shape, optional, holds its static dims, -1
  // for the run-time ones)
  ops.push_back(make("Expand", 1, 2, expand_infer, none));
  {
    OpDef d = make("Tile", 1, 1, tile_infer, none);  // attr repeats
    d.required_attrs = {"repeats"};
    ops.push_back(d);
  }
  {
    OpDef d = make("Cast", 1, 1, same_shape, none);  // attr to: float|double|half|int64|int32|int8|uint8|bool
    d.required_attrs = {"to"};
    ops.push_back(d);
  }
  ops.push_back(make("Shape", 1, 1, shape_infer, none));  // attrs start, end (opset 15)
  ops.push_back(make("Where", 3, 3, broadcast_all, per_output));  // cond, x, y
  for (const char* name : {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod"})
    ops.push_back(make(name, 2, 2, broadcast_all, per_output));  // Mod: attr fmod
  for (const char* name : {"Not", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Round", "Celu",
                           "ThresholdedRelu", "IsNaN", "Mish"}) {
    OpDef d = make(name, 1, 1, same_shape, per_output);  // Celu/ThresholdedRelu: attr alpha
    d.channel_passthrough = true;
    ops.push_back(d);
  }
  for (const char* name : {"ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"})
    ops.push_back(make(name, 1, 1, reduce_infer, per_output));  // attrs axes, keepdims
  for (const char* name : {"ArgMax", "ArgMin"})
    ops.push_back(make(name, 1, 1, arg_infer, per_output));  // attrs axis, keepdims, select_last_index
  {
    OpDef d = make("InstanceNorm", 1, 1, instancenorm_infer, per_output);  // attr epsilon; params per channel
    d.required_params = {"weight", "bias"};
    d.channel_passthrough = true;
    ops.push_back(d);
  }
  for (const char* name : {"DepthToSpace", "SpaceToDepth"}) {
    OpDef d = make(name, 1, 1, depth_to_space_infer, none);  // attrs blocksize, mode DCR|CRD
    d.required_attrs = {"blocksize"};
    ops.push_back(d);
  }
  {
    OpDef d = make("DynamicQuantizeLinear", 1, 1, dynamic_quantize_infer, per_output);
    d.num_outputs = 3;
    ops.push_back(d);
  }
  // DequantizeLinear(q, scale[, zero_point]) of a graph value: float (q - zero_point) * scale;
  // attr axis for 1-D scales (constants are dequantized by the importer instead).
  ops.push_back(make("DequantizeLinear", 2, 3, same_shape, per_output));
  ops.push_back(make("MatMulInteger", 2, 4, matmul_integer_infer, matmul_integer_flops));
  ops.push_back(make("ConvInteger", 2, 4, conv_integer_infer, conv_integer_flops));
  return ops;
}

}  // namespace squeeze::ir
