// report.json (the contract of DESIGN.md section 5), report.md, report.html and the terminal
// comparison table.
//
// Values that were not measured are null in the JSON and "-" in the tables: accuracy and loss
// when a model was not evaluated (no data), accuracy_drop when either the baseline or the
// experiment was not evaluated.
#include "squeeze/report/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "squeeze/exec/int8.h"
#include "squeeze/util/env.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/params.h"

namespace squeeze::report {
namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Files


// ---------------------------------------------------------------------------------------------
// Numbers as text

bool finite(double v) { return std::isfinite(v); }

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -(n + 1) + uint64_t(1) : uint64_t(n));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// Three significant digits with a unit: "843 kB", "1.61 MB".
std::string scaled(double v, const char* const* units, int n_units, double step) {
  int u = 0;
  while (std::fabs(v) >= step && u < n_units - 1) {
    v /= step;
    ++u;
  }
  const int digits = u == 0 ? 0 : (std::fabs(v) < 10 ? 2 : std::fabs(v) < 100 ? 1 : 0);
  return fixed(v, digits) + units[u];
}

std::string fmt_bytes(int64_t b) {
  static const char* const kUnits[] = {" B", " kB", " MB", " GB", " TB"};
  return scaled(static_cast<double>(b), kUnits, 5, 1000.0);
}

std::string fmt_flops(int64_t f) {
  static const char* const kUnits[] = {"", " k", " M", " G", " T"};
  return scaled(static_cast<double>(f), kUnits, 5, 1000.0);
}

std::string fmt_pct(double fraction) {
  return finite(fraction) ? fixed(100.0 * fraction, 2) + "%" : "-";
}

// Accuracy drop in percentage points; negative when the compressed model is better.
std::string fmt_pp(double drop) {
  if (!finite(drop)) return "-";
  std::string s = fixed(100.0 * drop, 2);
  if (s == "-0.00") s = "0.00";
  return s + " pp";
}

std::string fmt_ratio(double r) {
  if (!finite(r) || r <= 0) return "-";
  return fixed(r, r < 10 ? 2 : 1) + "x";
}

std::string fmt_seconds(double s) {
  if (!finite(s)) return "-";
  if (s < 60) return fixed(s, 1) + " s";
  if (s < 3600) return fixed(s / 60, 1) + " min";
  return fixed(s / 3600, 2) + " h";
}

std::string fmt_us(double us) {
  if (!finite(us) || us <= 0) return "-";
  if (us < 1000) return fixed(us, 1) + " us";
  if (us < 1e6) return fixed(us / 1000, 2) + " ms";
  return fixed(us / 1e6, 2) + " s";
}

// "batch64" -> 64, for ordering and for the short column title "b64".
int64_t batch_of(const std::string& key) {
  if (key.rfind("batch", 0) != 0) return INT64_MAX;
  const std::string rest = key.substr(5);
  if (rest.empty() || rest.find_first_not_of("0123456789") != std::string::npos) return INT64_MAX;
  return std::strtoll(rest.c_str(), nullptr, 10);
}

std::string batch_label(const std::string& key) {
  return batch_of(key) == INT64_MAX ? key : "b" + key.substr(5);
}

// Every latency/speedup key in the report, smallest batch first.
std::vector<std::string> batch_keys(const Report& r) {
  std::set<std::string> keys;
  for (const auto& [k, v] : r.baseline.latency_us) keys.insert(k);
  for (const auto& res : r.results) {
    for (const auto& [k, v] : res.speedup) keys.insert(k);
    for (const auto& [k, v] : res.stats.latency_us) keys.insert(k);
  }
  std::vector<std::string> out(keys.begin(), keys.end());
  std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return batch_of(a) != batch_of(b) ? batch_of(a) < batch_of(b) : a < b;
  });
  return out;
}

bool drop_known(const Report& r, const ExperimentResult& res) {
  return r.baseline.evaluated && res.stats.evaluated;
}

// ---------------------------------------------------------------------------------------------
// JSON

