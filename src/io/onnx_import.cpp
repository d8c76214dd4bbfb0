// ONNX -> IR.
//
// Steps: parse the protobuf (InputError if it is not a model), check the graph's structure
// ourselves (cycles and missing values are GraphErrors), run the ONNX checker and ONNX shape
// inference, then convert node by node in topological order.
//
// The ONNX checker's verdict is a warning, not an error: the ONNX backend test models include
// files the 1.12 checker rejects although every op in them is well defined (old IR versions,
// preview domains), and the conversion below validates everything it relies on and fails with a
// precise error. When conversion fails, the checker's message is appended to the error.
//
// Conversion keeps a table from ONNX value names to either a constant tensor (initializers,
// Constant nodes, and every node whose inputs are all constant: those are evaluated at import
// with the executor's own kernels, so Shape/Gather/Concat/Cast chains fold to plain numbers) or
// an IR value. Static shapes are tracked with the IR's shape inference while converting, with
// every input dimension fixed (symbolic dimensions count as 1); after conversion the batch
// dimension is made dynamic when shape inference shows every output follows it.
//
// Dynamically quantized models (ONNX Runtime's quantize_dynamic, squeeze's own dynamic export)
// are read as the integer ops they are written with (DynamicQuantizeLinear, MatMulInteger,
// ConvInteger, DequantizeLinear of a graph value: IR ops with exact integer kernels), then
// fuse_dynamic_quantization() turns each complete pattern into one Linear or Conv with
// quant_dynamic = 1 and its weight's qspec, the graph the quantize pass writes:
//   y, s, z = DynamicQuantizeLinear(x)
//   acc = MatMulInteger(y, B, z[, B_zp])  or  ConvInteger(y, W, z[, W_zp])    B, W, zero points constant
//   out = Cast(acc, float) * (s * w_scale)   (or the two scales multiplied one after the other)
//   [out = out + bias]
// and QONNX's form of it, y, s, z = DynamicQuantizeLinear(x) -> DequantizeLinear(y, s, z) -> a
// Linear/Conv with a quantized weight. Whatever does not match stays as those integer ops, which
// compute exactly what the file says.
#include <ATen/ATen.h>
#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "onnx_internal.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/fixed.h"
#include "squeeze/exec/int8.h"
#include "squeeze/io/onnx.h"
#include "squeeze/ir/fixed_point.h"
#include "squeeze/ir/ops.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"
#include "squeeze/util/memory.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::io {

namespace {

using namespace onnx_detail;
using onnx::AttributeProto;
using onnx::NodeProto;

// An ONNX value during conversion: a folded constant or a value of the IR graph.
struct Ref {
  at::Tensor c;    // defined: a constant
  std::string ir;  // otherwise: the IR value name
  std::string onnx;  // the ONNX name it came from (to share Constant nodes), may be empty
  bool is_const() const { return c.defined(); }
};

// A sequence value (SequenceConstruct & co.): known at import, element by element. A sequence
// whose split sizes are only known at run time keeps just its length.
struct Seq {
  std::vector<Ref> items;
  int64_t length_only = -1;
};

std::string sanitize(const std::string& s) {
  std::string out;
  for (char ch : s) {
    bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-';
    out += ok ? ch : '_';
  }
  size_t b = out.find_first_not_of("_.-");
  out = b == std::string::npos ? "" : out.substr(b);
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::vector<int64_t> to_ints(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous().reshape({-1});
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<int64_t> shape_of(const at::Tensor& t) { return std::vector<int64_t>(t.sizes().begin(), t.sizes().end()); }

int64_t numel_of(const ir::Shape& s) {
  int64_t n = 1;
  for (auto d : s) {
    if (d < 0) return -1;
    if (d != 0 && n > kMaxFoldedElements * 16 / d) return std::numeric_limits<int64_t>::max();
    n *= d;
  }
  return n;
}

class Importer {
 public:
  Importer(onnx::ModelProto& model, std::string source, std::string base_dir, const OnnxImportOptions& options)
      : model_(model), source_(std::move(source)), base_dir_(std::move(base_dir)), options_(options) {}

  ir::Graph run();
  ir::Graph convert();

  using Handler = void (Importer::*)(const NodeProto&);
  static const std::map<std::string, Handler>& handlers();

 private:

  // --- structure and naming ---
  void check_structure();
  void check_attribute_ranges();
  void read_opsets();
  std::string fresh_value(const std::string& base);
  std::string fresh_node(const std::string& base);
  std::string where() const { return msg(source_, ": node '", node_name_, "' (", node_op_, ")"); }

  // --- values ---
  Ref get(const std::string& onnx_name);
  bool has_input(const NodeProto& n, int i) const { return i < n.input_size() && !n.input(i).empty(); }
  Ref in(const NodeProto& n, int i);
  at::Tensor const_in(const NodeProto& n, int i, const char* what);
  void bind(const std::string& onnx_name, const Ref& r);
  ir::Shape shape(const Ref& r) const;
  std::string materialize(const Ref& r);

  // Emits an IR node (or evaluates it now when every input is constant). `hints` are the ONNX
  // output names to reuse for the IR values.
  std::vector<Ref> emit(const std::string& op, const std::vector<Ref>& inputs, std::map<std::string, ir::Attr> attrs = {},
                        std::map<std::string, ir::Param> params = {}, int num_outputs = 1,
                        const std::vector<std::string>& hints = {});
  Ref emit1(const std::string& op, const std::vector<Ref>& inputs, std::map<std::string, ir::Attr> attrs = {},
            std::map<std::string, ir::Param> params = {}, const std::string& hint = "") {
    return emit(op, inputs, std::move(attrs), std::move(params), 1, {hint}).at(0);
  }
  Ref out_hint_emit(const NodeProto& n, const std::string& op, const std::vector<Ref>& inputs,
                    std::map<std::string, ir::Attr> attrs = {}, std::map<std::string, ir::Param> params = {}) {
    Ref r = emit1(op, inputs, std::move(attrs), std::move(params), n.output(0));
    bind(n.output(0), r);
    return r;
  }

  // --- attributes ---
  const AttributeProto* attr(const NodeProto& n, const std::string& key) const;
  int64_t attr_i(const NodeProto& n, const std::string& key, int64_t fallback) const;
  double attr_f(const NodeProto& n, const std::string& key, double fallback) const;
  std::string attr_s(const NodeProto& n, const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const NodeProto& n, const std::string& key, std::vector<int64_t> fallback) const;
  bool output_used(const NodeProto& n, int i) const;
  [[noreturn]] void unsupported(const std::string& what) const;

  // --- helpers for handlers ---
  std::vector<int64_t> conv_pads(const NodeProto& n, const ir::Shape& in, const std::vector<int64_t>& kernel,
                                 const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations);
  Ref legacy_broadcast(const NodeProto& n, const Ref& a, Ref b);
  std::vector<int64_t> optional_axes(const NodeProto& n, int input_index, int since_opset);

  // --- op handlers ---
  void op_unary(const NodeProto& n);
  void op_binary(const NodeProto& n);
  void op_variadic(const NodeProto& n);
  void op_alias(const NodeProto& n);
  void op_constant(const NodeProto& n);
  void op_constant_of_shape(const NodeProto& n);
  void op_shape(const NodeProto& n);
  void op_size(const NodeProto& n);
  void op_range(const NodeProto& n);
  void op_conv(const NodeProto& n);
  void op_conv_transpose(const NodeProto& n);
  void op_gemm(const NodeProto& n);
  void op_matmul(const NodeProto& n);
  void op_batchnorm(const NodeProto& n);
  void op_instancenorm(const NodeProto& n);
  void op_layernorm(const NodeProto& n);
  void op_pool(const NodeProto& n);
  void op_global_pool(const NodeProto& n);
  void op_lrn(const NodeProto& n);
  void op_softmax(const NodeProto& n);
  void op_flatten(const NodeProto& n);
  void op_reshape(const NodeProto& n);
  void op_transpose(const NodeProto& n);
  void op_squeeze(const NodeProto& n);
  void op_concat(const NodeProto& n);
  void op_split(const NodeProto& n);
  void op_slice(const NodeProto& n);
  void op_pad(const NodeProto& n);
  void op_clip(const NodeProto& n);
  void op_cast(const NodeProto& n);
  void op_gather(const NodeProto& n);
  void op_expand(const NodeProto& n);
  void op_tile(const NodeProto& n);
  void op_reduce(const NodeProto& n);
  void op_arg(const NodeProto& n);
  void op_prelu(const NodeProto& n);
  void op_where(const NodeProto& n);
  void op_depth_space(const NodeProto& n);
  void op_sequence(const NodeProto& n);
  // Quantization: QDQ pairs and QONNX Quant become weight qspecs (on constants) or Identity nodes
  // carrying an out_qspec (on graph values).
  void op_quantize_linear(const NodeProto& n);
  void op_dequantize_linear(const NodeProto& n);
  void op_qonnx_quant(const NodeProto& n);
  void mark_fixed_layers();
  ir::QuantSpec qdq_spec(const NodeProto& n, const at::Tensor& scale, const at::Tensor& zp, int64_t rank);
  Ref quantized_identity(const NodeProto& n, const Ref& x, const ir::QuantSpec& spec);
  std::optional<ir::QuantSpec> weight_qspec(const NodeProto& n, int i) const;
  // Dynamic quantization (ONNX Runtime's integer ops); fused by fuse_dynamic_quantization().
  void op_dynamic_quantize_linear(const NodeProto& n);
  void op_matmul_integer(const NodeProto& n);
  void op_conv_integer(const NodeProto& n);
  // The zero-point inputs of MatMulInteger/ConvInteger (inputs 2 and 3): none, or both (a missing
  // one is 0).
  std::vector<Ref> integer_zero_points(const NodeProto& n);

  // --- after conversion ---
  void bind_outputs();
  void fold_pads();
  void fuse_patterns();
  void fuse_dynamic_quantization();
  void make_batch_dynamic();
  bool follow_batch_arithmetic(ir::Graph& g);

  onnx::ModelProto& model_;
  std::string source_, base_dir_;
  OnnxImportOptions options_;
  int64_t opset_ = 1;
  std::string checker_message_;

  ir::Graph g_;
  std::map<std::string, at::Tensor> consts_;   // ONNX name -> folded constant
  std::map<std::string, std::string> values_;  // ONNX name -> IR value name
  std::map<std::string, Seq> seqs_;
  std::map<std::string, ir::Shape> shapes_;    // IR value -> static shape at import
  std::map<std::string, std::string> const_nodes_;  // ONNX name -> IR value of its Constant node
  std::set<std::string> onnx_names_, claimed_values_, node_names_;
  std::map<std::string, int> uses_;            // ONNX value -> number of reading nodes (+ graph outputs)
  std::vector<const NodeProto*> order_;        // topological order
  std::string node_name_, node_op_;
  int node_index_ = 0, sub_index_ = 0;
  std::map<std::string, std::vector<size_t>> symbolic_dims_;  // graph input -> its symbolic dims
  // > 0: a probe conversion (see follow_batch_arithmetic) with symbolic leading dims at this size;
  // stops before the batch dimension is made dynamic.
  int64_t batch_probe_ = 0;
  std::set<std::string> q_values_;  // outputs of QuantizeLinear on graph values
  std::set<std::string> int_values_;  // integer graph values: DynamicQuantizeLinear, MatMulInteger, ConvInteger
  std::map<std::string, ir::QuantSpec> const_qspecs_;  // dequantized constants -> their spec
};

// ------------------------------------------------------------------------------------------
// Handler table: the supported ONNX ops.

const std::map<std::string, Importer::Handler>& Importer::handlers() {
  static const std::map<std::string, Handler> table = [] {
    std::map<std::string, Handler> t;
    for (const char* op : {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "Softsign", "Exp", "Log",
                           "Sqrt", "Abs", "Neg", "Reciprocal", "Erf", "Sign", "Floor", "Ceil", "Shrink", "HardSigmoid",
                           "HardSwish", "Not", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Round",
                           "Celu", "ThresholdedRelu", "IsNaN", "Mish"})
      t[op] = &Importer::op_unary;
    for (const char* op : {"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "LessOrEqual",
                           "GreaterOrEqual", "And", "Or", "Xor", "Mod"})
      t[op] = &Importer::op_binary;
    for (const char* op : {"Max", "Min", "Sum", "Mean"}) t[op] = &Importer::op_variadic;
    t["Identity"] = t["Dropout"] = &Importer::op_alias;
    t["Constant"] = &Importer::op_constant;
    t["ConstantOfShape"] = &Importer::op_constant_of_shape;
    t["Shape"] = &Importer::op_shape;
    t["Size"] = &Importer::op_size;
    t["Range"] = &Importer::op_range;
    t["Conv"] = &Importer::op_conv;
    t["ConvTranspose"] = &Importer::op_conv_transpose;
    t["Gemm"] = &Importer::op_gemm;
    t["MatMul"] = &Importer::op_matmul;
    t["BatchNormalization"] = &Importer::op_batchnorm;
    t["InstanceNormalization"] = &Importer::op_instancenorm;
    t["LayerNormalization"] = &Importer::op_layernorm;
    t["MaxPool"] = t["AveragePool"] = &Importer::op_pool;
    t["GlobalAveragePool"] = t["GlobalMaxPool"] = &Importer::op_global_pool;
    t["LRN"] = &Importer::op_lrn;
    t["Softmax"] = t["LogSoftmax"] = &Importer::op_softmax;
    t["Flatten"] = &Importer::op_flatten;
    t["Reshape"] = &Importer::op_reshape;
    t["Transpose"] = &Importer::op_transpose;
    t["Squeeze"] = t["Unsqueeze"] = &Importer::op_squeeze;
    t["Concat"] = &Importer::op_concat;
    t["Split"] = &Importer::op_split;
    t["Slice"] = &Importer::op_slice;
    t["Pad"] = &Importer::op_pad;
    t["Clip"] = &Importer::op_clip;
    t["Cast"] = &Importer::op_cast;
    t["Gather"] = &Importer::op_gather;
    t["Expand"] = &Importer::op_expand;
    t["Tile"] = &Importer::op_tile;
    for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                           "ReduceSumSquare", "ReduceLogSumExp"})
      t[op] = &Importer::op_reduce;
    t["ArgMax"] = t["ArgMin"] = &Importer::op_arg;
    t["PRelu"] = &Importer::op_prelu;
    t["Where"] = &Importer::op_where;
    t["DepthToSpace"] = t["SpaceToDepth"] = &Importer::op_depth_space;
    t["QuantizeLinear"] = &Importer::op_quantize_linear;
    t["DequantizeLinear"] = &Importer::op_dequantize_linear;
    t["Quant"] = &Importer::op_qonnx_quant;  // QONNX, domain qonnx.custom_op.general
    t["DynamicQuantizeLinear"] = &Importer::op_dynamic_quantize_linear;
    t["MatMulInteger"] = &Importer::op_matmul_integer;
    t["ConvInteger"] = &Importer::op_conv_integer;
    for (const char* op : {"SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceAt",
                           "SequenceLength", "ConcatFromSequence", "SplitToSequence"})
      t[op] = &Importer::op_sequence;
    return t;
  }();
  return table;
}

std::string supported_list() { return join(supported_onnx_ops(), ", "); }

}  // namespace

