// Latency figures carry their spread, and a measurement taken while the machine is loaded on
// purpose is flagged as noisy.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include <fstream>
#include <nlohmann/json.hpp>

#include "squeeze/deploy/latency.h"
#include "squeeze/report/report.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/env.h"
#include "cli.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

TEST(LatencyNoise, QuantilesAndSpreadOfRuns) {
  // 11 runs 100..200 us in steps of 10, shuffled: median 150, p10 110, p90 190.
  std::vector<double> us{150, 120, 200, 100, 180, 130, 110, 190, 170, 140, 160};
  deploy::LatencyStats s = deploy::summarize_runs(us, 4);
  EXPECT_EQ(s.runs, 11);
  EXPECT_DOUBLE_EQ(s.median_us, 150.0);
  EXPECT_DOUBLE_EQ(s.p10_us, 110.0);
  EXPECT_DOUBLE_EQ(s.p90_us, 190.0);
  EXPECT_DOUBLE_EQ(s.min_us, 100.0);
  EXPECT_DOUBLE_EQ(s.max_us, 200.0);
  EXPECT_NEAR(s.spread, 80.0 / 150.0, 1e-12);
  // The median's 95% interval: order statistics at ranks 5.5 -+ 1.96 sqrt(11) / 2, i.e. 2 and 8.
  EXPECT_DOUBLE_EQ(s.median_lo_us, 120.0);
  EXPECT_DOUBLE_EQ(s.median_hi_us, 180.0);
  EXPECT_TRUE(s.noisy);  // +-20% > +-5%
  EXPECT_NEAR(s.samples_per_s, 4e6 / 150.0, 1e-9);
}

TEST(LatencyNoise, TightRunsAreNotNoisy) {
  std::vector<double> us;
  for (int i = 0; i < 40; ++i) us.push_back(1000.0 + (i % 7));  // within 0.6%
  deploy::LatencyStats s = deploy::summarize_runs(us, 1);
  EXPECT_LT(s.spread, 0.01);
  EXPECT_FALSE(s.noisy);
}

TEST(LatencyNoise, MoreRunsNarrowTheInterval) {
  // The same spread of single runs (uniform over 100..200 us): uncertain from 11 runs, settled
  // from 1001 (the median's interval is then about +-2%).
  std::vector<double> few, many;
  for (int i = 0; i <= 10; ++i) few.push_back(100.0 + 10.0 * i);
  for (int i = 0; i <= 1000; ++i) many.push_back(100.0 + 0.1 * i);
  EXPECT_TRUE(deploy::summarize_runs(few, 1).noisy);
  deploy::LatencyStats s = deploy::summarize_runs(many, 1);
  EXPECT_NEAR(s.spread, 80.0 / 150.0, 1e-9);
  EXPECT_FALSE(s.noisy) << s.median_lo_us << " .. " << s.median_hi_us;
  EXPECT_LT(s.median_hi_us - s.median_lo_us, 0.1 * s.median_us);
}

TEST(LatencyNoise, PerRoundRatiosCancelASharedSlowSpell) {
  // The machine slows down 5x for half the rounds, for both models alike: every round's ratio
  // is 2, so the speedup is exact although each model's own runs spread widely.
  std::vector<double> base, other;
  for (int i = 0; i < 20; ++i) {
    const double slow = i % 2 ? 5.0 : 1.0;
    base.push_back(200.0 * slow);
    other.push_back(100.0 * slow);
  }
  deploy::LatencyStats s = deploy::summarize_runs(other, 1);
  EXPECT_TRUE(s.noisy);
  deploy::summarize_ratio(base, other, &s);
  EXPECT_DOUBLE_EQ(s.speedup, 2.0);
  EXPECT_DOUBLE_EQ(s.speedup_p25, 2.0);
  EXPECT_DOUBLE_EQ(s.speedup_p75, 2.0);
  EXPECT_FALSE(s.speedup_noisy);
}

TEST(LatencyNoise, ARatioThatChangesFromRoundToRoundIsUncertain) {
  // A slow spell that hits one model of a round and not the other.
  std::vector<double> base, other;
  for (int i = 0; i < 20; ++i) {
    base.push_back(200.0);
    other.push_back(i % 2 ? 100.0 : 160.0);
  }
  deploy::LatencyStats s;
  deploy::summarize_ratio(base, other, &s);
  EXPECT_TRUE(s.speedup_noisy);
  EXPECT_GT(s.speedup_p75, s.speedup_p25);
}

