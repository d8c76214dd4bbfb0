// Fuzz target: the ONNX reader (io::import_onnx_bytes: protobuf parse, ONNX checker and shape
// inference, conversion to the IR, constant folding, ir::verify). See fuzz_target.h.
#include <string>

#include "fuzz/fuzz_target.h"
#include "squeeze/io/onnx.h"
#include "squeeze/util/error.h"

SQUEEZE_FUZZ_TARGET(onnx) {
  squeeze::fuzz::init();
  // The source name has no folder, so external-data references resolve against the working
  // folder (tests run in the build folder, which holds no tensor data files).
  try {
    squeeze::io::import_onnx_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.onnx");
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
