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
//
// Those score the producing layers' filters (filter pruning). Scored from the consumers instead
// (score_from: consumer, channel pruning), a channel's importance is what the layers that read it
// make of it, summed over every consuming layer of its group:
//
//   l1, l2               the L1 / L2 norm of the weights that read the channel (W[:, c, :, :] of a
//                        Conv, the channel's columns of a Linear), over all consumers together
//   reconstruction_error mean squared change of the consumers' outputs when the channel alone is
//                        removed, on sampled positions of a few training batches
//
// and score_from: both adds the two, each divided by its mean over the group. A group that no
// weight reads (attention's query/key dimensions, contracted by a MatMul of two activations; for
// reconstruction_error, also one read only by layers reconstruct.h cannot re-fit) is scored by
// its producers instead (l2 standing in for reconstruction_error); their number is returned.
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
  std::string score_from = "producer";  // producer | consumer | both
  int64_t positions = 10;               // reconstruction_error: sampled positions per sample
};

// Criteria by where they score: producer-side (all but reconstruction_error), consumer-side
// (l1, l2, reconstruction_error), both (l1, l2).
const std::vector<std::string>& importance_criteria();
const std::vector<std::string>& consumer_criteria();
const std::vector<std::string>& both_criteria();
bool criterion_needs_data(const std::string& criterion);

// One float64 tensor of group.size scores per group of `deps`. Throws UserError when the
// criterion does not apply: bn_scale on a group without BatchNorm (naming its layer), data-driven
// criteria without data (ctx.data null).
// consumer or both: *fallback_groups (if given) receives the number of groups scored by their
// producers because no Conv/Linear consumes them.
std::vector<at::Tensor> channel_importance(const ir::Graph& graph, const DependencyGraph& deps,
                                           const ImportanceOptions& options, const PassContext& ctx,
                                           int64_t* fallback_groups = nullptr);

// Scores of one parameter axis per unit: reduces each index's slice (all other dims) with `f`
// and then the unit's indices by mean. Exposed for the head and layer criteria.
at::Tensor per_unit(const at::Tensor& per_index, const std::vector<std::vector<int64_t>>& unit_indices);

}  // namespace squeeze::compress
