#include "squeeze/exec/executor.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "kernels_internal.h"
#include "squeeze/exec/int8.h"
#include "squeeze/ir/quant_math.h"
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

bool layout_agnostic(const std::string& op) {
  static const std::set<std::string> ops = {
      "Conv",    "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Relu",
      "Relu6",   "Clip",    "LeakyRelu", "Sigmoid", "Silu",    "HardSwish",   "HardSigmoid", "Gelu",    "Tanh",
      "Elu",     "Add",     "Mul",       "Dropout", "Identity", "Concat"};
  return ops.count(op) > 0;
}

Executor::Executor(const ir::Graph& graph, ExecutorOptions options) : graph_(graph), options_(options) {
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

  if (!options_.optimize_inference) return;
  for (auto& step : steps_) {
    step.any_layout = layout_agnostic(step.node->op);
    step.in_place = (step.node->op == "Relu" && step.node->inputs.size() == 1) ||
                    (step.node->op == "Add" && step.node->inputs.size() == 2);
  }
  // BatchNorm folding (eval only): the producer's output must feed this BatchNorm alone.
  std::map<int, int> producer_of, uses;
  for (size_t k = 0; k < steps_.size(); ++k) {
    for (int s : steps_[k].out_slots) producer_of[s] = static_cast<int>(k);
    for (int s : steps_[k].in_slots) ++uses[s];
  }
  for (int s : output_slots_) ++uses[s];
  // The step whose output step k alone reads (k has one input and no out_qspec), or -1.
  auto sole_producer = [&](size_t k) {
    const Step& step = steps_[k];
    if (step.node->out_qspec || step.in_slots.size() != 1) return -1;
    int in = step.in_slots[0];
    auto it = producer_of.find(in);
    return it == producer_of.end() || uses[in] != 1 ? -1 : it->second;
  };
  for (size_t k = 0; k < steps_.size(); ++k) {
    const ir::Node& bn = *steps_[k].node;
    int from = bn.op == "BatchNorm" ? sole_producer(k) : -1;
    if (from < 0) continue;
    Step& prod = steps_[static_cast<size_t>(from)];
    const ir::Node& p = *prod.node;
    bool ok = (p.op == "Conv" || p.op == "Linear") && p.outputs.size() == 1 && !p.out_qspec && p.has_param("weight") &&
              !p.param("weight").qspec && p.param("weight").value.is_floating_point() && prod.folds < 0;
    if (p.op == "Linear") ok = ok && bn.param("weight").value.dim() == 1;
    if (!ok) continue;
    prod.folds = static_cast<int>(k);
    steps_[k].fold_into = from;
  }
  // Float 2-D convolutions run prepacked (packed_conv) and apply an activation that alone reads them.
  for (size_t k = 0; k < steps_.size(); ++k) {
    const ir::Node& n = *steps_[k].node;
    steps_[k].packable = n.op == "Conv" && !n.out_qspec && n.outputs.size() == 1 && packed_conv_available();
  }
  for (size_t k = 0; k < steps_.size(); ++k) {
    int from = fusable_activation(steps_[k].node->op) ? sole_producer(k) : -1;
    if (from < 0) continue;
    if (steps_[static_cast<size_t>(from)].fold_into >= 0) {
      if (steps_[static_cast<size_t>(from)].node->out_qspec) continue;
      from = steps_[static_cast<size_t>(from)].fold_into;  // the Conv that computes the BatchNorm
    }
    Step& conv = steps_[static_cast<size_t>(from)];
    if (conv.packable && conv.fused_act < 0) conv.fused_act = static_cast<int>(k);
  }
  // Relu fusion candidates (int8 kernels apply it in their requantization): a quantized
  // Conv/Linear/Add whose output only this Relu reads, and a Relu that keeps its input's grid.
  for (size_t k = 0; k < steps_.size(); ++k) {
    int from = steps_[k].node->op == "Relu" ? sole_producer(k) : -1;
    if (from < 0) continue;
    Step& prod = steps_[static_cast<size_t>(from)];
    const ir::Node& p = *prod.node;
    if ((p.op == "Conv" || p.op == "Linear" || p.op == "Add") && p.out_qspec && p.outputs.size() == 1 &&
        prod.folds < 0 && prod.fold_into < 0)
      prod.relu = static_cast<int>(k);
  }
}

