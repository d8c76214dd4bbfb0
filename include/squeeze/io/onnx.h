// ONNX in and out (Debian's libonnx protobuf). The ONNX protobuf appears only under io/ and
// deploy/; everything else speaks ir::Graph.
#pragma once

#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::io {

struct OnnxImportOptions {
  bool run_checker = true;          // onnx::checker::check_model
  bool fold_constants = true;       // initializers, Constant, Shape/Gather/... chains
  bool keep_dynamic_batch = true;   // leading dim of inputs stays ir::kDynamic
};

// Reads an .onnx file (opsets 7..17, IR versions 3..8) into the IR, verified. Throws InputError
// for unreadable/malformed files, UnsupportedError naming op, node, opset and the supported ops,
// GraphError for cycles and missing values.
// Quantized files: QDQ and QONNX Quant become qspecs. Dynamically quantized files (ONNX Runtime's
// quantize_dynamic: DynamicQuantizeLinear -> MatMulInteger/ConvInteger with a constant int8 or
// uint8 weight -> Cast -> Mul by both scales [-> Add bias]; and squeeze's QONNX form
// DynamicQuantizeLinear -> DequantizeLinear -> quantized layer) become Linear/Conv nodes with
// quant_dynamic = 1 and the weight's qspec (per tensor, or per output channel on axis 0), the
// weight stored dequantized on its grid. Anything else built from those ops stays as the integer
// IR ops DynamicQuantizeLinear, MatMulInteger, ConvInteger and DequantizeLinear, which execute
// exactly what the file says (int32 sums) but have no ONNX export.
ir::Graph import_onnx(const std::string& path, const OnnxImportOptions& options = {});
ir::Graph import_onnx_bytes(const std::string& bytes, const std::string& source_name,
                            const OnnxImportOptions& options = {});

struct OnnxExportOptions {
  int64_t opset = 13;
  bool qdq = true;  // quantized tensors as QuantizeLinear/DequantizeLinear (later)
};

// Writes float ONNX (opset 13) that passes the ONNX checker; atomic.
void export_onnx(const ir::Graph& graph, const std::string& path, const OnnxExportOptions& options = {});

// A serialized onnx.TensorProto file (the `input_0.pb` / `output_0.pb` of ONNX test cases) as a
// tensor. Throws InputError for unreadable or damaged files.
at::Tensor load_onnx_tensor(const std::string& path);
void save_onnx_tensor(const at::Tensor& tensor, const std::string& path, const std::string& name = "");

// The ONNX ops import_onnx converts (for messages and docs).
std::vector<std::string> supported_onnx_ops();

}  // namespace squeeze::io
