// The synthetic jet data set.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

using namespace squeeze;
using namespace squeeze::data;

TEST(DataSyntheticJets, DeterministicForASeed) {
  const Dataset a = make_synthetic_jets(2000, 0.02, 7);
  const Dataset b = make_synthetic_jets(2000, 0.02, 7);
  const Dataset c = make_synthetic_jets(2000, 0.02, 8);
  EXPECT_TRUE(a.x.equal(b.x));
  EXPECT_TRUE(a.y.equal(b.y));
  EXPECT_FALSE(a.x.equal(c.x));
  EXPECT_EQ(a.x.sizes(), (std::vector<int64_t>{2000, 16}));
  EXPECT_EQ(a.x.scalar_type(), at::kFloat);
  EXPECT_EQ(a.y.scalar_type(), at::kLong);
  EXPECT_TRUE(at::isfinite(a.x).all().item<bool>());
  // Pinned values: a change here changes every experiment built on this data set.
  // The generator uses only mt19937_64 and hand-written transforms, so these hold everywhere.
  const Dataset pinned = make_synthetic_jets(3, 0.0, 0);
  EXPECT_TRUE(pinned.y.equal(at::tensor({2, 1, 0}, at::kLong)));
  EXPECT_NEAR(pinned.x[0][0].item<float>(), -2.50103211f, 1e-5f);
  EXPECT_NEAR(pinned.x[2][15].item<float>(), -0.530490816f, 1e-5f);
}

TEST(DataSyntheticJets, ClassFractions) {
  const int64_t n = 10000;
  const Dataset d = make_synthetic_jets(n, 0.05, 1);
  const at::Tensor counts = at::bincount(d.y, {}, 5);
  EXPECT_EQ(counts[4].item<int64_t>(), 500);
  for (int c = 0; c < 4; ++c) EXPECT_EQ(counts[c].item<int64_t>(), 2375) << c;
  // Labels are shuffled, not sorted by class.
  EXPECT_FALSE(d.y.narrow(0, 0, 100).eq(d.y[0]).all().item<bool>());

  const at::Tensor none = at::bincount(make_synthetic_jets(1001, 0.0, 1).y, {}, 5);
  EXPECT_EQ(none[4].item<int64_t>(), 0);
  EXPECT_EQ(none.sum().item<int64_t>(), 1001);
}

TEST(DataSyntheticJets, ClassesDifferButOverlap) {
  const Dataset d = make_synthetic_jets(20000, 0.1, 3);
  // Nearest-class-mean on the raw features: clearly better than chance (0.225 for the largest
  // class) but far from perfect, so the classes are learnable and not trivially separable.
  std::vector<at::Tensor> means;
  for (int c = 0; c < 5; ++c)
    means.push_back(d.x.index_select(0, d.y.eq(c).nonzero().squeeze(1)).mean(0));
  const at::Tensor centers = at::stack(means);
  const at::Tensor pred = at::cdist(d.x, centers).argmin(1);
  const double acc = pred.eq(d.y).to(at::kDouble).mean().item<double>();
  EXPECT_GT(acc, 0.4);
  EXPECT_LT(acc, 0.9);
  // The rare class has its own signature (features 8 and 9).
  EXPECT_GT((means[4][8] - means[0][8]).item<float>(), 1.0f);
}

TEST(DataSyntheticJets, BadOptions) {
  EXPECT_THROW(make_synthetic_jets(0, 0.02, 0), ConfigError);
  EXPECT_THROW(make_synthetic_jets(10, 1.0, 0), ConfigError);
  EXPECT_THROW(make_synthetic_jets(10, -0.1, 0), ConfigError);
}

TEST(DataSyntheticJets, LoadCarvesTestAndVal) {
  DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = 5000;
  o.rare_fraction = 0.02;
  const Splits s = load(o, 0);
  EXPECT_EQ(s.test.size(), 1000);
  EXPECT_EQ(s.val.size(), 400);
  EXPECT_EQ(s.train.size(), 3600);
  EXPECT_EQ(s.num_classes, 5);
  EXPECT_EQ(s.class_names.size(), 5u);
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{16}));
  EXPECT_EQ(s.description, "synthetic-jets: train 3600, val 400, test 1000");
}
