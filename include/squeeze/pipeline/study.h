// The study: where an auto-tuning search keeps its trials, so that an interrupted search resumes
// without repeating finished trials and several worker processes share one search.
//
// `Study` is the storage interface; `open_study` picks the backend from the location: a file path
// (or sqlite:///path) is a SQLite database, shared by the processes of one machine; a
// postgresql:// (or postgres://) URL is a PostgreSQL database, shared by workers on several
// machines. Both backends have the same semantics and pass the same tests (test_study.cpp).
// Nothing here knows about graphs or samplers: a trial's parameters come from a `Proposer`
// callback (the TPE sampler in pipeline/tpe.h), its results from the pipeline.
//
// Resume and sampler state. A new trial number N is created, and its parameters proposed, inside
// one locked transaction that also reads the history the proposer sees; a trial whose worker
// died is re-queued with the same parameters and taken before any new number is created. So a
// resumed sequential search proposes trial N from exactly the history an uninterrupted one would
// have had, and a sampler that draws its randomness from (seed, N) -- rather than from a stream
// advanced by earlier calls -- proposes the same trials. The study stores no other sampler state.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/pipeline/trial.h"

namespace squeeze::pipeline {

// What a study is created with. A reopened study must match it, field by field (except `name`,
// which selects the study), or opening is refused with a ConfigError naming both values.
struct StudySpec {
  std::string name = "default";          // one file may hold several studies
  std::vector<Direction> directions = {Direction::kMaximize};   // one per objective value
  SearchSpace space;
  uint64_t seed = 0;                     // the sampler's seed
  // Opaque text identifying the configuration the trials' meaning depends on (model, data,
  // stage template, objective; not the budget such as `trials:` or `time:`, which a resume may
  // change). Compared verbatim.
  std::string fingerprint;
};

enum class OpenMode {
  kCreate,   // a new study; ConfigError if the file already holds one of that name (`squeeze run`)
  kResume,   // an existing study; InputError if there is none (`squeeze run --resume`)
  kJoin,     // create it, or join it if it exists (`squeeze run --worker`)
  kLoad,     // an existing study as stored, whatever its spec: only spec.name is read (reports)
};

struct StudyOptions {
  // A running trial whose last heartbeat is older than this is taken to be abandoned and is
  // re-queued. Workers call Study::heartbeat() at least every heartbeat_timeout_s / 2. A worker
  // on this host whose process is gone is detected at once, without waiting for the timeout.
  double heartbeat_timeout_s = 300.0;
  // A trial re-queued because its worker died is retried at most this many times; the next
  // death marks it failed (attrs "reason"), so one trial that kills its worker cannot stall the
  // search. A clean interruption (release_trial) does not count.
  int max_retries = 2;
  // How long a write waits for another process's lock before giving up with an Error.
  double busy_timeout_s = 60.0;
  // This process's name in trial records; empty: "<hostname>:<pid>".
  std::string worker;

  // Throws ConfigError naming the field and the bad value.
  void validate() const;
};

// Proposes the parameters of new trial `number` (internal values, one per search-space entry).
// `history` holds every trial numbered below `number`, in order, in whatever state it is in.
// Runs while the study is locked: it must be quick and must not call back into the study.
using Proposer = std::function<std::map<std::string, double>(int64_t number,
                                                             const std::vector<Trial>& history)>;

constexpr int64_t kNoTrialLimit = std::numeric_limits<int64_t>::max();

// One study in one storage. Every call is one transaction, atomic against other processes that
// use the same storage; an object may be shared between threads (calls are serialized), but not
// across fork(): a child process opens its own. Storage failures throw squeeze::Error naming the
// location; a damaged or foreign file throws InputError.
class Study {
 public:
  // Trials this object claimed and neither finished nor released are abandoned, as a dead
  // worker's are (re-queued, a retry counted): an exception that unwound past the study may be
  // the trial's own fault, and counting it keeps such a trial from stopping every resume.
  virtual ~Study() = default;

  // The spec as stored (with kLoad: as found in the file).
  virtual const StudySpec& spec() const = 0;
  // Where the study lives, as given to open_study, with a URL's password hidden
  // (display_location).
  virtual const std::string& location() const = 0;
  // This process's worker name (StudyOptions::worker or "<hostname>:<pid>").
  virtual const std::string& worker() const = 0;

