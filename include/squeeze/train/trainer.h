// Fine-tuning and evaluation of IR graphs on in-memory data sets.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/ir/graph.h"

namespace squeeze {
class Params;
}

namespace squeeze::train {

struct DistillOptions;  // train/distill.h

struct TrainOptions {
  int64_t epochs = 1;
  std::string optimizer = "adam";   // sgd | adam | adamw
  double lr = 1e-3;
  double momentum = 0.9;            // sgd
  bool nesterov = false;            // sgd
  double weight_decay = 0.0;
  std::string schedule = "constant";  // constant | step | cosine
  int64_t step_size = 1;            // step: epochs between decays
  double gamma = 0.1;               // step: decay factor
  int64_t warmup_steps = 0;         // linear warm-up from 0 to lr
  int64_t max_steps = -1;           // stop after this many optimizer steps (-1: no limit)
  bool keep_best = true;            // restore the parameters with the best validation accuracy
  int64_t early_stopping = 0;       // stop after N epochs without improvement (0: off)
  double label_smoothing = 0.0;
  // Per-class weights of the cross-entropy loss (weight[y] scales a sample of class y; the batch
  // loss is the weighted mean, as torch.nn.CrossEntropyLoss(weight=...)). Empty: unweighted.
  // Set by the hep-jet pipeline (inverse class frequency); not a YAML key. Must have one entry
  // per model output (InputError at the first step otherwise), each finite and >= 0, and cannot
  // be combined with distill (ConfigError).
  std::vector<double> class_weights;
  // Distill from a teacher while training (finetune: {distill: ...}); fit() then needs the teacher.
  std::shared_ptr<const DistillOptions> distill;

  static TrainOptions from_params(Params& p);  // validates ranges, names bad keys
  void validate() const;                       // throws ConfigError
};

// Classification metrics. A data set need not hold every class the model outputs (a 1000-class
// model evaluated on a few labelled images), so the per-class lists cover the classes that occur
// in the labels, in ascending order: per_class_*[i] is about class classes[i].
struct Metrics {
  double accuracy = 0.0;  // fraction in [0, 1]
  double loss = 0.0;      // mean cross entropy
  int64_t samples = 0;
  int64_t num_outputs = 0;                  // the model's output width (its number of classes)
  std::vector<int64_t> classes;             // the classes that occur in the labels, ascending
  std::vector<double> per_class_accuracy;   // = recall of classes[i]
  std::vector<double> per_class_precision;  // of classes[i]; 0 when never predicted
  // [i][j]: samples of classes[i] predicted as classes[j]. When the model outputs classes that
  // do not occur in the labels, one more column, j == classes.size(), counts the samples
  // predicted as any of those, so every row sums to the samples of its class.
  std::vector<std::vector<int64_t>> confusion;
};

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0.0, train_accuracy = 0.0;
  double val_loss = 0.0, val_accuracy = 0.0;
  double lr = 0.0, seconds = 0.0, samples_per_s = 0.0;
};

struct TrainResult {
  std::vector<EpochRecord> epochs;
  int64_t best_epoch = -1;
  double best_val_accuracy = 0.0;
  int64_t steps = 0;
  double seconds = 0.0;          // everything, validation included
  double step_seconds = 0.0;     // the optimizer steps alone (forward, loss, backward, update)
  double teacher_seconds = 0.0;  // of step_seconds: the teacher's forward passes (distillation)
  // Data-parallel (train/distributed.h): of step_seconds, the gradient all-reduce; and the time
  // in every collective of the fit (also the broadcasts, epoch sums and sharded validation) with
  // the bytes this rank put into them.
  double allreduce_seconds = 0.0;
  double comm_seconds = 0.0;
  int64_t comm_bytes = 0;
};

// Called after every optimizer step with the global step count; passes use it for gradual
// pruning (update masks) and QAT observers. May modify the graph's masks.
using StepHook = std::function<void(ir::Graph&, int64_t step, int64_t total_steps)>;

// Called after every epoch's validation with its record. To stop training early it throws (the
// autotune pipeline's median pruner throws its own exception and catches it); fit then leaves
// the graph mid-training, to be discarded.
using EpochHook = std::function<void(const EpochRecord&)>;

// Trains the graph in place on splits.train, validating on splits.val after each epoch.
// Masked parameters stay zero. Shows progress (see util/progress.h). Labels must be valid for
// the model's output width (check_labels; InputError before the first step otherwise).
// With options.distill the loss is the distillation loss (train/distill.h) against `teacher`,
// which must then be given (ConfigError otherwise) and is only read. Checks for an interrupt
// (util/interrupt.h) before every batch and throws interrupt::Interrupted then.
//
// Data-parallel (when dist::active(), train/distributed.h): batch_size is the global batch,
// split among the ranks (rank r takes the r-th contiguous share of each global batch, drawn
// from the same seeded permutation on every rank); rank 0's parameters, masks and quantization
// parameters are broadcast first; gradients are summed over the ranks in buckets after each
// backward pass, so a step equals one process's step on the global batch up to float rounding.
// The hook runs on every rank and its result (masks, observers) is then broadcast from rank 0.
// BatchNorm normalizes with each rank's own share (per-rank batch statistics, as PyTorch DDP
// without SyncBatchNorm); running statistics are averaged over the ranks after every epoch.
// Validation is split among the ranks and summed. Throws dist::PeerLost when a rank is lost.
TrainResult fit(ir::Graph& graph, const data::Splits& splits, const TrainOptions& options,
                int64_t batch_size, uint64_t seed, const StepHook& hook = nullptr,
                const ir::Graph* teacher = nullptr, const EpochHook& epoch_hook = nullptr);

// Evaluates in eval mode over a data set. The model's output width K decides which labels are
// valid: 0 <= label < K; the data may hold any subset of those classes. Throws InputError when
// the model does not output [batch, K] scores, or when a label is outside [0, K) (see
// check_labels).
// With `probabilities`, it also receives the softmax of the model's scores, N x K row by row
// (probabilities[i * K + c]), for the ROC figures (train/hep_metrics.h).
Metrics evaluate(ir::Graph& graph, const data::Dataset& data, int64_t batch_size,
                 std::vector<float>* probabilities = nullptr);

// Throws InputError when a label of `data` is outside [0, num_outputs), naming the first such
// label, its row in `data` (0-based), `what` ("test split") and the valid range.
void check_labels(const data::Dataset& data, int64_t num_outputs, const std::string& what);

// The number of classes a classifier graph outputs: the last dimension of its first output when
// that output is [batch, K] with K known after shape inference; -1 otherwise.
int64_t output_classes(const ir::Graph& graph);

}  // namespace squeeze::train
