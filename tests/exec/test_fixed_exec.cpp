// The fixed_point pass and the executor's exact fixed-point kernels: a small Dense layer computed
// by hand in fixed point, accumulator wrap and saturation, the pass firing and not firing,
// checkpoints keeping the types, and bad types rejected naming the key.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "squeeze/compress/quantize/fixed_point.h"
#include "squeeze/compress/registry.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/ir/fixed_point.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"

namespace squeeze {
namespace {

using compress::FixedPoint;
using compress::FixedPointOptions;

// input [3] -> Linear "fc" (2 outputs) with hand-picked weights.
ir::Graph dense() {
  ir::GraphBuilder b("dense");
  std::string x = b.input("input", {3});
  ir::Graph g = b.finish({b.linear(x, 2, true, "fc")});
  ir::Node& fc = *g.find_node("fc");
  fc.param("weight").value = at::tensor({0.5, -0.25, 1.0, 0.75, 0.5, -1.5}, at::kFloat).reshape({2, 3});
  fc.param("bias").value = at::tensor({0.125, -0.3}, at::kFloat);
  return g;
}

std::vector<float> run(const ir::Graph& g, std::vector<float> x) {
  exec::Executor ex(g);
  at::Tensor y = ex.forward(at::tensor(x, at::kFloat).reshape({1, -1})).contiguous();
  return std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
}

ir::Graph typed(const ir::Graph& g, FixedPointOptions o) {
  FixedPoint pass(o);
  compress::PassContext ctx;
  return pass.run(g, ctx).graph;
}

FixedPointOptions hand_options() {
  FixedPointOptions o;
  o.default_type = "ap_fixed<8,3>";
  o.input = "ap_fixed<6,2,AP_RND,AP_SAT>";
  return o;
}

const std::vector<float> kX = {1.3f, -0.7f, 2.2f};

TEST(FixedExec, DenseByHand) {
  ir::Graph g = typed(dense(), hand_options());
  const ir::Node& fc = *g.find_node("fc");
  // hls4ml's accumulator: W = 8 + 6 + 2, I = 3 + 2 + 2, then the bias: I 8, F max(9, 5).
  EXPECT_EQ(fc.attr_str(exec::kFixedAccumAttr, ""), "ap_fixed<17,8>");
  EXPECT_EQ(fc.attr_str(exec::kFixedInputAttr, ""), "ap_fixed<6,2,AP_RND,AP_SAT>");
  EXPECT_EQ(fc.param("weight").qspec->bits, 8);
  // Input (AP_RND, AP_SAT, step 1/16): 1.3 -> 1.3125, -0.7 -> -0.6875, 2.2 -> 1.9375 (saturated).
  // Bias -0.3 (AP_TRN, step 1/32) -> -0.3125.
  // y0 = 0.125 + 0.65625 + 0.171875 + 1.9375 = 2.890625 -> AP_TRN at 1/32: 2.875
  // y1 = -0.3125 + 0.984375 - 0.34375 - 2.90625 = -2.578125 -> floor: -2.59375
  auto y = run(g, kX);
  EXPECT_EQ(y, (std::vector<float>{2.875f, -2.59375f}));
  // The float model differs (it is not just float rounding that the emulation adds).
  auto yf = run(dense(), kX);
  EXPECT_NE(yf[0], y[0]);
}

TEST(FixedExec, AccumulatorWrapsAndSaturates) {
  // Accumulator ap_fixed<5,2> (step 1/8, [-2, 1.875]). Products at 1/8, AP_TRN:
  //   row 0: 0.65625 -> 5, 0.171875 -> 1, 1.9375 -> 15; bias 1   -> 22
  //   row 1: 0.984375 -> 7, -0.34375 -> -3, -2.90625 -> -24; bias -3
  FixedPointOptions o = hand_options();
  o.kinds.accum = "ap_fixed<5,2>";
  // Wrap: 22 - 32 = -10 -> -1.25; -24 wraps to 8 on conversion, -3 + 7 - 3 + 8 = 9 -> 1.125.
  EXPECT_EQ(run(typed(dense(), o), kX), (std::vector<float>{-1.25f, 1.125f}));
  // Saturation after each addition, in input order: 1, 6, 7, 22 -> 15 (1.875); -24 -> -16 on
  // conversion, -3, 4, 1, -15 (-1.875).
  o.kinds.accum = "ap_fixed<5,2,AP_TRN,AP_SAT>";
  EXPECT_EQ(run(typed(dense(), o), kX), (std::vector<float>{1.875f, -1.875f}));
}

TEST(FixedExec, PerLayerOverridesAndRelu) {
  ir::GraphBuilder b("mlp");
  std::string x = b.input("input", {4});
  x = b.act("Relu", b.linear(x, 8, true, "fc1"));
  ir::Graph g = b.finish({b.linear(x, 3, true, "out")});
  FixedPointOptions o;
  o.layers["out"].weight = "ap_fixed<4,1>";
  o.layers["fc*"].result = "ap_ufixed<10,4>";
  o.layers["Relu"].result = "ap_fixed<12,5,AP_RND,AP_SAT>";
  ir::Graph t = typed(g, o);
  EXPECT_EQ(t.find_node("out")->param("weight").qspec->rounding, "ap_fixed<4,1>");
  EXPECT_EQ(t.find_node("fc1")->param("weight").qspec->rounding, "ap_fixed<16,6>");
  EXPECT_EQ(t.find_node("fc1")->out_qspec->rounding, "ap_ufixed<10,4>");
  const ir::Node* relu = nullptr;
  for (const auto& n : t.nodes)
    if (n.op == "Relu") relu = &n;
  ASSERT_TRUE(relu && relu->out_qspec);
  EXPECT_EQ(relu->out_qspec->rounding, "ap_fixed<12,5,AP_RND,AP_SAT>");
  // The layer after the Relu reads the Relu's type.
  EXPECT_EQ(t.find_node("out")->attr_str(exec::kFixedInputAttr, ""), "ap_fixed<12,5,AP_RND,AP_SAT>");
  // Outputs are on the result grid (step 2^-10 for ap_fixed<16,6>).
  at::Tensor y = exec::Executor(t).forward(at::randn({16, 4}));
  EXPECT_TRUE(at::equal(at::round(y * 1024.0), y * 1024.0));
}

TEST(FixedExec, NothingToDoAndExclusions) {
  ir::GraphBuilder b("relu_only");
  std::string x = b.input("input", {4});
  ir::Graph g = b.finish({b.act("Relu", x)});
  FixedPoint pass(FixedPointOptions{});
  compress::PassContext ctx;
  auto r = pass.run(g, ctx);
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.graph.nodes.size(), g.nodes.size());
  for (const auto& n : r.graph.nodes) EXPECT_FALSE(n.out_qspec.has_value());
  // An excluded layer stays float and is run by the float kernel.
  FixedPointOptions o;
  o.exclude = {"fc"};
  auto r2 = pass.run(dense(), ctx);
  EXPECT_TRUE(r2.changed);
  FixedPoint excl(o);
  auto r3 = excl.run(dense(), ctx);
  EXPECT_FALSE(r3.changed);
  EXPECT_FALSE(r3.graph.find_node("fc")->param("weight").qspec.has_value());
  EXPECT_EQ(run(r3.graph, kX), run(dense(), kX));
}

TEST(FixedExec, CheckpointKeepsTypes) {
  FixedPointOptions o = hand_options();
  o.kinds.accum = "ap_fixed<5,2,AP_TRN,AP_SAT>";
  ir::Graph g = typed(dense(), o);
  auto path = std::filesystem::temp_directory_path() / "squeeze_fixed_test.sqz";
  io::save_sqz(g, path.string());
  ir::Graph back = io::load_sqz(path.string());
  std::filesystem::remove(path);
  const ir::Node& fc = *back.find_node("fc");
  ASSERT_TRUE(fc.param("weight").qspec && fixed::is_fixed(*fc.param("weight").qspec));
  EXPECT_EQ(*fixed::of_spec(*fc.param("weight").qspec), fixed::parse_type("ap_fixed<8,3>", "t"));
  EXPECT_EQ(fc.attr_str(exec::kFixedAccumAttr, ""), "ap_fixed<5,2,AP_TRN,AP_SAT>");
  EXPECT_EQ(run(back, kX), run(g, kX));
}

TEST(FixedExec, BadTypesNameTheKey) {
  const compress::MethodInfo* m = compress::find_method("fixed_point");
  ASSERT_NE(m, nullptr);
  auto expect_error = [&](const std::string& key, const std::string& value, const std::string& needle) {
    Params p("experiments[0].stages[0].params");
    p.set(key, Value::scalar(value));
    try {
      m->make(p);
      ADD_FAILURE() << key << ": " << value << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("weight", "ap_fixed<0,2>", "weight");
  expect_error("default", "ap_fixed<8,3,AP_NEAREST>", "AP_RND_CONV");
  expect_error("result", "ap_fixed<32,6>", "at most 24");
  expect_error("default", "ap_fixed<16", "quote the type");
  expect_error("wieght", "ap_fixed<8,3>", "weight");  // unknown key: did-you-mean
}

TEST(FixedExec, QatForwardHasStraightThroughGradients) {
  ir::Graph g = typed(dense(), hand_options());
  auto params = exec::trainable_parameters(g);
  exec::Executor ex(g);
  at::Tensor y = ex.forward(at::tensor(kX, at::kFloat).reshape({1, 3}), exec::Mode::kTrain);
  y.sum().backward();
  ASSERT_TRUE(g.find_node("fc")->param("weight").value.grad().defined());
  EXPECT_GT(g.find_node("fc")->param("weight").value.grad().abs().sum().item<float>(), 0.0f);
  exec::freeze(g);
}

}  // namespace
}  // namespace squeeze
