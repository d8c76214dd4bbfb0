// report.json, report.md and report.html (self-contained, SVG charts) for a workflow run.
// The JSON layout is a contract: DESIGN.md section 5.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace squeeze {
class Params;
}

namespace squeeze::report {

struct ClassStats {
  int64_t cls = 0;
  std::string name;       // may be empty
  double accuracy = 0.0;  // = recall (fraction of that class's samples classified right)
  double recall = 0.0;
  double precision = 0.0;
};

struct ModelStats {
  bool evaluated = false;  // false when there was no data: accuracy/loss are omitted then
  double accuracy = 0.0;
  double loss = 0.0;
  int64_t params = 0, nonzero_params = 0, size_bytes = 0, flops = 0;
  std::map<std::string, double> latency_us;  // "batch1", "batch64": median microseconds
  std::vector<ClassStats> per_class;
};

struct StageRecord {
  std::string stage;     // method name
  std::string summary;   // what the pass changed, one line
  bool evaluated = false;
  double accuracy = 0.0;
  int64_t params = 0, nonzero_params = 0, size_bytes = 0, flops = 0;
  double seconds = 0.0;  // pass + fine-tuning wall time
  int64_t finetune_steps = 0;        // optimizer steps of the stage's fine-tuning (0: none)
  double step_ms = 0.0;              // mean wall time of one fine-tuning step
  std::string teacher;               // distillation: the teacher and settings; empty: none
  double teacher_ms_per_step = 0.0;  // distillation: of step_ms, the teacher's forward pass
};

struct ExperimentResult {
  std::string name;
  std::vector<std::string> stages;
  ModelStats stats;
  double accuracy_drop = 0.0;       // baseline accuracy - this accuracy
  double compression_ratio = 1.0;   // baseline size_bytes / size_bytes
  double param_ratio = 1.0;         // baseline nonzero params / nonzero params
  double flops_ratio = 1.0;         // baseline flops / flops
  std::map<std::string, double> speedup;  // "batch1": baseline latency / latency (measured)
  std::vector<StageRecord> history;
  std::map<std::string, std::string> artifacts;  // relative to the output folder
  double seconds = 0.0;
};

// env::describe() plus the int8 probe of this machine (exec/int8.h): what measured numbers
// depend on, for report.json's "environment" and `bench --json`'s "env".
std::map<std::string, std::string> environment();

struct Report {
  std::string squeeze_version;
  std::shared_ptr<Params> config;   // the effective config (after --set), as parsed
  std::string config_text;          // the YAML as given
  std::string config_hash;          // hex SHA-256 or FNV of config_text + overrides
  std::map<std::string, std::string> environment;  // threads, blas, libtorch, host, ...
  std::string model_name;
  std::string data_description;
  ModelStats baseline;
  std::map<std::string, std::string> baseline_artifacts;
  std::vector<ExperimentResult> results;
  // Things that make the numbers misleading (an untrained baseline, ...), one sentence each;
  // listed first in every form of the report, and as "warnings" in report.json.
  std::vector<std::string> warnings;
  double seconds = 0.0;
};

// Writes report.json, report.md and report.html into dir (atomically, each file).
void write_report(const Report& report, const std::string& dir);

// The comparison table printed at the end of a run (plain text, aligned columns).
std::string comparison_table(const Report& report);

}  // namespace squeeze::report
