// Eval-mode convolutions on prepacked oneDNN primitives (exec/packed_conv.cpp): the same results
// as the plain executor (at::convolution, NCHW) to float rounding over the geometries ONNX
// models use, the following activation fused where it alone reads the convolution, and the
// packing rebuilt when weights or input shapes change.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "squeeze/exec/executor.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using testing::node_times;
using testing::tensors_close;

using testing::plain_executor;

size_t index_of(const ir::Graph& g, const std::string& name) {
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].name == name) return i;
  ADD_FAILURE() << "no node " << name;
  return 0;
}

int64_t packed_count(const exec::Executor& ex) {
  int64_t n = 0;
  for (const auto& [impl, count] : ex.conv_implementations())
    if (impl != "at::convolution" && impl.rfind("quantized", 0) != 0) n += count;
  return n;
}

struct Geometry {
  const char* label;
  int64_t in, out, kernel, group, height, width;
  std::vector<int64_t> strides, pads, dilations;
};

struct Case {
  Geometry geometry;
  const char* activation;  // "" for none
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(info.param.geometry.label) + "_" +
         (*info.param.activation ? info.param.activation : "NoActivation");
}

// x -> Conv [-> activation] -> output.
ir::Graph conv_graph(const Case& c, uint64_t seed) {
  const Geometry& g = c.geometry;
  ir::GraphBuilder b("conv", seed);
  std::string x = b.input("x", {g.in, g.height, g.width});
  std::map<std::string, ir::Param> p;
  p["weight"].value = at::randn({g.out, g.in / g.group, g.kernel, g.kernel}) * 0.3;
  p["bias"].value = at::randn({g.out});
  std::map<std::string, ir::Attr> attrs = {{"strides", g.strides}, {"pads", g.pads}, {"dilations", g.dilations}, {"group", g.group}};
  std::string y = b.node("Conv", {x}, attrs, p, "conv");
  std::string act = c.activation;
  if (act == "Clip") y = b.node("Clip", {y}, {{"min", -0.5}, {"max", 1.5}}, {}, "act");
  else if (act == "LeakyRelu") y = b.node("LeakyRelu", {y}, {{"alpha", 0.2}}, {}, "act");
  else if (!act.empty()) y = b.act(act, y, "act");
  return b.finish({y});
}

class PackedConvCase : public ::testing::TestWithParam<Case> {};

TEST_P(PackedConvCase, MatchesPlainExecutionAndFusesTheActivation) {
  const Case& c = GetParam();
  at::manual_seed(7);
  ir::Graph g = conv_graph(c, 7);
  at::NoGradGuard no_grad;
  exec::Executor fast(g);
  for (int64_t batch : {1, 4, 1}) {  // a new shape packs again; the first is still cached
    at::Tensor x = at::randn({batch, c.geometry.in, c.geometry.height, c.geometry.width}) * 2;
    at::Tensor want = exec::Executor(g, plain_executor()).forward(x);
    at::Tensor got = fast.forward(x);
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_TRUE(tensors_close(got, want, 1e-4, 1e-5)) << "batch " << batch;
  }
  EXPECT_EQ(packed_count(fast), 1) << "the convolution should run prepacked";
  if (*c.activation) {
    at::Tensor x = at::randn({2, c.geometry.in, c.geometry.height, c.geometry.width});
    EXPECT_EQ(node_times(fast, x)[index_of(g, "act")], 0.0) << c.activation << " should be fused into the Conv";
  }
}

