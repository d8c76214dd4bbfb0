// TensorProto <-> at::Tensor, shared by the ONNX importer, the exporter and the conformance runner.
#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "onnx_internal.h"
#include "squeeze/io/onnx.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/memory.h"

namespace squeeze::io {

namespace onnx_detail {

namespace {

using onnx::TensorProto;

// The element count, refusing shapes whose product (of the non-zero dimensions too: libtorch
// multiplies them all, and a tensor with one zero dimension and others of 2^40 overflows its
// int64 arithmetic) would overflow.
int64_t checked_numel(const TensorProto& t, const std::string& where) {
  int64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : t.dims()) {
    if (d < 0) throw InputError(msg(where, ": tensor '", t.name(), "' has a negative dimension ", d));
    if (d == 0) {
      empty = true;
      continue;
    }
    if (nonzero > std::numeric_limits<int64_t>::max() / 16 / d)
      throw InputError(msg(where, ": tensor '", t.name(), "' has an absurd shape (its dimensions multiply past 2^59)"));
    nonzero *= d;
  }
  return empty ? 0 : nonzero;
}

template <typename Field>
void need_count(const Field& f, int64_t numel, const TensorProto& t, const std::string& where) {
  if (static_cast<int64_t>(f.size()) != numel)
    throw InputError(msg(where, ": tensor '", t.name(), "' has ", f.size(), " values for ", numel,
                         " elements (truncated or damaged file?)"));
}

int64_t external_number(const std::string& text, const char* key, const TensorProto& t,
                        const std::string& where) {
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < 0)
    throw InputError(msg(where, ": tensor '", t.name(), "' has external data ", key, " '", text,
                         "' (expected a non-negative integer)"));
  return v;
}

// The tensor's bytes from its external data file. The file must lie inside the model's folder:
// a relative location without '..', which after resolving symlinks is still inside that folder,
// so that a downloaded model cannot make squeeze read /etc/passwd or the user's keys into a
// weight. Sizes are checked against the file before anything is allocated.
std::string read_external(const TensorProto& t, const std::string& where, const std::string& base_dir,
                          int64_t nbytes) {
  namespace fs = std::filesystem;
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& kv : t.external_data()) {
    if (kv.key() == "location") location = kv.value();
    else if (kv.key() == "offset") offset = external_number(kv.value(), "offset", t, where);
    else if (kv.key() == "length") length = external_number(kv.value(), "length", t, where);
  }
  const fs::path rel(location);
  bool escapes = location.empty() || rel.is_absolute() || location.find('\\') != std::string::npos;
  for (const auto& part : rel) escapes = escapes || part == "..";
  if (escapes)
    throw InputError(msg(where, ": tensor '", t.name(), "' has external data location '", location,
                         "', which is not a file inside the model's folder (a relative path "
                         "without '..' is required)"));
  const fs::path dir = base_dir.empty() ? fs::path(".") : fs::path(base_dir);
  const std::string path = (dir / rel).string();
  std::error_code ec;
  const fs::path real_dir = fs::canonical(dir, ec);
  const fs::path real = ec ? fs::path() : fs::canonical(path, ec);
  if (ec)
    throw InputError(msg(where, ": cannot open external data file '", path, "' of tensor '",
                         t.name(), "': ", ec.message()));
  const auto rd = real_dir.string(), rf = real.string();
  if (rf.compare(0, rd.size(), rd) != 0 || (rf.size() > rd.size() && rf[rd.size()] != '/' && rd != "/"))
    throw InputError(msg(where, ": external data file '", path, "' of tensor '", t.name(),
                         "' resolves to '", rf, "', outside the model's folder '", rd,
                         "' (a symbolic link); refused"));
  if (!fs::is_regular_file(real, ec))
    throw InputError(msg(where, ": external data '", path, "' of tensor '", t.name(), "' is not a regular file"));
  const uint64_t file_size = fs::file_size(real, ec);
  if (ec) throw InputError(msg(where, ": cannot open external data file '", path, "': ", ec.message()));
  if (length >= 0 && length != nbytes)
    throw InputError(msg(where, ": external data of tensor '", t.name(), "' has length ", length, ", expected ", nbytes));
  if (static_cast<uint64_t>(offset) > file_size ||
      static_cast<uint64_t>(nbytes) > file_size - static_cast<uint64_t>(offset))
    throw InputError(msg(where, ": external data file '", path, "' (", file_size,
                         " bytes) is too short for tensor '", t.name(), "' (", nbytes,
                         " bytes at offset ", offset, ")"));
  check_fits_in_memory(static_cast<uint64_t>(nbytes) * 2,
                       msg(where, ": tensor '", t.name(), "' (external data)"), "");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(msg(where, ": cannot open external data file '", path, "' of tensor '", t.name(), "'"));
  std::string data(static_cast<size_t>(nbytes), '\0');
  f.seekg(offset);
  f.read(data.data(), nbytes);
  if (f.gcount() != nbytes)
    throw InputError(msg(where, ": external data file '", path, "' is too short for tensor '", t.name(), "'"));
  return data;
}

}  // namespace

