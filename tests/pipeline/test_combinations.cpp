// The combinations pipeline: the enumeration (order, bound, orderings that cannot run) and, end
// to end through the CLI, the candidates tried from the baseline, skipped repeats, the ranking
// and a guard that no candidate satisfies.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "squeeze/pipeline/combinations.h"
#include "squeeze/util/params.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using pipeline::CombinationPlan;
using pipeline::plan_combinations;
using pipeline::StepSpec;
using testing::read_json;
using testing::run_pipeline;
using testing::TempDir;

std::vector<StepSpec> steps(const std::vector<std::string>& methods) {
  std::vector<StepSpec> out;
  for (const auto& m : methods) {
    StepSpec s;
    s.name = m;
    s.stage.method = m;
    s.stage.params = std::make_shared<Params>();
    out.push_back(s);
  }
  return out;
}

TEST(CombinationPlan, EveryOrderingOfEverySubsetSmallestFirst) {
  CombinationPlan p = plan_combinations(steps({"a", "b", "c"}), 64);
  EXPECT_EQ(p.total, 15);
  EXPECT_EQ(p.not_examined, 0);
  EXPECT_TRUE(p.skipped.empty());
  const std::vector<std::vector<size_t>> expected = {
      {0},    {1},       {2},       {0, 1},    {1, 0},    {0, 2},    {2, 0},   {1, 2},
      {2, 1}, {0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  EXPECT_EQ(p.run, expected);
  EXPECT_EQ(plan_combinations(steps({"a", "b", "c", "d"}), 1000).run.size(), 64u);
  EXPECT_EQ(plan_combinations(steps({"a", "b", "c", "d", "e"}), 1000).total, 325);
  EXPECT_EQ(plan_combinations(steps({"a"}), 64).run.size(), 1u);
}

TEST(CombinationPlan, BoundedByMaxCandidates) {
  CombinationPlan p = plan_combinations(steps({"a", "b", "c"}), 5);
  ASSERT_EQ(p.run.size(), 5u);
  EXPECT_EQ(p.run.back(), (std::vector<size_t>{1, 0}));
  EXPECT_EQ(p.not_examined, 10);
  // 21 steps: more orderings than fit in 64 bits; only the first few are generated.
  CombinationPlan big = plan_combinations(steps(std::vector<std::string>(21, "prune")), 3);
  EXPECT_EQ(big.run.size(), 3u);
  EXPECT_EQ(big.total, INT64_MAX);
}

TEST(CombinationPlan, ANewStudentOnlyComesFirst) {
  std::vector<StepSpec> s = steps({"prune", "distill"});
  s[1].stage.params->set("student", Value::scalar("zoo:mlp"));
  CombinationPlan p = plan_combinations(s, 64);
  EXPECT_EQ(p.run, (std::vector<std::vector<size_t>>{{0}, {1}, {1, 0}}));
  ASSERT_EQ(p.skipped.size(), 1u);
  EXPECT_EQ(p.skipped[0].first, (std::vector<size_t>{0, 1}));
  EXPECT_NE(p.skipped[0].second.find("new student"), std::string::npos);
}

TEST(CombinationsPipeline, TriesEachOrderingFromTheBaselineAndRanks) {
  TempDir dir;
  auto r = run_pipeline(dir, R"(pipeline:
  type: combinations
  guard: {max_drop: 0.3}
  steps:
    - {method: prune, params: {ratio: 0.3}}
    - {name: int8, method: quantize, params: {mode: ptq, weight_bits: 8, act_bits: 8}}
    - {method: lowrank, params: {rank: 16, exclude: [output]}}
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  EXPECT_EQ(p["type"], "combinations");
  // 15 orderings. Pruning and low rank leave quantized layers alone, and low rank leaves pruned
  // (masked) layers alone: the orderings where they would follow those find nothing to do and
  // are skipped, with the orderings extending them.
  std::set<std::string> tried, skipped;
  for (const json& c : p["candidates"]) tried.insert(c["name"].get<std::string>());
  for (const json& s : p["skipped"]) skipped.insert(s["name"].get<std::string>());
  EXPECT_EQ(tried, (std::set<std::string>{"prune", "int8", "lowrank", "prune>int8", "lowrank>prune",
                                          "lowrank>int8", "lowrank>prune>int8"}))
      << p.dump(1);
  EXPECT_EQ(skipped.size(), 8u) << p.dump(1);
  EXPECT_TRUE(skipped.count("int8>prune"));
  EXPECT_TRUE(skipped.count("prune>lowrank"));
  EXPECT_NE(p["outcome"].get<std::string>().find("7 of 15 orderings tried, 8 skipped"),
            std::string::npos);

  // Ranks 1..7: passing candidates first, by compression ratio; the best is in results.
  const json& cands = p["candidates"];
  std::vector<const json*> by_rank(cands.size());
  for (const json& c : cands) by_rank.at(c["rank"].get<size_t>() - 1) = &c;
  for (size_t i = 0; i + 1 < by_rank.size(); ++i) {
    const json& a = *by_rank[i];
    const json& b = *by_rank[i + 1];
    EXPECT_TRUE(a["passed_guard"].get<bool>() || !b["passed_guard"].get<bool>());
    if (a["passed_guard"] == b["passed_guard"] && a["passed_guard"].get<bool>())
      EXPECT_GE(a["compression_ratio"].get<double>(), b["compression_ratio"].get<double>());
  }
  const json& best = *by_rank[0];
  EXPECT_EQ(p["best"]["name"], best["name"]);
  ASSERT_EQ(rep["results"].size(), 1u);
  EXPECT_EQ(rep["results"][0]["name"], best["name"]);
  EXPECT_DOUBLE_EQ(rep["results"][0]["compression_ratio"].get<double>(),
                   best["compression_ratio"].get<double>());
  // Every candidate applied its own stages from the baseline (prefixes reused, not repeated).
  for (const json& c : cands) {
    EXPECT_EQ(c["history"].size(), c["steps"].size()) << c["name"];
    EXPECT_TRUE(fs::exists(dir.file("out/" + c["checkpoint"].get<std::string>())))
        << c["checkpoint"];
  }
}

TEST(CombinationsPipeline, AGuardNothingSatisfiesStillSavesTheBestAndReportsEveryCandidate) {
  TempDir dir;
  auto r = run_pipeline(dir, R"(pipeline:
  type: combinations
  preserve_accuracy: 0.95
  steps:
    - {name: heavy, method: prune, params: {ratio: 0.99}}
    - {name: rank1, method: lowrank, params: {rank: 1}}
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  const json& cands = p["candidates"];
  ASSERT_GE(cands.size(), 3u) << p.dump(
      1);  // heavy, rank1, rank1>heavy (heavy>rank1: masked, skipped)
  double best_val = -1;
  for (const json& c : cands) {
    EXPECT_EQ(c["passed_guard"], false) << c["name"];
    EXPECT_NE(c["reason"].get<std::string>().find("more than the guard allows"), std::string::npos)
        << c["reason"];
    EXPECT_TRUE(fs::exists(dir.file("out/" + c["checkpoint"].get<std::string>())));
    best_val = std::max(best_val, c["val_accuracy"].get<double>());
  }
  // The best candidate by validation accuracy is still the result, saved with its artifacts,
  // and the report says it does not satisfy the guard.
  EXPECT_EQ(p["best"]["passed_guard"], false);
  EXPECT_DOUBLE_EQ(cands[p["best"]["index"].get<size_t>()]["val_accuracy"].get<double>(), best_val);
  ASSERT_EQ(rep["results"].size(), 1u);
  EXPECT_EQ(rep["results"][0]["name"], p["best"]["name"]);
  EXPECT_TRUE(fs::exists(
      dir.file("out/" + rep["results"][0]["artifacts"]["checkpoint"].get<std::string>())));
  ASSERT_FALSE(rep["warnings"].empty());
  EXPECT_NE(rep["warnings"].back().get<std::string>().find("no candidate satisfies the guard"),
            std::string::npos);
}

}  // namespace
}  // namespace squeeze
