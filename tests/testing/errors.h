// Catching the error a call should throw, to assert on its message.
#pragma once

#include <exception>
#include <string>

namespace squeeze::testing {

// Runs `fn`, expects exception type E and returns its message; otherwise returns
// "wrong exception type: <message>" or "no exception", which no expected message contains.
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
