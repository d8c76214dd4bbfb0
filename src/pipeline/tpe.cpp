#include "squeeze/pipeline/tpe.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "squeeze/util/error.h"

namespace squeeze::pipeline {
namespace {

using Kind = Distribution::Kind;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = 1e-12;  // Optuna's EPS: the smallest sigma without the magic clip
constexpr double kLogSqrt2Pi = 0.91893853320467274178;  // log(sqrt(2 pi))
constexpr double kPi = 3.14159265358979323846;
// Relative slack when counting grid points, so (high - low) / step = 2.9999999999 still gives 4.
constexpr double kGridSlack = 1e-9;
// Most grid points a stepped float may have: beyond this (high - low) / step loses the precision
// to tell neighbouring points apart.
constexpr double kMaxGridPoints = 1e12;
// Rejection sampling of a truncated Gaussian accepts with probability >= 0.34 here (the interval
// contains the mean and is at least one sigma wide); this bound only guards against a bug.
constexpr int kMaxRejections = 10000;

// ---- random numbers (portable: only the raw mt19937_64 output is used) ----

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

uint64_t trial_seed(uint64_t seed, int64_t number) {
  return splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(number));
}

// Per-parameter stream: a parameter's draws do not depend on which other parameters exist.
std::mt19937_64 param_rng(uint64_t seed, int64_t number, const std::string& name) {
  return std::mt19937_64(splitmix64(trial_seed(seed, number) ^ fnv1a(name)));
}

// Uniform on [0, 1) with 53 random bits.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Standard normal by Box-Muller (one of the pair is dropped: simplicity over speed).
double standard_normal(std::mt19937_64& rng) {
  const double u1 = 1.0 - uniform01(rng);  // (0, 1]: log stays finite
  const double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

size_t uniform_index(std::mt19937_64& rng, size_t n) {
  return std::min(static_cast<size_t>(uniform01(rng) * static_cast<double>(n)), n - 1);
}

// ---- domains ----

bool is_stepped(const Distribution& d) {
  return d.kind == Kind::kInt || (d.kind == Kind::kFloat && d.step > 0);
}
double grid_step(const Distribution& d) {
  if (d.kind == Kind::kInt) return d.step > 0 ? d.step : 1.0;
  return d.kind == Kind::kFloat ? d.step : 0.0;
}
// Number of grid points low, low + step, ... <= high (stepped domains).
int64_t grid_points(const Distribution& d) {
  const double s = grid_step(d);
  return static_cast<int64_t>(std::floor((d.high - d.low) / s * (1 + kGridSlack) + kGridSlack)) + 1;
}
double grid_value(const Distribution& d, int64_t k) {
  return std::min(d.low + static_cast<double>(k) * grid_step(d), d.high);
}
// The largest grid point: the effective upper bound (Optuna adjusts `high` the same way).
double grid_high(const Distribution& d) { return grid_value(d, grid_points(d) - 1); }

bool is_single(const Distribution& d) {
  if (d.kind == Kind::kCategorical) return d.choices.size() == 1;
  if (is_stepped(d)) return grid_points(d) == 1;
  return d.low == d.high;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kLogFloat:
      return "log_float";
    case Kind::kCategorical:
      return "categorical";
  }
  return "?";
}

double random_value(const Distribution& d, std::mt19937_64& rng) {
  if (d.kind == Kind::kCategorical)
    return static_cast<double>(uniform_index(rng, d.choices.size()));
  if (is_stepped(d)) {
    return grid_value(d, static_cast<int64_t>(uniform_index(rng, grid_points(d))));
  }
  const double u = uniform01(rng);
  if (d.kind == Kind::kLogFloat) {
    const double lo = std::log(d.low), hi = std::log(d.high);
    return std::clamp(std::exp(lo + u * (hi - lo)), d.low, d.high);
  }
  return std::clamp(d.low + u * (d.high - d.low), d.low, d.high);
}

// ---- Gaussian masses (after Optuna's _truncnorm.py, itself after SciPy) ----

double ndtr(double a) { return 0.5 * std::erfc(-a / std::sqrt(2.0)); }

double log_ndtr(double a) {
  if (a > 6) return -ndtr(-a);  // log(1 - p) ~ -p
  if (a > -20) return std::log(ndtr(a));
  // Asymptotic series of the left tail, where erfc underflows.
  const double log_lhs = -0.5 * a * a - std::log(-a) - kLogSqrt2Pi;
  double last_total = 0, rhs = 1, numerator = 1, denom_factor = 1, sign = 1;
  const double denom_cons = 1 / (a * a);
  for (int i = 1; std::fabs(last_total - rhs) > std::numeric_limits<double>::epsilon() && i < 100;
       ++i) {
    last_total = rhs;
    sign = -sign;
    denom_factor *= denom_cons;
    numerator *= 2 * i - 1;
    rhs += sign * numerator * denom_factor;
  }
  return log_lhs + std::log(rhs);
}

// log(exp(lp) - exp(lq)) for lp >= lq.
double log_diff(double lp, double lq) {
  if (lp == -kInf) return -kInf;
  return lp + std::log1p(-std::exp(lq - lp));
}

// log of the standard normal mass on [a, b]; each tail is computed on its accurate (left) side.
// Down to z = -kDirectTail the left-tail masses are normal doubles accurate to a few ulps, so
// their difference is taken directly (one log instead of Optuna's two logs, an exp and a log1p;
// cells are at least 1/(number of grid points) sigma wide, so the cancellation stays small);
// further out only logs keep the mass from underflowing.
double log_gauss_mass(double a, double b) {
  constexpr double kDirectTail = 30;
  if (!(a < b)) return -kInf;
  if (b <= 0) {
    return a > -kDirectTail ? std::log(ndtr(b) - ndtr(a)) : log_diff(log_ndtr(b), log_ndtr(a));
  }
  if (a > 0) {
    return b < kDirectTail ? std::log(ndtr(-a) - ndtr(-b)) : log_diff(log_ndtr(-a), log_ndtr(-b));
  }
  // Past 9 sigma on both sides the missing mass (< 3e-19) is below double precision of log 1.
  if (a < -9 && b > 9) return 0.0;
  return std::log1p(-ndtr(a) - ndtr(-b));
}

bool finite_values(const Trial& t) {
  return std::none_of(t.values.begin(), t.values.end(), [](double v) { return std::isnan(v); });
}

// ---- the multi-objective split: non-domination ranks, greedy hypervolume tie-break ----

// `loss` is to be minimised in every column.
bool dominates(const std::vector<double>& a, const std::vector<double>& b) {
  bool strictly = false;
  for (size_t j = 0; j < a.size(); ++j) {
    if (a[j] > b[j]) return false;
    if (a[j] < b[j]) strictly = true;
  }
  return strictly;
}

std::vector<int> nondomination_ranks(const std::vector<std::vector<double>>& loss) {
  const size_t n = loss.size();
  std::vector<int> rank(n, -1);
  size_t assigned = 0;
  for (int r = 0; assigned < n; ++r) {
    std::vector<size_t> front;
    for (size_t i = 0; i < n; ++i) {
      if (rank[i] != -1) continue;
      bool dominated = false;
      for (size_t j = 0; j < n && !dominated; ++j) {
        dominated = rank[j] == -1 && dominates(loss[j], loss[i]);
      }
      if (!dominated) front.push_back(i);
    }
    for (size_t i : front) rank[i] = r;
    assigned += front.size();
  }
  return rank;
}

// Optuna's greedy hypervolume subset selection for two objectives (_solve_hssp_2d): picks `k` of
// the mutually non-dominated `points` (positions into `ids`), returning the chosen ids.
std::vector<size_t> hssp_2d(const std::vector<std::vector<double>>& points,
                            const std::vector<size_t>& ids, size_t k) {
  if (k >= ids.size()) return ids;
  // Unique points in lexicographic order; duplicates only fill up if uniques run out.
  std::vector<size_t> order(points.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return points[a] < points[b]; });
  std::vector<size_t> unique, duplicate;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i > 0 && points[order[i]] == points[order[i - 1]]) {
      duplicate.push_back(order[i]);
    } else {
      unique.push_back(order[i]);
    }
  }
  if (unique.size() <= k) {
    std::sort(duplicate.begin(), duplicate.end());
    std::vector<size_t> out;
    for (size_t i : unique) out.push_back(ids[i]);
    for (size_t i = 0; out.size() < k; ++i) out.push_back(ids[duplicate[i]]);
    return out;
  }
  double ref[2];
  for (int j = 0; j < 2; ++j) {
    double worst = -kInf;
    for (const auto& p : points) worst = std::max(worst, p[j]);
    ref[j] = std::max(1.1 * worst, 0.9 * worst);
    if (ref[j] == 0) ref[j] = kEps;
  }
  std::vector<size_t> out;
  if (!std::isfinite(ref[0]) || !std::isfinite(ref[1])) {
    std::sort(unique.begin(), unique.end());
    for (size_t i = 0; i < k; ++i) out.push_back(ids[unique[i]]);
    return out;
  }
  // Along the unique, lexsorted front x rises and y falls. Each point's exclusive contribution is
  // the rectangle from it to diag; choosing point m caps x of the points before it and y of the
  // points after it.
  std::vector<size_t> rest = unique;
  std::vector<std::array<double, 2>> diag(rest.size(), {ref[0], ref[1]});
  for (size_t it = 0; it < k; ++it) {
    size_t m = 0;
    double best = -kInf;
    for (size_t i = 0; i < rest.size(); ++i) {
      const double c = (diag[i][0] - points[rest[i]][0]) * (diag[i][1] - points[rest[i]][1]);
      if (c > best) best = c, m = i;
    }
    const std::vector<double> chosen = points[rest[m]];
    out.push_back(ids[rest[m]]);
    rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(m));
    diag.erase(diag.begin() + static_cast<std::ptrdiff_t>(m));
    for (size_t i = 0; i < m; ++i) diag[i][0] = std::min(diag[i][0], chosen[0]);
    for (size_t i = m; i < rest.size(); ++i) diag[i][1] = std::min(diag[i][1], chosen[1]);
  }
  return out;
}

