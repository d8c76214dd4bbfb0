// Failure injection (issue 15, parts 3 and 4): a kill inside every write of a run, a full disk at
// every write (injected through SQUEEZE_FAULT, util/fs.h, and on a real small tmpfs where mount is
// permitted), output folders that cannot be written, and a data set larger than the memory a
// lowered RLIMIT_AS leaves. In every case no half-written file is under its final name, and
// `squeeze run CONFIG --resume` completes the run with the report an uninterrupted run gives.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/sqz.h"
#include "squeeze/models/zoo.h"
#include "testing/asserts.h"
#include "testing/cli.h"
#include "testing/sanitizers.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::cli;
using testing::read_all;
using testing::read_json;
using testing::TempDir;

// A baseline trained for one epoch, one experiment of two stages, an ONNX export: every kind of
// file a run writes (run.json, config.yaml, checkpoints, state/, exports, the three reports).
const char* kRun = R"(seed: 5
threads: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 1000, split: {val: 0.2, test: 0.3}}
baseline: {train: {epochs: 3, lr: 1.0e-2}}
experiments:
  - name: pq
    stages:
      - {method: prune, params: {ratio: 0.5}, finetune: {epochs: 1, lr: 1.0e-3}}
      - {method: quantize, params: {mode: ptq, weight_bits: 8, act_bits: 8}}
output: {latency: false, export: [onnx]}
)";

// report.json without what differs between two runs by nature (times, the machine).
json without_timings(const json& j) {
  static const std::set<std::string> kTimings = {"seconds", "latency_us", "speedup", "latency",
                                                 "latency_measurement", "environment", "step_ms",
                                                 "teacher_ms_per_step"};
  if (j.is_object()) {
    json out = json::object();
    for (const auto& [k, v] : j.items())
      if (!kTimings.count(k)) out[k] = without_timings(v);
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(without_timings(v));
    return out;
  }
  return j;
}

struct Child {
  bool killed = false;
  int exit_code = -1;
  std::string console;
};

// The squeeze program with `env` set ("K=V") and, when as_limit > 0, RLIMIT_AS lowered to it
// before exec.
Child run_child(const std::vector<std::string>& args, const std::vector<std::string>& env,
                const std::string& log, rlim_t as_limit = 0) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("SQUEEZE_BLAS_REEXEC");
    for (const auto& e : env) putenv(strdup(e.c_str()));
    if (as_limit > 0) {
      struct rlimit rl = {as_limit, as_limit};
      if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(126);
    }
    std::vector<std::string> all = {SQUEEZE_BINARY, "--quiet"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(SQUEEZE_BINARY, argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  Child c;
  c.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  c.console = read_all(log);
  return c;
}

// Every file under its final name in `dir` is whole: JSON parses, checkpoints load (their
// checksum covers every byte), ONNX files import, the HTML report ends. Returns the temporary
// files found.
std::vector<std::string> check_whole_files(const std::string& dir) {
  std::vector<std::string> temps;
  if (!fs::exists(dir)) return temps;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string p = e.path().string(), name = e.path().filename().string();
    SCOPED_TRACE(p);
    if (name.find(".tmp-") != std::string::npos) {
      temps.push_back(p);
      continue;
    }
    const std::string ext = e.path().extension().string();
    if (ext == ".json") EXPECT_NO_THROW(read_json(p));
    if (ext == ".sqz") EXPECT_NO_THROW(io::load_sqz(p));
    if (ext == ".onnx") EXPECT_NO_THROW(io::import_onnx(p));
    if (ext == ".html") {
      const std::string html = read_all(p);
      EXPECT_NE(html.find("</html>"), std::string::npos);
    }
    if (name == "config.yaml") EXPECT_NE(read_all(p).find("experiments:"), std::string::npos);
  }
  return temps;
}

class FailureInjection : public ::testing::Test {
 protected:
  // The uninterrupted run, once for the suite. It, the interrupted runs and their resumptions
  // are all the squeeze program: in this process OpenBLAS may have chosen other kernels than the
  // program picks for the CPU (env::use_native_blas_kernels), and losses would differ in the
  // last bits (seen in the sanitizer build).
  static const json& reference() {
    static const json ref = [] {
      TempDir dir;
      Child whole = run_child({"run", dir.write("w.yaml", kRun), "--out", dir.file("whole")}, {},
                              dir.file("console.txt"));
      EXPECT_EQ(whole.exit_code, 0) << whole.console;
      return whole.exit_code == 0 ? without_timings(read_json(dir.file("whole/report.json"))) : json();
    }();
    return ref;
  }
  void SetUp() override {
    cfg_ = dir_.write("w.yaml", kRun);
    reference_ = reference();
    ASSERT_FALSE(reference_.is_null());
  }
  // --resume completes the run in `out`: the same report, no temporary file left.
  void expect_resume_completes(const std::string& out) {
    Child resumed = run_child({"run", cfg_, "--out", out, "--resume"}, {}, dir_.file("resume.txt"));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.console;
    EXPECT_EQ(without_timings(read_json(out + "/report.json")), reference_);
    EXPECT_EQ(read_json(out + "/run.json")["state"], "finished");
    EXPECT_TRUE(check_whole_files(out).empty());
  }
  TempDir dir_;
  std::string cfg_;
  json reference_;
};

