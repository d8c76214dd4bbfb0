// torchvision's VisionTransformer as torch.onnx.export writes it (opsets 13 and
// 17): imports, matches PyTorch, prunes channels with the dependency graph and
// whole heads with head pruning, and survives export and re-import.
//
// The model and PyTorch's output come from
// tests/scripts/make_torchvision_vit.py (Debian's python3-torch and
// python3-torchvision); without them the tests skip. Its encoder uses
// nn.MultiheadAttention: one packed in_proj Linear split into q, k, v by Slice
// nodes whose ends the exporter computes as (3 * D + 2) / 3 on int64 shape
// values, heads merged into the batch axis ([L, N * H, dh]), and baddbmm-style
// MatMuls.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <tuple>

#include "cli.h"
#include "compress/prune_test_util.h"
#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/head_prune.h"
#include "squeeze/data/dataset.h"
#include "squeeze/exec/executor.h"
#include "squeeze/io/onnx.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/ir/graph.h"
#include "squeeze/ir/ops.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;

// PyTorch and squeeze both compute in float32, in different orders.
constexpr double kRtol = 1e-4, kAtol = 1e-5;
const char *kPython = "/usr/bin/python3";

// The generated files, made once per test process in a folder named after the
// script's content (importing torch takes seconds; a changed script makes new
// files). Empty when python3 lacks torch or torchvision.
const std::string &vit_dir() {
  static const std::string dir = [] {
    std::string script = std::string(SQUEEZE_SOURCE_DIR) +
                         "/tests/scripts/make_torchvision_vit.py";
    std::ifstream f(script);
    std::stringstream text;
    text << f.rdbuf();
    fs::path out = fs::temp_directory_path() /
                   ("squeeze_torchvision_vit_" +
                    std::to_string(std::hash<std::string>{}(text.str())));
    if (fs::exists(out / "vit_opset17_output.npy"))
      return out.string();
    fs::path tmp = out.string() + ".tmp" + std::to_string(::getpid());
    fs::create_directories(tmp);
    std::string cmd = std::string(kPython) + " " + script + " " + tmp.string() +
                      " 13 17 >/dev/null 2>&1";
    int rc = fs::exists(kPython) ? std::system(cmd.c_str()) : -1;
    if (rc != 0) {
      fs::remove_all(tmp);
      return std::string();
    }
    std::error_code ec;
    fs::rename(
        tmp, out,
        ec); // another process may have won the race: its files are the same
    if (ec)
      fs::remove_all(tmp);
    return out.string();
  }();
  return dir;
}

struct Vit {
  ir::Graph graph;
  at::Tensor x, want;    // batch 1
  at::Tensor x5, want5;  // batch 5
};

// static_batch: the file exported without dynamic_axes (its batch of 1 is fixed).
Vit load(int opset, bool static_batch = false) {
  std::string dir = vit_dir();
  Vit v;
  v.graph = io::import_onnx(dir + "/vit_opset" + std::to_string(opset) +
                            (static_batch ? "_static" : "") + ".onnx");
  v.x = data::read_npy(dir + "/vit_input.npy");
  v.want = data::read_npy(dir + "/vit_opset" + std::to_string(opset) +
                          "_output.npy");
  v.x5 = data::read_npy(dir + "/vit_input5.npy");
  v.want5 = data::read_npy(dir + "/vit_output5.npy");
  return v;
}

double max_rel_error(const at::Tensor &got, const at::Tensor &want) {
  return ((got - want).abs().max() / want.abs().max()).item<double>();
}

class TorchvisionVit : public ::testing::TestWithParam<int> {
protected:
  void SetUp() override {
    if (vit_dir().empty())
      GTEST_SKIP()
          << kPython
          << " has no torch/torchvision: torchvision ViT tests skipped";
  }
};

