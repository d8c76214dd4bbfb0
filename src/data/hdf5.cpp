// HDF5 reader (particle-physics data sets), through the HDF5 C++ API when it was found at build
// time (SQUEEZE_HAVE_HDF5); otherwise read_hdf5 throws UnsupportedError.
#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "data/hdf5_internal.h"
#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"
#include "squeeze/util/memory.h"

#ifdef SQUEEZE_HAVE_HDF5
#include <H5Cpp.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#endif

namespace squeeze::data {

#ifdef SQUEEZE_HAVE_HDF5
namespace {

std::string dims_str(const std::vector<hsize_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s.empty() ? "scalar" : s;
}

std::vector<hsize_t> dims_of(const H5::DataSet& ds) {
  const H5::DataSpace space = ds.getSpace();
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(space.getSimpleExtentNdims(), 0)));
  if (!dims.empty()) space.getSimpleExtentDims(dims.data());
  return dims;
}

// "/jets/x (1000 x 16), /jets/y (1000 x 5)": what the user could have named. Each group is
// visited once, whatever links lead to it (a damaged or hostile file may link a group into
// itself: fuzzing found the recursion overflowing the stack), and the walk stops after
// kMaxLinks links or kMaxListed data sets, so a file with millions of links is listed quickly.
struct Listing {
  std::string text;
  int listed = 0;
  int links = 0;
  bool cut = false;
  std::set<haddr_t> groups;
};
constexpr int kMaxListed = 32;
constexpr int kMaxLinks = 1000;

void list_datasets(const H5::Group& group, const std::string& prefix, Listing& out) {
  H5O_info_t info;
  if (H5Oget_info2(group.getId(), &info, H5O_INFO_BASIC) < 0) return;
  if (!out.groups.insert(info.addr).second) return;
  for (hsize_t i = 0, n = group.getNumObjs(); i < n; ++i) {
    if (out.listed >= kMaxListed || ++out.links > kMaxLinks) {
      out.cut = true;
      return;
    }
    const std::string name = group.getObjnameByIdx(i);
    const H5O_type_t type = group.childObjType(name);
    if (type == H5O_TYPE_GROUP) {
      list_datasets(group.openGroup(name), prefix + name + "/", out);
    } else if (type == H5O_TYPE_DATASET) {
      if (!out.text.empty()) out.text += ", ";
      out.text += prefix + name + " (" + dims_str(dims_of(group.openDataSet(name))) + ")";
      ++out.listed;
    }
  }
}

std::string available(const H5::H5File& file) {
  Listing out;
  try {
    list_datasets(file, "", out);
  } catch (const H5::Exception&) {
  }
  if (out.text.empty())
    return out.cut ? msg("none in the first ", kMaxLinks, " links") : std::string("none");
  return out.cut ? out.text + ", ..." : out.text;
}

H5::DataSet open_dataset(const H5::H5File& file, const std::string& path, const std::string& name,
                         const char* role) {
  if (name.empty()) {
    throw ConfigError(msg("hdf5 data source ", path, ": no ", role, " data set name given (data.",
                          role, "); data sets in the file: ", available(file)));
  }
  try {
    return file.openDataSet(name);
  } catch (const H5::Exception&) {
    throw InputError(msg("HDF5 file ", path, " has no data set '", name, "' (", role,
                         "); data sets in the file: ", available(file)));
  }
}

// Set in read_hdf5's child only. libhdf5 may take any amount of memory on a damaged file (fuzzing
// found a 9 KB file on which it allocated 6 GB in 15 s, growing): the child's data segment
// (RLIMIT_DATA, which covers malloc's heap and its mappings) is capped at what it uses plus
// kParseAllowance while libhdf5 parses, raised by a data set's bytes just before that data set is
// read, so such a file ends in a failed allocation (an error, or a crash the parent reports)
// rather than in the OOM killer. A user's own lower limit is kept.
bool g_cap_memory = false;
rlim_t g_user_data_limit = RLIM_INFINITY;
constexpr uint64_t kParseAllowance = uint64_t{512} << 20;

