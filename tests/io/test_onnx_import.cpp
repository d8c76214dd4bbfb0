// ONNX import: bad input, patterns recognised as IR ops, opset-dependent forms, dynamic batch.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "io/onnx_test_util.h"
#include "squeeze/exec/executor.h"
#include "squeeze/io/onnx.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using testing::OnnxMaker;
constexpr double kRtol = 1e-5, kAtol = 1e-6;

int count_op(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op == op;
  return n;
}

ir::Graph import(const OnnxMaker& m) { return io::import_onnx_bytes(m.bytes(), "test.onnx"); }

at::Tensor run1(const ir::Graph& g, const at::Tensor& x) { return exec::Executor(g).forward(x); }

template <typename E>
std::string error_of(const std::string& bytes) {
  try {
    io::import_onnx_bytes(bytes, "bad.onnx");
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception";
  return "";
}

std::string small_model_bytes() {
  OnnxMaker m;
  m.input("x", {-1, 3, 8, 8}).output("y");
  m.init("w", at::randn({4, 3, 3, 3})).init("b", at::randn({4}));
  m.node("Conv", {"x", "w", "b"}, {"c"}, "conv");
  m.node("Relu", {"c"}, {"y"}, "relu");
  return m.bytes();
}

// --- bad input ---

TEST(OnnxImportErrors, TruncatedFileIsInputError) {
  std::string bytes = small_model_bytes();
  std::string msg = error_of<InputError>(bytes.substr(0, bytes.size() / 2));
  EXPECT_NE(msg.find("bad.onnx"), std::string::npos) << msg;
}

TEST(OnnxImportErrors, NotProtobufIsInputError) {
  std::string msg = error_of<InputError>("this is a text file, not an ONNX model\n");
  EXPECT_NE(msg.find("not"), std::string::npos) << msg;
  error_of<InputError>("");
}

TEST(OnnxImportErrors, MissingFileIsInputError) {
  EXPECT_THROW(io::import_onnx("/nonexistent/model.onnx"), InputError);
}

TEST(OnnxImportErrors, UnsupportedOpNamesOpNodeOpsetAndSupportedOps) {
  OnnxMaker m;
  m.input("x", {1, 4}).output("y");
  m.node("Relu", {"x"}, {"r"}, "relu");
  m.node("Hardmax", {"r"}, {"y"}, "my_hardmax");
  std::string msg = error_of<UnsupportedError>(m.bytes());
  for (const char* want : {"Hardmax", "my_hardmax", "opset 13", "supported ONNX ops", "Conv", "Gemm"})
    EXPECT_NE(msg.find(want), std::string::npos) << want << " not in: " << msg;
}

TEST(OnnxImportErrors, CycleIsGraphError) {
  OnnxMaker m;
  m.input("x", {1, 4}).output("a");
  m.node("Add", {"x", "b"}, {"a"}, "add");
  m.node("Relu", {"a"}, {"b"}, "relu");
  std::string msg = error_of<GraphError>(m.bytes());
  EXPECT_NE(msg.find("cycle"), std::string::npos) << msg;
}

TEST(OnnxImportErrors, MissingInitializerIsGraphError) {
  OnnxMaker m;
  m.input("x", {1, 3, 8, 8}).output("y");
  m.node("Conv", {"x", "conv1.weight"}, {"y"}, "conv1");
  std::string msg = error_of<GraphError>(m.bytes());
  EXPECT_NE(msg.find("conv1.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing initializer"), std::string::npos) << msg;
}

TEST(OnnxImportErrors, RuntimeWeightIsUnsupported) {
  OnnxMaker m;
  m.input("x", {1, 3, 8, 8}).input("w", {4, 3, 3, 3}).output("y");
  m.node("Conv", {"x", "w"}, {"y"}, "conv");
  std::string msg = error_of<UnsupportedError>(m.bytes());
  EXPECT_NE(msg.find("weight"), std::string::npos) << msg;
}

TEST(OnnxImportErrors, DamagedTensorPayloadIsInputError) {
  OnnxMaker m;
  m.input("x", {1, 4}).output("y");
  m.init("w", at::randn({4}));
  m.model().mutable_graph()->mutable_initializer(0)->set_raw_data("abc");
  m.node("Add", {"x", "w"}, {"y"});
  error_of<InputError>(m.bytes());
}

// --- patterns ---

TEST(OnnxImportPatterns, ErfGeluBecomesGelu) {
  OnnxMaker m;
  m.input("x", {-1, 8}).output("y");
  m.init("sqrt2", at::scalar_tensor(std::sqrt(2.0), at::kFloat)).init("one", at::scalar_tensor(1.0, at::kFloat));
  m.init("half", at::scalar_tensor(0.5, at::kFloat));
  m.node("Div", {"x", "sqrt2"}, {"d"});
  m.node("Erf", {"d"}, {"e"});
  m.node("Add", {"e", "one"}, {"a"});
  m.node("Mul", {"x", "a"}, {"m"});
  m.node("Mul", {"m", "half"}, {"y"});
  ir::Graph g = import(m);
  EXPECT_EQ(count_op(g, "Gelu"), 1);
  EXPECT_EQ(count_op(g, "Erf"), 0);
  at::Tensor x = at::randn({3, 8});
  EXPECT_TRUE(at::allclose(run1(g, x), at::gelu(x), kRtol, kAtol));
}

TEST(OnnxImportPatterns, SigmoidTimesXBecomesSilu) {
  OnnxMaker m;
  m.input("x", {-1, 8}).output("y");
  m.node("Sigmoid", {"x"}, {"s"});
  m.node("Mul", {"x", "s"}, {"y"});
  ir::Graph g = import(m);
  EXPECT_EQ(count_op(g, "Silu"), 1);
  EXPECT_EQ(g.nodes.size(), 1u);
}

TEST(OnnxImportPatterns, DecomposedLayerNormBecomesLayerNorm) {
  OnnxMaker m(11);
  m.input("x", {-1, 5, 16}).output("y");
  at::Tensor gamma = at::randn({16}), beta = at::randn({16});
  m.init("two", at::scalar_tensor(2.0, at::kFloat)).init("eps", at::scalar_tensor(1e-5, at::kFloat));
  m.init("gamma", gamma).init("beta", beta);
  OnnxMaker::attr(m.node("ReduceMean", {"x"}, {"mean"}), "axes", std::vector<int64_t>{-1});
  m.node("Sub", {"x", "mean"}, {"d"});
  m.node("Pow", {"d", "two"}, {"p"});
  OnnxMaker::attr(m.node("ReduceMean", {"p"}, {"v"}), "axes", std::vector<int64_t>{-1});
  m.node("Add", {"v", "eps"}, {"ve"});
  m.node("Sqrt", {"ve"}, {"s"});
  m.node("Div", {"d", "s"}, {"n"});
  m.node("Mul", {"n", "gamma"}, {"g"});
  m.node("Add", {"g", "beta"}, {"y"});
  ir::Graph g = import(m);
  ASSERT_EQ(count_op(g, "LayerNorm"), 1);
  EXPECT_EQ(g.nodes.size(), 1u);
  at::Tensor x = at::randn({2, 5, 16});
  EXPECT_TRUE(at::allclose(run1(g, x), at::layer_norm(x, {16}, gamma, beta, 1e-5), 1e-4, 1e-5));
}

TEST(OnnxImportPatterns, ClipZeroSixBecomesRelu6InBothOpsetForms) {
  {
    OnnxMaker m(13);
    m.input("x", {-1, 4}).output("y");
    m.init("lo", at::scalar_tensor(0.0, at::kFloat)).init("hi", at::scalar_tensor(6.0, at::kFloat));
    m.node("Clip", {"x", "lo", "hi"}, {"y"});
    EXPECT_EQ(count_op(import(m), "Relu6"), 1);
  }
  {
    OnnxMaker m(6);
    m.input("x", {-1, 4}).output("y");
    auto* n = m.node("Clip", {"x"}, {"y"});
    OnnxMaker::attr(n, "min", 0.0);
    OnnxMaker::attr(n, "max", 6.0);
    EXPECT_EQ(count_op(import(m), "Relu6"), 1);
  }
}

TEST(OnnxImportPatterns, ZeroPadFoldsIntoConv) {
  OnnxMaker m;
  m.input("x", {-1, 3, 8, 8}).output("y");
  at::Tensor w = at::randn({4, 3, 3, 3});
  m.init("w", w).init("pads", at::tensor(std::vector<int64_t>{0, 0, 1, 2, 0, 0, 1, 0}, at::kLong));
  m.node("Pad", {"x", "pads"}, {"p"});
  m.node("Conv", {"p", "w"}, {"y"});
  ir::Graph g = import(m);
  EXPECT_EQ(count_op(g, "Pad"), 0);
  ASSERT_EQ(count_op(g, "Conv"), 1);
  EXPECT_EQ(g.nodes[0].attr_ints("pads"), (std::vector<int64_t>{1, 2, 1, 0}));
  at::Tensor x = at::randn({2, 3, 8, 8});
  at::Tensor want = at::conv2d(at::constant_pad_nd(x, {2, 0, 1, 1}), w);
  EXPECT_TRUE(at::allclose(run1(g, x), want, kRtol, kAtol));
}

TEST(OnnxImportPatterns, MatMulAddAndGemmBecomeLinear) {
  at::Tensor w = at::randn({8, 5}), b = at::randn({5});
  {
    OnnxMaker m;
    m.input("x", {-1, 8}).output("y");
    m.init("w", w).init("b", b);
    m.node("MatMul", {"x", "w"}, {"mm"});
    m.node("Add", {"mm", "b"}, {"y"});
    ir::Graph g = import(m);
    ASSERT_EQ(g.nodes.size(), 1u);
    EXPECT_EQ(g.nodes[0].op, "Linear");
    EXPECT_TRUE(g.nodes[0].has_param("bias"));
    at::Tensor x = at::randn({3, 8});
    EXPECT_TRUE(at::allclose(run1(g, x), at::matmul(x, w) + b, kRtol, kAtol));
  }
  {
    OnnxMaker m;
    m.input("x", {-1, 8}).output("y");
    m.init("wt", w.t().contiguous()).init("b", b);
    auto* n = m.node("Gemm", {"x", "wt", "b"}, {"y"});
    OnnxMaker::attr(n, "transB", int64_t{1});
    OnnxMaker::attr(n, "alpha", 2.0);
    OnnxMaker::attr(n, "beta", 0.5);
    ir::Graph g = import(m);
    ASSERT_EQ(g.nodes.size(), 1u);
    EXPECT_EQ(g.nodes[0].op, "Linear");
    at::Tensor x = at::randn({3, 8});
    EXPECT_TRUE(at::allclose(run1(g, x), 2.0 * at::matmul(x, w) + 0.5 * b, kRtol, kAtol));
  }
}

TEST(OnnxImportPatterns, OldSoftmaxCoercesTo2D) {
  OnnxMaker m(11);
  m.input("x", {-1, 3, 4}).output("y");
  OnnxMaker::attr(m.node("Softmax", {"x"}, {"y"}), "axis", int64_t{1});
  ir::Graph g = import(m);
  at::Tensor x = at::randn({2, 3, 4});
  at::Tensor want = at::softmax(x.reshape({2, 12}), 1).reshape({2, 3, 4});
  EXPECT_TRUE(at::allclose(run1(g, x), want, kRtol, kAtol));
}

TEST(OnnxImportPatterns, DropoutAndIdentityAreRemoved) {
  OnnxMaker m;
  m.input("x", {-1, 4}).output("y");
  m.node("Relu", {"x"}, {"r"});
  m.node("Dropout", {"r"}, {"d"});
  m.node("Identity", {"d"}, {"y"});
  ir::Graph g = import(m);
  EXPECT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.outputs, std::vector<std::string>{"y"});
}

