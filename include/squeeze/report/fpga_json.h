// JSON of an FPGA cost estimate (deploy/fpga.h): `squeeze inspect --fpga --json`, and the object
// the report and the pipelines store under "fpga". Built here so the JSON library stays inside
// report/.
#pragma once

#include <string>

#include "squeeze/deploy/fpga.h"

namespace squeeze::report {

// {"clock_mhz", "reuse_factor", "precision", "input_precision", "softmax_added",
//  "cycles", "latency_ns", "interval", "dsp", "lut", "ff", "notes": [...],
//  "layers": [{"name", "op", "n_in", "n_out", "weights", "zeros", "reuse_factor", "n_mult",
//              "dsp_products", "lut_products", "adder_products", "shift_products", "weight_bits",
//              "input_bits", "result_bits", "adder_depth", "path_ns", "cycles", "dsp", "lut", "ff",
//              "notes"}]}
// One line per indent level of 2; `model` non-empty adds "model" first (the inspect output).
std::string fpga_json(const deploy::FpgaEstimate& estimate, const std::string& model = "");

}  // namespace squeeze::report
