// A shared study end to end, on SQLite and on PostgreSQL: three `squeeze run CONFIG --worker`
// processes draw trials from one study; one of them is killed with SIGKILL in the middle of a
// trial. The others finish the budget: no trial is lost, none is run twice, and the killed
// worker's trial is re-queued (retries 1, same parameters) and run by a survivor.
//
// Workers run on loopback only; the PostgreSQL study lives on the private server of
// testing/postgres.h (skipped, saying why, only where the server binaries are absent).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "pipeline/pipeline_test_util.h"
#include "squeeze/pipeline/study.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/postgres.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using pipeline::OpenMode;
using pipeline::Trial;
using pipeline::TrialState;
using testing::PostgresServer;
using testing::read_all;
using testing::read_json;
using testing::TempDir;

enum class Backend { kSqlite, kPostgres };

class SharedStudy : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() != Backend::kPostgres) return;
    std::string why;
    try {
      pg_ = PostgresServer::instance(&why);
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    if (!pg_) GTEST_SKIP() << why;
  }
  // PostgreSQL: with a password (the test server trusts loopback, so it is not checked), which
  // no file the workers write may show.
  std::string store() {
    if (GetParam() == Backend::kSqlite) return dir.file("shared/study.db");
    std::string url = pg_->create_database();
    return url.insert(url.find('@'), std::string(":") + kPassword);
  }
  static constexpr const char* kPassword = "pw-never-shown";

  TempDir dir;
  PostgresServer* pg_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(SQLite, SharedStudy, ::testing::Values(Backend::kSqlite));
INSTANTIATE_TEST_SUITE_P(PostgreSQL, SharedStudy, ::testing::Values(Backend::kPostgres));

// threads: 1, pruner off: every trial runs to completion, so the count of complete trials is
// the budget.
std::string config(const std::string& study, int trials) {
  return msg(R"(seed: 3
threads: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 3000, split: {val: 0.1, test: 0.2}}
baseline: {train: {epochs: 2, lr: 3.0e-3}}
output: {latency: false}
pipeline:
  type: autotune
  guard: {max_drop: 0.05, relative: true}
  trials: )",
             trials, R"(
  study: ")", study, R"("
  sampler: {startup_trials: 2}
  pruner: none
  stages:
    - method: prune
      params: {kind: unstructured, ratio: {float: [0.3, 0.9]}}
      finetune: {epochs: 1, lr: {log_float: [1.0e-4, 1.0e-2]}}
    - method: quantize
      params: {mode: qat, weight_bits: {int: [2, 8]}, act_bits: 8}
      finetune: {epochs: 1}
)");
}

pid_t spawn(const std::vector<std::string>& args, const std::string& err_path) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = freopen(err_path.c_str(), "w", stderr);
    (void)f;
    FILE* o = freopen("/dev/null", "w", stdout);
    (void)o;
    std::vector<char*> argv;
    std::string bin = SQUEEZE_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string host_name() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return host;
}

