#include "squeeze/compress/prune/latency_model.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "squeeze/deploy/latency.h"
#include "squeeze/exec/executor.h"
#include "squeeze/exec/int8.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/log.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      std::string s = line.substr(line.find(':') + 1);
      s.erase(0, s.find_first_not_of(" \t"));
      return s;
    }
  return "unknown";
}

std::string attr_text(const ir::Attr& a) {
  std::ostringstream os;
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
          for (const auto& x : v) os << x << ",";
        } else {
          os << v;
        }
      },
      a);
  return os.str();
}

// The structure that decides the kernels' times: ops, wiring, attributes, parameter shapes.
std::string fingerprint(const ir::Graph& g) {
  std::ostringstream os;
  for (const auto& in : g.inputs) os << in.name << ir::shape_str(in.shape) << ";";
  for (const auto& n : g.nodes) {
    os << n.name << ":" << n.op << "(" << join(n.inputs, ",") << ")->" << join(n.outputs, ",");
    for (const auto& [k, a] : n.attrs) os << " " << k << "=" << attr_text(a);
    for (const auto& [k, p] : n.params) {
      os << " " << k << p.value.sizes() << p.value.scalar_type();
      if (p.qspec) os << "q" << p.qspec->bits;
    }
    if (n.out_qspec) os << " out_q" << n.out_qspec->bits;
    os << ";";
  }
  return fnv1a_hex(os.str());
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

double interp(const std::vector<int64_t>& xs, const std::vector<double>& ys, double x) {
  if (xs.empty()) return 0.0;
  if (x <= double(xs.front())) return ys.front();
  if (x >= double(xs.back())) return ys.back();
  auto it = std::upper_bound(xs.begin(), xs.end(), x, [](double v, int64_t c) { return v < double(c); });
  size_t hi = static_cast<size_t>(it - xs.begin()), lo = hi - 1;
  double t = (x - double(xs[lo])) / double(xs[hi] - xs[lo]);
  return ys[lo] + t * (ys[hi] - ys[lo]);
}

double lower_quartile(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = 0.25 * double(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

// Which 4-D values the executor hands over in channels-last layout (eval mode): the outputs of
// 2-D convolutions and max pooling, and of layout-agnostic ops fed channels-last.
std::set<std::string> channels_last_values(const ir::Graph& g) {
  std::set<std::string> cl;
  for (const auto& n : g.nodes) {
    bool out_cl = false;
    if ((n.op == "Conv" && n.has_param("weight") && n.param("weight").value.dim() == 4) || n.op == "MaxPool")
      out_cl = true;
    else if (exec::layout_agnostic(n.op) && !n.inputs.empty() && cl.count(n.inputs[0]))
      out_cl = true;
    if (!out_cl) continue;
    for (const auto& o : n.outputs)
      if (g.shapes.count(o) && g.shapes.at(o).size() == 4) cl.insert(o);
  }
  return cl;
}

ir::Shape concrete(ir::Shape s, int64_t batch) {
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == ir::kDynamic) s[i] = i == 0 ? batch : 1;
  return s;
}

bool node_changed(const ir::Graph& full, const ir::Graph& pruned, const ir::Node& n) {
  const ir::Node* f = full.find_node(n.name);
  if (!f) return true;
  auto shape = [](const ir::Graph& g, const std::string& v) {
    auto it = g.shapes.find(v);
    return it == g.shapes.end() ? ir::Shape{} : it->second;
  };
  for (const auto& v : n.inputs)
    if (shape(full, v) != shape(pruned, v)) return true;
  for (const auto& v : n.outputs)
    if (shape(full, v) != shape(pruned, v)) return true;
  for (const auto& [k, p] : n.params)
    if (!f->has_param(k) || f->param(k).value.sizes() != p.value.sizes()) return true;
  return false;
}

// The touched nodes of `pruned` as a graph of their own, reading what they read from outside as
// graph inputs (constant-producing nodes without inputs come along).
ir::Graph cut_out(const ir::Graph& pruned, const std::set<std::string>& touched) {
  ir::Graph sub;
  sub.name = pruned.name + "-part";
  std::set<std::string> produced, read;
  std::set<std::string> take = touched;
  for (const auto& n : pruned.nodes)
    if (touched.count(n.name))
      for (const auto& v : n.inputs) {
        const ir::Node* p = pruned.producer(v);
        if (p && p->inputs.empty()) take.insert(p->name);
      }
  for (const auto& n : pruned.nodes) {
    if (!take.count(n.name)) continue;
    for (const auto& v : n.inputs) {
      read.insert(v);
      if (produced.count(v) || v.empty()) continue;
      bool known = false;
      for (const auto& in : sub.inputs) known |= in.name == v;
      if (known) continue;
      ir::ValueInfo vi;
      vi.name = v;
      vi.shape = pruned.shape_of(v);
      for (const auto& gi : pruned.inputs)
        if (gi.name == v) vi.dtype = gi.dtype;
      sub.inputs.push_back(vi);
    }
    for (const auto& v : n.outputs) produced.insert(v);
    sub.nodes.push_back(n);
  }
  for (const auto& n : sub.nodes)
    for (const auto& v : n.outputs)
      if (!read.count(v)) sub.outputs.push_back(v);
  if (sub.outputs.empty() && !sub.nodes.empty()) sub.outputs.push_back(sub.nodes.back().outputs.at(0));
  sub.shapes = pruned.shapes;
  return sub;
}

// Median time of each node of `sub` in microseconds, over `runs` runs after one warm-up run.
std::map<std::string, double> time_part(const ir::Graph& sub, int64_t batch, int64_t runs,
                                        const std::set<std::string>& cl) {
  at::NoGradGuard no_grad;
  exec::Executor ex(sub);
  std::vector<at::Tensor> inputs;
  for (const auto& in : sub.inputs) {
    at::Tensor x = at::randn(concrete(in.shape, batch)).to(in.dtype);
    if (x.dim() == 4 && cl.count(in.name)) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    inputs.push_back(x);
  }
  // Executor::run may reuse (in place) an input it was given as the last use; keep fresh copies.
  auto fresh = [&] {
    std::vector<at::Tensor> v;
    for (const auto& x : inputs) v.push_back(x.clone(x.is_contiguous() ? at::MemoryFormat::Contiguous
                                                                        : at::MemoryFormat::ChannelsLast));
    return v;
  };
  ex.run(fresh());
  std::vector<std::vector<double>> per_node(sub.nodes.size());
  // At least `runs` runs and, for parts that take microseconds, up to 20 ms of them (at most 50
  // runs): a median of a handful of 10-us runs on a shared machine jumps around.
  auto start = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < std::max<int64_t>(runs, 50); ++r) {
    if (r >= runs && std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > 0.02) break;
    std::vector<at::Tensor> args = fresh();
    std::vector<double> us;
    ex.time_nodes(&us);
    ex.run(args);
    ex.time_nodes(nullptr);
    for (size_t i = 0; i < sub.nodes.size() && i < us.size(); ++i) per_node[i].push_back(us[i]);
  }
  std::map<std::string, double> out;
  // The lower quartile: a run the scheduler interrupts (a shared machine) only ever adds time, so
  // the low runs are the kernel's own; the quartile rather than the minimum ignores lucky outliers.
  for (size_t i = 0; i < sub.nodes.size(); ++i) out[sub.nodes[i].name] = lower_quartile(per_node[i]);
  return out;
}

}  // namespace

