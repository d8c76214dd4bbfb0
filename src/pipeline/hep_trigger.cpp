#include "squeeze/pipeline/hep_trigger.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <map>

#include "squeeze/deploy/cpp_export.h"
#include "squeeze/exec/executor.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/fixed_point.h"
#include "squeeze/pipeline/candidates.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/report/fpga_json.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace fs = std::filesystem;

deploy::FpgaOptions HepTriggerOptions::fpga() const {
  deploy::FpgaOptions f;
  f.clock_mhz = clock_mhz;
  f.reuse_factor = reuse_factor;
  f.precision = precision;
  return f;
}

HepTriggerOptions HepTriggerOptions::from_params(Params& block) {
  HepTriggerOptions o;
  // Unknown keys first: a misspelt target_latency_ns reads better as a did-you-mean than as
  // missing.
  for (const char* key : {"target_latency_ns", "clock_mhz", "reuse_factor", "max_dsp", "max_lut",
                          "precision", "sparsities", "weight_bits", "activation_bits", "finetune",
                          "naive"})
    block.raw(key);
  block.finish();
  if (!block.has("target_latency_ns"))
    throw ConfigError(msg("missing required key 'target_latency_ns' in ", block.path(),
                          ": the estimated latency of one inference to stay within, in ns (> 0), "
                          "e.g. target_latency_ns: 100"));
  auto positive = [&](const char* key, double fallback) {
    const double v = block.get_double(key, fallback);
    if (!(v > 0) || !std::isfinite(v))
      throw ConfigError(msg(block.key_path(key), ": expected a number > 0, got '",
                            block.raw(key)->text(), "'"));
    block.document(key, "x > 0");
    return v;
  };
  o.target_latency_ns = positive("target_latency_ns", 0.0);
  o.clock_mhz = positive("clock_mhz", o.clock_mhz);
  o.reuse_factor = block.get_int("reuse_factor", o.reuse_factor, 1);
  o.max_dsp = block.get_int("max_dsp", o.max_dsp, 0);
  o.max_lut = block.get_int("max_lut", o.max_lut, 0);
  block.document("max_dsp", "an integer >= 0 (absent: no limit)");
  block.document("max_lut", "an integer >= 0 (absent: no limit)");
  o.precision = block.get_string("precision", o.precision);
  // Parsed here so that a type narrower than 1 bit is refused before any work.
  fixed::parse_type(o.precision, block.key_path("precision"));
  block.document("precision", "an ap_fixed<W,I> type, W >= 1",
                 "the type of what the search leaves wide, and of the naive recipe's activations");
  o.sparsities = block.get_doubles("sparsities", o.sparsities);
  if (o.sparsities.empty())
    throw ConfigError(msg(block.key_path("sparsities"),
                          ": expected at least one sparsity in (0, 1), e.g. [0.5, 0.7, 0.8, 0.9]"));
  for (size_t i = 0; i < o.sparsities.size(); ++i) {
    const double s = o.sparsities[i];
    if (!(s > 0 && s < 1))
      throw ConfigError(msg(block.key_path("sparsities"), "[", i, "]: expected a fraction in (0, 1), got ", s));
    if (i > 0 && !(s > o.sparsities[i - 1]))
      throw ConfigError(msg(block.key_path("sparsities"), ": expected ascending sparsities (a ladder), got ",
                            o.sparsities[i - 1], " before ", s));
  }
  block.document("sparsities", "ascending fractions in (0, 1)", "the pruning ladder, per layer");
  if (auto wb = block.get_map("weight_bits")) {
    o.min_weight_bits = static_cast<int>(wb->get_int("min", o.min_weight_bits, 2, 16));
    o.max_weight_bits = static_cast<int>(wb->get_int("max", o.max_weight_bits, 2, 16));
    wb->finish();
    if (o.min_weight_bits > o.max_weight_bits)
      throw ConfigError(msg(block.key_path("weight_bits"), ": min (", o.min_weight_bits,
                            ") is above max (", o.max_weight_bits, ")"));
  }
  o.activation_bits = block.get_ints("activation_bits", o.activation_bits);
  if (o.activation_bits.empty())
    throw ConfigError(msg(block.key_path("activation_bits"),
                          ": expected at least one width, widest first, e.g. [12, 10, 8]"));
  for (size_t i = 0; i < o.activation_bits.size(); ++i) {
    const int64_t b = o.activation_bits[i];
    if (b < 2 || b > 24)
      throw ConfigError(msg(block.key_path("activation_bits"), "[", i,
                            "]: expected a width in bits from 2 to 24, got ", b));
    if (i > 0 && !(b < o.activation_bits[i - 1]))
      throw ConfigError(msg(block.key_path("activation_bits"),
                            ": expected descending widths (widest first), got ",
                            o.activation_bits[i - 1], " before ", b));
  }
  block.document("activation_bits", "descending integers in [2, 24]",
                 "the widths tried for the input and each hidden layer's result");
  if (auto ft = block.get_map("finetune")) o.finetune = train::TrainOptions::from_params(*ft);
  o.naive = block.get_bool("naive", o.naive);
  try {
    o.fpga().check();
  } catch (const ConfigError& e) {
    throw ConfigError(msg(block.path(), ": ", e.what()));
  }
  return o;
}

