// Reconstruction after channel pruning (He et al. 2017, "Channel Pruning for Accelerating Very
// Deep Neural Networks"; Luo et al. 2017, ThiNet): once a group's channels are gone, every layer
// that consumed them is re-fitted by least squares so that, on a few calibration batches, its
// output from the pruned network's activations matches the unpruned layer's output from the
// unpruned network's activations.
//
// A consumer is a Linear, or a 2-D Conv with group 1, whose weight is plain float (no mask, no
// quantization spec). Its output at one position is a matrix product: rows of its input (the
// im2col patch of a Conv, the feature vector of a Linear) times its weight. The fit samples
// `positions` output positions per sample (Conv: spatial positions; Linear on [N, T, F]: tokens),
// so memory is bounded by batches x batch size x positions rows, and accumulates the normal
// equations in float64. It is regularised towards the layer's current weights,
//
//   min ||X' W'^T + b' - T||^2 / P + lambda ||(W', b') - (W, b)||^2,
//   lambda = regularization * mean diagonal of X'^T X' / P,
//
// so a layer that already reproduces its target (nothing it reads was removed, or what was
// removed was zero) keeps exactly its weights. The bias is fitted when the layer has one, or
// folded into the running mean of the BatchNorm that alone reads its output; otherwise only the
// weights are.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/registry.h"
#include "squeeze/ir/graph.h"

namespace squeeze::compress {

struct ReconstructOptions {
  // Node name globs or op types of the consumers to re-fit; empty: every consumer of a removed
  // channel.
  std::vector<std::string> layers;
  int64_t positions = 10;        // sampled output positions per sample, >= 1
  double regularization = 1e-3;  // lambda relative to the mean diagonal of the Gram matrix, > 0
  int64_t batches = 4;           // calibration batches of the training split
  int64_t batch_size = 64;
  uint64_t seed = 0;
};

// Why a node cannot be re-fitted ("" when it can): op, grouped or non-2-D convolution, masked or
// quantized weight.
std::string refit_obstacle(const ir::Node& node);

// The matrix a consumer multiplies its input rows with: [out, F] (Conv weights flattened in
// im2col order, input channel c owning columns c*kh*kw .. (c+1)*kh*kw - 1).
at::Tensor weight_matrix(const ir::Node& node);
// Input columns of the weight matrix that belong to input index i (a Conv's input channel, a
// Linear's input feature): kernel positions per channel.
int64_t columns_per_input(const ir::Node& node);

// Sampled output positions for node's input x: for each sample, `per_sample` of its L output
// positions (all of them when L <= per_sample), as flat indices into [N * L], in order.
at::Tensor sample_positions(const ir::Node& node, const at::Tensor& x, int64_t per_sample,
                            uint64_t seed);
// The input rows ([positions, F], float32) the node multiplies its weight matrix with at those
// positions. Conv rows are im2col patches (padding included), computed a few samples at a time.
at::Tensor input_rows(const ir::Node& node, const at::Tensor& x, const at::Tensor& positions);

// Least-squares re-fit of one layer, accumulated over batches (see the file comment).
class LayerFit {
 public:
  // features F and outputs O of the layer being fitted; bias: fit a bias column too.
  LayerFit(int64_t features, int64_t outputs, bool bias);
  // rows [P, F] of the pruned layer's input, target [P, O] of the unpruned layer's output.
  void add(const at::Tensor& rows, const at::Tensor& target);
  // The fitted weight [O, F] and bias [O] (undefined when fitted without), regularised towards
  // w0 [O, F] and b0 [O] (b0 may be undefined: zero). Throws InternalError before any add().
  std::pair<at::Tensor, at::Tensor> solve(const at::Tensor& w0, const at::Tensor& b0,
                                          double regularization) const;
  // Mean squared error per output value of (w, b) on the rows added, computed from the
  // accumulated moments (exact up to float64 rounding).
  double error(const at::Tensor& w, const at::Tensor& b) const;
  // Mean squared target value (for relative errors).
  double target_power() const;
  int64_t rows() const { return rows_; }

 private:
  int64_t features_, outputs_;
  bool bias_;
  at::Tensor gram_, cross_;  // float64: [F(+1), F(+1)], [F(+1), O]
  double target_sq_ = 0.0;
  int64_t rows_ = 0;
};

struct ReconstructSummary {
  int64_t layers = 0;                 // consumers re-fitted
  std::vector<std::string> skipped;   // "name (reason)"
  int64_t images = 0, positions = 0;  // calibration images, output positions sampled per image
  // Mean over the re-fitted layers of the relative output error on the sampled rows, with the
  // pruned weights and with the re-fitted ones.
  double error_before = 0.0, error_after = 0.0;
  std::string describe() const;  // one clause for the pass summary
};

// Re-fits, in topological order, every consumer of the channels `removed` from `original`
// (deps is original's dependency graph, pruned = deps.prune(original, removed)), so pruned's
// layers reproduce original's outputs on calibration batches. Needs ctx.data (UserError
// otherwise). Layers later in the graph are fitted on the activations of the already re-fitted
// earlier ones.
ReconstructSummary reconstruct(const ir::Graph& original, ir::Graph& pruned,
                               const DependencyGraph& deps,
                               const std::map<int64_t, std::vector<int64_t>>& removed,
                               const ReconstructOptions& options, const PassContext& ctx);

// The indices along `axis` of node.param that survive `removed` (all of them when the axis
// belongs to no group), for a parameter of size `size` along that axis.
std::vector<int64_t> kept_indices(const DependencyGraph& deps,
                                  const std::map<int64_t, std::vector<int64_t>>& removed,
                                  const std::string& node, const std::string& param, int64_t axis,
                                  int64_t size);

}  // namespace squeeze::compress
