#include "squeeze/compress/prune/importance.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <map>
#include <set>

#include "squeeze/compress/prune/reconstruct.h"
#include "squeeze/exec/executor.h"
#include "squeeze/util/error.h"

namespace squeeze::compress {

namespace {

// [dim(axis), rest] view of a parameter.
at::Tensor rows(const at::Tensor& w, int64_t axis) {
  return w.detach().to(at::kDouble).transpose(0, axis).reshape({w.size(axis), -1});
}

const at::Tensor& value_of(const ir::Graph& g, const ParamAxis& p) {
  return g.find_node(p.node)->param(p.param).value;
}

bool is_filter(const ParamAxis& p) {
  return p.role == ParamRole::kProduce && (p.param == "weight" || p.param == "value");
}

at::Tensor magnitude(const ir::Graph& g, const ChannelGroup& grp, const std::string& criterion) {
  at::Tensor sum = at::zeros({grp.size}, at::kDouble);
  int64_t count = 0;
  for (const auto& p : grp.params) {
    if (!is_filter(p)) continue;
    at::Tensor r = rows(value_of(g, p), p.axis);
    at::Tensor per_index;
    if (criterion == "l1") {
      per_index = r.abs().mean(1);
    } else if (criterion == "l2") {
      per_index = r.pow(2).mean(1).sqrt();
    } else {  // fpgm: total distance to the other filters of the layer
      at::Tensor d = at::cdist(r.unsqueeze(0), r.unsqueeze(0)).squeeze(0);
      per_index = d.sum(1);
      per_index = per_index / (per_index.mean() + 1e-12);
    }
    sum += per_unit(per_index, p.unit_indices);
    ++count;
  }
  return count ? sum / double(count) : sum;
}

at::Tensor bn_scale(const ir::Graph& g, const ChannelGroup& grp) {
  at::Tensor sum = at::zeros({grp.size}, at::kDouble);
  int64_t count = 0;
  for (const auto& p : grp.params) {
    if (p.op != "BatchNorm" || p.param != "weight") continue;
    sum += per_unit(rows(value_of(g, p), p.axis).abs().mean(1), p.unit_indices);
    ++count;
  }
  if (count == 0)
    throw UserError(msg("criterion bn_scale: layer '", grp.name, "' (", g.find_node(grp.name)->op,
                        ") is not followed by a BatchNorm, so its channels have no scale; use l1, l2, fpgm or "
                        "a data-driven criterion, or exclude the layer"));
  return sum / double(count);
}

void need_data(const PassContext& ctx, const std::string& criterion) {
  if (!ctx.data || ctx.data->train.size() == 0)
    throw UserError(msg("criterion ", criterion, " needs data (it looks at ",
                        criterion == "taylor" ? "gradients" : "activations",
                        " on a few training batches), but the workflow has none; add a data: block or use l1, "
                        "l2, fpgm, bn_scale or random"));
}

std::vector<at::Tensor> taylor(const ir::Graph& graph, const DependencyGraph& deps, const ImportanceOptions& o,
                               const PassContext& ctx) {
  need_data(ctx, "taylor");
  ir::Graph g = graph.clone();
  std::vector<at::Tensor> params = exec::trainable_parameters(g);
  exec::Executor ex(g);
  const auto& groups = deps.groups();
  std::vector<at::Tensor> scores;
  for (const auto& grp : groups) scores.push_back(at::zeros({grp.size}, at::kDouble));
  const auto& train = ctx.data->train;
  int64_t bs = std::max<int64_t>(1, o.batch_size);
  for (int64_t b = 0; b < o.batches && b * bs < train.size(); ++b) {
    int64_t len = std::min(bs, train.size() - b * bs);
    at::Tensor x = train.inputs(b * bs, len), y = train.y.narrow(0, b * bs, len);
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().zero_();
    at::Tensor logits = ex.forward(x, exec::Mode::kEval);
    at::Tensor loss = at::cross_entropy_loss(logits, y);
    loss.backward();
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      at::Tensor contrib = at::zeros({groups[gi].size}, at::kDouble);
      for (const auto& p : groups[gi].params) {
        const at::Tensor& w = g.find_node(p.node)->param(p.param).value;
        if (!w.grad().defined()) continue;
        at::Tensor wg = rows(w * w.grad(), p.axis).sum(1);
        at::Tensor c = per_unit(wg, p.unit_indices);
        for (int64_t u = 0; u < groups[gi].size; ++u) c[u] *= double(p.unit_indices[u].size());
        contrib += c;
      }
      scores[gi] += contrib.pow(2);
    }
  }
  return scores;
}

bool is_activation(const std::string& op) {
  static const std::set<std::string> ops = {"Relu", "Relu6", "LeakyRelu", "Gelu", "Silu", "Sigmoid", "Tanh",
                                            "HardSwish", "HardSigmoid", "Elu", "Selu", "Clip", "Mish", "Celu"};
  return ops.count(op) != 0;
}

std::vector<at::Tensor> activation_stats(const ir::Graph& graph, const DependencyGraph& deps,
                                         const ImportanceOptions& o, const PassContext& ctx) {
  need_data(ctx, o.criterion);
  const auto& groups = deps.groups();
  // Per group, the values to observe: outputs of activations where each channel is one position,
  // else the producers' outputs.
  std::vector<std::vector<const ValueAxis*>> observed(groups.size());
  ir::Graph g = graph.clone();
  std::set<std::string> extra;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    for (const auto& v : groups[gi].values)
      if (is_activation(v.producer_op)) observed[gi].push_back(&v);
    if (observed[gi].empty())
      for (const auto& v : groups[gi].values)
        if (!v.producer_op.empty()) observed[gi].push_back(&v);
    for (const auto* v : observed[gi]) extra.insert(v->value);
  }
  std::vector<std::string> names(extra.begin(), extra.end());
  size_t first = g.outputs.size();
  for (const auto& v : names) g.outputs.push_back(v);
  exec::Executor ex(g);
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> sums;
  int64_t seen = 0;
  const auto& train = ctx.data->train;
  int64_t bs = std::max<int64_t>(1, o.batch_size);
  for (int64_t b = 0; b < o.batches && b * bs < train.size(); ++b) {
    int64_t len = std::min(bs, train.size() - b * bs);
    auto outs = ex.run({train.inputs(b * bs, len)}, exec::Mode::kEval);
    for (size_t i = 0; i < names.size(); ++i) {
      const at::Tensor& a = outs[first + i];
      const ValueAxis* va = nullptr;
      for (const auto& obs : observed)
        for (const auto* v : obs)
          if (v->value == names[i]) va = v;
      at::Tensor r = a.to(at::kDouble).transpose(0, va->axis).reshape({a.size(va->axis), -1});
      at::Tensor stat = o.criterion == "apoz" ? (r > 0).to(at::kDouble).sum(1) : r.abs().sum(1);
      double count = double(r.size(1));
      stat = stat / count;
      auto it = sums.find(names[i]);
      if (it == sums.end())
        sums[names[i]] = stat;
      else
        it->second += stat;
    }
    ++seen;
  }
  std::vector<at::Tensor> scores;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    at::Tensor s = at::zeros({groups[gi].size}, at::kDouble);
    for (const auto* v : observed[gi]) s += per_unit(sums.at(v->value) / double(std::max<int64_t>(seen, 1)), v->unit_positions);
    if (!observed[gi].empty()) s /= double(observed[gi].size());
    scores.push_back(s);
  }
  return scores;
}

