// Runs that survive interruption (pipeline/run_state.h): the journal run.json, --resume after
// SIGKILL or Ctrl-C giving the report an uninterrupted run gives, the refusals (a folder holding
// a run, a changed config, --resume with nothing to resume), --force, run.log, and
// baseline: {checkpoint: PATH}.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli.h"
#include "pipeline/pipeline_test_util.h"
#include "squeeze/io/sqz.h"
#include "squeeze/models/zoo.h"
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

// report.json without what differs between two runs of the same config by nature: wall times,
// measured latencies and speedups, the machine. Everything else must be equal, exactly: a resumed
// run loads the numbers the interrupted one measured (written with round-trip precision) and
// computes the rest as the uninterrupted run did.
json without_timings(const json& j) {
  static const std::set<std::string> kTimings = {"seconds", "latency_us", "speedup", "latency", "latency_measurement",
                                                 "environment", "step_ms", "teacher_ms_per_step"};
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

// Each difference of two reports (after without_timings) as "path: a != b", for the failure
// message.
void differences(const json& a, const json& b, const std::string& path,
                 std::vector<std::string>& out) {
  if (a.type() != b.type()) {
    out.push_back(path + ": " + a.dump() + " != " + b.dump());
  } else if (a.is_object()) {
    std::set<std::string> keys;
    for (const auto& [k, v] : a.items()) keys.insert(k);
    for (const auto& [k, v] : b.items()) keys.insert(k);
    for (const auto& k : keys)
      differences(a.contains(k) ? a[k] : json(), b.contains(k) ? b[k] : json(), path + "." + k,
                  out);
  } else if (a.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i)
      differences(a[i], b[i], path + "[" + std::to_string(i) + "]", out);
  } else if (a != b) {
    out.push_back(path + ": " + a.dump().substr(0, 200) + " != " + b.dump().substr(0, 200));
  }
}

void expect_same_report(const std::string& a_path, const std::string& b_path) {
  const json a = without_timings(read_json(a_path)), b = without_timings(read_json(b_path));
  std::vector<std::string> diffs;
  differences(a, b, "", diffs);
  std::string shown;
  for (size_t i = 0; i < diffs.size() && i < 20; ++i) shown += diffs[i] + "\n";
  EXPECT_TRUE(diffs.empty()) << diffs.size() << " differences:\n" << shown;
}

// small_cnn (it has dropout, so the global generator matters) on 1,000 Fashion-MNIST images, one
// thread; three experiments, the second of two stages.
const char* kWorkflow = R"(seed: 4
threads: 1
model: {zoo: small_cnn, params: {channels: 4}}
data:
  dataset: fashion-mnist
  batch_size: 64
  split: {val: 0.1}
  limit: {train: 1000, val: 200, test: 300}
baseline: {train: {epochs: 2, lr: 3.0e-3}}
experiments:
  - name: a
    stages:
      - {method: prune, params: {ratio: 0.5}, finetune: {epochs: 2, lr: 1.0e-3}}
  - name: b
    stages:
      - {method: prune, params: {ratio: 0.7}, finetune: {epochs: 2, lr: 1.0e-3}}
      - {method: quantize, params: {mode: qat, weight_bits: 6, act_bits: 8},
         finetune: {epochs: 2, lr: 5.0e-4}}
  - name: c
    stages: [{method: lowrank, params: {ratio: 0.5}, finetune: {epochs: 2, lr: 1.0e-3}}]
output: {latency: false}
)";

// A workflow without training or data: quick, for the folder rules.
const char* kQuick = R"(seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 400, split: {val: 0.2, test: 0.2}}
experiments:
  - name: p
    stages: [{method: prune, params: {ratio: 0.5}}]
output: {latency: false}
)";

// The squeeze program in a child process (stdout and stderr into `log`); returns its pid.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("SQUEEZE_BLAS_REEXEC");
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

std::set<std::string> finished_units(const std::string& journal) {
  std::set<std::string> keys;
  std::error_code ec;
  if (!fs::exists(journal, ec)) return keys;
  try {
    const json j = read_json(journal);
    for (const auto& u : j["units"]) keys.insert(u["key"].get<std::string>());
  } catch (const json::exception&) {
  }
  return keys;
}

