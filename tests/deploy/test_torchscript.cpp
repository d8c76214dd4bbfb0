// TorchScript export: the .pt file loads in libtorch and in PyTorch (Debian's /usr/bin/python3,
// when it has torch) and reproduces squeeze's outputs.
#include "squeeze/deploy/torchscript.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/import.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "squeeze/compress/lowrank/lowrank.h"
#include "squeeze/exec/executor.h"
#include "squeeze/io/onnx.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "testing/runtimes.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
constexpr double kRtol = 1e-4, kAtol = 1e-5;

std::string tmp_path(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("squeeze_ts_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

at::Tensor sample(const ir::Graph& g, int64_t batch) {
  std::vector<int64_t> s;
  for (auto d : g.inputs.at(0).shape) s.push_back(d == ir::kDynamic ? batch : d);
  return at::randn(s);
}

class TorchScriptZoo : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchScriptZoo, LibtorchAndPyTorchReproduceSqueeze) {
  std::map<std::string, std::string> params;
  if (GetParam() == "resnet18") params["input_size"] = "32";
  ir::Graph g = models::build(GetParam(), params, 5);
  std::string pt = tmp_path(GetParam() + ".pt");
  deploy::export_torchscript(g, pt);
  at::manual_seed(2);
  at::Tensor x = sample(g, 3);
  at::Tensor want = exec::Executor(g).forward(x);
  torch::jit::Module m = torch::jit::load(pt);
  at::Tensor got = m.forward({x}).toTensor();
  EXPECT_TRUE(at::allclose(got, want, kRtol, kAtol)) << "libtorch: max diff " << (got - want).abs().max().item<double>();
  if (!testing::pytorch_missing().empty()) GTEST_SKIP() << testing::pytorch_missing();
  at::Tensor py = testing::run_torchscript_in_pytorch(pt, x);
  ASSERT_TRUE(py.defined());
  py = py.reshape(want.sizes());
  EXPECT_TRUE(at::allclose(py, want, kRtol, kAtol)) << "PyTorch: max diff " << (py - want).abs().max().item<double>();
}

INSTANTIATE_TEST_SUITE_P(Zoo, TorchScriptZoo,
                         ::testing::Values("small_cnn", "lenet5", "mlp", "jet_tagger", "resnet8", "mobilenet_v2_tiny",
                                           "resnet18"));

TEST(TorchScript, ImportedOnnxModelExports) {
  std::string model = std::string(SQUEEZE_SHARED_DIR) + "/conformance/onnx/light/light_squeezenet.onnx";
  if (!fs::exists(model)) GTEST_SKIP() << "no " << model;
  ir::Graph g = io::import_onnx(model);
  std::string pt = tmp_path("squeezenet.pt");
  deploy::export_torchscript(g, pt);
  at::Tensor x = at::rand({1, 3, 224, 224});
  // light_squeezenet's constant weights make its softmax flip between near-uniform and peaked
  // outputs on float rounding alone, so the reference is the plain NCHW execution TorchScript
  // mirrors, not the channels-last one (whose different summation order flips it at random).
  exec::ExecutorOptions nchw;
  nchw.optimize_inference = false;
  at::Tensor want = exec::Executor(g, nchw).forward(x);
  at::Tensor got = torch::jit::load(pt).forward({x}).toTensor();
  EXPECT_TRUE(at::allclose(got, want, kRtol, 1e-7)) << "max diff " << (got - want).abs().max().item<double>() << ", max " << want.abs().max().item<double>();
}

// Low-rank factorized graphs: pairs of Linears, of Convs (k x k then 1 x 1), and of MatMuls with
// a constant on the left.
TEST(TorchScript, LowRankFactorizedGraphsExport) {
  ir::GraphBuilder b("left_matmul", 3);
  std::string x = b.input("input", {16, 5});
  std::map<std::string, ir::Param> p;
  p["value"].value = b.init_weight({12, 16}, 16);
  std::string c = b.node("Constant", {}, {}, p, "W");
  ir::Graph left = b.finish({b.node("MatMul", {c, x}, {}, {}, "mix")});
  std::vector<std::pair<std::string, ir::Graph>> graphs = {{"left_matmul", left}};
  for (const char* zoo : {"mlp", "small_cnn", "vit_tiny"}) graphs.emplace_back(zoo, models::build(zoo, {}, 5));
  for (auto& [name, g] : graphs) {
    compress::LowRankOptions o;
    o.rule = {0, 0.25, 0.0, "ratio"};
    compress::PassContext ctx;
    compress::PassResult r = compress::LowRank(o).run(g, ctx);
    ASSERT_TRUE(r.changed) << name << ": " << r.summary;
    std::string pt = tmp_path("lowrank_" + name + ".pt");
    deploy::export_torchscript(r.graph, pt);
    at::manual_seed(2);
    at::Tensor in = sample(r.graph, 3);
    at::Tensor want = exec::Executor(r.graph).forward(in);
    at::Tensor got = torch::jit::load(pt).forward({in}).toTensor();
    EXPECT_TRUE(at::allclose(got, want, kRtol, kAtol)) << name << ": max diff " << (got - want).abs().max().item<double>();
    if (!testing::pytorch_missing().empty()) continue;
    at::Tensor py = testing::run_torchscript_in_pytorch(pt, in);
    ASSERT_TRUE(py.defined()) << name;
    py = py.reshape(want.sizes());
    EXPECT_TRUE(at::allclose(py, want, kRtol, kAtol)) << name << ": PyTorch max diff " << (py - want).abs().max().item<double>();
  }
}

TEST(TorchScript, MaskedWeightsAreZeroInTheFile) {
  ir::Graph g = models::build("mlp", {}, 1);
  for (auto& n : g.nodes)
    if (n.op == "Linear") {
      ir::Param& w = n.param("weight");
      w.mask = (at::rand(w.value.sizes()) > 0.5).to(at::kFloat);
      break;
    }
  std::string pt = tmp_path("masked.pt");
  deploy::export_torchscript(g, pt);
  at::Tensor x = sample(g, 2);
  exec::apply_masks(g);
  at::Tensor want = exec::Executor(g).forward(x);
  EXPECT_TRUE(at::allclose(torch::jit::load(pt).forward({x}).toTensor(), want, kRtol, kAtol));
}

TEST(TorchScript, CastsCompile) {
  // Module::define() in C++ cannot name dtypes (torch.float64): casts are written as methods.
  ir::Graph g;
  g.inputs.push_back({"x", {ir::kDynamic, 4}, at::kFloat});
  auto cast = [&](const std::string& in, const std::string& out, const std::string& to) {
    ir::Node n;
    n.name = out + "_node";
    n.op = "Cast";
    n.inputs = {in};
    n.outputs = {out};
    n.attrs["to"] = to;
    g.nodes.push_back(n);
  };
  cast("x", "a", "int64");
  cast("a", "b", "double");
  cast("b", "y", "float");
  g.outputs = {"y"};
  ir::verify(g);
  std::string pt = tmp_path("cast.pt");
  deploy::export_torchscript(g, pt);
  at::Tensor x = at::randn({3, 4}) * 10;
  EXPECT_TRUE(at::equal(torch::jit::load(pt).forward({x}).toTensor(), exec::Executor(g).forward(x)));
}

}  // namespace
}  // namespace squeeze
