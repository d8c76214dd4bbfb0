// report.json follows the contract of DESIGN.md section 5; report.md and report.html carry the
// same tables; the terminal table is aligned.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "squeeze/report/report.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"

namespace squeeze::report {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "report_test_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::shared_ptr<Params> make_config() {
  auto root = std::make_shared<Params>();
  root->set("seed", Value::scalar("0"));
  auto model_params = std::make_shared<Params>();
  model_params->set("num_classes", Value::scalar("10"));
  auto model = std::make_shared<Params>();
  model->set("zoo", Value::scalar("small_cnn"));
  model->set("params", Value::map(model_params));
  root->set("model", Value::map(model));
  auto split = std::make_shared<Params>();
  split->set("val", Value::scalar("0.1"));
  auto data = std::make_shared<Params>();
  data->set("path", Value::scalar("/usr/share/datasets/fashion-mnist"));
  data->set("batch_size", Value::scalar("128"));
  data->set("split", Value::map(split));
  data->set("tag", Value::scalar("007", /*quoted=*/true));
  data->set("shuffle", Value::scalar("true"));
  data->set("lr", Value::scalar("1.0e-3"));
  root->set("data", Value::map(data));
  auto stage = std::make_shared<Params>();
  stage->set("method", Value::scalar("prune"));
  auto exp = std::make_shared<Params>();
  exp->set("name", Value::scalar("prune50-int8"));
  exp->set("stages", Value::list({Value::map(stage)}));
  root->set("experiments", Value::list({Value::map(exp)}));
  root->set("pipeline", Value());
  return root;
}

Report make_report() {
  Report r;
  r.squeeze_version = "0.1.0";
  r.config = make_config();
  r.config_text = "seed: 0\nmodel: {zoo: small_cnn}\n";
  r.config_hash = "cbf29ce484222325";
  r.environment = {{"threads", "2"}, {"blas", "openblas"}, {"libtorch", "1.13.1"}};
  r.model_name = "small_cnn";
  r.data_description = "fashion-mnist: 54000 train, 6000 val, 10000 test";
  r.baseline.evaluated = true;
  r.baseline.accuracy = 0.912;
  r.baseline.loss = 0.25;
  r.baseline.params = 421642;
  r.baseline.nonzero_params = 421642;
  r.baseline.size_bytes = 1686568;
  r.baseline.flops = 12345678;
  r.baseline.latency_us = {{"batch1", 210.0}, {"batch64", 3100.0}};
  r.baseline.per_class = {{0, "T-shirt/top", 0.88, 0.88, 0.86}, {1, "Trouser", 0.97, 0.97, 0.99}};
  r.baseline_artifacts = {{"checkpoint", "models/baseline.sqz"}};

  ExperimentResult a;
  a.name = "prune50-int8";
  a.stages = {"prune", "quantize"};
  a.stats.evaluated = true;
  a.stats.accuracy = 0.905;
  a.stats.loss = 0.27;
  a.stats.params = 210000;
  a.stats.nonzero_params = 210000;
  a.stats.size_bytes = 220000;
  a.stats.flops = 6000000;
  a.stats.latency_us = {{"batch1", 110.0}, {"batch64", 1190.0}};
  a.stats.per_class = {{0, "T-shirt/top", 0.87, 0.87, 0.85}, {1, "Trouser", 0.96, 0.96, 0.98}};
  a.accuracy_drop = 0.007;
  a.compression_ratio = 7.66;
  a.param_ratio = 2.0;
  a.flops_ratio = 2.05;
  a.speedup = {{"batch1", 1.9}, {"batch64", 2.6}};
  a.history = {
      {"prune", "pruned 50% of channels", true, 0.90, 421642, 210000, 843000, 6000000, 12.3},
      {"quantize", "int8 weights", true, 0.905, 210000, 210000, 220000, 6000000, 3.2}};
  a.history[0].evaluated_before_finetune = true;
  a.history[0].accuracy_before_finetune = 0.713;
  a.artifacts = {{"checkpoint", "models/prune50-int8.sqz"}, {"onnx", "models/prune50-int8.onnx"}};
  a.seconds = 15.5;
  r.results.push_back(a);

  ExperimentResult b;
  b.name = "lowrank <b>&'x'";
  b.stages = {"lowrank"};
  b.stats.evaluated = true;
  b.stats.accuracy = 0.93;  // better than the baseline: a negative drop
  b.stats.params = 300000;
  b.stats.nonzero_params = 300000;
  b.stats.size_bytes = 1200000;
  b.stats.flops = 9000000;
  b.accuracy_drop = -0.018;
  b.compression_ratio = 1686568.0 / 1200000.0;
  b.param_ratio = 421642.0 / 300000.0;
  b.flops_ratio = 12345678.0 / 9000000.0;
  b.speedup = {{"batch1", 1.2}, {"batch64", 1.3}};
  b.history = {{"lowrank", "energy 0.9", true, 0.93, 300000, 300000, 1200000, 9000000, 4.0}};
  b.artifacts = {{"checkpoint", "models/lowrank.sqz"}};
  r.results.push_back(b);
  r.seconds = 42.0;
  return r;
}

