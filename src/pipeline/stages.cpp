#include "squeeze/report/fpga_json.h"
#include "squeeze/pipeline/stages.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cctype>
#include <cmath>
#include <exception>
#include <filesystem>

#include "squeeze/compress/distill/distill.h"
#include "squeeze/deploy/export.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/io/model_io.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/ops.h"
#include "squeeze/pipeline/study.h"
#include "squeeze/train/distill.h"
#include "squeeze/train/distributed.h"
#include "squeeze/train/hep_metrics.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/env.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::pipeline {

namespace fs = std::filesystem;

// A distillation teacher other than the baseline: loaded (ONNX, checkpoint) or built (zoo) once
// per distinct spec, trained first when it is a zoo model.
struct Workspace::Teacher {
  ir::Graph graph;
  std::shared_ptr<const train::TrainOptions> train;
  bool trained = false;
};

namespace {

std::string teacher_key(const train::DistillOptions& d) {
  std::string key = d.teacher->describe();
  if (const auto& t = d.teacher_train)
    key += msg("|", t->epochs, "|", t->optimizer, "|", t->lr, "|", t->schedule, "|",
               t->weight_decay, "|", t->max_steps, "|", t->label_smoothing);
  return key;
}

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

std::vector<report::EpochPoint> curve_of(const train::TrainResult& tr, bool has_val) {
  std::vector<report::EpochPoint> out;
  for (const auto& e : tr.epochs) {
    report::EpochPoint p;
    p.epoch = e.epoch;
    p.train_loss = e.train_loss;
    p.train_accuracy = e.train_accuracy;
    p.has_val = has_val;
    p.val_loss = e.val_loss;
    p.val_accuracy = e.val_accuracy;
    out.push_back(p);
  }
  return out;
}

// Samples that cannot enter the model are a config error, found before anything trains; for
// images the message says which transform would make them fit.
void check_input_shape(const ir::Graph& g, const data::Splits& d) {
  if (g.inputs.size() != 1) return;
  const ir::Shape& in = g.inputs[0].shape;
  const std::vector<int64_t>& s = d.sample_shape;
  bool ok = in.size() == s.size() + 1;
  for (size_t i = 0; ok && i < s.size(); ++i) ok = in[i + 1] == ir::kDynamic || in[i + 1] == s[i];
  if (ok) return;
  ir::Shape have{ir::kDynamic};
  have.insert(have.end(), s.begin(), s.end());
  std::string hint;
  if (in.size() == 4 && (s.size() == 3 || s.size() == 2)) {
    const int64_t c = s.size() == 3 ? s[0] : 1, h = s[s.size() - 2], w = s.back();
    std::vector<std::string> fix;
    if (in[1] != ir::kDynamic && in[1] != c) fix.push_back(msg("channels: ", in[1]));
    if ((in[2] != ir::kDynamic && in[2] != h) || (in[3] != ir::kDynamic && in[3] != w))
      fix.push_back(msg("resize: [", in[2] == ir::kDynamic ? h : in[2], ", ",
                        in[3] == ir::kDynamic ? w : in[3], "]"));
    if (!fix.empty()) hint = "; add " + join(fix, " and ") + " to the data: block";
  }
  throw ConfigError(msg("data: the samples have shape ", ir::shape_str(have), " but the model (",
                        g.name, ") takes ", ir::shape_str(in), hint));
}

}  // namespace

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