// Waits until the journal lists `key` (true) or the child ended first or 180 s passed (false).
bool wait_for_unit(pid_t pid, const std::string& journal, const std::string& key, int* status) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
  while (std::chrono::steady_clock::now() < deadline) {
    if (finished_units(journal).count(key)) return true;
    if (waitpid(pid, status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(Resume, AfterSigkillMidExperimentGivesTheUninterruptedReport) {
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kWorkflow);

  // Killed with SIGKILL once the first stage of experiment b is finished: in the middle of b.
  const std::string out = dir.file("killed");
  pid_t pid = spawn({"run", cfg, "--out", out}, dir.file("killed.txt"));
  int status = 0;
  const bool reached = wait_for_unit(pid, out + "/run.json", "experiment/b/stage/0", &status);
  if (reached) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  ASSERT_TRUE(reached) << "the run ended (status " << status
                       << ") before experiment b's first stage was journaled:\n"
                       << read_all(dir.file("killed.txt")) << "\njournal:\n"
                       << read_all(out + "/run.json");
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_FALSE(fs::exists(out + "/report.json")) << "the run finished before it was killed";
  const std::set<std::string> before = finished_units(out + "/run.json");
  EXPECT_TRUE(before.count("baseline") && before.count("experiment/a"));
  EXPECT_FALSE(before.count("experiment/c"));
  EXPECT_EQ(read_json(out + "/run.json")["state"], "running");

  // Resumed: the finished units are loaded, the rest run.
  auto resumed = testing::run_binary("run " + cfg + " --out " + out + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_EQ(read_json(out + "/run.json")["state"], "finished");
  EXPECT_EQ(read_json(out + "/run.json")["runs"], 2);
  const std::string log = read_all(out + "/run.log");
  const size_t marker = log.find("run resumed (run 2 of this folder)");
  ASSERT_NE(marker, std::string::npos) << log;
  const std::string after = log.substr(marker);
  EXPECT_EQ(after.find("baseline: training"), std::string::npos) << after;
  EXPECT_NE(after.find("baseline: finished by an earlier run"), std::string::npos) << after;
  EXPECT_NE(after.find("experiment 'a': finished by an earlier run"), std::string::npos) << after;
  EXPECT_NE(after.find("prune: finished by an earlier run"), std::string::npos) << after;
  // Lines of the killed run stay in run.log, before the marker.
  EXPECT_NE(log.substr(0, marker).find("baseline: training"), std::string::npos) << log;

  // The same config uninterrupted, into another folder: the same report up to timings.
  auto whole = testing::run_binary("run " + cfg + " --out " + dir.file("whole"));
  ASSERT_EQ(whole.code, 0) << whole.out;
  expect_same_report(out + "/report.json", dir.file("whole/report.json"));
  // And the same models.
  for (const std::string m : {"baseline", "a", "b", "c"})
    EXPECT_EQ(read_all(out + "/models/" + m + ".sqz"), read_all(dir.file("whole/models/" + m + ".sqz")))
        << m;
}

TEST(Resume, CtrlCStopsAtTheNextBatchAndPrintsTheResumeCommand) {
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kWorkflow);
  const std::string out = dir.file("out");
  pid_t pid = spawn({"run", cfg, "--out", out}, dir.file("console.txt"));
  int status = 0;
  const bool reached = wait_for_unit(pid, out + "/run.json", "baseline", &status);
  if (reached) {
    kill(pid, SIGINT);
    waitpid(pid, &status, 0);
  }
  const std::string console = read_all(dir.file("console.txt"));
  ASSERT_TRUE(reached) << console;
  ASSERT_TRUE(WIFEXITED(status)) << console;
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT) << console;
  EXPECT_NE(console.find("squeeze run " + cfg + " --resume --out " + out), std::string::npos)
      << console;
  EXPECT_NE(console.find("run.json"), std::string::npos) << console;
  EXPECT_FALSE(fs::exists(out + "/report.json"));
  EXPECT_TRUE(finished_units(out + "/run.json").count("baseline"));
  EXPECT_NE(read_all(out + "/run.log").find("run stopped before it finished (interrupted"),
            std::string::npos);
  // The printed command continues it.
  auto resumed = testing::run_binary("run " + cfg + " --resume --out " + out);
  EXPECT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_TRUE(fs::exists(out + "/report.json"));
}

TEST(Resume, AFolderHoldingARunIsRefusedUnlessResumedOrForced) {
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kQuick);
  const std::string out = dir.file("out");
  ASSERT_EQ(cli({"run", cfg, "--out", out}).code, 0);
  const std::string first = read_all(out + "/report.json");

  auto again = cli({"run", cfg, "--out", out});
  EXPECT_EQ(again.code, 2);
  for (const char* w : {"holds a finished run", "--resume", "--force", "experiment/p"})
    EXPECT_NE(again.err.find(w), std::string::npos) << w << " in " << again.err;
  EXPECT_EQ(read_all(out + "/report.json"), first);  // untouched

  // An unfinished run is refused the same way, saying so.
  json j = read_json(out + "/run.json");
  j["state"] = "running";
  std::ofstream(out + "/run.json") << j.dump();
  auto unfinished = cli({"run", cfg, "--out", out});
  EXPECT_EQ(unfinished.code, 2);
  EXPECT_NE(unfinished.err.find("holds an unfinished run"), std::string::npos) << unfinished.err;

  // --force starts over: the journal counts one run again.
  auto forced = cli({"run", cfg, "--out", out, "--force"});
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_EQ(read_json(out + "/run.json")["runs"], 1);
  EXPECT_EQ(read_json(out + "/run.json")["state"], "finished");
  EXPECT_NE(read_all(out + "/run.log").find("--force: the previous run's files were removed"),
            std::string::npos);

  // --resume of a finished run loads everything and writes the same report.
  auto resumed = cli({"run", cfg, "--out", out, "--resume"});
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  expect_same_report(out + "/report.json", dir.file("out/report.json"));
  EXPECT_EQ(without_timings(read_json(out + "/report.json")),
            without_timings(json::parse(first)));

  // A report.json without a journal (a run from before journals, or another tool) is refused too.
  const std::string old = dir.file("old");
  fs::create_directories(old);
  std::ofstream(old + "/report.json") << "{}";
  auto legacy = cli({"run", cfg, "--out", old});
  EXPECT_EQ(legacy.code, 2);
  EXPECT_NE(legacy.err.find("without a run journal"), std::string::npos) << legacy.err;
}

