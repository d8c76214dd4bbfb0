// The SQLite study backend: one database file, shared by the worker processes of one machine.
//
// Concurrency: WAL journal (readers never block the writer), a busy timeout for the write lock,
// and every write in a BEGIN IMMEDIATE transaction, which takes the write lock before reading,
// so "read the next number, insert it" cannot interleave between processes. synchronous=NORMAL
// keeps every committed transaction across a process crash (SIGKILL); only a power loss may drop
// the last ones. SQLite's locks need a local file system: not NFS.
//
// Schema (version 1, PRAGMA user_version; PRAGMA application_id marks the file as squeeze's):
//   studies(study_id, name UNIQUE, directions "maximize,minimize", seed, fingerprint, created)
//   study_params(study_id, name, kind, low, high, step)        the search space, one row a param
//   study_choices(study_id, name, idx, choice)                  categorical choices in order
//   trials(trial_id, study_id, number, state, worker, host, boot, pid, pid_start, heartbeat,
//          created, started, finished, retries)                 UNIQUE(study_id, number)
//   trial_params(trial_id, name, value)     trial_values(trial_id, idx, value)
//   trial_intermediate(trial_id, step, value)     trial_attrs(trial_id, key, value)
// Times are Unix seconds. Values are REAL; SQLite stores NaN as NULL, read back as NaN.
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "pipeline/study_internal.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline::detail {
namespace {

constexpr int kApplicationId = 0x53515a53;   // "SQZS"
constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE studies (
  study_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  directions TEXT NOT NULL,
  seed INTEGER NOT NULL,
  fingerprint TEXT NOT NULL,
  created REAL NOT NULL
);
CREATE TABLE study_params (
  study_id INTEGER NOT NULL REFERENCES studies(study_id),
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  low REAL NOT NULL,
  high REAL NOT NULL,
  step REAL NOT NULL,
  PRIMARY KEY (study_id, name)
);
CREATE TABLE study_choices (
  study_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  idx INTEGER NOT NULL,
  choice TEXT NOT NULL,
  PRIMARY KEY (study_id, name, idx),
  FOREIGN KEY (study_id, name) REFERENCES study_params(study_id, name)
);
CREATE TABLE trials (
  trial_id INTEGER PRIMARY KEY,
  study_id INTEGER NOT NULL REFERENCES studies(study_id),
  number INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'complete', 'pruned', 'failed')),
  worker TEXT NOT NULL DEFAULT '',
  host TEXT NOT NULL DEFAULT '',
  boot TEXT NOT NULL DEFAULT '',
  pid INTEGER NOT NULL DEFAULT 0,
  pid_start INTEGER NOT NULL DEFAULT 0,
  heartbeat REAL,
  created REAL NOT NULL,
  started REAL,
  finished REAL,
  retries INTEGER NOT NULL DEFAULT 0,
  UNIQUE (study_id, number)
);
CREATE INDEX trials_by_state ON trials(study_id, state, number);
CREATE TABLE trial_params (
  trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
  name TEXT NOT NULL,
  value REAL,
  PRIMARY KEY (trial_id, name)
);
CREATE TABLE trial_values (
  trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
  idx INTEGER NOT NULL,
  value REAL,
  PRIMARY KEY (trial_id, idx)
);
CREATE TABLE trial_intermediate (
  trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
  step INTEGER NOT NULL,
  value REAL,
  PRIMARY KEY (trial_id, step)
);
CREATE TABLE trial_attrs (
  trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (trial_id, key)
);
)sql";

// The state names are the schema's: to_string(TrialState) spells them.
TrialState parse_state(const std::string& text, bool* ok) {
  for (auto s : {TrialState::kWaiting, TrialState::kRunning, TrialState::kComplete,
                 TrialState::kPruned, TrialState::kFailed})
    if (text == to_string(s)) return s;
  *ok = false;
  return TrialState::kFailed;
}

class Db;

// A prepared statement: bind by 1-based index, step through rows. NaN binds as NULL and NULL
// reads back as NaN, so every double survives the trip.
class Stmt {
 public:
  Stmt(Db& db, const char* sql);
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Stmt& bind(int i, double v) {
    check(std::isnan(v) ? sqlite3_bind_null(stmt_, i) : sqlite3_bind_double(stmt_, i, v));
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  // True while there is a row to read.
  bool step();
  // Runs a statement that returns no rows; the number of rows it changed.
  int64_t run();

  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL ? std::numeric_limits<double>::quiet_NaN()
                                                          : sqlite3_column_double(stmt_, col);
  }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }

 private:
  void check(int rc);
  Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
};

