// Layer pruning: removes whole blocks that can be replaced by an identity.
//
// Removable blocks are
//   - residual branches: Add(x, f(x)) where f depends only on x (and constants) and the sum has
//     x's shape; removing the block makes the Add's output x (ResNet basic blocks, MobileNetV2
//     inverted residuals, transformer attention and MLP sub-layers);
//   - transformer encoder layers: an attention sub-block followed by the MLP sub-block that
//     reads its output are one block (vit_tiny: 4 encoder layers);
//   - shape-preserving layers: a Conv or Linear (with the BatchNorm that follows it) whose output
//     has its input's shape; removing it passes its input on.
// Each block is scored (criterion accuracy: validation accuracy lost when it alone is an
// identity, on `batches` batches; l1: mean |w| of its weights; random), and the `layers` least
// important ones (or all whose accuracy drop is at most `threshold`) are removed and the graph
// rewired.
#pragma once

#include <string>
#include <vector>

#include "squeeze/compress/prune/structured_prune.h"

namespace squeeze::compress {

struct RemovableBlock {
  std::string name;         // the first node of the block, e.g. "layer1_0_conv1"
  std::string kind;         // "residual" | "encoder" | "layer"
  std::string output;       // the value the block produces (the Add's output, or the layer's)
  std::string replacement;  // the value that takes its place (the shortcut, or the layer's input)
  std::vector<std::string> nodes;  // the nodes that disappear
};

// Blocks of the graph that can be replaced by an identity, in topological order.
std::vector<RemovableBlock> removable_blocks(const ir::Graph& graph);

// The graph with the given blocks replaced by identities (rewired, dead nodes removed, verified).
// Blocks that no longer exist (nested in an earlier one) are skipped.
ir::Graph remove_blocks(const ir::Graph& graph, const std::vector<RemovableBlock>& blocks);

class LayerPrune : public Pass {
 public:
  explicit LayerPrune(StructuredPruneOptions options);
  std::string name() const override { return "prune"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;

  // Importance of each block (higher = keep), in the order of `blocks`.
  std::vector<double> scores(const ir::Graph& graph, const std::vector<RemovableBlock>& blocks,
                             const PassContext& ctx) const;

 private:
  StructuredPruneOptions options_;
};

}  // namespace squeeze::compress