// One suite each (ctest runs suites as separate tests, in parallel, each with its own timeout).
class KillInWrite : public FailureInjection {};
class DiskFull : public FailureInjection {};

TEST_F(KillInWrite, EveryWriteLeavesNoPartialFileAndResumeCompletes) {
  int killed = 0;
  for (int n = 1; n <= 60; ++n) {
    SCOPED_TRACE("SIGKILL in write " + std::to_string(n));
    const std::string out = dir_.file("k" + std::to_string(n));
    Child c = run_child({"run", cfg_, "--out", out}, {"SQUEEZE_FAULT=kill-in-write:" + std::to_string(n)},
                        dir_.file("console.txt"));
    if (!c.killed) {
      // Past the run's last write: it finished normally.
      ASSERT_EQ(c.exit_code, 0) << c.console;
      EXPECT_EQ(without_timings(read_json(out + "/report.json")), reference_);
      break;
    }
    ++killed;
    // Killed halfway through a write: that write's temporary file is the only trace of it.
    EXPECT_EQ(check_whole_files(out).size(), 1u);
    expect_resume_completes(out);
  }
  // Every run writes at least run.json three times, config.yaml, two checkpoints, a state
  // checkpoint, an export and three reports.
  EXPECT_GE(killed, 10);
  std::cout << "[ info ] a run of this config makes " << killed << " atomic writes\n";
}

TEST_F(DiskFull, EveryWriteFailsCleanlyAndResumeCompletes) {
  int failed = 0;
  for (int n = 1; n <= 60; ++n) {
    SCOPED_TRACE("ENOSPC in write " + std::to_string(n));
    const std::string out = dir_.file("f" + std::to_string(n));
    Child c = run_child({"run", cfg_, "--out", out}, {"SQUEEZE_FAULT=write-error:" + std::to_string(n)},
                        dir_.file("console.txt"));
    if (c.exit_code == 0) break;
    ++failed;
    EXPECT_EQ(c.exit_code, 1) << c.console;  // a runtime failure, not bad usage
    EXPECT_NE(c.console.find("No space left on device"), std::string::npos) << c.console;
    EXPECT_NE(c.console.find("cannot write '" + out), std::string::npos) << c.console;
    EXPECT_EQ(c.console.find(".tmp-"), std::string::npos) << c.console;  // names the real file
    EXPECT_TRUE(check_whole_files(out).empty());  // the temporary file was removed
    expect_resume_completes(out);
  }
  EXPECT_GE(failed, 10);
}

TEST(FaultInjectionSetting, AMalformedValueIsRefused) {
  TempDir dir;
  Child c = run_child({"inspect", "zoo:mlp"}, {"SQUEEZE_FAULT=kill-in-write"}, dir.file("c.txt"));
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_NE(c.console.find("SQUEEZE_FAULT: 'kill-in-write' is not a fault (valid: "
                           "write-error:N, kill-in-write:N"),
            std::string::npos)
      << c.console;
}

