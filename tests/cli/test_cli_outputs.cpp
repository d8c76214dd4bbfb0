// The command line in-process: evaluation data that holds only some of a model's classes, output
// paths in folders that do not exist yet or cannot exist, and the report's warning about an
// untrained baseline.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "squeeze/data/dataset.h"
#include "squeeze/deploy/export.h"
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

bool has_temp_files(const std::string& dir) {
  if (!fs::exists(dir)) return false;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) return true;
  return false;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool mentions(const std::string& text, const std::string& word) {
  return text.find(word) != std::string::npos;
}

// An NPY data set of 16 features whose labels are `labels` (repeated), and a data YAML for it
// with a 25% test split.
std::string npy_data(const TempDir& dir, const std::vector<int64_t>& labels, int64_t n) {
  at::Tensor y = at::tensor(labels, at::kLong).repeat({n / static_cast<int64_t>(labels.size())});
  data::write_npy(dir.file("x.npy"), at::randn({y.size(0), 16}));
  data::write_npy(dir.file("y.npy"), y);
  return dir.write("data.yaml", "data: {dataset: npy, features: " + dir.file("x.npy") +
                                    ", labels: " + dir.file("y.npy") + ", split: {test: 0.25}}\n");
}

// -----------------------------------------------------------------------------------------------
// A data set need not contain every class of the model.

TEST(CliEval, AModelWithMoreOutputsThanTheDataHasClasses) {
  TempDir dir;
  const std::string data = npy_data(dir, {0, 2, 5}, 300);
  const std::string model = "zoo:jet_tagger?num_classes=12";
  auto r = cli({"eval", model, "--data", data, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["num_outputs"], 12);
  EXPECT_EQ(j["samples"], 75);
  // Per-class metrics list the classes that occur, nothing else.
  std::vector<int64_t> classes;
  int64_t counted = 0;
  for (const auto& pc : j["per_class"]) classes.push_back(pc["class"].get<int64_t>());
  EXPECT_EQ(classes, (std::vector<int64_t>{0, 2, 5}));
  ASSERT_EQ(j["confusion"].size(), 3u);
  for (const auto& row : j["confusion"]) {
    EXPECT_EQ(row.size(), 4u);  // three classes + predictions of the nine absent ones
    for (const auto& v : row) counted += v.get<int64_t>();
  }
  EXPECT_EQ(counted, 75);
  const double acc = j["accuracy"].get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);

  auto text = cli({"eval", model, "--data", data});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_TRUE(mentions(text.out, "3 of the model's 12 classes occur")) << text.out;
}

TEST(CliEval, ALabelOutsideTheModelsOutputsIsAnInputError) {
  TempDir dir;
  const std::string data = npy_data(dir, {0, 2, 12}, 300);
  auto r = cli({"eval", "zoo:jet_tagger?num_classes=12", "--data", data});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(mentions(r.err, "label 12 in row ")) << r.err;
  EXPECT_TRUE(mentions(r.err, "0 to 11")) << r.err;
  EXPECT_TRUE(mentions(r.err, "data.yaml")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// A workflow on a model with more outputs than the data's classes trains, calibrates a
// quantization and reports the classes present.
TEST(CliRun, AWiderModelTrainsCalibratesAndReports) {
  TempDir dir;
  dir.write("w.yaml",
            "model: {zoo: jet_tagger, params: {num_classes: 9}}\n"
            "data: {dataset: synthetic-jets, samples: 3000}\n"
            "baseline: {train: {epochs: 2, lr: 3.0e-3}}\n"
            "experiments: [{name: q8, stages: [{method: quantize, params: {mode: ptq}}]}]\n"
            "output: {latency: false}\n");
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  json rep = json::parse(std::ifstream(dir.file("out/report.json")));
  EXPECT_EQ(rep["baseline"]["per_class"].size(), 5u);
  EXPECT_EQ(rep["results"][0]["per_class"].size(), 5u);
  // Better than chance among the five classes present (the data set's own model gets ~0.6).
  EXPECT_GT(rep["baseline"]["accuracy"].get<double>(), 0.4);
  EXPECT_GT(rep["results"][0]["accuracy"].get<double>(), 0.4);
}

TEST(CliRun, ALabelOutsideTheModelsOutputsStopsBeforeTraining) {
  TempDir dir;
  dir.write("w.yaml",
            "model: {zoo: jet_tagger, params: {num_classes: 4}}\n"
            "data: {dataset: synthetic-jets, samples: 1500}\n"
            "baseline: {train: {epochs: 1}}\n");
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(mentions(r.err, "training split: label 4 in row ")) << r.err;
  EXPECT_TRUE(mentions(r.err, "0 to 3")) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("out/report.json")));
}

// -----------------------------------------------------------------------------------------------
// Output paths: missing folders are created; impossible paths give an error naming the user's
// path (never the temporary file), exit code 2, and leave nothing behind.

TEST(CliOutputs, ExportCreatesMissingFoldersForEveryFormat) {
  for (const std::string& format : deploy::export_formats()) {
    if (format == "cpp") continue;  // a folder, for MLPs only: tests/deploy/test_cpp_export.cpp
    TempDir dir;
    const std::string out = dir.file("a/b/model" + deploy::export_extension(format));
    auto r = cli({"export", "zoo:lenet5", "--to", format, "--out", out});
    ASSERT_EQ(r.code, 0) << format << ": " << r.err;
    EXPECT_GT(fs::file_size(out), 1000u) << format;
    EXPECT_FALSE(has_temp_files(dir.path())) << format;
  }
}

