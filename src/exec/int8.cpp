// Quantized execution hooks of the executor: real int8 Conv2d/Linear on libtorch's quantized
// kernels (ONEDNN), dynamic int8 Linear, and the activation quantization of out_qspec.
// The contract is in include/squeeze/exec/int8.h.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "kernels_internal.h"
#include "squeeze/exec/int8.h"
#include "squeeze/exec/fixed.h"

#include "squeeze/ir/fixed_point.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"

namespace squeeze::quant {

namespace {

std::atomic<bool> g_enabled{true};

// libtorch's weight packing, through the dispatcher (no header declares these ops).
c10::intrusive_ptr<LinearPackedParamsBase> linear_prepack(const at::Tensor& w, const c10::optional<at::Tensor>& b) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("quantized::linear_prepack", "")
                       .typed<c10::intrusive_ptr<LinearPackedParamsBase>(at::Tensor, c10::optional<at::Tensor>)>();
  return op.call(w, b);
}

c10::intrusive_ptr<ConvPackedParamsBase<2>> conv2d_prepack(const at::Tensor& w, const c10::optional<at::Tensor>& b,
                                                          c10::List<int64_t> stride, c10::List<int64_t> padding,
                                                          c10::List<int64_t> dilation, int64_t groups) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("quantized::conv2d_prepack", "")
                       .typed<c10::intrusive_ptr<ConvPackedParamsBase<2>>(
                           at::Tensor, c10::optional<at::Tensor>, c10::List<int64_t>, c10::List<int64_t>,
                           c10::List<int64_t>, int64_t)>();
  return op.call(w, b, std::move(stride), std::move(padding), std::move(dilation), groups);
}

// The ISA oneDNN dispatches to, from libdnnl (loaded by libtorch); looked up at run time so the
// build needs no oneDNN headers.
std::string onednn_isa() {
  using GetIsa = int (*)();
  using IsaToStr = const char* (*)(int);
  auto get = reinterpret_cast<GetIsa>(dlsym(RTLD_DEFAULT, "dnnl_get_effective_cpu_isa"));
  auto str = reinterpret_cast<IsaToStr>(dlsym(RTLD_DEFAULT, "dnnl_cpu_isa2str"));
  if (!get || !str) return "unknown";
  const char* s = str(get());
  std::string isa = s ? s : "unknown";
  return isa.rfind("cpu_isa_", 0) == 0 ? isa.substr(8) : isa;
}

// Quantized result of y = sum_k 255 * 127 = k * 32385 through the kernels oneDNN dispatches;
// the output scale puts the exact answer at q = 200. Kernels that sum pairs of u8 x s8 products
// into a saturating int16 (vpmaddubsw: 2 * 32385 > 32767) land near q = 101 instead.
int64_t probe_static_linear() {
  const int64_t k = 64;
  const double exact = double(k) * 255.0 * 127.0;
  at::Tensor x = at::_make_per_tensor_quantized_tensor(at::full({1, k}, 255, at::kByte), 1.0, 0);
  at::Tensor w = at::quantize_per_tensor(at::full({4, k}, 127.0f), 1.0, 0, at::kQInt8);
  at::Tensor y = linear_prepack(w, c10::nullopt)->apply(x, exact / 200.0, 0);
  return y.int_repr().to(at::kLong).min().item<int64_t>();
}

int64_t probe_static_conv() {
  const int64_t c = 32;
  const double exact = double(c) * 9.0 * 255.0 * 127.0;
  at::Tensor x = at::_make_per_tensor_quantized_tensor(at::full({1, c, 4, 4}, 255, at::kByte), 1.0, 0);
  at::Tensor w = at::quantize_per_tensor(at::full({16, c, 3, 3}, 127.0f), 1.0, 0, at::kQInt8);
  auto packed = conv2d_prepack(w, c10::nullopt, c10::List<int64_t>({1, 1}), c10::List<int64_t>({0, 0}),
                             c10::List<int64_t>({1, 1}), 1);
  at::Tensor y = packed->apply(x.contiguous(at::MemoryFormat::ChannelsLast), exact / 200.0, 0);
  return y.int_repr().to(at::kLong).min().item<int64_t>();
}