TEST_P(TorchvisionVit, ImportsAndMatchesPyTorch) {
  Vit v = load(GetParam());
  // The exporter's shape arithmetic on the batch ([L, N * heads, dh] reshapes, the class token
  // expanded to [N, 1, D]) follows the batch at run time.
  EXPECT_EQ(v.graph.inputs.at(0).shape, (ir::Shape{ir::kDynamic, 3, 32, 32}));
  at::Tensor got = testing::run_graph(v.graph, v.x);
  ASSERT_EQ(got.sizes(), v.want.sizes());
  EXPECT_TRUE(at::allclose(got, v.want, kRtol, kAtol))
      << "max relative error " << max_rel_error(got, v.want);
  at::Tensor got5 = testing::run_graph(v.graph, v.x5);
  ASSERT_EQ(got5.sizes(), v.want5.sizes());
  EXPECT_TRUE(at::allclose(got5, v.want5, kRtol, kAtol))
      << "batch 5: max relative error " << max_rel_error(got5, v.want5);
  std::cout << "opset " << GetParam() << ": max relative error vs PyTorch "
            << max_rel_error(got, v.want) << " at batch 1, "
            << max_rel_error(got5, v.want5) << " at batch 5\n";
  // The q, k, v split of the packed projection is three equal Slices of 64
  // (ends 64, 128, 192), not the 64.67 a float division of (192 + 2) / 3 gives.
  int slices = 0;
  for (const auto &n : v.graph.nodes)
    if (n.op == "Slice") {
      ++slices;
      EXPECT_EQ(v.graph.shape_of(n.outputs[0]).back(), 64) << n.name;
    }
  EXPECT_EQ(slices, 6); // 2 layers x (q, k, v)
}

// Exported without dynamic_axes, the file fixes the batch at 1 (ONNX Runtime
// also runs it only at that batch): it matches PyTorch there, and another
// batch is a clear error, not a crash.
TEST_P(TorchvisionVit, StaticExportKeepsItsBatchOfOne) {
  Vit v = load(GetParam(), /*static_batch=*/true);
  EXPECT_EQ(v.graph.inputs.at(0).shape, (ir::Shape{1, 3, 32, 32}));
  at::Tensor got = testing::run_graph(v.graph, v.x);
  EXPECT_TRUE(at::allclose(got, v.want, kRtol, kAtol))
      << "max relative error " << max_rel_error(got, v.want);
  exec::Executor ex(v.graph);
  try {
    ex.forward(v.x5);
    ADD_FAILURE() << "batch 5 ran on a batch-1 model";
  } catch (const UserError &e) {
    EXPECT_NE(std::string(e.what()).find("[1, 3, 32, 32]"), std::string::npos)
        << e.what();
  }
}

TEST_P(TorchvisionVit, PrunesChannelsExactlyAndExportsBack) {
  Vit v = load(GetParam());
  compress::DependencyGraph deps(v.graph);
  std::cout << "opset " << GetParam() << ": " << deps.groups().size()
            << " prunable groups, " << deps.num_blocked() << " of "
            << deps.num_channels() << " channels blocked; attention blocks "
            << compress::find_attention(v.graph).size() << "\n";
  for (const auto &grp : deps.groups())
    std::cout << "  group " << grp.name << " size " << grp.size << "\n";
  // Per encoder layer: the MLP hidden width (128) and, through the packed in_proj's Slices, the
  // query/key head dimension (16, contracted together) and the value head dimension (16).
  std::vector<int64_t> sizes;
  for (const auto& grp : deps.groups()) sizes.push_back(grp.size);
  EXPECT_EQ(sizes, (std::vector<int64_t>{16, 16, 128, 16, 16, 128}));
  // Still blocked: the residual width (LayerNorm) and the logits.
  EXPECT_EQ(deps.num_blocked(), 202);
  ir::Graph zeroed;
  ir::Graph narrow = testing::prune_every_other(deps, v.graph, &zeroed);
  EXPECT_TRUE(testing::same_outputs(narrow, zeroed, v.x));
  EXPECT_TRUE(testing::same_outputs(narrow, zeroed, v.x5));
  EXPECT_LT(testing::run_graph(narrow, v.x).numel(), 11);
  // Still whole heads for head pruning: 4 per block, each half as wide.
  auto narrow_blocks = compress::find_attention(narrow);
  ASSERT_EQ(narrow_blocks.size(), 2u);
  EXPECT_EQ(narrow_blocks[0].heads, 4);
  EXPECT_EQ(narrow_blocks[0].head_dim, 8);
  // Half of q, k and v (in every head) and half of out_proj's input columns are gone.
  for (const auto& n : narrow.nodes)
    if (n.op == "Linear" && n.name.find("self_attention") != std::string::npos) {
      bool packed = n.param("weight").value.size(0) != 64;
      EXPECT_EQ(n.param("weight").value.size(packed ? 0 : 1), packed ? 96 : 32) << n.name;
    }
  testing::TempDir dir;
  io::export_onnx(narrow, dir.file("small.onnx"));
  ir::Graph back = io::import_onnx(dir.file("small.onnx"));
  EXPECT_EQ(back.inputs.at(0).shape, (ir::Shape{ir::kDynamic, 3, 32, 32}));
  at::Tensor a = testing::run_graph(narrow, v.x5),
             b = testing::run_graph(back, v.x5);
  EXPECT_TRUE(at::allclose(b, a, kRtol, kAtol))
      << "round trip: max relative error " << max_rel_error(b, a);
  std::cout << "opset " << GetParam()
            << ": export round trip max relative error " << max_rel_error(b, a)
            << "\n";
}

