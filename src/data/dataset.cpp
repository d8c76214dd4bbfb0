// load(): reads a data source, splits it (seeded), applies limits and normalizes with statistics
// from the train split; plus Dataset helpers and BatchIterator.
#include "squeeze/data/dataset.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "squeeze/util/error.h"

namespace fs = std::filesystem;

namespace squeeze::data {
namespace {

constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";
constexpr char kDatasets[] = "fashion-mnist, mnist-idx, csv, arff, npy, hdf5, synthetic-jets";

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

// What a data source yields before splitting.
struct Source {
  at::Tensor x, y;            // x in its stored dtype; y int64
  at::Tensor test_x, test_y;  // undefined when the source has no test split of its own
  double divisor = 1.0;       // applied while converting x to float32 (255 for IDX bytes)
  std::vector<std::string> class_names;
};

// Decorrelates the seeds of the independent random streams derived from one user seed.
uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
enum Stream : uint64_t { kTestStream = 1, kValStream = 2, kTestLimitStream = 3, kAugmentStream = 4 };
uint64_t stream_seed(uint64_t seed, Stream s) { return splitmix64(seed ^ splitmix64(s)); }

// Fisher-Yates on mt19937_64, written out so the permutation for a seed does not depend on the
// standard library's or libtorch's algorithms.
std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::mt19937_64 gen(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(p[i], p[gen() % static_cast<uint64_t>(i + 1)]);
  }
  return p;
}

at::Tensor index_tensor(const std::vector<int64_t>& idx) {
  at::Tensor t = at::empty({static_cast<int64_t>(idx.size())}, at::kLong);
  std::copy(idx.begin(), idx.end(), t.data_ptr<int64_t>());
  return t;
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool is_file(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec) && !fs::is_directory(p, ec);
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// ---- IDX folders (MNIST layout) -------------------------------------------------------------

struct IdxFile {
  const char* name;  // canonical name, as in the error messages
  const char* alt;   // the spelling of some mirrors (a dot before idx)
};
constexpr IdxFile kIdxFiles[] = {
    {"train-images-idx3-ubyte", "train-images.idx3-ubyte"},
    {"train-labels-idx1-ubyte", "train-labels.idx1-ubyte"},
    {"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"},
    {"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"},
};

std::string expected_idx_files() {
  std::vector<std::string> names;
  for (const auto& f : kIdxFiles) names.push_back(std::string(f.name) + "[.gz]");
  return join(names, ", ");
}

std::string find_idx_file(const std::string& dir, const IdxFile& f) {
  for (const char* stem : {f.name, f.alt}) {
    for (const char* ext : {".gz", ""}) {
      const std::string p = (fs::path(dir) / (std::string(stem) + ext)).string();
      if (is_file(p)) return p;
    }
  }
  return "";
}

std::string dir_listing(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    names.push_back(e.path().filename().string());
  if (names.empty()) return "the directory is empty";
  std::sort(names.begin(), names.end());
  const size_t shown = std::min<size_t>(names.size(), 20);
  std::vector<std::string> head(names.begin(), names.begin() + shown);
  return "found: " + join(head, ", ") + (shown < names.size() ? ", ..." : "");
}

void check_idx_pair(const at::Tensor& images, const at::Tensor& labels, const std::string& ipath,
                    const std::string& lpath) {
  if (images.dim() != 3 && images.dim() != 4) {
    throw InputError(msg("IDX file ", ipath, ": expected images N x H x W, got ", images.dim(),
                         " dimensions ", images.sizes()));
  }
  if (labels.dim() != 1) {
    throw InputError(msg("IDX file ", lpath, ": expected N labels, got ", labels.dim(),
                         " dimensions ", labels.sizes()));
  }
  if (images.size(0) != labels.size(0)) {
    throw InputError(msg("IDX files ", ipath, " and ", lpath, " disagree: ", images.size(0),
                         " images but ", labels.size(0), " labels"));
  }
}

Source read_idx_dir(const DataOptions& o) {
  std::string dir = o.path;
  if (dir.empty()) {
    if (o.dataset != "fashion-mnist") {
      throw ConfigError(msg("data.path: dataset ", o.dataset, " needs the directory holding ",
                            expected_idx_files()));
    }
    dir = kFashionMnistDir;
  }
  if (!is_dir(dir)) {
    throw InputError(msg(is_file(dir) ? "not a data directory: " : "missing data directory ", dir,
                         ": expected a directory holding ", expected_idx_files(),
                         o.dataset == "fashion-mnist"
                             ? " (the Debian package dataset-fashion-mnist installs them in "
                               "/usr/share/datasets/fashion-mnist)"
                             : ""));
  }
  std::string paths[4];
  std::vector<std::string> missing;
  for (int i = 0; i < 4; ++i) {
    paths[i] = find_idx_file(dir, kIdxFiles[i]);
    if (paths[i].empty()) missing.push_back(std::string(kIdxFiles[i].name) + "[.gz]");
  }
  if (!missing.empty()) {
    throw InputError(missing.size() == 4
                         ? msg("data directory ", dir, " has none of the IDX files ",
                               expected_idx_files(), "; ", dir_listing(dir))
                         : msg("data directory ", dir, " has no ", join(missing, ", "),
                               " (expected ", expected_idx_files(), "); ", dir_listing(dir)));
  }
  Source s;
  s.x = read_idx(paths[0]);
  at::Tensor labels = read_idx(paths[1]);
  s.test_x = read_idx(paths[2]);
  at::Tensor test_labels = read_idx(paths[3]);
  check_idx_pair(s.x, labels, paths[0], paths[1]);
  check_idx_pair(s.test_x, test_labels, paths[2], paths[3]);
  if (s.x.dim() == 3) s.x = s.x.unsqueeze(1);
  if (s.test_x.dim() == 3) s.test_x = s.test_x.unsqueeze(1);
  if (s.x.sizes().slice(1) != s.test_x.sizes().slice(1)) {
    throw InputError(msg("IDX files ", paths[0], " and ", paths[2], " disagree on the image size: ",
                         s.x.sizes().slice(1), " vs ", s.test_x.sizes().slice(1)));
  }
  s.y = to_class_indices(labels, paths[1]);
  s.test_y = to_class_indices(test_labels, paths[3]);
  if (s.x.scalar_type() == at::kByte) s.divisor = 255.0;
  if (o.dataset == "fashion-mnist") s.class_names = fashion_mnist_classes();
  return s;
}

// ---- CSV ------------------------------------------------------------------------------------

// Maps string labels of the train and test files onto one sorted list of names.
void merge_string_labels(at::Tensor& y, std::vector<std::string>& names, at::Tensor& ty,
                         std::vector<std::string>& tnames) {
  auto as_names = [](const at::Tensor& labels, std::vector<std::string>& n) {
    // A file whose labels all parse as integers has no names; its labels are the names.
    if (!n.empty()) return;
    const int64_t k = labels.numel() ? labels.max().item<int64_t>() + 1 : 0;
    for (int64_t i = 0; i < k; ++i) n.push_back(std::to_string(i));
  };
  as_names(y, names);
  as_names(ty, tnames);
  std::set<std::string> all(names.begin(), names.end());
  all.insert(tnames.begin(), tnames.end());
  std::vector<std::string> merged(all.begin(), all.end());
  auto remap = [&](at::Tensor& labels, const std::vector<std::string>& local) {
    std::vector<int64_t> table(local.size());
    for (size_t i = 0; i < local.size(); ++i) {
      table[i] = std::lower_bound(merged.begin(), merged.end(), local[i]) - merged.begin();
    }
    labels = index_tensor(table).index_select(0, labels);
  };
  remap(y, names);
  remap(ty, tnames);
  names = merged;
}

std::string require(const std::string& value, const std::string& dataset, const char* key,
                    const char* what) {
  if (value.empty()) {
    throw ConfigError(msg("data.", key, ": dataset ", dataset, " needs ", what));
  }
  return value;
}

// CSV and ARFF tables.
Source read_csv_source(const DataOptions& o) {
  const bool arff = o.dataset == "arff";
  const std::string path = require(o.path, o.dataset, "path",
                                   arff ? "the ARFF file (path: data.arff)"
                                        : "the CSV file (path: data.csv)");
  auto read = arff ? read_arff : read_csv;
  Source s;
  read(path, o.label_column, o.feature_columns, s.x, s.y, &s.class_names);
  if (!o.test_path.empty()) {
    std::vector<std::string> tnames;
    read(o.test_path, o.label_column, o.feature_columns, s.test_x, s.test_y, &tnames);
    if (s.x.size(1) != s.test_x.size(1)) {
      throw InputError(msg(arff ? "ARFF " : "CSV ", o.test_path, " has ", s.test_x.size(1), " feature columns but ",
                           path, " has ", s.x.size(1)));
    }
    if (!s.class_names.empty() || !tnames.empty()) {
      merge_string_labels(s.y, s.class_names, s.test_y, tnames);
    }
  }
  return s;
}

// ---- NPY ------------------------------------------------------------------------------------

// Relative file names are taken relative to `path` when that is a directory.
std::string npy_path(const DataOptions& o, const std::string& file) {
  if (!o.path.empty() && fs::path(file).is_relative() && is_dir(o.path)) {
    return (fs::path(o.path) / file).string();
  }
  return file;
}

void read_npy_pair(const std::string& fpath, const std::string& lpath, at::Tensor& x,
                   at::Tensor& y) {
  x = read_npy(fpath);
  if (x.dim() < 1) {
    throw InputError(msg("NPY file ", fpath, ": features must have a sample dimension (N x ...), ",
                         "got a scalar"));
  }
  y = to_class_indices(read_npy(lpath), "NPY file " + lpath);
  if (x.size(0) != y.size(0)) {
    throw InputError(msg("NPY files disagree: ", fpath, " has ", x.size(0), " samples but ", lpath,
                         " has ", y.size(0), " labels"));
  }
}

Source read_npy_source(const DataOptions& o) {
  const std::string f = require(o.features, o.dataset, "features", "a features file (N x ...)");
  const std::string l = require(o.labels, o.dataset, "labels", "a labels file (N integers)");
  if (!o.test_path.empty()) {
    throw ConfigError(msg("data.test_path: dataset npy takes its test split from test_features ",
                          "and test_labels, got test_path ", o.test_path));
  }
  if (o.test_features.empty() != o.test_labels.empty()) {
    throw ConfigError(msg("data: test_features and test_labels go together; got only ",
                          o.test_features.empty() ? "test_labels" : "test_features"));
  }
  Source s;
  read_npy_pair(npy_path(o, f), npy_path(o, l), s.x, s.y);
  if (!o.test_features.empty()) {
    read_npy_pair(npy_path(o, o.test_features), npy_path(o, o.test_labels), s.test_x, s.test_y);
  }
  return s;
}

// ---- HDF5 -----------------------------------------------------------------------------------

Source read_hdf5_source(const DataOptions& o) {
  const std::string path = require(o.path, o.dataset, "path", "the HDF5 file (path: data.h5)");
  Source s;
  auto read = [&](const std::string& file, at::Tensor& x, at::Tensor& y) {
    if (o.feature_datasets.empty()) {
      read_hdf5(file, o.features, o.labels, x, y);
    } else {
      read_hdf5_columns(file, o.feature_datasets, o.labels, x, y);
    }
  };
  read(path, s.x, s.y);
  if (!o.test_path.empty()) read(o.test_path, s.test_x, s.test_y);
  return s;
}

// ---- splitting and normalization ------------------------------------------------------------

void check_options(const DataOptions& o) {
  static const std::set<std::string> datasets = {"fashion-mnist", "mnist-idx", "csv", "arff",
                                                 "npy",           "hdf5",      "synthetic-jets"};
  if (!datasets.count(o.dataset)) {
    throw ConfigError(msg("data.dataset: unknown data set '", o.dataset, "'; valid: ", kDatasets));
  }
  auto fraction = [](double v, const char* key) {
    if (!(v >= 0.0 && v < 1.0)) {
      throw ConfigError(msg("data.", key, ": ", v, " is out of range; valid: [0, 1)"));
    }
  };
  fraction(o.val_fraction, "split.val");
  fraction(o.test_fraction, "split.test");
  for (auto [v, key] :
       {std::pair{o.limit_train, "limit.train"}, std::pair{o.limit_val, "limit.val"},
        std::pair{o.limit_test, "limit.test"}}) {
    if (v < -1)
      throw ConfigError(msg("data.", key, ": ", v, " is invalid; valid: >= 0, or -1 for all"));
  }
  if (o.normalize != "standard" && o.normalize != "minmax" && o.normalize != "none" &&
      o.normalize != "imagenet" && o.normalize != "custom") {
    throw ConfigError(msg("data.normalize: unknown value '", o.normalize,
                          "'; valid: standard, minmax, none, imagenet, {mean: [...], std: [...]}"));
  }
  if (!o.resize.empty() &&
      (o.resize.size() != 2 || o.resize[0] < 1 || o.resize[1] < 1))
    throw ConfigError(msg("data.resize: expected [H, W], two integers >= 1, got ",
                          o.resize.size(), " values"));
  if (o.channels < 0)
    throw ConfigError(msg("data.channels: ", o.channels, " is invalid; valid: 1 or 3"));
  if (o.augment.shift < 0)
    throw ConfigError(msg("data.augment.shift: ", o.augment.shift,
                          " is invalid; valid: an integer >= 0 (pixels; 0 turns it off)"));
  if (!o.augment.empty() && (o.dataset == "csv" || o.dataset == "arff" ||
                             o.dataset == "synthetic-jets"))
    throw ConfigError(msg("data.augment: augmentation applies to images, and dataset ", o.dataset,
                          " holds tables of features; remove the augment block (image data ",
                          "sets: fashion-mnist, mnist-idx, and npy or hdf5 holding N x C x H x W "
                          "arrays)"));
  if (o.normalize == "custom") {
    if (o.mean.empty() || o.mean.size() != o.std.size())
      throw ConfigError(msg("data.normalize: mean and std need the same number of values (one ",
                            "per channel), got ", o.mean.size(), " and ", o.std.size()));
    for (double v : o.std)
      if (!(v > 0)) throw ConfigError(msg("data.normalize.std: ", v, " is invalid; valid: > 0"));
  }
}

// The transform a data block asks for, with the normalization given as statistics (standard,
// minmax) measured on the train split as the model will see it (resized, channels converted).
Transform make_transform(const DataOptions& o, const Dataset& train) {
  Transform t;
  t.resize = o.resize;
  t.channels = o.channels;
  if (o.normalize == "imagenet") {
    t.mean = kImagenetMean;
    t.std = kImagenetStd;
  } else if (o.normalize == "custom") {
    t.mean = o.mean;
    t.std = o.std;
  } else if (o.normalize != "none" && train.size() > 0) {
    // Per-channel sums over the transformed train split, a chunk at a time: the transformed
    // split may not fit in memory.
    const int64_t chunk = 512;
    at::Tensor sum, sumsq, lo, hi;
    double count = 0;
    for (int64_t start = 0; start < train.size(); start += chunk) {
      at::Tensor x = t.apply(train.x.narrow(0, start, std::min(chunk, train.size() - start)))
                         .to(at::kDouble);
      at::Tensor s1 = x.sum({0, 2, 3}), s2 = (x * x).sum({0, 2, 3});
      at::Tensor l = at::amin(x, {0, 2, 3}), h = at::amax(x, {0, 2, 3});
      sum = sum.defined() ? sum + s1 : s1;
      sumsq = sumsq.defined() ? sumsq + s2 : s2;
      lo = lo.defined() ? at::minimum(lo, l) : l;
      hi = hi.defined() ? at::maximum(hi, h) : h;
      count += static_cast<double>(x.numel() / x.size(1));
    }
    at::Tensor shift, scale;
    if (o.normalize == "standard") {
      shift = sum / count;
      scale = (sumsq / count - shift * shift).clamp_min(0).sqrt().clamp_min(1e-8);
    } else {
      shift = lo;
      scale = (hi - lo).clamp_min(1e-8);
    }
    for (int64_t c = 0; c < shift.size(0); ++c) {
      t.mean.push_back(shift[c].item<double>());
      t.std.push_back(scale[c].item<double>());
    }
  }
  return t;
}

void check_labels(const at::Tensor& y, const std::string& what) {
  if (y.numel() == 0) return;
  const int64_t lo = y.min().item<int64_t>();
  if (lo < 0) {
    const int64_t at_index = y.argmin().item<int64_t>();
    throw InputError(msg(what, ": label ", lo, " at sample ", at_index,
                         " is negative; labels must be class indices 0..K-1"));
  }
}

at::Tensor take(const at::Tensor& t, const std::vector<int64_t>& idx) {
  return t.index_select(0, index_tensor(idx));
}

// For bytes, the conversion and an in-place division take half the time of a single
// at::div(bytes, 255.0) with type promotion.
at::Tensor to_float(const at::Tensor& x, double divisor) {
  at::Tensor f = x.to(at::kFloat);
  if (divisor != 1.0) f = f.is_same(x) ? f.div(divisor) : f.div_(divisor);
  return f;
}

// Normalization statistics are per index along dimension 1 (channels of N x C x H x W images,
// features of N x F tables), reduced over every other dimension.
std::vector<int64_t> reduce_dims(int64_t rank) {
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < rank; ++d) dims.push_back(d);
  return dims;
}

// Per-feature shift and scale of N x F rows measured on `train`: mean and population standard
// deviation (standard, as scikit-learn's StandardScaler) or minimum and range (minmax). A
// constant feature gets scale 1 (as StandardScaler does), so it maps to 0 instead of dividing
// by 0.
Transform feature_scaler(const Dataset& train, const std::string& mode) {
  Transform t;
  const at::Tensor x = train.x.to(at::kDouble);
  at::Tensor shift, scale;
  if (mode == "standard") {
    shift = x.mean(0);
    scale = at::var(x, {0}, /*unbiased=*/false).sqrt_();
  } else {
    shift = at::amin(x, {0});
    scale = at::amax(x, {0}) - shift;
  }
  for (int64_t f = 0; f < x.size(1); ++f) {
    const double sc = scale[f].item<double>();
    t.mean.push_back(shift[f].item<double>());
    t.std.push_back(sc > 1e-12 ? sc : 1.0);
  }
  return t;
}

void normalize(Splits& s, const std::string& mode) {
  const at::Tensor& x = s.train.x;
  const int64_t rank = x.dim();
  const int64_t c = rank >= 2 ? x.size(1) : 1;
  std::vector<int64_t> bshape(static_cast<size_t>(rank), 1);
  if (rank >= 2) bshape[1] = c;
  const auto dims = reduce_dims(rank);
  if (mode == "standard") {
    // at::var is several times faster than at::std_mean over image batches.
    s.mean = x.mean(dims).reshape({c});
    s.std = at::var(x, dims, /*unbiased=*/false).sqrt_().clamp_min_(1e-8).reshape({c});
  } else if (mode == "minmax") {
    const at::Tensor lo = at::amin(x, dims);
    s.mean = lo.reshape({c});
    s.std = (at::amax(x, dims) - lo).clamp_min(1e-8).reshape({c});
  } else {
    s.mean = at::zeros({c}, at::kFloat);
    s.std = at::ones({c}, at::kFloat);
    return;
  }
  const at::Tensor m = s.mean.reshape(bshape), d = s.std.reshape(bshape);
  for (Dataset* part : {&s.train, &s.val, &s.test}) part->x.sub_(m).div_(d);
}

}  // namespace

