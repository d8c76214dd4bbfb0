// Random in-memory data sets for tests that need calibration or gradients, not accuracy, and the
// quantization they are most often used for.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/data/dataset.h"

namespace squeeze::testing {

// n random samples of the given shape with labels in [0, 10); val and test are its first 32.
inline data::Splits random_splits(const std::vector<int64_t>& shape, int64_t n = 128) {
  data::Splits s;
  std::vector<int64_t> full = {n};
  full.insert(full.end(), shape.begin(), shape.end());
  s.train.x = at::randn(full);
  s.train.y = at::randint(0, 10, {n}, at::kLong);
  s.val = s.test = s.train.head(32);
  s.sample_shape = shape;
  s.num_classes = 10;
  return s;
}

// The synthetic jet data set (16 features, 5 classes) with n samples: 60% train, 20% val, 20% test.
inline data::Splits jets(int64_t n) {
  data::DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = n;
  o.val_fraction = 0.2;
  o.test_fraction = 0.2;
  return data::load(o, 0);
}

// What a pass gets from the workflow: the data (or none) and the batch size.
inline compress::PassContext pass_context(const data::Splits* d, int64_t batch_size) {
  compress::PassContext ctx;
  ctx.data = d;
  ctx.batch_size = batch_size;
  return ctx;
}

// Post-training quantization with weights and activations at `bits`, calibrated on d.
inline ir::Graph ptq(const ir::Graph& g, const data::Splits& d, int bits = 8, bool per_channel = true,
                     const std::string& reduce_range = "auto") {
  compress::QuantizeOptions o;
  o.reduce_range = reduce_range;
  o.weight_bits = bits;
  o.act_bits = bits;
  o.per_channel = per_channel;
  compress::PassContext ctx = pass_context(&d, 64);
  return compress::Quantize(o).run(g, ctx).graph;
}

}  // namespace squeeze::testing
