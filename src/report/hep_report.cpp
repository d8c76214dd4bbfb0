// report.json / report.md / report.html forms of the per-class particle-physics figures.
#include "squeeze/report/hep_report.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace squeeze::report {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kEffKeys[2] = {"50", "10"};

Json num_or_null(double v, bool known) { return known && std::isfinite(v) ? Json(v) : Json(nullptr); }

double num(const Json& j, double if_null) { return j.is_null() ? if_null : j.get<double>(); }

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string rejection_text(const train::HepClass& h, int e) {
  if (h.rejection_infinite[e]) return "inf";
  if (!(h.fpr[e] > 0)) return "-";
  return fixed(h.rejection[e], h.rejection[e] < 100 ? 1 : 0);
}

struct Row {
  std::string model, cls, name, signal, auc, r50, r10, recall, binary;
};

std::vector<Row> rows_of(const Report& r) {
  std::vector<Row> rows;
  auto add = [&](const std::string& model, const ModelStats& s) {
    for (const auto& h : s.hep) {
      Row row;
      row.model = model;
      row.cls = std::to_string(h.cls);
      row.name = h.cls < static_cast<int64_t>(r.class_names.size()) ? r.class_names[h.cls] : "";
      row.signal = std::to_string(h.signal);
      row.auc = h.auc >= 0 ? fixed(h.auc, 4) : "-";
      row.r50 = rejection_text(h, 0);
      row.r10 = rejection_text(h, 1);
      row.recall = fixed(100 * h.recall, 1) + "%";
      row.binary = fixed(100 * h.binary_accuracy, 1) + "%";
      rows.push_back(row);
    }
  };
  add("baseline", r.baseline);
  for (const auto& res : r.results) add(res.name, res.stats);
  return rows;
}

const char* kHeader[] = {"model", "class", "name", "signal samples", "AUC", "1/FPR at 50% eff.",
                         "1/FPR at 10% eff.", "recall", "accuracy (1 vs rest)"};

const char* kExplanation =
    "Each class as signal against all the others, scored by the model's softmax probability for "
    "it, on the test split. AUC: the area under the ROC curve (ties count half). 1/FPR: the "
    "background rejection at 50% and 10% signal efficiency, the false positive rate "
    "interpolated linearly on the ROC curve; inf: no background sample passes. Recall is the "
    "class's accuracy; accuracy (1 vs rest) counts right decisions of the argmax about this "
    "class over all samples.";

std::string cells(const Row& x, const char* sep) {
  const std::string* f[] = {&x.model, &x.cls, &x.name, &x.signal, &x.auc,
                            &x.r50,   &x.r10, &x.recall, &x.binary};
  std::string out;
  for (size_t i = 0; i < 9; ++i) out += (i ? sep : "") + *f[i];
  return out;
}

std::string md_escape(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

Json hep_json(const std::vector<train::HepClass>& hep, const std::vector<std::string>& names) {
  Json per_class = Json::array();
  for (const auto& h : hep) {
    Json c = Json::object();
    c["class"] = h.cls;
    c["name"] = h.cls < static_cast<int64_t>(names.size()) ? names[h.cls] : "";
    c["signal"] = h.signal;
    c["background"] = h.background;
    c["auc"] = num_or_null(h.auc, h.auc >= 0);
    for (int e = 0; e < 2; ++e) {
      c[std::string("fpr_at_") + kEffKeys[e]] = num_or_null(h.fpr[e], h.fpr[e] >= 0);
      c[std::string("rejection_at_") + kEffKeys[e]] = num_or_null(h.rejection[e], h.fpr[e] > 0);
    }
    c["recall"] = h.recall;
    c["accuracy"] = h.recall;
    c["binary_accuracy"] = h.binary_accuracy;
    per_class.push_back(c);
  }
  Json j = Json::object();
  j["score"] = "softmax probability of the class; one class against the rest; test split";
  j["efficiencies"] = Json::array({train::kHepEfficiencies[0], train::kHepEfficiencies[1]});
  j["per_class"] = per_class;
  return j;
}

std::vector<train::HepClass> hep_from_json(const Json& j) {
  std::vector<train::HepClass> out;
  for (const auto& c : j.at("per_class")) {
    train::HepClass h;
    h.cls = c.at("class").get<int64_t>();
    h.signal = c.at("signal").get<int64_t>();
    h.background = c.at("background").get<int64_t>();
    h.auc = num(c.at("auc"), -1.0);
    for (int e = 0; e < 2; ++e) {
      h.fpr[e] = num(c.at(std::string("fpr_at_") + kEffKeys[e]), -1.0);
      if (h.fpr[e] == 0.0) {
        h.rejection_infinite[e] = true;
        h.rejection[e] = std::numeric_limits<double>::infinity();
      } else if (h.fpr[e] > 0.0) {
        h.rejection[e] = 1.0 / h.fpr[e];
      }
    }
    h.recall = c.at("recall").get<double>();
    h.binary_accuracy = c.at("binary_accuracy").get<double>();
    out.push_back(h);
  }
  return out;
}

std::string hep_markdown(const Report& r) {
  const std::vector<Row> rows = rows_of(r);
  if (rows.empty()) return "";
  std::ostringstream os;
  os << "\n## Per-class ROC AUC and background rejection\n\n" << kExplanation << "\n\n|";
  for (const char* h : kHeader) os << " " << h << " |";
  os << "\n|";
  for (size_t i = 0; i < 9; ++i) os << (i < 3 ? " --- |" : " ---: |");
  os << "\n";
  for (const auto& x : rows) {
    Row e = x;
    e.model = md_escape(e.model);
    e.name = md_escape(e.name);
    os << "| " << cells(e, " | ") << " |\n";
  }
  return os.str();
}

std::string hep_html(const Report& r) {
  const std::vector<Row> rows = rows_of(r);
  if (rows.empty()) return "";
  std::ostringstream os;
  os << "<h2>Per-class ROC AUC and background rejection</h2>\n<p class=\"note\">"
     << html_escape(kExplanation) << "</p>\n<table>\n<tr>";
  for (const char* h : kHeader) os << "<th>" << html_escape(h) << "</th>";
  os << "</tr>\n";
  for (const auto& x : rows) {
    Row e = x;
    for (std::string* f : {&e.model, &e.name}) *f = html_escape(*f);
    os << "<tr><td>" << cells(e, "</td><td>") << "</td></tr>\n";
  }
  os << "</table>\n";
  return os.str();
}

}  // namespace squeeze::report
