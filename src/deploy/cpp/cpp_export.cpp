// The C++ generator (deploy/cpp_export.h).
//
// The arithmetic the generated code performs, per mode:
//
// fixed: values are int64 mantissas of a known ap_fixed type. The prelude of model.cpp is
//   ir/fixed_point.h's scalar reference (round_up, overflow_result, apply_overflow, convert,
//   from_double) transcribed over a constexpr struct Fx, so every mode behaves as in squeeze.
//   Graph input: from_double(float input) to the type of the Identity "<input>_fixed" (or of the
//   first layer's input). A Linear, as exec::fixed_linear:
//     x_j  = convert(m_j, F_prev, input)           (skipped when the previous type is the input type)
//     acc  = convert(bias mantissa, Fb, accum)     (a constant, computed here)
//     p_ij = convert(x_j * w_ij, Fx + Fw, accum)
//     AP_WRAP, N = 0:  acc = apply_overflow(acc + sum_j p_ij) with the sum modulo 2^64 (uint64),
//                      exactly as the executor's int64 tensor sum; when the product needs no
//                      conversion (F_accum = Fx + Fw, |x| max * |w| max fits the accumulator and
//                      the whole sum fits int64) the products are summed as they are.
//     otherwise:       acc = apply_overflow(acc + p_ij) for j in increasing order.
//     y_i = convert(acc, F_accum, result)
//   Zero weights are skipped: their product converts to 0, and adding 0 to an in-range
//   accumulator leaves it unchanged in every mode. Relu: max(m, 0), then convert to the Relu's
//   result type when it has one. Outputs: m * 2^-F as float (exact: value types have <= 24 bits).
// int8: uint8 activations q with scale s and zero point z. Graph input: q = clamp(rint(x / s_f) +
//   z, 0, 255) in float32 (exec::to_quint8). A Linear: acc_i = sum_j (q_j - z_x) * w_ij in
//   int32 with the integer weights of its grid; then oneDNN's requantization in float32 with the
//   scales as libtorch hands them to it (reciprocals, float):
//     S_i = (1/s_x) * (1/s_w,i),  M_i = (1/s_y) / S_i,  B_i = b_i * S_i
//     q_y = clamp(rint(((float)acc_i + B_i) * M_i + z_y), 0, 255)
//   each operation rounded to float32 in this order (no fused multiply-add: measured against
//   libtorch 1.13's oneDNN kernels, 0 differences in 2.56 million outputs over random scales and
//   zero points, where rint(...) + z_y or a rounded integer bias differ in a few).
//   Relu: max(q, z). Outputs: (float)(q - z) * (float)s.
// float: y_i = b_i + sum_j w_ij x_j in float32, j increasing (non-zero weights only).
#include "squeeze/deploy/cpp_export.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "squeeze/exec/executor.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/exec/int8.h"
#include "squeeze/ir/fixed_point.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/strings.h"

