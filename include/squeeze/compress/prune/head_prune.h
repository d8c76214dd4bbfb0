// Attention-head pruning. Finds multi-head attention written with plain ops (as the vit_tiny zoo
// model and PyTorch's ONNX export write it):
//
//   q, k, v = Linear(x)  ->  Reshape [.., H, dh]  ->  Transpose   (k possibly scaled by Mul)
//   p = Softmax(MatMul(q, k^T) [* scale])  ;  o = MatMul(p, v)  ->  Transpose -> Reshape [.., D]
//   y = Linear(o)
//
// and removes whole heads: the head's rows of the q, k and v projections, its columns of the
// output projection, and H in the reshapes. Heads are scored by the criterion (l1/l2 of the
// head's weights, taylor, random) and `ratio` of all heads is removed (scope global: one ranking
// normalised per attention block; local: per block), keeping at least one head per block.
#pragma once

#include <string>
#include <vector>

#include "squeeze/compress/prune/structured_prune.h"

namespace squeeze::compress {

struct AttentionBlock {
  std::string q, k, v, out;                 // Linear node names
  std::vector<std::string> split_reshapes;  // Reshape nodes [.., D] -> [.., H, dh] (q, k, v)
  std::string merge_reshape;                // Reshape node [.., H, dh] -> [.., D]
  int64_t heads = 0, head_dim = 0;
};

// The attention blocks of a graph (shapes inferred), in topological order.
std::vector<AttentionBlock> find_attention(const ir::Graph& graph);

// The graph without the given heads: removed[i] = head indices of block i. Verified.
ir::Graph remove_heads(const ir::Graph& graph, const std::vector<AttentionBlock>& blocks,
                       const std::map<size_t, std::vector<int64_t>>& removed);

class HeadPrune : public Pass {
 public:
  explicit HeadPrune(StructuredPruneOptions options);
  std::string name() const override { return "prune"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;

 private:
  StructuredPruneOptions options_;
};

}  // namespace squeeze::compress
