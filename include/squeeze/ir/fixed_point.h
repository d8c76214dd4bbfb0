// Fixed-point types with the semantics of Vivado/Vitis HLS ap_fixed<W,I,Q,O,N> / ap_ufixed (AMD
// UG1399), as hls4ml writes them: the scalar reference arithmetic on integer mantissas (header
// only, no libtorch: a code generator mirrors these functions line by line), the parser for type
// strings, and vectorised at::Tensor versions that are exactly equal to the scalar ones.
//
// A value of type T is an integer mantissa m with value m * 2^-F, F = W - I (the fractional bits;
// I may be negative or larger than W). Signed: m in [-2^(W-1), 2^(W-1)-1]; unsigned: [0, 2^W-1].
//
// Assignment of an exact value v (a double, or a mantissa with more fractional bits) to type T
// happens in two steps, as in Xilinx's ap_fixed_base.h:
//   1. quantization (Q) to F fractional bits. Let t = floor(v * 2^F) (two's-complement truncation),
//      qb the first dropped bit (the "half"), r whether any later dropped bit is set, s = v < 0;
//      the result is t + 1 when
//        AP_TRN        never                 (floor, the default)
//        AP_TRN_ZERO   s && (qb || r)        (toward zero)
//        AP_RND        qb                    (nearest, ties toward +inf)
//        AP_RND_ZERO   qb && (s || r)        (nearest, ties toward zero)
//        AP_RND_MIN_INF qb && r              (nearest, ties toward -inf)
//        AP_RND_INF    qb && (!s || r)       (nearest, ties away from zero)
//        AP_RND_CONV   qb && (lsb(t) || r)   (nearest, ties to even)
//   2. overflow (O) of the rounded integer R against [min, max]:
//        AP_WRAP       R modulo 2^W (two's complement for signed); with N > 0 saturation bits, on
//                      overflow the sign bit is set to R's sign and the N-1 bits below it to the
//                      complement of the sign (unsigned: the N top bits set), as ap_fixed_base.h
//        AP_SAT        clamp to [min, max]
//        AP_SAT_ZERO   0 when R is out of range
//        AP_SAT_SYM    clamp to [-max, max] for signed types (R = min counts as underflow, so -2^(W-1)
//                      never appears: QONNX's narrow range); [0, max] for unsigned types
//   Worked examples (UG1399): ap_fixed<3,2,AP_RND> of 1.25 is 1.5, of -1.25 is -1.0;
//   ap_fixed<4,4,AP_RND,AP_SAT> of 19 is 7 and of -19 is -8; with AP_SAT_SYM -19 gives -7.
//
// Limits (checked by validate(), ConfigError naming `where`): 1 <= W <= 62 (64-bit mantissas with
// room for one addition), -64 <= F <= 64, 0 <= N <= W, AP_SAT_SYM on a signed type needs W >= 2.
// NaN converts to 0 (ap_fixed leaves it undefined); +-inf overflow like any large value.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::fixed {

enum class QMode { kTrn, kTrnZero, kRnd, kRndZero, kRndMinInf, kRndInf, kRndConv };
enum class OMode { kWrap, kSat, kSatZero, kSatSym };

struct FixedType {
  int width = 16;        // W
  int int_bits = 6;      // I (including the sign bit for signed types)
  bool is_signed = true; // ap_fixed (true) or ap_ufixed (false)
  QMode quant = QMode::kTrn;
  OMode overflow = OMode::kWrap;
  int sat_bits = 0;      // N, used by AP_WRAP only

  int frac_bits() const { return width - int_bits; }
  int64_t min_mantissa() const {
    if (!is_signed) return 0;
    int64_t lo = -(int64_t(1) << (width - 1));
    return overflow == OMode::kSatSym ? lo + 1 : lo;
  }
  int64_t max_mantissa() const {
    return is_signed ? (int64_t(1) << (width - 1)) - 1 : (int64_t(1) << width) - 1;
  }
  double lsb() const { return std::ldexp(1.0, -frac_bits()); }  // 2^-F
  bool operator==(const FixedType& o) const {
    return width == o.width && int_bits == o.int_bits && is_signed == o.is_signed && quant == o.quant &&
           overflow == o.overflow && sat_bits == o.sat_bits;
  }
  bool operator!=(const FixedType& o) const { return !(*this == o); }
};