namespace squeeze::deploy {

namespace fs = std::filesystem;

void CppExportOptions::validate() const {
  if (unroll != "auto" && unroll != "always" && unroll != "never")
    throw ConfigError(msg("cpp export: unroll '", unroll, "' is not valid (valid: auto, always, never)"));
  if (unroll_max_nonzeros < 0)
    throw ConfigError(msg("cpp export: unroll_max_nonzeros ", unroll_max_nonzeros, " must be >= 0"));
  if (golden_count < 1 || golden_count > 1000000)
    throw ConfigError(msg("cpp export: golden count ", golden_count, " is out of range (valid: 1 to 1000000)"));
  if (!name.empty()) {
    bool ok = std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_';
    for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
    if (!ok) throw ConfigError(msg("cpp export: name '", name, "' is not a C++ identifier (letters, digits, _)"));
  }
}

namespace {

enum class Arith { kFloat, kFixed, kInt8 };

const char* arith_name(Arith a) { return a == Arith::kFixed ? "fixed" : a == Arith::kInt8 ? "int8" : "float"; }

bool pass_through(const std::string& op) {
  return op == "Identity" || op == "Dropout" || op == "Flatten" || op == "Reshape";
}

bool is_fixed_spec(const std::optional<ir::QuantSpec>& q) { return q && fixed::is_fixed(*q); }

// The graph's nodes in chain order, with the arithmetic; throws naming the first problem.
struct Plan {
  Arith arith = Arith::kFloat;
  std::vector<const ir::Node*> chain;
  bool softmax_last = false;
  int64_t in_size = 1, out_size = 1;
};

Plan make_plan(const ir::Graph& g) {
  Plan p;
  if (g.inputs.size() != 1 || g.outputs.size() != 1)
    throw UnsupportedError(msg("cpp export: the graph has ", g.inputs.size(), " inputs and ", g.outputs.size(),
                               " outputs; the generator compiles one input and one output"));
  std::string v = g.inputs[0].name;
  const ir::Shape& in_shape = g.inputs[0].shape;
  for (size_t i = 1; i < in_shape.size(); ++i) p.in_size *= in_shape[i];
  if (in_shape.size() < 2 || p.in_size <= 0)
    throw UnsupportedError(msg("cpp export: input '", v, "' has shape ", ir::shape_str(in_shape),
                               "; the generator needs a fixed sample shape"));
  bool any_fixed = false, any_int8 = false, any_float_linear = false;
  std::string fixed_node, int8_node, float_node;
  for (const ir::Node& n : g.nodes) {
    auto where = msg("cpp export: node '", n.name, "' (", n.op, ")");
    if (n.inputs.empty() || n.inputs[0] != v || n.outputs.size() != 1)
      throw UnsupportedError(msg(where, " is not part of a single chain from the input to the output; the generator "
                                        "compiles chains of Linear, Relu, Identity, Dropout, Flatten, Reshape and a "
                                        "final Softmax"));
    if (p.softmax_last) throw UnsupportedError(msg(where, " follows a Softmax; Softmax must be the last node"));
    if (n.op == "Linear") {
      if (n.inputs.size() != 1 || !n.has_param("weight") || n.param("weight").value.dim() != 2)
        throw UnsupportedError(msg(where, " has no 2-D weight parameter (a MatMul of two values is not supported)"));
      if (exec::is_fixed_layer(n)) {
        any_fixed = true, fixed_node = n.name;
      } else if (n.param("weight").qspec || n.out_qspec) {
        std::string plan = quant::planned_execution(g, n);
        if (plan != "int8")
          throw UnsupportedError(msg(where, " is quantized but runs '", plan,
                                     "' in squeeze's executor; the generator reproduces the int8 kernels (8-bit "
                                     "unsigned activations in and out, signed weights of 2..8 bits) and fixed-point "
                                     "layers (method fixed_point) only"));
        any_int8 = true, int8_node = n.name;
      } else {
        any_float_linear = true, float_node = n.name;
      }
    } else if (n.op == "Relu") {
      if (n.inputs.size() != 1) throw UnsupportedError(msg(where, " has more than one input"));
    } else if (n.op == "Softmax") {
      p.softmax_last = true;
      const ir::Shape& s = g.shape_of(n.inputs[0]);
      int64_t axis = n.attr_int("axis", -1);
      if (axis != -1 && axis != static_cast<int64_t>(s.size()) - 1)
        throw UnsupportedError(msg(where, " is over axis ", axis, "; the generator computes Softmax over the last axis"));
    } else if (!pass_through(n.op)) {
      throw UnsupportedError(msg(where, " is not supported by the C++ generator (supported: Linear, Relu, Identity, "
                                        "Dropout, Flatten, Reshape, Softmax at the end)"));
    }
    if (n.out_qspec && n.op != "Linear" && n.op != "Relu" && n.op != "Identity")
      throw UnsupportedError(msg(where, " carries an output quantization spec, which the generator only handles on "
                                        "Linear, Relu and Identity nodes"));
    p.chain.push_back(&n);
    v = n.outputs[0];
  }
  if (v != g.outputs[0])
    throw UnsupportedError(msg("cpp export: graph output '", g.outputs[0], "' is not the end of the node chain"));
  if (int(any_fixed) + int(any_int8) + int(any_float_linear) > 1) {
    std::string a = any_fixed ? "fixed-point ('" + fixed_node + "')" : "int8 ('" + int8_node + "')";
    std::string b = any_float_linear ? "float ('" + float_node + "')" : "int8 ('" + int8_node + "')";
    throw UnsupportedError(msg("cpp export: the graph mixes ", a, " and ", b,
                               " Linear layers; the generator needs one arithmetic for every layer"));
  }
  p.arith = any_fixed ? Arith::kFixed : any_int8 ? Arith::kInt8 : Arith::kFloat;
  const ir::Shape& os = g.shape_of(v);
  for (size_t i = 1; i < os.size(); ++i) p.out_size *= os[i];
  // Value specs that the arithmetic cannot carry.
  for (const ir::Node* n : p.chain) {
    if (!n->out_qspec) continue;
    bool fx = is_fixed_spec(n->out_qspec);
    if ((p.arith == Arith::kFixed) != fx)
      throw UnsupportedError(msg("cpp export: node '", n->name, "' (", n->op, ") has a ",
                                 fx ? "fixed-point" : "integer-grid", " output spec in a ", arith_name(p.arith),
                                 " graph; the generator needs one arithmetic throughout"));
  }
  return p;
}

// ---- code text helpers -------------------------------------------------------------------------

std::string flit(float f) {  // exact float literal
  if (f == 0.0f) return std::signbit(f) ? "-0.0f" : "0.0f";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%af", static_cast<double>(f));
  return buf;
}

std::string ilit(int64_t v) {
  if (v == INT64_MIN) return "INT64_MIN";
  return std::to_string(v) + (std::llabs(v) > 2147483647LL ? "LL" : "");
}

std::string fx_lit(const fixed::FixedType& t) {
  return msg("Fx{", t.width, ", ", t.int_bits, ", ", t.is_signed ? "true" : "false", ", ", static_cast<int>(t.quant),
             ", ", static_cast<int>(t.overflow), ", ", t.sat_bits, "}");
}

std::string identifier(const std::string& s) {
  std::string r;
  for (char c : s) r += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (r.empty() || std::isdigit(static_cast<unsigned char>(r[0]))) r = "m_" + r;
  return r;
}

// ir/fixed_point.h's scalar reference over a constexpr struct (QMode / OMode by their enum order).
const char* kFixedPrelude = R"(// ap_fixed arithmetic: squeeze's ir/fixed_point.h scalar reference, line by line (from_double with
// std::ldexp and std::floor replaced by the exact equivalents pow2 and floor62).
// Inlined at every call, so that each constant type folds its mode switches away.
#if defined(__GNUC__)
#define SQZ_INLINE inline __attribute__((always_inline))
#else
#define SQZ_INLINE inline
#endif

struct Fx {
  int width, int_bits;
  bool is_signed;
  int quant;     // 0 AP_TRN, 1 AP_TRN_ZERO, 2 AP_RND, 3 AP_RND_ZERO, 4 AP_RND_MIN_INF, 5 AP_RND_INF, 6 AP_RND_CONV
  int overflow;  // 0 AP_WRAP, 1 AP_SAT, 2 AP_SAT_ZERO, 3 AP_SAT_SYM
  int sat_bits;
  constexpr int frac_bits() const { return width - int_bits; }
  constexpr int64_t max_mantissa() const {
    return is_signed ? (int64_t(1) << (width - 1)) - 1 : (int64_t(1) << width) - 1;
  }
};

static SQZ_INLINE bool round_up(int q, int64_t t, bool qb, bool r, bool negative) {
  switch (q) {
    case 0: return false;
    case 1: return negative && (qb || r);
    case 2: return qb;
    case 3: return qb && (negative || r);
    case 4: return qb && r;
    case 5: return qb && (!negative || r);
    case 6: return qb && ((t & 1) != 0 || r);
  }
  return false;
}

static SQZ_INLINE int64_t overflow_result(uint64_t low, bool over, bool under, const Fx& t) {
  const int64_t lo = t.is_signed ? -(int64_t(1) << (t.width - 1)) : 0, hi = t.max_mantissa();
  switch (t.overflow) {
    case 1: return over ? hi : lo;
    case 2: return 0;
    case 3: return over ? hi : (t.is_signed ? lo + 1 : 0);
    default: break;
  }
  const uint64_t mask = t.width >= 64 ? ~uint64_t(0) : (uint64_t(1) << t.width) - 1;
  uint64_t u = low & mask;
  if (t.sat_bits > 0) {
    if (t.is_signed) {
      const uint64_t sign = uint64_t(1) << (t.width - 1);
      u = under ? (u | sign) : (u & ~sign);
      if (t.sat_bits > 1) {
        const uint64_t range = (sign - 1) & ~((uint64_t(1) << (t.width - t.sat_bits)) - 1);
        u = under ? (u & ~range) : (u | range);
      }
    } else {
      u |= mask & ~((uint64_t(1) << (t.width - t.sat_bits)) - 1);
    }
  }
  if (t.is_signed && ((u >> (t.width - 1)) & 1)) return static_cast<int64_t>(u | ~mask);
  return static_cast<int64_t>(u);
}

static SQZ_INLINE int64_t apply_overflow(int64_t R, const Fx& t) {
  const int64_t lo = t.is_signed ? -(int64_t(1) << (t.width - 1)) : 0, hi = t.max_mantissa();
  const bool over = R > hi;
  const bool under = R < lo || (t.overflow == 3 && t.is_signed && R == lo);
  if (!over && !under) return R;
  return overflow_result(static_cast<uint64_t>(R), over, under, t);
}

static SQZ_INLINE int64_t convert(int64_t m, int from_frac, const Fx& t) {
  const int shift = from_frac - t.frac_bits();
  if (shift >= 64) {
    const bool negative = m < 0;
    const int64_t tr = negative ? -1 : 0;
    const bool qb = negative;
    const bool r = negative ? (shift >= 65 || (m & INT64_MAX) != 0) : m != 0;
    return apply_overflow(tr + (round_up(t.quant, tr, qb, r, negative) ? 1 : 0), t);
  }
  if (shift > 0) {
    const int64_t tr = m >> shift;
    const uint64_t dropped = static_cast<uint64_t>(m) & ((uint64_t(1) << shift) - 1);
    const bool qb = (dropped >> (shift - 1)) & 1;
    const bool r = (dropped & ((uint64_t(1) << (shift - 1)) - 1)) != 0;
    return apply_overflow(tr + (round_up(t.quant, tr, qb, r, m < 0) ? 1 : 0), t);
  }
  if (shift == 0) return apply_overflow(m, t);
  const int left = -shift;
  if (m == 0) return 0;
  const int64_t limit = left >= 62 ? 1 : (int64_t(1) << (62 - left));
  if (m > -limit && m < limit) return apply_overflow(m * (int64_t(1) << left), t);
  const uint64_t low = left >= 64 ? 0 : static_cast<uint64_t>(m) << left;
  return overflow_result(low, m > 0, m < 0, t);
}

// 2^k, exact: v * pow2(k) == std::ldexp(v, k) for the float inputs here (|k| <= 64 keeps every
// float32 value a normal double).
static constexpr double pow2(int k) {
  double r = 1.0;
  for (int i = 0; i < (k < 0 ? -k : k); ++i) r *= 2.0;
  return k < 0 ? 1.0 / r : r;
}

// std::floor(s) for |s| < 2^62 (exact: the conversions to and from int64 are exact there).
static SQZ_INLINE double floor62(double s) {
  const double t = static_cast<double>(static_cast<int64_t>(s));
  return t > s ? t - 1.0 : t;
}

static SQZ_INLINE int64_t from_double(double v, const Fx& t) {
  if (std::isnan(v)) return 0;
  const double s = v * pow2(t.frac_bits());
  if (!(std::fabs(s) < 4611686018427387904.0)) {
    uint64_t low = 0;
    if (std::isfinite(s)) {
      const double mod = std::ldexp(1.0, t.width);
      double rem = std::fmod(s, mod);
      if (rem < 0) rem += mod;
      low = static_cast<uint64_t>(rem);
    }
    return overflow_result(low, s > 0, s < 0, t);
  }
  double fl;
  bool qb, r;
  if (s >= 0) {
    fl = floor62(s);
    const double frac = s - fl;
    qb = frac >= 0.5;
    r = qb ? frac > 0.5 : frac > 0.0;
  } else {
    const double a = -s, ia = floor62(a), fa = a - ia;
    fl = fa == 0.0 ? -ia : -ia - 1.0;
    qb = fa > 0.0 && fa <= 0.5;
    r = fa > 0.0 && (fa <= 0.5 ? fa < 0.5 : true);
  }
  const int64_t tr = static_cast<int64_t>(fl);
  return apply_overflow(tr + (round_up(t.quant, tr, qb, r, v < 0) ? 1 : 0), t);
}
)";

// What flows between steps in the generated code.
struct Val {
  enum Kind { kFloat, kFixed, kU8 } kind = kFloat;
  fixed::FixedType type;  // kFixed
  float scale = 1.0f;     // kU8
  int64_t zp = 0;         // kU8
  int64_t size = 0;
  std::string var;
};

class Generator {
 public:
  Generator(const ir::Graph& g, const Plan& p, const CppExportOptions& o) : g_(g), plan_(p), opt_(o) {}

