#include "squeeze/compress/quantize/quantize.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "squeeze/compress/quantize/observers.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/log.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

namespace {

bool valid_bits(int b) { return b >= 2 && b <= 8; }

bool matches(const std::string& pattern, const ir::Node& n) { return pattern == n.op || glob_match(pattern, n.name); }

}  // namespace

void QuantizeOptions::validate() const {
  if (mode != "ptq" && mode != "dynamic" && mode != "qat")
    throw ConfigError(msg("mode: '", mode, "' is not valid (valid: ptq, dynamic, qat)"));
  if (!valid_bits(weight_bits))
    throw ConfigError(msg("weight_bits: ", weight_bits, " is out of range (expected 2..8)"));
  if (act_bits != 0 && !valid_bits(act_bits))
    throw ConfigError(msg("act_bits: ", act_bits, " is out of range (expected 2..8, or 0 for weights only)"));
  if (mode == "dynamic" && weight_bits != 8)
    throw ConfigError(msg("weight_bits: dynamic quantization is int8 (got ", weight_bits,
                          "); use mode: ptq or qat for other widths"));
  if (output_bits != 0 && (act_bits == 0 || mode == "dynamic"))
    throw ConfigError(msg("output_bits: ", output_bits, " sets the bits of the model's quantized output, but ",
                          mode == "dynamic" ? "mode: dynamic" : "act_bits: 0",
                          " quantizes no activations (remove output_bits, or use mode ptq/qat with act_bits 2..8)"));
  if (mode == "dynamic" && act_bits != 8)
    throw ConfigError(msg("act_bits: dynamic quantization quantizes activations to 8 bits on the fly (got ", act_bits,
                          "); use mode: ptq for weights-only quantization"));
  for (const auto& [pattern, bits] : layers)
    if (bits != 0 && !valid_bits(bits))
      throw ConfigError(msg("layers.", pattern, ": ", bits, " bits is out of range (expected 2..8, or 0 for float)"));
  if (rounding != "half_even" && rounding != "half_up")
    throw ConfigError(msg("rounding: '", rounding, "' is not valid (valid: half_even, half_up)"));
  if (std::find(quant::Observer::kinds().begin(), quant::Observer::kinds().end(), observer) ==
      quant::Observer::kinds().end())
    throw ConfigError(msg("observer: '", observer, "' is not valid (valid: ", join(quant::Observer::kinds(), ", "), ")"));
  if (!(percentile > 50.0 && percentile <= 100.0))
    throw ConfigError(msg("percentile: ", percentile, " is out of range (expected (50, 100])"));
  if (calibration_batches < 1) throw ConfigError(msg("calibration_batches: ", calibration_batches, " must be >= 1"));
  if (lsq && mode != "qat") throw ConfigError(msg("lsq: learned scales need mode: qat (mode is ", mode, ")"));
  if (freeze_observers_after >= 0 && mode != "qat")
    throw ConfigError(msg("freeze_observers_after: only applies to mode: qat (mode is ", mode, ")"));
  if (lsq && power_of_two)
    throw ConfigError("lsq: learned scales cannot be restricted to powers of two (power_of_two: true)");
  if (act_symmetric && !act_signed && narrow_range && act_bits > 0)
    throw ConfigError("act_symmetric: symmetric unsigned activations cannot use a narrow range");
  if (reduce_range != "auto" && reduce_range != "true" && reduce_range != "false")
    throw ConfigError(msg("reduce_range: '", reduce_range, "' is not valid (valid: auto, true, false)"));
  if (sensitivity_samples < 1) throw ConfigError(msg("sensitivity_samples: ", sensitivity_samples, " must be >= 1"));
  if (observer_update_every < 1)
    throw ConfigError(msg("observer_update_every: ", observer_update_every, " must be >= 1"));
}

