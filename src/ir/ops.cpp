// The op table: inputs, parameters, shape inference and FLOPs of every IR op.
// Conventions follow ONNX where ONNX has the op (attribute names `strides`, `pads` as
// [begins..., ends...], `dilations`, `group`s, `kernel_shape`, `axis`), so importers and
// exporters translate names one to one. Channels are on axis 1 (NCHW).
#include "squeeze/ir/ops.h"

#include <algorithm>
#include <numeric>

#include "ops_internal.h"
#include "squeeze/util/error.h"

namespace squeeze::ir {

namespace shape {

int64_t mul(int64_t a, int64_t b) { return (a == kDynamic || b == kDynamic) ? kDynamic : a * b; }

int64_t numel(const Shape& s, bool skip_batch) {
  int64_t n = 1;
  for (size_t i = skip_batch ? 1 : 0; i < s.size(); ++i) n = mul(n, s[i]);
  return n;
}

int64_t count(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d == kDynamic ? 1 : d;
  return n;
}

int64_t norm_axis(int64_t axis, size_t rank, const Node& node) {
  int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= std::max<int64_t>(r, 1))
    throw GraphError(msg("node '", node.name, "' (", node.op, "): axis ", axis,
                         " is out of range for a rank-", r, " input"));
  return axis < 0 ? axis + r : axis;
}

Shape broadcast(const Shape& a, const Shape& b, const Node& node) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1)
      out[i] = da;
    else if (da == 1)
      out[i] = db;
    else if (da == kDynamic || db == kDynamic)
      out[i] = da == kDynamic ? db : da;
    else
      throw GraphError(msg("node '", node.name, "' (", node.op, "): shapes ", shape_str(a), " and ",
                           shape_str(b), " do not broadcast"));
  }
  return out;
}

int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t pb, int64_t pe, int64_t d, bool ceil_mode) {
  if (in == kDynamic) return kDynamic;
  int64_t eff = d * (k - 1) + 1;
  int64_t span = in + pb + pe - eff;
  if (span < 0) return 0;
  int64_t out = ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
  // PyTorch/ONNX rule: the last window must start inside the input or left padding.
  if (ceil_mode && (out - 1) * s >= in + pb) --out;
  return out;
}

}  // namespace shape

