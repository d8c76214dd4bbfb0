// The hep-jet pipeline: compress a jet tagger step by step (as the validation pipeline does)
// while the accuracy guard holds and, per class, the recall of every rare class stays within a
// tolerance of the baseline's, with class-weighted fine-tuning so that the rare classes are not
// what the compression gives up first.
//
//   pipeline:
//     type: hep-jet
//     guard: {max_drop: 0.02, relative: false}   # required: total validation accuracy
//     preserve_rare_classes: true      # the per-class guard and class weights (default true)
//     rare_tolerance: 0.02             # a rare class's validation recall may drop by at most this
//                                      # (absolute, a fraction in [0, 1); default 0.02)
//     rare_below: 0.05                 # a class is rare when it has less than this share of the
//                                      # training samples (default 0.05)
//     rare_classes: [t]                # or name them (class names or label indices); then
//                                      # rare_below is not used
//     class_weights: inverse_frequency # | none: the fine-tuning's loss weights (default
//                                      # inverse_frequency when preserve_rare_classes, else none)
//     finetune: {epochs: 1}            # of the steps that have no finetune of their own
//     steps:                           # default: the common recipe, low rank 64 then 8 bits
//       - {method: lowrank, params: {rank: 64}}
//       - {method: quantize, params: {mode: qat, weight_bits: 8, act_bits: 8}}
//
// Class weights: inverse frequency in the training split, w_c = N / (K * n_c) (scikit-learn's
// "balanced": a class of 2% among five weighs 10, an average class 1); classes absent from the
// training split weigh 0. The weighted loss is torch's weighted mean (train::TrainOptions::
// class_weights).
//
// Each step is applied to the model the previous step kept, fine-tuned, and judged on the
// validation split: the guard on total accuracy, then, with preserve_rare_classes, each rare
// class's recall against baseline recall - rare_tolerance. The first step that fails either is
// rolled back and ends the pipeline; the result is the model after the last step kept.
//
// report.json: pipeline.history as for validation, each candidate with figures
// "val_recall.<class>" for the rare classes; pipeline.rare_classes [{class, name, train_share,
// baseline_val_recall, min_val_recall}], pipeline.rare_tolerance, pipeline.class_weights.
// output.metrics: [hep] is implied (per-class AUC and rejection in results).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/report.h"
#include "squeeze/train/trainer.h"

namespace squeeze {
class Params;
}

namespace squeeze::pipeline {

struct HepJetOptions {
  bool preserve_rare_classes = true;
  double rare_tolerance = 0.02;
  double rare_below = 0.05;
  std::vector<std::string> rare_classes;  // names or label indices as written; empty: rare_below
  std::string class_weights = "inverse_frequency";  // inverse_frequency | none
  std::optional<train::TrainOptions> finetune;     // steps without their own
  // The steps are PipelineSpec::steps (parsed as the validation pipeline's); when the block has
  // none, the common recipe is filled in.

  // Reads the keys above (not guard, type, steps) and finishes the block.
  static HepJetOptions from_params(Params& block);
};

// The class weights of a data set's labels: inverse frequency as above.
std::vector<double> inverse_frequency_weights(const at::Tensor& labels, int64_t num_classes);

// Runs config.pipeline (type hep-jet). Every check (options, data, guard, the rare classes
// against the data) before any training; throws as run_workflow does.
report::Report run_hep_jet(const WorkflowConfig& config, const RunOptions& options);

}  // namespace squeeze::pipeline