QuantizeOptions QuantizeOptions::from_params(Params& p) {
  QuantizeOptions o;
  o.mode = p.get_choice("mode", o.mode, {"ptq", "dynamic", "qat"});
  if (o.mode == "dynamic") {
    o.per_channel = false;  // PyTorch's default for dynamic quantization
    o.ops = {"Linear", "Conv"};
  }
  o.weight_bits = static_cast<int>(p.get_int("weight_bits", o.weight_bits, 2, 8));
  o.act_bits = static_cast<int>(p.get_int("act_bits", o.act_bits, 0, 8));
  if (o.act_bits == 1) throw ConfigError(msg(p.key_path("act_bits"), ": 1 is out of range (expected 2..8, or 0)"));
  o.output_bits = static_cast<int>(p.get_int("output_bits", o.output_bits, 0, 8));
  if (o.output_bits == 1)
    throw ConfigError(msg(p.key_path("output_bits"), ": 1 is out of range (expected 2..8, or 0 for act_bits)"));
  o.per_channel = p.get_bool("per_channel", o.per_channel);
  o.symmetric = p.get_bool("symmetric", o.symmetric);
  o.act_symmetric = p.get_bool("act_symmetric", o.act_symmetric);
  o.act_signed = p.get_bool("act_signed", o.act_signed);
  o.narrow_range = p.get_bool("narrow_range", o.narrow_range);
  o.reduce_range = p.get_choice("reduce_range", o.reduce_range, {"auto", "true", "false"});
  o.rounding = p.get_choice("rounding", o.rounding, {"half_even", "half_up"});
  o.power_of_two = p.get_bool("power_of_two", o.power_of_two);
  o.observer = p.get_choice("observer", o.observer, quant::Observer::kinds());
  o.percentile = p.get_double("percentile", o.percentile, 50.000001, 100.0);
  o.calibration_batches = p.get_int("calibration_batches", o.calibration_batches, 1);
  for (const auto& [pattern, text] : p.get_string_map("layers")) {
    std::string key = p.key_path("layers") + "." + pattern;
    int bits = -1;
    if (text == "float" || text == "fp32") {
      bits = 0;
    } else {
      try {
        size_t used = 0;
        bits = std::stoi(text, &used);
        if (used != text.size()) bits = -1;
      } catch (const std::exception&) {
        bits = -1;
      }
    }
    if (bits != 0 && !valid_bits(bits))
      throw ConfigError(msg(key, ": '", text, "' is not a valid bit width (expected 2..8, or 0/float to keep float)"));
    o.layers[pattern] = bits;
  }
  o.exclude = p.get_strings("exclude");
  if (p.has("ops")) o.ops = p.get_strings("ops");
  o.bias_correction = p.get_bool("bias_correction", o.bias_correction);
  o.fold_bn = p.get_bool("fold_bn", o.fold_bn);
  o.lsq = p.get_bool("lsq", o.lsq);
  o.freeze_observers_after = p.get_int("freeze_observers_after", o.freeze_observers_after, -1);
  o.observer_update_every = p.get_int("observer_update_every", o.observer_update_every, 1);
  o.sensitivity = p.get_bool("sensitivity", o.sensitivity);
  o.sensitivity_samples = p.get_int("sensitivity_samples", o.sensitivity_samples, 1);
  o.sensitivity_out = p.get_string("sensitivity_out", o.sensitivity_out);
  finish_and_validate(p, o);
  return o;
}

Quantize::Quantize(QuantizeOptions options) : options_(std::move(options)) { options_.validate(); }

