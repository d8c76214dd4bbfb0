#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "compress/prune_test_util.h"
#include "squeeze/compress/prune/layer_prune.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using compress::LayerPrune;
using compress::StructuredPruneOptions;

int count_kind(const std::vector<compress::RemovableBlock>& blocks, const std::string& kind) {
  int n = 0;
  for (const auto& b : blocks) n += b.kind == kind;
  return n;
}

TEST(LayerPrune, FindsResidualBlocksAndShapePreservingLayers) {
  ir::Graph r20 = models::build("resnet20", {}, 0);
  auto blocks = compress::removable_blocks(r20);
  EXPECT_EQ(count_kind(blocks, "residual"), 7);  // 9 blocks, 2 of them downsample
  ir::Graph mb = models::build("mobilenet_v2_tiny", {}, 0);
  EXPECT_EQ(count_kind(compress::removable_blocks(mb), "residual"), 4);
  ir::Graph jet = models::build("jet_tagger", {}, 0);
  auto jb = compress::removable_blocks(jet);
  ASSERT_EQ(jb.size(), 1u);
  EXPECT_EQ(jb[0].name, "fc3");
  // Nothing to remove in a plain chain whose shapes all change.
  ir::Graph cnn = models::build("small_cnn", {}, 0);
  EXPECT_TRUE(compress::removable_blocks(cnn).empty());
  StructuredPruneOptions o;
  o.granularity = "layer";
  o.criterion = "l1";
  compress::PassContext ctx;
  auto r = LayerPrune(o).run(cnn, ctx);
  EXPECT_FALSE(r.changed);
}

TEST(LayerPrune, RemovingAResidualBranchThatOutputsZeroIsExact) {
  ir::Graph g = models::build("resnet8", {}, 0);
  auto blocks = compress::removable_blocks(g);
  ASSERT_FALSE(blocks.empty());
  const auto& blk = blocks.front();  // layer1_0: identity shortcut
  EXPECT_EQ(blk.name, "layer1_0_conv1");
  ir::Graph zeroed = g.clone();
  {
    at::NoGradGuard no_grad;
    auto* bn = zeroed.find_node("layer1_0_conv2_bn");
    bn->param("weight").value.zero_();
    bn->param("bias").value.zero_();
  }
  ir::Graph small = compress::remove_blocks(g, {blk});
  EXPECT_EQ(small.find_node("layer1_0_conv1"), nullptr);
  EXPECT_LT(ir::graph_flops(small), ir::graph_flops(g));
  at::Tensor x = testing::random_input(g, 3);
  EXPECT_TRUE(testing::tensors_close(testing::run_graph(small, x), testing::run_graph(zeroed, x)));
}

TEST(LayerPrune, RemovesTheLeastImportantBlocksByAccuracy) {
  ir::Graph g = models::build("resnet20", {{"input_size", "16"}}, 0);
  data::Splits data = testing::random_splits({3, 16, 16}, 10, 64);
  StructuredPruneOptions o;
  o.granularity = "layer";
  o.layers = 3;
  o.batches = 1;
  compress::PassContext ctx = testing::pass_context(&data, 32);
  LayerPrune pass(o);
  auto r = pass.run(g, ctx);
  ASSERT_TRUE(r.changed) << r.summary;
  EXPECT_NE(r.summary.find("removed 3 of"), std::string::npos) << r.summary;
  EXPECT_LT(ir::graph_flops(r.graph), ir::graph_flops(g));
  at::Tensor x = testing::random_input(g, 2);
  EXPECT_EQ(testing::run_graph(r.graph, x).sizes(), testing::run_graph(g, x).sizes());
  // Threshold: every block whose removal costs at most 100% accuracy goes.
  o.threshold = 1.0;
  auto all = LayerPrune(o).run(g, ctx);
  EXPECT_EQ(count_kind(compress::removable_blocks(all.graph), "residual"), 0);
  // Accuracy needs data.
  compress::PassContext none;
  o.threshold = -1.0;
  EXPECT_THROW(LayerPrune(o).run(g, none), UserError);
}

}  // namespace
}  // namespace squeeze
