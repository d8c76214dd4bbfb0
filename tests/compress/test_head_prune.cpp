#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "compress/prune_test_util.h"
#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/head_prune.h"
#include "squeeze/compress/prune/layer_prune.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/io/onnx.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using compress::StructuredPruneOptions;

ir::Graph vit() { return models::build("vit_tiny", {}, 0); }

TEST(HeadPrune, FindsEveryAttentionBlockOfVitTiny) {
  ir::Graph g = vit();
  auto blocks = compress::find_attention(g);
  ASSERT_EQ(blocks.size(), 4u);
  EXPECT_EQ(blocks[0].q, "enc0_q");
  EXPECT_EQ(blocks[0].out, "enc0_proj");
  EXPECT_EQ(blocks[0].heads, 4);
  EXPECT_EQ(blocks[0].head_dim, 16);
  EXPECT_FALSE(blocks[0].packed());  // separate q, k, v Linears
  EXPECT_TRUE(compress::find_attention(models::build("resnet8", {}, 0)).empty());
}

TEST(HeadPrune, RemovingZeroHeadsIsExact) {
  ir::Graph g = vit();
  auto blocks = compress::find_attention(g);
  std::map<size_t, std::vector<int64_t>> removed{{0, {1, 3}}, {2, {0}}};
  // A head whose value projection is zero contributes nothing to the output projection.
  ir::Graph zeroed = g.clone();
  {
    at::NoGradGuard no_grad;
    for (const auto& [bi, heads] : removed)
      for (auto h : heads) {
        auto* v = zeroed.find_node(blocks[bi].v);
        v->param("weight").value.narrow(0, h * 16, 16).zero_();
        v->param("bias").value.narrow(0, h * 16, 16).zero_();
      }
  }
  ir::Graph small = compress::remove_heads(g, blocks, removed);
  EXPECT_EQ(small.find_node("enc0_q")->param("weight").value.size(0), 32);
  EXPECT_EQ(small.find_node("enc0_proj")->param("weight").value.size(1), 32);
  EXPECT_EQ(small.find_node("enc2_k")->param("weight").value.size(0), 48);
  EXPECT_LT(ir::graph_flops(small), ir::graph_flops(g));
  at::Tensor x = testing::random_input(g, 2);
  EXPECT_TRUE(testing::tensors_close(testing::run_graph(small, x), testing::run_graph(zeroed, x),
                                     testing::kPruneRtol, testing::kPruneAtol));
}

TEST(HeadPrune, PassRemovesARatioOfHeads) {
  ir::Graph g = vit();
  data::Splits data = testing::random_splits({3, 32, 32}, 10, 32);
  for (const char* c : {"l1", "l2", "taylor", "random"}) {
    StructuredPruneOptions o;
    o.granularity = "head";
    o.criterion = c;
    o.ratio = 0.5;
    o.batches = 1;
    compress::PassContext ctx = testing::pass_context(&data, 16);
    auto r = compress::HeadPrune(o).run(g, ctx);
    EXPECT_NE(r.summary.find("heads 16 -> 8"), std::string::npos) << c << ": " << r.summary;
    at::Tensor x = testing::random_input(g, 2);
    EXPECT_EQ(testing::run_graph(r.graph, x).sizes(), (std::vector<int64_t>{2, 10}));
  }
  StructuredPruneOptions o;
  o.granularity = "head";
  compress::PassContext ctx;
  EXPECT_THROW(compress::HeadPrune(o).run(models::build("small_cnn", {}, 0), ctx), UserError);
}

