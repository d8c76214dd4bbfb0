// The PostgreSQL study backend: one database shared by workers on several machines.
//
// Same semantics as the SQLite backend (study_sqlite.cpp), same tables, kept in the schema
// "squeeze" so that the database may hold other applications' tables; one database holds any
// number of studies, told apart by name (studies.name).
//
// Concurrency. Every call is one transaction (READ COMMITTED). Whatever hands out trial numbers
// or changes which worker holds a trial (claim, enqueue, the abandoned-trial sweep) first locks
// the study's row (SELECT ... FOR UPDATE): the equivalent of SQLite's BEGIN IMMEDIATE, per study,
// so "read the next number and the history, insert it" never interleaves between workers, and a
// waiting trial is taken with SELECT ... FOR UPDATE SKIP LOCKED. Writes to a held trial (report,
// heartbeat, finish, release) are single-row UPDATEs conditional on this worker holding it, so a
// worker whose trial was taken away writes nothing. The sweep's re-queue is conditional on the
// heartbeat it judged, so a heartbeat that commits meanwhile keeps the trial with its worker.
//
// Time. Heartbeats and the other timestamps come from the server's clock
// (clock_timestamp()), so workers on machines whose clocks disagree still agree on a timeout.
//
// Schema (version 1 in squeeze.meta, with application = squeeze-study):
//   studies, study_params, study_choices, trials, trial_params, trial_values, trial_intermediate,
//   trial_attrs: the columns of study_sqlite.cpp. float8 keeps NaN and infinities as such.
// First use creates the schema under an advisory lock, so workers that start together agree.
#include <libpq-fe.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "pipeline/study_internal.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline::detail {
namespace {

constexpr int kSchemaVersion = 1;
constexpr const char* kApplication = "squeeze-study";
// pg_advisory_xact_lock key taken while the schema is checked and created ("SQZS").
constexpr int64_t kSchemaLockKey = 0x53515a53;

constexpr const char* kSchema = R"sql(
CREATE TABLE squeeze.meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE squeeze.studies (
  study_id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  directions TEXT NOT NULL,
  seed BIGINT NOT NULL,
  fingerprint TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL
);
CREATE TABLE squeeze.study_params (
  study_id BIGINT NOT NULL REFERENCES squeeze.studies(study_id),
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  low DOUBLE PRECISION NOT NULL,
  high DOUBLE PRECISION NOT NULL,
  step DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (study_id, name)
);
CREATE TABLE squeeze.study_choices (
  study_id BIGINT NOT NULL,
  name TEXT NOT NULL,
  idx INTEGER NOT NULL,
  choice TEXT NOT NULL,
  PRIMARY KEY (study_id, name, idx),
  FOREIGN KEY (study_id, name) REFERENCES squeeze.study_params(study_id, name)
);
CREATE TABLE squeeze.trials (
  trial_id BIGSERIAL PRIMARY KEY,
  study_id BIGINT NOT NULL REFERENCES squeeze.studies(study_id),
  number BIGINT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'complete', 'pruned', 'failed')),
  worker TEXT NOT NULL DEFAULT '',
  host TEXT NOT NULL DEFAULT '',
  boot TEXT NOT NULL DEFAULT '',
  pid BIGINT NOT NULL DEFAULT 0,
  pid_start BIGINT NOT NULL DEFAULT 0,
  heartbeat DOUBLE PRECISION,
  created DOUBLE PRECISION NOT NULL,
  started DOUBLE PRECISION,
  finished DOUBLE PRECISION,
  retries BIGINT NOT NULL DEFAULT 0,
  UNIQUE (study_id, number)
);
CREATE INDEX trials_by_state ON squeeze.trials(study_id, state, number);
CREATE TABLE squeeze.trial_params (
  trial_id BIGINT NOT NULL REFERENCES squeeze.trials(trial_id),
  name TEXT NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (trial_id, name)
);
CREATE TABLE squeeze.trial_values (
  trial_id BIGINT NOT NULL REFERENCES squeeze.trials(trial_id),
  idx INTEGER NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (trial_id, idx)
);
CREATE TABLE squeeze.trial_intermediate (
  trial_id BIGINT NOT NULL REFERENCES squeeze.trials(trial_id),
  step BIGINT NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (trial_id, step)
);
CREATE TABLE squeeze.trial_attrs (
  trial_id BIGINT NOT NULL REFERENCES squeeze.trials(trial_id),
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (trial_id, key)
);
)sql";