// --- constants, opsets, batch ---

TEST(OnnxImport, ShapeChainFoldsAndBatchStaysDynamic) {
  // x.view(x.size(0), -1) as PyTorch exports it.
  OnnxMaker m;
  m.input("x", {-1, 2, 3, 4}).output("y");
  m.init("zero", at::scalar_tensor(0, at::kLong));
  m.init("minus1", at::tensor(std::vector<int64_t>{-1}, at::kLong));
  m.init("axes0", at::tensor(std::vector<int64_t>{0}, at::kLong));
  m.node("Shape", {"x"}, {"s"});
  OnnxMaker::attr(m.node("Gather", {"s", "zero"}, {"b"}), "axis", int64_t{0});
  m.node("Unsqueeze", {"b", "axes0"}, {"bu"});
  OnnxMaker::attr(m.node("Concat", {"bu", "minus1"}, {"shape"}), "axis", int64_t{0});
  m.node("Reshape", {"x", "shape"}, {"y"});
  ir::Graph g = import(m);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op, "Reshape");
  EXPECT_EQ(g.inputs[0].shape[0], ir::kDynamic);
  at::Tensor x = at::randn({5, 2, 3, 4});
  EXPECT_TRUE(at::equal(run1(g, x), x.reshape({5, 24})));
}

