#include "squeeze/exec/fixed.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>

#include "squeeze/util/error.h"

namespace squeeze::exec {

bool is_fixed_layer(const ir::Node& n) { return n.has_attr(kFixedAccumAttr); }

FixedLayerTypes fixed_layer_types(const ir::Node& n) {
  auto where = [&](const std::string& what) { return msg("node '", n.name, "' ", what); };
  auto attr = [&](const char* key) {
    if (!n.has_attr(key)) throw GraphError(where(msg("is a fixed-point layer without attribute ", key)));
    try {
      return fixed::parse_type(n.attr_str(key, ""), where(msg("attribute ", key)));
    } catch (const ConfigError& e) {
      throw GraphError(e.what());
    }
  };
  FixedLayerTypes t;
  t.input = attr(kFixedInputAttr);
  t.accum = attr(kFixedAccumAttr);
  auto type_of = [](const std::optional<ir::QuantSpec>& q) -> std::optional<fixed::FixedType> {
    if (!q) return std::nullopt;
    return fixed::of_spec(*q);
  };
  if (!n.has_param("weight") || !type_of(n.param("weight").qspec))
    throw GraphError(where("is a fixed-point layer whose weight has no fixed-point type"));
  t.weight = *type_of(n.param("weight").qspec);
  if (n.has_param("bias")) {
    const ir::Param& b = n.param("bias");
    t.bias = type_of(b.qspec);
    if (!t.bias) throw GraphError(where("is a fixed-point layer whose bias has no fixed-point type"));
  }
  if (!type_of(n.out_qspec))
    throw GraphError(where("is a fixed-point layer without a fixed-point result type (out_qspec)"));
  t.result = *type_of(n.out_qspec);
  return t;
}

at::Tensor fixed_linear(const ir::Node& n, const at::Tensor& x) {
  at::NoGradGuard no_grad;
  const FixedLayerTypes t = fixed_layer_types(n);
  const at::Tensor& w = n.param("weight").value;
  const int64_t out = w.size(0), in = w.size(1);
  at::Tensor mx = fixed::from_float(x.reshape({-1, in}), t.input);  // [B, in]
  at::Tensor mw = fixed::from_float(w, t.weight);                    // [out, in]
  const int prod_frac = t.input.frac_bits() + t.weight.frac_bits();
  at::Tensor mb = t.bias ? fixed::convert(fixed::from_float(n.param("bias").value, *t.bias), t.bias->frac_bits(), t.accum)
                         : at::zeros({out}, at::kLong);
  const bool modular = t.accum.overflow == fixed::OMode::kWrap && t.accum.sat_bits == 0;
  const int64_t rows = mx.size(0);
  const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, out * in));
  std::vector<at::Tensor> parts;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    at::Tensor xs = mx.narrow(0, r0, std::min(chunk, rows - r0));
    at::Tensor p = fixed::convert(xs.unsqueeze(1) * mw.unsqueeze(0), prod_frac, t.accum);  // [c, out, in]
    at::Tensor acc;
    if (modular) {
      // Wrapping is addition modulo 2^W: the order of the sum does not matter (int64 sums wrap
      // modulo 2^64, a multiple of 2^W).
      acc = fixed::apply_overflow(p.sum(-1) + mb, t.accum);
    } else {
      acc = mb.unsqueeze(0).expand({xs.size(0), out}).contiguous();
      for (int64_t j = 0; j < in; ++j) acc = fixed::apply_overflow(acc + p.select(2, j), t.accum);
    }
    parts.push_back(fixed::convert(acc, t.accum.frac_bits(), t.result));
  }
  at::Tensor y = fixed::to_float(parts.size() == 1 ? parts[0] : at::cat(parts, 0), t.result);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  return y.reshape(shape);
}

}  // namespace squeeze::exec