TEST_P(SharedStudy, ThreeWorkersOneKilledMidTrialLoseAndRepeatNoTrial) {
  constexpr int kTrials = 6;
  const std::string location = store();
  const std::string cfg = dir.write("tune.yaml", config(location, kTrials));
  const std::vector<std::string> args = {"run", cfg, "--out", dir.file("out"), "--worker",
                                         "--quiet"};
  std::map<pid_t, std::string> workers;   // pid -> "host:pid", the study's name for it
  struct KillLeftovers {   // a failed assertion leaves no worker running
    std::map<pid_t, std::string>& pids;
    ~KillLeftovers() {
      // Only children not yet waited for (waitpid 0): a reaped pid may belong to another now.
      for (const auto& entry : pids)
        if (waitpid(entry.first, nullptr, WNOHANG) == 0) {
          kill(entry.first, SIGKILL);
          waitpid(entry.first, nullptr, 0);
        }
    }
  } leftovers{workers};
  for (int w = 0; w < 3; ++w) {
    const pid_t pid = spawn(args, dir.file("err" + std::to_string(w) + ".txt"));
    workers[pid] = host_name() + ":" + std::to_string(pid);
  }
  auto errors = [&] {
    std::string all;
    for (int w = 0; w < 3; ++w) all += read_all(dir.file("err" + std::to_string(w) + ".txt"));
    return all;
  };

  // The first worker seen holding a running trial is the victim.
  pipeline::StudySpec load;
  load.name = "autotune";
  pid_t victim = -1;
  int64_t victim_trial = -1;
  std::map<std::string, double> victim_params;
  std::unique_ptr<pipeline::Study> watch;
  for (int i = 0; i < 6000 && victim < 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    try {
      if (!watch) watch = pipeline::open_study(location, load, OpenMode::kLoad);
    } catch (const Error&) {
      continue;   // no worker has created the study yet
    }
    for (const Trial& t : watch->trials()) {
      if (t.state != TrialState::kRunning) continue;
      for (const auto& [pid, name] : workers)
        if (t.worker == name) {
          victim = pid;
          victim_trial = t.number;
          victim_params = t.params;
        }
      if (victim >= 0) break;
    }
    bool any_ended = false;
    for (const auto& entry : workers) {
      int status = 0;
      any_ended |= waitpid(entry.first, &status, WNOHANG) == entry.first;
    }
    ASSERT_FALSE(any_ended) << "a worker ended before any trial ran:\n" << errors();
  }
  ASSERT_GE(victim, 0) << "no worker held a running trial within 5 minutes:\n" << errors();
  kill(victim, SIGKILL);
  EXPECT_EQ(wait_exit(victim), 128 + SIGKILL);
  for (const auto& entry : workers)
    if (entry.first != victim) EXPECT_EQ(wait_exit(entry.first), 0) << errors();

  const std::vector<Trial> trials = watch->trials();
  ASSERT_EQ(trials.size(), static_cast<size_t>(kTrials));
  for (int n = 0; n < kTrials; ++n) {
    const Trial& t = trials[static_cast<size_t>(n)];
    EXPECT_EQ(t.number, n);
    EXPECT_EQ(t.state, TrialState::kComplete) << "trial " << n;
    EXPECT_EQ(t.values.size(), 1u) << "trial " << n;
  }
  // The killed worker's trial was given to another worker with the same parameters, once.
  const Trial& retried = trials.at(static_cast<size_t>(victim_trial));
  EXPECT_EQ(retried.attrs.count("retries") ? retried.attrs.at("retries") : "", "1");
  EXPECT_EQ(retried.params, victim_params);
  EXPECT_NE(retried.worker, workers[victim]);
  for (const Trial& t : trials)
    if (t.number != victim_trial) EXPECT_EQ(t.attrs.count("retries"), 0u) << t.number;

  // Who evaluated what: each survivor's report lists the trials it measured; the victim wrote
  // no report, and the trials it finished before the kill name it in the study.
  std::map<int64_t, int> evaluations;
  std::set<std::string> reports;
  for (const auto& entry : fs::directory_iterator(dir.file("out/workers"))) {
    const fs::path report = entry.path() / "report.json";
    if (!fs::exists(report)) continue;
    reports.insert(entry.path().filename().string());
    const json rep = read_json(report.string());   // kept: the loop reads into it
    for (const auto& t : rep["pipeline"]["trials"]) {
      if (t["candidate"].is_null()) continue;
      const int64_t n = t["number"].get<int64_t>();
      ++evaluations[n];
      EXPECT_EQ(trials.at(static_cast<size_t>(n)).worker,
                [&] {
                  std::string w = entry.path().filename().string();
                  const auto dash = w.rfind('-');
                  return w.replace(dash, 1, ":");
                }())
          << "trial " << n;
    }
  }
  EXPECT_EQ(reports.size(), 2u) << ::testing::PrintToString(reports);
  for (const auto& entry : fs::recursive_directory_iterator(dir.file("out")))
    if (entry.is_regular_file())
      EXPECT_EQ(read_all(entry.path().string()).find(kPassword), std::string::npos)
          << entry.path();
  EXPECT_EQ(errors().find(kPassword), std::string::npos) << errors();
  for (const Trial& t : trials)
    if (t.worker == workers[victim]) {
      EXPECT_NE(t.number, victim_trial);
      ++evaluations[t.number];
    }
  for (int n = 0; n < kTrials; ++n)
    EXPECT_EQ(evaluations[n], 1) << "trial " << n << " evaluated " << evaluations[n] << " times";
}

}  // namespace
}  // namespace squeeze
