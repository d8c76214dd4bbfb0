// Hostile and oversized inputs (issue 15, parts 4 and 5): absurd header values refused without
// allocating, the memory budget and its refusals, ONNX external data that points outside the
// model's folder, and names that would leave their folder.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "io/onnx_test_util.h"
#include "squeeze/data/dataset.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/sqz.h"
#include "squeeze/models/zoo.h"
#include "squeeze/pipeline/stages.h"
#include "squeeze/util/error.h"
#include "squeeze/util/memory.h"
#include "testing/asserts.h"
#include "testing/cli.h"

#ifdef SQUEEZE_HAVE_HDF5
#include <H5Cpp.h>
#endif

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

template <typename F>
std::string input_error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not an InputError: ") + e.what() + ">";
  }
  return "<no error>";
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// --- the memory budget --------------------------------------------------------------------------

TEST(MemoryBudget, NamesALimitAndRefusesWhatCannotFit) {
  const MemoryBudget b = available_memory();
  EXPECT_GT(b.bytes, 0u);
  EXPECT_FALSE(b.source.empty());
  EXPECT_NO_THROW(check_fits_in_memory(1 << 20, "a small thing", ""));  // must not fire
  const std::string e = input_error_of([] {
    check_fits_in_memory(uint64_t{1} << 62, "the data set x.npy", "use data.limit");
  });
  for (const char* w : {"the data set x.npy needs", "(4611686018427387904 bytes)", "of memory, but only",
                        "is available (limit: ", "use data.limit"})
    EXPECT_NE(e.find(w), std::string::npos) << w << " in " << e;
}

TEST(MemoryBudget, CheckedBytesCatchesOverflowAndNegativeDimensions) {
  uint64_t n = 0;
  EXPECT_TRUE(checked_bytes({2, 3, 4}, 4, &n));
  EXPECT_EQ(n, 96u);
  EXPECT_TRUE(checked_bytes({0, int64_t{1} << 62}, 8, &n));
  EXPECT_EQ(n, 0u);
  EXPECT_FALSE(checked_bytes({int64_t{1} << 31, int64_t{1} << 31, 4}, 4, &n));
  EXPECT_FALSE(checked_bytes({1000000000000000, 1000000}, 1, &n));
  EXPECT_FALSE(checked_bytes({-1, 4}, 4, &n));
  // A zero dimension does not excuse the others (libtorch multiplies them all), in any order.
  EXPECT_FALSE(checked_bytes({0, int64_t{1} << 40, int64_t{1} << 40}, 4, &n));
  EXPECT_TRUE(checked_bytes({int64_t{1} << 62, 0}, 8, &n));
  EXPECT_EQ(n, 0u);
}

// --- absurd header values, each reader ----------------------------------------------------------

std::string idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int k = 3; k >= 0; --k) s += static_cast<char>((d >> (8 * k)) & 0xff);
  return s;
}

TEST(HostileHeaders, IdxClaimingHugeDimensionsIsRefusedWithoutAllocating) {
  TempDir dir;
  // 2^32-1 cubed: past the plausibility bound.
  write_raw(dir.file("a.idx"), idx_header(0x08, {0xffffffffu, 0xffffffffu, 0xffffffffu}) + "xx");
  EXPECT_NE(input_error_of([&] { data::read_idx(dir.file("a.idx")); }).find("implausible header"),
            std::string::npos);
  // 2^39 float64 values (4 TB): plausible as a count, but no machine here has that memory. The
  // refusal names the sizes; nothing of it was allocated (the process would be killed).
  write_raw(dir.file("b.idx"), idx_header(0x0E, {1u << 20, 1u << 19}) + std::string(64, '\0'));
  const std::string e = input_error_of([&] { data::read_idx(dir.file("b.idx")); });
  for (const char* w : {"IDX file", "1048576 x 524288 float64", "needs", "of memory, but only",
                        "store a subset in a smaller file"})
    EXPECT_NE(e.find(w), std::string::npos) << w << " in " << e;
  // Must not fire: a small honest file.
  write_raw(dir.file("c.idx"), idx_header(0x08, {2, 2}) + std::string("\1\2\3\4"));
  EXPECT_EQ(data::read_idx(dir.file("c.idx")).numel(), 4);
}