// Indices (into `trials`) of the n_below best complete trials, with two objectives.
std::vector<size_t> below_multi_objective(const std::vector<const Trial*>& trials,
                                          const std::vector<Direction>& directions,
                                          size_t n_below) {
  std::vector<std::vector<double>> loss;
  for (const Trial* t : trials) {
    std::vector<double> l(directions.size());
    for (size_t j = 0; j < directions.size(); ++j) {
      l[j] = directions[j] == Direction::kMaximize ? -t->values[j] : t->values[j];
    }
    loss.push_back(std::move(l));
  }
  const std::vector<int> rank = nondomination_ranks(loss);
  std::vector<size_t> below;
  for (int r = 0; below.size() < n_below; ++r) {
    std::vector<size_t> front;
    for (size_t i = 0; i < rank.size(); ++i) {
      if (rank[i] == r) front.push_back(i);
    }
    if (below.size() + front.size() <= n_below) {
      below.insert(below.end(), front.begin(), front.end());
      continue;
    }
    std::vector<std::vector<double>> pts;
    for (size_t i : front) pts.push_back(loss[i]);
    for (size_t i : hssp_2d(pts, front, n_below - below.size())) below.push_back(i);
  }
  return below;
}

// Optuna's _get_pruned_trial_score: smaller is better.
std::pair<double, double> pruned_score(const Trial& t, Direction d) {
  if (t.intermediate.empty()) return {1.0, 0.0};
  const auto& [step, value] = *t.intermediate.rbegin();
  if (std::isnan(value)) return {-static_cast<double>(step), kInf};
  return {-static_cast<double>(step), d == Direction::kMaximize ? -value : value};
}

