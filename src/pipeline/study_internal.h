// What every study backend shares (study.cpp): spec comparison, proposal checks, worker identity
// and liveness, the clock. Each backend is one file (study_sqlite.cpp, ...) with one factory here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "squeeze/pipeline/study.h"

namespace squeeze::pipeline::detail {

// Seconds since the Unix epoch (wall clock: heartbeats are compared across processes).
double now_seconds();

// Where a worker runs: enough to tell, from the same machine, whether it is still alive.
struct ProcessIdentity {
  std::string host;        // gethostname()
  std::string boot;        // Linux boot id ("" where unknown): a pid from another boot is dead
  int64_t pid = 0;
  int64_t start = 0;       // process start time in clock ticks since boot (0: unknown), so a
                           // reused pid is not mistaken for the worker
};
ProcessIdentity this_process();

// True when `other` is known to be gone: it ran on this host and either in another boot, or its
// pid no longer exists, is a zombie, or now belongs to a process started at another time.
// False when it is alive or runs elsewhere (then only its heartbeat can tell).
bool process_gone(const ProcessIdentity& other);

// "<hostname>:<pid>" unless options.worker names the worker.
std::string worker_name(const StudyOptions& options);

// Throws ConfigError when `stored` (found at `location`) and `requested` differ in directions,
// space, seed or fingerprint, naming every difference with both values.
void check_same_spec(const StudySpec& stored, const StudySpec& requested,
                     const std::string& location);

// Every parameter of `space` present with a value its domain contains, and no others; else the
// first problem ("parameter 'x': 1.5 is outside int [2, 8] step 1"), empty when fine.
std::string params_problem(const SearchSpace& space, const std::map<std::string, double>& params);

// "int [2, 8] step 1", "float [0.5, 0.95]", "log_float [1e-05, 0.1]", "categorical {l1, l2}".
std::string describe(const Distribution& d);
const char* kind_name(Distribution::Kind kind);   // "int", "float", "log_float", "categorical"
bool parse_kind(const std::string& text, Distribution::Kind* kind);

// The shortest text that reads back as exactly `v`.
std::string format_double(double v);

// The SQLite backend (study_sqlite.cpp); `path` is a file path.
std::unique_ptr<Study> open_sqlite_study(const std::string& path, const std::string& location,
                                         const StudySpec& spec, OpenMode mode,
                                         const StudyOptions& options);

#ifdef SQUEEZE_HAVE_LIBPQ
// The PostgreSQL backend (study_postgres.cpp); `url` is postgresql://... or postgres://...
std::unique_ptr<Study> open_postgres_study(const std::string& url, const StudySpec& spec,
                                           OpenMode mode, const StudyOptions& options);
#endif

}  // namespace squeeze::pipeline::detail
