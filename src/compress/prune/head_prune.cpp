#include "squeeze/compress/prune/head_prune.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include "squeeze/exec/executor.h"
#include "squeeze/ir/ops.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

namespace {

const ir::Node* only_consumer(const ir::Graph& g, const std::string& v) {
  auto c = g.consumers(v);
  if (c.size() != 1) return nullptr;
  if (std::find(g.outputs.begin(), g.outputs.end(), v) != g.outputs.end()) return nullptr;
  return &g.nodes[c[0]];
}

bool scalar_like(const ir::Graph& g, const std::string& v) {
  for (auto d : g.shape_of(v))
    if (d != 1) return false;
  return true;
}

struct HeadSource {
  const ir::Node* reshape;
  const ir::Node* linear;
  int64_t heads, head_dim;
};

// The producer of n's data input when n only passes it on or scales it by a scalar (Identity,
// Dropout, Mul/Div by a constant scalar), else nullptr: attention scales q or k that way.
const ir::Node* through_scaling(const ir::Graph& g, const ir::Node& n) {
  if (n.op == "Identity" || n.op == "Dropout") return g.producer(n.inputs[0]);
  if ((n.op == "Mul" || n.op == "Div") && n.inputs.size() == 2 && scalar_like(g, n.inputs[1]))
    return g.producer(n.inputs[0]);
  if (n.op == "Mul" && n.inputs.size() == 2 && scalar_like(g, n.inputs[0])) return g.producer(n.inputs[1]);
  return nullptr;
}

// Back from a MatMul operand through Transpose (heads to axis 1) and scalar scaling to the
// Reshape [N, T, D] -> [N, T, H, dh] of a Linear's output.
std::optional<HeadSource> head_source(const ir::Graph& g, const std::string& v) {
  const ir::Node* n = g.producer(v);
  bool transposed = false;
  for (int guard = 0; n && guard < 8; ++guard) {
    if (n->op == "Transpose") {
      auto perm = n->attr_ints("perm", {});
      if (perm.size() != 4 || perm[1] != 2) return std::nullopt;
      transposed = true;
      n = g.producer(n->inputs[0]);
    } else if (const ir::Node* before = through_scaling(g, *n)) {
      n = before;
    } else if (n->op == "Reshape") {
      const auto& in = g.shape_of(n->inputs[0]);
      const auto& out = g.shape_of(n->outputs[0]);
      if (!transposed || in.size() != 3 || out.size() != 4 || out[0] != in[0] || out[1] != in[1] ||
          out[2] * out[3] != in[2])
        return std::nullopt;
      const ir::Node* lin = g.producer(n->inputs[0]);
      if (!lin || lin->op != "Linear" || !only_consumer(g, lin->outputs[0])) return std::nullopt;
      return HeadSource{n, lin, out[2], out[3]};
    } else {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

at::Tensor head_rows(const at::Tensor& w, int64_t axis, int64_t heads) {
  // [heads, everything else] with the head's dh slices along `axis` gathered per row.
  at::Tensor t = w.detach().to(at::kDouble).transpose(0, axis).contiguous();
  return t.reshape({heads, -1});
}

// The [start, end) of a Slice that cuts one step-1 range out of the last axis of its input, or
// nothing for any other Slice.
std::optional<std::pair<int64_t, int64_t>> last_axis_range(const ir::Graph& g, const ir::Node& n) {
  if (n.op != "Slice" || n.inputs.size() != 1) return std::nullopt;
  const auto& s = g.shape_of(n.inputs[0]);
  auto starts = n.attr_ints("starts", {}), ends = n.attr_ints("ends", {});
  auto axes = n.attr_ints("axes", {0});
  auto steps = n.attr_ints("steps", {1});
  int64_t r = static_cast<int64_t>(s.size());
  if (r == 0 || starts.size() != 1 || ends.size() != 1 || axes.size() != 1 || steps.size() != 1 || steps[0] != 1)
    return std::nullopt;
  int64_t dim = s.back();
  if ((axes[0] < 0 ? axes[0] + r : axes[0]) != r - 1 || dim <= 0) return std::nullopt;
  auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
  int64_t start = clamp(starts[0]);
  return std::make_pair(start, std::max(start, clamp(ends[0])));
}

struct PackedSource {
  const ir::Node* reshape;
  const ir::Node* slice;
  const ir::Node* linear;
  int64_t heads, head_dim, start;
};

// Back from a MatMul operand of torch's exported nn.MultiheadAttention through Transpose (N*H
// to axis 0) and scalar scaling to the Reshape [L, N, E] -> [L, N*H or -1, dh] of a Slice of a
// Linear's output.
std::optional<PackedSource> packed_head_source(const ir::Graph& g, const std::string& v) {
  const ir::Node* n = g.producer(v);
  bool transposed = false;
  for (int guard = 0; n && guard < 8; ++guard) {
    if (n->op == "Transpose") {
      auto perm = n->attr_ints("perm", {});
      if (perm.size() != 3 || perm[0] != 1) return std::nullopt;
      transposed = true;
      n = g.producer(n->inputs[0]);
    } else if (const ir::Node* before = through_scaling(g, *n)) {
      n = before;
    } else if (n->op == "Reshape") {
      const auto& in = g.shape_of(n->inputs[0]);
      const auto& out = g.shape_of(n->outputs[0]);
      auto target = n->attr_ints("shape", {});
      if (!transposed || in.size() != 3 || out.size() != 3 || target.size() != 3 || in[2] <= 0 || out[2] <= 0 ||
          out[0] != in[0] || target[2] != out[2] || in[2] % out[2] != 0)
        return std::nullopt;
      int64_t heads = in[2] / out[2];
      // Batch-major rows: row n*H + h holds head h of batch row n, so H is E / dh.
      bool rows = out[1] == ir::kDynamic ? target[1] == -1
                                         : in[1] != ir::kDynamic && out[1] == in[1] * heads && target[1] == out[1];
      if (!rows) return std::nullopt;
      const ir::Node* slice = g.producer(n->inputs[0]);
      if (!slice || slice->op != "Slice" || !only_consumer(g, slice->outputs[0])) return std::nullopt;
      auto range = last_axis_range(g, *slice);
      const ir::Node* lin = g.producer(slice->inputs[0]);
      if (!range || range->second - range->first != in[2] || !lin || lin->op != "Linear") return std::nullopt;
      return PackedSource{n, slice, lin, heads, out[2], range->first};
    } else {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// The packed block around q, k, v sources whose attention ends in MatMul `m2`: one in_proj
// Linear read only by the three Slices, cut into equal thirds, and the heads merged back
// ([L, N*H, dh] -> [L*N, H*dh]) into the output Linear.
std::optional<AttentionBlock> packed_block(const ir::Graph& g, const PackedSource& q, const PackedSource& k,
                                           const PackedSource& v, const ir::Node& m2) {
  if (q.linear != k.linear || q.linear != v.linear || q.slice == k.slice || q.slice == v.slice ||
      k.slice == v.slice || q.heads != k.heads || q.heads != v.heads || q.head_dim != k.head_dim ||
      q.head_dim != v.head_dim)
    return std::nullopt;
  const ir::Node& lin = *q.linear;
  int64_t e = q.heads * q.head_dim;
  std::vector<int64_t> starts{q.start, k.start, v.start};
  std::sort(starts.begin(), starts.end());
  if (starts != std::vector<int64_t>{0, e, 2 * e} || g.consumers(lin.outputs[0]).size() != 3 ||
      std::find(g.outputs.begin(), g.outputs.end(), lin.outputs[0]) != g.outputs.end() ||
      lin.param("weight").value.size(0) != 3 * e)
    return std::nullopt;
  const ir::Node* t = only_consumer(g, m2.outputs[0]);
  if (!t || t->op != "Transpose") return std::nullopt;
  auto perm = t->attr_ints("perm", {});
  if (perm != std::vector<int64_t>{1, 0, 2}) return std::nullopt;
  const ir::Node* m = only_consumer(g, t->outputs[0]);
  if (!m || m->op != "Reshape") return std::nullopt;
  const auto& in = g.shape_of(m->inputs[0]);
  const auto& out = g.shape_of(m->outputs[0]);
  if (in.size() != 3 || out.size() < 2 || out.back() != e || in[2] != q.head_dim) return std::nullopt;
  // The rows of the merged output are (l, n): all dims but the last together hold L * (N*H / H).
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < out.size() && rows != ir::kDynamic; ++i) rows = out[i] == ir::kDynamic ? out[i] : rows * out[i];
  if (rows != ir::kDynamic && (in[0] == ir::kDynamic || in[1] == ir::kDynamic || in[1] % q.heads != 0 ||
                               rows != in[0] * (in[1] / q.heads)))
    return std::nullopt;
  const ir::Node* o = only_consumer(g, m->outputs[0]);
  if (!o || o->op != "Linear" || o->param("weight").value.size(1) != e) return std::nullopt;
  AttentionBlock b;
  b.q = b.k = b.v = lin.name;
  b.out = o->name;
  b.split_reshapes = {q.reshape->name, k.reshape->name, v.reshape->name};
  b.merge_reshape = m->name;
  b.heads = q.heads, b.head_dim = q.head_dim;
  b.slices = {q.slice->name, k.slice->name, v.slice->name};
  b.row_offsets = {q.start, k.start, v.start};
  return b;
}

// torch's nn.MultiheadAttention as torch.onnx.export writes it: one packed in_proj Linear whose
// output is cut into q, k and v by Slices, heads moved into the batch axis. The Linears that are
// cut by at least two Slices and read by a Softmax a few ops downstream.
std::vector<const ir::Node*> packed_attention_projections(const ir::Graph& g) {
  std::vector<const ir::Node*> found;
  for (const auto& lin : g.nodes) {
    if (lin.op != "Linear") continue;
    auto cons = g.consumers(lin.outputs[0]);
    int slices = 0;
    for (auto c : cons) slices += g.nodes[c].op == "Slice";
    if (slices < 2) continue;
    bool softmax = false;
    std::vector<std::string> frontier{lin.outputs[0]};
    for (int depth = 0; depth < 6 && !frontier.empty() && !softmax; ++depth) {
      std::vector<std::string> next;
      for (const auto& v : frontier)
        for (auto c : g.consumers(v)) {
          softmax |= g.nodes[c].op == "Softmax";
          next.insert(next.end(), g.nodes[c].outputs.begin(), g.nodes[c].outputs.end());
        }
      frontier = std::move(next);
    }
    if (softmax) found.push_back(&lin);
  }
  return found;
}

}  // namespace

std::vector<AttentionBlock> find_attention(const ir::Graph& g) {
  std::vector<AttentionBlock> blocks;
  for (const auto& m2 : g.nodes) {
    if (m2.op != "MatMul" || m2.inputs.size() != 2) continue;
    const ir::Node* n = g.producer(m2.inputs[0]);
    bool softmax = false;
    while (n) {
      if (n->op == "Softmax") {
        // Over the keys (the last axis), so every head normalises its own scores; a Softmax
        // across heads would make the kept heads depend on the removed ones.
        int64_t r = static_cast<int64_t>(g.shape_of(n->inputs[0]).size()), axis = n->attr_int("axis", -1);
        softmax = (axis < 0 ? axis + r : axis) == r - 1;
        if (!softmax) break;
      } else if (!(((n->op == "Mul" || n->op == "Div") && n->inputs.size() == 2 && scalar_like(g, n->inputs[1])) ||
                   n->op == "Dropout" || n->op == "Identity")) {
        break;
      }
      n = g.producer(n->inputs[0]);
    }
    if (!softmax || !n || n->op != "MatMul") continue;
    auto pq = packed_head_source(g, n->inputs[0]), pk = packed_head_source(g, n->inputs[1]),
         pv = packed_head_source(g, m2.inputs[1]);
    if (pq && pk && pv) {
      if (auto b = packed_block(g, *pq, *pk, *pv, m2)) blocks.push_back(*b);
      continue;
    }
    auto q = head_source(g, n->inputs[0]), k = head_source(g, n->inputs[1]), v = head_source(g, m2.inputs[1]);
    if (!q || !k || !v || q->heads != k->heads || q->heads != v->heads || q->head_dim != k->head_dim ||
        q->head_dim != v->head_dim)
      continue;
    const ir::Node* t = only_consumer(g, m2.outputs[0]);
    if (t && t->op == "Transpose") {
      auto perm = t->attr_ints("perm", {});
      if (perm.size() != 4 || perm[2] != 1) continue;
      t = only_consumer(g, t->outputs[0]);
    } else {
      continue;  // the heads must come back next to the head dimension before merging
    }
    if (!t || t->op != "Reshape") continue;
    const auto& in = g.shape_of(t->inputs[0]);
    const auto& out = g.shape_of(t->outputs[0]);
    if (in.size() != 4 || out.size() != 3 || in[2] != q->heads || out[2] != q->heads * q->head_dim) continue;
    const ir::Node* o = only_consumer(g, t->outputs[0]);
    if (!o || o->op != "Linear") continue;
    AttentionBlock b;
    b.q = q->linear->name, b.k = k->linear->name, b.v = v->linear->name, b.out = o->name;
    b.split_reshapes = {q->reshape->name, k->reshape->name, v->reshape->name};
    b.merge_reshape = t->name;
    b.heads = q->heads, b.head_dim = q->head_dim;
    blocks.push_back(b);
  }
  return blocks;
}

std::vector<std::string> unmatched_packed_attention(const ir::Graph& g, const std::vector<AttentionBlock>& blocks) {
  std::vector<std::string> reasons;
  for (const ir::Node* lin : packed_attention_projections(g)) {
    bool matched = false;
    for (const auto& b : blocks) matched |= b.packed() && b.q == lin->name;
    if (matched) continue;
    int64_t rows = lin->param("weight").value.size(0);
    std::vector<std::string> ranges;
    std::vector<std::pair<int64_t, int64_t>> cuts;
    bool plain = true;
    for (auto c : g.consumers(lin->outputs[0])) {
      auto r = last_axis_range(g, g.nodes[c]);
      if (r) {
        cuts.push_back(*r);
        ranges.push_back(msg("[", r->first, ", ", r->second, ")"));
      } else {
        plain = false;
        ranges.push_back(msg(g.nodes[c].op, " '", g.nodes[c].name, "'"));
      }
    }
    std::sort(cuts.begin(), cuts.end());
    bool thirds = plain && cuts.size() == 3 && rows % 3 == 0;
    for (size_t i = 0; thirds && i < 3; ++i)
      thirds = cuts[i] == std::make_pair(int64_t(i) * rows / 3, int64_t(i + 1) * rows / 3);
    std::string what =
        thirds ? msg("its q, k, v do not follow the layout whole-head removal rewrites (each Slice -> Reshape [L, N*H ",
                     "or -1, dh] -> Transpose with N*H first -> MatMul -> Softmax -> MatMul -> Transpose [L, N*H, dh] ",
                     "-> Reshape [L*N, H*dh] -> Linear)")
               : msg("whole-head removal needs exactly three step-1 Slices of the last axis that cut q, k and v as ",
                     "equal thirds [0, E), [E, 2E), [2E, 3E) of the projection's ", rows, " output rows and nothing ",
                     "else reading it");
    reasons.push_back(msg("packed attention projection '", lin->name, "' (", rows, " output rows) is read by ",
                          join(ranges, ", "), ": ", what));
  }
  return reasons;
}

ir::Graph remove_heads(const ir::Graph& graph, const std::vector<AttentionBlock>& blocks,
                       const std::map<size_t, std::vector<int64_t>>& removed) {
  at::NoGradGuard no_grad;
  ir::Graph out = graph.clone();
  for (const auto& [bi, heads] : removed) {
    SQZ_ASSERT(bi < blocks.size());
    const auto& b = blocks[bi];
    std::set<int64_t> gone(heads.begin(), heads.end());
    if (gone.empty()) continue;
    SQZ_ASSERT(static_cast<int64_t>(gone.size()) < b.heads, "removing all heads of ", b.q);
    std::vector<int64_t> keep;
    for (int64_t h = 0; h < b.heads; ++h)
      if (!gone.count(h))
        for (int64_t j = 0; j < b.head_dim; ++j) keep.push_back(h * b.head_dim + j);
    auto slice = [&](const std::string& node, const std::string& key, int64_t axis, const std::vector<int64_t>& rows) {
      ir::Node* n = out.find_node(node);
      if (!n->has_param(key)) return;
      at::Tensor idx = at::tensor(rows, at::kLong);
      ir::Param& p = n->param(key);
      p.value = p.value.index_select(axis, idx).contiguous();
      if (p.mask) p.mask = p.mask->index_select(axis, idx).contiguous();
      if (p.qspec && p.qspec->axis == axis && p.qspec->scale.defined() && p.qspec->scale.numel() > 1) {
        p.qspec->scale = p.qspec->scale.index_select(0, idx);
        if (p.qspec->zero_point.defined() && p.qspec->zero_point.numel() > 1)
          p.qspec->zero_point = p.qspec->zero_point.index_select(0, idx);
      }
    };
    int64_t kept = b.heads - static_cast<int64_t>(gone.size());
    if (b.packed()) {
      // The kept heads' rows of q, k and v, in the projection's row order; each Slice then starts
      // where its third now starts.
      std::vector<int64_t> offsets = b.row_offsets;
      std::sort(offsets.begin(), offsets.end());
      std::vector<int64_t> rows;
      for (auto off : offsets)
        for (auto i : keep) rows.push_back(off + i);
      slice(b.q, "weight", 0, rows);
      slice(b.q, "bias", 0, rows);
      for (size_t i = 0; i < b.slices.size(); ++i) {
        int64_t third = std::find(offsets.begin(), offsets.end(), b.row_offsets[i]) - offsets.begin();
        ir::Node* n = out.find_node(b.slices[i]);
        n->attrs["starts"] = std::vector<int64_t>{third * kept * b.head_dim};
        n->attrs["ends"] = std::vector<int64_t>{(third + 1) * kept * b.head_dim};
      }
      // [L, N*H, dh]: a static N*H becomes N*H'; -1 (the batch known at run time) stays.
      for (const auto& r : b.split_reshapes) {
        ir::Node* n = out.find_node(r);
        auto shape = n->attr_ints("shape");
        SQZ_ASSERT(shape.size() == 3 && (shape[1] == -1 || (shape[1] > 0 && shape[1] % b.heads == 0)), r);
        if (shape[1] > 0) shape[1] = shape[1] / b.heads * kept;
        n->attrs["shape"] = shape;
      }
    } else {
      for (const auto& lin : {b.q, b.k, b.v}) {
        slice(lin, "weight", 0, keep);
        slice(lin, "bias", 0, keep);
      }
      for (const auto& r : b.split_reshapes) {
        ir::Node* n = out.find_node(r);
        auto shape = n->attr_ints("shape");
        if (shape.size() == 4 && shape[2] > 0) shape[2] = kept;
        n->attrs["shape"] = shape;
      }
    }
    slice(b.out, "weight", 1, keep);
    ir::Node* m = out.find_node(b.merge_reshape);
    auto shape = m->attr_ints("shape");
    if (!shape.empty() && shape.back() > 0) shape.back() = kept * b.head_dim;
    m->attrs["shape"] = shape;
  }
  ir::verify(out);
  return out;
}

HeadPrune::HeadPrune(StructuredPruneOptions options) : options_(std::move(options)) {
  options_.validate();
  SQZ_ASSERT(options_.granularity == "head");
}

namespace {

std::vector<at::Tensor> head_scores(const ir::Graph& graph, const std::vector<AttentionBlock>& blocks,
                                    const StructuredPruneOptions& o, const PassContext& ctx) {
  std::string c = o.effective_criterion();
  std::vector<at::Tensor> scores;
  if (c == "random") {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + ctx.seed);
    for (const auto& b : blocks) scores.push_back(at::rand({b.heads}, gen, at::kDouble));
    return scores;
  }
  // The head-major weights of q, k, v (rows) and of the output projection (columns): whole
  // tensors, or the thirds of a packed projection.
  struct Part {
    std::string node;
    int64_t axis, first, count;
  };
  auto parts = [](const AttentionBlock& b) {
    int64_t e = b.heads * b.head_dim;
    if (b.packed())
      return std::vector<Part>{{b.q, 0, b.row_offsets[0], e}, {b.k, 0, b.row_offsets[1], e},
                               {b.v, 0, b.row_offsets[2], e}, {b.out, 1, 0, e}};
    return std::vector<Part>{{b.q, 0, 0, e}, {b.k, 0, 0, e}, {b.v, 0, 0, e}, {b.out, 1, 0, e}};
  };
  if (c == "l1" || c == "l2") {
    for (const auto& b : blocks) {
      at::Tensor s = at::zeros({b.heads}, at::kDouble);
      for (const auto& p : parts(b)) {
        const at::Tensor& w = graph.find_node(p.node)->param("weight").value;
        at::Tensor r = head_rows(w.narrow(p.axis, p.first, p.count), p.axis, b.heads);
        s += c == "l1" ? r.abs().mean(1) : r.pow(2).mean(1).sqrt();
      }
      scores.push_back(s / 4.0);
    }
    return scores;
  }
  // taylor
  if (!ctx.data || ctx.data->train.size() == 0)
    throw UserError("criterion taylor needs data (gradients on a few training batches), but the workflow has none; "
                    "add a data: block or use l1, l2 or random");
  ir::Graph g = graph.clone();
  exec::trainable_parameters(g);
  exec::Executor ex(g);
  for (const auto& b : blocks) scores.push_back(at::zeros({b.heads}, at::kDouble));
  const auto& train = ctx.data->train;
  int64_t bs = std::max<int64_t>(1, std::min<int64_t>(ctx.batch_size, 128));
  for (int64_t i = 0; i < o.batches && i * bs < train.size(); ++i) {
    int64_t len = std::min(bs, train.size() - i * bs);
    for (auto& n : g.nodes)
      for (auto& [k, p] : n.params)
        if (p.value.grad().defined()) p.value.mutable_grad().zero_();
    at::Tensor logits = ex.forward(train.inputs(i * bs, len), exec::Mode::kEval);
    at::cross_entropy_loss(logits, train.y.narrow(0, i * bs, len)).backward();
    for (size_t bi = 0; bi < blocks.size(); ++bi) {
      const auto& b = blocks[bi];
      at::Tensor contrib = at::zeros({b.heads}, at::kDouble);
      for (const auto& p : parts(b)) {
        const at::Tensor& w = g.find_node(p.node)->param("weight").value;
        if (!w.grad().defined()) continue;
        contrib += head_rows((w * w.grad()).narrow(p.axis, p.first, p.count), p.axis, b.heads).sum(1);
      }
      scores[bi] += contrib.pow(2);
    }
  }
  return scores;
}

}  // namespace

PassResult HeadPrune::run(const ir::Graph& graph, PassContext& ctx) {
  PassResult result{graph.clone(), "", false};
  ir::infer_shapes(result.graph);
  auto blocks0 = find_attention(result.graph);
  // A packed attention left out would be left unpruned while the summary reports the others.
  auto unmatched = unmatched_packed_attention(result.graph, blocks0);
  if (!unmatched.empty())
    throw UnsupportedError(msg("granularity head: model '", graph.name, "' computes attention as torch's ",
                               "nn.MultiheadAttention exports it, but ", join(unmatched, "; "),
                               ". granularity channel prunes its per-head dimensions (q/k and v) instead"));
  if (blocks0.empty())
    throw UserError(msg("granularity head: model '", graph.name, "' has no multi-head attention (looked for ",
                        "Linear -> Reshape [.., H, dh] -> Transpose -> MatMul -> Softmax -> MatMul -> Transpose -> ",
                        "Reshape -> Linear, or torch's packed in_proj Linear -> 3 Slices -> Reshape [L, N*H, dh] -> ",
                        "...); use granularity channel or layer"));
  int64_t heads0 = 0;
  for (const auto& b : blocks0) heads0 += b.heads;
  int64_t flops0 = ir::graph_flops(result.graph), params0 = result.graph.num_params();
  int64_t n = options_.steps;
  std::string history;
  for (int64_t s = 1; s <= n && options_.ratio > 0.0; ++s) {
    auto blocks = find_attention(result.graph);
    double fraction = 1.0 - std::pow(1.0 - options_.ratio, 1.0 / double(n));
    double max_ratio = 1.0 - std::pow(1.0 - options_.max_ratio_per_layer, 1.0 / double(n));
    auto scores = head_scores(result.graph, blocks, options_, ctx);
    std::vector<bool> eligible;
    for (const auto& b : blocks) {
      bool ex = false;
      for (const auto& pat : options_.exclude)
        for (const auto& node : {b.q, b.k, b.v, b.out}) ex |= pat == node || glob_match(pat, node);
      eligible.push_back(!ex);
    }
    auto units = select_units(scores, eligible, fraction, max_ratio, options_.scope, options_.round_to);
    std::map<size_t, std::vector<int64_t>> removed;
    for (size_t i = 0; i < units.size(); ++i)
      if (!units[i].empty()) removed[i] = units[i];
    result.graph = remove_heads(result.graph, blocks, removed);
    if (n > 1 && s < n && ctx.finetune && ctx.data)
      train::fit(result.graph, *ctx.data, *ctx.finetune, ctx.batch_size, ctx.seed + 100 + s);
    if (n > 1) {
      int64_t left = 0;
      for (const auto& b : find_attention(result.graph)) left += b.heads;
      history += msg(history.empty() ? "" : "; ", "step ", s, "/", n, ": ", left, " heads");
    }
  }
  int64_t heads1 = 0;
  std::vector<std::string> per_block;
  for (const auto& b : find_attention(result.graph)) {
    heads1 += b.heads;
    per_block.push_back(std::to_string(b.heads));
  }
  int64_t flops1 = ir::graph_flops(result.graph), params1 = result.graph.num_params();
  result.changed = heads1 != heads0;
  result.summary = msg("attention-head pruning (", options_.effective_criterion(), ", ", options_.scope, "): heads ",
                       heads0, " -> ", heads1, " (per block: ", join(per_block, ", "), "); params ",
                       with_commas(params0), " -> ", with_commas(params1), ", FLOPs ", with_commas(flops0), " -> ",
                       with_commas(flops1), history.empty() ? "" : msg("; history: ", history));
  return result;
}

}  // namespace squeeze::compress
