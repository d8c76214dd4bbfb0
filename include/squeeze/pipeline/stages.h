// What every runner (the experiments workflow and each pipeline) shares: preparing stages
// (passes made, distillation checked, teachers loaded), the baseline (data, model, training,
// evaluation, artifacts), running one stage on a graph, turning a graph into a result, and
// finishing the report (latency, environment, files).
//
// A runner goes through the steps in this order, so that every user error is found before any
// training starts:
//
//   Workspace ws(config, options);                    // exports, data needs
//   auto stages = ws.prepare(specs, "experiment 'a'"); // passes made: parameters checked
//   ws.load();                                         // data, model, labels
//   ws.attach_teachers(stages);                        // teachers loaded and checked
//   ws.start();                                        // output folder, baseline trained
//   ir::Graph g = ws.baseline().clone();
//   for (size_t i = 0; i < stages.size(); ++i) history.push_back(ws.run_stage(g, stages[i], i));
//   rep.results.push_back(ws.result(name, history, g, t0));
//   ws.finish({&g});                                   // latency, report files
//
// Resuming (RunOptions::resume): the workspace keeps the run's journal (pipeline/run_state.h).
// start() loads a finished baseline instead of training it; runners ask finished(key) for each
// unit of theirs and load it (restore) instead of running it, and record() each unit they
// finish. The key-taking run_stage does both for one stage. A unit's successor always starts
// from the unit's checkpoint, interrupted or not, so that a resumed run computes what the
// uninterrupted one did; every fine-tuning seeds the global generator from its own seed.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/compress/registry.h"
#include "squeeze/data/dataset.h"
#include "squeeze/ir/graph.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/run_state.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/report.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/log.h"

namespace squeeze::pipeline {

// A stage ready to run: its pass (parameters validated) and its effective fine-tuning.
struct PreparedStage {
  const StageSpec* spec = nullptr;
  std::unique_ptr<compress::Pass> pass;
  // The stage's fine-tuning with the method's distillation folded in (method distill).
  std::optional<train::TrainOptions> finetune;
  const ir::Graph* teacher = nullptr;  // set when finetune->distill: the baseline or a loaded model
  // Called after each fine-tuning epoch (train::fit's epoch hook): the autotune pipeline reports
  // intermediate values and prunes there. Empty: none.
  train::EpochHook on_epoch;
};

// Thrown by Workspace::start() when RunOptions::check_only is set: every check before training
// passed. Not an exception type on purpose: only check_workflow catches it.
struct ChecksPassed {};

class Workspace {
 public:
  // Sets threads and seed, checks the exports and that baseline.train has data. The config must
  // outlive the workspace (prepared stages point into it).
  Workspace(const WorkflowConfig& config, const RunOptions& options);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // Makes the passes of a list of stages (their parameters checked) and folds a distill method's
  // settings into its fine-tuning. `owner` names the list in messages ("experiment 'a'",
  // "pipeline.steps[2]"). Throws ConfigError; needs no data and trains nothing.
  std::vector<PreparedStage> prepare(const std::vector<const StageSpec*>& specs,
                                     const std::string& owner) const;
  std::vector<PreparedStage> prepare(const std::vector<StageSpec>& specs,
                                     const std::string& owner) const;

  // Loads the data and builds the baseline model; checks the labels against its output width.
  void load();
  // Resolves the teachers of the stages (the baseline, or a model loaded once per distinct spec)
  // and checks each against its student. After load(), before start().
  void attach_teachers(std::vector<PreparedStage>& stages);
  // Creates the output folder, writes config.yaml, trains the baseline and the teachers that need
  // it, evaluates the baseline on the test split, writes its artifacts. The first thing that
  // trains: every check belongs before it. Resuming, loads the baseline and teachers a previous
  // run finished instead.
  void start();

  // The unit `key` when this run resumes one that finished it; nullptr otherwise (and always
  // for runs without a journal: check_only, autotune).
  const report::JournalUnit* finished(const std::string& key) const;
  // The model of a finished unit, from its checkpoint.
  ir::Graph restore(const report::JournalUnit& unit) const;
  // Records a finished unit. With g: g is first written as the unit's checkpoint (unless
  // unit.checkpoint names one already written, relative to the output folder), then reloaded
  // from it. Without a journal: nothing.
  void record(report::JournalUnit unit, ir::Graph* g);
  // The run's journal, or null (check_only, autotune).
  RunState* run_state() { return state_.get(); }

