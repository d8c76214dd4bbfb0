// IDX reader (the MNIST / Fashion-MNIST format), gzip-compressed or raw.
//
// Layout: magic 0x00 0x00 TYPE NDIMS, then NDIMS big-endian uint32 sizes, then the data in
// big-endian, C order. TYPE: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
// 0x0E float64.
#include <ATen/ATen.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"
#include "squeeze/util/memory.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "read_idx converts big-endian IDX data for a little-endian host");

namespace squeeze::data {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const {
    if (f) gzclose(f);
  }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads up to n bytes; returns how many were read (short only at the end of the stream).
// gzread also reads uncompressed files transparently, which is why raw files take this path too.
int64_t read_some(gzFile f, void* dst, int64_t n, const std::string& path) {
  auto* out = static_cast<char*>(dst);
  int64_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - done, int64_t{1} << 30));
    const int got = gzread(f, out + done, chunk);
    if (got < 0) {
      int err = 0;
      const char* what = gzerror(f, &err);
      throw InputError(
          msg("cannot read IDX file ", path, ": ", err == Z_ERRNO ? std::strerror(errno) : what));
    }
    if (got == 0) break;
    done += got;
  }
  return done;
}

struct IdxType {
  at::ScalarType dtype;
  int64_t bytes;
  const char* name;
};

IdxType idx_type(uint8_t code, const std::string& path) {
  switch (code) {
    case 0x08:
      return {at::kByte, 1, "uint8"};
    case 0x09:
      return {at::kChar, 1, "int8"};
    case 0x0B:
      return {at::kShort, 2, "int16"};
    case 0x0C:
      return {at::kInt, 4, "int32"};
    case 0x0D:
      return {at::kFloat, 4, "float32"};
    case 0x0E:
      return {at::kDouble, 8, "float64"};
    default:
      throw InputError(msg("IDX file ", path, ": unknown element type code 0x", std::hex,
                           static_cast<int>(code), std::dec,
                           " in the magic number; valid: 0x08 (uint8), 0x09 (int8), 0x0B (int16), "
                           "0x0C (int32), 0x0D (float32), 0x0E (float64)"));
  }
}

void byteswap_inplace(uint8_t* p, int64_t count, int64_t width) {
  for (int64_t i = 0; i < count; ++i, p += width) std::reverse(p, p + width);
}

}  // namespace

at::Tensor read_idx(const std::string& path) {
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) {
    throw InputError(
        msg("cannot open IDX file ", path, ": ", errno ? std::strerror(errno) : "out of memory"));
  }
  // zlib's buffers (this much for the compressed input, twice it for output) are allocated on the
  // first read: 1 MB suits a 30 MB data set, but a small file does not need them (and fuzzing
  // showed 3 MB fresh per read, with their page faults, dominating the time on small files).
  struct stat st;
  const int64_t file_bytes = ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
  gzbuffer(f.get(), static_cast<unsigned>(std::clamp<int64_t>(file_bytes, 8 << 10, 1 << 20)));

  uint8_t magic[4];
  const int64_t got_magic = read_some(f.get(), magic, 4, path);
  if (got_magic < 4) {
    throw InputError(msg("truncated IDX file ", path, ": only ", got_magic,
                         " bytes, too short for the 4-byte magic number"));
  }
  if (magic[0] != 0 || magic[1] != 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", magic[0], magic[1], magic[2], magic[3]);
    throw InputError(msg("not an IDX file: ", path, ": magic number is ", hex,
                         ", expected 00 00 TYPE NDIMS (e.g. 00 00 08 03 for uint8 images)"));
  }
  const IdxType type = idx_type(magic[2], path);
  const int ndims = magic[3];
  if (ndims == 0) throw InputError(msg("IDX file ", path, ": magic number says 0 dimensions"));

  std::vector<uint8_t> dim_bytes(4 * ndims);
  const int64_t got_dims = read_some(f.get(), dim_bytes.data(), 4 * ndims, path);
  if (got_dims < 4 * ndims) {
    throw InputError(msg("truncated IDX file ", path, ": header declares ", ndims,
                         " dimensions but the file ends inside the dimension sizes"));
  }
  std::vector<int64_t> shape(ndims);
  int64_t count = 1;
  std::string shape_text;
  for (int d = 0; d < ndims; ++d) {
    const uint8_t* b = &dim_bytes[4 * d];
    shape[d] = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    // 2^40 bytes is far beyond any real IDX file and keeps the products below from overflowing.
    if (shape[d] != 0 && count > (int64_t{1} << 40) / shape[d]) {
      throw InputError(msg("IDX file ", path, ": implausible header, dimensions multiply to more ",
                           "than 2^40 elements"));
    }
    count *= shape[d];
    shape_text += (d ? " x " : "") + std::to_string(shape[d]);
  }
  const int64_t nbytes = count * type.bytes;
  // The data as read plus its float32 copy for training (IDX holds bytes mostly). A gzip'd file's
  // length says nothing about what it unpacks to, so the header is checked against memory.
  check_fits_in_memory(static_cast<uint64_t>(nbytes) + static_cast<uint64_t>(count) * 4,
                       msg("IDX file ", path, " (", shape_text, " ", type.name, ")"),
                       "the whole file is read whatever data.limit says: store a subset in a smaller file, or use a machine with more memory");

  // Read into a growing buffer rather than allocating what the header claims, so a damaged header
  // cannot make us allocate terabytes; the tensor then adopts the buffer without a copy. The
  // steps grow from 64 KB (doubling, up to 64 MB), so a short file with a large claim is found
  // truncated before much is allocated. realloc, not a std::vector: nothing is zero-filled before
  // the read overwrites it (zero-filling 1 MB steps, and their page faults, once took most of the
  // time on small files).
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, FreeDeleter> buffer;
  int64_t step = int64_t{64} << 10;
  int64_t have = 0;
  while (have < nbytes) {
    const int64_t want = std::min(step, nbytes - have);
    step = std::min(step * 2, int64_t{64} << 20);
    auto* grown =
        static_cast<uint8_t*>(std::realloc(buffer.get(), static_cast<size_t>(have + want)));
    if (!grown) {
      throw InputError(msg("IDX file ", path, " (", shape_text, " ", type.name,
                           "): out of memory after reading ", have, " bytes"));
    }
    (void)buffer.release();
    buffer.reset(grown);
    const int64_t got = read_some(f.get(), buffer.get() + have, want, path);
    have += got;
    if (got < want) break;
  }
  if (have < nbytes) {
    throw InputError(msg("truncated IDX file ", path, ": header says ", shape_text, " ", type.name,
                         " values (", nbytes, " bytes) but only ", have, " bytes present"));
  }
  uint8_t extra;
  if (read_some(f.get(), &extra, 1, path) != 0) {
    throw InputError(msg("malformed IDX file ", path, ": header says ", shape_text, " ", type.name,
                         " values (", nbytes, " bytes) but the file has more data after them"));
  }
  // No elements: no buffer to adopt (from_blob of a null pointer never calls the deleter, which
  // leaked the buffer once; found by fuzzing).
  if (count == 0) return at::empty(shape, at::TensorOptions().dtype(type.dtype));
  if (type.bytes > 1) byteswap_inplace(buffer.get(), count, type.bytes);

  uint8_t* raw = buffer.release();
  return at::from_blob(
      raw, shape, [](void* p) { std::free(p); }, at::TensorOptions().dtype(type.dtype));
}

}  // namespace squeeze::data
