// The synthetic jet data set: the layout of OpenML 42468 (hls4ml_lhc_jets_hlf) and its physics.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

using namespace squeeze;
using namespace squeeze::data;

namespace {

constexpr int kMass = 14, kMultiplicity = 15, kD2 = 6, kN2 = 12;

at::Tensor of_class(const Dataset& d, int c) {
  return d.x.index_select(0, d.y.eq(c).nonzero().squeeze(1));
}
float median(const at::Tensor& x, int feature) {
  return std::get<0>(x.select(1, feature).median(0)).item<float>();
}

}  // namespace

TEST(DataSyntheticJets, NamesAreTheRealDataSets) {
  const auto& f = jet_feature_names();
  ASSERT_EQ(f.size(), 16u);
  EXPECT_EQ(f[0], "j_zlogz");
  EXPECT_EQ(f[1], "j_c1_b0_mmdt");
  EXPECT_EQ(f[8], "j_d2_a1_b1_mmdt");
  EXPECT_EQ(f[kMass], "j_mass_mmdt");
  EXPECT_EQ(f[kMultiplicity], "j_multiplicity");
  EXPECT_EQ(jet_class_names(), (std::vector<std::string>{"g", "q", "t", "w", "z"}));
}

TEST(DataSyntheticJets, DeterministicForASeed) {
  const Dataset a = make_synthetic_jets(2000, 0.2, 7);
  const Dataset b = make_synthetic_jets(2000, 0.2, 7);
  const Dataset c = make_synthetic_jets(2000, 0.2, 8);
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
  EXPECT_TRUE(pinned.y.equal(at::tensor({3, 1, 0}, at::kLong))) << pinned.y;
  EXPECT_NEAR(pinned.x[0][kMass].item<float>(), 25.7115765f, 1e-3f);  // a W that lost a prong
  EXPECT_NEAR(pinned.x[2][0].item<float>(), -3.64330697f, 1e-5f);
}

TEST(DataSyntheticJets, ClassFractions) {
  const int64_t n = 10000;
  // The default: t rare.
  const Dataset d = make_synthetic_jets(n, 0.05, 1);
  const at::Tensor counts = at::bincount(d.y, {}, 5);
  EXPECT_EQ(counts[2].item<int64_t>(), 500);
  for (int c : {0, 1, 3, 4}) EXPECT_EQ(counts[c].item<int64_t>(), 2375) << c;
  // Labels are shuffled, not sorted by class.
  EXPECT_FALSE(d.y.narrow(0, 0, 100).eq(d.y[0]).all().item<bool>());
  // Any class can be the rare one; 0.2 makes all five equal.
  const at::Tensor w = at::bincount(make_synthetic_jets(n, 0.02, 1, 3).y, {}, 5);
  EXPECT_EQ(w[3].item<int64_t>(), 200);
  EXPECT_EQ(w[2].item<int64_t>(), 2450);
  const at::Tensor eq = at::bincount(make_synthetic_jets(n, 0.2, 1).y, {}, 5);
  for (int c = 0; c < 5; ++c) EXPECT_EQ(eq[c].item<int64_t>(), 2000) << c;
  const at::Tensor none = at::bincount(make_synthetic_jets(1001, 0.0, 1).y, {}, 5);
  EXPECT_EQ(none[2].item<int64_t>(), 0);
  EXPECT_EQ(none.sum().item<int64_t>(), 1001);
}

// Mass peaks where the particles are, W and Z nearly degenerate, two-prong jets with low D2 and
// N2, gluon jets with more constituents than quark jets.
TEST(DataSyntheticJets, PhysicsSignatures) {
  const Dataset d = make_synthetic_jets(20000, 0.2, 3);
  const at::Tensor g = of_class(d, 0), q = of_class(d, 1), t = of_class(d, 2), w = of_class(d, 3),
                   z = of_class(d, 4);
  EXPECT_NEAR(median(t, kMass), 168.f, 10.f);  // 173 GeV, pulled down by W-only grooming
  EXPECT_NEAR(median(w, kMass), 80.4f, 2.f);
  EXPECT_NEAR(median(z, kMass), 91.2f, 2.f);
  EXPECT_LT(median(g, kMass), 60.f);
  EXPECT_LT(median(q, kMass), median(g, kMass));
  EXPECT_GT(median(g, kMultiplicity), median(q, kMultiplicity) + 8);
  EXPECT_GT(median(t, kMultiplicity), median(g, kMultiplicity));
  EXPECT_LT(median(w, kD2), 0.7f * median(q, kD2));
  EXPECT_LT(median(w, kN2), 0.7f * median(q, kN2));
  // W and Z differ by little but their mass.
  EXPECT_NEAR(median(w, kD2), median(z, kD2), 0.05f);
  EXPECT_NEAR(median(w, kMultiplicity), median(z, kMultiplicity), 4.f);
  // The features are correlated as the definitions make them (C2 = D2 e2).
  const at::Tensor c = at::corrcoef(d.x.t());
  EXPECT_GT(c[4][2].item<float>(), 0.5f);   // j_c2_b1 with j_c1_b1
  EXPECT_GT(c[0].neg()[15].item<float>(), 0.5f);  // j_zlogz falls with the multiplicity
}

TEST(DataSyntheticJets, ClassesDifferButOverlap) {
  const Dataset d = make_synthetic_jets(20000, 0.2, 3);
  // Nearest-class-mean on standardized features: clearly better than chance (0.2) but far from
  // perfect, so the classes are learnable and not trivially separable.
  const at::Tensor x = (d.x - d.x.mean(0)) / d.x.std(0);
  std::vector<at::Tensor> means;
  for (int c = 0; c < 5; ++c) means.push_back(x.index_select(0, d.y.eq(c).nonzero().squeeze(1)).mean(0));
  const at::Tensor pred = at::cdist(x, at::stack(means)).argmin(1);
  const double acc = pred.eq(d.y).to(at::kDouble).mean().item<double>();
  EXPECT_GT(acc, 0.4);
  EXPECT_LT(acc, 0.8);
}

TEST(DataSyntheticJets, BadOptions) {
  EXPECT_THROW(make_synthetic_jets(0, 0.02, 0), ConfigError);
  EXPECT_THROW(make_synthetic_jets(10, 1.0, 0), ConfigError);
  EXPECT_THROW(make_synthetic_jets(10, -0.1, 0), ConfigError);
  EXPECT_THROW(make_synthetic_jets(10, 0.1, 0, 5), ConfigError);
}

TEST(DataSyntheticJets, LoadCarvesTestAndVal) {
  DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = 5000;
  o.rare_fraction = 0.02;
  o.rare_class = 4;
  const Splits s = load(o, 0);
  EXPECT_EQ(s.test.size(), 1000);
  EXPECT_EQ(s.val.size(), 400);
  EXPECT_EQ(s.train.size(), 3600);
  EXPECT_EQ(s.num_classes, 5);
  EXPECT_EQ(s.class_names, jet_class_names());
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{16}));
  EXPECT_EQ(s.description, "synthetic-jets: train 3600, val 400, test 1000");
  const int64_t z = s.train.y.eq(4).sum().item<int64_t>() + s.val.y.eq(4).sum().item<int64_t>() +
                    s.test.y.eq(4).sum().item<int64_t>();
  EXPECT_EQ(z, 100);
  // Standardized with the train split's statistics, carried as a transform.
  ASSERT_TRUE(s.transform);
  EXPECT_EQ(s.transform->mean.size(), 16u);
  EXPECT_NEAR(s.train.inputs(0, s.train.size()).mean(0).abs().max().item<float>(), 0.f, 1e-4f);
}
