#include "squeeze/ir/fixed_point.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <vector>

#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::fixed {

namespace {

const std::vector<std::pair<QMode, const char*>>& qmodes() {
  static const std::vector<std::pair<QMode, const char*>> m = {
      {QMode::kTrn, "AP_TRN"},         {QMode::kTrnZero, "AP_TRN_ZERO"},     {QMode::kRnd, "AP_RND"},
      {QMode::kRndZero, "AP_RND_ZERO"}, {QMode::kRndMinInf, "AP_RND_MIN_INF"}, {QMode::kRndInf, "AP_RND_INF"},
      {QMode::kRndConv, "AP_RND_CONV"}};
  return m;
}
const std::vector<std::pair<OMode, const char*>>& omodes() {
  static const std::vector<std::pair<OMode, const char*>> m = {
      {OMode::kWrap, "AP_WRAP"}, {OMode::kSat, "AP_SAT"}, {OMode::kSatZero, "AP_SAT_ZERO"}, {OMode::kSatSym, "AP_SAT_SYM"}};
  return m;
}

std::string names_q() {
  std::vector<std::string> v;
  for (const auto& [q, n] : qmodes()) v.push_back(n);
  return join(v, ", ");
}
std::string names_o() {
  std::vector<std::string> v;
  for (const auto& [o, n] : omodes()) v.push_back(n);
  return join(v, ", ");
}

const char* kValid =
    "ap_fixed<W,I[,Q[,O[,N]]]>, ap_ufixed<W,I[,Q[,O[,N]]]>, ap_int<W>, ap_uint<W> or "
    "quantized_bits(bits, integer[, symmetric[, keep_negative[, alpha]]])";

int parse_int(const std::string& s, const std::string& what, const std::string& where, const std::string& text) {
  try {
    size_t used = 0;
    long v = std::stol(s, &used);
    if (used == s.size() && v > -100000 && v < 100000) return static_cast<int>(v);
  } catch (const std::exception&) {
  }
  throw ConfigError(msg(where, ": '", text, "': ", what, " '", s, "' is not an integer"));
}

bool parse_flag(const std::string& s, const std::string& what, const std::string& where, const std::string& text) {
  std::string l = s;
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "1" || l == "true") return true;
  if (l == "0" || l == "false") return false;
  throw ConfigError(msg(where, ": '", text, "': ", what, " '", s, "' is not valid (expected 0, 1, True or False)"));
}

std::vector<std::string> split_args(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

FixedType parse_quantized_bits(const std::string& body, const std::string& where, const std::string& text) {
  // QKeras: quantized_bits(bits=8, integer=0, symmetric=0, keep_negative=True, alpha=None, ...)
  static const std::vector<std::string> order = {"bits", "integer", "symmetric", "keep_negative", "alpha"};
  std::map<std::string, std::string> kv;
  size_t pos = 0;
  bool keywords = false;
  if (!body.empty())
    for (const auto& a : split_args(body)) {
      auto eq = a.find('=');
      if (eq == std::string::npos) {
        if (keywords)
          throw ConfigError(msg(where, ": '", text, "': a positional argument follows a keyword argument"));
        if (pos >= order.size())
          throw ConfigError(msg(where, ": '", text, "': too many arguments (valid: bits, integer, symmetric, "
                                "keep_negative, alpha)"));
        kv[order[pos++]] = a;
      } else {
        keywords = true;
        std::string k = a.substr(0, eq);
        if (std::find(order.begin(), order.end(), k) == order.end())
          throw ConfigError(msg(where, ": '", text, "': unknown argument '", k,
                                "' (valid: bits, integer, symmetric, keep_negative, alpha)"));
        kv[k] = a.substr(eq + 1);
      }
    }
  if (!kv.count("bits")) throw ConfigError(msg(where, ": '", text, "': quantized_bits needs bits (e.g. quantized_bits(6, 0))"));
  const int bits = parse_int(kv["bits"], "bits", where, text);
  const int integer = kv.count("integer") ? parse_int(kv["integer"], "integer", where, text) : 0;
  const bool symmetric = kv.count("symmetric") ? parse_flag(kv["symmetric"], "symmetric", where, text) : false;
  const bool keep_negative = kv.count("keep_negative") ? parse_flag(kv["keep_negative"], "keep_negative", where, text) : true;
  if (kv.count("alpha")) {
    std::string a = kv["alpha"];
    if (a != "1" && a != "1.0" && a != "None" && a != "none")
      throw ConfigError(msg(where, ": '", text, "': alpha=", a,
                            " scales by a learned factor, which no ap_fixed type expresses (valid: alpha=1 or None)"));
  }
  FixedType t;
  t.width = bits;
  t.is_signed = keep_negative;
  t.int_bits = keep_negative ? integer + 1 : integer;
  t.quant = QMode::kRndConv;
  t.overflow = symmetric && keep_negative ? OMode::kSatSym : OMode::kSat;
  return t;
}

}  // namespace

