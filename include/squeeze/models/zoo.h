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

  // "zoo:small_cnn(channels=16)", "big.onnx", "run/models/baseline.sqz".
  std::string describe() const;
};

// Adds the zoo parameters a data set determines and `params` does not give: num_classes, and
// in_features (a 1-D sample) or in_channels with input_size, or height and width (a C x H x W
// sample), each only when the model accepts it. Unknown model names are left to build().
void fill_params_from_data(const std::string& name, std::map<std::string, std::string>& params,
                           const std::vector<int64_t>& sample_shape, int64_t num_classes);

// Builds a zoo model. Common params: num_classes, in_channels, input_size (square images) or
// height/width, in_features (tabular models), width (channel multiplier, mlp hidden sizes
// "256,128"). Unknown names or params throw ConfigError listing the valid ones; `key_path` names
// where the params were given ("model.params", "experiments[1].stages[0].params.student.params").
ir::Graph build(const std::string& name, const std::map<std::string, std::string>& params, uint64_t seed,
                const std::string& key_path = "model.params");

}  // namespace squeeze::models
