// The parts of the report that say which model to ship: Pareto front and recommendation,
// per-layer figures, training curves, per-class n/a and summary, the sensitivity sign
// convention, artifact links, honest chart axes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "report/report_fixture.h"
#include "squeeze/report/report.h"

namespace squeeze::report {
namespace {

using Json = nlohmann::json;
using testing::read_file;
using testing::ship_report;
using testing::TempDir;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (needle)
#define EXPECT_LACKS(haystack, needle) \
  EXPECT_EQ(std::string(haystack).find(needle), std::string::npos) << (needle)

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(ReportShip, RecommendsTheSmallestWithinTheDrop) {
  const Report r = ship_report();
  const Recommendation rec = recommend(r);
  ASSERT_TRUE(rec.judged);
  EXPECT_EQ(rec.result, 0);  // "small": 0.5 pp drop, 300 kB; "wide" is within too but larger
  EXPECT_HAS(rec.text, "Ship small");
  EXPECT_HAS(rec.text, "2 of 4");
  EXPECT_TRUE(rec.baseline_on_front);
  EXPECT_EQ(rec.on_front, (std::vector<bool>{true, true, true, false}));  // "worse" dominated
}

TEST(ReportShip, RecommendsByLatencyAndByFlops) {
  Report r = ship_report();
  r.recommend.by = "latency";
  Recommendation rec = recommend(r);
  EXPECT_EQ(rec.result, 2);  // "wide": 60 us
  EXPECT_EQ(rec.metric, "latency_us.batch1");
  // By latency "wide" dominates "small" and "tiny".
  EXPECT_EQ(rec.on_front, (std::vector<bool>{false, false, true, false}));
  r.recommend.by = "flops";
  rec = recommend(r);
  EXPECT_EQ(rec.result, 0);
  EXPECT_EQ(rec.metric, "flops");
}

TEST(ReportShip, NoModelWithinTheDropIsSaidPlainly) {
  Report r = ship_report();
  r.recommend.max_drop = 0.001;
  TempDir dir;
  write_report(r, dir.path());
  const Json j = Json::parse(read_file(dir.file("report.json")));
  EXPECT_TRUE(j["recommendation"]["model"].is_null());
  EXPECT_TRUE(j["recommendation"]["judged"].get<bool>());
  const std::string text = j["recommendation"]["text"];
  EXPECT_HAS(text, "No compressed model is within 0.10 pp");
  EXPECT_HAS(text, "the closest is wide");
  EXPECT_HAS(text, "Ship the baseline");
  for (const auto& res : j["results"]) EXPECT_FALSE(res["recommended"].get<bool>());
  EXPECT_HAS(read_file(dir.file("report.md")), "No compressed model is within");
  const std::string html = read_file(dir.file("report.html"));
  EXPECT_HAS(html, "No compressed model is within");
  EXPECT_LACKS(html, "class=\"point recommended");
}

TEST(ReportShip, NoDataNoRecommendation) {
  Report r = ship_report();
  r.baseline.evaluated = false;
  for (auto& res : r.results) res.stats.evaluated = false;
  const Recommendation rec = recommend(r);
  EXPECT_FALSE(rec.judged);
  EXPECT_EQ(rec.result, -1);
  EXPECT_HAS(rec.text, "accuracy was not measured");
}

TEST(ReportShip, JsonCarriesFrontRecommendationLayersCurves) {
  TempDir dir;
  write_report(ship_report(), dir.path());
  const Json j = Json::parse(read_file(dir.file("report.json")));
  const Json& rec = j["recommendation"];
  EXPECT_EQ(rec["model"], "small");
  EXPECT_EQ(rec["result_index"], 0);
  EXPECT_EQ(rec["by"], "size");
  EXPECT_EQ(rec["metric"], "size_bytes");
  EXPECT_DOUBLE_EQ(rec["max_drop"].get<double>(), 0.01);
  EXPECT_TRUE(j["baseline"]["pareto_front"].get<bool>());
  EXPECT_TRUE(j["results"][0]["recommended"].get<bool>());
  EXPECT_TRUE(j["results"][0]["pareto_front"].get<bool>());
  EXPECT_FALSE(j["results"][3]["pareto_front"].get<bool>());
  EXPECT_EQ(j["baseline"]["num_classes"], 10);
  ASSERT_EQ(j["baseline"]["layers"].size(), 3u);
  EXPECT_EQ(j["baseline"]["layers"][0]["name"], "conv1");
  EXPECT_EQ(j["results"][0]["layers"][0]["weight_bits"], 4);
  EXPECT_EQ(j["results"][0]["layers"][0]["nonzero_params"], 150);
  ASSERT_EQ(j["baseline"]["training"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["baseline"]["training"][2]["val_accuracy"].get<double>(), 0.90);
  ASSERT_EQ(j["results"][0]["history"][0]["curve"].size(), 2u);
  EXPECT_EQ(j["results"][0]["history"][0]["curve"][1]["epoch"], 2);
}

TEST(ReportShip, MarkdownCarriesTheSameTables) {
  TempDir dir;
  write_report(ship_report(), dir.path());
  const std::string md = read_file(dir.file("report.md"));
  for (const char* s : {"## Recommendation", "Ship small", "verdict (by size)", "recommended",
                        "Pareto front", "## Per-layer", "| fc1 | Gemm | 600 | removed |",
                        "| conv1 | Conv | 300 | 300 | 150 | 50.00% | 32 (float) | 4 |",
                        "## Training and fine-tuning", "| baseline | training | 3 |",
                        "stage 1 prune fine-tuning",
                        "[models/small.onnx](models/small.onnx)", "## Environment",
                        "## Configuration"})
    EXPECT_HAS(md, s);
  // The replaced layer is listed where it was, before its low-rank factors.
  EXPECT_LT(md.find("| fc1 | Gemm | 600 | removed |"), md.find("| fc1_lr1 | Gemm | - | 200 |"));
  EXPECT_LT(md.find("| fc1_lr2 |"), md.find("| fc2 | Gemm | 100 | 100 |"));
  // "worse" is dominated: its verdict is "-".
  EXPECT_TRUE(std::regex_search(md, std::regex("\\| worse \\|[^\\n]*\\| - \\|\\n")));
}

TEST(ReportShip, PerClassAbsentClassesAreNa) {
  TempDir dir;
  write_report(ship_report(), dir.path());  // 10 classes, 2 in the test set
  const std::string md = read_file(dir.file("report.md"));
  EXPECT_HAS(md, "| 0 T-shirt/top | 90.00% |");
  EXPECT_HAS(md, "| 9 | n/a | n/a |");
  EXPECT_EQ(count(md, "| n/a | n/a | n/a | n/a | n/a |\n"), 8u);  // classes 2..9
  EXPECT_LACKS(md, "occur in the test set,");  // 10 rows: listed whole, no summary
}

TEST(ReportShip, ManyClassesAreSummarised) {
  Report r = ship_report();
  r.baseline.num_classes = 1000;
  r.baseline.per_class.clear();
  for (int64_t c = 0; c < 30; ++c)
    r.baseline.per_class.push_back({c * 7, "", 0.5 + 0.01 * double(c), 0, 0});
  for (auto& res : r.results) {
    res.stats.num_classes = 1000;
    res.stats.per_class = r.baseline.per_class;
  }
  TempDir dir;
  write_report(r, dir.path());
  const std::string md = read_file(dir.file("report.md"));
  EXPECT_HAS(md, "1000 classes: 30 occur in the test set, 970 do not (n/a, not listed)");
  EXPECT_HAS(md, "| 0 (worst 1) | 50.00% |");
  EXPECT_HAS(md, "| 203 (best 1) | 79.00% |");
  EXPECT_EQ(count(md, "(worst "), 5u);
  EXPECT_EQ(count(md, "(best "), 5u);
  EXPECT_LT(count(md, "\n| "), 150u);  // not 1000 rows
  const std::string html = read_file(dir.file("report.html"));
  EXPECT_HAS(html, "970 do not (n/a, not listed)");
}

TEST(ReportShip, SensitivitySignConvention) {
  Report r = ship_report();
  PipelineRecord p;
  p.type = "progressive";
  p.baseline_val_accuracy = 0.90;
  p.sensitivity = {{"baseline", "fc1", "unstructured", "50%", 0.888, true},
                   {"baseline", "fc1", "unstructured", "90%", 0.91, false}};
  r.pipeline = p;
  TempDir dir;
  write_report(r, dir.path());
  const std::string md = read_file(dir.file("report.md"));
  EXPECT_HAS(md, "50%: 88.80% (+1.20 pp); 90%: 91.00% (-1.00 pp)*");
  EXPECT_HAS(md, "Sign convention: the drop in brackets is the baseline's validation accuracy minus");
}

TEST(ReportShip, HtmlHasChartsLinksAndHonestAxes) {
  TempDir dir;
  write_report(ship_report(), dir.path());
  const std::string html = read_file(dir.file("report.html"));
  for (const char* id : {"chart-accuracy-size", "chart-accuracy-latency", "chart-accuracy-bars",
                         "chart-layers-1", "chart-layers-4", "chart-curves"})
    EXPECT_HAS(html, std::string("id=\"") + id + "\"");
  EXPECT_HAS(html, "<a href=\"models/small.sqz\">models/small.sqz</a>");
  EXPECT_HAS(html, "class=\"front\" d=\"M");   // the Pareto staircase
  EXPECT_EQ(count(html, "class=\"point on-front recommended\""), 1u);
  EXPECT_HAS(html, "chance level (1/10 = 10.00%)");
  // The accuracy axis of the size chart runs from 0% to 100% whatever the data's range.
  const size_t a = html.find("id=\"chart-accuracy-size\"");
  const std::string chart = html.substr(a, html.find("</svg>", a) - a);
  EXPECT_HAS(chart, ">0%</text>");
  EXPECT_HAS(chart, ">100%</text>");
  EXPECT_HAS(chart, "not zoomed");
  EXPECT_EQ(html.find("<script"), std::string::npos);
}

TEST(ReportShip, NoTrainingNoCurveChart) {
  Report r = ship_report();
  r.baseline_curve.clear();
  for (auto& res : r.results) res.history[0].curve.clear();
  r.baseline.latency_us.clear();
  for (auto& res : r.results) res.stats.latency_us.clear(), res.speedup.clear();
  TempDir dir;
  write_report(r, dir.path());
  const std::string html = read_file(dir.file("report.html"));
  EXPECT_LACKS(html, "id=\"chart-curves\"");
  EXPECT_LACKS(read_file(dir.file("report.md")), "## Training and fine-tuning");
  EXPECT_HAS(html, "Latency was not measured");
}

}  // namespace
}  // namespace squeeze::report
