#include "squeeze/report/journal.h"
#include "squeeze/report/hep_report.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "squeeze/util/error.h"

namespace squeeze::report {

namespace {

using Json = nlohmann::ordered_json;

constexpr int kVersion = 1;

// Non-finite numbers have no JSON spelling: null, read back as NaN.
Json num(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }
double num(const Json& j) {
  return j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>();
}

Json curve_json(const std::vector<EpochPoint>& curve) {
  Json a = Json::array();
  for (const auto& e : curve)
    a.push_back({{"epoch", e.epoch},
                 {"train_loss", num(e.train_loss)},
                 {"train_accuracy", num(e.train_accuracy)},
                 {"has_val", e.has_val},
                 {"val_loss", num(e.val_loss)},
                 {"val_accuracy", num(e.val_accuracy)}});
  return a;
}

std::vector<EpochPoint> curve_from(const Json& j) {
  std::vector<EpochPoint> out;
  for (const auto& e : j) {
    EpochPoint p;
    p.epoch = e.at("epoch").get<int64_t>();
    p.train_loss = num(e.at("train_loss"));
    p.train_accuracy = num(e.at("train_accuracy"));
    p.has_val = e.at("has_val").get<bool>();
    p.val_loss = num(e.at("val_loss"));
    p.val_accuracy = num(e.at("val_accuracy"));
    out.push_back(p);
  }
  return out;
}

Json stats_json(const ModelStats& s) {
  Json per_class = Json::array();
  for (const auto& c : s.per_class)
    per_class.push_back({{"class", c.cls},
                         {"name", c.name},
                         {"accuracy", num(c.accuracy)},
                         {"recall", num(c.recall)},
                         {"precision", num(c.precision)}});
  Json latency = Json::object();
  for (const auto& [k, v] : s.latency_us) latency[k] = num(v);
  Json layers = Json::array();
  for (const auto& l : s.layers)
    layers.push_back({{"name", l.name},
                      {"op", l.op},
                      {"params", l.params},
                      {"nonzero_params", l.nonzero_params},
                      {"weight_bits", l.weight_bits}});
  return {{"evaluated", s.evaluated}, {"accuracy", num(s.accuracy)}, {"loss", num(s.loss)},
          {"params", s.params},       {"nonzero_params", s.nonzero_params},
          {"size_bytes", s.size_bytes}, {"flops", s.flops},
          {"latency_us", latency},    {"per_class", per_class},
          {"num_classes", s.num_classes}, {"layers", layers},
          {"hep", s.hep.empty() ? Json(nullptr) : Json(hep_json(s.hep, {}))}};
}

ModelStats stats_from(const Json& j) {
  ModelStats s;
  s.evaluated = j.at("evaluated").get<bool>();
  s.accuracy = num(j.at("accuracy"));
  s.loss = num(j.at("loss"));
  s.params = j.at("params").get<int64_t>();
  s.nonzero_params = j.at("nonzero_params").get<int64_t>();
  s.size_bytes = j.at("size_bytes").get<int64_t>();
  s.flops = j.at("flops").get<int64_t>();
  for (const auto& [k, v] : j.at("latency_us").items()) s.latency_us[k] = num(v);
  for (const auto& c : j.at("per_class")) {
    ClassStats cs;
    cs.cls = c.at("class").get<int64_t>();
    cs.name = c.at("name").get<std::string>();
    cs.accuracy = num(c.at("accuracy"));
    cs.recall = num(c.at("recall"));
    cs.precision = num(c.at("precision"));
    s.per_class.push_back(cs);
  }
  s.num_classes = j.at("num_classes").get<int64_t>();
  // Journals written before the hep figures existed have no "hep".
  if (j.contains("hep") && !j.at("hep").is_null()) s.hep = hep_from_json(j.at("hep"));
  for (const auto& l : j.at("layers")) {
    LayerStats ls;
    ls.name = l.at("name").get<std::string>();
    ls.op = l.at("op").get<std::string>();
    ls.params = l.at("params").get<int64_t>();
    ls.nonzero_params = l.at("nonzero_params").get<int64_t>();
    ls.weight_bits = l.at("weight_bits").get<int>();
    s.layers.push_back(ls);
  }
  return s;
}

Json stage_json(const StageRecord& r) {
  return {{"stage", r.stage},
          {"summary", r.summary},
          {"evaluated", r.evaluated},
          {"accuracy", num(r.accuracy)},
          {"params", r.params},
          {"nonzero_params", r.nonzero_params},
          {"size_bytes", r.size_bytes},
          {"flops", r.flops},
          {"seconds", num(r.seconds)},
          {"finetune_steps", r.finetune_steps},
          {"step_ms", num(r.step_ms)},
          {"teacher", r.teacher},
          {"teacher_ms_per_step", num(r.teacher_ms_per_step)},
          {"curve", curve_json(r.curve)},
          {"evaluated_before_finetune", r.evaluated_before_finetune},
          {"accuracy_before_finetune", num(r.accuracy_before_finetune)},
          {"figures", r.figures}};
}

StageRecord stage_from(const Json& j) {
  StageRecord r;
  r.stage = j.at("stage").get<std::string>();
  r.summary = j.at("summary").get<std::string>();
  r.evaluated = j.at("evaluated").get<bool>();
  r.accuracy = num(j.at("accuracy"));
  r.params = j.at("params").get<int64_t>();
  r.nonzero_params = j.at("nonzero_params").get<int64_t>();
  r.size_bytes = j.at("size_bytes").get<int64_t>();
  r.flops = j.at("flops").get<int64_t>();
  r.seconds = num(j.at("seconds"));
  r.finetune_steps = j.at("finetune_steps").get<int64_t>();
  r.step_ms = num(j.at("step_ms"));
  r.teacher = j.at("teacher").get<std::string>();
  r.teacher_ms_per_step = num(j.at("teacher_ms_per_step"));
  r.curve = curve_from(j.at("curve"));
  if (j.contains("figures"))
    for (const auto& [k, v] : j.at("figures").items()) r.figures[k] = num(v);
  r.evaluated_before_finetune = j.at("evaluated_before_finetune").get<bool>();
  r.accuracy_before_finetune = num(j.at("accuracy_before_finetune"));
  return r;
}

Json stages_json(const std::vector<StageRecord>& records) {
  Json a = Json::array();
  for (const auto& r : records) a.push_back(stage_json(r));
  return a;
}

std::vector<StageRecord> stages_from(const Json& j) {
  std::vector<StageRecord> out;
  for (const auto& r : j) out.push_back(stage_from(r));
  return out;
}

Json string_map(const std::map<std::string, std::string>& m) {
  Json j = Json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

std::map<std::string, std::string> string_map_from(const Json& j) {
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : j.items()) m[k] = v.get<std::string>();
  return m;
}

Json result_json(const ExperimentResult& r) {
  Json speedup = Json::object();
  for (const auto& [k, v] : r.speedup) speedup[k] = num(v);
  return {{"name", r.name},
          {"stages", r.stages},
          {"stats", stats_json(r.stats)},
          {"accuracy_drop", num(r.accuracy_drop)},
          {"compression_ratio", num(r.compression_ratio)},
          {"param_ratio", num(r.param_ratio)},
          {"flops_ratio", num(r.flops_ratio)},
          {"speedup", speedup},
          {"history", stages_json(r.history)},
          {"artifacts", string_map(r.artifacts)},
          {"seconds", num(r.seconds)}};
}

ExperimentResult result_from(const Json& j) {
  ExperimentResult r;
  r.name = j.at("name").get<std::string>();
  r.stages = j.at("stages").get<std::vector<std::string>>();
  r.stats = stats_from(j.at("stats"));
  r.accuracy_drop = num(j.at("accuracy_drop"));
  r.compression_ratio = num(j.at("compression_ratio"));
  r.param_ratio = num(j.at("param_ratio"));
  r.flops_ratio = num(j.at("flops_ratio"));
  for (const auto& [k, v] : j.at("speedup").items()) r.speedup[k] = num(v);
  r.history = stages_from(j.at("history"));
  r.artifacts = string_map_from(j.at("artifacts"));
  r.seconds = num(j.at("seconds"));
  return r;
}

Json candidate_json(const CandidateRecord& c) {
  return {{"index", c.index},
          {"name", c.name},
          {"evaluated", c.evaluated},
          {"val_accuracy", num(c.val_accuracy)},
          {"val_drop", num(c.val_drop)},
          {"val_relative_drop", num(c.val_relative_drop)},
          {"accuracy", num(c.accuracy)},
          {"params", c.params},
          {"nonzero_params", c.nonzero_params},
          {"size_bytes", c.size_bytes},
          {"flops", c.flops},
          {"compression_ratio", num(c.compression_ratio)},
          {"passed", c.passed},
          {"reason", c.reason},
          {"status", c.status},
          {"note", c.note},
          {"rank", c.rank},
          {"checkpoint", c.checkpoint},
          {"history", stages_json(c.history)},
          {"seconds", num(c.seconds)}};
}

CandidateRecord candidate_from(const Json& j) {
  CandidateRecord c;
  c.index = j.at("index").get<int64_t>();
  c.name = j.at("name").get<std::string>();
  c.evaluated = j.at("evaluated").get<bool>();
  c.val_accuracy = num(j.at("val_accuracy"));
  c.val_drop = num(j.at("val_drop"));
  c.val_relative_drop = num(j.at("val_relative_drop"));
  c.accuracy = num(j.at("accuracy"));
  c.params = j.at("params").get<int64_t>();
  c.nonzero_params = j.at("nonzero_params").get<int64_t>();
  c.size_bytes = j.at("size_bytes").get<int64_t>();
  c.flops = j.at("flops").get<int64_t>();
  c.compression_ratio = num(j.at("compression_ratio"));
  c.passed = j.at("passed").get<bool>();
  c.reason = j.at("reason").get<std::string>();
  c.status = j.at("status").get<std::string>();
  c.note = j.at("note").get<std::string>();
  c.rank = j.at("rank").get<int64_t>();
  c.checkpoint = j.at("checkpoint").get<std::string>();
  c.history = stages_from(j.at("history"));
  c.seconds = num(j.at("seconds"));
  return c;
}

}  // namespace

const JournalUnit* Journal::find(const std::string& key) const {
  for (const auto& u : units)
    if (u.key == key) return &u;
  return nullptr;
}

std::string journal_json(const Journal& journal) {
  Json units = Json::array();
  for (const auto& u : journal.units) {
    Json j = {{"key", u.key}, {"checkpoint", u.checkpoint}};
    if (u.stats) j["stats"] = stats_json(*u.stats);
    if (!u.curve.empty()) j["curve"] = curve_json(u.curve);
    if (!u.artifacts.empty()) j["artifacts"] = string_map(u.artifacts);
    if (!u.warnings.empty()) j["warnings"] = u.warnings;
    if (!u.stages.empty()) j["stages"] = stages_json(u.stages);
    if (u.result) j["result"] = result_json(*u.result);
    if (u.candidate) j["candidate"] = candidate_json(*u.candidate);
    if (!u.skipped.empty()) j["skipped"] = u.skipped;
    units.push_back(std::move(j));
  }
  Json j = {{"format", "squeeze-run"},
            {"version", kVersion},
            {"state", journal.state},
            {"config", journal.config},
            {"overrides", journal.overrides},
            {"config_hash", journal.config_hash},
            {"seed", journal.seed},
            {"runs", journal.runs},
            {"units", units}};
  return j.dump(1) + "\n";
}

Journal parse_journal(const std::string& text, const std::string& path) {
  Journal out;
  try {
    const Json j = Json::parse(text);
    if (!j.is_object() || j.value("format", "") != "squeeze-run")
      throw InputError(msg(path, ": not a squeeze run journal (expected \"format\": \"squeeze-run\")"));
    if (j.at("version").get<int>() != kVersion)
      throw InputError(msg(path, ": journal version ", j.at("version").dump(),
                           " is not supported (this squeeze reads version ", kVersion, ")"));
    out.state = j.at("state").get<std::string>();
    out.config = j.at("config").get<std::string>();
    out.overrides = j.at("overrides").get<std::vector<std::string>>();
    out.config_hash = j.at("config_hash").get<std::string>();
    out.seed = j.at("seed").get<uint64_t>();
    out.runs = j.at("runs").get<int64_t>();
    for (const auto& uj : j.at("units")) {
      JournalUnit u;
      u.key = uj.at("key").get<std::string>();
      u.checkpoint = uj.at("checkpoint").get<std::string>();
      if (uj.contains("stats")) u.stats = stats_from(uj.at("stats"));
      if (uj.contains("curve")) u.curve = curve_from(uj.at("curve"));
      if (uj.contains("artifacts")) u.artifacts = string_map_from(uj.at("artifacts"));
      if (uj.contains("warnings")) u.warnings = uj.at("warnings").get<std::vector<std::string>>();
      if (uj.contains("stages")) u.stages = stages_from(uj.at("stages"));
      if (uj.contains("result")) u.result = result_from(uj.at("result"));
      if (uj.contains("candidate")) u.candidate = candidate_from(uj.at("candidate"));
      if (uj.contains("skipped")) u.skipped = uj.at("skipped").get<std::string>();
      out.units.push_back(std::move(u));
    }
  } catch (const Json::exception& e) {
    throw InputError(msg(path, ": damaged run journal (", e.what(),
                         "); start the run over with --force"));
  }
  return out;
}

}  // namespace squeeze::report
