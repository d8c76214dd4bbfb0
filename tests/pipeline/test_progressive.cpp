// The progressive pipeline end to end through the CLI on tiny synthetic-jets data: a reachable
// target reached, a step that breaks the guard rolled back (the next step starts from the model
// kept before it), a guard nothing satisfies (the best candidate still saved and every candidate
// reported), the sensitivity analysis in every form of the report; and its bad input rejected
// with exit code 2 before any training.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/progressive.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::read_all;
using testing::read_json;
using testing::run_pipeline;
using testing::TempDir;

// Invariants of every progressive history: numbered in order, each entry kept or rolled back
// with the guard's reason and a note, its checkpoint saved; an entry's steps are the steps of the
// model kept before it plus its own (a rolled-back step never reappears).
void check_history(const TempDir& dir, const json& p) {
  std::vector<std::string> kept_steps;  // the kept model's steps (quantization rungs excepted)
  for (size_t i = 0; i < p["history"].size(); ++i) {
    const json& h = p["history"][i];
    EXPECT_EQ(h["index"].get<int64_t>(), static_cast<int64_t>(i));
    const std::string status = h["status"];
    EXPECT_TRUE(status == "kept" || status == "rolled back") << status;
    EXPECT_EQ(h["passed_guard"].get<bool>(), status == "kept") << h.dump(1);
    EXPECT_FALSE(h["note"].get<std::string>().empty());
    EXPECT_NE(h["reason"].get<std::string>().find("validation accuracy"), std::string::npos);
    EXPECT_TRUE(fs::exists(dir.file("out/" + h["checkpoint"].get<std::string>())));
    const json& steps = h["steps"];
    ASSERT_GE(steps.size(), 1u);
    EXPECT_EQ(steps.back()["name"], h["name"]);
    EXPECT_EQ(h["history"].size(), steps.size());
    if (steps.back()["method"] != "quantize") {
      // Built on the kept model: the steps before it are exactly the kept ones.
      std::vector<std::string> before;
      for (size_t k = 0; k + 1 < steps.size(); ++k) before.push_back(steps[k]["name"]);
      EXPECT_EQ(before, kept_steps) << h["name"];
      if (status == "kept") kept_steps.push_back(h["name"]);
    }
  }
}

