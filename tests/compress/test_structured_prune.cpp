#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "compress/prune_test_util.h"
#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/importance.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/compress/registry.h"
#include "squeeze/io/onnx.h"
#include "squeeze/ir/builder.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using compress::DependencyGraph;
using compress::StructuredPrune;
using compress::StructuredPruneOptions;
using testing::random_input;
using testing::run_graph;

struct ZooCase {
  std::string name;
  std::map<std::string, std::string> params;
};

const std::vector<ZooCase>& zoo_cases() {
  static const std::vector<ZooCase> cases = {
      {"small_cnn", {}},     {"lenet5", {}},
      {"resnet8", {}},       {"resnet20", {}},
      {"mobilenet_v2_tiny", {}}, {"resnet18", {{"input_size", "32"}, {"num_classes", "10"}}},
      {"mlp", {}},           {"jet_tagger", {}},
      {"vit_tiny", {}},
  };
  return cases;
}

const compress::ChannelGroup* group_with_producer(const DependencyGraph& d, const std::string& node) {
  for (const auto& g : d.groups()) {
    auto p = g.producers();
    if (std::find(p.begin(), p.end(), node) != p.end()) return &g;
  }
  return nullptr;
}

compress::PassResult prune(const ir::Graph& g, StructuredPruneOptions o, const data::Splits* data = nullptr) {
  compress::PassContext ctx = testing::pass_context(data, 32);
  return StructuredPrune(o).run(g, ctx);
}

// --- dependency graph ---

TEST(StructuredDeps, SmallCnnChannelsFollowFlattenIntoLinear) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  DependencyGraph d(g);
  ASSERT_EQ(d.groups().size(), 3u);  // conv1, conv2, fc1; fc2 makes the graph output
  const auto* conv2 = group_with_producer(d, "conv2");
  ASSERT_NE(conv2, nullptr);
  EXPECT_EQ(conv2->size, 64);
  bool found = false;
  for (const auto& p : conv2->params)
    if (p.node == "fc1" && p.param == "weight") {
      found = true;
      EXPECT_EQ(p.axis, 1);
      EXPECT_EQ(p.role, compress::ParamRole::kConsume);
      ASSERT_EQ(p.unit_indices[3].size(), 49u);  // 7x7 features per channel
      EXPECT_EQ(p.unit_indices[3].front(), 3 * 49);
    }
  EXPECT_TRUE(found);
  EXPECT_EQ(group_with_producer(d, "fc2"), nullptr);
}

TEST(StructuredDeps, ResidualAddTiesAllOperands) {
  ir::Graph g = models::build("resnet8", {}, 0);
  DependencyGraph d(g);
  const auto* stem = group_with_producer(d, "stem");
  ASSERT_NE(stem, nullptr);
  auto prods = stem->producers();
  // The identity shortcut ties the stem's channels to the first block's second conv.
  EXPECT_NE(std::find(prods.begin(), prods.end(), "layer1_0_conv2"), prods.end());
  // A downsampling block: its conv2 and shortcut conv are tied, and so is the next stage's output.
  const auto* down = group_with_producer(d, "layer2_0_down");
  ASSERT_NE(down, nullptr);
  prods = down->producers();
  EXPECT_NE(std::find(prods.begin(), prods.end(), "layer2_0_conv2"), prods.end());
  // Internal block channels are their own group.
  const auto* inner = group_with_producer(d, "layer1_0_conv1");
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(inner->producers().size(), 1u);
}

TEST(StructuredDeps, DepthwiseConvTiedToItsInput) {
  ir::Graph g = models::build("mobilenet_v2_tiny", {}, 0);
  DependencyGraph d(g);
  const auto* expand = group_with_producer(d, "block1_expand");
  ASSERT_NE(expand, nullptr);
  auto prods = expand->producers();
  EXPECT_NE(std::find(prods.begin(), prods.end(), "block1_dw"), prods.end());
}

TEST(StructuredDeps, ConcatOffsetsAndConsumers) {
  ir::GraphBuilder b("concat", 7);
  std::string x = b.input("input", {3, 8, 8});
  std::string a = b.act("Relu", b.conv(x, 4, 3, 1, 1, 1, true, "a"));
  std::string c = b.act("Relu", b.conv(x, 6, 1, 1, 0, 1, true, "c"));
  std::string cat = b.concat({a, c}, 1);
  std::string y = b.act("Relu", b.conv(cat, 5, 3, 1, 1, 1, true, "after"));
  ir::Graph g = b.finish({b.linear(b.flatten(b.global_avgpool(y)), 2, true, "head")});
  DependencyGraph d(g);
  const auto* gc = group_with_producer(d, "c");
  ASSERT_NE(gc, nullptr);
  EXPECT_EQ(gc->size, 6);
  for (const auto& p : gc->params)
    if (p.node == "after" && p.param == "weight") EXPECT_EQ(p.unit_indices[0].front(), 4);  // offset by a's 4
  // Exact: zero units of both branches and remove them.
  ir::Graph zeroed;
  ir::Graph small = testing::prune_every_other(d, g, &zeroed);
  at::Tensor in = random_input(g, 3);
  EXPECT_TRUE(testing::same_outputs(small, zeroed, in));
  EXPECT_EQ(small.find_node("after")->param("weight").value.size(1), 5);  // 2 of a + 3 of c
}