// Per unit, the sum (not the mean) of per-index values.
at::Tensor per_unit_sum(const at::Tensor& per_index, const std::vector<std::vector<int64_t>>& unit_indices) {
  at::Tensor out = per_unit(per_index, unit_indices);
  for (size_t u = 0; u < unit_indices.size(); ++u)
    out[static_cast<int64_t>(u)] *= double(unit_indices[u].size());
  return out;
}

// l1 / l2 norm of every weight that reads each unit, over all consumers of the group; undefined
// when nothing with a weight reads the group.
at::Tensor consumer_magnitude(const ir::Graph& g, const ChannelGroup& grp, const std::string& criterion) {
  at::Tensor sum = at::zeros({grp.size}, at::kDouble);
  bool any = false;
  for (const auto& p : grp.params) {
    if (p.role != ParamRole::kConsume) continue;
    at::Tensor r = rows(value_of(g, p), p.axis);
    sum += per_unit_sum(criterion == "l1" ? r.abs().sum(1) : r.pow(2).sum(1), p.unit_indices);
    any = true;
  }
  if (!any) return at::Tensor();
  return criterion == "l1" ? sum : sum.sqrt();
}

// Mean squared change of every re-fittable consumer's output when one unit alone is removed.
std::vector<at::Tensor> consumer_reconstruction_error(const ir::Graph& graph, const DependencyGraph& deps,
                                                      const ImportanceOptions& o, const PassContext& ctx) {
  need_data(ctx, "reconstruction_error");
  const auto& groups = deps.groups();
  struct Reader {
    size_t group;
    const ParamAxis* axis;
  };
  std::vector<Reader> readers;
  std::vector<std::string> values;
  std::map<std::string, size_t> value_slot;
  for (size_t gi = 0; gi < groups.size(); ++gi)
    for (const auto& p : groups[gi].params) {
      if (p.role != ParamRole::kConsume || p.param != "weight") continue;
      const ir::Node* n = graph.find_node(p.node);
      if (!refit_obstacle(*n).empty()) continue;
      readers.push_back({gi, &p});
      if (!value_slot.count(n->inputs[0])) {
        value_slot[n->inputs[0]] = values.size();
        values.push_back(n->inputs[0]);
      }
    }
  std::vector<at::Tensor> scores;
  for (const auto& grp : groups) scores.push_back(at::zeros({grp.size}, at::kDouble));
  std::vector<bool> read(groups.size(), false);
  for (const auto& r : readers) read[r.group] = true;
  if (readers.empty()) return {};

  ir::Graph g = graph.clone();
  size_t first = g.outputs.size();
  for (const auto& v : values) g.outputs.push_back(v);
  exec::Executor ex(g);
  at::NoGradGuard no_grad;
  const auto& train = ctx.data->train;
  int64_t bs = std::max<int64_t>(1, o.batch_size), seen = 0;
  for (int64_t b = 0; b < o.batches && b * bs < train.size(); ++b) {
    at::Tensor x = train.inputs(b * bs, std::min(bs, train.size() - b * bs));
    auto outs = ex.run({x}, exec::Mode::kEval);
    for (size_t ri = 0; ri < readers.size(); ++ri) {
      const ParamAxis& p = *readers[ri].axis;
      const ir::Node& n = *graph.find_node(p.node);
      const at::Tensor& in = n.inputs[0] == graph.inputs.at(0).name ? x : outs[first + value_slot.at(n.inputs[0])];
      at::Tensor pos = sample_positions(n, in, o.positions, o.seed + 7919 * uint64_t(b) + 104729 * ri);
      at::Tensor xr = input_rows(n, in, pos).to(at::kDouble);
      at::Tensor w = weight_matrix(n).to(at::kDouble);
      int64_t cols = columns_per_input(n);
      auto acc = scores[readers[ri].group].accessor<double, 1>();
      for (size_t u = 0; u < p.unit_indices.size(); ++u) {
        std::vector<int64_t> idx;
        for (auto i : p.unit_indices[u])
          for (int64_t j = 0; j < cols; ++j) idx.push_back(i * cols + j);
        at::Tensor sel = at::tensor(idx, at::kLong);
        at::Tensor change = xr.index_select(1, sel).mm(w.index_select(1, sel).t());
        acc[static_cast<int64_t>(u)] += change.pow(2).sum().item<double>() / double(std::max<int64_t>(1, xr.size(0)));
      }
    }
    ++seen;
  }
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    if (!read[gi]) scores[gi] = at::Tensor();
    else scores[gi] /= double(std::max<int64_t>(seen, 1));
  }
  return scores;
}

}  // namespace

