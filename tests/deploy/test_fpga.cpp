// The FPGA cost model (deploy/fpga.h): each formula on hand-made layers, where it fires and where
// it must not, the calibration against hls4ml's public tutorial, and the inspect --fpga command.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "cli.h"
#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/deploy/fpga.h"
#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "squeeze/report/fpga_json.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/report.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

using deploy::FpgaEstimate;
using deploy::FpgaLayer;
using deploy::FpgaOptions;

const FpgaLayer& layer(const FpgaEstimate& e, const std::string& name) {
  for (const auto& l : e.layers)
    if (l.name == name) return l;
  throw std::runtime_error("no layer " + name);
}

// One Linear layer n_in -> n_out with every weight set to `value` (a constant of known digits).
ir::Graph one_dense(int64_t n_in, int64_t n_out, double value) {
  ir::GraphBuilder b("dense");
  std::string x = b.input("input", {n_in});
  std::string y = b.linear(x, n_out, true, "fc");
  ir::Graph g = b.finish({y});
  g.find_node("fc")->param("weight").value.fill_(value);
  return g;
}

TEST(FpgaFormulas, MultiplierLimitIsHls4mls) {
  // ceil(n_in * n_out / RF) - floor(n_zeros / RF)
  EXPECT_EQ(deploy::hls4ml_n_mult(16, 64, 0, 1), 1024);
  EXPECT_EQ(deploy::hls4ml_n_mult(16, 64, 768, 1), 256);
  EXPECT_EQ(deploy::hls4ml_n_mult(16, 64, 768, 4), 256 - 192);
  EXPECT_EQ(deploy::hls4ml_n_mult(16, 64, 3, 4), 256);  // floor(3 / 4) = 0: no saving
  EXPECT_EQ(deploy::hls4ml_n_mult(3, 5, 0, 2), 8);      // ceil(15 / 2)
}

TEST(FpgaFormulas, ReuseFactorValidityAndClosest) {
  // 16 x 64: R < 16 must divide so that ceil(1024 / R) % 64 == 0; R >= 16 must be a multiple of 16.
  for (int64_t r : {1, 2, 4, 8, 16, 32, 1024}) EXPECT_TRUE(deploy::hls4ml_valid_reuse_factor(16, 64, r)) << r;
  for (int64_t r : {3, 5, 6, 12, 24, 2048}) EXPECT_FALSE(deploy::hls4ml_valid_reuse_factor(16, 64, r)) << r;
  EXPECT_EQ(deploy::hls4ml_closest_reuse_factor(16, 64, 3), 2);   // 2 and 4 tie: the smaller
  EXPECT_EQ(deploy::hls4ml_closest_reuse_factor(16, 64, 7), 8);
  EXPECT_EQ(deploy::hls4ml_closest_reuse_factor(16, 64, 5000), 1024);
}

TEST(FpgaFormulas, CsdDigitsDspSplitAdderDepth) {
  EXPECT_EQ(deploy::csd_digits(0), 0);
  EXPECT_EQ(deploy::csd_digits(1), 1);
  EXPECT_EQ(deploy::csd_digits(-64), 1);
  EXPECT_EQ(deploy::csd_digits(3), 2);    // 4 - 1
  EXPECT_EQ(deploy::csd_digits(7), 2);    // 8 - 1
  EXPECT_EQ(deploy::csd_digits(-9), 2);   // 8 + 1
  EXPECT_EQ(deploy::csd_digits(11), 3);   // 16 - 4 - 1
  EXPECT_EQ(deploy::csd_digits(0x5555), 8);
  EXPECT_EQ(deploy::dsp_per_product(16, 16), 1);
  EXPECT_EQ(deploy::dsp_per_product(27, 18), 1);
  EXPECT_EQ(deploy::dsp_per_product(18, 27), 1);
  EXPECT_EQ(deploy::dsp_per_product(28, 18), 2);
  EXPECT_EQ(deploy::dsp_per_product(27, 19), 2);
  EXPECT_EQ(deploy::dsp_per_product(32, 32), 4);
  EXPECT_EQ(deploy::adder_tree_depth(1), 0);
  EXPECT_EQ(deploy::adder_tree_depth(2), 1);
  EXPECT_EQ(deploy::adder_tree_depth(17), 5);
  EXPECT_EQ(deploy::adder_tree_depth(64), 6);
}