std::vector<const Trial*> usable_trials(const std::vector<Trial>& trials, const TpeOptions& o) {
  std::vector<const Trial*> out;
  for (const Trial& t : trials) {
    if (t.state == TrialState::kComplete) {
      if (t.values.size() != o.directions.size()) {
        throw ConfigError(msg("trial ", t.number, " is complete with ", t.values.size(),
                              " objective value(s), but the study has ", o.directions.size(),
                              " direction(s); a study keeps one objective for all its trials"));
      }
      if (finite_values(t)) out.push_back(&t);
    } else if (t.state == TrialState::kPruned) {
      out.push_back(&t);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Trial* a, const Trial* b) { return a->number < b->number; });
  return out;
}

}  // namespace

// ---- public helpers ----

std::mt19937_64 trial_rng(uint64_t seed, int64_t trial_number) {
  return std::mt19937_64(trial_seed(seed, trial_number));
}

int64_t default_gamma(int64_t n) { return std::min<int64_t>(default_gamma_multiobjective(n), 25); }

int64_t default_gamma_multiobjective(int64_t n) {
  return n <= 0 ? 0 : (n + 9) / 10;  // ceil(0.1 n) without floating-point rounding
}

std::vector<double> default_weights(int64_t n) {
  if (n <= 0) return {};
  if (n < 25) return std::vector<double>(static_cast<size_t>(n), 1.0);
  // numpy.linspace(1/n, 1, num=n-25) followed by 25 ones.
  const int64_t ramp = n - 25;
  std::vector<double> w(static_cast<size_t>(n), 1.0);
  const double start = 1.0 / static_cast<double>(n);
  if (ramp == 1) w[0] = start;
  if (ramp > 1) {
    // As numpy computes it: start + i * step, the last point set to the end exactly.
    const double step = (1.0 - start) / static_cast<double>(ramp - 1);
    for (int64_t i = 0; i + 1 < ramp; ++i) w[static_cast<size_t>(i)] = start + i * step;
  }
  return w;
}

