#include "squeeze/compress/prune/magnitude_prune.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

void MagnitudePruneOptions::validate() const {
  if (!(ratio >= 0.0 && ratio < 1.0)) throw ConfigError(msg("ratio: ", ratio, " is out of range (expected [0, 1))"));
  if (criterion != "l1" && criterion != "random")
    throw ConfigError(msg("criterion: '", criterion, "' is not valid for unstructured pruning (valid: l1, random)"));
  if (scope != "global" && scope != "local")
    throw ConfigError(msg("scope: '", scope, "' is not valid (valid: global, local)"));
  if (schedule != "oneshot" && schedule != "polynomial")
    throw ConfigError(msg("schedule: '", schedule, "' is not valid (valid: oneshot, polynomial)"));
  if (!(initial_ratio >= 0.0 && initial_ratio <= ratio))
    throw ConfigError(msg("initial_ratio: ", initial_ratio, " must be in [0, ratio=", ratio, "]"));
  if (!(end_fraction > 0.0 && end_fraction <= 1.0))
    throw ConfigError(msg("end_fraction: ", end_fraction, " must be in (0, 1]"));
  if (update_every < 1) throw ConfigError(msg("update_every: ", update_every, " must be >= 1"));
  if (!(exponent > 0.0)) throw ConfigError(msg("exponent: ", exponent, " must be > 0"));
}

MagnitudePruneOptions MagnitudePruneOptions::from_params(Params& p) {
  MagnitudePruneOptions o;
  std::string kind = p.get_choice("kind", "unstructured", {"unstructured", "structured"});
  if (kind != "unstructured")
    throw ConfigError(msg(p.key_path("kind"), ": magnitude pruning is unstructured; kind: structured is read by ",
                          "the structured pruning pass (compress::find_method(\"prune\") dispatches on kind)"));
  o.ratio = p.get_double("ratio", o.ratio, 0.0, 0.999999);
  o.criterion = p.get_choice("criterion", o.criterion, {"l1", "magnitude", "random"});
  if (o.criterion == "magnitude") o.criterion = "l1";
  o.scope = p.get_choice("scope", o.scope, {"global", "local"});
  o.schedule = p.get_choice("schedule", o.schedule, {"oneshot", "polynomial"});
  o.initial_ratio = p.get_double("initial_ratio", o.initial_ratio, 0.0, 1.0);
  o.end_fraction = p.get_double("end_fraction", o.end_fraction, 1e-9, 1.0);
  o.update_every = p.get_int("update_every", o.update_every, 1);
  o.exponent = p.get_double("exponent", o.exponent, 1e-9);
  if (p.has("ops")) o.ops = p.get_strings("ops");
  o.exclude = p.get_strings("exclude");
  o.seed = static_cast<uint64_t>(p.get_int("seed", 0, 0));
  finish_and_validate(p, o);
  return o;
}

MagnitudePrune::MagnitudePrune(MagnitudePruneOptions options) : options_(std::move(options)) { options_.validate(); }

std::vector<std::string> MagnitudePrune::prunable_nodes(const ir::Graph& graph) const {
  std::vector<std::string> names;
  for (const auto& node : graph.nodes) {
    if (std::find(options_.ops.begin(), options_.ops.end(), node.op) == options_.ops.end()) continue;
    if (!node.has_param("weight") || node.param("weight").qspec) continue;
    bool excluded = false;
    for (const auto& pat : options_.exclude) excluded |= pat == node.op || glob_match(pat, node.name);
    if (!excluded) names.push_back(node.name);
  }
  return names;
}

int64_t MagnitudePrune::prune_to(ir::Graph& graph, double ratio) const {
  at::NoGradGuard no_grad;
  auto names = prunable_nodes(graph);
  std::vector<ir::Param*> params;
  for (const auto& n : names) params.push_back(&graph.find_node(n)->param("weight"));
  int64_t total = 0;
  for (auto* p : params) total += p->value.numel();
  if (total == 0 || ratio <= 0.0) return total;

  // Scores: |w| (l1) or a seeded random permutation (control). Already-pruned weights score -1 so
  // they stay pruned and count towards the target.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
  std::vector<at::Tensor> scores;
  for (auto* p : params) {
    at::Tensor s = options_.criterion == "random" ? at::rand(p->value.sizes(), gen) : p->value.abs();
    if (p->mask) s = at::where(p->mask->to(at::kBool), s, at::full_like(s, -1.0));
    scores.push_back(s);
  }
  auto keep_mask = [](const at::Tensor& s, int64_t k) {
    // Prune exactly the k lowest scores (ties broken by position).
    at::Tensor mask = at::ones_like(s).view(-1);
    if (k > 0) {
      at::Tensor idx = std::get<1>(at::topk(s.reshape(-1), k, 0, /*largest=*/false));
      mask.index_fill_(0, idx, 0.0);
    }
    return mask.view(s.sizes());
  };
  if (options_.scope == "global") {
    std::vector<at::Tensor> flat;
    for (auto& s : scores) flat.push_back(s.reshape(-1));
    at::Tensor all = at::cat(flat);
    int64_t k = static_cast<int64_t>(std::llround(ratio * double(total)));
    at::Tensor mask = keep_mask(all, k);
    int64_t offset = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      int64_t n = params[i]->value.numel();
      params[i]->mask = mask.narrow(0, offset, n).view(params[i]->value.sizes()).clone();
      offset += n;
    }
  } else {
    for (size_t i = 0; i < params.size(); ++i) {
      int64_t k = static_cast<int64_t>(std::llround(ratio * double(params[i]->value.numel())));
      params[i]->mask = keep_mask(scores[i], k);
    }
  }
  for (auto* p : params) p->value.mul_(*p->mask);
  return total;
}

double MagnitudePrune::scheduled_ratio(int64_t step, int64_t total_steps) const {
  double end = std::max(1.0, options_.end_fraction * double(total_steps));
  double t = std::min(1.0, double(step) / end);
  return options_.ratio + (options_.initial_ratio - options_.ratio) * std::pow(1.0 - t, options_.exponent);
}

PassResult MagnitudePrune::run(const ir::Graph& graph, PassContext&) {
  PassResult result{graph.clone(), "", false};
  if (prunable_nodes(graph).empty()) {
    result.summary = "nothing to prune (no Conv/Linear weights outside the exclusions)";
    return result;
  }
  double target = options_.schedule == "polynomial" ? options_.initial_ratio : options_.ratio;
  int64_t before = graph.num_nonzero_params();
  int64_t total = prune_to(result.graph, target);
  int64_t after = result.graph.num_nonzero_params();
  result.changed = target > 0.0;
  result.summary = msg(options_.schedule == "polynomial" ? "gradual " : "", options_.criterion, " ",
                       options_.scope, " pruning of ", with_commas(total), " weights to ",
                       std::round(target * 1000.0) / 10.0, "% sparsity",
                       options_.schedule == "polynomial" ? msg(" (target ", options_.ratio * 100.0, "% during fine-tuning)") : "",
                       ": non-zero parameters ", with_commas(before), " -> ", with_commas(after));
  return result;
}

train::StepHook MagnitudePrune::finetune_hook() {
  if (options_.schedule != "polynomial") return nullptr;
  return [this](ir::Graph& graph, int64_t step, int64_t total_steps) {
    bool last = step >= total_steps;
    if (step % options_.update_every != 0 && !last) return;
    prune_to(graph, last ? options_.ratio : scheduled_ratio(step, total_steps));
  };
}

}  // namespace squeeze::compress
