// Import of dynamically quantized ONNX models: squeeze's own dynamic export (ONNX Runtime's
// quantize_dynamic form and the QONNX form) read back as the same graph, hand-built files in
// ONNX Runtime's quantize_dynamic form (per tensor, per channel, separate scale Mul, ConvInteger,
// uint8 weights) judged by ONNX Runtime itself, and the patterns that must not fuse.
//
// References: squeeze's own execution of the graph it exported (simulated with
// quant::set_int8_enabled(false), and int8), ONNX Runtime on the file (tests/testing/runtimes.h;
// those checks skip only when it is absent), and DynamicQuantizeLinear's examples from the ONNX
// operator tests (onnx/backend/test/case/node/dynamicquantizelinear.py).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "io/onnx_test_util.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/data/dataset.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/qonnx.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "testing/asserts.h"
#include "testing/data.h"
#include "testing/runtimes.h"

namespace squeeze {
namespace {

using testing::OnnxMaker;
using testing::TempDir;

// The same graph run by the same kernels: only the order of float32 operations in the
// non-quantized parts may differ (an imported Flatten or Gemm vs the zoo's own), which can move a
// dynamic quantization boundary by one step at most. Relative to the largest output.
constexpr double kSameGraphRel = 1e-5;
// squeeze vs ONNX Runtime on one dynamic layer: the input's integers and the integer sums are
// identical (DynamicQuantizeLinear's float32 definition on both sides); only the float scaling
// differs: ONNX Runtime multiplies the exact int32 sum once, squeeze's simulation sums float
// products. Relative to the largest output (the same bound as tests/deploy, kDynamicRel).
constexpr double kDynamicRel = 1e-4;
// Several dynamic layers in a row: a float difference of the first layer's output can move the
// next layer's input across a rounding boundary, one input step for that element.
constexpr double kDynamicChainRel = 2e-3;
// Integer ops kept as they are (MatMulInteger -> Cast -> Mul): the very float32 operations ONNX
// Runtime runs, in the same order.
constexpr double kPlainOpsRel = 1e-6;

int count_op(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op == op;
  return n;
}

int count_dynamic(const ir::Graph& g) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.attr_int("quant_dynamic", 0) != 0;
  return n;
}

at::Tensor run(const ir::Graph& g, const at::Tensor& x, bool int8) {
  bool was = quant::int8_enabled();
  quant::set_int8_enabled(int8);
  at::Tensor y = exec::Executor(g).forward(x);
  quant::set_int8_enabled(was);
  return y;
}

// max |got - want| <= rel * max |want|, printing the measured error for the record
// (`grep '\[dynimport\]'`).
::testing::AssertionResult close_rel(const std::string& what, const at::Tensor& got, const at::Tensor& want,
                                     double rel) {
  if (!got.defined()) return ::testing::AssertionFailure() << what << ": no output";
  if (!got.sizes().equals(want.sizes()))
    return ::testing::AssertionFailure() << what << ": shape " << got.sizes() << " != " << want.sizes();
  double err = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  double scale = want.abs().max().item<double>();
  std::cout << "[dynimport] " << what << ": max abs error " << err << " = " << (scale > 0 ? err / scale : 0.0)
            << " of max |output| " << scale << " (bound " << rel << ")\n";
  if (err <= rel * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": max abs error " << err << " > " << rel << " * " << scale;
}

ir::Graph dynamic_ptq(const ir::Graph& g, const std::vector<int64_t>& sample, bool per_channel) {
  compress::QuantizeOptions o;
  o.mode = "dynamic";
  o.per_channel = per_channel;
  at::manual_seed(0);
  data::Splits d = testing::random_splits(sample, 64);
  compress::PassContext ctx = testing::pass_context(&d, 32);
  return compress::Quantize(o).run(g, ctx).graph;
}

// Same ops, attributes, weights (bit for bit), biases and weight qspecs, node by node (by name).
// reduce_range is not compared: it says which grid the quantize pass aimed at, while a file holds
// only the integers (the same ones).
void expect_same_quantized_layers(const ir::Graph& want, const ir::Graph& got) {
  int compared = 0;
  for (const auto& n : want.nodes) {
    if (!n.has_param("weight") || !n.param("weight").qspec) continue;
    const ir::Node* m = got.find_node(n.name);
    ASSERT_NE(m, nullptr) << "no imported node named " << n.name;
    ++compared;
    EXPECT_EQ(m->op, n.op) << n.name;
    EXPECT_EQ(m->attr_int("quant_dynamic", 0), n.attr_int("quant_dynamic", 0)) << n.name;
    ASSERT_TRUE(m->has_param("weight") && m->param("weight").qspec) << n.name;
    const ir::QuantSpec& a = *n.param("weight").qspec;
    const ir::QuantSpec& b = *m->param("weight").qspec;
    EXPECT_EQ(b.bits, a.bits) << n.name;
    EXPECT_EQ(b.is_signed, a.is_signed) << n.name;
    EXPECT_EQ(b.axis >= 0 && b.scale.numel() > 1, a.axis >= 0 && a.scale.numel() > 1) << n.name;
    EXPECT_TRUE(at::equal(b.scale.to(at::kFloat).reshape({-1}), a.scale.to(at::kFloat).reshape({-1}))) << n.name;
    auto zero_points = [](const ir::QuantSpec& q) {
      int64_t c = q.scale.numel();
      return q.zero_point.defined() ? q.zero_point.to(at::kLong).reshape({-1}).expand({c}) : at::zeros({c}, at::kLong);
    };
    EXPECT_TRUE(at::equal(zero_points(b), zero_points(a))) << n.name;
    EXPECT_TRUE(at::equal(m->param("weight").value, n.param("weight").value)) << n.name << ": weights differ";
    EXPECT_TRUE(quant::on_grid(m->param("weight").value, b)) << n.name;
    ASSERT_EQ(m->has_param("bias"), n.has_param("bias")) << n.name;
    if (n.has_param("bias")) EXPECT_TRUE(at::equal(m->param("bias").value, n.param("bias").value)) << n.name;
  }
  EXPECT_GT(compared, 0);
}

struct ZooCase {
  std::string zoo;
  std::map<std::string, std::string> params;
  std::vector<int64_t> sample;
  bool per_channel;
};

// 16 random samples of this shape (seed 1).
at::Tensor batch_of(const std::vector<int64_t>& sample) {
  at::manual_seed(1);
  std::vector<int64_t> shape{16};
  shape.insert(shape.end(), sample.begin(), sample.end());
  return at::randn(shape);
}

class DynamicRoundTrip : public ::testing::TestWithParam<ZooCase> {};

TEST_P(DynamicRoundTrip, OnnxExportImportsAsTheSameGraph) {
  const ZooCase& c = GetParam();
  ir::Graph g = dynamic_ptq(models::build(c.zoo, c.params, 3), c.sample, c.per_channel);
  ASSERT_GT(count_dynamic(g), 0);
  TempDir dir;
  std::string path = dir.file("model.onnx");
  io::export_onnx(g, path);
  ir::Graph back = io::import_onnx(path);
  EXPECT_EQ(count_dynamic(back), count_dynamic(g));
  EXPECT_EQ(count_op(back, "MatMulInteger"), 0);
  EXPECT_EQ(count_op(back, "DynamicQuantizeLinear"), 0);
  expect_same_quantized_layers(g, back);

  at::Tensor x = batch_of(c.sample);
  std::string what = c.zoo + (c.per_channel ? " per-channel" : " per-tensor");
  EXPECT_TRUE(close_rel(what + " simulated: imported vs squeeze", run(back, x, false), run(g, x, false), kSameGraphRel));
  EXPECT_TRUE(close_rel(what + " int8: imported vs squeeze", run(back, x, true), run(g, x, true), kSameGraphRel));
  for (const auto& n : back.nodes)
    if (n.attr_int("quant_dynamic", 0) != 0)
      EXPECT_EQ(quant::planned_execution(back, n), quant::planned_execution(g, *g.find_node(n.name))) << n.name;
}

TEST_P(DynamicRoundTrip, QonnxExportImportsAsTheSameGraph) {
  const ZooCase& c = GetParam();
  ir::Graph g = dynamic_ptq(models::build(c.zoo, c.params, 3), c.sample, c.per_channel);
  TempDir dir;
  std::string path = dir.file("model.qonnx.onnx");
  io::export_qonnx(g, path);
  ir::Graph back = io::import_onnx(path);
  EXPECT_EQ(count_dynamic(back), count_dynamic(g));
  EXPECT_EQ(count_op(back, "DynamicQuantizeLinear"), 0);
  EXPECT_EQ(count_op(back, "DequantizeLinear"), 0);
  expect_same_quantized_layers(g, back);
  at::Tensor x = batch_of(c.sample);
  EXPECT_TRUE(close_rel(c.zoo + " qonnx simulated: imported vs squeeze", run(back, x, false), run(g, x, false),
                        kSameGraphRel));
}

INSTANTIATE_TEST_SUITE_P(ZooModels, DynamicRoundTrip,
                         ::testing::Values(ZooCase{"mlp", {{"in_features", "20"}, {"hidden", "32,16"}}, {20}, false},
                                           ZooCase{"mlp", {{"in_features", "20"}, {"hidden", "32,16"}}, {20}, true},
                                           ZooCase{"small_cnn", {{"channels", "8"}}, {1, 28, 28}, false},
                                           ZooCase{"small_cnn", {{"channels", "8"}}, {1, 28, 28}, true}),
                         [](const ::testing::TestParamInfo<ZooCase>& i) {
                           return i.param.zoo + (i.param.per_channel ? "_per_channel" : "_per_tensor");
                         });

// --- ONNX Runtime's quantize_dynamic form, built by hand ---

// Integer weights [out, in] of a layer and their scales; int8 in [-127, 127].
at::Tensor int_weight(int64_t out, int64_t in, at::ScalarType t = at::kChar) {
  if (t == at::kChar) return at::randint(-127, 128, {out, in}, at::kLong).to(at::kChar);
  return at::randint(0, 256, {out, in}, at::kLong).to(at::kByte);
}

enum class ScaleForm { kScalesMul, kAfterCast };

// y = dynamic MatMul of x [N, in] with W^T, as quantize_dynamic writes it; `prefix` names the
// values. scale_form: Mul(cast, Mul(x_scale, w_scale)) or Mul(Mul(cast, x_scale), w_scale).
void add_dynamic_matmul(OnnxMaker& m, const std::string& prefix, const std::string& x, const std::string& y,
                        const at::Tensor& w_int /* [out, in] */, const at::Tensor& w_scale, const at::Tensor& w_zp,
                        const at::Tensor& bias, ScaleForm form) {
  const std::string p = prefix;
  m.node("DynamicQuantizeLinear", {x}, {p + "_xq", p + "_xs", p + "_xz"}, p + "_dql");
  m.init(p + "_W", w_int.t().contiguous()).init(p + "_ws", w_scale).init(p + "_wz", w_zp);
  m.node("MatMulInteger", {p + "_xq", p + "_W", p + "_xz", p + "_wz"}, {p + "_acc"}, p + "_matmul_integer");
  auto* cast = m.node("Cast", {p + "_acc"}, {p + "_accf"}, p + "_cast");
  OnnxMaker::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
  std::string scaled = bias.defined() ? p + "_scaled" : y;
  if (form == ScaleForm::kScalesMul) {
    m.node("Mul", {p + "_xs", p + "_ws"}, {p + "_scales"}, p + "_scales_mul");
    m.node("Mul", {p + "_accf", p + "_scales"}, {scaled}, p + "_output_scale_mul");
  } else {
    m.node("Mul", {p + "_accf", p + "_xs"}, {p + "_xscaled"}, p + "_x_scale_mul");
    m.node("Mul", {p + "_xscaled", p + "_ws"}, {scaled}, p + "_w_scale_mul");
  }
  if (bias.defined()) {
    m.init(p + "_b", bias);
    m.node("Add", {scaled, p + "_b"}, {y}, p + "_bias_add");
  }
}

// Writes the model, imports it, and compares squeeze (simulated and int8) with ONNX Runtime.
void compare_with_onnxruntime(const std::string& what, const OnnxMaker& m, const ir::Graph& g, const at::Tensor& x,
                              double rel) {
  if (!testing::onnxruntime_missing().empty()) GTEST_SKIP() << testing::onnxruntime_missing();
  TempDir dir;
  std::string path = dir.file("model.onnx");
  {
    std::ofstream f(path, std::ios::binary);
    f << m.bytes();
  }
  auto ort = testing::run_onnxruntime(path, {x}, testing::kOrtDisabled);
  ASSERT_EQ(ort.size(), 1u);
  EXPECT_TRUE(close_rel(what + " simulated vs ONNX Runtime", run(g, x, false), ort[0], rel));
  EXPECT_TRUE(close_rel(what + " int8 vs ONNX Runtime", run(g, x, true), ort[0], rel));
  auto opt = testing::run_onnxruntime(path, {x}, testing::kOrtDefault);
  ASSERT_EQ(opt.size(), 1u);
  EXPECT_TRUE(close_rel(what + " simulated vs ONNX Runtime (optimized)", run(g, x, false), opt[0], rel));
}

TEST(OnnxDynamicImport, QuantizeDynamicPerTensorWithScalesMulAndBias) {
  at::manual_seed(2);
  OnnxMaker m;
  m.input("x", {-1, 24}).output("y");
  at::Tensor w = int_weight(10, 24);
  at::Tensor ws = at::scalar_tensor(0.0123f), b = at::randn({10});
  add_dynamic_matmul(m, "fc", "x", "y", w, ws, at::zeros({}, at::kChar), b, ScaleForm::kScalesMul);
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "ort_dynamic.onnx");
  ASSERT_EQ(g.nodes.size(), 1u);
  const ir::Node& n = g.nodes[0];
  EXPECT_EQ(n.op, "Linear");
  EXPECT_EQ(n.name, "fc_bias_add");
  EXPECT_EQ(n.outputs[0], "y");
  EXPECT_EQ(n.attr_int("quant_dynamic", 0), 1);
  const ir::QuantSpec& s = *n.param("weight").qspec;
  EXPECT_EQ(s.bits, 8);
  EXPECT_TRUE(s.is_signed && s.symmetric);
  EXPECT_EQ(s.axis, -1);
  EXPECT_FLOAT_EQ(s.scale.item<float>(), 0.0123f);
  EXPECT_TRUE(at::equal(n.param("weight").value, w.to(at::kFloat) * 0.0123f));
  EXPECT_TRUE(at::equal(n.param("bias").value, b));
  at::Tensor x = at::randn({32, 24}) * 3;
  compare_with_onnxruntime("per-tensor", m, g, x, kDynamicRel);
}

TEST(OnnxDynamicImport, QuantizeDynamicPerChannelScaleAfterCast) {
  at::manual_seed(3);
  OnnxMaker m;
  m.input("x", {-1, 16}).output("y");
  at::Tensor w = int_weight(6, 16);
  at::Tensor ws = at::rand({6}) * 0.02 + 0.001;
  at::Tensor wz = at::zeros({6}, at::kChar);
  add_dynamic_matmul(m, "fc", "x", "y", w, ws, wz, at::Tensor(), ScaleForm::kAfterCast);
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "ort_dynamic.onnx");
  ASSERT_EQ(g.nodes.size(), 1u);
  const ir::Node& n = g.nodes[0];
  EXPECT_EQ(n.op, "Linear");
  EXPECT_EQ(n.attr_int("quant_dynamic", 0), 1);
  EXPECT_FALSE(n.has_param("bias"));
  const ir::QuantSpec& s = *n.param("weight").qspec;
  EXPECT_EQ(s.axis, 0);
  EXPECT_TRUE(at::equal(s.scale, ws));
  EXPECT_TRUE(at::equal(n.param("weight").value, w.to(at::kFloat) * ws.reshape({6, 1})));
  compare_with_onnxruntime("per-channel", m, g, at::randn({32, 16}), kDynamicRel);
}

