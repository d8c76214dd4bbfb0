// Particle-physics classifier figures: per class (one against the rest) the ROC AUC and the
// background rejection at fixed signal efficiencies, as the hls4ml jet-tagging studies quote them.
// Plain numbers in, plain numbers out: no tensors, so reports and tests use them directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace squeeze::train {

// One point of a ROC curve: at some threshold, the fraction of signal kept (true positive rate,
// the signal efficiency) and of background kept (false positive rate).
struct RocPoint {
  double fpr = 0.0;
  double tpr = 0.0;
};

// The ROC curve of `scores` for signal samples (is_signal[i] true) against background: one point
// per distinct score, from the highest threshold down, starting at (0, 0) and ending at (1, 1).
// Samples with equal scores are accepted together, so ties make one diagonal step. Empty when
// there is no signal or no background sample. Throws InternalError when the sizes differ.
std::vector<RocPoint> roc_curve(const std::vector<double>& scores,
                                const std::vector<bool>& is_signal);

// The area under that curve (trapezoids; = the Mann-Whitney probability that a random signal
// sample scores above a random background one, ties counting 1/2). -1 when undefined (no signal
// or no background).
double roc_auc(const std::vector<RocPoint>& roc);

// The false positive rate at signal efficiency `efficiency` (0 < efficiency <= 1) on the curve:
// the first segment of the curve that reaches it, interpolated linearly within that segment
// (what accepting the lower threshold's new samples with the right probability achieves). -1
// when the curve is empty.
double fpr_at_efficiency(const std::vector<RocPoint>& roc, double efficiency);

// What HepClass reports at: 50% and 10% signal efficiency.
constexpr double kHepEfficiencies[2] = {0.5, 0.1};

// One class as signal against all the others, scored by its softmax probability.
struct HepClass {
  int64_t cls = 0;
  int64_t signal = 0, background = 0;  // sample counts
  double auc = -1.0;                   // -1: undefined (no background samples)
  // Per kHepEfficiencies: the false positive rate there and the rejection 1 / fpr. A false
  // positive rate of 0 means infinite rejection: rejection_infinite[i] is then true and
  // rejection[i] is +infinity (report.json writes null, the text reports "inf").
  double fpr[2] = {-1.0, -1.0};
  double rejection[2] = {0.0, 0.0};
  bool rejection_infinite[2] = {false, false};
  double recall = 0.0;  // = per-class accuracy: the fraction of its samples predicted as it
  double binary_accuracy = 0.0;  // one against the rest: (TP + TN) / N of the argmax decision
};

// The figures for every class that occurs in `labels` (ascending), from N x K softmax
// probabilities given row by row (`probs[i * k + c]`). Classes with no sample are skipped.
// Throws InternalError when the sizes disagree or a label is outside [0, k).
std::vector<HepClass> hep_metrics(const std::vector<float>& probs, int64_t k,
                                  const std::vector<int64_t>& labels);

}  // namespace squeeze::train