// Dynamic linear on a batch whose range [0, 1] quantizes to 0..255; weights 1.0 -> 127.
double probe_dynamic_linear() {
  const int64_t k = 64;
  at::Tensor x = at::ones({1, k});
  x[0][0] = 0.0f;
  at::Tensor w = at::quantize_per_tensor(at::ones({4, k}), 1.0 / 127.0, 0, at::kQInt8);
  at::Tensor y = linear_prepack(w, c10::nullopt)->apply_dynamic(x, /*reduce_range=*/false);
  return y.min().item<double>() / double(k - 1);  // 1.0 when exact
}

Int8Probe run_probe() {
  Int8Probe p;
  for (auto e : at::globalContext().supportedQEngines())
    if (e == at::QEngine::ONEDNN) p.available = true;
  if (!p.available) return p;
  at::globalContext().setQEngine(at::QEngine::ONEDNN);
  p.engine = "onednn";
  p.linear_q = probe_static_linear();
  p.conv_q = probe_static_conv();
  p.dynamic_ratio = probe_dynamic_linear();
  p.saturates = std::llabs(p.linear_q - 200) > 1 || std::llabs(p.conv_q - 200) > 1 ||
                std::fabs(p.dynamic_ratio - 1.0) > 0.01;
  p.isa = onednn_isa();
  return p;
}

bool select_engine() { return int8_probe().available; }

// quint8 is the activation type of libtorch's static int8 kernels.
bool is_quint8_spec(const ir::QuantSpec& s) {
  // Fixed-point specs (rounding names their type, ir/fixed_point.h) fail the rounding test.
  return s.bits == 8 && !s.is_signed && !s.narrow_range && s.scale.defined() && s.scale.numel() == 1 &&
         s.rounding == "half_even";
}

// Narrower signed symmetric grids are subsets of int8 with the same scale, so 2..8-bit weights run
// on the int8 kernels exactly.
bool is_int8_weight_spec(const ir::QuantSpec& s, int64_t out_channels) {
  if (fixed::is_fixed(s)) return false;  // run by the exact fixed-point kernels (exec/fixed.h)
  if (s.bits < 2 || s.bits > 8 || !s.is_signed || !s.scale.defined()) return false;
  if (s.axis > 0) return false;
  if (s.axis == 0 && s.scale.numel() != out_channels && s.scale.numel() != 1) return false;
  if (s.zero_point.defined() && s.zero_point.ne(0).any().item<bool>()) return false;
  return true;
}

bool conv2d_ok(const ir::Node& n) {
  const ir::Param& w = n.param("weight");
  if (w.value.dim() != 4) return false;
  auto pads = n.attr_ints("pads", {0, 0, 0, 0});
  return pads.size() == 4 && pads[0] == pads[2] && pads[1] == pads[3];
}

bool weight_ready(const ir::Node& n) {
  if (!n.has_param("weight")) return false;
  const ir::Param& w = n.param("weight");
  return w.qspec && w.value.is_floating_point() && !w.value.requires_grad() &&
         is_int8_weight_spec(*w.qspec, w.value.size(0));
}

// Per node: the weight's largest integer magnitude on its grid and, once needed, its packed
// form; rebuilt when the weight tensor, its version or its scale changes.
struct Cached {
  at::Tensor weight, scale;
  uint32_t version = 0;
  int64_t max_abs_q = 0;
  c10::intrusive_ptr<LinearPackedParamsBase> linear;
  c10::intrusive_ptr<ConvPackedParamsBase<2>> conv;
};
std::mutex g_mutex;
std::unordered_map<const ir::Node*, Cached> g_cache;

