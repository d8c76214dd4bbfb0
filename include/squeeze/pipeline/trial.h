// What the auto-tuning search (the TPE sampler in pipeline/tpe.h) and the study storage
// (pipeline/study.h) share: a search space of named parameters and the record of one trial.
// Neither knows about graphs; the autotune pipeline maps parameter names onto stage parameters.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace squeeze::pipeline {

// One parameter's domain. Values travel as doubles in the "internal" representation: the number
// itself for int/float/log_float (ints hold exact integers), the index into `choices` for
// categorical (as Optuna stores them).
struct Distribution {
  enum class Kind { kInt, kFloat, kLogFloat, kCategorical };
  Kind kind = Kind::kFloat;
  double low = 0.0, high = 1.0;       // inclusive bounds (int, float, log_float; log_float: low > 0)
  double step = 0.0;                  // int: >= 1 (default 1); float: 0 = continuous, else a grid
  std::vector<std::string> choices;   // categorical: the choices as written in YAML

  // The user-facing text of an internal value: "3", "0.125", "l2".
  std::string to_text(double internal) const;
  // Whether an internal value lies in the domain (on the grid for int/stepped float).
  bool contains(double internal) const;
};

// Parameter name (a dotted stage-parameter path such as "stages[0].params.ratio") -> domain.
// Ordered by name, so iteration order (and with it every random draw) is reproducible.
using SearchSpace = std::map<std::string, Distribution>;

// Whether an objective is to be made large (accuracy) or small (loss, size).
enum class Direction { kMinimize, kMaximize };
const char* to_string(Direction d);   // "maximize", "minimize"
// Throws ConfigError naming the text and the valid spellings.
Direction parse_direction(const std::string& text);

enum class TrialState { kWaiting, kRunning, kComplete, kPruned, kFailed };
const char* to_string(TrialState s);   // "waiting", "running", "complete", "pruned", "failed"

struct Trial {
  int64_t number = -1;                        // 0, 1, 2, ... in creation order within a study
  TrialState state = TrialState::kWaiting;
  std::map<std::string, double> params;       // internal values, one per SearchSpace entry
  std::vector<double> values;                 // objective values (one, or two for pareto)
  std::map<int64_t, double> intermediate;     // step (epoch) -> validation value, for pruning
  std::map<std::string, std::string> attrs;   // free-form results: accuracy, size, reason, ...
  std::string worker;                         // the worker that holds / held the trial
};

}  // namespace squeeze::pipeline
