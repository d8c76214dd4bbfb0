#include "squeeze/deploy/latency.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>

#include "squeeze/exec/executor.h"
#include "squeeze/util/error.h"

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
  auto start = clock::now();
  for (int64_t round = 0; round < options.max_runs; ++round) {
    // Interleaved: every model runs once per round, so drifts in machine load hit all alike.
    for (size_t i = 0; i < graphs.size(); ++i) {
      auto t0 = clock::now();
      execs[i].forward(inputs[i]);
      times[i].push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    }
    double spent = std::chrono::duration<double>(clock::now() - start).count();
    if (round + 1 >= options.min_runs && spent >= options.budget_s) break;
  }
  std::vector<LatencyStats> out;
  for (auto& t : times) {
    std::sort(t.begin(), t.end());
    LatencyStats s;
    s.batch = batch;
    s.runs = static_cast<int64_t>(t.size());
    s.median_us = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
    s.min_us = t.front();
    s.max_us = t.back();
    s.samples_per_s = s.median_us > 0 ? double(batch) * 1e6 / s.median_us : 0.0;
    out.push_back(s);
  }
  return out;
}

}  // namespace squeeze::deploy
