// ROC curves, AUC and background rejection per class (one against the rest).
#include "squeeze/train/hep_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "squeeze/util/error.h"

namespace squeeze::train {

std::vector<RocPoint> roc_curve(const std::vector<double>& scores,
                                const std::vector<bool>& is_signal) {
  SQZ_ASSERT(scores.size() == is_signal.size());
  const size_t n = scores.size();
  const int64_t pos = std::count(is_signal.begin(), is_signal.end(), true);
  const int64_t neg = static_cast<int64_t>(n) - pos;
  if (pos == 0 || neg == 0) return {};
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<RocPoint> roc{{0.0, 0.0}};
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < n;) {
    // Every sample of one score value is accepted at once: ties are one (diagonal) step.
    const double s = scores[order[i]];
    for (; i < n && scores[order[i]] == s; ++i) (is_signal[order[i]] ? tp : fp) += 1;
    roc.push_back({double(fp) / double(neg), double(tp) / double(pos)});
  }
  return roc;
}

double roc_auc(const std::vector<RocPoint>& roc) {
  if (roc.size() < 2) return -1.0;
  double area = 0.0;
  for (size_t i = 1; i < roc.size(); ++i)
    area += (roc[i].fpr - roc[i - 1].fpr) * (roc[i].tpr + roc[i - 1].tpr) / 2.0;
  return area;
}

double fpr_at_efficiency(const std::vector<RocPoint>& roc, double efficiency) {
  if (roc.empty()) return -1.0;
  for (size_t i = 1; i < roc.size(); ++i) {
    if (roc[i].tpr < efficiency) continue;
    const RocPoint& a = roc[i - 1];
    const RocPoint& b = roc[i];
    if (b.tpr == efficiency) return b.fpr;
    return a.fpr + (b.fpr - a.fpr) * (efficiency - a.tpr) / (b.tpr - a.tpr);
  }
  return 1.0;  // efficiency 1 reached only at the end of the curve
}

std::vector<HepClass> hep_metrics(const std::vector<float>& probs, int64_t k,
                                  const std::vector<int64_t>& labels) {
  SQZ_ASSERT(k > 0 && probs.size() == labels.size() * static_cast<size_t>(k));
  const size_t n = labels.size();
  std::vector<int64_t> pred(n), count(static_cast<size_t>(k), 0), predicted(count);
  for (size_t i = 0; i < n; ++i) {
    SQZ_ASSERT(labels[i] >= 0 && labels[i] < k);
    const float* row = probs.data() + i * k;
    pred[i] = std::max_element(row, row + k) - row;
    ++count[labels[i]];
    ++predicted[pred[i]];
  }
  std::vector<HepClass> out;
  std::vector<double> scores(n);
  std::vector<bool> signal(n);
  for (int64_t c = 0; c < k; ++c) {
    if (count[c] == 0) continue;
    HepClass h;
    h.cls = c;
    h.signal = count[c];
    h.background = static_cast<int64_t>(n) - count[c];
    int64_t tp = 0;
    for (size_t i = 0; i < n; ++i) {
      scores[i] = probs[i * k + c];
      signal[i] = labels[i] == c;
      tp += signal[i] && pred[i] == c;
    }
    h.recall = double(tp) / double(h.signal);
    const int64_t fp = predicted[c] - tp;
    h.binary_accuracy = double(static_cast<int64_t>(n) - (h.signal - tp) - fp) / double(n);
    const std::vector<RocPoint> roc = roc_curve(scores, signal);
    h.auc = roc_auc(roc);
    for (int e = 0; e < 2; ++e) {
      h.fpr[e] = fpr_at_efficiency(roc, kHepEfficiencies[e]);
      if (h.fpr[e] == 0.0) {
        h.rejection_infinite[e] = true;
        h.rejection[e] = std::numeric_limits<double>::infinity();
      } else if (h.fpr[e] > 0.0) {
        h.rejection[e] = 1.0 / h.fpr[e];
      }
    }
    out.push_back(h);
  }
  return out;
}

}  // namespace squeeze::train