double budget_overshoot(const deploy::FpgaEstimate& e, const HepTriggerOptions& o) {
  double over = std::max(0.0, e.latency_ns / o.target_latency_ns - 1.0);
  if (o.max_dsp >= 0 && e.dsp > o.max_dsp)
    over = std::max(over, double(e.dsp - o.max_dsp) / double(std::max<int64_t>(o.max_dsp, 1)));
  if (o.max_lut >= 0 && e.lut > o.max_lut)
    over = std::max(over, double(e.lut - o.max_lut) / double(std::max<int64_t>(o.max_lut, 1)));
  return over;
}

std::string budget_gap(const deploy::FpgaEstimate& e, const HepTriggerOptions& o) {
  std::vector<std::string> parts;
  if (e.latency_ns > o.target_latency_ns)
    parts.push_back(msg("latency ", e.latency_ns, " ns > ", o.target_latency_ns, " ns (",
                        e.cycles, " cycles at ", o.clock_mhz, " MHz)"));
  if (o.max_dsp >= 0 && e.dsp > o.max_dsp) parts.push_back(msg("DSP ", e.dsp, " > ", o.max_dsp));
  if (o.max_lut >= 0 && e.lut > o.max_lut) parts.push_back(msg("LUT ", e.lut, " > ", o.max_lut));
  return join(parts, "; ");
}

