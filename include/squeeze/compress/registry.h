// The compression methods, registered by name in one explicit, ordered file
// (src/compress/registry.cpp). A method is a pass: options read from Params (never YAML),
// validated when the pass is made, and a function Graph -> Graph plus a summary.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/ir/graph.h"
#include "squeeze/train/distill.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/params.h"

namespace squeeze::compress {

// What a pass may use besides the graph: data for calibration or gradient-based criteria.
struct PassContext {
  const data::Splits* data = nullptr;  // null when the workflow has no data
  int64_t batch_size = 128;
  uint64_t seed = 0;
  // The stage's fine-tuning options, for passes that fine-tune between their own steps
  // (iterative structured pruning); null when the stage has no fine-tuning.
  const train::TrainOptions* finetune = nullptr;
};

struct PassResult {
  PassResult() = default;
  PassResult(ir::Graph g, std::string s = "", bool c = true)
      : graph(std::move(g)), summary(std::move(s)), changed(c) {}
  ir::Graph graph;
  std::string summary;   // one line: what changed ("pruned 50.0% of 421,642 weights globally")
  bool changed = true;
  // Named figures for the report (report.json history[].figures), e.g. a latency target's
  // predicted and measured ratios; empty for most passes.
  std::map<std::string, double> figures;
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string name() const = 0;
  // Does the pass find anything to do? A pass with nothing to do returns the graph unchanged.
  virtual PassResult run(const ir::Graph& graph, PassContext& ctx) = 0;
  // A hook run after every fine-tuning step (gradual pruning); null if none.
  virtual train::StepHook finetune_hook() { return nullptr; }
  // Called once after the stage's fine-tuning (or right after run() when there is none), e.g. to
  // snap quantization-aware-trained weights back to their grid. Default: nothing.
  virtual void finalize(ir::Graph& graph) {}
  // The distillation the stage's fine-tuning must use (method distill); null for other passes.
  virtual const train::DistillOptions* distill_options() const { return nullptr; }
};

struct MethodInfo {
  std::string name;                   // canonical, e.g. "prune"
  std::vector<std::string> aliases;   // e.g. {"pruning"}
  std::string description;
  // Builds the pass from its params; reads every key it accepts and calls params.finish(), so
  // unknown keys and bad values throw ConfigError.
  std::function<std::unique_ptr<Pass>(Params& params)> make;
};

// A method's parameters, recorded while its make() reads them (Params::record_into), so the
// list is what the validating code accepts and cannot drift from it.
struct MethodParams {
  std::vector<KeyDoc> keys;  // read by make() on empty params (or on the first that it accepts)
  // When make() rejects empty params: its message (e.g. "needs one of rank, ratio or energy")
  // and the smallest params found that it accepts.
  std::string needs;
  std::string accepted_with;
  // Each other value of a choice or flag that changes what is read: the keys that are new or
  // differ ("with kind: structured") and the keys no longer read.
  struct Variant {
    std::string when;  // "kind: structured"
    std::vector<KeyDoc> keys;
    std::vector<std::string> unused;
  };
  std::vector<Variant> variants;
};
MethodParams method_params(const MethodInfo& method);

const std::vector<MethodInfo>& methods();
const MethodInfo* find_method(const std::string& name_or_alias);  // nullptr if unknown
std::vector<std::string> method_names();

}  // namespace squeeze::compress
