#include "squeeze/train/distill.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "squeeze/exec/executor.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "testing/data.h"

namespace squeeze {
namespace {

class DistillTest : public ::testing::Test {
 protected:
  void SetUp() override { log::set_level(log::Level::kWarn); }
  void TearDown() override { log::set_level(log::Level::kInfo); }
};

using testing::jets;

// A teacher that knows nothing of the labels: random weights with a sharpened output layer, so
// its confident predictions differ from what training on the labels teaches.
const ir::Graph& trained_teacher() {
  static const ir::Graph g = [] {
    ir::Graph t = models::build("jet_tagger", {}, 7);
    for (auto& n : t.nodes)
      if (n.name == "output") n.param("weight").value.mul_(20.0);
    return t;
  }();
  return g;
}

std::shared_ptr<const train::DistillOptions> distill(double alpha, double temperature,
                                                     std::vector<train::FeatureMatch> features = {}) {
  auto d = std::make_shared<train::DistillOptions>();
  d->alpha = alpha;
  d->temperature = temperature;
  d->features = std::move(features);
  return d;
}

std::vector<at::Tensor> values(const ir::Graph& g) {
  std::vector<at::Tensor> out;
  for (const auto& n : g.nodes)
    for (const auto& [k, p] : n.params) out.push_back(p.value);
  return out;
}

// Mean KL(teacher || student) of the softmax outputs over a data set: how far apart they are.
double kl_to_teacher(const ir::Graph& student, const ir::Graph& teacher, const at::Tensor& x) {
  at::NoGradGuard no_grad;
  at::Tensor s = exec::Executor(student).forward(x), t = exec::Executor(teacher).forward(x);
  return train::soft_target_loss(s, t, 1.0).item<double>();
}

TEST_F(DistillTest, SoftTargetLossMatchesTheFormulaAndVanishesForEqualLogits) {
  at::manual_seed(0);
  at::Tensor s = at::randn({6, 5}), t = at::randn({6, 5});
  const double T = 3.0;
  at::Tensor pt = at::softmax(t / T, 1), ps = at::softmax(s / T, 1);
  const double expected = (pt * (pt.log() - ps.log())).sum().item<double>() / 6.0 * T * T;
  EXPECT_NEAR(train::soft_target_loss(s, t, T).item<double>(), expected, 1e-5);
  EXPECT_NEAR(train::soft_target_loss(t, t, T).item<double>(), 0.0, 1e-6);
  EXPECT_GT(train::soft_target_loss(s, t, T).item<double>(), 0.0);
}

TEST_F(DistillTest, DistillationPullsTheStudentTowardsTheTeacher) {
  auto d = jets(3000);
  const ir::Graph& teacher = trained_teacher();
  train::TrainOptions o;
  o.epochs = 4;
  o.lr = 3e-3;
  ir::Graph plain = models::build("jet_tagger", {}, 1);
  ir::Graph distilled = plain.clone();
  train::fit(plain, d, o, 128, 3);
  o.distill = distill(1.0, 1.0);
  train::TrainResult r = train::fit(distilled, d, o, 128, 3, nullptr, &teacher);
  EXPECT_GT(r.teacher_seconds, 0.0);
  EXPECT_LT(r.teacher_seconds, r.step_seconds);
  // Trained on the teacher's soft targets alone, the student ends far closer to the teacher than
  // the same student trained on the labels.
  const double kl_plain = kl_to_teacher(plain, teacher, d.test.inputs(0, d.test.size())), kl_dist = kl_to_teacher(distilled, teacher, d.test.inputs(0, d.test.size()));
  EXPECT_LT(kl_dist, 0.2 * kl_plain) << "distilled " << kl_dist << " vs plain " << kl_plain;
  // The graph's outputs are its own again after training.
  EXPECT_EQ(distilled.outputs, plain.outputs);
}

TEST_F(DistillTest, AlphaZeroWithoutFeaturesIsPlainTrainingAndNeverRunsTheTeacher) {
  auto d = jets(1500);
  train::TrainOptions o;
  o.epochs = 1;
  ir::Graph a = models::build("jet_tagger", {}, 1), b = a.clone();
  train::fit(a, d, o, 128, 5);
  o.distill = distill(0.0, 4.0);
  train::TrainResult r = train::fit(b, d, o, 128, 5, nullptr, &trained_teacher());
  EXPECT_EQ(r.teacher_seconds, 0.0);
  auto va = values(a), vb = values(b);
  ASSERT_EQ(va.size(), vb.size());
  for (size_t i = 0; i < va.size(); ++i) EXPECT_TRUE(at::allclose(va[i], vb[i], 1e-6, 1e-7)) << i;
}

TEST_F(DistillTest, FeatureMatchingAddsAnAdapterOnlyWhenWidthsDiffer) {
  auto d = testing::random_splits({1, 28, 28}, 64);
  ir::Graph teacher = models::build("small_cnn", {{"channels", "8"}}, 1);
  ir::Graph narrow = models::build("small_cnn", {{"channels", "4"}}, 2);
  ir::Graph same = models::build("small_cnn", {{"channels", "8"}}, 3);
  const std::string conv = narrow.nodes[0].name;  // the first convolution
  ASSERT_EQ(narrow.nodes[0].op, "Conv");
  train::DistillOptions o;
  o.features = {{conv, conv, 1.0}};
  {
    train::Distiller dn(teacher, narrow, o, 0);
    EXPECT_EQ(dn.parameters().size(), 1u);
    EXPECT_EQ(narrow.outputs.size(), 2u);  // logits + the matched feature while distilling
  }
  EXPECT_EQ(narrow.outputs.size(), 1u);
  {
    train::Distiller ds(teacher, same, o, 0);
    EXPECT_TRUE(ds.parameters().empty());
  }
  // Training with the feature loss runs and changes the student.
  train::TrainOptions t;
  t.epochs = 1;
  t.distill = std::make_shared<const train::DistillOptions>(o);
  const at::Tensor before = narrow.nodes[0].param("weight").value.clone();
  train::TrainResult r = train::fit(narrow, d, t, 16, 0, nullptr, &teacher);
  EXPECT_GT(r.steps, 0);
  EXPECT_FALSE(at::equal(before, narrow.nodes[0].param("weight").value));
  EXPECT_EQ(narrow.outputs.size(), 1u);
}

TEST_F(DistillTest, MismatchedPairsAreRejectedNamingTheKey) {
  ir::Graph teacher = models::build("jet_tagger", {{"num_classes", "3"}}, 1);
  ir::Graph student = models::build("jet_tagger", {}, 1);
  train::DistillOptions o;
  o.key_path = "experiments[0].stages[0].finetune.distill";
  try {
    train::check_distill_pair(teacher, student, o);
    FAIL() << "different output widths accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("finetune.distill.teacher"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 classes"), std::string::npos) << e.what();
  }
  ir::Graph t5 = models::build("jet_tagger", {}, 2);
  o.features = {{"fc9", "fc1", 1.0}};
  try {
    train::check_distill_pair(t5, student, o);
    FAIL() << "unknown feature name accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("features[0].student"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fc9"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos) << "lists valid names: " << e.what();
  }
  // Shapes that differ in more than the width: a 1x1 adapter cannot map them.
  ir::Graph cnn_t = models::build("small_cnn", {{"channels", "8"}}, 1);
  ir::Graph cnn_s = models::build("small_cnn", {{"channels", "4"}}, 1);
  o.features = {{cnn_s.nodes[0].name, cnn_t.outputs[0], 1.0}};
  EXPECT_THROW(train::check_distill_pair(cnn_t, cnn_s, o), ConfigError);
  // fit() without the teacher it needs.
  auto d = jets(300);
  train::TrainOptions t;
  t.distill = distill(0.9, 4.0);
  EXPECT_THROW(train::fit(student, d, t, 64, 0), ConfigError);
}

