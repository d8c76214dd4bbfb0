#include "reference.h"

#include <sstream>

#include "squeeze/compress/registry.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::cli {

const std::string& example_config() {
  static const std::string text = R"(# An annotated squeeze workflow: every top-level key, with the common stage settings.
#   squeeze config --example > workflow.yaml
#   squeeze config --check workflow.yaml     # validate without training anything
#   squeeze run workflow.yaml                # baseline, experiments, report under output.dir
# `squeeze methods NAME` lists every parameter of a method with its type, default and range.
# Any value can be overridden on the command line: --set data.limit.train=1000

seed: 0                  # seeds the data split, zoo initialisation and training (integer >= 0)
threads: 0               # intra-op threads for training and inference; 0: all cores

# The model to compress: a zoo architecture (random weights: train it in baseline:), or
# {onnx: model.onnx}, or {checkpoint: model.sqz}. `squeeze zoo` lists the architectures.
# Any of them may add head: {num_classes: N}: its last classifier replaced by a new one.
model: {zoo: small_cnn, params: {num_classes: 10}}

# Omit data: for a workflow that needs none (no training, no evaluation).
data:
  dataset: fashion-mnist             # fashion-mnist | mnist-idx | csv | arff | npy | hdf5 | synthetic-jets
  path: /usr/share/datasets/fashion-mnist
  batch_size: 128
  split: {val: 0.1}                  # validation carved from train with the seed; test: the test split
  # limit: {train: 20000, val: 2000, test: 2000}   # subsets for quick runs (train alone scales val)
  normalize: standard                # standard | minmax | none | imagenet | {mean: [..], std: [..]}
  # resize: [64, 64]                 # images: bilinear resize; channels: 3 replicates gray
  # channels: 3                      # (stored with the model; eval and infer apply them)
  # augment: {shift: 2, hflip: true}  # images: random shifts (black padding) and mirror flips of
  #                                   # training batches only, seeded; never val, test, calibration
  # Tables (csv, arff, hdf5, npy N x F, synthetic-jets): standard/minmax statistics per feature
  # from the train split, stored with the model too, so eval and infer take raw features.

# Train the model before compressing it; omit baseline: to evaluate the model as given.
# Or reuse a baseline another run trained: baseline: {checkpoint: runs/x/models/baseline.sqz}
baseline:
  train: {epochs: 2, optimizer: adam, lr: 1.0e-3}  # also: schedule, weight_decay, momentum, max_steps

# Each experiment starts from the baseline; its stages run in order. Each stage names a method,
# its params, and an optional fine-tuning (the same keys as baseline.train, plus distill:).
experiments:
  - name: prune50
    stages:
      - method: prune                # global magnitude pruning to 50% zeros
        params: {kind: unstructured, criterion: l1, ratio: 0.5, scope: global}
        finetune: {epochs: 1, lr: 5.0e-4}
  - name: channels30-int8
    stages:
      - method: prune                # 30% of the channels removed: a smaller dense model
        params: {kind: structured, criterion: l1, ratio: 0.3}
        finetune: {epochs: 1, lr: 5.0e-4}
      - method: quantize             # int8 weights and activations, calibrated on training data
        params: {mode: ptq, weight_bits: 8, act_bits: 8, per_channel: true}
  - name: lowrank90
    stages:
      - method: lowrank              # SVD keeping 90% of each layer's energy
        params: {energy: 0.9, exclude: [conv1]}
        finetune: {epochs: 1, lr: 5.0e-4, distill: {alpha: 0.5, temperature: 4}}  # the baseline teaches

# compression:                       # the short form: each entry is a one-stage experiment
#   - {method: pruning, params: {sparsity: 0.5}, finetuning: {epochs: 1}}

# pipeline:                          # instead of experiments: one search under an accuracy guard
#   type: validation                 # steps one after the other; the first that breaks the guard
#   guard: {max_drop: 0.01, relative: true}   # is rolled back (or: preserve_accuracy: 0.98)
#   steps:
#     - {method: prune, params: {ratio: 0.5}, finetune: {epochs: 1}}
#     - {method: quantize, params: {mode: ptq}}

output:
  dir: runs/example                  # report.json, report.md, report.html and models/ go here
  export: [onnx]                     # any of: onnx, qonnx, torchscript (a .sqz is always written)
  latency: true                      # measure every model's latency (latency_batches: [1, 64])
  recommend: {max_drop: 0.01, by: size}   # report: ship the smallest (or by: latency | flops) model
                                     # within 1 point (a fraction) of the baseline's test accuracy
  latency_threads: 1                 # threads while measuring (0: all cores); 1 repeats best
  # fpga: {clock_mhz: 200, reuse_factor: 1, precision: 'ap_fixed<16,6>', softmax: true}
  #                                  # hls4ml FPGA cost estimate per model in report.json (docs/fpga.md)
  # metrics: [hep]                   # per-class ROC AUC and background rejection at 50%/10%
                                     # signal efficiency (one class against the rest)
)";
  return text;
}