at::Tensor to_class_indices(const at::Tensor& labels, const std::string& source) {
  at::Tensor t = labels;
  if (t.dim() == 2 && t.size(1) == 1) t = t.squeeze(1);
  if (t.dim() == 2) {
    if (t.size(1) == 0) throw InputError(msg(source, ": labels have shape ", t.sizes()));
    // One-hot rows or class probabilities.
    return t.to(at::kDouble).argmax(1).to(at::kLong);
  }
  if (t.dim() != 1) {
    throw InputError(msg(
        source, ": labels must be N class indices or N x K one-hot rows, got shape ", t.sizes()));
  }
  if (t.is_floating_point()) {
    const at::Tensor bad = (t != t.floor()).logical_or(t.isinf());
    if (bad.any().item<bool>()) {
      const int64_t i = bad.to(at::kByte).argmax().item<int64_t>();
      throw InputError(msg(source, ": label ", t[i].item<double>(), " at sample ", i,
                           " is not an integer class index"));
    }
  }
  t = t.to(at::kLong);
  check_labels(t, source);
  return t;
}

// A missing file is named with the key that gives it, before a reader fails on its path alone.
void check_files(const DataOptions& o) {
  auto need = [&](const char* key, const std::string& file) {
    if (!file.empty() && !fs::exists(file))
      throw InputError(msg("data.", key, ": no such file ", file));
  };
  if (o.dataset == "npy") {
    need("features", npy_path(o, o.features));
    need("labels", npy_path(o, o.labels));
    need("test_features", npy_path(o, o.test_features));
    need("test_labels", npy_path(o, o.test_labels));
  } else if (o.dataset == "csv" || o.dataset == "arff" || o.dataset == "hdf5") {
    need("path", o.path);
    need("test_path", o.test_path);
  }
}