TEST(StructuredDeps, SplitSizesFollowThePruning) {
  ir::GraphBuilder b("split", 7);
  std::string x = b.input("input", {3, 8, 8});
  std::string y = b.act("Relu", b.conv(x, 8, 3, 1, 1, 1, true, "wide"));
  b.node("Split", {y}, {{"axis", int64_t{1}}, {"split", std::vector<int64_t>{3, 5}}}, {}, "split", 2);
  std::string p0 = b.conv("split:0", 4, 3, 1, 1, 1, true, "left");
  std::string p1 = b.conv("split:1", 4, 3, 1, 1, 1, true, "right");
  std::string z = b.act("Relu", b.add(p0, p1));
  ir::Graph g = b.finish({b.linear(b.flatten(b.global_avgpool(z)), 2, true, "head")});
  DependencyGraph d(g);
  // The two parts of the split are separate groups (they reach different consumers).
  int64_t wide_groups = 0;
  for (const auto& grp : d.groups()) wide_groups += grp.name == "wide";
  EXPECT_EQ(wide_groups, 2);
  ir::Graph zeroed;  // 1 of the first 3, 2 of the other 5
  ir::Graph small = testing::prune_every_other(d, g, &zeroed);
  EXPECT_EQ(small.find_node("split")->attr_ints("split"), (std::vector<int64_t>{2, 3}));
  at::Tensor in = random_input(g, 2);
  EXPECT_TRUE(testing::same_outputs(small, zeroed, in));
}

TEST(StructuredDeps, MatMulOfTwoActivationsContractsChannelsExactly) {
  // h @ h^T (a Gram matrix, like query @ key^T): channel j of h appears on the contracted axis of
  // both operands, so removing it removes one term of every dot product.
  ir::GraphBuilder b("gram", 7);
  std::string x = b.input("input", {4, 6});
  std::string h = b.act("Relu", b.linear(x, 8, true, "h"));
  std::string ht = b.node("Transpose", {h}, {{"perm", std::vector<int64_t>{0, 2, 1}}});
  std::string s = b.node("MatMul", {h, ht});
  ir::Graph g = b.finish({b.linear(b.flatten(s), 3, true, "head")});
  DependencyGraph d(g);
  const auto* grp = group_with_producer(d, "h");
  ASSERT_NE(grp, nullptr);
  EXPECT_EQ(grp->size, 8);
  ir::Graph zeroed;
  ir::Graph small = testing::prune_every_other(d, g, &zeroed);
  EXPECT_EQ(small.find_node("h")->param("weight").value.size(0), 4);
  EXPECT_TRUE(testing::same_outputs(small, zeroed, random_input(g, 2)));
}

TEST(StructuredDeps, MatMulWithASharedConstantBlocks) {
  // h @ W with W a constant that another MatMul reads too: W's rows cannot follow h's channels.
  ir::GraphBuilder b("shared_w", 7);
  std::string x = b.input("input", {4, 6});
  std::string h = b.act("Relu", b.linear(x, 8, true, "h"));
  std::map<std::string, ir::Param> wp;
  wp["value"].value = at::randn({8, 5});
  std::string w = b.node("Constant", {}, {}, wp, "w");
  std::string y1 = b.node("MatMul", {h, w});
  std::string y2 = b.node("MatMul", {b.act("Relu", b.linear(x, 8, true, "h2")), w});
  ir::Graph g = b.finish({b.linear(b.flatten(b.add(y1, y2)), 3, true, "head")});
  DependencyGraph d(g);
  EXPECT_EQ(group_with_producer(d, "h"), nullptr);
  EXPECT_EQ(group_with_producer(d, "h2"), nullptr);
}

