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
#include "squeeze/report/hep_report.h"
#include "squeeze/util/env.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

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

Json layers_json(const std::vector<LayerStats>& layers) {
  Json a = Json::array();
  for (const auto& l : layers)
    a.push_back({{"name", l.name},
                 {"op", l.op},
                 {"params", l.params},
                 {"nonzero_params", l.nonzero_params},
                 {"weight_bits", l.weight_bits > 0 ? Json(l.weight_bits) : Json(nullptr)}});
  return a;
}

Json curve_json(const std::vector<EpochPoint>& curve) {
  Json a = Json::array();
  for (const auto& e : curve)
    a.push_back({{"epoch", e.epoch},
                 {"train_loss", number_or_null(true, e.train_loss)},
                 {"train_accuracy", number_or_null(true, e.train_accuracy)},
                 {"val_loss", number_or_null(e.has_val, e.val_loss)},
                 {"val_accuracy", number_or_null(e.has_val, e.val_accuracy)}});
  return a;
}

// By batch key: median, p10, p90, spread, runs; for results also the speedup's quartiles.
Json latency_json(const std::map<std::string, LatencyDetail>& m, bool with_speedup) {
  Json j = Json::object();
  for (const auto& [k, d] : m) {
    Json e = Json::object();
    e["median_us"] = d.median_us;
    e["p10_us"] = d.p10_us;
    e["p90_us"] = d.p90_us;
    e["spread"] = d.spread;
    e["median_ci95_us"] = Json::array({d.median_lo_us, d.median_hi_us});
    e["runs"] = d.runs;
    if (with_speedup) {
      e["speedup"] = d.speedup;
      e["speedup_p25"] = d.speedup_p25;
      e["speedup_p75"] = d.speedup_p75;
      e["speedup_ci95"] = Json::array({d.speedup_lo, d.speedup_hi});
    }
    e["noisy"] = d.noisy;
    j[k] = e;
  }
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
                  {"step_ms", number_or_null(h.finetune_steps > 0, h.step_ms)},
                  {"curve", curve_json(h.curve)}};
    if (!h.figures.empty()) stage["figures"] = h.figures;
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
  if (!c.role.empty()) j["role"] = c.role;  // hep-trigger: search | naive
  if (!c.fpga.empty()) j["fpga"] = Json::parse(c.fpga);
  if (!c.figures.empty()) {
    Json f = Json::object();
    for (const auto& [k, v] : c.figures) f[k] = v;
    j["figures"] = f;
  }
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
  if (p.budget) {
    const FpgaBudgetRecord& b = *p.budget;
    j["budget"] = {{"target_latency_ns", b.target_latency_ns},
                   {"clock_mhz", b.clock_mhz},
                   {"reuse_factor", b.reuse_factor},
                   {"max_dsp", b.max_dsp >= 0 ? Json(b.max_dsp) : Json(nullptr)},
                   {"max_lut", b.max_lut >= 0 ? Json(b.max_lut) : Json(nullptr)},
                   {"fits", b.fits},
                   {"gap", b.gap.empty() ? Json(nullptr) : Json(b.gap)}};
  }
  if (p.cpp_latency_ns) j["cpp_latency_ns"] = *p.cpp_latency_ns;
  if (!p.rare_classes.empty()) {
    Json rare = Json::array();
    for (const auto& c : p.rare_classes)
      rare.push_back({{"class", c.cls},
                      {"name", c.name},
                      {"train_share", c.train_share},
                      {"baseline_val_recall", c.baseline_val_recall},
                      {"min_val_recall", c.min_val_recall}});
    j["rare_classes"] = rare;
    j["rare_tolerance"] = p.rare_tolerance;
    j["class_weights"] = p.class_weights;
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
  if (!r.class_names.empty()) j["class_names"] = r.class_names;
  j["warnings"] = r.warnings;
  if (const auto& m = r.latency_measurement) {
    Json lm = Json::object();
    lm["threads"] = m->threads;
    lm["warmup"] = m->warmup;
    lm["budget_s"] = m->budget_s;
    lm["noisy"] = m->noisy;
    if (!m->advice.empty()) lm["advice"] = m->advice;
    j["latency_measurement"] = lm;
  }

  Json base = Json::object();
  add_stats(base, r.baseline);
  base["latency_us"] = map_json(r.baseline.latency_us);
  if (!r.baseline_latency.empty()) base["latency"] = latency_json(r.baseline_latency, false);
  base["per_class"] = per_class_json(r.baseline.per_class);
  if (!r.baseline.hep.empty()) base["hep"] = hep_json(r.baseline.hep, r.class_names);
  base["num_classes"] = r.baseline.num_classes > 0 ? Json(r.baseline.num_classes) : Json(nullptr);
  base["artifacts"] = string_map_json(r.baseline_artifacts);
  base["layers"] = layers_json(r.baseline.layers);
  base["training"] = curve_json(r.baseline_curve);
  if (!r.baseline_fpga.empty()) base["fpga"] = Json::parse(r.baseline_fpga);
  const Recommendation rec = recommend(r);
  base["pareto_front"] = rec.baseline_on_front;
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
    if (!res.latency.empty()) e["latency"] = latency_json(res.latency, true);
    e["per_class"] = per_class_json(res.stats.per_class);
    if (!res.stats.hep.empty()) e["hep"] = hep_json(res.stats.hep, r.class_names);
    e["history"] = history_json(res.history);
    e["artifacts"] = string_map_json(res.artifacts);
    if (!res.fpga.empty()) e["fpga"] = Json::parse(res.fpga);
    e["seconds"] = res.seconds;
    e["num_classes"] = res.stats.num_classes > 0 ? Json(res.stats.num_classes) : Json(nullptr);
    e["layers"] = layers_json(res.stats.layers);
    e["pareto_front"] = rec.on_front[results.size()];
    e["recommended"] = rec.result == static_cast<int64_t>(results.size());
    results.push_back(e);
  }
  j["results"] = results;
  j["recommendation"] = {
      {"by", rec.by},
      {"metric", rec.metric},
      {"max_drop", rec.max_drop},
      {"model", rec.result >= 0 ? Json(r.results[rec.result].name) : Json(nullptr)},
      {"result_index", rec.result >= 0 ? Json(rec.result) : Json(nullptr)},
      {"judged", rec.judged},
      {"text", rec.text}};
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
  const Recommendation rec = recommend(r);
  if (!compact && rec.judged) col("verdict (by " + rec.by + ")", false);
  auto verdict = [&](bool front, bool chosen) {
    return chosen ? std::string("recommended") : front ? std::string("Pareto front") : "-";
  };

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
  if (!compact && rec.judged) base.push_back(verdict(rec.baseline_on_front, false));
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
      auto d = res.latency.find(k);
      // An uncertain speedup is marked where it is read, not only in the warnings above.
      const bool noisy = d != res.latency.end() && d->second.noisy;
      row.push_back(it == res.speedup.end() ? "-" : fmt_ratio(it->second) + (noisy ? " (noisy)" : ""));
    }
    if (!compact && rec.judged) {
      const size_t i = t.rows.size() - 1;
      row.push_back(verdict(rec.on_front[i], rec.result == static_cast<int64_t>(i)));
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
  if (p.budget) {
    const FpgaBudgetRecord& b = *p.budget;
    std::string text = msg("latency <= ", b.target_latency_ns, " ns at ", b.clock_mhz,
                           " MHz, reuse factor ", b.reuse_factor);
    if (b.max_dsp >= 0) text += msg(", DSP <= ", b.max_dsp);
    if (b.max_lut >= 0) text += msg(", LUT <= ", b.max_lut);
    text += b.fits ? "; the chosen model fits" : "; the chosen model misses it: " + b.gap;
    facts.push_back({"FPGA budget", text});
  }
  if (p.cpp_latency_ns)
    facts.push_back({"generated C++", msg(*p.cpp_latency_ns, " ns per inference at batch 1")});
  if (!p.rare_classes.empty()) {
    std::string text;
    for (const auto& c : p.rare_classes)
      text += msg(text.empty() ? "" : "; ", c.name.empty() ? std::to_string(c.cls) : c.name, " (",
                  c.train_share * 100.0, "% of training samples): validation recall >= ",
                  c.min_val_recall, " (baseline ", c.baseline_val_recall, ")");
    facts.push_back({"rare classes", text});
  }
  facts.push_back({"chosen", p.selection});
  facts.push_back({"outcome", p.outcome});
  return facts;
}