TEST(CliOutputs, ExportUnderARegularFileNamesTheUsersPath) {
  for (const std::string& format : deploy::export_formats()) {
    if (format == "cpp") continue;  // a folder, for MLPs only: tests/deploy/test_cpp_export.cpp
    TempDir dir;
    dir.write("file", "not a folder");
    const std::string out = dir.file("file/sub/model" + deploy::export_extension(format));
    auto r = cli({"export", "zoo:lenet5", "--to", format, "--out", out});
    EXPECT_EQ(r.code, 2) << format << ": " << r.err;
    EXPECT_TRUE(mentions(r.err, "cannot write '" + out + "'")) << format << ": " << r.err;
    EXPECT_TRUE(mentions(r.err, "'" + dir.file("file") + "' is a file, not a folder")) << r.err;
    EXPECT_FALSE(mentions(r.err, ".tmp-")) << r.err;
    EXPECT_EQ(slurp(dir.file("file")), "not a folder");
    EXPECT_FALSE(has_temp_files(dir.path())) << format;
  }
}

TEST(CliOutputs, InferCreatesMissingFolders) {
  TempDir dir;
  data::write_npy(dir.file("x.npy"), at::randn({3, 16}));
  const std::string out = dir.file("deep/er/y.npy");
  auto r = cli({"infer", "zoo:jet_tagger", "--input", dir.file("x.npy"), "--output", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(data::read_npy(out).sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_FALSE(has_temp_files(dir.path()));
}

TEST(CliOutputs, InferUnderARegularFileOrOntoAFolderNamesTheUsersPath) {
  TempDir dir;
  data::write_npy(dir.file("x.npy"), at::randn({3, 16}));
  dir.write("file", "");
  for (const std::string& out :
       {dir.file("file/y.npy"), dir.file("file/deeper/y.npy"), dir.path()}) {
    auto r = cli({"infer", "zoo:jet_tagger", "--input", dir.file("x.npy"), "--output", out});
    EXPECT_EQ(r.code, 2) << out << ": " << r.err;
    EXPECT_TRUE(mentions(r.err, "cannot write '" + out + "'")) << r.err;
    EXPECT_FALSE(mentions(r.err, ".tmp-")) << r.err;
    EXPECT_FALSE(has_temp_files(dir.path()));
  }
  EXPECT_TRUE(fs::is_regular_file(dir.file("file")));
}

// -----------------------------------------------------------------------------------------------
// An untrained zoo baseline is said loudly, and only then.

json run_report(const TempDir& dir, const std::string& yaml, Result* result = nullptr) {
  dir.write("w.yaml", yaml);
  Result r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  if (result) *result = r;
  EXPECT_EQ(r.code, 0) << r.err;
  if (r.code != 0) return json::object();
  return json::parse(std::ifstream(dir.file("out/report.json")));
}

const char* kJets =
    "data: {dataset: synthetic-jets, samples: 1200}\n"
    "experiments: [{name: p50, stages: [{method: prune, params: {ratio: 0.5}}]}]\n"
    "output: {latency: false}\n";

TEST(CliReport, WarnsAboutAnUntrainedZooBaseline) {
  TempDir dir;
  Result r;
  json rep = run_report(dir, std::string("model: {zoo: jet_tagger}\n") + kJets, &r);
  ASSERT_TRUE(rep.contains("warnings"));
  ASSERT_EQ(rep["warnings"].size(), 1u);
  const std::string w = rep["warnings"][0];
  EXPECT_TRUE(mentions(w, "zoo:jet_tagger is untrained")) << w;
  EXPECT_TRUE(mentions(w, "baseline: {train:")) << w;
  EXPECT_TRUE(
      mentions(slurp(dir.file("out/report.md")), "**Warning:** the baseline zoo:jet_tagger"));
  EXPECT_TRUE(
      mentions(slurp(dir.file("out/report.html")),
               "<p class=\"warning\"><strong>Warning:</strong> the baseline zoo:jet_tagger"));
  // The terminal summary repeats it after the comparison table.
  EXPECT_TRUE(mentions(r.out, "warning: the baseline zoo:jet_tagger")) << r.out;

  // baseline.train that runs no step leaves it untrained too.
  TempDir dir2;
  rep = run_report(
      dir2, std::string("model: {zoo: jet_tagger}\nbaseline: {train: {epochs: 0}}\n") + kJets);
  EXPECT_EQ(rep["warnings"].size(), 1u);
}

TEST(CliReport, NoWarningForATrainedBaselineOrAGivenModel) {
  TempDir dir;
  json rep = run_report(
      dir, std::string("model: {zoo: jet_tagger}\nbaseline: {train: {epochs: 1}}\n") + kJets);
  ASSERT_TRUE(rep.contains("warnings"));
  EXPECT_TRUE(rep["warnings"].empty()) << rep["warnings"];
  EXPECT_FALSE(mentions(slurp(dir.file("out/report.md")), "Warning"));
  EXPECT_FALSE(mentions(slurp(dir.file("out/report.html")), "class=\"warning\""));

  // An ONNX file and a checkpoint are the user's trained models: no warning.
  const std::string ckpt = dir.file("out/models/baseline.sqz");
  ASSERT_TRUE(fs::exists(ckpt));
  TempDir from_ckpt;
  rep = run_report(from_ckpt, "model: {checkpoint: " + ckpt + "}\n" + kJets);
  EXPECT_TRUE(rep["warnings"].empty()) << rep["warnings"];
  TempDir from_onnx;
  ASSERT_EQ(cli({"export", ckpt, "--to", "onnx", "--out", from_onnx.file("m.onnx")}).code, 0);
  rep = run_report(from_onnx, "model: {onnx: " + from_onnx.file("m.onnx") + "}\n" + kJets);
  EXPECT_TRUE(rep["warnings"].empty()) << rep["warnings"];
}

}  // namespace
}  // namespace squeeze
