// Fuzz target: the NPY reader (data::read_npy, format versions 1 to 3), and the label
// conversion every labels file goes through (data::to_class_indices). See fuzz_target.h.
#include <ATen/core/Tensor.h>

#include "fuzz/fuzz_target.h"
#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

SQUEEZE_FUZZ_TARGET(npy) {
  const std::string& path = squeeze::fuzz::input_file("npy", data, size);
  try {
    const at::Tensor t = squeeze::data::read_npy(path);
    squeeze::data::to_class_indices(t, path);
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
