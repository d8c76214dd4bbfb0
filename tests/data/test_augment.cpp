// data.augment: random shifts and flips of image training batches (data/augment.h), attached to
// the train split by load() and applied by BatchIterator only.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "squeeze/data/augment.h"
#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/errors.h"

using namespace squeeze;
using namespace squeeze::data;

namespace {

using squeeze::testing::error_of;
using squeeze::testing::TempDir;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

AugmentOptions shift_flip(int64_t shift, bool hflip) {
  AugmentOptions o;
  o.shift = shift;
  o.hflip = hflip;
  return o;
}

// Sample i of x shifted by (dy - s, dx - s) with `fill` per channel in the uncovered border,
// then mirrored when `flip`: what Augment may produce for it.
at::Tensor shifted(const at::Tensor& sample, int64_t s, int64_t dy, int64_t dx, bool flip,
                   const std::vector<double>& fill) {
  const int64_t c = sample.size(0), h = sample.size(1), w = sample.size(2);
  at::Tensor padded = at::empty({c, h + 2 * s, w + 2 * s});
  for (int64_t ch = 0; ch < c; ++ch) padded[ch].fill_(fill[ch]);
  padded.narrow(1, s, h).narrow(2, s, w).copy_(sample);
  at::Tensor crop = padded.narrow(1, dy, h).narrow(2, dx, w);
  return flip ? crop.flip({2}) : crop;
}

// N x 1 x H x W images (values 1..255, so that no pixel equals a zero pixel's normalized value by
// chance) and labels 0..2 as .npy files; returns the options that read them.
DataOptions image_npy(const TempDir& dir, int64_t n, int64_t h, int64_t w) {
  at::manual_seed(11);
  write_npy(dir.file("x.npy"), at::randint(1, 256, {n, 1, h, w}).to(at::kFloat));
  write_npy(dir.file("y.npy"), at::arange(n, at::kLong).remainder(3));
  DataOptions o;
  o.dataset = "npy";
  o.features = dir.file("x.npy");
  o.labels = dir.file("y.npy");
  o.val_fraction = 0.2;
  return o;
}

TEST(DataAugment, EverySampleIsAShiftedOrMirroredCopyAndTheSeedFixesWhich) {
  at::manual_seed(0);
  const at::Tensor x = at::rand({48, 2, 6, 7});
  const std::vector<double> fill = {-1.0, -2.0};
  const Augment a(shift_flip(2, true), {2, 6, 7}, fill);
  const at::Tensor out = a.apply(x, 7);
  ASSERT_EQ(out.sizes(), x.sizes());
  EXPECT_TRUE(out.equal(a.apply(x, 7)));
  EXPECT_FALSE(out.equal(a.apply(x, 8)));
  EXPECT_FALSE(out.equal(x));
  int moved = 0, mirrored = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    bool found = false;
    for (int64_t dy = 0; dy <= 4 && !found; ++dy)
      for (int64_t dx = 0; dx <= 4 && !found; ++dx)
        for (bool flip : {false, true})
          if (!found && out[i].equal(shifted(x[i], 2, dy, dx, flip, fill))) {
            found = true;
            moved += (dy != 2 || dx != 2);
            mirrored += flip;
          }
    EXPECT_TRUE(found) << "sample " << i << " is no shift or flip of its input";
  }
  // 48 draws: a translation or a flip that never happens is a broken draw, not chance.
  EXPECT_GT(moved, 24);
  EXPECT_GT(mirrored, 8);
  EXPECT_LT(mirrored, 40);
}

TEST(DataAugment, FlipOnlyMirrorsSomeSamplesAndNeverShifts) {
  at::manual_seed(1);
  const at::Tensor x = at::rand({32, 1, 5, 5});
  const Augment a(shift_flip(0, true), {1, 5, 5}, {0.0});
  const at::Tensor out = a.apply(x, 3);
  int mirrored = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    const bool same = out[i].equal(x[i]), flip = out[i].equal(x[i].flip({2}));
    EXPECT_TRUE(same || flip) << "sample " << i;
    mirrored += flip;
  }
  EXPECT_GT(mirrored, 0);
  EXPECT_LT(mirrored, 32);
}

TEST(DataAugment, NoOptionsLeaveTheBatchAsItIs) {
  const at::Tensor x = at::rand({8, 1, 4, 4});
  const Augment a(AugmentOptions{}, {1, 4, 4}, {0.0});
  EXPECT_TRUE(a.apply(x, 1).equal(x));
  EXPECT_EQ(AugmentOptions{}.describe(), "none");
  EXPECT_EQ(shift_flip(2, true).describe(), "shift 2 px, horizontal flip");
}

