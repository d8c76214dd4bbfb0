// Data-parallel fine-tuning (train/distributed.h, `squeeze run --nproc N`): two processes give
// the weights one process gives with the same global batch; only rank 0 writes; a rank killed
// mid-training stops the other with an error naming it, and --resume continues; bad flags are
// refused with exit code 2 before anything starts. Runs on loopback only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli.h"
#include "launch.h"
#include "squeeze/io/sqz.h"
#include "squeeze/train/distributed.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::cli;
using testing::CliResult;
using testing::TempDir;

json read_json(const std::string& path) { return json::parse(std::ifstream(path)); }

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// An mlp on synthetic jets, one thread, no dropout: a baseline trained with SGD, then pruning
// with fine-tuning, and QAT (its observers follow the weights and a calibration batch) with
// fine-tuning. batch_size 25 (the global batch) splits 12 / 13 over two ranks, and the training
// split (360 samples) ends with a partial batch.
const char* kEquivalence = R"(seed: 3
threads: 1
model: {zoo: mlp, params: {hidden: "32,16"}}
data: {dataset: synthetic-jets, samples: 600, batch_size: 25, split: {val: 0.2, test: 0.2}}
baseline: {train: {epochs: 2, optimizer: sgd, lr: 0.05}}
experiments:
  - name: prune
    stages:
      - {method: prune, params: {kind: unstructured, ratio: 0.5}, finetune: {epochs: 2, lr: 1.0e-3}}
  - name: qat
    stages:
      - {method: quantize, params: {mode: qat, weight_bits: 8, act_bits: 8},
         finetune: {epochs: 1, lr: 5.0e-4}}
output: {latency: false}
)";

// The files of a run's folder, relative, without the ones that name the machine or the time.
std::set<std::string> files_of(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.insert(fs::relative(e.path(), dir).string());
  return out;
}

// The parameters of a checkpoint by "node.param".
std::map<std::string, ir::Param> params_of(const std::string& path) {
  std::map<std::string, ir::Param> out;
  ir::Graph g = io::load_sqz(path);
  for (const auto& n : g.nodes)
    for (const auto& [k, p] : n.params) out[n.name + "." + k] = p;
  return out;
}

