// The study storage: round trips, resume after a worker dies, concurrent workers in separate
// processes, refused resumes, damaged and foreign stores.
//
// The StudyStore and StudyWorkers suites run on both backends, as SQLite/... and PostgreSQL/...:
// the same tests, each on a new store (a file; a new database on a private server started by
// testing/postgres.h). The PostgreSQL instances skip, saying why, only where the server binaries
// or the backend are absent. StudyFiles is the SQLite file's own checks, PostgresStudy the
// database's.
//
// Processes are made with fork(). A child never uses a study its parent opened (neither SQLite
// nor libpq allow carrying a connection across fork), so every test forks while the parent has
// none open, and the child ends with _exit(), reporting through its exit code and the store.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <thread>

#include "squeeze/pipeline/study.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/errors.h"
#include "testing/postgres.h"

namespace squeeze::pipeline {
namespace {

using squeeze::testing::error_of;
using squeeze::testing::PostgresServer;
using squeeze::testing::TempDir;
using Kind = Distribution::Kind;

StudySpec make_spec() {
  StudySpec spec;
  spec.name = "tune";
  spec.directions = {Direction::kMaximize};
  spec.space["bits"] = Distribution{Kind::kInt, 2, 8, 1, {}};
  spec.space["criterion"] = Distribution{Kind::kCategorical, 0, 1, 0, {"l1", "l2"}};
  spec.space["lr"] = Distribution{Kind::kLogFloat, 1e-5, 0.1, 0, {}};
  spec.space["ratio"] = Distribution{Kind::kFloat, 0.5, 0.95, 0, {}};
  spec.seed = 7;
  spec.fingerprint = "cfg-1";
  return spec;
}

// A stand-in for the TPE sampler: its randomness comes from (seed, number) and its choice of
// `bits` depends on the history, so a resumed study proposes the same trials only if it sees
// the same history.
std::map<std::string, double> toy_propose(uint64_t seed, int64_t number,
                                          const std::vector<Trial>& history) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(number));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int64_t good = 0;
  for (const Trial& t : history)
    if (t.state == TrialState::kComplete && !t.values.empty() && t.values[0] > 2.0) ++good;
  std::map<std::string, double> p;
  p["bits"] = static_cast<double>(2 + (number + good) % 7);
  p["criterion"] = static_cast<double>(rng() % 2);
  p["lr"] = std::min(0.1, std::max(1e-5, std::exp(std::log(1e-5) + u(rng) * std::log(1e4))));
  p["ratio"] = 0.5 + 0.45 * u(rng);
  return p;
}

Proposer toy_proposer(uint64_t seed = 7) {
  return [seed](int64_t n, const std::vector<Trial>& h) { return toy_propose(seed, n, h); };
}

Proposer fixed(const std::map<std::string, double>& params) {
  return [params](int64_t, const std::vector<Trial>&) { return params; };
}

double objective(const Trial& t) { return t.params.at("ratio") * t.params.at("bits") / 2.0; }

StudyOptions worker_options(const std::string& name) {
  StudyOptions o;
  o.worker = name;
  return o;
}

// Claims and completes trials until the study holds `max_trials`.
void run_trials(Study& study, int64_t max_trials) {
  while (auto t = study.claim_trial(toy_proposer(), max_trials))
    ASSERT_TRUE(study.finish_trial(t->number, TrialState::kComplete, {objective(*t)}));
}

