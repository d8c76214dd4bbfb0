// The ONNX conformance runner's machinery (used by test_onnx_conformance.cpp; header-only so a
// slow-set runner, built from *_slow.cpp files alone, could share it).
//
// Every case either passes within its tolerance or is listed, with the reason, in
// tests/conformance/onnx_expectations.txt; a listed case that starts passing fails too, so the
// list stays honest.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "squeeze/exec/executor.h"
#include "squeeze/io/onnx.h"
#include "squeeze/util/error.h"

namespace squeeze::conformance {

namespace fs = std::filesystem;

struct Tolerance {
  const char* name;
  double rtol, atol;
};
// ONNX backend tests' own default for the operator and module cases.
constexpr Tolerance kDefaultTolerance{"onnx-backend", 1e-3, 1e-5};
// The ONNX runner's tolerance for the light models (README in the light folder).
constexpr Tolerance kLightTolerance{"onnx-light", 1e-3, 1e-7};
constexpr Tolerance kLightDenseNetTolerance{"onnx-light-densenet121", 2e-3, 1e-7};

inline std::string shared_dir() {
#ifdef SQUEEZE_SHARED_DIR
  if (fs::exists(SQUEEZE_SHARED_DIR)) return SQUEEZE_SHARED_DIR;
#endif
  if (const char* env = std::getenv("SQUEEZE_SHARED_DIR")) return env;
  return "";
}

inline std::string conformance_dir() {
  std::string s = shared_dir();
  return s.empty() ? "" : s + "/conformance/onnx";
}

inline std::string expectations_path() {
#ifdef SQUEEZE_SOURCE_DIR
  return std::string(SQUEEZE_SOURCE_DIR) + "/tests/conformance/onnx_expectations.txt";
#else
  return "tests/conformance/onnx_expectations.txt";
#endif
}

struct Case {
  std::string id;      // "simple/test_shrink", "light/light_vgg19"
  std::string folder;  // "simple"
  std::string model;   // path of the .onnx file
  std::string dir;     // case folder (test_data_set_*), or "" for light models
  std::string light_output;  // light models: the expected output file
};

inline std::vector<Case> discover(const std::vector<std::string>& folders) {
  std::vector<Case> cases;
  std::string root = conformance_dir();
  if (root.empty() || !fs::exists(root)) return cases;
  for (const auto& folder : folders) {
    fs::path dir = fs::path(root) / folder;
    if (!fs::exists(dir)) continue;
    std::vector<fs::path> entries;
    for (const auto& e : fs::directory_iterator(dir)) entries.push_back(e.path());
    std::sort(entries.begin(), entries.end());
    for (const auto& p : entries) {
      if (folder == "light") {
        if (p.extension() != ".onnx") continue;
        std::string stem = p.stem().string();
        cases.push_back({folder + "/" + stem, folder, p.string(), "", (dir / (stem + "_output_0.pb")).string()});
      } else if (fs::is_directory(p) && fs::exists(p / "model.onnx")) {
        cases.push_back({folder + "/" + p.filename().string(), folder, (p / "model.onnx").string(), p.string(), ""});
      }
    }
  }
  return cases;
}

// gtest prints parameters with this instead of a byte dump.
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.id; }

// id -> reason
inline std::map<std::string, std::string> expectations() {
  std::map<std::string, std::string> out;
  std::ifstream f(expectations_path());
  std::string line;
  while (std::getline(f, line)) {
    auto hash = line.find('#');
    if (hash == 0) continue;
    std::istringstream is(line);
    std::string id, reason, word;
    if (!(is >> id)) continue;
    while (is >> word) reason += (reason.empty() ? "" : " ") + word;
    out[id] = reason;
  }
  return out;
}

// "" when the tensors agree, else a description of the worst element.
inline std::string compare(const at::Tensor& got_in, const at::Tensor& want_in, const Tolerance& tol) {
  if (!got_in.sizes().equals(want_in.sizes()))
    return "shape " + c10::str(got_in.sizes()) + " != expected " + c10::str(want_in.sizes());
  at::Tensor got = got_in.to(at::kDouble), want = want_in.to(at::kDouble);
  if (got.numel() == 0) return "";
  at::Tensor both_nan = at::isnan(got) & at::isnan(want);
  at::Tensor err = at::abs(got - want);
  at::Tensor bound = tol.atol + tol.rtol * at::abs(want);
  at::Tensor bad = (~both_nan) & ~(err <= bound);
  if (!bad.any().item<bool>()) return "";
  int64_t i = at::argmax(at::where(bad, err.nan_to_num(1e300), at::zeros_like(err))).item<int64_t>();
  std::ostringstream os;
  os << bad.sum().item<int64_t>() << " of " << got.numel() << " elements outside rtol " << tol.rtol << " atol "
     << tol.atol << " (" << tol.name << "); worst at flat index " << i << ": got " << got.reshape(-1)[i].item<double>()
     << ", expected " << want.reshape(-1)[i].item<double>();
  return os.str();
}

