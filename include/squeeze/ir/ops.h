// The registry of IR ops: what inputs, attributes and parameters each op takes, how its output
// shapes follow from its input shapes, and how many FLOPs it costs. The executor's kernels are
// registered separately (exec/kernels.cpp); every op here has one.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::ir {

struct OpDef {
  std::string name;
  int min_inputs = 1;
  int max_inputs = 1;                       // -1: any number
  int num_outputs = 1;                      // -1: given by the node (Split)
  std::vector<std::string> required_params; // e.g. {"weight"}
  std::vector<std::string> optional_params; // e.g. {"bias"}
  std::vector<std::string> required_attrs;
  // Output shapes from input shapes (kDynamic propagates). Throws GraphError on mismatch.
  std::function<std::vector<Shape>(const Node&, const std::vector<Shape>&)> infer;
  // FLOPs over every element of the shapes given, a dynamic dim (the batch) counted as 1; a
  // multiply-add counts 2. node_flops divides by a fixed batch.
  std::function<int64_t(const Node&, const std::vector<Shape>& in, const std::vector<Shape>& out)>
      flops;
  // Output channels are the input channels, index for index (activations, BN, pooling...).
  bool channel_passthrough = false;
};

// nullptr if the op is unknown.
const OpDef* find_op(const std::string& name);
const OpDef& op_def(const std::string& name);  // throws UnsupportedError listing known ops
std::vector<std::string> op_names();

// FLOPs of a node for one sample given the graph's inferred shapes, wherever the batch axis is;
// dims unknown because the batch is dynamic (N * heads after a Reshape) count as 1.
int64_t node_flops(const Graph& graph, const Node& node);
int64_t graph_flops(const Graph& graph);

}  // namespace squeeze::ir
