#include "squeeze/compress/prune/layer_prune.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "squeeze/ir/ops.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

namespace {

bool is_graph_output(const ir::Graph& g, const std::string& v) {
  return std::find(g.outputs.begin(), g.outputs.end(), v) != g.outputs.end();
}

bool has_weights(const ir::Node& n) { return n.op == "Conv" || n.op == "Linear" || n.op == "MatMul"; }

// The nodes computing `b` from `a` alone (and constants); empty if `b` needs anything else.
std::vector<size_t> branch_from(const ir::Graph& g, const std::map<std::string, size_t>& producer,
                                const std::string& a, const std::string& b) {
  std::set<size_t> nodes;
  std::vector<std::string> stack{b};
  bool reached = false;
  std::set<std::string> seen;
  while (!stack.empty()) {
    std::string v = stack.back();
    stack.pop_back();
    if (!seen.insert(v).second) continue;
    if (v == a) {
      reached = true;
      continue;
    }
    auto it = producer.find(v);
    if (it == producer.end()) return {};  // a graph input other than a
    nodes.insert(it->second);
    for (const auto& in : g.nodes[it->second].inputs) stack.push_back(in);
  }
  if (!reached) return {};
  // Nothing outside the branch may read its values (except b, read by the Add).
  for (size_t i : nodes)
    for (const auto& out : g.nodes[i].outputs) {
      if (out == b) continue;
      if (is_graph_output(g, out)) return {};
      for (size_t c : g.consumers(out))
        if (!nodes.count(c)) return {};
    }
  return std::vector<size_t>(nodes.begin(), nodes.end());
}

}  // namespace

std::vector<RemovableBlock> removable_blocks(const ir::Graph& graph) {
  std::vector<RemovableBlock> blocks;
  std::map<std::string, size_t> producer;
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    for (const auto& o : graph.nodes[i].outputs) producer[o] = i;
  std::set<size_t> in_residual;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const ir::Node& n = graph.nodes[i];
    if (n.op != "Add" || n.inputs.size() != 2 || n.inputs[0] == n.inputs[1]) continue;
    for (int k = 0; k < 2; ++k) {
      const std::string& a = n.inputs[k];
      const std::string& b = n.inputs[1 - k];
      if (graph.shape_of(a) != graph.shape_of(n.outputs[0])) continue;
      auto branch = branch_from(graph, producer, a, b);
      bool weighted = false;
      for (size_t j : branch) weighted |= has_weights(graph.nodes[j]);
      if (branch.empty() || !weighted) continue;
      RemovableBlock blk;
      blk.kind = "residual";
      blk.name = graph.nodes[branch.front()].name;
      blk.output = n.outputs[0];
      blk.replacement = a;
      for (size_t j : branch) {
        blk.nodes.push_back(graph.nodes[j].name);
        in_residual.insert(j);
      }
      blk.nodes.push_back(n.name);
      blocks.push_back(blk);
      break;
    }
  }
  // Transformer encoder layers: an attention sub-block (a Softmax in its branch) whose output is
  // the shortcut of the next residual sub-block (the MLP) is removed together with it.
  std::vector<RemovableBlock> merged;
  for (size_t i = 0; i < blocks.size(); ++i) {
    bool attention = false;
    for (const auto& name : blocks[i].nodes) attention |= graph.find_node(name)->op == "Softmax";
    if (attention && i + 1 < blocks.size() && blocks[i + 1].replacement == blocks[i].output) {
      RemovableBlock e = blocks[i];
      e.kind = "encoder";
      e.output = blocks[i + 1].output;
      e.nodes.insert(e.nodes.end(), blocks[i + 1].nodes.begin(), blocks[i + 1].nodes.end());
      merged.push_back(e);
      ++i;
      continue;
    }
    merged.push_back(blocks[i]);
  }
  blocks = merged;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const ir::Node& n = graph.nodes[i];
    if ((n.op != "Conv" && n.op != "Linear") || n.inputs.size() != 1 || in_residual.count(i)) continue;
    if (graph.shape_of(n.inputs[0]) != graph.shape_of(n.outputs[0])) continue;
    RemovableBlock blk;
    blk.kind = "layer";
    blk.name = n.name;
    blk.replacement = n.inputs[0];
    blk.output = n.outputs[0];
    blk.nodes.push_back(n.name);
    auto cons = graph.consumers(n.outputs[0]);
    if (cons.size() == 1 && graph.nodes[cons[0]].op == "BatchNorm" && !is_graph_output(graph, n.outputs[0])) {
      blk.output = graph.nodes[cons[0]].outputs[0];
      blk.nodes.push_back(graph.nodes[cons[0]].name);
    }
    if (is_graph_output(graph, blk.output)) continue;
    blocks.push_back(blk);
  }
  std::map<std::string, size_t> order;
  for (size_t i = 0; i < graph.nodes.size(); ++i) order[graph.nodes[i].name] = i;
  std::stable_sort(blocks.begin(), blocks.end(), [&](const RemovableBlock& x, const RemovableBlock& y) {
    return order[x.name] < order[y.name];
  });
  return blocks;
}