const char* to_string(QMode q) {
  for (const auto& [m, n] : qmodes())
    if (m == q) return n;
  return "?";
}
const char* to_string(OMode o) {
  for (const auto& [m, n] : omodes())
    if (m == o) return n;
  return "?";
}

void validate(const FixedType& t, const std::string& where) {
  const std::string name = to_string(t);
  if (t.width < 1 || t.width > 62)
    throw ConfigError(msg(where, ": ", name, ": width W = ", t.width, " is out of range (expected 1..62)"));
  if (t.frac_bits() < -64 || t.frac_bits() > 64)
    throw ConfigError(msg(where, ": ", name, ": W - I = ", t.frac_bits(),
                          " fractional bits is out of range (expected -64..64, i.e. I in [W-64, W+64])"));
  if (t.sat_bits < 0 || t.sat_bits > t.width)
    throw ConfigError(msg(where, ": ", name, ": saturation bits N = ", t.sat_bits, " is out of range (expected 0..W)"));
  if (t.overflow == OMode::kSatSym && t.is_signed && t.width < 2)
    throw ConfigError(msg(where, ": ", name, ": AP_SAT_SYM needs at least 2 bits for a signed type"));
}

std::string to_string(const FixedType& t) {
  if (t.width >= 1 && t.int_bits == t.width && t.quant == QMode::kTrn && t.overflow == OMode::kWrap && t.sat_bits == 0)
    return msg(t.is_signed ? "ap_int<" : "ap_uint<", t.width, ">");
  std::string s = msg(t.is_signed ? "ap_fixed<" : "ap_ufixed<", t.width, ",", t.int_bits);
  if (t.quant != QMode::kTrn || t.overflow != OMode::kWrap || t.sat_bits != 0) s += msg(",", to_string(t.quant));
  if (t.overflow != OMode::kWrap || t.sat_bits != 0) s += msg(",", to_string(t.overflow));
  if (t.sat_bits != 0) s += msg(",", t.sat_bits);
  return s + ">";
}

