// A synthetic stand-in for the hls4ml jet-tagging data set (OpenML 42468, hls4ml_lhc_jets_hlf):
// the same 16 high-level features under the same names, the same five classes g, q, t, w, z
// (labels 0..4 in that sorted order), and about the same difficulty: a float 16-64-32-32-5 MLP
// reaches about 0.75 test accuracy (hls4ml's reference on the real data: 0.764), with the real
// task's confusions (gluon/quark, W/Z, top jets groomed down to their W).
//
// Generative model. All randomness comes from one std::mt19937_64 seeded with `seed`, turned into
// uniforms, normals and Gamma(2) variates by hand (not std:: distributions, whose algorithms
// differ between standard libraries), so a seed gives the same data on every platform.
//
//   Class counts are exact: the rare class gets round(rare_fraction * N) samples, the other four
//   share the rest equally (the first (N - n_rare) mod 4 of them in label order get one extra).
//   rare_fraction 0.2 makes all five classes equal. The sample order is then shuffled.
//
//   Per jet (N_k: an independent standard normal, U: uniform in (0, 1)):
//     groomed mass m (GeV), from the class's mass model:
//       g, q   continuum 8 + theta Gamma(2, 1), theta 22 (g) or 16 (q): a falling QCD spectrum
//       t      N(173, 16^2); with probability 0.2 the groomer keeps only the W subjet:
//              N(80, 11^2) and two prongs; with probability 0.07 it loses both: continuum
//       w, z   N(80.4, 8.5^2) and N(91.2, 9.5^2): nearly degenerate; with probability 0.08
//              the groomer loses a prong: continuum (theta 16), one prong
//     prongs p: 1 (g, q), 2 (w, z), 3 (t), changed by the grooming accidents above
//     radiation width w = w_c exp(0.25 N_1), w_c = 1.0 g, 0.7 q, 1.1 t, 0.8 w, 0.82 z (colour
//       charge: gluon jets are wider than quark jets)
//     multiplicity n = max(2, round(n_c (0.75 + 0.25 exp(0.25 N_1)) exp(0.22 N_2))),
//       n_c = 52 g, 36 q, 66 t, 45 w, 47 z (wider jets have more constituents)
//   and the features, each a function of these latents times its own log-normal noise
//   (e(s) = exp(s N_k), a fresh N_k each time), so they are correlated as the real ones are:
//     j_zlogz          -(0.9 ln n + 0.2 w) + 0.25 N
//     j_c1_b0_mmdt     (0.18 + 0.12 w) e(0.15)
//     j_c1_b1_mmdt     (0.6 m/1000 + 0.03 w) e(0.2)
//     j_c1_b2_mmdt     (0.9 (m/1000)^2 + 0.002 w) e(0.25)
//     j_c2_b1_mmdt     j_d2_b1 j_c1_b1 e(0.15)          (C2 = D2 e2, as the definitions relate)
//     j_c2_b2_mmdt     j_d2_b2 j_c1_b2 e(0.15)
//     j_d2_b1_mmdt     d e(0.3), d = 2.4 (1 prong), 1.15 (2), 2.0 (3), times 1.15 for gluons
//     j_d2_b2_mmdt     0.8 j_d2_b1^1.2 e(0.2)
//     j_d2_a1_b1_mmdt  0.9 d e(0.3)
//     j_d2_a1_b2_mmdt  j_d2_a1_b1^1.1 e(0.2)
//     j_m2_b1_mmdt     0.6 j_n2_b1 sqrt(j_c1_b1) e(0.3)
//     j_m2_b2_mmdt     0.5 j_n2_b2 sqrt(j_c1_b2) e(0.3)
//     j_n2_b1_mmdt     v e(0.25), v = 0.36 (1 prong), 0.2 (2), 0.3 (3)
//     j_n2_b2_mmdt     1.1 j_n2_b1 e(0.15)
//     j_mass_mmdt      max(m, 1) e(0.03)                 (3% mass resolution)
//     j_multiplicity   n
//   Measured (squeeze, seed 0, 100000 samples balanced, jet_tagger 16-64-32-32-5, Adam, a few
//   epochs): see README.md "Jet data"; the same model in PyTorch on the same generator reaches
//   0.749.
#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

