// Does structured pruning make models faster? For resnet20 and small_cnn, prunes 50% of the
// channels (L1, global) and also to half the FLOPs, then measures latency of the original and the
// pruned graphs interleaved in one run (deploy::measure_latency) at batch 1 and batch 64, and
// prints FLOPs ratio vs measured speedup. Target (issue 4): at 50% channel pruning the batch-64
// speedup is at least 0.8x the FLOPs ratio.
//   structured_speed [threads] [budget_s] [profile] [export=DIR]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/deploy/torchscript.h"
#include "squeeze/ir/ops.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/env.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/log.h"

int main(int argc, char** argv) {
  squeeze::env::use_native_blas_kernels(argv);
  using namespace squeeze;
  int threads = argc > 1 ? std::stoi(argv[1]) : 2;
  double budget = argc > 2 ? std::stod(argv[2]) : 3.0;
  // "profile": also time by op type at batch 64 and the convolutions' own speedup.
  // "export=DIR": also write each baseline and pruned graph as TorchScript for structured_speed.py.
  bool profile = false;
  std::string export_dir;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "profile") profile = true;
    if (a.rfind("export=", 0) == 0) export_dir = a.substr(7);
  }
  env::set_threads(threads);
  env::keep_freed_memory();
  log::set_level(log::Level::kWarn);
  struct Case {
    std::string model, target;
    double ratio;
    int64_t round_to;
    std::string scope = "global";
    std::map<std::string, std::string> params = {};
  };
  // round_to 8: channel counts that are multiples of 8 suit the vectorized conv kernels.
  // local: every layer keeps half its channels (the counts stay multiples of 8 or 16 on these
  // models); global: one ranking across layers, which leaves uneven counts (17, 31, 33, ...).
  const std::vector<Case> cases = {{"resnet20", "channels", 0.5, 1, "local"}, {"small_cnn", "channels", 0.5, 1, "local"},
                                   {"resnet20", "channels", 0.5, 1}, {"small_cnn", "channels", 0.5, 1},
                                   {"resnet20", "channels", 0.5, 8}, {"small_cnn", "channels", 0.5, 8},
                                   {"resnet20", "flops", 0.5, 1},    {"small_cnn", "flops", 0.5, 1},
                                   // 4x wider: the pruned layers keep 32-128 channels.
                                   {"resnet20", "channels", 0.5, 1, "local", {{"channels", "64"}}}};
  std::printf("%-10s %-34s %10s %10s %9s %12s %12s %9s %12s %12s %9s %9s\n", "model", "pruning", "params",
              "MFLOPs", "FLOPs x", "b1 base us", "b1 pruned us", "b1 x", "b64 base us", "b64 pruned us",
              "b64 x", "b64/FLOPs");
  std::string shapes;  // kept output channels per pruned layer, printed after the table
  std::string exported;  // index of the TorchScript files: stem, tab, label
  for (const auto& c : cases) {
    ir::Graph g = models::build(c.model, c.params, 0);
    compress::StructuredPruneOptions o;
    o.ratio = c.ratio;
    o.target = c.target;
    o.round_to = c.round_to;
    o.scope = c.scope;
    compress::PassContext ctx;
    ir::Graph p = compress::StructuredPrune(o).run(g, ctx).graph;
    shapes += c.model + " (" + c.target + ", " + c.scope + ", round_to " + std::to_string(c.round_to) + "):";
    for (const auto& n : p.nodes)
      if (n.has_param("weight") && (n.op == "Conv" || n.op == "Linear")) {
        int64_t before = g.find_node(n.name)->param("weight").value.size(0);
        int64_t after = n.param("weight").value.size(0);
        if (after != before) shapes += " " + n.name + " " + std::to_string(before) + "->" + std::to_string(after);
      }
    shapes += "\n";
    double flops_ratio = double(ir::graph_flops(g)) / double(ir::graph_flops(p));
    deploy::LatencyOptions lo;
    lo.budget_s = budget;
    auto b1 = deploy::measure_latency({&g, &p}, 1, lo);
    auto b64 = deploy::measure_latency({&g, &p}, 64, lo);
    double s1 = b1[0].median_us / b1[1].median_us, s64 = b64[0].median_us / b64[1].median_us;
    std::string label = c.target == "flops" ? "50% of FLOPs" : "50% of channels";
    if (c.round_to > 1) label += " r" + std::to_string(c.round_to);
    if (c.scope == "local") label += " local";
    for (const auto& [k, v] : c.params) label += " " + k + "=" + v;
    if (!export_dir.empty()) {
      std::string stem = export_dir + "/" + c.model + "_" + c.target + "_" + c.scope + "_r" + std::to_string(c.round_to);
      for (const auto& [k, v] : c.params) stem += "_" + k + v;
      deploy::export_torchscript(g, stem + "_base.pt");
      deploy::export_torchscript(p, stem + "_pruned.pt");
      exported += stem + "\t" + c.model + " " + label + "\n";
    }
    if (profile) {
      // The convolutions alone: how much of the FLOPs cut libtorch's conv kernels turn into time.
      double conv_us[2] = {0, 0}, conv_flops[2] = {0, 0};
      for (int k = 0; k < 2; ++k) {
        const ir::Graph& m = k == 0 ? g : p;
        std::printf("  %s %s, batch 64:", c.model.c_str(), k == 0 ? "baseline" : "pruned");
        for (const auto& t : deploy::profile_ops(m, 64)) {
          std::printf("  %s %.0f us", t.op.c_str(), t.us);
          if (t.op == "Conv") conv_us[k] = t.us;
        }
        std::printf("\n");
        for (const auto& n : m.nodes)
          if (n.op == "Conv") conv_flops[k] += double(ir::node_flops(m, n));
      }
      double fr = conv_flops[0] / conv_flops[1], sp = conv_us[0] / conv_us[1];
      std::printf("  convolutions only: FLOPs %.2fx, time %.2fx, ratio %.2f\n", fr, sp, sp / fr);
    }
    std::printf("%-10s %-34s %10lld %10.2f %9.2f %12.1f %12.1f %9.2f %12.1f %12.1f %9.2f %9.2f\n", c.model.c_str(),
                label.c_str(), (long long)p.num_params(), ir::graph_flops(p) / 1e6, flops_ratio, b1[0].median_us,
                b1[1].median_us, s1, b64[0].median_us, b64[1].median_us, s64, s64 / flops_ratio);
  }
  std::printf("threads: %d\n%s", at::get_num_threads(), shapes.c_str());
  if (!export_dir.empty()) squeeze::write_text_atomic(export_dir + "/index.tsv", exported);
  return 0;
}
