#include "squeeze/pipeline/candidates.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "squeeze/io/sqz.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace fs = std::filesystem;

namespace {

// The fallback order when no candidate passes: closest to the accuracy goal first.
bool closer(const report::CandidateRecord& a, const report::CandidateRecord& b) {
  if (a.val_accuracy != b.val_accuracy) return a.val_accuracy > b.val_accuracy;
  if (a.compression_ratio != b.compression_ratio) return a.compression_ratio > b.compression_ratio;
  return a.index < b.index;
}

}  // namespace

CandidateStore::Better CandidateStore::by_compression() {
  return [](const report::CandidateRecord& a, const report::CandidateRecord& b) {
    if (a.compression_ratio != b.compression_ratio)
      return a.compression_ratio > b.compression_ratio;
    if (a.val_accuracy != b.val_accuracy) return a.val_accuracy > b.val_accuracy;
    return a.index < b.index;
  };
}

CandidateStore::Better CandidateStore::latest() {
  return [](const report::CandidateRecord& a, const report::CandidateRecord& b) {
    return a.index > b.index;
  };
}

void CandidateStore::check_data(const Workspace& ws, const std::optional<GuardOptions>& guard) {
  if (guard && !ws.has_validation())
    throw ConfigError(
        msg("pipeline.guard: the guard is checked on the validation split, but the data (",
            ws.data() ? ws.data()->description : std::string("none"),
            ") has no validation samples; raise data.split.val or data.limit.val"));
}

CandidateStore::CandidateStore(Workspace& ws, const std::optional<GuardOptions>& guard,
                               Better better)
    : ws_(ws), better_(std::move(better)) {
  if (ws.has_validation()) baseline_val_ = ws.val_accuracy(ws.baseline());
  if (!guard) return;
  guard_.emplace(*guard, baseline_val_);
  log::info("guard: ", guard_->describe());
  if (guard_->min_accuracy() <= 0) {
    std::string w = msg("the guard (", guard->written,
                        ") accepts every model: the baseline's validation accuracy ",
                        guard_->baseline_accuracy(), " is no more than the allowed drop");
    log::warn(w);
    ws.report().warnings.push_back(w);
  }
}

bool CandidateStore::ahead(const report::CandidateRecord& a,
                           const report::CandidateRecord& b) const {
  if (a.passed != b.passed) return a.passed;
  return a.passed ? better_(a, b) : closer(a, b);
}

const report::CandidateRecord& CandidateStore::add(const std::string& name,
                                                   const std::vector<report::StepRef>& steps,
                                                   const std::vector<report::StageRecord>& history,
                                                   const ir::Graph& graph,
                                                   std::chrono::steady_clock::time_point started) {
  ir::Graph g = graph.clone();  // evaluation runs the graph; the caller's stays as it was
  report::CandidateRecord c;
  c.index = static_cast<int64_t>(candidates_.size());
  c.name = name;
  c.steps = steps;
  c.history = history;
  const report::ModelStats& base = ws_.report().baseline;
  report::ModelStats st = evaluated_stats(g, ws_.data(), ws_.batch_size());
  c.evaluated = st.evaluated && ws_.has_validation();
  c.accuracy = st.accuracy;
  c.params = st.params;
  c.nonzero_params = st.nonzero_params;
  c.size_bytes = st.size_bytes;
  c.flops = st.flops;
  c.compression_ratio = st.size_bytes > 0 ? double(base.size_bytes) / double(st.size_bytes) : 0.0;
  if (ws_.has_validation()) c.val_accuracy = ws_.val_accuracy(g);
  if (guard_) {
    GuardVerdict v = guard_->check(c.val_accuracy);
    c.passed = v.passed;
    c.val_drop = v.drop;
    c.val_relative_drop = v.relative_drop;
    c.reason = v.reason;
  } else {
    c.passed = true;
    c.reason = "no guard";
    if (ws_.has_validation()) {
      c.val_drop = baseline_val_ - c.val_accuracy;
      c.val_relative_drop = baseline_val_ > 0 ? c.val_drop / baseline_val_ : 0.0;
    }
  }
  if (judge_) judge_(c, g);
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "%02lld-",
                static_cast<long long>(c.index + 1));  // as the tables number them
  c.checkpoint = "candidates/" + std::string(prefix) + safe_file_name(name) + ".sqz";
  fs::create_directories(fs::path(ws_.out_dir()) / "candidates");
  io::save_sqz(g, (fs::path(ws_.out_dir()) / c.checkpoint).string());
  c.seconds = seconds_since(started);
  log::info("candidate #", c.index + 1, " ", name, ": validation accuracy ", c.val_accuracy,
            ", compression ", c.compression_ratio, "x, ", c.passed ? "passes" : "fails",
            guard_ ? ": " + c.reason : std::string());

  candidates_.push_back(std::move(c));
  const report::CandidateRecord& added = candidates_.back();
  if (best_ < 0 || ahead(added, candidates_[best_])) {
    best_ = added.index;
    best_graph_ = std::move(g);
  }
  return added;
}

