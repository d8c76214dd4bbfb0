// FPGA cost model: an estimate of what hls4ml (io_parallel, Latency strategy, Vivado/Vitis HLS on
// an UltraScale+ part) would build from a graph: per layer the multiplications left, DSP48E2s,
// LUTs, flip-flops and pipeline cycles, and the totals in cycles and nanoseconds.
//
// Every formula of the model is here, in hls4ml's terms (docs/fpga.md explains the calibration).
//
// Widths. Every tensor is an ap_fixed<W,I> (W bits, I of them integer bits, signed; ap_ufixed
// unsigned). A Linear/Gemm weight takes its Param::qspec (W = bits; the grid step is its scale)
// when it has one, else `precision`. A layer's input width is the result width of the layer
// before it: the producer's Node::out_qspec bits, through pass-through ops (ReLU, Flatten,
// Dropout, Identity) that have none; a Linear without an out_qspec produces `precision` (hls4ml's
// result_t and accum_t default to the model precision); the graph input is `input_precision`.
//
// Constants. In io_parallel with reuse factor 1 every weight is a constant in the HLS source and
// the synthesis tool specialises each product x * c on the quantized integer c (the weight in
// units of its grid step, AP_TRN: floor; or round(w / scale) for a QuantSpec):
//   c == 0                      no product (pruned or quantized away)
//   csd(c) == 1 (c = +-2^k)     a shift: no logic, or one W_p-bit subtractor when c < 0
//   csd(c) == 2 (2^a +- 2^b)    one W_p-bit adder of two shifted copies of x
//   csd(c) >= 3, wide           a DSP48E2 (dsp_per_product DSPs), plus kLutPerDspProduct LUTs
//   csd(c) >= 3, narrow         a LUT multiplier: (csd(c) - 1) adders of W_p bits
// where csd(c) is the number of non-zero digits of c in canonical signed-digit form, W_p =
// W_x + W_c the product width, W_c the significant bits of c plus sign, and "narrow" means
// max(W_x, W_c) <= lut_mult_max_bits (Vivado maps multiplications whose operands are both
// narrow into fabric; calibrated at 10 from the tutorial's 6-bit model, whose products left
// DSPs, against its 16-bit one, where 16 x 5-bit products still took DSPs).
// With reuse factor R > 1 the weights are read from an array, so every multiplier is generic:
//   n_mult = ceil(n_in * n_out / R) - floor(n_zeros / R)     (hls4ml's multiplier_limit)
// multipliers of W_x x W_w bits, each dsp_per_product(W_x, W_w) DSPs when wide, else
// ceil(W_x * W_w / 2) LUTs. For R == 1 the same formula gives the multiplications left,
// n_in * n_out - n_zeros; n_zeros counts weights equal to zero (masked or zero-valued), as hls4ml
// counts them.
//
// dsp_per_product(a, b): 1 when the product fits one DSP48E2 multiplier (27 x 18 signed, either
// way round), else ceil(a / 27) * ceil(b / 18) for the larger a, smaller b.
//
// Adder tree. Each output sums its k non-zero products and the bias: k adders of W_acc bits
// (W_acc = the layer's result width, hls4ml's accum_t default), one LUT per bit, in a balanced
// tree of depth ceil(log2(k_max + 1)), k_max the most non-zero inputs of any output.
//
// Latency (cycles at clock_mhz, period T = 1000 / clock_mhz ns, of which HLS schedules
// T * (1 - kClockUncertainty)). A dense layer's combinational path is
//   t = t_mult + depth * t_add(W_acc),  t_mult = kDspDelayNs (any DSP product), else
//   kLutMultDelayNs (LUT products), else 0 (shifts and adds only); t_add(w) = kAddBaseNs +
//   kAddPerBitNs * w
// and takes ceil(t / usable period) cycles, at least 1, plus R - 1 cycles to reuse the
// multipliers, plus one register at the layer's output. ReLU (and LeakyReLU, ReLU6) is
// combinational: 0 cycles, kReluLutPerBit * W LUTs per element. Softmax (hls4ml's stable softmax
// with exp and inverse tables) takes kSoftmaxCycles for up to 8 classes plus one per doubling
// beyond, one DSP per class and kSoftmaxLutPerClass LUTs per class. The design reads its input
// into a register: one cycle. Flatten, Reshape, Dropout, Identity cost nothing. The initiation
// interval of the design is the largest reuse factor.
//
// Flip-flops: each pipeline register holds the layer's outputs, n_out * W_out bits per cycle of
// the layer (the input register: n_in * W_in).
//
// Reuse factor. hls4ml accepts for a Dense layer only an R with n_in * n_out % R == 0 and
// (R < n_in ? ceil(n_in * n_out / R) % n_out == 0 : R % n_in == 0); given another it takes the
// closest valid one (the smaller on a tie) and warns. squeeze does the same: the layer row says
// which R it used (`reuse_factor`) and `notes` carries the warning.
//
// Unsupported ops (convolutions, normalisation, attention, other activations) are refused with an
// UnsupportedError naming the layer and the op: the model is io_parallel dense networks only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::deploy {

