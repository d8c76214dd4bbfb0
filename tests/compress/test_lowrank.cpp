#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "compress/prune_test_util.h"
#include "io/onnx_test_util.h"
#include "squeeze/compress/lowrank/lowrank.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/compress/registry.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/builder.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/train/trainer.h"
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

// x [N, 16, 5] -> MatMul(W [12, 16], x) -> [N, 12, 5], W an initializer: the importer keeps a
// constant on the left as MatMul + Constant (a constant on the right becomes a Linear).
std::string left_matmul_onnx(const testing::TempDir& dir) {
  testing::OnnxMaker m;
  at::manual_seed(5);
  m.input("x", {-1, 16, 5}).output("y").init("W", at::randn({12, 16}));
  m.node("MatMul", {"W", "x"}, {"y"}, "mix");
  return dir.write("left.onnx", m.bytes());
}

// A hand-written (or checkpointed) graph with y = x B, B [16, 12] made by a Constant node.
ir::Graph right_matmul_graph() {
  ir::GraphBuilder b("right", 0);
  std::string x = b.input("input", {16});
  std::map<std::string, ir::Param> p;
  at::manual_seed(6);
  p["value"].value = at::randn({16, 12});
  p["value"].trainable = false;
  std::string c = b.node("Constant", {}, {}, p, "B");
  return b.finish({b.node("MatMul", {x, c}, {}, {}, "mm")});
}

std::vector<std::string> nodes_ending(const ir::Graph& g, const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& n : g.nodes)
    if (n.name.size() > suffix.size() && n.name.compare(n.name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(n.name);
  return out;
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

TEST(LowRank, FullRankFactorizationIsExactOnVitTinyLinears) { expect_full_rank_exact("vit_tiny"); }

TEST(LowRank, ImportedOnnxMatMulWithAnInitializerOnTheRightIsFactorizedAsALinear) {
  // MatMul(x, W) + Add(b), as PyTorch exports nn.Linear without Gemm: imported as one Linear.
  testing::TempDir dir;
  testing::OnnxMaker m;
  at::manual_seed(4);
  m.input("x", {-1, 16}).output("y").init("W", at::randn({16, 12})).init("b", at::randn({12}));
  m.node("MatMul", {"x", "W"}, {"xw"}, "fc");
  m.node("Add", {"xw", "b"}, {"y"}, "fc_bias");
  ir::Graph g = io::import_onnx(dir.write("right.onnx", m.bytes()));
  ASSERT_EQ(count_op(g, "Linear"), 1);
  ASSERT_EQ(count_op(g, "MatMul"), 0);
  const std::string fc = g.nodes.at(0).name;
  ir::Graph full = g.clone();
  LowRank::factorize(full, fc, 12);
  at::Tensor x = random_input(g, 8);
  EXPECT_LT(relative_error(run_graph(full, x), run_graph(g, x)), kExactRtol);
  auto r = run_pass(g, "rank: 3");  // 3 * 28 = 84 weights instead of 192
  EXPECT_TRUE(r.changed) << r.summary;
  EXPECT_EQ(count_op(r.graph, "Linear"), 2);
  EXPECT_LT(r.graph.num_params(), g.num_params());
}

TEST(LowRank, MatMulWithAConstantOnTheLeftBecomesTwoMatMuls) {
  testing::TempDir dir;
  ir::Graph g = io::import_onnx(left_matmul_onnx(dir));
  ASSERT_EQ(count_op(g, "MatMul"), 1);
  ASSERT_EQ(count_op(g, "Constant"), 1);
  ASSERT_EQ(count_op(g, "Linear"), 0);
  const std::string mm = g.nodes.at(g.nodes.size() - 1).name;  // the MatMul, after its Constant
  ASSERT_EQ(g.find_node(mm)->op, "MatMul");
  auto plan = static_cast<LowRank&>(*make_pass("energy: 1.0")).plan(g);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].op, "MatMul");
  EXPECT_EQ(plan[0].m, 12);
  EXPECT_EQ(plan[0].n, 16);

  // Full rank: the same function; the old Constant is gone, two new ones feed two MatMuls.
  ir::Graph f = g.clone();
  LowRank::factorize(f, mm, 12);
  EXPECT_EQ(count_op(f, "MatMul"), 2);
  EXPECT_EQ(count_op(f, "Constant"), 2);
  EXPECT_EQ(f.find_node(mm + "_lr1_weight")->param("value").value.sizes(), (at::IntArrayRef{12, 16}));
  EXPECT_EQ(f.find_node(mm + "_lr2_weight")->param("value").value.sizes(), (at::IntArrayRef{12, 12}));
  at::Tensor x = random_input(g, 4);
  double err = relative_error(run_graph(f, x), run_graph(g, x));
  EXPECT_LT(err, kExactRtol);
  std::cout << "[lowrank] full-rank left MatMul: relative error " << err << "\n";

  // The pass at rank 4: 4 * 28 = 112 weights instead of 192, and the output keeps its shape.
  auto r = run_pass(g, "rank: 4");
  ASSERT_TRUE(r.changed) << r.summary;
  EXPECT_EQ(r.graph.num_params(), 112);
  EXPECT_EQ(run_graph(r.graph, x).sizes(), (at::IntArrayRef{4, 12, 5}));
  EXPECT_NE(r.summary.find(mm + " rank 4/12"), std::string::npos) << r.summary;

  // ONNX round trip of the factorized graph.
  io::export_onnx(r.graph, dir.file("left_lr.onnx"));
  ir::Graph o = io::import_onnx(dir.file("left_lr.onnx"));
  EXPECT_EQ(count_op(o, "MatMul"), 2);
  EXPECT_LT(relative_error(run_graph(o, x), run_graph(r.graph, x)), kRoundTripRtol);
}

