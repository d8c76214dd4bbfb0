// Data sets as in-memory tensors: IDX (MNIST, Fashion-MNIST), CSV, NPY, HDF5 and a synthetic jet
// data set; deterministic splits, normalization, shuffled batching.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/data/augment.h"

namespace squeeze {
class Params;
}

namespace squeeze::data {

// The image transforms applied to every sample on its way into the model (training, evaluation,
// calibration, `squeeze infer`), lazily per batch so that a resized data set is never held in
// memory whole. Order: resize (bilinear, align_corners false, no antialiasing: torchvision's
// Resize on tensors with antialias=False, F.interpolate(mode="bilinear")), channel conversion
// (1 -> 3 replicates the gray channel; 3 -> 1 takes torchvision's rgb_to_grayscale luminance
// 0.2989 R + 0.587 G + 0.114 B), then (x - mean[c]) / std[c]. Stored with a model as graph
// metadata (to_metadata) so a saved model carries the input pipeline it was trained with.
struct Transform {
  std::vector<int64_t> resize;      // {H, W}; empty: the stored size
  int64_t channels = 0;             // 0: as stored
  std::vector<double> mean, std;    // one per output channel; empty: no normalization

  bool empty() const { return resize.empty() && channels == 0 && mean.empty(); }
  // The sample shape after the transform, for samples of `shape` (C x H x W; H x W is one
  // channel). Throws ConfigError naming `key` ("data") when the transform cannot apply: samples
  // that are not images, a channel conversion other than 1 -> 3, 3 -> 1 or C -> C, a mean/std
  // whose length is not the output channel count.
  std::vector<int64_t> output_shape(const std::vector<int64_t>& shape,
                                    const std::string& key = "data") const;
  // Applies the transform to a float batch N x C x H x W (or N x H x W). No-op when empty().
  at::Tensor apply(const at::Tensor& x) const;
  // "resize 64x64, channels 1->3, normalize mean [..] std [..]"; "none" when empty.
  std::string describe() const;

  // Graph metadata keys (transform.resize, transform.channels, transform.mean, transform.std);
  // a model without them has no transform (every checkpoint written before they existed).
  std::map<std::string, std::string> to_metadata() const;
  // Reads them back; throws InputError naming `source` and the key when one is malformed.
  static Transform from_metadata(const std::map<std::string, std::string>& metadata,
                                 const std::string& source);
};

// ImageNet's per-channel statistics (torchvision's), for normalize: imagenet.
extern const std::vector<double> kImagenetMean, kImagenetStd;

struct DataOptions {
  // fashion-mnist | mnist-idx | csv | arff | npy | hdf5 | synthetic-jets
  std::string dataset = "fashion-mnist";
  std::string path;                        // IDX folder; CSV or HDF5 file
  std::string features;                    // npy: features file; hdf5: dataset name
  std::vector<std::string> feature_datasets;  // hdf5: one data set per feature (instead)
  std::string labels;                      // npy: labels file;   hdf5: dataset name
  std::string label_column = "label";      // csv; arff: empty = the last attribute
  std::vector<std::string> feature_columns;  // csv; empty = all columns but the label
  std::string test_path;                   // csv/npy/hdf5: optional separate test file(s)
  std::string test_features, test_labels;  // npy test split files
  int64_t samples = 100000;                // synthetic-jets
  // synthetic-jets: the fraction of samples of class rare_class (0..4 = g q t w z); the other
  // four classes share the rest equally. 0.2: all five classes equal, as in the real data set.
  double rare_fraction = 0.2;
  int64_t rare_class = 2;                  // t
  int64_t batch_size = 128;
  double val_fraction = 0.1;               // carved from train with the seed
  double test_fraction = 0.2;              // carved first when the data set has no test split
  // -1: all. A train limit without a val limit scales the validation split with it, keeping
  // val : train at val_fraction : (1 - val_fraction).
  int64_t limit_train = -1, limit_val = -1, limit_test = -1;
  // standard | minmax | none (statistics from train) | imagenet | custom (mean, std below)
  std::string normalize = "standard";
  // Image transforms (see Transform): resize {H, W}, channels (0: as stored), and for
  // normalize: custom / imagenet the mean and std per output channel.
  std::vector<int64_t> resize;
  int64_t channels = 0;
  std::vector<double> mean, std;
  // Random shifts and flips of training batches (images only; see data/augment.h).
  AugmentOptions augment;
  // True when any image transform is asked for (resize, channels, imagenet or custom
  // normalization): the data then goes through a Transform that is stored with the model.
  bool has_transform() const {
    return !resize.empty() || channels != 0 || normalize == "imagenet" || normalize == "custom";
  }