void validate(const std::string& name, const Distribution& d) {
  const std::string where = msg("search space parameter '", name, "' (", kind_name(d.kind), ")");
  if (d.kind == Kind::kCategorical) {
    if (d.choices.empty()) {
      throw ConfigError(msg(where, " has no choices; give a non-empty list of choices"));
    }
    return;
  }
  if (!std::isfinite(d.low) || !std::isfinite(d.high) || !std::isfinite(d.step)) {
    throw ConfigError(msg(where, ": low, high and step must be finite numbers, got low ", d.low,
                          ", high ", d.high, ", step ", d.step));
  }
  if (d.low > d.high) {
    throw ConfigError(msg(where, ": low ", d.low, " > high ", d.high,
                          "; low must be less than or equal to high"));
  }
  switch (d.kind) {
    case Kind::kInt:
      if (d.low != std::floor(d.low) || d.high != std::floor(d.high)) {
        throw ConfigError(
            msg(where, ": bounds must be integers, got low ", d.low, ", high ", d.high));
      }
      if (d.step != 0 && (d.step < 1 || d.step != std::floor(d.step))) {
        throw ConfigError(msg(where, ": step must be an integer >= 1, got ", d.step));
      }
      break;
    case Kind::kFloat:
      if (d.step < 0) {
        throw ConfigError(
            msg(where, ": step must be > 0 for a grid or 0 for a continuous range, got ", d.step));
      }
      break;
    case Kind::kLogFloat:
      if (d.low <= 0) {
        throw ConfigError(msg(where, ": low must be > 0 on a log scale, got ", d.low));
      }
      if (d.step != 0) {
        throw ConfigError(msg(where, ": a log scale takes no step, got ", d.step,
                              "; use float with a step, or log_float without one"));
      }
      break;
    case Kind::kCategorical:
      break;
  }
  // With low <= high the grid always holds low; what can still go wrong is a step so small for
  // the range that the grid points cannot be counted (or told apart) in doubles.
  if (d.kind == Kind::kFloat && d.step > 0 && (d.high - d.low) / d.step > kMaxGridPoints) {
    throw ConfigError(msg(where, ": step ", d.step, " makes more than ", kMaxGridPoints,
                          " grid points in [", d.low, ", ", d.high,
                          "]; use a larger step, or step 0 for a continuous range"));
  }
}

void validate(const SearchSpace& space) {
  if (space.empty()) throw ConfigError("the search space is empty; declare at least one parameter");
  for (const auto& [name, d] : space) validate(name, d);
}

// ---- RandomSampler ----

std::map<std::string, double> RandomSampler::propose(const SearchSpace& space,
                                                     const std::vector<Trial>&,
                                                     int64_t trial_number) const {
  validate(space);
  std::map<std::string, double> out;
  for (const auto& [name, d] : space) {
    std::mt19937_64 rng = param_rng(seed_, trial_number, name);
    out[name] = random_value(d, rng);
  }
  return out;
}

// ---- the below / above split ----

namespace {

TrialSplit split_usable(const std::vector<const Trial*>& used, const TpeOptions& o,
                        int64_t n_below_total) {
  std::vector<const Trial*> complete, pruned;
  for (const Trial* t : used) (t->state == TrialState::kComplete ? complete : pruned).push_back(t);
  size_t n_below = static_cast<size_t>(std::max<int64_t>(n_below_total, 0));

  TrialSplit out;
  const size_t n_complete_below = std::min(n_below, complete.size());
  std::vector<bool> is_below(complete.size(), false);
  if (o.directions.size() == 1) {
    // Stable on number order: equal values rank the older trial first, as Optuna's sorted() does.
    const double sign = o.directions[0] == Direction::kMaximize ? -1.0 : 1.0;
    std::vector<size_t> order(complete.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return sign * complete[a]->values[0] < sign * complete[b]->values[0];
    });
    for (size_t i = 0; i < n_complete_below; ++i) is_below[order[i]] = true;
  } else if (n_complete_below > 0) {
    for (size_t i : below_multi_objective(complete, o.directions, n_complete_below)) {
      is_below[i] = true;
    }
  }
  for (size_t i = 0; i < complete.size(); ++i) {
    (is_below[i] ? out.below : out.above).push_back(complete[i]);
  }

  // Pruned trials only fill the places the complete trials leave.
  const Direction d = o.intermediate_direction.value_or(o.directions[0]);
  std::vector<size_t> order(pruned.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return pruned_score(*pruned[a], d) < pruned_score(*pruned[b], d);
  });
  const size_t n_pruned_below = std::min(n_below - n_complete_below, pruned.size());
  for (size_t i = 0; i < order.size(); ++i) {
    (i < n_pruned_below ? out.below : out.above).push_back(pruned[order[i]]);
  }

  const auto by_number = [](const Trial* a, const Trial* b) { return a->number < b->number; };
  std::stable_sort(out.below.begin(), out.below.end(), by_number);
  std::stable_sort(out.above.begin(), out.above.end(), by_number);
  return out;
}

}  // namespace

