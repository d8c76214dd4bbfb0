// The C++ generator (deploy/cpp_export.h): the generated code compiled with
// g++ -O2 -Wall -Wextra -Werror -std=c++17 reproduces squeeze's executor bit for bit on 10,000
// golden vectors for a 75%-pruned jet_tagger in fixed point (ap_fixed<16,6>; 6-bit weights with
// rounding and saturating results; a saturating accumulator) and in int8; float within the stated
// tolerance; unrolled and compressed-row layers; a corrupted golden file fails the check; and
// what must be refused (unsupported ops, mixed arithmetics, a non-empty folder) writes nothing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

#include "cli.h"
#include "testing/cli.h"
#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/compress/quantize/fixed_point.h"
#include "squeeze/deploy/cpp_export.h"
#include "squeeze/exec/int8.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

bool have_gxx() { return std::system("g++ --version > /dev/null 2>&1") == 0; }

struct ShellRun {
  int code;
  std::string out;
};

ShellRun sh(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, k);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// Compiles DIR with the flags the issue names and runs its check program.
ShellRun build_and_check(const std::string& dir) {
  ShellRun b = sh("cd '" + dir + "' && g++ -O2 -Wall -Wextra -Werror -std=c++17 -o check check.cpp model.cpp");
  if (b.code != 0) return {100 + b.code, "compile failed:\n" + b.out};
  return sh("cd '" + dir + "' && ./check golden.bin");
}

ir::Graph pruned_jet_tagger(double ratio = 0.75) {
  ir::Graph g = models::build("jet_tagger", {}, 0);
  compress::MagnitudePruneOptions po;
  po.ratio = ratio;
  compress::MagnitudePrune(po).prune_to(g, ratio);
  return g;
}

ir::Graph fixed(const ir::Graph& g, compress::FixedPointOptions o) {
  compress::PassContext ctx;
  return compress::FixedPoint(o).run(g, ctx).graph;
}

double sparsity(const ir::Graph& g) {
  int64_t n = 0, z = 0;
  for (const auto& node : g.nodes)
    if (node.op == "Linear") {
      const at::Tensor& w = node.param("weight").value;
      n += w.numel();
      z += w.eq(0).sum().item<int64_t>();
    }
  return double(z) / double(n);
}

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

class CppExport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_gxx()) GTEST_SKIP() << "g++ not installed";
  }
  // Exports g with n golden vectors, builds, checks; expects every sample to match.
  void expect_matches(const ir::Graph& g, int64_t n, const std::string& unroll = "auto") {
    TempDir dir;
    deploy::CppExportOptions o;
    o.golden_count = n;
    o.unroll = unroll;
    const std::string out = dir.file("gen");
    deploy::export_cpp(g, o, out);
    ShellRun r = build_and_check(out);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find(std::to_string(n) + " of " + std::to_string(n) + " samples match"), std::string::npos)
        << r.out;
  }
};

TEST_F(CppExport, FixedPoint16BitsPrunedMatchesBitForBitOn10000Inputs) {
  ir::Graph g = pruned_jet_tagger();
  EXPECT_GE(sparsity(g), 0.70);
  compress::FixedPointOptions o;
  o.default_type = "ap_fixed<16,6>";
  expect_matches(fixed(g, o), 10000);
}

TEST_F(CppExport, FixedPoint6BitsPrunedMatchesBitForBitOn10000Inputs) {
  // QKeras-style 6-bit weights and results (AP_RND_CONV, AP_SAT), 16-bit input.
  ir::Graph g = pruned_jet_tagger();
  compress::FixedPointOptions o;
  o.default_type = "quantized_bits(6,2)";
  o.input = "ap_fixed<16,6>";
  o.kinds.weight = "quantized_bits(6,0)";
  expect_matches(fixed(g, o), 10000);
}

TEST_F(CppExport, FixedPointEveryRoundingAndOverflowMode) {
  // Every quantization mode and overflow mode (saturation bits too) on values, inputs and
  // accumulators: saturating and N > 0 accumulators take the ordered sum, a wrapping accumulator
  // with fewer fractional bits than the products the converted wrapping sum.
  struct Case {
    const char *value, *input, *accum;
  };
  const Case cases[] = {
      {"ap_fixed<10,4,AP_TRN_ZERO,AP_SAT>", "ap_fixed<12,5,AP_RND,AP_SAT_SYM>", "ap_fixed<14,6,AP_TRN,AP_SAT>"},
      {"ap_fixed<10,4,AP_RND_ZERO,AP_SAT_ZERO>", "ap_fixed<12,5,AP_RND_MIN_INF>", "ap_fixed<12,5,AP_RND,AP_WRAP,2>"},
      {"ap_fixed<10,4,AP_RND_INF,AP_WRAP,1>", "ap_ufixed<12,5,AP_RND_CONV,AP_SAT>", "ap_fixed<16,6,AP_RND_CONV>"},
  };
  ir::Graph g = pruned_jet_tagger();
  for (const Case& c : cases) {
    compress::FixedPointOptions o;
    o.default_type = c.value;
    o.input = c.input;
    o.kinds.accum = c.accum;
    SCOPED_TRACE(std::string(c.value) + " input " + c.input + " accum " + c.accum);
    expect_matches(fixed(g, o), 1000);
  }
}