// The batch size computed into shapes away from dim 0, as torch's MultiheadAttention and a
// class token export it: x [N, 4, 6] -> [4, N, 6] -> reshape [4, N * 2, 3] -> [N * 2, 4, 3] ->
// reshape [N, 24], plus a constant [1, 24] expanded to [N, 24].
void batch_arithmetic_model(OnnxMaker& m) {
  m.input("x", {-1, 4, 6}).output("y");
  auto ints = [&](const std::string& name, std::vector<int64_t> v) {
    m.init(name, at::tensor(v, at::kLong));
  };
  ints("zero", {0});
  ints("axes0", {0});
  ints("four", {4});
  ints("two", {2});
  ints("three", {3});
  ints("c24", {24});
  m.init("token", at::arange(24, at::kFloat).reshape({1, 24}));
  m.node("Shape", {"x"}, {"s"});
  OnnxMaker::attr(m.node("Gather", {"s", "zero"}, {"n"}), "axis", int64_t{0});  // [1]
  m.node("Mul", {"n", "two"}, {"n2"});
  OnnxMaker::attr(m.node("Transpose", {"x"}, {"t"}), "perm", std::vector<int64_t>{1, 0, 2});
  OnnxMaker::attr(m.node("Concat", {"four", "n2", "three"}, {"s1"}), "axis", int64_t{0});
  m.node("Reshape", {"t", "s1"}, {"r1"});
  OnnxMaker::attr(m.node("Transpose", {"r1"}, {"t2"}), "perm", std::vector<int64_t>{1, 0, 2});
  OnnxMaker::attr(m.node("Concat", {"n", "c24"}, {"s2"}), "axis", int64_t{0});
  m.node("Reshape", {"t2", "s2"}, {"r2"});
  m.node("Expand", {"token", "s2"}, {"tok"});
  m.node("Add", {"r2", "tok"}, {"y"});
}