// Parses "ap_fixed<W,I[,Q[,O[,N]]]>", "ap_ufixed<...>", "ap_int<W>" (= ap_fixed<W,W>), "ap_uint<W>",
// and QKeras' "quantized_bits(bits, integer[, symmetric[, keep_negative[, alpha]]])" (QKeras'
// argument order; keywords bits=, integer=, symmetric=, keep_negative=, alpha= too), which maps to
//   keep_negative 1 (default): ap_fixed<bits, integer+1, AP_RND_CONV, AP_SAT>   (AP_SAT_SYM if symmetric)
//   keep_negative 0:           ap_ufixed<bits, integer, AP_RND_CONV, AP_SAT>
// (QKeras rounds with tf.round, half to even, and clips to the range: hls4ml reads it the same way.)
// Spaces are ignored. Throws ConfigError naming `where`, the text, what is wrong and what is valid.
FixedType parse_type(const std::string& text, const std::string& where);
// Canonical spelling: "ap_fixed<16,6>" with the defaults left out, or "ap_ufixed<8,3,AP_RND,AP_SAT>".
std::string to_string(const FixedType& t);
const char* to_string(QMode q);  // "AP_TRN"...
const char* to_string(OMode o);  // "AP_WRAP"...
// Throws ConfigError naming `where` when the type is outside the limits above.
void validate(const FixedType& t, const std::string& where);

// ---- scalar reference (inline: the semantics a code generator mirrors) ----------------------

// Whether the quantization step adds one to the truncated value t (see the table above).
inline bool round_up(QMode q, int64_t t, bool qb, bool r, bool negative) {
  switch (q) {
    case QMode::kTrn: return false;
    case QMode::kTrnZero: return negative && (qb || r);
    case QMode::kRnd: return qb;
    case QMode::kRndZero: return qb && (negative || r);
    case QMode::kRndMinInf: return qb && r;
    case QMode::kRndInf: return qb && (!negative || r);
    case QMode::kRndConv: return qb && ((t & 1) != 0 || r);
  }
  return false;
}

// Step 2 given the outcome: `low` holds the low W bits of the exact rounded integer R (used
// when wrapping), `over` / `under` whether R is above / below the type's range.
inline int64_t overflow_result(uint64_t low, bool over, bool under, const FixedType& t) {
  const int64_t lo = t.is_signed ? -(int64_t(1) << (t.width - 1)) : 0, hi = t.max_mantissa();
  switch (t.overflow) {
    case OMode::kSat: return over ? hi : lo;
    case OMode::kSatZero: return 0;
    case OMode::kSatSym: return over ? hi : (t.is_signed ? lo + 1 : 0);
    case OMode::kWrap: break;
  }
  const uint64_t mask = t.width >= 64 ? ~uint64_t(0) : (uint64_t(1) << t.width) - 1;
  uint64_t u = low & mask;
  if (t.sat_bits > 0) {
    if (t.is_signed) {
      const uint64_t sign = uint64_t(1) << (t.width - 1);
      u = under ? (u | sign) : (u & ~sign);
      if (t.sat_bits > 1) {  // bits [W-N, W-2] take the complement of the sign
        const uint64_t range = (sign - 1) & ~((uint64_t(1) << (t.width - t.sat_bits)) - 1);
        u = under ? (u & ~range) : (u | range);
      }
    } else {  // bits [W-N, W-1] set, as ap_fixed_base.h does for unsigned types
      u |= mask & ~((uint64_t(1) << (t.width - t.sat_bits)) - 1);
    }
  }
  if (t.is_signed && ((u >> (t.width - 1)) & 1)) return static_cast<int64_t>(u | ~mask);
  return static_cast<int64_t>(u);
}

// Step 2 on an exact rounded integer R.
inline int64_t apply_overflow(int64_t R, const FixedType& t) {
  const int64_t lo = t.is_signed ? -(int64_t(1) << (t.width - 1)) : 0, hi = t.max_mantissa();
  const bool over = R > hi;
  const bool under = R < lo || (t.overflow == OMode::kSatSym && t.is_signed && R == lo);
  if (!over && !under) return R;
  return overflow_result(static_cast<uint64_t>(R), over, under, t);
}

// A mantissa m with `from_frac` fractional bits, assigned to type t (quantization then overflow).
inline int64_t convert(int64_t m, int from_frac, const FixedType& t) {
  const int shift = from_frac - t.frac_bits();
  if (shift >= 64) {  // every bit of m lies below the half bit, or is the half bit's sign extension
    const bool negative = m < 0;
    const int64_t tr = negative ? -1 : 0;
    const bool qb = negative;
    const bool r = negative ? (shift >= 65 || (m & INT64_MAX) != 0) : m != 0;
    return apply_overflow(tr + (round_up(t.quant, tr, qb, r, negative) ? 1 : 0), t);
  }
  if (shift > 0) {
    const int64_t tr = m >> shift;  // arithmetic shift: floor
    const uint64_t dropped = static_cast<uint64_t>(m) & ((uint64_t(1) << shift) - 1);
    const bool qb = (dropped >> (shift - 1)) & 1;
    const bool r = (dropped & ((uint64_t(1) << (shift - 1)) - 1)) != 0;
    return apply_overflow(tr + (round_up(t.quant, tr, qb, r, m < 0) ? 1 : 0), t);
  }
  if (shift == 0) return apply_overflow(m, t);
  const int left = -shift;
  // m * 2^left is exact below 2^62 in magnitude; beyond, it overflows every type (W <= 62) and
  // wrapping keeps its low bits.
  if (m == 0) return 0;
  const int64_t limit = left >= 62 ? 1 : (int64_t(1) << (62 - left));
  if (m > -limit && m < limit) return apply_overflow(m * (int64_t(1) << left), t);
  const uint64_t low = left >= 64 ? 0 : static_cast<uint64_t>(m) << left;
  return overflow_result(low, m > 0, m < 0, t);
}

