#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "compress/prune_test_util.h"
#include "squeeze/compress/lowrank/lowrank.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/compress/registry.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "testing/asserts.h"
#include "testing/cli.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using compress::LowRank;
using compress::LowRankLayer;
using testing::random_input;
using testing::run_graph;

// A full-rank factorization computed in float64 and stored in float32: the outputs differ by
// float32 rounding of two matrix products instead of one.
constexpr double kExactRtol = 1e-4;
// Save/load and ONNX round trips store the same float32 tensors.
constexpr double kRoundTripRtol = 1e-6;

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  return (got - want).abs().max().item<double>() / want.abs().max().item<double>();
}

std::unique_ptr<compress::Pass> make_pass(const std::string& yaml) {
  auto p = pipeline::yaml_to_params(yaml, "lowrank.yaml");
  return compress::find_method("lowrank")->make(*p);
}

compress::PassResult run_pass(const ir::Graph& g, const std::string& yaml) {
  compress::PassContext ctx = testing::pass_context(nullptr, 32);
  return make_pass(yaml)->run(g, ctx);
}

int64_t count_op(const ir::Graph& g, const std::string& op) {
  int64_t n = 0;
  for (const auto& node : g.nodes) n += node.op == op;
  return n;
}

const LowRankLayer& layer(const std::vector<LowRankLayer>& plan, const std::string& node) {
  for (const auto& l : plan)
    if (l.node == node) return l;
  throw std::runtime_error("no layer " + node);
}

// A Linear 6 -> 8 whose weight has singular values 8, 4, 2, 1, 0.5, 0.25 (squares 64, 16, 4, 1,
// 0.25, 0.0625 of 85.3125: cumulative shares 0.750, 0.938, 0.985, 0.996, 0.9993, 1).
ir::Graph known_spectrum_graph() {
  ir::GraphBuilder b("spectrum", 0);
  std::string x = b.input("input", {6});
  std::string y = b.linear(x, 8, true, "fc");
  ir::Graph g = b.finish({y});
  at::manual_seed(3);
  at::Tensor q1 = std::get<0>(at::linalg_qr(at::randn({8, 6}, at::kDouble)));
  at::Tensor q2 = std::get<0>(at::linalg_qr(at::randn({6, 6}, at::kDouble)));
  at::Tensor s = at::tensor({8.0, 4.0, 2.0, 1.0, 0.5, 0.25}, at::kDouble);
  g.find_node("fc")->param("weight").value = (q1 * s.unsqueeze(0)).matmul(q2.t()).to(at::kFloat).contiguous();
  return g;
}

// --- exactness ---

void expect_full_rank_exact(const std::string& zoo) {
  ir::Graph g = models::build(zoo, {}, 0);
  ir::Graph f = g.clone();
  std::vector<std::string> names;
  for (const auto& n : g.nodes)
    if (n.op == "Linear" || n.op == "Conv") names.push_back(n.name);
  for (const auto& name : names) {
    const auto& w = g.find_node(name)->param("weight").value;
    LowRank::factorize(f, name, std::min(w.size(0), w.numel() / w.size(0)));
    EXPECT_EQ(f.find_node(name), nullptr);
    EXPECT_NE(f.find_node(name + "_lr1"), nullptr);
    EXPECT_NE(f.find_node(name + "_lr2"), nullptr);
  }
  EXPECT_EQ(f.outputs, g.outputs);
  EXPECT_EQ(f.nodes.size(), g.nodes.size() + names.size());
  at::Tensor x = random_input(g, 16);
  double err = relative_error(run_graph(f, x), run_graph(g, x));
  EXPECT_LT(err, kExactRtol) << zoo;
  std::cout << "[lowrank] full-rank " << zoo << ": relative error " << err << "\n";
}

TEST(LowRank, FullRankFactorizationIsExactOnMlp) { expect_full_rank_exact("mlp"); }

