#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/compress/registry.h"
#include "squeeze/exec/executor.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using compress::MagnitudePrune;
using compress::MagnitudePruneOptions;

double sparsity(const ir::Graph& g, const std::string& node) {
  const auto& w = g.find_node(node)->param("weight").value;
  return w.eq(0).sum().item<double>() / double(w.numel());
}

int64_t prunable_zeros(const ir::Graph& g, int64_t* total) {
  int64_t zeros = 0;
  *total = 0;
  for (const auto& n : g.nodes)
    if (n.op == "Conv" || n.op == "Linear") {
      zeros += n.param("weight").value.eq(0).sum().item<int64_t>();
      *total += n.param("weight").value.numel();
    }
  return zeros;
}

compress::PassResult prune(const ir::Graph& g, MagnitudePruneOptions o) {
  compress::PassContext ctx;
  return MagnitudePrune(o).run(g, ctx);
}

TEST(MagnitudePrune, GlobalReachesTheTargetExactly) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  MagnitudePruneOptions o;
  o.ratio = 0.8;
  auto r = prune(g, o);
  EXPECT_TRUE(r.changed);
  int64_t total = 0;
  int64_t zeros = prunable_zeros(r.graph, &total);
  EXPECT_EQ(zeros, std::llround(0.8 * double(total)));
  // Global: the big fc1 layer is pruned harder than the small first conv.
  EXPECT_GT(sparsity(r.graph, "fc1"), sparsity(r.graph, "conv1"));
  // Masks match the zeros and the input graph is untouched.
  for (const auto& n : r.graph.nodes)
    if (n.has_param("weight")) {
      ASSERT_TRUE(n.param("weight").mask.has_value()) << n.name;
      EXPECT_TRUE(n.param("weight").mask->eq(0).equal(n.param("weight").value.eq(0))) << n.name;
    }
  EXPECT_EQ(sparsity(g, "fc1"), 0.0);
}

TEST(MagnitudePrune, GlobalRemovesTheSmallestMagnitudes) {
  ir::Graph g = models::build("mlp", {{"in_features", "8"}, {"hidden", "16"}, {"num_classes", "4"}}, 0);
  MagnitudePruneOptions o;
  o.ratio = 0.5;
  auto r = prune(g, o);
  float max_pruned = 0, min_kept = 1e9;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i].op != "Linear") continue;
    at::Tensor before = g.nodes[i].param("weight").value.abs();
    at::Tensor mask = *r.graph.nodes[i].param("weight").mask;
    if (mask.eq(0).any().item<bool>()) max_pruned = std::max(max_pruned, before.masked_select(mask.eq(0)).max().item<float>());
    min_kept = std::min(min_kept, before.masked_select(mask.eq(1)).min().item<float>());
  }
  EXPECT_LE(max_pruned, min_kept);
}

TEST(MagnitudePrune, LocalPrunesEveryLayerToTheRatio) {
  ir::Graph g = models::build("lenet5", {}, 0);
  MagnitudePruneOptions o;
  o.ratio = 0.6;
  o.scope = "local";
  auto r = prune(g, o);
  for (const auto& n : r.graph.nodes)
    if (n.op == "Conv" || n.op == "Linear") EXPECT_NEAR(sparsity(r.graph, n.name), 0.6, 0.01) << n.name;
}

TEST(MagnitudePrune, ExclusionsByPatternAndOpType) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  MagnitudePruneOptions o;
  o.ratio = 0.5;
  o.exclude = {"fc*", "Conv"};
  auto r = prune(g, o);
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(sparsity(r.graph, "fc1"), 0.0);
  o.exclude = {"conv1"};
  auto r2 = prune(g, o);
  EXPECT_EQ(sparsity(r2.graph, "conv1"), 0.0);
  EXPECT_GT(sparsity(r2.graph, "fc1"), 0.3);
}

