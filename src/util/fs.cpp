#include "squeeze/util/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
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

// SQUEEZE_FAULT (tests only, see fs.h): the fault to inject and the 1-based index of the atomic
// write it hits.
struct Fault {
  enum Kind { kNone, kWriteError, kKillInWrite } kind = kNone;
  int64_t at = 0;
};

Fault parse_fault() {
  const char* v = std::getenv("SQUEEZE_FAULT");
  Fault f;
  if (!v || !*v) return f;
  const std::string s = v;
  const size_t colon = s.find(':');
  const std::string kind = s.substr(0, colon);
  int64_t n = 0;
  if (colon != std::string::npos) {
    try {
      size_t used = 0;
      n = std::stoll(s.substr(colon + 1), &used);
      if (used != s.size() - colon - 1) n = 0;
    } catch (const std::exception&) {
      n = 0;
    }
  }
  if ((kind != "write-error" && kind != "kill-in-write") || n < 1)
    throw ConfigError(msg("SQUEEZE_FAULT: '", s,
                          "' is not a fault (valid: write-error:N, kill-in-write:N, N >= 1 the "
                          "index of the atomic write to hit; unset it for normal runs)"));
  f.kind = kind == "write-error" ? Fault::kWriteError : Fault::kKillInWrite;
  f.at = n;
  return f;
}

// Parsed once; a bad value throws on every call (a throwing initialisation is retried), so the
// CLI's up-front check and every write agree.
const Fault& fault_setting() {
  static const Fault fault = parse_fault();
  return fault;
}

// The fault for this atomic write: kNone for all but the chosen one.
Fault::Kind next_write_fault() {
  const Fault& f = fault_setting();
  if (f.kind == Fault::kNone) return Fault::kNone;
  static std::atomic<int64_t> writes{0};
  return ++writes == f.at ? f.kind : Fault::kNone;
}

}  // namespace

void check_fault_injection() { fault_setting(); }

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
  const Fault::Kind fault = next_write_fault();
  if (fault != Fault::kNone) {
    // Half of the data reaches the temporary file, then the disk is "full" or the process dies:
    // what a crash or ENOSPC in the middle of a large write leaves behind.
    size_t total = 0;
    for (std::string_view chunk : chunks) total += chunk.size();
    std::string half;
    for (std::string_view chunk : chunks) half.append(chunk.data(), chunk.size());
    half.resize(total / 2);
    if (!half.empty() && ::write(fd, half.data(), half.size()) < 0) fail("write failed");
    if (fault == Fault::kKillInWrite) {
      ::fsync(fd);
      ::raise(SIGKILL);
    }
    errno = ENOSPC;
    fail("write failed");
  }
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
  const Fault::Kind fault = next_write_fault();
  if (fault == Fault::kKillInWrite) ::raise(SIGKILL);
  if (fault == Fault::kWriteError) {
    ::unlink(tmp.c_str());
    throw_write_error(path, std::strerror(ENOSPC), ENOSPC);
  }
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

void check_output_folder(const std::string& dir, const std::string& what) {
  const fs::path folder = dir.empty() ? fs::path(".") : fs::path(dir);
  auto refuse = [&](const std::string& why) {
    throw UserError(msg(what, " '", dir, "' cannot be used: ", why,
                        "; choose a folder you can write (--out DIR, or output.dir)"));
  };
  std::error_code ec;
  // The folders that do not exist yet, outermost first: created for the test, removed after it.
  std::vector<fs::path> missing;
  for (fs::path p = folder; !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    missing.insert(missing.begin(), p);
    if (p.parent_path() == p) break;
  }
  const fs::path existing = missing.empty() ? folder : missing.front().parent_path();
  if (!existing.empty() && !fs::is_directory(existing, ec))
    refuse(msg("'", existing.string(), "' is a file, not a folder"));
  std::vector<fs::path> created;
  auto undo = [&]() {
    for (auto it = created.rbegin(); it != created.rend(); ++it) ::rmdir(it->c_str());
  };
  // Only the folders this call made are removed after the test (not one a concurrent process made:
  // shared-study workers check sibling folders at once), and a parent that vanished under another
  // process's clean-up is made again.
  int retries = 0;
  for (size_t i = 0; i < missing.size(); ++i) {
    const fs::path& p = missing[i];
    if (::mkdir(p.c_str(), 0777) == 0) {
      created.push_back(p);
      continue;
    }
    if (errno == EEXIST) continue;
    if (errno == ENOENT && retries++ < 50) {
      i = static_cast<size_t>(-1);  // again from the outermost missing folder
      continue;
    }
    const int err = errno;
    undo();
    refuse(msg("cannot create folder '", p.string(), "': ", std::strerror(err)));
  }
  // Root passes every permission check, so the test is a real file: read-only mounts, /proc and
  // full quotas fail here and not after the work.
  const std::string probe = (folder / (".squeeze-write-test-" + std::to_string(getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    undo();
    refuse(msg("cannot create a file in it: ", std::strerror(err)));
  }
  const bool wrote = ::write(fd, "x", 1) == 1;
  const int werr = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  undo();
  if (!wrote) refuse(msg("cannot write a file in it: ", std::strerror(werr)));
}

std::vector<std::string> remove_stale_temps(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return removed;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string name = it->path().filename().string();
    // "NAME.tmp-PID-N", as temp_path_for makes them.
    const size_t at = name.rfind(".tmp-");
    if (at == std::string::npos) continue;
    const std::string rest = name.substr(at + 5);
    const size_t dash = rest.find('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 >= rest.size() ||
        rest.find_first_not_of("0123456789-") != std::string::npos)
      continue;
    const pid_t pid = static_cast<pid_t>(std::atoll(rest.substr(0, dash).c_str()));
    // A live writer (another process, or this one) may still rename it.
    if (pid == getpid() || (::kill(pid, 0) == 0 || errno == EPERM)) continue;
    std::error_code rm;
    if (fs::remove(it->path(), rm)) removed.push_back(it->path().string());
  }
  return removed;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(msg("cannot read '", path, "': ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace squeeze
