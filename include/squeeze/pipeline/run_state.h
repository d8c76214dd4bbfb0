// A run's output folder as a resumable unit of work: the journal DIR/run.json
// (report/journal.h) lists every finished unit (the baseline, each stage, each experiment, each
// pipeline candidate) with its checkpoint and its report records, so that
// `squeeze run CONFIG --resume` loads finished units instead of recomputing them.
//
// Folder rules (checked in the constructor, before any data is loaded or anything written):
//   - a fresh run refuses a folder that holds a run (run.json, or a report.json of a run made
//     without a journal): ConfigError naming what is there and the two ways on (--resume,
//     --force);
//   - --resume of an existing folder with no journal and nothing but what a run stopped before
//     its first journal write leaves (temporary files, run.log, config.yaml) starts the run from
//     the beginning;
//   - otherwise --resume needs a journal whose config equals this one, except for the keys that cannot
//     change a result (kFreeKeys: output.dir, output.latency, output.latency_batches, threads);
//     otherwise ConfigError naming each key that differs, with both values;
//   - --force starts over: begin() removes the previous run's files (kRunFiles) first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "squeeze/ir/graph.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/report/journal.h"

namespace squeeze::pipeline {

class RunState {
 public:
  enum class Mode { kFresh, kResume, kForce };

  // The files and folders of a run under its output folder, which --force removes.
  static const std::vector<std::string> kRunFiles;
  // Config keys that may differ on --resume.
  static const std::vector<std::string> kFreeKeys;

  // Checks the folder for `mode` (see above); writes nothing.
  //
  // A reader (writer false: a data-parallel rank other than 0, train/distributed.h) keeps the
  // journal in memory only and writes nothing to the folder, which rank 0 owns: it makes no
  // folder check for a fresh or --force run (rank 0 makes them, and may already be writing),
  // reads the journal for --resume like rank 0 (the folder must be visible to it: the same
  // machine or a shared file system), and keeps the checkpoints of the units it finishes in a
  // private temporary folder, removed with it.
  RunState(std::string dir, const WorkflowConfig& config,
           const std::vector<std::string>& overrides, Mode mode, bool writer = true);
  ~RunState();
  RunState(const RunState&) = delete;
  RunState& operator=(const RunState&) = delete;

  // Starts writing (the first write of a run): --force removes the previous run's files; the
  // folder is created and run.json written (state running, one more run counted).
  void begin();

  bool resuming() const { return mode_ == Mode::kResume; }
  int64_t run_number() const { return journal_.runs; }
  const std::string& dir() const { return dir_; }

  // The finished unit `key`, when the journal holds it; nullptr otherwise.
  const report::JournalUnit* find(const std::string& key) const;
  // Adds a finished unit (replacing one with the same key) and rewrites run.json atomically.
  // Its checkpoint must be written before: a unit in the journal is complete.
  void record(report::JournalUnit unit);
  // Marks the run finished (after the report is written).
  void finish();

  // The model a unit checkpointed (InputError naming the file when it is missing or damaged:
  // the folder was changed by hand; --force starts over).
  ir::Graph load(const report::JournalUnit& unit) const;
  // path relative to the folder -> full path.
  std::string path(const std::string& relative) const;
  // Where this process writes the checkpoint `relative` of a unit it finishes: path(relative)
  // for the writer, the private folder for a reader.
  std::string checkpoint_path(const std::string& relative);
  bool writer() const { return writer_; }

 private:
  void write() const;

  std::string dir_;
  Mode mode_;
  bool resumed_empty_ = false;  // --resume of a folder an interrupted run left without a journal
  bool writer_ = true;
  std::string private_dir_;  // a reader's checkpoints; created on first use
  report::Journal journal_;
};

// The keys whose values differ between two config trees, each as "key.path: OLD -> NEW"
// ("(absent)" for a missing key), skipping `free_keys` (full key paths). For messages.
std::vector<std::string> config_differences(const Params& before, const Params& now,
                                            const std::vector<std::string>& free_keys);

}  // namespace squeeze::pipeline
