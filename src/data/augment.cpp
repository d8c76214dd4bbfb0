// Random translation and horizontal flips of image training batches, drawn per sample from a
// std::mt19937_64 seeded per batch, so that a batch's augmentation is reproducible and does not
// depend on libtorch's generator or on what ran before it.
#include "squeeze/data/augment.h"

#include <ATen/ATen.h>

#include <random>

#include "squeeze/util/error.h"

namespace squeeze::data {

std::string AugmentOptions::describe() const {
  if (empty()) return "none";
  std::string out;
  if (shift > 0) out = msg("shift ", shift, " px");
  if (hflip) out += std::string(out.empty() ? "" : ", ") + "horizontal flip";
  return out;
}

Augment::Augment(const AugmentOptions& options, const std::vector<int64_t>& sample_shape,
                 std::vector<double> fill, const std::string& key)
    : options_(options), fill_(std::move(fill)) {
  if (options.shift < 0)
    throw ConfigError(msg(key, ".shift: ", options.shift,
                          " is invalid; valid: an integer >= 0 (pixels; 0 turns it off)"));
  if (sample_shape.size() != 3)
  {
    std::string shape;
    for (size_t i = 0; i < sample_shape.size(); ++i) shape += msg(i ? ", " : "", sample_shape[i]);
    throw ConfigError(msg(key, ": augmentation applies to images (C x H x W samples), but this ",
                          "data's samples have shape [", shape,
                          "]; remove the augment block for tables of features"));
  }
  const int64_t h = sample_shape[1], w = sample_shape[2];
  if (options.shift >= h || options.shift >= w)
    throw ConfigError(msg(key, ".shift: ", options.shift, " pixels is not smaller than the ",
                          h, " x ", w, " images; valid: 0 to ", std::min(h, w) - 1));
  const size_t c = static_cast<size_t>(sample_shape[0]);
  if (fill_.size() == 1 && c > 1) fill_.assign(c, fill_[0]);
  if (fill_.empty()) fill_.assign(c, 0.0);
  SQZ_ASSERT(fill_.size() == c);
}

at::Tensor Augment::apply(const at::Tensor& x, uint64_t seed) const {
  if (options_.empty() || x.size(0) == 0) return x;
  SQZ_ASSERT(x.dim() == 4);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t s = options_.shift;
  at::Tensor padded = x;
  if (s > 0) {
    padded = at::empty({n, c, h + 2 * s, w + 2 * s}, x.options());
    for (int64_t ch = 0; ch < c; ++ch) padded.select(1, ch).fill_(fill_[static_cast<size_t>(ch)]);
    padded.narrow(2, s, h).narrow(3, s, w).copy_(x);
  }
  at::Tensor out = at::empty_like(x);
  std::mt19937_64 gen(seed);
  const uint64_t span = static_cast<uint64_t>(2 * s + 1);
  for (int64_t i = 0; i < n; ++i) {
    // Drawn in a fixed order (row offset, column offset, flip) whatever is enabled.
    const int64_t dy = static_cast<int64_t>(gen() % span);
    const int64_t dx = static_cast<int64_t>(gen() % span);
    const bool coin = (gen() & 1ULL) != 0;
    const bool flip = options_.hflip && coin;
    at::Tensor crop = s > 0 ? padded[i].narrow(1, dy, h).narrow(2, dx, w) : x[i];
    if (flip) crop = crop.flip({2});
    out[i].copy_(crop);
  }
  return out;
}

}  // namespace squeeze::data