// The in_proj Linear of encoder layer `layer` (its name, from torch's module path).
std::string in_proj(int layer) {
  return "encoder_layers_encoder_layer_" + std::to_string(layer) + "_self_attention_MatMul";
}

// `g` with the given heads' contributions zeroed: their columns of the output projection are the
// only way a head reaches the rest of the network.
ir::Graph zero_heads(const ir::Graph& g, const std::vector<compress::AttentionBlock>& blocks,
                     const std::map<size_t, std::vector<int64_t>>& removed) {
  at::NoGradGuard no_grad;
  ir::Graph z = g.clone();
  for (const auto& [bi, heads] : removed)
    for (auto h : heads)
      z.find_node(blocks[bi].out)->param("weight").value.narrow(1, h * blocks[bi].head_dim,
                                                                 blocks[bi].head_dim).zero_();
  return z;
}

class TorchvisionVitHeads
    : public ::testing::TestWithParam<std::tuple<int, bool>> {
protected:
  void SetUp() override {
    if (vit_dir().empty())
      GTEST_SKIP() << kPython << " has no torch/torchvision";
  }
};

// Both exports (dynamic batch: heads-into-batch Reshapes [17, -1, 16]; static batch 1:
// [17, 4, 16]) are two packed attention blocks of 4 heads of 16, and removing heads computes
// exactly what the original computes with those heads' contributions zeroed.
TEST_P(TorchvisionVitHeads, RemovesWholeHeadsExactly) {
  auto [opset, static_batch] = GetParam();
  Vit v = load(opset, static_batch);
  auto blocks = compress::find_attention(v.graph);
  ASSERT_EQ(blocks.size(), 2u);
  for (int l = 0; l < 2; ++l) {
    const auto& b = blocks[l];
    EXPECT_TRUE(b.packed());
    EXPECT_EQ(b.q, in_proj(l));
    EXPECT_EQ(b.k, in_proj(l));
    EXPECT_EQ(b.v, in_proj(l));
    EXPECT_EQ(b.out, "encoder_layers_encoder_layer_" + std::to_string(l) +
                         "_self_attention_Gemm");
    EXPECT_EQ(b.heads, 4);
    EXPECT_EQ(b.head_dim, 16);
    EXPECT_EQ(b.row_offsets, (std::vector<int64_t>{0, 64, 128}));
    ASSERT_EQ(b.slices.size(), 3u);
    ASSERT_EQ(b.split_reshapes.size(), 3u);
  }
  // Not the trailing heads, so a wrong row or column offset shows in the outputs.
  std::map<size_t, std::vector<int64_t>> removed{{0, {1, 3}}, {1, {0}}};
  ir::Graph small = compress::remove_heads(v.graph, blocks, removed);
  ir::Graph zeroed = zero_heads(v.graph, blocks, removed);
  at::Tensor x = static_batch ? v.x : v.x5;
  at::Tensor got = testing::run_graph(small, x), want = testing::run_graph(zeroed, x);
  EXPECT_TRUE(testing::tensors_close(got, want, testing::kPruneRtol, testing::kPruneAtol))
      << "max relative error " << max_rel_error(got, want);
  // Something was removed: the zeroed heads change the original's outputs.
  EXPECT_GT(max_rel_error(testing::run_graph(v.graph, x), want), 1e-3);
  std::cout << "opset " << opset << (static_batch ? " static" : " dynamic")
            << ": heads removed vs zeroed, max relative error " << max_rel_error(got, want)
            << " at batch " << x.size(0) << "\n";
  if (!static_batch) {
    at::Tensor got1 = testing::run_graph(small, v.x), want1 = testing::run_graph(zeroed, v.x);
    EXPECT_TRUE(testing::tensors_close(got1, want1, testing::kPruneRtol, testing::kPruneAtol));
  }
  // And what PyTorch computes with those heads masked.
  at::Tensor torch_masked = data::read_npy(vit_dir() + (static_batch ? "/vit_heads_masked_output.npy"
                                                                     : "/vit_heads_masked_output5.npy"));
  EXPECT_TRUE(at::allclose(got, torch_masked, kRtol, kAtol))
      << "vs PyTorch with the heads masked: max relative error " << max_rel_error(got, torch_masked);
  std::cout << "  vs PyTorch with the heads masked: max relative error "
            << max_rel_error(got, torch_masked) << "\n";
  // The packed rows of the kept heads in q, k and v, the Slices over them, N*H (static) or -1
  // (dynamic) with dh in the head-split Reshapes, H'*dh in the merge, out_proj's columns.
  const int64_t kept[2] = {2, 3};
  auto after = compress::find_attention(small);
  ASSERT_EQ(after.size(), 2u);
  for (int l = 0; l < 2; ++l) {
    const auto& b = blocks[l];
    int64_t e = kept[l] * 16;
    EXPECT_EQ(after[l].heads, kept[l]);
    EXPECT_EQ(small.find_node(b.q)->param("weight").value.sizes(), (at::IntArrayRef{3 * e, 64}));
    EXPECT_EQ(small.find_node(b.q)->param("bias").value.size(0), 3 * e);
    EXPECT_EQ(small.find_node(b.out)->param("weight").value.sizes(), (at::IntArrayRef{64, e}));
    for (int i = 0; i < 3; ++i) {
      const ir::Node* sl = small.find_node(b.slices[i]);
      EXPECT_EQ(sl->attr_ints("starts"), (std::vector<int64_t>{i * e})) << sl->name;
      EXPECT_EQ(sl->attr_ints("ends"), (std::vector<int64_t>{(i + 1) * e})) << sl->name;
      EXPECT_EQ(small.find_node(b.split_reshapes[i])->attr_ints("shape"),
                (std::vector<int64_t>{17, static_batch ? kept[l] : -1, 16}));
    }
    EXPECT_EQ(small.find_node(b.merge_reshape)->attr_ints("shape"),
              (std::vector<int64_t>{static_batch ? 17 : -1, e}));
  }
  // The smaller model survives ONNX export and re-import.
  testing::TempDir dir;
  io::export_onnx(small, dir.file("small.onnx"));
  ir::Graph back = io::import_onnx(dir.file("small.onnx"));
  EXPECT_EQ(compress::find_attention(back).size(), 2u);
  at::Tensor b = testing::run_graph(back, x);
  EXPECT_TRUE(at::allclose(b, got, kRtol, kAtol))
      << "round trip: max relative error " << max_rel_error(b, got);
  std::cout << "  export round trip max relative error " << max_rel_error(b, got) << "\n";
}

