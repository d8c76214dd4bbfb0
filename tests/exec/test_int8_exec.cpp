// Real int8 execution (libtorch's quantized kernels) against the simulated integer execution of
// the same quantized graph.
//
// Named tolerance: one output quantization step per layer. Both paths compute the same integer
// dot products; the int8 kernels accumulate in int32 and requantize once (ONEDNN rounds the
// requantization itself), the simulation accumulates the exact grid values in float32 and rounds
// half to even. Results that fall within float32 rounding of a .5 tie can land one step apart.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/ir/builder.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/models/zoo.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using testing::random_splits;

using testing::ptq;

struct Outputs {
  at::Tensor int8, simulated;
};

Outputs both(const ir::Graph& g, const at::Tensor& x) {
  Outputs o;
  quant::set_int8_enabled(true);
  o.int8 = exec::Executor(g).forward(x);
  quant::set_int8_enabled(false);
  o.simulated = exec::Executor(g).forward(x);
  quant::set_int8_enabled(true);
  return o;
}

double output_step(const ir::Graph& g) {
  const ir::Node* last = g.producer(g.outputs[0]);
  return last->out_qspec->scale.item<double>();
}

class QuantInt8 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!quant::int8_available()) GTEST_SKIP() << "no ONEDNN quantized engine";
    at::manual_seed(0);
  }
};

TEST_F(QuantInt8, LinearLayersMatchSimulation) {
  ir::Graph g = models::build("mlp", {{"in_features", "64"}, {"hidden", "128,64"}}, 0);
  data::Splits d = random_splits({64});
  for (bool per_channel : {true, false}) {
    ir::Graph q = ptq(g, d, 8, per_channel);
    for (const auto& n : q.nodes)
      if (n.op == "Linear") EXPECT_EQ(quant::planned_execution(q, n), "int8") << n.name;
    for (int64_t batch : {1, 64}) {
      at::Tensor x = d.train.x.narrow(0, 0, batch);
      Outputs o = both(q, x);
      double step = output_step(q);
      EXPECT_LE((o.int8 - o.simulated).abs().max().item<double>(), step * 1.001)
          << "per_channel " << per_channel << " batch " << batch;
      // Most outputs agree bit for bit.
      EXPECT_GT(o.int8.eq(o.simulated).to(at::kFloat).mean().item<double>(), 0.9);
    }
  }
}

TEST_F(QuantInt8, ConvLayersMatchSimulation) {
  ir::GraphBuilder b("convs", 0);
  std::string x = b.input("x", {3, 12, 12});
  x = b.act("Relu", b.conv(x, 8, 3, 1, 1, 1, true, "c1"));
  x = b.maxpool(x, 2, 2);
  x = b.act("Relu", b.conv(x, 16, 3, 2, 1, 1, true, "c2"));
  x = b.conv(x, 16, 1, 1, 0, 1, false, "c3");
  ir::Graph g = b.finish({x});
  data::Splits d = random_splits({3, 12, 12});
  ir::Graph q = ptq(g, d);
  for (const auto& n : q.nodes)
    if (n.op == "Conv") EXPECT_EQ(quant::planned_execution(q, n), "int8") << n.name;
  Outputs o = both(q, d.train.x.narrow(0, 0, 16));
  // Errors compound over three layers: allow one step per layer at the output's scale.
  double step = output_step(q);
  double diff = (o.int8 - o.simulated).abs().max().item<double>();
  EXPECT_LE(diff, 3.0 * step * 1.001);
  EXPECT_GT(o.int8.eq(o.simulated).to(at::kFloat).mean().item<double>(), 0.8);
}

TEST_F(QuantInt8, SmallCnnAgreesWithSimulationAndFloat) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits d = random_splits({1, 28, 28});
  ir::Graph q = ptq(g, d);
  at::Tensor x = d.train.x.narrow(0, 0, 64);
  Outputs o = both(q, x);
  at::Tensor yf = exec::Executor(g).forward(x);
  EXPECT_GT(o.int8.argmax(1).eq(o.simulated.argmax(1)).to(at::kFloat).mean().item<double>(), 0.95);
  EXPECT_LT((o.int8 - yf).norm().item<double>() / yf.norm().item<double>(), 0.05);
}

TEST_F(QuantInt8, ResidualNetworkWithQuantizedAdds) {
  ir::Graph g = models::build("resnet20", {{"input_size", "8"}}, 0);
  data::Splits d = random_splits({3, 8, 8});
  ir::Graph q = ptq(g, d);
  for (const auto& n : q.nodes)
    if (n.op == "Conv") EXPECT_EQ(quant::planned_execution(q, n), "int8") << n.name;
  at::Tensor x = d.train.x.narrow(0, 0, 32);
  Outputs o = both(q, x);
  // 20 requantized layers in sequence: rounding differences compound, so compare relatively.
  double rel = (o.int8 - o.simulated).norm().item<double>() / o.simulated.norm().item<double>();
  EXPECT_LT(rel, 0.05);
  at::Tensor yf = exec::Executor(g).forward(x);
  EXPECT_LT((o.int8 - yf).norm().item<double>() / yf.norm().item<double>(), 0.1);
}

