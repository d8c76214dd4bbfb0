#include "squeeze/pipeline/workflow.h"

#include <ATen/ATen.h>

#include <chrono>
#include <map>

#include "squeeze/io/model_io.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/autotune.h"
#include "squeeze/pipeline/combinations.h"
#include "squeeze/pipeline/hep_jet.h"
#include "squeeze/pipeline/hep_trigger.h"
#include "squeeze/pipeline/progressive.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/pipeline/validation.h"
#include "squeeze/util/error.h"
#include "squeeze/util/interrupt.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace {

// The pipelines this build runs, by pipeline.type. A new pipeline is one more line here and its
// own file pair; the config names every type DESIGN.md plans (config.cpp's kPipelines).
struct PipelineRunner {
  const char* type;
  report::Report (*run)(const WorkflowConfig&, const RunOptions&);
};
const PipelineRunner kRunners[] = {
    {"validation", run_validation},
    {"combinations", run_combinations},
    {"progressive", run_progressive},
    {"autotune", run_autotune},
    {"hep-trigger", run_hep_trigger},
    {"hep-jet", run_hep_jet},
};

std::vector<std::string> available_pipelines() {
  std::vector<std::string> out;
  for (const auto& r : kRunners) out.push_back(r.type);
  return out;
}

// The experiments: each from the baseline, its stages in order.
report::Report run_experiments(const WorkflowConfig& config, const RunOptions& options) {
  // Each experiment's files are models/<safe_file_name(name)>.*, next to the baseline's: two
  // names that map to one file would overwrite each other's model.
  std::map<std::string, std::string> files = {{"baseline", "the baseline"}};
  for (size_t e = 0; e < config.experiments.size(); ++e) {
    const std::string& name = config.experiments[e].name;
    auto [it, fresh] = files.emplace(safe_file_name(name), msg("experiment '", name, "'"));
    if (!fresh)
      throw ConfigError(msg("experiments[", e, "].name: '", name, "' would write models/",
                            it->first, ".sqz, the file of ", it->second,
                            "; choose another name (names are written with characters other "
                            "than letters, digits, '.', '-' and '_' replaced by '_')"));
  }
  Workspace ws(config, options);
  // Every check before any training: stage parameters, data, model, teachers.
  std::vector<std::vector<PreparedStage>> prepared;
  for (const auto& exp : config.experiments)
    prepared.push_back(ws.prepare(exp.stages, "experiment '" + exp.name + "'"));
  ws.load();
  for (auto& stages : prepared) ws.attach_teachers(stages);
  ws.start();

  // Units of the journal: each stage ("experiment/NAME/stage/I") and each experiment's result
  // ("experiment/NAME"); a resumed run loads them and continues from the last one finished.
  std::vector<ir::Graph> compressed;
  for (size_t e = 0; e < config.experiments.size(); ++e) {
    const ExperimentSpec& exp = config.experiments[e];
    const std::string key = "experiment/" + exp.name;
    if (const report::JournalUnit* done = ws.finished(key)) {
      log::info("experiment '", exp.name, "': finished by an earlier run, loaded");
      ws.report().results.push_back(*done->result);
      compressed.push_back(ws.restore(*done));
      continue;
    }
    auto t_exp = std::chrono::steady_clock::now();
    log::info("experiment '", exp.name, "'");
    ir::Graph g = ws.baseline().clone();
    std::vector<report::StageRecord> history;
    for (size_t si = 0; si < prepared[e].size(); ++si)
      history.push_back(ws.run_stage(msg(key, "/stage/", si), g, prepared[e][si], si));
    report::ExperimentResult res = ws.result(exp.name, history, g, t_exp);
    report::JournalUnit unit;
    unit.key = key;
    unit.checkpoint = res.artifacts.at("checkpoint");
    unit.result = res;
    ws.record(std::move(unit), &g);
    ws.report().results.push_back(std::move(res));
    compressed.push_back(std::move(g));
  }
  std::vector<const ir::Graph*> graphs;
  for (const auto& g : compressed) graphs.push_back(&g);
  return ws.finish(graphs);
}

}  // namespace

report::ModelStats static_stats(const ir::Graph& graph) {
  report::ModelStats s;
  s.params = graph.num_params();
  s.nonzero_params = graph.num_nonzero_params();
  s.size_bytes = io::stored_size_bytes(graph);
  s.flops = ir::graph_flops(graph);
  // The per-layer figures `squeeze inspect` shows, for the report's per-layer charts.
  for (const auto& n : graph.nodes) {
    if (n.params.empty()) continue;
    report::LayerStats l;
    l.name = n.name;
    l.op = n.op;
    for (const auto& [k, p] : n.params) {
      l.params += p.value.numel();
      l.nonzero_params += p.value.ne(0).sum().item<int64_t>();
    }
    if (n.has_param("weight")) {
      const auto& w = n.param("weight");
      l.weight_bits = w.qspec ? w.qspec->bits : 32;
    }
    s.layers.push_back(std::move(l));
  }
  return s;
}

ir::Graph build_model(const ModelSpec& spec, const data::Splits* data, uint64_t seed,
                      const std::string& key_path) {
  ir::Graph g;
  if (!spec.zoo.empty()) {
    auto params = spec.params;
    if (data) models::fill_params_from_data(spec.zoo, params, data->sample_shape, data->num_classes);
    g = models::build(spec.zoo, params, seed);
  } else {
    g = io::load_model(!spec.onnx.empty() ? spec.onnx : spec.checkpoint, seed);
  }
  if (spec.head_classes > 0) {
    ir::verify(g);
    log::info("model: head ", models::replace_head(g, spec.head_classes, seed, key_path + ".head"));
  }
  return g;
}

// Through run_workflow, so that a check is every runner's own sequence of checks, whatever the
// runner: they all end at Workspace::start(), which stops there under check_only.
void check_workflow(const WorkflowConfig& config) {
  RunOptions options;
  options.check_only = true;
  try {
    run_workflow(config, options);
  } catch (const ChecksPassed&) {
    return;
  }
  SQZ_ASSERT(false, "a runner finished without starting its workspace");
}

report::Report run_workflow(const WorkflowConfig& config, const RunOptions& options) {
  const bool autotune = config.pipeline && config.pipeline->autotune;
  if (options.worker && !autotune)
    throw ConfigError(msg("--worker shares an autotune study; this config has ",
                          config.pipeline ? "pipeline.type: " + config.pipeline->type
                                          : std::string("no pipeline"),
                          " (use pipeline: {type: autotune, ...})"));
  if (options.resume && (options.force || options.worker))
    throw ConfigError(msg("--resume continues the run in the output folder; it cannot be combined "
                          "with ", options.force ? "--force (which starts over)" : "--worker"));
  if (options.force && autotune)
    throw ConfigError(
        "--force: an autotune run keeps its trials in its study (pipeline.study, default "
        "OUTDIR/study.db), which decides whether it starts over; to start over remove the study "
        "or set pipeline.study to another file, to continue it use --resume");
  // Ctrl-C or SIGTERM: the trainer stops at the next batch; finished units are in the journal.
  interrupt::InterruptScope interrupt_scope;
  if (!config.pipeline) return run_experiments(config, options);
  for (const auto& r : kRunners)
    if (config.pipeline->type == r.type) return r.run(config, options);
  throw UnsupportedError(
      msg("pipeline.type: '", config.pipeline->type,
          "' is not available in this build yet (available: ", join(available_pipelines(), ", "),
          "; or experiments without a pipeline)"));
}

}  // namespace squeeze::pipeline
