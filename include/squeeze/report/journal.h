// A run's journal, DIR/run.json: what a run has finished so far, so that `squeeze run --resume`
// continues it without redoing finished work (pipeline/run_state.h reads and writes it).
//
//   {"format": "squeeze-run", "version": 1, "state": "running" | "finished",
//    "config": "<the YAML text>", "overrides": ["k=v", ...], "config_hash": "...",
//    "seed": 0, "runs": 2,
//    "units": [{"key": "baseline", "checkpoint": "models/baseline.sqz", "stats": {...},
//               "artifacts": {...}, "warnings": [...]},
//              {"key": "experiment/a/stage/0", "checkpoint": "state/a/stage-0.sqz", "stage": {...}},
//              {"key": "experiment/a", "checkpoint": "models/a.sqz", "result": {...}},
//              {"key": "candidate/3", "checkpoint": "candidates/04-x.sqz", "candidate": {...}}]}
//
// Numbers are written with enough digits to read back bit for bit, so a report rebuilt from the
// journal equals the one the uninterrupted run would have written.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/report/report.h"

namespace squeeze::report {

// One finished unit of work: the baseline, a stage, an experiment, a pipeline candidate. Which
// parts are set depends on the unit; the runner that wrote it reads it back.
struct JournalUnit {
  std::string key;
  std::string checkpoint;  // its model, relative to the output folder ("" = none)
  std::optional<ModelStats> stats;                // baseline
  std::vector<EpochPoint> curve;                  // baseline: its training, per epoch
  std::map<std::string, std::string> artifacts;   // baseline
  std::vector<std::string> warnings;              // warnings the unit added to the report
  std::vector<StageRecord> stages;                // a stage (one), a candidate's new stages
  std::optional<ExperimentResult> result;         // an experiment
  std::optional<CandidateRecord> candidate;       // a pipeline candidate (without its steps,
                                                  // which the pipeline knows from its config)
  std::string skipped;                            // a candidate skipped while running: why
};

struct Journal {
  std::string state = "running";  // running | finished
  std::string config;             // the config's YAML text as given
  std::vector<std::string> overrides;  // the --set assignments
  std::string config_hash;
  uint64_t seed = 0;
  int64_t runs = 1;               // how many processes have worked on it (1 + resumes)
  std::vector<JournalUnit> units;

  const JournalUnit* find(const std::string& key) const;
};

std::string journal_json(const Journal& journal);
// Throws InputError naming `path` when the text is not a journal this version reads.
Journal parse_journal(const std::string& text, const std::string& path);

}  // namespace squeeze::report
