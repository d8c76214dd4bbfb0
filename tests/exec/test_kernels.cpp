// Every core op in the executor against libtorch's reference (torch::nn modules or ATen ops with
// the same weights), within kFloatRtol/kFloatAtol.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>

#include "squeeze/exec/executor.h"
#include "squeeze/ir/builder.h"
#include "squeeze/ir/ops.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using testing::tensors_close;

at::Tensor run1(ir::Graph& g, const at::Tensor& x, exec::Mode mode = exec::Mode::kEval) {
  return exec::Executor(g).forward(x, mode);
}

// A one-node graph: input of the given sample shape, one op.
ir::Graph single(const std::string& op, const ir::Shape& sample, std::map<std::string, ir::Attr> attrs = {},
                 std::map<std::string, ir::Param> params = {}) {
  ir::GraphBuilder b("t", 1);
  std::string x = b.input("x", sample);
  std::string y = b.node(op, {x}, attrs, params);
  return b.finish({y});
}

TEST(Kernels, Conv2dMatchesTorchNn) {
  struct Case {
    int64_t in, out, k, stride, pad, dil, groups;
  };
  for (Case c : {Case{3, 8, 3, 1, 1, 1, 1}, Case{4, 8, 3, 2, 0, 1, 2}, Case{6, 6, 3, 1, 2, 2, 6},
                 Case{3, 5, 1, 1, 0, 1, 1}, Case{4, 4, 5, 2, 2, 1, 1}}) {
    torch::nn::Conv2d ref(torch::nn::Conv2dOptions(c.in, c.out, c.k).stride(c.stride).padding(c.pad).dilation(c.dil).groups(c.groups));
    std::map<std::string, ir::Param> p;
    p["weight"].value = ref->weight.detach().clone();
    p["bias"].value = ref->bias.detach().clone();
    auto g = single("Conv", {c.in, 11, 13},
                    {{"strides", std::vector<int64_t>{c.stride, c.stride}},
                     {"pads", std::vector<int64_t>(4, c.pad)},
                     {"dilations", std::vector<int64_t>{c.dil, c.dil}},
                     {"group", c.groups}},
                    p);
    at::Tensor x = at::randn({2, c.in, 11, 13});
    at::Tensor y = run1(g, x);
    EXPECT_TRUE(tensors_close(y, ref->forward(x)));
    EXPECT_EQ(ir::Shape(y.sizes().begin() + 1, y.sizes().end()),
              ir::Shape(g.shape_of(g.outputs[0]).begin() + 1, g.shape_of(g.outputs[0]).end()));
  }
}

TEST(Kernels, Conv1dAndAsymmetricPads) {
  torch::nn::Conv1d ref(torch::nn::Conv1dOptions(3, 4, 3));
  std::map<std::string, ir::Param> p;
  p["weight"].value = ref->weight.detach().clone();
  p["bias"].value = ref->bias.detach().clone();
  auto g = single("Conv", {3, 10}, {{"pads", std::vector<int64_t>{1, 2}}}, p);
  at::Tensor x = at::randn({2, 3, 10});
  at::Tensor expected = ref->forward(at::constant_pad_nd(x, {1, 2}));
  at::Tensor y = run1(g, x);
  EXPECT_TRUE(tensors_close(y, expected));
  EXPECT_EQ(g.shape_of(g.outputs[0]).back(), 11);
}