int Quantize::fold_batchnorm(ir::Graph& g) {
  at::NoGradGuard no_grad;
  int folded = 0;
  for (size_t i = 0; i < g.nodes.size();) {
    ir::Node& bn = g.nodes[i];
    const ir::Node* prod = bn.op == "BatchNorm" ? g.producer(bn.inputs[0]) : nullptr;
    bool ok = prod && (prod->op == "Conv" || prod->op == "Linear") && prod->has_param("weight") &&
              !prod->param("weight").qspec && g.consumers(bn.inputs[0]).size() == 1 &&
              std::find(g.outputs.begin(), g.outputs.end(), bn.inputs[0]) == g.outputs.end() &&
              prod->outputs.size() == 1 && !prod->out_qspec;
    if (!ok) {
      ++i;
      continue;
    }
    ir::Node& layer = *g.find_node(prod->name);
    at::Tensor gamma = bn.param("weight").value.detach(), beta = bn.param("bias").value.detach();
    at::Tensor mean = bn.param("running_mean").value, var = bn.param("running_var").value;
    at::Tensor f = gamma / at::sqrt(var + bn.attr_float("epsilon", 1e-5));
    ir::Param& w = layer.param("weight");
    std::vector<int64_t> shape(static_cast<size_t>(w.value.dim()), 1);
    shape[0] = -1;
    w.value = (w.value.detach() * f.reshape(shape)).contiguous();
    at::Tensor b = layer.has_param("bias") ? layer.param("bias").value.detach() : at::zeros_like(mean);
    ir::Param bias;
    bias.value = ((b - mean) * f + beta).contiguous();
    layer.params["bias"] = bias;
    std::string from = bn.outputs[0], to = bn.inputs[0];
    g.nodes.erase(g.nodes.begin() + static_cast<std::ptrdiff_t>(i));
    ir::replace_uses(g, from, to);
    ++folded;
  }
  return folded;
}

std::vector<std::pair<std::string, int>> Quantize::targets(const ir::Graph& g) const {
  std::vector<std::pair<std::string, int>> out;
  for (const auto& n : g.nodes) {
    if (std::find(options_.ops.begin(), options_.ops.end(), n.op) == options_.ops.end()) continue;
    if (!n.has_param("weight") || n.param("weight").qspec || !n.param("weight").value.is_floating_point()) continue;
    bool excluded = false;
    for (const auto& pat : options_.exclude) excluded |= matches(pat, n);
    if (excluded) continue;
    int bits = options_.weight_bits;
    size_t best = 0;
    bool exact = false;
    for (const auto& [pat, b] : options_.layers) {
      if (exact) break;
      if (pat == n.name) {
        bits = b;
        exact = true;
      } else if (matches(pat, n) && pat.size() >= best) {
        bits = b;
        best = pat.size();
      }
    }
    if (bits > 0) out.emplace_back(n.name, bits);
  }
  return out;
}

bool Quantize::reduce_weight_range(int bits) const {
  if (bits != 8 || options_.reduce_range == "false") return false;
  return options_.reduce_range == "true" || quant::int8_saturates();
}

ir::QuantSpec Quantize::weight_spec(int bits, const ir::Node& node) const {
  ir::QuantSpec s;
  s.bits = bits;
  s.reduce_range = reduce_weight_range(bits);
  s.is_signed = true;
  s.symmetric = options_.symmetric;
  s.narrow_range = options_.narrow_range;
  s.axis = options_.per_channel ? 0 : -1;
  s.rounding = options_.rounding;
  s.power_of_two = options_.power_of_two;
  return s;
}

ir::QuantSpec Quantize::act_spec_for(const std::string& value) const {
  ir::QuantSpec s = act_spec();
  if (options_.output_bits > 0 && std::find(model_outputs_.begin(), model_outputs_.end(), value) != model_outputs_.end())
    s.bits = options_.output_bits;
  return s;
}

ir::QuantSpec Quantize::act_spec() const {
  ir::QuantSpec s;
  s.bits = options_.act_bits;
  s.is_signed = options_.act_signed;
  s.symmetric = options_.act_symmetric;
  s.narrow_range = false;
  s.axis = -1;
  s.rounding = options_.rounding;
  s.power_of_two = options_.power_of_two;
  return s;
}

void Quantize::quantize_weight(ir::Node& node, int bits) const {
  at::NoGradGuard no_grad;
  ir::Param& p = node.param("weight");
  ir::QuantSpec s = weight_spec(bits, node);
  at::Tensor w = p.value.detach().to(at::kFloat);
  if (p.mask) w = w * *p.mask;
  if (s.axis == 0 && w.dim() >= 1) {
    at::Tensor flat = w.reshape({w.size(0), -1});
    quant::choose_qparams(s, std::get<0>(flat.min(1)), std::get<0>(flat.max(1)));
  } else {
    quant::choose_qparams(s, w.min().item<double>(), w.max().item<double>());
  }
  p.value = quant::fake_quantize(w, s).contiguous();
  p.qspec = s;
}

