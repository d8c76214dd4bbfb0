// Expecting a typed squeeze error and reading its message.
#pragma once

#include <exception>
#include <string>

namespace squeeze::testing {

// Runs `fn`, expects exception type E and returns its message; otherwise a message that says
// what happened instead ("no exception", "wrong exception type: ..."), which no test looks for.
template <typename E, typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "no exception";
}

}  // namespace squeeze::testing
