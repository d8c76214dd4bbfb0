#include "squeeze/compress/lowrank/lowrank.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>

#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {
namespace {

bool matches(const std::string& pattern, const ir::Node& n) { return pattern == n.op || glob_match(pattern, n.name); }

// What the pass factorizes in a node: the weight W (out x in) of y = x W^T, seen as a matrix.
struct Target {
  const ir::Param* weight = nullptr;   // the Linear/Conv weight, or the MatMul's Constant value
  const ir::Node* constant = nullptr;  // MatMul: the Constant node of its constant operand
  int data_input = 0;                  // MatMul: the computed operand's input index
  bool left() const { return constant && data_input == 1; }  // MatMul: y = A x (W = A)
};

// Linear and Conv nodes with a weight, and MatMul nodes with exactly one operand made by a
// Constant node; nothing for every other node (attention's MatMul of two computed values).
std::optional<Target> target_of(const ir::Graph& g, const ir::Node& node) {
  Target t;
  if (node.op == "Linear" || node.op == "Conv") {
    if (!node.has_param("weight")) return std::nullopt;
    t.weight = &node.param("weight");
    return t;
  }
  if (node.op != "MatMul" || node.inputs.size() != 2) return std::nullopt;
  const ir::Node* a = g.producer(node.inputs[0]);
  const ir::Node* b = g.producer(node.inputs[1]);
  auto is_const = [](const ir::Node* p) { return p && p->op == "Constant" && p->has_param("value"); };
  if (is_const(a) == is_const(b)) return std::nullopt;
  t.constant = is_const(a) ? a : b;
  t.data_input = is_const(a) ? 1 : 0;
  t.weight = &t.constant->param("value");
  return t;
}

// The matrix that is factorized, out x (in * k...), in float64: a Linear or Conv weight as it is
// stored, a MatMul's right operand B (y = x B) transposed, its left operand A (y = A x) as it is.
at::Tensor weight_matrix(const Target& t) {
  const at::Tensor& w = t.weight->value;
  if (t.constant && !t.left()) return w.t().to(at::kDouble);
  return w.reshape({w.size(0), -1}).to(at::kDouble);
}

std::vector<double> descending_singular_values(const Target& t) {
  at::NoGradGuard no_grad;
  at::Tensor s = at::linalg_svdvals(weight_matrix(t)).contiguous();
  return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
}

const ir::Node& node_named(const ir::Graph& g, const std::string& name) {
  const ir::Node* n = g.find_node(name);
  SQZ_ASSERT(n, "lowrank: no node ", name);
  return *n;
}

// Reads rank / ratio / energy from `p` (a stage's params or one `layers` entry). Returns false
// when none is given; two of them is a ConfigError.
// What RankRule::validate accepts, in its messages and in `squeeze methods`.
const char* const kRankValid = "an integer >= 1";
const char* const kRatioValid = "a number in (0, 1], a fraction of the full rank";
const char* const kEnergyValid = "a number in (0, 1], a share of the squared singular values";

bool read_rule(Params& p, RankRule& rule) {
  std::vector<std::string> given;
  for (const char* k : {"rank", "ratio", "energy"})
    if (p.has(k)) given.push_back(k);
  if (given.size() > 1)
    throw ConfigError(msg(p.key_path(given[0]), " and ", p.key_path(given[1]),
                          ": give exactly one of rank, ratio or energy"));
  rule.rank = p.get_int("rank", 0);
  rule.ratio = p.get_double("ratio", 0.0);
  rule.energy = p.get_double("energy", 0.0);
  p.document("rank", kRankValid);
  p.document("ratio", kRatioValid);
  p.document("energy", kEnergyValid);
  if (given.empty()) return false;
  rule.key = p.key_path(given[0]);
  return true;
}

std::string pct(double f) { return msg(std::round(f * 1000.0) / 10.0, "%"); }

}  // namespace

void RankRule::validate() const {
  auto named = [&](const char* field) {
    const std::string f(field);
    return key.size() >= f.size() && key.compare(key.size() - f.size(), f.size(), f) == 0;
  };
  const std::string k = key.empty() ? std::string("rank") : key;
  if ((rank != 0 || named("rank")) && rank < 1)
    throw ConfigError(msg(k, ": ", rank, " is out of range (expected ", kRankValid, ")"));
  if ((ratio != 0.0 || named("ratio")) && !(ratio > 0.0 && ratio <= 1.0))
    throw ConfigError(msg(k, ": ", ratio, " is out of range (expected ", kRatioValid, ")"));
  if ((energy != 0.0 || named("energy")) && !(energy > 0.0 && energy <= 1.0))
    throw ConfigError(msg(k, ": ", energy, " is out of range (expected ", kEnergyValid, ")"));
  if ((rank != 0) + (ratio != 0.0) + (energy != 0.0) != 1)
    throw ConfigError(msg(k, ": give exactly one of rank, ratio or energy"));
}

