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

#include "squeeze/data/dataset.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/params.h"

namespace squeeze::pipeline {

using ModelSpec = models::ModelSpec;

struct StageSpec {
  std::string method;                 // canonical name ("prune"); aliases resolved
  std::shared_ptr<Params> params;     // method parameters, validated by the method's options
  std::optional<train::TrainOptions> finetune;
};

struct ExperimentSpec {
  std::string name;
  std::vector<StageSpec> stages;
};

struct OutputSpec {
  std::string dir = "runs/default";
  std::vector<std::string> exports;   // onnx | qonnx | torchscript | cpp
  bool latency = true;                // measure batch-1 / batch-64 latency
  std::vector<int64_t> latency_batches = {1, 64};
};

struct WorkflowConfig {
  uint64_t seed = 0;
  int64_t threads = 0;                // 0: all cores
  ModelSpec model;
  std::optional<data::DataOptions> data;   // absent: no evaluation or fine-tuning possible
  std::optional<train::TrainOptions> baseline_train;  // absent: evaluate the model as given
  std::vector<ExperimentSpec> experiments;
  std::shared_ptr<Params> pipeline;   // null or {type: ...}; read by pipeline/ runners
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

// Canonical method name for an alias ("pruning" -> "prune"); unknown names are returned as is.
std::string canonical_method(const std::string& name);

}  // namespace squeeze::pipeline
