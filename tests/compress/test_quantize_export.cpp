// QDQ ONNX and QONNX export of quantized graphs, and their re-import into squeeze.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "io/onnx_internal.h"
#include "io/onnx_test_util.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/deploy/export.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/qonnx.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/models/zoo.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;

using testing::random_splits;

ir::Graph quantized_cnn(int bits, const data::Splits& d, bool per_channel = true) {
  return testing::ptq(models::build("lenet5", {}, 0), d, bits, per_channel);
}

using testing::op_counts;

// Simulated execution on both sides, so the comparison is about the graphs, not the kernels.
at::Tensor simulate(const ir::Graph& g, const at::Tensor& x) {
  quant::set_int8_enabled(false);
  at::Tensor y = exec::Executor(g).forward(x);
  quant::set_int8_enabled(true);
  return y;
}

int quantized_weights(const ir::Graph& g) {
  int n = 0;
  for (const auto& node : g.nodes)
    if (node.has_param("weight") && node.param("weight").qspec) ++n;
  return n;
}

TEST(QuantExport, QdqRoundTrip) {
  at::manual_seed(0);
  data::Splits d = random_splits({1, 28, 28});
  ir::Graph q = quantized_cnn(8, d);
  squeeze::testing::TempDir tmp;
  std::string path = tmp.file("sqz_qdq.onnx");
  io::export_onnx(q, path);  // runs the ONNX checker
  auto counts = op_counts(path);
  EXPECT_EQ(counts["DequantizeLinear"], 5 + counts["QuantizeLinear"]);  // 5 weights + activations
  EXPECT_GE(counts["QuantizeLinear"], 6);
  ir::Graph back = io::import_onnx(path);
  EXPECT_EQ(quantized_weights(back), 5);
  for (const auto& n : back.nodes)
    if (n.has_param("weight")) {
      const auto& p = n.param("weight");
      EXPECT_TRUE(quant::on_grid(p.value, *p.qspec)) << n.name;
      EXPECT_EQ(p.qspec->axis, 0) << n.name;
    }
  at::Tensor x = d.test.x.narrow(0, 0, 16);
  EXPECT_TRUE(squeeze::testing::tensors_close(simulate(back, x), simulate(q, x), 1e-5, 1e-5));
  // The int8 kernels run on the re-imported graph too.
  for (const auto& n : back.nodes)
    if (n.op == "Conv") EXPECT_EQ(quant::planned_execution(back, n), "int8") << n.name;
  fs::remove(path);
}

TEST(QuantExport, QdqClipsNarrowWidths) {
  at::manual_seed(0);
  data::Splits d = random_splits({1, 28, 28});
  ir::Graph q = quantized_cnn(4, d);
  squeeze::testing::TempDir tmp;
  std::string path = tmp.file("sqz_qdq4.onnx");
  io::export_onnx(q, path);
  EXPECT_GE(op_counts(path)["Clip"], 6);
  ir::Graph back = io::import_onnx(path);
  at::Tensor x = d.test.x.narrow(0, 0, 16);
  EXPECT_TRUE(squeeze::testing::tensors_close(simulate(back, x), simulate(q, x), 1e-5, 1e-5));
  fs::remove(path);
}

TEST(QuantExport, QonnxRoundTripKeepsBitWidths) {
  at::manual_seed(0);
  data::Splits d = random_splits({1, 28, 28});
  for (int bits : {3, 8}) {
    ir::Graph q = quantized_cnn(bits, d);
    squeeze::testing::TempDir tmp;
    std::string path = tmp.file("sqz_model.qonnx.onnx");
    deploy::export_model(q, "qonnx", path);
    auto counts = op_counts(path);
    EXPECT_EQ(counts["QuantizeLinear"], 0);
    EXPECT_GE(counts["Quant"], 11);  // 5 weights + 6 activations
    ir::Graph back = io::import_onnx(path);
    EXPECT_EQ(quantized_weights(back), 5);
    for (const auto& n : back.nodes) {
      if (n.has_param("weight")) EXPECT_EQ(n.param("weight").qspec->bits, bits) << n.name;
      if (n.out_qspec) EXPECT_EQ(n.out_qspec->bits, bits) << n.name;
    }
    at::Tensor x = d.test.x.narrow(0, 0, 16);
    EXPECT_TRUE(squeeze::testing::tensors_close(simulate(back, x), simulate(q, x), 1e-5, 1e-5)) << bits << " bits";
    fs::remove(path);
  }
}

TEST(QuantExport, FloatGraphsExportUnchanged) {
  ir::Graph g = models::build("lenet5", {}, 0);
  squeeze::testing::TempDir tmp;
  std::string path = tmp.file("sqz_float.onnx");
  io::export_qonnx(g, path);
  auto counts = op_counts(path);
  EXPECT_EQ(counts["Quant"], 0);
  EXPECT_EQ(counts["DequantizeLinear"], 0);
  fs::remove(path);
}

}  // namespace
}  // namespace squeeze
