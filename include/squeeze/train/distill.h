// Knowledge distillation: the loss that trains a student against a teacher's outputs, and
// optionally against its intermediate features (Hinton et al. 2015; FitNets for the features).
//
//   loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
//        + (1 - alpha) * cross_entropy(student, labels)
//        + sum_i weight_i * MSE(adapter_i(student feature_i), teacher feature_i)
//
// The teacher runs in eval mode without gradients on the same batch as the student. When the
// student's feature width differs from the teacher's, a learned 1x1 adapter (a 1x1 convolution
// for N x C x H x W features, a linear map over the last axis otherwise) maps it to the teacher's
// width; adapters train with the student and are discarded afterwards.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/trainer.h"

namespace squeeze {
class Params;
}

namespace squeeze::train {

struct FeatureMatch {
  std::string student;   // a node name (its first output) or a value name in the student
  std::string teacher;   // the same in the teacher
  double weight = 1.0;   // > 0
};

struct DistillOptions {
  double alpha = 0.9;        // share of the soft (teacher) loss, in [0, 1]
  double temperature = 4.0;  // softmax temperature T > 0
  std::vector<FeatureMatch> features;
  // The teacher: absent means the workflow's baseline (after its training, before any stage).
  std::optional<models::ModelSpec> teacher;
  // A zoo teacher starts from random weights, so it is trained first with these options.
  std::shared_ptr<const TrainOptions> teacher_train;
  std::string key_path;      // where the options were given, for messages ("...finetune.distill")

  // Reads alpha, temperature, features and teacher ({zoo, params, train} | {onnx} |
  // {checkpoint}), then finishes p: keys the caller read before (the method's `student`) count.
  static DistillOptions from_params(Params& p);
  void validate() const;  // throws ConfigError naming the key
  // Whether the teacher must run at all (alpha > 0 or features): with alpha 0 and no features
  // the loss is plain cross entropy and the teacher is never evaluated.
  bool needs_teacher() const { return alpha > 0.0 || !features.empty(); }
  // "baseline" or the teacher's spec, plus alpha and T: "baseline (alpha 0.9, T 4)".
  std::string describe() const;
};

// The model spec read from a config map ({zoo: NAME, params: {...}} | {onnx: PATH} |
// {checkpoint: PATH}, or the scalar spellings zoo:NAME, x.onnx, x.sqz) at p[key]; `extra` keys
// may also appear in the map (the caller reads them). Throws ConfigError naming p.key_path(key).
models::ModelSpec model_spec_from_params(Params& p, const std::string& key,
                                         const std::vector<std::string>& extra = {});

// Checks that a teacher and a student can be distilled with `o` before any training: equal output
// widths, feature names that exist in each graph, feature shapes that agree except in their
// width. Throws ConfigError naming o.key_path and the offending key, with the valid names.
void check_distill_pair(const ir::Graph& teacher, const ir::Graph& student, const DistillOptions& o);

// The value a feature name refers to in a graph: the name itself when it is a value produced by a
// node, else the first output of the node of that name; empty when neither exists.
std::string feature_value(const ir::Graph& graph, const std::string& name);

// The soft part of the loss for one batch: T^2 * KL(softmax(t / T) || softmax(s / T)), averaged
// over the batch (PyTorch's reduction "batchmean"). Zero when the student equals the teacher.
at::Tensor soft_target_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                            double temperature);

// Holds what one distillation run needs: the teacher's executor (outputs: logits then teacher
// features), the adapters and the timing. Made by train::fit when options.distill is set.
class Distiller {
 public:
  // `student` gets its feature values appended to its outputs for the run (restored by
  // restore_outputs()); `teacher` is copied.
  Distiller(const ir::Graph& teacher, ir::Graph& student, const DistillOptions& o, uint64_t seed);
  ~Distiller();
  Distiller(const Distiller&) = delete;
  Distiller& operator=(const Distiller&) = delete;

  // The adapters' parameters (trained with the student's).
  std::vector<at::Tensor> parameters() const;
  // Loss for one batch given the student's outputs (logits first, then its features in the
  // order of o.features), the input batch and the labels. Runs the teacher when needed.
  at::Tensor loss(const std::vector<at::Tensor>& student_outputs, const at::Tensor& x,
                  const at::Tensor& y, double label_smoothing);
  double teacher_seconds() const { return teacher_seconds_; }
  // Puts the student's outputs back as they were (also done by the destructor).
  void restore_outputs();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  double teacher_seconds_ = 0.0;
};

}  // namespace squeeze::train
