// Image transforms (resize, channels, normalize) applied per batch, stored as graph metadata;
// the validation split scaled with a train limit.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/errors.h"

using namespace squeeze;
using namespace squeeze::data;
using squeeze::testing::error_of;
using squeeze::testing::TempDir;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

namespace {

constexpr double kTol = 1e-6;

// n gray images H x W (float in [0, 1], as IDX bytes / 255) and labels 0..2, as .npy files.
DataOptions image_npy(const TempDir& dir, int64_t n, int64_t h, int64_t w) {
  at::manual_seed(3);
  write_npy(dir.file("x.npy"), at::rand({n, h, w}, at::kFloat));
  write_npy(dir.file("y.npy"), at::arange(n, at::kLong).remainder(3));
  DataOptions o;
  o.dataset = "npy";
  o.features = dir.file("x.npy");
  o.labels = dir.file("y.npy");
  o.test_fraction = 0.2;
  o.val_fraction = 0.1;
  return o;
}

}  // namespace

TEST(Transform, BilinearResizeAsTorchvisionWithoutAntialias) {
  // align_corners=false: destination pixel d samples source (d + 0.5) * in / out - 0.5, clamped
  // at 0: for 2 -> 4 the rows and columns sample 0, 0.25, 0.75, 1.
  Transform t;
  t.resize = {4, 4};
  at::Tensor x = at::tensor({0.f, 1.f, 2.f, 3.f}).reshape({1, 1, 2, 2});
  at::Tensor y = t.apply(x);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{1, 1, 4, 4}));
  const std::vector<float> coord = {0.f, 0.25f, 0.75f, 1.f};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c)
      EXPECT_NEAR(y[0][0][r][c].item<float>(), 2 * coord[r] + coord[c], kTol) << r << "," << c;
}

TEST(Transform, ChannelsAndNormalize) {
  Transform t;
  t.channels = 3;
  t.mean = kImagenetMean;
  t.std = kImagenetStd;
  at::Tensor x = at::rand({2, 1, 5, 5});
  at::Tensor y = t.apply(x);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{2, 3, 5, 5}));
  for (int c = 0; c < 3; ++c)
    EXPECT_TRUE(squeeze::testing::tensors_close(y.select(1, c), (x.select(1, 0) - kImagenetMean[c]) / kImagenetStd[c],
                                       1e-5, 1e-5));
  // H x W samples are one channel.
  EXPECT_EQ(t.apply(at::rand({2, 5, 5})).sizes(), (at::IntArrayRef{2, 3, 5, 5}));

  Transform gray;
  gray.channels = 1;
  at::Tensor rgb = at::rand({2, 3, 4, 4});
  EXPECT_TRUE(squeeze::testing::tensors_close(
      gray.apply(rgb).squeeze(1),
      rgb.select(1, 0) * 0.2989 + rgb.select(1, 1) * 0.587 + rgb.select(1, 2) * 0.114, 1e-5, 1e-5));
}

TEST(Transform, EmptyLeavesTheBatchAlone) {
  Transform t;
  EXPECT_TRUE(t.empty());
  at::Tensor x = at::rand({2, 1, 5, 5});
  EXPECT_TRUE(t.apply(x).is_same(x));
  EXPECT_EQ(t.output_shape({1, 28, 28}), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_TRUE(t.to_metadata().empty());
  EXPECT_TRUE(Transform::from_metadata({{"zoo", "small_cnn"}}, "m.sqz").empty());
}

TEST(Transform, OutputShapeAndItsErrors) {
  Transform t;
  t.resize = {64, 32};
  t.channels = 3;
  EXPECT_EQ(t.output_shape({1, 28, 28}), (std::vector<int64_t>{3, 64, 32}));
  EXPECT_EQ(t.output_shape({28, 28}), (std::vector<int64_t>{3, 64, 32}));
  EXPECT_HAS(error_of<ConfigError>([&] { t.output_shape({16}); }), "image samples");
  EXPECT_HAS(error_of<ConfigError>([&] { t.output_shape({2, 8, 8}); }),
             "data.channels: 3 cannot be made from 2-channel images");
  Transform n;
  n.mean = kImagenetMean;
  n.std = kImagenetStd;
  EXPECT_HAS(error_of<ConfigError>([&] { n.output_shape({1, 8, 8}); }),
             "add channels: 3 to replicate the gray channel");
}

TEST(Transform, MetadataRoundTrip) {
  Transform t;
  t.resize = {64, 48};
  t.channels = 3;
  t.mean = {0.1, 0.2, 0.3};
  t.std = {0.5, 0.25, 0.125};
  const auto m = t.to_metadata();
  EXPECT_EQ(m.at("transform.resize"), "64,48");
  const Transform back = Transform::from_metadata(m, "m.sqz");
  EXPECT_EQ(back.resize, t.resize);
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.mean, t.mean);
  EXPECT_EQ(back.std, t.std);

  EXPECT_HAS(error_of<InputError>([] {
               Transform::from_metadata({{"transform.resize", "64,x"}}, "m.sqz");
             }),
             "m.sqz: metadata transform.resize");
  EXPECT_HAS(error_of<InputError>([] {
               Transform::from_metadata({{"transform.mean", "0.5"}}, "m.sqz");
             }),
             "without transform.std");
  EXPECT_HAS(error_of<InputError>([] {
               Transform::from_metadata({{"transform.mean", "0.5"}, {"transform.std", "0"}}, "m.sqz");
             }),
             "must be > 0");
}

