#include "squeeze/deploy/latency.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <iomanip>
#include <map>
#include <sstream>
#include <thread>

#include "squeeze/exec/executor.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::deploy {

namespace {
at::Tensor make_input(const ir::Graph& g, int64_t batch) {
  SQZ_ASSERT(g.inputs.size() == 1, "latency: one input expected");
  std::vector<int64_t> shape = g.inputs[0].shape;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == ir::kDynamic) shape[i] = i == 0 ? batch : 1;
  return at::randn(shape);
}
}  // namespace

namespace {
// The q-quantile of sorted values, interpolated linearly between neighbours.
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

// The 95% confidence interval of the median of sorted values: the order statistics at ranks
// n/2 -+ 1.96 sqrt(n)/2 (the binomial's normal approximation; for a handful of runs it spans
// nearly all of them, as it should).
std::pair<double, double> median_interval(const std::vector<double>& sorted) {
  if (sorted.empty()) return {0.0, 0.0};
  const double n = static_cast<double>(sorted.size());
  const double half = 1.96 * std::sqrt(n) / 2.0;
  const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(n / 2.0 - half)));
  const int64_t hi = std::min<int64_t>(static_cast<int64_t>(n) - 1,
                                       static_cast<int64_t>(std::ceil(n / 2.0 + half)) - 1);
  return {sorted[lo], sorted[std::max(lo, hi)]};
}

bool uncertain(double lo, double hi, double median) {
  return median > 0 && (hi - lo) / 2.0 > kNoisyHalfWidth * median;
}

bool any_noisy(const std::vector<LatencyStats>& stats) {
  for (const auto& s : stats)
    if (s.noisy || s.speedup_noisy) return true;
  return false;
}
}  // namespace

LatencyStats summarize_runs(std::vector<double> us, int64_t batch) {
  std::sort(us.begin(), us.end());
  LatencyStats s;
  s.batch = batch;
  s.runs = static_cast<int64_t>(us.size());
  if (us.empty()) return s;
  s.median_us = quantile(us, 0.5);
  s.min_us = us.front();
  s.max_us = us.back();
  s.p10_us = quantile(us, 0.1);
  s.p90_us = quantile(us, 0.9);
  s.spread = s.median_us > 0 ? (s.p90_us - s.p10_us) / s.median_us : 0.0;
  std::tie(s.median_lo_us, s.median_hi_us) = median_interval(us);
  s.noisy = uncertain(s.median_lo_us, s.median_hi_us, s.median_us);
  s.samples_per_s = s.median_us > 0 ? double(batch) * 1e6 / s.median_us : 0.0;
  return s;
}

void summarize_ratio(const std::vector<double>& base_us, const std::vector<double>& other_us,
                     LatencyStats* into) {
  std::vector<double> r;
  for (size_t i = 0; i < std::min(base_us.size(), other_us.size()); ++i)
    if (other_us[i] > 0) r.push_back(base_us[i] / other_us[i]);
  if (r.empty()) return;
  std::sort(r.begin(), r.end());
  into->speedup = quantile(r, 0.5);
  into->speedup_p25 = quantile(r, 0.25);
  into->speedup_p75 = quantile(r, 0.75);
  std::tie(into->speedup_lo, into->speedup_hi) = median_interval(r);
  into->speedup_noisy = uncertain(into->speedup_lo, into->speedup_hi, into->speedup);
}

std::string noise_advice(int threads) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  double load = -1.0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1.0;
    std::fclose(f);
  }
  std::ostringstream out;
  out << "measured with " << threads << (threads == 1 ? " thread" : " threads") << " on " << cores
      << (cores == 1 ? " core" : " cores");
  if (load >= 0)
    out << ", load average " << std::fixed << std::setprecision(1) << load
        << " (the last minute's, this process included)";
  out << "; to narrow it: a quiet machine";
  if (threads > 1) out << ", fewer threads (--threads 1 / output.latency_threads: 1)";
  out << ", or more runs (bench --runs N)";
  return out.str();
}

std::vector<LatencyStats> measure_latency(const std::vector<const ir::Graph*>& graphs, int64_t batch,
                                          const LatencyOptions& options) {
  at::NoGradGuard no_grad;
  std::vector<exec::Executor> execs;
  std::vector<at::Tensor> inputs;
  for (const auto* g : graphs) {
    if (g->inputs.size() != 1)
      throw UnsupportedError(msg("latency: model '", g->name, "' has ", g->inputs.size(), " inputs; only one is supported"));
    execs.emplace_back(*g);
    inputs.push_back(make_input(*g, batch));
  }
  using clock = std::chrono::steady_clock;
  std::vector<std::vector<double>> times(graphs.size());
  for (size_t i = 0; i < graphs.size(); ++i)
    for (int64_t w = 0; w < options.warmup; ++w) execs[i].forward(inputs[i]);

  auto summarize = [&] {
    std::vector<LatencyStats> out;
    for (const auto& t : times) out.push_back(summarize_runs(t, batch));
    for (size_t i = 1; i < out.size(); ++i) summarize_ratio(times[0], times[i], &out[i]);
    return out;
  };
  const int64_t max_runs = options.fixed_runs > 0 ? options.fixed_runs : options.max_runs;
  auto start = clock::now();
  for (int64_t round = 0; round < max_runs; ++round) {
    // Interleaved: every model runs once per round, so drifts in machine load hit all alike.
    for (size_t i = 0; i < graphs.size(); ++i) {
      auto t0 = clock::now();
      execs[i].forward(inputs[i]);
      times[i].push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    }
    if (options.fixed_runs > 0 || round + 1 < options.min_runs) continue;
    const double spent = std::chrono::duration<double>(clock::now() - start).count();
    if (spent < options.budget_s) continue;
    // Past the budget: stop, unless the figures are still noisy and the extension allows more.
    if (spent >= options.budget_s * std::max(1.0, options.extend) || !any_noisy(summarize())) break;
  }
  std::vector<LatencyStats> out = summarize();
  for (size_t i = 0; i < out.size(); ++i) out[i].conv_implementations = execs[i].conv_implementations();
  return out;
}

std::vector<OpTime> profile_ops(const ir::Graph& graph, int64_t batch, int64_t runs) {
  at::NoGradGuard no_grad;
  if (graph.inputs.size() != 1)
    throw UnsupportedError(msg("profile: model '", graph.name, "' has ", graph.inputs.size(), " inputs; only one is supported"));
  exec::Executor ex(graph);
  at::Tensor x = make_input(graph, batch);
  for (int i = 0; i < 3; ++i) ex.forward(x);
  // Per node, the median over runs: robust against the machine's occasional stalls.
  std::vector<std::vector<double>> per_run;
  for (int64_t i = 0; i < runs; ++i) {
    std::vector<double> us;
    ex.time_nodes(&us);
    ex.forward(x);
    per_run.push_back(std::move(us));
  }
  ex.time_nodes(nullptr);
  std::map<std::string, OpTime> by_op;
  double total = 0.0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    std::vector<double> t;
    for (const auto& r : per_run) t.push_back(r[i]);
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    OpTime& o = by_op[graph.nodes[i].op];
    o.op = graph.nodes[i].op;
    o.nodes += 1;
    o.us += t[t.size() / 2];
    total += t[t.size() / 2];
  }
  std::vector<OpTime> out;
  for (auto& [op, t] : by_op) {
    t.share = total > 0 ? t.us / total : 0.0;
    out.push_back(t);
  }
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.us > b.us; });
  return out;
}

}  // namespace squeeze::deploy
