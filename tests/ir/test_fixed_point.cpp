// ap_fixed arithmetic (ir/fixed_point.h): UG1399's own examples, hand-computed cases for every
// quantization and overflow mode, the parser, and the vectorised versions against the scalar ones.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "squeeze/ir/fixed_point.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"

namespace squeeze {
namespace {

using fixed::FixedType;
using fixed::OMode;
using fixed::QMode;

FixedType T(const std::string& s) { return fixed::parse_type(s, "test"); }
double q(const std::string& type, double v) {
  FixedType t = T(type);
  return fixed::to_double(fixed::from_double(v, t), t);
}

TEST(FixedPoint, ManualExamples) {
  // UG1399, "Quantization Modes" and "Overflow Modes".
  EXPECT_EQ(q("ap_fixed<3,2,AP_RND>", 1.25), 1.5);
  EXPECT_EQ(q("ap_fixed<3,2,AP_RND>", -1.25), -1.0);
  EXPECT_EQ(q("ap_fixed<3,2,AP_RND_ZERO,AP_SAT>", 1.25), 1.0);
  EXPECT_EQ(q("ap_fixed<3,2,AP_RND_ZERO,AP_SAT>", -1.25), -1.0);
  EXPECT_EQ(q("ap_fixed<3,2,AP_RND_MIN_INF,AP_SAT>", 1.25), 1.0);
  EXPECT_EQ(q("ap_fixed<3,2,AP_RND_MIN_INF,AP_SAT>", -1.25), -1.5);
  // (The "ap_fixed<4,4,AP_SAT>": Q comes before O, so that is ap_fixed<4,4,AP_TRN,AP_SAT>.)
  EXPECT_EQ(q("ap_fixed<4,4,AP_TRN,AP_SAT>", 19.0), 7.0);  // 19 is an integer: only the overflow acts
  EXPECT_EQ(q("ap_fixed<4,4,AP_TRN,AP_SAT>", -19.0), -8.0);
  EXPECT_EQ(q("ap_fixed<4,4,AP_RND,AP_SAT>", 19.0), 7.0);
  EXPECT_EQ(q("ap_fixed<4,4,AP_RND,AP_SAT>", -19.0), -8.0);
  EXPECT_EQ(q("ap_ufixed<4,4,AP_RND,AP_SAT>", 19.0), 15.0);
  EXPECT_EQ(q("ap_ufixed<4,4,AP_RND,AP_SAT>", -19.0), 0.0);
  EXPECT_EQ(q("ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", 19.0), 0.0);
  EXPECT_EQ(q("ap_fixed<4,4,AP_RND,AP_SAT_ZERO>", -19.0), 0.0);
  EXPECT_EQ(q("ap_ufixed<4,4,AP_RND,AP_SAT_ZERO>", 19.0), 0.0);
  EXPECT_EQ(q("ap_fixed<4,4,AP_RND,AP_SAT_SYM>", 19.0), 7.0);
  EXPECT_EQ(q("ap_fixed<4,4,AP_RND,AP_SAT_SYM>", -19.0), -7.0);
  EXPECT_EQ(q("ap_ufixed<4,4,AP_RND,AP_SAT_SYM>", -19.0), 0.0);
  // Overview: ap_fixed<18,6,AP_RND> t2 = -1.5 is 0x3e800 as 18 bits.
  FixedType t = T("ap_fixed<18,6,AP_RND>");
  EXPECT_EQ(fixed::from_double(-1.5, t) & ((1 << 18) - 1), 0x3e800);
}

// Every quantization mode on ap_fixed<3,2,Q,AP_SAT> (step 0.5): ties 1.25, -1.25, 0.75 and the
// non-ties 1.3, -1.3, worked out by hand from the definitions.
TEST(FixedPoint, EachQuantizationMode) {
  const std::vector<double> x = {1.25, -1.25, 0.75, 1.3, -1.3};
  const std::map<std::string, std::vector<double>> expected = {
      {"AP_TRN", {1.0, -1.5, 0.5, 1.0, -1.5}},        {"AP_TRN_ZERO", {1.0, -1.0, 0.5, 1.0, -1.0}},
      {"AP_RND", {1.5, -1.0, 1.0, 1.5, -1.5}},        {"AP_RND_ZERO", {1.0, -1.0, 0.5, 1.5, -1.5}},
      {"AP_RND_MIN_INF", {1.0, -1.5, 0.5, 1.5, -1.5}}, {"AP_RND_INF", {1.5, -1.5, 1.0, 1.5, -1.5}},
      {"AP_RND_CONV", {1.0, -1.0, 1.0, 1.5, -1.5}},
  };
  for (const auto& [mode, want] : expected)
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_EQ(q("ap_fixed<3,2," + mode + ",AP_SAT>", x[i]), want[i]) << mode << " of " << x[i];
  // A negative value a hair above a tie (-0.5 + 2^-54 steps): nearest is 0 in every round-to-nearest
  // mode, even where a tie would go down (1 - 0.4999... must not be taken for a tie in double).
  EXPECT_EQ(q("ap_fixed<6,3,AP_RND_MIN_INF,AP_SAT>", -(0.5 - std::ldexp(1.0, -54)) / 8.0), 0.0);
  EXPECT_EQ(q("ap_fixed<6,3,AP_RND_ZERO,AP_SAT>", -(0.5 + std::ldexp(1.0, -53)) / 8.0), -0.125);
  // Rounding that carries into an overflow: 3.75 rounds to 4, above ap_fixed<4,3>'s 3.5.
  EXPECT_EQ(q("ap_fixed<4,3,AP_RND,AP_SAT>", 3.75), 3.5);
  EXPECT_EQ(q("ap_fixed<4,3,AP_RND,AP_WRAP>", 3.75), -4.0);
  EXPECT_EQ(q("ap_fixed<4,3,AP_TRN,AP_SAT>", 3.75), 3.5);
}

TEST(FixedPoint, EachOverflowMode) {
  // ap_fixed<4,4>: integers in [-8, 7].
  const std::vector<double> x = {8, -9, -8, 19, -19, 7};
  const std::map<std::string, std::vector<double>> expected = {
      {"AP_WRAP", {-8, 7, -8, 3, -3, 7}},     {"AP_SAT", {7, -8, -8, 7, -8, 7}},
      {"AP_SAT_ZERO", {0, 0, -8, 0, 0, 7}},   {"AP_SAT_SYM", {7, -7, -7, 7, -7, 7}},
      {"AP_WRAP,1", {0, -1, -8, 3, -3, 7}},   // the sign bit forced to the value's sign
      {"AP_WRAP,2", {4, -5, -8, 7, -7, 7}},   // and the bit below it to its complement
  };
  for (const auto& [mode, want] : expected)
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_EQ(q("ap_fixed<4,4,AP_TRN," + mode + ">", x[i]), want[i]) << mode << " of " << x[i];
  // ap_ufixed<4,4>: [0, 15].
  EXPECT_EQ(q("ap_ufixed<4,4>", 16), 0);
  EXPECT_EQ(q("ap_ufixed<4,4>", 19), 3);
  EXPECT_EQ(q("ap_ufixed<4,4>", -1), 15);
  EXPECT_EQ(q("ap_ufixed<4,4,AP_TRN,AP_SAT>", -1), 0);
  EXPECT_EQ(q("ap_ufixed<4,4,AP_TRN,AP_SAT>", 16), 15);
  EXPECT_EQ(q("ap_ufixed<4,4,AP_TRN,AP_WRAP,2>", 19), 15);  // 0011 with the two top bits set
  // Negative and large I: ap_fixed<2,0> holds -0.5..0.25; ap_fixed<4,8> steps of 16.
  EXPECT_EQ(q("ap_fixed<2,0>", -0.5), -0.5);
  EXPECT_EQ(q("ap_fixed<2,0,AP_TRN,AP_SAT>", 0.4), 0.25);
  EXPECT_EQ(q("ap_fixed<4,8,AP_RND,AP_SAT>", 40.0), 48.0);
  EXPECT_EQ(q("ap_fixed<4,8,AP_RND,AP_SAT>", 1000.0), 112.0);
}

TEST(FixedPoint, ConvertMantissas) {
  // A product of ap_fixed<8,3> x ap_fixed<8,3> (10 fractional bits) into ap_fixed<6,4> (2).
  FixedType acc = T("ap_fixed<6,4,AP_RND_CONV,AP_SAT>");
  EXPECT_EQ(fixed::convert(0b1010'0000'0000, 10, acc), 10);   // 2.5 -> 10 quarters
  EXPECT_EQ(fixed::convert(0b0000'1010'0000, 10, acc), 1);    // 0.15625 -> 0.25 (nearest)
  EXPECT_EQ(fixed::convert(0b0000'1000'0000, 10, acc), 0);    // 0.125: tie, to even 0
  EXPECT_EQ(fixed::convert(0b0001'1000'0000, 10, acc), 2);    // 0.375: tie, to even 0.5
  EXPECT_EQ(fixed::convert(-(1 << 20), 10, acc), -32);        // -1024 saturates at -8 = -32 quarters
  // Left shift (fewer fractional bits in the source) and its overflow.
  EXPECT_EQ(fixed::convert(3, 0, acc), 12);
  EXPECT_EQ(fixed::convert(int64_t(1) << 40, 0, acc), 31);
  EXPECT_EQ(fixed::convert(int64_t(1) << 40, 0, T("ap_fixed<6,4>")), 0);  // wraps to the low bits
  EXPECT_EQ(fixed::convert(9, 0, T("ap_fixed<6,4>")), -28);  // 36 quarters wrap to 36 - 64
  // Shifts of 64 and more: only the sign and the sticky bits remain.
  EXPECT_EQ(fixed::convert(-5, 80, T("ap_fixed<8,8,AP_TRN>")), -1);
  EXPECT_EQ(fixed::convert(-5, 80, T("ap_fixed<8,8,AP_TRN_ZERO>")), 0);
  EXPECT_EQ(fixed::convert(5, 80, T("ap_fixed<8,8,AP_RND_INF>")), 0);
}

TEST(FixedPoint, ParserAndErrors) {
  FixedType t = T("ap_fixed<8,3,AP_RND,AP_SAT>");
  EXPECT_EQ(t.width, 8);
  EXPECT_EQ(t.int_bits, 3);
  EXPECT_EQ(t.quant, QMode::kRnd);
  EXPECT_EQ(t.overflow, OMode::kSat);
  EXPECT_EQ(fixed::to_string(t), "ap_fixed<8,3,AP_RND,AP_SAT>");
  EXPECT_EQ(fixed::to_string(T(" ap_fixed< 16 , 6 > ")), "ap_fixed<16,6>");
  EXPECT_EQ(fixed::to_string(T("ap_ufixed<8,0,AP_TRN,AP_WRAP,2>")), "ap_ufixed<8,0,AP_TRN,AP_WRAP,2>");
  EXPECT_EQ(fixed::to_string(T("ap_int<8>")), "ap_int<8>");
  EXPECT_EQ(T("ap_uint<4>").max_mantissa(), 15);
  // QKeras: quantized_bits(bits, integer, symmetric, keep_negative, alpha), in QKeras' order.
  EXPECT_EQ(T("quantized_bits(6,0)"), T("ap_fixed<6,1,AP_RND_CONV,AP_SAT>"));
  EXPECT_EQ(T("quantized_bits(8, 3, 0, 0)"), T("ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"));
  EXPECT_EQ(T("quantized_bits(8, 3, 1)"), T("ap_fixed<8,4,AP_RND_CONV,AP_SAT_SYM>"));
  EXPECT_EQ(T("quantized_bits(bits=4, integer=0, symmetric=1, alpha=1)"), T("ap_fixed<4,1,AP_RND_CONV,AP_SAT_SYM>"));
  for (const std::string bad : {"ap_fixed<0,0>", "ap_fixed<8>", "ap_fixed<8,3,AP_FOO>", "ap_fixed<8,3,AP_RND,AP_WRAP_SM>",
                                "ap_fixed<8,3", "float", "ap_fixed<99,3>", "ap_fixed<8,100>", "ap_fixed<8,3,AP_RND,AP_SAT,2>",
                                "ap_fixed<1,1,AP_TRN,AP_SAT_SYM>", "quantized_bits(4,0,alpha=auto)", "quantized_bits()",
                                "ap_fixed<x,3>"}) {
    try {
      fixed::parse_type(bad, "layers.fc1.weight");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("layers.fc1.weight"), std::string::npos) << e.what();
    }
  }
  try {
    fixed::parse_type("ap_fixed<8,3,AP_FOO>", "weight");
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("AP_RND_CONV"), std::string::npos) << "lists the valid modes: " << e.what();
  }
}