TEST(Kernels, ConvTranspose2dMatchesTorchNn) {
  torch::nn::ConvTranspose2d ref(torch::nn::ConvTranspose2dOptions(4, 6, 3).stride(2).padding(1).output_padding(1));
  std::map<std::string, ir::Param> p;
  p["weight"].value = ref->weight.detach().clone();
  p["bias"].value = ref->bias.detach().clone();
  auto g = single("ConvTranspose", {4, 5, 5},
                  {{"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>(4, 1)},
                   {"output_padding", std::vector<int64_t>{1, 1}}},
                  p);
  at::Tensor x = at::randn({2, 4, 5, 5});
  EXPECT_TRUE(tensors_close(run1(g, x), ref->forward(x)));
  EXPECT_EQ(g.shape_of(g.outputs[0]), (ir::Shape{ir::kDynamic, 6, 10, 10}));
}

TEST(Kernels, LinearMatchesTorchNnAtEveryBatch) {
  torch::nn::Linear ref(torch::nn::LinearOptions(20, 7));
  std::map<std::string, ir::Param> p;
  p["weight"].value = ref->weight.detach().clone();
  p["bias"].value = ref->bias.detach().clone();
  auto g = single("Linear", {20}, {}, p);
  for (int64_t batch : {1, 3, 64}) {  // batch 1 takes the matrix-vector path
    at::Tensor x = at::randn({batch, 20});
    EXPECT_TRUE(tensors_close(run1(g, x), ref->forward(x))) << "batch " << batch;
  }
}

TEST(Kernels, BatchNormEvalAndTrainMatchTorchNn) {
  torch::nn::BatchNorm2d ref(torch::nn::BatchNorm2dOptions(5));
  ref->weight.data().uniform_(0.5, 1.5);
  ref->bias.data().uniform_(-0.5, 0.5);
  ref->running_mean.uniform_(-1, 1);
  ref->running_var.uniform_(0.5, 2);
  std::map<std::string, ir::Param> p;
  p["weight"].value = ref->weight.detach().clone();
  p["bias"].value = ref->bias.detach().clone();
  p["running_mean"] = {ref->running_mean.clone(), std::nullopt, std::nullopt, false};
  p["running_var"] = {ref->running_var.clone(), std::nullopt, std::nullopt, false};
  auto g = single("BatchNorm", {5, 4, 4}, {{"epsilon", 1e-5}, {"momentum", 0.1}}, p);
  at::Tensor x = at::randn({3, 5, 4, 4});
  ref->eval();
  EXPECT_TRUE(tensors_close(run1(g, x), ref->forward(x)));
  ref->train();
  at::Tensor expected = ref->forward(x);
  EXPECT_TRUE(tensors_close(run1(g, x, exec::Mode::kTrain), expected));
  // Training updates the running statistics exactly as PyTorch does.
  EXPECT_TRUE(tensors_close(g.nodes[0].param("running_mean").value, ref->running_mean));
  EXPECT_TRUE(tensors_close(g.nodes[0].param("running_var").value, ref->running_var));
}

TEST(Kernels, LayerNormMatchesTorchNn) {
  torch::nn::LayerNorm ref(torch::nn::LayerNormOptions({16}));
  ref->weight.data().uniform_(0.5, 1.5);
  ref->bias.data().uniform_(-0.5, 0.5);
  std::map<std::string, ir::Param> p;
  p["weight"].value = ref->weight.detach().clone();
  p["bias"].value = ref->bias.detach().clone();
  auto g = single("LayerNorm", {7, 16}, {{"axis", int64_t{-1}}, {"epsilon", 1e-5}}, p);
  at::Tensor x = at::randn({2, 7, 16});
  EXPECT_TRUE(tensors_close(run1(g, x), ref->forward(x)));
}

TEST(Kernels, PoolingMatchesTorchNn) {
  at::Tensor x = at::randn({2, 3, 9, 9});
  {
    torch::nn::MaxPool2d ref(torch::nn::MaxPool2dOptions(3).stride(2).padding(1));
    auto g = single("MaxPool", {3, 9, 9},
                    {{"kernel_shape", std::vector<int64_t>{3, 3}}, {"strides", std::vector<int64_t>{2, 2}},
                     {"pads", std::vector<int64_t>(4, 1)}});
    EXPECT_TRUE(tensors_close(run1(g, x), ref->forward(x)));
  }
  {
    torch::nn::MaxPool2d ref(torch::nn::MaxPool2dOptions(2).stride(2).ceil_mode(true));
    auto g = single("MaxPool", {3, 9, 9},
                    {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}},
                     {"ceil_mode", int64_t{1}}});
    at::Tensor y = run1(g, x);
    EXPECT_TRUE(tensors_close(y, ref->forward(x)));
    EXPECT_EQ(g.shape_of(g.outputs[0]), (ir::Shape{ir::kDynamic, 3, 5, 5}));
  }
  for (bool include_pad : {false, true}) {
    torch::nn::AvgPool2d ref(torch::nn::AvgPool2dOptions(3).stride(2).padding(1).count_include_pad(include_pad));
    auto g = single("AvgPool", {3, 9, 9},
                    {{"kernel_shape", std::vector<int64_t>{3, 3}}, {"strides", std::vector<int64_t>{2, 2}},
                     {"pads", std::vector<int64_t>(4, 1)}, {"count_include_pad", int64_t{include_pad}}});
    EXPECT_TRUE(tensors_close(run1(g, x), ref->forward(x)));
  }
  {
    auto g = single("GlobalAvgPool", {3, 9, 9});
    EXPECT_TRUE(tensors_close(run1(g, x), at::adaptive_avg_pool2d(x, {1, 1})));
  }
}

TEST(Kernels, AsymmetricAvgPoolExcludesPadding) {
  // ONNX AvgPool with pads [0,0,1,1] (end only) and count_include_pad=0: each window averages
  // only the real elements it covers.
  auto g = single("AvgPool", {1, 3, 3},
                  {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}},
                   {"pads", std::vector<int64_t>{0, 0, 1, 1}}});
  at::Tensor x = at::arange(9, at::kFloat).reshape({1, 1, 3, 3});
  at::Tensor y = run1(g, x);
  at::Tensor expected = at::tensor({(0 + 1 + 3 + 4) / 4.0f, (2 + 5) / 2.0f, (6 + 7) / 2.0f, 8.0f}).reshape({1, 1, 2, 2});
  EXPECT_TRUE(tensors_close(y, expected));
}

