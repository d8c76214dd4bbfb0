// The progressive pipeline: compress a model step by step towards a target compression ratio
// while an accuracy guard holds, in the manner of NNI's AGP / auto-compress and Intel Neural
// Compressor's accuracy-aware tuning: measure first, then raise the compression one rung at a
// time, fine-tune after each rung, keep it only if the guard holds.
//
//   pipeline:
//     type: progressive
//     target_compression: 8              # required, > 1: baseline size_bytes / size_bytes
//     guard: {max_drop: 0.01, relative: true}      # or preserve_accuracy: 0.99 (required)
//     finetune: {epochs: 1, lr: 5.0e-4}  # after every step (default: one epoch, trainer defaults)
//     methods: [lowrank, prune, quantize]  # the families it may use (default: all); prune means
//                                          # structured and unstructured, each may be named
//     max_steps: 12                      # candidates tried at most (default 12)
//
// How it works:
//   1. Sensitivity analysis (no fine-tuning, validation split only). For every Conv/Linear layer
//      of the model, the validation accuracy with only that layer compressed: low rank at
//      ratios 1/8, 1/4, 1/2 of its full rank; structured pruning of 25/50/75% of its output
//      channels (L1 filters; a layer whose channels cannot be removed, such as the logits, has no
//      row); unstructured pruning at 50/70/80/90/95% (scope local: exactly that share of the
//      layer); weight-only quantization at 8/6/4 bits. A layer "tolerates" a setting when that
//      one-layer model still passes the guard. Each family is analysed when the ladder reaches
//      it, on the model it will be applied to (the baseline for the first; after earlier steps
//      for the others: low rank renames and splits layers, structured pruning shrinks them).
//      Every measurement is in report.json's pipeline.sensitivity.
//   2. The ladder. The order of the families is fixed by what the passes allow: low rank and
//      pruning leave quantized layers alone, low rank leaves pruned (masked) layers alone, and
//      channels go before single weights so that the filters' L1 ranking sees dense weights, not
//      masked ones: low rank, structured pruning, unstructured pruning, quantization. Within a
//      family the sensitivity sets the per-layer settings (less sensitive layers are compressed
//      more):
//        - lowrank: one step; each layer at the smallest rank ratio it tolerates (layers that
//          tolerate none, or where a factorization saves nothing, are left alone);
//        - structured: each rung removes a further share of the remaining output channels
//          (25%, then 33.3%, then 50%: a layer in every rung loses 25, 50, 75% in all) of the
//          layers that tolerate the share they would have lost in all; the others keep theirs;
//        - unstructured: rungs 50, 70, 80, 90, 95% (scope local); a rung prunes the layers that
//          tolerate it, the others stay at the sparsity they reached;
//        - quantize (qat, activations 8 bits): rungs of 8, 6, 4 weight bits; a layer gets the
//          rung's bits when it tolerates them, else the fewest bits above them it tolerates
//          (8 at most). Each rung is applied to the model before quantization (a quantized
//          layer cannot be quantized again), so a lower rung replaces the one before it.
//      Every rung is one step: applied to the current kept model (a clone: a rollback restores
//      it), fine-tuned (the step's position seeds the batches), measured by the candidate store
//      (validation accuracy for the guard, test accuracy reported only), saved under
//      candidates/. Status "kept" when the guard holds, else "rolled back"; a rolled-back rung is
//      retried once halfway between the last kept setting and the failed one (pruning ratio,
//      weight bits; half the share for channels; the rank ratios doubled for low rank), then
//      the family ends.
//   3. Just enough compression: before each low-rank or pruning step, the 8-bit quantization of
//      the current model is projected (pass run, no fine-tuning, stored size measured); when it
//      already reaches the target, the pipeline goes straight to quantization, so accuracy is
//      not spent on pruning that the target does not need. Quantization goes down in bits only
//      until the target is reached.
//   4. The pipeline stops when a kept step reaches the target (the outcome says so), when no
//      step is left (the outcome says how far it got), or after max_steps candidates.
//
// report.json: pipeline.history has one entry per step tried (the cumulative model after it, its
// "note": what the step did and to which layers, "status": kept | rolled back, "reason": the
// guard's verdict); pipeline.skipped names the rungs not tried and why; pipeline.sensitivity
// lists [{model, layer, method, setting, val_accuracy, tolerated}]; pipeline.target_compression
// the target. The result is the most compressed candidate that passes the guard; when none
// passes, the candidate with the highest validation accuracy (flagged, with a warning). Every
// candidate is saved and reported either way.
#pragma once

#include <cstdint>
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

struct ProgressiveOptions {
  double target_compression = 0.0;  // > 1
  train::TrainOptions finetune;     // after every step
  // In ladder order: lowrank, structured, unstructured, quantize.
  std::vector<std::string> methods = {"lowrank", "structured", "unstructured", "quantize"};
  int64_t max_steps = 12;

  bool uses(const std::string& method) const;
  // Reads target_compression, finetune, methods and max_steps from the pipeline block (the
  // caller reads type and guard and calls finish()). Throws ConfigError naming the key path.
  static ProgressiveOptions from_params(Params& block);
};

// Runs config.pipeline (type progressive). Every check (options, data, guard, the model's
// layers) before any training; throws as run_workflow does.
report::Report run_progressive(const WorkflowConfig& config, const RunOptions& options);

}  // namespace squeeze::pipeline
