#include "squeeze/exec/executor.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <map>

#include "squeeze/compress/quantize/int8_exec.h"
#include "squeeze/compress/quantize/quant_math.h"
#include "squeeze/util/error.h"

namespace squeeze::exec {

at::Tensor param_tensor(const ir::Node& node, const std::string& key, const KernelContext& ctx) {
  const ir::Param& p = node.param(key);
  at::Tensor v = ctx.training && p.mask ? p.value * *p.mask : p.value;
  // Quantized parameters are stored on their grid; while they train (QAT) they are a float shadow
  // that is fake-quantized here with a straight-through estimator.
  if (p.qspec && v.is_floating_point() && (ctx.training || p.value.requires_grad() ||
                                           (p.qspec->scale.defined() && p.qspec->scale.requires_grad())))
    return quant::fake_quantize(v, *p.qspec);
  return v;
}

at::Tensor optional_param(const ir::Node& node, const std::string& key, const KernelContext& ctx) {
  if (!node.has_param(key)) return at::Tensor();
  return param_tensor(node, key, ctx);
}

Executor::Executor(const ir::Graph& graph) : graph_(graph) {
  std::map<std::string, int> slot_of;
  auto slot = [&](const std::string& v) {
    auto it = slot_of.find(v);
    if (it != slot_of.end()) return it->second;
    int s = num_slots_++;
    slot_of[v] = s;
    return s;
  };
  for (const auto& in : graph.inputs) input_slots_.push_back(slot(in.name));
  std::map<int, size_t> last_use;
  for (const auto& node : graph.nodes) {
    Step step;
    step.node = &node;
    step.kernel = find_kernel(node.op);
    if (!step.kernel)
      throw UnsupportedError(msg("node '", node.name, "': the executor has no kernel for op '", node.op, "'"));
    for (const auto& in : node.inputs) {
      auto it = slot_of.find(in);
      if (it == slot_of.end())
        throw GraphError(msg("node '", node.name, "' (", node.op, ") reads value '", in, "' that is not defined before it"));
      step.in_slots.push_back(it->second);
      last_use[it->second] = steps_.size();
    }
    for (const auto& out : node.outputs) step.out_slots.push_back(slot(out));
    steps_.push_back(std::move(step));
  }
  for (const auto& out : graph.outputs) {
    auto it = slot_of.find(out);
    if (it == slot_of.end()) throw GraphError(msg("graph output '", out, "' is not produced by any node"));
    output_slots_.push_back(it->second);
    last_use[it->second] = steps_.size();  // never released
  }
  for (const auto& [s, i] : last_use)
    if (i < steps_.size()) steps_[i].release.push_back(s);
}

std::vector<at::Tensor> Executor::run(const std::vector<at::Tensor>& inputs, Mode mode) const {
  if (inputs.size() != input_slots_.size())
    throw InputError(msg("the model takes ", input_slots_.size(), " inputs; got ", inputs.size()));
  KernelContext ctx;
  ctx.training = mode == Mode::kTrain;
  std::vector<at::Tensor> slots(num_slots_);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& info = graph_.inputs[i];
    const at::Tensor& x = inputs[i];
    bool ok = x.dim() == static_cast<int64_t>(info.shape.size());
    for (size_t d = 0; ok && d < info.shape.size(); ++d)
      ok = info.shape[d] == ir::kDynamic || info.shape[d] == x.size(d);
    if (!ok)
      throw InputError(msg("input '", info.name, "' has shape ", x.sizes(), "; the model expects ",
                           ir::shape_str(info.shape)));
    slots[input_slots_[i]] = x.scalar_type() == info.dtype ? x : x.to(info.dtype);
  }
  std::vector<at::Tensor> args;
  for (const auto& step : steps_) {
    args.clear();
    for (int s : step.in_slots) args.push_back(slots[s]);
    // Quantized (quint8) values flow only into ops that take them; see quantize/int8_exec.h.
    bool any_quantized = false;
    for (const auto& a : args) any_quantized |= a.defined() && a.is_quantized();
    if (any_quantized && !quant::accepts_quantized(*step.node, args))
      for (auto& a : args)
        if (a.defined() && a.is_quantized()) a = a.dequantize();
    std::vector<at::Tensor> outs;
    try {
      if (any_quantized) outs = quant::quantized_op(*step.node, args, ctx);
      if (outs.empty()) outs = (*step.kernel)(*step.node, args, ctx);
    } catch (const squeeze::Error&) {
      throw;
    } catch (const c10::Error& e) {
      std::string shapes;
      for (const auto& a : args) shapes += msg(" ", a.sizes());
      throw Error(msg("node '", step.node->name, "' (", step.node->op, ") failed on inputs", shapes, ": ",
                      e.what_without_backtrace()));
    }
    SQZ_ASSERT(outs.size() == step.out_slots.size(), "kernel ", step.node->op, " output count");
    if (step.node->out_qspec && !outs.empty()) outs[0] = quant::apply_out_qspec(*step.node, outs[0], ctx);
    for (size_t i = 0; i < outs.size(); ++i) slots[step.out_slots[i]] = std::move(outs[i]);
    if (!ctx.training)
      for (int s : step.release) slots[s].reset();
  }
  std::vector<at::Tensor> out;
  out.reserve(output_slots_.size());
  for (int s : output_slots_)
    out.push_back(slots[s].defined() && slots[s].is_quantized() ? slots[s].dequantize() : slots[s]);
  return out;
}

at::Tensor Executor::forward(const at::Tensor& x, Mode mode) const { return run({x}, mode).at(0); }

std::vector<at::Tensor> trainable_parameters(ir::Graph& graph) {
  std::vector<at::Tensor> params;
  for (auto& node : graph.nodes)
    for (auto& [key, p] : node.params)
      if (p.trainable && p.value.is_floating_point()) {
        // A quantized parameter trains as a float shadow (fake-quantized in param_tensor); the
        // quantization pass snaps it back to its grid after fine-tuning. A scale that already
        // requires grad is learned (LSQ).
        p.value.requires_grad_(true);
        params.push_back(p.value);
        if (p.qspec && p.qspec->scale.defined() && p.qspec->scale.requires_grad())
          params.push_back(p.qspec->scale);
      }
  return params;
}

void apply_masks(ir::Graph& graph) {
  at::NoGradGuard no_grad;
  for (auto& node : graph.nodes)
    for (auto& [key, p] : node.params)
      if (p.mask) p.value.mul_(*p.mask);
}

void freeze(ir::Graph& graph) {
  for (auto& node : graph.nodes)
    for (auto& [key, p] : node.params)
      if (p.value.requires_grad()) p.value = p.value.detach();
}

}  // namespace squeeze::exec
