// The CLI that explains itself: config --check (the same checks as run, before any training),
// config --example (parses, checks and runs), methods (generated from the validating code, and
// docs/methods.md kept equal to it), help with defaults and examples, and did-you-mean for
// misspelt options and commands.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "reference.h"
#include "squeeze/compress/registry.h"
#include "squeeze/io/sqz.h"
#include "squeeze/models/zoo.h"
#include "testing/asserts.h"
#include "testing/cli.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using testing::cli;
using testing::TempDir;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A small valid workflow on synthetic data; `stage_params` and `data` are spliced in.
std::string workflow(const std::string& stage_params, const std::string& data = "",
                     const std::string& method = "prune") {
  return "model: {zoo: mlp, params: {in_features: 16, num_classes: 5}}\n" +
         (data.empty() ? std::string("data: {dataset: synthetic-jets, samples: 400}\n") : data) +
         "experiments:\n"
         "  - name: a\n"
         "    stages:\n"
         "      - {method: " + method + ", params: " + stage_params + "}\n"
         "      - {method: quantize, params: {mode: dynamic}}\n"
         "  - name: b\n"
         "    stages: [{method: prune, params: {ratio: 0.3}}]\n"
         "output: {dir: out}\n";
}

TEST(ConfigCheck, AValidWorkflowIsOkAndNothingIsWritten) {
  TempDir dir;
  const std::string out = dir.file("out");
  auto r = cli({"config", "--check", dir.write("w.yaml", workflow("{ratio: 0.5}")), "--set", "output.dir=" + out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, dir.file("w.yaml") + ": ok (2 experiments, 3 stages)\n");
  EXPECT_FALSE(fs::exists(out)) << "config --check must not create the output folder";
}

TEST(ConfigCheck, APipelineIsCheckedByItsRunner) {
  auto r = cli({"config", "--check", std::string(SQUEEZE_SOURCE_DIR) + "/examples/validation.yaml", "--set",
                "data.limit.train=200", "--set", "data.limit.val=100", "--set", "data.limit.test=100"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, ": ok (pipeline validation, ")) << r.out;
}

struct Broken {
  const char* name;
  std::string yaml;
  std::vector<std::string> expected;  // parts of the message: the key and what would be valid
};

TEST(ConfigCheck, FiveBrokenConfigsExitTwoNamingTheKey) {
  const std::vector<Broken> cases = {
      {"unknown key", workflow("{ratoi: 0.5}"),
       {"experiments[0].stages[0].params", "'ratoi'", "did you mean 'ratio'?"}},
      {"value out of range", workflow("{ratio: 1.5}"),
       {"experiments[0].stages[0].params.ratio", "a number in [0, 0.999999]", "'1.5'"}},
      {"unknown method", workflow("{ratio: 0.5}", "", "prunning"),
       {"experiments[0].stages[0].method", "unknown method 'prunning'", "(valid: prune, quantize", "did you mean"}},
      {"missing data file",
       workflow("{ratio: 0.5}", "data: {dataset: npy, features: /no/such/x.npy, labels: /no/such/y.npy}\n"),
       {"data.features: no such file /no/such/x.npy"}},
      {"bad YAML", "model: {zoo: mlp\ndata: [\n", {"w.yaml:", "YAML syntax error"}},
  };
  for (const Broken& c : cases) {
    TempDir dir;
    auto r = cli({"config", "--check", dir.write("w.yaml", c.yaml)});
    EXPECT_EQ(r.code, 2) << c.name << ": " << r.out << r.err;
    for (const auto& part : c.expected) EXPECT_TRUE(contains(r.err, part)) << c.name << ": " << r.err;
  }
}

TEST(ConfigCheck, APassThatRejectsItsParamsFailsTheCheck) {
  // Checked by the pass itself (made from the params), not by the config parser.
  TempDir dir;
  auto r = cli({"config", "--check", dir.write("w.yaml", workflow("{energy: 0.9, rank: 4}", "", "lowrank"))});
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.err, "give exactly one of rank, ratio or energy")) << r.err;
}

TEST(ConfigCheck, NeedsExampleOrCheck) {
  auto r = cli({"config"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "--example or --check")) << r.err;
  auto both = cli({"config", "--example", "--check", "x.yaml"});
  EXPECT_EQ(both.code, 2);
}

