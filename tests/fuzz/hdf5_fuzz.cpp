// Fuzz target: the HDF5 reader (read_hdf5 with the data sets "x" and "y"; Debian's libhdf5 parses
// the file, squeeze checks types, shapes and labels). See fuzz_target.h.
//
// Under libFuzzer (make fuzz) the parse runs in this process (hdf5_detail::read_hdf5_in_process),
// not in read_hdf5's forked child: the child's coverage would be lost to the fuzzer, and a fork
// per input ran 30 inputs a second. libhdf5 1.10 itself crashes on some damaged files, so this
// target does find crashes; scripts/fuzz.sh runs it with -fork=1 -ignore_crashes=1, sorts each
// crash by its stack (inside libhdf5: contained by the child in production, and replayed through
// `squeeze eval` to show it; in squeeze's code: a bug) and fails only on the second kind.
// The fast suite's replay (SQUEEZE_FUZZ_REPLAY) calls the production read_hdf5, child and all,
// so the crashing inputs kept under tests/fuzz/regressions/hdf5 check that containment.
#include <ATen/core/Tensor.h>

#include "fuzz/fuzz_target.h"
#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

#ifndef SQUEEZE_FUZZ_REPLAY
#include "data/hdf5_internal.h"
#endif
#if defined(SQUEEZE_HAVE_HDF5) && !defined(SQUEEZE_FUZZ_REPLAY)
#include <H5public.h>

// libhdf5 callocs its ~0.6 MB metadata cache per file opened and frees it at close (its free
// lists keep at most 64 KB a list by default); a fresh mapping each time, page faults and all,
// was most of the time per input. Unlimited free lists let it reuse the block: the parse is the
// same, only where libhdf5 gets its memory changes.
[[maybe_unused]] static const int free_lists_kept = H5set_free_list_limits(-1, -1, -1, -1, -1, -1);
#endif

SQUEEZE_FUZZ_TARGET(hdf5) {
  const std::string& path = squeeze::fuzz::input_file("hdf5", data, size);
  try {
    at::Tensor x, y;
#ifdef SQUEEZE_FUZZ_REPLAY
    squeeze::data::read_hdf5(path, "x", "y", x, y);
#else
    squeeze::data::hdf5_detail::read_hdf5_in_process(path, "x", "y", x, y);
#endif
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
