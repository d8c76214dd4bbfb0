#include "squeeze/compress/prune/structured_prune.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/head_prune.h"
#include "squeeze/compress/prune/importance.h"
#include "squeeze/compress/prune/latency_model.h"
#include "squeeze/compress/prune/layer_prune.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/ir/ops.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

namespace {

const std::vector<std::string> kGranularities = {"channel", "filter", "layer", "head"};
const std::vector<std::string> kScoreFrom = {"producer", "consumer", "both"};
const std::vector<std::string> kLayerCriteria = {"accuracy", "l1", "random"};
const std::vector<std::string> kHeadCriteria = {"l1", "l2", "taylor", "random"};

std::string list(const std::vector<std::string>& v) { return join(v, ", "); }

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool excluded(const ir::Graph& g, const ChannelGroup& grp, const std::vector<std::string>& patterns) {
  if (patterns.empty()) return false;
  for (const auto& name : grp.producers()) {
    const ir::Node* n = g.find_node(name);
    for (const auto& pat : patterns)
      if (pat == name || glob_match(pat, name) || (n && pat == n->op)) return true;
  }
  return false;
}

double round1(double x) { return std::round(x * 10.0) / 10.0; }

}  // namespace

std::string StructuredPruneOptions::effective_score_from() const {
  if (!score_from.empty()) return score_from;
  return effective_criterion() == "reconstruction_error" ? "consumer" : "producer";
}

std::string StructuredPruneOptions::effective_criterion() const {
  if (!criterion.empty()) return criterion;
  return granularity == "layer" ? "accuracy" : "l1";
}

void StructuredPruneOptions::validate() const {
  if (!contains(kGranularities, granularity))
    throw ConfigError(msg("granularity: '", granularity, "' is not valid (valid: ", list(kGranularities), ")"));
  std::string c = effective_criterion();
  if (channel_granularity() && !contains(importance_criteria(), c))
    throw ConfigError(msg("criterion: '", c, "' is not valid for channel pruning (valid: ",
                          list(importance_criteria()), ")"));
  if (granularity == "layer" && !contains(kLayerCriteria, c))
    throw ConfigError(msg("criterion: '", c, "' is not valid for layer pruning (valid: ", list(kLayerCriteria),
                          ")"));
  if (granularity == "head" && !contains(kHeadCriteria, c))
    throw ConfigError(msg("criterion: '", c, "' is not valid for attention-head pruning (valid: ",
                          list(kHeadCriteria), ")"));
  if (!score_from.empty() && !contains(kScoreFrom, score_from))
    throw ConfigError(msg("score_from: '", score_from, "' is not valid (valid: ", list(kScoreFrom), ")"));
  if (!score_from.empty() && !channel_granularity())
    throw ConfigError(msg("score_from: only used with granularity: channel (got ", granularity, ")"));
  std::string from = effective_score_from();
  if (granularity == "filter" && from != "producer")
    throw ConfigError(msg("score_from: ", from, " does not go with granularity: filter, which ranks the producing "
                          "filters; for channels ranked by the layers that read them write granularity: channel, "
                          "score_from: ", from));
  if (c == "reconstruction_error" && from == "producer")
    throw ConfigError("criterion: reconstruction_error measures the consumers' outputs, so it needs score_from: "
                      "consumer (the default for it); producer-side criteria: " +
                      list(std::vector<std::string>(importance_criteria().begin(), importance_criteria().end() - 1)));
  if (channel_granularity() && from == "consumer" && !contains(consumer_criteria(), c))
    throw ConfigError(msg("criterion: '", c, "' has no consumer-side form (score_from: consumer takes ",
                          list(consumer_criteria()), ")"));
  if (channel_granularity() && from == "both" && !contains(both_criteria(), c))
    throw ConfigError(msg("criterion: '", c, "' cannot be combined from producers and consumers (score_from: both "
                          "takes ", list(both_criteria()), ")"));
  if (reconstruct && !channel_granularity())
    throw ConfigError(msg("reconstruct: only used with granularity: channel or filter (got ", granularity, ")"));
  if (reconstruction.positions < 1)
    throw ConfigError(msg("reconstruct_positions: ", reconstruction.positions, " must be >= 1"));
  if (!(reconstruction.regularization > 0.0))
    throw ConfigError(msg("reconstruct_regularization: ", reconstruction.regularization, " must be > 0"));
  if (!(ratio >= 0.0 && ratio < 1.0)) throw ConfigError(msg("ratio: ", ratio, " is out of range (expected [0, 1))"));
  if (target != "channels" && target != "flops" && target != "latency")
    throw ConfigError(msg("target: '", target, "' is not valid (valid: channels, flops, {latency: F}, {flops: F})"));
  if (target == "flops" && !channel_granularity())
    throw ConfigError(msg("target: flops is only available with granularity: channel (got ", granularity, ")"));
  if (target == "latency") {
    if (!(latency > 0.0 && latency <= 1.0))
      throw ConfigError(msg("target.latency: ", latency, " is out of range (expected (0, 1]: the fraction of the "
                            "unpruned model's measured latency to reach, e.g. 0.5 for twice as fast)"));
    if (!channel_granularity())
      throw ConfigError(msg("target: {latency: F} is only available with granularity: channel or filter (got ",
                            granularity, ")"));
    if (steps > 1)
      throw ConfigError(msg("iterative.steps: ", steps, " is not available with target: {latency: F} (one-shot; "
                            "remove iterative)"));
    if (latency_batch < 1) throw ConfigError(msg("latency_batch: ", latency_batch, " must be >= 1"));
    if (latency_iterations < 1)
      throw ConfigError(msg("latency_iterations: ", latency_iterations, " must be >= 1"));
  }
  if (scope != "global" && scope != "local")
    throw ConfigError(msg("scope: '", scope, "' is not valid (valid: global, local)"));
  if (!(max_ratio_per_layer > 0.0 && max_ratio_per_layer <= 1.0))
    throw ConfigError(msg("max_ratio_per_layer: ", max_ratio_per_layer, " is out of range (expected (0, 1])"));
  if (steps < 1) throw ConfigError(msg("iterative.steps: ", steps, " must be >= 1"));
  if (steps > 1 && granularity == "layer")
    throw ConfigError("iterative: layer pruning is one-shot (remove iterative, or use granularity: channel)");
  if (round_to < 1) throw ConfigError(msg("round_to: ", round_to, " must be >= 1"));
  if (batches < 1) throw ConfigError(msg("batches: ", batches, " must be >= 1"));
  if (layers < 0) throw ConfigError(msg("layers: ", layers, " must be >= 0"));
  if (granularity != "layer" && threshold >= 0.0)
    throw ConfigError(msg("threshold: only used with granularity: layer (got ", granularity, ")"));
  if (round_to > 1 && granularity == "layer")
    throw ConfigError("round_to: only used with granularity channel or head");
  if (layernorm != "block" && layernorm != "prune")
    throw ConfigError(msg("layernorm: '", layernorm, "' is not valid (valid: block, prune)"));
  if (layernorm == "prune" && !channel_granularity())
    throw ConfigError(msg("layernorm: prune is only used with granularity: channel (got ", granularity, ")"));
}