TEST_F(CppExport, Int8PrunedMatchesBitForBitOn10000Inputs) {
  ir::Graph g = pruned_jet_tagger();
  data::Splits d = testing::jets(2000);
  ir::Graph q = testing::ptq(g, d, 8);
  for (const auto& n : q.nodes)
    if (n.op == "Linear") ASSERT_EQ(quant::planned_execution(q, n), "int8") << n.name;
  expect_matches(q, 10000);
}

TEST_F(CppExport, FloatWithinToleranceUnrolledAndCompressed) {
  ir::Graph g = pruned_jet_tagger(0.5);
  expect_matches(g, 500, "always");
  expect_matches(g, 500, "never");
}

// An MLP ending in Softmax: logits bit for bit (fixed point), probabilities within the tolerance.
ir::Graph mlp_softmax() {
  ir::GraphBuilder b("mlp_softmax", 3);
  std::string x = b.input("input", {16});
  x = b.act("Relu", b.linear(x, 24, true, "fc1"));
  x = b.dropout(b.flatten(x), 0.1);
  x = b.linear(x, 5, true, "fc2");
  return b.finish({b.node("Softmax", {x}, {{"axis", int64_t(-1)}})});
}

TEST_F(CppExport, FinalSoftmaxFixedAndFloat) {
  ir::Graph g = mlp_softmax();
  expect_matches(g, 300);
  compress::FixedPointOptions o;
  ir::Graph f = fixed(g, o);
  expect_matches(f, 300);
  TempDir dir;
  deploy::CppExportOptions co;
  co.golden_count = 2;
  deploy::export_cpp(f, co, dir.file("gen"));
  EXPECT_NE(slurp(dir.file("gen/model.cpp")).find("std::exp"), std::string::npos);
}

TEST(CppExportRefuses, SoftmaxNotLastOrOtherActivation) {
  ir::GraphBuilder b("bad", 0);
  std::string x = b.input("input", {8});
  x = b.node("Softmax", {b.linear(x, 4, true, "fc1")}, {{"axis", int64_t(-1)}});
  ir::Graph g = b.finish({b.linear(x, 2, true, "fc2")});
  try {
    deploy::check_cpp_exportable(g);
    FAIL() << "no error";
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("follows a Softmax"), std::string::npos) << e.what();
  }
  ir::GraphBuilder b2("bad2", 0);
  std::string y = b2.act("Sigmoid", b2.linear(b2.input("input", {8}), 4, true, "fc1"), "sig");
  ir::Graph g2 = b2.finish({y});
  try {
    deploy::check_cpp_exportable(g2);
    FAIL() << "no error";
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("'sig' (Sigmoid) is not supported"), std::string::npos) << e.what();
  }
}

TEST_F(CppExport, UnrollOptionChoosesTheCodeShape) {
  ir::Graph g = pruned_jet_tagger();
  compress::FixedPointOptions fo;
  ir::Graph f = fixed(g, fo);
  TempDir dir;
  deploy::CppExportOptions o;
  o.golden_count = 4;
  o.unroll = "never";
  deploy::export_cpp(f, o, dir.file("loops"));
  EXPECT_NE(slurp(dir.file("loops/model.cpp")).find("_ptr["), std::string::npos);
  o.unroll = "always";
  deploy::export_cpp(f, o, dir.file("flat"));
  EXPECT_EQ(slurp(dir.file("flat/model.cpp")).find("_ptr["), std::string::npos);
  // auto: fc1 (16 x 64, 25% kept = 256 non-zeros) unrolled at the default threshold, looped at 100.
  o.unroll = "auto";
  o.unroll_max_nonzeros = 100;
  deploy::export_cpp(f, o, dir.file("auto"));
  std::string text = slurp(dir.file("auto/model.cpp"));
  EXPECT_NE(text.find("compressed rows"), std::string::npos);
  EXPECT_NE(text.find("unrolled"), std::string::npos);  // the 32 x 5 output layer: 40 non-zeros
  // Pruned weights are not multiplied: 25% of 4,288 weights left.
  EXPECT_NE(slurp(dir.file("auto/README.md")).find("multiply-adds"), std::string::npos);
}

