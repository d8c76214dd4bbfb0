#include <filesystem>
#include <iostream>

#include "cli.h"
#include "launch.h"
#include "squeeze/util/env.h"

int main(int argc, char** argv) {
  squeeze::env::use_native_blas_kernels(argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  // --nproc starts more ranks of this very program.
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  squeeze::cli::set_program(ec ? std::string("/proc/self/exe") : self.string());
  return squeeze::cli::run_cli(args, std::cout, std::cerr);
}