TrialSplit split_trials(const std::vector<Trial>& trials, const TpeOptions& options,
                        int64_t n_below) {
  options.check();
  return split_usable(usable_trials(trials, options), options, n_below);
}

// ---- ParzenEstimator ----

namespace {

// One parameter's kernels. Numeric axes live in the transformed space (log for log_float);
// stepped axes are widened by step / 2 so that every grid point owns one cell of the mass.
struct Axis {
  bool categorical = false, log = false;
  double step = 0;                    // 0: continuous
  double low = 0, high = 0;           // the domain in internal values (high on the grid)
  double t_low = 0, t_high = 0;       // transformed, widened bounds
  std::vector<double> mu, inv_sigma;  // per kernel, transformed space
  std::vector<double> log_norm;       // per kernel: log of the Gaussian mass on [t_low, t_high]
  std::vector<double> log_scale;      // per kernel: log(sqrt(2 pi) sigma) + log_norm
  std::vector<uint32_t> group;        // stepped: kernels with equal (mu, sigma) share a group
  size_t n_groups = 0;
  // Categorical: kernel k puts p_hit on choice chosen[k] and p_miss on each other choice; the
  // prior kernel (chosen = -1) is uniform. These are the rows of Optuna's weight matrix.
  size_t n_choices = 0;
  std::vector<int64_t> chosen;
  double p_hit = 0, p_miss = 0, log_hit = 0, log_miss = 0, log_uniform = 0;

  double transform(double x) const { return log ? std::log(x) : x; }

  // What log_pdf needs of one value, computed once for all kernels.
  struct Point {
    double y = 0;           // transformed value (continuous), choice index (categorical)
    double lo = 0, hi = 0;  // transformed cell bounds (stepped)
    double log_width = 0;   // log(hi - lo)
    bool outside = false;
  };
  Point prepare(double x) const {
    Point p;
    if (categorical) {
      p.y = static_cast<double>(std::llround(x));
      p.outside = !(p.y >= 0 && p.y < static_cast<double>(n_choices));
    } else if (step > 0) {
      p.lo = transform(x - step / 2), p.hi = transform(x + step / 2);
      p.log_width = std::log(p.hi - p.lo);
    } else {
      p.y = transform(x);
      p.outside = p.y < t_low || p.y > t_high;
    }
    return p;
  }

  size_t n_kernels() const { return categorical ? chosen.size() : mu.size(); }

  // Adds every kernel's log density / mass at p to terms[k]. On stepped axes it adds a bound
  // instead (also to bound[k]): a cell's mass is at most its width times the Gaussian density at
  // its point nearest the mean, a few flops against erfc and logs for the exact mass. Axis by axis
  // over contiguous arrays, so the compiler vectorises the common loops.
  void add_terms(const Point& p, double* terms, double* bound) const {
    const size_t n = n_kernels();
    if (p.outside) {
      std::fill(terms, terms + n, -kInf);
    } else if (categorical) {
      const auto c = static_cast<int64_t>(p.y);
      for (size_t k = 0; k < n; ++k) {
        terms[k] += chosen[k] < 0 ? log_uniform : (chosen[k] == c ? log_hit : log_miss);
      }
    } else if (step > 0) {
      for (size_t k = 0; k < n; ++k) {
        const double z =
            std::clamp(0.0, (p.lo - mu[k]) * inv_sigma[k], (p.hi - mu[k]) * inv_sigma[k]);
        const double b = p.log_width - 0.5 * z * z - log_scale[k];
        terms[k] += b;
        bound[k] += b;
      }
    } else {
      for (size_t k = 0; k < n; ++k) {
        const double z = (p.y - mu[k]) * inv_sigma[k];
        terms[k] -= 0.5 * z * z + log_scale[k];
      }
    }
  }

  // The exact log mass of kernel k's cell at p (stepped axes). Kernels with equal (mu, sigma),
  // common on a grid, share one entry of `cache` (NaN: not computed yet), as Optuna shares them.
  double stepped_log_mass(size_t k, const Point& p, double* cache) const {
    double& v = cache[group[k]];
    if (std::isnan(v)) {
      v = log_gauss_mass((p.lo - mu[k]) * inv_sigma[k], (p.hi - mu[k]) * inv_sigma[k]) -
          log_norm[k];
    }
    return v;
  }