std::vector<std::string> supported_onnx_ops() {
  std::vector<std::string> ops;
  for (const auto& [op, h] : Importer::handlers()) ops.push_back(op);
  return ops;
}

namespace {

// ------------------------------------------------------------------------------------------
// Structure, naming and values.

void Importer::read_opsets() {
  bool found = false;
  for (const auto& o : model_.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") {
      opset_ = o.version();
      found = true;
    }
  }
  if (!found && model_.opset_import_size() == 0) opset_ = 1;  // IR version 1/2 models had no opset imports
  if (opset_ < 1 || opset_ > 18)
    throw UnsupportedError(msg(source_, ": ONNX opset ", opset_, " is not supported (squeeze reads opsets 1 to 18; ",
                               "tested with 6 to 17)"));
  if (model_.ir_version() > 9)
    log::warn(source_, ": ONNX IR version ", model_.ir_version(), " is newer than squeeze knows (3 to 8); trying anyway");
}

// Attributes that ONNX's shape inference (and our own conv padding) divide by must be positive:
// libonnx divides by a zero stride or block size and dies of SIGFPE (found by fuzzing), so they
// are checked first, in the main graph, every subgraph (If/Loop/Scan bodies) and the model's
// local functions.
void Importer::check_attribute_ranges() {
  static const std::map<std::string, std::vector<std::string>> kPositive = {
      {"Conv", {"strides", "dilations", "kernel_shape", "group"}},
      {"ConvInteger", {"strides", "dilations", "kernel_shape", "group"}},
      {"QLinearConv", {"strides", "dilations", "kernel_shape", "group"}},
      {"ConvTranspose", {"strides", "dilations", "kernel_shape", "group"}},
      {"DeformConv", {"strides", "dilations", "kernel_shape", "group", "offset_group"}},
      {"MaxPool", {"strides", "dilations", "kernel_shape"}},
      {"AveragePool", {"strides", "dilations", "kernel_shape"}},
      {"LpPool", {"strides", "dilations", "kernel_shape"}},
      {"MaxUnpool", {"strides", "kernel_shape"}},
      {"Col2Im", {"strides", "dilations"}},
      {"SpaceToDepth", {"blocksize"}},
      {"DepthToSpace", {"blocksize"}},
      {"GroupNormalization", {"num_groups"}},
  };
  std::function<void(const google::protobuf::RepeatedPtrField<NodeProto>&, const std::string&)> walk =
      [&](const google::protobuf::RepeatedPtrField<NodeProto>& nodes, const std::string& where) {
        for (const auto& n : nodes) {
          auto it = kPositive.find(n.op_type());
          for (const auto& a : n.attribute()) {
            if (a.type() == AttributeProto::GRAPH) walk(a.g().node(), where);
            if (a.type() == AttributeProto::GRAPHS)
              for (const auto& g : a.graphs()) walk(g.node(), where);
            if (it == kPositive.end() || std::find(it->second.begin(), it->second.end(), a.name()) == it->second.end())
              continue;
            bool ok = true;
            for (int64_t v : a.ints()) ok = ok && v > 0;
            if (a.type() == AttributeProto::INT) ok = a.i() > 0;
            if (!ok)
              throw InputError(msg(source_, where, ": node '", n.name(), "' (", n.op_type(), "): attribute '", a.name(),
                                   "' must hold positive integers"));
          }
        }
      };
  walk(model_.graph().node(), "");
  for (const auto& f : model_.functions()) walk(f.node(), msg(" (function '", f.name(), "')"));
}

// Our own structural check before the ONNX checker: its messages for cycles and missing values
// do not say which node, and these are errors in the graph rather than in the file.
void Importer::check_structure() {
  const auto& graph = model_.graph();
  std::set<std::string> available;
  for (const auto& i : graph.initializer()) available.insert(i.name());
  for (const auto& i : graph.sparse_initializer()) available.insert(i.values().name());
  for (const auto& i : graph.input()) available.insert(i.name());
  std::map<std::string, int> producer;
  for (int i = 0; i < graph.node_size(); ++i)
    for (const auto& o : graph.node(i).output())
      if (!o.empty()) {
        if (producer.count(o) || available.count(o))
          throw GraphError(msg(source_, ": value '", o, "' is produced twice (second time by node '",
                               graph.node(i).name(), "' (", graph.node(i).op_type(), "))"));
        producer[o] = i;
      }
  for (int i = 0; i < graph.node_size(); ++i)
    for (const auto& in : graph.node(i).input())
      if (!in.empty() && !available.count(in) && !producer.count(in))
        throw GraphError(msg(source_, ": node '", graph.node(i).name(), "' (", graph.node(i).op_type(),
                             ") reads value '", in,
                             "' that is neither a graph input, an initializer nor the output of any node "
                             "(missing initializer?)"));
  for (const auto& o : graph.output())
    if (!available.count(o.name()) && !producer.count(o.name()))
      throw GraphError(msg(source_, ": graph output '", o.name(), "' is not produced by any node"));

  // Kahn's algorithm, stable with respect to the file's order.
  std::vector<int> pending(graph.node_size(), 0);
  std::map<std::string, std::vector<int>> readers;
  for (int i = 0; i < graph.node_size(); ++i) {
    std::set<std::string> seen;
    for (const auto& in : graph.node(i).input())
      if (!in.empty() && producer.count(in) && seen.insert(in).second) {
        ++pending[i];
        readers[in].push_back(i);
      }
  }
  std::vector<int> ready;
  for (int i = graph.node_size(); i-- > 0;)
    if (pending[i] == 0) ready.push_back(i);
  std::set<int> ready_set(ready.begin(), ready.end());
  while (!ready.empty()) {
    // Lowest index first keeps the file's order for already-sorted graphs.
    auto it = std::min_element(ready.begin(), ready.end());
    int i = *it;
    ready.erase(it);
    order_.push_back(&graph.node(i));
    for (const auto& o : graph.node(i).output())
      for (int r : readers[o])
        if (--pending[r] == 0) ready.push_back(r);
  }
  if (static_cast<int>(order_.size()) != graph.node_size()) {
    for (int i = 0; i < graph.node_size(); ++i)
      if (pending[i] > 0)
        throw GraphError(msg(source_, ": the graph has a cycle through node '", graph.node(i).name(), "' (",
                             graph.node(i).op_type(), ")"));
  }
  for (const auto& n : graph.node()) {
    for (const auto& in : n.input()) ++uses_[in];
    for (const auto& o : n.output()) onnx_names_.insert(o);
    for (const auto& a : n.attribute())
      if (a.type() == AttributeProto::GRAPH || a.type() == AttributeProto::GRAPHS)
        throw UnsupportedError(msg(source_, ": node '", n.name(), "' (", n.op_type(),
                                   ") has a subgraph; squeeze does not import control flow (If, Loop, Scan)"));
  }
  for (const auto& o : graph.output()) ++uses_[o.name()];
  for (const auto& i : graph.input()) onnx_names_.insert(i.name());
  for (const auto& i : graph.initializer()) onnx_names_.insert(i.name());
}

std::string Importer::fresh_value(const std::string& base) {
  std::string b = base.empty() ? "v" : base;
  std::string cand = b;
  for (int i = 1; onnx_names_.count(cand) || claimed_values_.count(cand); ++i) cand = b + "_" + std::to_string(i);
  claimed_values_.insert(cand);
  return cand;
}

std::string Importer::fresh_node(const std::string& base) {
  std::string cand = base;
  for (int i = 1; node_names_.count(cand); ++i) cand = base + "_" + std::to_string(i);
  node_names_.insert(cand);
  return cand;
}

Ref Importer::get(const std::string& name) {
  if (seqs_.count(name)) throw UnsupportedError(msg(where(), ": uses sequence '", name, "' as a tensor"));
  auto c = consts_.find(name);
  if (c != consts_.end()) return Ref{c->second, "", name};
  auto v = values_.find(name);
  if (v != values_.end()) return Ref{at::Tensor(), v->second, name};
  throw GraphError(msg(where(), ": reads value '", name, "' that is not defined"));
}

Ref Importer::in(const NodeProto& n, int i) {
  if (!has_input(n, i))
    throw GraphError(msg(where(), ": missing input ", i));
  return get(n.input(i));
}

at::Tensor Importer::const_in(const NodeProto& n, int i, const char* what) {
  Ref r = in(n, i);
  if (!r.is_const())
    throw UnsupportedError(msg(where(), ": the ", what, " (input ", i, ", '", n.input(i),
                               "') must be a constant (an initializer or computable at import); here it depends on "
                               "the graph inputs"));
  return r.c;
}

void Importer::bind(const std::string& name, const Ref& r) {
  if (name.empty()) return;
  if (r.is_const())
    consts_[name] = r.c;
  else
    values_[name] = r.ir;
}

ir::Shape Importer::shape(const Ref& r) const {
  if (r.is_const()) return shape_of(r.c);
  auto it = shapes_.find(r.ir);
  SQZ_ASSERT(it != shapes_.end(), "no shape for ", r.ir);
  return it->second;
}

std::string Importer::materialize(const Ref& r) {
  if (!r.is_const()) return r.ir;
  if (!r.onnx.empty()) {
    auto it = const_nodes_.find(r.onnx);
    if (it != const_nodes_.end()) return it->second;
  }
  ir::Node node;
  node.op = "Constant";
  node.name = fresh_node(sanitize(r.onnx.empty() ? node_name_ + "_const" : r.onnx));
  if (node.name.empty()) node.name = fresh_node("const");
  std::string out = r.onnx.empty() || claimed_values_.count(r.onnx) ? fresh_value(r.onnx.empty() ? node.name : r.onnx)
                                                                     : r.onnx;
  claimed_values_.insert(out);
  node.outputs = {out};
  ir::Param p;
  p.value = r.c;
  p.trainable = false;
  node.params["value"] = p;
  shapes_[out] = shape_of(r.c);
  g_.nodes.push_back(std::move(node));
  if (!r.onnx.empty()) const_nodes_[r.onnx] = out;
  return out;
}

std::vector<Ref> Importer::emit(const std::string& op, const std::vector<Ref>& inputs, std::map<std::string, ir::Attr> attrs,
                                std::map<std::string, ir::Param> params, int num_outputs,
                                const std::vector<std::string>& hints) {
  ir::Node node;
  node.op = op;
  node.attrs = std::move(attrs);
  node.params = std::move(params);
  std::string base = sanitize(node_name_);
  if (base.empty()) base = lower(node_op_) + "_" + std::to_string(node_index_);
  node.name = sub_index_++ == 0 ? base : base + "_" + lower(op);
  const ir::OpDef& def = ir::op_def(op);
  std::vector<ir::Shape> in_shapes;
  bool all_const = !inputs.empty();
  for (const auto& r : inputs) {
    in_shapes.push_back(shape(r));
    all_const &= r.is_const();
  }
  node.outputs.resize(num_outputs);  // shape inference reads the output count (Split)
  std::vector<ir::Shape> out_shapes;
  try {
    out_shapes = def.infer(node, in_shapes);
  } catch (const GraphError& e) {
    throw GraphError(msg(source_, ": ", e.what()));
  }
  if (static_cast<int>(out_shapes.size()) != num_outputs)
    throw InternalError(msg("importer: ", op, " produced ", out_shapes.size(), " shapes for ", num_outputs, " outputs"));

  if (all_const) {
    for (const auto& s : out_shapes)
      if (numel_of(s) > kMaxFoldedElements)
        throw InputError(msg(where(), ": folding this node would create a tensor of shape ", ir::shape_str(s),
                             ", which is absurdly large"));
    const exec::Kernel* k = exec::find_kernel(op);
    SQZ_ASSERT(k, "no kernel for ", op);
    std::vector<at::Tensor> args;
    for (const auto& r : inputs) args.push_back(r.c);
    std::vector<at::Tensor> outs;
    try {
      outs = (*k)(node, args, exec::KernelContext{});
    } catch (const c10::Error& e) {
      throw InputError(msg(where(), ": cannot evaluate at import: ", e.what_without_backtrace()));
    }
    bool keep = options_.fold_constants;
    for (const auto& o : outs) keep |= !o.is_floating_point();  // integer results are shapes and indices
    if (keep) {
      std::vector<Ref> refs;
      for (auto& o : outs) refs.push_back(Ref{o.contiguous(), "", ""});
      return refs;
    }
  }
  node.name = fresh_node(node.name);
  for (const auto& r : inputs) node.inputs.push_back(materialize(r));
  std::vector<Ref> refs;
  for (int i = 0; i < num_outputs; ++i) {
    std::string hint = i < static_cast<int>(hints.size()) ? hints[i] : "";
    std::string out;
    if (!hint.empty() && !claimed_values_.count(hint)) {
      out = hint;
      claimed_values_.insert(out);
    } else {
      out = fresh_value(hint.empty() ? node.name : hint);
    }
    node.outputs[i] = out;
    shapes_[out] = out_shapes[i];
    refs.push_back(Ref{at::Tensor(), out, ""});
  }
  g_.nodes.push_back(std::move(node));
  return refs;
}

const AttributeProto* Importer::attr(const NodeProto& n, const std::string& key) const {
  for (const auto& a : n.attribute())
    if (a.name() == key) return &a;
  return nullptr;
}
int64_t Importer::attr_i(const NodeProto& n, const std::string& key, int64_t fallback) const {
  const AttributeProto* a = attr(n, key);
  return a ? a->i() : fallback;
}
double Importer::attr_f(const NodeProto& n, const std::string& key, double fallback) const {
  const AttributeProto* a = attr(n, key);
  if (!a) return fallback;
  return a->type() == AttributeProto::INT ? static_cast<double>(a->i()) : static_cast<double>(a->f());
}
std::string Importer::attr_s(const NodeProto& n, const std::string& key, const std::string& fallback) const {
  const AttributeProto* a = attr(n, key);
  return a ? a->s() : fallback;
}
std::vector<int64_t> Importer::attr_ints(const NodeProto& n, const std::string& key, std::vector<int64_t> fallback) const {
  const AttributeProto* a = attr(n, key);
  if (!a) return fallback;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}
bool Importer::output_used(const NodeProto& n, int i) const {
  if (i >= n.output_size() || n.output(i).empty()) return false;
  auto it = uses_.find(n.output(i));
  return it != uses_.end() && it->second > 0;
}
void Importer::unsupported(const std::string& what) const {
  throw UnsupportedError(msg(where(), ", opset ", opset_, ": ", what));
}

// ------------------------------------------------------------------------------------------
// Op handlers.

void Importer::op_unary(const NodeProto& n) {
  std::string op = n.op_type();
  std::map<std::string, ir::Attr> a;
  if (op == "LeakyRelu") a["alpha"] = attr_f(n, "alpha", 0.01);
  if (op == "Elu" || op == "Celu" || op == "ThresholdedRelu") a["alpha"] = attr_f(n, "alpha", 1.0);
  if (op == "Selu") {
    a["alpha"] = attr_f(n, "alpha", 1.67326319217681884765625);
    a["gamma"] = attr_f(n, "gamma", 1.05070102214813232421875);
  }
  if (op == "HardSigmoid") {
    a["alpha"] = attr_f(n, "alpha", 0.2);
    a["beta"] = attr_f(n, "beta", 0.5);
  }
  if (op == "Shrink") {
    a["lambd"] = attr_f(n, "lambd", 0.5);
    a["bias"] = attr_f(n, "bias", 0.0);
  }
  out_hint_emit(n, op, {in(n, 0)}, a);
}