// Full-range 8-bit weights (reduce_range: false) with full-range uint8 inputs: int8 where the
// kernels are exact, simulated where they would saturate; equal to the simulation either way.
TEST_F(QuantInt8, FullRangeWeightsAreExactOrSimulated) {
  ir::Graph g = models::build("mlp", {{"in_features", "256"}, {"hidden", "256"}}, 0);
  data::Splits d = random_splits({256});
  d.train.x = d.train.x.abs() * 4.0;  // wide, positive inputs: uint8 codes near 255
  ir::Graph q = ptq(g, d, 8, true, "false");
  for (const auto& n : q.nodes)
    if (n.op == "Linear")
      EXPECT_EQ(quant::planned_execution(q, n), quant::int8_saturates() ? "simulated" : "int8") << n.name;
  Outputs o = both(q, d.train.x.narrow(0, 0, 64));
  EXPECT_LE((o.int8 - o.simulated).abs().max().item<double>(), output_step(q) * 1.001);
}

// Relu after an int8 Conv/Linear/Add is applied by the kernel's requantization (conv2d_relu,
// linear_relu, add_relu): the Relu node is skipped and the result is the unfused execution's.
TEST_F(QuantInt8, ReluFusesIntoInt8ConvLinearAndAdd) {
  exec::ExecutorOptions plain;
  plain.optimize_inference = false;
  for (auto [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"small_cnn", {1, 28, 28}}, {"resnet20", {3, 8, 8}}}) {
    ir::Graph g = models::build(name, {{"input_size", std::to_string(shape[1])}}, 0);
    data::Splits d = random_splits(shape);
    ir::Graph q = ptq(g, d);
    at::Tensor x = d.train.x.narrow(0, 0, 16);
    exec::Executor fused(q);
    at::Tensor y = fused.forward(x), y_plain = exec::Executor(q, plain).forward(x);
    EXPECT_LE((y - y_plain).abs().max().item<double>(), output_step(q) * 1.001) << name;
    std::vector<double> us = testing::node_times(fused, x);
    int skipped = 0;
    for (size_t i = 0; i < q.nodes.size(); ++i) {
      const ir::Node& n = q.nodes[i];
      if (n.op != "Relu") continue;
      const ir::Node* p = q.producer(n.inputs[0]);
      bool int8_producer = p && ((p->op == "Add" && p->out_qspec) || quant::planned_execution(q, *p) == "int8") &&
                           q.consumers(n.inputs[0]).size() == 1;
      if (int8_producer) {
        EXPECT_EQ(us[i], 0.0) << name << ": " << n.name << " should be fused into " << p->name;
        ++skipped;
      } else {
        EXPECT_GT(us[i], 0.0) << name << ": " << n.name << " must run";
      }
    }
    EXPECT_GT(skipped, 0) << name;
  }
}

TEST_F(QuantInt8, ReluIsNotFusedIntoSimulatedLayers) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits d = random_splits({1, 28, 28});
  ir::Graph q = ptq(g, d, 4);  // 4-bit activations: simulated, float Relu
  at::Tensor x = d.train.x.narrow(0, 0, 8);
  exec::Executor ex(q);
  std::vector<double> us = testing::node_times(ex, x);
  for (size_t i = 0; i < q.nodes.size(); ++i)
    if (q.nodes[i].op == "Relu") EXPECT_GT(us[i], 0.0) << q.nodes[i].name;
  exec::ExecutorOptions plain;
  plain.optimize_inference = false;
  EXPECT_TRUE(testing::tensors_close(ex.forward(x), exec::Executor(q, plain).forward(x), 1e-5, 1e-5));
}

TEST_F(QuantInt8, BelowEightBitsIsSimulatedExactly) {
  ir::Graph g = models::build("mlp", {{"in_features", "16"}, {"hidden", "32"}}, 0);
  data::Splits d = random_splits({16});
  ir::Graph q = ptq(g, d, 4);
  for (const auto& n : q.nodes)
    if (n.op == "Linear") EXPECT_EQ(quant::planned_execution(q, n), "simulated") << n.name;
  at::Tensor x = d.train.x.narrow(0, 0, 8);
  Outputs o = both(q, x);
  EXPECT_TRUE(o.int8.equal(o.simulated));
  // Every output lies on the last layer's 4-bit grid.
  const ir::Node* last = q.producer(q.outputs[0]);
  EXPECT_TRUE(quant::on_grid(o.simulated, *last->out_qspec));
}