TEST(Resume, ResumeNeedsARunAndTheSameConfig) {
  TempDir dir;
  const std::string cfg = dir.write("w.yaml", kQuick);
  auto none = cli({"run", cfg, "--out", dir.file("empty"), "--resume"});
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("holds no run to continue"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("without --resume"), std::string::npos) << none.err;
  EXPECT_FALSE(fs::exists(dir.file("empty")));

  const std::string out = dir.file("out");
  ASSERT_EQ(cli({"run", cfg, "--out", out}).code, 0);
  auto changed = cli({"run", cfg, "--out", out, "--resume", "--set",
                      "experiments[0].stages[0].params.ratio=0.7", "--set", "seed=2"});
  EXPECT_EQ(changed.code, 2);
  for (const char* w : {"different config", "experiments[0].stages[0].params.ratio: 0.5 -> 0.7",
                        "seed: 1 -> 2", "--force"})
    EXPECT_NE(changed.err.find(w), std::string::npos) << w << " in " << changed.err;
  // Keys that cannot change a result may differ.
  auto free = cli({"run", cfg, "--out", out, "--resume", "--set", "output.latency=true", "--set",
                   "threads=1"});
  EXPECT_EQ(free.code, 0) << free.err;
  // --resume and --force together are a usage error.
  EXPECT_EQ(cli({"run", cfg, "--out", out, "--resume", "--force"}).code, 2);
}

