// replace_head: a new classifier of another width on any model (zoo, ONNX, checkpoint), for
// fine-tuning an imported model on other classes.
#include <ATen/ATen.h>

#include <set>
#include <string>
#include <vector>

#include "squeeze/ir/builder.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"

namespace squeeze::models {

namespace {

// Ops between the classifier and the output that keep its channels one to one (shape-only
// ops, element-wise activations, global pooling, Softmax).
const std::set<std::string>& pass_through_ops() {
  static const std::set<std::string> ops = {
      "Flatten",   "Reshape",   "Squeeze", "Unsqueeze", "Identity",      "Dropout",
      "Softmax",   "LogSoftmax", "Relu",   "Relu6",     "LeakyRelu",     "Sigmoid",
      "Tanh",      "Gelu",      "Silu",    "HardSwish", "GlobalAvgPool", "GlobalMaxPool"};
  return ops;
}

bool is_classifier(const ir::Node& n) {
  if (!n.has_param("weight")) return false;
  const at::Tensor& w = n.param("weight").value;
  if (n.op == "Linear") return w.dim() == 2;
  if (n.op != "Conv" || w.dim() < 3 || n.attr_int("group", 1) != 1) return false;
  for (int64_t d = 2; d < w.dim(); ++d)
    if (w.size(d) != 1) return false;
  return true;
}

std::string shape_text(const at::Tensor& w) {
  std::string s;
  for (int64_t d = 1; d < w.dim(); ++d) s += (d > 1 ? "x" : "") + std::to_string(w.size(d));
  return s;
}

}  // namespace

std::string replace_head(ir::Graph& graph, int64_t num_classes, uint64_t seed,
                         const std::string& key_path) {
  if (num_classes < 1)
    throw ConfigError(msg(key_path, ".num_classes: ", num_classes, " is invalid; valid: >= 1"));
  if (graph.outputs.size() != 1)
    throw ConfigError(msg(key_path, ": the model has ", graph.outputs.size(),
                          " outputs; a head can be replaced on a single-output classifier only"));
  std::string value = graph.outputs[0];
  std::vector<ir::Node*> path;
  ir::Node* head = nullptr;
  while (true) {
    const ir::Node* p = graph.producer(value);
    if (!p)
      throw ConfigError(msg(key_path, ": no classifier found: the value '", value,
                            "' on the way to the output is a graph input"));
    ir::Node* n = graph.find_node(p->name);
    if (is_classifier(*n)) {
      head = n;
      break;
    }
    if (!pass_through_ops().count(n->op) || n->inputs.empty()) {
      std::string got = msg("node '", n->name, "' (", n->op, ")");
      if (n->op == "Conv") got += " is a Conv with a kernel larger than 1x1 or groups";
      throw ConfigError(msg(
          key_path, ": no classifier found: the output '", graph.outputs[0], "' comes from ", got,
          path.empty() ? "" : msg(" (reached through ", path.size(), " trailing ops)"),
          "; a head is a Linear (Gemm, MatMul with a constant matrix) or a 1x1 Conv reached "
          "from the output through Flatten, Reshape, Squeeze, Identity, Dropout, activations, "
          "global pooling or Softmax"));
    }
    path.push_back(n);
    value = n->inputs[0];
  }

  ir::Param& w = head->param("weight");
  const int64_t old_width = w.value.size(0);
  std::vector<int64_t> shape(w.value.sizes().begin(), w.value.sizes().end());
  int64_t fan_in = 1;
  for (size_t d = 1; d < shape.size(); ++d) fan_in *= shape[d];
  shape[0] = num_classes;
  ir::GraphBuilder init("head", seed);
  const std::string before = msg(head->op, " ", shape_text(w.value), " -> ", old_width);
  ir::Param nw;
  nw.value = init.init_weight(shape, fan_in);
  w = nw;
  if (head->has_param("bias")) {
    ir::Param nb;
    nb.value = init.init_weight({num_classes}, fan_in);
    head->param("bias") = nb;
  }
  head->out_qspec.reset();
  for (ir::Node* n : path) {
    n->out_qspec.reset();
    if (n->op == "Reshape" && n->has_attr("shape")) {
      std::vector<int64_t> s = n->attr_ints("shape");
      for (auto& d : s)
        if (d == old_width) d = num_classes;
      n->attrs["shape"] = s;
    }
  }
  ir::verify(graph);
  return msg("'", head->name, "': ", before, " replaced by a new ", head->op, " ",
             shape_text(w.value), " -> ", num_classes);
}

}  // namespace squeeze::models
