// Fuzz target: the IDX reader (data::read_idx, raw or gzip). See fuzz_target.h.
#include <ATen/core/Tensor.h>

#include "fuzz/fuzz_target.h"
#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

SQUEEZE_FUZZ_TARGET(idx) {
  const std::string& path = squeeze::fuzz::input_file("idx", data, size);
  try {
    squeeze::data::read_idx(path);
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
