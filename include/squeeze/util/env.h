// Facts about the process environment that results depend on.
#pragma once

#include <map>
#include <string>

namespace squeeze::env {

// Sets libtorch's intra-op threads (0: all cores) and returns the number in use.
int set_threads(int threads);

// "openblas", "reference", "mkl" or "unknown": which BLAS libtorch's matrix products reach.
std::string blas_name();

// Warns once on stderr when libtorch would use the reference BLAS (about 40x slower).
void check_blas();

// threads, blas, libtorch version, cpu, host: for reports.
std::map<std::string, std::string> describe();

}  // namespace squeeze::env