TEST(LowRank, FullRankFactorizationIsExactOnSmallCnnConvsAndLinears) {
  expect_full_rank_exact("small_cnn");
  // The conv pair keeps the original geometry: a 3x3 into r channels, then a 1x1 with the bias.
  ir::Graph g = models::build("small_cnn", {}, 0);
  LowRank::factorize(g, "conv2", 20);
  const auto* a = g.find_node("conv2_lr1");
  const auto* b = g.find_node("conv2_lr2");
  EXPECT_EQ(a->param("weight").value.sizes(), (at::IntArrayRef{20, 32, 3, 3}));
  EXPECT_FALSE(a->has_param("bias"));
  EXPECT_EQ(a->attr_ints("pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(b->param("weight").value.sizes(), (at::IntArrayRef{64, 20, 1, 1}));
  EXPECT_TRUE(b->has_param("bias"));
}

TEST(LowRank, TruncationErrorFollowsTheDroppedSingularValues) {
  // Rank r leaves the weight error || W - W_r ||_2 = s_r; on an identity input the output error
  // of the layer is exactly that matrix.
  ir::Graph g = known_spectrum_graph();
  ir::Graph f = g.clone();
  LowRank::factorize(f, "fc", 2);
  at::Tensor x = at::eye(6);
  at::Tensor diff = run_graph(f, x) - run_graph(g, x);
  EXPECT_NEAR(at::linalg_matrix_norm(diff, 2).item<double>(), 2.0, 1e-4);
}

// --- rank selection ---

TEST(LowRank, EnergyRatioAndRankPickTheExpectedRanks) {
  ir::Graph g = known_spectrum_graph();
  auto s = LowRank::singular_values(*g.find_node("fc"));
  ASSERT_EQ(s.size(), 6u);
  EXPECT_NEAR(s[0], 8.0, 1e-4);
  EXPECT_NEAR(s[5], 0.25, 1e-4);
  struct Case {
    std::string yaml;
    int64_t rank;
  };
  for (const Case& c : std::vector<Case>{{"energy: 0.7", 1},
                                         {"energy: 0.9", 2},
                                         {"energy: 0.95", 3},
                                         {"energy: 0.99", 4},
                                         {"energy: 1.0", 6},
                                         {"ratio: 0.5", 3},
                                         {"ratio: 0.34", 3},
                                         {"ratio: 1", 6},
                                         {"rank: 2", 2},
                                         {"rank: 1\nlayers: {fc: {energy: 0.9}}", 2},
                                         {"rank: 1\nlayers: {Linear: {rank: 3}}", 3}}) {
    auto pass = make_pass(c.yaml);
    auto plan = static_cast<LowRank&>(*pass).plan(g);
    EXPECT_EQ(layer(plan, "fc").rank, c.rank) << c.yaml;
  }
}

TEST(LowRank, PassFactorizesAndReportsParams) {
  ir::Graph g = models::build("mlp", {}, 0);
  auto r = run_pass(g, "ratio: 0.25\nexclude: [classifier]");
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(count_op(r.graph, "Linear"), 5);  // two layers factorized, the classifier kept
  EXPECT_NE(r.graph.find_node("classifier"), nullptr);
  EXPECT_LT(r.graph.num_params(), g.num_params());
  EXPECT_NE(r.summary.find("rank 64/256"), std::string::npos) << r.summary;  // 784 -> 256 at 0.25
  EXPECT_NE(r.summary.find("classifier (excluded)"), std::string::npos) << r.summary;
  std::cout << "[lowrank] mlp ratio 0.25: params " << g.num_params() << " -> " << r.graph.num_params() << "\n";
  at::Tensor x = random_input(g, 4);
  EXPECT_EQ(run_graph(r.graph, x).sizes(), run_graph(g, x).sizes());
}

// --- must not fire ---

TEST(LowRank, LayerWhereFactorizingSavesNothingIsLeftAlone) {
  ir::GraphBuilder b("tiny", 0);
  std::string x = b.input("input", {4});
  ir::Graph g = b.finish({b.linear(x, 4, true, "fc")});
  auto r = run_pass(g, "energy: 1.0");  // rank 4 of 4: 4 * 8 = 32 weights instead of 16
  EXPECT_FALSE(r.changed);
  EXPECT_NE(r.graph.find_node("fc"), nullptr);
  EXPECT_EQ(r.graph.nodes.size(), g.nodes.size());
  EXPECT_NE(r.summary.find("fc ("), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("min_saving"), std::string::npos) << r.summary;

  // Rank 1 saves half, under a min_saving of 0.6.
  auto r2 = run_pass(g, "rank: 1\nmin_saving: 0.6");
  EXPECT_FALSE(r2.changed);
  EXPECT_NE(r2.summary.find("saves 50% < min_saving 60%"), std::string::npos) << r2.summary;
  EXPECT_TRUE(run_pass(g, "rank: 1\nmin_saving: 0.4").changed);
}

TEST(LowRank, GroupedConvQuantizedAndMaskedLayersAreLeftAlone) {
  ir::GraphBuilder b("grouped", 0);
  std::string x = b.input("input", {8, 8, 8});
  x = b.conv(x, 16, 3, 1, 1, /*groups=*/2, true, "gconv");
  x = b.conv(x, 16, 3, 1, 1, /*groups=*/16, true, "dwconv");
  ir::Graph g = b.finish({x});
  auto r = run_pass(g, "rank: 1");
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.graph.nodes.size(), g.nodes.size());
  EXPECT_NE(r.summary.find("gconv (grouped conv (group 2))"), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("dwconv (grouped conv"), std::string::npos) << r.summary;

  ir::Graph mlp = models::build("mlp", {}, 0);
  std::vector<std::string> linears;
  for (const auto& n : mlp.nodes)
    if (n.op == "Linear") linears.push_back(n.name);
  auto& masked = mlp.find_node(linears[0])->param("weight");
  masked.mask = at::ones_like(masked.value);
  mlp.find_node(linears[1])->param("weight").qspec = ir::QuantSpec{};
  auto r2 = run_pass(mlp, "rank: 8\nexclude: [classifier]");
  EXPECT_FALSE(r2.changed);
  EXPECT_NE(r2.summary.find(linears[0] + " (masked"), std::string::npos) << r2.summary;
  EXPECT_NE(r2.summary.find(linears[1] + " (quantized)"), std::string::npos) << r2.summary;
}

// --- bad input ---

TEST(LowRank, BadParamsAreConfigErrorsNamingTheKey) {
  struct Bad {
    std::string yaml;
    std::vector<std::string> must_mention;
  };
  std::vector<Bad> cases = {
      {"rank: 0", {"rank", ">= 1"}},
      {"energy: 1.5", {"energy", "(0, 1]"}},
      {"energy: 0", {"energy", "(0, 1]"}},
      {"ratio: 0", {"ratio", "(0, 1]"}},
      {"ratio: 1.2", {"ratio"}},
      {"rank: 4\nenergy: 0.9", {"rank", "energy", "exactly one"}},
      {"energy: 0.9\nenrgy: 0.9", {"enrgy"}},
      {"energy: 0.9\nmin_saving: 1.5", {"min_saving"}},
      {"energy: 0.9\nlayers: {fc1: {rank: 2, ratio: 0.5}}", {"layers.fc1", "exactly one"}},
      {"energy: 0.9\nlayers: {fc1: 3}", {"layers.fc1"}},
      {"energy: 0.9\nlayers: {fc1: {energy: 2}}", {"layers.fc1.energy"}},
      {"energy: 0.9\nlayers: {fc1: {rnak: 2}}", {"rnak"}},
      {"min_saving: 0.2", {"rank", "ratio", "energy"}},
  };
  for (const auto& c : cases) {
    try {
      make_pass(c.yaml);
      ADD_FAILURE() << "no error for: " << c.yaml;
    } catch (const ConfigError& e) {
      for (const auto& word : c.must_mention)
        EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << word << " in: " << e.what();
    }
  }
}

TEST(LowRank, RankLargerThanALayerAllowsNamesTheLayerAndItsMaximum) {
  ir::Graph g = models::build("mlp", {}, 0);
  try {
    run_pass(g, "rank: 200");  // the second hidden layer (128 x 256) allows 128
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("rank"), std::string::npos) << what;
    EXPECT_NE(what.find("'linear2'"), std::string::npos) << what;
    EXPECT_NE(what.find("maximum rank is 128"), std::string::npos) << what;
  }
  try {
    run_pass(g, "energy: 0.9\nlayers: {classifier: {rank: 11}}");
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("layers.classifier.rank"), std::string::npos) << e.what();
  }
}

