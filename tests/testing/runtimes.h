// The runtimes that judge squeeze's exports, run as separate processes so the test binary does not
// link them: ONNX Runtime (tests/scripts/run_onnxruntime.js on the onnxruntime-node package that
// scripts/install-deps.sh puts in .deps/onnxruntime) for .onnx files, PyTorch
// (tests/scripts/run_torchscript.py on Debian's python3-torch) for TorchScript files.
// Tests skip, saying why, only when a runtime is absent; a runtime that is there but fails on a
// file is a test failure.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <sys/wait.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "testing/asserts.h"

namespace squeeze::testing {

namespace detail {

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `cmd` with stdout and stderr in `log`; returns the exit status (-1 if it did not exit).
inline int run_logged(const std::string& cmd, const std::string& log) {
  int rc = std::system((cmd + " >" + shell_quote(log) + " 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace detail

// ONNX Runtime's graph optimization levels, as the script takes them.
inline const char* const kOrtDisabled = "disabled";  // each node as written: the file's own semantics
inline const char* const kOrtDefault = "all";        // what an ONNX Runtime user gets by default

// Empty when ONNX Runtime loads; otherwise why not, for GTEST_SKIP.
inline const std::string& onnxruntime_missing() {
  static const std::string why = [] {
    TempDir t;
    std::string log = t.file("version.log");
    int rc = detail::run_logged("node " + detail::shell_quote(source_dir() + "/tests/scripts/run_onnxruntime.js") +
                                    " --version",
                                log);
    if (rc == 0) return std::string();
    return "ONNX Runtime is not available (run scripts/install-deps.sh; it needs node and npm): " +
           detail::read_all(log);
  }();
  return why;
}

// The outputs of ONNX Runtime (CPU, one thread) on `model` at optimization `level`, in the model's
// output order. A run that fails adds a test failure with ONNX Runtime's message and returns {}.
inline std::vector<at::Tensor> run_onnxruntime(const std::string& model, const std::vector<at::Tensor>& inputs,
                                               const std::string& level = kOrtDefault) {
  TempDir t;
  std::string cmd = "node " + detail::shell_quote(source_dir() + "/tests/scripts/run_onnxruntime.js") + " " +
                    detail::shell_quote(model) + " " + level + " " + detail::shell_quote(t.file("out"));
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string in = t.file("in" + std::to_string(i) + ".npy");
    data::write_npy(in, inputs[i].contiguous());
    cmd += " " + detail::shell_quote(in);
  }
  std::string log = t.file("run.log");
  int rc = detail::run_logged(cmd, log);
  if (rc != 0) {
    ADD_FAILURE() << "ONNX Runtime (" << level << ") failed on " << model << " (exit " << rc
                  << "): " << detail::read_all(log);
    return {};
  }
  std::vector<at::Tensor> out;
  for (int i = 0; std::filesystem::exists(t.file("out" + std::to_string(i) + ".npy")); ++i)
    out.push_back(data::read_npy(t.file("out" + std::to_string(i) + ".npy")));
  return out;
}

inline const char* const kPython = "/usr/bin/python3";  // Debian's, where python3-torch lives

// Empty when PyTorch can run TorchScript files; otherwise why not, for GTEST_SKIP.
inline const std::string& pytorch_missing() {
  static const std::string why = [] {
    if (!std::filesystem::exists(kPython)) return std::string(kPython) + " not found: PyTorch check skipped";
    int rc = std::system((std::string(kPython) + " -c 'import torch, numpy' >/dev/null 2>&1").c_str());
    return rc == 0 ? std::string() : std::string(kPython) + " has no torch: PyTorch check skipped";
  }();
  return why;
}

// The first output of PyTorch's torch.jit.load(pt) on x (float32). A run that fails adds a test
// failure with Python's message and returns an undefined tensor.
inline at::Tensor run_torchscript_in_pytorch(const std::string& pt, const at::Tensor& x) {
  TempDir t;
  std::string in = t.file("in.f32"), out = t.file("out.f32");
  at::Tensor c = x.contiguous().to(at::kFloat);
  {
    std::ofstream f(in, std::ios::binary);
    f.write(static_cast<const char*>(c.data_ptr()), c.numel() * 4);
  }
  std::string shape;
  for (auto d : c.sizes()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
  std::string cmd = std::string(kPython) + " " + detail::shell_quote(source_dir() + "/tests/scripts/run_torchscript.py") +
                    " " + detail::shell_quote(pt) + " " + shape + " " + in + " " + out;
  std::string log = t.file("run.log");
  int rc = detail::run_logged(cmd, log);
  if (rc != 0) {
    ADD_FAILURE() << "PyTorch failed on " << pt << " (exit " << rc << "): " << detail::read_all(log);
    return {};
  }
  std::string bytes = detail::read_all(out);
  at::Tensor y = at::empty({static_cast<int64_t>(bytes.size() / 4)}, at::kFloat);
  std::memcpy(y.data_ptr(), bytes.data(), bytes.size());
  return y;
}

}  // namespace squeeze::testing
