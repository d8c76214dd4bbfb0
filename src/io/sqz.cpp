// The .sqz checkpoint writer and reader. Layout: include/squeeze/io/sqz.h.
//
// Header JSON (version 1):
//   {"format": "squeeze-checkpoint", "version": 1, "payload_bytes": N,
//    "graph": {"name", "inputs": [{"name", "shape", "dtype"}], "outputs", "metadata", "shapes",
//              "nodes": [{"name", "op", "inputs", "outputs",
//                         "attrs": {"k": {"int"|"float"|"string"|"ints"|"floats": v}},
//                         "params": {"weight": {"tensor": i, "trainable": b, "qspec": {...}}},
//                         "out_qspec": {...}}]},
//    "tensors": [{"name": "conv1/weight", "dtype", "shape", "encoding", "bits", "offset",
//                 "length", "nnz" (sparse), "masked" (param had a mask), "signed" (packed),
//                 "scale"/"zero_point"/"axis" (packed float: indices of the tensors that
//                 dequantize it)}]}
// A QuantSpec is {"bits", "signed", "symmetric", "narrow_range", "axis", "rounding",
// "power_of_two", "reduce_range" (optional, false when absent), "scale": i|null,
// "zero_point": i|null}; its scale and zero point are stored as
// small tensors of their own ("conv1/weight.scale").
//
// Bitmaps hold one bit per element, element i in bit i % 8 of byte i / 8. Packed integers are a
// little-endian bit stream: element j occupies bits [j*b, (j+1)*b), signed ones in two's
// complement. The trailer hashes the header bytes then the payload bytes; the padding between
// them must be zero.
#include "squeeze/io/sqz.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "squeeze/util/error.h"
#include "squeeze/util/memory.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/strings.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .sqz payloads are copied from memory as little-endian");

namespace squeeze::io {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kMagic[8] = {'S', 'Q', 'Z', 'C', 'K', 'P', 'T', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kPreambleBytes = 20;  // magic, version, header length
constexpr size_t kAlign = 64;
constexpr size_t kTrailerBytes = 8;
// Far beyond any model; keeps element counts and byte sizes clear of int64 overflow.
constexpr int64_t kMaxElements = int64_t(1) << 40;

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string fmt_shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
int64_t bytes_for_bits(int64_t bits) { return (bits + 7) / 8; }

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {{at::kFloat, "float32"}, {at::kDouble, "float64"},
                                 {at::kHalf, "float16"},  {at::kBFloat16, "bfloat16"},
                                 {at::kByte, "uint8"},    {at::kChar, "int8"},
                                 {at::kShort, "int16"},   {at::kInt, "int32"},
                                 {at::kLong, "int64"},    {at::kBool, "bool"}};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return nullptr;
}

std::optional<at::ScalarType> dtype_from_name(const std::string& s) {
  for (const auto& d : kDtypes)
    if (s == d.name) return d.type;
  return std::nullopt;
}

std::string dtype_list() {
  std::string out;
  for (const auto& d : kDtypes) out += std::string(out.empty() ? "" : ", ") + d.name;
  return out;
}

bool is_integral_dtype(at::ScalarType t) {
  return t == at::kByte || t == at::kChar || t == at::kShort || t == at::kInt || t == at::kLong;
}

bool valid_packed_bits(int64_t b) { return (b >= 2 && b <= 8) || b == 16; }

enum class Encoding { kDenseF32, kSparseF32, kPackedInt, kSparseInt, kRaw };

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::kDenseF32:
      return "dense_f32";
    case Encoding::kSparseF32:
      return "sparse_f32";
    case Encoding::kPackedInt:
      return "packed_int";
    case Encoding::kSparseInt:
      return "sparse_int";
    case Encoding::kRaw:
      return "raw";
  }
  return "?";
}

std::optional<Encoding> encoding_from_name(const std::string& s) {
  for (Encoding e : {Encoding::kDenseF32, Encoding::kSparseF32, Encoding::kPackedInt,
                     Encoding::kSparseInt, Encoding::kRaw})
    if (s == encoding_name(e)) return e;
  return std::nullopt;
}

bool is_int_encoding(Encoding e) { return e == Encoding::kPackedInt || e == Encoding::kSparseInt; }
bool is_sparse(Encoding e) { return e == Encoding::kSparseF32 || e == Encoding::kSparseInt; }

// Payload bytes of a tensor of n elements (nnz of them non-zero) under an encoding.
int64_t encoded_length(Encoding e, int64_t n, int64_t nnz, int64_t bits, int64_t elem_size) {
  switch (e) {
    case Encoding::kDenseF32:
      return 4 * n;
    case Encoding::kSparseF32:
      return bytes_for_bits(n) + 4 * nnz;
    case Encoding::kPackedInt:
      return bytes_for_bits(n * bits);
    case Encoding::kSparseInt:
      return bytes_for_bits(n) + bytes_for_bits(nnz * bits);
    case Encoding::kRaw:
      return n * elem_size;
  }
  return 0;
}

class BitWriter {
 public:
  explicit BitWriter(std::string& out) : out_(out) {}
  void put(uint64_t value, int bits) {
    acc_ |= (value & ((uint64_t(1) << bits) - 1)) << count_;
    count_ += bits;
    while (count_ >= 8) {
      out_.push_back(static_cast<char>(acc_ & 0xff));
      acc_ >>= 8;
      count_ -= 8;
    }
  }
  void flush() {
    if (count_ > 0) out_.push_back(static_cast<char>(acc_ & 0xff));
    acc_ = 0;
    count_ = 0;
  }

 private:
  std::string& out_;
  uint64_t acc_ = 0;
  int count_ = 0;
};