std::string npy_with_shape(const std::string& shape, size_t payload) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string s("\x93NUMPY\x01\x00", 8);
  s += static_cast<char>(header.size() & 0xff);
  s += static_cast<char>(header.size() >> 8);
  return s + header + std::string(payload, '\0');
}

TEST(HostileHeaders, NpyClaimingHugeShapesIsRefusedWithoutAllocating) {
  TempDir dir;
  write_raw(dir.file("a.npy"), npy_with_shape("(1000000000000000, 1000000)", 16));
  EXPECT_NE(input_error_of([&] { data::read_npy(dir.file("a.npy")); }).find("implausible shape"),
            std::string::npos);
  write_raw(dir.file("b.npy"), npy_with_shape("(1000000000000000,)", 16));
  const std::string e = input_error_of([&] { data::read_npy(dir.file("b.npy")); });
  EXPECT_NE(e.find("truncated NPY file"), std::string::npos) << e;
  EXPECT_NE(e.find("4000000000000000 bytes"), std::string::npos) << e;
  write_raw(dir.file("c.npy"), npy_with_shape("(4,)", 16));
  EXPECT_EQ(data::read_npy(dir.file("c.npy")).numel(), 4);
}

#ifdef SQUEEZE_HAVE_HDF5
TEST(HostileHeaders, Hdf5DataSetLargerThanMemoryIsRefusedWithoutAllocating) {
  TempDir dir;
  const std::string path = dir.file("big.h5");
  {
    // Chunked and never written: a file of a few KB whose data set claims 10^8 x 10^8 floats.
    H5::H5File f(path, H5F_ACC_TRUNC);
    hsize_t dims[2] = {100000000, 100000000}, chunk[2] = {16, 16};
    H5::DSetCreatPropList props;
    props.setChunk(2, chunk);
    f.createDataSet("x", H5::PredType::NATIVE_FLOAT, H5::DataSpace(2, dims), props);
    hsize_t ldims[1] = {100000000};
    hsize_t lchunk[1] = {16};
    H5::DSetCreatPropList lprops;
    lprops.setChunk(1, lchunk);
    f.createDataSet("y", H5::PredType::NATIVE_INT64, H5::DataSpace(1, ldims), lprops);
  }
  EXPECT_LT(fs::file_size(path), 1u << 20);
  at::Tensor x, y;
  const std::string e = input_error_of([&] { data::read_hdf5(path, "x", "y", x, y); });
  for (const char* w : {"HDF5 file", "data set 'x'", "100000000 x 100000000", "needs",
                        "of memory, but only"})
    EXPECT_NE(e.find(w), std::string::npos) << w << " in " << e;
  EXPECT_FALSE(x.defined());
}
#endif

// A checkpoint with its header edited and its checksum made valid again.
std::string sqz_with_header(const std::string& good, const std::function<void(nlohmann::ordered_json&)>& edit) {
  uint64_t hlen;
  std::memcpy(&hlen, good.data() + 12, 8);
  auto header = nlohmann::ordered_json::parse(good.substr(20, hlen));
  const size_t payload_start = (20 + hlen + 63) / 64 * 64;
  const std::string payload = good.substr(payload_start, good.size() - 8 - payload_start);
  edit(header);
  const std::string text = header.dump();
  std::string out = good.substr(0, 12);
  const uint64_t len = text.size();
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += text;
  out.resize((out.size() + 63) / 64 * 64, '\0');
  out += payload;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : text + payload) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  out.append(reinterpret_cast<const char*>(&h), 8);
  return out;
}

TEST(HostileHeaders, SqzTensorOf10To15ElementsIsRefusedWithoutAllocating) {
  TempDir dir;
  io::save_sqz(models::build("jet_tagger", {}, 0), dir.file("good.sqz"));
  std::ifstream in(dir.file("good.sqz"), std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const bool sparse : {false, true}) {
    write_raw(dir.file("bad.sqz"), sqz_with_header(good, [&](nlohmann::ordered_json& h) {
                auto& t = h["tensors"][0];
                t["shape"] = {1000000000000000LL};
                if (sparse) {
                  t["encoding"] = "sparse_f32";
                  t["nnz"] = 0;
                }
              }));
    const std::string e = input_error_of([&] { io::load_sqz(dir.file("bad.sqz")); });
    EXPECT_NE(e.find("implausible shape"), std::string::npos) << e;
  }
  // 2^36 elements fit the bound but their payload is not in the file: refused before decoding.
  write_raw(dir.file("bad.sqz"), sqz_with_header(good, [&](nlohmann::ordered_json& h) {
              h["tensors"][0]["shape"] = {int64_t{1} << 36};
            }));
  const std::string e = input_error_of([&] { io::load_sqz(dir.file("bad.sqz")); });
  EXPECT_NE(e.find("payload of shape [68719476736] should take 274877906944 bytes"),
            std::string::npos) << e;
  EXPECT_NO_THROW(io::load_sqz(dir.file("good.sqz")));
}