TEST(StructuredDeps, UnknownAndChannelMixingOpsBlock) {
  ir::GraphBuilder b("blocked", 7);
  std::string x = b.input("input", {3, 8, 8});
  std::string y = b.act("Relu", b.conv(x, 8, 3, 1, 1, 1, true, "c1"));
  y = b.node("LRN", {y}, {{"size", int64_t{3}}});
  std::string z = b.act("Relu", b.conv(y, 8, 3, 1, 1, 1, true, "c2"));
  z = b.node("Softmax", {z}, {{"axis", int64_t{1}}});
  std::string w = b.act("Relu", b.conv(z, 8, 3, 1, 1, 1, true, "c3"));
  ir::Graph g = b.finish({b.linear(b.flatten(b.global_avgpool(w)), 2, true, "head")});
  DependencyGraph d(g);
  EXPECT_EQ(group_with_producer(d, "c1"), nullptr);
  EXPECT_EQ(group_with_producer(d, "c2"), nullptr);
  EXPECT_NE(group_with_producer(d, "c3"), nullptr);
}

TEST(StructuredDeps, GroupedConvKeepsGroupsEqual) {
  ir::GraphBuilder b("grouped", 7);
  std::string x = b.input("input", {4, 8, 8});
  std::string y = b.act("Relu", b.conv(x, 8, 3, 1, 1, 1, true, "c1"));
  y = b.act("Relu", b.conv(y, 12, 3, 1, 1, 2, true, "grouped"));
  std::string z = b.act("Relu", b.conv(y, 8, 1, 1, 0, 1, true, "c3"));
  ir::Graph g = b.finish({b.linear(b.flatten(b.global_avgpool(z)), 2, true, "head")});
  DependencyGraph d(g);
  // Channel c of each group goes with channel c of the other group.
  ASSERT_NE(group_with_producer(d, "c1"), nullptr);
  EXPECT_EQ(group_with_producer(d, "c1")->size, 4);
  ASSERT_NE(group_with_producer(d, "grouped"), nullptr);
  EXPECT_EQ(group_with_producer(d, "grouped")->size, 6);
  ir::Graph zeroed;
  ir::Graph small = testing::prune_every_other(d, g, &zeroed);
  const auto& w = small.find_node("grouped")->param("weight").value;
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{6, 2, 3, 3}));
  EXPECT_EQ(small.find_node("grouped")->attr_int("group"), 2);
  at::Tensor in = random_input(g, 2);
  EXPECT_TRUE(testing::same_outputs(small, zeroed, in));
}

TEST(StructuredDeps, ChannelShuffleIsAPermutation) {
  ir::GraphBuilder b("shuffle", 7);
  std::string x = b.input("input", {4, 8, 8});
  std::string y = b.act("Relu", b.conv(x, 12, 1, 1, 0, 2, true, "g1"));
  y = b.node("Reshape", {y}, {{"shape", std::vector<int64_t>{0, 2, 6, 8, 8}}});
  y = b.node("Transpose", {y}, {{"perm", std::vector<int64_t>{0, 2, 1, 3, 4}}});
  y = b.node("Reshape", {y}, {{"shape", std::vector<int64_t>{0, 12, 8, 8}}});
  std::string z = b.act("Relu", b.conv(y, 8, 1, 1, 0, 2, true, "g2"));
  ir::Graph g = b.finish({b.linear(b.flatten(b.global_avgpool(z)), 2, true, "head")});
  DependencyGraph d(g);
  const auto* g1 = group_with_producer(d, "g1");
  ASSERT_NE(g1, nullptr);
  // 12 channels: tied across g1's 2 groups, and the shuffled channels across g2's 2 groups.
  EXPECT_EQ(g1->size, 3);
  ir::Graph zeroed;
  ir::Graph small = testing::prune_every_other(d, g, &zeroed);
  EXPECT_EQ(small.find_node("g1")->param("weight").value.size(0), 8);
  at::Tensor in = random_input(g, 2);
  EXPECT_TRUE(testing::same_outputs(small, zeroed, in));
}

