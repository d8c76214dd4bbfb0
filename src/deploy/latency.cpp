#include "squeeze/deploy/latency.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <map>

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
