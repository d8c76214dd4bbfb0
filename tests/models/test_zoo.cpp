#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "squeeze/exec/executor.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"

namespace squeeze {
namespace {

TEST(Zoo, EveryModelBuildsAndRuns) {
  for (const auto& e : models::zoo()) {
    std::map<std::string, std::string> params{{"num_classes", "7"}};
    if (e.name == "resnet18") params["input_size"] = "32";
    ir::Graph g = models::build(e.name, params, 0);
    auto shape = g.inputs[0].shape;
    shape[0] = 3;
    at::NoGradGuard no_grad;
    at::Tensor y = exec::Executor(g).forward(at::randn(shape));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{3, 7})) << e.name;
  }
}

TEST(Zoo, SmallCnnHasTheDesignParameterCount) {
  // DESIGN.md section 5's example baseline: 421,642 parameters.
  EXPECT_EQ(models::build("small_cnn", {}, 0).num_params(), 421642);
}

TEST(Zoo, JetTaggerIsTheHls4mlBenchmark) {
  ir::Graph g = models::build("jet_tagger", {}, 0);
  EXPECT_EQ(g.num_params(), 16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5);
}

TEST(Zoo, ResnetsAcceptAnyInputChannelsAndSize) {
  ir::Graph g = models::build("resnet20", {{"in_channels", "1"}, {"input_size", "28"}}, 0);
  EXPECT_EQ(g.inputs[0].shape, (ir::Shape{ir::kDynamic, 1, 28, 28}));
  ir::Graph r = models::build("resnet18", {{"in_channels", "1"}, {"input_size", "28"}, {"num_classes", "10"}}, 0);
  at::NoGradGuard no_grad;
  EXPECT_EQ(exec::Executor(r).forward(at::randn({2, 1, 28, 28})).size(1), 10);
}

TEST(Zoo, MlpFlattensAnImageInput) {
  // What a workflow on Fashion-MNIST asks for: the same layers as the default [784] input.
  ir::Graph g = models::build("mlp", {{"in_channels", "1"}, {"input_size", "28"}, {"num_classes", "10"}}, 0);
  EXPECT_EQ(g.inputs[0].shape, (ir::Shape{ir::kDynamic, 1, 28, 28}));
  EXPECT_EQ(g.num_params(), models::build("mlp", {}, 0).num_params());
  at::NoGradGuard no_grad;
  EXPECT_EQ(exec::Executor(g).forward(at::randn({2, 1, 28, 28})).sizes(), (at::IntArrayRef{2, 10}));
  EXPECT_NO_THROW(models::build("mlp", {{"in_channels", "3"}, {"input_size", "8"}, {"in_features", "192"}}, 0));
  EXPECT_THROW(models::build("mlp", {{"in_channels", "3"}, {"input_size", "8"}, {"in_features", "784"}}, 0),
               ConfigError);
}

TEST(Zoo, SeedsAreDeterministic) {
  auto a = models::build("lenet5", {}, 5), b = models::build("lenet5", {}, 5), c = models::build("lenet5", {}, 6);
  EXPECT_TRUE(a.nodes[0].param("weight").value.equal(b.nodes[0].param("weight").value));
  EXPECT_FALSE(a.nodes[0].param("weight").value.equal(c.nodes[0].param("weight").value));
}

TEST(Zoo, UnknownModelAndParameterAreConfigErrors) {
  try {
    models::build("smal_cnn", {}, 0);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("small_cnn"), std::string::npos);
  }
  EXPECT_THROW(models::build("small_cnn", {{"num_clases", "3"}}, 0), ConfigError);
  EXPECT_THROW(models::build("small_cnn", {{"num_classes", "three"}}, 0), ConfigError);
}

}  // namespace
}  // namespace squeeze

namespace squeeze {
namespace {

TEST(Zoo, ChannelScaleIsNotTheImageWidth) {
  ir::Graph g = models::build("small_cnn", {{"channels", "8"}, {"height", "32"}, {"width", "24"}}, 0);
  EXPECT_EQ(g.inputs[0].shape, (ir::Shape{ir::kDynamic, 1, 32, 24}));
  EXPECT_EQ(g.find_node("conv1")->param("weight").value.size(0), 8);
  ir::Graph r = models::build("resnet20", {{"channels", "4"}}, 0);
  EXPECT_EQ(r.find_node("stem")->param("weight").value.size(0), 4);
}

}  // namespace
}  // namespace squeeze
