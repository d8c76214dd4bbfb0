#include "squeeze/train/distill.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>
#include <cmath>
#include <sstream>

#include "squeeze/exec/executor.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::train {

namespace {

// The axis a feature's width lies on: channels for N x C x ... images, the last axis for
// [batch, features] and [batch, tokens, features] (transformer) tensors.
int64_t width_axis(size_t rank) { return rank >= 4 ? 1 : static_cast<int64_t>(rank) - 1; }

// A few node names of a graph, for "valid names" in messages.
std::string some_node_names(const ir::Graph& g) {
  std::vector<std::string> names;
  for (const auto& n : g.nodes) names.push_back(n.name);
  const size_t shown = std::min<size_t>(names.size(), 12);
  std::string out = join(std::vector<std::string>(names.begin(), names.begin() + shown), ", ");
  if (names.size() > shown) out += msg(", ... (", names.size(), " in all; `squeeze inspect` lists them)");
  return out;
}

// Where the options were given, for messages; "distill" for options made in code.
std::string where(const DistillOptions& o) { return o.key_path.empty() ? "distill" : o.key_path; }

ir::Shape shape_of(const ir::Graph& g, const std::string& value) {
  auto it = g.shapes.find(value);
  return it == g.shapes.end() ? ir::Shape{} : it->second;
}

std::string num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

std::string DistillOptions::describe() const {
  return msg(teacher ? teacher->describe() : std::string("baseline"), " (alpha ", num(alpha), ", T ",
             num(temperature), features.empty() ? "" : msg(", ", features.size(), features.size() == 1 ? " feature pair" : " feature pairs"), ")");
}

void DistillOptions::validate() const {
  const std::string at = where(*this);
  if (!(alpha >= 0.0 && alpha <= 1.0))
    throw ConfigError(msg(at, ".alpha: expected a number in [0, 1], got '", alpha, "'"));
  if (!(temperature > 0.0 && std::isfinite(temperature)))
    throw ConfigError(msg(at, ".temperature: expected a number > 0, got '", temperature, "'"));
  for (size_t i = 0; i < features.size(); ++i)
    if (!(features[i].weight > 0.0 && std::isfinite(features[i].weight)))
      throw ConfigError(msg(at, ".features[", i, "].weight: expected a number > 0, got '", features[i].weight, "'"));
}

std::string feature_value(const ir::Graph& graph, const std::string& name) {
  for (const auto& n : graph.nodes)
    for (const auto& out : n.outputs)
      if (out == name) return name;
  for (const auto& n : graph.nodes)
    if (n.name == name && !n.outputs.empty()) return n.outputs[0];
  return "";
}

void check_distill_pair(const ir::Graph& teacher, const ir::Graph& student, const DistillOptions& o) {
  const std::string at = where(o);
  const int64_t kt = output_classes(teacher), ks = output_classes(student);
  if (kt > 0 && ks > 0 && kt != ks)
    throw ConfigError(msg(at, ".teacher: the teacher (", o.teacher ? o.teacher->describe() : "the baseline",
                          ") outputs ", kt, " classes but the student outputs ", ks,
                          "; distillation needs the same output width (num_classes)"));
  for (size_t i = 0; i < o.features.size(); ++i) {
    const FeatureMatch& f = o.features[i];
    const std::string vs = feature_value(student, f.student), vt = feature_value(teacher, f.teacher);
    if (vs.empty())
      throw ConfigError(msg(at, ".features[", i, "].student: no layer or value named '", f.student,
                            "' in the student (layers: ", some_node_names(student), ")"));
    if (vt.empty())
      throw ConfigError(msg(at, ".features[", i, "].teacher: no layer or value named '", f.teacher,
                            "' in the teacher (layers: ", some_node_names(teacher), ")"));
    const ir::Shape ss = shape_of(student, vs), st = shape_of(teacher, vt);
    if (ss.empty() || st.empty()) continue;  // unknown shapes: checked on the first batch
    bool agree = ss.size() == st.size() && ss.size() >= 2;
    const int64_t axis = width_axis(ss.size());
    for (size_t d = 1; agree && d < ss.size(); ++d)
      if (static_cast<int64_t>(d) != axis && ss[d] != st[d]) agree = false;
    if (!agree)
      throw ConfigError(msg(at, ".features[", i, "]: the student's '", f.student, "' has shape ", ir::shape_str(ss),
                            " and the teacher's '", f.teacher, "' ", ir::shape_str(st),
                            "; they must agree except in the width (axis ", axis,
                            "), which a 1x1 adapter maps"));
  }
}

at::Tensor soft_target_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                            double temperature) {
  const at::Tensor log_s = at::log_softmax(student_logits / temperature, 1);
  const at::Tensor log_t = at::log_softmax(teacher_logits / temperature, 1);
  const double batch = static_cast<double>(std::max<int64_t>(student_logits.size(0), 1));
  return at::kl_div(log_s, log_t, at::Reduction::Sum, /*log_target=*/true) *
         (temperature * temperature / batch);
}