DependencyOptions StructuredPruneOptions::dependency_options() const {
  DependencyOptions d;
  d.prune_layernorm = layernorm == "prune";
  return d;
}

StructuredPruneOptions StructuredPruneOptions::from_params(Params& p) {
  StructuredPruneOptions o;
  std::string kind = p.get_choice("kind", "structured", {"unstructured", "structured"});
  SQZ_ASSERT(kind == "structured", "StructuredPruneOptions for kind ", kind);
  o.granularity = p.get_choice("granularity", o.granularity, kGranularities);
  o.criterion = p.get_string("criterion", "");
  // validate() checks it against the granularity's list: say which.
  p.document("criterion", msg("by granularity: channel or filter: one of ", list(importance_criteria()),
                              " (default l1; reconstruction_error scores consumers only); layer: ",
                              list(kLayerCriteria), " (default accuracy); head: ", list(kHeadCriteria),
                              " (default l1)"));
  const bool from_given = p.has("score_from");
  std::string from = p.get_choice("score_from", "producer", kScoreFrom);
  if (from_given) o.score_from = from;
  p.document("score_from", "",
             "channel: producer ranks each layer's filters by their own weights or activations (filter pruning); "
             "consumer ranks channels by the layers that read them (channel pruning: l1, l2, reconstruction_error, "
             "whose default it is); both adds the two, each normalised per group (l1, l2)");
  o.reconstruct = p.get_bool("reconstruct", false);
  p.document("reconstruct", "", "channel: re-fit the layers that read removed channels by least squares on "
                                "calibration batches (batches), so they reproduce the unpruned outputs; needs data");
  const std::vector<std::string> rec_keys = {"reconstruct_layers", "reconstruct_positions",
                                             "reconstruct_regularization"};
  for (const auto& k : rec_keys)
    if (!o.reconstruct && p.has(k))
      throw ConfigError(msg(p.key_path(k), ": only used with reconstruct: true"));
  o.reconstruction.layers = p.get_strings("reconstruct_layers");
  p.document("reconstruct_layers", "", "node name globs or op types of the layers to re-fit (default: all)");
  o.reconstruction.positions = p.get_int("reconstruct_positions", o.reconstruction.positions, 1, 1 << 20);
  p.document("reconstruct_positions", "", "output positions sampled per image (tokens per sample)");
  o.reconstruction.regularization =
      p.get_double("reconstruct_regularization", o.reconstruction.regularization, 1e-12, 1e6);
  p.document("reconstruct_regularization", "",
             "ridge towards the current weights, relative to the mean input power");
  const Value* target = p.has("target") ? p.raw("target") : nullptr;
  if (target && target->kind() == Value::Kind::kMap) {
    auto t = p.get_map("target");
    const bool has_latency = t->has("latency"), has_flops = t->has("flops");
    if (has_latency && has_flops)
      throw ConfigError(msg(p.key_path("target"), ": give one of latency or flops, not both (",
                            target->describe(), "); e.g. {latency: 0.5} or {flops: 0.5}"));
    if (!has_latency && !has_flops)
      throw ConfigError(msg(p.key_path("target"), ": ", target->describe(), " names no target (valid keys: latency, "
                            "flops; e.g. {latency: 0.5}: half the measured latency)"));
    if (p.has("ratio"))
      throw ConfigError(msg(p.key_path("ratio"), ": not used with target: ", target->describe(),
                            " (the target says how much to remove; drop ratio)"));
    if (has_latency) {
      o.target = "latency";
      o.latency = t->get_double("latency", 0.5);
    } else {
      o.target = "flops";
      double f = t->get_double("flops", 0.5);
      if (!(f > 0.0 && f <= 1.0))
        throw ConfigError(msg(t->key_path("flops"), ": ", f, " is out of range (expected (0, 1]: the fraction of "
                              "the FLOPs to keep)"));
      o.ratio = std::min(1.0 - f, 0.999999);
    }
    t->finish();
  } else {
    o.ratio = p.get_double("ratio", o.ratio, 0.0, 0.999999);
    o.target = p.get_choice("target", o.target, {"channels", "flops"});
  }
  p.document("target", "channels, flops, or a map {latency: F} or {flops: F} with F in (0, 1]",
             "what ratio counts (channels or FLOPs removed); {latency: F}: prune until the measured latency at "
             "latency_batch is F of the unpruned model's (no ratio then); {flops: F}: keep F of the FLOPs");
  const bool latency_target = o.target == "latency";
  for (const char* k : {"latency_batch", "latency_cache", "latency_iterations"})
    if (!latency_target && p.has(k))
      throw ConfigError(msg(p.key_path(k), ": only used with target: {latency: F}"));
  o.latency_batch = p.get_int("latency_batch", o.latency_batch, 1, 1 << 16);
  p.document("latency_batch", "", "target latency: the batch size the latency is measured and predicted at");
  o.latency_cache = p.get_string("latency_cache", "");
  p.document("latency_cache", "a folder, or none",
             "target latency: where the per-group latency tables are cached (default $SQUEEZE_LATENCY_CACHE or "
             "~/.cache/squeeze/latency; none: measure every time)");
  o.latency_iterations = p.get_int("latency_iterations", o.latency_iterations, 1, 20);
  p.document("latency_iterations", "",
             "target latency: selections at most (each measured; redone when >10% off the target)");
  o.scope = p.get_choice("scope", o.scope, {"global", "local"});
  o.max_ratio_per_layer = p.get_double("max_ratio_per_layer", o.max_ratio_per_layer, 1e-9, 1.0);
  if (auto it = p.get_map("iterative")) {
    o.steps = it->get_int("steps", 1, 1, 1000);
    it->finish();
  }
  o.round_to = p.get_int("round_to", o.round_to, 1, 1 << 20);
  o.exclude = p.get_strings("exclude");
  o.batches = p.get_int("batches", o.batches, 1, 100000);
  p.document("batches", "", "training batches looked at by data-driven criteria and by reconstruct");
  o.seed = static_cast<uint64_t>(p.get_int("seed", 0, 0));
  o.layers = p.get_int("layers", o.layers, 0, 100000);
  o.threshold = p.get_double("threshold", o.threshold, -1.0, 1.0);
  o.layernorm = p.get_choice("layernorm", o.layernorm, {"block", "prune"});
  p.finish();
  try {
    o.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(msg(p.path(), p.path().empty() ? "" : ".", e.what()));
  }
  return o;
}