namespace {

using shape::mul;

std::vector<int64_t> spatial_attr(const Node& n, const std::string& key, size_t nd, int64_t fill) {
  auto v = n.attr_ints(key, std::vector<int64_t>(nd, fill));
  if (v.size() != nd)
    throw GraphError(msg("node '", n.name, "' (", n.op, "): attribute '", key, "' has ", v.size(),
                         " values; expected ", nd));
  return v;
}

std::vector<int64_t> pads_attr(const Node& n, size_t nd) {
  auto p = n.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  if (p.size() != 2 * nd)
    throw GraphError(msg("node '", n.name, "' (", n.op, "): attribute 'pads' has ", p.size(),
                         " values; expected ", 2 * nd, " (begins then ends)"));
  return p;
}

void need_rank(const Node& n, const Shape& s, size_t min_rank, size_t max_rank) {
  if (s.size() < min_rank || s.size() > max_rank)
    throw GraphError(msg("node '", n.name, "' (", n.op, "): input has shape ", shape_str(s),
                         "; expected rank ", min_rank, max_rank != min_rank ? msg(" to ", max_rank) : ""));
}

std::vector<Shape> same_shape(const Node&, const std::vector<Shape>& in) { return {in[0]}; }

int64_t flops_per_output(const Node&, const std::vector<Shape>&, const std::vector<Shape>& out) {
  int64_t n = 0;
  for (const auto& s : out) n += shape::count(s);
  return n;
}
int64_t no_flops(const Node&, const std::vector<Shape>&, const std::vector<Shape>&) { return 0; }

// --- Conv / ConvTranspose ---

std::vector<Shape> conv_infer(const Node& n, const std::vector<Shape>& in) {
  const auto& w = n.param("weight").value;
  size_t nd = w.dim() - 2;
  need_rank(n, in[0], nd + 2, nd + 2);
  int64_t groups = n.attr_int("group", 1);
  if (in[0][1] != kDynamic && in[0][1] != w.size(1) * groups)
    throw GraphError(msg("node '", n.name, "' (Conv): input has ", in[0][1], " channels but the weight ",
                         w.sizes(), " with group=", groups, " expects ", w.size(1) * groups));
  if (w.size(0) % groups != 0)
    throw GraphError(msg("node '", n.name, "' (Conv): ", w.size(0), " output channels are not divisible by group=", groups));
  auto strides = spatial_attr(n, "strides", nd, 1);
  auto dil = spatial_attr(n, "dilations", nd, 1);
  auto pads = pads_attr(n, nd);
  Shape out{in[0][0], w.size(0)};
  for (size_t i = 0; i < nd; ++i)
    out.push_back(shape::pool_out(in[0][i + 2], w.size(i + 2), strides[i], pads[i], pads[i + nd], dil[i], false));
  return {out};
}

int64_t conv_flops(const Node& n, const std::vector<Shape>&, const std::vector<Shape>& out) {
  const auto& w = n.param("weight").value;
  int64_t per_out = 1;
  for (int64_t d = 1; d < w.dim(); ++d) per_out *= w.size(d);  // Cin/g * k...
  return 2 * per_out * shape::count(out[0]);
}

std::vector<Shape> conv_transpose_infer(const Node& n, const std::vector<Shape>& in) {
  const auto& w = n.param("weight").value;  // [Cin, Cout/g, k...]
  size_t nd = w.dim() - 2;
  need_rank(n, in[0], nd + 2, nd + 2);
  int64_t groups = n.attr_int("group", 1);
  auto strides = spatial_attr(n, "strides", nd, 1);
  auto dil = spatial_attr(n, "dilations", nd, 1);
  auto outpad = spatial_attr(n, "output_padding", nd, 0);
  auto pads = pads_attr(n, nd);
  Shape out{in[0][0], w.size(1) * groups};
  for (size_t i = 0; i < nd; ++i) {
    int64_t x = in[0][i + 2];
    out.push_back(x == kDynamic ? kDynamic
                                : (x - 1) * strides[i] - pads[i] - pads[i + nd] + dil[i] * (w.size(i + 2) - 1) +
                                      outpad[i] + 1);
  }
  return {out};
}

int64_t conv_transpose_flops(const Node& n, const std::vector<Shape>& in, const std::vector<Shape>&) {
  const auto& w = n.param("weight").value;
  int64_t per_in = 1;
  for (int64_t d = 1; d < w.dim(); ++d) per_in *= w.size(d);
  return 2 * per_in * shape::count(in[0]);
}

// --- Linear / MatMul ---

std::vector<Shape> linear_infer(const Node& n, const std::vector<Shape>& in) {
  const auto& w = n.param("weight").value;  // [out, in]
  if (in[0].empty()) throw GraphError(msg("node '", n.name, "' (Linear): scalar input"));
  if (in[0].back() != kDynamic && in[0].back() != w.size(1))
    throw GraphError(msg("node '", n.name, "' (Linear): input has ", in[0].back(), " features (shape ",
                         shape_str(in[0]), ") but the weight ", w.sizes(), " expects ", w.size(1)));
  Shape out = in[0];
  out.back() = w.size(0);
  return {out};
}

int64_t linear_flops(const Node& n, const std::vector<Shape>&, const std::vector<Shape>& out) {
  const auto& w = n.param("weight").value;
  return 2 * w.size(1) * shape::count(out[0]);
}

std::vector<Shape> matmul_infer(const Node& n, const std::vector<Shape>& in) {
  Shape a = in[0], b = in[1];
  if (a.empty() || b.empty()) throw GraphError(msg("node '", n.name, "' (MatMul): scalar operand"));
  bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  int64_t k1 = a.back(), k2 = b[b.size() - 2];
  if (k1 != kDynamic && k2 != kDynamic && k1 != k2)
    throw GraphError(msg("node '", n.name, "' (MatMul): inner dimensions differ: ", shape_str(in[0]), " x ",
                         shape_str(in[1])));
  Shape ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  Shape out = shape::broadcast(ba, bb, n);
  if (!a1) out.push_back(a[a.size() - 2]);
  if (!b1) out.push_back(b.back());
  return {out};
}

int64_t matmul_flops(const Node& n, const std::vector<Shape>& in, const std::vector<Shape>& out) {
  int64_t k = in[0].back();
  if (k == kDynamic) k = 1;
  return 2 * k * shape::count(out[0]);
}

// --- Normalization ---

std::vector<Shape> batchnorm_infer(const Node& n, const std::vector<Shape>& in) {
  need_rank(n, in[0], 2, 5);
  int64_t c = n.param("weight").value.size(0);
  if (in[0][1] != kDynamic && in[0][1] != c)
    throw GraphError(msg("node '", n.name, "' (BatchNorm): input has ", in[0][1], " channels, parameters have ", c));
  return {in[0]};
}

std::vector<Shape> layernorm_infer(const Node& n, const std::vector<Shape>& in) {
  int64_t axis = shape::norm_axis(n.attr_int("axis", -1), in[0].size(), n);
  if (n.has_param("weight")) {
    int64_t numel = n.param("weight").value.numel();
    int64_t want = shape::numel(Shape(in[0].begin() + axis, in[0].end()), false);
    if (want != kDynamic && want != numel)
      throw GraphError(msg("node '", n.name, "' (LayerNorm): normalized shape has ", want, " elements, weight has ", numel));
  }
  return {in[0]};
}

// --- Pooling ---

std::vector<Shape> pool_infer(const Node& n, const std::vector<Shape>& in) {
  need_rank(n, in[0], 3, 5);
  size_t nd = in[0].size() - 2;
  auto k = spatial_attr(n, "kernel_shape", nd, 1);
  auto strides = spatial_attr(n, "strides", nd, 1);
  auto dil = spatial_attr(n, "dilations", nd, 1);
  auto pads = pads_attr(n, nd);
  bool ceil_mode = n.attr_int("ceil_mode", 0) != 0;
  Shape out{in[0][0], in[0][1]};
  for (size_t i = 0; i < nd; ++i)
    out.push_back(shape::pool_out(in[0][i + 2], k[i], strides[i], pads[i], pads[i + nd], dil[i], ceil_mode));
  return {out};
}

int64_t pool_flops(const Node& n, const std::vector<Shape>&, const std::vector<Shape>& out) {
  auto k = n.attr_ints("kernel_shape", {1});
  int64_t kk = std::accumulate(k.begin(), k.end(), int64_t{1}, std::multiplies<int64_t>());
  return kk * shape::count(out[0]);
}

std::vector<Shape> global_pool_infer(const Node& n, const std::vector<Shape>& in) {
  need_rank(n, in[0], 3, 5);
  Shape out = in[0];
  for (size_t i = 2; i < out.size(); ++i) out[i] = 1;
  return {out};
}

int64_t global_pool_flops(const Node&, const std::vector<Shape>& in, const std::vector<Shape>&) {
  return shape::count(in[0]);
}

// --- Elementwise and structure ---

std::vector<Shape> broadcast_infer(const Node& n, const std::vector<Shape>& in) {
  Shape out = in[0];
  for (size_t i = 1; i < in.size(); ++i) out = shape::broadcast(out, in[i], n);
  return {out};
}

std::vector<Shape> constant_infer(const Node& n, const std::vector<Shape>&) {
  auto sizes = n.param("value").value.sizes();
  return {Shape(sizes.begin(), sizes.end())};
}

std::vector<Shape> concat_infer(const Node& n, const std::vector<Shape>& in) {
  Shape out = in[0];
  int64_t axis = shape::norm_axis(n.attr_int("axis"), out.size(), n);
  for (size_t i = 1; i < in.size(); ++i) {
    if (in[i].size() != out.size())
      throw GraphError(msg("node '", n.name, "' (Concat): inputs of rank ", out.size(), " and ", in[i].size()));
    for (size_t d = 0; d < out.size(); ++d) {
      if (static_cast<int64_t>(d) == axis)
        out[d] = (out[d] == kDynamic || in[i][d] == kDynamic) ? kDynamic : out[d] + in[i][d];
      else if (out[d] != in[i][d] && out[d] != kDynamic && in[i][d] != kDynamic)
        throw GraphError(msg("node '", n.name, "' (Concat): shapes ", shape_str(in[0]), " and ",
                             shape_str(in[i]), " differ outside axis ", axis));
    }
  }
  return {out};
}

std::vector<Shape> split_infer(const Node& n, const std::vector<Shape>& in) {
  int64_t axis = shape::norm_axis(n.attr_int("axis", 0), in[0].size(), n);
  int64_t total = in[0][axis];
  std::vector<int64_t> sizes = n.attr_ints("split", {});
  size_t k = n.outputs.size();
  if (sizes.empty()) {
    if (total == kDynamic || total % static_cast<int64_t>(k) != 0)
      throw GraphError(msg("node '", n.name, "' (Split): cannot split ", total, " evenly into ", k));
    sizes.assign(k, total / static_cast<int64_t>(k));
  }
  if (sizes.size() != k)
    throw GraphError(msg("node '", n.name, "' (Split): ", sizes.size(), " split sizes for ", k, " outputs"));
  std::vector<Shape> out;
  for (int64_t s : sizes) {
    Shape o = in[0];
    o[axis] = s;
    out.push_back(o);
  }
  return out;
}

std::vector<Shape> flatten_infer(const Node& n, const std::vector<Shape>& in) {
  int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += static_cast<int64_t>(in[0].size());
  if (axis < 0 || axis > static_cast<int64_t>(in[0].size()))
    throw GraphError(msg("node '", n.name, "' (Flatten): axis out of range"));
  Shape a(in[0].begin(), in[0].begin() + axis), b(in[0].begin() + axis, in[0].end());
  return {{shape::numel(a, false), shape::numel(b, false)}};
}

std::vector<Shape> reshape_infer(const Node& n, const std::vector<Shape>& in) {
  auto target = n.attr_ints("shape");
  const Shape& s = in[0];
  int64_t in_static = 1;
  bool in_dyn = false;
  for (auto d : s) {
    if (d == kDynamic)
      in_dyn = true;
    else
      in_static *= d;
  }
  Shape out(target.size());
  int64_t out_static = 1;
  bool copied_dyn = false;
  int infer_at = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t t = target[i];
    if (t == 0 && !n.attr_int("allowzero", 0)) {
      if (i >= s.size()) throw GraphError(msg("node '", n.name, "' (Reshape): 0 at position ", i, " has no input dim"));
      out[i] = s[i];
    } else if (t == -1) {
      if (infer_at >= 0) throw GraphError(msg("node '", n.name, "' (Reshape): more than one -1 in shape"));
      infer_at = static_cast<int>(i);
      continue;
    } else {
      out[i] = t;
    }
    if (out[i] == kDynamic)
      copied_dyn = true;
    else
      out_static *= out[i];
  }
  if (infer_at >= 0) {
    // With a dynamic input dim not copied through, the inferred dim absorbs it: the static parts
    // need not divide ([5, N*2, 4] -> [-1, 8] is [5*N, 8]); the executor checks the real sizes.
    bool absorbs_dynamic = in_dyn && !copied_dyn;
    if (out_static == 0 || (!absorbs_dynamic && in_static % out_static != 0))
      throw GraphError(msg("node '", n.name, "' (Reshape): cannot reshape ", shape_str(s), " to ", shape_str(target)));
    out[infer_at] = (in_dyn && !copied_dyn) ? kDynamic : in_static / out_static;
  } else if (!in_dyn && in_static != out_static) {
    throw GraphError(msg("node '", n.name, "' (Reshape): cannot reshape ", shape_str(s), " (", in_static,
                         " elements) to ", shape_str(out)));
  }
  return {out};
}

