// The autotune pipeline end to end on tiny data: a search that completes its trials and writes a
// best.yaml that runs; resume after a budget change, after SIGKILL and after SIGINT without
// repeating a finished trial and with the same proposals as an uninterrupted run; two worker
// processes sharing one study; the median pruner stopping hopeless trials; and the bad inputs
// rejected with exit code 2 before any training.
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

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "squeeze/pipeline/autotune.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/study.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::cli;
using testing::read_all;
using testing::read_json;
using testing::TempDir;

// threads: 1 so that training is bit-reproducible from process to process (the resume tests
// compare the proposals of two runs, which depend on the earlier trials' values).
const char* kHead = R"(seed: 3
threads: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 3000, split: {val: 0.1, test: 0.2}}
baseline: {train: {epochs: 2, lr: 3.0e-3}}
output: {latency: false}
)";

// Two startup trials, so that trials 2, 3, ... are TPE proposals made from the history.
std::string search(int trials, const std::string& extra = "") {
  return msg(R"(pipeline:
  type: autotune
  guard: {max_drop: 0.05, relative: true}
  trials: )",
             trials, R"(
  sampler: {startup_trials: 2}
)",
             extra, R"(  stages:
    - method: prune
      params: {kind: unstructured, ratio: {float: [0.3, 0.9]}}
      finetune: {epochs: 1, lr: {log_float: [1.0e-4, 1.0e-2]}}
    - method: quantize
      params: {mode: qat, weight_bits: {int: [2, 8]}, act_bits: 8}
      finetune: {epochs: 1}
)");
}

std::string write_config(const TempDir& dir, const std::string& pipeline,
                         const std::string& name = "w.yaml") {
  return dir.write(name, std::string(kHead) + pipeline);
}

// Trial number -> parameters as the report shows them.
std::map<int64_t, json> trial_params(const json& report) {
  std::map<int64_t, json> out;
  for (const auto& t : report["pipeline"]["trials"]) out[t["number"].get<int64_t>()] = t["params"];
  return out;
}

std::vector<pipeline::Trial> study_trials(const std::string& path) {
  pipeline::StudySpec spec;
  spec.name = "autotune";
  return pipeline::open_study(path, spec, pipeline::OpenMode::kLoad)->trials();
}

