// train::fit with data.augment: training batches are augmented reproducibly, and a teacher
// being distilled from sees the student's augmented batch.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/distill.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/log.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using squeeze::testing::TempDir;

class AugmentTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_level(log::Level::kWarn);
    at::manual_seed(4);
    data::write_npy(dir_.file("x.npy"), at::randint(0, 256, {80, 1, 6, 6}).to(at::kFloat));
    data::write_npy(dir_.file("y.npy"), at::arange(80, at::kLong).remainder(3));
    data::DataOptions o;
    o.dataset = "npy";
    o.features = dir_.file("x.npy");
    o.labels = dir_.file("y.npy");
    o.val_fraction = 0.25;
    o.augment.shift = 2;
    o.augment.hflip = true;
    augmented_ = data::load(o, 0);
    plain_ = augmented_;
    plain_.augment = nullptr;
  }
  void TearDown() override { log::set_level(log::Level::kInfo); }

  static ir::Graph mlp(uint64_t seed) {
    return models::build("mlp", {{"in_channels", "1"}, {"height", "6"}, {"width", "6"},
                                 {"hidden", "8"}, {"num_classes", "3"}}, seed);
  }

  TempDir dir_;
  data::Splits augmented_, plain_;
};

std::vector<at::Tensor> values(const ir::Graph& g) {
  std::vector<at::Tensor> out;
  for (const auto& n : g.nodes)
    for (const auto& [k, p] : n.params) out.push_back(p.value);
  return out;
}

bool same_values(const ir::Graph& a, const ir::Graph& b) {
  const auto va = values(a), vb = values(b);
  if (va.size() != vb.size()) return false;
  for (size_t i = 0; i < va.size(); ++i)
    if (!va[i].equal(vb[i])) return false;
  return true;
}

TEST_F(AugmentTraining, FitTrainsOnAugmentedBatchesAndTheSeedReproducesThem) {
  train::TrainOptions o;
  o.epochs = 2;
  o.lr = 0.05;
  o.keep_best = false;
  ir::Graph a = mlp(0), b = mlp(0), c = mlp(0);
  train::fit(a, augmented_, o, 16, 5);
  train::fit(b, augmented_, o, 16, 5);
  train::fit(c, plain_, o, 16, 5);
  EXPECT_TRUE(same_values(a, b));
  EXPECT_FALSE(same_values(a, c));
}

TEST_F(AugmentTraining, TheTeacherSeesTheStudentsAugmentedBatch) {
  // A teacher equal to the student, alpha 1: the loss is KL(teacher || student), zero exactly
  // when both see the same inputs. One step over the whole training split.
  auto kd = std::make_shared<train::DistillOptions>();
  kd->alpha = 1.0;
  kd->temperature = 1.0;
  train::TrainOptions o;
  o.epochs = 1;
  o.max_steps = 1;
  o.keep_best = false;
  o.distill = kd;
  const int64_t all = augmented_.train.size();
  const ir::Graph twin = mlp(0);
  ir::Graph student = mlp(0);
  const auto same = train::fit(student, augmented_, o, all, 5, nullptr, &twin);
  ASSERT_EQ(same.epochs.size(), 1u);
  EXPECT_LT(same.epochs[0].train_loss, 1e-6);
  // The same measurement with another teacher is not zero: the loss does look at the teacher.
  const ir::Graph stranger = mlp(1);
  ir::Graph student2 = mlp(0);
  const auto other = train::fit(student2, augmented_, o, all, 5, nullptr, &stranger);
  EXPECT_GT(other.epochs[0].train_loss, 1e-4);
}

}  // namespace
}  // namespace squeeze
