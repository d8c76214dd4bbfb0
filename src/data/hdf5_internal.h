// The HDF5 reader without its child process, for the fuzz target only (tests/fuzz/hdf5_fuzz.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace squeeze::data::hdf5_detail {

// read_hdf5 with libhdf5 parsing `path` in this process instead of a forked child: every check,
// message and label conversion is read_hdf5's, but a libhdf5 crash on a damaged file (Debian's
// 1.10 has some) takes this process down. The fuzz target calls it so that libFuzzer sees the
// parse's coverage (a child's is lost) at thousands of inputs a second; scripts/fuzz.sh sorts
// the crashes it finds by their stack, and those inside libhdf5 are the ones the child contains
// in production. Throws UnsupportedError when built without HDF5.
void read_hdf5_in_process(const std::string& path, const std::string& features,
                          const std::string& labels, at::Tensor& x, at::Tensor& y);

}  // namespace squeeze::data::hdf5_detail