// Reads a bit stream whose byte length the caller has already checked.
class BitReader {
 public:
  explicit BitReader(const unsigned char* p) : p_(p) {}
  uint64_t get(int bits) {
    while (count_ < bits) {
      acc_ |= uint64_t(*p_++) << count_;
      count_ += 8;
    }
    uint64_t v = acc_ & ((uint64_t(1) << bits) - 1);
    acc_ >>= bits;
    count_ -= bits;
    return v;
  }

 private:
  const unsigned char* p_;
  uint64_t acc_ = 0;
  int count_ = 0;
};

void append_bitmap(std::string& out, const std::vector<bool>& nonzero) {
  std::string bytes(static_cast<size_t>(bytes_for_bits(static_cast<int64_t>(nonzero.size()))),
                    '\0');
  for (size_t i = 0; i < nonzero.size(); ++i)
    if (nonzero[i]) bytes[i / 8] = static_cast<char>(bytes[i / 8] | (1 << (i % 8)));
  out += bytes;
}

// Counts set bits among the first n bits; false if a bit beyond n is set (a damaged bitmap).
bool bitmap_popcount(const unsigned char* p, int64_t n, int64_t* count) {
  int64_t c = 0;
  const int64_t full = n / 8;
  for (int64_t i = 0; i < full; ++i) c += __builtin_popcount(p[i]);
  if (n % 8) {
    const unsigned keep = (1u << (n % 8)) - 1;
    if (p[full] & ~keep) return false;
    c += __builtin_popcount(p[full] & keep);
  }
  *count = c;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Atomic write


// ---------------------------------------------------------------------------------------------
// Planning: which tensors are stored and how. Shared by save_sqz and stored_size_bytes so the
// reported size is exactly what is written.

struct Entry {
  std::string name;
  at::Tensor tensor;  // contiguous, CPU, mask applied
  Encoding encoding = Encoding::kDenseF32;
  int bits = 32;
  bool is_signed = true;
  int64_t numel = 0;
  int64_t nnz = 0;
  int64_t length = 0;
  bool masked = false;
  // Packed encodings: the stored integers, in element order (all elements, zeros included).
  std::vector<int32_t> q;
  // Packed float tensors: the tensors that dequantize them.
  int64_t scale_index = -1, zero_point_index = -1, axis = -1;
};

struct Plan {
  std::vector<Entry> entries;
  Json graph;
};

at::Tensor prepared(const at::Tensor& t) { return t.detach().to(at::kCPU).contiguous(); }

int64_t nonzero_count(const at::Tensor& t) {
  return t.numel() == 0 ? 0 : t.ne(0).sum().item<int64_t>();
}

// The integers q with value == float(q - zero_point) * scale exactly for every element, in the
// b-bit container range; nullopt when the tensor is not already quantized on that grid.
std::optional<std::vector<int32_t>> exact_quantization(const at::Tensor& value,
                                                       const at::Tensor& scale,
                                                       const at::Tensor& zero_point, int64_t axis,
                                                       int bits, bool is_signed) {
  const int64_t n = value.numel();
  int64_t channels = 1, inner = 1;
  if (axis >= 0) {
    if (axis >= value.dim()) return std::nullopt;
    channels = value.size(axis);
    for (int64_t d = axis + 1; d < value.dim(); ++d) inner *= value.size(d);
  }
  const at::Tensor s = prepared(scale).to(at::kFloat).contiguous();
  at::Tensor z;
  if (zero_point.defined()) z = prepared(zero_point).to(at::kLong).contiguous();
  const int64_t ns = s.numel(), nz = z.defined() ? z.numel() : 1;
  if (!(ns == 1 || (axis >= 0 && ns == channels))) return std::nullopt;
  if (!(nz == 1 || (axis >= 0 && nz == channels))) return std::nullopt;
  const float* sp = s.data_ptr<float>();
  const int64_t* zp = z.defined() ? z.data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; i < ns; ++i)
    if (!std::isfinite(sp[i]) || sp[i] == 0.0f) return std::nullopt;

  const int64_t qmin = is_signed ? -(int64_t(1) << (bits - 1)) : 0;
  const int64_t qmax = is_signed ? (int64_t(1) << (bits - 1)) - 1 : (int64_t(1) << bits) - 1;
  const float* v = value.data_ptr<float>();
  std::vector<int32_t> q(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = axis >= 0 ? (i / inner) % channels : 0;
    const float sc = sp[ns == 1 ? 0 : c];
    const int64_t zc = zp ? zp[nz == 1 ? 0 : c] : 0;
    if (!std::isfinite(v[i])) return std::nullopt;
    const double r = std::nearbyint(static_cast<double>(v[i]) / static_cast<double>(sc));
    if (std::fabs(r) > 1e6) return std::nullopt;
    const int64_t qi = static_cast<int64_t>(r) + zc;
    if (qi < qmin || qi > qmax) return std::nullopt;
    // Must be the very expression load_sqz uses, so the round trip is exact.
    if (static_cast<float>(qi - zc) * sc != v[i]) return std::nullopt;
    q[static_cast<size_t>(i)] = static_cast<int32_t>(qi);
  }
  return q;
}

std::optional<std::vector<int32_t>> integers_in_range(const at::Tensor& value, int bits,
                                                      bool is_signed) {
  const at::Tensor v = value.to(at::kLong).contiguous();
  const int64_t* p = v.data_ptr<int64_t>();
  const int64_t qmin = is_signed ? -(int64_t(1) << (bits - 1)) : 0;
  const int64_t qmax = is_signed ? (int64_t(1) << (bits - 1)) - 1 : (int64_t(1) << bits) - 1;
  std::vector<int32_t> q(static_cast<size_t>(v.numel()));
  for (int64_t i = 0; i < v.numel(); ++i) {
    if (p[i] < qmin || p[i] > qmax) return std::nullopt;
    q[static_cast<size_t>(i)] = static_cast<int32_t>(p[i]);
  }
  return q;
}