  // model.cpp's text.
  std::string model_cpp(const std::string& ns) {
    Val v{Val::kFloat, {}, 1.0f, 0, plan_.in_size, "in"};
    body_ << "  // input: " << plan_.in_size << " floats\n";
    for (const ir::Node* n : plan_.chain) {
      if (n->op == "Softmax") {
        logits_ = v;
        break;
      }
      v = step(*n, v);
    }
    if (!plan_.softmax_last) logits_ = v;
    std::ostringstream os;
    os << "// Generated by squeeze from model '" << g_.name << "' (" << arith_name(plan_.arith)
       << " arithmetic). Do not edit.\n"
       << "// Standard C++17 only; see model.h for the API.\n"
       << "#include \"model.h\"\n\n#include <cmath>\n#include <cstdint>\n#include <cstring>\n\n"
       << "namespace " << ns << " {\nnamespace {\n\n";
    if (plan_.arith == Arith::kFixed) os << kFixedPrelude << "\n";
    os << consts_.str() << funcs_.str() << "}  // namespace\n\n";
    os << "void predict_logits(const float* in, float* out) {\n" << body_.str();
    os << "  for (int i = 0; i < " << logits_.size << "; ++i) out[i] = " << to_float(logits_, logits_.var + "[i]")
       << ";\n}\n\n";
    os << "void predict(const float* in, float* out) {\n";
    if (plan_.softmax_last) {
      os << "  predict_logits(in, out);\n"
         << "  float m = out[0];\n"
         << "  for (int i = 1; i < " << logits_.size << "; ++i) m = out[i] > m ? out[i] : m;\n"
         << "  float s = 0.0f;\n"
         << "  for (int i = 0; i < " << logits_.size << "; ++i) s += (out[i] = std::exp(out[i] - m));\n"
         << "  for (int i = 0; i < " << logits_.size << "; ++i) out[i] /= s;\n";
    } else {
      os << "  predict_logits(in, out);\n";
    }
    os << "}\n\n"
       << "void predict_batch(const float* in, float* out, std::size_t n) {\n"
       << "  for (std::size_t k = 0; k < n; ++k) predict(in + k * kInputSize, out + k * kOutputSize);\n}\n\n"
       << "}  // namespace " << ns << "\n";
    return os.str();
  }

  int64_t macs() const { return macs_; }
  std::vector<std::string> layer_notes() const { return notes_; }

 private:
  std::string fresh(const std::string& base) { return identifier(base) + "_" + std::to_string(counter_++); }

  std::string to_float(const Val& v, const std::string& e) const {
    switch (v.kind) {
      case Val::kFixed:
        return msg("static_cast<float>(static_cast<double>(", e, ") * pow2(", -v.type.frac_bits(), "))");
      case Val::kU8:
        return msg("static_cast<float>(", e, " - ", v.zp, ") * ", flit(v.scale));
      case Val::kFloat:
        break;
    }
    return e;
  }

  const char* ctype(const Val& v) const {
    return v.kind == Val::kFixed ? "int64_t" : v.kind == Val::kU8 ? "int32_t" : "float";
  }

  // Emits the conversion of v into fixed type t (a new array), or returns v when nothing changes.
  Val to_fixed(const Val& v, const fixed::FixedType& t, const std::string& what) {
    if (v.kind == Val::kFixed && v.type == t) return v;
    Val r{Val::kFixed, t, 1.0f, 0, v.size, fresh(what)};
    std::string tc = r.var + "_t";
    consts_ << "constexpr Fx " << tc << " = " << fx_lit(t) << ";  // " << fixed::to_string(t) << "\n";
    body_ << "  int64_t " << r.var << "[" << v.size << "];\n";
    if (v.kind == Val::kFloat) {
      body_ << "  for (int i = 0; i < " << v.size << "; ++i) " << r.var << "[i] = from_double(static_cast<double>("
            << v.var << "[i]), " << tc << ");\n";
    } else if (v.kind == Val::kFixed) {
      body_ << "  for (int i = 0; i < " << v.size << "; ++i) " << r.var << "[i] = convert(" << v.var << "[i], "
            << v.type.frac_bits() << ", " << tc << ");\n";
    } else {
      throw UnsupportedError("cpp export: an int8 value cannot enter a fixed-point layer");
    }
    return r;
  }