Splits load(const DataOptions& o, uint64_t seed) {
  check_options(o);
  check_files(o);
  Source src;
  if (o.dataset == "fashion-mnist" || o.dataset == "mnist-idx") {
    src = read_idx_dir(o);
  } else if (o.dataset == "csv" || o.dataset == "arff") {
    src = read_csv_source(o);
  } else if (o.dataset == "npy") {
    src = read_npy_source(o);
  } else if (o.dataset == "hdf5") {
    src = read_hdf5_source(o);
  } else {
    Dataset d = make_synthetic_jets(o.samples, o.rare_fraction, seed, o.rare_class);
    src.x = d.x;
    src.y = d.y;
    src.class_names = jet_class_names();
  }
  const std::string where = "data set " + o.dataset + (o.path.empty() ? "" : " (" + o.path + ")");
  check_labels(src.y, where);
  const bool has_test = src.test_x.defined();
  if (has_test) {
    check_labels(src.test_y, where + ", test split");
    if (src.x.sizes().slice(1) != src.test_x.sizes().slice(1)) {
      throw InputError(msg(where, ": train samples have shape ", src.x.sizes().slice(1),
                           " but test samples have shape ", src.test_x.sizes().slice(1)));
    }
  }
  const int64_t n = src.x.size(0);
  if (n == 0) throw InputError(msg(where, ": no samples"));

  // Test first (only when the source has none), then validation from what is left.
  std::vector<int64_t> pool(static_cast<size_t>(n)), test_idx;
  std::iota(pool.begin(), pool.end(), 0);
  if (!has_test) {
    const auto perm = permutation(n, stream_seed(seed, kTestStream));
    const int64_t n_test = std::llround(o.test_fraction * static_cast<double>(n));
    test_idx.assign(perm.begin(), perm.begin() + n_test);
    pool.assign(perm.begin() + n_test, perm.end());
  }
  const int64_t n_pool = static_cast<int64_t>(pool.size());
  const auto vperm = permutation(n_pool, stream_seed(seed, kValStream));
  const int64_t n_val = std::llround(o.val_fraction * static_cast<double>(n_pool));
  std::vector<int64_t> val_idx, train_idx;
  for (int64_t i = 0; i < n_pool; ++i) (i < n_val ? val_idx : train_idx).push_back(pool[vperm[i]]);

  auto limit = [](std::vector<int64_t>& idx, int64_t l) {
    if (l >= 0 && l < static_cast<int64_t>(idx.size())) idx.resize(static_cast<size_t>(l));
  };
  limit(train_idx, o.limit_train);
  int64_t limit_val = o.limit_val;
  if (limit_val < 0 && o.limit_train >= 0 && o.val_fraction < 1.0)
    limit_val = std::llround(static_cast<double>(train_idx.size()) * o.val_fraction /
                             (1.0 - o.val_fraction));
  limit(val_idx, limit_val);
  if (train_idx.empty()) {
    throw ConfigError(msg(where, ": no training samples left from ", n, " (split.test ",
                          has_test ? 0.0 : o.test_fraction, ", split.val ", o.val_fraction,
                          ", limit.train ", o.limit_train, ")"));
  }

  Splits s;
  s.train = {to_float(take(src.x, train_idx), src.divisor), take(src.y, train_idx), nullptr};
  s.val = {to_float(take(src.x, val_idx), src.divisor), take(src.y, val_idx), nullptr};
  if (has_test) {
    const int64_t nt = src.test_x.size(0);
    if (o.limit_test >= 0 && o.limit_test < nt) {
      // A seeded random subset, kept in file order.
      auto perm = permutation(nt, stream_seed(seed, kTestLimitStream));
      perm.resize(static_cast<size_t>(o.limit_test));
      std::sort(perm.begin(), perm.end());
      s.test = {to_float(take(src.test_x, perm), src.divisor), take(src.test_y, perm), nullptr};
    } else {
      s.test = {to_float(src.test_x, src.divisor), src.test_y, nullptr};
    }
  } else {
    limit(test_idx, o.limit_test);
    s.test = {to_float(take(src.x, test_idx), src.divisor), take(src.y, test_idx), nullptr};
  }

  int64_t max_label = src.y.max().item<int64_t>();
  if (has_test && src.test_y.numel() > 0) {
    max_label = std::max(max_label, src.test_y.max().item<int64_t>());
  }
  s.num_classes = std::max<int64_t>(max_label + 1, static_cast<int64_t>(src.class_names.size()));
  s.class_names = std::move(src.class_names);
  s.sample_shape.assign(s.train.x.sizes().begin() + 1, s.train.x.sizes().end());
  // Release the unsplit data before normalizing: it saves memory, and a float32 test split is
  // the source tensor itself (to_float is a no-op then), which normalize() changes in place.
  src = Source{};

  if (o.has_transform()) {
    const std::string key = "data";
    Transform probe;
    probe.resize = o.resize;
    probe.channels = o.channels;
    // Checked on shapes before any statistics are measured.
    if (o.normalize == "imagenet" || o.normalize == "custom") {
      probe.mean = o.normalize == "imagenet" ? kImagenetMean : o.mean;
      probe.std = o.normalize == "imagenet" ? kImagenetStd : o.std;
    }
    probe.output_shape(s.sample_shape, key);
    set_transform(s, std::make_shared<const Transform>(make_transform(o, s.train)), key);
  } else if (s.sample_shape.size() == 1 && (o.normalize == "standard" || o.normalize == "minmax")) {
    // Rows of features (CSV, ARFF, HDF5, NPY tables, jets): StandardScaler-style statistics of
    // the train split, kept as a Transform so that the model carries them (graph metadata) and
    // `squeeze eval` / `squeeze infer` on raw features reproduce them.
    set_transform(s, std::make_shared<const Transform>(feature_scaler(s.train, o.normalize)),
                  "data");
  } else {
    normalize(s, o.normalize);
  }
  if (!o.augment.empty()) {
    // The padding is a zero (black) pixel as the model sees it: normalized like the rest.
    std::vector<double> fill;
    if (s.mean.defined() && s.std.defined() && s.mean.numel() == s.std.numel()) {
      const at::Tensor mean = s.mean.to(at::kDouble), std = s.std.to(at::kDouble);
      for (int64_t c = 0; c < mean.numel(); ++c)
        fill.push_back(-mean[c].item<double>() / std[c].item<double>());
    }
    s.augment = std::make_shared<const Augment>(o.augment, s.sample_shape, fill, "data.augment");
  }
  s.description =
      msg(o.dataset, ": train ", s.train.size(), ", val ", s.val.size(), ", test ", s.test.size(),
          o.augment.empty() ? "" : msg(", training batches augmented: ", o.augment.describe()));
  return s;
}