// Call with g_mutex held.
Cached& cached_locked(const ir::Node& n) {
  const ir::Param& p = n.param("weight");
  auto it = g_cache.find(&n);
  if (it != g_cache.end() && it->second.weight.is_same(p.value) && it->second.version == p.value._version() &&
      it->second.scale.is_same(p.qspec->scale))
    return it->second;
  if (g_cache.size() > 1024) g_cache.clear();  // graphs come and go (sensitivity analysis)
  Cached c;
  c.weight = p.value;
  c.scale = p.qspec->scale;
  c.version = p.value._version();
  c.max_abs_q = quantize(p.value.detach(), *p.qspec).abs().max().item<int64_t>();
  return g_cache[&n] = std::move(c);
}

// Pairs of uint8 x int8 products stay below int16's 32767 when |q_w| <= 64 (2 * 255 * 64).
constexpr int64_t kSaturationSafeWeight = 64;

// Is this node's weight exact on this CPU's int8 kernels? Decided by its integer values, so a
// weight whose values fit a 7-bit grid (ONNX Runtime's reduce_range export) runs int8 too.
bool exact_weight_node(const ir::Node& n) {
  if (!weight_ready(n)) return false;
  if (!int8_saturates()) return true;
  std::lock_guard<std::mutex> lock(g_mutex);
  return cached_locked(n).max_abs_q <= kSaturationSafeWeight;
}

bool static_int8_node(const ir::Node& n) {
  if (n.op != "Conv" && n.op != "Linear") return false;
  if (!n.out_qspec || !is_quint8_spec(*n.out_qspec) || n.attr_int("quant_dynamic", 0) != 0) return false;
  if (n.op == "Conv" && !conv2d_ok(n)) return false;
  return exact_weight_node(n);
}

at::Tensor quantized_weight(const ir::Param& p) {
  const ir::QuantSpec& s = *p.qspec;
  at::Tensor w = p.value.detach().contiguous();
  if (s.axis == 0 && s.scale.numel() > 1)
    return at::quantize_per_channel(w, s.scale.to(at::kDouble).reshape(-1), at::zeros({s.scale.numel()}, at::kLong), 0,
                                    at::kQInt8);
  return at::quantize_per_tensor(w, s.scale.reshape({}).item<double>(), 0, at::kQInt8);
}

Cached& packed_for(const ir::Node& n) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Cached& pk = cached_locked(n);
  if (pk.linear || pk.conv) return pk;
  select_engine();
  const ir::Param& p = n.param("weight");
  at::Tensor qw = quantized_weight(p);
  c10::optional<at::Tensor> bias;
  if (n.has_param("bias")) bias = n.param("bias").value.detach().to(at::kFloat).contiguous();
  if (n.op == "Linear") {
    pk.linear = linear_prepack(qw, bias);
  } else {
    auto strides = n.attr_ints("strides", {1, 1});
    auto pads = n.attr_ints("pads", {0, 0, 0, 0});
    auto dil = n.attr_ints("dilations", {1, 1});
    pk.conv = conv2d_prepack(qw, bias, c10::List<int64_t>(strides), c10::List<int64_t>({pads[0], pads[1]}),
                           c10::List<int64_t>(dil), n.attr_int("group", 1));
  }
  return pk;
}

// The batch's own uint8 affine spec (dynamic quantization): ONNX's DynamicQuantizeLinear in
// float32, so exported and imported dynamic models compute the same grid.
ir::QuantSpec dynamic_spec(const at::Tensor& x) { return exec::dynamic_quantize_spec(x); }

}  // namespace

const Int8Probe& int8_probe() {
  static const Int8Probe probe = run_probe();
  return probe;
}

bool int8_saturates() { return int8_probe().available && int8_probe().saturates; }

std::map<std::string, std::string> int8_environment() {
  const Int8Probe& p = int8_probe();
  if (!p.available) return {{"int8_engine", "none"}};
  return {{"int8_engine", p.engine}, {"int8_isa", p.isa}, {"int8_saturates", p.saturates ? "true" : "false"}};
}

