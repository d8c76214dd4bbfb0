// A model saved with an input transform (trained with resize / channels / normalize in data:):
// `squeeze infer` and `squeeze eval` take raw images and apply the model's transform; a model
// without one is run as before.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "cli.h"
#include "squeeze/data/dataset.h"
#include "squeeze/exec/executor.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/model_io.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/builder.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

using testing::cli;
using testing::TempDir;

data::Transform transform() {
  data::Transform t;
  t.resize = {16, 16};
  t.channels = 3;
  t.mean = data::kImagenetMean;
  t.std = data::kImagenetStd;
  return t;
}

// A 3 x 16 x 16 classifier with 4 outputs; with the transform in its metadata when `with`.
ir::Graph model(bool with) {
  ir::GraphBuilder b("rgb16", 0);
  std::string x = b.input("input", {3, 16, 16});
  x = b.act("Relu", b.conv(x, 8, 3, 2, 1, 1, true, "conv"));
  x = b.linear(b.flatten(b.global_avgpool(x)), 4, true, "fc");
  ir::Graph g = b.finish({x});
  if (with)
    for (const auto& [k, v] : transform().to_metadata()) g.metadata[k] = v;
  return g;
}

// numpy's .npy v1.0 for a uint8 array (write_npy writes float and int64 only).
void write_u8_npy(const std::string& path, const at::Tensor& t) {
  std::string shape = "(";
  for (int64_t d : t.sizes()) shape += std::to_string(d) + ", ";
  shape += ")";
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  at::Tensor c = t.contiguous();
  out.write(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
}

TEST(CliTransform, InferAppliesTheModelsTransformToRawImages) {
  TempDir dir;
  ir::Graph g = model(true);
  io::save_sqz(g, dir.file("m.sqz"));
  at::manual_seed(1);
  at::Tensor raw = at::randint(0, 256, {5, 8, 8}, at::kByte);
  write_u8_npy(dir.file("x.npy"), raw);
  auto r = cli({"infer", dir.file("m.sqz"), "--input", dir.file("x.npy"), "--output",
                dir.file("y.npy"), "--batch", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor expected =
      exec::Executor(g).forward(transform().apply(raw.to(at::kFloat).div(255.0)));
  EXPECT_TRUE(testing::tensors_close(data::read_npy(dir.file("y.npy")), expected));

  // The same through an ONNX export: the transform travels in its metadata_props.
  io::export_onnx(g, dir.file("m.onnx"));
  ASSERT_EQ(cli({"infer", dir.file("m.onnx"), "--input", dir.file("x.npy"), "--output",
                 dir.file("y2.npy")}).code, 0);
  EXPECT_TRUE(testing::tensors_close(data::read_npy(dir.file("y2.npy")), expected));

  // Images of a size or channel count the transform cannot take are refused by name.
  data::write_npy(dir.file("bad.npy"), at::rand({2, 2, 8, 8}));
  auto bad = cli({"infer", dir.file("m.sqz"), "--input", dir.file("bad.npy"), "--output",
                  dir.file("z.npy")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("channels: 3 cannot be made from 2-channel images"), std::string::npos)
      << bad.err;
}

TEST(CliTransform, InferWithoutATransformRunsTheInputAsGiven) {
  TempDir dir;
  ir::Graph g = model(false);
  io::save_sqz(g, dir.file("m.sqz"));
  at::Tensor x = at::rand({3, 3, 16, 16});
  data::write_npy(dir.file("x.npy"), x);
  ASSERT_EQ(cli({"infer", dir.file("m.sqz"), "--input", dir.file("x.npy"), "--output",
                 dir.file("y.npy")}).code, 0);
  EXPECT_TRUE(testing::tensors_close(data::read_npy(dir.file("y.npy")), exec::Executor(g).forward(x)));
}

TEST(CliTransform, EvalAppliesTheModelsTransform) {
  TempDir dir;
  io::save_sqz(model(true), dir.file("m.sqz"));
  data::write_npy(dir.file("x.npy"), at::rand({40, 8, 8}));
  data::write_npy(dir.file("y.npy"), at::arange(40, at::kLong).remainder(4));
  // A workflow file will do: its other keys are the run's.
  const std::string yaml = dir.write("data.yaml", "seed: 0\nmodel: {checkpoint: m.sqz}\n"
                                                  "data: {dataset: npy, features: " + dir.file("x.npy") +
                                                      ", labels: " + dir.file("y.npy") + "}\n");
  auto r = cli({"eval", dir.file("m.sqz"), "--data", yaml});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("input transform (from the model): resize 16x16"), std::string::npos) << r.out;
  // Without the transform the 8 x 8 gray samples do not fit the model.
  io::save_sqz(model(false), dir.file("plain.sqz"));
  auto plain = cli({"eval", dir.file("plain.sqz"), "--data", yaml});
  EXPECT_NE(plain.code, 0);
  EXPECT_EQ(plain.out.find("input transform"), std::string::npos);
}

}  // namespace
}  // namespace squeeze
