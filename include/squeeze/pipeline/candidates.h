// The candidate store every pipeline shares: each model a pipeline tries is measured (validation
// accuracy for the guard, test accuracy for the report, size and compression ratio), judged by
// the guard, saved as DIR/candidates/NN-NAME.sqz and kept in the report; the store keeps the
// best one in memory and, at the end, puts it into `results` as a normal entry with artifacts.
//
// Choosing the best:
//   - among the candidates that pass the guard, by the pipeline's own order (`Better`);
//   - when none passes, the candidate with the highest validation accuracy (the one that comes
//     closest to satisfying an accuracy guard), then the higher compression ratio, then the one
//     tried first. It is still saved and reported, with every candidate's reason, and the report
//     says loudly that it does not satisfy the guard.
// Only validation accuracy chooses; test accuracy is reported, never compared.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/guard.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/report/report.h"

namespace squeeze::pipeline {

class CandidateStore {
 public:
  // better(a, b): a ranks above b; both passed the guard. A strict weak order.
  using Better =
      std::function<bool(const report::CandidateRecord& a, const report::CandidateRecord& b)>;

  // Highest compression ratio, then highest validation accuracy, then tried first.
  static Better by_compression();
  // The candidate tried last (a pipeline whose candidates build on each other).
  static Better latest();

  // Called by add() after the guard's verdict and before the best is chosen, with the measured
  // record and its model: a pipeline adds its own figures (hep-trigger: the FPGA estimate) and
  // may tighten the verdict (hep-jet: the per-class guard sets passed = false and the reason).
  using Judge = std::function<void(report::CandidateRecord& c, const ir::Graph& g)>;
  void set_judge(Judge judge) { judge_ = std::move(judge); }

  // Throws ConfigError, naming the data, when a guard is given and the loaded data has no
  // validation samples. Call after Workspace::load(), before start() (no training yet).
  static void check_data(const Workspace& ws, const std::optional<GuardOptions>& guard);

  // After ws.start(): measures the baseline's validation accuracy and binds the guard to it.
  CandidateStore(Workspace& ws, const std::optional<GuardOptions>& guard, Better better);

  // Measures g, judges it, saves it under candidates/ and keeps it when it is the best so far.
  // `history` is the candidate's stages from the baseline; `started` when its work began.
  const report::CandidateRecord& add(const std::string& name,
                                     const std::vector<report::StepRef>& steps,
                                     const std::vector<report::StageRecord>& history,
                                     const ir::Graph& g,
                                     std::chrono::steady_clock::time_point started);

  // A candidate an earlier run of this run finished (from the journal, --resume): its record as
  // measured then (`steps` set by the caller) and its model loaded from its checkpoint; kept as
  // add() keeps a candidate. The record's index must be the next one.
  const report::CandidateRecord& restore(report::CandidateRecord c, ir::Graph g);
  // Records the candidate `index` as the finished unit `key` of the run's journal (after the
  // runner set its status), with `new_stages` (the stages it ran itself); g is reloaded from the
  // candidate's checkpoint (Workspace::record).
  void record(const std::string& key, int64_t index,
              const std::vector<report::StageRecord>& new_stages, ir::Graph& g);

  const std::vector<report::CandidateRecord>& candidates() const { return candidates_; }
  report::CandidateRecord& candidate(size_t i) { return candidates_.at(i); }
  const std::optional<Guard>& guard() const { return guard_; }
  int64_t best_index() const { return best_; }

  // Sets every candidate's rank (1 = best): the passing ones by `better`, then the others as in
  // the fallback order above.
  void rank();

  // The report's pipeline record with the guard and every candidate; the caller adds type,
  // entries_key, skipped, selection and outcome.
  report::PipelineRecord record(const std::string& type) const;

  // Puts the best candidate into results (named after it, artifacts under models/), adds a
  // warning when it does not satisfy the guard, measures latency and writes the report.
  // Without any candidate, results stays empty.
  // `also`: indices of other candidates to put into results after it (hep-trigger: the naive
  // reference recipe), each named after its candidate and loaded from its checkpoint; the best
  // itself is skipped there.
  report::Report finish(report::PipelineRecord record, const std::vector<int64_t>& also = {});

 private:
  bool ahead(const report::CandidateRecord& a, const report::CandidateRecord& b) const;

  Workspace& ws_;
  double baseline_val_ = 0.0;  // the baseline's validation accuracy (0 without validation data)
  std::optional<Guard> guard_;
  Better better_;
  Judge judge_;
  std::vector<report::CandidateRecord> candidates_;
  int64_t best_ = -1;
  std::optional<ir::Graph> best_graph_;
};

// The report's description of a pipeline step.
report::StepRef step_ref(const StepSpec& step);

}  // namespace squeeze::pipeline
