#include "squeeze/report/cli_json.h"

#include <nlohmann/json.hpp>

#include "squeeze/report/report.h"

namespace squeeze::report {

namespace {
using nlohmann::json;

json shape_json(const ir::Shape& s) {
  json a = json::array();
  for (auto d : s) a.push_back(d == ir::kDynamic ? json(nullptr) : json(d));
  return a;
}
}  // namespace

std::string latency_table_json(const std::string& model, const compress::LatencyTable& table,
                               const std::string& source) {
  json j;
  j["model"] = model;
  j["source"] = source;
  j["key"] = {{"cpu", table.key.cpu},         {"isa", table.key.isa},     {"torch", table.key.torch},
              {"threads", table.key.threads}, {"batch", table.key.batch}, {"model", table.key.model}};
  j["model_us"] = table.model_us;
  json groups = json::array();
  for (const auto& g : table.groups) {
    json rows = json::array();
    for (size_t i = 0; i < g.counts.size(); ++i)
      rows.push_back({{"channels", g.counts[i]}, {"us", g.us[i]}, {"steps_down", bool(g.efficient[i])}});
    json nodes = json::array();
    for (const auto& n : g.nodes) nodes.push_back(n.node);
    groups.push_back({{"name", g.name}, {"channels", g.size}, {"us", g.us.empty() ? 0.0 : g.us.back()},
                      {"nodes", nodes}, {"table", rows}});
  }
  j["groups"] = groups;
  return j.dump(2) + "\n";
}

std::string inspect_json(const std::string& model, const std::vector<LayerRow>& layers, const ModelTotals& total) {
  json rows = json::array();
  for (const auto& l : layers)
    rows.push_back({{"name", l.name},
                    {"op", l.op},
                    {"input_shape", l.has_input ? shape_json(l.input_shape) : json(nullptr)},
                    {"output_shape", shape_json(l.output_shape)},
                    {"params", l.params},
                    {"nonzero_params", l.nonzero_params},
                    {"flops", l.flops},
                    {"weight_bits", l.weight_bits},
                    {"weight_grid_bits", l.weight_grid_bits},
                    {"execution", l.execution}});
  json j;
  j["model"] = model;
  j["layers"] = rows;
  j["total"] = {{"params", total.params},
                {"nonzero_params", total.nonzero_params},
                {"flops", total.flops},
                {"size_bytes", total.size_bytes}};
  return j.dump(2) + "\n";
}

std::string eval_json(const std::string& model, const std::string& data, const train::Metrics& m,
                      const std::vector<std::string>& class_names) {
  json pc = json::array();
  for (size_t i = 0; i < m.classes.size(); ++i) {
    const size_t c = static_cast<size_t>(m.classes[i]);
    pc.push_back({{"class", c},
                  {"name", c < class_names.size() ? class_names[c] : ""},
                  {"accuracy", m.per_class_accuracy[i]},
                  {"recall", m.per_class_accuracy[i]},
                  {"precision", m.per_class_precision[i]}});
  }
  json j;
  j["model"] = model;
  j["data"] = data;
  j["samples"] = m.samples;
  j["accuracy"] = m.accuracy;
  j["loss"] = m.loss;
  j["num_outputs"] = m.num_outputs;
  j["per_class"] = pc;
  j["confusion"] = m.confusion;
  return j.dump(2) + "\n";
}

std::string bench_json(const std::string& model, int threads, const std::vector<deploy::LatencyStats>& results,
                       const std::vector<std::vector<deploy::OpTime>>& profiles, const std::string& advice) {
  json rows = json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& s = results[i];
    rows.push_back({{"batch", s.batch},
                    {"latency_us", {{"median", s.median_us}, {"min", s.min_us}, {"max", s.max_us},
                                    {"p10", s.p10_us}, {"p90", s.p90_us},
                                    {"median_ci95", {s.median_lo_us, s.median_hi_us}}}},
                    {"spread", s.spread},
                    {"noisy", s.noisy},
                    {"samples_per_s", s.samples_per_s},
                    {"runs", s.runs},
                    {"convolutions", s.conv_implementations}});
    if (i < profiles.size()) {
      json ops = json::array();
      for (const auto& t : profiles[i])
        ops.push_back({{"op", t.op}, {"nodes", t.nodes}, {"us", t.us}, {"share", t.share}});
      rows.back()["profile"] = ops;
    }
  }
  json j;
  j["model"] = model;
  j["threads"] = threads;
  bool noisy = false;
  for (const auto& s : results) noisy |= s.noisy;
  j["noisy"] = noisy;
  if (!advice.empty()) j["advice"] = advice;
  json env = json::object();  // blas, blas_core, cpu, int8_isa...: what the numbers depend on
  for (const auto& [k, v] : environment()) env[k] = v == "true" ? json(true) : v == "false" ? json(false) : json(v);
  j["env"] = env;
  j["results"] = rows;
  return j.dump(2) + "\n";
}

}  // namespace squeeze::report