// Relu and same-shape Add in eval mode write into an input whose last use this is, when nothing
// else holds it: no new activation is allocated.
std::vector<at::Tensor> Executor::run_in_place(const Step& step, std::vector<at::Tensor>& slots,
                                               std::vector<at::Tensor>& args) const {
  auto released = [&](size_t i) {
    int s = step.in_slots[i];
    for (size_t j = 0; j < step.in_slots.size(); ++j)
      if (j != i && step.in_slots[j] == s) return false;
    return std::find(step.release.begin(), step.release.end(), s) != step.release.end();
  };
  auto writable = [&](size_t i) {
    if (!released(i)) return false;
    slots[step.in_slots[i]].reset();  // its last use: drop the slot's reference
    const at::Tensor& a = args[i];
    // Neither the tensor nor its storage may be shared: a view of a live value must stay intact.
    return a.defined() && a.use_count() == 1 && a.storage().use_count() == 1 && a.is_floating_point() &&
           !a.requires_grad() && !a.is_quantized();
  };
  if (step.node->op == "Relu" && writable(0)) return {at::relu_(args[0])};
  if (step.node->op == "Add" && args[0].defined() && args[1].defined() && args[0].sizes() == args[1].sizes() &&
      args[0].scalar_type() == args[1].scalar_type())
    for (size_t i : {0, 1})
      if (writable(i)) return {args[i].add_(args[1 - i])};
  return {};
}

const ir::Node& Executor::folded_node(size_t k) const {
  const Step& step = steps_[k];
  const ir::Node& layer = *step.node;
  const ir::Node& bn = *steps_[static_cast<size_t>(step.folds)].node;
  std::vector<const at::Tensor*> src = {&layer.param("weight").value, &bn.param("weight").value,
                                        &bn.param("bias").value, &bn.param("running_mean").value,
                                        &bn.param("running_var").value};
  if (layer.has_param("bias")) src.push_back(&layer.param("bias").value);
  std::vector<std::pair<const void*, uint32_t>> sources;
  for (const at::Tensor* t : src) sources.emplace_back(t->unsafeGetTensorImpl(), t->_version());
  auto it = folded_.find(k);
  if (it != folded_.end() && it->second.sources == sources) return it->second.node;
  at::NoGradGuard no_grad;
  Folded f;
  f.sources = sources;
  f.node = layer;
  f.node.outputs = bn.outputs;
  at::Tensor scale = bn.param("weight").value / at::sqrt(bn.param("running_var").value + bn.attr_float("epsilon", 1e-5));
  at::Tensor w = layer.param("weight").value;
  std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
  shape[0] = -1;
  f.node.param("weight").value = (w * scale.reshape(shape)).contiguous();
  f.node.param("weight").mask.reset();
  at::Tensor b = layer.has_param("bias") ? layer.param("bias").value : at::zeros_like(scale);
  ir::Param bias;
  bias.value = ((b - bn.param("running_mean").value) * scale + bn.param("bias").value).contiguous();
  f.node.params["bias"] = bias;
  return folded_[k] = std::move(f), folded_[k].node;
}