TEST(OnnxDynamicImport, QuantizeDynamicTwoLayersPerChannelScalesMul) {
  at::manual_seed(4);
  OnnxMaker m;
  m.input("x", {-1, 3, 20}).output("y");  // rank 3: MatMul over the last axis
  add_dynamic_matmul(m, "fc1", "x", "h", int_weight(12, 20), at::rand({12}) * 0.02 + 0.001, at::zeros({12}, at::kChar),
                     at::randn({12}), ScaleForm::kScalesMul);
  m.node("Relu", {"h"}, {"hr"}, "relu");
  add_dynamic_matmul(m, "fc2", "hr", "y", int_weight(5, 12), at::scalar_tensor(0.01f), at::zeros({}, at::kChar),
                     at::randn({5}), ScaleForm::kScalesMul);
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "ort_dynamic.onnx");
  EXPECT_EQ(count_op(g, "Linear"), 2);
  EXPECT_EQ(count_dynamic(g), 2);
  EXPECT_EQ(g.nodes.size(), 3u);
  compare_with_onnxruntime("two layers", m, g, at::randn({8, 3, 20}), kDynamicChainRel);
}

// ONNX Runtime's older default: uint8 weights with a zero point. squeeze keeps them as an
// unsigned affine weight spec (simulated, exactly on the grid).
TEST(OnnxDynamicImport, Uint8WeightsWithZeroPointBecomeAnAffineSpec) {
  at::manual_seed(5);
  OnnxMaker m;
  m.input("x", {-1, 16}).output("y");
  at::Tensor w = int_weight(8, 16, at::kByte);
  add_dynamic_matmul(m, "fc", "x", "y", w, at::scalar_tensor(0.004f), at::scalar_tensor(131, at::kLong).to(at::kByte),
                     at::randn({8}), ScaleForm::kScalesMul);
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "ort_dynamic_u8.onnx");
  ASSERT_EQ(g.nodes.size(), 1u);
  const ir::QuantSpec& s = *g.nodes[0].param("weight").qspec;
  EXPECT_FALSE(s.is_signed);
  EXPECT_FALSE(s.symmetric);
  EXPECT_EQ(s.zero_point.item<int64_t>(), 131);
  EXPECT_TRUE(at::equal(g.nodes[0].param("weight").value, (w.to(at::kFloat) - 131) * 0.004f));
  EXPECT_EQ(quant::planned_execution(g, g.nodes[0]), "simulated");
  compare_with_onnxruntime("uint8 weights", m, g, at::randn({32, 16}), kDynamicRel);
}

