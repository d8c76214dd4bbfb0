#include "squeeze/compress/prune/dependency_graph.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "squeeze/ir/ops.h"
#include "squeeze/util/error.h"

namespace squeeze::compress {

std::vector<std::string> ChannelGroup::producers() const {
  std::vector<std::string> names;
  for (const auto& p : params)
    if (p.role == ParamRole::kProduce && std::find(names.begin(), names.end(), p.node) == names.end())
      names.push_back(p.node);
  return names;
}

namespace {

// Channel elements of a value: positions along one axis, each an element of the union-find.
struct Track {
  int64_t axis = -1;
  std::vector<int> ids;
};

// An attribute that carries a channel count and must follow the pruning.
struct AttrFix {
  enum Kind { kDepthwiseGroup, kSplitSizes, kReshapeDim, kSliceRange } kind;
  std::string node;
  // depthwise: the input; split: the outputs; reshape: the value whose kept count gives the dim;
  // slice: the input
  std::vector<std::string> values;
  int64_t index = 0;    // reshape: position in the shape attribute; slice: in starts/ends
  int64_t divisor = 1;  // reshape: the dim is the kept channel count / divisor
  int64_t start = 0, end = 0;  // slice: the range of input positions, normalised to [0, dim]
};

struct Binding {
  std::string node, op, param;
  int64_t axis = 0;
  ParamRole role = ParamRole::kProduce;
  std::string value;  // param index i <-> position first + i along the value's tracked axis
  int64_t first = 0, count = -1;  // count -1: the whole axis
};

int64_t prod(const ir::Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

bool is_elementwise_unary(const ir::Node& n, const ir::OpDef* def) {
  if (!def || !def->channel_passthrough || n.inputs.size() != 1 || n.outputs.size() != 1) return false;
  static const std::set<std::string> spatial = {"MaxPool", "AvgPool", "GlobalAvgPool", "GlobalMaxPool",
                                                "BatchNorm", "InstanceNorm", "PRelu"};
  return spatial.count(n.op) == 0 && n.params.empty();
}

bool is_broadcast_op(const std::string& op) {
  static const std::set<std::string> ops = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where",
                                            "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                                            "And", "Or", "Xor", "Mod"};
  return ops.count(op) != 0;
}

}  // namespace

struct DependencyGraph::Impl {
  const ir::Graph& g;
  DependencyOptions options;
  std::vector<int> parent;
  std::vector<char> blocked;
  std::map<std::string, Track> tracks;
  std::vector<std::string> track_order;
  std::vector<Binding> bindings;
  std::vector<AttrFix> fixes;
  std::vector<std::vector<int>> unit_roots;  // per group, per unit

  Impl(const ir::Graph& graph, DependencyOptions o) : g(graph), options(o) {}