// The server's clock, in Unix seconds.
constexpr const char* kNow = "extract(epoch from clock_timestamp())::float8";

TrialState parse_state(const std::string& text, bool* ok) {
  for (auto s : {TrialState::kWaiting, TrialState::kRunning, TrialState::kComplete,
                 TrialState::kPruned, TrialState::kFailed})
    if (text == to_string(s)) return s;
  *ok = false;
  return TrialState::kFailed;
}

// Query arguments, all sent as text (libpq converts them to the column types).
class Args {
 public:
  Args& add(int64_t v) { return add_text(std::to_string(v)); }
  Args& add(double v) {
    if (std::isnan(v)) return add_text("NaN");
    if (std::isinf(v)) return add_text(v > 0 ? "Infinity" : "-Infinity");
    return add_text(format_double(v));
  }
  Args& add(const std::string& v) { return add_text(v); }
  Args& add(const char* v) { return add_text(v); }
  size_t size() const { return values_.size(); }
  std::vector<const char*> pointers() const {
    std::vector<const char*> out;
    for (const auto& v : values_) out.push_back(v.c_str());
    return out;
  }

 private:
  Args& add_text(std::string v) {
    values_.push_back(std::move(v));
    return *this;
  }
  std::vector<std::string> values_;
};

// One query's rows; text cells.
class Rows {
 public:
  explicit Rows(PGresult* r) : r_(r, &PQclear) {}
  int size() const { return PQntuples(r_.get()); }
  bool null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       static_cast<size_t>(PQgetlength(r_.get(), row, col)));
  }
  int64_t integer(int row, int col) const {
    return std::strtoll(PQgetvalue(r_.get(), row, col), nullptr, 10);
  }
  // NULL (no heartbeat yet) reads as NaN, like the SQLite backend's.
  double real(int row, int col) const {
    if (null(row, col)) return std::numeric_limits<double>::quiet_NaN();
    return std::strtod(PQgetvalue(r_.get(), row, col), nullptr);   // reads NaN, -Infinity
  }
  ExecStatusType status() const { return r_ ? PQresultStatus(r_.get()) : PGRES_FATAL_ERROR; }
  const PGresult* get() const { return r_.get(); }

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> r_;
};

std::string or_default(const char* s, const char* fallback) {
  return s && *s ? std::string(s) : std::string(fallback);
}