at::Tensor Executor::packed_conv(size_t k, const ir::Node& node, at::Tensor x, const ir::Node* act) const {
  if (!x.defined() || x.dim() != 4 || x.scalar_type() != at::kFloat || x.is_quantized() || x.is_mkldnn() ||
      node.attr_int("quant_dynamic", 0) != 0)
    return {};
  const ir::Param& w = node.param("weight");
  const ir::Param* b = node.has_param("bias") ? &node.param("bias") : nullptr;
  auto plain = [](const ir::Param& p) {
    return !p.qspec && p.value.scalar_type() == at::kFloat && !p.value.is_quantized() && !p.value.is_mkldnn();
  };
  if (!plain(w) || w.value.dim() != 4 || (b && !plain(*b))) return {};
  if (at::GradMode::is_enabled() &&
      (x.requires_grad() || w.value.requires_grad() || (b && b->value.requires_grad())))
    return {};
  x = x.contiguous(at::MemoryFormat::ChannelsLast);
  std::vector<std::pair<const void*, uint32_t>> sources;
  for (const ir::Param* p : {&w, b})
    if (p) {
      sources.emplace_back(p->value.unsafeGetTensorImpl(), p->value._version());
      sources.emplace_back(p->value.data_ptr(), 0);
    }
  auto run_entry = [&](const Packed& e) {
    if (!e.conv) return at::Tensor();
    conv_impl_[k] = &packed_conv_impl(*e.conv);
    return run_packed_conv(*e.conv, x);
  };
  // oneDNN fixes a primitive's thread split when it builds it: a new thread count builds anew.
  const int threads = at::get_num_threads();
  std::vector<Packed>& cache = packed_[k];
  for (const Packed& e : cache)
    if (e.sources == sources && e.threads == threads && x.sizes().equals(e.input_sizes)) return run_entry(e);
  // New weights invalidate every packing of this step; a few input shapes (batch sizes) are kept.
  cache.erase(std::remove_if(cache.begin(), cache.end(), [&](const Packed& e) { return e.sources != sources; }),
              cache.end());
  if (cache.size() >= 4) cache.erase(cache.begin());
  ConvGeometry g;
  g.strides = node.attr_ints("strides", g.strides);
  g.dilations = node.attr_ints("dilations", g.dilations);
  g.pads = node.attr_ints("pads", g.pads);
  g.groups = node.attr_int("group", 1);
  FusedActivation fa;
  if (act) {
    fa.op = act->op;
    if (act->op == "LeakyRelu") fa.alpha = act->attr_float("alpha", 0.01);
    if ((fa.has_min = act->op == "Clip" && act->has_attr("min"))) fa.alpha = act->attr_float("min", 0);
    if ((fa.has_max = act->op == "Clip" && act->has_attr("max"))) fa.beta = act->attr_float("max", 0);
  }
  Packed fresh;
  fresh.sources = std::move(sources);
  fresh.input_sizes = x.sizes().vec();
  fresh.threads = threads;
  if (g.strides.size() == 2 && g.dilations.size() == 2 && g.pads.size() == 4) {
    at::NoGradGuard no_grad;
    fresh.conv = pack_conv(w.value, b ? b->value : at::Tensor(), g, x.sizes(), act ? &fa : nullptr);
  }
  cache.push_back(std::move(fresh));
  return run_entry(cache.back());
}

std::map<std::string, int64_t> Executor::conv_implementations() const {
  std::map<std::string, int64_t> out;
  for (const std::string* impl : conv_impl_)
    if (impl) ++out[*impl];
  return out;
}

