#include "squeeze/pipeline/study.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>

#include "pipeline/study_internal.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

const char* to_string(Direction d) {
  return d == Direction::kMaximize ? "maximize" : "minimize";
}

Direction parse_direction(const std::string& text) {
  if (text == "maximize") return Direction::kMaximize;
  if (text == "minimize") return Direction::kMinimize;
  throw ConfigError(msg("study direction '", text, "' is not valid: use maximize or minimize"));
}

void StudyOptions::validate() const {
  if (!(heartbeat_timeout_s > 0) || !std::isfinite(heartbeat_timeout_s))
    throw ConfigError(msg("StudyOptions.heartbeat_timeout_s: ", heartbeat_timeout_s,
                          " is not valid: use a number of seconds > 0"));
  if (max_retries < 0)
    throw ConfigError(
        msg("StudyOptions.max_retries: ", max_retries, " is not valid: use a count >= 0"));
  if (!(busy_timeout_s >= 0) || busy_timeout_s > 86400.0)
    throw ConfigError(msg("StudyOptions.busy_timeout_s: ", busy_timeout_s,
                          " is not valid: use seconds in [0, 86400]"));
}

std::unique_ptr<Study> open_study(const std::string& location, const StudySpec& spec,
                                  OpenMode mode, const StudyOptions& options) {
  options.validate();
  if (spec.name.empty()) throw ConfigError("study name is empty: give the study a name");
  if (mode != OpenMode::kLoad && spec.directions.empty())
    throw ConfigError(msg("study '", spec.name, "' has no direction: give one per objective value"));
  const auto scheme_end = location.find("://");
  if (scheme_end == std::string::npos)
    return detail::open_sqlite_study(location, location, spec, mode, options);
  const std::string scheme = location.substr(0, scheme_end);
  if (scheme == "sqlite") {
    // sqlite:///abs/path and sqlite:///rel/path as SQLAlchemy and Optuna spell them.
    const std::string path = location.substr(scheme_end + 3);
    if (path.size() < 2 || path[0] != '/')
      throw ConfigError(msg("study '", location, "': write sqlite:///relative/path or ",
                            "sqlite:////absolute/path, or just the file path"));
    return detail::open_sqlite_study(path.substr(1), location, spec, mode, options);
  }
  if (scheme == "postgresql" || scheme == "postgres") {
#ifdef SQUEEZE_HAVE_LIBPQ
    return detail::open_postgres_study(location, spec, mode, options);
#else
    throw UnsupportedError(msg("study '", display_location(location),
                               "': this build of squeeze has no PostgreSQL support (libpq was not "
                               "found when it was built): install the Debian package libpq-dev "
                               "and rebuild, or use a SQLite file path such as "
                               "runs/tune/study.db"));
#endif
  }
  throw ConfigError(msg("study '", display_location(location), "': unknown storage '", scheme,
                        "://'; valid: a file path, sqlite:///path, postgresql://user@host/db"));
}

bool postgres_supported() {
#ifdef SQUEEZE_HAVE_LIBPQ
  return true;
#else
  return false;
#endif
}

std::string display_location(const std::string& location) {
  const auto scheme_end = location.find("://");
  if (scheme_end == std::string::npos) return location;
  std::string out = location;
  const size_t auth = scheme_end + 3;
  const size_t auth_end = std::min(out.find_first_of("/?", auth), out.size());
  const size_t at = out.rfind('@', auth_end == 0 ? 0 : auth_end - 1);
  if (at != std::string::npos && at >= auth) {
    const size_t colon = out.find(':', auth);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  // ?password=...&...
  for (size_t q = out.find('?'); q != std::string::npos; q = out.find('&', q + 1)) {
    const size_t key = q + 1;
    if (out.compare(key, 9, "password=") == 0) {
      const size_t value = key + 9;
      const size_t end = std::min(out.find('&', value), out.size());
      out.replace(value, end - value, "***");
    }
  }
  return out;
}

std::string hide_passwords(const std::string& text) {
  std::string out = text;
  for (const char* scheme : {"postgresql://", "postgres://"}) {
    size_t at = 0;
    while ((at = out.find(scheme, at)) != std::string::npos) {
      const size_t end = std::min(out.find_first_of(" \t\r\n\"',}]", at), out.size());
      const std::string shown = display_location(out.substr(at, end - at));
      out.replace(at, end - at, shown);
      at += shown.size();
    }
  }
  return out;
}

namespace detail {

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

namespace {

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// /proc/<pid>/stat: the state letter (field 3) and the start time (field 22), counted after the
// command name's closing parenthesis since the name itself may hold spaces and parentheses.
bool read_proc_stat(int64_t pid, char* state, int64_t* start) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 3) *state = field.empty() ? '?' : field[0];
    if (i == 22) {
      *start = std::strtoll(field.c_str(), nullptr, 10);
      return true;
    }
  }
  return false;
}

}  // namespace

ProcessIdentity this_process() {
  // Cached per pid: a forked child must not pass for its parent.
  static std::mutex mu;
  static ProcessIdentity cached;
  std::lock_guard<std::mutex> lock(mu);
  const auto pid = static_cast<int64_t>(getpid());
  if (cached.pid != pid) {
    ProcessIdentity p;
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) == 0) p.host = host;
    p.boot = read_first_line("/proc/sys/kernel/random/boot_id");
    p.pid = pid;
    char state = '?';
    if (!read_proc_stat(pid, &state, &p.start)) p.start = 0;
    cached = p;
  }
  return cached;
}