StructuredPrune::StructuredPrune(StructuredPruneOptions options) : options_(std::move(options)) {
  options_.validate();
}

std::vector<std::vector<int64_t>> select_units(const std::vector<at::Tensor>& scores, const std::vector<bool>& eligible,
                                               double fraction, double max_ratio, const std::string& scope,
                                               int64_t round_to) {
  size_t ng = scores.size();
  std::vector<int64_t> take(ng, 0), cap(ng, 0);
  int64_t total = 0;
  for (size_t gi = 0; gi < ng; ++gi) {
    if (!eligible[gi]) continue;
    int64_t size = scores[gi].size(0);
    cap[gi] = std::min<int64_t>(size - 1, static_cast<int64_t>(std::floor(max_ratio * double(size) + 1e-9)));
    total += size;
  }
  if (scope == "local") {
    for (size_t gi = 0; gi < ng; ++gi)
      take[gi] = std::min<int64_t>(cap[gi], std::llround(fraction * double(scores[gi].size(0))));
  } else {
    // One ranking: scores normalized by their group's mean so groups of different scales compare.
    struct Entry {
      double score;
      size_t group;
    };
    std::vector<Entry> all;
    for (size_t gi = 0; gi < ng; ++gi) {
      if (cap[gi] <= 0) continue;
      at::Tensor s = scores[gi] / (scores[gi].abs().mean() + 1e-12);
      auto acc = s.accessor<double, 1>();
      for (int64_t u = 0; u < s.size(0); ++u) all.push_back({acc[u], gi});
    }
    std::stable_sort(all.begin(), all.end(), [](const Entry& a, const Entry& b) { return a.score < b.score; });
    int64_t k = std::llround(fraction * double(total)), done = 0;
    for (const auto& e : all) {
      if (done >= k) break;
      if (take[e.group] >= cap[e.group]) continue;
      ++take[e.group];
      ++done;
    }
  }
  std::vector<std::vector<int64_t>> removed(ng);
  for (size_t gi = 0; gi < ng; ++gi) {
    int64_t size = scores[gi].size(0), n = take[gi];
    if (round_to > 1 && size > round_to && n > 0) {
      int64_t kept = std::min(size, (size - n + round_to - 1) / round_to * round_to);
      n = size - kept;
    }
    if (n <= 0) continue;
    at::Tensor order = std::get<1>(scores[gi].sort(/*stable=*/true, 0, false));
    auto acc = order.accessor<int64_t, 1>();
    for (int64_t i = 0; i < n; ++i) removed[gi].push_back(acc[i]);
    std::sort(removed[gi].begin(), removed[gi].end());
  }
  return removed;
}

