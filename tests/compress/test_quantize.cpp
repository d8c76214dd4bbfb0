#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "squeeze/compress/quantize/observers.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/compress/registry.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/builder.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using compress::Quantize;
using compress::QuantizeOptions;

ir::QuantSpec spec(int bits, bool is_signed, double scale, int64_t zp = 0) {
  ir::QuantSpec s;
  s.bits = bits;
  s.is_signed = is_signed;
  s.scale = at::scalar_tensor(scale, at::kFloat);
  s.zero_point = at::scalar_tensor(zp, at::kLong);
  return s;
}

std::vector<int64_t> ints(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<float> floats(const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// ---- quantization arithmetic, against hand-computed values ----

TEST(QuantMath, Ranges) {
  ir::QuantSpec s;
  s.bits = 8;
  EXPECT_EQ(quant::qrange(s).qmin, -128);
  EXPECT_EQ(quant::qrange(s).qmax, 127);
  s.narrow_range = true;
  EXPECT_EQ(quant::qrange(s).qmin, -127);
  s.bits = 3;
  EXPECT_EQ(quant::qrange(s).qmin, -3);
  EXPECT_EQ(quant::qrange(s).qmax, 3);
  s.is_signed = false;
  s.narrow_range = false;
  s.bits = 4;
  EXPECT_EQ(quant::qrange(s).qmin, 0);
  EXPECT_EQ(quant::qrange(s).qmax, 15);
  s.bits = 2;
  s.narrow_range = true;
  EXPECT_EQ(quant::qrange(s).qmin, 1);
  EXPECT_EQ(quant::qrange(s).qmax, 3);
  s.bits = 1;
  EXPECT_THROW(quant::qrange(s), ConfigError);
}

TEST(QuantMath, ReduceRangeUsesOneBitLessAndStoresAllBits) {
  ir::QuantSpec s;
  s.bits = 8;
  s.reduce_range = true;
  EXPECT_EQ(quant::grid_bits(s), 7);
  EXPECT_EQ(quant::qrange(s).qmin, -64);
  EXPECT_EQ(quant::qrange(s).qmax, 63);
  s.narrow_range = true;
  EXPECT_EQ(quant::qrange(s).qmin, -63);
  s.narrow_range = false;
  // Symmetric scale: max |x| / 63, so 6.3 is q = 63 and -10 clamps to -64.
  quant::choose_qparams(s, -6.3, 6.3);
  EXPECT_FLOAT_EQ(s.scale.item<float>(), 0.1f);
  EXPECT_EQ(ints(quant::quantize(at::tensor({6.3f, -10.0f, 0.26f}), s)), (std::vector<int64_t>{63, -64, 3}));
  EXPECT_NE(quant::describe(s).find("7-bit grid"), std::string::npos);
  s.is_signed = false;
  EXPECT_EQ(quant::qrange(s).qmax, 127);
  s.bits = 2;
  EXPECT_THROW(quant::validate_spec(s, "w"), ConfigError);
}

TEST(QuantMath, RoundingModesOnTies) {
  at::Tensor x = at::tensor({-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 0.49f});
  ir::QuantSpec s = spec(8, true, 1.0);
  EXPECT_EQ(ints(quant::quantize(x, s)), (std::vector<int64_t>{-2, -2, 0, 0, 2, 2, 0}));
  s.rounding = "half_up";
  EXPECT_EQ(ints(quant::quantize(x, s)), (std::vector<int64_t>{-2, -1, 0, 1, 2, 3, 0}));
  // With a scale and zero point: x / 0.5 = {-5, -3, -1, 1, 3, 5, 0.98} + 10.
  s = spec(8, false, 0.5, 10);
  at::Tensor y = at::tensor({-1.25f, -0.75f, -0.25f, 0.25f, 0.75f, 1.25f, 0.245f});
  EXPECT_EQ(ints(quant::quantize(y, s)), (std::vector<int64_t>{8, 8, 10, 10, 12, 12, 10}));
  s.rounding = "half_up";
  EXPECT_EQ(ints(quant::quantize(y, s)), (std::vector<int64_t>{8, 9, 10, 11, 12, 13, 10}));
}

TEST(QuantMath, NarrowRangeAndClamping) {
  at::Tensor x = at::tensor({-100.0f, -8.0f, -7.4f, 3.0f, 7.0f, 100.0f});
  ir::QuantSpec s = spec(4, true, 1.0);
  EXPECT_EQ(ints(quant::quantize(x, s)), (std::vector<int64_t>{-8, -8, -7, 3, 7, 7}));
  s.narrow_range = true;
  EXPECT_EQ(ints(quant::quantize(x, s)), (std::vector<int64_t>{-7, -7, -7, 3, 7, 7}));
  EXPECT_EQ(floats(quant::fake_quantize(x, s)), (std::vector<float>{-7, -7, -7, 3, 7, 7}));
}

TEST(QuantMath, PerChannelSymmetric) {
  // Channel 0: max |w| = 2 -> scale 2/127; channel 1: max |w| = 0.5 -> scale 0.5/127.
  at::Tensor w = at::tensor({1.0f, -2.0f, 0.5f, 0.25f}).reshape({2, 2});
  ir::QuantSpec s;
  s.bits = 8;
  s.axis = 0;
  at::Tensor flat = w.reshape({2, -1});
  quant::choose_qparams(s, std::get<0>(flat.min(1)), std::get<0>(flat.max(1)));
  EXPECT_EQ(floats(s.scale), (std::vector<float>{2.0f / 127.0f, 0.5f / 127.0f}));
  EXPECT_EQ(ints(s.zero_point), (std::vector<int64_t>{0, 0}));
  // 1 / (2/127) = 63.5 -> 64 (half to even); -127; 127; 0.25 / (0.5/127) = 63.5 -> 64.
  EXPECT_EQ(ints(quant::quantize(w, s)), (std::vector<int64_t>{64, -127, 127, 64}));
  at::Tensor d = quant::dequantize(quant::quantize(w, s), s);
  EXPECT_EQ(floats(d), (std::vector<float>{64.0f * (2.0f / 127.0f), -127.0f * (2.0f / 127.0f),
                                           127.0f * (0.5f / 127.0f), 64.0f * (0.5f / 127.0f)}));
  EXPECT_TRUE(quant::on_grid(d, s));
  EXPECT_FALSE(quant::on_grid(w, s));
}

TEST(QuantMath, AffineAndPowerOfTwoParams) {
  ir::QuantSpec s;
  s.bits = 8;
  s.is_signed = false;
  s.symmetric = false;
  quant::choose_qparams(s, -1.0, 3.0);
  // scale 4/255, zero point 0 - round(-1 / (4/255)) = round(63.75) = 64
  EXPECT_FLOAT_EQ(s.scale.item<float>(), 4.0f / 255.0f);
  EXPECT_EQ(s.zero_point.item<int64_t>(), 64);
  EXPECT_EQ(quant::quantize(at::tensor({0.0f}), s).item<int64_t>(), 64);  // 0 is exact
  // A range not containing 0 is widened to it.
  quant::choose_qparams(s, 2.0, 4.0);
  EXPECT_EQ(s.zero_point.item<int64_t>(), 0);
  EXPECT_FLOAT_EQ(s.scale.item<float>(), 4.0f / 255.0f);

  ir::QuantSpec p;
  p.bits = 8;
  p.power_of_two = true;
  quant::choose_qparams(p, -1.0, 1.0);  // 1/127 rounded up to 2^-6
  EXPECT_EQ(p.scale.item<float>(), 0.015625f);
  p.bits = 4;
  quant::choose_qparams(p, -1.0, 0.5);  // 1/7 -> 2^-2
  EXPECT_EQ(p.scale.item<float>(), 0.25f);
  // Symmetric unsigned: zero point mid-range.
  ir::QuantSpec u;
  u.bits = 8;
  u.is_signed = false;
  quant::choose_qparams(u, -2.0, 1.0);
  EXPECT_EQ(u.zero_point.item<int64_t>(), 128);
  EXPECT_FLOAT_EQ(u.scale.item<float>(), 2.0f / 127.0f);
  // A zero range gives scale 1.
  quant::choose_qparams(u, 0.0, 0.0);
  EXPECT_EQ(u.scale.item<float>(), 1.0f);
}

TEST(QuantMath, FakeQuantStraightThroughGradient) {
  ir::QuantSpec s = spec(4, true, 0.5);  // range [-4, 3.5]
  at::Tensor x = at::tensor({-5.0f, -1.3f, 0.2f, 3.4f, 4.0f}).requires_grad_(true);
  at::Tensor y = quant::fake_quantize(x, s);
  EXPECT_EQ(floats(y.detach()), (std::vector<float>{-4.0f, -1.5f, 0.0f, 3.5f, 3.5f}));
  y.sum().backward();
  EXPECT_EQ(floats(x.grad()), (std::vector<float>{0, 1, 1, 1, 0}));
  // LSQ: a scale that requires grad gets a gradient.
  ir::QuantSpec l = s;
  l.scale = at::scalar_tensor(0.5, at::kFloat).requires_grad_(true);
  at::Tensor x2 = at::tensor({-1.3f, 0.2f, 3.4f});
  quant::fake_quantize(x2, l).sum().backward();
  ASSERT_TRUE(l.scale.grad().defined());
}

TEST(QuantMath, GridValuesArePackedBySqz) {
  at::Tensor w = at::randn({16, 9}, at::kFloat);
  ir::GraphBuilder b("t", 0);
  std::string x = b.input("x", {9});
  b.linear(x, 16, true, "fc");
  ir::Graph g = b.finish({"fc"});
  ir::Graph q = g.clone();
  QuantizeOptions o;
  o.act_bits = 0;
  o.weight_bits = 4;
  compress::PassContext ctx;
  q = Quantize(o).run(g, ctx).graph;
  const ir::Param& p = q.find_node("fc")->param("weight");
  ASSERT_TRUE(p.qspec.has_value());
  EXPECT_TRUE(quant::on_grid(p.value, *p.qspec));
  // 144 weights at 4 bits = 72 bytes instead of 576; plus 16 float biases, 16 scales and 16 int64
  // zero points: 328 bytes instead of 640.
  EXPECT_EQ(io::stored_size_bytes(g), 640);
  EXPECT_EQ(io::stored_size_bytes(q), 328);
  squeeze::testing::TempDir tmp;
  auto path = tmp.file("sqz_quant_test.sqz");
  io::save_sqz(q, path);
  ir::Graph back = io::load_sqz(path);
  EXPECT_TRUE(back.find_node("fc")->param("weight").value.equal(p.value));
  std::filesystem::remove(path);
}

// ---- observers ----

TEST(QuantObservers, RangesOfEachKind) {
  at::Tensor x = at::randn({20000}, at::TensorOptions().dtype(at::kFloat));
  x[0] = 50.0f;  // one outlier
  ir::QuantSpec s;
  s.bits = 8;
  s.is_signed = false;
  s.symmetric = false;
  quant::Observer mm("minmax"), pc("percentile", 99.9), mse("mse"), ent("entropy"), ma("moving_average");
  for (auto* o : {&mm, &pc, &mse, &ent, &ma}) o->observe(x);
  EXPECT_DOUBLE_EQ(mm.range(s).second, 50.0);
  EXPECT_LT(pc.range(s).second, 5.0);
  EXPECT_GT(pc.range(s).second, 2.5);
  EXPECT_LT(mse.range(s).second, 50.0);
  EXPECT_LT(ent.range(s).second, 50.0);
  EXPECT_GT(ent.range(s).second, 1.0);
  EXPECT_DOUBLE_EQ(ma.range(s).second, 50.0);  // first batch taken as is
  ma.observe(x * 0.0f);
  EXPECT_NEAR(ma.range(s).second, 45.0, 1e-9);  // momentum 0.1
  EXPECT_THROW(quant::Observer("median"), ConfigError);
}

// ---- the pass ----

data::Splits tiny_data(int64_t n = 256) {
  data::Splits s;
  s.train.x = at::randn({n, 1, 28, 28});
  s.train.y = at::randint(0, 10, {n}, at::kLong);
  s.val = s.train.head(64);
  s.test = s.train.head(64);
  s.sample_shape = {1, 28, 28};
  s.num_classes = 10;
  return s;
}

compress::PassResult quantize(const ir::Graph& g, const QuantizeOptions& o, const data::Splits* d) {
  compress::PassContext ctx = testing::pass_context(d, 64);
  return Quantize(o).run(g, ctx);
}

TEST(QuantizePass, PtqInt8SmallCnn) {
  at::manual_seed(0);
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits d = tiny_data();
  auto r = quantize(g, QuantizeOptions{}, &d);
  ASSERT_TRUE(r.changed);
  for (const char* name : {"conv1", "conv2", "fc1", "fc2"}) {
    const ir::Node& n = *r.graph.find_node(name);
    ASSERT_TRUE(n.param("weight").qspec) << name;
    EXPECT_EQ(n.param("weight").qspec->axis, 0);
    EXPECT_TRUE(quant::on_grid(n.param("weight").value, *n.param("weight").qspec)) << name;
    EXPECT_TRUE(n.out_qspec.has_value()) << name;
    EXPECT_FALSE(n.param("bias").qspec) << name;  // biases stay float
  }
  // The graph input is quantized by an Identity node.
  ASSERT_TRUE(r.graph.find_node("input_quant"));
  EXPECT_TRUE(r.graph.find_node("input_quant")->out_qspec);
  double ratio = double(io::stored_size_bytes(g)) / double(io::stored_size_bytes(r.graph));
  EXPECT_GE(ratio, 3.9);
  // Outputs stay close to the float model.
  at::Tensor x = d.test.x.narrow(0, 0, 32);
  at::Tensor yf = exec::Executor(g).forward(x), yq = exec::Executor(r.graph).forward(x);
  double rel = (yq - yf).norm().item<double>() / yf.norm().item<double>();
  EXPECT_LT(rel, 0.05);
  EXPECT_NE(r.summary.find("ran int8"), std::string::npos) << r.summary;
  // The input graph is untouched.
  EXPECT_FALSE(g.find_node("conv1")->param("weight").qspec);
}

TEST(QuantizePass, OutputBitsKeepTheLogitsOnAFinerGrid) {
  at::manual_seed(0);
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits d = tiny_data();
  const std::string logits = g.outputs.at(0);
  auto bits_of = [&](const ir::Graph& q, const std::string& value) {
    const ir::Node* p = q.producer(value);
    return p && p->out_qspec ? p->out_qspec->bits : -1;
  };
  QuantizeOptions o;
  o.weight_bits = 4;
  o.act_bits = 4;
  // Not set: the model's output is on the activation grid like every other point.
  auto plain = quantize(g, o, &d);
  EXPECT_EQ(bits_of(plain.graph, logits), 4);
  EXPECT_EQ(plain.summary.find("model's output"), std::string::npos) << plain.summary;
  o.output_bits = 8;
  auto wide = quantize(g, o, &d);
  EXPECT_EQ(bits_of(wide.graph, logits), 8);
  EXPECT_EQ(bits_of(wide.graph, wide.graph.find_node("fc1")->outputs[0]), 4);  // only the output
  EXPECT_EQ(bits_of(wide.graph, "input_quant"), 4);
  EXPECT_NE(wide.summary.find("the model's output at 8 bits"), std::string::npos) << wide.summary;
  // 256 levels of logits follow the float model more closely than 16.
  at::Tensor x = d.test.x.narrow(0, 0, 32);
  at::Tensor yf = exec::Executor(g).forward(x);
  auto err = [&](const ir::Graph& q) { return (exec::Executor(q).forward(x) - yf).norm().item<double>(); };
  EXPECT_LT(err(wide.graph), err(plain.graph));
}

TEST(QuantizePass, NothingToQuantizeLeavesTheGraph) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  QuantizeOptions o;
  o.exclude = {"Conv", "Linear"};
  auto r = quantize(g, o, nullptr);
  EXPECT_FALSE(r.changed);
  for (const auto& n : r.graph.nodes) EXPECT_FALSE(n.has_param("weight") && n.param("weight").qspec);
}

TEST(QuantizePass, FoldsBatchNormExactly) {
  ir::Graph g = models::build("resnet20", {{"input_size", "8"}}, 0);
  // Non-trivial statistics.
  for (auto& n : g.nodes)
    if (n.op == "BatchNorm") {
      n.param("running_mean").value.uniform_(-0.5, 0.5);
      n.param("running_var").value.uniform_(0.5, 2.0);
      n.param("weight").value.detach().uniform_(0.5, 1.5);
    }
  ir::Graph f = g.clone();
  int folded = Quantize::fold_batchnorm(f);
  EXPECT_EQ(folded, 21);
  ir::verify(f);
  for (const auto& n : f.nodes) EXPECT_NE(n.op, "BatchNorm");
  at::Tensor x = at::randn({4, 3, 8, 8});
  EXPECT_TRUE(squeeze::testing::tensors_close(exec::Executor(f).forward(x), exec::Executor(g).forward(x), 1e-4, 1e-4));
}

TEST(QuantizePass, PerLayerBitsExclusionsAndWeightsOnly) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  QuantizeOptions o;
  o.act_bits = 0;
  o.weight_bits = 4;
  o.layers = {{"conv*", 6}, {"conv2", 3}};
  o.exclude = {"fc2"};
  auto r = quantize(g, o, nullptr);
  EXPECT_EQ(r.graph.find_node("conv1")->param("weight").qspec->bits, 6);
  EXPECT_EQ(r.graph.find_node("conv2")->param("weight").qspec->bits, 3);  // exact name wins
  EXPECT_EQ(r.graph.find_node("fc1")->param("weight").qspec->bits, 4);
  EXPECT_FALSE(r.graph.find_node("fc2")->param("weight").qspec);
  for (const auto& n : r.graph.nodes) EXPECT_FALSE(n.out_qspec) << n.name;
  // 3-bit weights take at most 7 distinct values per channel.
  at::Tensor w = r.graph.find_node("conv2")->param("weight").value;
  EXPECT_LE(std::get<0>(at::_unique(w[0])).numel(), 8);
  // Activation quantization without data is an error that says what to do.
  try {
    quantize(g, QuantizeOptions{}, nullptr);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("act_bits: 0"), std::string::npos) << e.what();
  }
}

