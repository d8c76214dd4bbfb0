// The compression methods, in the order they are listed to users. Ordering constraints between
// methods live in the workflow (stages run in the order the user gives).
#include "squeeze/compress/registry.h"

#include <algorithm>

#include "squeeze/compress/distill/distill.h"
#include "squeeze/compress/lowrank/lowrank.h"
#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/util/params.h"

namespace squeeze::compress {

const std::vector<MethodInfo>& methods() {
  static const std::vector<MethodInfo> all = {
      {"prune",
       {"pruning"},
       "magnitude pruning to a target sparsity (kind: unstructured), global or per layer, one-shot or gradual; "
       "structured pruning of channels, layers or attention heads into a smaller dense model (kind: structured)",
       [](Params& p) -> std::unique_ptr<Pass> {
         // `kind` picks the pass; each options reader reads it again, so it counts as a valid key.
         std::string kind = p.get_choice("kind", "unstructured", {"unstructured", "structured"});
         if (kind == "structured") return make_structured_pass(StructuredPruneOptions::from_params(p));
         return std::make_unique<MagnitudePrune>(MagnitudePruneOptions::from_params(p));
       }},
      {"quantize",
       {"quantization"},
       "quantization to 2-8 bits: post-training (mode: ptq), dynamic int8 (dynamic) or quantization-aware (qat)",
       [](Params& p) -> std::unique_ptr<Pass> {
         return std::make_unique<Quantize>(QuantizeOptions::from_params(p));
       }},
      {"lowrank",
       {"low_rank"},
       "low-rank factorization by truncated SVD of Linear layers, group-1 Conv layers and MatMuls with a constant "
       "matrix operand into two smaller layers, rank from rank, ratio (of the full rank) or energy (share of "
       "squared singular values), global or per layer; a global rank larger than a layer allows is clamped",
       [](Params& p) -> std::unique_ptr<Pass> {
         return std::make_unique<LowRank>(LowRankOptions::from_params(p));
       }},
      // Last: it trains, so in a chain it usually follows the methods that shrink the model.
      {"distill",
       {"distillation"},
       "knowledge distillation during the stage's fine-tuning: the current model, or a new zoo student "
       "trained from scratch, learns from a teacher (the baseline by default) with alpha, temperature and "
       "optional feature matching",
       [](Params& p) -> std::unique_ptr<Pass> {
         return std::make_unique<Distill>(DistillPassOptions::from_params(p));
       }},
  };
  return all;
}

const MethodInfo* find_method(const std::string& name_or_alias) {
  for (const auto& m : methods())
    if (m.name == name_or_alias ||
        std::find(m.aliases.begin(), m.aliases.end(), name_or_alias) != m.aliases.end())
      return &m;
  return nullptr;
}

std::vector<std::string> method_names() {
  std::vector<std::string> names;
  for (const auto& m : methods()) names.push_back(m.name);
  return names;
}

}  // namespace squeeze::compress
