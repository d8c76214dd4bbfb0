#include "squeeze/pipeline/autotune.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "squeeze/deploy/latency.h"
#include "squeeze/pipeline/candidates.h"
#include "squeeze/pipeline/pruner.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/pipeline/study.h"
#include "squeeze/pipeline/tpe.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/interrupt.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kKinds = {"int", "float", "log_float", "categorical"};
const std::vector<std::string> kObjectives = {"accuracy_log_ratio", "max_compression", "pareto"};

// Full precision for numbers stored as text (study attrs) and read back.
std::string exact(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

double number_of(const Value& v, const std::string& at, bool integer) {
  const std::string what = integer ? "an integer" : "a number";
  if (v.kind() != Value::Kind::kScalar || v.quoted())
    throw ConfigError(msg(at, ": expected ", what, ", got ", v.describe()));
  const std::string& t = v.text();
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || errno == ERANGE || !std::isfinite(d) ||
      (integer && d != std::floor(d)))
    throw ConfigError(msg(at, ": expected ", what, ", got '", t, "'"));
  return d;
}

// A map is a distribution when one of its keys is a distribution kind, or (a typo) its only key
// is close to one.
bool is_distribution(const Params& m) {
  const auto keys = m.keys();
  for (const auto& k : keys)
    if (std::find(kKinds.begin(), kKinds.end(), k) != kKinds.end()) return true;
  if (keys.size() == 1 && !did_you_mean(keys[0], kKinds).empty())
    throw ConfigError(msg(m.key_path(keys[0]), ": unknown distribution '", keys[0],
                          "'; did you mean '", did_you_mean(keys[0], kKinds),
                          "'? (valid: ", join(kKinds, ", "), ")"));
  return false;
}

Distribution parse_distribution(const Params& given, const std::string& name) {
  auto m = given.clone();
  std::string kind;
  for (const auto& k : kKinds)
    if (m->has(k)) {
      if (!kind.empty())
        throw ConfigError(msg(m->path(), ": both '", kind, "' and '", k,
                              "' given; a distribution is one of ", join(kKinds, ", ")));
      kind = k;
    }
  if (kind.empty()) {
    // is_distribution saw a kind's key, so it is there without a value (`lr: {log_float:}`).
    for (const auto& k : kKinds)
      if (m->raw(k))
        throw ConfigError(msg(m->key_path(k), ": no value; expected ",
                              k == "categorical" ? "a list of choices [a, b, ...]" : "[low, high]"));
    throw ConfigError(msg(m->path(), ": expected a distribution, one of ", join(kKinds, ", ")));
  }
  const Value& v = *m->raw(kind);
  const std::string at = m->key_path(kind);
  Distribution d;
  if (kind == "categorical") {
    d.kind = Distribution::Kind::kCategorical;
    if (v.kind() != Value::Kind::kList)
      throw ConfigError(msg(at, ": expected a list of choices [a, b, ...], got ", v.describe()));
    for (size_t i = 0; i < v.items().size(); ++i) {
      const Value& c = v.items()[i];
      if (c.kind() != Value::Kind::kScalar)
        throw ConfigError(msg(at, "[", i, "]: expected a plain value, got ", c.describe()));
      d.choices.push_back(c.text());
    }
    if (d.choices.size() < 2)
      throw ConfigError(msg(at, ": expected at least two choices, got ", v.describe(),
                            d.choices.size() == 1 ? " (for one value write the value itself)"
                                                  : " (an empty search range)"));
  } else {
    d.kind = kind == "int"     ? Distribution::Kind::kInt
             : kind == "float" ? Distribution::Kind::kFloat
                               : Distribution::Kind::kLogFloat;
    const bool integer = kind == "int";
    if (v.kind() != Value::Kind::kList || v.items().size() != 2)
      throw ConfigError(msg(at, ": expected [low, high], got ", v.describe()));
    d.low = number_of(v.items()[0], at + "[0]", integer);
    d.high = number_of(v.items()[1], at + "[1]", integer);
    if (!(d.low < d.high))
      throw ConfigError(msg(at, ": the range [", v.items()[0].text(), ", ", v.items()[1].text(),
                            "] is ", d.low > d.high ? "inverted" : "empty",
                            ": expected low < high"));
    if (d.kind == Distribution::Kind::kLogFloat && !(d.low > 0))
      throw ConfigError(msg(at, ": log_float needs low > 0 (it samples in log space), got ",
                            v.items()[0].text()));
    if (m->has("step")) {
      if (d.kind == Distribution::Kind::kLogFloat)
        throw ConfigError(msg(m->key_path("step"), ": log_float takes no step"));
      d.step = number_of(*m->raw("step"), m->key_path("step"), integer);
      if (!(d.step > 0))
        throw ConfigError(msg(m->key_path("step"), ": expected a step > 0, got ", d.step));
    } else if (integer) {
      d.step = 1;
    }
  }
  m->finish(kind == "int" || kind == "float" ? std::vector<std::string>{"step"}
                                             : std::vector<std::string>{});
  try {
    validate("pipeline." + name, d);
  } catch (const ConfigError& e) {
    throw ConfigError(msg(m->path(), ": ", e.what()));
  }
  return d;
}