// --- ONNX: absurd dimensions and external data ----------------------------------------------------

// x [N, K] MatMul W [K, M] -> y, W of w_dims = {K, M}; W's bytes in `location` (relative to the model) when given.
std::string matmul_model(const TempDir& dir, const std::string& location,
                         std::vector<int64_t> w_dims = {2, 2}) {
  testing::OnnxMaker m;
  m.input("x", {-1, w_dims[0]}).output("y");
  m.init("W", at::ones({2, 2}));
  m.node("MatMul", {"x", "W"}, {"y"}, "mm");
  auto* w = m.model().mutable_graph()->mutable_initializer(0);
  w->clear_dims();
  for (int64_t d : w_dims) w->add_dims(d);
  if (!location.empty()) {
    w->clear_raw_data();
    w->set_data_location(onnx::TensorProto::EXTERNAL);
    auto* kv = w->add_external_data();
    kv->set_key("location");
    kv->set_value(location);
  }
  const std::string path = dir.file("model/m.onnx");
  fs::create_directories(dir.file("model"));
  write_raw(path, m.bytes());
  return path;
}

TEST(HostileOnnx, TensorOf10To15ElementsIsRefusedWithoutAllocating) {
  TempDir dir;
  const std::string e = input_error_of(
      [&] { io::import_onnx(matmul_model(dir, "", {1000000000000000, 1})); });
  EXPECT_NE(e.find("tensor 'W' has 16 bytes of data for 1000000000000000 elements"),
            std::string::npos) << e;
  // External: the data file is 16 bytes.
  const std::string floats(16, '\0');
  fs::create_directories(dir.file("model"));
  write_raw(dir.file("model/w.bin"), floats);
  const std::string e2 = input_error_of(
      [&] { io::import_onnx(matmul_model(dir, "w.bin", {1000000, 1000000})); });
  EXPECT_NE(e2.find("(16 bytes) is too short for tensor 'W' (4000000000000 bytes"),
            std::string::npos) << e2;
}

TEST(HostileOnnx, ExternalDataOutsideTheModelsFolderIsRefused) {
  TempDir dir;
  const std::string floats(16, '\0');
  fs::create_directories(dir.file("model"));
  write_raw(dir.file("model/w.bin"), floats);
  write_raw(dir.file("outside.bin"), floats);
  fs::create_directories(dir.file("model/sub"));
  write_raw(dir.file("model/sub/w.bin"), floats);
  // Must not fire: a file in the folder, and in a subfolder.
  EXPECT_NO_THROW(io::import_onnx(matmul_model(dir, "w.bin")));
  EXPECT_NO_THROW(io::import_onnx(matmul_model(dir, "sub/w.bin")));
  for (const std::string& loc : {std::string("../../etc/passwd"), std::string("../outside.bin"),
                                 std::string("sub/../../outside.bin"), std::string("/etc/passwd"),
                                 dir.file("outside.bin")}) {
    const std::string e = input_error_of([&] { io::import_onnx(matmul_model(dir, loc)); });
    EXPECT_NE(e.find("not a file inside the model's folder"), std::string::npos)
        << loc << ": " << e;
  }
  // A symbolic link inside the folder that leads out of it.
  fs::create_symlink(dir.file("outside.bin"), dir.file("model/link.bin"));
  fs::create_directory_symlink(dir.path(), dir.file("model/up"));
  for (const std::string loc : {"link.bin", "up/outside.bin"}) {
    const std::string e = input_error_of([&] { io::import_onnx(matmul_model(dir, loc)); });
    EXPECT_NE(e.find("outside the model's folder"), std::string::npos) << loc << ": " << e;
    EXPECT_NE(e.find("symbolic link"), std::string::npos) << loc << ": " << e;
  }
  // Junk offsets are named, not a crash or a std::stoll message.
  const std::string path = matmul_model(dir, "w.bin");
  onnx::ModelProto model;
  {
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(model.ParseFromIstream(&in));
  }
  auto* kv = model.mutable_graph()->mutable_initializer(0)->add_external_data();
  kv->set_key("offset");
  kv->set_value("-5");
  std::string bytes;
  model.SerializeToString(&bytes);
  write_raw(path, bytes);
  const std::string e = input_error_of([&] { io::import_onnx(path); });
  EXPECT_NE(e.find("external data offset '-5' (expected a non-negative integer)"),
            std::string::npos) << e;
}