// --- the factorized graph elsewhere ---

TEST(LowRank, SqzAndOnnxRoundTripsKeepTheOutputs) {
  testing::TempDir dir;
  for (const char* zoo : {"mlp", "small_cnn"}) {
    ir::Graph g = models::build(zoo, {}, 0);
    auto r = run_pass(g, "ratio: 0.25");
    ASSERT_TRUE(r.changed) << zoo;
    at::Tensor x = random_input(g, 8);
    at::Tensor want = run_graph(r.graph, x);

    io::save_sqz(r.graph, dir.file("m.sqz"));
    ir::Graph s = io::load_sqz(dir.file("m.sqz"));
    EXPECT_EQ(s.nodes.size(), r.graph.nodes.size());
    EXPECT_LT(relative_error(run_graph(s, x), want), kRoundTripRtol) << zoo;

    io::export_onnx(r.graph, dir.file("m.onnx"));
    ir::Graph o = io::import_onnx(dir.file("m.onnx"));
    EXPECT_EQ(count_op(o, "Linear") + count_op(o, "Conv") + count_op(o, "Gemm") + count_op(o, "MatMul"),
              count_op(r.graph, "Linear") + count_op(r.graph, "Conv"));
    EXPECT_LT(relative_error(run_graph(o, x), want), kRoundTripRtol) << zoo;
  }
}

