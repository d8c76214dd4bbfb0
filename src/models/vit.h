// vit_tiny: a small Vision Transformer built from plain IR ops (internal to the zoo).
#pragma once

#include <cstdint>

#include "squeeze/ir/graph.h"

namespace squeeze::models {

struct VitConfig {
  int64_t num_classes = 10;
  int64_t in_channels = 3, height = 32, width = 32;
  int64_t patch = 4;    // patch size (the patch embedding is a patch x patch conv, stride patch)
  int64_t dim = 64;     // embedding width
  int64_t depth = 4;    // encoder layers
  int64_t heads = 4;    // attention heads (dim must be a multiple)
  int64_t mlp_dim = 128;
  bool pos_embed = false;  // learned position embedding (a Constant [1, T, D] added to the tokens)
};

// Patch embedding (conv) + learned position embedding, `depth` pre-norm encoder layers
// (LayerNorm -> multi-head self-attention -> residual; LayerNorm -> MLP with GELU -> residual),
// final LayerNorm, mean pooling over tokens, linear classifier. Attention is written with
// Linear, Reshape, Transpose, MatMul, Mul and Softmax, as PyTorch's ONNX export writes it.
ir::Graph vit_tiny(const VitConfig& config, uint64_t seed);

}  // namespace squeeze::models
