// Low-rank factorization: a layer's weight W (m x n) is replaced by its truncated SVD
// U_r S_r V_r^T, written as two layers so that the result is a smaller dense graph:
//   - Linear [out, in]: Linear in -> r (weight sqrt(S_r) V_r^T, no bias), then Linear r -> out
//     (weight U_r sqrt(S_r), the original bias);
//   - Conv (group 1) [out, in, k...]: the SVD of the kernel reshaped to out x (in * k...); a conv
//     with the original kernel, strides, pads and dilations to r channels (no bias), then a 1x1
//     conv r -> out with the original bias;
//   - MatMul with one operand made by a Constant node holding a matrix (what the ONNX importer
//     keeps as MatMul: a constant on the left, or a right-hand constant applied to a vector; a
//     MatMul(x, W) with x of rank 2 or more is imported as a Linear, and factorized as one):
//     y = x B becomes two Linear layers (of B^T's factors, trainable from then on); y = A x
//     becomes MatMul(C2, MatMul(C1, x)) with two new Constants C1 [r, k], C2 [m, r] (trainable
//     when the old one was). The old Constant is removed when nothing else reads it.
// The new nodes are "<name>_lr1" and "<name>_lr2"; the second writes the original output value,
// so the rest of the graph is untouched. The inner width r of a Linear or Conv pair is an ordinary
// channel: structured pruning and quantization apply to it afterwards.
//
// Left alone (and named in the summary with the reason): grouped and depthwise convs, layers
// whose weight carries a quantization spec or a mask (or whose output carries an activation
// spec), excluded layers, MatMuls whose constant is not a matrix or is read by other nodes too,
// and layers where r * (m + n) does not save at least min_saving of m * n.
//
// A rank larger than a layer's maximum, min(m, n):
//   - from a per-layer rule (layers: {fc1: {rank: 300}}): a ConfigError naming the key path,
//     the layer and its maximum rank;
//   - from the global rule (rank: 300): the layer's rank is clamped to its maximum (where the
//     factorization can save nothing, so the layer is left alone with "clamped" in the summary);
//     when that happens to every layer the global rule applies to, a ConfigError naming the key
//     and the largest maximum rank.
// These are found when the pass runs on the graph (the options alone cannot know the layers), so
// in a workflow they stop the run when the stage starts, after the baseline is trained.
//
// YAML (method: lowrank), exactly one of rank / ratio / energy:
//   params: {energy: 0.95,                        # or rank: 32, or ratio: 0.25
//            layers: {"fc1": {rank: 16}, "conv*": {energy: 0.99}},  # per layer, one key each
//            exclude: [classifier, Conv], min_saving: 0.1}
// Per-layer patterns and exclude entries are node-name globs or op types (Linear, Conv,
// MatMul); the most specific match wins (an exact name, then the longest pattern).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "squeeze/compress/registry.h"

namespace squeeze {
class Params;
}

namespace squeeze::compress {

// How the rank of one layer is chosen. Exactly one of the three is set (> 0).
struct RankRule {
  int64_t rank = 0;     // a fixed rank, >= 1 (larger than a layer's min(m, n): see above)
  double ratio = 0.0;   // (0, 1]: r = ceil(ratio * min(m, n))
  double energy = 0.0;  // (0, 1]: smallest r with sum_{i<r} s_i^2 >= energy * sum s_i^2
  std::string key;      // its full config key path ("experiments[0].stages[0].params.energy"), for errors

  void validate() const;  // ConfigError naming `key`
  // The rank for singular values `s` (descending). Throws ConfigError when `rank` exceeds
  // s.size(), naming `key`, the layer and its maximum (the pass clamps the global rule instead).
  int64_t pick(const std::vector<double>& s, const std::string& layer) const;
};

struct LowRankOptions {
  // Global rule. from_params requires one of rank / ratio / energy; this default is for C++ users.
  RankRule rule{0, 0.0, 0.95, "energy"};
  std::map<std::string, RankRule> layers;    // node-name glob or op type -> rule
  std::vector<std::string> exclude;          // node-name globs or op types left alone
  double min_saving = 0.1;                   // [0, 1): skip when r(m+n) > (1 - min_saving) m n

  void validate() const;                          // ConfigError naming the field
  static LowRankOptions from_params(Params& p);   // rejects two of rank/ratio/energy, unknown keys
};

// One layer's outcome, for the summary and tests.
struct LowRankLayer {
  std::string node;
  std::string op;
  int64_t m = 0, n = 0;       // weight as a matrix: m = out, n = in * k... (0 if not a matrix)
  int64_t rank = 0;           // chosen rank (0 when no rank was chosen)
  bool clamped = false;       // the global rank was larger than min(m, n) and became min(m, n)
  int64_t params_before = 0;  // weight elements (biases unchanged)
  int64_t params_after = 0;
  bool factorized = false;
  std::string reason;         // why it was skipped
};

class LowRank : public Pass {
 public:
  explicit LowRank(LowRankOptions options);
  std::string name() const override { return "lowrank"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;

  // The decision for every Linear, Conv and MatMul-with-a-constant node, in graph order
  // (nothing is rewritten). Throws ConfigError for a rank larger than allowed (see above).
  std::vector<LowRankLayer> plan(const ir::Graph& graph) const;

  // Replaces node `node` (Linear, Conv with group 1, or MatMul with a constant matrix operand;
  // float weight) by its rank-`rank` factorization in place and verifies the graph. Exposed for
  // tests (full-rank exactness).
  static void factorize(ir::Graph& graph, const std::string& node, int64_t rank);

  // Descending singular values of node `node`'s weight viewed as out x (in * k...).
  static std::vector<double> singular_values(const ir::Graph& graph, const std::string& node);

 private:
  const RankRule& rule_for(const ir::Node& node) const;
  LowRankOptions options_;
};

}  // namespace squeeze::compress