const Geometry kGeometries[] = {
    {"Plain3x3", 5, 7, 3, 1, 9, 11, {1, 1}, {1, 1, 1, 1}, {1, 1}},
    {"Stride2", 6, 8, 3, 1, 10, 9, {2, 2}, {1, 1, 1, 1}, {1, 1}},
    {"AsymmetricPads", 4, 6, 3, 1, 8, 8, {1, 2}, {0, 1, 2, 0}, {1, 1}},
    {"Dilated", 4, 5, 3, 1, 12, 12, {1, 1}, {2, 2, 2, 2}, {2, 2}},
    {"Grouped", 8, 12, 3, 4, 7, 7, {1, 1}, {1, 1, 1, 1}, {1, 1}},
    {"Depthwise", 16, 16, 3, 16, 9, 9, {2, 2}, {1, 1, 1, 1}, {1, 1}},
    {"Pointwise", 24, 40, 1, 1, 5, 5, {1, 1}, {0, 0, 0, 0}, {1, 1}},
    {"Stem7x7", 3, 16, 7, 1, 32, 32, {2, 2}, {3, 3, 3, 3}, {1, 1}},
    {"OddChannels", 13, 29, 3, 1, 6, 6, {1, 1}, {1, 1, 1, 1}, {1, 1}},
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const Geometry& g : kGeometries) out.push_back({g, ""});
  for (const char* act : {"Relu", "Relu6", "Clip", "LeakyRelu", "Sigmoid", "Silu", "HardSwish", "Tanh"})
    out.push_back({kGeometries[0], act});
  out.push_back({kGeometries[5], "Relu6"});  // MobileNet's depthwise + Relu6
  return out;
}

INSTANTIATE_TEST_SUITE_P(Geometries, PackedConvCase, ::testing::ValuesIn(cases()), case_name);

TEST(PackedConv, ActivationIsNotFusedWhenTheConvOutputIsAlsoUsedElsewhere) {
  ir::GraphBuilder b("shared", 3);
  std::string x = b.input("x", {3, 8, 8});
  std::string c = b.conv(x, 4, 3, 1, 1, 1, true, "conv");
  std::string r = b.act("Relu", c, "act");
  ir::Graph g = b.finish({b.add(r, c)});  // the raw (negative) conv output is needed too
  at::NoGradGuard no_grad;
  at::Tensor x_in = at::randn({2, 3, 8, 8});
  exec::Executor ex(g);
  EXPECT_TRUE(tensors_close(ex.forward(x_in), exec::Executor(g, plain_executor()).forward(x_in), 1e-4, 1e-5));
  EXPECT_GT(node_times(ex, x_in)[index_of(g, "act")], 0.0) << "the Relu must run on its own";
  EXPECT_EQ(packed_count(ex), 1);
}

TEST(PackedConv, BranchesConcatenatedChannelsLastMatchPlainExecution) {
  // Inception/DenseNet shape: two convolutions of one input, concatenated on channels (Concat keeps
  // the channels-last layout), then a third convolution and a pooling of the concatenation.
  ir::GraphBuilder b("concat", 3);
  std::string x = b.input("x", {6, 10, 10});
  std::string l = b.act("Relu", b.conv(x, 5, 1, 1, 0, 1, true, "left"));
  std::string r = b.act("Relu", b.conv(x, 7, 3, 1, 1, 1, true, "right"));
  std::string c = b.concat({l, r, x}, 1);
  ir::Graph g = b.finish({b.maxpool(b.conv(c, 4, 3, 2, 1, 1, true, "after"), 2, 2), c});
  at::NoGradGuard no_grad;
  at::Tensor x_in = at::randn({3, 6, 10, 10});
  auto want = exec::Executor(g, plain_executor()).run({x_in});
  exec::Executor ex(g);
  auto got = ex.run({x_in});
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(got[i].is_contiguous()) << i;
    EXPECT_TRUE(tensors_close(got[i], want[i], 1e-4, 1e-5)) << i;
  }
  EXPECT_EQ(packed_count(ex), 3);
}

TEST(PackedConv, UnfusableActivationRunsOnItsOwn) {
  ir::GraphBuilder b("gelu", 3);
  std::string x = b.input("x", {3, 8, 8});
  ir::Graph g = b.finish({b.act("Gelu", b.conv(x, 4, 3, 1, 1, 1, true, "conv"), "act")});
  at::NoGradGuard no_grad;
  at::Tensor x_in = at::randn({2, 3, 8, 8});
  exec::Executor ex(g);
  EXPECT_TRUE(tensors_close(ex.forward(x_in), exec::Executor(g, plain_executor()).forward(x_in), 1e-4, 1e-5));
  EXPECT_GT(node_times(ex, x_in)[index_of(g, "act")], 0.0);
}

