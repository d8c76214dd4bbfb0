// The autotune pipeline: a search over stage parameters declared in YAML, with the TPE sampler
// (pipeline/tpe.h), Optuna's median pruner (pipeline/pruner.h) and the SQLite or PostgreSQL study
// (pipeline/study.h), every trial measured as a candidate of the shared store
// (pipeline/candidates.h).
//
//   pipeline:
//     type: autotune
//     guard: {max_drop: 0.02, relative: true}   # required for max_compression, else optional
//     objective: accuracy_log_ratio             # | max_compression | pareto
//     pareto: size                              # objective pareto: size (default) | latency
//     trials: 40                                # the study holds at most this many trials
//     time: 2h                                  # no new trial after this long (90s, 30m, 2h)
//     seed: 0                                   # the sampler's seed (default: the workflow seed)
//     study: runs/tune/study.db                 # default: OUTDIR/study.db; or a PostgreSQL
//                                               #   URL postgresql://user@host:port/database
//     study_name: autotune                      # the study's name in that store (default)
//     heartbeat_timeout: 5m                     # a worker silent this long lost its trial
//     sampler: {type: tpe, startup_trials: 10}  # tpe (default) | random
//     pruner: {type: median, startup_trials: 5, warmup_steps: 0}   # or pruner: none
//     stages:                                   # the template each trial instantiates
//       - method: prune
//         params: {kind: unstructured, ratio: {float: [0.5, 0.95]}}
//         finetune: {epochs: 1, lr: {log_float: [1.0e-4, 1.0e-2]}}
//       - method: quantize
//         params: {mode: qat, weight_bits: {int: [2, 8]}, act_bits: 8}
//         finetune: {epochs: 1}
//
// Distributions, anywhere in a stage (params, finetune): {int: [lo, hi], step: s},
// {float: [lo, hi]} (optional step), {log_float: [lo, hi]}, {categorical: [a, b, ...]}. A
// parameter is named by its key path from the pipeline block: "stages[0].params.ratio".
//
// Objectives, all from VALIDATION accuracy (the test split is only reported):
//   accuracy_log_ratio  val_accuracy * ln(compression_ratio), maximized; the best is the
//                       highest score among the trials that pass the guard.
//   max_compression     compression_ratio when the trial passes the guard, else minus its
//                       relative validation drop (below any passing trial), maximized.
//   pareto              two values, (val_accuracy maximized, size_bytes or batch-1 latency in
//                       microseconds minimized), sampled with MOTPE; report.json marks the Pareto
//                       front; the best is the smallest (size or latency) trial that passes.
//
// A trial: the template instantiated at the proposed point, its stages run from the baseline
// (Workspace::run_stage), measured and saved as candidate "trial-N", its values and figures
// written to the study. After every fine-tuning epoch it reports the validation accuracy as an
// intermediate value (step = epochs so far in the trial, from 0) and the median pruner may stop
// it (state pruned; pruned trials have no model). A trial that throws is failed with the reason.
//
// At the end (trials budget reached, time budget spent), the best complete trial of the whole
// study, by the order above, is re-run from the baseline to confirm it and to have its model (it
// may have run in an earlier, interrupted process or in another worker); the re-run is candidate
// "best-trial-N" and the result, and the outcome says whether it reproduced the trial's
// validation accuracy. OUTDIR/best.yaml is then a ready experiments workflow (the same seed,
// model, data and baseline, one experiment with the concrete stages, output under OUTDIR/best)
// that `squeeze run OUTDIR/best.yaml` reproduces, run from the same folder as the search.
//
// Study and processes. The study's fingerprint is the model, data, baseline training, workflow
// seed, stage template, objective and guard (not trials, time or study), so a resume with a
// changed search is refused.
//   squeeze run C          creates the study; one that exists already is a ConfigError naming
//                          --resume and --worker.
//   squeeze run C --resume continues it: finished trials are kept, a trial that was running when
//                          the process died is re-run, new trials are proposed exactly as an
//                          uninterrupted run would have (proposals depend on the seed, the trial
//                          number and the history only). With the budget already spent it only
//                          re-runs the best and writes the report (how to finish after workers).
//   squeeze run C --worker joins (or creates) the study and claims trials beside other workers
//                          (each trial is claimed by exactly one). Each worker writes its report,
//                          candidates and best.yaml into OUTDIR/workers/<host>-<pid>/, covering
//                          every trial the study held when it finished; a later --resume writes
//                          the complete report into OUTDIR.
// A worker beats (Study::heartbeat) every fifth of heartbeat_timeout while it runs a trial, from
// a thread of its own, so a long epoch does not look like a dead worker. A worker that dies is
// noticed at once by workers on the same host (its pid is gone) and by the others after
// heartbeat_timeout; its trial is then re-queued with the same parameters and run by another
// worker (Study::claim_trial), at most StudyOptions::max_retries times.
// The baseline is trained again by each process (deterministic for a given seed and threads).
// SIGINT / SIGTERM: the running trial stops before its next batch and is released back to the
// study (re-run by the next --resume), the report of what is finished is written, and
// interrupt::Interrupted propagates (the CLI prints the resume command). The time budget counts
// from the end of the baseline training of the current process.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/guard.h"
#include "squeeze/pipeline/trial.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/report.h"