class Planner {
 public:
  // Adds a tensor and returns its index in the table. `qspec`, when given, lets the tensor be
  // stored as packed integers; scale_index/zero_point_index are the entries dequantizing it.
  int64_t add(const std::string& name, const at::Tensor& value, const at::Tensor* mask,
              const ir::QuantSpec* qspec, int64_t scale_index, int64_t zero_point_index) {
    Entry e;
    e.name = name;
    at::Tensor t = prepared(value);
    if (!dtype_name(t.scalar_type()))
      throw UnsupportedError(msg("cannot save tensor ", name, ": dtype ", t.scalar_type(),
                                 " is not supported (supported: ", dtype_list(), ")"));
    if (mask) {
      const at::Tensor m = prepared(*mask);
      if (m.sizes() != t.sizes())
        throw Error(msg("cannot save tensor ", name, ": mask shape ", m.sizes(),
                        " differs from value shape ", t.sizes()));
      t = t.masked_fill(m.eq(0), 0).contiguous();
      e.masked = true;
    }
    e.tensor = t;
    e.numel = t.numel();
    const at::ScalarType dt = t.scalar_type();
    if (dt == at::kFloat || is_integral_dtype(dt)) e.nnz = nonzero_count(t);

    if (dt == at::kFloat) {
      e.encoding = Encoding::kDenseF32;
      e.bits = 32;
      if (encoded_length(Encoding::kSparseF32, e.numel, e.nnz, 0, 4) <
          encoded_length(Encoding::kDenseF32, e.numel, e.nnz, 0, 4))
        e.encoding = Encoding::kSparseF32;
      if (qspec && valid_packed_bits(qspec->bits) && qspec->scale.defined()) {
        auto q = exact_quantization(t, qspec->scale, qspec->zero_point, qspec->axis, qspec->bits,
                                    qspec->is_signed);
        if (q) {
          e.q = std::move(*q);
          e.bits = qspec->bits;
          e.is_signed = qspec->is_signed;
          e.scale_index = scale_index;
          e.zero_point_index = zero_point_index;
          e.axis = qspec->axis >= 0 ? qspec->axis : -1;
          e.encoding = Encoding::kPackedInt;
        }
      }
    } else if (is_integral_dtype(dt) && qspec && valid_packed_bits(qspec->bits)) {
      // Integer storage of a quantized tensor: packed as is, loaded back with its dtype.
      auto q = integers_in_range(t, qspec->bits, qspec->is_signed);
      e.encoding = Encoding::kRaw;
      if (q) {
        e.q = std::move(*q);
        e.bits = qspec->bits;
        e.is_signed = qspec->is_signed;
        e.encoding = Encoding::kPackedInt;
      }
    } else {
      e.encoding = Encoding::kRaw;
    }
    if (e.encoding == Encoding::kRaw) e.bits = static_cast<int>(t.element_size() * 8);
    if (e.encoding == Encoding::kPackedInt &&
        encoded_length(Encoding::kSparseInt, e.numel, e.nnz, e.bits, 0) <
            encoded_length(Encoding::kPackedInt, e.numel, e.nnz, e.bits, 0))
      e.encoding = Encoding::kSparseInt;
    e.length = encoded_length(e.encoding, e.numel, e.nnz, e.bits, t.element_size());
    entries_.push_back(std::move(e));
    return static_cast<int64_t>(entries_.size()) - 1;
  }

  std::vector<Entry>& entries() { return entries_; }

 private:
  std::vector<Entry> entries_;
};

Json shape_json(at::IntArrayRef sizes) {
  Json j = Json::array();
  for (int64_t s : sizes) j.push_back(s);
  return j;
}

Json attr_json(const ir::Attr& a) {
  auto float_json = [](double d) -> Json {
    if (std::isfinite(d)) return d;
    return std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf");
  };
  Json j = Json::object();
  if (auto p = std::get_if<int64_t>(&a)) {
    j["int"] = *p;
  } else if (auto p = std::get_if<double>(&a)) {
    j["float"] = float_json(*p);
  } else if (auto p = std::get_if<std::string>(&a)) {
    j["string"] = *p;
  } else if (auto p = std::get_if<std::vector<int64_t>>(&a)) {
    j["ints"] = *p;
  } else if (auto p = std::get_if<std::vector<double>>(&a)) {
    Json arr = Json::array();
    for (double d : *p) arr.push_back(float_json(d));
    j["floats"] = arr;
  }
  return j;
}

Json qspec_json(Planner& planner, const std::string& owner, const ir::QuantSpec& q,
                int64_t* scale_index, int64_t* zero_point_index) {
  *scale_index =
      q.scale.defined() ? planner.add(owner + ".scale", q.scale, nullptr, nullptr, -1, -1) : -1;
  *zero_point_index = q.zero_point.defined() ? planner.add(owner + ".zero_point", q.zero_point,
                                                           nullptr, nullptr, -1, -1)
                                             : -1;
  Json j = Json::object();
  j["bits"] = q.bits;
  j["signed"] = q.is_signed;
  j["symmetric"] = q.symmetric;
  j["narrow_range"] = q.narrow_range;
  j["axis"] = q.axis;
  j["rounding"] = q.rounding;
  j["power_of_two"] = q.power_of_two;
  if (q.reduce_range) j["reduce_range"] = true;
  j["scale"] = *scale_index >= 0 ? Json(*scale_index) : Json(nullptr);
  j["zero_point"] = *zero_point_index >= 0 ? Json(*zero_point_index) : Json(nullptr);
  return j;
}

