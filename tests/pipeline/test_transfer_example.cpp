// examples/transfer.yaml at a tiny scale: an ONNX resnet18 exported by PyTorch (3 x 32 x 32 here,
// 1000 classes) gets a 10-class head, trains on resized, 3-channel, ImageNet-normalized
// Fashion-MNIST, is pruned and quantized; the saved model carries its input transform, so
// `squeeze eval` and `squeeze infer` on raw 28 x 28 images reproduce the run. The full-size run
// and its accuracy: test_transfer_slow.cpp.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.h"
#include "squeeze/data/dataset.h"
#include "squeeze/io/model_io.h"
#include "squeeze/ir/graph.h"
#include "squeeze/train/trainer.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using testing::cli;
using testing::TempDir;

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kFashion[] = "/usr/share/datasets/fashion-mnist";

// torchvision's resnet18 (random init, 1000 classes) as ONNX; "" when torch is unavailable.
std::string make_resnet18(const TempDir& dir, int size) {
  const std::string out = dir.file("resnet18.onnx");
  const std::string cmd = std::string(kPython) + " " + testing::source_dir() +
                          "/scripts/torchvision_onnx.py resnet18 " + std::to_string(size) + " " +
                          out + " > " + dir.file("py.log") + " 2>&1";
  const int rc = fs::exists(kPython) ? std::system(cmd.c_str()) : -1;
  return rc == 0 && fs::exists(out) ? out : "";
}

TEST(TransferExample, TinyRunEndToEnd) {
  if (!fs::exists(kFashion)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TempDir dir;
  const std::string onnx = make_resnet18(dir, 32);
  if (onnx.empty()) GTEST_SKIP() << kPython << " has no torch/torchvision";
  const std::string out = dir.file("run");
  auto r = cli({"run", testing::source_dir() + "/examples/transfer.yaml", "--out", out, "--set",
                "model.onnx=" + onnx, "--set", "data.resize=[32, 32]", "--set",
                "data.limit.train=96", "--set", "data.limit.test=64", "--set",
                "baseline.train.epochs=1", "--set", "threads=1", "--set", "output.latency=false",
                "--set", "output.export=[]"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(out + "/report.json");
  const auto rep = nlohmann::json::parse(in);
  ASSERT_TRUE(rep["baseline"].contains("accuracy"));
  ASSERT_EQ(rep["results"].size(), 1u);
  const auto& res = rep["results"][0];
  EXPECT_EQ(res["stages"], nlohmann::json({"prune", "quantize"}));
  EXPECT_GT(res["compression_ratio"].get<double>(), 4.0);  // channels halved, then int8
  EXPECT_LT(res["flops"].get<double>(), rep["baseline"]["flops"].get<double>());

  // The saved model: 10 outputs, the transform in its metadata.
  const std::string sqz = out + "/" + res["artifacts"]["checkpoint"].get<std::string>();
  ir::Graph g = io::load_model(sqz, 0);
  ir::verify(g);
  EXPECT_EQ(train::output_classes(g), 10);
  const data::Transform t = data::Transform::from_metadata(g.metadata, sqz);
  EXPECT_EQ(t.resize, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(t.channels, 3);
  EXPECT_EQ(t.mean, data::kImagenetMean);

  // eval on the same data (the run's 64 test images): the accuracy the run reported.
  const std::string yaml = dir.write(
      "data.yaml", "data: {dataset: fashion-mnist, limit: {train: 96, test: 64}}\n");
  auto e = cli({"eval", sqz, "--data", yaml, "--json"});
  ASSERT_EQ(e.code, 0) << e.err;
  const auto ej = nlohmann::json::parse(e.out);
  EXPECT_NEAR(ej["accuracy"].get<double>(), res["accuracy"].get<double>(), 1e-9);

  // infer on raw 28 x 28 images (floats in [0, 1], as the data set stores them).
  data::write_npy(dir.file("x.npy"), at::rand({3, 28, 28}));
  auto i = cli({"infer", sqz, "--input", dir.file("x.npy"), "--output", dir.file("y.npy")});
  ASSERT_EQ(i.code, 0) << i.err;
  EXPECT_EQ(data::read_npy(dir.file("y.npy")).sizes(), (at::IntArrayRef{3, 10}));
}

}  // namespace
}  // namespace squeeze