// Opsets before 7 broadcast only with broadcast=1, aligning B with A starting at `axis`.
Ref Importer::legacy_broadcast(const NodeProto& n, const Ref& a, Ref b) {
  if (opset_ >= 7 || !attr_i(n, "broadcast", 0) || !attr(n, "axis")) return b;
  int64_t ra = static_cast<int64_t>(shape(a).size()), rb = static_cast<int64_t>(shape(b).size());
  int64_t axis = attr_i(n, "axis", 0);
  if (axis < 0) axis += ra;
  int64_t trailing = ra - axis - rb;
  if (trailing <= 0) return b;
  std::vector<int64_t> axes;
  for (int64_t i = 0; i < trailing; ++i) axes.push_back(rb + i);
  return emit1("Unsqueeze", {b}, {{"axes", axes}});
}

void Importer::op_binary(const NodeProto& n) {
  Ref a = in(n, 0), b = legacy_broadcast(n, in(n, 0), in(n, 1));
  std::map<std::string, ir::Attr> attrs;
  if (n.op_type() == "Mod") attrs["fmod"] = attr_i(n, "fmod", 0);
  // MatMul (as Linear) + Add of a constant vector: the bias of the Linear.
  if (n.op_type() == "Add" && (a.is_const() != b.is_const())) {
    const Ref& v = a.is_const() ? b : a;
    const Ref& c = a.is_const() ? a : b;
    ir::Node* lin = nullptr;
    for (auto it = g_.nodes.rbegin(); it != g_.nodes.rend(); ++it)
      if (it->outputs.size() == 1 && it->outputs[0] == v.ir) {
        lin = &*it;
        break;
      }
    const std::string& src = a.is_const() ? n.input(1) : n.input(0);
    if (lin && lin->op == "Linear" && !lin->has_param("bias") && uses_[src] == 1 && c.c.is_floating_point()) {
      int64_t out_f = lin->param("weight").value.size(0);
      const ir::Shape& cs = shape(c);
      bool vec = c.c.numel() == out_f && (cs.empty() || cs.back() == out_f) &&
                 cs.size() <= shape(v).size();
      if (vec && c.c.dim() >= 1) {
        ir::Param p;
        p.value = c.c.reshape({out_f}).to(lin->param("weight").value.scalar_type()).clone();
        lin->params["bias"] = p;
        bind(n.output(0), v);
        return;
      }
    }
  }
  out_hint_emit(n, n.op_type(), {a, b}, attrs);
}

void Importer::op_variadic(const NodeProto& n) {
  std::vector<Ref> ins;
  for (int i = 0; i < n.input_size(); ++i)
    if (has_input(n, i)) ins.push_back(in(n, i));
  if (ins.empty()) unsupported("needs at least one input");
  const std::string& op = n.op_type();
  if (ins.size() == 1) {
    bind(n.output(0), ins[0]);
    return;
  }
  if (op == "Max" || op == "Min") {
    out_hint_emit(n, op, ins);
    return;
  }
  // Sum and Mean: a chain of Adds (the IR's Add is binary).
  Ref acc = ins[0];
  for (size_t i = 1; i < ins.size(); ++i) {
    bool last = i + 1 == ins.size() && op == "Sum";
    acc = emit1("Add", {acc, ins[i]}, {}, {}, last ? n.output(0) : "");
  }
  if (op == "Mean") {
    at::Tensor k = at::scalar_tensor(static_cast<double>(ins.size()), at::TensorOptions().dtype(
                                                                          acc.is_const() ? acc.c.scalar_type() : at::kFloat));
    acc = emit1("Div", {acc, Ref{k, "", ""}}, {}, {}, n.output(0));
  }
  bind(n.output(0), acc);
}

void Importer::op_alias(const NodeProto& n) {
  Ref x = in(n, 0);
  bind(n.output(0), x);
  if (n.op_type() == "Dropout" && output_used(n, 1)) {
    // The mask of an inference-mode Dropout is all ones.
    bind(n.output(1), Ref{at::ones(shape(x), at::kBool), "", ""});
  }
}

void Importer::op_constant(const NodeProto& n) {
  at::Tensor t;
  if (const auto* a = attr(n, "value")) {
    t = tensor_from_proto(a->t(), where(), base_dir_);
  } else if (const auto* a = attr(n, "value_float")) {
    t = at::scalar_tensor(a->f(), at::kFloat);
  } else if (const auto* a = attr(n, "value_floats")) {
    t = at::tensor(std::vector<float>(a->floats().begin(), a->floats().end()), at::kFloat);
  } else if (const auto* a = attr(n, "value_int")) {
    t = at::scalar_tensor(a->i(), at::kLong);
  } else if (const auto* a = attr(n, "value_ints")) {
    t = at::tensor(std::vector<int64_t>(a->ints().begin(), a->ints().end()), at::kLong);
  } else {
    unsupported("only tensor, float and int constants are supported (not sparse or string values)");
  }
  bind(n.output(0), Ref{t, "", ""});
}

void Importer::op_constant_of_shape(const NodeProto& n) {
  std::vector<int64_t> dims = to_ints(const_in(n, 0, "shape"));
  for (auto d : dims)
    if (d < 0) throw InputError(msg(where(), ": negative dimension ", d, " in the shape"));
  if (numel_of(dims) > kMaxFoldedElements)
    throw InputError(msg(where(), ": shape ", ir::shape_str(dims), " is absurdly large"));
  at::Tensor value = at::zeros({1}, at::kFloat);
  if (const auto* a = attr(n, "value")) value = tensor_from_proto(a->t(), where(), base_dir_);
  if (value.numel() != 1) throw InputError(msg(where(), ": 'value' must hold one element"));
  bind(n.output(0), Ref{at::full(dims, value.reshape({}).item(), value.options()), "", ""});
}

