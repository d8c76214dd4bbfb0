#include "squeeze/util/env.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <sys/utsname.h>
#include <torch/version.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "squeeze/util/log.h"

namespace squeeze::env {

int set_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  // Debian's default OpenBLAS is the pthreads build: its own worker threads then compete with
  // libtorch's OpenMP workers, which spin between parallel regions, and a matrix product stalls
  // until the scheduler intervenes (measured: fine-tuning small_cnn 2,400 -> 3,400 samples/s with
  // 2 threads; a 64x1568x64 Linear erratically 2 ms instead of 0.2 ms). So OpenBLAS runs on the
  // calling thread; libtorch parallelises around it. OPENBLAS_NUM_THREADS, if set, wins.
  using GetInt = int (*)();
  using SetInt = void (*)(int);
  auto parallel = reinterpret_cast<GetInt>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  auto set_blas_threads = reinterpret_cast<SetInt>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (parallel && set_blas_threads && parallel() == 1 && !std::getenv("OPENBLAS_NUM_THREADS")) set_blas_threads(1);
  return at::get_num_threads();
}

void keep_freed_memory() {
  static bool done = false;
  if (done) return;
  done = true;
  // Up to 256 MiB per block from the heap; keep up to 1 GiB of free heap before trimming.
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 256 << 20);
  if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

namespace {
// The kernel set OpenBLAS chose ("SkylakeX", "Prescott"...), or "" when libtorch's BLAS is not
// OpenBLAS.
std::string openblas_core() {
  auto corename = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return corename ? corename() : "";
}
}  // namespace

void use_native_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("SQUEEZE_BLAS_REEXEC")) return;
  if (openblas_core() != "Prescott") return;
  __builtin_cpu_init();
  const char* core = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd"))
    core = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    core = "Haswell";
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core, 0);
  setenv("SQUEEZE_BLAS_REEXEC", "1", 1);  // never loop
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // exec failed: carry on with the kernels we have
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
  if (std::string core = openblas_core(); !core.empty()) env["blas_core"] = core;
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