report::ModelStats evaluated_stats(ir::Graph& g, const data::Splits* data, int64_t batch_size,
                                   bool hep) {
  report::ModelStats s = static_stats(g);
  if (!data || data->test.size() == 0) return s;
  std::vector<float> probs;
  train::Metrics m = train::evaluate(g, data->test, std::max<int64_t>(batch_size, 256),
                                     hep ? &probs : nullptr);
  if (hep) {
    const at::Tensor y = data->test.y.contiguous();
    s.hep = train::hep_metrics(probs, m.num_outputs,
                               std::vector<int64_t>(y.data_ptr<int64_t>(),
                                                    y.data_ptr<int64_t>() + y.numel()));
  }
  s.evaluated = true;
  s.accuracy = m.accuracy;
  s.loss = m.loss;
  s.num_classes = m.num_outputs;
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
  for (char c : name)
    out +=
        (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  // No ".", "..", or hidden file: a name from a config or a model never leaves its folder.
  if (!out.empty() && out[0] == '.') out[0] = '_';
  return out.empty() ? "model" : out;
}

std::string Workspace::inside_output(const std::string& relative, const std::string& key) const {
  const fs::path p(relative);
  bool escapes = relative.empty() || p.is_absolute();
  for (const auto& part : p) escapes = escapes || part == "..";
  if (escapes)
    throw ConfigError(msg(key, ": '", relative, "' must be a file name inside the output folder ",
                          "(relative, without '..'; e.g. sensitivity.csv is written to ",
                          (fs::path(out_dir_) / "sensitivity.csv").string(), ")"));
  return (fs::path(out_dir_) / p).string();
}

std::map<std::string, std::string> write_artifacts(const ir::Graph& g, const std::string& name,
                                                   const std::string& dir,
                                                   const std::vector<std::string>& exports) {
  std::map<std::string, std::string> artifacts;
  // Data-parallel ranks other than 0 name the artifacts rank 0 writes, and write nothing.
  const bool write = dist::writes();
  if (write) fs::create_directories(fs::path(dir) / "models");
  std::string base = "models/" + safe_file_name(name);
  if (write) io::save_sqz(g, (fs::path(dir) / (base + ".sqz")).string());
  artifacts["checkpoint"] = base + ".sqz";
  for (const auto& format : exports) {
    std::string rel = base + deploy::export_extension(format);
    if (write) deploy::export_model(g, format, (fs::path(dir) / rel).string());
    artifacts[format] = rel;
  }
  return artifacts;
}

Workspace::Workspace(const WorkflowConfig& config, const RunOptions& options)
    : config_(config), options_(options), started_(std::chrono::steady_clock::now()) {
  env::check_blas();
  env::set_threads(static_cast<int>(config.threads));
  env::keep_freed_memory();
  at::manual_seed(config.seed);
  out_dir_ = options.out_dir.empty() ? config.output.dir : options.out_dir;
  for (const auto& format : config.output.exports)
    deploy::check_export_format(format, "output.export");
  if (config.baseline_train && !config.data)
    throw ConfigError("baseline.train needs a data: block");
  if (options.check_only) return;
  // Data-parallel runs: rank 0 writes every file; the other ranks run the same workflow (the
  // same passes and fine-tunings, so that their collectives pair up) and write nothing.
  if (dist::active() && config.pipeline)
    throw ConfigError(msg("pipeline.type: ", config.pipeline->type,
                          " runs in one process; data-parallel runs (--nproc, --world-size) "
                          "take experiments workflows",
                          config.pipeline->autotune ? " (autotune spreads over processes with --worker)" : ""));
  // The lines logged from here on go to DIR/run.log too, once start() creates the folder.
  if (dist::writes()) log_file_ = std::make_unique<log::FileSink>();
  // The autotune pipeline keeps its own journal, the study.
  if (!(config.pipeline && config.pipeline->autotune))
    state_ = std::make_unique<RunState>(out_dir_, config, options.overrides,
                                        options.resume  ? RunState::Mode::kResume
                                        : options.force ? RunState::Mode::kForce
                                                        : RunState::Mode::kFresh,
                                        dist::writes());
  // Before the data and the model are loaded: a folder that cannot be written fails now, not
  // after the training (rank 0 alone writes in data-parallel runs).
  if (dist::writes()) check_output_folder(out_dir_, options.out_dir.empty() ? "output.dir" : "--out");
}

const report::JournalUnit* Workspace::finished(const std::string& key) const {
  return state_ ? state_->find(key) : nullptr;
}

ir::Graph Workspace::restore(const report::JournalUnit& unit) const {
  SQZ_ASSERT(state_, "restore without a run journal");
  return state_->load(unit);
}

void Workspace::record(report::JournalUnit unit, ir::Graph* g) {
  if (!state_) return;
  if (g) {
    const bool own_checkpoint = unit.checkpoint.empty();
    if (own_checkpoint) {
      std::string rel = "state";
      for (size_t a = 0, b; a <= unit.key.size(); a = b + 1) {
        b = std::min(unit.key.find('/', a), unit.key.size());
        rel += "/" + safe_file_name(unit.key.substr(a, b - a));
      }
      unit.checkpoint = rel + ".sqz";
    }
    // The writer's artifacts (unit.checkpoint given) are written by then; a reader writes each
    // checkpoint it reloads into its private folder, so it reloads what rank 0 reloads.
    if (own_checkpoint || !state_->writer()) {
      const std::string p = state_->checkpoint_path(unit.checkpoint);
      fs::create_directories(fs::path(p).parent_path());
      io::save_sqz(*g, p);
    }
    // What follows starts from the checkpoint, as it does after a resume (a mask is recovered
    // from the zeros of its weight, DESIGN.md section 6).
    *g = state_->load(unit);
  }
  state_->record(std::move(unit));
}

report::StageRecord Workspace::run_stage(const std::string& key, ir::Graph& g, PreparedStage& ps,
                                         size_t position) {
  if (const report::JournalUnit* done = finished(key)) {
    g = restore(*done);
    log::info("  ", ps.spec->method, ": finished by an earlier run, loaded (", done->checkpoint,
              ")");
    return done->stages.at(0);
  }
  report::StageRecord rec = run_stage(g, ps, position);
  report::JournalUnit unit;
  unit.key = key;
  unit.stages = {rec};
  record(std::move(unit), &g);
  return rec;
}

Workspace::~Workspace() {
  // Unwinding from an interrupt or an error: say so in run.log (the CLI prints the error itself).
  // (start() has run when the report has its version.)
  if (std::uncaught_exceptions() > 0 && state_ && log_file_ && !report_.squeeze_version.empty())
    log::info("run stopped before it finished (interrupted or failed); the finished units are kept "
              "in ", state_->path("run.json"), ", and squeeze run CONFIG --resume continues it");
}

std::vector<PreparedStage> Workspace::prepare(const std::vector<StageSpec>& specs,
                                              const std::string& owner) const {
  std::vector<const StageSpec*> ptrs;
  for (const auto& s : specs) ptrs.push_back(&s);
  return prepare(ptrs, owner);
}

std::vector<PreparedStage> Workspace::prepare(const std::vector<const StageSpec*>& specs,
                                              const std::string& owner) const {
  std::vector<PreparedStage> stages;
  for (const StageSpec* spec : specs) {
    const StageSpec& stage = *spec;
    const compress::MethodInfo* method = compress::find_method(stage.method);
    if (!method)
      throw ConfigError(msg(owner, ": unknown method '", stage.method,
                            "' (valid: ", join(compress::method_names(), ", "), ")"));
    auto params = stage.params ? stage.params->clone() : std::make_shared<Params>();
    // A file a method writes (quantize's sensitivity_out) goes into the output folder, so that a
    // config from elsewhere cannot make squeeze overwrite a file outside it.
    if (const Value* v = params->raw("sensitivity_out");
        v && v->kind() == Value::Kind::kScalar)
      params->set("sensitivity_out",
                  Value::scalar(inside_output(v->text(), params->key_path("sensitivity_out")), true));
    PreparedStage ps{&stage, method->make(*params), stage.finetune, nullptr, nullptr};
    if (ps.pass->finetune_hook() && !stage.finetune)
      throw ConfigError(msg(owner, ", stage ", stage.method,
                            ": a gradual schedule needs fine-tuning (add finetune: {epochs: N})"));
    if (const train::DistillOptions* d = ps.pass->distill_options()) {
      if (!stage.finetune)
        throw ConfigError(
            msg(owner, ", stage ", stage.method,
                ": distillation trains the student during the stage's fine-tuning; add "
                "finetune: {epochs: N}"));
      if (stage.finetune->distill)
        throw ConfigError(
            msg(owner, ", stage ", stage.method,
                ": the method already distills; give its settings in params, not also in "
                "finetune.distill"));
      ps.finetune->distill = std::make_shared<const train::DistillOptions>(*d);
    }
    if (stage.finetune && !config_.data)
      throw ConfigError(msg(owner, ", stage ", stage.method, ": fine-tuning needs a data: block"));
    stages.push_back(std::move(ps));
  }
  return stages;
}

void Workspace::load() {
  if (config_.data) {
    auto t0 = std::chrono::steady_clock::now();
    splits_ = data::load(*config_.data, config_.seed);
    batch_size_ = config_.data->batch_size;
    log::info("data: ", splits_->description, " (", seconds_since(t0), " s)");
  }
  if (config_.baseline_checkpoint.empty()) {
    baseline_ = build_model(config_.model, data(), config_.seed);
  } else {
    baseline_ = load_baseline_checkpoint();
  }
  if (splits_ && splits_->transform) {
    // The input pipeline travels with the model (checkpoints, exports' metadata), so that
    // `squeeze infer` and `squeeze eval` apply it to raw samples.
    for (const auto& [k, v] : splits_->transform->to_metadata()) baseline_.metadata[k] = v;
    log::info("data: input transform ", splits_->transform->describe());
  }
  // The class names travel with the model too: eval maps a data file's names onto its outputs.
  if (splits_)
    for (const auto& [k, v] : data::class_names_metadata(splits_->class_names))
      baseline_.metadata[k] = v;
  if (splits_) check_input_shape(baseline_, *splits_);
  // output.fpga on a model the cost model does not cover is refused before anything trains.
  if (config_.output.fpga) fpga_estimate(baseline_);
  log::info("model: ", baseline_.name, ", ", with_commas(baseline_.num_params()), " parameters, ",
            with_commas(ir::graph_flops(baseline_)), " FLOPs per sample");
  // Labels only need to be valid outputs of the model; the data may hold a few of its classes.
  // Checked on every split now, before any training, when the output width is known statically.
  if (splits_) {
    const int64_t k = train::output_classes(baseline_);
    if (k > 0) {
      train::check_labels(splits_->train, k, "data: the training split");
      train::check_labels(splits_->val, k, "data: the validation split");
      train::check_labels(splits_->test, k, "data: the test split");
    }
  }
}

// baseline: {checkpoint: PATH}: a baseline trained before (by another run, say), checked against
// the data and against model: when that is given too.
ir::Graph Workspace::load_baseline_checkpoint() const {
  const std::string& path = config_.baseline_checkpoint;
  if (!fs::exists(path))
    throw InputError(msg("baseline.checkpoint: '", path,
                         "' does not exist (give the .sqz or .onnx file of a trained baseline, e.g. "
                         "runs/x/models/baseline.sqz)"));
  ir::Graph g;
  try {
    g = io::load_model(path, config_.seed);
  } catch (const InputError& e) {
    throw InputError(msg("baseline.checkpoint: ", e.what()));
  }
  ir::verify(g);
  auto sample = [](const ir::Graph& m) {
    if (m.inputs.size() != 1) return ir::Shape{};
    return ir::Shape(m.inputs[0].shape.begin() + 1, m.inputs[0].shape.end());
  };
  auto same = [](const ir::Shape& a, const ir::Shape& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i] > 0 && b[i] > 0 && a[i] != b[i]) return false;
    return true;
  };
  if (splits_ && g.inputs.size() == 1 && !same(sample(g), splits_->sample_shape))
    throw ConfigError(msg("baseline.checkpoint: ", path, " takes samples of shape ",
                          ir::shape_str(sample(g)), " but the data's are ",
                          ir::shape_str(splits_->sample_shape), " (", splits_->description,
                          "); give the baseline trained on this data"));
  if (config_.model_given) {
    // model: says what the baseline is; the checkpoint must be that model, trained.
    ir::Graph m = build_model(config_.model, data(), config_.seed);
    const int64_t km = train::output_classes(m), kg = train::output_classes(g);
    if (!same(sample(m), sample(g)) || km != kg)
      throw ConfigError(msg("baseline.checkpoint: ", path, " (input ", ir::shape_str(sample(g)),
                            ", ", kg, " classes) is not the model: block's model (input ",
                            ir::shape_str(sample(m)), ", ", km,
                            " classes); give its trained checkpoint, or leave model: out"));
  }
  return g;
}

