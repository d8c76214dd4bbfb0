// Filter pruning (scored by the producing filters) against channel pruning (scored by the layers
// that read the channels), and the least-squares reconstruction of the consumers.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "compress/prune_test_util.h"
#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/importance.h"
#include "squeeze/compress/prune/reconstruct.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/compress/registry.h"
#include "squeeze/ir/builder.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "testing/asserts.h"
#include "testing/data.h"

namespace squeeze {
namespace {

using compress::DependencyGraph;
using compress::StructuredPrune;
using compress::StructuredPruneOptions;
using testing::random_input;
using testing::run_graph;

// Scores computed here from the weights in float64 against the pass's own: the same sums.
constexpr double kScoreTol = 1e-9;
// Weights re-fitted from float32 activations through float64 normal equations.
constexpr double kFitTol = 1e-4;

// input [3, 8, 8] -> conv a (4 filters) -> relu -> conv b (5) -> relu -> avgpool -> head (2).
ir::Graph two_conv(uint64_t seed = 11) {
  ir::GraphBuilder b("two_conv", seed);
  std::string x = b.input("input", {3, 8, 8});
  std::string a = b.act("Relu", b.conv(x, 4, 3, 1, 1, 1, true, "a"));
  std::string y = b.act("Relu", b.conv(a, 5, 3, 1, 1, 1, true, "b"));
  return b.finish({b.linear(b.flatten(b.global_avgpool(y)), 2, true, "head")});
}

const compress::ChannelGroup& group_of(const DependencyGraph& d, const std::string& producer) {
  for (const auto& g : d.groups())
    if (g.name == producer) return g;
  throw std::runtime_error("no group " + producer);
}

at::Tensor w64(const ir::Graph& g, const std::string& node) {
  return g.find_node(node)->param("weight").value.detach().to(at::kDouble);
}

compress::PassResult prune(const ir::Graph& g, StructuredPruneOptions o,
                           const data::Splits* data = nullptr) {
  compress::PassContext ctx = testing::pass_context(data, 32);
  return StructuredPrune(o).run(g, ctx);
}

// --- consumer scores ---

TEST(ChannelScores, ConsumerNormsEqualHandComputedOnTwoConvs) {
  ir::Graph g = two_conv();
  DependencyGraph d(g);
  ASSERT_EQ(d.groups().size(), 2u);
  compress::ImportanceOptions o;
  compress::PassContext ctx;
  o.score_from = "consumer";
  o.criterion = "l1";
  auto l1 = compress::channel_importance(g, d, o, ctx);
  o.criterion = "l2";
  auto l2 = compress::channel_importance(g, d, o, ctx);
  size_t ia = group_of(d, "a").id, ib = group_of(d, "b").id;
  // a's channels are read by b: the norm of b's input slice W_b[:, c, :, :].
  at::Tensor wb = w64(g, "b");
  EXPECT_TRUE(testing::tensors_close(l1[ia], wb.abs().sum({0, 2, 3}), kScoreTol, kScoreTol));
  EXPECT_TRUE(
      testing::tensors_close(l2[ia], wb.pow(2).sum({0, 2, 3}).sqrt(), kScoreTol, kScoreTol));
  // b's channels are read by the head, one column each after the pooling.
  at::Tensor wh = w64(g, "head");
  EXPECT_TRUE(testing::tensors_close(l1[ib], wh.abs().sum(0), kScoreTol, kScoreTol));
  EXPECT_TRUE(testing::tensors_close(l2[ib], wh.pow(2).sum(0).sqrt(), kScoreTol, kScoreTol));

  // Producer scores (the default) are the filters' own mean |w|, as before.
  o.score_from = "producer";
  o.criterion = "l1";
  auto p1 = compress::channel_importance(g, d, o, ctx);
  at::Tensor wa = w64(g, "a");
  EXPECT_TRUE(testing::tensors_close(p1[ia], wa.abs().mean({1, 2, 3}), kScoreTol, kScoreTol));

  // both: each side divided by its mean over the group, then added.
  o.score_from = "both";
  auto both = compress::channel_importance(g, d, o, ctx);
  at::Tensor want = p1[ia] / p1[ia].mean() + l1[ia] / l1[ia].mean();
  EXPECT_TRUE(testing::tensors_close(both[ia], want, 1e-9, 1e-9));
}

TEST(ChannelScores, ReconstructionErrorIsTheConsumersOutputChange) {
  ir::Graph g = two_conv();
  DependencyGraph d(g);
  data::Splits data = testing::random_splits({3, 8, 8}, 2, 16);
  compress::ImportanceOptions o;
  o.score_from = "consumer";
  o.criterion = "reconstruction_error";
  o.batches = 1;
  o.batch_size = 16;
  o.positions = 1000;  // more than the 64 positions: every position
  compress::PassContext ctx = testing::pass_context(&data, 16);
  auto s = compress::channel_importance(g, d, o, ctx);
  // By hand: b's output from channel c of a alone, squared, summed over b's outputs, averaged
  // over the 16 x 8 x 8 positions.
  at::NoGradGuard no_grad;
  const auto* na = g.find_node("a");
  const auto* nb = g.find_node("b");
  at::Tensor act = at::relu(at::conv2d(data.train.x.narrow(0, 0, 16), na->param("weight").value,
                                       na->param("bias").value, 1, 1));
  at::Tensor want = at::zeros({4}, at::kDouble);
  for (int64_t c = 0; c < 4; ++c) {
    at::Tensor change =
        at::conv2d(act.narrow(1, c, 1), nb->param("weight").value.narrow(1, c, 1), {}, 1, 1);
    want[c] = change.to(at::kDouble).pow(2).sum().item<double>() / (16.0 * 64.0);
  }
  EXPECT_TRUE(testing::tensors_close(s[group_of(d, "a").id], want, 1e-5, 1e-7));
}

TEST(ChannelScores, ConsumerAndProducerRemoveDifferentChannels) {
  ir::Graph g = two_conv();
  {
    at::NoGradGuard no_grad;
    g.find_node("a")->param("weight").value[1].mul_(0.01);            // a small filter
    g.find_node("b")->param("weight").value.select(1, 2).mul_(0.01);  // a channel b hardly reads
  }
  StructuredPruneOptions o;
  o.scope = "local";
  o.ratio = 0.25;  // one of a's 4 channels
  o.exclude = {"b"};
  const at::Tensor& wa = g.find_node("a")->param("weight").value;
  auto keeps = [&](const ir::Graph& small, std::vector<int64_t> kept) {
    return small.find_node("a")->param("weight").value.equal(wa.index_select(0, at::tensor(kept)));
  };
  o.granularity = "filter";  // the producers' filters: filter 1 goes
  auto filter = prune(g, o);
  EXPECT_TRUE(keeps(filter.graph, {0, 2, 3})) << filter.summary;
  EXPECT_NE(filter.summary.find("filter pruning"), std::string::npos) << filter.summary;
  o.granularity = "channel";  // default score_from producer: the same
  EXPECT_TRUE(keeps(prune(g, o).graph, {0, 2, 3}));
  o.score_from = "consumer";  // what b reads: channel 2 goes
  auto channel = prune(g, o);
  EXPECT_TRUE(keeps(channel.graph, {0, 1, 3})) << channel.summary;
  EXPECT_NE(channel.summary.find("of consumers"), std::string::npos) << channel.summary;
  // What b's output loses without each channel: channel 2 again (on a graph where only b's
  // reading of it is small, so that no filter of a is small).
  ir::Graph g2 = two_conv();
  {
    at::NoGradGuard no_grad;
    g2.find_node("b")->param("weight").value.select(1, 2).mul_(0.01);
  }
  o.score_from = "";
  o.criterion = "reconstruction_error";
  data::Splits data = testing::random_splits({3, 8, 8}, 2, 32);
  auto rec = prune(g2, o, &data);
  EXPECT_TRUE(rec.graph.find_node("a")->param("weight").value.equal(
      g2.find_node("a")->param("weight").value.index_select(0, at::tensor({0, 1, 3}))))
      << rec.summary;
}

TEST(ChannelScores, AttentionQueryKeyGroupsFallBackToProducers) {
  ir::Graph g = models::build("vit_tiny", {}, 0);
  StructuredPruneOptions o;
  o.score_from = "consumer";
  o.ratio = 0.3;
  auto r = prune(g, o);
  ASSERT_TRUE(r.changed);
  EXPECT_NE(r.summary.find("ranked by their producers"), std::string::npos) << r.summary;
  // A CNN has a consumer for every group: no such note.
  auto c = prune(models::build("resnet8", {}, 0), o);
  EXPECT_EQ(c.summary.find("ranked by their producers"), std::string::npos) << c.summary;
}

// --- reconstruction ---

// Inputs whose 6 channels mix 3 latent ones, so removed channels are predictable from the kept.
at::Tensor correlated(int64_t n, int64_t channels, int64_t hw, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor latent = at::randn({n, 3, hw, hw}, gen);
  at::Tensor mix = at::randn({channels, 3}, gen);
  return at::einsum("nlhw,cl->nchw", {latent, mix}) + 0.05 * at::randn({n, channels, hw, hw}, gen) +
         0.5;
}

TEST(Reconstruct, StrictlyLowersTheOutputErrorOfARandomLayer) {
  ir::GraphBuilder b("one_conv", 5);
  std::string x = b.input("input", {6, 8, 8});
  ir::Graph g = b.finish({b.conv(x, 7, 3, 1, 1, 1, true, "c")});
  const ir::Node& n = g.nodes.at(0);
  at::Tensor xin = correlated(32, 6, 8, 9);
  std::vector<int64_t> kept = {0, 2, 3, 5};
  at::Tensor w = n.param("weight").value, bias = n.param("bias").value;
  at::Tensor w_kept = w.index_select(1, at::tensor(kept));
  at::Tensor x_kept = xin.index_select(1, at::tensor(kept));
  // Fit on sampled positions.
  ir::Node small = n;
  small.param("weight").value = w_kept.clone();
  at::Tensor pos = compress::sample_positions(n, xin, 10, 1);
  EXPECT_EQ(pos.numel(), 32 * 10);
  at::Tensor target = compress::input_rows(n, xin, pos).mm(compress::weight_matrix(n).t()) + bias;
  compress::LayerFit fit(4 * 9, 7, true);
  fit.add(compress::input_rows(small, x_kept, pos), target);
  auto [w1, b1] = fit.solve(compress::weight_matrix(small), bias, 1e-3);
  double before = fit.error(compress::weight_matrix(small), bias), after = fit.error(w1, b1);
  EXPECT_LT(after, before);
  // On every position of the batch, not only the sampled ones.
  at::NoGradGuard no_grad;
  at::Tensor y = at::conv2d(xin, w, bias, 1, 1);
  double full_before = (at::conv2d(x_kept, w_kept, bias, 1, 1) - y).pow(2).mean().item<double>();
  double full_after =
      (at::conv2d(x_kept, w1.reshape({7, 4, 3, 3}), b1, 1, 1) - y).pow(2).mean().item<double>();
  EXPECT_LT(full_after, 0.5 * full_before) << full_before << " -> " << full_after;
  // The moments give the error a direct computation gives.
  at::Tensor direct =
      (compress::input_rows(small, x_kept, pos).mm(w1.t()) + b1 - target).pow(2).mean();
  EXPECT_NEAR(after, direct.item<double>(), 1e-4 * (1.0 + direct.item<double>()));
}

TEST(Reconstruct, ZeroRemovedChannelsChangeNothing) {
  ir::Graph g = two_conv();
  DependencyGraph d(g);
  const auto& ga = group_of(d, "a");
  std::map<int64_t, std::vector<int64_t>> removed = {{ga.id, {1, 3}}};
  testing::zero_units(g, ga, {1, 3});  // a's channels 1 and 3 are zero everywhere
  DependencyGraph dz(g);
  ir::Graph small = dz.prune(g, removed);
  ir::Graph before = small.clone();
  data::Splits data = testing::random_splits({3, 8, 8}, 2, 64);
  compress::ReconstructOptions ro;
  ro.batches = 2;
  ro.batch_size = 32;
  compress::PassContext ctx = testing::pass_context(&data, 32);
  auto s = compress::reconstruct(g, small, dz, removed, ro, ctx);
  EXPECT_EQ(s.layers, 1);  // b, the only layer reading a
  EXPECT_NEAR(s.error_before, 0.0, 1e-9);
  for (const char* p : {"weight", "bias"})
    EXPECT_TRUE(testing::tensors_close(small.find_node("b")->param(p).value,
                                       before.find_node("b")->param(p).value, kFitTol, kFitTol))
        << p;
  EXPECT_TRUE(small.find_node("head")->param("weight").value.equal(
      before.find_node("head")->param("weight").value));
}

TEST(Reconstruct, PassReFitsConsumersOnlyWhenAsked) {
  ir::Graph g = models::build("small_cnn", {}, 0);
  data::Splits data = testing::random_splits({1, 28, 28}, 10, 128);
  StructuredPruneOptions o;
  o.ratio = 0.5;
  o.batches = 2;
  auto plain = prune(g, o, &data);
  EXPECT_EQ(plain.summary.find("reconstructed"), std::string::npos);
  o.reconstruct = true;
  auto rec = prune(g, o, &data);
  EXPECT_NE(rec.summary.find("reconstructed"), std::string::npos) << rec.summary;
  // Same channels removed, so the same shapes; the consumers' weights differ.
  for (const char* n : {"conv1", "conv2", "fc1", "fc2"})
    EXPECT_EQ(rec.graph.find_node(n)->param("weight").value.sizes(),
              plain.graph.find_node(n)->param("weight").value.sizes());
  EXPECT_TRUE(rec.graph.find_node("conv1")->param("weight").value.equal(
      plain.graph.find_node("conv1")->param("weight").value));
  EXPECT_FALSE(rec.graph.find_node("fc2")->param("weight").value.equal(
      plain.graph.find_node("fc2")->param("weight").value));
  // The re-fitted network is closer to the unpruned one on the calibration images.
  at::Tensor x = data.train.x.narrow(0, 0, 64);
  at::Tensor y = run_graph(g, x);
  double err_plain = (run_graph(plain.graph, x) - y).pow(2).mean().item<double>();
  double err_rec = (run_graph(rec.graph, x) - y).pow(2).mean().item<double>();
  EXPECT_LT(err_rec, err_plain);
  // Only the layers asked for.
  o.reconstruction.layers = {"fc*"};
  auto some = prune(g, o, &data);
  EXPECT_TRUE(some.graph.find_node("conv2")->param("weight").value.equal(
      plain.graph.find_node("conv2")->param("weight").value));
  EXPECT_FALSE(some.graph.find_node("fc1")->param("weight").value.equal(
      plain.graph.find_node("fc1")->param("weight").value));
  // Without data there is nothing to fit on.
  EXPECT_THROW(prune(g, o), UserError);
}

TEST(Reconstruct, FoldsTheFittedBiasIntoTheFollowingBatchNorm) {
  ir::Graph g = models::build("resnet8", {{"input_size", "16"}}, 0);
  data::Splits data = testing::random_splits({3, 16, 16}, 10, 64);
  StructuredPruneOptions o;
  o.ratio = 0.4;
  o.batches = 2;
  auto plain = prune(g, o, &data);
  o.reconstruct = true;
  auto rec = prune(g, o, &data);
  // layer1_0_conv2 has no bias: its fitted one went into bn2's running mean.
  ASSERT_FALSE(rec.graph.find_node("layer1_0_conv2")->has_param("bias"));
  bool moved = false;
  for (const auto& n : rec.graph.nodes)
    if (n.op == "BatchNorm")
      moved |= !n.param("running_mean")
                    .value.equal(plain.graph.find_node(n.name)->param("running_mean").value);
  EXPECT_TRUE(moved);
  ASSERT_NO_THROW(ir::verify(rec.graph));
}

// --- every zoo graph ---

TEST(FilterChannel, BothKindsKeepEveryZooGraphValid) {
  struct Kind {
    std::string granularity, score_from, criterion;
    bool reconstruct;
  };
  const std::vector<Kind> kinds = {{"filter", "", "l1", false},
                                   {"channel", "consumer", "l1", false},
                                   {"channel", "both", "l2", false},
                                   {"channel", "", "reconstruction_error", true}};
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> zoo = {
      {"small_cnn", {}},
      {"lenet5", {}},
      {"resnet8", {}},
      {"resnet20", {}},
      {"mobilenet_v2_tiny", {}},
      {"resnet18", {{"input_size", "32"}, {"num_classes", "10"}}},
      {"mlp", {}},
      {"jet_tagger", {}},
      {"vit_tiny", {}}};
  for (const auto& [name, params] : zoo) {
    ir::Graph g = models::build(name, params, 0);
    std::vector<int64_t> sample(g.inputs[0].shape.begin() + 1, g.inputs[0].shape.end());
    data::Splits data = testing::random_splits(sample, g.shape_of(g.outputs[0]).back(), 16);
    at::Tensor x = random_input(g, 2);
    at::Tensor y0 = run_graph(g, x);
    for (const auto& k : kinds) {
      SCOPED_TRACE(name + " " + k.granularity + " " + k.score_from + " " + k.criterion);
      StructuredPruneOptions o;
      o.granularity = k.granularity;
      o.score_from = k.score_from;
      o.criterion = k.criterion;
      o.reconstruct = k.reconstruct;
      o.ratio = 0.3;
      o.batches = 1;
      auto r = prune(g, o, &data);
      ASSERT_TRUE(r.changed) << r.summary;
      ASSERT_NO_THROW(ir::verify(r.graph));
      at::Tensor y = run_graph(r.graph, x);
      EXPECT_EQ(y.sizes(), y0.sizes());
      EXPECT_TRUE(at::isfinite(y).all().item<bool>());
      EXPECT_LT(ir::graph_flops(r.graph), ir::graph_flops(g));
    }
  }
}

// --- options ---

TEST(FilterChannel, OptionsAcceptedAndRejected) {
  auto make = [](const std::string& params_yaml) {
    auto c = pipeline::parse_config(
        "model: {zoo: small_cnn}\nexperiments: [{stages: [{method: prune, params: " + params_yaml +
        "}]}]\n");
    try {
      auto pass = compress::find_method("prune")->make(*c.experiments[0].stages[0].params);
      auto* sp = dynamic_cast<StructuredPrune*>(pass.get());
      return sp ? std::string("accepted ") + sp->options().effective_score_from() +
                      (sp->options().reconstruct ? " reconstruct" : "")
                : std::string("other pass");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
  };
  EXPECT_EQ(make("{kind: structured}"), "accepted producer");
  EXPECT_EQ(make("{kind: structured, granularity: filter, criterion: fpgm}"), "accepted producer");
  EXPECT_EQ(make("{kind: structured, score_from: consumer, criterion: l2}"), "accepted consumer");
  EXPECT_EQ(make("{kind: structured, score_from: both}"), "accepted both");
  EXPECT_EQ(make("{kind: structured, criterion: reconstruction_error}"), "accepted consumer");
  EXPECT_EQ(make("{kind: structured, reconstruct: true, reconstruct_positions: 4, "
                 "reconstruct_layers: [Conv]}"),
            "accepted producer reconstruct");
  auto rejected = [&](const std::string& yaml, std::vector<std::string> words) {
    std::string m = make(yaml);
    EXPECT_EQ(m.rfind("accepted", 0), std::string::npos) << yaml;
    for (const auto& w : words) EXPECT_NE(m.find(w), std::string::npos) << w << " in: " << m;
  };
  rejected("{kind: structured, score_from: consumers}", {"score_from", "producer, consumer, both"});
  rejected("{kind: structured, granularity: filter, score_from: consumer}",
           {"experiments[0].stages[0].params", "granularity: channel, score_from: consumer"});
  rejected("{kind: structured, score_from: producer, criterion: reconstruction_error}",
           {"reconstruction_error", "score_from: consumer"});
  rejected("{kind: structured, score_from: consumer, criterion: fpgm}",
           {"fpgm", "l1, l2, reconstruction_error"});
  rejected("{kind: structured, score_from: both, criterion: taylor}", {"taylor", "l1, l2"});
  rejected("{kind: structured, granularity: head, score_from: consumer}",
           {"score_from", "granularity: channel"});
  rejected("{kind: structured, granularity: layer, reconstruct: true}",
           {"reconstruct", "channel or filter"});
  rejected("{kind: structured, reconstruct_positions: 5}",
           {"reconstruct_positions", "reconstruct: true"});
  rejected("{kind: structured, reconstruct: true, reconstruct_regularization: 0}",
           {"reconstruct_regularization"});
  rejected("{kind: structured, reconstruct: yes please}", {"reconstruct"});
}

TEST(FilterChannel, ExampleComparesTheThreeVariantsAtTheSameFlops) {
  auto cfg = pipeline::load_config(testing::source_dir() + "/examples/filter_vs_channel.yaml");
  ASSERT_EQ(cfg.experiments.size(), 3u);
  std::vector<std::string> kinds;
  for (const auto& e : cfg.experiments) {
    ASSERT_EQ(e.stages.size(), 1u);
    auto params = e.stages[0].params->clone();
    auto pass = compress::find_method(e.stages[0].method)->make(*params);
    auto* sp = dynamic_cast<StructuredPrune*>(pass.get());
    ASSERT_NE(sp, nullptr) << e.name;
    EXPECT_EQ(sp->options().target, "flops");
    EXPECT_DOUBLE_EQ(sp->options().ratio, 0.5);
    ASSERT_TRUE(e.stages[0].finetune.has_value()) << e.name;
    kinds.push_back(sp->options().effective_score_from() +
                    (sp->options().reconstruct ? "+reconstruct" : ""));
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"producer", "consumer", "consumer+reconstruct"}));
  EXPECT_EQ(cfg.model.zoo, "resnet20");
}

}  // namespace
}  // namespace squeeze