std::vector<std::string> Quantize::activation_points(ir::Graph& g, const std::vector<std::string>& layers) const {
  std::vector<std::string> points;
  auto add = [&](const std::string& v) {
    if (std::find(points.begin(), points.end(), v) == points.end()) points.push_back(v);
  };
  for (const auto& name : layers) {
    const ir::Node* n = g.find_node(name);
    if (!n || n->inputs.empty()) continue;
    add(n->outputs[0]);
    // Look through grid-keeping ops to the value that must be quantized.
    std::string v = n->inputs[0];
    for (int guard = 0; guard < 64; ++guard) {
      const ir::Node* p = g.producer(v);
      if (!p) {
        // A graph input: quantize it with an Identity node the consumers read instead.
        std::string q = g.unique_name(v + "_quant");
        bool exists = false;
        for (const auto& node : g.nodes) exists |= node.op == "Identity" && node.inputs[0] == v && node.out_qspec;
        if (!exists) {
          ir::replace_uses(g, v, q);
          ir::Node id;
          id.name = q;
          id.op = "Identity";
          id.inputs = {v};
          id.outputs = {q};
          g.nodes.insert(g.nodes.begin(), id);
          v = q;
        } else {
          for (const auto& node : g.nodes)
            if (node.op == "Identity" && node.inputs[0] == v && node.out_qspec) v = node.outputs[0];
        }
        break;
      }
      if (p->out_qspec || !quant::keeps_grid(p->op) || p->inputs.empty() || p->outputs[0] != v ||
          std::find(layers.begin(), layers.end(), p->name) != layers.end())
        break;
      v = p->inputs[0];
    }
    add(v);
  }
  return points;
}

namespace {

// Runs the graph with the given values as outputs, activations unquantized.
std::vector<at::Tensor> probe(const ir::Graph& probe_graph, const at::Tensor& x) {
  exec::Executor ex(probe_graph);
  return ex.run({x}, exec::Mode::kEval);
}

ir::Graph probe_graph(const ir::Graph& g, const std::vector<std::string>& values) {
  ir::Graph p = g.clone();
  for (auto& n : p.nodes) n.out_qspec.reset();
  p.outputs = values;
  return p;
}

}  // namespace

void Quantize::calibrate(ir::Graph& g, const std::vector<std::string>& values, const data::Dataset& data,
                         int64_t batch_size, int64_t batches, bool moving) {
  at::NoGradGuard no_grad;
  ir::Graph pg = probe_graph(g, values);
  std::vector<quant::Observer> obs;
  for (size_t i = 0; i < values.size(); ++i) obs.emplace_back(options_.observer, options_.percentile);
  int64_t done = 0;
  for (int64_t start = 0; start < data.size() && done < batches; start += batch_size, ++done) {
    at::Tensor x = data.inputs(start, std::min(batch_size, data.size() - start));
    auto outs = probe(pg, x);
    for (size_t i = 0; i < values.size(); ++i) obs[i].observe(outs[i]);
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const ir::QuantSpec base = act_spec_for(values[i]);
    auto r = obs[i].range(base);
    if (moving && ranges_.count(values[i])) {
      auto& m = ranges_[values[i]];
      m.first += 0.1 * (r.first - m.first);
      m.second += 0.1 * (r.second - m.second);
      r = m;
    }
    ranges_[values[i]] = r;
    ir::Node* prod = nullptr;
    for (auto& n : g.nodes)
      if (!n.outputs.empty() && n.outputs[0] == values[i]) prod = &n;
    SQZ_ASSERT(prod, "calibration value without a producer: ", values[i]);
    ir::QuantSpec s = base;
    quant::choose_qparams(s, r.first, r.second);
    prod->out_qspec = s;
  }
}