const std::vector<std::string>& importance_criteria() {
  // reconstruction_error last: the others are the producer-side criteria.
  static const std::vector<std::string> all = {"l1",   "l2",   "fpgm", "bn_scale", "taylor", "apoz",
                                               "mean_activation", "random", "reconstruction_error"};
  return all;
}

const std::vector<std::string>& consumer_criteria() {
  static const std::vector<std::string> all = {"l1", "l2", "reconstruction_error"};
  return all;
}

const std::vector<std::string>& both_criteria() {
  static const std::vector<std::string> all = {"l1", "l2"};
  return all;
}

bool criterion_needs_data(const std::string& c) {
  return c == "taylor" || c == "apoz" || c == "mean_activation" || c == "reconstruction_error";
}

at::Tensor per_unit(const at::Tensor& per_index, const std::vector<std::vector<int64_t>>& unit_indices) {
  at::Tensor out = at::zeros({static_cast<int64_t>(unit_indices.size())}, at::kDouble);
  auto v = per_index.to(at::kDouble).contiguous();
  const double* p = v.data_ptr<double>();
  auto acc = out.accessor<double, 1>();
  for (size_t u = 0; u < unit_indices.size(); ++u) {
    double s = 0.0;
    for (auto i : unit_indices[u]) s += p[i];
    acc[u] = unit_indices[u].empty() ? 0.0 : s / double(unit_indices[u].size());
  }
  return out;
}

