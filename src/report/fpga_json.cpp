#include "squeeze/report/fpga_json.h"

#include <nlohmann/json.hpp>

namespace squeeze::report {

std::string fpga_json(const deploy::FpgaEstimate& e, const std::string& model) {
  using nlohmann::ordered_json;
  ordered_json layers = ordered_json::array();
  for (const deploy::FpgaLayer& l : e.layers)
    layers.push_back({{"name", l.name},
                      {"op", l.op},
                      {"n_in", l.n_in},
                      {"n_out", l.n_out},
                      {"weights", l.weights},
                      {"zeros", l.zeros},
                      {"reuse_factor", l.reuse_factor},
                      {"n_mult", l.n_mult},
                      {"dsp_products", l.dsp_products},
                      {"lut_products", l.lut_products},
                      {"adder_products", l.adder_products},
                      {"shift_products", l.shift_products},
                      {"weight_bits", l.weight_bits},
                      {"input_bits", l.input_bits},
                      {"result_bits", l.result_bits},
                      {"adder_depth", l.adder_depth},
                      {"path_ns", l.path_ns},
                      {"cycles", l.cycles},
                      {"dsp", l.dsp},
                      {"lut", l.lut},
                      {"ff", l.ff},
                      {"notes", l.notes}});
  ordered_json j;
  if (!model.empty()) j["model"] = model;
  j["clock_mhz"] = e.options.clock_mhz;
  j["reuse_factor"] = e.options.reuse_factor;
  j["precision"] = e.options.precision;
  j["input_precision"] = e.options.input_precision.empty() ? e.options.precision : e.options.input_precision;
  j["softmax_added"] = e.options.add_softmax;
  j["cycles"] = e.cycles;
  j["latency_ns"] = e.latency_ns;
  j["interval"] = e.interval;
  j["dsp"] = e.dsp;
  j["lut"] = e.lut;
  j["ff"] = e.ff;
  j["notes"] = e.notes;
  j["layers"] = layers;
  return j.dump(2) + "\n";
}

}  // namespace squeeze::report
