// IR -> ONNX (opset 13, float). Every IR op maps to one ONNX op or a short standard decomposition
// (LayerNorm, Gelu, Silu, HardSwish, Mish and Relu6 have no opset-13 op of their own). Parameters
// become initializers with their masks applied; quantized parameters are written dequantized.
// The batch dimension of inputs and outputs is symbolic ("batch"). The file is checked with the
// ONNX checker before it is written, and written atomically.
//
// Quantized graphs (compress/quantize): with OnnxExportOptions::qdq, every quantized weight is an
// int8/uint8 initializer followed by DequantizeLinear (per-channel: 1-D scale and axis), and every
// out_qspec becomes QuantizeLinear + DequantizeLinear after its value (widths below 8 bits are
// clipped to their own range first with Clip, since QuantizeLinear saturates at 8 bits), the QDQ
// format ONNX Runtime reads. export_qonnx writes QONNX Quant nodes instead (domain
// qonnx.custom_op.general; inputs x, scale, zero_point, bit_width; attributes signed, narrow,
// rounding_mode), any width 2..8, the format hls4ml and FINN read. Both re-import into squeeze
// (onnx_import.cpp) as the same quantized graph.
//
// Dynamic int8 Linear and Conv layers (quant_dynamic = 1) are written as ONNX Runtime's dynamic
// quantizer writes them: DynamicQuantizeLinear on the input, MatMulInteger (ConvInteger, with the
// conv's attributes) with the int8 weight, Cast, Mul by both scales, Add bias (per-channel
// operands shaped [1, C, 1, 1] for a Conv). What a format cannot express is refused with UnsupportedError instead of
// written as a different model: QDQ activations rounded half up or quantized per channel, QONNX
// unsigned narrow ranges. QONNX has no dynamic quantization op: there the input is quantized with
// DynamicQuantizeLinear + DequantizeLinear in front of the float layer.
#include <ATen/ATen.h>
#include <onnx/checker.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include <unistd.h>

#include "onnx_internal.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/exec/int8.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/qonnx.h"
#include "squeeze/ir/fixed_point.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"

namespace squeeze::io {

namespace {

using namespace onnx_detail;
using onnx::NodeProto;
using onnx::TensorProto;

// The float value a parameter stands for: masked, and dequantized if stored as integers.
at::Tensor effective(const ir::Param& p) {
  at::Tensor v = p.value.detach();
  if (!v.is_floating_point() && p.qspec && p.qspec->scale.defined()) {
    at::Tensor scale = p.qspec->scale.to(at::kFloat), zp = p.qspec->zero_point.defined()
                                                             ? p.qspec->zero_point.to(at::kFloat)
                                                             : at::zeros_like(scale);
    if (p.qspec->axis >= 0 && scale.numel() > 1) {
      std::vector<int64_t> s(v.dim(), 1);
      s[p.qspec->axis] = scale.numel();
      scale = scale.reshape(s);
      zp = zp.reshape(s);
    }
    v = (v.to(at::kFloat) - zp) * scale;
  }
  if (p.mask) v = v * p.mask->to(v.scalar_type());
  return v.contiguous();
}

enum class QuantFormat { kFloat, kQdq, kQonnx };

bool quantized_param(const ir::Param& p) {
  return p.qspec && p.qspec->scale.defined() && p.value.is_floating_point() && p.qspec->bits <= 8;
}

class Exporter {
 public:
  explicit Exporter(const ir::Graph& graph, QuantFormat format = QuantFormat::kFloat) : g_(graph), format_(format) {
    g_.shapes.clear();
    ir::infer_shapes(g_);
  }

  onnx::ModelProto build();