TEST(LowRank, StructuredPruningShrinksTheInnerRank) {
  ir::Graph g = models::build("mlp", {}, 0);
  auto r = run_pass(g, "rank: 32\nexclude: [classifier]");
  ASSERT_TRUE(r.changed);
  std::string inner;
  for (const auto& n : r.graph.nodes)
    if (n.name.size() > 4 && n.name.compare(n.name.size() - 4, 4, "_lr1") == 0) {
      inner = n.name;
      break;
    }
  ASSERT_FALSE(inner.empty());
  ASSERT_EQ(r.graph.find_node(inner)->param("weight").value.size(0), 32);

  compress::StructuredPruneOptions o;
  o.ratio = 0.5;
  o.scope = "local";
  compress::PassContext ctx = testing::pass_context(nullptr, 32);
  auto pruned = compress::StructuredPrune(o).run(r.graph, ctx);
  const auto* a = pruned.graph.find_node(inner);
  ASSERT_NE(a, nullptr);
  EXPECT_LT(a->param("weight").value.size(0), 32);
  std::string second = inner.substr(0, inner.size() - 4) + "_lr2";
  EXPECT_EQ(pruned.graph.find_node(second)->param("weight").value.size(1), a->param("weight").value.size(0));
  at::Tensor x = random_input(g, 4);
  EXPECT_EQ(run_graph(pruned.graph, x).sizes(), (at::IntArrayRef{4, 10}));
}

// --- a workflow through the CLI ---

TEST(LowRank, WorkflowStageWithFinetuningProducesAReport) {
  testing::TempDir dir;
  std::string yaml = R"(
seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 1200, batch_size: 128, split: {val: 0.1, test: 0.2}}
baseline:
  train: {epochs: 1, optimizer: adam, lr: 3.0e-3}
experiments:
  - name: lr25
    stages:
      - method: lowrank
        params: {ratio: 0.25, layers: {output: {rank: 2}}}
        finetune: {epochs: 1, lr: 1.0e-3}
output: {dir: OUT, latency_batches: [1]}
)";
  yaml.replace(yaml.find("OUT"), 3, dir.file("run"));
  std::ofstream(dir.file("w.yaml")) << yaml;
  auto r = testing::cli({"run", dir.file("w.yaml")});
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir.file("run/report.json"));
  auto rep = nlohmann::json::parse(in);
  const auto& res = rep["results"][0];
  EXPECT_LT(res["params"].get<int64_t>(), rep["baseline"]["params"].get<int64_t>());
  std::string summary = res["history"].back()["summary"].get<std::string>();
  EXPECT_NE(summary.find("factorized 4 of 4 layers"), std::string::npos) << summary;
  EXPECT_NE(summary.find("output rank 2/5"), std::string::npos) << summary;
  std::cout << "[lowrank] jet_tagger ratio 0.25: params " << rep["baseline"]["params"] << " -> " << res["params"]
            << ", accuracy " << rep["baseline"]["accuracy"] << " -> " << res["accuracy"] << "\n";
}

TEST(LowRank, IsListedAsAMethod) {
  const auto* m = compress::find_method("lowrank");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name, "lowrank");
  auto names = compress::method_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "lowrank"), names.end());
}

}  // namespace
}  // namespace squeeze
