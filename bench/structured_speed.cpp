// Does structured pruning make models faster? For resnet20 and small_cnn, prunes 50% of the
// channels (L1, global) and also to half the FLOPs, then measures latency of the original and the
// pruned graphs interleaved in one run (deploy::measure_latency) at batch 1 and batch 64, and
// prints FLOPs ratio vs measured speedup. Target (issue 4): at 50% channel pruning the batch-64
// speedup is at least 0.8x the FLOPs ratio.
//   structured_speed [threads] [budget_s]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <string>
#include <vector>

#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/env.h"
#include "squeeze/util/log.h"

int main(int argc, char** argv) {
  using namespace squeeze;
  int threads = argc > 1 ? std::stoi(argv[1]) : 2;
  double budget = argc > 2 ? std::stod(argv[2]) : 3.0;
  env::set_threads(threads);
  log::set_level(log::Level::kWarn);
  struct Case {
    std::string model, target;
    double ratio;
  };
  const std::vector<Case> cases = {{"resnet20", "channels", 0.5}, {"small_cnn", "channels", 0.5},
                                   {"resnet20", "flops", 0.5},    {"small_cnn", "flops", 0.5}};
  std::printf("%-10s %-16s %10s %10s %9s %12s %12s %9s %12s %12s %9s %9s\n", "model", "pruning", "params",
              "MFLOPs", "FLOPs x", "b1 base us", "b1 pruned us", "b1 x", "b64 base us", "b64 pruned us",
              "b64 x", "b64/FLOPs");
  for (const auto& c : cases) {
    ir::Graph g = models::build(c.model, {}, 0);
    compress::StructuredPruneOptions o;
    o.ratio = c.ratio;
    o.target = c.target;
    compress::PassContext ctx;
    ir::Graph p = compress::StructuredPrune(o).run(g, ctx).graph;
    double flops_ratio = double(ir::graph_flops(g)) / double(ir::graph_flops(p));
    deploy::LatencyOptions lo;
    lo.budget_s = budget;
    auto b1 = deploy::measure_latency({&g, &p}, 1, lo);
    auto b64 = deploy::measure_latency({&g, &p}, 64, lo);
    double s1 = b1[0].median_us / b1[1].median_us, s64 = b64[0].median_us / b64[1].median_us;
    std::string label = c.target == "flops" ? "50% of FLOPs" : "50% of channels";
    std::printf("%-10s %-16s %10lld %10.2f %9.2f %12.1f %12.1f %9.2f %12.1f %12.1f %9.2f %9.2f\n", c.model.c_str(),
                label.c_str(), (long long)p.num_params(), ir::graph_flops(p) / 1e6, flops_ratio, b1[0].median_us,
                b1[1].median_us, s1, b64[0].median_us, b64[1].median_us, s64, s64 / flops_ratio);
  }
  std::printf("threads: %d\n", at::get_num_threads());
  return 0;
}