bool matches_int(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

// [-+]? (digits [. digits?] | . digits) ([eE] [-+]? digits)?
bool matches_float(const std::string& s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

// A YAML scalar as JSON: numbers and booleans typed, unless the YAML quoted them.
Json scalar_json(const std::string& text, bool quoted) {
  if (quoted) return text;
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    return nullptr;
  if (matches_int(text)) {
    errno = 0;
    const long long v = std::strtoll(text.c_str(), nullptr, 10);
    if (errno != ERANGE) return static_cast<int64_t>(v);
  }
  if (matches_float(text)) {
    const double d = std::strtod(text.c_str(), nullptr);
    if (finite(d)) return d;
  }
  return text;
}

Json value_json(const Value& v);

Json params_json(const Params& p) {
  // raw() marks keys as read; read a copy so writing a report never changes the config.
  const std::shared_ptr<Params> copy = p.clone();
  Json j = Json::object();
  for (const auto& key : copy->keys()) {
    const Value* v = copy->raw(key);
    j[key] = v ? value_json(*v) : Json(nullptr);
  }
  return j;
}

Json value_json(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull:
      return nullptr;
    case Value::Kind::kScalar:
      return scalar_json(v.text(), v.quoted());
    case Value::Kind::kList: {
      Json a = Json::array();
      for (const auto& item : v.items()) a.push_back(value_json(item));
      return a;
    }
    case Value::Kind::kMap:
      return v.params() ? params_json(*v.params()) : Json::object();
  }
  return nullptr;
}

Json number_or_null(bool known, double v) { return known && finite(v) ? Json(v) : Json(nullptr); }

Json map_json(const std::map<std::string, double>& m) {
  Json j = Json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

Json string_map_json(const std::map<std::string, std::string>& m) {
  Json j = Json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

Json per_class_json(const std::vector<ClassStats>& classes) {
  Json a = Json::array();
  for (const auto& c : classes)
    a.push_back({{"class", c.cls},
                 {"name", c.name},
                 {"accuracy", c.accuracy},
                 {"recall", c.recall},
                 {"precision", c.precision}});
  return a;
}

// Fields shared by the baseline and each result, in the contract's order.
void add_stats(Json& j, const ModelStats& s) {
  j["accuracy"] = number_or_null(s.evaluated, s.accuracy);
  j["loss"] = number_or_null(s.evaluated, s.loss);
  j["params"] = s.params;
  j["nonzero_params"] = s.nonzero_params;
  j["size_bytes"] = s.size_bytes;
  j["flops"] = s.flops;
}

Json history_json(const std::vector<StageRecord>& records) {
  Json history = Json::array();
  for (const auto& h : records) {
    Json stage = {{"stage", h.stage},
                  {"summary", h.summary},
                  {"accuracy", number_or_null(h.evaluated, h.accuracy)},
                  {"accuracy_before_finetune",
                   number_or_null(h.evaluated_before_finetune, h.accuracy_before_finetune)},
                  {"params", h.params},
                  {"nonzero_params", h.nonzero_params},
                  {"size_bytes", h.size_bytes},
                  {"flops", h.flops},
                  {"seconds", h.seconds},
                  {"finetune_steps", h.finetune_steps},
                  {"step_ms", number_or_null(h.finetune_steps > 0, h.step_ms)}};
    if (!h.teacher.empty())
      stage["distill"] = {{"teacher", h.teacher}, {"teacher_ms_per_step", h.teacher_ms_per_step}};
    history.push_back(stage);
  }
  return history;
}

Json candidate_json(const Report& r, const CandidateRecord& c) {
  Json steps = Json::array();
  for (const auto& s : c.steps)
    steps.push_back({{"name", s.name},
                     {"method", s.method},
                     {"params", s.params ? params_json(*s.params) : Json::object()}});
  const bool tested = c.evaluated && r.baseline.evaluated;
  Json j = {{"index", c.index},
          {"name", c.name},
          {"steps", steps},
          {"val_accuracy", number_or_null(c.evaluated, c.val_accuracy)},
          {"val_drop", number_or_null(c.evaluated, c.val_drop)},
          {"val_relative_drop", number_or_null(c.evaluated, c.val_relative_drop)},
          {"accuracy", number_or_null(c.evaluated, c.accuracy)},
          {"accuracy_drop", number_or_null(tested, r.baseline.accuracy - c.accuracy)},
          {"params", c.params},
          {"nonzero_params", c.nonzero_params},
          {"size_bytes", c.size_bytes},
          {"flops", c.flops},
          {"compression_ratio", c.compression_ratio},
          {"passed_guard", c.passed},
          {"reason", c.reason},
          {"status", c.status},
          {"rank", c.rank > 0 ? Json(c.rank) : Json(nullptr)},
          {"checkpoint", c.checkpoint},
          {"history", history_json(c.history)},
          {"seconds", c.seconds}};
  if (!c.note.empty()) j["note"] = c.note;  // progressive: what the step did
  return j;
}

Json pipeline_json(const Report& r, const PipelineRecord& p) {
  Json j = Json::object();
  j["type"] = p.type;
  if (p.guarded)
    j["guard"] = {{"max_drop", p.guard_max_drop},
                  {"relative", p.guard_relative},
                  {"written", p.guard_written},
                  {"baseline_val_accuracy", p.baseline_val_accuracy},
                  {"min_val_accuracy", p.guard_min_val_accuracy},
                  {"description", p.guard_text}};
  else
    j["guard"] = nullptr;
  j["baseline_val_accuracy"] = p.baseline_val_accuracy;
  j["selection"] = p.selection;
  j["outcome"] = p.outcome;
  Json entries = Json::array();
  for (const auto& c : p.candidates) entries.push_back(candidate_json(r, c));
  j[p.entries_key] = entries;
  Json skipped = Json::array();
  for (const auto& s : p.skipped) skipped.push_back({{"name", s.name}, {"reason", s.reason}});
  j["skipped"] = skipped;
  // progressive: the target and the sensitivity analysis.
  if (p.target_compression > 0) j["target_compression"] = p.target_compression;
  if (!p.sensitivity.empty()) {
    Json sens = Json::array();
    for (const auto& s : p.sensitivity)
      sens.push_back({{"model", s.model},
                      {"layer", s.layer},
                      {"method", s.method},
                      {"setting", s.setting},
                      {"val_accuracy", s.val_accuracy},
                      {"tolerated", s.tolerated}});
    j["sensitivity"] = sens;
  }
  if (p.best >= 0 && p.best < static_cast<int64_t>(p.candidates.size())) {
    const CandidateRecord& b = p.candidates[p.best];
    j["best"] = {{"index", b.index},           {"name", b.name},
                 {"passed_guard", b.passed},   {"reason", b.reason},
                 {"checkpoint", b.checkpoint}, {"result", b.name}};
  } else {
    j["best"] = nullptr;
  }
  if (!p.objective.empty()) {
    j["objective"] = {{"name", p.objective},
                      {"values", p.objective_values},
                      {"directions", p.objective_directions}};
    Json trials = Json::array();
    for (const auto& t : p.trials) {
      Json params = Json::object();
      for (const auto& [k, v] : t.params) params[k] = scalar_json(v, false);
      Json values = Json::array();
      for (double v : t.values) values.push_back(number_or_null(true, v));
      Json inter = Json::array();
      for (const auto& [step, v] : t.intermediate)
        inter.push_back({{"step", step}, {"value", number_or_null(true, v)}});
      trials.push_back({{"number", t.number},
                        {"state", t.state},
                        {"params", params},
                        {"values", values},
                        {"intermediate", inter},
                        {"candidate", t.candidate >= 0 ? Json(t.candidate) : Json(nullptr)},
                        {"val_accuracy", number_or_null(t.measured, t.val_accuracy)},
                        {"accuracy", number_or_null(t.measured, t.accuracy)},
                        {"size_bytes", t.measured ? Json(t.size_bytes) : Json(nullptr)},
                        {"compression_ratio", number_or_null(t.measured, t.compression_ratio)},
                        {"passed_guard", t.measured ? Json(t.passed) : Json(nullptr)},
                        {"pareto_front", t.pareto},
                        {"note", t.note},
                        {"worker", t.worker},
                        {"seconds", t.seconds}});
    }
    j["trials"] = trials;
  }
  return j;
}

Json report_json(const Report& r) {
  Json j = Json::object();
  j["squeeze_version"] = r.squeeze_version;
  j["config"] = r.config ? params_json(*r.config) : Json(nullptr);
  j["config_hash"] = r.config_hash;
  Json env = Json::object();
  for (const auto& [k, v] : r.environment) {
    // "threads": 2 is a number, "int8_saturates": true a boolean; versions such as "1.13.1" stay text.
    if (matches_int(v) || matches_float(v) || v == "true" || v == "false")
      env[k] = scalar_json(v, false);
    else
      env[k] = v;
  }
  j["environment"] = env;
  j["model"] = r.model_name;
  j["data"] = r.data_description;
  j["warnings"] = r.warnings;

  Json base = Json::object();
  add_stats(base, r.baseline);
  base["latency_us"] = map_json(r.baseline.latency_us);
  base["per_class"] = per_class_json(r.baseline.per_class);
  base["artifacts"] = string_map_json(r.baseline_artifacts);
  j["baseline"] = base;

  Json results = Json::array();
  for (const auto& res : r.results) {
    Json e = Json::object();
    e["name"] = res.name;
    e["stages"] = res.stages;
    e["accuracy"] = number_or_null(res.stats.evaluated, res.stats.accuracy);
    e["accuracy_drop"] = number_or_null(drop_known(r, res), res.accuracy_drop);
    e["loss"] = number_or_null(res.stats.evaluated, res.stats.loss);
    e["params"] = res.stats.params;
    e["nonzero_params"] = res.stats.nonzero_params;
    e["size_bytes"] = res.stats.size_bytes;
    e["compression_ratio"] = res.compression_ratio;
    e["param_ratio"] = res.param_ratio;
    e["flops"] = res.stats.flops;
    e["flops_ratio"] = res.flops_ratio;
    e["latency_us"] = map_json(res.stats.latency_us);
    e["speedup"] = map_json(res.speedup);
    e["per_class"] = per_class_json(res.stats.per_class);
    e["history"] = history_json(res.history);
    e["artifacts"] = string_map_json(res.artifacts);
    e["seconds"] = res.seconds;
    results.push_back(e);
  }
  j["results"] = results;
  if (r.pipeline) j["pipeline"] = pipeline_json(r, *r.pipeline);
  j["seconds"] = r.seconds;
  return j;
}

// ---------------------------------------------------------------------------------------------
// Tables shared by the three text forms

struct Table {
  std::vector<std::string> header;
  std::vector<bool> right;  // right-aligned (numbers)
  std::vector<std::vector<std::string>> rows;
};

// One row per model, baseline first. `compact` drops the columns a terminal has no room for.
Table comparison(const Report& r, bool compact) {
  const std::vector<std::string> keys = batch_keys(r);
  Table t;
  auto col = [&](const std::string& name, bool right) {
    t.header.push_back(name);
    t.right.push_back(right);
  };
  col("model", false);
  if (!compact) col("stages", false);
  col("accuracy", true);
  col("drop", true);
  col("size", true);
  col("compression", true);
  col("nonzero params", true);
  if (!compact) col("params ratio", true);
  if (!compact) col("FLOPs", true);
  col("FLOPs ratio", true);
  for (const auto& k : keys) col("speedup " + batch_label(k), true);

  std::vector<std::string> base{"baseline"};
  if (!compact) base.push_back("-");
  base.push_back(r.baseline.evaluated ? fmt_pct(r.baseline.accuracy) : "-");
  base.push_back("-");
  base.push_back(fmt_bytes(r.baseline.size_bytes));
  base.push_back(fmt_ratio(1.0));
  base.push_back(with_commas(r.baseline.nonzero_params));
  if (!compact) base.push_back(fmt_ratio(1.0));
  if (!compact) base.push_back(fmt_flops(r.baseline.flops));
  base.push_back(fmt_ratio(1.0));
  for (const auto& k : keys) base.push_back(r.baseline.latency_us.count(k) ? fmt_ratio(1.0) : "-");
  t.rows.push_back(base);

  for (const auto& res : r.results) {
    std::vector<std::string> row{res.name};
    if (!compact) {
      std::string stages;
      for (const auto& s : res.stages) stages += (stages.empty() ? "" : " > ") + s;
      row.push_back(stages.empty() ? "-" : stages);
    }
    row.push_back(res.stats.evaluated ? fmt_pct(res.stats.accuracy) : "-");
    row.push_back(drop_known(r, res) ? fmt_pp(res.accuracy_drop) : "-");
    row.push_back(fmt_bytes(res.stats.size_bytes));
    row.push_back(fmt_ratio(res.compression_ratio));
    row.push_back(with_commas(res.stats.nonzero_params));
    if (!compact) row.push_back(fmt_ratio(res.param_ratio));
    if (!compact) row.push_back(fmt_flops(res.stats.flops));
    row.push_back(fmt_ratio(res.flops_ratio));
    for (const auto& k : keys) {
      auto it = res.speedup.find(k);
      row.push_back(it == res.speedup.end() ? "-" : fmt_ratio(it->second));
    }
    t.rows.push_back(row);
  }
  return t;
}

Table baseline_table(const Report& r) {
  Table t{{"metric", "value"}, {false, true}, {}};
  const ModelStats& b = r.baseline;
  t.rows.push_back({"accuracy", b.evaluated ? fmt_pct(b.accuracy) : "-"});
  t.rows.push_back({"loss", b.evaluated && finite(b.loss) ? fixed(b.loss, 4) : "-"});
  t.rows.push_back({"parameters", with_commas(b.params)});
  t.rows.push_back({"non-zero parameters", with_commas(b.nonzero_params)});
  t.rows.push_back(
      {"size (stored)", fmt_bytes(b.size_bytes) + " (" + with_commas(b.size_bytes) + " B)"});
  t.rows.push_back({"FLOPs per sample", fmt_flops(b.flops)});
  for (const auto& k : batch_keys(r)) {
    auto it = b.latency_us.find(k);
    if (it != b.latency_us.end())
      t.rows.push_back({"latency " + batch_label(k), fmt_us(it->second)});
  }
  return t;
}

Table history_table(const ExperimentResult& res) {
  Table t{{"#", "stage", "summary", "before fine-tuning", "accuracy", "nonzero params", "size", "FLOPs",
           "time"},
          {true, false, false, true, true, true, true, true, true},
          {}};
  for (size_t i = 0; i < res.history.size(); ++i) {
    const StageRecord& h = res.history[i];
    std::string summary = h.summary.empty() ? "-" : h.summary;
    if (h.finetune_steps > 0) {
      summary += msg("; fine-tuned ", h.finetune_steps, " steps, ", fmt_us(1000.0 * h.step_ms), " per step");
      if (!h.teacher.empty())
        summary += msg(", distilled from ", h.teacher, ": teacher ", fmt_us(1000.0 * h.teacher_ms_per_step), " of each step");
    }
    t.rows.push_back({std::to_string(i + 1), h.stage, summary,
                      h.evaluated_before_finetune ? fmt_pct(h.accuracy_before_finetune) : "-",
                      h.evaluated ? fmt_pct(h.accuracy) : "-", with_commas(h.nonzero_params),
                      fmt_bytes(h.size_bytes), fmt_flops(h.flops), fmt_seconds(h.seconds)});
  }
  return t;
}

const char* kPipelineNote =
    "The guard and the choice use validation accuracy; test accuracy is only reported. Drops are "
    "from the baseline's validation accuracy, in points and relative to it.";

// One row per candidate a pipeline tried: by rank when ranked, else in the order tried. The
// guard's reasons are in report.json; here the numbers they are made of.
Table pipeline_table(const Report& r, const PipelineRecord& p) {
  bool ranked = false, statuses = false;
  for (const auto& c : p.candidates) {
    ranked |= c.rank > 0;
    // A status column that says the same everywhere says nothing.
    statuses |= c.status != p.candidates.front().status;
  }
  Table t;
  auto col = [&](const std::string& name, bool right) {
    t.header.push_back(name);
    t.right.push_back(right);
  };
  col("#", true);
  if (ranked) col("rank", true);
  col(p.type == "validation" ? "steps so far" : p.type == "progressive" ? "step" : "candidate",
      false);
  col("val accuracy", true);
  col("val drop", true);
  col("rel. drop", true);
  col("test accuracy", true);
  col("size", true);
  col("compression", true);
  col("guard", false);
  if (statuses) col("status", false);
  bool notes = false;  // progressive: what each step did
  for (const auto& c : p.candidates) notes |= !c.note.empty();
  if (notes) col("what", false);
  col("model", false);
  std::vector<const CandidateRecord*> rows;
  for (const auto& c : p.candidates) rows.push_back(&c);
  if (ranked)
    std::stable_sort(
        rows.begin(), rows.end(), [](const CandidateRecord* a, const CandidateRecord* b) {
          return (a->rank > 0 ? a->rank : INT64_MAX) < (b->rank > 0 ? b->rank : INT64_MAX);
        });
  for (const CandidateRecord* c : rows) {
    std::vector<std::string> row{std::to_string(c->index + 1)};
    if (ranked) row.push_back(c->rank > 0 ? std::to_string(c->rank) : "-");
    row.push_back(c->name + (c->index == p.best ? " (best)" : ""));
    row.push_back(c->evaluated ? fmt_pct(c->val_accuracy) : "-");
    row.push_back(c->evaluated ? fmt_pp(c->val_drop) : "-");
    row.push_back(c->evaluated ? fmt_pct(c->val_relative_drop) : "-");
    row.push_back(c->evaluated && r.baseline.evaluated ? fmt_pct(c->accuracy) : "-");
    row.push_back(fmt_bytes(c->size_bytes));
    row.push_back(fmt_ratio(c->compression_ratio));
    row.push_back(!p.guarded ? "-" : c->passed ? "pass" : "FAIL");
    if (statuses) row.push_back(c->status.empty() ? "-" : c->status);
    if (notes) row.push_back(c->note.empty() ? "-" : c->note);
    row.push_back(c->checkpoint.empty() ? "-" : c->checkpoint);
    t.rows.push_back(row);
  }
  return t;
}

// A sampled value for a table: a non-integer number with 4 significant digits
// ("0.002863481294" -> "0.002863"); integers and words as they are (best.yaml keeps them whole).
std::string short_number(const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(d) || d == std::floor(d)) return v;
  std::ostringstream out;
  out << std::setprecision(4) << d;
  return out.str();
}

// One row per trial of an autotune study, in trial order.
Table trials_table(const PipelineRecord& p) {
  bool any_pareto = false, any_candidate = false;
  for (const auto& t : p.trials) {
    any_pareto |= t.pareto;
    any_candidate |= t.candidate >= 0;
  }
  Table t;
  auto col = [&](const std::string& name, bool right) {
    t.header.push_back(name);
    t.right.push_back(right);
  };
  col("trial", true);
  col("state", false);
  col("parameters", false);
  col(p.objective_values.size() == 1 ? "objective" : "objective values", true);
  col("val accuracy by epoch", false);
  col("val accuracy", true);
  col("test accuracy", true);
  col("compression", true);
  col("guard", false);
  if (any_pareto) col("Pareto front", false);
  if (any_candidate) col("candidate", true);
  col("time", true);
  for (const auto& tr : p.trials) {
    std::string params;
    for (const auto& [k, v] : tr.params)
      params += (params.empty() ? "" : ", ") + k + "=" + short_number(v);
    std::string values;
    for (double v : tr.values) values += (values.empty() ? "" : ", ") + fixed(v, 4);
    std::string inter;
    for (const auto& [step, v] : tr.intermediate) inter += (inter.empty() ? "" : " ") + fmt_pct(v);
    std::string state = tr.state;
    if (tr.state == "pruned" && !tr.intermediate.empty())
      state += msg(" after epoch ", tr.intermediate.rbegin()->first + 1);
    else if (tr.state == "failed" && !tr.note.empty())
      state += ": " + (tr.note.size() > 60 ? tr.note.substr(0, 57) + "..." : tr.note);
    std::vector<std::string> row{std::to_string(tr.number), state, params.empty() ? "-" : params,
                                 values.empty() ? "-" : values, inter.empty() ? "-" : inter};
    row.push_back(tr.measured ? fmt_pct(tr.val_accuracy) : "-");
    row.push_back(tr.measured ? fmt_pct(tr.accuracy) : "-");
    row.push_back(tr.measured ? fmt_ratio(tr.compression_ratio) : "-");
    row.push_back(!tr.measured ? "-" : !p.guarded ? "-" : tr.passed ? "pass" : "FAIL");
    if (any_pareto) row.push_back(tr.pareto ? "yes" : "");
    if (any_candidate) row.push_back(tr.candidate >= 0 ? "#" + std::to_string(tr.candidate + 1) : "-");
    row.push_back(tr.seconds > 0 ? fmt_seconds(tr.seconds) : "-");
    t.rows.push_back(row);
  }
  return t;
}

const char* kTrialsNote =
    "Every trial of the study, in order. The objective and the guard use validation accuracy; "
    "\"val accuracy by epoch\" is what the median pruner compared after each fine-tuning epoch. "
    "Pruned and failed trials have no model. \"candidate\" is the trial's row in the table above "
    "(\"-\": run by another process or an earlier, interrupted one).";

// The sentences above the pipeline table, shared by report.md and report.html.
std::vector<std::pair<std::string, std::string>> pipeline_facts(const PipelineRecord& p) {
  std::vector<std::pair<std::string, std::string>> facts;
  facts.push_back({"guard", p.guarded ? p.guard_text + "; written as " + p.guard_written
                                      : "none (every candidate passes)"});
  if (p.target_compression > 0)
    facts.push_back({"target", msg(p.target_compression, "x compression (baseline size / size)")});
  facts.push_back({"chosen", p.selection});
  facts.push_back({"outcome", p.outcome});
  return facts;
}

// progressive: one row per analysed model, method and layer; the validation accuracy at each
// setting, "*" where the one-layer model fails the guard.
Table sensitivity_table(const PipelineRecord& p) {
  Table t{{"model", "method", "layer", "val accuracy, one layer compressed (* fails the guard)"},
          {false, false, false, false},
          {}};
  for (const auto& s : p.sensitivity) {
    if (t.rows.empty() || t.rows.back()[0] != s.model || t.rows.back()[1] != s.method ||
        t.rows.back()[2] != s.layer)
      t.rows.push_back({s.model, s.method, s.layer, ""});
    std::string& cell = t.rows.back()[3];
    cell += (cell.empty() ? "" : ", ") + s.setting + " " + fmt_pct(s.val_accuracy) +
            (s.tolerated ? "" : "*");
  }
  return t;
}

const char* kSensitivityNote =
    "Sensitivity analysis: the validation accuracy with only one layer compressed, before any "
    "fine-tuning; a step compresses a layer only at settings it tolerates alone.";

bool any_per_class(const Report& r) {
  if (!r.baseline.per_class.empty()) return true;
  for (const auto& res : r.results)
    if (!res.stats.per_class.empty()) return true;
  return false;
}

// Accuracy (recall) of each class: rows are classes, columns the baseline and each experiment.
Table per_class_table(const Report& r) {
  std::map<int64_t, std::string> names;
  auto collect = [&](const std::vector<ClassStats>& cs) {
    for (const auto& c : cs)
      if (!names.count(c.cls) || names[c.cls].empty()) names[c.cls] = c.name;
  };
  collect(r.baseline.per_class);
  for (const auto& res : r.results) collect(res.stats.per_class);

  Table t;
  t.header = {"class", "baseline"};
  t.right = {false, true};
  for (const auto& res : r.results) {
    t.header.push_back(res.name);
    t.right.push_back(true);
  }
  auto find = [](const std::vector<ClassStats>& cs, int64_t cls) -> const ClassStats* {
    for (const auto& c : cs)
      if (c.cls == cls) return &c;
    return nullptr;
  };
  for (const auto& [cls, name] : names) {
    std::vector<std::string> row{name.empty() ? std::to_string(cls)
                                              : std::to_string(cls) + " " + name};
    const ClassStats* b = find(r.baseline.per_class, cls);
    row.push_back(b ? fmt_pct(b->accuracy) : "-");
    for (const auto& res : r.results) {
      const ClassStats* c = find(res.stats.per_class, cls);
      std::string cell = c ? fmt_pct(c->accuracy) : "-";
      if (c && b) cell += " (" + fmt_pp(b->accuracy - c->accuracy) + ")";
      row.push_back(cell);
    }
    t.rows.push_back(row);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Plain text

size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;  // count UTF-8 code points, not bytes
  return n;
}

// The first n code points of a UTF-8 string.
std::string truncated(const std::string& s, size_t n) {
  size_t points = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && points++ == n) return s.substr(0, i);
  }
  return s;
}

std::string pad(const std::string& s, size_t width, bool right) {
  const size_t w = display_width(s);
  if (w >= width) return s;
  return right ? std::string(width - w, ' ') + s : s + std::string(width - w, ' ');
}

std::string text_table(const Table& t) {
  std::vector<size_t> width(t.header.size(), 0);
  for (size_t c = 0; c < t.header.size(); ++c) width[c] = display_width(t.header[c]);
  for (const auto& row : t.rows)
    for (size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], display_width(row[c]));
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < width.size(); ++c) {
      if (c) s += "  ";
      s += pad(c < cells.size() ? cells[c] : "", width[c], t.right[c]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    os << s << "\n";
  };
  line(t.header);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  line(rule);
  for (const auto& row : t.rows) line(row);
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// Markdown

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '<')
      out += "\\<";  // no raw HTML from names
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string md_table(const Table& t) {
  std::ostringstream os;
  os << "|";
  for (const auto& h : t.header) os << " " << md_cell(h) << " |";
  os << "\n|";
  for (bool r : t.right) os << (r ? " ---: |" : " --- |");
  os << "\n";
  for (const auto& row : t.rows) {
    os << "|";
    for (const auto& cell : row) os << " " << md_cell(cell) << " |";
    os << "\n";
  }
  return os.str();
}

