// Early stopping of unpromising trials: Optuna's MedianPruner. Knows nothing about training; the
// caller reports one intermediate value per step (epoch) in Trial::intermediate and asks after
// each report whether to stop.
#pragma once

#include <cstdint>
#include <vector>

#include "squeeze/pipeline/tpe.h"
#include "squeeze/pipeline/trial.h"

namespace squeeze::pipeline {

struct MedianPrunerOptions {
  // Direction of the intermediate values. Validation accuracy, the autotune pipeline's report,
  // is to be maximised.
  Direction direction = Direction::kMaximize;
  int64_t n_startup_trials = 5;  // no pruning until this many other trials are complete
  int64_t n_warmup_steps = 0;    // no pruning at steps < n_warmup_steps
  int64_t interval_steps = 1;    // check at n_warmup_steps + k * interval_steps (see should_prune)
  int64_t n_min_trials = 1;      // no pruning while fewer complete trials reported this step

  // Throws ConfigError naming the field and the bad value.
  void check() const;
};

// Optuna's MedianPruner (PercentilePruner at the 50th percentile) with its defaults.
class MedianPruner {
 public:
  explicit MedianPruner(MedianPrunerOptions options = {});

  // Whether `current` should stop after reporting `step`. `others` may hold trials in any state
  // (and may include `current` itself, recognised by its number); only complete ones count.
  // Returns false while: fewer than n_startup_trials others are complete; step < n_warmup_steps;
  // `current` already reported a step in the same interval (Optuna checks the first report at or
  // after each n_warmup_steps + k * interval_steps); `current` reported nothing at steps <= step;
  // fewer than n_min_trials complete trials reported `step`. Otherwise prunes when the best value
  // `current` reported at steps <= step (NaNs skipped; all NaN prunes) is worse than the median of
  // the complete trials' values at `step` (NaNs skipped; all NaN does not prune).
  bool should_prune(const std::vector<Trial>& others, const Trial& current, int64_t step) const;

  const MedianPrunerOptions& options() const { return options_; }

 private:
  MedianPrunerOptions options_;
};

}  // namespace squeeze::pipeline
