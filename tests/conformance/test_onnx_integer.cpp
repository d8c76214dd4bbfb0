// Integer arithmetic keeps ONNX's element-type semantics, both when the
// importer folds constants and when the executor runs the graph: integer Div
// truncates toward zero (ONNX Runtime and the ONNX reference), Mod follows
// fmod, Pow/Clip/reductions stay integer, Cast truncates.
//
// Every expected value below was worked out by hand from the ONNX operator
// specification (C integer division and fmod; Python's % for Mod with fmod=0),
// not computed by the code under test.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "io/onnx_test_util.h"
#include "squeeze/data/dataset.h"
#include "squeeze/exec/executor.h"
#include "squeeze/io/onnx.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using testing::OnnxMaker;
using Ints = std::vector<int64_t>;

// Operands shared by the binary cases: all four sign combinations, a zero
// dividend, a quotient that truncates differently from floor (6 / -4, -1 / 3)
// and an exact one.
const Ints kA = {7, -7, 7, -7, 0, 6, -1, 5};
const Ints kB = {2, 2, -2, -2, 3, -4, 3, 5};

struct BinaryCase {
  std::string op;
  int64_t fmod; // Mod only; -1 = attribute absent
  Ints a, b, want;
  bool boolean; // the result is a bool tensor (comparisons)
};

const std::vector<BinaryCase> &binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {"Add", -1, kA, kB, {9, -5, 5, -9, 3, 2, 2, 10}, false},
      {"Sub", -1, kA, kB, {5, -9, 9, -5, -3, 10, -4, 0}, false},
      {"Mul", -1, kA, kB, {14, -14, -14, 14, 0, -24, -3, 25}, false},
      {"Div", -1, kA, kB, {3, -3, -3, 3, 0, -1, 0, 1}, false},
      {"Mod", 0, kA, kB, {1, 1, -1, -1, 0, -2, 2, 0}, false}, // sign of the
                                                              // divisor
      {"Mod", 1, kA, kB, {1, -1, 1, -1, 0, 2, -1, 0}, false}, // sign of the
                                                              // dividend
      {"Max", -1, kA, kB, {7, 2, 7, -2, 3, 6, 3, 5}, false},
      {"Min", -1, kA, kB, {2, -7, -2, -7, 0, -4, -1, 5}, false},
      // Integer Pow: a negative exponent gives 1/x^k truncated (ONNX Runtime's
      // static_cast<T>).
      {"Pow",
       -1,
       {2, -3, 5, -2, 1, -1, 3, 0},
       {3, 3, 0, 2, -5, -3, -1, 4},
       {8, -27, 1, 4, 1, -1, 0, 0},
       false},
      {"Equal", -1, kA, kB, {0, 0, 0, 0, 0, 0, 0, 1}, true},
      {"Less", -1, kA, kB, {0, 1, 0, 1, 1, 0, 1, 0}, true},
      {"Greater", -1, kA, kB, {1, 0, 1, 0, 0, 1, 0, 0}, true},
      {"LessOrEqual", -1, kA, kB, {0, 1, 0, 1, 1, 0, 1, 1}, true},
      {"GreaterOrEqual", -1, kA, kB, {1, 0, 1, 0, 0, 1, 0, 1}, true},
  };
  return cases;
}

int32_t onnx_type(at::ScalarType t) {
  return t == at::kInt    ? onnx::TensorProto::INT32
         : t == at::kLong ? onnx::TensorProto::INT64
                          : onnx::TensorProto::FLOAT;
}

at::Tensor ints(const Ints &v, at::ScalarType t) {
  return at::tensor(v, at::kLong).to(t);
}

// One-node model. Runtime: a and b are graph inputs, so the executor's kernel
// computes the result. Folded: both are initializers, so the importer computes
// it while converting.
enum class Path { kRuntime, kFolded };

at::Tensor run_binary(const BinaryCase &c, at::ScalarType t, Path path) {
  OnnxMaker m(13);
  at::Tensor a = ints(c.a, t), b = ints(c.b, t);
  if (path == Path::kRuntime) {
    m.input("a", {static_cast<int64_t>(c.a.size())}, onnx_type(t));
    m.input("b", {static_cast<int64_t>(c.b.size())}, onnx_type(t));
  } else {
    m.input("unused", {1});
    m.init("a", a).init("b", b);
  }
  auto *node = m.node(c.op, {"a", "b"}, {"y"}, "the_node");
  if (c.fmod >= 0)
    OnnxMaker::attr(node, "fmod", c.fmod);
  m.output("y", c.boolean ? onnx::TensorProto::BOOL : onnx_type(t));
  ir::Graph g = io::import_onnx_bytes(m.bytes(), c.op + ".onnx");
  exec::Executor ex(g);
  if (path == Path::kRuntime)
    return ex.run({a, b}).at(0);
  return ex.run({at::zeros({1})}).at(0);
}

