#include "squeeze/pipeline/validation.h"

#include <chrono>

#include "squeeze/pipeline/candidates.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/util/error.h"
#include "squeeze/util/log.h"

namespace squeeze::pipeline {

report::Report run_validation(const WorkflowConfig& config, const RunOptions& options) {
  const PipelineSpec& spec = *config.pipeline;
  Workspace ws(config, options);
  std::vector<PreparedStage> stages;
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    auto one = ws.prepare({&spec.steps[i].stage},
                          msg("pipeline.steps[", i, "] (", spec.steps[i].name, ")"));
    stages.push_back(std::move(one[0]));
  }
  ws.load();
  CandidateStore::check_data(ws, spec.guard);
  ws.attach_teachers(stages);
  ws.start();
  CandidateStore store(ws, spec.guard, CandidateStore::latest());

  ir::Graph g = ws.baseline().clone();
  std::vector<report::StageRecord> history;
  std::vector<report::StepRef> applied;
  std::string name;
  size_t stopped = spec.steps.size();  // the step rolled back, if any
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    const StepSpec& step = spec.steps[i];
    log::info("step ", i + 1, "/", spec.steps.size(), ": ", step.name);
    // Each step is a unit of the run's journal: a resumed run loads the steps it finished.
    const std::string key = msg("step/", i);
    applied.push_back(step_ref(step));
    name += (name.empty() ? "" : ">") + step.name;
    if (const report::JournalUnit* done = ws.finished(key)) {
      g = ws.restore(*done);
      history.push_back(done->stages.at(0));
      report::CandidateRecord rec = *done->candidate;
      rec.steps = applied;
      if (!store.restore(std::move(rec), g.clone()).passed) {
        stopped = i;
        break;
      }
      continue;
    }
    auto t0 = std::chrono::steady_clock::now();
    // Steps build on each other, so the step's position seeds its fine-tuning as in an experiment.
    history.push_back(ws.run_stage(g, stages[i], i));
    const report::CandidateRecord& c = store.add(name, applied, history, g, t0);
    store.candidate(c.index).status = c.passed ? "kept" : "rolled back";
    store.record(key, c.index, {history.back()}, g);
    if (!c.passed) {
      stopped = i;
      break;
    }
  }

  report::PipelineRecord rec = store.record("validation");
  rec.entries_key = "history";
  rec.selection =
      "the model after the last step kept (steps build on each other; a step that breaks the guard "
      "stops the pipeline)";
  for (size_t i = stopped + 1; i < spec.steps.size(); ++i)
    rec.skipped.push_back(
        {spec.steps[i].name, msg("not tried: step ", stopped + 1, " (", spec.steps[stopped].name,
                                 ") broke the guard and stopped the pipeline")});
  const size_t kept = stopped;  // steps 0 .. stopped-1 were kept
  if (stopped == spec.steps.size()) {
    rec.outcome = msg("All ", kept, " steps kept; the result is the model after the last one.");
  } else {
    rec.outcome =
        msg("Step ", stopped + 1, " (", spec.steps[stopped].name,
            ") broke the guard and was rolled back: ", store.candidates().back().reason, ". ");
    if (kept > 0)
      rec.outcome +=
          msg("The result is the model after step ", kept, " (", spec.steps[kept - 1].name, ").");
    else
      rec.outcome +=
          "No step kept: the baseline is the last model that satisfies the guard; the rolled-back "
          "step "
          "is reported as the best candidate.";
    if (!rec.skipped.empty())
      rec.outcome += msg(" ", rec.skipped.size(), " later step(s) not tried.");
  }
  log::info(rec.outcome);
  return store.finish(std::move(rec));
}

}  // namespace squeeze::pipeline