namespace {

std::string default_text(const KeyDoc& k) {
  if (k.fallback.empty()) return "-";
  return k.type == "string" ? "'" + k.fallback + "'" : k.fallback;
}

// "choice" and the other types read as their valid values already; the rest keep their type.
std::string valid_text(const KeyDoc& k) {
  std::string v = k.expected.empty() ? k.type : k.expected;
  if (!k.help.empty()) v += " (" + k.help + ")";
  return v;
}

void text_rows(std::ostringstream& os, const std::vector<KeyDoc>& keys, const std::string& indent) {
  size_t w = 4;
  for (const auto& k : keys) w = std::max(w, k.key.size());
  for (const auto& k : keys) {
    std::string key = k.key;
    key.resize(w, ' ');
    std::string def = default_text(k);
    def.resize(std::max<size_t>(def.size(), 14), ' ');
    os << indent << key << "  default " << def << "  " << valid_text(k) << "\n";
  }
}

const compress::MethodInfo& method_named(const std::string& name) {
  const compress::MethodInfo* m = compress::find_method(name);
  if (!m) {
    std::string near = did_you_mean(name, compress::method_names());
    throw ConfigError(msg("methods: unknown method '", name, "' (valid: ",
                          join(compress::method_names(), ", "), ")",
                          near.empty() ? "" : "; did you mean '" + near + "'?"));
  }
  return *m;
}

void method_text(std::ostringstream& os, const compress::MethodInfo& m) {
  const compress::MethodParams mp = compress::method_params(m);
  os << m.name;
  if (!m.aliases.empty()) os << " (also: " << join(m.aliases, ", ") << ")";
  os << ": " << m.description << "\n";
  if (!mp.needs.empty())
    os << "  requires: " << mp.needs << (mp.accepted_with.empty() ? "" : " (listed with " + mp.accepted_with + ")")
       << "\n";
  text_rows(os, mp.keys, "  ");
  for (const auto& v : mp.variants) {
    os << "  with " << v.when << ":\n";
    text_rows(os, v.keys, "    ");
    if (!v.unused.empty()) os << "    not read: " << join(v.unused, ", ") << "\n";
  }
}

std::string cell(std::string s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

void markdown_rows(std::ostringstream& os, const std::vector<KeyDoc>& keys) {
  os << "| key | default | valid |\n|---|---|---|\n";
  for (const auto& k : keys)
    os << "| `" << k.key << "` | " << (k.fallback.empty() ? "-" : "`" + cell(default_text(k)) + "`") << " | "
       << cell(valid_text(k)) << " |\n";
}

}  // namespace

std::string methods_text(const std::string& name) {
  std::ostringstream os;
  if (!name.empty()) {
    method_text(os, method_named(name));
    return os.str();
  }
  for (size_t i = 0; i < compress::methods().size(); ++i) {
    if (i) os << "\n";
    method_text(os, compress::methods()[i]);
  }
  return os.str();
}

std::string methods_markdown() {
  std::ostringstream os;
  os << "# Compression methods and their parameters\n\n"
     << "Generated by `squeeze methods --markdown` from the code that validates the parameters\n"
     << "(each method's options reader, run on empty params while recording what it reads), so it\n"
     << "cannot drift from it; a test fails when this file is stale. Keys go in a stage's `params:`.\n"
     << "\"with KEY: VALUE\" lists the keys that value of a choice or flag adds or changes, and those\n"
     << "it no longer reads.\n";
  for (const auto& m : compress::methods()) {
    const compress::MethodParams mp = compress::method_params(m);
    os << "\n## " << m.name << "\n\n" << m.description << ".";
    if (!m.aliases.empty()) os << " Also spelled " << join(m.aliases, ", ") << ".";
    os << "\n\n";
    if (!mp.needs.empty())
      os << "Requires: " << mp.needs << (mp.accepted_with.empty() ? "" : " (listed with `" + mp.accepted_with + "`)")
         << ".\n\n";
    markdown_rows(os, mp.keys);
    for (const auto& v : mp.variants) {
      os << "\nWith `" << v.when << "`:\n\n";
      if (!v.keys.empty()) markdown_rows(os, v.keys);
      if (!v.unused.empty()) os << (v.keys.empty() ? "" : "\n") << "Not read: `" << join(v.unused, "`, `") << "`.\n";
    }
  }
  return os.str();
}

}  // namespace squeeze::cli
