// A latency model for structured pruning: for each prunable channel group (dependency_graph.h),
// the measured time of the layers that group touches, as a function of the group's channel
// count, on this machine, thread count and batch size.
//
// How it is measured: for a sampled count c of group g, the whole graph is pruned so that g keeps
// c channels (the others keep theirs), the nodes whose shapes changed (g's producers, consumers,
// BatchNorms, activations, pooling, residual adds...) are cut out as a small graph, and that graph
// runs in exec::Executor (eval mode: the same libtorch kernels, channels-last layout, BatchNorm
// folding and in-place ops as the full model) on random inputs of the given batch, in the layout
// the full model hands them over; each node's time is the lower quartile of a few runs (Executor::
// time_nodes; a run the scheduler interrupts only adds time). Counts sampled per group: every multiple of a spacing (8 up to 128 channels, then
// 16, 32, ...), the count one below each (an odd count, so a step at the multiple shows), one below
// the full count, and the full count.
//
// How it predicts: the whole model's latency is measured once (interleaved runs, median); a
// configuration's latency is that figure plus, for every timed node, its full time times
// (the product over the groups it touches of its time at their count / its time at their full
// count) minus its full time. A convolution between groups a and b thus scales with both counts
// (separable in input and output channels); counts between samples are interpolated linearly.
//
// The tables are cached in a text file per model and machine key (below), written atomically;
// a file whose stored key differs from the current one (another CPU, ISA, libtorch, thread
// count, batch or model) is not reused.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/compress/prune/dependency_graph.h"
#include "squeeze/ir/graph.h"

namespace squeeze::compress {

// What a table is valid for.
struct LatencyKey {
  std::string cpu;       // /proc/cpuinfo model name
  std::string isa;       // the ISA oneDNN dispatches to (e.g. avx2, avx512_core_vnni)
  std::string torch;     // libtorch version
  int threads = 1;       // libtorch intra-op threads
  int64_t batch = 1;
  std::string model;     // fingerprint of the graph's structure (ops, attributes, shapes), not weights
  bool operator==(const LatencyKey& o) const;
  bool operator!=(const LatencyKey& o) const { return !(*this == o); }
  std::string file_name() const;  // "<model>-b<batch>-t<threads>-<hash of the rest>.txt"
  std::string describe() const;   // "AMD EPYC, avx2, libtorch 1.13.0, 1 thread, batch 1"
};

// The key for `graph` on this machine with the current libtorch thread count.
LatencyKey current_latency_key(const ir::Graph& graph, int64_t batch);

// One timed node of a group's table.
struct NodeLatency {
  std::string node;
  std::vector<double> us;  // per sampled count of the group (same order as GroupLatency::counts)
};

struct GroupLatency {
  std::string name;                 // the group's first producer (ChannelGroup::name)
  int64_t size = 0;                 // channels in the graph measured
  std::vector<int64_t> counts;      // sampled counts, ascending, the last = size
  std::vector<double> us;           // the sum of the nodes' times at each count
  std::vector<NodeLatency> nodes;
  // Sampled counts where time steps down: no larger sampled count costs at most as much (within
  // `tolerance` of this count's time). Pruning to one of these keeps the most channels for the time.
  std::vector<bool> efficient;
  double tolerance = 0.0;

  // The group's time at `count` channels, interpolated linearly between samples (clamped).
  double at(double count) const;
  // The largest efficient count <= count (the smallest sampled count when none).
  int64_t snap_down(int64_t count) const;
  // Recomputes `us` from the nodes and `efficient` with `tol` (relative).
  void finalize(double tol);
};

struct LatencyTable {
  LatencyKey key;
  double model_us = 0.0;            // the whole model's measured median latency
  std::vector<GroupLatency> groups; // in DependencyGraph::groups() order
  double build_seconds = 0.0;       // wall time spent measuring (0 when loaded)

  // Predicted latency in microseconds with counts[g] channels in group g (groups() order).
  double predict_us(const std::vector<int64_t>& counts) const;
  // predict_us / model_us.
  double predict_ratio(const std::vector<int64_t>& counts) const;
  std::vector<int64_t> full_counts() const;
};

// Sampled channel counts for a group of `size` channels (see the file comment), ascending.
std::vector<int64_t> latency_sample_counts(int64_t size);

struct LatencyTableOptions {
  int64_t batch = 1;
  int64_t runs = 5;            // timed runs per sample (lower quartile) at least, after one warm-up run;
                               // more (up to 50) while a sample has taken less than 20 ms
  double model_budget_s = 1.0; // measuring the whole model
  double tolerance = 0.02;     // GroupLatency::efficient
  // Folder of cached tables; "" = no caching. default_latency_cache_dir(): $SQUEEZE_LATENCY_CACHE,
  // else $XDG_CACHE_HOME/squeeze/latency, else ~/.cache/squeeze/latency.
  std::string cache_dir;
};
std::string default_latency_cache_dir();

// Measures the table of `graph` (shapes inferred) for the groups of `deps`.
LatencyTable measure_latency_table(const ir::Graph& graph, const DependencyGraph& deps,
                                   const LatencyTableOptions& options);

// The cached table for `graph` when options.cache_dir holds one with the current key, else a new
// measurement written there. *reused (if given) says which; *why (if given) says why a cached file
// was not reused ("" when there was none or it was reused); *path receives the cache file.
LatencyTable latency_table(const ir::Graph& graph, const DependencyGraph& deps,
                           const LatencyTableOptions& options, bool* reused = nullptr,
                           std::string* why = nullptr, std::string* path = nullptr);

// Text form of a table (the cache file) and back. Parsing throws InputError naming `source`.
std::string latency_table_text(const LatencyTable& table);
LatencyTable parse_latency_table(const std::string& text, const std::string& source);

}  // namespace squeeze::compress