Plan make_plan(const ir::Graph& graph) {
  Planner planner;
  Json g = Json::object();
  g["name"] = graph.name;
  Json inputs = Json::array();
  for (const auto& in : graph.inputs) {
    const char* dt = dtype_name(in.dtype);
    if (!dt)
      throw UnsupportedError(msg("cannot save graph input ", in.name, ": dtype ", in.dtype,
                                 " is not supported (supported: ", dtype_list(), ")"));
    inputs.push_back({{"name", in.name}, {"shape", in.shape}, {"dtype", dt}});
  }
  g["inputs"] = inputs;
  g["outputs"] = graph.outputs;
  Json metadata = Json::object();
  for (const auto& [k, v] : graph.metadata) metadata[k] = v;
  g["metadata"] = metadata;
  Json shapes = Json::object();
  for (const auto& [k, v] : graph.shapes) shapes[k] = v;
  g["shapes"] = shapes;

  Json nodes = Json::array();
  for (const auto& node : graph.nodes) {
    Json n = Json::object();
    n["name"] = node.name;
    n["op"] = node.op;
    n["inputs"] = node.inputs;
    n["outputs"] = node.outputs;
    Json attrs = Json::object();
    for (const auto& [k, a] : node.attrs) attrs[k] = attr_json(a);
    n["attrs"] = attrs;
    Json params = Json::object();
    for (const auto& [pname, p] : node.params) {
      const std::string full = node.name + "/" + pname;
      Json pj = Json::object();
      int64_t scale_index = -1, zero_point_index = -1;
      Json qj;
      if (p.qspec) qj = qspec_json(planner, full, *p.qspec, &scale_index, &zero_point_index);
      if (p.value.defined()) {
        const at::Tensor* mask = p.mask && p.mask->defined() ? &*p.mask : nullptr;
        pj["tensor"] = planner.add(full, p.value, mask, p.qspec ? &*p.qspec : nullptr, scale_index,
                                   zero_point_index);
      } else {
        pj["tensor"] = nullptr;
      }
      pj["trainable"] = p.trainable;
      if (p.qspec) pj["qspec"] = qj;
      params[pname] = pj;
    }
    n["params"] = params;
    if (node.out_qspec) {
      int64_t s = -1, z = -1;
      n["out_qspec"] = qspec_json(planner, node.name + "/output", *node.out_qspec, &s, &z);
    }
    nodes.push_back(n);
  }
  g["nodes"] = nodes;
  return Plan{std::move(planner.entries()), std::move(g)};
}

void encode(const Entry& e, std::string& out) {
  const size_t start = out.size();
  const at::Tensor& t = e.tensor;
  const char* raw = static_cast<const char*>(t.data_ptr());
  switch (e.encoding) {
    case Encoding::kDenseF32:
    case Encoding::kRaw:
      if (e.numel > 0) out.append(raw, static_cast<size_t>(e.numel * t.element_size()));
      break;
    case Encoding::kSparseF32: {
      const float* v = t.data_ptr<float>();
      std::vector<bool> nz(static_cast<size_t>(e.numel));
      for (int64_t i = 0; i < e.numel; ++i) nz[i] = v[i] != 0.0f;
      append_bitmap(out, nz);
      for (int64_t i = 0; i < e.numel; ++i)
        if (nz[i]) out.append(reinterpret_cast<const char*>(&v[i]), 4);
      break;
    }
    case Encoding::kPackedInt: {
      BitWriter w(out);
      for (int32_t q : e.q) w.put(static_cast<uint64_t>(static_cast<int64_t>(q)), e.bits);
      w.flush();
      break;
    }
    case Encoding::kSparseInt: {
      // Zero values are exactly the elements whose q equals the zero point (value = 0 * scale).
      const at::Tensor nzt = t.ne(0).contiguous();
      const bool* nzp = nzt.data_ptr<bool>();
      std::vector<bool> nz(nzp, nzp + e.numel);
      append_bitmap(out, nz);
      BitWriter w(out);
      for (int64_t i = 0; i < e.numel; ++i)
        if (nz[i]) w.put(static_cast<uint64_t>(static_cast<int64_t>(e.q[i])), e.bits);
      w.flush();
      break;
    }
  }
  SQZ_ASSERT(static_cast<int64_t>(out.size() - start) == e.length, "tensor ", e.name,
             " encoded to ", out.size() - start, " bytes, planned ", e.length);
}

// ---------------------------------------------------------------------------------------------
// Loading

class Loader {
 public:
  explicit Loader(std::string path) : path_(std::move(path)) {}