std::string title_of(const Report& r) {
  return "squeeze report: " + (r.model_name.empty() ? std::string("model") : r.model_name);
}

std::string artifact_list(const std::map<std::string, std::string>& a) {
  std::string out;
  for (const auto& [k, v] : a) out += (out.empty() ? "" : ", ") + k + ": " + v;
  return out.empty() ? "-" : out;
}

std::string report_md(const Report& r) {
  std::ostringstream os;
  os << "# " << title_of(r) << "\n\n";
  os << "- squeeze version: " << (r.squeeze_version.empty() ? "-" : r.squeeze_version) << "\n";
  os << "- model: " << (r.model_name.empty() ? "-" : r.model_name) << "\n";
  os << "- data: " << (r.data_description.empty() ? "-" : r.data_description) << "\n";
  os << "- config hash: `" << (r.config_hash.empty() ? "-" : r.config_hash) << "`\n";
  os << "- total time: " << fmt_seconds(r.seconds) << "\n";
  if (!r.warnings.empty()) {
    os << "\n## Warnings\n\n";
    for (const auto& w : r.warnings) os << "> **Warning:** " << w << "\n>\n";
  }
  if (!r.baseline.evaluated)
    os << "\nNo data was given, so accuracy was not measured (shown as `-`).\n";

  os << "\n## Environment\n\n";
  Table env{{"key", "value"}, {false, false}, {}};
  for (const auto& [k, v] : r.environment) env.rows.push_back({k, v});
  os << (env.rows.empty() ? std::string("-\n") : md_table(env));

  os << "\n## Baseline\n\n" << md_table(baseline_table(r));
  os << "\nArtifacts: " << artifact_list(r.baseline_artifacts) << "\n";

  os << "\n## Comparison\n\n";
  os << "Drop is baseline accuracy minus compressed accuracy, in percentage points. Compression "
        "is stored size relative to the baseline; speedups are measured latencies.\n\n";
  os << md_table(comparison(r, false));

  if (r.pipeline) {
    const PipelineRecord& p = *r.pipeline;
    os << "\n## Pipeline: " << md_cell(p.type) << "\n\n";
    for (const auto& [k, v] : pipeline_facts(p)) os << "- " << k << ": " << md_cell(v) << "\n";
    os << "\n" << kPipelineNote << "\n\n";
    os << (p.candidates.empty() ? std::string("No candidate was tried.\n")
                                : md_table(pipeline_table(r, p)));
    if (!p.skipped.empty()) {
      os << "\nNot run:\n\n";
      for (const auto& sk : p.skipped)
        os << "- " << md_cell(sk.name) << ": " << md_cell(sk.reason) << "\n";
    }
    if (!p.sensitivity.empty())
      os << "\n" << kSensitivityNote << "\n\n" << md_table(sensitivity_table(p));
    if (!p.objective.empty()) {
      os << "\n### Trials\n\nObjective: " << md_cell(p.objective) << " (";
      for (size_t i = 0; i < p.objective_values.size(); ++i)
        os << (i ? ", " : "") << md_cell(p.objective_values[i]) << ": "
           << md_cell(i < p.objective_directions.size() ? p.objective_directions[i] : "");
      os << ").\n\n" << kTrialsNote << "\n\n";
      os << (p.trials.empty() ? std::string("No trial ran.\n") : md_table(trials_table(p)));
    }
  }
  if (!r.results.empty()) {
    os << "\n## Stage history\n";
    for (const auto& res : r.results) {
      os << "\n### " << md_cell(res.name) << "\n\n";
      os << md_table(history_table(res));
      os << "\nTime: " << fmt_seconds(res.seconds)
         << ". Artifacts: " << artifact_list(res.artifacts) << "\n";
    }
  }
  if (any_per_class(r)) {
    os << "\n## Per-class accuracy\n\n";
    os << "Each experiment's cell shows its accuracy and, in brackets, the drop from the "
          "baseline.\n\n";
    os << md_table(per_class_table(r));
  }
  if (!r.config_text.empty()) {
    os << "\n## Configuration\n\n```yaml\n" << r.config_text;
    if (r.config_text.back() != '\n') os << "\n";
    os << "```\n";
  }
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// HTML

std::string esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string html_table(const Table& t) {
  std::ostringstream os;
  os << "<table>\n<thead><tr>";
  for (size_t c = 0; c < t.header.size(); ++c)
    os << "<th" << (t.right[c] ? " class=\"num\"" : "") << ">" << esc(t.header[c]) << "</th>";
  os << "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    os << "<tr>";
    for (size_t c = 0; c < row.size(); ++c)
      os << "<td" << (c < t.right.size() && t.right[c] ? " class=\"num\"" : "") << ">"
         << esc(row[c]) << "</td>";
    os << "</tr>\n";
  }
  os << "</tbody>\n</table>\n";
  return os.str();
}