class IntegerBinary
    : public ::testing::TestWithParam<std::tuple<int, at::ScalarType, Path>> {};

TEST_P(IntegerBinary, MatchesTheOnnxSpecification) {
  auto [index, dtype, path] = GetParam();
  const BinaryCase &c = binary_cases().at(index);
  at::Tensor y = run_binary(c, dtype, path);
  at::ScalarType want_type = c.boolean ? at::kBool : dtype;
  EXPECT_EQ(y.scalar_type(), want_type)
      << c.op << ": the result must keep the ONNX element type";
  at::Tensor want = ints(c.want, want_type);
  ASSERT_EQ(y.sizes(), want.sizes()) << c.op;
  EXPECT_TRUE(at::equal(y.to(want_type), want))
      << c.op << (c.fmod >= 0 ? " fmod=" + std::to_string(c.fmod) : "")
      << ": got " << y << "\nwant " << want;
}

std::string
binary_name(const ::testing::TestParamInfo<IntegerBinary::ParamType> &info) {
  const BinaryCase &c = binary_cases().at(std::get<0>(info.param));
  std::string name =
      c.op + (c.fmod >= 0 ? "Fmod" + std::to_string(c.fmod) : "");
  name += std::get<1>(info.param) == at::kInt ? "_int32" : "_int64";
  name += std::get<2>(info.param) == Path::kRuntime ? "_runtime" : "_folded";
  return name;
}

INSTANTIATE_TEST_SUITE_P(
    OnnxInteger, IntegerBinary,
    ::testing::Combine(
        ::testing::Range(0, static_cast<int>(binary_cases().size())),
        ::testing::Values(at::kInt, at::kLong),
        ::testing::Values(Path::kRuntime, Path::kFolded)),
    binary_name);

// The same graphs on float inputs: Div must stay a true division (the rule must
// not fire).
TEST(OnnxInteger, FloatDivStaysFloat) {
  for (Path path : {Path::kRuntime, Path::kFolded}) {
    OnnxMaker m(13);
    at::Tensor a = at::tensor({7.0f, -7.0f, 6.0f, -1.0f}),
               b = at::tensor({2.0f, 2.0f, -4.0f, 3.0f});
    if (path == Path::kRuntime) {
      m.input("a", {4}).input("b", {4});
    } else {
      m.input("unused", {1});
      m.init("a", a).init("b", b);
    }
    m.node("Div", {"a", "b"}, {"y"});
    m.output("y");
    ir::Graph g = io::import_onnx_bytes(m.bytes(), "div.onnx");
    exec::Executor ex(g);
    at::Tensor y = path == Path::kRuntime ? ex.run({a, b}).at(0)
                                          : ex.run({at::zeros({1})}).at(0);
    EXPECT_EQ(y.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::allclose(y, at::tensor({3.5f, -3.5f, -1.5f, -1.0f / 3.0f})))
        << (path == Path::kRuntime ? "runtime" : "folded") << ": " << y;
  }
}

// int64 beyond 2^53: a float (double) detour would round these; integer
// arithmetic is exact.
TEST(OnnxInteger, Int64BeyondDoublePrecisionIsExact) {
  const int64_t big = (int64_t{1} << 53) + 1; // 9007199254740993: not a double
  for (const char *op : {"Div", "Add"}) {
    OnnxMaker m(13);
    m.input("a", {1}, onnx::TensorProto::INT64);
    m.init("b", at::tensor(Ints{std::string(op) == "Div" ? 3 : 2}, at::kLong));
    m.node(op, {"a", "b"}, {"y"});
    m.output("y", onnx::TensorProto::INT64);
    ir::Graph g = io::import_onnx_bytes(m.bytes(), "big.onnx");
    exec::Executor ex(g);
    at::Tensor y = ex.run({at::tensor(Ints{big * 3}, at::kLong)}).at(0);
    int64_t want = std::string(op) == "Div" ? big : big * 3 + 2;
    EXPECT_EQ(y.item<int64_t>(), want) << op;
  }
}

struct UnaryCase {
  std::string op;
  Ints x, want;
};

