#include "squeeze/compress/prune/reconstruct.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "squeeze/exec/executor.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

namespace {

// im2col of a few samples at a time keeps this many floats at most (about 32 MB).
constexpr int64_t kMaxPatchFloats = int64_t(8) << 20;

struct ConvGeometry {
  std::vector<int64_t> kernel, stride, dilation, padding;
  std::vector<int64_t> explicit_pad;  // asymmetric pads, in torch's (last dim first) order
  int64_t out_h = 0, out_w = 0;
};

ConvGeometry geometry(const ir::Node& n, const at::Tensor& x) {
  ConvGeometry g;
  const auto& w = n.param("weight").value;
  g.kernel = {w.size(2), w.size(3)};
  g.stride = n.attr_ints("strides", {1, 1});
  g.dilation = n.attr_ints("dilations", {1, 1});
  auto pads = n.attr_ints("pads", {0, 0, 0, 0});
  if (pads[0] == pads[2] && pads[1] == pads[3]) {
    g.padding = {pads[0], pads[1]};
  } else {
    g.padding = {0, 0};
    g.explicit_pad = {pads[1], pads[3], pads[0], pads[2]};
  }
  int64_t h = x.size(2) + pads[0] + pads[2], wd = x.size(3) + pads[1] + pads[3];
  g.out_h = (h - g.dilation[0] * (g.kernel[0] - 1) - 1) / g.stride[0] + 1;
  g.out_w = (wd - g.dilation[1] * (g.kernel[1] - 1) - 1) / g.stride[1] + 1;
  return g;
}

// Output positions per sample.
int64_t positions_per_sample(const ir::Node& n, const at::Tensor& x) {
  if (n.op == "Conv") {
    ConvGeometry g = geometry(n, x);
    return g.out_h * g.out_w;
  }
  return x.numel() / (x.size(0) * x.size(-1));
}

bool matches(const ir::Node& n, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns)
    if (p == n.name || p == n.op || glob_match(p, n.name)) return true;
  return false;
}

// The BatchNorm that alone reads node's output (its running mean can absorb a bias), or null.
ir::Node* sole_batchnorm(ir::Graph& g, const ir::Node& n) {
  const std::string& out = n.outputs[0];
  if (std::find(g.outputs.begin(), g.outputs.end(), out) != g.outputs.end()) return nullptr;
  auto users = g.consumers(out);
  if (users.size() != 1) return nullptr;
  ir::Node& bn = g.nodes[users[0]];
  if (bn.op != "BatchNorm" || !bn.has_param("running_mean")) return nullptr;
  return &bn;
}

// Values downstream of node `name` (its outputs and everything computed from them).
std::set<std::string> downstream(const ir::Graph& g, const std::string& name) {
  std::set<std::string> reach;
  bool on = false;
  for (const auto& n : g.nodes) {
    bool hit = n.name == name;
    if (!hit && on)
      for (const auto& in : n.inputs) hit |= reach.count(in) != 0;
    if (hit) {
      on = true;
      reach.insert(n.outputs.begin(), n.outputs.end());
    }
  }
  return reach;
}

// Runs g on x and returns the given values (graph inputs are returned as given).
std::vector<at::Tensor> capture(const ir::Graph& g, const at::Tensor& x,
                                const std::vector<std::string>& values) {
  ir::Graph h = g.clone();
  std::vector<int> slot(values.size(), -1);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] == h.inputs.at(0).name) continue;
    slot[i] = static_cast<int>(h.outputs.size());
    h.outputs.push_back(values[i]);
  }
  exec::Executor ex(h);
  auto outs = ex.run({x}, exec::Mode::kEval);
  std::vector<at::Tensor> got;
  for (size_t i = 0; i < values.size(); ++i) got.push_back(slot[i] < 0 ? x : outs[slot[i]]);
  return got;
}

}  // namespace

std::string refit_obstacle(const ir::Node& n) {
  if (n.op != "Conv" && n.op != "Linear") return msg("op ", n.op, " is not re-fitted");
  if (!n.has_param("weight")) return "no weight";
  const ir::Param& w = n.param("weight");
  if (n.op == "Conv" && w.value.dim() != 4) return msg(w.value.dim() - 2, "-D convolution");
  if (n.op == "Conv" && n.attr_int("group", 1) != 1) return "grouped convolution";
  if (n.op == "Linear" && w.value.dim() != 2) return "weight is not a matrix";
  if (w.mask) return "masked weight";
  if (w.qspec || (n.has_param("bias") && n.param("bias").qspec)) return "quantized";
  return "";
}