using DistFn = std::function<Value(const std::string& name, const Params& dist)>;

// The value with every distribution replaced by fn(name, its map); maps and lists copied.
Value rewrite(const Value& v, const std::string& name, const DistFn& fn) {
  if (v.kind() == Value::Kind::kMap) {
    if (is_distribution(*v.params())) return fn(name, *v.params());
    auto copy = v.params()->clone();
    for (const std::string& key : copy->keys()) {
      Value replaced = rewrite(*copy->raw(key), name + "." + key, fn);
      copy->set(key, std::move(replaced));
    }
    return Value::map(copy);
  }
  if (v.kind() == Value::Kind::kList) {
    std::vector<Value> items;
    for (size_t i = 0; i < v.items().size(); ++i)
      items.push_back(rewrite(v.items()[i], msg(name, "[", i, "]"), fn));
    return Value::list(std::move(items));
  }
  return v;
}

std::vector<std::shared_ptr<Params>> rewrite_stages(const std::vector<std::shared_ptr<Params>>& t,
                                                    const DistFn& fn) {
  std::vector<std::shared_ptr<Params>> out;
  for (size_t i = 0; i < t.size(); ++i)
    out.push_back(rewrite(Value::map(t[i]), msg("stages[", i, "]"), fn).params());
  return out;
}

double grid_top(const Distribution& d) {
  if (d.kind == Distribution::Kind::kCategorical) return double(d.choices.size() - 1);
  if (d.step > 0) return d.low + std::floor((d.high - d.low) / d.step + 1e-9) * d.step;
  return d.high;
}

std::map<std::string, double> corner(const SearchSpace& space, bool high) {
  std::map<std::string, double> p;
  for (const auto& [name, d] : space)
    p[name] = high ? grid_top(d) : (d.kind == Distribution::Kind::kCategorical ? 0.0 : d.low);
  return p;
}

std::vector<StageSpec> parse_stages(const std::vector<std::shared_ptr<Params>>& stages) {
  std::vector<StageSpec> out;
  for (const auto& s : stages) out.push_back(parse_stage_spec(*s->clone()));
  return out;
}

// YAML flow text of a value (quoted where a plain scalar would be misread).
std::string flow(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return "null";
    case Value::Kind::kScalar: {
      const std::string& t = v.text();
      bool plain =
          !v.quoted() && !t.empty() && t.find_first_of(":{}[],#&*!|>'\"%@`\n") == std::string::npos;
      plain = plain && t.front() != ' ' && t.back() != ' ' && t.front() != '-';
      if (plain || (!v.quoted() && t.front() == '-' && t.size() > 1 &&
                    (std::isdigit(static_cast<unsigned char>(t[1])) || t[1] == '.')))
        return t;
      std::string q = "\"";
      for (char c : t)
        q += c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : std::string(1, c);
      return q + "\"";
    }
    case Value::Kind::kList: {
      std::vector<std::string> parts;
      for (const auto& item : v.items()) parts.push_back(flow(item));
      return "[" + join(parts, ", ") + "]";
    }
    case Value::Kind::kMap: {
      auto copy = v.params()->clone();
      std::vector<std::string> parts;
      for (const auto& k : copy->keys()) parts.push_back(k + ": " + flow(*copy->raw(k)));
      return "{" + join(parts, ", ") + "}";
    }
  }
  return "null";
}

std::string describe_tree(const Params& root, const std::string& key) {
  auto copy = root.clone();
  const Value* v = copy->raw(key);
  return v ? flow(*v) : "null";
}

// What the study's trials mean: everything that changes a trial's outcome except the budgets.
std::string fingerprint(const WorkflowConfig& config, const AutotuneSpec& spec,
                        const std::optional<GuardOptions>& guard) {
  std::vector<std::string> stages;
  for (const auto& s : spec.stages) stages.push_back(flow(Value::map(s)));
  return msg("model: ", describe_tree(*config.tree, "model"),
             "; data: ", describe_tree(*config.tree, "data"),
             "; baseline: ", describe_tree(*config.tree, "baseline"), "; seed: ", config.seed,
             "; stages: [", join(stages, ", "), "]; objective: ", spec.objective_name,
             spec.objective == AutotuneSpec::Objective::kPareto ? " (" + spec.pareto + ")" : "",
             "; guard: ", guard ? guard->written : std::string("none"));
}

std::string host_name() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) return "host";
  return host;
}

// Thrown by the epoch hook when the pruner stops a trial / the study took the trial away.
struct TrialPruned {
  int64_t step;
  double value;
};
struct TrialLost {};

