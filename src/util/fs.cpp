#include "squeeze/util/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "squeeze/util/error.h"

namespace squeeze {

namespace fs = std::filesystem;

std::string temp_path_for(const std::string& path) {
  static std::atomic<int> counter{0};
  return path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

void write_file_atomic(const std::string& path, const std::vector<std::string_view>& chunks) {
  const std::string tmp = temp_path_for(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0)
    throw Error(msg("cannot write ", path, ": cannot create temporary file ", tmp, ": ", std::strerror(errno)));
  auto fail = [&](const char* what) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(msg("cannot write ", path, ": ", what, ": ", std::strerror(err)));
  };
  for (std::string_view chunk : chunks) {
    size_t done = 0;
    while (done < chunk.size()) {
      const ssize_t w = ::write(fd, chunk.data() + done, chunk.size() - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      done += static_cast<size_t>(w);
    }
  }
  if (::fsync(fd) != 0) fail("fsync failed");
  const int rc = ::close(fd);
  fd = -1;
  if (rc != 0) fail("close failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename failed");
  // Makes the rename itself durable; a failure here leaves a complete file, so it is not fatal.
  std::string parent = fs::path(path).parent_path().string();
  const int dfd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void commit_temp(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(msg("cannot write '", path, "': ", ec.message()));
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  write_file_atomic(path, {text});
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(msg("cannot read '", path, "': ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace squeeze
