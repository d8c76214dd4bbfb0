// Eval-mode executor rewrites (exec::ExecutorOptions::optimize_inference): channels-last
// activations, BatchNorm folding, in-place Relu/Add. Each must leave results unchanged up to float
// rounding, fire where it applies and stay away where it would be wrong.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include "squeeze/deploy/latency.h"
#include "squeeze/exec/executor.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using testing::node_times;
using testing::tensors_close;

using testing::plain_executor;

// Gives every BatchNorm non-trivial running statistics and affine parameters.
void randomize_batchnorms(ir::Graph& g) {
  at::NoGradGuard no_grad;
  for (auto& n : g.nodes)
    if (n.op == "BatchNorm") {
      int64_t c = n.param("weight").value.size(0);
      n.param("weight").value = at::rand({c}) + 0.5;
      n.param("bias").value = at::randn({c}) * 0.1;
      n.param("running_mean").value = at::randn({c}) * 0.1;
      n.param("running_var").value = at::rand({c}) + 0.5;
    }
}

// Index of the first node with this op.
size_t first(const ir::Graph& g, const std::string& op) {
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].op == op) return i;
  ADD_FAILURE() << "no " << op;
  return 0;
}

class InferenceOptZoo : public ::testing::TestWithParam<std::string> {};

TEST_P(InferenceOptZoo, SameOutputsAsPlainExecution) {
  ir::Graph g = models::build(GetParam(), {}, 3);
  randomize_batchnorms(g);
  at::NoGradGuard no_grad;
  auto shape = g.inputs[0].shape;
  shape[0] = 3;
  at::Tensor x = at::randn(shape);
  at::Tensor x_copy = x.clone();
  at::Tensor want = exec::Executor(g, plain_executor()).forward(x);
  exec::Executor fast(g);
  for (int run = 0; run < 2; ++run) {  // the second run uses the cached folded weights
    at::Tensor got = fast.forward(x);
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_TRUE(tensors_close(got, want, 1e-4, 1e-5)) << "run " << run;
  }
  EXPECT_TRUE(at::equal(x, x_copy));  // the input is never written
}

INSTANTIATE_TEST_SUITE_P(Zoo, InferenceOptZoo,
                         ::testing::Values("mlp", "jet_tagger", "lenet5", "small_cnn", "resnet8", "resnet20",
                                           "mobilenet_v2_tiny", "vit_tiny"));

ir::Graph conv_bn_relu(torch::nn::Conv2d& conv, torch::nn::BatchNorm2d& bn) {
  ir::GraphBuilder b("cbr", 1);
  std::string x = b.input("x", {3, 9, 9});
  std::map<std::string, ir::Param> cp, bp;
  cp["weight"].value = conv->weight.detach().clone();
  cp["bias"].value = conv->bias.detach().clone();
  std::string y = b.node("Conv", {x}, {{"pads", std::vector<int64_t>(4, 1)}}, cp, "conv");
  bp["weight"].value = bn->weight.detach().clone();
  bp["bias"].value = bn->bias.detach().clone();
  bp["running_mean"].value = bn->running_mean.clone();
  bp["running_var"].value = bn->running_var.clone();
  y = b.node("BatchNorm", {y}, {{"epsilon", 1e-5}, {"momentum", 0.1}}, bp, "bn");
  return b.finish({b.act("Relu", y)});
}

TEST(InferenceOpt, BatchNormFoldsIntoConvAndMatchesTorchNn) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 6, 3).padding(1));
  torch::nn::BatchNorm2d bn(6);
  {
    at::NoGradGuard no_grad;
    bn->running_mean.copy_(at::randn({6}));
    bn->running_var.copy_(at::rand({6}) + 0.5);
    bn->weight.copy_(at::rand({6}) + 0.5);
  }
  bn->eval();
  ir::Graph g = conv_bn_relu(conv, bn);
  at::NoGradGuard no_grad;
  at::Tensor x = at::randn({2, 3, 9, 9});
  exec::Executor ex(g);
  EXPECT_TRUE(tensors_close(ex.forward(x), at::relu(bn->forward(conv->forward(x))), 1e-4, 1e-5));
  auto us = node_times(ex, x);
  EXPECT_EQ(us[first(g, "BatchNorm")], 0.0) << "the BatchNorm should have been folded";
  EXPECT_GT(us[first(g, "Conv")], 0.0);

  // In-place changes and replaced tensors are both seen: the folded weights are rebuilt.
  g.find_node("bn")->param("weight").value.mul_(2.0);
  bn->weight.mul_(2.0);
  EXPECT_TRUE(tensors_close(ex.forward(x), at::relu(bn->forward(conv->forward(x))), 1e-4, 1e-5));
  g.find_node("conv")->param("weight").value = conv->weight.detach() * 0.5;
  conv->weight.mul_(0.5);
  EXPECT_TRUE(tensors_close(ex.forward(x), at::relu(bn->forward(conv->forward(x))), 1e-4, 1e-5));
  // Training still uses batch statistics through the real BatchNorm.
  EXPECT_FALSE(tensors_close(ex.forward(x, exec::Mode::kTrain), ex.forward(x), 1e-3, 1e-3));
}

