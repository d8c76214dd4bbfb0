// Runs the CLI in-process (cli::run_cli) for the CLI tests, quietly, capturing its output.
#pragma once

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

}  // namespace squeeze::testing