TEST(PackedConv, ChangedWeightsArePackedAgain) {
  ir::GraphBuilder b("weights", 3);
  std::string x = b.input("x", {3, 8, 8});
  ir::Graph g = b.finish({b.act("Relu", b.conv(x, 4, 3, 1, 1, 1, true, "conv"))});
  at::NoGradGuard no_grad;
  at::Tensor x_in = at::randn({2, 3, 8, 8});
  exec::Executor ex(g);
  ex.forward(x_in);
  ir::Node& conv = *g.find_node("conv");
  conv.param("weight").value.mul_(-2.0);  // in place: the version counter moves
  EXPECT_TRUE(tensors_close(ex.forward(x_in), exec::Executor(g, plain_executor()).forward(x_in), 1e-4, 1e-5));
  conv.param("bias").value = at::randn({4});  // replaced
  EXPECT_TRUE(tensors_close(ex.forward(x_in), exec::Executor(g, plain_executor()).forward(x_in), 1e-4, 1e-5));
}

TEST(PackedConv, AnotherThreadCountPacksAgainWithTheSameResult) {
  ir::GraphBuilder b("threads", 3);
  std::string x = b.input("x", {16, 12, 12});
  ir::Graph g = b.finish({b.act("Relu", b.conv(x, 32, 3, 1, 1, 1, true, "conv"))});
  at::NoGradGuard no_grad;
  at::Tensor x_in = at::randn({4, 16, 12, 12});  // 2.6M multiply-adds: split between threads
  const int before = at::get_num_threads();
  exec::Executor ex(g);
  at::set_num_threads(1);
  at::Tensor one = ex.forward(x_in);
  at::set_num_threads(2);
  at::Tensor two = ex.forward(x_in);
  at::set_num_threads(before);
  at::Tensor want = exec::Executor(g, plain_executor()).forward(x_in);
  EXPECT_TRUE(tensors_close(one, want, 1e-4, 1e-5));
  EXPECT_TRUE(tensors_close(two, want, 1e-4, 1e-5));
  EXPECT_EQ(packed_count(ex), 1);
}

TEST(PackedConv, AutogradInEvalModeUsesThePlainKernel) {
  ir::GraphBuilder b("grad", 3);
  std::string x = b.input("x", {3, 8, 8});
  ir::Graph g = b.finish({b.conv(x, 4, 3, 1, 1, 1, true, "conv")});
  at::Tensor x_in = at::randn({2, 3, 8, 8}).requires_grad_(true);
  exec::Executor ex(g);
  at::Tensor y = ex.forward(x_in);
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_TRUE(x_in.grad().defined());
  EXPECT_EQ(packed_count(ex), 0);
  EXPECT_EQ(ex.conv_implementations().at("at::convolution"), 1);
}

TEST(PackedConv, ZooModelsRunEveryConvolutionPrepacked) {
  for (const char* name : {"small_cnn", "resnet8", "mobilenet_v2_tiny"}) {
    ir::Graph g = models::build(name, {}, 1);
    at::NoGradGuard no_grad;
    auto shape = g.inputs[0].shape;
    shape[0] = 2;
    exec::Executor ex(g);
    at::Tensor x = at::randn(shape);
    EXPECT_TRUE(tensors_close(ex.forward(x), exec::Executor(g, plain_executor()).forward(x), 1e-4, 1e-5)) << name;
    int64_t convs = 0;
    for (const auto& n : g.nodes) convs += n.op == "Conv";
    EXPECT_EQ(packed_count(ex), convs) << name;
  }
}

}  // namespace
}  // namespace squeeze