class Conn {
 public:
  Conn(const std::string& url, const std::string& shown, double lock_timeout_s) : shown_(shown) {
    // The URL is libpq's: it reads the password from it, from PGPASSWORD or from ~/.pgpass, and
    // the other PG* variables for what the URL leaves out.
    char* parse_error = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &parse_error);
    if (!parsed) {
      const std::string why = parse_error ? hide_password(parse_error) : "out of memory";
      PQfreemem(parse_error);
      throw ConfigError(msg("study '", shown_, "': not a valid PostgreSQL URL (", trim(why),
                            "); write postgresql://user@host:port/database"));
    }
    PQconninfoFree(parsed);
    const char* keywords[] = {"connect_timeout", "dbname", "fallback_application_name",
                              "client_encoding", nullptr};
    const char* values[] = {"10", url.c_str(), "squeeze", "UTF8", nullptr};
    conn_ = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
    if (!conn_) throw Error(msg("study '", shown_, "': libpq could not allocate a connection"));
    if (PQstatus(conn_) != CONNECTION_OK) {
      const std::string where = server();
      const std::string why = trim(hide_password(PQerrorMessage(conn_)));
      PQfinish(conn_);
      conn_ = nullptr;
      throw ConfigError(msg("study '", shown_, "': cannot connect to PostgreSQL ", where, ": ",
                            why,
                            ". Check that the server runs and accepts this user (the password "
                            "comes from the URL, PGPASSWORD or ~/.pgpass)"));
    }
    where_ = server();
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    lock_timeout_s_ = lock_timeout_s;
    // 0 would mean "wait forever" here; SQLite's 0 means "do not wait".
    exec(msg("SET lock_timeout = ",
             std::max<int64_t>(1, static_cast<int64_t>(lock_timeout_s * 1000.0)))
             .c_str());
  }
  ~Conn() {
    if (conn_) PQfinish(conn_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // "at host:port, database db, user u" as libpq resolved them (the password never).
  std::string server() const {
    const char* host = PQhost(conn_);
    std::string h = or_default(host, "localhost");
    if (!h.empty() && h[0] == '/') h = "socket " + h;
    return msg("at ", h, ":", or_default(PQport(conn_), "5432"), ", database '",
               or_default(PQdb(conn_), "?"), "', user '", or_default(PQuser(conn_), "?"), "'");
  }

  Rows exec(const char* sql, const Args& args = Args()) {
    const std::vector<const char*> p = args.pointers();
    PGresult* r = PQexecParams(conn_, sql, static_cast<int>(p.size()), nullptr, p.data(), nullptr,
                               nullptr, 0);
    Rows rows(r);
    const ExecStatusType status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(r, sql);
    return rows;
  }

  // Several statements without parameters (the schema).
  void exec_script(const char* sql) {
    Rows rows(PQexec(conn_, sql));
    const ExecStatusType status = rows.status();
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(rows.get(), sql);
  }

  // A statement that may fail without spoiling the caller's day (ROLLBACK).
  void exec_quietly(const char* sql) { PQclear(PQexec(conn_, sql)); }

  [[noreturn]] void fail(const PGresult* r, const std::string& full_sql) const {
    // The statement's first line is enough to tell which one failed.
    std::string sql = full_sql.substr(std::min(full_sql.find_first_not_of("\n"), full_sql.size()));
    sql = sql.substr(0, std::min(sql.find('\n'), size_t{160}));
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const std::string code = state ? state : "";
    const std::string detail =
        trim(hide_password(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_)));
    if (PQstatus(conn_) == CONNECTION_BAD)
      throw Error(msg("study '", shown_, "': lost the connection to PostgreSQL ", where_, " (",
                      detail, ") while running: ", sql));
    if (code == "55P03" || code == "40P01" || code == "40001")
      throw Error(msg("study '", shown_, "': a lock stayed held by another worker for more than ",
                      lock_timeout_s_, " s (", detail, ") while running: ", sql));
    if (code == "42501")
      throw InputError(msg("study '", shown_, "': PostgreSQL ", where_, " refused (", detail,
                           "); the user needs CREATE on the database (first use) and write "
                           "access to the schema squeeze"));
    throw Error(msg("study '", shown_, "': PostgreSQL error (", detail, ") while running: ", sql));
  }

  const std::string& shown() const { return shown_; }

 private:
  static std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    for (auto& c : s)
      if (c == '\n' || c == '\t') c = ' ';
    return s;
  }
  // libpq may quote the connection string it failed on.
  static std::string hide_password(const std::string& text) { return hide_passwords(text); }

  PGconn* conn_ = nullptr;
  std::string shown_;
  std::string where_;
  double lock_timeout_s_ = 0.0;
};

// BEGIN, COMMIT on commit(), ROLLBACK when left by an exception.
class Transaction {
 public:
  explicit Transaction(Conn& c) : c_(c) { c_.exec("BEGIN"); }
  ~Transaction() {
    if (!done_) c_.exec_quietly("ROLLBACK");
  }
  void commit() {
    c_.exec("COMMIT");
    done_ = true;
  }

 private:
  Conn& c_;
  bool done_ = false;
};

std::string join_directions(const std::vector<Direction>& ds) {
  std::vector<std::string> names;
  for (Direction d : ds) names.push_back(to_string(d));
  return join(names, ",");
}

class PostgresStudy final : public Study {
 public:
  PostgresStudy(const std::string& url, const StudySpec& spec, OpenMode mode,
                const StudyOptions& options)
      : location_(display_location(url)),
        db_(url, location_, options.busy_timeout_s),
        options_(options),
        worker_(worker_name(options)),
        me_(this_process()) {
    prepare_schema();
    Transaction tx(db_);
    std::optional<StudySpec> stored = load_spec(spec.name, mode != OpenMode::kLoad);
    if (!stored && (mode == OpenMode::kCreate || mode == OpenMode::kJoin)) {
      // Two workers joining at once: the second waits on the unique name, then finds the study.
      db_.exec("SELECT pg_advisory_xact_lock(hashtext($1))", Args().add("squeeze:" + spec.name));
      stored = load_spec(spec.name, true);
    }
    if (!stored && (mode == OpenMode::kCreate || mode == OpenMode::kJoin)) {
      create(spec);
    } else if (!stored) {
      throw InputError(msg("no study '", spec.name, "' in ", location_, " (it holds: ",
                           study_names(), "); start it without resuming"));
    } else if (mode == OpenMode::kCreate) {
      throw ConfigError(msg("study '", spec.name, "' already exists in ", location_, " with ",
                            count_trials(), " trials: resume it, join it as a worker, or give ",
                            "another study name or database"));
    } else {
      if (mode != OpenMode::kLoad) check_same_spec(*stored, spec, location_);
      spec_ = *stored;
      study_id_ = stored_id_;
    }
    if (mode != OpenMode::kLoad) sweep();
    tx.commit();
  }

