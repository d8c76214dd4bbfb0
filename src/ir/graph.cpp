#include "squeeze/ir/graph.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <functional>
#include <set>
#include <sstream>

#include "squeeze/ir/ops.h"
#include "squeeze/util/error.h"

namespace squeeze::ir {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) os << ", ";
    if (s[i] == kDynamic)
      os << "?";
    else
      os << s[i];
  }
  os << "]";
  return os.str();
}

namespace {
template <typename T>
const T& attr_as(const Node& n, const std::string& key) {
  auto it = n.attrs.find(key);
  if (it == n.attrs.end())
    throw GraphError(msg("node '", n.name, "' (", n.op, "): missing attribute '", key, "'"));
  const T* v = std::get_if<T>(&it->second);
  if (!v) throw GraphError(msg("node '", n.name, "' (", n.op, "): attribute '", key, "' has the wrong type"));
  return *v;
}
}  // namespace

int64_t Node::attr_int(const std::string& key) const { return attr_as<int64_t>(*this, key); }
int64_t Node::attr_int(const std::string& key, int64_t fallback) const {
  return has_attr(key) ? attr_int(key) : fallback;
}
double Node::attr_float(const std::string& key, double fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return attr_as<double>(*this, key);
}
std::string Node::attr_str(const std::string& key, const std::string& fallback) const {
  return has_attr(key) ? attr_as<std::string>(*this, key) : fallback;
}
std::vector<int64_t> Node::attr_ints(const std::string& key) const {
  return attr_as<std::vector<int64_t>>(*this, key);
}
std::vector<int64_t> Node::attr_ints(const std::string& key, std::vector<int64_t> fallback) const {
  return has_attr(key) ? attr_ints(key) : fallback;
}
std::vector<double> Node::attr_floats(const std::string& key) const {
  return attr_as<std::vector<double>>(*this, key);
}

Param& Node::param(const std::string& key) {
  auto it = params.find(key);
  if (it == params.end())
    throw GraphError(msg("node '", name, "' (", op, "): missing parameter '", key, "'"));
  return it->second;
}
const Param& Node::param(const std::string& key) const {
  return const_cast<Node*>(this)->param(key);
}

namespace {
QuantSpec clone_qspec(const QuantSpec& q) {
  QuantSpec c = q;
  if (q.scale.defined()) c.scale = q.scale.clone();
  if (q.zero_point.defined()) c.zero_point = q.zero_point.clone();
  return c;
}
}  // namespace

Graph Graph::clone() const {
  Graph g = *this;
  for (auto& node : g.nodes) {
    for (auto& [key, p] : node.params) {
      p.value = p.value.detach().clone();
      if (p.mask) p.mask = p.mask->clone();
      if (p.qspec) p.qspec = clone_qspec(*p.qspec);
    }
    if (node.out_qspec) node.out_qspec = clone_qspec(*node.out_qspec);
  }
  return g;
}

Node* Graph::find_node(const std::string& n) {
  for (auto& node : nodes)
    if (node.name == n) return &node;
  return nullptr;
}
const Node* Graph::find_node(const std::string& n) const {
  return const_cast<Graph*>(this)->find_node(n);
}

const Node* Graph::producer(const std::string& value) const {
  for (const auto& node : nodes)
    for (const auto& o : node.outputs)
      if (o == value) return &node;
  return nullptr;
}

std::vector<size_t> Graph::consumers(const std::string& value) const {
  std::vector<size_t> out;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& in : nodes[i].inputs)
      if (in == value) {
        out.push_back(i);
        break;
      }
  return out;
}

const Shape& Graph::shape_of(const std::string& value) const {
  auto it = shapes.find(value);
  if (it == shapes.end())
    throw GraphError(msg("no shape known for value '", value, "' (run ir::infer_shapes first)"));
  return it->second;
}

std::string Graph::unique_name(const std::string& base) const {
  std::set<std::string> used;
  for (const auto& in : inputs) used.insert(in.name);
  for (const auto& node : nodes) {
    used.insert(node.name);
    for (const auto& o : node.outputs) used.insert(o);
  }
  if (!used.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string cand = base + "_" + std::to_string(i);
    if (!used.count(cand)) return cand;
  }
}

int64_t Graph::num_params() const {
  int64_t n = 0;
  for (const auto& node : nodes)
    for (const auto& [key, p] : node.params) n += p.value.numel();
  return n;
}

int64_t Graph::num_nonzero_params() const {
  int64_t n = 0;
  for (const auto& node : nodes)
    for (const auto& [key, p] : node.params) {
      at::Tensor v = p.mask ? p.value * *p.mask : p.value;
      n += v.ne(0).sum().item<int64_t>();
    }
  return n;
}

void infer_shapes(Graph& graph) {
  graph.shapes.clear();
  for (const auto& in : graph.inputs) graph.shapes[in.name] = in.shape;
  for (const auto& node : graph.nodes) {
    const OpDef& def = op_def(node.op);
    std::vector<Shape> in_shapes;
    in_shapes.reserve(node.inputs.size());
    for (const auto& in : node.inputs) {
      auto it = graph.shapes.find(in);
      if (it == graph.shapes.end())
        throw GraphError(msg("node '", node.name, "' (", node.op, ") reads value '", in,
                             "' that no earlier node produces and that is not a graph input"));
      in_shapes.push_back(it->second);
    }
    std::vector<Shape> out;
    try {
      out = def.infer(node, in_shapes);
    } catch (const GraphError&) {
      throw;
    } catch (const std::exception& e) {
      std::string shapes_txt;
      for (const auto& s : in_shapes) shapes_txt += " " + shape_str(s);
      throw GraphError(msg("node '", node.name, "' (", node.op, "): cannot infer output shape from inputs",
                           shapes_txt, ": ", e.what()));
    }
    if (out.size() != node.outputs.size())
      throw GraphError(msg("node '", node.name, "' (", node.op, ") has ", node.outputs.size(),
                           " outputs but the op produces ", out.size()));
    for (size_t i = 0; i < out.size(); ++i) graph.shapes[node.outputs[i]] = out[i];
  }
}