TEST(ConfigExample, ParsesChecksAndRunsOnATinySubset) {
  auto ex = cli({"config", "--example"});
  ASSERT_EQ(ex.code, 0) << ex.err;
  EXPECT_EQ(ex.out, cli::example_config());
  // Every top-level key is in it (the alternatives commented out).
  for (const char* key : {"seed:", "threads:", "model:", "data:", "baseline:", "experiments:", "# compression:",
                          "# pipeline:", "output:"})
    EXPECT_TRUE(contains(ex.out, key)) << key;
  TempDir dir;
  const std::string path = dir.write("example.yaml", ex.out);
  const std::vector<std::string> tiny = {"--set", "data.limit.train=128", "--set", "data.limit.val=32",
                                         "--set", "data.limit.test=128", "--set", "baseline.train.epochs=1",
                                         "--set", "output.latency=false", "--set", "output.export=[]"};
  std::vector<std::string> check = {"config", "--check", path};
  check.insert(check.end(), tiny.begin(), tiny.end());
  auto c = cli(check);
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_TRUE(contains(c.out, "ok (3 experiments, 4 stages)")) << c.out;

  std::vector<std::string> run = {"run", path, "--out", dir.file("out")};
  run.insert(run.end(), tiny.begin(), tiny.end());
  auto r = cli(run);
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(dir.file("out/report.json"));
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["results"].size(), 3u);
}

