// CSV reader: a header row, then one sample per record. RFC 4180 quoting ("a,b", "say ""hi""",
// line breaks inside quotes), ',' separators, LF or CRLF line ends, blank lines skipped.
#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"
#include "squeeze/util/memory.h"

namespace squeeze::data {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits the text into records of fields. `lines` receives the 1-based line each record starts
// on, for error messages. Whitespace-only records are dropped.
class CsvParser {
 public:
  CsvParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  // Returns false at the end of the input.
  bool next(std::vector<std::string>& fields, int64_t& line) {
    while (pos_ < s_.size()) {
      fields.clear();
      line = line_;
      bool blank = parse_record(fields);
      if (!blank) return true;
    }
    return false;
  }

 private:
  // Parses one record starting at pos_; returns true if it was blank.
  bool parse_record(std::vector<std::string>& fields) {
    std::string field;
    bool any_content = false;
    bool quoted = false;  // the current field was quoted (keep its spaces)
    const int64_t start_line = line_;
    while (true) {
      if (pos_ >= s_.size()) {
        fields.push_back(quoted ? field : std::string(trim(field)));
        return !any_content;
      }
      char c = s_[pos_];
      if (c == '"' && trim(field).empty() && !quoted) {
        // Opening quote: read until the matching quote; "" is an escaped quote.
        field.clear();
        quoted = true;
        any_content = true;
        ++pos_;
        while (true) {
          if (pos_ >= s_.size()) {
            throw InputError(
                msg("CSV ", path_, ": unterminated quoted field starting on line ", start_line));
          }
          char q = s_[pos_++];
          if (q == '"') {
            if (pos_ < s_.size() && s_[pos_] == '"') {
              field.push_back('"');
              ++pos_;
            } else {
              break;
            }
          } else {
            if (q == '\n') ++line_;
            field.push_back(q);
          }
        }
        continue;
      }
      ++pos_;
      if (c == ',') {
        fields.push_back(quoted ? field : std::string(trim(field)));
        field.clear();
        quoted = false;
        any_content = true;
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && pos_ < s_.size() && s_[pos_] == '\n') ++pos_;
        ++line_;
        fields.push_back(quoted ? field : std::string(trim(field)));
        return !any_content;
      } else {
        if (quoted) {
          if (c != ' ' && c != '\t') {
            throw InputError(msg("CSV ", path_, ": unexpected character '", c,
                                 "' after a closing quote on line ", line_));
          }
          continue;
        }
        if (c != ' ' && c != '\t') any_content = true;
        field.push_back(c);
      }
    }
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
  int64_t line_ = 1;
};

bool parse_double(std::string_view s, double& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool parse_int(std::string_view s, int64_t& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc() && ptr == s.data() + s.size()) return true;
  double d;  // "3.0" and "1e2" are integers too
  if (parse_double(s, d) && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
    out = static_cast<int64_t>(d);
    return true;
  }
  return false;
}

std::string column_list(const std::vector<std::string>& header) {
  std::string out;
  for (size_t i = 0; i < header.size(); ++i) out += (i ? ", " : "") + ("'" + header[i] + "'");
  return out;
}

std::string read_text(const std::string& path, const char* kind) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(msg("cannot open ", kind, " file ", path, ": ", std::strerror(errno)));
  in.seekg(0, std::ios::end);
  const std::streamoff file_size = in.tellg();
  in.seekg(0);
  // The text, and its values as float32: each value takes at least two characters ("0,").
  if (file_size > 0)
    check_fits_in_memory(static_cast<uint64_t>(file_size) * 3, msg(kind, " file ", path),
                         "use a machine with more memory, or a subset of the file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(msg("cannot read ", kind, " file ", path, ": ", std::strerror(errno)));
  // A UTF-8 byte order mark would otherwise become part of the first column's name.
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
  return text;
}

// The table of a CSV text: its first record is the header.
void parse_table(const std::string& text, const char* kind, const std::string& path,
                 const std::string& label_column,
                 const std::vector<std::string>& feature_columns, at::Tensor& x, at::Tensor& y,
                 std::vector<std::string>* class_names,
                 const std::vector<int64_t>* line_map = nullptr) {
  CsvParser parser(text, path);
  // Line numbers of the file, when the text was made from it (ARFF): line_map[text line - 1].
  auto file_line = [&](int64_t l) {
    return line_map && l >= 1 && l <= static_cast<int64_t>(line_map->size()) ? (*line_map)[l - 1]
                                                                            : l;
  };
  std::vector<std::string> header;
  int64_t line = 0;
  if (!parser.next(header, line)) {
    throw InputError(msg(kind, " ", path, ": the file is empty; expected a header row with the ",
                         "column names, then one row per sample"));
  }
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i].empty()) {
      throw InputError(msg(kind, " ", path, ": header column ", i + 1,
                           " has no name; columns: ", column_list(header)));
    }
    if (!index.emplace(header[i], static_cast<int64_t>(i)).second) {
      throw InputError(
          msg(kind, " ", path, ": duplicate column name '", header[i], "' in the header"));
    }
  }
  auto it = index.find(label_column);
  if (it == index.end()) {
    throw InputError(msg(kind, " ", path, ": no label column '", label_column,
                         "'; available columns: ", column_list(header)));
  }
  const int64_t label_idx = it->second;

  std::vector<int64_t> feat_idx;
  if (feature_columns.empty()) {
    for (size_t i = 0; i < header.size(); ++i) {
      if (static_cast<int64_t>(i) != label_idx) feat_idx.push_back(static_cast<int64_t>(i));
    }
  } else {
    for (const auto& name : feature_columns) {
      auto f = index.find(name);
      if (f == index.end()) {
        throw InputError(msg(kind, " ", path, ": no feature column '", name,
                             "'; available columns: ", column_list(header)));
      }
      if (f->second == label_idx) {
        throw InputError(msg(kind, " ", path, ": column '", name,
                             "' is the label column and cannot also be a feature"));
      }
      feat_idx.push_back(f->second);
    }
  }
  if (feat_idx.empty()) {
    throw InputError(msg(kind, " ", path, ": no feature columns (the only column is the label '",
                         label_column, "')"));
  }

  const int64_t num_features = static_cast<int64_t>(feat_idx.size());
  std::vector<float> features;
  std::vector<std::string> label_text;
  std::vector<std::string> fields;
  int64_t row = 0;  // 1-based data row, not counting the header
  while (parser.next(fields, line)) {
    ++row;
    if (fields.size() != header.size()) {
      throw InputError(msg(kind, " ", path, ": row ", row, " (line ", file_line(line), ") has ", fields.size(),
                           " fields but the header has ", header.size(), " columns"));
    }
    for (int64_t c : feat_idx) {
      double v;
      const std::string& cell = fields[c];
      if (!parse_double(cell, v)) {
        throw InputError(msg(kind, " ", path, ": ", cell.empty() ? "empty" : "non-numeric", " cell '",
                             cell, "' at row ", row, " (line ", file_line(line), "), column '", header[c],
                             "'"));
      }
      if (!std::isfinite(v)) {
        throw InputError(msg(kind, " ", path, ": non-finite value '", cell, "' at row ", row,
                             " (line ", file_line(line), "), column '", header[c], "'"));
      }
      features.push_back(static_cast<float>(v));
    }
    if (fields[label_idx].empty()) {
      throw InputError(msg(kind, " ", path, ": empty label at row ", row, " (line ", file_line(line),
                           "), column '", label_column, "'"));
    }
    label_text.push_back(std::move(fields[label_idx]));
  }
  const int64_t n = row;

  std::vector<int64_t> labels(n);
  bool all_int = true;
  for (int64_t i = 0; i < n && all_int; ++i) all_int = parse_int(label_text[i], labels[i]);
  if (all_int) {
    if (class_names) class_names->clear();
  } else {
    // String labels: classes are the distinct names in sorted order.
    std::set<std::string> distinct(label_text.begin(), label_text.end());
    std::vector<std::string> names(distinct.begin(), distinct.end());
    std::map<std::string, int64_t> id;
    for (size_t k = 0; k < names.size(); ++k) id[names[k]] = static_cast<int64_t>(k);
    for (int64_t i = 0; i < n; ++i) labels[i] = id[label_text[i]];
    if (class_names) *class_names = std::move(names);
  }

  x = at::empty({n, num_features}, at::kFloat);
  if (n > 0) std::memcpy(x.data_ptr<float>(), features.data(), features.size() * sizeof(float));
  y = at::empty({n}, at::kLong);
  if (n > 0) std::memcpy(y.data_ptr<int64_t>(), labels.data(), labels.size() * sizeof(int64_t));
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// An ARFF attribute name: quoted ('...' or "...") or up to the first blank.
std::string arff_name(std::string_view rest, std::string_view& after, const std::string& path,
                      int64_t line) {
  rest = trim(rest);
  if (!rest.empty() && (rest.front() == '\'' || rest.front() == '"')) {
    const size_t end = rest.find(rest.front(), 1);
    if (end == std::string_view::npos)
      throw InputError(msg("ARFF ", path, ": unterminated quoted attribute name on line ", line));
    after = rest.substr(end + 1);
    return std::string(rest.substr(1, end - 1));
  }
  const size_t end = rest.find_first_of(" \t");
  if (end == std::string_view::npos || rest.empty())
    throw InputError(msg("ARFF ", path, ": line ", line, ": @attribute needs a name and a type"));
  after = rest.substr(end);
  return std::string(rest.substr(0, end));
}

}  // namespace