TEST(OnnxDynamicImport, ConvIntegerBecomesDynamicConv) {
  at::manual_seed(6);
  OnnxMaker m;
  m.input("x", {-1, 3, 10, 10}).output("y");
  m.node("DynamicQuantizeLinear", {"x"}, {"xq", "xs", "xz"}, "conv_dql");
  at::Tensor w = at::randint(-127, 128, {4, 3, 3, 3}, at::kLong).to(at::kChar);
  m.init("W", w).init("ws", at::scalar_tensor(0.02f)).init("wz", at::zeros({}, at::kChar));
  auto* c = m.node("ConvInteger", {"xq", "W", "xz", "wz"}, {"acc"}, "conv_quant");
  OnnxMaker::attr(c, "pads", std::vector<int64_t>{1, 1, 1, 1});
  OnnxMaker::attr(c, "strides", std::vector<int64_t>{2, 2});
  auto* cast = m.node("Cast", {"acc"}, {"accf"}, "conv_cast");
  OnnxMaker::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
  m.node("Mul", {"xs", "ws"}, {"scales"}, "conv_scales_mul");
  m.node("Mul", {"accf", "scales"}, {"scaled"}, "conv_output_scale_mul");
  m.init("b", at::randn({4, 1, 1}));  // quantize_dynamic's reshaped bias
  m.node("Add", {"scaled", "b"}, {"y"}, "conv");
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "ort_dynamic_conv.onnx");
  ASSERT_EQ(g.nodes.size(), 1u);
  const ir::Node& n = g.nodes[0];
  EXPECT_EQ(n.op, "Conv");
  EXPECT_EQ(n.name, "conv");
  EXPECT_EQ(n.attr_int("quant_dynamic", 0), 1);
  EXPECT_EQ(n.attr_ints("pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(n.attr_ints("strides"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(n.param("bias").value.sizes(), at::IntArrayRef({4}));
  EXPECT_TRUE(at::equal(n.param("weight").value, w.to(at::kFloat) * 0.02f));
  at::Tensor x = at::randn({4, 3, 10, 10});
  // The input really is quantized: the float Conv on the same weights is not the answer.
  at::Tensor float_conv = at::conv2d(x, n.param("weight").value, n.param("bias").value, 2, 1);
  EXPECT_GT((run(g, x, false) - float_conv).abs().max().item<double>(), 1e-4);
  compare_with_onnxruntime("ConvInteger", m, g, x, kDynamicRel);
}

// --- dynamic Conv export: squeeze's own ConvInteger form ---

// A dynamic Conv as ONNX Runtime's quantize_dynamic writes it, with the variations squeeze's
// exporter must carry over: weight type and zero point, per-channel scales, conv attributes, bias.
struct ConvIntegerCase {
  std::string name;
  at::ScalarType weight_type;
  bool per_channel_scale;
  int64_t zero_point;  // the weight's (per tensor)
  int64_t group;
  std::vector<int64_t> strides, pads, dilations;
  bool bias;
};

// x [N, 4, 11, 9] -> ConvInteger -> y; the weight's integers are returned in `w_int`.
OnnxMaker conv_integer_model(const ConvIntegerCase& c, at::Tensor& w_int, int64_t out_channels = 6) {
  OnnxMaker m;
  m.input("x", {-1, 4, 11, 9}).output("y");
  m.node("DynamicQuantizeLinear", {"x"}, {"xq", "xs", "xz"}, "conv_dql");
  std::vector<int64_t> shape{out_channels, 4 / c.group, 3, 3};
  w_int = c.weight_type == at::kChar ? at::randint(-127, 128, shape, at::kLong).to(at::kChar)
                                     : at::randint(0, 256, shape, at::kLong).to(at::kByte);
  at::Tensor ws = c.per_channel_scale ? (at::rand({1, out_channels, 1, 1}) * 0.02 + 0.001) : at::scalar_tensor(0.013f);
  m.init("W", w_int).init("ws", ws).init("wz", at::scalar_tensor(c.zero_point, at::kLong).to(c.weight_type));
  auto* conv = m.node("ConvInteger", {"xq", "W", "xz", "wz"}, {"acc"}, "conv_quant");
  OnnxMaker::attr(conv, "strides", c.strides);
  OnnxMaker::attr(conv, "pads", c.pads);
  OnnxMaker::attr(conv, "dilations", c.dilations);
  OnnxMaker::attr(conv, "group", c.group);
  auto* cast = m.node("Cast", {"acc"}, {"accf"}, "conv_cast");
  OnnxMaker::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
  m.node("Mul", {"xs", "ws"}, {"scales"}, "conv_scales_mul");
  m.node("Mul", {"accf", "scales"}, c.bias ? std::vector<std::string>{"scaled"} : std::vector<std::string>{"y"},
         "conv_output_scale_mul");
  if (c.bias) {
    m.init("b", at::randn({1, out_channels, 1, 1}));
    m.node("Add", {"scaled", "b"}, {"y"}, "conv");
  }
  return m;
}

class DynamicConvExport : public ::testing::TestWithParam<ConvIntegerCase> {};

// Exported as DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul -> Add, which ONNX Runtime runs
// to squeeze's numbers and squeeze reads back as the same dynamic Conv.
TEST_P(DynamicConvExport, OnnxIsConvIntegerThatOnnxRuntimeAndSqueezeReproduce) {
  const ConvIntegerCase& c = GetParam();
  at::manual_seed(10);
  at::Tensor w_int;
  ir::Graph g = io::import_onnx_bytes(conv_integer_model(c, w_int).bytes(), "ort_dynamic_conv.onnx");
  ASSERT_EQ(g.nodes.size(), 1u);
  ASSERT_EQ(g.nodes[0].op, "Conv");
  ASSERT_EQ(count_dynamic(g), 1);
  TempDir dir;
  std::string path = dir.file("model.onnx");
  io::export_onnx(g, path);
  auto counts = testing::op_counts(path);
  EXPECT_EQ(counts["DynamicQuantizeLinear"], 1);
  EXPECT_EQ(counts["ConvInteger"], 1);
  EXPECT_EQ(counts["Conv"], 0);
  EXPECT_EQ(counts["DequantizeLinear"], 0);

  ir::Graph back = io::import_onnx(path);
  ASSERT_EQ(count_dynamic(back), 1);
  EXPECT_EQ(count_op(back, "ConvInteger"), 0);
  expect_same_quantized_layers(g, back);
  const ir::Node& n = g.nodes[0];
  const ir::Node& m = *back.find_node(n.name);
  for (const char* k : {"strides", "pads", "dilations"}) EXPECT_EQ(m.attr_ints(k, {}), n.attr_ints(k, {})) << k;
  EXPECT_EQ(m.attr_int("group", 1), n.attr_int("group", 1));

  at::manual_seed(11);
  at::Tensor x = at::randn({8, 4, 11, 9}) * 2 + 0.5;
  at::Tensor want = run(g, x, false);
  EXPECT_TRUE(close_rel(c.name + " re-imported vs squeeze", run(back, x, false), want, kSameGraphRel));
  // The input really is quantized: the float Conv on the same weights is far from squeeze's answer.
  at::Tensor b = n.has_param("bias") ? n.param("bias").value : at::Tensor();
  at::Tensor float_conv = at::conv2d(at::constant_pad_nd(x, {c.pads[1], c.pads[3], c.pads[0], c.pads[2]}),
                                     n.param("weight").value, b, c.strides, std::vector<int64_t>{0, 0}, c.dilations,
                                     c.group);
  EXPECT_GT((want - float_conv).abs().max().item<double>(), 10 * kDynamicRel * want.abs().max().item<double>());

  if (!testing::onnxruntime_missing().empty()) GTEST_SKIP() << testing::onnxruntime_missing();
  auto ort = testing::run_onnxruntime(path, {x}, testing::kOrtDisabled);
  ASSERT_EQ(ort.size(), 1u);
  EXPECT_TRUE(close_rel(c.name + " export: ONNX Runtime vs squeeze", ort[0], want, kDynamicRel));
  auto opt = testing::run_onnxruntime(path, {x}, testing::kOrtDefault);
  ASSERT_EQ(opt.size(), 1u);
  EXPECT_TRUE(close_rel(c.name + " export: ONNX Runtime (optimized) vs squeeze", opt[0], want, kDynamicRel));
}

// QONNX: the float Conv (its weight a Quant node) reads DynamicQuantizeLinear + DequantizeLinear
// of its input, and squeeze reads it back as the same dynamic Conv.
TEST_P(DynamicConvExport, QonnxQuantizesTheInputAndImportsAsTheSameConv) {
  const ConvIntegerCase& c = GetParam();
  at::manual_seed(10);
  at::Tensor w_int;
  ir::Graph g = io::import_onnx_bytes(conv_integer_model(c, w_int).bytes(), "ort_dynamic_conv.onnx");
  TempDir dir;
  std::string path = dir.file("model.qonnx.onnx");
  io::export_qonnx(g, path);
  auto counts = testing::op_counts(path);
  EXPECT_EQ(counts["DynamicQuantizeLinear"], 1);
  EXPECT_EQ(counts["DequantizeLinear"], 1);
  EXPECT_EQ(counts["Conv"], 1);
  EXPECT_EQ(counts["Quant"], 1);
  ir::Graph back = io::import_onnx(path);
  EXPECT_EQ(count_dynamic(back), 1);
  EXPECT_EQ(count_op(back, "DynamicQuantizeLinear"), 0);
  expect_same_quantized_layers(g, back);
  at::manual_seed(11);
  at::Tensor x = at::randn({8, 4, 11, 9}) * 2 + 0.5;
  EXPECT_TRUE(close_rel(c.name + " qonnx re-imported vs squeeze", run(back, x, false), run(g, x, false), kSameGraphRel));
}

INSTANTIATE_TEST_SUITE_P(
    ConvIntegerForms, DynamicConvExport,
    ::testing::Values(
        ConvIntegerCase{"int8_per_tensor", at::kChar, false, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, true},
        ConvIntegerCase{"int8_per_channel_grouped", at::kChar, true, 0, 2, {1, 2}, {0, 1, 2, 0}, {2, 1}, false},
        ConvIntegerCase{"uint8_zero_point", at::kByte, false, 131, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true},
        ConvIntegerCase{"uint8_per_channel_dilated", at::kByte, true, 120, 1, {2, 1}, {2, 2, 2, 2}, {2, 2}, true}),
    [](const ::testing::TestParamInfo<ConvIntegerCase>& i) { return i.param.name; });

// Only Linear has an int8 dynamic kernel: a dynamic Conv says "simulated", even where its weight
// would run exactly on the int8 kernels (|q| <= 64) and the dynamic Linear next to it says int8.
TEST(OnnxDynamicImport, PlannedExecutionOfADynamicConvIsSimulated) {
  at::manual_seed(12);
  OnnxMaker m;
  m.input("x", {-1, 3, 6, 6}).output("y");
  m.node("DynamicQuantizeLinear", {"x"}, {"xq", "xs", "xz"}, "conv_dql");
  m.init("W", at::randint(-64, 65, {4, 3, 3, 3}, at::kLong).to(at::kChar))
      .init("ws", at::scalar_tensor(0.02f))
      .init("wz", at::zeros({}, at::kChar));
  m.node("ConvInteger", {"xq", "W", "xz", "wz"}, {"acc"}, "conv_quant");
  auto* cast = m.node("Cast", {"acc"}, {"accf"}, "conv_cast");
  OnnxMaker::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
  m.node("Mul", {"xs", "ws"}, {"scales"}, "conv_scales_mul");
  m.node("Mul", {"accf", "scales"}, {"c"}, "conv");
  m.node("Flatten", {"c"}, {"f"}, "flatten");
  add_dynamic_matmul(m, "fc", "f", "y", at::randint(-64, 65, {5, 64}, at::kLong).to(at::kChar), at::scalar_tensor(0.01f),
                     at::zeros({}, at::kChar), at::randn({5}), ScaleForm::kScalesMul);
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "conv_fc_dynamic.onnx");
  ASSERT_EQ(count_dynamic(g), 2);
  const ir::Node* conv = g.find_node("conv");
  const ir::Node* fc = g.find_node("fc_bias_add");
  ASSERT_TRUE(conv && fc);
  ASSERT_EQ(conv->op, "Conv");
  bool was = quant::int8_enabled();
  quant::set_int8_enabled(true);
  EXPECT_EQ(quant::planned_execution(g, *conv), "simulated");
  EXPECT_EQ(quant::planned_execution(g, *fc), quant::int8_available() ? "int8-dynamic" : "simulated");
  quant::set_int8_enabled(false);
  EXPECT_EQ(quant::planned_execution(g, *conv), "simulated");
  quant::set_int8_enabled(was);
  // And it is simulated: the same output with int8 kernels on or off, up to the Linear's int8 sums.
  at::Tensor x = at::randn({4, 3, 6, 6});
  EXPECT_TRUE(close_rel("conv + fc: int8 vs simulated", run(g, x, true), run(g, x, false), kDynamicRel));
}

