// Kernels of the core ops (ir/ops.cpp documents their attributes), written with libtorch ops so
// autograd works through all of them.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "kernels_internal.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/exec/int8.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"

namespace squeeze::exec {

// Splits ONNX pads [begins..., ends...] into symmetric padding when possible; otherwise pads
// the input explicitly and returns zero padding.
std::vector<int64_t> symmetric_pads(const ir::Node& n, at::Tensor& x, size_t nd, double fill) {
  auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  bool symmetric = true;
  for (size_t i = 0; i < nd; ++i) symmetric &= pads[i] == pads[i + nd];
  if (symmetric) return std::vector<int64_t>(pads.begin(), pads.begin() + nd);
  std::vector<int64_t> torch_pad;  // last dim first: (left, right) pairs
  for (size_t i = nd; i-- > 0;) {
    torch_pad.push_back(pads[i]);
    torch_pad.push_back(pads[i + nd]);
  }
  x = at::constant_pad_nd(x, torch_pad, fill);
  return std::vector<int64_t>(nd, 0);
}

namespace {

using Tensors = std::vector<at::Tensor>;

std::vector<int64_t> ints_or(const ir::Node& n, const char* key, size_t nd, int64_t fill) {
  return n.attr_ints(key, std::vector<int64_t>(nd, fill));
}

Tensors conv(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  if (at::Tensor q = quant::quantized_forward(n, in[0], ctx); q.defined()) return {q};
  at::Tensor w = param_tensor(n, "weight", ctx);
  at::Tensor b = optional_param(n, "bias", ctx);
  size_t nd = w.dim() - 2;
  at::Tensor x = in[0];
  // A dynamically quantized Conv (quant_dynamic = 1, imported from ONNX Runtime's ConvInteger)
  // quantizes its input per call like a dynamic Linear; with no int8 kernel for it, it is simulated
  // on the same grid (exec/int8.h).
  if (!ctx.training && n.attr_int("quant_dynamic", 0) != 0 && n.param("weight").qspec && !x.is_quantized())
    x = quant::fake_quantize(x, dynamic_quantize_spec(x));
  // Inference runs 2-D convolutions channels-last (see exec::layout_agnostic).
  if (nd == 2 && ctx.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  auto pad = symmetric_pads(n, x, nd, 0.0);
  return {at::convolution(x, w, b, ints_or(n, "strides", nd, 1), pad, ints_or(n, "dilations", nd, 1), false,
                          std::vector<int64_t>(nd, 0), n.attr_int("group", 1))};
}

Tensors conv_transpose(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  at::Tensor w = param_tensor(n, "weight", ctx);
  at::Tensor b = optional_param(n, "bias", ctx);
  size_t nd = w.dim() - 2;
  auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  std::vector<int64_t> pad(nd), extra(nd);
  for (size_t i = 0; i < nd; ++i) {
    // Asymmetric pads: pad the smaller amount and crop the rest from the end.
    pad[i] = std::min(pads[i], pads[i + nd]);
    extra[i] = pads[i + nd] - pad[i];
  }
  auto outpad = ints_or(n, "output_padding", nd, 0);
  at::Tensor y = at::convolution(in[0], w, b, ints_or(n, "strides", nd, 1), pad, ints_or(n, "dilations", nd, 1),
                                 true, outpad, n.attr_int("group", 1));
  for (size_t i = 0; i < nd; ++i) {
    int64_t lead = pads[i] - pad[i];
    int64_t len = y.size(i + 2) - lead - extra[i];
    if (lead || len != y.size(i + 2)) y = y.narrow(i + 2, lead, len);
  }
  return {y};
}

Tensors linear(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  // Fixed-point layers run exactly in eval mode; in training their weights and results are
  // fake-quantized to their types (straight-through), the accumulator is not emulated.
  if (!ctx.training && is_fixed_layer(n)) return {fixed_linear(n, in[0])};
  if (at::Tensor q = quant::quantized_forward(n, in[0], ctx); q.defined()) return {q};
  at::Tensor w = param_tensor(n, "weight", ctx);
  at::Tensor b = optional_param(n, "bias", ctx);
  const at::Tensor& x = in[0];
  // At batch 1, matrix-vector products are several times faster than mm in this libtorch.
  if (!ctx.training && x.dim() == 2 && x.size(0) == 1) {
    at::Tensor y = at::mv(w, x[0]);
    if (b.defined()) y.add_(b);
    return {y.unsqueeze(0)};
  }
  return {at::linear(x, w, b)};
}

Tensors batchnorm(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  // momentum follows PyTorch: running = (1 - momentum) * running + momentum * batch.
  return {at::batch_norm(in[0], param_tensor(n, "weight", ctx), param_tensor(n, "bias", ctx),
                         n.param("running_mean").value, n.param("running_var").value, ctx.training,
                         n.attr_float("momentum", 0.1), n.attr_float("epsilon", 1e-5), false)};
}

Tensors layernorm(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  const at::Tensor& x = in[0];
  int64_t axis = n.attr_int("axis", -1);
  if (axis < 0) axis += x.dim();
  std::vector<int64_t> shape(x.sizes().begin() + axis, x.sizes().end());
  at::Tensor w = optional_param(n, "weight", ctx), b = optional_param(n, "bias", ctx);
  if (w.defined()) w = w.reshape(shape);
  if (b.defined()) b = b.reshape(shape);
  return {at::layer_norm(x, shape, w, b, n.attr_float("epsilon", 1e-5), false)};
}

Tensors unary(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  const at::Tensor& x = in[0];
  const std::string& op = n.op;
  if (op == "Relu") return {at::relu(x)};
  if (op == "Relu6") return {at::hardtanh(x, 0.0, 6.0)};
  if (op == "LeakyRelu") return {at::leaky_relu(x, n.attr_float("alpha", 0.01))};
  if (op == "Gelu") return {at::gelu(x, n.attr_str("approximate", "none"))};
  if (op == "Silu") return {at::silu(x)};
  if (op == "Sigmoid") return {at::sigmoid(x)};
  if (op == "Tanh") return {at::tanh(x)};
  if (op == "HardSwish") return {at::hardswish(x)};
  if (op == "HardSigmoid")
    return {at::clamp(x * n.attr_float("alpha", 0.2) + n.attr_float("beta", 0.5), 0.0, 1.0)};
  if (op == "Elu") return {at::elu(x, n.attr_float("alpha", 1.0))};
  if (op == "Selu") {
    double alpha = n.attr_float("alpha", 1.67326319217681884765625);
    double gamma = n.attr_float("gamma", 1.05070102214813232421875);
    return {gamma * at::where(x > 0, x, alpha * (at::exp(x) - 1))};
  }
  if (op == "Softplus") return {at::softplus(x, 1, 20)};
  if (op == "Softsign") return {x / (1 + at::abs(x))};
  if (op == "Clip") {
    c10::optional<at::Scalar> lo, hi;
    // Bounds are stored as doubles; on an integer tensor a double bound would make libtorch
    // return floats, so integer inputs get the (exact) integer bounds.
    bool integer = at::isIntegralType(x.scalar_type(), /*includeBool=*/false);
    if (n.has_attr("min")) {
      double v = n.attr_float("min", 0);
      lo = integer ? at::Scalar(static_cast<int64_t>(std::ceil(v))) : at::Scalar(v);
    }
    if (n.has_attr("max")) {
      double v = n.attr_float("max", 0);
      hi = integer ? at::Scalar(static_cast<int64_t>(std::floor(v))) : at::Scalar(v);
    }
    return {at::clamp(x, lo, hi)};
  }
  if (op == "Exp") return {at::exp(x)};
  if (op == "Log") return {at::log(x)};
  if (op == "Sqrt") return {at::sqrt(x)};
  if (op == "Abs") return {at::abs(x)};
  if (op == "Neg") return {at::neg(x)};
  if (op == "Reciprocal") return {at::reciprocal(x)};
  if (op == "Erf") return {at::erf(x)};
  if (op == "Sign") return {at::sign(x)};
  if (op == "Floor") return {at::floor(x)};
  if (op == "Ceil") return {at::ceil(x)};
  if (op == "Shrink") {
    double lambd = n.attr_float("lambd", 0.5), bias = n.attr_float("bias", 0.0);
    return {at::where(x < -lambd, x + bias, at::where(x > lambd, x - bias, at::zeros_like(x)))};
  }
  if (op == "Dropout") return {ctx.training ? at::dropout(x, n.attr_float("ratio", 0.5), true) : x};
  if (op == "Identity") return {x};
  throw InternalError(msg("no unary kernel for ", op));
}

Tensors prelu(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  at::Tensor slope = param_tensor(n, "slope", ctx);
  return {at::where(in[0] >= 0, in[0], in[0] * slope)};
}

int64_t axis_of(const ir::Node& n, const at::Tensor& x, int64_t fallback) {
  int64_t a = n.attr_int("axis", fallback);
  return a < 0 ? a + x.dim() : a;
}

Tensors softmax(const ir::Node& n, const Tensors& in, const KernelContext&) {
  int64_t axis = axis_of(n, in[0], -1);
  return {n.op == "Softmax" ? at::softmax(in[0], axis) : at::log_softmax(in[0], axis)};
}

Tensors maxpool(const ir::Node& n, const Tensors& in, const KernelContext& ctx) {
  at::Tensor x = in[0];
  size_t nd = x.dim() - 2;
  auto k = n.attr_ints("kernel_shape");
  auto pad = symmetric_pads(n, x, nd, -std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < nd; ++i)
    if (pad[i] * 2 > k[i]) {  // PyTorch limits padding to half the kernel: pad explicitly.
      std::vector<int64_t> torch_pad;
      for (size_t j = nd; j-- > 0;) torch_pad.insert(torch_pad.end(), {pad[j], pad[j]});
      x = at::constant_pad_nd(x, torch_pad, -std::numeric_limits<double>::infinity());
      pad.assign(nd, 0);
      break;
    }
  auto s = ints_or(n, "strides", nd, 1);
  auto d = ints_or(n, "dilations", nd, 1);
  bool ceil = n.attr_int("ceil_mode", 0) != 0;
  if (nd == 1) return {at::max_pool1d(x, k, s, pad, d, ceil)};
  // In inference, this libtorch's NCHW max pooling is 3-5x slower than its channels-last kernel
  // (measured: 64x32x28x28, 2x2: 5.5 ms vs 1.5 ms including both layout copies); results are
  // identical. Training keeps the NCHW kernel: with its backward the detour measured no faster.
  // The output stays channels-last when the executor runs that way (see exec::layout_agnostic).
  if (nd == 2 && !ctx.training) {
    at::Tensor y = at::max_pool2d(x.contiguous(at::MemoryFormat::ChannelsLast), k, s, pad, d, ceil);
    return {ctx.channels_last ? y : y.contiguous()};
  }
  if (nd == 2) return {at::max_pool2d(x, k, s, pad, d, ceil)};
  return {at::max_pool3d(x, k, s, pad, d, ceil)};
}

Tensors avgpool(const ir::Node& n, const Tensors& in, const KernelContext&) {
  at::Tensor x = in[0];
  size_t nd = x.dim() - 2;
  auto k = n.attr_ints("kernel_shape");
  auto s = ints_or(n, "strides", nd, 1);
  bool ceil = n.attr_int("ceil_mode", 0) != 0;
  bool include_pad = n.attr_int("count_include_pad", 0) != 0;
  auto pads = n.attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
  bool symmetric = true, small = true;
  for (size_t i = 0; i < nd; ++i) {
    symmetric &= pads[i] == pads[i + nd];
    small &= pads[i] * 2 <= k[i];
  }
  if (symmetric && small) {
    std::vector<int64_t> pad(pads.begin(), pads.begin() + nd);
    if (nd == 1) return {at::avg_pool1d(x, k, s, pad, ceil, include_pad)};
    if (nd == 2) return {at::avg_pool2d(x, k, s, pad, ceil, include_pad)};
    return {at::avg_pool3d(x, k, s, pad, ceil, include_pad)};
  }
  // General padding: sum over windows of the zero-padded input, divided by the window count.
  std::vector<int64_t> torch_pad;
  for (size_t j = nd; j-- > 0;) torch_pad.insert(torch_pad.end(), {pads[j], pads[j + nd]});
  at::Tensor xp = at::constant_pad_nd(x, torch_pad, 0.0);
  at::Tensor ones = at::constant_pad_nd(at::ones_like(x.select(0, 0).select(0, 0)).unsqueeze(0).unsqueeze(0),
                                        torch_pad, include_pad ? 1.0 : 0.0);
  std::vector<int64_t> zero(nd, 0);
  auto pool = [&](const at::Tensor& t) {
    if (nd == 1) return at::avg_pool1d(t, k, s, zero, ceil, true);
    if (nd == 2) return at::avg_pool2d(t, k, s, zero, ceil, true);
    return at::avg_pool3d(t, k, s, zero, ceil, true);
  };
  return {pool(xp) / pool(ones)};
}

Tensors lrn(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  int64_t size = n.attr_int("size");
  double alpha = n.attr_float("alpha", 1e-4), beta = n.attr_float("beta", 0.75), bias = n.attr_float("bias", 1.0);
  // Sum of squares over a channel window: [N, 1, C, rest] padded on C, then a (size x 1) pool.
  at::Tensor sq = (x * x).reshape({x.size(0), 1, x.size(1), -1});
  sq = at::constant_pad_nd(sq, {0, 0, (size - 1) / 2, size - 1 - (size - 1) / 2});
  at::Tensor sum = at::avg_pool2d(sq, {size, 1}, {1, 1}) * static_cast<double>(size);
  sum = sum.reshape(x.sizes());
  return {x / at::pow(bias + (alpha / static_cast<double>(size)) * sum, beta)};
}

Tensors global_pool(const ir::Node& n, const Tensors& in, const KernelContext&) {
  std::vector<int64_t> dims;
  for (int64_t d = 2; d < in[0].dim(); ++d) dims.push_back(d);
  if (n.op == "GlobalAvgPool") return {at::mean(in[0], dims, true)};
  return {at::amax(in[0], dims, true)};
}

// ONNX Pow with an integer base keeps the base's type, as ONNX Runtime does (static_cast<T> of
// std::pow): a negative exponent gives 1/x^k truncated toward zero, so only bases 1 and -1 survive,
// and 0 to a negative power is a division by zero. libtorch refuses negative integer exponents,
// and a float detour would lose int64 precision, so both cases are worked out here exactly.
at::Tensor integer_pow(const ir::Node& n, const at::Tensor& base, const at::Tensor& exponent) {
  if (exponent.is_floating_point())
    return at::pow(base.to(at::kDouble), exponent.to(at::kDouble)).to(base.scalar_type());
  at::Tensor e = exponent.to(at::kLong);
  at::Tensor negative = e < 0;
  if (!negative.any().item<bool>()) return at::pow(base, e).to(base.scalar_type());
  if (at::logical_and(negative, base == 0).any().item<bool>())
    throw InputError(msg("node '", n.name,
                         "' (Pow): 0 raised to a negative integer power (a division by zero); "
                         "integer Pow needs a non-zero base wherever the exponent is negative"));
  at::Tensor odd = at::remainder(e, 2) != 0;
  at::Tensor one = at::ones_like(base);
  at::Tensor inverse = at::where(base == 1, one,
                                 at::where(base == -1, at::where(odd, -one, one), at::zeros_like(base)));
  return at::where(negative, inverse, at::pow(base, at::clamp_min(e, 0)).to(base.scalar_type()));
}

bool is_integer(const at::Tensor& t) {
  return at::isIntegralType(t.scalar_type(), /*includeBool=*/false);
}

Tensors binary(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const std::string& op = n.op;
  if (op == "Pow")
    return {is_integer(in[0]) ? integer_pow(n, in[0], in[1]) : at::pow(in[0], in[1])};
  bool int_a = is_integer(in[0]), int_b = in.size() > 1 && is_integer(in[1]);
  // ONNX gives both inputs one type. libtorch would promote an integer and a float operand to
  // float and, for Div, turn an integer quotient into a fraction: refuse instead of guessing.
  if (in.size() > 1 && int_a != int_b && (in[0].is_floating_point() || in[1].is_floating_point()))
    throw UnsupportedError(msg("node '", n.name, "' (", op, "): inputs of different element types (",
                               in[0].scalar_type(), " and ", in[1].scalar_type(),
                               "); ONNX requires both inputs of ", op, " to have the same type"));
  if (op == "Add") return {at::add(in[0], in[1])};
  if (op == "Sub") return {at::sub(in[0], in[1])};
  if (op == "Mul") return {at::mul(in[0], in[1])};
  // Integer Div truncates toward zero (C semantics), as ONNX Runtime and the ONNX reference do:
  // -7 / 2 = -3, where Python's // would give -4. libtorch throws on a zero integer divisor.
  if (op == "Div") return {int_a ? at::div(in[0], in[1], "trunc") : at::div(in[0], in[1])};
  at::Tensor acc = in[0];
  for (size_t i = 1; i < in.size(); ++i) acc = op == "Max" ? at::maximum(acc, in[i]) : at::minimum(acc, in[i]);
  return {acc};
}

Tensors matmul(const ir::Node&, const Tensors& in, const KernelContext&) { return {at::matmul(in[0], in[1])}; }

Tensors constant(const ir::Node& n, const Tensors&, const KernelContext& ctx) {
  return {param_tensor(n, "value", ctx)};
}

Tensors concat(const ir::Node& n, const Tensors& in, const KernelContext&) {
  return {at::cat(in, axis_of(n, in[0], 0))};
}

Tensors split(const ir::Node& n, const Tensors& in, const KernelContext&) {
  int64_t axis = axis_of(n, in[0], 0);
  auto sizes = n.attr_ints("split", {});
  if (sizes.empty()) sizes.assign(n.outputs.size(), in[0].size(axis) / static_cast<int64_t>(n.outputs.size()));
  return at::split_with_sizes(in[0], sizes, axis);
}

Tensors slice(const ir::Node& n, const Tensors& in, const KernelContext&) {
  at::Tensor x = in[0];
  auto starts = n.attr_ints("starts"), ends = n.attr_ints("ends");
  auto axes = n.attr_ints("axes", {});
  auto steps = n.attr_ints("steps", std::vector<int64_t>(starts.size(), 1));
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t a = axes[i] < 0 ? axes[i] + x.dim() : axes[i];
    int64_t dim = x.size(a), step = steps[i];
    int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      x = x.slice(a, s, std::max(s, e), step);
    } else {
      s = std::clamp<int64_t>(s, -1, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      std::vector<int64_t> idx;
      for (int64_t j = s; j > e; j += step) idx.push_back(j);
      x = x.index_select(a, at::tensor(idx, at::kLong));
    }
  }
  return {x};
}

Tensors flatten(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  int64_t axis = n.attr_int("axis", 1);
  if (axis < 0) axis += x.dim();
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.size(d);
  return {x.reshape({outer, -1})};
}

Tensors reshape(const ir::Node& n, const Tensors& in, const KernelContext&) {
  auto shape = n.attr_ints("shape");
  bool allowzero = n.attr_int("allowzero", 0) != 0;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == 0 && !allowzero) shape[i] = in[0].size(static_cast<int64_t>(i));
  return {in[0].reshape(shape)};
}

Tensors transpose(const ir::Node& n, const Tensors& in, const KernelContext&) {
  auto perm = n.attr_ints("perm", {});
  if (perm.empty())
    for (int64_t i = in[0].dim(); i-- > 0;) perm.push_back(i);
  return {in[0].permute(perm)};
}

std::vector<int64_t> norm_axes(const ir::Node& n, int64_t rank) {
  auto axes = n.attr_ints("axes", {});
  for (auto& a : axes)
    if (a < 0) a += rank;
  std::sort(axes.begin(), axes.end());
  return axes;
}

Tensors squeeze(const ir::Node& n, const Tensors& in, const KernelContext&) {
  auto axes = norm_axes(n, in[0].dim());
  if (axes.empty()) return {in[0].squeeze()};
  at::Tensor x = in[0];
  for (size_t i = axes.size(); i-- > 0;) x = x.squeeze(axes[i]);
  return {x};
}

Tensors unsqueeze(const ir::Node& n, const Tensors& in, const KernelContext&) {
  auto axes = norm_axes(n, in[0].dim() + static_cast<int64_t>(n.attr_ints("axes").size()));
  at::Tensor x = in[0];
  for (auto a : axes) x = x.unsqueeze(a);
  return {x};
}

Tensors reduce(const ir::Node& n, const Tensors& in, const KernelContext&) {
  auto axes = norm_axes(n, in[0].dim());
  if (axes.empty())
    for (int64_t i = 0; i < in[0].dim(); ++i) axes.push_back(i);
  bool keep = n.attr_int("keepdims", 1) != 0;
  // Integer reductions keep the input's type (libtorch sums int32 into int64); an integer mean is
  // the sum divided by the count, truncated toward zero, as ONNX Runtime computes it.
  if (at::isIntegralType(in[0].scalar_type(), /*includeBool=*/false) &&
      (n.op == "ReduceMean" || n.op == "ReduceSum")) {
    at::Tensor sum = at::sum(in[0], axes, keep, at::kLong);
    if (n.op == "ReduceMean") {
      int64_t count = 1;
      for (auto a : axes) count *= in[0].size(a);
      if (count == 0)
        throw InputError(msg("node '", n.name, "' (ReduceMean): integer mean over an empty axis"));
      sum = at::div(sum, count, "trunc");
    }
    return {sum.to(in[0].scalar_type())};
  }
  if (n.op == "ReduceMean") return {at::mean(in[0], axes, keep)};
  if (n.op == "ReduceSum") return {at::sum(in[0], axes, keep)};
  if (n.op == "ReduceMax") return {at::amax(in[0], axes, keep)};
  return {at::amin(in[0], axes, keep)};
}

Tensors pad(const ir::Node& n, const Tensors& in, const KernelContext&) {
  const at::Tensor& x = in[0];
  auto pads = n.attr_ints("pads");
  int64_t r = x.dim();
  std::string mode = n.attr_str("mode", "constant");
  if (mode == "constant") {
    std::vector<int64_t> torch_pad;
    for (int64_t i = r; i-- > 0;) torch_pad.insert(torch_pad.end(), {pads[i], pads[i + r]});
    return {at::constant_pad_nd(x, torch_pad, n.attr_float("value", 0.0))};
  }
  // reflect / edge: PyTorch pads only trailing spatial dims of 3-D/4-D/5-D inputs.
  for (int64_t i = 0; i < 2 && i < r; ++i)
    if (pads[i] || pads[i + r])
      throw UnsupportedError(msg("node '", n.name, "' (Pad): mode '", mode,
                                 "' on the batch or channel axis is not supported (only spatial axes)"));
  std::vector<int64_t> torch_pad;
  for (int64_t i = r; i-- > 2;) torch_pad.insert(torch_pad.end(), {pads[i], pads[i + r]});
  if (mode == "reflect") {
    if (r == 3) return {at::reflection_pad1d(x, torch_pad)};
    if (r == 4) return {at::reflection_pad2d(x, torch_pad)};
    return {at::reflection_pad3d(x, torch_pad)};
  }
  if (mode == "edge") {
    if (r == 3) return {at::replication_pad1d(x, torch_pad)};
    if (r == 4) return {at::replication_pad2d(x, torch_pad)};
    return {at::replication_pad3d(x, torch_pad)};
  }
  throw UnsupportedError(msg("node '", n.name, "' (Pad): unknown mode '", mode, "' (valid: constant, reflect, edge)"));
}

std::map<std::string, Kernel> core_kernels() {
  std::map<std::string, Kernel> k;
  k["Constant"] = constant;
  k["Conv"] = conv;
  k["ConvTranspose"] = conv_transpose;
  k["Linear"] = linear;
  k["MatMul"] = matmul;
  k["BatchNorm"] = batchnorm;
  k["LayerNorm"] = layernorm;
  for (const char* op : {"Relu", "Relu6", "LeakyRelu", "Gelu", "Silu", "Sigmoid", "Tanh", "HardSwish",
                         "HardSigmoid", "Elu", "Selu", "Softplus", "Softsign", "Clip", "Exp", "Log", "Sqrt", "Abs",
                         "Neg", "Reciprocal", "Erf", "Sign", "Floor", "Ceil", "Shrink", "Dropout", "Identity"})
    k[op] = unary;
  k["PRelu"] = prelu;
  k["Softmax"] = k["LogSoftmax"] = softmax;
  k["MaxPool"] = maxpool;
  k["AvgPool"] = avgpool;
  k["LRN"] = lrn;
  k["GlobalAvgPool"] = k["GlobalMaxPool"] = global_pool;
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}) k[op] = binary;
  k["Concat"] = concat;
  k["Split"] = split;
  k["Slice"] = slice;
  k["Flatten"] = flatten;
  k["Reshape"] = reshape;
  k["Transpose"] = transpose;
  k["Squeeze"] = squeeze;
  k["Unsqueeze"] = unsqueeze;
  for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"}) k[op] = reduce;
  k["Pad"] = pad;
  return k;
}

}  // namespace

const Kernel* find_kernel(const std::string& op) {
  static const std::map<std::string, Kernel> kernels = [] {
    auto all = core_kernels();
    for (auto& [name, kernel] : extra_kernels()) all[name] = kernel;
    return all;
  }();
  auto it = kernels.find(op);
  return it == kernels.end() ? nullptr : &it->second;
}

}  // namespace squeeze::exec
