// The validation pipeline end to end through the CLI: steps applied cumulatively, the first one
// that breaks the guard rolled back, the history in every form of the report; and the bad
// pipeline inputs every pipeline must reject with exit code 2 before any training.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::cli;
using testing::read_all;
using testing::read_json;
using testing::run_pipeline;
using testing::TempDir;

TEST(ValidationPipeline, RollsBackTheStepThatBreaksTheGuardAndStops) {
  TempDir dir;
  auto r = run_pipeline(dir, R"(pipeline:
  type: validation
  preserve_accuracy: 0.9
  steps:
    - {name: light, method: prune, params: {ratio: 0.1}}
    - {name: heavy, method: prune, params: {ratio: 0.99}}
    - {name: low, method: lowrank, params: {rank: 8}, finetune: {epochs: 1}}
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  EXPECT_EQ(p["type"], "validation");
  EXPECT_NEAR(p["guard"]["max_drop"].get<double>(), 0.1, 1e-12);
  EXPECT_EQ(p["guard"]["relative"], true);
  EXPECT_EQ(p["guard"]["written"], "preserve_accuracy: 0.9");
  const double base_val = p["baseline_val_accuracy"].get<double>();
  EXPECT_NEAR(p["guard"]["min_val_accuracy"].get<double>(), 0.9 * base_val, 1e-12);

  // One entry per step tried: the harmless step kept, the 99% pruning rolled back, the rest
  // never tried.
  ASSERT_EQ(p["history"].size(), 2u) << p.dump(1);
  const json& kept = p["history"][0];
  const json& rolled = p["history"][1];
  EXPECT_EQ(kept["name"], "light");
  EXPECT_EQ(kept["status"], "kept");
  EXPECT_EQ(kept["passed_guard"], true);
  EXPECT_EQ(rolled["name"], "light>heavy");
  EXPECT_EQ(rolled["status"], "rolled back");
  EXPECT_EQ(rolled["passed_guard"], false);
  EXPECT_NE(rolled["reason"].get<std::string>().find("more than the guard allows"),
            std::string::npos);
  EXPECT_LT(rolled["val_accuracy"].get<double>(), p["guard"]["min_val_accuracy"].get<double>());
  ASSERT_EQ(rolled["steps"].size(), 2u);
  EXPECT_EQ(rolled["steps"][1]["method"], "prune");
  EXPECT_DOUBLE_EQ(rolled["steps"][1]["params"]["ratio"].get<double>(), 0.99);
  for (const json& h : p["history"]) {
    for (const char* key : {"val_accuracy", "val_drop", "val_relative_drop", "accuracy",
                            "size_bytes", "compression_ratio", "reason", "checkpoint", "history"})
      EXPECT_TRUE(h.contains(key)) << key;
    EXPECT_NEAR(h["val_drop"].get<double>(), base_val - h["val_accuracy"].get<double>(), 1e-12);
    EXPECT_TRUE(fs::exists(dir.file("out/" + h["checkpoint"].get<std::string>())))
        << h["checkpoint"];
  }
  EXPECT_EQ(p["history"][1]["history"].size(), 2u);  // both stages from the baseline
  ASSERT_EQ(p["skipped"].size(), 1u);
  EXPECT_EQ(p["skipped"][0]["name"], "low");
  EXPECT_NE(p["outcome"].get<std::string>().find("Step 2 (heavy) broke the guard"),
            std::string::npos);

  // The result is the model after the last kept step, a normal results entry with artifacts.
  EXPECT_EQ(p["best"]["name"], "light");
  EXPECT_EQ(p["best"]["passed_guard"], true);
  ASSERT_EQ(rep["results"].size(), 1u);
  const json& res = rep["results"][0];
  EXPECT_EQ(res["name"], "light");
  EXPECT_EQ(res["stages"], json::array({"prune"}));
  EXPECT_NEAR(res["accuracy"].get<double>(), kept["accuracy"].get<double>(), 1e-9);
  EXPECT_EQ(res["size_bytes"], kept["size_bytes"]);
  EXPECT_TRUE(fs::exists(dir.file("out/" + res["artifacts"]["checkpoint"].get<std::string>())));
  EXPECT_TRUE(rep["warnings"].empty()) << rep["warnings"].dump();

  const std::string md = read_all(dir.file("out/report.md"));
  EXPECT_NE(md.find("## Pipeline: validation"), std::string::npos);
  EXPECT_NE(md.find("rolled back"), std::string::npos);
  const std::string html = read_all(dir.file("out/report.html"));
  EXPECT_NE(html.find("<h2>Pipeline: validation</h2>"), std::string::npos);
  EXPECT_NE(html.find(">#2</text>"), std::string::npos);  // the rolled-back candidate on the chart
}

TEST(ValidationPipeline, AFirstStepThatBreaksTheGuardIsStillSavedAndReported) {
  TempDir dir;
  auto r = run_pipeline(dir, R"(pipeline:
  type: validation
  guard: {max_drop: 0.05}
  steps: [{name: heavy, method: prune, params: {ratio: 0.99}}, {method: prune, params: {ratio: 0.995}}]
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  ASSERT_EQ(p["history"].size(), 1u);
  EXPECT_EQ(p["history"][0]["status"], "rolled back");
  EXPECT_EQ(p["best"]["name"], "heavy");
  EXPECT_EQ(p["best"]["passed_guard"], false);
  ASSERT_EQ(rep["results"].size(), 1u);
  EXPECT_EQ(rep["results"][0]["name"], "heavy");
  EXPECT_TRUE(fs::exists(dir.file("out/" + p["best"]["checkpoint"].get<std::string>())));
  ASSERT_EQ(rep["warnings"].size(), 1u);
  EXPECT_NE(rep["warnings"][0].get<std::string>().find("no candidate satisfies the guard"),
            std::string::npos);
  EXPECT_NE(p["outcome"].get<std::string>().find(
                "the baseline is the last model that satisfies the guard"),
            std::string::npos);
}

TEST(PipelineInput, BadInputExitsWithTwoNamingTheKeyBeforeAnyTraining) {
  const std::vector<testing::RefusedCase> cases = {
      {"pipeline: {type: validaton, guard: {max_drop: 0.01}, steps: [{method: prune}]}\n",
       {"pipeline.type", "did you mean 'validation'?"}},
      {"pipeline: {type: validation, guard: {max_drop: 0.01}, step: [{method: prune}]}\n",
       {"missing required key 'steps' in pipeline"}},
      {"pipeline: {type: combinations, steps: [{method: prune}], max_candidate: 3}\n",
       {"unknown key 'max_candidate' in pipeline", "did you mean 'max_candidates'?"}},
      {"pipeline: {type: combinations, steps: []}\n",
       {"pipeline.steps: expected at least one step"}},
      {"pipeline: {type: validation, guard: {max_drop: -0.1}, steps: [{method: prune}]}\n",
       {"pipeline.guard", "not even the baseline"}},
      {"pipeline: {type: validation, preserve_accuracy: 1.01, steps: [{method: prune}]}\n",
       {"pipeline.preserve_accuracy"}},
      // A step's parameters are checked by its method before the data is loaded.
      {"pipeline: {type: combinations, steps: [{method: prune, params: {ratio: 2}}]}\n",
       {"pipeline.steps[0].params.ratio"}},
      {"pipeline: {type: combinations, steps: [{method: prune, params: {schedule: polynomial}}]}\n",
       {"pipeline.steps[0] (prune)", "finetune"}},
      {"pipeline: {type: hep-jet}\n", {"pipeline", "missing required key 'guard'"}},
  };
  testing::expect_refused_before_training(cases);
  // A validation split too small to hold a sample: found when the data is loaded, still before
  // any training.
  TempDir dir;
  dir.write("w.yaml", R"(model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 300, split: {val: 0.001}}
baseline: {train: {epochs: 1}}
pipeline: {type: validation, guard: {max_drop: 0.01}, steps: [{method: prune}]}
)");
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("no validation samples"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("out")));
}

}  // namespace
}  // namespace squeeze
