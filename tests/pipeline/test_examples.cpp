// Every workflow under examples/ loads, names a buildable model and valid stage parameters:
// the checks `squeeze run` makes before any training, so a broken example fails here in
// milliseconds instead of minutes into a run.
#include <gtest/gtest.h>

#include <filesystem>

#include "squeeze/compress/registry.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/util/params.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;

TEST(Examples, EveryWorkflowIsValid) {
  int checked = 0;
  for (const auto& e : fs::directory_iterator(testing::source_dir() + "/examples")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().filename().string());
    pipeline::WorkflowConfig cfg;
    ASSERT_NO_THROW(cfg = pipeline::load_config(e.path().string()));
    if (!cfg.model.zoo.empty()) EXPECT_NO_THROW(models::build(cfg.model.zoo, cfg.model.params, 0));
    // A workflow runs experiments, or a pipeline with its own steps, or a pipeline that makes its
    // steps (progressive) or instantiates a stage template (autotune).
    EXPECT_NE(!cfg.experiments.empty(),
              cfg.pipeline && (!cfg.pipeline->steps.empty() || cfg.pipeline->progressive ||
                               cfg.pipeline->autotune || cfg.pipeline->hep_trigger));
    for (const auto& ex : cfg.experiments)
      for (const auto& st : ex.stages) {
        auto params = st.params->clone();
        EXPECT_NO_THROW(compress::find_method(st.method)->make(*params)) << ex.name;
      }
    if (cfg.pipeline)
      for (const auto& step : cfg.pipeline->steps) {
        auto params = step.stage.params->clone();
        EXPECT_NO_THROW(compress::find_method(step.stage.method)->make(*params)) << step.name;
      }
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

}  // namespace
}  // namespace squeeze
