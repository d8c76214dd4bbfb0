// What the test binary was built with, for the few tests a sanitizer runtime cannot take part in
// (make test-sanitize; see tests/sanitize/run.sh). Such a test skips with the reason there and
// still runs in make test.
#pragma once

namespace squeeze::testing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

}  // namespace squeeze::testing
