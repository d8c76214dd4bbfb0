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

// "openblas", "reference", "mkl" or "unknown": which BLAS libtorch's matrix products reach.
std::string blas_name();

// Warns once on stderr when libtorch would use the reference BLAS (about 40x slower).
void check_blas();

// threads, blas, libtorch version, cpu, host: for reports.
std::map<std::string, std::string> describe();

}  // namespace squeeze::env