// Beats for trial `number` from a thread of its own while the trial runs (an epoch may take
// longer than the heartbeat timeout), and notes when the study took the trial away.
class TrialHeartbeat {
 public:
  TrialHeartbeat(Study& study, int64_t number, double interval_s)
      : study_(study), number_(number), interval_(interval_s) {
    thread_ = std::thread([this] { run(); });
  }
  ~TrialHeartbeat() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  TrialHeartbeat(const TrialHeartbeat&) = delete;
  TrialHeartbeat& operator=(const TrialHeartbeat&) = delete;
  bool lost() const { return lost_; }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::duration<double>(interval_), [this] { return stop_; })) {
      lock.unlock();
      try {
        if (!study_.heartbeat(number_)) lost_ = true;
      } catch (const std::exception& e) {
        // A storage hiccup: the next beat (or the trial's own writes) will tell.
        log::warn("trial ", number_, ": heartbeat failed: ", e.what());
      }
      lock.lock();
      if (lost_) return;
    }
  }

  Study& study_;
  const int64_t number_;
  const double interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> lost_{false};
  std::thread thread_;
};

double attr_number(const Trial& t, const std::string& key, double fallback = 0.0) {
  auto it = t.attrs.find(key);
  if (it == t.attrs.end()) return fallback;
  return std::strtod(it->second.c_str(), nullptr);
}

std::string attr(const Trial& t, const std::string& key) {
  auto it = t.attrs.find(key);
  return it == t.attrs.end() ? std::string() : it->second;
}

bool measured(const Trial& t) {
  return t.state == TrialState::kComplete && t.attrs.count("val_accuracy");
}

// a dominates b: no worse in both (val accuracy up, cost down), better in one.
bool dominates(const Trial& a, const Trial& b) {
  const double aa = a.values[0], ba = b.values[0], ac = a.values[1], bc = b.values[1];
  return aa >= ba && ac <= bc && (aa > ba || ac < bc);
}

}  // namespace

double parse_duration(const std::string& text, const std::string& key_path) {
  auto bad = [&]() {
    throw ConfigError(
        msg(key_path, ": expected a duration such as 90s, 30m, 2h or 1h30m, got '", text, "'"));
  };
  if (text.empty()) bad();
  double total = 0.0;
  size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.'))
      ++j;
    if (j == i) bad();
    char* end = nullptr;
    const std::string num = text.substr(i, j - i);
    const double v = std::strtod(num.c_str(), &end);
    if (end != num.c_str() + num.size() || !std::isfinite(v)) bad();
    double unit = 1.0;
    if (j < text.size()) {
      const char u = text[j];
      unit = u == 's' ? 1.0 : u == 'm' ? 60.0 : u == 'h' ? 3600.0 : u == 'd' ? 86400.0 : -1.0;
      if (unit < 0) bad();
      ++j;
    } else if (any) {
      bad();  // "1h30": the unit of 30 is missing
    }
    total += v * unit;
    any = true;
    i = j;
  }
  if (!(total > 0) || total > 1e9) bad();
  return total;
}

