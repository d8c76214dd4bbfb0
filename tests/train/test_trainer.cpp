#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/data/dataset.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"

namespace squeeze {
namespace {

data::Splits jets(int64_t n) {
  data::DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = n;
  o.val_fraction = 0.2;
  o.test_fraction = 0.2;
  return data::load(o, 0);
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override { log::set_level(log::Level::kWarn); }
  void TearDown() override { log::set_level(log::Level::kInfo); }
};

TEST_F(TrainerTest, TrainingBeatsChanceAndTheUntrainedModel) {
  auto splits = jets(6000);
  ir::Graph g = models::build("jet_tagger", {}, 0);
  double before = train::evaluate(g, splits.test, 256, splits.num_classes).accuracy;
  train::TrainOptions o;
  o.epochs = 4;
  o.lr = 3e-3;
  auto r = train::fit(g, splits, o, 128, 0);
  EXPECT_EQ(r.epochs.size(), 4u);
  EXPECT_GT(r.steps, 0);
  auto m = train::evaluate(g, splits.test, 256, splits.num_classes);
  EXPECT_GT(m.accuracy, before + 0.1);
  EXPECT_GT(m.accuracy, 0.5);
  EXPECT_EQ(m.samples, splits.test.size());
  EXPECT_EQ(m.confusion.size(), 5u);
  int64_t total = 0;
  for (const auto& row : m.confusion)
    for (auto v : row) total += v;
  EXPECT_EQ(total, splits.test.size());
}

TEST_F(TrainerTest, EveryOptimizerAndScheduleRuns) {
  auto splits = jets(1500);
  for (std::string opt : {"sgd", "adam", "adamw"})
    for (std::string sched : {"constant", "step", "cosine"}) {
      ir::Graph g = models::build("jet_tagger", {}, 1);
      train::TrainOptions o;
      o.optimizer = opt;
      o.schedule = sched;
      o.epochs = 2;
      o.lr = opt == "sgd" ? 0.05 : 1e-3;
      o.nesterov = opt == "sgd";
      o.warmup_steps = 3;
      o.weight_decay = 1e-4;
      auto r = train::fit(g, splits, o, 64, 0);
      ASSERT_EQ(r.epochs.size(), 2u);
      EXPECT_TRUE(std::isfinite(r.epochs.back().train_loss)) << opt << " " << sched;
      EXPECT_LT(r.epochs.back().train_loss, 1.7) << opt << " " << sched;
    }
}

TEST_F(TrainerTest, PrunedWeightsStayZeroWhileFineTuning) {
  auto splits = jets(1500);
  ir::Graph g = models::build("jet_tagger", {}, 0);
  compress::MagnitudePruneOptions po;
  po.ratio = 0.7;
  compress::PassContext ctx;
  ir::Graph pruned = compress::MagnitudePrune(po).run(g, ctx).graph;
  int64_t nz = pruned.num_nonzero_params();
  train::TrainOptions o;
  o.epochs = 2;
  train::fit(pruned, splits, o, 64, 0);
  EXPECT_LE(pruned.num_nonzero_params(), nz);
  for (const auto& n : pruned.nodes)
    if (n.has_param("weight")) {
      const auto& p = n.param("weight");
      EXPECT_EQ(p.value.masked_select(p.mask->eq(0)).abs().sum().item<float>(), 0.0f) << n.name;
    }
}

TEST_F(TrainerTest, MaxStepsAndEarlyStopping) {
  auto splits = jets(1500);
  ir::Graph g = models::build("jet_tagger", {}, 0);
  train::TrainOptions o;
  o.epochs = 5;
  o.max_steps = 7;
  EXPECT_EQ(train::fit(g, splits, o, 64, 0).steps, 7);
  train::TrainOptions e;
  e.epochs = 50;
  e.lr = 1e-9;  // nothing improves: stops after `early_stopping` epochs past the first
  e.early_stopping = 2;
  auto r = train::fit(g, splits, e, 256, 0);
  EXPECT_LT(r.epochs.size(), 50u);
}

TEST_F(TrainerTest, InvalidOptionsAreConfigErrors) {
  auto splits = jets(500);
  ir::Graph g = models::build("jet_tagger", {}, 0);
  train::TrainOptions o;
  o.optimizer = "lion";
  EXPECT_THROW(train::fit(g, splits, o, 64, 0), ConfigError);
  o.optimizer = "adam";
  o.lr = -1;
  EXPECT_THROW(train::fit(g, splits, o, 64, 0), ConfigError);
}

TEST_F(TrainerTest, EvaluateRejectsAModelWithTheWrongClassCount) {
  auto splits = jets(500);
  ir::Graph g = models::build("jet_tagger", {{"num_classes", "3"}}, 0);
  EXPECT_THROW(train::evaluate(g, splits.test, 64, splits.num_classes), InputError);
}

}  // namespace
}  // namespace squeeze
