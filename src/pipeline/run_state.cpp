#include "squeeze/pipeline/run_state.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "squeeze/io/sqz.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/log.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace fs = std::filesystem;

const std::vector<std::string> RunState::kRunFiles = {
    "run.json", "run.log",     "config.yaml", "report.json", "report.md",
    "report.html", "models",   "candidates",  "state"};

const std::vector<std::string> RunState::kFreeKeys = {"output.dir", "output.latency",
                                                      "output.latency_batches", "output.latency_threads",
                                                      "output.recommend", "output.fpga", "threads"};

namespace {

std::string shown(const Value* v) {
  if (!v || v->is_null()) return "(absent)";
  return v->describe();
}

void diff(const Value* a, const Value* b, const std::string& path,
          const std::vector<std::string>& free_keys, std::vector<std::string>& out) {
  if (std::find(free_keys.begin(), free_keys.end(), path) != free_keys.end()) return;
  const bool a_map = a && a->kind() == Value::Kind::kMap;
  const bool b_map = b && b->kind() == Value::Kind::kMap;
  if (a_map && b_map) {
    std::vector<std::string> keys = a->params()->keys();
    for (const auto& k : b->params()->keys())
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    for (const auto& k : keys)
      diff(a->params()->raw(k), b->params()->raw(k), path.empty() ? k : path + "." + k, free_keys,
           out);
    return;
  }
  const bool a_list = a && a->kind() == Value::Kind::kList;
  const bool b_list = b && b->kind() == Value::Kind::kList;
  if (a_list && b_list && a->items().size() == b->items().size()) {
    for (size_t i = 0; i < a->items().size(); ++i)
      diff(&a->items()[i], &b->items()[i], msg(path, "[", i, "]"), free_keys, out);
    return;
  }
  const std::string sa = shown(a), sb = shown(b);
  if (sa != sb) out.push_back(msg(path, ": ", sa, " -> ", sb));
}

// Only what an interrupted first run leaves before its journal: temporary files, run.log,
// config.yaml, empty folders.
bool holds_no_run_files(const std::string& dir) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_directory(ec)) continue;
    const std::string name = it->path().filename().string();
    const bool top = it->path().parent_path() == fs::path(dir);
    if (name.find(".tmp-") != std::string::npos) continue;
    if (top && (name == "run.log" || name == "config.yaml")) continue;
    return false;
  }
  return true;
}

std::string describe_journal(const report::Journal& j) {
  std::string s = msg(j.units.size(), " finished unit", j.units.size() == 1 ? "" : "s");
  if (!j.units.empty()) s += msg(", the last ", j.units.back().key);
  return s;
}

}  // namespace

std::vector<std::string> config_differences(const Params& before, const Params& now,
                                            const std::vector<std::string>& free_keys) {
  std::vector<std::string> out;
  const Value a = Value::map(before.clone()), b = Value::map(now.clone());
  diff(&a, &b, "", free_keys, out);
  return out;
}

RunState::RunState(std::string dir, const WorkflowConfig& config,
                   const std::vector<std::string>& overrides, Mode mode, bool writer)
    : dir_(std::move(dir)), mode_(mode), writer_(writer) {
  const std::string journal_path = path("run.json");
  const bool has_journal = fs::exists(journal_path);
  const bool has_report = fs::exists(path("report.json"));
  journal_.config = config.source_text;
  journal_.overrides = overrides;
  std::string effective = config.source_text;
  for (const auto& o : overrides) effective += "\n# --set " + o;
  journal_.config_hash = fnv1a_hex(effective);
  journal_.seed = config.seed;
  journal_.runs = 0;

  if (mode == Mode::kForce) return;
  if (mode == Mode::kFresh && !writer_) return;
  if (mode == Mode::kFresh) {
    if (!has_journal && !has_report) return;
    std::string what;
    if (has_journal) {
      report::Journal j = report::parse_journal(read_text(journal_path), journal_path);
      what = j.state == "finished"
                 ? msg("a finished run (", describe_journal(j), ")")
                 : msg("an unfinished run (", describe_journal(j), ")");
    } else {
      what = "a finished run's report.json (made without a run journal, so it cannot be resumed)";
    }
    throw ConfigError(msg("the output folder ", dir_, " holds ", what,
                          "; to continue it run again with --resume, to replace it with --force "
                          "(its results are deleted), or choose another folder with --out"));
  }
  // kResume
  if (!has_journal && !has_report && holds_no_run_files(dir_)) {
    // The first run was stopped (killed, disk full) before its journal was written: nothing was
    // finished, so resuming is starting from the beginning.
    if (fs::is_directory(dir_)) {
      mode_ = Mode::kFresh;
      resumed_empty_ = true;
      return;
    }
  }
  if (!has_journal)
    throw ConfigError(msg(
        "--resume: the output folder ", dir_, " holds no run to continue (no run.json",
        has_report ? "; its report.json was written without a run journal, use --force to redo it"
                   : "",
        "); run without --resume to start it"));
  report::Journal stored = report::parse_journal(read_text(journal_path), journal_path);
  std::shared_ptr<Params> before = yaml_to_params(stored.config, journal_path + " (config)");
  try {
    for (const auto& o : stored.overrides) before->apply_override(o);
  } catch (const ConfigError& e) {
    throw InputError(msg(journal_path, ": its --set lines no longer apply (", e.what(),
                         "); start over with --force"));
  }
  std::vector<std::string> diffs = config_differences(*before, *config.tree, kFreeKeys);
  if (!diffs.empty())
    throw ConfigError(msg("--resume: the run in ", dir_,
                          " was made with a different config, so its finished work does not "
                          "belong to this one (",
                          join(diffs, "; "), "). Resume with the config (and --set values) it "
                          "was made with, or start over with --force"));
  journal_.units = std::move(stored.units);
  journal_.runs = stored.runs;
}

