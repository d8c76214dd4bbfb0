// Builds IR graphs op by op, tracking shapes as it goes. Used by the model zoo and by tests.
// Weights are initialised like PyTorch's defaults (Kaiming-uniform with a = sqrt(5), so
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases) from a seeded generator.
#pragma once

#include <ATen/core/Generator.h>

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::ir {

class GraphBuilder {
 public:
  explicit GraphBuilder(std::string graph_name, uint64_t seed = 0);

  // Declares a graph input; the batch dimension is dynamic. Returns the value name.
  std::string input(const std::string& name, const Shape& sample_shape);

  std::string conv(const std::string& x, int64_t out_channels, int64_t kernel, int64_t stride = 1,
                   int64_t padding = 0, int64_t groups = 1, bool bias = true, const std::string& name = "");
  std::string linear(const std::string& x, int64_t out_features, bool bias = true, const std::string& name = "");
  std::string batchnorm(const std::string& x, const std::string& name = "");
  std::string layernorm(const std::string& x, const std::string& name = "");
  std::string act(const std::string& op, const std::string& x, const std::string& name = "");  // "Relu", ...
  std::string maxpool(const std::string& x, int64_t kernel, int64_t stride, int64_t padding = 0);
  std::string avgpool(const std::string& x, int64_t kernel, int64_t stride, int64_t padding = 0);
  std::string global_avgpool(const std::string& x);
  std::string flatten(const std::string& x);
  std::string dropout(const std::string& x, double ratio);
  std::string add(const std::string& a, const std::string& b);
  std::string concat(const std::vector<std::string>& xs, int64_t axis);

  // Any op: attributes and parameters given explicitly. Returns the first output's name.
  std::string node(const std::string& op, const std::vector<std::string>& inputs,
                   std::map<std::string, Attr> attrs = {}, std::map<std::string, Param> params = {},
                   const std::string& name = "", int num_outputs = 1);

  const Shape& shape(const std::string& value) const;
  int64_t channels(const std::string& value) const { return shape(value).at(1); }

  // Marks the outputs, verifies and returns the graph.
  Graph finish(const std::vector<std::string>& outputs);

  // PyTorch default initialisation of a [out, in, k...] weight and its bias.
  at::Tensor init_weight(const std::vector<int64_t>& shape, int64_t fan_in);

 private:
  std::string fresh(const std::string& prefix);
  Graph graph_;
  std::map<std::string, int> counters_;
  at::Generator gen_;
};

}  // namespace squeeze::ir