bool LatencyKey::operator==(const LatencyKey& o) const {
  return cpu == o.cpu && isa == o.isa && torch == o.torch && threads == o.threads && batch == o.batch &&
         model == o.model;
}

std::string LatencyKey::file_name() const {
  return msg(model, "-b", batch, "-t", threads, "-", fnv1a_hex(cpu + "|" + isa + "|" + torch).substr(0, 8), ".txt");
}

std::string LatencyKey::describe() const {
  return msg(cpu, ", ", isa, ", libtorch ", torch, ", ", threads, threads == 1 ? " thread" : " threads", ", batch ",
             batch);
}

LatencyKey current_latency_key(const ir::Graph& graph, int64_t batch) {
  LatencyKey k;
  k.cpu = cpu_model();
  k.isa = quant::int8_probe().isa.empty() ? "unknown" : quant::int8_probe().isa;
  // The executor's kernels are part of what was measured: a table from older kernels is stale.
  k.torch = msg(TORCH_VERSION, " exec", exec::kKernelGeneration);
  k.threads = at::get_num_threads();
  k.batch = batch;
  k.model = fingerprint(graph);
  return k;
}

double GroupLatency::at(double count) const { return interp(counts, us, count); }

int64_t GroupLatency::snap_down(int64_t count) const {
  int64_t best = counts.empty() ? count : counts.front();
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] <= count && efficient[i]) best = counts[i];
  return best;
}