  // Gives this worker a trial to run, marked running: the lowest-numbered waiting trial if there
  // is one (re-queued or enqueued), otherwise new trial number N = count of trials, its
  // parameters from `propose` -- unless the study already holds `max_trials` trials, then
  // nullopt. Re-queues abandoned trials first. Each number is handed to exactly one worker at a
  // time. A proposal that does not match the search space throws InternalError; an exception
  // from `propose` leaves the study unchanged.
  virtual std::optional<Trial> claim_trial(const Proposer& propose,
                                           int64_t max_trials = kNoTrialLimit) = 0;

  // Adds a waiting trial with given parameters (checked against the space: ConfigError naming
  // the parameter and its domain), e.g. the configuration's defaults as trial 0. Returns its
  // number; claim_trial hands it out before proposing new ones.
  virtual int64_t enqueue_trial(const std::map<std::string, double>& params,
                                const std::map<std::string, std::string>& attrs = {}) = 0;

  // These three write only while this worker holds trial `number` (running, claimed by this
  // worker); they return false and write nothing otherwise -- the trial was re-queued after a
  // timeout, or finished -- and the caller should drop the trial. Throw InputError for a number
  // the study does not have.
  //
  // Records the validation value after `step` (epoch); a step reported again is overwritten.
  // NaN and infinities are kept. Counts as a heartbeat.
  [[nodiscard]] virtual bool report_intermediate(int64_t number, int64_t step, double value) = 0;
  // Shows the worker is alive. Cheap to call often: writes at most once per
  // heartbeat_timeout_s / 10 per trial (and returns true in between).
  [[nodiscard]] virtual bool heartbeat(int64_t number) = 0;
  // Ends the trial: `state` complete, pruned or failed; `values` one per direction (complete
  // requires them; pruned and failed may leave them empty); `attrs` merged into the trial's.
  [[nodiscard]] virtual bool finish_trial(int64_t number, TrialState state,
                                          const std::vector<double>& values,
                                          const std::map<std::string, std::string>& attrs = {}) = 0;

  // Gives a running trial of this worker back (waiting, same parameters, intermediate values
  // dropped) without counting a retry: for a clean interruption such as Ctrl-C.
  virtual bool release_trial(int64_t number) = 0;

  // Re-queues (or, past max_retries, fails) running trials whose worker died or whose heartbeat
  // timed out; returns how many it changed. open_study and claim_trial call it too.
  virtual int64_t requeue_abandoned() = 0;

  // Every trial, ordered by number. Trials the study re-queued carry attrs "retries" (the count);
  // trials it failed after too many retries carry attrs "reason".
  virtual std::vector<Trial> trials() const = 0;
  virtual std::optional<Trial> get(int64_t number) const = 0;
};

// Opens study `spec.name` at `location`: a file path (parent folders are created),
// "sqlite:///path", or a PostgreSQL URL "postgresql://user[:password]@host[:port]/database"
// (also postgres://, and libpq's query parameters such as ?sslmode=require; a password not in
// the URL comes from PGPASSWORD or ~/.pgpass, as libpq reads them). A PostgreSQL database keeps
// its studies in the schema "squeeze" (created on first use; the user needs CREATE on the
// database then), any number of them, told apart by spec.name. Any other scheme throws
// ConfigError. A PostgreSQL URL in a build without libpq throws UnsupportedError naming the
// package; a server that cannot be reached or refuses the user throws ConfigError naming host,
// port, database and libpq's reason (never the password). A file or schema that is not a squeeze
// study throws InputError; a stored study whose directions, space, seed or fingerprint differ
// from `spec` throws ConfigError naming both values. Re-queues trials of dead workers (a resume
// after SIGKILL).
//
// Liveness: a worker on this host that is gone is detected at once (its pid); one on another
// host only by its heartbeat, after StudyOptions::heartbeat_timeout_s. PostgreSQL compares
// heartbeats on the server's clock, so the workers' clocks need not agree.
std::unique_ptr<Study> open_study(const std::string& location, const StudySpec& spec,
                                  OpenMode mode, const StudyOptions& options = {});

// `location` fit to print: a URL's password (user:password@, ?password=) becomes "***".
std::string display_location(const std::string& location);

// `text` (a configuration, a message) with the password of every postgresql:// or postgres://
// URL in it hidden the same way; a URL ends at white space, a quote, ',', '}' or ']'.
std::string hide_passwords(const std::string& text);

// Whether this build has the PostgreSQL backend (libpq was found when it was configured).
bool postgres_supported();

}  // namespace squeeze::pipeline
