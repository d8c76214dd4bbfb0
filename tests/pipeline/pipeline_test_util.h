// Shared by the pipeline tests: a tiny jet-tagger workflow head (trained baseline, synthetic jets
// with a validation split), running a pipeline through the CLI and reading its report.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze::testing {

// Everything but the pipeline block: 3000 synthetic jets (val 10%, test 20%), a jet_tagger trained
// for 2 epochs, no latency measurement (it would only cost time here).
inline const char* kPipelineHead = R"(seed: 3
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 3000, split: {val: 0.1, test: 0.2}}
baseline: {train: {epochs: 2, lr: 3.0e-3}}
output: {latency: false}
)";

// Writes kPipelineHead + `pipeline` (YAML) to dir/w.yaml and runs it in-process into dir/out.
inline CliResult run_pipeline(const TempDir& dir, const std::string& pipeline) {
  dir.write("w.yaml", kPipelineHead + pipeline);
  return cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
}

// A pipeline block and the words its error message must contain.
using RefusedCase = std::pair<std::string, std::vector<std::string>>;

// Each pipeline block is refused with exit code 2, its message naming every word, before anything
// is trained or written (no output folder).
inline void expect_refused_before_training(const std::vector<RefusedCase>& cases) {
  for (const auto& [yaml, words] : cases) {
    TempDir dir;
    auto r = run_pipeline(dir, yaml);
    EXPECT_EQ(r.code, 2) << yaml << "\n" << r.err;
    for (const auto& w : words)
      EXPECT_NE(r.err.find(w), std::string::npos) << w << " in: " << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("out"))) << yaml;
  }
}

inline nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(std::ifstream(path));
}

inline std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace squeeze::testing
