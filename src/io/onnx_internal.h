// Shared by the ONNX importer and exporter (src/io/onnx_*.cpp): tensor conversion between
// onnx::TensorProto and at::Tensor, type codes and name sanitizing. The ONNX protobuf stays
// inside io/ and deploy/.
#pragma once

// Debian's libonnx is built with ONNX_ML; the CMake target passes these, standalone builds may not.
#ifndef ONNX_ML
#define ONNX_ML 1
#endif
#ifndef ONNX_NAMESPACE
#define ONNX_NAMESPACE onnx
#endif
#include <ATen/core/Tensor.h>
#include <onnx/onnx_pb.h>

#include <string>

namespace squeeze::io::onnx_detail {

// Largest tensor (elements) the importer materialises from a small description
// (ConstantOfShape, Range, folded Expand/Tile): guards against absurd shapes in damaged files.
constexpr int64_t kMaxFoldedElements = int64_t{1} << 28;

// Converts a TensorProto (raw or typed data, or external data relative to `base_dir`) to a
// contiguous CPU tensor. Unsigned 16/32/64-bit types widen to int32/int64. Throws InputError
// naming `where` when the payload does not match the dims, UnsupportedError for strings.
at::Tensor tensor_from_proto(const onnx::TensorProto& t, const std::string& where,
                             const std::string& base_dir = "");
// Fills `out` (dims, data_type, raw_data) from a tensor; the name is left to the caller.
void tensor_to_proto(const at::Tensor& t, onnx::TensorProto* out);

// ONNX TensorProto::DataType code <-> libtorch scalar type. Throws UnsupportedError.
at::ScalarType scalar_type_from_onnx(int32_t code, const std::string& where);
int32_t onnx_type_from_scalar(at::ScalarType type);
// The IR's Cast type names ("float", "int64", ...).
std::string cast_name_from_onnx(int32_t code, const std::string& where);
int32_t onnx_type_from_cast_name(const std::string& name);

}  // namespace squeeze::io::onnx_detail
