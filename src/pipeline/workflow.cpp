#include "squeeze/pipeline/workflow.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "squeeze/compress/distill/distill.h"
#include "squeeze/compress/registry.h"
#include "squeeze/deploy/export.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/io/model_io.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/distill.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/env.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

report::ModelStats evaluated_stats(ir::Graph& g, const data::Splits* data, int64_t batch_size) {
  report::ModelStats s = static_stats(g);
  if (!data || data->test.size() == 0) return s;
  train::Metrics m = train::evaluate(g, data->test, std::max<int64_t>(batch_size, 256));
  s.evaluated = true;
  s.accuracy = m.accuracy;
  s.loss = m.loss;
  for (size_t i = 0; i < m.classes.size(); ++i) {
    report::ClassStats cs;
    cs.cls = m.classes[i];
    if (cs.cls < static_cast<int64_t>(data->class_names.size()))
      cs.name = data->class_names[cs.cls];
    cs.accuracy = cs.recall = m.per_class_accuracy[i];
    cs.precision = m.per_class_precision[i];
    s.per_class.push_back(cs);
  }
  return s;
}

std::string safe_file_name(const std::string& name) {
  std::string out;
  for (char c : name) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out.empty() ? "model" : out;
}

// Saves the checkpoint and the requested exports; returns artifact paths relative to dir.
std::map<std::string, std::string> write_artifacts(const ir::Graph& g, const std::string& name, const std::string& dir,
                                                   const std::vector<std::string>& exports) {
  std::map<std::string, std::string> artifacts;
  fs::create_directories(fs::path(dir) / "models");
  std::string base = "models/" + safe_file_name(name);
  io::save_sqz(g, (fs::path(dir) / (base + ".sqz")).string());
  artifacts["checkpoint"] = base + ".sqz";
  for (const auto& format : exports) {
    std::string rel = base + deploy::export_extension(format);
    deploy::export_model(g, format, (fs::path(dir) / rel).string());
    artifacts[format] = rel;
  }
  return artifacts;
}

struct PreparedStage {
  const StageSpec* spec;
  std::unique_ptr<compress::Pass> pass;
  // The stage's fine-tuning with the method's distillation folded in (method distill).
  std::optional<train::TrainOptions> finetune;
  const ir::Graph* teacher = nullptr;  // set when finetune->distill: the baseline or a loaded model
};

// A distillation teacher other than the baseline: loaded (ONNX, checkpoint) or built (zoo) once
// per distinct spec, trained first when it is a zoo model.
struct Teacher {
  ir::Graph graph;
  std::shared_ptr<const train::TrainOptions> train;
  bool trained = false;
};

std::string teacher_key(const train::DistillOptions& d) {
  std::string key = d.teacher->describe();
  if (const auto& t = d.teacher_train)
    key += msg("|", t->epochs, "|", t->optimizer, "|", t->lr, "|", t->schedule, "|", t->weight_decay, "|",
               t->max_steps, "|", t->label_smoothing);
  return key;
}

}  // namespace

report::ModelStats static_stats(const ir::Graph& graph) {
  report::ModelStats s;
  s.params = graph.num_params();
  s.nonzero_params = graph.num_nonzero_params();
  s.size_bytes = io::stored_size_bytes(graph);
  s.flops = ir::graph_flops(graph);
  return s;
}

ir::Graph build_model(const ModelSpec& spec, const data::Splits* data, uint64_t seed) {
  if (!spec.zoo.empty()) {
    auto params = spec.params;
    if (data) models::fill_params_from_data(spec.zoo, params, data->sample_shape, data->num_classes);
    return models::build(spec.zoo, params, seed);
  }
  ir::Graph g = io::load_model(!spec.onnx.empty() ? spec.onnx : spec.checkpoint, seed);
  return g;
}

