#include "squeeze/util/memory.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze {

namespace {

// A "Key:   123 kB" line of a /proc file, in bytes; -1 when absent.
int64_t proc_kb_field(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0 || line.size() <= key.size() ||
        line[key.size()] != ':')
      continue;
    std::istringstream ss(line.substr(key.size() + 1));
    int64_t kb = -1;
    ss >> kb;
    return kb < 0 ? -1 : kb * 1024;
  }
  return -1;
}

// A cgroup v2 file of this process's cgroup as a number; -1 when absent or "max".
int64_t cgroup_value(const std::string& name) {
  std::ifstream cg("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(cg, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  if (path.empty()) return -1;
  std::ifstream in("/sys/fs/cgroup" + (path == "/" ? std::string() : path) + "/" + name);
  std::string v;
  if (!(in >> v) || v == "max") return -1;
  try {
    return std::stoll(v);
  } catch (const std::exception&) {
    return -1;
  }
}

void consider(MemoryBudget& b, int64_t bytes, const std::string& source) {
  if (bytes < 0) bytes = 0;
  if (static_cast<uint64_t>(bytes) < b.bytes) {
    b.bytes = static_cast<uint64_t>(bytes);
    b.source = source;
  }
}

}  // namespace

MemoryBudget available_memory() {
  MemoryBudget b;
  b.bytes = std::numeric_limits<uint64_t>::max();
  b.source = "no memory limit could be read";
  const int64_t avail = proc_kb_field("/proc/meminfo", "MemAvailable");
  if (avail >= 0) consider(b, avail, "MemAvailable in /proc/meminfo");
  struct rlimit rl;
  if (::getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    const int64_t used = std::max<int64_t>(0, proc_kb_field("/proc/self/status", "VmSize"));
    consider(b, static_cast<int64_t>(rl.rlim_cur) - used,
             msg("RLIMIT_AS (ulimit -v) of ", human_bytes(static_cast<int64_t>(rl.rlim_cur)),
                 ", ", human_bytes(used), " of it in use"));
  }
  if (::getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    const int64_t used = std::max<int64_t>(0, proc_kb_field("/proc/self/status", "VmData"));
    consider(b, static_cast<int64_t>(rl.rlim_cur) - used,
             msg("RLIMIT_DATA (ulimit -d) of ", human_bytes(static_cast<int64_t>(rl.rlim_cur)),
                 ", ", human_bytes(used), " of it in use"));
  }
  const int64_t max = cgroup_value("memory.max");
  if (max >= 0) {
    const int64_t current = std::max<int64_t>(0, cgroup_value("memory.current"));
    consider(b, max - current,
             msg("the cgroup's memory.max of ", human_bytes(max), ", ", human_bytes(current),
                 " of it in use"));
  }
  return b;
}

void check_fits_in_memory(uint64_t bytes, const std::string& what, const std::string& advice) {
  const MemoryBudget b = available_memory();
  if (bytes <= b.bytes) return;
  auto shown = [](uint64_t v) {
    return v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
               ? std::string("more than 9.2 EB")
               : msg(human_bytes(static_cast<int64_t>(v)), " (", v, " bytes)");
  };
  throw InputError(msg(what, " needs ", shown(bytes), " of memory, but only ", shown(b.bytes),
                       " is available (limit: ", b.source, ")", advice.empty() ? "" : "; ",
                       advice));
}

bool checked_bytes(const std::vector<int64_t>& dims, uint64_t element_bytes, uint64_t* out) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  // The non-zero dimensions must multiply within range even when another one is 0: libtorch
  // multiplies them all to size a tensor, and overflows on (0, 2^40, 2^40).
  uint64_t elements = 1;
  bool empty = false;
  for (int64_t d : dims) {
    if (d < 0) return false;
    if (d == 0) {
      empty = true;
      continue;
    }
    if (elements > kMax / static_cast<uint64_t>(d)) return false;
    elements *= static_cast<uint64_t>(d);
  }
  if (empty) {
    *out = 0;
    return true;
  }
  if (element_bytes != 0 && elements > kMax / element_bytes) return false;
  *out = elements * element_bytes;
  return true;
}

}  // namespace squeeze