void GroupLatency::finalize(double tol) {
  tolerance = tol;
  us.assign(counts.size(), 0.0);
  for (const auto& n : nodes)
    for (size_t i = 0; i < counts.size() && i < n.us.size(); ++i) us[i] += n.us[i];
  efficient.assign(counts.size(), true);
  for (size_t i = 0; i < counts.size(); ++i)
    for (size_t j = i + 1; j < counts.size(); ++j)
      if (us[j] <= us[i] * (1.0 + tol)) {
        efficient[i] = false;
        break;
      }
}

std::vector<int64_t> LatencyTable::full_counts() const {
  std::vector<int64_t> c;
  for (const auto& g : groups) c.push_back(g.size);
  return c;
}

double LatencyTable::predict_us(const std::vector<int64_t>& counts) const {
  SQZ_ASSERT(counts.size() == groups.size(), "latency prediction for ", counts.size(), " groups of ", groups.size());
  // Per node: its full time (mean over the groups that timed it) and the product of its ratios.
  std::map<std::string, std::pair<double, int>> full;
  std::map<std::string, double> factor;
  for (size_t g = 0; g < groups.size(); ++g) {
    const GroupLatency& grp = groups[g];
    for (const auto& n : grp.nodes) {
      double f = n.us.empty() ? 0.0 : n.us.back();
      auto& acc = full[n.node];
      acc.first += f;
      acc.second += 1;
      if (f <= 0.0) continue;
      double r = interp(grp.counts, n.us, double(counts[g])) / f;
      auto it = factor.find(n.node);
      if (it == factor.end())
        factor[n.node] = r;
      else
        it->second *= r;
    }
  }
  double us = model_us;
  for (const auto& [node, acc] : full) {
    auto it = factor.find(node);
    if (it == factor.end()) continue;
    us += acc.first / double(acc.second) * (it->second - 1.0);
  }
  return std::max(us, 0.0);
}

double LatencyTable::predict_ratio(const std::vector<int64_t>& counts) const {
  return model_us > 0 ? predict_us(counts) / model_us : 1.0;
}

std::vector<int64_t> latency_sample_counts(int64_t size) {
  std::set<int64_t> c;
  if (size <= 16) {
    for (int64_t i = 1; i <= size; ++i) c.insert(i);
  } else {
    int64_t step = size <= 128 ? 8 : size <= 256 ? 16 : size <= 512 ? 32 : ((size / 16 + 15) / 16) * 16;
    for (int64_t m = step; m < size; m += step) {
      c.insert(m);
      c.insert(m - 1);
    }
    c.insert(size - 1);
    c.insert(size);
  }
  return {c.begin(), c.end()};
}

std::string default_latency_cache_dir() {
  if (const char* e = std::getenv("SQUEEZE_LATENCY_CACHE"); e && *e) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/squeeze/latency";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/squeeze/latency";
  return ".squeeze-cache/latency";
}