void Importer::op_shape(const NodeProto& n) {
  Ref x = in(n, 0);
  ir::Shape s = shape(x);
  int64_t r = static_cast<int64_t>(s.size());
  int64_t start = attr_i(n, "start", 0), end = attr_i(n, "end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, start, r);
  ir::Shape part(s.begin() + start, s.begin() + end);
  if (std::find(part.begin(), part.end(), ir::kDynamic) == part.end()) {
    bind(n.output(0), Ref{at::tensor(part, at::kLong), "", ""});
    return;
  }
  std::map<std::string, ir::Attr> a;
  if (start) a["start"] = start;
  if (end != r) a["end"] = end;
  out_hint_emit(n, "Shape", {x}, a);
}

void Importer::op_size(const NodeProto& n) {
  int64_t k = numel_of(shape(in(n, 0)));
  if (k < 0) unsupported("Size of a tensor with dimensions known only at run time");
  bind(n.output(0), Ref{at::scalar_tensor(k, at::kLong), "", ""});
}

void Importer::op_range(const NodeProto& n) {
  at::Tensor s = const_in(n, 0, "start"), l = const_in(n, 1, "limit"), d = const_in(n, 2, "delta");
  double ds = d.item<double>();
  if (ds == 0) throw InputError(msg(where(), ": delta is 0"));
  double count = std::ceil((l.item<double>() - s.item<double>()) / ds);
  if (count > static_cast<double>(kMaxFoldedElements)) throw InputError(msg(where(), ": absurdly long range"));
  at::Tensor r = count <= 0 ? at::empty({0}, s.options())
                            : at::arange(s.item(), l.item(), d.item(), s.options());
  bind(n.output(0), Ref{r, "", ""});
}

std::vector<int64_t> Importer::conv_pads(const NodeProto& n, const ir::Shape& in, const std::vector<int64_t>& kernel,
                                         const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations) {
  size_t nd = kernel.size();
  std::string auto_pad = attr_s(n, "auto_pad", "NOTSET");
  if (auto_pad == "NOTSET" || auto_pad.empty()) {
    auto pads = attr_ints(n, "pads", std::vector<int64_t>(2 * nd, 0));
    if (pads.size() != 2 * nd) throw InputError(msg(where(), ": 'pads' has ", pads.size(), " values; expected ", 2 * nd));
    return pads;
  }
  if (auto_pad == "VALID") return std::vector<int64_t>(2 * nd, 0);
  if (auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER")
    throw InputError(msg(where(), ": unknown auto_pad '", auto_pad, "' (valid: NOTSET, VALID, SAME_UPPER, SAME_LOWER)"));
  std::vector<int64_t> pads(2 * nd, 0);
  for (size_t i = 0; i < nd; ++i) {
    int64_t x = in.at(i + 2);
    int64_t out = (x + strides[i] - 1) / strides[i];
    int64_t total = std::max<int64_t>(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - x);
    int64_t small = total / 2, big = total - small;
    pads[i] = auto_pad == "SAME_UPPER" ? small : big;
    pads[i + nd] = auto_pad == "SAME_UPPER" ? big : small;
  }
  return pads;
}

void Importer::op_conv(const NodeProto& n) {
  Ref x = in(n, 0);
  at::Tensor w = const_in(n, 1, "weight");
  if (w.dim() < 3) throw InputError(msg(where(), ": weight of shape ", w.sizes(), " (needs rank >= 3)"));
  size_t nd = w.dim() - 2;
  std::map<std::string, ir::Attr> a;
  auto strides = attr_ints(n, "strides", std::vector<int64_t>(nd, 1));
  auto dil = attr_ints(n, "dilations", std::vector<int64_t>(nd, 1));
  std::vector<int64_t> k(w.sizes().begin() + 2, w.sizes().end());
  a["strides"] = strides;
  a["dilations"] = dil;
  a["pads"] = conv_pads(n, shape(x), k, strides, dil);
  a["group"] = attr_i(n, "group", 1);
  std::map<std::string, ir::Param> p;
  p["weight"].value = w.to(at::kFloat);
  if (auto q = weight_qspec(n, 1); q && (q->axis <= 0)) p["weight"].qspec = *q;
  if (has_input(n, 2)) p["bias"].value = const_in(n, 2, "bias").to(at::kFloat).reshape({-1});
  out_hint_emit(n, "Conv", {x}, a, p);
}

void Importer::op_conv_transpose(const NodeProto& n) {
  Ref x = in(n, 0);
  at::Tensor w = const_in(n, 1, "weight");
  if (w.dim() < 3) throw InputError(msg(where(), ": weight of shape ", w.sizes(), " (needs rank >= 3)"));
  size_t nd = w.dim() - 2;
  auto strides = attr_ints(n, "strides", std::vector<int64_t>(nd, 1));
  auto dil = attr_ints(n, "dilations", std::vector<int64_t>(nd, 1));
  auto outpad = attr_ints(n, "output_padding", std::vector<int64_t>(nd, 0));
  int64_t group = attr_i(n, "group", 1);
  std::vector<int64_t> pads = attr_ints(n, "pads", std::vector<int64_t>(2 * nd, 0));
  std::string auto_pad = attr_s(n, "auto_pad", "NOTSET");
  auto out_shape = attr_ints(n, "output_shape", {});
  const ir::Shape& xs = shape(x);
  if (!out_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    if (out_shape.size() > nd) out_shape.erase(out_shape.begin(), out_shape.end() - nd);
    for (size_t i = 0; i < nd; ++i) {
      int64_t insz = xs.at(i + 2);
      int64_t target = out_shape.empty() ? insz * strides[i] : out_shape[i];
      int64_t total = strides[i] * (insz - 1) + outpad[i] + (w.size(i + 2) - 1) * dil[i] + 1 - target;
      if (total < 0) {  // the requested output is larger: grow it with output padding
        outpad[i] -= total;
        total = 0;
      }
      bool upper = auto_pad != "SAME_LOWER";
      pads[i] = upper ? total / 2 : total - total / 2;
      pads[i + nd] = total - pads[i];
    }
  } else if (auto_pad == "VALID") {
    pads.assign(2 * nd, 0);
  }
  std::map<std::string, ir::Attr> a{{"strides", strides}, {"dilations", dil}, {"pads", pads}, {"group", group},
                                    {"output_padding", outpad}};
  std::map<std::string, ir::Param> p;
  p["weight"].value = w.to(at::kFloat);
  if (has_input(n, 2)) p["bias"].value = const_in(n, 2, "bias").to(at::kFloat).reshape({-1});
  out_hint_emit(n, "ConvTranspose", {x}, a, p);
}

void Importer::op_gemm(const NodeProto& n) {
  Ref A = in(n, 0), B = in(n, 1);
  double alpha = attr_f(n, "alpha", 1.0), beta = attr_f(n, "beta", 1.0);
  bool ta = attr_i(n, "transA", 0) != 0, tb = attr_i(n, "transB", 0) != 0;
  if (ta) A = emit1("Transpose", {A}, {{"perm", std::vector<int64_t>{1, 0}}});
  std::optional<Ref> C;
  if (has_input(n, 2)) C = in(n, 2);
  // An integer Gemm stays integer: it becomes MatMul (+ Add), never a float Linear.
  bool integer = B.is_const() && at::isIntegralType(B.c.scalar_type(), /*includeBool=*/false);
  if (integer && (alpha != 1.0 || beta != 1.0))
    unsupported(msg("integer Gemm with alpha = ", alpha, ", beta = ", beta,
                    " (integer Gemm is supported with alpha = beta = 1)"));
  if (B.is_const() && !A.is_const() && B.c.dim() == 2 && !integer) {
    at::Tensor w = (tb ? B.c : B.c.t()).to(at::kFloat).contiguous();
    if (alpha != 1.0) w = w * alpha;
    std::map<std::string, ir::Param> p;
    p["weight"].value = w;
    if (auto q = weight_qspec(n, 1); q && alpha == 1.0) {
      if (!tb && q->axis >= 0) q->axis = 1 - q->axis;
      if (q->axis <= 0) p["weight"].qspec = *q;
    }
    int64_t N = w.size(0);
    bool c_as_bias = false;
    if (C && C->is_const() && beta != 0.0) {
      const at::Tensor& c = C->c;
      if (c.numel() == 1 || (c.numel() == N && (c.dim() == 1 || (c.dim() == 2 && c.size(0) == 1)))) {
        p["bias"].value = (c.to(at::kFloat).reshape({-1}).expand({N}) * beta).contiguous();
        c_as_bias = true;
        // A fixed-point bias keeps its type (a per-tensor spec survives the reshape).
        if (auto q = weight_qspec(n, 2); q && fixed::is_fixed(*q) && beta == 1.0) p["bias"].qspec = *q;
      }
    }
    if (!C || c_as_bias || beta == 0.0) {
      out_hint_emit(n, "Linear", {A}, {}, p);
      return;
    }
    Ref y = emit1("Linear", {A}, {}, p);
    Ref c = *C;
    if (beta != 1.0) c = emit1("Mul", {c, Ref{at::scalar_tensor(beta, at::kFloat), "", ""}});
    out_hint_emit(n, "Add", {y, c});
    return;
  }
  if (tb) B = emit1("Transpose", {B}, {{"perm", std::vector<int64_t>{1, 0}}});
  Ref y = emit1("MatMul", {A, B}, {}, {}, C || alpha != 1.0 ? "" : n.output(0));
  if (alpha != 1.0)
    y = emit1("Mul", {y, Ref{at::scalar_tensor(alpha, at::kFloat), "", ""}}, {}, {}, C ? "" : n.output(0));
  if (C && beta != 0.0) {
    Ref c = *C;
    if (beta != 1.0) c = emit1("Mul", {c, Ref{at::scalar_tensor(beta, at::kFloat), "", ""}});
    y = emit1("Add", {y, c}, {}, {}, n.output(0));
  }
  bind(n.output(0), y);
}

void Importer::op_matmul(const NodeProto& n) {
  Ref A = in(n, 0), B = in(n, 1);
  if (!A.is_const() && B.is_const() && B.c.dim() == 2 && B.c.is_floating_point() && shape(A).size() >= 2) {
    std::map<std::string, ir::Param> p;
    p["weight"].value = B.c.t().to(at::kFloat).contiguous();
    if (auto q = weight_qspec(n, 1)) {  // B is [in, out]: its axis 1 is the Linear's axis 0
      if (q->axis >= 0) q->axis = 1 - q->axis;
      if (q->axis <= 0) p["weight"].qspec = *q;
    }
    out_hint_emit(n, "Linear", {A}, {}, p);
    return;
  }
  out_hint_emit(n, "MatMul", {A, B});
}

void Importer::op_batchnorm(const NodeProto& n) {
  for (int i = 1; i < n.output_size(); ++i)
    if (output_used(n, i)) unsupported("training-mode BatchNormalization (its running statistics outputs are used)");
  if (opset_ < 9 && attr(n, "spatial") && attr_i(n, "spatial", 1) == 0)
    unsupported("BatchNormalization with spatial=0");
  Ref x = in(n, 0);
  std::map<std::string, ir::Param> p;
  const char* keys[] = {"weight", "bias", "running_mean", "running_var"};
  const char* what[] = {"scale", "bias", "mean", "variance"};
  for (int i = 0; i < 4; ++i) {
    p[keys[i]].value = const_in(n, i + 1, what[i]).to(at::kFloat).reshape({-1}).contiguous();
    p[keys[i]].trainable = i < 2;
  }
  // ONNX: running = m * running + (1 - m) * batch; PyTorch (the IR): the other way round.
  std::map<std::string, ir::Attr> a{{"epsilon", attr_f(n, "epsilon", 1e-5)},
                                    {"momentum", 1.0 - attr_f(n, "momentum", 0.9)}};
  out_hint_emit(n, "BatchNorm", {x}, a, p);
}

void Importer::op_instancenorm(const NodeProto& n) {
  Ref x = in(n, 0);
  std::map<std::string, ir::Param> p;
  p["weight"].value = const_in(n, 1, "scale").to(at::kFloat).reshape({-1});
  p["bias"].value = const_in(n, 2, "bias").to(at::kFloat).reshape({-1});
  out_hint_emit(n, "InstanceNorm", {x}, {{"epsilon", attr_f(n, "epsilon", 1e-5)}}, p);
}

void Importer::op_layernorm(const NodeProto& n) {
  for (int i = 1; i < n.output_size(); ++i)
    if (output_used(n, i)) unsupported("LayerNormalization whose Mean/InvStdDev outputs are used");
  Ref x = in(n, 0);
  const ir::Shape& xs = shape(x);
  int64_t r = static_cast<int64_t>(xs.size());
  int64_t axis = attr_i(n, "axis", -1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r) throw InputError(msg(where(), ": axis out of range"));
  std::vector<int64_t> norm(xs.begin() + axis, xs.end());
  std::map<std::string, ir::Param> p;
  p["weight"].value = const_in(n, 1, "scale").to(at::kFloat).expand(norm).contiguous();
  if (has_input(n, 2)) p["bias"].value = const_in(n, 2, "bias").to(at::kFloat).expand(norm).contiguous();
  out_hint_emit(n, "LayerNorm", {x}, {{"axis", axis}, {"epsilon", attr_f(n, "epsilon", 1e-5)}}, p);
}

void Importer::op_pool(const NodeProto& n) {
  bool is_max = n.op_type() == "MaxPool";
  if (is_max && output_used(n, 1)) unsupported("MaxPool whose Indices output is used");
  if (attr_i(n, "storage_order", 0) != 0 && output_used(n, 1)) unsupported("MaxPool storage_order=1");
  Ref x = in(n, 0);
  auto k = attr_ints(n, "kernel_shape", {});
  if (k.empty()) throw InputError(msg(where(), ": missing attribute 'kernel_shape'"));
  size_t nd = k.size();
  if (shape(x).size() != nd + 2)
    throw InputError(msg(where(), ": kernel_shape has ", nd, " dims for an input of shape ", ir::shape_str(shape(x))));
  auto strides = attr_ints(n, "strides", std::vector<int64_t>(nd, 1));
  auto dil = attr_ints(n, "dilations", std::vector<int64_t>(nd, 1));
  std::map<std::string, ir::Attr> a{{"kernel_shape", k}, {"strides", strides}, {"pads", conv_pads(n, shape(x), k, strides, dil)},
                                    {"ceil_mode", attr_i(n, "ceil_mode", 0)}};
  if (is_max)
    a["dilations"] = dil;
  else
    a["count_include_pad"] = attr_i(n, "count_include_pad", 0);
  out_hint_emit(n, is_max ? "MaxPool" : "AvgPool", {x}, a);
}

void Importer::op_global_pool(const NodeProto& n) {
  out_hint_emit(n, n.op_type() == "GlobalAveragePool" ? "GlobalAvgPool" : "GlobalMaxPool", {in(n, 0)});
}

void Importer::op_lrn(const NodeProto& n) {
  const AttributeProto* size = attr(n, "size");
  if (!size) throw InputError(msg(where(), ": missing attribute 'size'"));
  out_hint_emit(n, "LRN", {in(n, 0)},
                {{"size", size->i()}, {"alpha", attr_f(n, "alpha", 1e-4)}, {"beta", attr_f(n, "beta", 0.75)},
                 {"bias", attr_f(n, "bias", 1.0)}});
}

void Importer::op_softmax(const NodeProto& n) {
  Ref x = in(n, 0);
  ir::Shape xs = shape(x);
  int64_t r = static_cast<int64_t>(xs.size());
  int64_t axis = attr_i(n, "axis", opset_ >= 13 ? -1 : 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= std::max<int64_t>(r, 1)) throw InputError(msg(where(), ": axis out of range"));
  if (opset_ >= 13 || axis == r - 1 || r <= 1) {
    out_hint_emit(n, n.op_type(), {x}, {{"axis", axis}});
    return;
  }
  // Before opset 13 the op works on the input coerced to 2-D at `axis`.
  Ref f = emit1("Flatten", {x}, {{"axis", axis}});
  Ref s = emit1(n.op_type(), {f}, {{"axis", int64_t{1}}});
  std::vector<int64_t> back(xs.begin(), xs.end());
  back[0] = -1;  // keeps the batch dimension free
  out_hint_emit(n, "Reshape", {s}, {{"shape", back}});
}

void Importer::op_flatten(const NodeProto& n) {
  Ref x = in(n, 0);
  int64_t axis = attr_i(n, "axis", 1);
  out_hint_emit(n, "Flatten", {x}, {{"axis", axis}});
}

void Importer::op_reshape(const NodeProto& n) {
  Ref x = in(n, 0);
  std::vector<int64_t> target = opset_ < 5 ? attr_ints(n, "shape", {}) : to_ints(const_in(n, 1, "shape"));
  std::map<std::string, ir::Attr> a{{"shape", target}};
  if (attr_i(n, "allowzero", 0)) a["allowzero"] = int64_t{1};
  out_hint_emit(n, "Reshape", {x}, a);
}

void Importer::op_transpose(const NodeProto& n) {
  Ref x = in(n, 0);
  std::vector<int64_t> perm = attr_ints(n, "perm", {});
  if (perm.empty())
    for (size_t i = shape(x).size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  out_hint_emit(n, "Transpose", {x}, {{"perm", perm}});
}

std::vector<int64_t> Importer::optional_axes(const NodeProto& n, int input_index, int since_opset) {
  if (opset_ < since_opset) return attr_ints(n, "axes", {});
  if (!has_input(n, input_index)) return {};
  return to_ints(const_in(n, input_index, "axes"));
}

void Importer::op_squeeze(const NodeProto& n) {
  Ref x = in(n, 0);
  auto axes = optional_axes(n, 1, 13);
  if (n.op_type() == "Unsqueeze" && axes.empty()) throw InputError(msg(where(), ": Unsqueeze needs axes"));
  std::map<std::string, ir::Attr> a;
  if (!axes.empty()) a["axes"] = axes;
  out_hint_emit(n, n.op_type(), {x}, a);
}

void Importer::op_concat(const NodeProto& n) {
  std::vector<Ref> ins;
  for (int i = 0; i < n.input_size(); ++i)
    if (has_input(n, i)) {
      Ref r = in(n, i);
      // Empty operands (shape computations often concatenate them) change nothing.
      if (r.is_const() && r.c.numel() == 0 && n.input_size() > 1) continue;
      ins.push_back(r);
    }
  if (ins.empty()) ins.push_back(in(n, 0));
  if (ins.size() == 1) {
    bind(n.output(0), ins[0]);
    return;
  }
  out_hint_emit(n, "Concat", ins, {{"axis", attr_i(n, "axis", 1)}});
}

void Importer::op_split(const NodeProto& n) {
  Ref x = in(n, 0);
  const ir::Shape& xs = shape(x);
  int64_t axis = attr_i(n, "axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(xs.size());
  if (axis < 0 || axis >= static_cast<int64_t>(xs.size())) throw InputError(msg(where(), ": axis out of range"));
  std::vector<int64_t> split;
  if (opset_ < 13) {
    split = attr_ints(n, "split", {});
    if (split.empty() && has_input(n, 1)) split = to_ints(const_in(n, 1, "split"));  // opset 1 form
  } else if (has_input(n, 1)) {
    split = to_ints(const_in(n, 1, "split"));
  }
  int64_t k = n.output_size();
  int64_t total = xs[axis];
  if (split.empty()) {
    int64_t chunk = (total + k - 1) / k;  // opset 18 allows an uneven last chunk
    for (int64_t i = 0; i < k; ++i) split.push_back(std::max<int64_t>(0, std::min(chunk, total - i * chunk)));
  }
  std::vector<std::string> hints(n.output().begin(), n.output().end());
  auto outs = emit("Split", {x}, {{"axis", axis}, {"split", split}}, {}, static_cast<int>(k), hints);
  for (int64_t i = 0; i < k; ++i) bind(n.output(i), outs[i]);
}

void Importer::op_slice(const NodeProto& n) {
  Ref x = in(n, 0);
  std::vector<int64_t> starts, ends, axes, steps;
  if (opset_ < 10) {
    starts = attr_ints(n, "starts", {});
    ends = attr_ints(n, "ends", {});
    axes = attr_ints(n, "axes", {});
  } else {
    starts = to_ints(const_in(n, 1, "starts"));
    ends = to_ints(const_in(n, 2, "ends"));
    if (has_input(n, 3)) axes = to_ints(const_in(n, 3, "axes"));
    if (has_input(n, 4)) steps = to_ints(const_in(n, 4, "steps"));
  }
  std::map<std::string, ir::Attr> a{{"starts", starts}, {"ends", ends}};
  if (!axes.empty()) a["axes"] = axes;
  if (!steps.empty()) a["steps"] = steps;
  out_hint_emit(n, "Slice", {x}, a);
}

void Importer::op_pad(const NodeProto& n) {
  Ref x = in(n, 0);
  int64_t r = static_cast<int64_t>(shape(x).size());
  std::vector<int64_t> pads;
  double value = 0.0;
  if (opset_ < 11) {
    pads = attr_ints(n, opset_ < 2 ? "paddings" : "pads", {});
    value = attr_f(n, "value", 0.0);
  } else {
    pads = to_ints(const_in(n, 1, "pads"));
    if (has_input(n, 2)) {
      at::Tensor v = const_in(n, 2, "constant value");
      if (v.numel() != 1) throw InputError(msg(where(), ": constant_value must be a scalar"));
      value = v.to(at::kDouble).reshape({}).item<double>();
    }
    if (has_input(n, 3)) {  // opset 18: pads for the listed axes only
      auto axes = to_ints(const_in(n, 3, "axes"));
      std::vector<int64_t> full(2 * r, 0);
      if (pads.size() != 2 * axes.size()) throw InputError(msg(where(), ": pads and axes differ in length"));
      for (size_t i = 0; i < axes.size(); ++i) {
        int64_t ax = axes[i] < 0 ? axes[i] + r : axes[i];
        if (ax < 0 || ax >= r) throw InputError(msg(where(), ": axis out of range"));
        full[ax] = pads[i];
        full[ax + r] = pads[i + axes.size()];
      }
      pads = full;
    }
  }
  if (static_cast<int64_t>(pads.size()) != 2 * r)
    throw InputError(msg(where(), ": 'pads' has ", pads.size(), " values for a rank-", r, " input"));
  std::string mode = attr_s(n, "mode", "constant");
  out_hint_emit(n, "Pad", {x}, {{"pads", pads}, {"mode", mode}, {"value", value}});
}

void Importer::op_clip(const NodeProto& n) {
  Ref x = in(n, 0);
  std::optional<double> lo, hi;
  if (opset_ < 11) {
    if (attr(n, "min")) lo = attr_f(n, "min", 0);
    if (attr(n, "max")) hi = attr_f(n, "max", 0);
  } else {
    if (has_input(n, 1)) lo = const_in(n, 1, "min").to(at::kDouble).reshape({}).item<double>();
    if (has_input(n, 2)) hi = const_in(n, 2, "max").to(at::kDouble).reshape({}).item<double>();
  }
  if (lo && std::isinf(*lo) && *lo < 0) lo.reset();
  if (hi && std::isinf(*hi) && *hi > 0) hi.reset();
  bool is_float = x.is_const() ? x.c.is_floating_point() : true;
  if (is_float && lo && *lo == 0.0 && hi && *hi == 6.0) {
    out_hint_emit(n, "Relu6", {x});
    return;
  }
  if (is_float && lo && *lo == 0.0 && !hi) {
    out_hint_emit(n, "Relu", {x});
    return;
  }
  std::map<std::string, ir::Attr> a;
  if (lo) a["min"] = *lo;
  if (hi) a["max"] = *hi;
  out_hint_emit(n, "Clip", {x}, a);
}

void Importer::op_cast(const NodeProto& n) {
  const AttributeProto* to = attr(n, "to");
  if (!to) throw InputError(msg(where(), ": missing attribute 'to'"));
  int32_t code = to->type() == AttributeProto::STRING ? onnx::TensorProto::FLOAT : static_cast<int32_t>(to->i());
  if (to->type() == AttributeProto::STRING) {  // opset 1 spelled the type
    onnx::TensorProto::DataType tmp;
    if (!onnx::TensorProto::DataType_Parse(to->s(), &tmp)) throw InputError(msg(where(), ": unknown type '", to->s(), "'"));
    code = tmp;
  }
  out_hint_emit(n, "Cast", {in(n, 0)}, {{"to", cast_name_from_onnx(code, where())}});
}

void Importer::op_gather(const NodeProto& n) {
  Ref data = in(n, 0), idx = in(n, 1);
  int64_t axis = attr_i(n, "axis", 0);
  int64_t r = static_cast<int64_t>(shape(data).size());
  if (axis < -r || axis >= r) throw InputError(msg(where(), ": axis ", axis, " out of range"));
  if (idx.is_const()) {
    int64_t dim = shape(data)[axis < 0 ? axis + r : axis];
    if (dim != ir::kDynamic && idx.c.numel() > 0) {
      at::Tensor i = idx.c.to(at::kLong);
      if ((i >= dim).any().item<bool>() || (i < -dim).any().item<bool>())
        throw InputError(msg(where(), ": an index is out of range for dimension ", dim));
    }
  }
  out_hint_emit(n, "Gather", {data, idx}, {{"axis", axis}});
}

void Importer::op_expand(const NodeProto& n) {
  Ref x = in(n, 0), s = in(n, 1);
  if (s.is_const()) {
    out_hint_emit(n, "Expand", {x}, {{"shape", to_ints(s.c)}});
    return;
  }
  out_hint_emit(n, "Expand", {x, s});
}

void Importer::op_tile(const NodeProto& n) {
  Ref x = in(n, 0);
  auto reps = to_ints(const_in(n, 1, "repeats"));
  out_hint_emit(n, "Tile", {x}, {{"repeats", reps}});
}

void Importer::op_reduce(const NodeProto& n) {
  Ref x = in(n, 0);
  const std::string& op = n.op_type();
  int since = op == "ReduceSum" ? 13 : 18;
  auto axes = optional_axes(n, 1, since);
  if (axes.empty() && opset_ >= since && attr_i(n, "noop_with_empty_axes", 0)) {
    bind(n.output(0), x);
    return;
  }
  std::map<std::string, ir::Attr> a{{"keepdims", attr_i(n, "keepdims", 1)}};
  if (!axes.empty()) a["axes"] = axes;
  out_hint_emit(n, op, {x}, a);
}

void Importer::op_arg(const NodeProto& n) {
  out_hint_emit(n, n.op_type(), {in(n, 0)},
                {{"axis", attr_i(n, "axis", 0)}, {"keepdims", attr_i(n, "keepdims", 1)},
                 {"select_last_index", attr_i(n, "select_last_index", 0)}});
}

void Importer::op_prelu(const NodeProto& n) {
  Ref x = in(n, 0);
  Ref s = in(n, 1);
  if (!s.is_const()) {
    // A runtime slope: max(0, x) + slope * min(0, x) with general ops.
    Ref zero{at::zeros({}, at::kFloat), "", ""};
    Ref pos = emit1("Max", {x, zero}), neg = emit1("Min", {x, zero});
    Ref sn = emit1("Mul", {s, neg});
    out_hint_emit(n, "Add", {pos, sn});
    return;
  }
  at::Tensor slope = s.c.to(at::kFloat);
  const ir::Shape& xs = shape(x);
  // Before opset 7 (and in PyTorch's exports of that era) a 1-D slope runs along the channels.
  if (slope.dim() == 1 && slope.numel() > 1 && xs.size() > 2 && slope.numel() == xs[1] &&
      (opset_ < 7 || xs.back() != slope.numel())) {
    std::vector<int64_t> ss(xs.size() - 1, 1);
    ss[0] = slope.numel();
    slope = slope.reshape(ss);
  }
  std::map<std::string, ir::Param> p;
  p["slope"].value = slope.contiguous();
  out_hint_emit(n, "PRelu", {x}, {}, p);
}

// A node followed by a fake-quantizing Identity (its sole consumer) carries the spec itself, as the
// quantization passes write it: Conv -> Q/DQ becomes a Conv with out_qspec, so the int8 kernels
// apply. The Identity's output name is kept.
void fuse_quantized_outputs(ir::Graph& g) {
  for (size_t i = 0; i < g.nodes.size();) {
    ir::Node& id = g.nodes[i];
    const ir::Node* prod = id.op == "Identity" && id.out_qspec ? g.producer(id.inputs[0]) : nullptr;
    bool ok = prod && !prod->out_qspec && prod->outputs.size() == 1 && prod->op != "Constant" &&
              g.consumers(id.inputs[0]).size() == 1 &&
              std::find(g.outputs.begin(), g.outputs.end(), id.inputs[0]) == g.outputs.end();
    if (!ok) {
      ++i;
      continue;
    }
    ir::Node& p = *g.find_node(prod->name);
    p.out_qspec = id.out_qspec;
    std::string old = p.outputs[0];
    p.outputs[0] = id.outputs[0];
    g.shapes.erase(old);
    g.nodes.erase(g.nodes.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

std::optional<ir::QuantSpec> Importer::weight_qspec(const NodeProto& n, int i) const {
  if (!has_input(n, i)) return std::nullopt;
  auto it = const_qspecs_.find(n.input(i));
  if (it == const_qspecs_.end()) return std::nullopt;
  return it->second;
}

ir::QuantSpec Importer::qdq_spec(const NodeProto& n, const at::Tensor& scale, const at::Tensor& zp, int64_t rank) {
  ir::QuantSpec s;
  s.bits = 8;
  s.is_signed = zp.defined() && zp.scalar_type() == at::kChar;
  s.scale = scale.to(at::kFloat).contiguous();
  s.zero_point = zp.defined() ? zp.to(at::kLong).contiguous() : at::zeros_like(s.scale, at::kLong);
  if (s.scale.numel() > 1) {
    int64_t axis = attr_i(n, "axis", 1);
    s.axis = axis < 0 ? axis + rank : axis;
    s.scale = s.scale.reshape({-1});
    s.zero_point = s.zero_point.reshape({-1});
  } else {
    s.scale = s.scale.reshape({});
    s.zero_point = s.zero_point.reshape({});
  }
  s.symmetric = s.is_signed && s.zero_point.eq(0).all().item<bool>();
  return s;
}

Ref Importer::quantized_identity(const NodeProto& n, const Ref& x, const ir::QuantSpec& spec) {
  Ref r = out_hint_emit(n, "Identity", {x});
  g_.nodes.back().out_qspec = spec;
  return r;
}

void Importer::op_quantize_linear(const NodeProto& n) {
  Ref x = in(n, 0);
  at::Tensor scale = const_in(n, 1, "scale");
  at::Tensor zp = has_input(n, 2) ? const_in(n, 2, "zero point") : at::Tensor();
  if (zp.defined() && zp.scalar_type() != at::kChar && zp.scalar_type() != at::kByte)
    throw UnsupportedError(msg(where(), ": zero point of type ", zp.scalar_type(), " (supported: int8, uint8)"));
  ir::QuantSpec s = qdq_spec(n, scale, zp, static_cast<int64_t>(shape(x).size()));
  if (x.is_const()) {
    bind(n.output(0), Ref{quant::quantize(x.c.to(at::kFloat), s).to(s.is_signed ? at::kChar : at::kByte), "", ""});
    return;
  }
  if (s.axis >= 0) throw UnsupportedError(msg(where(), ": per-axis quantization of a graph value is not supported"));
  // Followed by DequantizeLinear (checked there): together they are a fake quantization.
  quantized_identity(n, x, s);
  q_values_.insert(n.output(0));
}

void Importer::op_dequantize_linear(const NodeProto& n) {
  Ref x = in(n, 0);
  if (!x.is_const()) {
    if (int_values_.count(n.input(0))) {
      // The integers of a dynamic quantization (QONNX's form of it) or an integer product.
      std::vector<Ref> ins{x, in(n, 1)};
      if (has_input(n, 2)) ins.push_back(in(n, 2));
      out_hint_emit(n, "DequantizeLinear", ins, {{"axis", attr_i(n, "axis", 1)}});
      return;
    }
    if (!q_values_.count(n.input(0)))
      throw UnsupportedError(msg(where(), ": DequantizeLinear of '", n.input(0),
                                 "', which is neither a constant nor the output of a QuantizeLinear, "
                                 "DynamicQuantizeLinear, MatMulInteger or ConvInteger"));
    bind(n.output(0), x);
    return;
  }
  at::Tensor scale = const_in(n, 1, "scale");
  at::Tensor zp = has_input(n, 2) ? const_in(n, 2, "zero point") : at::zeros({}, x.c.scalar_type());
  ir::QuantSpec s = qdq_spec(n, scale, zp, x.c.dim());
  s.is_signed = x.c.scalar_type() == at::kChar;
  s.symmetric = s.is_signed && s.zero_point.eq(0).all().item<bool>();
  if (x.c.scalar_type() == at::kInt) s.bits = 32;
  at::Tensor v = quant::dequantize(x.c, s);
  bind(n.output(0), Ref{v, "", ""});
  if (s.bits <= 8) const_qspecs_[n.output(0)] = s;
}

void Importer::op_qonnx_quant(const NodeProto& n) {
  Ref x = in(n, 0);
  at::Tensor scale = const_in(n, 1, "scale"), zp = const_in(n, 2, "zero point");
  at::Tensor bw = const_in(n, 3, "bit width");
  double bits = bw.to(at::kDouble).reshape(-1)[0].item<double>();
  if (bits != std::floor(bits) || bits < 1 || bits > 24 || (bits < 2 && n.doc_string().empty()))
    throw UnsupportedError(msg(where(), ": bit width ", bits, " (supported: integers 2..16; fixed-point types 1..24)"));
  ir::QuantSpec s;
  s.bits = static_cast<int>(bits);
  s.is_signed = attr_i(n, "signed", 1) != 0;
  s.narrow_range = attr_i(n, "narrow", 0) != 0;
  std::string rm = attr_s(n, "rounding_mode", "ROUND");
  for (auto& c : rm) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  at::Tensor sc = scale.to(at::kFloat), z = zp.to(at::kFloat);
  if (!at::equal(z, at::round(z))) throw UnsupportedError(msg(where(), ": non-integer zero point"));
  // A fixed-point type (ap_fixed<W,I,Q,O>, as hls4ml reads a Quant): a scalar power-of-two scale
  // 2^-F with zero point 0 is ap_fixed<W, W-F>, rounding FLOOR = AP_TRN, ROUND = AP_RND_CONV,
  // DOWN = AP_TRN_ZERO, HALF_UP = AP_RND_INF, HALF_DOWN = AP_RND_ZERO, narrow = AP_SAT_SYM, else
  // AP_SAT. Quant nodes squeeze writes for fixed-point tensors say so in their doc_string (with
  // the overflow mode, which Quant cannot express for AP_WRAP); others become fixed-point types
  // only for the rounding modes squeeze's integer grids lack (FLOOR, DOWN, HALF_DOWN).
  const std::string kFixedDoc = "squeeze fixed-point type ";
  const bool marked = n.doc_string().compare(0, kFixedDoc.size(), kFixedDoc) == 0;
  static const std::map<std::string, fixed::QMode> fixed_modes = {
      {"FLOOR", fixed::QMode::kTrn},          {"ROUND", fixed::QMode::kRndConv}, {"HALF_EVEN", fixed::QMode::kRndConv},
      {"DOWN", fixed::QMode::kTrnZero},       {"HALF_UP", fixed::QMode::kRndInf}, {"ROUND_HALF_UP", fixed::QMode::kRndInf},
      {"HALF_DOWN", fixed::QMode::kRndZero}};
  if (sc.numel() == 1 && z.numel() >= 1 && z.eq(0).all().item<bool>() && fixed_modes.count(rm) &&
      (marked || (rm != "ROUND" && rm != "HALF_EVEN" && rm != "HALF_UP" && rm != "ROUND_HALF_UP"))) {
    const double sv = sc.reshape({}).item<double>();
    int e = 0;
    const double mant = std::frexp(sv, &e);  // sv = mant * 2^e, a power of two when mant == 0.5
    if (sv > 0 && mant == 0.5) {
      fixed::FixedType t;
      t.width = static_cast<int>(bits);
      t.int_bits = t.width + (e - 1);
      t.is_signed = attr_i(n, "signed", 1) != 0;
      t.quant = fixed_modes.at(rm);
      t.overflow = attr_i(n, "narrow", 0) != 0 && t.is_signed ? fixed::OMode::kSatSym : fixed::OMode::kSat;
      if (attr_i(n, "narrow", 0) != 0 && !t.is_signed)
        throw UnsupportedError(msg(where(), ": an unsigned narrow Quant has no fixed-point type"));
      if (marked) {
        // The written type may only differ in what Quant cannot say: wrapping overflow.
        fixed::FixedType written;
        try {
          written = fixed::parse_type(n.doc_string().substr(kFixedDoc.size()), where());
        } catch (const ConfigError& e) {
          throw InputError(e.what());
        }
        fixed::FixedType same = written;
        if (same.overflow == fixed::OMode::kWrap) same.overflow = t.overflow, same.sat_bits = 0;
        if (same != t)
          throw InputError(msg(where(), ": doc_string says ", fixed::to_string(written), " but the Quant attributes say ",
                               fixed::to_string(t)));
        t = written;
      }
      fixed::validate(t, where());
      s = fixed::to_spec(t);
      if (x.is_const()) {
        bind(n.output(0), Ref{quant::fake_quantize(x.c.to(at::kFloat), s), "", ""});
        const_qspecs_[n.output(0)] = s;
        return;
      }
      quantized_identity(n, x, s);
      return;
    }
  }
  if (bits < 2 || bits > 16)
    throw UnsupportedError(msg(where(), ": bit width ", bits, " (supported: integers 2..16; fixed-point types 1..24)"));
  if (rm == "ROUND" || rm == "HALF_EVEN")
    s.rounding = "half_even";
  else if (rm == "HALF_UP" || rm == "ROUND_HALF_UP")
    s.rounding = "half_up";
  else
    throw UnsupportedError(msg(where(), ": rounding_mode '", rm,
                               "' (supported: ROUND, HALF_UP; FLOOR, DOWN and HALF_DOWN with a power-of-two scale "
                               "and zero point 0, as fixed-point types)"));
  if (sc.numel() > 1) {
    int64_t axis = -1;
    for (int64_t d = 0; d < sc.dim(); ++d)
      if (sc.size(d) > 1) axis = axis < 0 ? d : -2;
    if (axis < 0) throw UnsupportedError(msg(where(), ": scale of shape ", sc.sizes(), " (one axis at most)"));
    s.axis = axis;
    s.scale = sc.reshape({-1}).contiguous();
    s.zero_point = (z.numel() > 1 ? z.reshape({-1}) : z.reshape({}).expand({sc.numel()})).to(at::kLong).contiguous();
  } else {
    s.scale = sc.reshape({});
    s.zero_point = z.reshape({-1})[0].to(at::kLong);
  }
  s.symmetric = s.zero_point.eq(0).all().item<bool>();
  if (x.is_const()) {
    bind(n.output(0), Ref{quant::fake_quantize(x.c.to(at::kFloat), s), "", ""});
    const_qspecs_[n.output(0)] = s;
    return;
  }
  if (s.axis >= 0) throw UnsupportedError(msg(where(), ": per-channel quantization of a graph value is not supported"));
  quantized_identity(n, x, s);
}

void Importer::op_dynamic_quantize_linear(const NodeProto& n) {
  std::vector<std::string> hints;
  for (int i = 0; i < 3; ++i) hints.push_back(i < n.output_size() ? n.output(i) : "");
  std::vector<Ref> outs = emit("DynamicQuantizeLinear", {in(n, 0)}, {}, {}, 3, hints);
  for (int i = 0; i < 3 && i < n.output_size(); ++i) {
    bind(n.output(i), outs[static_cast<size_t>(i)]);
    if (!outs[static_cast<size_t>(i)].is_const()) int_values_.insert(n.output(i));
  }
}

std::vector<Ref> Importer::integer_zero_points(const NodeProto& n) {
  if (!has_input(n, 2) && !has_input(n, 3)) return {};
  Ref zero{at::zeros({}, at::kByte), "", ""};
  return {has_input(n, 2) ? in(n, 2) : zero, has_input(n, 3) ? in(n, 3) : zero};
}

void Importer::op_matmul_integer(const NodeProto& n) {
  std::vector<Ref> ins{in(n, 0), in(n, 1)};
  for (const Ref& z : integer_zero_points(n)) ins.push_back(z);
  if (shape(ins[0]).empty() || shape(ins[1]).empty()) unsupported("MatMulInteger of a scalar");
  Ref r = out_hint_emit(n, "MatMulInteger", ins);
  if (!r.is_const()) int_values_.insert(n.output(0));
}

void Importer::op_conv_integer(const NodeProto& n) {
  Ref x = in(n, 0), w = in(n, 1);
  ir::Shape ws = shape(w);
  if (ws.size() < 3 || shape(x).size() != ws.size())
    throw InputError(msg(where(), ": input of rank ", shape(x).size(), " and weight of rank ", ws.size(),
                         " (both need the same rank >= 3)"));
  size_t nd = ws.size() - 2;
  std::vector<int64_t> k = attr_ints(n, "kernel_shape", std::vector<int64_t>(ws.begin() + 2, ws.end()));
  auto strides = attr_ints(n, "strides", std::vector<int64_t>(nd, 1));
  auto dil = attr_ints(n, "dilations", std::vector<int64_t>(nd, 1));
  std::map<std::string, ir::Attr> a{{"strides", strides},
                                    {"dilations", dil},
                                    {"pads", conv_pads(n, shape(x), k, strides, dil)},
                                    {"group", attr_i(n, "group", 1)}};
  std::vector<Ref> ins{x, w};
  for (const Ref& z : integer_zero_points(n)) ins.push_back(z);
  Ref r = out_hint_emit(n, "ConvInteger", ins, a);
  if (!r.is_const()) int_values_.insert(n.output(0));
}

void Importer::op_where(const NodeProto& n) { out_hint_emit(n, "Where", {in(n, 0), in(n, 1), in(n, 2)}); }

void Importer::op_depth_space(const NodeProto& n) {
  std::map<std::string, ir::Attr> a{{"blocksize", attr_i(n, "blocksize", 1)}};
  if (n.op_type() == "DepthToSpace") a["mode"] = attr_s(n, "mode", "DCR");
  out_hint_emit(n, n.op_type(), {in(n, 0)}, a);
}

void Importer::op_sequence(const NodeProto& n) {
  const std::string& op = n.op_type();
  auto seq_in = [&](int i) -> Seq& {
    auto it = seqs_.find(has_input(n, i) ? n.input(i) : "");
    if (it == seqs_.end()) throw GraphError(msg(where(), ": input ", i, " is not a sequence"));
    return it->second;
  };
  auto position = [&](int i, int64_t size, bool insert) -> int64_t {
    if (!has_input(n, i)) return insert ? size : size - 1;
    int64_t p = to_ints(const_in(n, i, "position")).at(0);
    if (p < 0) p += size;
    if (p < 0 || p > (insert ? size : size - 1))
      throw InputError(msg(where(), ": position out of range for a sequence of ", size));
    return p;
  };
  auto items = [&](Seq& s) -> std::vector<Ref>& {
    if (s.length_only >= 0)
      unsupported("a sequence split at sizes known only at run time; only its length is available");
    return s.items;
  };
  if (op == "SequenceEmpty") {
    seqs_[n.output(0)] = Seq{};
  } else if (op == "SequenceConstruct") {
    Seq s;
    for (int i = 0; i < n.input_size(); ++i) s.items.push_back(in(n, i));
    seqs_[n.output(0)] = s;
  } else if (op == "SequenceInsert") {
    Seq s = seq_in(0);
    auto& v = items(s);
    v.insert(v.begin() + position(2, static_cast<int64_t>(v.size()), true), in(n, 1));
    seqs_[n.output(0)] = s;
  } else if (op == "SequenceErase") {
    Seq s = seq_in(0);
    auto& v = items(s);
    if (v.empty()) throw InputError(msg(where(), ": erasing from an empty sequence"));
    v.erase(v.begin() + position(1, static_cast<int64_t>(v.size()), false));
    seqs_[n.output(0)] = s;
  } else if (op == "SequenceAt") {
    Seq& s = seq_in(0);
    auto& v = items(s);
    if (v.empty()) throw InputError(msg(where(), ": SequenceAt on an empty sequence"));
    int64_t p = position(1, static_cast<int64_t>(v.size()), false);
    bind(n.output(0), v[p]);
  } else if (op == "SequenceLength") {
    Seq& s = seq_in(0);
    int64_t len = s.length_only >= 0 ? s.length_only : static_cast<int64_t>(s.items.size());
    bind(n.output(0), Ref{at::scalar_tensor(len, at::kLong), "", ""});
  } else if (op == "ConcatFromSequence") {
    std::vector<Ref> v = items(seq_in(0));
    if (v.empty()) throw InputError(msg(where(), ": concatenating an empty sequence"));
    int64_t axis = attr_i(n, "axis", 0);
    if (attr_i(n, "new_axis", 0)) {
      int64_t r = static_cast<int64_t>(shape(v[0]).size()) + 1;
      if (axis < 0) axis += r;
      for (auto& r0 : v) r0 = emit1("Unsqueeze", {r0}, {{"axes", std::vector<int64_t>{axis}}});
    }
    if (v.size() == 1)
      bind(n.output(0), v[0]);
    else
      out_hint_emit(n, "Concat", v, {{"axis", axis}});
  } else if (op == "SplitToSequence") {
    Ref x = in(n, 0);
    const ir::Shape& xs = shape(x);
    int64_t axis = attr_i(n, "axis", 0);
    if (axis < 0) axis += static_cast<int64_t>(xs.size());
    if (axis < 0 || axis >= static_cast<int64_t>(xs.size())) throw InputError(msg(where(), ": axis out of range"));
    int64_t total = xs[axis];
    std::vector<int64_t> split;
    bool keepdims = attr_i(n, "keepdims", 1) != 0;
    if (has_input(n, 1)) {
      Ref sp = in(n, 1);
      if (!sp.is_const()) {
        const ir::Shape& ss = shape(sp);
        if (ss.size() != 1 || ss[0] == ir::kDynamic) unsupported("SplitToSequence with run-time split sizes");
        Seq s;
        s.length_only = ss[0];
        seqs_[n.output(0)] = s;
        return;
      }
      split = to_ints(sp.c);
      if (sp.c.dim() == 0) {
        int64_t chunk = split[0];
        if (chunk <= 0) throw InputError(msg(where(), ": split size must be positive"));
        split.clear();
        for (int64_t done = 0; done < total; done += chunk) split.push_back(std::min(chunk, total - done));
      }
      keepdims = true;
    } else {
      split.assign(total, 1);
    }
    if (total == ir::kDynamic) unsupported("SplitToSequence along a dimension known only at run time");
    auto outs = emit("Split", {x}, {{"axis", axis}, {"split", split}}, {}, static_cast<int>(split.size()));
    if (!keepdims)
      for (auto& o : outs) o = emit1("Squeeze", {o}, {{"axes", std::vector<int64_t>{axis}}});
    Seq s;
    s.items = outs;
    seqs_[n.output(0)] = s;
  }
}

// ------------------------------------------------------------------------------------------
// After conversion.

void Importer::bind_outputs() {
  for (const auto& o : model_.graph().output()) {
    const std::string& name = o.name();
    if (seqs_.count(name))
      throw UnsupportedError(msg(source_, ": graph output '", name, "' is a sequence; squeeze models output tensors"));
    Ref r = get(name);
    std::string v = r.is_const() ? materialize(Ref{r.c, "", name}) : r.ir;
    if (v != name) {
      bool is_input = std::any_of(g_.inputs.begin(), g_.inputs.end(), [&](const ir::ValueInfo& i) { return i.name == v; });
      bool is_output = std::count(g_.outputs.begin(), g_.outputs.end(), v) > 0;
      if (is_input || is_output || claimed_values_.count(name)) {
        node_name_ = "output_" + name;
        node_op_ = "Identity";
        sub_index_ = 0;
        v = emit1("Identity", {Ref{at::Tensor(), v, ""}}, {}, {}, name).ir;
      } else {
        for (auto& node : g_.nodes) {
          for (auto& x : node.inputs)
            if (x == v) x = name;
          for (auto& x : node.outputs)
            if (x == v) x = name;
        }
        for (auto& [k, x] : values_)
          if (x == v) x = name;
        shapes_[name] = shapes_[v];
        claimed_values_.insert(name);
        v = name;
      }
    }
    g_.outputs.push_back(v);
  }
}

namespace {

// Producers, consumer counts and constant values of an IR graph, for pattern matching.
struct GraphIndex {
  explicit GraphIndex(ir::Graph& g) : g(g) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (const auto& o : g.nodes[i].outputs) producer[o] = i;
      for (const auto& in : g.nodes[i].inputs) ++uses[in];
    }
    for (const auto& o : g.outputs) uses[o] += 2;  // never fuse away a graph output
  }
  ir::Node* prod(const std::string& v, const char* op) {
    auto it = producer.find(v);
    if (it == producer.end()) return nullptr;
    ir::Node* n = &g.nodes[it->second];
    return n->op == op ? n : nullptr;
  }
  std::optional<at::Tensor> constant(const std::string& v) {
    ir::Node* n = prod(v, "Constant");
    if (!n) return std::nullopt;
    return n->param("value").value;
  }
  bool scalar_near(const std::string& v, double want, double tol = 1e-4) {
    auto c = constant(v);
    return c && c->numel() == 1 && std::abs(c->to(at::kDouble).item<double>() - want) <= tol * std::max(1.0, std::abs(want));
  }
  // The only consumer of v, if it has exactly one and it is `op`.
  ir::Node* sole(const std::string& v, const char* op) {
    if (uses[v] != 1) return nullptr;
    for (auto& n : g.nodes)
      if (n.op == op)
        for (const auto& in : n.inputs)
          if (in == v) return &n;
    return nullptr;
  }
  static std::string other(const ir::Node& n, const std::string& v) { return n.inputs[0] == v ? n.inputs[1] : n.inputs[0]; }

  ir::Graph& g;
  std::map<std::string, size_t> producer;
  std::map<std::string, int> uses;
};

}  // namespace

// A zero Pad before a Conv or pool becomes the consumer's own padding.
void Importer::fold_pads() {
  GraphIndex ix(g_);
  for (auto& pad : g_.nodes) {
    if (pad.op != "Pad" || pad.attr_str("mode", "constant") != "constant") continue;
    const std::string& out = pad.outputs[0];
    ir::Node* c = nullptr;
    for (const char* op : {"Conv", "AvgPool", "MaxPool"})
      if (!c) c = ix.sole(out, op);
    if (!c || c->inputs[0] != out) continue;
    auto pads = pad.attr_ints("pads");
    size_t r = pads.size() / 2;
    if (r < 3 || pads[0] || pads[1] || pads[r] || pads[r + 1]) continue;
    if (std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p < 0; })) continue;
    double value = pad.attr_float("value", 0.0);
    size_t nd = r - 2;
    auto own = c->attr_ints("pads", std::vector<int64_t>(2 * nd, 0));
    bool own_zero = std::all_of(own.begin(), own.end(), [](int64_t p) { return p == 0; });
    if (c->op == "MaxPool" && !(std::isinf(value) && value < 0)) continue;
    if (c->op != "MaxPool" && value != 0.0) continue;
    if (c->op == "AvgPool") {
      if (!own_zero && c->attr_int("count_include_pad", 0) == 0) continue;
      if (c->attr_int("ceil_mode", 0)) continue;  // ceil-mode windows past the padding are not counted
      c->attrs["count_include_pad"] = int64_t{1};
    }
    for (size_t i = 0; i < nd; ++i) {
      own[i] += pads[i + 2];
      own[i + nd] += pads[i + 2 + r];
    }
    c->attrs["pads"] = own;
    c->inputs[0] = pad.inputs[0];
  }
  ir::remove_dead_nodes(g_);
}

void Importer::fuse_patterns() {
  // x * Sigmoid(x) -> Silu(x)
  {
    GraphIndex ix(g_);
    for (auto& m : g_.nodes) {
      if (m.op != "Mul" || m.inputs.size() != 2) continue;
      for (int k = 0; k < 2; ++k) {
        ir::Node* s = ix.prod(m.inputs[k], "Sigmoid");
        if (s && s->inputs[0] == m.inputs[1 - k] && ix.uses[m.inputs[k]] == 1) {
          m.op = "Silu";
          m.inputs = {s->inputs[0]};
          break;
        }
      }
    }
    ir::remove_dead_nodes(g_);
  }
  // x * 0.5 * (1 + erf(x / sqrt(2))) in PyTorch's and TensorFlow's orders -> Gelu(x)
  {
    GraphIndex ix(g_);
    for (auto& e : g_.nodes) {
      if (e.op != "Erf") continue;
      std::string x;
      if (ir::Node* d = ix.prod(e.inputs[0], "Div"); d && ix.scalar_near(d->inputs[1], std::sqrt(2.0)))
        x = d->inputs[0];
      else if (ir::Node* m = ix.prod(e.inputs[0], "Mul"))
        for (int k = 0; k < 2; ++k)
          if (ix.scalar_near(m->inputs[k], std::sqrt(0.5))) x = m->inputs[1 - k];
      if (x.empty()) continue;
      ir::Node* a = ix.sole(e.outputs[0], "Add");
      if (!a || !ix.scalar_near(GraphIndex::other(*a, e.outputs[0]), 1.0)) continue;
      ir::Node* m1 = ix.sole(a->outputs[0], "Mul");
      if (!m1) continue;
      std::string o = GraphIndex::other(*m1, a->outputs[0]);
      ir::Node* final = nullptr;
      if (o == x) {  // (x * (1 + erf)) * 0.5
        ir::Node* m2 = ix.sole(m1->outputs[0], "Mul");
        if (m2 && ix.scalar_near(GraphIndex::other(*m2, m1->outputs[0]), 0.5)) final = m2;
      } else if (ir::Node* h = ix.prod(o, "Mul")) {  // (x * 0.5) * (1 + erf)
        for (int k = 0; k < 2; ++k)
          if (h->inputs[k] == x && ix.scalar_near(h->inputs[1 - k], 0.5)) final = m1;
      } else if (ix.scalar_near(o, 0.5)) {  // ((1 + erf) * 0.5) * x
        ir::Node* m2 = ix.sole(m1->outputs[0], "Mul");
        if (m2 && GraphIndex::other(*m2, m1->outputs[0]) == x) final = m2;
      }
      if (!final) continue;
      final->op = "Gelu";
      final->inputs = {x};
      final->attrs = {{"approximate", std::string("none")}};
    }
    ir::remove_dead_nodes(g_);
  }
  // (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) [* gamma + beta] over trailing axes -> LayerNorm
  {
    GraphIndex ix(g_);
    for (auto& div : g_.nodes) {
      if (div.op != "Div") continue;
      ir::Node* sub = ix.prod(div.inputs[0], "Sub");
      ir::Node* sq = ix.prod(div.inputs[1], "Sqrt");
      if (!sub || !sq) continue;
      ir::Node* add = ix.prod(sq->inputs[0], "Add");
      if (!add) continue;
      ir::Node* var = nullptr;
      double eps = 0;
      for (int k = 0; k < 2; ++k)
        if (auto c = ix.constant(add->inputs[k]); c && c->numel() == 1) {
          var = ix.prod(add->inputs[1 - k], "ReduceMean");
          eps = c->to(at::kDouble).item<double>();
        }
      if (!var) continue;
      const std::string& d = div.inputs[0];
      bool squares = false;
      if (ir::Node* p = ix.prod(var->inputs[0], "Pow"))
        squares = p->inputs[0] == d && ix.scalar_near(p->inputs[1], 2.0, 1e-9);
      else if (ir::Node* m = ix.prod(var->inputs[0], "Mul"))
        squares = m->inputs[0] == d && m->inputs[1] == d;
      ir::Node* mean = ix.prod(sub->inputs[1], "ReduceMean");
      if (!squares || !mean || mean->inputs[0] != sub->inputs[0]) continue;
      const std::string& x = sub->inputs[0];
      int64_t r = static_cast<int64_t>(shapes_.at(x).size());
      auto axes_of = [&](const ir::Node& n) {
        auto a = n.attr_ints("axes", {});
        for (auto& v : a)
          if (v < 0) v += r;
        std::sort(a.begin(), a.end());
        return a;
      };
      auto axes = axes_of(*mean);
      if (axes.empty() || axes != axes_of(*var) || !mean->attr_int("keepdims", 1) || !var->attr_int("keepdims", 1))
        continue;
      bool trailing = true;
      for (size_t i = 0; i < axes.size(); ++i) trailing &= axes[i] == r - static_cast<int64_t>(axes.size() - i);
      if (!trailing) continue;
      int64_t axis = axes[0];
      const ir::Shape& xs = shapes_.at(x);
      std::vector<int64_t> norm(xs.begin() + axis, xs.end());
      ir::Node* final = &div;
      std::map<std::string, ir::Param> params;
      try {
        if (ir::Node* mg = ix.sole(div.outputs[0], "Mul")) {
          auto gamma = ix.constant(GraphIndex::other(*mg, div.outputs[0]));
          if (gamma && gamma->dim() <= static_cast<int64_t>(norm.size())) {
            params["weight"].value = gamma->to(at::kFloat).expand(norm).contiguous();
            final = mg;
            if (ir::Node* ab = ix.sole(mg->outputs[0], "Add")) {
              auto beta = ix.constant(GraphIndex::other(*ab, mg->outputs[0]));
              if (beta && beta->dim() <= static_cast<int64_t>(norm.size())) {
                params["bias"].value = beta->to(at::kFloat).expand(norm).contiguous();
                final = ab;
              }
            }
          }
        }
      } catch (const c10::Error&) {
        continue;  // gamma/beta do not broadcast over the normalized shape alone
      }
      final->op = "LayerNorm";
      final->inputs = {x};
      final->attrs = {{"axis", axis}, {"epsilon", eps}};
      final->params = params;
    }
    ir::remove_dead_nodes(g_);
  }
}

namespace {

// A constant that multiplies (or is added to) a layer's output of rank `rank` either as one value
// or as one value per channel along `axis` (numpy broadcasting): that value (a scalar) or the
// channel vector [channels]; nullopt for any other shape.
std::optional<at::Tensor> per_channel_operand(const at::Tensor& t, size_t rank, size_t axis, int64_t channels) {
  if (t.numel() == 1) return t.reshape({});
  if (t.dim() > static_cast<int64_t>(rank)) return std::nullopt;
  size_t lead = rank - static_cast<size_t>(t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) {
    size_t o = lead + static_cast<size_t>(d);
    if (t.size(d) != (o == axis ? channels : 1)) return std::nullopt;
  }
  if (axis < lead) return std::nullopt;
  return t.reshape({-1});
}

}  // namespace

void Importer::fuse_dynamic_quantization() {
  GraphIndex ix(g_);
  bool changed = false;
  // ONNX Runtime's form (see the top of this file).
  for (auto& mm : g_.nodes) {
    bool conv = mm.op == "ConvInteger";
    if ((mm.op != "MatMulInteger" && !conv) || mm.inputs.size() < 3) continue;
    ir::Node* dq = ix.prod(mm.inputs[0], "DynamicQuantizeLinear");
    if (!dq || dq->outputs[0] != mm.inputs[0] || dq->outputs[2] != mm.inputs[2]) continue;
    const std::string& x = dq->inputs[0];
    const std::string& x_scale = dq->outputs[1];
    auto wq = ix.constant(mm.inputs[1]);
    if (!wq || (wq->scalar_type() != at::kChar && wq->scalar_type() != at::kByte)) continue;
    if (conv ? wq->dim() < 3 : wq->dim() != 2 || shapes_.at(x).size() < 2) continue;
    at::Tensor wzp = at::zeros({}, at::kLong);
    if (mm.inputs.size() > 3) {
      auto z = ix.constant(mm.inputs[3]);
      if (!z) continue;
      wzp = z->to(at::kLong);
    }
    int64_t channels = conv ? wq->size(0) : wq->size(1);
    size_t rank = shapes_.at(mm.outputs[0]).size();
    size_t axis = conv ? 1 : rank - 1;
    if (wzp.numel() != 1 && wzp.numel() != channels) continue;
    ir::Node* cast = ix.sole(mm.outputs[0], "Cast");
    if (!cast || cast->attr_str("to", "") != "float") continue;
    // The two scales: f * (s * w_scale), (f * s) * w_scale or (f * w_scale) * s.
    const std::string& f = cast->outputs[0];
    ir::Node* m1 = ix.sole(f, "Mul");
    if (!m1 || m1->inputs.size() != 2 || m1->inputs[0] == m1->inputs[1]) continue;
    std::string o1 = GraphIndex::other(*m1, f);
    std::optional<at::Tensor> w_scale;
    ir::Node* last = nullptr;
    if (o1 == x_scale) {
      if (ir::Node* m2 = ix.sole(m1->outputs[0], "Mul"); m2 && m2->inputs.size() == 2) {
        w_scale = ix.constant(GraphIndex::other(*m2, m1->outputs[0]));
        last = m2;
      }
    } else if (ir::Node* sm = ix.prod(o1, "Mul"); sm && sm->inputs.size() == 2) {
      for (int k = 0; k < 2; ++k)
        if (sm->inputs[k] == x_scale && sm->inputs[1 - k] != x_scale) w_scale = ix.constant(sm->inputs[1 - k]);
      last = m1;
    } else if (auto c = ix.constant(o1)) {
      if (ir::Node* m2 = ix.sole(m1->outputs[0], "Mul");
          m2 && m2->inputs.size() == 2 && GraphIndex::other(*m2, m1->outputs[0]) == x_scale) {
        w_scale = c;
        last = m2;
      }
    }
    if (!w_scale || !last || !w_scale->is_floating_point()) continue;
    auto ws = per_channel_operand(*w_scale, rank, axis, channels);
    if (!ws) continue;
    ir::Node* final = last;
    std::optional<at::Tensor> bias;
    if (ir::Node* add = ix.sole(last->outputs[0], "Add"); add && add->inputs.size() == 2) {
      auto b = ix.constant(GraphIndex::other(*add, last->outputs[0]));
      if (b && b->is_floating_point())
        if (auto bv = per_channel_operand(*b, rank, axis, channels)) {
          bias = bv->to(at::kFloat).expand({channels}).contiguous();
          final = add;
        }
    }
    // The weight's qspec: int8 (or uint8) per tensor, or per output channel (axis 0) when either
    // the scale or the zero point is one per channel.
    ir::QuantSpec spec;
    spec.bits = 8;
    spec.is_signed = wq->scalar_type() == at::kChar;
    at::Tensor scale = ws->to(at::kFloat), zp = wzp.reshape(wzp.numel() == 1 ? std::vector<int64_t>{} : std::vector<int64_t>{-1});
    if (scale.numel() > 1 || zp.numel() > 1) {
      spec.axis = 0;
      scale = scale.expand({channels}).contiguous();
      zp = zp.expand({channels}).contiguous();
    }
    spec.scale = scale;
    spec.zero_point = zp;
    spec.symmetric = spec.is_signed && zp.eq(0).all().item<bool>();
    if (!(scale > 0).all().item<bool>()) continue;  // not a quantization grid: keep the integer ops
    quant::validate_spec(spec, msg(source_, ": node '", final->name, "'"));
    at::Tensor q = (conv ? *wq : wq->t()).to(at::kLong).contiguous();
    ir::Param weight;
    weight.value = quant::dequantize(q, spec).contiguous();
    weight.qspec = spec;
    std::map<std::string, ir::Attr> attrs;
    if (conv)
      for (const char* k : {"strides", "pads", "dilations", "group"})
        if (mm.attrs.count(k)) attrs[k] = mm.attrs.at(k);
    attrs["quant_dynamic"] = int64_t{1};
    final->op = conv ? "Conv" : "Linear";
    final->inputs = {x};
    final->attrs = std::move(attrs);
    final->params.clear();
    final->params["weight"] = std::move(weight);
    if (bias) final->params["bias"].value = *bias;
    final->out_qspec.reset();
    changed = true;
  }
  // QONNX's form: the dequantized integers of DynamicQuantizeLinear read by a Linear/Conv whose
  // weight is quantized. A layer with a float weight keeps the explicit ops.
  for (auto& dql : g_.nodes) {
    if (dql.op != "DequantizeLinear" || dql.inputs.size() != 3) continue;
    ir::Node* dq = ix.prod(dql.inputs[0], "DynamicQuantizeLinear");
    if (!dq || dq->outputs[0] != dql.inputs[0] || dq->outputs[1] != dql.inputs[1] || dq->outputs[2] != dql.inputs[2])
      continue;
    for (auto& layer : g_.nodes) {
      if ((layer.op != "Linear" && layer.op != "Conv") || layer.inputs.empty() || layer.inputs[0] != dql.outputs[0])
        continue;
      if (!layer.has_param("weight") || !layer.param("weight").qspec || layer.attr_int("quant_dynamic", 0) != 0)
        continue;
      layer.inputs[0] = dq->inputs[0];
      layer.attrs["quant_dynamic"] = int64_t{1};
      changed = true;
    }
  }
  if (changed) ir::remove_dead_nodes(g_);
}

void Importer::make_batch_dynamic() {
  if (g_.inputs.empty()) return;
  // Inputs no node reads (their data is irrelevant) take any shape of their rank.
  std::set<std::string> read;
  for (const auto& n : g_.nodes) read.insert(n.inputs.begin(), n.inputs.end());
  for (auto& in : g_.inputs)
    if (!read.count(in.name) && std::find(g_.outputs.begin(), g_.outputs.end(), in.name) == g_.outputs.end())
      for (auto& d : in.shape) d = ir::kDynamic;
  bool any_symbolic = false;
  for (const auto& [k, v] : symbolic_dims_) any_symbolic |= !v.empty();
  // batch: force dim 0 dynamic (and require every output to follow it); symbolic: make the dims
  // the file declares symbolic dynamic.
  // copy_batch: a Reshape whose leading target dim is the import-time batch copies it instead;
  // off once follow_batch_arithmetic has settled every target from two batch sizes.
  auto attempt = [&](bool batch, bool symbolic, bool copy_batch = true) -> bool {
    ir::Graph trial = g_;
    // The batch inputs: those whose leading dimension matches the first input's.
    int64_t batch_size = trial.inputs[0].shape.empty() ? -2 : trial.inputs[0].shape[0];
    for (auto& in : trial.inputs) {
      if (batch && !in.shape.empty() && in.shape[0] == batch_size) in.shape[0] = ir::kDynamic;
      if (symbolic)
        for (size_t d : symbolic_dims_[in.name]) in.shape[d] = ir::kDynamic;
    }
    // A Reshape to the import-time batch size copies the batch dimension instead (0 = copy in
    // ONNX semantics: the same result at the import-time batch size).
    for (auto& node : trial.nodes) {
      if (!batch || !copy_batch || node.op != "Reshape" || node.attr_int("allowzero", 0)) continue;
      auto target = node.attr_ints("shape");
      const ir::Shape& s = shapes_.at(node.inputs[0]);
      if (!target.empty() && !s.empty() && target[0] > 0 && target[0] == s[0]) {
        target[0] = 0;
        node.attrs["shape"] = target;
      }
    }
    try {
      ir::verify(trial);
    } catch (const Error&) {
      return false;
    }
    // A Reshape to a fully fixed shape fits one input size only: shape arithmetic folded at the
    // import-time size (torch's MultiheadAttention reshapes to [L, N * heads, D]) would fail at
    // run time for any other size, so such a graph keeps its import-time dimensions.
    for (const auto& node : trial.nodes) {
      if (node.op != "Reshape") continue;
      const ir::Shape& s = trial.shape_of(node.inputs[0]);
      auto target = node.attr_ints("shape");
      bool fixed = std::none_of(target.begin(), target.end(), [](int64_t d) { return d <= 0; });
      if (fixed && std::find(s.begin(), s.end(), ir::kDynamic) != s.end()) return false;
    }
    if (batch)
      for (const auto& o : trial.outputs) {
        const ir::Shape& s = trial.shape_of(o);
        if (s.empty() || s[0] != ir::kDynamic) return false;
      }
    g_ = std::move(trial);
    return true;
  };
  if (!options_.keep_dynamic_batch) {
    if (any_symbolic) attempt(false, true);
    return;
  }
  // Shape arithmetic on the batch size (Shape/Size of a batch-carrying value), folded at the
  // import-time size (torch's MultiheadAttention reshapes to [L, N * heads, D], a class token is
  // expanded to [N, 1, D], x[:, :N]): rewritten to follow the batch at run time where a second
  // conversion shows how, else the batch stays static. Guessing instead would run another batch
  // with the import-time numbers: a wrong answer, not an error.
  bool batch_symbolic = false, reads_shapes = false;
  for (const auto& [name, dims] : symbolic_dims_)
    batch_symbolic |= std::find(dims.begin(), dims.end(), size_t{0}) != dims.end();
  for (const auto& n : model_.graph().node()) reads_shapes |= n.op_type() == "Shape" || n.op_type() == "Size";
  if (batch_symbolic && reads_shapes) {
    ir::Graph saved = g_;
    if (follow_batch_arithmetic(g_) && attempt(true, true, false)) return;
    g_ = std::move(saved);
    g_.metadata["onnx.batch"] = "static";
    log::info(source_, ": the batch size enters shape arithmetic that cannot follow it at run time: the model "
                       "runs at its import-time batch of ", g_.inputs[0].shape.empty() ? 1 : g_.inputs[0].shape[0],
              " only");
    return;
  }
  if (attempt(true, true)) return;
  if (any_symbolic && attempt(true, false)) return;
  if (any_symbolic && attempt(false, true)) return;
  g_.metadata["onnx.batch"] = "static";
  log::debug(source_, ": keeping the batch dimension static (some output does not follow it)");
}

bool Importer::follow_batch_arithmetic(ir::Graph& g) {
  // Converts the model again with the symbolic batch dimensions at 2. Nodes line up one to one
  // (conversion is deterministic); what differs was computed from the batch size. Two points fix
  // it where it is representable: a Reshape target with exactly one batch-dependent dim infers
  // it (-1); a folded constant that is another constant repeated along one axis (N copies)
  // becomes an Expand to a run-time shape read from the input. Anything else differing (slice
  // bounds, indices, two batch-dependent dims) keeps the batch static.
  ir::Graph other;
  Importer probe(model_, source_, base_dir_, options_);
  try {
    probe.batch_probe_ = 2;
    probe.read_opsets();
    probe.check_structure();
    other = probe.convert();
  } catch (const std::exception& e) {
    log::debug(source_, ": no second conversion at batch 2: ", e.what());
    return false;
  }
  if (other.nodes.size() != g.nodes.size()) return false;
  std::string batch_input;
  for (const auto& in : g.inputs) {
    auto it = symbolic_dims_.find(in.name);
    if (it != symbolic_dims_.end() && !it->second.empty() && it->second.front() == 0 && in.shape.at(0) == 1) {
      batch_input = in.name;
      break;
    }
  }
  if (batch_input.empty()) return false;
  struct Broadcast {
    std::string node;
    int64_t axis;
  };
  std::vector<Broadcast> broadcasts;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    ir::Node& a = g.nodes[i];
    const ir::Node& b = other.nodes[i];
    if (a.name != b.name || a.op != b.op || a.inputs != b.inputs || a.outputs != b.outputs) return false;
    if (a.op == "Constant" && a.has_param("value") && b.has_param("value")) {
      const at::Tensor &va = a.param("value").value, &vb = b.param("value").value;
      if (va.sizes() == vb.sizes()) {
        if (!at::equal(va, vb)) return false;
        continue;
      }
      int64_t axis = -1;
      for (int64_t d = 0; va.dim() == vb.dim() && d < va.dim(); ++d)
        if (va.size(d) != vb.size(d)) {
          if (axis >= 0 || va.size(d) != 1 || vb.size(d) != 2) return false;
          axis = d;
        }
      if (axis < 0 || !at::equal(va.expand(vb.sizes()), vb)) return false;
      broadcasts.push_back({a.name, axis});
      continue;
    }
    if (a.params.size() != b.params.size()) return false;
    for (const auto& [key, p] : a.params)
      if (!b.has_param(key) || !at::equal(p.value, b.param(key).value)) return false;
    if (a.attrs == b.attrs) continue;
    if (a.op != "Reshape" || a.attr_int("allowzero", 0)) return false;
    auto ta = a.attr_ints("shape"), tb = b.attr_ints("shape");
    if (ta.size() != tb.size()) return false;
    const ir::Shape &sa = shapes_.at(a.inputs[0]), &sb = probe.shapes_.at(b.inputs[0]);
    bool inferred = std::find(ta.begin(), ta.end(), -1) != ta.end();
    for (size_t d = 0; d < ta.size(); ++d) {
      if (ta[d] == tb[d]) continue;
      if (d < sa.size() && d < sb.size() && sa[d] == ta[d] && sb[d] == tb[d]) {
        ta[d] = 0;  // the input's dim at the same place (x.view(x.size(0), -1)): copied
      } else if (!inferred) {
        ta[d] = -1;
        inferred = true;
      } else {
        return false;
      }
    }
    a.attrs["shape"] = ta;
  }
  for (const auto& bc : broadcasts) {
    // value -> Expand(value at batch 1, concat(dims before, N, dims after)).
    auto at = std::find_if(g.nodes.begin(), g.nodes.end(), [&](const ir::Node& n) { return n.name == bc.node; });
    std::string out = at->outputs[0];
    std::vector<int64_t> dims(at->param("value").value.sizes().begin(), at->param("value").value.sizes().end());
    std::string one = g.unique_name(out + "_one");
    at->outputs[0] = one;
    std::vector<ir::Node> extra;
    auto constant = [&](std::vector<int64_t> v, const std::string& base) {
      ir::Node c;
      c.op = "Constant";
      c.name = g.unique_name(base);
      c.outputs = {c.name};
      c.params["value"].value = at::tensor(v, at::kLong);
      c.params["value"].trainable = false;
      extra.push_back(c);
      return c.name;
    };
    ir::Node shape;
    shape.op = "Shape";
    shape.name = g.unique_name(out + "_batch");
    shape.inputs = {batch_input};
    shape.outputs = {shape.name};
    shape.attrs = {{"start", int64_t{0}}, {"end", int64_t{1}}};
    extra.push_back(shape);
    std::vector<std::string> parts;
    if (bc.axis > 0)
      parts.push_back(constant(std::vector<int64_t>(dims.begin(), dims.begin() + bc.axis), out + "_lead"));
    parts.push_back(shape.name);
    if (bc.axis + 1 < static_cast<int64_t>(dims.size()))
      parts.push_back(constant(std::vector<int64_t>(dims.begin() + bc.axis + 1, dims.end()), out + "_trail"));
    std::string target = parts.front();
    if (parts.size() > 1) {
      ir::Node cat;
      cat.op = "Concat";
      cat.name = g.unique_name(out + "_shape");
      cat.inputs = parts;
      cat.outputs = {cat.name};
      cat.attrs = {{"axis", int64_t{0}}};
      extra.push_back(cat);
      target = cat.name;
    }
    ir::Node expand;
    expand.op = "Expand";
    expand.name = g.unique_name(out + "_expand");
    expand.inputs = {one, target};
    expand.outputs = {out};
    std::vector<int64_t> hint = dims;
    hint[bc.axis] = -1;  // the static part of the run-time target, for shape inference
    expand.attrs = {{"shape", hint}};
    extra.push_back(expand);
    g.nodes.insert(at + 1, extra.begin(), extra.end());
  }
  log::debug(source_, ": batch-dependent shape arithmetic follows the batch at run time (", broadcasts.size(),
             " broadcast constants)");
  return true;
}

// A Linear whose weight, bias, input and output all have fixed-point types becomes a fixed-point
// layer (exec/fixed.h) with hls4ml's inferred accumulator: the lossless one, which is what the
// QONNX export requires, so the re-imported model computes the same numbers.
void Importer::mark_fixed_layers() {
  for (auto& n : g_.nodes) {
    if (n.op != "Linear" || !n.has_param("weight") || !n.param("weight").qspec || !n.out_qspec) continue;
    auto w = fixed::of_spec(*n.param("weight").qspec), r = fixed::of_spec(*n.out_qspec);
    std::optional<fixed::FixedType> b;
    if (n.has_param("bias")) {
      if (!n.param("bias").qspec) continue;
      b = fixed::of_spec(*n.param("bias").qspec);
      if (!b) continue;
    }
    const ir::QuantSpec* in = quant::input_qspec(g_, n);
    std::optional<fixed::FixedType> x = in ? fixed::of_spec(*in) : std::nullopt;
    if (!w || !r || !x || n.param("weight").value.dim() != 2) continue;
    n.attrs[exec::kFixedInputAttr] = fixed::to_string(*x);
    n.attrs[exec::kFixedAccumAttr] = fixed::to_string(fixed::infer_accumulator(
        *x, *w, b ? &*b : nullptr, n.param("weight").value.size(1), msg("node '", n.name, "'")));
  }
}

ir::Graph Importer::run() {
  read_opsets();
  check_structure();
  check_attribute_ranges();
  if (options_.run_checker) {
    try {
      onnx::checker::check_model(model_);
    } catch (const std::exception& e) {
      checker_message_ = e.what();
      log::warn(source_, ": the ONNX checker reports: ", checker_message_, " (continuing; squeeze checks what it uses)");
    }
  }
  // libonnx's shape inference trusts the model's structure: on a model its own checker refused it
  // can dereference null or divide by zero (found by fuzz_onnx: a Conv whose kernel_shape
  // attribute name was damaged), so it runs only on models the checker accepts.
  if (checker_message_.empty()) {
    try {
      onnx::shape_inference::InferShapes(model_);
    } catch (const std::exception& e) {
      log::debug(source_, ": ONNX shape inference failed: ", e.what());
    }
  } else {
    log::debug(source_, ": ONNX shape inference skipped (the checker refused the model)");
  }
  try {
    return convert();
  } catch (const UnsupportedError& e) {
    if (checker_message_.empty()) throw;
    throw UnsupportedError(msg(e.what(), " (the ONNX checker also reported: ", checker_message_, ")"));
  } catch (const GraphError& e) {
    if (checker_message_.empty()) throw;
    throw GraphError(msg(e.what(), " (the ONNX checker also reported: ", checker_message_, ")"));
  } catch (const InputError& e) {
    if (checker_message_.empty()) throw;
    throw InputError(msg(e.what(), " (the ONNX checker also reported: ", checker_message_, ")"));
  }
}

ir::Graph Importer::convert() {
  const auto& graph = model_.graph();
  g_.name = sanitize(graph.name()).empty() ? "model" : sanitize(graph.name());
  g_.metadata["source"] = source_;
  g_.metadata["onnx.opset"] = std::to_string(opset_);
  g_.metadata["onnx.ir_version"] = std::to_string(model_.ir_version());
  if (!model_.producer_name().empty())
    g_.metadata["onnx.producer"] = model_.producer_name() + " " + model_.producer_version();
  // The input transform squeeze's exporter writes (data::Transform::to_metadata) comes back
  // with the model, so `squeeze eval`/`infer` on an exported file transform as the checkpoint.
  for (const auto& p : model_.metadata_props())
    if (p.key().rfind("transform.", 0) == 0) g_.metadata[p.key()] = p.value();
  if (graph.sparse_initializer_size() > 0)
    throw UnsupportedError(msg(source_, ": sparse initializers are not supported"));
  for (const auto& t : graph.initializer())
    consts_[t.name()] = tensor_from_proto(t, msg(source_, ": initializer '", t.name(), "'"), base_dir_);
  for (const auto& i : graph.input()) {
    if (consts_.count(i.name())) continue;  // IR version < 4: initializers are listed as inputs too
    if (!i.type().has_tensor_type())
      throw UnsupportedError(msg(source_, ": graph input '", i.name(), "' is not a tensor"));
    const auto& tt = i.type().tensor_type();
    ir::ValueInfo info;
    info.name = i.name();
    info.dtype = scalar_type_from_onnx(tt.elem_type(), msg(source_, ": graph input '", i.name(), "'"));
    if (!tt.has_shape())
      throw UnsupportedError(msg(source_, ": graph input '", i.name(), "' has no shape; squeeze needs the rank"));
    for (int d = 0; d < tt.shape().dim_size(); ++d) {
      const auto& dim = tt.shape().dim(d);
      if (dim.has_dim_value() && dim.dim_value() >= 0) {
        info.shape.push_back(dim.dim_value());
      } else {
        // symbolic: 1 while converting, made dynamic afterwards if possible
        info.shape.push_back(d == 0 && batch_probe_ > 0 ? batch_probe_ : 1);
        symbolic_dims_[i.name()].push_back(d);
      }
    }
    shapes_[info.name] = info.shape;
    values_[info.name] = info.name;
    claimed_values_.insert(info.name);
    g_.inputs.push_back(info);
  }
  const auto& table = handlers();
  for (size_t i = 0; i < order_.size(); ++i) {
    const NodeProto& n = *order_[i];
    node_name_ = n.name();
    node_op_ = n.op_type();
    node_index_ = static_cast<int>(i);
    sub_index_ = 0;
    bool qonnx = n.op_type() == "Quant" && (n.domain() == "qonnx.custom_op.general" || n.domain() == "finn.custom_op.general");
    if (!n.domain().empty() && n.domain() != "ai.onnx" && !qonnx)
      throw UnsupportedError(msg(where(), ": op domain '", n.domain(),
                                 "' is not supported (squeeze imports the default ONNX domain); supported ONNX ops: ",
                                 supported_list()));
    auto h = table.find(n.op_type());
    if (h == table.end())
      throw UnsupportedError(msg(where(), ", opset ", opset_, ": ONNX op '", n.op_type(),
                                 "' is not supported; supported ONNX ops: ", supported_list()));
    // Every ONNX op's first output is required; handlers bind it (found by fuzz_onnx: a
    // DequantizeLinear with no outputs read past the end of its output list).
    if (n.output_size() == 0 || n.output(0).empty())
      throw InputError(msg(where(), ": the node has no output (every ", n.op_type(), " produces at least one)"));
    try {
      (this->*(h->second))(n);
    } catch (const Error&) {
      throw;
    } catch (const c10::Error& e) {
      throw InputError(msg(where(), ": ", e.what_without_backtrace()));
    } catch (const std::exception& e) {
      throw InputError(msg(where(), ": ", e.what()));
    }
  }
  bind_outputs();
  ir::remove_dead_nodes(g_);
  fuse_dynamic_quantization();
  fold_pads();
  fuse_patterns();
  fuse_quantized_outputs(g_);
  mark_fixed_layers();
  if (batch_probe_ > 0) return std::move(g_);
  make_batch_dynamic();
  ir::verify(g_);
  return std::move(g_);
}

}  // namespace

ir::Graph import_onnx_bytes(const std::string& bytes, const std::string& source_name, const OnnxImportOptions& options) {
  if (bytes.empty()) throw InputError(msg(source_name, ": the file is empty (not an ONNX model)"));
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes))
    throw InputError(msg(source_name, ": not a valid ONNX model (the protobuf does not parse: truncated, damaged, "
                                      "or not an .onnx file)"));
  if (!model.has_graph() || model.graph().output_size() == 0 || model.ir_version() <= 0)
    throw InputError(msg(source_name, ": not an ONNX model (no graph, no outputs or no IR version)"));
  std::string dir = source_name.find('/') == std::string::npos ? "." : source_name.substr(0, source_name.rfind('/'));
  Importer importer(model, source_name, dir, options);
  return importer.run();
}

ir::Graph import_onnx(const std::string& path, const OnnxImportOptions& options) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(msg("cannot open ONNX file '", path, "'"));
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  f.seekg(0);
  // The file's bytes, their parsed copy and the weights made from them are in memory at once.
  if (size > 0)
    check_fits_in_memory(static_cast<uint64_t>(size) * 3, msg("loading the ONNX model '", path, "'"),
                         "use a machine with more memory");
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return import_onnx_bytes(bytes, path, options);
}

}  // namespace squeeze::io