std::shared_ptr<const AutotuneSpec> parse_autotune(Params& block,
                                                   const std::optional<GuardOptions>& guard) {
  auto spec = std::make_shared<AutotuneSpec>();
  spec->objective_name = block.get_choice("objective", spec->objective_name, kObjectives);
  spec->objective = spec->objective_name == "max_compression"
                        ? AutotuneSpec::Objective::kMaxCompression
                    : spec->objective_name == "pareto" ? AutotuneSpec::Objective::kPareto
                                                       : AutotuneSpec::Objective::kAccuracyLogRatio;
  if (spec->objective == AutotuneSpec::Objective::kPareto)
    spec->pareto = block.get_choice("pareto", spec->pareto, {"size", "latency"});
  else if (block.has("pareto"))
    throw ConfigError(msg(block.key_path("pareto"), ": applies to objective: pareto only (got ",
                          "objective: ", spec->objective_name, ")"));
  if (spec->objective == AutotuneSpec::Objective::kMaxCompression && !guard)
    throw ConfigError(msg("missing required key 'guard' in ", block.path(),
                          ": objective max_compression maximizes compression subject to the "
                          "guard; give guard: {max_drop: 0.02, relative: true}"));
  spec->trials = block.get_int("trials", spec->trials, 1, 1000000);
  if (block.has("time")) {
    const Value* t = block.raw("time");
    if (t->kind() != Value::Kind::kScalar)
      throw ConfigError(msg(block.key_path("time"),
                            ": expected a duration such as 90s, 30m or "
                            "2h, got ",
                            t->describe()));
    spec->time_text = t->text();
    spec->time_s = parse_duration(spec->time_text, block.key_path("time"));
  }
  if (block.has("seed")) spec->seed = static_cast<uint64_t>(block.get_int("seed", 0, 0));
  spec->study = block.get_string("study", "");
  if (block.has("study") && spec->study.empty())
    throw ConfigError(msg(block.key_path("study"),
                          ": expected a file path or a postgresql://user@host/database URL, "
                          "got ''"));
  // The configuration is copied into config.yaml and the report: without the URL's password.
  if (display_location(spec->study) != spec->study)
    block.set("study", Value::scalar(display_location(spec->study), true));
  spec->study_name = block.get_string("study_name", spec->study_name);
  if (spec->study_name.empty() || spec->study_name.size() > 200)
    throw ConfigError(msg(block.key_path("study_name"), ": expected a name of 1 to 200 ",
                          "characters, got '", spec->study_name, "'"));
  if (block.has("heartbeat_timeout")) {
    const Value* t = block.raw("heartbeat_timeout");
    if (t->kind() != Value::Kind::kScalar)
      throw ConfigError(msg(block.key_path("heartbeat_timeout"),
                            ": expected a duration such as 90s or 5m, got ", t->describe()));
    spec->heartbeat_timeout_s = parse_duration(t->text(), block.key_path("heartbeat_timeout"));
    if (spec->heartbeat_timeout_s < 1.0)
      throw ConfigError(msg(block.key_path("heartbeat_timeout"), ": ", t->text(),
                            " is too short: a worker beats every fifth of it; use 1s or more"));
  }
  if (auto sampler = block.get_map("sampler")) {
    spec->sampler = sampler->get_choice("type", spec->sampler, {"tpe", "random"});
    spec->startup_trials = sampler->get_int("startup_trials", spec->startup_trials, 0, 1000000);
    sampler->finish();
  }
  if (block.has("pruner")) {
    const Value* p = block.raw("pruner");
    if (p->kind() == Value::Kind::kScalar) {
      if (p->text() == "none" || p->text() == "false")
        spec->prune = false;
      else if (p->text() != "median")
        throw ConfigError(msg(block.key_path("pruner"), ": expected median, none or ",
                              "{type: median, startup_trials: 5, warmup_steps: 0}, got '",
                              p->text(), "'"));
    } else {
      auto pruner = block.get_map("pruner");
      spec->prune = pruner->get_choice("type", "median", {"median", "none"}) == "median";
      spec->pruner_startup_trials =
          pruner->get_int("startup_trials", spec->pruner_startup_trials, 0, 1000000);
      spec->pruner_warmup_steps =
          pruner->get_int("warmup_steps", spec->pruner_warmup_steps, 0, 1000000);
      pruner->finish();
    }
  }
  block.require("stages");
  spec->stages = block.get_map_list("stages");
  block.finish();
  if (spec->stages.empty())
    throw ConfigError(msg(block.key_path("stages"),
                          ": expected at least one stage ({method, params, finetune})"));
  // The space, and the template at its lower corner: parsing it checks every stage key and the
  // fine-tuning values (the passes check their parameters when the runner prepares them).
  SearchSpace space;
  std::vector<std::shared_ptr<Params>> low =
      rewrite_stages(spec->stages, [&](const std::string& name, const Params& m) {
        Distribution d = parse_distribution(m, name);
        space[name] = d;
        return Value::scalar(d.to_text(d.kind == Distribution::Kind::kCategorical ? 0.0 : d.low));
      });
  if (space.empty())
    throw ConfigError(msg(block.key_path("stages"),
                          ": nothing to search: give at least one parameter a distribution, "
                          "e.g. ratio: {float: [0.5, 0.95]} (valid: ",
                          join(kKinds, ", "), ")"));
  spec->space = std::move(space);
  parse_stages(low);
  return spec;
}

std::vector<std::shared_ptr<Params>> instantiate_stages(
    const AutotuneSpec& spec, const std::map<std::string, double>& point) {
  return rewrite_stages(spec.stages, [&](const std::string& name, const Params&) {
    const Distribution& d = spec.space.at(name);
    auto it = point.find(name);
    SQZ_ASSERT(it != point.end(), "no value for ", name);
    return Value::scalar(d.to_text(it->second));
  });
}

std::string experiment_yaml(const WorkflowConfig& config,
                            const std::vector<std::shared_ptr<Params>>& stages,
                            const std::string& name, const std::string& out_dir,
                            const std::string& header_comment) {
  std::ostringstream os;
  std::istringstream comment(header_comment);
  for (std::string line; std::getline(comment, line);) os << "# " << line << "\n";
  auto root = config.tree->clone();
  bool wrote_output = false;
  for (const std::string& key : root->keys()) {
    if (key == "pipeline" || key == "experiments" || key == "compression") continue;
    const Value& v = *root->raw(key);
    if (key == "output") {
      auto out = v.kind() == Value::Kind::kMap ? v.params()->clone() : std::make_shared<Params>();
      out->set("dir", Value::scalar(out_dir));
      os << "output: " << flow(Value::map(out)) << "\n";
      wrote_output = true;
      continue;
    }
    os << key << ": " << flow(v) << "\n";
  }
  if (!wrote_output) os << "output: {dir: " << flow(Value::scalar(out_dir)) << "}\n";
  os << "experiments:\n  - name: " << flow(Value::scalar(name)) << "\n    stages:\n";
  for (const auto& s : stages) os << "      - " << flow(Value::map(s)) << "\n";
  return os.str();
}