namespace {

// Integer bits (sign included) of a signed type whose range covers |v| <= m: 2^(I-1) > m.
int int_bits_for(double m) {
  if (!(m > 0)) return 1;
  return static_cast<int>(std::floor(std::log2(m))) + 2;
}

std::string type_str(int width, int int_bits) {
  return msg("ap_fixed<", width, ",", int_bits, ",AP_RND_CONV,AP_SAT>");
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

// The layers the search works on: every Linear in graph order, with the Relu that alone reads it
// (its result type follows the layer's).
struct Layer {
  std::string name, output, relu;
  int64_t weights = 0;
};

std::vector<Layer> linear_layers(const ir::Graph& g) {
  std::vector<Layer> out;
  for (const auto& n : g.nodes) {
    if (n.op != "Linear" || n.outputs.empty()) continue;
    Layer l;
    l.name = n.name;
    l.output = n.outputs[0];
    l.weights = n.param("weight").value.numel();
    std::vector<size_t> readers = g.consumers(l.output);
    if (readers.size() == 1 && g.nodes[readers[0]].op == "Relu") l.relu = g.nodes[readers[0]].name;
    out.push_back(std::move(l));
  }
  return out;
}

// The largest |value| of the graph input and of each layer's output on (at most 4096 samples of)
// the data: the calibration of the activation types' integer bits.
std::map<std::string, double> value_ranges(const ir::Graph& graph, const data::Dataset& d,
                                           const std::vector<Layer>& layers) {
  ir::Graph g = graph.clone();
  g.outputs.clear();
  for (const Layer& l : layers) g.outputs.push_back(l.output);
  ir::verify(g);
  exec::Executor ex(g);
  std::map<std::string, double> m;
  const int64_t n = std::min<int64_t>(d.size(), 4096);
  at::NoGradGuard no_grad;
  for (int64_t start = 0; start < n; start += 512) {
    at::Tensor x = d.inputs(start, std::min<int64_t>(512, n - start));
    m["<input>"] = std::max(m["<input>"], x.abs().max().item<double>());
    std::vector<at::Tensor> outs = ex.run({x});
    for (size_t i = 0; i < layers.size(); ++i)
      m[layers[i].output] = std::max(m[layers[i].output], outs[i].abs().max().item<double>());
  }
  return m;
}

// The per-layer settings of a fixed-point candidate: weight widths per layer, activation widths
// for the graph input (index 0) and each hidden layer's result (index 1 + layer).
struct Bits {
  std::vector<int> weight;
  std::vector<int> act;  // 0: `precision` (the naive recipe)
  std::string describe(const std::vector<Layer>& layers) const {
    std::vector<std::string> w, a;
    for (size_t i = 0; i < weight.size(); ++i) w.push_back(msg(layers[i].name, " ", weight[i]));
    a.push_back(msg("input ", act[0] ? std::to_string(act[0]) : std::string("wide")));
    for (size_t i = 1; i < act.size(); ++i)
      a.push_back(msg(layers[i - 1].name, " ", act[i] ? std::to_string(act[i]) : std::string("wide")));
    return msg("weights ", join(w, ", "), "; activations ", join(a, ", "));
  }
};

class HepTrigger {
 public:
  HepTrigger(const WorkflowConfig& config, const RunOptions& options)
      : config_(config), spec_(*config.pipeline), o_(*config.pipeline->hep_trigger),
        ws_(config, options) {}

  report::Report run() {
    ws_.load();
    CandidateStore::check_data(ws_, spec_.guard);
    if (!ws_.data())
      throw ConfigError("pipeline (hep-trigger): needs data (a data: block) to fine-tune and judge models");
    layers_ = linear_layers(ws_.baseline());
    if (layers_.empty())
      throw ConfigError(msg("pipeline (hep-trigger): the model (", config_.model.zoo,
                            ") has no Linear layer to prune and quantize"));
    // The cost model must cover the model before anything trains (UnsupportedError names the
    // first layer it does not).
    deploy::estimate_fpga(ws_.baseline(), o_.fpga());
    ws_.start();
    store_.emplace(ws_, spec_.guard, better());
    store_->set_judge([this](report::CandidateRecord& c, const ir::Graph& g) {
      deploy::FpgaEstimate e = deploy::estimate_fpga(g, o_.fpga());
      c.fpga = report::fpga_json(e);
      c.role = role_;
      c.figures["budget_overshoot"] = budget_overshoot(e, o_);
      c.figures["dsp"] = double(e.dsp);
      c.figures["lut"] = double(e.lut);
      c.figures["latency_ns"] = e.latency_ns;
      estimates_.push_back(e);
    });

    search();
    if (o_.naive) naive();
    return finish();
  }

 private:
  // Among candidates that pass the guard: fits (smallest overshoot), fewest DSPs, fewest LUTs,
  // highest validation accuracy, tried first.
  CandidateStore::Better better() const {
    return [](const report::CandidateRecord& a, const report::CandidateRecord& b) {
      const double oa = a.figures.at("budget_overshoot"), ob = b.figures.at("budget_overshoot");
      if (oa != ob) return oa < ob;
      if (a.figures.at("dsp") != b.figures.at("dsp")) return a.figures.at("dsp") < b.figures.at("dsp");
      if (a.figures.at("lut") != b.figures.at("lut")) return a.figures.at("lut") < b.figures.at("lut");
      if (a.val_accuracy != b.val_accuracy) return a.val_accuracy > b.val_accuracy;
      return a.index < b.index;
    };
  }

  // One stage {method, params} made from YAML text, with the pipeline's fine-tuning, run on g.
  report::StageRecord apply(ir::Graph& g, const std::string& method, const std::string& params,
                            report::StepRef* ref) {
    auto tree = yaml_to_params(msg("{method: ", method, ", params: ", params, "}"),
                               "pipeline (hep-trigger)");
    specs_.push_back(parse_stage_spec(*tree));
    specs_.back().finetune = o_.finetune;
    std::vector<PreparedStage> prepared =
        ws_.prepare({&specs_.back()}, msg("pipeline (hep-trigger) ", method));
    if (ref) *ref = {method, method, specs_.back().params};
    return ws_.run_stage(g, prepared[0], static_cast<size_t>(position_++));
  }

  report::StageRecord prune(ir::Graph& g, double ratio, const std::string& only) {
    std::string params = msg("{kind: unstructured, ratio: ", ratio, ", scope: local");
    if (!only.empty()) {
      std::vector<std::string> others;
      for (const Layer& l : layers_)
        if (l.name != only) others.push_back(quoted(l.name));
      if (!others.empty()) params += ", exclude: [" + join(others, ", ") + "]";
    }
    report::StepRef ref;
    report::StageRecord rec = apply(g, "prune", params + "}", &ref);
    ref.name = only.empty() ? msg("prune", std::lround(ratio * 100)) : msg("prune", std::lround(ratio * 100), ":", only);
    steps_.push_back(ref);
    return rec;
  }

  // The fixed_point stage of `bits` on the model `pruned` (float, pruned), integer bits from its
  // weights and from `ranges`.
  report::StageRecord fixed(ir::Graph& g, const Bits& bits, const std::map<std::string, double>& ranges,
                            report::StepRef* ref) {
    std::vector<std::string> layers;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& l = layers_[i];
      const double wmax = g.find_node(l.name)->param("weight").value.abs().max().item<double>();
      std::string entry = msg("weight: ", quoted(type_str(bits.weight[i], int_bits_for(wmax))));
      const bool hidden = i + 1 < layers_.size();
      if (hidden && bits.act[i + 1] > 0) {
        const std::string t = type_str(bits.act[i + 1], int_bits_for(ranges.at(l.output)));
        entry += ", result: " + quoted(t);
        if (!l.relu.empty()) layers.push_back(msg(quoted(l.relu), ": {result: ", quoted(t), "}"));
      }
      layers.push_back(msg(quoted(l.name), ": {", entry, "}"));
    }
    std::string params = msg("{default: ", quoted(o_.precision));
    if (bits.act[0] > 0)
      params += ", input: " + quoted(type_str(bits.act[0], int_bits_for(ranges.at("<input>"))));
    params += ", layers: {" + join(layers, ", ") + "}}";
    return apply(g, "fixed_point", params, ref);
  }

  // Tries bits on the pruned model: a candidate named `name`; true when it passes the guard.
  bool try_bits(const std::string& name, const Bits& bits) {
    auto t0 = std::chrono::steady_clock::now();
    ir::Graph g = pruned_.clone();
    report::StepRef ref;
    std::vector<report::StageRecord> history = pruned_history_;
    history.push_back(fixed(g, bits, ranges_, &ref));
    ref.name = name;
    std::vector<report::StepRef> steps = pruned_steps_;
    steps.push_back(ref);
    report::CandidateRecord& c = add(name, steps, history, g, t0);
    c.note = bits.describe(layers_);
    c.status = c.passed ? "kept" : "rolled back";
    return c.passed;
  }

  report::CandidateRecord& add(const std::string& name, const std::vector<report::StepRef>& steps,
                               const std::vector<report::StageRecord>& history, const ir::Graph& g,
                               std::chrono::steady_clock::time_point t0) {
    const report::CandidateRecord& c = store_->add(name, steps, history, g, t0);
    return store_->candidate(static_cast<size_t>(c.index));
  }

  void search() {
    role_ = "search";
    // 1. Pruning ladder, then the failed rung layer by layer.
    ir::Graph cur = ws_.baseline().clone();
    std::vector<report::StageRecord> history;
    std::vector<report::StepRef> kept_steps;
    double failed = 0.0;
    for (double s : o_.sparsities) {
      auto t0 = std::chrono::steady_clock::now();
      ir::Graph g = cur.clone();
      steps_ = kept_steps;
      std::vector<report::StageRecord> h = history;
      h.push_back(prune(g, s, ""));
      report::CandidateRecord& c = add(steps_.back().name, steps_, h, g, t0);
      c.note = msg("every layer pruned to ", s * 100, "% of its weights");
      c.status = c.passed ? "kept" : "rolled back";
      if (!c.passed) {
        failed = s;
        break;
      }
      cur = std::move(g);
      history = std::move(h);
      kept_steps = steps_;
    }
    if (failed > 0) {
      std::vector<Layer> order = layers_;
      std::stable_sort(order.begin(), order.end(),
                       [](const Layer& a, const Layer& b) { return a.weights > b.weights; });
      for (const Layer& l : order) {
        auto t0 = std::chrono::steady_clock::now();
        ir::Graph g = cur.clone();
        steps_ = kept_steps;
        std::vector<report::StageRecord> h = history;
        h.push_back(prune(g, failed, l.name));
        report::CandidateRecord& c = add(steps_.back().name, steps_, h, g, t0);
        c.note = msg(l.name, " alone pruned to ", failed * 100, "%");
        c.status = c.passed ? "kept" : "rolled back";
        if (!c.passed) continue;
        cur = std::move(g);
        history = std::move(h);
        kept_steps = steps_;
      }
    }
    pruned_ = std::move(cur);
    pruned_history_ = history;
    pruned_steps_ = kept_steps;
    ranges_ = value_ranges(pruned_, ws_.data()->val, layers_);

    // 2. Fixed point: weights together, activations together, then each knob alone.
    const std::string prefix = pruned_steps_.empty() ? "" : pruned_steps_.back().name + ">";
    Bits bits;
    bits.weight.assign(layers_.size(), o_.max_weight_bits);
    bits.act.assign(layers_.size(), static_cast<int>(o_.activation_bits.front()));
    auto label = [&](const Bits& b) {
      std::string s = prefix + "w";
      int lo = *std::min_element(b.weight.begin(), b.weight.end());
      int hi = *std::max_element(b.weight.begin(), b.weight.end());
      s += lo == hi ? std::to_string(lo) : msg(lo, "-", hi);
      lo = *std::min_element(b.act.begin(), b.act.end());
      hi = *std::max_element(b.act.begin(), b.act.end());
      s += "a" + (lo == hi ? std::to_string(lo) : msg(lo, "-", hi));
      return s + msg("#", store_->candidates().size() + 1);
    };
    bool any = false;
    for (int w = o_.max_weight_bits; w >= o_.min_weight_bits; --w) {
      Bits b = bits;
      b.weight.assign(layers_.size(), w);
      if (!try_bits(label(b), b)) break;
      bits = b;
      any = true;
    }
    if (!any) return;  // even the widest weights break the guard: nothing narrower will hold
    for (size_t k = 1; k < o_.activation_bits.size(); ++k) {
      Bits b = bits;
      b.act.assign(layers_.size(), static_cast<int>(o_.activation_bits[k]));
      if (!try_bits(label(b), b)) break;
      bits = b;
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (bits.weight[i] <= o_.min_weight_bits) continue;
      Bits b = bits;
      --b.weight[i];
      if (try_bits(label(b), b)) bits = b;
    }
    for (size_t i = 0; i < bits.act.size(); ++i) {
      auto it = std::find(o_.activation_bits.begin(), o_.activation_bits.end(), bits.act[i]);
      if (it == o_.activation_bits.end() || it + 1 == o_.activation_bits.end()) continue;
      Bits b = bits;
      b.act[i] = static_cast<int>(*(it + 1));
      if (try_bits(label(b), b)) bits = b;
    }
  }

  // The naive recipe from the baseline: 90% and 6 bits; 95% and 4 bits when that does not fit.
  void naive() {
    role_ = "naive";
    const std::vector<std::pair<double, int>> recipes = {{0.9, 6}, {0.95, 4}};
    for (const auto& [sparsity, wbits] : recipes) {
      auto t0 = std::chrono::steady_clock::now();
      ir::Graph g = ws_.baseline().clone();
      steps_.clear();
      std::vector<report::StageRecord> history;
      history.push_back(prune(g, sparsity, ""));
      Bits bits;
      bits.weight.assign(layers_.size(), wbits);
      bits.act.assign(layers_.size(), 0);
      report::StepRef ref;
      history.push_back(fixed(g, bits, {}, &ref));
      const std::string name = msg("naive-", std::lround(sparsity * 100), "-w", wbits);
      ref.name = msg("w", wbits);
      steps_.push_back(ref);
      report::CandidateRecord& c = add(name, steps_, history, g, t0);
      c.note = msg("naive recipe: every layer pruned to ", sparsity * 100, "%, weights ", wbits,
                   " bits, everything else ", o_.precision);
      c.status = "reference";
      naive_.push_back(c.index);
      if (c.figures.at("budget_overshoot") == 0.0) break;
    }
  }

  report::Report finish() {
    store_->rank();
    report::PipelineRecord rec = store_->record("hep-trigger");
    const int64_t best = store_->best_index();
    report::FpgaBudgetRecord budget;
    budget.target_latency_ns = o_.target_latency_ns;
    budget.clock_mhz = o_.clock_mhz;
    budget.reuse_factor = o_.reuse_factor;
    budget.max_dsp = o_.max_dsp;
    budget.max_lut = o_.max_lut;
    std::vector<int64_t> also;
    if (best >= 0) {
      const deploy::FpgaEstimate& e = estimates_.at(static_cast<size_t>(best));
      budget.fits = budget_overshoot(e, o_) == 0.0;
      budget.gap = budget_gap(e, o_);
      const report::CandidateRecord& b = store_->candidates()[best];
      if (b.role != "search") {
        // The best search candidate too, so that the report compares it with the reference.
        int64_t best_search = -1;
        for (const auto& c : store_->candidates())
          if (c.role == "search" && (best_search < 0 || c.rank < store_->candidates()[best_search].rank))
            best_search = c.index;
        if (best_search >= 0) also.push_back(best_search);
      }
      for (int64_t i : naive_) also.push_back(i);
      rec.outcome = msg("Chosen: ", b.name, " (", b.role, "): estimated ", e.latency_ns, " ns (",
                        e.cycles, " cycles), ", e.dsp, " DSP, ", e.lut, " LUT, validation accuracy ",
                        b.val_accuracy, "; ",
                        budget.fits ? std::string("fits the budget.")
                                    : "misses the budget: " + budget.gap + ".");
      if (!budget.fits) {
        std::string w = msg("no candidate that passes the guard fits the FPGA budget; the closest, ",
                            b.name, ", is saved and reported: ", budget.gap);
        log::warn(w);
        ws_.report().warnings.push_back(w);
      }
    } else {
      rec.outcome = "No candidate was tried.";
    }
    rec.budget = budget;
    rec.selection =
        "among the candidates that pass the guard: the one that fits the FPGA budget (else the "
        "smallest overshoot) with the fewest DSPs, then LUTs, then the highest validation "
        "accuracy; the search and the naive recipe compete alike";
    if (best >= 0) measure_generated_cpp(store_->candidates()[best], rec);
    log::info(rec.outcome);
    return store_->finish(std::move(rec), also);
  }

  // The chosen model as C++ (deploy/cpp_export.h) in <out>/cpp, with its golden vectors and check
  // program, and its measured batch-1 latency (report.json pipeline.cpp_latency_ns). A model the
  // generator does not cover, or a machine without g++, leaves the key out with a warning that
  // says why: no estimate stands in for the measurement.
  void measure_generated_cpp(const report::CandidateRecord& chosen, report::PipelineRecord& rec) {
    const std::string dir = (fs::path(ws_.out_dir()) / "cpp").string();
    try {
      ir::Graph g = io::load_sqz((fs::path(ws_.out_dir()) / chosen.checkpoint).string());
      deploy::CppExportOptions options;
      options.seed = config_.seed;
      if (fs::exists(dir)) fs::remove_all(dir);  // an earlier attempt of this run (--force)
      deploy::export_cpp(g, options, dir);
      rec.cpp_latency_ns = deploy::measure_cpp_latency_ns(dir);
      log::info("generated C++ of ", chosen.name, " in ", dir, ": ", *rec.cpp_latency_ns,
                " ns per inference at batch 1 (median)");
    } catch (const std::exception& e) {
      std::string w = msg("the generated C++ of ", chosen.name, " was not measured: ", e.what());
      log::warn(w);
      ws_.report().warnings.push_back(w);
    }
  }

  const WorkflowConfig& config_;
  const PipelineSpec& spec_;
  const HepTriggerOptions& o_;
  Workspace ws_;
  std::optional<CandidateStore> store_;
  std::vector<Layer> layers_;
  std::deque<StageSpec> specs_;  // prepared stages point into it
  std::vector<report::StepRef> steps_;
  int64_t position_ = 0;
  std::string role_;
  std::vector<deploy::FpgaEstimate> estimates_;  // by candidate index
  std::vector<int64_t> naive_;
  ir::Graph pruned_;
  std::vector<report::StageRecord> pruned_history_;
  std::vector<report::StepRef> pruned_steps_;
  std::map<std::string, double> ranges_;
};

}  // namespace

report::Report run_hep_trigger(const WorkflowConfig& config, const RunOptions& options) {
  return HepTrigger(config, options).run();
}

}  // namespace squeeze::pipeline