std::map<int64_t, std::vector<int64_t>> StructuredPrune::select(const ir::Graph& graph, const DependencyGraph& deps,
                                                                const std::vector<at::Tensor>& scores,
                                                                double fraction, double max_ratio) const {
  std::vector<bool> eligible;
  for (const auto& grp : deps.groups()) eligible.push_back(!excluded(graph, grp, options_.exclude));
  auto units = select_units(scores, eligible, fraction, max_ratio, options_.scope, options_.round_to);
  std::map<int64_t, std::vector<int64_t>> removed;
  for (size_t gi = 0; gi < units.size(); ++gi)
    if (!units[gi].empty()) removed[static_cast<int64_t>(gi)] = units[gi];
  return removed;
}

std::vector<at::Tensor> StructuredPrune::channel_scores(const ir::Graph& graph, const DependencyGraph& deps,
                                                        const PassContext& ctx,
                                                        std::vector<std::string>* notes) const {
  ImportanceOptions io;
  io.criterion = options_.effective_criterion();
  io.score_from = options_.effective_score_from();
  io.positions = options_.reconstruction.positions;
  io.batches = options_.batches;
  io.batch_size = std::min<int64_t>(ctx.batch_size, 128);
  io.seed = options_.seed + ctx.seed;
  int64_t fallback = 0;
  std::vector<at::Tensor> scores = channel_importance(graph, deps, io, ctx, &fallback);
  if (notes && fallback > 0)
    notes->push_back(msg(fallback, " of ", deps.groups().size(),
                         " groups, read by no weight the criterion scores, ranked by their producers"));
  return scores;
}

