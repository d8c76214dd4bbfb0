// Workflow configuration: DESIGN.md section 4 parsed into the typed structs, and every kind of
// bad input rejected with a message that names the key path and what would be valid.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "squeeze/compress/registry.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/hep_trigger.h"
#include "squeeze/util/error.h"
#include "testing/errors.h"

namespace squeeze::pipeline {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) {
  return (fs::path(SQUEEZE_SOURCE_DIR) / "tests" / "pipeline" / "fixtures" / name).string();
}

using squeeze::testing::error_of;

std::string config_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return error_of<ConfigError>([&] { parse_config(yaml, overrides); });
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

const char* kMinimal = "model: {zoo: small_cnn}\n";

// The registered method names as the "unknown method" message lists them.
std::string joined_method_names() {
  std::string out;
  for (const std::string& name : compress::method_names()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

TEST(Config, DesignExampleParses) {
  WorkflowConfig c = load_config(fixture("quickstart.yaml"));
  EXPECT_EQ(c.seed, 0u);
  EXPECT_EQ(c.model.zoo, "small_cnn");
  EXPECT_EQ(c.model.params.at("num_classes"), "10");
  EXPECT_TRUE(c.model.onnx.empty());

  ASSERT_TRUE(c.data.has_value());
  EXPECT_EQ(c.data->dataset, "fashion-mnist");
  EXPECT_EQ(c.data->path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c.data->batch_size, 128);
  EXPECT_DOUBLE_EQ(c.data->val_fraction, 0.1);
  EXPECT_EQ(c.data->limit_train, 20000);
  EXPECT_EQ(c.data->limit_val, -1);

  ASSERT_TRUE(c.baseline_train.has_value());
  EXPECT_EQ(c.baseline_train->epochs, 3);
  EXPECT_EQ(c.baseline_train->optimizer, "adam");
  EXPECT_DOUBLE_EQ(c.baseline_train->lr, 1e-3);

  ASSERT_EQ(c.experiments.size(), 2u);
  const ExperimentSpec& e0 = c.experiments[0];
  EXPECT_EQ(e0.name, "prune50-then-80");
  ASSERT_EQ(e0.stages.size(), 2u);
  EXPECT_EQ(e0.stages[0].method, "prune");
  ASSERT_TRUE(e0.stages[0].finetune.has_value());
  EXPECT_EQ(e0.stages[0].finetune->epochs, 1);
  Params& p0 = *e0.stages[0].params;
  EXPECT_EQ(p0.path(), "experiments[0].stages[0].params");
  EXPECT_DOUBLE_EQ(p0.get_double("ratio", 0), 0.5);
  EXPECT_EQ(p0.get_string("scope", ""), "global");
  EXPECT_EQ(e0.stages[1].method, "prune");
  EXPECT_FALSE(e0.stages[1].finetune.has_value());
  Params& p1 = *e0.stages[1].params;
  EXPECT_EQ(p1.path(), "experiments[0].stages[1].params");
  EXPECT_DOUBLE_EQ(p1.get_double("ratio", 0), 0.8);
  EXPECT_EQ(p1.get_string("scope", ""), "local");
  EXPECT_EQ(p1.get_string("schedule", ""), "polynomial");
  EXPECT_EQ(p1.get_int("update_every", 0), 2);
  const ExperimentSpec& e1 = c.experiments[1];
  EXPECT_EQ(e1.name, "prune-random");
  ASSERT_EQ(e1.stages.size(), 1u);
  EXPECT_EQ(e1.stages[0].method, "prune");  // written as the alias "pruning"
  EXPECT_EQ(e1.stages[0].params->get_string("criterion", ""), "random");
  ASSERT_TRUE(e1.stages[0].finetune.has_value());
  EXPECT_EQ(e1.stages[0].finetune->epochs, 1);

  EXPECT_FALSE(c.pipeline);
  EXPECT_EQ(c.output.dir, "runs/quickstart");
  EXPECT_EQ(c.output.exports, std::vector<std::string>({"onnx"}));
  EXPECT_TRUE(c.output.latency);
  EXPECT_EQ(c.source_path, fixture("quickstart.yaml"));
  EXPECT_HAS(c.source_text, "prune50-then-80");
  ASSERT_TRUE(c.tree);
  EXPECT_TRUE(c.tree->has("experiments"));

  // The example is a valid workflow: every stage's method accepts its params.
  for (const ExperimentSpec& e : c.experiments)
    for (const StageSpec& s : e.stages) {
      const compress::MethodInfo* info = compress::find_method(s.method);
      ASSERT_NE(info, nullptr) << s.method;
      EXPECT_NO_THROW(info->make(*s.params)) << s.params->path();
    }
}

TEST(Config, ShortFormParses) {
  WorkflowConfig c = load_config(fixture("short_form.yaml"));
  EXPECT_EQ(c.model.zoo, "resnet18");
  EXPECT_EQ(c.model.params.at("num_classes"), "10");
  EXPECT_EQ(c.data->batch_size, 64);
  EXPECT_FALSE(c.baseline_train.has_value());
  ASSERT_EQ(c.experiments.size(), 2u);

  const ExperimentSpec& prune = c.experiments[0];
  EXPECT_EQ(prune.name, "prune");
  ASSERT_EQ(prune.stages.size(), 1u);
  EXPECT_EQ(prune.stages[0].method, "prune");
  Params& pp = *prune.stages[0].params;
  EXPECT_EQ(pp.path(), "compression[0].params");
  EXPECT_EQ(pp.keys(), std::vector<std::string>({"ratio"}));
  EXPECT_DOUBLE_EQ(pp.get_double("ratio", 0), 0.5);
  ASSERT_TRUE(prune.stages[0].finetune.has_value());
  EXPECT_EQ(prune.stages[0].finetune->epochs, 10);
  EXPECT_DOUBLE_EQ(prune.stages[0].finetune->lr, 0.001);

  // the second entry of the same method gets a numbered name
  const ExperimentSpec& prune2 = c.experiments[1];
  EXPECT_EQ(prune2.name, "prune-2");
  ASSERT_EQ(prune2.stages.size(), 1u);
  EXPECT_EQ(prune2.stages[0].method, "prune");
  Params& p2 = *prune2.stages[0].params;
  EXPECT_EQ(p2.path(), "compression[1].params");
  EXPECT_DOUBLE_EQ(p2.get_double("ratio", 0), 0.7);
  EXPECT_EQ(p2.get_string("scope", ""), "local");
  EXPECT_FALSE(prune2.stages[0].finetune.has_value());
  EXPECT_EQ(c.output.dir, "runs/short_form");
}

// The short-form `dtype: qint8` of quantization, rewritten to the method's own keys.
TEST(Config, QuantizeShortFormDtype) {
  if (!compress::find_method("quantize")) GTEST_SKIP() << "quantize not registered yet";
  EXPECT_EQ(canonical_method("quantization"), "quantize");

  WorkflowConfig c = parse_config(std::string(kMinimal) +
                                  "compression:\n"
                                  "  - method: quantization\n"
                                  "    params: {dtype: qint8}\n");
  ASSERT_EQ(c.experiments.size(), 1u);
  const ExperimentSpec& quant = c.experiments[0];
  EXPECT_EQ(quant.name, "quantize");
  EXPECT_EQ(quant.stages[0].method, "quantize");
  Params& qp = *quant.stages[0].params;
  EXPECT_EQ(qp.get_string("mode", ""), "dynamic");
  EXPECT_EQ(qp.get_int("weight_bits", 0), 8);
  EXPECT_NO_THROW(qp.finish());  // dtype itself is gone

  std::string m = config_error(std::string(kMinimal) +
                               "compression: [{method: quantize, params: {dtype: float16}}]\n");
  EXPECT_HAS(m, "compression[0].params.dtype: expected qint8");
  m = config_error(std::string(kMinimal) +
                   "compression: [{method: quantize, params: {dtype: qint8, weight_bits: 4}}]\n");
  EXPECT_HAS(m, "compression[0].params.dtype: dtype: qint8 means mode: dynamic, weight_bits: 8");

  // sparsity is renamed only for prune
  WorkflowConfig q = parse_config(std::string(kMinimal) +
                                  "compression: [{method: quantize, params: {sparsity: 0.5}}]\n");
  EXPECT_TRUE(q.experiments[0].stages[0].params->has("sparsity"));
  EXPECT_FALSE(q.experiments[0].stages[0].params->has("ratio"));

  m = config_error(std::string(kMinimal) + "compression: [{method: quantisation}]\n");
  EXPECT_HAS(m, "compression[0].method: unknown method 'quantisation'");
  EXPECT_HAS(m, "did you mean 'quantization'?");
}

TEST(Config, ShortDataFormMeansFashionMnist) {
  WorkflowConfig c = parse_config("model: {onnx: m.onnx}\ndata: {path: /d, batch_size: 32}\n");
  EXPECT_EQ(c.model.onnx, "m.onnx");
  EXPECT_EQ(c.data->dataset, "fashion-mnist");
  EXPECT_EQ(c.data->path, "/d");
  EXPECT_EQ(c.data->batch_size, 32);
  EXPECT_EQ(c.output.dir, "runs/default");
  EXPECT_TRUE(c.experiments.empty());
}

TEST(Config, DataSources) {
  WorkflowConfig csv = parse_config(
      "model: {zoo: mlp}\ndata: {dataset: csv, path: jets.csv, label: class, features: [f0, "
      "f1]}\n");
  EXPECT_EQ(csv.data->path, "jets.csv");
  EXPECT_EQ(csv.data->label_column, "class");
  EXPECT_EQ(csv.data->feature_columns, std::vector<std::string>({"f0", "f1"}));
  EXPECT_TRUE(csv.data->features.empty());

  WorkflowConfig csv2 =
      parse_config("model: {zoo: mlp}\ndata: {dataset: csv, path: j.csv, label_column: y}\n");
  EXPECT_EQ(csv2.data->label_column, "y");
  EXPECT_TRUE(csv2.data->feature_columns.empty());

  WorkflowConfig npy =
      parse_config("model: {zoo: mlp}\ndata: {dataset: npy, features: x.npy, labels: y.npy}\n");
  EXPECT_EQ(npy.data->features, "x.npy");
  EXPECT_EQ(npy.data->labels, "y.npy");

  WorkflowConfig h5 = parse_config(
      "model: {zoo: mlp}\n"
      "data: {dataset: hdf5, path: jets.h5, features: jetFeatures, labels: jetLabels}\n");
  EXPECT_EQ(h5.data->path, "jets.h5");
  EXPECT_EQ(h5.data->features, "jetFeatures");

  WorkflowConfig jets = parse_config(
      "model: {zoo: mlp}\n"
      "data: {dataset: synthetic-jets, samples: 1000, rare_fraction: 0.05, normalize: minmax,\n"
      "       split: {val: 0.2, test: 0.1}, limit: {train: 10, val: 5, test: 5}}\n");
  EXPECT_EQ(jets.data->samples, 1000);
  EXPECT_DOUBLE_EQ(jets.data->rare_fraction, 0.05);
  EXPECT_EQ(jets.data->normalize, "minmax");
  EXPECT_DOUBLE_EQ(jets.data->val_fraction, 0.2);
  EXPECT_DOUBLE_EQ(jets.data->test_fraction, 0.1);
  EXPECT_EQ(jets.data->limit_test, 5);
}

TEST(Config, UnknownKeyRejection) {
  std::string m = config_error(std::string(kMinimal) + "experimnets: []\n");
  EXPECT_HAS(m, "unknown key 'experimnets' at the top level");
  EXPECT_HAS(m, "did you mean 'experiments'?");
  EXPECT_HAS(m, "valid: ");
  EXPECT_HAS(m, "seed");

  m = config_error(std::string(kMinimal) + "baseline: {train: {epocs: 3}}\n");
  EXPECT_HAS(m, "unknown key 'epocs' in baseline.train");
  EXPECT_HAS(m, "epochs, ");
  EXPECT_HAS(m, "optimizer");
  EXPECT_HAS(m, "did you mean 'epochs'?");

  m = config_error(std::string(kMinimal) + "data: {path: /d, batchsize: 3}\n");
  EXPECT_HAS(m, "unknown key 'batchsize' in data");
  EXPECT_HAS(m, "did you mean 'batch_size'?");

  // features is a key of csv/npy/hdf5, not of an IDX data set
  m = config_error(std::string(kMinimal) + "data: {path: /d, features: x}\n");
  EXPECT_HAS(m, "unknown key 'features' in data");

  m = config_error(std::string(kMinimal) + "data: {path: /d, split: {vall: 0.1}}\n");
  EXPECT_HAS(m, "unknown key 'vall' in data.split");

  m = config_error("model: {zoo: a, parms: {}}\n");
  EXPECT_HAS(m, "unknown key 'parms' in model");

  m = config_error(std::string(kMinimal) + "output: {dir: x, exports: [onnx]}\n");
  EXPECT_HAS(m, "unknown key 'exports' in output");
  EXPECT_HAS(m, "did you mean 'export'?");

  m = config_error(
      std::string(kMinimal) +
      "experiments: [{name: a, stages: [{method: prune, finetune: {}, parmas: {}}]}]\n");
  EXPECT_HAS(m, "unknown key 'parmas' in experiments[0].stages[0]");
  EXPECT_HAS(m, "did you mean 'params'?");

  m = config_error(std::string(kMinimal) + "experiments: [{nmae: a, stages: [{method: prune}]}]\n");
  EXPECT_HAS(m, "unknown key 'nmae' in experiments[0]");

  m = config_error(std::string(kMinimal) +
                   "experiments: [{stages: [{method: prune, "
                   "finetune: {epochs: 1, lrr: 0.1}}]}]\n");
  EXPECT_HAS(m, "unknown key 'lrr' in experiments[0].stages[0].finetune");
}

TEST(Config, StageParamsAreCheckedLaterByTheMethod) {
  WorkflowConfig c = parse_config(std::string(kMinimal) +
                                  "experiments:\n"
                                  "  - stages:\n"
                                  "      - {method: pruning}\n"
                                  "      - {method: prune, params: {bogus: 1, ratio: 2}}\n");
  ASSERT_EQ(c.experiments.size(), 1u);
  EXPECT_EQ(c.experiments[0].name, "exp0");
  EXPECT_EQ(c.experiments[0].stages[0].method, "prune");
  Params& absent = *c.experiments[0].stages[0].params;
  EXPECT_TRUE(absent.keys().empty());
  EXPECT_EQ(absent.path(), "experiments[0].stages[0].params");
  Params& p = *c.experiments[0].stages[1].params;
  std::string m = error_of<ConfigError>([&] { p.get_double("ratio", 0.5, 0.0, 1.0); });
  EXPECT_HAS(m, "experiments[0].stages[1].params.ratio: expected a number in [0, 1], got '2'");
  m = error_of<ConfigError>([&] { p.finish(); });
  EXPECT_HAS(m, "unknown key 'bogus' in experiments[0].stages[1].params");

  // ... and the method itself rejects them when the pass is made
  const compress::MethodInfo* prune = compress::find_method("prune");
  ASSERT_NE(prune, nullptr);
  std::shared_ptr<Params> fresh = c.experiments[0].stages[1].params->clone();
  m = error_of<ConfigError>([&] { prune->make(*fresh); });
  EXPECT_HAS(m, "experiments[0].stages[1].params.ratio");
  EXPECT_HAS(m, "got '2'");
  EXPECT_NO_THROW(prune->make(*c.experiments[0].stages[0].params));  // all defaults
}

TEST(Config, TypeMismatchRejection) {
  std::string m = config_error(std::string(kMinimal) + "data: {path: /d, batch_size: abc}\n");
  EXPECT_HAS(m, "data.batch_size: expected an integer >= 1, got 'abc'");
  m = config_error(std::string(kMinimal) + "data: {path: /d, batch_size: 0}\n");
  EXPECT_HAS(m, "data.batch_size: expected an integer >= 1, got '0'");
  m = config_error(std::string(kMinimal) + "baseline: {train: {lr: -1}}\n");
  EXPECT_HAS(m, "baseline.train.lr: expected a number > 0, got '-1'");
  m = config_error(std::string(kMinimal) + "baseline: {train: {lr: fast}}\n");
  EXPECT_HAS(m, "baseline.train.lr: expected a number > 0, got 'fast'");
  m = config_error(std::string(kMinimal) + "baseline: {train: {epochs: 1.5}}\n");
  EXPECT_HAS(m, "baseline.train.epochs: expected an integer >= 0, got '1.5'");
  m = config_error(std::string(kMinimal) + "baseline: {train: {optimizer: adamm}}\n");
  EXPECT_HAS(m, "expected one of: sgd, adam, adamw");
  EXPECT_HAS(m, "did you mean 'adam'?");
  m = config_error(std::string(kMinimal) + "baseline: {train: {momentum: 1}}\n");
  EXPECT_HAS(m, "baseline.train.momentum: expected a number in [0, 1)");
  m = config_error(std::string(kMinimal) + "baseline: {train: {gamma: 0}}\n");
  EXPECT_HAS(m, "baseline.train.gamma: expected a number in (0, 1]");
  m = config_error(std::string(kMinimal) +
                   "baseline: {train: {optimizer: adam, nesterov: true}}\n");
  EXPECT_HAS(m, "baseline.train.nesterov");
  EXPECT_HAS(m, "optimizer: sgd");
  m = config_error(std::string(kMinimal) + "baseline: {train: {keep_best: perhaps}}\n");
  EXPECT_HAS(m, "baseline.train.keep_best: expected a boolean");
  m = config_error("seed: -1\n" + std::string(kMinimal));
  EXPECT_HAS(m, "seed: expected an integer >= 0, got '-1'");
  m = config_error(std::string(kMinimal) + "data: {dataset: synthetic-jets, rare_fraction: 1}\n");
  EXPECT_HAS(m, "data.rare_fraction: expected a number in (0, 1)");
  m = config_error(std::string(kMinimal) + "data: {path: /d, split: {val: 0.6, test: 0.5}}\n");
  EXPECT_HAS(m, "data.split: val + test must be < 1");
  m = config_error(std::string(kMinimal) + "data: {dataset: parquet}\n");
  EXPECT_HAS(m, "data.dataset: expected one of: fashion-mnist, mnist-idx, csv, arff, npy, hdf5");
  m = config_error(std::string(kMinimal) + "data: [1, 2]\n");
  EXPECT_HAS(m, "data: expected a map");
  m = config_error(std::string(kMinimal) + "experiments: {name: a}\n");
  EXPECT_HAS(m, "experiments: expected a list of maps");
  m = config_error(std::string(kMinimal) + "output: {export: [onnx, pdf]}\n");
  EXPECT_HAS(m, "output.export[1]: expected one of: onnx, qonnx, torchscript, cpp, got 'pdf'");
  m = config_error(std::string(kMinimal) + "output: {latency_batches: [1, 0]}\n");
  EXPECT_HAS(m, "output.latency_batches[1]: expected an integer >= 1");
  m = config_error(std::string(kMinimal) + "output: {latency: sometimes}\n");
  EXPECT_HAS(m, "output.latency: expected a boolean");
}

TEST(Config, MissingRequiredKeys) {
  std::string m = config_error(std::string(kMinimal) + "data: {dataset: csv}\n");
  EXPECT_HAS(m, "missing required key 'path' in data");
  m = config_error(std::string(kMinimal) + "data: {dataset: npy, features: x.npy}\n");
  EXPECT_HAS(m, "missing required key 'labels' in data");
  m = config_error(std::string(kMinimal) + "data: {dataset: npy}\n");
  EXPECT_HAS(m, "missing required key 'features' in data");
  // fashion-mnist (the default data set) has a default path; mnist-idx has none
  WorkflowConfig fm = parse_config(std::string(kMinimal) + "data: {batch_size: 3}\n");
  EXPECT_EQ(fm.data->dataset, "fashion-mnist");
  EXPECT_EQ(fm.data->path, "/usr/share/datasets/fashion-mnist");
  m = config_error(std::string(kMinimal) + "data: {dataset: mnist-idx, batch_size: 3}\n");
  EXPECT_HAS(m, "missing required key 'path' in data");
  m = config_error(std::string(kMinimal) + "data: {dataset: hdf5, features: f}\n");
  EXPECT_HAS(m, "missing required key 'path' in data");

  m = config_error("seed: 1\n");
  EXPECT_HAS(m, "missing required key 'model'");
  m = config_error("model: {params: {a: 1}}\n");
  EXPECT_HAS(m, "model: expected exactly one of zoo (or type), onnx, checkpoint; got none");
  m = config_error("model: {zoo: a, onnx: b.onnx}\n");
  EXPECT_HAS(m, "got zoo, onnx");
  m = config_error("model: {onnx: b.onnx, params: {a: 1}}\n");
  EXPECT_HAS(m, "model.params: parameters apply to zoo models only");

  m = config_error(std::string(kMinimal) + "experiments: [{name: a}]\n");
  EXPECT_HAS(m, "missing required key 'stages' in experiments[0]");
  m = config_error(std::string(kMinimal) + "experiments: [{name: a, stages: []}]\n");
  EXPECT_HAS(m, "experiments[0].stages: expected at least one stage");
  m = config_error(std::string(kMinimal) + "experiments: [{stages: [{params: {}}]}]\n");
  EXPECT_HAS(m, "missing required key 'method' in experiments[0].stages[0]");
  m = config_error(std::string(kMinimal) + "pipeline: {budget: 3}\n");
  EXPECT_HAS(m, "missing required key 'type' in pipeline");
}

TEST(Config, YamlSyntaxErrorNamesLineAndColumn) {
  std::string m = error_of<InputError>(
      [] { parse_config("seed: 0\nmodel: {zoo: a}\ndata: [1, 2\n", {}, "bad.yaml"); });
  EXPECT_HAS(m, "bad.yaml:");
  EXPECT_HAS(m, "YAML syntax error");

  m = error_of<InputError>(
      [] { parse_config("seed: 0\nmodel:\n  zoo: a\n zoo: b\n", {}, "x.yaml"); });
  EXPECT_HAS(m, "x.yaml:4:");

  m = error_of<InputError>([] { parse_config("seed: 0\nseed: 1\n", {}, "d.yaml"); });
  EXPECT_HAS(m, "d.yaml:2:1: duplicate key 'seed'");

  m = error_of<InputError>([] { parse_config("- a\n- b\n"); });
  EXPECT_HAS(m, "expected a map of settings");

  m = error_of<InputError>([] { load_config("/nonexistent/dir/w.yaml"); });
  EXPECT_HAS(m, "cannot read config file '/nonexistent/dir/w.yaml'");
}

TEST(Config, ErrorsFromAFileNameTheFile) {
  std::string m = error_of<ConfigError>(
      [] { load_config(fixture("quickstart.yaml"), {"baseline.train.epocs=3"}); });
  EXPECT_HAS(m, "quickstart.yaml: unknown key 'epocs' in baseline.train");
}

TEST(Config, Overrides) {
  WorkflowConfig c = load_config(
      fixture("quickstart.yaml"),
      {"data.batch_size=32", "baseline.train.lr=0.01", "experiments.0.stages.0.params.ratio=0.3",
       "output.export=[onnx, cpp]", "experiments[1].name=lr2", "threads=2"});
  EXPECT_EQ(c.data->batch_size, 32);
  EXPECT_DOUBLE_EQ(c.baseline_train->lr, 0.01);
  EXPECT_DOUBLE_EQ(c.experiments[0].stages[0].params->get_double("ratio", 0), 0.3);
  EXPECT_EQ(c.experiments[0].stages[0].params->path(), "experiments[0].stages[0].params");
  EXPECT_EQ(c.output.exports, std::vector<std::string>({"onnx", "cpp"}));
  EXPECT_EQ(c.experiments[1].name, "lr2");
  EXPECT_EQ(c.threads, 2);
  // the tree records the config after overrides
  EXPECT_EQ(c.tree->get_map("data")->get_int("batch_size", 0), 32);

  // overrides may create sections
  WorkflowConfig d = parse_config(kMinimal, {"baseline.train.epochs=2"});
  EXPECT_EQ(d.baseline_train->epochs, 2);

  std::string m = config_error(kMinimal, {"data.path=/d", "data.batch_size=abc"});
  EXPECT_HAS(m, "data.batch_size: expected an integer >= 1, got 'abc'");
  m = config_error(kMinimal, {"data.path=/d", "data.batchsize=3"});
  EXPECT_HAS(m, "unknown key 'batchsize' in data");
  EXPECT_HAS(m, "did you mean 'batch_size'?");
  m = config_error(kMinimal, {"experiments.2.name=x"});
  EXPECT_HAS(m, "--set experiments.2.name=x: experiments does not exist");
  m = config_error(kMinimal, {"model.zoo.name=x"});
  EXPECT_HAS(m, "model.zoo is a scalar");
  m = config_error(kMinimal, {"seed"});
  EXPECT_HAS(m, "expected key.path=value");
}

TEST(Config, Aliases) {
  EXPECT_EQ(canonical_method("pruning"), "prune");
  EXPECT_EQ(canonical_method("prune"), "prune");
  EXPECT_EQ(canonical_method("nonsense"), "nonsense");

  WorkflowConfig c = parse_config(std::string(kMinimal) +
                                  "experiments: [{stages: [{method: pruning, "
                                  "finetuning: {epochs: 2}, params: {sparsity: 0.25}}]}]\n");
  EXPECT_EQ(c.experiments[0].stages[0].method, "prune");
  EXPECT_EQ(c.experiments[0].stages[0].finetune->epochs, 2);
  Params& renamed = *c.experiments[0].stages[0].params;
  EXPECT_FALSE(renamed.has("sparsity"));
  EXPECT_DOUBLE_EQ(renamed.get_double("ratio", 0), 0.25);

  std::string m = config_error(std::string(kMinimal) +
                               "compression: [{method: prune, finetune: {}, finetuning: {}}]\n");
  EXPECT_HAS(m, "both 'finetune' and 'finetuning' given in compression[0]");
  m = config_error(std::string(kMinimal) +
                   "compression: [{method: prune, params: {sparsity: 0.5, ratio: 0.5}}]\n");
  EXPECT_HAS(m, "both 'sparsity' and 'ratio' given in compression[0].params");
  m = config_error("model: {zoo: a, type: b}\n");
  EXPECT_HAS(m, "both 'zoo' and 'type'");
  m = config_error(std::string(kMinimal) +
                   "data: {dataset: csv, path: a, label: x, label_column: y}\n");
  EXPECT_HAS(m, "both 'label' and 'label_column'");

  // the tree keeps the config as written; only the stage's params are rewritten
  EXPECT_TRUE(c.tree->get_map_list("experiments")[0]->get_map_list("stages")[0]
                  ->get_map("params")->has("sparsity"));

  WorkflowConfig s = parse_config("model: zoo:small_cnn\n");
  EXPECT_EQ(s.model.zoo, "small_cnn");
  EXPECT_EQ(parse_config("model: m.sqz\n").model.checkpoint, "m.sqz");
}

TEST(Config, ExperimentNames) {
  std::string m = config_error(std::string(kMinimal) +
                               "experiments:\n"
                               "  - {name: a, stages: [{method: prune}]}\n"
                               "  - {name: a, stages: [{method: pruning}]}\n");
  EXPECT_HAS(m, "experiments[1].name: duplicate experiment name 'a'");

  m = config_error(std::string(kMinimal) +
                   "experiments: [{name: a/b, stages: [{method: prune}]}]\n");
  EXPECT_HAS(m, "experiments[0].name");

  // Both forms concatenate; generated names skip the ones the user chose.
  WorkflowConfig c = parse_config(std::string(kMinimal) +
                                  "experiments: [{name: prune, stages: [{method: prune}]}]\n"
                                  "compression:\n"
                                  "  - {method: pruning}\n"
                                  "  - {method: prune, name: prune-3}\n"
                                  "  - {method: prune}\n"
                                  "  - {method: prune, name: mine}\n");
  ASSERT_EQ(c.experiments.size(), 5u);
  EXPECT_EQ(c.experiments[0].name, "prune");
  EXPECT_EQ(c.experiments[1].name, "prune-2");
  EXPECT_EQ(c.experiments[2].name, "prune-3");
  EXPECT_EQ(c.experiments[3].name, "prune-4");  // skips prune-3, chosen by the user further down
  EXPECT_EQ(c.experiments[4].name, "mine");
  for (const ExperimentSpec& e : c.experiments) EXPECT_EQ(e.stages[0].method, "prune");
}

TEST(Config, BadMethodName) {
  std::string m = config_error(std::string(kMinimal) +
                               "experiments: [{stages: [{method: pruning}, {method: prnue}]}]\n");
  EXPECT_HAS(m, "experiments[0].stages[1].method: unknown method 'prnue'");
  ASSERT_FALSE(compress::method_names().empty());
  EXPECT_HAS(m, "(valid: " + joined_method_names() + ")");
  EXPECT_HAS(m, "did you mean 'prune'?");
  // aliases are suggested too
  m = config_error(std::string(kMinimal) + "compression: [{method: prunning}]\n");
  EXPECT_HAS(m, "compression[0].method: unknown method 'prunning'");
  EXPECT_HAS(m, "did you mean 'pruning'?");
}

TEST(Config, Pipeline) {
  // Every type parses its own keys: hep-trigger's budget, and output.fpga and the hep metrics
  // it implies.
  const std::string jets = "data: {dataset: synthetic-jets, samples: 500}\n";
  WorkflowConfig c = parse_config(std::string(kMinimal) + jets +
                                  "pipeline: {type: hep-trigger, target_latency_ns: 80, "
                                  "clock_mhz: 250, guard: {max_drop: 0.01}}\n");
  ASSERT_TRUE(c.pipeline);
  EXPECT_EQ(c.pipeline->type, "hep-trigger");
  EXPECT_EQ(c.pipeline->block->path(), "pipeline");
  ASSERT_TRUE(c.pipeline->hep_trigger);
  EXPECT_DOUBLE_EQ(c.pipeline->hep_trigger->target_latency_ns, 80.0);
  ASSERT_TRUE(c.output.fpga);
  EXPECT_DOUBLE_EQ(c.output.fpga->clock_mhz, 250.0);
  EXPECT_TRUE(c.output.hep());
  EXPECT_TRUE(c.pipeline->guard);
  std::string m = config_error(std::string(kMinimal) + jets +
                               "pipeline: {type: hep-trigger, steps: 3, guard: {max_drop: 0.01}, "
                               "target_latency_ns: 80}\n");
  EXPECT_HAS(m, "unknown key 'steps' in pipeline");

  m = config_error(std::string(kMinimal) + "pipeline: {type: progresive}\n");
  EXPECT_HAS(m, "pipeline.type: expected one of: progressive, validation, combinations, autotune");
  EXPECT_HAS(m, "did you mean 'progressive'?");

  // the hep pipelines compress the model given: it is required
  m = config_error("pipeline: {type: hep-jet, guard: {max_drop: 0.02}}\n");
  EXPECT_HAS(m, "missing required key 'model'");
}

const char* kPipelineHead =
    "model: {zoo: jet_tagger}\ndata: {dataset: synthetic-jets, samples: 500}\n";

TEST(Config, ValidationAndCombinationsPipelines) {
  WorkflowConfig v = parse_config(std::string(kPipelineHead) + R"(pipeline:
  type: validation
  guard: {max_drop: 0.02}
  steps:
    - {method: prune, params: {ratio: 0.5}, finetune: {epochs: 1}}
    - {name: int8, method: quantization, params: {dtype: qint8}}
    - {method: prune, params: {ratio: 0.9}}
)");
  ASSERT_TRUE(v.pipeline);
  EXPECT_EQ(v.pipeline->type, "validation");
  ASSERT_TRUE(v.pipeline->guard);
  EXPECT_DOUBLE_EQ(v.pipeline->guard->max_drop, 0.02);
  EXPECT_TRUE(v.pipeline->guard->relative);  // the default
  ASSERT_EQ(v.pipeline->steps.size(), 3u);
  EXPECT_EQ(v.pipeline->steps[0].name, "prune");
  EXPECT_EQ(v.pipeline->steps[1].name, "int8");
  EXPECT_EQ(v.pipeline->steps[1].stage.method, "quantize");  // aliases resolved as for stages
  EXPECT_EQ(v.pipeline->steps[2].name, "prune-2");
  EXPECT_TRUE(v.pipeline->steps[0].stage.finetune);
  EXPECT_TRUE(v.experiments.empty());

  // preserve_accuracy, in the guard or one level up, is the relative form.
  for (const char* guard : {"guard: {preserve_accuracy: 0.95}", "preserve_accuracy: 0.95"}) {
    WorkflowConfig p = parse_config(std::string(kPipelineHead) + "pipeline: {type: validation, " +
                                    guard + ", steps: [{method: prune}]}\n");
    ASSERT_TRUE(p.pipeline->guard) << guard;
    EXPECT_NEAR(p.pipeline->guard->max_drop, 0.05, 1e-12);
    EXPECT_TRUE(p.pipeline->guard->relative);
  }
  WorkflowConfig a =
      parse_config(std::string(kPipelineHead) +
                   "pipeline: {type: combinations, guard: {max_drop: 0.005, relative: false}, "
                   "max_candidates: 5, steps: [{method: prune}, {method: lowrank}]}\n");
  EXPECT_FALSE(a.pipeline->guard->relative);
  EXPECT_EQ(a.pipeline->max_candidates, 5);
  // combinations may run without a guard (every candidate passes; ranked by compression)
  WorkflowConfig n = parse_config(std::string(kPipelineHead) +
                                  "pipeline: {type: combinations, steps: [{method: prune}]}\n");
  EXPECT_FALSE(n.pipeline->guard);
  EXPECT_EQ(n.pipeline->max_candidates, 64);
}

TEST(Config, BadPipelineNamesTheKey) {
  const std::string head = kPipelineHead;
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"pipeline: {type: validation, guard: {max_drop: 0.01}, stpes: [{method: prune}]}",
       {"missing required key 'steps' in pipeline"}},
      {"pipeline: {type: validation, guard: {max_drop: 0.01}, steps: [{method: prune}], stpes: 1}",
       {"unknown key 'stpes' in pipeline", "did you mean 'steps'?"}},
      {"pipeline: {type: validation, guard: {max_drop: 0.01}, steps: []}",
       {"pipeline.steps: expected at least one step"}},
      {"pipeline: {type: validation, steps: [{method: prune}]}",
       {"missing required key 'guard' in pipeline"}},
      {"pipeline: {type: validation, guard: {max_dorp: 0.01}, steps: [{method: prune}]}",
       {"unknown key 'max_dorp' in pipeline.guard", "did you mean 'max_drop'?"}},
      {"pipeline: {type: validation, guard: {relative: true}, steps: [{method: prune}]}",
       {"missing required key 'max_drop' in pipeline.guard"}},
      {"pipeline: {type: validation, guard: {max_drop: 0.01, relativ: true}, steps: [{method: "
       "prune}]}",
       {"unknown key 'relativ' in pipeline.guard", "did you mean 'relative'?"}},
      {"pipeline: {type: validation, guard: {max_drop: -0.01}, steps: [{method: prune}]}",
       {"pipeline.guard", "max_drop = -0.01", "not even the baseline"}},
      {"pipeline: {type: validation, guard: {max_drop: 1}, steps: [{method: prune}]}",
       {"pipeline.guard", "max_drop = 1", "[0, 1)"}},
      {"pipeline: {type: validation, preserve_accuracy: 1.2, steps: [{method: prune}]}",
       {"pipeline.preserve_accuracy", "preserve_accuracy = 1.2", "not even the baseline"}},
      {"pipeline: {type: validation, guard: {max_drop: 0.01, preserve_accuracy: 0.99}, steps: "
       "[{method: prune}]}",
       {"both 'max_drop' and 'preserve_accuracy'"}},
      {"pipeline: {type: validation, guard: {max_drop: 0.01}, preserve_accuracy: 0.99, steps: "
       "[{method: prune}]}",
       {"both 'guard' and 'preserve_accuracy'"}},
      {"pipeline: {type: validation, guard: {preserve_accuracy: 0.99, relative: false}, steps: "
       "[{method: prune}]}",
       {"pipeline.guard.relative", "preserve_accuracy is relative"}},
      {"pipeline: {type: validation, guard: {max_drop: 0.01}, max_candidates: 3, steps: [{method: "
       "prune}]}",
       {"unknown key 'max_candidates' in pipeline"}},
      {"pipeline: {type: combinations, max_candidates: 0, steps: [{method: prune}]}",
       {"pipeline.max_candidates"}},
      {"pipeline: {type: combinations, steps: [{method: prnue}]}",
       {"pipeline.steps[0].method: unknown method 'prnue'", "did you mean 'prune'?"}},
      {"pipeline: {type: combinations, steps: [{name: a, method: prune}, {name: a, method: "
       "lowrank}]}",
       {"pipeline.steps[1].name: duplicate step name 'a'"}},
      {"pipeline: {type: combinations, steps: [{method: prune}]}\nexperiments: [{name: x, stages: "
       "[{method: prune}]}]",
       {"experiments: a pipeline chooses its own stages"}},
      {"pipeline: {type: combinations, steps: [{method: prune}]}\ncompression: [{method: prune}]",
       {"compression: a pipeline chooses its own stages"}},
  };
  for (const auto& [yaml, words] : cases) {
    std::string m = config_error(head + yaml + "\n");
    for (const auto& w : words) EXPECT_HAS(m, w) << yaml;
  }
  // The guard judges on the validation split: it needs data with one.
  EXPECT_HAS(config_error(
                 "model: {zoo: jet_tagger}\npipeline: {type: validation, guard: {max_drop: 0.01}, "
                 "steps: [{method: prune}]}\n"),
             "no data: block");
  EXPECT_HAS(
      config_error(
          "model: {zoo: jet_tagger}\ndata: {dataset: synthetic-jets, split: {val: 0}}\n"
          "pipeline: {type: validation, guard: {max_drop: 0.01}, steps: [{method: prune}]}\n"),
      "data.split.val is 0");
  // validation and combinations need a model.
  EXPECT_HAS(config_error("pipeline: {type: combinations, steps: [{method: prune}]}\n"),
             "missing required key 'model'");
}

