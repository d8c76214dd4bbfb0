// ONNX export: zoo models and imported models survive export -> import with the same outputs,
// masks are applied, the batch stays dynamic, writes are atomic.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "io/onnx_internal.h"  // ONNX_ML before any onnx header
#include <onnx/checker.h>
#include "squeeze/exec/executor.h"
#include "squeeze/io/onnx.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "testing/runtimes.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
constexpr double kRtol = 1e-5, kAtol = 1e-6;  // the 1e-5 relative
// squeeze vs ONNX Runtime: float32 kernels of two libraries (summation order, fused conv+relu);
// measured at most 1.3e-7 absolute on small_cnn outputs of magnitude 0.5.
constexpr double kOrtRtol = 1e-4, kOrtAtol = 1e-5;

std::string tmp_path(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("squeeze_onnx_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

at::Tensor sample_input(const ir::Graph& g, int64_t batch) {
  std::vector<int64_t> s;
  for (auto d : g.inputs.at(0).shape) s.push_back(d == ir::kDynamic ? batch : d);
  return at::randn(s);
}

struct ZooCase {
  std::string name;
  std::map<std::string, std::string> params;
};

class ZooRoundTrip : public ::testing::TestWithParam<ZooCase> {};

TEST_P(ZooRoundTrip, ExportImportGivesSameOutputs) {
  const auto& zc = GetParam();
  ir::Graph g = models::build(zc.name, zc.params, 7);
  std::string path = tmp_path(zc.name + ".onnx");
  io::export_onnx(g, path);
  ir::Graph back = io::import_onnx(path);
  ASSERT_EQ(back.inputs.size(), g.inputs.size());
  EXPECT_EQ(back.inputs[0].shape[0], ir::kDynamic) << "batch dimension lost";
  EXPECT_EQ(back.num_params(), g.num_params());
  at::manual_seed(1);
  for (int64_t batch : {1, 3}) {
    at::Tensor x = sample_input(g, batch);
    at::Tensor want = exec::Executor(g).forward(x);
    at::Tensor got = exec::Executor(back).forward(x);
    EXPECT_TRUE(at::allclose(got, want, kRtol, kAtol))
        << zc.name << " batch " << batch << ": max diff " << (got - want).abs().max().item<double>();
  }
  // ONNX Runtime, the judge of the file, agrees with squeeze (default optimizations: what users get).
  if (testing::onnxruntime_missing().empty()) {
    at::Tensor x = sample_input(g, 2);
    at::Tensor want = exec::Executor(g).forward(x);
    auto got = testing::run_onnxruntime(path, {x}, testing::kOrtDefault);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(testing::tensors_close(got[0], want, kOrtRtol, kOrtAtol)) << zc.name << " in ONNX Runtime";
  } else {
    std::cout << "[  SKIPPED ] ONNX Runtime check: " << testing::onnxruntime_missing() << "\n";
  }
  // And again: squeeze -> ONNX -> squeeze -> ONNX -> squeeze.
  std::string path2 = tmp_path(zc.name + "_2.onnx");
  io::export_onnx(back, path2);
  ir::Graph back2 = io::import_onnx(path2);
  at::Tensor x = sample_input(g, 2);
  EXPECT_TRUE(at::allclose(exec::Executor(back2).forward(x), exec::Executor(g).forward(x), kRtol, kAtol));
  fs::remove(path);
  fs::remove(path2);
}

INSTANTIATE_TEST_SUITE_P(Zoo, ZooRoundTrip,
                         ::testing::Values(ZooCase{"small_cnn", {}}, ZooCase{"lenet5", {}}, ZooCase{"mlp", {}},
                                           ZooCase{"jet_tagger", {}}, ZooCase{"resnet8", {}},
                                           ZooCase{"resnet20", {}}, ZooCase{"mobilenet_v2_tiny", {}},
                                           ZooCase{"resnet18", {{"input_size", "32"}}}),
                         [](const ::testing::TestParamInfo<ZooCase>& i) { return i.param.name; });

TEST(OnnxExport, MaskedParametersAreWrittenAsZeros) {
  ir::Graph g = models::build("small_cnn", {}, 3);
  ir::Node* conv = nullptr;
  for (auto& n : g.nodes)
    if (n.op == "Conv") {
      conv = &n;
      break;
    }
  ASSERT_NE(conv, nullptr);
  ir::Param& w = conv->param("weight");
  at::Tensor mask = (at::rand(w.value.sizes()) > 0.5).to(at::kFloat);
  w.mask = mask;  // the value itself keeps its non-zero entries: export must apply the mask
  std::string path = tmp_path("masked.onnx");
  io::export_onnx(g, path);
  ir::Graph back = io::import_onnx(path);
  const ir::Node* bc = back.find_node(conv->name);
  ASSERT_NE(bc, nullptr);
  at::Tensor v = bc->param("weight").value;
  EXPECT_TRUE(at::equal(v.eq(0), mask.eq(0) | w.value.eq(0)));
  EXPECT_TRUE(at::allclose(v, w.value * mask));
  fs::remove(path);
}

TEST(OnnxExport, PassesCheckerAndWritesOpset13WithSymbolicBatch) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  std::string path = tmp_path("checked.onnx");
  io::export_onnx(g, path);
  onnx::ModelProto m;
  std::ifstream f(path, std::ios::binary);
  ASSERT_TRUE(m.ParseFromIstream(&f));
  EXPECT_NO_THROW(onnx::checker::check_model(m));
  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).version(), 13);
  EXPECT_EQ(m.graph().input(0).type().tensor_type().shape().dim(0).dim_param(), "batch");
  EXPECT_EQ(m.graph().output(0).type().tensor_type().shape().dim(0).dim_param(), "batch");
  EXPECT_GT(m.graph().initializer_size(), 0);
  fs::remove(path);
}

