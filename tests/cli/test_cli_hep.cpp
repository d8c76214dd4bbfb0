// output.metrics: [hep] end to end: per-class ROC AUC and background rejection in report.json,
// report.md and report.html on a small synthetic jet set, and their absence when not asked for.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

using nlohmann::json;
using testing::cli;
using testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string workflow(const std::string& output) {
  return "model: {zoo: jet_tagger}\n"
         "data: {dataset: synthetic-jets, samples: 3000, split: {val: 0.1, test: 0.2}}\n"
         "baseline: {train: {epochs: 2, lr: 3.0e-3}}\n"
         "experiments: [{name: p50, stages: [{method: prune, params: {ratio: 0.5}}]}]\n"
         "output: {latency: false" + output + "}\n";
}

void check_hep(const json& hep) {
  ASSERT_TRUE(hep.is_object()) << hep.dump();
  EXPECT_EQ(hep["efficiencies"], json::array({0.5, 0.1}));
  const json& pc = hep["per_class"];
  ASSERT_EQ(pc.size(), 5u);
  const char* names[] = {"g", "q", "t", "w", "z"};
  int64_t total = 0;
  for (size_t c = 0; c < 5; ++c) {
    EXPECT_EQ(pc[c]["class"], c);
    EXPECT_EQ(pc[c]["name"], names[c]);
    total += pc[c]["signal"].get<int64_t>();
    EXPECT_EQ(pc[c]["signal"].get<int64_t>() + pc[c]["background"].get<int64_t>(), 600);
    const double auc = pc[c]["auc"].get<double>();
    // A trained tagger separates every class better than chance.
    EXPECT_GT(auc, 0.6) << names[c];
    EXPECT_LE(auc, 1.0);
    for (const char* e : {"50", "10"}) {
      const double fpr = pc[c][std::string("fpr_at_") + e].get<double>();
      const json& rej = pc[c][std::string("rejection_at_") + e];
      EXPECT_GE(fpr, 0.0);
      // null exactly when the false positive rate is 0.
      if (fpr == 0.0) {
        EXPECT_TRUE(rej.is_null());
      } else {
        EXPECT_NEAR(rej.get<double>(), 1.0 / fpr, 1e-9 * rej.get<double>());
      }
    }
    // Harder at 10% efficiency than at 50%: the rate of background passing falls.
    EXPECT_LE(pc[c]["fpr_at_10"].get<double>(), pc[c]["fpr_at_50"].get<double>());
    EXPECT_EQ(pc[c]["recall"], pc[c]["accuracy"]);
  }
  EXPECT_EQ(total, 600);
}

TEST(CliHep, ReportHoldsPerClassAucAndRejection) {
  TempDir dir;
  dir.write("w.yaml", workflow(", metrics: [hep]"));
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  json rep = json::parse(std::ifstream(dir.file("out/report.json")));
  EXPECT_EQ(rep["class_names"], json::array({"g", "q", "t", "w", "z"}));
  check_hep(rep["baseline"]["hep"]);
  check_hep(rep["results"][0]["hep"]);
  // The per-class recall agrees with the per_class figures of the same model.
  for (size_t c = 0; c < 5; ++c)
    EXPECT_DOUBLE_EQ(rep["baseline"]["hep"]["per_class"][c]["recall"].get<double>(),
                     rep["baseline"]["per_class"][c]["recall"].get<double>());
  const std::string md = slurp(dir.file("out/report.md"));
  EXPECT_NE(md.find("## Per-class ROC AUC and background rejection"), std::string::npos);
  EXPECT_NE(md.find("| p50 | 2 | t |"), std::string::npos) << md;
  const std::string html = slurp(dir.file("out/report.html"));
  EXPECT_NE(html.find("<h2>Per-class ROC AUC and background rejection</h2>"), std::string::npos);
}

TEST(CliHep, AbsentWhenNotAskedFor) {
  TempDir dir;
  dir.write("w.yaml", workflow(""));
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  json rep = json::parse(std::ifstream(dir.file("out/report.json")));
  EXPECT_FALSE(rep["baseline"].contains("hep"));
  EXPECT_FALSE(rep["results"][0].contains("hep"));
  // The class names are reported all the same.
  EXPECT_EQ(rep["class_names"], json::array({"g", "q", "t", "w", "z"}));
  EXPECT_EQ(slurp(dir.file("out/report.md")).find("ROC AUC"), std::string::npos);
}

TEST(CliHep, BadMetricOrNoDataIsAConfigError) {
  TempDir dir;
  dir.write("bad.yaml", workflow(", metrics: [roc]"));
  auto r = cli({"run", dir.file("bad.yaml"), "--out", dir.file("out")});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("output.metrics[0]"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'roc'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("valid: hep"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/report.json")));

  dir.write("nodata.yaml",
            "model: {zoo: jet_tagger}\noutput: {latency: false, metrics: [hep]}\n");
  r = cli({"run", dir.file("nodata.yaml"), "--out", dir.file("out2")});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("output.metrics"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no data: block"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace squeeze