TEST(Resume, PipelinesResumeFromTheirFinishedCandidates) {
  // A crash leaves the journal as it was after the last finished unit: simulated by cutting the
  // journal of a finished run back to its first units, then resuming.
  const std::vector<std::pair<std::string, std::string>> pipelines = {
      {"validation", R"(pipeline:
  type: validation
  preserve_accuracy: 0.5
  steps:
    - {name: light, method: prune, params: {ratio: 0.3}, finetune: {epochs: 1}}
    - {name: low, method: lowrank, params: {rank: 8}, finetune: {epochs: 1}}
    - {name: int8, method: quantize, params: {mode: ptq, weight_bits: 8, act_bits: 8}}
)"},
      {"combinations", R"(pipeline:
  type: combinations
  guard: {max_drop: 0.5, relative: true}
  steps:
    - {name: prune, method: prune, params: {ratio: 0.5}, finetune: {epochs: 1}}
    - {name: int8, method: quantize, params: {mode: ptq, weight_bits: 8, act_bits: 8}}
)"},
      {"progressive", R"(pipeline:
  type: progressive
  target_compression: 6
  guard: {max_drop: 0.1, relative: true}
  methods: [prune, quantize]
  finetune: {epochs: 1, lr: 1.0e-3}
)"}};
  for (const auto& [type, block] : pipelines) {
    SCOPED_TRACE(type);
    TempDir dir;
    const std::string cfg = dir.write("w.yaml", testing::kPipelineHead + block);
    auto whole = cli({"run", cfg, "--out", dir.file("whole")});
    ASSERT_EQ(whole.code, 0) << whole.err;
    fs::copy(dir.file("whole"), dir.file("cut"), fs::copy_options::recursive);
    json j = read_json(dir.file("cut/run.json"));
    ASSERT_GE(j["units"].size(), 3u) << j.dump(1);  // the baseline and at least two candidates
    json kept = json::array();
    for (size_t i = 0; i < 2; ++i) kept.push_back(j["units"][i]);  // the baseline, the first
    j["units"] = kept;
    j["state"] = "running";
    std::ofstream(dir.file("cut/run.json")) << j.dump();
    fs::remove(dir.file("cut/report.json"));
    auto resumed = cli({"run", cfg, "--out", dir.file("cut"), "--resume"});
    ASSERT_EQ(resumed.code, 0) << resumed.err;
    expect_same_report(dir.file("cut/report.json"), dir.file("whole/report.json"));
    EXPECT_NE(read_all(dir.file("cut/run.log")).find("finished by an earlier run, loaded"),
              std::string::npos);
  }
}

TEST(BaselineCheckpoint, ReusesATrainedBaselineWithoutTrainingIt) {
  TempDir dir;
  const std::string trained = dir.write("train.yaml", std::string(kQuick) +
                                                          "baseline: {train: {epochs: 1}}\n");
  ASSERT_EQ(cli({"run", trained, "--out", dir.file("x")}).code, 0);
  const json first = read_json(dir.file("x/report.json"));

  // model: left out (the checkpoint is the model), and with model: given.
  for (const std::string model : {"", "model: {zoo: jet_tagger}\n"}) {
    SCOPED_TRACE(model);
    std::string yaml = kQuick;
    yaml.replace(yaml.find("model: {zoo: jet_tagger}\n"), 25, model);
    const std::string cfg = dir.write(
        "reuse.yaml", yaml + "baseline: {checkpoint: " + dir.file("x/models/baseline.sqz") + "}\n");
    const std::string out = dir.file(model.empty() ? "y" : "z");
    auto r = cli({"run", cfg, "--out", out});
    ASSERT_EQ(r.code, 0) << r.err;
    const json rep = read_json(out + "/report.json");
    EXPECT_EQ(rep["baseline"]["accuracy"], first["baseline"]["accuracy"]);
    EXPECT_EQ(rep["baseline"]["size_bytes"], first["baseline"]["size_bytes"]);
    EXPECT_EQ(rep["results"][0]["accuracy"], first["results"][0]["accuracy"]);
    EXPECT_FALSE(rep.contains("warnings") && rep["warnings"].dump().find("untrained") !=
                                                 std::string::npos);
    EXPECT_EQ(read_all(out + "/run.log").find("baseline: training"), std::string::npos);
  }
}

TEST(BaselineCheckpoint, AMissingOrMisfittingCheckpointIsRefusedBeforeTraining) {
  TempDir dir;
  // An MLP for 8 features: not this data's 16, and not a jet_tagger.
  std::map<std::string, std::string> p{{"in_features", "8"}, {"num_classes", "5"}};
  io::save_sqz(models::build("mlp", p, 0), dir.file("mlp8.sqz"));
  std::map<std::string, std::string> q{{"in_features", "16"}, {"num_classes", "3"}};
  io::save_sqz(models::build("jet_tagger", q, 0), dir.file("jet3.sqz"));
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"baseline: {checkpoint: " + dir.file("nope.sqz") + "}",
       {"baseline.checkpoint", "nope.sqz", "does not exist"}},
      {"baseline: {checkpoint: " + dir.file("mlp8.sqz") + "}",
       {"baseline.checkpoint", "takes samples of shape [8]", "[16]"}},
      {"baseline: {checkpoint: " + dir.file("jet3.sqz") + "}",
       {"baseline.checkpoint", "is not the model: block's model", "3 classes", "5 classes"}},
      {"baseline: {checkpoint: " + dir.file("jet3.sqz") + ", train: {epochs: 1}}",
       {"both 'train' and 'checkpoint'", "keep one"}},
      {"baseline: {checkpoint: '', train: {epochs: 1}}", {"baseline.checkpoint", "expected"}},
  };
  for (const auto& [block, words] : cases) {
    SCOPED_TRACE(block);
    const std::string cfg = dir.write("w.yaml", std::string(kQuick) + block + "\n");
    auto r = cli({"run", cfg, "--out", dir.file("out")});
    EXPECT_EQ(r.code, 2) << r.err;
    for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << w << " in " << r.err;
    EXPECT_FALSE(fs::exists(dir.file("out")));
  }
}

}  // namespace
}  // namespace squeeze
