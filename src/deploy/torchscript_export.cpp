// IR -> TorchScript: a torch::jit::Module whose parameters are the graph's (masks applied) and whose
// forward() is TorchScript source generated op by op, compiled with define() and saved. Inside
// define() only torch.* functions resolve (torch.nn.functional does not), so every op is written
// with aten functions: torch.conv2d, torch.linear, torch.batch_norm, ...
//
// Quantized graphs keep their numbers in PyTorch: a quantized weight is stored as a qint8/quint8
// tensor (its integers, per-tensor or per-channel scales and zero points) and dequantized in
// forward(), which gives back the grid values squeeze computes with; every out_qspec becomes
// torch.fake_quantize_per_tensor_affine (or _per_channel_) on that value; a dynamic int8 Linear or
// Conv fake-quantizes its input with the batch's own uint8 parameters, computed as squeeze computes
// them. So PyTorch runs squeeze's simulated quantized arithmetic (quant_math.h), in float.
#include "squeeze/deploy/torchscript.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/api/module.h>

#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include <unistd.h>

#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"

namespace squeeze::deploy {

namespace {

std::string list(const std::vector<int64_t>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "float('inf')" : "float('-inf')";
  std::ostringstream os;
  os.precision(17);
  os << v;
  std::string s = os.str();
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

at::Tensor effective(const ir::Param& p) {
  at::Tensor v = p.value.detach();
  if (p.mask) v = v * p.mask->to(v.scalar_type());
  return v.contiguous().clone();
}

// The Tensor method that casts to an IR type: code compiled by Module::define() in C++ cannot name
// dtypes (torch.float64 is "a builtin that cannot be used as a value" there).
std::string torch_cast(const ir::Node& n, const std::string& name) {
  static const std::map<std::string, std::string> m = {
      {"float", "float"}, {"double", "double"}, {"half", "half"}, {"bfloat16", "bfloat16"}, {"int64", "long"},
      {"int32", "int"},   {"int16", "short"},   {"int8", "char"}, {"uint8", "byte"},        {"bool", "bool"}};
  auto it = m.find(name);
  if (it == m.end()) throw UnsupportedError(msg("node '", n.name, "' (Cast): type '", name, "' has no TorchScript cast"));
  return it->second;
}

class ScriptWriter {
 public:
  ScriptWriter(const ir::Graph& graph, torch::jit::Module& module) : g_(graph), m_(module) {
    g_.shapes.clear();
    ir::infer_shapes(g_);
  }

  std::string source();

 private:
  std::string var(const std::string& value) {
    auto it = vars_.find(value);
    if (it != vars_.end()) return it->second;
    std::string v = "v" + std::to_string(vars_.size());
    vars_[value] = v;
    v_values_[v] = value;
    return v;
  }
  std::string attr_name(const std::string& node, const std::string& key) {
    std::string base;
    for (char c : node + "_" + key) base += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    if (base.empty() || std::isdigit(static_cast<unsigned char>(base[0]))) base = "p_" + base;
    std::string name = base;
    for (int i = 1; names_.count(name); ++i) name = base + "_" + std::to_string(i);
    names_.insert(name);
    return name;
  }
  // Registers a parameter (float, trainable) or buffer; returns "self.NAME", or for a quantized
  // weight the expression that dequantizes its stored integers.
  std::string param(const ir::Node& n, const std::string& key, bool buffer = false) {
    const ir::Param& p = n.param(key);
    if (p.qspec && p.qspec->scale.defined() && p.value.is_floating_point() && p.qspec->bits <= 8)
      return quantized_param(n, key);
    return tensor(effective(p), n.name, key, buffer || !p.trainable);
  }
  std::string quantized_param(const ir::Node& n, const std::string& key);
  // Fake-quantizes variable `v` in place with a spec (an out_qspec).
  void fake_quantize(const std::string& v, const ir::QuantSpec& spec, const std::string& where);
  // Fake-quantizes `x` into `out` with the batch's uint8 affine parameters (dynamic int8).
  void fake_quantize_dynamic(const std::string& x, const std::string& out);
  // The input a Linear or Conv computes with: `x` itself, or for a dynamic layer (quant_dynamic = 1)
  // `x` fake-quantized with its batch's parameters, before any padding as the executor does.
  std::string dynamic_input(const ir::Node& n, const std::string& x) {
    if (n.attr_int("quant_dynamic", 0) == 0 || !n.param("weight").qspec) return x;
    std::string out = var(n.outputs[0]) + "_in";
    fake_quantize_dynamic(x, out);
    return out;
  }
  std::string tensor(const at::Tensor& t, const std::string& node, const std::string& key, bool buffer) {
    std::string name = attr_name(node, key);
    if (buffer || !t.is_floating_point())
      m_.register_buffer(name, t);
    else
      m_.register_parameter(name, t, false);
    return "self." + name;
  }
  void line(const std::string& s) { body_ << "    " << s << "\n"; }
  void node(const ir::Node& n);
  void node_body(const ir::Node& n);
  size_t rank(const std::string& v) const { return g_.shape_of(v).size(); }

  ir::Graph g_;
  torch::jit::Module& m_;
  std::map<std::string, std::string> vars_;
  std::map<std::string, std::string> v_values_;  // variable -> IR value
  std::set<std::string> names_;
  std::ostringstream body_;
};

std::string ScriptWriter::quantized_param(const ir::Node& n, const std::string& key) {
  const ir::Param& p = n.param(key);
  const ir::QuantSpec& spec = *p.qspec;
  quant::validate_spec(spec, msg("node '", n.name, "' ", key));
  at::Tensor v = effective(p);
  // The integers of the grid values, exactly; libtorch's quantized tensors then hold them with the
  // same scales, and dequantize() gives float32(q - zero_point) * scale like quant::dequantize.
  at::Tensor q = quant::quantize(v, spec);
  at::ScalarType qtype = spec.is_signed ? at::kQInt8 : at::kQUInt8;
  at::Tensor zp = spec.zero_point.defined() ? spec.zero_point.to(at::kLong) : at::zeros_like(spec.scale, at::kLong);
  at::Tensor stored;
  if (spec.axis >= 0 && spec.scale.numel() > 1) {
    at::Tensor s = spec.scale.to(at::kDouble).reshape({-1});
    stored = at::_make_per_channel_quantized_tensor(q.to(spec.is_signed ? at::kChar : at::kByte), s,
                                                    zp.reshape({-1}), spec.axis);
  } else {
    stored = at::_make_per_tensor_quantized_tensor(q.to(spec.is_signed ? at::kChar : at::kByte),
                                                   spec.scale.to(at::kFloat).item<double>(), zp.item<int64_t>());
  }
  SQZ_ASSERT(stored.scalar_type() == qtype, "quantized weight type");
  SQZ_ASSERT(at::equal(stored.dequantize(), quant::dequantize(q, spec)), "node '", n.name, "' ", key,
             ": the quantized tensor does not dequantize to squeeze's grid values");
  return tensor(stored, n.name, key, /*buffer=*/true) + ".dequantize()";
}

void ScriptWriter::fake_quantize(const std::string& v, const ir::QuantSpec& spec, const std::string& where) {
  quant::validate_spec(spec, where);
  quant::QRange r = quant::qrange(spec);
  bool per_channel = spec.axis >= 0 && spec.scale.numel() > 1;
  if (spec.rounding == "half_even") {
    if (per_channel) {
      std::string s = tensor(spec.scale.to(at::kFloat).reshape({-1}).clone(), where, "scale", true);
      at::Tensor zp = spec.zero_point.defined() ? spec.zero_point.to(at::kInt) : at::zeros_like(spec.scale, at::kInt);
      std::string z = tensor(zp.reshape({-1}).clone(), where, "zero_point", true);
      line(v + " = torch.fake_quantize_per_channel_affine(" + v + ", " + s + ", " + z + ", " +
           std::to_string(spec.axis) + ", " + std::to_string(r.qmin) + ", " + std::to_string(r.qmax) + ")");
    } else {
      int64_t z = spec.zero_point.defined() ? spec.zero_point.item<int64_t>() : 0;
      line(v + " = torch.fake_quantize_per_tensor_affine(" + v + ", " + num(spec.scale.to(at::kFloat).item<double>()) +
           ", " + std::to_string(z) + ", " + std::to_string(r.qmin) + ", " + std::to_string(r.qmax) + ")");
    }
    return;
  }
  // PyTorch's fake-quantize ops round half to even; half up is written out as quant_math does it.
  int64_t rank = static_cast<int64_t>(g_.shape_of(v_values_.at(v)).size());
  std::string s = tensor(quant::broadcast_scale(spec, per_channel ? rank : 0).contiguous().clone(), where, "scale", true);
  std::string z = tensor(quant::broadcast_zero_point(spec, per_channel ? rank : 0).to(at::kFloat).contiguous().clone(),
                         where, "zero_point", true);
  line(v + " = (torch.floor(torch.clamp(" + v + " / " + s + " + " + z + ", " + num(double(r.qmin)) + ", " +
       num(double(r.qmax)) + ") + 0.5) - " + z + ") * " + s);
}

void ScriptWriter::fake_quantize_dynamic(const std::string& x, const std::string& out) {
  // exec::dynamic_quantize_spec, i.e. DynamicQuantizeLinear: float32 throughout, in this order (the
  // range widened to include 0, scale (hi - lo) / 255, zero point round_half_even(clamp(-lo / scale,
  // 0, 255))); then fake quantize on that uint8 grid.
  line(out + "_lo = torch.clamp(torch.min(" + x + ").float(), None, 0.0)");
  line(out + "_hi = torch.clamp(torch.max(" + x + ").float(), 0.0, None)");
  line(out + "_s = (" + out + "_hi - " + out + "_lo) / 255.0");
  line(out + "_s = torch.where(" + out + "_hi > " + out + "_lo, " + out + "_s, torch.ones_like(" + out + "_s))");
  line(out + "_z = torch.round(torch.clamp(0.0 - " + out + "_lo / " + out + "_s, 0.0, 255.0))");
  line(out + " = torch.fake_quantize_per_tensor_affine(" + x + ", float(" + out + "_s), int(" + out + "_z), 0, 255)");
}

void ScriptWriter::node(const ir::Node& n) {
  node_body(n);
  if (n.out_qspec && n.out_qspec->scale.defined() && !n.outputs.empty())
    fake_quantize(var(n.outputs[0]), *n.out_qspec, n.name + "_out");
}

void ScriptWriter::node_body(const ir::Node& n) {
  const std::string& op = n.op;
  std::vector<std::string> in;
  for (const auto& i : n.inputs) in.push_back(var(i));
  std::string y = var(n.outputs[0]);
  auto set = [&](const std::string& expr) { line(y + " = " + expr); };
  auto ints = [&](const char* key, size_t nd, int64_t fill) { return n.attr_ints(key, std::vector<int64_t>(nd, fill)); };
  // Splits ONNX [begins..., ends...] pads into symmetric padding, or pads `x` explicitly.
  auto symmetric = [&](std::string& x, size_t nd, const std::string& fill) {
    auto pads = ints("pads", 2 * nd, 0);
    bool sym = true;
    for (size_t i = 0; i < nd; ++i) sym &= pads[i] == pads[i + nd];
    if (sym) return std::vector<int64_t>(pads.begin(), pads.begin() + nd);
    std::vector<int64_t> tp;
    for (size_t i = nd; i-- > 0;) tp.insert(tp.end(), {pads[i], pads[i + nd]});
    std::string padded = y + "_pad";
    line(padded + " = torch.constant_pad_nd(" + x + ", " + list(tp) + ", " + fill + ")");
    x = padded;
    return std::vector<int64_t>(nd, 0);
  };

  if (op == "Constant") return set(tensor(effective(n.param("value")), n.name, "value", true));
  if (op == "Conv") {
    size_t nd = n.param("weight").value.dim() - 2;
    std::string x = dynamic_input(n, in[0]);
    auto pad = symmetric(x, nd, "0.0");
    std::string b = n.has_param("bias") ? param(n, "bias") : "None";
    return set("torch.conv" + std::to_string(nd) + "d(" + x + ", " + param(n, "weight") + ", " + b + ", " +
               list(ints("strides", nd, 1)) + ", " + list(pad) + ", " + list(ints("dilations", nd, 1)) + ", " +
               std::to_string(n.attr_int("group", 1)) + ")");
  }
  if (op == "ConvTranspose") {
    size_t nd = n.param("weight").value.dim() - 2;
    auto pads = ints("pads", 2 * nd, 0);
    for (size_t i = 0; i < nd; ++i)
      if (pads[i] != pads[i + nd])
        throw UnsupportedError(msg("node '", n.name, "' (ConvTranspose): asymmetric pads have no TorchScript export"));
    std::string b = n.has_param("bias") ? param(n, "bias") : "None";
    return set("torch.conv_transpose" + std::to_string(nd) + "d(" + in[0] + ", " + param(n, "weight") + ", " + b + ", " +
               list(ints("strides", nd, 1)) + ", " + list(std::vector<int64_t>(pads.begin(), pads.begin() + nd)) + ", " +
               list(ints("output_padding", nd, 0)) + ", " + std::to_string(n.attr_int("group", 1)) + ", " +
               list(ints("dilations", nd, 1)) + ")");
  }
  if (op == "Linear") {
    std::string x = dynamic_input(n, in[0]);
    return set("torch.linear(" + x + ", " + param(n, "weight") + ", " +
               (n.has_param("bias") ? param(n, "bias") : std::string("None")) + ")");
  }
  if (op == "MatMul") return set("torch.matmul(" + in[0] + ", " + in[1] + ")");
  if (op == "BatchNorm")
    return set("torch.batch_norm(" + in[0] + ", " + param(n, "weight") + ", " + param(n, "bias") + ", " +
               param(n, "running_mean", true) + ", " + param(n, "running_var", true) + ", False, " +
               num(n.attr_float("momentum", 0.1)) + ", " + num(n.attr_float("epsilon", 1e-5)) + ", False)");
  if (op == "InstanceNorm")
    return set("torch.instance_norm(" + in[0] + ", " + param(n, "weight") + ", " + param(n, "bias") +
               ", None, None, True, 0.1, " + num(n.attr_float("epsilon", 1e-5)) + ", False)");
  if (op == "LayerNorm") {
    const ir::Shape& s = g_.shape_of(n.inputs[0]);
    int64_t axis = n.attr_int("axis", -1);
    if (axis < 0) axis += static_cast<int64_t>(s.size());
    std::vector<int64_t> norm(s.begin() + axis, s.end());
    std::string w = n.has_param("weight") ? "torch.reshape(" + param(n, "weight") + ", " + list(norm) + ")" : "None";
    std::string b = n.has_param("bias") ? "torch.reshape(" + param(n, "bias") + ", " + list(norm) + ")" : "None";
    return set("torch.layer_norm(" + in[0] + ", " + list(norm) + ", " + w + ", " + b + ", " +
               num(n.attr_float("epsilon", 1e-5)) + ", False)");
  }
  static const std::map<std::string, std::string> plain = {
      {"Relu", "torch.relu"},   {"Sigmoid", "torch.sigmoid"}, {"Tanh", "torch.tanh"},     {"Silu", "torch.silu"},
      {"Exp", "torch.exp"},     {"Log", "torch.log"},         {"Sqrt", "torch.sqrt"},     {"Abs", "torch.abs"},
      {"Neg", "torch.neg"},     {"Reciprocal", "torch.reciprocal"}, {"Erf", "torch.erf"}, {"Sign", "torch.sign"},
      {"Floor", "torch.floor"}, {"Ceil", "torch.ceil"},       {"HardSwish", "torch.hardswish"},
      {"Sin", "torch.sin"},     {"Cos", "torch.cos"},         {"Round", "torch.round"},   {"Not", "torch.logical_not"}};
  if (auto it = plain.find(op); it != plain.end()) return set(it->second + "(" + in[0] + ")");
  if (op == "Dropout" || op == "Identity") return set(in[0]);
  if (op == "Relu6") return set("torch.clamp(" + in[0] + ", 0.0, 6.0)");
  if (op == "LeakyRelu") return set("torch.leaky_relu(" + in[0] + ", " + num(n.attr_float("alpha", 0.01)) + ")");
  if (op == "Elu") return set("torch.elu(" + in[0] + ", " + num(n.attr_float("alpha", 1.0)) + ")");
  if (op == "Gelu") return set("torch.gelu(" + in[0] + ", approximate='" + n.attr_str("approximate", "none") + "')");
  if (op == "Softplus") return set("torch.softplus(" + in[0] + ", 1, 20)");
  if (op == "Softsign") return set(in[0] + " / (1.0 + torch.abs(" + in[0] + "))");
  if (op == "Mish") return set(in[0] + " * torch.tanh(torch.softplus(" + in[0] + ", 1, 20))");
  if (op == "HardSigmoid")
    return set("torch.clamp(" + in[0] + " * " + num(n.attr_float("alpha", 0.2)) + " + " + num(n.attr_float("beta", 0.5)) +
               ", 0.0, 1.0)");
  if (op == "Selu")
    return set(num(n.attr_float("gamma", 1.05070102214813232421875)) + " * torch.where(" + in[0] + " > 0.0, " + in[0] +
               ", " + num(n.attr_float("alpha", 1.67326319217681884765625)) + " * (torch.exp(" + in[0] + ") - 1.0))");
  if (op == "Clip")
    return set("torch.clamp(" + in[0] + ", " + (n.has_attr("min") ? num(n.attr_float("min", 0)) : "None") + ", " +
               (n.has_attr("max") ? num(n.attr_float("max", 0)) : "None") + ")");
  if (op == "PRelu") return set("torch.where(" + in[0] + " >= 0.0, " + in[0] + ", " + in[0] + " * " + param(n, "slope") + ")");
  if (op == "Softmax" || op == "LogSoftmax")
    return set(std::string(op == "Softmax" ? "torch.softmax(" : "torch.log_softmax(") + in[0] + ", " +
               std::to_string(n.attr_int("axis", -1)) + ")");
  if (op == "MaxPool") {
    size_t nd = rank(n.inputs[0]) - 2;
    std::string x = in[0];
    auto k = n.attr_ints("kernel_shape");
    auto pad = symmetric(x, nd, "float('-inf')");
    for (size_t i = 0; i < nd; ++i)
      if (pad[i] * 2 > k[i]) {  // PyTorch limits padding to half the kernel
        std::vector<int64_t> tp;
        for (size_t j = nd; j-- > 0;) tp.insert(tp.end(), {pad[j], pad[j]});
        line(y + "_pad2 = torch.constant_pad_nd(" + x + ", " + list(tp) + ", float('-inf'))");
        x = y + "_pad2";
        pad.assign(nd, 0);
        break;
      }
    return set("torch.max_pool" + std::to_string(nd) + "d(" + x + ", " + list(k) + ", " + list(ints("strides", nd, 1)) +
               ", " + list(pad) + ", " + list(ints("dilations", nd, 1)) + ", " +
               (n.attr_int("ceil_mode", 0) ? "True" : "False") + ")");
  }
  if (op == "AvgPool") {
    size_t nd = rank(n.inputs[0]) - 2;
    auto k = n.attr_ints("kernel_shape");
    auto pads = ints("pads", 2 * nd, 0);
    bool include = n.attr_int("count_include_pad", 0) != 0;
    std::string x = in[0];
    std::vector<int64_t> pad(pads.begin(), pads.begin() + nd);
    bool ok = true;
    for (size_t i = 0; i < nd; ++i) ok &= pads[i] == pads[i + nd] && pads[i] * 2 <= k[i];
    if (!ok) {
      if (!include)
        throw UnsupportedError(msg("node '", n.name, "' (AvgPool): asymmetric padding without count_include_pad has no TorchScript export"));
      pad = symmetric(x, nd, "0.0");
    }
    return set("torch.avg_pool" + std::to_string(nd) + "d(" + x + ", " + list(k) + ", " + list(ints("strides", nd, 1)) +
               ", " + list(pad) + ", " + (n.attr_int("ceil_mode", 0) ? "True" : "False") + ", " +
               (include ? "True" : "False") + ")");
  }
  if (op == "GlobalAvgPool" || op == "GlobalMaxPool") {
    std::vector<int64_t> dims;
    for (size_t d = 2; d < rank(n.inputs[0]); ++d) dims.push_back(static_cast<int64_t>(d));
    return set(std::string(op == "GlobalAvgPool" ? "torch.mean(" : "torch.amax(") + in[0] + ", " + list(dims) + ", True)");
  }
  if (op == "LRN") {
    int64_t size = n.attr_int("size");
    line(y + "_sq = torch.reshape(" + in[0] + " * " + in[0] + ", [" + in[0] + ".size(0), 1, " + in[0] + ".size(1), -1])");
    line(y + "_sq = torch.constant_pad_nd(" + y + "_sq, [0, 0, " + std::to_string((size - 1) / 2) + ", " +
         std::to_string(size - 1 - (size - 1) / 2) + "], 0.0)");
    line(y + "_sum = torch.reshape(torch.avg_pool2d(" + y + "_sq, [" + std::to_string(size) + ", 1], [1, 1]) * " +
         num(static_cast<double>(size)) + ", " + in[0] + ".size())");
    return set(in[0] + " / torch.pow(" + num(n.attr_float("bias", 1.0)) + " + " +
               num(n.attr_float("alpha", 1e-4) / static_cast<double>(size)) + " * " + y + "_sum, " +
               num(n.attr_float("beta", 0.75)) + ")");
  }
  static const std::map<std::string, std::string> binary = {
      {"Add", "torch.add"}, {"Sub", "torch.sub"}, {"Mul", "torch.mul"}, {"Div", "torch.div"}, {"Pow", "torch.pow"},
      {"Equal", "torch.eq"}, {"Less", "torch.lt"}, {"Greater", "torch.gt"}, {"LessOrEqual", "torch.le"},
      {"GreaterOrEqual", "torch.ge"}};
  if (auto it = binary.find(op); it != binary.end()) return set(it->second + "(" + in[0] + ", " + in[1] + ")");
  if (op == "Max" || op == "Min") {
    std::string acc = in[0];
    for (size_t i = 1; i < in.size(); ++i)
      acc = std::string(op == "Max" ? "torch.maximum(" : "torch.minimum(") + acc + ", " + in[i] + ")";
    return set(acc);
  }
  if (op == "Where") return set("torch.where(" + in[0] + ".to(torch.bool), " + in[1] + ", " + in[2] + ")");
  if (op == "Concat") {
    std::string l;
    for (const auto& i : in) l += (l.empty() ? "" : ", ") + i;
    return set("torch.cat([" + l + "], " + std::to_string(n.attr_int("axis")) + ")");
  }
  if (op == "Split") {
    const ir::Shape& s = g_.shape_of(n.inputs[0]);
    int64_t axis = n.attr_int("axis", 0);
    if (axis < 0) axis += static_cast<int64_t>(s.size());
    auto sizes = n.attr_ints("split", {});
    if (sizes.empty()) sizes.assign(n.outputs.size(), s[axis] / static_cast<int64_t>(n.outputs.size()));
    line(y + "_parts = torch.split_with_sizes(" + in[0] + ", " + list(sizes) + ", " + std::to_string(axis) + ")");
    for (size_t i = 0; i < n.outputs.size(); ++i) line(var(n.outputs[i]) + " = " + y + "_parts[" + std::to_string(i) + "]");
    return;
  }
  if (op == "Slice") {
    auto starts = n.attr_ints("starts"), ends = n.attr_ints("ends");
    auto axes = n.attr_ints("axes", {});
    auto steps = n.attr_ints("steps", std::vector<int64_t>(starts.size(), 1));
    if (axes.empty())
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    std::string x = in[0];
    for (size_t i = 0; i < starts.size(); ++i) {
      if (steps[i] <= 0) throw UnsupportedError(msg("node '", n.name, "' (Slice): negative steps have no TorchScript export"));
      int64_t e = std::min<int64_t>(ends[i], std::numeric_limits<int64_t>::max() / 2);
      std::string next = y + "_s" + std::to_string(i);
      line(next + " = torch.slice(" + x + ", " + std::to_string(axes[i]) + ", " + std::to_string(starts[i]) + ", " +
           std::to_string(e) + ", " + std::to_string(steps[i]) + ")");
      x = next;
    }
    return set(x);
  }
  if (op == "Flatten") {
    int64_t r = static_cast<int64_t>(rank(n.inputs[0]));
    int64_t axis = n.attr_int("axis", 1);
    if (axis < 0) axis += r;
    if (axis == 0) return set("torch.reshape(" + in[0] + ", [1, -1])");
    if (axis == r) return set("torch.unsqueeze(torch.flatten(" + in[0] + "), 1)");
    return set("torch.flatten(torch.flatten(" + in[0] + ", " + std::to_string(axis) + "), 0, " + std::to_string(axis - 1) + ")");
  }
  if (op == "Reshape") {
    auto shape = n.attr_ints("shape");
    std::string l;
    for (size_t i = 0; i < shape.size(); ++i) {
      std::string d = shape[i] == 0 && !n.attr_int("allowzero", 0) ? in[0] + ".size(" + std::to_string(i) + ")"
                                                                   : std::to_string(shape[i]);
      l += (i ? ", " : "") + d;
    }
    return set("torch.reshape(" + in[0] + ", [" + l + "])");
  }
  if (op == "Transpose") {
    auto perm = n.attr_ints("perm", {});
    if (perm.empty())
      for (size_t i = rank(n.inputs[0]); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
    return set("torch.permute(" + in[0] + ", " + list(perm) + ")");
  }
  if (op == "Squeeze" || op == "Unsqueeze") {
    int64_t r = static_cast<int64_t>(rank(n.inputs[0]));
    auto axes = n.attr_ints("axes", {});
    if (axes.empty()) return set("torch.squeeze(" + in[0] + ")");
    if (op == "Unsqueeze") r += static_cast<int64_t>(axes.size());
    for (auto& a : axes)
      if (a < 0) a += r;
    std::sort(axes.begin(), axes.end());
    if (op == "Squeeze") std::reverse(axes.begin(), axes.end());
    std::string x = in[0];
    for (auto a : axes) x = std::string(op == "Squeeze" ? "torch.squeeze(" : "torch.unsqueeze(") + x + ", " + std::to_string(a) + ")";
    return set(x);
  }
  if (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceMax" || op == "ReduceMin") {
    auto axes = n.attr_ints("axes", {});
    if (axes.empty())
      for (size_t i = 0; i < rank(n.inputs[0]); ++i) axes.push_back(static_cast<int64_t>(i));
    static const std::map<std::string, std::string> f = {
        {"ReduceMean", "torch.mean"}, {"ReduceSum", "torch.sum"}, {"ReduceMax", "torch.amax"}, {"ReduceMin", "torch.amin"}};
    return set(f.at(op) + "(" + in[0] + ", " + list(axes) + ", " + (n.attr_int("keepdims", 1) ? "True" : "False") + ")");
  }
  if (op == "Pad") {
    auto pads = n.attr_ints("pads");
    int64_t r = static_cast<int64_t>(pads.size() / 2);
    std::string mode = n.attr_str("mode", "constant");
    std::vector<int64_t> tp;
    for (int64_t i = r; i-- > (mode == "constant" ? 0 : 2);) tp.insert(tp.end(), {pads[i], pads[i + r]});
    if (mode == "constant") return set("torch.constant_pad_nd(" + in[0] + ", " + list(tp) + ", " + num(n.attr_float("value", 0.0)) + ")");
    std::string f = mode == "reflect" ? "torch.reflection_pad" : mode == "edge" ? "torch.replication_pad" : "";
    if (f.empty() || r < 3 || r > 5 || pads[0] || pads[1] || pads[r] || pads[r + 1])
      throw UnsupportedError(msg("node '", n.name, "' (Pad): mode '", mode, "' here has no TorchScript export"));
    return set(f + std::to_string(r - 2) + "d(" + in[0] + ", " + list(tp) + ")");
  }
  if (op == "Cast") return set(in[0] + "." + torch_cast(n, n.attr_str("to", "float")) + "()");
  if (op == "Gather") {
    int64_t axis = n.attr_int("axis", 0);
    const ir::Shape& is = g_.shape_of(n.inputs[1]);
    if (is.empty()) return set("torch.select(" + in[0] + ", " + std::to_string(axis) + ", int(" + in[1] + "))");
    if (is.size() == 1) return set("torch.index_select(" + in[0] + ", " + std::to_string(axis) + ", " + in[1] + ".to(torch.int64))");
  }
  if (op == "Tile") return set(in[0] + ".repeat(" + list(n.attr_ints("repeats")) + ")");
  if (op == "Expand" && n.inputs.size() == 1) {
    auto shape = n.attr_ints("shape");
    const ir::Shape& s = g_.shape_of(n.outputs[0]);
    std::vector<int64_t> target;
    for (size_t i = 0; i < s.size(); ++i) target.push_back(s[i] == ir::kDynamic ? -1 : s[i]);
    return set(in[0] + ".expand(" + list(target) + ").contiguous()");
  }
  throw UnsupportedError(msg("node '", n.name, "': IR op '", op, "' has no TorchScript export"));
}

std::string ScriptWriter::source() {
  std::ostringstream head;
  head << "def forward(self";
  for (const auto& i : g_.inputs) head << ", " << var(i.name) << ": Tensor";
  bool many = g_.outputs.size() > 1;
  head << ")";
  if (many) {
    head << " -> Tuple[";
    for (size_t i = 0; i < g_.outputs.size(); ++i) head << (i ? ", " : "") << "Tensor";
    head << "]";
  } else {
    head << " -> Tensor";
  }
  head << ":\n";
  for (const auto& n : g_.nodes) node(n);
  std::string ret;
  for (const auto& o : g_.outputs) ret += (ret.empty() ? "" : ", ") + var(o);
  line("return " + (many ? "(" + ret + ")" : ret));
  return head.str() + body_.str();
}

}  // namespace

void export_torchscript(const ir::Graph& graph, const std::string& path) {
  torch::jit::Module module("SqueezeModel");
  ScriptWriter writer(graph, module);
  std::string src = writer.source();
  try {
    module.define(src);
  } catch (const c10::Error& e) {
    throw InternalError(msg("generated TorchScript does not compile: ", e.what_without_backtrace(), "\n", src));
  }
  module.eval();
  std::string tmp = temp_path_for(path);
  try {
    module.save(tmp);
  } catch (const c10::Error& e) {
    std::remove(tmp.c_str());
    throw Error(msg("cannot write TorchScript file '", path, "': ", e.what_without_backtrace()));
  }
  commit_temp(tmp, path);
}

}  // namespace squeeze::deploy