at::Tensor batch_arithmetic_reference(const at::Tensor& x) {
  int64_t n = x.size(0);
  at::Tensor r = x.transpose(0, 1).reshape({4, 2 * n, 3}).transpose(0, 1).reshape({n, 24});
  return r + at::arange(24, at::kFloat).reshape({1, 24});
}

TEST(OnnxImport, BatchArithmeticAwayFromDimZeroFollowsTheBatch) {
  OnnxMaker m;
  batch_arithmetic_model(m);
  ir::Graph g = import(m);
  EXPECT_EQ(g.inputs[0].shape, (ir::Shape{ir::kDynamic, 4, 6}));
  for (int64_t batch : {1, 3, 5}) {
    at::Tensor x = at::randn({batch, 4, 6});
    EXPECT_TRUE(at::allclose(run1(g, x), batch_arithmetic_reference(x))) << "batch " << batch;
  }
  // And it survives export and re-import with its dynamic batch.
  testing::TempDir dir;
  io::export_onnx(g, dir.file("m.onnx"));
  ir::Graph back = io::import_onnx(dir.file("m.onnx"));
  at::Tensor x = at::randn({3, 4, 6});
  EXPECT_TRUE(at::allclose(run1(back, x), batch_arithmetic_reference(x)));
}

TEST(OnnxImport, BatchInSliceBoundsKeepsTheBatchStatic) {
  // x[:, :N]: the bound is the batch size. Two batch sizes show it differs, but a Slice has no
  // way to follow it, so the import-time batch stays, with a clear error for any other.
  OnnxMaker m;
  m.input("x", {-1, 6}).output("y");
  m.init("zero", at::tensor(std::vector<int64_t>{0}, at::kLong));
  m.init("one", at::tensor(std::vector<int64_t>{1}, at::kLong));
  m.node("Shape", {"x"}, {"s"});
  OnnxMaker::attr(m.node("Gather", {"s", "zero"}, {"n"}), "axis", int64_t{0});
  m.node("Slice", {"x", "zero", "n", "one"}, {"y"});
  ir::Graph g = import(m);
  EXPECT_EQ(g.inputs[0].shape, (ir::Shape{1, 6}));
  at::Tensor x = at::randn({1, 6});
  EXPECT_TRUE(at::equal(run1(g, x), x.slice(1, 0, 1)));
  EXPECT_THROW(run1(g, at::randn({3, 6})), UserError);
}