std::vector<Shape> transpose_infer(const Node& n, const std::vector<Shape>& in) {
  std::vector<int64_t> perm = n.attr_ints("perm", {});
  if (perm.empty())
    for (size_t i = in[0].size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  if (perm.size() != in[0].size())
    throw GraphError(msg("node '", n.name, "' (Transpose): perm has ", perm.size(), " entries for rank ", in[0].size()));
  Shape out;
  for (auto p : perm) out.push_back(in[0].at(shape::norm_axis(p, in[0].size(), n)));
  return {out};
}

std::vector<int64_t> sorted_axes(const Node& n, size_t rank) {
  std::vector<int64_t> axes = n.attr_ints("axes", {});
  for (auto& a : axes) a = shape::norm_axis(a, rank, n);
  std::sort(axes.begin(), axes.end());
  return axes;
}

std::vector<Shape> squeeze_infer(const Node& n, const std::vector<Shape>& in) {
  auto axes = sorted_axes(n, in[0].size());
  Shape out;
  for (size_t i = 0; i < in[0].size(); ++i) {
    bool drop = axes.empty() ? in[0][i] == 1 : std::binary_search(axes.begin(), axes.end(), (int64_t)i);
    if (drop && in[0][i] != 1 && in[0][i] != kDynamic)
      throw GraphError(msg("node '", n.name, "' (Squeeze): dimension ", i, " of ", shape_str(in[0]), " is not 1"));
    if (!drop) out.push_back(in[0][i]);
  }
  return {out};
}

std::vector<Shape> unsqueeze_infer(const Node& n, const std::vector<Shape>& in) {
  auto axes = sorted_axes(n, in[0].size() + n.attr_ints("axes").size());
  Shape out = in[0];
  for (auto a : axes) out.insert(out.begin() + a, 1);
  return {out};
}

std::vector<Shape> reduce_infer(const Node& n, const std::vector<Shape>& in) {
  auto axes = sorted_axes(n, in[0].size());
  bool keep = n.attr_int("keepdims", 1) != 0;
  Shape out;
  for (size_t i = 0; i < in[0].size(); ++i) {
    bool reduced = axes.empty() || std::binary_search(axes.begin(), axes.end(), (int64_t)i);
    if (!reduced)
      out.push_back(in[0][i]);
    else if (keep)
      out.push_back(1);
  }
  return {out};
}

int64_t reduce_flops(const Node&, const std::vector<Shape>& in, const std::vector<Shape>&) {
  return shape::count(in[0]);
}

std::vector<Shape> pad_infer(const Node& n, const std::vector<Shape>& in) {
  auto pads = n.attr_ints("pads");
  size_t r = in[0].size();
  if (pads.size() != 2 * r)
    throw GraphError(msg("node '", n.name, "' (Pad): 'pads' has ", pads.size(), " values for rank ", r));
  Shape out = in[0];
  for (size_t i = 0; i < r; ++i)
    if (out[i] != kDynamic) out[i] += pads[i] + pads[i + r];
  return {out};
}

std::vector<Shape> slice_infer(const Node& n, const std::vector<Shape>& in) {
  auto starts = n.attr_ints("starts"), ends = n.attr_ints("ends");
  std::vector<int64_t> axes = n.attr_ints("axes", {});
  std::vector<int64_t> steps = n.attr_ints("steps", std::vector<int64_t>(starts.size(), 1));
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    throw GraphError(msg("node '", n.name, "' (Slice): starts, ends, axes and steps differ in length"));
  Shape out = in[0];
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t a = shape::norm_axis(axes[i], out.size(), n);
    int64_t dim = in[0][a];
    if (dim == kDynamic) continue;
    int64_t step = steps[i];
    if (step == 0) throw GraphError(msg("node '", n.name, "' (Slice): step 0"));
    auto clampi = [&](int64_t v, int64_t lo, int64_t hi) { return std::max(lo, std::min(hi, v)); };
    int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (step > 0) {
      s = clampi(s, 0, dim);
      e = clampi(e, 0, dim);
      out[a] = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = clampi(s, -1, dim - 1);
      e = clampi(e, -1, dim - 1);
      out[a] = s > e ? (s - e + (-step) - 1) / (-step) : 0;
    }
  }
  return {out};
}

