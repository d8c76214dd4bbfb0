#include "squeeze/util/params.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>

#include "squeeze/util/error.h"

namespace squeeze {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// A value as it appears in an error message: scalars quoted so that empty strings and
// whitespace are visible.
std::string shown(const Value& v) {
  if (v.kind() == Value::Kind::kScalar) return "'" + v.text() + "'";
  return v.describe();
}

std::string number(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

std::string int_range(int64_t min, int64_t max) {
  bool lo = min != INT64_MIN, hi = max != INT64_MAX;
  if (lo && hi) return msg("an integer in [", min, ", ", max, "]");
  if (lo) return msg("an integer >= ", min);
  if (hi) return msg("an integer <= ", max);
  return "an integer";
}

std::string double_range(double min, double max) {
  bool lo = min > -1e300, hi = max < 1e300;
  if (lo && hi) return "a number in [" + number(min) + ", " + number(max) + "]";
  if (lo) return "a number >= " + number(min);
  if (hi) return "a number <= " + number(max);
  return "a number";
}

std::optional<int64_t> parse_int(const std::string& raw) {
  std::string s = trim(raw);
  if (s.empty()) return std::nullopt;
  size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  if (i == s.size()) return std::nullopt;
  for (size_t j = i; j < s.size(); ++j)
    if (!std::isdigit(static_cast<unsigned char>(s[j]))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno == ERANGE || *end != '\0') return std::nullopt;
  return static_cast<int64_t>(v);
}

std::optional<double> parse_double(const std::string& raw) {
  std::string s = trim(raw);
  if (s.empty()) return std::nullopt;
  // strtod also takes hex floats, "inf" and "nan"; a config number is decimal and finite.
  for (char c : s)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' ||
          c == '+' || c == '-'))
      return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(const std::string& raw) {
  std::string s = lower(trim(raw));
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  return std::nullopt;
}

[[noreturn]] void bad_value(const std::string& where, const std::string& expected, const Value& v,
                            const std::string& hint = "") {
  throw ConfigError(msg(where, ": expected ", expected, ", got ", shown(v), hint));
}

// Optimal string alignment distance (Damerau-Levenshtein with adjacent transpositions).
size_t edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

// Parses the value side of a --set assignment: a flow list "[a, [b, c]]", null, a quoted
// string or a plain scalar.
Value parse_override_value(const std::string& raw, const std::string& assignment) {
  std::string s = trim(raw);
  if (s == "null" || s == "~") return Value();
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front())
    return Value::scalar(s.substr(1, s.size() - 2), true);
  if (!s.empty() && s.front() == '[') {
    if (s.back() != ']')
      throw ConfigError(msg("--set ", assignment, ": unterminated list (expected [a, b, ...])"));
    std::string body = s.substr(1, s.size() - 2);
    std::vector<Value> items;
    if (trim(body).empty()) return Value::list(items);
    int depth = 0;
    char quote = 0;
    size_t start = 0;
    for (size_t i = 0; i <= body.size(); ++i) {
      char c = i < body.size() ? body[i] : ',';
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '[') {
        ++depth;
      } else if (c == ']') {
        --depth;
      } else if (c == ',' && depth == 0) {
        items.push_back(parse_override_value(body.substr(start, i - start), assignment));
        start = i + 1;
      }
    }
    if (depth != 0 || quote)
      throw ConfigError(msg("--set ", assignment, ": unbalanced brackets or quotes in the list"));
    return Value::list(std::move(items));
  }
  return Value::scalar(s);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Value

Value::Value() = default;

Value Value::scalar(std::string text, bool quoted) {
  Value v;
  v.kind_ = Kind::kScalar;
  v.text_ = std::move(text);
  v.quoted_ = quoted;
  return v;
}

Value Value::list(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::kList;
  v.items_ = std::move(items);
  return v;
}

Value Value::map(std::shared_ptr<Params> params) {
  Value v;
  v.kind_ = Kind::kMap;
  v.map_ = params ? std::move(params) : std::make_shared<Params>();
  return v;
}