// torch's MultiheadAttention as torch.onnx.export writes it: [N, L, E] -> [L, N, E], one packed
// in_proj Linear to 3E split by Slices, heads moved into the batch axis ([L, N*H, dh]), and the
// heads merged back with the batch into the rows ([L*N, E]). Optional: the value Slice written
// with a negative start and an open end (x[..., -E:]).
ir::Graph packed_attention(bool open_ended_v) {
  const int64_t L = 5, E = 8, H = 2, dh = E / H;
  ir::GraphBuilder b("packed_mha", 7);
  std::string x = b.input("input", {L, E});
  std::string t = b.node("Transpose", {x}, {{"perm", std::vector<int64_t>{1, 0, 2}}});
  std::string qkv = b.linear(t, 3 * E, true, "in_proj");
  auto slice = [&](int64_t start, int64_t end, const std::string& name) {
    return b.node("Slice", {qkv},
                  {{"starts", std::vector<int64_t>{start}}, {"ends", std::vector<int64_t>{end}},
                   {"axes", std::vector<int64_t>{2}}},
                  {}, name);
  };
  std::string q = slice(0, E, "q"), k = slice(E, 2 * E, "k");
  std::string v = open_ended_v ? slice(-E, std::numeric_limits<int64_t>::max(), "v") : slice(2 * E, 3 * E, "v");
  auto heads = [&](const std::string& y, const std::string& name) {
    return b.node("Reshape", {y}, {{"shape", std::vector<int64_t>{L, -1, dh}}}, {}, name);
  };
  std::string qh = b.node("Transpose", {heads(q, "q_heads")}, {{"perm", std::vector<int64_t>{1, 0, 2}}});
  std::string kh = b.node("Transpose", {heads(k, "k_heads")}, {{"perm", std::vector<int64_t>{1, 2, 0}}});
  std::string vh = b.node("Transpose", {heads(v, "v_heads")}, {{"perm", std::vector<int64_t>{1, 0, 2}}});
  std::string att = b.node("Softmax", {b.node("MatMul", {qh, kh})}, {{"axis", int64_t{-1}}});
  std::string o = b.node("Transpose", {b.node("MatMul", {att, vh})}, {{"perm", std::vector<int64_t>{1, 0, 2}}});
  o = b.node("Reshape", {o}, {{"shape", std::vector<int64_t>{-1, E}}}, {}, "merge_heads");
  o = b.linear(o, E, true, "out_proj");
  o = b.node("Reshape", {o}, {{"shape", std::vector<int64_t>{L, -1, E}}});
  o = b.node("Transpose", {o}, {{"perm", std::vector<int64_t>{1, 0, 2}}});
  return b.finish({b.linear(b.flatten(o), 3, true, "head")});
}

TEST(StructuredDeps, PackedAttentionSlicesPruneHeadDimensionsExactly) {
  for (bool open_ended_v : {false, true}) {
    SCOPED_TRACE(open_ended_v ? "value slice [-8:]" : "value slice [16:24]");
    ir::Graph g = packed_attention(open_ended_v);
    DependencyGraph d(g);
    // q and k share their head dimension (contracted together), v has its own; both are 4 wide
    // (position j of both heads is one unit).
    std::vector<int64_t> sizes;
    for (const auto& grp : d.groups())
      if (grp.name == "in_proj") sizes.push_back(grp.size);
    EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4}));
    ir::Graph zeroed;
    ir::Graph small = testing::prune_every_other(d, g, &zeroed);
    // 2 of 4 positions of q, k and v, in both heads: 12 of the 24 packed rows remain.
    EXPECT_EQ(small.find_node("in_proj")->param("weight").value.size(0), 12);
    EXPECT_EQ(small.find_node("out_proj")->param("weight").value.size(1), 4);
    EXPECT_EQ(small.find_node("q")->attr_ints("starts"), (std::vector<int64_t>{0}));
    EXPECT_EQ(small.find_node("q")->attr_ints("ends"), (std::vector<int64_t>{4}));
    EXPECT_EQ(small.find_node("k")->attr_ints("starts"), (std::vector<int64_t>{4}));
    EXPECT_EQ(small.find_node("k")->attr_ints("ends"), (std::vector<int64_t>{8}));
    EXPECT_EQ(small.find_node("v")->attr_ints("starts"), (std::vector<int64_t>{8}));
    EXPECT_EQ(small.find_node("v")->attr_ints("ends"), (std::vector<int64_t>{12}));
    EXPECT_EQ(small.find_node("q_heads")->attr_ints("shape"), (std::vector<int64_t>{5, -1, 2}));
    EXPECT_EQ(small.find_node("merge_heads")->attr_ints("shape"), (std::vector<int64_t>{-1, 4}));
    // Heads share the batch axis: several batch sizes exercise the row mapping.
    for (int64_t batch : {1, 3}) EXPECT_TRUE(testing::same_outputs(small, zeroed, random_input(g, batch)));
  }
}

