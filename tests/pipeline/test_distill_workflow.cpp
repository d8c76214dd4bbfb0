// Distillation from YAML, end to end through the CLI: as a method (current model or a new zoo
// student), as any stage's fine-tuning, with a loaded teacher, and the bad inputs it must reject
// with exit code 2 before any training.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::cli;
using testing::TempDir;

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const char* kHead = R"(seed: 3
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 3000, split: {val: 0.1, test: 0.2}}
baseline: {train: {epochs: 2, lr: 3.0e-3}}
output: {latency: false}
)";

TEST(DistillWorkflow, MethodFinetuneAndLoadedTeacherRunEndToEnd) {
  TempDir dir;
  // A teacher from a file: the trained baseline of a first run, as a checkpoint.
  write(dir.file("teacher.yaml"), std::string(kHead));
  ASSERT_EQ(cli({"run", dir.file("teacher.yaml"), "--out", dir.file("t")}).code, 0);
  const std::string teacher = dir.file("t/models/baseline.sqz");
  ASSERT_TRUE(fs::exists(teacher));

  write(dir.file("w.yaml"), std::string(kHead) + R"(experiments:
  - name: distill-current
    stages:
      - {method: distill, params: {alpha: 0.9, temperature: 4}, finetune: {epochs: 1}}
  - name: prune-then-distill
    stages:
      - method: prune
        params: {ratio: 0.5}
        finetune: {epochs: 1, distill: {teacher: {checkpoint: )" + teacher + R"(}, alpha: 0.5,
                   features: [{student: fc2, teacher: fc2, weight: 0.5}]}}
  - name: student
    stages:
      - method: distill
        params: {student: {zoo: mlp, params: {hidden: "16"}}, features: [{student: classifier, teacher: fc3}]}
        finetune: {epochs: 2, lr: 3.0e-3}
  - name: student-alone
    stages:
      - {method: distill, params: {student: {zoo: mlp, params: {hidden: "16"}}, alpha: 0}, finetune: {epochs: 2, lr: 3.0e-3}}
)");
  auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
  ASSERT_EQ(r.code, 0) << r.err;
  json rep = json::parse(std::ifstream(dir.file("out/report.json")));
  ASSERT_EQ(rep["results"].size(), 4u);
  for (const json& res : rep["results"]) {
    const json& last = res["history"].back();
    ASSERT_TRUE(last.contains("distill")) << res["name"];
    EXPECT_GT(last["finetune_steps"].get<int64_t>(), 0);
    EXPECT_GT(last["step_ms"].get<double>(), 0.0);
    EXPECT_GT(res["accuracy"].get<double>(), 0.3) << res["name"];
  }
  const json& current = rep["results"][0]["history"][0]["distill"];
  EXPECT_NE(current["teacher"].get<std::string>().find("baseline"), std::string::npos);
  EXPECT_GT(current["teacher_ms_per_step"].get<double>(), 0.0);
  const json& loaded = rep["results"][1]["history"][0]["distill"];
  EXPECT_NE(loaded["teacher"].get<std::string>().find("baseline.sqz"), std::string::npos);
  // The new student is the small mlp, not the baseline's architecture.
  EXPECT_LT(rep["results"][2]["params"].get<int64_t>(), rep["baseline"]["params"].get<int64_t>() / 2);
  EXPECT_EQ(rep["results"][2]["params"], rep["results"][3]["params"]);
  // alpha 0 without features: plain training, the teacher never runs, and the report says so.
  const json& alone = rep["results"][3]["history"][0]["distill"];
  EXPECT_EQ(alone["teacher_ms_per_step"].get<double>(), 0.0);
  EXPECT_NE(alone["teacher"].get<std::string>().find("teacher not run"), std::string::npos);
  // The reports show the teacher's cost per step.
  std::ifstream md(dir.file("out/report.md"));
  std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("distilled from"), std::string::npos);
}

TEST(DistillWorkflow, BadInputExitsWithTwoNamingTheKey) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      // A teacher whose output width differs from the student's.
      {"  - {name: a, stages: [{method: distill, params: {teacher: {zoo: jet_tagger, params: {num_classes: 3}, "
       "train: {epochs: 1}}}, finetune: {epochs: 1}}]}\n",
       {"params.teacher", "3 classes", "5"}},
      // Feature names that do not exist, in the student and in the teacher.
      {"  - {name: a, stages: [{method: distill, params: {features: [{student: nope, teacher: fc1}]}, "
       "finetune: {epochs: 1}}]}\n",
       {"features[0].student", "nope", "fc1"}},
      {"  - {name: a, stages: [{method: prune, finetune: {epochs: 1, distill: {features: [{student: fc1, "
       "teacher: fc7}]}}}]}\n",
       {"finetune.distill.features[0].teacher", "fc7"}},
      // Distillation trains: it needs fine-tuning.
      {"  - {name: a, stages: [{method: distill}]}\n", {"finetune: {epochs: N}"}},
      {"  - {name: a, stages: [{method: distill, params: {alpha: 2}, finetune: {epochs: 1}}]}\n",
       {"params.alpha", "[0, 1]"}},
      {"  - {name: a, stages: [{method: distill, params: {student: {onnx: x.onnx}}, finetune: {epochs: 1}}]}\n",
       {"params.student", "zoo"}},
      {"  - {name: a, stages: [{method: distill, params: {teacher: {checkpoint: /nonexistent/t.sqz}}, "
       "finetune: {epochs: 1}}]}\n",
       {"teacher", "/nonexistent/t.sqz"}},
      {"  - {name: a, stages: [{method: distill, params: {student: {zoo: mlp, params: {widht: 3}}}, "
       "finetune: {epochs: 1}}]}\n",
       {"params.student.params", "widht"}},
  };
  for (const auto& [experiment, words] : cases) {
    TempDir dir;
    write(dir.file("w.yaml"), std::string(kHead) + "experiments:\n" + experiment);
    auto r = cli({"run", dir.file("w.yaml"), "--out", dir.file("out")});
    EXPECT_EQ(r.code, 2) << experiment << "\n" << r.err;
    for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << w << " in: " << r.err;
    // Rejected before any training: nothing written.
    EXPECT_FALSE(fs::exists(dir.file("out/report.json")));
    EXPECT_FALSE(fs::exists(dir.file("out/models")));
  }
}

}  // namespace
}  // namespace squeeze