  // Reads the `data:` block; throws ConfigError on unknown keys and bad values.
  static DataOptions from_params(Params& p);
};

struct Dataset {
  at::Tensor x;  // float32, N x stored sample shape (before `transform`)
  at::Tensor y;  // int64, N
  // Applied per batch by inputs() and BatchIterator; null: none. Shared by subsets.
  std::shared_ptr<const Transform> transform;
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
  // Model inputs for samples [start, start + len), the transform applied. Every reader that
  // feeds samples to a model goes through this (or BatchIterator), never through x directly.
  at::Tensor inputs(int64_t start, int64_t len) const;
  Dataset subset(const at::Tensor& indices) const;  // int64 indices
  Dataset head(int64_t n) const;                    // first n (all if n < 0 or n >= size)
};

struct Splits {
  Dataset train, val, test;
  std::vector<int64_t> sample_shape;  // as the model sees it (after the transform), e.g. {1, 28, 28}
  // 1 + the largest label (at least the number of class names): what a zoo model built for this
  // data needs. A given model may output more classes; the data need not hold all of them.
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // may be empty; class_names[c] names label c
  std::string description;               // "fashion-mnist (train 54000, val 6000, test 10000)"
  at::Tensor mean, std;                  // the normalization applied (per feature / channel)
  // The transform every split applies per batch (resize, channels, normalization); null when
  // the data block asks for none (the normalization is then applied to x in place).
  std::shared_ptr<const Transform> transform;
  // The augmentation of training batches (data.augment), for train::fit's BatchIterator; null
  // when the data block asks for none. Never applied to val, test or calibration samples.
  std::shared_ptr<const Augment> augment;
};

// Loads, splits (seeded), normalizes (statistics from the train split only) and applies limits;
// makes s.augment from options.augment (ConfigError naming data.augment for non-image samples).
// Throws InputError naming the file and what is wrong (missing, truncated, non-numeric cell at
// row R column C, label out of range...).
Splits load(const DataOptions& options, uint64_t seed);

// Makes every split of `s` go through `t` (its sample_shape, transform and each Dataset's
// transform), as load() does for a data block with transforms; `squeeze eval` uses it to apply
// the transform stored with a model to data loaded with normalize: none. Throws ConfigError
// when t cannot apply to the samples (Transform::output_shape).
void set_transform(Splits& s, std::shared_ptr<const Transform> t, const std::string& key = "data");

// Individual readers (used by load and by tests).
at::Tensor read_idx(const std::string& path);  // gzip or raw; uint8 -> uint8 tensor, shape from header
// CSV with a header row. Returns features (float32 N x F) and labels (int64 N). Labels may be
// integers or strings (then mapped to 0..K-1 in sorted order, names in class_names).
void read_csv(const std::string& path, const std::string& label_column,
              const std::vector<std::string>& feature_columns, at::Tensor& x, at::Tensor& y,
              std::vector<std::string>* class_names);
// ARFF (Weka's format; OpenML's download format): a header of `@relation NAME`, then one
// `@attribute NAME TYPE` per column (numeric, real, integer, or nominal {a,b,...}), then `@data`
// and one comma-separated row per sample; '%' starts a comment line. Read as read_csv reads a
// table whose header row is the attribute names; an empty label_column takes the last attribute
// (Weka's convention for the class). Sparse rows and string/date attributes are refused
// (InputError naming the file and line).
void read_arff(const std::string& path, const std::string& label_column,
               const std::vector<std::string>& feature_columns, at::Tensor& x, at::Tensor& y,
               std::vector<std::string>* class_names);
at::Tensor read_npy(const std::string& path);              // float32/float64/int64/int32/uint8/bool
void write_npy(const std::string& path, const at::Tensor& t);  // atomic; float32/float64/int64
// HDF5 file with a features data set (any rank; float, double or integer; returned as float32
// N x ...) and a labels data set (N integer labels, or N x K one-hot / probabilities -> argmax;
// returned as int64 N). Data set names may be paths ("group/x"). Throws InputError for a missing
// file or data set (listing the data sets present), UnsupportedError if built without HDF5.
void read_hdf5(const std::string& path, const std::string& features, const std::string& labels,
               at::Tensor& x, at::Tensor& y);
// The same with one data set per feature (each N or N x 1 values, names may be paths), stacked
// as the columns of x (N x F) in the order given: the layout of files that store each jet
// feature under its own name.
void read_hdf5_columns(const std::string& path, const std::vector<std::string>& features,
                       const std::string& labels, at::Tensor& x, at::Tensor& y);
// Class indices (int64 N) from a label array: N integers (or integral floats) as they are, N x 1
// squeezed, N x K (K > 1) one-hot or probabilities -> argmax over K. `source` names the file for
// errors; throws InputError for other shapes, non-integral or negative labels.
at::Tensor to_class_indices(const at::Tensor& labels, const std::string& source);
// A synthetic stand-in for the hls4ml jet data set (OpenML 42468): the 16 features of
// jet_feature_names(), classes jet_class_names() (g q t w z = labels 0..4), a groomed-mass peak
// per heavy class, W and Z nearly degenerate; a float jet_tagger reaches about 0.75 accuracy.
// `rare_class` gets round(rare_fraction * samples) samples, the others share the rest equally.
// Deterministic for a seed on every platform. Throws ConfigError for samples < 1, rare_fraction
// outside [0, 1) or rare_class outside 0..4.
Dataset make_synthetic_jets(int64_t samples, double rare_fraction, uint64_t seed,
                            int64_t rare_class = 2);
// j_zlogz, j_c1_b0_mmdt, ..., j_mass_mmdt, j_multiplicity: the columns of OpenML 42468 in order.
const std::vector<std::string>& jet_feature_names();
// g, q, t, w, z.
const std::vector<std::string>& jet_class_names();

// Class names as graph metadata ("data.classes", the names in label order), so that a model
// carries the meaning of its outputs; class_names_from_metadata reads them back (empty when
// absent). Names are joined with ',' (',' and '\' inside a name escaped with '\').
std::map<std::string, std::string> class_names_metadata(const std::vector<std::string>& names);
std::vector<std::string> class_names_from_metadata(
    const std::map<std::string, std::string>& metadata);
// Renumbers the labels of every split of `s` from its class names to `model_classes` (a model's
// names, in its output order) and sets s.class_names to them: data whose file holds only some
// classes, or names them in another order, is evaluated against the right outputs. Throws
// InputError naming `source` and the class when a data class is not one of the model's. No-op
// when either list is empty.
void map_to_model_classes(Splits& s, const std::vector<std::string>& model_classes,
                          const std::string& source);

// Iterates shuffled (or ordered) batches over a data set. The permutation for epoch e is
// seeded with seed + e, so runs are reproducible. With an `augment`, every batch (after the
// transform) is augmented with a seed derived from seed, the epoch and the batch's index, so the
// same seed gives the same augmented batches, whatever ran before in the process.
class BatchIterator {
 public:
  BatchIterator(const Dataset& data, int64_t batch_size, bool shuffle, uint64_t seed,
                std::shared_ptr<const Augment> augment = nullptr);
  int64_t num_batches() const;
  void start_epoch(int64_t epoch);
  bool next(at::Tensor& x, at::Tensor& y);  // false at the end of the epoch

 private:
  const Dataset& data_;
  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  std::shared_ptr<const Augment> augment_;
  at::Tensor order_;
  int64_t epoch_ = 0;
  int64_t pos_ = 0;
};

}  // namespace squeeze::data
