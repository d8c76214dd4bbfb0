// The workflow configuration (DESIGN.md section 4): YAML parsed, in this one place, into typed
// structs. Unknown keys are rejected with the valid keys and a did-you-mean; wrong types and
// out-of-range values name the key path, the value and the allowed range (ConfigError).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/deploy/fpga.h"
#include "squeeze/data/dataset.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/guard.h"
#include "squeeze/report/report.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/params.h"

namespace squeeze::pipeline {

using ModelSpec = models::ModelSpec;

struct AutotuneSpec;  // pipeline/autotune.h

struct StageSpec {
  std::string method;                 // canonical name ("prune"); aliases resolved
  std::shared_ptr<Params> params;     // method parameters, validated by the method's options
  std::optional<train::TrainOptions> finetune;
};

struct ExperimentSpec {
  std::string name;
  std::vector<StageSpec> stages;
};

// One step of a pipeline: a stage with a name (default: its method, "-2", "-3"... for repeats)
// that names it in candidates and the report.
struct StepSpec {
  std::string name;
  StageSpec stage;
};

// pipeline: {type: ..., guard: ..., ...}. The keys every type shares are parsed for every type;
// each runnable type's own keys are parsed and checked (unknown keys rejected). A type this
// build cannot run yet keeps its other keys unread in `block` (its runner will parse them).
//
//   validation:   {type: validation, guard: GUARD, steps: [STAGE...]}          guard required
//   combinations: {type: combinations, guard: GUARD, steps: [STAGE...], max_candidates: 64}
//   progressive:  {type: progressive, guard: GUARD, target_compression: 8, finetune: {...},
//                  methods: [lowrank, prune, quantize], max_steps: 12}            guard required
//   hep-trigger:  {type: hep-trigger, guard: GUARD, target_latency_ns: 100, clock_mhz: 200,
//                  reuse_factor: 1, max_dsp, max_lut, precision, sparsities, weight_bits,
//                  activation_bits, finetune, naive}         guard required (hep_trigger.h)
//   hep-jet:      {type: hep-jet, guard: GUARD, preserve_rare_classes: true, rare_tolerance: 0.02,
//                  rare_below | rare_classes, class_weights, finetune, steps}  (hep_jet.h)
//   GUARD:        guard: {max_drop: 0.01, relative: true} | guard: {preserve_accuracy: 0.98}
//                 | preserve_accuracy: 0.98 (in the pipeline block)
struct ProgressiveOptions;  // pipeline/progressive.h
struct HepTriggerOptions;   // pipeline/hep_trigger.h
struct HepJetOptions;       // pipeline/hep_jet.h

struct PipelineSpec {
  std::string type;  // progressive | validation | combinations | autotune | hep-trigger | hep-jet
  std::optional<GuardOptions> guard;  // absent: no accuracy guard (every candidate passes)
  std::vector<StepSpec> steps;        // validation, combinations; at least one
  int64_t max_candidates = 64;        // combinations: how many orderings are tried at most
  // progressive: target_compression, finetune, methods, max_steps (pipeline/progressive.h).
  std::shared_ptr<const ProgressiveOptions> progressive;
  std::shared_ptr<Params> block;      // the block as written (a copy; its used flags are its own)
  // autotune: the search (template, space, objective, budgets), parsed by pipeline/autotune.h.
  std::shared_ptr<const AutotuneSpec> autotune;
  // hep-trigger: the FPGA budget and the search's ladders (pipeline/hep_trigger.h). The config
  // also sets output.fpga from it (clock, reuse factor, precision) and output.metrics hep.
  std::shared_ptr<const HepTriggerOptions> hep_trigger;
  // hep-jet: the rare classes, their tolerance and the class weights (pipeline/hep_jet.h); its
  // steps are `steps` (default: the common recipe). The config adds output.metrics hep.
  std::shared_ptr<const HepJetOptions> hep_jet;
};

struct OutputSpec {
  std::string dir = "runs/default";
  std::vector<std::string> exports;   // onnx | qonnx | torchscript | cpp
  bool latency = true;                // measure batch-1 / batch-64 latency
  std::vector<int64_t> latency_batches = {1, 64};
  // output.recommend: {max_drop: 0.01, by: size | latency | flops, batch: N (by latency)}
  report::RecommendOptions recommend;
  // output.fpga: {clock_mhz, reuse_factor, precision, input_precision, softmax}: an FPGA cost
  // estimate (deploy/fpga.h) of the baseline and of every result, as report.json "fpga".
  std::optional<deploy::FpgaOptions> fpga;
  int64_t latency_threads = 1;        // intra-op threads while measuring latency (0: all cores);
                                      // 1 by default: the most repeatable on a shared machine
  // output.metrics: extra figures in the report; "hep": per-class ROC AUC and background
  // rejection at 50% / 10% signal efficiency (train/hep_metrics.h). Empty by default.
  std::vector<std::string> metrics;
  bool hep() const {
    for (const auto& m : metrics)
      if (m == "hep") return true;
    return false;
  }
};

struct WorkflowConfig {
  uint64_t seed = 0;
  int64_t threads = 0;                // 0: all cores
  ModelSpec model;
  std::optional<data::DataOptions> data;   // absent: no evaluation or fine-tuning possible
  std::optional<train::TrainOptions> baseline_train;  // absent: evaluate the model as given
  // baseline: {checkpoint: PATH}: a trained baseline (.sqz or .onnx) used instead of training
  // one: no baseline.train. model: may then be left out (the checkpoint is the model); when
  // given, the checkpoint must have its input shape and classes.
  std::string baseline_checkpoint;
  bool model_given = false;  // the config has a model: block
  std::vector<ExperimentSpec> experiments;
  std::optional<PipelineSpec> pipeline;  // absent: run the experiments
  OutputSpec output;

  std::shared_ptr<Params> tree;       // the whole config after overrides (for the report)
  std::string source_text;            // the YAML text as read
  std::string source_path;
};

// Reads and validates a workflow file. `overrides` are "key.path=value" strings (--set).
// Throws InputError if the file cannot be read or is not YAML (line and column named),
// ConfigError for bad keys or values.
WorkflowConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
WorkflowConfig parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                            const std::string& source_name = "<string>");

// Converts YAML text into a Params tree (exposed for tests and for `--data DATA.yaml`).
std::shared_ptr<Params> yaml_to_params(const std::string& yaml_text, const std::string& source_name);

// One stage {method, params, finetune} as written, without a name (the autotune pipeline
// instantiates its stage template through this). Throws ConfigError as parse_config does.
StageSpec parse_stage_spec(Params& stage);

// Canonical method name for an alias ("pruning" -> "prune"); unknown names are returned as is.
std::string canonical_method(const std::string& name);

}  // namespace squeeze::pipeline