  int find(int x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  int find_const(int x) const {
    while (parent[x] != x) x = parent[x];
    return x;
  }
  void unite(int a, int b) {
    a = find(a), b = find(b);
    if (a == b) return;
    parent[b] = a;
    blocked[a] = blocked[a] || blocked[b];
  }
  void block_id(int x) { blocked[find(x)] = 1; }
  // Couples element i of one axis with element i of another (same length).
  void unite_each(const std::vector<int>& a, const std::vector<int>& b) {
    for (size_t i = 0; i < a.size(); ++i) unite(a[i], b[i]);
  }

  const ir::Shape& shape(const std::string& v) const { return g.shape_of(v); }
  Track* track(const std::string& v) {
    auto it = tracks.find(v);
    return it == tracks.end() || it->second.axis < 0 ? nullptr : &it->second;
  }
  void set_track(const std::string& v, int64_t axis, std::vector<int> ids) {
    if (!tracks.count(v)) track_order.push_back(v);
    tracks[v] = Track{axis, std::move(ids)};
  }
  // New elements for a value's axis; leaves the value untracked when the axis is not static.
  Track* fresh(const std::string& v, int64_t axis) {
    const auto& s = shape(v);
    if (axis < 0 || axis >= static_cast<int64_t>(s.size()) || s[axis] <= 0) return nullptr;
    std::vector<int> ids(s[axis]);
    for (auto& id : ids) {
      id = static_cast<int>(parent.size());
      parent.push_back(id);
      blocked.push_back(0);
    }
    set_track(v, axis, std::move(ids));
    return track(v);
  }
  void alias(const std::string& out, const Track& t) { set_track(out, t.axis, t.ids); }
  void block_value(const std::string& v) {
    if (Track* t = track(v))
      for (int id : t->ids) block_id(id);
  }
  void block_inputs(const ir::Node& n) {
    for (const auto& v : n.inputs) block_value(v);
  }
  void block_node(const ir::Node& n) {
    block_inputs(n);
    for (const auto& v : n.outputs) block_value(v);
  }
  void bind(const ir::Node& n, const std::string& param, int64_t axis, ParamRole role, const std::string& value) {
    if (!n.has_param(param)) return;
    bindings.push_back({n.name, n.op, param, axis, role, value});
  }
  const ir::Node* single_use_constant(const std::string& v) const {
    const ir::Node* p = g.producer(v);
    if (!p || p->op != "Constant" || !p->has_param("value")) return nullptr;
    if (g.consumers(v).size() != 1) return nullptr;
    for (const auto& o : g.outputs)
      if (o == v) return nullptr;
    return p;
  }

  void build();
  void visit(const ir::Node& n);
  void conv(const ir::Node& n);
  void conv_transpose(const ir::Node& n);
  void linear(const ir::Node& n);
  void matmul(const ir::Node& n);
  void broadcast(const ir::Node& n);
  void concat(const ir::Node& n);
  void split(const ir::Node& n);
  void flatten(const ir::Node& n);
  void reshape(const ir::Node& n);
  bool shuffle(const ir::Node& n, const Track& t);
  bool head_split(const ir::Node& n, const Track& t);
  bool head_merge(const ir::Node& n, const Track& t);
  bool head_split_into_batch(const ir::Node& n, const Track& t);
  bool head_merge_from_batch(const ir::Node& n, const Track& t);
  bool merged_heads(const ir::Node& n, const Track& t, int64_t axis, int64_t heads, int64_t per);
  bool channel_slice(const ir::Node& n, const Track& t);
  void per_channel(const ir::Node& n);
  void prelu(const ir::Node& n);
  void axis_map(const ir::Node& n);
  void groups_out(std::vector<ChannelGroup>& groups, int64_t& total, int64_t& num_blocked);
};

void DependencyGraph::Impl::build() {
  for (const auto& in : g.inputs) {
    fresh(in.name, in.shape.size() >= 2 ? 1 : -1);
    block_value(in.name);
  }
  for (const auto& n : g.nodes) visit(n);
  for (const auto& o : g.outputs) block_value(o);
}

void DependencyGraph::Impl::visit(const ir::Node& n) {
  const ir::OpDef* def = ir::find_op(n.op);
  const std::string& op = n.op;
  if (op == "Constant") return;  // tracked lazily by the consumer that slices it
  if (op == "Conv") return conv(n);
  if (op == "ConvTranspose") return conv_transpose(n);
  if (op == "Linear") return linear(n);
  if (op == "MatMul") return matmul(n);
  if (is_broadcast_op(op)) return broadcast(n);
  if (op == "Concat") return concat(n);
  if (op == "Split") return split(n);
  if (op == "Flatten") return flatten(n);
  if (op == "Reshape") return reshape(n);
  if (op == "BatchNorm" || op == "InstanceNorm" || op == "MaxPool" || op == "AvgPool" ||
      op == "GlobalAvgPool" || op == "GlobalMaxPool")
    return per_channel(n);
  if (op == "PRelu") return prelu(n);
  if (op == "Transpose" || op == "Squeeze" || op == "Unsqueeze" || op == "Softmax" || op == "LogSoftmax" ||
      op == "LayerNorm" || op == "Pad" || op == "Slice" || op == "LRN" || op.rfind("Reduce", 0) == 0)
    return axis_map(n);
  if (is_elementwise_unary(n, def) || op == "Cast") {
    if (Track* t = track(n.inputs[0])) alias(n.outputs[0], *t);
    return;
  }
  // Unknown channel semantics: everything this op touches stays as it is.
  block_inputs(n);
}

void DependencyGraph::Impl::conv(const ir::Node& n) {
  const auto& w = n.param("weight").value;
  const auto& in_shape = shape(n.inputs[0]);
  int64_t groups = n.attr_int("group", 1);
  Track* in = track(n.inputs[0]);
  if (in && in->axis != 1) {
    block_value(n.inputs[0]);
    in = nullptr;
  }
  Track* out = fresh(n.outputs[0], 1);
  if (!out) return block_value(n.inputs[0]);
  int64_t cin = in_shape.size() > 1 ? in_shape[1] : -1, cout = w.size(0);
  if (groups == 1) {
    bind(n, "weight", 0, ParamRole::kProduce, n.outputs[0]);
    bind(n, "bias", 0, ParamRole::kProduce, n.outputs[0]);
    if (in) bind(n, "weight", 1, ParamRole::kConsume, n.inputs[0]);
    return;
  }
  if (groups == cin && in && cout % cin == 0) {
    // Depthwise (with channel multiplier m): output channel j reads input channel j / m only.
    int64_t m = cout / cin;
    std::vector<int> in_ids = in->ids;  // `out` may have reallocated the map's storage
    Track* o = track(n.outputs[0]);
    for (int64_t j = 0; j < cout; ++j) unite(in_ids[j / m], o->ids[j]);
    bind(n, "weight", 0, ParamRole::kProduce, n.outputs[0]);
    bind(n, "bias", 0, ParamRole::kProduce, n.outputs[0]);
    fixes.push_back({AttrFix::kDepthwiseGroup, n.name, {n.inputs[0]}, 0});
    return;
  }
  if (cin > 0 && cin % groups == 0 && cout % groups == 0) {
    // Grouped convolution: the groups must stay equal, so channel c of one group is tied to
    // channel c of every other group (input and output alike) and they go together. The weight's
    // input axis then follows the first group's channels.
    int64_t cin_g = cin / groups, cout_g = cout / groups;
    std::vector<int> out_ids = track(n.outputs[0])->ids;
    for (int64_t grp = 1; grp < groups; ++grp)
      for (int64_t j = 0; j < cout_g; ++j) unite(out_ids[j], out_ids[grp * cout_g + j]);
    bind(n, "weight", 0, ParamRole::kProduce, n.outputs[0]);
    bind(n, "bias", 0, ParamRole::kProduce, n.outputs[0]);
    if (in) {
      std::vector<int> in_ids = in->ids;
      for (int64_t grp = 1; grp < groups; ++grp)
        for (int64_t c = 0; c < cin_g; ++c) unite(in_ids[c], in_ids[grp * cin_g + c]);
      bind(n, "weight", 1, ParamRole::kConsume, n.inputs[0]);
      bindings.back().count = cin_g;
    }
    return;
  }
  block_node(n);
}

void DependencyGraph::Impl::conv_transpose(const ir::Node& n) {
  Track* in = track(n.inputs[0]);
  if (in && in->axis != 1) {
    block_value(n.inputs[0]);
    in = nullptr;
  }
  bool ok_in = in != nullptr;
  Track* out = fresh(n.outputs[0], 1);
  if (!out) return block_value(n.inputs[0]);
  if (n.attr_int("group", 1) != 1) return block_node(n);
  bind(n, "weight", 1, ParamRole::kProduce, n.outputs[0]);
  bind(n, "bias", 0, ParamRole::kProduce, n.outputs[0]);
  if (ok_in) bind(n, "weight", 0, ParamRole::kConsume, n.inputs[0]);
}

void DependencyGraph::Impl::linear(const ir::Node& n) {
  const auto& in_shape = shape(n.inputs[0]);
  int64_t last = static_cast<int64_t>(in_shape.size()) - 1;
  Track* in = track(n.inputs[0]);
  bool ok_in = in && in->axis == last;
  if (in && !ok_in) block_value(n.inputs[0]);
  if (!fresh(n.outputs[0], last)) return block_value(n.inputs[0]);
  bind(n, "weight", 0, ParamRole::kProduce, n.outputs[0]);
  bind(n, "bias", 0, ParamRole::kProduce, n.outputs[0]);
  if (ok_in) bind(n, "weight", 1, ParamRole::kConsume, n.inputs[0]);
}

void DependencyGraph::Impl::matmul(const ir::Node& n) {
  // x @ W with W a constant [K, N] used only here: a Linear with a transposed weight.
  const ir::Node* c = single_use_constant(n.inputs[1]);
  const auto& a_shape = shape(n.inputs[0]);
  if (c && c->param("value").value.dim() == 2 && a_shape.size() >= 2) {
    int64_t last = static_cast<int64_t>(a_shape.size()) - 1;
    Track* in = track(n.inputs[0]);
    bool ok_in = in && in->axis == last;
    if (in && !ok_in) block_value(n.inputs[0]);
    if (!fresh(n.outputs[0], last)) return block_value(n.inputs[0]);
    set_track(n.inputs[1], -1, {});
    bindings.push_back({c->name, c->op, "value", 1, ParamRole::kProduce, n.outputs[0]});
    if (ok_in) bindings.push_back({c->name, c->op, "value", 0, ParamRole::kConsume, n.inputs[0]});
    return;
  }
  // Two activations, A [.., M, K] @ B [.., K, N] (attention): channels on the contracted axis of
  // both are one channel (its terms vanish together); channels on B's columns or A's rows pass
  // to the output's; anything else (a channel axis among the batch dims) is not followed.
  const auto& b_shape = shape(n.inputs[1]);
  int64_t ra = static_cast<int64_t>(a_shape.size()), rb = static_cast<int64_t>(b_shape.size());
  Track* ta = track(n.inputs[0]);
  Track* tb = track(n.inputs[1]);
  if (ra < 2 || rb < 2 || n.outputs.size() != 1) return block_inputs(n);
  bool a_k = ta && ta->axis == ra - 1, b_k = tb && tb->axis == rb - 2;
  bool a_m = ta && ta->axis == ra - 2, b_n = tb && tb->axis == rb - 1;
  int64_t ro = static_cast<int64_t>(shape(n.outputs[0]).size());
  if (a_k && b_k) return unite_each(ta->ids, tb->ids);
  if (!ta && b_n) return set_track(n.outputs[0], ro - 1, tb->ids);
  if (a_m && !tb) return set_track(n.outputs[0], ro - 2, ta->ids);
  block_inputs(n);
}

void DependencyGraph::Impl::broadcast(const ir::Node& n) {
  const auto& out_shape = shape(n.outputs[0]);
  int64_t r = static_cast<int64_t>(out_shape.size());
  int64_t out_axis = -1;
  for (const auto& v : n.inputs) {
    Track* t = track(v);
    if (!t) continue;
    int64_t rk = static_cast<int64_t>(shape(v).size());
    int64_t a = t->axis + (r - rk);
    if (shape(v)[t->axis] == out_shape[a] && out_shape[a] > 1) {
      out_axis = a;
      break;
    }
  }
  if (out_axis < 0) {
    block_inputs(n);
    return;
  }
  Track* out = fresh(n.outputs[0], out_axis);
  if (!out) return block_inputs(n);
  std::vector<int> out_ids = out->ids;
  bool bad = false;
  for (const auto& v : n.inputs) {
    const auto& s = shape(v);
    int64_t rk = static_cast<int64_t>(s.size());
    int64_t a = out_axis - (r - rk);
    Track* t = track(v);
    if (a < 0 || s[a] == 1) {
      // Broadcast along the channel axis: no constraint, unless the operand has its own channels
      // somewhere else.
      if (t) block_value(v);
      continue;
    }
    if (t && t->axis == a) {
      unite_each(t->ids, out_ids);
      continue;
    }
    const ir::Node* c = t ? nullptr : single_use_constant(v);
    if (c && !tracks.count(v)) {
      Track* ct = fresh(v, a);
      unite_each(ct->ids, out_ids);
      bindings.push_back({c->name, c->op, "value", a, ParamRole::kConstant, v});
      continue;
    }
    if (t) block_value(v);
    bad = true;
  }
  if (bad) block_value(n.outputs[0]);
}

void DependencyGraph::Impl::concat(const ir::Node& n) {
  const auto& out_shape = shape(n.outputs[0]);
  int64_t axis = n.attr_int("axis");
  if (axis < 0) axis += static_cast<int64_t>(out_shape.size());
  bool all_on_axis = true;
  int64_t common = -1;
  for (const auto& v : n.inputs) {
    Track* t = track(v);
    if (!t || t->axis != axis) all_on_axis = false;
    if (t && common < 0) common = t->axis;
  }
  if (all_on_axis) {
    std::vector<int> ids;
    for (const auto& v : n.inputs) {
      const auto& t = *track(v);
      ids.insert(ids.end(), t.ids.begin(), t.ids.end());
    }
    set_track(n.outputs[0], axis, std::move(ids));
    return;
  }
  if (common < 0 || common == axis) {
    block_inputs(n);
    return;
  }
  // Concatenation along another axis (tokens, space): the channels of all inputs are one set.
  Track* out = fresh(n.outputs[0], common);
  if (!out) return block_inputs(n);
  std::vector<int> out_ids = out->ids;
  bool bad = false;
  for (const auto& v : n.inputs) {
    Track* t = track(v);
    if (t && t->axis == common && t->ids.size() == out_ids.size()) {
      unite_each(t->ids, out_ids);
    } else {
      block_value(v);
      bad = true;
    }
  }
  if (bad) block_value(n.outputs[0]);
}

void DependencyGraph::Impl::split(const ir::Node& n) {
  Track* t = track(n.inputs[0]);
  if (!t) return;
  const auto& in_shape = shape(n.inputs[0]);
  int64_t axis = n.attr_int("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(in_shape.size());
  Track in = *t;
  if (axis != in.axis) {
    for (const auto& o : n.outputs) alias(o, in);
    return;
  }
  size_t offset = 0;
  for (const auto& o : n.outputs) {
    int64_t size = shape(o)[axis];
    std::vector<int> ids(in.ids.begin() + offset, in.ids.begin() + offset + size);
    offset += size;
    set_track(o, axis, std::move(ids));
  }
  fixes.push_back({AttrFix::kSplitSizes, n.name, n.outputs, 0});
}

void DependencyGraph::Impl::flatten(const ir::Node& n) {
  Track* t = track(n.inputs[0]);
  if (!t) return;
  const auto& s = shape(n.inputs[0]);
  int64_t r = static_cast<int64_t>(s.size());
  int64_t k = n.attr_int("axis", 1);
  if (k < 0) k += r;
  if (k < 1 || t->axis < k) return block_value(n.inputs[0]);
  // Output feature f (over the flattened axes k..r-1) belongs to channel (f / inner) % C.
  int64_t inner = prod(s, t->axis + 1, s.size()), c = s[t->axis];
  int64_t total = prod(s, k, s.size());
  std::vector<int> ids(total);
  for (int64_t f = 0; f < total; ++f) ids[f] = t->ids[(f / inner) % c];
  set_track(n.outputs[0], 1, std::move(ids));
}

void DependencyGraph::Impl::reshape(const ir::Node& n) {
  Track* t = track(n.inputs[0]);
  if (!t) return;
  const auto& s = shape(n.inputs[0]);
  const auto& o = shape(n.outputs[0]);
  int64_t a = t->axis;
  auto target = n.attr_ints("shape");
  bool prefix_same = static_cast<int64_t>(o.size()) > a;
  for (int64_t i = 0; prefix_same && i < a; ++i) prefix_same = o[i] == s[i];
  if (prefix_same && o[a] == s[a]) {
    // Dims up to and including the channel axis are unchanged: each channel keeps its block.
    Track copy = *t;
    alias(n.outputs[0], copy);
    if (a < static_cast<int64_t>(target.size()) && target[a] > 0)
      fixes.push_back({AttrFix::kReshapeDim, n.name, {n.outputs[0]}, a});
    return;
  }
  if (prefix_same && static_cast<int64_t>(o.size()) == a + 1 && o[a] == prod(s, a, s.size())) {
    // Flatten of the channel axis with the trailing ones.
    int64_t inner = prod(s, a + 1, s.size());
    std::vector<int> ids(o[a]);
    for (int64_t f = 0; f < o[a]; ++f) ids[f] = t->ids[f / inner];
    set_track(n.outputs[0], a, std::move(ids));
    if (a < static_cast<int64_t>(target.size()) && target[a] > 0)
      fixes.push_back({AttrFix::kReshapeDim, n.name, {n.outputs[0]}, a});
    return;
  }
  if (shuffle(n, *t)) return;
  Track copy = *t;
  if (head_split(n, copy) || head_merge(n, copy)) return;
  if (head_split_into_batch(n, copy) || head_merge_from_batch(n, copy)) return;
  // Moves the channel axis some other way: not followed.
  block_value(n.inputs[0]);
}

bool DependencyGraph::Impl::head_split(const ir::Node& n, const Track& t) {
  // Attention heads: [.., C, ...] -> [.., H, C/H, ...]. The heads must stay equal, so position j
  // of every head is one channel, tracked along the new inner axis; pruning it removes j from
  // every head (the head dimension shrinks). Channel c of the input is (c / (C/H), c % (C/H)).
  const auto& s = shape(n.inputs[0]);
  const auto& o = shape(n.outputs[0]);
  int64_t a = t.axis;
  if (o.size() != s.size() + 1 || o[a] <= 1 || o[a] * o[a + 1] != s[a]) return false;
  for (int64_t i = 0; i < a; ++i)
    if (o[i] != s[i]) return false;
  for (size_t i = a + 1; i < s.size(); ++i)
    if (o[i + 1] != s[i]) return false;
  int64_t heads = o[a], per = o[a + 1];
  std::vector<int> in_ids = t.ids;
  for (int64_t h = 1; h < heads; ++h)
    for (int64_t j = 0; j < per; ++j) unite(in_ids[j], in_ids[h * per + j]);
  set_track(n.outputs[0], a + 1, std::vector<int>(in_ids.begin(), in_ids.begin() + per));
  auto target = n.attr_ints("shape");
  if (a + 1 < static_cast<int64_t>(target.size()) && target[a + 1] > 0)
    fixes.push_back({AttrFix::kReshapeDim, n.name, {n.inputs[0]}, a + 1, heads});
  return true;
}

// Shared by head_merge and head_merge_from_batch: heads of `per` channels merged on output axis
// `axis`, position h*per + j being channel j; a fixed Reshape dim there is rewritten on pruning.
bool DependencyGraph::Impl::merged_heads(const ir::Node& n, const Track& t, int64_t axis, int64_t heads,
                                         int64_t per) {
  std::vector<int> ids(heads * per);
  for (int64_t f = 0; f < heads * per; ++f) ids[f] = t.ids[f % per];
  set_track(n.outputs[0], axis, std::move(ids));
  auto target = n.attr_ints("shape");
  if (axis < static_cast<int64_t>(target.size()) && target[axis] > 0)
    fixes.push_back({AttrFix::kReshapeDim, n.name, {n.outputs[0]}, axis});
  return true;
}

bool DependencyGraph::Impl::head_merge(const ir::Node& n, const Track& t) {
  // The inverse: [.., H, D, ...] -> [.., H*D, ...] with the channels on the inner axis D. Merged
  // position h*D + j belongs to channel j.
  const auto& s = shape(n.inputs[0]);
  const auto& o = shape(n.outputs[0]);
  int64_t a = t.axis;
  if (a < 1 || o.size() + 1 != s.size() || o[a - 1] != s[a - 1] * s[a]) return false;
  for (int64_t i = 0; i < a - 1; ++i)
    if (o[i] != s[i]) return false;
  for (size_t i = a + 1; i < s.size(); ++i)
    if (o[i - 1] != s[i]) return false;
  return merged_heads(n, t, a - 1, s[a - 1], s[a]);
}

bool DependencyGraph::Impl::channel_slice(const ir::Node& n, const Track& t) {
  // A step-1 Slice of the channel axis (torch's MultiheadAttention splits its packed q, k, v
  // projection this way) is a Split with one output: output position i is input channel
  // start + i. Pruning rewrites start and end to the kept channels before them.
  const auto& s = shape(n.inputs[0]);
  int64_t r = static_cast<int64_t>(s.size()), dim = s[t.axis];
  auto starts = n.attr_ints("starts"), ends = n.attr_ints("ends");
  auto axes = n.attr_ints("axes", {});
  auto steps = n.attr_ints("steps", std::vector<int64_t>(starts.size(), 1));
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  int64_t at = -1;
  for (size_t i = 0; i < axes.size(); ++i) {
    if ((axes[i] < 0 ? axes[i] + r : axes[i]) != t.axis) continue;
    if (at >= 0 || steps[i] != 1) return false;  // a strided or repeated slice is no plain range
    at = static_cast<int64_t>(i);
  }
  if (at < 0 || dim <= 0) return false;
  auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
  int64_t start = clamp(starts[at]), end = std::max(start, clamp(ends[at]));
  if (shape(n.outputs[0])[t.axis] != end - start) return false;
  set_track(n.outputs[0], t.axis, std::vector<int>(t.ids.begin() + start, t.ids.begin() + end));
  AttrFix fix{AttrFix::kSliceRange, n.name, {n.inputs[0]}, at};
  fix.start = start;
  fix.end = end;
  fixes.push_back(fix);
  return true;
}

bool DependencyGraph::Impl::head_split_into_batch(const ir::Node& n, const Track& t) {
  // Heads moved into the axis before the channels, as torch's MultiheadAttention does:
  // [.., B, C] -> [.., B*H, C/H] (batch-major: row b*H + h holds head h of row b). Like
  // head_split, position j of every head is one channel; the head count H is C over the new
  // inner size, since B*H may only be known at run time.
  const auto& s = shape(n.inputs[0]);
  const auto& o = shape(n.outputs[0]);
  int64_t a = t.axis;
  if (a < 1 || o.size() != s.size() || s[a] <= 0 || o[a] <= 0 || s[a] % o[a] != 0) return false;
  int64_t heads = s[a] / o[a], per = o[a];
  if (heads <= 1) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (static_cast<int64_t>(i) != a && static_cast<int64_t>(i) != a - 1 && o[i] != s[i]) return false;
  bool both_dynamic = s[a - 1] == ir::kDynamic && o[a - 1] == ir::kDynamic;
  if (!both_dynamic && (s[a - 1] == ir::kDynamic || o[a - 1] != s[a - 1] * heads)) return false;
  std::vector<int> in_ids = t.ids;
  for (int64_t h = 1; h < heads; ++h)
    for (int64_t j = 0; j < per; ++j) unite(in_ids[j], in_ids[h * per + j]);
  set_track(n.outputs[0], a, std::vector<int>(in_ids.begin(), in_ids.begin() + per));
  auto target = n.attr_ints("shape");
  if (a < static_cast<int64_t>(target.size()) && target[a] > 0)
    fixes.push_back({AttrFix::kReshapeDim, n.name, {n.inputs[0]}, a, heads});
  return true;
}

bool DependencyGraph::Impl::head_merge_from_batch(const ir::Node& n, const Track& t) {
  // The inverse: [.., M, B*H, D] -> [.., M*B, H*D] with the channels on the last axis. Merged
  // position h*D + j belongs to channel j; H is the output width over D.
  const auto& s = shape(n.inputs[0]);
  const auto& o = shape(n.outputs[0]);
  int64_t a = t.axis, r = static_cast<int64_t>(s.size());
  if (a != r - 1 || a < 2 || o.size() + 1 != s.size() || s[a] <= 0 || o[a - 1] <= 0) return false;
  if (o[a - 1] % s[a] != 0 || o[a - 1] == s[a]) return false;
  for (int64_t i = 0; i < a - 2; ++i)
    if (o[i] != s[i]) return false;
  int64_t heads = o[a - 1] / s[a], per = s[a];
  bool rows_ok = (s[a - 1] == ir::kDynamic || s[a - 1] % heads == 0) &&
                 (o[a - 2] == ir::kDynamic || (s[a - 2] != ir::kDynamic && s[a - 1] != ir::kDynamic &&
                                              o[a - 2] == s[a - 2] * (s[a - 1] / heads)));
  return rows_ok && merged_heads(n, t, a - 1, heads, per);
}

bool DependencyGraph::Impl::shuffle(const ir::Node& n, const Track& t) {
  // Channel shuffle: Reshape [.., C, ...] -> [.., g, C/g, ...], Transpose of those two axes,
  // Reshape back. Channel j of every shuffle group moves together (so the groups stay equal) and
  // the shuffled output is a fixed permutation of the input channels.
  const auto& s = shape(n.inputs[0]);
  const auto& o = shape(n.outputs[0]);
  int64_t a = t.axis;
  if (o.size() != s.size() + 1 || a + 1 >= static_cast<int64_t>(o.size())) return false;
  for (int64_t i = 0; i < a; ++i)
    if (o[i] != s[i]) return false;
  for (size_t i = a + 1; i < s.size(); ++i)
    if (o[i + 1] != s[i]) return false;
  if (o[a] * o[a + 1] != s[a]) return false;
  auto cons = g.consumers(n.outputs[0]);
  if (cons.size() != 1 || g.nodes[cons[0]].op != "Transpose") return false;
  const ir::Node& tr = g.nodes[cons[0]];
  auto perm = tr.attr_ints("perm", {});
  if (perm.size() != o.size()) return false;
  for (size_t i = 0; i < perm.size(); ++i) {
    int64_t want = static_cast<int64_t>(i) == a ? a + 1 : static_cast<int64_t>(i) == a + 1 ? a : static_cast<int64_t>(i);
    if (perm[i] != want) return false;
  }
  auto cons2 = g.consumers(tr.outputs[0]);
  if (cons2.size() != 1 || g.nodes[cons2[0]].op != "Reshape") return false;
  const ir::Node& back = g.nodes[cons2[0]];
  if (shape(back.outputs[0]) != s) return false;
  for (const auto& out : {n.outputs[0], tr.outputs[0]})
    if (std::find(g.outputs.begin(), g.outputs.end(), out) != g.outputs.end()) return false;
  int64_t groups = o[a], per = o[a + 1];
  std::vector<int> in_ids = t.ids;
  for (int64_t grp = 1; grp < groups; ++grp)
    for (int64_t j = 0; j < per; ++j) unite(in_ids[j], in_ids[grp * per + j]);
  std::vector<int> out_ids(in_ids.size());
  for (int64_t grp = 0; grp < groups; ++grp)
    for (int64_t j = 0; j < per; ++j) out_ids[j * groups + grp] = in_ids[grp * per + j];
  set_track(n.outputs[0], -1, {});
  set_track(tr.outputs[0], -1, {});
  set_track(back.outputs[0], a, std::move(out_ids));
  auto target = n.attr_ints("shape");
  if (a + 1 < static_cast<int64_t>(target.size()) && target[a + 1] > 0) {
    fixes.push_back({AttrFix::kReshapeDim, n.name, {back.outputs[0]}, a + 1, groups});
  }
  auto target2 = back.attr_ints("shape");
  if (a < static_cast<int64_t>(target2.size()) && target2[a] > 0)
    fixes.push_back({AttrFix::kReshapeDim, back.name, {back.outputs[0]}, a, 1});
  return true;
}

void DependencyGraph::Impl::per_channel(const ir::Node& n) {
  Track* t = track(n.inputs[0]);
  if (!t) return;
  if (t->axis != 1) return block_value(n.inputs[0]);
  Track copy = *t;
  alias(n.outputs[0], copy);
  for (const auto& [key, p] : n.params)
    if (p.value.dim() == 1 && p.value.size(0) == static_cast<int64_t>(copy.ids.size()))
      bind(n, key, 0, ParamRole::kNorm, n.outputs[0]);
}

void DependencyGraph::Impl::prelu(const ir::Node& n) {
  Track* t = track(n.inputs[0]);
  if (!t) return;
  Track copy = *t;
  const auto& slope = n.param("slope").value;
  if (slope.numel() == 1) return alias(n.outputs[0], copy);
  int64_t r = static_cast<int64_t>(shape(n.inputs[0]).size());
  int64_t a = copy.axis - (r - slope.dim());
  bool ok = a >= 0 && slope.size(a) == static_cast<int64_t>(copy.ids.size()) &&
            slope.numel() == slope.size(a);
  if (!ok) return block_value(n.inputs[0]);
  alias(n.outputs[0], copy);
  bind(n, "slope", a, ParamRole::kNorm, n.outputs[0]);
}

void DependencyGraph::Impl::axis_map(const ir::Node& n) {
  Track* t = track(n.inputs[0]);
  if (!t) return;
  Track in = *t;
  const auto& s = shape(n.inputs[0]);
  int64_t r = static_cast<int64_t>(s.size());
  auto norm = [&](int64_t a, int64_t rank) { return a < 0 ? a + rank : a; };
  const std::string& op = n.op;
  int64_t out_axis = in.axis;
  bool blocked_here = false;
  if (op == "Transpose") {
    auto perm = n.attr_ints("perm", {});
    if (perm.empty())
      for (int64_t i = r; i-- > 0;) perm.push_back(i);
    out_axis = -1;
    for (size_t j = 0; j < perm.size(); ++j)
      if (norm(perm[j], r) == in.axis) out_axis = static_cast<int64_t>(j);
    blocked_here = out_axis < 0;
  } else if (op == "Squeeze") {
    auto axes = n.attr_ints("axes", {});
    std::vector<int64_t> dropped;
    if (axes.empty()) {
      for (int64_t i = 0; i < r; ++i)
        if (s[i] == 1) dropped.push_back(i);
    } else {
      for (auto x : axes) dropped.push_back(norm(x, r));
    }
    if (std::find(dropped.begin(), dropped.end(), in.axis) != dropped.end()) {
      blocked_here = true;
    } else {
      for (auto d : dropped) out_axis -= d < in.axis ? 1 : 0;
    }
  } else if (op == "Unsqueeze") {
    auto axes = n.attr_ints("axes");
    int64_t ro = r + static_cast<int64_t>(axes.size());
    std::vector<int64_t> sorted;
    for (auto x : axes) sorted.push_back(norm(x, ro));
    std::sort(sorted.begin(), sorted.end());
    for (auto x : sorted)
      if (x <= out_axis) ++out_axis;
  } else if (op == "Softmax" || op == "LogSoftmax") {
    blocked_here = norm(n.attr_int("axis", -1), r) == in.axis;
  } else if (op == "LayerNorm") {
    // Removing a channel changes the statistics of the others: never exact, so left alone unless
    // asked for, and then only when the channel axis is the one normalised.
    int64_t first = norm(n.attr_int("axis", -1), r);
    bool sliceable = options.prune_layernorm && first == r - 1 && in.axis == r - 1;
    for (const char* key : {"weight", "bias"})
      sliceable = sliceable && (!n.has_param(key) || n.param(key).value.dim() == 1);
    if (sliceable) {
      set_track(n.outputs[0], out_axis, in.ids);
      bind(n, "weight", 0, ParamRole::kNorm, n.outputs[0]);
      bind(n, "bias", 0, ParamRole::kNorm, n.outputs[0]);
      return;
    }
    blocked_here = in.axis >= first;
  } else if (op == "LRN") {
    blocked_here = in.axis == 1;
  } else if (op == "Pad") {
    auto pads = n.attr_ints("pads");
    blocked_here = pads.size() != 2 * static_cast<size_t>(r) || pads[in.axis] != 0 || pads[in.axis + r] != 0;
  } else if (op == "Slice") {
    auto starts = n.attr_ints("starts");
    auto axes = n.attr_ints("axes", {});
    if (axes.empty())
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    bool on_channels = false;
    for (auto x : axes) on_channels |= norm(x, r) == in.axis;
    if (on_channels) {
      if (channel_slice(n, in)) return;
      blocked_here = true;
    }
  } else {  // Reduce*
    auto axes = n.attr_ints("axes", {});
    bool keep = n.attr_int("keepdims", 1) != 0;
    if (axes.empty()) {
      blocked_here = true;
    } else {
      for (auto x : axes) {
        int64_t ax = norm(x, r);
        if (ax == in.axis) blocked_here = true;
        if (!keep && ax < in.axis) --out_axis;
      }
    }
  }
  if (blocked_here) return block_value(n.inputs[0]);
  set_track(n.outputs[0], out_axis, in.ids);
}

void DependencyGraph::Impl::groups_out(std::vector<ChannelGroup>& groups, int64_t& total, int64_t& num_blocked) {
  // Units: unblocked components that some layer produces.
  std::set<int> produced;
  for (const auto& b : bindings)
    if (b.role == ParamRole::kProduce)
      for (int id : tracks.at(b.value).ids) produced.insert(find(id));
  std::set<int> all_roots;
  for (const auto& v : track_order)
    for (int id : tracks.at(v).ids) all_roots.insert(find(id));
  total = 0;
  num_blocked = 0;
  for (int root : all_roots)
    if (produced.count(root)) {
      ++total;
      if (blocked[root]) ++num_blocked;
    }
  // Signature of a unit: the values it appears in. Same signature = same group.
  std::map<int, std::vector<int>> sig;
  for (size_t vi = 0; vi < track_order.size(); ++vi) {
    const auto& ids = tracks.at(track_order[vi]).ids;
    for (int id : ids) {
      int root = find(id);
      if (blocked[root] || !produced.count(root)) continue;
      auto& s = sig[root];
      if (s.empty() || s.back() != static_cast<int>(vi)) s.push_back(static_cast<int>(vi));
    }
  }
  std::map<std::vector<int>, int> group_of_sig;
  std::map<int, std::pair<int, int>> unit_of_root;  // root -> (group, unit)
  for (size_t vi = 0; vi < track_order.size(); ++vi) {
    for (int id : tracks.at(track_order[vi]).ids) {
      int root = find(id);
      if (!sig.count(root) || unit_of_root.count(root)) continue;
      auto [it, inserted] = group_of_sig.emplace(sig[root], static_cast<int>(groups.size()));
      if (inserted) {
        groups.emplace_back();
        groups.back().id = static_cast<int64_t>(groups.size() - 1);
        unit_roots.emplace_back();
      }
      int gi = it->second;
      unit_of_root[root] = {gi, static_cast<int>(unit_roots[gi].size())};
      unit_roots[gi].push_back(root);
    }
  }
  for (size_t gi = 0; gi < groups.size(); ++gi) groups[gi].size = static_cast<int64_t>(unit_roots[gi].size());
  std::map<std::pair<int, size_t>, size_t> slot;
  for (size_t bi = 0; bi < bindings.size(); ++bi) {
    const auto& b = bindings[bi];
    const auto& all_ids = tracks.at(b.value).ids;
    std::vector<int> ids(all_ids.begin() + b.first,
                         b.count < 0 ? all_ids.end() : all_ids.begin() + b.first + b.count);
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = unit_of_root.find(find(ids[i]));
      if (it == unit_of_root.end()) continue;
      auto [gi, ui] = it->second;
      auto key = std::make_pair(gi, bi);
      auto& grp = groups[gi];
      if (!slot.count(key)) {
        slot[key] = grp.params.size();
        ParamAxis pa{b.node, b.op, b.param, b.axis, b.role, {}};
        pa.unit_indices.resize(grp.size);
        grp.params.push_back(pa);
      }
      grp.params[slot[key]].unit_indices[ui].push_back(static_cast<int64_t>(i));
    }
  }
  std::map<std::string, std::string> producer_op;
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs) producer_op[o] = n.op;
  for (const auto& v : track_order) {
    const auto& t = tracks.at(v);
    std::map<int, size_t> value_slot;
    for (size_t i = 0; i < t.ids.size(); ++i) {
      auto it = unit_of_root.find(find(t.ids[i]));
      if (it == unit_of_root.end()) continue;
      auto [gi, ui] = it->second;
      auto& grp = groups[gi];
      if (!value_slot.count(gi)) {
        value_slot[gi] = grp.values.size();
        ValueAxis va{v, t.axis, producer_op.count(v) ? producer_op[v] : "", {}};
        va.unit_positions.resize(grp.size);
        grp.values.push_back(va);
      }
      grp.values[value_slot[gi]].unit_positions[ui].push_back(static_cast<int64_t>(i));
    }
  }
  for (auto& grp : groups) {
    auto prods = grp.producers();
    grp.name = prods.empty() ? grp.params.front().node : prods.front();
  }
}

DependencyGraph::DependencyGraph(const ir::Graph& graph, DependencyOptions options)
    : impl_(std::make_unique<Impl>(graph, options)) {
  impl_->build();
  impl_->groups_out(groups_, num_channels_, num_blocked_);
}

DependencyGraph::~DependencyGraph() = default;
DependencyGraph::DependencyGraph(DependencyGraph&&) noexcept = default;

ir::Graph DependencyGraph::prune(const ir::Graph& graph,
                                 const std::map<int64_t, std::vector<int64_t>>& removed) const {
  at::NoGradGuard no_grad;
  ir::Graph out = graph.clone();
  std::set<int> gone;
  for (const auto& [gi, units] : removed) {
    SQZ_ASSERT(gi >= 0 && gi < static_cast<int64_t>(groups_.size()), "group ", gi);
    std::set<int64_t> uniq(units.begin(), units.end());
    SQZ_ASSERT(static_cast<int64_t>(uniq.size()) < groups_[gi].size, "removing all ", groups_[gi].size,
               " channels of group '", groups_[gi].name, "'");
    for (auto u : uniq) {
      SQZ_ASSERT(u >= 0 && u < groups_[gi].size, "unit ", u, " of group ", gi);
      gone.insert(impl_->unit_roots[gi][u]);
    }
  }
  if (gone.empty()) return out;
  auto kept_positions = [&](const std::string& value, int64_t first = 0, int64_t count = -1) {
    std::vector<int64_t> keep;
    const auto& ids = impl_->tracks.at(value).ids;
    int64_t end = count < 0 ? static_cast<int64_t>(ids.size()) : first + count;
    for (int64_t i = first; i < end; ++i)
      if (!gone.count(impl_->find_const(ids[i]))) keep.push_back(i - first);
    return keep;
  };
  for (const auto& b : impl_->bindings) {
    auto keep = kept_positions(b.value, b.first, b.count);
    ir::Param& p = out.find_node(b.node)->param(b.param);
    if (static_cast<int64_t>(keep.size()) == p.value.size(b.axis)) continue;
    at::Tensor idx = at::tensor(keep, at::kLong);
    p.value = p.value.index_select(b.axis, idx).contiguous();
    if (p.mask) p.mask = p.mask->index_select(b.axis, idx).contiguous();
    if (p.qspec && p.qspec->axis == b.axis && p.qspec->scale.defined() && p.qspec->scale.numel() > 1) {
      p.qspec->scale = p.qspec->scale.index_select(0, idx);
      if (p.qspec->zero_point.defined() && p.qspec->zero_point.numel() > 1)
        p.qspec->zero_point = p.qspec->zero_point.index_select(0, idx);
    }
  }
  for (const auto& f : impl_->fixes) {
    ir::Node* n = out.find_node(f.node);
    switch (f.kind) {
      case AttrFix::kDepthwiseGroup:
        n->attrs["group"] = static_cast<int64_t>(kept_positions(f.values[0]).size());
        break;
      case AttrFix::kSplitSizes: {
        std::vector<int64_t> sizes;
        for (const auto& v : f.values) sizes.push_back(static_cast<int64_t>(kept_positions(v).size()));
        n->attrs["split"] = sizes;
        break;
      }
      case AttrFix::kReshapeDim: {
        auto shape = n->attr_ints("shape");
        shape[f.index] = static_cast<int64_t>(kept_positions(f.values[0]).size()) / f.divisor;
        n->attrs["shape"] = shape;
        break;
      }
      case AttrFix::kSliceRange: {
        auto starts = n->attr_ints("starts"), ends = n->attr_ints("ends");
        int64_t before_start = static_cast<int64_t>(kept_positions(f.values[0], 0, f.start).size());
        int64_t before_end = static_cast<int64_t>(kept_positions(f.values[0], 0, f.end).size());
        starts[f.index] = before_start;
        ends[f.index] = before_end;
        n->attrs["starts"] = starts;
        n->attrs["ends"] = ends;
        break;
      }
    }
  }
  ir::verify(out);
  return out;
}

}  // namespace squeeze::compress
