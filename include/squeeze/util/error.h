// squeeze's exceptions. Only main() turns them into exit codes:
//   UserError (and subclasses)  -> 2: bad usage, bad config, bad input file, unsupported op
//   everything else             -> 1: runtime failure
// Every message says what was wrong, where (file, key, layer) and what would be valid.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace squeeze {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The user can fix it: exit code 2.
class UserError : public Error {
 public:
  using Error::Error;
};
class ConfigError : public UserError {  // YAML keys, types, ranges; CLI arguments
 public:
  using UserError::UserError;
};
class InputError : public UserError {  // unreadable or malformed files: data, models, checkpoints
 public:
  using UserError::UserError;
};
class UnsupportedError : public UserError {  // an op, dtype or feature squeeze does not handle
 public:
  using UserError::UserError;
};
class GraphError : public UserError {  // an invalid graph (cycle, missing value, bad shapes)
 public:
  using UserError::UserError;
};

// A broken internal invariant: exit code 1.
class InternalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Builds a message from any streamable pieces: throw ConfigError(msg("key ", k, " ..."));
template <typename... Args>
std::string msg(const Args&... args) {
  return detail::cat(args...);
}

}  // namespace squeeze

#define SQZ_ASSERT(cond, ...)                                                               \
  do {                                                                                      \
    if (!(cond))                                                                            \
      throw ::squeeze::InternalError(::squeeze::msg("internal error: ", #cond, " at ",      \
                                                    __FILE__, ":", __LINE__, ": ", ##__VA_ARGS__)); \
  } while (0)