LatencyTable measure_latency_table(const ir::Graph& graph, const DependencyGraph& deps,
                                   const LatencyTableOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  LatencyTable table;
  table.key = current_latency_key(graph, options.batch);
  {
    deploy::LatencyOptions lo;
    lo.budget_s = options.model_budget_s;
    lo.extend = 1.0;
    table.model_us = deploy::measure_latency({&graph}, options.batch, lo).at(0).median_us;
  }
  const std::set<std::string> cl = channels_last_values(graph);
  for (const auto& grp : deps.groups()) {
    GroupLatency gl;
    gl.name = grp.name;
    gl.size = grp.size;
    std::vector<int64_t> counts = latency_sample_counts(grp.size);
    auto prune_to = [&](int64_t c) {
      std::vector<int64_t> rm;
      for (int64_t u = c; u < grp.size; ++u) rm.push_back(u);
      return deps.prune(graph, {{grp.id, rm}});
    };
    std::set<std::string> touched;
    std::vector<std::string> order;
    if (grp.size > 1) {
      ir::Graph smallest = prune_to(counts.front());
      for (const auto& n : smallest.nodes)
        if (node_changed(graph, smallest, n)) {
          touched.insert(n.name);
          order.push_back(n.name);
        }
    }
    if (touched.empty()) {
      gl.counts = {grp.size};
      table.groups.push_back(std::move(gl));
      table.groups.back().finalize(options.tolerance);
      continue;
    }
    for (const auto& name : order) gl.nodes.push_back({name, {}});
    try {
      for (int64_t c : counts) {
        ir::Graph pruned = c == grp.size ? graph.clone() : prune_to(c);
        ir::Graph sub = cut_out(pruned, touched);
        auto times = time_part(sub, options.batch, options.runs, cl);
        for (auto& n : gl.nodes) n.us.push_back(times.count(n.node) ? times[n.node] : 0.0);
      }
      gl.counts = counts;
    } catch (const std::exception& e) {
      // A part that cannot run alone (an op whose inputs the cut cannot make up): the group is
      // left at its size, and latency-aware pruning will not shrink it.
      log::warn("latency table: group '", grp.name, "' could not be timed on its own (", e.what(),
                "); it will not be pruned for latency");
      gl.counts = {grp.size};
      gl.nodes.clear();
    }
    table.groups.push_back(std::move(gl));
    table.groups.back().finalize(options.tolerance);
  }
  table.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return table;
}

std::string latency_table_text(const LatencyTable& t) {
  std::ostringstream os;
  os.precision(9);
  os << "squeeze-latency-table\t1\n";
  os << "cpu\t" << t.key.cpu << "\nisa\t" << t.key.isa << "\ntorch\t" << t.key.torch << "\nthreads\t"
     << t.key.threads << "\nbatch\t" << t.key.batch << "\nmodel\t" << t.key.model << "\nmodel_us\t" << t.model_us
     << "\nbuild_seconds\t" << t.build_seconds << "\ntolerance\t"
     << (t.groups.empty() ? 0.02 : t.groups.front().tolerance) << "\n";
  for (const auto& g : t.groups) {
    os << "group\t" << g.name << "\t" << g.size << "\ncounts";
    for (auto c : g.counts) os << "\t" << c;
    os << "\n";
    for (const auto& n : g.nodes) {
      os << "node\t" << n.node;
      for (double u : n.us) os << "\t" << u;
      os << "\n";
    }
  }
  os << "end\n";
  return os.str();
}