TEST(HeadPrune, VitChannelAndEncoderLayerPruning) {
  ir::Graph g = vit();
  // Channel pruning reaches, per encoder layer, the query/key head dimension, the value/output
  // head dimension and the MLP hidden layer (the residual stream is tied to LayerNorm).
  compress::DependencyGraph d(g);
  ASSERT_EQ(d.groups().size(), 12u);
  std::set<std::string> names;
  for (const auto& grp : d.groups()) names.insert(grp.name);
  EXPECT_EQ(names, (std::set<std::string>{"enc0_q", "enc0_v", "enc0_fc1", "enc1_q", "enc1_v", "enc1_fc1", "enc2_q",
                                          "enc2_v", "enc2_fc1", "enc3_q", "enc3_v", "enc3_fc1"}));
  for (const auto& grp : d.groups()) {
    if (grp.name != "enc0_q" && grp.name != "enc0_v") continue;
    // A unit is one position of the 16-wide head dimension, in all 4 heads at once.
    EXPECT_EQ(grp.size, 16);
    std::set<std::string> produced;
    for (const auto& p : grp.params) {
      EXPECT_EQ(p.unit_indices[1], (std::vector<int64_t>{1, 17, 33, 49})) << p.node << "." << p.param;
      if (p.role == compress::ParamRole::kProduce) produced.insert(p.node);
    }
    if (grp.name == "enc0_q") EXPECT_EQ(produced, (std::set<std::string>{"enc0_q", "enc0_k"}));
    if (grp.name == "enc0_v") EXPECT_EQ(produced, (std::set<std::string>{"enc0_v"}));
  }
  StructuredPruneOptions o;
  o.ratio = 0.5;
  compress::PassContext ctx;
  auto r = compress::StructuredPrune(o).run(g, ctx);
  EXPECT_TRUE(r.changed);
  at::Tensor x = testing::random_input(g, 2);
  EXPECT_EQ(testing::run_graph(r.graph, x).sizes(), (std::vector<int64_t>{2, 10}));
  ir::Graph zeroed;
  ir::Graph small = testing::prune_every_other(d, g, &zeroed);
  EXPECT_TRUE(testing::same_outputs(small, zeroed, x));
  // Half of every head dimension is gone: q/k/v keep 4 heads of 8, the output projection reads 32.
  EXPECT_EQ(small.find_node("enc0_q")->param("weight").value.size(0), 32);
  EXPECT_EQ(small.find_node("enc0_k")->param("weight").value.size(0), 32);
  EXPECT_EQ(small.find_node("enc0_v")->param("weight").value.size(0), 32);
  EXPECT_EQ(small.find_node("enc0_proj")->param("weight").value.size(1), 32);
  EXPECT_EQ(small.find_node("enc0_q_split")->attr_ints("shape"), (std::vector<int64_t>{0, 0, 4, 8}));
  EXPECT_EQ(small.find_node("enc0_merge")->attr_ints("shape"), (std::vector<int64_t>{0, 0, 32}));
  // The smaller model survives ONNX export and import.
  testing::TempDir dir;
  io::export_onnx(small, dir.file("small.onnx"));
  EXPECT_TRUE(testing::tensors_close(testing::run_graph(io::import_onnx(dir.file("small.onnx")), x),
                                     testing::run_graph(small, x)));
  // Encoder layers (attention + MLP residual sub-blocks) are blocks layer pruning can remove.
  auto blocks = compress::removable_blocks(g);
  ASSERT_EQ(blocks.size(), 4u);
  EXPECT_EQ(blocks[0].kind, "encoder");
  EXPECT_EQ(blocks[0].name, "enc0_ln1");
  StructuredPruneOptions lo;
  lo.granularity = "layer";
  lo.criterion = "l1";
  lo.layers = 2;
  auto lr = compress::LayerPrune(lo).run(g, ctx);
  EXPECT_TRUE(lr.changed);
  EXPECT_EQ(compress::removable_blocks(lr.graph).size(), 2u);
  EXPECT_EQ(compress::find_attention(lr.graph).size(), 2u);
  EXPECT_EQ(testing::run_graph(lr.graph, x).sizes(), (std::vector<int64_t>{2, 10}));
}

