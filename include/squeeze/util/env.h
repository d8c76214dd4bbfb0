// Facts about the process environment that results depend on.
#pragma once

#include <map>
#include <string>

namespace squeeze::env {

// Sets libtorch's intra-op threads (0: all cores) and returns the number in use.
int set_threads(int threads);

// Makes glibc malloc keep freed memory for reuse: large blocks (activations) are taken from the
// heap instead of fresh mmap()s, and the heap is not trimmed after every free. Without this each
// inference pays page faults for every activation over glibc's dynamic mmap threshold; a
// 64x64x28x28 convolution measured 10 ms instead of 1.2 ms. Settings the user gave through
// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ are left alone. Idempotent.
void keep_freed_memory();

// OpenBLAS picks its kernels when it is loaded, from the CPU model. Debian 12's OpenBLAS (0.3.21)
// does not know newer Xeons that report a generic model name (seen here: Sapphire Rapids as
// "Intel(R) Xeon(R) Processor") and falls back to its Prescott (SSE3) kernels, which made batch-1
// convolutions (im2col + sgemm) 1.4-1.7x slower end to end. OpenBLAS honours OPENBLAS_CORETYPE,
// but reads it in its constructor, before main(), and the environment cannot be changed earlier
// (glibc resets it after .preinit_array runs).
// So when OpenBLAS runs that fallback on a CPU with AVX2 (or AVX-512) and the user has not set
// OPENBLAS_CORETYPE, this sets it to Haswell (SkylakeX) and re-executes the program with the same
// arguments (one more process start, ~0.2 s). Returns only when no re-exec is needed or it
// failed. Call first thing in main().
void use_native_blas_kernels(char** argv);

// "openblas", "reference", "mkl" or "unknown": which BLAS libtorch's matrix products reach.
std::string blas_name();

// Warns once on stderr when libtorch would use the reference BLAS (about 40x slower).
void check_blas();

// threads, blas, libtorch version, cpu, host: for reports.
std::map<std::string, std::string> describe();

}  // namespace squeeze::env
