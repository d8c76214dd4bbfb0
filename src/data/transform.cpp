// Transform: the image transforms (resize, channels, normalization) applied per batch, and their
// form as graph metadata.
#include <ATen/ATen.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

namespace squeeze::data {

const std::vector<double> kImagenetMean = {0.485, 0.456, 0.406};
const std::vector<double> kImagenetStd = {0.229, 0.224, 0.225};

namespace {

constexpr char kResizeKey[] = "transform.resize";
constexpr char kChannelsKey[] = "transform.channels";
constexpr char kMeanKey[] = "transform.mean";
constexpr char kStdKey[] = "transform.std";

template <typename T>
std::string list_text(const std::vector<T>& v) {
  std::ostringstream s;
  s.precision(17);  // round-trips a double: eval reproduces the run's inputs exactly
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  return s.str();
}

std::vector<double> parse_numbers(const std::string& text, const std::string& source,
                                  const char* key) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      double v = std::stod(item, &used);
      if (used != item.size() || !std::isfinite(v)) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw InputError(msg(source, ": metadata ", key, " = '", text,
                           "' is not a comma-separated list of numbers"));
    }
  }
  if (out.empty()) throw InputError(msg(source, ": metadata ", key, " is empty"));
  return out;
}

}  // namespace

std::vector<int64_t> Transform::output_shape(const std::vector<int64_t>& shape,
                                             const std::string& key) const {
  if (empty()) return shape;
  if (shape.size() == 1) {
    // Tabular samples: only the per-feature normalization applies.
    if (!resize.empty() || channels != 0)
      throw ConfigError(msg(key, ": resize and channels apply to image samples (C x H x W or ",
                            "H x W); these samples are rows of ", shape[0], " features"));
    if (static_cast<int64_t>(mean.size()) != shape[0] ||
        static_cast<int64_t>(std.size()) != shape[0])
      throw ConfigError(msg(key, ".normalize: mean and std need one value per feature: the ",
                            "samples have ", shape[0], " features, got ", mean.size(),
                            " means and ", std.size(), " stds"));
    return shape;
  }
  if (shape.size() != 2 && shape.size() != 3)
    throw ConfigError(msg(key, ": resize, channels and per-channel normalize apply to image ",
                          "samples (C x H x W or H x W) and per-feature normalize to rows of ",
                          "features; these samples have shape [", list_text(shape), "]"));
  std::vector<int64_t> out = shape;
  if (out.size() == 2) out.insert(out.begin(), 1);
  const int64_t c = out[0];
  if (channels != 0 && channels != c && !(c == 1 && channels == 3) && !(c == 3 && channels == 1))
    throw ConfigError(msg(key, ".channels: ", channels, " cannot be made from ", c,
                          "-channel images; valid: ", c, ", or 3 from 1 (gray replicated), ",
                          "or 1 from 3 (luminance)"));
  if (channels != 0) out[0] = channels;
  if (!resize.empty()) {
    out[1] = resize[0];
    out[2] = resize[1];
  }
  if (!mean.empty() && (static_cast<int64_t>(mean.size()) != out[0] ||
                        static_cast<int64_t>(std.size()) != out[0]))
    throw ConfigError(msg(key, ".normalize: mean and std need one value per channel: the model ",
                          "sees ", out[0], "-channel images, got ", mean.size(), " means and ",
                          std.size(), " stds", channels == 0 && out[0] == 1 && mean.size() == 3
                                                   ? " (add channels: 3 to replicate the gray channel)"
                                                   : ""));
  return out;
}