  Val to_u8(const Val& v, const ir::QuantSpec& s, const std::string& what) {
    if (v.kind != Val::kFloat) throw UnsupportedError(msg("cpp export: '", what, "' requantizes an integer value"));
    Val r{Val::kU8, {}, s.scale.item<float>(), s.zero_point.defined() ? s.zero_point.item<int64_t>() : 0, v.size,
          fresh(what)};
    body_ << "  int32_t " << r.var << "[" << v.size << "];\n"
          << "  for (int i = 0; i < " << v.size << "; ++i) {\n"
          << "    float q = std::nearbyint(" << v.var << "[i] / " << flit(r.scale) << ") + " << flit(float(r.zp))
          << ";\n"
          << "    " << r.var << "[i] = q < 0.0f ? 0 : q > 255.0f ? 255 : static_cast<int32_t>(q);\n  }\n";
    return r;
  }

  Val step(const ir::Node& n, const Val& v) {
    if (n.op == "Linear") return linear(n, v);
    if (n.op == "Relu") {
      Val r = v;
      r.var = fresh(n.name);
      body_ << "  " << ctype(v) << " " << r.var << "[" << v.size << "];\n";
      std::string zero = v.kind == Val::kU8 ? std::to_string(v.zp) : v.kind == Val::kFixed ? "0" : "0.0f";
      body_ << "  for (int i = 0; i < " << v.size << "; ++i) " << r.var << "[i] = " << v.var << "[i] > " << zero << " ? "
            << v.var << "[i] : " << zero << ";\n";
      if (is_fixed_spec(n.out_qspec)) return to_fixed(r, *fixed::of_spec(*n.out_qspec), n.name + "_q");
      if (n.out_qspec) return requantize_u8(r, *n.out_qspec, n);
      return r;
    }
    // Identity, Dropout, Flatten, Reshape: the same values; an Identity may assign a type.
    if (is_fixed_spec(n.out_qspec)) return to_fixed(v, *fixed::of_spec(*n.out_qspec), n.name);
    if (n.out_qspec) {
      if (v.kind == Val::kFloat) return to_u8(v, *n.out_qspec, n.name);
      return requantize_u8(v, *n.out_qspec, n);
    }
    return v;
  }

  // A uint8 value re-labelled with another grid is not something the int8 path does.
  Val requantize_u8(const Val& v, const ir::QuantSpec& s, const ir::Node& n) {
    float scale = s.scale.item<float>();
    int64_t zp = s.zero_point.defined() ? s.zero_point.item<int64_t>() : 0;
    if (v.kind == Val::kU8 && scale == v.scale && zp == v.zp) return v;
    throw UnsupportedError(msg("cpp export: node '", n.name, "' (", n.op,
                               ") changes the grid of an int8 value; the generator follows the int8 kernels only"));
  }

  struct Row {
    std::vector<std::pair<int64_t, int64_t>> terms;  // (column, integer weight)
  };

  bool unrolled(int64_t nnz) const {
    return opt_.unroll == "always" || (opt_.unroll == "auto" && nnz <= opt_.unroll_max_nonzeros);
  }

  // Emits a sparse integer dot product for each row: the statement template `acc_expr(col, w)`
  // adds one term to variable `a`. Unrolled or CSR.
  void emit_rows(const std::string& name, const std::vector<Row>& rows, const std::string& wtype, bool unroll,
                 const std::string& init_acc, const std::function<std::string(const std::string&, const std::string&)>& term,
                 const std::string& finish, const std::string& acc_decl) {
    if (unroll) {
      for (size_t i = 0; i < rows.size(); ++i) {
        funcs_ << "  {\n    " << acc_decl << " a = " << replace_i(init_acc, i) << ";\n";
        for (const auto& [c, w] : rows[i].terms)
          funcs_ << "    " << term("x[" + std::to_string(c) + "]", wtype == "float" ? flit(float(bits_float_.at(
                                                                                     name + ":" + std::to_string(i) + ":" + std::to_string(c))))
                                                                                 : ilit(w))
                 << "\n";
        funcs_ << "    " << replace_i(finish, i) << "\n  }\n";
      }
      return;
    }
    std::vector<int64_t> ptr{0};
    std::ostringstream cols, vals;
    int64_t k = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      for (const auto& [c, w] : rows[i].terms) {
        cols << (k % 16 == 0 ? "\n    " : " ") << c << ",";
        if (wtype == "float")
          vals << (k % 8 == 0 ? "\n    " : " ") << flit(bits_float_.at(name + ":" + std::to_string(i) + ":" + std::to_string(c))) << ",";
        else
          vals << (k % 12 == 0 ? "\n    " : " ") << ilit(w) << ",";
        ++k;
      }
      ptr.push_back(k);
    }
    if (k == 0) cols << " 0", vals << " 0";  // no empty initialisers
    consts_ << "const int32_t " << name << "_ptr[" << ptr.size() << "] = {";
    for (size_t i = 0; i < ptr.size(); ++i) consts_ << (i % 16 == 0 ? "\n    " : " ") << ptr[i] << ",";
    consts_ << "\n};\nconst int32_t " << name << "_col[" << std::max<int64_t>(k, 1) << "] = {" << cols.str()
            << "\n};\nconst " << wtype << " " << name << "_val[" << std::max<int64_t>(k, 1) << "] = {" << vals.str()
            << "\n};\n";
    funcs_ << "  for (int i = 0; i < " << rows.size() << "; ++i) {\n    " << acc_decl << " a = "
           << replace_i(init_acc, -1) << ";\n"
           << "    for (int k = " << name << "_ptr[i]; k < " << name << "_ptr[i + 1]; ++k) "
           << term("x[" + name + "_col[k]]", name + "_val[k]") << "\n"
           << "    " << replace_i(finish, -1) << "\n  }\n";
  }

  // "$i" in a template: the row index as a literal (unrolled) or the loop variable.
  static std::string replace_i(std::string s, int64_t i) {
    const std::string key = "$i";
    for (size_t p = s.find(key); p != std::string::npos; p = s.find(key, p))
      s.replace(p, key.size(), i < 0 ? "i" : std::to_string(i));
    return s;
  }