// --- must not fire ---

// Both operands of MatMulInteger are graph values (a dynamic "attention" product): no constant
// weight, so it stays MatMulInteger, executed exactly.
TEST(OnnxDynamicImport, MatMulIntegerOfTwoValuesStaysIntegerOps) {
  at::manual_seed(7);
  OnnxMaker m;
  m.input("a", {4, 6}).input("b", {6, 5}).output("y");
  m.node("DynamicQuantizeLinear", {"a"}, {"aq", "as", "az"}, "qa");
  m.node("DynamicQuantizeLinear", {"b"}, {"bq", "bs", "bz"}, "qb");
  m.node("MatMulInteger", {"aq", "bq", "az", "bz"}, {"acc"}, "mm");
  auto* cast = m.node("Cast", {"acc"}, {"accf"}, "cast");
  OnnxMaker::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
  m.node("Mul", {"as", "bs"}, {"scales"}, "scales_mul");
  m.node("Mul", {"accf", "scales"}, {"y"}, "out");
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "mmi_values.onnx");
  EXPECT_EQ(count_op(g, "MatMulInteger"), 1);
  EXPECT_EQ(count_op(g, "DynamicQuantizeLinear"), 2);
  EXPECT_EQ(count_dynamic(g), 0);
  EXPECT_EQ(count_op(g, "Linear"), 0);
  at::Tensor a = at::randn({4, 6}), b = at::randn({6, 5});
  at::Tensor y = exec::Executor(g).run({a, b}).at(0);

  // By hand from the operator definitions, in int64 and double.
  auto dql = [](const at::Tensor& v) {
    float lo = std::min(0.0f, v.min().item<float>()), hi = std::max(0.0f, v.max().item<float>());
    float s = (hi - lo) / 255.0f;
    float z = std::nearbyint(std::clamp(-lo / s, 0.0f, 255.0f));
    at::Tensor q = at::clamp(at::round(v / s) + z, 0, 255).to(at::kLong);
    return std::make_tuple(q, s, static_cast<int64_t>(z));
  };
  auto [aq, as, az] = dql(a);
  auto [bq, bs, bz] = dql(b);
  at::Tensor acc = at::matmul((aq - az).to(at::kDouble), (bq - bz).to(at::kDouble)).to(at::kFloat);
  at::Tensor want = acc * (as * bs);
  EXPECT_TRUE(at::equal(y, want)) << (y - want).abs().max();

  if (!testing::onnxruntime_missing().empty()) GTEST_SKIP() << testing::onnxruntime_missing();
  TempDir dir;
  std::string path = dir.file("m.onnx");
  {
    std::ofstream f(path, std::ios::binary);
    f << m.bytes();
  }
  auto ort = testing::run_onnxruntime(path, {a, b}, testing::kOrtDisabled);
  ASSERT_EQ(ort.size(), 1u);
  EXPECT_TRUE(close_rel("MatMulInteger of two values vs ONNX Runtime", y, ort[0], kPlainOpsRel));
}

