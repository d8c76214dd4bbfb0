// Measured inference latency. Several models are measured in interleaved rounds in the same
// process and threads, so their ratios are fair on a shared, noisy machine; each measurement
// carries its spread, and a flag when the spread makes it (or a ratio) uncertain.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

// How far apart timings may be before a figure is called noisy. A model's spread is
// (p90 - p10) / median of its runs; a ratio's is (p75 - p25) / median of the per-round ratios
// (each round runs every model once, back to back, so a slow spell of the machine hits a round's
// models alike and cancels in its ratio unless it comes and goes within the round).
inline constexpr double kNoisyModelSpread = 0.5;
inline constexpr double kNoisyRatioSpread = 0.1;

struct LatencyStats {
  int64_t batch = 1;
  double median_us = 0.0, min_us = 0.0, max_us = 0.0;
  double p10_us = 0.0, p90_us = 0.0;
  double spread = 0.0;    // (p90 - p10) / median
  bool noisy = false;     // spread > kNoisyModelSpread
  double samples_per_s = 0.0;
  int64_t runs = 0;
  // Against the first model of the same measurement (1 for the first model itself): the median
  // of the per-round ratios first / this, their quartiles, and whether the ratio is uncertain.
  double speedup = 1.0, speedup_p25 = 1.0, speedup_p75 = 1.0;
  bool speedup_noisy = false;  // (p75 - p25) / median > kNoisyRatioSpread
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

// The advice to print beside a noisy figure: the threads used, the machine's load average
// against its cores, and what would measure better ("" when nothing is noisy).
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
