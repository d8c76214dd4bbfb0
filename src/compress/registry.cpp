// The compression methods, in the order they are listed to users. Ordering constraints between
// methods live in the workflow (stages run in the order the user gives).
#include "squeeze/compress/registry.h"

#include <algorithm>
#include <sstream>

#include "squeeze/compress/distill/distill.h"
#include "squeeze/compress/lowrank/lowrank.h"
#include "squeeze/compress/prune/magnitude_prune.h"
#include "squeeze/compress/quantize/fixed_point.h"
#include "squeeze/compress/quantize/quantize.h"
#include "squeeze/compress/prune/structured_prune.h"
#include "squeeze/util/error.h"
#include "squeeze/util/params.h"

namespace squeeze::compress {

const std::vector<MethodInfo>& methods() {
  static const std::vector<MethodInfo> all = {
      {"prune",
       {"pruning"},
       "magnitude pruning to a target sparsity (kind: unstructured), global or per layer, one-shot or gradual; "
       "structured pruning of channels, layers or attention heads into a smaller dense model (kind: structured)",
       [](Params& p) -> std::unique_ptr<Pass> {
         // `kind` picks the pass; each options reader reads it again, so it counts as a valid key.
         std::string kind = p.get_choice("kind", "unstructured", {"unstructured", "structured"});
         if (kind == "structured") return make_structured_pass(StructuredPruneOptions::from_params(p));
         return std::make_unique<MagnitudePrune>(MagnitudePruneOptions::from_params(p));
       }},
      {"quantize",
       {"quantization"},
       "quantization to 2-8 bits: post-training (mode: ptq), dynamic int8 (dynamic) or quantization-aware (qat)",
       [](Params& p) -> std::unique_ptr<Pass> {
         return std::make_unique<Quantize>(QuantizeOptions::from_params(p));
       }},
      {"fixed_point",
       {"fixed"},
       "fixed-point types per tensor as hls4ml configures them (ap_fixed<W,I,Q,O,N>, ap_ufixed, QKeras "
       "quantized_bits): inputs, weights, biases, accumulators (inferred unless given) and results of Linear layers, "
       "Relu and Add results; evaluated exactly as the FPGA computes",
       [](Params& p) -> std::unique_ptr<Pass> {
         return std::make_unique<FixedPoint>(FixedPointOptions::from_params(p));
       }},
      {"lowrank",
       {"low_rank"},
       "low-rank factorization by truncated SVD of Linear layers, group-1 Conv layers and MatMuls with a constant "
       "matrix operand into two smaller layers, rank from rank, ratio (of the full rank) or energy (share of "
       "squared singular values), global or per layer; a global rank larger than a layer allows is clamped",
       [](Params& p) -> std::unique_ptr<Pass> {
         return std::make_unique<LowRank>(LowRankOptions::from_params(p));
       }},
      // Last: it trains, so in a chain it usually follows the methods that shrink the model.
      {"distill",
       {"distillation"},
       "knowledge distillation during the stage's fine-tuning: the current model, or a new zoo student "
       "trained from scratch, learns from a teacher (the baseline by default) with alpha, temperature and "
       "optional feature matching",
       [](Params& p) -> std::unique_ptr<Pass> {
         return std::make_unique<Distill>(DistillPassOptions::from_params(p));
       }},
  };
  return all;
}

const MethodInfo* find_method(const std::string& name_or_alias) {
  for (const auto& m : methods())
    if (m.name == name_or_alias ||
        std::find(m.aliases.begin(), m.aliases.end(), name_or_alias) != m.aliases.end())
      return &m;
  return nullptr;
}

namespace {

// Params given to make() while recording: (key path, value) pairs; a path segment "x[]" is a
// list holding one map ("features[].weight").
using Given = std::vector<std::pair<std::string, Value>>;

void set_path(Params& p, const std::string& path, const Value& leaf) {
  const size_t dot = path.find('.');
  if (dot == std::string::npos) {
    p.set(path, leaf);
    return;
  }
  std::string head = path.substr(0, dot);
  const bool list = head.size() > 2 && head.compare(head.size() - 2, 2, "[]") == 0;
  if (list) head.resize(head.size() - 2);
  auto child = std::make_shared<Params>();
  set_path(*child, path.substr(dot + 1), leaf);
  p.set(head, list ? Value::list({Value::map(child)}) : Value::map(child));
}

struct Recorded {
  std::shared_ptr<Schema> schema;
  std::string error;  // make()'s message when it rejected the params
};

Recorded record(const MethodInfo& m, const Given& given) {
  Params p;
  for (const auto& [path, v] : given) set_path(p, path, v);
  Recorded r{std::make_shared<Schema>(), ""};
  p.record_into(r.schema);
  try {
    m.make(p);
  } catch (const UserError& e) {
    r.error = e.what();
  }
  return r;
}

// A value the key's own range accepts, for finding params that make() accepts.
std::optional<std::string> sample(const KeyDoc& k) {
  std::ostringstream os;
  if (k.type == "integer") {
    double v = std::max(1.0, k.min.value_or(1.0));
    os << static_cast<int64_t>(std::min(v, k.max.value_or(v)));
  } else if (k.type == "number") {
    os << (k.min && k.max ? (*k.min + *k.max) / 2 : std::max(0.5, k.min.value_or(0.5)));
  } else {
    return std::nullopt;
  }
  return os.str();
}

bool same(const KeyDoc& a, const KeyDoc& b) {
  return a.type == b.type && a.fallback == b.fallback && a.expected == b.expected &&
         a.choices == b.choices && a.help == b.help;
}

// The keys make() reads from `given`, and inside the maps and lists of maps it reads: given an
// empty map (a list of one) there, a getter records their type and the keys inside, even when
// make() then rejects the empty map. A key read only as "present?" is tried as a map too.
std::vector<KeyDoc> explore(const MethodInfo& method, const Given& given, const Recorded& first) {
  std::vector<KeyDoc> keys = first.schema->keys;
  for (size_t i = 0; i < keys.size(); ++i) {
    const KeyDoc k = keys[i];
    if (k.type != "value" && k.type != "map" && k.type != "list of maps") continue;
    if (k.type == "value" && k.key.find('.') != std::string::npos) continue;
    Given g = given;
    auto empty = Value::map(std::make_shared<Params>());
    g.emplace_back(k.key, k.type == "list of maps" ? Value::list({empty}) : empty);
    Recorded r = record(method, g);
    const std::string prefix = k.key + (k.type == "list of maps" ? "[]." : ".");
    if (const KeyDoc* d = r.schema->find(k.key); d && k.type == "value" && d->type != "value") {
      keys[i].type = d->type;
      if (keys[i].expected.empty()) keys[i].expected = d->expected;
    }
    size_t at = i + 1;
    for (const KeyDoc& d : r.schema->keys) {
      const bool inside = d.key.compare(0, prefix.size(), prefix) == 0;
      const bool known = std::any_of(keys.begin(), keys.end(),
                                     [&](const KeyDoc& x) { return x.key == d.key; });
      if (inside && !known) keys.insert(keys.begin() + static_cast<std::ptrdiff_t>(at++), d);
    }
  }
  return keys;
}

const KeyDoc* find_key(const std::vector<KeyDoc>& keys, const std::string& key) {
  for (const KeyDoc& k : keys)
    if (k.key == key) return &k;
  return nullptr;
}

}  // namespace

MethodParams method_params(const MethodInfo& method) {
  MethodParams out;
  Given given;
  Recorded base = record(method, given);
  if (!base.error.empty()) {
    // A method may need one of several keys (lowrank: rank, ratio or energy): the first key it
    // read that makes it accept the params stands in for the others.
    out.needs = base.error;
    for (const KeyDoc& k : base.schema->keys) {
      auto v = sample(k);
      if (!v) continue;
      Recorded r = record(method, {{k.key, Value::scalar(*v)}});
      if (!r.error.empty()) continue;
      given = {{k.key, Value::scalar(*v)}};
      out.accepted_with = k.key + ": " + *v;
      base = r;
      break;
    }
  }
  out.keys = explore(method, given, base);

  // Other values of the top-level choices and flags: the keys they add, change or drop.
  for (const KeyDoc& k : out.keys) {
    if (k.key.find('.') != std::string::npos) continue;
    std::vector<std::string> others;
    if (k.type == "choice") {
      for (const auto& c : k.choices)
        if (c != k.fallback) others.push_back(c);
    } else if (k.type == "bool") {
      others.push_back(k.fallback == "true" ? "false" : "true");
    }
    for (const auto& v : others) {
      Given g = given;
      g.emplace_back(k.key, Value::scalar(v));
      Recorded r = record(method, g);
      if (!r.error.empty()) continue;
      MethodParams::Variant var{k.key + ": " + v, {}, {}};
      for (const KeyDoc& d : explore(method, g, r)) {
        const KeyDoc* b = find_key(out.keys, d.key);
        if (!b || !same(*b, d)) var.keys.push_back(d);
      }
      for (const KeyDoc& b : out.keys)
        if (b.key.find('.') == std::string::npos && !r.schema->find(b.key))
          var.unused.push_back(b.key);
      if (!var.keys.empty() || !var.unused.empty()) out.variants.push_back(std::move(var));
    }
  }
  return out;
}

std::vector<std::string> method_names() {
  std::vector<std::string> names;
  for (const auto& m : methods()) names.push_back(m.name);
  return names;
}

}  // namespace squeeze::compress
