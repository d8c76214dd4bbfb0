// examples/transfer.yaml as written (resnet18 from PyTorch at 64 x 64, 5,000 training images,
// the whole Fashion-MNIST test split): the accuracy and compression the README reports. About five
// minutes of CPU with one thread (47 min wall clock when measured on a heavily shared machine).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;

TEST(TransferSlow, FineTunedPrunedQuantizedAsPromised) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  testing::TempDir dir;
  const std::string onnx = dir.file("resnet18_imagenet.onnx");
  const std::string cmd = "/usr/bin/python3 " + testing::source_dir() +
                          "/scripts/torchvision_onnx.py resnet18 64 " + onnx + " > /dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "/usr/bin/python3 has no torch/torchvision";
  auto r = testing::cli({"run", testing::source_dir() + "/examples/transfer.yaml", "--out",
                         dir.file("run"), "--set", "model.onnx=" + onnx, "--set", "threads=1"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir.file("run/report.json"));
  const auto rep = nlohmann::json::parse(in);
  const double base = rep["baseline"]["accuracy"];
  const auto& res = rep["results"][0];
  EXPECT_GE(base, 0.76);  // measured 0.7993
  EXPECT_LE(res["accuracy_drop"].get<double>(), 0.03);  // measured -0.011
  EXPECT_GE(res["compression_ratio"].get<double>(), 12.0);  // measured 15.4
  std::cout << "[ transfer ] baseline " << base << ", prune50-int8 " << res["accuracy"]
            << ", compression " << res["compression_ratio"] << "\n";
}

}  // namespace
}  // namespace squeeze
