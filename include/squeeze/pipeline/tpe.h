// Samplers for the auto-tuning search: a Tree-structured Parzen Estimator (TPE) following
// Optuna's TPESampler defaults, and the uniform RandomSampler it starts with. Both work on the
// SearchSpace / Trial records of pipeline/trial.h and know nothing about graphs or stages.
//
// Determinism: a proposal is a pure function of (seed, the trials passed in, the number of the
// trial being proposed). Every proposal draws from its own generator seeded from (seed, number),
// never from a generator that advances across calls, so a resumed study proposes exactly what an
// uninterrupted one would have. The random numbers are made here from std::mt19937_64's raw
// output (not std::*_distribution, whose algorithms differ between standard libraries), so the
// proposals are also the same with libstdc++ and libc++.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "squeeze/pipeline/trial.h"

namespace squeeze::pipeline {

// Checks one parameter's domain. Throws ConfigError naming `name`, the bad field and what would
// be valid when: low/high/step is not finite; low > high; int bounds or step are not integers, or
// int step < 1 (step 0 means "unset" and is read as 1, as Distribution::contains does); a float
// step is negative or so small that the range holds more than 1e12 grid points; log_float has
// low <= 0 or a step; categorical has no choices. (With integer bounds and low <= high, a grid
// low, low + step, ... always holds low; a stepped range whose high is off the grid is fine and
// ends at its last grid point, as in Optuna.)
void validate(const std::string& name, const Distribution& d);
// validate() for every entry; throws ConfigError on an empty space.
void validate(const SearchSpace& space);

// The generator of one proposal: std::mt19937_64 seeded by a splitmix64 mix of seed and number.
std::mt19937_64 trial_rng(uint64_t seed, int64_t trial_number);

// Optuna's gamma: how many of n finished trials form the "below" (good) group.
int64_t default_gamma(int64_t n);                 // min(ceil(0.1 n), 25)
int64_t default_gamma_multiobjective(int64_t n);  // ceil(0.1 n)
// Optuna's default_weights: n ones for n < 25; else a linear ramp from 1/n to 1 over the n - 25
// oldest observations followed by 25 ones. Index 0 is the oldest (lowest trial number).
std::vector<double> default_weights(int64_t n);

// Proposes the parameters of a new trial.
class Sampler {
 public:
  virtual ~Sampler() = default;
  // Internal values (see Distribution) for trial `trial_number`, one per entry of `space`, each
  // inside its domain (on the grid for int and stepped float). `trials` may hold trials in any
  // state and order; which of them are used is up to the sampler. Validates `space` (ConfigError).
  virtual std::map<std::string, double> propose(const SearchSpace& space,
                                                const std::vector<Trial>& trials,
                                                int64_t trial_number) const = 0;
};

// Uniform sampling: int and stepped float uniform over the grid points, float uniform on
// [low, high], log_float uniform in log space, categorical uniform over the choices. Ignores the
// trials. Each parameter draws from its own stream (seed, number, name), so adding a parameter to
// the space does not change the values drawn for the others.
class RandomSampler : public Sampler {
 public:
  explicit RandomSampler(uint64_t seed = 0) : seed_(seed) {}
  std::map<std::string, double> propose(const SearchSpace& space, const std::vector<Trial>& trials,
                                        int64_t trial_number) const override;

 private:
  uint64_t seed_;
};

struct TpeOptions {
  // One direction per objective value: one for a single objective, two for `pareto`.
  std::vector<Direction> directions = {Direction::kMinimize};
  // Direction of the intermediate values (used to rank pruned trials); default directions[0].
  // The autotune pipeline reports validation accuracy there, so it sets kMaximize.
  std::optional<Direction> intermediate_direction;
  int64_t n_startup_trials = 10;    // random proposals until this many trials are complete/pruned
  int64_t n_ei_candidates = 24;     // candidates drawn from l(x) per proposal
  double prior_weight = 1.0;        // weight of the prior kernel (> 0)
  bool consider_magic_clip = true;  // sigma >= (high - low) / min(100, n_observations + 2)
  bool consider_endpoints = false;  // whether the bounds widen the outermost kernels
  // false: one estimator per parameter, Optuna's default up to 4.x (5.0 turns multivariate on
  // for one objective). true: one joint estimator over all parameters (a kernel is one past trial),
  // Optuna's multivariate=True; it did better on two of the three synthetic tests in test_tpe.cpp.
  bool multivariate = false;
  uint64_t seed = 0;