// A constant-weight MatMulInteger whose result is not scaled the way quantize_dynamic writes it
// (here a Cast then an Add of the zero-point-free sum) stays as plain integer ops; a float MatMul
// next to a dynamic one stays a float Linear.
TEST(OnnxDynamicImport, PartialPatternAndFloatMatMulAreLeftAlone) {
  at::manual_seed(8);
  OnnxMaker m;
  m.input("x", {-1, 8}).output("y").output("z");
  m.node("DynamicQuantizeLinear", {"x"}, {"xq", "xs", "xz"}, "dql");
  at::Tensor w = int_weight(4, 8);
  m.init("W", w.t().contiguous());
  m.node("MatMulInteger", {"xq", "W", "xz"}, {"acc"}, "mm");
  auto* cast = m.node("Cast", {"acc"}, {"accf"}, "cast");
  OnnxMaker::attr(cast, "to", int64_t{onnx::TensorProto::FLOAT});
  at::Tensor offset = at::randn({4});
  m.init("offset", offset);
  m.node("Add", {"accf", "offset"}, {"y"}, "add");
  at::Tensor wf = at::randn({8, 4});
  m.init("Wf", wf);
  m.node("MatMul", {"x", "Wf"}, {"z"}, "float_matmul");
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "partial.onnx");
  EXPECT_EQ(count_op(g, "MatMulInteger"), 1);
  EXPECT_EQ(count_dynamic(g), 0);
  const ir::Node* f = g.find_node("float_matmul");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->op, "Linear");
  EXPECT_FALSE(f->param("weight").qspec.has_value());
  at::Tensor x = at::randn({5, 8});
  auto outs = exec::Executor(g).run({x});
  // By hand: DynamicQuantizeLinear's grid, the exact integer product, then the Add.
  float lo = std::min(0.0f, x.min().item<float>()), hi = std::max(0.0f, x.max().item<float>());
  float xs = (hi - lo) / 255.0f;
  float xz = std::nearbyint(std::clamp(-lo / xs, 0.0f, 255.0f));
  at::Tensor xq = at::clamp(at::round(x / xs) + xz, 0, 255) - xz;
  at::Tensor want = at::matmul(xq.to(at::kDouble), w.t().to(at::kDouble)).to(at::kFloat) + offset;
  EXPECT_TRUE(at::equal(outs[0], want)) << (outs[0] - want).abs().max();
  EXPECT_TRUE(testing::tensors_close(outs[1], at::matmul(x, wf), 1e-5, 1e-6));
}