void Quantize::correct_biases(ir::Graph& g, const ir::Graph& reference, const std::vector<std::string>& layers,
                              const data::Dataset& data, int64_t batch_size) const {
  // Empirical bias correction (Nagel et al. 2019): layer by layer in graph order, the mean output
  // error of the quantized layer against the float model on the calibration inputs, per output
  // channel, is subtracted from its bias (later layers see the corrected earlier ones).
  at::NoGradGuard no_grad;
  for (const auto& l : layers) {
    std::string v = g.find_node(l)->outputs[0];
    ir::Graph pq = probe_graph(g, {v}), pf = probe_graph(reference, {v});
    at::Tensor diff;
    int64_t done = 0;
    for (int64_t start = 0; start < data.size() && done < options_.calibration_batches; start += batch_size, ++done) {
      at::Tensor x = data.inputs(start, std::min(batch_size, data.size() - start));
      at::Tensor yq = probe(pq, x)[0], yf = probe(pf, x)[0];
      at::Tensor d = (yq - yf).transpose(0, 1).reshape({yq.size(1), -1}).mean(1);
      diff = diff.defined() ? diff + d : d;
    }
    if (!diff.defined()) continue;
    ir::Node& n = *g.find_node(l);
    at::Tensor corr = diff / double(done);
    if (n.has_param("bias")) {
      n.param("bias").value = n.param("bias").value - corr;
    } else {
      ir::Param b;
      b.value = -corr;
      n.params["bias"] = b;
    }
  }
}