void read_csv(const std::string& path, const std::string& label_column,
              const std::vector<std::string>& feature_columns, at::Tensor& x, at::Tensor& y,
              std::vector<std::string>* class_names) {
  parse_table(read_text(path, "CSV"), "CSV", path, label_column, feature_columns, x, y, class_names);
}

void read_arff(const std::string& path, const std::string& label_column,
               const std::vector<std::string>& feature_columns, at::Tensor& x, at::Tensor& y,
               std::vector<std::string>* class_names) {
  const std::string text = read_text(path, "ARFF");
  // The header declares the columns; the data section is CSV rows. They become one CSV text
  // (header row of attribute names), read as CSV files are.
  std::vector<std::string> names;
  std::string last_nominal;
  size_t pos = 0;
  int64_t line = 0;
  bool data = false;
  while (pos < text.size() && !data) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view l = trim(std::string_view(text).substr(pos, end - pos));
    if (!l.empty() && l.back() == '\r') l = trim(l.substr(0, l.size() - 1));
    pos = end + 1;
    ++line;
    if (l.empty() || l.front() == '%') continue;
    const std::string head = lower(std::string(l.substr(0, l.find_first_of(" \t"))));
    if (head == "@relation") continue;
    if (head == "@data") {
      data = true;
    } else if (head == "@attribute") {
      std::string_view type;
      const std::string name = arff_name(l.substr(head.size()), type, path, line);
      type = trim(type);
      const std::string t = lower(std::string(type.substr(0, type.find_first_of(" \t"))));
      if (!type.empty() && type.front() == '{') {
        last_nominal = name;
      } else if (t != "numeric" && t != "real" && t != "integer") {
        throw InputError(msg("ARFF ", path, ": line ", line, ": attribute '", name, "' has type '",
                             std::string(type), "'; supported: numeric, real, integer, or a ",
                             "nominal {a,b,...} (string, date and relational are not)"));
      }
      names.push_back(name);
    } else {
      throw InputError(msg("ARFF ", path, ": line ", line, ": expected @relation, @attribute or ",
                           "@data, got '", std::string(l.substr(0, 40)), "'"));
    }
  }
  if (!data || names.empty())
    throw InputError(msg("ARFF ", path, ": no ", names.empty() ? "@attribute lines" : "@data line",
                         "; an ARFF file declares its columns (@attribute NAME TYPE) and then ",
                         "lists the rows after @data"));
  std::string csv;
  for (size_t i = 0; i < names.size(); ++i) {
    csv += i ? "," : "";
    csv += '"';
    for (char c : names[i]) csv += c == '"' ? std::string("\"\"") : std::string(1, c);
    csv += '"';
  }
  csv += '\n';
  std::vector<int64_t> line_map = {0};  // the header row is not from the file
  // Data rows, without comment lines; sparse rows ({i v, ...}) are not supported.
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view l = trim(std::string_view(text).substr(pos, end - pos));
    pos = end + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l = trim(l.substr(0, l.size() - 1));
    if (l.empty() || l.front() == '%') continue;
    if (l.front() == '{')
      throw InputError(msg("ARFF ", path, ": line ", line, ": sparse rows ({index value, ...}) ",
                           "are not supported; write the rows out in full"));
    csv.append(l.data(), l.size());
    csv += '\n';
    line_map.push_back(line);
  }
  // Weka's convention: without a named label, the class is the last attribute.
  const std::string label = label_column.empty() ? names.back() : label_column;
  parse_table(csv, "ARFF", path, label, feature_columns, x, y, class_names, &line_map);
}

}  // namespace squeeze::data