// Runs `body` in a child process; returns its exit code (128 + signal if it was killed).
int in_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    int code = 0;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", static_cast<int>(getpid()), e.what());
      code = 90;
    }
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void sql(const std::string& path, const char* statements) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, statements, nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The first column of the first row of `query`.
std::string sql_value(const std::string& path, const char* query) {
  sqlite3* db = nullptr;
  std::string value;
  if (sqlite3_open(path.c_str(), &db) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, query, -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
      value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return value;
}

bool same_double(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

void expect_same_trial(const Trial& a, const Trial& b) {
  EXPECT_EQ(a.number, b.number);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.params, b.params);
  ASSERT_EQ(a.values.size(), b.values.size());
  for (size_t i = 0; i < a.values.size(); ++i) EXPECT_TRUE(same_double(a.values[i], b.values[i]));
  ASSERT_EQ(a.intermediate.size(), b.intermediate.size());
  for (const auto& [step, v] : a.intermediate) {
    ASSERT_TRUE(b.intermediate.count(step)) << "step " << step;
    EXPECT_TRUE(same_double(v, b.intermediate.at(step))) << "step " << step;
  }
  EXPECT_EQ(a.attrs, b.attrs);
  EXPECT_EQ(a.worker, b.worker);
}

enum class Backend { kSqlite, kPostgres };

// A test that runs on one backend; store() gives it a new, empty study store.
class BackendTest : public ::testing::TestWithParam<Backend> {
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
  bool sqlite() const { return GetParam() == Backend::kSqlite; }
  // A file NAME.db in the test's folder (parent folders not yet made), or a new database.
  std::string store(const std::string& name = "study") {
    return sqlite() ? dir.file(name + ".db") : pg_->create_database();
  }

  TempDir dir;
  PostgresServer* pg_ = nullptr;
};

class StudyStore : public BackendTest {};
class StudyWorkers : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(SQLite, StudyStore, ::testing::Values(Backend::kSqlite));
INSTANTIATE_TEST_SUITE_P(PostgreSQL, StudyStore, ::testing::Values(Backend::kPostgres));
INSTANTIATE_TEST_SUITE_P(SQLite, StudyWorkers, ::testing::Values(Backend::kSqlite));
INSTANTIATE_TEST_SUITE_P(PostgreSQL, StudyWorkers, ::testing::Values(Backend::kPostgres));

TEST_P(StudyStore, ReopenRoundTripsSpecAndEveryTrialField) {
  const std::string path = store("runs/x/study");   // parent folders are created
  StudySpec spec = make_spec();
  spec.directions = {Direction::kMaximize, Direction::kMinimize};
  spec.space["criterion"].choices = {"l1", "tab\there", "comma,and \"quote\"", "\xc3\xa9t\xc3\xa9"};
  spec.space["ratio"].step = 0.05;
  spec.seed = std::numeric_limits<uint64_t>::max() - 3;   // above INT64_MAX
  spec.fingerprint = "sha:0123456789abcdef\nsecond line";
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  // `study` stays open: its trial 2 is held by a live worker while the file is read again.
  auto study = open_study(path, spec, OpenMode::kCreate, worker_options("w1"));
  EXPECT_EQ(study->location(), path);
  EXPECT_EQ(study->worker(), "w1");
  EXPECT_EQ(study->enqueue_trial({{"bits", 8}, {"criterion", 3}, {"lr", 1e-3}, {"ratio", 0.95}},
                                 {{"source", "defaults"}}),
            0);
  auto t0 = study->claim_trial(toy_proposer());
  ASSERT_TRUE(t0);
  EXPECT_EQ(t0->number, 0);
  EXPECT_EQ(t0->state, TrialState::kRunning);
  EXPECT_EQ(t0->attrs.at("source"), "defaults");
  EXPECT_TRUE(study->report_intermediate(0, 0, 0.25));
  EXPECT_TRUE(study->report_intermediate(0, 1, nan));
  EXPECT_TRUE(study->report_intermediate(0, -2, -inf));
  EXPECT_TRUE(study->finish_trial(0, TrialState::kComplete, {0.1 + 0.2, inf},
                                  {{"accuracy", "0.91"}, {"note", "multi\nline"}}));
  ASSERT_TRUE(study->claim_trial(fixed({{"bits", 2}, {"criterion", 1}, {"lr", 1e-5},
                                        {"ratio", 0.55}})));
  EXPECT_TRUE(study->finish_trial(1, TrialState::kPruned, {}, {{"reason", "pruned at 1"}}));
  // Trial 2 stays running.
  ASSERT_TRUE(study->claim_trial(fixed({{"bits", 5}, {"criterion", 2}, {"lr", 0.1},
                                        {"ratio", 0.5}})));
  const std::vector<Trial> written = study->trials();
  ASSERT_EQ(written.size(), 3u);
  EXPECT_EQ(written[2].state, TrialState::kRunning);

  auto again = open_study(path, StudySpec{"tune"}, OpenMode::kLoad);
  const StudySpec& stored = again->spec();
  EXPECT_EQ(stored.name, spec.name);
  EXPECT_EQ(stored.directions, spec.directions);
  EXPECT_EQ(stored.seed, spec.seed);
  EXPECT_EQ(stored.fingerprint, spec.fingerprint);
  ASSERT_EQ(stored.space.size(), spec.space.size());
  for (const auto& [name, d] : spec.space) {
    const Distribution& s = stored.space.at(name);
    EXPECT_EQ(s.kind, d.kind) << name;
    EXPECT_EQ(s.low, d.low) << name;
    EXPECT_EQ(s.high, d.high) << name;
    EXPECT_EQ(s.step, d.step) << name;
    EXPECT_EQ(s.choices, d.choices) << name;
  }
  const std::vector<Trial> read = again->trials();
  ASSERT_EQ(read.size(), written.size());
  for (size_t i = 0; i < read.size(); ++i) expect_same_trial(read[i], written[i]);
  EXPECT_EQ(read[0].values[0], 0.1 + 0.2);   // bit-exact, not printed and parsed
  EXPECT_TRUE(std::isnan(read[0].intermediate.at(1)));
  EXPECT_EQ(read[0].intermediate.at(-2), -inf);
  EXPECT_EQ(read[0].worker, "w1");
  auto one = again->get(1);
  ASSERT_TRUE(one);
  expect_same_trial(*one, written[1]);
  EXPECT_FALSE(again->get(3));
  // A live worker holds trial 2: loading or joining must not re-queue it.
  open_study(path, spec, OpenMode::kJoin, worker_options("w2"));
  EXPECT_EQ(again->get(2)->state, TrialState::kRunning);
}

TEST_P(StudyStore, OpenModesCreateResumeJoin) {
  const std::string path = store();
  EXPECT_NE(error_of<InputError>([&] { open_study(path, make_spec(), OpenMode::kResume); })
                .find("no study 'tune'"),
            std::string::npos);
  EXPECT_NE(error_of<InputError>([&] { open_study(path, make_spec(), OpenMode::kLoad); })
                .find("no study 'tune'"),
            std::string::npos);
  {
    auto study = open_study(path, make_spec(), OpenMode::kJoin);   // creates
    run_trials(*study, 2);
  }
  if (sqlite()) EXPECT_EQ(sql_value(path, "PRAGMA journal_mode"), "wal");   // readers never block a writer
  const std::string exists =
      error_of<ConfigError>([&] { open_study(path, make_spec(), OpenMode::kCreate); });
  EXPECT_NE(exists.find("already exists"), std::string::npos) << exists;
  EXPECT_NE(exists.find("2 trials"), std::string::npos) << exists;
  EXPECT_EQ(open_study(path, make_spec(), OpenMode::kJoin)->trials().size(), 2u);
  EXPECT_EQ(open_study(path, make_spec(), OpenMode::kResume)->trials().size(), 2u);

  // A second study in the same file is independent.
  StudySpec other = make_spec();
  other.name = "other";
  auto second = open_study(path, other, OpenMode::kCreate);
  EXPECT_TRUE(second->trials().empty());
  EXPECT_EQ(second->claim_trial(toy_proposer())->number, 0);
}

TEST_P(StudyStore, ResumeWithADifferentConfigIsRefusedNamingBothValues) {
  const std::string path = store();
  open_study(path, make_spec(), OpenMode::kCreate);

  StudySpec changed = make_spec();
  changed.fingerprint = "cfg-2";
  std::string e = error_of<ConfigError>([&] { open_study(path, changed, OpenMode::kResume); });
  EXPECT_NE(e.find("'cfg-1'"), std::string::npos) << e;
  EXPECT_NE(e.find("'cfg-2'"), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;

  changed = make_spec();
  changed.seed = 8;
  e = error_of<ConfigError>([&] { open_study(path, changed, OpenMode::kJoin); });
  EXPECT_NE(e.find("seed: stored 7, this configuration 8"), std::string::npos) << e;

  changed = make_spec();
  changed.space["bits"].high = 4;
  changed.space.erase("lr");
  changed.directions = {Direction::kMinimize};
  e = error_of<ConfigError>([&] { open_study(path, changed, OpenMode::kResume); });
  EXPECT_NE(e.find("parameter 'bits': stored int [2, 8] step 1, this configuration int [2, 4]"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("parameter 'lr': stored log_float [1e-05, 0.1], absent"), std::string::npos)
      << e;
  EXPECT_NE(e.find("directions: stored [maximize], this configuration [minimize]"),
            std::string::npos)
      << e;

  // Loading for a report reads whatever is stored.
  EXPECT_EQ(open_study(path, changed, OpenMode::kLoad)->spec().fingerprint, "cfg-1");
}

TEST_P(StudyStore, ClaimsNumberTrialsInOrderWithTheirHistoryAndStopAtTheLimit) {
  auto study = open_study(store(), make_spec(), OpenMode::kCreate);
  std::vector<size_t> history_sizes;
  auto propose = [&](int64_t n, const std::vector<Trial>& h) {
    history_sizes.push_back(h.size());
    for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(h[i].number, static_cast<int64_t>(i));
    return toy_propose(7, n, h);
  };
  for (int64_t n = 0; n < 3; ++n) {
    auto t = study->claim_trial(propose, 3);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->number, n);
    EXPECT_TRUE(study->finish_trial(n, TrialState::kComplete, {objective(*t)}));
  }
  EXPECT_FALSE(study->claim_trial(propose, 3));
  EXPECT_EQ(history_sizes, (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(study->trials().size(), 3u);
}

TEST_P(StudyStore, InvalidProposalIsAnInternalErrorAndLeavesTheStudyUnchanged) {
  auto study = open_study(store(), make_spec(), OpenMode::kCreate);
  auto missing = [](int64_t n, const std::vector<Trial>& h) {
    auto p = toy_propose(7, n, h);
    p.erase("lr");
    return p;
  };
  std::string e = error_of<InternalError>([&] { study->claim_trial(missing); });
  EXPECT_NE(e.find("parameter 'lr'"), std::string::npos) << e;
  auto outside = [](int64_t n, const std::vector<Trial>& h) {
    auto p = toy_propose(7, n, h);
    p["bits"] = 9;
    return p;
  };
  e = error_of<InternalError>([&] { study->claim_trial(outside); });
  EXPECT_NE(e.find("9 is outside int [2, 8]"), std::string::npos) << e;
  EXPECT_THROW(study->claim_trial([](int64_t, const std::vector<Trial>&)
                                      -> std::map<std::string, double> {
                 throw std::runtime_error("sampler failed");
               }),
               std::runtime_error);
  EXPECT_TRUE(study->trials().empty());
  EXPECT_EQ(study->claim_trial(toy_proposer())->number, 0);
}

TEST_P(StudyStore, EnqueuedTrialsAreClaimedBeforeNewOnes) {
  auto study = open_study(store(), make_spec(), OpenMode::kCreate);
  const std::map<std::string, double> defaults{
      {"bits", 8}, {"criterion", 0}, {"lr", 1e-3}, {"ratio", 0.5}};
  EXPECT_EQ(study->enqueue_trial(defaults), 0);
  const std::string e = error_of<ConfigError>(
      [&] { study->enqueue_trial({{"bits", 3.5}, {"criterion", 0}, {"lr", 1e-3}, {"ratio", 0.5}}); });
  EXPECT_NE(e.find("parameter 'bits': 3.5 is outside int [2, 8] step 1"), std::string::npos) << e;
  int proposals = 0;
  auto counting = [&](int64_t n, const std::vector<Trial>& h) {
    ++proposals;
    return toy_propose(7, n, h);
  };
  auto t = study->claim_trial(counting);
  EXPECT_EQ(t->number, 0);
  EXPECT_EQ(t->params, defaults);
  EXPECT_EQ(proposals, 0);
  EXPECT_EQ(study->claim_trial(counting)->number, 1);
  EXPECT_EQ(proposals, 1);
}

TEST_P(StudyStore, IntermediateValuesAreStoredPerStep) {
  auto study = open_study(store(), make_spec(), OpenMode::kCreate);
  auto t = study->claim_trial(toy_proposer());
  EXPECT_TRUE(study->report_intermediate(t->number, 0, 0.5));
  EXPECT_TRUE(study->report_intermediate(t->number, 2, 0.7));
  EXPECT_TRUE(study->report_intermediate(t->number, 1, 0.6));
  EXPECT_TRUE(study->report_intermediate(t->number, 2, 0.75));   // overwritten
  EXPECT_EQ(study->get(t->number)->intermediate,
            (std::map<int64_t, double>{{0, 0.5}, {1, 0.6}, {2, 0.75}}));
  EXPECT_TRUE(study->finish_trial(t->number, TrialState::kPruned, {0.75}));
  EXPECT_EQ(study->get(t->number)->intermediate.size(), 3u);   // kept for the pruner's history
}

TEST_P(StudyStore, OnlyTheWorkerHoldingATrialWritesIt) {
  const std::string path = store();
  auto a = open_study(path, make_spec(), OpenMode::kCreate, worker_options("a"));
  auto b = open_study(path, make_spec(), OpenMode::kJoin, worker_options("b"));
  auto t = a->claim_trial(toy_proposer());
  EXPECT_EQ(b->claim_trial(toy_proposer())->number, 1);   // never the same trial
  EXPECT_FALSE(b->finish_trial(t->number, TrialState::kComplete, {1.0}));
  EXPECT_FALSE(b->report_intermediate(t->number, 0, 1.0));
  EXPECT_FALSE(b->heartbeat(t->number));
  EXPECT_FALSE(b->release_trial(t->number));
  EXPECT_TRUE(a->finish_trial(t->number, TrialState::kComplete, {1.0}));
  EXPECT_FALSE(a->finish_trial(t->number, TrialState::kFailed, {}));   // already finished
  EXPECT_EQ(b->get(t->number)->state, TrialState::kComplete);
  EXPECT_EQ(b->get(t->number)->worker, "a");
  const std::string e = error_of<InputError>([&] { (void)a->heartbeat(99); });
  EXPECT_NE(e.find("has no trial 99"), std::string::npos) << e;
  EXPECT_THROW((void)a->finish_trial(1, TrialState::kRunning, {}), InternalError);
  EXPECT_THROW((void)b->finish_trial(1, TrialState::kComplete, {}), InternalError);
}

TEST_P(StudyStore, ReleasedTrialIsRetriedWithoutCountingARetry) {
  auto study = open_study(store(), make_spec(), OpenMode::kCreate);
  auto t = study->claim_trial(toy_proposer());
  EXPECT_TRUE(study->report_intermediate(t->number, 0, 0.3));
  EXPECT_TRUE(study->release_trial(t->number));
  auto waiting = study->get(t->number);
  EXPECT_EQ(waiting->state, TrialState::kWaiting);
  EXPECT_TRUE(waiting->intermediate.empty());
  EXPECT_EQ(waiting->attrs.count("retries"), 0u);
  auto again = study->claim_trial(toy_proposer());
  EXPECT_EQ(again->number, t->number);
  EXPECT_EQ(again->params, t->params);
}

TEST_P(StudyStore, StudyDroppedWithoutFinishingGivesItsTrialBackAsAbandoned) {
  const std::string path = store();
  std::map<std::string, double> params;
  {
    auto study = open_study(path, make_spec(), OpenMode::kCreate);
    run_trials(*study, 1);
    params = study->claim_trial(toy_proposer())->params;
    // An exception would unwind past the study here.
  }
  auto study = open_study(path, make_spec(), OpenMode::kResume);
  const Trial t1 = *study->get(1);
  EXPECT_EQ(t1.state, TrialState::kWaiting);
  EXPECT_EQ(t1.attrs.at("retries"), "1");
  EXPECT_EQ(study->get(0)->state, TrialState::kComplete);
  auto again = study->claim_trial(toy_proposer());
  EXPECT_EQ(again->number, 1);
  EXPECT_EQ(again->params, params);
}

TEST_P(StudyStore, SilentWorkerTimesOutAndCannotFinishTheTrialItLost) {
  const std::string path = store();
  StudyOptions slow = worker_options("slow");
  StudyOptions fast = worker_options("fast");
  fast.heartbeat_timeout_s = 0.02;
  auto a = open_study(path, make_spec(), OpenMode::kCreate, slow);
  auto t = a->claim_trial(toy_proposer());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));   // longer than fast's timeout
  auto b = open_study(path, make_spec(), OpenMode::kJoin, fast);  // sweeps on open
  auto requeued = b->get(t->number);
  EXPECT_EQ(requeued->state, TrialState::kWaiting);
  EXPECT_EQ(requeued->attrs.at("retries"), "1");
  auto taken = b->claim_trial(toy_proposer());
  EXPECT_EQ(taken->number, t->number);
  EXPECT_EQ(taken->params, t->params);
  EXPECT_FALSE(a->finish_trial(t->number, TrialState::kComplete, {1.0}));
  EXPECT_TRUE(b->finish_trial(t->number, TrialState::kComplete, {2.0}));
  EXPECT_EQ(a->get(t->number)->values, std::vector<double>{2.0});
}

TEST(StudyLocations, BadOptionsAndLocationsAreRefused) {
  TempDir dir;
  StudyOptions bad;
  bad.heartbeat_timeout_s = 0;
  EXPECT_NE(error_of<ConfigError>([&] { open_study(dir.file("a.db"), make_spec(),
                                                   OpenMode::kCreate, bad); })
                .find("heartbeat_timeout_s"),
            std::string::npos);
  bad = StudyOptions{};
  bad.max_retries = -1;
  EXPECT_THROW(open_study(dir.file("a.db"), make_spec(), OpenMode::kCreate, bad), ConfigError);
  const std::string e = error_of<ConfigError>(
      [&] { open_study("mysql://me@host/db", make_spec(), OpenMode::kCreate); });
  EXPECT_NE(e.find("sqlite:///path"), std::string::npos) << e;
  // sqlite:////absolute/path names the same file as the path itself.
  const std::string path = dir.file("url.db");
  run_trials(*open_study("sqlite:///" + path, make_spec(), OpenMode::kCreate), 1);
  EXPECT_EQ(open_study(path, make_spec(), OpenMode::kResume)->trials().size(), 1u);
  StudySpec none = make_spec();
  none.directions.clear();
  EXPECT_THROW(open_study(dir.file("b.db"), none, OpenMode::kCreate), ConfigError);
}

TEST(StudyLocations, PostgresUrlWithoutAServerNamesHostPortAndDatabaseButNeverThePassword) {
  for (const std::string url : {"postgresql://me:s3cret@127.0.0.1:1/tunedb",
                                "postgres://me:s3cret@127.0.0.1:1/tunedb?connect_timeout=5"}) {
    if (!postgres_supported()) {
      const std::string e = error_of<UnsupportedError>(
          [&] { open_study(url, make_spec(), OpenMode::kJoin); });
      EXPECT_NE(e.find("no PostgreSQL support"), std::string::npos) << e;
      EXPECT_NE(e.find("libpq-dev"), std::string::npos) << e;
      EXPECT_EQ(e.find("s3cret"), std::string::npos) << e;
      continue;
    }
    const std::string e =
        error_of<ConfigError>([&] { open_study(url, make_spec(), OpenMode::kJoin); });
    EXPECT_NE(e.find("cannot connect to PostgreSQL at 127.0.0.1:1, database 'tunedb', user 'me'"),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("refused"), std::string::npos) << e;   // libpq's reason
    EXPECT_EQ(e.find("s3cret"), std::string::npos) << e;
  }
  const std::string bad = error_of<ConfigError>(
      [&] { open_study("postgresql://me:s3cret@127.0.0.1:port/db", make_spec(), OpenMode::kJoin); });
  EXPECT_EQ(bad.find("s3cret"), std::string::npos) << bad;
}

TEST(StudyLocations, DisplayLocationHidesPasswordsOnly) {
  EXPECT_EQ(display_location("postgresql://me:pw@db.example:5433/tune"),
            "postgresql://me:***@db.example:5433/tune");
  EXPECT_EQ(display_location("postgres://me@db/tune?sslmode=require&password=pw"),
            "postgres://me@db/tune?sslmode=require&password=***");
  EXPECT_EQ(display_location("postgresql://db.example:5433/tune"),
            "postgresql://db.example:5433/tune");
  EXPECT_EQ(display_location("runs/a:b@c/study.db"), "runs/a:b@c/study.db");
  EXPECT_EQ(display_location("sqlite:///runs/study.db"), "sqlite:///runs/study.db");
  EXPECT_EQ(hide_passwords("study: postgresql://me:pw@h/db\nother: {s: \"postgres://a:b@h/d\"}"),
            "study: postgresql://me:***@h/db\nother: {s: \"postgres://a:***@h/d\"}");
  EXPECT_EQ(hide_passwords("no url here: a:b@c"), "no url here: a:b@c");
}

// ---- files that are not studies ----

TEST(StudyFiles, TextFileIsAnInputErrorNamingThePath) {
  TempDir dir;
  const std::string path = dir.write("notes.db", "these are my notes, not a database\n");
  const std::string e =
      error_of<InputError>([&] { open_study(path, make_spec(), OpenMode::kJoin); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("not a readable study database"), std::string::npos) << e;
  EXPECT_EQ(bytes_of(path), "these are my notes, not a database\n");
}

TEST(StudyFiles, ForeignDatabaseIsRefusedAndLeftUntouched) {
  TempDir dir;
  const std::string path = dir.file("other.db");
  sql(path, "CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x');");
  const std::string before = bytes_of(path);
  const std::string e =
      error_of<InputError>([&] { open_study(path, make_spec(), OpenMode::kJoin); });
  EXPECT_NE(e.find("not a squeeze study"), std::string::npos) << e;
  EXPECT_NE(e.find("songs"), std::string::npos) << e;
  EXPECT_EQ(bytes_of(path), before);
}

TEST(StudyFiles, NewerSchemaVersionIsRefused) {
  TempDir dir;
  const std::string path = dir.file("study.db");
  open_study(path, make_spec(), OpenMode::kCreate);
  sql(path, "PRAGMA user_version = 99;");
  const std::string e =
      error_of<InputError>([&] { open_study(path, make_spec(), OpenMode::kResume); });
  EXPECT_NE(e.find("newer squeeze"), std::string::npos) << e;
}

TEST(StudyFiles, DamagedStudyIsAnInputError) {
  TempDir dir;
  const std::string path = dir.file("study.db");
  run_trials(*open_study(path, make_spec(), OpenMode::kCreate), 3);   // closed: WAL folded in
  std::string bytes = bytes_of(path);
  ASSERT_GT(bytes.size(), 1024u);
  for (size_t i = 100; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + 7);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_THROW(open_study(path, make_spec(), OpenMode::kResume), InputError);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, 50);   // truncated
  EXPECT_THROW(open_study(path, make_spec(), OpenMode::kResume), InputError);
}

TEST(StudyFiles, FolderOrUnwritablePathIsAnInputError) {
  TempDir dir;
  EXPECT_THROW(open_study(dir.path(), make_spec(), OpenMode::kJoin), InputError);
  const std::string file = dir.write("plain", "x");
  EXPECT_THROW(open_study(file + "/study.db", make_spec(), OpenMode::kJoin), InputError);
}

// ---- PostgreSQL databases that are not (only) studies ----

class PostgresStudy : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    try {
      pg_ = PostgresServer::instance(&why);
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    if (!pg_) GTEST_SKIP() << why;
  }
  PostgresServer* pg_ = nullptr;
};

TEST_F(PostgresStudy, OtherApplicationsTablesAreLeftAloneAndStudiesShareADatabaseByName) {
  const std::string url = pg_->create_database();
  // Another application's tables named like the study's, in the default schema.
  pg_->sql(url, "CREATE TABLE trials (title TEXT); INSERT INTO trials VALUES ('mine');");
  run_trials(*open_study(url, make_spec(), OpenMode::kCreate), 2);
  StudySpec other = make_spec();
  other.name = "other";
  other.fingerprint = "cfg-other";
  run_trials(*open_study(url, other, OpenMode::kCreate), 3);
  EXPECT_EQ(pg_->sql(url, "SELECT string_agg(title, ',') FROM public.trials"), "mine");
  EXPECT_EQ(open_study(url, make_spec(), OpenMode::kResume)->trials().size(), 2u);
  EXPECT_EQ(open_study(url, other, OpenMode::kResume)->trials().size(), 3u);
  EXPECT_EQ(pg_->sql(url, "SELECT count(*) FROM squeeze.studies"), "2");
  const std::string e = error_of<InputError>([&] {
    StudySpec missing = make_spec();
    missing.name = "missing";
    open_study(url, missing, OpenMode::kResume);
  });
  EXPECT_NE(e.find("'other', 'tune'"), std::string::npos) << e;
}

TEST_F(PostgresStudy, ForeignSchemaIsRefusedAndLeftUntouched) {
  const std::string url = pg_->create_database();
  pg_->sql(url, "CREATE SCHEMA squeeze; CREATE TABLE squeeze.songs (title TEXT); "
                "INSERT INTO squeeze.songs VALUES ('x');");
  const std::string e =
      error_of<InputError>([&] { open_study(url, make_spec(), OpenMode::kJoin); });
  EXPECT_NE(e.find("not a squeeze study"), std::string::npos) << e;
  EXPECT_NE(e.find("songs"), std::string::npos) << e;
  EXPECT_NE(e.find(url), std::string::npos) << e;
  EXPECT_EQ(pg_->sql(url, "SELECT string_agg(table_name, ',') FROM information_schema.tables "
                          "WHERE table_schema = 'squeeze'"),
            "songs");
}

TEST_F(PostgresStudy, EmptySchemaMadeByAnAdministratorIsFilled) {
  const std::string url = pg_->create_database();
  pg_->sql(url, "CREATE SCHEMA squeeze");
  run_trials(*open_study(url, make_spec(), OpenMode::kCreate), 1);
  EXPECT_EQ(open_study(url, make_spec(), OpenMode::kResume)->trials().size(), 1u);
}

TEST_F(PostgresStudy, NewerSchemaVersionIsRefused) {
  const std::string url = pg_->create_database();
  open_study(url, make_spec(), OpenMode::kCreate);
  pg_->sql(url, "UPDATE squeeze.meta SET value = '99' WHERE key = 'schema_version'");
  const std::string e =
      error_of<InputError>([&] { open_study(url, make_spec(), OpenMode::kResume); });
  EXPECT_NE(e.find("newer squeeze"), std::string::npos) << e;
}

TEST_F(PostgresStudy, MissingDatabaseIsAConfigErrorNamingIt) {
  const std::string url = pg_->url("no_such_db");
  const std::string e =
      error_of<ConfigError>([&] { open_study(url, make_spec(), OpenMode::kJoin); });
  EXPECT_NE(e.find("database 'no_such_db'"), std::string::npos) << e;
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;   // the server's reason
  EXPECT_NE(e.find(std::to_string(pg_->port())), std::string::npos) << e;
}

TEST_F(PostgresStudy, PostgresSchemeAndLibpqParametersAreAccepted) {
  std::string url = pg_->create_database();
  const std::string short_url = "postgres://" + url.substr(std::string("postgresql://").size()) +
                                "?application_name=tuner&connect_timeout=5";
  run_trials(*open_study(short_url, make_spec(), OpenMode::kCreate), 2);
  EXPECT_EQ(open_study(url, make_spec(), OpenMode::kResume)->trials().size(), 2u);
}

// ---- several processes ----

TEST_P(StudyWorkers, TrialOfAKilledWorkerIsRetriedOnResumeAndFinishedOnesAreNot) {
  const std::string path = store();
  run_trials(*open_study(path, make_spec(), OpenMode::kCreate), 2);

  const int code = in_child([&] {
    auto study = open_study(path, make_spec(), OpenMode::kResume, worker_options("doomed"));
    auto t = study->claim_trial(toy_proposer());
    if (!t || t->number != 2) return 3;
    if (!study->report_intermediate(t->number, 0, 0.4)) return 4;
    _exit(0);   // dies holding trial 2: no finish, no destructor
  });
  ASSERT_EQ(code, 0);

  int proposals = 0;
  auto counting = [&](int64_t n, const std::vector<Trial>& h) {
    ++proposals;
    return toy_propose(7, n, h);
  };
  auto study = open_study(path, make_spec(), OpenMode::kResume);
  const std::vector<Trial> before = study->trials();
  ASSERT_EQ(before.size(), 3u);
  EXPECT_EQ(before[0].state, TrialState::kComplete);
  EXPECT_EQ(before[1].state, TrialState::kComplete);
  EXPECT_EQ(before[2].state, TrialState::kWaiting);
  EXPECT_EQ(before[2].worker, "doomed");
  EXPECT_EQ(before[2].attrs.at("retries"), "1");
  EXPECT_TRUE(before[2].intermediate.empty());

  auto retried = study->claim_trial(counting);
  EXPECT_EQ(retried->number, 2);
  EXPECT_EQ(retried->params, before[2].params);
  EXPECT_EQ(proposals, 0);
  EXPECT_TRUE(study->finish_trial(2, TrialState::kComplete, {objective(*retried)}));
  EXPECT_EQ(study->claim_trial(counting)->number, 3);
  EXPECT_EQ(proposals, 1);
  const std::vector<Trial> after = study->trials();
  for (int i = 0; i < 2; ++i) expect_same_trial(after[i], before[i]);
}

TEST_P(StudyWorkers, ResumedSearchProposesTheSameTrialsAsAnUninterruptedOne) {
  const std::string straight = store("straight"), resumed = store("resumed");
  run_trials(*open_study(straight, make_spec(), OpenMode::kCreate), 7);

  run_trials(*open_study(resumed, make_spec(), OpenMode::kCreate), 3);
  for (int death = 0; death < 2; ++death) {   // killed twice in the middle of trial 3
    ASSERT_EQ(in_child([&]() -> int {
                auto study = open_study(resumed, make_spec(), OpenMode::kResume);
                auto t = study->claim_trial(toy_proposer());
                _exit(t && t->number == 3 ? 0 : 3);   // dies holding it
              }),
              0);
  }
  run_trials(*open_study(resumed, make_spec(), OpenMode::kResume), 7);

  const auto a = open_study(straight, make_spec(), OpenMode::kLoad)->trials();
  const auto b = open_study(resumed, make_spec(), OpenMode::kLoad)->trials();
  ASSERT_EQ(a.size(), 7u);
  ASSERT_EQ(b.size(), 7u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].params, b[i].params) << "trial " << i;
    EXPECT_EQ(a[i].values, b[i].values) << "trial " << i;
    EXPECT_EQ(b[i].state, TrialState::kComplete);
  }
  EXPECT_EQ(b[3].attrs.at("retries"), "2");
}

