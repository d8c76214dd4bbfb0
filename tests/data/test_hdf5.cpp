// HDF5 reader and the hdf5 data source. The files are written here with the HDF5 C++ API, so
// these tests need SQUEEZE_HAVE_HDF5 (and the HDF5 include path and libraries) for the test
// target as well as for the library.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "testing/asserts.h"
#include "squeeze/util/error.h"

#ifdef SQUEEZE_HAVE_HDF5
#include <H5Cpp.h>
#endif

namespace fs = std::filesystem;
using namespace squeeze;
using namespace squeeze::data;

#ifdef SQUEEZE_HAVE_HDF5

namespace {

using squeeze::testing::TempDir;

template <typename T>
void write_dataset(H5::H5File& f, const std::string& name, const at::Tensor& t,
                   const H5::PredType& type) {
  std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DataSet ds = f.createDataSet(name, type, space);
  const at::Tensor c = t.contiguous();
  ds.write(c.data_ptr<T>(), type);
}

// 12 jets x 3 x 2 features (double), integer labels 0..2 and the same labels one-hot (float).
void write_jets(const std::string& path) {
  H5::H5File f(path, H5F_ACC_TRUNC);
  f.createGroup("jets");
  const at::Tensor x = at::arange(72, at::kDouble).reshape({12, 3, 2});
  const at::Tensor y = at::arange(12, at::kLong).remainder(3);
  write_dataset<double>(f, "jets/x", x, H5::PredType::NATIVE_DOUBLE);
  write_dataset<int64_t>(f, "labels", y, H5::PredType::NATIVE_INT64);
  write_dataset<float>(f, "onehot", at::eye(3, at::kFloat).index_select(0, y),
                       H5::PredType::NATIVE_FLOAT);
  write_dataset<int32_t>(f, "ints", at::arange(24, at::kInt).reshape({12, 2}),
                         H5::PredType::NATIVE_INT32);
}

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

}  // namespace

TEST(DataHdf5, RoundTripWithIntegerAndOneHotLabels) {
  TempDir dir;
  const std::string p = dir.file("jets.h5");
  write_jets(p);
  const at::Tensor expected_y = at::arange(12, at::kLong).remainder(3);
  for (const char* labels : {"labels", "onehot", "/onehot"}) {
    at::Tensor x, y;
    read_hdf5(p, "jets/x", labels, x, y);
    EXPECT_EQ(x.scalar_type(), at::kFloat) << labels;
    EXPECT_TRUE(x.equal(at::arange(72, at::kFloat).reshape({12, 3, 2}))) << labels;
    EXPECT_EQ(y.scalar_type(), at::kLong) << labels;
    EXPECT_TRUE(y.equal(expected_y)) << labels;
  }
  at::Tensor x, y;
  read_hdf5(p, "ints", "labels", x, y);  // integer features become float32
  EXPECT_EQ(x.scalar_type(), at::kFloat);
  EXPECT_EQ(x[11][1].item<float>(), 23.f);
}

TEST(DataHdf5, MissingDataSetListsWhatIsThere) {
  TempDir dir;
  const std::string p = dir.file("jets.h5");
  write_jets(p);
  at::Tensor x, y;
  const std::string e = error_of([&] { read_hdf5(p, "jetFeatures", "labels", x, y); });
  EXPECT_NE(e.find(p), std::string::npos) << e;
  EXPECT_NE(e.find("no data set 'jetFeatures'"), std::string::npos) << e;
  EXPECT_NE(e.find("jets/x (12 x 3 x 2)"), std::string::npos) << e;
  EXPECT_NE(e.find("onehot (12 x 3)"), std::string::npos) << e;

  const std::string e2 = error_of([&] { read_hdf5(dir.file("none.h5"), "x", "y", x, y); });
  EXPECT_NE(e2.find("none.h5"), std::string::npos) << e2;

  EXPECT_THROW(read_hdf5(p, "", "labels", x, y), ConfigError);
}

TEST(DataHdf5, LoadSplitsAndNormalizes) {
  TempDir dir;
  const std::string p = dir.file("jets.h5");
  write_jets(p);
  DataOptions o;
  o.dataset = "hdf5";
  o.path = p;
  o.features = "jets/x";
  o.labels = "onehot";
  o.test_fraction = 0.25;
  o.val_fraction = 0.0;
  const Splits s = load(o, 5);
  EXPECT_EQ(s.train.size(), 9);
  EXPECT_EQ(s.test.size(), 3);
  EXPECT_EQ(s.num_classes, 3);
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(s.mean.sizes(), (std::vector<int64_t>{3}));  // per index along dimension 1
}

// Fuzzing found both (tests/fuzz/regressions/hdf5): a header whose sizes the file cannot hold
// (refused before allocating), and a damaged local heap on which libhdf5 itself crashes (read in
// a child process, so the crash is an InputError naming the file).
TEST(DataHdf5, DamagedFilesAreInputErrors) {
  const std::string dir = std::string(SQUEEZE_SOURCE_DIR) + "/tests/fuzz/regressions/hdf5/";
  at::Tensor x, y;
  const std::string sizes = error_of([&] { read_hdf5(dir + "dims-beyond-storage.h5", "x", "y", x, y); });
  // It claims petabytes: more than memory, which is checked first.
  EXPECT_NE(sizes.find("of memory, but only"), std::string::npos) << sizes;
  EXPECT_NE(sizes.find("dims-beyond-storage.h5"), std::string::npos) << sizes;
  // A claim that fits in memory but not in what the file stores (a never-written chunked data
  // set of 400 MB in a file of a few KB).
  TempDir tmp;
  const std::string unwritten = tmp.file("unwritten.h5");
  {
    H5::H5File f(unwritten, H5F_ACC_TRUNC);
    hsize_t dims[2] = {1000, 100000}, chunk[2] = {16, 16};
    H5::DSetCreatPropList props;
    props.setChunk(2, chunk);
    f.createDataSet("x", H5::PredType::NATIVE_FLOAT, H5::DataSpace(2, dims), props);
    hsize_t ldims[1] = {1000};
    f.createDataSet("y", H5::PredType::NATIVE_INT64, H5::DataSpace(1, ldims));
  }
  const std::string stored = error_of([&] { read_hdf5(unwritten, "x", "y", x, y); });
  EXPECT_NE(stored.find("but the file stores only"), std::string::npos) << stored;
  EXPECT_NE(stored.find("unwritten.h5"), std::string::npos) << stored;
  const std::string crash =
      error_of([&] { read_hdf5(dir + "libhdf5-crash-local-heap.h5", "x", "y", x, y); });
  EXPECT_NE(crash.find("the HDF5 library crashed reading it"), std::string::npos) << crash;
}