  Val linear(const ir::Node& n, const Val& in) {
    const at::Tensor w = n.param("weight").value.detach().to(at::kFloat).contiguous();
    const int64_t out = w.size(0), inn = w.size(1);
    if (inn != in.size)
      throw UnsupportedError(msg("cpp export: node '", n.name, "' (Linear) reads ", inn, " features from a value of ",
                                 in.size, " (a batch dimension the generator does not flatten?)"));
    const std::string name = fresh(n.name);
    std::vector<Row> rows(static_cast<size_t>(out));
    int64_t nnz = 0;
    if (plan_.arith == Arith::kFixed) return fixed_linear(n, in, name);
    if (plan_.arith == Arith::kInt8) return int8_linear(n, in, name);
    // float
    auto acc = w.accessor<float, 2>();
    for (int64_t i = 0; i < out; ++i)
      for (int64_t j = 0; j < inn; ++j)
        if (acc[i][j] != 0.0f) {
          rows[i].terms.push_back({j, 0});
          bits_float_[name + ":" + std::to_string(i) + ":" + std::to_string(j)] = acc[i][j];
          ++nnz;
        }
    std::vector<float> b(static_cast<size_t>(out), 0.0f);
    if (n.has_param("bias")) {
      at::Tensor bt = n.param("bias").value.detach().to(at::kFloat).contiguous();
      for (int64_t i = 0; i < out; ++i) b[i] = bt.data_ptr<float>()[i];
    }
    consts_ << "const float " << name << "_b[" << out << "] = {";
    for (int64_t i = 0; i < out; ++i) consts_ << (i % 8 == 0 ? "\n    " : " ") << flit(b[i]) << ",";
    consts_ << "\n};\n";
    bool un = unrolled(nnz);
    note(n, inn, out, nnz, un);
    funcs_ << "// " << n.name << ": Linear " << inn << " -> " << out << ", " << nnz << " of " << inn * out
           << " weights non-zero, " << (un ? "unrolled" : "compressed rows") << "\n"
           << "inline void " << name << "_run(const float* x, float* y) {\n";
    emit_rows(name, rows, "float", un, name + "_b[$i]",
              [](const std::string& x, const std::string& wv) { return "a += " + wv + " * " + x + ";"; },
              "y[$i] = a;", "float");
    funcs_ << "}\n\n";
    Val r{Val::kFloat, {}, 1.0f, 0, out, name + "_y"};
    body_ << "  float " << r.var << "[" << out << "];\n  " << name << "_run(" << in.var << ", " << r.var << ");\n";
    macs_ += nnz;
    return r;
  }

  void note(const ir::Node& n, int64_t inn, int64_t out, int64_t nnz, bool un) {
    notes_.push_back(msg(n.name, ": ", inn, " -> ", out, ", ", nnz, " of ", inn * out, " weights non-zero, ",
                         un ? "unrolled" : "compressed rows"));
  }

  Val fixed_linear(const ir::Node& n, const Val& in_val, const std::string& name) {
    const exec::FixedLayerTypes t = exec::fixed_layer_types(n);
    Val x = to_fixed(in_val, t.input, n.name + "_in");
    const at::Tensor w = n.param("weight").value.detach();
    at::Tensor mw = fixed::from_float(w, t.weight).contiguous();
    const int64_t out = mw.size(0), inn = mw.size(1);
    at::Tensor mb = t.bias ? fixed::convert(fixed::from_float(n.param("bias").value.detach(), *t.bias),
                                            t.bias->frac_bits(), t.accum)
                           : at::zeros({out}, at::kLong);
    mb = mb.contiguous();
    const int prod_frac = t.input.frac_bits() + t.weight.frac_bits();
    const bool modular = t.accum.overflow == fixed::OMode::kWrap && t.accum.sat_bits == 0;
    auto mwa = mw.accessor<int64_t, 2>();
    std::vector<Row> rows(static_cast<size_t>(out));
    int64_t nnz = 0, wmax = 0, bmax = 0, row_max = 0;
    for (int64_t i = 0; i < out; ++i) {
      for (int64_t j = 0; j < inn; ++j)
        if (mwa[i][j] != 0) {
          rows[i].terms.push_back({j, mwa[i][j]});
          wmax = std::max<int64_t>(wmax, std::llabs(mwa[i][j]));
        }
      nnz += static_cast<int64_t>(rows[i].terms.size());
      row_max = std::max<int64_t>(row_max, static_cast<int64_t>(rows[i].terms.size()));
      bmax = std::max<int64_t>(bmax, std::llabs(mb.data_ptr<int64_t>()[i]));
    }
    const int64_t xmax = std::max<int64_t>(-t.input.min_mantissa(), t.input.max_mantissa());
    // Products exact in the accumulator and a sum that cannot leave int64: no per-product code.
    const long double pmax = static_cast<long double>(xmax) * wmax;
    const bool plain = modular && prod_frac == t.accum.frac_bits() && pmax <= t.accum.max_mantissa() &&
                       bmax + row_max * pmax < 4.0e18L;
    consts_ << "constexpr Fx " << name << "_acc_t = " << fx_lit(t.accum) << ";  // " << fixed::to_string(t.accum)
            << "\nconstexpr Fx " << name << "_res_t = " << fx_lit(t.result) << ";  // " << fixed::to_string(t.result)
            << "\nconst int64_t " << name << "_b[" << out << "] = {";
    for (int64_t i = 0; i < out; ++i) consts_ << (i % 8 == 0 ? "\n    " : " ") << ilit(mb.data_ptr<int64_t>()[i]) << ",";
    consts_ << "\n};\n";
    bool un = unrolled(nnz);
    note(n, inn, out, nnz, un);
    funcs_ << "// " << n.name << ": Linear " << inn << " -> " << out << ", " << nnz << " of " << inn * out
           << " weights non-zero, " << (un ? "unrolled" : "compressed rows") << "; input "
           << fixed::to_string(t.input) << ", weight " << fixed::to_string(t.weight) << ", accumulator "
           << fixed::to_string(t.accum) << ", result " << fixed::to_string(t.result)
           << (plain ? " (products exact in the accumulator)" : modular ? " (wrapping sum)" : " (ordered sum)") << "\n"
           << "inline void " << name << "_run(const int64_t* x, int64_t* y) {\n";
    const std::string acc_t = name + "_acc_t", res_t = name + "_res_t";
    // One instance of each conversion per layer (its modes folded once); the terms call these
    // small functions, which keeps the compile time of unrolled code linear.
    consts_ << "inline int64_t " << name << "_p(int64_t p) { return convert(p, " << prod_frac << ", " << acc_t
           << "); }\n"
           << "inline int64_t " << name << "_o(int64_t a) { return apply_overflow(a, " << acc_t << "); }\n"
           << "inline int64_t " << name << "_r(int64_t a) { return convert(a, " << t.accum.frac_bits() << ", " << res_t
           << "); }\n";
    const std::string finish_conv = "y[$i] = " + name + "_r(" + name + "_o(static_cast<int64_t>(a)));";
    if (plain) {
      emit_rows(name, rows, "int64_t", un, name + "_b[$i]",
                [](const std::string& xv, const std::string& wv) { return "a += " + xv + " * " + wv + ";"; },
                finish_conv, "int64_t");
    } else if (modular) {
      emit_rows(name, rows, "int64_t", un, "static_cast<uint64_t>(" + name + "_b[$i])",
                [&](const std::string& xv, const std::string& wv) {
                  return "a += static_cast<uint64_t>(" + name + "_p(" + xv + " * " + wv + "));";
                },
                finish_conv, "uint64_t");
    } else {
      emit_rows(name, rows, "int64_t", un, name + "_b[$i]",
                [&](const std::string& xv, const std::string& wv) {
                  return "a = " + name + "_o(a + " + name + "_p(" + xv + " * " + wv + "));";
                },
                "y[$i] = " + name + "_r(a);", "int64_t");
    }
    funcs_ << "}\n\n";
    Val r{Val::kFixed, t.result, 1.0f, 0, out, name + "_y"};
    body_ << "  int64_t " << r.var << "[" << out << "];\n  " << name << "_run(" << x.var << ", " << r.var << ");\n";
    macs_ += nnz;
    return r;
  }