class Db {
 public:
  Db(const std::string& path, double busy_timeout_s) : path_(path), busy_timeout_s_(busy_timeout_s) {
    const int rc = sqlite3_open_v2(path.c_str(), &db_,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    if (rc != SQLITE_OK) {
      const std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      db_ = nullptr;
      throw InputError(msg(path, ": cannot open the study database (", detail,
                           "); give a writable file path"));
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, static_cast<int>(busy_timeout_s * 1000.0));
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(const char* sql) {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) fail(rc, sql);
  }

  // Turns a SQLite failure into squeeze's errors: a damaged or foreign file is the user's to fix
  // (InputError), a lock held too long or an I/O failure is a runtime Error.
  [[noreturn]] void fail(int rc, const std::string& what) const {
    const std::string detail = sqlite3_errmsg(db_);
    switch (rc & 0xff) {
      case SQLITE_NOTADB:
      case SQLITE_CORRUPT:
        throw InputError(msg(path_, ": not a readable study database (", detail,
                             "); give a study file written by squeeze, or a path for a new one"));
      case SQLITE_CANTOPEN:
      case SQLITE_READONLY:
      case SQLITE_PERM:
        throw InputError(msg(path_, ": cannot write the study database (", detail,
                             "); give a writable file path"));
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        throw Error(msg(path_, ": the study database stayed locked by another process for more "
                        "than ", busy_timeout_s_, " s (", detail, ") while running: ", what));
      default:
        throw Error(msg(path_, ": study database error (", detail, ") while running: ", what));
    }
  }

  int64_t changes() const { return sqlite3_changes64(db_); }
  int64_t last_rowid() const { return sqlite3_last_insert_rowid(db_); }
  sqlite3* handle() { return db_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  double busy_timeout_s_;
  sqlite3* db_ = nullptr;
};

Stmt::Stmt(Db& db, const char* sql) : db_(db), sql_(sql) {
  const int rc = sqlite3_prepare_v2(db.handle(), sql, -1, &stmt_, nullptr);
  if (rc != SQLITE_OK) db_.fail(rc, sql_);
}

void Stmt::check(int rc) {
  if (rc != SQLITE_OK) db_.fail(rc, sql_);
}

bool Stmt::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail(rc, sql_);
}

int64_t Stmt::run() {
  while (step()) {
  }
  return db_.changes();
}

// BEGIN (IMMEDIATE for writes: the write lock before the first read), COMMIT on commit(),
// ROLLBACK when left by an exception.
class Transaction {
 public:
  Transaction(Db& db, bool write) : db_(db) { db_.exec(write ? "BEGIN IMMEDIATE" : "BEGIN"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    db_.exec("COMMIT");
    done_ = true;
  }

 private:
  Db& db_;
  bool done_ = false;
};

std::string join_directions(const std::vector<Direction>& ds) {
  std::vector<std::string> names;
  for (Direction d : ds) names.push_back(to_string(d));
  return join(names, ",");
}

class SqliteStudy final : public Study {
 public:
  SqliteStudy(const std::string& path, const std::string& location, const StudySpec& spec,
              OpenMode mode, const StudyOptions& options)
      : db_(path, options.busy_timeout_s),
        location_(location),
        options_(options),
        worker_(worker_name(options)),
        me_(this_process()) {
    prepare_file();
    Transaction tx(db_, mode != OpenMode::kLoad);
    std::optional<StudySpec> stored = load_spec(spec.name);
    if (!stored && (mode == OpenMode::kCreate || mode == OpenMode::kJoin)) {
      create(spec);
    } else if (!stored) {
      throw InputError(msg("no study '", spec.name, "' in ", location_, " (it holds: ",
                           study_names(), "); start it without resuming"));
    } else if (mode == OpenMode::kCreate) {
      throw ConfigError(msg("study '", spec.name, "' already exists in ", location_, " with ",
                            count_trials(), " trials: resume it, join it as a worker, or give ",
                            "another study file or name"));
    } else {
      if (mode != OpenMode::kLoad) check_same_spec(*stored, spec, location_);
      spec_ = *stored;
      study_id_ = stored_id_;
    }
    if (mode != OpenMode::kLoad) sweep();
    tx.commit();
  }