PassResult Quantize::run(const ir::Graph& graph, PassContext& ctx) {
  PassResult result{graph.clone(), "", false};
  ir::Graph& g = result.graph;
  int folded = options_.fold_bn ? fold_batchnorm(g) : 0;
  auto tg = targets(g);
  if (tg.empty()) {
    result.summary = "nothing to quantize (no float Conv/Linear weights outside the exclusions)";
    result.changed = folded > 0;
    if (folded) ir::verify(g);
    return result;
  }
  result.changed = true;
  ir::Graph float_graph = g.clone();  // BN folded, unquantized: reference for bias correction
  std::vector<std::string> layers;
  int64_t nweights = 0;
  std::map<int, int> by_bits;
  for (const auto& [name, bits] : tg) {
    ir::Node& n = *g.find_node(name);
    quantize_weight(n, bits);
    nweights += n.param("weight").value.numel();
    ++by_bits[bits];
    layers.push_back(name);
    if (options_.mode == "dynamic" && n.op == "Linear") n.attrs["quant_dynamic"] = int64_t{1};
  }
  bool acts = options_.mode != "dynamic" && options_.act_bits > 0;
  const data::Dataset* calib = nullptr;
  if (ctx.data) calib = ctx.data->train.size() > 0 ? &ctx.data->train : &ctx.data->val;
  if ((acts || options_.bias_correction) && (!calib || calib->size() == 0))
    throw ConfigError(msg("quantize: ", acts ? "activation quantization (act_bits > 0)" : "bias_correction",
                          " needs calibration data: add a data: block, or set act_bits: 0 for weights only"));
  if (options_.bias_correction) correct_biases(g, float_graph, layers, *calib, ctx.batch_size);
  if (acts) {
    model_outputs_ = g.outputs;  // before fine-tuning adds distillation features to them
    act_values_ = activation_points(g, layers);
    calibrate(g, act_values_, *calib, ctx.batch_size, options_.calibration_batches, false);
  }
  ir::verify(g);

  // qat state
  data_ = ctx.data;
  batch_size_ = ctx.batch_size;
  if (ctx.data && ctx.data->train.size() > 0)
    steps_per_epoch_ = (ctx.data->train.size() + ctx.batch_size - 1) / ctx.batch_size;
  if (options_.mode == "qat" && options_.lsq)
    for (const auto& l : layers) g.find_node(l)->param("weight").qspec->scale.requires_grad_(true);

  std::vector<std::string> int8, sim;
  for (const auto& l : layers) {
    std::string how = quant::planned_execution(g, *g.find_node(l));
    (how == "int8" || how == "int8-dynamic" ? int8 : sim).push_back(l + (how == "int8-dynamic" ? " (dynamic)" : ""));
  }
  std::ostringstream o;
  o << options_.mode << ": weights of " << layers.size() << " layers (" << with_commas(nweights) << " weights) to ";
  bool first = true;
  for (const auto& [bits, count] : by_bits) {
    o << (first ? "" : ", ") << "int" << bits << (by_bits.size() > 1 ? msg(" x", count) : "");
    first = false;
  }
  o << (options_.per_channel ? " per-channel" : " per-tensor") << (options_.symmetric ? " symmetric" : " affine");
  if (options_.mode == "dynamic")
    o << "; activations int8 per batch (dynamic)";
  else if (acts)
    o << "; activations " << (options_.act_signed ? "int" : "uint") << options_.act_bits << " ("
      << options_.observer << ", " << options_.calibration_batches << " calibration batches) at "
      << act_values_.size() << " points"
      << (options_.output_bits > 0 && options_.output_bits != options_.act_bits
              ? msg(" (the model's output at ", options_.output_bits, " bits)")
              : std::string());
  else
    o << "; activations float";
  if (folded) o << "; folded " << folded << " BatchNorm";
  if (options_.bias_correction) o << "; bias-corrected";
  if (by_bits.count(8) && reduce_weight_range(8))
    o << "; 8-bit weights on a 7-bit grid (reduce_range: " << options_.reduce_range
      << (quant::int8_saturates() ? msg(", this CPU's int8 kernels saturate: oneDNN ", quant::int8_probe().isa) : "")
      << ")";
  if (sim.empty())
    o << "; ran int8 (libtorch quantized kernels): all " << int8.size() << " layers";
  else if (int8.empty())
    o << "; simulated (integer grid, float arithmetic): all " << sim.size() << " layers";
  else
    o << "; ran int8: " << join(int8, ", ") << "; simulated: " << join(sim, ", ");
  if (by_bits.count(8) && !reduce_weight_range(8) && quant::int8_saturates())
    o << " (8-bit weight grids are simulated, exactly: this CPU's int8 kernels (oneDNN "
      << quant::int8_probe().isa << ") saturate int16 pair sums; reduce_range: auto runs them int8)";
  if (options_.mode == "qat") o << (options_.lsq ? "; QAT with learned scales (LSQ)" : "; QAT (STE)");

  if (options_.sensitivity) {
    run_sensitivity(float_graph, g, ctx);
    o << "; sensitivity (accuracy drop when only that layer is quantized):";
    for (size_t i = 0; i < sensitivity_.size() && i < 5; ++i)
      o << (i ? "," : "") << " " << sensitivity_[i].layer << " " << std::round(sensitivity_[i].drop * 10000.0) / 100.0
        << " pt";
  }
  result.summary = o.str();
  return result;
}