// An ap_fixed<W,I> (signed) or ap_ufixed<W,I> type; ap_int<W> is ap_fixed<W,W>.
struct FixedType {
  int width = 16;
  int integer = 6;
  bool is_signed = true;
  std::string str() const;  // "ap_fixed<16,6>"
};

// Parses "ap_fixed<W,I>", "ap_fixed<W,I,Q,O>" (modes accepted; they do not change the cost),
// "ap_ufixed<...>", "ap_int<W>", "ap_uint<W>". `where` names the option in the error: a
// ConfigError for text that is none of these, W < 1 or W > 1024.
FixedType parse_fixed_type(const std::string& text, const std::string& where);

// Calibration constants (see the comment above and docs/fpga.md).
constexpr double kClockUncertainty = 0.125;   // HLS default: 12.5% of the period
constexpr double kDspDelayNs = 1.2;           // a DSP48E2 product, combinational, as HLS schedules it
constexpr double kLutMultDelayNs = 0.9;       // a narrow product in fabric
constexpr double kAddBaseNs = 0.21;           // t_add(w) = base + per_bit * w: 0.45 ns at 16 bits
constexpr double kAddPerBitNs = 0.015;
constexpr int kLutPerDspProduct = 5;          // sign extension and glue around each DSP product
constexpr double kReluLutPerBit = 1.75;       // 28 LUTs per 16-bit element
constexpr int kSoftmaxCycles = 4;
constexpr int kSoftmaxLutPerClass = 130;
constexpr int kDefaultLutMultMaxBits = 10;

struct FpgaOptions {
  double clock_mhz = 200.0;
  int64_t reuse_factor = 1;
  std::string precision = "ap_fixed<16,6>";  // tensors without a QuantSpec
  std::string input_precision;               // the graph input; empty: precision
  int lut_mult_max_bits = kDefaultLutMultMaxBits;
  // Count a softmax after the last layer, as hls4ml's classifiers converted from Keras have
  // (Activation('softmax')); squeeze's classifiers end in logits. A graph that ends in Softmax
  // already has it counted; then this is refused as a double count.
  bool add_softmax = false;

  // Throws ConfigError naming the option: clock_mhz <= 0 or not finite, reuse_factor < 1,
  // lut_mult_max_bits < 0, a precision that does not parse.
  void check() const;
};

struct FpgaLayer {
  std::string name, op;
  int64_t n_in = 0, n_out = 0;     // Dense: fan-in and outputs; activations: elements
  int64_t weights = 0;             // n_in * n_out
  int64_t zeros = 0;               // weights equal to zero (hls4ml's n_zeros)
  int64_t reuse_factor = 1;        // the valid reuse factor used
  int64_t n_mult = 0;              // hls4ml's multiplier limit: ceil(w / R) - floor(zeros / R)
  int64_t dsp_products = 0, lut_products = 0, adder_products = 0, shift_products = 0;
  int weight_bits = 0, input_bits = 0, result_bits = 0;
  int adder_depth = 0;             // ceil(log2(k_max + 1))
  int64_t dsp = 0, lut = 0, ff = 0;
  int64_t cycles = 0;
  double path_ns = 0.0;            // the combinational path the cycles come from
  std::vector<std::string> notes;  // e.g. the reuse factor hls4ml would have replaced
};

struct FpgaEstimate {
  FpgaOptions options;
  std::vector<FpgaLayer> layers;   // in graph order; pass-through ops are left out
  int64_t cycles = 0;              // latency of one inference, input register included
  double latency_ns = 0.0;         // cycles * 1000 / clock_mhz
  int64_t interval = 1;            // initiation interval in cycles (the largest reuse factor)
  int64_t dsp = 0, lut = 0, ff = 0;
  std::vector<std::string> notes;  // warnings: reuse factors replaced
};

// The estimate for a verified graph (shapes inferred). Throws ConfigError for bad options and
// UnsupportedError naming the first layer whose op the model does not cover.
FpgaEstimate estimate_fpga(const ir::Graph& graph, const FpgaOptions& options);

// Helpers the estimate is built from, exposed for tests and for the search pipelines.
int64_t hls4ml_n_mult(int64_t n_in, int64_t n_out, int64_t n_zeros, int64_t reuse_factor);
bool hls4ml_valid_reuse_factor(int64_t n_in, int64_t n_out, int64_t reuse_factor);
int64_t hls4ml_closest_reuse_factor(int64_t n_in, int64_t n_out, int64_t reuse_factor);
int csd_digits(int64_t c);                 // non-zero digits in canonical signed-digit form
int dsp_per_product(int a_bits, int b_bits);
int adder_tree_depth(int64_t terms);       // ceil(log2(terms)), 0 for one term

}  // namespace squeeze::deploy