at::Tensor weight_matrix(const ir::Node& n) {
  const at::Tensor& w = n.param("weight").value;
  return w.detach().reshape({w.size(0), -1});
}

int64_t columns_per_input(const ir::Node& n) {
  const at::Tensor& w = n.param("weight").value;
  return n.op == "Conv" ? w.size(2) * w.size(3) : 1;
}

at::Tensor sample_positions(const ir::Node& n, const at::Tensor& x, int64_t per_sample,
                            uint64_t seed) {
  int64_t samples = x.size(0), per = positions_per_sample(n, x);
  if (per <= per_sample) return at::arange(samples * per, at::kLong);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < samples; ++i) {
    at::Tensor pick =
        std::get<0>(at::randperm(per, gen, at::kLong).narrow(0, 0, per_sample).sort());
    parts.push_back(pick + i * per);
  }
  return at::cat(parts);
}

at::Tensor input_rows(const ir::Node& n, const at::Tensor& x_in, const at::Tensor& positions) {
  at::Tensor x = x_in.detach().to(at::kFloat);
  if (n.op == "Linear") return x.reshape({-1, x.size(-1)}).index_select(0, positions);
  ConvGeometry g = geometry(n, x);
  if (!g.explicit_pad.empty()) x = at::constant_pad_nd(x, g.explicit_pad, 0.0);
  x = x.contiguous();
  int64_t per = g.out_h * g.out_w, features = x.size(1) * g.kernel[0] * g.kernel[1];
  int64_t chunk = std::max<int64_t>(1, kMaxPatchFloats / std::max<int64_t>(1, features * per));
  auto pos = positions.contiguous();
  const int64_t* p = pos.data_ptr<int64_t>();
  int64_t np = pos.numel(), at_pos = 0;
  std::vector<at::Tensor> parts;
  for (int64_t i0 = 0; i0 < x.size(0) && at_pos < np; i0 += chunk) {
    int64_t n_img = std::min(chunk, x.size(0) - i0), end = (i0 + n_img) * per;
    int64_t first = at_pos;
    while (at_pos < np && p[at_pos] < end) ++at_pos;
    if (at_pos == first) continue;
    at::Tensor cols = at::im2col(x.narrow(0, i0, n_img), g.kernel, g.dilation, g.padding, g.stride);
    at::Tensor flat = cols.transpose(1, 2).reshape({n_img * per, features});
    parts.push_back(flat.index_select(0, pos.narrow(0, first, at_pos - first) - i0 * per));
  }
  if (parts.empty()) return at::zeros({0, features});
  return at::cat(parts);
}

LayerFit::LayerFit(int64_t features, int64_t outputs, bool bias)
    : features_(features), outputs_(outputs), bias_(bias) {
  int64_t d = features + (bias ? 1 : 0);
  gram_ = at::zeros({d, d}, at::kDouble);
  cross_ = at::zeros({d, outputs}, at::kDouble);
}

void LayerFit::add(const at::Tensor& rows, const at::Tensor& target) {
  SQZ_ASSERT(
      rows.size(1) == features_ && target.size(1) == outputs_ && rows.size(0) == target.size(0),
      "LayerFit::add: rows ", rows.sizes(), ", target ", target.sizes());
  at::Tensor x = rows.detach().to(at::kDouble);
  if (bias_) x = at::cat({x, at::ones({x.size(0), 1}, at::kDouble)}, 1);
  at::Tensor t = target.detach().to(at::kDouble);
  gram_.add_(x.t().mm(x));
  cross_.add_(x.t().mm(t));
  target_sq_ += t.pow(2).sum().item<double>();
  rows_ += x.size(0);
}