TEST_F(QuantInt8, NarrowWeightsWithEightBitActivationsRunInt8) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits d = random_splits({1, 28, 28});
  compress::QuantizeOptions o;
  o.weight_bits = 4;
  o.act_bits = 8;
  compress::PassContext ctx = testing::pass_context(&d, 64);
  ir::Graph q = compress::Quantize(o).run(g, ctx).graph;
  for (const auto& n : q.nodes)
    if (n.op == "Conv" || n.op == "Linear") EXPECT_EQ(quant::planned_execution(q, n), "int8") << n.name;
  Outputs out = both(q, d.train.x.narrow(0, 0, 32));
  EXPECT_GT(out.int8.argmax(1).eq(out.simulated.argmax(1)).to(at::kFloat).mean().item<double>(), 0.95);
  EXPECT_LE((out.int8 - out.simulated).abs().max().item<double>(), 4.0 * output_step(q) * 1.001);
}

TEST_F(QuantInt8, DynamicLinearAgainstDequantizedReference) {
  ir::Graph g = models::build("mlp", {{"in_features", "64"}, {"hidden", "128"}}, 0);
  compress::QuantizeOptions o;
  o.mode = "dynamic";
  o.per_channel = false;
  compress::PassContext ctx;
  ir::Graph q = compress::Quantize(o).run(g, ctx).graph;
  for (const auto& n : q.nodes)
    if (n.op == "Linear") EXPECT_EQ(quant::planned_execution(q, n), "int8-dynamic") << n.name;
  at::Tensor x = at::randn({32, 64});
  Outputs out = both(q, x);  // simulated: fake-quantized batch, float matmul
  double scale = out.simulated.abs().max().item<double>();
  EXPECT_LT((out.int8 - out.simulated).abs().max().item<double>(), 0.02 * scale);
}

// ---- the probe of this CPU's int8 kernels ----

c10::intrusive_ptr<LinearPackedParamsBase> prepack_linear(const at::Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("quantized::linear_prepack", "")
                       .typed<c10::intrusive_ptr<LinearPackedParamsBase>(at::Tensor, c10::optional<at::Tensor>)>();
  return op.call(w, c10::nullopt);
}

// Integer outputs of a raw oneDNN int8 linear (no squeeze code in between) against the exact
// int64 result, in output steps. Inputs near 255 and weights in [max/2, max] make every pair of
// products large, as in the worst case of a real layer.
int64_t raw_linear_error_steps(int64_t weight_max) {
  at::manual_seed(1);
  at::Tensor xq = at::randint(192, 256, {32, 512}, at::kLong);
  at::Tensor wq = at::randint(weight_max / 2, weight_max + 1, {64, 512}, at::kLong);
  at::Tensor exact = at::matmul(xq, wq.t());  // int64: exact
  double step = double(exact.max().item<int64_t>()) / 250.0;
  at::Tensor x = at::_make_per_tensor_quantized_tensor(xq.to(at::kByte), 1.0, 0);
  at::Tensor w = at::_make_per_tensor_quantized_tensor(wq.to(at::kChar), 1.0, 0);
  at::Tensor y = prepack_linear(w)->apply(x, step, 0).int_repr().to(at::kLong);
  at::Tensor expected = at::round(exact.to(at::kDouble) / step).to(at::kLong);
  return (y - expected).abs().max().item<int64_t>();
}

TEST(Int8Probe, NamesTheIsaAndAgreesWithARealLayer) {
  const quant::Int8Probe& p = quant::int8_probe();
  if (!p.available) GTEST_SKIP() << "no ONEDNN quantized engine";
  EXPECT_EQ(p.engine, "onednn");
  EXPECT_FALSE(p.isa.empty());
  EXPECT_NE(p.isa, "unknown");
  EXPECT_EQ(&quant::int8_probe(), &p);  // decided once
  auto env = quant::int8_environment();
  EXPECT_EQ(env["int8_isa"], p.isa);
  EXPECT_EQ(env["int8_saturates"], p.saturates ? "true" : "false");
  if (p.saturates) {
    EXPECT_TRUE(std::llabs(p.linear_q - 200) > 1 || std::llabs(p.conv_q - 200) > 1 ||
                std::fabs(p.dynamic_ratio - 1.0) > 0.01);
  } else {
    EXPECT_LE(std::llabs(p.linear_q - 200), 1);
    EXPECT_LE(std::llabs(p.conv_q - 200), 1);
    EXPECT_NEAR(p.dynamic_ratio, 1.0, 0.01);
  }
  // The probe's answer holds for a real 512-wide layer: full-range weights are off by many steps
  // exactly when the probe says the kernels saturate; weights within +-64 are exact everywhere.
  int64_t full = raw_linear_error_steps(127);
  if (p.saturates)
    EXPECT_GT(full, 1);
  else
    EXPECT_LE(full, 1);
  EXPECT_LE(raw_linear_error_steps(64), 1);
  // oneDNN 2.6's AVX2 int8 kernels (vpmaddubsw) saturate on every CPU.
  const char* isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (isa && std::string(isa) == "AVX2") {
    EXPECT_EQ(p.isa, "avx2");
    EXPECT_TRUE(p.saturates);
  }
}

}  // namespace
}  // namespace squeeze