TEST(LatencyNoise, NoAdviceNeedsAQuietMachineButNamesTheThreads) {
  const std::string a = deploy::noise_advice(2);
  EXPECT_NE(a.find("2 threads"), std::string::npos) << a;
  EXPECT_NE(a.find("--threads 1"), std::string::npos) << a;
  const std::string b = deploy::noise_advice(1);
  EXPECT_NE(b.find("1 thread"), std::string::npos) << b;
  EXPECT_EQ(b.find("--threads 1"), std::string::npos) << b;
}

// Loads every core in bursts (busy threads that spin and sleep for random spells of a few
// milliseconds, two per core) while a model runs on all cores: some runs meet the bursts and
// some do not, which is what a shared machine does to a measurement. The measurement must say
// it is noisy rather than print a median as if it were sure.
TEST(LatencyNoise, AMachineLoadedOnPurposeIsFlagged) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int before = at::get_num_threads();
  env::set_threads(static_cast<int>(cores));
  ir::Graph g = models::build("small_cnn", {}, 0);
  std::atomic<bool> stop{false};
  std::vector<std::thread> load;
  for (unsigned i = 0; i < 2 * cores; ++i)
    load.emplace_back([&stop, i] {
      std::mt19937 rng(i);
      std::uniform_int_distribution<int> ms(1, 12);
      while (!stop) {
        auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms(rng));
        volatile double x = 1.0;
        while (std::chrono::steady_clock::now() < until) x = x * 1.0000001 + 1e-9;
        std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng)));
      }
    });
  deploy::LatencyOptions o;
  o.warmup = 2;
  o.fixed_runs = 40;
  auto stats = deploy::measure_latency({&g}, 64, o);  // runs of ~3 ms, as long as the bursts
  stop = true;
  for (auto& t : load) t.join();
  env::set_threads(before);
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].runs, 40);
  EXPECT_TRUE(stats[0].noisy) << "spread " << stats[0].spread << " (p10 " << stats[0].p10_us << " us, p90 "
                              << stats[0].p90_us << " us, median " << stats[0].median_us << " us)";
}

TEST(LatencyNoise, FixedRunsAreExactlyThatMany) {
  ir::Graph a = models::build("jet_tagger", {}, 0), b = models::build("mlp", {{"in_features", "16"}}, 0);
  deploy::LatencyOptions o;
  o.warmup = 0;
  o.fixed_runs = 9;
  o.budget_s = 0.0;
  auto stats = deploy::measure_latency({&a, &b}, 2, o);
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].runs, 9);
  EXPECT_EQ(stats[1].runs, 9);
  EXPECT_DOUBLE_EQ(stats[0].speedup, 1.0);  // the first model against itself
  EXPECT_GT(stats[1].speedup, 0.0);
  EXPECT_LE(stats[1].speedup_p25, stats[1].speedup);
  EXPECT_LE(stats[1].speedup, stats[1].speedup_p75);
}

