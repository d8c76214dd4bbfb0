// Real int8 execution (libtorch's quantized kernels) against the simulated integer execution of
// the same quantized graph.
//
// Named tolerance: one output quantization step per layer. Both paths compute the same integer
// dot products; the int8 kernels accumulate in int32 and requantize once (ONEDNN rounds the
// requantization itself), the simulation accumulates the exact grid values in float32 and rounds
// half to even. Results that fall within float32 rounding of a .5 tie can land one step apart.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "squeeze/compress/quantize/int8_exec.h"
#include "squeeze/compress/quantize/quant_math.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/exec/executor.h"
#include "squeeze/ir/builder.h"
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

}  // namespace
}  // namespace squeeze