TEST(StructuredDeps, StridedChannelSliceBlocksAndOtherAxesPassThrough) {
  // x[:, ::2] keeps every other channel: removing one changes which the slice picks.
  ir::GraphBuilder b("strided", 7);
  std::string x = b.input("input", {6});
  std::string h = b.act("Relu", b.linear(x, 8, true, "h"));
  std::string s = b.node("Slice", {h},
                         {{"starts", std::vector<int64_t>{0}}, {"ends", std::vector<int64_t>{8}},
                          {"axes", std::vector<int64_t>{1}}, {"steps", std::vector<int64_t>{2}}});
  ir::Graph g = b.finish({b.linear(s, 3, true, "head")});
  EXPECT_EQ(group_with_producer(DependencyGraph(g), "h"), nullptr);

  // A Slice of the tokens is no channel offset: all 8 channels go through, the slice is untouched.
  ir::GraphBuilder b2("tokens", 7);
  std::string x2 = b2.input("input", {4, 6});
  std::string h2 = b2.act("Relu", b2.linear(x2, 8, true, "h"));
  std::string s2 = b2.node("Slice", {h2},
                           {{"starts", std::vector<int64_t>{1}}, {"ends", std::vector<int64_t>{3}},
                            {"axes", std::vector<int64_t>{1}}},
                           {}, "tokens");
  ir::Graph g2 = b2.finish({b2.linear(b2.flatten(s2), 3, true, "head")});
  DependencyGraph d2(g2);
  const auto* grp = group_with_producer(d2, "h");
  ASSERT_NE(grp, nullptr);
  EXPECT_EQ(grp->size, 8);
  ir::Graph zeroed;
  ir::Graph small = testing::prune_every_other(d2, g2, &zeroed);
  EXPECT_EQ(small.find_node("tokens")->attr_ints("starts"), (std::vector<int64_t>{1}));
  EXPECT_EQ(small.find_node("tokens")->attr_ints("ends"), (std::vector<int64_t>{3}));
  EXPECT_TRUE(testing::same_outputs(small, zeroed, random_input(g2, 2)));
}

// --- every zoo model ---

TEST(StructuredPrune, ZooModelsPruneVerifyRunAndShrink) {
  for (const auto& zc : zoo_cases()) {
    ir::Graph g = models::build(zc.name, zc.params, 0);
    int64_t flops0 = ir::graph_flops(g);
    at::Tensor x = random_input(g, 2);
    at::Tensor y0 = run_graph(g, x);
    double prev = double(flops0);
    for (double ratio : {0.3, 0.5, 0.7}) {
      StructuredPruneOptions o;
      o.ratio = ratio;
      auto r = prune(g, o);
      SCOPED_TRACE(zc.name + " at " + std::to_string(ratio));
      ASSERT_TRUE(r.changed) << r.summary;
      ASSERT_NO_THROW(ir::verify(r.graph));
      at::Tensor y = run_graph(r.graph, x);
      EXPECT_EQ(y.sizes(), y0.sizes());
      double f = double(ir::graph_flops(r.graph));
      EXPECT_LT(f, prev) << r.summary;
      prev = f;
      for (const auto& n : r.graph.nodes)
        for (const auto& [k, p] : n.params) EXPECT_FALSE(p.mask.has_value()) << n.name;
    }
    // 70% of the channels removes well over half of the FLOPs (also on vit_tiny, whose head
    // dimensions and MLP hidden channels are prunable; its residual stream is tied to LayerNorm).
    EXPECT_LT(prev, 0.5 * double(flops0)) << zc.name;
  }
}

TEST(StructuredPrune, ZeroRatioGivesIdenticalOutputs) {
  for (const auto& zc : zoo_cases()) {
    ir::Graph g = models::build(zc.name, zc.params, 0);
    StructuredPruneOptions o;
    o.ratio = 0.0;
    auto r = prune(g, o);
    EXPECT_FALSE(r.changed) << zc.name;
    at::Tensor x = random_input(g, 2);
    EXPECT_TRUE(run_graph(r.graph, x).equal(run_graph(g, x))) << zc.name;
    // Removing nothing through the dependency graph is the identity too.
    DependencyGraph d(g);
    EXPECT_TRUE(run_graph(d.prune(g, {}), x).equal(run_graph(g, x))) << zc.name;
  }
}

TEST(StructuredPrune, RemovingZeroChannelsIsExact) {
  for (const auto& zc : zoo_cases()) {
    ir::Graph g = models::build(zc.name, zc.params, 0);
    DependencyGraph d(g);
    ASSERT_FALSE(d.groups().empty()) << zc.name;
    ir::Graph zeroed;
    ir::Graph small = testing::prune_every_other(d, g, &zeroed);
    EXPECT_LT(small.num_params(), g.num_params()) << zc.name;
    at::Tensor x = random_input(g, 4);
    at::Tensor want = run_graph(zeroed, x), got = run_graph(small, x);
    EXPECT_TRUE(testing::tensors_close(got, want, testing::kPruneRtol, testing::kPruneAtol)) << zc.name;
    // And the zeroing did matter: the original outputs differ.
    EXPECT_FALSE(testing::tensors_close(run_graph(g, x), want, 1e-6, 1e-6)) << zc.name;
  }
}

