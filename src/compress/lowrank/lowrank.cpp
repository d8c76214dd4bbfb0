#include "squeeze/compress/lowrank/lowrank.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {
namespace {

bool matches(const std::string& pattern, const ir::Node& n) { return pattern == n.op || glob_match(pattern, n.name); }

// The weight as the matrix that is factorized: out x (in * k...).
at::Tensor weight_matrix(const ir::Node& node) {
  const at::Tensor& w = node.param("weight").value;
  return w.reshape({w.size(0), -1}).to(at::kDouble);
}

// Reads rank / ratio / energy from `p` (a stage's params or one `layers` entry). Returns false
// when none is given; two of them is a ConfigError.
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
  if ((rank != 0 || named("rank")) && rank < 1) throw ConfigError(msg(k, ": ", rank, " must be >= 1"));
  if ((ratio != 0.0 || named("ratio")) && !(ratio > 0.0 && ratio <= 1.0))
    throw ConfigError(msg(k, ": ", ratio, " is out of range (expected (0, 1], a fraction of the full rank)"));
  if ((energy != 0.0 || named("energy")) && !(energy > 0.0 && energy <= 1.0))
    throw ConfigError(msg(k, ": ", energy, " is out of range (expected (0, 1], a share of the squared singular values)"));
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
      finish_and_validate(*entry, r);
      o.layers[pattern] = r;
    }
  }
  o.exclude = p.get_strings("exclude");
  o.min_saving = p.get_double("min_saving", o.min_saving, 0.0, 0.999999);
  finish_and_validate(p, o);
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

std::vector<double> LowRank::singular_values(const ir::Node& node) {
  at::NoGradGuard no_grad;
  at::Tensor s = at::linalg_svdvals(weight_matrix(node)).contiguous();
  return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
}

std::vector<LowRankLayer> LowRank::plan(const ir::Graph& graph) const {
  std::vector<LowRankLayer> out;
  for (const auto& node : graph.nodes) {
    if (node.op != "Linear" && node.op != "Conv") continue;
    if (!node.has_param("weight")) continue;
    LowRankLayer l;
    l.node = node.name;
    l.op = node.op;
    const ir::Param& w = node.param("weight");
    l.m = w.value.size(0);
    l.n = w.value.numel() / std::max<int64_t>(l.m, 1);
    l.params_before = l.params_after = w.value.numel();
    bool excluded = false;
    for (const auto& pat : options_.exclude) excluded |= matches(pat, node);
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
    } else {
      l.rank = rule_for(node).pick(singular_values(node), node.name);
      int64_t after = l.rank * (l.m + l.n);
      double saving = 1.0 - double(after) / double(l.m * l.n);
      if (saving < options_.min_saving) {
        l.reason = saving < 0.0 ? msg("rank ", l.rank, " of ", std::min(l.m, l.n), " would add ", pct(-saving),
                                      " weights; min_saving ", pct(options_.min_saving))
                                : msg("rank ", l.rank, " of ", std::min(l.m, l.n), " saves ", pct(saving),
                                      " < min_saving ", pct(options_.min_saving));
      } else {
        l.factorized = true;
        l.params_after = after;
      }
    }
    out.push_back(l);
  }
  return out;
}

void LowRank::factorize(ir::Graph& graph, const std::string& name, int64_t rank) {
  at::NoGradGuard no_grad;
  auto it = std::find_if(graph.nodes.begin(), graph.nodes.end(), [&](const ir::Node& n) { return n.name == name; });
  SQZ_ASSERT(it != graph.nodes.end(), "factorize: no node ", name);
  const ir::Node orig = *it;
  SQZ_ASSERT(orig.op == "Linear" || (orig.op == "Conv" && orig.attr_int("group", 1) == 1),
                 "factorize: node ", name, " is not a Linear or a group-1 Conv");
  const at::Tensor& w = orig.param("weight").value;
  const int64_t m = w.size(0), n = w.numel() / m;
  SQZ_ASSERT(rank >= 1 && rank <= std::min(m, n), "factorize: rank ", rank, " out of range for ", name);

  // SVD in float64, so that full-rank factorizations reproduce the layer to float32 rounding.
  auto [u, s, vh] = at::linalg_svd(weight_matrix(orig), /*full_matrices=*/false);
  at::Tensor root = s.narrow(0, 0, rank).sqrt();
  at::Tensor first = (root.unsqueeze(1) * vh.narrow(0, 0, rank)).to(w.scalar_type());   // [r, n]
  at::Tensor second = (u.narrow(1, 0, rank) * root.unsqueeze(0)).to(w.scalar_type());   // [m, r]

  ir::Node a, b;
  a.name = graph.unique_name(name + "_lr1");
  a.op = b.op = orig.op;
  a.inputs = orig.inputs;
  a.outputs = {a.name};  // node and value names share one namespace, so this is unused
  b.name = graph.unique_name(name + "_lr2");
  b.inputs = {a.outputs[0]};
  b.outputs = orig.outputs;
  if (orig.op == "Linear") {
    a.attrs = b.attrs = orig.attrs;
    a.params["weight"].value = first.contiguous();
    b.params["weight"].value = second.contiguous();
  } else {
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
  }
  if (orig.has_param("bias")) b.params["bias"] = orig.param("bias");
  a.params["weight"].trainable = b.params["weight"].trainable = orig.param("weight").trainable;

  size_t index = static_cast<size_t>(it - graph.nodes.begin());
  graph.nodes[index] = std::move(b);
  graph.nodes.insert(graph.nodes.begin() + static_cast<std::ptrdiff_t>(index), std::move(a));
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
                       with_commas(l.params_after)));
  }
  result.changed = !done.empty();
  std::string skipped_text = skipped.empty() ? "" : msg("; left alone: ", join(skipped, ", "));
  if (layers.empty()) {
    result.summary = "nothing to factorize (no Linear or Conv layers)";
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
