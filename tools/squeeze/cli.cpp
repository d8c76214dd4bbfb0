// The squeeze command line (DESIGN.md section 3): parses arguments, calls the library, maps
// errors to exit codes. The only user of CLI11.
#include "cli.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iomanip>
#include <sstream>

#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/compress/prune/latency_model.h"
#include "squeeze/compress/registry.h"
#include "squeeze/data/dataset.h"
#include "squeeze/deploy/cpp_export.h"
#include "squeeze/deploy/export.h"
#include "squeeze/deploy/fpga.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/io/model_io.h"
#include "squeeze/io/sqz.h"
#include "squeeze/ir/ops.h"
#include "squeeze/ir/quant_math.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/pipeline/autotune.h"
#include "squeeze/pipeline/hep_trigger.h"
#include "squeeze/pipeline/progressive.h"
#include "squeeze/pipeline/workflow.h"
#include "squeeze/report/cli_json.h"
#include "squeeze/report/fpga_json.h"
#include "squeeze/train/trainer.h"
#include "squeeze/util/env.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/interrupt.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"
#include "launch.h"
#include "reference.h"

namespace squeeze::cli {

namespace {

struct Globals {
  bool quiet = false;
  std::string log_level = "info";
  int threads = 0;
  uint64_t seed = 0;
};

// Weight bits of a node: the quantization spec of its weight, 32 for float, 0 without weights.
// The grid's bits differ from the stored bits for reduce_range weights (8 stored, 7 used).
int weight_bits(const ir::Node& n, bool grid) {
  if (!n.has_param("weight")) return 0;
  const auto& p = n.param("weight");
  if (!p.qspec) return 32;
  return grid ? quant::grid_bits(*p.qspec) : p.qspec->bits;
}

int64_t count_nonzero(const ir::Node& n) {
  int64_t nz = 0;
  for (const auto& [k, p] : n.params) nz += p.value.ne(0).sum().item<int64_t>();
  return nz;
}

// inspect --latency options.
struct InspectLatency {
  bool on = false;
  int64_t batch = 1;
  std::string cache;           // "" = default folder; "none" = measure, write nothing
  bool threads_given = false;  // else measured on 1 thread, as bench
};

// The measured latency table of each prunable channel group (compress/prune/latency_model.h).
int cmd_inspect_latency(const std::string& model, bool as_json, const InspectLatency& il, const Globals& g,
                        std::ostream& out) {
  ir::Graph graph = io::load_model(model, g.seed);
  ir::verify(graph);
  const int threads = il.threads_given ? at::get_num_threads() : env::set_threads(1);
  compress::DependencyGraph deps(graph);
  compress::LatencyTableOptions lo;
  lo.batch = il.batch;
  lo.cache_dir = il.cache == "none" ? "" : il.cache.empty() ? compress::default_latency_cache_dir() : il.cache;
  bool reused = false;
  std::string why, path;
  compress::LatencyTable t = compress::latency_table(graph, deps, lo, &reused, &why, &path);
  std::string source = reused ? "reused " + path
                              : msg("measured in ", std::round(t.build_seconds * 10) / 10, " s",
                                    path.empty() ? "" : ", cached in " + path,
                                    why.empty() ? "" : " (the cached file was not reused: " + why + ")");
  if (as_json) {
    out << report::latency_table_json(model, t, source);
    return 0;
  }
  out << "model: " << model << " (" << graph.name << "), batch " << il.batch << ", " << threads
      << (threads == 1 ? " thread" : " threads") << (il.threads_given ? "" : " (--threads N measures with N)") << "\n";
  out << "latency table: " << source << "\n";
  out << "key: " << t.key.describe() << ", model " << t.key.model << "\n";
  out << "whole model: " << std::fixed << std::setprecision(1) << t.model_us << " us (median)\n";
  if (t.groups.empty()) {
    out << "no prunable channel group (" << deps.num_channels() << " channels, all tied to inputs, outputs or ops "
        << "that cannot be sliced)\n";
    return 0;
  }
  out << "per group: its layers' time (us) by channel count, the others at theirs; * = time steps down there "
         "(no larger count costs as little: where target: {latency: F} may prune to)\n";
  for (const auto& grp : t.groups) {
    out << "\n" << grp.name << ": " << grp.size << " channels, " << std::setprecision(1) << grp.us.back() << " us in "
        << grp.nodes.size() << " nodes";
    if (grp.counts.size() <= 1) {
      out << " (not timed alone: not pruned for latency)\n";
      continue;
    }
    out << "\n";
    std::string line = "  ";
    for (size_t i = 0; i < grp.counts.size(); ++i) {
      std::string cell = msg(grp.counts[i], grp.efficient[i] ? "*" : "", ":",
                             std::round(grp.us[i] * 10.0) / 10.0);
      if (line.size() + cell.size() + 2 > 100) {
        out << line << "\n";
        line = "  ";
      }
      line += cell + "  ";
    }
    out << line << "\n";
  }
  return 0;
}

int cmd_inspect(const std::string& model, bool as_json, const Globals& g, std::ostream& out) {
  ir::Graph graph = io::load_model(model, g.seed);
  ir::verify(graph);
  std::vector<report::LayerRow> rows;
  report::ModelTotals total;
  for (const auto& n : graph.nodes) {
    report::LayerRow l;
    l.name = n.name;
    l.op = n.op;
    l.has_input = !n.inputs.empty();
    if (l.has_input) l.input_shape = graph.shape_of(n.inputs[0]);
    l.output_shape = graph.shape_of(n.outputs[0]);
    for (const auto& [k, p] : n.params) l.params += p.value.numel();
    l.nonzero_params = count_nonzero(n);
    l.flops = ir::node_flops(graph, n);
    l.weight_bits = weight_bits(n, false);
    l.weight_grid_bits = weight_bits(n, true);
    if (n.has_param("weight")) l.execution = quant::planned_execution(graph, n);
    total.params += l.params;
    total.nonzero_params += l.nonzero_params;
    total.flops += l.flops;
    rows.push_back(l);
  }
  total.size_bytes = io::stored_size_bytes(graph);
  if (as_json) {
    out << report::inspect_json(model, rows, total);
    return 0;
  }
  out << "model: " << model << " (" << graph.name << ")\n";
  for (const auto& in : graph.inputs) out << "input: " << in.name << " " << ir::shape_str(in.shape) << "\n";
  // Names are shown whole: they are what exclude: and layers: patterns match.
  size_t name_w = 5;
  for (const auto& l : rows) name_w = std::max(name_w, l.name.size());
  const int nw = static_cast<int>(name_w + 2);
  out << std::left << std::setw(nw) << "layer" << std::setw(14) << "op" << std::setw(20) << "input" << std::setw(20)
      << "output" << std::right << std::setw(12) << "params" << std::setw(12) << "nonzero" << std::setw(14) << "FLOPs"
      << std::setw(6) << "bits" << std::setw(6) << "grid" << "  " << std::left << "runs as" << "\n";
  for (const auto& l : rows) {
    out << std::left << std::setw(nw) << l.name << std::setw(14) << l.op << std::setw(20)
        << (l.has_input ? ir::shape_str(l.input_shape) : "-") << std::setw(20) << ir::shape_str(l.output_shape)
        << std::right << std::setw(12) << with_commas(l.params) << std::setw(12) << with_commas(l.nonzero_params)
        << std::setw(14) << with_commas(l.flops) << std::setw(6)
        << (l.weight_bits ? std::to_string(l.weight_bits) : "-") << std::setw(6)
        << (l.weight_bits ? std::to_string(l.weight_grid_bits) : "-") << "  " << std::left << l.execution << "\n";
  }
  if (const quant::Int8Probe& p = quant::int8_probe(); p.available)
    out << "int8 kernels: oneDNN " << p.isa
        << (p.saturates ? " (saturates int16 pair sums: int8 only for weights on a 7-bit grid)" : " (exact)") << "\n";
  out << "total: " << with_commas(total.params) << " params, " << with_commas(total.nonzero_params) << " non-zero, "
      << with_commas(total.flops) << " FLOPs per sample, " << human_bytes(double(total.size_bytes)) << " stored\n";
  return 0;
}

// inspect --fpga: the FPGA cost estimate per layer (deploy/fpga.h). Options are checked before
// the model is loaded.
int cmd_inspect_fpga(const std::string& model, const deploy::FpgaOptions& fo, bool as_json, const Globals& g,
                     std::ostream& out, std::ostream& err) {
  fo.check();
  ir::Graph graph = io::load_model(model, g.seed);
  ir::verify(graph);
  const deploy::FpgaEstimate e = deploy::estimate_fpga(graph, fo);
  for (const std::string& note : e.notes) err << "warning: " << note << "\n";
  if (as_json) {
    out << report::fpga_json(e, model);
    return 0;
  }
  out << "model: " << model << " (" << graph.name << ")\n"
      << "FPGA estimate (hls4ml io_parallel, Latency strategy): " << fo.clock_mhz << " MHz, reuse factor "
      << fo.reuse_factor << ", precision " << fo.precision << ", input "
      << (fo.input_precision.empty() ? fo.precision : fo.input_precision)
      << (fo.add_softmax ? ", softmax added after the output" : "") << "\n";
  size_t name_w = 5;
  for (const auto& l : e.layers) name_w = std::max(name_w, l.name.size());
  const int nw = static_cast<int>(name_w + 2);
  out << std::left << std::setw(nw) << "layer" << std::setw(10) << "op" << std::right << std::setw(10) << "n_in"
      << std::setw(7) << "n_out" << std::setw(9) << "nonzero" << std::setw(4) << "RF" << std::setw(8) << "mults"
      << std::setw(11) << "bits w/x" << std::setw(7) << "depth" << std::setw(7) << "DSP" << std::setw(9) << "LUT"
      << std::setw(8) << "FF" << std::setw(8) << "cycles" << "\n";
  for (const auto& l : e.layers) {
    const bool dense = l.weights > 0;
    out << std::left << std::setw(nw) << l.name << std::setw(10) << l.op << std::right << std::setw(10) << l.n_in
        << std::setw(7) << l.n_out << std::setw(9) << (dense ? with_commas(l.weights - l.zeros) : "-")
        << std::setw(4) << (dense ? std::to_string(l.reuse_factor) : "-") << std::setw(8)
        << (dense ? with_commas(l.n_mult) : "-") << std::setw(11)
        << (dense ? std::to_string(l.weight_bits) + "/" + std::to_string(l.input_bits) : std::to_string(l.input_bits))
        << std::setw(7) << (dense ? std::to_string(l.adder_depth) : "-") << std::setw(7) << with_commas(l.dsp)
        << std::setw(9) << with_commas(l.lut) << std::setw(8) << with_commas(l.ff) << std::setw(8) << l.cycles
        << "\n";
  }
  out << "total: " << e.cycles << " cycles = " << std::fixed << std::setprecision(1) << e.latency_ns
      << " ns, interval " << e.interval << " cycle" << (e.interval == 1 ? "" : "s") << ", " << with_commas(e.dsp)
      << " DSP, " << with_commas(e.lut) << " LUT, " << with_commas(e.ff) << " FF\n";
  out << "mults: hls4ml's multiplier limit ceil(n_in*n_out/RF) - floor(zeros/RF); with RF 1 each constant product "
         "is a shift, a shift-add, a LUT or a DSP multiplier by its value (docs/fpga.md)\n";
  return 0;
}

// A model that carries an input transform (trained with resize, channels or normalize in its
// data block) gets that transform, whatever the data file says about them: the data is read
// without normalization and goes through the model's transform.
// A model that carries class names (data.classes) gets the data's labels renumbered to them by
// name, so a file holding only some classes is evaluated against the right outputs.
data::Splits load_data_file(const std::string& path, uint64_t seed,
                            const data::Transform& model_transform = {},
                            const std::vector<std::string>& model_classes = {}) {
  auto root = pipeline::yaml_to_params(read_text(path), path);
  // A workflow file will do: its other top-level keys (seed, model, baseline...) are the run's,
  // not the data's, and are not read here.
  std::shared_ptr<Params> block = root->has("data") ? root->get_map("data") : root;
  data::DataOptions opts = data::DataOptions::from_params(*block);
  data::Splits splits;
  if (model_transform.empty()) {
    splits = data::load(opts, seed);
  } else {
    opts.normalize = "none";
    opts.resize.clear();
    opts.channels = 0;
    splits = data::load(opts, seed);
    data::set_transform(splits, std::make_shared<const data::Transform>(model_transform),
                        path + ": data");
  }
  data::map_to_model_classes(splits, model_classes, path);
  return splits;
}

int cmd_eval(const std::string& model, const std::string& data_yaml, bool as_json, const Globals& g,
             std::ostream& out) {
  ir::Graph graph = io::load_model(model, g.seed);
  ir::verify(graph);
  const data::Transform transform = data::Transform::from_metadata(graph.metadata, model);
  data::Splits splits =
      load_data_file(data_yaml, g.seed, transform, data::class_names_from_metadata(graph.metadata));
  // The labels need only be valid outputs of the model (a 1000-class model on a few classes).
  // Every split is checked, not only the evaluated one: a bad label anywhere is a bad data file.
  const int64_t k = train::output_classes(graph);
  if (k > 0) {
    train::check_labels(splits.train, k, msg(data_yaml, ": the training split"));
    train::check_labels(splits.val, k, msg(data_yaml, ": the validation split"));
    train::check_labels(splits.test, k, msg(data_yaml, ": the test split"));
  }
  train::Metrics m = train::evaluate(graph, splits.test, 256);
  if (as_json) {
    out << report::eval_json(model, splits.description, m, splits.class_names);
    return 0;
  }
  out << "model: " << model << "\ndata: " << splits.description << " (evaluated on the test split)\n";
  if (!transform.empty()) out << "input transform (from the model): " << transform.describe() << "\n";
  out << std::fixed << std::setprecision(4) << "accuracy: " << m.accuracy << "\nloss: " << m.loss << "\n";
  out << "class  name                  accuracy  precision\n";
  for (size_t i = 0; i < m.classes.size(); ++i) {
    const size_t c = static_cast<size_t>(m.classes[i]);
    out << std::setw(5) << c << "  " << std::left << std::setw(20)
        << (c < splits.class_names.size() ? splits.class_names[c] : "") << std::right
        << std::setw(10) << m.per_class_accuracy[i] << std::setw(11) << m.per_class_precision[i]
        << "\n";
  }
  if (static_cast<int64_t>(m.classes.size()) < m.num_outputs)
    out << "(" << m.classes.size() << " of the model's " << m.num_outputs
        << " classes occur in the data)\n";
  return 0;
}

int cmd_infer(const std::string& model, const std::string& input, const std::string& output, int64_t batch,
              const Globals& g, std::ostream& out) {
  ir::Graph graph = io::load_model(model, g.seed);
  ir::verify(graph);
  at::Tensor x = data::read_npy(input);
  // A model trained with an input transform takes raw images, as the data set stores them:
  // bytes are scaled to [0, 1] as the IDX loader does, then transformed batch by batch.
  const data::Transform transform = data::Transform::from_metadata(graph.metadata, model);
  if (graph.inputs.size() != 1)
    throw UnsupportedError(msg("infer: the model has ", graph.inputs.size(), " inputs; only single-input models are supported"));
  const auto& shape = graph.inputs[0].shape;
  // A per-feature normalization (tabular data: CSV, HDF5, jets) takes raw N x F rows.
  const bool rows = !transform.empty() && transform.resize.empty() && transform.channels == 0 &&
                    shape.size() == 2;
  if (!transform.empty() && !rows && x.scalar_type() == at::kByte) x = x.to(at::kFloat).div_(255.0);
  x = x.to(at::kFloat);
  if (rows) {
    if (x.dim() == 1) x = x.unsqueeze(0);
    if (x.dim() != 2 || x.size(1) != static_cast<int64_t>(transform.mean.size()))
      throw InputError(msg(input, ": the model standardizes rows of ", transform.mean.size(),
                           " features and takes N x ", transform.mean.size(), " raw values; got ",
                           "shape ", x.sizes()));
  } else if (!transform.empty()) {
    if (x.dim() != 3 && x.dim() != 4)
      throw InputError(msg(input, ": the model transforms its input (", transform.describe(),
                           ") and takes images N x C x H x W or N x H x W; got shape ", x.sizes()));
    if (x.dim() == 3) x = x.unsqueeze(1);
    std::vector<int64_t> sample(x.sizes().begin() + 1, x.sizes().end());
    transform.output_shape(sample, input);  // checks the channels before any batch runs
  } else if (x.dim() == static_cast<int64_t>(shape.size()) - 1) {
    // A single sample without the batch dimension is accepted too.
    x = x.unsqueeze(0);
  }
  at::NoGradGuard no_grad;
  exec::Executor ex(graph);
  std::vector<at::Tensor> outs;
  for (int64_t start = 0; start < x.size(0); start += batch)
    outs.push_back(ex.forward(transform.apply(x.narrow(0, start, std::min(batch, x.size(0) - start)))));
  at::Tensor y = at::cat(outs, 0);
  data::write_npy(output, y);
  out << "wrote " << output << " " << y.sizes() << "\n";
  return 0;
}

// Bench options beyond the model and batches.
struct BenchOptions {
  bool as_json = false, profile = false;
  int64_t warmup = 5, runs = 0;  // runs 0: as many as fit in the time budget
  bool threads_given = false;    // --threads on the command line; else bench measures on 1
};

int cmd_bench(const std::string& model, std::vector<int64_t> batches, const BenchOptions& bo,
              const Globals& g, std::ostream& out) {
  ir::Graph graph = io::load_model(model, g.seed);
  ir::verify(graph);
  if (batches.empty()) batches = {1, 64};
  // One thread unless told otherwise: on a shared machine it is the measurement that repeats.
  const int threads = bo.threads_given ? at::get_num_threads() : env::set_threads(1);
  deploy::LatencyOptions lo;
  lo.budget_s = 3.0;
  lo.warmup = bo.warmup;
  lo.fixed_runs = bo.runs;
  std::vector<deploy::LatencyStats> all;
  bool noisy = false;
  for (int64_t b : batches) {
    all.push_back(deploy::measure_latency({&graph}, b, lo)[0]);
    noisy |= all.back().noisy;
  }
  const std::string advice = noisy ? deploy::noise_advice(threads) : "";
  if (bo.as_json) {
    std::vector<std::vector<deploy::OpTime>> profiles;
    if (bo.profile)
      for (int64_t b : batches) profiles.push_back(deploy::profile_ops(graph, b));
    out << report::bench_json(model, threads, all, profiles, advice);
    return 0;
  }
  out << "model: " << model << ", threads: " << threads
      << (bo.threads_given ? "" : " (bench's default; --threads N measures with N)")
      << ", blas: " << env::blas_name() << ", warm-up runs: " << bo.warmup << "\n";
  out << " batch   median us     p10 us     p90 us  spread   samples/s   runs\n";
  for (const auto& s : all)
    out << std::setw(6) << s.batch << std::fixed << std::setprecision(1) << std::setw(12) << s.median_us
        << std::setw(11) << s.p10_us << std::setw(11) << s.p90_us << std::setw(7) << std::setprecision(0)
        << 100.0 * s.spread << "%" << std::setprecision(1) << std::setw(12) << s.samples_per_s << std::setw(7)
        << s.runs << (s.noisy ? "  noisy" : "") << "\n";
  // Where the time is spent depends on the CPU and the kernels oneDNN picked for it: say both.
  const auto machine = env::describe();
  const std::string cpu = machine.count("cpu") ? machine.at("cpu") : "unknown CPU";
  for (const auto& s : all) {
    if (s.conv_implementations.empty()) continue;
    out << "convolutions at batch " << s.batch << " (" << cpu << ", oneDNN " << quant::int8_probe().isa << "):";
    const char* sep = " ";
    for (const auto& [impl, count] : s.conv_implementations) {
      out << sep << impl << " x" << count;
      sep = ", ";
    }
    out << "\n";
  }
  if (noisy)
    out << "warning: a median above is uncertain (its 95% interval is wider than +-"
        << static_cast<int>(100 * deploy::kNoisyHalfWidth) << "%): " << advice << "\n";
  if (bo.profile)
    for (int64_t b : batches) {
      out << "\nbatch " << b << ", time by op type (per node, median of 20 runs):\n         op  nodes        us   share\n";
      for (const auto& t : deploy::profile_ops(graph, b))
        out << std::setw(11) << t.op << std::setw(7) << t.nodes << std::setw(10) << std::setprecision(1) << t.us
            << std::setw(7) << std::setprecision(1) << 100.0 * t.share << "%\n";
    }
  return 0;
}

int cmd_export(const std::string& model, const std::string& format, const std::string& path,
               const deploy::CppExportOptions& cpp, bool cpp_given, const Globals& g, std::ostream& out) {
  deploy::check_export_format(format, "--to");
  if (cpp_given && format != "cpp")
    throw ConfigError(msg("--cpp-unroll and --golden apply to --to cpp only (here --to ", format, ")"));
  cpp.validate();
  ir::Graph graph = io::load_model(model, g.seed);
  ir::verify(graph);
  if (format == "cpp") {
    deploy::CppExportOptions o = cpp;
    o.seed = g.seed;
    deploy::export_cpp(graph, o, path);
    out << "wrote " << path << "/ (model.h, model.cpp, check.cpp, golden.bin with " << o.golden_count
        << " vectors, Makefile, README.md)\n";
    return 0;
  }
  deploy::export_model(graph, format, path);
  out << "wrote " << path << "\n";
  return 0;
}

// The command that continues an interrupted autotune search: this one with --resume.
std::string resume_command(const std::string& config_path, const std::string& out_dir,
                           const std::vector<std::string>& sets) {
  auto quote = [](const std::string& s) {
    if (!s.empty() && s.find_first_of(" \t\"'$`\\*?[]{}()<>|&;#~!") == std::string::npos)
      return s;
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string cmd = "squeeze run " + quote(config_path) + " --resume";
  if (!out_dir.empty()) cmd += " --out " + quote(out_dir);
  for (const auto& s : sets) cmd += " --set " + quote(s);
  return cmd;
}

// Leaves the data-parallel group however the run ends.
struct GroupScope {
  ~GroupScope() { dist::shutdown(); }
};

int cmd_run(const std::string& config_path, const std::string& out_dir, const std::vector<std::string>& sets,
            bool resume, bool force, bool worker, const DistFlags& df, const std::vector<std::string>& args,
            const Globals& g, std::ostream& out, std::ostream& err) {
  // Every flag and the config are checked before any process starts or joins a group.
  std::optional<dist::Options> group = resolve_group(df);
  pipeline::WorkflowConfig cfg = pipeline::load_config(config_path, sets);
  if (g.threads > 0) cfg.threads = g.threads;
  const int processes = df.nproc > 1 ? df.nproc : group ? group->world_size : 1;
  if (processes > 1 && cfg.pipeline)
    throw ConfigError(msg("pipeline.type: ", cfg.pipeline->type,
                          " runs in one process; data-parallel runs (--nproc, --world-size, "
                          "WORLD_SIZE) take experiments workflows",
                          cfg.pipeline->autotune ? " (autotune spreads over processes with --worker)"
                                                 : ""));
  if (df.nproc > 1) {
    const std::string dir = out_dir.empty() ? cfg.output.dir : out_dir;
    const std::string hint = msg("The finished work is kept in ", dir, "/run.json. Continue with:\n  ",
                                 resume_command(config_path, out_dir, sets), " --nproc ", df.nproc);
    return launch(df.nproc, df, rank_arguments(args), hint, err);
  }
  GroupScope scope;
  if (group) {
    // Ranks other than 0 write nothing and say little: rank 0 speaks for the run.
    if (group->rank != 0 && log::level() < log::Level::kWarn) log::set_level(log::Level::kWarn);
    dist::init(*group);
  }
  pipeline::RunOptions ro;
  ro.out_dir = out_dir;
  ro.overrides = sets;
  ro.resume = resume;
  ro.force = force;
  ro.worker = worker;
  report::Report rep;
  try {
    rep = pipeline::run_workflow(cfg, ro);
  } catch (const interrupt::Interrupted& e) {
    const bool study = cfg.pipeline && cfg.pipeline->autotune;
    const std::string dir = out_dir.empty() ? cfg.output.dir : out_dir;
    const std::string kept = study ? "the finished trials are kept in the study"
                                   : "the finished work is kept in " + dir + "/run.json";
    err << "error: " << e.what() << "; " << kept << ". Continue with:\n  "
        << resume_command(config_path, out_dir, sets) << "\n";
    return 128 + e.signal();
  }
  if (!dist::writes()) return 0;
  out << report::comparison_table(rep);
  out << "report: " << (out_dir.empty() ? cfg.output.dir : out_dir) << "/report.json\n";
  return 0;
}

int cmd_zoo(std::ostream& out) {
  for (const auto& e : models::zoo()) out << std::left << std::setw(20) << e.name << e.description << "\n";
  out << "\ncompression methods (squeeze methods NAME lists a method's parameters):\n";
  for (const auto& m : compress::methods()) out << "  " << std::left << std::setw(18) << m.name << m.description << "\n";
  return 0;
}

// Every check `run` makes before training, through the same code (pipeline::check_workflow).
int cmd_config_check(const std::string& config_path, const std::vector<std::string>& sets, const Globals& g,
                     std::ostream& out) {
  pipeline::WorkflowConfig cfg = pipeline::load_config(config_path, sets);
  if (g.threads > 0) cfg.threads = g.threads;
  pipeline::check_workflow(cfg);
  size_t stages = 0;
  for (const auto& e : cfg.experiments) stages += e.stages.size();
  out << config_path << ": ok (";
  if (cfg.pipeline && cfg.pipeline->autotune)
    out << "pipeline autotune, " << cfg.pipeline->autotune->stages.size() << " stages, "
        << cfg.pipeline->autotune->space.size() << " tuned parameters";
  else if (cfg.pipeline && cfg.pipeline->progressive)
    out << "pipeline progressive, target " << cfg.pipeline->progressive->target_compression << "x";
  else if (cfg.pipeline && cfg.pipeline->hep_trigger)
    out << "pipeline hep-trigger, target " << cfg.pipeline->hep_trigger->target_latency_ns << " ns at "
        << cfg.pipeline->hep_trigger->clock_mhz << " MHz";
  else if (cfg.pipeline)
    out << "pipeline " << cfg.pipeline->type << ", " << cfg.pipeline->steps.size() << " steps";
  else
    out << cfg.experiments.size() << " experiments, " << stages << " stages";
  out << ")\n";
  return 0;
}

int cmd_methods(const std::string& name, bool markdown, std::ostream& out) {
  if (markdown && !name.empty())
    throw ConfigError("methods: --markdown documents every method; give no NAME with it");
  out << (markdown ? methods_markdown() : methods_text(name));
  return 0;
}

// CLI11's range check prints its bounds as doubles ("0.000000 to 1797693..."): say it plainly.
CLI::Validator integer_at_least(int64_t min) {
  return CLI::Validator(
      [min](std::string& s) -> std::string {
        try {
          size_t used = 0;
          long long v = std::stoll(s, &used);
          if (used == s.size() && v >= min) return "";
        } catch (const std::exception&) {
        }
        return msg("expected an integer >= ", min, ", got '", s, "'");
      },
      "");  // the option's help says the range; CLI11 would print this next to the type
}

// A did-you-mean for CLI11's "arguments were not expected": the closest option of the
// subcommand given (and the global ones), or the closest subcommand.
std::string suggestion(const CLI::App& app, const std::vector<std::string>& args) {
  const CLI::App* sub = nullptr;
  for (const CLI::App* s : app.get_subcommands()) sub = s;
  std::vector<std::string> names;
  for (const CLI::App* a : {sub, &app}) {
    if (!a) continue;
    for (const CLI::Option* o : a->get_options()) {
      for (const auto& n : o->get_lnames()) names.push_back("--" + n);
      for (const auto& n : o->get_snames()) names.push_back("-" + n);
    }
  }
  for (const std::string& arg : args) {
    if (arg.size() < 2 || arg[0] != '-') continue;
    const std::string flag = arg.substr(0, arg.find('='));
    if (std::find(names.begin(), names.end(), flag) != names.end()) continue;
    std::string near = did_you_mean(flag, names);
    if (!near.empty()) return msg("unknown option '", flag, "'; did you mean '", near, "'?");
  }
  if (!sub) {
    std::vector<std::string> subs;
    for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; }))
      subs.push_back(s->get_name());
    for (const std::string& arg : args) {
      if (arg.empty() || arg[0] == '-') continue;
      std::string near = did_you_mean(arg, subs);
      if (!near.empty()) return msg("unknown command '", arg, "'; did you mean '", near, "'?");
      break;
    }
  }
  return "";
}

}  // namespace

