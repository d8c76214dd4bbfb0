#include "squeeze/compress/quantize/fixed_point.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/ir/fixed_point.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

namespace {

constexpr int kMaxValueBits = 24;  // exact in float32, the executor's value dtype

const std::string& field(const FixedPointKinds& k, const std::string& kind) {
  if (kind == "weight") return k.weight;
  if (kind == "bias") return k.bias;
  if (kind == "result") return k.result;
  return k.accum;
}

fixed::FixedType parse_checked(const std::string& text, const std::string& where, bool value) {
  fixed::FixedType t;
  try {
    t = fixed::parse_type(text, where);
  } catch (const ConfigError& e) {
    std::string m = e.what();
    if (text.find('<') != std::string::npos && text.find('>') == std::string::npos)
      m += " (inside a YAML flow map {...} a comma splits the value: quote the type, \"ap_fixed<16,6>\")";
    throw ConfigError(m);
  }
  if (value && t.width > kMaxValueBits)
    throw ConfigError(msg(where, ": ", fixed::to_string(t), " has ", t.width,
                          " bits; weights, biases, inputs and results may have at most ", kMaxValueBits,
                          " (values flow as float32 between layers); only accum may be wider (up to 62)"));
  return t;
}

bool matches(const std::string& pattern, const ir::Node& n) { return pattern == n.op || glob_match(pattern, n.name); }

// Ops through which a value keeps its type unchanged.
bool passes_type(const std::string& op) {
  return op == "Flatten" || op == "Reshape" || op == "Identity" || op == "Dropout" || op == "MaxPool";
}

}  // namespace

void FixedPointOptions::validate() const {
  parse_checked(default_type, "default", true);
  if (!input.empty()) parse_checked(input, "input", true);
  for (const std::string kind : {"weight", "bias", "result", "accum"}) {
    if (!field(kinds, kind).empty()) parse_checked(field(kinds, kind), kind, kind != "accum");
    for (const auto& [pattern, k] : layers)
      if (!field(k, kind).empty()) parse_checked(field(k, kind), msg("layers.", pattern, ".", kind), kind != "accum");
  }
}

FixedPointOptions FixedPointOptions::from_params(Params& p) {
  FixedPointOptions o;
  const std::string type_help = "ap_fixed<W,I[,Q[,O[,N]]]>, ap_ufixed<...>, ap_int<W>, ap_uint<W> or quantized_bits(b,i)";
  o.default_type = p.get_string("default", o.default_type);
  p.document("default", type_help, "the type of every tensor not given one below (hls4ml's default precision)");
  o.input = p.get_string("input", o.input);
  p.document("input", type_help, "the graph input's type (default: default)");
  o.kinds.weight = p.get_string("weight", "");
  p.document("weight", type_help, "every layer's weights (default: default)");
  o.kinds.bias = p.get_string("bias", "");
  p.document("bias", type_help, "every layer's biases (default: default)");
  o.kinds.result = p.get_string("result", "");
  p.document("result", type_help, "every layer's, Relu's and Add's output (default: default)");
  o.kinds.accum = p.get_string("accum", "");
  p.document("accum", type_help + " (up to 62 bits)",
             "every layer's accumulator (default: inferred as hls4ml, W = Ww+Wx+ceil(log2 n), I = Iw+Ix+ceil(log2 n), "
             "one more integer bit for the bias)");
  if (auto lm = p.get_map("layers")) {
    for (const auto& pattern : lm->keys()) {
      auto m = lm->get_map(pattern);
      if (!m)
        throw ConfigError(msg(lm->key_path(pattern), ": expected a map of types, e.g. {weight: \"ap_fixed<8,3>\", "
                              "result: \"ap_fixed<12,5>\"} (keys: weight, bias, result, accum)"));
      FixedPointKinds k;
      k.weight = m->get_string("weight", "");
      k.bias = m->get_string("bias", "");
      k.result = m->get_string("result", "");
      k.accum = m->get_string("accum", "");
      m->finish();
      o.layers[pattern] = k;
    }
  }
  p.document("layers", "a map: node-name glob or op type -> {weight, bias, result, accum}",
             "per-layer types; an exact name wins, then the longest matching pattern");
  o.exclude = p.get_strings("exclude");
  p.document("exclude", "node-name globs or op types", "layers kept float");
  o.fold_bn = p.get_bool("fold_bn", o.fold_bn);
  p.document("fold_bn", "", "fold BatchNorm that follows a Linear into it first (as hls4ml)");
  finish_and_validate(p, o);
  return o;
}