TEST(StructuredPrune, PrunedModelExportsToOnnxWithItsSmallShapes) {
  ir::Graph g = models::build("resnet8", {}, 0);
  StructuredPruneOptions o;
  o.ratio = 0.5;
  auto r = prune(g, o);
  testing::TempDir dir;
  io::export_onnx(r.graph, dir.file("pruned.onnx"));
  ir::Graph back = io::import_onnx(dir.file("pruned.onnx"));
  EXPECT_EQ(back.num_params(), r.graph.num_params());
  EXPECT_EQ(ir::graph_flops(back), ir::graph_flops(r.graph));
  at::Tensor x = random_input(g, 2);
  EXPECT_TRUE(testing::tensors_close(run_graph(back, x), run_graph(r.graph, x)));
}

// --- criteria ---

TEST(StructuredPrune, EveryCriterionPrunesResnet8) {
  ir::Graph g = models::build("resnet8", {{"input_size", "16"}}, 0);
  data::Splits data = testing::random_splits({3, 16, 16}, 10, 64);
  int64_t flops0 = ir::graph_flops(g);
  for (const auto& c : compress::importance_criteria()) {
    StructuredPruneOptions o;
    o.criterion = c;
    o.ratio = 0.4;
    o.batches = 2;
    auto r = prune(g, o, &data);
    EXPECT_TRUE(r.changed) << c;
    EXPECT_LT(ir::graph_flops(r.graph), flops0) << c;
    EXPECT_NE(r.summary.find(c), std::string::npos) << r.summary;
  }
}

TEST(StructuredPrune, EveryCriterionOnEveryZooModel) {
  for (const auto& zc : zoo_cases()) {
    ir::Graph g = models::build(zc.name, zc.params, 0);
    std::vector<int64_t> sample(g.inputs[0].shape.begin() + 1, g.inputs[0].shape.end());
    int64_t classes = g.shape_of(g.outputs[0]).back();
    data::Splits data = testing::random_splits(sample, classes, 16);
    bool has_bn = false;
    for (const auto& n : g.nodes) has_bn |= n.op == "BatchNorm";
    for (const auto& c : compress::importance_criteria()) {
      SCOPED_TRACE(zc.name + " " + c);
      StructuredPruneOptions o;
      o.criterion = c;
      o.ratio = 0.3;
      o.batches = 1;
      if (c == "bn_scale" && !has_bn) {
        EXPECT_THROW(prune(g, o, &data), UserError);
        continue;
      }
      auto r = prune(g, o, &data);
      EXPECT_TRUE(r.changed) << r.summary;
      EXPECT_LT(ir::graph_flops(r.graph), ir::graph_flops(g));
    }
  }
}

TEST(StructuredPrune, L1RemovesTheSmallestFilters) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  {
    at::NoGradGuard no_grad;
    auto& w = g.find_node("conv1")->param("weight").value;
    for (int64_t c : {2, 5, 11}) w[c].mul_(0.01);
  }
  StructuredPruneOptions o;
  o.scope = "local";
  o.ratio = 3.0 / 32.0;
  o.exclude = {"conv2", "fc1"};
  auto r = prune(g, o);
  const auto& w0 = g.find_node("conv1")->param("weight").value;
  const auto& w1 = r.graph.find_node("conv1")->param("weight").value;
  ASSERT_EQ(w1.size(0), 29);
  // The kept filters are the original ones minus 2, 5, 11, in order.
  std::vector<int64_t> keep;
  for (int64_t c = 0; c < 32; ++c)
    if (c != 2 && c != 5 && c != 11) keep.push_back(c);
  EXPECT_TRUE(w1.equal(w0.index_select(0, at::tensor(keep))));
}

TEST(StructuredPrune, BnScaleNeedsBatchNormAndNamesTheLayer) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  StructuredPruneOptions o;
  o.criterion = "bn_scale";
  try {
    prune(g, o);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("conv1"), std::string::npos) << e.what();
  }
  ir::Graph r8 = models::build("resnet8", {}, 0);
  EXPECT_TRUE(prune(r8, o).changed);
}

TEST(StructuredPrune, DataCriteriaWithoutDataAreRejected) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  for (const char* c : {"taylor", "apoz", "mean_activation"}) {
    StructuredPruneOptions o;
    o.criterion = c;
    EXPECT_THROW(prune(g, o), UserError) << c;
  }
}

TEST(StructuredPrune, ApozPrunesChannelsThatAreAlwaysZero) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  {
    at::NoGradGuard no_grad;
    auto& b = g.find_node("conv1")->param("bias").value;
    for (int64_t c : {1, 7}) b[c].fill_(-100.0);  // ReLU output always zero
  }
  data::Splits data = testing::random_splits({1, 28, 28}, 10, 64);
  StructuredPruneOptions o;
  o.criterion = "apoz";
  o.scope = "local";
  o.ratio = 2.0 / 32.0;
  o.exclude = {"conv2", "fc1"};
  auto r = prune(g, o, &data);
  const auto& b1 = r.graph.find_node("conv1")->param("bias").value;
  ASSERT_EQ(b1.size(0), 30);
  EXPECT_GT(b1.min().item<double>(), -50.0);
}