// This process's data segment in bytes (what RLIMIT_DATA limits): the sixth field of
// /proc/self/statm, in pages. Plain system calls and no allocation, so that a sanitizer's death
// callback may call it.
bool data_segment_bytes(uint64_t* bytes) {
  char buf[256];
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = buf;
  uint64_t field = 0;
  for (int i = 0; i < 6; ++i) {
    while (*p == ' ') ++p;
    if (*p < '0' || *p > '9') return false;
    field = 0;
    while (*p >= '0' && *p <= '9') field = field * 10 + static_cast<uint64_t>(*p++ - '0');
  }
  *bytes = field * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return true;
}

void cap_child_memory(uint64_t extra) {
  if (!g_cap_memory) return;
  uint64_t data = 0;
  struct rlimit rl;
  if (!data_segment_bytes(&data) || ::getrlimit(RLIMIT_DATA, &rl) != 0) return;
  rl.rlim_cur = static_cast<rlim_t>(data + kParseAllowance + extra);
  if (g_user_data_limit != RLIM_INFINITY && g_user_data_limit < rl.rlim_cur)
    rl.rlim_cur = g_user_data_limit;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < rl.rlim_cur) rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_DATA, &rl);
}

// An unfiltered chunked data set stores every written chunk whole (edge chunks too): its storage
// is the number of chunks written times the chunk's bytes. Throws InputError when it is not.
void check_whole_chunks(const H5::DataSet& ds, const std::string& path, const std::string& name,
                        size_t file_elem, hsize_t stored) {
#if H5_VERSION_GE(1, 10, 5)
  const hid_t dcpl = H5Dget_create_plist(ds.getId());
  if (dcpl < 0) return;
  std::vector<hsize_t> chunk(32);
  const int rank = H5Pget_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
  H5Pclose(dcpl);
  hsize_t count = 0;
  if (rank <= 0) return;
  const H5::DataSpace space = ds.getSpace();  // libhdf5 1.10.8 refuses H5S_ALL here
  if (H5Dget_num_chunks(ds.getId(), space.getId(), &count) < 0) return;
  double chunk_bytes = static_cast<double>(file_elem);
  for (int i = 0; i < std::min<int>(rank, static_cast<int>(chunk.size())); ++i)
    chunk_bytes *= static_cast<double>(chunk[static_cast<size_t>(i)]);
  if (static_cast<double>(count) * chunk_bytes != static_cast<double>(stored)) {
    throw InputError(msg("HDF5 file ", path, ", data set '", name, "': ", count,
                         " uncompressed chunks of ", chunk_bytes, " bytes should take ",
                         static_cast<double>(count) * chunk_bytes, " bytes, but the file stores ",
                         stored, " bytes for them: the file is damaged"));
  }
#else
  (void)ds, (void)path, (void)name, (void)file_elem, (void)stored;
#endif
}

