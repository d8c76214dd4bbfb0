// int8 against float inference, in one run: small_cnn and resnet20 from the zoo, float (as built,
// and with BatchNorm folded) and int8 PTQ (per-channel weights, uint8 activations, libtorch's
// ONEDNN quantized kernels) and dynamic int8 (Linear layers quantize their input per batch), at
// batch 1 and 64, measured interleaved by deploy::measure_latency.
// Then PyTorch's own float / static int8 (FX) / dynamic int8 on the same architectures, via
// bench/quant_speed.py (Debian's /usr/bin/python3 with python3-torch), same thread count.
//
//   build/bench/quant_speed [--threads N] [--budget SECONDS] [--no-python]
#include <ATen/ATen.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/exec/int8.h"
#include "squeeze/models/zoo.h"
#include "squeeze/report/report.h"
#include "squeeze/util/env.h"

using namespace squeeze;

namespace {

data::Splits random_calibration(const std::vector<int64_t>& shape) {
  data::Splits s;
  std::vector<int64_t> full = {256};
  full.insert(full.end(), shape.begin(), shape.end());
  s.train.x = at::randn(full);
  s.train.y = at::zeros({256}, at::kLong);
  s.sample_shape = shape;
  s.num_classes = 10;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  squeeze::env::use_native_blas_kernels(argv);
  int threads = 1;
  double budget = 2.0;
  bool python = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--budget") && i + 1 < argc) budget = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--no-python")) python = false;
  }
  env::check_blas();
  env::set_threads(threads);
  env::keep_freed_memory();
  at::manual_seed(0);
  const quant::Int8Probe& probe = quant::int8_probe();
  std::map<std::string, std::string> env = report::environment();
  std::printf("cpu %s, threads %d, blas %s %s; int8 kernels: %s\n", env["cpu"].c_str(), threads, env["blas"].c_str(),
              env["blas_core"].c_str(),
              !probe.available ? "unavailable"
              : probe.saturates ? ("oneDNN " + probe.isa + ", saturating int16 pair sums: 8-bit weights on a 7-bit grid").c_str()
                                : ("oneDNN " + probe.isa + ", exact int32 accumulation: full 8-bit grids").c_str());
  std::map<std::string, std::map<int64_t, double>> float_us;
  std::printf("%-10s %5s %12s %12s %12s %12s %10s %10s %10s\n", "model", "batch", "float_us", "folded_us", "int8_us",
              "dynamic_us", "int8/float", "int8/fold", "dyn/float");
  for (auto [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {"small_cnn", {1, 28, 28}}, {"resnet20", {3, 32, 32}}}) {
    ir::Graph g = models::build(name, {}, 0);
    ir::Graph folded = g.clone();
    compress::Quantize::fold_batchnorm(folded);
    ir::verify(folded);
    data::Splits calib = random_calibration(shape);
    compress::PassContext ctx;
    ctx.data = &calib;
    ctx.batch_size = 64;
    compress::QuantizeOptions o;
    compress::PassResult q = compress::Quantize(o).run(g, ctx);
    std::cerr << name << ": " << q.summary << "\n";
    compress::QuantizeOptions dyn;
    dyn.mode = "dynamic";
    dyn.per_channel = false;
    compress::PassResult d = compress::Quantize(dyn).run(g, ctx);
    std::cerr << name << ": " << d.summary << "\n";
    for (int64_t batch : {1, 64}) {
      deploy::LatencyOptions lo;
      lo.budget_s = budget;
      auto st = deploy::measure_latency({&g, &folded, &q.graph, &d.graph}, batch, lo);
      float_us[name][batch] = st[0].median_us;
      std::printf("%-10s %5lld %12.1f %12.1f %12.1f %12.1f %9.2fx %9.2fx %9.2fx\n", name.c_str(),
                  static_cast<long long>(batch), st[0].median_us, st[1].median_us, st[2].median_us, st[3].median_us,
                  st[0].median_us / st[2].median_us, st[1].median_us / st[2].median_us,
                  st[0].median_us / st[3].median_us);
      std::fflush(stdout);
    }
  }
  if (!python) return 0;
  std::string script = SQUEEZE_SOURCE_DIR "/bench/quant_speed.py";
  std::string cmd = "/usr/bin/python3 " + script + " --threads " + std::to_string(threads) + " --budget " +
                    std::to_string(budget);
  std::printf("\nPyTorch 1.13 on the same models (%s):\n", cmd.c_str());
  std::fflush(stdout);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    std::printf("cannot run python\n");
    return 1;
  }
  char line[512];
  while (std::fgets(line, sizeof line, p)) std::printf("  %s", line);
  return pclose(p) == 0 ? 0 : 1;
}