namespace {
constexpr char kClassesKey[] = "data.classes";
}  // namespace

std::map<std::string, std::string> class_names_metadata(const std::vector<std::string>& names) {
  if (names.empty()) return {};
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) text += ',';
    for (char c : names[i]) {
      if (c == ',' || c == '\\') text += '\\';
      text += c;
    }
  }
  return {{kClassesKey, text}};
}

std::vector<std::string> class_names_from_metadata(
    const std::map<std::string, std::string>& metadata) {
  auto it = metadata.find(kClassesKey);
  if (it == metadata.end()) return {};
  std::vector<std::string> names(1);
  for (size_t i = 0; i < it->second.size(); ++i) {
    const char c = it->second[i];
    if (c == '\\' && i + 1 < it->second.size()) {
      names.back() += it->second[++i];
    } else if (c == ',') {
      names.emplace_back();
    } else {
      names.back() += c;
    }
  }
  return names;
}

void map_to_model_classes(Splits& s, const std::vector<std::string>& model_classes,
                          const std::string& source) {
  if (model_classes.empty() || s.class_names.empty() || s.class_names == model_classes) return;
  std::vector<int64_t> table(s.class_names.size());
  for (size_t i = 0; i < s.class_names.size(); ++i) {
    auto it = std::find(model_classes.begin(), model_classes.end(), s.class_names[i]);
    if (it == model_classes.end())
      throw InputError(msg(source, ": class '", s.class_names[i], "' of the data is not one of ",
                           "the model's classes (", join(model_classes, ", "), ")"));
    table[i] = it - model_classes.begin();
  }
  const at::Tensor map = index_tensor(table);
  for (Dataset* part : {&s.train, &s.val, &s.test})
    if (part->y.defined() && part->y.numel() > 0) part->y = map.index_select(0, part->y);
  s.class_names = model_classes;
  s.num_classes = std::max<int64_t>(s.num_classes, static_cast<int64_t>(model_classes.size()));
}

