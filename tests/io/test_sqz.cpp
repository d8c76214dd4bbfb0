// The .sqz checkpoint: exact round trips, encoding choice and sizes, damage detection and
// atomic writes.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "squeeze/io/sqz.h"
#include "squeeze/util/error.h"

namespace squeeze::io {
namespace {

namespace fs = std::filesystem;
using ir::Attr;
using ir::Graph;
using ir::Node;
using ir::Param;
using ir::QuantSpec;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sqz_test_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
  const std::string& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename());
    return out;
  }

 private:
  std::string path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A tensor on the 4-bit grid of `scale` (one per output channel), as fake quantization leaves it.
at::Tensor fake_quantized(at::Tensor w, const at::Tensor& scale, int64_t qmin, int64_t qmax) {
  at::Tensor s = scale.view({-1, 1});
  return (w / s).round().clamp(qmin, qmax) * s;
}

Graph make_graph() {
  at::manual_seed(0);
  Graph g;
  g.name = "tiny_cnn";
  g.inputs.push_back({"x", {ir::kDynamic, 1, 8, 8}, at::kFloat});
  g.outputs = {"y"};
  g.metadata = {{"zoo", "tiny_cnn"}, {"classes", "T-shirt,Trouser"}, {"note", "ünïcode ok"}};
  g.shapes = {{"x", {ir::kDynamic, 1, 8, 8}}, {"y", {ir::kDynamic, 10}}};

  Node conv;
  conv.name = "conv1";
  conv.op = "Conv";
  conv.inputs = {"x"};
  conv.outputs = {"c1"};
  conv.attrs["kernel_shape"] = std::vector<int64_t>{3, 3};
  conv.attrs["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  conv.attrs["group"] = int64_t{1};
  conv.attrs["alpha"] = 0.1;  // not exactly representable: needs full precision in the header
  conv.attrs["mode"] = std::string("constant \"quoted\" \\ /");
  conv.attrs["scales"] =
      std::vector<double>{0.5, 1.0 / 3.0, -2.5e-300, std::numeric_limits<double>::infinity()};
  conv.attrs["empty"] = std::vector<int64_t>{};
  conv.attrs["big"] = int64_t{-9007199254740993};
  Param w;
  w.value = at::randn({4, 1, 3, 3});
  w.mask = (at::rand({4, 1, 3, 3}) > 0.8).to(at::kFloat);  // about 80% pruned
  conv.params["weight"] = w;
  Param b;
  b.value = at::randn({4});
  conv.params["bias"] = b;
  g.nodes.push_back(conv);

  Node bn;
  bn.name = "bn1";
  bn.op = "BatchNorm";
  bn.inputs = {"c1"};
  bn.outputs = {"b1"};
  bn.attrs["epsilon"] = 1e-5;
  Param rm;
  rm.value = at::zeros({4});
  rm.trainable = false;
  bn.params["running_mean"] = rm;
  Param rv;
  rv.value = at::ones({4}, at::kDouble);  // a non-float32 float tensor: stored raw
  rv.trainable = false;
  bn.params["running_var"] = rv;
  g.nodes.push_back(bn);

  Node reshape;
  reshape.name = "flatten";
  reshape.op = "Reshape";
  reshape.inputs = {"b1"};
  reshape.outputs = {"f"};
  Param shape;
  shape.value = at::tensor({int64_t{-1}, int64_t{256}}, at::kLong);
  shape.trainable = false;
  reshape.params["shape"] = shape;
  g.nodes.push_back(reshape);

  Node fc;
  fc.name = "fc";
  fc.op = "Linear";
  fc.inputs = {"f"};
  fc.outputs = {"y"};
  QuantSpec q;
  q.bits = 4;
  q.axis = 0;
  q.narrow_range = true;
  q.rounding = "half_up";
  q.scale = at::rand({10}) * 0.1 + 0.01;
  q.zero_point = at::zeros({10}, at::kLong);
  Param fw;
  fw.value = fake_quantized(at::randn({10, 256}), q.scale, -7, 7);
  fw.qspec = q;
  fc.params["weight"] = fw;
  Param fb;
  fb.value = at::randn({10});
  fc.params["bias"] = fb;
  QuantSpec oq;
  oq.bits = 8;
  oq.is_signed = false;
  oq.symmetric = false;
  oq.power_of_two = true;
  oq.scale = at::tensor({0.0625f});
  oq.zero_point = at::tensor({int64_t{128}});
  fc.out_qspec = oq;
  g.nodes.push_back(fc);
  return g;
}

void expect_same_tensor(const at::Tensor& a, const at::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.defined(), b.defined()) << what;
  if (!a.defined()) return;
  EXPECT_EQ(a.scalar_type(), b.scalar_type()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(at::equal(a, b)) << what;
}

bool same_attr(const Attr& a, const Attr& b) {
  if (a.index() != b.index()) return false;
  if (auto x = std::get_if<std::vector<double>>(&a)) {
    const auto& y = std::get<std::vector<double>>(b);
    if (x->size() != y.size()) return false;
    for (size_t i = 0; i < x->size(); ++i)
      if (!((*x)[i] == y[i] || (std::isnan((*x)[i]) && std::isnan(y[i])))) return false;
    return true;
  }
  return a == b;
}

void expect_same_qspec(const std::optional<QuantSpec>& a, const std::optional<QuantSpec>& b,
                       const std::string& what) {
  ASSERT_EQ(a.has_value(), b.has_value()) << what;
  if (!a) return;
  EXPECT_EQ(a->bits, b->bits) << what;
  EXPECT_EQ(a->is_signed, b->is_signed) << what;
  EXPECT_EQ(a->symmetric, b->symmetric) << what;
  EXPECT_EQ(a->narrow_range, b->narrow_range) << what;
  EXPECT_EQ(a->axis, b->axis) << what;
  EXPECT_EQ(a->rounding, b->rounding) << what;
  EXPECT_EQ(a->power_of_two, b->power_of_two) << what;
  expect_same_tensor(a->scale, b->scale, what + " scale");
  expect_same_tensor(a->zero_point, b->zero_point, what + " zero_point");
}

// `want` is the graph as saved, with masks already applied to the values.
void expect_same_graph(const Graph& want, const Graph& got) {
  EXPECT_EQ(want.name, got.name);
  ASSERT_EQ(want.inputs.size(), got.inputs.size());
  for (size_t i = 0; i < want.inputs.size(); ++i) {
    EXPECT_EQ(want.inputs[i].name, got.inputs[i].name);
    EXPECT_EQ(want.inputs[i].shape, got.inputs[i].shape);
    EXPECT_EQ(want.inputs[i].dtype, got.inputs[i].dtype);
  }
  EXPECT_EQ(want.outputs, got.outputs);
  EXPECT_EQ(want.metadata, got.metadata);
  EXPECT_EQ(want.shapes, got.shapes);
  ASSERT_EQ(want.nodes.size(), got.nodes.size());
  for (size_t i = 0; i < want.nodes.size(); ++i) {
    const Node& a = want.nodes[i];
    const Node& b = got.nodes[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.op, b.op);
    EXPECT_EQ(a.inputs, b.inputs);
    EXPECT_EQ(a.outputs, b.outputs);
    ASSERT_EQ(a.attrs.size(), b.attrs.size()) << a.name;
    for (const auto& [k, v] : a.attrs) {
      ASSERT_TRUE(b.attrs.count(k)) << a.name << "." << k;
      EXPECT_TRUE(same_attr(v, b.attrs.at(k))) << a.name << "." << k;
    }
    ASSERT_EQ(a.params.size(), b.params.size()) << a.name;
    for (const auto& [k, p] : a.params) {
      const std::string what = a.name + "/" + k;
      ASSERT_TRUE(b.params.count(k)) << what;
      const Param& q = b.params.at(k);
      expect_same_tensor(p.value, q.value, what);
      ASSERT_EQ(p.mask.has_value(), q.mask.has_value()) << what;
      if (p.mask) expect_same_tensor(*p.mask, *q.mask, what + " mask");
      EXPECT_EQ(p.trainable, q.trainable) << what;
      expect_same_qspec(p.qspec, q.qspec, what + " qspec");
    }
    expect_same_qspec(a.out_qspec, b.out_qspec, a.name + " out_qspec");
  }
}

// What the loader promises for masked parameters: value with the mask applied, mask = value != 0.
Graph expected_after_load(Graph g) {
  for (auto& n : g.nodes)
    for (auto& [k, p] : n.params)
      if (p.mask) {
        p.value = p.value * *p.mask;
        p.mask = p.value.ne(0).to(at::kFloat);
      }
  return g;
}

Graph single_param_graph(Param p, const std::string& op = "Linear") {
  Graph g;
  g.name = "one";
  g.inputs.push_back({"x", {ir::kDynamic, 4}, at::kFloat});
  g.outputs = {"y"};
  Node n;
  n.name = "layer";
  n.op = op;
  n.inputs = {"x"};
  n.outputs = {"y"};
  n.params["weight"] = std::move(p);
  g.nodes.push_back(n);
  return g;
}

bool header_has(const std::string& file, const std::string& needle) {
  return read_bytes(file).find(needle) != std::string::npos;
}

TEST(SqzCheckpoint, RoundTripKeepsEverything) {
  TempDir dir;
  const Graph g = make_graph();
  const std::string path = dir.file("model.sqz");
  save_sqz(g, path);
  const Graph loaded = load_sqz(path);
  expect_same_graph(expected_after_load(g), loaded);
  // The 4-bit per-channel weight is packed, the 80% pruned conv weight sparse.
  EXPECT_TRUE(header_has(path,
                         "\"name\":\"fc/weight\",\"dtype\":\"float32\",\"shape\":[10,256],"
                         "\"encoding\":\"packed_int\",\"bits\":4"));
  EXPECT_TRUE(header_has(path,
                         "\"name\":\"conv1/weight\",\"dtype\":\"float32\",\"shape\":[4,1,3,3],"
                         "\"encoding\":\"sparse_f32\""));
  EXPECT_TRUE(header_has(path, "\"masked\":true"));
  EXPECT_TRUE(header_has(path, "\"name\":\"flatten/shape\",\"dtype\":\"int64\""));
  // Saving the loaded graph again gives the same bytes: nothing drifts.
  save_sqz(loaded, dir.file("again.sqz"));
  EXPECT_EQ(read_bytes(path), read_bytes(dir.file("again.sqz")));
}

TEST(SqzCheckpoint, EmptyAndScalarTensors) {
  TempDir dir;
  Graph g = single_param_graph(Param{at::empty({0, 3}), std::nullopt, std::nullopt, true});
  g.nodes[0].params["scalar"] = Param{at::scalar_tensor(2.5), std::nullopt, std::nullopt, false};
  g.nodes[0].params["missing"] = Param{};
  g.nodes[0].params["flags"] =
      Param{at::tensor({1, 0, 1}, at::kByte).to(at::kBool), std::nullopt, std::nullopt, false};
  save_sqz(g, dir.file("m.sqz"));
  expect_same_graph(g, load_sqz(dir.file("m.sqz")));
}

TEST(SqzCheckpoint, MaskIsAppliedAndRecoveredFromZeros) {
  TempDir dir;
  Param p;
  p.value = at::tensor({1.0f, 2.0f, 3.0f, 0.0f, 5.0f, 6.0f});
  p.mask = at::tensor({1.0f, 0.0f, 1.0f, 1.0f, 0.0f, 1.0f});
  save_sqz(single_param_graph(p), dir.file("m.sqz"));
  const Graph loaded = load_sqz(dir.file("m.sqz"));
  const Param& q = loaded.nodes[0].params.at("weight");
  EXPECT_TRUE(at::equal(q.value, at::tensor({1.0f, 0.0f, 3.0f, 0.0f, 0.0f, 6.0f})));
  ASSERT_TRUE(q.mask.has_value());
  // A kept weight that happened to be zero comes back pruned: the documented approximation.
  EXPECT_TRUE(at::equal(*q.mask, at::tensor({1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f})));
}

TEST(SqzCheckpoint, SparseChosenAt80PercentZerosAndFileSizeMatches) {
  TempDir dir;
  at::manual_seed(1);
  const int64_t n = 400000;
  at::Tensor v = at::randn({400, 1000});
  v.masked_fill_(at::rand({400, 1000}) < 0.8, 0.0);
  const int64_t nnz = v.ne(0).sum().item<int64_t>();
  const Graph g = single_param_graph(Param{v, std::nullopt, std::nullopt, true});
  const int64_t size = stored_size_bytes(g);
  EXPECT_EQ(size, n / 8 + 4 * nnz);
  EXPECT_LT(size, 4 * n / 2);
  const std::string path = dir.file("sparse.sqz");
  save_sqz(g, path);
  const int64_t file_size = static_cast<int64_t>(fs::file_size(path));
  EXPECT_GE(file_size, size);
  EXPECT_LE(file_size - size, 4096);
  EXPECT_TRUE(header_has(path, "\"encoding\":\"sparse_f32\""));
  EXPECT_TRUE(at::equal(load_sqz(path).nodes[0].params.at("weight").value, v));
  std::printf(
      "[ info ] 80%%-sparse 400k float tensor: stored %lld bytes, file %lld bytes (dense %lld)\n",
      static_cast<long long>(size), static_cast<long long>(file_size),
      static_cast<long long>(4 * n));
}

TEST(SqzCheckpoint, DenseChosenForDenseTensors) {
  at::manual_seed(2);
  const Graph g = single_param_graph(Param{at::randn({100, 10}), std::nullopt, std::nullopt, true});
  EXPECT_EQ(stored_size_bytes(g), 4000);
  // Sparse pays off from 1/32 zeros on: at 2% the bitmap costs more than it saves, at 10% less.
  at::Tensor v = at::randn({1000});
  v.narrow(0, 0, 20).zero_();
  EXPECT_EQ(stored_size_bytes(single_param_graph(Param{v, std::nullopt, std::nullopt, true})),
            4000);
  v.narrow(0, 0, 100).zero_();
  EXPECT_EQ(stored_size_bytes(single_param_graph(Param{v, std::nullopt, std::nullopt, true})),
            125 + 4 * 900);
}

TEST(SqzCheckpoint, PackedIntPerChannelAndPerTensor) {
  TempDir dir;
  at::manual_seed(3);
  for (int bits : {2, 3, 4, 5, 8, 16}) {
    for (bool per_channel : {true, false}) {
      for (bool is_signed : {true, false}) {
        QuantSpec q;
        q.bits = bits;
        q.is_signed = is_signed;
        q.axis = per_channel ? 1 : -1;
        const int64_t channels = per_channel ? 6 : 1;
        q.scale = at::rand({channels}) * 0.05 + 0.001;
        const int64_t levels = int64_t(1) << bits;
        const int64_t qmin = is_signed ? -levels / 2 : 0,
                      qmax = is_signed ? levels / 2 - 1 : levels - 1;
        q.zero_point = is_signed ? at::zeros({channels}, at::kLong)
                                 : at::full({channels}, levels / 2, at::kLong);
        // Channels along axis 1 of a [5, 6, 7] tensor.
        at::Tensor s = q.scale.view({1, channels, 1});
        at::Tensor z = q.zero_point.view({1, channels, 1}).to(at::kFloat);
        at::Tensor qv = ((at::randn({5, 6, 7}) * (levels / 4.0)).round() + z).clamp(qmin, qmax);
        at::Tensor w = (qv - z) * s;
        Param p{w, std::nullopt, q, true};
        const Graph g = single_param_graph(p);
        const std::string path = dir.file("p.sqz");
        save_sqz(g, path);
        SCOPED_TRACE(testing::Message()
                     << bits << " bits, per_channel " << per_channel << ", signed " << is_signed);
        EXPECT_TRUE(header_has(path, "\"encoding\":\"packed_int\"") ||
                    header_has(path, "\"encoding\":\"sparse_int\""));
        expect_same_graph(g, load_sqz(path));
        const int64_t side = channels * 4 + channels * 8;  // float32 scales, int64 zero points
        if (header_has(path, "\"encoding\":\"packed_int\"")) {
          EXPECT_EQ(stored_size_bytes(g), (210 * bits + 7) / 8 + side);
        }
      }
    }
  }
}

TEST(SqzCheckpoint, SparseIntForPrunedQuantizedWeights) {
  TempDir dir;
  at::manual_seed(4);
  QuantSpec q;
  q.bits = 4;
  q.axis = 0;
  q.scale = at::rand({64}) * 0.1 + 0.01;
  q.zero_point = at::zeros({64}, at::kLong);
  at::Tensor w = fake_quantized(at::randn({64, 500}), q.scale, -8, 7);
  w.masked_fill_(at::rand({64, 500}) < 0.9, 0.0);
  const int64_t n = w.numel(), nnz = w.ne(0).sum().item<int64_t>();
  const Graph g = single_param_graph(Param{w, std::nullopt, q, true});
  EXPECT_EQ(stored_size_bytes(g), (n + 7) / 8 + (nnz * 4 + 7) / 8 + 64 * 12);
  save_sqz(g, dir.file("s.sqz"));
  EXPECT_TRUE(header_has(dir.file("s.sqz"), "\"encoding\":\"sparse_int\""));
  expect_same_graph(g, load_sqz(dir.file("s.sqz")));
}

TEST(SqzCheckpoint, OffGridValuesFallBackToFloat) {
  QuantSpec q;
  q.bits = 8;
  q.scale = at::tensor({0.1f});
  q.zero_point = at::tensor({int64_t{0}});
  at::Tensor w = at::randn({100});  // not multiples of the scale
  EXPECT_EQ(stored_size_bytes(single_param_graph(Param{w, std::nullopt, q, true})), 400 + 4 + 8);
  // On the grid but outside the 8-bit range: also float.
  at::Tensor big = at::full({100}, 300.0f) * q.scale;
  big = (big / q.scale).round() * q.scale;
  EXPECT_EQ(stored_size_bytes(single_param_graph(Param{big, std::nullopt, q, true})), 400 + 12);
}

TEST(SqzCheckpoint, IntegerStorageWithQspecIsPacked) {
  TempDir dir;
  QuantSpec q;
  q.bits = 4;
  q.scale = at::tensor({0.5f});
  at::Tensor w = at::randint(-8, 8, {33}, at::kChar);
  const Graph g = single_param_graph(Param{w, std::nullopt, q, true});
  EXPECT_EQ(stored_size_bytes(g), (33 * 4 + 7) / 8 + 4);
  save_sqz(g, dir.file("i.sqz"));
  expect_same_graph(g, load_sqz(dir.file("i.sqz")));
}

// --- damage -----------------------------------------------------------------------------------

template <typename F>
std::string input_error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

class SqzDamage : public testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("model.sqz");
    save_sqz(make_graph(), path_);
    good_ = read_bytes(path_);
  }
  std::string load_error(const std::string& bytes) {
    const std::string p = dir_.file("damaged.sqz");
    write_bytes(p, bytes);
    return input_error_of([&] { load_sqz(p); });
  }
  TempDir dir_;
  std::string path_;
  std::string good_;
};

