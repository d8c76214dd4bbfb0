#include "squeeze/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <cmath>

#include "squeeze/exec/executor.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"

namespace squeeze::train {

namespace {

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

}  // namespace

Metrics evaluate(ir::Graph& graph, const data::Dataset& data, int64_t batch_size, int64_t num_classes) {
  Metrics m;
  if (data.size() == 0) return m;
  at::NoGradGuard no_grad;
  exec::Executor ex(graph);
  at::Tensor confusion = at::zeros({num_classes, num_classes}, at::kLong);
  double loss_sum = 0.0;
  for (int64_t start = 0; start < data.size(); start += batch_size) {
    int64_t len = std::min(batch_size, data.size() - start);
    at::Tensor x = data.x.narrow(0, start, len), y = data.y.narrow(0, start, len);
    at::Tensor logits = ex.forward(x, exec::Mode::kEval);
    if (logits.dim() != 2 || logits.size(1) != num_classes)
      throw InputError(msg("the model outputs shape ", logits.sizes(), " but the data has ", num_classes,
                           " classes (expected [batch, ", num_classes, "])"));
    loss_sum += at::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
    at::Tensor pred = logits.argmax(1);
    confusion.view(-1).index_add_(0, y * num_classes + pred, at::ones_like(y));
  }
  m.samples = data.size();
  m.loss = loss_sum / double(m.samples);
  auto c = confusion.accessor<int64_t, 2>();
  int64_t correct = 0;
  m.confusion.assign(num_classes, std::vector<int64_t>(num_classes, 0));
  for (int64_t i = 0; i < num_classes; ++i) {
    int64_t row = 0, col = 0;
    for (int64_t j = 0; j < num_classes; ++j) {
      m.confusion[i][j] = c[i][j];
      row += c[i][j];
      col += c[j][i];
    }
    correct += c[i][i];
    m.per_class_accuracy.push_back(row ? double(c[i][i]) / double(row) : 0.0);
    m.per_class_precision.push_back(col ? double(c[i][i]) / double(col) : 0.0);
  }
  m.accuracy = double(correct) / double(m.samples);
  return m;
}

TrainResult fit(ir::Graph& graph, const data::Splits& splits, const TrainOptions& options, int64_t batch_size,
                uint64_t seed, const StepHook& hook) {
  options.validate();
  TrainResult result;
  if (options.epochs == 0 || splits.train.size() == 0) return result;
  auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> params = exec::trainable_parameters(graph);
  if (params.empty()) {
    log::warn("training: the model has no trainable parameters; skipped");
    return result;
  }
  auto optimizer = make_optimizer(params, options);
  exec::Executor ex(graph);
  data::BatchIterator batches(splits.train, batch_size, true, seed);
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
      lr = lr_at(options, step, total_steps, steps_per_epoch);
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
      optimizer->zero_grad();
      at::Tensor logits = ex.forward(x, exec::Mode::kTrain);
      at::Tensor loss = at::cross_entropy_loss(logits, y, {}, at::Reduction::Mean, -100, options.label_smoothing);
      loss.backward();
      optimizer->step();
      exec::apply_masks(graph);
      ++step;
      if (hook) hook(graph, step, total_steps);
      double l = loss.item<double>();
      loss_sum += l * double(x.size(0));
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      seen += x.size(0);
      progress.update(1, msg("loss ", l));
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.train_loss = seen ? loss_sum / double(seen) : 0.0;
    rec.train_accuracy = seen ? double(correct) / double(seen) : 0.0;
    rec.lr = lr;
    rec.samples_per_s = secs > 0 ? double(seen) / secs : 0.0;
    if (have_val) {
      Metrics v = evaluate(graph, splits.val, std::max<int64_t>(batch_size, 256), splits.num_classes);
      rec.val_loss = v.loss;
      rec.val_accuracy = v.accuracy;
    }
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    progress.finish(msg("loss ", rec.train_loss, have_val ? msg(", val acc ", rec.val_accuracy) : ""));
    result.epochs.push_back(rec);
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
  exec::freeze(graph);
  result.steps = step;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace squeeze::train
