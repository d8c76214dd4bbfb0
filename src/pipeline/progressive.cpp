#include "squeeze/pipeline/progressive.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <optional>

#include "squeeze/compress/registry.h"
#include "squeeze/pipeline/candidates.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace {

// In ladder order. methods: may also say prune (= structured and unstructured).
const std::vector<std::string> kFamilies = {"lowrank", "structured", "unstructured", "quantize"};
// The settings the sensitivity analysis measures, and the ladders' rungs.
const std::vector<double> kRankRatios = {0.125, 0.25, 0.5};
const std::vector<double> kChannelShares = {0.25, 0.5, 0.75};
const std::vector<double> kPruneRatios = {0.5, 0.7, 0.8, 0.9, 0.95};
const std::vector<int> kBits = {8, 6, 4};

std::string pct(double r) { return msg(std::round(r * 1000.0) / 10.0, "%"); }

// A layer name as a double-quoted YAML scalar (ONNX names hold '/', ':' and the like).
std::string q(const std::string& name) {
  std::string out = "\"";
  for (char c : name) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return out + "\"";
}

std::string list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + q(items[i]);
  return out + "]";
}

std::string names_or_none(const std::vector<std::string>& items) {
  return items.empty() ? std::string("none") : join(items, ", ");
}

// The Conv/Linear layers with a float weight, in graph order.
std::vector<std::string> float_layers(const ir::Graph& g) {
  std::vector<std::string> out;
  for (const auto& n : g.nodes)
    if ((n.op == "Conv" || n.op == "Linear") && n.has_param("weight") && !n.param("weight").qspec)
      out.push_back(n.name);
  return out;
}

std::vector<std::string> others(const std::vector<std::string>& layers, const std::string& keep) {
  std::vector<std::string> out;
  for (const auto& l : layers)
    if (l != keep) out.push_back(l);
  return out;
}

std::vector<std::string> minus(const std::vector<std::string>& all,
                               const std::vector<std::string>& some) {
  std::vector<std::string> out;
  for (const auto& l : all)
    if (std::find(some.begin(), some.end(), l) == some.end()) out.push_back(l);
  return out;
}

// A generated step or probe: a method and its parameters, written as YAML so that the report
// shows them as a user would write them.
struct Recipe {
  std::string method;
  std::string yaml;
};

std::shared_ptr<Params> recipe_params(const Recipe& r) {
  return yaml_to_params(r.yaml, "pipeline (progressive, generated " + r.method + " step)");
}

Recipe prune_recipe(double ratio, const std::vector<std::string>& exclude) {
  return {"prune", msg("{kind: unstructured, criterion: l1, scope: local, ops: [Conv, Linear], "
                       "ratio: ",
                       ratio, exclude.empty() ? "" : ", exclude: " + list(exclude), "}")};
}

// Structured pruning: `fraction` of the remaining output channels of every layer not excluded.
Recipe channel_recipe(double fraction, const std::vector<std::string>& exclude) {
  return {"prune", msg("{kind: structured, granularity: channel, criterion: l1, scope: local, "
                       "ratio: ",
                       fraction, exclude.empty() ? "" : ", exclude: " + list(exclude), "}")};
}

Recipe lowrank_recipe(const std::map<std::string, double>& ratios,
                      const std::vector<std::string>& exclude) {
  std::string layers;
  for (const auto& [l, r] : ratios)
    layers += msg(layers.empty() ? "" : ", ", q(l), ": {ratio: ", r, "}");
  return {"lowrank", msg("{ratio: 0.5, layers: {", layers, "}",
                         exclude.empty() ? "" : ", exclude: " + list(exclude), "}")};
}

// Weight-only post-training quantization of `layer` alone (the analysis).
Recipe quant_probe(int bits, const std::vector<std::string>& exclude) {
  return {"quantize", msg("{mode: ptq, weight_bits: ", bits, ", act_bits: 0",
                          exclude.empty() ? "" : ", exclude: " + list(exclude), "}")};
}

