// The --json outputs of `squeeze inspect`, `eval` and `bench` (DESIGN.md section 3). Built here
// so the JSON library stays inside report/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "squeeze/compress/prune/latency_model.h"
#include "squeeze/deploy/latency.h"
#include "squeeze/ir/graph.h"
#include "squeeze/train/trainer.h"

namespace squeeze::report {

struct LayerRow {
  std::string name, op;
  ir::Shape input_shape, output_shape;  // kDynamic becomes null; no input: empty + has_input false
  bool has_input = true;
  int64_t params = 0, nonzero_params = 0, flops = 0;
  int weight_bits = 0;  // 0: no weights; 32: float
  int weight_grid_bits = 0;  // the grid's bits: weight_bits, or one less with reduce_range
  std::string execution;     // exec/int8.h planned_execution: int8, int8-dynamic, simulated, float
};

struct ModelTotals {
  int64_t params = 0, nonzero_params = 0, flops = 0, size_bytes = 0;
};

std::string inspect_json(const std::string& model, const std::vector<LayerRow>& layers, const ModelTotals& total);
// squeeze inspect --latency --json: {"model", "source", "key": {cpu, isa, torch, threads, batch, model},
// "model_us", "groups": [{"name", "channels", "us", "nodes", "table": [{"channels", "us", "steps_down"}]}]}.
std::string latency_table_json(const std::string& model, const compress::LatencyTable& table,
                               const std::string& source);
// squeeze eval --json: accuracy, loss, num_outputs (the model's classes), per_class for the
// classes that occur in the data, and confusion as train::Metrics defines it.
std::string eval_json(const std::string& model, const std::string& data, const train::Metrics& metrics,
                      const std::vector<std::string>& class_names);
// `profiles` (bench --profile): one per result, in order; each result gets a "profile" list of
// {op, nodes, us, share}. Each result carries its p10/p90, spread and noisy flag; "noisy" at the
// top is true when any is, and "advice" then says what would measure better.
std::string bench_json(const std::string& model, int threads, const std::vector<deploy::LatencyStats>& results,
                       const std::vector<std::vector<deploy::OpTime>>& profiles = {},
                       const std::string& advice = "");

}  // namespace squeeze::report