TEST(ReportWriter, JsonFollowsTheContract) {
  TempDir dir;
  const std::string out = dir.file("runs/quickstart");  // created on demand
  write_report(make_report(), out);
  const Json j = Json::parse(read(out + "/report.json"));

  for (const char* key : {"squeeze_version", "config", "config_hash", "environment", "model",
                          "data", "baseline", "results", "seconds"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["squeeze_version"], "0.1.0");
  EXPECT_EQ(j["environment"]["threads"], 2);
  EXPECT_EQ(j["environment"]["blas"], "openblas");
  EXPECT_EQ(j["environment"]["libtorch"], "1.13.1");

  // The config tree, with YAML scalars typed.
  const Json& c = j["config"];
  EXPECT_EQ(c["seed"], 0);
  EXPECT_EQ(c["model"]["params"]["num_classes"], 10);
  EXPECT_EQ(c["model"]["zoo"], "small_cnn");
  EXPECT_DOUBLE_EQ(c["data"]["split"]["val"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(c["data"]["lr"].get<double>(), 1.0e-3);
  EXPECT_EQ(c["data"]["tag"], "007");
  EXPECT_EQ(c["data"]["shuffle"], true);
  EXPECT_EQ(c["experiments"][0]["stages"][0]["method"], "prune");
  EXPECT_TRUE(c["pipeline"].is_null());

  const Json& b = j["baseline"];
  for (const char* key : {"accuracy", "loss", "params", "nonzero_params", "size_bytes", "flops",
                          "latency_us", "per_class", "artifacts"})
    EXPECT_TRUE(b.contains(key)) << "baseline." << key;
  EXPECT_DOUBLE_EQ(b["accuracy"].get<double>(), 0.912);
  EXPECT_EQ(b["params"], 421642);
  EXPECT_EQ(b["size_bytes"], 1686568);
  EXPECT_DOUBLE_EQ(b["latency_us"]["batch64"].get<double>(), 3100.0);
  EXPECT_EQ(b["per_class"][1]["class"], 1);
  EXPECT_EQ(b["per_class"][1]["name"], "Trouser");
  EXPECT_DOUBLE_EQ(b["per_class"][0]["precision"].get<double>(), 0.86);
  EXPECT_EQ(b["artifacts"]["checkpoint"], "models/baseline.sqz");

  ASSERT_EQ(j["results"].size(), 2u);
  const Json& r = j["results"][0];
  for (const char* key : {"name", "stages", "accuracy", "accuracy_drop", "params", "nonzero_params",
                          "size_bytes", "compression_ratio", "param_ratio", "flops", "flops_ratio",
                          "latency_us", "speedup", "history", "artifacts", "seconds"})
    EXPECT_TRUE(r.contains(key)) << "results[0]." << key;
  EXPECT_EQ(r["name"], "prune50-int8");
  EXPECT_EQ(r["stages"], Json::array({"prune", "quantize"}));
  EXPECT_DOUBLE_EQ(r["accuracy_drop"].get<double>(), 0.007);
  EXPECT_DOUBLE_EQ(r["compression_ratio"].get<double>(), 7.66);
  EXPECT_DOUBLE_EQ(r["speedup"]["batch1"].get<double>(), 1.9);
  EXPECT_EQ(r["history"][0]["stage"], "prune");
  EXPECT_EQ(r["history"][0]["size_bytes"], 843000);
  EXPECT_DOUBLE_EQ(r["history"][0]["seconds"].get<double>(), 12.3);
  // Accuracy right after the pass: known for the fine-tuned prune stage, null for the other.
  EXPECT_DOUBLE_EQ(r["history"][0]["accuracy_before_finetune"].get<double>(), 0.713);
  EXPECT_TRUE(r["history"][1]["accuracy_before_finetune"].is_null());
  EXPECT_EQ(r["artifacts"]["onnx"], "models/prune50-int8.onnx");
  EXPECT_EQ(j["results"][1]["name"], "lowrank <b>&'x'");

  // Each file written atomically: no temporary files left next to them.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(out)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"report.html", "report.json", "report.md"}));
}

TEST(ReportWriter, UnevaluatedAccuracyIsNull) {
  TempDir dir;
  Report r = make_report();
  r.baseline.evaluated = false;
  r.baseline.per_class.clear();
  for (auto& res : r.results) {
    res.stats.evaluated = false;
    res.stats.per_class.clear();
    for (auto& h : res.history) h.evaluated = false;
  }
  write_report(r, dir.file("out"));
  const Json j = Json::parse(read(dir.file("out/report.json")));
  EXPECT_TRUE(j["baseline"]["accuracy"].is_null());
  EXPECT_TRUE(j["baseline"]["loss"].is_null());
  EXPECT_TRUE(j["results"][0]["accuracy"].is_null());
  EXPECT_TRUE(j["results"][0]["accuracy_drop"].is_null());
  EXPECT_TRUE(j["results"][0]["history"][0]["accuracy"].is_null());
  EXPECT_EQ(j["results"][0]["size_bytes"], 220000);  // sizes are still known
  const std::string html = read(dir.file("out/report.html"));
  EXPECT_NE(html.find("No accuracy was measured"), std::string::npos);
  EXPECT_EQ(read(dir.file("out/report.md")).find("Per-class"), std::string::npos);
  // Only the drop is unknown when the baseline alone was not evaluated.
  r.results[0].stats.evaluated = true;
  write_report(r, dir.file("out"));
  const Json k = Json::parse(read(dir.file("out/report.json")));
  EXPECT_DOUBLE_EQ(k["results"][0]["accuracy"].get<double>(), 0.905);
  EXPECT_TRUE(k["results"][0]["accuracy_drop"].is_null());
}

TEST(ReportWriter, MarkdownHasTheTables) {
  TempDir dir;
  write_report(make_report(), dir.path());
  const std::string md = read(dir.file("report.md"));
  EXPECT_EQ(md.rfind("# squeeze report: small_cnn", 0), 0u);
  for (const char* s : {"## Environment",
                        "## Baseline",
                        "## Comparison",
                        "## Stage history",
                        "before fine-tuning",
                        "71.30%",
                        "## Per-class accuracy",
                        "### prune50-int8",
                        "prune50-int8",
                        "lowrank \\<b>&'x'",
                        "7.66x",
                        "-1.80 pp",
                        "0.70 pp",
                        "speedup b1",
                        "speedup b64",
                        "2.60x",
                        "91.20%",
                        "0 T-shirt/top",
                        "87.00% (1.00 pp)",
                        "pruned 50% of channels",
                        "models/prune50-int8.onnx",
                        "openblas"})
    EXPECT_NE(md.find(s), std::string::npos) << s;
}

TEST(ReportWriter, HtmlIsSelfContainedWithCharts) {
  TempDir dir;
  write_report(make_report(), dir.path());
  const std::string html = read(dir.file("report.html"));
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  // accuracy-size, accuracy-latency, accuracy bars (no per-layer figures or curves here)
  EXPECT_EQ(count(html, "<svg"), 3u);
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_EQ(count(html, "<table>"), count(html, "</table>"));
  EXPECT_EQ(count(html, "<tr>"), count(html, "</tr>"));
  EXPECT_EQ(count(html, "<figure>"), count(html, "</figure>"));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://www.w3.org/2000/svg\" id"), html.find("http://"));  // no fetches
  EXPECT_NE(html.find("<style>"), std::string::npos);
  EXPECT_NE(html.find("prune50-int8"), std::string::npos);
  EXPECT_NE(html.find("lowrank &lt;b&gt;&amp;&#39;x&#39;"), std::string::npos);
  EXPECT_EQ(html.find("<b>&"), std::string::npos);
  EXPECT_NE(html.find("<circle"), std::string::npos);  // scatter points
  EXPECT_NE(html.find("<path"), std::string::npos);    // the baseline marker
}

TEST(ReportWriter, ComparisonTableIsAligned) {
  const std::string t = comparison_table(make_report());
  std::vector<std::string> lines;
  std::istringstream in(t);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 6u);  // header, rule, baseline, two experiments, recommendation
  EXPECT_EQ(lines[5].rfind("recommendation: Ship ", 0), 0u) << lines[5];
  lines.pop_back();
  EXPECT_NE(lines[0].find("model"), std::string::npos);
  EXPECT_NE(lines[0].find("speedup b64"), std::string::npos);
  EXPECT_EQ(lines[2].rfind("baseline", 0), 0u);
  EXPECT_EQ(lines[3].rfind("prune50-int8", 0), 0u);
  EXPECT_NE(lines[3].find("7.66x"), std::string::npos);
  // The last column is right-aligned, so every line ends at the same column.
  for (const auto& line : lines) EXPECT_EQ(line.size(), lines[0].size()) << line;
  // Columns line up: "accuracy" ends where every accuracy value ends.
  const size_t acc_end = lines[0].find("accuracy") + std::string("accuracy").size();
  EXPECT_EQ(lines[2].substr(acc_end - 6, 6), "91.20%");
  EXPECT_EQ(lines[3].substr(acc_end - 6, 6), "90.50%");
}

TEST(ReportWriter, NoExperimentsStillWrites) {
  TempDir dir;
  Report r = make_report();
  r.results.clear();
  r.config = nullptr;
  write_report(r, dir.path());
  const Json j = Json::parse(read(dir.file("report.json")));
  EXPECT_TRUE(j["results"].is_array());
  EXPECT_TRUE(j["config"].is_null());
  EXPECT_EQ(count(read(dir.file("report.html")), "<svg"), 3u);
  EXPECT_EQ(comparison_table(r).find("prune50"), std::string::npos);
}

TEST(ReportWriter, WarningsAppearInEveryForm) {
  TempDir dir;
  Report r = make_report();
  write_report(r, dir.path());
  EXPECT_TRUE(Json::parse(read(dir.file("report.json")))["warnings"].empty());
  EXPECT_EQ(read(dir.file("report.md")).find("Warning"), std::string::npos);
  EXPECT_EQ(read(dir.file("report.html")).find("class=\"warning\""), std::string::npos);

  r.warnings = {"the baseline <zoo:x> is untrained", "second"};
  write_report(r, dir.path());
  const Json j = Json::parse(read(dir.file("report.json")));
  ASSERT_EQ(j["warnings"].size(), 2u);
  EXPECT_EQ(j["warnings"][0], "the baseline <zoo:x> is untrained");
  const std::string md = read(dir.file("report.md"));
  EXPECT_NE(md.find("## Warnings"), std::string::npos);
  EXPECT_NE(md.find("> **Warning:** the baseline <zoo:x> is untrained"), std::string::npos) << md;
  // Before the numbers it qualifies.
  EXPECT_LT(md.find("## Warnings"), md.find("## Baseline"));
  const std::string html = read(dir.file("report.html"));
  EXPECT_EQ(count(html, "<p class=\"warning\">"), 2u);
  EXPECT_NE(html.find("the baseline &lt;zoo:x&gt; is untrained"), std::string::npos);
  EXPECT_LT(html.find("class=\"warning\""), html.find("<h2>Comparison</h2>"));
  EXPECT_NE(comparison_table(r).find("warning: second\n"), std::string::npos);
}

TEST(ReportWriter, ExperimentsHaveNoPipelineKey) {
  TempDir dir;
  write_report(make_report(), dir.path());
  EXPECT_FALSE(Json::parse(read(dir.file("report.json"))).contains("pipeline"));
  EXPECT_EQ(read(dir.file("report.md")).find("## Pipeline"), std::string::npos);
}

TEST(ReportWriter, PipelineCandidatesInEveryForm) {
  TempDir dir;
  Report r = make_report();
  r.results.resize(1);
  PipelineRecord p;
  p.type = "combinations";
  p.guarded = true;
  p.guard_max_drop = 0.01;
  p.guard_written = "max_drop: 0.01, relative: true";
  p.baseline_val_accuracy = 0.9;
  p.guard_min_val_accuracy = 0.891;
  p.guard_text = "validation accuracy >= 0.8910";
  p.selection = "highest compression ratio";
  p.outcome = "2 of 2 orderings tried";
  auto params = std::make_shared<Params>();
  params->set("ratio", Value::scalar("0.5"));
  CandidateRecord a;
  a.index = 0;
  a.name = "prune50-int8";
  a.steps = {{"prune", "prune", params}, {"int8", "quantize", nullptr}};
  a.evaluated = true;
  a.val_accuracy = 0.895;
  a.val_drop = 0.005;
  a.accuracy = 0.905;
  a.size_bytes = 220000;
  a.compression_ratio = 7.66;
  a.reason = "within the guard";
  a.status = "tried";
  a.rank = 1;
  a.checkpoint = "candidates/01-prune50-int8.sqz";
  CandidateRecord b = a;
  b.index = 1;
  b.name = "int8 <x>";
  b.steps.resize(1);
  b.passed = false;
  b.val_accuracy = 0.5;
  b.accuracy = 0.52;
  b.size_bytes = 400000;
  b.rank = 2;
  b.reason = "more than the guard allows";
  b.checkpoint = "candidates/02-int8__x_.sqz";
  p.candidates = {a, b};
  p.skipped = {{"int8>prune", "prune finds nothing to do"}};
  p.best = 0;
  r.pipeline = p;
  write_report(r, dir.path());

  const Json j = Json::parse(read(dir.file("report.json")));
  ASSERT_TRUE(j.contains("pipeline"));
  const Json& jp = j["pipeline"];
  for (const char* key : {"type", "guard", "baseline_val_accuracy", "selection", "outcome",
                          "candidates", "skipped", "best"})
    EXPECT_TRUE(jp.contains(key)) << key;
  EXPECT_EQ(jp["guard"]["written"], "max_drop: 0.01, relative: true");
  ASSERT_EQ(jp["candidates"].size(), 2u);
  const Json& c = jp["candidates"][0];
  for (const char* key : {"index",
                          "name",
                          "steps",
                          "val_accuracy",
                          "val_drop",
                          "val_relative_drop",
                          "accuracy",
                          "accuracy_drop",
                          "params",
                          "nonzero_params",
                          "size_bytes",
                          "flops",
                          "compression_ratio",
                          "passed_guard",
                          "reason",
                          "status",
                          "rank",
                          "checkpoint",
                          "history",
                          "seconds"})
    EXPECT_TRUE(c.contains(key)) << key;
  EXPECT_DOUBLE_EQ(c["steps"][0]["params"]["ratio"].get<double>(), 0.5);
  EXPECT_TRUE(c["steps"][1]["params"].empty());
  EXPECT_NEAR(c["accuracy_drop"].get<double>(), 0.912 - 0.905, 1e-12);
  EXPECT_EQ(jp["candidates"][1]["passed_guard"], false);
  EXPECT_EQ(jp["skipped"][0]["name"], "int8>prune");
  EXPECT_EQ(jp["best"]["name"], "prune50-int8");
  EXPECT_EQ(jp["best"]["result"], j["results"][0]["name"]);

  // validation names its list "history"
  r.pipeline->entries_key = "history";
  write_report(r, dir.path());
  EXPECT_EQ(Json::parse(read(dir.file("report.json")))["pipeline"]["history"].size(), 2u);

  const std::string md = read(dir.file("report.md"));
  EXPECT_NE(md.find("## Pipeline: combinations"), std::string::npos);
  EXPECT_NE(md.find("| prune50-int8 (best) |"), std::string::npos) << md;
  EXPECT_NE(md.find("candidates/02-int8__x_.sqz"), std::string::npos);
  EXPECT_NE(md.find("- int8>prune: prune finds nothing to do"), std::string::npos);
  const std::string html = read(dir.file("report.html"));
  EXPECT_NE(html.find("<h2>Pipeline: combinations</h2>"), std::string::npos);
  EXPECT_NE(html.find("int8 &lt;x&gt;"), std::string::npos);
  EXPECT_EQ(html.find("int8 <x>"), std::string::npos);
  // The other candidate on the accuracy-size chart, hollow and numbered; the chosen one is the
  // result's point.
  EXPECT_EQ(count(html, "fill=\"none\" stroke="), 1u);
  EXPECT_NE(html.find(">#2</text>"), std::string::npos);
  EXPECT_NE(comparison_table(r).find("pipeline combinations: 2 of 2 orderings tried"),
            std::string::npos);
}

TEST(ReportWriter, ProgressiveNotesTargetAndSensitivity) {
  TempDir dir;
  Report r = make_report();
  r.results.resize(1);
  PipelineRecord p;
  p.type = "progressive";
  p.entries_key = "history";
  p.guarded = true;
  p.guard_text = "validation accuracy >= 0.8910";
  p.baseline_val_accuracy = 0.9;
  p.selection = "the last kept";
  p.outcome = "Target 8x reached";
  CandidateRecord a;
  a.name = "prune50";
  a.evaluated = true;
  a.val_accuracy = 0.9;
  a.status = "kept";
  a.note = "unstructured L1 pruning to 50% of each layer's weights: fc1 | fc2";
  CandidateRecord b = a;
  b.index = 1;
  b.name = "prune70";
  b.passed = false;
  b.status = "rolled back";
  b.note = "unstructured L1 pruning to 70%";
  p.candidates = {a, b};
  p.best = 0;
  p.target_compression = 8;
  p.sensitivity = {{"baseline", "fc1", "unstructured", "50%", 0.9, true},
                   {"baseline", "fc1", "unstructured", "70%", 0.5, false},
                   {"baseline", "fc2", "unstructured", "50%", 0.89, true}};
  r.pipeline = p;
  write_report(r, dir.path());
  // "+1.20 pp" for accuracy lost, "-1.20 pp" for accuracy gained.
  auto drop_of = [&](double acc) {
    char buf[32];
    const double pp = 100.0 * (p.baseline_val_accuracy - acc);
    std::snprintf(buf, sizeof buf, "%s%.2f pp", pp > 0.004 ? "+" : "", pp);
    return std::string(buf);
  };

  const Json jp = Json::parse(read(dir.file("report.json")))["pipeline"];
  EXPECT_DOUBLE_EQ(jp["target_compression"].get<double>(), 8.0);
  ASSERT_EQ(jp["history"].size(), 2u);
  EXPECT_EQ(jp["history"][1]["note"], "unstructured L1 pruning to 70%");
  ASSERT_EQ(jp["sensitivity"].size(), 3u);
  EXPECT_EQ(jp["sensitivity"][1]["setting"], "70%");
  EXPECT_EQ(jp["sensitivity"][1]["tolerated"], false);
  EXPECT_DOUBLE_EQ(jp["sensitivity"][1]["val_accuracy"].get<double>(), 0.5);

  const std::string md = read(dir.file("report.md"));
  EXPECT_NE(md.find("- target: 8x compression"), std::string::npos) << md;
  EXPECT_NE(md.find("| # | step |"), std::string::npos) << md;
  EXPECT_NE(md.find("| rolled back |"), std::string::npos) << md;
  EXPECT_NE(md.find("fc1 \\| fc2"), std::string::npos) << md;  // a note's '|' escaped
  // One row per model, method and layer; '*' marks what the layer does not tolerate.
  // The drop in brackets is from the baseline's validation accuracy, positive = accuracy lost.
  EXPECT_NE(md.find("| baseline | unstructured | fc1 | 50%: 90.00% (" + drop_of(0.9) +
                    "); 70%: 50.00% (" + drop_of(0.5) + ")* |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| baseline | unstructured | fc2 | 50%: 89.00% (" + drop_of(0.89) + ") |"),
            std::string::npos)
      << md;
  const std::string html = read(dir.file("report.html"));
  EXPECT_NE(html.find("Sensitivity analysis"), std::string::npos);
  EXPECT_NE(html.find("50%: 90.00% (" + drop_of(0.9) + "); 70%: 50.00% (" + drop_of(0.5) + ")*"),
            std::string::npos);

  // Other pipelines keep report.json as before: no note, target or sensitivity keys.
  r.pipeline->type = "validation";
  r.pipeline->target_compression = 0;
  r.pipeline->sensitivity.clear();
  for (auto& c : r.pipeline->candidates) c.note.clear();
  write_report(r, dir.path());
  const Json jv = Json::parse(read(dir.file("report.json")))["pipeline"];
  EXPECT_FALSE(jv.contains("target_compression"));
  EXPECT_FALSE(jv.contains("sensitivity"));
  EXPECT_FALSE(jv["history"][0].contains("note"));
  EXPECT_EQ(read(dir.file("report.md")).find("Sensitivity analysis"), std::string::npos);
}

TEST(ReportWriter, UnwritableFolderThrows) {
  TempDir dir;
  { std::ofstream(dir.file("a_file")) << "x"; }
  EXPECT_THROW(write_report(make_report(), dir.file("a_file")), Error);
  EXPECT_THROW(write_report(make_report(), dir.file("a_file/sub")), Error);
  EXPECT_EQ(read(dir.file("a_file")), "x");
}

}  // namespace
}  // namespace squeeze::report
