// A typed, path-aware tree of configuration values. pipeline/config converts YAML into Params
// (the only place that sees YAML); option structs read themselves from Params with typed getters
// that name the key path, the bad value and what would be valid.
//
//   Params p = ...;                          // path "experiments[0].stages[1].params"
//   double r = p.get_double("ratio", 0.5, 0.0, 1.0);
//   std::string c = p.get_choice("criterion", "l1", {"l1", "l2", "random"});
//   p.finish();   // throws ConfigError for every key nobody read, with a did-you-mean
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace squeeze {

class Params;

// What a reader of Params accepts, recorded while it reads (Params::record_into): every getter
// notes its key, type, default and valid range, so `squeeze methods` lists exactly what the
// validating code accepts. Recording changes nothing about what the getters return or throw.
struct KeyDoc {
  std::string key;       // below the recorded root: "ratio", "iterative.steps", "features[].weight"
  std::string type;      // bool, integer, number, string, choice, strings, integers, numbers, map,
                         // list of maps, map of scalars, or "value" (only asked whether present)
  std::string fallback;  // the default as text; "" when there is none
  std::string expected;  // what is valid, as error messages say it: "an integer in [2, 8]"
  std::vector<std::string> choices;    // choice only
  std::optional<double> min, max;      // integer and number, when bounded
  std::string help;                    // one line, where the reader gives one (Params::document)
};

struct Schema {
  std::vector<KeyDoc> keys;  // in the order they were first read
  KeyDoc* find(const std::string& key);
};

// One value: null, a scalar (kept as the YAML text plus its inferred kind), a list or a map.
class Value {
 public:
  enum class Kind { kNull, kScalar, kList, kMap };
  Value();  // null
  static Value scalar(std::string text, bool quoted = false);
  static Value list(std::vector<Value> items);
  static Value map(std::shared_ptr<Params> params);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  const std::string& text() const { return text_; }  // scalars only
  bool quoted() const { return quoted_; }
  const std::vector<Value>& items() const { return items_; }
  const std::shared_ptr<Params>& params() const { return map_; }
  std::string describe() const;  // "0.5", "[1, 2]", "{a: 1}", "null": for error messages

 private:
  Kind kind_ = Kind::kNull;
  std::string text_;
  bool quoted_ = false;
  std::vector<Value> items_;
  std::shared_ptr<Params> map_;
};

class Params {
 public:
  explicit Params(std::string path = "") : path_(std::move(path)) {}

  const std::string& path() const { return path_; }   // "" for the root
  std::string key_path(const std::string& key) const; // "data.batch_size"

  // Insertion keeps order; set() replaces.
  void set(const std::string& key, Value value);
  bool has(const std::string& key) const;            // present and not null
  std::vector<std::string> keys() const;
  const Value* raw(const std::string& key) const;    // nullptr if absent; marks it used

  // Typed getters: the key may be absent (fallback returned). A present value of the wrong
  // type or out of range throws ConfigError naming key_path(key), the value and the range.
  bool get_bool(const std::string& key, bool fallback);
  int64_t get_int(const std::string& key, int64_t fallback, int64_t min = INT64_MIN,
                  int64_t max = INT64_MAX);
  double get_double(const std::string& key, double fallback, double min = -1e300,
                    double max = 1e300);
  std::string get_string(const std::string& key, const std::string& fallback);
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& choices);
  std::vector<std::string> get_strings(const std::string& key);  // a list, or one scalar
  std::vector<int64_t> get_ints(const std::string& key, std::vector<int64_t> fallback);
  std::vector<double> get_doubles(const std::string& key, std::vector<double> fallback);
  // Nested map; nullptr if absent. A non-map value throws ConfigError.
  std::shared_ptr<Params> get_map(const std::string& key);
  // A list of maps (e.g. experiments); empty if absent.
  std::vector<std::shared_ptr<Params>> get_map_list(const std::string& key);
  // A map of scalars to doubles (e.g. zoo params, per-layer bits).
  std::map<std::string, std::string> get_string_map(const std::string& key);

  // Requires the key; throws ConfigError "missing required key X in Y".
  void require(const std::string& key) const;

  // Throws ConfigError for the first key never read by a getter or raw(), listing the valid
  // keys (those that were read) and a did-you-mean suggestion when one is close.
  // `valid` adds keys that are legal but were not read on this path.
  void finish(const std::vector<std::string>& valid = {}) const;

  // Records every key read from now on (and from nested maps and lists read through this one)
  // into `schema`, under `prefix`.
  void record_into(std::shared_ptr<Schema> schema, const std::string& prefix = "");
  // Adds what is valid and a one-line help to the key's record, for checks a getter cannot
  // express (open bounds, cross-field rules); does nothing unless recording. Empty arguments
  // leave the recorded text as it is.
  void document(const std::string& key, const std::string& expected,
                const std::string& help = "") const;

  // Deep copy (used flags reset).
  std::shared_ptr<Params> clone() const;

  // Applies "a.b.c=value" (the CLI's --set). Creates maps as needed; the value is parsed as
  // a scalar, or as a flow list "[1, 2]".
  void apply_override(const std::string& assignment);

 private:
  std::string path_;
  std::vector<std::pair<std::string, Value>> entries_;
  mutable std::map<std::string, bool> used_;
  std::shared_ptr<Schema> schema_;  // null unless recording
  std::string schema_prefix_;

  KeyDoc* note(const std::string& key, const std::string& type, const std::string& fallback = "",
               const std::string& expected = "") const;
  void record_child(const Params& child, const std::string& key) const;
};

// For options structs read from Params: rejects unread keys (finish()), then runs the options'
// validate(); a ConfigError from validate() gets the Params path prefixed so it names the key.
template <typename Options>
void finish_and_validate(Params& p, const Options& options);

// The closest candidate to `word` by edit distance, or "" if none is close enough.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

// Rethrows a ConfigError with the params path in front (used by finish_and_validate).
[[noreturn]] void rethrow_with_path(const Params& p, const std::exception& e);

template <typename Options>
void finish_and_validate(Params& p, const Options& options) {
  p.finish();
  try {
    options.validate();
  } catch (const std::exception& e) {
    rethrow_with_path(p, e);
  }
}

}  // namespace squeeze
