// The command line end to end, in-process through run_cli: each command on small models, and
// each kind of bad input giving a clear message and exit code 2 without partial outputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "squeeze/data/dataset.h"
#include "squeeze/io/sqz.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/log.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

using Result = testing::CliResult;
using testing::cli;

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Exports a zoo model to dir/model.onnx and runs a workflow on it into dir/out; `rest` is the
// workflow's YAML after its model line.
Result run_on_onnx(TempDir& dir, const std::string& zoo, const std::string& rest) {
  Result exported = cli({"export", "zoo:" + zoo, "--to", "onnx", "--out", dir.file("model.onnx")});
  if (exported.code != 0) return exported;
  write(dir.file("w.yaml"), "model: {onnx: " + dir.file("model.onnx") + "}\n" + rest);
  return cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
}

bool has_temp_files(const std::string& dir) {
  if (!fs::exists(dir)) return false;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) return true;
  return false;
}

TEST(Cli, ZooListsModelsAndMethods) {
  auto r = cli({"zoo"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("small_cnn"), std::string::npos);
  EXPECT_NE(r.out.find("prune"), std::string::npos);
}

TEST(Cli, InspectJsonFollowsTheContract) {
  auto r = cli({"inspect", "zoo:small_cnn", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["model"], "zoo:small_cnn");
  EXPECT_EQ(j["total"]["params"], 421642);
  EXPECT_EQ(j["total"]["nonzero_params"], 421642);
  EXPECT_GT(j["total"]["size_bytes"].get<int64_t>(), 421642 * 4 - 1);
  EXPECT_GT(j["total"]["flops"].get<int64_t>(), 0);
  for (const char* key : {"name", "op", "input_shape", "output_shape", "params", "nonzero_params", "flops", "weight_bits"})
    EXPECT_TRUE(j["layers"][0].contains(key)) << key;
  EXPECT_EQ(j["layers"][0]["weight_bits"], 32);
  EXPECT_TRUE(j["layers"][0]["output_shape"][0].is_null());  // dynamic batch
  auto text = cli({"inspect", "zoo:resnet8"});
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("BatchNorm"), std::string::npos);
}

TEST(Cli, BenchJsonFollowsTheContract) {
  auto r = cli({"bench", "zoo:jet_tagger", "--batch", "1", "--batch", "8", "--threads", "1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["threads"], 1);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][1]["batch"], 8);
  EXPECT_GT(j["results"][0]["latency_us"]["median"].get<double>(), 0.0);
  EXPECT_GT(j["results"][0]["samples_per_s"].get<double>(), 0.0);
}

TEST(Cli, BenchSaysWhatTheConvolutionsRanOn) {
  // jet_tagger has no convolution: no line, an empty map. small_cnn's two run prepacked on oneDNN.
  auto mlp = cli({"bench", "zoo:jet_tagger", "--batch", "1", "--runs", "5", "--json"});
  ASSERT_EQ(mlp.code, 0) << mlp.err;
  EXPECT_TRUE(json::parse(mlp.out)["results"][0]["convolutions"].empty());
  auto r = cli({"bench", "zoo:small_cnn", "--batch", "2", "--runs", "5", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json convs = json::parse(r.out)["results"][0]["convolutions"];
  int64_t total = 0;
  for (const auto& [impl, count] : convs.items()) {
    EXPECT_NE(impl, "at::convolution");
    total += count.get<int64_t>();
  }
  EXPECT_EQ(total, 2) << convs.dump();
  auto text = cli({"bench", "zoo:small_cnn", "--batch", "2", "--runs", "5"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("convolutions at batch 2 ("), std::string::npos) << text.out;
}

TEST(Cli, InferWritesNpyOutputs) {
  TempDir dir;
  data::write_npy(dir.file("x.npy"), at::randn({5, 16}));
  auto r = cli({"infer", "zoo:jet_tagger", "--input", dir.file("x.npy"), "--output", dir.file("y.npy"), "--batch", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor y = data::read_npy(dir.file("y.npy"));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{5, 5}));
}

TEST(Cli, InferRejectsTheWrongInputShape) {
  TempDir dir;
  data::write_npy(dir.file("x.npy"), at::randn({5, 15}));
  auto r = cli({"infer", "zoo:jet_tagger", "--input", dir.file("x.npy"), "--output", dir.file("y.npy")});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("expects"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("y.npy")));
}

const char* kTinyWorkflow = R"(
seed: 1
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 3000, batch_size: 128, split: {val: 0.1, test: 0.2}}
baseline:
  train: {epochs: 2, optimizer: adam, lr: 3.0e-3}
experiments:
  - name: p50
    stages:
      - method: prune
        params: {ratio: 0.5}
        finetune: {epochs: 1, lr: 1.0e-3}
  - name: p90-gradual
    stages:
      - method: prune
        params: {ratio: 0.9, schedule: polynomial, update_every: 5}
        finetune: {epochs: 2, lr: 1.0e-3}
output: {dir: OUT, latency_batches: [1, 16]}
)";

TEST(Cli, RunWritesReportCheckpointsAndMatchingSizes) {
  TempDir dir;
  std::string yaml = kTinyWorkflow;
  yaml.replace(yaml.find("OUT"), 3, dir.file("run"));
  write(dir.file("w.yaml"), yaml);
  auto r = cli({"run", dir.file("w.yaml")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("p90-gradual"), std::string::npos) << r.out;
  std::ifstream in(dir.file("run/report.json"));
  json rep = json::parse(in);
  for (const char* key : {"squeeze_version", "config", "environment", "baseline", "results"})
    EXPECT_TRUE(rep.contains(key)) << key;
  EXPECT_EQ(rep["environment"]["threads"].is_null(), false);
  const json& base = rep["baseline"];
  EXPECT_GT(base["accuracy"].get<double>(), 0.4);
  EXPECT_TRUE(base["latency_us"].contains("batch16"));
  ASSERT_EQ(rep["results"].size(), 2u);
  for (const json& res : rep["results"]) {
    for (const char* key : {"name", "stages", "accuracy", "accuracy_drop", "params", "nonzero_params", "size_bytes",
                            "compression_ratio", "param_ratio", "flops", "flops_ratio", "speedup", "history", "artifacts"})
      EXPECT_TRUE(res.contains(key)) << key;
    EXPECT_NEAR(res["accuracy_drop"].get<double>(), base["accuracy"].get<double>() - res["accuracy"].get<double>(), 1e-9);
    // size_bytes equals the .sqz file within a few kB of header; so do the ratios.
    auto ckpt = fs::path(dir.file("run")) / res["artifacts"]["checkpoint"].get<std::string>();
    auto base_ckpt = fs::path(dir.file("run")) / base["artifacts"]["checkpoint"].get<std::string>();
    ASSERT_TRUE(fs::exists(ckpt));
    EXPECT_NEAR(double(fs::file_size(ckpt)), res["size_bytes"].get<double>(), 8192.0);
    double file_ratio = double(fs::file_size(base_ckpt)) / double(fs::file_size(ckpt));
    EXPECT_GT(res["compression_ratio"].get<double>(), 1.0);
    EXPECT_TRUE(res["speedup"].contains("batch1"));
    (void)file_ratio;  // tiny models: the header dominates; the quickstart test checks the 5%
  }
  // The gradual schedule reached its target: 90% of the prunable weights are zero.
  EXPECT_LT(rep["results"][1]["nonzero_params"].get<double>(), 0.2 * rep["baseline"]["params"].get<double>());
  EXPECT_TRUE(fs::exists(dir.file("run/report.md")));
  EXPECT_TRUE(fs::exists(dir.file("run/report.html")));
  EXPECT_TRUE(fs::exists(dir.file("run/config.yaml")));
  EXPECT_FALSE(has_temp_files(dir.file("run")));

  // The checkpoint reloads and evaluates to the reported accuracy.
  write(dir.file("data.yaml"), "data: {dataset: synthetic-jets, samples: 3000, split: {val: 0.1, test: 0.2}}\n");
  auto ev = cli({"--seed", "1", "eval", (fs::path(dir.file("run")) / rep["results"][0]["artifacts"]["checkpoint"].get<std::string>()).string(),
                 "--data", dir.file("data.yaml"), "--json"});
  ASSERT_EQ(ev.code, 0) << ev.err;
  EXPECT_NEAR(json::parse(ev.out)["accuracy"].get<double>(), rep["results"][0]["accuracy"].get<double>(), 1e-9);
}

// Bad inputs: clear message, exit 2, nothing half-written.
struct BadCase {
  std::string yaml;
  std::vector<std::string> must_mention;
};

TEST(Cli, BadWorkflowsExitWithTwoAndNameTheProblem) {
  std::vector<BadCase> cases = {
      {"model: {zoo: jet_tagger}\nbaseline: {train: {epocs: 1}}\ndata: {dataset: synthetic-jets}\n",
       {"epocs", "epochs"}},
      {"model: {zoo: jet_tagger}\ndata: {dataset: synthetic-jets, batch_size: abc}\n", {"batch_size", "abc"}},
      {"model: {zoo: jet_tagger}\ndata: {dataset: fashion-mnist, path: /nonexistent/dir}\n", {"/nonexistent/dir"}},
      {"model: {zoo: jet_tagger}\nexperiments: [{name: a, stages: [{method: prune, params: {ratoi: 0.5}}]}]\n",
       {"ratoi", "ratio"}},
      {"model: {zoo: jet_tagger}\nexperiments: [{name: a, stages: [{method: prnue}]}]\n", {"prnue", "prune"}},
      {"model: {zoo: no_such_model}\n", {"no_such_model", "small_cnn"}},
      {"model: {zoo: jet_tagger\n", {"w.yaml:2", "YAML"}},
  };
  for (const auto& c : cases) {
    TempDir dir;
    write(dir.file("w.yaml"), c.yaml);
    auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
    EXPECT_EQ(r.code, 2) << c.yaml << "\n" << r.err;
    for (const auto& word : c.must_mention) EXPECT_NE(r.err.find(word), std::string::npos) << word << " in: " << r.err;
    EXPECT_FALSE(fs::exists(dir.file("out/report.json")));
    EXPECT_FALSE(has_temp_files(dir.path()));
  }
}

TEST(Cli, BadSetOverrideIsAConfigError) {
  TempDir dir;
  write(dir.file("w.yaml"), "model: {zoo: jet_tagger}\n");
  auto r = cli({"run", dir.file("w.yaml"), "--set", "seed=minus-one", "--out", dir.file("out")});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("seed"), std::string::npos) << r.err;
}

TEST(Cli, TruncatedIdxFileIsAnInputError) {
  TempDir dir;
  // A valid header for 100 28x28 images but only 10 bytes of pixels.
  std::string header = {0, 0, 8, 3, 0, 0, 0, 100, 0, 0, 0, 28, 0, 0, 0, 28};
  for (const char* name : {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"}) {
    std::ofstream f(dir.file(name), std::ios::binary);
    f << header << std::string(10, '\1');
  }
  std::string lheader = {0, 0, 8, 1, 0, 0, 0, 100};
  for (const char* name : {"train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"}) {
    std::ofstream f(dir.file(name), std::ios::binary);
    f << lheader << std::string(100, '\1');
  }
  write(dir.file("data.yaml"), "data: {dataset: mnist-idx, path: " + dir.path() + "}\n");
  auto r = cli({"eval", "zoo:small_cnn", "--data", dir.file("data.yaml")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("train-images-idx3-ubyte"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
}

TEST(Cli, CsvWithANonNumericCellNamesRowAndColumn) {
  TempDir dir;
  write(dir.file("jets.csv"), "f0,f1,class\n1.0,2.0,0\n3.0,oops,1\n");
  write(dir.file("data.yaml"), "data: {dataset: csv, path: " + dir.file("jets.csv") + ", label: class}\n");
  auto r = cli({"eval", "zoo:mlp?in_features=2&num_classes=2", "--data", dir.file("data.yaml")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("oops"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("f1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("row"), std::string::npos) << r.err;
}

TEST(Cli, CorruptCheckpointIsAnInputError) {
  TempDir dir;
  ir::Graph g = models::build("jet_tagger", {}, 0);
  io::save_sqz(g, dir.file("m.sqz"));
  EXPECT_EQ(cli({"inspect", dir.file("m.sqz")}).code, 0);
  // Flip a byte in the middle of the payload.
  std::fstream f(dir.file("m.sqz"), std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(fs::file_size(dir.file("m.sqz")) / 2));
  f.put('\x5a');
  f.close();
  auto r = cli({"inspect", dir.file("m.sqz")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("m.sqz"), std::string::npos) << r.err;
  // Truncated.
  fs::resize_file(dir.file("m.sqz"), 40);
  EXPECT_EQ(cli({"inspect", dir.file("m.sqz")}).code, 2);
  // Not a model at all.
  write(dir.file("x.sqz"), "hello");
  EXPECT_EQ(cli({"inspect", dir.file("x.sqz")}).code, 2);
}

TEST(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(cli({"frobnicate"}).code, 2);
  EXPECT_EQ(cli({"inspect"}).code, 2);
  EXPECT_EQ(cli({"inspect", "/no/such/model.onnx"}).code, 2);
  EXPECT_EQ(cli({"inspect", "model.h5"}).code, 2);
  EXPECT_EQ(cli({"export", "zoo:mlp", "--to", "tflite", "--out", "/tmp/x"}).code, 2);
  EXPECT_EQ(cli({"--help"}).code, 0);
}

}  // namespace
}  // namespace squeeze

namespace squeeze {
namespace {

TEST(CliOnnx, ExportInspectAndReimport) {
  TempDir dir;
  auto ex = cli({"export", "zoo:small_cnn", "--to", "onnx", "--out", dir.file("m.onnx")});
  ASSERT_EQ(ex.code, 0) << ex.err;
  auto r = cli({"inspect", dir.file("m.onnx"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["total"]["params"], 421642);
  bool has_conv = false, has_linear = false;
  for (const auto& l : j["layers"]) {
    has_conv |= l["op"] == "Conv";
    has_linear |= l["op"] == "Linear";
  }
  EXPECT_TRUE(has_conv && has_linear);
  // Same outputs through infer from the zoo seed and from the ONNX file.
  data::write_npy(dir.file("x.npy"), at::randn({3, 1, 28, 28}));
  ASSERT_EQ(cli({"infer", "zoo:small_cnn", "--input", dir.file("x.npy"), "--output", dir.file("a.npy")}).code, 0);
  ASSERT_EQ(cli({"infer", dir.file("m.onnx"), "--input", dir.file("x.npy"), "--output", dir.file("b.npy")}).code, 0);
  EXPECT_TRUE(testing::tensors_close(data::read_npy(dir.file("b.npy")), data::read_npy(dir.file("a.npy"))));
}

TEST(CliOnnx, InspectsARealArchitecture) {
  std::string model = testing::shared_dir() + "/conformance/onnx/light/light_squeezenet.onnx";
  if (!fs::exists(model)) GTEST_SKIP() << "no " << model;
  auto r = cli({"inspect", model});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Conv"), std::string::npos);
  EXPECT_NE(r.out.find("Concat"), std::string::npos);
}

TEST(CliOnnx, WorkflowOnAnOnnxModel) {
  TempDir dir;
  auto r = run_on_onnx(dir, "jet_tagger",
                       "data: {dataset: synthetic-jets, samples: 2000}\n"
                       "baseline: {train: {epochs: 1}}\n"
                       "experiments: [{name: p, stages: [{method: prune, params: {ratio: 0.5}}]}]\n"
                       "output: {export: [onnx], latency: false}\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir.file("out/models/p.onnx")));
  auto back = cli({"inspect", dir.file("out/models/p.onnx"), "--json"});
  ASSERT_EQ(back.code, 0) << back.err;
  json j = json::parse(back.out);
  // The exported pruned model carries the zeros.
  EXPECT_LT(j["total"]["nonzero_params"].get<int64_t>(), j["total"]["params"].get<int64_t>() * 0.6);
}

TEST(CliOnnx, BadOnnxFilesExitWithTwo) {
  TempDir dir;
  ASSERT_EQ(cli({"export", "zoo:jet_tagger", "--to", "onnx", "--out", dir.file("ok.onnx")}).code, 0);
  std::string bytes;
  {
    std::ifstream in(dir.file("ok.onnx"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  write(dir.file("truncated.onnx"), bytes.substr(0, bytes.size() / 3));
  write(dir.file("text.onnx"), "this is not a protobuf at all, just words\n");
  for (const char* name : {"truncated.onnx", "text.onnx"}) {
    auto r = cli({"inspect", dir.file(name)});
    EXPECT_EQ(r.code, 2) << name << ": " << r.err;
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  }
  auto e = cli({"export", dir.file("text.onnx"), "--to", "onnx", "--out", dir.file("never.onnx")});
  EXPECT_EQ(e.code, 2);
  EXPECT_FALSE(fs::exists(dir.file("never.onnx")));
}

TEST(CliOnnx, TorchScriptExport) {
  TempDir dir;
  auto r = cli({"export", "zoo:lenet5", "--to", "torchscript", "--out", dir.file("m.pt")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_GT(fs::file_size(dir.file("m.pt")), 10000u);
}

}  // namespace
}  // namespace squeeze

namespace squeeze {
namespace {

TEST(CliOnnx, StructuredPruningWithoutDataExportsASmallerFile) {
  TempDir dir;
  auto r = run_on_onnx(dir, "small_cnn",
                       "experiments:\n"
                       "  - name: half\n"
                       "    stages: [{method: prune, params: {kind: structured, criterion: l1, ratio: 0.5}}]\n"
                       "output: {export: [onnx], latency: false}\n");
  ASSERT_EQ(r.code, 0) << r.err;
  auto base = fs::file_size(dir.file("out/models/baseline.onnx"));
  auto half = fs::file_size(dir.file("out/models/half.onnx"));
  EXPECT_LT(double(half), 0.6 * double(base)) << base << " -> " << half;
  auto back = cli({"inspect", dir.file("out/models/half.onnx"), "--json"});
  ASSERT_EQ(back.code, 0) << back.err;
  json j = json::parse(back.out);
  EXPECT_LT(j["total"]["params"].get<int64_t>(), 421642 / 2);
  // Channels are gone, not zeroed.
  EXPECT_EQ(j["total"]["params"], j["total"]["nonzero_params"]);
  std::ifstream in(dir.file("out/report.json"));
  json rep = json::parse(in);
  EXPECT_TRUE(rep["baseline"]["accuracy"].is_null());  // no data: nothing to evaluate
  EXPECT_GT(rep["results"][0]["flops_ratio"].get<double>(), 1.5);
}

}  // namespace
}  // namespace squeeze