TEST(Kernels, ActivationsMatchAten) {
  at::Tensor x = at::randn({4, 10}) * 4;
  std::vector<std::pair<std::string, at::Tensor>> cases = {
      {"Relu", at::relu(x)},
      {"Relu6", at::clamp(x, 0, 6)},
      {"Gelu", at::gelu(x)},
      {"Silu", x * at::sigmoid(x)},
      {"Sigmoid", at::sigmoid(x)},
      {"Tanh", at::tanh(x)},
      {"HardSwish", x * at::clamp(x + 3, 0, 6) / 6},
      {"Softmax", at::softmax(x, -1)},
      {"LogSoftmax", at::log_softmax(x, -1)},
      {"Identity", x},
      {"Dropout", x},
      {"Softsign", x / (1 + x.abs())},
      {"Elu", at::where(x > 0, x, at::exp(x) - 1)},
  };
  for (const auto& [op, expected] : cases) {
    auto g = single(op, {10});
    EXPECT_TRUE(tensors_close(run1(g, x), expected)) << op;
  }
  auto g = single("LeakyRelu", {10}, {{"alpha", 0.2}});
  EXPECT_TRUE(tensors_close(run1(g, x), at::where(x > 0, x, 0.2 * x)));
}

TEST(Kernels, StructuralOps) {
  ir::GraphBuilder b("s", 0);
  std::string x = b.input("x", {4, 6});
  std::string t = b.node("Transpose", {x}, {{"perm", std::vector<int64_t>{0, 2, 1}}});
  std::string r = b.node("Reshape", {t}, {{"shape", std::vector<int64_t>{0, -1}}});
  std::string s = b.node("Slice", {r}, {{"starts", std::vector<int64_t>{1}}, {"ends", std::vector<int64_t>{-1}},
                                        {"axes", std::vector<int64_t>{1}}, {"steps", std::vector<int64_t>{2}}});
  std::string u = b.node("Unsqueeze", {s}, {{"axes", std::vector<int64_t>{1}}});
  std::string q = b.node("Squeeze", {u}, {{"axes", std::vector<int64_t>{1}}});
  std::string c = b.concat({q, q}, 1);
  std::string m = b.node("ReduceMean", {c}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{0}}});
  ir::Graph g = b.finish({m, c});
  at::Tensor in = at::randn({3, 4, 6});
  auto outs = exec::Executor(g).run({in});
  at::Tensor sl = in.permute({0, 2, 1}).reshape({3, -1}).slice(1, 1, 23, 2);
  at::Tensor cat = at::cat({sl, sl}, 1);
  EXPECT_TRUE(tensors_close(outs[1], cat));
  EXPECT_TRUE(tensors_close(outs[0], cat.mean(1)));
  EXPECT_EQ(g.shape_of(c), (ir::Shape{ir::kDynamic, 22}));
  EXPECT_EQ(g.shape_of(m), (ir::Shape{ir::kDynamic}));
}

TEST(Kernels, BroadcastingElementwise) {
  ir::GraphBuilder b("e", 0);
  std::string x = b.input("x", {3, 4});
  std::map<std::string, ir::Param> p;
  p["value"] = {at::randn({4}), std::nullopt, std::nullopt, false};
  std::string k = b.node("Constant", {}, {}, p);
  std::string y = b.node("Mul", {b.node("Add", {x, k}), k});
  ir::Graph g = b.finish({y});
  at::Tensor in = at::randn({2, 3, 4});
  at::Tensor kv = g.nodes[0].param("value").value;
  EXPECT_TRUE(tensors_close(exec::Executor(g).forward(in), (in + kv) * kv));
}

TEST(Kernels, MaskedWeightsGetNoGradientInTraining) {
  ir::GraphBuilder b("m", 0);
  std::string y = b.linear(b.input("x", {4}), 3);
  ir::Graph g = b.finish({y});
  auto& w = g.nodes[0].param("weight");
  w.mask = at::ones_like(w.value);
  (*w.mask)[0][0] = 0;
  exec::apply_masks(g);
  auto params = exec::trainable_parameters(g);
  exec::Executor(g).forward(at::randn({5, 4}), exec::Mode::kTrain).sum().backward();
  EXPECT_EQ(w.value.grad()[0][0].item<float>(), 0.0f);
  EXPECT_NE(w.value.grad()[1][1].item<float>(), 0.0f);
}

}  // namespace
}  // namespace squeeze
