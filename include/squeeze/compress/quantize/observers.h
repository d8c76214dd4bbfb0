// Range observers for calibration: they watch the values of one tensor over calibration batches
// and propose the (min, max) range to quantize it with.
//
//   minmax          running minimum and maximum
//   moving_average  exponential moving average of each batch's min and max (momentum 0.01 in
//                   PyTorch; here `momentum`, first batch taken as is)
//   percentile      the p-th and (100-p)-th percentiles of the values seen (a sample of at most
//                   kMaxSamples values, taken evenly from every batch)
//   mse             the clipping range, a fraction of [min, max], that minimises the mean squared
//                   quantization error on the sample
//   entropy         the clipping threshold that minimises the KL divergence between the
//                   histogram of |x| and its quantized version (TensorRT's calibration)
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::quant {

class Observer {
 public:
  static constexpr int64_t kMaxSamples = 1 << 18;
  // kind: minmax | moving_average | percentile | mse | entropy. Throws ConfigError otherwise.
  Observer(std::string kind, double percentile = 99.99, double momentum = 0.1);

  void observe(const at::Tensor& x);
  bool empty() const { return batches_ == 0; }
  // The range to quantize with under `spec` (bits, signedness and symmetry matter for mse and
  // entropy). Always contains 0.
  std::pair<double, double> range(const ir::QuantSpec& spec) const;

  static const std::vector<std::string>& kinds();

 private:
  std::string kind_;
  double percentile_, momentum_;
  int64_t batches_ = 0;
  double min_ = 0.0, max_ = 0.0;         // overall
  double avg_min_ = 0.0, avg_max_ = 0.0; // moving average
  std::vector<at::Tensor> samples_;
  int64_t num_samples_ = 0;
};

}  // namespace squeeze::quant