Recipe quant_recipe(int bits, const std::map<std::string, int>& layer_bits) {
  std::string layers;
  for (const auto& [l, b] : layer_bits)
    if (b != bits) layers += msg(layers.empty() ? "" : ", ", q(l), ": ", b);
  return {"quantize", msg("{mode: qat, weight_bits: ", bits, ", act_bits: 8",
                          layers.empty() ? "" : ", layers: {" + layers + "}", "}")};
}

class Progressive {
 public:
  Progressive(const WorkflowConfig& config, const RunOptions& options)
      : spec_(*config.pipeline), opt_(*spec_.progressive), ws_(config, options) {}

  report::Report run();

 private:
  // The pass of a recipe applied to g without fine-tuning (the analysis and the projection).
  compress::PassResult apply(const Recipe& r, const ir::Graph& g);
  // One-layer probes of a family on g; records them and returns, per layer, the settings tried
  // and whether each was tolerated (in the order of the family's settings).
  std::map<std::string, std::vector<std::optional<bool>>> analyse(const std::string& family,
                                                                  const ir::Graph& g,
                                                                  const std::string& label);
  double projected_int8_ratio(const ir::Graph& g);
  // One rung: applied to a clone of `from`, fine-tuned, measured, kept or rolled back.
  bool step(const std::string& name, const Recipe& r, const std::string& note, bool from_float);
  bool reached() const { return ratio_ >= opt_.target_compression; }
  bool out_of_steps() const {
    return static_cast<int64_t>(store_->candidates().size()) >= opt_.max_steps;
  }
  std::string label() const {
    return kept_ < 0 ? std::string("baseline")
                     : msg("after #", kept_ + 1, " ", store_->candidates()[kept_].name);
  }
  void skip(const std::string& name, const std::string& why) {
    log::info("  not tried: ", name, ": ", why);
    skipped_.push_back({name, why});
  }
  // Skips rung `name` (true) when quantization may follow and 8-bit quantization of the current
  // model is already projected to reach the target.
  bool quantization_suffices(const std::string& name) {
    if (!opt_.uses("quantize")) return false;
    const double p = projected_int8_ratio(g_);
    if (p < opt_.target_compression) return false;
    skip(name, msg("not needed: 8-bit quantization of the ", kept_ < 0 ? "baseline" : "current model",
                   " is projected at ", std::round(p * 100) / 100, "x, at least the target"));
    return true;
  }

  void lowrank_phase();
  void structured_phase();
  void prune_phase();
  void quantize_phase();

  const PipelineSpec& spec_;
  const ProgressiveOptions& opt_;
  Workspace ws_;
  std::optional<CandidateStore> store_;
  double min_val_ = 0.0;  // the guard's bound

  // The current kept model, its stages from the baseline and its step references.
  ir::Graph g_;
  std::vector<report::StageRecord> history_;
  std::vector<report::StepRef> refs_;
  // The kept model before quantization (quantization rungs start from it).
  ir::Graph float_g_;
  std::vector<report::StageRecord> float_history_;
  std::vector<report::StepRef> float_refs_;
  double ratio_ = 1.0;
  int64_t kept_ = -1;  // candidate index of the current kept model
  bool quantized_ = false;

  std::deque<StageSpec> stage_specs_;  // PreparedStage points into these
  std::vector<report::SkippedCandidate> skipped_;
  std::vector<report::SensitivityRecord> sensitivity_;
};

compress::PassResult Progressive::apply(const Recipe& r, const ir::Graph& g) {
  auto params = recipe_params(r);
  std::unique_ptr<compress::Pass> pass = compress::find_method(r.method)->make(*params);
  compress::PassContext ctx;
  ctx.data = ws_.data();
  ctx.batch_size = ws_.batch_size();
  ctx.seed = ws_.config().seed;
  compress::PassResult pr = pass->run(g, ctx);
  pass->finalize(pr.graph);
  return pr;
}