TEST(Methods, ListsEveryMethodWithTypesDefaultsAndRanges) {
  auto r = cli({"methods"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& m : compress::methods()) EXPECT_TRUE(contains(r.out, m.name + " (also: ")) << m.name;
  auto q = cli({"methods", "quantize"});
  ASSERT_EQ(q.code, 0) << q.err;
  EXPECT_TRUE(contains(q.out, "weight_bits")) << q.out;
  EXPECT_TRUE(contains(q.out, "an integer in [2, 8]")) << q.out;
  EXPECT_TRUE(contains(q.out, "one of: ptq, dynamic, qat")) << q.out;
  // mode: dynamic changes a default: listed under it.
  EXPECT_TRUE(contains(q.out, "with mode: dynamic:")) << q.out;
}

TEST(Methods, ConditionalKeysAreListedUnderTheChoiceThatReadsThem) {
  auto r = cli({"methods", "pruning"});  // an alias
  ASSERT_EQ(r.code, 0) << r.err;
  const size_t with = r.out.find("with kind: structured:");
  ASSERT_NE(with, std::string::npos) << r.out;
  const size_t granularity = r.out.find("granularity");
  ASSERT_NE(granularity, std::string::npos) << r.out;
  EXPECT_GT(granularity, with) << "granularity is read only by structured pruning";
  EXPECT_TRUE(contains(r.out, "iterative.steps")) << "keys inside maps are listed: " << r.out;
}

TEST(Methods, AMethodThatNeedsAKeySaysSo) {
  auto r = cli({"methods", "lowrank"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "requires: ")) << r.out;
  for (const char* key : {"rank", "ratio", "energy", "min_saving", "exclude"})
    EXPECT_TRUE(contains(r.out, key)) << key << "\n" << r.out;
}

TEST(Methods, UnknownMethodExitsTwoWithDidYouMean) {
  auto r = cli({"methods", "quantise"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "did you mean 'quantize'?")) << r.err;
}

// The list is what the validation reads: no key listed is reported unknown (given its default,
// or any value where it has none), a listed number rejects a word naming that key, and a key
// not listed is unknown.
TEST(Methods, ListedKeysAreTheKeysTheValidationReads) {
  for (const auto& m : compress::methods()) {
    const compress::MethodParams mp = compress::method_params(m);
    ASSERT_FALSE(mp.keys.empty()) << m.name;
    // What make() needs besides (lowrank: one of rank, ratio or energy), as the listing says.
    const std::string needed = mp.accepted_with.substr(0, mp.accepted_with.find(':'));
    auto with_needed = [&](Params& p, const std::string& key) {
      if (!needed.empty() && key != needed)
        p.apply_override(needed + "=" + mp.accepted_with.substr(mp.accepted_with.find(": ") + 2));
    };
    for (const KeyDoc& k : mp.keys) {
      if (k.key.find('[') != std::string::npos) continue;
      Params p;
      with_needed(p, k.key);
      p.apply_override(k.key + "=" + (k.fallback.empty() ? "x" : k.fallback));
      try {
        m.make(p);
      } catch (const ConfigError& e) {
        EXPECT_FALSE(contains(e.what(), "unknown key")) << m.name << "." << k.key << ": " << e.what();
      }
      if (k.type == "integer" || k.type == "number") {
        Params word;
        with_needed(word, k.key);
        word.apply_override(k.key + "=many");
        try {
          m.make(word);
          ADD_FAILURE() << m.name << "." << k.key << " accepted 'many'";
        } catch (const ConfigError& e) {
          EXPECT_TRUE(contains(e.what(), k.key)) << e.what();
        }
      }
    }
    Params bad;
    bad.apply_override("no_such_key=1");
    with_needed(bad, "no_such_key");
    try {
      m.make(bad);
      ADD_FAILURE() << m.name << " accepted no_such_key";
    } catch (const ConfigError& e) {
      EXPECT_TRUE(contains(e.what(), "unknown key 'no_such_key'")) << m.name << ": " << e.what();
    }
  }
}

TEST(Methods, DocsMethodsMdIsGeneratedFromTheCode) {
  std::ifstream in(std::string(SQUEEZE_SOURCE_DIR) + "/docs/methods.md");
  std::stringstream file;
  file << in.rdbuf();
  auto r = cli({"methods", "--markdown"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(file.str(), r.out)
      << "docs/methods.md is stale: regenerate it with  build/squeeze methods --markdown > docs/methods.md";
}

TEST(CliHelp, ShowsDefaultsAndExamples) {
  auto top = cli({"--help"});
  ASSERT_EQ(top.code, 0);
  EXPECT_TRUE(contains(top.out, "Examples:")) << top.out;
  for (const char* cmd : {"config", "methods", "run", "bench"}) EXPECT_TRUE(contains(top.out, cmd)) << cmd;
  auto bench = cli({"bench", "--help"});
  ASSERT_EQ(bench.code, 0);
  EXPECT_TRUE(contains(bench.out, "Example:")) << bench.out;
  EXPECT_TRUE(contains(bench.out, "default: 1 and 64")) << bench.out;
  auto infer = cli({"infer", "--help"});
  EXPECT_TRUE(contains(infer.out, "256")) << infer.out;
  for (const char* cmd : {"run", "inspect", "eval", "infer", "export", "zoo", "config", "methods"})
    EXPECT_TRUE(contains(cli({cmd, "--help"}).out, "Example")) << cmd;
  // export lists what this build writes, cpp included, with its options.
  auto exp = cli({"export", "--help"});
  EXPECT_TRUE(contains(exp.out, "onnx, qonnx, torchscript, cpp")) << exp.out;
  EXPECT_TRUE(contains(exp.out, "--cpp-unroll")) << exp.out;
  EXPECT_TRUE(contains(exp.out, "--golden")) << exp.out;
}

TEST(CliUsage, BatchZeroSaysWhatIsValid) {
  auto r = cli({"bench", "zoo:mlp", "--batch", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "--batch: expected an integer >= 1, got '0'")) << r.err;
  EXPECT_FALSE(contains(r.err, "179769")) << r.err;
  auto t = cli({"--threads", "-1", "zoo"});
  EXPECT_EQ(t.code, 2);
  EXPECT_TRUE(contains(t.err, "expected an integer >= 0, got '-1'")) << t.err;
}

TEST(CliUsage, MisspeltOptionsAndCommandsGetADidYouMean) {
  auto r = cli({"inspect", "zoo:mlp", "--jsn"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "did you mean '--json'?")) << r.err;
  EXPECT_TRUE(contains(r.err, "squeeze inspect --help")) << r.err;
  auto b = cli({"bench", "zoo:mlp", "--profil"});
  EXPECT_TRUE(contains(b.err, "did you mean '--profile'?")) << b.err;
  auto g = cli({"zoo", "--thread", "2"});
  EXPECT_TRUE(contains(g.err, "did you mean '--threads'?")) << g.err;
  auto c = cli({"inspct", "zoo:mlp"});
  EXPECT_EQ(c.code, 2);
  EXPECT_TRUE(contains(c.err, "did you mean 'inspect'?")) << c.err;
}

TEST(CliUsage, InspectShowsLayerNamesWhole) {
  // Names longer than any column width, as imported models have them.
  ir::Graph g = models::build("mlp", {{"in_features", "8"}, {"num_classes", "3"}}, 0);
  for (auto& n : g.nodes) n.name = "encoder.layers.0.feed_forward." + n.name;
  TempDir dir;
  io::save_sqz(g, dir.file("m.sqz"));
  auto r = cli({"inspect", dir.file("m.sqz")});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& n : g.nodes) EXPECT_TRUE(contains(r.out, "\n" + n.name + " ")) << n.name << "\n" << r.out;
  EXPECT_FALSE(contains(r.out, "...")) << r.out;
}

TEST(CliUsage, ProfileIsInTheJson) {
  auto r = cli({"--threads", "1", "bench", "zoo:mlp", "--batch", "2", "--json", "--profile"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 1u);
  const auto& prof = j["results"][0]["profile"];
  ASSERT_TRUE(prof.is_array()) << r.out;
  ASSERT_FALSE(prof.empty());
  bool linear = false;
  for (const auto& t : prof) linear |= t["op"] == "Linear";
  EXPECT_TRUE(linear) << r.out;
  EXPECT_FALSE(nlohmann::json::parse(cli({"--threads", "1", "bench", "zoo:mlp", "--batch", "2", "--json"}).out)
                   ["results"][0]
                   .contains("profile"));
}

}  // namespace
}  // namespace squeeze