void set_transform(Splits& s, std::shared_ptr<const Transform> t, const std::string& key) {
  s.sample_shape = t->output_shape(s.sample_shape, key);
  for (Dataset* part : {&s.train, &s.val, &s.test}) {
    // H x W samples get their channel dimension here, once.
    if (part->x.defined() && part->x.dim() == 3) part->x = part->x.unsqueeze(1);
    part->transform = t;
  }
  s.mean = at::tensor(t->mean, at::kDouble).to(at::kFloat);
  s.std = at::tensor(t->std, at::kDouble).to(at::kFloat);
  s.transform = std::move(t);
}

Dataset Dataset::subset(const at::Tensor& indices) const {
  if (!x.defined()) return *this;
  const at::Tensor idx = indices.to(at::kLong).reshape({-1});
  return Dataset{x.index_select(0, idx), y.index_select(0, idx), transform};
}

Dataset Dataset::head(int64_t n) const {
  if (n < 0 || n >= size()) return *this;
  return Dataset{x.narrow(0, 0, n), y.narrow(0, 0, n), transform};
}

at::Tensor Dataset::inputs(int64_t start, int64_t len) const {
  at::Tensor b = x.narrow(0, start, len);
  return transform ? transform->apply(b) : b;
}

BatchIterator::BatchIterator(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed,
                             std::shared_ptr<const Augment> augment)
    : data_(data), batch_size_(batch_size), shuffle_(shuffle), seed_(seed),
      augment_(std::move(augment)) {
  if (batch_size <= 0) {
    throw ConfigError(msg("data.batch_size: ", batch_size, " is invalid; valid: >= 1"));
  }
  start_epoch(0);
}