  Val int8_linear(const ir::Node& n, const Val& in, const std::string& name) {
    if (in.kind != Val::kU8)
      throw UnsupportedError(msg("cpp export: node '", n.name, "' (Linear) runs int8 but its input is not uint8"));
    const ir::Param& wp = n.param("weight");
    const ir::QuantSpec& ws = *wp.qspec;
    at::Tensor qw = quant::quantize(wp.value.detach(), ws).contiguous();  // int64
    const int64_t out = qw.size(0), inn = qw.size(1);
    at::Tensor wscale = ws.scale.to(at::kDouble).reshape(-1).contiguous();
    const ir::QuantSpec& os = *n.out_qspec;
    const double so = os.scale.item<double>();
    const int64_t zo = os.zero_point.defined() ? os.zero_point.item<int64_t>() : 0;
    at::Tensor bias = n.has_param("bias") ? n.param("bias").value.detach().to(at::kFloat).contiguous()
                                          : at::zeros({out}, at::kFloat);
    // libtorch hands oneDNN reciprocal scales as float; see the header comment.
    const float src_s = static_cast<float>(1.0 / in_scale_double_);
    const float dst_s = static_cast<float>(1.0 / so);
    std::vector<float> M(out), B(out);
    auto qa = qw.accessor<int64_t, 2>();
    std::vector<Row> rows(static_cast<size_t>(out));
    int64_t nnz = 0;
    for (int64_t i = 0; i < out; ++i) {
      const double swi = wscale.data_ptr<double>()[wscale.numel() == 1 ? 0 : i];
      const float w_s = static_cast<float>(1.0 / swi);
      const float bs = src_s * w_s;
      M[i] = dst_s / bs;
      B[i] = bias.data_ptr<float>()[i] * bs;
      for (int64_t j = 0; j < inn; ++j)
        if (qa[i][j] != 0) rows[i].terms.push_back({j, qa[i][j]});
      nnz += static_cast<int64_t>(rows[i].terms.size());
    }
    consts_ << "const float " << name << "_m[" << out << "] = {";
    for (int64_t i = 0; i < out; ++i) consts_ << (i % 8 == 0 ? "\n    " : " ") << flit(M[i]) << ",";
    consts_ << "\n};\nconst float " << name << "_b[" << out << "] = {";
    for (int64_t i = 0; i < out; ++i) consts_ << (i % 8 == 0 ? "\n    " : " ") << flit(B[i]) << ",";
    consts_ << "\n};\n";
    bool un = unrolled(nnz);
    note(n, inn, out, nnz, un);
    funcs_ << "// " << n.name << ": int8 Linear " << inn << " -> " << out << ", " << nnz << " of " << inn * out
           << " weights non-zero, " << (un ? "unrolled" : "compressed rows") << "; input zero point " << in.zp
           << ", output scale " << so << " zero point " << zo << "\n"
           << "inline void " << name << "_run(const int32_t* x, int32_t* y) {\n";
    const std::string xz = in.zp == 0 ? "" : " - " + std::to_string(in.zp);
    emit_rows(name, rows, "int32_t", un, "0",
              [&](const std::string& xv, const std::string& wv) {
                return "a += (" + xv + xz + ") * " + wv + ";";
              },
              "{ float d = static_cast<float>(a) + " + name + "_b[$i]; d = d * " + name + "_m[$i]; d = d + " +
                  flit(float(zo)) + "; float q = std::nearbyint(d); y[$i] = q < 0.0f ? 0 : q > 255.0f ? 255 : "
                  "static_cast<int32_t>(q); }",
              "int32_t");
    funcs_ << "}\n\n";
    Val r{Val::kU8, {}, os.scale.item<float>(), zo, out, name + "_y"};
    in_scale_double_ = so;
    body_ << "  int32_t " << r.var << "[" << out << "];\n  " << name << "_run(" << in.var << ", " << r.var << ");\n";
    macs_ += nnz;
    return r;
  }

 public:
  double in_scale_double_ = 1.0;  // the double scale of the uint8 value entering the next int8 layer

 private:
  const ir::Graph& g_;
  const Plan& plan_;
  const CppExportOptions& opt_;
  std::ostringstream consts_, funcs_, body_;
  std::map<std::string, float> bits_float_;
  std::vector<std::string> notes_;
  Val logits_;
  int counter_ = 0;
  int64_t macs_ = 0;
};

std::string model_h(const std::string& ns, const Plan& p, const ir::Graph& g) {
  std::ostringstream os;
  os << "// Generated by squeeze from model '" << g.name << "' (" << arith_name(p.arith)
     << " arithmetic). Do not edit.\n"
     << "// Standard C++17 only: compile model.cpp with any C++17 compiler (g++ -O2 -std=c++17).\n"
     << "#pragma once\n\n#include <cstddef>\n\nnamespace " << ns << " {\n\n"
     << "constexpr std::size_t kInputSize = " << p.in_size << ";   // floats per sample\n"
     << "constexpr std::size_t kOutputSize = " << p.out_size << ";  // floats per sample\n\n"
     << "// One sample: in[kInputSize] -> out[kOutputSize]. Thread-safe (no state).\n"
     << "void predict(const float* in, float* out);\n"
     << "// n samples, one after the other in memory.\n"
     << "void predict_batch(const float* in, float* out, std::size_t n);\n"
     << "// The values before a final Softmax (the same as predict() when the model has none).\n"
     << "void predict_logits(const float* in, float* out);\n\n"
     << "}  // namespace " << ns << "\n";
  return os.str();
}

