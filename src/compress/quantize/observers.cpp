#include "squeeze/compress/quantize/observers.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "squeeze/ir/quant_math.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::quant {

const std::vector<std::string>& Observer::kinds() {
  static const std::vector<std::string> k = {"minmax", "moving_average", "percentile", "mse", "entropy"};
  return k;
}

Observer::Observer(std::string kind, double percentile, double momentum)
    : kind_(std::move(kind)), percentile_(percentile), momentum_(momentum) {
  if (std::find(kinds().begin(), kinds().end(), kind_) == kinds().end())
    throw ConfigError(msg("observer: '", kind_, "' is not valid (valid: ", join(kinds(), ", "), ")"));
  if (!(percentile_ > 50.0 && percentile_ <= 100.0))
    throw ConfigError(msg("percentile: ", percentile_, " is out of range (expected (50, 100])"));
}

void Observer::observe(const at::Tensor& x_in) {
  at::Tensor x = x_in.detach().to(at::kFloat).reshape(-1);
  if (x.numel() == 0) return;
  double lo = x.min().item<double>(), hi = x.max().item<double>();
  if (batches_ == 0) {
    min_ = avg_min_ = lo;
    max_ = avg_max_ = hi;
  } else {
    min_ = std::min(min_, lo);
    max_ = std::max(max_, hi);
    avg_min_ += momentum_ * (lo - avg_min_);
    avg_max_ += momentum_ * (hi - avg_max_);
  }
  ++batches_;
  if (kind_ == "percentile" || kind_ == "mse" || kind_ == "entropy") {
    // An even stride keeps the sample deterministic; later batches stop adding once full.
    int64_t budget = kMaxSamples - num_samples_;
    if (budget <= 0) return;
    int64_t per_batch = std::max<int64_t>(kMaxSamples / 16, 1);
    int64_t take = std::min({budget, per_batch, x.numel()});
    int64_t stride = std::max<int64_t>(x.numel() / take, 1);
    at::Tensor s = x.slice(0, 0, take * stride, stride).clone();
    num_samples_ += s.numel();
    samples_.push_back(s);
  }
}

namespace {

double mse_of(const at::Tensor& v, ir::QuantSpec spec, double lo, double hi) {
  choose_qparams(spec, lo, hi);
  at::Tensor d = fake_quantize(v, spec) - v;
  return (d * d).mean().item<double>();
}

// KL-divergence calibration on a histogram of |x| (TensorRT, "8-bit inference with TensorRT").
double entropy_threshold(const at::Tensor& v, int levels) {
  const int64_t kBins = 2048;
  at::Tensor a = v.abs();
  double amax = a.max().item<double>();
  if (!(amax > 0.0)) return 0.0;
  at::Tensor hist_t = at::histc(a, kBins, 0.0, amax).to(at::kDouble).contiguous();
  const double* hist = hist_t.data_ptr<double>();
  int64_t nq = std::max<int64_t>(levels, 2);
  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best_i = kBins;
  std::vector<double> p, q;
  for (int64_t i = nq; i <= kBins; ++i) {
    p.assign(hist, hist + i);
    double outliers = 0.0;
    for (int64_t j = i; j < kBins; ++j) outliers += hist[j];
    p[i - 1] += outliers;
    // Merge the first i bins into nq levels, then expand back over the non-empty bins.
    q.assign(i, 0.0);
    double step = double(i) / double(nq);
    for (int64_t k = 0; k < nq; ++k) {
      int64_t b0 = static_cast<int64_t>(std::floor(k * step)), b1 = static_cast<int64_t>(std::floor((k + 1) * step));
      if (k == nq - 1) b1 = i;
      double sum = 0.0;
      int64_t nonzero = 0;
      for (int64_t j = b0; j < b1; ++j) {
        sum += hist[j];
        nonzero += hist[j] > 0;
      }
      for (int64_t j = b0; j < b1; ++j) q[j] = (hist[j] > 0 && nonzero) ? sum / double(nonzero) : 0.0;
    }
    double ps = 0.0, qs = 0.0;
    for (int64_t j = 0; j < i; ++j) {
      ps += p[j];
      qs += q[j];
    }
    if (ps <= 0.0 || qs <= 0.0) continue;
    double kl = 0.0;
    for (int64_t j = 0; j < i; ++j) {
      if (p[j] <= 0.0) continue;
      double pj = p[j] / ps, qj = q[j] / qs;
      kl += qj > 0.0 ? pj * std::log(pj / qj) : pj * 20.0;  // empty quantized bin: large penalty
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return (double(best_i) + 0.5) * amax / double(kBins);
}

}  // namespace

std::pair<double, double> Observer::range(const ir::QuantSpec& spec) const {
  if (batches_ == 0) return {0.0, 0.0};
  double lo = min_, hi = max_;
  if (kind_ == "moving_average") {
    lo = avg_min_;
    hi = avg_max_;
  } else if (!samples_.empty() && kind_ != "minmax") {
    at::Tensor v = at::cat(samples_);
    if (kind_ == "percentile") {
      at::Tensor sorted = std::get<0>(v.sort());
      int64_t n = sorted.numel();
      auto at_q = [&](double q) {
        int64_t i = std::clamp<int64_t>(static_cast<int64_t>(std::llround(q * double(n - 1))), 0, n - 1);
        return sorted[i].item<double>();
      };
      lo = at_q(1.0 - percentile_ / 100.0);
      hi = at_q(percentile_ / 100.0);
    } else if (kind_ == "mse") {
      double best = std::numeric_limits<double>::infinity();
      double best_lo = lo, best_hi = hi;
      for (int k = 20; k <= 100; k += 2) {
        double f = k / 100.0;
        double e = mse_of(v, spec, f * min_, f * max_);
        if (e < best) {
          best = e;
          best_lo = f * min_;
          best_hi = f * max_;
        }
      }
      lo = best_lo;
      hi = best_hi;
    } else if (kind_ == "entropy") {
      QRange r = qrange(spec);
      bool nonneg = min_ >= 0.0;
      int levels = static_cast<int>(nonneg ? (r.qmax - r.qmin + 1) : (r.qmax - r.qmin + 1) / 2);
      double t = entropy_threshold(v, levels);
      lo = nonneg ? 0.0 : std::max(min_, -t);
      hi = std::min(max_, t);
    }
  }
  return {std::min(lo, 0.0), std::max(hi, 0.0)};
}

}  // namespace squeeze::quant
