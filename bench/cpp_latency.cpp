// Batch-1 latency of the generated C++ (deploy/cpp_export.h) against squeeze's libtorch executor
// on the same model and PyTorch (bench/cpp_latency.py) on the float model, interleaved in rounds
// in one run, 1 thread. The model: zoo jet_tagger (16-64-32-32-5) pruned 75% and in fixed point
// (ap_fixed<16,6>; and 6-bit weights), plus the int8 version.
//
// The compute limit: the model's multiply-adds (non-zero weights) divided by this CPU's scalar
// multiply-add rate, measured here with int64 and float loops, dependent (one chain: latency) and
// independent (eight chains: throughput). The limit uses the independent int64 rate (the
// generated fixed-point code multiplies int64 mantissas).
//
//   build/bench/cpp_latency [--rounds 3] [--no-python]
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/compress/quantize/fixed_point.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/data/dataset.h"
#include "squeeze/deploy/cpp_export.h"
#include "squeeze/exec/executor.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/env.h"

using namespace squeeze;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ns per multiply-add of `chains` independent accumulators (1 = a dependent chain).
// Scalar on purpose: no auto-vectorisation of the eight chains.
template <typename T>
__attribute__((optimize("no-tree-vectorize"))) double mac_ns(int chains) {
  const int64_t n = 1 << 22;
  std::vector<T> acc(8, T(1));
  volatile T seed_w = std::is_floating_point<T>::value ? T(0.5) : T(3), seed_x = T(1);
  T w = seed_w, x = seed_x;
  std::vector<double> per;
  for (int r = 0; r < 7; ++r) {
    auto t0 = Clock::now();
    if (chains == 1) {
      T a = acc[0];
      for (int64_t i = 0; i < n; ++i) a = a * w + x;
      acc[0] = a;
    } else {
      T a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
      for (int64_t i = 0; i < n; i += 8) {
        a0 = a0 * w + x, a1 = a1 * w + x, a2 = a2 * w + x, a3 = a3 * w + x;
        a4 = a4 * w + x, a5 = a5 * w + x, a6 = a6 * w + x, a7 = a7 * w + x;
      }
      acc = {a0, a1, a2, a3, a4, a5, a6, a7};
    }
    per.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(n));
  }
  volatile T sink = acc[0] + acc[1] + acc[7];
  (void)sink;
  return median(per);
}

double executor_ns(const ir::Graph& g) {
  exec::Executor ex(g);
  at::Tensor x = at::randn({1, 16});
  for (int i = 0; i < 200; ++i) ex.forward(x);
  std::vector<double> per;
  const int reps = 50;
  for (int r = 0; r < 15; ++r) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) ex.forward(x);
    per.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / reps);
  }
  return median(per);
}

double python_ns() {
  const std::string cmd = "/usr/bin/python3 " SQUEEZE_SOURCE_DIR "/bench/cpp_latency.py --threads 1 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[256];
  double v = -1;
  while (fgets(buf, sizeof buf, p))
    if (!std::strncmp(buf, "median_ns ", 10)) v = std::atof(buf + 10);
  pclose(p);
  return v;
}

std::string cpu_line(const char* key) {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  env::use_native_blas_kernels(argv);
  env::set_threads(1);
  int rounds = 3;
  bool python = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--no-python")) python = false;
  }
  std::string flags = cpu_line("flags"), isa;
  for (const char* f : {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"})
    if ((" " + flags + " ").find(std::string(" ") + f + " ") != std::string::npos) isa += std::string(isa.empty() ? "" : " ") + f;
  std::printf("CPU: %s; ISA: %s; threads 1\n", cpu_line("model name").c_str(), isa.c_str());
  const double i_dep = mac_ns<uint64_t>(1), i_ind = mac_ns<uint64_t>(8), f_dep = mac_ns<float>(1), f_ind = mac_ns<float>(8);
  std::printf("scalar multiply-add: int64 %.3f ns dependent, %.3f ns independent (%.2f G/s); float %.3f ns "
              "dependent, %.3f ns independent (%.2f G/s)\n",
              i_dep, i_ind, 1.0 / i_ind, f_dep, f_ind, 1.0 / f_ind);

  ir::Graph g = models::build("jet_tagger", {}, 0);
  compress::MagnitudePruneOptions po;
  po.ratio = 0.75;
  compress::MagnitudePrune(po).prune_to(g, 0.75);
  compress::PassContext ctx;
  struct Variant {
    std::string name;
    ir::Graph graph;
  };
  std::vector<Variant> variants;
  {
    compress::FixedPointOptions o;
    variants.push_back({"fixed ap_fixed<16,6>", compress::FixedPoint(o).run(g, ctx).graph});
    o.default_type = "quantized_bits(6,2)";
    o.input = "ap_fixed<16,6>";
    o.kinds.weight = "quantized_bits(6,0)";
    variants.push_back({"fixed 6-bit weights", compress::FixedPoint(o).run(g, ctx).graph});
  }
  {
    data::DataOptions d;
    d.dataset = "synthetic-jets";
    d.samples = 2000;
    data::Splits s = data::load(d, 0);
    compress::QuantizeOptions q;
    compress::PassContext qc;
    qc.data = &s;
    qc.batch_size = 64;
    variants.push_back({"int8", compress::Quantize(q).run(g, qc).graph});
  }
  variants.push_back({"float (pruned)", g.clone()});

  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("squeeze-cpp-latency-bench-" + std::to_string(getpid()));
  std::vector<std::string> dirs;
  std::vector<int64_t> macs;
  for (size_t k = 0; k < variants.size(); ++k) {
    deploy::CppExportOptions o;
    o.golden_count = 256;
    std::string d = (tmp / ("v" + std::to_string(k))).string();
    deploy::export_cpp(variants[k].graph, o, d);
    dirs.push_back(d);
    int64_t m = 0;
    for (const auto& n : variants[k].graph.nodes)
      if (n.op == "Linear") m += n.param("weight").value.ne(0).sum().item<int64_t>();
    macs.push_back(m);
  }
  std::vector<std::vector<double>> cpp(variants.size()), exe(variants.size());
  std::vector<double> py;
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < variants.size(); ++k) {
      cpp[k].push_back(deploy::measure_cpp_latency_ns(dirs[k]));
      exe[k].push_back(executor_ns(variants[k].graph));
    }
    if (python) py.push_back(python_ns());
  }
  const double torch_ns = python && !py.empty() ? median(py) : -1;
  std::printf("\nbatch-1 latency, median of %d interleaved rounds (ns)\n", rounds);
  std::printf("%-22s %8s %10s %12s %10s %12s %10s %10s\n", "model", "MACs", "C++", "executor", "speedup", "limit",
              "C++/limit", "vs torch");
  for (size_t k = 0; k < variants.size(); ++k) {
    const double c = median(cpp[k]), e = median(exe[k]);
    const double limit = double(macs[k]) * (variants[k].name.rfind("float", 0) == 0 ? f_ind : i_ind);
    std::printf("%-22s %8lld %10.1f %12.1f %9.0fx %12.1f %9.2fx %9.0fx\n", variants[k].name.c_str(),
                static_cast<long long>(macs[k]), c, e, e / c, limit, c / limit, torch_ns > 0 ? torch_ns / c : 0.0);
  }
  if (torch_ns > 0) std::printf("PyTorch float jet_tagger (dense), batch 1: %.1f ns\n", torch_ns);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return 0;
}