TEST_P(StudyWorkers, TrialThatKeepsKillingItsWorkerIsFailedAfterMaxRetries) {
  const std::string path = store();
  StudyOptions options;
  options.max_retries = 1;
  open_study(path, make_spec(), OpenMode::kCreate, options);
  for (int death = 0; death < 2; ++death) {
    ASSERT_EQ(in_child([&]() -> int {
                auto study = open_study(path, make_spec(), OpenMode::kResume, options);
                auto t = study->claim_trial(toy_proposer());
                _exit(t && t->number == 0 ? 0 : 3);   // dies holding it
              }),
              0);
  }
  auto study = open_study(path, make_spec(), OpenMode::kResume, options);
  const Trial t0 = *study->get(0);
  EXPECT_EQ(t0.state, TrialState::kFailed);
  EXPECT_NE(t0.attrs.at("reason").find("abandoned 2 times"), std::string::npos)
      << t0.attrs.at("reason");
  EXPECT_NE(t0.attrs.at("reason").find("is gone"), std::string::npos) << t0.attrs.at("reason");
  EXPECT_EQ(study->claim_trial(toy_proposer())->number, 1);   // the search goes on
}

TEST_P(StudyWorkers, WorkerKilledAtAnyMomentLeavesAStudyThatResumes) {
  const std::string path = store();
  int done[2];   // the worker writes a byte after each finished trial
  ASSERT_EQ(pipe(done), 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(done[0]);
    try {
      auto study = open_study(path, make_spec(), OpenMode::kJoin);
      while (auto t = study->claim_trial(toy_proposer())) {
        if (!study->report_intermediate(t->number, 0, 0.5) ||
            !study->finish_trial(t->number, TrialState::kComplete, {objective(*t)}))
          _exit(4);
        if (write(done[1], "x", 1) != 1) _exit(5);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker: %s\n", e.what());
    }
    _exit(90);
  }
  close(done[1]);
  char byte;
  for (int i = 0; i < 5; ++i) ASSERT_EQ(read(done[0], &byte, 1), 1);
  kill(pid, SIGKILL);   // wherever it is: inside a transaction or between two
  int status = 0;
  waitpid(pid, &status, 0);
  close(done[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;

  auto study = open_study(path, make_spec(), OpenMode::kResume);
  const std::vector<Trial> before = study->trials();
  ASSERT_GE(before.size(), 5u);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].number, static_cast<int64_t>(i));
    if (i + 1 < before.size()) EXPECT_EQ(before[i].state, TrialState::kComplete) << i;
  }
  const Trial& last = before.back();   // complete, or re-queued after the kill
  if (last.state != TrialState::kComplete) {
    EXPECT_EQ(last.state, TrialState::kWaiting);
    EXPECT_EQ(last.attrs.at("retries"), "1");
  }
  const int64_t n = static_cast<int64_t>(before.size());
  run_trials(*study, n + 2);
  const std::vector<Trial> after = study->trials();
  ASSERT_EQ(after.size(), before.size() + 2);
  for (const Trial& t : after) EXPECT_EQ(t.state, TrialState::kComplete) << t.number;
  for (int64_t i = 0; i + 1 < n; ++i) expect_same_trial(after[i], before[i]);
}