int64_t RankRule::pick(const std::vector<double>& s, const std::string& layer) const {
  const auto full = static_cast<int64_t>(s.size());
  if (rank > 0) {
    if (rank > full)
      throw ConfigError(msg(key, ": ", rank, " is larger than layer '", layer, "' allows (its maximum rank is ", full, ")"));
    return rank;
  }
  if (ratio > 0.0) return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(ratio * double(full) - 1e-9)), 1, full);
  double total = 0.0;
  for (double v : s) total += v * v;
  if (total <= 0.0) return 1;
  // A relative tolerance so that energy 1 stops at the last non-negligible value's rounding.
  double target = energy * total * (1.0 - 1e-12);
  double kept = 0.0;
  for (int64_t r = 0; r < full; ++r) {
    kept += s[r] * s[r];
    if (kept >= target) return r + 1;
  }
  return full;
}

void LowRankOptions::validate() const {
  rule.validate();
  for (const auto& [pattern, r] : layers) r.validate();
  if (!(min_saving >= 0.0 && min_saving < 1.0))
    throw ConfigError(msg("min_saving: ", min_saving, " is out of range (expected [0, 1))"));
}

LowRankOptions LowRankOptions::from_params(Params& p) {
  LowRankOptions o;
  if (!read_rule(p, o.rule))
    throw ConfigError(msg(p.path().empty() ? std::string("params") : p.path(),
                          ": low rank needs one of rank (a number), ratio (of the full rank) or energy "
                          "(share of the squared singular values)"));
  if (auto layers = p.get_map("layers")) {
    for (const auto& pattern : layers->keys()) {
      std::shared_ptr<Params> entry = layers->get_map(pattern);
      if (!entry)
        throw ConfigError(msg(layers->key_path(pattern), ": expected a map with one of rank, ratio or energy, ",
                              "e.g. {energy: 0.95}"));
      RankRule r;
      if (!read_rule(*entry, r)) {
        entry->finish();  // an unknown (misspelled) key is the likelier mistake: name it first
        throw ConfigError(msg(layers->key_path(pattern), ": give one of rank, ratio or energy"));
      }
      entry->finish();
      r.validate();
      o.layers[pattern] = r;
    }
  }
  o.exclude = p.get_strings("exclude");
  o.min_saving = p.get_double("min_saving", o.min_saving, 0.0, 0.999999);
  // Not finish_and_validate: the rules' keys are already full key paths (the pass needs them for
  // the rank errors it finds on the graph), and min_saving was range-checked as it was read.
  p.finish();
  o.validate();
  return o;
}

LowRank::LowRank(LowRankOptions options) : options_(std::move(options)) { options_.validate(); }

const RankRule& LowRank::rule_for(const ir::Node& node) const {
  const RankRule* best = &options_.rule;
  size_t best_len = 0;
  for (const auto& [pat, r] : options_.layers) {
    if (pat == node.name) return r;
    if (matches(pat, node) && pat.size() >= best_len) {
      best = &r;
      best_len = pat.size();
    }
  }
  return *best;
}

std::vector<double> LowRank::singular_values(const ir::Graph& graph, const std::string& node) {
  auto t = target_of(graph, node_named(graph, node));
  SQZ_ASSERT(t && t->weight->value.dim() >= 2, "singular_values: node ", node, " has no weight matrix");
  return descending_singular_values(*t);
}

