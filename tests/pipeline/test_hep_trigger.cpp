// The hep-trigger pipeline through the CLI on a small jet set: the search and the naive recipe
// both estimated and reported, the budget judged, an impossible budget ending with the closest
// model and its gap, and the inputs refused before any training.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "squeeze/deploy/export.h"
#include "squeeze/deploy/fpga.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/sqz.h"
#include "squeeze/pipeline/hep_trigger.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::read_json;
using testing::run_pipeline;
using testing::TempDir;

// Few candidates: two rungs of pruning, weights 6 then 5 bits, activations 10 then 8.
const char* kSmallSearch = R"(pipeline:
  type: hep-trigger
  target_latency_ns: 100
  clock_mhz: 200
  guard: {max_drop: 0.1, relative: false}
  sparsities: [0.5, 0.7]
  weight_bits: {min: 5, max: 6}
  activation_bits: [10, 8]
  finetune: {epochs: 1, lr: 2.0e-3}
)";

int64_t fpga_dsp(const json& c) { return c["fpga"]["dsp"].get<int64_t>(); }

TEST(HepTriggerPipeline, SearchAndNaiveRecipeEstimatedAndJudged) {
  TempDir dir;
  auto r = run_pipeline(dir, kSmallSearch);
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  EXPECT_EQ(p["type"], "hep-trigger");
  EXPECT_DOUBLE_EQ(p["budget"]["target_latency_ns"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(p["budget"]["clock_mhz"].get<double>(), 200.0);
  EXPECT_TRUE(p["budget"]["max_dsp"].is_null());
  EXPECT_EQ(p["budget"]["fits"], true);
  EXPECT_TRUE(p["budget"]["gap"].is_null());
  // The chosen model's generated C++ is in out/cpp and its batch-1 latency was measured (the
  // key is absent only when it could not be; a warning then says why).
  ASSERT_TRUE(p.contains("cpp_latency_ns")) << rep["warnings"].dump(1);
  EXPECT_GT(p["cpp_latency_ns"].get<double>(), 0.0);
  EXPECT_TRUE(fs::exists(dir.file("out/cpp/model.cpp")));
  EXPECT_TRUE(fs::exists(dir.file("out/cpp/golden.bin")));
  // Its own check program agrees bit for bit with squeeze's emulation of the chosen model.
  EXPECT_EQ(std::system(("make -s -C " + dir.file("out/cpp") + " test > /dev/null 2>&1").c_str()), 0);
  // Its QONNX export passes the ONNX checker (the exporter runs it) and re-imports with
  // identical outputs, its fixed-point layers intact.
  {
    const json& chosen = p["candidates"][p["best"]["index"].get<size_t>()];
    ir::Graph g = io::load_sqz(dir.file("out/" + chosen["checkpoint"].get<std::string>()));
    deploy::export_model(g, "qonnx", dir.file("chosen.qonnx.onnx"));
    ir::Graph back = io::import_onnx(dir.file("chosen.qonnx.onnx"));
    int fixed_layers = 0;
    for (const auto& n : back.nodes) fixed_layers += exec::is_fixed_layer(n);
    EXPECT_GT(fixed_layers, 0);
    at::manual_seed(5);
    at::Tensor x = at::randn({256, 16}) * 2.0;
    EXPECT_TRUE(at::equal(exec::Executor(back).forward(x), exec::Executor(g).forward(x)));
  }

  int search = 0, naive = 0;
  bool pruned70 = false, fixed = false;
  for (const json& c : p["candidates"]) {
    ASSERT_TRUE(c.contains("fpga")) << c["name"];
    for (const char* k : {"cycles", "latency_ns", "dsp", "lut"}) EXPECT_TRUE(c["fpga"].contains(k)) << k;
    EXPECT_DOUBLE_EQ(c["figures"]["dsp"].get<double>(), double(fpga_dsp(c)));
    EXPECT_TRUE(fs::exists(dir.file("out/" + c["checkpoint"].get<std::string>())));
    if (c["role"] == "search") {
      ++search;
      const std::string name = c["name"];
      if (name == "prune70" && c["passed_guard"] == true) pruned70 = true;
      if (c["steps"].back()["method"] == "fixed_point") fixed = true;
    } else {
      EXPECT_EQ(c["role"], "naive");
      ++naive;
    }
  }
  EXPECT_GE(search, 4);
  EXPECT_TRUE(pruned70) << p["candidates"].dump(1);
  EXPECT_TRUE(fixed);
  // 90% and 6 bits fits a 100 ns budget without DSP or LUT limits: the second recipe is not run.
  ASSERT_EQ(naive, 1);

  // results: the chosen model, and the naive reference beside it (unless it was chosen), each
  // with its estimate and the per-class AUC and rejection.
  ASSERT_GE(rep["results"].size(), 1u);
  ASSERT_TRUE(rep["baseline"].contains("fpga"));
  for (const json& res : rep["results"]) {
    ASSERT_TRUE(res.contains("fpga")) << res["name"];
    ASSERT_TRUE(res.contains("hep")) << res["name"];
    ASSERT_EQ(res["hep"]["per_class"].size(), 5u);
    for (const json& c : res["hep"]["per_class"]) {
      EXPECT_GT(c["auc"].get<double>(), 0.5);
      EXPECT_TRUE(c.contains("rejection_at_50"));
    }
  }
  const json& best = p["candidates"][p["best"]["index"].get<size_t>()];
  EXPECT_EQ(rep["results"][0]["name"], best["name"]);
  EXPECT_EQ(rep["results"][0]["fpga"]["dsp"], best["fpga"]["dsp"]);
  // The chosen one passes the guard and has no more DSPs than any other passing candidate that
  // fits.
  EXPECT_EQ(best["passed_guard"], true);
  for (const json& c : p["candidates"])
    if (c["passed_guard"] == true && c["figures"]["budget_overshoot"].get<double>() == 0.0)
      EXPECT_LE(fpga_dsp(best), fpga_dsp(c)) << c["name"];
}

TEST(HepTriggerPipeline, WithoutNaiveOnlyTheSearchRuns) {
  TempDir dir2;
  auto r = run_pipeline(dir2, R"(pipeline:
  type: hep-trigger
  target_latency_ns: 100
  guard: {max_drop: 0.1, relative: false}
  sparsities: [0.5]
  weight_bits: {min: 6, max: 6}
  activation_bits: [10]
  naive: false
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir2.file("out/report.json"));
  for (const json& c : rep["pipeline"]["candidates"]) EXPECT_EQ(c["role"], "search") << c["name"];
  EXPECT_EQ(rep["results"].size(), 1u);
}

TEST(HepTriggerPipeline, ImpossibleBudgetSavesTheClosestModelAndReportsTheGap) {
  TempDir dir;
  auto r = run_pipeline(dir, R"(pipeline:
  type: hep-trigger
  target_latency_ns: 1
  max_dsp: 0
  guard: {max_drop: 0.1, relative: false}
  sparsities: [0.5]
  weight_bits: {min: 6, max: 6}
  activation_bits: [12]
)");
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& b = rep["pipeline"]["budget"];
  EXPECT_EQ(b["fits"], false);
  const std::string gap = b["gap"];
  EXPECT_NE(gap.find("latency"), std::string::npos) << gap;
  EXPECT_NE(gap.find("> 1 ns"), std::string::npos) << gap;
  bool warned = false;
  for (const json& w : rep["warnings"])
    warned |= w.get<std::string>().find("fits the FPGA budget") != std::string::npos;
  EXPECT_TRUE(warned) << rep["warnings"].dump();
  // The closest model is the result, saved with its artifacts; no candidate has a smaller
  // overshoot among those that pass the guard.
  ASSERT_GE(rep["results"].size(), 1u);
  EXPECT_TRUE(fs::exists(dir.file("out/" + rep["results"][0]["artifacts"]["checkpoint"].get<std::string>())));
  const json& p = rep["pipeline"];
  const double best = p["candidates"][p["best"]["index"].get<size_t>()]["figures"]["budget_overshoot"];
  EXPECT_GT(best, 0.0);
  for (const json& c : p["candidates"])
    if (c["passed_guard"] == true) EXPECT_GE(c["figures"]["budget_overshoot"].get<double>(), best);
  // The naive recipe did not fit either, so its second rung ran too.
  int naive = 0;
  for (const json& c : p["candidates"]) naive += c["role"] == "naive";
  EXPECT_EQ(naive, 2);
}

TEST(HepTriggerPipeline, BadBudgetsRefusedBeforeTraining) {
  const std::string g = "  guard: {max_drop: 0.01}\n";
  testing::expect_refused_before_training({
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  clock_mhz: 0\n" + g,
       {"pipeline.clock_mhz", "expected a number > 0", "'0'"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: -5\n" + g,
       {"pipeline.target_latency_ns", "> 0", "-5"}},
      {"pipeline:\n  type: hep-trigger\n" + g, {"missing required key 'target_latency_ns'"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n", {"missing required key 'guard'"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  precision: ap_fixed<0,0>\n" + g,
       {"pipeline.precision", "ap_fixed<0,0>", "at least 1"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  max_dsp: -1\n" + g,
       {"pipeline.max_dsp"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  reuse_factor: 0\n" + g,
       {"pipeline.reuse_factor"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  max_dsps: 10\n" + g,
       {"max_dsps", "did you mean 'max_dsp'?"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  weight_bits: {min: 1}\n" + g,
       {"pipeline.weight_bits.min"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  weight_bits: {min: 6, max: 4}\n" + g,
       {"pipeline.weight_bits", "min (6) is above max (4)"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  activation_bits: [8, 10]\n" + g,
       {"pipeline.activation_bits", "descending"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  sparsities: [0.9, 0.5]\n" + g,
       {"pipeline.sparsities", "ascending"}},
      {"pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n  sparsities: [1.0]\n" + g,
       {"pipeline.sparsities[0]", "(0, 1)"}},
  });
  // output.fpga at another clock than the budget's
  TempDir dir;
  dir.write("w.yaml", std::string(testing::kPipelineHead) + "output: {fpga: {clock_mhz: 300}}\n" +
                          "pipeline:\n  type: hep-trigger\n  target_latency_ns: 100\n" + g);
  auto r = testing::cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  EXPECT_EQ(r.code, 2) << r.err;
}

TEST(HepTriggerPipeline, BudgetOvershootAndGap) {
  pipeline::HepTriggerOptions o;
  o.target_latency_ns = 50;
  o.max_dsp = 10;
  deploy::FpgaEstimate e;
  e.latency_ns = 40;
  e.cycles = 8;
  e.dsp = 10;
  e.lut = 1000;
  EXPECT_EQ(pipeline::budget_overshoot(e, o), 0.0);
  EXPECT_EQ(pipeline::budget_gap(e, o), "");
  e.latency_ns = 60;
  e.dsp = 15;
  EXPECT_NEAR(pipeline::budget_overshoot(e, o), 0.5, 1e-12);  // DSP 50% over, latency 20%
  EXPECT_EQ(pipeline::budget_gap(e, o), "latency 60 ns > 50 ns (8 cycles at 200 MHz); DSP 15 > 10");
}

}  // namespace
}  // namespace squeeze