// progressive: one row per analysed model, method and layer; the validation accuracy at each
// setting, "*" where the one-layer model fails the guard.
Table sensitivity_table(const PipelineRecord& p) {
  Table t{{"model", "method", "layer",
           "setting: val accuracy (drop from the baseline; * fails the guard)"},
          {false, false, false, false},
          {}};
  for (const auto& s : p.sensitivity) {
    if (t.rows.empty() || t.rows.back()[0] != s.model || t.rows.back()[1] != s.method ||
        t.rows.back()[2] != s.layer)
      t.rows.push_back({s.model, s.method, s.layer, ""});
    std::string& cell = t.rows.back()[3];
    std::string drop = fmt_pp(p.baseline_val_accuracy - s.val_accuracy);
    if (drop[0] != '-' && drop != "0.00 pp") drop = "+" + drop;
    cell += (cell.empty() ? "" : "; ") + s.setting + ": " + fmt_pct(s.val_accuracy) + " (" + drop +
            ")" + (s.tolerated ? "" : "*");
  }
  return t;
}

const char* kSensitivityNote =
    "Sensitivity analysis: the validation accuracy with only one layer compressed, before any "
    "fine-tuning; a step compresses a layer only at settings it tolerates alone. Sign "
    "convention: the drop in brackets is the baseline's validation accuracy minus this one, in "
    "percentage points: +1.20 pp means 1.2 points lost, a negative drop means accuracy gained.";

bool any_per_class(const Report& r) {
  if (!r.baseline.per_class.empty()) return true;
  for (const auto& res : r.results)
    if (!res.stats.per_class.empty()) return true;
  return false;
}

// More classes than this: the per-class section summarises (worst and best kPerClassShown of
// the baseline, and how many are absent) instead of listing every class.
constexpr size_t kPerClassRows = 20;
constexpr size_t kPerClassShown = 5;

// Accuracy (recall) of each class: rows are classes, columns the baseline and each experiment.
// Classes the model outputs that do not occur in the test set are "n/a"; with more than
// kPerClassRows classes only the baseline's worst and best kPerClassShown are rows, and `note`
// says so.
Table per_class_table(const Report& r, std::string* note);

Table per_class_table_all(const Report& r) {
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
  int64_t k = r.baseline.num_classes;
  for (const auto& res : r.results) k = std::max(k, res.stats.num_classes);
  for (int64_t c = 0; c < k; ++c) names.emplace(c, "");  // absent classes: n/a
  for (const auto& [cls, name] : names) {
    std::vector<std::string> row{name.empty() ? std::to_string(cls)
                                              : std::to_string(cls) + " " + name};
    const ClassStats* b = find(r.baseline.per_class, cls);
    row.push_back(b ? fmt_pct(b->accuracy) : "n/a");
    for (const auto& res : r.results) {
      const ClassStats* c = find(res.stats.per_class, cls);
      std::string cell = c ? fmt_pct(c->accuracy) : "n/a";
      if (c && b) cell += " (" + fmt_pp(b->accuracy - c->accuracy) + ")";
      row.push_back(cell);
    }
    t.rows.push_back(row);
  }
  return t;
}