std::map<std::string, std::vector<std::optional<bool>>> Progressive::analyse(
    const std::string& family, const ir::Graph& g, const std::string& model) {
  std::map<std::string, std::vector<std::optional<bool>>> out;
  const std::vector<std::string> layers = float_layers(g);
  log::info("sensitivity of ", layers.size(), " layers to ", family, " (", model, ")");
  const size_t n = family == "lowrank"        ? kRankRatios.size()
                   : family == "structured"   ? kChannelShares.size()
                   : family == "unstructured" ? kPruneRatios.size()
                                              : kBits.size();
  for (const std::string& layer : layers) {
    auto& tol = out[layer];
    for (size_t i = 0; i < n; ++i) {
      Recipe r;
      std::string setting;
      const std::vector<std::string> rest = others(layers, layer);
      if (family == "lowrank") {
        r = lowrank_recipe({{layer, kRankRatios[i]}}, rest);
        setting = msg("rank ratio ", kRankRatios[i]);
      } else if (family == "structured") {
        r = channel_recipe(kChannelShares[i], rest);
        setting = pct(kChannelShares[i]) + " channels";
      } else if (family == "unstructured") {
        r = prune_recipe(kPruneRatios[i], rest);
        setting = pct(kPruneRatios[i]);
      } else {
        r = quant_probe(kBits[i], rest);
        setting = msg(kBits[i], " bits");
      }
      compress::PassResult pr = apply(r, g);
      if (!pr.changed) {  // a factorization that saves nothing: not a setting of this layer
        tol.push_back(std::nullopt);
        continue;
      }
      const double acc = ws_.val_accuracy(pr.graph);
      const bool ok = acc >= min_val_;
      tol.push_back(ok);
      sensitivity_.push_back({model, layer, family, setting, acc, ok});
    }
  }
  return out;
}

double Progressive::projected_int8_ratio(const ir::Graph& g) {
  compress::PassResult pr = apply(quant_recipe(8, {}), g);
  const int64_t size = static_stats(pr.graph).size_bytes;
  const double ratio = size > 0 ? double(ws_.report().baseline.size_bytes) / double(size) : 0.0;
  log::info("  8-bit quantization of the current model projected at ", ratio, "x (",
            human_bytes(double(size)), ")");
  return ratio;
}

bool Progressive::step(const std::string& name, const Recipe& r, const std::string& note,
                       bool from_float) {
  const size_t position = store_->candidates().size();
  log::info("step ", position + 1, ": ", name, " (", note, ")");
  auto t0 = std::chrono::steady_clock::now();
  stage_specs_.push_back(StageSpec{r.method, recipe_params(r), opt_.finetune});
  std::vector<PreparedStage> prepared =
      ws_.prepare({&stage_specs_.back()}, msg("pipeline (progressive step ", position + 1, ")"));
  ir::Graph trial = (from_float ? float_g_ : g_).clone();
  std::vector<report::StageRecord> history = from_float ? float_history_ : history_;
  std::vector<report::StepRef> refs = from_float ? float_refs_ : refs_;
  refs.push_back({name, r.method, stage_specs_.back().params});
  // Each step is a unit of the run's journal. The pipeline decides the same steps again on a
  // resume (its choices depend only on the models and measurements, which are loaded).
  const std::string key = msg("step/", position);
  const report::CandidateRecord* added = nullptr;
  if (const report::JournalUnit* done = ws_.finished(key)) {
    trial = ws_.restore(*done);
    history.push_back(done->stages.at(0));
    report::CandidateRecord restored = *done->candidate;
    if (restored.name != name)
      throw InputError(msg("--resume: step ", position + 1, " of the journal is ", restored.name,
                           " but this run chose ", name, "; start over with --force"));
    restored.steps = refs;
    added = &store_->restore(std::move(restored), trial.clone());
  } else {
    history.push_back(ws_.run_stage(trial, prepared[0], position));
    added = &store_->add(name, refs, history, trial, t0);
    report::CandidateRecord& rec = store_->candidate(added->index);
    rec.status = added->passed ? "kept" : "rolled back";
    rec.note = note;
    store_->record(key, added->index, {history.back()}, trial);
  }
  const report::CandidateRecord& c = *added;
  if (!c.passed) {
    log::info("  rolled back: ", c.reason);
    return false;
  }
  g_ = std::move(trial);
  history_ = std::move(history);
  refs_ = std::move(refs);
  ratio_ = c.compression_ratio;
  kept_ = c.index;
  return true;
}

