#include "squeeze/deploy/fpga.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>

#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"

namespace squeeze::deploy {

std::string FixedType::str() const {
  return std::string(is_signed ? "ap_fixed<" : "ap_ufixed<") + std::to_string(width) + "," +
         std::to_string(integer) + ">";
}

// The one place a type string is parsed here; the fixed-point types' own parser replaces it when
// they land (issue 12 part 3).
FixedType parse_fixed_type(const std::string& text, const std::string& where) {
  static const std::regex fixed(R"(\s*ap_(u?)fixed\s*<\s*(-?\d+)\s*,\s*(-?\d+)\s*(,\s*[A-Z_]+\s*){0,3}>\s*)");
  static const std::regex integer(R"(\s*ap_(u?)int\s*<\s*(-?\d+)\s*>\s*)");
  std::smatch m;
  FixedType t;
  const std::string valid = "valid: ap_fixed<W,I> or ap_ufixed<W,I> (optionally with quantization and "
                            "overflow modes, e.g. ap_fixed<16,6,AP_RND,AP_SAT>), ap_int<W>, ap_uint<W>";
  auto number = [&](const std::string& s) {
    if (s.size() > 6) throw ConfigError(msg(where, ": '", text, "': ", s, " is out of range; ", valid));
    return std::stoi(s);
  };
  if (std::regex_match(text, m, fixed)) {
    t.is_signed = m[1].str().empty();
    t.width = number(m[2].str());
    t.integer = number(m[3].str());
  } else if (std::regex_match(text, m, integer)) {
    t.is_signed = m[1].str().empty();
    t.width = number(m[2].str());
    t.integer = t.width;
  } else {
    throw ConfigError(msg(where, ": cannot read the type '", text, "'; ", valid));
  }
  if (t.width < 1)
    throw ConfigError(msg(where, ": '", text, "' is ", t.width, " bits wide; a type needs at least 1 bit"));
  if (t.width > 1024)
    throw ConfigError(msg(where, ": '", text, "' is ", t.width, " bits wide; at most 1024 (ap_fixed's limit)"));
  return t;
}

void FpgaOptions::check() const {
  if (!std::isfinite(clock_mhz) || clock_mhz <= 0)
    throw ConfigError(msg("clock_mhz: ", clock_mhz, " is not a clock frequency; give a positive number of MHz "
                          "(hls4ml's default is 200)"));
  if (reuse_factor < 1)
    throw ConfigError(msg("reuse_factor: ", reuse_factor, " is not valid; give an integer >= 1 (1: every "
                          "multiplication has its own multiplier)"));
  if (lut_mult_max_bits < 0)
    throw ConfigError(msg("lut_mult_max_bits: ", lut_mult_max_bits, " must be >= 0"));
  parse_fixed_type(precision, "precision");
  if (!input_precision.empty()) parse_fixed_type(input_precision, "input_precision");
}

int64_t hls4ml_n_mult(int64_t n_in, int64_t n_out, int64_t n_zeros, int64_t reuse_factor) {
  SQZ_ASSERT(reuse_factor >= 1 && n_zeros >= 0 && n_zeros <= n_in * n_out);
  const int64_t n = n_in * n_out;
  return (n + reuse_factor - 1) / reuse_factor - n_zeros / reuse_factor;
}

bool hls4ml_valid_reuse_factor(int64_t n_in, int64_t n_out, int64_t rf) {
  if (rf < 1 || n_in < 1 || n_out < 1) return false;
  const int64_t n = n_in * n_out;
  if (n % rf != 0) return false;
  if (rf < n_in) {
    const int64_t mult_limit = (n + rf - 1) / rf;
    return mult_limit % n_out == 0;
  }
  return rf % n_in == 0;
}

int64_t hls4ml_closest_reuse_factor(int64_t n_in, int64_t n_out, int64_t rf) {
  const int64_t n = n_in * n_out;
  int64_t best = -1;
  for (int64_t r = 1; r <= n; ++r) {
    if (!hls4ml_valid_reuse_factor(n_in, n_out, r)) continue;
    if (best < 0 || std::llabs(r - rf) < std::llabs(best - rf)) best = r;
  }
  SQZ_ASSERT(best >= 1, "reuse factor 1 is always valid");
  return best;
}

int csd_digits(int64_t c) {
  uint64_t n = c < 0 ? uint64_t(-(c + 1)) + 1 : uint64_t(c);
  int digits = 0;
  while (n) {
    if (n & 1) {
      ++digits;
      // A run of ones ...0111 becomes 100-1: subtract at the run's end instead of adding each.
      if ((n & 3) == 3) n += 1; else n -= 1;
    }
    n >>= 1;
  }
  return digits;
}

int dsp_per_product(int a_bits, int b_bits) {
  const int a = std::max(a_bits, b_bits), b = std::min(a_bits, b_bits);
  if (a <= 27 && b <= 18) return 1;
  return ((a + 26) / 27) * ((b + 17) / 18);
}

int adder_tree_depth(int64_t terms) {
  int d = 0;
  while ((int64_t(1) << d) < terms) ++d;
  return d;
}

namespace {

// Significant bits of a constant, sign included.
int constant_bits(int64_t c) {
  uint64_t n = c < 0 ? uint64_t(-(c + 1)) + 1 : uint64_t(c);
  int b = 0;
  while (n) {
    ++b;
    n >>= 1;
  }
  return b + 1;
}

double add_delay_ns(int bits) { return kAddBaseNs + kAddPerBitNs * bits; }

bool is_passthrough(const std::string& op) {
  return op == "Flatten" || op == "Reshape" || op == "Dropout" || op == "Identity";
}
bool is_relu(const std::string& op) { return op == "Relu" || op == "Relu6" || op == "LeakyRelu"; }

struct Context {
  const ir::Graph& graph;
  const FpgaOptions& opts;
  FixedType precision, input;
};

// The width of a value as the layer reading it sees it (see the header: "Widths").
int value_bits(const Context& cx, const std::string& value) {
  const ir::Node* p = cx.graph.producer(value);
  while (p) {
    if (p->out_qspec) return quant::grid_bits(*p->out_qspec);
    if (!(is_passthrough(p->op) || is_relu(p->op)) || p->inputs.empty()) return cx.precision.width;
    p = cx.graph.producer(p->inputs[0]);
  }
  return cx.input.width;
}

int64_t elements(const ir::Shape& s) {
  int64_t n = 1;
  for (size_t i = 1; i < s.size(); ++i) n *= s[i];
  return n;
}

// The weight as the integers the hardware multiplies by, and their width.
at::Tensor weight_integers(const ir::Node& n, const Context& cx, int& bits) {
  const ir::Param& w = n.param("weight");
  at::Tensor v = w.value.to(at::kDouble);
  if (w.mask) v = v * w.mask->to(at::kDouble);
  if (w.qspec && w.qspec->scale.defined()) {
    bits = quant::grid_bits(*w.qspec);
    at::Tensor scale = w.qspec->scale.to(at::kDouble);
    if (scale.numel() > 1) {
      const int64_t axis = w.qspec->axis < 0 ? 0 : w.qspec->axis;
      std::vector<int64_t> shape(v.dim(), 1);
      shape[axis] = scale.numel();
      scale = scale.reshape(shape);
    }
    return at::round(v / scale).to(at::kLong);
  }
  FixedType t = cx.precision;
  if (w.qspec) {
    // A grid without a stored scale: its bits, with the integer bits the weights need.
    t.width = quant::grid_bits(*w.qspec);
    const double max_abs = v.abs().max().item<double>();
    t.integer = max_abs > 0 ? std::max(1, int(std::ceil(std::log2(max_abs))) + 1) : 1;
  }
  bits = t.width;
  const double step = std::ldexp(1.0, t.width - t.integer);
  const double lo = t.is_signed ? -std::ldexp(1.0, t.width - 1) : 0.0;
  const double hi = t.is_signed ? std::ldexp(1.0, t.width - 1) - 1 : std::ldexp(1.0, t.width) - 1;
  // AP_TRN (floor), the default quantization mode; out-of-range constants are clamped.
  return at::clamp(at::floor(v * step), lo, hi).to(at::kLong);
}

FpgaLayer dense_layer(const ir::Node& n, const Context& cx) {
  FpgaLayer l;
  l.name = n.name;
  l.op = n.op;
  const ir::Shape& in_shape = cx.graph.shape_of(n.inputs[0]);
  if (in_shape.size() != 2)
    throw UnsupportedError(msg("fpga estimate: layer '", n.name, "' (", n.op, ") reads a rank-", in_shape.size(),
                               " input ", ir::shape_str(in_shape),
                               "; the model covers dense layers on [batch, features] inputs (hls4ml io_parallel Dense)"));
  const at::Tensor& wv = n.param("weight").value;
  l.n_out = wv.size(0);
  l.n_in = wv.size(1);
  l.weights = l.n_in * l.n_out;
  const ir::Param& wp = n.param("weight");
  at::Tensor eff = wp.mask ? wp.value * *wp.mask : wp.value;
  l.zeros = eff.eq(0).sum().item<int64_t>();
  l.input_bits = value_bits(cx, n.inputs[0]);
  l.result_bits = n.out_qspec ? quant::grid_bits(*n.out_qspec) : cx.precision.width;
  at::Tensor c = weight_integers(n, cx, l.weight_bits).contiguous();
  const bool has_bias = n.has_param("bias");

  const int64_t requested = cx.opts.reuse_factor;
  l.reuse_factor = requested;
  if (!hls4ml_valid_reuse_factor(l.n_in, l.n_out, requested)) {
    l.reuse_factor = hls4ml_closest_reuse_factor(l.n_in, l.n_out, requested);
    l.notes.push_back(msg("reuse factor ", requested, " is not valid for ", l.n_in, " x ", l.n_out,
                          " (hls4ml needs n_in * n_out % R == 0 and, for R < n_in, ceil(n_in * n_out / R) % n_out "
                          "== 0, else R % n_in == 0); hls4ml would use the closest valid one, ",
                          l.reuse_factor, ", and so does this estimate"));
  }
  l.n_mult = hls4ml_n_mult(l.n_in, l.n_out, l.zeros, l.reuse_factor);

  const int64_t* data = c.data_ptr<int64_t>();
  int64_t k_max = 0, adders = 0;
  for (int64_t o = 0; o < l.n_out; ++o) {
    int64_t k = 0;
    for (int64_t i = 0; i < l.n_in; ++i) {
      const int64_t v = data[o * l.n_in + i];
      if (v == 0) continue;
      ++k;
      if (l.reuse_factor > 1) continue;  // generic multipliers, counted below
      const int wc = constant_bits(v);
      const int wp = l.input_bits + wc;
      const int digits = csd_digits(v);
      if (digits == 1) {
        ++l.shift_products;
        if (v < 0) l.lut += wp;
      } else if (digits == 2) {
        ++l.adder_products;
        l.lut += wp;
      } else if (std::max(l.input_bits, wc) <= cx.opts.lut_mult_max_bits) {
        ++l.lut_products;
        l.lut += int64_t(digits - 1) * wp;
      } else {
        ++l.dsp_products;
        l.dsp += dsp_per_product(l.input_bits, wc);
        l.lut += kLutPerDspProduct;
      }
    }
    k_max = std::max(k_max, k);
    adders += has_bias ? k : std::max<int64_t>(k - 1, 0);
  }
  if (l.reuse_factor > 1) {
    if (std::max(l.input_bits, l.weight_bits) <= cx.opts.lut_mult_max_bits) {
      l.lut_products = l.n_mult;
      l.lut += l.n_mult * ((int64_t(l.input_bits) * l.weight_bits + 1) / 2);
    } else {
      l.dsp_products = l.n_mult;
      l.dsp += l.n_mult * dsp_per_product(l.input_bits, l.weight_bits);
      l.lut += l.n_mult * kLutPerDspProduct;
    }
  }
  l.lut += adders * l.result_bits;
  l.adder_depth = adder_tree_depth(k_max + (has_bias ? 1 : 0));
  const double t_mult = l.dsp_products ? kDspDelayNs : l.lut_products ? kLutMultDelayNs : 0.0;
  l.path_ns = t_mult + l.adder_depth * add_delay_ns(l.result_bits);
  const double usable = 1000.0 / cx.opts.clock_mhz * (1.0 - kClockUncertainty);
  const int64_t core = std::max<int64_t>(1, int64_t(std::ceil(l.path_ns / usable - 1e-9)));
  l.cycles = core + (l.reuse_factor - 1) + 1;
  l.ff = (core + l.reuse_factor - 1 + 1) * l.n_out * l.result_bits;
  return l;
}

}  // namespace

FpgaEstimate estimate_fpga(const ir::Graph& graph, const FpgaOptions& options) {
  options.check();
  Context cx{graph, options, parse_fixed_type(options.precision, "precision"),
             parse_fixed_type(options.input_precision.empty() ? options.precision : options.input_precision,
                              "input_precision")};
  if (graph.inputs.size() != 1)
    throw UnsupportedError(msg("fpga estimate: the model has ", graph.inputs.size(),
                               " inputs; the model covers single-input networks"));
  FpgaEstimate est;
  est.options = options;

  FpgaLayer in;
  in.name = graph.inputs[0].name;
  in.op = "Input";
  in.n_in = in.n_out = elements(graph.inputs[0].shape);
  in.input_bits = in.result_bits = cx.input.width;
  in.cycles = 1;
  in.ff = in.n_out * in.result_bits;
  est.layers.push_back(in);

  auto softmax = [&](const std::string& name, const std::string& value, int64_t n) {
    FpgaLayer s;
    s.name = name;
    s.op = "Softmax";
    s.n_in = s.n_out = n;
    s.input_bits = value_bits(cx, value);
    s.result_bits = cx.precision.width;
    s.cycles = kSoftmaxCycles + std::max(0, adder_tree_depth(n) - 3);
    s.dsp = n;
    s.lut = n * kSoftmaxLutPerClass;
    s.ff = s.cycles * n * s.result_bits;
    return s;
  };

  bool ends_in_softmax = false;
  for (const ir::Node& n : graph.nodes) {
    if (is_passthrough(n.op)) continue;
    if (n.op == "Linear") {
      est.layers.push_back(dense_layer(n, cx));
    } else if (is_relu(n.op)) {
      FpgaLayer r;
      r.name = n.name;
      r.op = n.op;
      r.n_in = r.n_out = elements(graph.shape_of(n.outputs[0]));
      r.input_bits = value_bits(cx, n.inputs[0]);
      r.result_bits = value_bits(cx, n.outputs[0]);
      r.lut = int64_t(std::llround(kReluLutPerBit * r.input_bits)) * r.n_out;
      est.layers.push_back(r);
    } else if (n.op == "Softmax") {
      const ir::Shape& s = graph.shape_of(n.outputs[0]);
      est.layers.push_back(softmax(n.name, n.inputs[0], s.empty() ? 1 : s.back()));
      ends_in_softmax = std::find(graph.outputs.begin(), graph.outputs.end(), n.outputs[0]) != graph.outputs.end();
    } else {
      throw UnsupportedError(msg("fpga estimate: layer '", n.name, "' is a ", n.op,
                                 ", which the FPGA cost model does not cover; it covers Linear (hls4ml Dense, "
                                 "io_parallel), Relu, Relu6, LeakyRelu, Softmax and the pass-through ops Flatten, "
                                 "Reshape, Dropout, Identity"));
    }
  }
  if (options.add_softmax) {
    if (ends_in_softmax)
      throw ConfigError("softmax: the model already ends in a Softmax, which is counted; adding one would count it "
                        "twice (leave the option off)");
    if (graph.outputs.size() != 1)
      throw ConfigError(msg("softmax: the model has ", graph.outputs.size(), " outputs; a softmax can be added "
                            "after a single output"));
    const ir::Shape& s = graph.shape_of(graph.outputs[0]);
    est.layers.push_back(softmax("softmax (added)", graph.outputs[0], s.empty() ? 1 : s.back()));
  }

  for (const FpgaLayer& l : est.layers) {
    est.cycles += l.cycles;
    est.dsp += l.dsp;
    est.lut += l.lut;
    est.ff += l.ff;
    est.interval = std::max(est.interval, l.reuse_factor);
    for (const std::string& note : l.notes) est.notes.push_back(l.name + ": " + note);
  }
  est.latency_ns = double(est.cycles) * 1000.0 / options.clock_mhz;
  return est;
}

}  // namespace squeeze::deploy
