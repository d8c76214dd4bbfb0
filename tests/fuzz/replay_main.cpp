// squeeze_fuzz_replay: runs the fuzz targets without libFuzzer, so the fast suite (any compiler)
// keeps a short, deterministic fuzz run of every target:
//
//   squeeze_fuzz_replay TARGET [--mutations N] [--max-seconds S] [--seed K] [--only I] PATH...
//
// PATH is a file or a folder of inputs (the seed corpus, the regression inputs). Every input is
// replayed, then up to N mutations (default 2000) of them are run: mutation i picks an input and
// applies 1 to 4 edits with a generator seeded by K + i, so a failure is reproduced alone with
// --only i. Mutations stop early after S seconds (default 2): slow machines run fewer, never a
// different sequence. A crash or sanitizer report ends the process; an escaped exception (see
// fuzz_target.h) is reported. Either way the failing input is written to
// fuzz-failure-TARGET.bin in the working folder and the exit code is not 0.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "squeeze/util/error.h"

int squeeze_fuzz_onnx(const uint8_t*, size_t);
int squeeze_fuzz_sqz(const uint8_t*, size_t);
int squeeze_fuzz_config(const uint8_t*, size_t);
int squeeze_fuzz_idx(const uint8_t*, size_t);
int squeeze_fuzz_csv(const uint8_t*, size_t);
int squeeze_fuzz_npy(const uint8_t*, size_t);
int squeeze_fuzz_hdf5(const uint8_t*, size_t);

namespace {

// The harness's own target (ctest fuzz_replay_selftest_*, inputs in tests/fuzz/selftest/): an input
// starting with "user-error" throws a squeeze::InputError, which a target tolerates; "escape"
// throws a std::logic_error, which must be reported (exit code 1); "abort" aborts, which must save
// the input and end the process by the signal.
int selftest(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  try {
    if (s.rfind("user-error", 0) == 0) throw squeeze::InputError("selftest: a user error");
  } catch (const squeeze::UserError&) {
  }
  if (s.rfind("escape", 0) == 0) throw std::logic_error("selftest: not a user error");
  if (s.rfind("abort", 0) == 0) std::abort();
  return 0;
}

struct Target {
  const char* name;
  int (*run)(const uint8_t*, size_t);
};
constexpr Target kTargets[] = {
    {"onnx", squeeze_fuzz_onnx}, {"sqz", squeeze_fuzz_sqz}, {"config", squeeze_fuzz_config},
    {"idx", squeeze_fuzz_idx},   {"csv", squeeze_fuzz_csv}, {"npy", squeeze_fuzz_npy},
    {"hdf5", squeeze_fuzz_hdf5}, {"selftest", selftest},
};

using Bytes = std::vector<uint8_t>;

// What is running, for the crash handler (which may only make async-signal-safe calls).
const Bytes* g_current = nullptr;
char g_failure_path[512];
char g_what[512];

void save_failure(const Bytes& input) {
  const int fd = ::open(g_failure_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < input.size()) {
    const ssize_t n = ::write(fd, input.data() + done, input.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

void on_fatal_signal(int sig) {
  if (g_current) {
    save_failure(*g_current);
    const char head[] = "\nsqueeze_fuzz_replay: fatal signal while running ";
    ssize_t ignored = ::write(2, head, sizeof head - 1);
    ignored = ::write(2, g_what, std::strlen(g_what));
    const char tail[] = "; input saved to ";
    ignored = ::write(2, tail, sizeof tail - 1);
    ignored = ::write(2, g_failure_path, std::strlen(g_failure_path));
    ignored = ::write(2, "\n", 1);
    (void)ignored;
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

std::vector<std::pair<std::string, Bytes>> load_inputs(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, Bytes>> out;
  for (const std::string& p : paths) {
    std::vector<std::string> files;
    if (fs::is_directory(p)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "squeeze_fuzz_replay: %s: no such file or folder\n", p.c_str());
      std::exit(2);
    }
    for (const std::string& f : files) {
      std::ifstream in(f, std::ios::binary);
      out.emplace_back(f, Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
    }
  }
  return out;
}

// Edits in the spirit of libFuzzer's mutators: bits, bytes, integers in either byte order,
// numbers in text, ranges erased, inserted, duplicated; truncation; splicing two inputs.
void mutate(Bytes& b, const std::vector<std::pair<std::string, Bytes>>& corpus, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  static const uint8_t kBytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '0', '9', '-', '.', ',', '\n',
                                   ':',  ' ',  '[',  '{',  '"',  '\'', 'e', 'n'};
  static const uint64_t kInts[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff,
                                   0x80000000, 0xffffffff, uint64_t{1} << 40,
                                   0x7fffffffffffffff, 0x8000000000000000, ~uint64_t{0}};
  static const char* kNumbers[] = {"-1", "0", "1e308", "-1e308", "nan", "inf", "99999999999999999999",
                                   "9223372036854775807", "-9223372036854775808", "4294967296",
                                   "0.5", "1e-320", "", "1e", "0x10"};
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    switch (rng() % 11) {
      case 0:
        if (!b.empty()) b[pick(b.size())] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        if (!b.empty()) b[pick(b.size())] = static_cast<uint8_t>(rng());
        break;
      case 2:
        if (!b.empty()) b[pick(b.size())] = kBytes[pick(sizeof kBytes)];
        break;
      case 3: {
        if (b.empty()) break;
        const size_t at = pick(b.size());
        const size_t n = std::min(b.size() - at, 1 + pick(16));
        b.erase(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n));
        break;
      }
      case 4: {
        const size_t at = pick(b.size() + 1);
        Bytes ins(1 + pick(8));
        for (auto& c : ins) c = rng() % 2 ? kBytes[pick(sizeof kBytes)] : static_cast<uint8_t>(rng());
        b.insert(b.begin() + static_cast<long>(at), ins.begin(), ins.end());
        break;
      }
      case 5: {
        if (b.empty()) break;
        const size_t from = pick(b.size());
        const size_t n = std::min(b.size() - from, 1 + pick(64));
        const Bytes chunk(b.begin() + static_cast<long>(from), b.begin() + static_cast<long>(from + n));
        b.insert(b.begin() + static_cast<long>(pick(b.size() + 1)), chunk.begin(), chunk.end());
        break;
      }
      case 6: {
        const size_t width = rng() % 2 ? 4 : 8;
        if (b.size() < width) break;
        const size_t at = pick(b.size() - width + 1);
        uint64_t v = kInts[pick(sizeof kInts / sizeof kInts[0])];
        const bool big_endian = rng() % 2;
        for (size_t i = 0; i < width; ++i) {
          const size_t shift = 8 * (big_endian ? width - 1 - i : i);
          b[at + i] = static_cast<uint8_t>(v >> shift);
        }
        break;
      }
      case 7:
        if (!b.empty()) b.resize(pick(b.size()));
        break;
      case 8: {
        const Bytes& other = corpus[pick(corpus.size())].second;
        const size_t keep = pick(b.size() + 1);
        b.resize(keep);
        const size_t from = pick(other.size() + 1);
        b.insert(b.end(), other.begin() + static_cast<long>(from), other.end());
        break;
      }
      default: {
        // A run of digits (a number in text) replaced by an extreme or malformed number.
        std::vector<size_t> starts;
        for (size_t i = 0; i < b.size(); ++i)
          if (b[i] >= '0' && b[i] <= '9' && (i == 0 || b[i - 1] < '0' || b[i - 1] > '9')) starts.push_back(i);
        if (starts.empty()) break;
        const size_t at = starts[pick(starts.size())];
        size_t end = at;
        while (end < b.size() && ((b[end] >= '0' && b[end] <= '9') || b[end] == '.')) ++end;
        const char* num = kNumbers[pick(sizeof kNumbers / sizeof kNumbers[0])];
        b.erase(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(end));
        b.insert(b.begin() + static_cast<long>(at), num, num + std::strlen(num));
        break;
      }
    }
  }
}

int usage() {
  std::fprintf(stderr,
               "usage: squeeze_fuzz_replay TARGET [--mutations N] [--max-seconds S] [--seed K] "
               "[--only I] PATH...\nTARGET: onnx, sqz, config, idx, csv, npy, hdf5\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const Target* target = nullptr;
  for (const Target& t : kTargets)
    if (std::strcmp(t.name, argv[1]) == 0) target = &t;
  if (!target) {
    std::fprintf(stderr, "squeeze_fuzz_replay: unknown target '%s'\n", argv[1]);
    return usage();
  }
  long mutations = 2000, only = -1;
  double max_seconds = 2.0;
  uint64_t seed = 1;
  std::vector<std::string> paths;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--mutations" && has_value) {
      mutations = std::atol(argv[++i]);
    } else if (a == "--max-seconds" && has_value) {
      max_seconds = std::atof(argv[++i]);
    } else if (a == "--seed" && has_value) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--only" && has_value) {
      only = std::atol(argv[++i]);
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "squeeze_fuzz_replay: unknown option %s\n", a.c_str());
      return usage();
    } else {
      paths.push_back(a);
    }
  }
  const auto corpus = load_inputs(paths);
  if (corpus.empty()) {
    std::fprintf(stderr, "squeeze_fuzz_replay: no inputs in the given paths\n");
    return 2;
  }
  std::snprintf(g_failure_path, sizeof g_failure_path, "fuzz-failure-%s.bin", target->name);
  for (int sig : {SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL}) ::signal(sig, on_fatal_signal);

