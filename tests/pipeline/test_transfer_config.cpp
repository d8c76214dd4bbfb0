// Bring your own model, the config side: model.head, the image transforms in data:, and the
// checks made before anything trains (samples that do not fit the model).
#include <gtest/gtest.h>

#include <string>

#include "squeeze/io/sqz.h"
#include "squeeze/ir/builder.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/errors.h"

namespace squeeze::pipeline {
namespace {

using squeeze::testing::error_of;

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

std::string config_error(const std::string& yaml) {
  return error_of<ConfigError>([&] { parse_config(yaml); });
}

TEST(TransferConfig, HeadAndTransformsParse) {
  WorkflowConfig c = parse_config(
      "model: {onnx: m.onnx, head: {num_classes: 10}}\n"
      "data: {dataset: fashion-mnist, resize: [64, 48], channels: 3, normalize: imagenet,\n"
      "       limit: {train: 100, val: 20, test: 50}}\n");
  EXPECT_EQ(c.model.onnx, "m.onnx");
  EXPECT_EQ(c.model.head_classes, 10);
  ASSERT_TRUE(c.data);
  EXPECT_EQ(c.data->resize, (std::vector<int64_t>{64, 48}));
  EXPECT_EQ(c.data->channels, 3);
  EXPECT_EQ(c.data->normalize, "imagenet");
  EXPECT_TRUE(c.data->has_transform());
  EXPECT_EQ(c.data->limit_val, 20);

  WorkflowConfig m = parse_config(
      "model: {checkpoint: m.sqz, head: {num_classes: 3}}\n"
      "data: {dataset: fashion-mnist, resize: 32, normalize: {mean: [0.5], std: [0.25]}}\n");
  EXPECT_EQ(m.model.head_classes, 3);
  EXPECT_EQ(m.data->resize, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(m.data->normalize, "custom");
  EXPECT_EQ(m.data->mean, (std::vector<double>{0.5}));
  EXPECT_EQ(m.data->std, (std::vector<double>{0.25}));
  EXPECT_EQ(parse_config("model: {zoo: small_cnn, head: {num_classes: 4}}\n").model.head_classes, 4);
}

TEST(TransferConfig, WithoutTheKeysNothingChanges) {
  WorkflowConfig c = parse_config("model: {onnx: m.onnx}\ndata: {dataset: fashion-mnist}\n");
  EXPECT_EQ(c.model.head_classes, 0);
  EXPECT_FALSE(c.data->has_transform());
  EXPECT_EQ(c.data->normalize, "standard");
}

TEST(TransferConfig, BadValuesNameTheKey) {
  const std::string m = "model: {onnx: m.onnx}\n";
  EXPECT_HAS(config_error(m + "data: {resize: [0, 64]}\n"),
             "data.resize: expected [H, W] (or one size for both), integers >= 1");
  EXPECT_HAS(config_error(m + "data: {resize: [64, 64, 3]}\n"), "data.resize");
  EXPECT_HAS(config_error(m + "data: {channels: 2}\n"), "data.channels: expected 1 or 3, got 2");
  EXPECT_HAS(config_error(m + "data: {normalize: {mean: [0.5, 0.5], std: [0.2]}}\n"),
             "data.normalize: mean and std need the same number of values");
  EXPECT_HAS(config_error(m + "data: {normalize: {mean: [0.5], std: [0]}}\n"),
             "data.normalize.std: expected numbers > 0");
  EXPECT_HAS(config_error(m + "data: {normalize: {mean: [0.5], sd: [0.2]}}\n"), "std");
  EXPECT_HAS(config_error(m + "data: {normalize: imagenet1k}\n"), "imagenet");
  EXPECT_HAS(config_error(m + "data: {rezise: [64, 64]}\n"), "resize");
  EXPECT_HAS(config_error("model: {onnx: m.onnx, head: {classes: 10}}\n"),
             "missing required key 'num_classes' in model.head");
  EXPECT_HAS(config_error("model: {onnx: m.onnx, head: {num_classes: 0}}\n"), "model.head.num_classes");
}

// A 3 x 16 x 16 model with 1000 outputs, saved as a checkpoint.
std::string imagenet_like(const squeeze::testing::TempDir& dir) {
  ir::GraphBuilder b("in1k", 0);
  std::string x = b.input("input", {3, 16, 16});
  x = b.act("Relu", b.conv(x, 8, 3, 2, 1, 1, true, "conv"));
  x = b.linear(b.flatten(b.global_avgpool(x)), 1000, true, "fc");
  io::save_sqz(b.finish({x}), dir.file("in1k.sqz"));
  return dir.file("in1k.sqz");
}

TEST(TransferConfig, SamplesThatDoNotFitTheModelAreRefusedBeforeTraining) {
  squeeze::testing::TempDir dir;
  const std::string m = imagenet_like(dir);
  const std::string npy =
      "data: {dataset: synthetic-jets, samples: 300}\n";
  std::string e = error_of<ConfigError>([&] {
    check_workflow(parse_config("model: {checkpoint: " + m + "}\n" + npy +
                                "baseline: {train: {epochs: 1}}\n"));
  });
  EXPECT_HAS(e, "data: the samples have shape [?, 16] but the model (in1k) takes [?, 3, 16, 16]");
}

TEST(TransferConfig, CheckPassesWithHeadAndTransforms) {
  squeeze::testing::TempDir dir;
  const std::string m = imagenet_like(dir);
  // Gray 8 x 8 images in .npy files.
  at::manual_seed(0);
  data::write_npy(dir.file("x.npy"), at::rand({60, 8, 8}));
  data::write_npy(dir.file("y.npy"), at::arange(60, at::kLong).remainder(4));
  const std::string d = "data: {dataset: npy, features: " + dir.file("x.npy") + ", labels: " +
                        dir.file("y.npy") + ", batch_size: 16";
  const std::string run = "baseline: {train: {epochs: 1}}\n";
  std::string e = error_of<ConfigError>(
      [&] { check_workflow(parse_config("model: {checkpoint: " + m + "}\n" + d + "}\n" + run)); });
  EXPECT_HAS(e, "add channels: 3 and resize: [16, 16] to the data: block");
  EXPECT_NO_THROW(check_workflow(
      parse_config("model: {checkpoint: " + m + ", head: {num_classes: 4}}\n" + d +
                   ", resize: [16, 16], channels: 3, normalize: imagenet}\n" + run)));
}

}  // namespace
}  // namespace squeeze::pipeline