at::ScalarType scalar_type_from_onnx(int32_t code, const std::string& where) {
  switch (code) {
    case TensorProto::FLOAT: return at::kFloat;
    case TensorProto::UINT8: return at::kByte;
    case TensorProto::INT8: return at::kChar;
    case TensorProto::UINT16: return at::kInt;
    case TensorProto::INT16: return at::kShort;
    case TensorProto::INT32: return at::kInt;
    case TensorProto::INT64: return at::kLong;
    case TensorProto::BOOL: return at::kBool;
    case TensorProto::FLOAT16: return at::kHalf;
    case TensorProto::DOUBLE: return at::kDouble;
    case TensorProto::UINT32: return at::kLong;
    case TensorProto::UINT64: return at::kLong;
    case TensorProto::BFLOAT16: return at::kBFloat16;
    default: break;
  }
  std::string name = TensorProto::DataType_IsValid(code) ? TensorProto::DataType_Name(code) : std::to_string(code);
  throw UnsupportedError(msg(where, ": ONNX tensor type ", name,
                             " is not supported (supported: float, double, float16, bfloat16, int8/16/32/64, "
                             "uint8/16/32/64, bool)"));
}

int32_t onnx_type_from_scalar(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return TensorProto::FLOAT;
    case at::kDouble: return TensorProto::DOUBLE;
    case at::kHalf: return TensorProto::FLOAT16;
    case at::kBFloat16: return TensorProto::BFLOAT16;
    case at::kByte: return TensorProto::UINT8;
    case at::kChar: return TensorProto::INT8;
    case at::kShort: return TensorProto::INT16;
    case at::kInt: return TensorProto::INT32;
    case at::kLong: return TensorProto::INT64;
    case at::kBool: return TensorProto::BOOL;
    default: break;
  }
  throw UnsupportedError(msg("tensor type ", c10::toString(type), " has no ONNX equivalent"));
}

std::string cast_name_from_onnx(int32_t code, const std::string& where) {
  switch (scalar_type_from_onnx(code, where)) {
    case at::kFloat: return "float";
    case at::kDouble: return "double";
    case at::kHalf: return "half";
    case at::kBFloat16: return "bfloat16";
    case at::kByte: return "uint8";
    case at::kChar: return "int8";
    case at::kShort: return "int16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kBool: return "bool";
    default: break;
  }
  throw InternalError("cast_name_from_onnx");
}

int32_t onnx_type_from_cast_name(const std::string& name) {
  static const std::map<std::string, int32_t> codes = {
      {"float", TensorProto::FLOAT}, {"double", TensorProto::DOUBLE}, {"half", TensorProto::FLOAT16},
      {"bfloat16", TensorProto::BFLOAT16}, {"uint8", TensorProto::UINT8}, {"int8", TensorProto::INT8},
      {"int16", TensorProto::INT16}, {"int32", TensorProto::INT32}, {"int64", TensorProto::INT64},
      {"bool", TensorProto::BOOL}};
  auto it = codes.find(name);
  if (it == codes.end()) throw UnsupportedError(msg("Cast to '", name, "' has no ONNX equivalent"));
  return it->second;
}

