// Unstructured magnitude pruning: zeroes the weights of smallest |w| (L1) to a target sparsity,
// globally or per layer, one-shot or gradually over fine-tuning (Zhu & Gupta's polynomial
// schedule). Pruned weights are recorded as masks so they stay zero while fine-tuning.
#pragma once

#include <string>
#include <vector>

#include "squeeze/compress/registry.h"

namespace squeeze {
class Params;
}

namespace squeeze::compress {

struct MagnitudePruneOptions {
  double ratio = 0.5;                // target fraction of prunable weights set to zero, [0, 1)
  std::string criterion = "l1";      // l1 (magnitude) | random (a control)
  std::string scope = "global";      // global: one threshold for all layers | local: per layer
  std::string schedule = "oneshot";  // oneshot | polynomial (needs fine-tuning)
  double initial_ratio = 0.0;        // polynomial: sparsity at the first update
  double end_fraction = 0.75;        // polynomial: fraction of fine-tuning steps to reach ratio
  int64_t update_every = 50;         // polynomial: steps between mask updates
  double exponent = 3.0;             // polynomial: s_t = s_f + (s_i - s_f)(1 - t/T)^exponent
  // Weights of these ops are prunable (parameter "weight").
  std::vector<std::string> ops = {"Conv", "ConvTranspose", "Linear"};
  // Node name patterns (glob) or op types excluded from pruning.
  std::vector<std::string> exclude;
  uint64_t seed = 0;                 // for criterion random

  void validate() const;                               // ConfigError naming the field
  static MagnitudePruneOptions from_params(Params& p);  // reads `kind` too (must be unstructured)
};

class MagnitudePrune : public Pass {
 public:
  explicit MagnitudePrune(MagnitudePruneOptions options);
  std::string name() const override { return "prune"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;
  train::StepHook finetune_hook() override;

  // Sets masks so that `ratio` of the prunable weights are zero (existing zeros count). Returns
  // the number of prunable weights. Exposed for tests and the gradual schedule.
  int64_t prune_to(ir::Graph& graph, double ratio) const;
  // The names of the nodes whose weights would be pruned.
  std::vector<std::string> prunable_nodes(const ir::Graph& graph) const;
  // Sparsity target of the polynomial schedule at a fine-tuning step.
  double scheduled_ratio(int64_t step, int64_t total_steps) const;

 private:
  MagnitudePruneOptions options_;
};

}  // namespace squeeze::compress