  // A trial still held here was dropped without an ending (an exception unwound past the
  // study): it is abandoned like a dead worker's, so one that always throws ends up failed
  // instead of stopping every resumed search. A clean interruption calls release_trial first.
  ~SqliteStudy() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> numbers;
    for (const auto& entry : held_) numbers.push_back(entry.first);
    for (int64_t number : numbers) {
      try {
        Transaction tx(db_, true);
        const int64_t trial_id = held_trial(number, now_seconds());
        if (trial_id < 0) continue;
        Stmt q(db_, "SELECT retries FROM trials WHERE trial_id = ?");
        q.bind(1, trial_id);
        q.step();
        abandon(trial_id, q.integer(0),
                msg("its worker ", worker_, " dropped it without finishing"));
        tx.commit();
      } catch (const std::exception&) {
        // Nothing more to do here: once this process exits, the next sweep re-queues it.
      }
    }
  }

  const StudySpec& spec() const override { return spec_; }
  const std::string& location() const override { return location_; }
  const std::string& worker() const override { return worker_; }

  std::optional<Trial> claim_trial(const Proposer& propose, int64_t max_trials) override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, true);
    sweep();
    int64_t number = -1;
    {
      Stmt q(db_, "SELECT number FROM trials WHERE study_id = ? AND state = 'waiting' "
                  "ORDER BY number LIMIT 1");
      q.bind(1, study_id_);
      if (q.step()) number = q.integer(0);
    }
    const double now = now_seconds();
    if (number >= 0) {
      Stmt u(db_, "UPDATE trials SET state = 'running', worker = ?, host = ?, boot = ?, pid = ?, "
                  "pid_start = ?, heartbeat = ?, started = ? WHERE study_id = ? AND number = ?");
      bind_holder(u, 1).bind(6, now).bind(7, now).bind(8, study_id_).bind(9, number).run();
    } else {
      number = next_number();
      if (number >= max_trials) {
        tx.commit();   // keeps what sweep() changed
        return std::nullopt;
      }
      std::map<std::string, double> params = propose(number, load_trials(std::nullopt));
      const std::string problem = params_problem(spec_.space, params);
      if (!problem.empty())
        throw InternalError(msg("the sampler proposed an invalid trial ", number, " for study '",
                                spec_.name, "': ", problem));
      Stmt ins(db_, "INSERT INTO trials (study_id, number, state, worker, host, boot, pid, "
                    "pid_start, heartbeat, created, started) "
                    "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)");
      ins.bind(1, study_id_).bind(2, number);
      bind_holder(ins, 3).bind(8, now).bind(9, now).bind(10, now).run();
      insert_params(db_.last_rowid(), params);
    }
    std::vector<Trial> claimed = load_trials(number);
    tx.commit();
    held_[number] = now;
    return claimed.at(0);
  }

  int64_t enqueue_trial(const std::map<std::string, double>& params,
                        const std::map<std::string, std::string>& attrs) override {
    const std::string problem = params_problem(spec_.space, params);
    if (!problem.empty())
      throw ConfigError(msg("cannot enqueue a trial in study '", spec_.name, "': ", problem));
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, true);
    const int64_t number = next_number();
    Stmt ins(db_, "INSERT INTO trials (study_id, number, state, created) "
                  "VALUES (?, ?, 'waiting', ?)");
    ins.bind(1, study_id_).bind(2, number).bind(3, now_seconds()).run();
    const int64_t trial_id = db_.last_rowid();
    insert_params(trial_id, params);
    upsert_attrs(trial_id, attrs);
    tx.commit();
    return number;
  }

  bool report_intermediate(int64_t number, int64_t step, double value) override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, true);
    const double now = now_seconds();
    const int64_t trial_id = held_trial(number, now);
    if (trial_id < 0) return false;
    Stmt ins(db_, "INSERT OR REPLACE INTO trial_intermediate (trial_id, step, value) "
                  "VALUES (?, ?, ?)");
    ins.bind(1, trial_id).bind(2, step).bind(3, value).run();
    tx.commit();
    held_[number] = now;
    return true;
  }

  bool heartbeat(int64_t number) override {
    std::lock_guard<std::mutex> lock(mu_);
    const double now = now_seconds();
    auto it = held_.find(number);
    if (it != held_.end() && now - it->second < options_.heartbeat_timeout_s / 10 &&
        now >= it->second)
      return true;
    Transaction tx(db_, true);
    if (held_trial(number, now) < 0) return false;
    tx.commit();
    held_[number] = now;
    return true;
  }

  bool finish_trial(int64_t number, TrialState state, const std::vector<double>& values,
                    const std::map<std::string, std::string>& attrs) override {
    if (state != TrialState::kComplete && state != TrialState::kPruned &&
        state != TrialState::kFailed)
      throw InternalError(msg("finish_trial(", number, "): state ", to_string(state),
                              " does not end a trial; use complete, pruned or failed"));
    const size_t n = spec_.directions.size();
    if (values.size() != n && !(values.empty() && state != TrialState::kComplete))
      throw InternalError(msg("finish_trial(", number, ", ", to_string(state), "): ",
                              values.size(), " values for a study with ", n, " directions"));
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, true);
    const double now = now_seconds();
    const int64_t trial_id = held_trial(number, now);
    if (trial_id < 0) return false;
    Stmt u(db_, "UPDATE trials SET state = ?, finished = ? WHERE trial_id = ?");
    u.bind(1, std::string(to_string(state))).bind(2, now).bind(3, trial_id).run();
    Stmt d(db_, "DELETE FROM trial_values WHERE trial_id = ?");
    d.bind(1, trial_id).run();
    for (size_t i = 0; i < values.size(); ++i) {
      Stmt ins(db_, "INSERT INTO trial_values (trial_id, idx, value) VALUES (?, ?, ?)");
      ins.bind(1, trial_id).bind(2, static_cast<int64_t>(i)).bind(3, values[i]).run();
    }
    upsert_attrs(trial_id, attrs);
    tx.commit();
    held_.erase(number);
    return true;
  }

  bool release_trial(int64_t number) override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, true);
    const int64_t trial_id = held_trial(number, now_seconds());
    if (trial_id < 0) return false;
    requeue(trial_id, /*retries=*/-1);
    tx.commit();
    held_.erase(number);
    return true;
  }

  int64_t requeue_abandoned() override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, true);
    const int64_t changed = sweep();
    tx.commit();
    return changed;
  }

  std::vector<Trial> trials() const override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, false);
    std::vector<Trial> all = load_trials(std::nullopt);
    tx.commit();
    return all;
  }

  std::optional<Trial> get(int64_t number) const override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_, false);
    std::vector<Trial> found = load_trials(number);
    tx.commit();
    if (found.empty()) return std::nullopt;
    return found[0];
  }

 private:
  // Checks the file is a squeeze study database of a version this build reads, and creates the
  // schema in an empty one. Leaves a foreign database untouched.
  void prepare_file() {
    bool ours = false;
    {
      Transaction read(db_, false);   // the header and the table list from one snapshot
      ours = inspect_file();
      read.commit();
    }
    if (!ours) {
      Transaction tx(db_, true);
      if (!inspect_file()) {   // another process may have created it meanwhile
        db_.exec(kSchema);
        db_.exec(msg("PRAGMA application_id = ", kApplicationId, ";").c_str());
        db_.exec(msg("PRAGMA user_version = ", kSchemaVersion, ";").c_str());
      }
      tx.commit();
    }
    // WAL is a property of the file; a switch that cannot get its lock leaves the rollback
    // journal in place, which is slower under contention but equally correct.
    sqlite3_exec(db_.handle(), "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr);
    db_.exec("PRAGMA synchronous = NORMAL");
    db_.exec("PRAGMA foreign_keys = ON");
  }

  // True for a squeeze study database, false for an empty one; throws InputError otherwise.
  bool inspect_file() {
    int64_t app_id = 0, version = 0;
    {
      Stmt q(db_, "PRAGMA application_id");
      if (q.step()) app_id = q.integer(0);
    }
    {
      Stmt q(db_, "PRAGMA user_version");
      if (q.step()) version = q.integer(0);
    }
    std::vector<std::string> tables;
    {
      Stmt q(db_, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                  "'sqlite_%' ORDER BY name");
      while (q.step()) tables.push_back(q.text(0));
    }
    if (app_id == kApplicationId) {
      if (version > kSchemaVersion)
        throw InputError(msg(db_.path(), ": study database schema version ", version,
                             " was written by a newer squeeze; this build reads version ",
                             kSchemaVersion, " and older"));
      if (version < 1)
        throw InputError(msg(db_.path(), ": study database has no schema version; it is damaged"));
      return true;
    }
    if (app_id == 0 && tables.empty()) return false;
    throw InputError(msg(db_.path(), ": a SQLite database but not a squeeze study (application id ",
                         app_id, ", tables: ", tables.empty() ? std::string("none") : join(tables, ", "),
                         "); give a study file written by squeeze, or a path for a new one"));
  }

  std::string study_names() {
    std::vector<std::string> names;
    Stmt q(db_, "SELECT name FROM studies ORDER BY name");
    while (q.step()) names.push_back("'" + q.text(0) + "'");
    return names.empty() ? std::string("no study") : join(names, ", ");
  }

  std::optional<StudySpec> load_spec(const std::string& name) {
    StudySpec s;
    s.name = name;
    {
      Stmt q(db_, "SELECT study_id, directions, seed, fingerprint FROM studies WHERE name = ?");
      q.bind(1, name);
      if (!q.step()) return std::nullopt;
      stored_id_ = q.integer(0);
      s.directions.clear();
      const std::string dirs = q.text(1);
      size_t begin = 0;
      while (begin <= dirs.size()) {
        size_t end = dirs.find(',', begin);
        if (end == std::string::npos) end = dirs.size();
        const std::string d = dirs.substr(begin, end - begin);
        if (d != "maximize" && d != "minimize") damaged("direction '" + d + "'");
        s.directions.push_back(parse_direction(d));
        begin = end + 1;
      }
      s.seed = static_cast<uint64_t>(q.integer(2));
      s.fingerprint = q.text(3);
    }
    {
      Stmt q(db_, "SELECT name, kind, low, high, step FROM study_params WHERE study_id = ?");
      q.bind(1, stored_id_);
      while (q.step()) {
        Distribution d;
        if (!parse_kind(q.text(1), &d.kind)) damaged("parameter kind '" + q.text(1) + "'");
        d.low = q.real(2);
        d.high = q.real(3);
        d.step = q.real(4);
        s.space[q.text(0)] = d;
      }
    }
    {
      Stmt q(db_, "SELECT name, choice FROM study_choices WHERE study_id = ? ORDER BY name, idx");
      q.bind(1, stored_id_);
      while (q.step()) {
        auto it = s.space.find(q.text(0));
        if (it == s.space.end()) damaged("choice of unknown parameter '" + q.text(0) + "'");
        it->second.choices.push_back(q.text(1));
      }
    }
    return s;
  }

  [[noreturn]] void damaged(const std::string& what) const {
    throw InputError(msg(db_.path(), ": study database holds an invalid ", what,
                         "; it is damaged or was not written by squeeze"));
  }

  void create(const StudySpec& spec) {
    Stmt ins(db_, "INSERT INTO studies (name, directions, seed, fingerprint, created) "
                  "VALUES (?, ?, ?, ?, ?)");
    ins.bind(1, spec.name).bind(2, join_directions(spec.directions))
        .bind(3, static_cast<int64_t>(spec.seed)).bind(4, spec.fingerprint)
        .bind(5, now_seconds()).run();
    study_id_ = db_.last_rowid();
    for (const auto& [name, d] : spec.space) {
      Stmt p(db_, "INSERT INTO study_params (study_id, name, kind, low, high, step) "
                  "VALUES (?, ?, ?, ?, ?, ?)");
      p.bind(1, study_id_).bind(2, name).bind(3, std::string(kind_name(d.kind)))
          .bind(4, d.low).bind(5, d.high).bind(6, d.step).run();
      for (size_t i = 0; i < d.choices.size(); ++i) {
        Stmt c(db_, "INSERT INTO study_choices (study_id, name, idx, choice) VALUES (?, ?, ?, ?)");
        c.bind(1, study_id_).bind(2, name).bind(3, static_cast<int64_t>(i)).bind(4, d.choices[i])
            .run();
      }
    }
    spec_ = spec;
  }

  int64_t count_trials() {
    Stmt q(db_, "SELECT COUNT(*) FROM trials WHERE study_id = ?");
    q.bind(1, stored_id_);
    return q.step() ? q.integer(0) : 0;
  }

  int64_t next_number() {
    Stmt q(db_, "SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?");
    q.bind(1, study_id_);
    return q.step() ? q.integer(0) : 0;
  }

  // Binds worker, host, boot, pid, pid_start from index `first`.
  Stmt& bind_holder(Stmt& s, int first) {
    return s.bind(first, worker_).bind(first + 1, me_.host).bind(first + 2, me_.boot)
        .bind(first + 3, me_.pid).bind(first + 4, me_.start);
  }

  // The trial_id of trial `number` if this worker holds it (and records a heartbeat), else -1.
  // Throws InputError for a number the study does not have.
  int64_t held_trial(int64_t number, double now) {
    Stmt u(db_, "UPDATE trials SET heartbeat = ? WHERE study_id = ? AND number = ? AND "
                "state = 'running' AND worker = ? AND host = ? AND boot = ? AND pid = ? AND "
                "pid_start = ?");
    u.bind(1, now).bind(2, study_id_).bind(3, number);
    if (bind_holder(u, 4).run() == 1) {
      Stmt q(db_, "SELECT trial_id FROM trials WHERE study_id = ? AND number = ?");
      q.bind(1, study_id_).bind(2, number);
      q.step();
      return q.integer(0);
    }
    Stmt q(db_, "SELECT 1 FROM trials WHERE study_id = ? AND number = ?");
    q.bind(1, study_id_).bind(2, number);
    if (!q.step())
      throw InputError(msg("study '", spec_.name, "' in ", location_, " has no trial ", number));
    held_.erase(number);
    return -1;
  }

  void insert_params(int64_t trial_id, const std::map<std::string, double>& params) {
    for (const auto& [name, value] : params) {
      Stmt p(db_, "INSERT INTO trial_params (trial_id, name, value) VALUES (?, ?, ?)");
      p.bind(1, trial_id).bind(2, name).bind(3, value).run();
    }
  }

  void upsert_attrs(int64_t trial_id, const std::map<std::string, std::string>& attrs) {
    for (const auto& [key, value] : attrs) {
      Stmt p(db_, "INSERT OR REPLACE INTO trial_attrs (trial_id, key, value) VALUES (?, ?, ?)");
      p.bind(1, trial_id).bind(2, key).bind(3, value).run();
    }
  }

  void clear_results(int64_t trial_id) {
    for (const char* sql : {"DELETE FROM trial_values WHERE trial_id = ?",
                            "DELETE FROM trial_intermediate WHERE trial_id = ?"}) {
      Stmt d(db_, sql);
      d.bind(1, trial_id).run();
    }
  }

  // Back to waiting with the same parameters; a retry starts from scratch, so the abandoned
  // attempt's intermediate values go (a pruner would compare against them otherwise).
  // `retries` < 0 keeps the count.
  void requeue(int64_t trial_id, int64_t retries) {
    clear_results(trial_id);
    Stmt u(db_, "UPDATE trials SET state = 'waiting', heartbeat = NULL, started = NULL, "
                "retries = CASE WHEN ? < 0 THEN retries ELSE ? END WHERE trial_id = ?");
    u.bind(1, retries).bind(2, retries).bind(3, trial_id).run();
  }

  // Re-queues running trials whose worker is gone or silent; past max_retries, fails them.
  // Runs inside the caller's write transaction.
  int64_t sweep() {
    struct Abandoned {
      int64_t trial_id, number, retries;
      std::string why;
    };
    std::vector<Abandoned> found;
    const double now = now_seconds();
    {
      Stmt q(db_, "SELECT trial_id, number, worker, host, boot, pid, pid_start, heartbeat, "
                  "retries FROM trials WHERE study_id = ? AND state = 'running'");
      q.bind(1, study_id_);
      while (q.step()) {
        ProcessIdentity holder{q.text(3), q.text(4), q.integer(5), q.integer(6)};
        const double beat = q.real(7);
        std::string why;
        if (process_gone(holder))
          why = msg("its worker ", q.text(2), " (pid ", holder.pid, " on ", holder.host,
                    ") is gone");
        else if (!(now - beat <= options_.heartbeat_timeout_s))   // NaN (no beat) counts too
          why = msg("its worker ", q.text(2), " sent no heartbeat for ",
                    format_double(std::round(now - beat)), " s (timeout ",
                    format_double(options_.heartbeat_timeout_s), " s)");
        if (!why.empty()) found.push_back({q.integer(0), q.integer(1), q.integer(8), why});
      }
    }
    for (const Abandoned& a : found) {
      abandon(a.trial_id, a.retries, a.why);
      held_.erase(a.number);
    }
    return static_cast<int64_t>(found.size());
  }

  // A trial whose attempt ended without a result: back to waiting, or failed once it has been
  // retried max_retries times.
  void abandon(int64_t trial_id, int64_t retries, const std::string& why) {
    if (retries < options_.max_retries) {
      requeue(trial_id, retries + 1);
      return;
    }
    Stmt u(db_, "UPDATE trials SET state = 'failed', finished = ? WHERE trial_id = ?");
    u.bind(1, now_seconds()).bind(2, trial_id).run();
    upsert_attrs(trial_id, {{"reason", msg("abandoned ", retries + 1, " times; last: ", why)}});
  }

  // Trial `number`, or every trial when absent, ordered by number.
  std::vector<Trial> load_trials(std::optional<int64_t> number) const {
    std::vector<Trial> out;
    std::unordered_map<int64_t, size_t> index;   // trial_id -> position in out
    const std::string filter = number ? " AND t.number = ?" : "";
    auto query = [&](const std::string& sql) {
      auto s = std::make_unique<Stmt>(db_, sql.c_str());
      s->bind(1, study_id_);
      if (number) s->bind(2, *number);
      return s;
    };
    {
      auto q = query("SELECT t.trial_id, t.number, t.state, t.worker, t.retries FROM trials t "
                     "WHERE t.study_id = ?" + filter + " ORDER BY t.number");
      while (q->step()) {
        Trial t;
        t.number = q->integer(1);
        bool ok = true;
        t.state = parse_state(q->text(2), &ok);
        if (!ok) damaged("trial state '" + q->text(2) + "'");
        t.worker = q->text(3);
        if (q->integer(4) > 0) t.attrs["retries"] = std::to_string(q->integer(4));
        index[q->integer(0)] = out.size();
        out.push_back(std::move(t));
      }
    }
    auto each = [&](const char* table, const char* cols, const std::function<void(Trial&, Stmt&)>& f) {
      auto q = query(msg("SELECT x.trial_id, ", cols, " FROM ", table,
                         " x JOIN trials t ON t.trial_id = x.trial_id WHERE t.study_id = ?",
                         filter));
      while (q->step()) {
        auto it = index.find(q->integer(0));
        if (it != index.end()) f(out[it->second], *q);
      }
    };
    each("trial_params", "x.name, x.value",
         [](Trial& t, Stmt& q) { t.params[q.text(1)] = q.real(2); });
    each("trial_values", "x.idx, x.value", [&](Trial& t, Stmt& q) {
      const int64_t i = q.integer(1);
      if (i < 0 || i > 64) damaged("value index");
      if (t.values.size() <= static_cast<size_t>(i))
        t.values.resize(static_cast<size_t>(i) + 1, std::numeric_limits<double>::quiet_NaN());
      t.values[static_cast<size_t>(i)] = q.real(2);
    });
    each("trial_intermediate", "x.step, x.value",
         [](Trial& t, Stmt& q) { t.intermediate[q.integer(1)] = q.real(2); });
    each("trial_attrs", "x.key, x.value",
         [](Trial& t, Stmt& q) { t.attrs[q.text(1)] = q.text(2); });
    return out;
  }

  mutable Db db_;
  mutable std::mutex mu_;
  std::string location_;
  StudyOptions options_;
  std::string worker_;
  ProcessIdentity me_;
  StudySpec spec_;
  int64_t study_id_ = -1;
  int64_t stored_id_ = -1;
  // The trials this object claimed and has not finished -> its last heartbeat write.
  std::map<int64_t, double> held_;
};

}  // namespace

std::unique_ptr<Study> open_sqlite_study(const std::string& path, const std::string& location,
                                         const StudySpec& spec, OpenMode mode,
                                         const StudyOptions& options) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
      throw InputError(msg(location, ": cannot create the study's folder ", parent.string(), " (",
                           ec.message(), "); give a writable path"));
  }
  return std::make_unique<SqliteStudy>(path, location, spec, mode, options);
}

}  // namespace squeeze::pipeline::detail