namespace {

std::vector<at::Tensor> producer_importance(const ir::Graph& graph, const DependencyGraph& deps,
                                            const ImportanceOptions& o, const PassContext& ctx) {
  const std::string& c = o.criterion;
  if (c == "taylor") return taylor(graph, deps, o, ctx);
  if (c == "apoz" || c == "mean_activation") return activation_stats(graph, deps, o, ctx);
  std::vector<at::Tensor> scores;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  for (const auto& grp : deps.groups()) {
    if (c == "l1" || c == "l2" || c == "fpgm")
      scores.push_back(magnitude(graph, grp, c));
    else if (c == "bn_scale")
      scores.push_back(bn_scale(graph, grp));
    else if (c == "random")
      scores.push_back(at::rand({grp.size}, gen, at::kDouble));
    else
      throw ConfigError(msg("criterion: '", c, "' is not a channel criterion"));
  }
  return scores;
}

}  // namespace

std::vector<at::Tensor> channel_importance(const ir::Graph& graph, const DependencyGraph& deps,
                                           const ImportanceOptions& o, const PassContext& ctx,
                                           int64_t* fallback_groups) {
  if (fallback_groups) *fallback_groups = 0;
  if (o.score_from == "producer") return producer_importance(graph, deps, o, ctx);
  const std::string& c = o.criterion;
  std::vector<at::Tensor> consumer;
  if (c == "reconstruction_error") {
    consumer = consumer_reconstruction_error(graph, deps, o, ctx);
    consumer.resize(deps.groups().size());
  } else {
    for (const auto& grp : deps.groups()) consumer.push_back(consumer_magnitude(graph, grp, c));
  }
  // Groups no consumer scores: by their producers (l2 standing in for reconstruction_error).
  std::vector<at::Tensor> producer;
  bool need_producer = o.score_from == "both";
  for (const auto& s : consumer) need_producer |= !s.defined();
  if (need_producer) {
    ImportanceOptions po = o;
    po.score_from = "producer";
    if (c == "reconstruction_error") po.criterion = "l2";
    producer = producer_importance(graph, deps, po, ctx);
  }
  auto normalized = [](const at::Tensor& s) { return s / (s.abs().mean() + 1e-12); };
  std::vector<at::Tensor> scores;
  for (size_t gi = 0; gi < consumer.size(); ++gi) {
    if (!consumer[gi].defined()) {
      if (fallback_groups) ++*fallback_groups;
      scores.push_back(producer[gi]);
    } else if (o.score_from == "both") {
      scores.push_back(normalized(producer[gi]) + normalized(consumer[gi]));
    } else {
      scores.push_back(consumer[gi]);
    }
  }
  return scores;
}

}  // namespace squeeze::compress
