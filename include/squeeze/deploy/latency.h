// Measured inference latency. Several models are measured in interleaved rounds in the same
// process and threads, so their ratios are fair on a shared, noisy machine; each measurement
// carries its spread, and a flag when the spread makes it (or a ratio) uncertain.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

// When a figure is called noisy: its 95% confidence interval (from the order statistics of the
// runs, no assumption on their distribution) is wider than +-5% of it. For a model's latency the
// interval is the median run's; for a speedup, the median per-round ratio's (each round runs
// every model once, back to back, so a slow spell of the machine that outlasts a round hits the
// round's models alike and cancels in its ratio). More runs narrow the interval.
inline constexpr double kNoisyHalfWidth = 0.05;

struct LatencyStats {
  int64_t batch = 1;
  double median_us = 0.0, min_us = 0.0, max_us = 0.0;
  double p10_us = 0.0, p90_us = 0.0;
  double spread = 0.0;    // (p90 - p10) / median: how much single runs vary
  double median_lo_us = 0.0, median_hi_us = 0.0;  // 95% confidence interval of the median
  bool noisy = false;     // that interval is wider than +-kNoisyHalfWidth of the median
  double samples_per_s = 0.0;
  int64_t runs = 0;
  // Against the first model of the same measurement (1 for the first model itself): the median
  // of the per-round ratios first / this, their quartiles, the median's 95% confidence interval,
  // and whether that interval is wider than +-kNoisyHalfWidth of it.
  double speedup = 1.0, speedup_p25 = 1.0, speedup_p75 = 1.0;
  double speedup_lo = 1.0, speedup_hi = 1.0;
  bool speedup_noisy = false;
  // What the model's convolutions ran on (exec::Executor::conv_implementations): oneDNN's
  // implementation names with how many Convs each, e.g. {"brgconv:avx512_core": 17}.
  std::map<std::string, int64_t> conv_implementations;
};

struct LatencyOptions {
  int64_t warmup = 3;          // untimed runs per model before measuring
  int64_t min_runs = 5;        // timed runs per model, at least
  int64_t max_runs = 200;      // at most
  double budget_s = 2.0;       // time to spend per batch size on all models together; when the
                               // figures are still noisy then, measuring goes on up to
                               // extend x budget_s (within max_runs) before giving up
  double extend = 3.0;
  int64_t fixed_runs = 0;      // > 0: exactly this many timed runs per model, no budget
};

// One LatencyStats per model, in order. Inputs are random, shaped from each graph's input.
std::vector<LatencyStats> measure_latency(const std::vector<const ir::Graph*>& graphs, int64_t batch,
                                          const LatencyOptions& options = {});

// The statistics of one model's timings (microseconds, any order), and of the per-round ratios
// base[i] / other[i]: what measure_latency reports, exposed for tests.
LatencyStats summarize_runs(std::vector<double> us, int64_t batch);
void summarize_ratio(const std::vector<double>& base_us, const std::vector<double>& other_us,
                     LatencyStats* into);

// The advice to print beside a noisy figure: the threads and cores, the machine's load average,
// and what would measure better.
std::string noise_advice(int threads);

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
