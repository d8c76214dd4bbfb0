// Fine-tuning throughput of small_cnn on Fashion-MNIST in squeeze: a fixed number of Adam steps at
// a fixed batch size, printed as one JSON line. bench/compare_train.sh runs it side by side with
// bench/train_throughput.py (PyTorch, same libtorch) and prints the ratio.
//   train_throughput [steps] [batch] [threads]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "squeeze/data/dataset.h"
#include "squeeze/models/zoo.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/env.h"
#include "squeeze/util/log.h"

int main(int argc, char** argv) {
  squeeze::env::use_native_blas_kernels(argv);
  using namespace squeeze;
  int64_t steps = argc > 1 ? std::stoll(argv[1]) : 100;
  int64_t batch = argc > 2 ? std::stoll(argv[2]) : 128;
  int threads = argc > 3 ? std::stoi(argv[3]) : 2;
  env::set_threads(threads);
  env::keep_freed_memory();
  log::set_level(log::Level::kWarn);
  data::DataOptions o;
  o.dataset = "fashion-mnist";
  o.path = "/usr/share/datasets/fashion-mnist";
  o.val_fraction = 0.0;
  data::Splits splits = data::load(o, 0);
  ir::Graph g = models::build("small_cnn", {}, 0);
  train::TrainOptions t;
  t.epochs = 1;
  t.max_steps = 5;  // warm-up
  train::fit(g, splits, t, batch, 0);
  t.max_steps = steps;
  auto r = train::fit(g, splits, t, batch, 1);
  std::printf("{\"impl\": \"squeeze\", \"steps\": %lld, \"batch\": %lld, \"threads\": %d, \"samples_per_s\": %.1f}\n",
              (long long)r.steps, (long long)batch, at::get_num_threads(), r.epochs.at(0).samples_per_s);
  return 0;
}