  // As the SQLite backend's: trials still held are abandoned (a retry counted).
  ~PostgresStudy() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> numbers;
    for (const auto& entry : held_) numbers.push_back(entry.first);
    for (int64_t number : numbers) {
      try {
        Transaction tx(db_);
        lock_study();
        const int64_t trial_id = held_trial(number);
        if (trial_id < 0) continue;
        Rows q = db_.exec("SELECT retries FROM squeeze.trials WHERE trial_id = $1",
                          Args().add(trial_id));
        abandon(trial_id, q.integer(0, 0),
                msg("its worker ", worker_, " dropped it without finishing"));
        tx.commit();
      } catch (const std::exception&) {
        // Once this process exits, the next sweep re-queues it.
      }
    }
  }

  const StudySpec& spec() const override { return spec_; }
  const std::string& location() const override { return location_; }
  const std::string& worker() const override { return worker_; }

  std::optional<Trial> claim_trial(const Proposer& propose, int64_t max_trials) override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_);
    lock_study();
    sweep();
    int64_t number = -1;
    {
      Rows q = db_.exec("SELECT number FROM squeeze.trials WHERE study_id = $1 AND "
                        "state = 'waiting' ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED",
                        Args().add(study_id_));
      if (q.size() > 0) number = q.integer(0, 0);
    }
    if (number >= 0) {
      db_.exec(msg("UPDATE squeeze.trials SET state = 'running', worker = $1, host = $2, "
                   "boot = $3, pid = $4, pid_start = $5, heartbeat = ", kNow, ", started = ",
                   kNow, " WHERE study_id = $6 AND number = $7")
                   .c_str(),
               holder().add(study_id_).add(number));
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
      Rows ins = db_.exec(
          msg("INSERT INTO squeeze.trials (worker, host, boot, pid, pid_start, study_id, number, "
              "state, heartbeat, created, started) VALUES ($1, $2, $3, $4, $5, $6, $7, "
              "'running', ", kNow, ", ", kNow, ", ", kNow, ") RETURNING trial_id")
              .c_str(),
          holder().add(study_id_).add(number));
      insert_params(ins.integer(0, 0), params);
    }
    std::vector<Trial> claimed = load_trials(number);
    tx.commit();
    held_[number] = now_seconds();
    return claimed.at(0);
  }

  int64_t enqueue_trial(const std::map<std::string, double>& params,
                        const std::map<std::string, std::string>& attrs) override {
    const std::string problem = params_problem(spec_.space, params);
    if (!problem.empty())
      throw ConfigError(msg("cannot enqueue a trial in study '", spec_.name, "': ", problem));
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_);
    lock_study();
    const int64_t number = next_number();
    Rows ins = db_.exec(msg("INSERT INTO squeeze.trials (study_id, number, state, created) "
                            "VALUES ($1, $2, 'waiting', ", kNow, ") RETURNING trial_id")
                            .c_str(),
                        Args().add(study_id_).add(number));
    const int64_t trial_id = ins.integer(0, 0);
    insert_params(trial_id, params);
    upsert_attrs(trial_id, attrs);
    tx.commit();
    return number;
  }

  bool report_intermediate(int64_t number, int64_t step, double value) override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_);
    const int64_t trial_id = held_trial(number);
    if (trial_id < 0) return false;
    db_.exec("INSERT INTO squeeze.trial_intermediate (trial_id, step, value) VALUES ($1, $2, $3) "
             "ON CONFLICT (trial_id, step) DO UPDATE SET value = EXCLUDED.value",
             Args().add(trial_id).add(step).add(value));
    tx.commit();
    held_[number] = now_seconds();
    return true;
  }

  bool heartbeat(int64_t number) override {
    std::lock_guard<std::mutex> lock(mu_);
    const double now = now_seconds();
    auto it = held_.find(number);
    if (it != held_.end() && now - it->second < options_.heartbeat_timeout_s / 10 &&
        now >= it->second)
      return true;
    Transaction tx(db_);
    if (held_trial(number) < 0) return false;
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
    Transaction tx(db_);
    const int64_t trial_id = held_trial(number);
    if (trial_id < 0) return false;
    db_.exec(msg("UPDATE squeeze.trials SET state = $1, finished = ", kNow,
                 " WHERE trial_id = $2").c_str(),
             Args().add(to_string(state)).add(trial_id));
    db_.exec("DELETE FROM squeeze.trial_values WHERE trial_id = $1", Args().add(trial_id));
    for (size_t i = 0; i < values.size(); ++i)
      db_.exec("INSERT INTO squeeze.trial_values (trial_id, idx, value) VALUES ($1, $2, $3)",
               Args().add(trial_id).add(static_cast<int64_t>(i)).add(values[i]));
    upsert_attrs(trial_id, attrs);
    tx.commit();
    held_.erase(number);
    return true;
  }

  bool release_trial(int64_t number) override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_);
    const int64_t trial_id = held_trial(number);
    if (trial_id < 0) return false;
    requeue(trial_id, /*retries=*/-1);
    tx.commit();
    held_.erase(number);
    return true;
  }

  int64_t requeue_abandoned() override {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction tx(db_);
    lock_study();
    const int64_t changed = sweep();
    tx.commit();
    return changed;
  }

  std::vector<Trial> trials() const override {
    std::lock_guard<std::mutex> lock(mu_);
    // One snapshot for the several reads.
    db_.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    try {
      std::vector<Trial> all = load_trials(std::nullopt);
      db_.exec("COMMIT");
      return all;
    } catch (...) {
      db_.exec_quietly("ROLLBACK");
      throw;
    }
  }

  std::optional<Trial> get(int64_t number) const override {
    std::lock_guard<std::mutex> lock(mu_);
    db_.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    try {
      std::vector<Trial> found = load_trials(number);
      db_.exec("COMMIT");
      if (found.empty()) return std::nullopt;
      return found[0];
    } catch (...) {
      db_.exec_quietly("ROLLBACK");
      throw;
    }
  }

 private:
  // Creates the schema on first use; refuses a schema "squeeze" that is not ours or is newer.
  void prepare_schema() {
    Transaction tx(db_);
    db_.exec("SELECT pg_advisory_xact_lock($1)", Args().add(kSchemaLockKey));
    std::vector<std::string> tables;
    {
      Rows q = db_.exec("SELECT table_name FROM information_schema.tables WHERE "
                        "table_schema = 'squeeze' ORDER BY table_name");
      for (int i = 0; i < q.size(); ++i) tables.push_back(q.text(i, 0));
    }
    if (tables.empty()) {
      // An empty schema may have been made for us by an administrator: fill it.
      Rows q = db_.exec("SELECT 1 FROM pg_namespace WHERE nspname = 'squeeze'");
      if (q.size() == 0) db_.exec("CREATE SCHEMA squeeze");
      db_.exec_script(kSchema);
      db_.exec("INSERT INTO squeeze.meta (key, value) VALUES ('application', $1), "
               "('schema_version', $2)",
               Args().add(kApplication).add(std::to_string(kSchemaVersion)));
      tx.commit();
      return;
    }
    auto foreign = [&] {
      return InputError(msg(location_, ": the schema 'squeeze' of this database holds tables "
                                       "that are not a squeeze study (",
                            join(tables, ", "),
                            "); give another database, or drop that schema if it is not needed"));
    };
    bool has_meta = false;
    for (const auto& t : tables) has_meta |= t == "meta";
    if (!has_meta) throw foreign();
    std::map<std::string, std::string> meta;
    {
      Rows q = db_.exec("SELECT key, value FROM squeeze.meta");
      for (int i = 0; i < q.size(); ++i) meta[q.text(i, 0)] = q.text(i, 1);
    }
    if (meta["application"] != kApplication) throw foreign();
    const int64_t version = std::strtoll(meta["schema_version"].c_str(), nullptr, 10);
    if (version > kSchemaVersion)
      throw InputError(msg(location_, ": study schema version ", version,
                           " was written by a newer squeeze; this build reads version ",
                           kSchemaVersion, " and older"));
    if (version < 1)
      throw InputError(msg(location_, ": the study schema has no valid version ('",
                           meta["schema_version"], "'); it is damaged"));
    tx.commit();
  }

  std::string study_names() {
    std::vector<std::string> names;
    Rows q = db_.exec("SELECT name FROM squeeze.studies ORDER BY name");
    for (int i = 0; i < q.size(); ++i) names.push_back("'" + q.text(i, 0) + "'");
    return names.empty() ? std::string("no study") : join(names, ", ");
  }

  // Waits for the study's row lock: the claim / enqueue / sweep of other workers (see the top).
  void lock_study() {
    db_.exec("SELECT 1 FROM squeeze.studies WHERE study_id = $1 FOR UPDATE",
             Args().add(study_id_));
  }

  std::optional<StudySpec> load_spec(const std::string& name, bool lock) {
    StudySpec s;
    s.name = name;
    {
      Rows q = db_.exec(lock ? "SELECT study_id, directions, seed, fingerprint FROM "
                               "squeeze.studies WHERE name = $1 FOR UPDATE"
                             : "SELECT study_id, directions, seed, fingerprint FROM "
                               "squeeze.studies WHERE name = $1",
                        Args().add(name));
      if (q.size() == 0) return std::nullopt;
      stored_id_ = q.integer(0, 0);
      s.directions.clear();
      const std::string dirs = q.text(0, 1);
      size_t begin = 0;
      while (begin <= dirs.size()) {
        size_t end = dirs.find(',', begin);
        if (end == std::string::npos) end = dirs.size();
        const std::string d = dirs.substr(begin, end - begin);
        if (d != "maximize" && d != "minimize") damaged("direction '" + d + "'");
        s.directions.push_back(parse_direction(d));
        begin = end + 1;
      }
      s.seed = static_cast<uint64_t>(q.integer(0, 2));
      s.fingerprint = q.text(0, 3);
    }
    {
      Rows q = db_.exec("SELECT name, kind, low, high, step FROM squeeze.study_params "
                        "WHERE study_id = $1",
                        Args().add(stored_id_));
      for (int i = 0; i < q.size(); ++i) {
        Distribution d;
        if (!parse_kind(q.text(i, 1), &d.kind)) damaged("parameter kind '" + q.text(i, 1) + "'");
        d.low = q.real(i, 2);
        d.high = q.real(i, 3);
        d.step = q.real(i, 4);
        s.space[q.text(i, 0)] = d;
      }
    }
    {
      Rows q = db_.exec("SELECT name, choice FROM squeeze.study_choices WHERE study_id = $1 "
                        "ORDER BY name, idx",
                        Args().add(stored_id_));
      for (int i = 0; i < q.size(); ++i) {
        auto it = s.space.find(q.text(i, 0));
        if (it == s.space.end()) damaged("choice of unknown parameter '" + q.text(i, 0) + "'");
        it->second.choices.push_back(q.text(i, 1));
      }
    }
    return s;
  }

  [[noreturn]] void damaged(const std::string& what) const {
    throw InputError(msg(location_, ": the study schema holds an invalid ", what,
                         "; it is damaged or was not written by squeeze"));
  }

  void create(const StudySpec& spec) {
    Rows ins = db_.exec(msg("INSERT INTO squeeze.studies (name, directions, seed, fingerprint, "
                            "created) VALUES ($1, $2, $3, $4, ", kNow, ") RETURNING study_id")
                            .c_str(),
                        Args().add(spec.name).add(join_directions(spec.directions))
                            .add(static_cast<int64_t>(spec.seed)).add(spec.fingerprint));
    study_id_ = ins.integer(0, 0);
    for (const auto& [name, d] : spec.space) {
      db_.exec("INSERT INTO squeeze.study_params (study_id, name, kind, low, high, step) "
               "VALUES ($1, $2, $3, $4, $5, $6)",
               Args().add(study_id_).add(name).add(kind_name(d.kind)).add(d.low).add(d.high)
                   .add(d.step));
      for (size_t i = 0; i < d.choices.size(); ++i)
        db_.exec("INSERT INTO squeeze.study_choices (study_id, name, idx, choice) "
                 "VALUES ($1, $2, $3, $4)",
                 Args().add(study_id_).add(name).add(static_cast<int64_t>(i)).add(d.choices[i]));
    }
    spec_ = spec;
  }

  int64_t count_trials() {
    Rows q = db_.exec("SELECT COUNT(*) FROM squeeze.trials WHERE study_id = $1",
                      Args().add(stored_id_));
    return q.integer(0, 0);
  }

  int64_t next_number() {
    Rows q = db_.exec("SELECT COALESCE(MAX(number) + 1, 0) FROM squeeze.trials WHERE "
                      "study_id = $1",
                      Args().add(study_id_));
    return q.integer(0, 0);
  }

  // worker, host, boot, pid, pid_start as $1..$5.
  Args holder() const {
    return Args().add(worker_).add(me_.host).add(me_.boot).add(me_.pid).add(me_.start);
  }

  // The trial_id of trial `number` if this worker holds it (and records a heartbeat), else -1.
  // Throws InputError for a number the study does not have.
  int64_t held_trial(int64_t number) {
    Rows u = db_.exec(msg("UPDATE squeeze.trials SET heartbeat = ", kNow,
                          " WHERE study_id = $6 AND number = $7 AND state = 'running' AND "
                          "worker = $1 AND host = $2 AND boot = $3 AND pid = $4 AND "
                          "pid_start = $5 RETURNING trial_id")
                          .c_str(),
                      holder().add(study_id_).add(number));
    if (u.size() == 1) return u.integer(0, 0);
    Rows q = db_.exec("SELECT 1 FROM squeeze.trials WHERE study_id = $1 AND number = $2",
                      Args().add(study_id_).add(number));
    if (q.size() == 0)
      throw InputError(msg("study '", spec_.name, "' in ", location_, " has no trial ", number));
    held_.erase(number);
    return -1;
  }

  void insert_params(int64_t trial_id, const std::map<std::string, double>& params) {
    for (const auto& [name, value] : params)
      db_.exec("INSERT INTO squeeze.trial_params (trial_id, name, value) VALUES ($1, $2, $3)",
               Args().add(trial_id).add(name).add(value));
  }

  void upsert_attrs(int64_t trial_id, const std::map<std::string, std::string>& attrs) {
    for (const auto& [key, value] : attrs)
      db_.exec("INSERT INTO squeeze.trial_attrs (trial_id, key, value) VALUES ($1, $2, $3) "
               "ON CONFLICT (trial_id, key) DO UPDATE SET value = EXCLUDED.value",
               Args().add(trial_id).add(key).add(value));
  }

  // Back to waiting with the same parameters, the abandoned attempt's results dropped.
  // `retries` < 0 keeps the count.
  void requeue(int64_t trial_id, int64_t retries) {
    db_.exec("DELETE FROM squeeze.trial_values WHERE trial_id = $1", Args().add(trial_id));
    db_.exec("DELETE FROM squeeze.trial_intermediate WHERE trial_id = $1", Args().add(trial_id));
    db_.exec("UPDATE squeeze.trials SET state = 'waiting', heartbeat = NULL, started = NULL, "
             "retries = CASE WHEN $1::bigint < 0 THEN retries ELSE $1::bigint END "
             "WHERE trial_id = $2",
             Args().add(retries).add(trial_id));
  }

  // Re-queues running trials whose worker is gone or silent; past max_retries, fails them.
  // Runs inside the caller's transaction, after lock_study() (or at open, under the lock of
  // load_spec).
  int64_t sweep() {
    struct Abandoned {
      int64_t trial_id, number, retries;
      std::string heartbeat;   // as judged; the re-queue applies only if it is unchanged
      std::string why;
    };
    std::vector<Abandoned> found;
    {
      Rows q = db_.exec(msg("SELECT trial_id, number, worker, host, boot, pid, pid_start, "
                            "heartbeat, retries, ", kNow, " - heartbeat FROM squeeze.trials "
                            "WHERE study_id = $1 AND state = 'running'").c_str(),
                        Args().add(study_id_));
      for (int i = 0; i < q.size(); ++i) {
        ProcessIdentity holder{q.text(i, 3), q.text(i, 4), q.integer(i, 5), q.integer(i, 6)};
        const double age = q.real(i, 9);
        std::string why;
        if (process_gone(holder))
          why = msg("its worker ", q.text(i, 2), " (pid ", holder.pid, " on ", holder.host,
                    ") is gone");
        else if (!(age <= options_.heartbeat_timeout_s))   // NaN (no beat) counts too
          why = msg("its worker ", q.text(i, 2), " sent no heartbeat for ",
                    format_double(std::round(age)), " s (timeout ",
                    format_double(options_.heartbeat_timeout_s), " s)");
        if (!why.empty())
          found.push_back({q.integer(i, 0), q.integer(i, 1), q.integer(i, 8),
                           q.null(i, 7) ? std::string() : q.text(i, 7), why});
      }
    }
    int64_t changed = 0;
    for (const Abandoned& a : found) {
      // Still running with the heartbeat judged: a beat that committed since keeps the trial.
      Rows still = db_.exec("SELECT 1 FROM squeeze.trials WHERE trial_id = $1 AND "
                            "state = 'running' AND heartbeat IS NOT DISTINCT FROM "
                            "NULLIF($2, '')::float8 FOR UPDATE",
                            Args().add(a.trial_id).add(a.heartbeat));
      if (still.size() == 0) continue;
      abandon(a.trial_id, a.retries, a.why);
      held_.erase(a.number);
      ++changed;
    }
    return changed;
  }

  void abandon(int64_t trial_id, int64_t retries, const std::string& why) {
    if (retries < options_.max_retries) {
      requeue(trial_id, retries + 1);
      return;
    }
    db_.exec(msg("UPDATE squeeze.trials SET state = 'failed', finished = ", kNow,
                 " WHERE trial_id = $1").c_str(),
             Args().add(trial_id));
    upsert_attrs(trial_id, {{"reason", msg("abandoned ", retries + 1, " times; last: ", why)}});
  }

  // Trial `number`, or every trial when absent, ordered by number.
  std::vector<Trial> load_trials(std::optional<int64_t> number) const {
    std::vector<Trial> out;
    std::unordered_map<int64_t, size_t> index;   // trial_id -> position in out
    const std::string filter = number ? " AND t.number = $2" : "";
    auto query = [&](const std::string& sql) {
      Args args;
      args.add(study_id_);
      if (number) args.add(*number);
      return db_.exec(sql.c_str(), args);
    };
    {
      Rows q = query("SELECT t.trial_id, t.number, t.state, t.worker, t.retries FROM "
                     "squeeze.trials t WHERE t.study_id = $1" + filter + " ORDER BY t.number");
      for (int i = 0; i < q.size(); ++i) {
        Trial t;
        t.number = q.integer(i, 1);
        bool ok = true;
        t.state = parse_state(q.text(i, 2), &ok);
        if (!ok) damaged("trial state '" + q.text(i, 2) + "'");
        t.worker = q.text(i, 3);
        if (q.integer(i, 4) > 0) t.attrs["retries"] = std::to_string(q.integer(i, 4));
        index[q.integer(i, 0)] = out.size();
        out.push_back(std::move(t));
      }
    }
    auto each = [&](const char* table, const char* cols,
                    const std::function<void(Trial&, const Rows&, int)>& f) {
      Rows q = query(msg("SELECT x.trial_id, ", cols, " FROM squeeze.", table,
                         " x JOIN squeeze.trials t ON t.trial_id = x.trial_id WHERE "
                         "t.study_id = $1",
                         filter));
      for (int i = 0; i < q.size(); ++i) {
        auto it = index.find(q.integer(i, 0));
        if (it != index.end()) f(out[it->second], q, i);
      }
    };
    each("trial_params", "x.name, x.value",
         [](Trial& t, const Rows& q, int i) { t.params[q.text(i, 1)] = q.real(i, 2); });
    each("trial_values", "x.idx, x.value", [&](Trial& t, const Rows& q, int i) {
      const int64_t k = q.integer(i, 1);
      if (k < 0 || k > 64) damaged("value index");
      if (t.values.size() <= static_cast<size_t>(k))
        t.values.resize(static_cast<size_t>(k) + 1, std::numeric_limits<double>::quiet_NaN());
      t.values[static_cast<size_t>(k)] = q.real(i, 2);
    });
    each("trial_intermediate", "x.step, x.value",
         [](Trial& t, const Rows& q, int i) { t.intermediate[q.integer(i, 1)] = q.real(i, 2); });
    each("trial_attrs", "x.key, x.value",
         [](Trial& t, const Rows& q, int i) { t.attrs[q.text(i, 1)] = q.text(i, 2); });
    return out;
  }

  std::string location_;
  mutable Conn db_;
  mutable std::mutex mu_;
  StudyOptions options_;
  std::string worker_;
  ProcessIdentity me_;
  StudySpec spec_;
  int64_t study_id_ = -1;
  int64_t stored_id_ = -1;
  // The trials this object claimed and has not finished -> when this process last wrote a beat.
  std::map<int64_t, double> held_;
};

}  // namespace

std::unique_ptr<Study> open_postgres_study(const std::string& url, const StudySpec& spec,
                                           OpenMode mode, const StudyOptions& options) {
  return std::make_unique<PostgresStudy>(url, spec, mode, options);
}

}  // namespace squeeze::pipeline::detail
