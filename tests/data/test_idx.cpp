// IDX reader and the IDX-folder data sets (mnist-idx, fashion-mnist).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "testing/asserts.h"
#include "squeeze/util/error.h"

namespace fs = std::filesystem;
using namespace squeeze;
using namespace squeeze::data;

namespace {

using squeeze::testing::TempDir;

std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                      uint8_t type = 0x08) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8)
      s.push_back(static_cast<char>((d >> shift) & 0xff));
  }
  s.append(data.begin(), data.end());
  return s;
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

std::vector<uint8_t> ramp(size_t n, int mult = 7) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * mult) % 256);
  return v;
}

// Writes a tiny MNIST-layout folder: n_train / n_test images of h x w, labels i % 10.
void write_idx_folder(const TempDir& dir, int64_t n_train, int64_t n_test, bool gz) {
  const uint32_t h = 4, w = 3;
  auto write = [&](const std::string& name, const std::string& bytes) {
    if (gz) {
      write_gz(dir.file(name + ".gz"), bytes);
    } else {
      write_raw(dir.file(name), bytes);
    }
  };
  for (auto [prefix, n] : {std::pair{"train", n_train}, std::pair{"t10k", n_test}}) {
    std::vector<uint8_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<uint8_t>(i % 10);
    write(std::string(prefix) + "-images-idx3-ubyte",
          idx_bytes({static_cast<uint32_t>(n), h, w}, ramp(static_cast<size_t>(n) * h * w)));
    write(std::string(prefix) + "-labels-idx1-ubyte",
          idx_bytes({static_cast<uint32_t>(n)}, labels));
  }
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

TEST(DataIdx, RoundTripRawAndGzip) {
  TempDir dir;
  const auto data = ramp(5 * 4 * 3);
  const std::string bytes = idx_bytes({5, 4, 3}, data);
  write_raw(dir.file("raw-idx3-ubyte"), bytes);
  write_gz(dir.file("gz-idx3-ubyte.gz"), bytes);
  for (const char* name : {"raw-idx3-ubyte", "gz-idx3-ubyte.gz"}) {
    const at::Tensor t = read_idx(dir.file(name));
    EXPECT_EQ(t.scalar_type(), at::kByte) << name;
    EXPECT_EQ(t.sizes(), (std::vector<int64_t>{5, 4, 3})) << name;
    const at::Tensor expected =
        at::tensor(std::vector<int64_t>(data.begin(), data.end())).to(at::kByte).reshape({5, 4, 3});
    EXPECT_TRUE(t.equal(expected)) << name;
  }
}

TEST(DataIdx, BigEndianMultiByteTypes) {
  TempDir dir;
  // Two int32 values, 1 and -2, big-endian.
  write_raw(dir.file("i32"), idx_bytes({2}, {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe}, 0x0C));
  const at::Tensor t = read_idx(dir.file("i32"));
  EXPECT_EQ(t.scalar_type(), at::kInt);
  EXPECT_EQ(t[0].item<int>(), 1);
  EXPECT_EQ(t[1].item<int>(), -2);
}

// A header with a zero dimension holds no elements: an empty tensor of that shape (fuzzing found
// this path leaking its buffer; tests/fuzz/regressions/idx, checked for leaks by make fuzz and
// make test-sanitize).
TEST(DataIdx, ZeroElementsGiveAnEmptyTensor) {
  TempDir dir;
  write_raw(dir.file("empty"), idx_bytes({0, 3}, {}, 0x0B));
  const at::Tensor t = read_idx(dir.file("empty"));
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(t.scalar_type(), at::kShort);
}

TEST(DataIdx, TruncatedFileIsRejected) {
  TempDir dir;
  std::string bytes = idx_bytes({10, 28, 28}, ramp(10 * 28 * 28));
  bytes.resize(bytes.size() - 100);
  write_raw(dir.file("short-idx3-ubyte"), bytes);
  write_gz(dir.file("short-idx3-ubyte.gz"), bytes);
  for (const char* name : {"short-idx3-ubyte", "short-idx3-ubyte.gz"}) {
    const std::string e = error_of([&] { read_idx(dir.file(name)); });
    EXPECT_NE(e.find("truncated IDX file"), std::string::npos) << e;
    EXPECT_NE(e.find(dir.file(name)), std::string::npos) << e;
    EXPECT_NE(e.find("10 x 28 x 28"), std::string::npos) << e;
    EXPECT_NE(e.find("7740 bytes present"), std::string::npos) << e;
  }
}

TEST(DataIdx, TruncatedGzipStreamIsRejected) {
  TempDir dir;
  write_gz(dir.file("full.gz"), idx_bytes({200, 28, 28}, ramp(200 * 28 * 28, 13)));
  std::ifstream in(dir.file("full.gz"), std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_raw(dir.file("cut.gz"), gz.substr(0, gz.size() / 2));
  const std::string e = error_of([&] { read_idx(dir.file("cut.gz")); });
  EXPECT_NE(e.find(dir.file("cut.gz")), std::string::npos) << e;
}

TEST(DataIdx, BadMagicAndTrailingData) {
  TempDir dir;
  write_raw(dir.file("bad"), "PK\x03\x04 this is a zip file, not IDX");
  std::string e = error_of([&] { read_idx(dir.file("bad")); });
  EXPECT_NE(e.find("not an IDX file"), std::string::npos) << e;
  EXPECT_NE(e.find("magic"), std::string::npos) << e;

  write_raw(dir.file("type"), idx_bytes({1}, {0}, 0x42));
  e = error_of([&] { read_idx(dir.file("type")); });
  EXPECT_NE(e.find("element type"), std::string::npos) << e;

  write_raw(dir.file("long"), idx_bytes({2}, {1, 2, 3}));
  e = error_of([&] { read_idx(dir.file("long")); });
  EXPECT_NE(e.find("more data"), std::string::npos) << e;

  e = error_of([&] { read_idx(dir.file("does-not-exist")); });
  EXPECT_NE(e.find(dir.file("does-not-exist")), std::string::npos) << e;
}

TEST(DataIdx, MnistIdxFolderLoads) {
  for (bool gz : {false, true}) {
    TempDir dir;
    write_idx_folder(dir, 50, 20, gz);
    DataOptions o;
    o.dataset = "mnist-idx";
    o.path = dir.path();
    o.val_fraction = 0.2;
    o.normalize = "none";
    const Splits s = load(o, 3);
    EXPECT_EQ(s.train.size(), 40);
    EXPECT_EQ(s.val.size(), 10);
    EXPECT_EQ(s.test.size(), 20);
    EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{1, 4, 3}));
    EXPECT_EQ(s.num_classes, 10);
    EXPECT_TRUE(s.class_names.empty());
    EXPECT_EQ(s.train.x.scalar_type(), at::kFloat);
    EXPECT_EQ(s.train.y.scalar_type(), at::kLong);
    // Bytes scaled to [0, 1]; the test split keeps the file's order.
    EXPECT_LE(s.test.x.max().item<float>(), 1.0f);
    EXPECT_GE(s.test.x.min().item<float>(), 0.0f);
    EXPECT_FLOAT_EQ(s.test.x[0][0][0][1].item<float>(), 7.0f / 255.0f);
    EXPECT_EQ(s.test.y[3].item<int64_t>(), 3);
    EXPECT_EQ(s.description, "mnist-idx: train 40, val 10, test 20");
  }
}

