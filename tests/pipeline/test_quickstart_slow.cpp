// The quickstart's promises (issue: backbone), on real Fashion-MNIST: about 3 minutes on 2 cores.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;

TEST(QuickstartSlow, AccuracyAndCompressionAsPromised) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  testing::TempDir dir;
  std::ostringstream out, err;
  int code = cli::run_cli({"--quiet", "run", testing::source_dir() + "/examples/quickstart.yaml", "--out", dir.path()},
                          out, err);
  ASSERT_EQ(code, 0) << err.str();
  std::ifstream in(dir.file("report.json"));
  auto rep = nlohmann::json::parse(in);
  double base = rep["baseline"]["accuracy"];
  EXPECT_GE(base, 0.88);
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& r : rep["results"]) by_name[r["name"]] = r;
  ASSERT_TRUE(by_name.count("prune50") && by_name.count("prune80"));
  EXPECT_LE(by_name["prune50"]["accuracy_drop"].get<double>(), 0.010);
  EXPECT_LE(by_name["prune80"]["accuracy_drop"].get<double>(), 0.020);
  const auto& p80 = by_name["prune80"];
  double ratio = p80["compression_ratio"];
  EXPECT_GE(ratio, 2.5);
  double file_ratio = double(fs::file_size(dir.file(rep["baseline"]["artifacts"]["checkpoint"]))) /
                      double(fs::file_size(dir.file(p80["artifacts"]["checkpoint"])));
  EXPECT_NEAR(ratio / file_ratio, 1.0, 0.05) << "reported " << ratio << ", files " << file_ratio;
  std::cout << "[ quickstart ] baseline " << base << ", prune50 drop " << by_name["prune50"]["accuracy_drop"]
            << ", prune80 drop " << p80["accuracy_drop"] << ", compression " << ratio << " (files " << file_ratio
            << ")\n";
}

}  // namespace
}  // namespace squeeze
