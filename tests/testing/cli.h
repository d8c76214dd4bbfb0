// Runs the CLI in-process (cli::run_cli) for the CLI tests, quietly, capturing its output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "squeeze/util/log.h"

namespace squeeze::testing {

struct CliResult {
  int code;
  std::string out, err;
};

inline CliResult cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  args.insert(args.begin(), "--quiet");
  int code = cli::run_cli(args, out, err);
  log::set_level(log::Level::kInfo);  // --quiet lowered it for the process
  return {code, out.str(), err.str()};
}

#ifdef SQUEEZE_BINARY
// Runs the built squeeze program as a separate process (exit code; stdout and stderr together in
// `out`). `env`: settings put before it ("A=1 B=2"); the BLAS re-exec variables are cleared so
// that a test's own settings are what the program sees.
inline CliResult run_binary(const std::string& args, const std::string& env = "") {
  const std::string cmd = "env -u OPENBLAS_CORETYPE -u SQUEEZE_BLAS_REEXEC " + env + " " +
                          SQUEEZE_BINARY + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {-1, "", ""};
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, ""};
}
#endif

}  // namespace squeeze::testing