// A real full disk: a 64 KB tmpfs as the output folder, then made larger for the resume.
TEST_F(DiskFull, RealFullTmpfsThenResumeAfterSpaceIsFreed) {
  const std::string mnt = dir_.file("small");
  fs::create_directories(mnt);
  if (::mount("squeeze-test", mnt.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "mounting a tmpfs is not permitted here (" << std::strerror(errno)
                 << "); the injected variant (DiskFull.EveryWrite...) covers it";
  struct Unmount {
    std::string m;
    ~Unmount() { ::umount2(m.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string out = mnt + "/out";
  Child c = run_child({"run", cfg_, "--out", out}, {}, dir_.file("console.txt"));
  EXPECT_EQ(c.exit_code, 1) << c.console;
  EXPECT_NE(c.console.find("No space left on device"), std::string::npos) << c.console;
  EXPECT_TRUE(check_whole_files(out).empty());
  ASSERT_EQ(::mount("squeeze-test", mnt.c_str(), "tmpfs", MS_REMOUNT, "size=16m"), 0)
      << std::strerror(errno);
  expect_resume_completes(out);
}

// --- output folders that cannot be written: refused before any work --------------------------

void expect_unwritable_refused(const std::string& cfg, const std::string& out,
                               const std::vector<std::string>& words) {
  auto r = cli({"run", cfg, "--out", out});
  EXPECT_EQ(r.code, 2) << r.err;
  for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << w << " in " << r.err;
  EXPECT_NE(r.err.find("choose a folder you can write"), std::string::npos) << r.err;
}

TEST(UnwritableOutput, RefusedBeforeAnyWorkWithTheFolderNamed) {
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kRun);
  dir.write("plain", "a file");
  expect_unwritable_refused(cfg, dir.file("plain/out"),
                            {"--out '" + dir.file("plain/out") + "' cannot be used",
                             "'" + dir.file("plain") + "' is a file, not a folder"});
  expect_unwritable_refused(cfg, dir.file("plain"), {"is a file, not a folder"});
  expect_unwritable_refused(cfg, "/proc/squeeze-out", {"--out '/proc/squeeze-out' cannot be used",
                                                        "cannot create folder"});
  expect_unwritable_refused(cfg, "/proc/self", {"cannot create a file in it"});
  // output.dir of the config is named as such.
  std::string yaml = kRun;
  yaml.replace(yaml.find("output: {"), 9, "output: {dir: " + dir.file("plain/x") + ", ");
  const std::string cfg2 = dir.write("w2.yaml", yaml);
  auto r = cli({"run", cfg2});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("output.dir '" + dir.file("plain/x") + "' cannot be used"),
            std::string::npos) << r.err;
  EXPECT_EQ(read_all(dir.file("plain")), "a file");
  // Must not fire: a folder to be created, two levels deep; the check leaves nothing behind when
  // a later check fails.
  const std::string deep = dir.file("new/deeper");
  auto bad = cli({"run", cfg, "--out", deep, "--set", "experiments[0].stages[0].params.ratio=7"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.err.find("cannot be used"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir.file("new")));
}

TEST(UnwritableOutput, ReadOnlyMountIsRefused) {
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kRun);
  const std::string ro = dir.file("ro");
  fs::create_directories(ro);
  if (::mount(ro.c_str(), ro.c_str(), nullptr, MS_BIND, nullptr) != 0)
    GTEST_SKIP() << "bind mounts are not permitted here (" << std::strerror(errno) << ")";
  struct Unmount {
    std::string m;
    ~Unmount() { ::umount2(m.c_str(), MNT_DETACH); }
  } unmount{ro};
  ASSERT_EQ(::mount(nullptr, ro.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0)
      << std::strerror(errno);
  expect_unwritable_refused(cfg, ro, {"cannot create a file in it: Read-only file system"});
  expect_unwritable_refused(cfg, ro + "/sub", {"cannot create folder", "Read-only file system"});
}

// --- resource limits ----------------------------------------------------------------------------

int64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return -1;
}

// A valid NPY file of float32 `rows` x `cols` whose data is a hole (no disk space taken).
void write_sparse_npy(const std::string& path, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string s("\x93NUMPY\x01\x00", 8);
  s += static_cast<char>(header.size() & 0xff);
  s += static_cast<char>(header.size() >> 8);
  s += header;
  {
    std::ofstream(path, std::ios::binary) << s;
  }
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(s.size() + rows * cols * 4)), 0);
}

TEST(ResourceLimits, DataLargerThanRlimitAsIsRefusedWithTheSizesBeforeWork) {
  if (testing::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space at start: no program runs under "
                    "a 6 GB RLIMIT_AS (make test runs this test)";
  TempDir dir;
  const rlim_t limit = rlim_t{6} << 30;  // libtorch's address space fits, 16 GB of data does not
  write_sparse_npy(dir.file("x.npy"), 1 << 22, 1024);  // 16 GiB of float32
  write_sparse_npy(dir.file("small.npy"), 200, 16);
  {
    std::string s("\x93NUMPY\x01\x00", 8);
    std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (200,), }";
    while ((10 + header.size() + 1) % 64) header += ' ';
    header += '\n';
    s += static_cast<char>(header.size());
    s += '\0';
    std::string labels(200 * 8, '\0');
    for (int i = 1; i < 200; i += 2) labels[8 * i] = 1;  // classes 0 and 1, little-endian int64
    std::ofstream(dir.file("y.npy"), std::ios::binary) << s + header + labels;
  }
  auto config = [&](const std::string& x) {
    return "seed: 1\nmodel: {zoo: mlp, params: {in_features: 16, num_classes: 2}}\n"
           "data: {dataset: npy, features: " + x + ", labels: " + dir.file("y.npy") +
           ", split: {val: 0.2, test: 0.2}}\n"
           "experiments: [{name: p, stages: [{method: prune, params: {ratio: 0.5}}]}]\n"
           "output: {latency: false}\n";
  };
  Child big = run_child({"run", dir.write("big.yaml", config(dir.file("x.npy"))), "--out", dir.file("big")},
                        {}, dir.file("big.txt"), limit);
  EXPECT_EQ(big.exit_code, 2) << big.console;
  for (const char* w : {"x.npy", "(shape (4194304, 1024) of '<f4')", "needs", "34359738368 bytes",
                        "of memory, but only", "store a subset in a smaller file"})
    EXPECT_NE(big.console.find(w), std::string::npos) << w << " in " << big.console;
  if (mem_available() > static_cast<int64_t>(limit))
    EXPECT_NE(big.console.find("limit: RLIMIT_AS (ulimit -v) of"), std::string::npos)
        << big.console;
  EXPECT_EQ(big.console.find("bad_alloc"), std::string::npos) << big.console;
  EXPECT_FALSE(fs::exists(dir.file("big/report.json")));
  // Must not fire: the same run on data that fits, under the same limit.
  Child small = run_child({"run", dir.write("small.yaml", config(dir.file("small.npy"))), "--out",
                           dir.file("small")},
                          {}, dir.file("small.txt"), limit);
  EXPECT_EQ(small.exit_code, 0) << small.console;
  EXPECT_TRUE(fs::exists(dir.file("small/report.json")));
}

// A checkpoint whose first tensor claims 2^31 elements, all zero, stored sparse: a 256 MB bitmap
// (a hole on disk) that decodes to 8 GB of float32.
void write_sparse_giant_sqz(const std::string& good_path, const std::string& path) {
  const std::string good = read_all(good_path);
  uint64_t hlen;
  std::memcpy(&hlen, good.data() + 12, 8);
  auto header = nlohmann::ordered_json::parse(good.substr(20, hlen));
  const size_t payload_start = (20 + hlen + 63) / 64 * 64;
  std::string payload = good.substr(payload_start, good.size() - 8 - payload_start);
  const uint64_t bitmap = uint64_t{1} << 28;
  auto& t = header["tensors"][0];
  t["shape"] = {int64_t{1} << 31};
  t["encoding"] = "sparse_f32";
  t["bits"] = 32;
  t["nnz"] = 0;
  t["offset"] = payload.size();
  t["length"] = bitmap;
  header["payload_bytes"] = payload.size() + bitmap;
  const std::string text = header.dump();
  std::string head = good.substr(0, 12);
  const uint64_t len = text.size();
  head.append(reinterpret_cast<const char*>(&len), 8);
  head += text;
  head.resize((head.size() + 63) / 64 * 64, '\0');
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : text + payload) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  for (uint64_t i = 0; i < bitmap; ++i) h *= 0x100000001b3ULL;  // zero bytes: the xor is a no-op
  {
    std::ofstream out(path, std::ios::binary);
    out << head << payload;
  }
  const off_t end = static_cast<off_t>(head.size() + payload.size() + bitmap);
  ASSERT_EQ(::truncate(path.c_str(), end), 0);
  std::ofstream out(path, std::ios::binary | std::ios::in | std::ios::out);
  out.seekp(end);
  out.write(reinterpret_cast<const char*>(&h), 8);
}

