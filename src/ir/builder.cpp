#include "squeeze/ir/builder.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "squeeze/ir/ops.h"
#include "squeeze/util/error.h"

namespace squeeze::ir {

GraphBuilder::GraphBuilder(std::string graph_name, uint64_t seed)
    : gen_(at::make_generator<at::CPUGeneratorImpl>(seed)) {
  graph_.name = std::move(graph_name);
}

std::string GraphBuilder::fresh(const std::string& prefix) {
  std::string base = prefix;
  for (auto& c : base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return base + std::to_string(++counters_[base]);
}

std::string GraphBuilder::input(const std::string& name, const Shape& sample_shape) {
  Shape s{kDynamic};
  s.insert(s.end(), sample_shape.begin(), sample_shape.end());
  graph_.inputs.push_back({name, s, at::kFloat});
  graph_.shapes[name] = s;
  return name;
}

const Shape& GraphBuilder::shape(const std::string& value) const { return graph_.shape_of(value); }

at::Tensor GraphBuilder::init_weight(const std::vector<int64_t>& shape, int64_t fan_in) {
  double bound = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fan_in, 1)));
  return at::empty(shape, at::kFloat).uniform_(-bound, bound, gen_);
}

std::string GraphBuilder::node(const std::string& op, const std::vector<std::string>& inputs,
                               std::map<std::string, Attr> attrs, std::map<std::string, Param> params,
                               const std::string& name, int num_outputs) {
  Node n;
  n.op = op;
  n.name = name.empty() ? fresh(op) : name;
  if (graph_.find_node(n.name)) throw GraphError(msg("builder: node name '", n.name, "' used twice"));
  n.inputs = inputs;
  n.attrs = std::move(attrs);
  n.params = std::move(params);
  for (int i = 0; i < num_outputs; ++i) n.outputs.push_back(num_outputs == 1 ? n.name : n.name + ":" + std::to_string(i));
  std::vector<Shape> in_shapes;
  for (const auto& v : inputs) in_shapes.push_back(shape(v));
  auto out = op_def(op).infer(n, in_shapes);
  for (size_t i = 0; i < out.size(); ++i) graph_.shapes[n.outputs[i]] = out[i];
  graph_.nodes.push_back(std::move(n));
  return graph_.nodes.back().outputs[0];
}

std::string GraphBuilder::conv(const std::string& x, int64_t out_channels, int64_t kernel, int64_t stride,
                               int64_t padding, int64_t groups, bool bias, const std::string& name) {
  const Shape& s = shape(x);
  size_t nd = s.size() - 2;
  int64_t in_ch = s[1];
  std::vector<int64_t> wshape{out_channels, in_ch / groups};
  int64_t fan_in = in_ch / groups;
  for (size_t i = 0; i < nd; ++i) {
    wshape.push_back(kernel);
    fan_in *= kernel;
  }
  std::map<std::string, Param> params;
  params["weight"].value = init_weight(wshape, fan_in);
  if (bias) params["bias"].value = init_weight({out_channels}, fan_in);
  std::map<std::string, Attr> attrs;
  attrs["strides"] = std::vector<int64_t>(nd, stride);
  attrs["pads"] = std::vector<int64_t>(2 * nd, padding);
  attrs["dilations"] = std::vector<int64_t>(nd, 1);
  attrs["group"] = groups;
  return node("Conv", {x}, attrs, params, name);
}

std::string GraphBuilder::linear(const std::string& x, int64_t out_features, bool bias, const std::string& name) {
  int64_t in = shape(x).back();
  std::map<std::string, Param> params;
  params["weight"].value = init_weight({out_features, in}, in);
  if (bias) params["bias"].value = init_weight({out_features}, in);
  return node("Linear", {x}, {}, params, name);
}

std::string GraphBuilder::batchnorm(const std::string& x, const std::string& name) {
  int64_t c = channels(x);
  std::map<std::string, Param> params;
  params["weight"].value = at::ones({c});
  params["bias"].value = at::zeros({c});
  params["running_mean"] = Param{at::zeros({c}), std::nullopt, std::nullopt, false};
  params["running_var"] = Param{at::ones({c}), std::nullopt, std::nullopt, false};
  return node("BatchNorm", {x}, {{"epsilon", 1e-5}, {"momentum", 0.1}}, params, name);
}

std::string GraphBuilder::layernorm(const std::string& x, const std::string& name) {
  int64_t c = shape(x).back();
  std::map<std::string, Param> params;
  params["weight"].value = at::ones({c});
  params["bias"].value = at::zeros({c});
  return node("LayerNorm", {x}, {{"axis", int64_t{-1}}, {"epsilon", 1e-5}}, params, name);
}

std::string GraphBuilder::act(const std::string& op, const std::string& x, const std::string& name) {
  return node(op, {x}, {}, {}, name);
}

std::string GraphBuilder::maxpool(const std::string& x, int64_t kernel, int64_t stride, int64_t padding) {
  size_t nd = shape(x).size() - 2;
  return node("MaxPool", {x},
              {{"kernel_shape", std::vector<int64_t>(nd, kernel)},
               {"strides", std::vector<int64_t>(nd, stride)},
               {"pads", std::vector<int64_t>(2 * nd, padding)}});
}

std::string GraphBuilder::avgpool(const std::string& x, int64_t kernel, int64_t stride, int64_t padding) {
  size_t nd = shape(x).size() - 2;
  return node("AvgPool", {x},
              {{"kernel_shape", std::vector<int64_t>(nd, kernel)},
               {"strides", std::vector<int64_t>(nd, stride)},
               {"pads", std::vector<int64_t>(2 * nd, padding)}});
}

std::string GraphBuilder::global_avgpool(const std::string& x) { return node("GlobalAvgPool", {x}); }
std::string GraphBuilder::flatten(const std::string& x) { return node("Flatten", {x}, {{"axis", int64_t{1}}}); }
std::string GraphBuilder::dropout(const std::string& x, double ratio) {
  return node("Dropout", {x}, {{"ratio", ratio}});
}
std::string GraphBuilder::add(const std::string& a, const std::string& b) { return node("Add", {a, b}); }
std::string GraphBuilder::concat(const std::vector<std::string>& xs, int64_t axis) {
  return node("Concat", xs, {{"axis", axis}});
}

Graph GraphBuilder::finish(const std::vector<std::string>& outputs) {
  graph_.outputs = outputs;
  verify(graph_);
  return std::move(graph_);
}

}  // namespace squeeze::ir