TEST_F(CppExport, CorruptedGoldenFails) {
  ir::Graph g = fixed(pruned_jet_tagger(), compress::FixedPointOptions{});
  TempDir dir;
  deploy::CppExportOptions o;
  o.golden_count = 16;
  deploy::export_cpp(g, o, dir.file("gen"));
  // Flip the last output's lowest bit.
  {
    std::fstream f(dir.file("gen/golden.bin"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-4, std::ios::end);
    uint32_t v;
    f.read(reinterpret_cast<char*>(&v), 4);
    v ^= 1u;
    f.seekp(-4, std::ios::end);
    f.write(reinterpret_cast<const char*>(&v), 4);
  }
  ShellRun r = build_and_check(dir.file("gen"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("mismatch: sample 15 output 4"), std::string::npos) << r.out;
}

TEST_F(CppExport, LatencyIsMeasured) {
  ir::Graph g = fixed(pruned_jet_tagger(), compress::FixedPointOptions{});
  TempDir dir;
  deploy::CppExportOptions o;
  o.golden_count = 8;
  deploy::export_cpp(g, o, dir.file("gen"));
  double ns = deploy::measure_cpp_latency_ns(dir.file("gen"));
  EXPECT_GT(ns, 0.0);
  EXPECT_LT(ns, 1e9);
  EXPECT_THROW(deploy::measure_cpp_latency_ns(dir.file("nothing")), InputError);
}

TEST(CppExportRefuses, UnsupportedOpNamesTheNodeAndWritesNothing) {
  ir::Graph g = models::build("lenet5", {}, 0);
  TempDir dir;
  try {
    deploy::export_cpp(g, {}, dir.file("gen"));
    FAIL() << "no error";
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("(Conv) is not supported"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.file("gen")));
  EXPECT_TRUE(fs::is_empty(dir.file("")));
}

TEST(CppExportRefuses, NonEmptyFolderAndBadOptions) {
  ir::Graph g = pruned_jet_tagger();
  TempDir dir;
  fs::create_directories(dir.file("gen"));
  dir.write("gen/keep.txt", "x");
  EXPECT_THROW(deploy::export_cpp(g, {}, dir.file("gen")), ConfigError);
  EXPECT_EQ(slurp(dir.file("gen/keep.txt")), "x");
  deploy::CppExportOptions o;
  o.unroll = "sometimes";
  EXPECT_THROW(o.validate(), ConfigError);
  o = {};
  o.golden_count = 0;
  EXPECT_THROW(o.validate(), ConfigError);
  // An empty folder is fine.
  fs::create_directories(dir.file("empty"));
  o = {};
  o.golden_count = 2;
  deploy::export_cpp(g, o, dir.file("empty"));
  EXPECT_TRUE(fs::exists(dir.file("empty/model.cpp")));
}

TEST(CppExportRefuses, MixedArithmetic) {
  ir::Graph g = pruned_jet_tagger();
  compress::FixedPointOptions o;
  o.exclude = {"output"};
  ir::Graph f = fixed(g, o);
  try {
    deploy::check_cpp_exportable(f);
    FAIL() << "no error";
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("mixes"), std::string::npos) << e.what();
  }
}

TEST(CppExportCli, WritesFolderAndRefusesWithExitCode2) {
  TempDir dir;
  auto r = testing::cli({"export", "zoo:jet_tagger", "--to", "cpp", "--out", dir.file("a/b"), "--golden", "3",
                         "--cpp-unroll", "never"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir.file("a/b/golden.bin")));
  EXPECT_NE(slurp(dir.file("a/b/model.cpp")).find("_ptr["), std::string::npos);
  auto again = testing::cli({"export", "zoo:jet_tagger", "--to", "cpp", "--out", dir.file("a/b")});
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.err.find("not empty"), std::string::npos) << again.err;
  auto conv = testing::cli({"export", "zoo:lenet5", "--to", "cpp", "--out", dir.file("c")});
  EXPECT_EQ(conv.code, 2);
  EXPECT_NE(conv.err.find("Conv"), std::string::npos) << conv.err;
  EXPECT_FALSE(fs::exists(dir.file("c")));
  auto wrong = testing::cli({"export", "zoo:jet_tagger", "--to", "onnx", "--out", dir.file("m.onnx"), "--golden", "5"});
  EXPECT_EQ(wrong.code, 2);
  EXPECT_NE(wrong.err.find("--to cpp only"), std::string::npos) << wrong.err;
  auto bad = testing::cli({"export", "zoo:jet_tagger", "--to", "cpp", "--out", dir.file("d"), "--cpp-unroll", "maybe"});
  EXPECT_EQ(bad.code, 2);
}

}  // namespace
}  // namespace squeeze