std::string check_cpp(const std::string& ns, const Plan& p) {
  std::string mode = p.softmax_last ? "softmax" : p.arith == Arith::kFloat ? "tolerance" : "exact";
  std::ostringstream os;
  os << "// Recomputes squeeze's golden outputs (golden.bin) with the generated model; exits 1 on any\n"
     << "// mismatch. " << (p.arith == Arith::kFloat ? "Float arithmetic: outputs within |a - b| <= tol * (1 + |b|)."
                                                      : "Outputs compared bit for bit.")
     << (p.softmax_last ? " A final Softmax: logits bit for bit (float: within tol), probabilities within ptol." : "")
     << "\n#include <cmath>\n#include <cstdint>\n#include <cstdio>\n#include <cstring>\n#include <vector>\n\n"
     << "#include \"model.h\"\n\n"
     << "int main(int argc, char** argv) {\n"
     << "  const char* path = argc > 1 ? argv[1] : \"golden.bin\";\n"
     << "  std::FILE* f = std::fopen(path, \"rb\");\n"
     << "  if (!f) { std::fprintf(stderr, \"check: cannot open %s\\n\", path); return 2; }\n"
     << "  char magic[8];\n  uint64_t n = 0, in_size = 0, out_size = 0;\n"
     << "  bool ok = std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, \"SQZGOLD1\", 8) == 0 &&\n"
     << "            std::fread(&n, 8, 1, f) == 1 && std::fread(&in_size, 8, 1, f) == 1 && std::fread(&out_size, 8, 1, f) == 1;\n"
     << "  if (!ok || in_size != " << ns << "::kInputSize || out_size != " << ns << "::kOutputSize) {\n"
     << "    std::fprintf(stderr, \"check: %s is not golden data for this model\\n\", path);\n    return 2;\n  }\n"
     << "  std::vector<float> x(n * in_size), logits(n * out_size), want(n * out_size);\n"
     << "  ok = std::fread(x.data(), 4, x.size(), f) == x.size() && std::fread(logits.data(), 4, logits.size(), f) == logits.size() &&\n"
     << "       std::fread(want.data(), 4, want.size(), f) == want.size();\n"
     << "  std::fclose(f);\n"
     << "  if (!ok) { std::fprintf(stderr, \"check: %s is truncated\\n\", path); return 2; }\n"
     << "  const double tol = " << kFloatTolerance << ", ptol = " << kSoftmaxTolerance << ";\n"
     << "  const bool exact = " << (p.arith == Arith::kFloat ? "false" : "true") << ", softmax = "
     << (p.softmax_last ? "true" : "false") << ";\n"
     << "  auto same = [&](float a, float b, bool bits, double t) {\n"
     << "    if (bits) return std::memcmp(&a, &b, 4) == 0;\n"
     << "    return std::fabs(double(a) - double(b)) <= t * (1.0 + std::fabs(double(b)));\n  };\n"
     << "  std::vector<float> y(n * out_size), yl(out_size);\n"
     << "  " << ns << "::predict_batch(x.data(), y.data(), n);\n"
     << "  uint64_t bad = 0, shown = 0;\n"
     << "  for (uint64_t k = 0; k < n; ++k) {\n"
     << "    std::vector<float> one(out_size);\n"
     << "    " << ns << "::predict(&x[k * in_size], one.data());\n"
     << "    " << ns << "::predict_logits(&x[k * in_size], yl.data());\n"
     << "    bool row_ok = true;\n"
     << "    for (uint64_t i = 0; i < out_size; ++i) {\n"
     << "      float g = want[k * out_size + i];\n"
     << "      bool o = same(yl[i], logits[k * out_size + i], exact, tol) &&\n"
     << "               same(one[i], g, exact && !softmax, softmax && exact ? ptol : tol) &&\n"
     << "               std::memcmp(&one[i], &y[k * out_size + i], 4) == 0;\n"
     << "      if (!o && shown < 10) {\n"
     << "        ++shown;\n"
     << "        std::fprintf(stderr, \"mismatch: sample %llu output %llu: got %.9g (logit %.9g), want %.9g (logit %.9g)\\n\",\n"
     << "                     (unsigned long long)k, (unsigned long long)i, one[i], yl[i], g, logits[k * out_size + i]);\n"
     << "      }\n      row_ok = row_ok && o;\n    }\n"
     << "    bad += row_ok ? 0 : 1;\n  }\n"
     << "  std::printf(\"%llu of %llu samples match squeeze (%s)\\n\", (unsigned long long)(n - bad), (unsigned long long)n,\n"
     << "              exact && !softmax ? \"bit for bit\" : exact ? \"logits bit for bit, probabilities within ptol\" : \"within tol\");\n"
     << "  return bad == 0 ? 0 : 1;\n}\n";
  return os.str();
}

// Golden inputs: given, or uniform over the input type's range widened by 1/8 on each side.
at::Tensor golden_inputs(const ir::Graph& g, const Plan& p, const CppExportOptions& o) {
  ir::Shape shape = g.inputs[0].shape;
  if (o.golden_inputs.defined()) {
    at::Tensor x = o.golden_inputs.to(at::kFloat).contiguous();
    if (x.dim() < 1 || x.numel() / std::max<int64_t>(1, x.size(0)) != p.in_size)
      throw ConfigError(msg("cpp export: golden inputs of shape ", x.sizes(), " do not match the model input ",
                            ir::shape_str(shape)));
    return x.narrow(0, 0, std::min<int64_t>(x.size(0), o.golden_count)).reshape({-1, p.in_size}).contiguous();
  }
  double lo = -4.0, hi = 4.0;
  for (const ir::Node* n : p.chain) {
    if (n->op == "Linear" && exec::is_fixed_layer(*n)) {
      auto t = exec::fixed_layer_types(*n).input;
      lo = fixed::to_double(t.min_mantissa(), t), hi = fixed::to_double(t.max_mantissa(), t);
      break;
    }
    if (is_fixed_spec(n->out_qspec)) {
      auto t = *fixed::of_spec(*n->out_qspec);
      lo = fixed::to_double(t.min_mantissa(), t), hi = fixed::to_double(t.max_mantissa(), t);
      break;
    }
    if (n->out_qspec) {
      double s = n->out_qspec->scale.item<double>();
      int64_t z = n->out_qspec->zero_point.defined() ? n->out_qspec->zero_point.item<int64_t>() : 0;
      lo = (0 - z) * s, hi = (255 - z) * s;
      break;
    }
    if (n->op == "Linear") break;
  }
  const double pad = (hi - lo) / 8.0;
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> u(lo - pad, hi + pad);
  at::Tensor x = at::empty({o.golden_count, p.in_size}, at::kFloat);
  float* d = x.data_ptr<float>();
  for (int64_t i = 0; i < x.numel(); ++i) d[i] = static_cast<float>(u(rng));
  return x;
}

std::string readme(const std::string& ns, const Plan& p, const ir::Graph& g, const std::vector<std::string>& notes,
                   int64_t golden, int64_t macs) {
  std::ostringstream os;
  os << "# " << g.name << " as C++ (generated by squeeze)\n\n"
     << "Arithmetic: " << arith_name(p.arith) << ". " << macs << " multiply-adds per sample.\n\n";
  for (const auto& n : notes) os << "- " << n << "\n";
  os << "\nAPI (model.h, namespace `" << ns << "`): `predict(in, out)` for one sample of " << p.in_size
     << " floats, `predict_batch(in, out, n)`, `predict_logits` (before a final Softmax).\n\n"
     << "Check against squeeze's " << golden << " golden vectors:\n\n"
     << "    make check && ./check golden.bin\n\n"
     << "or without make:\n\n"
     << "    g++ -O2 -Wall -Wextra -Werror -std=c++17 -o check check.cpp model.cpp && ./check golden.bin\n";
  return os.str();
}

std::string makefile() {
  return "CXX ?= g++\nCXXFLAGS ?= -O2 -Wall -Wextra -Werror -std=c++17\n\n"
         "check: check.cpp model.cpp model.h\n\t$(CXX) $(CXXFLAGS) -o check check.cpp model.cpp\n\n"
         "test: check\n\t./check golden.bin\n\n.PHONY: test\n";
}

void check_target_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec))
      throw ConfigError(msg("cpp export: --out '", dir, "' is a file; give a new or empty folder"));
    if (!fs::is_empty(dir, ec))
      throw ConfigError(msg("cpp export: --out '", dir,
                            "' is a folder that is not empty; give a new or empty folder (nothing is overwritten)"));
  }
}

}  // namespace

void check_cpp_exportable(const ir::Graph& graph) { make_plan(graph); }