report::Report run_workflow(const WorkflowConfig& config, const RunOptions& options) {
  auto t_start = std::chrono::steady_clock::now();
  env::check_blas();
  env::set_threads(static_cast<int>(config.threads));
  env::keep_freed_memory();
  at::manual_seed(config.seed);
  std::string out_dir = options.out_dir.empty() ? config.output.dir : options.out_dir;

  // Validate everything a run needs before any training: stage parameters, exports, pipeline.
  if (config.pipeline)
    throw UnsupportedError(msg("pipeline: type '", config.pipeline->has("type") ? config.pipeline->raw("type")->text() : "?",
                               "' is not available in this build yet (use experiments without a pipeline)"));
  for (const auto& format : config.output.exports) deploy::check_export_format(format, "output.export");
  std::vector<std::vector<PreparedStage>> prepared;
  for (const auto& exp : config.experiments) {
    std::vector<PreparedStage> stages;
    for (const auto& stage : exp.stages) {
      const compress::MethodInfo* method = compress::find_method(stage.method);
      if (!method)
        throw ConfigError(msg("experiment '", exp.name, "': unknown method '", stage.method, "' (valid: ",
                              join(compress::method_names(), ", "), ")"));
      auto params = stage.params ? stage.params->clone() : std::make_shared<Params>();
      PreparedStage ps{&stage, method->make(*params), stage.finetune, nullptr};
      if (ps.pass->finetune_hook() && !stage.finetune)
        throw ConfigError(msg("experiment '", exp.name, "', stage ", stage.method,
                              ": a gradual schedule needs fine-tuning (add finetune: {epochs: N})"));
      if (const train::DistillOptions* d = ps.pass->distill_options()) {
        if (!stage.finetune)
          throw ConfigError(msg("experiment '", exp.name, "', stage ", stage.method,
                                ": distillation trains the student during the stage's fine-tuning; add "
                                "finetune: {epochs: N}"));
        if (stage.finetune->distill)
          throw ConfigError(msg("experiment '", exp.name, "', stage ", stage.method,
                                ": the method already distills; give its settings in params, not also in "
                                "finetune.distill"));
        ps.finetune->distill = std::make_shared<const train::DistillOptions>(*d);
      }
      if (stage.finetune && !config.data)
        throw ConfigError(msg("experiment '", exp.name, "', stage ", stage.method,
                              ": fine-tuning needs a data: block"));
      stages.push_back(std::move(ps));
    }
    prepared.push_back(std::move(stages));
  }
  if (config.baseline_train && !config.data) throw ConfigError("baseline.train needs a data: block");

  // Data and model.
  std::optional<data::Splits> splits;
  int64_t batch_size = 128;
  if (config.data) {
    auto t0 = std::chrono::steady_clock::now();
    splits = data::load(*config.data, config.seed);
    batch_size = config.data->batch_size;
    log::info("data: ", splits->description, " (", seconds_since(t0), " s)");
  }
  const data::Splits* data_ptr = splits ? &*splits : nullptr;
  ir::Graph baseline = build_model(config.model, data_ptr, config.seed);
  log::info("model: ", baseline.name, ", ", with_commas(baseline.num_params()), " parameters, ",
            with_commas(ir::graph_flops(baseline)), " FLOPs per sample");
  // Labels only need to be valid outputs of the model; the data may hold a few of its classes.
  // Checked on every split now, before any training, when the output width is known statically.
  if (splits) {
    const int64_t k = train::output_classes(baseline);
    if (k > 0) {
      train::check_labels(splits->train, k, "data: the training split");
      train::check_labels(splits->val, k, "data: the validation split");
      train::check_labels(splits->test, k, "data: the test split");
    }
  }

  // Distillation teachers, loaded and checked against their students before any training.
  std::map<std::string, std::unique_ptr<Teacher>> teachers;
  for (auto& stages : prepared) {
    // The student each stage trains, as far as it is known before running: the baseline until a
    // stage swaps in a new zoo student (later stages may rename layers; checked again then).
    std::optional<ir::Graph> student_now;
    for (auto& ps : stages) {
      if (auto* dp = dynamic_cast<compress::Distill*>(ps.pass.get())) {
        if (auto s = dp->make_student(data_ptr, config.seed)) student_now = std::move(*s);
      }
      if (!ps.finetune || !ps.finetune->distill) continue;
      const train::DistillOptions& d = *ps.finetune->distill;
      if (!d.teacher) {
        ps.teacher = &baseline;
      } else {
        auto& slot = teachers[teacher_key(d)];
        if (!slot) {
          slot = std::make_unique<Teacher>();
          try {
            slot->graph = build_model(*d.teacher, data_ptr, config.seed);
          } catch (const ConfigError& e) {
            throw ConfigError(msg(d.key_path, ".teacher: ", e.what()));
          } catch (const InputError& e) {
            throw InputError(msg(d.key_path, ".teacher: ", e.what()));
          }
          slot->train = d.teacher_train;
        }
        ps.teacher = &slot->graph;
      }
      train::check_distill_pair(*ps.teacher, student_now ? *student_now : baseline, d);
    }
  }

  report::Report rep;
  rep.squeeze_version = SQUEEZE_VERSION;
  rep.config = config.tree;
  rep.config_text = config.source_text;
  std::string effective = config.source_text;
  for (const auto& o : options.overrides) effective += "\n# --set " + o;
  rep.config_hash = fnv1a_hex(effective);
  rep.model_name = baseline.name;
  rep.data_description = splits ? splits->description : "none";
  fs::create_directories(out_dir);
  write_text_atomic((fs::path(out_dir) / "config.yaml").string(), effective + "\n");

  int64_t baseline_steps = 0;
  if (config.baseline_train) {
    log::info("baseline: training ", config.baseline_train->epochs, " epochs");
    baseline_steps =
        train::fit(baseline, *splits, *config.baseline_train, batch_size, config.seed).steps;
  }
  for (auto& [key, t] : teachers) {
    if (!t->train || t->trained) continue;
    log::info("teacher ", key.substr(0, key.find('|')), ": training ", t->train->epochs, " epochs");
    train::fit(t->graph, *splits, *t->train, batch_size, config.seed);
    t->trained = true;
  }
  rep.baseline = evaluated_stats(baseline, data_ptr, batch_size);
  if (rep.baseline.evaluated) log::info("baseline: test accuracy ", rep.baseline.accuracy);
  // A zoo model starts from random weights: without training, every accuracy and drop in the
  // report is measured against chance, which reads like a result unless it is said loudly.
  if (!config.model.zoo.empty() && baseline_steps == 0) {
    std::string w =
        msg("the baseline zoo:", config.model.zoo, " is untrained (random weights",
            config.baseline_train ? ", baseline.train ran no step" : ", no baseline.train", ")");
    if (rep.baseline.evaluated)
      w += msg(": its test accuracy ", std::round(rep.baseline.accuracy * 10000.0) / 100.0,
               "% is that of random weights, and every accuracy drop below compares against it");
    w += "; add baseline: {train: {epochs: N}} or start from a trained model (model: {onnx: ...} "
         "or {checkpoint: ...})";
    log::warn(w);
    rep.warnings.push_back(w);
  }
  rep.baseline_artifacts = write_artifacts(baseline, "baseline", out_dir, config.output.exports);

  std::vector<ir::Graph> compressed;
  for (size_t e = 0; e < config.experiments.size(); ++e) {
    const ExperimentSpec& exp = config.experiments[e];
    auto t_exp = std::chrono::steady_clock::now();
    log::info("experiment '", exp.name, "'");
    report::ExperimentResult res;
    res.name = exp.name;
    ir::Graph g = baseline.clone();
    for (size_t si = 0; si < prepared[e].size(); ++si) {
      PreparedStage& ps = prepared[e][si];
      auto t_stage = std::chrono::steady_clock::now();
      compress::PassContext ctx;
      ctx.data = data_ptr;
      ctx.batch_size = batch_size;
      ctx.seed = config.seed;
      ctx.finetune = ps.finetune ? &*ps.finetune : nullptr;
      compress::PassResult pr = ps.pass->run(g, ctx);
      g = std::move(pr.graph);
      ir::verify(g);
      log::info("  ", ps.spec->method, ": ", pr.summary);
      report::StageRecord rec;
      if (ps.finetune) {
        const train::DistillOptions* d = ps.finetune->distill.get();
        log::info("  fine-tuning ", ps.finetune->epochs, " epochs", d ? ", distilling from " + d->describe() : "");
        // The same seed for the same stage position in every experiment, so that experiments
        // differing in one setting see the same batches (a fair comparison).
        train::TrainResult tr = train::fit(g, *splits, *ps.finetune, batch_size, config.seed + 1 + si,
                                           ps.pass->finetune_hook(), ps.teacher);
        rec.finetune_steps = tr.steps;
        rec.step_ms = tr.steps > 0 ? 1000.0 * tr.step_seconds / double(tr.steps) : 0.0;
        if (d) {
          rec.teacher = d->describe();
          rec.teacher_ms_per_step = tr.steps > 0 ? 1000.0 * tr.teacher_seconds / double(tr.steps) : 0.0;
          if (!d->needs_teacher()) rec.teacher += "; alpha 0 and no features: teacher not run";
          log::info("  distillation: teacher forward ", rec.teacher_ms_per_step, " ms of ", rec.step_ms,
                    " ms per step");
        }
      }
      ps.pass->finalize(g);
      ir::verify(g);
      report::ModelStats st = evaluated_stats(g, data_ptr, batch_size);
      rec.stage = ps.spec->method;
      rec.summary = pr.summary;
      rec.evaluated = st.evaluated;
      rec.accuracy = st.accuracy;
      rec.params = st.params;
      rec.nonzero_params = st.nonzero_params;
      rec.size_bytes = st.size_bytes;
      rec.flops = st.flops;
      rec.seconds = seconds_since(t_stage);
      res.stages.push_back(rec.stage);
      res.history.push_back(rec);
      if (st.evaluated) log::info("  after ", rec.stage, ": test accuracy ", st.accuracy, ", size ", human_bytes(double(st.size_bytes)));
    }
    res.stats = evaluated_stats(g, data_ptr, batch_size);
    res.accuracy_drop = rep.baseline.accuracy - res.stats.accuracy;
    auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
    res.compression_ratio = ratio(double(rep.baseline.size_bytes), double(res.stats.size_bytes));
    res.param_ratio = ratio(double(rep.baseline.nonzero_params), double(res.stats.nonzero_params));
    res.flops_ratio = ratio(double(rep.baseline.flops), double(res.stats.flops));
    res.artifacts = write_artifacts(g, exp.name, out_dir, config.output.exports);
    res.seconds = seconds_since(t_exp);
    rep.results.push_back(std::move(res));
    compressed.push_back(std::move(g));
  }

  if (config.output.latency) {
    std::vector<const ir::Graph*> graphs{&baseline};
    for (const auto& g : compressed) graphs.push_back(&g);
    for (int64_t batch : config.output.latency_batches) {
      auto stats = deploy::measure_latency(graphs, batch);
      std::string key = "batch" + std::to_string(batch);
      rep.baseline.latency_us[key] = stats[0].median_us;
      for (size_t i = 0; i < rep.results.size(); ++i) {
        rep.results[i].stats.latency_us[key] = stats[i + 1].median_us;
        rep.results[i].speedup[key] = stats[i + 1].median_us > 0 ? stats[0].median_us / stats[i + 1].median_us : 0.0;
      }
    }
  }

  rep.environment = report::environment();
  rep.seconds = seconds_since(t_start);
  report::write_report(rep, out_dir);
  return rep;
}

}  // namespace squeeze::pipeline