// The pass scores heads with the criteria of the separate-Linear layout (the packed thirds of
// in_proj and out_proj's columns) and removes the least important ones.
TEST_P(TorchvisionVitHeads, PassRemovesTheLeastImportantHeads) {
  auto [opset, static_batch] = GetParam();
  Vit v = load(opset, static_batch);
  auto blocks = compress::find_attention(v.graph);
  ASSERT_EQ(blocks.size(), 2u);
  at::Tensor x = static_batch ? v.x : v.x5;
  // Reference l1 score: mean |w| of the head's q, k, v rows and of its out_proj columns.
  std::map<size_t, std::vector<int64_t>> lowest;
  for (size_t l = 0; l < 2; ++l) {
    const at::Tensor& w = v.graph.find_node(blocks[l].q)->param("weight").value;
    const at::Tensor& o = v.graph.find_node(blocks[l].out)->param("weight").value;
    std::vector<std::pair<double, int64_t>> score;
    for (int64_t h = 0; h < 4; ++h) {
      double s = o.narrow(1, h * 16, 16).abs().mean().item<double>();
      for (int64_t t = 0; t < 3; ++t) s += w.narrow(0, t * 64 + h * 16, 16).abs().mean().item<double>();
      score.emplace_back(s, h);
    }
    std::sort(score.begin(), score.end());
    lowest[l] = {std::min(score[0].second, score[1].second), std::max(score[0].second, score[1].second)};
  }
  compress::StructuredPruneOptions o;
  o.granularity = "head";
  o.criterion = "l1";
  o.scope = "local";
  o.ratio = 0.5;
  compress::PassContext ctx;
  auto r = compress::HeadPrune(o).run(v.graph, ctx);
  EXPECT_TRUE(r.changed);
  EXPECT_NE(r.summary.find("heads 8 -> 4 (per block: 2, 2)"), std::string::npos) << r.summary;
  std::cout << "opset " << opset << (static_batch ? " static: " : " dynamic: ") << r.summary << "\n";
  EXPECT_LT(ir::graph_flops(r.graph), ir::graph_flops(v.graph));
  EXPECT_EQ(v.graph.num_params() - r.graph.num_params(), 2 * (2 * 16 * 3 * (64 + 1) + 2 * 16 * 64));
  EXPECT_TRUE(testing::tensors_close(testing::run_graph(r.graph, x),
                                     testing::run_graph(zero_heads(v.graph, blocks, lowest), x),
                                     testing::kPruneRtol, testing::kPruneAtol));
  // In steps, each step finding the narrower blocks again.
  o.steps = 2;
  o.ratio = 0.75;
  auto stepped = compress::HeadPrune(o).run(v.graph, ctx);
  EXPECT_NE(stepped.summary.find("step 1/2: 4 heads"), std::string::npos) << stepped.summary;
  EXPECT_NE(stepped.summary.find("heads 8 -> 2 (per block: 1, 1)"), std::string::npos) << stepped.summary;
  EXPECT_EQ(testing::run_graph(stepped.graph, x).sizes(), (at::IntArrayRef{x.size(0), 10}));
  o.steps = 1;
  o.ratio = 0.5;
  // The other criteria run on the packed layout too (taylor on gradients of a few batches).
  data::Splits data = testing::random_splits({3, 32, 32}, 10, static_batch ? 4 : 16);
  for (const char* c : {"l2", "taylor", "random"}) {
    o.criterion = c;
    o.scope = "global";
    o.batches = 2;
    compress::PassContext dctx = testing::pass_context(&data, static_batch ? 1 : 8);
    auto rc = compress::HeadPrune(o).run(v.graph, dctx);
    EXPECT_NE(rc.summary.find("heads 8 -> 4"), std::string::npos) << c << ": " << rc.summary;
    EXPECT_EQ(testing::run_graph(rc.graph, x).sizes(), (at::IntArrayRef{x.size(0), 10})) << c;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Exports, TorchvisionVitHeads,
    ::testing::Combine(::testing::Values(13, 17), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<int, bool>> &i) {
      return "opset" + std::to_string(std::get<0>(i.param)) +
             (std::get<1>(i.param) ? "_static" : "_dynamic");
    });

// A packed projection whose Slices are not three equal thirds (here v is read from rows
// [192, 256) of a 256-row projection) is no attention block head pruning can rewrite: a clear
// error naming the projection and its cuts, never a silent partial pruning.
TEST(TorchvisionVitHeadsRefused, PackedSlicesThatAreNotThirds) {
  if (vit_dir().empty())
    GTEST_SKIP() << kPython << " has no torch/torchvision";
  Vit v = load(17);
  ir::Graph g = v.graph.clone();
  {
    at::NoGradGuard no_grad;
    ir::Node* lin = g.find_node(in_proj(0));
    for (const char* key : {"weight", "bias"}) {
      at::Tensor& p = lin->param(key).value;
      p = at::cat({p, at::randn_like(p.narrow(0, 0, 64))}, 0);
    }
    ir::Node* sl = g.find_node(in_proj(0).substr(0, in_proj(0).size() - 6) + "Slice_2");
    ASSERT_EQ(sl->attr_ints("starts"), (std::vector<int64_t>{128}));
    sl->attrs["starts"] = std::vector<int64_t>{192};
    sl->attrs["ends"] = std::vector<int64_t>{256};
  }
  ir::verify(g);
  auto blocks = compress::find_attention(g);
  ASSERT_EQ(blocks.size(), 1u);  // layer 1 is still torch's layout
  EXPECT_EQ(blocks[0].q, in_proj(1));
  auto why = compress::unmatched_packed_attention(g, blocks);
  ASSERT_EQ(why.size(), 1u);
  compress::StructuredPruneOptions o;
  o.granularity = "head";
  o.ratio = 0.5;
  compress::PassContext ctx;
  try {
    compress::HeadPrune(o).run(g, ctx);
    ADD_FAILURE() << "head pruning ran on a packed projection that is not cut in thirds";
  } catch (const UnsupportedError &e) {
    std::string m = e.what();
    for (const std::string& want : {in_proj(0), std::string("256 output rows"), std::string("[192, 256)"),
                                    std::string("equal thirds"), std::string("granularity channel")})
      EXPECT_NE(m.find(want), std::string::npos) << want << " not in: " << m;
  }
  // The unchanged model has nothing to explain.
  EXPECT_TRUE(compress::unmatched_packed_attention(v.graph, compress::find_attention(v.graph)).empty());
}

// Thirds, but a Softmax across the heads (axis 0 of [N*H, L, L]): the kept heads would depend on
// the removed ones, so that block is refused too, naming the layout head pruning rewrites.
TEST(TorchvisionVitHeadsRefused, SoftmaxAcrossHeads) {
  if (vit_dir().empty())
    GTEST_SKIP() << kPython << " has no torch/torchvision";
  ir::Graph g = load(17).graph.clone();
  std::string attn = in_proj(0).substr(0, in_proj(0).size() - 6);
  ir::Node* softmax = g.find_node(attn + "Softmax");
  ASSERT_NE(softmax, nullptr);
  softmax->attrs["axis"] = int64_t{0};
  ir::verify(g);
  auto blocks = compress::find_attention(g);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].q, in_proj(1));
  compress::StructuredPruneOptions o;
  o.granularity = "head";
  compress::PassContext ctx;
  try {
    compress::HeadPrune(o).run(g, ctx);
    ADD_FAILURE() << "head pruning ran with a Softmax across heads";
  } catch (const UnsupportedError &e) {
    std::string m = e.what();
    EXPECT_NE(m.find(in_proj(0) + "' (192 output rows) is read by [0, 64), [64, 128), [128, 192)"),
              std::string::npos) << m;
    EXPECT_NE(m.find("do not follow the layout"), std::string::npos) << m;
  }
}