FixedType parse_type(const std::string& text, const std::string& where) {
  std::string s;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  auto starts = [&](const std::string& p) { return s.compare(0, p.size(), p) == 0; };
  FixedType t;
  if (starts("quantized_bits(")) {
    if (s.back() != ')') throw ConfigError(msg(where, ": '", text, "' is missing its closing ')' (valid: ", kValid, ")"));
    t = parse_quantized_bits(s.substr(15, s.size() - 16), where, text);
    validate(t, where);
    return t;
  }
  std::string head;
  for (const char* h : {"ap_fixed<", "ap_ufixed<", "ap_int<", "ap_uint<"})
    if (starts(h)) head = h;
  if (head.empty()) throw ConfigError(msg(where, ": '", text, "' is not a fixed-point type (valid: ", kValid, ")"));
  if (s.back() != '>') throw ConfigError(msg(where, ": '", text, "' is missing its closing '>' (valid: ", kValid, ")"));
  auto args = split_args(s.substr(head.size(), s.size() - head.size() - 1));
  t.is_signed = head == "ap_fixed<" || head == "ap_int<";
  if (head == "ap_int<" || head == "ap_uint<") {
    if (args.size() != 1) throw ConfigError(msg(where, ": '", text, "': ", head, "W> takes one argument, the width"));
    t.width = t.int_bits = parse_int(args[0], "width W", where, text);
    if (t.width < 1) throw ConfigError(msg(where, ": '", text, "': width W = ", t.width, " must be at least 1"));
    validate(t, where);
    return t;
  }
  if (args.size() < 2 || args.size() > 5)
    throw ConfigError(msg(where, ": '", text, "' has ", args.size(), " arguments (expected W,I[,Q[,O[,N]]], e.g. ",
                          head, "16,6>)"));
  t.width = parse_int(args[0], "width W", where, text);
  if (t.width < 1) throw ConfigError(msg(where, ": '", text, "': width W = ", t.width, " must be at least 1"));
  t.int_bits = parse_int(args[1], "integer bits I", where, text);
  if (args.size() > 2) {
    bool found = false;
    for (const auto& [q, n] : qmodes())
      if (args[2] == n) t.quant = q, found = true;
    if (!found) {
      std::string hint = args[2] == "AP_WRAP_SM" ? " (AP_WRAP_SM is an overflow mode; squeeze does not support it)" : "";
      throw ConfigError(msg(where, ": '", text, "': unknown quantization mode '", args[2], "'", hint, " (valid: ", names_q(), ")"));
    }
  }
  if (args.size() > 3) {
    bool found = false;
    for (const auto& [o, n] : omodes())
      if (args[3] == n) t.overflow = o, found = true;
    if (!found)
      throw ConfigError(msg(where, ": '", text, "': unknown or unsupported overflow mode '", args[3], "' (valid: ",
                            names_o(), ")"));
  }
  if (args.size() > 4) {
    t.sat_bits = parse_int(args[4], "saturation bits N", where, text);
    if (t.sat_bits != 0 && t.overflow != OMode::kWrap)
      throw ConfigError(msg(where, ": '", text, "': saturation bits N = ", t.sat_bits,
                            " only apply to AP_WRAP (use N = 0 with ", to_string(t.overflow), ")"));
  }
  validate(t, where);
  return t;
}

FixedType infer_accumulator(const FixedType& input, const FixedType& weight, const FixedType* bias, int64_t n,
                            const std::string& where) {
  int lg = 0;
  while ((int64_t(1) << lg) < n) ++lg;  // ceil(log2 n), 0 for n = 1
  FixedType a;
  a.is_signed = input.is_signed || weight.is_signed;
  a.int_bits = weight.int_bits + input.int_bits + lg;
  int frac = weight.frac_bits() + input.frac_bits();
  if (bias) {
    a.int_bits = std::max(a.int_bits, bias->int_bits) + 1;
    frac = std::max(frac, bias->frac_bits());
    a.is_signed = a.is_signed || bias->is_signed;
  }
  a.width = a.int_bits + frac;
  if (a.width < 1 || a.width > 62 || frac < -64 || frac > 64)
    throw ConfigError(msg(where, ": the inferred accumulator ap_fixed<", a.width, ",", a.int_bits, "> (", n,
                          " products of ", to_string(input), " x ", to_string(weight),
                          ") is outside what squeeze emulates (1..62 bits); give accum explicitly"));
  return a;
}

ir::QuantSpec to_spec(const FixedType& t) {
  ir::QuantSpec s;
  s.rounding = to_string(t);
  s.bits = t.width;
  s.is_signed = t.is_signed;
  s.symmetric = true;
  s.narrow_range = t.is_signed && t.overflow == OMode::kSatSym;
  s.axis = -1;
  s.power_of_two = true;
  s.scale = at::scalar_tensor(t.lsb(), at::kFloat);
  s.zero_point = at::zeros({}, at::kLong);
  return s;
}

std::optional<FixedType> of_spec(const ir::QuantSpec& spec) {
  if (!is_fixed(spec)) return std::nullopt;
  return parse_type(spec.rounding, "quantization spec");
}

// ---- tensors ----------------------------------------------------------------------------------