Table per_class_table(const Report& r, std::string* note) {
  Table all = per_class_table_all(r);
  note->clear();
  if (all.rows.size() <= kPerClassRows) return all;
  // Rows of classes in the test set, by the baseline's accuracy (the first model that has it).
  std::vector<std::pair<double, size_t>> present;
  size_t absent = 0;
  for (size_t i = 0; i < all.rows.size(); ++i) {
    size_t col = 1;
    while (col < all.rows[i].size() && all.rows[i][col] == "n/a") ++col;
    if (col == all.rows[i].size()) {
      ++absent;
      continue;
    }
    present.push_back({std::strtod(all.rows[i][col].c_str(), nullptr), i});
  }
  std::stable_sort(present.begin(), present.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  Table t{all.header, all.right, {}};
  t.header[0] = "class (rank)";
  const size_t n = present.size();
  std::vector<size_t> picks;
  for (size_t i = 0; i < n && i < kPerClassShown; ++i) picks.push_back(i);
  for (size_t i = n > kPerClassShown ? std::max(kPerClassShown, n - kPerClassShown) : n; i < n; ++i)
    picks.push_back(i);
  for (size_t i : picks) {
    std::vector<std::string> row = all.rows[present[i].second];
    row[0] += i < kPerClassShown ? msg(" (worst ", i + 1, ")") : msg(" (best ", n - i, ")");
    t.rows.push_back(row);
  }
  *note = msg(all.rows.size(), " classes: ", n, " occur in the test set, ", absent,
              " do not (n/a, not listed). Shown: the ", std::min(n, kPerClassShown),
              " worst and the ", n > kPerClassShown ? std::min(n - kPerClassShown, kPerClassShown) : 0,
              " best by the baseline's accuracy; report.json has every class in the test set.");
  return t;
}

// The per-layer figures of one result next to the baseline's layer of the same name: rows in
// the result's order, then the baseline layers the result no longer has.
struct LayerRowView {
  std::string name, op;
  const LayerStats* before = nullptr;
  const LayerStats* after = nullptr;
};

// A baseline layer the result no longer has (low rank replaced fc1 by fc1_lr1 and fc1_lr2) is
// listed where it was: before the first layer named after it, else before the next layer the
// two models share.
std::vector<LayerRowView> layer_rows(const Report& r, const ExperimentResult& res) {
  const std::vector<LayerStats>& base = r.baseline.layers;
  std::set<std::string> in_result;
  for (const auto& l : res.stats.layers) in_result.insert(l.name);
  std::vector<LayerRowView> rows;
  size_t next = 0;  // baseline layers before this one are listed
  auto list_missing_until = [&](size_t end) {
    for (; next < end && next < base.size(); ++next)
      if (!in_result.count(base[next].name))
        rows.push_back({base[next].name, base[next].op, &base[next], nullptr});
  };
  for (const auto& l : res.stats.layers) {
    LayerRowView v{l.name, l.op, nullptr, &l};
    for (size_t b = 0; b < base.size(); ++b) {
      if (base[b].name == l.name) {
        v.before = &base[b];
        list_missing_until(b);
        next = std::max(next, b + 1);
        break;
      }
      if (!in_result.count(base[b].name) && l.name.rfind(base[b].name + "_", 0) == 0) {
        list_missing_until(b + 1);
        break;
      }
    }
    rows.push_back(v);
  }
  list_missing_until(base.size());
  return rows;
}

std::string sparsity_text(const LayerStats& l) {
  return l.params > 0 ? fmt_pct(1.0 - double(l.nonzero_params) / double(l.params)) : "-";
}

std::string bits_text(const LayerStats& l) {
  return l.weight_bits == 0 ? "-" : l.weight_bits == 32 ? "32 (float)" : std::to_string(l.weight_bits);
}

Table layer_table(const Report& r, const ExperimentResult& res) {
  Table t{{"layer", "op", "params before", "params after", "non-zero after", "sparsity after",
           "weight bits before", "weight bits after"},
          {false, false, true, true, true, true, true, true},
          {}};
  for (const auto& v : layer_rows(r, res))
    t.rows.push_back({v.name, v.op, v.before ? with_commas(v.before->params) : "-",
                      v.after ? with_commas(v.after->params) : "removed",
                      v.after ? with_commas(v.after->nonzero_params) : "-",
                      v.after ? sparsity_text(*v.after) : "-",
                      v.before ? bits_text(*v.before) : "-", v.after ? bits_text(*v.after) : "-"});
  return t;
}

bool any_layers(const Report& r) {
  if (!r.baseline.layers.empty()) return true;
  for (const auto& res : r.results)
    if (!res.stats.layers.empty()) return true;
  return false;
}

bool any_curve(const Report& r) {
  if (!r.baseline_curve.empty()) return true;
  for (const auto& res : r.results)
    for (const auto& h : res.history)
      if (!h.curve.empty()) return true;
  return false;
}

// One row per epoch of the baseline's training and of every stage's fine-tuning.
Table curve_table(const Report& r) {
  Table t{{"model", "run", "epoch", "train loss", "train accuracy", "val loss", "val accuracy"},
          {false, false, true, true, true, true, true},
          {}};
  auto add = [&](const std::string& model, const std::string& run,
                 const std::vector<EpochPoint>& curve) {
    for (const auto& e : curve)
      t.rows.push_back({model, run, std::to_string(e.epoch), fixed(e.train_loss, 4),
                        fmt_pct(e.train_accuracy), e.has_val ? fixed(e.val_loss, 4) : "-",
                        e.has_val ? fmt_pct(e.val_accuracy) : "-"});
  };
  add("baseline", "training", r.baseline_curve);
  for (const auto& res : r.results)
    for (size_t i = 0; i < res.history.size(); ++i)
      add(res.name, msg("stage ", i + 1, " ", res.history[i].stage, " fine-tuning"),
          res.history[i].curve);
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

// Markdown links: the paths are relative to the output folder, where report.md is.
std::string artifact_list(const std::map<std::string, std::string>& a) {
  std::string out;
  for (const auto& [k, v] : a) {
    std::string target;
    for (char c : v) target += c == ' ' ? std::string("%20") : c == ')' ? std::string("%29") : std::string(1, c);
    out += (out.empty() ? "" : ", ") + k + ": [" + md_cell(v) + "](" + target + ")";
  }
  return out.empty() ? "-" : out;
}

const char* kRecommendNote =
    "The Pareto front holds the models that no other model beats on both test accuracy and the "
    "cost (higher accuracy, lower cost); the recommended model is the cheapest of the compressed "
    "models within the allowed drop (output.recommend: max_drop, by).";

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

  os << "\n## Recommendation\n\n" << md_cell(recommend(r).text) << "\n\n" << kRecommendNote
     << "\n";

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
  if (!r.results.empty() && any_layers(r)) {
    os << "\n## Per-layer\n\nEvery layer with parameters, before (the baseline's layer of the "
          "same name) and after compression; sparsity is the share of zero parameters.\n";
    for (const auto& res : r.results)
      os << "\n### " << md_cell(res.name) << "\n\n" << md_table(layer_table(r, res));
  }
  if (any_curve(r)) {
    os << "\n## Training and fine-tuning\n\n"
       << md_table(curve_table(r));
  }
  if (any_per_class(r)) {
    os << "\n## Per-class accuracy\n\n";
    os << "Each experiment's cell shows its accuracy and, in brackets, the drop from the "
          "baseline; n/a: the class does not occur in the test set.\n\n";
    std::string note;
    const Table t = per_class_table(r, &note);
    if (!note.empty()) os << note << "\n\n";
    os << md_table(t);
  }
  os << hep_markdown(r);
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
  os << "<div class=\"scroll\"><table>\n<thead><tr>";
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
  os << "</tbody>\n</table></div>\n";
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

// Every chart's <svg> has an id ("chart-...") and class "chart": the headless-browser test and
// anyone scripting against report.html find them by those.
void svg_open(std::ostringstream& os, const std::string& id, double W, double H,
              const std::string& title) {
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"" << esc(id) << "\" class=\"chart\" width=\""
     << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H
     << "\" role=\"img\" aria-label=\"" << esc(title) << "\">\n<title>" << esc(title)
     << "</title>\n";
}

std::string svg_message(const std::string& id, const std::string& title,
                        const std::string& message) {
  std::ostringstream os;
  svg_open(os, id, 640, 60, title);
  os << "<text x=\"20\" y=\"35\" class=\"note\">" << esc(message) << "</text></svg>\n";
  return os.str();
}

// Estimated width of a label at the chart's 12px font.
double text_width(const std::string& s, double px_per_char = 6.6) {
  return px_per_char * static_cast<double>(display_width(s));
}

struct Box {
  double x0, y0, x1, y1;
  bool hits(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

struct Point {
  std::string label;
  double x;
  double accuracy;
  bool baseline;
  std::string color;
  bool candidate = false;  // a pipeline's candidate: hollow, labelled by its number
  std::string tip;         // tooltip text; the label when empty
  bool front = false;      // on the Pareto front of this chart's cost
  bool recommended = false;
};

struct XAxis {
  std::string id;     // the svg's id
  std::string title;  // the chart's title
  std::string name;   // the x axis label
  std::string (*format)(double);
  std::string cost_word;  // "size", "latency": the legend's front entry
};

std::string bytes_tick(double v) { return fmt_bytes(static_cast<int64_t>(std::llround(v))); }
std::string us_tick(double v) { return fmt_us(v); }

// Test accuracy (y, always 0..100%: a half-point difference must not look like a cliff)
// against a cost (x, from 0, or logarithmic when the costs span more than a decade). Marks the
// Pareto front as a staircase, the band the recommendation allows, chance level when the number
// of classes is known, and rings the recommended model.
std::string scatter_svg(const Report& r, std::vector<Point> pts, const XAxis& ax, bool show_front) {
  pts.erase(std::remove_if(pts.begin(), pts.end(),
                           [](const Point& p) {
                             return !finite(p.accuracy) || !finite(p.x) || p.x <= 0;
                           }),
            pts.end());
  if (pts.empty())
    return svg_message(ax.id, ax.title,
                       "Nothing to plot: no model has both a measured accuracy and a " +
                           ax.cost_word + ".");
  const double W = 720, H = 430, left = 70, right = 30, top = 20, bottom = 55;
  const double pw = W - left - right, ph = H - top - bottom;
  double xmin = pts[0].x, xmax = xmin;
  for (const auto& p : pts) {
    xmin = std::min(xmin, p.x);
    xmax = std::max(xmax, p.x);
  }
  const bool logx = xmax / xmin > 10;
  auto tx = [&](double v) { return logx ? std::log10(v) : v; };
  double x0 = 0, x1 = xmax * 1.12;
  if (logx) {
    x0 = std::log10(xmin) - 0.15;
    x1 = std::log10(xmax) + 0.25;
  }
  auto px = [&](double v) { return left + (tx(v) - x0) / (x1 - x0) * pw; };
  auto py = [&](double a) { return top + (1 - std::clamp(a, 0.0, 1.0)) * ph; };

  std::ostringstream os;
  svg_open(os, ax.id, W, H, ax.title);
  os << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
     << "\" class=\"plot\"/>\n";
  const Recommendation rec = recommend(r);
  // The band of accuracies the recommendation accepts, above baseline - max_drop.
  if (show_front && rec.judged && r.baseline.evaluated) {
    const double lo = r.baseline.accuracy - rec.max_drop;
    os << "<rect class=\"allowed\" x=\"" << left << "\" y=\"" << num(top) << "\" width=\"" << pw
       << "\" height=\"" << num(py(lo) - top) << "\"/>\n";
    os << "<line class=\"limit\" x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\""
       << num(py(lo)) << "\" y2=\"" << num(py(lo)) << "\"/>\n";
  }
  for (double v : ticks(0, 1, 10)) {
    os << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << num(py(v))
       << "\" y2=\"" << num(py(v)) << "\" class=\"grid\"/>";
    os << "<text x=\"" << left - 6 << "\" y=\"" << num(py(v) + 4) << "\" class=\"tick\" "
       << "text-anchor=\"end\">" << fixed(100 * v, 0) << "%</text>\n";
  }
  std::vector<double> xt;
  if (logx) {
    for (double e = std::floor(x0); e <= x1; e += 1)
      for (double m : {1.0, 2.0, 5.0})
        if (std::log10(m) + e >= x0 && std::log10(m) + e <= x1) xt.push_back(m * std::pow(10.0, e));
    std::sort(xt.begin(), xt.end());
  } else {
    xt = ticks(0, x1, 6);
  }
  for (double v : xt) {
    if (v < 0 || (logx && v <= 0)) continue;
    os << "<line y1=\"" << top << "\" y2=\"" << top + ph << "\" x1=\"" << num(px(v)) << "\" x2=\""
       << num(px(v)) << "\" class=\"grid\"/>";
    os << "<text x=\"" << num(px(v)) << "\" y=\"" << top + ph + 16 << "\" class=\"tick\" "
       << "text-anchor=\"middle\">" << esc(v == 0 ? "0" : ax.format(v)) << "</text>\n";
  }
  os << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 12 << "\" class=\"axis\" "
     << "text-anchor=\"middle\">" << esc(ax.name)
     << (logx ? " (log scale)" : " (linear, from 0)") << "</text>\n";
  os << "<text transform=\"translate(16," << top + ph / 2 << ") rotate(-90)\" class=\"axis\" "
     << "text-anchor=\"middle\">test accuracy (axis from 0%, not zoomed)</text>\n";
  const int64_t k = r.baseline.num_classes;
  if (k > 1) {
    const double chance = 1.0 / static_cast<double>(k);
    os << "<line class=\"chance\" x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\""
       << num(py(chance)) << "\" y2=\"" << num(py(chance)) << "\"/><text x=\"" << left + 6
       << "\" y=\"" << num(py(chance) - 4) << "\" class=\"tick\">chance level (1/" << k
       << " = " << esc(fmt_pct(chance)) << ")</text>\n";
  }
  // The front as a staircase from the cheapest model: what accuracy each cost can buy.
  if (show_front) {
    std::vector<const Point*> front;
    for (const auto& p : pts)
      if (p.front) front.push_back(&p);
    std::sort(front.begin(), front.end(),
              [](const Point* a, const Point* b) { return a->x < b->x; });
    if (front.size() > 1) {
      os << "<path class=\"front\" d=\"M" << num(px(front[0]->x)) << " "
         << num(py(front[0]->accuracy));
      for (size_t i = 1; i < front.size(); ++i)
        os << " H" << num(px(front[i]->x)) << " V" << num(py(front[i]->accuracy));
      os << "\"/>\n";
    }
  }
  // Labels placed greedily where they overlap no earlier label or marker.
  std::vector<Box> taken;
  for (const auto& p : pts) taken.push_back({px(p.x) - 7, py(p.accuracy) - 7, px(p.x) + 7, py(p.accuracy) + 7});
  std::vector<size_t> order(pts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return !pts[a].candidate && pts[b].candidate; });
  std::vector<std::string> labels(pts.size());
  for (size_t i : order) {
    const Point& p = pts[i];
    const double x = px(p.x), y = py(p.accuracy);
    const std::string text = p.label + (p.recommended ? " (recommended)" : "");
    const double w = text_width(text), h = 13;
    struct Try {
      double dx, dy;
      bool end;
    };
    const Try tries[] = {{10, -8, false}, {-10, -8, true},  {10, 16, false}, {-10, 16, true},
                         {10, -22, false}, {-10, -22, true}, {10, 30, false}, {-10, 30, true},
                         {10, -36, false}, {10, 44, false}};
    Try chosen = tries[0];
    for (const Try& t : tries) {
      const double bx0 = t.end ? x + t.dx - w : x + t.dx;
      const Box b{bx0, y + t.dy - h + 3, bx0 + w, y + t.dy + 3};
      if (b.x0 < left || b.x1 > left + pw || b.y0 < top || b.y1 > top + ph) continue;
      bool clash = false;
      for (size_t j = 0; j < taken.size(); ++j)
        if (!(j == i) && taken[j].hits(b)) clash = true;
      if (!clash) {
        chosen = t;
        taken.push_back(b);
        break;
      }
    }
    std::ostringstream l;
    l << "<text x=\"" << num(x + chosen.dx) << "\" y=\"" << num(y + chosen.dy) << "\" class=\""
      << (p.candidate ? "tick" : "label") << "\"" << (chosen.end ? " text-anchor=\"end\"" : "")
      << (p.candidate ? " style=\"fill:" + p.color + "\"" : "") << ">" << esc(text) << "</text>";
    labels[i] = l.str();
  }
  for (size_t i = 0; i < pts.size(); ++i) {
    const Point& p = pts[i];
    const double x = px(p.x), y = py(p.accuracy);
    os << "<g class=\"point" << (p.front ? " on-front" : "") << (p.recommended ? " recommended" : "")
       << "\"><title>" << esc(p.tip.empty() ? p.label : p.tip) << ": " << esc(fmt_pct(p.accuracy))
       << ", " << esc(ax.format(p.x)) << (p.front ? ", on the Pareto front" : "")
       << (p.recommended ? ", recommended" : "") << "</title>";
    if (p.recommended)
      os << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y)
         << "\" r=\"11\" class=\"ring\"/>";
    if (p.candidate)
      os << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y)
         << "\" r=\"4.5\" fill=\"none\" stroke=\"" << p.color << "\" stroke-width=\"1.8\"/>";
    else if (p.baseline)
      os << "<path d=\"M" << num(x) << " " << num(y - 8) << " L" << num(x + 8) << " " << num(y)
         << " L" << num(x) << " " << num(y + 8) << " L" << num(x - 8) << " " << num(y)
         << " Z\" fill=\"#000\"/>";
    else
      os << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"6\" fill=\"" << p.color
         << "\"/>";
    os << labels[i] << "</g>\n";
  }
  // Legend, bottom right, where accuracies below chance never are.
  if (show_front && rec.judged) {
    const double lx = left + pw - 290, ly = top + ph - 78;
    os << "<g class=\"legend\"><rect x=\"" << num(lx - 8) << "\" y=\"" << num(ly - 14)
       << "\" width=\"294\" height=\"84\" class=\"legend-box\"/>";
    os << "<path d=\"M" << num(lx) << " " << num(ly - 4) << " h24\" class=\"front\"/><text x=\""
       << num(lx + 30) << "\" y=\"" << num(ly) << "\" class=\"tick\">Pareto front (accuracy vs "
       << esc(ax.cost_word) << ")</text>";
    os << "<rect x=\"" << num(lx) << "\" y=\"" << num(ly + 10) << "\" width=\"24\" height=\"10\" "
       << "class=\"allowed\"/><text x=\"" << num(lx + 30) << "\" y=\"" << num(ly + 19)
       << "\" class=\"tick\">allowed: drop &#8804; " << esc(fmt_pp(rec.max_drop))
       << " from the baseline</text>";
    os << "<circle cx=\"" << num(lx + 12) << "\" cy=\"" << num(ly + 35) << "\" r=\"7\" "
       << "class=\"ring\"/><text x=\"" << num(lx + 30) << "\" y=\"" << num(ly + 39)
       << "\" class=\"tick\">recommended (by " << esc(rec.by) << ")</text>";
    os << "<path d=\"M" << num(lx + 12) << " " << num(ly + 48) << " l6 6 l-6 6 l-6 -6 Z\" "
       << "fill=\"#000\"/><text x=\"" << num(lx + 30) << "\" y=\"" << num(ly + 59)
       << "\" class=\"tick\">baseline</text></g>\n";
  }
  os << "</svg>\n";
  return os.str();
}

// The models of the report as points on accuracy against `cost` (size_bytes when null_latency
// is empty, else latency_us[latency_key]); the pipeline's candidates and trials only on size.
std::vector<Point> model_points(const Report& r, const std::string& latency_key,
                                bool front_by_this) {
  const Recommendation rec = recommend(r);
  auto x_of = [&](const ModelStats& s) {
    if (latency_key.empty()) return static_cast<double>(s.size_bytes);
    auto it = s.latency_us.find(latency_key);
    return it == s.latency_us.end() ? 0.0 : it->second;
  };
  std::vector<Point> pts;
  if (r.baseline.evaluated)
    pts.push_back({"baseline", x_of(r.baseline), r.baseline.accuracy, true, "#000", false, "",
                   front_by_this && rec.baseline_on_front, false});
  if (latency_key.empty() && r.pipeline) {
    // The chosen candidate is the result's own point.
    for (const auto& c : r.pipeline->candidates)
      if (c.evaluated && c.size_bytes > 0 && c.index != r.pipeline->best)
        pts.push_back({"#" + std::to_string(c.index + 1), double(c.size_bytes), c.accuracy, false,
                       c.passed ? "#2ca02c" : "#d62728", true,
                       "#" + std::to_string(c.index + 1) + " " + c.name +
                           (c.passed ? "" : " (fails the guard)")});
    // Autotune trials measured by another process (or before a resume): labelled "tN".
    for (const auto& t : r.pipeline->trials)
      if (t.measured && t.candidate < 0 && t.size_bytes > 0)
        pts.push_back({"t" + std::to_string(t.number), double(t.size_bytes), t.accuracy, false,
                       t.passed || !r.pipeline->guarded ? "#2ca02c" : "#d62728", true,
                       "trial " + std::to_string(t.number) +
                           (t.passed ? "" : " (fails the guard)")});
  }
  for (size_t i = 0; i < r.results.size(); ++i) {
    const auto& res = r.results[i];
    if (res.stats.evaluated)
      pts.push_back({res.name, x_of(res.stats), res.stats.accuracy, false, color_of(i), false, "",
                     front_by_this && rec.on_front[i],
                     front_by_this && rec.result == static_cast<int64_t>(i)});
  }
  return pts;
}

std::string size_chart(const Report& r) {
  if (!r.baseline.evaluated)
    return svg_message("chart-accuracy-size", "Accuracy against stored size",
                       "No accuracy was measured (no data), so there is nothing to plot.");
  return scatter_svg(r, model_points(r, "", r.recommend.by == "size"),
                     {"chart-accuracy-size", "Accuracy against stored size", "stored size",
                      bytes_tick, "size"},
                     r.recommend.by == "size");
}

// The latency the charts plot: the recommendation's batch when measured, else the smallest.
std::string chart_latency_key(const Report& r) {
  if (r.baseline.latency_us.count(r.recommend.latency_key)) return r.recommend.latency_key;
  for (const auto& k : batch_keys(r))
    if (r.baseline.latency_us.count(k)) return k;
  return "";
}

std::string latency_chart(const Report& r) {
  const std::string key = chart_latency_key(r);
  const std::string title = "Accuracy against latency";
  if (key.empty())
    return svg_message("chart-accuracy-latency", title,
                       "Latency was not measured (output.latency: false), so there is nothing "
                       "to plot.");
  if (!r.baseline.evaluated)
    return svg_message("chart-accuracy-latency", title,
                       "No accuracy was measured (no data), so there is nothing to plot.");
  const bool by_this = r.recommend.by == "latency" && key == r.recommend.latency_key;
  return scatter_svg(r, model_points(r, key, by_this),
                     {"chart-accuracy-latency", title,
                      "median latency at " + batch_label(key) + " (batch " +
                          key.substr(5) + ")",
                      us_tick, "latency"},
                     by_this);
}

// Three panels per layer row: parameters before (grey) and non-zero after (colour), sparsity,
// weight bits. At most kLayerRows rows; the table in report.md has them all.
constexpr size_t kLayerRows = 40;

std::string layers_svg(const Report& r, const ExperimentResult& res, size_t index) {
  const std::string id = msg("chart-layers-", index + 1);
  const std::string title = "Per-layer figures of " + res.name;
  std::vector<LayerRowView> rows = layer_rows(r, res);
  if (rows.empty()) return svg_message(id, title, "No layer with parameters.");
  const size_t shown = std::min(rows.size(), kLayerRows);
  size_t longest = 6;
  for (size_t i = 0; i < shown; ++i) longest = std::max(longest, std::min<size_t>(display_width(rows[i].name), 24));
  const double label_w = 12 + 6.6 * static_cast<double>(longest);
  const double p1 = 260, p2 = 150, p3 = 130, gap = 24, top = 46, row = 18;
  const double x1 = label_w, x2 = x1 + p1 + gap, x3 = x2 + p2 + gap;
  const double W = x3 + p3 + 20;
  const double H = top + row * static_cast<double>(shown) + (shown < rows.size() ? 40 : 22);
  int64_t max_params = 1;
  for (size_t i = 0; i < shown; ++i) {
    if (rows[i].before) max_params = std::max(max_params, rows[i].before->params);
    if (rows[i].after) max_params = std::max(max_params, rows[i].after->params);
  }
  const std::string color = color_of(index);
  std::ostringstream os;
  svg_open(os, id, W, H, title);
  auto head = [&](double x, double w, const std::string& text, const std::string& sub) {
    os << "<text x=\"" << num(x) << "\" y=\"16\" class=\"axis\">" << esc(text) << "</text>"
       << "<text x=\"" << num(x) << "\" y=\"31\" class=\"tick\">" << esc(sub) << "</text>"
       << "<line x1=\"" << num(x) << "\" x2=\"" << num(x) << "\" y1=\"" << top - 6 << "\" y2=\""
       << num(top + row * double(shown)) << "\" class=\"axisline\"/>";
    (void)w;
  };
  head(x1, p1, "parameters (linear)", "grey: baseline; colour: non-zero after");
  head(x2, p2, "sparsity after", "0 to 100% zeros");
  head(x3, p3, "weight bits", "grey: before; colour: after");
  os << "\n";
  for (size_t i = 0; i < shown; ++i) {
    const LayerRowView& v = rows[i];
    const double y = top + row * static_cast<double>(i);
    std::string name = v.name;
    if (display_width(name) > 24) name = truncated(name, 23) + "…";
    os << "<g class=\"layer\"><title>" << esc(v.name) << " (" << esc(v.op) << "): params "
       << (v.before ? with_commas(v.before->params) : "-") << " before, "
       << (v.after ? with_commas(v.after->params) + " after, " +
                         with_commas(v.after->nonzero_params) + " non-zero, sparsity " +
                         sparsity_text(*v.after) + ", " + bits_text(*v.after) + " bits"
                   : "removed")
       << "</title>";
    os << "<text x=\"" << num(x1 - 6) << "\" y=\"" << num(y + 13) << "\" class=\"label\" "
       << "text-anchor=\"end\">" << esc(name) << "</text>";
    auto bar = [&](double x, double w, double frac, const std::string& fill, double inset) {
      os << "<rect x=\"" << num(x) << "\" y=\"" << num(y + 3 + inset) << "\" width=\""
         << num(std::max(0.0, std::min(1.0, frac)) * w) << "\" height=\"" << num(row - 6 - 2 * inset)
         << "\" fill=\"" << fill << "\"/>";
    };
    if (v.before) bar(x1, p1, double(v.before->params) / double(max_params), "#ccc", 0);
    if (v.after) bar(x1, p1, double(v.after->nonzero_params) / double(max_params), color, 3);
    if (v.after) {
      const double sp = v.after->params > 0
                            ? 1.0 - double(v.after->nonzero_params) / double(v.after->params)
                            : 0.0;
      bar(x2, p2, sp, color, 0);
      os << "<text x=\"" << num(x2 + std::max(0.0, std::min(1.0, sp)) * p2 + 4) << "\" y=\""
         << num(y + 13) << "\" class=\"tick\">" << fixed(100 * sp, 0) << "%</text>";
      if (v.after->weight_bits > 0) {
        if (v.before && v.before->weight_bits > 0)
          bar(x3, p3 - 26, v.before->weight_bits / 32.0, "#ccc", 0);
        bar(x3, p3 - 26, v.after->weight_bits / 32.0, color, 3);
        os << "<text x=\"" << num(x3 + (p3 - 26) * v.after->weight_bits / 32.0 + 4) << "\" y=\""
           << num(y + 13) << "\" class=\"tick\">" << v.after->weight_bits << "</text>";
      }
    } else {
      os << "<text x=\"" << num(x2) << "\" y=\"" << num(y + 13) << "\" class=\"tick\">"
         << "not in this model (replaced or removed)</text>";
    }
    os << "</g>\n";
  }
  if (shown < rows.size())
    os << "<text x=\"" << num(x1) << "\" y=\"" << num(H - 10) << "\" class=\"note\">"
       << "first " << shown << " of " << rows.size()
       << " layers shown; report.md and report.json list every layer</text>\n";
  os << "</svg>\n";
  return os.str();
}

// Validation accuracy (or training accuracy without a validation split) and training loss per
// epoch: the baseline's training, then each experiment's fine-tuning epochs continuing after it.
std::string curves_svg(const Report& r) {
  const std::string title = "Training and fine-tuning curves";
  struct Series {
    std::string label, color;
    std::vector<std::pair<double, const EpochPoint*>> pts;  // x = epoch on the common axis
  };
  std::vector<Series> series;
  const double base_epochs = static_cast<double>(r.baseline_curve.size());
  if (!r.baseline_curve.empty()) {
    Series s{"baseline", "#000", {}};
    for (size_t i = 0; i < r.baseline_curve.size(); ++i)
      s.pts.push_back({double(i + 1), &r.baseline_curve[i]});
    series.push_back(s);
  }
  for (size_t i = 0; i < r.results.size(); ++i) {
    Series s{r.results[i].name, color_of(i), {}};
    double x = base_epochs;
    for (const auto& h : r.results[i].history)
      for (const auto& e : h.curve) s.pts.push_back({++x, &e});
    if (!s.pts.empty()) series.push_back(s);
  }
  if (series.empty())
    return svg_message("chart-curves", title, "No training ran (no baseline.train, no finetune).");
  bool val = true;
  double max_x = 1, max_loss = 0;
  for (const auto& s : series)
    for (const auto& [x, e] : s.pts) {
      val &= e->has_val;
      max_x = std::max(max_x, x);
      if (finite(e->train_loss)) max_loss = std::max(max_loss, e->train_loss);
    }
  if (!(max_loss > 0)) max_loss = 1;
  const double W = 760, H = 330, top = 20, bottom = 70, pw = 290, ph = H - top - bottom;
  const double lefts[2] = {60, 60 + pw + 90};
  std::ostringstream os;
  svg_open(os, "chart-curves", W, H, title);
  auto px = [&](int panel, double x) { return lefts[panel] + (x - 0.5) / max_x * pw; };
  const std::vector<double> loss_ticks = ticks(0, max_loss * 1.05, 5);
  const double loss_top = loss_ticks.empty() ? max_loss : std::max(max_loss * 1.05, loss_ticks.back());
  auto py = [&](int panel, double v) {
    return top + (1 - (panel == 0 ? std::clamp(v, 0.0, 1.0) : v / loss_top)) * ph;
  };
  for (int panel = 0; panel < 2; ++panel) {
    const double L = lefts[panel];
    os << "<rect x=\"" << L << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
       << "\" class=\"plot\"/>";
    const std::vector<double> yt = panel == 0 ? ticks(0, 1, 5) : loss_ticks;
    for (double v : yt) {
      os << "<line x1=\"" << L << "\" x2=\"" << L + pw << "\" y1=\"" << num(py(panel, v))
         << "\" y2=\"" << num(py(panel, v)) << "\" class=\"grid\"/><text x=\"" << L - 6
         << "\" y=\"" << num(py(panel, v) + 4) << "\" class=\"tick\" text-anchor=\"end\">"
         << (panel == 0 ? fixed(100 * v, 0) + "%" : fixed(v, v < 1 ? 2 : 1)) << "</text>";
    }
    const double step = max_x > 12 ? std::ceil(max_x / 8) : 1;
    for (double x = 1; x <= max_x + 1e-9; x += step)
      os << "<text x=\"" << num(px(panel, x)) << "\" y=\"" << top + ph + 16
         << "\" class=\"tick\" text-anchor=\"middle\">" << x << "</text>";
    if (base_epochs > 0 && max_x > base_epochs)
      os << "<line class=\"base\" x1=\"" << num(px(panel, base_epochs + 0.5)) << "\" x2=\""
         << num(px(panel, base_epochs + 0.5)) << "\" y1=\"" << top << "\" y2=\"" << top + ph
         << "\"/><text x=\"" << num(px(panel, base_epochs + 0.5) + 4) << "\" y=\"" << top + 14
         << "\" class=\"tick\">fine-tuning</text>";
    os << "<text x=\"" << L + pw / 2 << "\" y=\"" << top + ph + 34
       << "\" class=\"axis\" text-anchor=\"middle\">epoch (baseline training, then fine-tuning)"
       << "</text>";
    os << "<text transform=\"translate(" << L - 44 << "," << top + ph / 2
       << ") rotate(-90)\" class=\"axis\" text-anchor=\"middle\">"
       << (panel == 0 ? (val ? "validation accuracy (from 0%)" : "training accuracy (from 0%)")
                      : "training loss (from 0)")
       << "</text>\n";
    for (const auto& s : series) {
      std::ostringstream d;
      for (size_t i = 0; i < s.pts.size(); ++i) {
        const EpochPoint& e = *s.pts[i].second;
        const double v = panel == 0 ? (val ? e.val_accuracy : e.train_accuracy) : e.train_loss;
        d << (i ? " L" : "M") << num(px(panel, s.pts[i].first)) << " " << num(py(panel, v));
      }
      // A fine-tuning run starts where the baseline's training ended.
      std::string path = d.str();
      if (s.label != "baseline" && !r.baseline_curve.empty()) {
        const EpochPoint& e = r.baseline_curve.back();
        const double v = panel == 0 ? (val ? e.val_accuracy : e.train_accuracy) : e.train_loss;
        path = "M" + num(px(panel, base_epochs)) + " " + num(py(panel, v)) + " L" + path.substr(1);
      }
      os << "<g class=\"series\"><title>" << esc(s.label) << "</title><path d=\"" << path
         << "\" fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\"/>";
      for (const auto& [x, e] : s.pts) {
        const double v = panel == 0 ? (val ? e->val_accuracy : e->train_accuracy) : e->train_loss;
        os << "<circle cx=\"" << num(px(panel, x)) << "\" cy=\"" << num(py(panel, v))
           << "\" r=\"3\" fill=\"" << s.color << "\"><title>" << esc(s.label) << ", epoch "
           << x << ": " << esc(panel == 0 ? fmt_pct(v) : fixed(v, 4)) << "</title></circle>";
      }
      os << "</g>\n";
    }
  }
  // Legend under the panels.
  double lx = lefts[0];
  for (const auto& s : series) {
    os << "<rect x=\"" << num(lx) << "\" y=\"" << H - 18 << "\" width=\"14\" height=\"4\" fill=\""
       << s.color << "\"/><text x=\"" << num(lx + 18) << "\" y=\"" << H - 12
       << "\" class=\"tick\">" << esc(s.label) << "</text>";
    lx += 40 + text_width(s.label, 6.0);
  }
  os << "\n</svg>\n";
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
  if (bars.empty())
    return svg_message("chart-accuracy-bars", title, "No accuracy was measured (no data).");

  size_t longest = 8;
  for (const auto& b : bars)
    longest = std::max(longest, std::min<size_t>(display_width(b.label), 32));
  const double left = 14 + 7.0 * static_cast<double>(longest), right = 70, top = 20, row = 26;
  const double W = std::max(680.0, left + 400 + right), pw = W - left - right;
  const double H = top + row * static_cast<double>(bars.size()) + 40;
  auto px = [&](double a) { return left + std::clamp(a, 0.0, 1.0) * pw; };

  std::ostringstream os;
  svg_open(os, "chart-accuracy-bars", W, H, title);
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
table{border-collapse:collapse;margin:.5em 0;font-size:.86em}
th,td{border:1px solid #ddd;padding:.25em .45em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
svg{font-family:inherit;max-width:100%;height:auto}
svg .plot{fill:#fff;stroke:#bbb}svg .grid{stroke:#e6e6e6}svg .tick{font-size:11px;fill:#555}
svg .axis{font-size:12px;fill:#333}svg .label{font-size:12px;fill:#222}
svg .note{font-size:13px;fill:#777}svg .base{stroke:#000;stroke-dasharray:4 3}
svg .allowed{fill:#e7f4e4;stroke:none}svg .limit{stroke:#5a9e4b;stroke-dasharray:6 3}
svg .chance{stroke:#999;stroke-dasharray:2 3}svg .front{fill:none;stroke:#e0a800;stroke-width:2.5}
svg .ring{fill:none;stroke:#e0a800;stroke-width:3}svg .legend-box{fill:#fff;stroke:#ccc}
svg .axisline{stroke:#999}
.recommend{background:#eef7ec;border:1px solid #5a9e4b;border-left:6px solid #3f7f32;
padding:.5em .8em;margin:.6em 0;font-size:1.05em}
.scroll{overflow-x:auto;max-width:100%}
pre{background:#f6f6f6;padding:.8em;overflow:auto}.note{color:#666}
.warning{background:#fff4e5;border:1px solid #e8a33d;border-left:6px solid #d9822b;padding:.5em .8em;
margin:.6em 0})";

// Links relative to report.html, which sits in the output folder the paths are relative to.
std::string artifact_links(const std::map<std::string, std::string>& a) {
  std::string out;
  for (const auto& [k, v] : a)
    out += (out.empty() ? "" : ", ") + esc(k) + ": <a href=\"" + esc(v) + "\">" + esc(v) + "</a>";
  return out.empty() ? "-" : out;
}

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

  os << "<h2 id=\"recommendation\">Recommendation</h2>\n<p class=\"recommend\">"
     << esc(recommend(r).text) << "</p>\n<p class=\"note\">" << esc(kRecommendNote) << "</p>\n";
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
  const std::string front_note =
      r.recommend.by == "flops"
          ? " The recommendation is by FLOPs, so neither chart draws its Pareto front; the "
            "comparison table's verdict column has it."
          : "";
  os << "<figure>\n"
     << size_chart(r)
     << "<figcaption>Test accuracy against stored model size. The accuracy axis runs from 0% to "
        "100% on purpose: a difference of half a point is drawn as what it is. The baseline is "
        "the black diamond"
     << (r.recommend.by == "size"
             ? "; the orange staircase is the Pareto front by size, the green band the accuracies "
               "within the allowed drop, the orange ring the recommended model"
             : "")
     << "." << front_note
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
     << latency_chart(r)
     << "<figcaption>Test accuracy against measured median latency (same process, same threads, "
        "interleaved runs), accuracy axis from 0%."
     << (r.recommend.by == "latency" ? " The Pareto front, allowed band and recommendation are by "
                                       "this latency."
                                     : "")
     << "</figcaption>\n</figure>\n";
  os << "<figure>\n"
     << bars_svg(r)
     << "<figcaption>Test accuracy per experiment; the dashed line is the baseline."
        "</figcaption>\n</figure>\n";
  if (!r.results.empty() && any_layers(r)) {
    os << "<h2>Per-layer</h2>\n<p class=\"note\">Every layer with parameters: parameters before "
          "(grey, the baseline's layer of the same name) and non-zero parameters after (colour) "
          "on one linear scale per model, the share of zeros after compression, and the stored "
          "bit width of the weights. The tables in report.md have the numbers.</p>\n";
    for (size_t i = 0; i < r.results.size(); ++i)
      os << "<figure>\n<figcaption><strong>" << esc(r.results[i].name)
         << "</strong></figcaption>\n"
         << layers_svg(r, r.results[i], i) << "</figure>\n";
  }
  if (any_curve(r)) {
    os << "<h2>Training and fine-tuning</h2>\n<figure>\n"
       << curves_svg(r)
       << "<figcaption>Per epoch: the baseline's training, then each experiment's fine-tuning "
          "epochs (all its stages, in order) continuing from where the baseline ended. Accuracy "
          "from 0%, loss from 0.</figcaption>\n</figure>\n<details><summary>Per-epoch "
          "table</summary>\n"
       << html_table(curve_table(r)) << "</details>\n";
  }

  os << "<h2>Baseline</h2>\n" << html_table(baseline_table(r));
  os << "<p>Artifacts: " << artifact_links(r.baseline_artifacts) << "</p>\n";

  if (!r.results.empty()) {
    os << "<h2>Stage history</h2>\n";
    for (const auto& res : r.results) {
      os << "<h3>" << esc(res.name) << "</h3>\n" << html_table(history_table(res));
      os << "<p>Time: " << esc(fmt_seconds(res.seconds))
         << ". Artifacts: " << artifact_links(res.artifacts) << "</p>\n";
    }
  }
  if (any_per_class(r)) {
    std::string note;
    const Table t = per_class_table(r, &note);
    os << "<h2>Per-class accuracy</h2>\n<p class=\"note\">Each experiment's cell shows its "
          "accuracy and, in brackets, the drop from the baseline; n/a: the class does not occur "
          "in the test set.</p>\n";
    if (!note.empty()) os << "<p>" << esc(note) << "</p>\n";
    os << html_table(t);
  }
  os << hep_html(r);
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

Recommendation recommend(const Report& r) {
  Recommendation rec;
  rec.by = r.recommend.by;
  rec.max_drop = r.recommend.max_drop;
  rec.metric = rec.by == "size"    ? "size_bytes"
               : rec.by == "flops" ? "flops"
                                   : "latency_us." + r.recommend.latency_key;
  rec.on_front.assign(r.results.size(), false);
  // The cost the recommendation minimises; false when it was not measured.
  auto cost = [&](const ModelStats& s, double* out) {
    if (rec.by == "size") *out = static_cast<double>(s.size_bytes);
    else if (rec.by == "flops") *out = static_cast<double>(s.flops);
    else {
      auto it = s.latency_us.find(r.recommend.latency_key);
      if (it == s.latency_us.end()) return false;
      *out = it->second;
    }
    return finite(*out) && *out > 0;
  };
  const std::string what = rec.by == "size"    ? "stored size"
                           : rec.by == "flops" ? "FLOPs per sample"
                                               : "latency at " +
                                                     batch_label(r.recommend.latency_key);
  auto cost_text = [&](double c) {
    if (rec.by == "size") return fmt_bytes(static_cast<int64_t>(c));
    if (rec.by == "flops") return fmt_flops(static_cast<int64_t>(c)) + " FLOPs";
    return fmt_us(c);
  };
  double base_cost = 0.0;
  if (!r.baseline.evaluated) {
    rec.text = "No recommendation: accuracy was not measured (no data), so no model can be "
               "judged against the baseline.";
    return rec;
  }
  if (!cost(r.baseline, &base_cost)) {
    rec.text = "No recommendation: the baseline's " + what +
               " was not measured (output.recommend.by: " + rec.by + ").";
    return rec;
  }
  // Pareto front over the baseline (index -1) and the results: no other model is at least as
  // accurate and at most as costly, and strictly better in one of the two.
  struct Pt {
    int64_t index;
    double accuracy, cost;
  };
  std::vector<Pt> pts{{-1, r.baseline.accuracy, base_cost}};
  for (size_t i = 0; i < r.results.size(); ++i) {
    double c = 0.0;
    if (r.results[i].stats.evaluated && cost(r.results[i].stats, &c))
      pts.push_back({static_cast<int64_t>(i), r.results[i].stats.accuracy, c});
  }
  for (const Pt& p : pts) {
    bool dominated = false;
    for (const Pt& q : pts)
      dominated |= q.accuracy >= p.accuracy && q.cost <= p.cost &&
                   (q.accuracy > p.accuracy || q.cost < p.cost);
    if (dominated) continue;
    if (p.index < 0) rec.baseline_on_front = true;
    else rec.on_front[p.index] = true;
  }
  rec.judged = true;
  const std::string limit = fmt_pp(rec.max_drop) + " of the baseline's test accuracy (" +
                            fmt_pct(r.baseline.accuracy) + ")";
  if (r.results.empty()) {
    rec.text = "No compressed model to recommend (no experiment ran); the baseline is the only "
               "model.";
    return rec;
  }
  const Pt* best = nullptr;
  const Pt* closest = nullptr;
  size_t within = 0;
  for (const Pt& p : pts) {
    if (p.index < 0) continue;
    if (!closest || p.accuracy > closest->accuracy) closest = &p;
    // A tolerance for drops computed from fractions (0.9 - 0.89 is not exactly 0.01).
    if (r.baseline.accuracy - p.accuracy > rec.max_drop + 1e-9) continue;
    ++within;
    if (!best || p.cost < best->cost || (p.cost == best->cost && p.accuracy > best->accuracy))
      best = &p;
  }
  if (!best) {
    rec.text = msg("No compressed model is within ", limit, closest ? "; the closest is " +
                   r.results[closest->index].name + ", " +
                   fmt_pp(r.baseline.accuracy - closest->accuracy) + " below it" : "",
                   ". Ship the baseline, or allow a larger drop (output.recommend.max_drop).");
    return rec;
  }
  rec.result = best->index;
  const ExperimentResult& b = r.results[best->index];
  rec.text = msg("Ship ", b.name, ": the lowest ", what, " (", cost_text(best->cost), ", ",
                 fmt_ratio(base_cost / best->cost), " below the baseline's ", cost_text(base_cost),
                 ") of the ", within, " of ", r.results.size(),
                 " compressed models within ", limit, "; its test accuracy is ",
                 fmt_pct(b.stats.accuracy), " (drop ", fmt_pp(r.baseline.accuracy - best->accuracy),
                 ").");
  return rec;
}

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> e = env::describe();
  for (const auto& [k, v] : quant::int8_environment()) e[k] = v;
  return e;
}

std::vector<std::string> latency_warnings(const Report& r) {
  std::vector<std::string> out;
  if (!r.latency_measurement) return out;
  const int threads = r.latency_measurement->threads;
  auto batch = [](const std::string& key) { return batch_of(key) == INT64_MAX ? key : "batch " + key.substr(5); };
  std::vector<std::string> noisy;
  for (const auto& [key, d] : r.baseline_latency)
    if (d.noisy) noisy.push_back("baseline at " + batch(key));
  for (const auto& res : r.results)
    for (const auto& [key, d] : res.latency)
      if (d.noisy) noisy.push_back("'" + res.name + "' at " + batch(key));
  if (!noisy.empty())
    out.push_back(msg("latency figures are uncertain (95% interval wider than +-5%) for ", join(noisy, ", "),
                      r.latency_measurement->advice.empty() ? "" : ": " + r.latency_measurement->advice));
  for (const auto& res : r.results) {
    std::vector<std::string> slower;
    for (const auto& [key, d] : res.latency)
      if (d.speedup_hi < 1.0) slower.push_back(fmt_ratio(d.speedup) + " at " + batch(key));
    if (!slower.empty())
      out.push_back(msg("'", res.name, "' runs slower than the baseline: ", join(slower, ", "), " (", threads,
                        threads == 1 ? " thread" : " threads", "); smaller is not faster here"));
  }
  return out;
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
  out += "recommendation: " + recommend(report).text + "\n";
  if (report.pipeline)
    out += "pipeline " + report.pipeline->type + ": " + report.pipeline->outcome + "\n";
  for (const auto& w : report.warnings) out += "warning: " + w + "\n";
  return out;
}

}  // namespace squeeze::report
