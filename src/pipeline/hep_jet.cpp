#include "squeeze/pipeline/hep_jet.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <deque>

#include "squeeze/pipeline/candidates.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

HepJetOptions HepJetOptions::from_params(Params& block) {
  HepJetOptions o;
  for (const char* key : {"preserve_rare_classes", "rare_tolerance", "rare_below", "rare_classes",
                          "class_weights", "finetune"})
    block.raw(key);
  block.finish({"steps"});
  o.preserve_rare_classes = block.get_bool("preserve_rare_classes", o.preserve_rare_classes);
  o.rare_tolerance = block.get_double("rare_tolerance", o.rare_tolerance);
  if (!(o.rare_tolerance >= 0 && o.rare_tolerance < 1))
    throw ConfigError(msg(block.key_path("rare_tolerance"),
                          ": expected a fraction of recall in [0, 1) (0.02 = 2 points), got ",
                          block.raw("rare_tolerance")->text()));
  block.document("rare_tolerance", "0 <= x < 1",
                 "how much validation recall a rare class may lose against the baseline");
  o.rare_below = block.get_double("rare_below", o.rare_below);
  if (!(o.rare_below > 0 && o.rare_below < 1))
    throw ConfigError(msg(block.key_path("rare_below"),
                          ": expected a share of the training samples in (0, 1) (0.05 = 5%), got ",
                          block.raw("rare_below")->text()));
  block.document("rare_below", "0 < x < 1",
                 "a class with less than this share of the training samples is rare");
  o.rare_classes = block.get_strings("rare_classes");
  if (block.has("rare_classes") && o.rare_classes.empty())
    throw ConfigError(msg(block.key_path("rare_classes"),
                          ": expected at least one class name or label index, e.g. [t]"));
  if (block.has("rare_classes") && block.has("rare_below"))
    throw ConfigError(msg("both 'rare_classes' and 'rare_below' given in ", block.path(),
                          ": rare_classes names the rare classes, rare_below finds them by their "
                          "share; keep one"));
  o.class_weights =
      block.get_choice("class_weights", o.preserve_rare_classes ? "inverse_frequency" : "none",
                       {"inverse_frequency", "none"});
  if (auto ft = block.get_map("finetune")) o.finetune = train::TrainOptions::from_params(*ft);
  if (!o.preserve_rare_classes && (block.has("rare_classes") || block.has("rare_tolerance")))
    throw ConfigError(msg(block.path(), ": rare_classes and rare_tolerance set the per-class "
                                        "guard, which preserve_rare_classes: false turns off; "
                                        "remove them or set preserve_rare_classes: true"));
  return o;
}

std::vector<double> inverse_frequency_weights(const at::Tensor& labels, int64_t num_classes) {
  at::Tensor counts = at::bincount(labels.to(at::kLong), {}, num_classes).to(at::kDouble);
  const double n = counts.sum().item<double>();
  std::vector<double> w(static_cast<size_t>(num_classes), 0.0);
  for (int64_t c = 0; c < num_classes; ++c) {
    const double k = counts[c].item<double>();
    if (k > 0) w[c] = n / (double(num_classes) * k);
  }
  return w;
}

namespace {

std::string class_label(const data::Splits& d, int64_t c) {
  return c < static_cast<int64_t>(d.class_names.size()) ? d.class_names[c] : std::to_string(c);
}

// Validation recall of each class in `classes` (by label); -1 for a class absent there.
std::vector<double> val_recalls(ir::Graph& g, const Workspace& ws, const std::vector<int64_t>& classes) {
  train::Metrics m = train::evaluate(g, ws.data()->val, ws.batch_size());
  std::vector<double> out;
  for (int64_t c : classes) {
    auto it = std::find(m.classes.begin(), m.classes.end(), c);
    out.push_back(it == m.classes.end() ? -1.0 : m.per_class_accuracy[it - m.classes.begin()]);
  }
  return out;
}

}  // namespace