void Workspace::attach_teachers(std::vector<PreparedStage>& stages) {
  // The student each stage trains, as far as it is known before running: the baseline until a
  // stage swaps in a new zoo student (later stages may rename layers; checked again then).
  std::optional<ir::Graph> student_now;
  for (auto& ps : stages) {
    if (auto* dp = dynamic_cast<compress::Distill*>(ps.pass.get())) {
      if (auto s = dp->make_student(data(), config_.seed)) student_now = std::move(*s);
    }
    if (!ps.finetune || !ps.finetune->distill) continue;
    const train::DistillOptions& d = *ps.finetune->distill;
    if (!d.teacher) {
      ps.teacher = &baseline_;
    } else {
      auto& slot = teachers_[teacher_key(d)];
      if (!slot) {
        auto t = std::make_unique<Teacher>();
        try {
          t->graph = build_model(*d.teacher, data(), config_.seed, d.key_path + ".teacher");
        } catch (const ConfigError& e) {
          throw ConfigError(msg(d.key_path, ".teacher: ", e.what()));
        } catch (const InputError& e) {
          throw InputError(msg(d.key_path, ".teacher: ", e.what()));
        }
        t->train = d.teacher_train;
        slot = std::move(t);
      }
      ps.teacher = &slot->graph;
    }
    train::check_distill_pair(*ps.teacher, student_now ? *student_now : baseline_, d);
  }
}