// Starts the squeeze binary; returns its pid. stderr goes to err_path.
pid_t spawn(const std::vector<std::string>& args, const std::string& err_path) {
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

// Polls the study until `n` trials are complete (or the process ended). False on timeout.
bool wait_complete(const std::string& db, pid_t pid, size_t n) {
  for (int i = 0; i < 6000; ++i) {
    if (fs::exists(db)) {
      try {
        size_t done = 0;
        for (const auto& t : study_trials(db)) done += t.state == pipeline::TrialState::kComplete;
        if (done >= n) return true;
      } catch (const Error&) {
        // not created yet
      }
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(AutotunePipeline, CompletesTheTrialsAndWritesABestYamlThatRuns) {
  TempDir dir;
  const std::string cfg = write_config(dir, search(4));
  auto r = cli({"run", cfg, "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  const json& p = rep["pipeline"];
  EXPECT_EQ(p["type"], "autotune");
  EXPECT_EQ(p["objective"]["name"], "accuracy_log_ratio");
  ASSERT_EQ(p["trials"].size(), 4u);
  std::set<std::string> names;
  for (const auto& t : p["trials"]) {
    EXPECT_EQ(t["state"], "complete") << t.dump();
    ASSERT_EQ(t["values"].size(), 1u);
    // The objective is the validation accuracy times ln(compression ratio).
    EXPECT_NEAR(t["values"][0].get<double>(),
                t["val_accuracy"].get<double>() * std::log(t["compression_ratio"].get<double>()),
                1e-9);
    EXPECT_EQ(t["intermediate"].size(), 2u);  // one per fine-tuning epoch
    EXPECT_FALSE(t["candidate"].is_null());
    for (const auto& [k, v] : t["params"].items()) names.insert(k);
  }
  EXPECT_EQ(names, (std::set<std::string>{"stages[0].finetune.lr", "stages[0].params.ratio",
                                          "stages[1].params.weight_bits"}));
  // The best passing trial by the objective, over the whole budget.
  double best_score = -1e300;
  int64_t best_trial = -1;
  for (const auto& t : p["trials"])
    if (t["passed_guard"] == true && t["values"][0].get<double>() > best_score) {
      best_score = t["values"][0].get<double>();
      best_trial = t["number"].get<int64_t>();
    }
  ASSERT_GE(best_trial, 0);
  const std::string best_name = msg("best-trial-", best_trial);
  ASSERT_EQ(rep["results"].size(), 1u);
  EXPECT_EQ(rep["results"][0]["name"], best_name);
  EXPECT_EQ(p["best"]["name"], best_name);
  // The re-run reproduces the trial (same baseline, same seeds, one thread).
  for (const auto& t : p["trials"])
    if (t["number"] == best_trial)
      EXPECT_EQ(rep["results"][0]["accuracy"].get<double>(), t["accuracy"].get<double>());
  const std::string md = read_all(dir.file("out/report.md"));
  EXPECT_NE(md.find("### Trials"), std::string::npos);
  EXPECT_NE(md.find("stages[0].params.ratio="), std::string::npos);
  EXPECT_NE(read_all(dir.file("out/report.html")).find("<h3>Trials</h3>"), std::string::npos);

  // best.yaml is a plain experiments workflow that reproduces the best trial.
  const std::string best_yaml = dir.file("out/best.yaml");
  ASSERT_TRUE(fs::exists(best_yaml));
  auto b = cli({"run", best_yaml});
  ASSERT_EQ(b.code, 0) << b.err << read_all(best_yaml);
  const json brep = read_json(dir.file("out/best/report.json"));
  ASSERT_EQ(brep["results"].size(), 1u);
  EXPECT_FALSE(brep.contains("pipeline"));
  EXPECT_EQ(brep["results"][0]["accuracy"].get<double>(),
            rep["results"][0]["accuracy"].get<double>());
  EXPECT_EQ(brep["results"][0]["size_bytes"], rep["results"][0]["size_bytes"]);

  // Running the same config again would start a second search on the same study: refused.
  auto again = cli({"run", cfg, "--out", dir.file("out")});
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.err.find("--resume"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--worker"), std::string::npos) << again.err;
}

TEST(AutotunePipeline, ResumeWithALargerBudgetProposesWhatAnUninterruptedRunWould) {
  TempDir dir;
  auto whole = cli({"run", write_config(dir, search(5), "a.yaml"), "--out", dir.file("whole")});
  ASSERT_EQ(whole.code, 0) << whole.err;
  const std::string cfg = write_config(dir, search(3), "b.yaml");
  auto first = cli({"run", cfg, "--out", dir.file("parts")});
  ASSERT_EQ(first.code, 0) << first.err;
  const auto before = study_trials(dir.file("parts/study.db"));
  ASSERT_EQ(before.size(), 3u);
  auto resumed =
      cli({"run", cfg, "--out", dir.file("parts"), "--resume", "--set", "pipeline.trials=5"});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const auto after = study_trials(dir.file("parts/study.db"));
  ASSERT_EQ(after.size(), 5u);
  // The finished trials were kept as they were, not run again.
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i].params, before[i].params);
    EXPECT_EQ(after[i].values, before[i].values);
  }
  const json rep = read_json(dir.file("parts/report.json"));
  for (const auto& t : rep["pipeline"]["trials"])
    EXPECT_EQ(t["candidate"].is_null(), t["number"].get<int64_t>() < 3) << t.dump();
  // The same five trials as the uninterrupted run (trials 2-4 are TPE proposals).
  EXPECT_EQ(trial_params(rep), trial_params(read_json(dir.file("whole/report.json"))));

  // A resume with a changed search is refused, naming what differs.
  auto changed = cli({"run", cfg, "--out", dir.file("parts"), "--resume", "--set",
                      "pipeline.objective=max_compression"});
  EXPECT_EQ(changed.code, 2);
  EXPECT_NE(changed.err.find("objective was accuracy_log_ratio, now max_compression"),
            std::string::npos)
      << changed.err;
  // --resume without a study says how to start one.
  auto none = cli({"run", cfg, "--out", dir.file("nothing"), "--resume"});
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("without --resume"), std::string::npos) << none.err;
  EXPECT_FALSE(fs::exists(dir.file("nothing")));
}

TEST(AutotunePipeline, SigkillThenResumeRepeatsNoFinishedTrial) {
  TempDir dir;
  auto whole = cli({"run", write_config(dir, search(4), "a.yaml"), "--out", dir.file("whole")});
  ASSERT_EQ(whole.code, 0) << whole.err;
  const std::string cfg = write_config(dir, search(4), "b.yaml");
  const std::string db = dir.file("out/study.db");
  pid_t pid = spawn({"run", cfg, "--out", dir.file("out"), "--quiet"}, dir.file("err.txt"));
  ASSERT_TRUE(wait_complete(db, pid, 2)) << read_all(dir.file("err.txt"));
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  std::map<int64_t, std::vector<double>> finished;
  for (const auto& t : study_trials(db))
    if (t.state == pipeline::TrialState::kComplete) finished[t.number] = t.values;
  ASSERT_GE(finished.size(), 2u);

  auto resumed = cli({"run", cfg, "--out", dir.file("out"), "--resume"});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const auto after = study_trials(db);
  ASSERT_EQ(after.size(), 4u);
  for (const auto& t : after) {
    EXPECT_EQ(t.state, pipeline::TrialState::kComplete);
    if (finished.count(t.number)) EXPECT_EQ(t.values, finished[t.number]);
  }
  // This process ran exactly the trials that had not finished before the kill.
  const json rep = read_json(dir.file("out/report.json"));
  for (const auto& t : rep["pipeline"]["trials"])
    EXPECT_EQ(t["candidate"].is_null(), finished.count(t["number"].get<int64_t>()) == 1)
        << t.dump();
  EXPECT_EQ(trial_params(rep), trial_params(read_json(dir.file("whole/report.json"))));
}

TEST(AutotunePipeline, SigintReleasesTheRunningTrialWritesTheReportAndNamesTheResumeCommand) {
  TempDir dir;
  // Slower trials (more QAT epochs), so that the signal lands inside one.
  std::string pipeline = search(3);
  const std::string quick = "finetune: {epochs: 1}\n";
  pipeline.replace(pipeline.find(quick), quick.size(), "finetune: {epochs: 10}\n");
  const std::string cfg = write_config(dir, pipeline);
  const std::string db = dir.file("out/study.db");
  pid_t pid = spawn({"run", cfg, "--out", dir.file("out"), "--quiet"}, dir.file("err.txt"));
  ASSERT_TRUE(wait_complete(db, pid, 1)) << read_all(dir.file("err.txt"));
  kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid), 128 + SIGINT);
  const std::string err = read_all(dir.file("err.txt"));
  EXPECT_NE(err.find("squeeze run " + cfg + " --resume --out " + dir.file("out")),
            std::string::npos)
      << err;
  std::set<int64_t> complete;
  for (const auto& t : study_trials(db)) {
    EXPECT_NE(t.state, pipeline::TrialState::kRunning) << t.number;  // released, not abandoned
    if (t.state == pipeline::TrialState::kComplete) complete.insert(t.number);
  }
  const json rep = read_json(dir.file("out/report.json"));
  EXPECT_NE(rep["pipeline"]["outcome"].get<std::string>().find("Interrupted"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("out/best.yaml")));
  auto resumed = cli({"run", cfg, "--out", dir.file("out"), "--resume"});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const auto after = study_trials(db);
  EXPECT_EQ(after.size(), 3u);
  for (const auto& t : after) EXPECT_EQ(t.state, pipeline::TrialState::kComplete);
  // The report is bound to a name: a range-for over a member of a temporary reads freed memory.
  const json final_report = read_json(dir.file("out/report.json"));
  for (const auto& t : final_report["pipeline"]["trials"])
    EXPECT_EQ(t["candidate"].is_null(), complete.count(t["number"].get<int64_t>()) == 1);
}

TEST(AutotunePipeline, TwoWorkersNeverRunTheSameTrial) {
  TempDir dir;
  const std::string cfg = write_config(dir, search(8));
  const std::vector<std::string> args = {"run",           cfg,        "--out",
                                         dir.file("out"), "--worker", "--quiet"};
  pid_t a = spawn(args, dir.file("a.txt"));
  pid_t b = spawn(args, dir.file("b.txt"));
  ASSERT_EQ(wait_exit(a), 0) << read_all(dir.file("a.txt"));
  ASSERT_EQ(wait_exit(b), 0) << read_all(dir.file("b.txt"));
  const auto trials = study_trials(dir.file("out/study.db"));
  ASSERT_EQ(trials.size(), 8u);
  std::set<int64_t> complete;
  for (const auto& t : trials) {
    EXPECT_TRUE(t.state == pipeline::TrialState::kComplete ||
                t.state == pipeline::TrialState::kPruned)
        << t.number;
    if (t.state == pipeline::TrialState::kComplete) complete.insert(t.number);
  }
  // Each worker's report names the trials it measured; together they are every complete trial,
  // each measured by one worker only.
  std::map<int64_t, int> ran;
  std::vector<std::string> reports;
  for (const auto& entry : fs::directory_iterator(dir.file("out/workers"))) {
    reports.push_back(entry.path().filename().string());
    const json rep = read_json((entry.path() / "report.json").string());
    EXPECT_EQ(rep["pipeline"]["trials"].size(), 8u);
    EXPECT_TRUE(fs::exists(entry.path() / "best.yaml"));
    for (const auto& t : rep["pipeline"]["trials"]) {
      if (t["candidate"].is_null()) continue;
      ++ran[t["number"].get<int64_t>()];
      // The study names this worker as the trial's holder ("host:pid" -> folder "host-pid").
      std::string w = t["worker"].get<std::string>();
      std::replace(w.begin(), w.end(), ':', '-');
      EXPECT_EQ(w, entry.path().filename().string());
    }
  }
  EXPECT_EQ(reports.size(), 2u) << ::testing::PrintToString(reports);
  EXPECT_EQ(ran.size(), complete.size());
  for (const auto& [n, count] : ran) {
    EXPECT_EQ(count, 1) << "trial " << n;
    EXPECT_TRUE(complete.count(n)) << "trial " << n;
  }
  // After the workers, --resume (budget spent) writes the complete report into OUTDIR.
  auto fin = cli({"run", cfg, "--out", dir.file("out"), "--resume"});
  ASSERT_EQ(fin.code, 0) << fin.err;
  const json rep = read_json(dir.file("out/report.json"));
  EXPECT_EQ(rep["pipeline"]["trials"].size(), 8u);
  EXPECT_TRUE(fs::exists(dir.file("out/best.yaml")));
}

TEST(AutotunePipeline, MedianPrunerStopsTrialsWithAnAbsurdLearningRate) {
  TempDir dir;
  // The learning rate is the only parameter, so every sane trial is the same run (the same
  // intermediate values, never below their own median); lr 50 wrecks the model.
  const std::string cfg = write_config(dir, R"(pipeline:
  type: autotune
  trials: 10
  sampler: {type: random}
  pruner: {type: median, startup_trials: 2}
  stages:
    - method: prune
      params: {ratio: 0.5}
      finetune: {epochs: 3, lr: {categorical: [1.0e-3, 50.0]}}
)");
  auto r = cli({"run", cfg, "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = read_json(dir.file("out/report.json"));
  int pruned = 0;
  for (const auto& t : rep["pipeline"]["trials"]) {
    const std::string lr = t["params"]["stages[0].finetune.lr"].dump();
    if (t["state"] == "pruned") {
      ++pruned;
      EXPECT_EQ(lr, "50.0") << t.dump();
      EXPECT_LT(t["intermediate"].size(), 3u);  // stopped before its last epoch
      EXPECT_NE(t["note"].get<std::string>().find("below the median"), std::string::npos);
      EXPECT_TRUE(t["candidate"].is_null());
    } else {
      EXPECT_EQ(t["state"], "complete");
    }
    if (lr == "0.001") EXPECT_EQ(t["state"], "complete");
  }
  EXPECT_GE(pruned, 1) << rep["pipeline"]["trials"].dump(1);
  EXPECT_NE(read_all(dir.file("out/report.md")).find("| pruned after epoch "), std::string::npos);
}

TEST(AutotunePipeline, ObjectivesAndTheTimeBudget) {
  TempDir dir;
  // pareto: two values per trial (validation accuracy up, size down), the front marked.
  auto pareto = cli({"run", write_config(dir, search(3, "  objective: pareto\n"), "p.yaml"),
                     "--out", dir.file("p")});
  ASSERT_EQ(pareto.code, 0) << pareto.err;
  const json p = read_json(dir.file("p/report.json"))["pipeline"];
  EXPECT_EQ(p["objective"]["directions"], json({"maximize", "minimize"}));
  int front = 0;
  for (const auto& t : p["trials"]) {
    ASSERT_EQ(t["values"].size(), 2u);
    EXPECT_EQ(t["values"][0].get<double>(), t["val_accuracy"].get<double>());
    EXPECT_EQ(t["values"][1].get<double>(), t["size_bytes"].get<double>());
    front += t["pareto_front"].get<bool>();
  }
  EXPECT_GE(front, 1);
  // max_compression: the ratio for a passing trial, minus the relative drop for a failing one.
  auto maxc = cli({"run", write_config(dir, search(3, "  objective: max_compression\n"), "m.yaml"),
                   "--out", dir.file("m")});
  ASSERT_EQ(maxc.code, 0) << maxc.err;
  const json m = read_json(dir.file("m/report.json"))["pipeline"];
  for (const auto& t : m["trials"]) {
    const double v = t["values"][0].get<double>();
    if (t["passed_guard"] == true)
      EXPECT_DOUBLE_EQ(v, t["compression_ratio"].get<double>());
    else
      EXPECT_LT(v, 0.0);
  }
  // time: no new trial once it is spent (each trial here takes well over a millisecond).
  auto timed = cli(
      {"run", write_config(dir, search(100000, "  time: 1s\n"), "t.yaml"), "--out", dir.file("t")});
  ASSERT_EQ(timed.code, 0) << timed.err;
  const json t = read_json(dir.file("t/report.json"))["pipeline"];
  EXPECT_LT(t["trials"].size(), 1000u);
  EXPECT_NE(t["outcome"].get<std::string>().find("the time budget (1s) is spent"),
            std::string::npos);
}

// Bad inputs: exit code 2, the key named, nothing trained (no output folder).
void expect_rejected(const std::string& pipeline, const std::string& needle) {
  TempDir dir;
  auto r = cli({"run", write_config(dir, pipeline), "--out", dir.file("out")});
  EXPECT_EQ(r.code, 2) << pipeline;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
  EXPECT_FALSE(fs::exists(dir.file("out/study.db"))) << pipeline;
  EXPECT_FALSE(fs::exists(dir.file("out/config.yaml"))) << pipeline;
}

std::string one_stage(const std::string& params, const std::string& extra = "") {
  return "pipeline:\n  type: autotune\n" + extra +
         "  stages:\n    - {method: prune, params: " + params + ", finetune: {epochs: 1}}\n";
}

TEST(AutotuneBadInput, RejectedBeforeAnyTraining) {
  const std::string ok = "{ratio: {float: [0.3, 0.9]}}";
  expect_rejected(one_stage(ok, "  trails: 5\n"), "did you mean 'trials'");
  expect_rejected(one_stage("{ratio: {float: [0.9, 0.5]}}"),
                  "pipeline.stages[0].params.ratio.float: the range [0.9, 0.5] is inverted");
  expect_rejected(one_stage("{ratio: {float: [0.5, 0.5]}}"), "is empty");
  expect_rejected(one_stage("{ratio: {categorical: []}}"), "an empty search range");
  expect_rejected(one_stage("{ratio: {log_float: [0, 0.9]}}"), "log_float needs low > 0");
  expect_rejected(one_stage("{ratio: {flot: [0.1, 0.9]}}"), "did you mean 'float'");
  // A kind without a value (found by fuzz_config: it dereferenced a null entry).
  expect_rejected(one_stage("{ratio: {log_float: }}"),
                  "pipeline.stages[0].params.ratio.log_float: no value; expected [low, high]");
  expect_rejected(one_stage("{ratio: {categorical: }}"), "no value; expected a list of choices");
  expect_rejected(one_stage("{ratio: {int: [1, 5], stpe: 2}}"), "did you mean 'step'");
  expect_rejected(one_stage("{ratio: 0.5}"), "nothing to search");
  // A path that names no parameter of the pass: the pass's own check, before training.
  expect_rejected(one_stage("{ratoi: {float: [0.3, 0.9]}}"), "ratoi");
  // A value in range for the search but not for the pass (ratio must be < 1).
  expect_rejected(one_stage("{ratio: {float: [0.5, 1.5]}}"), "ratio");
  expect_rejected(one_stage(ok, "  objective: accuracy\n"), "pipeline.objective");
  expect_rejected(one_stage(ok, "  trials: 0\n"), "pipeline.trials");
  expect_rejected(one_stage(ok, "  time: 2x\n"), "pipeline.time");
  expect_rejected(one_stage(ok, "  preserve_accuracy: 1.5\n"), "preserve_accuracy");
  expect_rejected(one_stage(ok, "  objective: max_compression\n"), "guard");
  expect_rejected(one_stage(ok, "  pareto: latency\n"), "pipeline.pareto");
  expect_rejected(one_stage(ok, "  study_name: ''\n"), "pipeline.study_name");
  expect_rejected(one_stage(ok, "  heartbeat_timeout: 0.5s\n"), "pipeline.heartbeat_timeout");
  expect_rejected(one_stage(ok, "  heartbeat_timeout: soon\n"), "pipeline.heartbeat_timeout");
  expect_rejected(one_stage(ok, "  study: mysql://me@127.0.0.1/db\n"), "postgresql://");
  // A study server that cannot be reached, before the baseline is trained; no password shown.
  expect_rejected(one_stage(ok, "  study: postgresql://me:s3cret@127.0.0.1:1/db\n"),
                  pipeline::postgres_supported() ? "cannot connect to PostgreSQL at 127.0.0.1:1"
                                                 : "libpq-dev");
  {
    TempDir dir;
    auto r = cli({"run",
                  write_config(dir, one_stage(ok, "  study: postgresql://me:s3cret@127.0.0.1:1/db\n")),
                  "--out", dir.file("out")});
    EXPECT_EQ(r.err.find("s3cret"), std::string::npos) << r.err;
  }
  expect_rejected(
      "pipeline:\n  type: autotune\n  stages:\n    - {method: prune, params: {ratio: 0.5}, "
      "finetune: {epochs: 1, lr: {log_float: [1.0e-4, 1.0e-2]}, optimiser: adam}}\n",
      "did you mean 'optimizer'");
}

TEST(AutotuneBadInput, WorkerNeedsAnAutotuneConfig) {
  // --resume continues any run (tests/pipeline/test_resume.cpp); --worker joins a study only.
  TempDir dir;
  const std::string cfg = dir.write("x.yaml", std::string(kHead) +
                                                  "experiments: [{name: a, stages: [{method: "
                                                  "prune, params: {ratio: 0.5}}]}]\n");
  auto r = cli({"run", cfg, "--worker", "--out", dir.file("out")});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--worker shares an autotune study"), std::string::npos) << r.err;
  auto both = cli({"run", cfg, "--resume", "--worker", "--out", dir.file("out")});
  EXPECT_EQ(both.code, 2);
  // --force is for runs without a study.
  const std::string tune = dir.write(
      "t.yaml", std::string(kHead) +
                    "pipeline:\n  type: autotune\n  trials: 1\n  stages:\n    - {method: prune, "
                    "params: {ratio: {float: [0.3, 0.6]}}}\n");
  auto forced = cli({"run", tune, "--force", "--out", dir.file("t")});
  EXPECT_EQ(forced.code, 2);
  EXPECT_NE(forced.err.find("--force: an autotune run keeps its trials in its study"),
            std::string::npos)
      << forced.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("t")));
}

TEST(AutotuneDuration, ParsesUnitsAndRejectsTheRest) {
  EXPECT_EQ(pipeline::parse_duration("90s", "t"), 90.0);
  EXPECT_EQ(pipeline::parse_duration("30m", "t"), 1800.0);
  EXPECT_EQ(pipeline::parse_duration("2h", "t"), 7200.0);
  EXPECT_EQ(pipeline::parse_duration("1h30m", "t"), 5400.0);
  EXPECT_EQ(pipeline::parse_duration("1.5h", "t"), 5400.0);
  EXPECT_EQ(pipeline::parse_duration("45", "t"), 45.0);
  for (const char* bad : {"", "2x", "h", "0s", "1h30", "-5m", "1e3s"})
    EXPECT_THROW(pipeline::parse_duration(bad, "t"), ConfigError) << bad;
}

TEST(AutotuneTemplate, InstantiatesEveryDistributionByItsKeyPath) {
  auto cfg = pipeline::parse_config(std::string(kHead) + search(3));
  const auto& spec = *cfg.pipeline->autotune;
  ASSERT_EQ(spec.space.size(), 3u);
  const auto stages = pipeline::instantiate_stages(spec, {{"stages[0].params.ratio", 0.625},
                                                          {"stages[0].finetune.lr", 0.001},
                                                          {"stages[1].params.weight_bits", 3}});
  ASSERT_EQ(stages.size(), 2u);
  auto s0 = pipeline::parse_stage_spec(*stages[0]->clone());
  auto s1 = pipeline::parse_stage_spec(*stages[1]->clone());
  EXPECT_EQ(s0.params->clone()->get_double("ratio", 0), 0.625);
  EXPECT_EQ(s0.finetune->lr, 0.001);
  EXPECT_EQ(s1.params->clone()->get_int("weight_bits", 0), 3);
  EXPECT_EQ(s1.params->clone()->get_string("mode", ""), "qat");
}

}  // namespace
}  // namespace squeeze