// --- DynamicQuantizeLinear itself, on the ONNX operator test's examples ---

TEST(OnnxDynamicImport, DynamicQuantizeLinearMatchesTheOnnxOperatorExamples) {
  struct Example {
    std::vector<float> x;
    float scale;
    int64_t zp;
    std::vector<int64_t> y;
  };
  // onnx/backend/test/case/node/dynamicquantizelinear.py, evaluated with numpy.
  std::vector<Example> examples = {
      {{0, 2, -3, -2.5f, 1.34f, 0.5f}, 0.019607844f, 153, {153, 255, 0, 26, 221, 179}},
      {{-1.0f, -2.1f, -1.3f, -2.5f, -3.34f, -4.0f}, 0.015686275f, 255, {191, 121, 172, 96, 42, 0}},
      {{1, 2.1f, 1.3f, 2.5f, 3.34f, 4.0f, 1.5f, 2.6f, 3.9f, 4.0f, 3.0f, 2.345f}, 0.015686275f, 0,
       {64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149}},
  };
  for (const auto& e : examples) {
    OnnxMaker m;
    int64_t n = static_cast<int64_t>(e.x.size());
    m.input("x", {n}).output("y", onnx::TensorProto::UINT8).output("s").output("z", onnx::TensorProto::UINT8);
    m.node("DynamicQuantizeLinear", {"x"}, {"y", "s", "z"}, "dql");
    ir::Graph g = io::import_onnx_bytes(m.bytes(), "dql.onnx");
    auto outs = exec::Executor(g).run({at::tensor(e.x)});
    ASSERT_EQ(outs.size(), 3u);
    EXPECT_EQ(outs[0].scalar_type(), at::kByte);
    EXPECT_TRUE(at::equal(outs[0].to(at::kLong), at::tensor(e.y))) << outs[0];
    EXPECT_EQ(outs[1].item<float>(), e.scale);
    EXPECT_EQ(outs[2].item<int64_t>(), e.zp);
  }
}

