// Runs an ir::Graph with libtorch operations, in eval or train mode, with autograd.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"

namespace squeeze::exec {

enum class Mode { kEval, kTrain };

// Which generation of the executor's kernels runs: part of every cached latency measurement's key
// (compress/prune/latency_model.h), raised whenever a change makes some op faster or slower.
// 2: convolutions on prepacked oneDNN primitives with fused activations.
inline constexpr int kKernelGeneration = 2;

struct PackedConv;  // exec/packed_conv.cpp

struct KernelContext {
  bool training = false;
  bool channels_last = false;  // eval: 2-D convolutions and max pooling output channels-last
  // eval: the node's output feeds only a Relu; an int8 kernel may apply it (its quantized output
  // is then already rectified, and the executor skips the Relu).
  bool fuse_relu = false;
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
struct ExecutorOptions {
  // Eval-mode rewrites that change no result beyond float rounding: channels-last activations,
  // BatchNorm folded into the preceding Conv/Linear, in-place Relu and Add on dying values.
  // Off: every node runs its own kernel on NCHW tensors (the reference the tests compare with).
  bool optimize_inference = true;
};

class Executor {
 public:
  explicit Executor(const ir::Graph& graph, ExecutorOptions options = {});

  // Inputs in graph.inputs order; outputs in graph.outputs order.
  std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs, Mode mode = Mode::kEval) const;
  // Single-input, first-output convenience.
  at::Tensor forward(const at::Tensor& x, Mode mode = Mode::kEval) const;

  // While set, every run adds each node's wall time in microseconds to (*per_node_us)[i], i being
  // the node's index in graph.nodes (the vector is sized on first use). nullptr stops timing.
  void time_nodes(std::vector<double>* per_node_us) { node_us_ = per_node_us; }

  // The convolution implementations eval runs have used, with how many Conv nodes each: oneDNN's
  // name for a prepacked primitive ("brgconv:avx512_core", "jit:avx2", "jit_dw:avx2", ...) or
  // "at::convolution" where the plain kernel ran. Only Convs that ran in eval mode are counted.
  std::map<std::string, int64_t> conv_implementations() const;

 private:
  struct Step {
    const ir::Node* node;
    const Kernel* kernel;
    std::vector<int> in_slots, out_slots;
    std::vector<int> release;  // slots whose last use is this step (eval mode frees them)
    bool any_layout = false;   // the kernel takes channels-last inputs (see layout_agnostic)
    int fold_into = -1;        // eval: this BatchNorm is folded into step fold_into (its producer)
    int folds = -1;            // eval: this Conv/Linear also applies BatchNorm step `folds`
    bool in_place = false;     // eval: may overwrite a dying input (see run_in_place)
    int relu = -1;             // eval: the Relu step that alone reads this step's output
    // eval: a float 2-D Conv runs a oneDNN primitive with its weight packed once (see packed_conv)
    // and applies the activation step fused_act (the one reader of its output, or of its folded
    // BatchNorm's: Relu, Relu6, Clip, LeakyRelu, Sigmoid, Silu, HardSwish, Tanh) as a post-op
    bool packable = false;
    int fused_act = -1;
  };
  std::vector<at::Tensor> run_in_place(const Step& step, std::vector<at::Tensor>& slots,
                                       std::vector<at::Tensor>& args) const;
  // A Conv/Linear with the following BatchNorm folded in, for eval mode: rebuilt whenever one of
  // the source tensors is replaced or modified in place (tracked by version counters).
  struct Folded {
    ir::Node node;
    std::vector<std::pair<const void*, uint32_t>> sources;
  };
  const ir::Node& folded_node(size_t step) const;
  // Eval: the Conv of step k on x through a oneDNN primitive with its weight packed once per
  // weight version, input shape and thread count, the activation node act (if any) fused;
  // undefined when this Conv or input does not qualify (quantized, not 2-D float, autograd wanted)
  // or oneDNN cannot build it, and the caller runs the plain kernel (and the activation).
  struct Packed {
    std::vector<std::pair<const void*, uint32_t>> sources;
    std::vector<int64_t> input_sizes;
    int threads = 0;
    std::shared_ptr<PackedConv> conv;  // nullptr: oneDNN declined; at::convolution runs
  };
  at::Tensor packed_conv(size_t k, const ir::Node& node, at::Tensor x, const ir::Node* act) const;
  const ir::Graph& graph_;
  ExecutorOptions options_;
  std::vector<Step> steps_;
  std::vector<int> input_slots_, output_slots_;
  int num_slots_ = 0;
  std::vector<double>* node_us_ = nullptr;
  mutable std::map<size_t, Folded> folded_;
  mutable std::map<size_t, std::vector<Packed>> packed_;
  mutable std::vector<const std::string*> conv_impl_;  // per step: what the last eval run used
};

// In eval mode 4-D activations flow in channels-last layout from the first 2-D convolution on:
// libtorch's oneDNN convolution and max pooling run 1.5-3.5x faster on it than on NCHW (most at
// the odd channel counts structured pruning leaves), and elementwise ops keep it. Ops for which
// this returns false get contiguous (NCHW) inputs; graph outputs are always contiguous.
bool layout_agnostic(const std::string& op);

// In eval mode a BatchNorm whose input comes only from a float Conv or Linear is folded into
// that layer's weights and bias (recomputed when any of them changes), saving a full pass over
// the activation; results agree with the unfolded graph to float rounding.

// Trainable parameter tensors of the graph, with requires_grad enabled.
std::vector<at::Tensor> trainable_parameters(ir::Graph& graph);
// Sets value *= mask in place for every masked parameter (without recording gradients).
void apply_masks(ir::Graph& graph);
// Disables requires_grad on every parameter (after training).
void freeze(ir::Graph& graph);

}  // namespace squeeze::exec
