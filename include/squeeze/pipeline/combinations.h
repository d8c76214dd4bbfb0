// The combinations pipeline: which combination of methods is best. Every ordering of every
// non-empty subset of the steps is applied from the baseline (each stage with its fine-tuning),
// measured, judged by the guard and ranked.
//
//   pipeline:
//     type: combinations
//     guard: {max_drop: 0.02, relative: true}     # optional: without it every candidate passes
//     max_candidates: 64                          # orderings examined at most (default 64)
//     steps:
//       - {method: lowrank, params: {rank: 64}, finetune: {epochs: 1}}
//       - {method: quantize, params: {mode: qat, weight_bits: 8, act_bits: 8}, finetune: {epochs:
//       1}}
//       - {method: prune, params: {ratio: 0.5}, finetune: {epochs: 1}}
//
// Order: subsets by size (smallest first), subsets of one size in lexicographic order of their
// step indices, the orderings of a subset in lexicographic order; the first max_candidates
// orderings that can run are examined. n steps have sum over k of n!/(n-k)! orderings (3: 15,
// 4: 64, 5: 325).
//
// Not run, each listed in pipeline.skipped with its reason:
//   - an ordering with a distill step that trains a new student (params.student) anywhere but
//     first: the student starts from scratch, so the steps before it would be discarded;
//   - an ordering in which a step finds nothing to do (found when its pass runs, before any
//     fine-tuning): pruning and low rank leave quantized layers alone and a second quantization
//     finds nothing left to quantize, so "quantize > prune" would repeat "quantize" with more
//     fine-tuning. A distill step that keeps the current model runs anywhere (its work is the
//     fine-tuning). Orderings extending a skipped one are skipped with it.
//
// An ordering whose prefix was itself a candidate reuses that candidate's model instead of
// recomputing it (the same stages with the same seeds from the same baseline); the models of the
// two latest subset sizes stay in memory for this.
//
// Ranking (pipeline.candidates[].rank, 1 = best): the candidates that pass the guard by
// compression ratio, then validation accuracy, then the order tried; then the others by
// validation accuracy, then compression ratio. The best goes into results.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/report.h"

namespace squeeze::pipeline {

struct CombinationPlan {
  std::vector<std::vector<size_t>> run;  // orderings to try, as step indices, in order
  std::vector<std::pair<std::vector<size_t>, std::string>> skipped;  // rejected before running, why
  int64_t total = 0;         // orderings in all (saturates at INT64_MAX)
  int64_t not_examined = 0;  // beyond max_candidates
};

// The orderings of the steps in the order above, at most max_candidates of them to run.
CombinationPlan plan_combinations(const std::vector<StepSpec>& steps, int64_t max_candidates);

// Runs config.pipeline (type combinations). Every check (steps, data, guard, every ordering's
// teachers) before any training; throws as run_workflow does.
report::Report run_combinations(const WorkflowConfig& config, const RunOptions& options);

}  // namespace squeeze::pipeline
