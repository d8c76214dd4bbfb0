#include "squeeze/util/env.h"

#include <ATen/Parallel.h>
#include <link.h>
#include <sys/utsname.h>
#include <torch/version.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "squeeze/util/log.h"

namespace squeeze::env {

int set_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  return at::get_num_threads();
}

std::string blas_name() {
  std::string found = "unknown";
  // The shared objects loaded into this process: libtorch reaches BLAS through libblas.so.3,
  // which Debian's alternatives point at OpenBLAS or the reference implementation.
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        std::string path = info->dlpi_name ? info->dlpi_name : "";
        auto* out = static_cast<std::string*>(data);
        if (path.find("blas") == std::string::npos && path.find("mkl") == std::string::npos) return 0;
        std::error_code ec;
        std::string real = std::filesystem::canonical(path, ec).string();
        if (ec) real = path;
        if (real.find("openblas") != std::string::npos)
          *out = "openblas";
        else if (real.find("mkl") != std::string::npos)
          *out = "mkl";
        else if (*out == "unknown" && real.find("blas") != std::string::npos)
          *out = "reference";
        return 0;
      },
      &found);
  return found;
}

void check_blas() {
  static bool checked = false;
  if (checked) return;
  checked = true;
  std::string blas = blas_name();
  if (blas == "reference")
    log::warn("libtorch is using the reference BLAS, which is about 40x slower than OpenBLAS; install it with: "
              "apt-get install libopenblas0-pthread");
}

std::map<std::string, std::string> describe() {
  std::map<std::string, std::string> env;
  env["threads"] = std::to_string(at::get_num_threads());
  env["blas"] = blas_name();
  env["libtorch"] = TORCH_VERSION;
  struct utsname u;
  if (uname(&u) == 0) {
    env["host"] = u.nodename;
    env["os"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  }
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0) {
      env["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  env["cores"] = std::to_string(std::thread::hardware_concurrency());
  return env;
}

}  // namespace squeeze::env