const report::CandidateRecord& CandidateStore::restore(report::CandidateRecord c, ir::Graph g) {
  SQZ_ASSERT(c.index == static_cast<int64_t>(candidates_.size()), "candidates restored in order");
  log::info("candidate #", c.index + 1, " ", c.name, ": finished by an earlier run, loaded (",
            c.checkpoint, ")");
  candidates_.push_back(std::move(c));
  const report::CandidateRecord& added = candidates_.back();
  if (best_ < 0 || ahead(added, candidates_[best_])) {
    best_ = added.index;
    best_graph_ = std::move(g);
  }
  return added;
}

void CandidateStore::record(const std::string& key, int64_t index,
                            const std::vector<report::StageRecord>& new_stages, ir::Graph& g) {
  report::JournalUnit unit;
  unit.key = key;
  unit.candidate = candidates_.at(static_cast<size_t>(index));
  unit.checkpoint = unit.candidate->checkpoint;
  unit.stages = new_stages;
  ws_.record(std::move(unit), &g);
}

void CandidateStore::rank() {
  std::vector<size_t> order(candidates_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return ahead(candidates_[a], candidates_[b]); });
  for (size_t r = 0; r < order.size(); ++r)
    candidates_[order[r]].rank = static_cast<int64_t>(r + 1);
}

report::PipelineRecord CandidateStore::record(const std::string& type) const {
  report::PipelineRecord rec;
  rec.type = type;
  if (guard_) {
    rec.guarded = true;
    rec.guard_max_drop = guard_->options().max_drop;
    rec.guard_relative = guard_->options().relative;
    rec.guard_written = guard_->options().written;
    rec.guard_min_val_accuracy = guard_->min_accuracy();
    rec.guard_text = guard_->describe();
  }
  rec.baseline_val_accuracy = baseline_val_;
  rec.candidates = candidates_;
  rec.best = best_;
  return rec;
}

report::Report CandidateStore::finish(report::PipelineRecord record,
                                      const std::vector<int64_t>& also) {
  record.best = best_;
  std::vector<const ir::Graph*> compressed;
  if (best_ >= 0) {
    const report::CandidateRecord& best = candidates_[best_];
    if (!best.passed) {
      std::string w =
          msg("no candidate satisfies the guard (", guard_->describe(),
              "); the model in results is the ", "candidate with the highest validation accuracy, ",
              best.name, " (", best.val_accuracy, "), which does not: ", best.reason);
      log::warn(w);
      ws_.report().warnings.push_back(w);
    }
    report::ExperimentResult res =
        ws_.result(best.name, best.history, *best_graph_, std::chrono::steady_clock::now());
    res.seconds = 0;
    for (const auto& h : best.history) res.seconds += h.seconds;
    ws_.report().results.push_back(std::move(res));
    compressed.push_back(&*best_graph_);
  }
  std::vector<ir::Graph> others;
  others.reserve(also.size());  // compressed points into it
  for (int64_t i : also) {
    if (i == best_ || i < 0 || i >= static_cast<int64_t>(candidates_.size())) continue;
    const report::CandidateRecord& c = candidates_[i];
    others.push_back(io::load_sqz((fs::path(ws_.out_dir()) / c.checkpoint).string()));
    report::ExperimentResult res =
        ws_.result(c.name, c.history, others.back(), std::chrono::steady_clock::now());
    res.seconds = 0;
    for (const auto& h : c.history) res.seconds += h.seconds;
    ws_.report().results.push_back(std::move(res));
    compressed.push_back(&others.back());
  }
  ws_.report().pipeline = std::move(record);
  return ws_.finish(compressed);
}

report::StepRef step_ref(const StepSpec& step) {
  return {step.name, step.stage.method, step.stage.params};
}

}  // namespace squeeze::pipeline