  double sample(size_t k, std::mt19937_64& rng) const {
    if (categorical) {
      const double u = uniform01(rng);
      double cum = 0;
      for (size_t c = 0; c + 1 < n_choices; ++c) {
        cum += chosen[k] < 0 ? 1.0 / static_cast<double>(n_choices)
                             : (static_cast<int64_t>(c) == chosen[k] ? p_hit : p_miss);
        if (u < cum) return static_cast<double>(c);
      }
      return static_cast<double>(n_choices - 1);
    }
    double y = mu[k];
    for (int i = 0; i < kMaxRejections; ++i) {
      const double c = mu[k] + standard_normal(rng) / inv_sigma[k];
      if (c >= t_low && c <= t_high) {
        y = c;
        break;
      }
    }
    double x = log ? std::exp(y) : y;
    if (step > 0) x = low + std::round((x - low) / step) * step;
    return std::clamp(x, low, high);
  }
};

// Optuna's _calculate_categorical_distributions: every kernel row starts at prior_weight /
// n_kernels per choice, an observation's row gets +1 on its choice, rows are normalised.
Axis categorical_axis(const Distribution& d, const std::vector<double>& obs, const TpeOptions& o) {
  Axis a;
  a.categorical = true;
  a.n_choices = d.choices.size();
  const double n_choices = static_cast<double>(a.n_choices);
  const double base = o.prior_weight / static_cast<double>(obs.size() + 1);
  const double row_sum = base * n_choices + 1;
  a.p_hit = (base + 1) / row_sum;
  a.p_miss = base / row_sum;
  a.log_hit = std::log(a.p_hit);
  a.log_miss = std::log(a.p_miss);
  a.log_uniform = -std::log(n_choices);
  for (double x : obs) a.chosen.push_back(std::llround(x));
  a.chosen.push_back(-1);
  return a;
}

// Optuna's _calculate_numerical_distributions: a kernel's sigma is the larger distance to its
// neighbours (the bounds count as neighbours only with consider_endpoints), clipped to
// [range / min(100, n + 2), range] by the magic clip; the prior kernel sits at the centre with
// sigma = range.
Axis numeric_axis(const Distribution& d, const std::vector<double>& obs, const TpeOptions& o) {
  Axis a;
  a.log = d.kind == Kind::kLogFloat;
  a.step = is_stepped(d) ? grid_step(d) : 0.0;
  a.low = d.low;
  a.high = a.step > 0 ? grid_high(d) : d.high;
  a.t_low = a.transform(a.low - a.step / 2);
  a.t_high = a.transform(a.high + a.step / 2);
  const size_t n = obs.size();
  for (double x : obs) a.mu.push_back(a.transform(x));
  std::vector<double> sigma(n, 0.0);
  if (n > 0) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t i, size_t j) { return a.mu[i] < a.mu[j]; });
    std::vector<double> ext(n + 2);
    ext[0] = a.t_low;
    ext[n + 1] = a.t_high;
    for (size_t i = 0; i < n; ++i) ext[i + 1] = a.mu[order[i]];
    std::vector<double> sorted_sigma(n);
    for (size_t i = 0; i < n; ++i) {
      sorted_sigma[i] = std::max(ext[i + 1] - ext[i], ext[i + 2] - ext[i + 1]);
    }
    if (!o.consider_endpoints && n >= 2) {
      sorted_sigma[0] = ext[2] - ext[1];
      sorted_sigma[n - 1] = ext[n] - ext[n - 1];
    }
    const double range = a.t_high - a.t_low;
    const double min_sigma =
        o.consider_magic_clip ? range / std::min(100.0, static_cast<double>(n + 2)) : kEps;
    for (size_t i = 0; i < n; ++i) sigma[order[i]] = std::clamp(sorted_sigma[i], min_sigma, range);
  }
  a.mu.push_back(0.5 * (a.t_low + a.t_high));
  sigma.push_back(a.t_high - a.t_low);
  for (size_t k = 0; k <= n; ++k) {
    a.inv_sigma.push_back(1.0 / sigma[k]);
    a.log_norm.push_back(
        log_gauss_mass((a.t_low - a.mu[k]) / sigma[k], (a.t_high - a.mu[k]) / sigma[k]));
    a.log_scale.push_back(kLogSqrt2Pi + std::log(sigma[k]) + a.log_norm[k]);
  }
  if (a.step > 0) {
    std::map<std::pair<double, double>, uint32_t> groups;
    for (size_t k = 0; k <= n; ++k) {
      a.group.push_back(
          groups.emplace(std::make_pair(a.mu[k], sigma[k]), static_cast<uint32_t>(groups.size()))
              .first->second);
    }
    a.n_groups = groups.size();
  }
  return a;
}

}  // namespace

struct ParzenEstimator::Impl {
  std::vector<Axis> axes;
  std::vector<double> weight, log_weight;  // per kernel, normalised; the prior is last
};