void Progressive::lowrank_phase() {
  if (!opt_.uses("lowrank") || reached() || out_of_steps()) return;
  if (quantization_suffices("lowrank")) return;
  auto tol = analyse("lowrank", g_, label());
  std::map<std::string, double> ratios;
  for (const auto& [layer, t] : tol)
    for (size_t i = 0; i < t.size(); ++i)
      if (t[i] && *t[i]) {
        ratios[layer] = kRankRatios[i];
        break;
      }
  if (ratios.empty()) {
    skip("lowrank",
         "no layer tolerates a factorization that saves size (each one-layer model fails the "
         "guard, or saves nothing)");
    return;
  }
  auto describe = [](const std::map<std::string, double>& rs) {
    std::string s;
    for (const auto& [l, r] : rs) s += msg(s.empty() ? "" : ", ", l, " ", r);
    return s;
  };
  std::vector<std::string> chosen;
  for (const auto& [l, r] : ratios) chosen.push_back(l);
  const std::vector<std::string> left = minus(float_layers(g_), chosen);
  if (step("lowrank", lowrank_recipe(ratios, left),
           msg("low rank, rank ratio per layer from the sensitivity: ", describe(ratios),
               "; left alone: ", names_or_none(left)),
           false))
    return;
  if (out_of_steps()) return;
  // Gentler: every rank doubled (a ratio of 1 saves nothing: that layer is dropped).
  std::map<std::string, double> gentler;
  for (const auto& [l, r] : ratios)
    if (r * 2 < 1.0) gentler[l] = r * 2;
  if (gentler.empty()) {
    skip("lowrank (gentler)", "no layer left to factorize at twice the rank");
    return;
  }
  chosen.clear();
  for (const auto& [l, r] : gentler) chosen.push_back(l);
  const std::vector<std::string> left2 = minus(float_layers(g_), chosen);
  step("lowrank-gentler", lowrank_recipe(gentler, left2),
       msg("retry of the rolled-back low rank at twice the ranks: ", describe(gentler),
           "; left alone: ", names_or_none(left2)),
       false);
}

void Progressive::structured_phase() {
  if (!opt_.uses("structured") || reached() || out_of_steps()) return;
  std::optional<std::map<std::string, std::vector<std::optional<bool>>>> tol;
  // The share of its channels each layer has lost in the kept steps of this family (of those it
  // had when the family started).
  std::map<std::string, double> lost;
  auto after = [&](const std::string& layer, double f) {
    return 1.0 - (1.0 - lost[layer]) * (1.0 - f);
  };
  // Does the layer tolerate losing `share` alone? Measured at the tested shares: the smallest
  // tested share at least as large decides.
  auto tolerates = [&](const std::string& layer, double share) {
    const auto& t = tol->at(layer);
    for (size_t i = 0; i < kChannelShares.size(); ++i)
      if (kChannelShares[i] >= share - 1e-9) return t[i] && *t[i];
    return false;
  };
  for (size_t k = 0; k < kChannelShares.size(); ++k) {
    // Each rung removes a fixed share of the remaining channels, so that a layer in every rung
    // has lost 25%, 50%, 75% of its channels.
    const double prev = k ? kChannelShares[k - 1] : 0.0;
    const double f = std::round((1.0 - (1.0 - kChannelShares[k]) / (1.0 - prev)) * 1000.0) / 1000.0;
    const std::string name = msg("channels", std::lround(kChannelShares[k] * 100));
    if (reached() || out_of_steps()) return;
    if (quantization_suffices(name)) return;
    if (!tol) tol = analyse("structured", g_, label());
    std::vector<std::string> chosen;
    for (const auto& [layer, t] : *tol)
      if (tolerates(layer, after(layer, f))) chosen.push_back(layer);
    if (chosen.empty()) {
      skip(name, msg("no layer tolerates losing a further ", pct(f),
                     " of its channels alone (each one-layer model fails the guard, or the "
                     "layer's channels cannot be removed)"));
      return;
    }
    const std::vector<std::string> left = minus(float_layers(g_), chosen);
    auto note = [&](double frac) {
      std::string each;
      for (const auto& l : chosen)
        each += msg(each.empty() ? "" : ", ", l, " ", pct(after(l, frac)));
      return msg("structured pruning (L1 filters): ", pct(frac),
                 " of the remaining output channels of ", join(chosen, ", "),
                 " (lost in all: ", each, ")",
                 left.empty() ? std::string() : "; other layers' channels stay");
    };
    const std::string n1 = note(f);
    if (step(name, channel_recipe(f, left), n1, false)) {
      for (const auto& l : chosen) lost[l] = after(l, f);
      continue;
    }
    if (out_of_steps()) return;
    const double half = std::round(f / 2 * 1000.0) / 1000.0;
    if (step(msg(name, "-gentler"), channel_recipe(half, left),
             "retry of the rolled-back " + name + " at half the share: " + note(half), false))
      for (const auto& l : chosen) lost[l] = after(l, half);
    for (size_t j = k + 1; j < kChannelShares.size(); ++j)
      skip(msg("channels", std::lround(kChannelShares[j] * 100)),
           msg("not tried: ", name, " broke the guard, so removing more channels would too"));
    return;
  }
}

