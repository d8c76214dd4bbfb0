// The only translation unit that sees YAML: text -> Params -> typed structs. Each section reads
// every key it accepts and then calls finish(), so an unknown key anywhere is reported with the
// valid keys of that section.
#include "squeeze/pipeline/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "squeeze/compress/registry.h"
#include "squeeze/pipeline/autotune.h"
#include "squeeze/pipeline/hep_jet.h"
#include "squeeze/pipeline/hep_trigger.h"
#include "squeeze/pipeline/progressive.h"
#include "squeeze/train/distill.h"
#include "squeeze/util/error.h"

namespace squeeze {

namespace {

const std::vector<std::string> kDatasets = {"fashion-mnist", "mnist-idx", "csv",   "arff",
                                            "npy",           "hdf5",      "synthetic-jets"};
const std::vector<std::string> kOptimizers = {"sgd", "adam", "adamw"};
const std::vector<std::string> kSchedules = {"constant", "step", "cosine"};
const std::vector<std::string> kNormalize = {"standard", "minmax", "none", "imagenet"};
const std::vector<std::string> kExports = {"onnx", "qonnx", "torchscript", "cpp"};
// Every pipeline DESIGN.md plans; workflow.cpp says which of them this build runs.
const std::vector<std::string> kPipelines = {"progressive", "validation",  "combinations",
                                             "autotune",    "hep-trigger", "hep-jet"};

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

std::string where(const Params& p) { return p.path().empty() ? "the top level" : p.path(); }

// A number with open or closed bounds (the Params getters only know closed ones). The message
// has the same shape as the getters': "<key path>: expected <range>, got '<value>'".
double get_bounded(Params& p, const std::string& key, double fallback, double lo, bool lo_open,
                   double hi, bool hi_open) {
  std::ostringstream range;
  range.precision(10);
  if (hi >= 1e300)
    range << "a number " << (lo_open ? "> " : ">= ") << lo;
  else
    range << "a number in " << (lo_open ? "(" : "[") << lo << ", " << hi << (hi_open ? ")" : "]");
  const Value* raw = p.raw(key);
  auto fail = [&]() {
    std::string got =
        raw->kind() == Value::Kind::kScalar ? "'" + raw->text() + "'" : raw->describe();
    throw ConfigError(msg(p.key_path(key), ": expected ", range.str(), ", got ", got));
  };
  double v = fallback;
  try {
    v = p.get_double(key, fallback);
  } catch (const ConfigError&) {
    fail();
  }
  p.document(key, range.str());
  if (!((lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi))) fail();
  return v;
}

// One of two spellings of the same key ("finetune" / "finetuning"); both at once is an error.
std::string pick_spelling(const Params& p, const std::string& a, const std::string& b) {
  bool has_a = p.has(a), has_b = p.has(b);
  if (has_a && has_b)
    throw ConfigError(msg("both '", a, "' and '", b, "' given in ", where(p),
                          "; they are the same key, keep one"));
  return has_b ? b : a;
}

void need(const Params& p, const std::string& key, const std::string& why) {
  if (!p.has(key))
    throw ConfigError(msg("missing required key '", key, "' in ", where(p), ": ", why));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Option structs declared elsewhere, read here so their key names sit next to the schema.

namespace data {

DataOptions DataOptions::from_params(Params& p) {
  DataOptions o;
  o.dataset = p.get_choice("dataset", o.dataset, kDatasets);
  const std::string& ds = o.dataset;

  // Which source keys a data set takes; any other source key is unknown for it.
  if (ds == "fashion-mnist") {
    // Debian's dataset-fashion-mnist installs here.
    o.path = p.get_string("path", "/usr/share/datasets/fashion-mnist");
  } else if (ds == "mnist-idx") {
    need(p, "path", "dataset " + ds + " needs the folder holding its IDX files");
    o.path = p.get_string("path", "");
  } else if (ds == "csv" || ds == "arff") {
    need(p, "path", ds == "csv" ? "dataset csv needs the CSV file"
                                : "dataset arff needs the ARFF file (OpenML's download format)");
    o.path = p.get_string("path", "");
    std::string label_key = pick_spelling(p, "label", "label_column");
    // ARFF: the class is the last attribute unless named (Weka's convention).
    if (ds == "arff") o.label_column = "";
    o.label_column = p.get_string(label_key, o.label_column);
    o.feature_columns = p.get_strings("features");
    o.test_path = p.get_string("test_path", "");
  } else if (ds == "npy") {
    if (!p.has("features") || !p.has("labels"))
      need(p, p.has("features") ? "labels" : "features",
           "dataset npy needs features (an N x ... .npy file) and labels (an N .npy file)");
    o.features = p.get_string("features", "");
    o.labels = p.get_string("labels", "");
    o.test_features = p.get_string("test_features", "");
    o.test_labels = p.get_string("test_labels", "");
    if (o.test_features.empty() != o.test_labels.empty())
      throw ConfigError(msg("in ", where(p),
                            ": test_features and test_labels go together; got only ",
                            o.test_features.empty() ? "test_labels" : "test_features"));
    o.test_path = p.get_string("test_path", "");
  } else if (ds == "hdf5") {
    need(p, "path", "dataset hdf5 needs the HDF5 file");
    o.path = p.get_string("path", "");
    // features: one N x ... data set, or a list of data sets holding one feature each.
    const Value* f = p.raw("features");
    if (f && f->kind() == Value::Kind::kList) {
      o.feature_datasets = p.get_strings("features");
      if (o.feature_datasets.empty())
        throw ConfigError(msg(p.key_path("features"), ": the list is empty; give the data set ",
                              "of each feature, or one data set name (N x F)"));
    } else {
      o.features = p.get_string("features", "");
    }
    p.document("features", "a data set name, or a list of data set names (one per feature)",
               "the features: one N x ... array, or N values per named feature");
    o.labels = p.get_string("labels", "");
    o.test_path = p.get_string("test_path", "");
  } else if (ds == "synthetic-jets") {
    o.samples = p.get_int("samples", o.samples, 1);
    o.rare_fraction = get_bounded(p, "rare_fraction", o.rare_fraction, 0, true, 1, true);
    p.document("rare_fraction", "a number in [0, 1)",
               "the fraction of samples of rare_class; 0.2 makes the five classes equal");
    const auto& classes = data::jet_class_names();
    const std::string rare = p.get_choice("rare_class", classes[o.rare_class], classes);
    o.rare_class = std::find(classes.begin(), classes.end(), rare) - classes.begin();
  }

  o.batch_size = p.get_int("batch_size", o.batch_size, 1);
  if (auto split = p.get_map("split")) {
    o.val_fraction = get_bounded(*split, "val", o.val_fraction, 0, false, 1, true);
    o.test_fraction = get_bounded(*split, "test", o.test_fraction, 0, false, 1, true);
    split->finish();
    if (o.val_fraction + o.test_fraction >= 1.0)
      throw ConfigError(msg(split->path(),
                            ": val + test must be < 1 so that training data remains,"
                            " got val ",
                            o.val_fraction, " + test ", o.test_fraction));
  }
  if (auto limit = p.get_map("limit")) {
    o.limit_train = limit->get_int("train", o.limit_train, 1);
    o.limit_val = limit->get_int("val", o.limit_val, 1);
    o.limit_test = limit->get_int("test", o.limit_test, 1);
    limit->finish();
  }
  // normalize: a method name, imagenet, or {mean: [...], std: [...]} per channel.
  const Value* norm = p.raw("normalize");
  if (norm && norm->kind() == Value::Kind::kMap) {
    Params& n = *p.get_map("normalize");
    n.require("mean");
    n.require("std");
    o.normalize = "custom";
    o.mean = n.get_doubles("mean", {});
    o.std = n.get_doubles("std", {});
    n.finish();
    if (o.mean.empty() || o.mean.size() != o.std.size())
      throw ConfigError(msg(p.key_path("normalize"), ": mean and std need the same number of ",
                            "values, one per channel (1 for gray, 3 for RGB), got ",
                            o.mean.size(), " and ", o.std.size()));
    for (double v : o.std)
      if (!(v > 0))
        throw ConfigError(msg(n.key_path("std"), ": expected numbers > 0, got ", v));
  } else {
    o.normalize = p.get_choice("normalize", o.normalize, kNormalize);
  }
  p.document("normalize", "standard, minmax, none, imagenet or {mean: [...], std: [...]}",
             "per channel; standard and minmax measure the train split");
  if (p.has("resize")) {
    const Value* r = p.raw("resize");
    std::vector<int64_t> hw;
    if (r->kind() == Value::Kind::kScalar) {
      int64_t v = p.get_int("resize", 0, 1);
      hw = {v, v};
    } else {
      hw = p.get_ints("resize", {});
    }
    if (hw.size() != 2 || hw[0] < 1 || hw[1] < 1)
      throw ConfigError(msg(p.key_path("resize"), ": expected [H, W] (or one size for both), ",
                            "integers >= 1, got ", r->describe()));
    o.resize = hw;
  }
  p.document("resize", "[H, W] or one size, integers >= 1",
             "bilinear, like torchvision's Resize with antialias=False");
  if (p.has("channels")) {
    o.channels = p.get_int("channels", 0, 1);
    if (o.channels != 1 && o.channels != 3)
      throw ConfigError(msg(p.key_path("channels"), ": expected 1 or 3, got ", o.channels,
                            " (3 replicates a gray channel; 1 takes the luminance of RGB)"));
  }
  p.document("channels", "1 or 3", "3 replicates a gray channel; 1 takes the luminance of RGB");
  if (auto aug = p.get_map("augment")) {
    o.augment.shift = aug->get_int("shift", o.augment.shift, 0);
    aug->document("shift", "an integer >= 0 (pixels)",
                  "random translation by up to this many pixels along H and W, black padding "
                  "(training batches only)");
    o.augment.hflip = aug->get_bool("hflip", o.augment.hflip);
    aug->document("hflip", "true or false", "random horizontal flip (training batches only)");
    aug->finish();
    if (!o.augment.empty() && (ds == "csv" || ds == "arff" || ds == "synthetic-jets"))
      throw ConfigError(msg(p.key_path("augment"), ": augmentation applies to images, and ",
                            "dataset ", ds, " holds tables of features; remove the augment ",
                            "block (image data sets: fashion-mnist, mnist-idx, and npy or hdf5 ",
                            "holding N x C x H x W arrays)"));
  }
  p.document("augment", "{shift: PIXELS, hflip: BOOL}",
             "random shifts and flips of image training batches, seeded; never of val/test");
  p.finish();
  return o;
}

}  // namespace data

namespace train {

models::ModelSpec model_spec_from_params(Params& parent, const std::string& key,
                                         const std::vector<std::string>& extra) {
  models::ModelSpec m;
  const std::string at = parent.key_path(key);
  parent.document(key, "{zoo: NAME, params: {...}}, {onnx: PATH}, {checkpoint: PATH} (each with an "
                       "optional head: {num_classes: N}), zoo:NAME, or a .onnx or .sqz path");
  const Value* raw = parent.raw(key);
  if (raw && raw->kind() == Value::Kind::kScalar) {
    // The CLI's MODEL spelling: zoo:NAME, x.onnx or x.sqz.
    const std::string t = raw->text();
    auto ends = [&](const std::string& suffix) {
      return t.size() > suffix.size() &&
             t.compare(t.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (t.rfind("zoo:", 0) == 0 && t.size() > 4)
      m.zoo = t.substr(4);
    else if (ends(".onnx"))
      m.onnx = t;
    else if (ends(".sqz"))
      m.checkpoint = t;
    else
      throw ConfigError(
          msg(at, ": expected {zoo: NAME}, {onnx: PATH}, {checkpoint: PATH}, "
              "zoo:NAME, a .onnx or a .sqz path, got '",
              t, "'"));
    return m;
  }
  auto p = parent.get_map(key);
  if (!p)
    throw ConfigError(msg("missing required key '", key, "' in ", where(parent),
                          ": give {zoo: NAME}, {onnx: PATH} or {checkpoint: PATH}"));
  if (p->has("zoo") && p->has("type"))
    throw ConfigError(msg(at, ": both 'zoo' and 'type' given; they are the same key, keep one"));
  std::string zoo_key = p->has("type") ? "type" : "zoo";
  m.zoo = p->get_string(zoo_key, "");
  m.onnx = p->get_string("onnx", "");
  m.checkpoint = p->get_string("checkpoint", "");
  std::vector<std::string> given;
  if (!m.zoo.empty()) given.push_back(zoo_key);
  if (!m.onnx.empty()) given.push_back("onnx");
  if (!m.checkpoint.empty()) given.push_back("checkpoint");
  if (given.size() != 1)
    throw ConfigError(msg(at, ": expected exactly one of zoo (or type), onnx, checkpoint; got ",
                          given.empty() ? std::string("none") : join(given)));
  if (p->has("params")) {
    if (m.zoo.empty())
      throw ConfigError(msg(p->key_path("params"), ": parameters apply to zoo models only (zoo: NAME)"));
    m.params = p->get_string_map("params");
  }
  if (auto head = p->get_map("head")) {
    head->require("num_classes");
    m.head_classes = head->get_int("num_classes", 0, 1);
    head->document("num_classes", "an integer >= 1",
                   "the last classifier is replaced by a new one with this many outputs");
    head->finish();
  }
  std::vector<std::string> allowed = extra;
  allowed.push_back(zoo_key == "zoo" ? "type" : "zoo");
  for (const auto& k : extra) p->raw(k);  // read by the caller
  p->finish(allowed);
  return m;
}

TrainOptions TrainOptions::from_params(Params& p) {
  TrainOptions o;
  o.epochs = p.get_int("epochs", o.epochs, 0);
  o.optimizer = p.get_choice("optimizer", o.optimizer, kOptimizers);
  o.lr = get_bounded(p, "lr", o.lr, 0, true, 1e300, false);
  o.momentum = get_bounded(p, "momentum", o.momentum, 0, false, 1, true);
  o.nesterov = p.get_bool("nesterov", o.nesterov);
  if (o.nesterov && o.optimizer != "sgd")
    throw ConfigError(msg(p.key_path("nesterov"), ": nesterov momentum needs optimizer: sgd, got ",
                          "optimizer: ", o.optimizer));
  o.weight_decay = p.get_double("weight_decay", o.weight_decay, 0.0);
  o.schedule = p.get_choice("schedule", o.schedule, kSchedules);
  o.step_size = p.get_int("step_size", o.step_size, 1);
  o.gamma = get_bounded(p, "gamma", o.gamma, 0, true, 1, false);
  o.warmup_steps = p.get_int("warmup_steps", o.warmup_steps, 0);
  o.max_steps = p.get_int("max_steps", o.max_steps, -1);
  o.keep_best = p.get_bool("keep_best", o.keep_best);
  o.early_stopping = p.get_int("early_stopping", o.early_stopping, 0);
  o.label_smoothing = get_bounded(p, "label_smoothing", o.label_smoothing, 0, false, 1, true);
  if (auto distill = p.get_map("distill"))
    o.distill = std::make_shared<const DistillOptions>(DistillOptions::from_params(*distill));
  p.finish();
  o.validate();
  return o;
}

DistillOptions DistillOptions::from_params(Params& p) {
  DistillOptions o;
  o.key_path = p.path();
  o.alpha = get_bounded(p, "alpha", o.alpha, 0, false, 1, false);
  o.temperature = get_bounded(p, "temperature", o.temperature, 0, true, 1e6, false);
  const std::vector<std::shared_ptr<Params>> features = p.get_map_list("features");
  for (const auto& f : features) {
    FeatureMatch m;
    // Read before the checks that they are given, so that `squeeze methods` sees every key.
    m.student = f->get_string("student", "");
    m.teacher = f->get_string("teacher", "");
    m.weight = get_bounded(*f, "weight", m.weight, 0, true, 1e300, false);
    need(*f, "student", "a feature pair names a student layer (or value) and a teacher layer");
    need(*f, "teacher", "a feature pair names a student layer (or value) and a teacher layer");
    f->finish();
    o.features.push_back(m);
  }
  if (p.has("teacher")) {
    o.teacher = model_spec_from_params(p, "teacher", {"train"});
    const bool is_map = p.raw("teacher")->kind() == Value::Kind::kMap;
    std::shared_ptr<Params> spec_map = is_map ? p.get_map("teacher") : nullptr;
    std::shared_ptr<Params> train = spec_map ? spec_map->get_map("train") : nullptr;
    if (train) {
      if (o.teacher->zoo.empty())
        throw ConfigError(msg(spec_map->key_path("train"),
                              ": only a zoo teacher is trained first; an ONNX or checkpoint teacher is used as "
                              "it is (remove train)"));
      o.teacher_train = std::make_shared<const TrainOptions>(TrainOptions::from_params(*train));
      if (o.teacher_train->distill)
        throw ConfigError(msg(train->key_path("distill"), ": a teacher's own training cannot distill"));
    } else if (!o.teacher->zoo.empty()) {
      throw ConfigError(msg(p.key_path("teacher"), ": a zoo teacher (", o.teacher->describe(),
                            ") starts from random weights; give it train: {epochs: N} to train it on the data "
                            "first, or name a trained model ({onnx: PATH} or {checkpoint: PATH})"));
    }
  }
  p.finish();
  o.validate();
  return o;
}

void TrainOptions::validate() const {
  auto bad = [](const char* field, const auto& value, const std::string& expected) {
    throw ConfigError(
        msg("invalid training option ", field, " = ", value, ": expected ", expected));
  };
  auto one_of = [](const std::string& v, const std::vector<std::string>& choices) {
    return std::find(choices.begin(), choices.end(), v) != choices.end();
  };
  if (epochs < 0) bad("epochs", epochs, "an integer >= 0");
  if (!one_of(optimizer, kOptimizers)) bad("optimizer", optimizer, "one of: " + join(kOptimizers));
  if (!(lr > 0) || lr > 1e300) bad("lr", lr, "a number > 0");
  if (!(momentum >= 0 && momentum < 1)) bad("momentum", momentum, "a number in [0, 1)");
  if (nesterov && optimizer != "sgd") bad("nesterov", "true", "false unless optimizer is sgd");
  if (!(weight_decay >= 0)) bad("weight_decay", weight_decay, "a number >= 0");
  if (!one_of(schedule, kSchedules)) bad("schedule", schedule, "one of: " + join(kSchedules));
  if (step_size < 1) bad("step_size", step_size, "an integer >= 1");
  if (!(gamma > 0 && gamma <= 1)) bad("gamma", gamma, "a number in (0, 1]");
  if (warmup_steps < 0) bad("warmup_steps", warmup_steps, "an integer >= 0");
  if (max_steps < -1) bad("max_steps", max_steps, "-1 (no limit) or an integer >= 0");
  if (early_stopping < 0) bad("early_stopping", early_stopping, "an integer >= 0");
  if (!(label_smoothing >= 0 && label_smoothing < 1))
    bad("label_smoothing", label_smoothing, "a number in [0, 1)");
  for (double w : class_weights)
    if (!(w >= 0) || !std::isfinite(w)) bad("class_weights", w, "finite numbers >= 0");
  if (!class_weights.empty() && distill)
    bad("class_weights", "(given)", "none when fine-tuning distills (distill's loss is unweighted)");
}

}  // namespace train

// ---------------------------------------------------------------------------------------------

namespace pipeline {

namespace {

Value to_value(const YAML::Node& node, const std::string& source);

std::string location(const std::string& source, const YAML::Mark& mark) {
  return msg(source, ":", mark.line + 1, ":", mark.column + 1);
}

std::shared_ptr<Params> to_params(const YAML::Node& node, const std::string& source) {
  auto p = std::make_shared<Params>();
  for (const auto& kv : node) {
    if (!kv.first.IsScalar())
      throw InputError(msg(location(source, kv.first.Mark()),
                           ": a map key must be a plain name, not a list or map"));
    const std::string key = kv.first.Scalar();
    // yaml-cpp keeps the last of two equal keys; a silent override hides typos.
    for (const std::string& k : p->keys())
      if (k == key)
        throw InputError(msg(location(source, kv.first.Mark()), ": duplicate key '", key, "'"));
    p->set(key, to_value(kv.second, source));
  }
  return p;
}

Value to_value(const YAML::Node& node, const std::string& source) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Value();
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted scalars "!" and plain ones "?".
      return Value::scalar(node.Scalar(),
                           node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str");
    case YAML::NodeType::Sequence: {
      std::vector<Value> items;
      for (const auto& item : node) items.push_back(to_value(item, source));
      return Value::list(std::move(items));
    }
    case YAML::NodeType::Map:
      return Value::map(to_params(node, source));
  }
  return Value();
}

// The stage's params with the short-form spellings rewritten to the method's own keys.
std::shared_ptr<Params> normalize_stage_params(const Params& given, const std::string& method) {
  // Built from a copy so that the stage owns its maps and the tree stays as written.
  std::shared_ptr<Params> copy = given.clone();
  const Params& src = *copy;
  auto out = std::make_shared<Params>(src.path());
  const bool prune = method == "prune", quantize = method == "quantize";
  if (prune && src.has("sparsity") && src.has("ratio"))
    throw ConfigError(msg("both 'sparsity' and 'ratio' given in ", src.path(),
                          "; sparsity is another name for ratio, keep one"));
  if (quantize && src.has("dtype")) {
    const Value* dtype = src.raw("dtype");
    if (dtype->kind() != Value::Kind::kScalar ||
        (dtype->text() != "qint8" && dtype->text() != "int8"))
      throw ConfigError(msg(src.key_path("dtype"),
                            ": expected qint8 (= mode: dynamic, weight_bits: 8), got ",
                            dtype->describe(), "; for other settings use mode and weight_bits"));
    if (src.has("mode") || src.has("weight_bits"))
      throw ConfigError(msg(src.key_path("dtype"),
                            ": dtype: qint8 means mode: dynamic, weight_bits: 8; do not combine it "
                            "with mode or weight_bits"));
  }
  for (const std::string& key : src.keys()) {
    const Value* v = src.raw(key);
    if (prune && key == "sparsity") {
      out->set("ratio", *v);
    } else if (quantize && key == "dtype") {
      out->set("mode", Value::scalar("dynamic"));
      out->set("weight_bits", Value::scalar("8"));
    } else {
      out->set(key, *v);
    }
  }
  return out;
}

std::string resolve_method(Params& stage) {
  stage.require("method");
  const std::string name = stage.get_string("method", "");
  if (compress::find_method(name)) return canonical_method(name);
  std::vector<std::string> candidates = compress::method_names();
  for (const auto& m : compress::methods())
    candidates.insert(candidates.end(), m.aliases.begin(), m.aliases.end());
  std::string near = did_you_mean(name, candidates);
  throw ConfigError(msg(stage.key_path("method"), ": unknown method '", name,
                        "' (valid: ", join(compress::method_names()), ")",
                        near.empty() ? "" : "; did you mean '" + near + "'?"));
}

StageSpec parse_stage(Params& stage, bool allow_name) {
  StageSpec s;
  s.method = resolve_method(stage);
  if (auto params = stage.get_map("params"))
    s.params = normalize_stage_params(*params, s.method);
  else
    s.params = std::make_shared<Params>(stage.key_path("params"));
  std::string ft = pick_spelling(stage, "finetune", "finetuning");
  if (auto finetune = stage.get_map(ft)) s.finetune = train::TrainOptions::from_params(*finetune);
  // stage params are checked by the method when the pass is made, not here
  stage.finish(allow_name ? std::vector<std::string>{"name"} : std::vector<std::string>{});
  return s;
}

void check_name(const std::string& name, const std::string& key_path) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\\') != std::string::npos)
    throw ConfigError(
        msg(key_path, ": expected a name usable as a folder (no '/'), got '", name, "'"));
}

// The guard, in either spelling: guard: {max_drop, relative} | guard: {preserve_accuracy} |
// preserve_accuracy in the pipeline block. Absent: nullopt.
std::optional<GuardOptions> parse_guard(Params& pipeline) {
  auto guard = pipeline.get_map("guard");
  pipeline.raw("preserve_accuracy");  // a valid key of every pipeline block, for messages
  const bool outer = pipeline.has("preserve_accuracy");
  if (guard && outer)
    throw ConfigError(msg("both 'guard' and 'preserve_accuracy' given in ", pipeline.path(),
                          "; preserve_accuracy is a guard, keep one"));
  if (!guard && !outer) return std::nullopt;
  Params& p = guard ? *guard : pipeline;
  if (guard) {
    // Unknown keys first: a misspelt max_drop reads better as a did-you-mean than as missing.
    for (const char* key : {"max_drop", "relative", "preserve_accuracy"}) guard->raw(key);
    guard->finish();
  }
  GuardOptions g;
  if (p.has("preserve_accuracy")) {
    if (guard && p.has("max_drop"))
      throw ConfigError(
          msg("both 'max_drop' and 'preserve_accuracy' given in ", p.path(),
              "; preserve_accuracy: A means max_drop: 1 - A, relative: true; keep one"));
    if (guard && p.has("relative") && !p.get_bool("relative", true))
      throw ConfigError(
          msg(p.key_path("relative"),
              ": preserve_accuracy is relative to the baseline's accuracy; for an absolute "
              "guard write max_drop with relative: false"));
    const double keep = p.get_double("preserve_accuracy", 1.0);
    g.max_drop = std::round((1.0 - keep) * 1e12) / 1e12;  // 1 - 0.9 is 0.09999999999999998
    g.relative = true;
    g.written = msg("preserve_accuracy: ", p.raw("preserve_accuracy")->text());
  } else {
    need(p, "max_drop", "a guard is {max_drop: 0.01, relative: true} or {preserve_accuracy: 0.98}");
    g.max_drop = p.get_double("max_drop", g.max_drop);
    g.relative = p.get_bool("relative", g.relative);
    g.written =
        msg("max_drop: ", p.raw("max_drop")->text(), ", relative: ", g.relative ? "true" : "false");
  }
  try {
    g.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(
        msg(guard ? guard->path() : pipeline.key_path("preserve_accuracy"), ": ", e.what()));
  }
  return g;
}

// Stages that may carry a name (the short form's compression entries, pipeline steps): the names
// given, unique among `names`; then the others named after their method ("prune", "prune-2",
// ...), after every explicit one so that a generated name never takes a name the user chose.
// `what` and `why` word the duplicate-name error: "experiment", "they name the output folders".
std::vector<StepSpec> parse_named_stages(const std::vector<std::shared_ptr<Params>>& entries,
                                         std::set<std::string>& names, const std::string& what,
                                         const std::string& why) {
  std::vector<StepSpec> out;
  for (const auto& entry : entries) {
    StepSpec step;
    step.stage = parse_stage(*entry, true);
    if (entry->has("name")) {
      step.name = entry->get_string("name", "");
      check_name(step.name, entry->key_path("name"));
      if (!names.insert(step.name).second)
        throw ConfigError(msg(entry->key_path("name"), ": duplicate ", what, " name '", step.name,
                              "'; names must be unique (", why, ")"));
    }
    out.push_back(std::move(step));
  }
  for (StepSpec& step : out) {
    if (!step.name.empty()) continue;
    step.name = step.stage.method;
    for (int k = 2; names.count(step.name); ++k) step.name = msg(step.stage.method, "-", k);
    names.insert(step.name);
  }
  return out;
}

std::vector<StepSpec> parse_steps(Params& pipeline) {
  pipeline.require("steps");
  std::set<std::string> names;
  std::vector<StepSpec> steps =
      parse_named_stages(pipeline.get_map_list("steps"), names, "step", "they name the candidates");
  if (steps.empty())
    throw ConfigError(msg(pipeline.key_path("steps"),
                          ": expected at least one step ({method, params, finetune})"));
  return steps;
}

PipelineSpec parse_pipeline(Params& block) {
  PipelineSpec spec;
  spec.block = block.clone();
  block.require("type");
  spec.type = block.get_choice("type", "", kPipelines);
  spec.guard = parse_guard(block);
  if (spec.type == "validation" || spec.type == "combinations") {
    spec.steps = parse_steps(block);
    if (spec.type == "validation" && !spec.guard)
      throw ConfigError(
          msg("missing required key 'guard' in ", block.path(),
              ": a validation pipeline stops at the first step that breaks it; give guard: "
              "{max_drop: 0.01, relative: true} or preserve_accuracy: 0.98"));
    if (spec.type == "combinations")
      spec.max_candidates = block.get_int("max_candidates", spec.max_candidates, 1, 100000);
    block.finish();
  } else if (spec.type == "autotune") {
    spec.autotune = parse_autotune(block, spec.guard);  // reads the rest of the block and finishes it
  }
  if (spec.type == "progressive") {
    if (!spec.guard)
      throw ConfigError(
          msg("missing required key 'guard' in ", block.path(),
              ": a progressive pipeline keeps each step only while it holds; give guard: "
              "{max_drop: 0.01, relative: true} or preserve_accuracy: 0.99"));
    spec.progressive =
        std::make_shared<const ProgressiveOptions>(ProgressiveOptions::from_params(block));
    block.finish();
  }
  if (spec.type == "hep-trigger") {
    if (!spec.guard)
      throw ConfigError(
          msg("missing required key 'guard' in ", block.path(),
              ": hep-trigger compresses while the accuracy guard holds; give guard: "
              "{max_drop: 0.01, relative: false} or preserve_accuracy: 0.99"));
    spec.hep_trigger =
        std::make_shared<const HepTriggerOptions>(HepTriggerOptions::from_params(block));
  }
  if (spec.type == "hep-jet") {
    if (!spec.guard)
      throw ConfigError(
          msg("missing required key 'guard' in ", block.path(),
              ": hep-jet keeps each step only while the accuracy guard holds; give guard: "
              "{max_drop: 0.02, relative: false} or preserve_accuracy: 0.98"));
    if (block.has("steps")) {
      spec.steps = parse_steps(block);
    } else {
      // The common recipe: low rank 64, then 8 bits.
      auto recipe = yaml_to_params(
          "steps:\n"
          "  - {method: lowrank, params: {rank: 64}}\n"
          "  - {method: quantize, params: {mode: qat, weight_bits: 8, act_bits: 8}}\n",
          "the hep-jet recipe");
      spec.steps = parse_steps(*recipe);
    }
    spec.hep_jet = std::make_shared<const HepJetOptions>(HepJetOptions::from_params(block));
  }
  return spec;
}

ModelSpec parse_model(Params& root) {
  if (!root.has("model"))
    throw ConfigError(
        "missing required key 'model' at the top level: give {zoo: NAME}, "
        "{onnx: PATH} or {checkpoint: PATH}");
  return train::model_spec_from_params(root, "model");
}

}  // namespace

std::shared_ptr<Params> yaml_to_params(const std::string& yaml_text,
                                       const std::string& source_name) {
  YAML::Node doc;
  try {
    doc = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw InputError(msg(location(source_name, e.mark), ": YAML syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    throw InputError(msg(source_name, ": cannot parse YAML: ", e.what()));
  }
  if (doc.IsNull() || !doc.IsDefined()) return std::make_shared<Params>();
  if (!doc.IsMap())
    throw InputError(msg(location(source_name, doc.Mark()),
                         ": expected a map of settings (key: value) at the top level"));
  return to_params(doc, source_name);
}

StageSpec parse_stage_spec(Params& stage) { return parse_stage(stage, false); }

std::string canonical_method(const std::string& name) {
  const compress::MethodInfo* info = compress::find_method(name);
  return info ? info->name : name;
}

WorkflowConfig parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                            const std::string& source_name) {
  WorkflowConfig cfg;
  cfg.source_text = yaml_text;
  if (source_name != "<string>") cfg.source_path = source_name;
  cfg.tree = yaml_to_params(yaml_text, source_name);
  Params& root = *cfg.tree;
  try {
    for (const std::string& o : overrides) root.apply_override(o);

    cfg.seed = static_cast<uint64_t>(root.get_int("seed", 0, 0));
    cfg.threads = root.get_int("threads", 0, 0);

    if (auto pipeline = root.get_map("pipeline")) cfg.pipeline = parse_pipeline(*pipeline);

    if (auto baseline = root.get_map("baseline")) {
      if (auto train = baseline->get_map("train"))
        cfg.baseline_train = train::TrainOptions::from_params(*train);
      baseline->document("checkpoint", "a .sqz or .onnx path",
                         "a trained baseline used instead of training one");
      cfg.baseline_checkpoint = baseline->get_string("checkpoint", "");
      if (baseline->has("checkpoint") && cfg.baseline_checkpoint.empty())
        throw ConfigError(msg(baseline->key_path("checkpoint"),
                              ": expected the path of a trained baseline (.sqz or .onnx), got ''"));
      if (cfg.baseline_train && !cfg.baseline_checkpoint.empty())
        throw ConfigError(msg("both 'train' and 'checkpoint' given in ", baseline->path(),
                              ": checkpoint is a baseline trained before, train trains one; "
                              "keep one"));
      baseline->finish();
    }

    // Every runner needs a model (the particle-physics pipelines too: they compress the one
    // given), which a baseline checkpoint gives when model: is left out.
    cfg.model_given = root.has("model");
    if (!cfg.model_given && !cfg.baseline_checkpoint.empty())
      cfg.model.checkpoint = cfg.baseline_checkpoint;
    else if (root.has("model") || !cfg.pipeline || !cfg.pipeline->steps.empty() ||
             cfg.pipeline->progressive || cfg.pipeline->autotune || cfg.pipeline->hep_trigger ||
             cfg.pipeline->hep_jet)
      cfg.model = parse_model(root);

    if (auto data = root.get_map("data")) cfg.data = data::DataOptions::from_params(*data);
    // The guard judges on the validation split; the test split only reports.
    if (cfg.pipeline && cfg.pipeline->guard) {
      if (!cfg.data)
        throw ConfigError(
            "pipeline.guard: the guard is checked on the data's validation split, but there is "
            "no data: block");
      if (cfg.data->val_fraction <= 0)
        throw ConfigError(
            msg("pipeline.guard: the guard is checked on the validation split, but "
                "data.split.val is ",
                cfg.data->val_fraction,
                "; give data: {split: {val: 0.1}} (the test split is never used to choose)"));
    }

    std::set<std::string> names;
    auto experiments = root.get_map_list("experiments");
    for (size_t i = 0; i < experiments.size(); ++i) {
      Params& e = *experiments[i];
      ExperimentSpec spec;
      spec.name = e.get_string("name", msg("exp", i));
      check_name(spec.name, e.key_path("name"));
      if (!names.insert(spec.name).second)
        throw ConfigError(msg(e.key_path("name"), ": duplicate experiment name '", spec.name,
                              "'; names must be unique (they name the output folders)"));
      if (!e.has("stages"))
        throw ConfigError(msg("missing required key 'stages' in ", e.path(),
                              ": an experiment is a list of stages ({method, params, finetune})"));
      for (auto& stage : e.get_map_list("stages"))
        spec.stages.push_back(parse_stage(*stage, false));
      if (spec.stages.empty())
        throw ConfigError(msg(e.key_path("stages"), ": expected at least one stage"));
      e.finish();
      cfg.experiments.push_back(std::move(spec));
    }

    // The short form: each entry is a one-stage experiment named after its method.
    for (StepSpec& step : parse_named_stages(root.get_map_list("compression"), names, "experiment",
                                             "they name the output folders")) {
      ExperimentSpec spec;
      spec.name = std::move(step.name);
      spec.stages.push_back(std::move(step.stage));
      cfg.experiments.push_back(std::move(spec));
    }

    if (cfg.pipeline && !cfg.experiments.empty())
      throw ConfigError(
          msg(root.has("experiments") ? "experiments" : "compression",
              ": a pipeline chooses its own stages, so experiments and pipeline cannot be "
              "combined; put the stages in pipeline.steps, or run the experiments as a "
              "separate config"));

    namespace fs = std::filesystem;
    std::string stem = fs::path(source_name).stem().string();
    if (source_name == "<string>" || stem.empty()) stem = "default";
    cfg.output.dir = "runs/" + stem;
    if (auto out = root.get_map("output")) {
      cfg.output.dir = out->get_string("dir", cfg.output.dir);
      if (cfg.output.dir.empty()) throw ConfigError("output.dir: expected a folder path, got ''");
      std::vector<std::string> exports = out->get_strings("export");
      for (size_t i = 0; i < exports.size(); ++i) {
        if (std::find(kExports.begin(), kExports.end(), exports[i]) == kExports.end()) {
          std::string near = did_you_mean(exports[i], kExports);
          throw ConfigError(msg(out->key_path("export"), "[", i,
                                "]: expected one of: ", join(kExports), ", got '", exports[i], "'",
                                near.empty() ? "" : "; did you mean '" + near + "'?"));
        }
        if (std::find(cfg.output.exports.begin(), cfg.output.exports.end(), exports[i]) ==
            cfg.output.exports.end())
          cfg.output.exports.push_back(exports[i]);
      }
      cfg.output.metrics = out->get_strings("metrics");
      for (size_t i = 0; i < cfg.output.metrics.size(); ++i)
        if (cfg.output.metrics[i] != "hep")
          throw ConfigError(msg(out->key_path("metrics"), "[", i, "]: unknown metric set '",
                                cfg.output.metrics[i], "'; valid: hep (per-class ROC AUC and ",
                                "background rejection at 50% and 10% signal efficiency)"));
      out->document("metrics", "a list of: hep",
                    "hep: per-class ROC AUC and background rejection (1/FPR) at 50% and 10% "
                    "signal efficiency in the report");
      cfg.output.latency = out->get_bool("latency", cfg.output.latency);
      cfg.output.latency_batches = out->get_ints("latency_batches", cfg.output.latency_batches);
      for (size_t i = 0; i < cfg.output.latency_batches.size(); ++i)
        if (cfg.output.latency_batches[i] < 1)
          throw ConfigError(msg(out->key_path("latency_batches"), "[", i,
                                "]: expected an integer >= 1, got '", cfg.output.latency_batches[i],
                                "'"));
      if (auto rec = out->get_map("recommend")) {
        // A fraction like the guard's max_drop; 1.0 is refused because it reads as "1 point".
        if (rec->has("max_drop")) {
          const double d = rec->get_double("max_drop", 0.01);
          if (!(d >= 0.0 && d < 1.0))
            throw ConfigError(msg(rec->key_path("max_drop"),
                                  ": expected a fraction of accuracy in [0, 1) (0.01 = 1 "
                                  "percentage point below the baseline), got ",
                                  d));
          cfg.output.recommend.max_drop = d;
        }
        rec->document("max_drop", "0 <= x < 1",
                      "largest test-accuracy drop from the baseline, as a fraction: 0.01 = 1 point");
        cfg.output.recommend.by = rec->get_choice("by", "size", {"size", "latency", "flops"});
        const int64_t batch = rec->get_int("batch", cfg.output.latency_batches.empty()
                                                        ? 1
                                                        : cfg.output.latency_batches.front(),
                                           1);
        if (cfg.output.recommend.by == "latency") {
          if (!cfg.output.latency)
            throw ConfigError(msg(rec->key_path("by"),
                                  ": latency needs the latency measured; set output.latency: true "
                                  "or choose by: size or by: flops"));
          if (std::find(cfg.output.latency_batches.begin(), cfg.output.latency_batches.end(),
                        batch) == cfg.output.latency_batches.end())
            throw ConfigError(msg(rec->key_path("batch"), ": ", batch,
                                  " is not a measured batch size (output.latency_batches: ",
                                  [&] {
                                    std::vector<std::string> b;
                                    for (int64_t x : cfg.output.latency_batches)
                                      b.push_back(std::to_string(x));
                                    return join(b);
                                  }(),
                                  ")"));
        } else if (rec->has("batch")) {
          throw ConfigError(msg(rec->key_path("batch"), ": only used with by: latency (by is ",
                                cfg.output.recommend.by, ")"));
        }
        cfg.output.recommend.latency_key = "batch" + std::to_string(batch);
        rec->finish();
      }
      cfg.output.latency_threads = out->get_int("latency_threads", cfg.output.latency_threads, 0);
      if (auto f = out->get_map("fpga")) {
        deploy::FpgaOptions fo;
        fo.clock_mhz = f->get_double("clock_mhz", fo.clock_mhz);
        fo.reuse_factor = f->get_int("reuse_factor", fo.reuse_factor, 1);
        fo.precision = f->get_string("precision", fo.precision);
        fo.input_precision = f->get_string("input_precision", fo.input_precision);
        fo.add_softmax = f->get_bool("softmax", fo.add_softmax);
        f->finish();
        try {
          fo.check();
        } catch (const ConfigError& e) {
          throw ConfigError(msg(out->key_path("fpga"), ".", e.what()));
        }
        cfg.output.fpga = fo;
      }
      out->finish();
    }
    // The hep pipelines report the FPGA estimate (hep-trigger, at its budget's clock) and the
    // per-class HEP figures of every model they put into results.
    if (cfg.pipeline && cfg.pipeline->hep_trigger) {
      const deploy::FpgaOptions want = cfg.pipeline->hep_trigger->fpga();
      if (!cfg.output.fpga) {
        cfg.output.fpga = want;
      } else if (cfg.output.fpga->clock_mhz != want.clock_mhz ||
                 cfg.output.fpga->reuse_factor != want.reuse_factor ||
                 cfg.output.fpga->precision != want.precision) {
        throw ConfigError(msg("output.fpga: clock_mhz ", cfg.output.fpga->clock_mhz,
                              ", reuse_factor ", cfg.output.fpga->reuse_factor, ", precision ",
                              cfg.output.fpga->precision, " differ from the hep-trigger budget's (",
                              want.clock_mhz, ", ", want.reuse_factor, ", ", want.precision,
                              "); remove output.fpga (the pipeline sets it) or make them equal"));
      }
    }
    if (cfg.pipeline && (cfg.pipeline->hep_trigger || cfg.pipeline->hep_jet) && !cfg.output.hep())
      cfg.output.metrics.push_back("hep");
    if (cfg.output.hep() && !cfg.data)
      throw ConfigError(msg(cfg.pipeline && (cfg.pipeline->hep_trigger || cfg.pipeline->hep_jet)
                                ? "pipeline (" + cfg.pipeline->type + ")"
                                : std::string("output.metrics"),
                            ": hep figures are measured on the test split of the data, but there "
                            "is no data: block; add one",
                            cfg.pipeline && (cfg.pipeline->hep_trigger || cfg.pipeline->hep_jet)
                                ? std::string(" (the pipeline fine-tunes and judges on it)")
                                : std::string(" or remove hep")));

    root.finish();
  } catch (const ConfigError& e) {
    if (source_name == "<string>") throw;
    throw ConfigError(msg(source_name, ": ", e.what()));
  }
  return cfg;
}

WorkflowConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(msg("cannot read config file '", path, "': ", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(msg("cannot read config file '", path, "': read error"));
  return parse_config(text.str(), overrides, path);
}

}  // namespace pipeline

}  // namespace squeeze