// Found by the in-process hdf5 fuzz target (tests/fuzz/regressions/hdf5): a group linked into
// itself (listing the data sets recursed until the stack overflowed), unfiltered chunks shorter
// than a chunk (libhdf5 copied past the end of what it read: garbage, or a crash), and a file on
// which libhdf5 allocates without end (the child's memory is capped). Each is an InputError that
// names the file; no child is left behind.
TEST(DataHdf5, DamagedMetadataFoundByFuzzing) {
  const std::string dir = std::string(SQUEEZE_SOURCE_DIR) + "/tests/fuzz/regressions/hdf5/";
  at::Tensor x, y;
  const std::string cyclic =
      error_of([&] { read_hdf5(dir + "cyclic-group-stack-overflow.h5", "x", "y", x, y); });
  EXPECT_NE(cyclic.find("cyclic-group-stack-overflow.h5"), std::string::npos) << cyclic;
  for (const char* name : {"unfiltered-chunk-short.h5", "unfiltered-chunk-over-read.h5"}) {
    const std::string e = error_of([&] { read_hdf5(dir + name, "x", "y", x, y); });
    EXPECT_NE(e.find("uncompressed chunks of"), std::string::npos) << e;
    EXPECT_NE(e.find(name), std::string::npos) << e;
  }
  const std::string runaway =
      error_of([&] { read_hdf5(dir + "libhdf5-memory-runaway.h5", "x", "y", x, y); });
  EXPECT_NE(runaway.find("libhdf5-memory-runaway.h5"), std::string::npos) << runaway;
}

// Data kept outside the file (external storage) is not followed; the same data set stored in
// the file is read (must not fire).
TEST(DataHdf5, ExternalStorageIsRefused) {
  TempDir dir;
  const std::string ext = dir.file("ext.h5"), in = dir.file("in.h5");
  hsize_t dims[1] = {4};
  for (const std::string& p : {ext, in}) {
    H5::H5File f(p, H5F_ACC_TRUNC);
    H5::DSetCreatPropList props;
    if (p == ext) props.setExternal(dir.file("raw.bin").c_str(), 0, 4 * sizeof(float));
    const float xs[4] = {1, 2, 3, 4};
    const int64_t ys[4] = {0, 1, 0, 1};
    f.createDataSet("x", H5::PredType::NATIVE_FLOAT, H5::DataSpace(1, dims), props)
        .write(xs, H5::PredType::NATIVE_FLOAT);
    f.createDataSet("y", H5::PredType::NATIVE_INT64, H5::DataSpace(1, dims))
        .write(ys, H5::PredType::NATIVE_INT64);
  }
  at::Tensor x, y;
  const std::string e = error_of([&] { read_hdf5(ext, "x", "y", x, y); });
  EXPECT_NE(e.find("stored in other files (external storage)"), std::string::npos) << e;
  EXPECT_NE(e.find("ext.h5"), std::string::npos) << e;
  read_hdf5(in, "x", "y", x, y);
  EXPECT_EQ(x.size(0), 4);
  EXPECT_EQ(y.size(0), 4);
}

// The size check leaves compressed data alone: 256 Ki zeros gzip'd about 1000-fold read back.
TEST(DataHdf5, HighlyCompressedDataSetIsRead) {
  TempDir dir;
  const std::string p = dir.file("zeros.h5");
  {
    H5::H5File f(p, H5F_ACC_TRUNC);
    hsize_t dims[2] = {1024, 256};
    H5::DataSpace space(2, dims);
    H5::DSetCreatPropList plist;
    plist.setChunk(2, dims);
    plist.setDeflate(9);
    const at::Tensor zeros = at::zeros({1024, 256}, at::kFloat);
    f.createDataSet("x", H5::PredType::NATIVE_FLOAT, space, plist).write(zeros.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
    hsize_t ldims[1] = {1024};
    H5::DataSpace lspace(1, ldims);
    const at::Tensor labels = at::zeros({1024}, at::kLong);
    f.createDataSet("y", H5::PredType::NATIVE_INT64, lspace).write(labels.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
    EXPECT_LT(f.openDataSet("x").getStorageSize(), 1024u * 256u * 4u / 500u);  // really compressed
  }
  at::Tensor x, y;
  read_hdf5(p, "x", "y", x, y);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{1024, 256}));
  EXPECT_EQ(x.abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(y.size(0), 1024);
}

#else  // !SQUEEZE_HAVE_HDF5

TEST(DataHdf5, UnsupportedWithoutHdf5) {
  at::Tensor x, y;
  // UnsupportedError from a build without HDF5; InputError (missing file) if the library has it.
  EXPECT_THROW(read_hdf5("/nonexistent/jets.h5", "x", "y", x, y), UserError);
}

#endif
