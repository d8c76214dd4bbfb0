// The installed program itself, as a separate process: start-up (including the one-time re-exec
// that picks OpenBLAS kernels for the CPU, see env::use_native_blas_kernels), exit codes and output.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

using Outcome = testing::CliResult;
using testing::run_binary;

TEST(CliBinary, BenchRunsAndReportsTheBlasKernels) {
  Outcome r = run_binary("--threads 1 bench zoo:mlp --batch 2 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["results"].size(), 1u);
  EXPECT_EQ(j["results"][0]["batch"], 2);
  EXPECT_GT(j["results"][0]["latency_us"]["median"].get<double>(), 0.0);
  ASSERT_TRUE(j.contains("env"));
  if (j["env"].value("blas", "") == "openblas") {
    __builtin_cpu_init();
    // On a CPU with AVX2 squeeze never stays on OpenBLAS's SSE3 fallback.
    if (__builtin_cpu_supports("avx2")) EXPECT_NE(j["env"].value("blas_core", ""), "Prescott");
  }
}

TEST(CliBinary, TheUsersKernelChoiceWins) {
  Outcome r = run_binary("--threads 1 bench zoo:mlp --batch 1 --json", "OPENBLAS_CORETYPE=Nehalem");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  if (j["env"].value("blas", "") == "openblas") EXPECT_EQ(j["env"].value("blas_core", ""), "Nehalem");
}

TEST(CliBinary, ExitCodesSurviveStartUp) {
  EXPECT_EQ(run_binary("--version").code, 0);
  Outcome bad = run_binary("no-such-command");
  EXPECT_EQ(bad.code, 2) << bad.out;
  Outcome missing = run_binary("inspect /no/such/model.onnx");
  EXPECT_EQ(missing.code, 2) << missing.out;
  EXPECT_NE(missing.out.find("/no/such/model.onnx"), std::string::npos) << missing.out;
}

TEST(CliBinary, ProfileShowsTimeByOpType) {
  Outcome r = run_binary("--threads 1 bench zoo:small_cnn --batch 2 --profile");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* op : {"Conv", "MaxPool", "Linear", "Relu"}) EXPECT_NE(r.out.find(op), std::string::npos) << op;
  EXPECT_NE(r.out.find("share"), std::string::npos);
}

}  // namespace
}  // namespace squeeze
