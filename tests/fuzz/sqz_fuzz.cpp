// Fuzz target: the .sqz checkpoint loader (io::load_sqz: preamble, JSON header, tensor table,
// payload decoding, graph building and verification). See fuzz_target.h.
#include "fuzz/fuzz_target.h"
#include "squeeze/io/sqz.h"
#include "squeeze/util/error.h"

SQUEEZE_FUZZ_TARGET(sqz) {
  const std::string& path = squeeze::fuzz::input_file("sqz", data, size);
  try {
    squeeze::io::load_sqz(path);
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