// Clip bounds -3 and 5 (inputs 1 and 2, opset 13).
TEST(OnnxInteger, UnaryAndClipKeepTheType) {
  std::vector<UnaryCase> cases = {
      {"Neg", kA, {-7, 7, -7, 7, 0, -6, 1, -5}},
      {"Abs", kA, {7, 7, 7, 7, 0, 6, 1, 5}},
      {"Sign", kA, {1, -1, 1, -1, 0, 1, -1, 1}},
      {"Relu", kA, {7, 0, 7, 0, 0, 6, 0, 5}},
      {"Clip", kA, {5, -3, 5, -3, 0, 5, -1, 5}},
  };
  for (at::ScalarType t : {at::kInt, at::kLong})
    for (const auto &c : cases) {
      OnnxMaker m(14);
      m.input("x", {8}, onnx_type(t));
      std::vector<std::string> ins = {"x"};
      if (c.op == "Clip") {
        m.init("lo", ints({-3}, t).reshape({}))
            .init("hi", ints({5}, t).reshape({}));
        ins = {"x", "lo", "hi"};
      }
      m.node(c.op, ins, {"y"});
      m.output("y", onnx_type(t));
      ir::Graph g = io::import_onnx_bytes(m.bytes(), c.op + ".onnx");
      exec::Executor ex(g);
      at::Tensor y = ex.run({ints(c.x, t)}).at(0);
      EXPECT_EQ(y.scalar_type(), t) << c.op;
      EXPECT_TRUE(at::equal(y.to(t), ints(c.want, t))) << c.op << ": " << y;
    }
}

// Cast from float to an integer type truncates toward zero (C conversion);
// integer to float is exact.
TEST(OnnxInteger, CastTruncatesTowardZero) {
  for (at::ScalarType t : {at::kInt, at::kLong}) {
    OnnxMaker m(13);
    m.input("x", {6});
    auto *c = m.node("Cast", {"x"}, {"y"});
    OnnxMaker::attr(c, "to", static_cast<int64_t>(onnx_type(t)));
    m.output("y", onnx_type(t));
    ir::Graph g = io::import_onnx_bytes(m.bytes(), "cast.onnx");
    exec::Executor ex(g);
    at::Tensor y =
        ex.run({at::tensor({2.7f, -2.7f, -0.5f, 0.5f, 7.0f, -7.0f})}).at(0);
    EXPECT_EQ(y.scalar_type(), t);
    EXPECT_TRUE(at::equal(y, ints({2, -2, 0, 0, 7, -7}, t))) << y;
  }
}

// Integer reductions keep the type; ReduceMean truncates the quotient (sum -7
// over 2 -> -3).
TEST(OnnxInteger, ReductionsKeepTheType) {
  struct Case {
    std::string op;
    Ints want;
  };
  // x = [[7, -7, 6, -4], [-5, -2, 1, 5]] reduced over axis 1: sums -> [2, -1].
  std::vector<Case> cases = {{"ReduceSum", {2, -1}},
                             {"ReduceMean", {0, 0}},
                             {"ReduceMax", {7, 5}},
                             {"ReduceMin", {-7, -5}},
                             {"ReduceProd", {1176, 50}}};
  for (at::ScalarType t : {at::kInt, at::kLong})
    for (const auto &c : cases) {
      OnnxMaker m(13);
      m.input("x", {2, 4}, onnx_type(t));
      std::vector<std::string> ins = {"x"};
      if (c.op == "ReduceSum") {
        m.init("axes", at::tensor(Ints{1}, at::kLong));
        ins.push_back("axes");
      }
      auto *node = m.node(c.op, ins, {"y"});
      if (c.op != "ReduceSum")
        OnnxMaker::attr(node, "axes", Ints{1});
      OnnxMaker::attr(node, "keepdims", int64_t{0});
      m.output("y", onnx_type(t));
      ir::Graph g = io::import_onnx_bytes(m.bytes(), c.op + ".onnx");
      exec::Executor ex(g);
      at::Tensor y =
          ex.run({ints({7, -7, 6, -4, -5, -2, 1, 5}, t).reshape({2, 4})}).at(0);
      EXPECT_EQ(y.scalar_type(), t) << c.op;
      EXPECT_TRUE(at::equal(y.to(t), ints(c.want, t))) << c.op << ": " << y;
    }
  // A mean that truncates: [[-7, 0]] -> -3 (floor would give -4, float -3.5).
  OnnxMaker m(13);
  m.input("x", {1, 2}, onnx::TensorProto::INT64);
  auto *node = m.node("ReduceMean", {"x"}, {"y"});
  OnnxMaker::attr(node, "axes", Ints{1});
  m.output("y", onnx::TensorProto::INT64);
  ir::Graph g = io::import_onnx_bytes(m.bytes(), "mean.onnx");
  exec::Executor ex(g);
  EXPECT_EQ(ex.run({at::tensor(Ints{-7, 0}, at::kLong).reshape({1, 2})})
                .at(0)
                .item<int64_t>(),
            -3);
}