void Progressive::prune_phase() {
  if (!opt_.uses("unstructured") || reached() || out_of_steps()) return;
  std::optional<std::map<std::string, std::vector<std::optional<bool>>>> tol;
  double kept_ratio = 0.0;
  for (size_t k = 0; k < kPruneRatios.size(); ++k) {
    const double r = kPruneRatios[k];
    const std::string name = msg("prune", std::lround(r * 100));
    if (reached() || out_of_steps()) return;
    if (quantization_suffices(name)) return;
    if (!tol) tol = analyse("unstructured", g_, label());
    std::vector<std::string> chosen;
    for (const auto& [layer, t] : *tol)
      if (t[k] && *t[k]) chosen.push_back(layer);
    if (chosen.empty()) {
      skip(name, msg("no layer tolerates ", pct(r),
                     " pruning alone (each one-layer model fails the "
                     "guard)"));
      return;
    }
    const std::vector<std::string> left = minus(float_layers(g_), chosen);
    const std::string held = left.empty() ? std::string()
                                          : msg("; held at their sparsity (they do not tolerate ",
                                                pct(r), " alone): ", join(left, ", "));
    if (step(name, prune_recipe(r, left),
             msg("unstructured L1 pruning to ", pct(r),
                 " of each layer's weights: ", join(chosen, ", "), held),
             false)) {
      kept_ratio = r;
      continue;
    }
    if (out_of_steps()) return;
    // Gentler: halfway between the last kept ratio (0 = none) and the failed one.
    const double mid = std::round((kept_ratio + r) / 2 * 1000.0) / 1000.0;
    if (mid <= kept_ratio + 1e-9 || mid < 0.05) return;
    step(msg("prune", std::round(mid * 1000.0) / 10.0, "-gentler"), prune_recipe(mid, left),
         msg("retry of the rolled-back ", name, " halfway: ", pct(mid),
             " of each layer's weights: ", join(chosen, ", "), held),
         false);
    for (size_t j = k + 1; j < kPruneRatios.size(); ++j)
      skip(msg("prune", std::lround(kPruneRatios[j] * 100)),
           msg("not tried: ", name, " broke the guard, so a higher ratio would too"));
    return;
  }
}

