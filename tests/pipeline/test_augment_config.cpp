// data.augment in a workflow config: read into DataOptions, and every bad input rejected naming
// the key, before any data is read; through the CLI that is exit code 2.
#include <gtest/gtest.h>

#include <string>

#include "cli.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/cli.h"
#include "testing/errors.h"

namespace squeeze::pipeline {
namespace {

using squeeze::testing::error_of;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

std::string config_error(const std::string& yaml) {
  return error_of<ConfigError>([&] { parse_config(yaml); });
}

TEST(AugmentConfig, ReadsShiftAndFlip) {
  WorkflowConfig c = parse_config(
      "model: {zoo: small_cnn}\ndata: {dataset: fashion-mnist, augment: {shift: 2, hflip: true}}\n");
  EXPECT_EQ(c.data->augment.shift, 2);
  EXPECT_TRUE(c.data->augment.hflip);
  WorkflowConfig none = parse_config("model: {zoo: small_cnn}\ndata: {dataset: fashion-mnist}\n");
  EXPECT_TRUE(none.data->augment.empty());
}

TEST(AugmentConfig, BadKeysAndValuesNameTheKey) {
  const std::string head = "model: {zoo: small_cnn}\ndata: {dataset: fashion-mnist, augment: ";
  const std::string typo = config_error(head + "{shfit: 2}}\n");
  EXPECT_HAS(typo, "shfit");
  EXPECT_HAS(typo, "data.augment");
  EXPECT_HAS(typo, "shift");
  EXPECT_HAS(config_error(head + "{shift: -1}}\n"), "data.augment.shift");
  EXPECT_HAS(config_error(head + "{shift: 1.5}}\n"), "data.augment.shift");
  EXPECT_HAS(config_error(head + "{hflip: maybe}}\n"), "data.augment.hflip");
  const std::string table = config_error(
      "model: {zoo: mlp}\ndata: {dataset: csv, path: j.csv, augment: {hflip: true}}\n");
  EXPECT_HAS(table, "data.augment");
  EXPECT_HAS(table, "csv");
}

TEST(AugmentConfig, TheCliExitsWithTwo) {
  squeeze::testing::TempDir dir;
  const std::string path = dir.write(
      "bad.yaml", "model: {zoo: small_cnn}\ndata: {dataset: fashion-mnist, augment: {shift: -2}}\n");
  const auto r = squeeze::testing::cli({"config", "--check", path});
  EXPECT_EQ(r.code, 2);
  EXPECT_HAS(r.err, "data.augment.shift");
}

}  // namespace
}  // namespace squeeze::pipeline