report::Report run_hep_jet(const WorkflowConfig& config, const RunOptions& options) {
  const PipelineSpec& spec = *config.pipeline;
  const HepJetOptions& o = *spec.hep_jet;
  Workspace ws(config, options);
  ws.load();
  CandidateStore::check_data(ws, spec.guard);
  const data::Splits* d = ws.data();
  if (!d || d->train.size() == 0)
    throw ConfigError("pipeline (hep-jet): needs data with a training split (class weights, "
                      "fine-tuning) and a validation split (the guards)");
  const int64_t k = std::max<int64_t>(d->num_classes, 1);
  at::Tensor counts = at::bincount(d->train.y.to(at::kLong), {}, k).to(at::kDouble);
  const double n = counts.sum().item<double>();
  auto share = [&](int64_t c) { return counts[c].item<double>() / n; };

  // The rare classes: named, or found by their share of the training split.
  std::vector<int64_t> rare;
  if (o.preserve_rare_classes) {
    if (!o.rare_classes.empty()) {
      for (size_t i = 0; i < o.rare_classes.size(); ++i) {
        const std::string& name = o.rare_classes[i];
        int64_t c = -1;
        auto it = std::find(d->class_names.begin(), d->class_names.end(), name);
        if (it != d->class_names.end()) {
          c = it - d->class_names.begin();
        } else if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit) &&
                   name.size() < 10) {
          c = std::stoll(name);
        }
        if (c < 0 || c >= k) {
          std::vector<std::string> valid;
          for (int64_t j = 0; j < k; ++j) valid.push_back(class_label(*d, j));
          throw ConfigError(msg("pipeline.rare_classes[", i, "]: no class '", name,
                                "' in the data; valid: ", join(valid, ", "),
                                " (names or label indices 0..", k - 1, ")"));
        }
        if (std::find(rare.begin(), rare.end(), c) == rare.end()) rare.push_back(c);
      }
    } else {
      int64_t smallest = 0;
      for (int64_t c = 0; c < k; ++c) {
        if (share(c) < share(smallest)) smallest = c;
        if (share(c) > 0 && share(c) < o.rare_below) rare.push_back(c);
      }
      if (rare.empty())
        throw ConfigError(msg("pipeline.rare_below: no class has less than ", o.rare_below * 100,
                              "% of the training samples (the smallest, ", class_label(*d, smallest),
                              ", has ", share(smallest) * 100,
                              "%); raise rare_below, name the classes in rare_classes, or set "
                              "preserve_rare_classes: false"));
    }
    const at::Tensor val_counts = at::bincount(d->val.y.to(at::kLong), {}, k);
    for (int64_t c : rare)
      if (val_counts[c].item<int64_t>() == 0)
        throw ConfigError(msg("pipeline (hep-jet): the validation split has no sample of the rare "
                              "class ", class_label(*d, c),
                              ", so its recall cannot be guarded; raise data.split.val"));
  }
  std::vector<double> weights;
  if (o.class_weights == "inverse_frequency") weights = inverse_frequency_weights(d->train.y, k);

  // The steps with the pipeline's fine-tuning and the class weights.
  std::deque<StageSpec> specs;
  std::vector<PreparedStage> stages;
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    specs.push_back(spec.steps[i].stage);
    StageSpec& s = specs.back();
    if (!s.finetune) s.finetune = o.finetune.value_or(train::TrainOptions{});
    s.finetune->class_weights = weights;
    auto one = ws.prepare({&s}, msg("pipeline.steps[", i, "] (", spec.steps[i].name, ")"));
    stages.push_back(std::move(one[0]));
  }
  ws.attach_teachers(stages);
  ws.start();
  CandidateStore store(ws, spec.guard, CandidateStore::latest());

  std::vector<double> base_recall;
  if (!rare.empty()) {
    ir::Graph b = ws.baseline().clone();
    base_recall = val_recalls(b, ws, rare);
  }
  report::PipelineRecord extra;
  for (size_t r = 0; r < rare.size(); ++r) {
    report::RareClassRecord rc;
    rc.cls = rare[r];
    rc.name = class_label(*d, rare[r]);
    rc.train_share = share(rare[r]);
    rc.baseline_val_recall = base_recall[r];
    rc.min_val_recall = base_recall[r] - o.rare_tolerance;
    extra.rare_classes.push_back(rc);
    log::info("rare class ", rc.name, " (", rc.train_share * 100, "% of training samples): validation recall ",
              rc.baseline_val_recall, ", may not fall below ", rc.min_val_recall);
  }
  store.set_judge([&](report::CandidateRecord& c, const ir::Graph& graph) {
    if (rare.empty()) return;
    ir::Graph g = graph.clone();
    std::vector<double> rec = val_recalls(g, ws, rare);
    std::vector<std::string> broken;
    for (size_t r = 0; r < rare.size(); ++r) {
      const auto& rc = extra.rare_classes[r];
      c.figures["val_recall." + rc.name] = rec[r];
      // A hair of slack: recalls are ratios of counts, the bound a difference of two of them.
      if (rec[r] < rc.min_val_recall - 1e-12)
        broken.push_back(msg("rare class ", rc.name, " validation recall ", rec[r], " < ",
                             rc.min_val_recall, " (baseline ", rc.baseline_val_recall,
                             " - tolerance ", o.rare_tolerance, ")"));
    }
    if (!broken.empty()) {
      c.passed = false;
      c.reason += (c.reason.empty() ? "" : "; ") + join(broken, "; ");
    } else {
      c.reason += msg(c.reason.empty() ? "" : "; ", "rare classes within ", o.rare_tolerance,
                      " of their baseline recall");
    }
  });

  ir::Graph g = ws.baseline().clone();
  std::vector<report::StageRecord> history;
  std::vector<report::StepRef> applied;
  std::string name;
  size_t stopped = spec.steps.size();
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    const StepSpec& step = spec.steps[i];
    log::info("step ", i + 1, "/", spec.steps.size(), ": ", step.name);
    applied.push_back(step_ref(step));
    name += (name.empty() ? "" : ">") + step.name;
    auto t0 = std::chrono::steady_clock::now();
    ir::Graph next = g.clone();  // a rolled-back step leaves g as it was
    history.push_back(ws.run_stage(next, stages[i], i));
    const report::CandidateRecord& c = store.add(name, applied, history, next, t0);
    store.candidate(c.index).status = c.passed ? "kept" : "rolled back";
    if (!c.passed) {
      stopped = i;
      break;
    }
    g = std::move(next);
  }

  report::PipelineRecord rec = store.record("hep-jet");
  rec.entries_key = "history";
  rec.rare_classes = extra.rare_classes;
  rec.rare_tolerance = o.rare_tolerance;
  rec.class_weights = weights;
  rec.selection =
      "the model after the last step kept (a step that breaks the guard or a rare class's recall "
      "bound is rolled back and stops the pipeline)";
  for (size_t i = stopped + 1; i < spec.steps.size(); ++i)
    rec.skipped.push_back({spec.steps[i].name,
                           msg("not tried: step ", stopped + 1, " (", spec.steps[stopped].name,
                               ") was rolled back and stopped the pipeline")});
  if (stopped == spec.steps.size())
    rec.outcome = msg("All ", stopped, " steps kept; the result is the model after the last one.");
  else
    rec.outcome = msg("Step ", stopped + 1, " (", spec.steps[stopped].name,
                      ") was rolled back: ", store.candidates().back().reason, ".",
                      stopped > 0 ? msg(" The result is the model after step ", stopped, ".")
                                  : std::string(" No step kept: the rolled-back step is reported "
                                                "as the best candidate."));
  log::info(rec.outcome);
  return store.finish(std::move(rec));
}

}  // namespace squeeze::pipeline
