// Attention-head pruning. Finds multi-head attention written with plain ops (as the vit_tiny zoo
// model and PyTorch's ONNX export write it):
//
//   q, k, v = Linear(x)  ->  Reshape [.., H, dh]  ->  Transpose   (k possibly scaled by Mul)
//   p = Softmax(MatMul(q, k^T) [* scale])  ;  o = MatMul(p, v)  ->  Transpose -> Reshape [.., D]
//   y = Linear(o)
//
// and torch's nn.MultiheadAttention as torch.onnx.export writes it (torchvision's
// VisionTransformer), all 3-D with the heads moved into the batch axis:
//
//   qkv = Linear(x) [L, N, 3E]  ->  q, k, v = Slice rows [0,E), [E,2E), [2E,3E) of the last axis
//   each -> Reshape [L, N*H or -1, dh] -> Transpose (N*H to axis 0)   (q possibly scaled)
//   p = Softmax(MatMul(q, k^T))  ;  o = MatMul(p, v) -> Transpose [L, N*H, dh] -> Reshape [L*N, E]
//   y = Linear(o)
//
// and removes whole heads: the head's rows of the q, k and v projections (of the packed
// projection, and the Slice bounds with them), its columns of the output projection, and H in
// the reshapes (N*H -> N*H' when the batch is static; -1 stays -1). Heads are scored by the criterion (l1/l2 of the
// head's weights, taylor, random) and `ratio` of all heads is removed (scope global: one ranking
// normalised per attention block; local: per block), keeping at least one head per block.
#pragma once

#include <string>
#include <vector>

#include "squeeze/compress/prune/structured_prune.h"

namespace squeeze::compress {

struct AttentionBlock {
  std::string q, k, v, out;                 // Linear node names (packed: q == k == v, the in_proj)
  std::vector<std::string> split_reshapes;  // Reshape nodes [.., D] -> [.., H, dh] (q, k, v);
                                            // packed: [L, N, E] -> [L, N*H or -1, dh]
  std::string merge_reshape;                // Reshape node [.., H, dh] -> [.., D]
  int64_t heads = 0, head_dim = 0;
  // The packed layout: the Slices that cut q, k and v out of the in_proj output (last axis), and
  // the first row of each in the projection's weight (0, E, 2E for torch); empty otherwise.
  std::vector<std::string> slices;
  std::vector<int64_t> row_offsets;
  bool packed() const { return !slices.empty(); }
};

// The attention blocks of a graph (shapes inferred), in topological order.
std::vector<AttentionBlock> find_attention(const ir::Graph& graph);

// Why the packed projections (a Linear cut by Slices that feed a Softmax) outside `blocks` are
// not attention blocks head pruning can rewrite: one sentence per projection, naming it, what
// was found and what would be valid. Empty when every such projection is in `blocks`.
std::vector<std::string> unmatched_packed_attention(const ir::Graph& graph,
                                                    const std::vector<AttentionBlock>& blocks);

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
