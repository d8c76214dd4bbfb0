// The jet data as users have it, end to end: a CSV with a string class column trains a model that
// carries its standardization and class names, so `squeeze eval` and `squeeze infer` on raw
// features reproduce the run, and a file holding only some classes is evaluated against the
// right outputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "squeeze/data/dataset.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

using nlohmann::json;
using testing::cli;
using testing::TempDir;

// Rows of `d` whose label is in `keep` (all when empty), as a CSV with the real column names.
void write_csv(const std::string& path, const data::Dataset& d, const std::vector<int64_t>& keep = {}) {
  std::ofstream out(path);
  for (const auto& n : data::jet_feature_names()) out << n << ",";
  out << "class\n";
  out.precision(9);
  for (int64_t i = 0; i < d.size(); ++i) {
    const int64_t c = d.y[i].item<int64_t>();
    if (!keep.empty() && std::find(keep.begin(), keep.end(), c) == keep.end()) continue;
    for (int f = 0; f < 16; ++f) out << d.x[i][f].item<float>() << ",";
    out << data::jet_class_names()[c] << "\n";
  }
}

TEST(CliJets, CsvWithStringClassesEvalAndInferReproduceTheRun) {
  TempDir dir;
  write_csv(dir.file("train.csv"), data::make_synthetic_jets(3000, 0.2, 1));
  const data::Dataset test = data::make_synthetic_jets(500, 0.2, 2);
  write_csv(dir.file("test.csv"), test);
  write_csv(dir.file("test_tw.csv"), test, {2, 3});
  const std::string data_block = "data: {dataset: csv, path: " + dir.file("train.csv") +
                                 ", test_path: " + dir.file("test.csv") + ", label: class}\n";
  dir.write("w.yaml", "model: {zoo: jet_tagger}\n" + data_block +
                          "baseline: {train: {epochs: 3, lr: 3.0e-3}}\noutput: {latency: false}\n");
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  const json rep = json::parse(std::ifstream(dir.file("out/report.json")));
  EXPECT_EQ(rep["class_names"], json::array({"g", "q", "t", "w", "z"}));
  const double run_acc = rep["baseline"]["accuracy"].get<double>();
  EXPECT_GT(run_acc, 0.45);  // trained on standardized features (chance: 0.2)
  const std::string model = dir.file("out/models/baseline.sqz");

  // eval reads the raw CSV and applies the model's standardization.
  dir.write("data.yaml", data_block);
  r = cli({"eval", model, "--data", dir.file("data.yaml"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json ev = json::parse(r.out);
  EXPECT_DOUBLE_EQ(ev["accuracy"].get<double>(), run_acc);
  EXPECT_EQ(ev["per_class"][2]["name"], "t");

  // infer on raw feature rows gives the same decisions.
  data::write_npy(dir.file("x.npy"), test.x);
  r = cli({"infer", model, "--input", dir.file("x.npy"), "--output", dir.file("y.npy")});
  ASSERT_EQ(r.code, 0) << r.err;
  const at::Tensor pred = data::read_npy(dir.file("y.npy")).argmax(1);
  EXPECT_DOUBLE_EQ(pred.eq(test.y).to(at::kDouble).mean().item<double>(), run_acc);

  // A file with only t and w rows: its own sorted names would make t label 0 (g); the model's
  // names map them back to 2 and 3.
  dir.write("tw.yaml", "data: {dataset: csv, path: " + dir.file("train.csv") + ", test_path: " +
                           dir.file("test_tw.csv") + ", label: class}\n");
  r = cli({"eval", model, "--data", dir.file("tw.yaml"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json tw = json::parse(r.out);
  ASSERT_EQ(tw["per_class"].size(), 2u);
  EXPECT_EQ(tw["per_class"][0]["class"], 2);
  EXPECT_EQ(tw["per_class"][0]["name"], "t");
  EXPECT_EQ(tw["per_class"][1]["name"], "w");
  const at::Tensor tw_mask = test.y.eq(2).logical_or(test.y.eq(3));
  const double expected = pred.masked_select(tw_mask).eq(test.y.masked_select(tw_mask))
                              .to(at::kDouble).mean().item<double>();
  EXPECT_DOUBLE_EQ(tw["accuracy"].get<double>(), expected);
}

TEST(CliJets, RawRowsOfTheWrongWidthAreRefused) {
  TempDir dir;
  dir.write("w.yaml",
            "model: {zoo: jet_tagger}\ndata: {dataset: synthetic-jets, samples: 600}\n"
            "output: {latency: false}\n");
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  data::write_npy(dir.file("x.npy"), at::zeros({4, 15}));
  r = cli({"infer", dir.file("out/models/baseline.sqz"), "--input", dir.file("x.npy"), "--output",
           dir.file("y.npy")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("16 features"), std::string::npos) << r.err;
}

// Bad data blocks for the jet formats: exit code 2 before anything runs, naming the key, the
// value and what is valid.
TEST(CliJets, BadJetDataKeysAreConfigErrors) {
  TempDir dir;
  struct Case {
    std::string data;
    std::vector<std::string> words;
  } cases[] = {
      {"{dataset: synthetic-jets, rare_class: top}", {"data.rare_class", "one of: g, q, t, w, z", "top"}},
      {"{dataset: synthetic-jets, rare_fraction: 1.5}", {"data.rare_fraction", "1.5"}},
      {"{dataset: hdf5, path: x.h5, features: [], labels: y}", {"data.features", "empty"}},
      {"{dataset: arf, path: x.arff}", {"data.dataset", "arff"}},
      {"{dataset: arff, path: " + dir.file("missing.arff") + "}", {"data.path", "missing.arff"}},
  };
  for (const auto& c : cases) {
    dir.write("w.yaml", "model: {zoo: jet_tagger}\ndata: " + c.data + "\n");
    auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
    EXPECT_EQ(r.code, 2) << c.data << "\n" << r.err;
    for (const auto& w : c.words) EXPECT_NE(r.err.find(w), std::string::npos) << w << "\n" << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("out/report.json"))) << c.data;
  }
}

}  // namespace
}  // namespace squeeze