// libtorch 1.13's quantize_per_tensor and dequantize run a scalar loop (about 4 ns per element
// here: 0.9 ms for one 64 x 3 x 32 x 32 batch); these vectorised ATen expressions are 5-10x
// faster and round exactly as quant::quantize (x / scale, half to even), so the int8 path and the
// simulation quantize alike.
at::Tensor to_quint8(const at::Tensor& x, double scale, int64_t zero_point) {
  at::Tensor q = at::clamp(at::round(x / scale) + double(zero_point), 0.0, 255.0).to(at::kByte);
  return at::_make_per_tensor_quantized_tensor(q, scale, zero_point);
}

at::Tensor from_quint8(const at::Tensor& q) {
  if (q.scalar_type() != at::kQUInt8 || q.qscheme() != at::kPerTensorAffine) return q.dequantize();
  // The quint8 storage read as uint8 in place (no int_repr copy); q outlives the view.
  at::Tensor raw = at::from_blob(q.data_ptr(), q.sizes(), q.strides(), at::TensorOptions().dtype(at::kByte));
  return (raw.to(at::kFloat) - double(q.q_zero_point())) * q.q_scale();
}

bool int8_available() { return select_engine(); }
void set_int8_enabled(bool enabled) { g_enabled = enabled; }
bool int8_enabled() { return g_enabled && int8_available(); }

bool keeps_grid(const std::string& op) {
  return op == "Relu" || op == "MaxPool" || op == "Flatten" || op == "Reshape" || op == "Dropout" ||
         op == "Identity";
}

bool accepts_quantized(const ir::Node& node, const std::vector<at::Tensor>& inputs) {
  if (keeps_grid(node.op)) return node.op != "MaxPool" || inputs[0].dim() == 4;
  if (node.op == "Conv" || node.op == "Linear") return static_int8_node(node) && inputs.size() == 1;
  if (node.op == "Add")
    return inputs.size() == 2 && inputs[0].is_quantized() && inputs[1].is_quantized() && node.out_qspec &&
           is_quint8_spec(*node.out_qspec) && inputs[0].sizes().equals(inputs[1].sizes());
  return false;
}

std::vector<at::Tensor> quantized_op(const ir::Node& node, const std::vector<at::Tensor>& inputs,
                                     const exec::KernelContext& ctx) {
  if (node.op != "Add" || ctx.training || inputs.size() != 2 || !inputs[0].is_quantized() ||
      !inputs[1].is_quantized())
    return {};
  static auto add = c10::Dispatcher::singleton()
                        .findSchemaOrThrow("quantized::add", "")
                        .typed<at::Tensor(at::Tensor, at::Tensor, double, int64_t)>();
  static auto add_relu = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("quantized::add_relu", "")
                             .typed<at::Tensor(at::Tensor, at::Tensor, double, int64_t)>();
  const ir::QuantSpec& s = *node.out_qspec;
  return {(ctx.fuse_relu ? add_relu : add)
              .call(inputs[0], inputs[1], s.scale.item<double>(), s.zero_point.defined() ? s.zero_point.item<int64_t>() : 0)};
}

