#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "squeeze/exec/executor.h"
#include "squeeze/ir/builder.h"
#include "squeeze/ir/graph.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

ir::Graph tiny() {
  ir::GraphBuilder b("tiny", 3);
  std::string x = b.input("x", {2, 8, 8});
  x = b.act("Relu", b.conv(x, 4, 3, 1, 1, 1, true, "conv"));
  x = b.flatten(b.global_avgpool(x));
  return b.finish({b.linear(x, 3, true, "fc")});
}

TEST(Graph, VerifyInfersShapesWithDynamicBatch) {
  ir::Graph g = tiny();
  EXPECT_EQ(g.shape_of("conv"), (ir::Shape{ir::kDynamic, 4, 8, 8}));
  EXPECT_EQ(g.shape_of("fc"), (ir::Shape{ir::kDynamic, 3}));
}

TEST(Graph, CloneIsDeep) {
  ir::Graph g = tiny();
  ir::Graph c = g.clone();
  c.find_node("conv")->param("weight").value.zero_();
  EXPECT_NE(g.find_node("conv")->param("weight").value.abs().sum().item<float>(), 0.0f);
}

TEST(Graph, VerifyRejectsUndefinedValue) {
  ir::Graph g = tiny();
  g.nodes[1].inputs[0] = "nowhere";
  try {
    ir::verify(g);
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("nowhere"), std::string::npos);
  }
}

TEST(Graph, VerifyRejectsDuplicateNamesAndUnknownOps) {
  ir::Graph g = tiny();
  g.nodes[1].name = g.nodes[0].name;
  EXPECT_THROW(ir::verify(g), GraphError);
  ir::Graph h = tiny();
  h.nodes[1].op = "Frobnicate";
  EXPECT_THROW(ir::verify(h), UnsupportedError);
}

TEST(Graph, VerifyRejectsShapeMismatch) {
  ir::Graph g = tiny();
  g.find_node("fc")->param("weight").value = at::zeros({3, 5});
  try {
    ir::verify(g);
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("fc"), std::string::npos) << e.what();
  }
}

TEST(Graph, TopoSortDetectsCycles) {
  ir::Graph g = tiny();
  g.nodes[0].inputs[0] = g.outputs[0];  // conv reads fc's output
  EXPECT_THROW(ir::topo_sort(g), GraphError);
}

TEST(Graph, TopoSortRestoresOrder) {
  ir::Graph g = tiny();
  std::reverse(g.nodes.begin(), g.nodes.end());
  ir::topo_sort(g);
  EXPECT_NO_THROW(ir::verify(g));
  EXPECT_EQ(g.nodes.front().name, "conv");
}

TEST(Graph, RemoveDeadNodes) {
  ir::Graph g = tiny();
  ir::Node dead;
  dead.name = "dead";
  dead.op = "Relu";
  dead.inputs = {"conv"};
  dead.outputs = {"dead"};
  g.nodes.push_back(dead);
  ir::remove_dead_nodes(g);
  EXPECT_EQ(g.find_node("dead"), nullptr);
  EXPECT_NO_THROW(ir::verify(g));
}

TEST(Graph, FlopsCountMultiplyAddAsTwo) {
  ir::Graph g = tiny();
  // conv: 4 outputs x (2*3*3) MACs x 64 positions; fc: 3 x 4 MACs.
  EXPECT_EQ(ir::node_flops(g, *g.find_node("conv")), 2 * 4 * 18 * 64);
  EXPECT_EQ(ir::node_flops(g, *g.find_node("fc")), 2 * 3 * 4);
}

// Per-sample FLOPs wherever the batch axis is: first (CNNs), second (sequence-first attention,
// as torch exports nn.MultiheadAttention), or fixed in the shape.
TEST(Graph, FlopsPerSampleWhereverTheBatchIs) {
  ir::GraphBuilder b("seq", 0);
  std::string x = b.input("x", {4, 8});
  b.linear(x, 16, true, "fc");
  ir::Graph g = b.finish({"fc"});
  const int64_t per_sample = 2 * 8 * 16 * 4;
  EXPECT_EQ(ir::graph_flops(g), per_sample);  // [N, 4, 8]
  g.inputs[0].shape = {4, ir::kDynamic, 8};   // [L, N, 8]
  ir::verify(g);
  EXPECT_EQ(ir::graph_flops(g), per_sample);
  g.inputs[0].shape = {3, 4, 8};  // a fixed batch of 3
  ir::verify(g);
  EXPECT_EQ(ir::graph_flops(g), per_sample);
}

TEST(Graph, InferredShapesMatchExecutionOnEveryZooModel) {
  for (const auto& entry : models::zoo()) {
    std::map<std::string, std::string> params;
    if (entry.name == "resnet18") params["input_size"] = "64";
    ir::Graph g = models::build(entry.name, params, 0);
    // Run with batch 2 and compare every value's shape to the inferred one.
    ir::Graph probe = g.clone();
    probe.outputs.clear();
    for (const auto& n : probe.nodes) probe.outputs.push_back(n.outputs[0]);
    auto in_shape = g.inputs[0].shape;
    in_shape[0] = 2;
    at::NoGradGuard no_grad;
    auto outs = exec::Executor(probe).run({at::randn(in_shape)});
    for (size_t i = 0; i < outs.size(); ++i) {
      ir::Shape s = g.shape_of(probe.outputs[i]);
      ASSERT_EQ(s[0], ir::kDynamic) << entry.name << " " << probe.outputs[i];
      s[0] = 2;
      EXPECT_EQ(ir::Shape(outs[i].sizes().begin(), outs[i].sizes().end()), s) << entry.name << " " << probe.outputs[i];
    }
  }
}

}  // namespace
}  // namespace squeeze
