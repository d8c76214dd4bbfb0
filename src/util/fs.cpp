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

namespace {

// Failures the user can fix by choosing another path (exit code 2); the rest (disk full, I/O
// errors) are runtime failures.
bool user_fixable(int err) {
  return err == ENOTDIR || err == EEXIST || err == EACCES || err == EPERM || err == EROFS ||
         err == ENAMETOOLONG || err == ENOENT || err == EISDIR || err == ELOOP;
}

[[noreturn]] void throw_write_error(const std::string& path, const std::string& why, int err) {
  const std::string text = msg("cannot write '", path, "': ", why);
  if (user_fixable(err))
    throw UserError(
        text + " (choose an output path in a folder you can write, or one that can be created)");
  throw Error(text);
}

// Creates the folders an output path needs. When that is impossible, the message names the
// user's path and the part of it that is in the way, never a temporary file.
void prepare_parent(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec || !fs::is_directory(parent)) {
      // The deepest existing part of the folder path: a regular file there is the usual cause.
      fs::path p = parent;
      std::error_code ec2;
      while (!p.empty() && !fs::exists(p, ec2) && p.has_parent_path() && p.parent_path() != p)
        p = p.parent_path();
      if (!p.empty() && fs::exists(p, ec2) && !fs::is_directory(p, ec2))
        throw_write_error(path, msg("'", p.string(), "' is a file, not a folder"), ENOTDIR);
      const int err = ec ? ec.value() : ENOTDIR;
      throw_write_error(path,
                        msg("cannot create folder '", parent.string(),
                            "': ", ec ? ec.message() : std::string("not a folder")),
                        err);
    }
  }
  // Writers that hand the temporary path to another library (TorchScript's save) would otherwise
  // report that library's message about the temporary file.
  if (::access(parent.c_str(), W_OK) != 0) {
    const int err = errno;
    throw_write_error(
        path, msg("folder '", parent.string(), "' is not writable: ", std::strerror(err)), err);
  }
}

}  // namespace

std::string temp_path_for(const std::string& path) {
  static std::atomic<int> counter{0};
  prepare_parent(path);
  return path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

void write_file_atomic(const std::string& path, const std::vector<std::string_view>& chunks) {
  const std::string tmp = temp_path_for(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int err = errno;
    throw_write_error(path, std::strerror(err), err);
  }
  auto fail = [&](const char* what) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw_write_error(path, msg(what, ": ", std::strerror(err)), err);
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
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_write_error(path, err == EISDIR ? std::string("it is a folder") : std::strerror(err),
                      err);
  }
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
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw_write_error(path, ec.value() == EISDIR ? std::string("it is a folder") : ec.message(),
                      ec.value());
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
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