// Reads the whole data set converted by HDF5 into `mem_type`, the type of the returned tensor.
at::Tensor read_all(const H5::DataSet& ds, const std::string& path, const std::string& name,
                    const H5::PredType& mem_type, at::ScalarType dtype, hsize_t file_size) {
  const H5T_class_t cls = ds.getTypeClass();
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    throw InputError(msg("HDF5 file ", path, ", data set '", name,
                         "': element type is not numeric (integer or float); compound, string "
                         "and enum data sets are not supported"));
  }
  const std::vector<hsize_t> dims = dims_of(ds);
  if (dims.empty()) {
    throw InputError(msg("HDF5 file ", path, ", data set '", name,
                         "' is a scalar; expected an array with one row per sample"));
  }
  // The header's sizes are checked against the bytes the file stores for the data set before
  // anything is allocated: a damaged header (or a few-byte file claiming petabytes) is refused
  // here instead of failing inside the allocator. Compression is allowed for: deflate cannot
  // expand data more than 1032-fold (nor can shuffle, fletcher32, szip or lzf add to that).
  constexpr double kMaxExpansion = 1032.0;
  // The stored element size too: HDF5 converts through buffers of that size per element.
  const size_t file_elem = ds.getDataType().getSize();
  if (file_elem == 0 || file_elem > 16) {
    throw InputError(msg("HDF5 file ", path, ", data set '", name, "': its elements are ",
                         file_elem, " bytes each; integers and floats of 1 to 16 bytes are read ",
                         "(the file is damaged or holds another kind of data)"));
  }
  const double elem = static_cast<double>(std::max(at::elementSize(dtype), file_elem));
  double bytes = elem;
  for (hsize_t d : dims) bytes *= static_cast<double>(d);
  std::vector<int64_t> shape;
  for (hsize_t d : dims) {
    shape.push_back(d > static_cast<hsize_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(d));
  }
  // First against memory, overflow-safe: a valid file (chunked data sets need not be written)
  // may claim more than this machine can hold.
  uint64_t nbytes = 0;
  if (!checked_bytes(shape, c10::elementSize(dtype), &nbytes))
    throw InputError(msg("HDF5 file ", path, ", data set '", name, "': implausible dimensions ",
                         dims_str(dims), " (their product overflows)"));
  check_fits_in_memory(nbytes, msg("HDF5 file ", path, ", data set '", name, "' (", dims_str(dims), ")"),
                       "the whole file is read whatever data.limit says: store a subset in a smaller file, or use a machine with more memory");
  // Then against the bytes the file stores for it.
  // The storage size is itself a header field, so it is believed only up to the file's size.
  const double stored = static_cast<double>(std::min(ds.getStorageSize(), file_size));
  // Scale-offset and n-bit filters store constant data in almost nothing: no ratio bounds them.
  bool unbounded_filter = false;
  int filters = 0;
  H5D_layout_t layout = H5D_LAYOUT_ERROR;
  int external_files = 0;
  const hid_t dcpl = H5Dget_create_plist(ds.getId());
  if (dcpl >= 0) {
    layout = H5Pget_layout(dcpl);
    external_files = H5Pget_external_count(dcpl);
    filters = H5Pget_nfilters(dcpl);
    for (int i = 0; i < filters; ++i) {
      unsigned flags = 0, config = 0;
      size_t cd_count = 0;
      const H5Z_filter_t f = H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &cd_count,
                                            nullptr, 0, nullptr, &config);
      if (f == H5Z_FILTER_SCALEOFFSET || f == H5Z_FILTER_NBIT) unbounded_filter = true;
    }
    H5Pclose(dcpl);
  }
  // Data kept in other files (external storage, virtual data sets) is not followed: their paths
  // come from the file and may name anything on this machine.
  if (layout == H5D_VIRTUAL || external_files > 0) {
    throw InputError(msg("HDF5 file ", path, ", data set '", name, "': its data is stored in ",
                         "other files (",
                         layout == H5D_VIRTUAL ? "a virtual data set" : "external storage",
                         "), which squeeze does not follow; copy the data into the file itself"));
  }
  // Unfiltered storage holds every element it covers: a compact data set, or a contiguous one once
  // written, storing fewer bytes than its dimensions need, or unfiltered chunks that are not each
  // a whole chunk, are damaged. libhdf5 1.10 does not check this and copies past the end of what
  // it read (fuzzing found heap over-reads that returned garbage instead of an error). An
  // unwritten contiguous data set or chunk (no storage) reads as fill values, as HDF5 intends.
  const hsize_t stored_exact = ds.getStorageSize();
  const double needed = static_cast<double>(file_elem) * (bytes / elem);
  if ((layout == H5D_COMPACT || (layout == H5D_CONTIGUOUS && stored_exact > 0)) &&
      static_cast<double>(stored_exact) < needed) {
    throw InputError(msg("HDF5 file ", path, ", data set '", name, "': its header says ",
                         dims_str(dims), " elements of ", file_elem, " bytes (", needed,
                         " bytes) but the file stores only ", stored_exact,
                         " bytes for it: the file is damaged"));
  }
  if (layout == H5D_CHUNKED && filters == 0)
    check_whole_chunks(ds, path, name, file_elem, stored_exact);
  if ((!unbounded_filter && bytes > kMaxExpansion * stored + 4096.0) || bytes > 9.0e18) {
    throw InputError(msg("HDF5 file ", path, ", data set '", name, "': its header says ",
                         dims_str(dims), " elements (", bytes, " bytes in memory) but the file ",
                         "stores only ", static_cast<uint64_t>(stored), " bytes for it (compression ",
                         "expands data at most ", kMaxExpansion, "-fold): the file is damaged"));
  }
  cap_child_memory(nbytes);
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (t.numel() > 0) ds.read(t.data_ptr(), mem_type);
  return t;
}

