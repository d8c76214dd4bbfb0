// NumPy .npy files, format versions 1.0, 2.0 and 3.0:
//   "\x93NUMPY" major minor, header length (uint16 LE for 1.x, uint32 LE for 2.x/3.x), then a
//   Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (N, F), } padded with
//   spaces and ended by '\n', then the raw array data.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"
#include "squeeze/util/memory.h"
#include "squeeze/util/fs.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the NPY reader and writer assume a little-endian host");

namespace squeeze::data {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

struct NpyType {
  const char* descr;  // as written; the reader also accepts '=' and '|' where they are equivalent
  at::ScalarType dtype;
  int64_t bytes;
};
constexpr NpyType kTypes[] = {
    {"<f4", at::kFloat, 4}, {"<f8", at::kDouble, 8}, {"<i8", at::kLong, 8},
    {"<i4", at::kInt, 4},   {"|u1", at::kByte, 1},   {"|b1", at::kBool, 1},
};
constexpr char kValidTypes[] = "'<f4', '<f8', '<i8', '<i4', '|u1', '|b1'";

// A tiny parser for the header dict; numpy writes it with repr(), so the grammar is small.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = string_literal();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() != '\'' && peek() != '"') {
          fail("'descr' is not a simple type string (structured arrays are not supported)");
        }
        descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = boolean();
        have_fortran = true;
      } else if (key == "shape") {
        shape = tuple();
        have_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != '}') fail("expected ',' or '}'");
    }
    if (!have_descr || !have_fortran || !have_shape) {
      fail("the header must have the keys 'descr', 'fortran_order' and 'shape'");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw InputError(msg("malformed NPY header in ", path_, ": ", what, " (header: ", s_, ")"));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string string_literal() {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++pos_;
    const size_t end = s_.find(q, pos_);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("'fortran_order' must be True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> out;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') {
        ++pos_;
        return out;
      }
      if (peek() < '0' || peek() > '9') fail("'shape' must be a tuple of non-negative integers");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (int64_t{1} << 50)) fail("a dimension in 'shape' is implausibly large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      out.push_back(v);
      skip_ws();
      if (peek() == ',') ++pos_;
    }
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

const NpyType* find_type(const std::string& descr) {
  if (descr.size() < 2) return nullptr;
  char order = descr[0];
  const std::string rest = descr.substr(1);
  for (const auto& t : kTypes) {
    if (rest != t.descr + 1) continue;
    // One-byte types have no byte order, so numpy may write any of the three markers.
    if (order == t.descr[0] || order == '=' || t.bytes == 1) {
      return &t;
    }
  }
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

}  // namespace

at::Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(msg("cannot open NPY file ", path, ": ", std::strerror(errno)));
  in.seekg(0, std::ios::end);
  const int64_t file_size = static_cast<int64_t>(in.tellg());
  in.seekg(0);

  char pre[12];
  in.read(pre, 10);
  if (in.gcount() < 10 || std::memcmp(pre, kMagic, kMagicLen) != 0) {
    throw InputError(
        msg("not an NPY file: ", path, ": it does not start with the magic string \\x93NUMPY"));
  }
  const int major = static_cast<unsigned char>(pre[6]);
  const int minor = static_cast<unsigned char>(pre[7]);
  int64_t header_len = 0;
  int64_t prefix = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(pre[8]) | (static_cast<unsigned char>(pre[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    in.read(pre + 10, 2);
    if (in.gcount() < 2) throw InputError(msg("truncated NPY file ", path, ": header cut short"));
    header_len = 0;
    for (int i = 3; i >= 0; --i)
      header_len = (header_len << 8) | static_cast<unsigned char>(pre[8 + i]);
    prefix = 12;
  } else {
    throw InputError(msg("NPY file ", path, ": unsupported format version ", major, ".", minor,
                         "; supported: 1.0, 2.0, 3.0"));
  }
  if (prefix + header_len > file_size) {
    throw InputError(msg("truncated NPY file ", path, ": the header claims ", header_len,
                         " bytes but the file has only ", file_size, " bytes"));
  }
  std::string header(static_cast<size_t>(header_len), '\0');
  in.read(header.data(), header_len);

  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  HeaderParser(header, path).parse(descr, fortran, shape);
  const NpyType* type = find_type(descr);
  if (!type) {
    const bool big = !descr.empty() && descr[0] == '>';
    throw InputError(
        msg("NPY file ", path, ": unsupported dtype '", descr, "'",
            big ? " (big-endian; convert with arr.astype(arr.dtype.newbyteorder('<')))" : "",
            "; supported: ", kValidTypes));
  }
  // Bounded over the non-zero dimensions even when one is 0 (libtorch multiplies them all).
  int64_t count = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d == 0) {
      empty = true;
      continue;
    }
    if (count > (int64_t{1} << 50) / d) {
      throw InputError(msg("NPY file ", path, ": implausible shape ", shape_str(shape)));
    }
    count *= d;
  }
  if (empty) count = 0;
  if (fortran && shape.size() > 1) {
    throw InputError(msg("NPY file ", path, ": Fortran-ordered (column-major) arrays are not ",
                         "supported; save a C-ordered copy with np.save(path, ",
                         "np.ascontiguousarray(arr))"));
  }
  const int64_t nbytes = count * type->bytes;
  const int64_t present = file_size - prefix - header_len;
  if (present < nbytes) {
    throw InputError(msg("truncated NPY file ", path, ": header says shape ", shape_str(shape),
                         " of '", descr, "' (", nbytes, " bytes) but only ", present,
                         " bytes present"));
  }
  if (present > nbytes) {
    throw InputError(msg("malformed NPY file ", path, ": header says shape ", shape_str(shape),
                         " of '", descr, "' (", nbytes, " bytes) but ", present,
                         " bytes follow the header"));
  }
  check_fits_in_memory(static_cast<uint64_t>(nbytes) + static_cast<uint64_t>(count) * 4,
                       msg("NPY file ", path, " (shape ", shape_str(shape), " of '", descr, "')"),
                       "the whole file is read whatever data.limit says: store a subset in a smaller file, or use a machine with more memory");
  // Bools are read as bytes: numpy treats any non-zero byte as true, libtorch expects 0 or 1.
  const bool is_bool = type->dtype == at::kBool;
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(is_bool ? at::kByte : type->dtype));
  if (nbytes > 0) {
    in.read(static_cast<char*>(t.data_ptr()), nbytes);
    if (in.gcount() != nbytes) {
      throw InputError(msg("cannot read NPY file ", path, ": ", std::strerror(errno)));
    }
  }
  return is_bool ? t.ne(0) : t;
}

