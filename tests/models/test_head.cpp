// replace_head: the last classifier of a model replaced by a fresh one of another width.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/exec/executor.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/data.h"
#include "testing/errors.h"

namespace squeeze {
namespace {

using testing::error_of;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// conv -> gap -> flatten -> fc (1000) [-> softmax]
ir::Graph linear_classifier(bool softmax) {
  ir::GraphBuilder b("clf", 1);
  std::string x = b.input("x", {3, 8, 8});
  x = b.act("Relu", b.conv(x, 16, 3, 1, 1, 1, true, "conv"));
  x = b.flatten(b.global_avgpool(x));
  x = b.linear(x, 1000, true, "fc");
  if (softmax) x = b.node("Softmax", {x}, {{"axis", int64_t{1}}});
  return b.finish({x});
}

TEST(ReplaceHead, LinearThroughSoftmax) {
  ir::Graph g = linear_classifier(true);
  const at::Tensor conv_w = g.find_node("conv")->param("weight").value.clone();
  std::string what = models::replace_head(g, 10, 7);
  EXPECT_HAS(what, "'fc': Linear 16 -> 1000 replaced by a new Linear 16 -> 10");
  EXPECT_EQ(train::output_classes(g), 10);
  const ir::Node* fc = g.find_node("fc");
  EXPECT_EQ(fc->param("weight").value.sizes(), (at::IntArrayRef{10, 16}));
  EXPECT_EQ(fc->param("bias").value.sizes(), (at::IntArrayRef{10}));
  EXPECT_TRUE(fc->param("weight").trainable);
  // PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  EXPECT_LE(fc->param("weight").value.abs().max().item<double>(), 0.25 + 1e-6);
  EXPECT_EQ(g.nodes.back().op, "Softmax");  // kept
  EXPECT_TRUE(g.find_node("conv")->param("weight").value.equal(conv_w));  // the rest untouched
  at::Tensor y = exec::Executor(g).forward(at::rand({2, 3, 8, 8}));
  EXPECT_EQ(y.sizes(), (at::IntArrayRef{2, 10}));
  EXPECT_TRUE(squeeze::testing::tensors_close(y.sum(1), at::ones({2}), 1e-5, 1e-5));
}

TEST(ReplaceHead, OneByOneConvHead) {
  // SqueezeNet's classifier: a 1x1 conv, Relu, global pooling, flatten.
  ir::GraphBuilder b("sq", 1);
  std::string x = b.input("x", {3, 8, 8});
  x = b.act("Relu", b.conv(x, 8, 3, 1, 1, 1, true, "features"));
  x = b.act("Relu", b.conv(x, 1000, 1, 1, 0, 1, true, "classifier"));
  x = b.flatten(b.global_avgpool(x));
  ir::Graph g = b.finish({x});
  EXPECT_HAS(models::replace_head(g, 5, 0), "'classifier': Conv 8x1x1 -> 1000 replaced");
  EXPECT_EQ(train::output_classes(g), 5);
}

TEST(ReplaceHead, TheSameWidthIsFreshWeights) {
  ir::Graph g = linear_classifier(false);
  const at::Tensor before = g.find_node("fc")->param("weight").value.clone();
  models::replace_head(g, 1000, 3);
  EXPECT_FALSE(g.find_node("fc")->param("weight").value.equal(before));
}

TEST(ReplaceHead, NoClassifierNamesTheOutputProducer) {
  ir::GraphBuilder b("noclf", 1);
  std::string x = b.input("x", {3, 8, 8});
  x = b.conv(x, 4, 3, 1, 1, 1, true, "last_conv");
  ir::Graph g = b.finish({x});
  std::string e = error_of<ConfigError>([&] { models::replace_head(g, 10, 0); });
  EXPECT_HAS(e, "model.head: no classifier found");
  EXPECT_HAS(e, "node 'last_conv' (Conv)");

  ir::GraphBuilder b2("add", 1);
  std::string in = b2.input("x", {4});
  std::string y = b2.add(b2.linear(in, 4, true, "a"), b2.linear(in, 4, true, "b"));
  ir::Graph g2 = b2.finish({y});
  EXPECT_HAS(error_of<ConfigError>([&] { models::replace_head(g2, 3, 0); }), "(Add)");
  EXPECT_HAS(error_of<ConfigError>([&] { models::replace_head(g2, 0, 0); }),
             "model.head.num_classes: 0 is invalid");
}

TEST(ReplaceHead, ZooModelStaysPrunableAndTrainable) {
  ir::Graph g = models::build("resnet18", {{"input_size", "32"}, {"num_classes", "1000"}}, 0);
  models::replace_head(g, 10, 0);
  compress::StructuredPruneOptions o;
  o.ratio = 0.5;
  compress::PassContext ctx = testing::pass_context(nullptr, 8);
  compress::PassResult r = compress::StructuredPrune(o).run(g, ctx);
  EXPECT_TRUE(r.changed);
  ir::verify(r.graph);
  EXPECT_EQ(train::output_classes(r.graph), 10);
  EXPECT_LT(r.graph.num_params(), g.num_params());

  // A few steps on 10-class data move the new head.
  data::Splits d = testing::random_splits({3, 32, 32}, 32);
  ir::Graph small = models::build("small_cnn", {{"in_channels", "3"}, {"input_size", "32"},
                                                {"num_classes", "1000"}}, 0);
  models::replace_head(small, d.num_classes, 0);
  std::string head_name;
  for (const auto& n : small.nodes)
    if (n.op == "Linear") head_name = n.name;
  const at::Tensor before = small.find_node(head_name)->param("weight").value.clone();
  train::TrainOptions t;
  t.epochs = 1;
  train::fit(small, d, t, 16, 0);
  EXPECT_FALSE(small.find_node(head_name)->param("weight").value.equal(before));
}

}  // namespace
}  // namespace squeeze