namespace {

at::Tensor round_up(QMode q, const at::Tensor& tr, const at::Tensor& qb, const at::Tensor& r, const at::Tensor& neg) {
  switch (q) {
    case QMode::kTrn: return at::zeros_like(qb);
    case QMode::kTrnZero: return neg.logical_and(qb.logical_or(r));
    case QMode::kRnd: return qb;
    case QMode::kRndZero: return qb.logical_and(neg.logical_or(r));
    case QMode::kRndMinInf: return qb.logical_and(r);
    case QMode::kRndInf: return qb.logical_and(neg.logical_not().logical_or(r));
    case QMode::kRndConv: return qb.logical_and(tr.bitwise_and(1).ne(0).logical_or(r));
  }
  return at::zeros_like(qb);
}

int64_t low_mask(const FixedType& t) { return (int64_t(1) << t.width) - 1; }

at::Tensor overflow_result(const at::Tensor& low, const at::Tensor& over, const at::Tensor& under, const FixedType& t) {
  const int64_t lo = t.is_signed ? -(int64_t(1) << (t.width - 1)) : 0, hi = t.max_mantissa();
  auto full = [&](int64_t v) { return at::full_like(low, v); };
  switch (t.overflow) {
    case OMode::kSat: return at::where(over, full(hi), full(lo));
    case OMode::kSatZero: return at::zeros_like(low);
    case OMode::kSatSym: return at::where(over, full(hi), full(t.is_signed ? lo + 1 : 0));
    case OMode::kWrap: break;
  }
  const int64_t mask = low_mask(t);
  at::Tensor u = low.bitwise_and(mask);
  if (t.sat_bits > 0) {
    if (t.is_signed) {
      const int64_t sign = int64_t(1) << (t.width - 1);
      u = at::where(under, u.bitwise_or(sign), u.bitwise_and(~sign));
      if (t.sat_bits > 1) {
        const int64_t range = (sign - 1) & ~((int64_t(1) << (t.width - t.sat_bits)) - 1);
        u = at::where(under, u.bitwise_and(~range), u.bitwise_or(range));
      }
    } else {
      u = u.bitwise_or(mask & ~((int64_t(1) << (t.width - t.sat_bits)) - 1));
    }
  }
  if (t.is_signed) {
    const int64_t sign = int64_t(1) << (t.width - 1);
    u = at::where(u.bitwise_and(sign).ne(0), u - (mask + 1), u);
  }
  return u;
}

}  // namespace

at::Tensor apply_overflow(const at::Tensor& R, const FixedType& t) {
  const int64_t lo = t.is_signed ? -(int64_t(1) << (t.width - 1)) : 0, hi = t.max_mantissa();
  at::Tensor over = R.gt(hi);
  at::Tensor under = R.lt(lo);
  if (t.overflow == OMode::kSatSym && t.is_signed) under = under.logical_or(R.eq(lo));
  at::Tensor bad = over.logical_or(under);
  if (!bad.any().item<bool>()) return R;
  return at::where(bad, overflow_result(R, over, under, t), R);
}