void Quantize::run_sensitivity(const ir::Graph& float_graph, const ir::Graph& quantized, PassContext& ctx) {
  sensitivity_.clear();
  if (!ctx.data) {
    log::warn("quantize: sensitivity analysis needs data; skipped");
    return;
  }
  const data::Dataset& full = ctx.data->val.size() > 0 ? ctx.data->val : ctx.data->test;
  data::Dataset d = full.head(options_.sensitivity_samples);
  ir::Graph fg = float_graph.clone();
  double base = train::evaluate(fg, d, 256).accuracy;
  for (const auto& [name, bits] : targets(float_graph)) {
    // The float graph with only this layer's weights and activation points taken from the fully
    // quantized graph.
    ir::Graph one = float_graph.clone();
    const ir::Node& qn = *quantized.find_node(name);
    ir::Node& n = *one.find_node(name);
    n.params = qn.params;
    n.out_qspec = qn.out_qspec;
    n.attrs = qn.attrs;
    const ir::QuantSpec* in = quant::input_qspec(quantized, qn);
    if (in) {
      // The producer of the quantized input, or an input Identity node that the float graph lacks.
      std::string v = qn.inputs[0];
      for (const auto& node : quantized.nodes)
        if (node.outputs[0] == v && node.out_qspec && !one.find_node(node.name)) {
          ir::replace_uses(one, node.inputs[0], node.outputs[0]);
          ir::Node copy = node;
          one.nodes.insert(one.nodes.begin(), copy);
        }
      const ir::Node* qp = quantized.producer(v);
      while (qp && !qp->out_qspec && quant::keeps_grid(qp->op) && !qp->inputs.empty()) qp = quantized.producer(qp->inputs[0]);
      if (qp && qp->out_qspec && one.find_node(qp->name)) one.find_node(qp->name)->out_qspec = qp->out_qspec;
    }
    ir::verify(one);
    SensitivityRow row;
    row.layer = name;
    row.bits = bits;
    row.accuracy = train::evaluate(one, d, 256).accuracy;
    row.drop = base - row.accuracy;
    sensitivity_.push_back(row);
  }
  std::stable_sort(sensitivity_.begin(), sensitivity_.end(),
                   [](const SensitivityRow& a, const SensitivityRow& b) { return a.drop > b.drop; });
  log::info("quantize: sensitivity on ", d.size(), " validation samples (float accuracy ", base, "):");
  for (const auto& r : sensitivity_)
    log::info("  ", r.layer, "  int", r.bits, "  accuracy ", r.accuracy, "  drop ", r.drop);
  if (!options_.sensitivity_out.empty()) {
    std::ostringstream f;
    f << "layer,bits,accuracy,drop\n";
    for (const auto& r : sensitivity_) f << r.layer << "," << r.bits << "," << r.accuracy << "," << r.drop << "\n";
    write_text_atomic(options_.sensitivity_out, f.str());
  }
}

void Quantize::finalize(ir::Graph& g) { quant::snap_to_grid(g); }

train::StepHook Quantize::finetune_hook() {
  if (options_.mode != "qat") return nullptr;
  return [this](ir::Graph& g, int64_t step, int64_t total_steps) {
    bool last = step >= total_steps;
    if (options_.lsq) {
      at::NoGradGuard no_grad;
      for (auto& n : g.nodes)
        for (auto& [k, p] : n.params)
          if (p.qspec && p.qspec->scale.defined() && p.qspec->scale.requires_grad())
            p.qspec->scale.clamp_min_(1e-8);
    }
    int64_t freeze_step = options_.freeze_observers_after < 0 ? -1 : options_.freeze_observers_after * steps_per_epoch_;
    bool observing = freeze_step < 0 || step < freeze_step;
    if (!last && observing && step % options_.observer_update_every == 0) {
      at::NoGradGuard no_grad;
      // Weight ranges follow the shadow weights (unless learned); activation ranges move slowly.
      if (!options_.lsq)
        for (auto& n : g.nodes) {
          if (!n.has_param("weight") || !n.param("weight").qspec) continue;
          ir::Param& p = n.param("weight");
          ir::QuantSpec s = *p.qspec;
          at::Tensor w = p.value.detach();
          if (s.axis == 0 && w.dim() >= 1) {
            at::Tensor flat = w.reshape({w.size(0), -1});
            quant::choose_qparams(s, std::get<0>(flat.min(1)), std::get<0>(flat.max(1)));
          } else {
            quant::choose_qparams(s, w.min().item<double>(), w.max().item<double>());
          }
          p.qspec = s;
        }
      if (!act_values_.empty() && data_ && data_->train.size() > 0) {
        int64_t start = ((step / options_.observer_update_every) * batch_size_) % data_->train.size();
        data::Dataset one = data_->train.subset(at::arange(start, std::min(start + batch_size_, data_->train.size())));
        // exec needs the shadow weights fake-quantized, which param_tensor does while they require grad.
        calibrate(g, act_values_, one, batch_size_, 1, true);
      }
    }
    if (last) finalize(g);
  };
}

}  // namespace squeeze::compress