inline std::vector<std::string> sorted_files(const fs::path& dir, const std::string& prefix) {
  std::vector<std::pair<int, std::string>> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && e.path().extension() == ".pb")
      found.push_back({std::atoi(name.c_str() + prefix.size()), e.path().string()});
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

// Runs one case: "" on success, else why it failed.
inline std::string run_case(const Case& c) {
  try {
    ir::Graph g = io::import_onnx(c.model);
    exec::Executor ex(g);
    if (c.folder == "light") {
      // The ONNX runner's input: arange(prod(S)).reshape(S) / prod(S), symbolic dims as 1.
      std::vector<int64_t> s;
      for (auto d : g.inputs.at(0).shape) s.push_back(d == ir::kDynamic ? 1 : d);
      int64_t n = 1;
      for (auto d : s) n *= d;
      at::Tensor x = (at::arange(n, at::kFloat) / static_cast<double>(n)).reshape(s);
      at::Tensor y = ex.run({x}).at(0);
      bool dense = c.id.find("densenet") != std::string::npos;
      const Tolerance& tol = dense ? kLightDenseNetTolerance : kLightTolerance;
      at::Tensor want = io::load_onnx_tensor(c.light_output);
      std::string why = compare(y, want, tol);
      if (!why.empty()) return "output 0: " + why;
      // The imported batch dimension is dynamic: a batch of two copies gives the same rows.
      if (g.inputs.at(0).shape.at(0) == ir::kDynamic) {
        at::Tensor y2 = ex.run({at::cat({x, x}, 0)}).at(0);
        for (int64_t i = 0; i < 2; ++i) {
          why = compare(y2.narrow(0, i, 1), want, tol);
          if (!why.empty()) return "batch of 2, row " + std::to_string(i) + ": " + why;
        }
      }
      return "";
    }
    int sets = 0;
    for (const auto& e : fs::directory_iterator(c.dir)) {
      if (!fs::is_directory(e.path()) || e.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
      ++sets;
      std::vector<at::Tensor> inputs;
      for (const auto& f : sorted_files(e.path(), "input_")) inputs.push_back(io::load_onnx_tensor(f));
      std::vector<at::Tensor> outputs = ex.run(inputs);
      auto expected = sorted_files(e.path(), "output_");
      if (expected.size() != outputs.size())
        return "the model has " + std::to_string(outputs.size()) + " outputs, the data set " +
               std::to_string(expected.size());
      for (size_t i = 0; i < expected.size(); ++i) {
        std::string why = compare(outputs[i], io::load_onnx_tensor(expected[i]), kDefaultTolerance);
        if (!why.empty()) return e.path().filename().string() + " output " + std::to_string(i) + ": " + why;
      }
    }
    if (sets == 0) return "no test_data_set_* folder";
    return "";
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

// Imports a case, exports it as ONNX, imports that, and compares the two graphs' outputs on the
// case's inputs (or the light input): "" when they agree within 1e-5 relative.
inline std::string run_export_round_trip(const Case& c) {
  try {
    ir::Graph g = io::import_onnx(c.model);
    fs::path tmp = fs::temp_directory_path() /
                   ("squeeze_conf_" + std::to_string(::getpid()) + "_" + fs::path(c.model).parent_path().filename().string() +
                    fs::path(c.model).stem().string() + ".onnx");
    io::export_onnx(g, tmp.string());
    ir::Graph back = io::import_onnx(tmp.string());
    fs::remove(tmp);
    std::vector<at::Tensor> inputs;
    if (c.folder == "light") {
      std::vector<int64_t> s;
      for (auto d : g.inputs.at(0).shape) s.push_back(d == ir::kDynamic ? 1 : d);
      inputs.push_back(at::rand(s));
    } else {
      for (const auto& e : fs::directory_iterator(c.dir))
        if (e.path().filename().string().rfind("test_data_set_", 0) == 0) {
          for (const auto& f : sorted_files(e.path(), "input_")) inputs.push_back(io::load_onnx_tensor(f));
          break;
        }
    }
    auto want = exec::Executor(g).run(inputs);
    auto got = exec::Executor(back).run(inputs);
    if (want.size() != got.size()) return "output count changed";
    for (size_t i = 0; i < want.size(); ++i) {
      std::string why = compare(got[i], want[i], Tolerance{"export-round-trip", 1e-5, 1e-6});
      if (!why.empty()) return "output " + std::to_string(i) + ": " + why;
    }
    return "";
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

// The gtest verdict for one case, given the expectations file.
inline void check_case(const Case& c) {
  auto listed = expectations();
  auto it = listed.find(c.id);
  std::string why = run_case(c);
  if (it == listed.end()) {
    EXPECT_EQ(why, "") << c.id << " fails and is not listed in " << expectations_path();
  } else {
    EXPECT_NE(why, "") << c.id << " now passes: remove it from " << expectations_path() << " (listed because: "
                       << it->second << ")";
    if (!why.empty()) std::cout << "[ expected failure ] " << c.id << ": " << it->second << "\n";
  }
}

inline std::string test_name(const ::testing::TestParamInfo<Case>& info) {
  std::string s = info.param.id;
  for (auto& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

}  // namespace squeeze::conformance
