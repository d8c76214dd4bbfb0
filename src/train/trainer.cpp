#include "squeeze/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>

#include "squeeze/exec/executor.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/train/distill.h"
#include "squeeze/train/distributed.h"
#include "squeeze/util/error.h"
#include "squeeze/util/interrupt.h"
#include "squeeze/util/log.h"

namespace squeeze::train {

namespace {

// splitmix64 of the fit's seed and the step: the global generator's seed for that step.
uint64_t step_seed(uint64_t seed, int64_t step) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(step + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& params,
                                                        const TrainOptions& o) {
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  if (o.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  if (o.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  throw ConfigError(msg("optimizer: unknown '", o.optimizer, "' (valid: sgd, adam, adamw)"));
}

double lr_at(const TrainOptions& o, int64_t step, int64_t total_steps, int64_t steps_per_epoch) {
  if (o.warmup_steps > 0 && step < o.warmup_steps) return o.lr * double(step + 1) / double(o.warmup_steps);
  if (o.schedule == "step") {
    int64_t epoch = steps_per_epoch > 0 ? step / steps_per_epoch : 0;
    return o.lr * std::pow(o.gamma, static_cast<double>(epoch / std::max<int64_t>(o.step_size, 1)));
  }
  if (o.schedule == "cosine") {
    int64_t span = std::max<int64_t>(total_steps - o.warmup_steps, 1);
    double t = std::min(1.0, double(step - o.warmup_steps) / double(span));
    return 0.5 * o.lr * (1.0 + std::cos(M_PI * t));
  }
  return o.lr;
}

// Snapshot of all parameter values (for keep_best).
std::vector<at::Tensor> snapshot(const ir::Graph& g) {
  std::vector<at::Tensor> s;
  for (const auto& n : g.nodes)
    for (const auto& [k, p] : n.params) s.push_back(p.value.detach().clone());
  return s;
}

void restore(ir::Graph& g, const std::vector<at::Tensor>& s) {
  at::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& n : g.nodes)
    for (auto& [k, p] : n.params) p.value.copy_(s[i++]);
}

// Data-parallel helpers (train/distributed.h); no-ops in a single process.

// Every tensor that must be identical on all ranks when training starts: parameter values (BatchNorm
// statistics included), masks and quantization parameters.
std::vector<at::Tensor> replicated_state(ir::Graph& g) {
  std::vector<at::Tensor> out;
  for (auto& n : g.nodes) {
    for (auto& [k, p] : n.params) {
      out.push_back(p.value);
      if (p.mask) out.push_back(*p.mask);
      if (p.qspec && p.qspec->scale.defined()) out.push_back(p.qspec->scale);
      if (p.qspec && p.qspec->zero_point.defined()) out.push_back(p.qspec->zero_point);
    }
    if (n.out_qspec && n.out_qspec->scale.defined()) out.push_back(n.out_qspec->scale);
    if (n.out_qspec && n.out_qspec->zero_point.defined()) out.push_back(n.out_qspec->zero_point);
  }
  return out;
}

// What a step hook may change (gradual pruning's masks, QAT's observers): each rank computes it
// from the same weights and the same batches, and rank 0's copy is broadcast so that the ranks
// cannot drift apart by a rounding difference.
std::vector<at::Tensor> hook_state(ir::Graph& g) {
  std::vector<at::Tensor> out;
  for (auto& n : g.nodes) {
    for (auto& [k, p] : n.params) {
      if (p.mask) out.push_back(*p.mask);
      if (p.qspec && p.qspec->scale.defined()) out.push_back(p.qspec->scale);
      if (p.qspec && p.qspec->zero_point.defined()) out.push_back(p.qspec->zero_point);
    }
    if (n.out_qspec && n.out_qspec->scale.defined()) out.push_back(n.out_qspec->scale);
    if (n.out_qspec && n.out_qspec->zero_point.defined()) out.push_back(n.out_qspec->zero_point);
  }
  return out;
}

// BatchNorm running statistics are updated from each rank's own shard; averaged over the ranks
// at the end of every epoch (before validation), so that every rank holds the same model.
void average_statistics(ir::Graph& g) {
  std::vector<at::Tensor> stats;
  for (auto& n : g.nodes)
    for (auto& [k, p] : n.params)
      if (!p.trainable && p.value.is_floating_point()) stats.push_back(p.value);
  if (stats.empty()) return;
  dist::all_reduce_sum(stats);
  at::NoGradGuard no_grad;
  for (auto& t : stats) t.detach().div_(static_cast<double>(dist::world_size()));
}

}  // namespace

void check_labels(const data::Dataset& data, int64_t num_outputs, const std::string& what) {
  if (data.size() == 0) return;
  const at::Tensor bad = (data.y < 0) | (data.y >= num_outputs);
  if (!bad.any().item<bool>()) return;
  const int64_t row = bad.nonzero().select(1, 0)[0].item<int64_t>();
  throw InputError(msg(what, ": label ", data.y[row].item<int64_t>(), " in row ", row,
                       " is outside the model's ", num_outputs, " outputs (valid labels: 0 to ",
                       num_outputs - 1, ")"));
}

int64_t output_classes(const ir::Graph& graph) {
  if (graph.outputs.empty()) return -1;
  auto it = graph.shapes.find(graph.outputs[0]);
  if (it == graph.shapes.end() || it->second.size() != 2) return -1;
  return it->second[1] > 0 ? it->second[1] : -1;
}

Metrics evaluate(ir::Graph& graph, const data::Dataset& data, int64_t batch_size,
                 std::vector<float>* probabilities) {
  Metrics m;
  if (probabilities) probabilities->clear();
  if (data.size() == 0) return m;
  at::NoGradGuard no_grad;
  exec::Executor ex(graph);
  // Data-parallel: each rank predicts its share of the samples; the predictions and loss sums
  // are added over the ranks (zeros outside each share), so every rank computes the metrics of
  // the whole set. In one process the share is everything.
  int64_t first = 0, last = data.size();
  dist::shard(data.size(), dist::rank(), dist::world_size(), first, last);
  int64_t k = -1;
  double loss_sum = 0.0;
  std::vector<at::Tensor> preds;
  for (int64_t start = first; start < last; start += batch_size) {
    int64_t len = std::min(batch_size, last - start);
    at::Tensor x = data.inputs(start, len), y = data.y.narrow(0, start, len);
    at::Tensor logits = ex.forward(x, exec::Mode::kEval);
    if (logits.dim() != 2 || logits.size(1) < 1)
      throw InputError(msg("evaluation needs class scores: the model outputs shape ",
                           logits.sizes(), " (expected [batch, classes])"));
    if (k < 0) {
      // Checked once for the whole set so a bad label is reported before any metric is computed.
      k = logits.size(1);
      check_labels(data, k, "the evaluated data");
    }
    loss_sum += at::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    preds.push_back(logits.argmax(1));
    if (probabilities) {
      const at::Tensor p = at::softmax(logits.to(at::kFloat), 1).contiguous();
      probabilities->insert(probabilities->end(), p.data_ptr<float>(),
                            p.data_ptr<float>() + p.numel());
    }
  }
  at::Tensor pred = preds.empty() ? at::zeros({0}, at::kLong) : at::cat(preds);
  if (dist::active()) {
    at::Tensor all = at::zeros({data.size()}, at::kLong);
    all.narrow(0, first, last - first).copy_(pred);
    dist::all_reduce_sum(std::vector<at::Tensor>{all});
    pred = all;
    // A rank with an empty share (fewer samples than ranks) learns the width from the others.
    const bool have = k > 0;
    std::vector<double> s = dist::all_reduce_sum(
        std::vector<double>{loss_sum, have ? double(k) : 0.0, have ? 1.0 : 0.0});
    loss_sum = s[0];
    if (!have) {
      k = static_cast<int64_t>(std::llround(s[1] / s[2]));
      check_labels(data, k, "the evaluated data");
    }
  }
  const at::Tensor y = data.y.contiguous();
  m.samples = data.size();
  m.num_outputs = k;
  m.loss = loss_sum / double(m.samples);

  // Counted over the model's K outputs, then reported for the classes present; K may be large
  // (1000) while the data holds a few classes, so no K x K matrix is built.
  const at::Tensor label_count = at::bincount(y, {}, k);
  const at::Tensor pred_count = at::bincount(pred, {}, k);
  const at::Tensor hit = y.eq(pred);
  const at::Tensor correct_count = at::bincount(y.masked_select(hit), {}, k);
  auto lc = label_count.accessor<int64_t, 1>();
  auto pc = pred_count.accessor<int64_t, 1>();
  auto cc = correct_count.accessor<int64_t, 1>();
  std::vector<int64_t> column(static_cast<size_t>(k), -1);
  int64_t correct = 0;
  for (int64_t c = 0; c < k; ++c) {
    correct += cc[c];
    if (lc[c] == 0) continue;
    column[c] = static_cast<int64_t>(m.classes.size());
    m.classes.push_back(c);
    m.per_class_accuracy.push_back(double(cc[c]) / double(lc[c]));
    m.per_class_precision.push_back(pc[c] ? double(cc[c]) / double(pc[c]) : 0.0);
  }
  const size_t n = m.classes.size();
  const size_t other = static_cast<int64_t>(n) < k ? 1 : 0;
  m.confusion.assign(n, std::vector<int64_t>(n + other, 0));
  auto ya = y.accessor<int64_t, 1>();
  auto pa = pred.accessor<int64_t, 1>();
  for (int64_t i = 0; i < m.samples; ++i) {
    const int64_t col = column[pa[i]];
    m.confusion[column[ya[i]]][col >= 0 ? col : static_cast<int64_t>(n)] += 1;
  }
  m.accuracy = double(correct) / double(m.samples);
  return m;
}

TrainResult fit(ir::Graph& graph, const data::Splits& splits, const TrainOptions& options, int64_t batch_size,
                uint64_t seed, const StepHook& hook, const ir::Graph* teacher,
                const EpochHook& epoch_hook) {
  options.validate();
  if (options.distill && !teacher)
    throw ConfigError("distillation needs a teacher model, and none was given to the trainer");
  TrainResult result;
  if (options.epochs == 0 || splits.train.size() == 0) return result;
  auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> params = exec::trainable_parameters(graph);
  if (params.empty()) {
    log::warn("training: the model has no trainable parameters; skipped");
    return result;
  }
  // Made before the executor: it adds the student's feature values to the graph outputs.
  std::unique_ptr<Distiller> distiller;
  if (options.distill) {
    distiller = std::make_unique<Distiller>(*teacher, graph, *options.distill, seed);
    for (const at::Tensor& w : distiller->parameters()) params.push_back(w);
  }
  const bool parallel = dist::active();
  const int rank = dist::rank(), world = dist::world_size();
  if (parallel) {
    // Rank 0's model is everyone's: parameters, masks, quantization parameters, adapters.
    std::vector<at::Tensor> start_state = replicated_state(graph);
    if (distiller)
      for (const at::Tensor& w : distiller->parameters()) start_state.push_back(w);
    dist::broadcast(start_state);
  }
  const dist::Counters comm_start = dist::counters();
  // SQUEEZE_DIST_PROFILE=1: a barrier before every gradient all-reduce, so that the log gives
  // the transfer apart from the wait for the slowest rank (for scaling estimates; costs a
  // round trip per step).
  const char* profile_env = std::getenv("SQUEEZE_DIST_PROFILE");
  const bool profile_comm = parallel && profile_env && std::string(profile_env) == "1";
  double wait_seconds = 0.0;
  auto optimizer = make_optimizer(params, options);
  at::Tensor class_weights;  // undefined: unweighted
  if (!options.class_weights.empty())
    class_weights = at::tensor(std::vector<float>(options.class_weights.begin(),
                                                  options.class_weights.end()),
                               at::kFloat);
  exec::Executor ex(graph);
  data::BatchIterator batches(splits.train, batch_size, true, seed, splits.augment);
  int64_t steps_per_epoch = batches.num_batches();
  int64_t total_steps = steps_per_epoch * options.epochs;
  if (options.max_steps >= 0) total_steps = std::min(total_steps, options.max_steps);
  bool have_val = splits.val.size() > 0;
  std::vector<at::Tensor> best;
  int64_t since_best = 0;
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < options.epochs && step < total_steps; ++epoch) {
    auto epoch_start = std::chrono::steady_clock::now();
    batches.start_epoch(epoch);
    log::Progress progress(msg("epoch ", epoch + 1, "/", options.epochs), std::min(steps_per_epoch, total_steps - step),
                           "batch");
    double loss_sum = 0.0;
    int64_t correct = 0, seen = 0;
    at::Tensor x, y;
    double lr = options.lr;
    while (step < total_steps && batches.next(x, y)) {
      interrupt::check();
      lr = lr_at(options, step, total_steps, steps_per_epoch);
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
      auto step_start = std::chrono::steady_clock::now();
      // Data-parallel: every rank draws the same global batch (the same permutation, seeded by
      // the seed and the epoch) and takes its contiguous share; the loss is scaled by the share's
      // part of the global batch and the gradients summed over the ranks, which is the gradient
      // of the global batch's mean loss. A rank whose share is empty (a last batch smaller than
      // the world) runs one sample with weight 0, so that it contributes zero gradients.
      const int64_t global_len = x.size(0);
      double share = 1.0;
      if (parallel) {
        int64_t begin = 0, end = 0;
        dist::shard(global_len, rank, world, begin, end);
        share = double(end - begin) / double(global_len);
        if (end == begin) begin = 0, end = 1;  // weighted 0 by `share`
        x = x.narrow(0, begin, end - begin);
        y = y.narrow(0, begin, end - begin);
      }
      optimizer->zero_grad();
      // Dropout draws from the global generator: seeded for each step from the fit's seed and
      // the step, so that a step's randomness does not depend on what ran before it in the
      // process (a resumed run skips that); each rank draws its own stream.
      at::manual_seed(step_seed(seed + static_cast<uint64_t>(rank) * 0x51ed27f1ULL, step));
      std::vector<at::Tensor> outputs = ex.run({x}, exec::Mode::kTrain);
      const at::Tensor& logits = outputs.at(0);
      if (step == 0) {
        // Before the first update, so a bad label costs no training time; libtorch's own error
        // would name neither the row nor the valid range.
        if (logits.dim() != 2)
          throw InputError(msg("training needs class scores: the model outputs shape ",
                               logits.sizes(), " (expected [batch, classes])"));
        check_labels(splits.train, logits.size(1), "the training split");
        check_labels(splits.val, logits.size(1), "the validation split");
        if (!options.class_weights.empty() &&
            static_cast<int64_t>(options.class_weights.size()) != logits.size(1))
          throw InputError(msg("training: ", options.class_weights.size(),
                               " class weights for a model with ", logits.size(1), " outputs"));
      }
      at::Tensor loss = distiller ? distiller->loss(outputs, x, y, options.label_smoothing)
                                  : at::cross_entropy_loss(logits, y, class_weights,
                                                           at::Reduction::Mean, -100,
                                                           options.label_smoothing);
      if (parallel) {
        (loss * share).backward();
        // After backward, not overlapped with it: one bucketed all-reduce of every gradient.
        std::vector<at::Tensor> grads;
        for (at::Tensor& p : params) {
          if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
          grads.push_back(p.grad());
        }
        auto comm_start = std::chrono::steady_clock::now();
        if (profile_comm) {
          // The time until every rank has its gradients (the slowest rank's compute), apart
          // from the transfer itself.
          dist::barrier();
          const auto ready = std::chrono::steady_clock::now();
          wait_seconds += std::chrono::duration<double>(ready - comm_start).count();
          comm_start = ready;
        }
        dist::all_reduce_sum(grads);
        result.allreduce_seconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - comm_start).count();
      } else {
        loss.backward();
      }
      optimizer->step();
      exec::apply_masks(graph);
      result.step_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
      ++step;
      if (hook) {
        hook(graph, step, total_steps);
        if (parallel) dist::broadcast(hook_state(graph));
      }
      double l = loss.item<double>();
      const int64_t counted = share > 0.0 ? x.size(0) : 0;
      loss_sum += l * double(counted);
      if (counted) correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      seen += counted;
      progress.update(1, msg("loss ", l));
    }
    if (parallel) {
      average_statistics(graph);
      std::vector<double> sums =
          dist::all_reduce_sum(std::vector<double>{loss_sum, double(correct), double(seen)});
      loss_sum = sums[0];
      correct = static_cast<int64_t>(std::llround(sums[1]));
      seen = static_cast<int64_t>(std::llround(sums[2]));
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.train_loss = seen ? loss_sum / double(seen) : 0.0;
    rec.train_accuracy = seen ? double(correct) / double(seen) : 0.0;
    rec.lr = lr;
    rec.samples_per_s = secs > 0 ? double(seen) / secs : 0.0;
    if (have_val) {
      Metrics v = evaluate(graph, splits.val, std::max<int64_t>(batch_size, 256));
      rec.val_loss = v.loss;
      rec.val_accuracy = v.accuracy;
    }
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    progress.finish(msg("loss ", rec.train_loss, have_val ? msg(", val acc ", rec.val_accuracy) : ""));
    result.epochs.push_back(rec);
    if (epoch_hook) epoch_hook(rec);
    if (have_val && (result.best_epoch < 0 || rec.val_accuracy > result.best_val_accuracy)) {
      result.best_epoch = rec.epoch;
      result.best_val_accuracy = rec.val_accuracy;
      since_best = 0;
      if (options.keep_best && options.epochs > 1) best = snapshot(graph);
    } else {
      ++since_best;
    }
    if (options.early_stopping > 0 && since_best >= options.early_stopping) {
      log::info("early stopping after epoch ", rec.epoch, ": no improvement for ", since_best, " epochs");
      break;
    }
  }
  // Restoring an earlier snapshot is only safe when masks did not change since it was taken;
  // gradual pruning changes them, so the hook's final state wins.
  if (!best.empty() && !hook && result.best_epoch != static_cast<int64_t>(result.epochs.size())) {
    restore(graph, best);
    log::info("restored the parameters of epoch ", result.best_epoch, " (best validation accuracy ",
              result.best_val_accuracy, ")");
  }
  if (distiller) {
    // Before evaluation and keep_best's restore: the graph gets its own outputs back.
    distiller->restore_outputs();
    result.teacher_seconds = distiller->teacher_seconds();
  }
  // A quantized graph trained by a later stage (distillation after QAT, pruning after PTQ) keeps
  // its weights on their grids; a no-op for float graphs and for weights already snapped.
  quant::snap_to_grid(graph);
  exec::freeze(graph);
  result.steps = step;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (parallel) {
    const dist::Counters& c = dist::counters();
    result.comm_seconds = c.seconds - comm_start.seconds;
    result.comm_bytes = c.bytes - comm_start.bytes;
    if (step > 0)
      log::info("data-parallel (", world, " processes, global batch ", batch_size, "): ",
                1000.0 * result.step_seconds / double(step), " ms per step, of which gradient "
                "all-reduce ", 1000.0 * result.allreduce_seconds / double(step), " ms; ",
                double(result.comm_bytes) / double(step) / 1e6, " MB into collectives per step, ",
                result.comm_seconds, " s in all collectives",
                profile_comm ? msg("; waiting for the slowest rank before the all-reduce ",
                                   1000.0 * wait_seconds / double(step), " ms per step")
                             : std::string());
  }
  return result;
}

}  // namespace squeeze::train
