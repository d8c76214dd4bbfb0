// squeeze as a latency worker for bench/torchvision_latency.py, with the protocol of
// bench/ort_worker.js (one command per line in, one JSON line out), so that the driver can
// interleave squeeze's runs with PyTorch's and ONNX Runtime's on the same machine and threads.
//
//   load ID MODEL THREADS        -> {"ok": true, "convs": {"brgconv:avx512_core": 18, ...}, "isa": "..."}
//   run ID N DIM0,DIM1,...       -> {"us": [t1, ..., tN]}   (N timed runs on one random input)
//   prune ID NEW_ID RATIO SCOPE OUT_PREFIX
//                                -> structured pruning of ID (L1, RATIO of the channels, SCOPE local or
//                                   global), loaded as NEW_ID and written as OUT_PREFIX.onnx and .pt;
//                                   {"ok": true, "flops": F, "pruned_flops": F2, "prune_s": S}
//   quit
// Models are executed as `squeeze bench` does (exec::Executor, eval, no autograd).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/deploy/torchscript.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/io/model_io.h"
#include "squeeze/io/onnx.h"
#include "squeeze/ir/ops.h"
#include "squeeze/util/env.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"

namespace {

using namespace squeeze;

struct Model {
  std::unique_ptr<ir::Graph> graph;
  std::unique_ptr<exec::Executor> executor;
};

std::vector<int64_t> parse_dims(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) out.push_back(std::stoll(x));
  return out;
}

void bind(Model& m) { m.executor = std::make_unique<exec::Executor>(*m.graph); }

}  // namespace

int main(int argc, char** argv) {
  env::use_native_blas_kernels(argv);
  env::keep_freed_memory();
  log::set_level(log::Level::kWarn);
  at::NoGradGuard no_grad;
  std::map<std::string, Model> models;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::stringstream words(line);
    std::string cmd, id;
    words >> cmd >> id;
    if (cmd.empty()) continue;
    nlohmann::json reply;
    try {
      if (cmd == "quit") break;
      if (cmd == "load") {
        std::string path;
        int threads = 1;
        words >> path >> threads;
        env::set_threads(threads);
        Model m;
        m.graph = std::make_unique<ir::Graph>(io::load_model(path));
        bind(m);
        models[id] = std::move(m);
        reply = {{"ok", true}, {"isa", quant::int8_probe().isa}};
      } else if (cmd == "run") {
        Model& m = models.at(id);
        int64_t runs = 0;
        std::string dims;
        words >> runs >> dims;
        at::Tensor x = at::randn(parse_dims(dims));
        std::vector<double> us;
        for (int64_t i = 0; i < runs; ++i) {
          auto t0 = std::chrono::steady_clock::now();
          m.executor->forward(x);
          us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
        }
        reply = {{"us", us}, {"convs", m.executor->conv_implementations()}};
      } else if (cmd == "prune") {
        std::string new_id, scope, prefix;
        double ratio = 0.5;
        words >> new_id >> ratio >> scope >> prefix;
        const ir::Graph& g = *models.at(id).graph;
        compress::StructuredPruneOptions o;
        o.ratio = ratio;
        o.target = "channels";
        o.scope = scope;
        compress::PassContext ctx;
        auto t0 = std::chrono::steady_clock::now();
        Model p;
        p.graph = std::make_unique<ir::Graph>(compress::StructuredPrune(o).run(g, ctx).graph);
        double prune_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        io::export_onnx(*p.graph, prefix + ".onnx");
        deploy::export_torchscript(*p.graph, prefix + ".pt");
        reply = {{"ok", true},
                 {"flops", ir::graph_flops(g)},
                 {"pruned_flops", ir::graph_flops(*p.graph)},
                 {"params", g.num_params()},
                 {"pruned_params", p.graph->num_params()},
                 {"prune_s", prune_s}};
        bind(p);
        models[new_id] = std::move(p);
      } else if (cmd == "torchscript") {
        std::string path;
        words >> path;
        deploy::export_torchscript(*models.at(id).graph, path);
        reply = {{"ok", true}};
      } else {
        reply = {{"error", "unknown command '" + cmd + "'"}};
      }
    } catch (const std::exception& e) {
      reply = {{"error", e.what()}};
    }
    std::cout << reply.dump() << std::endl;
  }
  return 0;
}
