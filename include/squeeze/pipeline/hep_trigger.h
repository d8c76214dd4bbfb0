// The hep-trigger pipeline: compress a dense classifier for a level-1 trigger FPGA under a latency
// and resource budget (the FPGA cost model, deploy/fpga.h) and the accuracy guard, and compare it
// with the naive recipe physicists start from.
//
//   pipeline:
//     type: hep-trigger
//     target_latency_ns: 100          # required, > 0: the estimated latency of one inference
//     clock_mhz: 200                  # > 0 (default 200)
//     reuse_factor: 1                 # >= 1 (default 1)
//     max_dsp: 50                     # optional, >= 0: DSP48 budget (absent: no limit)
//     max_lut: 60000                  # optional, >= 0: LUT budget (absent: no limit)
//     precision: ap_fixed<16,6>       # the type of tensors the search leaves wide (biases, the
//                                     # logits, and every activation of the naive recipe)
//     guard: {max_drop: 0.01, relative: false}    # required
//     sparsities: [0.5, 0.7, 0.8, 0.9]            # the pruning ladder, ascending, each in (0, 1)
//     weight_bits: {min: 3, max: 8}   # the per-layer weight widths searched (2..16)
//     activation_bits: [12, 10, 8]    # the widths tried for the input and each hidden layer's
//                                     # result, widest first (2..24)
//     finetune: {epochs: 1, lr: 1.0e-3}   # after every step (default: trainer defaults, 1 epoch)
//     naive: true                     # also run the naive recipe (default true)
//
// The search is a greedy coordinate descent, not the TPE study: the knobs are few (one sparsity
// and one weight width per layer, one width per activation), each is monotone (fewer bits or
// more zeros never cost more on the FPGA), and every step is fine-tuned, so trying each knob one
// notch at a time from the widest setting and keeping it while the guard holds finds the
// cheapest model the guard allows in a few dozen fine-tunings, where a study would spend as many
// trials sampling settings that a monotone knob already rules out.
//   1. Pruning (unstructured, L1, per layer): every Linear layer to the next sparsity of the ladder
//      (each layer to that share of its own weights), fine-tuned; kept while the guard holds.
//      At the first rung that breaks it, each layer alone is tried at that rung (largest layer
//      first) and kept when the guard holds.
//   2. Fixed point (method fixed_point on the pruned float model, fine-tuned each time, i.e.
//      quantization-aware): all weights together from weight_bits.max down to .min, then all
//      activations together down the activation_bits ladder, each kept while the guard holds;
//      then each layer's weight width and each activation's width alone one notch further.
//      Integer bits are set from the pruned model: a weight type covers the layer's largest |w|,
//      an activation type the largest |value| seen on the validation split (calibration); the
//      modes are AP_RND_CONV and AP_SAT. Biases and the logits keep `precision`; accumulators are
//      inferred as hls4ml does.
//   3. The naive recipe, from the baseline: prune every layer to 90% and give the weights 6 bits
//      (the same integer-bit rule, everything else at `precision`); if its estimate does not fit
//      the budget, 95% and 4 bits as well. Each step fine-tuned the same way.
// Every candidate is estimated (cycles, ns, DSP, LUT at clock_mhz and reuse_factor) and judged by
// the guard. The result is, among the candidates that pass the guard, one that fits the budget
// with the fewest DSPs, then LUTs, then the highest validation accuracy; when none fits, the one
// closest to the budget (the smallest relative overshoot of latency, DSP or LUT), saved and
// reported with its gap and a warning. The search does not stop at the first model that fits:
// the budget is a limit, the guard decides how far compression goes.
//
// report.json: results holds the chosen model, the best search candidate when a naive one was
// chosen, and each naive candidate (each with "fpga" and, output.metrics hep being implied, "hep":
// AUC and rejection per class); pipeline.candidates each with "fpga", "role" (search | naive) and
// figures.budget_overshoot; pipeline.budget {target_latency_ns, clock_mhz, reuse_factor, max_dsp,
// max_lut, fits, gap}; pipeline.cpp_latency_ns when the generated C++ is measured.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/deploy/fpga.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/report.h"
#include "squeeze/train/trainer.h"

namespace squeeze {
class Params;
}

namespace squeeze::pipeline {

struct HepTriggerOptions {
  double target_latency_ns = 0.0;  // required, > 0
  double clock_mhz = 200.0;
  int64_t reuse_factor = 1;
  int64_t max_dsp = -1, max_lut = -1;  // -1: no limit
  std::string precision = "ap_fixed<16,6>";
  std::vector<double> sparsities = {0.5, 0.7, 0.8, 0.9};
  int min_weight_bits = 3, max_weight_bits = 8;
  std::vector<int64_t> activation_bits = {12, 10, 8};
  train::TrainOptions finetune;
  bool naive = true;

  // The cost model's options for this budget.
  deploy::FpgaOptions fpga() const;
  // Reads every key above from the pipeline block (the caller reads type and guard) and finishes
  // it. Throws ConfigError naming the key path and what would be valid.
  static HepTriggerOptions from_params(Params& block);
};

// How far an estimate is over the budget: the largest relative excess of latency, DSP and LUT
// (0 when it fits), and the words for it ("latency 120 ns > 100 ns; DSP 80 > 50"; empty when it
// fits).
double budget_overshoot(const deploy::FpgaEstimate& e, const HepTriggerOptions& o);
std::string budget_gap(const deploy::FpgaEstimate& e, const HepTriggerOptions& o);

// Runs config.pipeline (type hep-trigger). Every check (options, data, guard, the model against
// the cost model) before any training; throws as run_workflow does.
report::Report run_hep_trigger(const WorkflowConfig& config, const RunOptions& options);

}  // namespace squeeze::pipeline