TEST_F(SqzDamage, BadMagic) {
  std::string b = good_;
  b[0] = 'X';
  EXPECT_NE(load_error(b).find("not a squeeze checkpoint (bad magic)"), std::string::npos);
  EXPECT_NE(load_error("hello").find("bad magic"), std::string::npos);
  EXPECT_NE(load_error("").find("bad magic"), std::string::npos);
  const std::string e = load_error(b);
  EXPECT_NE(e.find("damaged.sqz"), std::string::npos) << e;  // names the file
}

TEST_F(SqzDamage, WrongVersion) {
  std::string b = good_;
  b[8] = 7;
  EXPECT_NE(load_error(b).find("unsupported format version 7"), std::string::npos);
}

TEST_F(SqzDamage, Truncated) {
  const std::string half = load_error(good_.substr(0, good_.size() / 2));
  EXPECT_NE(half.find("truncated"), std::string::npos) << half;
  const std::string tail = load_error(good_.substr(0, good_.size() - 3));
  EXPECT_NE(tail.find("truncated"), std::string::npos) << tail;
  EXPECT_NE(load_error(good_.substr(0, 12)).find("truncated"), std::string::npos);
}

TEST_F(SqzDamage, FlippedByteFailsChecksum) {
  std::string b = good_;
  b[b.size() - 20] ^= 0x10;  // inside the payloads
  EXPECT_NE(load_error(b).find("checksum mismatch: file is damaged"), std::string::npos);
  std::string h = good_;
  h[40] ^= 0x01;  // inside the JSON header
  EXPECT_NE(load_error(h).find("checksum mismatch"), std::string::npos) << load_error(h);
}

