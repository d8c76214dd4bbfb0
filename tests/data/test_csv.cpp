// CSV reader and the csv data source.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "testing/asserts.h"
#include "squeeze/util/error.h"

namespace fs = std::filesystem;
using namespace squeeze;
using namespace squeeze::data;

namespace {

using squeeze::testing::TempDir;

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

}  // namespace

TEST(DataCsv, HeaderQuotesBlankLinesAndIntegerLabels) {
  TempDir dir;
  const std::string p = dir.write("a.csv",
                                  "pt, \"eta\",phi,label\r\n"
                                  "1.5,\"2\",3,0\r\n"
                                  "\r\n"
                                  "  -4e1 , \"5.25\" ,6,2\n"
                                  "\n"
                                  "7,8,9,1");  // no final newline
  at::Tensor x, y;
  std::vector<std::string> names = {"stale"};
  read_csv(p, "label", {}, x, y, &names);
  EXPECT_TRUE(names.empty());
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  EXPECT_TRUE(
      x.equal(at::tensor({1.5f, 2.f, 3.f, -40.f, 5.25f, 6.f, 7.f, 8.f, 9.f}).reshape({3, 3})));
  EXPECT_EQ(y.scalar_type(), at::kLong);
  EXPECT_TRUE(y.equal(at::tensor({0, 2, 1}, at::kLong)));
}

TEST(DataCsv, SelectedFeatureColumnsInGivenOrder) {
  TempDir dir;
  const std::string p = dir.write("a.csv", "a,b,c,y\n1,2,3,0\n4,5,6,1\n");
  at::Tensor x, y;
  read_csv(p, "y", {"c", "a"}, x, y, nullptr);
  EXPECT_TRUE(x.equal(at::tensor({3.f, 1.f, 6.f, 4.f}).reshape({2, 2})));
}

TEST(DataCsv, StringLabelsMapToSortedClassNames) {
  TempDir dir;
  const std::string p = dir.write("s.csv",
                                  "x,\"kind, of jet\"\n"
                                  "1,quark\n"
                                  "2,\"top \"\"t\"\"\"\n"
                                  "3,gluon\n"
                                  "4,quark\n");
  at::Tensor x, y;
  std::vector<std::string> names;
  read_csv(p, "kind, of jet", {}, x, y, &names);
  ASSERT_EQ(names, (std::vector<std::string>{"gluon", "quark", "top \"t\""}));
  EXPECT_TRUE(y.equal(at::tensor({1, 2, 0, 1}, at::kLong)));
}

TEST(DataCsv, QuotedFieldWithNewline) {
  TempDir dir;
  const std::string p = dir.write("q.csv", "x,name\n1,\"two\nlines\"\n2,other\n");
  at::Tensor x, y;
  std::vector<std::string> names;
  read_csv(p, "name", {}, x, y, &names);
  EXPECT_EQ(names, (std::vector<std::string>{"other", "two\nlines"}));
  EXPECT_EQ(x.size(0), 2);
}

TEST(DataCsv, NonNumericCellNamesRowAndColumn) {
  TempDir dir;
  std::string text = "pt,eta,label\n";
  for (int i = 1; i <= 20; ++i) text += (i == 17 ? "abc" : std::to_string(i)) + ",0.5,1\n";
  const std::string p = dir.write("bad.csv", text);
  at::Tensor x, y;
  const std::string e = error_of([&] { read_csv(p, "label", {}, x, y, nullptr); });
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("non-numeric cell 'abc'"), std::string::npos) << e;
  EXPECT_NE(e.find("row 17"), std::string::npos) << e;
  EXPECT_NE(e.find("column 'pt'"), std::string::npos) << e;
}

TEST(DataCsv, MissingLabelColumnListsColumns) {
  TempDir dir;
  const std::string p = dir.write("a.csv", "pt,eta,class\n1,2,0\n");
  at::Tensor x, y;
  const std::string e = error_of([&] { read_csv(p, "label", {}, x, y, nullptr); });
  EXPECT_NE(e.find("no label column 'label'"), std::string::npos) << e;
  EXPECT_NE(e.find("'pt', 'eta', 'class'"), std::string::npos) << e;
}

TEST(DataCsv, MalformedFilesAreRejected) {
  TempDir dir;
  at::Tensor x, y;
  std::string e = error_of(
      [&] { read_csv(dir.write("r.csv", "a,label\n1,0\n2\n"), "label", {}, x, y, nullptr); });
  EXPECT_NE(e.find("row 2"), std::string::npos) << e;
  EXPECT_NE(e.find("1 fields but the header has 2"), std::string::npos) << e;

  e = error_of([&] { read_csv(dir.write("e.csv", ""), "label", {}, x, y, nullptr); });
  EXPECT_NE(e.find("empty"), std::string::npos) << e;

  e = error_of(
      [&] { read_csv(dir.write("u.csv", "a,label\n\"1,0\n"), "label", {}, x, y, nullptr); });
  EXPECT_NE(e.find("unterminated"), std::string::npos) << e;

  e = error_of(
      [&] { read_csv(dir.write("f.csv", "a,label\n1,0\n"), "label", {"b"}, x, y, nullptr); });
  EXPECT_NE(e.find("no feature column 'b'"), std::string::npos) << e;

  e = error_of([&] { read_csv(dir.path() + "/missing.csv", "label", {}, x, y, nullptr); });
  EXPECT_NE(e.find("missing.csv"), std::string::npos) << e;
}

TEST(DataCsv, LoadWithSeparateTestFileSharesStringClasses) {
  TempDir dir;
  std::string train = "f,cls\n", test = "f,cls\n";
  for (int i = 0; i < 30; ++i) train += std::to_string(i) + (i % 2 ? ",b\n" : ",c\n");
  test += "1,a\n2,c\n";
  DataOptions o;
  o.dataset = "csv";
  o.path = dir.write("train.csv", train);
  o.test_path = dir.write("test.csv", test);
  o.label_column = "cls";
  o.val_fraction = 0.0;
  const Splits s = load(o, 1);
  EXPECT_EQ(s.class_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(s.num_classes, 3);
  EXPECT_EQ(s.train.size(), 30);
  EXPECT_TRUE(s.test.y.equal(at::tensor({0, 2}, at::kLong)));
  EXPECT_EQ(at::bincount(s.train.y, {}, 3)[0].item<int64_t>(), 0);
}

TEST(DataCsv, NegativeIntegerLabelIsAnInputError) {
  TempDir dir;
  DataOptions o;
  o.dataset = "csv";
  o.path = dir.write("neg.csv", "f,label\n1,0\n2,-1\n3,1\n");
  const std::string e = error_of([&] { load(o, 0); });
  EXPECT_NE(e.find("label -1"), std::string::npos) << e;
  EXPECT_NE(e.find("negative"), std::string::npos) << e;
}