// A data set to read: its name, its role in messages ("features", "labels"), and whether it is
// read as float32 (features) or float64 (labels, turned into class indices by the parent).
struct Wanted {
  std::string name;
  const char* role;
  bool as_double;
};

// Reads the data sets (in the child process of read_in_child).
std::vector<at::Tensor> read_datasets(const std::string& path, const std::vector<Wanted>& wanted) {
  H5::Exception::dontPrint();
  std::vector<at::Tensor> out;
  try {
    if (!H5::H5File::isHdf5(path)) {
      throw InputError(msg("not an HDF5 file: ", path, " (no HDF5 signature)"));
    }
    H5::H5File file(path, H5F_ACC_RDONLY);
    std::vector<H5::DataSet> sets;
    for (const Wanted& w : wanted) sets.push_back(open_dataset(file, path, w.name, w.role));
    const hsize_t size = file.getFileSize();
    for (size_t i = 0; i < wanted.size(); ++i)
      out.push_back(wanted[i].as_double
                        ? read_all(sets[i], path, wanted[i].name, H5::PredType::NATIVE_DOUBLE, at::kDouble, size)
                        : read_all(sets[i], path, wanted[i].name, H5::PredType::NATIVE_FLOAT, at::kFloat, size));
  } catch (const H5::Exception& e) {
    throw InputError(
        msg("cannot read HDF5 file ", path, ": ", e.getFuncName(), ": ", e.getDetailMsg()));
  }
  return out;
}

// The child's answer on the pipe (native byte order: same machine, same build): a status byte
// (kOk, or an error kind followed by a uint64 length and the message), then per tensor a uint64
// rank, the int64 sizes and the raw elements.
enum : uint8_t { kOk = 0, kInputError = 1, kConfigError = 2, kOtherError = 3 };
// The child's exit code when the HDF5 library crashed (its signal handlers exit with it).
constexpr int kLibraryCrashed = 86;
// The child's exit code when its memory cap (cap_child_memory) was reached where no allocation
// can fail softly: only in builds with AddressSanitizer, whose runtime dies when it cannot map
// memory for its own bookkeeping (make test-sanitize), where without it malloc returns null.
constexpr int kMemoryCapReached = 87;

#if defined(__SANITIZE_ADDRESS__)
#define SQUEEZE_HAS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SQUEEZE_HAS_ASAN 1
#endif
#endif

#ifdef SQUEEZE_HAS_ASAN
extern "C" void __sanitizer_set_death_callback(void (*callback)(void));