  // Throws ConfigError naming the field and the bad value.
  void check() const;
};

// Tree-structured Parzen Estimator, Optuna's algorithm and defaults:
//  - Trials used: complete (values finite, one per direction) and pruned. Running, waiting and
//    failed trials are ignored, and so are complete trials with a NaN value. Fewer than
//    n_startup_trials used trials -> the proposal is RandomSampler's (same seed).
//  - Split (split_trials below): the best gamma(n) of the n used trials form "below", the rest
//    "above"; gamma is default_gamma, or default_gamma_multiobjective with two directions.
//  - Per parameter (or jointly, multivariate) a Parzen estimator l(x) is fitted to "below" and
//    g(x) to "above": one truncated Gaussian per observation plus a prior kernel (centre of the
//    range, sigma = range), Optuna's sigma rule and magic clip, observations weighted by
//    default_weights in trial-number order (all ones for "below" with two objectives).
//  - log_float is modelled in log space; int and stepped float are discretised (bounds widened by
//    step/2, each grid point gets the mass of its cell, samples rounded to the grid); categorical
//    uses a categorical kernel per observation plus prior_weight spread uniformly.
//  - n_ei_candidates are drawn from l(x); the first maximising log l(x) - log g(x) is proposed.
//    Univariate, each parameter draws from its own stream seeded by (seed, number, name);
//    multivariate, all draw from trial_rng(seed, number).
//  - Trials whose value of a parameter is missing or outside its domain (a resumed study whose
//    space changed) are not observations of that parameter (multivariate: of any parameter).
//  - A parameter whose domain holds one value is always that value.
class TpeSampler : public Sampler {
 public:
  explicit TpeSampler(TpeOptions options = {});
  std::map<std::string, double> propose(const SearchSpace& space, const std::vector<Trial>& trials,
                                        int64_t trial_number) const override;
  const TpeOptions& options() const { return options_; }

 private:
  TpeOptions options_;
};

// Optuna's below/above split of the usable trials (see TpeSampler), in trial-number order.
//  - Complete trials come first. One objective: sorted by value, best first (ties: lower number
//    first). Two objectives (pareto): by non-domination rank, the last rank that does not fit whole
//    filled greedily by hypervolume contribution (Optuna's MOTPE split, HSSP tie-break).
//  - Pruned trials fill what is left of n_below, ranked as Optuna does: the one that reached the
//    later step first, then by its value at that last step (intermediate_direction; NaN last
//    among that step); pruned trials that reported nothing come after all others.
// Throws ConfigError if a complete trial has a number of values other than directions.size().
struct TrialSplit {
  std::vector<const Trial*> below, above;
};
TrialSplit split_trials(const std::vector<Trial>& trials, const TpeOptions& options,
                        int64_t n_below);

// A mixture of products of per-parameter kernels: kernel i is the observation i (weight
// weights[i]) and the last kernel is the prior (weight prior_weight); weights are normalised.
// Values are internal values (see Distribution). Every distribution must hold more than one value.
// Exposed for tests; TpeSampler builds one for l(x) and one for g(x).
class ParzenEstimator {
 public:
  // `observations[j]` holds the observed internal values of `dists[j]`, all columns equally long;
  // `weights` one per observation (default_weights when empty).
  ParzenEstimator(std::vector<Distribution> dists,
                  const std::vector<std::vector<double>>& observations, std::vector<double> weights,
                  const TpeOptions& options);
  ~ParzenEstimator();
  ParzenEstimator(ParzenEstimator&&) noexcept;
  ParzenEstimator& operator=(ParzenEstimator&&) noexcept;

  // One draw: one value per distribution, on its grid.
  std::vector<double> sample(std::mt19937_64& rng) const;
  // Log density (continuous dimensions, per unit of the transformed axis: log-space for
  // log_float) plus log probability mass (int, stepped float, categorical) at x (one value per
  // distribution). Kernels more than e^40 below the largest term are left out of the sum.
  double log_pdf(const std::vector<double>& x) const;
  std::vector<double> log_pdf_batch(const std::vector<std::vector<double>>& xs) const;
  size_t n_kernels() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace squeeze::pipeline