TEST(ProgressivePipeline, ReachesAReachableTargetWithTheFewestSteps) {
  TempDir dir;
  auto r = run_pipeline(dir, R"(pipeline:
  type: progressive
  target_compression: 2.5
  guard: {max_drop: 0.1, relative: true}
  finetune: {epochs: 1, lr: 1.0e-3}
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  EXPECT_EQ(p["type"], "progressive");
  EXPECT_DOUBLE_EQ(p["target_compression"].get<double>(), 2.5);
  check_history(dir, p);
  // 8-bit quantization alone is projected past 2.5x, so low rank and pruning are not needed.
  ASSERT_GE(p["history"].size(), 1u);
  EXPECT_EQ(p["history"][0]["name"], "int8") << p.dump(1);
  EXPECT_EQ(p["history"][0]["status"], "kept");
  ASSERT_GE(p["skipped"].size(), 1u);
  EXPECT_EQ(p["skipped"][0]["name"], "lowrank");
  EXPECT_NE(p["skipped"][0]["reason"].get<std::string>().find("not needed"), std::string::npos);
  EXPECT_NE(p["outcome"].get<std::string>().find("Target 2.5x reached"), std::string::npos)
      << p["outcome"];
  // The result is the kept, most compressed candidate, at least at the target.
  EXPECT_EQ(p["best"]["passed_guard"], true);
  ASSERT_EQ(rep["results"].size(), 1u);
  EXPECT_GE(rep["results"][0]["compression_ratio"].get<double>(), 2.5);
  EXPECT_EQ(rep["results"][0]["name"], p["best"]["name"]);
  // The quantization sensitivity of each of the four Linear layers at 8, 6 and 4 bits.
  int quant = 0;
  for (const json& s : p["sensitivity"]) quant += s["method"] == "quantize" ? 1 : 0;
  EXPECT_EQ(quant, 4 * 3) << p["sensitivity"].dump(1);
}

TEST(ProgressivePipeline, RollsBackAStepThatBreaksTheGuardAndBuildsOnTheKeptModel) {
  TempDir dir;
  // Pruning only, towards a target it cannot reach: the ratio climbs until a rung breaks the
  // guard, which is rolled back and retried halfway.
  auto r = run_pipeline(dir, R"(pipeline:
  type: progressive
  target_compression: 50
  guard: {max_drop: 0.2, relative: true}
  methods: [unstructured]
  finetune: {epochs: 1, lr: 1.0e-3}
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  check_history(dir, p);
  int kept = 0, rolled = 0;
  for (const json& h : p["history"]) {
    EXPECT_EQ(h["steps"].back()["method"], "prune");
    (h["status"] == "kept" ? kept : rolled) += 1;
  }
  EXPECT_GE(kept, 1) << p.dump(1);
  EXPECT_GE(rolled, 1) << p.dump(1);
  // The first rolled-back rung is retried halfway, from the same kept model; the rungs above it
  // are named as not tried.
  for (size_t i = 0; i + 1 < p["history"].size(); ++i) {
    const json& h = p["history"][i];
    if (h["status"] != "rolled back") continue;
    EXPECT_NE(h["reason"].get<std::string>().find("more than the guard allows"), std::string::npos);
    const json& next = p["history"][i + 1];
    EXPECT_NE(next["name"].get<std::string>().find("gentler"), std::string::npos);
    EXPECT_NE(next["note"].get<std::string>().find("retry of the rolled-back"), std::string::npos);
    EXPECT_LT(next["steps"].back()["params"]["ratio"].get<double>(),
              h["steps"].back()["params"]["ratio"].get<double>());
    break;
  }
  EXPECT_NE(p["outcome"].get<std::string>().find("Target 50x not reached: got to"),
            std::string::npos)
      << p["outcome"];
  // The result is the last kept model (the most compressed that passes), not a rolled-back one.
  const json& best = p["history"][p["best"]["index"].get<size_t>()];
  EXPECT_EQ(best["status"], "kept");
  for (const json& h : p["history"])
    if (h["status"] == "kept")
      EXPECT_LE(h["compression_ratio"].get<double>(), best["compression_ratio"].get<double>());
  // report.md and report.html show the steps, their notes and the sensitivity table.
  const std::string md = read_all(dir.file("out/report.md"));
  for (const char* w :
       {"## Pipeline: progressive", "| step", "rolled back", "Sensitivity analysis", "target: 50x"})
    EXPECT_NE(md.find(w), std::string::npos) << w;
  const std::string html = read_all(dir.file("out/report.html"));
  EXPECT_NE(html.find("Sensitivity analysis"), std::string::npos);
  EXPECT_NE(html.find("retry of the rolled-back"), std::string::npos);
}

TEST(ProgressivePipeline, StructuredRungsRemoveChannelsOfTheLayersThatTolerateIt) {
  TempDir dir;
  auto r = run_pipeline(dir, R"(pipeline:
  type: progressive
  target_compression: 50
  guard: {max_drop: 0.2, relative: true}
  methods: [structured]
  finetune: {epochs: 1, lr: 1.0e-3}
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  check_history(dir, p);
  ASSERT_GE(p["history"].size(), 1u);
  EXPECT_EQ(p["history"][0]["name"], "channels25");
  // The logits' channels cannot be removed: no sensitivity row for that layer.
  int rows = 0;
  for (const json& s : p["sensitivity"]) {
    EXPECT_EQ(s["method"], "structured");
    EXPECT_NE(s["layer"], "output");
    ++rows;
  }
  EXPECT_EQ(rows, 3 * 3) << p["sensitivity"].dump(1);
  // A kept channel step leaves a smaller dense model: fewer parameters, none of them masked.
  int64_t params = rep["baseline"]["params"];
  for (const json& h : p["history"]) {
    const json& step = h["steps"].back();
    EXPECT_EQ(step["params"]["kind"], "structured");
    EXPECT_EQ(h["nonzero_params"], h["params"]);
    if (h["status"] != "kept") continue;
    EXPECT_LT(h["params"].get<int64_t>(), params) << h["name"];
    params = h["params"];
  }
}

TEST(ProgressivePipeline, WhenNothingPassesTheBestCandidateIsStillSavedAndEveryOneReported) {
  TempDir dir;
  // Fine-tuning with a learning rate that wrecks every model: no step can keep the guard.
  auto r = run_pipeline(dir, R"(pipeline:
  type: progressive
  target_compression: 2.5
  guard: {max_drop: 0.1}
  methods: [quantize]
  finetune: {epochs: 1, lr: 50, optimizer: sgd, keep_best: false}
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  check_history(dir, p);
  ASSERT_GE(p["history"].size(), 1u);
  for (const json& h : p["history"]) EXPECT_EQ(h["status"], "rolled back") << h.dump(1);
  EXPECT_EQ(p["best"]["passed_guard"], false);
  ASSERT_EQ(rep["results"].size(), 1u);
  EXPECT_TRUE(fs::exists(
      dir.file("out/" + rep["results"][0]["artifacts"]["checkpoint"].get<std::string>())));
  ASSERT_GE(rep["warnings"].size(), 1u);
  EXPECT_NE(rep["warnings"].back().get<std::string>().find("no candidate satisfies the guard"),
            std::string::npos);
  EXPECT_NE(p["outcome"].get<std::string>().find("no step kept"), std::string::npos)
      << p["outcome"];
}

TEST(ProgressiveCli, SqueezeRunWritesTheHistoryAndRejectsBadInputWithExitTwo) {
  TempDir dir;
  dir.write("w.yaml", std::string(testing::kPipelineHead) + R"(pipeline:
  type: progressive
  target_compression: 4.5
  guard: {max_drop: 0.1, relative: true}
  methods: [unstructured, quantize]
  finetune: {epochs: 1}
)");
  const testing::CliResult run =
      testing::run_binary("--threads 1 run " + dir.file("w.yaml") + " --out " + dir.file("out"));
  ASSERT_EQ(run.code, 0) << run.out;
  EXPECT_NE(run.out.find("pipeline progressive: Target 4.5x"), std::string::npos) << run.out;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  EXPECT_EQ(p["type"], "progressive");
  check_history(dir, p);
  ASSERT_GE(p["history"].size(), 1u);
  // Unstructured rungs first (until 8-bit quantization is projected to reach 4.5x), then int8.
  EXPECT_EQ(p["history"][0]["name"], "prune50");
  bool quantized = false;
  for (const json& h : p["history"]) quantized |= h["steps"].back()["method"] == "quantize";
  EXPECT_TRUE(quantized) << p.dump(1);
  std::set<std::string> methods;
  for (const json& s : p["sensitivity"]) methods.insert(s["method"].get<std::string>());
  EXPECT_EQ(methods, (std::set<std::string>{"quantize", "unstructured"}));

  dir.write("bad.yaml", std::string(testing::kPipelineHead) +
                            "pipeline: {type: progressive, target_compression: 0.5, "
                            "preserve_accuracy: 0.99}\n");
  const testing::CliResult bad =
      testing::run_binary("run " + dir.file("bad.yaml") + " --out " + dir.file("bad"));
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("pipeline.target_compression: expected a number > 1"), std::string::npos)
      << bad.out;
  EXPECT_FALSE(fs::exists(dir.file("bad")));
}

TEST(ProgressiveInput, BadInputExitsWithTwoNamingTheKeyBeforeAnyTraining) {
  const std::vector<testing::RefusedCase> cases = {
      {"pipeline: {type: progressive, target_compression: 0.5, guard: {max_drop: 0.01}}\n",
       {"pipeline.target_compression: expected a number > 1", "'0.5'"}},
      {"pipeline: {type: progressive, target_compression: 1, guard: {max_drop: 0.01}}\n",
       {"pipeline.target_compression: expected a number > 1"}},
      {"pipeline: {type: progressive, target_compresion: 8, guard: {max_drop: 0.01}}\n",
       {"unknown key 'target_compresion' in pipeline", "did you mean 'target_compression'?"}},
      {"pipeline: {type: progressive, guard: {max_drop: 0.01}}\n",
       {"missing required key 'target_compression' in pipeline"}},
      {"pipeline: {type: progressive, target_compression: 8, guard: {max_drop: 0.01}, "
       "methods: [prune, lowrnk]}\n",
       {"pipeline.methods[1]: expected one of lowrank, prune, structured, unstructured, quantize",
        "did you mean 'lowrank'?"}},
      {"pipeline: {type: progressive, target_compression: 8, guard: {max_drop: 0.01}, "
       "methods: [distill]}\n",
       {"pipeline.methods[0]: expected one of", "got 'distill'"}},
      {"pipeline: {type: progressive, target_compression: 8}\n",
       {"missing required key 'guard' in pipeline"}},
      {"pipeline: {type: progressive, target_compression: 8, guard: {max_drop: 1.5}}\n",
       {"pipeline.guard", "every model would pass"}},
      {"pipeline: {type: progressive, target_compression: 8, preserve_accuracy: 0.99, "
       "max_steps: 0}\n",
       {"pipeline.max_steps"}},
      {"pipeline: {type: progressive, target_compression: 8, preserve_accuracy: 0.99, "
       "finetune: {epochs: 1, lrr: 0.1}}\n",
       {"unknown key 'lrr' in pipeline.finetune", "did you mean 'lr'?"}},
  };
  testing::expect_refused_before_training(cases);
}

TEST(ProgressiveInput, ParsedOptionsKeepTheLadderOrder) {
  auto cfg = pipeline::parse_config(std::string(testing::kPipelineHead) + R"(pipeline:
  type: progressive
  target_compression: 6
  preserve_accuracy: 0.99
  methods: [quantize, pruning]
  max_steps: 5
  finetune: {epochs: 2, lr: 5.0e-4}
)");
  ASSERT_TRUE(cfg.pipeline && cfg.pipeline->progressive);
  const pipeline::ProgressiveOptions& o = *cfg.pipeline->progressive;
  EXPECT_DOUBLE_EQ(o.target_compression, 6.0);
  // prune (here by its alias) is both kinds of pruning; the ladder's order, not the order written.
  EXPECT_EQ(o.methods, (std::vector<std::string>{"structured", "unstructured", "quantize"}));
  EXPECT_EQ(o.max_steps, 5);
  EXPECT_EQ(o.finetune.epochs, 2);
  EXPECT_DOUBLE_EQ(o.finetune.lr, 5.0e-4);
  EXPECT_TRUE(o.uses("structured"));
  EXPECT_FALSE(o.uses("lowrank"));
  auto one = pipeline::parse_config(std::string(testing::kPipelineHead) +
                                    "pipeline: {type: progressive, target_compression: 6, "
                                    "preserve_accuracy: 0.99, methods: unstructured}\n");
  EXPECT_EQ(one.pipeline->progressive->methods, (std::vector<std::string>{"unstructured"}));
  auto all = pipeline::parse_config(std::string(testing::kPipelineHead) +
                                    "pipeline: {type: progressive, target_compression: 6, "
                                    "preserve_accuracy: 0.99}\n");
  EXPECT_EQ(all.pipeline->progressive->methods,
            (std::vector<std::string>{"lowrank", "structured", "unstructured", "quantize"}));
  EXPECT_THROW(pipeline::parse_config(std::string(testing::kPipelineHead) +
                                      "pipeline: {type: progressive, target_compression: -3, "
                                      "preserve_accuracy: 0.99}\n"),
               ConfigError);
}

}  // namespace
}  // namespace squeeze
