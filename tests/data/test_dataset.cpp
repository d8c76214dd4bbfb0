// load(): splits, limits, normalization; Dataset helpers; BatchIterator.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "testing/asserts.h"
#include "squeeze/util/error.h"

namespace fs = std::filesystem;
using namespace squeeze;
using namespace squeeze::data;

namespace {

using squeeze::testing::TempDir;

// n samples whose feature 0 is the sample's id (exact in float32), so splits can be traced back.
DataOptions id_dataset(const TempDir& dir, int64_t n, int64_t classes = 3) {
  const at::Tensor ids = at::arange(n, at::kFloat).unsqueeze(1);
  write_npy(dir.file("x.npy"), at::cat({ids, at::ones({n, 1}, at::kFloat)}, 1));
  write_npy(dir.file("y.npy"), at::arange(n, at::kLong).remainder(classes));
  DataOptions o;
  o.dataset = "npy";
  o.features = dir.file("x.npy");
  o.labels = dir.file("y.npy");
  o.normalize = "none";
  return o;
}

std::vector<int64_t> ids_of(const Dataset& d) {
  const at::Tensor c = d.x.select(1, 0).to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

TEST(DataLoad, SplitsAreDeterministicDisjointAndComplete) {
  TempDir dir;
  DataOptions o = id_dataset(dir, 1000);
  o.test_fraction = 0.2;
  o.val_fraction = 0.1;
  const Splits a = load(o, 42), b = load(o, 42), c = load(o, 43);
  EXPECT_EQ(a.test.size(), 200);
  EXPECT_EQ(a.val.size(), 80);
  EXPECT_EQ(a.train.size(), 720);
  EXPECT_EQ(ids_of(a.train), ids_of(b.train));
  EXPECT_EQ(ids_of(a.val), ids_of(b.val));
  EXPECT_EQ(ids_of(a.test), ids_of(b.test));
  EXPECT_NE(ids_of(a.train), ids_of(c.train));

  std::set<int64_t> all;
  for (const Dataset* d : {&a.train, &a.val, &a.test}) {
    for (int64_t id : ids_of(*d)) EXPECT_TRUE(all.insert(id).second) << "sample " << id << " twice";
  }
  EXPECT_EQ(all.size(), 1000u);
  // Labels travel with their samples.
  EXPECT_TRUE(a.train.y.equal(a.train.x.select(1, 0).to(at::kLong).remainder(3)));
  EXPECT_EQ(a.num_classes, 3);
  EXPECT_EQ(a.description, "npy: train 720, val 80, test 200");
}

TEST(DataLoad, ValidationFractionDoesNotMoveTheTestSplit) {
  TempDir dir;
  DataOptions o = id_dataset(dir, 500);
  o.val_fraction = 0.1;
  const Splits a = load(o, 1);
  o.val_fraction = 0.3;
  const Splits b = load(o, 1);
  EXPECT_EQ(ids_of(a.test), ids_of(b.test));
  EXPECT_EQ(b.val.size(), 120);
}

TEST(DataLoad, LimitsTakeTheFirstSamplesOfEachSplit) {
  TempDir dir;
  DataOptions o = id_dataset(dir, 1000);
  const Splits full = load(o, 9);
  o.limit_train = 100;
  o.limit_val = 10;
  o.limit_test = 0;
  const Splits lim = load(o, 9);
  EXPECT_EQ(lim.train.size(), 100);
  EXPECT_EQ(lim.val.size(), 10);
  EXPECT_EQ(lim.test.size(), 0);
  EXPECT_EQ(lim.test.x.dim(), 2);  // empty but shaped
  const auto t_full = ids_of(full.train), t_lim = ids_of(lim.train);
  EXPECT_TRUE(std::equal(t_lim.begin(), t_lim.end(), t_full.begin()));
  // The split is shuffled, so the first 100 are not simply ids 0..99.
  EXPECT_NE(*std::max_element(t_lim.begin(), t_lim.end()), 99);

  o.limit_test = 5000;  // larger than the split: all of it
  EXPECT_EQ(load(o, 9).test.size(), 200);
}

TEST(DataLoad, LimitOnAGivenTestSplitIsASeededSubsetInFileOrder) {
  TempDir dir;
  DataOptions o = id_dataset(dir, 100);
  write_npy(dir.file("tx.npy"), at::arange(400, at::kFloat).reshape({200, 2}));
  write_npy(dir.file("ty.npy"), at::zeros({200}, at::kLong));
  o.test_features = dir.file("tx.npy");
  o.test_labels = dir.file("ty.npy");
  o.limit_test = 50;
  const Splits a = load(o, 3), b = load(o, 3);
  EXPECT_EQ(a.train.size() + a.val.size(), 100);  // nothing carved for test
  EXPECT_EQ(a.test.size(), 50);
  EXPECT_TRUE(a.test.x.equal(b.test.x));
  const at::Tensor first = a.test.x.select(1, 0);
  EXPECT_TRUE(first.equal(std::get<0>(first.sort())));
}

TEST(DataLoad, NormalizationUsesTrainStatisticsOnly) {
  TempDir dir;
  // Train features ~ (10 + 2 u, -5 + 0.5 u); the test file is shifted, which must not leak into
  // the statistics.
  const at::Tensor u = at::arange(400, at::kFloat).remainder(20).sub(9.5).div(5.77);
  write_npy(dir.file("x.npy"), at::stack({u.mul(2).add(10), u.mul(0.5).sub(5)}, 1));
  write_npy(dir.file("y.npy"), at::zeros({400}, at::kLong));
  write_npy(dir.file("tx.npy"), at::full({50, 2}, 100.f));
  write_npy(dir.file("ty.npy"), at::zeros({50}, at::kLong));
  DataOptions o;
  o.dataset = "npy";
  o.features = dir.file("x.npy");
  o.labels = dir.file("y.npy");
  o.test_features = dir.file("tx.npy");
  o.test_labels = dir.file("ty.npy");
  o.val_fraction = 0.25;
  const Splits s = load(o, 0);
  ASSERT_EQ(s.mean.sizes(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(s.mean[0].item<float>(), 10.f, 0.3f);
  EXPECT_NEAR(s.mean[1].item<float>(), -5.f, 0.1f);
  EXPECT_NEAR(s.std[0].item<float>(), 2.f, 0.2f);
  // Rows of features keep their raw values and go through a per-feature transform that the
  // model carries (graph metadata), so eval and infer on raw features reproduce it.
  ASSERT_TRUE(s.transform);
  EXPECT_GT(s.train.x.select(1, 0).mean().item<float>(), 9.f);
  EXPECT_EQ(s.transform->mean.size(), 2u);
  // The train split's model inputs are standardized exactly; val and test use the same
  // statistics.
  const at::Tensor tin = s.train.inputs(0, s.train.size());
  const at::Tensor m = tin.mean(0), sd = tin.std(0, /*unbiased=*/false);
  EXPECT_NEAR(m[0].item<float>(), 0.f, 1e-5f);
  EXPECT_NEAR(sd[1].item<float>(), 1.f, 1e-4f);
  const float expected = (100.f - s.mean[0].item<float>()) / s.std[0].item<float>();
  EXPECT_NEAR(s.test.inputs(0, 1)[0][0].item<float>(), expected, 1e-4f);
  EXPECT_EQ(s.test.x[0][0].item<float>(), 100.f);

  o.normalize = "minmax";
  const Splits mm = load(o, 0);
  const at::Tensor mtin = mm.train.inputs(0, mm.train.size());
  EXPECT_NEAR(mtin.min().item<float>(), 0.f, 1e-6f);
  EXPECT_NEAR(mtin.max().item<float>(), 1.f, 1e-6f);
  EXPECT_GT(mm.test.inputs(0, mm.test.size()).min().item<float>(), 1.f);

  o.normalize = "none";
  const Splits none = load(o, 0);
  EXPECT_FALSE(none.transform);
  EXPECT_TRUE(none.mean.eq(0).all().item<bool>());
  EXPECT_TRUE(none.std.eq(1).all().item<bool>());
  EXPECT_EQ(none.test.x[0][0].item<float>(), 100.f);
}

TEST(DataLoad, ImageStatisticsArePerChannelAndConstantChannelsAreSafe) {
  TempDir dir;
  at::Tensor x = at::rand({64, 2, 4, 4}, at::kFloat);
  x.select(1, 1).fill_(3.f);  // a constant channel: std clamped, no NaN
  write_npy(dir.file("x.npy"), x);
  write_npy(dir.file("y.npy"), at::zeros({64}, at::kLong));
  DataOptions o;
  o.dataset = "npy";
  o.features = dir.file("x.npy");
  o.labels = dir.file("y.npy");
  o.test_fraction = 0.0;
  o.val_fraction = 0.0;
  const Splits s = load(o, 0);
  EXPECT_EQ(s.mean.sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{2, 4, 4}));
  EXPECT_FLOAT_EQ(s.mean[1].item<float>(), 3.f);
  EXPECT_TRUE(at::isfinite(s.train.x).all().item<bool>());
  EXPECT_NEAR(s.train.x.select(1, 0).mean().item<float>(), 0.f, 1e-5f);
}

TEST(DataLoad, BadOptionsAreConfigErrors) {
  TempDir dir;
  DataOptions o = id_dataset(dir, 10);
  DataOptions bad = o;
  bad.dataset = "imagenet";
  EXPECT_THROW(load(bad, 0), ConfigError);
  bad = o;
  bad.val_fraction = 1.0;
  EXPECT_THROW(load(bad, 0), ConfigError);
  bad = o;
  bad.normalize = "zscore";
  EXPECT_THROW(load(bad, 0), ConfigError);
  bad = o;
  bad.limit_train = 0;
  EXPECT_THROW(load(bad, 0), ConfigError);
  bad = o;
  bad.labels.clear();
  EXPECT_THROW(load(bad, 0), ConfigError);
  try {
    bad = o;
    bad.dataset = "imagenet";
    load(bad, 0);
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("synthetic-jets"), std::string::npos) << e.what();
  }
}

TEST(DataLabels, ToClassIndices) {
  EXPECT_TRUE(to_class_indices(at::tensor({2, 0, 1}, at::kInt), "t")
                  .equal(at::tensor({2, 0, 1}, at::kLong)));
  EXPECT_TRUE(to_class_indices(at::tensor({2.0, 0.0}), "t").equal(at::tensor({2, 0}, at::kLong)));
  EXPECT_TRUE(to_class_indices(at::tensor({3, 1}, at::kLong).unsqueeze(1), "t")
                  .equal(at::tensor({3, 1}, at::kLong)));
  const at::Tensor probs = at::tensor({0.1f, 0.7f, 0.2f, 0.6f, 0.3f, 0.1f}).reshape({2, 3});
  EXPECT_TRUE(to_class_indices(probs, "t").equal(at::tensor({1, 0}, at::kLong)));
  EXPECT_THROW(to_class_indices(at::tensor({0.5}), "t"), InputError);
  EXPECT_THROW(to_class_indices(at::tensor({1, -1}, at::kLong), "t"), InputError);
  EXPECT_THROW(to_class_indices(at::zeros({2, 2, 2}), "t"), InputError);
}

TEST(DataDatasetHelpers, SubsetAndHead) {
  const Dataset d{at::arange(20, at::kFloat).reshape({10, 2}), at::arange(10, at::kLong)};
  const Dataset s = d.subset(at::tensor({3, 1}, at::kLong));
  EXPECT_TRUE(s.y.equal(at::tensor({3, 1}, at::kLong)));
  EXPECT_EQ(s.x[0][1].item<float>(), 7.f);
  EXPECT_EQ(d.head(4).size(), 4);
  EXPECT_EQ(d.head(-1).size(), 10);
  EXPECT_EQ(d.head(50).size(), 10);
  EXPECT_EQ(Dataset{}.size(), 0);
}

TEST(DataBatchIterator, CoversEachSampleOncePerEpoch) {
  const int64_t n = 103;
  const Dataset d{at::arange(n, at::kFloat).unsqueeze(1), at::arange(n, at::kLong)};
  BatchIterator it(d, 10, /*shuffle=*/true, /*seed=*/5);
  EXPECT_EQ(it.num_batches(), 11);
  std::vector<std::vector<int64_t>> orders;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    it.start_epoch(epoch);
    std::vector<int64_t> seen;
    at::Tensor x, y;
    int64_t batches = 0;
    while (it.next(x, y)) {
      ++batches;
      EXPECT_LE(x.size(0), 10);
      EXPECT_TRUE(x.select(1, 0).to(at::kLong).equal(y));
      for (int64_t i = 0; i < y.size(0); ++i) seen.push_back(y[i].item<int64_t>());
    }
    EXPECT_EQ(batches, 11);
    EXPECT_EQ(x.size(0), 3);  // the last, partial batch is included
    EXPECT_FALSE(it.next(x, y));
    orders.push_back(seen);
    std::sort(seen.begin(), seen.end());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], i);
  }
  EXPECT_NE(orders[0], orders[1]);  // a new permutation each epoch

  // Reproducible: the same seed and epoch give the same order.
  BatchIterator again(d, 10, true, 5);
  again.start_epoch(1);
  at::Tensor x, y;
  ASSERT_TRUE(again.next(x, y));
  EXPECT_EQ(y[0].item<int64_t>(), orders[1][0]);

  BatchIterator ordered(d, 50, /*shuffle=*/false, 0);
  ASSERT_TRUE(ordered.next(x, y));
  EXPECT_TRUE(y.equal(at::arange(50, at::kLong)));

  EXPECT_THROW(BatchIterator(d, 0, true, 0), ConfigError);
}