TEST(FixedPoint, AccumulatorInference) {
  // hls4ml: W = Ww + Wx + ceil(log2 n), I = Iw + Ix + ceil(log2 n); the bias adds an integer bit.
  FixedType a = fixed::infer_accumulator(T("ap_fixed<16,6>"), T("ap_fixed<16,6>"), nullptr, 16, "t");
  EXPECT_EQ(a.width, 36);
  EXPECT_EQ(a.int_bits, 16);
  FixedType b = T("ap_fixed<16,6>");
  FixedType ab = fixed::infer_accumulator(T("ap_fixed<16,6>"), T("ap_fixed<8,3>"), &b, 64, "t");
  EXPECT_EQ(ab.int_bits, 6 + 3 + 6 + 1);
  EXPECT_EQ(ab.frac_bits(), 10 + 5);
  EXPECT_EQ(fixed::infer_accumulator(T("ap_fixed<8,3>"), T("ap_fixed<8,3>"), nullptr, 1, "t").width, 16);
  EXPECT_THROW(fixed::infer_accumulator(T("ap_fixed<24,6>"), T("ap_fixed<24,6>"), nullptr, 1 << 20, "t"), ConfigError);
}

// The vectorised versions equal the scalar reference on random values, ties and edges, in every mode.
TEST(FixedPoint, TensorMatchesScalar) {
  std::mt19937_64 rng(7);
  std::vector<std::string> types;
  for (const char* qm : {"AP_TRN", "AP_TRN_ZERO", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_RND_CONV"})
    for (const char* om : {"AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM"}) {
      types.push_back(std::string("ap_fixed<6,3,") + qm + "," + om + ">");
      types.push_back(std::string("ap_ufixed<5,2,") + qm + "," + om + ">");
    }
  types.push_back("ap_fixed<6,3,AP_RND,AP_WRAP,2>");
  types.push_back("ap_ufixed<6,3,AP_RND,AP_WRAP,3>");
  types.push_back("ap_fixed<40,-3,AP_RND_CONV,AP_SAT>");
  types.push_back("ap_fixed<12,20,AP_RND_INF,AP_WRAP>");
  std::vector<double> xs;
  std::uniform_real_distribution<double> u(-10.0, 10.0);
  for (int i = 0; i < 2000; ++i) xs.push_back(u(rng));
  for (int k = -80; k <= 80; ++k) xs.push_back(k / 16.0);
  xs.push_back(-(0.5 - std::ldexp(1.0, -54)) / 8.0);  // |x| 2^F just below a half: 1 - frac rounds in double  // ties at every grid of up to 4 fractional bits
  for (double e : std::vector<double>{1e30, -1e30, 3e19, -3e19, 5e18, 1e-30, -1e-30, 0.0, -0.0, INFINITY, -INFINITY, NAN})
    xs.push_back(e);
  at::Tensor xt = at::from_blob(xs.data(), {static_cast<int64_t>(xs.size())}, at::kDouble).clone();
  std::uniform_int_distribution<int64_t> mi(-(int64_t(1) << 40), int64_t(1) << 40);
  std::vector<int64_t> ms;
  for (int i = 0; i < 1000; ++i) ms.push_back(mi(rng));
  for (int64_t e : {int64_t(0), int64_t(1), int64_t(-1), int64_t(2), int64_t(-2), int64_t(3), int64_t(-3)}) ms.push_back(e);
  at::Tensor mt = at::from_blob(ms.data(), {static_cast<int64_t>(ms.size())}, at::kLong).clone();
  for (const auto& s : types) {
    FixedType t = T(s);
    at::Tensor got = fixed::from_float(xt, t);
    for (size_t i = 0; i < xs.size(); ++i)
      ASSERT_EQ(got[i].item<int64_t>(), fixed::from_double(xs[i], t)) << s << " of " << xs[i];
    for (int from : {-70, -20, -3, 0, 1, 5, 30, 63, 64, 70}) {
      at::Tensor c = fixed::convert(mt, from, t);
      for (size_t i = 0; i < ms.size(); ++i)
        ASSERT_EQ(c[i].item<int64_t>(), fixed::convert(ms[i], from, t)) << s << " of " << ms[i] << " from " << from;
    }
  }
}

TEST(FixedPoint, QuantSpecFollowsTheType) {
  ir::QuantSpec s = fixed::to_spec(T("ap_fixed<4,2,AP_RND_CONV,AP_SAT_SYM>"));
  EXPECT_EQ(s.bits, 4);
  EXPECT_TRUE(s.narrow_range);
  EXPECT_FLOAT_EQ(s.scale.item<float>(), 0.25f);
  EXPECT_EQ(quant::qrange(s).qmin, -7);
  at::Tensor x = at::tensor({0.375, -5.0, 1.2}, at::kFloat);
  at::Tensor y = quant::fake_quantize(x, s);
  EXPECT_FLOAT_EQ(y[0].item<float>(), 0.5f);  // tie to even: 1.5 quarters -> 2
  EXPECT_FLOAT_EQ(y[1].item<float>(), -1.75f);
  EXPECT_FLOAT_EQ(y[2].item<float>(), 1.25f);
  // Straight-through gradient: 1 inside the range, 0 where it saturated.
  at::Tensor xg = x.clone().requires_grad_(true);
  quant::fake_quantize(xg, s).sum().backward();
  EXPECT_FLOAT_EQ(xg.grad()[0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(xg.grad()[1].item<float>(), 0.0f);
  EXPECT_EQ(quant::describe(s), "ap_fixed<4,2,AP_RND_CONV,AP_SAT_SYM>");
}

}  // namespace
}  // namespace squeeze