void Progressive::quantize_phase() {
  if (!opt_.uses("quantize") || reached() || out_of_steps()) return;
  float_g_ = g_.clone();
  float_history_ = history_;
  float_refs_ = refs_;
  auto tol = analyse("quantize", float_g_, label());
  int kept_bits = 32;
  // The bits of each layer on a rung: the rung's when tolerated, else the fewest above them.
  auto plan = [&](int bits) {
    std::map<std::string, int> out;
    for (const auto& [layer, t] : tol) {
      int b = 8;
      for (size_t i = 0; i < kBits.size(); ++i)
        if (kBits[i] >= bits && t[i] && *t[i]) b = std::min(b, kBits[i]);
      out[layer] = b;
    }
    return out;
  };
  auto describe = [](int bits, const std::map<std::string, int>& p) {
    std::string more;
    for (const auto& [l, b] : p)
      if (b != bits) more += msg(more.empty() ? "" : ", ", l, " ", b);
    return msg("quantization-aware training, ", bits, "-bit weights",
               more.empty() ? std::string(" in every layer")
                            : msg(" (kept higher where a layer does not tolerate ", bits,
                                  " bits alone: ", more, ")"),
               ", 8-bit activations; from the model before quantization");
  };
  for (size_t k = 0; k < kBits.size(); ++k) {
    const int bits = kBits[k];
    const std::string name = msg("int", bits);
    if (reached() && quantized_) return;
    if (out_of_steps()) return;
    auto p = plan(bits);
    if (quantized_ &&
        std::all_of(p.begin(), p.end(), [&](const auto& kv) { return kv.second >= kept_bits; })) {
      skip(name, msg("no layer tolerates fewer than ", kept_bits, " bits alone"));
      return;
    }
    if (step(name, quant_recipe(bits, p), describe(bits, p), true)) {
      quantized_ = true;
      kept_bits = bits;
      continue;
    }
    if (out_of_steps()) return;
    // Gentler: halfway between the last kept bits and the failed ones.
    if (kept_bits <= 8 && kept_bits - bits >= 2) {
      // A layer that tolerates the failed rung's bits gets mid; the others keep their bits.
      const int mid = (kept_bits + bits + 1) / 2;
      std::map<std::string, int> pm = p;
      for (auto& [l, b] : pm) b = std::max(b, mid);
      if (step(msg("int", mid, "-gentler"), quant_recipe(mid, pm),
               "retry of the rolled-back " + name + " halfway: " + describe(mid, pm), true))
        quantized_ = true;
    }
    for (size_t j = k + 1; j < kBits.size(); ++j)
      skip(msg("int", kBits[j]),
           msg("not tried: ", name, " broke the guard, so fewer bits would too"));
    return;
  }
}

report::Report Progressive::run() {
  const auto& owner = "pipeline (progressive)";
  // Every check before any training: a representative stage of each family with the fine-tuning
  // (its options checked, data present).
  for (const std::string& m : opt_.methods) {
    Recipe r = m == "lowrank"        ? lowrank_recipe({}, {})
               : m == "structured"   ? channel_recipe(0.25, {})
               : m == "unstructured" ? prune_recipe(0.5, {})
                                     : quant_recipe(8, {});
    stage_specs_.push_back(StageSpec{r.method, recipe_params(r), opt_.finetune});
    ws_.prepare({&stage_specs_.back()}, owner);
  }
  stage_specs_.clear();
  ws_.load();
  CandidateStore::check_data(ws_, spec_.guard);
  if (float_layers(ws_.baseline()).empty())
    throw UnsupportedError(msg("pipeline (progressive): the model ", ws_.baseline().name,
                               " has no float Conv or Linear layer to compress"));
  ws_.start();
  store_.emplace(ws_, spec_.guard, CandidateStore::by_compression());
  min_val_ = store_->guard()->min_accuracy();
  g_ = ws_.baseline().clone();
  log::info("progressive: target ", opt_.target_compression, "x, methods ",
            join(opt_.methods, ", "));

  lowrank_phase();
  structured_phase();
  prune_phase();
  quantize_phase();

  report::PipelineRecord rec = store_->record("progressive");
  rec.entries_key = "history";
  rec.target_compression = opt_.target_compression;
  rec.sensitivity = std::move(sensitivity_);
  rec.skipped = std::move(skipped_);
  rec.selection =
      "the most compressed candidate that passes the guard (steps build on each other; the last "
      "kept one), then the highest validation accuracy; when none passes, the highest validation "
      "accuracy";
  const auto& cands = store_->candidates();
  int64_t kept = 0;
  for (const auto& c : cands) kept += c.status == "kept" ? 1 : 0;
  const std::string ratio = msg(std::round(ratio_ * 100) / 100, "x");
  const std::string target = msg(opt_.target_compression, "x");
  if (cands.empty()) {
    rec.outcome = "No step was tried.";
  } else if (reached()) {
    rec.outcome = msg("Target ", target, " reached: ", ratio, " after ", cands.size(), " step",
                      cands.size() == 1 ? "" : "s", " (", kept, " kept, ", cands.size() - kept,
                      " rolled back); the result is ", cands[kept_].name, ".");
  } else {
    rec.outcome = msg("Target ", target, " not reached: ");
    rec.outcome += kept_ >= 0 ? msg("got to ", ratio, " with ", cands[kept_].name, " (", kept,
                                    " of ", cands.size(), " steps kept)")
                              : msg("no step kept (", cands.size(), " rolled back)");
    const bool rolled_back = static_cast<int64_t>(cands.size()) > kept;
    rec.outcome += out_of_steps() ? msg("; max_steps (", opt_.max_steps, ") used up.")
                   : rolled_back  ? "; no further step fits the guard."
                                  : msg("; no further rung to try for the methods given (",
                                        join(opt_.methods, ", "), ").");
  }
  log::info(rec.outcome);
  return store_->finish(std::move(rec));
}

}  // namespace

