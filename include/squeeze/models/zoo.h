// The model zoo: architectures built as IR graphs with random (PyTorch-default) initialisation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::models {

struct ZooEntry {
  std::string name;
  std::string description;
  std::vector<std::string> params;  // accepted parameter names
};

const std::vector<ZooEntry>& zoo();

// A model as a config names it: exactly one of zoo (with its params), onnx or checkpoint.
struct ModelSpec {
  std::string zoo;                              // zoo name, e.g. "small_cnn" (also `type:`)
  std::map<std::string, std::string> params;    // zoo parameters as given (num_classes: 10)
  std::string onnx;                             // path to an .onnx file
  std::string checkpoint;                       // path to a .sqz file
  // head: {num_classes: N}: the last classifier replaced by a fresh one with N outputs after
  // the model is built or loaded (replace_head); 0: kept as it is.
  int64_t head_classes = 0;

  // "zoo:small_cnn(channels=16)", "big.onnx", "run/models/baseline.sqz", "m.onnx (head 10)".
  std::string describe() const;
};

// Adds the zoo parameters a data set determines and `params` does not give: num_classes, and
// in_features (a 1-D sample) or in_channels with input_size, or height and width (a C x H x W
// sample), each only when the model accepts it. Unknown model names are left to build().
void fill_params_from_data(const std::string& name, std::map<std::string, std::string>& params,
                           const std::vector<int64_t>& sample_shape, int64_t num_classes);

// Replaces the last classifier of `graph`, the Linear (also an imported Gemm or MatMul with a
// constant matrix) or 1x1 Conv whose output reaches the graph output through shape-only and
// per-channel ops (Flatten, Reshape, Squeeze, Identity, Dropout, activations, global pooling,
// Softmax; a trailing Softmax is kept), by a new layer with `num_classes` outputs, initialised
// like the zoo's layers (PyTorch's default, seeded). Reshapes on the way that name the old
// width get the new one. Returns a description for the log ("fc: Linear 512 -> 1000 replaced
// by Linear 512 -> 10"). Throws ConfigError naming the op that produces the output when no
// such layer is found, or when the graph has other than one output. `key_path` names the
// setting in messages.
std::string replace_head(ir::Graph& graph, int64_t num_classes, uint64_t seed,
                         const std::string& key_path = "model.head");

// Builds a zoo model. Common params: num_classes, in_channels, input_size (square images) or
// height/width, in_features (tabular models), width (channel multiplier, mlp hidden sizes
// "256,128"). Unknown names or params throw ConfigError listing the valid ones; `key_path` names
// where the params were given ("model.params", "experiments[1].stages[0].params.student.params").
ir::Graph build(const std::string& name, const std::map<std::string, std::string>& params, uint64_t seed,
                const std::string& key_path = "model.params");

}  // namespace squeeze::models
