// Measured inference latency. Several models are measured in interleaved rounds in the same
// process and threads, so their ratios are fair on a shared, noisy machine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

struct LatencyStats {
  int64_t batch = 1;
  double median_us = 0.0, min_us = 0.0, max_us = 0.0;
  double samples_per_s = 0.0;
  int64_t runs = 0;
};

struct LatencyOptions {
  int64_t warmup = 3;          // untimed runs per model before measuring
  int64_t min_runs = 5;        // timed runs per model, at least
  int64_t max_runs = 200;      // at most
  double budget_s = 2.0;       // total time to spend per batch size on all models together
};

// One LatencyStats per model, in order. Inputs are random, shaped from each graph's input.
std::vector<LatencyStats> measure_latency(const std::vector<const ir::Graph*>& graphs, int64_t batch,
                                          const LatencyOptions& options = {});

// Where inference time goes, by op type: the sum over its nodes of each node's median time in
// microseconds (over `runs` runs after warm-up), number of nodes, and share of the total; sorted
// by time, largest first.
struct OpTime {
  std::string op;
  int64_t nodes = 0;
  double us = 0.0, share = 0.0;
};
std::vector<OpTime> profile_ops(const ir::Graph& graph, int64_t batch, int64_t runs = 20);

}  // namespace squeeze::deploy