TEST_P(StudyWorkers, ConcurrentWorkersClaimEveryNumberExactlyOnce) {
  const std::string path = store("shared/study");   // created by whichever worker is first
  constexpr int kWorkers = 4;
  constexpr int64_t kTrials = 40;
  std::vector<pid_t> pids;
  int gate[2];   // the workers start together: they wait until the parent closes the pipe
  ASSERT_EQ(pipe(gate), 0);
  std::fflush(nullptr);
  for (int w = 0; w < kWorkers; ++w) {
    const pid_t pid = fork();
    if (pid == 0) {
      int code = 0;
      close(gate[1]);
      char byte;
      while (read(gate[0], &byte, 1) > 0) {
      }
      try {
        auto study = open_study(path, make_spec(), OpenMode::kJoin,
                                worker_options("w" + std::to_string(w)));
        std::ofstream log(dir.file("claims-" + std::to_string(w)));
        // The history a proposal sees is every earlier number, each exactly once.
        auto propose = [&](int64_t n, const std::vector<Trial>& h) {
          if (static_cast<int64_t>(h.size()) != n) throw std::runtime_error("history has a gap");
          for (int64_t i = 0; i < n; ++i)
            if (h[static_cast<size_t>(i)].number != i) throw std::runtime_error("history order");
          return toy_propose(7, n, h);
        };
        while (auto t = study->claim_trial(propose, kTrials)) {
          log << t->number << "\n" << std::flush;
          // Some work, so that the workers' transactions interleave.
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          if (!study->report_intermediate(t->number, 0, 0.1) ||
              !study->report_intermediate(t->number, 1, 0.2) ||
              !study->heartbeat(t->number) ||
              !study->finish_trial(t->number, TrialState::kComplete, {t->number * 0.5},
                                   {{"by", study->worker()}})) {
            code = 4;
            break;
          }
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker %d: %s\n", w, e.what());
        code = 90;
      }
      _exit(code);
    }
    pids.push_back(pid);
  }
  close(gate[0]);
  close(gate[1]);
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker status " << status;
  }

  std::multiset<int64_t> claimed;
  std::map<int64_t, std::string> claimed_by;
  for (int w = 0; w < kWorkers; ++w) {
    std::ifstream log(dir.file("claims-" + std::to_string(w)));
    for (int64_t n; log >> n;) {
      claimed.insert(n);
      claimed_by[n] = "w" + std::to_string(w);
    }
  }
  ASSERT_EQ(claimed.size(), static_cast<size_t>(kTrials));
  for (int64_t n = 0; n < kTrials; ++n) EXPECT_EQ(claimed.count(n), 1u) << "trial " << n;

  const auto trials = open_study(path, make_spec(), OpenMode::kLoad)->trials();
  ASSERT_EQ(trials.size(), static_cast<size_t>(kTrials));
  for (const Trial& t : trials) {
    EXPECT_EQ(t.state, TrialState::kComplete);
    EXPECT_EQ(t.values, std::vector<double>{t.number * 0.5});
    EXPECT_EQ(t.worker, claimed_by[t.number]);
    EXPECT_EQ(t.attrs.at("by"), claimed_by[t.number]);
    EXPECT_EQ(t.intermediate.size(), 2u);
  }
}

}  // namespace
}  // namespace squeeze::pipeline
