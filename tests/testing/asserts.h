// Tensor assertions with named tolerances, and small paths shared by the tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "squeeze/exec/executor.h"

namespace squeeze::testing {

// float32 ops reordered (e.g. our conv vs a reference conv): a few ulps of the magnitudes.
constexpr double kFloatRtol = 1e-5;
constexpr double kFloatAtol = 1e-5;

inline ::testing::AssertionResult tensors_close(const at::Tensor& actual, const at::Tensor& expected,
                                                double rtol = kFloatRtol, double atol = kFloatAtol) {
  if (!actual.sizes().equals(expected.sizes()))
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " != expected " << expected.sizes();
  at::Tensor a = actual.detach().to(at::kDouble), e = expected.detach().to(at::kDouble);
  at::Tensor err = (a - e).abs();
  at::Tensor bound = atol + rtol * e.abs();
  if (err.le(bound).all().item<bool>()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max abs error " << err.max().item<double>() << " (rtol " << rtol
                                       << ", atol " << atol << "), max |expected| " << e.abs().max().item<double>();
}

// Per-node times of one eval run: nodes the executor skips (folded, fused) stay at exactly zero.
inline std::vector<double> node_times(exec::Executor& ex, const at::Tensor& x) {
  std::vector<double> us;
  ex.time_nodes(&us);
  ex.forward(x);
  ex.time_nodes(nullptr);
  return us;
}

// Executor options without the eval rewrites: every node its own kernel on NCHW tensors, the
// reference the optimized executor is compared with.
inline exec::ExecutorOptions plain_executor() {
  exec::ExecutorOptions o;
  o.optimize_inference = false;
  return o;
}

inline std::string shared_dir() {
  if (const char* env = std::getenv("SQUEEZE_SHARED_DIR")) return env;
#ifdef SQUEEZE_SHARED_DIR
  return SQUEEZE_SHARED_DIR;
#else
  return "../shared";
#endif
}

inline std::string source_dir() {
#ifdef SQUEEZE_SOURCE_DIR
  return SQUEEZE_SOURCE_DIR;
#else
  return ".";
#endif
}

// A fresh temporary folder, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "squeeze-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  // Writes `text` to file(name) and returns that path.
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = file(name);
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace squeeze::testing
