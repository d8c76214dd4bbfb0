// ONNX backend conformance: pytorch-converted, pytorch-operator, simple and light. See
// conformance_util.h for the rules. The light models (224x224 real architectures) take about 8 s
// together on the 2-core reference machine (the float64 runs of the softmax check are most of it),
// so they stay in the fast set.
#include "conformance/conformance_util.h"

namespace squeeze::conformance {
namespace {

const std::vector<std::string> kAllFolders = {"pytorch-converted", "pytorch-operator", "simple", "light"};

class OnnxConformance : public ::testing::TestWithParam<Case> {};

TEST_P(OnnxConformance, MatchesReference) { check_case(GetParam()); }

// Every passing case also survives squeeze -> ONNX (opset 13) -> squeeze with the same outputs.
TEST_P(OnnxConformance, ExportRoundTrip) {
  const Case& c = GetParam();
  if (expectations().count(c.id)) GTEST_SKIP() << c.id << " is an expected failure";
  std::string why = run_export_round_trip(c);
  EXPECT_EQ(why, "") << c.id;
}

INSTANTIATE_TEST_SUITE_P(Onnx, OnnxConformance, ::testing::ValuesIn(discover(kAllFolders)), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(OnnxConformance);

TEST(OnnxConformanceSuite, ExpectationsNameRealCasesWithReasons) {
  auto cases = discover(kAllFolders);
  if (cases.empty()) GTEST_SKIP() << "no conformance data under " << conformance_dir();
  std::set<std::string> ids;
  for (const auto& c : cases) ids.insert(c.id);
  for (const auto& [id, reason] : expectations()) {
    EXPECT_TRUE(ids.count(id)) << "onnx_expectations.txt lists '" << id << "', which is not a conformance case";
    EXPECT_FALSE(reason.empty()) << "onnx_expectations.txt lists '" << id << "' without a reason";
  }
}

TEST(OnnxConformanceSuite, AtLeastNinetyPercentPass) {
  auto cases = discover(kAllFolders);
  if (cases.empty()) GTEST_SKIP() << "no conformance data under " << conformance_dir();
  auto listed = expectations();
  size_t failing = 0;
  std::map<std::string, std::pair<int, int>> per_folder;  // passing, total
  for (const auto& c : cases) {
    bool fails = listed.count(c.id) > 0;
    failing += fails;
    per_folder[c.folder].second++;
    per_folder[c.folder].first += !fails;
    // Every light model must pass.
    if (c.folder == "light") EXPECT_FALSE(fails) << c.id << " is a light model and must pass";
  }
  for (const auto& [folder, pt] : per_folder)
    std::cout << "[ conformance ] " << folder << ": " << pt.first << "/" << pt.second << " pass\n";
  double rate = 1.0 - static_cast<double>(failing) / static_cast<double>(cases.size());
  std::cout << "[ conformance ] total: " << cases.size() - failing << "/" << cases.size() << " pass\n";
  EXPECT_GE(rate, 0.9);
}

}  // namespace
}  // namespace squeeze::conformance