// A real number assigned to type t. v * 2^F is exact in double; from 2^62 in magnitude on it is
// an overflow (its low W bits, for wrapping, are exact in double too).
inline int64_t from_double(double v, const FixedType& t) {
  if (std::isnan(v)) return 0;
  const double s = std::ldexp(v, t.frac_bits());
  if (!(std::fabs(s) < 4611686018427387904.0)) {  // 2^62
    uint64_t low = 0;
    if (std::isfinite(s)) {
      const double mod = std::ldexp(1.0, t.width);
      double rem = std::fmod(s, mod);  // exact
      if (rem < 0) rem += mod;
      low = static_cast<uint64_t>(rem);
    }
    return overflow_result(low, s > 0, s < 0, t);
  }
  double fl;
  bool qb, r;
  if (s >= 0) {
    fl = std::floor(s);
    const double frac = s - fl;  // exact for s >= 0
    qb = frac >= 0.5;
    r = qb ? frac > 0.5 : frac > 0.0;
  } else {
    // For s < 0 the dropped part s - floor(s) = 1 - frac(|s|) may round in double: decide on
    // frac(|s|), which is exact.
    const double a = -s, ia = std::floor(a), fa = a - ia;
    fl = fa == 0.0 ? -ia : -ia - 1.0;  // exact: fa != 0 only below 2^52
    qb = fa > 0.0 && fa <= 0.5;
    r = fa > 0.0 && (fa <= 0.5 ? fa < 0.5 : true);
  }
  const int64_t tr = static_cast<int64_t>(fl);
  return apply_overflow(tr + (round_up(t.quant, tr, qb, r, v < 0) ? 1 : 0), t);
}

inline double to_double(int64_t m, const FixedType& t) { return std::ldexp(static_cast<double>(m), -t.frac_bits()); }

// hls4ml's accumulator for a sum of n products of `input` x `weight` (plus a bias when given):
//   W = Ww + Wx + ceil(log2 n), I = Iw + Ix + ceil(log2 n), signed if either operand is;
//   with a bias one more integer bit (I = max(I, Ib) + 1) and F = max(F, Fb) fractional bits.
// Modes AP_TRN / AP_WRAP: the sum cannot overflow or lose a bit, so they never act. Throws
// ConfigError naming `where` when the width exceeds 62 bits (give the accumulator explicitly).
FixedType infer_accumulator(const FixedType& input, const FixedType& weight, const FixedType* bias, int64_t n,
                            const std::string& where);

// ---- as an ir::QuantSpec ----------------------------------------------------------------------
//
// A tensor of a fixed-point type carries an ir::QuantSpec whose `rounding` is the type's text
// (to_string: "ap_fixed<16,6>", "ap_ufixed<8,3,AP_RND,AP_SAT>") instead of half_even / half_up,
// with bits = W, is_signed, scale = 2^-(W-I) (scalar float32), zero_point 0, axis -1, symmetric,
// power_of_two, narrow_range = AP_SAT_SYM on a signed type. quant::quantize / dequantize /
// fake_quantize / qrange / describe / validate_spec (ir/quant_math.h) then follow the type's
// modes, and .sqz checkpoints keep it as they keep any rounding (old readers see an unknown
// rounding and refuse the spec rather than misread it).
ir::QuantSpec to_spec(const FixedType& t);
// The type of a spec made by to_spec, or nullopt for integer-grid specs.
std::optional<FixedType> of_spec(const ir::QuantSpec& spec);
inline bool is_fixed(const ir::QuantSpec& spec) { return spec.rounding.compare(0, 3, "ap_") == 0; }

// ---- vectorised (exactly equal to the scalar functions above) ---------------------------------

// Mantissas (int64) of a floating tensor assigned to t.
at::Tensor from_float(const at::Tensor& x, const FixedType& t);
// int64 mantissas with `from_frac` fractional bits assigned to t (int64 result).
at::Tensor convert(const at::Tensor& m, int from_frac, const FixedType& t);
// Step 2 alone on exact integers (|R| < 2^62).
at::Tensor apply_overflow(const at::Tensor& R, const FixedType& t);
// Values of mantissas as float32 (exact for W <= 24) or float64 (`dtype`).
at::Tensor to_float(const at::Tensor& m, const FixedType& t, at::ScalarType dtype = at::kFloat);
// to_float(from_float(x)) with a straight-through gradient when x requires grad: identity where
// the value did not overflow, zero where it did (clipped STE); for quantization-aware training.
at::Tensor fake_quantize(const at::Tensor& x, const FixedType& t);

}  // namespace squeeze::fixed
