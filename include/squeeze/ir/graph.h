// The squeeze graph IR: every importer produces it, every compression pass rewrites it,
// every exporter and the executor consume it.
//
// A Graph is a list of Nodes in topological order. Values (the tensors flowing between nodes)
// are named by strings; each value is produced by exactly one node or is a graph input. Nodes
// own their parameter tensors (weights, biases, BatchNorm statistics); each parameter may carry
// a mask (1 = kept, 0 = pruned) and a quantization spec.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace squeeze::ir {

// A tensor shape. The leading (batch) dimension of graph inputs is dynamic: kDynamic.
using Shape = std::vector<int64_t>;
constexpr int64_t kDynamic = -1;

std::string shape_str(const Shape& s);  // "[?, 1, 28, 28]"

// An op attribute. Integer lists cover kernel sizes, strides, paddings, permutations.
using Attr = std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>>;

// How a tensor is quantized. Used by the quantization passes; carried through copies and
// checkpoints by everything else.
struct QuantSpec {
  int bits = 8;              // 2..8, or 16/32 for accumulators and biases
  bool is_signed = true;     // int vs uint
  bool symmetric = true;     // zero point fixed at 0 (signed) or mid-range
  bool narrow_range = false; // signed range [-(2^(b-1)-1), 2^(b-1)-1]
  // The grid of bits - 1 bits, stored in `bits` (PyTorch's reduce_range): int8 weights in
  // [-64, 63], so int8 kernels that sum pairs of uint8 x int8 products in int16 cannot saturate.
  bool reduce_range = false;
  int64_t axis = -1;         // -1: per tensor; otherwise the per-channel axis
  std::string rounding = "half_even";  // half_even | half_up
  bool power_of_two = false;           // scales restricted to powers of two
  at::Tensor scale;          // float32: scalar or one per channel
  at::Tensor zero_point;     // int64: scalar or one per channel
};

struct Param {
  at::Tensor value;                  // float32 (or int for quantized storage)
  std::optional<at::Tensor> mask;    // same shape as value, float 0/1
  std::optional<QuantSpec> qspec;
  bool trainable = true;             // false for BatchNorm running statistics
};

struct Node {
  std::string name;
  std::string op;                     // an op registered in ir/ops.h, e.g. "Conv", "Linear"
  std::vector<std::string> inputs;    // value names
  std::vector<std::string> outputs;   // value names
  std::map<std::string, Attr> attrs;
  std::map<std::string, Param> params;  // e.g. "weight", "bias", "running_mean"
  std::optional<QuantSpec> out_qspec;   // activation quantization of output 0

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t attr_int(const std::string& key) const;
  int64_t attr_int(const std::string& key, int64_t fallback) const;
  double attr_float(const std::string& key, double fallback) const;
  std::string attr_str(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key) const;
  std::vector<int64_t> attr_ints(const std::string& key, std::vector<int64_t> fallback) const;
  std::vector<double> attr_floats(const std::string& key) const;

  bool has_param(const std::string& key) const { return params.count(key) != 0; }
  Param& param(const std::string& key);
  const Param& param(const std::string& key) const;
};

struct ValueInfo {
  std::string name;
  Shape shape;                         // with kDynamic for the batch dimension
  at::ScalarType dtype = at::kFloat;
};

class Graph {
 public:
  std::string name = "model";
  std::vector<ValueInfo> inputs;
  std::vector<std::string> outputs;
  std::vector<Node> nodes;             // topological order
  std::map<std::string, std::string> metadata;  // free-form: zoo name, source file, classes...

  // Inferred by infer_shapes(); keyed by value name; includes graph inputs.
  std::map<std::string, Shape> shapes;

  // Deep copy: parameter tensors, masks and quantization tensors are cloned.
  Graph clone() const;

  Node* find_node(const std::string& name);
  const Node* find_node(const std::string& name) const;
  // The node producing a value, or nullptr for graph inputs / unknown values.
  const Node* producer(const std::string& value) const;
  // Indices of nodes that read a value.
  std::vector<size_t> consumers(const std::string& value) const;
  const Shape& shape_of(const std::string& value) const;

  // A value or node name not yet used in the graph, starting from `base`.
  std::string unique_name(const std::string& base) const;

  int64_t num_params() const;          // all parameter elements (trainable or not)
  int64_t num_nonzero_params() const;  // after applying masks
};

// Infers the shape of every value and stores them in graph.shapes. Throws GraphError naming the
// node when an op's inputs have incompatible shapes.
void infer_shapes(Graph& graph);

// Checks the structural invariants: unique node and value names, every input defined before
// use, ops known, required attributes and parameters present, masks matching their parameter,
// graph outputs produced. Then infers shapes. Throws GraphError with the node named.
void verify(Graph& graph);

// Reorders nodes topologically; throws GraphError naming a node on a cycle.
void topo_sort(Graph& graph);

// Removes nodes whose outputs no graph output depends on.
void remove_dead_nodes(Graph& graph);

// Replaces every use of value `from` by `to` (node inputs and graph outputs).
void replace_uses(Graph& graph, const std::string& from, const std::string& to);

}  // namespace squeeze::ir