void write_npy(const std::string& path, const at::Tensor& tensor) {
  const NpyType* type = nullptr;
  for (const auto& t : kTypes) {
    if (t.dtype == tensor.scalar_type()) type = &t;
  }
  if (!type) {
    throw UnsupportedError(msg("write_npy ", path, ": unsupported dtype ", tensor.scalar_type(),
                               "; supported: float32, float64, int64, int32, uint8, bool"));
  }
  const at::Tensor t = tensor.to(at::kCPU).contiguous();
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());

  std::string dict = std::string("{'descr': '") + type->descr +
                     "', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
  // numpy pads the header with spaces so the data starts on a 64-byte boundary.
  size_t prefix = 10;
  int major = 1;
  if (dict.size() + 1 + prefix > 65535) {
    major = 2;
    prefix = 12;
  }
  const size_t total = ((prefix + dict.size() + 1 + 63) / 64) * 64;
  std::string header = dict + std::string(total - prefix - dict.size() - 1, ' ') + "\n";
  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const uint64_t hl = header.size();
  for (size_t i = 0; i < prefix - 8; ++i) out.push_back(static_cast<char>((hl >> (8 * i)) & 0xff));
  out += header;

  const size_t nbytes = static_cast<size_t>(t.numel()) * static_cast<size_t>(type->bytes);
  write_file_atomic(path, {out, {static_cast<const char*>(t.data_ptr()), nbytes}});
}

}  // namespace squeeze::data
