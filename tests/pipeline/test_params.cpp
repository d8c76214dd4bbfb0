// Params: typed getters, key paths in errors, unknown-key rejection, overrides.
#include <gtest/gtest.h>

#include <string>

#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "testing/errors.h"

namespace squeeze {
namespace {

// Runs `fn`, expects a ConfigError and returns its message.
template <typename F>
std::string config_error(F fn) {
  return testing::error_of<ConfigError>(fn);
}

std::shared_ptr<Params> stage_params() {
  auto root = std::make_shared<Params>();
  auto stage = std::make_shared<Params>();
  auto params = std::make_shared<Params>();
  params->set("ratio", Value::scalar("0.5"));
  params->set("criterion", Value::scalar("l1"));
  stage->set("params", Value::map(params));
  auto stage0 = std::make_shared<Params>();
  auto exp = std::make_shared<Params>();
  exp->set("stages", Value::list({Value::map(stage0), Value::map(stage)}));
  root->set("experiments", Value::list({Value::map(exp)}));
  return root;
}

TEST(Params, NestedPathsFollowWhereMapsAreStored) {
  auto root = stage_params();
  auto exps = root->get_map_list("experiments");
  ASSERT_EQ(exps.size(), 1u);
  EXPECT_EQ(exps[0]->path(), "experiments[0]");
  auto stages = exps[0]->get_map_list("stages");
  ASSERT_EQ(stages.size(), 2u);
  auto params = stages[1]->get_map("params");
  ASSERT_TRUE(params);
  EXPECT_EQ(params->path(), "experiments[0].stages[1].params");
  EXPECT_EQ(params->key_path("ratio"), "experiments[0].stages[1].params.ratio");
}

TEST(Params, TypeMismatchRejectionNamesPathValueAndRange) {
  auto params =
      stage_params()->get_map_list("experiments")[0]->get_map_list("stages")[1]->get_map("params");
  params->set("ratio", Value::scalar("1.5"));
  std::string m = config_error([&] { params->get_double("ratio", 0.5, 0.0, 1.0); });
  EXPECT_NE(m.find("experiments[0].stages[1].params.ratio"), std::string::npos) << m;
  EXPECT_NE(m.find("1.5"), std::string::npos) << m;
  EXPECT_NE(m.find("expected a number in [0, 1]"), std::string::npos) << m;

  m = config_error([&] { params->get_choice("criterion", "l1", {"l2", "random"}); });
  EXPECT_NE(m.find("expected one of: l2, random"), std::string::npos) << m;
  EXPECT_NE(m.find("did you mean 'l2'"), std::string::npos) << m;
}

TEST(Params, GetIntIsStrict) {
  Params p("data");
  p.set("a", Value::scalar("10"));
  p.set("b", Value::scalar("1.5"));
  p.set("c", Value::scalar("abc"));
  p.set("d", Value::scalar("-3"));
  p.set("e", Value::scalar("99999999999999999999999"));
  EXPECT_EQ(p.get_int("a", 0), 10);
  EXPECT_EQ(p.get_int("d", 0), -3);
  EXPECT_EQ(p.get_int("missing", 7), 7);
  std::string m = config_error([&] { p.get_int("b", 0); });
  EXPECT_NE(m.find("data.b"), std::string::npos) << m;
  EXPECT_NE(m.find("expected an integer"), std::string::npos) << m;
  EXPECT_NE(m.find("'1.5'"), std::string::npos) << m;
  EXPECT_THROW(p.get_int("c", 0), ConfigError);
  EXPECT_THROW(p.get_int("e", 0), ConfigError);
  m = config_error([&] { p.get_int("a", 0, 1, 5); });
  EXPECT_NE(m.find("an integer in [1, 5]"), std::string::npos) << m;
  m = config_error([&] { p.get_int("d", 0, 0); });
  EXPECT_NE(m.find("an integer >= 0"), std::string::npos) << m;
}

TEST(Params, GetDoubleAcceptsIntsAndExponents) {
  Params p;
  p.set("a", Value::scalar("3"));
  p.set("b", Value::scalar("1e-3"));
  p.set("c", Value::scalar("1.0e-3"));
  p.set("d", Value::scalar("-0.25"));
  p.set("e", Value::scalar("abc"));
  p.set("f", Value::scalar("nan"));
  p.set("g", Value::list({Value::scalar("1")}));
  EXPECT_DOUBLE_EQ(p.get_double("a", 0), 3.0);
  EXPECT_DOUBLE_EQ(p.get_double("b", 0), 1e-3);
  EXPECT_DOUBLE_EQ(p.get_double("c", 0), 1e-3);
  EXPECT_DOUBLE_EQ(p.get_double("d", 0), -0.25);
  EXPECT_DOUBLE_EQ(p.get_double("missing", 2.5), 2.5);
  EXPECT_THROW(p.get_double("e", 0), ConfigError);
  EXPECT_THROW(p.get_double("f", 0), ConfigError);
  EXPECT_THROW(p.get_double("g", 0), ConfigError);
  std::string m = config_error([&] { p.get_double("d", 0, 0.0); });
  EXPECT_NE(m.find("a number >= 0"), std::string::npos) << m;
}

TEST(Params, GetBoolSpellings) {
  Params p;
  const char* yes[] = {"true", "True", "yes", "on"};
  const char* no[] = {"false", "FALSE", "no", "off"};
  for (const char* s : yes) {
    p.set("k", Value::scalar(s));
    EXPECT_TRUE(p.get_bool("k", false)) << s;
  }
  for (const char* s : no) {
    p.set("k", Value::scalar(s));
    EXPECT_FALSE(p.get_bool("k", true)) << s;
  }
  p.set("k", Value::scalar("maybe"));
  std::string m = config_error([&] { p.get_bool("k", true); });
  EXPECT_NE(m.find("expected a boolean"), std::string::npos) << m;
  EXPECT_TRUE(p.get_bool("absent", true));
}

TEST(Params, StringsAndLists) {
  Params p("output");
  p.set("s", Value::scalar("onnx"));
  p.set("l", Value::list({Value::scalar("onnx"), Value::scalar("cpp")}));
  auto inner = std::make_shared<Params>();
  inner->set("x", Value::scalar("1"));
  p.set("m", Value::map(inner));
  p.set("n", Value());
  p.set("ints", Value::list({Value::scalar("1"), Value::scalar("64")}));
  p.set("bad_ints", Value::list({Value::scalar("1"), Value::scalar("x")}));

  EXPECT_EQ(p.get_string("s", ""), "onnx");
  EXPECT_EQ(p.get_string("n", "fb"), "fb");  // null reads as absent
  EXPECT_THROW(p.get_string("l", ""), ConfigError);
  std::string m = config_error([&] { p.get_string("m", ""); });
  EXPECT_NE(m.find("output.m: expected a string, got {x: 1}"), std::string::npos) << m;

  EXPECT_EQ(p.get_strings("s"), std::vector<std::string>({"onnx"}));
  EXPECT_EQ(p.get_strings("l"), std::vector<std::string>({"onnx", "cpp"}));
  EXPECT_TRUE(p.get_strings("absent").empty());
  EXPECT_THROW(p.get_strings("m"), ConfigError);

  EXPECT_EQ(p.get_ints("ints", {}), std::vector<int64_t>({1, 64}));
  EXPECT_EQ(p.get_ints("s_absent", {3}), std::vector<int64_t>({3}));
  m = config_error([&] { p.get_ints("bad_ints", {}); });
  EXPECT_NE(m.find("output.bad_ints[1]"), std::string::npos) << m;
  EXPECT_EQ(p.get_doubles("ints", {}), std::vector<double>({1.0, 64.0}));

  EXPECT_THROW(p.get_map("s"), ConfigError);
  EXPECT_EQ(p.get_map("absent"), nullptr);
  EXPECT_THROW(p.get_map_list("l"), ConfigError);
}

TEST(Params, StringMapKeepsScalarsAsText) {
  Params p("model");
  auto inner = std::make_shared<Params>();
  inner->set("num_classes", Value::scalar("10"));
  inner->set("widths", Value::list({Value::scalar("16"), Value::scalar("32")}));
  p.set("params", Value::map(inner));
  auto m = p.get_string_map("params");
  EXPECT_EQ(m["num_classes"], "10");
  EXPECT_EQ(m["widths"], "[16, 32]");
  EXPECT_NO_THROW(inner->finish());
  EXPECT_TRUE(p.get_string_map("absent").empty());
}

TEST(Params, UnknownKeyRejectionWithDidYouMean) {
  Params p("baseline.train");
  p.set("epocs", Value::scalar("3"));
  p.set("lr", Value::scalar("0.1"));
  p.get_int("epochs", 1);
  p.get_double("lr", 1e-3);
  p.get_string("optimizer", "adam");
  std::string m = config_error([&] { p.finish(); });
  EXPECT_NE(m.find("unknown key 'epocs' in baseline.train"), std::string::npos) << m;
  EXPECT_NE(m.find("valid: epochs, lr, optimizer"), std::string::npos) << m;
  EXPECT_NE(m.find("did you mean 'epochs'?"), std::string::npos) << m;

  Params root;
  root.set("sede", Value::scalar("1"));
  m = config_error([&] { root.finish({"seed", "model"}); });
  EXPECT_NE(m.find("at the top level"), std::string::npos) << m;
  EXPECT_NE(m.find("did you mean 'seed'?"), std::string::npos) << m;
}

TEST(Params, FinishAcceptsReadAndValidKeys) {
  Params p;
  p.set("a", Value::scalar("1"));
  p.set("b", Value::scalar("2"));
  p.set("c", Value());
  p.get_int("a", 0);
  p.raw("b");
  EXPECT_THROW(p.finish(), ConfigError);
  EXPECT_NO_THROW(p.finish({"c"}));
  EXPECT_TRUE(p.has("a"));
  EXPECT_FALSE(p.has("c"));
  EXPECT_NO_THROW(p.finish());
}

TEST(Params, RequireNamesKeyAndPlace) {
  Params p("data");
  std::string m = config_error([&] { p.require("path"); });
  EXPECT_NE(m.find("missing required key 'path' in data"), std::string::npos) << m;
  p.set("path", Value::scalar("x"));
  EXPECT_NO_THROW(p.require("path"));
}

TEST(Params, DidYouMean) {
  EXPECT_EQ(did_you_mean("epocs", {"epochs", "lr", "optimizer"}), "epochs");
  EXPECT_EQ(did_you_mean("optimzier", {"epochs", "lr", "optimizer"}), "optimizer");  // swap
  EXPECT_EQ(did_you_mean("batch", {"batch_size", "split"}), "batch_size");           // prefix
  EXPECT_EQ(did_you_mean("zzzzzz", {"epochs", "lr"}), "");
  EXPECT_EQ(did_you_mean("xy", {"lr"}), "");
  EXPECT_EQ(did_you_mean("Epochs", {"epochs"}), "epochs");
}

TEST(Params, CloneIsDeepAndResetsUse) {
  auto root = stage_params();
  auto params = root->get_map_list("experiments")[0]->get_map_list("stages")[1]->get_map("params");
  params->get_double("ratio", 0);
  auto copy = params->clone();
  EXPECT_EQ(copy->path(), "experiments[0].stages[1].params");
  copy->set("ratio", Value::scalar("0.9"));
  EXPECT_DOUBLE_EQ(params->get_double("ratio", 0), 0.5);
  EXPECT_THROW(copy->finish(), ConfigError);  // nothing read on the copy yet
  EXPECT_EQ(params->raw("ratio")->describe(), "0.5");
}

TEST(Params, OverridesCreateMapsAndParseValues) {
  Params p;
  p.apply_override("data.batch_size=64");
  p.apply_override("output.export=[onnx, 'cpp']");
  p.apply_override("output.latency_batches=[]");
  p.apply_override("name=\"a b\"");
  p.apply_override("pipeline=null");
  auto data = p.get_map("data");
  ASSERT_TRUE(data);
  EXPECT_EQ(data->path(), "data");
  EXPECT_EQ(data->get_int("batch_size", 0), 64);
  auto out = p.get_map("output");
  EXPECT_EQ(out->get_strings("export"), std::vector<std::string>({"onnx", "cpp"}));
  EXPECT_TRUE(out->get_ints("latency_batches", {1}).empty());
  EXPECT_EQ(p.get_string("name", ""), "a b");
  EXPECT_FALSE(p.has("pipeline"));

  p.apply_override("data.batch_size=abc");  // type errors surface when the key is read
  std::string m = config_error([&] { p.get_map("data")->get_int("batch_size", 0, 1); });
  EXPECT_NE(m.find("data.batch_size: expected an integer >= 1, got 'abc'"), std::string::npos) << m;
}

TEST(Params, OverridesAddressListItems) {
  auto root = stage_params();
  root->apply_override("experiments.0.stages.1.params.ratio=0.3");
  root->apply_override("experiments[0].stages[1].params.scope=global");
  root->apply_override("experiments.0.stages.0.method=prune");
  auto stage1 = root->get_map_list("experiments")[0]->get_map_list("stages")[1];
  auto params = stage1->get_map("params");
  EXPECT_EQ(params->path(), "experiments[0].stages[1].params");
  EXPECT_DOUBLE_EQ(params->get_double("ratio", 0), 0.3);
  EXPECT_EQ(params->get_string("scope", ""), "global");
  auto stage0 = root->get_map_list("experiments")[0]->get_map_list("stages")[0];
  EXPECT_EQ(stage0->get_string("method", ""), "prune");

  Params q;
  q.apply_override("output.latency_batches=[1, 64]");
  q.apply_override("output.latency_batches.1=8");
  EXPECT_EQ(q.get_map("output")->get_ints("latency_batches", {}), std::vector<int64_t>({1, 8}));
}

TEST(Params, BadOverrides) {
  auto root = stage_params();
  std::string m = config_error([&] { root->apply_override("experiments.3.name=x"); });
  EXPECT_NE(m.find("experiments is a list of 1 items"), std::string::npos) << m;
  m = config_error([&] { root->apply_override("experiments.0.stages.1.params.ratio.x=1"); });
  EXPECT_NE(m.find("experiments[0].stages[1].params.ratio is a scalar"), std::string::npos) << m;
  m = config_error([&] { root->apply_override("missing.0.x=1"); });
  EXPECT_NE(m.find("missing does not exist, so it has no list item 0"), std::string::npos) << m;
  EXPECT_THROW(root->apply_override("no_equals_sign"), ConfigError);
  EXPECT_THROW(root->apply_override("=3"), ConfigError);
  EXPECT_THROW(root->apply_override("a=[1, 2"), ConfigError);
}

TEST(Params, DescribeForMessages) {
  EXPECT_EQ(Value().describe(), "null");
  EXPECT_EQ(Value::scalar("0.5").describe(), "0.5");
  EXPECT_EQ(Value::scalar("x", true).describe(), "'x'");
  EXPECT_EQ(Value::list({Value::scalar("1"), Value::scalar("2")}).describe(), "[1, 2]");
}

}  // namespace
}  // namespace squeeze
