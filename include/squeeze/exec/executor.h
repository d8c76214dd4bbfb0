// Runs an ir::Graph with libtorch operations, in eval or train mode, with autograd.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::exec {

enum class Mode { kEval, kTrain };

struct KernelContext {
  bool training = false;
};

// A kernel computes a node's outputs from its input tensors; parameters come from the node
// (masked in train mode, see Executor).
using Kernel = std::function<std::vector<at::Tensor>(const ir::Node&, const std::vector<at::Tensor>&,
                                                     const KernelContext&)>;

// The kernel for an op, or nullptr.
const Kernel* find_kernel(const std::string& op);

// Effective parameter tensor: value * mask in train mode (so gradients of pruned weights are
// zero), the value itself in eval mode (passes keep pruned values at zero; ir::verify checks).
at::Tensor param_tensor(const ir::Node& node, const std::string& key, const KernelContext& ctx);
// The same for optional parameters: an undefined tensor when absent.
at::Tensor optional_param(const ir::Node& node, const std::string& key, const KernelContext& ctx);

// Binds a graph once (value slots, kernels, last uses) and runs it many times. The graph must
// outlive the executor and keep its structure; parameter values may change between runs.
class Executor {
 public:
  explicit Executor(const ir::Graph& graph);

  // Inputs in graph.inputs order; outputs in graph.outputs order.
  std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs, Mode mode = Mode::kEval) const;
  // Single-input, first-output convenience.
  at::Tensor forward(const at::Tensor& x, Mode mode = Mode::kEval) const;

 private:
  struct Step {
    const ir::Node* node;
    const Kernel* kernel;
    std::vector<int> in_slots, out_slots;
    std::vector<int> release;  // slots whose last use is this step (eval mode frees them)
  };
  const ir::Graph& graph_;
  std::vector<Step> steps_;
  std::vector<int> input_slots_, output_slots_;
  int num_slots_ = 0;
};

// Trainable parameter tensors of the graph, with requires_grad enabled.
std::vector<at::Tensor> trainable_parameters(ir::Graph& graph);
// Sets value *= mask in place for every masked parameter (without recording gradients).
void apply_masks(ir::Graph& graph);
// Disables requires_grad on every parameter (after training).
void freeze(ir::Graph& graph);

}  // namespace squeeze::exec
