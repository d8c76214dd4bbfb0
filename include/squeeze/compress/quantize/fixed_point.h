// Fixed-point types per tensor, as hls4ml configures them (method fixed_point): every Linear
// layer gets an input, weight, bias, accumulator and result type (ap_fixed<W,I,Q,O,N>, ap_ufixed,
// or QKeras' quantized_bits(bits, integer), ir/fixed_point.h); Relu and Add nodes a result type;
// the graph input an input type (an Identity node "<input>_fixed" carrying it). BatchNorm after a
// Linear is folded first (as hls4ml does). Other ops (Softmax, Sigmoid, Conv, ...) stay float; a
// fixed layer after a float op assigns its input to its input type.
//
// Where each type is stored is the contract of exec/fixed.h (weight/bias Param::qspec, node
// attributes "fixed.input" and "fixed.accum", Node::out_qspec; fixed::of_spec). In eval mode the
// executor computes those layers exactly as the FPGA would; during fine-tuning (QAT) weights,
// biases and results are fake-quantized to their types with a straight-through gradient and the
// accumulator is not emulated, then the weights are snapped to their types.
//
// Types are resolved per node: a `layers` entry whose pattern is the node's exact name, else the
// longest matching pattern (glob on the name, or the op type) that sets that kind; then the
// top-level weight / bias / result / accum; then `default`. An unset accumulator is inferred as
// hls4ml does (fixed::infer_accumulator). Value types (input, weight, bias, result) are limited
// to 24 bits, exact in the executor's float32 tensors; accumulators to 62.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "squeeze/compress/registry.h"
#include "squeeze/ir/fixed_point.h"

namespace squeeze::compress {

struct FixedPointKinds {
  std::string weight, bias, result, accum;  // "" = not set here
};

struct FixedPointOptions {
  std::string default_type = "ap_fixed<16,6>";
  std::string input;                 // graph input; "" = default
  FixedPointKinds kinds;             // top-level weight / bias / result / accum
  std::map<std::string, FixedPointKinds> layers;  // node-name glob or op type -> types
  std::vector<std::string> exclude; // node-name globs or op types kept float
  bool fold_bn = true;

  void validate() const;  // parses every type string: ConfigError naming the key
  static FixedPointOptions from_params(Params& p);
};

class FixedPoint : public Pass {
 public:
  explicit FixedPoint(FixedPointOptions options);
  std::string name() const override { return "fixed_point"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;
  // Snaps fine-tuned weights and biases back onto their types.
  void finalize(ir::Graph& graph) override;

 private:
  // The type of `kind` for node n ("" kinds fall back as documented above); nullopt for an
  // accumulator left to inference.
  std::optional<fixed::FixedType> resolve(const ir::Node& n, const std::string& kind) const;
  FixedPointOptions options_;
};

}  // namespace squeeze::compress