TEST_F(SqzDamage, MissingFileAndDirectory) {
  EXPECT_NE(input_error_of([&] { load_sqz(dir_.file("nope.sqz")); }).find("nope.sqz"),
            std::string::npos);
  EXPECT_NE(input_error_of([&] { load_sqz(dir_.path()); }).find("not a file"), std::string::npos);
}

// Random truncations and byte flips: every outcome is a loaded graph or an InputError.
TEST_F(SqzDamage, RandomDamageNeverCrashes) {
  std::mt19937 rng(12345);
  int errors = 0;
  for (int it = 0; it < 300; ++it) {
    std::string b = good_;
    if (rng() % 3 == 0) {
      b.resize(rng() % b.size());
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) b[rng() % b.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    const std::string p = dir_.file("fuzz.sqz");
    write_bytes(p, b);
    try {
      load_sqz(p);
    } catch (const InputError&) {
      ++errors;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << it << ": not an InputError: " << e.what();
    }
  }
  EXPECT_GT(errors, 250);
}

// Rebuilds a file around a new header with a valid checksum, so the damage reaches the parser.
std::string rebuild(const std::string& good, const std::string& header,
                    const std::string& payload) {
  std::string out = good.substr(0, 12);
  const uint64_t len = header.size();
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += header;
  out.resize((out.size() + 63) / 64 * 64, '\0');
  out += payload;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : header + payload) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  out.append(reinterpret_cast<const char*>(&h), 8);
  return out;
}