std::vector<Shape> softmax_infer(const Node& n, const std::vector<Shape>& in) {
  shape::norm_axis(n.attr_int("axis", -1), in[0].size(), n);
  return {in[0]};
}

OpDef unary(const std::string& name) {
  OpDef d;
  d.name = name;
  d.infer = same_shape;
  d.flops = flops_per_output;
  d.channel_passthrough = true;
  return d;
}

}  // namespace

namespace {
std::vector<OpDef> core_ops() {
  std::vector<OpDef> ops;
  auto add = [&](OpDef d) { ops.push_back(std::move(d)); };

  {
    OpDef d;
    d.name = "Constant";
    d.min_inputs = d.max_inputs = 0;
    d.required_params = {"value"};
    d.infer = constant_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Conv";  // weight [Cout, Cin/group, k...]; attrs strides, pads, dilations, group
    d.required_params = {"weight"};
    d.optional_params = {"bias"};
    d.infer = conv_infer;
    d.flops = conv_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "ConvTranspose";  // weight [Cin, Cout/group, k...]; attrs + output_padding
    d.required_params = {"weight"};
    d.optional_params = {"bias"};
    d.infer = conv_transpose_infer;
    d.flops = conv_transpose_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Linear";  // y = x W^T + b over the last axis; weight [out, in]
    d.required_params = {"weight"};
    d.optional_params = {"bias"};
    d.infer = linear_infer;
    d.flops = linear_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "MatMul";  // numpy matmul of two values
    d.min_inputs = d.max_inputs = 2;
    d.infer = matmul_infer;
    d.flops = matmul_flops;
    add(d);
  }
  {
    OpDef d = unary("BatchNorm");  // channel axis 1; attrs epsilon, momentum
    d.required_params = {"weight", "bias", "running_mean", "running_var"};
    d.infer = batchnorm_infer;
    d.flops = [](const Node& n, const std::vector<Shape>& i, const std::vector<Shape>& o) {
      return 2 * flops_per_output(n, i, o);
    };
    add(d);
  }
  {
    OpDef d = unary("LayerNorm");  // normalizes axes [axis, rank); attrs axis, epsilon
    d.optional_params = {"weight", "bias"};
    d.infer = layernorm_infer;
    d.channel_passthrough = false;
    d.flops = [](const Node& n, const std::vector<Shape>& i, const std::vector<Shape>& o) {
      return 5 * flops_per_output(n, i, o);
    };
    add(d);
  }
  for (const char* name : {"Relu", "Relu6", "LeakyRelu", "Gelu", "Silu", "Sigmoid", "Tanh", "HardSwish",
                           "HardSigmoid", "Elu", "Selu", "Softplus", "Softsign", "Clip", "Exp", "Log", "Sqrt",
                           "Abs", "Neg", "Reciprocal", "Erf", "Sign", "Floor", "Ceil", "Shrink", "Dropout",
                           "Identity"})
    add(unary(name));
  ops.back().flops = no_flops;                 // Identity
  ops[ops.size() - 2].flops = no_flops;        // Dropout
  {
    OpDef d = unary("PRelu");  // slope broadcast against the input (ONNX layout)
    d.required_params = {"slope"};
    add(d);
  }
  for (const char* name : {"Softmax", "LogSoftmax"}) {
    OpDef d = unary(name);  // attr axis (default -1)
    d.infer = softmax_infer;
    d.channel_passthrough = false;
    add(d);
  }
  for (const char* name : {"MaxPool", "AvgPool"}) {
    OpDef d;
    d.name = name;  // attrs kernel_shape, strides, pads, dilations, ceil_mode, count_include_pad
    d.required_attrs = {"kernel_shape"};
    d.infer = pool_infer;
    d.flops = pool_flops;
    d.channel_passthrough = true;
    add(d);
  }
  {
    OpDef d;
    d.name = "LRN";  // attrs size, alpha, beta, bias (ONNX)
    d.required_attrs = {"size"};
    d.infer = same_shape;
    d.flops = flops_per_output;
    d.channel_passthrough = false;
    add(d);
  }
  for (const char* name : {"GlobalAvgPool", "GlobalMaxPool"}) {
    OpDef d;
    d.name = name;
    d.infer = global_pool_infer;
    d.flops = global_pool_flops;
    d.channel_passthrough = true;
    add(d);
  }
  for (const char* name : {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}) {
    OpDef d;
    d.name = name;  // numpy broadcasting
    d.min_inputs = 2;
    d.max_inputs = (std::string(name) == "Max" || std::string(name) == "Min") ? -1 : 2;
    d.infer = broadcast_infer;
    d.flops = flops_per_output;
    add(d);
  }
  {
    OpDef d;
    d.name = "Concat";  // attr axis
    d.max_inputs = -1;
    d.required_attrs = {"axis"};
    d.infer = concat_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Split";  // attrs axis, split (sizes); as many outputs as the node has
    d.num_outputs = -1;
    d.infer = split_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Slice";  // attrs starts, ends, axes, steps (ONNX semantics, clamped)
    d.required_attrs = {"starts", "ends"};
    d.infer = slice_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Flatten";  // attr axis (default 1): 2-D output, ONNX semantics
    d.infer = flatten_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Reshape";  // attr shape (ONNX: 0 copies the input dim, -1 inferred)
    d.required_attrs = {"shape"};
    d.infer = reshape_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Transpose";  // attr perm (default: reverse)
    d.infer = transpose_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Squeeze";  // attr axes (default: all size-1 dims)
    d.infer = squeeze_infer;
    d.flops = no_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Unsqueeze";  // attr axes (in the output's numbering)
    d.required_attrs = {"axes"};
    d.infer = unsqueeze_infer;
    d.flops = no_flops;
    add(d);
  }
  for (const char* name : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"}) {
    OpDef d;
    d.name = name;  // attrs axes (default all), keepdims (default 1)
    d.infer = reduce_infer;
    d.flops = reduce_flops;
    add(d);
  }
  {
    OpDef d;
    d.name = "Pad";  // attrs pads [begins..., ends...] over all axes, mode constant|reflect|edge, value
    d.required_attrs = {"pads"};
    d.infer = pad_infer;
    d.flops = no_flops;
    add(d);
  }
  return ops;
}

const std::vector<OpDef>& registry() {
  static const std::vector<OpDef> ops = [] {
    std::vector<OpDef> all = core_ops();
    for (auto& d : extra_ops()) all.push_back(std::move(d));
    return all;
  }();
  return ops;
}
}  // namespace