TEST(StructuredPrune, TaylorPrunesAChannelTheLossDoesNotSee) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  {
    at::NoGradGuard no_grad;
    // conv2's channel 5 feeds nothing: its 49 columns of fc1 are zero.
    g.find_node("fc1")->param("weight").value.narrow(1, 5 * 49, 49).zero_();
  }
  data::Splits data = testing::random_splits({1, 28, 28}, 10, 64);
  StructuredPruneOptions o;
  o.criterion = "taylor";
  o.scope = "local";
  o.ratio = 1.0 / 64.0;
  o.exclude = {"conv1", "fc1"};
  o.batches = 2;
  auto r = prune(g, o, &data);
  const auto& w0 = g.find_node("conv2")->param("weight").value;
  const auto& w1 = r.graph.find_node("conv2")->param("weight").value;
  ASSERT_EQ(w1.size(0), 63);
  EXPECT_TRUE(w1.narrow(0, 0, 5).equal(w0.narrow(0, 0, 5)));
  EXPECT_TRUE(w1.narrow(0, 5, 58).equal(w0.narrow(0, 6, 58)));
}

// --- options ---

TEST(StructuredPrune, MaxRatioRoundToAndExclusions) {
  ir::Graph g = models::build("resnet8", {}, 0);
  DependencyGraph d0(g);
  StructuredPruneOptions o;
  o.ratio = 0.7;
  o.max_ratio_per_layer = 0.5;
  o.round_to = 4;
  o.exclude = {"layer1_0_conv1"};
  auto r = prune(g, o);
  EXPECT_EQ(r.graph.find_node("layer1_0_conv1")->param("weight").value.size(0), 16);
  for (const auto& grp : d0.groups()) {
    int64_t before = g.find_node(grp.name)->param("weight").value.size(0);
    int64_t after = r.graph.find_node(grp.name)->param("weight").value.size(0);
    EXPECT_GE(after, before / 2) << grp.name;
    EXPECT_EQ(after % 4, 0) << grp.name << " keeps " << after;
  }
}

TEST(StructuredPrune, LocalScopePrunesEveryGroupAlike) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  StructuredPruneOptions o;
  o.scope = "local";
  o.ratio = 0.5;
  auto r = prune(g, o);
  EXPECT_EQ(r.graph.find_node("conv1")->param("weight").value.size(0), 16);
  EXPECT_EQ(r.graph.find_node("conv2")->param("weight").value.size(0), 32);
  EXPECT_EQ(r.graph.find_node("fc1")->param("weight").value.size(0), 64);
  EXPECT_EQ(r.graph.find_node("fc1")->param("weight").value.size(1), 32 * 49);
}

TEST(StructuredPrune, FlopsTargetHalvesTheFlops) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  StructuredPruneOptions o;
  o.target = "flops";
  o.ratio = 0.5;
  auto r = prune(g, o);
  double ratio = double(ir::graph_flops(r.graph)) / double(ir::graph_flops(g));
  EXPECT_LE(ratio, 0.5);
  EXPECT_GT(ratio, 0.42);
}

TEST(StructuredPrune, IterativeStepsFineTuneAndRecordHistory) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits data = testing::random_splits({1, 28, 28}, 10, 64);
  train::TrainOptions ft;
  ft.epochs = 1;
  compress::PassContext ctx = testing::pass_context(&data, 32);
  ctx.finetune = &ft;
  StructuredPruneOptions o;
  o.ratio = 0.5;
  o.steps = 3;
  auto r = StructuredPrune(o).run(g, ctx);
  EXPECT_NE(r.summary.find("step 3/3"), std::string::npos) << r.summary;
  EXPECT_NE(r.summary.find("val accuracy"), std::string::npos) << r.summary;
  // (1 - 0.5) of the channels remain, within rounding.
  int64_t c1 = r.graph.find_node("conv1")->param("weight").value.size(0);
  int64_t fc1 = r.graph.find_node("fc1")->param("weight").value.size(0);
  EXPECT_NEAR(double(c1 + fc1 + r.graph.find_node("conv2")->param("weight").value.size(0)), 0.5 * (32 + 64 + 128), 6.0);
}

