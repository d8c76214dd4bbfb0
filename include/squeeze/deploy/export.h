// Exports a graph to the formats of `squeeze export` and output.export.
#pragma once

#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

// The formats this build can write.
std::vector<std::string> export_formats();
// Throws ConfigError (unknown format, listing the valid ones) or UnsupportedError (known but not
// available in this build). `where` names the config key or CLI option.
void check_export_format(const std::string& format, const std::string& where);
// ".onnx", ".qonnx.onnx", ".pt", "_cpp" (cpp writes a folder: deploy/cpp_export.h)
std::string export_extension(const std::string& format);
// Writes atomically (cpp: a folder of sources with default CppExportOptions; deploy/cpp_export.h).
void export_model(const ir::Graph& graph, const std::string& format, const std::string& path);

}  // namespace squeeze::deploy