// --- names that become file names -----------------------------------------------------------------

TEST(HostileNames, FileNamesFromConfigsAndModelsStayInTheirFolder) {
  for (const std::string& name : {"..", ".", "../../etc/passwd", "/etc/passwd", ".hidden", "a\\b"}) {
    const std::string f = pipeline::safe_file_name(name);
    EXPECT_EQ(f.find('/'), std::string::npos) << name << " -> " << f;
    EXPECT_NE(f[0], '.') << name << " -> " << f;
    EXPECT_NE(f, "..");
  }
  // Must not fire: ordinary names are kept.
  EXPECT_EQ(pipeline::safe_file_name("prune50-int8.v2"), "prune50-int8.v2");
}

const char* kJets = R"(seed: 2
model: {zoo: jet_tagger}
data: {dataset: synthetic-jets, samples: 400, split: {val: 0.25, test: 0.25}}
output: {latency: false}
)";

TEST(HostileNames, ExperimentNamesThatWouldShareAFileAreRefused) {
  TempDir dir;
  const std::string stage = "stages: [{method: prune, params: {ratio: 0.5}}]}\n";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"  - {name: 'a b', " + stage + "  - {name: a_b, " + stage,
       {"experiments[1].name: 'a_b' would write models/a_b.sqz", "the file of experiment 'a b'"}},
      {"  - {name: baseline, " + stage,
       {"experiments[0].name: 'baseline' would write models/baseline.sqz",
        "the file of the baseline"}}};
  for (const auto& [list, words] : cases) {
    const std::string yaml = std::string(kJets) + "experiments:\n" + list;
    auto r = testing::cli({"run", dir.write("w.yaml", yaml), "--out", dir.file("out")});
    EXPECT_EQ(r.code, 2) << yaml;
    for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << w << " in " << r.err;
    EXPECT_FALSE(fs::exists(dir.file("out")));
  }
  // Must not fire: distinct names.
  const std::string yaml = std::string(kJets) + "experiments:\n  - {name: a, " + stage +
                           "  - {name: b, " + stage;
  auto r = testing::cli({"run", dir.write("w.yaml", yaml), "--out", dir.file("ok")});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(HostileNames, SensitivityOutIsAFileInsideTheOutputFolder) {
  TempDir dir;
  auto run = [&](const std::string& file, const std::string& out) {
    const std::string yaml =
        std::string(kJets) +
        "experiments:\n  - name: q\n    stages: [{method: quantize, params: {mode: ptq, "
        "weight_bits: 8, act_bits: 8, sensitivity: true, sensitivity_out: '" + file + "'}}]\n";
    return testing::cli({"run", dir.write("w.yaml", yaml), "--out", dir.file(out)});
  };
  for (const std::string bad : {"../escape.csv", "/tmp/squeeze-escape.csv", "a/../../b.csv"}) {
    auto r = run(bad, "bad");
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_NE(r.err.find("sensitivity_out: '" + bad + "' must be a file name inside the output "
                         "folder"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir.file("bad")));
  }
  EXPECT_FALSE(fs::exists(dir.file("escape.csv")));
  // Must not fire: a plain name, written into the output folder.
  auto ok = run("sens.csv", "good");
  ASSERT_EQ(ok.code, 0) << ok.err;
  std::ifstream in(dir.file("good/sens.csv"));
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "layer,bits,accuracy,drop");
}

}  // namespace
}  // namespace squeeze