// --- the command line ---

TEST(OnnxDynamicImport, CliExportThenInferOnADynamicModel) {
  ir::Graph g = dynamic_ptq(models::build("mlp", {{"in_features", "20"}, {"hidden", "32,16"}}, 3), {20}, false);
  TempDir dir;
  io::save_sqz(g, dir.file("model.sqz"));
  at::manual_seed(9);
  at::Tensor x = at::randn({16, 20});
  data::write_npy(dir.file("x.npy"), x);
  auto cli = [](std::vector<std::string> args) {
    std::ostringstream out, err;
    args.insert(args.begin(), "--quiet");
    int code = cli::run_cli(args, out, err);
    log::set_level(log::Level::kInfo);
    EXPECT_EQ(code, 0) << err.str();
    return code;
  };
  ASSERT_EQ(cli({"export", dir.file("model.sqz"), "--to", "onnx", "--out", dir.file("model.onnx")}), 0);
  ASSERT_EQ(cli({"infer", dir.file("model.onnx"), "--input", dir.file("x.npy"), "--output", dir.file("y.npy")}), 0);
  at::Tensor y = data::read_npy(dir.file("y.npy"));
  ir::Graph back = io::import_onnx(dir.file("model.onnx"));
  EXPECT_EQ(count_dynamic(back), count_dynamic(g));
  // infer runs the default execution (int8 where the CPU is exact): the same as squeeze's own.
  EXPECT_TRUE(close_rel("cli export + infer vs squeeze", y, run(g, x, quant::int8_enabled()), kSameGraphRel));
}

}  // namespace
}  // namespace squeeze
