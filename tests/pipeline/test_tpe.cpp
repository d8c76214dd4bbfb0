// TPE and random samplers, the below/above split and the median pruner, on synthetic objectives.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <functional>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "squeeze/pipeline/pruner.h"
#include "squeeze/pipeline/tpe.h"
#include "squeeze/util/error.h"
#include "testing/errors.h"

namespace squeeze::pipeline {
namespace {

using Kind = Distribution::Kind;
using Params = std::map<std::string, double>;
using Objective = std::function<std::vector<double>(const Params&)>;

constexpr double kPi = 3.14159265358979323846;
// Tolerance on log densities against Optuna's numbers (printed with 15 significant digits; the
// erf/erfc implementations differ in the last bits).
constexpr double kLogPdfTol = 1e-9;

Distribution float_dist(double low, double high, double step = 0) {
  Distribution d;
  d.kind = Kind::kFloat;
  d.low = low, d.high = high, d.step = step;
  return d;
}
Distribution log_dist(double low, double high) {
  Distribution d = float_dist(low, high);
  d.kind = Kind::kLogFloat;
  return d;
}
Distribution int_dist(double low, double high, double step = 1) {
  Distribution d = float_dist(low, high, step);
  d.kind = Kind::kInt;
  return d;
}
Distribution cat_dist(std::vector<std::string> choices) {
  Distribution d;
  d.kind = Kind::kCategorical;
  d.choices = std::move(choices);
  return d;
}

Trial complete(int64_t number, std::vector<double> values, Params params = {}) {
  Trial t;
  t.number = number;
  t.state = TrialState::kComplete;
  t.values = std::move(values);
  t.params = std::move(params);
  return t;
}
Trial pruned(int64_t number, std::map<int64_t, double> intermediate) {
  Trial t;
  t.number = number;
  t.state = TrialState::kPruned;
  t.intermediate = std::move(intermediate);
  return t;
}

// Runs a sequential study and checks every proposal lies in the domain.
std::vector<Trial> run_study(const Sampler& sampler, const SearchSpace& space, const Objective& f,
                             int n_trials) {
  std::vector<Trial> trials;
  for (int i = 0; i < n_trials; ++i) {
    Trial t = complete(i, {});
    t.params = sampler.propose(space, trials, i);
    EXPECT_EQ(t.params.size(), space.size());
    for (const auto& [name, d] : space) {
      EXPECT_TRUE(d.contains(t.params.at(name)))
          << name << " = " << t.params.at(name) << " in trial " << i;
    }
    t.values = f(t.params);
    trials.push_back(std::move(t));
  }
  return trials;
}

double best_value(const std::vector<Trial>& trials, Direction d) {
  double best = d == Direction::kMinimize ? INFINITY : -INFINITY;
  for (const auto& t : trials) {
    best = d == Direction::kMinimize ? std::min(best, t.values[0]) : std::max(best, t.values[0]);
  }
  return best;
}

// ---- synthetic objectives ----

SearchSpace sphere_space() {
  return {{"x", float_dist(-5, 5)}, {"y", float_dist(-5, 5)}, {"z", float_dist(-5, 5)}};
}
std::vector<double> sphere(const Params& p) {
  const double dx = p.at("x") - 1.3, dy = p.at("y") + 2.1, dz = p.at("z") - 0.7;
  return {dx * dx + dy * dy + dz * dz};
}

SearchSpace branin_space() { return {{"x1", float_dist(-5, 10)}, {"x2", float_dist(0, 15)}}; }
std::vector<double> branin(const Params& p) {
  const double x1 = p.at("x1"), x2 = p.at("x2");
  const double b = 5.1 / (4 * kPi * kPi), c = 5 / kPi, t = 1 / (8 * kPi);
  const double a = x2 - b * x1 * x1 + c * x1 - 6;
  return {a * a + 10 * (1 - t) * std::cos(x1) + 10};  // minimum 0.397887
}

// An int, a stepped float, a log_float and a categorical; maximised (best 0).
SearchSpace mixed_space() {
  return {{"channels", int_dist(8, 128, 8)},
          {"ratio", float_dist(0, 1, 0.05)},
          {"lr", log_dist(1e-5, 1)},
          {"criterion", cat_dist({"l1", "l2", "fpgm", "random"})}};
}
std::vector<double> mixed(const Params& p) {
  const double penalty[] = {0.8, 0.0, 0.5, 2.0};
  const double c = (p.at("channels") - 72) / 32, r = (p.at("ratio") - 0.35) * 3;
  const double l = std::log10(p.at("lr")) + 3;
  return {-(c * c + r * r + l * l + penalty[static_cast<int>(p.at("criterion"))])};
}

// ---- validation ----

std::string config_error(const std::function<void()>& fn) {
  return testing::error_of<ConfigError>(fn);
}

TEST(TpeValidate, AcceptsEveryKind) {
  EXPECT_NO_THROW(validate(mixed_space()));
  EXPECT_NO_THROW(validate("one", int_dist(3, 3)));
  EXPECT_NO_THROW(validate("unset_step", int_dist(0, 4, 0)));  // step 0 reads as 1
  EXPECT_NO_THROW(validate("off_grid_high", float_dist(0, 1, 0.3)));
}

TEST(TpeValidate, RejectsBadDistributionsNamingParameterAndValidRange) {
  auto err = config_error([] { validate("p.ratio", float_dist(0.9, 0.1)); });
  EXPECT_NE(err.find("p.ratio"), std::string::npos) << err;
  EXPECT_NE(err.find("low must be less than or equal to high"), std::string::npos) << err;

  err = config_error([] { validate("p.crit", cat_dist({})); });
  EXPECT_NE(err.find("p.crit"), std::string::npos) << err;
  EXPECT_NE(err.find("non-empty list of choices"), std::string::npos) << err;

  err = config_error([] { validate("p.lr", log_dist(0, 1)); });
  EXPECT_NE(err.find("p.lr"), std::string::npos) << err;
  EXPECT_NE(err.find("low must be > 0"), std::string::npos) << err;
  err = config_error([] { validate("p.lr", log_dist(-1, 1)); });
  EXPECT_NE(err.find("low must be > 0"), std::string::npos) << err;
  err = config_error([] {
    Distribution d = log_dist(1e-3, 1);
    d.step = 0.1;
    validate("p.lr", d);
  });
  EXPECT_NE(err.find("takes no step"), std::string::npos) << err;

  err = config_error([] { validate("p.ch", int_dist(1, 8, 0.5)); });
  EXPECT_NE(err.find("p.ch"), std::string::npos) << err;
  EXPECT_NE(err.find("integer >= 1"), std::string::npos) << err;
  err = config_error([] { validate("p.ch", int_dist(1, 8, -2)); });
  EXPECT_NE(err.find("integer >= 1"), std::string::npos) << err;
  err = config_error([] { validate("p.ch", int_dist(1, 8, 1.5)); });
  EXPECT_NE(err.find("integer >= 1"), std::string::npos) << err;
  err = config_error([] { validate("p.ch", int_dist(0.5, 8)); });
  EXPECT_NE(err.find("bounds must be integers"), std::string::npos) << err;
  err = config_error([] { validate("p.ch", int_dist(5, 4)); });
  EXPECT_NE(err.find("low must be less than or equal to high"), std::string::npos) << err;

  err = config_error([] { validate("p.r", float_dist(0, 1, -0.1)); });
  EXPECT_NE(err.find("step must be > 0 for a grid or 0"), std::string::npos) << err;
  err = config_error([] { validate("p.r", float_dist(0, 1e9, 1e-6)); });
  EXPECT_NE(err.find("more than 1e+12 grid points"), std::string::npos) << err;
  err = config_error([] { validate("p.r", float_dist(0, NAN)); });
  EXPECT_NE(err.find("must be finite"), std::string::npos) << err;

  err = config_error([] { validate(SearchSpace{}); });
  EXPECT_NE(err.find("search space is empty"), std::string::npos) << err;
  // A bad entry in a space is reported by name, and the samplers validate before proposing.
  SearchSpace space = sphere_space();
  space["w"] = float_dist(2, 1);
  err = config_error([&] { TpeSampler().propose(space, {}, 0); });
  EXPECT_NE(err.find("'w'"), std::string::npos) << err;
  err = config_error([&] { RandomSampler().propose(space, {}, 0); });
  EXPECT_NE(err.find("'w'"), std::string::npos) << err;
}

TEST(TpeValidate, RejectsBadOptions) {
  TpeOptions o;
  o.directions = {};
  EXPECT_NE(config_error([&] { TpeSampler{o}; }).find("directions"), std::string::npos);
  o = {};
  o.directions = {Direction::kMinimize, Direction::kMinimize, Direction::kMaximize};
  EXPECT_NE(config_error([&] { TpeSampler{o}; }).find("give 1"), std::string::npos);
  o = {};
  o.prior_weight = 0;
  EXPECT_NE(config_error([&] { TpeSampler{o}; }).find("prior_weight"), std::string::npos);
  o = {};
  o.n_ei_candidates = 0;
  EXPECT_NE(config_error([&] { TpeSampler{o}; }).find("n_ei_candidates"), std::string::npos);
  MedianPrunerOptions p;
  p.interval_steps = 0;
  EXPECT_NE(config_error([&] { MedianPruner{p}; }).find("interval_steps"), std::string::npos);
}

// ---- Optuna's formulas ----

TEST(TpeFormulas, GammaMatchesOptuna) {
  // min(ceil(0.1 n), 25) and ceil(0.1 n)
  const std::vector<std::pair<int64_t, int64_t>> cases = {
      {0, 0}, {1, 1}, {9, 1}, {10, 1}, {11, 2}, {40, 4}, {41, 5}, {249, 25}, {250, 25}, {1000, 25}};
  for (auto [n, g] : cases) EXPECT_EQ(default_gamma(n), g) << n;
  EXPECT_EQ(default_gamma_multiobjective(1000), 100);
  EXPECT_EQ(default_gamma_multiobjective(11), 2);
}

TEST(TpeFormulas, WeightsMatchOptuna) {
  EXPECT_TRUE(default_weights(0).empty());
  EXPECT_EQ(default_weights(24), std::vector<double>(24, 1.0));
  // n = 25: linspace(1/25, 1, num=0) is empty, then 25 ones.
  EXPECT_EQ(default_weights(25), std::vector<double>(25, 1.0));
  // n = 26: linspace(1/26, 1, num=1) = [1/26].
  auto w = default_weights(26);
  ASSERT_EQ(w.size(), 26u);
  EXPECT_DOUBLE_EQ(w[0], 1.0 / 26);
  EXPECT_DOUBLE_EQ(w[1], 1.0);
  // n = 30: linspace(1/30, 1, num=5) = 1/30 + k (29/30) / 4, then 25 ones.
  w = default_weights(30);
  ASSERT_EQ(w.size(), 30u);
  for (int k = 0; k < 5; ++k) EXPECT_DOUBLE_EQ(w[k], 1.0 / 30 + k * (29.0 / 30) / 4) << k;
  for (int k = 5; k < 30; ++k) EXPECT_EQ(w[k], 1.0) << k;
}

// Log densities of Optuna's own _ParzenEstimator on the same examples, printed by
// tests/scripts/tpe_reference.py.
TEST(ParzenEstimator, MatchesOptuna) {
  struct Case {
    const char* name;
    std::vector<Distribution> dists;
    std::vector<std::vector<double>> obs;
    std::vector<std::vector<double>> xs;
    std::vector<double> expected;
    bool endpoints_noclip = false;
  };
  const auto col = [](std::vector<double> v) { return std::vector<std::vector<double>>{v}; };
  const auto points = [](std::vector<double> v) {
    std::vector<std::vector<double>> xs;
    for (double x : v) xs.push_back({x});
    return xs;
  };
  std::vector<double> ramp;
  for (int i = 0; i < 30; ++i) ramp.push_back(i * 0.03);
  // clang-format off
  const std::vector<Case> cases = {
      {"float", {float_dist(0, 1)}, col({0.1, 0.25, 0.9}), points({0.0, 0.2, 0.5, 0.95}),
       {0.231564080624099, 0.304782689565836, -0.111094438819537, -0.329893061798314}},
      {"float_endpoints_noclip", {float_dist(0, 1)}, col({0.1, 0.25, 0.9}),
       points({0.0, 0.2, 0.5, 0.95}),
       {0.289955467611136, 0.359161519287382, -0.19521257649013, -0.330012915472674},
       true},
      {"float_one_obs", {float_dist(-2, 3)}, col({0.5}), points({-2.0, 0.5, 2.9}),
       {-1.81505731831818, -1.50933645112247, -1.79235164596462}},
      {"prior_only", {float_dist(-5, 5)}, col({}), points({0.0, 4.0}),
       {-2.2616072925031, -2.3416072925031}},
      {"log_float", {log_dist(1e-4, 1)}, col({1e-3, 1e-2, 0.5}), points({1e-4, 3e-3, 0.1, 1.0}),
       {-2.56033116726256, -2.07524266045433, -2.2563761514651, -2.43657460156459}},
      {"int", {int_dist(1, 10)}, col({2, 3, 9}), points({1, 3, 6, 10}),
       {-2.10871375919924, -2.03302260476087, -2.41318320679605, -2.65687527422421}},
      {"int_step3", {int_dist(0, 9, 3)}, col({3, 3}), points({0, 3, 6, 9}),
       {-1.36809740741232, -1.01800612594921, -1.34795681260404, -2.08486420708761}},
      {"float_step", {float_dist(0, 1, 0.25)}, col({0.25, 0.5}), points({0.0, 0.5, 1.0}),
       {-1.69845050966915, -1.32955698639005, -2.26437659471694}},
      {"categorical", {cat_dist({"a", "b", "c"})}, col({0, 2, 2}), points({0, 1, 2}),
       {-1.09861228866811, -1.65822807660353, -0.741937344729377}},
      {"ramp_weights", {float_dist(0, 1)}, col(ramp), points({0.05, 0.5, 0.86}),
       {-0.552199029622215, 0.184510479874651, -0.036255373246073}},
      {"joint", {float_dist(0, 1), cat_dist({"p", "q"})}, {{0.2, 0.7}, {1, 0}},
       {{0.2, 0}, {0.2, 1}, {0.7, 0}},
       {-0.788245432017693, -0.561652271858006, -0.590960339694671}},
  };
  // clang-format on
  for (const Case& c : cases) {
    TpeOptions o;
    if (c.endpoints_noclip) o.consider_endpoints = true, o.consider_magic_clip = false;
    const ParzenEstimator pe(c.dists, c.obs, {}, o);
    EXPECT_EQ(pe.n_kernels(), c.obs[0].size() + 1) << c.name;
    for (size_t i = 0; i < c.xs.size(); ++i) {
      EXPECT_NEAR(pe.log_pdf(c.xs[i]), c.expected[i], kLogPdfTol) << c.name << " x #" << i;
    }
  }
}

TEST(ParzenEstimator, DensityIntegratesToOneAndSamplesStayInDomain) {
  TpeOptions o;
  std::mt19937_64 rng = trial_rng(7, 0);
  {  // continuous: trapezoid rule over [low, high]
    const ParzenEstimator pe({float_dist(-1, 2)}, {{-0.9, 0.3, 0.35, 1.99}}, {}, o);
    const int n = 30000;
    double sum = 0;
    for (int i = 0; i <= n; ++i) {
      const double x = -1 + 3.0 * i / n;
      sum += (i == 0 || i == n ? 0.5 : 1.0) * std::exp(pe.log_pdf({x}));
    }
    EXPECT_NEAR(sum * 3.0 / n, 1.0, 1e-6);
  }
  {  // log_float: a density over log(x)
    const ParzenEstimator pe({log_dist(1e-3, 10)}, {{2e-3, 0.5}}, {}, o);
    const double lo = std::log(1e-3), hi = std::log(10.0);
    const int n = 30000;
    double sum = 0;
    for (int i = 0; i <= n; ++i) {
      const double y = i == n ? hi : lo + (hi - lo) * i / n;
      sum += (i == 0 || i == n ? 0.5 : 1.0) * std::exp(pe.log_pdf({std::exp(y)}));
    }
    EXPECT_NEAR(sum * (hi - lo) / n, 1.0, 1e-6);
  }
  {  // int with a step and an off-grid high: masses of the grid points 0, 3, ..., 9
    const Distribution d = int_dist(0, 10, 3);
    const ParzenEstimator pe({d}, {{3, 9}}, {}, o);
    double sum = 0;
    for (double x : {0, 3, 6, 9}) sum += std::exp(pe.log_pdf({x}));
    EXPECT_NEAR(sum, 1.0, 1e-12);
    for (int i = 0; i < 500; ++i) {
      const double x = pe.sample(rng)[0];
      ASSERT_TRUE(d.contains(x) && x <= 9) << x;
    }
  }
  {  // categorical
    const ParzenEstimator pe({cat_dist({"a", "b", "c", "d"})}, {{1, 1, 3}}, {}, o);
    double sum = 0;
    for (double x : {0, 1, 2, 3}) sum += std::exp(pe.log_pdf({x}));
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
  {  // every kind of sample lies in its domain
    const SearchSpace space = mixed_space();
    std::vector<Distribution> dists;
    for (const auto& [name, d] : space) dists.push_back(d);
    // Columns in the space's (name) order: channels, criterion, lr, ratio.
    const ParzenEstimator pe(dists, {{72, 128}, {0, 3}, {1e-3, 1e-5}, {0.35, 0.5}}, {}, o);
    for (int i = 0; i < 500; ++i) {
      const auto x = pe.sample(rng);
      size_t j = 0;
      for (const auto& [name, d] : space)
        ASSERT_TRUE(d.contains(x[j++])) << name << " " << x[j - 1];
    }
  }
}

// ---- the below / above split ----

std::vector<int64_t> numbers(const std::vector<const Trial*>& trials) {
  std::vector<int64_t> out;
  for (const Trial* t : trials) out.push_back(t->number);
  return out;
}

TEST(TpeSplit, BestCompleteTrialsInNumberOrderIgnoringFailedAndRunning) {
  std::vector<Trial> trials = {complete(3, {5.0}), complete(0, {1.0}), complete(1, {4.0}),
                               complete(2, {1.0}), complete(4, {0.5})};
  Trial failed = complete(5, {-100.0});
  failed.state = TrialState::kFailed;
  Trial running = complete(6, {-100.0});
  running.state = TrialState::kRunning;
  trials.push_back(failed);
  trials.push_back(running);
  trials.push_back(complete(7, {NAN}));  // a NaN objective counts as failed

  TpeOptions o;
  auto s = split_trials(trials, o, 2);
  EXPECT_EQ(numbers(s.below), (std::vector<int64_t>{0, 4}));  // tie 0/2 at 1.0: the older wins
  EXPECT_EQ(numbers(s.above), (std::vector<int64_t>{1, 2, 3}));
  o.directions = {Direction::kMaximize};
  s = split_trials(trials, o, 2);
  EXPECT_EQ(numbers(s.below), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(numbers(s.above), (std::vector<int64_t>{0, 2, 4}));
}

TEST(TpeSplit, PrunedTrialsRankAfterCompleteByStepThenValue) {
  const std::vector<Trial> trials = {
      complete(0, {0.9}),    pruned(1, {{0, 0.5}, {1, 0.6}}),  // reached step 1
      pruned(2, {{0, 0.8}}), pruned(3, {{0, 0.7}, {1, 0.4}}),
      pruned(4, {}),         pruned(5, {{0, 0.1}, {1, NAN}}),
      complete(6, {0.1})};
  TpeOptions o;
  o.directions = {Direction::kMaximize};  // accuracy: intermediate values maximised too
  // Complete trials first (0, then 6), then pruned at step 1 by value (1: 0.6, 3: 0.4, 5: NaN),
  // then pruned at step 0 (2), then the one that reported nothing (4).
  const std::vector<std::vector<int64_t>> below_by_n = {{0},
                                                        {0, 6},
                                                        {0, 1, 6},
                                                        {0, 1, 3, 6},
                                                        {0, 1, 3, 5, 6},
                                                        {0, 1, 2, 3, 5, 6},
                                                        {0, 1, 2, 3, 4, 5, 6}};
  for (size_t n = 1; n <= below_by_n.size(); ++n) {
    EXPECT_EQ(numbers(split_trials(trials, o, static_cast<int64_t>(n)).below), below_by_n[n - 1])
        << n;
  }
  // Minimised objective but maximised intermediate values (size objective, accuracy reports).
  o.directions = {Direction::kMinimize};
  o.intermediate_direction = Direction::kMaximize;
  EXPECT_EQ(numbers(split_trials(trials, o, 3).below), (std::vector<int64_t>{0, 1, 6}));
  o.intermediate_direction = Direction::kMinimize;
  EXPECT_EQ(numbers(split_trials(trials, o, 3).below), (std::vector<int64_t>{0, 3, 6}));
}

TEST(TpeSplit, ParetoSplitsByNonDominationRankThenHypervolume) {
  TpeOptions o;
  o.directions = {Direction::kMaximize, Direction::kMinimize};  // accuracy up, size down
  const std::vector<Trial> trials = {complete(0, {0.90, 10}), complete(1, {0.80, 5}),
                                     complete(2, {0.70, 1}),                           // front
                                     complete(3, {0.85, 10}), complete(4, {0.60, 6}),  // rank 1
                                     complete(5, {0.50, 20})};                         // rank 2
  EXPECT_EQ(numbers(split_trials(trials, o, 3).below), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(numbers(split_trials(trials, o, 5).below), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  // One place for the three front trials: the middle one (0.80, 5) spans the largest box to the
  // reference point (loss (-0.63, 11)) among the front: (0.17 x 6) vs (0.27 x 1), (0.07 x 10).
  EXPECT_EQ(numbers(split_trials(trials, o, 1).below), (std::vector<int64_t>{1}));
  EXPECT_EQ(numbers(split_trials(trials, o, 4).above), (std::vector<int64_t>{4, 5}));

  const std::vector<Trial> wrong = {complete(0, {0.5})};
  const auto err = config_error([&] { split_trials(wrong, o, 1); });
  EXPECT_NE(err.find("trial 0 is complete with 1 objective value(s)"), std::string::npos) << err;
}

// ---- samplers ----

TEST(RandomSampler, CoversTheGridUniformlyAndIsSeeded) {
  const SearchSpace space = mixed_space();
  const RandomSampler sampler(3);
  std::map<double, int> channels;
  std::map<double, int> criterion;
  for (int i = 0; i < 3000; ++i) {
    const auto p = sampler.propose(space, {}, i);
    for (const auto& [name, d] : space) ASSERT_TRUE(d.contains(p.at(name))) << name;
    channels[p.at("channels")]++;
    criterion[p.at("criterion")]++;
  }
  EXPECT_EQ(channels.size(), 16u);  // 8, 16, ..., 128
  EXPECT_EQ(criterion.size(), 4u);
  for (auto [v, n] : channels) EXPECT_GT(n, 100) << v;  // expected 187.5 each
  EXPECT_EQ(sampler.propose(space, {}, 5), RandomSampler(3).propose(space, {}, 5));
  EXPECT_NE(sampler.propose(space, {}, 5), RandomSampler(4).propose(space, {}, 5));
  EXPECT_NE(sampler.propose(space, {}, 5), sampler.propose(space, {}, 6));
}

TEST(TpeSampler, StartupTrialsAreRandom) {
  const SearchSpace space = mixed_space();
  TpeOptions o;
  o.seed = 11;
  const TpeSampler tpe(o);
  const RandomSampler random(11);
  std::vector<Trial> trials;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(tpe.propose(space, trials, i), random.propose(space, trials, i)) << i;
    trials.push_back(
        complete(i, mixed(random.propose(space, trials, i)), random.propose(space, trials, i)));
  }
  // Failed and running trials do not count towards the startup trials; pruned ones do.
  std::vector<Trial> not_counted = trials;
  not_counted.pop_back();
  not_counted.push_back(trials.back());
  not_counted.back().state = TrialState::kFailed;
  EXPECT_EQ(tpe.propose(space, not_counted, 10), random.propose(space, not_counted, 10));
  not_counted.back().state = TrialState::kRunning;
  EXPECT_EQ(tpe.propose(space, not_counted, 10), random.propose(space, not_counted, 10));
  // With 10 finished trials TPE takes over.
  EXPECT_NE(tpe.propose(space, trials, 10), random.propose(space, trials, 10));
  trials.back().state = TrialState::kPruned;
  EXPECT_NE(tpe.propose(space, trials, 10), random.propose(space, trials, 10));
}

TEST(TpeSampler, ProposalIsAPureFunctionOfSeedTrialsAndNumber) {
  const SearchSpace space = mixed_space();
  for (bool multivariate : {false, true}) {
    TpeOptions o;
    o.seed = 42;
    o.directions = {Direction::kMaximize};
    o.multivariate = multivariate;
    const TpeSampler sampler(o);
    const std::vector<Trial> history = run_study(sampler, space, mixed, 30);
    for (int k : {0, 5, 10, 17, 29}) {
      const std::vector<Trial> before(history.begin(), history.begin() + k);
      // A fresh sampler (a resumed study) proposes what the uninterrupted run proposed.
      EXPECT_EQ(TpeSampler(o).propose(space, before, k), history[k].params) << k;
      // The order in which the storage returns the trials does not matter.
      std::vector<Trial> shuffled = before;
      std::reverse(shuffled.begin(), shuffled.end());
      EXPECT_EQ(sampler.propose(space, shuffled, k), history[k].params) << k;
    }
    // Another seed gives another proposal.
    o.seed = 43;
    const std::vector<Trial> before(history.begin(), history.begin() + 20);
    EXPECT_NE(TpeSampler(o).propose(space, before, 20), history[20].params);
  }
}

TEST(TpeSampler, OneValueDomainsAndOffGridHighs) {
  SearchSpace space = {{"fixed_int", int_dist(4, 4)},
                       {"fixed_cat", cat_dist({"only"})},
                       {"narrow_grid", float_dist(0, 0.04, 0.05)},
                       {"off_grid", float_dist(0, 1, 0.3)},
                       {"x", float_dist(0, 1)}};
  const Objective f = [](const Params& p) {
    return std::vector<double>{std::fabs(p.at("x") - 0.5) + std::fabs(p.at("off_grid") - 0.6)};
  };
  const auto trials = run_study(TpeSampler(), space, f, 25);
  for (const auto& t : trials) {
    EXPECT_EQ(t.params.at("fixed_int"), 4);
    EXPECT_EQ(t.params.at("fixed_cat"), 0);
    EXPECT_EQ(t.params.at("narrow_grid"), 0);
    EXPECT_LE(t.params.at("off_grid"), 0.9 + 1e-12);
  }
}

TEST(TpeSampler, TrialsFromAnotherSpaceAreSkipped) {
  // A resumed study whose space changed: old values outside the new domain are not observations.
  SearchSpace space = {{"x", float_dist(0, 1)}, {"n", int_dist(1, 4)}};
  std::vector<Trial> trials;
  for (int i = 0; i < 12; ++i) {
    trials.push_back(complete(i, {static_cast<double>(i)}, {{"x", 5.0 + i}, {"n", 2}}));
  }
  trials.push_back(complete(12, {0.0}, {{"n", 3}}));  // no "x" at all
  for (bool multivariate : {false, true}) {
    TpeOptions o;
    o.multivariate = multivariate;
    const auto p = TpeSampler(o).propose(space, trials, 13);
    EXPECT_TRUE(space["x"].contains(p.at("x")));
    EXPECT_TRUE(space["n"].contains(p.at("n")));
  }
}

// TPE against random search over the same budget, mean of the best value over seeds.
struct Benchmark {
  const char* name;
  SearchSpace space;
  Objective f;
  Direction direction;
};

void expect_tpe_beats_random(const Benchmark& b, bool multivariate) {
  constexpr int kTrials = 40, kSeeds = 10;
  double tpe_sum = 0, random_sum = 0;
  int tpe_wins = 0;
  for (int seed = 0; seed < kSeeds; ++seed) {
    TpeOptions o;
    o.seed = static_cast<uint64_t>(seed);
    o.directions = {b.direction};
    o.multivariate = multivariate;
    const double tpe = best_value(run_study(TpeSampler(o), b.space, b.f, kTrials), b.direction);
    const double random =
        best_value(run_study(RandomSampler(o.seed), b.space, b.f, kTrials), b.direction);
    tpe_sum += tpe;
    random_sum += random;
    tpe_wins += b.direction == Direction::kMinimize ? tpe < random : tpe > random;
  }
  const double tpe_mean = tpe_sum / kSeeds, random_mean = random_sum / kSeeds;
  std::cout << "[ tpe-vs-random ] " << b.name << (multivariate ? " (multivariate)" : "")
            << ": mean best over " << kSeeds << " seeds x " << kTrials << " trials: tpe "
            << tpe_mean << ", random " << random_mean << " (tpe better in " << tpe_wins << "/"
            << kSeeds << ")\n";
  if (b.direction == Direction::kMinimize) {
    EXPECT_LT(tpe_mean, random_mean) << b.name;
  } else {
    EXPECT_GT(tpe_mean, random_mean) << b.name;
  }
}

class TpeBeatsRandom : public ::testing::TestWithParam<bool> {};

TEST_P(TpeBeatsRandom, ShiftedSphere) {
  expect_tpe_beats_random({"sphere3d", sphere_space(), sphere, Direction::kMinimize}, GetParam());
}
TEST_P(TpeBeatsRandom, Branin) {
  expect_tpe_beats_random({"branin", branin_space(), branin, Direction::kMinimize}, GetParam());
}
TEST_P(TpeBeatsRandom, MixedSpaceMaximised) {
  expect_tpe_beats_random({"mixed", mixed_space(), mixed, Direction::kMaximize}, GetParam());
}
INSTANTIATE_TEST_SUITE_P(Tpe, TpeBeatsRandom, ::testing::Values(false, true), [](const auto& info) {
  return info.param ? "Multivariate" : "Univariate";
});

// Hypervolume of a maximise-accuracy / minimise-size front against the reference (0, 1).
double hypervolume(std::vector<std::pair<double, double>> pts) {
  std::sort(pts.begin(), pts.end(), [](auto a, auto b) { return a.second < b.second; });
  double hv = 0, best_acc = 0;
  for (size_t i = 0; i < pts.size(); ++i) {
    best_acc = std::max(best_acc, pts[i].first);
    const double next_size = i + 1 < pts.size() ? std::min(pts[i + 1].second, 1.0) : 1.0;
    if (pts[i].second < 1.0) hv += best_acc * std::max(0.0, next_size - pts[i].second);
  }
  return hv;
}

TEST(TpeSampler, ParetoImprovesTheFrontOverRandom) {
  // "Accuracy" grows with the kept fraction and falls off with a badly chosen lr; "size" is the
  // kept fraction. The front is lr = 1e-2 for every fraction.
  const SearchSpace space = {{"keep", float_dist(0.05, 1)}, {"lr", log_dist(1e-5, 1)}};
  const Objective f = [](const Params& p) {
    const double l = std::log10(p.at("lr")) + 2;
    return std::vector<double>{std::sqrt(p.at("keep")) * std::exp(-0.5 * l * l), p.at("keep")};
  };
  constexpr int kTrials = 40, kSeeds = 8;
  double tpe_hv = 0, random_hv = 0;
  for (int seed = 0; seed < kSeeds; ++seed) {
    TpeOptions o;
    o.seed = static_cast<uint64_t>(seed);
    o.directions = {Direction::kMaximize, Direction::kMinimize};
    const auto front = [](const std::vector<Trial>& trials) {
      std::vector<std::pair<double, double>> pts;
      for (const auto& t : trials) pts.emplace_back(t.values[0], t.values[1]);
      return hypervolume(pts);
    };
    tpe_hv += front(run_study(TpeSampler(o), space, f, kTrials));
    random_hv += front(run_study(RandomSampler(o.seed), space, f, kTrials));
  }
  std::cout << "[ tpe-vs-random ] pareto: mean hypervolume over " << kSeeds << " seeds x "
            << kTrials << " trials: tpe " << tpe_hv / kSeeds << ", random " << random_hv / kSeeds
            << "\n";
  EXPECT_GT(tpe_hv, random_hv);
}

TEST(TpeSampler, ProposalWith200TrialsAndFiveParams) {
  SearchSpace space = mixed_space();
  space["w"] = float_dist(-1, 1);
  const Objective f = [](const Params& p) {
    auto v = mixed(p);
    v[0] -= p.at("w") * p.at("w");
    return v;
  };
  TpeOptions o;
  o.directions = {Direction::kMaximize};
  const TpeSampler sampler(o);
  const auto trials = run_study(RandomSampler(1), space, f, 200);
  // Informational only (no timing assertion: the machine is shared). CPU time, which other
  // processes on the machine disturb less than wall time.
  const std::clock_t start = std::clock();
  constexpr int kReps = 50;
  for (int i = 0; i < kReps; ++i) {
    const auto p = sampler.propose(space, trials, 200 + i);
    for (const auto& [name, d] : space) ASSERT_TRUE(d.contains(p.at(name))) << name;
  }
  const double us = 1e6 * static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC / kReps;
  std::cout << "[ tpe-speed ] 200 trials, 5 params (int, stepped float, log_float, categorical, "
               "float): "
            << us << " us CPU per proposal\n";
}

// ---- median pruner ----

Trial curve(int64_t number, TrialState state, std::vector<double> values) {
  Trial t;
  t.number = number;
  t.state = state;
  for (size_t s = 0; s < values.size(); ++s) t.intermediate[static_cast<int64_t>(s)] = values[s];
  return t;
}

std::vector<Trial> five_complete() {
  std::vector<Trial> out;
  for (int i = 0; i < 5; ++i) {
    const double base = 0.5 + 0.05 * i;  // step 0 median 0.6, step 2 median 0.8
    out.push_back(curve(i, TrialState::kComplete, {base, base + 0.1, base + 0.2}));
  }
  return out;
}

TEST(MedianPruner, PrunesAHopelessTrialButNotAGoodOne) {
  const MedianPruner pruner;  // maximise (accuracy), 5 startup trials, no warm-up, interval 1
  const auto others = five_complete();
  const Trial hopeless = curve(5, TrialState::kRunning, {0.1, 0.12, 0.15});
  const Trial good = curve(6, TrialState::kRunning, {0.7, 0.75, 0.9});
  for (int64_t step = 0; step < 3; ++step) {
    EXPECT_TRUE(pruner.should_prune(others, hopeless, step)) << step;
    EXPECT_FALSE(pruner.should_prune(others, good, step)) << step;
  }
  // Median of 0.5, 0.55, 0.6, 0.65, 0.7 at step 0 is 0.6: equal is not worse.
  EXPECT_FALSE(pruner.should_prune(others, curve(7, TrialState::kRunning, {0.6}), 0));
  EXPECT_TRUE(pruner.should_prune(others, curve(7, TrialState::kRunning, {0.599}), 0));
  // Best so far counts: a dip at step 2 below the median 0.8 after 0.95 at step 1 is not pruned.
  EXPECT_FALSE(pruner.should_prune(others, curve(8, TrialState::kRunning, {0.6, 0.95, 0.3}), 2));
  // An even count takes the mean of the two middle values: 0.6, 0.65 -> 0.625.
  auto four = others;
  four.erase(four.begin());
  MedianPrunerOptions o4;
  o4.n_startup_trials = 4;
  EXPECT_TRUE(MedianPruner(o4).should_prune(four, curve(9, TrialState::kRunning, {0.62}), 0));
  EXPECT_FALSE(MedianPruner(o4).should_prune(four, curve(9, TrialState::kRunning, {0.63}), 0));
  // All-NaN reports are pruned.
  EXPECT_TRUE(pruner.should_prune(others, curve(10, TrialState::kRunning, {NAN}), 0));
  // Minimised intermediate values (a loss) flip the comparison.
  MedianPrunerOptions loss;
  loss.direction = Direction::kMinimize;
  EXPECT_FALSE(MedianPruner(loss).should_prune(others, hopeless, 0));
  EXPECT_TRUE(MedianPruner(loss).should_prune(others, good, 0));
}

TEST(MedianPruner, NothingBeforeStartupWarmupOrFirstReport) {
  const MedianPruner pruner;
  auto others = five_complete();
  const Trial hopeless = curve(5, TrialState::kRunning, {0.1, 0.12, 0.15});
  // Only complete trials count towards the 5 startup trials; the current trial itself never.
  others[4].state = TrialState::kPruned;
  EXPECT_FALSE(pruner.should_prune(others, hopeless, 1));
  others[4].state = TrialState::kRunning;
  EXPECT_FALSE(pruner.should_prune(others, hopeless, 1));
  others[4].state = TrialState::kFailed;
  EXPECT_FALSE(pruner.should_prune(others, hopeless, 1));
  others[4].state = TrialState::kComplete;
  others[4].number = hopeless.number;  // the list handed in includes the current trial
  EXPECT_FALSE(pruner.should_prune(others, hopeless, 1));
  others[4].number = 4;
  EXPECT_TRUE(pruner.should_prune(others, hopeless, 1));
  EXPECT_FALSE(pruner.should_prune({}, hopeless, 1));

  MedianPrunerOptions warm;
  warm.n_warmup_steps = 2;
  EXPECT_FALSE(MedianPruner(warm).should_prune(others, hopeless, 1));
  EXPECT_TRUE(MedianPruner(warm).should_prune(others, hopeless, 2));
  // interval 2: checks at steps 0, 2, 4...; a trial that reported steps 0 and 1 is not re-checked
  // at step 1, but one that skipped step 0 is checked at its first report in the interval.
  MedianPrunerOptions every2;
  every2.interval_steps = 2;
  EXPECT_TRUE(MedianPruner(every2).should_prune(others, hopeless, 0));
  EXPECT_FALSE(MedianPruner(every2).should_prune(others, hopeless, 1));
  EXPECT_TRUE(MedianPruner(every2).should_prune(others, hopeless, 2));
  Trial late = hopeless;
  late.intermediate.erase(0);
  EXPECT_TRUE(MedianPruner(every2).should_prune(others, late, 1));
  // Nothing reported yet, or no complete trial reported this step: no pruning.
  EXPECT_FALSE(pruner.should_prune(others, curve(11, TrialState::kRunning, {}), 0));
  EXPECT_FALSE(pruner.should_prune(others, curve(11, TrialState::kRunning, {0, 0, 0, 0}), 3));
}

// The two together as the autotune pipeline will use them: accuracy curves reported per epoch,
// hopeless trials stopped early, pruned trials fed back to TPE.
TEST(MedianPruner, DrivesAStudyWithTpe) {
  const SearchSpace space = {{"lr", log_dist(1e-5, 1)}, {"ratio", float_dist(0, 1, 0.05)}};
  // Final accuracy peaks at lr = 1e-2, ratio = 0.3; the curve rises towards it over 6 epochs.
  const auto final_accuracy = [](const Params& p) {
    const double l = std::log10(p.at("lr")) + 2, r = p.at("ratio") - 0.3;
    return 0.95 * std::exp(-0.3 * l * l - 4 * r * r);
  };
  constexpr int kTrials = 40, kEpochs = 6;
  TpeOptions o;
  o.seed = 5;
  o.directions = {Direction::kMaximize};
  const TpeSampler sampler(o);
  const MedianPruner pruner;
  std::vector<Trial> trials;
  int n_pruned = 0;
  for (int i = 0; i < kTrials; ++i) {
    Trial t;
    t.number = i;
    t.state = TrialState::kRunning;
    t.params = sampler.propose(space, trials, i);
    for (const auto& [name, d] : space) ASSERT_TRUE(d.contains(t.params.at(name))) << name;
    const double acc = final_accuracy(t.params);
    for (int64_t epoch = 0; epoch < kEpochs && t.state == TrialState::kRunning; ++epoch) {
      t.intermediate[epoch] = acc * (1 - std::exp(-(epoch + 1) / 2.0));
      if (pruner.should_prune(trials, t, epoch)) t.state = TrialState::kPruned;
    }
    if (t.state == TrialState::kRunning) {
      t.state = TrialState::kComplete;
      t.values = {acc};
    }
    if (i < 5) EXPECT_EQ(t.state, TrialState::kComplete) << "trial " << i << " before startup";
    n_pruned += t.state == TrialState::kPruned;
    trials.push_back(std::move(t));
  }
  double best = 0;
  for (const auto& t : trials) {
    if (t.state == TrialState::kComplete) best = std::max(best, t.values[0]);
  }
  std::cout << "[ tpe+pruner ] " << n_pruned << " of " << kTrials << " trials pruned, best " << best
            << " (optimum 0.95)\n";
  EXPECT_GT(n_pruned, 0);
  EXPECT_LT(n_pruned, kTrials - 5);
  EXPECT_GT(best, 0.85);
}

}  // namespace
}  // namespace squeeze::pipeline