TEST(OnnxExport, FailedWriteLeavesNoFile) {
  ir::Graph g = models::build("mlp", {}, 0);
  // Missing folders are created (util/fs.h), so the impossible path is one under a regular file.
  const std::string file = tmp_path("plain-file");
  std::ofstream(file) << "x";
  EXPECT_THROW(io::export_onnx(g, file + "/model.onnx"), UserError);
  EXPECT_FALSE(fs::exists(file + "/model.onnx"));
  fs::remove(file);
  EXPECT_THROW(io::export_onnx(g, tmp_path("x.onnx"), io::OnnxExportOptions{11}), UnsupportedError);
}

TEST(OnnxExport, ComposedOpsSurviveTheRoundTrip) {
  // Ops that opset 13 lacks are written as decompositions and recognised again on import.
  ir::Graph g;
  g.inputs.push_back({"x", {ir::kDynamic, 4, 16}, at::kFloat});
  auto add = [&](const std::string& op, const std::string& in, const std::string& out,
                 std::map<std::string, ir::Attr> attrs = {}, std::map<std::string, ir::Param> params = {}) {
    ir::Node n;
    n.name = out + "_node";
    n.op = op;
    n.inputs = {in};
    n.outputs = {out};
    n.attrs = std::move(attrs);
    n.params = std::move(params);
    g.nodes.push_back(n);
  };
  std::map<std::string, ir::Param> ln;
  ln["weight"].value = at::randn({16});
  ln["bias"].value = at::randn({16});
  add("LayerNorm", "x", "a", {{"axis", int64_t{-1}}, {"epsilon", 1e-5}}, ln);
  add("Gelu", "a", "b");
  add("Silu", "b", "c");
  add("HardSwish", "c", "d");
  add("Relu6", "d", "e");
  add("Softmax", "e", "y", {{"axis", int64_t{1}}});
  g.outputs = {"y"};
  ir::verify(g);
  std::string path = tmp_path("composed.onnx");
  io::export_onnx(g, path);
  ir::Graph back = io::import_onnx(path);
  for (const char* op : {"LayerNorm", "Gelu", "Silu", "Relu6"}) {
    int n = 0;
    for (const auto& node : back.nodes) n += node.op == op;
    EXPECT_EQ(n, 1) << op;
  }
  at::Tensor x = at::randn({2, 4, 16});
  EXPECT_TRUE(at::allclose(exec::Executor(back).forward(x), exec::Executor(g).forward(x), kRtol, kAtol));
  fs::remove(path);
}

}  // namespace
}  // namespace squeeze