 private:
  std::string fresh(const std::string& base) {
    std::string c = base;
    for (int i = 1; used_.count(c); ++i) c = base + "_" + std::to_string(i);
    used_.insert(c);
    return c;
  }
  std::string init(const at::Tensor& t, const std::string& base) {
    std::string name = fresh(base);
    TensorProto* p = gp_->add_initializer();
    tensor_to_proto(t, p);
    p->set_name(name);
    return name;
  }
  std::string ints(const std::vector<int64_t>& v, const std::string& base) {
    return init(at::tensor(v, at::kLong), base);
  }
  std::string scalar(double v, const std::string& base) { return init(at::scalar_tensor(v, at::kFloat), base); }
  NodeProto* add(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                 const std::string& name) {
    NodeProto* n = gp_->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : in) n->add_input(i);
    for (const auto& o : out) n->add_output(o);
    return n;
  }
  // A helper node inside the decomposition of IR node `n`: returns its (fresh) output.
  std::string step(const ir::Node& n, const std::string& op, const std::vector<std::string>& in,
                   const std::string& tag) {
    std::string out = fresh(n.name + "/" + tag);
    add(op, in, {out}, n.name + "/" + tag);
    return out;
  }
  static void set_i(NodeProto* n, const std::string& k, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void set_f(NodeProto* n, const std::string& k, double v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void set_s(NodeProto* n, const std::string& k, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void set_ints(NodeProto* n, const std::string& k, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  // Copies the listed IR attributes that are present.
  static void copy_attrs(const ir::Node& src, NodeProto* dst, const std::vector<std::string>& keys) {
    for (const auto& k : keys) {
      auto it = src.attrs.find(k);
      if (it == src.attrs.end()) continue;
      if (auto* i = std::get_if<int64_t>(&it->second)) set_i(dst, k, *i);
      else if (auto* d = std::get_if<double>(&it->second)) set_f(dst, k, *d);
      else if (auto* s = std::get_if<std::string>(&it->second)) set_s(dst, k, *s);
      else if (auto* v = std::get_if<std::vector<int64_t>>(&it->second)) set_ints(dst, k, *v);
    }
  }
  size_t rank(const std::string& v) const { return g_.shape_of(v).size(); }
  void export_node(const ir::Node& n);
  void export_quantized_node(const ir::Node& n);
  // A parameter as an initializer, or (quantized formats) its integers and a dequantizing node.
  std::string param_value(const ir::Node& n, const std::string& key, bool transpose = false);
  // QuantizeLinear/DequantizeLinear (or Quant) from value `x` to value `out` for a spec.
  void quantize_value(const ir::QuantSpec& spec, const std::string& x, const std::string& out, const std::string& name,
                      int64_t rank = 0);
  // QONNX Quant of a fixed-point type (ir/fixed_point.h); UnsupportedError for modes Quant lacks.
  void quantize_fixed(const ir::QuantSpec& spec, const std::string& x, const std::string& out, const std::string& name);
  void value_info(onnx::ValueInfoProto* vi, const std::string& name, const ir::Shape& shape, at::ScalarType type);
  // A Linear or Conv with quant_dynamic = 1, the way ONNX Runtime's dynamic quantizer writes it
  // (DynamicQuantizeLinear -> MatMulInteger/ConvInteger -> Cast -> Mul -> Add); in QONNX, the
  // float layer on DynamicQuantizeLinear + DequantizeLinear of its input.
  void export_dynamic_layer(const ir::Node& n);
  // DynamicQuantizeLinear of the layer's input: its {uint8 values, scale, zero point}.
  std::vector<std::string> dynamic_quantize_input(const ir::Node& n);
  bool dynamic_layer(const ir::Node& n) const {
    return format_ != QuantFormat::kFloat && n.attr_int("quant_dynamic", 0) != 0 && n.has_param("weight") &&
           n.param("weight").qspec;
  }

  ir::Graph g_;
  onnx::GraphProto* gp_ = nullptr;
  std::set<std::string> used_;
  std::map<std::string, at::ScalarType> dtype_;
  QuantFormat format_ = QuantFormat::kFloat;
};

std::string Exporter::param_value(const ir::Node& n, const std::string& key, bool transpose) {
  const ir::Param& p = n.param(key);
  const bool fixed_qonnx = format_ == QuantFormat::kQonnx && p.qspec && fixed::is_fixed(*p.qspec) &&
                           p.value.is_floating_point();
  if (format_ == QuantFormat::kFloat || !(quantized_param(p) || fixed_qonnx)) {
    at::Tensor v = effective(p);
    return init(transpose ? v.t().contiguous() : v, n.name + "." + key + (transpose ? "_t" : ""));
  }
  ir::QuantSpec spec = *p.qspec;
  at::Tensor v = effective(p);
  std::string out = fresh(n.name + "." + key + (transpose ? "_t" : ""));
  if (transpose) {
    v = v.t().contiguous();
    if (spec.axis >= 0 && spec.scale.numel() > 1) spec.axis = 1 - spec.axis;
  }
  if (format_ == QuantFormat::kQonnx) {
    quantize_value(spec, init(v, n.name + "." + key + "_float"), out, n.name + "/" + key + "_quant", v.dim());
    return out;
  }
  at::Tensor q = quant::quantize(v, spec).to(spec.is_signed ? at::kChar : at::kByte);
  bool per_channel = spec.axis >= 0 && spec.scale.numel() > 1;
  at::Tensor scale = per_channel ? spec.scale.to(at::kFloat).reshape({-1}) : spec.scale.to(at::kFloat).reshape({});
  at::Tensor zp = spec.zero_point.defined() ? spec.zero_point.to(at::kLong) : at::zeros_like(scale, at::kLong);
  zp = (per_channel ? zp.reshape({-1}) : zp.reshape({})).to(q.scalar_type());
  NodeProto* dq = add("DequantizeLinear",
                      {init(q, n.name + "." + key + "_quantized"), init(scale, n.name + "." + key + "_scale"),
                       init(zp, n.name + "." + key + "_zero_point")},
                      {out}, n.name + "/" + key + "_dequantize");
  if (per_channel) set_i(dq, "axis", spec.axis);
  return out;
}

void Exporter::quantize_value(const ir::QuantSpec& spec, const std::string& x, const std::string& out,
                              const std::string& name, int64_t rank) {
  bool per_channel = spec.axis >= 0 && spec.scale.numel() > 1;
  if (format_ == QuantFormat::kQonnx && fixed::is_fixed(spec)) {
    quantize_fixed(spec, x, out, name);
    return;
  }
  if (fixed::is_fixed(spec))
    throw UnsupportedError(msg("node '", name, "': the fixed-point type ", spec.rounding,
                               " has no QuantizeLinear form (8-bit integers, rounding half to even, saturating); "
                               "export to qonnx"));
  if (format_ == QuantFormat::kQonnx) {
    if (!spec.is_signed && spec.narrow_range)
      throw UnsupportedError(msg("node '", name, "': unsigned narrow range [1, 2^b-1] has no QONNX Quant equivalent "
                                 "(QONNX's unsigned narrow range is [0, 2^b-2]); export to onnx or torchscript"));
    // Scale and zero point broadcast against x (QONNX has no axis attribute).
    at::Tensor scale = quant::broadcast_scale(spec, per_channel ? rank : 0).contiguous();
    at::Tensor zp = quant::broadcast_zero_point(spec, per_channel ? rank : 0).to(at::kFloat).contiguous();
    NodeProto* q = add("Quant",
                       {x, init(scale, name + "_scale"), init(zp, name + "_zero_point"),
                        scalar(static_cast<double>(spec.bits), name + "_bit_width")},
                       {out}, name);
    q->set_domain("qonnx.custom_op.general");
    set_i(q, "signed", spec.is_signed ? 1 : 0);
    set_i(q, "narrow", spec.narrow_range ? 1 : 0);
    set_s(q, "rounding_mode", spec.rounding == "half_up" ? "HALF_UP" : "ROUND");
    return;
  }
  if (per_channel)
    throw UnsupportedError(msg("node '", name, "': per-channel activation quantization (axis ", spec.axis,
                               ") has no QDQ export here; export to qonnx or torchscript"));
  if (spec.rounding != "half_even")
    throw UnsupportedError(msg("node '", name, "': activations rounded '", spec.rounding,
                               "', but ONNX QuantizeLinear rounds half to even, so the file would compute other "
                               "numbers; export to qonnx (rounding_mode HALF_UP) or torchscript, or quantize "
                               "with rounding: half_even"));
  std::string in = x;
  quant::QRange r = quant::qrange(spec);
  double s = spec.scale.to(at::kFloat).item<double>();
  int64_t z = spec.zero_point.defined() ? spec.zero_point.item<int64_t>() : 0;
  bool narrower = spec.is_signed ? (r.qmin > -128 || r.qmax < 127) : (r.qmin > 0 || r.qmax < 255);
  if (narrower) {
    // QuantizeLinear saturates at the 8-bit range: clip to this width's range first.
    std::string clipped = fresh(name + "_clip");
    add("Clip",
        {in, scalar(static_cast<double>(static_cast<float>(r.qmin - z) * static_cast<float>(s)), name + "_lo"),
         scalar(static_cast<double>(static_cast<float>(r.qmax - z) * static_cast<float>(s)), name + "_hi")},
        {clipped}, name + "_clip");
    in = clipped;
  }
  at::ScalarType t = spec.is_signed ? at::kChar : at::kByte;
  std::string sc = scalar(s, name + "_scale");
  std::string zp = init(at::scalar_tensor(z, at::kLong).to(t), name + "_zero_point");
  std::string q = fresh(name + "_quantized");
  add("QuantizeLinear", {in, sc, zp}, {q}, name + "_quantize");
  add("DequantizeLinear", {q, sc, zp}, {out}, name + "_dequantize");
}

void Exporter::quantize_fixed(const ir::QuantSpec& spec, const std::string& x, const std::string& out,
                              const std::string& name) {
  const fixed::FixedType t = *fixed::of_spec(spec);
  // QONNX Quant: y = clip(round(x / scale) + zero_point) - zero_point) * scale, clipped to the
  // signed/narrow range; hls4ml reads ROUND as AP_RND_CONV, FLOOR as AP_TRN and narrow as
  // AP_SAT_SYM. The other exact pairs use QONNX's further rounding modes.
  const char* rounding = nullptr;
  switch (t.quant) {
    case fixed::QMode::kTrn: rounding = "FLOOR"; break;
    case fixed::QMode::kRndConv: rounding = "ROUND"; break;
    case fixed::QMode::kTrnZero: rounding = "DOWN"; break;
    case fixed::QMode::kRndInf: rounding = "HALF_UP"; break;
    case fixed::QMode::kRndZero: rounding = "HALF_DOWN"; break;
    case fixed::QMode::kRnd:
    case fixed::QMode::kRndMinInf:
      throw UnsupportedError(msg("node '", name, "': ", fixed::to_string(t), ": QONNX's Quant has no rounding mode that "
                                 "breaks ties toward ", t.quant == fixed::QMode::kRnd ? "+" : "-",
                                 "infinity; use AP_RND_CONV (ROUND, what hls4ml reads) or AP_RND_INF (HALF_UP)"));
  }
  if (t.overflow == fixed::OMode::kSatZero || t.sat_bits > 0)
    throw UnsupportedError(msg("node '", name, "': ", fixed::to_string(t), ": QONNX's Quant saturates to the range; ",
                               t.sat_bits > 0 ? "saturation bits" : "AP_SAT_ZERO", " cannot be expressed (use AP_SAT, "
                               "AP_SAT_SYM or AP_WRAP)"));
  // AP_WRAP is written as the saturating Quant (what hls4ml reads: AP_SAT); the doc_string keeps
  // the exact type for squeeze's import. They agree wherever no value overflows.
  NodeProto* q = add("Quant",
                     {x, init(spec.scale.to(at::kFloat).reshape({}).contiguous(), name + "_scale"),
                      init(at::zeros({}, at::kFloat), name + "_zero_point"),
                      scalar(static_cast<double>(t.width), name + "_bit_width")},
                     {out}, name);
  q->set_domain("qonnx.custom_op.general");
  set_i(q, "signed", t.is_signed ? 1 : 0);
  set_i(q, "narrow", t.is_signed && t.overflow == fixed::OMode::kSatSym ? 1 : 0);
  set_s(q, "rounding_mode", rounding);
  q->set_doc_string("squeeze fixed-point type " + fixed::to_string(t));
}

std::vector<std::string> Exporter::dynamic_quantize_input(const ir::Node& n) {
  std::string xq = fresh(n.name + "/input_quantized"), xs = fresh(n.name + "/input_scale"),
              xz = fresh(n.name + "/input_zero_point");
  add("DynamicQuantizeLinear", {n.inputs[0]}, {xq, xs, xz}, n.name + "/input_quantize");
  return {xq, xs, xz};
}

void Exporter::export_dynamic_layer(const ir::Node& n) {
  bool conv = n.op == "Conv";
  SQZ_ASSERT(conv || n.op == "Linear", "node '", n.name, "': dynamic quantization of a ", n.op);
  if (format_ == QuantFormat::kQonnx) {
    // QONNX's Quant takes fixed scales, so the per-batch input quantization is written with the
    // standard ops that compute it (DynamicQuantizeLinear, DequantizeLinear), and the layer reads
    // the dequantized input: QONNX's fake-quantized float form, with the weight's Quant as usual.
    std::vector<std::string> xq = dynamic_quantize_input(n);
    std::string xd = fresh(n.name + "/input_dequantized");
    add("DequantizeLinear", xq, {xd}, n.name + "/input_dequantize");
    ir::Node copy = n;
    copy.inputs[0] = xd;
    copy.attrs.erase("quant_dynamic");
    g_.shapes[xd] = g_.shape_of(n.inputs[0]);
    dtype_[xd] = at::kFloat;
    export_node(copy);
    return;
  }
  const std::string integer_op = conv ? "ConvInteger" : "MatMulInteger";
  const ir::Param& w = n.param("weight");
  const ir::QuantSpec& spec = *w.qspec;
  if (!spec.scale.defined() || spec.bits > 8 || (spec.axis > 0 && spec.scale.numel() > 1))
    throw UnsupportedError(msg("node '", n.name, "' (", n.op, ", dynamic int8): weight quantization ",
                               quant::describe(spec), " has no ", integer_op,
                               " form (8 bits at most, per tensor or per output channel)"));
  // squeeze quantizes the whole input per call, uint8 affine from its min/max widened to include 0,
  // rounding half to even: DynamicQuantizeLinear's definition. The integer op sums the integer
  // products exactly; the float result is that sum times both scales.
  std::vector<std::string> xq = dynamic_quantize_input(n);
  bool per_channel = spec.axis == 0 && spec.scale.numel() > 1;
  // Per-channel operands broadcast against the integer op's output: along its last axis for
  // MatMulInteger ([C]), along axis 1 for ConvInteger ([1, C, 1, 1]).
  int64_t channels = w.value.size(0);
  std::vector<int64_t> channel_shape{channels};
  if (conv) {
    channel_shape.assign(static_cast<size_t>(w.value.dim()), 1);
    channel_shape[1] = channels;
  }
  at::Tensor q = quant::quantize(effective(w), spec).to(spec.is_signed ? at::kChar : at::kByte);
  if (!conv) q = q.t().contiguous();
  std::vector<std::string> int_in{xq[0], init(q, n.name + (conv ? ".weight_quantized" : ".weight_quantized_t")),
                                  xq[2]};
  at::Tensor zp = spec.zero_point.defined() ? spec.zero_point.to(at::kLong).reshape({-1}) : at::zeros({1}, at::kLong);
  // One zero point where they are all equal: ONNX Runtime's ConvInteger takes no other.
  bool zp_per_channel = zp.ne(zp[0]).any().item<bool>();
  if (conv && zp_per_channel)
    throw UnsupportedError(msg("node '", n.name, "' (Conv, dynamic int8): one weight zero point per output channel (",
                               quant::describe(spec), ") is not run by ONNX Runtime's ConvInteger, which takes one "
                               "per tensor; export to qonnx or torchscript"));
  if (zp.ne(0).any().item<bool>())
    int_in.push_back(init((zp_per_channel ? zp : zp[0]).to(q.scalar_type()), n.name + ".weight_zero_point"));
  std::string acc = fresh(n.name + "/" + (conv ? "conv_integer" : "matmul_integer"));
  NodeProto* integer = add(integer_op, int_in, {acc}, acc);
  if (conv) {
    set_ints(integer, "kernel_shape", std::vector<int64_t>(w.value.sizes().begin() + 2, w.value.sizes().end()));
    copy_attrs(n, integer, {"strides", "pads", "dilations", "group"});
  }
  std::string accf = fresh(n.name + "/integer_float");
  set_i(add("Cast", {acc}, {accf}, n.name + "/cast"), "to", TensorProto::FLOAT);
  at::Tensor ws = spec.scale.to(at::kFloat);
  ws = per_channel ? ws.reshape(channel_shape) : ws.reshape({});
  std::string scale = step(n, "Mul", {xq[1], init(ws, n.name + ".weight_scale")}, "scale");
  if (!n.has_param("bias")) {
    add("Mul", {accf, scale}, {n.outputs[0]}, n.name);
    return;
  }
  std::string y = step(n, "Mul", {accf, scale}, "scaled");
  add("Add", {y, init(effective(n.param("bias")).reshape(channel_shape), n.name + ".bias")}, {n.outputs[0]}, n.name);
}

void Exporter::export_quantized_node(const ir::Node& n) {
  if (format_ != QuantFormat::kFloat && exec::is_fixed_layer(n)) {
    // Quant nodes carry the input, weight, bias and result types; QONNX has no accumulator type,
    // so only a lossless accumulator (no rounding, no overflow: hls4ml's inferred one or wider)
    // is written faithfully.
    const exec::FixedLayerTypes t = exec::fixed_layer_types(n);
    const fixed::FixedType lossless = fixed::infer_accumulator(
        t.input, t.weight, t.bias ? &*t.bias : nullptr, n.param("weight").value.size(1), "node '" + n.name + "'");
    if (t.accum.int_bits < lossless.int_bits || t.accum.frac_bits() < lossless.frac_bits() ||
        (lossless.is_signed && !t.accum.is_signed))
      throw UnsupportedError(msg("node '", n.name, "': its accumulator ", fixed::to_string(t.accum),
                                 " is narrower than the lossless ", fixed::to_string(lossless),
                                 " and QONNX has no accumulator type; leave accum unset (inferred) to export"));
    const ir::QuantSpec* in = quant::input_qspec(g_, n);
    if (!in || !fixed::is_fixed(*in) || in->rounding != fixed::to_string(t.input))
      throw UnsupportedError(msg("node '", n.name, "': its input is assigned to ", fixed::to_string(t.input),
                                 " but the value it reads does not have that type, which QONNX cannot express"));
  }
  if (format_ == QuantFormat::kFloat || !n.out_qspec || !n.out_qspec->scale.defined() || n.outputs.empty()) {
    export_node(n);
    return;
  }
  ir::Node copy = n;
  std::string out = n.outputs[0];
  copy.outputs[0] = fresh(out + "_float");
  copy.out_qspec.reset();
  g_.shapes[copy.outputs[0]] = g_.shape_of(out);
  export_node(copy);
  dtype_[out] = dtype_[copy.outputs[0]];
  quantize_value(*n.out_qspec, copy.outputs[0], out, n.name + "/output_quant");
}

void Exporter::value_info(onnx::ValueInfoProto* vi, const std::string& name, const ir::Shape& shape, at::ScalarType type) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx_type_from_scalar(type));
  auto* sh = tt->mutable_shape();
  for (size_t d = 0; d < shape.size(); ++d) {
    auto* dim = sh->add_dim();
    if (shape[d] == ir::kDynamic)
      dim->set_dim_param(d == 0 ? "batch" : name + "_dim" + std::to_string(d));
    else
      dim->set_dim_value(shape[d]);
  }
}

void Exporter::export_node(const ir::Node& n) {
  const std::string& op = n.op;
  const auto& in = n.inputs;
  const auto& out = n.outputs;
  auto param = [&](const std::string& key) { return param_value(n, key); };
  auto one = [&](const std::string& onnx_op, std::vector<std::string> inputs) {
    return add(onnx_op, inputs, out, n.name);
  };
  at::ScalarType t0 = in.empty() ? at::kFloat : dtype_[in[0]];
  for (const auto& o : out) dtype_[o] = t0;

  if (op == "Constant") {
    at::Tensor v = effective(n.param("value"));
    dtype_[out[0]] = v.scalar_type();
    NodeProto* c = one("Constant", {});
    auto* a = c->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    tensor_to_proto(v, a->mutable_t());
    return;
  }
  if (op == "Conv" && dynamic_layer(n)) {
    export_dynamic_layer(n);
    return;
  }
  if (op == "Conv" || op == "ConvTranspose") {
    std::vector<std::string> ins{in[0], param("weight")};
    if (n.has_param("bias")) ins.push_back(param("bias"));
    NodeProto* c = one(op, ins);
    const at::Tensor& w = n.param("weight").value;
    set_ints(c, "kernel_shape", std::vector<int64_t>(w.sizes().begin() + 2, w.sizes().end()));
    copy_attrs(n, c, {"strides", "pads", "dilations", "group", "output_padding"});
    return;
  }
  if (op == "Linear") {
    if (dynamic_layer(n)) {
      export_dynamic_layer(n);
      return;
    }
    if (rank(in[0]) == 2) {
      std::vector<std::string> ins{in[0], param("weight")};
      if (n.has_param("bias")) ins.push_back(param("bias"));
      set_i(one("Gemm", ins), "transB", 1);
      return;
    }
    std::string wt = param_value(n, "weight", /*transpose=*/true);
    if (!n.has_param("bias")) {
      one("MatMul", {in[0], wt});
      return;
    }
    std::string mm = step(n, "MatMul", {in[0], wt}, "matmul");
    one("Add", {mm, param("bias")});
    return;
  }
  if (op == "BatchNorm") {
    NodeProto* c = one("BatchNormalization",
                       {in[0], param("weight"), param("bias"), param("running_mean"), param("running_var")});
    set_f(c, "epsilon", n.attr_float("epsilon", 1e-5));
    set_f(c, "momentum", 1.0 - n.attr_float("momentum", 0.1));  // ONNX counts momentum the other way
    return;
  }
  if (op == "InstanceNorm") {
    set_f(one("InstanceNormalization", {in[0], param("weight"), param("bias")}), "epsilon", n.attr_float("epsilon", 1e-5));
    return;
  }
  if (op == "LayerNorm") {
    int64_t r = static_cast<int64_t>(rank(in[0]));
    int64_t axis = n.attr_int("axis", -1);
    if (axis < 0) axis += r;
    std::vector<int64_t> axes;
    for (int64_t a = axis; a < r; ++a) axes.push_back(a);
    const ir::Shape& xs = g_.shape_of(in[0]);
    std::vector<int64_t> norm(xs.begin() + axis, xs.end());
    auto reduce = [&](const std::string& x, const std::string& tag) {
      std::string o = fresh(n.name + "/" + tag);
      NodeProto* c = add("ReduceMean", {x}, {o}, n.name + "/" + tag);
      set_ints(c, "axes", axes);
      set_i(c, "keepdims", 1);
      return o;
    };
    std::string mean = reduce(in[0], "mean");
    std::string d = step(n, "Sub", {in[0], mean}, "centered");
    std::string var = reduce(step(n, "Mul", {d, d}, "squared"), "var");
    std::string sd = step(n, "Sqrt", {step(n, "Add", {var, scalar(n.attr_float("epsilon", 1e-5), n.name + ".epsilon")}, "var_eps")}, "std");
    bool w = n.has_param("weight"), b = n.has_param("bias");
    if (!w && !b) {
      one("Div", {d, sd});
      return;
    }
    std::string y = step(n, "Div", {d, sd}, "normalized");
    if (w) {
      std::string wn = init(effective(n.param("weight")).reshape(norm), n.name + ".weight");
      if (!b) {
        one("Mul", {y, wn});
        return;
      }
      y = step(n, "Mul", {y, wn}, "scaled");
    }
    one("Add", {y, init(effective(n.param("bias")).reshape(norm), n.name + ".bias")});
    return;
  }
  static const std::set<std::string> same = {
      "Relu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal", "Erf", "Sign",
      "Floor", "Ceil", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "MatMul", "Identity", "Sin", "Cos", "Tan",
      "Asin", "Acos", "Atan", "Sinh", "Cosh", "Round", "Where"};
  if (same.count(op)) {
    if (op == "Where") dtype_[out[0]] = dtype_[in[1]];
    one(op, in);
    return;
  }
  static const std::set<std::string> logic = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                                              "And", "Or", "Xor", "Not", "IsNaN"};
  if (logic.count(op)) {
    dtype_[out[0]] = at::kBool;
    one(op, in);
    return;
  }
  if (op == "Mod") {
    copy_attrs(n, one("Mod", in), {"fmod"});
    return;
  }
  if (op == "LeakyRelu" || op == "Elu" || op == "Selu" || op == "HardSigmoid" || op == "Shrink" || op == "Celu" ||
      op == "ThresholdedRelu") {
    copy_attrs(n, one(op, in), {"alpha", "gamma", "beta", "lambd", "bias"});
    return;
  }
  if (op == "Dropout") {
    one("Identity", in);
    return;
  }
  if (op == "Relu6" || op == "Clip") {
    std::string lo = op == "Relu6" ? scalar(0.0, n.name + ".min") : n.has_attr("min") ? scalar(n.attr_float("min", 0), n.name + ".min") : "";
    std::string hi = op == "Relu6" ? scalar(6.0, n.name + ".max") : n.has_attr("max") ? scalar(n.attr_float("max", 0), n.name + ".max") : "";
    std::vector<std::string> ins{in[0], lo};
    if (!hi.empty()) ins.push_back(hi);
    if (lo.empty() && hi.empty()) ins.resize(1);
    one("Clip", ins);
    return;
  }
  if (op == "Gelu") {
    if (n.attr_str("approximate", "none") == "tanh") {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      std::string x3 = step(n, "Mul", {in[0], step(n, "Mul", {in[0], in[0]}, "x2")}, "x3");
      std::string inner = step(n, "Add", {in[0], step(n, "Mul", {x3, scalar(0.044715, n.name + ".c")}, "cx3")}, "inner");
      std::string th = step(n, "Tanh", {step(n, "Mul", {inner, scalar(std::sqrt(2.0 / M_PI), n.name + ".k")}, "scaled")}, "tanh");
      std::string p1 = step(n, "Add", {th, scalar(1.0, n.name + ".one")}, "plus1");
      one("Mul", {step(n, "Mul", {in[0], scalar(0.5, n.name + ".half")}, "half_x"), p1});
      return;
    }
    std::string e = step(n, "Erf", {step(n, "Div", {in[0], scalar(std::sqrt(2.0), n.name + ".sqrt2")}, "scaled")}, "erf");
    std::string p1 = step(n, "Add", {e, scalar(1.0, n.name + ".one")}, "plus1");
    one("Mul", {step(n, "Mul", {in[0], p1}, "x_plus"), scalar(0.5, n.name + ".half")});
    return;
  }
  if (op == "Silu") {
    one("Mul", {in[0], step(n, "Sigmoid", {in[0]}, "sigmoid")});
    return;
  }
  if (op == "HardSwish") {
    std::string h = fresh(n.name + "/hardsigmoid");
    NodeProto* c = add("HardSigmoid", {in[0]}, {h}, n.name + "/hardsigmoid");
    set_f(c, "alpha", 1.0 / 6.0);
    set_f(c, "beta", 0.5);
    one("Mul", {in[0], h});
    return;
  }
  if (op == "Mish") {
    one("Mul", {in[0], step(n, "Tanh", {step(n, "Softplus", {in[0]}, "softplus")}, "tanh")});
    return;
  }
  if (op == "PRelu") {
    one("PRelu", {in[0], param("slope")});
    return;
  }
  if (op == "Softmax" || op == "LogSoftmax") {
    set_i(one(op, in), "axis", n.attr_int("axis", -1));
    return;
  }
  if (op == "MaxPool" || op == "AvgPool") {
    NodeProto* c = one(op == "MaxPool" ? "MaxPool" : "AveragePool", in);
    copy_attrs(n, c, {"kernel_shape", "strides", "pads", "ceil_mode"});
    if (op == "MaxPool") {
      copy_attrs(n, c, {"dilations"});
    } else {
      auto dil = n.attr_ints("dilations", {});
      if (std::any_of(dil.begin(), dil.end(), [](int64_t d) { return d != 1; }))
        throw UnsupportedError(msg("node '", n.name, "' (AvgPool): dilation has no ONNX opset-13 equivalent"));
      copy_attrs(n, c, {"count_include_pad"});
    }
    return;
  }
  if (op == "LRN") {
    copy_attrs(n, one("LRN", in), {"size", "alpha", "beta", "bias"});
    return;
  }
  if (op == "GlobalAvgPool" || op == "GlobalMaxPool") {
    one(op == "GlobalAvgPool" ? "GlobalAveragePool" : "GlobalMaxPool", in);
    return;
  }
  if (op == "Concat" || op == "Flatten" || op == "Gather" || op == "DepthToSpace" || op == "SpaceToDepth") {
    copy_attrs(n, one(op, in), {"axis", "blocksize", "mode"});
    return;
  }
  if (op == "Transpose") {
    copy_attrs(n, one(op, in), {"perm"});
    return;
  }
  if (op == "Split") {
    std::vector<std::string> ins = in;
    if (n.has_attr("split")) ins.push_back(ints(n.attr_ints("split"), n.name + ".split"));
    copy_attrs(n, one("Split", ins), {"axis"});
    return;
  }
  if (op == "Slice") {
    std::vector<std::string> ins{in[0], ints(n.attr_ints("starts"), n.name + ".starts"),
                                 ints(n.attr_ints("ends"), n.name + ".ends")};
    if (n.has_attr("axes") || n.has_attr("steps")) {
      auto axes = n.attr_ints("axes", {});
      if (axes.empty())
        for (size_t i = 0; i < n.attr_ints("starts").size(); ++i) axes.push_back(static_cast<int64_t>(i));
      ins.push_back(ints(axes, n.name + ".axes"));
    }
    if (n.has_attr("steps")) ins.push_back(ints(n.attr_ints("steps"), n.name + ".steps"));
    one("Slice", ins);
    return;
  }
  if (op == "Reshape") {
    if (n.attr_int("allowzero", 0))
      throw UnsupportedError(msg("node '", n.name, "' (Reshape): allowzero=1 needs opset 14"));
    one("Reshape", {in[0], ints(n.attr_ints("shape"), n.name + ".shape")});
    return;
  }
  if (op == "Squeeze" || op == "Unsqueeze") {
    std::vector<std::string> ins = in;
    if (n.has_attr("axes")) ins.push_back(ints(n.attr_ints("axes"), n.name + ".axes"));
    one(op, ins);
    return;
  }
  if (op == "ReduceSum") {
    std::vector<std::string> ins = in;
    if (n.has_attr("axes")) ins.push_back(ints(n.attr_ints("axes"), n.name + ".axes"));
    copy_attrs(n, one(op, ins), {"keepdims"});
    return;
  }
  if (op.rfind("Reduce", 0) == 0) {
    copy_attrs(n, one(op, in), {"axes", "keepdims"});
    return;
  }
  if (op == "ArgMax" || op == "ArgMin") {
    dtype_[out[0]] = at::kLong;
    copy_attrs(n, one(op, in), {"axis", "keepdims", "select_last_index"});
    return;
  }
  if (op == "Pad") {
    std::string mode = n.attr_str("mode", "constant");
    std::vector<std::string> ins{in[0], ints(n.attr_ints("pads"), n.name + ".pads")};
    if (mode == "constant")
      ins.push_back(init(at::scalar_tensor(n.attr_float("value", 0.0), at::TensorOptions().dtype(t0)), n.name + ".value"));
    set_s(one("Pad", ins), "mode", mode);
    return;
  }
  if (op == "Expand") {
    std::vector<std::string> ins = in;
    if (in.size() == 1) ins.push_back(ints(n.attr_ints("shape"), n.name + ".shape"));
    one("Expand", ins);
    return;
  }
  if (op == "Tile") {
    one("Tile", {in[0], ints(n.attr_ints("repeats"), n.name + ".repeats")});
    return;
  }
  if (op == "Cast") {
    int32_t to = onnx_type_from_cast_name(n.attr_str("to", "float"));
    dtype_[out[0]] = scalar_type_from_onnx(to, n.name);
    set_i(one("Cast", in), "to", to);
    return;
  }
  if (op == "Shape") {
    dtype_[out[0]] = at::kLong;
    if (!n.has_attr("start") && !n.has_attr("end")) {
      one("Shape", in);
      return;
    }
    int64_t r = static_cast<int64_t>(rank(in[0]));
    std::string s = step(n, "Shape", in, "shape");
    one("Slice", {s, ints({n.attr_int("start", 0)}, n.name + ".start"), ints({n.attr_int("end", r)}, n.name + ".end")});
    return;
  }
  throw UnsupportedError(msg("node '", n.name, "': IR op '", op, "' has no ONNX export"));
}

onnx::ModelProto Exporter::build() {
  onnx::ModelProto m;
  m.set_ir_version(7);  // opset 13 pairs with IR version 7
  m.set_producer_name("squeeze");
  m.set_producer_version(SQUEEZE_VERSION);
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  if (format_ == QuantFormat::kQonnx) {
    auto* q = m.add_opset_import();
    q->set_domain("qonnx.custom_op.general");
    q->set_version(1);
  }
  gp_ = m.mutable_graph();
  gp_->set_name(g_.name.empty() ? "model" : g_.name);
  for (const auto& i : g_.inputs) used_.insert(i.name);
  for (const auto& n : g_.nodes)
    for (const auto& o : n.outputs) used_.insert(o);
  for (const auto& i : g_.inputs) {
    value_info(gp_->add_input(), i.name, i.shape, i.dtype);
    dtype_[i.name] = i.dtype;
  }
  for (const auto& n : g_.nodes) export_quantized_node(n);
  std::set<std::string> inputs;
  for (const auto& i : g_.inputs) inputs.insert(i.name);
  std::set<std::string> done;
  for (const auto& o : g_.outputs) {
    std::string name = o;
    // ONNX wants each graph output produced by a node, once.
    if (inputs.count(o) || done.count(o)) {
      name = fresh(o + "_out");
      add("Identity", {o}, {name}, name);
    }
    done.insert(name);
    value_info(gp_->add_output(), name, g_.shape_of(o), dtype_.count(o) ? dtype_[o] : at::kFloat);
  }
  for (const auto& [k, v] : g_.metadata) {
    auto* p = m.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  return m;
}

}  // namespace

namespace {
void write_model(const onnx::ModelProto& model, const std::string& path);
}

void export_onnx(const ir::Graph& graph, const std::string& path, const OnnxExportOptions& options) {
  if (options.opset != 13)
    throw UnsupportedError(msg("ONNX export writes opset 13; opset ", options.opset, " was requested"));
  Exporter exporter(graph, options.qdq ? QuantFormat::kQdq : QuantFormat::kFloat);
  write_model(exporter.build(), path);
}

void export_qonnx(const ir::Graph& graph, const std::string& path) {
  Exporter exporter(graph, QuantFormat::kQonnx);
  write_model(exporter.build(), path);
}

namespace {
void write_model(const onnx::ModelProto& model, const std::string& path) {
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw InternalError(msg("the exported ONNX model fails the ONNX checker: ", e.what()));
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    throw Error(msg("cannot serialize the ONNX model for '", path, "' (larger than 2 GB?)"));
  write_file_atomic(path, {bytes});
}

}  // namespace

}  // namespace squeeze::io