ir::Graph remove_blocks(const ir::Graph& graph, const std::vector<RemovableBlock>& blocks) {
  ir::Graph g = graph.clone();
  for (const auto& blk : blocks) {
    bool present = true;
    for (const auto& name : blk.nodes) present &= g.find_node(name) != nullptr;
    if (!present || !g.producer(blk.output)) continue;
    ir::replace_uses(g, blk.output, blk.replacement);
    ir::remove_dead_nodes(g);
  }
  ir::verify(g);
  return g;
}

LayerPrune::LayerPrune(StructuredPruneOptions options) : options_(std::move(options)) {
  options_.validate();
  SQZ_ASSERT(options_.granularity == "layer");
}

std::vector<double> LayerPrune::scores(const ir::Graph& graph, const std::vector<RemovableBlock>& blocks,
                                       const PassContext& ctx) const {
  std::string c = options_.effective_criterion();
  std::vector<double> out;
  if (c == "random") {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed + ctx.seed);
    at::Tensor r = at::rand({static_cast<int64_t>(blocks.size())}, gen, at::kDouble);
    for (int64_t i = 0; i < r.size(0); ++i) out.push_back(r[i].item<double>());
    return out;
  }
  if (c == "l1") {
    for (const auto& blk : blocks) {
      double sum = 0.0;
      int64_t count = 0;
      for (const auto& name : blk.nodes) {
        const ir::Node* n = graph.find_node(name);
        if (!n->has_param("weight") || !has_weights(*n)) continue;
        sum += n->param("weight").value.abs().sum().item<double>();
        count += n->param("weight").value.numel();
      }
      out.push_back(count ? sum / double(count) : 0.0);
    }
    return out;
  }
  // accuracy: the validation accuracy lost when the block alone is an identity.
  if (!ctx.data || ctx.data->num_classes <= 0 || (ctx.data->val.size() == 0 && ctx.data->train.size() == 0))
    throw UserError("granularity layer with criterion accuracy needs data (it measures the accuracy lost without "
                    "each block); add a data: block or use criterion l1 or random");
  const data::Dataset& full = ctx.data->val.size() > 0 ? ctx.data->val : ctx.data->train;
  int64_t bs = std::max<int64_t>(1, std::min<int64_t>(ctx.batch_size, 256));
  data::Dataset sample = full.head(options_.batches * bs);
  ir::Graph base = graph.clone();
  double acc0 = train::evaluate(base, sample, bs).accuracy;
  for (const auto& blk : blocks) {
    ir::Graph g = remove_blocks(graph, {blk});
    out.push_back(acc0 - train::evaluate(g, sample, bs).accuracy);
  }
  return out;
}

PassResult LayerPrune::run(const ir::Graph& graph, PassContext& ctx) {
  PassResult result{graph.clone(), "", false};
  ir::infer_shapes(result.graph);
  auto blocks = removable_blocks(result.graph);
  if (blocks.empty()) {
    result.summary = "nothing to prune: no residual block or shape-preserving layer can become an identity";
    return result;
  }
  auto s = scores(result.graph, blocks, ctx);
  std::vector<size_t> order(blocks.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] < s[b]; });
  std::vector<RemovableBlock> chosen;
  std::vector<std::string> names;
  for (size_t i : order) {
    bool take = options_.threshold >= 0.0 ? s[i] <= options_.threshold
                                          : static_cast<int64_t>(chosen.size()) < options_.layers;
    if (!take) continue;
    chosen.push_back(blocks[i]);
    names.push_back(msg(blocks[i].name, " (", blocks[i].kind, ", score ", std::round(s[i] * 1e4) / 1e4, ")"));
  }
  int64_t flops0 = ir::graph_flops(result.graph), params0 = result.graph.num_params();
  if (!chosen.empty()) result.graph = remove_blocks(result.graph, chosen);
  int64_t flops1 = ir::graph_flops(result.graph), params1 = result.graph.num_params();
  result.changed = !chosen.empty();
  result.summary = msg("layer pruning (", options_.effective_criterion(), "): removed ", chosen.size(), " of ",
                       blocks.size(), " removable blocks", names.empty() ? "" : msg(": ", join(names, ", ")),
                       "; params ", with_commas(params0), " -> ", with_commas(params1), ", FLOPs ",
                       with_commas(flops0), " -> ", with_commas(flops1));
  return result;
}

}  // namespace squeeze::compress