TEST(DataTransform, LoadAppliesItPerBatchWithoutStoringIt) {
  TempDir dir;
  DataOptions o = image_npy(dir, 200, 6, 6);
  o.resize = {12, 10};
  o.channels = 3;
  o.normalize = "imagenet";
  const Splits s = load(o, 0);
  ASSERT_TRUE(s.transform);
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{3, 12, 10}));
  // Stored at its own size; transformed on the way out.
  EXPECT_EQ(s.train.x.sizes(), (at::IntArrayRef{s.train.size(), 1, 6, 6}));
  at::Tensor first = s.train.inputs(0, 4);
  EXPECT_EQ(first.sizes(), (at::IntArrayRef{4, 3, 12, 10}));
  EXPECT_TRUE(squeeze::testing::tensors_close(first, s.transform->apply(s.train.x.narrow(0, 0, 4)), 0, 0));
  BatchIterator it(s.val, 8, true, 0);
  at::Tensor x, y;
  ASSERT_TRUE(it.next(x, y));
  EXPECT_EQ(x.sizes().slice(1), (at::IntArrayRef{3, 12, 10}));
  EXPECT_EQ(s.test.head(5).inputs(0, 5).sizes(), (at::IntArrayRef{5, 3, 12, 10}));
}

TEST(DataTransform, StandardStatisticsMeasuredOnWhatTheModelSees) {
  TempDir dir;
  DataOptions o = image_npy(dir, 300, 6, 6);
  o.resize = {9, 9};  // normalize: standard (the default), measured on the resized train split
  const Splits s = load(o, 0);
  ASSERT_TRUE(s.transform);
  ASSERT_EQ(s.transform->mean.size(), 1u);
  at::Tensor all = s.train.inputs(0, s.train.size());
  EXPECT_NEAR(all.mean().item<double>(), 0.0, 1e-4);
  EXPECT_NEAR(all.std(/*unbiased=*/false).item<double>(), 1.0, 1e-3);
}

TEST(DataTransform, NoTransformKeysNoTransform) {
  TempDir dir;
  DataOptions o = image_npy(dir, 50, 6, 6);
  const Splits s = load(o, 0);
  EXPECT_FALSE(s.transform);
  EXPECT_FALSE(s.train.transform);
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{6, 6}));
  EXPECT_TRUE(s.train.inputs(0, 3).is_same(s.train.x.narrow(0, 0, 3)) ||
              s.train.inputs(0, 3).equal(s.train.x.narrow(0, 0, 3)));
}

TEST(DataTransform, RefusedForTabularData) {
  DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = 200;
  o.resize = {8, 8};
  EXPECT_HAS(error_of<ConfigError>([&] { load(o, 0); }), "apply to image samples");
}

TEST(DataLimit, TrainLimitAloneScalesValidation) {
  DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = 5000;
  o.val_fraction = 0.1;
  const Splits full = load(o, 0);
  EXPECT_EQ(full.val.size(), 400);  // 10% of the 4000 left after the 20% test split
  o.limit_train = 900;
  const Splits scaled = load(o, 0);
  EXPECT_EQ(scaled.train.size(), 900);
  EXPECT_EQ(scaled.val.size(), 100);  // val : train = 0.1 : 0.9
  EXPECT_EQ(scaled.test.size(), full.test.size());
  o.limit_val = 250;  // given: kept
  EXPECT_EQ(load(o, 0).val.size(), 250);
}