TEST(QuantizePass, OptionsFromParamsValidate) {
  auto make = [](std::vector<std::pair<std::string, std::string>> kv) {
    Params p("experiments[0].stages[0].params");
    for (auto& [k, v] : kv) p.set(k, Value::scalar(v));
    return compress::find_method("quantization")->make(p);
  };
  auto error = [&](std::vector<std::pair<std::string, std::string>> kv) {
    try {
      make(kv);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NO_THROW(make({{"mode", "qat"}, {"weight_bits", "4"}, {"lsq", "true"}}));
  EXPECT_NE(error({{"weight_bits", "9"}}).find("weight_bits"), std::string::npos);
  EXPECT_NE(error({{"weight_bits", "1"}}).find("weight_bits"), std::string::npos);
  EXPECT_NE(error({{"act_bits", "1"}}).find("act_bits"), std::string::npos);
  EXPECT_NE(error({{"output_bits", "1"}}).find("output_bits"), std::string::npos);
  EXPECT_NE(error({{"output_bits", "8"}, {"act_bits", "0"}}).find("act_bits: 0"), std::string::npos);
  EXPECT_NE(error({{"mode", "dynamic"}, {"output_bits", "8"}}).find("output_bits"), std::string::npos);
  EXPECT_NO_THROW(make({{"mode", "qat"}, {"act_bits", "4"}, {"output_bits", "8"}}));
  EXPECT_NE(error({{"lsq", "true"}}).find("lsq"), std::string::npos);
  EXPECT_NE(error({{"mode", "dynamic"}, {"weight_bits", "4"}}).find("weight_bits"), std::string::npos);
  EXPECT_NE(error({{"mode", "dynamic"}, {"act_bits", "4"}}).find("act_bits"), std::string::npos);
  EXPECT_NE(error({{"observer", "median"}}).find("observer"), std::string::npos);
  EXPECT_NE(error({{"freeze_observers_after", "1"}}).find("freeze_observers_after"), std::string::npos);
  EXPECT_NE(error({{"wieght_bits", "4"}}).find("weight_bits"), std::string::npos);  // did you mean
  EXPECT_NO_THROW(make({{"reduce_range", "true"}}));
  EXPECT_NO_THROW(make({{"reduce_range", "False"}}));
  EXPECT_NE(error({{"reduce_range", "yes"}}).find("reduce_range"), std::string::npos);
  // Per-layer bits are checked and named.
  Params p("s.params");
  auto layers = std::make_shared<Params>("s.params.layers");
  layers->set("fc1", Value::scalar("12"));
  p.set("layers", Value::map(layers));
  try {
    compress::find_method("quantize")->make(p);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("layers.fc1"), std::string::npos) << e.what();
  }
}

TEST(QuantizePass, DynamicLinear) {
  ir::Graph g = models::build("mlp", {{"in_features", "32"}, {"hidden", "64"}}, 0);
  QuantizeOptions o;
  o.mode = "dynamic";
  o.per_channel = false;
  o.act_bits = 8;
  auto r = quantize(g, o, nullptr);
  int dyn = 0;
  for (const auto& n : r.graph.nodes)
    if (n.op == "Linear") {
      EXPECT_EQ(n.attr_int("quant_dynamic", 0), 1);
      ++dyn;
    }
  EXPECT_GT(dyn, 0);
  at::Tensor x = at::randn({16, 32});
  at::Tensor yf = exec::Executor(g).forward(x), yq = exec::Executor(r.graph).forward(x);
  EXPECT_LT((yq - yf).abs().max().item<double>(), 0.05 * yf.abs().max().item<double>() + 1e-3);
  // Per-channel dynamic runs on the int8 kernels too and agrees.
  o.per_channel = true;
  auto pc = quantize(g, o, nullptr);
  at::Tensor yp = exec::Executor(pc.graph).forward(x);
  EXPECT_LT((yp - yf).abs().max().item<double>(), 0.05 * yf.abs().max().item<double>() + 1e-3);
  if (quant::int8_available()) EXPECT_NE(pc.summary.find("ran int8"), std::string::npos) << pc.summary;
}

TEST(QuantizePass, QatTrainsShadowWeightsAndSnapsThem) {
  at::manual_seed(0);
  ir::Graph g = models::build("lenet5", {}, 0);
  data::Splits d = tiny_data(128);
  QuantizeOptions o;
  o.mode = "qat";
  o.weight_bits = 4;
  o.observer_update_every = 1;
  Quantize pass(o);
  compress::PassContext ctx = testing::pass_context(&d, 32);
  auto r = pass.run(g, ctx);
  ir::Graph q = std::move(r.graph);
  at::Tensor before = q.find_node("classifier")->param("weight").value.clone();
  train::TrainOptions t;
  t.epochs = 1;
  t.lr = 1e-2;
  auto hook = pass.finetune_hook();
  ASSERT_TRUE(hook);
  train::fit(q, d, t, 32, 0, hook);
  pass.finalize(q);
  const ir::Param& p = q.find_node("classifier")->param("weight");
  EXPECT_FALSE(p.value.equal(before));  // trained
  EXPECT_TRUE(quant::on_grid(p.value, *p.qspec));
  EXPECT_FALSE(p.value.requires_grad());
}

TEST(QuantizePass, QatObserversFreeze) {
  at::manual_seed(0);
  ir::Graph g = models::build("lenet5", {}, 0);
  data::Splits d = tiny_data(128);
  for (int64_t freeze : {0, -1}) {
    QuantizeOptions o;
    o.mode = "qat";
    o.observer_update_every = 1;
    o.freeze_observers_after = freeze;
    Quantize pass(o);
    compress::PassContext ctx = testing::pass_context(&d, 32);
    ir::Graph q = pass.run(g, ctx).graph;
    at::Tensor before = q.find_node("conv2")->out_qspec->scale.clone();
    train::TrainOptions t;
    t.epochs = 1;
    t.lr = 1e-2;
    train::fit(q, d, t, 32, 0, pass.finetune_hook());
    EXPECT_EQ(q.find_node("conv2")->out_qspec->scale.equal(before), freeze == 0) << freeze;
  }
}

TEST(QuantizePass, LsqLearnsWeightScales) {
  at::manual_seed(0);
  ir::Graph g = models::build("lenet5", {}, 0);
  data::Splits d = tiny_data(128);
  QuantizeOptions o;
  o.mode = "qat";
  o.weight_bits = 3;
  o.lsq = true;
  Quantize pass(o);
  compress::PassContext ctx = testing::pass_context(&d, 32);
  ir::Graph q = pass.run(g, ctx).graph;
  at::Tensor scale_before = q.find_node("conv1")->param("weight").qspec->scale.detach().clone();
  train::TrainOptions t;
  t.epochs = 1;
  t.lr = 1e-2;
  train::fit(q, d, t, 32, 0, pass.finetune_hook());
  pass.finalize(q);
  const ir::Param& p = q.find_node("conv1")->param("weight");
  EXPECT_FALSE(p.qspec->scale.requires_grad());
  EXPECT_FALSE(p.qspec->scale.equal(scale_before));
  EXPECT_TRUE(p.qspec->scale.gt(0).all().item<bool>());
  EXPECT_TRUE(quant::on_grid(p.value, *p.qspec));
}

// reduce_range: auto follows the probe of this CPU's int8 kernels (ctest runs this suite on the
// machine's best ISA and again with ONEDNN_MAX_CPU_ISA=AVX2, so both answers are exercised).
TEST(QuantizePass, ReduceRangeFollowsTheInt8Probe) {
  at::manual_seed(0);
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits d = tiny_data(128);
  for (const char* mode : {"auto", "true", "false"}) {
    QuantizeOptions o;
    o.reduce_range = mode;
    auto r = quantize(g, o, &d);
    bool reduced = std::string(mode) == "true" || (std::string(mode) == "auto" && quant::int8_saturates());
    for (const char* name : {"conv1", "conv2", "fc1", "fc2"}) {
      const ir::QuantSpec& w = *r.graph.find_node(name)->param("weight").qspec;
      EXPECT_EQ(w.bits, 8) << mode << " " << name;  // stored in 8 bits either way
      EXPECT_EQ(quant::grid_bits(w), reduced ? 7 : 8) << mode << " " << name;
      EXPECT_LE(quant::quantize(r.graph.find_node(name)->param("weight").value, w).abs().max().item<int64_t>(),
                reduced ? 64 : 127);
      // Never silently wrong: an 8-bit grid on a saturating CPU is simulated, otherwise int8.
      if (quant::int8_available())
        EXPECT_EQ(quant::planned_execution(r.graph, *r.graph.find_node(name)),
                  !reduced && quant::int8_saturates() ? "simulated" : "int8")
            << mode << " " << name;
    }
    if (reduced) EXPECT_NE(r.summary.find("7-bit grid"), std::string::npos) << r.summary;
    if (!reduced && quant::int8_saturates())
      EXPECT_NE(r.summary.find("saturate"), std::string::npos) << r.summary;
    // The ratio stays that of 8-bit storage.
    EXPECT_GE(double(io::stored_size_bytes(g)) / double(io::stored_size_bytes(r.graph)), 3.9) << mode;
    // The 7-bit grid survives a .sqz round trip.
    squeeze::testing::TempDir tmp;
    auto path = tmp.file("sqz_reduce_range.sqz");
    io::save_sqz(r.graph, path);
    ir::Graph back = io::load_sqz(path);
    std::filesystem::remove(path);
    EXPECT_EQ(back.find_node("conv1")->param("weight").qspec->reduce_range, reduced) << mode;
  }
  QuantizeOptions bad;
  bad.reduce_range = "maybe";
  EXPECT_THROW(Quantize{bad}, ConfigError);
}

TEST(QuantizePass, SqzRoundTripKeepsTheQuantizedGraph) {
  at::manual_seed(0);
  ir::Graph g = models::build("lenet5", {}, 0);
  data::Splits d = tiny_data(128);
  QuantizeOptions o;
  o.weight_bits = 5;
  o.act_bits = 6;
  ir::Graph q = quantize(g, o, &d).graph;
  squeeze::testing::TempDir tmp;
  auto path = tmp.file("sqz_quant_graph.sqz");
  io::save_sqz(q, path);
  EXPECT_LE(std::filesystem::file_size(path), io::stored_size_bytes(q) + 16384);
  ir::Graph back = io::load_sqz(path);
  std::filesystem::remove(path);
  at::Tensor x = d.test.x.narrow(0, 0, 8);
  EXPECT_TRUE(exec::Executor(back).forward(x).equal(exec::Executor(q).forward(x)));
  EXPECT_EQ(back.find_node("conv2")->out_qspec->bits, 6);
  EXPECT_EQ(back.find_node("conv2")->param("weight").qspec->bits, 5);
}

TEST(QuantizePass, BiasCorrectionRemovesTheMeanError) {
  at::manual_seed(0);
  ir::Graph g = models::build("lenet5", {}, 0);
  data::Splits d = tiny_data(256);
  QuantizeOptions o;
  o.weight_bits = 2;
  o.act_bits = 0;
  ir::Graph plain = quantize(g, o, &d).graph;
  o.bias_correction = true;
  ir::Graph corrected = quantize(g, o, &d).graph;
  at::Tensor x = d.train.x.narrow(0, 0, 256);
  at::Tensor yf = exec::Executor(g).forward(x);
  auto mean_error = [&](const ir::Graph& q) {
    return (exec::Executor(q).forward(x) - yf).mean(0).abs().mean().item<double>();
  };
  EXPECT_LT(mean_error(corrected), 0.5 * mean_error(plain));
}

TEST(QuantizePass, SensitivityRanksLayers) {
  at::manual_seed(0);
  ir::Graph g = models::build("lenet5", {}, 0);
  data::Splits d = tiny_data(128);
  QuantizeOptions o;
  o.weight_bits = 2;
  o.sensitivity = true;
  o.sensitivity_samples = 64;
  squeeze::testing::TempDir tmp;
  auto csv = tmp.file("sqz_sens.csv");
  o.sensitivity_out = csv;
  Quantize pass(o);
  compress::PassContext ctx = testing::pass_context(&d, 64);
  auto r = pass.run(g, ctx);
  EXPECT_EQ(pass.sensitivity().size(), 5u);
  EXPECT_NE(r.summary.find("sensitivity"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(csv));
  std::filesystem::remove(csv);
}

}  // namespace
}  // namespace squeeze
