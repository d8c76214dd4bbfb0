// Knowledge distillation as a stage (method: distill). The stage's fine-tuning trains the student
// with the distillation loss (train/distill.h) against the teacher:
//   - the student is the experiment's current model, or a new zoo architecture trained from
//     scratch (`student: {zoo: small_cnn, params: {channels: 16}}`; num_classes and the input
//     shape come from the data, as for the workflow's model);
//   - the teacher is the workflow's baseline, or any model (`teacher: {onnx: PATH}`,
//     `{checkpoint: PATH}`, or `{zoo: NAME, params: ..., train: {epochs: N}}`, trained first).
// The pass itself only swaps in the new student; without `student` it leaves the graph alone.
//
// YAML: {method: distill, params: {alpha: 0.9, temperature: 4, teacher: ..., student: ...,
//        features: [{student: conv2, teacher: conv2, weight: 1.0}]}, finetune: {epochs: N}}
#pragma once

#include <optional>
#include <string>

#include "squeeze/compress/registry.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/distill.h"

namespace squeeze {
class Params;
}

namespace squeeze::compress {

struct DistillPassOptions {
  train::DistillOptions distill;
  std::optional<models::ModelSpec> student;  // a zoo model; absent: the current model
  std::string student_key_path;              // "...params.student", for messages

  static DistillPassOptions from_params(Params& p);  // unknown keys and bad values: ConfigError
};

class Distill : public Pass {
 public:
  explicit Distill(DistillPassOptions options) : options_(std::move(options)) {}
  std::string name() const override { return "distill"; }
  PassResult run(const ir::Graph& graph, PassContext& ctx) override;
  const train::DistillOptions* distill_options() const override { return &options_.distill; }

  // The new student (zoo model with the data's shape filled in), or nullopt when the student is
  // the current model. Also used by the workflow to check the pair before any training.
  std::optional<ir::Graph> make_student(const data::Splits* data, uint64_t seed) const;

 private:
  DistillPassOptions options_;
};

}  // namespace squeeze::compress