// End to end through the command line: a workflow prunes the imported ViT
// (attention and MLP channels, no data needed for L1) and exports it; the
// exported file runs at another batch size through `squeeze infer`.
TEST(TorchvisionVitCli, WorkflowPrunesAttentionAndTheExportRunsAtBatch5) {
  if (vit_dir().empty())
    GTEST_SKIP() << kPython << " has no torch/torchvision";
  testing::TempDir dir;
  std::ofstream(dir.file("w.yaml"))
      << "model: {onnx: " << vit_dir() << "/vit_opset17.onnx}\n"
      << "experiments:\n"
         "  - name: half\n"
         "    stages: [{method: prune, params: {kind: structured, criterion: "
         "l1, ratio: 0.5}}]\n"
         "output: {export: [onnx], latency: false}\n";
  auto cli = [](std::vector<std::string> args) {
    std::ostringstream out, err;
    args.insert(args.begin(), "--quiet");
    int code = cli::run_cli(args, out, err);
    log::set_level(log::Level::kInfo);
    return std::make_pair(code, out.str() + err.str());
  };
  auto run = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(run.first, 0) << run.second;
  std::string pruned = dir.file("out/models/half.onnx");
  auto infer = cli({"infer", pruned, "--input", vit_dir() + "/vit_input5.npy",
                    "--output", dir.file("y.npy")});
  ASSERT_EQ(infer.first, 0) << infer.second;
  EXPECT_EQ(data::read_npy(dir.file("y.npy")).sizes(), (at::IntArrayRef{5, 10}));
  // The attention's packed projections shrank with the MLPs: 3 * 64 rows each
  // before.
  ir::Graph g = io::import_onnx(pruned);
  int64_t packed_rows = 0;
  for (const auto &n : g.nodes)
    if (n.op == "Linear" && n.name.find("self_attention") != std::string::npos &&
        n.param("weight").value.size(1) == 64 &&
        n.param("weight").value.size(0) != 64)
      packed_rows += n.param("weight").value.size(0);
  EXPECT_GT(packed_rows, 0);
  EXPECT_LT(packed_rows, 2 * 192);
  std::cout << "CLI: packed in_proj rows after pruning " << packed_rows
            << " of 384\n";
}