namespace squeeze::pipeline {

struct AutotuneSpec {
  enum class Objective { kAccuracyLogRatio, kMaxCompression, kPareto };
  Objective objective = Objective::kAccuracyLogRatio;
  std::string objective_name = "accuracy_log_ratio";
  std::string pareto = "size";  // objective pareto: size | latency
  int64_t trials = 40;
  double time_s = 0.0;           // 0: no time budget
  std::string time_text;         // as written
  std::optional<uint64_t> seed;  // the sampler's seed; absent: the workflow seed
  std::string study;             // empty: OUTDIR/study.db; or postgresql://user@host/database
  std::string study_name = "autotune";   // several studies share one database by name
  double heartbeat_timeout_s = 300.0;    // a silent worker's trial is retried after this long
  std::string sampler = "tpe";   // tpe | random
  int64_t startup_trials = 10;   // tpe: random proposals until this many trials finished
  bool prune = true;             // the median pruner
  int64_t pruner_startup_trials = 5;
  int64_t pruner_warmup_steps = 0;
  // The stages as written, distributions included (each a map {method, params, finetune}).
  std::vector<std::shared_ptr<Params>> stages;
  SearchSpace space;  // "stages[0].params.ratio" -> its distribution
};

// Reads the autotune keys of a pipeline block (type and guard already read) and finishes it.
// Throws ConfigError naming the key path: unknown key (did-you-mean), bad objective, trials < 1,
// bad time, a bad, empty or inverted range, log_float with low <= 0, no distribution at all,
// max_compression without a guard, a stage that does not parse at the lower bounds.
std::shared_ptr<const AutotuneSpec> parse_autotune(Params& block,
                                                   const std::optional<GuardOptions>& guard);

// "90s", "30m", "2h", "1h30m", "1.5h", "45" (seconds) -> seconds (> 0). ConfigError naming
// key_path otherwise.
double parse_duration(const std::string& text, const std::string& key_path);

// The template's stages at a point (internal values, one per space entry), as written with the
// distributions replaced by their values (Distribution::to_text).
std::vector<std::shared_ptr<Params>> instantiate_stages(const AutotuneSpec& spec,
                                                        const std::map<std::string, double>& point);

// The YAML of a workflow that runs `stages` as one experiment named `name` with the config's
// seed, model, data, baseline and other top-level settings, its output under `out_dir`.
std::string experiment_yaml(const WorkflowConfig& config,
                            const std::vector<std::shared_ptr<Params>>& stages,
                            const std::string& name, const std::string& out_dir,
                            const std::string& header_comment);

// Runs config.pipeline (type autotune); see above. Every check before any training; throws as
// run_workflow does, and interrupt::Interrupted after a SIGINT/SIGTERM (report written).
report::Report run_autotune(const WorkflowConfig& config, const RunOptions& options);

}  // namespace squeeze::pipeline