TEST(OnnxImport, OpsetDependentAttributeAndInputForms) {
  at::Tensor x = at::randn({2, 6, 4});
  for (int64_t opset : {9, 11, 13}) {
    OnnxMaker m(opset);
    m.input("x", {-1, 6, 4}).output("y");
    onnx::NodeProto* n;
    if (opset >= 13) {
      m.init("split", at::tensor(std::vector<int64_t>{2, 4}, at::kLong));
      n = m.node("Split", {"x", "split"}, {"a", "b"});
    } else {
      n = m.node("Split", {"x"}, {"a", "b"});
      OnnxMaker::attr(n, "split", std::vector<int64_t>{2, 4});
    }
    OnnxMaker::attr(n, "axis", int64_t{1});
    if (opset >= 10) {
      m.init("st", at::tensor(std::vector<int64_t>{1}, at::kLong)).init("en", at::tensor(std::vector<int64_t>{3}, at::kLong));
      m.init("ax", at::tensor(std::vector<int64_t>{2}, at::kLong));
      m.node("Slice", {"b", "st", "en", "ax"}, {"s"});
    } else {
      n = m.node("Slice", {"b"}, {"s"});
      OnnxMaker::attr(n, "starts", std::vector<int64_t>{1});
      OnnxMaker::attr(n, "ends", std::vector<int64_t>{3});
      OnnxMaker::attr(n, "axes", std::vector<int64_t>{2});
    }
    if (opset >= 13) {
      m.init("rax", at::tensor(std::vector<int64_t>{1}, at::kLong));
      OnnxMaker::attr(m.node("ReduceSum", {"s", "rax"}, {"r"}), "keepdims", int64_t{0});
      m.init("uax", at::tensor(std::vector<int64_t>{1}, at::kLong));
      m.node("Unsqueeze", {"r", "uax"}, {"y"});
    } else {
      n = m.node("ReduceSum", {"s"}, {"r"});
      OnnxMaker::attr(n, "axes", std::vector<int64_t>{1});
      OnnxMaker::attr(n, "keepdims", int64_t{0});
      OnnxMaker::attr(m.node("Unsqueeze", {"r"}, {"y"}), "axes", std::vector<int64_t>{1});
    }
    ir::Graph g = import(m);
    at::Tensor want = x.narrow(1, 2, 4).narrow(2, 1, 2).sum(1).unsqueeze(1);
    EXPECT_TRUE(at::allclose(run1(g, x), want, kRtol, kAtol)) << "opset " << opset;
  }
}

TEST(OnnxImport, NodesNamedAfterOnnxNamesSanitizedAndUnique) {
  OnnxMaker m;
  m.input("x", {-1, 4}).output("y");
  m.node("Relu", {"x"}, {"a"}, "/layer1/act");
  m.node("Sigmoid", {"a"}, {"b"}, "/layer1/act");
  m.node("Tanh", {"b"}, {"y"}, "");
  ir::Graph g = import(m);
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(g.nodes[0].name, "layer1_act");
  EXPECT_EQ(g.nodes[1].name, "layer1_act_1");
  EXPECT_EQ(g.nodes[2].name, "tanh_2");
}

TEST(OnnxImport, InitializersListedAsInputsAreConstants) {
  OnnxMaker m(9);
  m.input("x", {1, 4}).input("w", {4}).output("y");
  m.init("w", at::ones({4}));
  m.node("Add", {"x", "w"}, {"y"});
  ir::Graph g = import(m);
  ASSERT_EQ(g.inputs.size(), 1u);
  EXPECT_EQ(g.inputs[0].name, "x");
}

}  // namespace
}  // namespace squeeze
