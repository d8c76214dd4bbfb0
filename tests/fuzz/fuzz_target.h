// Shared by the fuzz targets (tests/fuzz/*_fuzz.cpp). Each target feeds arbitrary bytes to one
// reader; the reader's typed user errors (squeeze::UserError: InputError, ConfigError, ...) are
// the expected outcome for bad input. Anything else is a bug: a crash, a sanitizer report, a
// hang, or another exception escaping (a c10::Error or std::exception would reach the user as
// "runtime failure", exit code 1, instead of a message naming the file).
//
// A target is written once, as SQUEEZE_FUZZ_TARGET(name) { ... use data, size ... }, and built two
// ways (cmake/fuzz.cmake):
//   - with clang and libFuzzer (make fuzz): the body is LLVMFuzzerTestOneInput, one executable
//     per target (fuzz_<name>), coverage-guided;
//   - with any compiler into squeeze_fuzz_replay (SQUEEZE_FUZZ_REPLAY), whose own main replays
//     the seed corpus, the regression inputs and a fixed number of deterministic mutations
//     (tests/fuzz/replay_main.cpp): the fast suite's short run, no clang needed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#ifdef SQUEEZE_FUZZ_REPLAY
#define SQUEEZE_FUZZ_TARGET(name) int squeeze_fuzz_##name(const uint8_t* data, size_t size)
#else
#define SQUEEZE_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#endif

namespace squeeze::fuzz {

// Once per process: logs at error level only (readers warn on every damaged input).
void init();

// Writes the input to a scratch file and returns its path, for readers that take a path. The file
// is one per process and target (rewritten per input), on /dev/shm when it exists (a tmpfs: no
// disk traffic for a million inputs), else in $TMPDIR or /tmp; it is removed at exit.
const std::string& input_file(const char* target, const uint8_t* data, size_t size);

}  // namespace squeeze::fuzz
