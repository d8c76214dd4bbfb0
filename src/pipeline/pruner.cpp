#include "squeeze/pipeline/pruner.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "squeeze/util/error.h"

namespace squeeze::pipeline {

void MedianPrunerOptions::check() const {
  if (n_startup_trials < 0) {
    throw ConfigError(msg("median pruner: n_startup_trials must be >= 0, got ", n_startup_trials));
  }
  if (n_warmup_steps < 0) {
    throw ConfigError(msg("median pruner: n_warmup_steps must be >= 0, got ", n_warmup_steps));
  }
  if (interval_steps < 1) {
    throw ConfigError(msg("median pruner: interval_steps must be >= 1, got ", interval_steps));
  }
  if (n_min_trials < 1) {
    throw ConfigError(msg("median pruner: n_min_trials must be >= 1, got ", n_min_trials));
  }
}

MedianPruner::MedianPruner(MedianPrunerOptions options) : options_(options) { options_.check(); }

bool MedianPruner::should_prune(const std::vector<Trial>& others, const Trial& current,
                                int64_t step) const {
  const MedianPrunerOptions& o = options_;
  std::vector<const Trial*> complete;
  for (const Trial& t : others) {
    if (t.state == TrialState::kComplete && t.number != current.number) complete.push_back(&t);
  }
  if (complete.empty() || static_cast<int64_t>(complete.size()) < o.n_startup_trials) return false;
  if (step < o.n_warmup_steps) return false;

  // Optuna's _is_first_in_interval_step: only the first report in each interval is checked, so a
  // trial reporting every step with interval_steps = 3 is judged once per 3 steps.
  const int64_t interval_start =
      (step - o.n_warmup_steps) / o.interval_steps * o.interval_steps + o.n_warmup_steps;
  int64_t previous_step = -1;
  bool reported = false;
  double best = std::numeric_limits<double>::quiet_NaN();
  for (const auto& [s, v] : current.intermediate) {
    if (s > step) break;
    reported = true;
    if (s != step) previous_step = std::max(previous_step, s);
    if (std::isnan(v)) continue;
    if (std::isnan(best) || (o.direction == Direction::kMaximize ? v > best : v < best)) best = v;
  }
  if (!reported || previous_step >= interval_start) return false;
  if (std::isnan(best)) return true;

  std::vector<double> at_step;
  int64_t n_reported = 0;
  for (const Trial* t : complete) {
    const auto it = t->intermediate.find(step);
    if (it == t->intermediate.end()) continue;
    ++n_reported;
    if (!std::isnan(it->second)) at_step.push_back(it->second);
  }
  if (n_reported < o.n_min_trials || at_step.empty()) return false;
  // numpy's (linear) 50th percentile: the middle value, or the mean of the two middle values.
  std::sort(at_step.begin(), at_step.end());
  const size_t m = at_step.size() / 2;
  const double median = at_step.size() % 2 ? at_step[m] : 0.5 * (at_step[m - 1] + at_step[m]);
  return o.direction == Direction::kMaximize ? best < median : best > median;
}

}  // namespace squeeze::pipeline