std::string Value::describe() const {
  switch (kind_) {
    case Kind::kNull:
      return "null";
    case Kind::kScalar:
      return quoted_ || text_.empty() ? "'" + text_ + "'" : text_;
    case Kind::kList: {
      std::vector<std::string> parts;
      for (const Value& item : items_) parts.push_back(item.describe());
      return "[" + join(parts) + "]";
    }
    case Kind::kMap: {
      // describe() must not mark keys as read, and raw() does: read a copy.
      std::shared_ptr<Params> copy = map_->clone();
      std::vector<std::string> parts;
      for (const std::string& k : copy->keys())
        parts.push_back(k + ": " + copy->raw(k)->describe());
      return "{" + join(parts) + "}";
    }
  }
  return "null";
}

// ---------------------------------------------------------------------------------------------
// Schema

KeyDoc* Schema::find(const std::string& key) {
  for (KeyDoc& k : keys)
    if (k.key == key) return &k;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Params

void Params::record_into(std::shared_ptr<Schema> schema, const std::string& prefix) {
  schema_ = std::move(schema);
  schema_prefix_ = prefix;
}

// A typed getter's record replaces the "value" that raw() or has() noted for the same key; the
// first typed read stands (a dispatcher's default, not that of the reader it dispatches to).
KeyDoc* Params::note(const std::string& key, const std::string& type, const std::string& fallback,
                     const std::string& expected) const {
  if (!schema_) return nullptr;
  const std::string full = schema_prefix_ + key;
  KeyDoc* d = schema_->find(full);
  if (!d) {
    schema_->keys.push_back(KeyDoc{full, "value", "", "", {}, std::nullopt, std::nullopt, ""});
    d = &schema_->keys.back();
  }
  if (type != "value" && d->type == "value") {
    d->type = type;
    d->fallback = fallback;
    if (d->expected.empty()) d->expected = expected;  // document() said it better
  }
  return d;
}

void Params::record_child(const Params& child, const std::string& key) const {
  if (!schema_) return;
  auto& c = const_cast<Params&>(child);
  c.schema_ = schema_;
  c.schema_prefix_ = schema_prefix_ + key;
}

void Params::document(const std::string& key, const std::string& expected,
                      const std::string& help) const {
  KeyDoc* d = note(key, "value");
  if (!d) return;
  if (!expected.empty()) d->expected = expected;
  if (!help.empty()) d->help = help;
}

std::string Params::key_path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

void Params::set(const std::string& key, Value value) {
  // Nested maps take their path from where they are stored, so that errors raised while
  // reading them name the full key path (lists of maps get "key[i]").
  std::function<void(const Value&, const std::string&)> repath = [&](const Value& v,
                                                                     const std::string& at) {
    if (v.kind() == Value::Kind::kMap) {
      Params& child = *v.params();
      child.path_ = at;
      for (const auto& e : child.entries_) repath(e.second, child.key_path(e.first));
    } else if (v.kind() == Value::Kind::kList) {
      for (size_t i = 0; i < v.items().size(); ++i) repath(v.items()[i], msg(at, "[", i, "]"));
    }
  };
  repath(value, key_path(key));
  for (auto& e : entries_) {
    if (e.first == key) {
      e.second = std::move(value);
      return;
    }
  }
  entries_.emplace_back(key, std::move(value));
}

bool Params::has(const std::string& key) const {
  used_[key] = true;  // asking about a key makes it a known key
  note(key, "value");
  for (const auto& e : entries_)
    if (e.first == key) return !e.second.is_null();
  return false;
}

std::vector<std::string> Params::keys() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.first);
  return out;
}