TEST(ResourceLimits, ModelLargerThanRlimitAsIsRefusedWithTheSizes) {
  if (testing::kAddressSanitizer)
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space at start: no program runs under "
                    "a 6 GB RLIMIT_AS (make test runs this test)";
  TempDir dir;
  const rlim_t limit = rlim_t{6} << 30;
  const std::string good = dir.file("jet.sqz");
  io::save_sqz(models::build("jet_tagger", {}, 0), good);
  write_sparse_giant_sqz(good, dir.file("giant.sqz"));
  Child big = run_child({"inspect", dir.file("giant.sqz")}, {}, dir.file("big.txt"), limit);
  EXPECT_EQ(big.exit_code, 2) << big.console;
  for (const char* w : {"giant.sqz", "tensors, decoded) needs 8.59 GB", "of memory, but only"})
    EXPECT_NE(big.console.find(w), std::string::npos) << w << " in " << big.console;
  EXPECT_EQ(big.console.find("bad_alloc"), std::string::npos) << big.console;
  // Must not fire: the checkpoint it was made from, under the same limit.
  Child small = run_child({"inspect", good}, {}, dir.file("small.txt"), limit);
  EXPECT_EQ(small.exit_code, 0) << small.console;
}

}  // namespace
}  // namespace squeeze