std::string num(double v) { return fixed(v, 1); }

const char* const kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};

std::string color_of(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }

// "Nice" tick values covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int target) {
  const double span = hi - lo;
  if (!(span > 0)) return {lo};
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push_back(v);
  return out;
}

std::string svg_message(const std::string& title, const std::string& message) {
  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"80\" role=\"img\" "
        "aria-label=\""
     << esc(title) << "\"><text x=\"20\" y=\"45\" class=\"note\">" << esc(message)
     << "</text></svg>\n";
  return os.str();
}

struct Point {
  std::string label;
  double size;
  double accuracy;
  bool baseline;
  std::string color;
  bool candidate = false;  // a pipeline's candidate: hollow, labelled by its number
  std::string tip;         // tooltip text; the label when empty
};

// Accuracy against stored size; the baseline is a black diamond.
std::string scatter_svg(const Report& r) {
  std::vector<Point> pts;
  if (r.baseline.evaluated && r.baseline.size_bytes > 0)
    pts.push_back({"baseline", double(r.baseline.size_bytes), r.baseline.accuracy, true, "#000"});
  // The chosen candidate is the result's own point.
  if (r.pipeline)
    for (const auto& c : r.pipeline->candidates)
      if (c.evaluated && c.size_bytes > 0 && c.index != r.pipeline->best)
        pts.push_back({"#" + std::to_string(c.index + 1), double(c.size_bytes), c.accuracy, false,
                       c.passed ? "#2ca02c" : "#d62728", true,
                       "#" + std::to_string(c.index + 1) + " " + c.name +
                           (c.passed ? "" : " (fails the guard)")});
  // Autotune trials measured by another process (or before a resume): labelled "tN".
  if (r.pipeline)
    for (const auto& t : r.pipeline->trials)
      if (t.measured && t.candidate < 0 && t.size_bytes > 0)
        pts.push_back({"t" + std::to_string(t.number), double(t.size_bytes), t.accuracy, false,
                       t.passed || !r.pipeline->guarded ? "#2ca02c" : "#d62728", true,
                       "trial " + std::to_string(t.number) + (t.passed ? "" : " (fails the guard)")});
  for (size_t i = 0; i < r.results.size(); ++i) {
    const auto& res = r.results[i];
    if (res.stats.evaluated && res.stats.size_bytes > 0)
      pts.push_back(
          {res.name, double(res.stats.size_bytes), res.stats.accuracy, false, color_of(i)});
  }
  pts.erase(std::remove_if(pts.begin(), pts.end(),
                           [](const Point& p) { return !finite(p.accuracy) || !finite(p.size); }),
            pts.end());
  const std::string title = "Accuracy against stored size";
  if (pts.empty())
    return svg_message(title, "No accuracy was measured (no data), so there is nothing to plot.");

  const double W = 680, H = 400, left = 70, right = 30, top = 30, bottom = 55;
  const double pw = W - left - right, ph = H - top - bottom;
  double xmin = pts[0].size, xmax = xmin, ymin = pts[0].accuracy, ymax = ymin;
  for (const auto& p : pts) {
    xmin = std::min(xmin, p.size);
    xmax = std::max(xmax, p.size);
    ymin = std::min(ymin, p.accuracy);
    ymax = std::max(ymax, p.accuracy);
  }
  // Sizes spanning more than a decade read better on a log axis.
  const bool logx = xmax / xmin > 10;
  auto tx = [&](double v) { return logx ? std::log10(v) : v; };
  double x0 = tx(xmin), x1 = tx(xmax);
  const double xpad = x1 > x0 ? 0.08 * (x1 - x0) : (logx ? 0.5 : 0.1 * x0 + 1);
  x0 -= xpad;
  x1 += xpad;
  if (!logx) x0 = std::max(0.0, x0);
  const double ypad = ymax > ymin ? 0.1 * (ymax - ymin) : 0.01;
  double y0 = std::max(0.0, ymin - ypad), y1 = std::min(1.0, ymax + ypad);
  if (y1 <= y0) y1 = y0 + 0.01;
  auto px = [&](double v) { return left + (tx(v) - x0) / (x1 - x0) * pw; };
  auto py = [&](double a) { return top + (1 - (a - y0) / (y1 - y0)) * ph; };

  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" viewBox=\"0 0 " << W << " " << H << "\" role=\"img\" aria-label=\"" << esc(title)
     << "\">\n<title>" << esc(title) << "</title>\n";
  os << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
     << "\" class=\"plot\"/>\n";
  for (double v : ticks(y0, y1, 5)) {
    os << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << num(py(v)) << "\" y2=\""
       << num(py(v)) << "\" class=\"grid\"/>";
    os << "<text x=\"" << left - 6 << "\" y=\"" << num(py(v) + 4) << "\" class=\"tick\" "
       << "text-anchor=\"end\">" << esc(fmt_pct(v)) << "</text>\n";
  }
  std::vector<double> xt;
  if (logx) {
    for (double e = std::ceil(x0); e <= x1; e += 1) xt.push_back(std::pow(10.0, e));
    if (xt.size() < 3)  // fewer than three decades: add 2x and 5x ticks
      for (double e = std::floor(x0); e <= x1; e += 1)
        for (double m : {2.0, 5.0})
          if (std::log10(m) + e >= x0 && std::log10(m) + e <= x1)
            xt.push_back(m * std::pow(10.0, e));
    std::sort(xt.begin(), xt.end());
  } else {
    xt = ticks(x0, x1, 5);
  }
  for (double v : xt) {
    if (v <= 0) continue;
    os << "<line y1=\"" << top << "\" y2=\"" << top + ph << "\" x1=\"" << num(px(v)) << "\" x2=\""
       << num(px(v)) << "\" class=\"grid\"/>";
    os << "<text x=\"" << num(px(v)) << "\" y=\"" << top + ph + 16 << "\" class=\"tick\" "
       << "text-anchor=\"middle\">" << esc(fmt_bytes(static_cast<int64_t>(std::llround(v))))
       << "</text>\n";
  }
  os << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 12 << "\" class=\"axis\" "
     << "text-anchor=\"middle\">stored size" << (logx ? " (log scale)" : "") << "</text>\n";
  os << "<text transform=\"translate(16," << top + ph / 2 << ") rotate(-90)\" class=\"axis\" "
     << "text-anchor=\"middle\">test accuracy</text>\n";
  for (const auto& p : pts) {
    const double x = px(p.size), y = py(p.accuracy);
    os << "<g><title>" << esc(p.tip.empty() ? p.label : p.tip) << ": " << esc(fmt_pct(p.accuracy))
       << ", " << esc(fmt_bytes(static_cast<int64_t>(p.size))) << "</title>";
    if (p.candidate) {
      os << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y)
         << "\" r=\"4.5\" fill=\"none\" stroke=\"" << p.color
         << "\" stroke-width=\"1.8\"/><text x=\"" << num(x + 6) << "\" y=\"" << num(y + 14)
         << "\" class=\"tick\" style=\"fill:" << p.color << "\">" << esc(p.label)
         << "</text></g>\n";
      continue;
    }
    if (p.baseline)
      os << "<path d=\"M" << num(x) << " " << num(y - 8) << " L" << num(x + 8) << " " << num(y)
         << " L" << num(x) << " " << num(y + 8) << " L" << num(x - 8) << " " << num(y)
         << " Z\" fill=\"#000\"/>";
    else
      os << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"6\" fill=\"" << p.color
         << "\"/>";
    const bool flip = x > left + pw * 0.75;
    os << "<text x=\"" << num(flip ? x - 10 : x + 10) << "\" y=\"" << num(y - 8)
       << "\" class=\"label\"" << (flip ? " text-anchor=\"end\"" : "") << ">" << esc(p.label)
       << "</text></g>\n";
  }
  os << "</svg>\n";
  return os.str();
}