TEST(InferenceOpt, BatchNormIsNotFoldedWhenTheConvOutputIsAlsoUsedElsewhere) {
  ir::GraphBuilder b("shared", 1);
  std::string x = b.input("x", {3, 8, 8});
  std::string c = b.conv(x, 4, 3, 1, 1, 1, true, "conv");
  std::string y = b.batchnorm(c, "bn");
  ir::Graph g = b.finish({b.add(y, c)});  // the raw conv output is needed too
  randomize_batchnorms(g);
  at::NoGradGuard no_grad;
  at::Tensor x_in = at::randn({2, 3, 8, 8});
  exec::Executor ex(g);
  EXPECT_TRUE(tensors_close(ex.forward(x_in), exec::Executor(g, plain_executor()).forward(x_in), 1e-4, 1e-5));
  EXPECT_GT(node_times(ex, x_in)[first(g, "BatchNorm")], 0.0) << "the BatchNorm must run";
}

TEST(InferenceOpt, InPlaceOpsNeverOverwriteLiveValuesOrOutputs) {
  // Linear output h: a view of it goes through Relu while h itself is still needed by the Add,
  // and h is also a graph output. Nothing may be modified under the other readers.
  ir::GraphBuilder b("alias", 1);
  std::string x = b.input("x", {6});
  std::string h = b.linear(x, 8, true, "fc");
  std::string v = b.node("Reshape", {h}, {{"shape", std::vector<int64_t>{0, 4, 2}}}, {}, "view");
  std::string r = b.act("Relu", v);
  std::string back = b.node("Reshape", {r}, {{"shape", std::vector<int64_t>{0, 8}}}, {}, "back");
  std::string s = b.add(back, h);
  ir::Graph g = b.finish({b.act("Relu", s), h});
  at::NoGradGuard no_grad;
  at::Tensor x_in = at::randn({16, 6});
  auto want = exec::Executor(g, plain_executor()).run({x_in});
  auto got = exec::Executor(g).run({x_in});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(tensors_close(got[0], want[0], 1e-4, 1e-5));
  EXPECT_TRUE(tensors_close(got[1], want[1], 1e-4, 1e-5));
  EXPECT_LT(got[1].min().item<double>(), 0.0) << "the linear output was clamped by an in-place Relu";
}

TEST(InferenceOpt, CallerTensorsAreNeverWritten) {
  ir::GraphBuilder b("relu_input", 1);
  std::string x = b.input("x", {5});
  ir::Graph g = b.finish({b.act("Relu", x)});
  at::Tensor x_in = at::randn({4, 5});
  at::Tensor copy = x_in.clone();
  exec::Executor(g).forward(x_in);
  EXPECT_TRUE(at::equal(x_in, copy));
}

TEST(InferenceOpt, ProfileCoversEveryOpType) {
  ir::Graph g = models::build("resnet8", {}, 1);
  auto prof = deploy::profile_ops(g, 2, 3);
  std::set<std::string> ops, seen;
  for (const auto& n : g.nodes) ops.insert(n.op);
  double share = 0;
  for (const auto& t : prof) {
    seen.insert(t.op);
    share += t.share;
    EXPECT_GE(t.us, 0.0);
  }
  EXPECT_EQ(ops, seen);
  EXPECT_NEAR(share, 1.0, 1e-6);
  for (size_t i = 1; i < prof.size(); ++i) EXPECT_GE(prof[i - 1].us, prof[i].us);
}

}  // namespace
}  // namespace squeeze