std::vector<LowRankLayer> LowRank::plan(const ir::Graph& graph) const {
  std::vector<LowRankLayer> out;
  // The global rule's layers, to tell a rank too large for some layers (clamped) from one too
  // large for all of them (a mistake).
  int64_t global_layers = 0, global_clamped = 0;
  for (const auto& node : graph.nodes) {
    std::optional<Target> t = target_of(graph, node);
    if (!t) continue;
    LowRankLayer l;
    l.node = node.name;
    l.op = node.op;
    const ir::Param& w = *t->weight;
    l.params_before = l.params_after = w.value.numel();
    if (w.value.dim() == 2 || node.op != "MatMul") {
      at::IntArrayRef sizes = w.value.sizes();
      l.m = t->constant && !t->left() ? sizes[1] : sizes[0];
      l.n = w.value.numel() / std::max<int64_t>(l.m, 1);
    }
    bool excluded = false;
    for (const auto& pat : options_.exclude) excluded |= matches(pat, node);
    const bool shared = t->constant && (graph.consumers(t->constant->outputs[0]).size() > 1 ||
                                        std::count(graph.outputs.begin(), graph.outputs.end(),
                                                   t->constant->outputs[0]) > 0);
    if (excluded) {
      l.reason = "excluded";
    } else if (node.op == "Conv" && node.attr_int("group", 1) != 1) {
      l.reason = msg("grouped conv (group ", node.attr_int("group", 1), ")");
    } else if (w.qspec || node.out_qspec || node.has_attr("quant_dynamic")) {
      l.reason = "quantized";
    } else if (w.mask || (node.has_param("bias") && node.param("bias").mask)) {
      l.reason = "masked (pruned)";
    } else if (!w.value.is_floating_point()) {
      l.reason = "weight is not float";
    } else if (w.value.dim() != 2 && node.op == "MatMul") {
      l.reason = msg("constant operand '", t->constant->name, "' has ", w.value.dim(), " dimensions, not 2");
    } else if (shared) {
      l.reason = msg("constant operand '", t->constant->name, "' is used elsewhere too");
    } else {
      const RankRule& rule = rule_for(node);
      const bool global = &rule == &options_.rule;
      std::vector<double> s = descending_singular_values(*t);
      const auto full = static_cast<int64_t>(s.size());
      std::string clamp_note;
      global_layers += global;
      if (global && rule.rank > full) {
        ++global_clamped;
        l.rank = full;
        l.clamped = true;
        clamp_note = msg("rank ", rule.rank, " is more than its maximum, clamped; ");
      } else {
        l.rank = rule.pick(s, node.name);
      }
      int64_t after = l.rank * (l.m + l.n);
      double saving = 1.0 - double(after) / double(l.m * l.n);
      if (saving < options_.min_saving) {
        l.reason = clamp_note + (saving < 0.0 ? msg("rank ", l.rank, " of ", full, " would add ", pct(-saving),
                                                    " weights; min_saving ", pct(options_.min_saving))
                                              : msg("rank ", l.rank, " of ", full, " saves ", pct(saving),
                                                    " < min_saving ", pct(options_.min_saving)));
      } else {
        l.factorized = true;
        l.params_after = after;
      }
    }
    out.push_back(l);
  }
  if (options_.rule.rank > 0 && global_layers > 0 && global_clamped == global_layers) {
    // Every layer under the global rule was clamped: name the layer with the largest maximum.
    const LowRankLayer* best = nullptr;
    for (const auto& l : out)
      if (l.clamped && (!best || l.rank > best->rank)) best = &l;
    throw ConfigError(msg(options_.rule.key, ": ", options_.rule.rank, " is larger than every layer allows (the "
                          "largest maximum rank is ", best->rank, ", of layer '", best->node,
                          "'); give a smaller rank, a ratio or an energy"));
  }
  return out;
}

