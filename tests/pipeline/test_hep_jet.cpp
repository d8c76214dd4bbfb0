// The hep-jet pipeline: class weights (inverse frequency, in the trainer's loss), the rare
// classes found and guarded per class, and its inputs refused before any training.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/hep_jet.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/log.h"
#include "testing/asserts.h"
#include "testing/cli.h"
#include "testing/data.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::read_json;
using testing::TempDir;

TEST(HepJet, InverseFrequencyWeights) {
  // 6 of class 0, 2 of class 1, 0 of class 2: N / (K n_c), absent classes 0.
  at::Tensor y = at::tensor({0, 0, 0, 0, 0, 0, 1, 1}, at::kLong);
  std::vector<double> w = pipeline::inverse_frequency_weights(y, 3);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_NEAR(w[0], 8.0 / (3 * 6), 1e-12);
  EXPECT_NEAR(w[1], 8.0 / (3 * 2), 1e-12);
  EXPECT_EQ(w[2], 0.0);
}

// The trainer's class weights change what it learns: a weight on class 4 alone makes the model
// predict class 4 for (nearly) everything; without weights it does not.
TEST(HepJet, ClassWeightsSteerTheTrainer) {
  log::set_level(log::Level::kWarn);
  auto splits = testing::jets(3000);
  auto recall4 = [&](const std::vector<double>& weights) {
    ir::Graph g = models::build("jet_tagger", {}, 0);
    train::TrainOptions o;
    o.epochs = 2;
    o.lr = 3e-3;
    o.class_weights = weights;
    train::fit(g, splits, o, 128, 0);
    train::Metrics m = train::evaluate(g, splits.test, 256);
    auto it = std::find(m.classes.begin(), m.classes.end(), 4);
    return m.per_class_accuracy[it - m.classes.begin()];
  };
  const double weighted = recall4({0, 0, 0, 0, 1});
  const double plain = recall4({});
  EXPECT_GT(weighted, 0.95);
  EXPECT_LT(plain, 0.9);
  // One weight per output, each finite and >= 0.
  ir::Graph g = models::build("jet_tagger", {}, 0);
  train::TrainOptions bad;
  bad.class_weights = {1, 1};
  EXPECT_THROW(train::fit(g, splits, bad, 128, 0), InputError);
  bad.class_weights = {1, 1, -1, 1, 1};
  EXPECT_THROW(train::fit(g, splits, bad, 128, 0), ConfigError);
  log::set_level(log::Level::kInfo);
}

// 8000 jets with class t at 4%: a step that prunes 97% of the weights without fine-tuning costs
// the rare class its recall. With the per-class guard the step is rolled back; without it (only
// the total-accuracy guard, loose here) the same step is kept.
const char* kRareHead = R"(seed: 3
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 8000, rare_fraction: 0.04, split: {val: 0.2, test: 0.2}}
baseline: {train: {epochs: 4, lr: 3.0e-3}}
output: {latency: false}
)";

json run_rare(const TempDir& dir, const std::string& pipeline, int* code) {
  dir.write("w.yaml", std::string(kRareHead) + pipeline);
  auto r = testing::cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  *code = r.code;
  if (r.code != 0) {
    ADD_FAILURE() << r.err;
    return json();
  }
  return read_json(dir.file("out/report.json"));
}

TEST(HepJet, RareClassGuardRollsBackAStepThatCostsTheRareClass) {
  const std::string steps = R"(  steps:
    - {name: light, method: prune, params: {ratio: 0.3, scope: local}, finetune: {epochs: 1, lr: 1.0e-3}}
    - {name: heavy, method: prune, params: {ratio: 0.97, scope: local}, finetune: {epochs: 0}}
)";
  TempDir dir;
  int code = 0;
  json rep = run_rare(dir, R"(pipeline:
  type: hep-jet
  guard: {max_drop: 0.5, relative: false}
  rare_tolerance: 0.02
)" + steps, &code);
  ASSERT_EQ(code, 0);
  const json& p = rep["pipeline"];
  ASSERT_EQ(p["rare_classes"].size(), 1u) << p.dump(1);
  EXPECT_EQ(p["rare_classes"][0]["name"], "t");
  EXPECT_LT(p["rare_classes"][0]["train_share"].get<double>(), 0.05);
  ASSERT_EQ(p["class_weights"].size(), 5u);
  EXPECT_GT(p["class_weights"][2].get<double>(), 4.0);  // about 1 / (5 * 0.04)
  ASSERT_EQ(p["history"].size(), 2u);
  EXPECT_EQ(p["history"][0]["status"], "kept");
  const json& heavy = p["history"][1];
  EXPECT_EQ(heavy["status"], "rolled back") << heavy.dump(1);
  EXPECT_NE(heavy["reason"].get<std::string>().find("rare class t validation recall"),
            std::string::npos)
      << heavy["reason"];
  EXPECT_LT(heavy["figures"]["val_recall.t"].get<double>(),
            p["rare_classes"][0]["min_val_recall"].get<double>());
  EXPECT_EQ(rep["results"][0]["name"], "light");
  EXPECT_TRUE(rep["results"][0].contains("hep"));

  // The same steps without the per-class guard: the heavy step passes the loose total guard.
  TempDir off;
  rep = run_rare(off, R"(pipeline:
  type: hep-jet
  guard: {max_drop: 0.5, relative: false}
  preserve_rare_classes: false
)" + steps, &code);
  ASSERT_EQ(code, 0);
  EXPECT_FALSE(rep["pipeline"].contains("rare_classes"));
  ASSERT_EQ(rep["pipeline"]["history"].size(), 2u);
  EXPECT_EQ(rep["pipeline"]["history"][1]["status"], "kept");
  EXPECT_EQ(rep["results"][0]["name"], "light>heavy");
}

TEST(HepJet, BadInputRefusedBeforeTraining) {
  testing::expect_refused_before_training({
      {"pipeline: {type: hep-jet}\n", {"missing required key 'guard'"}},
      {"pipeline: {type: hep-jet, guard: {max_drop: 0.02}, rare_tolerance: 1.5}\n",
       {"pipeline.rare_tolerance", "[0, 1)"}},
      {"pipeline: {type: hep-jet, guard: {max_drop: 0.02}, rare_below: 0}\n",
       {"pipeline.rare_below", "(0, 1)"}},
      {"pipeline: {type: hep-jet, guard: {max_drop: 0.02}, rare_tolerence: 0.1}\n",
       {"rare_tolerence", "did you mean 'rare_tolerance'?"}},
      {"pipeline: {type: hep-jet, guard: {max_drop: 0.02}, class_weights: balanced}\n",
       {"pipeline.class_weights", "inverse_frequency"}},
      {"pipeline: {type: hep-jet, guard: {max_drop: 0.02}, rare_classes: [x]}\n",
       {"pipeline.rare_classes[0]", "no class 'x'", "g, q, t, w, z"}},
      // All five classes equal in kPipelineHead's data: none is under 5%.
      {"pipeline: {type: hep-jet, guard: {max_drop: 0.02}}\n",
       {"pipeline.rare_below", "no class has less than 5%"}},
      {"pipeline: {type: hep-jet, guard: {max_drop: 0.02}, preserve_rare_classes: false, "
       "rare_tolerance: 0.1}\n",
       {"preserve_rare_classes: false"}},
  });
}

}  // namespace
}  // namespace squeeze
