// Structured pruning: removes whole channels (filters), layers or attention heads, so that the
// result is a smaller dense graph (tensors shrink, nothing is masked) that is faster on ordinary
// hardware. Channels are removed consistently from everything that produces or consumes them
// (see dependency_graph.h).
//
// YAML (method: prune):
//   params: {kind: structured, granularity: channel|filter|layer|head, criterion: l1, ratio: 0.5,
//            score_from: producer|consumer|both, reconstruct: true, reconstruct_layers: [...],
//            reconstruct_positions: 10, reconstruct_regularization: 1.0e-3,
//            target: channels|flops|{latency: 0.5}|{flops: 0.5}, latency_batch: 1,
//            latency_cache: DIR|none, latency_iterations: 3, scope: global|local, max_ratio_per_layer: 0.9,
//            iterative: {steps: 3}, round_to: 8, exclude: ["fc*", Linear], batches: 4, seed: 0,
//            layernorm: block|prune}
//
// Filter pruning ranks a layer's output filters by their own weights or activations and removes
// them with everything downstream that read them (score_from: producer; granularity: filter is
// the same thing by the name users give it). Channel pruning ranks the channels by the layers
// that read them (score_from: consumer, importance.h) and removes them with the filters that made
// them. Either may re-fit the consumers afterwards (reconstruct, reconstruct.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/reconstruct.h"
#include "squeeze/compress/registry.h"

namespace squeeze {
class Params;
}

namespace squeeze::compress {

struct StructuredPruneOptions {
  std::string granularity = "channel";  // channel | filter (channel scored by producers) | layer | head
  // channel: l1 | l2 | fpgm | bn_scale | taylor | apoz | mean_activation | random
  // layer:   accuracy (loss of accuracy when the block is an identity; needs data) | l1 | random
  // head:    l1 | l2 | taylor | random
  // "" picks the granularity's default (channel: l1, layer: accuracy, head: l1).
  std::string criterion;
  // channel: where scores come from: producer | consumer | both; "" = producer, except consumer for
  // criterion reconstruction_error (which only scores consumers).
  std::string score_from;
  // channel: re-fit the consumers of removed channels by least squares (needs data).
  bool reconstruct = false;
  ReconstructOptions reconstruction;  // its batches, batch_size and seed come from the pass
  // channel/head: fraction of the prunable channels (target channels) or of the FLOPs (target
  // flops) removed, [0, 1). layer: unused (see layers/threshold).
  double ratio = 0.5;
  std::string target = "channels";      // channels | flops | latency
  // target latency: the fraction of the unpruned model's measured latency (at latency_batch) to
  // reach, (0, 1]. Channels are removed greedily by importance per microsecond saved, each group
  // only down to counts where its measured time steps down (latency_model.h); the pruned model is
  // then measured and, when it is more than 10% off the target, the selection is redone with the
  // prediction corrected by the measurement, up to latency_iterations selections in all.
  double latency = 0.0;
  int64_t latency_batch = 1;
  std::string latency_cache;            // "" = default_latency_cache_dir(); "none" = no caching
  int64_t latency_iterations = 3;
  std::string scope = "global";         // global: one ranking (normalized per group) | local
  double max_ratio_per_layer = 0.9;     // (0, 1]; at least one channel of a group always stays
  int64_t steps = 1;                    // iterative: N steps, fine-tuning between them
  int64_t round_to = 1;                 // kept channels per group are a multiple of this
  std::vector<std::string> exclude;     // node name globs or op types: their channels stay
  int64_t batches = 4;                  // data-driven criteria: training batches looked at
  // block: channels normalised by a LayerNorm stay (exact pruning); prune: they are pruned too
  // (a transformer's residual width; not exact, see DependencyOptions::prune_layernorm).
  std::string layernorm = "block";
  uint64_t seed = 0;
  // layer granularity: remove the `layers` least important blocks, or (threshold >= 0) every
  // block whose accuracy drop is at most `threshold` (a fraction, e.g. 0.005).
  int64_t layers = 1;
  double threshold = -1.0;

  std::string effective_criterion() const;
  std::string effective_score_from() const;
  bool channel_granularity() const { return granularity == "channel" || granularity == "filter"; }
  void validate() const;  // ConfigError naming the field and what is valid
  DependencyOptions dependency_options() const;
  // Reads the params of `method: prune` (kind must be structured).
  static StructuredPruneOptions from_params(Params& p);
};

class StructuredPrune : public Pass {
 public:
  explicit StructuredPrune(StructuredPruneOptions options);
  std::string name() const override { return "prune"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;

  const StructuredPruneOptions& options() const { return options_; }

  // One pruning step on `graph` removing `fraction` of its prunable channels (or of its FLOPs,
  // target flops), then re-fitting the consumers when options().reconstruct. `notes` (if given)
  // receives clauses for the summary (reconstruction, groups scored by their producers).
  // Exposed for tests and benchmarks.
  ir::Graph prune_channels(const ir::Graph& graph, double fraction, const PassContext& ctx,
                           std::vector<std::string>* notes = nullptr) const;

  // target latency: prunes `graph` towards options().latency of its measured latency (see the
  // options). `figures` receives latency_target, latency_batch, predicted_latency_ratio,
  // measured_latency_ratio, flops_ratio, latency_selections, latency_table_seconds and
  // latency_table_reused (0/1); `notes` clauses for the summary.
  ir::Graph prune_for_latency(const ir::Graph& graph, const PassContext& ctx, std::vector<std::string>* notes,
                              std::map<std::string, double>* figures) const;

  // Which units to remove given per-group scores: removes `fraction` of the eligible channels,
  // respecting scope, max_ratio_per_layer, round_to and exclusions.
  std::map<int64_t, std::vector<int64_t>> select(const ir::Graph& graph, const DependencyGraph& deps,
                                                 const std::vector<at::Tensor>& scores, double fraction,
                                                 double max_ratio) const;

 private:
  // Each group's channel importance by the configured criterion (notes: groups ranked by their
  // producers because no scored weight reads them).
  std::vector<at::Tensor> channel_scores(const ir::Graph& graph, const DependencyGraph& deps,
                                         const PassContext& ctx, std::vector<std::string>* notes) const;
  StructuredPruneOptions options_;
};

// The latency-target selection, exposed for tests: per group the channel count to keep, starting
// from the table's full counts and repeatedly shrinking the group whose next efficient count
// (GroupLatency::efficient, not below min_counts[g]) removes the least importance (its lowest
// scores, each group's scores divided by their mean) per microsecond of predicted latency saved,
// until table.predict_ratio <= target or no group can shrink. Groups with eligible[g] false stay.
struct LatencyTable;
std::vector<int64_t> select_counts_for_latency(const LatencyTable& table, const std::vector<at::Tensor>& scores,
                                               const std::vector<bool>& eligible,
                                               const std::vector<int64_t>& min_counts, double target);

// Which units to remove, per group, from per-group scores (float64, higher = keep): `fraction`
// of the eligible units, at most `max_ratio` of a group and never all of it; scope global ranks
// all units (scores normalized by their group's mean), local takes `fraction` of each group;
// round_to > 1 keeps a multiple of round_to per group (removing fewer).
std::vector<std::vector<int64_t>> select_units(const std::vector<at::Tensor>& scores, const std::vector<bool>& eligible,
                                               double fraction, double max_ratio, const std::string& scope,
                                               int64_t round_to);

// The pass for the options' granularity: StructuredPrune (channel), LayerPrune (layer) or
// HeadPrune (head).
std::unique_ptr<Pass> make_structured_pass(const StructuredPruneOptions& options);

}  // namespace squeeze::compress
