// The particle-physics figures of a report (output.metrics: [hep]): per class, one against the
// rest, the ROC AUC and the background rejection at 50% and 10% signal efficiency
// (train/hep_metrics.h), as report.json, report.md and report.html show them.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "squeeze/report/report.h"

namespace squeeze::report {

// report.json "hep" of one model:
//   {"score": "...", "efficiencies": [0.5, 0.1], "per_class": [{"class", "name", "signal",
//    "background", "auc", "fpr_at_50", "rejection_at_50", "fpr_at_10", "rejection_at_10",
//    "recall", "accuracy", "binary_accuracy"}]}
// A rejection is null exactly when its false positive rate is 0 (infinite rejection); an AUC or
// rate that is undefined (a class with no background) is null too, with its fpr null.
nlohmann::ordered_json hep_json(const std::vector<train::HepClass>& hep,
                                const std::vector<std::string>& class_names);
// Reads hep_json's layout back (the run journal of --resume keeps the figures this way).
std::vector<train::HepClass> hep_from_json(const nlohmann::ordered_json& j);

// The report.md section (a heading and one table: a row per model and class); "" when no model
// of the report has the figures. Infinite rejection is written "inf".
std::string hep_markdown(const Report& r);
// The same section for report.html.
std::string hep_html(const Report& r);

}  // namespace squeeze::report
