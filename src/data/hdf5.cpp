// HDF5 reader (particle-physics data sets), through the HDF5 C++ API when it was found at build
// time (SQUEEZE_HAVE_HDF5); otherwise read_hdf5 throws UnsupportedError.
#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

#ifdef SQUEEZE_HAVE_HDF5
#include <H5Cpp.h>
#include <unistd.h>
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

// "/jets/x (1000 x 16), /jets/y (1000 x 5)": what the user could have named.
void list_datasets(const H5::Group& group, const std::string& prefix, std::string& out) {
  for (hsize_t i = 0; i < group.getNumObjs(); ++i) {
    const std::string name = group.getObjnameByIdx(i);
    const H5O_type_t type = group.childObjType(name);
    if (type == H5O_TYPE_GROUP) {
      list_datasets(group.openGroup(name), prefix + name + "/", out);
    } else if (type == H5O_TYPE_DATASET) {
      if (!out.empty()) out += ", ";
      out += prefix + name + " (" + dims_str(dims_of(group.openDataSet(name))) + ")";
    }
  }
}

std::string available(const H5::H5File& file) {
  std::string out;
  try {
    list_datasets(file, "", out);
  } catch (const H5::Exception&) {
  }
  return out.empty() ? "none" : out;
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

// Reads the whole data set converted by HDF5 into `mem_type`, the type of the returned tensor.
at::Tensor read_all(const H5::DataSet& ds, const std::string& path, const std::string& name,
                    const H5::PredType& mem_type, at::ScalarType dtype) {
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
  std::vector<int64_t> shape(dims.begin(), dims.end());
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (t.numel() > 0) ds.read(t.data_ptr(), mem_type);
  return t;
}

}  // namespace

void read_hdf5(const std::string& path, const std::string& features, const std::string& labels,
               at::Tensor& x, at::Tensor& y) {
  H5::Exception::dontPrint();
  if (::access(path.c_str(), R_OK) != 0) {
    throw InputError(msg("cannot open HDF5 file ", path, ": ", std::strerror(errno)));
  }
  try {
    if (!H5::H5File::isHdf5(path)) {
      throw InputError(msg("not an HDF5 file: ", path, " (no HDF5 signature)"));
    }
    H5::H5File file(path, H5F_ACC_RDONLY);
    const H5::DataSet fds = open_dataset(file, path, features, "features");
    const H5::DataSet lds = open_dataset(file, path, labels, "labels");
    x = read_all(fds, path, features, H5::PredType::NATIVE_FLOAT, at::kFloat);
    const at::Tensor raw = read_all(lds, path, labels, H5::PredType::NATIVE_DOUBLE, at::kDouble);
    y = to_class_indices(raw, msg("HDF5 file ", path, ", data set '", labels, "'"));
  } catch (const H5::Exception& e) {
    throw InputError(
        msg("cannot read HDF5 file ", path, ": ", e.getFuncName(), ": ", e.getDetailMsg()));
  }
  if (x.size(0) != y.size(0)) {
    throw InputError(msg("HDF5 file ", path, ": features '", features, "' have ", x.size(0),
                         " rows but labels '", labels, "' have ", y.size(0)));
  }
}

void read_hdf5_columns(const std::string& path, const std::vector<std::string>& features,
                       const std::string& labels, at::Tensor& x, at::Tensor& y) {
  H5::Exception::dontPrint();
  if (features.empty())
    throw ConfigError(msg("hdf5 data source ", path, ": the features list is empty; give the ",
                          "data set of each feature, or one N x F data set name"));
  if (::access(path.c_str(), R_OK) != 0) {
    throw InputError(msg("cannot open HDF5 file ", path, ": ", std::strerror(errno)));
  }
  std::vector<at::Tensor> columns;
  try {
    if (!H5::H5File::isHdf5(path)) {
      throw InputError(msg("not an HDF5 file: ", path, " (no HDF5 signature)"));
    }
    H5::H5File file(path, H5F_ACC_RDONLY);
    const H5::DataSet lds = open_dataset(file, path, labels, "labels");
    const at::Tensor raw = read_all(lds, path, labels, H5::PredType::NATIVE_DOUBLE, at::kDouble);
    y = to_class_indices(raw, msg("HDF5 file ", path, ", data set '", labels, "'"));
    for (const auto& name : features) {
      const H5::DataSet ds = open_dataset(file, path, name, "features");
      at::Tensor c = read_all(ds, path, name, H5::PredType::NATIVE_FLOAT, at::kFloat);
      if (c.dim() == 2 && c.size(1) == 1) c = c.squeeze(1);
      if (c.dim() != 1)
        throw InputError(msg("HDF5 file ", path, ", data set '", name, "': a feature column must ",
                             "hold one value per sample (N or N x 1), got shape ", c.sizes()));
      if (c.size(0) != y.size(0))
        throw InputError(msg("HDF5 file ", path, ": feature '", name, "' has ", c.size(0),
                             " rows but labels '", labels, "' have ", y.size(0)));
      columns.push_back(c);
    }
  } catch (const H5::Exception& e) {
    throw InputError(
        msg("cannot read HDF5 file ", path, ": ", e.getFuncName(), ": ", e.getDetailMsg()));
  }
  x = at::stack(columns, 1);
}

#else  // !SQUEEZE_HAVE_HDF5

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