TEST_F(DistillTest, ConfigReadsDistillationAndRejectsBadValues) {
  auto ok = pipeline::parse_config(R"(
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets}
experiments:
  - name: a
    stages:
      - method: prune
        params: {ratio: 0.5}
        finetune: {epochs: 1, distill: {alpha: 0.5, temperature: 2, features: [{student: fc2, teacher: fc2, weight: 0.1}]}}
      - method: distillation
        params: {student: {zoo: jet_tagger}, teacher: {onnx: t.onnx}, alpha: 0.7}
        finetune: {epochs: 1}
)");
  const auto& ft = *ok.experiments[0].stages[0].finetune;
  ASSERT_TRUE(ft.distill);
  EXPECT_DOUBLE_EQ(ft.distill->alpha, 0.5);
  EXPECT_DOUBLE_EQ(ft.distill->temperature, 2.0);
  ASSERT_EQ(ft.distill->features.size(), 1u);
  EXPECT_EQ(ft.distill->features[0].student, "fc2");
  EXPECT_FALSE(ft.distill->teacher);
  EXPECT_EQ(ok.experiments[0].stages[1].method, "distill");

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"finetune: {epochs: 1, distill: {alpha: 1.5}}", "finetune.distill.alpha"},
      {"finetune: {epochs: 1, distill: {temperature: 0}}", "finetune.distill.temperature"},
      {"finetune: {epochs: 1, distill: {student: {zoo: mlp}}}", "student"},
      {"finetune: {epochs: 1, distill: {teacher: {zoo: mlp}}}", "train: {epochs: N}"},
      {"finetune: {epochs: 1, distill: {teacher: {onnx: t.onnx, train: {epochs: 1}}}}", "teacher.train"},
      {"finetune: {epochs: 1, distill: {features: [{student: fc1}]}}", "teacher"},
      {"finetune: {epochs: 1, distill: {alhpa: 0.5}}", "alpha"},
  };
  for (const auto& [finetune, word] : bad) {
    const std::string yaml = "model: {zoo: jet_tagger}\ndata: {dataset: synthetic-jets}\nexperiments:\n"
                             "  - {name: a, stages: [{method: prune, " + finetune + "}]}\n";
    try {
      pipeline::parse_config(yaml);
      ADD_FAILURE() << "accepted: " << finetune;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << finetune << ": " << e.what();
    }
  }
}

}  // namespace
}  // namespace squeeze