  ir::Graph load();

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(msg(path_, ": ", what));
  }

  // Typed header accessors; `where` names the place in the header for the message.
  const Json& field(const Json& obj, const char* key, const std::string& where) const {
    if (!obj.is_object()) fail(msg("malformed header: ", where, " is not an object"));
    auto it = obj.find(key);
    if (it == obj.end()) fail(msg("malformed header: ", where, " has no \"", key, "\""));
    return *it;
  }
  int64_t as_int(const Json& j, const std::string& where) const {
    if (j.is_number_unsigned()) {
      if (j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        fail(msg("malformed header: ", where, " is out of range"));
      return static_cast<int64_t>(j.get<uint64_t>());
    }
    if (!j.is_number_integer()) fail(msg("malformed header: ", where, " is not an integer"));
    return j.get<int64_t>();
  }
  int64_t as_count(const Json& j, const std::string& where) const {
    const int64_t v = as_int(j, where);
    if (v < 0) fail(msg("malformed header: ", where, " is negative (", v, ")"));
    return v;
  }
  double as_double(const Json& j, const std::string& where) const {
    if (j.is_number()) return j.get<double>();
    if (j.is_string()) {
      const auto& s = j.get_ref<const std::string&>();
      if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
      if (s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-inf") return -std::numeric_limits<double>::infinity();
    }
    fail(msg("malformed header: ", where, " is not a number"));
  }
  std::string as_string(const Json& j, const std::string& where) const {
    if (!j.is_string()) fail(msg("malformed header: ", where, " is not a string"));
    return j.get<std::string>();
  }
  bool as_bool(const Json& j, const std::string& where) const {
    if (!j.is_boolean()) fail(msg("malformed header: ", where, " is not true/false"));
    return j.get<bool>();
  }
  const Json& as_array(const Json& j, const std::string& where) const {
    if (!j.is_array()) fail(msg("malformed header: ", where, " is not a list"));
    return j;
  }
  const Json& as_object(const Json& j, const std::string& where) const {
    if (!j.is_object()) fail(msg("malformed header: ", where, " is not an object"));
    return j;
  }
  std::vector<int64_t> as_ints(const Json& j, const std::string& where) const {
    std::vector<int64_t> out;
    for (const auto& x : as_array(j, where)) out.push_back(as_int(x, where));
    return out;
  }
  std::vector<std::string> as_strings(const Json& j, const std::string& where) const {
    std::vector<std::string> out;
    for (const auto& x : as_array(j, where)) out.push_back(as_string(x, where));
    return out;
  }
  at::ScalarType as_dtype(const Json& j, const std::string& where) const {
    const std::string s = as_string(j, where);
    auto t = dtype_from_name(s);
    if (!t)
      fail(msg("malformed header: ", where, " has unknown dtype \"", s, "\" (known: ", dtype_list(),
               ")"));
    return *t;
  }
  at::Tensor tensor_ref(const Json& j, const std::string& where) const {
    const int64_t i = as_int(j, where);
    if (i < 0 || i >= static_cast<int64_t>(tensors_.size()))
      fail(msg("malformed header: ", where, " refers to tensor ", i, " but the table has ",
               tensors_.size()));
    return tensors_[static_cast<size_t>(i)];
  }

  void check_preamble();
  void parse_header();
  void decode_tensors();
  at::Tensor decode(size_t index);
  ir::Graph build_graph();
  ir::Attr parse_attr(const Json& j, const std::string& where) const;
  ir::QuantSpec parse_qspec(const Json& j, const std::string& where) const;

  struct TableEntry {
    std::string name;
    at::ScalarType dtype = at::kFloat;
    std::vector<int64_t> shape;
    int64_t numel = 1;
    Encoding encoding = Encoding::kDenseF32;
    int bits = 32;
    bool is_signed = true;
    int64_t offset = 0, length = 0, nnz = 0;
    bool masked = false;
    int64_t scale = -1, zero_point = -1, axis = -1;
  };

  std::string path_;
  std::string file_;
  uint64_t header_len_ = 0;
  size_t payload_start_ = 0;
  uint64_t payload_len_ = 0;
  Json header_;
  std::vector<TableEntry> table_;
  std::vector<at::Tensor> tensors_;
  std::vector<bool> masked_;
};

void Loader::check_preamble() {
  const size_t size = file_.size();
  if (size < sizeof kMagic) {
    if (size > 0 && std::memcmp(file_.data(), kMagic, size) == 0)
      fail(msg("truncated: file has ", size, " bytes, a checkpoint needs at least ",
               kPreambleBytes + kTrailerBytes));
    fail("not a squeeze checkpoint (bad magic)");
  }
  if (std::memcmp(file_.data(), kMagic, sizeof kMagic) != 0)
    fail("not a squeeze checkpoint (bad magic)");
  if (size < kPreambleBytes)
    fail(msg("truncated: file has ", size, " bytes, a checkpoint needs at least ",
             kPreambleBytes + kTrailerBytes));
  uint32_t version;
  std::memcpy(&version, file_.data() + 8, 4);
  if (version != kVersion)
    fail(msg("unsupported format version ", version, " (this build reads version ", kVersion, ")"));
  std::memcpy(&header_len_, file_.data() + 12, 8);
  if (header_len_ > size || align_up(kPreambleBytes + header_len_) + kTrailerBytes > size)
    fail(msg("truncated: header says ", header_len_, " bytes, file has ", size));
  payload_start_ = align_up(kPreambleBytes + header_len_);
  payload_len_ = size - kTrailerBytes - payload_start_;
}

void Loader::parse_header() {
  const char* h = file_.data() + kPreambleBytes;
  uint64_t hash = fnv1a64(h, header_len_);
  hash = fnv1a64(file_.data() + payload_start_, payload_len_, hash);
  uint64_t stored;
  std::memcpy(&stored, file_.data() + file_.size() - kTrailerBytes, 8);
  const bool hash_ok = hash == stored;

  try {
    header_ = Json::parse(h, h + header_len_);
  } catch (const nlohmann::json::exception& e) {
    if (!hash_ok) fail("checksum mismatch: file is damaged");
    fail(msg("header is not valid JSON: ", e.what()));
  }
  // A truncated or extended file is reported as such rather than as a bad checksum.
  if (header_.is_object() && header_.contains("payload_bytes") &&
      header_["payload_bytes"].is_number_unsigned()) {
    const uint64_t want = header_["payload_bytes"].get<uint64_t>();
    if (want != payload_len_) {
      const uint64_t want_total = want > UINT64_MAX - payload_start_ - kTrailerBytes
                                      ? UINT64_MAX
                                      : payload_start_ + want + kTrailerBytes;
      fail(msg(want_total > file_.size() ? "truncated" : "trailing bytes", ": header says ",
               want_total, " bytes, file has ", file_.size()));
    }
  }
  if (!hash_ok) fail("checksum mismatch: file is damaged");
  for (size_t i = kPreambleBytes + header_len_; i < payload_start_; ++i)
    if (file_[i] != '\0') fail("damaged: non-zero padding after the header");

  as_object(header_, "the header");
  const int64_t version = as_int(field(header_, "version", "the header"), "version");
  if (version != kVersion)
    fail(msg("unsupported header version ", version, " (this build reads version ", kVersion, ")"));
  as_count(field(header_, "payload_bytes", "the header"), "payload_bytes");

  const Json& tensors = as_array(field(header_, "tensors", "the header"), "tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Json& t = tensors[i];
    const std::string where = msg("tensors[", i, "]");
    TableEntry e;
    e.name = as_string(field(t, "name", where), where + ".name");
    const std::string tw = "tensor " + e.name;
    e.dtype = as_dtype(field(t, "dtype", tw), tw + " dtype");
    e.shape = as_ints(field(t, "shape", tw), tw + " shape");
    for (int64_t d : e.shape) {
      if (d < 0) fail(msg(tw, " has a negative dimension in shape ", fmt_shape(e.shape)));
      if (d > kMaxElements || (d > 0 && e.numel > kMaxElements / d))
        fail(msg(tw, " has an implausible shape (more than 2^40 elements)"));
      e.numel *= d;
    }
    const std::string enc = as_string(field(t, "encoding", tw), tw + " encoding");
    auto encoding = encoding_from_name(enc);
    if (!encoding)
      fail(msg(tw, " has unknown encoding \"", enc,
               "\" (known: dense_f32, sparse_f32, packed_int, sparse_int, raw)"));
    e.encoding = *encoding;
    const int64_t bits = as_int(field(t, "bits", tw), tw + " bits");
    e.offset = as_count(field(t, "offset", tw), tw + " offset");
    e.length = as_count(field(t, "length", tw), tw + " length");
    if (auto it = t.find("masked"); it != t.end()) e.masked = as_bool(*it, tw + " masked");
    const int64_t elem = static_cast<int64_t>(c10::elementSize(e.dtype));
    switch (e.encoding) {
      case Encoding::kDenseF32:
      case Encoding::kSparseF32:
        if (e.dtype != at::kFloat) fail(msg(tw, ": encoding ", enc, " needs dtype float32"));
        if (bits != 32) fail(msg(tw, ": encoding ", enc, " has bits ", bits, ", expected 32"));
        break;
      case Encoding::kRaw:
        if (bits != elem * 8)
          fail(msg(tw, ": raw ", dtype_name(e.dtype), " has bits ", bits, ", expected ", elem * 8));
        break;
      case Encoding::kPackedInt:
      case Encoding::kSparseInt:
        if (!valid_packed_bits(bits))
          fail(msg(tw, ": packed bit width ", bits, " is not supported (2..8 or 16)"));
        e.is_signed = as_bool(field(t, "signed", tw), tw + " signed");
        if (e.dtype == at::kFloat) {
          e.scale = as_int(field(t, "scale", tw), tw + " scale");
          e.zero_point =
              t.contains("zero_point") ? as_int(t["zero_point"], tw + " zero_point") : -1;
          e.axis = t.contains("axis") ? as_int(t["axis"], tw + " axis") : -1;
          const auto n = static_cast<int64_t>(tensors.size());
          if (e.scale < 0 || e.scale >= n || e.zero_point < -1 || e.zero_point >= n)
            fail(msg(tw, ": scale or zero point refers to a tensor outside the table"));
          if (e.axis < -1 || e.axis >= static_cast<int64_t>(e.shape.size()))
            fail(msg(tw, ": quantization axis ", e.axis, " is outside its ", e.shape.size(),
                     "-d shape"));
        } else if (!is_integral_dtype(e.dtype)) {
          fail(msg(tw, ": packed integers cannot be loaded as ", dtype_name(e.dtype)));
        }
        break;
    }
    e.bits = static_cast<int>(bits);
    if (is_sparse(e.encoding)) {
      e.nnz = as_count(field(t, "nnz", tw), tw + " nnz");
      if (e.nnz > e.numel) fail(msg(tw, ": ", e.nnz, " non-zeros in ", e.numel, " elements"));
    }
    if (static_cast<uint64_t>(e.offset) > payload_len_ ||
        static_cast<uint64_t>(e.length) > payload_len_ - static_cast<uint64_t>(e.offset))
      fail(msg("tensor ", e.name, " payload out of bounds (offset ", e.offset, " + length ",
               e.length, " > ", payload_len_, " payload bytes)"));
    const int64_t expected = encoded_length(e.encoding, e.numel, e.nnz, e.bits, elem);
    if (expected != e.length)
      fail(msg(tw, ": ", enc, " payload of shape ", fmt_shape(e.shape), " should take ", expected,
               " bytes, table says ", e.length));
    table_.push_back(std::move(e));
  }
}

at::Tensor Loader::decode(size_t index) {
  const TableEntry& e = table_[index];
  const auto* p = reinterpret_cast<const unsigned char*>(file_.data() + payload_start_ + e.offset);
  at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
  const int64_t n = e.numel;
  auto check_bitmap = [&]() {
    int64_t count = 0;
    if (!bitmap_popcount(p, n, &count) || count != e.nnz)
      fail(msg("tensor ", e.name, ": sparsity bitmap does not match its ", e.nnz,
               " non-zeros (file is damaged)"));
  };
  auto bit = [&](int64_t i) { return (p[i / 8] >> (i % 8)) & 1; };
  auto read_int = [&](BitReader& r) {
    const uint64_t u = r.get(e.bits);
    if (e.is_signed && (u >> (e.bits - 1)) & 1)
      return static_cast<int64_t>(u) - (int64_t(1) << e.bits);
    return static_cast<int64_t>(u);
  };

  switch (e.encoding) {
    case Encoding::kDenseF32:
    case Encoding::kRaw:
      if (n > 0) std::memcpy(t.data_ptr(), p, static_cast<size_t>(e.length));
      if (e.dtype == at::kBool)
        for (int64_t i = 0; i < n; ++i)
          if (p[i] > 1) fail(msg("tensor ", e.name, ": bool element ", i, " is neither 0 nor 1"));
      return t;
    case Encoding::kSparseF32: {
      check_bitmap();
      float* v = t.data_ptr<float>();
      const unsigned char* vals = p + bytes_for_bits(n);
      for (int64_t i = 0, k = 0; i < n; ++i) {
        if (bit(i)) {
          std::memcpy(&v[i], vals + 4 * k, 4);
          ++k;
        } else {
          v[i] = 0.0f;
        }
      }
      return t;
    }
    case Encoding::kPackedInt:
    case Encoding::kSparseInt: {
      const bool sparse = e.encoding == Encoding::kSparseInt;
      if (sparse) check_bitmap();
      BitReader reader(sparse ? p + bytes_for_bits(n) : p);
      std::vector<int64_t> q(static_cast<size_t>(n), 0);
      std::vector<bool> present(static_cast<size_t>(n), true);
      for (int64_t i = 0; i < n; ++i) {
        if (sparse && !bit(i)) {
          present[i] = false;
          continue;
        }
        q[i] = read_int(reader);
      }
      if (e.dtype != at::kFloat) {
        at::Tensor l = at::empty(e.shape, at::TensorOptions().dtype(at::kLong));
        std::copy(q.begin(), q.end(), l.data_ptr<int64_t>());
        return l.to(e.dtype);
      }
      // Dequantize with the scale and zero point tensors, decoded before this one.
      const at::Tensor scale = tensors_[static_cast<size_t>(e.scale)].to(at::kFloat).contiguous();
      at::Tensor zp;
      if (e.zero_point >= 0)
        zp = tensors_[static_cast<size_t>(e.zero_point)].to(at::kLong).contiguous();
      int64_t channels = 1, inner = 1;
      if (e.axis >= 0) {
        channels = e.shape[static_cast<size_t>(e.axis)];
        for (size_t d = static_cast<size_t>(e.axis) + 1; d < e.shape.size(); ++d)
          inner *= e.shape[d];
      }
      const int64_t ns = scale.numel(), nz = zp.defined() ? zp.numel() : 1;
      if (!(ns == 1 || (e.axis >= 0 && ns == channels)) ||
          !(nz == 1 || (e.axis >= 0 && nz == channels)))
        fail(msg("tensor ", e.name, ": scale has ", ns, " and zero point ", nz,
                 " values, expected 1 or ", channels, " (one per channel)"));
      const float* sp = scale.data_ptr<float>();
      const int64_t* zpp = zp.defined() ? zp.data_ptr<int64_t>() : nullptr;
      float* v = t.data_ptr<float>();
      for (int64_t i = 0; i < n; ++i) {
        if (!present[i]) {
          v[i] = 0.0f;
          continue;
        }
        const int64_t c = e.axis >= 0 ? (i / inner) % channels : 0;
        const int64_t z = zpp ? zpp[nz == 1 ? 0 : c] : 0;
        v[i] = static_cast<float>(q[i] - z) * sp[ns == 1 ? 0 : c];
      }
      return t;
    }
  }
  return t;
}

void Loader::decode_tensors() {
  tensors_.assign(table_.size(), at::Tensor());
  // Packed float tensors need their scale and zero point, which are never packed floats.
  for (size_t i = 0; i < table_.size(); ++i) {
    const bool dequant = is_int_encoding(table_[i].encoding) && table_[i].dtype == at::kFloat;
    if (!dequant) tensors_[i] = decode(i);
  }
  for (size_t i = 0; i < table_.size(); ++i) {
    const TableEntry& e = table_[i];
    if (!(is_int_encoding(e.encoding) && e.dtype == at::kFloat)) continue;
    for (int64_t ref : {e.scale, e.zero_point})
      if (ref >= 0 && !tensors_[static_cast<size_t>(ref)].defined())
        fail(msg("tensor ", e.name, ": its scale or zero point is itself a packed tensor"));
    tensors_[i] = decode(i);
  }
}

ir::Attr Loader::parse_attr(const Json& j, const std::string& where) const {
  if (!j.is_object() || j.size() != 1)
    fail(msg("malformed header: ", where, " must be {type: value}"));
  const std::string type = j.begin().key();
  const Json& v = j.begin().value();
  if (type == "int") return as_int(v, where);
  if (type == "float") return as_double(v, where);
  if (type == "string") return as_string(v, where);
  if (type == "ints") return as_ints(v, where);
  if (type == "floats") {
    std::vector<double> out;
    for (const auto& x : as_array(v, where)) out.push_back(as_double(x, where));
    return out;
  }
  fail(msg("malformed header: ", where, " has unknown type \"", type,
           "\" (known: int, float, string, ints, floats)"));
}

ir::QuantSpec Loader::parse_qspec(const Json& j, const std::string& where) const {
  ir::QuantSpec q;
  q.bits = static_cast<int>(as_int(field(j, "bits", where), where + ".bits"));
  q.is_signed = as_bool(field(j, "signed", where), where + ".signed");
  q.symmetric = as_bool(field(j, "symmetric", where), where + ".symmetric");
  q.narrow_range = as_bool(field(j, "narrow_range", where), where + ".narrow_range");
  q.axis = as_int(field(j, "axis", where), where + ".axis");
  q.rounding = as_string(field(j, "rounding", where), where + ".rounding");
  q.power_of_two = as_bool(field(j, "power_of_two", where), where + ".power_of_two");
  if (j.contains("reduce_range")) q.reduce_range = as_bool(j.at("reduce_range"), where + ".reduce_range");
  const Json& s = field(j, "scale", where);
  if (!s.is_null()) q.scale = tensor_ref(s, where + ".scale");
  const Json& z = field(j, "zero_point", where);
  if (!z.is_null()) q.zero_point = tensor_ref(z, where + ".zero_point");
  return q;
}

ir::Graph Loader::build_graph() {
  const Json& g = as_object(field(header_, "graph", "the header"), "graph");
  ir::Graph graph;
  graph.name = as_string(field(g, "name", "graph"), "graph.name");
  for (const auto& in : as_array(field(g, "inputs", "graph"), "graph.inputs")) {
    ir::ValueInfo vi;
    vi.name = as_string(field(in, "name", "graph input"), "graph input name");
    vi.shape = as_ints(field(in, "shape", "graph input " + vi.name), "graph input shape");
    vi.dtype = as_dtype(field(in, "dtype", "graph input " + vi.name), "graph input " + vi.name);
    graph.inputs.push_back(std::move(vi));
  }
  graph.outputs = as_strings(field(g, "outputs", "graph"), "graph.outputs");
  for (const auto& [k, v] : as_object(field(g, "metadata", "graph"), "graph.metadata").items())
    graph.metadata[k] = as_string(v, "metadata." + k);
  for (const auto& [k, v] : as_object(field(g, "shapes", "graph"), "graph.shapes").items())
    graph.shapes[k] = as_ints(v, "shapes." + k);

  for (const auto& nj : as_array(field(g, "nodes", "graph"), "graph.nodes")) {
    ir::Node node;
    node.name = as_string(field(nj, "name", "a node"), "node name");
    const std::string where = "node " + node.name;
    node.op = as_string(field(nj, "op", where), where + " op");
    node.inputs = as_strings(field(nj, "inputs", where), where + " inputs");
    node.outputs = as_strings(field(nj, "outputs", where), where + " outputs");
    for (const auto& [k, a] : as_object(field(nj, "attrs", where), where + " attrs").items())
      node.attrs[k] = parse_attr(a, where + " attribute " + k);
    for (const auto& [k, pj] : as_object(field(nj, "params", where), where + " params").items()) {
      const std::string pw = where + " param " + k;
      ir::Param p;
      const Json& t = field(pj, "tensor", pw);
      if (!t.is_null()) {
        const int64_t i = as_int(t, pw + " tensor");
        p.value = tensor_ref(t, pw + " tensor");
        if (table_[static_cast<size_t>(i)].masked) p.mask = p.value.ne(0).to(at::kFloat);
      }
      p.trainable = as_bool(field(pj, "trainable", pw), pw + " trainable");
      if (auto it = pj.find("qspec"); it != pj.end() && !it->is_null())
        p.qspec = parse_qspec(*it, pw + " qspec");
      node.params[k] = std::move(p);
    }
    if (auto it = nj.find("out_qspec"); it != nj.end() && !it->is_null())
      node.out_qspec = parse_qspec(*it, where + " out_qspec");
    graph.nodes.push_back(std::move(node));
  }
  return graph;
}

ir::Graph Loader::load() {
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0)
    throw InputError(msg("cannot open checkpoint ", path_, ": ", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw InputError(msg("cannot open checkpoint ", path_, ": not a file"));
  check_fits_in_memory(static_cast<uint64_t>(st.st_size), msg("reading the checkpoint ", path_),
                       "use a machine with more memory");
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw InputError(msg("cannot open checkpoint ", path_, ": ", std::strerror(errno)));
  file_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(msg("cannot read checkpoint ", path_));

  check_preamble();
  parse_header();
  // Packed and sparse tensors decode to many times their stored size (a 1-bit bitmap entry to 32
  // bits): the decoded total is checked before any tensor is allocated.
  uint64_t decoded = 0;
  for (const TableEntry& e : table_)
    decoded += static_cast<uint64_t>(e.numel) * c10::elementSize(e.dtype);
  check_fits_in_memory(decoded, msg("the checkpoint ", path_, " (", table_.size(),
                                    " tensors, decoded)"),
                       "use a machine with more memory");
  decode_tensors();
  return build_graph();
}

}  // namespace

void save_sqz(const ir::Graph& graph, const std::string& path) {
  Plan plan = make_plan(graph);
  std::string payload;
  int64_t total = 0;
  for (const auto& e : plan.entries) total += e.length;
  payload.reserve(static_cast<size_t>(total));

  Json table = Json::array();
  for (const auto& e : plan.entries) {
    Json t = Json::object();
    t["name"] = e.name;
    t["dtype"] = dtype_name(e.tensor.scalar_type());
    t["shape"] = shape_json(e.tensor.sizes());
    t["encoding"] = encoding_name(e.encoding);
    t["bits"] = e.bits;
    t["offset"] = payload.size();
    t["length"] = e.length;
    if (is_sparse(e.encoding)) t["nnz"] = e.nnz;
    if (e.masked) t["masked"] = true;
    if (is_int_encoding(e.encoding)) {
      t["signed"] = e.is_signed;
      if (e.tensor.scalar_type() == at::kFloat) {
        t["scale"] = e.scale_index;
        if (e.zero_point_index >= 0) t["zero_point"] = e.zero_point_index;
        t["axis"] = e.axis;
      }
    }
    table.push_back(t);
    encode(e, payload);
  }

  Json header = Json::object();
  header["format"] = "squeeze-checkpoint";
  header["version"] = kVersion;
  header["payload_bytes"] = payload.size();
  header["graph"] = std::move(plan.graph);
  header["tensors"] = std::move(table);
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(
        msg("cannot write ", path, ": graph has a name or metadata that is not UTF-8: ", e.what()));
  }

  std::string head(kPreambleBytes, '\0');
  std::memcpy(&head[0], kMagic, 8);
  const uint32_t version = kVersion;
  std::memcpy(&head[8], &version, 4);
  const uint64_t header_len = header_text.size();
  std::memcpy(&head[12], &header_len, 8);
  head += header_text;
  head.resize(align_up(head.size()), '\0');

  uint64_t hash = fnv1a64(header_text.data(), header_text.size());
  hash = fnv1a64(payload.data(), payload.size(), hash);
  char trailer[kTrailerBytes];
  std::memcpy(trailer, &hash, 8);
  write_file_atomic(path, {{head.data(), head.size()},
                           {payload.data(), payload.size()},
                           {trailer, kTrailerBytes}});
}

ir::Graph load_sqz(const std::string& path) { return Loader(path).load(); }

int64_t stored_size_bytes(const ir::Graph& graph) {
  int64_t total = 0;
  for (const auto& e : make_plan(graph).entries) total += e.length;
  return total;
}

}  // namespace squeeze::io
