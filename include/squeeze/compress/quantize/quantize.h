// Quantization of Conv/Linear layers: post-training (ptq), dynamic int8 (dynamic) and
// quantization-aware training (qat), 2 to 8 bits, one quantized graph for every backend.
//
// What the pass leaves in the graph (the contract exporters and the executor rely on):
//   - weights: Param.qspec (signed, symmetric by default, per output channel by default) and the
//     value stored *dequantized, exactly on the grid*, so .sqz packs it as b-bit integers;
//   - biases stay float32 (4 bytes each; libtorch's int8 kernels take float biases, and the
//     biases of small_cnn are 0.06% of its weights);
//   - activations (ptq/qat with act_bits > 0): Node.out_qspec (unsigned affine by default) on
//     every Conv/Linear output and on the value each quantized layer reads, found by looking
//     through grid-keeping ops (Relu, MaxPool, Flatten...); a graph input read by a quantized
//     layer gets an Identity node "<input>_quant" carrying the spec;
//   - dynamic: Linear nodes get attribute quant_dynamic = 1 (input quantized per batch).
// BatchNorm following a Conv/Linear is folded into it first (fold_bn).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "squeeze/compress/registry.h"

namespace squeeze {
class Params;
}

namespace squeeze::compress {

struct QuantizeOptions {
  std::string mode = "ptq";           // ptq | dynamic | qat
  int weight_bits = 8;                // 2..8
  int act_bits = 8;                   // 2..8, 0 = weights only (dynamic: always 8 on the fly)
  // Bits of the activation points that are graph outputs (a classifier's logits): 2..8, or 0 =
  // act_bits. Logits on a 4-bit grid have 16 levels, too coarse for the class scores a softmax,
  // a calibrated probability or a distillation loss reads; 8 keeps them usable at no cost.
  int output_bits = 0;
  bool per_channel = true;            // weights, along the output channel (dynamic default false)
  bool symmetric = true;              // weights: zero point 0
  bool act_symmetric = false;         // activations: affine uint by default
  bool act_signed = false;
  bool narrow_range = false;          // weights: [-(2^(b-1)-1), 2^(b-1)-1]
  // 8-bit weights on a 7-bit grid ([-64, 63], stored in 8 bits): auto = on CPUs whose int8
  // kernels saturate (exec/int8.h, int8_probe), so they stay exact and fast; true = always;
  // false = never (on a saturating CPU those layers are then simulated, exactly but slowly).
  std::string reduce_range = "auto";  // auto | true | false
  std::string rounding = "half_even"; // half_even | half_up
  bool power_of_two = false;          // scales rounded up to powers of two (fixed-point hardware)
  std::string observer = "minmax";    // activations: minmax | moving_average | percentile | mse | entropy
  double percentile = 99.99;          // percentile observer
  int64_t calibration_batches = 8;    // batches of the training split (in order) for calibration
  // Weight bits per layer: node-name glob or op type -> bits (0 = keep float). The most specific
  // match wins: an exact name, then the longest pattern.
  std::map<std::string, int> layers;
  std::vector<std::string> exclude;   // node-name globs or op types kept in float
  std::vector<std::string> ops = {"Conv", "Linear"};
  bool bias_correction = false;       // shift biases by the mean output error on calibration data
  bool fold_bn = true;
  bool lsq = false;                   // qat: learn the weight scales (LSQ)
  int64_t freeze_observers_after = -1;  // qat: epochs after which ranges stop updating (-1 never)
  int64_t observer_update_every = 50;   // qat: steps between range updates
  bool sensitivity = false;           // per-layer sensitivity analysis (printed, in the summary)
  int64_t sensitivity_samples = 2000; // validation samples per sensitivity evaluation
  std::string sensitivity_out;        // optional CSV file for the sensitivity table

  void validate() const;                           // ConfigError naming the field
  static QuantizeOptions from_params(Params& p);   // mode-dependent defaults, then validate()
};

struct SensitivityRow {
  std::string layer;
  int bits = 8;
  double accuracy = 0.0, drop = 0.0;
};

class Quantize : public Pass {
 public:
  explicit Quantize(QuantizeOptions options);
  std::string name() const override { return "quantize"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;
  // qat: range updates during fine-tuning, and the weights snapped to their grid at the end.
  train::StepHook finetune_hook() override;
  // Snaps trained (shadow) weights to their grid and stops learning scales. Idempotent.
  void finalize(ir::Graph& graph) override;

  // Folds BatchNorm nodes that follow a Conv/Linear (single consumer) into it; returns the count.
  static int fold_batchnorm(ir::Graph& graph);
  // The layers that would be quantized, with their weight bits.
  std::vector<std::pair<std::string, int>> targets(const ir::Graph& graph) const;
  const std::vector<SensitivityRow>& sensitivity() const { return sensitivity_; }

 private:
  ir::QuantSpec weight_spec(int bits, const ir::Node& node) const;
  ir::QuantSpec act_spec() const;
  // act_spec(), with output_bits for a value that is one of the graph's outputs.
  ir::QuantSpec act_spec_for(const std::string& value) const;
  void quantize_weight(ir::Node& node, int bits) const;
  // reduce_range resolved on this machine for weights of `bits` bits.
  bool reduce_weight_range(int bits) const;
  // Values that need an out_qspec for the given layers; may insert input Identity nodes.
  std::vector<std::string> activation_points(ir::Graph& g, const std::vector<std::string>& layers) const;
  void calibrate(ir::Graph& g, const std::vector<std::string>& values, const data::Dataset& data,
                 int64_t batch_size, int64_t batches, bool moving);
  void correct_biases(ir::Graph& g, const ir::Graph& reference, const std::vector<std::string>& layers,
                      const data::Dataset& data, int64_t batch_size) const;
  void run_sensitivity(const ir::Graph& float_graph, const ir::Graph& quantized, PassContext& ctx);

  QuantizeOptions options_;
  std::vector<SensitivityRow> sensitivity_;
  // qat state
  const data::Splits* data_ = nullptr;
  int64_t batch_size_ = 128;
  int64_t steps_per_epoch_ = 1;
  std::vector<std::string> act_values_;
  std::vector<std::string> model_outputs_;  // the graph outputs when the pass ran (output_bits)
  std::map<std::string, std::pair<double, double>> ranges_;  // moving ranges of act_values_
};

}  // namespace squeeze::compress