// Bad integer input gets a clear error naming the node instead of a number.
TEST(OnnxInteger, IntegerDivisionByZeroAndZeroToNegativePowerAreErrors) {
  for (const char *op : {"Div", "Mod", "Pow"}) {
    OnnxMaker m(13);
    m.input("unused", {1});
    bool pow = std::string(op) == "Pow";
    m.init("a", at::tensor(pow ? Ints{0} : Ints{5}, at::kLong))
        .init("b", at::tensor(pow ? Ints{-1} : Ints{0}, at::kLong));
    m.node(op, {"a", "b"}, {"y"}, "bad_node");
    m.output("y", onnx::TensorProto::INT64);
    try {
      io::import_onnx_bytes(m.bytes(), "zero.onnx");
      ADD_FAILURE() << op << ": expected an error";
    } catch (const UserError &e) {
      std::string what = e.what();
      EXPECT_NE(what.find("bad_node"), std::string::npos) << what;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The 11-node graph of issue 9: Slice bounds computed as (12 + 2) / 3 on int64
// shape values. ONNX: start = 14 / 3 = 4, end = 4 * 2 = 8, so x[0, 4:8] = [4 5
// 6 7]; float division gave start 4.67 and end 9.33, i.e. [4 5 6 7 8].
void constant_node(OnnxMaker &m, const std::string &out, const Ints &value) {
  auto *n = m.node("Constant", {}, {out}, out);
  auto *a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  io::onnx_detail::tensor_to_proto(at::tensor(value, at::kLong),
                                   a->mutable_t());
}

std::string slice_bounds_model() {
  OnnxMaker m(13);
  m.input("x", {1, 12});
  m.node("Shape", {"x"}, {"shape"}, "shape");
  constant_node(m, "idx", {1});
  m.node("Gather", {"shape", "idx"}, {"width"}, "gather");
  constant_node(m, "two", {2});
  m.node("Add", {"width", "two"}, {"width2"}, "add");
  constant_node(m, "three", {3});
  m.node("Div", {"width2", "three"}, {"start"}, "div");
  constant_node(m, "factor", {2});
  m.node("Mul", {"start", "factor"}, {"end"}, "mul");
  constant_node(m, "axes", {1});
  m.node("Slice", {"x", "start", "end", "axes"}, {"y"}, "slice");
  m.output("y");
  return m.bytes();
}

TEST(OnnxInteger, SliceBoundsFromIntegerShapeArithmetic) {
  std::string bytes = slice_bounds_model();
  ir::Graph g = io::import_onnx_bytes(bytes, "slice.onnx");
  exec::Executor ex(g);
  at::Tensor y = ex.run({at::arange(12, at::kFloat).reshape({1, 12})}).at(0);
  EXPECT_TRUE(
      at::equal(y, at::tensor({4.0f, 5.0f, 6.0f, 7.0f}).reshape({1, 4})))
      << y;
}

TEST(OnnxInteger, SliceBoundsThroughSqueezeInfer) {
  testing::TempDir dir;
  {
    std::string bytes = slice_bounds_model();
    std::ofstream(dir.file("slice.onnx"), std::ios::binary) << bytes;
  }
  data::write_npy(dir.file("x.npy"),
                  at::arange(12, at::kFloat).reshape({1, 12}));
  std::string cmd = std::string(SQUEEZE_BINARY) + " --quiet infer " +
                    dir.file("slice.onnx") + " --input " + dir.file("x.npy") +
                    " --output " + dir.file("y.npy") + " 2>&1";
  FILE *p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    out.append(buf.data(), n);
  int status = pclose(p);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n"
                                                             << out;
  at::Tensor y = data::read_npy(dir.file("y.npy"));
  EXPECT_TRUE(
      at::equal(y, at::tensor({4.0f, 5.0f, 6.0f, 7.0f}).reshape({1, 4})))
      << y;
}

} // namespace
} // namespace squeeze