  // Runs one stage on g: pass, fine-tuning (seeded by the stage's position, so that runs that
  // differ in one setting see the same batches), finalize, verify, test evaluation.
  report::StageRecord run_stage(ir::Graph& g, PreparedStage& stage, size_t position);
  // run_stage as the unit `key` of the run: loaded when finished before, else run and recorded
  // (its checkpoint state/KEY.sqz).
  report::StageRecord run_stage(const std::string& key, ir::Graph& g, PreparedStage& stage,
                                size_t position);
  // run_stage, except that a stage whose pass finds nothing to do (and that does not distill,
  // whose work is the fine-tuning) is not fine-tuned: returns nullopt with g unchanged and
  // `summary` set to the pass's summary. For searches, where such a stage repeats a shorter run.
  std::optional<report::StageRecord> try_stage(ir::Graph& g, PreparedStage& stage, size_t position,
                                               std::string* summary = nullptr);

  // A result entry for g: test metrics, ratios against the baseline, artifacts under models/.
  report::ExperimentResult result(const std::string& name,
                                  const std::vector<report::StageRecord>& history, ir::Graph& g,
                                  std::chrono::steady_clock::time_point started);

  // Measures the latency of the baseline and of `compressed` (one per entry of results, in
  // order), records the environment and the total time, writes report.json/md/html, and marks
  // the journal finished.
  report::Report finish(const std::vector<const ir::Graph*>& compressed);

  // Accuracy on the validation split (what pipelines choose by); requires has_validation().
  double val_accuracy(ir::Graph& g) const;
  bool has_validation() const { return splits_ && splits_->val.size() > 0; }

  const WorkflowConfig& config() const { return config_; }
  const std::string& out_dir() const { return out_dir_; }
  // A path a config key names for a file the run writes, inside the output folder: `relative`
  // joined to it; ConfigError naming `key` when it is absolute or has a '..' part.
  std::string inside_output(const std::string& relative, const std::string& key) const;
  const data::Splits* data() const { return splits_ ? &*splits_ : nullptr; }
  int64_t batch_size() const { return batch_size_; }
  ir::Graph& baseline() { return baseline_; }
  report::Report& report() { return report_; }

 private:
  struct Teacher;
  ir::Graph load_baseline_checkpoint() const;
  deploy::FpgaEstimate fpga_estimate(const ir::Graph& g) const;  // with output.fpga
  std::optional<report::StageRecord> stage(ir::Graph& g, PreparedStage& ps, size_t position,
                                           bool skip_unchanged, std::string* summary);
  void measure_latencies(const std::vector<const ir::Graph*>& compressed);

  const WorkflowConfig& config_;
  RunOptions options_;
  std::string out_dir_;
  std::chrono::steady_clock::time_point started_;
  std::optional<data::Splits> splits_;
  int64_t batch_size_ = 128;
  ir::Graph baseline_;
  std::map<std::string, std::unique_ptr<Teacher>> teachers_;
  report::Report report_;
  std::unique_ptr<RunState> state_;
  std::unique_ptr<log::FileSink> log_file_;
};

// Test-split statistics of a graph (accuracy, loss, per class) when there is test data.
// With `hep` (output.metrics: [hep]) the stats also hold the per-class ROC AUC and background
// rejection (report::ModelStats::hep).
report::ModelStats evaluated_stats(ir::Graph& g, const data::Splits* data, int64_t batch_size,
                                   bool hep = false);

// Writes the checkpoint and the requested exports of g as models/<name>.*; returns the artifact
// paths relative to dir.
std::map<std::string, std::string> write_artifacts(const ir::Graph& g, const std::string& name,
                                                   const std::string& dir,
                                                   const std::vector<std::string>& exports);

// name with every character that is not [A-Za-z0-9._-] replaced by '_', and a leading '.' too,
// so that the result is one plain file name ("model" if empty): never "..", never a path.
std::string safe_file_name(const std::string& name);

double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace squeeze::pipeline