void LowRank::factorize(ir::Graph& graph, const std::string& name, int64_t rank) {
  at::NoGradGuard no_grad;
  auto it = std::find_if(graph.nodes.begin(), graph.nodes.end(), [&](const ir::Node& n) { return n.name == name; });
  SQZ_ASSERT(it != graph.nodes.end(), "factorize: no node ", name);
  const ir::Node orig = *it;
  std::optional<Target> t = target_of(graph, orig);
  SQZ_ASSERT(t && !(orig.op == "Conv" && orig.attr_int("group", 1) != 1) && t->weight->value.dim() >= 2,
             "factorize: node ", name, " is not a Linear, a group-1 Conv or a MatMul with a constant matrix");
  const at::Tensor w = t->weight->value;
  const std::string constant = t->constant ? t->constant->name : "";
  const bool left = t->left();
  // SVD in float64, so that full-rank factorizations reproduce the layer to float32 rounding.
  auto [u, s, vh] = at::linalg_svd(weight_matrix(*t), /*full_matrices=*/false);
  const int64_t m = u.size(0);
  SQZ_ASSERT(rank >= 1 && rank <= s.size(0), "factorize: rank ", rank, " out of range for ", name);
  at::Tensor root = s.narrow(0, 0, rank).sqrt();
  at::Tensor first = (root.unsqueeze(1) * vh.narrow(0, 0, rank)).to(w.scalar_type());   // [r, n]
  at::Tensor second = (u.narrow(1, 0, rank) * root.unsqueeze(0)).to(w.scalar_type());   // [m, r]

  std::vector<ir::Node> replacement;
  ir::Node a, b;
  a.name = graph.unique_name(name + "_lr1");
  b.name = graph.unique_name(name + "_lr2");
  a.outputs = {a.name};  // node and value names share one namespace, so this is unused
  b.outputs = orig.outputs;
  if (left) {
    // y = A x = second (first x): two MatMuls of constants, as the original was written.
    auto constant_node = [&](const std::string& base, const at::Tensor& value) {
      ir::Node c;
      c.op = "Constant";
      c.name = graph.unique_name(base);
      c.outputs = {c.name};
      c.params["value"].value = value.contiguous();
      c.params["value"].trainable = t->weight->trainable;
      return c;
    };
    ir::Node c1 = constant_node(name + "_lr1_weight", first);
    ir::Node c2 = constant_node(name + "_lr2_weight", second);
    a.op = b.op = "MatMul";
    a.inputs = {c1.outputs[0], orig.inputs[1]};
    b.inputs = {c2.outputs[0], a.outputs[0]};
    replacement = {std::move(c1), std::move(a), std::move(c2), std::move(b)};
  } else {
    a.op = b.op = orig.op == "MatMul" ? "Linear" : orig.op;  // y = x B: two Linears of B^T's factors
    a.inputs = {orig.inputs[t->data_input]};
    b.inputs = {a.outputs[0]};
    if (orig.op == "Conv") {
      std::vector<int64_t> kshape = w.sizes().vec();
      const size_t nd = kshape.size() - 2;
      kshape[0] = rank;
      a.attrs = orig.attrs;
      a.params["weight"].value = first.reshape(kshape).contiguous();
      b.attrs["strides"] = std::vector<int64_t>(nd, 1);
      b.attrs["pads"] = std::vector<int64_t>(2 * nd, 0);
      b.attrs["dilations"] = std::vector<int64_t>(nd, 1);
      b.attrs["group"] = int64_t{1};
      std::vector<int64_t> pshape{m, rank};
      pshape.resize(nd + 2, 1);
      b.params["weight"].value = second.reshape(pshape).contiguous();
    } else {
      if (orig.op == "Linear") a.attrs = b.attrs = orig.attrs;
      a.params["weight"].value = first.contiguous();
      b.params["weight"].value = second.contiguous();
    }
    if (orig.has_param("bias")) b.params["bias"] = orig.param("bias");
    // A MatMul's constant becomes two ordinary Linear layers: fine-tuning trains them.
    const bool trainable = orig.op == "MatMul" || t->weight->trainable;
    a.params["weight"].trainable = b.params["weight"].trainable = trainable;
    replacement = {std::move(a), std::move(b)};
  }

  const auto index = it - graph.nodes.begin();
  graph.nodes.erase(it);
  graph.nodes.insert(graph.nodes.begin() + index, std::make_move_iterator(replacement.begin()),
                     std::make_move_iterator(replacement.end()));
  if (!constant.empty()) {
    const ir::Node& c = node_named(graph, constant);
    if (graph.consumers(c.outputs[0]).empty() &&
        std::find(graph.outputs.begin(), graph.outputs.end(), c.outputs[0]) == graph.outputs.end())
      graph.nodes.erase(graph.nodes.begin() + (&c - graph.nodes.data()));
  }
  ir::verify(graph);
}

PassResult LowRank::run(const ir::Graph& graph, PassContext&) {
  PassResult result{graph.clone(), "", false};
  std::vector<LowRankLayer> layers = plan(graph);
  int64_t before = graph.num_params();
  std::vector<std::string> done, skipped;
  for (const auto& l : layers) {
    if (!l.factorized) {
      skipped.push_back(msg(l.node, " (", l.reason, ")"));
      continue;
    }
    factorize(result.graph, l.node, l.rank);
    done.push_back(msg(l.node, " rank ", l.rank, "/", std::min(l.m, l.n), " ", with_commas(l.params_before), " -> ",
                       with_commas(l.params_after), l.clamped ? " (clamped to its maximum rank)" : ""));
  }
  result.changed = !done.empty();
  std::string skipped_text = skipped.empty() ? "" : msg("; left alone: ", join(skipped, ", "));
  if (layers.empty()) {
    result.summary = "nothing to factorize (no Linear, Conv or MatMul with a constant operand)";
  } else if (done.empty()) {
    result.summary = msg("nothing factorized", skipped_text);
  } else {
    result.summary = msg("factorized ", done.size(), " of ", layers.size(), " layers, parameters ",
                         with_commas(before), " -> ", with_commas(result.graph.num_params()), ": ",
                         join(done, ", "), skipped_text);
  }
  return result;
}

}  // namespace squeeze::compress