  double slowest = 0;
  std::string slowest_what;
  auto run = [&](const Bytes& input, const std::string& what) {
    const auto t0 = std::chrono::steady_clock::now();
    g_current = &input;
    std::snprintf(g_what, sizeof g_what, "%s: %s", target->name, what.c_str());
    try {
      target->run(input.data(), input.size());
    } catch (const std::exception& e) {
      save_failure(input);
      std::fprintf(stderr, "squeeze_fuzz_replay: %s: an exception other than squeeze::UserError "
                   "escaped: %s\n  input saved to %s\n", g_what, e.what(), g_failure_path);
      std::exit(1);
    } catch (...) {
      save_failure(input);
      std::fprintf(stderr, "squeeze_fuzz_replay: %s: a non-standard exception escaped\n  input saved to %s\n",
                   g_what, g_failure_path);
      std::exit(1);
    }
    g_current = nullptr;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (secs > slowest) {
      slowest = secs;
      slowest_what = what;
    }
  };

  const auto start = std::chrono::steady_clock::now();
  if (only < 0)
    for (const auto& [name, bytes] : corpus) run(bytes, name);
  long done = 0;
  for (long i = only < 0 ? 0 : only; i < (only < 0 ? mutations : only + 1); ++i) {
    if (only < 0 && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > max_seconds)
      break;
    std::mt19937_64 rng(seed + static_cast<uint64_t>(i));
    const auto& base = corpus[static_cast<size_t>(rng() % corpus.size())];
    Bytes input = base.second;
    mutate(input, corpus, rng);
    run(input, "mutation " + std::to_string(i) + " of " + base.first + " (--only " + std::to_string(i) + ")");
    ++done;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %zu inputs replayed, %ld mutations run (of %ld) in %.1f s, no failure; slowest input "
              "%.3f s (%s)\n", target->name, only < 0 ? corpus.size() : size_t{0}, done,
              only < 0 ? mutations : 1L, secs, slowest, slowest_what.c_str());
  return 0;
}