TEST(StructuredPrune, OptionsFromParamsAndRegistry) {
  auto params = [](std::vector<std::pair<std::string, std::string>> kv) {
    auto p = std::make_shared<Params>("experiments[0].stages[0].params");
    for (auto& [k, v] : kv) p->set(k, Value::scalar(v));
    return p;
  };
  const auto* m = compress::find_method("prune");
  ASSERT_NE(m, nullptr);
  {
    auto p = params({{"kind", "structured"}, {"criterion", "fpgm"}, {"ratio", "0.3"}, {"round_to", "8"}});
    auto steps = std::make_shared<Params>("experiments[0].stages[0].params.iterative");
    steps->set("steps", Value::scalar("3"));
    p->set("iterative", Value::map(steps));
    auto o = StructuredPruneOptions::from_params(*p);
    EXPECT_EQ(o.criterion, "fpgm");
    EXPECT_EQ(o.steps, 3);
    EXPECT_EQ(o.round_to, 8);
    auto p2 = params({{"kind", "structured"}, {"criterion", "l2"}});
    auto pass = m->make(*p2);
    EXPECT_NE(dynamic_cast<StructuredPrune*>(pass.get()), nullptr);
  }
  {  // unstructured still goes to magnitude pruning
    auto p = params({{"kind", "unstructured"}, {"ratio", "0.3"}});
    auto pass = m->make(*p);
    EXPECT_EQ(dynamic_cast<StructuredPrune*>(pass.get()), nullptr);
    auto p2 = params({{"ratio", "0.3"}});
    EXPECT_EQ(dynamic_cast<StructuredPrune*>(m->make(*p2).get()), nullptr);
  }
  auto rejected = [&](std::vector<std::pair<std::string, std::string>> kv, const std::string& needle) {
    auto p = params(kv);
    try {
      m->make(*p);
      ADD_FAILURE() << "accepted " << needle;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  rejected({{"kind", "structured"}, {"criterion", "l3"}}, "criterion");
  rejected({{"kind", "structured"}, {"granularity", "filters"}}, "granularity");
  rejected({{"kind", "structured"}, {"granularity", "layer"}, {"criterion", "apoz"}}, "layer");
  rejected({{"kind", "structured"}, {"granularity", "head"}, {"criterion", "bn_scale"}}, "head");
  rejected({{"kind", "structured"}, {"ratio", "1.5"}}, "ratio");
  rejected({{"kind", "structured"}, {"scope", "everywhere"}}, "scope");
  rejected({{"kind", "structured"}, {"rounding", "8"}}, "rounding");
  rejected({{"kind", "structured"}, {"granularity", "layer"}, {"target", "flops"}}, "target");
  rejected({{"kind", "unstructured"}, {"criterion", "fpgm"}}, "criterion");
}

TEST(StructuredPrune, ExampleWorkflowAndYamlErrors) {
  auto cfg = pipeline::load_config(testing::source_dir() + "/examples/prune_criteria.yaml");
  ASSERT_EQ(cfg.experiments.size(), 4u);
  for (const auto& e : cfg.experiments) {
    auto params = e.stages.at(0).params->clone();
    auto pass = compress::find_method(e.stages.at(0).method)->make(*params);
    auto* sp = dynamic_cast<StructuredPrune*>(pass.get());
    ASSERT_NE(sp, nullptr) << e.name;
    EXPECT_EQ(sp->options().target, "flops");
    EXPECT_EQ(sp->options().criterion, e.name);
  }
  auto make_error = [](const std::string& params_yaml) {
    auto c = pipeline::parse_config("model: {zoo: small_cnn}\nexperiments: [{stages: [{method: prune, params: " +
                                    params_yaml + "}]}]\n");
    try {
      compress::find_method("prune")->make(*c.experiments[0].stages[0].params);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  std::string m = make_error("{kind: structured, granularity: head, criterion: bn_scale}");
  EXPECT_NE(m.find("experiments[0].stages[0].params"), std::string::npos) << m;
  EXPECT_NE(m.find("l1, l2, taylor, random"), std::string::npos) << m;
  m = make_error("{kind: structured, iterative: {step: 3}}");
  EXPECT_NE(m.find("'step'"), std::string::npos) << m;
  m = make_error("{kind: structured, round_to: 0}");
  EXPECT_NE(m.find("round_to"), std::string::npos) << m;
  EXPECT_EQ(make_error("{kind: structured, granularity: layer, layers: 2, criterion: l1}"), "accepted");
  m = make_error("{kind: structured, layernorm: sometimes}");
  EXPECT_NE(m.find("block, prune"), std::string::npos) << m;
  m = make_error("{kind: structured, granularity: head, layernorm: prune}");
  EXPECT_NE(m.find("granularity: channel"), std::string::npos) << m;
  EXPECT_EQ(make_error("{kind: structured, layernorm: prune}"), "accepted");
}

}  // namespace
}  // namespace squeeze