TEST(HeadPrune, VitResidualWidthPrunesThroughLayerNormOnlyWhenAsked) {
  ir::Graph g = vit();
  auto has_group = [](const compress::DependencyGraph& d, const std::string& name) {
    for (const auto& grp : d.groups())
      if (grp.name == name) return true;
    return false;
  };
  EXPECT_FALSE(has_group(compress::DependencyGraph(g), "patch_embed"));
  compress::DependencyOptions opt;
  opt.prune_layernorm = true;
  compress::DependencyGraph d(g, opt);
  ASSERT_TRUE(has_group(d, "patch_embed"));
  EXPECT_EQ(d.groups().size(), 13u);  // + the residual stream (64 channels)
  StructuredPruneOptions o;
  o.ratio = 0.5;
  o.scope = "local";
  compress::PassContext ctx;
  auto blocked = compress::StructuredPrune(o).run(g, ctx);
  o.layernorm = "prune";
  auto r = compress::StructuredPrune(o).run(g, ctx);
  EXPECT_NE(r.summary.find("LayerNorm widths too"), std::string::npos) << r.summary;
  EXPECT_EQ(r.graph.find_node("patch_embed")->param("weight").value.size(0), 32);
  EXPECT_EQ(r.graph.find_node("enc0_ln1")->param("weight").value.size(0), 32);
  EXPECT_EQ(r.graph.find_node("norm")->param("bias").value.size(0), 32);
  EXPECT_EQ(r.graph.find_node("head")->param("weight").value.size(1), 32);
  EXPECT_LT(ir::graph_flops(r.graph), ir::graph_flops(blocked.graph));
  at::Tensor x = testing::random_input(g, 2);
  EXPECT_EQ(testing::run_graph(r.graph, x).sizes(), (std::vector<int64_t>{2, 10}));
  ASSERT_NO_THROW(ir::verify(r.graph));
  // Only channel pruning uses it; anything else is a clear error.
  StructuredPruneOptions bad;
  bad.layernorm = "maybe";
  EXPECT_THROW(bad.validate(), ConfigError);
  bad.layernorm = "prune";
  bad.granularity = "head";
  EXPECT_THROW(bad.validate(), ConfigError);
}

TEST(HeadPrune, WorksOnAnImportedOnnxTransformer) {
  testing::TempDir dir;
  io::export_onnx(vit(), dir.file("vit.onnx"));
  ir::Graph g = io::import_onnx(dir.file("vit.onnx"));
  auto blocks = compress::find_attention(g);
  ASSERT_EQ(blocks.size(), 4u);
  // The imported graph's head dimensions are channel groups too, and pruning them keeps the
  // attention blocks recognisable for head pruning.
  compress::DependencyGraph d(g);
  EXPECT_EQ(d.groups().size(), 12u);
  ir::Graph zeroed;
  ir::Graph narrow = testing::prune_every_other(d, g, &zeroed);
  EXPECT_TRUE(testing::same_outputs(narrow, zeroed, testing::random_input(g, 2)));
  ASSERT_EQ(compress::find_attention(narrow).size(), 4u);
  EXPECT_EQ(compress::find_attention(narrow)[0].head_dim, 8);
  // Encoder layers of the imported graph are removable blocks too.
  auto layers = compress::removable_blocks(g);
  ASSERT_EQ(layers.size(), 4u);
  StructuredPruneOptions lo;
  lo.granularity = "layer";
  lo.criterion = "l1";
  lo.layers = 1;
  compress::PassContext lctx;
  auto lr = compress::LayerPrune(lo).run(g, lctx);
  EXPECT_EQ(compress::removable_blocks(lr.graph).size(), 3u) << lr.summary;
  EXPECT_EQ(testing::run_graph(lr.graph, testing::random_input(g, 2)).sizes(), (std::vector<int64_t>{2, 10}));
  StructuredPruneOptions o;
  o.granularity = "head";
  o.ratio = 0.25;
  o.scope = "local";
  compress::PassContext ctx;
  auto r = compress::HeadPrune(o).run(g, ctx);
  EXPECT_NE(r.summary.find("heads 16 -> 12"), std::string::npos) << r.summary;
  testing::TempDir out;
  io::export_onnx(r.graph, out.file("small.onnx"));
  ir::Graph back = io::import_onnx(out.file("small.onnx"));
  at::Tensor x = testing::random_input(g, 2);
  EXPECT_TRUE(testing::tensors_close(testing::run_graph(back, x), testing::run_graph(r.graph, x)));
}

}  // namespace
}  // namespace squeeze