FixedPoint::FixedPoint(FixedPointOptions options) : options_(std::move(options)) { options_.validate(); }

std::optional<fixed::FixedType> FixedPoint::resolve(const ir::Node& n, const std::string& kind) const {
  std::string text, where;
  size_t best = 0;
  for (const auto& [pattern, k] : options_.layers) {
    const std::string& v = field(k, kind);
    if (v.empty()) continue;
    if (pattern == n.name) {
      text = v, where = msg("layers.", pattern, ".", kind);
      break;
    }
    if (matches(pattern, n) && pattern.size() >= best) {
      text = v, where = msg("layers.", pattern, ".", kind);
      best = pattern.size();
    }
  }
  if (text.empty() && !field(options_.kinds, kind).empty()) text = field(options_.kinds, kind), where = kind;
  if (text.empty()) {
    if (kind == "accum") return std::nullopt;
    text = options_.default_type, where = "default";
  }
  return parse_checked(text, where, kind != "accum");
}

PassResult FixedPoint::run(const ir::Graph& graph, PassContext& ctx) {
  at::NoGradGuard no_grad;
  PassResult result{graph.clone(), "", true};
  ir::Graph& g = result.graph;
  const int folded = options_.fold_bn ? Quantize::fold_batchnorm(g) : 0;
  auto excluded = [&](const ir::Node& n) {
    return std::any_of(options_.exclude.begin(), options_.exclude.end(), [&](const auto& p) { return matches(p, n); });
  };

  std::map<std::string, fixed::FixedType> type_of;  // value -> its fixed-point type
  const fixed::FixedType input_type =
      parse_checked(options_.input.empty() ? options_.default_type : options_.input,
                    options_.input.empty() ? "default" : "input", true);
  for (const auto& in : graph.inputs) {
    if (!at::isFloatingType(in.dtype)) continue;
    const std::string q = g.unique_name(in.name + "_fixed");
    ir::replace_uses(g, in.name, q);
    ir::Node id;
    id.name = q;
    id.op = "Identity";
    id.inputs = {in.name};
    id.outputs = {q};
    id.out_qspec = fixed::to_spec(input_type);
    g.nodes.insert(g.nodes.begin(), id);
    type_of[q] = input_type;
  }

  std::vector<std::string> layers, typed, kept_float, float_inputs;
  std::map<std::string, int> typed_ops;
  int64_t nweights = 0;
  std::set<std::string> weight_types, bias_types, result_types;
  std::vector<std::string> accums;
  for (auto& n : g.nodes) {
    if (n.out_qspec && fixed::is_fixed(*n.out_qspec) && type_of.count(n.outputs[0])) continue;  // the input Identity
    if (excluded(n)) {
      if (n.op == "Linear") kept_float.push_back(n.name + " (excluded)");
      continue;
    }
    if (n.op == "Linear" && n.has_param("weight") && n.param("weight").value.dim() == 2 &&
        n.param("weight").value.is_floating_point() && !n.param("weight").qspec) {
      fixed::FixedType in_t;
      auto it = type_of.find(n.inputs[0]);
      if (it != type_of.end()) {
        in_t = it->second;
      } else {
        in_t = *resolve(n, "result");
        float_inputs.push_back(n.name);
      }
      const fixed::FixedType w_t = *resolve(n, "weight");
      std::optional<fixed::FixedType> b_t;
      if (n.has_param("bias")) b_t = *resolve(n, "bias");
      const fixed::FixedType r_t = *resolve(n, "result");
      const int64_t fan_in = n.param("weight").value.size(1);
      std::optional<fixed::FixedType> a_t = resolve(n, "accum");
      const bool inferred = !a_t;
      if (!a_t) a_t = fixed::infer_accumulator(in_t, w_t, b_t ? &*b_t : nullptr, fan_in, msg("layer '", n.name, "'"));
      ir::Param& w = n.param("weight");
      at::Tensor wv = w.value.detach();
      if (w.mask) wv = wv * *w.mask;
      w.qspec = fixed::to_spec(w_t);
      w.value = quant::fake_quantize(wv, *w.qspec).contiguous();
      if (b_t) {
        ir::Param& b = n.param("bias");
        b.qspec = fixed::to_spec(*b_t);
        b.value = quant::fake_quantize(b.value.detach(), *b.qspec).contiguous();
        bias_types.insert(fixed::to_string(*b_t));
      }
      n.attrs[exec::kFixedInputAttr] = fixed::to_string(in_t);
      n.attrs[exec::kFixedAccumAttr] = fixed::to_string(*a_t);
      n.out_qspec = fixed::to_spec(r_t);
      type_of[n.outputs[0]] = r_t;
      layers.push_back(n.name);
      nweights += w.value.numel();
      weight_types.insert(fixed::to_string(w_t));
      result_types.insert(fixed::to_string(r_t));
      accums.push_back(msg(n.name, " ", fixed::to_string(*a_t), inferred ? "" : " (given)"));
      continue;
    }
    if ((n.op == "Relu" || n.op == "Add") && !n.out_qspec && n.outputs.size() == 1) {
      const fixed::FixedType r_t = *resolve(n, "result");
      n.out_qspec = fixed::to_spec(r_t);
      type_of[n.outputs[0]] = r_t;
      ++typed_ops[n.op];
      result_types.insert(fixed::to_string(r_t));
      continue;
    }
    if (passes_type(n.op) && !n.inputs.empty() && !n.out_qspec && type_of.count(n.inputs[0])) {
      type_of[n.outputs[0]] = type_of[n.inputs[0]];
      continue;
    }
    if (n.op == "Linear" || n.op == "Conv" || n.op == "MatMul" || n.op == "Gemm")
      kept_float.push_back(n.name + " (" + n.op + (n.op == "Linear" ? ", already quantized)" : ": no fixed-point kernel)"));
  }
  ir::verify(g);
  if (layers.empty()) {
    // Nothing to type: the graph is returned as it was (BatchNorm folding aside).
    ir::Graph unchanged = graph.clone();
    if (folded) {
      Quantize::fold_batchnorm(unchanged);
      ir::verify(unchanged);
    }
    return {unchanged, "nothing to put in fixed point (no float Linear layer outside the exclusions)", folded > 0};
  }
  auto list = [](const std::set<std::string>& s) { return join(std::vector<std::string>(s.begin(), s.end()), " / "); };
  std::ostringstream o;
  o << "fixed point: " << layers.size() << " Linear layers (" << with_commas(nweights) << " weights); input "
    << fixed::to_string(input_type) << ", weights " << list(weight_types);
  if (!bias_types.empty()) o << ", biases " << list(bias_types);
  o << ", results " << list(result_types) << "; accumulators " << join(accums, ", ");
  for (const auto& [op, count] : typed_ops) o << "; " << count << " " << op << " typed";
  if (folded) o << "; folded " << folded << " BatchNorm";
  if (!float_inputs.empty()) o << "; input cast from a float op: " << join(float_inputs, ", ");
  if (!kept_float.empty()) o << "; kept float: " << join(kept_float, ", ");
  o << "; other ops float (evaluated exactly in eval mode: exec/fixed.h)";
  result.summary = o.str();
  return result;
}

void FixedPoint::finalize(ir::Graph& graph) { quant::snap_to_grid(graph); }

}  // namespace squeeze::compress
