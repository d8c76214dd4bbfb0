// QONNX export of fixed-point models: Quant nodes with the ap_fixed mapping hls4ml reads (bit
// width W, scale 2^-(W-I), zero point 0, signed, narrow = AP_SAT_SYM, rounding_mode), passing the
// ONNX checker (the exporter runs it), re-imported with identical outputs; modes Quant cannot
// express refused.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/onnx_internal.h"
#include "io/onnx_test_util.h"
#include "squeeze/compress/quantize/fixed_point.h"
#include "squeeze/deploy/export.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/io/onnx.h"
#include "squeeze/ir/fixed_point.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

ir::Graph fixed_jet_tagger(compress::FixedPointOptions o) {
  compress::FixedPoint pass(o);
  compress::PassContext ctx;
  return pass.run(models::build("jet_tagger", {}, 0), ctx).graph;
}

onnx::ModelProto read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromIstream(&f));
  return m;
}

std::string attr_s(const onnx::NodeProto& n, const std::string& k) {
  for (const auto& a : n.attribute())
    if (a.name() == k) return a.s();
  return "";
}
int64_t attr_i(const onnx::NodeProto& n, const std::string& k) {
  for (const auto& a : n.attribute())
    if (a.name() == k) return a.i();
  return -1;
}
float init_value(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) {
      if (t.float_data_size() > 0) return t.float_data(0);
      float v;
      std::memcpy(&v, t.raw_data().data(), sizeof(float));
      return v;
    }
  ADD_FAILURE() << "no initializer " << name;
  return NAN;
}

at::Tensor inputs(double spread) {
  at::manual_seed(3);
  return at::randn({64, 16}) * spread;
}

void expect_round_trip(const ir::Graph& g, double spread) {
  squeeze::testing::TempDir tmp;
  const std::string path = tmp.file("fixed.qonnx.onnx");
  deploy::export_model(g, "qonnx", path);
  ir::Graph back = io::import_onnx(path);
  int layers = 0;
  for (const auto& n : back.nodes) layers += exec::is_fixed_layer(n);
  EXPECT_EQ(layers, 4);
  at::Tensor x = inputs(spread);
  EXPECT_TRUE(at::equal(exec::Executor(back).forward(x), exec::Executor(g).forward(x)));
}

TEST(FixedQonnx, QuantNodesAsHls4mlReadsThem) {
  compress::FixedPointOptions o;  // ap_fixed<16,6>: AP_TRN, AP_WRAP
  ir::Graph g = fixed_jet_tagger(o);
  squeeze::testing::TempDir tmp;
  const std::string path = tmp.file("fixed.qonnx.onnx");
  deploy::export_model(g, "qonnx", path);  // runs the ONNX checker before writing
  onnx::ModelProto m = read(path);
  int quants = 0;
  for (const auto& n : m.graph().node()) {
    if (n.op_type() != "Quant") continue;
    ++quants;
    EXPECT_EQ(n.domain(), "qonnx.custom_op.general");
    EXPECT_EQ(attr_s(n, "rounding_mode"), "FLOOR");  // AP_TRN
    EXPECT_EQ(attr_i(n, "signed"), 1);
    EXPECT_EQ(attr_i(n, "narrow"), 0);
    EXPECT_EQ(init_value(m, n.input(1)), std::ldexp(1.0f, -10));  // scale 2^-(16-6)
    EXPECT_EQ(init_value(m, n.input(2)), 0.0f);
    EXPECT_EQ(init_value(m, n.input(3)), 16.0f);
    EXPECT_EQ(n.doc_string(), "squeeze fixed-point type ap_fixed<16,6>");
  }
  EXPECT_EQ(quants, 1 + 4 * 3 + 3);  // input; weight, bias, result of 4 layers; 3 Relu
  expect_round_trip(g, 2.0);
}

TEST(FixedQonnx, NarrowAndRoundingRoundTrip) {
  compress::FixedPointOptions o;
  o.default_type = "ap_fixed<8,3,AP_RND_CONV,AP_SAT_SYM>";
  o.layers["fc2"].weight = "ap_fixed<6,2,AP_TRN_ZERO,AP_SAT>";
  o.layers["Relu"].result = "ap_ufixed<8,3,AP_RND_INF,AP_SAT>";
  ir::Graph g = fixed_jet_tagger(o);
  squeeze::testing::TempDir tmp;
  const std::string path = tmp.file("f.onnx");
  deploy::export_model(g, "qonnx", path);
  std::map<std::string, int> modes;
  const onnx::ModelProto m = read(path);
  for (const auto& n : m.graph().node())
    if (n.op_type() == "Quant") ++modes[attr_s(n, "rounding_mode") + (attr_i(n, "narrow") ? "/narrow" : "")];
  EXPECT_EQ(modes["ROUND/narrow"], 1 + 3 * 3 + 1 + 1);  // input, 3 layers' w/b/r, fc2's bias and result
  EXPECT_EQ(modes["DOWN"], 1);                          // fc2's weight: AP_TRN_ZERO
  EXPECT_EQ(modes["HALF_UP"], 3);                       // the Relu results: AP_RND_INF
  expect_round_trip(g, 10.0);  // inputs and sums saturate: the types must match exactly
}

TEST(FixedQonnx, ForeignQuantWithoutDocStringImportsAsFixed) {
  // An hls4ml/QONNX file knows nothing of squeeze's doc_string: FLOOR Quants with power-of-two
  // scales are ap_fixed types (AP_TRN, AP_SAT) all the same.
  compress::FixedPointOptions o;
  o.default_type = "ap_fixed<12,4,AP_TRN,AP_SAT>";
  ir::Graph g = fixed_jet_tagger(o);
  squeeze::testing::TempDir tmp;
  const std::string path = tmp.file("f.onnx");
  deploy::export_model(g, "qonnx", path);
  onnx::ModelProto m = read(path);
  for (auto& n : *m.mutable_graph()->mutable_node()) n.clear_doc_string();
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  ir::Graph back = io::import_onnx_bytes(bytes, "foreign.onnx");
  int layers = 0;
  for (const auto& n : back.nodes) layers += exec::is_fixed_layer(n);
  EXPECT_EQ(layers, 4);
  at::Tensor x = inputs(4.0);
  EXPECT_TRUE(at::equal(exec::Executor(back).forward(x), exec::Executor(g).forward(x)));
}

TEST(FixedQonnx, InexpressibleTypesRefused) {
  squeeze::testing::TempDir tmp;
  auto refused = [&](compress::FixedPointOptions o, const std::string& needle) {
    ir::Graph g = fixed_jet_tagger(o);
    try {
      deploy::export_model(g, "qonnx", tmp.file("bad.onnx"));
      ADD_FAILURE() << "exported";
    } catch (const UnsupportedError& e) {  // exit code 2
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  compress::FixedPointOptions o;
  o.default_type = "ap_fixed<8,3,AP_RND,AP_SAT>";
  refused(o, "AP_RND_CONV");
  o.default_type = "ap_fixed<8,3,AP_TRN,AP_SAT_ZERO>";
  refused(o, "AP_SAT_ZERO");
  o.default_type = "ap_fixed<16,6>";
  o.kinds.accum = "ap_fixed<20,8>";
  refused(o, "accumulator");
  // The plain ONNX (QDQ) form has no fixed-point types at all.
  o.kinds.accum = "";
  ir::Graph g = fixed_jet_tagger(o);
  EXPECT_THROW(deploy::export_model(g, "onnx", tmp.file("plain.onnx")), UnsupportedError);
}

}  // namespace
}  // namespace squeeze
