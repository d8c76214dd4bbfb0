#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "fuzz/fuzz_target.h"
#include "squeeze/util/log.h"

namespace squeeze::fuzz {
namespace {

std::map<std::string, std::string>& scratch_files() {
  static auto* files = new std::map<std::string, std::string>;  // outlives the atexit handler
  return *files;
}

void remove_scratch_files() {
  for (const auto& [target, path] : scratch_files()) ::unlink(path.c_str());
}

std::string scratch_dir() {
  if (::access("/dev/shm", W_OK) == 0) return "/dev/shm";
  const char* tmp = std::getenv("TMPDIR");
  return tmp && *tmp ? tmp : "/tmp";
}

}  // namespace

void init() {
  static const bool done = [] {
    log::set_level(log::Level::kError);
    std::atexit(remove_scratch_files);
    return true;
  }();
  (void)done;
}

const std::string& input_file(const char* target, const uint8_t* data, size_t size) {
  init();
  auto& files = scratch_files();
  auto it = files.find(target);
  if (it == files.end()) {
    it = files.emplace(target, scratch_dir() + "/squeeze-fuzz-" + std::to_string(::getpid()) + "-" +
                                   target)
             .first;
  }
  const std::string& path = it->second;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  bool ok = fd >= 0;
  for (size_t done = 0; ok && done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  if (fd >= 0) ok = ::close(fd) == 0 && ok;
  if (!ok) {
    // The harness, not the reader, failed: stop rather than fuzz a stale file.
    std::fprintf(stderr, "fuzz harness: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    std::abort();
  }
  return path;
}

}  // namespace squeeze::fuzz
