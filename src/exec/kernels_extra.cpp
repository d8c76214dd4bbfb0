// Kernels of the general ops in src/ir/ops_extra.cpp.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "kernels_internal.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"

namespace squeeze::exec {

namespace {

using Tensors = std::vector<at::Tensor>;

at::ScalarType dtype_named(const ir::Node& n, const std::string& name) {
  static const std::map<std::string, at::ScalarType> types = {
      {"float", at::kFloat}, {"double", at::kDouble}, {"half", at::kHalf},  {"int64", at::kLong},
      {"int32", at::kInt},   {"int16", at::kShort},   {"int8", at::kChar},  {"uint8", at::kByte},
      {"bool", at::kBool},   {"bfloat16", at::kBFloat16}};
  auto it = types.find(name);
  if (it == types.end())
    throw UnsupportedError(msg("node '", n.name, "' (Cast): unknown type '", name,
                               "' (valid: float, double, half, bfloat16, int64, int32, int16, int8, uint8, bool)"));
  return it->second;
}

Tensors gather(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += x.dim();
  at::Tensor idx = in[1].to(at::kLong);
  idx = at::where(idx < 0, idx + x.size(axis), idx);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().begin() + axis);
  shape.insert(shape.end(), idx.sizes().begin(), idx.sizes().end());
  shape.insert(shape.end(), x.sizes().begin() + axis + 1, x.sizes().end());
  return {x.index_select(axis, idx.reshape({-1})).reshape(shape)};
}

Tensors expand(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  std::vector<int64_t> target;
  if (in.size() > 1) {
    at::Tensor s = in[1].to(at::kLong).contiguous();
    target.assign(s.data_ptr<int64_t>(), s.data_ptr<int64_t>() + s.numel());
  } else {
    target = n.attr_ints("shape");
  }
  // ONNX Expand broadcasts both ways: a 1 in the target keeps the input's dimension.
  size_t r = std::max<size_t>(x.dim(), target.size());
  std::vector<int64_t> out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t a = i < r - x.dim() ? 1 : x.size(i - (r - x.dim()));
    int64_t b = i < r - target.size() ? 1 : target[i - (r - target.size())];
    out[i] = b == 1 ? a : b;
  }
  return {x.expand(out).contiguous()};
}

Tensors tile(const ir::Node& n, const Tensors& in, const KernelContext&) { return {in[0].repeat(n.attr_ints("repeats"))}; }

Tensors cast(const ir::Node& n, const Tensors& in, const KernelContext&) {
  return {in[0].to(dtype_named(n, n.attr_str("to", "float")))};
}

