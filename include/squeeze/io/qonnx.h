// QONNX export: the graph with QONNX `Quant` nodes (domain qonnx.custom_op.general) on every
// quantized weight and activation, for any width 2..8 (hls4ml, FINN). Passes the ONNX checker;
// import_onnx reads it back as the same quantized graph. Written atomically.
// A dynamic int8 Linear (Quant has fixed scales) reads its input through the standard
// DynamicQuantizeLinear + DequantizeLinear; import_onnx reads that back as the Linear with
// quant_dynamic = 1.
// Throws UnsupportedError (the CLI's exit code 2) for what QONNX cannot express: unsigned narrow
// ranges (squeeze's are [1, 2^b-1], QONNX's [0, 2^b-2]).
#pragma once

#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::io {

void export_qonnx(const ir::Graph& graph, const std::string& path);

}  // namespace squeeze::io