const Value* Params::raw(const std::string& key) const {
  used_[key] = true;
  note(key, "value");
  for (const auto& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

bool Params::get_bool(const std::string& key, bool fallback) {
  note(key, "bool", fallback ? "true" : "false", "true or false");
  const Value* v = raw(key);
  if (!v || v->is_null()) return fallback;
  if (v->kind() == Value::Kind::kScalar)
    if (auto b = parse_bool(v->text())) return *b;
  bad_value(key_path(key), "a boolean (true/false, yes/no, on/off)", *v);
}

int64_t Params::get_int(const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  if (KeyDoc* d = note(key, "integer", std::to_string(fallback), int_range(min, max))) {
    if (min != INT64_MIN) d->min = double(min);
    if (max != INT64_MAX) d->max = double(max);
  }
  const Value* v = raw(key);
  if (!v || v->is_null()) return fallback;
  if (v->kind() == Value::Kind::kScalar) {
    if (auto i = parse_int(v->text())) {
      if (*i >= min && *i <= max) return *i;
    }
  }
  bad_value(key_path(key), int_range(min, max), *v);
}

double Params::get_double(const std::string& key, double fallback, double min, double max) {
  if (KeyDoc* d = note(key, "number", number(fallback), double_range(min, max))) {
    if (min > -1e300) d->min = min;
    if (max < 1e300) d->max = max;
  }
  const Value* v = raw(key);
  if (!v || v->is_null()) return fallback;
  if (v->kind() == Value::Kind::kScalar) {
    if (auto d = parse_double(v->text())) {
      if (*d >= min && *d <= max) return *d;
    }
  }
  bad_value(key_path(key), double_range(min, max), *v);
}

std::string Params::get_string(const std::string& key, const std::string& fallback) {
  note(key, "string", fallback, "a string");
  const Value* v = raw(key);
  if (!v || v->is_null()) return fallback;
  if (v->kind() != Value::Kind::kScalar) bad_value(key_path(key), "a string", *v);
  return v->text();
}

std::string Params::get_choice(const std::string& key, const std::string& fallback,
                               const std::vector<std::string>& choices) {
  const std::string expected = "one of: " + join(choices);
  if (KeyDoc* d = note(key, "choice", fallback, expected); d && d->choices.empty()) d->choices = choices;
  const Value* v = raw(key);
  if (!v || v->is_null()) return fallback;
  if (v->kind() != Value::Kind::kScalar) bad_value(key_path(key), expected, *v);
  for (const std::string& c : choices)
    if (lower(c) == lower(v->text())) return c;
  std::string near = did_you_mean(v->text(), choices);
  bad_value(key_path(key), expected, *v, near.empty() ? "" : "; did you mean '" + near + "'?");
}

std::vector<std::string> Params::get_strings(const std::string& key) {
  note(key, "strings", "", "a list of strings, or one string");
  const Value* v = raw(key);
  std::vector<std::string> out;
  if (!v || v->is_null()) return out;
  if (v->kind() == Value::Kind::kScalar) return {v->text()};
  if (v->kind() != Value::Kind::kList) bad_value(key_path(key), "a list of strings", *v);
  for (size_t i = 0; i < v->items().size(); ++i) {
    const Value& item = v->items()[i];
    if (item.kind() != Value::Kind::kScalar)
      bad_value(msg(key_path(key), "[", i, "]"), "a string", item);
    out.push_back(item.text());
  }
  return out;
}

std::vector<int64_t> Params::get_ints(const std::string& key, std::vector<int64_t> fallback) {
  if (schema_) {
    std::vector<std::string> f;
    for (int64_t i : fallback) f.push_back(std::to_string(i));
    note(key, "integers", fallback.empty() ? "" : "[" + join(f) + "]", "a list of integers, or one");
  }
  const Value* v = raw(key);
  if (!v || v->is_null()) return fallback;
  auto one = [&](const Value& item, const std::string& where) {
    if (item.kind() == Value::Kind::kScalar)
      if (auto i = parse_int(item.text())) return *i;
    bad_value(where, "an integer", item);
  };
  if (v->kind() == Value::Kind::kScalar) return {one(*v, key_path(key))};
  if (v->kind() != Value::Kind::kList) bad_value(key_path(key), "a list of integers", *v);
  std::vector<int64_t> out;
  for (size_t i = 0; i < v->items().size(); ++i)
    out.push_back(one(v->items()[i], msg(key_path(key), "[", i, "]")));
  return out;
}

std::vector<double> Params::get_doubles(const std::string& key, std::vector<double> fallback) {
  if (schema_) {
    std::vector<std::string> f;
    for (double d : fallback) f.push_back(number(d));
    note(key, "numbers", fallback.empty() ? "" : "[" + join(f) + "]", "a list of numbers, or one");
  }
  const Value* v = raw(key);
  if (!v || v->is_null()) return fallback;
  auto one = [&](const Value& item, const std::string& where) {
    if (item.kind() == Value::Kind::kScalar)
      if (auto d = parse_double(item.text())) return *d;
    bad_value(where, "a number", item);
  };
  if (v->kind() == Value::Kind::kScalar) return {one(*v, key_path(key))};
  if (v->kind() != Value::Kind::kList) bad_value(key_path(key), "a list of numbers", *v);
  std::vector<double> out;
  for (size_t i = 0; i < v->items().size(); ++i)
    out.push_back(one(v->items()[i], msg(key_path(key), "[", i, "]")));
  return out;
}

std::shared_ptr<Params> Params::get_map(const std::string& key) {
  note(key, "map", "", "a map (key: value, ...)");
  const Value* v = raw(key);
  if (!v || v->is_null()) return nullptr;
  if (v->kind() != Value::Kind::kMap) bad_value(key_path(key), "a map (key: value, ...)", *v);
  record_child(*v->params(), key + ".");
  return v->params();
}

std::vector<std::shared_ptr<Params>> Params::get_map_list(const std::string& key) {
  note(key, "list of maps", "", "a list of maps");
  const Value* v = raw(key);
  std::vector<std::shared_ptr<Params>> out;
  if (!v || v->is_null()) return out;
  if (v->kind() != Value::Kind::kList) bad_value(key_path(key), "a list of maps", *v);
  for (size_t i = 0; i < v->items().size(); ++i) {
    const Value& item = v->items()[i];
    if (item.kind() != Value::Kind::kMap)
      bad_value(msg(key_path(key), "[", i, "]"), "a map (key: value, ...)", item);
    record_child(*item.params(), key + "[].");
    out.push_back(item.params());
  }
  return out;
}

std::map<std::string, std::string> Params::get_string_map(const std::string& key) {
  std::map<std::string, std::string> out;
  note(key, "map of scalars", "", "a map of scalars (key: value, ...)");
  std::shared_ptr<Params> m = get_map(key);
  if (!m) return out;
  for (const auto& e : m->entries_) {
    m->used_[e.first] = true;
    switch (e.second.kind()) {
      case Value::Kind::kNull:
        break;
      case Value::Kind::kScalar:
        out[e.first] = e.second.text();
        break;
      case Value::Kind::kList:  // kept in flow form ("[16, 32]") for the reader to split
        out[e.first] = e.second.describe();
        break;
      case Value::Kind::kMap:
        bad_value(m->key_path(e.first), "a scalar or a list", e.second);
    }
  }
  return out;
}

void Params::require(const std::string& key) const {
  if (has(key)) return;
  throw ConfigError(msg("missing required key '", key, "' in ",
                        path_.empty() ? std::string("the top level") : path_));
}

void Params::finish(const std::vector<std::string>& valid) const {
  for (const std::string& k : valid) note(k, "value");
  std::vector<std::string> unknown;
  for (const auto& e : entries_)
    if (!used_.count(e.first) && std::find(valid.begin(), valid.end(), e.first) == valid.end())
      unknown.push_back(e.first);
  if (unknown.empty()) return;

  std::vector<std::string> known;
  for (const auto& u : used_) known.push_back(u.first);
  for (const std::string& k : valid)
    if (!used_.count(k)) known.push_back(k);
  std::sort(known.begin(), known.end());

  std::string text = msg("unknown key '", unknown[0], "' ",
                         path_.empty() ? std::string("at the top level") : "in " + path_,
                         " (valid: ", known.empty() ? std::string("none") : join(known), ")");
  std::string near = did_you_mean(unknown[0], known);
  if (!near.empty()) text += "; did you mean '" + near + "'?";
  if (unknown.size() > 1)
    text +=
        msg(near.empty() ? ". " : " ",
            "Also unknown: ", join(std::vector<std::string>(unknown.begin() + 1, unknown.end())));
  throw ConfigError(text);
}

std::shared_ptr<Params> Params::clone() const {
  std::function<Value(const Value&)> copy = [&](const Value& v) -> Value {
    if (v.kind() == Value::Kind::kMap) return Value::map(v.params()->clone());
    if (v.kind() == Value::Kind::kList) {
      std::vector<Value> items;
      for (const Value& item : v.items()) items.push_back(copy(item));
      return Value::list(std::move(items));
    }
    return v;
  };
  auto out = std::make_shared<Params>(path_);
  for (const auto& e : entries_) out->set(e.first, copy(e.second));
  return out;
}

void Params::apply_override(const std::string& assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || trim(assignment.substr(0, eq)).empty())
    throw ConfigError(
        msg("--set ", assignment, ": expected key.path=value (e.g. data.batch_size=64)"));
  std::string lhs = trim(assignment.substr(0, eq));
  Value value = parse_override_value(assignment.substr(eq + 1), assignment);

  // "a.b[0].c" and "a.b.0.c" both address list items.
  std::vector<std::string> segs;
  std::string cur;
  for (char c : lhs) {
    if (c == '.' || c == '[') {
      if (!cur.empty()) segs.push_back(cur);
      cur.clear();
    } else if (c != ']') {
      cur += c;
    }
  }
  if (!cur.empty()) segs.push_back(cur);
  if (segs.empty()) throw ConfigError(msg("--set ", assignment, ": empty key path"));

  // Rebuilds the value at segs[i..] with the assignment applied. Maps are changed in place;
  // lists are copied because their items are immutable values.
  std::function<Value(const Value&, size_t, const std::string&)> assign =
      [&](const Value& node, size_t i, const std::string& where) -> Value {
    if (i == segs.size()) return value;
    const std::string& seg = segs[i];
    switch (node.kind()) {
      case Value::Kind::kList: {
        auto idx = parse_int(seg);
        if (!idx || *idx < 0 || *idx >= static_cast<int64_t>(node.items().size()))
          throw ConfigError(msg("--set ", assignment, ": ", where, " is a list of ",
                                node.items().size(), " items; '", seg,
                                "' is not a valid index (expected 0..",
                                static_cast<int64_t>(node.items().size()) - 1, ")"));
        std::vector<Value> items = node.items();
        items[*idx] = assign(items[*idx], i + 1, msg(where, "[", *idx, "]"));
        return Value::list(std::move(items));
      }
      case Value::Kind::kScalar:
        throw ConfigError(msg("--set ", assignment, ": ", where, " is a scalar (", shown(node),
                              "), so it has no key '", seg, "'"));
      case Value::Kind::kNull:
        // An index into nothing is almost always a list item the config does not have.
        if (parse_int(seg))
          throw ConfigError(msg("--set ", assignment, ": ", where,
                                " does not exist, so it has no list item ", seg));
        [[fallthrough]];
      case Value::Kind::kMap: {
        std::shared_ptr<Params> m =
            node.kind() == Value::Kind::kMap ? node.params() : std::make_shared<Params>(where);
        Value child;
        for (const auto& e : m->entries_)
          if (e.first == seg) child = e.second;
        m->set(seg, assign(child, i + 1, m->key_path(seg)));
        return node.kind() == Value::Kind::kMap ? node : Value::map(m);
      }
    }
    return node;
  };

  Value child;
  for (const auto& e : entries_)
    if (e.first == segs[0]) child = e.second;
  set(segs[0], assign(child, 1, key_path(segs[0])));
}

// ---------------------------------------------------------------------------------------------

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  const std::string w = lower(word);
  const size_t threshold = std::max<size_t>(2, w.size() / 3);
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const std::string& c : candidates) {
    size_t d = edit_distance(w, lower(c));
    // A distance as large as the word itself is a replacement, not a typo.
    if (d <= threshold && d < w.size() && d < best_d) {
      best = c;
      best_d = d;
    }
  }
  if (!best.empty()) return best;
  // A truncated key ("batch" for "batch_size") is far in edits but obvious to a reader.
  if (w.size() >= 3) {
    for (const std::string& c : candidates) {
      std::string lc = lower(c);
      if (lc.size() > w.size() && lc.compare(0, w.size(), w) == 0) return c;
    }
  }
  return best;
}

void rethrow_with_path(const Params& p, const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) throw ConfigError(msg(p.path(), ".", e.what()));
  throw;
}

}  // namespace squeeze
