// The .sqz checkpoint: a small JSON header (graph, attributes, tensor table with dtype, bit
// width, encoding, offsets) followed by tensor payloads. See DESIGN.md section 6.
//
// File layout (little endian):
//   8 bytes  magic "SQZCKPT\0"
//   4 bytes  format version (uint32, currently 1)
//   8 bytes  header length H (uint64)
//   H bytes  JSON header (UTF-8)
//   padding to 64 bytes, then payloads; each tensor's offset is relative to the payload start
//   8 bytes  trailer: FNV-1a 64 hash of header and payloads
#pragma once

#include <cstdint>
#include <string>

#include "squeeze/ir/graph.h"

namespace squeeze::io {

// Encodings chosen per tensor, smallest first:
//   "dense_f32"   float32 values
//   "sparse_f32"  bitmap of non-zeros (1 bit per element) + float32 non-zeros
//   "packed_int"  b-bit integers (2..8, 16) packed little-endian, plus scale/zero point (later)
//   "sparse_int"  bitmap + packed b-bit non-zeros
// A masked parameter is stored with its mask applied; the mask is recovered from the zeros.

// Writes atomically (temporary file in the same folder, then rename). Throws Error on I/O failure.
void save_sqz(const ir::Graph& graph, const std::string& path);
// Throws InputError naming the file and what is damaged (magic, version, sizes, bounds, hash).
ir::Graph load_sqz(const std::string& path);

// The bytes the tensors take as save_sqz would store them (payloads only, without header).
int64_t stored_size_bytes(const ir::Graph& graph);

}  // namespace squeeze::io
