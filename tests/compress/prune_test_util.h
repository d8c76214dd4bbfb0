// Shared by the structured pruning tests (fast and slow binaries).
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <set>
#include <string>
#include <vector>

#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/data/dataset.h"
#include "squeeze/exec/executor.h"
#include "squeeze/ir/graph.h"
#include "testing/asserts.h"

namespace squeeze::testing {

// Outputs after pruning whole channels (accumulated in float32, in a different order):
// relative to the outputs' scale.
constexpr double kPruneRtol = 1e-4;
constexpr double kPruneAtol = 1e-4;

inline at::Tensor random_input(const ir::Graph& g, int64_t batch, uint64_t seed = 1) {
  std::vector<int64_t> shape = g.inputs.at(0).shape;
  shape[0] = batch;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen);
}

inline at::Tensor run_graph(const ir::Graph& g, const at::Tensor& x) {
  at::NoGradGuard no_grad;
  exec::Executor ex(g);
  return ex.forward(x, exec::Mode::kEval);
}

// Sets to zero everything that makes the given units' channels non-zero: the producers'
// filters and biases, BatchNorm scales and shifts, constants added to them. With ReLU-like
// activations (f(0) = 0) the channels then carry zeros through the whole graph.
inline void zero_units(ir::Graph& g, const compress::ChannelGroup& grp, const std::vector<int64_t>& units) {
  at::NoGradGuard no_grad;
  for (const auto& p : grp.params) {
    bool zero = p.role == compress::ParamRole::kProduce || p.role == compress::ParamRole::kConstant ||
                (p.role == compress::ParamRole::kNorm && (p.param == "weight" || p.param == "bias"));
    if (!zero) continue;
    at::Tensor& w = g.find_node(p.node)->param(p.param).value;
    for (auto u : units)
      for (auto i : p.unit_indices[u]) w.select(p.axis, i).zero_();
  }
}

// Every other unit of every group (at least one unit kept).
inline std::map<int64_t, std::vector<int64_t>> every_other_unit(const compress::DependencyGraph& deps) {
  std::map<int64_t, std::vector<int64_t>> removed;
  for (const auto& grp : deps.groups())
    for (int64_t u = 1; u < grp.size; u += 2) removed[grp.id].push_back(u);
  return removed;
}

// Removes every other unit of every group from g and returns the smaller graph; *zeroed becomes
// g with those units' channels zeroed instead, which the smaller graph must compute exactly.
inline ir::Graph prune_every_other(const compress::DependencyGraph& deps, const ir::Graph& g, ir::Graph* zeroed) {
  auto removed = every_other_unit(deps);
  *zeroed = g.clone();
  for (const auto& [gi, units] : removed) zero_units(*zeroed, deps.groups()[gi], units);
  return deps.prune(g, removed);
}

// The pruned graph computes what the zeroed one computes on x (see prune_every_other).
inline bool same_outputs(const ir::Graph& small, const ir::Graph& zeroed, const at::Tensor& x) {
  return tensors_close(run_graph(small, x), run_graph(zeroed, x), kPruneRtol, kPruneAtol);
}

inline data::Splits random_splits(const std::vector<int64_t>& sample_shape, int64_t classes, int64_t n,
                                  uint64_t seed = 3) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  data::Splits s;
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  s.train.x = at::randn(shape, gen);
  s.train.y = at::randint(classes, {n}, gen, at::kLong);
  s.val = s.train.head(n / 4);
  s.test = s.val;
  s.sample_shape = sample_shape;
  s.num_classes = classes;
  return s;
}

}  // namespace squeeze::testing