TEST(Config, TrainOptionsValidate) {
  train::TrainOptions o;
  EXPECT_NO_THROW(o.validate());
  o.lr = 0;
  EXPECT_HAS(error_of<ConfigError>([&] { o.validate(); }), "lr = 0: expected a number > 0");
  o = {};
  o.optimizer = "adam";
  o.nesterov = true;
  EXPECT_THROW(o.validate(), ConfigError);
  o = {};
  o.schedule = "linear";
  EXPECT_HAS(error_of<ConfigError>([&] { o.validate(); }), "one of: constant, step, cosine");
}

TEST(Config, DataOptionsFromStandaloneFile) {
  // `squeeze eval --data DATA.yaml` reads a data block at the top level.
  auto tree =
      yaml_to_params("dataset: npy\nfeatures: x.npy\nlabels: y.npy\nbatch_size: 16\n", "data.yaml");
  data::DataOptions d = data::DataOptions::from_params(*tree);
  EXPECT_EQ(d.features, "x.npy");
  EXPECT_EQ(d.batch_size, 16);
  auto bad = yaml_to_params("dataset: npy\nfeatures: x.npy\nlabels: y.npy\nbatch: 16\n", "d.yaml");
  EXPECT_HAS(error_of<ConfigError>([&] { data::DataOptions::from_params(*bad); }),
             "unknown key 'batch' at the top level");
}

}  // namespace
}  // namespace squeeze::pipeline