void export_cpp(const ir::Graph& graph, const CppExportOptions& options, const std::string& dir) {
  options.validate();
  const Plan plan = make_plan(graph);
  check_target_dir(dir);
  const std::string ns = options.name.empty() ? identifier(graph.name) : options.name;

  Generator gen(graph, plan, options);
  // The int8 input scale as the executor holds it (double), for the first layer's requantization.
  for (const ir::Node* n : plan.chain)
    if (n->out_qspec && !is_fixed_spec(n->out_qspec)) {
      gen.in_scale_double_ = n->out_qspec->scale.item<double>();
      break;
    }
  const std::string cpp = gen.model_cpp(ns);

  // Golden outputs from the executor; logits from the graph cut before a final Softmax.
  at::Tensor x = golden_inputs(graph, plan, options);
  ir::Shape shape = graph.inputs[0].shape;
  std::vector<int64_t> xs = {x.size(0)};
  for (size_t i = 1; i < shape.size(); ++i) xs.push_back(shape[i]);
  exec::Executor ex(graph);
  at::Tensor y = ex.forward(x.reshape(xs)).to(at::kFloat).reshape({x.size(0), -1}).contiguous();
  at::Tensor logits = y;
  if (plan.softmax_last) {
    ir::Graph cut = graph.clone();
    cut.outputs = {plan.chain.back()->inputs[0]};
    ir::remove_dead_nodes(cut);
    exec::Executor ex2(cut);
    logits = ex2.forward(x.reshape(xs)).to(at::kFloat).reshape({x.size(0), -1}).contiguous();
  }
  std::string golden = "SQZGOLD1";
  auto put64 = [&](uint64_t v) { golden.append(reinterpret_cast<const char*>(&v), 8); };
  put64(static_cast<uint64_t>(x.size(0)));
  put64(static_cast<uint64_t>(plan.in_size));
  put64(static_cast<uint64_t>(plan.out_size));
  golden.append(reinterpret_cast<const char*>(x.data_ptr<float>()), x.numel() * 4);
  golden.append(reinterpret_cast<const char*>(logits.data_ptr<float>()), logits.numel() * 4);
  golden.append(reinterpret_cast<const char*>(y.data_ptr<float>()), y.numel() * 4);

  // Built in a temporary folder next to DIR, then renamed onto it.
  fs::path target = fs::absolute(dir);
  const std::string tmp = temp_path_for(target.lexically_normal().string());
  try {
    fs::create_directories(tmp);
    write_text_atomic(tmp + "/model.h", model_h(ns, plan, graph));
    write_text_atomic(tmp + "/model.cpp", cpp);
    write_text_atomic(tmp + "/check.cpp", check_cpp(ns, plan));
    write_text_atomic(tmp + "/Makefile", makefile());
    write_text_atomic(tmp + "/README.md", readme(ns, plan, graph, gen.layer_notes(), x.size(0), gen.macs()));
    write_file_atomic(tmp + "/golden.bin", {std::string_view(golden)});
    std::error_code ec;
    if (fs::exists(target, ec)) fs::remove(target, ec);  // empty (checked above)
    fs::rename(tmp, target);
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw Error(msg("cpp export: cannot write '", dir, "': ", e.code().message()));
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

// ---- latency ----------------------------------------------------------------------------------

namespace {

std::string find_compiler() {
  const char* cxx = std::getenv("CXX");
  std::string name = cxx && *cxx ? cxx : "g++";
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');) {
    std::string p = (d.empty() ? "." : d) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// Runs a shell command; returns its exit status and combined output.
std::pair<int, std::string> run_command(const std::string& cmd) {
  std::FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) throw Error(msg("cannot run '", cmd, "': ", std::strerror(errno)));
  std::string out;
  std::array<char, 4096> buf;
  size_t k;
  while ((k = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), k);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, out};
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

const char* kTimingMain = R"(#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>
#include "model.h"
using namespace MODEL_NS;
int main(int argc, char** argv) {
  std::vector<float> x;
  std::FILE* f = argc > 1 ? std::fopen(argv[1], "rb") : nullptr;
  uint64_t n = 0, hdr[3] = {0, 0, 0};
  char magic[8];
  if (f && std::fread(magic, 1, 8, f) == 8 && std::fread(hdr, 8, 3, f) == 3 && hdr[1] == kInputSize) {
    n = std::min<uint64_t>(hdr[0], 1024);
    x.resize(n * kInputSize);
    if (std::fread(x.data(), 4, x.size(), f) != x.size()) n = 0;
  }
  if (f) std::fclose(f);
  if (n == 0) { n = 1; x.assign(kInputSize, 0.5f); }
  std::vector<float> y(kOutputSize);
  volatile float sink = 0.0f;
  const int reps = 200;
  std::vector<double> per;
  uint64_t k = 0;
  auto once = [&]() { predict(&x[(k++ % n) * kInputSize], y.data()); sink = sink + y[0]; };
  for (int i = 0; i < 2000; ++i) once();
  for (int r = 0; r < 31; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) once();
    auto t1 = std::chrono::steady_clock::now();
    per.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / reps);
  }
  std::sort(per.begin(), per.end());
  std::printf("median_ns %.3f\n", per[per.size() / 2]);
  return 0;
}
)";

}  // namespace

double measure_cpp_latency_ns(const std::string& dir) {
  if (!fs::exists(fs::path(dir) / "model.h") || !fs::exists(fs::path(dir) / "model.cpp"))
    throw InputError(msg("measure_cpp_latency_ns: '", dir, "' has no model.h and model.cpp (write it with export_cpp)"));
  const std::string cxx = find_compiler();
  if (cxx.empty())
    throw Error("measure_cpp_latency_ns: no C++ compiler found (g++ on PATH, or $CXX); install g++ to measure "
                "the generated code");
  // The namespace, from model.h.
  std::string h = read_text((fs::path(dir) / "model.h").string());
  auto p = h.find("namespace ");
  if (p == std::string::npos) throw InputError(msg("measure_cpp_latency_ns: '", dir, "/model.h' declares no namespace"));
  std::string ns = h.substr(p + 10, h.find(' ', p + 10) - (p + 10));
  char tmpl[] = "/tmp/squeeze-cpp-latency-XXXXXX";
  if (!mkdtemp(tmpl)) throw Error(msg("measure_cpp_latency_ns: cannot create a temporary folder: ", std::strerror(errno)));
  const std::string tmp = tmpl;
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{tmp};
  {
    std::ofstream m(tmp + "/main.cpp");
    m << kTimingMain;
  }
  const std::string bin = tmp + "/latency";
  auto [rc, out] = run_command(shell_quote(cxx) + " -O2 -std=c++17 -DMODEL_NS=" + ns + " -I " + shell_quote(dir) + " " +
                               shell_quote(tmp + "/main.cpp") + " " + shell_quote(dir + "/model.cpp") + " -o " +
                               shell_quote(bin));
  if (rc != 0) throw Error(msg("measure_cpp_latency_ns: compiling '", dir, "' failed:\n", out));
  auto [rc2, out2] = run_command(shell_quote(bin) + " " + shell_quote(dir + "/golden.bin"));
  auto q = out2.find("median_ns ");
  if (rc2 != 0 || q == std::string::npos) throw Error(msg("measure_cpp_latency_ns: the timing program failed:\n", out2));
  return std::stod(out2.substr(q + 10));
}

}  // namespace squeeze::deploy