Tensors shape_of(const ir::Node& n, const Tensors& in, const KernelContext&) {
  int64_t r = in[0].dim();
  int64_t start = n.attr_int("start", 0), end = n.attr_int("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, 0, r);
  std::vector<int64_t> dims(in[0].sizes().begin() + start, in[0].sizes().begin() + std::max(start, end));
  return {at::tensor(dims, at::kLong)};
}

Tensors where(const ir::Node&, const Tensors& in, const KernelContext&) {
  return {at::where(in[0].to(at::kBool), in[1], in[2])};
}

Tensors logic(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const std::string& op = n.op;
  if (op == "Equal") return {at::eq(in[0], in[1])};
  if (op == "Less") return {at::lt(in[0], in[1])};
  if (op == "Greater") return {at::gt(in[0], in[1])};
  if (op == "LessOrEqual") return {at::le(in[0], in[1])};
  if (op == "GreaterOrEqual") return {at::ge(in[0], in[1])};
  if (op == "Mod") return {n.attr_int("fmod", 0) ? at::fmod(in[0], in[1]) : at::remainder(in[0], in[1])};
  at::Tensor a = in[0].to(at::kBool), b = in[1].to(at::kBool);
  if (op == "And") return {at::logical_and(a, b)};
  if (op == "Or") return {at::logical_or(a, b)};
  return {at::logical_xor(a, b)};
}

Tensors unary(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  const std::string& op = n.op;
  if (op == "Not") return {at::logical_not(x.to(at::kBool))};
  if (op == "Sin") return {at::sin(x)};
  if (op == "Cos") return {at::cos(x)};
  if (op == "Tan") return {at::tan(x)};
  if (op == "Asin") return {at::asin(x)};
  if (op == "Acos") return {at::acos(x)};
  if (op == "Atan") return {at::atan(x)};
  if (op == "Sinh") return {at::sinh(x)};
  if (op == "Cosh") return {at::cosh(x)};
  if (op == "Round") return {at::round(x)};  // half to even, as ONNX
  if (op == "IsNaN") return {at::isnan(x)};
  if (op == "Mish") return {x * at::tanh(at::softplus(x, 1, 20))};
  if (op == "Celu") {
    double alpha = n.attr_float("alpha", 1.0);
    return {at::clamp_min(x, 0) + at::clamp_max(alpha * (at::exp(x / alpha) - 1), 0)};
  }
  if (op == "ThresholdedRelu") {
    double alpha = n.attr_float("alpha", 1.0);
    return {at::where(x > alpha, x, at::zeros_like(x))};
  }
  throw InternalError(msg("no extra unary kernel for ", op));
}

std::vector<int64_t> reduce_axes(const ir::Node& n, int64_t rank) {
  auto axes = n.attr_ints("axes", {});
  for (auto& a : axes)
    if (a < 0) a += rank;
  if (axes.empty())
    for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
  std::sort(axes.begin(), axes.end());
  return axes;
}

Tensors reduce(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  auto axes = reduce_axes(n, x.dim());
  bool keep = n.attr_int("keepdims", 1) != 0;
  const std::string& op = n.op;
  // Integer inputs keep their type: sums are cast back, a square root is truncated (ONNX Runtime's
  // static_cast<T>(std::sqrt(sum))).
  if (op == "ReduceL1") return {at::sum(at::abs(x), axes, keep).to(x.scalar_type())};
  if (op == "ReduceL2") {
    at::Tensor s = at::sum(x * x, axes, keep);
    return {x.is_floating_point() ? at::sqrt(s) : at::sqrt(s.to(at::kDouble)).to(x.scalar_type())};
  }
  if (op == "ReduceSumSquare") return {at::sum(x * x, axes, keep).to(x.scalar_type())};
  if (op == "ReduceLogSumExp") return {at::logsumexp(x, axes, keep)};
  // ReduceProd: at::prod takes one dim at a time. ONNX keeps the input's type (libtorch
  // multiplies int32 into int64).
  at::Tensor y = x;
  for (size_t i = axes.size(); i-- > 0;) y = at::prod(y, axes[i], keep);
  return {y.to(x.scalar_type())};
}

Tensors arg(const ir::Node& n, const Tensors& in, const KernelContext&) {
  at::Tensor x = in[0];
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += x.dim();
  bool keep = n.attr_int("keepdims", 1) != 0;
  bool last = n.attr_int("select_last_index", 0) != 0;
  if (last) x = x.flip(axis);
  at::Tensor i = n.op == "ArgMax" ? at::argmax(x, axis, keep) : at::argmin(x, axis, keep);
  if (last) i = (x.size(axis) - 1) - i;
  return {i};
}

Tensors instancenorm(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  return {at::instance_norm(in[0], param_tensor(n, "weight", ctx), param_tensor(n, "bias", ctx), at::Tensor(),
                            at::Tensor(), true, 0.1, n.attr_float("epsilon", 1e-5), false)};
}

Tensors depth_space(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  int64_t b = n.attr_int("blocksize");
  int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (n.op == "DepthToSpace") {
    if (n.attr_str("mode", "DCR") == "CRD")
      return {x.reshape({N, C / (b * b), b, b, H, W}).permute({0, 1, 4, 2, 5, 3}).reshape({N, C / (b * b), H * b, W * b})};
    return {x.reshape({N, b, b, C / (b * b), H, W}).permute({0, 3, 4, 1, 5, 2}).reshape({N, C / (b * b), H * b, W * b})};
  }
  return {x.reshape({N, C, H / b, b, W / b, b}).permute({0, 3, 5, 1, 2, 4}).reshape({N, C * b * b, H / b, W / b})};
}

// --- integer ops (ONNX Runtime's dynamic quantization) ---
// Integer sums are computed in float64, exact for |sum| < 2^53 (far beyond any int32 result),
// then wrapped to int32 as ONNX allows the accumulation to overflow only in 32 bits.

Tensors dynamic_quantize(const ir::Node&, const Tensors& in, const KernelContext&) {
  ir::QuantSpec s = dynamic_quantize_spec(in[0]);
  return {quant::quantize(in[0], s).to(at::kByte), s.scale.to(at::kFloat).reshape({}),
          s.zero_point.to(at::kByte).reshape({})};
}

Tensors dequantize_value(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& q = in[0];
  at::Tensor scale = in[1].to(at::kFloat), zp = in.size() > 2 ? in[2].to(at::kFloat) : at::zeros({}, at::kFloat);
  if (scale.numel() > 1 && q.dim() > 0) {
    int64_t axis = n.attr_int("axis", 1);
    if (axis < 0) axis += q.dim();
    if (axis < 0 || axis >= q.dim() || q.size(axis) != scale.numel())
      throw InputError(msg("node '", n.name, "' (DequantizeLinear): ", scale.numel(), " scales along axis ",
                           n.attr_int("axis", 1), " of a tensor of shape ", q.sizes()));
    std::vector<int64_t> shape(static_cast<size_t>(q.dim()), 1);
    shape[static_cast<size_t>(axis)] = -1;
    scale = scale.reshape(shape);
    if (zp.numel() > 1) zp = zp.reshape(shape);
  }
  return {(q.to(at::kFloat) - zp) * scale};
}

at::Tensor wrap_int32(const at::Tensor& sum) { return sum.to(at::kLong).to(at::kInt); }

Tensors matmul_integer(const ir::Node&, const Tensors& in, const KernelContext&) {
  at::Tensor a = in[0].to(at::kDouble), b = in[1].to(at::kDouble);
  if (in.size() > 2) {
    at::Tensor za = in[2].to(at::kDouble);
    a = a - (za.numel() > 1 ? za.reshape({-1, 1}) : za.reshape({}));  // one per row of A
  }
  if (in.size() > 3) {
    at::Tensor zb = in[3].to(at::kDouble);
    b = b - (zb.numel() > 1 ? zb.reshape({-1}) : zb.reshape({}));  // one per column of B
  }
  return {wrap_int32(at::matmul(a, b))};
}

Tensors conv_integer(const ir::Node& n, const Tensors& in, const KernelContext&) {
  at::Tensor x = in[0].to(at::kDouble), w = in[1].to(at::kDouble);
  size_t nd = static_cast<size_t>(w.dim()) - 2;
  if (in.size() > 2) x = x - in[2].to(at::kDouble).reshape({});
  if (in.size() > 3) {
    at::Tensor zw = in[3].to(at::kDouble);
    std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
    shape[0] = -1;
    w = w - (zw.numel() > 1 ? zw.reshape(shape) : zw.reshape({}));  // one per output channel
  }
  // Padding with the zero point, as ONNX Runtime does: 0 once the zero point is subtracted.
  auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  std::vector<int64_t> torch_pad;  // last dim first
  for (size_t i = nd; i-- > 0;) {
    torch_pad.push_back(pads[i]);
    torch_pad.push_back(pads[i + nd]);
  }
  x = at::constant_pad_nd(x, torch_pad, 0.0);
  return {wrap_int32(at::convolution(x, w, at::Tensor(), n.attr_ints("strides", std::vector<int64_t>(nd, 1)),
                                     std::vector<int64_t>(nd, 0), n.attr_ints("dilations", std::vector<int64_t>(nd, 1)),
                                     false, std::vector<int64_t>(nd, 0), n.attr_int("group", 1)))};
}

}  // namespace

