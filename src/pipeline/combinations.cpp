#include "squeeze/pipeline/combinations.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <map>
#include <numeric>

#include "squeeze/pipeline/candidates.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"

namespace squeeze::pipeline {

namespace {

using Ordering = std::vector<size_t>;

std::string ordering_name(const std::vector<StepSpec>& steps, const Ordering& o,
                          size_t len = SIZE_MAX) {
  std::string name;
  for (size_t i = 0; i < o.size() && i < len; ++i) name += (i ? ">" : "") + steps[o[i]].name;
  return name;
}

Ordering prefix(const Ordering& o, size_t len) {
  return Ordering(o.begin(), o.begin() + static_cast<long>(len));
}

// Why an ordering cannot run, known before running it; "" when it can.
std::string static_skip_reason(const std::vector<StepSpec>& steps, const Ordering& o) {
  for (size_t i = 1; i < o.size(); ++i) {
    const StepSpec& s = steps[o[i]];
    if (s.stage.method == "distill" && s.stage.params && s.stage.params->has("student"))
      return msg(
          s.name,
          " trains a new student from scratch, so the steps before it would be discarded (the same "
          "model as ",
          s.name, " first)");
  }
  return "";
}

// sum over k = 1..n of n! / (n-k)!, saturating at INT64_MAX.
int64_t count_orderings(size_t n) {
  int64_t total = 0, term = 1;
  for (size_t k = 1; k <= n; ++k) {
    const int64_t factor = static_cast<int64_t>(n - k + 1);
    if (term > INT64_MAX / factor) return INT64_MAX;
    term *= factor;
    if (total > INT64_MAX - term) return INT64_MAX;
    total += term;
  }
  return total;
}

std::string owner(const std::vector<StepSpec>& steps, size_t i) {
  return msg("pipeline.steps[", i, "] (", steps[i].name, ")");
}

}  // namespace

CombinationPlan plan_combinations(const std::vector<StepSpec>& steps, int64_t max_candidates) {
  CombinationPlan plan;
  const size_t n = steps.size();
  plan.total = count_orderings(n);
  const size_t limit = static_cast<size_t>(std::max<int64_t>(max_candidates, 0));
  int64_t examined = 0;
  for (size_t k = 1; k <= n && plan.run.size() < limit; ++k) {
    Ordering subset(k);
    std::iota(subset.begin(), subset.end(), 0);
    while (plan.run.size() < limit) {
      Ordering o = subset;  // sorted: the first ordering in lexicographic order
      do {
        if (plan.run.size() >= limit) break;
        ++examined;
        std::string why = static_skip_reason(steps, o);
        if (why.empty())
          plan.run.push_back(o);
        else
          plan.skipped.emplace_back(o, why);
      } while (std::next_permutation(o.begin(), o.end()));
      // The next k-subset in lexicographic order.
      size_t i = k;
      while (i > 0 && subset[i - 1] == n - k + i - 1) --i;
      if (i == 0) break;
      ++subset[i - 1];
      for (size_t j = i; j < k; ++j) subset[j] = subset[j - 1] + 1;
    }
  }
  plan.not_examined = plan.total == INT64_MAX ? INT64_MAX : plan.total - examined;
  return plan;
}

report::Report run_combinations(const WorkflowConfig& config, const RunOptions& options) {
  const PipelineSpec& spec = *config.pipeline;
  const std::vector<StepSpec>& steps = spec.steps;
  Workspace ws(config, options);
  for (size_t i = 0; i < steps.size(); ++i) ws.prepare({&steps[i].stage}, owner(steps, i));
  const CombinationPlan plan = plan_combinations(steps, spec.max_candidates);
  ws.load();
  CandidateStore::check_data(ws, spec.guard);
  // Fresh passes per ordering (a pass may keep state between run, fine-tuning and finalize);
  // every ordering's teachers checked against its students now, before any training.
  std::vector<std::vector<PreparedStage>> prepared;
  for (const Ordering& o : plan.run) {
    std::vector<PreparedStage> stages;
    for (size_t idx : o)
      stages.push_back(std::move(ws.prepare({&steps[idx].stage}, owner(steps, idx))[0]));
    ws.attach_teachers(stages);
    prepared.push_back(std::move(stages));
  }
  ws.start();
  CandidateStore store(ws, spec.guard, CandidateStore::by_compression());

  struct Done {
    ir::Graph graph;
    std::vector<report::StageRecord> history;
  };
  std::map<Ordering, Done> done;                // candidates' models, reused as prefixes
  std::map<Ordering, std::string> skipped_run;  // skipped while running, why
  std::vector<report::SkippedCandidate> skipped;
  for (const auto& [o, why] : plan.skipped) skipped.push_back({ordering_name(steps, o), why});
  for (size_t c = 0; c < plan.run.size(); ++c) {
    const Ordering& o = plan.run[c];
    // Orderings come by size: the next size needs the models of this size as its prefixes only.
    for (auto it = done.begin(); it != done.end();)
      it = it->first.size() + 1 < o.size() ? done.erase(it) : ++it;
    const std::string name = ordering_name(steps, o);
    log::info("candidate ", c + 1, "/", plan.run.size(), ": ", name);
    // Each ordering is a unit of the run's journal: a candidate, or a skip found while running.
    const std::string key = msg("ordering/", c);
    if (const report::JournalUnit* finished = ws.finished(key)) {
      if (!finished->skipped.empty()) {
        log::info("  skipped (by an earlier run): ", finished->skipped);
        skipped_run[o] = finished->skipped;
        skipped.push_back({name, finished->skipped});
        continue;
      }
      report::CandidateRecord rec = *finished->candidate;
      for (size_t idx : o) rec.steps.push_back(step_ref(steps[idx]));
      ir::Graph g = ws.restore(*finished);
      std::vector<report::StageRecord> history = rec.history;
      store.restore(std::move(rec), g.clone());
      done[o] = Done{std::move(g), std::move(history)};
      continue;
    }
    std::string why;
    for (size_t len = 1; len < o.size() && why.empty(); ++len) {
      auto it = skipped_run.find(prefix(o, len));
      if (it != skipped_run.end())
        why = msg("extends ", ordering_name(steps, o, len), ", skipped: ", it->second);
    }
    auto t0 = std::chrono::steady_clock::now();
    ir::Graph g;
    std::vector<report::StageRecord> history;
    size_t start = 0;
    for (size_t len = o.size() - 1; why.empty() && len >= 1; --len) {
      auto it = done.find(prefix(o, len));
      if (it == done.end()) continue;
      g = it->second.graph.clone();
      history = it->second.history;
      start = len;
      log::info("  reusing candidate ", ordering_name(steps, o, len));
      break;
    }
    if (start == 0) g = ws.baseline().clone();
    for (size_t i = start; i < o.size() && why.empty(); ++i) {
      std::string summary;
      std::optional<report::StageRecord> rec = ws.try_stage(g, prepared[c][i], i, &summary);
      if (rec)
        history.push_back(*rec);
      else
        why = msg(steps[o[i]].name, " finds nothing to do ",
                  i ? "after " + ordering_name(steps, o, i) : "on the baseline", " (", summary, ")",
                  i ? ", so this would repeat " + ordering_name(steps, o, i) : "");
    }
    if (!why.empty()) {
      log::info("  skipped: ", why);
      skipped_run[o] = why;
      skipped.push_back({name, why});
      report::JournalUnit unit;
      unit.key = key;
      unit.skipped = why;
      ws.record(std::move(unit), nullptr);
      continue;
    }
    std::vector<report::StepRef> refs;
    for (size_t idx : o) refs.push_back(step_ref(steps[idx]));
    const report::CandidateRecord& added = store.add(name, refs, history, g, t0);
    store.candidate(added.index).status = "tried";
    store.record(key, added.index,
                 std::vector<report::StageRecord>(history.begin() + static_cast<long>(start),
                                                  history.end()),
                 g);
    done[o] = Done{std::move(g), std::move(history)};
  }
  done.clear();

  store.rank();
  report::PipelineRecord rec = store.record("combinations");
  rec.entries_key = "candidates";
  rec.skipped = std::move(skipped);
  rec.selection =
      "among the candidates that pass the guard, the highest compression ratio, then the highest "
      "validation accuracy, then the first tried; when none passes, the highest validation "
      "accuracy";
  int64_t passing = 0;
  for (const auto& c : store.candidates()) passing += c.passed ? 1 : 0;
  rec.outcome = msg(store.candidates().size(), " of ", plan.total, " orderings tried, ",
                    rec.skipped.size(), " skipped");
  if (plan.not_examined > 0)
    rec.outcome +=
        msg(", ", plan.not_examined, " not examined (max_candidates: ", spec.max_candidates, ")");
  rec.outcome += msg("; ", passing, " pass", passing == 1 ? "es" : "", " the guard.");
  if (store.best_index() >= 0) {
    const report::CandidateRecord& best = store.candidates()[store.best_index()];
    rec.outcome += msg(" Best: ", best.name, passing ? "" : " (fails the guard)", ".");
  }
  log::info(rec.outcome);
  return store.finish(std::move(rec));
}

}  // namespace squeeze::pipeline