TEST_F(SqzDamage, HeaderAndPayloadDamageBehindAValidChecksum) {
  uint64_t hlen;
  std::memcpy(&hlen, good_.data() + 12, 8);
  const std::string header = good_.substr(20, hlen);
  const size_t payload_start = (20 + hlen + 63) / 64 * 64;
  const std::string payload = good_.substr(payload_start, good_.size() - 8 - payload_start);
  // The rebuilt undamaged file loads.
  write_bytes(dir_.file("r.sqz"), rebuild(good_, header, payload));
  EXPECT_NO_THROW(load_sqz(dir_.file("r.sqz")));

  std::mt19937 rng(777);
  const std::string alphabet = "0123456789-{}[]\",:.eatrnu9";
  int loaded = 0;
  for (int it = 0; it < 400; ++it) {
    std::string h = header, p = payload;
    if (it % 4 == 3 && !p.empty()) {
      p[rng() % p.size()] ^= static_cast<char>(1 + rng() % 255);
    } else {
      const int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng() % h.size();
        switch (rng() % 3) {
          case 0:
            h[at] = alphabet[rng() % alphabet.size()];
            break;
          case 1:
            h.insert(at, 1, alphabet[rng() % alphabet.size()]);
            break;
          default:
            h.erase(at, 1);
            break;
        }
      }
    }
    write_bytes(dir_.file("f.sqz"), rebuild(good_, h, p));
    try {
      load_sqz(dir_.file("f.sqz"));
      ++loaded;
    } catch (const InputError&) {
    } catch (const std::exception& e) {
      FAIL() << "iteration " << it << ": not an InputError: " << e.what();
    }
  }
  EXPECT_GT(loaded, 0);
}

