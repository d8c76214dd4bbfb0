// Structured pruning of the ONNX light models (224x224 real architectures: AlexNet, VGG-19,
// ResNet-50, DenseNet-121, Inception v1/v2, ShuffleNet, SqueezeNet, ZFNet). Slow: each model is
// run several times at full size.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "compress/prune_test_util.h"
#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/io/onnx.h"
#include "squeeze/ir/ops.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

std::vector<std::string> light_models() {
  std::vector<std::string> out;
  std::string dir = testing::shared_dir() + "/conformance/onnx/light";
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".onnx") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The light models' weights are constants (all equal); give them random values so that
// criteria rank channels and outputs depend on which channels stay.
void randomize(ir::Graph& g) {
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (auto& n : g.nodes)
    for (auto& [key, p] : n.params) {
      if (!p.value.is_floating_point()) continue;
      if (key == "running_var") {
        p.value = at::rand(p.value.sizes(), gen) + 0.5;
      } else if (n.op == "Conv" || n.op == "Linear" || n.op == "BatchNorm") {
        int64_t fan_in = p.value.dim() > 1 ? p.value.numel() / p.value.size(0) : 1;
        p.value = at::randn(p.value.sizes(), gen) / std::sqrt(double(fan_in));
        if (n.op == "BatchNorm" && key == "weight") p.value = p.value.abs() + 0.5;
      }
    }
}

TEST(StructuredPruneOnnxSlow, LightModelsPruneVerifyRunShrinkAndStayExact) {
  auto models = light_models();
  ASSERT_FALSE(models.empty()) << "no light models under " << testing::shared_dir();
  for (const auto& path : models) {
    std::string name = std::filesystem::path(path).stem().string();
    SCOPED_TRACE(name);
    ir::Graph g = io::import_onnx(path);
    randomize(g);
    compress::DependencyGraph d(g);
    std::cout << name << ": " << d.groups().size() << " prunable groups, " << d.num_channels() << " channels, "
              << d.num_blocked() << " blocked:";
    for (const auto& grp : d.groups()) std::cout << " " << grp.name << "(" << grp.size << ")";
    std::cout << "\n";
    ASSERT_FALSE(d.groups().empty());
    at::Tensor x = testing::random_input(g, 1);
    at::Tensor y0 = testing::run_graph(g, x);
    int64_t flops0 = ir::graph_flops(g);
    double prev = double(flops0);
    for (double ratio : {0.3, 0.5, 0.7}) {
      compress::StructuredPruneOptions o;
      o.ratio = ratio;
      compress::PassContext ctx;
      auto r = compress::StructuredPrune(o).run(g, ctx);
      ASSERT_TRUE(r.changed) << r.summary;
      ASSERT_NO_THROW(ir::verify(r.graph));
      at::Tensor y = testing::run_graph(r.graph, x);
      EXPECT_EQ(y.sizes(), y0.sizes());
      double f = double(ir::graph_flops(r.graph));
      EXPECT_LT(f, prev);
      prev = f;
      std::cout << "  ratio " << ratio << ": FLOPs " << double(flops0) / f << "x fewer\n";
    }
    compress::StructuredPruneOptions zero;
    zero.ratio = 0.0;
    compress::PassContext ctx;
    EXPECT_TRUE(testing::run_graph(compress::StructuredPrune(zero).run(g, ctx).graph, x).equal(y0));
    // Exactness: zero every other channel of every group, then remove exactly those.
    ir::Graph zeroed;
    ir::Graph small = testing::prune_every_other(d, g, &zeroed);
    at::Tensor want = testing::run_graph(zeroed, x), got = testing::run_graph(small, x);
    double scale = want.abs().max().item<double>() + 1e-12;
    EXPECT_TRUE(testing::tensors_close(got / scale, want / scale, 1e-4, 1e-5));
  }
}

// The pytorch-converted cases are single modules between the graph input and output: nothing is
// prunable (inputs and outputs keep their channels), so the pass must leave them unchanged.
TEST(StructuredPruneOnnxSlow, SingleModuleCasesAreLeftAlone) {
  std::string dir = testing::shared_dir() + "/conformance/onnx/pytorch-converted";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no " << dir;
  int checked = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ir::Graph g;
    try {
      g = io::import_onnx((e.path() / "model.onnx").string());
    } catch (const UserError&) {
      continue;  // not importable: covered by the conformance suite
    }
    if (g.inputs.size() != 1 || g.inputs[0].dtype != at::kFloat) continue;
    compress::StructuredPruneOptions o;
    o.ratio = 0.5;
    compress::PassContext ctx;
    auto r = compress::StructuredPrune(o).run(g, ctx);
    EXPECT_FALSE(r.changed) << e.path().filename() << ": " << r.summary;
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

}  // namespace
}  // namespace squeeze
