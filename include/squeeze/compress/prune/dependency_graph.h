// Channel dependencies of an IR graph, for structured pruning.
//
// Every value that carries channels (axis 1 of NCHW tensors, the last axis of [N, F] and [N, T, D]
// tensors) gets one element per channel. Ops tie elements together: a Conv's input channels are
// tied to the producers of that input and to every other consumer, residual Add/Mul tie all
// operands channel for channel, BatchNorm and activations pass channels through, Concat and
// Split offset them, Flatten/Reshape into a Linear maps one channel to its H*W features, a
// depthwise conv ties each output channel to its input channel. Attention: a Reshape that splits
// the channel axis into heads ties position j of every head together (heads stay equal; pruning
// shrinks the head dimension), a MatMul of two activations ties the channels on its contracted
// axis (query and key) and passes B's columns (value) to its output, and the Reshape merging the
// heads back maps position h*D + j to channel j; heads moved into the axis before the channels
// ([L, N, C] -> [L, N*H, C/H], torch's MultiheadAttention) and merged back with it
// ([L, N*H, D] -> [L*N, H*D]) are followed the same way. A step-1 Slice of the channel axis (the
// q, k, v parts of a packed projection) is a Split with one output: its start and end follow the
// pruning. The connected components of that
// relation are the units of pruning: removing a unit removes every parameter row and column and
// every value position that belongs to it, so the smaller graph computes exactly what the large
// one computed with those channels at zero.
//
// Components that touch a graph input or output, or an op whose channel semantics are unknown or
// not sliceable (LayerNorm unless DependencyOptions::prune_layernorm, Softmax over the channel axis, LRN, grouped convolutions, a strided
// Slice on the channel axis, reshapes that move the channel axis, MatMul with a channel among its batch
// dims...), are blocked: never pruned. Units whose components span the same set of values form one group
// ("the output channels of conv1 and everything tied to them").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::compress {

// How a parameter axis relates to the channels of its group.
enum class ParamRole {
  kProduce,   // the node makes these channels: Conv/Linear weight rows and bias, ConvTranspose columns
  kConsume,   // the node reads these channels: Conv/Linear weight input columns
  kNorm,      // per-channel normalisation or scaling: BatchNorm/InstanceNorm params, PRelu slope
  kConstant,  // a Constant operand of an elementwise op (sliced with the channels)
};

// One parameter axis whose indices follow a group's channels.
struct ParamAxis {
  std::string node;   // node name
  std::string op;     // node op
  std::string param;  // "weight", "bias", "running_mean", "value"...
  int64_t axis = 0;
  ParamRole role = ParamRole::kProduce;
  // Per unit of the group: the indices along `axis` that belong to it (one index for a conv
  // filter; H*W columns of a Linear after Flatten).
  std::vector<std::vector<int64_t>> unit_indices;
};

// Where a group's channels appear in a value (for activation-based criteria).
struct ValueAxis {
  std::string value;
  int64_t axis = 1;
  std::string producer_op;  // "" for graph inputs
  std::vector<std::vector<int64_t>> unit_positions;  // per unit, positions along `axis`
};

struct ChannelGroup {
  int64_t id = 0;
  std::string name;           // the first producing layer, e.g. "conv1"
  int64_t size = 0;           // number of units (channels)
  std::vector<ParamAxis> params;
  std::vector<ValueAxis> values;
  // Names of the nodes producing these channels (Conv/Linear/ConvTranspose, kProduce role).
  std::vector<std::string> producers() const;
};

struct DependencyOptions {
  // LayerNorm over the channel axis normally blocks its channels: removing a channel changes the
  // mean and variance of the others, so the smaller graph is no longer exact. true ties them
  // through (weight and bias are sliced), which makes a transformer's residual width prunable;
  // fine-tuning then recovers what the changed statistics cost.
  bool prune_layernorm = false;
};

class DependencyGraph {
 public:
  // The graph must be verified (shapes inferred). Throws nothing for unknown ops: they block.
  explicit DependencyGraph(const ir::Graph& graph, DependencyOptions options = {});
  ~DependencyGraph();
  DependencyGraph(DependencyGraph&&) noexcept;

  // Prunable groups, in the topological order of their first producer.
  const std::vector<ChannelGroup>& groups() const { return groups_; }
  // Total channels seen and how many of them are blocked (for summaries).
  int64_t num_channels() const { return num_channels_; }
  int64_t num_blocked() const { return num_blocked_; }

  // A smaller dense graph without the given units: removed[group id] = unit indices. Parameters
  // (and masks, per-channel quantization scales) are sliced, attributes that carry channel counts
  // (depthwise group, Split sizes, explicit Reshape dims) are updated, and the result is
  // verified. Removing every unit of a group throws InternalError.
  ir::Graph prune(const ir::Graph& graph, const std::map<int64_t, std::vector<int64_t>>& removed) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<ChannelGroup> groups_;
  int64_t num_channels_ = 0, num_blocked_ = 0;
};

}  // namespace squeeze::compress
