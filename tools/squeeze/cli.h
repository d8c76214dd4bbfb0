// The squeeze command line, callable in-process (tests) and from main().
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace squeeze::cli {

// args excludes the program name. Returns the exit code: 0 success, 1 runtime failure,
// 2 bad usage or bad config/input. Results go to `out`, errors to `err`, logs to stderr.
int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace squeeze::cli
