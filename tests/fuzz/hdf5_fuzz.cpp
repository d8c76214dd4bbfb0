// Fuzz target: the HDF5 reader (data::read_hdf5 with the data sets "x" and "y"; Debian's libhdf5
// parses the file, squeeze checks types, shapes and labels). See fuzz_target.h.
#include <ATen/core/Tensor.h>

#include "fuzz/fuzz_target.h"
#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

SQUEEZE_FUZZ_TARGET(hdf5) {
  const std::string& path = squeeze::fuzz::input_file("hdf5", data, size);
  try {
    at::Tensor x, y;
    squeeze::data::read_hdf5(path, "x", "y", x, y);
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
