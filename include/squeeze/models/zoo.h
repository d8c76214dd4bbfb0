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

// Builds a zoo model. Common params: num_classes, in_channels, input_size (square images) or
// height/width, in_features (tabular models), width (channel multiplier, mlp hidden sizes
// "256,128"). Unknown names or params throw ConfigError listing the valid ones.
ir::Graph build(const std::string& name, const std::map<std::string, std::string>& params, uint64_t seed);

}  // namespace squeeze::models
