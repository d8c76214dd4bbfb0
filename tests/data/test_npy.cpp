// NPY reader and writer, and the npy data source.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
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

// An NPY file written byte by byte, the way numpy lays it out.
std::string npy_bytes(int major, const std::string& dict, const void* data, size_t nbytes) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string s = "\x93NUMPY";
  s.push_back(static_cast<char>(major));
  s.push_back(0);
  const size_t hl = header.size();
  for (size_t i = 0; i < prefix - 8; ++i) s.push_back(static_cast<char>((hl >> (8 * i)) & 0xff));
  s += header;
  s.append(static_cast<const char*>(data), nbytes);
  return s;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
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

TEST(DataNpy, ReadsHandWrittenFilesOfEveryVersionAndType) {
  TempDir dir;
  const float f4[6] = {0.5f, -1.f, 2.f, 3.25f, 4.f, 5.f};
  write_file(
      dir.file("f4.npy"),
      npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4, sizeof f4));
  at::Tensor t = read_npy(dir.file("f4.npy"));
  EXPECT_EQ(t.scalar_type(), at::kFloat);
  EXPECT_TRUE(t.equal(at::tensor({0.5f, -1.f, 2.f, 3.25f, 4.f, 5.f}).reshape({2, 3})));

  const int64_t i8[3] = {7, -8, 1LL << 40};
  write_file(
      dir.file("i8.npy"),
      npy_bytes(2, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", i8, sizeof i8));
  t = read_npy(dir.file("i8.npy"));
  EXPECT_EQ(t.scalar_type(), at::kLong);
  EXPECT_TRUE(t.equal(at::tensor({int64_t{7}, int64_t{-8}, int64_t{1} << 40})));

  const double f8[4] = {1.0 / 3, 2, 3, 4};
  write_file(dir.file("f8.npy"),
             npy_bytes(3, "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (1, 2, 2)}",
                       f8, sizeof f8));
  t = read_npy(dir.file("f8.npy"));
  EXPECT_EQ(t.scalar_type(), at::kDouble);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(t[0][0][0].item<double>(), 1.0 / 3);

  const int32_t i4[2] = {-3, 9};
  write_file(
      dir.file("i4.npy"),
      npy_bytes(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", i4, sizeof i4));
  t = read_npy(dir.file("i4.npy"));
  EXPECT_EQ(t.scalar_type(), at::kInt);
  EXPECT_TRUE(t.equal(at::tensor({-3, 9}, at::kInt)));

  const uint8_t u1[3] = {0, 200, 255};
  write_file(dir.file("u1.npy"),
             npy_bytes(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", u1, 3));
  t = read_npy(dir.file("u1.npy"));
  EXPECT_EQ(t.scalar_type(), at::kByte);
  EXPECT_EQ(t[1].item<int>(), 200);

  const uint8_t b1[3] = {1, 0, 1};
  write_file(dir.file("b1.npy"),
             npy_bytes(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", b1, 3));
  t = read_npy(dir.file("b1.npy"));
  EXPECT_EQ(t.scalar_type(), at::kBool);
  EXPECT_TRUE(t.equal(at::tensor({1, 0, 1}, at::kByte).to(at::kBool)));

  const float scalar = 42.f;
  write_file(dir.file("s.npy"),
             npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &scalar, 4));
  t = read_npy(dir.file("s.npy"));
  EXPECT_EQ(t.dim(), 0);
  EXPECT_EQ(t.item<float>(), 42.f);
}

TEST(DataNpy, FortranOrderIsRejected) {
  TempDir dir;
  const float f4[4] = {1, 2, 3, 4};
  write_file(
      dir.file("f.npy"),
      npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4, sizeof f4));
  const std::string e = error_of([&] { read_npy(dir.file("f.npy")); });
  EXPECT_NE(e.find("Fortran"), std::string::npos) << e;
  EXPECT_NE(e.find("np.ascontiguousarray"), std::string::npos) << e;
  EXPECT_NE(e.find(dir.file("f.npy")), std::string::npos) << e;
}

TEST(DataNpy, MalformedFilesAreRejected) {
  TempDir dir;
  const float f4[4] = {1, 2, 3, 4};
  write_file(
      dir.file("short.npy"),
      npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4, sizeof f4));
  std::string e = error_of([&] { read_npy(dir.file("short.npy")); });
  EXPECT_NE(e.find("truncated NPY file"), std::string::npos) << e;
  EXPECT_NE(e.find("(2, 3)"), std::string::npos) << e;

  write_file(
      dir.file("be.npy"),
      npy_bytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", f4, sizeof f4));
  e = error_of([&] { read_npy(dir.file("be.npy")); });
  EXPECT_NE(e.find("'>f4'"), std::string::npos) << e;
  EXPECT_NE(e.find("big-endian"), std::string::npos) << e;

  write_file(
      dir.file("c8.npy"),
      npy_bytes(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", f4, sizeof f4));
  e = error_of([&] { read_npy(dir.file("c8.npy")); });
  EXPECT_NE(e.find("unsupported dtype '<c8'"), std::string::npos) << e;

  write_file(dir.file("magic.npy"), "PK\x03\x04garbage garbage");
  e = error_of([&] { read_npy(dir.file("magic.npy")); });
  EXPECT_NE(e.find("not an NPY file"), std::string::npos) << e;

  write_file(dir.file("v9.npy"), npy_bytes(1, "{}", nullptr, 0).replace(6, 1, "\x09"));
  e = error_of([&] { read_npy(dir.file("v9.npy")); });
  EXPECT_NE(e.find("version 9.0"), std::string::npos) << e;
}

TEST(DataNpy, WriteReadRoundTrip) {
  TempDir dir;
  const std::vector<at::Tensor> tensors = {
      at::arange(24, at::kFloat).reshape({2, 3, 4}).div(7),
      at::arange(5, at::kDouble).mul(1.0 / 3),
      at::arange(-3, 3, at::kLong).mul(int64_t{1} << 35),
      at::zeros({0, 4}, at::kFloat),
      // Non-contiguous input is written in logical (C) order.
      at::arange(6, at::kFloat).reshape({2, 3}).t(),
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string p = dir.file("t" + std::to_string(i) + ".npy");
    write_npy(p, tensors[i]);
    const at::Tensor back = read_npy(p);
    EXPECT_EQ(back.scalar_type(), tensors[i].scalar_type()) << i;
    EXPECT_TRUE(back.equal(tensors[i])) << i;
    // numpy's layout: the data starts on a 64-byte boundary.
    EXPECT_EQ((fs::file_size(p) - tensors[i].numel() * tensors[i].element_size()) % 64, 0u) << i;
  }
  // Writes go through a temporary file that is renamed: nothing else is left behind.
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().extension(), ".npy") << e.path();
    ++files;
  }
  EXPECT_EQ(files, tensors.size());

  // A missing folder is created (as every atomic writer does); a path under a file is an error.
  write_npy(dir.file("new-dir/x.npy"), tensors[0]);
  EXPECT_TRUE(read_npy(dir.file("new-dir/x.npy")).equal(tensors[0]));
  EXPECT_THROW(write_npy(dir.file("new-dir/x.npy/y.npy"), tensors[0]), UserError);
  EXPECT_THROW(write_npy(dir.file("h.npy"), at::ones({2}, at::kHalf)), UnsupportedError);
}

TEST(DataNpy, LoadFeaturesAndLabelsFiles) {
  TempDir dir;
  write_npy(dir.file("x.npy"), at::arange(40, at::kDouble).reshape({20, 2}));
  write_npy(dir.file("y.npy"), at::arange(20, at::kLong).remainder(4));
  write_npy(dir.file("tx.npy"), at::ones({5, 2}, at::kFloat));
  // One-hot test labels are accepted too.
  write_npy(dir.file("ty.npy"),
            at::eye(4, at::kFloat).index_select(0, at::tensor({0, 1, 2, 3, 1}, at::kLong)));
  DataOptions o;
  o.dataset = "npy";
  o.path = dir.path();  // relative names resolve against it
  o.features = "x.npy";
  o.labels = "y.npy";
  o.test_features = dir.file("tx.npy");
  o.test_labels = "ty.npy";
  o.val_fraction = 0.25;
  const Splits s = load(o, 0);
  EXPECT_EQ(s.train.size(), 15);
  EXPECT_EQ(s.val.size(), 5);
  EXPECT_EQ(s.test.size(), 5);
  EXPECT_EQ(s.train.x.scalar_type(), at::kFloat);
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(s.num_classes, 4);
  EXPECT_TRUE(s.test.y.equal(at::tensor({0, 1, 2, 3, 1}, at::kLong)));

  o.labels = "tx.npy";  // 5 rows x 2: argmax gives 5 labels for 20 samples
  const std::string e = error_of([&] { load(o, 0); });
  EXPECT_NE(e.find("20 samples"), std::string::npos) << e;
}
