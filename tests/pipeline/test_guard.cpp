// The accuracy guard: relative and absolute bounds, the preserve_accuracy form, and guards that
// no model (not even the baseline) could pass.
#include <gtest/gtest.h>

#include "squeeze/pipeline/guard.h"
#include "squeeze/util/error.h"

namespace squeeze::pipeline {
namespace {

GuardOptions options(double max_drop, bool relative) {
  GuardOptions o;
  o.max_drop = max_drop;
  o.relative = relative;
  o.written = "max_drop";
  return o;
}

TEST(Guard, RelativeDropIsAFractionOfTheBaseline) {
  Guard g(options(0.05, true), 0.80);
  EXPECT_DOUBLE_EQ(g.min_accuracy(), 0.76);
  EXPECT_TRUE(g.check(0.80).passed);
  EXPECT_TRUE(g.check(0.76).passed);  // exactly on the bound
  EXPECT_TRUE(g.check(0.85).passed);  // better than the baseline
  GuardVerdict v = g.check(0.70);
  EXPECT_FALSE(v.passed);
  EXPECT_NEAR(v.drop, 0.10, 1e-12);
  EXPECT_NEAR(v.relative_drop, 0.125, 1e-12);
  EXPECT_NE(v.reason.find("more than the guard allows"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("0.7600"), std::string::npos) << v.reason;  // the bound it missed
  EXPECT_NE(g.check(0.79).reason.find("within the guard"), std::string::npos);
}

TEST(Guard, AbsoluteDropIsInAccuracyPoints) {
  Guard g(options(0.02, false), 0.80);
  EXPECT_DOUBLE_EQ(g.min_accuracy(), 0.78);
  EXPECT_TRUE(g.check(0.78).passed);
  EXPECT_FALSE(g.check(0.7799).passed);
}

TEST(Guard, ZeroDropAllowsNoLossAndTheBaselineAlwaysPasses) {
  for (bool relative : {true, false}) {
    Guard g(options(0.0, relative), 0.6);
    EXPECT_TRUE(g.check(0.6).passed);
    EXPECT_FALSE(g.check(0.5999).passed);
  }
}

TEST(Guard, RejectsGuardsNoModelCouldPass) {
  EXPECT_THROW(options(-0.01, true).validate(), ConfigError);
  EXPECT_THROW(options(1.0, true).validate(), ConfigError);  // accepts everything: a percentage?
  EXPECT_THROW(options(std::nan(""), true).validate(), ConfigError);
  GuardOptions keep = options(1.0 - 1.2, true);
  keep.written = "preserve_accuracy: 1.2";
  try {
    keep.validate();
    FAIL() << "preserve_accuracy 1.2 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("preserve_accuracy = 1.2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Guard(options(-0.5, false), 0.9), ConfigError);
}

}  // namespace
}  // namespace squeeze::pipeline