at::Tensor tensor_from_proto(const TensorProto& t, const std::string& where, const std::string& base_dir) {
  if (t.data_type() == TensorProto::STRING)
    throw UnsupportedError(msg(where, ": tensor '", t.name(), "' holds strings; squeeze handles numeric tensors only"));
  at::ScalarType type = scalar_type_from_onnx(t.data_type(), where);
  int64_t numel = checked_numel(t, where);
  std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  auto opts = at::TensorOptions().dtype(type);

  // Bytes per stored element in raw_data (unsigned wide types are stored narrower than we hold them).
  int64_t raw_size = 0;
  switch (t.data_type()) {
    case TensorProto::UINT16: raw_size = 2; break;
    case TensorProto::UINT32: raw_size = 4; break;
    case TensorProto::UINT64: raw_size = 8; break;
    default: raw_size = static_cast<int64_t>(c10::elementSize(type));
  }
  bool external = t.data_location() == TensorProto::EXTERNAL;
  if (t.has_raw_data() || external) {
    std::string ext;
    const std::string* raw = &t.raw_data();
    if (external) {
      ext = read_external(t, where, base_dir, numel * raw_size);
      raw = &ext;
    }
    if (static_cast<int64_t>(raw->size()) != numel * raw_size)
      throw InputError(msg(where, ": tensor '", t.name(), "' has ", raw->size(), " bytes of data for ", numel,
                           " elements of ", raw_size, " bytes (truncated or damaged file?)"));
    at::Tensor out = at::empty(dims, opts);
    if (numel == 0) return out;
    switch (t.data_type()) {
      case TensorProto::UINT16: {
        auto* p = out.data_ptr<int32_t>();
        for (int64_t i = 0; i < numel; ++i) {
          uint16_t v;
          std::memcpy(&v, raw->data() + 2 * i, 2);
          p[i] = v;
        }
        return out;
      }
      case TensorProto::UINT32: {
        auto* p = out.data_ptr<int64_t>();
        for (int64_t i = 0; i < numel; ++i) {
          uint32_t v;
          std::memcpy(&v, raw->data() + 4 * i, 4);
          p[i] = v;
        }
        return out;
      }
      default:
        std::memcpy(out.data_ptr(), raw->data(), raw->size());
        return out;
    }
  }
  switch (t.data_type()) {
    case TensorProto::FLOAT: {
      need_count(t.float_data(), numel, t, where);
      return at::tensor(std::vector<float>(t.float_data().begin(), t.float_data().end()), opts).reshape(dims);
    }
    case TensorProto::DOUBLE: {
      need_count(t.double_data(), numel, t, where);
      return at::tensor(std::vector<double>(t.double_data().begin(), t.double_data().end()), opts).reshape(dims);
    }
    case TensorProto::INT64: {
      need_count(t.int64_data(), numel, t, where);
      return at::tensor(std::vector<int64_t>(t.int64_data().begin(), t.int64_data().end()), opts).reshape(dims);
    }
    case TensorProto::UINT32:
    case TensorProto::UINT64: {
      need_count(t.uint64_data(), numel, t, where);
      std::vector<int64_t> v(t.uint64_data().begin(), t.uint64_data().end());
      return at::tensor(v, at::kLong).reshape(dims);
    }
    case TensorProto::FLOAT16:
    case TensorProto::BFLOAT16: {
      need_count(t.int32_data(), numel, t, where);  // the 16 bits of each value, in int32 slots
      std::vector<int16_t> bits(t.int32_data().begin(), t.int32_data().end());
      at::Tensor raw = at::tensor(std::vector<int64_t>(bits.begin(), bits.end()), at::kLong).to(at::kShort);
      return raw.view(type).reshape(dims).clone();
    }
    default: {
      need_count(t.int32_data(), numel, t, where);
      std::vector<int64_t> v(t.int32_data().begin(), t.int32_data().end());
      return at::tensor(v, at::kLong).to(type).reshape(dims);
    }
  }
}

void tensor_to_proto(const at::Tensor& t, TensorProto* out) {
  at::Tensor c = t.detach().contiguous().cpu();
  out->clear_dims();
  for (int64_t d : c.sizes()) out->add_dims(d);
  out->set_data_type(onnx_type_from_scalar(c.scalar_type()));
  out->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size()));
}

}  // namespace onnx_detail

at::Tensor load_onnx_tensor(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(msg("cannot open ONNX tensor file '", path, "'"));
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  onnx::TensorProto t;
  if (!t.ParseFromString(bytes)) throw InputError(msg("'", path, "' is not a serialized onnx.TensorProto"));
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  return onnx_detail::tensor_from_proto(t, path, dir);
}

void save_onnx_tensor(const at::Tensor& tensor, const std::string& path, const std::string& name) {
  onnx::TensorProto t;
  onnx_detail::tensor_to_proto(tensor, &t);
  t.set_name(name);
  std::string bytes;
  if (!t.SerializeToString(&bytes)) throw Error(msg("cannot serialize tensor '", name, "' for '", path, "'"));
  write_file_atomic(path, {bytes});
}

}  // namespace squeeze::io