int64_t BatchIterator::num_batches() const {
  return (data_.size() + batch_size_ - 1) / batch_size_;
}

void BatchIterator::start_epoch(int64_t epoch) {
  const int64_t n = data_.size();
  order_ = shuffle_ ? index_tensor(permutation(n, seed_ + static_cast<uint64_t>(epoch)))
                    : at::arange(n, at::kLong);
  epoch_ = epoch;
  pos_ = 0;
}

bool BatchIterator::next(at::Tensor& x, at::Tensor& y) {
  const int64_t n = order_.size(0);
  if (pos_ >= n) return false;
  const int64_t len = std::min(batch_size_, n - pos_);
  const at::Tensor idx = order_.narrow(0, pos_, len);
  x = data_.x.index_select(0, idx);
  if (data_.transform) x = data_.transform->apply(x);
  if (augment_) {
    // A stream apart from the shuffling's (seed + epoch), one seed per (epoch, batch).
    const uint64_t batch = static_cast<uint64_t>(pos_ / batch_size_);
    x = augment_->apply(x, stream_seed(splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(epoch_))) ^
                                           splitmix64(batch),
                                       kAugmentStream));
  }
  y = data_.y.index_select(0, idx);
  pos_ += len;
  return true;
}

}  // namespace squeeze::data