std::string RunState::path(const std::string& relative) const {
  return (fs::path(dir_) / relative).string();
}

RunState::~RunState() {
  if (private_dir_.empty()) return;
  std::error_code ec;
  fs::remove_all(private_dir_, ec);
}

std::string RunState::checkpoint_path(const std::string& relative) {
  if (writer_) return path(relative);
  if (private_dir_.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "squeeze-rank-XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      throw Error(msg("cannot create a temporary folder under ", fs::temp_directory_path().string(),
                      " for this rank's checkpoints: ", std::strerror(errno)));
    private_dir_ = tmpl;
  }
  return (fs::path(private_dir_) / relative).string();
}

void RunState::begin() {
  if (!writer_) {
    journal_.runs += 1;
    journal_.state = "running";
    return;
  }
  if (mode_ == Mode::kForce) {
    for (const auto& f : kRunFiles) {
      std::error_code ec;
      fs::remove_all(path(f), ec);
      if (ec)
        throw UserError(msg("--force: cannot remove ", path(f), " of the previous run: ",
                            ec.message()));
    }
  }
  fs::create_directories(dir_);
  if (resumed_empty_)
    log::info("--resume: ", dir_, " holds no finished work (the run was stopped before its first "
              "unit), so the run starts from the beginning");
  // A kill in the middle of an atomic write leaves its temporary file, never a partial file under
  // the final name; the next run of the folder removes them.
  for (const std::string& f : remove_stale_temps(dir_))
    log::info("removed ", f, ", a partial file an interrupted run left behind");
  journal_.runs += 1;
  journal_.state = "running";
  write();
}

const report::JournalUnit* RunState::find(const std::string& key) const {
  return mode_ == Mode::kResume ? journal_.find(key) : nullptr;
}

void RunState::record(report::JournalUnit unit) {
  auto it = std::find_if(journal_.units.begin(), journal_.units.end(),
                         [&](const report::JournalUnit& u) { return u.key == unit.key; });
  if (it != journal_.units.end())
    *it = std::move(unit);
  else
    journal_.units.push_back(std::move(unit));
  write();
}

void RunState::finish() {
  journal_.state = "finished";
  write();
}

ir::Graph RunState::load(const report::JournalUnit& unit) const {
  // A reader's own units are in its private folder; the earlier runs' in the run's folder.
  std::string p = path(unit.checkpoint);
  if (!private_dir_.empty() && !unit.checkpoint.empty() &&
      fs::exists(fs::path(private_dir_) / unit.checkpoint))
    p = (fs::path(private_dir_) / unit.checkpoint).string();
  if (unit.checkpoint.empty() || !fs::exists(p))
    throw InputError(msg("--resume: the checkpoint of ", unit.key, " (", p,
                         ") is missing; the folder was changed since; start over with --force"));
  return io::load_sqz(p);
}

void RunState::write() const {
  if (!writer_) return;
  write_text_atomic(path("run.json"), report::journal_json(journal_));
}

}  // namespace squeeze::pipeline