report::Report run_autotune(const WorkflowConfig& config, const RunOptions& options_in) {
  const PipelineSpec& pspec = *config.pipeline;
  const AutotuneSpec& spec = *pspec.autotune;
  using Objective = AutotuneSpec::Objective;
  const bool pareto = spec.objective == Objective::kPareto;
  const std::string base_dir = options_in.out_dir.empty() ? config.output.dir : options_in.out_dir;
  const std::string study_path =
      spec.study.empty() ? (fs::path(base_dir) / "study.db").string() : spec.study;
  RunOptions options = options_in;
  if (options.worker)
    options.out_dir =
        (fs::path(base_dir) / "workers" / safe_file_name(msg(host_name(), "-", getpid()))).string();
  Workspace ws(config, options);

  // Every check before any training: the template at both corners of the space made into passes
  // (each pass checks its parameters: a path naming no parameter is an unknown key there).
  std::vector<StageSpec> low_specs =
      parse_stages(instantiate_stages(spec, corner(spec.space, false)));
  std::vector<StageSpec> high_specs =
      parse_stages(instantiate_stages(spec, corner(spec.space, true)));
  auto low_stages = ws.prepare(low_specs, "pipeline.stages (at the lower bounds of the search)");
  auto high_stages = ws.prepare(high_specs, "pipeline.stages (at the upper bounds of the search)");
  ws.load();
  if (!ws.has_validation())
    throw ConfigError(
        msg("pipeline: autotune scores trials on the validation split, but the data (",
            ws.data() ? ws.data()->description : std::string("none"),
            ") has none; give data: {split: {val: 0.1}}"));
  CandidateStore::check_data(ws, pspec.guard);
  ws.attach_teachers(low_stages);
  ws.attach_teachers(high_stages);

  StudySpec sspec;
  sspec.name = spec.study_name;
  sspec.directions = pareto ? std::vector<Direction>{Direction::kMaximize, Direction::kMinimize}
                            : std::vector<Direction>{Direction::kMaximize};
  sspec.space = spec.space;
  sspec.seed = spec.seed ? *spec.seed : config.seed;
  sspec.fingerprint = fingerprint(config, spec, pspec.guard);
  const OpenMode mode = options.resume   ? OpenMode::kResume
                        : options.worker ? OpenMode::kJoin
                                         : OpenMode::kCreate;
  if (mode == OpenMode::kResume && study_path.find("://") == std::string::npos &&
      !fs::exists(study_path))
    throw InputError(msg("--resume: there is no study at ", study_path,
                         "; run without --resume to start the search"));
  // `squeeze config --check` writes nothing: without a study file there is nothing to check
  // (the run would create it); an existing one is opened as the run would, which only reads.
  if (options.check_only && study_path.find("://") == std::string::npos &&
      !fs::exists(study_path))
    ws.start();  // throws ChecksPassed
  std::unique_ptr<Study> study;
  try {
    StudyOptions study_options;
    study_options.heartbeat_timeout_s = spec.heartbeat_timeout_s;
    study = open_study(study_path, sspec, mode, study_options);
  } catch (const ConfigError& e) {
    if (mode == OpenMode::kCreate)
      throw ConfigError(msg(e.what(),
                            ". To continue that search run again with --resume; to add "
                            "a worker to it, --worker; to start over, remove ",
                            display_location(study_path),
                            " or set pipeline.study to another file (or pipeline.study_name "
                            "to another name)"));
    // Name the part of the search that changed rather than the two whole fingerprints.
    std::string stored;
    try {
      StudySpec load;
      load.name = sspec.name;
      stored = open_study(study_path, load, OpenMode::kLoad)->spec().fingerprint;
    } catch (const Error&) {
      throw ConfigError(e.what());
    }
    auto fields = [](const std::string& f) {
      std::map<std::string, std::string> out;
      size_t start = 0;
      while (start < f.size()) {
        size_t end = f.find("; ", start);
        if (end == std::string::npos) end = f.size();
        const std::string part = f.substr(start, end - start);
        const size_t colon = part.find(": ");
        if (colon != std::string::npos) out[part.substr(0, colon)] = part.substr(colon + 2);
        start = end + 2;
      }
      return out;
    };
    const auto was = fields(stored), now = fields(sspec.fingerprint);
    std::vector<std::string> diffs;
    for (const auto& [k, v] : now) {
      auto it = was.find(k);
      if (it == was.end() || it->second != v)
        diffs.push_back(msg(k, " was ", it == was.end() ? "?" : it->second, ", now ", v));
    }
    if (diffs.empty()) throw ConfigError(e.what());
    throw ConfigError(msg("the study '", sspec.name, "' at ", display_location(study_path),
                          " was made by a different search (",
                          join(diffs, "; "), "); a ", options.resume ? "resume" : "worker",
                          " must use the configuration the study was created with, or set "
                          "pipeline.study to another file or pipeline.study_name to another "
                          "name (the budgets trials and time may change)"));
  }
  log::info("study: '", sspec.name, "' at ", study->location(), " (", study->trials().size(),
            " trials so far, worker ",
            study->worker(), ")");

  interrupt::InterruptScope interrupt_scope;
  ws.start();

  auto objective_values = [&](const report::CandidateRecord& c, double latency_us) {
    switch (spec.objective) {
      case Objective::kAccuracyLogRatio:
        return std::vector<double>{c.val_accuracy * std::log(std::max(c.compression_ratio, 1e-12))};
      case Objective::kMaxCompression:
        return std::vector<double>{c.passed ? c.compression_ratio : -c.val_relative_drop};
      case Objective::kPareto:
        return std::vector<double>{c.val_accuracy,
                                   spec.pareto == "latency" ? latency_us : double(c.size_bytes)};
    }
    return std::vector<double>{};
  };
  // The store's order among passing candidates: the re-run of the chosen trial first, then the
  // objective (for pareto, the smaller size or latency).
  int64_t preferred = -1;
  std::map<int64_t, double> latency_of;  // candidate index -> batch-1 latency (pareto: latency)
  auto key = [&](const report::CandidateRecord& c) {
    switch (spec.objective) {
      case Objective::kAccuracyLogRatio:
        return c.val_accuracy * std::log(std::max(c.compression_ratio, 1e-12));
      case Objective::kMaxCompression:
        return c.compression_ratio;
      case Objective::kPareto:
        return spec.pareto == "latency" ? -latency_of[c.index] : -double(c.size_bytes);
    }
    return 0.0;
  };
  CandidateStore store(ws, pspec.guard,
                       [&](const report::CandidateRecord& a, const report::CandidateRecord& b) {
                         if ((a.index == preferred) != (b.index == preferred))
                           return a.index == preferred;
                         const double ka = key(a), kb = key(b);
                         if (ka != kb) return ka > kb;
                         return a.index < b.index;
                       });

  std::unique_ptr<Sampler> sampler;
  if (spec.sampler == "random") {
    sampler = std::make_unique<RandomSampler>(sspec.seed);
  } else {
    TpeOptions to;
    to.directions = sspec.directions;
    to.intermediate_direction = Direction::kMaximize;
    to.n_startup_trials = spec.startup_trials;
    to.seed = sspec.seed;
    sampler = std::make_unique<TpeSampler>(to);
  }
  MedianPrunerOptions po;
  po.n_startup_trials = spec.pruner_startup_trials;
  po.n_warmup_steps = spec.pruner_warmup_steps;
  MedianPruner pruner(po);
  const Proposer propose = [&](int64_t number, const std::vector<Trial>& history) {
    return sampler->propose(spec.space, history, number);
  };

  std::map<int64_t, int64_t> trial_candidate;  // trial number -> candidate index (this process)
  std::map<int64_t, double> trial_seconds;
  int64_t ran = 0, pruned = 0, failed = 0;
  auto params_text = [&](const Trial& t) {
    std::string s;
    for (const auto& [name, d] : spec.space) {
      auto it = t.params.find(name);
      s += (s.empty() ? "" : ", ") + name + "=" +
           (it == t.params.end() ? "?" : d.to_text(it->second));
    }
    return s;
  };

  // Runs the template at `point` from the baseline; throws what the stages throw.
  auto run_point = [&](const std::map<std::string, double>& point, const std::string& owner,
                       const train::EpochHook& hook, std::vector<std::shared_ptr<Params>>* written,
                       std::vector<report::StageRecord>* history) {
    std::vector<std::shared_ptr<Params>> stage_params = instantiate_stages(spec, point);
    std::vector<StageSpec> specs = parse_stages(stage_params);
    std::vector<PreparedStage> stages = ws.prepare(specs, owner);
    ws.attach_teachers(stages);
    ir::Graph g = ws.baseline().clone();
    for (size_t i = 0; i < stages.size(); ++i) {
      stages[i].on_epoch = hook;
      history->push_back(ws.run_stage(g, stages[i], i));
    }
    *written = std::move(stage_params);
    return g;
  };
  auto step_refs = [&](const std::vector<std::shared_ptr<Params>>& written) {
    std::vector<report::StepRef> refs;
    for (size_t i = 0; i < written.size(); ++i) {
      auto copy = written[i]->clone();
      const std::string method = canonical_method(copy->get_string("method", ""));
      std::shared_ptr<Params> params = copy->has("params") ? copy->get_map("params") : nullptr;
      refs.push_back({msg("stages[", i, "]"), method, params});
    }
    return refs;
  };

  std::string stop_reason = msg("the trials budget (", spec.trials, ") is reached");
  bool interrupted = false;
  int interrupt_signal = 0;
  const auto t_search = std::chrono::steady_clock::now();
  try {
    for (;;) {
      interrupt::check();
      if (spec.time_s > 0 && seconds_since(t_search) >= spec.time_s) {
        stop_reason = msg("the time budget (", spec.time_text, ") is spent");
        break;
      }
      std::optional<Trial> claimed = study->claim_trial(propose, spec.trials);
      if (!claimed) break;
      Trial current = *claimed;
      const int64_t n = current.number;
      log::info("trial ", n, " (", study->trials().size(), "/", spec.trials,
                "): ", params_text(current));
      const auto t0 = std::chrono::steady_clock::now();
      const TrialHeartbeat beat(*study, n, spec.heartbeat_timeout_s / 5);
      int64_t step = 0;
      train::EpochHook hook;
      hook = [&](const train::EpochRecord& rec) {
        if (beat.lost() || !study->report_intermediate(n, step, rec.val_accuracy))
          throw TrialLost{};
        current.intermediate[step] = rec.val_accuracy;
        if (spec.prune && pruner.should_prune(study->trials(), current, step))
          throw TrialPruned{step, rec.val_accuracy};
        ++step;
      };
      std::vector<std::shared_ptr<Params>> written;
      std::vector<report::StageRecord> history;
      ir::Graph g;
      ++ran;
      try {
        g = run_point(current.params, msg("trial ", n), hook, &written, &history);
      } catch (const TrialPruned& p) {
        ++pruned;
        const std::string why =
            msg("pruned after fine-tuning epoch ", p.step + 1, ": validation accuracy ", p.value,
                " is below the median of earlier trials at that epoch");
        log::info("  trial ", n, " ", why);
        trial_seconds[n] = seconds_since(t0);
        if (!study->finish_trial(n, TrialState::kPruned, {},
                                 {{"reason", why}, {"seconds", exact(seconds_since(t0))}}))
          log::warn("trial ", n, " was taken back by the study (heartbeat timeout)");
        continue;
      } catch (const TrialLost&) {
        log::warn("trial ", n, " was taken back by the study (heartbeat timeout); dropped");
        continue;
      } catch (const interrupt::Interrupted&) {
        study->release_trial(n);
        throw;
      } catch (const std::exception& e) {
        ++failed;
        log::warn("trial ", n, " failed: ", e.what());
        trial_seconds[n] = seconds_since(t0);
        if (!study->finish_trial(n, TrialState::kFailed, {},
                                 {{"reason", e.what()}, {"seconds", exact(seconds_since(t0))}}))
          log::warn("trial ", n, " was taken back by the study (heartbeat timeout)");
        continue;
      }
      double latency_us = 0.0;
      if (pareto && spec.pareto == "latency") {
        deploy::LatencyOptions lo;
        lo.budget_s = 0.5;
        latency_us = deploy::measure_latency({&g}, 1, lo)[0].median_us;
      }
      // Known before add() ranks the candidate.
      latency_of[static_cast<int64_t>(store.candidates().size())] = latency_us;
      const report::CandidateRecord& c =
          store.add(msg("trial-", n), step_refs(written), history, g, t0);
      std::vector<double> values = objective_values(c, latency_us);
      store.candidate(c.index).status = "trial";
      trial_candidate[n] = c.index;
      trial_seconds[n] = seconds_since(t0);
      std::map<std::string, std::string> attrs = {
          {"val_accuracy", exact(c.val_accuracy)},
          {"accuracy", exact(c.accuracy)},
          {"size_bytes", std::to_string(c.size_bytes)},
          {"compression_ratio", exact(c.compression_ratio)},
          {"passed", c.passed ? "1" : "0"},
          {"reason", c.reason},
          {"checkpoint", (fs::path(ws.out_dir()) / c.checkpoint).string()},
          {"seconds", exact(seconds_since(t0))}};
      if (pareto && spec.pareto == "latency") attrs["latency_us"] = exact(latency_us);
      if (!study->finish_trial(n, TrialState::kComplete, values, attrs))
        log::warn("trial ", n,
                  " was taken back by the study (heartbeat timeout); its result is "
                  "kept in this report only");
    }
  } catch (const interrupt::Interrupted& e) {
    interrupted = true;
    interrupt_signal = e.signal();
    stop_reason = msg("interrupted (", e.what(), ")");
    log::warn(
        "interrupted: the running trial was given back to the study; writing the report "
        "of the finished trials");
  }

  // The whole study, as it stands: the best complete trial by the objective.
  std::vector<Trial> all = study->trials();
  std::vector<const Trial*> complete;
  for (const Trial& t : all)
    if (measured(t) && t.values.size() == sspec.directions.size()) complete.push_back(&t);
  auto passed = [](const Trial* t) { return attr(*t, "passed") == "1"; };
  auto ahead = [&](const Trial* a, const Trial* b) {
    if (passed(a) != passed(b)) return passed(a);
    if (!passed(a)) {
      const double va = attr_number(*a, "val_accuracy"), vb = attr_number(*b, "val_accuracy");
      if (va != vb) return va > vb;
    } else if (pareto ? a->values[1] != b->values[1] : a->values[0] != b->values[0]) {
      return pareto ? a->values[1] < b->values[1] : a->values[0] > b->values[0];
    }
    return a->number < b->number;
  };
  const Trial* best = nullptr;
  for (const Trial* t : complete)
    if (!best || ahead(t, best)) best = t;

  std::string confirm;
  if (best && !interrupted) {
    log::info("best: trial ", best->number, " (", params_text(*best),
              "); re-running it from the "
              "baseline to confirm");
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<Params>> written;
    std::vector<report::StageRecord> history;
    try {
      ir::Graph g =
          run_point(best->params, msg("best trial ", best->number), nullptr, &written, &history);
      preferred = static_cast<int64_t>(store.candidates().size());
      const report::CandidateRecord& c =
          store.add(msg("best-trial-", best->number), step_refs(written), history, g, t0);
      store.candidate(c.index).status = "re-run of the best trial";
      const double trial_val = attr_number(*best, "val_accuracy");
      confirm =
          c.val_accuracy == trial_val
              ? msg("the re-run reproduced its validation accuracy exactly (", c.val_accuracy, ")")
              : msg("the re-run's validation accuracy is ", c.val_accuracy,
                    " against the "
                    "trial's ",
                    trial_val, " (training is not bit-reproducible here)");
      const std::string yaml = experiment_yaml(
          config, written, msg("autotune-best-trial-", best->number),
          (fs::path(ws.out_dir()) / "best").string(),
          msg("Written by squeeze's autotune pipeline: the best trial (", best->number, ") of the ",
              "study ", display_location(study_path), ",\nobjective ", spec.objective_name, ", chosen among ",
              complete.size(), " complete trials: ", params_text(*best),
              ".\nRun it from the folder the search ran in: squeeze run ",
              (fs::path(ws.out_dir()) / "best.yaml").string()));
      write_text_atomic((fs::path(ws.out_dir()) / "best.yaml").string(), yaml);
      log::info("wrote ", (fs::path(ws.out_dir()) / "best.yaml").string());
    } catch (const interrupt::Interrupted& e) {
      interrupted = true;
      interrupt_signal = e.signal();
      stop_reason = msg("interrupted during the re-run of the best trial (", e.what(), ")");
    }
  }

  // The record: the candidates of this process and every trial of the study.
  store.rank();
  report::PipelineRecord rec = store.record("autotune");
  rec.entries_key = "candidates";
  rec.objective = spec.objective_name;
  switch (spec.objective) {
    case Objective::kAccuracyLogRatio:
      rec.objective_values = {"val_accuracy * ln(compression_ratio)"};
      break;
    case Objective::kMaxCompression:
      rec.objective_values = {"compression_ratio if the guard passes, else -relative val drop"};
      break;
    case Objective::kPareto:
      rec.objective_values = {"val_accuracy",
                              spec.pareto == "latency" ? "latency_us (batch 1)" : "size_bytes"};
      break;
  }
  for (Direction d : sspec.directions) rec.objective_directions.push_back(to_string(d));
  for (const Trial& t : all) {
    report::TrialRecord tr;
    tr.number = t.number;
    tr.state = to_string(t.state);
    for (const auto& [name, d] : spec.space) {
      auto it = t.params.find(name);
      if (it != t.params.end()) tr.params[name] = d.to_text(it->second);
    }
    tr.values = t.values;
    tr.intermediate = t.intermediate;
    auto c = trial_candidate.find(t.number);
    tr.candidate = c == trial_candidate.end() ? -1 : c->second;
    tr.measured = measured(t);
    if (tr.measured) {
      tr.val_accuracy = attr_number(t, "val_accuracy");
      tr.accuracy = attr_number(t, "accuracy");
      tr.size_bytes = static_cast<int64_t>(attr_number(t, "size_bytes"));
      tr.compression_ratio = attr_number(t, "compression_ratio");
      tr.passed = attr(t, "passed") == "1";
    }
    if (t.state != TrialState::kComplete) tr.note = attr(t, "reason");
    if (pareto && tr.measured && t.values.size() == 2) {
      tr.pareto = true;
      for (const Trial* o : complete)
        if (o->number != t.number && dominates(*o, t)) tr.pareto = false;
    }
    tr.worker = t.worker;
    tr.seconds = attr_number(t, "seconds");
    rec.trials.push_back(std::move(tr));
  }
  int64_t n_complete = 0, n_pruned = 0, n_failed = 0, n_passing = 0;
  for (const Trial& t : all) {
    n_complete += t.state == TrialState::kComplete;
    n_pruned += t.state == TrialState::kPruned;
    n_failed += t.state == TrialState::kFailed;
  }
  for (const Trial* t : complete) n_passing += passed(t);
  rec.selection =
      pareto ? msg("among the complete trials that pass the guard, the smallest ", spec.pareto,
                   " (the Pareto front of validation accuracy against ", spec.pareto,
                   " is marked in the trials table); re-run from the baseline")
             : msg("among the complete trials that pass the guard, the highest ",
                   spec.objective == Objective::kAccuracyLogRatio
                       ? "val_accuracy * ln(compression_ratio)"
                       : "compression ratio",
                   " over the whole budget (when none passes, the highest validation accuracy); "
                   "re-run from the baseline");
  rec.outcome = msg("Search stopped: ", stop_reason, ". The study holds ", all.size(),
                    " trials: ", n_complete, " complete (", n_passing, " pass the guard), ",
                    n_pruned, " pruned, ", n_failed, " failed; this process ran ", ran, ".");
  if (best && !confirm.empty())
    rec.outcome += msg(" Best: trial ", best->number, " (", params_text(*best), "); ", confirm,
                       "; best.yaml runs its configuration from the baseline.");
  else if (!best)
    rec.outcome += " No trial completed, so there is no best configuration.";
  if (interrupted)
    rec.outcome += " Interrupted: the study keeps the finished trials; --resume continues it.";
  log::info(rec.outcome);
  report::Report rep = store.finish(std::move(rec));
  if (interrupted) throw interrupt::Interrupted(interrupt_signal);
  return rep;
}

}  // namespace squeeze::pipeline