TEST(DataIdx, MissingDirectoryNamesPathAndExpectedFiles) {
  DataOptions o;
  o.dataset = "fashion-mnist";
  o.path = "/nonexistent/squeeze-data-dir";
  const std::string e = error_of([&] { load(o, 0); });
  EXPECT_NE(e.find("missing data directory /nonexistent/squeeze-data-dir"), std::string::npos) << e;
  EXPECT_NE(e.find("train-images-idx3-ubyte[.gz]"), std::string::npos) << e;
  EXPECT_NE(e.find("t10k-labels-idx1-ubyte[.gz]"), std::string::npos) << e;
}

TEST(DataIdx, DirectoryWithMissingFilesListsThem) {
  TempDir dir;
  write_idx_folder(dir, 10, 5, true);
  fs::remove(dir.file("t10k-labels-idx1-ubyte.gz"));
  DataOptions o;
  o.dataset = "mnist-idx";
  o.path = dir.path();
  const std::string e = error_of([&] { load(o, 0); });
  EXPECT_NE(e.find("has no t10k-labels-idx1-ubyte[.gz]"), std::string::npos) << e;
  EXPECT_NE(e.find("found: t10k-images-idx3-ubyte.gz"), std::string::npos) << e;
}

TEST(DataIdx, ImageAndLabelCountsMustAgree) {
  TempDir dir;
  write_idx_folder(dir, 10, 5, false);
  write_raw(dir.file("train-labels-idx1-ubyte"), idx_bytes({9}, ramp(9, 1)));
  DataOptions o;
  o.dataset = "mnist-idx";
  o.path = dir.path();
  const std::string e = error_of([&] { load(o, 0); });
  EXPECT_NE(e.find("10 images but 9 labels"), std::string::npos) << e;
}

// Reads the real data set (about 0.3 s): the one slow-ish test of this folder.
TEST(DataIdx, RealFashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " is missing (package dataset-fashion-mnist)";
  DataOptions o;
  o.dataset = "fashion-mnist";
  o.path = dir;
  o.val_fraction = 0.0;
  o.normalize = "none";
  const auto t0 = std::chrono::steady_clock::now();
  const Splits s = load(o, 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[          ] fashion-mnist load: %.3f s\n", seconds);
  RecordProperty("load_seconds", std::to_string(seconds));
  EXPECT_EQ(s.train.size(), 60000);
  EXPECT_EQ(s.val.size(), 0);
  EXPECT_EQ(s.test.size(), 10000);
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(s.num_classes, 10);
  ASSERT_EQ(s.class_names.size(), 10u);
  EXPECT_EQ(s.class_names[0], "T-shirt/top");
  EXPECT_EQ(s.class_names[9], "Ankle boot");
  EXPECT_EQ(s.description, "fashion-mnist: train 60000, val 0, test 10000");
  EXPECT_GE(s.train.x.min().item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(s.train.x.max().item<float>(), 1.0f);
  // Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
  EXPECT_TRUE(at::bincount(s.train.y).eq(6000).all().item<bool>());
  EXPECT_TRUE(at::bincount(s.test.y).eq(1000).all().item<bool>());
}
