// OpenBLAS kernel choice for executables.
//
// OpenBLAS picks its kernels when it is loaded, from the CPU model. Debian 12's OpenBLAS (0.3.21)
// does not know newer Xeons that report a generic model name (seen here: Sapphire Rapids as
// "Intel(R) Xeon(R) Processor") and falls back to its Prescott (SSE3) kernels, which made batch-1
// convolutions (im2col + sgemm) 1.4-1.7x slower end to end. OpenBLAS honours OPENBLAS_CORETYPE,
// but reads it in its constructor, before main(), and the environment cannot be changed earlier
// (glibc resets it after .preinit_array runs).
#pragma once

namespace squeeze::env {

// When OpenBLAS runs its Prescott fallback on a CPU with AVX2 (or AVX-512) and the user has not
// set OPENBLAS_CORETYPE, sets it to Haswell (SkylakeX) and re-executes the program with the same
// arguments (costs one more process start, ~0.7 s with libtorch). Returns only when no re-exec
// is needed or it failed. Call first thing in main().
void use_native_blas_kernels(char** argv);

}  // namespace squeeze::env