namespace squeeze::pipeline {
namespace {

TEST(ConfigRecommend, DefaultsAndValues) {
  WorkflowConfig d = parse_config(kMinimal);
  EXPECT_DOUBLE_EQ(d.output.recommend.max_drop, 0.01);
  EXPECT_EQ(d.output.recommend.by, "size");
  WorkflowConfig c = parse_config(std::string(kMinimal) +
                                  "output: {recommend: {max_drop: 0.005, by: latency, batch: 64}}\n");
  EXPECT_DOUBLE_EQ(c.output.recommend.max_drop, 0.005);
  EXPECT_EQ(c.output.recommend.by, "latency");
  EXPECT_EQ(c.output.recommend.latency_key, "batch64");
  WorkflowConfig f = parse_config(std::string(kMinimal) + "output: {recommend: {by: flops}}\n",
                                  {"output.recommend.max_drop=0.02"});
  EXPECT_EQ(f.output.recommend.by, "flops");
  EXPECT_DOUBLE_EQ(f.output.recommend.max_drop, 0.02);
}

TEST(ConfigRecommend, BadValuesAreRefused) {
  std::string m = config_error(std::string(kMinimal) + "output: {recommend: {by: speed}}\n");
  EXPECT_HAS(m, "output.recommend.by");
  EXPECT_HAS(m, "size");
  EXPECT_HAS(m, "latency");
  EXPECT_HAS(m, "flops");
  m = config_error(std::string(kMinimal) + "output: {recommend: {max_drop: 1.0}}\n");
  EXPECT_HAS(m, "output.recommend.max_drop");
  EXPECT_HAS(m, "0.01 = 1 percentage point");
  m = config_error(std::string(kMinimal) + "output: {recommend: {max_drop: -0.1}}\n");
  EXPECT_HAS(m, "[0, 1)");
  m = config_error(std::string(kMinimal) + "output: {latency: false, recommend: {by: latency}}\n");
  EXPECT_HAS(m, "output.recommend.by: latency needs the latency measured");
  m = config_error(std::string(kMinimal) + "output: {recommend: {by: latency, batch: 8}}\n");
  EXPECT_HAS(m, "output.recommend.batch: 8 is not a measured batch size");
  EXPECT_HAS(m, "1, 64");
  m = config_error(std::string(kMinimal) + "output: {recommend: {by: size, batch: 1}}\n");
  EXPECT_HAS(m, "only used with by: latency");
  m = config_error(std::string(kMinimal) + "output: {recommend: {max_dorp: 0.01}}\n");
  EXPECT_HAS(m, "unknown key 'max_dorp' in output.recommend");
  EXPECT_HAS(m, "did you mean 'max_drop'?");
  m = config_error(std::string(kMinimal) + "output: {recomend: {by: size}}\n");
  EXPECT_HAS(m, "did you mean 'recommend'?");
}

}  // namespace
}  // namespace squeeze::pipeline
