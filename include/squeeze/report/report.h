// report.json, report.md and report.html (self-contained, SVG charts) for a workflow run.
// The JSON layout is a contract: DESIGN.md section 5.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/train/hep_metrics.h"

namespace squeeze {
class Params;
}

namespace squeeze::report {

struct ClassStats {
  int64_t cls = 0;
  std::string name;       // may be empty
  double accuracy = 0.0;  // = recall (fraction of that class's samples classified right)
  double recall = 0.0;
  double precision = 0.0;
};

// One layer that holds parameters, as the graph holds it (the figures `squeeze inspect` shows).
struct LayerStats {
  std::string name;
  std::string op;
  int64_t params = 0, nonzero_params = 0;
  int weight_bits = 0;  // stored bits of its weight: 32 float, 2..8 quantized, 0 no weight
};

// One epoch of training or fine-tuning (train::EpochRecord, as the report keeps it).
struct EpochPoint {
  int64_t epoch = 0;  // 1-based within its training run
  double train_loss = 0.0;
  double train_accuracy = 0.0;
  bool has_val = false;  // false: no validation split, val_* unknown
  double val_loss = 0.0;
  double val_accuracy = 0.0;
};

struct ModelStats {
  bool evaluated = false;  // false when there was no data: accuracy/loss are omitted then
  double accuracy = 0.0;
  double loss = 0.0;
  int64_t params = 0, nonzero_params = 0, size_bytes = 0, flops = 0;
  std::map<std::string, double> latency_us;  // "batch1", "batch64": median microseconds
  std::vector<ClassStats> per_class;
  int64_t num_classes = 0;           // the model's output width; 0: unknown. Classes below it
                                     // that are not in per_class were absent from the test set
  std::vector<LayerStats> layers;    // in graph order
  // output.metrics: [hep]: AUC and background rejection per class on the test split (one
  // against the rest); empty when not asked for (report.json then has no "hep").
  std::vector<train::HepClass> hep;
};

// One latency figure in full (report.json "latency" of the baseline and of each result, by batch
// key): the spread of the runs and, for results, the per-round speedup's quartiles.
struct LatencyDetail {
  double median_us = 0.0, p10_us = 0.0, p90_us = 0.0;
  double spread = 0.0;              // (p90 - p10) / median
  int64_t runs = 0;
  double median_lo_us = 0.0, median_hi_us = 0.0;  // 95% confidence interval of the median
  double speedup = 1.0, speedup_p25 = 1.0, speedup_p75 = 1.0;
  double speedup_lo = 1.0, speedup_hi = 1.0;      // 95% confidence interval of the speedup
  bool noisy = false;               // an interval wider than +-5%: this figure is uncertain
};

// How the latencies of a report were measured (report.json "latency_measurement").
struct LatencyMeasurement {
  int threads = 0;
  int64_t warmup = 0;
  double budget_s = 0.0;
  bool noisy = false;               // some figure is uncertain
  std::string advice;               // what would measure better, when noisy
};

struct StageRecord {
  std::string stage;     // method name
  std::string summary;   // what the pass changed, one line
  bool evaluated = false;
  double accuracy = 0.0;
  int64_t params = 0, nonzero_params = 0, size_bytes = 0, flops = 0;
  double seconds = 0.0;  // pass + fine-tuning wall time
  int64_t finetune_steps = 0;        // optimizer steps of the stage's fine-tuning (0: none)
  double step_ms = 0.0;              // mean wall time of one fine-tuning step
  std::string teacher;               // distillation: the teacher and settings; empty: none
  double teacher_ms_per_step = 0.0;  // distillation: of step_ms, the teacher's forward pass
  std::vector<EpochPoint> curve;     // the stage's fine-tuning, one point per epoch (none: empty)
  // Test accuracy right after the pass, before the stage's fine-tuning (only for stages that
  // fine-tune, when there is test data): what the method alone kept.
  bool evaluated_before_finetune = false;
  double accuracy_before_finetune = 0.0;
  // The pass's named figures (compress::PassResult::figures), e.g. a latency target's
  // predicted_latency_ratio and measured_latency_ratio; report.json history[].figures when any.
  std::map<std::string, double> figures;
};

struct ExperimentResult {
  std::string name;
  std::vector<std::string> stages;
  ModelStats stats;
  double accuracy_drop = 0.0;       // baseline accuracy - this accuracy
  double compression_ratio = 1.0;   // baseline size_bytes / size_bytes
  double param_ratio = 1.0;         // baseline nonzero params / nonzero params
  double flops_ratio = 1.0;         // baseline flops / flops
  std::map<std::string, double> speedup;  // "batch1": baseline latency / latency (measured;
                                          // the median of per-round ratios)
  std::map<std::string, LatencyDetail> latency;  // by batch key, when measured
  std::vector<StageRecord> history;
  std::map<std::string, std::string> artifacts;  // relative to the output folder
  double seconds = 0.0;
  // output.fpga: the FPGA cost estimate (report::fpga_json's object text); empty: not asked.
  std::string fpga;
};

// One pipeline step as a candidate applied it: its name in the pipeline, its method and the
// parameters as written.
struct StepRef {
  std::string name;
  std::string method;
  std::shared_ptr<Params> params;  // may be null: no parameters
};

// One model a pipeline tried: what was applied, how it measured and how the guard judged it.
// Selection uses the validation split only; the test accuracy is reported, never compared.
struct CandidateRecord {
  int64_t index = 0;               // 0, 1, ... in the order tried; tables, the chart and the
                                   // checkpoint's file name show it as #index+1
  std::string name;                // "lowrank>quantize": the steps' names in order
  std::vector<StepRef> steps;      // from the baseline, in order
  bool evaluated = false;          // false without data (no accuracies)
  double val_accuracy = 0.0;       // on the validation split
  double val_drop = 0.0;           // baseline validation accuracy - val_accuracy
  double val_relative_drop = 0.0;  // val_drop / baseline validation accuracy
  double accuracy = 0.0;           // on the test split
  int64_t params = 0, nonzero_params = 0, size_bytes = 0, flops = 0;
  double compression_ratio = 1.0;  // baseline size_bytes / size_bytes
  bool passed = true;              // passed the guard (true when the pipeline has none)
  std::string reason;              // the guard's verdict, or why the candidate was not judged
  std::string status;              // the pipeline's word: "kept", "rolled back", "ranked", ...
  std::string note;                // progressive: what the step did, to which layers ("" = none)
  int64_t rank = 0;                // 1 = best; 0 = not ranked
  std::string checkpoint;          // its saved model, relative to the output folder
  std::vector<StageRecord> history;
  double seconds = 0.0;  // time spent on this candidate (stages reused from an earlier
                         // candidate are in its history but not in this time)
  // hep-trigger: the candidate's FPGA cost estimate (report::fpga_json's object text) and its
  // role ("search" or "naive", the reference recipe); report.json "fpga" / "role" when set.
  std::string fpga;
  std::string role;
  // Pipeline-specific figures, report.json "figures" when any: hep-trigger "budget_overshoot"
  // (0 = fits), hep-jet "val_recall.<class>" of each rare class.
  std::map<std::string, double> figures;
};

// A candidate the pipeline chose not to run, and why.
struct SkippedCandidate {
  std::string name;
  std::string reason;
};

// progressive: one measurement of the sensitivity analysis: the validation accuracy of `model`
// with only `layer` compressed by `method` at `setting`, before any fine-tuning.
struct SensitivityRecord {
  std::string model;    // what was analysed: "baseline", "after #2 prune50"
  std::string layer;
  std::string method;   // lowrank | structured | unstructured | quantize
  std::string setting;  // "rank ratio 0.25", "50%", "4 bits"
  double val_accuracy = 0.0;
  bool tolerated = false;  // the one-layer model passes the guard
};

// hep-trigger: the budget the search works to (report.json pipeline.budget).
struct FpgaBudgetRecord {
  double target_latency_ns = 0.0;
  double clock_mhz = 0.0;
  int64_t reuse_factor = 1;
  int64_t max_dsp = -1, max_lut = -1;  // -1: no limit
  bool fits = false;                   // the chosen model fits every limit
  std::string gap;                     // what the chosen model misses by; empty when it fits
};

// hep-jet: one class the per-class guard protects (report.json pipeline.rare_classes).
struct RareClassRecord {
  int64_t cls = 0;
  std::string name;
  double train_share = 0.0;          // its share of the training split
  double baseline_val_recall = 0.0;  // what the per-class guard measures against
  double min_val_recall = 0.0;       // baseline_val_recall - tolerance
};

// One trial of an autotune search, as the study holds it.
struct TrialRecord {
  int64_t number = 0;
  std::string state;                          // complete | pruned | failed | running | waiting
  std::map<std::string, std::string> params;  // parameter path -> value as written in best.yaml
  std::vector<double> values;                 // objective values (empty unless complete)
  std::map<int64_t, double> intermediate;     // fine-tuning epoch (0-based) -> val accuracy
  int64_t candidate = -1;   // index into the pipeline's candidates; -1: run by another process
  bool measured = false;    // the figures below are known (complete trials)
  double val_accuracy = 0.0, accuracy = 0.0, compression_ratio = 0.0;
  int64_t size_bytes = 0;
  bool passed = false;      // passed the guard
  bool pareto = false;      // on the Pareto front (objective pareto)
  std::string note;         // why pruned / failed
  std::string worker;
  double seconds = 0.0;
};

// What a pipeline run adds to the report. report.json's "pipeline":
//   {type, guard: {max_drop, relative, written, baseline_val_accuracy, min_val_accuracy,
//   description} | null, baseline_val_accuracy, selection, outcome,
//   <entries_key>: [{index, name, steps: [{name, method, params}], val_accuracy, val_drop,
//   val_relative_drop, accuracy, accuracy_drop, params, nonzero_params, size_bytes, flops,
//   compression_ratio, passed_guard, reason, status, rank, checkpoint, history, seconds}],
//   skipped: [{name, reason}], best: {index, name, passed_guard, reason, checkpoint, result} |
//   null}
// progressive adds note to each entry, target_compression, and sensitivity: [{model, layer,
// method, setting, val_accuracy, tolerated}].
// where best.result names the entry of "results" that holds the chosen model. Autotune adds
//   objective: {name, values: [...], directions: [...]}, trials: [{number, state, params,
//   values, intermediate: [{step, value}], candidate, val_accuracy, accuracy, size_bytes,
//   compression_ratio, passed_guard, pareto_front, note, worker, seconds}].
struct PipelineRecord {
  std::string type;      // validation | combinations | ...
  bool guarded = false;  // false: no guard, every candidate passes
  double guard_max_drop = 0.0;
  bool guard_relative = true;
  std::string guard_written;  // the YAML spelling: "max_drop: 0.01, relative: true"
  double baseline_val_accuracy = 0.0;
  double guard_min_val_accuracy = 0.0;
  std::string guard_text;  // one sentence
  std::string entries_key =
      "candidates";  // report.json key of `candidates`: "history" for validation
  std::vector<CandidateRecord> candidates;  // every candidate tried, in order
  std::vector<SkippedCandidate> skipped;
  int64_t best = -1;      // index into candidates of the model in `results`; -1: none
  std::string selection;  // how the best was chosen, one sentence
  std::string outcome;    // what happened, one or two sentences
  // progressive (only emitted when set): the target ratio and the sensitivity analysis.
  double target_compression = 0.0;
  std::vector<SensitivityRecord> sensitivity;
  // Autotune: the objective and every trial of the study.
  std::string objective;                     // empty: not a search
  std::vector<std::string> objective_values; // what each value is: "val_accuracy * ln(...)"
  std::vector<std::string> objective_directions;  // "maximize" / "minimize", one per value
  std::vector<TrialRecord> trials;
  // hep-trigger (emitted when set): the budget, and the measured batch-1 latency of the chosen
  // model's generated C++ (deploy::measure_cpp_latency_ns, in HepTrigger::measure_generated_cpp;
  // absent when it could not be measured, with a warning saying why).
  std::optional<FpgaBudgetRecord> budget;
  std::optional<double> cpp_latency_ns;
  // hep-jet (emitted when rare_classes is not empty): the protected classes and the tolerance.
  std::vector<RareClassRecord> rare_classes;
  double rare_tolerance = 0.0;
  std::vector<double> class_weights;  // the fine-tuning's class weights; empty: unweighted
};

// env::describe() plus the int8 probe of this machine (exec/int8.h): what measured numbers
// depend on, for report.json's "environment" and `bench --json`'s "env".
std::map<std::string, std::string> environment();

// output.recommend: which model to ship. The recommended model is the one with the smallest
// `by` among the results whose test accuracy is at most max_drop below the baseline's.
struct RecommendOptions {
  double max_drop = 0.01;    // fraction of accuracy: 0.01 = 1 percentage point
  std::string by = "size";   // size | latency | flops
  std::string latency_key = "batch1";  // by latency: which latency_us entry
};

// The Pareto front over the baseline and the results (higher test accuracy, lower `by` cost) and
// the recommendation, as report.json's "recommendation" holds them.
struct Recommendation {
  std::string by;            // size | latency | flops
  std::string metric;        // the report.json key compared: size_bytes, flops, latency_us.batch1
  double max_drop = 0.0;
  bool judged = false;       // false: accuracy or the metric was not measured
  int64_t result = -1;       // index into results; -1: none qualifies (or not judged)
  bool baseline_on_front = false;
  std::vector<bool> on_front;  // per result
  std::string text;          // one or two sentences: what to ship and why, or why nothing
};

struct Report;
Recommendation recommend(const Report& report);

struct Report {
  std::string squeeze_version;
  std::shared_ptr<Params> config;   // the effective config (after --set), as parsed
  std::string config_text;          // the YAML as given
  std::string config_hash;          // hex SHA-256 or FNV of config_text + overrides
  std::map<std::string, std::string> environment;  // threads, blas, libtorch, host, ...
  std::string model_name;
  std::string data_description;
  // The data's class names in label order (CSV/ARFF string labels sorted, jets g q t w z);
  // report.json "class_names" when known.
  std::vector<std::string> class_names;
  ModelStats baseline;
  std::map<std::string, LatencyDetail> baseline_latency;  // by batch key, when measured
  std::optional<LatencyMeasurement> latency_measurement;
  std::map<std::string, std::string> baseline_artifacts;
  std::string baseline_fpga;        // output.fpga: the baseline's FPGA estimate (JSON); empty: not asked
  std::vector<ExperimentResult> results;
  // Set by pipeline runs only (experiments leave report.json exactly as before).
  std::optional<PipelineRecord> pipeline;
  // Things that make the numbers misleading (an untrained baseline, ...), one sentence each;
  // listed first in every form of the report, and as "warnings" in report.json.
  std::vector<std::string> warnings;
  double seconds = 0.0;
  std::vector<EpochPoint> baseline_curve;  // baseline.train, one point per epoch (none: empty)
  RecommendOptions recommend;               // output.recommend
};

// What the latency figures of a measured report (latency_measurement set) must say up front: one
// warning naming the uncertain figures (a noisy baseline latency or speedup) with the advice, and
// one per model that is slower than the baseline (its whole 95% interval below 1) at some batch.
std::vector<std::string> latency_warnings(const Report& report);

// Writes report.json, report.md and report.html into dir (atomically, each file).
void write_report(const Report& report, const std::string& dir);

// The comparison table printed at the end of a run (plain text, aligned columns).
std::string comparison_table(const Report& report);

}  // namespace squeeze::report