// Runs the squeeze program with `args` and `env` ("A=1 B=2"), output into `log`; returns the pid.
pid_t spawn(const std::vector<std::string>& args, const std::string& log,
            const std::vector<std::string>& env = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("SQUEEZE_BLAS_REEXEC");
    for (const auto& kv : env) putenv(strdup(kv.c_str()));
    std::vector<std::string> all = {SQUEEZE_BINARY};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(SQUEEZE_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid` for at most `seconds`; the exit status, or -1 on timeout (the child is then
// killed).
int wait_for(pid_t pid, double seconds, double* took = nullptr) {
  const auto t0 = std::chrono::steady_clock::now();
  while (true) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      if (took) *took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return st;
    }
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The child of `parent` whose environment holds RANK=rank; -1 when there is none (yet).
pid_t rank_pid(pid_t parent, int rank) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid != parent) continue;
    const std::string env = read_all((e.path() / "environ").string());
    const std::string want = "RANK=" + std::to_string(rank);
    for (size_t at = 0; at < env.size();) {
      const size_t end = env.find('\0', at);
      if (env.substr(at, end - at) == want) return static_cast<pid_t>(std::stol(name));
      if (end == std::string::npos) break;
      at = end + 1;
    }
  }
  return -1;
}

// A listening socket on a loopback port (the port "in use").
struct BusyPort {
  int fd = -1;
  int port = 0;
  BusyPort() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd, 1);
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~BusyPort() { close(fd); }
};

TEST(DataParallel, ShardsCoverTheBatchOnce) {
  for (int64_t n : {0, 1, 2, 5, 25, 128}) {
    for (int w : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < w; ++r) {
        int64_t b = 0, e = 0;
        dist::shard(n, r, w, b, e);
        EXPECT_EQ(b, next) << n << " " << w << " " << r;
        EXPECT_LE(e - b, (n + w - 1) / w);
        EXPECT_GE(e - b, n / w);
        next = e;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(DataParallel, TwoProcessesMatchOneWithTheSameGlobalBatch) {
  if (!dist::available()) GTEST_SKIP() << "built without Gloo (libgloo-dev)";
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kEquivalence);
  // TMPDIR: rank 1 keeps its checkpoints in a private folder there, removed at its end.
  fs::create_directories(dir.file("tmp"));
  const std::vector<std::string> env = {"TMPDIR=" + dir.file("tmp")};
  pid_t one = spawn({"run", cfg, "--out", dir.file("one")}, dir.file("one.txt"), env);
  ASSERT_EQ(wait_for(one, 600), 0) << read_all(dir.file("one.txt"));
  pid_t two = spawn({"run", cfg, "--out", dir.file("two"), "--nproc", "2"}, dir.file("two.txt"), env);
  ASSERT_EQ(wait_for(two, 600), 0) << read_all(dir.file("two.txt"));
  const std::string log2 = read_all(dir.file("two.txt"));
  EXPECT_NE(log2.find("data-parallel (2 processes, global batch 25)"), std::string::npos) << log2;
  // One comparison table: rank 1 prints none.
  EXPECT_EQ(log2.find("report: "), log2.rfind("report: ")) << log2;

  // Baseline and pruned model: the same weights up to float rounding (the gradient of a 25-sample
  // mean summed from 12 + 13-sample parts); masks the same.
  for (const std::string model : {"baseline", "prune"}) {
    auto a = params_of(dir.file("one/models/" + model + ".sqz"));
    auto b = params_of(dir.file("two/models/" + model + ".sqz"));
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, p] : a) {
      const at::Tensor& q = b.at(name).value;
      EXPECT_TRUE(at::allclose(p.value, q, 1e-4, 1e-5))
          << model << " " << name << ": max difference "
          << (p.value - q).abs().max().item<double>();
      EXPECT_EQ(p.value.eq(0).sum().item<int64_t>(), q.eq(0).sum().item<int64_t>()) << name;
    }
  }
  // QAT: the same scales; weights on the same grid, a rounding tie may move one weight a step.
  {
    auto a = params_of(dir.file("one/models/qat.sqz"));
    auto b = params_of(dir.file("two/models/qat.sqz"));
    int quantized = 0;
    for (const auto& [name, p] : a) {
      const ir::Param& q = b.at(name);
      ASSERT_EQ(p.qspec.has_value(), q.qspec.has_value()) << name;
      if (!p.qspec) continue;
      ++quantized;
      EXPECT_TRUE(at::allclose(p.qspec->scale, q.qspec->scale, 1e-4, 1e-7)) << name;
      const at::Tensor diff = (p.value.to(at::kFloat) - q.value.to(at::kFloat)).abs();
      EXPECT_LE(diff.gt(1e-6).sum().item<int64_t>(), std::max<int64_t>(1, p.value.numel() / 100))
          << name;
    }
    EXPECT_GT(quantized, 0);
  }
  // The report's accuracies agree (a sample may flip at a decision boundary).
  const json r1 = read_json(dir.file("one/report.json")), r2 = read_json(dir.file("two/report.json"));
  EXPECT_NEAR(r1["baseline"]["accuracy"].get<double>(), r2["baseline"]["accuracy"].get<double>(),
              2.0 / 120.0);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_NEAR(r1["results"][i]["accuracy"].get<double>(),
                r2["results"][i]["accuracy"].get<double>(), 2.0 / 120.0);
  const json& procs = r2["environment"]["data_parallel_processes"];
  EXPECT_TRUE(procs == 2 || procs == "2") << procs;
  EXPECT_FALSE(r1["environment"].contains("data_parallel_processes"));
  // Rank 0 wrote what one process writes, rank 1 nothing (its private folder is gone).
  EXPECT_EQ(files_of(dir.file("one")), files_of(dir.file("two")));
  EXPECT_TRUE(fs::is_empty(dir.file("tmp")));
}

// A run that trains long enough to be killed in the middle of its experiment's fine-tuning.
const char* kLong = R"(seed: 5
threads: 1
model: {zoo: mlp, params: {hidden: "256,256"}}
data: {dataset: synthetic-jets, samples: 40000, batch_size: 32, split: {val: 0.05, test: 0.05}}
baseline: {train: {epochs: 1, max_steps: 30}}
experiments:
  - name: p
    stages: [{method: prune, params: {ratio: 0.5}, finetune: {epochs: 4, lr: 1.0e-3}}]
output: {latency: false}
)";

TEST(DataParallel, KilledRankStopsTheOtherWithItsNameAndResumeContinues) {
  if (!dist::available()) GTEST_SKIP() << "built without Gloo (libgloo-dev)";
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kLong);
  const std::string out = dir.file("out");
  pid_t parent = spawn({"run", cfg, "--out", out, "--nproc", "2", "--dist-timeout", "20"},
                       dir.file("killed.txt"));
  // Once the baseline is in the journal, the experiment's fine-tuning is under way.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  bool baseline_done = false;
  while (!baseline_done && std::chrono::steady_clock::now() < deadline) {
    const std::string journal = read_all(out + "/run.json");
    baseline_done = journal.find("\"key\": \"baseline\"") != std::string::npos ||
                    journal.find("\"key\":\"baseline\"") != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(baseline_done) << read_all(dir.file("killed.txt"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const pid_t r1 = rank_pid(parent, 1);
  ASSERT_GT(r1, 0) << read_all(dir.file("killed.txt"));
  kill(r1, SIGKILL);
  double took = 0.0;
  // Rank 0 sees the loss at its next all-reduce; the parent then reports both.
  const int st = wait_for(parent, 120, &took);
  const std::string log = read_all(dir.file("killed.txt"));
  ASSERT_NE(st, -1) << "the run hung after rank 1 was killed:\n" << log;
  ASSERT_TRUE(WIFEXITED(st)) << log;
  EXPECT_EQ(WEXITSTATUS(st), 1) << log;
  EXPECT_NE(log.find("rank 1 (pid " + std::to_string(r1) + ") is gone"), std::string::npos) << log;
  EXPECT_NE(log.find("was killed by signal 9"), std::string::npos) << log;
  EXPECT_NE(log.find("--nproc 2"), std::string::npos) << log;  // the resume command
  EXPECT_FALSE(fs::exists(out + "/report.json"));

  pid_t again = spawn({"run", cfg, "--out", out, "--nproc", "2", "--resume"}, dir.file("resumed.txt"));
  ASSERT_EQ(wait_for(again, 600), 0) << read_all(dir.file("resumed.txt"));
  const std::string resumed = read_all(dir.file("resumed.txt"));
  EXPECT_NE(resumed.find("baseline: finished by an earlier run, loaded"), std::string::npos) << resumed;
  const json rep = read_json(out + "/report.json");
  EXPECT_EQ(rep["results"].size(), 1u);
  EXPECT_EQ(read_json(out + "/run.json")["state"], "finished");
}

TEST(DataParallel, OneProcessWhenNotAsked) {
  // WORLD_SIZE=1 (torchrun with one process) and --nproc 1 run in this process, as without them.
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", R"(seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 400, split: {val: 0.2, test: 0.2}}
experiments: [{name: p, stages: [{method: prune, params: {ratio: 0.5}}]}]
output: {latency: false}
)");
  setenv("WORLD_SIZE", "1", 1);
  setenv("RANK", "0", 1);
  CliResult r = cli({"run", cfg, "--out", dir.file("a")});
  unsetenv("WORLD_SIZE");
  unsetenv("RANK");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(dist::active());
  r = cli({"run", cfg, "--out", dir.file("b"), "--nproc", "1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir.file("b/report.json")));
  const json rep = read_json(dir.file("b/report.json"));
  EXPECT_FALSE(rep["environment"].contains("data_parallel_processes"));
}

TEST(DataParallel, BadFlagsAreRefusedBeforeAnythingStarts) {
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", R"(seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 400, split: {val: 0.2, test: 0.2}}
experiments: [{name: p, stages: [{method: prune, params: {ratio: 0.5}}]}]
output: {latency: false}
)");
  const std::string out = dir.file("out");
  struct Case {
    std::vector<std::string> flags;
    std::vector<std::string> words;
  };
  const std::vector<Case> cases = {
      {{"--nproc", "0"}, {"--nproc: 0", "1 or more"}},
      {{"--nproc", "2", "--rank", "0", "--world-size", "2"}, {"--nproc", "--rank"}},
      {{"--rank", "2", "--world-size", "2"}, {"--rank: 2", "0 to 1"}},
      {{"--rank", "0"}, {"--rank and --world-size go together"}},
      {{"--world-size", "0", "--rank", "0"}, {"--world-size: 0"}},
      {{"--rank", "0", "--world-size", "2", "--master", "localhost"}, {"--master", "malformed", "ADDR:PORT"}},
      {{"--rank", "0", "--world-size", "2", "--master", "host:99999"}, {"--master", "99999", "1 to 65535"}},
      {{"--rank", "0", "--world-size", "2", "--master", ":29500"}, {"--master", "no address"}},
      {{"--rank", "0", "--world-size", "2", "--master", "h:x1"}, {"--master", "no valid port"}},
      {{"--master", "127.0.0.1:29500"}, {"--master: only with --nproc"}},
      {{"--rank", "0", "--world-size", "2", "--dist-timeout", "0"}, {"--dist-timeout: 0"}},
      // In-process there is no program to start (the squeeze executable is).
      {{"--nproc", "2"}, {"--nproc", "squeeze program"}},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"run", cfg, "--out", out};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    CliResult r = cli(args);
    std::string shown;
    for (const auto& f : c.flags) shown += f + " ";
    EXPECT_EQ(r.code, 2) << shown << r.err;
    for (const auto& w : c.words) EXPECT_NE(r.err.find(w), std::string::npos) << shown << w << " in: " << r.err;
    EXPECT_FALSE(fs::exists(out)) << shown;
  }
  // torchrun's variables are checked too.
  setenv("WORLD_SIZE", "two", 1);
  CliResult r = cli({"run", cfg, "--out", out});
  unsetenv("WORLD_SIZE");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("WORLD_SIZE='two'"), std::string::npos) << r.err;
  EXPECT_FALSE(dist::active());
}

TEST(DataParallel, PortInUseAndPipelinesAreRefused) {
  if (!dist::available()) GTEST_SKIP() << "built without Gloo (libgloo-dev)";
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", R"(seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 400, split: {val: 0.2, test: 0.2}}
experiments: [{name: p, stages: [{method: prune, params: {ratio: 0.5}}]}]
output: {latency: false}
)");
  BusyPort busy;
  const std::string master = "127.0.0.1:" + std::to_string(busy.port);
  // Rank 0 started by hand on a port in use.
  CliResult r = cli({"run", cfg, "--out", dir.file("a"), "--rank", "0", "--world-size", "2",
                     "--master", master});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(busy.port)), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("a")));
  // --nproc with that port: refused by the launcher before any rank starts.
  CliResult b = testing::run_binary("run " + cfg + " --out " + dir.file("b") + " --nproc 2 --master " + master);
  EXPECT_EQ(b.code, 2) << b.out;
  EXPECT_NE(b.out.find("in use"), std::string::npos) << b.out;
  EXPECT_FALSE(fs::exists(dir.file("b")));
  // A pipeline runs in one process.
  const std::string pipe = dir.write("p.yaml", R"(seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 400, split: {val: 0.2, test: 0.2}}
pipeline:
  type: validation
  guard: {max_drop: 0.5}
  steps: [{method: prune, params: {ratio: 0.5}}]
output: {latency: false}
)");
  CliResult p = testing::run_binary("run " + pipe + " --out " + dir.file("c") + " --nproc 2");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("pipeline.type: validation runs in one process"), std::string::npos) << p.out;
  EXPECT_FALSE(fs::exists(dir.file("c")));
}

}  // namespace
}  // namespace squeeze