at::Tensor quantized_forward(const ir::Node& n, const at::Tensor& x, const exec::KernelContext& ctx) {
  if (x.is_quantized()) {
    // accepts_quantized() let it through: the static int8 path.
    Cached& pk = packed_for(n);
    double os = n.out_qspec->scale.item<double>();
    int64_t oz = n.out_qspec->zero_point.defined() ? n.out_qspec->zero_point.item<int64_t>() : 0;
    const at::Tensor& qx = x;
    // With fuse_relu the requantization clamps at the zero point: the Relu, for free.
    if (n.op == "Linear") {
      auto linear = [&](const at::Tensor& in) {
        return ctx.fuse_relu ? pk.linear->apply_relu(in, os, oz) : pk.linear->apply(in, os, oz);
      };
      if (qx.dim() == 2) return linear(qx);
      std::vector<int64_t> shape(qx.sizes().begin(), qx.sizes().end());
      shape.back() = n.param("weight").value.size(0);
      return linear(qx.reshape({-1, qx.size(-1)})).reshape(shape);
    }
    // No .contiguous(): ONEDNN returns channels-last tensors and prefers them as inputs.
    return ctx.fuse_relu ? pk.conv->apply_relu(qx, os, oz) : pk.conv->apply(qx, os, oz);
  }
  if (ctx.training || n.op != "Linear" || n.attr_int("quant_dynamic", 0) == 0 || !n.has_param("weight")) return {};
  const ir::Param& w = n.param("weight");
  if (!w.qspec || w.value.requires_grad()) return {};
  if (int8_enabled() && exact_weight_node(n) && x.dim() >= 2) {
    Cached& pk = packed_for(n);
    at::Tensor xf = x.contiguous();
    if (xf.dim() == 2) return pk.linear->apply_dynamic(xf, false);
    std::vector<int64_t> shape(xf.sizes().begin(), xf.sizes().end());
    shape.back() = w.value.size(0);
    return pk.linear->apply_dynamic(xf.reshape({-1, xf.size(-1)}), false).reshape(shape);
  }
  // Simulated dynamic quantization: the batch's uint8 grid, float arithmetic.
  at::Tensor xq = fake_quantize(x, dynamic_spec(x));
  return at::linear(xq, w.value, n.has_param("bias") ? n.param("bias").value : at::Tensor());
}

at::Tensor apply_out_qspec(const ir::Node& n, const at::Tensor& y, const exec::KernelContext& ctx) {
  const ir::QuantSpec& s = *n.out_qspec;
  if (y.is_quantized()) {
    // Produced by an int8 kernel with this very spec.
    return y;
  }
  if (!ctx.training && is_quint8_spec(s) && int8_enabled() && y.scalar_type() == at::kFloat) {
    int64_t z = s.zero_point.defined() ? s.zero_point.item<int64_t>() : 0;
    // Images enter the int8 convolutions channels-last, the layout their kernels work in (an
    // NCHW quint8 input costs the first convolution a reorder).
    at::Tensor v = ctx.channels_last && y.dim() == 4 ? y.contiguous(at::MemoryFormat::ChannelsLast) : y;
    return to_quint8(v, s.scale.item<double>(), z);
  }
  return fake_quantize(y, s);
}

const ir::QuantSpec* input_qspec(const ir::Graph& graph, const ir::Node& node) {
  if (node.inputs.empty()) return nullptr;
  std::string v = node.inputs[0];
  for (int guard = 0; guard < 64; ++guard) {
    const ir::Node* p = graph.producer(v);
    if (!p) return nullptr;
    if (p->out_qspec && p->outputs[0] == v) return &*p->out_qspec;
    if (!keeps_grid(p->op) || p->inputs.empty()) return nullptr;
    v = p->inputs[0];
  }
  return nullptr;
}

std::string planned_execution(const ir::Graph& graph, const ir::Node& node) {
  // Exact integer arithmetic of the node's ap_fixed types (exec/fixed.h).
  if (exec::is_fixed_layer(node)) return "fixed-point";
  if (!node.has_param("weight") || !node.param("weight").qspec) {
    return node.out_qspec ? "simulated" : "float";
  }
  if (node.attr_int("quant_dynamic", 0) != 0) {
    // Only Linear has an int8 dynamic kernel (quantized_forward); a dynamic Conv is simulated.
    return node.op == "Linear" && int8_enabled() && exact_weight_node(node) ? "int8-dynamic" : "simulated";
  }
  const ir::QuantSpec* in = input_qspec(graph, node);
  if (int8_enabled() && static_int8_node(node) && in && is_quint8_spec(*in)) return "int8";
  return "simulated";
}

}  // namespace squeeze::quant