namespace {

at::Tensor stacked(const at::Tensor& w, const at::Tensor& b, bool bias, int64_t outputs) {
  at::Tensor theta = w.detach().to(at::kDouble).t();
  if (!bias) return theta;
  at::Tensor bb = b.defined() ? b.detach().to(at::kDouble).reshape({1, outputs})
                              : at::zeros({1, outputs}, at::kDouble);
  return at::cat({theta, bb}, 0);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> LayerFit::solve(const at::Tensor& w0, const at::Tensor& b0,
                                                  double regularization) const {
  if (rows_ == 0) throw InternalError("LayerFit::solve before any rows were added");
  at::Tensor a = gram_ / double(rows_), c = cross_ / double(rows_);
  double scale = a.diagonal().mean().item<double>();
  double lambda = regularization * (scale > 0.0 ? scale : 1.0);
  at::Tensor theta0 = stacked(w0, b0, bias_, outputs_);
  at::Tensor lhs = a + lambda * at::eye(a.size(0), at::kDouble);
  at::Tensor theta = at::linalg_solve(lhs, c + lambda * theta0);
  at::Tensor w = theta.narrow(0, 0, features_).t().contiguous().to(at::kFloat);
  at::Tensor b = bias_ ? theta[features_].contiguous().to(at::kFloat) : at::Tensor();
  return {w, b};
}

double LayerFit::error(const at::Tensor& w, const at::Tensor& b) const {
  if (rows_ == 0) return 0.0;
  at::Tensor theta = stacked(w, b, bias_, outputs_);
  double sq = (theta * gram_.mm(theta)).sum().item<double>() -
              2.0 * (theta * cross_).sum().item<double>() + target_sq_;
  return std::max(0.0, sq) / double(rows_ * outputs_);
}

double LayerFit::target_power() const {
  return rows_ ? target_sq_ / double(rows_ * outputs_) : 0.0;
}

std::string ReconstructSummary::describe() const {
  std::string s = msg("reconstructed ", layers, layers == 1 ? " layer" : " layers");
  if (layers > 0)
    s += msg(" by least squares on ", with_commas(images), " calibration images, ", positions,
             " positions each (relative output error ", std::round(error_before * 1000.0) / 1000.0,
             " -> ", std::round(error_after * 1000.0) / 1000.0, ")");
  if (!skipped.empty()) s += msg("; not re-fitted: ", join(skipped, ", "));
  return s;
}

std::vector<int64_t> kept_indices(const DependencyGraph& deps,
                                  const std::map<int64_t, std::vector<int64_t>>& removed,
                                  const std::string& node, const std::string& param, int64_t axis,
                                  int64_t size) {
  std::vector<bool> gone(static_cast<size_t>(size), false);
  for (const auto& [gi, units] : removed)
    for (const auto& p : deps.groups()[gi].params)
      if (p.node == node && p.param == param && p.axis == axis)
        for (auto u : units)
          for (auto i : p.unit_indices[u]) gone[static_cast<size_t>(i)] = true;
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < size; ++i)
    if (!gone[static_cast<size_t>(i)]) kept.push_back(i);
  return kept;
}

ReconstructSummary reconstruct(const ir::Graph& original, ir::Graph& pruned,
                               const DependencyGraph& deps,
                               const std::map<int64_t, std::vector<int64_t>>& removed,
                               const ReconstructOptions& o, const PassContext& ctx) {
  ReconstructSummary summary;
  std::set<std::string> touched;
  for (const auto& [gi, units] : removed) {
    if (units.empty()) continue;
    for (const auto& p : deps.groups()[gi].params)
      if (p.role == ParamRole::kConsume) touched.insert(p.node);
  }
  struct Consumer {
    std::string name, input;
    std::vector<int64_t> kept_out;
    std::vector<at::Tensor> positions, targets;  // per batch
  };
  std::vector<Consumer> consumers;
  for (const auto& n : original.nodes) {
    if (!touched.count(n.name)) continue;
    if (!o.layers.empty() && !matches(n, o.layers)) continue;
    std::string why = refit_obstacle(n);
    if (!why.empty()) {
      summary.skipped.push_back(msg(n.name, " (", why, ")"));
      continue;
    }
    Consumer c;
    c.name = n.name;
    c.input = n.inputs[0];
    c.kept_out = kept_indices(deps, removed, n.name, "weight", 0, n.param("weight").value.size(0));
    consumers.push_back(std::move(c));
  }
  if (consumers.empty()) return summary;
  if (!ctx.data || ctx.data->train.size() == 0)
    throw UserError(
        "reconstruct: true re-fits layers on calibration batches of the training split, but the "
        "workflow has no data; add a data: block or remove reconstruct");

  at::NoGradGuard no_grad;
  const auto& train = ctx.data->train;
  int64_t bs = std::max<int64_t>(1, o.batch_size);
  std::vector<at::Tensor> batches;
  for (int64_t b = 0; b < o.batches && b * bs < train.size(); ++b)
    batches.push_back(train.inputs(b * bs, std::min(bs, train.size() - b * bs)));

  // Targets: the unpruned layers' outputs (kept output channels) at sampled positions.
  std::vector<std::string> inputs;
  for (const auto& c : consumers) inputs.push_back(c.input);
  for (size_t b = 0; b < batches.size(); ++b) {
    auto xs = capture(original, batches[b], inputs);
    for (size_t k = 0; k < consumers.size(); ++k) {
      Consumer& c = consumers[k];
      const ir::Node& n = *original.find_node(c.name);
      at::Tensor pos = sample_positions(n, xs[k], o.positions, o.seed + 7919 * b + 104729 * k);
      at::Tensor t = input_rows(n, xs[k], pos).mm(weight_matrix(n).t());
      if (n.has_param("bias")) t = t + n.param("bias").value.detach();
      c.positions.push_back(pos);
      c.targets.push_back(t.index_select(1, at::tensor(c.kept_out, at::kLong)));
    }
  }

  // In topological order, each wave of consumers whose inputs do not depend on one another is
  // fitted on one run of the pruned graph as re-fitted so far.
  double before = 0.0, after = 0.0;
  size_t k0 = 0;
  while (k0 < consumers.size()) {
    size_t k1 = k0 + 1;
    while (k1 < consumers.size()) {
      bool dependent = false;
      for (size_t j = k0; j < k1 && !dependent; ++j)
        dependent = downstream(pruned, consumers[j].name).count(consumers[k1].input) != 0;
      if (dependent) break;
      ++k1;
    }
    std::vector<std::string> wave_inputs;
    std::vector<LayerFit> fits;
    for (size_t k = k0; k < k1; ++k) {
      ir::Node& n = *pruned.find_node(consumers[k].name);
      bool bias = n.has_param("bias") || sole_batchnorm(pruned, n) != nullptr;
      at::Tensor w = weight_matrix(n);
      fits.emplace_back(w.size(1), w.size(0), bias);
      wave_inputs.push_back(consumers[k].input);
    }
    for (size_t b = 0; b < batches.size(); ++b) {
      auto xs = capture(pruned, batches[b], wave_inputs);
      for (size_t k = k0; k < k1; ++k) {
        const ir::Node& n = *pruned.find_node(consumers[k].name);
        fits[k - k0].add(input_rows(n, xs[k - k0], consumers[k].positions[b]),
                         consumers[k].targets[b]);
      }
    }
    for (size_t k = k0; k < k1; ++k) {
      ir::Node& n = *pruned.find_node(consumers[k].name);
      const LayerFit& fit = fits[k - k0];
      ir::Node* bn = n.has_param("bias") ? nullptr : sole_batchnorm(pruned, n);
      at::Tensor w0 = weight_matrix(n);
      at::Tensor b0 = n.has_param("bias") ? n.param("bias").value.detach() : at::Tensor();
      auto [w, b] = fit.solve(w0, b0, o.regularization);
      double power = fit.target_power(), norm = power > 0.0 ? power : 1.0;
      before += fit.error(w0, b0) / norm;
      after += fit.error(w, b) / norm;
      at::Tensor& wv = n.param("weight").value;
      wv.copy_(w.reshape(wv.sizes()));
      if (n.has_param("bias")) {
        n.param("bias").value.copy_(b);
      } else if (bn) {
        // BatchNorm(y + d) with running mean m equals BatchNorm(y) with running mean m - d.
        bn->param("running_mean").value.sub_(b.to(bn->param("running_mean").value.dtype()));
      }
      ++summary.layers;
    }
    k0 = k1;
  }
  summary.images = 0;
  for (const auto& x : batches) summary.images += x.size(0);
  summary.positions = o.positions;
  summary.error_before = before / double(summary.layers);
  summary.error_after = after / double(summary.layers);
  return summary;
}

}  // namespace squeeze::compress