std::map<std::string, Kernel> extra_kernels() {
  std::map<std::string, Kernel> k;
  k["Gather"] = gather;
  k["Expand"] = expand;
  k["Tile"] = tile;
  k["Cast"] = cast;
  k["Shape"] = shape_of;
  k["Where"] = where;
  for (const char* op : {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod"})
    k[op] = logic;
  for (const char* op : {"Not", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Round", "Celu",
                         "ThresholdedRelu", "IsNaN", "Mish"})
    k[op] = unary;
  for (const char* op : {"ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"}) k[op] = reduce;
  k["ArgMax"] = k["ArgMin"] = arg;
  k["InstanceNorm"] = instancenorm;
  k["DepthToSpace"] = k["SpaceToDepth"] = depth_space;
  k["DynamicQuantizeLinear"] = dynamic_quantize;
  k["DequantizeLinear"] = dequantize_value;
  k["MatMulInteger"] = matmul_integer;
  k["ConvInteger"] = conv_integer;
  return k;
}

ir::QuantSpec dynamic_quantize_spec(const at::Tensor& x) {
  float lo = 0.0f, hi = 0.0f;
  if (x.numel() > 0) {
    at::Tensor v = x.detach().to(at::kFloat);
    lo = std::min(lo, v.min().item<float>());
    hi = std::max(hi, v.max().item<float>());
  }
  if (!std::isfinite(lo) || !std::isfinite(hi))
    throw InputError(msg("dynamic quantization: the input's range [", lo, ", ", hi, "] is not finite"));
  // float32 throughout, in this order: what DynamicQuantizeLinear defines (see the header).
  float scale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
  float zp = std::nearbyint(std::clamp(0.0f - lo / scale, 0.0f, 255.0f));
  ir::QuantSpec s;
  s.bits = 8;
  s.is_signed = false;
  s.symmetric = false;
  s.scale = at::scalar_tensor(scale, at::kFloat);
  s.zero_point = at::scalar_tensor(static_cast<int64_t>(zp), at::kLong);
  return s;
}

}  // namespace squeeze::exec