struct Distiller::Impl {
  DistillOptions options;
  ir::Graph teacher;                     // a copy whose outputs are logits, then features
  std::unique_ptr<exec::Executor> teacher_ex;
  ir::Graph* student = nullptr;
  std::vector<std::string> student_outputs;  // as they were before the run
  std::vector<at::Tensor> adapters;          // undefined where the widths agree
  bool restored = false;
};

Distiller::Distiller(const ir::Graph& teacher, ir::Graph& student, const DistillOptions& o, uint64_t seed)
    : impl_(std::make_unique<Impl>()) {
  o.validate();
  check_distill_pair(teacher, student, o);
  impl_->options = o;
  impl_->student = &student;
  impl_->student_outputs = student.outputs;
  if (!o.needs_teacher()) return;
  impl_->teacher = teacher.clone();
  impl_->teacher.outputs.resize(1);
  for (const auto& f : o.features) {
    impl_->teacher.outputs.push_back(feature_value(teacher, f.teacher));
    student.outputs.push_back(feature_value(student, f.student));
  }
  impl_->teacher_ex = std::make_unique<exec::Executor>(impl_->teacher);

  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x5eedd157ULL);
  for (size_t i = 0; i < o.features.size(); ++i) {
    const ir::Shape ss = shape_of(student, feature_value(student, o.features[i].student));
    const ir::Shape st = shape_of(impl_->teacher, impl_->teacher.outputs[i + 1]);
    at::Tensor w;
    if (!ss.empty() && !st.empty()) {
      const int64_t axis = width_axis(ss.size());
      const int64_t in = ss[axis], out = st[axis];
      if (in != out) {
        // Kaiming-uniform like a fresh Linear / 1x1 Conv (PyTorch's default initialisation).
        const double bound = 1.0 / std::sqrt(static_cast<double>(in));
        w = at::empty({out, in}).uniform_(-bound, bound, gen);
        w.set_requires_grad(true);
      }
    }
    impl_->adapters.push_back(w);
  }
}

Distiller::~Distiller() { restore_outputs(); }

void Distiller::restore_outputs() {
  if (impl_->restored) return;
  impl_->student->outputs = impl_->student_outputs;
  impl_->restored = true;
}

std::vector<at::Tensor> Distiller::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& w : impl_->adapters)
    if (w.defined()) out.push_back(w);
  return out;
}

at::Tensor Distiller::loss(const std::vector<at::Tensor>& student_outputs, const at::Tensor& x,
                           const at::Tensor& y, double label_smoothing) {
  const DistillOptions& o = impl_->options;
  const at::Tensor& logits = student_outputs.at(0);
  at::Tensor total = at::cross_entropy_loss(logits, y, {}, at::Reduction::Mean, -100, label_smoothing) *
                     (1.0 - o.alpha);
  if (!o.needs_teacher()) return total;

  auto t0 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> teacher_out;
  {
    at::NoGradGuard no_grad;
    teacher_out = impl_->teacher_ex->run({x}, exec::Mode::kEval);
  }
  teacher_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (teacher_out[0].sizes() != logits.sizes())
    throw InputError(msg(where(o), ".teacher: the teacher outputs shape ",
                         teacher_out[0].sizes(), " for a batch where the student outputs ", logits.sizes()));
  if (o.alpha > 0.0) total = total + soft_target_loss(logits, teacher_out[0], o.temperature) * o.alpha;
  for (size_t i = 0; i < o.features.size(); ++i) {
    at::Tensor s = student_outputs.at(i + 1);
    const at::Tensor& t = teacher_out.at(i + 1);
    const at::Tensor& w = impl_->adapters[i];
    if (w.defined()) {
      if (s.dim() >= 4) {
        std::vector<int64_t> kernel = {w.size(0), w.size(1)};
        for (int64_t d = 2; d < s.dim(); ++d) kernel.push_back(1);
        s = at::convolution(s, w.view(kernel), {}, std::vector<int64_t>(s.dim() - 2, 1),
                            std::vector<int64_t>(s.dim() - 2, 0), std::vector<int64_t>(s.dim() - 2, 1), false,
                            std::vector<int64_t>(s.dim() - 2, 0), 1);
      } else {
        s = at::linear(s, w);
      }
    }
    if (s.sizes() != t.sizes())
      throw InputError(msg(where(o), ".features[", i, "]: the student's '",
                           o.features[i].student, "' gives shape ", s.sizes(), " (after its adapter) but the teacher's '",
                           o.features[i].teacher, "' gives ", t.sizes()));
    total = total + at::mse_loss(s, t) * o.features[i].weight;
  }
  return total;
}

}  // namespace squeeze::train
