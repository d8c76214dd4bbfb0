// How much memory this process may still take, and refusals of work that cannot fit, so that a
// model or data set too large for the machine is refused with the sizes named, before anything is
// allocated, instead of ending in the OOM killer (or a std::bad_alloc that names nothing).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace squeeze {

struct MemoryBudget {
  uint64_t bytes = 0;   // what the process may still allocate
  std::string source;   // the limit that decided it ("MemAvailable in /proc/meminfo", ...)
};

// The smallest of: MemAvailable (/proc/meminfo); RLIMIT_AS minus the address space already
// mapped (VmSize); RLIMIT_DATA minus the data segment in use (VmData); the cgroup v2 memory.max
// minus memory.current of this process's cgroup. Limits that are absent or unlimited are skipped;
// when nothing can be read, bytes is UINT64_MAX and source says so.
MemoryBudget available_memory();

// Throws InputError (exit code 2) when `bytes` is more than available_memory() allows:
// "WHAT needs 3.20 GB of memory, but only 1.10 GB is available (limit: SOURCE); ADVICE".
void check_fits_in_memory(uint64_t bytes, const std::string& what, const std::string& advice);

// The product of `dims` times `element_bytes`, false when a dimension is negative or the product
// overflows 2^63 (a header claiming absurd dimensions), so callers compare sizes safely.
bool checked_bytes(const std::vector<int64_t>& dims, uint64_t element_bytes, uint64_t* out);

}  // namespace squeeze
