// A report as a workflow fills it in, for the report tests: a trained baseline and two
// compressed models, with per-layer figures, training curves and per-class metrics.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "squeeze/report/report.h"

namespace squeeze::report::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "report_ship_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<EpochPoint> curve(std::initializer_list<double> val_accuracies, double loss0) {
  std::vector<EpochPoint> out;
  int64_t e = 0;
  for (double a : val_accuracies) {
    EpochPoint p;
    p.epoch = ++e;
    p.train_loss = loss0 / static_cast<double>(e);
    p.train_accuracy = a - 0.01;
    p.has_val = true;
    p.val_loss = loss0 / static_cast<double>(e) + 0.05;
    p.val_accuracy = a;
    out.push_back(p);
  }
  return out;
}

inline ExperimentResult result(const std::string& name, double accuracy, int64_t size,
                               int64_t flops, double latency_b1, const Report& r) {
  ExperimentResult e;
  e.name = name;
  e.stages = {"prune"};
  e.stats.evaluated = true;
  e.stats.accuracy = accuracy;
  e.stats.loss = 0.3;
  e.stats.params = r.baseline.params;
  e.stats.nonzero_params = r.baseline.params / 2;
  e.stats.size_bytes = size;
  e.stats.flops = flops;
  e.stats.num_classes = r.baseline.num_classes;
  e.stats.latency_us = {{"batch1", latency_b1}};
  e.accuracy_drop = r.baseline.accuracy - accuracy;
  e.compression_ratio = double(r.baseline.size_bytes) / double(size);
  e.speedup = {{"batch1", r.baseline.latency_us.at("batch1") / latency_b1}};
  StageRecord h{"prune", "pruned", true, accuracy, e.stats.params, e.stats.nonzero_params, size,
                flops, 1.0};
  h.finetune_steps = 10;
  h.curve = curve({accuracy - 0.02, accuracy}, 0.5);
  e.history = {h};
  e.artifacts = {{"checkpoint", "models/" + name + ".sqz"}, {"onnx", "models/" + name + ".onnx"}};
  return e;
}

// Baseline 90% at 1 MB; "small" 89.5% at 300 kB; "tiny" 85% at 100 kB; "wide" 89.8% at
// 500 kB but slow; "worse" 88% at 600 kB (dominated by "wide" and "small").
inline Report ship_report() {
  Report r;
  r.squeeze_version = "test";
  r.model_name = "small_cnn";
  r.data_description = "fashion-mnist: 100 train, 10 val, 50 test";
  r.environment = {{"threads", "1"}, {"blas", "openblas"}};
  r.config_text = "seed: 0\n";
  r.baseline.evaluated = true;
  r.baseline.accuracy = 0.90;
  r.baseline.loss = 0.3;
  r.baseline.params = 1000;
  r.baseline.nonzero_params = 1000;
  r.baseline.size_bytes = 1000000;
  r.baseline.flops = 8000;
  r.baseline.num_classes = 10;
  r.baseline.latency_us = {{"batch1", 100.0}};
  r.baseline.layers = {{"conv1", "Conv", 300, 300, 32}, {"fc1", "Gemm", 600, 600, 32},
                       {"fc2", "Gemm", 100, 100, 32}};
  r.baseline_artifacts = {{"checkpoint", "models/baseline.sqz"}};
  r.baseline_curve = curve({0.80, 0.86, 0.90}, 1.0);
  r.results.push_back(result("small", 0.895, 300000, 4000, 90.0, r));
  r.results.push_back(result("tiny", 0.85, 100000, 2000, 80.0, r));
  r.results.push_back(result("wide", 0.898, 500000, 6000, 60.0, r));
  r.results.push_back(result("worse", 0.88, 600000, 7000, 95.0, r));
  // "small": fc1 replaced by two low-rank layers, conv1 pruned and quantized to 4 bits.
  r.results[0].stats.layers = {{"conv1", "Conv", 300, 150, 4},
                               {"fc1_lr1", "Gemm", 200, 200, 32},
                               {"fc1_lr2", "Gemm", 100, 100, 32},
                               {"fc2", "Gemm", 100, 100, 32}};
  r.baseline.per_class = {{0, "T-shirt/top", 0.9, 0.9, 0.9}, {1, "Trouser", 0.8, 0.8, 0.8}};
  for (auto& res : r.results) res.stats.per_class = {{0, "T-shirt/top", 0.85, 0.85, 0.9}, {1, "Trouser", 0.8, 0.8, 0.8}};
  return r;
}

}  // namespace squeeze::report::testing