std::vector<at::Tensor> Executor::run(const std::vector<at::Tensor>& inputs, Mode mode) const {
  if (inputs.size() != input_slots_.size())
    throw InputError(msg("the model takes ", input_slots_.size(), " inputs; got ", inputs.size()));
  KernelContext ctx;
  ctx.training = mode == Mode::kTrain;
  ctx.channels_last = !ctx.training && options_.optimize_inference;
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
  std::vector<char> fused(steps_.size(), 0);  // Relu steps applied by their producer this run
  if (node_us_) node_us_->resize(steps_.size(), 0.0);
  conv_impl_.resize(steps_.size(), nullptr);
  for (size_t k = 0; k < steps_.size(); ++k) {
    const Step& step = steps_[k];
    auto t0 = node_us_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    if (!ctx.training && step.fold_into >= 0) continue;  // done by its producer
    if (fused[k]) {
      for (int s : step.release) slots[s].reset();
      continue;
    }
    ctx.fuse_relu = !ctx.training && step.relu >= 0;
    const ir::Node& node = !ctx.training && step.folds >= 0 ? folded_node(k) : *step.node;
    const std::vector<int>& out_slots =
        !ctx.training && step.folds >= 0 ? steps_[static_cast<size_t>(step.folds)].out_slots : step.out_slots;
    args.clear();
    for (int s : step.in_slots) args.push_back(slots[s]);
    if (!ctx.training && !step.any_layout)
      for (auto& a : args)
        if (a.defined() && a.dim() == 4 && !a.is_quantized()) a = a.contiguous();
    // Quantized (quint8) values flow only into ops that take them; see exec/int8.h.
    bool any_quantized = false;
    for (const auto& a : args) any_quantized |= a.defined() && a.is_quantized();
    if (any_quantized && !quant::accepts_quantized(node, args))
      for (auto& a : args)
        if (a.defined() && a.is_quantized()) a = quant::from_quint8(a);
    std::vector<at::Tensor> outs;
    bool act_applied = false;
    if (!ctx.training && !any_quantized && step.in_place) outs = run_in_place(step, slots, args);
    try {
      if (!ctx.training && step.packable && !any_quantized)
        if (at::Tensor y = packed_conv(k, node, args.at(0),
                                       step.fused_act >= 0 ? steps_[static_cast<size_t>(step.fused_act)].node : nullptr);
            y.defined()) {
          outs = {y};
          act_applied = step.fused_act >= 0;
        }
      if (any_quantized) outs = quant::quantized_op(node, args, ctx);
      if (!ctx.training && node.op == "Conv" && (outs.empty() || any_quantized)) {
        static const std::string plain = "at::convolution", quantized = "quantized (exec/int8.h)";
        conv_impl_[k] = any_quantized || node.param("weight").qspec ? &quantized : &plain;
      }
      if (outs.empty()) outs = (*step.kernel)(node, args, ctx);
    } catch (const squeeze::Error&) {
      throw;
    } catch (const c10::Error& e) {
      std::string shapes;
      for (const auto& a : args) shapes += msg(" ", a.sizes());
      throw Error(msg("node '", node.name, "' (", node.op, ") failed on inputs", shapes, ": ",
                      e.what_without_backtrace()));
    }
    SQZ_ASSERT(outs.size() == out_slots.size(), "kernel ", node.op, " output count");
    // An int8 kernel's (quantized) output under fuse_relu has the Relu applied; a float output
    // that apply_out_qspec quantizes next has not.
    bool relu_applied = ctx.fuse_relu && outs.size() == 1 && outs[0].is_quantized();
    if (node.out_qspec && !outs.empty()) outs[0] = quant::apply_out_qspec(node, outs[0], ctx);
    if (relu_applied || act_applied) {
      int relu_step = relu_applied ? step.relu : step.fused_act;
      const Step& relu = steps_[static_cast<size_t>(relu_step)];
      fused[static_cast<size_t>(relu_step)] = 1;
      slots[relu.out_slots[0]] = std::move(outs[0]);
      outs.clear();
    }
    for (size_t i = 0; i < outs.size(); ++i) slots[out_slots[i]] = std::move(outs[i]);
    if (!ctx.training)
      for (int s : step.release) slots[s].reset();
    if (node_us_)
      (*node_us_)[k] += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  std::vector<at::Tensor> out;
  out.reserve(output_slots_.size());
  for (int s : output_slots_)
    out.push_back(!slots[s].defined()       ? slots[s]
                  : slots[s].is_quantized() ? quant::from_quint8(slots[s]).contiguous()
                                            : slots[s].contiguous());
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