// Called by the sanitizer runtime before it exits on a fatal error. Within 256 MB of the cap the
// error is the cap's (a mapping refused by RLIMIT_DATA); anything else is a real report, left to
// end the child with the runtime's own exit code (the parent then fails loudly).
void on_sanitizer_death() {
  struct rlimit rl;
  uint64_t used = 0;
  if (::getrlimit(RLIMIT_DATA, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || !data_segment_bytes(&used)) return;
  if (used + (uint64_t{256} << 20) >= static_cast<uint64_t>(rl.rlim_cur)) ::_exit(kMemoryCapReached);
}
#endif

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool read_exact(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::read(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

[[noreturn]] void child_main(int fd, const std::string& path, const std::vector<Wanted>& wanted,
                             pid_t parent) {
  // A child left behind by a killed squeeze would go on parsing (and allocating) for nobody.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  struct rlimit rl;
  if (::getrlimit(RLIMIT_DATA, &rl) == 0) g_user_data_limit = rl.rlim_cur;
  g_cap_memory = true;
  cap_child_memory(0);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    ::signal(sig, [](int) { ::_exit(kLibraryCrashed); });
  }
#ifdef SQUEEZE_HAS_ASAN
  __sanitizer_set_death_callback(on_sanitizer_death);
#endif
  uint8_t status = kOk;
  std::string message;
  std::vector<at::Tensor> tensors;
  try {
    tensors = read_datasets(path, wanted);
  } catch (const ConfigError& e) {
    status = kConfigError;
    message = e.what();
  } catch (const InputError& e) {
    status = kInputError;
    message = e.what();
  } catch (const std::exception& e) {
    status = kOtherError;
    message = e.what();
  }
  bool ok = write_all(fd, &status, 1);
  if (status != kOk) {
    const uint64_t len = message.size();
    ok = ok && write_all(fd, &len, sizeof len) && write_all(fd, message.data(), message.size());
  } else {
    for (const at::Tensor& t : tensors) {
      const uint64_t rank = static_cast<uint64_t>(t.dim());
      ok = ok && write_all(fd, &rank, sizeof rank) &&
           write_all(fd, t.sizes().data(), rank * sizeof(int64_t)) &&
           write_all(fd, t.data_ptr(), t.numel() * t.element_size());
    }
  }
  ::_exit(ok ? 0 : 1);  // no atexit handlers, no destructors of the parent's state
}

// libhdf5 parses the file in a child process: Debian's libhdf5 (1.10) crashes on some damaged
// files (found by fuzzing, e.g. a corrupt local heap makes H5F__accum_read copy out of bounds),
// and a crash there must become an error naming the file, not take squeeze down. The child
// sends the arrays back through a pipe; to_class_indices and every check run here.
std::vector<at::Tensor> read_in_child(const std::string& path, const std::vector<Wanted>& wanted) {
  if (::access(path.c_str(), R_OK) != 0) {
    throw InputError(msg("cannot open HDF5 file ", path, ": ", std::strerror(errno)));
  }
  H5::Exception::dontPrint();  // initialises the library here, once, rather than in every child
  int fds[2];
  if (::pipe(fds) != 0) throw Error(msg("cannot read HDF5 file ", path, ": pipe: ", std::strerror(errno)));
  std::fflush(nullptr);  // nothing buffered is written twice
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(msg("cannot read HDF5 file ", path, ": fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(fds[1], path, wanted, parent);
  }
  ::close(fds[1]);
  uint8_t status = 0xff;
  std::string message;
  std::vector<at::Tensor> tensors(wanted.size());
  bool complete = read_exact(fds[0], &status, 1);
  if (complete && status != kOk) {
    uint64_t len = 0;
    complete = read_exact(fds[0], &len, sizeof len) && len < (uint64_t{1} << 20);
    if (complete) {
      message.resize(len);
      complete = read_exact(fds[0], message.data(), len);
    }
  } else if (complete) {
    for (size_t i = 0; i < wanted.size(); ++i) {
      uint64_t rank = 0;
      complete = complete && read_exact(fds[0], &rank, sizeof rank) && rank <= 64;
      std::vector<int64_t> shape(complete ? rank : 0);
      complete = complete && read_exact(fds[0], shape.data(), rank * sizeof(int64_t));
      if (!complete) break;
      tensors[i] = at::empty(shape, at::TensorOptions().dtype(wanted[i].as_double ? at::kDouble : at::kFloat));
      complete = read_exact(fds[0], tensors[i].data_ptr(), tensors[i].numel() * tensors[i].element_size());
    }
  }
  ::close(fds[0]);
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  const bool crashed = WIFSIGNALED(wstatus) ||
                       (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == kLibraryCrashed);
  if (!complete || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == kMemoryCapReached) {
      throw InputError(msg("cannot read HDF5 file ", path, ": the HDF5 library used more than ",
                           kParseAllowance >> 20, " MB beyond the data sets' own size parsing it; "
                           "the file is damaged (check it with h5dump, or rewrite it)"));
    }
    if (crashed) {
      throw InputError(msg("cannot read HDF5 file ", path, ": the HDF5 library crashed reading it",
                           WIFSIGNALED(wstatus) ? msg(" (signal ", WTERMSIG(wstatus), ")") : "",
                           "; the file is damaged (check it with h5dump, or rewrite it)"));
    }
    throw InternalError(msg("the HDF5 reader process for ", path, " failed (exit status ",
                            WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1, ")"));
  }
  if (status == kConfigError) throw ConfigError(message);
  if (status == kInputError) throw InputError(message);
  if (status != kOk) throw Error(message);
  return tensors;
}

// Features and labels from the tensors read (features first); the checks every caller shares.
void finish_xy(const std::string& path, const std::string& features, const std::string& labels,
               std::vector<at::Tensor> t, at::Tensor& x, at::Tensor& y) {
  x = t[0];
  y = to_class_indices(t[1], msg("HDF5 file ", path, ", data set '", labels, "'"));
  if (x.size(0) != y.size(0)) {
    throw InputError(msg("HDF5 file ", path, ": features '", features, "' have ", x.size(0),
                         " rows but labels '", labels, "' have ", y.size(0)));
  }
}

}  // namespace

// libhdf5 parses the file in a child process (read_in_child); to_class_indices and every check
// run here.
void read_hdf5(const std::string& path, const std::string& features, const std::string& labels,
               at::Tensor& x, at::Tensor& y) {
  finish_xy(path, features, labels,
            read_in_child(path, {{features, "features", false}, {labels, "labels", true}}), x, y);
}

void hdf5_detail::read_hdf5_in_process(const std::string& path, const std::string& features,
                                       const std::string& labels, at::Tensor& x, at::Tensor& y) {
  if (::access(path.c_str(), R_OK) != 0) {
    throw InputError(msg("cannot open HDF5 file ", path, ": ", std::strerror(errno)));
  }
  finish_xy(path, features, labels,
            read_datasets(path, {{features, "features", false}, {labels, "labels", true}}), x, y);
}

void read_hdf5_columns(const std::string& path, const std::vector<std::string>& features,
                       const std::string& labels, at::Tensor& x, at::Tensor& y) {
  if (features.empty())
    throw ConfigError(msg("hdf5 data source ", path, ": the features list is empty; give the ",
                          "data set of each feature, or one N x F data set name"));
  std::vector<Wanted> wanted{{labels, "labels", true}};
  for (const auto& name : features) wanted.push_back({name, "features", false});
  std::vector<at::Tensor> t = read_in_child(path, wanted);
  y = to_class_indices(t[0], msg("HDF5 file ", path, ", data set '", labels, "'"));
  std::vector<at::Tensor> columns;
  for (size_t i = 0; i < features.size(); ++i) {
    const std::string& name = features[i];
    at::Tensor c = t[i + 1];
    if (c.dim() == 2 && c.size(1) == 1) c = c.squeeze(1);
    if (c.dim() != 1)
      throw InputError(msg("HDF5 file ", path, ", data set '", name, "': a feature column must ",
                           "hold one value per sample (N or N x 1), got shape ", c.sizes()));
    if (c.size(0) != y.size(0))
      throw InputError(msg("HDF5 file ", path, ": feature '", name, "' has ", c.size(0),
                           " rows but labels '", labels, "' have ", y.size(0)));
    columns.push_back(c);
  }
  x = at::stack(columns, 1);
}

#else  // !SQUEEZE_HAVE_HDF5

void hdf5_detail::read_hdf5_in_process(const std::string& path, const std::string& features,
                                       const std::string& labels, at::Tensor& x, at::Tensor& y) {
  read_hdf5(path, features, labels, x, y);
}

void read_hdf5_columns(const std::string& path, const std::vector<std::string>&,
                       const std::string& labels, at::Tensor& x, at::Tensor& y) {
  read_hdf5(path, "", labels, x, y);
}

void read_hdf5(const std::string& path, const std::string&, const std::string&, at::Tensor&,
               at::Tensor&) {
  throw UnsupportedError(msg("cannot read ", path, ": this squeeze was built without HDF5 ",
                             "support (install libhdf5-dev and rebuild), or convert the data to ",
                             "NPY or CSV"));
}

#endif

}  // namespace squeeze::data