void topo_sort(Graph& graph) {
  std::map<std::string, size_t> producer_of;
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    for (const auto& o : graph.nodes[i].outputs) producer_of[o] = i;
  std::vector<int> state(graph.nodes.size(), 0);  // 0 new, 1 on stack, 2 done
  std::vector<size_t> order;
  order.reserve(graph.nodes.size());
  std::function<void(size_t)> visit = [&](size_t i) {
    if (state[i] == 2) return;
    if (state[i] == 1)
      throw GraphError(msg("the graph has a cycle through node '", graph.nodes[i].name, "' (",
                           graph.nodes[i].op, ")"));
    state[i] = 1;
    for (const auto& in : graph.nodes[i].inputs) {
      auto it = producer_of.find(in);
      if (it != producer_of.end()) visit(it->second);
    }
    state[i] = 2;
    order.push_back(i);
  };
  for (size_t i = 0; i < graph.nodes.size(); ++i) visit(i);
  std::vector<Node> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back(std::move(graph.nodes[i]));
  graph.nodes = std::move(sorted);
}

void remove_dead_nodes(Graph& graph) {
  std::set<std::string> live(graph.outputs.begin(), graph.outputs.end());
  std::vector<bool> keep(graph.nodes.size(), false);
  for (size_t i = graph.nodes.size(); i-- > 0;) {
    const Node& n = graph.nodes[i];
    for (const auto& o : n.outputs)
      if (live.count(o)) keep[i] = true;
    if (keep[i])
      for (const auto& in : n.inputs) live.insert(in);
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    if (keep[i]) kept.push_back(std::move(graph.nodes[i]));
  graph.nodes = std::move(kept);
}

void replace_uses(Graph& graph, const std::string& from, const std::string& to) {
  for (auto& node : graph.nodes)
    for (auto& in : node.inputs)
      if (in == from) in = to;
  for (auto& o : graph.outputs)
    if (o == from) o = to;
}

void verify(Graph& graph) {
  std::set<std::string> defined;
  std::set<std::string> node_names;
  for (const auto& in : graph.inputs) {
    if (!defined.insert(in.name).second)
      throw GraphError(msg("graph input '", in.name, "' is declared twice"));
  }
  for (const auto& node : graph.nodes) {
    if (node.name.empty()) throw GraphError(msg("a node of op ", node.op, " has no name"));
    if (!node_names.insert(node.name).second)
      throw GraphError(msg("two nodes are named '", node.name, "'"));
    const OpDef& def = op_def(node.op);
    int n_in = static_cast<int>(node.inputs.size());
    if (n_in < def.min_inputs || (def.max_inputs >= 0 && n_in > def.max_inputs))
      throw GraphError(msg("node '", node.name, "' (", node.op, ") has ", n_in, " inputs; the op takes ",
                           def.min_inputs, def.max_inputs < 0 ? " or more" : msg(" to ", def.max_inputs)));
    if (def.num_outputs >= 0 && static_cast<int>(node.outputs.size()) != def.num_outputs)
      throw GraphError(msg("node '", node.name, "' (", node.op, ") has ", node.outputs.size(),
                           " outputs; the op produces ", def.num_outputs));
    for (const auto& in : node.inputs)
      if (!defined.count(in))
        throw GraphError(msg("node '", node.name, "' (", node.op, ") reads value '", in,
                             "' before it is defined (missing producer, missing initializer, or a cycle)"));
    for (const auto& p : def.required_params)
      if (!node.has_param(p))
        throw GraphError(msg("node '", node.name, "' (", node.op, "): missing parameter '", p, "'"));
    for (const auto& a : def.required_attrs)
      if (!node.has_attr(a))
        throw GraphError(msg("node '", node.name, "' (", node.op, "): missing attribute '", a, "'"));
    for (const auto& [key, p] : node.params) {
      bool known = std::count(def.required_params.begin(), def.required_params.end(), key) +
                   std::count(def.optional_params.begin(), def.optional_params.end(), key);
      if (!known)
        throw GraphError(msg("node '", node.name, "' (", node.op, "): unexpected parameter '", key, "'"));
      if (!p.value.defined())
        throw GraphError(msg("node '", node.name, "': parameter '", key, "' has no tensor"));
      if (p.mask && !p.mask->sizes().equals(p.value.sizes()))
        throw GraphError(msg("node '", node.name, "': mask of '", key, "' has shape ", p.mask->sizes(),
                             " but the parameter has ", p.value.sizes()));
    }
    for (const auto& o : node.outputs)
      if (!defined.insert(o).second)
        throw GraphError(msg("value '", o, "' is produced twice (second time by node '", node.name, "')"));
  }
  for (const auto& o : graph.outputs)
    if (!defined.count(o)) throw GraphError(msg("graph output '", o, "' is not produced by any node"));
  if (graph.outputs.empty()) throw GraphError("the graph has no outputs");
  infer_shapes(graph);
}

}  // namespace squeeze::ir