void Workspace::start() {
  if (options_.check_only) throw ChecksPassed{};
  report::Report& rep = report_;
  rep.squeeze_version = SQUEEZE_VERSION;
  rep.config = config_.tree;
  std::string effective = config_.source_text;
  for (const auto& o : options_.overrides) effective += "\n# --set " + o;
  rep.config_hash = fnv1a_hex(effective);
  // A study URL may carry a password: the copies written out show "***" in its place.
  rep.config_text = hide_passwords(config_.source_text);
  effective = hide_passwords(effective);
  rep.model_name = baseline_.name;
  rep.data_description = splits_ ? splits_->description : "none";
  if (splits_) rep.class_names = splits_->class_names;
  rep.recommend = config_.output.recommend;
  if (state_) state_->begin();
  if (dist::writes()) fs::create_directories(out_dir_);
  if (log_file_)
    log_file_->open((fs::path(out_dir_) / "run.log").string(),
                    msg("== squeeze ", SQUEEZE_VERSION, ": ",
                        state_ && state_->resuming()
                            ? msg("run resumed (run ", state_->run_number(), " of this folder)")
                            : std::string("run started"),
                        " ==", state_ && !state_->resuming() && options_.force
                                   ? " (--force: the previous run's files were removed)"
                                   : ""));
  if (dist::writes())
    write_text_atomic((fs::path(out_dir_) / "config.yaml").string(), effective + "\n");

  // Each training seeds the global generator (dropout) from its own seed, so that what it does
  // does not depend on the trainings before it: a resumed run skips those.
  size_t teacher_number = 0;
  for (auto& [key, t] : teachers_) {
    if (!t->train || t->trained) continue;
    const std::string unit_key = msg("teacher/", teacher_number++);
    if (const report::JournalUnit* done = finished(unit_key)) {
      t->graph = restore(*done);
      log::info("teacher ", key.substr(0, key.find('|')), ": trained by an earlier run, loaded");
    } else {
      log::info("teacher ", key.substr(0, key.find('|')), ": training ", t->train->epochs,
                " epochs");
      at::manual_seed(config_.seed);
      train::fit(t->graph, *splits_, *t->train, batch_size_, config_.seed);
      report::JournalUnit unit;
      unit.key = unit_key;
      record(std::move(unit), &t->graph);
    }
    t->trained = true;
  }
  if (const report::JournalUnit* done = finished("baseline")) {
    baseline_ = restore(*done);
    rep.baseline = *done->stats;
    rep.baseline_curve = done->curve;
    rep.baseline_artifacts = done->artifacts;
    rep.warnings = done->warnings;
    log::info("baseline: finished by an earlier run, loaded (", done->checkpoint, ")");
    if (rep.baseline.evaluated) log::info("baseline: test accuracy ", rep.baseline.accuracy);
    return;
  }
  int64_t baseline_steps = 0;
  if (config_.baseline_train) {
    log::info("baseline: training ", config_.baseline_train->epochs, " epochs");
    at::manual_seed(config_.seed);
    train::TrainResult tr =
        train::fit(baseline_, *splits_, *config_.baseline_train, batch_size_, config_.seed);
    baseline_steps = tr.steps;
    rep.baseline_curve = curve_of(tr, has_validation());
  }
  rep.baseline = evaluated_stats(baseline_, data(), batch_size_, config_.output.hep());
  if (rep.baseline.evaluated) log::info("baseline: test accuracy ", rep.baseline.accuracy);
  // A zoo model starts from random weights: without training, every accuracy and drop in the
  // report is measured against chance, which reads like a result unless it is said loudly.
  if (!config_.model.zoo.empty() && baseline_steps == 0 && config_.baseline_checkpoint.empty()) {
    std::string w =
        msg("the baseline zoo:", config_.model.zoo, " is untrained (random weights",
            config_.baseline_train ? ", baseline.train ran no step" : ", no baseline.train", ")");
    if (rep.baseline.evaluated)
      w += msg(": its test accuracy ", std::round(rep.baseline.accuracy * 10000.0) / 100.0,
               "% is that of random weights, and every accuracy drop below compares against it");
    w += "; add baseline: {train: {epochs: N}} or start from a trained model (model: {onnx: ...} "
         "or {checkpoint: ...})";
    log::warn(w);
    rep.warnings.push_back(w);
  }
  rep.baseline_artifacts = write_artifacts(baseline_, "baseline", out_dir_, config_.output.exports);
  report::JournalUnit unit;
  unit.key = "baseline";
  unit.checkpoint = rep.baseline_artifacts.at("checkpoint");
  unit.stats = rep.baseline;
  unit.curve = rep.baseline_curve;
  unit.artifacts = rep.baseline_artifacts;
  unit.warnings = rep.warnings;
  record(std::move(unit), &baseline_);
}