int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  CLI::App app{"squeeze: compress trained neural networks (prune, quantize, low-rank factorize, distill)", "squeeze"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  app.set_version_flag("--version", std::string("squeeze ") + SQUEEZE_VERSION);
  app.footer(
      "MODEL is an .onnx file, a .sqz checkpoint or zoo:NAME (squeeze zoo lists them).\n"
      "Exit codes: 0 success, 1 runtime failure, 2 bad usage, config or input.\n"
      "Examples:\n"
      "  squeeze config --example > workflow.yaml && squeeze run workflow.yaml\n"
      "  squeeze inspect zoo:small_cnn\n"
      "  squeeze methods prune\n"
      "  squeeze COMMAND --help   (each command's options and an example)");
  Globals g;
  app.add_flag("-q,--quiet", g.quiet, "Print only results and errors");
  app.add_option("--log-level", g.log_level, "debug, info, warn, error or quiet")->capture_default_str();
  auto* threads_opt = app.add_option("--threads", g.threads, "Intra-op threads (0: all cores; bench: 1 unless given)")
      ->check(integer_at_least(0))
      ->capture_default_str();
  app.add_option("--seed", g.seed, "Seed for zoo: models and data splits")->capture_default_str();

  std::string model, config, out_dir, data_yaml, input, output, format, check_path, method_name;
  std::vector<std::string> sets;
  std::vector<int64_t> batches;
  int64_t infer_batch = 256;
  bool as_json = false, profile = false, example = false, markdown = false, resume = false,
       force = false, worker = false;

  auto* run = app.add_subcommand(
      "run",
      "Run a workflow from a YAML file: experiments (stages from the baseline), or a pipeline "
      "(pipeline: {type: validation | combinations, guard: ..., steps: [...]}, "
      "{type: progressive, guard: ..., target_compression: 8}, {type: autotune, ...}, "
      "{type: hep-trigger, guard: ..., target_latency_ns: 100, clock_mhz: 200, max_dsp: N}, or "
      "{type: hep-jet, guard: ..., rare_tolerance: 0.02, steps: [...]})");
  run->add_option("config", config, "Workflow YAML (squeeze config --example prints one)")->required();
  run->add_option("--out", out_dir, "Output folder (default: output.dir of the config)");
  run->add_option("--set", sets, "Override a config value: key.path=value (repeatable)");
  run->footer(
      "Writes OUTDIR/report.json (.md, .html), models/, run.log and the journal run.json.\n"
      "Examples:\n  squeeze run examples/quickstart.yaml --out runs/q --set data.limit.train=5000\n"
      "  squeeze run examples/quickstart.yaml --out runs/q --resume   # after Ctrl-C or a crash");
  auto* resume_flag = run->add_flag(
      "--resume", resume,
      "Continue the run in the output folder after Ctrl-C, SIGTERM, SIGKILL or a crash: the "
      "baseline, stages, experiments and pipeline candidates it finished (listed in "
      "OUTDIR/run.json) are loaded, not recomputed, and report.json comes out as an "
      "uninterrupted run's; refused when the config differs. autotune: continue the search in "
      "its study (finished trials are kept, the trial that was running is re-run); with the "
      "budget spent, only re-runs the best and writes the report. Ctrl-C (SIGINT) or SIGTERM "
      "stops a run at the next batch, keeps what is finished, prints the resume command, exit "
      "code 128 + signal");
  auto* force_flag = run->add_flag(
      "--force", force,
      "Replace the run the output folder holds (its run.json, run.log, report, models/, "
      "candidates/, state/ are removed first); without --resume or --force such a folder is "
      "refused. Not for autotune (its study decides)");
  force_flag->excludes(resume_flag);
  run->add_flag("--worker", worker,
                "autotune: create or join the study and process trials beside other --worker "
                "processes (each trial runs once), on this machine (SQLite study) or on several "
                "(pipeline.study: postgresql://user@host/db); writes its report into "
                "OUTDIR/workers/HOST-PID")
      ->excludes(resume_flag)
      ->excludes(force_flag);
  DistFlags dist_flags;
  run->add_option("--nproc", dist_flags.nproc,
                  "Data-parallel fine-tuning on this machine: start N processes (ranks) of this "
                  "run, which split every batch (data.batch_size is the global batch) and "
                  "all-reduce gradients over loopback TCP (c10d Gloo); rank 0 writes the outputs. "
                  "Experiments workflows only");
  run->add_option("--rank", dist_flags.rank,
                  "This process's rank in a data-parallel group started by hand (with "
                  "--world-size and --master; default: $RANK as set by torchrun)");
  run->add_option("--world-size", dist_flags.world_size,
                  "Processes in the group (default: $WORLD_SIZE)");
  run->add_option("--master", dist_flags.master,
                  "ADDR:PORT where rank 0 hosts the rendezvous (default: $MASTER_ADDR:$MASTER_PORT, "
                  "else 127.0.0.1:29500; --nproc: a free port of 127.0.0.1)");
  run->add_option("--dist-timeout", dist_flags.timeout_s,
                  "Seconds after which a silent rank counts as lost: the others stop with an "
                  "error naming it")
      ->capture_default_str();

  auto* inspect = app.add_subcommand("inspect", "Per-layer table: op, shapes, params, non-zeros, FLOPs, bits");
  inspect->add_option("model", model, "MODEL: .onnx, .sqz or zoo:NAME")->required();
  inspect->add_flag("--json", as_json, "JSON output");
  InspectLatency inspect_latency;
  auto* latency_flag = inspect->add_flag(
      "--latency", inspect_latency.on,
      "Measure each prunable channel group's time against its channel count (the table target: {latency: F} "
      "prunes by; cached, see --latency-cache)");
  inspect->add_option("--batch", inspect_latency.batch, "--latency: batch size")
      ->check(integer_at_least(1))
      ->capture_default_str()
      ->needs(latency_flag);
  inspect->add_option("--latency-cache", inspect_latency.cache,
                      "--latency: cache folder (default $SQUEEZE_LATENCY_CACHE or ~/.cache/squeeze/latency; none: "
                      "do not cache)")
      ->needs(latency_flag);
  bool fpga = false;
  deploy::FpgaOptions fpga_opts;
  auto* fpga_flag = inspect->add_flag(
      "--fpga", fpga,
      "FPGA cost estimate instead (hls4ml io_parallel, Latency strategy): per layer the multiplications, "
      "DSPs, LUTs, FFs and cycles; totals in cycles and ns (docs/fpga.md)");
  inspect->add_option("--clock-mhz", fpga_opts.clock_mhz, "--fpga: clock frequency in MHz (> 0)")
      ->capture_default_str()
      ->needs(fpga_flag);
  inspect->add_option("--reuse-factor", fpga_opts.reuse_factor,
                      "--fpga: hls4ml reuse factor (>= 1); a layer for which it is not valid gets the closest "
                      "valid one, as hls4ml does, with a warning")
      ->capture_default_str()
      ->needs(fpga_flag);
  inspect->add_option("--precision", fpga_opts.precision,
                      "--fpga: type of tensors without a quantization spec, ap_fixed<W,I> (hls4ml's default)")
      ->capture_default_str()
      ->needs(fpga_flag);
  inspect->add_option("--input-precision", fpga_opts.input_precision,
                      "--fpga: type of the model input (default: --precision)")
      ->needs(fpga_flag);
  inspect->add_flag("--softmax", fpga_opts.add_softmax,
                    "--fpga: count a softmax after the output layer, as hls4ml models converted from Keras "
                    "classifiers have (squeeze's classifiers end in logits)")
      ->needs(fpga_flag);
  fpga_flag->excludes(latency_flag);
  inspect->footer(
      "Examples:\n  squeeze inspect runs/quickstart/models/prune50.sqz --json\n"
      "  squeeze inspect zoo:resnet8 --latency --batch 32   # on 1 thread unless --threads N\n"
      "  squeeze inspect zoo:jet_tagger --fpga --clock-mhz 200 --reuse-factor 1 --precision 'ap_fixed<16,6>' "
      "--softmax");

  auto* eval = app.add_subcommand("eval", "Accuracy, loss and per-class metrics on a data set's test split");
  eval->add_option("model", model, "MODEL: .onnx, .sqz or zoo:NAME")->required();
  eval->add_option("--data", data_yaml, "YAML file with a data: block (a workflow file will do)")->required();
  eval->add_flag("--json", as_json, "JSON output");
  eval->footer("Example:\n  squeeze eval runs/quickstart/models/prune50.sqz --data examples/quickstart.yaml");

  auto* infer = app.add_subcommand("infer", "Run a model on an NPY array");
  infer->add_option("model", model, "MODEL: .onnx, .sqz or zoo:NAME")->required();
  infer->add_option("--input", input, "Input .npy (N x sample shape)")->required();
  infer->add_option("--output", output, "Output .npy")->required();
  infer->add_option("--batch", infer_batch, "Batch size")->check(integer_at_least(1))->capture_default_str();
  infer->footer("Example:\n  squeeze infer model.sqz --input x.npy --output logits.npy");

  auto* bench = app.add_subcommand("bench", "Measure latency and throughput");
  bench->add_option("model", model, "MODEL: .onnx, .sqz or zoo:NAME")->required();
  bench->add_option("--batch", batches, "Batch size (repeatable; default: 1 and 64)")->check(integer_at_least(1));
  BenchOptions bench_opts;
  bench->add_flag("--json", as_json, "JSON output");
  bench->add_flag("--profile", profile, "Also show where the time goes, by op type (with --json: a profile per result)");
  bench->add_option("--warmup", bench_opts.warmup, "Untimed runs per batch size before measuring")
      ->check(integer_at_least(0))
      ->capture_default_str();
  bench->add_option("--runs", bench_opts.runs,
                    "Timed runs per batch size (default: as many as fit in 3 s, at least 5; more while the runs spread widely)")
      ->check(integer_at_least(1));
  bench->footer("Measures on 1 thread unless --threads is given (the figure that repeats on a shared machine);\n"
                "prints the median, the 10th and 90th percentiles, and a warning when they spread widely.\n"
                "Example:\n  squeeze bench zoo:small_cnn --batch 1 --batch 64 --runs 50 --profile");

  auto* exp = app.add_subcommand("export", "Export a model");
  exp->add_option("model", model, "MODEL: .onnx, .sqz or zoo:NAME")->required();
  exp->add_option("--to", format, join(deploy::export_formats(), ", "))->required();
  exp->add_option("--out", output, "Output path (cpp: a new or empty folder)")->required();
  deploy::CppExportOptions cpp_opts;
  auto* unroll_opt = exp->add_option("--cpp-unroll", cpp_opts.unroll,
                                     "cpp: auto (layers with at most 4096 non-zero weights unrolled, larger ones "
                                     "loop over compressed rows), always, never")
                         ->check(CLI::IsMember({"auto", "always", "never"}))
                         ->capture_default_str();
  auto* golden_opt = exp->add_option("--golden", cpp_opts.golden_count,
                                     "cpp: golden vectors written and checked (seeded random inputs, --seed)")
                         ->check(CLI::Range(int64_t(1), int64_t(1000000)))
                         ->capture_default_str();
  exp->footer(
      "--to cpp writes a folder: model.h and model.cpp (standard C++17 only) computing exactly what squeeze\n"
      "computes for MLP graphs (Linear, Relu, Identity, Dropout, Flatten, Reshape, a final Softmax) in\n"
      "fixed point (method fixed_point) or int8 (method quantize, int8 kernels) bit for bit, or float\n"
      "within 1e-4; golden.bin from squeeze's executor, check.cpp and a Makefile that verify it.\n"
      "Other ops are refused (exit code 2) before anything is written.\n"
      "Examples:\n  squeeze export runs/quickstart/models/prune50.sqz --to onnx --out prune50.onnx\n"
      "  squeeze export tagger.sqz --to cpp --out tagger_cpp --golden 10000 && make -C tagger_cpp test");

  auto* zoo = app.add_subcommand("zoo", "List the zoo models and compression methods");
  zoo->footer("Example:\n  squeeze zoo");

  auto* cfg = app.add_subcommand(
      "config", "Print an annotated example workflow (--example), or check a workflow without running it (--check)");
  auto* ex_flag = cfg->add_flag("--example", example, "Print an annotated workflow with every top-level key");
  auto* check_opt = cfg->add_option("--check", check_path, "Workflow YAML to check");
  cfg->add_option("--set", sets, "Override a config value: key.path=value (repeatable)")->needs(check_opt);
  ex_flag->excludes(check_opt);
  cfg->footer(
      "--check makes every check run makes before it trains, through the same code: the config is parsed,\n"
      "every stage's pass is made (its parameters checked), the data is loaded, the model and any\n"
      "distillation teachers are built or loaded and checked against the data and each other. Nothing is\n"
      "trained, evaluated or written. Loading takes as long as in run (data.limit shortens it).\n"
      "Prints 'CONFIG: ok (N experiments, M stages)', or the error with exit code 2.\n"
      "Examples:\n  squeeze config --example > workflow.yaml\n"
      "  squeeze config --check workflow.yaml --set data.limit.train=1000");

  auto* methods = app.add_subcommand(
      "methods", "Every compression method's parameters: type, default, valid values (from the validating code)");
  methods->add_option("name", method_name, "One method (name or alias); default: all");
  methods->add_flag("--markdown", markdown, "Markdown, as in docs/methods.md");
  methods->footer("Example:\n  squeeze methods quantize");

  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    out << e.what() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    err << "error: " << e.what() << "\n";
    if (std::string hint = suggestion(app, args); !hint.empty()) err << hint << "\n";
    const CLI::App* sub = nullptr;
    for (const CLI::App* s : app.get_subcommands()) sub = s;
    err << "run 'squeeze " << (sub ? sub->get_name() + " " : std::string()) << "--help' for usage\n";
    return 2;
  }

  try {
    check_fault_injection();
    log::set_level(g.quiet ? log::Level::kWarn : log::parse_level(g.log_level));
    env::set_threads(g.threads);
    env::keep_freed_memory();
    env::check_blas();
    if (run->parsed())
      return cmd_run(config, out_dir, sets, resume, force, worker, dist_flags, args, g, out, err);
    if (inspect->parsed()) {
      if (fpga) return cmd_inspect_fpga(model, fpga_opts, as_json, g, out, err);
      if (inspect_latency.on) {
        inspect_latency.threads_given = threads_opt->count() > 0;
        return cmd_inspect_latency(model, as_json, inspect_latency, g, out);
      }
      return cmd_inspect(model, as_json, g, out);
    }
    if (eval->parsed()) return cmd_eval(model, data_yaml, as_json, g, out);
    if (infer->parsed()) return cmd_infer(model, input, output, infer_batch, g, out);
    if (bench->parsed()) {
      bench_opts.as_json = as_json;
      bench_opts.profile = profile;
      bench_opts.threads_given = threads_opt->count() > 0;
      return cmd_bench(model, batches, bench_opts, g, out);
    }
    if (exp->parsed())
      return cmd_export(model, format, output, cpp_opts, unroll_opt->count() + golden_opt->count() > 0, g, out);
    if (zoo->parsed()) return cmd_zoo(out);
    if (cfg->parsed()) {
      if (example) {
        out << example_config();
        return 0;
      }
      if (check_path.empty()) throw ConfigError("config: give --example or --check CONFIG.yaml");
      return cmd_config_check(check_path, sets, g, out);
    }
    if (methods->parsed()) return cmd_methods(method_name, markdown, out);
  } catch (const UserError& e) {
    err << "error: " << e.what() << "\n";
    return 2;
  } catch (const Error& e) {
    err << "error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    err << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    err << "error: " << e.what() << "\n";
    return 1;
  }
  return 2;
}

}  // namespace squeeze::cli