TEST_F(SqzDamage, OutOfBoundsTensorIsNamed) {
  uint64_t hlen;
  std::memcpy(&hlen, good_.data() + 12, 8);
  std::string header = good_.substr(20, hlen);
  const size_t payload_start = (20 + hlen + 63) / 64 * 64;
  const std::string payload = good_.substr(payload_start, good_.size() - 8 - payload_start);
  const std::string key = "\"name\":\"conv1/weight\"";
  size_t at = header.find(key);
  ASSERT_NE(at, std::string::npos);
  at = header.find("\"offset\":", at);
  header.replace(at, std::strlen("\"offset\":"), "\"offset\":99999999");
  write_bytes(dir_.file("oob.sqz"), rebuild(good_, header, payload));
  const std::string e = input_error_of([&] { load_sqz(dir_.file("oob.sqz")); });
  EXPECT_NE(e.find("tensor conv1/weight payload out of bounds"), std::string::npos) << e;
}

// --- atomic writes -----------------------------------------------------------------------------

TEST(SqzAtomic, NoTemporaryFileLeft) {
  TempDir dir;
  save_sqz(make_graph(), dir.file("a.sqz"));
  save_sqz(make_graph(), dir.file("a.sqz"));  // replaces
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.sqz"});
}

TEST(SqzAtomic, FailuresThrowAndLeaveNothingBehind) {
  TempDir dir;
  const Graph g = make_graph();
  fs::create_directory(dir.file("sub"));
  EXPECT_THROW(save_sqz(g, dir.file("sub")), Error);  // path is a directory
  EXPECT_TRUE(fs::is_directory(dir.file("sub")));
  // Missing folders are created (util/fs.h); a folder path through a regular file cannot be.
  write_bytes(dir.file("plain"), "x");
  EXPECT_THROW(save_sqz(g, dir.file("plain/dir/m.sqz")), UserError);
  std::vector<std::string> left = dir.entries();
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"plain", "sub"}));
}

TEST(SqzAtomic, ExistingFileUntouchedWhenWriteFails) {
  TempDir dir;
  const std::string path = dir.file("m.sqz");
  write_bytes(path, "previous contents");
  at::Tensor big = at::randn({100000});
  const Graph g = single_param_graph(Param{big, std::nullopt, std::nullopt, true});

  // A file size limit makes write() fail half way (EFBIG), even for root.
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string error;
  try {
    save_sqz(g, path);
  } catch (const Error& e) {
    error = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_NE(error.find("write failed"), std::string::npos) << error;
  EXPECT_EQ(read_bytes(path), "previous contents");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"m.sqz"});

  if (::geteuid() != 0) {  // root ignores directory permissions
    fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_THROW(save_sqz(g, path), Error);
    fs::permissions(dir.path(), fs::perms::owner_all);
    EXPECT_EQ(read_bytes(path), "previous contents");
  }
}

}  // namespace
}  // namespace squeeze::io