LatencyTable parse_latency_table(const std::string& text, const std::string& source) {
  LatencyTable t;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  double tol = 0.02;
  bool ended = false;
  auto bad = [&](const std::string& why) {
    return InputError(msg(source, ":", lineno, ": not a squeeze latency table (", why, ")"));
  };
  auto split = [](const std::string& s) {
    std::vector<std::string> f;
    std::string cur;
    std::istringstream ss(s);
    while (std::getline(ss, cur, '\t')) f.push_back(cur);
    return f;
  };
  auto num = [&](const std::string& s) {
    try {
      size_t used = 0;
      double v = std::stod(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
      return v;
    } catch (const std::exception&) {
      throw bad("'" + s + "' is not a number");
    }
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (trim(line).empty()) continue;
    auto f = split(line);
    const std::string& k = f[0];
    if (lineno == 1) {
      if (k != "squeeze-latency-table" || f.size() < 2 || f[1] != "1") throw bad("no header");
      continue;
    }
    if (ended) throw bad("text after 'end'");
    auto need = [&](size_t n) {
      if (f.size() < n) throw bad(k + " has too few fields");
    };
    if (k == "end") {
      ended = true;
    } else if (k == "cpu" || k == "isa" || k == "torch" || k == "model") {
      need(2);
      (k == "cpu" ? t.key.cpu : k == "isa" ? t.key.isa : k == "torch" ? t.key.torch : t.key.model) = f[1];
    } else if (k == "threads") {
      need(2);
      t.key.threads = static_cast<int>(num(f[1]));
    } else if (k == "batch") {
      need(2);
      t.key.batch = static_cast<int64_t>(num(f[1]));
    } else if (k == "model_us") {
      need(2);
      t.model_us = num(f[1]);
    } else if (k == "build_seconds") {
      need(2);
      t.build_seconds = num(f[1]);
    } else if (k == "tolerance") {
      need(2);
      tol = num(f[1]);
    } else if (k == "group") {
      need(3);
      GroupLatency g;
      g.name = f[1];
      g.size = static_cast<int64_t>(num(f[2]));
      t.groups.push_back(g);
    } else if (k == "counts" || k == "node") {
      if (t.groups.empty()) throw bad(k + " before any group");
      GroupLatency& g = t.groups.back();
      if (k == "counts") {
        for (size_t i = 1; i < f.size(); ++i) g.counts.push_back(static_cast<int64_t>(num(f[i])));
        if (g.counts.empty() || g.counts.back() != g.size || !std::is_sorted(g.counts.begin(), g.counts.end()))
          throw bad("counts of group " + g.name + " must ascend to its size");
      } else {
        need(2);
        NodeLatency n;
        n.node = f[1];
        for (size_t i = 2; i < f.size(); ++i) n.us.push_back(num(f[i]));
        if (n.us.size() != g.counts.size()) throw bad("node " + n.node + " has a time per sampled count");
        g.nodes.push_back(n);
      }
    } else {
      throw bad("unknown line '" + k + "'");
    }
  }
  if (!ended) throw bad("truncated: no 'end'");
  for (auto& g : t.groups) g.finalize(tol);
  return t;
}

LatencyTable latency_table(const ir::Graph& graph, const DependencyGraph& deps, const LatencyTableOptions& options,
                           bool* reused, std::string* why, std::string* path) {
  if (reused) *reused = false;
  if (why) why->clear();
  if (options.cache_dir.empty()) return measure_latency_table(graph, deps, options);
  LatencyKey key = current_latency_key(graph, options.batch);
  std::string file = (std::filesystem::path(options.cache_dir) / key.file_name()).string();
  if (path) *path = file;
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    try {
      LatencyTable t = parse_latency_table(read_text(file), file);
      bool groups_match = t.groups.size() == deps.groups().size();
      for (size_t i = 0; groups_match && i < t.groups.size(); ++i)
        groups_match = t.groups[i].name == deps.groups()[i].name && t.groups[i].size == deps.groups()[i].size;
      if (t.key == key && groups_match) {
        if (reused) *reused = true;
        return t;
      }
      if (why)
        *why = t.key != key ? msg("made for ", t.key.describe(), " (model ", t.key.model, "), not ", key.describe(),
                                  " (model ", key.model, ")")
                            : "its groups differ from the model's";
    } catch (const UserError& e) {
      if (why) *why = e.what();
    }
  }
  LatencyTable t = measure_latency_table(graph, deps, options);
  write_text_atomic(file, latency_table_text(t));
  return t;
}

}  // namespace squeeze::compress
