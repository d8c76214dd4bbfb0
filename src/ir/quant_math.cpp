#include "squeeze/ir/quant_math.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "squeeze/ir/fixed_point.h"
#include "squeeze/util/error.h"

namespace squeeze::quant {

QRange qrange(const ir::QuantSpec& spec) {
  if (auto t = fixed::of_spec(spec)) return {t->min_mantissa(), t->max_mantissa()};
  if (spec.bits < 2 || spec.bits > 16)
    throw ConfigError(msg("quantization bits: ", spec.bits, " is out of range (expected 2..16)"));
  const int bits = grid_bits(spec);
  QRange r;
  if (spec.is_signed) {
    r.qmax = (int64_t(1) << (bits - 1)) - 1;
    r.qmin = spec.narrow_range ? -r.qmax : -r.qmax - 1;
  } else {
    r.qmin = spec.narrow_range ? 1 : 0;
    r.qmax = (int64_t(1) << bits) - 1;
  }
  return r;
}

int grid_bits(const ir::QuantSpec& spec) { return spec.reduce_range ? spec.bits - 1 : spec.bits; }

void validate_spec(const ir::QuantSpec& spec, const std::string& where) {
  if (fixed::is_fixed(spec)) {
    const fixed::FixedType t = fixed::parse_type(spec.rounding, where);
    if (spec.bits != t.width || spec.is_signed != t.is_signed || spec.axis >= 0)
      throw ConfigError(msg(where, ": a fixed-point spec must have bits = W, the type's signedness and axis -1"));
    return;
  }
  if (spec.bits < 2 || spec.bits > 16)
    throw ConfigError(msg(where, ": bits ", spec.bits, " is out of range (expected 2..16)"));
  if (spec.reduce_range && spec.bits < 3)
    throw ConfigError(msg(where, ": reduce_range needs at least 3 bits (got ", spec.bits, ")"));
  if (spec.rounding != "half_even" && spec.rounding != "half_up")
    throw ConfigError(msg(where, ": rounding '", spec.rounding, "' is not valid (valid: half_even, half_up)"));
  if (spec.scale.defined()) {
    int64_t n = spec.scale.numel();
    if (spec.axis < 0 && n != 1)
      throw ConfigError(msg(where, ": a per-tensor spec has ", n, " scales (expected 1)"));
    if (spec.zero_point.defined() && spec.zero_point.numel() != n)
      throw ConfigError(msg(where, ": ", n, " scales but ", spec.zero_point.numel(), " zero points"));
  }
}

namespace {

double pow2_ceil(double s) { return std::ldexp(1.0, static_cast<int>(std::ceil(std::log2(s)))); }

int64_t round_int(double v, const std::string& rounding) {
  return static_cast<int64_t>(rounding == "half_up" ? std::floor(v + 0.5) : std::nearbyint(v));
}

// One channel's scale and zero point.
void qparams_one(const ir::QuantSpec& spec, const QRange& r, double lo, double hi, float* scale, int64_t* zp) {
  if (!std::isfinite(lo) || !std::isfinite(hi))
    throw InputError(msg("quantization: observed range [", lo, ", ", hi, "] is not finite"));
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  double s;
  int64_t z;
  if (spec.symmetric) {
    double amax = std::max(-lo, hi);
    double half = double((int64_t(1) << (grid_bits(spec) - 1)) - 1);
    s = amax / half;
    if (!(s > 0.0)) s = 1.0;
    if (spec.power_of_two) s = pow2_ceil(s);
    z = spec.is_signed ? 0 : (int64_t(1) << (grid_bits(spec) - 1));
  } else {
    s = (hi - lo) / double(r.qmax - r.qmin);
    if (!(s > 0.0)) s = 1.0;
    if (spec.power_of_two) s = pow2_ceil(s);
    z = r.qmin - round_int(lo / s, spec.rounding);
    z = std::clamp(z, r.qmin, r.qmax);
  }
  // The stored float32 scale must be > 0 even for tiny ranges.
  float sf = static_cast<float>(s);
  if (!(sf > 0.0f)) sf = std::numeric_limits<float>::min();
  *scale = sf;
  *zp = z;
}

}  // namespace

void choose_qparams(ir::QuantSpec& spec, const at::Tensor& min, const at::Tensor& max) {
  QRange r = qrange(spec);
  at::Tensor lo = min.detach().to(at::kDouble).reshape(-1).contiguous();
  at::Tensor hi = max.detach().to(at::kDouble).reshape(-1).contiguous();
  SQZ_ASSERT(lo.numel() == hi.numel(), "choose_qparams: min/max sizes");
  int64_t n = lo.numel();
  at::Tensor scale = at::empty({n}, at::kFloat), zp = at::empty({n}, at::kLong);
  for (int64_t i = 0; i < n; ++i)
    qparams_one(spec, r, lo.data_ptr<double>()[i], hi.data_ptr<double>()[i], scale.data_ptr<float>() + i,
                zp.data_ptr<int64_t>() + i);
  if (spec.axis < 0) {
    SQZ_ASSERT(n == 1, "choose_qparams: per-tensor spec with ", n, " ranges");
    scale = scale.reshape({});
    zp = zp.reshape({});
  }
  spec.scale = scale;
  spec.zero_point = zp;
}

void choose_qparams(ir::QuantSpec& spec, double min, double max) {
  choose_qparams(spec, at::scalar_tensor(min, at::kDouble), at::scalar_tensor(max, at::kDouble));
}

at::Tensor round_values(const at::Tensor& x, const std::string& rounding) {
  if (rounding == "half_up") return at::floor(x + 0.5);
  return at::round(x);  // nearbyint: half to even
}

namespace {
at::Tensor shaped(const at::Tensor& t, const ir::QuantSpec& spec, int64_t rank) {
  if (spec.axis < 0 || t.numel() == 1 || rank == 0) return t.reshape({});
  std::vector<int64_t> s(static_cast<size_t>(rank), 1);
  int64_t axis = spec.axis < rank ? spec.axis : rank - 1;
  s[static_cast<size_t>(axis)] = t.numel();
  return t.reshape(s);
}
}  // namespace

at::Tensor broadcast_scale(const ir::QuantSpec& spec, int64_t rank) {
  SQZ_ASSERT(spec.scale.defined(), "quantization spec without a scale");
  return shaped(spec.scale.to(at::kFloat), spec, rank);
}

at::Tensor broadcast_zero_point(const ir::QuantSpec& spec, int64_t rank) {
  if (!spec.zero_point.defined()) return at::zeros({}, at::kLong);
  return shaped(spec.zero_point.to(at::kLong), spec, rank);
}

at::Tensor quantize(const at::Tensor& x, const ir::QuantSpec& spec) {
  if (auto t = fixed::of_spec(spec)) return fixed::from_float(x, *t);
  QRange r = qrange(spec);
  at::Tensor s = broadcast_scale(spec, x.dim());
  at::Tensor z = broadcast_zero_point(spec, x.dim());
  at::Tensor v = round_values(x.detach().to(at::kFloat) / s, spec.rounding).to(at::kLong) + z;
  return at::clamp(v, r.qmin, r.qmax);
}

at::Tensor dequantize(const at::Tensor& q, const ir::QuantSpec& spec) {
  if (auto t = fixed::of_spec(spec)) return fixed::to_float(q, *t);
  at::Tensor s = broadcast_scale(spec, q.dim());
  at::Tensor z = broadcast_zero_point(spec, q.dim());
  return (q.to(at::kLong) - z).to(at::kFloat) * s;
}

at::Tensor fake_quantize(const at::Tensor& x, const ir::QuantSpec& spec) {
  if (auto t = fixed::of_spec(spec)) return fixed::fake_quantize(x, *t);
  bool grad = x.requires_grad() || (spec.scale.defined() && spec.scale.requires_grad());
  if (!grad) return dequantize(quantize(x, spec), spec);
  // Straight-through estimator: round() passes gradients unchanged, clamp zeroes them outside the
  // range. Written on x / scale so a scale that requires grad (LSQ) gets its gradient too.
  QRange r = qrange(spec);
  at::Tensor s = broadcast_scale(spec, x.dim());
  if (spec.scale.requires_grad()) s = shaped(spec.scale, spec, x.dim());
  at::Tensor z = broadcast_zero_point(spec, x.dim()).to(at::kFloat);
  at::Tensor v = at::clamp(x / s + z, double(r.qmin), double(r.qmax));
  at::Tensor vr = v + (round_values(v.detach(), spec.rounding) - v.detach());
  return (vr - z) * s;
}

void snap_to_grid(ir::Graph& g) {
  at::NoGradGuard no_grad;
  for (auto& n : g.nodes)
    for (auto& [key, p] : n.params) {
      if (!p.qspec || !p.value.is_floating_point()) continue;
      if (p.qspec->scale.defined()) p.qspec->scale = p.qspec->scale.detach().abs().clamp_min(1e-12).clone();
      at::Tensor v = p.value.detach();
      if (p.mask) v = v * *p.mask;
      p.value = fake_quantize(v, *p.qspec).contiguous();
    }
}

bool on_grid(const at::Tensor& x, const ir::QuantSpec& spec) {
  if (!spec.scale.defined() || !x.is_floating_point()) return false;
  at::Tensor v = x.detach().to(at::kFloat);
  return at::equal(dequantize(quantize(v, spec), spec), v);
}

std::string describe(const ir::QuantSpec& spec) {
  if (fixed::is_fixed(spec)) return spec.rounding;
  std::ostringstream o;
  o << (spec.is_signed ? "int" : "uint") << spec.bits;
  o << (spec.axis >= 0 ? " per-channel" : " per-tensor");
  o << (spec.symmetric ? " symmetric" : " affine");
  if (spec.narrow_range) o << " narrow";
  if (spec.reduce_range) o << " (" << grid_bits(spec) << "-bit grid)";
  if (spec.power_of_two) o << " pow2";
  return o.str();
}

}  // namespace squeeze::quant
