// ROC AUC and background rejection against hand-computed cases.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "squeeze/train/hep_metrics.h"

using namespace squeeze::train;

namespace {

constexpr double kTol = 1e-12;

// Signal scores then background scores.
std::vector<RocPoint> roc_of(const std::vector<double>& sig, const std::vector<double>& bkg) {
  std::vector<double> scores = sig;
  scores.insert(scores.end(), bkg.begin(), bkg.end());
  std::vector<bool> is_signal(sig.size(), true);
  is_signal.resize(scores.size(), false);
  return roc_curve(scores, is_signal);
}

}  // namespace

TEST(HepMetrics, PerfectClassifier) {
  const auto roc = roc_of({0.9, 0.8}, {0.3, 0.1});
  ASSERT_EQ(roc.size(), 5u);
  EXPECT_NEAR(roc_auc(roc), 1.0, kTol);
  EXPECT_EQ(fpr_at_efficiency(roc, 0.5), 0.0);  // infinite rejection
  EXPECT_EQ(fpr_at_efficiency(roc, 0.1), 0.0);
  EXPECT_EQ(fpr_at_efficiency(roc, 1.0), 0.0);
}

TEST(HepMetrics, InvertedClassifier) {
  const auto roc = roc_of({0.1, 0.2}, {0.8, 0.9});
  EXPECT_NEAR(roc_auc(roc), 0.0, kTol);
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.5), 1.0, kTol);
}

// Rank order S B S B S B S B B: each signal sample beats 5, 4, 3, 2 background samples: 14/20.
TEST(HepMetrics, HandComputedRanking) {
  const auto roc = roc_of({0.9, 0.7, 0.4, 0.2}, {0.8, 0.6, 0.3, 0.1, 0.05});
  EXPECT_NEAR(roc_auc(roc), 0.7, kTol);
  // tpr reaches 0.5 exactly at the point (0.2, 0.5): rejection 5.
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.5), 0.2, kTol);
  // Between (0.4, 0.5) and (0.4, 0.75): a vertical step.
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.6), 0.4, kTol);
  // 0.1 is reached by the first sample, before any background: fpr 0.
  EXPECT_EQ(fpr_at_efficiency(roc, 0.1), 0.0);
}

// Signal {0.9, 0.5, 0.5}, background {0.5, 0.1}: the 0.5 group is one diagonal step from
// (0, 1/3) to (0.5, 1). AUC = (2 + 1.5 + 1.5) / 6 (each tie counts 1/2).
TEST(HepMetrics, TiesAreOneDiagonalStep) {
  const auto roc = roc_of({0.9, 0.5, 0.5}, {0.5, 0.1});
  ASSERT_EQ(roc.size(), 4u);
  EXPECT_NEAR(roc[2].fpr, 0.5, kTol);
  EXPECT_NEAR(roc[2].tpr, 1.0, kTol);
  EXPECT_NEAR(roc_auc(roc), 5.0 / 6.0, kTol);
  // Efficiency 0.5 lies a quarter of the way along the diagonal: fpr 0.125, rejection 8.
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.5), 0.125, kTol);
}

// A constant score: the ROC is the diagonal, AUC 1/2, rejection 1/efficiency.
TEST(HepMetrics, ConstantScoreIsTheDiagonal) {
  const auto roc = roc_of({0.5, 0.5}, {0.5, 0.5, 0.5});
  ASSERT_EQ(roc.size(), 2u);
  EXPECT_NEAR(roc_auc(roc), 0.5, kTol);
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.5), 0.5, kTol);
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.1), 0.1, kTol);
}

TEST(HepMetrics, RandomScoresGiveHalf) {
  std::mt19937_64 gen(1);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> sig(20000), bkg(20000);
  for (auto& v : sig) v = u(gen);
  for (auto& v : bkg) v = u(gen);
  const auto roc = roc_of(sig, bkg);
  EXPECT_NEAR(roc_auc(roc), 0.5, 0.01);
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.5), 0.5, 0.02);
  EXPECT_NEAR(fpr_at_efficiency(roc, 0.1), 0.1, 0.01);
}

TEST(HepMetrics, UndefinedWithoutBackgroundOrSignal) {
  EXPECT_TRUE(roc_of({0.5, 0.2}, {}).empty());
  EXPECT_TRUE(roc_of({}, {0.5}).empty());
  EXPECT_EQ(roc_auc({}), -1.0);
  EXPECT_EQ(fpr_at_efficiency({}, 0.5), -1.0);
}

// Three outputs, labels {0, 0, 1, 2}; class 3 of four outputs never occurs and is skipped.
TEST(HepMetrics, PerClassFromProbabilities) {
  const std::vector<float> probs = {
      0.7f, 0.2f, 0.1f, 0.0f,  // label 0, predicted 0
      0.3f, 0.6f, 0.1f, 0.0f,  // label 0, predicted 1
      0.2f, 0.5f, 0.3f, 0.0f,  // label 1, predicted 1
      0.1f, 0.1f, 0.8f, 0.0f,  // label 2, predicted 2
  };
  const auto h = hep_metrics(probs, 4, {0, 0, 1, 2});
  ASSERT_EQ(h.size(), 3u);
  // Class 0: signal scores {0.7, 0.3}, background {0.2, 0.1}: perfect.
  EXPECT_EQ(h[0].cls, 0);
  EXPECT_EQ(h[0].signal, 2);
  EXPECT_EQ(h[0].background, 2);
  EXPECT_NEAR(h[0].auc, 1.0, kTol);
  EXPECT_TRUE(h[0].rejection_infinite[0]);
  EXPECT_TRUE(std::isinf(h[0].rejection[0]));
  EXPECT_NEAR(h[0].recall, 0.5, kTol);
  EXPECT_NEAR(h[0].binary_accuracy, 0.75, kTol);  // one sample of class 0 missed
  // Class 1: signal {0.5}, background {0.2, 0.6, 0.1}: beats 2 of 3.
  EXPECT_NEAR(h[1].auc, 2.0 / 3.0, kTol);
  // At 50% efficiency: between (1/3, 0) and (1/3, 1): fpr 1/3, rejection 3.
  EXPECT_NEAR(h[1].fpr[0], 1.0 / 3.0, kTol);
  EXPECT_NEAR(h[1].rejection[0], 3.0, 1e-9);
  EXPECT_FALSE(h[1].rejection_infinite[0]);
  EXPECT_NEAR(h[1].recall, 1.0, kTol);
  EXPECT_NEAR(h[1].binary_accuracy, 0.75, kTol);  // one false positive
  EXPECT_EQ(h[2].cls, 2);
  EXPECT_NEAR(h[2].auc, 1.0, kTol);
}
