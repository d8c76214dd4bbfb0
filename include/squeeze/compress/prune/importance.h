// Importance of the channels of a group, for structured pruning. Higher = more important.
//
//   l1, l2           mean |w| / root mean square of the producing layers' filters
//   fpgm             distance of each filter to the others (Filter Pruning via Geometric Median:
//                    filters near the geometric median are redundant)
//   bn_scale         |gamma| of the BatchNorm after the producer (network slimming)
//   taylor           first-order Taylor estimate of the loss change, (sum over the group's
//                    parameters of w * dL/dw)^2 accumulated over a few batches (Molchanov 2019)
//   apoz             1 - average percentage of zeros of the channel's activations
//   mean_activation  mean |activation| of the channel
//   random           a seeded control
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/registry.h"

namespace squeeze::compress {

struct ImportanceOptions {
  std::string criterion = "l1";
  int64_t batches = 4;      // taylor, apoz, mean_activation: training batches looked at
  int64_t batch_size = 64;
  uint64_t seed = 0;
};

const std::vector<std::string>& importance_criteria();
bool criterion_needs_data(const std::string& criterion);

// One float64 tensor of group.size scores per group of `deps`. Throws UserError when the
// criterion does not apply: bn_scale on a group without BatchNorm (naming its layer), data-driven
// criteria without data (ctx.data null).
std::vector<at::Tensor> channel_importance(const ir::Graph& graph, const DependencyGraph& deps,
                                           const ImportanceOptions& options, const PassContext& ctx);

// Scores of one parameter axis per unit: reduces each index's slice (all other dims) with `f`
// and then the unit's indices by mean. Exposed for the head and layer criteria.
at::Tensor per_unit(const at::Tensor& per_index, const std::vector<std::vector<int64_t>>& unit_indices);

}  // namespace squeeze::compress
