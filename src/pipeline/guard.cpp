#include "squeeze/pipeline/guard.h"

#include <cmath>
#include <cstdio>

#include "squeeze/util/error.h"

namespace squeeze::pipeline {

namespace {

// Accuracies are counts over a finite split; a candidate exactly on the bound passes even when
// the bound itself carries a rounding error from the multiplication.
constexpr double kBoundSlack = 1e-9;

std::string pct(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g%%", 100.0 * fraction);
  return buf;
}

std::string acc(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", fraction);
  return buf;
}

}  // namespace

void GuardOptions::validate() const {
  const std::string field =
      written.rfind("preserve_accuracy", 0) == 0 ? "preserve_accuracy" : "max_drop";
  const double shown = field == "max_drop" ? max_drop : 1.0 - max_drop;
  if (!std::isfinite(max_drop) || max_drop < 0)
    throw ConfigError(
        msg("invalid guard ", field, " = ", shown,
            ": not even the baseline could pass it (its drop is 0); expected ",
            field == "max_drop" ? "max_drop in [0, 1)" : "preserve_accuracy in (0, 1]"));
  if (max_drop >= 1)
    throw ConfigError(msg("invalid guard ", field, " = ", shown,
                          ": every model would pass it; expected ",
                          field == "max_drop" ? "max_drop in [0, 1) as a fraction (0.01 is 1%)"
                                              : "preserve_accuracy in (0, 1]"));
}

std::string GuardOptions::describe() const {
  if (relative) return "at most " + pct(max_drop) + " relative drop";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", 100.0 * max_drop);
  return std::string("at most ") + buf + " points lost";
}

Guard::Guard(GuardOptions options, double baseline_val_accuracy)
    : options_(std::move(options)), baseline_(baseline_val_accuracy) {
  options_.validate();
}

double Guard::min_accuracy() const {
  return options_.relative ? baseline_ * (1.0 - options_.max_drop) : baseline_ - options_.max_drop;
}

GuardVerdict Guard::check(double val_accuracy) const {
  GuardVerdict v;
  v.drop = baseline_ - val_accuracy;
  v.relative_drop = baseline_ > 0 ? v.drop / baseline_ : 0.0;
  v.passed = std::isfinite(val_accuracy) && val_accuracy >= min_accuracy() - kBoundSlack;
  char points[32];
  std::snprintf(points, sizeof points, "%.4g points", 100.0 * v.drop);
  const std::string loss = v.drop <= 0         ? std::string("no loss")
                           : options_.relative ? pct(v.relative_drop) + " relative drop"
                                               : std::string(points) + " lost";
  const std::string measured = msg("validation accuracy ", acc(val_accuracy), " (baseline ",
                                   acc(baseline_), ", ", loss, ")");
  v.reason = v.passed ? msg(measured, ", within the guard (>= ", acc(min_accuracy()), ")")
                      : msg(measured, ", more than the guard allows (", options_.describe(),
                            "; needs >= ", acc(min_accuracy()), ")");
  return v;
}

std::string Guard::describe() const {
  return msg("validation accuracy >= ", acc(min_accuracy()), " (", options_.describe(),
             " from the baseline's ", acc(baseline_), ")");
}

}  // namespace squeeze::pipeline