TEST(FpgaTypes, ParsesHls4mlSpellingsAndRefusesOthers) {
  auto t = deploy::parse_fixed_type("ap_fixed<16,6>", "p");
  EXPECT_EQ(t.width, 16);
  EXPECT_EQ(t.integer, 6);
  EXPECT_TRUE(t.is_signed);
  t = deploy::parse_fixed_type(" ap_ufixed<8, 0, AP_RND, AP_SAT> ", "p");
  EXPECT_EQ(t.width, 8);
  EXPECT_FALSE(t.is_signed);
  t = deploy::parse_fixed_type("ap_int<6>", "p");
  EXPECT_EQ(t.integer, 6);
  EXPECT_THROW(deploy::parse_fixed_type("fixed<16,6>", "p"), ConfigError);
  EXPECT_THROW(deploy::parse_fixed_type("ap_fixed<16>", "p"), ConfigError);
  try {
    deploy::parse_fixed_type("ap_fixed<0,0>", "--precision");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("at least 1 bit"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--precision"), std::string::npos) << e.what();
  }
}

TEST(FpgaDense, WideConstantsTakeDspsNotLuts) {
  // 0.6875 at 10 fractional bits is 704 = 11 * 64: three CSD digits, 16-bit input: a DSP each.
  ir::Graph g = one_dense(8, 4, 0.6875);
  FpgaEstimate e = deploy::estimate_fpga(g, FpgaOptions{});
  const FpgaLayer& fc = layer(e, "fc");
  EXPECT_EQ(fc.dsp_products, 32);
  EXPECT_EQ(fc.dsp, 32);
  EXPECT_EQ(fc.lut_products, 0);  // must not be LUT-mapped
  EXPECT_EQ(fc.zeros, 0);
  EXPECT_EQ(fc.n_mult, 32);       // no zeros: no saving
  EXPECT_EQ(fc.adder_depth, 4);   // 8 products and the bias
}

TEST(FpgaDense, NarrowOperandsGoToLuts) {
  // Same constant with a 6-bit input and a 6-bit weight grid: fabric, no DSP.
  FpgaOptions o;
  o.precision = "ap_fixed<6,1>";
  ir::Graph g = one_dense(8, 4, 0.6875);  // 22 at 5 fractional bits = 11 * 2
  FpgaEstimate e = deploy::estimate_fpga(g, o);
  const FpgaLayer& fc = layer(e, "fc");
  EXPECT_EQ(fc.lut_products, 32);
  EXPECT_EQ(fc.dsp, 0);
  EXPECT_GT(fc.lut, 0);
}

TEST(FpgaDense, PowersOfTwoAndTwoDigitConstantsNeedNoMultiplier) {
  ir::Graph g = one_dense(8, 4, 0.5);  // 512 = 2^9: a shift
  FpgaEstimate e = deploy::estimate_fpga(g, FpgaOptions{});
  EXPECT_EQ(layer(e, "fc").shift_products, 32);
  EXPECT_EQ(layer(e, "fc").dsp, 0);
  g = one_dense(8, 4, 0.75);  // 768 = 512 + 256: one adder
  e = deploy::estimate_fpga(g, FpgaOptions{});
  EXPECT_EQ(layer(e, "fc").adder_products, 32);
  EXPECT_EQ(layer(e, "fc").dsp, 0);
}

TEST(FpgaDense, ZerosAndReuseFactorFollowHls4ml) {
  ir::Graph g = one_dense(16, 64, 0.6875);
  auto& w = g.find_node("fc")->param("weight");
  w.mask = at::ones_like(w.value);
  w.mask->narrow(1, 0, 12).zero_();  // 12 of 16 inputs pruned: 768 zeros
  FpgaOptions o;
  FpgaEstimate e = deploy::estimate_fpga(g, o);
  EXPECT_EQ(layer(e, "fc").zeros, 768);
  EXPECT_EQ(layer(e, "fc").n_mult, 256);
  EXPECT_EQ(layer(e, "fc").dsp, 256);
  EXPECT_EQ(layer(e, "fc").adder_depth, 3);  // 4 products and the bias
  o.reuse_factor = 4;
  e = deploy::estimate_fpga(g, o);
  EXPECT_EQ(layer(e, "fc").n_mult, 64);
  EXPECT_EQ(layer(e, "fc").dsp, 64);
  EXPECT_EQ(layer(e, "fc").cycles, layer(deploy::estimate_fpga(g, FpgaOptions{}), "fc").cycles + 3);
  EXPECT_EQ(e.interval, 4);
  EXPECT_TRUE(e.notes.empty());
  o.reuse_factor = 3;  // not valid for 16 x 64: hls4ml takes 2
  e = deploy::estimate_fpga(g, o);
  EXPECT_EQ(layer(e, "fc").reuse_factor, 2);
  ASSERT_EQ(e.notes.size(), 1u);
  EXPECT_NE(e.notes[0].find("closest valid one, 2"), std::string::npos) << e.notes[0];
}

TEST(FpgaDense, LatencyGrowsWithTheAdderTreeAndTheClock) {
  ir::Graph small = one_dense(4, 4, 0.6875), big = one_dense(4096, 4, 0.6875);
  FpgaOptions o;
  EXPECT_LT(layer(deploy::estimate_fpga(small, o), "fc").cycles, layer(deploy::estimate_fpga(big, o), "fc").cycles);
  o.clock_mhz = 600;
  EXPECT_GT(layer(deploy::estimate_fpga(small, o), "fc").cycles,
            layer(deploy::estimate_fpga(small, FpgaOptions{}), "fc").cycles);
}

TEST(FpgaErrors, BadOptionsAndUnsupportedOps) {
  ir::Graph g = one_dense(4, 4, 0.5);
  FpgaOptions o;
  o.clock_mhz = 0;
  EXPECT_THROW(deploy::estimate_fpga(g, o), ConfigError);
  o.clock_mhz = -5;
  EXPECT_THROW(deploy::estimate_fpga(g, o), ConfigError);
  o = FpgaOptions{};
  o.reuse_factor = 0;
  EXPECT_THROW(deploy::estimate_fpga(g, o), ConfigError);
  o = FpgaOptions{};
  o.precision = "int16";
  EXPECT_THROW(deploy::estimate_fpga(g, o), ConfigError);
  ir::Graph cnn = models::build("small_cnn", {}, 0);
  try {
    deploy::estimate_fpga(cnn, FpgaOptions{});
    FAIL();
  } catch (const UnsupportedError& e) {
    EXPECT_NE(std::string(e.what()).find("Conv"), std::string::npos) << e.what();
  }
}

// ---- Calibration: hls4ml's public tutorial (jet tagger 16-64-32-32-5, io_parallel, Latency,
// 200 MHz, xcu250), each configuration built as a squeeze graph. Published figures:
struct Reference {
  const char* name;
  int64_t cycles, dsp, lut;  // lut 0: not published
};
constexpr Reference kDense16{"ap_fixed<16,6>, dense", 14, 1502, 101839};
constexpr Reference kPruned16{"ap_fixed<16,6>, 75% pruned", 12, 834, 0};
constexpr Reference kPruned6{"6-bit QKeras, 75% pruned", 12, 34, 42160};
constexpr double kCyclesDspTolerance = 0.25;

// The DSP count at reuse factor 1 depends on the weight values (a constant with few signed
// digits needs no multiplier), so the graph needs weights like the tutorial's: trained with an
// L1 penalty (kernel_regularizer=l1(0.0001)), which leaves many weights near zero. Statistics of
// the tutorial's published ap_fixed<16,6> model, per Dense layer: the fraction of weights with
// |w| < 2^-8, and the mean |w| of the others. Drawn here: those near zero uniform in +-5e-4,
// the others with exponentially distributed magnitudes of that mean and random signs.
constexpr double kNearZero[] = {0.315, 0.563, 0.547, 0.225};
constexpr double kMeanAbs[] = {0.171, 0.126, 0.203, 0.438};

ir::Graph tutorial_graph(bool pruned, int weight_bits) {
  ir::Graph g = models::build("jet_tagger", {}, 0);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  int dense = 0;
  for (auto& n : g.nodes) {
    if (n.op != "Linear") continue;
    at::Tensor& w = n.param("weight").value;
    at::Tensor mag = at::empty(w.sizes(), at::kFloat).exponential_(1.0 / kMeanAbs[dense], gen);
    at::Tensor sign = at::empty(w.sizes(), at::kFloat).bernoulli_(0.5, gen).mul_(2).sub_(1);
    at::Tensor tiny = at::empty(w.sizes(), at::kFloat).uniform_(-5e-4, 5e-4, gen);
    at::Tensor near = at::empty(w.sizes(), at::kFloat).bernoulli_(kNearZero[dense], gen).to(at::kBool);
    w.copy_(at::where(near, tiny, mag * sign));
    ++dense;
  }
  if (pruned) {
    compress::MagnitudePruneOptions po;
    po.ratio = 0.75;
    po.scope = "local";  // TF-MOT pruned each Dense layer to 75%
    compress::MagnitudePrune(po).prune_to(g, 0.75);
  }
  if (weight_bits) {
    for (auto& n : g.nodes) {
      if (n.op == "Linear") {
        // QKeras quantized_bits(6, 0): hls4ml's ap_fixed<6,1>, step 2^-5.
        ir::QuantSpec q;
        q.bits = weight_bits;
        q.scale = at::scalar_tensor(std::ldexp(1.0, -(weight_bits - 1)), at::kFloat);
        q.zero_point = at::zeros({}, at::kLong);
        n.param("weight").qspec = q;
      } else if (n.op == "Relu") {
        ir::QuantSpec q;  // quantized_relu(6): ap_ufixed<6,0>
        q.bits = weight_bits;
        q.is_signed = false;
        n.out_qspec = q;
      }
    }
  }
  return g;
}

void expect_close(const char* what, const Reference& ref, int64_t estimate, int64_t reference) {
  const double rel = double(estimate - reference) / double(reference);
  EXPECT_LE(std::abs(rel), kCyclesDspTolerance)
      << ref.name << ": " << what << " estimated " << estimate << ", hls4ml " << reference;
}

TEST(FpgaCalibration, Hls4mlTutorialConfigurations) {
  FpgaOptions o;
  o.add_softmax = true;  // the tutorial's Keras model ends in Activation('softmax')
  struct Case {
    Reference ref;
    ir::Graph graph;
  };
  std::vector<Case> cases;
  cases.push_back({kDense16, tutorial_graph(false, 0)});
  cases.push_back({kPruned16, tutorial_graph(true, 0)});
  cases.push_back({kPruned6, tutorial_graph(true, 6)});
  for (auto& c : cases) {
    FpgaEstimate e = deploy::estimate_fpga(c.graph, o);
    std::cout << c.ref.name << ": " << e.cycles << " cycles (" << c.ref.cycles << "), " << e.dsp << " DSP ("
              << c.ref.dsp << "), " << e.lut << " LUT (" << c.ref.lut << ")\n";
    expect_close("cycles", c.ref, e.cycles, c.ref.cycles);
    expect_close("DSP", c.ref, e.dsp, c.ref.dsp);
    const FpgaLayer& sm = layer(e, "softmax (added)");
    EXPECT_GE(sm.cycles, 3);
    EXPECT_LE(sm.cycles, 4);
    EXPECT_DOUBLE_EQ(e.latency_ns, e.cycles * 5.0);
  }
}

// ---- The command line.
int run(const std::vector<std::string>& args, std::string& out, std::string& err) {
  std::ostringstream o, e;
  int rc = cli::run_cli(args, o, e);
  out = o.str();
  err = e.str();
  return rc;
}

TEST(FpgaCli, InspectPrintsTheTableAndTotals) {
  std::string out, err;
  ASSERT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--softmax"}, out, err), 0) << err;
  for (const char* s : {"fc1", "fc2", "fc3", "output", "softmax (added)", "DSP", "LUT", "cycles", "total:", " ns"})
    EXPECT_NE(out.find(s), std::string::npos) << s << "\n" << out;
  ASSERT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--json", "--clock-mhz", "250"}, out, err), 0) << err;
  EXPECT_NE(out.find("\"clock_mhz\": 250"), std::string::npos) << out;
  EXPECT_NE(out.find("\"layers\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"latency_ns\""), std::string::npos) << out;
}

TEST(FpgaCli, ReplacedReuseFactorWarns) {
  std::string out, err;
  ASSERT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--reuse-factor", "3"}, out, err), 0) << err;
  EXPECT_NE(err.find("warning:"), std::string::npos) << err;
  EXPECT_NE(err.find("closest valid"), std::string::npos) << err;
}

TEST(FpgaCli, BadInputExitsTwo) {
  std::string out, err;
  EXPECT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--clock-mhz", "0"}, out, err), 2);
  EXPECT_NE(err.find("clock_mhz"), std::string::npos) << err;
  EXPECT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--clock-mhz", "-100"}, out, err), 2);
  EXPECT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--reuse-factor", "0"}, out, err), 2);
  EXPECT_NE(err.find("reuse_factor"), std::string::npos) << err;
  EXPECT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--precision", "ap_fixed<16"}, out, err), 2);
  EXPECT_NE(err.find("cannot read the type"), std::string::npos) << err;
  EXPECT_EQ(run({"inspect", "zoo:jet_tagger", "--fpga", "--precision", "ap_fixed<0,0>"}, out, err), 2);
  EXPECT_NE(err.find("at least 1 bit"), std::string::npos) << err;
  EXPECT_EQ(run({"inspect", "zoo:small_cnn", "--fpga"}, out, err), 2);
  EXPECT_NE(err.find("Conv"), std::string::npos) << err;
  EXPECT_EQ(run({"inspect", "zoo:jet_tagger", "--clock-mhz", "200"}, out, err), 2);  // needs --fpga
  EXPECT_NE(err.find("--fpga"), std::string::npos) << err;
}

}  // namespace
}  // namespace squeeze

