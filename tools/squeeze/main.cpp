#include <iostream>

#include "cli.h"
#include "squeeze/util/env.h"

int main(int argc, char** argv) {
  squeeze::env::use_native_blas_kernels(argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  return squeeze::cli::run_cli(args, std::cout, std::cerr);
}