TEST(MagnitudePrune, ZeroRatioLeavesOutputsIdentical) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  MagnitudePruneOptions o;
  o.ratio = 0.0;
  auto r = prune(g, o);
  EXPECT_FALSE(r.changed);
  at::Tensor x = at::randn({4, 1, 28, 28});
  at::NoGradGuard no_grad;
  EXPECT_TRUE(exec::Executor(g).forward(x).equal(exec::Executor(r.graph).forward(x)));
}

TEST(MagnitudePrune, NothingPrunableIsNotAnError) {
  ir::GraphBuilder b("no-weights", 0);
  ir::Graph g = b.finish({b.act("Relu", b.input("x", {4}))});
  auto r = prune(g, MagnitudePruneOptions{});
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(r.graph.nodes.size(), 1u);
}

TEST(MagnitudePrune, ExistingMasksArePreserved) {
  ir::Graph g = models::build("mlp", {{"in_features", "8"}, {"hidden", "16"}}, 0);
  MagnitudePruneOptions o;
  o.ratio = 0.3;
  auto first = prune(g, o);
  o.ratio = 0.6;
  auto second = prune(first.graph, o);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i].op != "Linear") continue;
    at::Tensor m1 = *first.graph.nodes[i].param("weight").mask, m2 = *second.graph.nodes[i].param("weight").mask;
    EXPECT_TRUE((m1.eq(0) & m2.eq(1)).any().item<bool>() == false) << "a pruned weight came back";
  }
}

TEST(MagnitudePrune, PolynomialScheduleRampsToTheTarget) {
  MagnitudePruneOptions o;
  o.ratio = 0.8;
  o.schedule = "polynomial";
  o.initial_ratio = 0.0;
  o.end_fraction = 0.5;
  MagnitudePrune p(o);
  EXPECT_DOUBLE_EQ(p.scheduled_ratio(0, 100), 0.0);
  EXPECT_NEAR(p.scheduled_ratio(25, 100), 0.8 - 0.8 * 0.125, 1e-12);
  EXPECT_DOUBLE_EQ(p.scheduled_ratio(50, 100), 0.8);
  EXPECT_DOUBLE_EQ(p.scheduled_ratio(90, 100), 0.8);
  ir::Graph g = models::build("mlp", {{"in_features", "8"}, {"hidden", "16"}}, 0);
  auto hook = p.finetune_hook();
  ASSERT_TRUE(hook);
  hook(g, 100, 100);
  int64_t total = 0;
  int64_t zeros = prunable_zeros(g, &total);
  EXPECT_EQ(zeros, std::llround(0.8 * double(total)));
}

TEST(MagnitudePrune, RandomCriterionIsSeeded) {
  ir::Graph g = models::build("mlp", {{"in_features", "8"}, {"hidden", "16"}}, 0);
  MagnitudePruneOptions o;
  o.ratio = 0.5;
  o.criterion = "random";
  auto a = prune(g, o), b = prune(g, o);
  EXPECT_TRUE(a.graph.nodes[0].param("weight").mask->equal(*b.graph.nodes[0].param("weight").mask));
}

TEST(MagnitudePrune, OptionsFromParamsValidate) {
  auto make = [](const std::string& key, const std::string& value) {
    Params p("experiments[0].stages[0].params");
    p.set(key, Value::scalar(value));
    return compress::find_method("pruning")->make(p);
  };
  EXPECT_NO_THROW(make("ratio", "0.5"));
  EXPECT_THROW(make("ratoi", "0.5"), ConfigError);
  EXPECT_THROW(make("ratio", "1.5"), ConfigError);
  EXPECT_THROW(make("criterion", "l3"), ConfigError);
  EXPECT_THROW(make("scope", "everywhere"), ConfigError);
  try {
    make("ratoi", "0.5");
  } catch (const ConfigError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("ratio"), std::string::npos) << m;  // did-you-mean
    EXPECT_NE(m.find("experiments[0].stages[0].params"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace squeeze