namespace squeeze {
namespace {

// ---- output.fpga in a workflow: the estimate of the baseline and of each result in report.json.
constexpr const char* kFpgaWorkflow = R"(seed: 0
model: {zoo: jet_tagger}
experiments:
  - name: pruned
    stages: [{method: prune, params: {kind: unstructured, ratio: 0.75, scope: local}}]
)";

TEST(FpgaWorkflow, OutputFpgaIsParsedAndChecked) {
  pipeline::WorkflowConfig c = pipeline::parse_config(
      std::string(kFpgaWorkflow) + "output: {latency: false, fpga: {clock_mhz: 250, reuse_factor: 2, "
                                   "precision: 'ap_fixed<8,3>', softmax: true}}\n");
  ASSERT_TRUE(c.output.fpga.has_value());
  EXPECT_EQ(c.output.fpga->clock_mhz, 250);
  EXPECT_EQ(c.output.fpga->reuse_factor, 2);
  EXPECT_EQ(c.output.fpga->precision, "ap_fixed<8,3>");
  EXPECT_TRUE(c.output.fpga->add_softmax);
  EXPECT_FALSE(pipeline::parse_config(std::string(kFpgaWorkflow) + "output: {latency: false}\n").output.fpga);
  for (const char* bad : {"{clock_mhz: 0}", "{reuse_factor: 0}", "{precision: 'ap_fixed<0,0>'}", "{clok_mhz: 200}"}) {
    try {
      pipeline::parse_config(std::string(kFpgaWorkflow) + "output: {fpga: " + bad + "}\n");
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("output.fpga"), std::string::npos) << e.what();
    }
  }
}