// Horizontal bars of test accuracy on a 0..100% axis, baseline first and marked by a line.
std::string bars_svg(const Report& r) {
  struct Bar {
    std::string label;
    double accuracy;
    std::string color;
  };
  std::vector<Bar> bars;
  if (r.baseline.evaluated && finite(r.baseline.accuracy))
    bars.push_back({"baseline", r.baseline.accuracy, "#444"});
  for (size_t i = 0; i < r.results.size(); ++i)
    if (r.results[i].stats.evaluated && finite(r.results[i].stats.accuracy))
      bars.push_back({r.results[i].name, r.results[i].stats.accuracy, color_of(i)});
  const std::string title = "Test accuracy per experiment";
  if (bars.empty()) return svg_message(title, "No accuracy was measured (no data).");

  size_t longest = 8;
  for (const auto& b : bars)
    longest = std::max(longest, std::min<size_t>(display_width(b.label), 32));
  const double left = 14 + 7.0 * static_cast<double>(longest), right = 70, top = 20, row = 26;
  const double W = std::max(680.0, left + 400 + right), pw = W - left - right;
  const double H = top + row * static_cast<double>(bars.size()) + 40;
  auto px = [&](double a) { return left + std::clamp(a, 0.0, 1.0) * pw; };

  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" viewBox=\"0 0 " << W << " " << H << "\" role=\"img\" aria-label=\"" << esc(title)
     << "\">\n<title>" << esc(title) << "</title>\n";
  const double bottom = top + row * static_cast<double>(bars.size());
  for (double v : ticks(0, 1, 5)) {
    os << "<line x1=\"" << num(px(v)) << "\" x2=\"" << num(px(v)) << "\" y1=\"" << top << "\" y2=\""
       << bottom << "\" class=\"grid\"/>";
    os << "<text x=\"" << num(px(v)) << "\" y=\"" << bottom + 16 << "\" class=\"tick\" "
       << "text-anchor=\"middle\">" << fixed(100 * v, 0) << "%</text>\n";
  }
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const double y = top + row * static_cast<double>(i);
    std::string label = b.label;
    if (display_width(label) > 32) label = truncated(label, 31) + "…";
    os << "<g><title>" << esc(b.label) << ": " << esc(fmt_pct(b.accuracy)) << "</title>";
    os << "<text x=\"" << left - 8 << "\" y=\"" << num(y + row / 2 + 4) << "\" class=\"label\" "
       << "text-anchor=\"end\">" << esc(label) << "</text>";
    os << "<rect x=\"" << left << "\" y=\"" << num(y + 4) << "\" width=\""
       << num(px(b.accuracy) - left) << "\" height=\"" << row - 8 << "\" fill=\"" << b.color
       << "\"/>";
    // Values in their own column right of 100%, clear of the bars and the baseline line.
    os << "<text x=\"" << num(left + pw + 8) << "\" y=\"" << num(y + row / 2 + 4)
       << "\" class=\"label\">" << esc(fmt_pct(b.accuracy)) << "</text></g>\n";
  }
  if (r.baseline.evaluated && finite(r.baseline.accuracy))
    os << "<line x1=\"" << num(px(r.baseline.accuracy)) << "\" x2=\""
       << num(px(r.baseline.accuracy)) << "\" y1=\"" << top - 6 << "\" y2=\"" << bottom + 2
       << "\" class=\"base\"/>\n";
  os << "</svg>\n";
  return os.str();
}