const OpDef* find_op(const std::string& name) {
  for (const auto& d : registry())
    if (d.name == name) return &d;
  return nullptr;
}

std::vector<std::string> op_names() {
  std::vector<std::string> names;
  for (const auto& d : registry()) names.push_back(d.name);
  return names;
}

const OpDef& op_def(const std::string& name) {
  if (const OpDef* d = find_op(name)) return *d;
  std::string list;
  for (const auto& n : op_names()) list += (list.empty() ? "" : ", ") + n;
  throw UnsupportedError(msg("unknown op '", name, "' (supported: ", list, ")"));
}

int64_t node_flops(const Graph& graph, const Node& node) {
  const OpDef& def = op_def(node.op);
  std::vector<Shape> in, out;
  for (const auto& v : node.inputs) in.push_back(graph.shape_of(v));
  for (const auto& v : node.outputs) out.push_back(graph.shape_of(v));
  // The op formulas count every element of their shapes, a dynamic dim (the batch) as 1, so the
  // batch may sit on any axis (sequence-first attention has it on axis 1); a graph whose input
  // has no dynamic dim has a fixed batch, its first dim, and is divided by it.
  int64_t batch = 1;
  if (!graph.inputs.empty()) {
    const Shape& s = graph.inputs[0].shape;
    if (!s.empty() && std::find(s.begin(), s.end(), kDynamic) == s.end() && s[0] > 0) batch = s[0];
  }
  return std::max<int64_t>(def.flops(node, in, out), 0) / batch;
}

int64_t graph_flops(const Graph& graph) {
  int64_t total = 0;
  for (const auto& node : graph.nodes) total += node_flops(graph, node);
  return total;
}

}  // namespace squeeze::ir