ir::Graph StructuredPrune::prune_channels(const ir::Graph& graph, double fraction, const PassContext& ctx,
                                          std::vector<std::string>* notes) const {
  DependencyGraph deps(graph, options_.dependency_options());
  if (deps.groups().empty() || fraction <= 0.0) return graph.clone();
  std::vector<at::Tensor> scores = channel_scores(graph, deps, ctx, notes);
  double max_ratio = options_.max_ratio_per_layer;
  std::map<int64_t, std::vector<int64_t>> removed;
  if (options_.target == "channels") {
    removed = select(graph, deps, scores, fraction, max_ratio);
  } else {
    // target flops: the smallest channel fraction whose pruned graph has at most (1 - fraction)
    // of the FLOPs; FLOPs fall monotonically with the channel fraction for a fixed ranking.
    double want = double(ir::graph_flops(graph)) * (1.0 - fraction);
    double lo = 0.0, hi = max_ratio;
    removed = select(graph, deps, scores, hi, max_ratio);
    if (double(ir::graph_flops(deps.prune(graph, removed))) <= want) {  // else: as far as the limits allow
      for (int it = 0; it < 14; ++it) {
        double mid = 0.5 * (lo + hi);
        auto r = select(graph, deps, scores, mid, max_ratio);
        if (double(ir::graph_flops(deps.prune(graph, r))) <= want) {
          hi = mid;
          removed = std::move(r);
        } else {
          lo = mid;
        }
      }
    }
  }
  ir::Graph pruned = deps.prune(graph, removed);
  if (options_.reconstruct && !removed.empty()) {
    ReconstructOptions ro = options_.reconstruction;
    ro.batches = options_.batches;
    ro.batch_size = std::min<int64_t>(ctx.batch_size, 128);
    ro.seed = options_.seed + ctx.seed;
    ReconstructSummary rs = reconstruct(graph, pruned, deps, removed, ro, ctx);
    if (notes) notes->push_back(rs.describe());
  }
  return pruned;
}

std::vector<int64_t> select_counts_for_latency(const LatencyTable& table, const std::vector<at::Tensor>& scores,
                                               const std::vector<bool>& eligible,
                                               const std::vector<int64_t>& min_counts, double target) {
  const size_t ng = table.groups.size();
  SQZ_ASSERT(scores.size() == ng && eligible.size() == ng && min_counts.size() == ng, "latency selection sizes");
  std::vector<int64_t> counts = table.full_counts();
  // cost[g][k]: importance of the k lowest-scored units of g (scores over their group's mean).
  std::vector<std::vector<double>> cost(ng);
  for (size_t g = 0; g < ng; ++g) {
    at::Tensor s = scores[g].to(at::kDouble);
    s = std::get<0>((s / (s.abs().mean() + 1e-12)).sort(/*stable=*/true, 0, false));
    auto acc = s.accessor<double, 1>();
    cost[g].assign(1, 0.0);
    for (int64_t u = 0; u < s.size(0); ++u) cost[g].push_back(cost[g].back() + std::max(acc[u], 0.0));
  }
  double now = table.predict_us(counts);
  const double goal = target * table.model_us;
  while (now > goal) {
    double best_value = 0.0, best_after = now;
    int best_group = -1;
    int64_t best_count = 0;
    for (size_t g = 0; g < ng; ++g) {
      const GroupLatency& grp = table.groups[g];
      if (!eligible[g] || static_cast<int64_t>(cost[g].size()) != grp.size + 1) continue;
      // The next efficient counts down; the first that saves time (a later one may, when an
      // interaction with other groups makes the nearest save nothing).
      for (size_t i = grp.counts.size(); i-- > 0;) {
        int64_t c = grp.counts[i];
        if (c >= counts[g] || !grp.efficient[i]) continue;
        if (c < min_counts[g]) break;
        std::vector<int64_t> next = counts;
        next[g] = c;
        double after = table.predict_us(next);
        double gain = now - after;
        if (gain <= 0.0) continue;
        double value = (cost[g][static_cast<size_t>(grp.size - c)] - cost[g][static_cast<size_t>(grp.size - counts[g])] +
                        1e-12) / gain;
        if (best_group < 0 || value < best_value) {
          best_value = value;
          best_group = static_cast<int>(g);
          best_count = c;
          best_after = after;
        }
        break;
      }
    }
    if (best_group < 0) break;  // no group can shrink further: as far as the limits allow
    counts[static_cast<size_t>(best_group)] = best_count;
    now = best_after;
  }
  return counts;
}