TEST(DataAugment, RejectsTablesNegativeAndTooLargeShiftsNamingTheKey) {
  auto make = [](AugmentOptions o, std::vector<int64_t> shape) {
    return error_of<ConfigError>([&] { Augment(o, shape, {}); });
  };
  const std::string table = make(shift_flip(1, false), {16});
  EXPECT_HAS(table, "data.augment");
  EXPECT_HAS(table, "images");
  EXPECT_HAS(table, "[16]");
  EXPECT_HAS(make(shift_flip(-1, false), {1, 8, 8}), "data.augment.shift: -1");
  const std::string large = make(shift_flip(6, false), {1, 6, 9});
  EXPECT_HAS(large, "data.augment.shift");
  EXPECT_HAS(large, "valid: 0 to 5");
}

TEST(DataAugment, BatchIteratorAugmentsOnlyWhenGivenAnAugmentAndReproducibly) {
  at::manual_seed(2);
  Dataset d{at::rand({40, 1, 5, 5}), at::arange(40, at::kLong)};
  auto aug = std::make_shared<const Augment>(shift_flip(1, true), std::vector<int64_t>{1, 5, 5},
                                             std::vector<double>{0.0});
  BatchIterator plain(d, 16, true, 3), again(d, 16, true, 3, aug), other(d, 16, true, 3, aug);
  int differing = 0;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    plain.start_epoch(epoch);
    again.start_epoch(epoch);
    other.start_epoch(epoch);
    at::Tensor xp, yp, xa, ya, xo, yo;
    while (plain.next(xp, yp)) {
      ASSERT_TRUE(again.next(xa, ya));
      ASSERT_TRUE(other.next(xo, yo));
      // Same samples in the same order; the plain batch is the stored data itself.
      EXPECT_TRUE(ya.equal(yp));
      EXPECT_TRUE(xp.equal(d.x.index_select(0, yp)));
      EXPECT_TRUE(xa.equal(xo));
      differing += !xa.equal(xp);
    }
  }
  EXPECT_EQ(differing, 6);  // every batch of both epochs
}

TEST(DataAugment, LoadAttachesItToTrainingOnlyAndPadsWithANormalizedZeroPixel) {
  TempDir dir;
  DataOptions o = image_npy(dir, 60, 6, 6);
  const Splits plain = load(o, 0);
  EXPECT_EQ(plain.augment, nullptr);
  o.augment = shift_flip(2, true);
  const Splits s = load(o, 0);
  ASSERT_NE(s.augment, nullptr);
  EXPECT_HAS(s.description, "shift 2 px, horizontal flip");
  // The data itself is untouched: evaluation reads the same inputs as without augmentation.
  EXPECT_TRUE(s.train.x.equal(plain.train.x));
  EXPECT_TRUE(s.val.inputs(0, s.val.size()).equal(plain.val.inputs(0, plain.val.size())));
  EXPECT_TRUE(s.test.inputs(0, s.test.size()).equal(plain.test.inputs(0, plain.test.size())));
  // An image of zero pixels, normalized, stays what it is under any shift: the padding is a
  // zero pixel normalized the same way (standard normalization of values 1..255 moves it).
  const double zero = -s.mean[0].item<double>() / s.std[0].item<double>();
  EXPECT_LT(zero, -1.0);
  const at::Tensor black = at::full({16, 1, 6, 6}, zero);
  EXPECT_TRUE(at::allclose(s.augment->apply(black, 5), black));
  const at::Tensor white = at::full({16, 1, 6, 6}, 3.0);
  EXPECT_FALSE(at::allclose(s.augment->apply(white, 5), white));
}

TEST(DataAugment, LoadRejectsAugmentForTablesOfFeatures) {
  TempDir dir;
  write_npy(dir.file("x.npy"), at::rand({30, 4}));
  write_npy(dir.file("y.npy"), at::arange(30, at::kLong).remainder(2));
  DataOptions o;
  o.dataset = "npy";
  o.features = dir.file("x.npy");
  o.labels = dir.file("y.npy");
  o.augment = shift_flip(0, true);
  const std::string e = error_of<ConfigError>([&] { load(o, 0); });
  EXPECT_HAS(e, "data.augment");
  EXPECT_HAS(e, "[4]");
  o.augment = AugmentOptions{};
  EXPECT_EQ(load(o, 0).augment, nullptr);
  DataOptions jets;
  jets.dataset = "synthetic-jets";
  jets.samples = 100;
  jets.augment = shift_flip(1, false);
  EXPECT_HAS(error_of<ConfigError>([&] { load(jets, 0); }), "data.augment");
}

}  // namespace