at::Tensor from_float(const at::Tensor& x, const FixedType& t) {
  at::Tensor s = at::ldexp(x.detach().to(at::kDouble), at::scalar_tensor(t.frac_bits(), at::kDouble));
  at::Tensor nan = s.isnan();
  at::Tensor big = s.abs().ge(4611686018427387904.0).logical_or(s.isinf());
  at::Tensor safe = at::where(big.logical_or(nan), at::zeros_like(s), s);
  // As the scalar version: negative values decide on the exact fraction of their magnitude.
  at::Tensor neg = safe.lt(0);
  at::Tensor fl_pos = safe.floor();
  at::Tensor f_pos = safe - fl_pos;
  at::Tensor qb_pos = f_pos.ge(0.5);
  at::Tensor r_pos = at::where(qb_pos, f_pos.gt(0.5), f_pos.gt(0.0));
  at::Tensor a = safe.abs(), ia = a.floor();
  at::Tensor fa = a - ia;
  at::Tensor fl_neg = at::where(fa.eq(0.0), -ia, -ia - 1.0);
  at::Tensor qb_neg = fa.gt(0.0).logical_and(fa.le(0.5));
  at::Tensor r_neg = fa.gt(0.0).logical_and(fa.gt(0.5).logical_or(fa.lt(0.5)));
  at::Tensor fl = at::where(neg, fl_neg, fl_pos);
  at::Tensor qb = at::where(neg, qb_neg, qb_pos);
  at::Tensor r = at::where(neg, r_neg, r_pos);
  at::Tensor tr = fl.to(at::kLong);
  at::Tensor out = apply_overflow(tr + round_up(t.quant, tr, qb, r, x.detach().to(at::kDouble).lt(0)).to(at::kLong), t);
  if (big.any().item<bool>()) {
    const double mod = std::ldexp(1.0, t.width);
    at::Tensor finite = at::where(s.isinf(), at::zeros_like(s), s);
    at::Tensor rem = at::fmod(finite, mod);
    rem = at::where(rem.lt(0), rem + mod, rem);
    at::Tensor res = overflow_result(rem.to(at::kLong), s.gt(0), s.lt(0), t);
    out = at::where(big, res, out);
  }
  if (nan.any().item<bool>()) out = at::where(nan, at::zeros_like(out), out);
  return out;
}

at::Tensor convert(const at::Tensor& m0, int from_frac, const FixedType& t) {
  at::Tensor m = m0.to(at::kLong);
  const int shift = from_frac - t.frac_bits();
  if (shift >= 64) {
    at::Tensor neg = m.lt(0);
    at::Tensor tr = at::where(neg, at::full_like(m, -1), at::zeros_like(m));
    at::Tensor r = at::where(neg, shift >= 65 ? at::ones_like(neg) : m.bitwise_and(INT64_MAX).ne(0), m.ne(0));
    return apply_overflow(tr + round_up(t.quant, tr, neg, r, neg).to(at::kLong), t);
  }
  if (shift > 0) {
    at::Tensor tr = m.__rshift__(shift);
    const int64_t dmask = shift == 63 ? INT64_MAX : (int64_t(1) << shift) - 1;
    at::Tensor dropped = m.bitwise_and(dmask);
    at::Tensor qb = dropped.__rshift__(shift - 1).bitwise_and(1).ne(0);
    at::Tensor r = dropped.bitwise_and((int64_t(1) << (shift - 1)) - 1).ne(0);
    return apply_overflow(tr + round_up(t.quant, tr, qb, r, m.lt(0)).to(at::kLong), t);
  }
  if (shift == 0) return apply_overflow(m, t);
  const int left = -shift;
  const int64_t limit = left >= 62 ? 1 : (int64_t(1) << (62 - left));
  at::Tensor ok = m.gt(-limit).logical_and(m.lt(limit));
  at::Tensor scaled = at::where(ok, m, at::zeros_like(m)) * (left >= 63 ? 0 : (int64_t(1) << left));
  at::Tensor out = apply_overflow(scaled, t);
  if (!ok.all().item<bool>()) {
    at::Tensor low = left >= 64 ? at::zeros_like(m) : m.__lshift__(left);
    out = at::where(ok, out, overflow_result(low, m.gt(0), m.lt(0), t));
  }
  return out;
}

at::Tensor to_float(const at::Tensor& m, const FixedType& t, at::ScalarType dtype) {
  return at::ldexp(m.to(at::kDouble), at::scalar_tensor(-t.frac_bits(), at::kDouble)).to(dtype);
}

at::Tensor fake_quantize(const at::Tensor& x, const FixedType& t) {
  at::Tensor y = to_float(from_float(x, t), t, x.scalar_type());
  if (!x.requires_grad()) return y;
  const double lo = to_double(t.min_mantissa(), t), hi = to_double(t.max_mantissa(), t);
  at::Tensor inside = x.detach().ge(lo).logical_and(x.detach().le(hi)).to(x.scalar_type());
  return y + (x - x.detach()) * inside;
}

}  // namespace squeeze::fixed
