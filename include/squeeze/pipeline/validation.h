// The validation pipeline: an explicit list of steps applied cumulatively from the baseline,
// each a stage with its own fine-tuning, validated after each; the first step that breaks the
// guard is rolled back and stops the pipeline. The result is the model after the last step kept.
//
//   pipeline:
//     type: validation
//     guard: {max_drop: 0.05, relative: true}     # or preserve_accuracy: 0.95 (required)
//     steps:
//       - {method: lowrank, params: {rank: 64}, finetune: {epochs: 1}}
//       - {name: int8, method: quantize, params: {mode: qat, weight_bits: 8, act_bits: 8},
//       finetune: {epochs: 1}}
//
// report.json: pipeline.history has one entry per step tried (cumulative model after it, its
// validation accuracy and degradation, test accuracy, size, "kept" or "rolled back" and why);
// pipeline.skipped lists the steps never tried. When even the first step breaks the guard, the
// rolled-back step 1 is the reported candidate (flagged, with a warning) and the baseline is the
// last model that satisfies the guard.
#pragma once

#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/report.h"

namespace squeeze::pipeline {

// Runs config.pipeline (type validation). Every check (steps, data, guard, teachers) before
// any training; throws as run_workflow does.
report::Report run_validation(const WorkflowConfig& config, const RunOptions& options);

}  // namespace squeeze::pipeline
