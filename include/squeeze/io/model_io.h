// Loads a model from what users write on the command line or in YAML.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::io {

// MODEL: "zoo:NAME" (random initialisation; zoo params as "zoo:NAME?num_classes=5&in_channels=3"),
// a path ending in .onnx, or a path ending in .sqz. Throws InputError / ConfigError with what
// would be valid.
ir::Graph load_model(const std::string& spec, uint64_t seed = 0);

// Saves by extension: .sqz or .onnx.
void save_model(const ir::Graph& graph, const std::string& path);

}  // namespace squeeze::io