const char* kCss = R"(body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
h3{margin-bottom:.3em}.meta{color:#555}.meta code{background:#f3f3f3;padding:0 .3em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
svg{font-family:inherit;max-width:100%;height:auto}
svg .plot{fill:#fff;stroke:#bbb}svg .grid{stroke:#e6e6e6}svg .tick{font-size:11px;fill:#555}
svg .axis{font-size:12px;fill:#333}svg .label{font-size:12px;fill:#222}
svg .note{font-size:13px;fill:#777}svg .base{stroke:#000;stroke-dasharray:4 3}
pre{background:#f6f6f6;padding:.8em;overflow:auto}.note{color:#666}
.warning{background:#fff4e5;border:1px solid #e8a33d;border-left:6px solid #d9822b;padding:.5em .8em;
margin:.6em 0})";

std::string report_html(const Report& r) {
  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
     << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
     << "<title>" << esc(title_of(r)) << "</title>\n<style>\n"
     << kCss << "\n</style>\n</head>\n<body>\n";
  os << "<h1>" << esc(title_of(r)) << "</h1>\n";
  os << "<p class=\"meta\">squeeze " << esc(r.squeeze_version.empty() ? "-" : r.squeeze_version)
     << " &middot; data: " << esc(r.data_description.empty() ? "-" : r.data_description)
     << " &middot; config hash <code>" << esc(r.config_hash.empty() ? "-" : r.config_hash)
     << "</code> &middot; total time " << esc(fmt_seconds(r.seconds)) << "</p>\n";
  for (const auto& w : r.warnings)
    os << "<p class=\"warning\"><strong>Warning:</strong> " << esc(w) << "</p>\n";
  if (!r.baseline.evaluated)
    os << "<p class=\"note\">No data was given, so accuracy was not measured (shown as -).</p>\n";

  os << "<h2>Comparison</h2>\n<p class=\"note\">Drop is baseline accuracy minus compressed "
        "accuracy, in percentage points. Compression is stored size relative to the baseline; "
        "speedups are measured latencies.</p>\n";
  os << html_table(comparison(r, false));

  if (r.pipeline) {
    const PipelineRecord& p = *r.pipeline;
    os << "<h2>Pipeline: " << esc(p.type) << "</h2>\n<ul>\n";
    for (const auto& [k, v] : pipeline_facts(p))
      os << "<li>" << esc(k) << ": " << esc(v) << "</li>\n";
    os << "</ul>\n<p class=\"note\">" << esc(kPipelineNote) << "</p>\n";
    os << (p.candidates.empty() ? std::string("<p>No candidate was tried.</p>\n")
                                : html_table(pipeline_table(r, p)));
    if (!p.skipped.empty()) {
      os << "<p>Not run:</p>\n<ul>\n";
      for (const auto& sk : p.skipped)
        os << "<li>" << esc(sk.name) << ": " << esc(sk.reason) << "</li>\n";
      os << "</ul>\n";
    }
    if (!p.sensitivity.empty())
      os << "<p class=\"note\">" << esc(kSensitivityNote) << "</p>\n"
         << html_table(sensitivity_table(p));
    if (!p.objective.empty()) {
      os << "<h3>Trials</h3>\n<p>Objective: " << esc(p.objective) << " (";
      for (size_t i = 0; i < p.objective_values.size(); ++i)
        os << (i ? ", " : "") << esc(p.objective_values[i]) << ": "
           << esc(i < p.objective_directions.size() ? p.objective_directions[i] : "");
      os << ").</p>\n<p class=\"note\">" << esc(kTrialsNote) << "</p>\n";
      os << (p.trials.empty() ? std::string("<p>No trial ran.</p>\n") : html_table(trials_table(p)));
    }
  }

  os << "<h2>Charts</h2>\n";
  os << "<figure>\n"
     << scatter_svg(r)
     << "<figcaption>Test accuracy against stored model size; the baseline is the black diamond."
     << (r.pipeline && !r.pipeline->candidates.empty()
             ? " The pipeline's other candidates are the numbered hollow circles (green: passes "
               "the guard; "
               "red: fails it), numbered as in the pipeline table; the chosen one is its result's "
               "filled circle."
             : "")
     << (r.pipeline && !r.pipeline->trials.empty()
             ? " Each complete autotune trial of this process is one of those candidates; hollow "
               "circles labelled tN (same colours) are complete trials run by another process or "
               "before a resume."
             : "")
     << "</figcaption>\n</figure>\n";
  os << "<figure>\n"
     << bars_svg(r)
     << "<figcaption>Test accuracy per experiment; the dashed line is the baseline."
        "</figcaption>\n</figure>\n";

  os << "<h2>Baseline</h2>\n" << html_table(baseline_table(r));
  os << "<p>Artifacts: " << esc(artifact_list(r.baseline_artifacts)) << "</p>\n";

  if (!r.results.empty()) {
    os << "<h2>Stage history</h2>\n";
    for (const auto& res : r.results) {
      os << "<h3>" << esc(res.name) << "</h3>\n" << html_table(history_table(res));
      os << "<p>Time: " << esc(fmt_seconds(res.seconds))
         << ". Artifacts: " << esc(artifact_list(res.artifacts)) << "</p>\n";
    }
  }
  if (any_per_class(r)) {
    os << "<h2>Per-class accuracy</h2>\n<p class=\"note\">Each experiment's cell shows its "
          "accuracy and, in brackets, the drop from the baseline.</p>\n"
       << html_table(per_class_table(r));
  }
  os << "<h2>Environment</h2>\n";
  Table env{{"key", "value"}, {false, false}, {}};
  for (const auto& [k, v] : r.environment) env.rows.push_back({k, v});
  os << (env.rows.empty() ? std::string("<p>-</p>\n") : html_table(env));
  if (!r.config_text.empty())
    os << "<details><summary>Configuration</summary>\n<pre>" << esc(r.config_text)
       << "</pre>\n</details>\n";
  os << "</body>\n</html>\n";
  return os.str();
}

}  // namespace

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> e = env::describe();
  for (const auto& [k, v] : quant::int8_environment()) e[k] = v;
  return e;
}

void write_report(const Report& report, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(msg("cannot create report folder ", dir, ": ", ec.message()));
  if (!fs::is_directory(dir)) throw Error(msg("cannot write report: ", dir, " is not a folder"));
  const fs::path base(dir);
  // Names may hold bytes that are not UTF-8 (file names): replace them instead of failing.
  write_text_atomic((base / "report.json").string(),
               report_json(report).dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
  write_text_atomic((base / "report.md").string(), report_md(report));
  write_text_atomic((base / "report.html").string(), report_html(report));
}

std::string comparison_table(const Report& report) {
  std::string out = text_table(comparison(report, true));
  if (report.pipeline)
    out += "pipeline " + report.pipeline->type + ": " + report.pipeline->outcome + "\n";
  for (const auto& w : report.warnings) out += "warning: " + w + "\n";
  return out;
}

}  // namespace squeeze::report
