// Data augmentation for image training batches: random translation (zero padding, then a random
// crop back to the original size) and random horizontal flips, drawn per sample from a seed.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace squeeze::data {

// The `data: {augment: {...}}` block. Applies to training batches only (BatchIterator with an
// Augment, as train::fit makes it); evaluation, calibration, `squeeze eval` and `infer` never
// see it. A teacher being distilled from sees the same augmented batch as its student.
struct AugmentOptions {
  // Random translation of up to `shift` pixels along each of H and W (each offset uniform in
  // [-shift, shift]); the uncovered border is what a zero (black) pixel becomes after the
  // normalization: torchvision's RandomCrop(size, padding=shift) before Normalize. 0: off.
  int64_t shift = 0;
  bool hflip = false;  // mirror left-right with probability 1/2 (RandomHorizontalFlip)

  bool empty() const { return shift == 0 && !hflip; }
  // "shift 2 px, horizontal flip"; "none" when empty.
  std::string describe() const;
};

// AugmentOptions made applicable to one data set's model inputs (C x H x W after the transform).
class Augment {
 public:
  // `fill`: one value per channel for the padding (the normalized value of a zero pixel).
  // Throws ConfigError naming `key` ("data.augment") when the samples are not C x H x W images
  // (tables of features), when shift is negative, or when shift is not smaller than H and W.
  Augment(const AugmentOptions& options, const std::vector<int64_t>& sample_shape,
          std::vector<double> fill, const std::string& key = "data.augment");

  // The augmented copy of a batch N x C x H x W. The draws depend only on `seed` (and N), never
  // on libtorch's global generator: the same seed gives the same batch.
  at::Tensor apply(const at::Tensor& x, uint64_t seed) const;
  const AugmentOptions& options() const { return options_; }

 private:
  AugmentOptions options_;
  std::vector<double> fill_;
};

}  // namespace squeeze::data