TEST(FpgaWorkflow, ReportCarriesTheEstimates) {
  testing::TempDir dir;
  pipeline::WorkflowConfig c = pipeline::parse_config(
      std::string(kFpgaWorkflow) + "output: {latency: false, dir: " + dir.path() + ", fpga: {softmax: true}}\n");
  report::Report rep = pipeline::run_workflow(c);
  ASSERT_FALSE(rep.baseline_fpga.empty());
  ASSERT_EQ(rep.results.size(), 1u);
  const std::string json = read_text(dir.path() + "/report.json");
  EXPECT_NE(json.find("\"fpga\""), std::string::npos);
  // The pruned model needs fewer multipliers than the baseline.
  auto dsp_of = [](const std::string& j) { return std::stoll(j.substr(j.find("\"dsp\": ") + 7)); };
  EXPECT_LT(dsp_of(rep.results[0].fpga), dsp_of(rep.baseline_fpga));
}

TEST(FpgaWorkflow, UncoveredModelIsRefusedBeforeWork) {
  testing::TempDir dir;
  pipeline::WorkflowConfig c = pipeline::parse_config(
      "model: {zoo: small_cnn}\nexperiments:\n  - name: p\n    stages: [{method: prune, params: {ratio: 0.5}}]\n"
      "output: {latency: false, dir: " + dir.path() + "/run, fpga: {}}\n");
  EXPECT_THROW(pipeline::check_workflow(c), UnsupportedError);
  EXPECT_THROW(pipeline::run_workflow(c), UnsupportedError);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/run/report.json"));
}

}  // namespace
}  // namespace squeeze