TEST(LowRank, MatMulWithAConstantOnTheRightBecomesTwoLinears) {
  ir::Graph g = right_matmul_graph();
  ir::Graph f = g.clone();
  LowRank::factorize(f, "mm", 12);
  EXPECT_EQ(count_op(f, "Linear"), 2);
  EXPECT_EQ(count_op(f, "MatMul"), 0);
  EXPECT_EQ(count_op(f, "Constant"), 0);
  EXPECT_EQ(f.find_node("mm_lr1")->param("weight").value.sizes(), (at::IntArrayRef{12, 16}));
  EXPECT_TRUE(f.find_node("mm_lr1")->param("weight").trainable);
  at::Tensor x = random_input(g, 4);
  EXPECT_LT(relative_error(run_graph(f, x), run_graph(g, x)), kExactRtol);
  auto r = run_pass(g, "ratio: 0.25");  // rank 3 of 12
  ASSERT_TRUE(r.changed) << r.summary;
  EXPECT_EQ(r.graph.num_params(), 3 * (16 + 12));
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
  auto s = LowRank::singular_values(g, "fc");
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

TEST(LowRank, MatMulsWithoutAFactorizableConstantAreLeftAlone) {
  // Attention's MatMuls of two computed values are not layers at all.
  ir::Graph vit = models::build("vit_tiny", {}, 0);
  for (const auto& l : static_cast<LowRank&>(*make_pass("energy: 0.9")).plan(vit)) EXPECT_NE(l.op, "MatMul") << l.node;

  // A constant read by two MatMuls, and a constant that is not a matrix.
  ir::GraphBuilder b("consts", 0);
  std::string x = b.input("input", {16});
  std::map<std::string, ir::Param> p2, p3;
  p2["value"].value = at::randn({16, 16});
  p3["value"].value = at::randn({1, 16, 16});
  std::string shared = b.node("Constant", {}, {}, p2, "shared");
  std::string cube = b.node("Constant", {}, {}, p3, "cube");
  std::string y = b.node("MatMul", {x, shared}, {}, {}, "mm1");
  y = b.node("MatMul", {y, shared}, {}, {}, "mm2");
  ir::Graph g = b.finish({b.node("MatMul", {y, cube}, {}, {}, "mm3")});
  auto r = run_pass(g, "rank: 1");
  EXPECT_FALSE(r.changed) << r.summary;
  EXPECT_EQ(r.graph.nodes.size(), g.nodes.size());
  EXPECT_NE(r.summary.find("mm1 (constant operand 'shared' is used elsewhere too)"), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("mm3 (constant operand 'cube' has 3 dimensions, not 2)"), std::string::npos)
      << r.summary;
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

// The ConfigError the pass throws on g with `yaml`; a test failure and "" when there is none.
std::string pass_error(const ir::Graph& g, const std::string& yaml) {
  try {
    run_pass(g, yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error: " << yaml;
  return "";
}

TEST(LowRank, PerLayerRankLargerThanTheLayerAllowsNamesKeyLayerAndMaximum) {
  ir::Graph g = models::build("mlp", {}, 0);
  for (const std::string pattern : {"classifier", "Linear"}) {
    std::string what = pass_error(g, "energy: 0.9\nlayers: {" + pattern + ": {rank: 11}}");
    for (const std::string& word : {"layers." + pattern + ".rank: 11", std::string("'classifier'"),
                                    std::string("maximum rank is 10")})
      EXPECT_NE(what.find(word), std::string::npos) << word << " in: " << what;
  }
}

TEST(LowRank, GlobalRankIsClampedWhereALayerIsSmallerAndSaidInTheSummary) {
  // mlp: linear1 256 x 784 (max 256), linear2 128 x 256 (max 128), classifier 10 x 128 (max 10).
  ir::Graph g = models::build("mlp", {}, 0);
  auto pass = make_pass("rank: 100");
  auto plan = static_cast<LowRank&>(*pass).plan(g);
  EXPECT_FALSE(layer(plan, "linear1").clamped);
  EXPECT_TRUE(layer(plan, "linear1").factorized);
  EXPECT_FALSE(layer(plan, "linear2").clamped);  // 100 fits, but 100 * 384 > 128 * 256: left alone
  EXPECT_FALSE(layer(plan, "linear2").factorized);
  EXPECT_TRUE(layer(plan, "classifier").clamped);
  EXPECT_EQ(layer(plan, "classifier").rank, 10);
  EXPECT_FALSE(layer(plan, "classifier").factorized);
  auto r = run_pass(g, "rank: 100");
  EXPECT_TRUE(r.changed);
  EXPECT_NE(r.summary.find("classifier (rank 100 is more than its maximum, clamped; rank 10 of 10 would add"),
            std::string::npos)
      << r.summary;

  // A per-layer rule takes its layers out of the global one: rank 200 clamps only linear2 then.
  EXPECT_NO_THROW(run_pass(g, "rank: 200\nlayers: {classifier: {ratio: 0.5}}"));
}

TEST(LowRank, GlobalRankLargerThanEveryLayerAllowsIsAnError) {
  ir::Graph g = models::build("mlp", {}, 0);
  const std::string too_large = "rank: 300 is larger than every layer allows";
  EXPECT_NE(pass_error(g, "rank: 300").find(too_large + " (the largest maximum rank is 256, of layer 'linear1')"),
            std::string::npos);
  // Layers under a per-layer rule or excluded do not count.
  EXPECT_NE(pass_error(g, "rank: 300\nlayers: {linear1: {energy: 0.9}}")
                .find(too_large + " (the largest maximum rank is 128, of layer 'linear2')"),
            std::string::npos);
  EXPECT_NE(pass_error(g, "rank: 200\nexclude: [linear1]").find("rank: 200 is larger than every layer allows"),
            std::string::npos);
  EXPECT_NO_THROW(run_pass(g, "rank: 200"));
}

TEST(LowRank, BadInputThroughTheCliExitsWithTwoNamingTheKeyPath) {
  struct Bad {
    std::string params;
    std::vector<std::string> must_mention;
  };
  const std::string key = "experiments[0].stages[0].params.";
  std::vector<Bad> cases = {
      {"{energy: 1.5}", {key + "energy", "(0, 1]"}},
      {"{energy: 0}", {key + "energy", "(0, 1]"}},
      {"{energy: -0.2}", {key + "energy", "(0, 1]"}},
      {"{ratio: 2}", {key + "ratio", "(0, 1]"}},
      {"{energy: 0.9, layers: {linear2: {energy: 1.01}}}", {key + "layers.linear2.energy", "(0, 1]"}},
      {"{rank: 0}", {key + "rank", ">= 1"}},
      {"{rank: 300}", {key + "rank", "300", "every layer", "256", "linear1"}},
      {"{energy: 0.9, layers: {linear2: {rank: 129}}}", {key + "layers.linear2.rank", "'linear2'", "maximum rank is 128"}},
  };
  for (const auto& c : cases) {
    testing::TempDir dir;
    // No data and no training: the errors come from the options or from the model's layers.
    std::string yaml = "model: {zoo: mlp}\nexperiments:\n  - name: lr\n    stages: [{method: lowrank, params: " +
                       c.params + "}]\n";
    auto r = testing::cli({"run", dir.write("w.yaml", yaml), "--out", dir.file("out")});
    EXPECT_EQ(r.code, 2) << c.params << "\n" << r.err;
    // The message starts with the full key path, once.
    EXPECT_NE(r.err.find("error: " + c.must_mention[0] + ": "), std::string::npos) << r.err;
    for (const auto& word : c.must_mention)
      EXPECT_NE(r.err.find(word), std::string::npos) << word << " in: " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("out/report.json"))) << c.params;
  }
}

// --- the factorized graph elsewhere ---

TEST(LowRank, SqzAndOnnxRoundTripsKeepTheOutputs) {
  testing::TempDir dir;
  for (const char* zoo : {"mlp", "small_cnn", "vit_tiny"}) {
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
    auto layers = [](const ir::Graph& x) {
      return count_op(x, "Linear") + count_op(x, "Conv") + count_op(x, "Gemm") + count_op(x, "MatMul");
    };
    EXPECT_EQ(layers(o), layers(r.graph)) << zoo;
    EXPECT_LT(relative_error(run_graph(o, x), want), kRoundTripRtol) << zoo;
  }
}

// Structured pruning through the method registry (method: prune, kind: structured): every inner
// rank r is a channel like any other, so each _lr1 / _lr2 pair narrows together.
void expect_structured_pruning_narrows_the_inner_ranks(const std::string& zoo, const std::string& lowrank) {
  ir::Graph g = models::build(zoo, {}, 0);
  auto r = run_pass(g, lowrank);
  ASSERT_TRUE(r.changed) << r.summary;
  std::vector<std::string> inner = nodes_ending(r.graph, "_lr1");
  ASSERT_FALSE(inner.empty());
  std::map<std::string, int64_t> rank_before;
  for (const auto& n : inner) rank_before[n] = r.graph.find_node(n)->param("weight").value.size(0);

  auto prune = compress::find_method("prune")->make(
      *pipeline::yaml_to_params("kind: structured\nratio: 0.5\nscope: local", "prune.yaml"));
  compress::PassContext ctx = testing::pass_context(nullptr, 32);
  auto pruned = prune->run(r.graph, ctx);
  ASSERT_TRUE(pruned.changed) << pruned.summary;
  EXPECT_NO_THROW(ir::verify(pruned.graph));
  EXPECT_LT(pruned.graph.num_params(), r.graph.num_params());
  for (const auto& n : inner) {
    const auto* a = pruned.graph.find_node(n);
    const auto* b = pruned.graph.find_node(n.substr(0, n.size() - 4) + "_lr2");
    ASSERT_TRUE(a && b) << n;
    int64_t rank = a->param("weight").value.size(0);
    EXPECT_LT(rank, rank_before[n]) << zoo << " " << n;
    EXPECT_EQ(b->param("weight").value.size(1), rank) << n;
  }
  at::Tensor x = random_input(g, 4);
  at::Tensor y = run_graph(pruned.graph, x);
  EXPECT_EQ(y.sizes(), run_graph(g, x).sizes());
  EXPECT_TRUE(y.isfinite().all().item<bool>());
  std::cout << "[lowrank] " << zoo << " {" << lowrank << "} then structured 0.5: params " << g.num_params() << " -> "
            << r.graph.num_params() << " -> " << pruned.graph.num_params() << "\n";
}

TEST(LowRank, StructuredPruningShrinksTheInnerRank) {
  expect_structured_pruning_narrows_the_inner_ranks("mlp", "{rank: 32, exclude: [classifier]}");
  expect_structured_pruning_narrows_the_inner_ranks("small_cnn", "{ratio: 0.25, exclude: [fc2]}");
  expect_structured_pruning_narrows_the_inner_ranks("vit_tiny", "{ratio: 0.25, exclude: [Conv, head]}");
}

// Post-training and quantization-aware quantization of a factorized graph: both layers of every
// pair get a weight spec, the graph verifies and computes close to its float self.
constexpr double kInt8Rtol = 0.05;  // 8-bit weights and activations, relative to the output scale

TEST(LowRank, PtqAndQatQuantizeBothLayersOfEveryPair) {
  at::manual_seed(0);
  for (const char* zoo : {"mlp", "small_cnn"}) {
    ir::Graph g = models::build(zoo, {}, 0);
    auto r = run_pass(g, "ratio: 0.25");
    ASSERT_TRUE(r.changed) << zoo;
    std::vector<int64_t> sample(g.inputs[0].shape.begin() + 1, g.inputs[0].shape.end());
    data::Splits d = testing::random_splits(sample, 128);
    at::Tensor x = d.test.x;
    at::Tensor want = run_graph(r.graph, x);
    for (const char* mode : {"ptq", "qat"}) {
      compress::QuantizeOptions o;
      o.mode = mode;
      o.observer_update_every = 1;
      compress::Quantize pass(o);
      compress::PassContext ctx = testing::pass_context(&d, 32);
      ir::Graph q = pass.run(r.graph, ctx).graph;
      if (std::string(mode) == "qat") {
        train::TrainOptions t;
        t.epochs = 1;
        t.lr = 1e-4;
        train::fit(q, d, t, 32, 0, pass.finetune_hook());
      }
      pass.finalize(q);
      EXPECT_NO_THROW(ir::verify(q));
      for (const auto& n : nodes_ending(q, "_lr1")) {
        for (const auto& name : {n, n.substr(0, n.size() - 4) + "_lr2"}) {
          const ir::Param& w = q.find_node(name)->param("weight");
          ASSERT_TRUE(w.qspec) << zoo << " " << mode << " " << name;
          EXPECT_TRUE(quant::on_grid(w.value, *w.qspec)) << name;
        }
      }
      at::Tensor got = run_graph(q, x);
      double err = relative_error(got, want);
      std::cout << "[lowrank] " << zoo << " ratio 0.25 then " << mode << " int8: relative error " << err << "\n";
      if (std::string(mode) == "ptq") EXPECT_LT(err, kInt8Rtol) << zoo;
      EXPECT_TRUE(got.isfinite().all().item<bool>()) << zoo << " " << mode;
    }
  }
}

TEST(LowRank, InspectShowsTheTwoNewLayers) {
  testing::TempDir dir;
  ir::Graph g = models::build("mlp", {}, 0);
  auto r = run_pass(g, "rank: 16\nexclude: [classifier]");
  io::save_sqz(r.graph, dir.file("m.sqz"));
  auto out = testing::cli({"inspect", dir.file("m.sqz"), "--json"});
  ASSERT_EQ(out.code, 0) << out.err;
  auto j = nlohmann::json::parse(out.out);
  std::map<std::string, nlohmann::json> layers;
  for (const auto& l : j["layers"]) layers[l["name"].get<std::string>()] = l;
  ASSERT_TRUE(layers.count("linear1_lr1") && layers.count("linear1_lr2")) << out.out;
  EXPECT_EQ(layers["linear1_lr1"]["params"], 16 * 784);
  EXPECT_EQ(layers["linear1_lr2"]["params"], 256 * 16 + 256);
  EXPECT_EQ(layers.count("linear1"), 0u);
  EXPECT_EQ(j["total"]["params"], r.graph.num_params());
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
