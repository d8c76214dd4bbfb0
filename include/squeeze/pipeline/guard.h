// The accuracy guard every pipeline shares: how much validation accuracy a compressed model may
// lose against the baseline. Checked on the validation split only; the test split gives the final
// numbers and never chooses.
//
// YAML (pipeline block):  guard: {max_drop: 0.01, relative: true}
//                         guard: {max_drop: 0.005, relative: false}     # absolute: 0.5 points
//                         guard: {preserve_accuracy: 0.98}               # = max_drop 0.02,
//                         relative preserve_accuracy: 0.98                        # the same, one
//                         level up
#pragma once

#include <string>

namespace squeeze::pipeline {

struct GuardOptions {
  // The largest allowed drop of validation accuracy, as a fraction in [0, 1): of the baseline's
  // validation accuracy when `relative` (0.01 = lose at most 1% of it), in accuracy points
  // otherwise (0.01 = at most 1 point, e.g. 0.90 -> 0.89).
  double max_drop = 0.01;
  bool relative = true;
  // The YAML spelling, for messages and the report: "max_drop: 0.01, relative" or
  // "preserve_accuracy: 0.98".
  std::string written;

  // Throws ConfigError naming the field when no model, not even the baseline, could pass
  // (max_drop < 0, i.e. preserve_accuracy > 1) or when the value is not a fraction
  // (max_drop >= 1 accepts everything: a percentage written as 1 for 1% lands here).
  void validate() const;
  std::string describe() const;  // "at most 1% relative drop" / "at most 0.5 points lost"
};

// The outcome of one check.
struct GuardVerdict {
  bool passed = false;
  double drop = 0.0;           // baseline validation accuracy - candidate's (absolute, fraction)
  double relative_drop = 0.0;  // drop / baseline validation accuracy (0 when the baseline is 0)
  std::string reason;          // one sentence, for passing and failing candidates alike
};

// A guard bound to a measured baseline.
class Guard {
 public:
  // baseline_val_accuracy: the baseline's accuracy on the validation split, in [0, 1].
  Guard(GuardOptions options, double baseline_val_accuracy);

  const GuardOptions& options() const { return options_; }
  double baseline_accuracy() const { return baseline_; }
  // The lowest validation accuracy that passes (may be <= 0 for a guard that accepts anything).
  double min_accuracy() const;
  GuardVerdict check(double val_accuracy) const;
  // "validation accuracy >= 0.8861 (at most 1% relative drop from the baseline's 0.8950)"
  std::string describe() const;

 private:
  GuardOptions options_;
  double baseline_;
};

}  // namespace squeeze::pipeline