ir::Graph StructuredPrune::prune_for_latency(const ir::Graph& graph, const PassContext& ctx,
                                             std::vector<std::string>* notes,
                                             std::map<std::string, double>* figures) const {
  DependencyGraph deps(graph, options_.dependency_options());
  const int64_t batch = options_.latency_batch;
  LatencyTableOptions lo;
  lo.batch = batch;
  lo.cache_dir = options_.latency_cache == "none" ? ""
                 : options_.latency_cache.empty() ? default_latency_cache_dir()
                                                  : options_.latency_cache;
  bool reused = false;
  std::string why, path;
  LatencyTable table = latency_table(graph, deps, lo, &reused, &why, &path);
  if (reused)
    log::info("  latency table: reused ", path, " (", table.key.describe(), ")");
  else
    log::info("  latency table: measured ", table.groups.size(), " groups in ", std::round(table.build_seconds * 10) / 10,
              " s (", table.key.describe(), ")", path.empty() ? "" : ", cached in " + path,
              why.empty() ? "" : "; the cached file was not reused: " + why);

  std::vector<at::Tensor> scores = channel_scores(graph, deps, ctx, notes);
  std::vector<bool> eligible;
  std::vector<int64_t> min_counts;
  for (const auto& grp : deps.groups()) {
    eligible.push_back(!excluded(graph, grp, options_.exclude));
    int64_t cap = std::min<int64_t>(grp.size - 1, static_cast<int64_t>(std::floor(
                                                      options_.max_ratio_per_layer * double(grp.size) + 1e-9)));
    min_counts.push_back(std::max<int64_t>(1, grp.size - cap));
  }

  const double target = options_.latency;
  const double flops0 = double(ir::graph_flops(graph));
  struct Choice {
    std::map<int64_t, std::vector<int64_t>> removed;
    double predicted = 1.0, measured = 1.0;
  };
  Choice best;
  bool have = false;
  double aim = target;  // what the prediction is asked for; corrected by each measurement
  double too_fast = 0.0, too_slow = 0.0;  // aims whose models measured below / above the target
  int64_t selections = 0;
  std::vector<std::string> tried;
  for (int64_t it = 0; it < options_.latency_iterations; ++it) {
    std::vector<int64_t> counts = select_counts_for_latency(table, scores, eligible, min_counts, aim);
    Choice c;
    c.predicted = table.predict_ratio(counts);
    for (size_t g = 0; g < counts.size(); ++g) {
      int64_t n = deps.groups()[g].size - counts[g];
      if (n <= 0) continue;
      at::Tensor order = std::get<1>(scores[g].sort(/*stable=*/true, 0, false));
      auto acc = order.accessor<int64_t, 1>();
      std::vector<int64_t> r;
      for (int64_t i = 0; i < n; ++i) r.push_back(acc[i]);
      std::sort(r.begin(), r.end());
      c.removed[static_cast<int64_t>(g)] = r;
    }
    ++selections;
    if (have && c.removed == best.removed) break;  // the correction changed nothing
    ir::Graph pruned = c.removed.empty() ? graph.clone() : deps.prune(graph, c.removed);
    deploy::LatencyOptions mo;
    mo.budget_s = 1.0;
    mo.extend = 2.0;
    auto stats = deploy::measure_latency({&graph, &pruned}, batch, mo);
    c.measured = stats.at(1).speedup > 0 ? 1.0 / stats.at(1).speedup : 1.0;
    tried.push_back(msg("predicted ", std::round(c.predicted * 1000) / 1000, ", measured ",
                        std::round(c.measured * 1000) / 1000));
    log::info("  latency selection ", it + 1, ": asked the prediction for ", std::round(aim * 1000) / 1000,
              ", predicted ", std::round(c.predicted * 1000) / 1000, ", measured ", std::round(c.measured * 1000) / 1000,
              " of the unpruned latency (target ", target, ", batch ", batch, ")");
    if (!have || std::fabs(c.measured - target) < std::fabs(best.measured - target)) {
      best = c;
      have = true;
    }
    if (std::fabs(c.measured / target - 1.0) <= 0.1) break;
    if (c.removed.empty() && c.measured > target && c.predicted <= aim) break;
    // The measurement says how far the prediction is off here: ask it for correspondingly less or
    // more, but inside the bracket of aims already seen to land too fast and too slow.
    (c.measured < target ? too_fast : too_slow) = aim;
    aim = std::clamp(target * c.predicted / std::max(c.measured, 1e-6), 0.01, 1.0);
    // (A larger aim prunes less: an aim that measured too fast is a lower bound, too slow an upper.)
    if (too_fast > 0.0 && too_slow > 0.0 && (aim <= too_fast || aim >= too_slow))
      aim = 0.5 * (too_fast + too_slow);
    else if (too_fast > 0.0 && too_slow <= 0.0 && aim <= too_fast)
      aim = 0.5 * (too_fast + 1.0);
    else if (too_slow > 0.0 && too_fast <= 0.0 && aim >= too_slow)
      aim = 0.5 * too_slow;
  }
  ir::Graph pruned = best.removed.empty() ? graph.clone() : deps.prune(graph, best.removed);
  if (options_.reconstruct && !best.removed.empty()) {
    ReconstructOptions ro = options_.reconstruction;
    ro.batches = options_.batches;
    ro.batch_size = std::min<int64_t>(ctx.batch_size, 128);
    ro.seed = options_.seed + ctx.seed;
    ReconstructSummary rs = reconstruct(graph, pruned, deps, best.removed, ro, ctx);
    if (notes) notes->push_back(rs.describe());
  }
  const double flops_ratio = flops0 > 0 ? double(ir::graph_flops(pruned)) / flops0 : 1.0;
  if (notes) {
    notes->push_back(msg("latency at batch ", batch, ": predicted ", std::round(best.predicted * 1000) / 1000,
                         ", measured ", std::round(best.measured * 1000) / 1000, " of the unpruned ",
                         std::round(table.model_us) , " us (target ", target, "; FLOPs ratio ",
                         std::round(flops_ratio * 1000) / 1000, ")",
                         std::fabs(best.measured / target - 1.0) > 0.1
                             ? msg("; more than 10% off the target after ", selections, " selections (",
                                   join(tried, "; "), ")")
                             : selections > 1 ? msg("; ", selections, " selections (", join(tried, "; "), ")") : ""));
  }
  if (figures) {
    (*figures)["latency_target"] = target;
    (*figures)["latency_batch"] = double(batch);
    (*figures)["predicted_latency_ratio"] = best.predicted;
    (*figures)["measured_latency_ratio"] = best.measured;
    (*figures)["flops_ratio"] = flops_ratio;
    (*figures)["latency_selections"] = double(selections);
    (*figures)["latency_table_seconds"] = table.build_seconds;
    (*figures)["latency_table_reused"] = reused ? 1.0 : 0.0;
  }
  return pruned;
}