report::StageRecord Workspace::run_stage(ir::Graph& g, PreparedStage& ps, size_t position) {
  return *stage(g, ps, position, false, nullptr);
}

std::optional<report::StageRecord> Workspace::try_stage(ir::Graph& g, PreparedStage& ps,
                                                        size_t position, std::string* summary) {
  return stage(g, ps, position, true, summary);
}

std::optional<report::StageRecord> Workspace::stage(ir::Graph& g, PreparedStage& ps,
                                                    size_t position, bool skip_unchanged,
                                                    std::string* summary) {
  auto t_stage = std::chrono::steady_clock::now();
  compress::PassContext ctx;
  ctx.data = data();
  ctx.batch_size = batch_size_;
  ctx.seed = config_.seed;
  ctx.finetune = ps.finetune ? &*ps.finetune : nullptr;
  compress::PassResult pr = ps.pass->run(g, ctx);
  if (summary) *summary = pr.summary;
  if (skip_unchanged && !pr.changed && !ps.pass->distill_options()) {
    log::info("  ", ps.spec->method, ": ", pr.summary, " (skipped)");
    return std::nullopt;
  }
  g = std::move(pr.graph);
  ir::verify(g);
  log::info("  ", ps.spec->method, ": ", pr.summary);
  report::StageRecord rec;
  if (ps.finetune && splits_ && splits_->test.size() > 0) {
    // What the pass alone kept, before fine-tuning recovers it (reported, never compared).
    rec.accuracy_before_finetune =
        train::evaluate(g, splits_->test, std::max<int64_t>(batch_size_, 256)).accuracy;
    rec.evaluated_before_finetune = true;
    log::info("  after ", ps.spec->method, ", before fine-tuning: test accuracy ",
              rec.accuracy_before_finetune);
  }
  if (ps.finetune) {
    const train::DistillOptions* d = ps.finetune->distill.get();
    log::info("  fine-tuning ", ps.finetune->epochs, " epochs",
              d ? ", distilling from " + d->describe() : "");
    // The same seed for the same stage position in every run, so that runs differing in one
    // setting see the same batches (a fair comparison).
    train::TrainResult tr =
        train::fit(g, *splits_, *ps.finetune, batch_size_, config_.seed + 1 + position,
                   ps.pass->finetune_hook(), ps.teacher, ps.on_epoch);
    rec.finetune_steps = tr.steps;
    rec.curve = curve_of(tr, has_validation());
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
  report::ModelStats st = evaluated_stats(g, data(), batch_size_, config_.output.hep());
  rec.stage = ps.spec->method;
  rec.summary = pr.summary;
  rec.figures = pr.figures;
  rec.evaluated = st.evaluated;
  rec.accuracy = st.accuracy;
  rec.params = st.params;
  rec.nonzero_params = st.nonzero_params;
  rec.size_bytes = st.size_bytes;
  rec.flops = st.flops;
  rec.seconds = seconds_since(t_stage);
  if (st.evaluated)
    log::info("  after ", rec.stage, ": test accuracy ", st.accuracy, ", size ",
              human_bytes(double(st.size_bytes)));
  return rec;
}

report::ExperimentResult Workspace::result(const std::string& name,
                                           const std::vector<report::StageRecord>& history,
                                           ir::Graph& g,
                                           std::chrono::steady_clock::time_point started) {
  report::ExperimentResult res;
  res.name = name;
  for (const auto& rec : history) res.stages.push_back(rec.stage);
  res.history = history;
  res.stats = evaluated_stats(g, data(), batch_size_, config_.output.hep());
  res.accuracy_drop = report_.baseline.accuracy - res.stats.accuracy;
  res.compression_ratio = ratio(double(report_.baseline.size_bytes), double(res.stats.size_bytes));
  res.param_ratio =
      ratio(double(report_.baseline.nonzero_params), double(res.stats.nonzero_params));
  res.flops_ratio = ratio(double(report_.baseline.flops), double(res.stats.flops));
  // A stage may put a new graph in place (a distillation student); it sees the same inputs.
  if (splits_ && splits_->transform)
    for (const auto& [k, v] : splits_->transform->to_metadata()) g.metadata[k] = v;
  if (splits_)
    for (const auto& [k, v] : data::class_names_metadata(splits_->class_names)) g.metadata[k] = v;
  res.artifacts = write_artifacts(g, name, out_dir_, config_.output.exports);
  res.seconds = seconds_since(started);
  return res;
}

// Every model's latency at each configured batch, interleaved with the baseline, at
// output.latency_threads; the spread of each figure and of each speedup goes into the report, and
// the report warns where a speedup is uncertain or a model is slower than the baseline.
void Workspace::measure_latencies(const std::vector<const ir::Graph*>& compressed) {
  report::Report& rep = report_;
  std::vector<const ir::Graph*> graphs{&baseline_};
  graphs.insert(graphs.end(), compressed.begin(), compressed.end());
  const int training_threads = at::get_num_threads();
  const int threads = env::set_threads(static_cast<int>(config_.output.latency_threads));
  deploy::LatencyOptions lo;
  report::LatencyMeasurement m;
  m.threads = threads;
  m.warmup = lo.warmup;
  m.budget_s = lo.budget_s;
  auto to_detail = [](const deploy::LatencyStats& s) {
    report::LatencyDetail d;
    d.median_us = s.median_us;
    d.p10_us = s.p10_us;
    d.p90_us = s.p90_us;
    d.spread = s.spread;
    d.runs = s.runs;
    d.speedup = s.speedup;
    d.speedup_p25 = s.speedup_p25;
    d.speedup_p75 = s.speedup_p75;
    d.median_lo_us = s.median_lo_us;
    d.median_hi_us = s.median_hi_us;
    d.speedup_lo = s.speedup_lo;
    d.speedup_hi = s.speedup_hi;
    // A speedup is judged by its own interval (per-round ratios cancel what both models share);
    // the baseline's figure by its median's.
    d.noisy = s.noisy || s.speedup_noisy;
    return d;
  };
  for (int64_t batch : config_.output.latency_batches) {
    auto stats = deploy::measure_latency(graphs, batch, lo);
    const std::string key = "batch" + std::to_string(batch);
    rep.baseline.latency_us[key] = stats[0].median_us;
    rep.baseline_latency[key] = to_detail(stats[0]);
    m.noisy |= stats[0].noisy;
    for (size_t i = 0; i < rep.results.size(); ++i) {
      const deploy::LatencyStats& s = stats[i + 1];
      report::ExperimentResult& res = rep.results[i];
      res.stats.latency_us[key] = s.median_us;
      res.speedup[key] = s.speedup;
      res.latency[key] = to_detail(s);
      res.latency[key].noisy = s.speedup_noisy;  // what the table shows is the speedup
      m.noisy |= s.speedup_noisy;
    }
  }
  env::set_threads(training_threads);
  if (m.noisy) m.advice = deploy::noise_advice(threads);
  rep.latency_measurement = m;
  for (auto& w : report::latency_warnings(rep)) rep.warnings.push_back(std::move(w));
}

deploy::FpgaEstimate Workspace::fpga_estimate(const ir::Graph& g) const {
  try {
    return deploy::estimate_fpga(g, *config_.output.fpga);
  } catch (const UnsupportedError& e) {
    throw UnsupportedError(msg("output.fpga: ", e.what(), "; remove output.fpga for this model"));
  }
}

report::Report Workspace::finish(const std::vector<const ir::Graph*>& compressed) {
  report::Report& rep = report_;
  SQZ_ASSERT(compressed.size() == rep.results.size(), "one graph per result");
  // Rank 0 measures and reports; the others are done (no collective follows).
  if (!dist::writes()) return rep;
  if (config_.output.latency) measure_latencies(compressed);
  if (config_.output.fpga) {
    rep.baseline_fpga = report::fpga_json(fpga_estimate(baseline_));
    for (size_t i = 0; i < compressed.size(); ++i)
      rep.results[i].fpga = report::fpga_json(fpga_estimate(*compressed[i]));
  }
  rep.environment = report::environment();
  rep.seconds = seconds_since(started_);
  if (dist::active()) {
    rep.environment["data_parallel_processes"] = std::to_string(dist::world_size());
  }
  report::write_report(rep, out_dir_);
  if (state_) state_->finish();
  return rep;
}

double Workspace::val_accuracy(ir::Graph& g) const {
  SQZ_ASSERT(has_validation(), "val_accuracy needs a validation split");
  return train::evaluate(g, splits_->val, std::max<int64_t>(batch_size_, 256)).accuracy;
}

}  // namespace squeeze::pipeline
