#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/data/dataset.h"
#include "squeeze/exec/executor.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using testing::jets;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override { log::set_level(log::Level::kWarn); }
  void TearDown() override { log::set_level(log::Level::kInfo); }
};

TEST_F(TrainerTest, TrainingBeatsChanceAndTheUntrainedModel) {
  auto splits = jets(6000);
  ir::Graph g = models::build("jet_tagger", {}, 0);
  double before = train::evaluate(g, splits.test, 256).accuracy;
  train::TrainOptions o;
  o.epochs = 4;
  o.lr = 3e-3;
  auto r = train::fit(g, splits, o, 128, 0);
  EXPECT_EQ(r.epochs.size(), 4u);
  EXPECT_GT(r.steps, 0);
  auto m = train::evaluate(g, splits.test, 256);
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
  EXPECT_THROW(train::evaluate(g, splits.test, 64), InputError);
}

// A data set holding only classes 1 and 3 of a 12-class model (a 1000-class model evaluated on
// a small labelled set is the same situation).
data::Dataset two_classes_of(const data::Dataset& d) {
  const at::Tensor keep = (d.y.eq(1) | d.y.eq(3)).nonzero().select(1, 0);
  return d.subset(keep);
}

TEST_F(TrainerTest, EvaluatesAModelWithMoreOutputsThanTheDataHasClasses) {
  auto splits = jets(3000);
  ir::Graph g = models::build("jet_tagger", {{"num_classes", "12"}}, 0);
  const data::Dataset d = two_classes_of(splits.test);
  ASSERT_GT(d.size(), 50);
  const train::Metrics m = train::evaluate(g, d, 64);
  EXPECT_EQ(m.num_outputs, 12);
  EXPECT_EQ(m.classes, (std::vector<int64_t>{1, 3}));
  ASSERT_EQ(m.per_class_accuracy.size(), 2u);
  ASSERT_EQ(m.per_class_precision.size(), 2u);

  // The reference: argmax over all 12 outputs of the executor's logits.
  at::Tensor pred = exec::Executor(g).forward(d.inputs(0, d.size()), exec::Mode::kEval).argmax(1);
  EXPECT_DOUBLE_EQ(m.accuracy, pred.eq(d.y).to(at::kDouble).mean().item<double>());
  for (size_t i = 0; i < 2; ++i) {
    const int64_t c = m.classes[i];
    const at::Tensor is_c = d.y.eq(c), said_c = pred.eq(c);
    const double hits = (is_c & said_c).sum().item<double>();
    EXPECT_DOUBLE_EQ(m.per_class_accuracy[i], hits / is_c.sum().item<double>()) << c;
    const double said = said_c.sum().item<double>();
    EXPECT_DOUBLE_EQ(m.per_class_precision[i], said > 0 ? hits / said : 0.0) << c;
  }
  // Two label classes, and a third column for predictions of the ten classes the data lacks.
  ASSERT_EQ(m.confusion.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(m.confusion[i].size(), 3u);
    int64_t row = 0;
    for (auto v : m.confusion[i]) row += v;
    EXPECT_EQ(row, d.y.eq(m.classes[i]).sum().item<int64_t>());
  }
  EXPECT_EQ(m.confusion[0][2], (d.y.eq(1) & pred.ne(1) & pred.ne(3)).sum().item<int64_t>());
  const at::Tensor ref_loss =
      at::cross_entropy_loss(exec::Executor(g).forward(d.inputs(0, d.size()), exec::Mode::kEval), d.y);
  EXPECT_NEAR(m.loss, ref_loss.item<double>(), 1e-5);
}

TEST_F(TrainerTest, TrainsAModelWithMoreOutputsThanTheDataHasClasses) {
  auto splits = jets(6000);
  splits.train = two_classes_of(splits.train);
  splits.val = two_classes_of(splits.val);
  const data::Dataset test = two_classes_of(splits.test);
  ir::Graph g = models::build("jet_tagger", {{"num_classes", "12"}}, 0);
  const double before = train::evaluate(g, test, 64).accuracy;
  train::TrainOptions o;
  o.epochs = 4;
  o.lr = 3e-3;
  auto r = train::fit(g, splits, o, 64, 0);
  EXPECT_GT(r.steps, 0);
  // It learns to output the two classes present (the other ten outputs are never targets).
  const train::Metrics m = train::evaluate(g, test, 64);
  ASSERT_EQ(m.confusion.size(), 2u);
  EXPECT_LT(m.confusion[0][2] + m.confusion[1][2], test.size() / 20);
  EXPECT_GT(m.accuracy, before + 0.2);
  EXPECT_GT(m.accuracy, 0.6);
}

TEST_F(TrainerTest, ALabelOutsideTheModelsOutputsNamesLabelRowAndRange) {
  auto splits = jets(500);
  ir::Graph g = models::build("jet_tagger", {{"num_classes", "12"}}, 0);
  data::Dataset bad = splits.test;
  bad.y = bad.y.clone();
  bad.y[7] = 12;
  bad.y[9] = 40;
  try {
    train::evaluate(g, bad, 4);
    FAIL() << "no error";
  } catch (const InputError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("label 12 in row 7"), std::string::npos) << w;
    EXPECT_NE(w.find("0 to 11"), std::string::npos) << w;
  }
  bad.y[7] = -1;
  EXPECT_THROW(train::evaluate(g, bad, 64), InputError);

  // Training checks its splits before the first step, naming the split.
  splits.train.y = splits.train.y.clone();
  splits.train.y[3] = 12;
  train::TrainOptions o;
  try {
    train::fit(g, splits, o, 64, 0);
    FAIL() << "no error";
  } catch (const InputError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("training split: label 12 in row 3"), std::string::npos) << w;
  }
  EXPECT_EQ(train::output_classes(g), 12);
}

}  // namespace
}  // namespace squeeze
