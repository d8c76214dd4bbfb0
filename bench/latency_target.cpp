// Latency-aware structured pruning (issue 14): for each model and batch, prunes with
// target: {latency: 0.5} and with target: flops, ratio 0.5 (L1, global), then measures the
// unpruned and both pruned graphs interleaved at that batch (deploy::measure_latency) and prints
// the latency target's predicted and measured ratio, each pruning's FLOPs ratio, measured
// speedup, and speedup / FLOPs gain (the metric: time removed in proportion to FLOPs).
//   latency_target [threads] [batches=1,32] [models=small_cnn,resnet8,resnet20] [onnx=a.onnx,b.onnx]
//                  [cache=DIR|none] [budget=2]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/io/model_io.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/env.h"
#include "squeeze/util/log.h"

namespace {
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) if (!x.empty()) out.push_back(x);
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  squeeze::env::use_native_blas_kernels(argv);
  using namespace squeeze;
  int threads = argc > 1 ? std::stoi(argv[1]) : 1;
  std::vector<int64_t> batches = {1, 32};
  std::vector<std::string> models = {"zoo:small_cnn", "zoo:resnet8", "zoo:resnet20"};
  std::string cache = "";
  double budget = 2.0;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("batches=", 0) == 0) {
      batches.clear();
      for (auto& b : split(a.substr(8))) batches.push_back(std::stoll(b));
    } else if (a.rfind("models=", 0) == 0) {
      models.clear();
      for (auto& m : split(a.substr(7))) models.push_back("zoo:" + m);
    } else if (a.rfind("onnx=", 0) == 0) {
      for (auto& m : split(a.substr(5))) models.push_back(m);
    } else if (a.rfind("cache=", 0) == 0) {
      cache = a.substr(6);
    } else if (a.rfind("budget=", 0) == 0) {
      budget = std::stod(a.substr(7));
    }
  }
  env::set_threads(threads);
  env::keep_freed_memory();
  log::set_level(log::Level::kWarn);
  std::printf("threads %d\n", at::get_num_threads());
  std::printf("%-28s %5s | %7s %7s %7s %6s %7s %6s | %7s %6s %7s %6s | %6s\n", "model", "batch", "target", "pred",
              "meas", "sel", "FLOPs", "x/F", "F:FLOPs", "F:meas", "F:x", "x/F", "tbl s");
  for (const auto& m : models) {
    ir::Graph g = io::load_model(m, 0);
    ir::infer_shapes(g);
    for (int64_t b : batches) {
      compress::PassContext ctx;
      compress::StructuredPruneOptions lo;
      lo.target = "latency";
      lo.latency = 0.5;
      lo.latency_batch = b;
      lo.latency_cache = cache;
      auto lr = compress::StructuredPrune(lo).run(g, ctx);
      compress::StructuredPruneOptions fo;
      fo.target = "flops";
      fo.ratio = 0.5;
      auto fr = compress::StructuredPrune(fo).run(g, ctx);
      deploy::LatencyOptions mo;
      mo.budget_s = budget;
      auto st = deploy::measure_latency({&g, &lr.graph, &fr.graph}, b, mo);
      double f0 = double(ir::graph_flops(g));
      double lflops = double(ir::graph_flops(lr.graph)) / f0, fflops = double(ir::graph_flops(fr.graph)) / f0;
      double lx = st[1].speedup, fx = st[2].speedup;
      auto fig = [&](const char* k) { return lr.figures.count(k) ? lr.figures.at(k) : -1.0; };
      std::printf("%-28s %5lld | %7.2f %7.3f %7.3f %6.0f %7.3f %6.2f | %7.3f %6.3f %7.2f %6.2f | %6.1f\n",
                  m.c_str(), static_cast<long long>(b), 0.5, fig("predicted_latency_ratio"), 1.0 / lx,
                  fig("latency_selections"), lflops, lx * lflops, fflops, 1.0 / fx, fx, fx * fflops,
                  fig("latency_table_seconds"));
      std::fflush(stdout);
    }
  }
  std::printf("pred/meas: predicted and measured (this run, interleaved) latency of the latency-target model over\n"
              "the unpruned one; FLOPs: pruned over unpruned; x/F: measured speedup x FLOPs ratio (speedup over\n"
              "FLOPs gain; 1 = time falls with FLOPs); F: the target: flops, ratio 0.5 model; sel: selections made.\n");
  return 0;
}