namespace squeeze::data {
namespace {

constexpr int kFeatures = 16;
constexpr int kClasses = 5;
constexpr double kTwoPi = 6.283185307179586;
enum JetClass { kG = 0, kQ = 1, kT = 2, kW = 3, kZ = 4 };

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  // Uniform in (0, 1): 53 random bits, never exactly 0 so log() below is safe.
  double uniform() { return ((gen_() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double t = kTwoPi * uniform();
    spare_ = r * std::sin(t);
    have_spare_ = true;
    return r * std::cos(t);
  }
  // Gamma(2, 1): the sum of two unit exponentials.
  double gamma2() { return -std::log(uniform()) - std::log(uniform()); }
  // exp(s N): multiplicative noise of log-width s.
  double lognormal(double s) { return std::exp(s * normal()); }
  uint64_t below(uint64_t n) { return gen_() % n; }  // bias < n / 2^64: negligible here

 private:
  std::mt19937_64 gen_;
  double spare_ = 0.0;
  bool have_spare_ = false;
};

struct ClassModel {
  double continuum_theta;  // GeV; the mass continuum when the jet has no (or lost its) peak
  double peak, width;      // GeV; peak 0: no resonance (g, q)
  double width_base;       // radiation width w_c
  double multiplicity;     // n_c
  int prongs;
};

constexpr ClassModel kModels[kClasses] = {
    {22.0, 0.0, 0.0, 1.0, 52.0, 1},    // g
    {16.0, 0.0, 0.0, 0.7, 36.0, 1},    // q
    {16.0, 173.0, 16.0, 1.1, 66.0, 3}, // t
    {16.0, 80.4, 8.5, 0.8, 45.0, 2},   // w
    {16.0, 91.2, 9.5, 0.82, 47.0, 2},  // z
};

// One jet of class c, its features in the order of jet_feature_names().
void make_jet(int c, Rng& rng, float* out) {
  const ClassModel& cm = kModels[c];
  const double u = rng.uniform();
  const double continuum = 8.0 + cm.continuum_theta * rng.gamma2();
  double m = continuum;
  int prongs = 1;
  if (cm.peak > 0) {
    m = cm.peak + cm.width * rng.normal();
    prongs = cm.prongs;
    if (c == kT && u < 0.2) {  // only the W subjet survives grooming
      m = 80.0 + 11.0 * rng.normal();
      prongs = 2;
    } else if ((c == kT && u > 0.93) || ((c == kW || c == kZ) && u < 0.08)) {
      m = continuum;
      prongs = 1;
    }
  }
  m = std::max(m, 1.0);
  const double r = std::exp(0.25 * rng.normal());
  const double w = cm.width_base * r;
  const double n = std::max(
      2.0, std::round(cm.multiplicity * (0.75 + 0.25 * r) * rng.lognormal(0.22)));
  const double um = m / 1000.0;
  const double zlogz = -(0.9 * std::log(n) + 0.2 * w) + 0.25 * rng.normal();
  const double c1b0 = (0.18 + 0.12 * w) * rng.lognormal(0.15);
  const double c1b1 = (0.6 * um + 0.03 * w) * rng.lognormal(0.2);
  const double c1b2 = (0.9 * um * um + 0.002 * w) * rng.lognormal(0.25);
  const double d2base = (prongs == 1 ? 2.4 : prongs == 2 ? 1.15 : 2.0) * (c == kG ? 1.15 : 1.0);
  const double d2b1 = d2base * rng.lognormal(0.3);
  const double d2b2 = 0.8 * std::pow(d2b1, 1.2) * rng.lognormal(0.2);
  const double d2a1b1 = 0.9 * d2base * rng.lognormal(0.3);
  const double d2a1b2 = std::pow(d2a1b1, 1.1) * rng.lognormal(0.2);
  const double c2b1 = d2b1 * c1b1 * rng.lognormal(0.15);
  const double c2b2 = d2b2 * c1b2 * rng.lognormal(0.15);
  const double n2b1 = (prongs == 1 ? 0.36 : prongs == 2 ? 0.2 : 0.3) * rng.lognormal(0.25);
  const double n2b2 = 1.1 * n2b1 * rng.lognormal(0.15);
  const double m2b1 = 0.6 * n2b1 * std::sqrt(c1b1) * rng.lognormal(0.3);
  const double m2b2 = 0.5 * n2b2 * std::sqrt(c1b2) * rng.lognormal(0.3);
  const double mass = m * rng.lognormal(0.03);
  const double f[kFeatures] = {zlogz, c1b0,   c1b1,   c1b2,   c2b1, c2b2, d2b1, d2b2,
                               d2a1b1, d2a1b2, m2b1, m2b2, n2b1, n2b2, mass, n};
  for (int i = 0; i < kFeatures; ++i) out[i] = static_cast<float>(f[i]);
}

}  // namespace

const std::vector<std::string>& jet_feature_names() {
  static const std::vector<std::string> names = {
      "j_zlogz",         "j_c1_b0_mmdt",    "j_c1_b1_mmdt", "j_c1_b2_mmdt",
      "j_c2_b1_mmdt",    "j_c2_b2_mmdt",    "j_d2_b1_mmdt", "j_d2_b2_mmdt",
      "j_d2_a1_b1_mmdt", "j_d2_a1_b2_mmdt", "j_m2_b1_mmdt", "j_m2_b2_mmdt",
      "j_n2_b1_mmdt",    "j_n2_b2_mmdt",    "j_mass_mmdt",  "j_multiplicity"};
  return names;
}

const std::vector<std::string>& jet_class_names() {
  static const std::vector<std::string> names = {"g", "q", "t", "w", "z"};
  return names;
}

Dataset make_synthetic_jets(int64_t samples, double rare_fraction, uint64_t seed,
                            int64_t rare_class) {
  if (samples <= 0) {
    throw ConfigError(msg("synthetic-jets: samples must be positive, got ", samples));
  }
  if (!(rare_fraction >= 0.0 && rare_fraction < 1.0)) {
    throw ConfigError(msg("synthetic-jets: rare_fraction must be in [0, 1), got ", rare_fraction));
  }
  if (rare_class < 0 || rare_class >= kClasses) {
    throw ConfigError(msg("synthetic-jets: rare_class must be a class index 0..4 (g q t w z), got ",
                          rare_class));
  }
  Rng rng(seed);

  std::vector<int64_t> labels(static_cast<size_t>(samples));
  const int64_t n_rare = std::llround(rare_fraction * static_cast<double>(samples));
  const int64_t n_common = samples - n_rare;
  int64_t pos = 0;
  int k = 0;  // index among the common classes
  for (int c = 0; c < kClasses; ++c) {
    if (c == rare_class) {
      for (int64_t i = 0; i < n_rare; ++i) labels[pos++] = c;
      continue;
    }
    const int64_t n = n_common / 4 + (k < n_common % 4 ? 1 : 0);
    for (int64_t i = 0; i < n; ++i) labels[pos++] = c;
    ++k;
  }
  for (int64_t i = samples - 1; i > 0; --i) {
    std::swap(labels[i], labels[rng.below(static_cast<uint64_t>(i) + 1)]);
  }

  at::Tensor x = at::empty({samples, kFeatures}, at::kFloat);
  float* out = x.data_ptr<float>();
  for (int64_t s = 0; s < samples; ++s) make_jet(static_cast<int>(labels[s]), rng, out + s * kFeatures);
  at::Tensor y = at::empty({samples}, at::kLong);
  std::memcpy(y.data_ptr<int64_t>(), labels.data(), labels.size() * sizeof(int64_t));
  return Dataset{x, y, nullptr};
}

}  // namespace squeeze::data