bool process_gone(const ProcessIdentity& other) {
  const ProcessIdentity me = this_process();
  if (other.host != me.host || other.pid <= 0) return false;
  if (!other.boot.empty() && !me.boot.empty() && other.boot != me.boot) return true;
  if (kill(static_cast<pid_t>(other.pid), 0) != 0 && errno == ESRCH) return true;
  char state = '?';
  int64_t start = 0;
  if (!read_proc_stat(other.pid, &state, &start)) return false;   // no /proc: kill() decided
  if (state == 'Z' || state == 'X') return true;
  return other.start != 0 && start != other.start;
}

std::string worker_name(const StudyOptions& options) {
  if (!options.worker.empty()) return options.worker;
  const ProcessIdentity me = this_process();
  return msg(me.host.empty() ? "localhost" : me.host, ":", me.pid);
}

const char* kind_name(Distribution::Kind kind) {
  switch (kind) {
    case Distribution::Kind::kInt: return "int";
    case Distribution::Kind::kFloat: return "float";
    case Distribution::Kind::kLogFloat: return "log_float";
    case Distribution::Kind::kCategorical: return "categorical";
  }
  return "?";
}

bool parse_kind(const std::string& text, Distribution::Kind* kind) {
  for (auto k : {Distribution::Kind::kInt, Distribution::Kind::kFloat,
                 Distribution::Kind::kLogFloat, Distribution::Kind::kCategorical}) {
    if (text == kind_name(k)) {
      *kind = k;
      return true;
    }
  }
  return false;
}

std::string format_double(double v) {
  char buf[40];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v || std::isnan(v)) break;
  }
  return buf;
}

namespace {

// The step that matters for comparing domains (int: 0 means 1; only float and int have one).
double effective_step(const Distribution& d) {
  if (d.kind == Distribution::Kind::kInt) return d.step > 0 ? d.step : 1.0;
  if (d.kind == Distribution::Kind::kFloat) return d.step;
  return 0.0;
}

bool same_domain(const Distribution& a, const Distribution& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == Distribution::Kind::kCategorical) return a.choices == b.choices;
  return a.low == b.low && a.high == b.high && effective_step(a) == effective_step(b);
}

std::string describe_directions(const std::vector<Direction>& ds) {
  std::vector<std::string> names;
  for (Direction d : ds) names.push_back(to_string(d));
  return "[" + join(names, ", ") + "]";
}

}  // namespace

std::string describe(const Distribution& d) {
  if (d.kind == Distribution::Kind::kCategorical) return "categorical {" + join(d.choices, ", ") + "}";
  std::string text = msg(kind_name(d.kind), " [", format_double(d.low), ", ",
                         format_double(d.high), "]");
  const double step = effective_step(d);
  if (d.kind == Distribution::Kind::kInt || step > 0) text += " step " + format_double(step);
  return text;
}

void check_same_spec(const StudySpec& stored, const StudySpec& requested,
                     const std::string& location) {
  std::vector<std::string> diffs;
  if (stored.directions != requested.directions)
    diffs.push_back(msg("directions: stored ", describe_directions(stored.directions),
                        ", this configuration ", describe_directions(requested.directions)));
  for (const auto& [name, d] : stored.space) {
    auto it = requested.space.find(name);
    if (it == requested.space.end())
      diffs.push_back(msg("parameter '", name, "': stored ", describe(d),
                          ", absent from this configuration"));
    else if (!same_domain(d, it->second))
      diffs.push_back(msg("parameter '", name, "': stored ", describe(d), ", this configuration ",
                          describe(it->second)));
  }
  for (const auto& [name, d] : requested.space)
    if (!stored.space.count(name))
      diffs.push_back(msg("parameter '", name, "': not in the stored study, this configuration ",
                          describe(d)));
  if (stored.seed != requested.seed)
    diffs.push_back(msg("seed: stored ", stored.seed, ", this configuration ", requested.seed));
  if (stored.fingerprint != requested.fingerprint)
    diffs.push_back(msg("configuration fingerprint: stored '", stored.fingerprint,
                        "', this configuration '", requested.fingerprint, "'"));
  if (diffs.empty()) return;
  throw ConfigError(msg("study '", stored.name, "' in ", location,
                        " was created from a different configuration, so its trials would not "
                        "mean the same here: ",
                        join(diffs, "; "),
                        ". Resume with the configuration it was created from, or give this one "
                        "another study file or name"));
}

std::string params_problem(const SearchSpace& space,
                           const std::map<std::string, double>& params) {
  for (const auto& [name, d] : space) {
    auto it = params.find(name);
    if (it == params.end()) return msg("parameter '", name, "' (", describe(d), ") has no value");
    if (!d.contains(it->second))
      return msg("parameter '", name, "': ", format_double(it->second), " is outside ",
                 describe(d));
  }
  for (const auto& [name, value] : params)
    if (!space.count(name)) {
      std::vector<std::string> names;
      for (const auto& entry : space) names.push_back(entry.first);
      return msg("parameter '", name, "' is not in the search space (it has: ",
                 names.empty() ? std::string("none") : join(names, ", "), ")");
    }
  return "";
}

}  // namespace detail
}  // namespace squeeze::pipeline