ParzenEstimator::ParzenEstimator(std::vector<Distribution> dists,
                                 const std::vector<std::vector<double>>& observations,
                                 std::vector<double> weights, const TpeOptions& options)
    : impl_(std::make_unique<Impl>()) {
  SQZ_ASSERT(observations.size() == dists.size(), "one column of observations per distribution");
  const size_t n = dists.empty() ? 0 : observations[0].size();
  if (weights.empty()) weights = default_weights(static_cast<int64_t>(n));
  SQZ_ASSERT(weights.size() == n, "one weight per observation");
  // Optuna: without observations the prior alone has weight 1, whatever prior_weight is.
  weights.push_back(n == 0 ? 1.0 : options.prior_weight);
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  const double log_total = std::log(total);
  for (double w : weights) {
    impl_->weight.push_back(w / total);
    impl_->log_weight.push_back(w == 1.0 ? -log_total : std::log(w) - log_total);
  }
  for (size_t j = 0; j < dists.size(); ++j) {
    SQZ_ASSERT(!is_single(dists[j]), "a one-value domain needs no estimator");
    SQZ_ASSERT(observations[j].size() == n, "as many observations of every distribution");
    impl_->axes.push_back(dists[j].kind == Kind::kCategorical
                              ? categorical_axis(dists[j], observations[j], options)
                              : numeric_axis(dists[j], observations[j], options));
  }
}

ParzenEstimator::~ParzenEstimator() = default;
ParzenEstimator::ParzenEstimator(ParzenEstimator&&) noexcept = default;
ParzenEstimator& ParzenEstimator::operator=(ParzenEstimator&&) noexcept = default;

size_t ParzenEstimator::n_kernels() const { return impl_->weight.size(); }

std::vector<double> ParzenEstimator::sample(std::mt19937_64& rng) const {
  const double u = uniform01(rng);
  size_t k = 0;
  for (double cum = impl_->weight[0]; k + 1 < impl_->weight.size() && u >= cum;) {
    cum += impl_->weight[++k];
  }
  std::vector<double> x;
  for (const Axis& a : impl_->axes) x.push_back(a.sample(k, rng));
  return x;
}

std::vector<double> ParzenEstimator::log_pdf_batch(
    const std::vector<std::vector<double>>& xs) const {
  // Kernels further than kNegligible below the largest term change the sum by less than
  // n_kernels * exp(-kNegligible), far below double precision. So every term is first bounded
  // cheaply (add_terms), the largest computed exactly, and then only the terms whose bound comes
  // within kNegligible of the largest exact one; only those are exponentiated.
  constexpr double kNegligible = 40;
  const auto& axes = impl_->axes;
  const size_t n = impl_->weight.size();
  std::vector<size_t> stepped;
  std::vector<std::vector<double>> cache(axes.size());
  for (size_t j = 0; j < axes.size(); ++j) {
    if (!axes[j].categorical && axes[j].step > 0) stepped.push_back(j);
  }
  std::vector<Axis::Point> points(axes.size());
  std::vector<double> terms(n), bound(n);
  std::vector<double> out;
  for (const auto& x : xs) {
    SQZ_ASSERT(x.size() == axes.size(), "one value per distribution");
    terms = impl_->log_weight;
    std::fill(bound.begin(), bound.end(), 0.0);
    for (size_t j = 0; j < x.size(); ++j) {
      points[j] = axes[j].prepare(x[j]);
      axes[j].add_terms(points[j], terms.data(), bound.data());
    }
    size_t top = 0;
    for (size_t k = 1; k < n; ++k) {
      if (terms[k] > terms[top]) top = k;
    }
    double max_term = terms[top];
    if (!stepped.empty() && max_term > -kInf) {
      for (size_t j : stepped) cache[j].assign(axes[j].n_groups, std::nan(""));
      const auto exact = [&](size_t k) {
        double s = terms[k] - bound[k];
        for (size_t j : stepped) s += axes[j].stepped_log_mass(k, points[j], cache[j].data());
        return s;
      };
      max_term = terms[top] = exact(top);
      for (size_t k = 0; k < n; ++k) {
        if (k == top) continue;
        terms[k] = terms[k] < max_term - kNegligible ? -kInf : exact(k);
        max_term = std::max(max_term, terms[k]);
      }
    }
    if (max_term == -kInf) {
      out.push_back(-kInf);
      continue;
    }
    double sum = 0;
    for (double t : terms) {
      if (t >= max_term - kNegligible) sum += std::exp(t - max_term);
    }
    out.push_back(max_term + std::log(sum));
  }
  return out;
}

double ParzenEstimator::log_pdf(const std::vector<double>& x) const {
  return log_pdf_batch({x})[0];
}

// ---- TpeSampler ----