at::Tensor Transform::apply(const at::Tensor& batch) const {
  if (empty()) return batch;
  if (batch.dim() == 2) {
    // N x F rows of features: (x - mean[f]) / std[f].
    if (!resize.empty() || channels != 0 || batch.size(1) != static_cast<int64_t>(mean.size()))
      throw InputError(msg("the input transform (", describe(), ") does not apply to rows of ",
                           batch.size(1), " features"));
    const at::Tensor m = at::tensor(mean, at::kDouble).to(at::kFloat).reshape({1, -1});
    const at::Tensor s = at::tensor(std, at::kDouble).to(at::kFloat).reshape({1, -1});
    return ((batch.to(at::kFloat) - m) / s).contiguous();
  }
  at::Tensor x = batch.dim() == 3 ? batch.unsqueeze(1) : batch;
  if (x.dim() != 4)
    throw InputError(msg("the input transform needs images N x C x H x W, got shape ", x.sizes()));
  if (!resize.empty() && (x.size(2) != resize[0] || x.size(3) != resize[1]))
    x = at::upsample_bilinear2d(x, {resize[0], resize[1]}, /*align_corners=*/false);
  const int64_t c = x.size(1);
  if (channels != 0 && channels != c) {
    if (c == 1 && channels == 3) {
      x = x.expand({x.size(0), 3, x.size(2), x.size(3)});
    } else if (c == 3 && channels == 1) {
      x = (x.select(1, 0) * 0.2989 + x.select(1, 1) * 0.587 + x.select(1, 2) * 0.114).unsqueeze(1);
    } else {
      throw InputError(msg("the input transform makes ", channels, "-channel images and cannot ",
                           "start from ", c, " channels"));
    }
  }
  if (!mean.empty()) {
    if (x.size(1) != static_cast<int64_t>(mean.size()))
      throw InputError(msg("the input transform normalizes ", mean.size(), " channels, the ",
                           "images have ", x.size(1)));
    at::Tensor m = at::tensor(mean, at::kDouble).to(at::kFloat).reshape({1, -1, 1, 1});
    at::Tensor s = at::tensor(std, at::kDouble).to(at::kFloat).reshape({1, -1, 1, 1});
    x = (x - m) / s;
  }
  return x.contiguous();
}

std::string Transform::describe() const {
  if (empty()) return "none";
  std::vector<std::string> parts;
  if (!resize.empty()) parts.push_back(msg("resize ", resize[0], "x", resize[1], " (bilinear)"));
  if (channels != 0) parts.push_back(msg("channels ", channels));
  if (!mean.empty())
    parts.push_back(msg("normalize mean [", list_text(mean), "] std [", list_text(std), "]"));
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : "") + parts[i];
  return out;
}

std::map<std::string, std::string> Transform::to_metadata() const {
  std::map<std::string, std::string> m;
  if (!resize.empty()) m[kResizeKey] = list_text(resize);
  if (channels != 0) m[kChannelsKey] = std::to_string(channels);
  if (!mean.empty()) {
    m[kMeanKey] = list_text(mean);
    m[kStdKey] = list_text(std);
  }
  return m;
}

Transform Transform::from_metadata(const std::map<std::string, std::string>& metadata,
                                   const std::string& source) {
  Transform t;
  auto get = [&](const char* key) -> const std::string* {
    auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
  };
  if (const std::string* r = get(kResizeKey)) {
    for (double v : parse_numbers(*r, source, kResizeKey)) {
      if (v < 1 || v != std::floor(v))
        throw InputError(msg(source, ": metadata ", kResizeKey, " = '", *r,
                             "' must be two positive integers"));
      t.resize.push_back(static_cast<int64_t>(v));
    }
    if (t.resize.size() != 2)
      throw InputError(msg(source, ": metadata ", kResizeKey, " = '", *r, "' must be H,W"));
  }
  if (const std::string* c = get(kChannelsKey)) {
    auto v = parse_numbers(*c, source, kChannelsKey);
    if (v.size() != 1 || v[0] < 1 || v[0] != std::floor(v[0]))
      throw InputError(msg(source, ": metadata ", kChannelsKey, " = '", *c,
                           "' must be a positive integer"));
    t.channels = static_cast<int64_t>(v[0]);
  }
  const std::string* m = get(kMeanKey);
  const std::string* s = get(kStdKey);
  if ((m == nullptr) != (s == nullptr))
    throw InputError(msg(source, ": metadata has ", m ? kMeanKey : kStdKey, " without ",
                         m ? kStdKey : kMeanKey));
  if (m) {
    t.mean = parse_numbers(*m, source, kMeanKey);
    t.std = parse_numbers(*s, source, kStdKey);
    if (t.mean.size() != t.std.size())
      throw InputError(msg(source, ": metadata ", kMeanKey, " and ", kStdKey,
                           " differ in length (", t.mean.size(), " vs ", t.std.size(), ")"));
    for (double v : t.std)
      if (!(v > 0))
        throw InputError(msg(source, ": metadata ", kStdKey, " = '", *s, "' must be > 0"));
  }
  return t;
}

}  // namespace squeeze::data