// A workflow's report says how latency was measured (threads, warm-up, budget), gives each figure
// its spread and each speedup its quartiles, and marks in the table what is uncertain.
TEST(LatencyNoise, ReportsCarryTheMeasurementAndItsSpread) {
  testing::TempDir dir;
  std::ofstream(dir.file("w.yaml")) << R"(seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 600, split: {val: 0.1, test: 0.2}}
baseline: {train: {epochs: 1}}
experiments:
  - name: prune
    stages: [{method: prune, params: {kind: structured, ratio: 0.5}}]
output: {latency_batches: [4]}
)";
  auto r = testing::cli({"--threads", "2", "run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json rep = nlohmann::json::parse(std::ifstream(dir.file("out/report.json")));
  ASSERT_TRUE(rep.contains("latency_measurement")) << rep.dump(1);
  EXPECT_EQ(rep["latency_measurement"]["threads"], 1);  // the default, whatever training used
  EXPECT_EQ(rep["environment"]["threads"], 2);           // training threads are back afterwards
  const auto& b = rep["baseline"]["latency"]["batch4"];
  EXPECT_LE(b["p10_us"].get<double>(), b["median_us"].get<double>());
  EXPECT_LE(b["median_us"].get<double>(), b["p90_us"].get<double>());
  const auto& e = rep["results"][0]["latency"]["batch4"];
  EXPECT_LE(e["speedup_p25"].get<double>(), e["speedup"].get<double>());
  EXPECT_LE(e["speedup"].get<double>(), e["speedup_p75"].get<double>());
  EXPECT_LE(e["speedup_ci95"][0].get<double>(), e["speedup"].get<double>());
  EXPECT_LE(e["speedup"].get<double>(), e["speedup_ci95"][1].get<double>());
  EXPECT_LE(b["median_ci95_us"][0].get<double>(), b["median_us"].get<double>());
  EXPECT_DOUBLE_EQ(rep["results"][0]["speedup"]["batch4"].get<double>(), e["speedup"].get<double>());
  EXPECT_EQ(rep["latency_measurement"]["noisy"].get<bool>(),
            b["noisy"].get<bool>() || e["noisy"].get<bool>());
  // A figure is noisy exactly when its interval is wider than +-5%.
  const double lo = e["speedup_ci95"][0], hi = e["speedup_ci95"][1], sp = e["speedup"];
  EXPECT_EQ(e["noisy"].get<bool>(), (hi - lo) / 2 > 0.05 * sp);

  // latency_threads: 0 measures on all cores; a negative count is refused before any work.
  std::ofstream(dir.file("bad.yaml")) << R"(model: {zoo: jet_tagger}
output: {latency_threads: -1}
)";
  auto bad = testing::cli({"run", dir.file("bad.yaml"), "--out", dir.file("bad")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("output.latency_threads"), std::string::npos) << bad.err;
}

TEST(LatencyNoise, BenchTakesWarmupAndRunsAndMeasuresOnOneThreadByDefault) {
  auto r = testing::cli({"bench", "zoo:jet_tagger", "--batch", "2", "--runs", "7", "--warmup", "0", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["results"][0]["runs"], 7);
  for (const char* k : {"p10", "p90", "median"}) EXPECT_TRUE(j["results"][0]["latency_us"].contains(k)) << k;
  EXPECT_TRUE(j["results"][0].contains("spread"));
  EXPECT_EQ(j["noisy"].get<bool>(), j["results"][0]["noisy"].get<bool>());
  EXPECT_EQ(j.contains("advice"), j["noisy"].get<bool>());
  auto text = testing::cli({"bench", "zoo:jet_tagger", "--batch", "2", "--runs", "5"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("threads: 1 (bench's default"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("p90 us"), std::string::npos) << text.out;
  auto zero = testing::cli({"bench", "zoo:jet_tagger", "--runs", "0"});
  EXPECT_EQ(zero.code, 2);
}

}  // namespace
}  // namespace squeeze

namespace squeeze {
namespace {

report::LatencyDetail speedup_detail(double speedup, double lo, double hi) {
  report::LatencyDetail d;
  d.median_us = 100.0;
  d.speedup = speedup;
  d.speedup_lo = lo;
  d.speedup_hi = hi;
  d.noisy = (hi - lo) / 2 > deploy::kNoisyHalfWidth * speedup;
  return d;
}

// A model slower than the baseline is said up front, with its ratio; a faster one, or one whose
// interval reaches 1, is not; uncertain figures get one warning naming them, with the advice.
TEST(LatencyNoise, ASlowerModelAndUncertainFiguresAreSaidUpFront) {
  report::Report r;
  r.latency_measurement = report::LatencyMeasurement{};
  r.latency_measurement->threads = 1;
  r.latency_measurement->advice = "measured with 1 thread on 2 cores";
  r.baseline_latency["batch1"] = speedup_detail(1.0, 1.0, 1.0);
  r.baseline_latency["batch64"] = speedup_detail(1.0, 1.0, 1.0);
  report::ExperimentResult slow, fast, unsure;
  slow.name = "int8";
  slow.latency["batch1"] = speedup_detail(0.57, 0.55, 0.59);
  slow.latency["batch64"] = speedup_detail(1.8, 1.75, 1.85);
  fast.name = "pruned";
  fast.latency["batch1"] = speedup_detail(1.5, 1.45, 1.55);
  unsure.name = "lowrank";
  unsure.latency["batch1"] = speedup_detail(0.97, 0.85, 1.1);
  r.results = {slow, fast, unsure};
  std::vector<std::string> w = report::latency_warnings(r);
  ASSERT_EQ(w.size(), 2u) << ::testing::PrintToString(w);
  EXPECT_NE(w[0].find("'lowrank' at batch 1"), std::string::npos) << w[0];
  EXPECT_EQ(w[0].find("int8"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("measured with 1 thread on 2 cores"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("'int8' runs slower than the baseline: 0.57x at batch 1"), std::string::npos) << w[1];
  EXPECT_EQ(w[1].find("batch 64"), std::string::npos) << w[1];

  // Nothing uncertain, nothing slower: no warning at all; no measurement: none either.
  r.results = {fast};
  EXPECT_TRUE(report::latency_warnings(r).empty());
  r.latency_measurement.reset();
  r.results = {slow};
  EXPECT_TRUE(report::latency_warnings(r).empty());
}

}  // namespace
}  // namespace squeeze