// Whole-head pruning end to end through the command line, on both exports: the workflow
// removes half the heads (L1, no data needed), the exported file computes what the in-process
// pass computes, at batch 5 (dynamic export) or 1 (static export), through `squeeze infer`.
TEST(TorchvisionVitCli, WorkflowPrunesHeadsAndTheExportMatches) {
  if (vit_dir().empty())
    GTEST_SKIP() << kPython << " has no torch/torchvision";
  auto cli = [](std::vector<std::string> args) {
    std::ostringstream out, err;
    args.insert(args.begin(), "--quiet");
    int code = cli::run_cli(args, out, err);
    log::set_level(log::Level::kInfo);
    return std::make_pair(code, out.str() + err.str());
  };
  for (bool static_batch : {false, true}) {
    SCOPED_TRACE(static_batch ? "static export" : "dynamic export");
    std::string model = vit_dir() + "/vit_opset17" + (static_batch ? "_static" : "") + ".onnx";
    testing::TempDir dir;
    std::ofstream(dir.file("w.yaml"))
        << "model: {onnx: " << model << "}\n"
        << "experiments:\n"
           "  - name: heads\n"
           "    stages: [{method: prune, params: {kind: structured, granularity: head, "
           "ratio: 0.5}}]\n"
           "output: {export: [onnx], latency: false}\n";
    auto run = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
    ASSERT_EQ(run.first, 0) << run.second;
    std::string pruned = dir.file("out/models/heads.onnx");
    std::string input = vit_dir() + (static_batch ? "/vit_input.npy" : "/vit_input5.npy");
    auto infer = cli({"infer", pruned, "--input", input, "--output", dir.file("y.npy")});
    ASSERT_EQ(infer.first, 0) << infer.second;
    at::Tensor y = data::read_npy(dir.file("y.npy"));
    // The same pass in process (the workflow's defaults: l1, global).
    Vit v = load(17, static_batch);
    compress::StructuredPruneOptions o;
    o.granularity = "head";
    o.ratio = 0.5;
    compress::PassContext ctx;
    auto r = compress::HeadPrune(o).run(v.graph, ctx);
    at::Tensor want = testing::run_graph(r.graph, static_batch ? v.x : v.x5);
    ASSERT_EQ(y.sizes(), want.sizes());
    EXPECT_TRUE(at::allclose(y, want, kRtol, kAtol))
        << "max relative error " << max_rel_error(y, want);
    // Half of the 8 heads are gone from the exported file.
    ir::Graph g = io::import_onnx(pruned);
    int64_t heads = 0, rows = 0;
    for (const auto& b : compress::find_attention(g)) {
      heads += b.heads;
      rows += g.find_node(b.q)->param("weight").value.size(0);
    }
    EXPECT_EQ(heads, 4);
    EXPECT_EQ(rows, 4 * 3 * 16);
    std::cout << "CLI " << (static_batch ? "static" : "dynamic") << ": " << r.summary
              << "; exported vs in-process max relative error " << max_rel_error(y, want) << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(Opsets, TorchvisionVit, ::testing::Values(13, 17),
                         [](const ::testing::TestParamInfo<int> &i) {
                           return "opset" + std::to_string(i.param);
                         });

} // namespace
} // namespace squeeze