bool ProgressiveOptions::uses(const std::string& method) const {
  return std::find(methods.begin(), methods.end(), method) != methods.end();
}

ProgressiveOptions ProgressiveOptions::from_params(Params& block) {
  ProgressiveOptions o;
  // Unknown keys first: a misspelt target_compression reads better as a did-you-mean than as
  // missing.
  for (const char* key : {"target_compression", "finetune", "methods", "max_steps"}) block.raw(key);
  block.finish();
  if (!block.has("target_compression"))
    throw ConfigError(msg("missing required key 'target_compression' in ", block.path(),
                          ": the compression ratio to reach (baseline size / compressed size), "
                          "a number > 1, e.g. target_compression: 8"));
  o.target_compression = block.get_double("target_compression", 0.0);
  if (!(o.target_compression > 1.0) || !std::isfinite(o.target_compression))
    throw ConfigError(msg(block.key_path("target_compression"),
                          ": expected a number > 1 (baseline "
                          "size / compressed size), got '",
                          block.raw("target_compression")->text(), "'"));
  if (auto ft = block.get_map("finetune")) o.finetune = train::TrainOptions::from_params(*ft);
  if (block.has("methods")) {
    std::vector<std::string> given = block.get_strings("methods");
    if (given.empty())
      throw ConfigError(
          msg(block.key_path("methods"), ": expected at least one of ", join(kFamilies, ", ")));
    // prune (or its alias pruning) means both kinds of pruning.
    std::vector<std::string> valid = {"lowrank", "prune", "structured", "unstructured", "quantize"};
    std::vector<std::string> wanted;
    for (size_t i = 0; i < given.size(); ++i) {
      const std::string m = canonical_method(given[i]);
      if (std::find(valid.begin(), valid.end(), m) == valid.end()) {
        std::string near = did_you_mean(given[i], valid);
        throw ConfigError(msg(block.key_path("methods"), "[", i, "]: expected one of ",
                              join(valid, ", "), ", got '", given[i], "'",
                              near.empty() ? "" : "; did you mean '" + near + "'?"));
      }
      if (m == "prune") {
        wanted.push_back("structured");
        wanted.push_back("unstructured");
      } else {
        wanted.push_back(m);
      }
    }
    o.methods.clear();
    for (const std::string& f : kFamilies)  // the ladder's order, whatever the order written
      if (std::find(wanted.begin(), wanted.end(), f) != wanted.end()) o.methods.push_back(f);
  }
  o.max_steps = block.get_int("max_steps", o.max_steps, 1, 1000);
  return o;
}

report::Report run_progressive(const WorkflowConfig& config, const RunOptions& options) {
  if (!config.pipeline || !config.pipeline->progressive || !config.pipeline->guard)
    throw InternalError("run_progressive needs a progressive pipeline parsed by parse_config");
  return Progressive(config, options).run();
}

}  // namespace squeeze::pipeline