PassResult StructuredPrune::run(const ir::Graph& graph, PassContext& ctx) {
  PassResult result{graph.clone(), "", false};
  ir::infer_shapes(result.graph);
  if (!options_.channel_granularity())
    throw InternalError(msg("StructuredPrune runs channel pruning; granularity ", options_.granularity,
                            " has its own pass"));
  std::string crit = options_.effective_criterion(), from = options_.effective_score_from();
  if (from != "producer") crit += from == "both" ? " of producers and consumers" : " of consumers";
  std::vector<std::string> notes;
  {
    DependencyGraph deps(result.graph, options_.dependency_options());
    if (options_.target == "latency" && !deps.groups().empty() && options_.latency < 1.0) {
      const int64_t flops0 = ir::graph_flops(result.graph), params0 = result.graph.num_params();
      result.graph = prune_for_latency(result.graph, ctx, &notes, &result.figures);
      const int64_t flops1 = ir::graph_flops(result.graph), params1 = result.graph.num_params();
      result.changed = flops1 != flops0 || params1 != params0;
      result.summary = msg("structured ", options_.granularity == "filter" ? "filter" : "channel", " pruning (",
                           crit, ", latency target ", options_.latency, " at batch ", options_.latency_batch,
                           "): params ", with_commas(params0), " -> ", with_commas(params1), ", FLOPs ",
                           with_commas(flops0), " -> ", with_commas(flops1), "; ", join(notes, "; "));
      return result;
    }
    if (deps.groups().empty() || (options_.target != "latency" && options_.ratio <= 0.0) ||
        (options_.target == "latency" && options_.latency >= 1.0)) {
      result.summary = deps.groups().empty()
                           ? msg("nothing to prune: no channel group is prunable (", deps.num_channels(),
                                 " channels, all tied to inputs, outputs or ops that cannot be sliced)")
                           : options_.target == "latency" ? "structured pruning to latency 1.0: graph unchanged"
                                                          : "structured pruning at ratio 0: graph unchanged";
      return result;
    }
  }
  int64_t flops0 = ir::graph_flops(result.graph), params0 = result.graph.num_params();
  int64_t n = options_.steps;
  if (n > 1 && !(ctx.finetune && ctx.data))
    log::warn("structured pruning: iterative.steps = ", n, " without fine-tuning (add finetune: {epochs: N} to the ",
              "stage); the steps only re-rank the channels between removals");
  std::string history;
  for (int64_t s = 1; s <= n; ++s) {
    // Equal geometric steps: after N steps (1 - ratio) of the channels (or FLOPs) remain.
    double step_fraction;
    if (options_.target == "flops") {
      double goal = double(flops0) * std::pow(1.0 - options_.ratio, double(s) / double(n));
      step_fraction = std::max(0.0, 1.0 - goal / double(ir::graph_flops(result.graph)));
    } else {
      step_fraction = 1.0 - std::pow(1.0 - options_.ratio, 1.0 / double(n));
    }
    PassContext step_ctx = ctx;
    step_ctx.seed = ctx.seed + static_cast<uint64_t>(s - 1);
    StructuredPruneOptions so = options_;
    so.max_ratio_per_layer = 1.0 - std::pow(1.0 - options_.max_ratio_per_layer, 1.0 / double(n));
    StructuredPrune step(so);
    std::vector<std::string> step_notes;
    result.graph = step.prune_channels(result.graph, step_fraction, step_ctx, &step_notes);
    for (auto& note : step_notes) notes.push_back(n > 1 ? msg("step ", s, ": ", note) : note);
    int64_t f = ir::graph_flops(result.graph);
    std::string acc;
    if (n > 1 && s < n && ctx.finetune && ctx.data) {
      train::fit(result.graph, *ctx.data, *ctx.finetune, ctx.batch_size, ctx.seed + 100 + s);
    }
    if (n > 1 && ctx.data && ctx.data->val.size() > 0 && ctx.data->num_classes > 0) {
      auto m = train::evaluate(result.graph, ctx.data->val, ctx.batch_size);
      acc = msg(", val accuracy ", round1(m.accuracy * 100.0), "%");
    }
    if (n > 1) {
      history += msg(history.empty() ? "" : "; ", "step ", s, "/", n, ": FLOPs ",
                     std::round(double(flops0) / double(std::max<int64_t>(f, 1)) * 100.0) / 100.0, "x fewer, params ",
                     with_commas(result.graph.num_params()), acc);
      log::info("  structured pruning ", history.substr(history.rfind("step ")));
    }
  }
  int64_t flops1 = ir::graph_flops(result.graph), params1 = result.graph.num_params();
  result.changed = flops1 != flops0 || params1 != params0;
  if (options_.target == "flops") result.figures["flops_ratio"] = double(flops1) / double(std::max<int64_t>(flops0, 1));
  result.summary = msg("structured ", options_.granularity == "filter" ? "filter" : "channel", " pruning (", crit, ", ", options_.scope, ", ratio ", options_.ratio,
                       options_.target == "flops" ? " of FLOPs" : " of channels", n > 1 ? msg(", ", n, " steps") : "",
                       options_.layernorm == "prune" ? ", LayerNorm widths too" : "",
                       "): params ", with_commas(params0), " -> ", with_commas(params1), ", FLOPs ",
                       with_commas(flops0), " -> ", with_commas(flops1), " (",
                       std::round(double(flops0) / double(std::max<int64_t>(flops1, 1)) * 100.0) / 100.0,
                       "x fewer)", notes.empty() ? "" : "; " + join(notes, "; "),
                       history.empty() ? "" : msg("; history: ", history));
  return result;
}

std::unique_ptr<Pass> make_structured_pass(const StructuredPruneOptions& options) {
  if (options.granularity == "layer") return std::make_unique<LayerPrune>(options);
  if (options.granularity == "head") return std::make_unique<HeadPrune>(options);
  return std::make_unique<StructuredPrune>(options);
}

}  // namespace squeeze::compress
