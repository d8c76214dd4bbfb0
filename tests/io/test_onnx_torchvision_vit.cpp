// torchvision's VisionTransformer as torch.onnx.export writes it (opsets 13 and
// 17): imports, matches PyTorch, prunes with the dependency graph, and survives
// export and re-import.
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
#include <sstream>

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
#include "testing/asserts.h"

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

// Whole-head removal does not follow the packed layout yet: asking for it is a
// clear error that names the projection and points to channel granularity,
// never a silent "nothing to prune".
TEST_P(TorchvisionVit, HeadGranularityExplainsThePackedLayout) {
  Vit v = load(GetParam());
  EXPECT_TRUE(compress::find_attention(v.graph).empty());
  compress::StructuredPruneOptions o;
  o.granularity = "head";
  o.ratio = 0.5;
  compress::PassContext ctx;
  try {
    compress::HeadPrune(o).run(v.graph, ctx);
    ADD_FAILURE() << "head pruning ran on packed attention";
  } catch (const UnsupportedError &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("nn.MultiheadAttention"), std::string::npos) << m;
    EXPECT_NE(m.find("encoder_layers_encoder_layer_0_self_attention"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("granularity channel"), std::string::npos) << m;
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

INSTANTIATE_TEST_SUITE_P(Opsets, TorchvisionVit, ::testing::Values(13, 17),
                         [](const ::testing::TestParamInfo<int> &i) {
                           return "opset" + std::to_string(i.param);
                         });

} // namespace
} // namespace squeeze
