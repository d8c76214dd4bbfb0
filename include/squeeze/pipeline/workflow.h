// Runs a workflow (DESIGN.md section 4): baseline, experiments of ordered stages each from the
// baseline, evaluation, measured latency, checkpoints, exports and the report; or, when the
// config has a pipeline, that pipeline's runner (pipeline/validation.h, pipeline/combinations.h,
// pipeline/progressive.h).
// The machinery they share is in pipeline/stages.h, pipeline/guard.h and pipeline/candidates.h.
#pragma once

#include <string>

#include "squeeze/data/dataset.h"
#include "squeeze/ir/graph.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/report/report.h"

namespace squeeze::pipeline {

struct RunOptions {
  std::string out_dir;                 // overrides output.dir when not empty
  std::vector<std::string> overrides;  // the --set assignments (recorded with the config)
  // Run every check a run makes before training, then stop (Workspace::start throws
  // ChecksPassed): nothing is trained, evaluated or written. Used by check_workflow.
  bool check_only = false;
  // --resume: continue the run in the output folder (pipeline/run_state.h: its journal run.json
  // lists the finished units, which are loaded, not recomputed; a different config is refused).
  // Autotune: continue the study (finished trials are kept, not repeated).
  bool resume = false;
  // --force: replace the run in the output folder (its files are removed first). Without
  // --resume or --force, a folder holding a run is refused. Not for autotune (its study decides).
  bool force = false;
  // Autotune only (ConfigError for other runs). Without --resume or --worker, a study that
  // already exists at the study location is an error naming these flags.
  bool worker = false;  // --worker: create or join the study, process trials beside other workers
};

// Everything is validated (stage parameters, exports, model, data) before any training starts.
// Throws ConfigError / InputError / UnsupportedError for user errors (UnsupportedError for a
// pipeline type this build does not run, naming those it does), Error for failures.
report::Report run_workflow(const WorkflowConfig& config, const RunOptions& options = {});

// What `squeeze config --check` does: exactly the checks run_workflow makes before it trains
// (pipeline type available, every stage's pass made so its parameters are checked, exports,
// data loaded, model built or loaded, labels against the model's outputs, distillation teachers
// loaded and checked against their students), through the same runner; then stops. Trains,
// evaluates and writes nothing. Throws what run_workflow throws for the same config.
void check_workflow(const WorkflowConfig& config);

// The model a config describes: a zoo model (missing num_classes / input shape filled in from
// the data when given), an ONNX file or a checkpoint; with spec.head_classes its last classifier
// replaced (models::replace_head, logged). `key_path` names the spec in messages.
ir::Graph build_model(const ModelSpec& spec, const data::Splits* data, uint64_t seed,
                      const std::string& key_path = "model");

// params, non-zero params, stored size and FLOPs of a graph (no evaluation).
report::ModelStats static_stats(const ir::Graph& graph);

}  // namespace squeeze::pipeline