void TpeOptions::check() const {
  if (directions.empty() || directions.size() > 2) {
    throw ConfigError(msg("TPE: directions has ", directions.size(),
                          " entries; give 1 (one objective) or 2 (pareto)"));
  }
  if (n_startup_trials < 0) {
    throw ConfigError(msg("TPE: n_startup_trials must be >= 0, got ", n_startup_trials));
  }
  if (n_ei_candidates < 1) {
    throw ConfigError(msg("TPE: n_ei_candidates must be >= 1, got ", n_ei_candidates));
  }
  if (!(prior_weight > 0) || !std::isfinite(prior_weight)) {
    throw ConfigError(msg("TPE: prior_weight must be a finite number > 0, got ", prior_weight));
  }
}

TpeSampler::TpeSampler(TpeOptions options) : options_(std::move(options)) { options_.check(); }

namespace {

// Draws n_ei_candidates from l and keeps the first that maximises log l - log g. Candidates on a
// grid repeat often and score the same, so each distinct one is scored once.
std::vector<double> best_candidate(const ParzenEstimator& below, const ParzenEstimator& above,
                                   int64_t n_candidates, std::mt19937_64& rng) {
  std::vector<std::vector<double>> xs;
  for (int64_t i = 0; i < n_candidates; ++i) {
    std::vector<double> x = below.sample(rng);
    if (std::find(xs.begin(), xs.end(), x) == xs.end()) xs.push_back(std::move(x));
  }
  const std::vector<double> l = below.log_pdf_batch(xs), g = above.log_pdf_batch(xs);
  size_t best = 0;
  for (size_t i = 1; i < xs.size(); ++i) {
    if (l[i] - g[i] > l[best] - g[best]) best = i;
  }
  return xs[best];
}

// Columns of internal values of `names` (one per name) over the trials that hold all of them
// inside their domains (a resumed study may have changed the space).
std::vector<std::vector<double>> observations(const std::vector<const Trial*>& trials,
                                              const SearchSpace& space,
                                              const std::vector<std::string>& names) {
  std::vector<std::vector<double>> columns(names.size());
  std::vector<const Distribution*> dists;
  for (const auto& name : names) dists.push_back(&space.at(name));
  std::vector<double> row(names.size());
  for (const Trial* t : trials) {
    size_t j = 0;
    for (; j < names.size(); ++j) {
      const auto it = t->params.find(names[j]);
      if (it == t->params.end() || !dists[j]->contains(it->second)) break;
      row[j] = it->second;
    }
    if (j < names.size()) continue;
    for (j = 0; j < names.size(); ++j) columns[j].push_back(row[j]);
  }
  return columns;
}

}  // namespace

std::map<std::string, double> TpeSampler::propose(const SearchSpace& space,
                                                  const std::vector<Trial>& trials,
                                                  int64_t trial_number) const {
  validate(space);
  const TpeOptions& o = options_;
  const std::vector<const Trial*> used = usable_trials(trials, o);
  if (static_cast<int64_t>(used.size()) < o.n_startup_trials) {
    return RandomSampler(o.seed).propose(space, trials, trial_number);
  }
  const bool multi_objective = o.directions.size() > 1;
  const auto n = static_cast<int64_t>(used.size());
  const TrialSplit split =
      split_usable(used, o, multi_objective ? default_gamma_multiobjective(n) : default_gamma(n));

  std::map<std::string, double> out;
  std::vector<std::string> names;
  for (const auto& [name, d] : space) {
    if (is_single(d)) {
      out[name] = d.kind == Kind::kCategorical ? 0.0 : d.low;
    } else {
      names.push_back(name);
    }
  }
  // MOTPE weighs the "below" group uniformly (Optuna's _build_parzen_estimator).
  const auto below_weights = [&](size_t count) {
    return multi_objective ? std::vector<double>(count, 1.0) : std::vector<double>{};
  };
  const auto propose_group = [&](const std::vector<std::string>& group, std::mt19937_64& rng) {
    std::vector<Distribution> dists;
    for (const auto& name : group) dists.push_back(space.at(name));
    const auto below_obs = observations(split.below, space, group);
    const ParzenEstimator below(dists, below_obs, below_weights(below_obs[0].size()), o);
    const ParzenEstimator above(dists, observations(split.above, space, group), {}, o);
    const std::vector<double> x = best_candidate(below, above, o.n_ei_candidates, rng);
    for (size_t j = 0; j < group.size(); ++j) out[group[j]] = x[j];
  };
  if (names.empty()) return out;
  if (o.multivariate) {
    std::mt19937_64 rng = trial_rng(o.seed, trial_number);
    propose_group(names, rng);
  } else {
    for (const auto& name : names) {
      std::mt19937_64 rng = param_rng(o.seed, trial_number, name);
      propose_group({name}, rng);
    }
  }
  return out;
}

}  // namespace squeeze::pipeline
