// QONNX export: the graph with QONNX `Quant` nodes (domain qonnx.custom_op.general) on every
// quantized weight and activation, for any width 2..8 (hls4ml, FINN). Passes the ONNX checker;
// import_onnx reads it back as the same quantized graph. Written atomically.
#pragma once

#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::io {

void export_qonnx(const ir::Graph& graph, const std::string& path);

}  // namespace squeeze::io
