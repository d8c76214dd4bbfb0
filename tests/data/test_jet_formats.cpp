// The jet data set as users have it: a CSV or ARFF table with a string class column (OpenML
// 42468), HDF5 with one data set per feature, and the per-feature standardization and class names
// that travel with a model as graph metadata.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"
#include "testing/asserts.h"

#ifdef SQUEEZE_HAVE_HDF5
#include <H5Cpp.h>
#endif

using namespace squeeze;
using namespace squeeze::data;
using squeeze::testing::TempDir;

namespace {

template <typename E, typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<other exception> ") + e.what();
  }
  return "<no exception>";
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const char* kArff =
    "% OpenML 42468 layout, shortened\n"
    "@RELATION hls4ml_lhc_jets_hlf\n"
    "\n"
    "@ATTRIBUTE j_zlogz NUMERIC\n"
    "@attribute 'j_mass_mmdt' real\n"
    "@attribute j_multiplicity integer\n"
    "@attribute class {g,q,t,w,z}\n"
    "@DATA\n"
    "-2.5,40.0,30,q\n"
    "% a comment between rows\n"
    "-3.5,170.5,60,t\r\n"
    "-3.0,81.0,45,w\n"
    "-3.1,20.0,50,g\n";

}  // namespace

TEST(DataArff, ReadsOpenMlLayoutWithStringClasses) {
  TempDir dir;
  const std::string p = dir.write("jets.arff", kArff);
  at::Tensor x, y;
  std::vector<std::string> names;
  read_arff(p, "", {}, x, y, &names);  // the class is the last attribute
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{4, 3}));
  EXPECT_FLOAT_EQ(x[1][1].item<float>(), 170.5f);
  EXPECT_FLOAT_EQ(x[3][2].item<float>(), 50.f);
  // Sorted order of the names present: g q t w.
  EXPECT_EQ(names, (std::vector<std::string>{"g", "q", "t", "w"}));
  EXPECT_TRUE(y.equal(at::tensor({1, 2, 3, 0}, at::kLong)));
  // A named label and feature subset, as for CSV.
  read_arff(p, "class", {"j_mass_mmdt"}, x, y, &names);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{4, 1}));
}

TEST(DataArff, BadFilesNameTheLine) {
  TempDir dir;
  at::Tensor x, y;
  std::vector<std::string> names;
  const std::string sparse = dir.write("s.arff", "@relation r\n@attribute a numeric\n"
                                                 "@attribute c {x,y}\n@data\n{0 1, 1 x}\n");
  std::string e = error_of<InputError>([&] { read_arff(sparse, "", {}, x, y, &names); });
  EXPECT_TRUE(has(e, "line 5") && has(e, "sparse")) << e;
  const std::string str = dir.write("t.arff", "@relation r\n@attribute a string\n@data\nx\n");
  e = error_of<InputError>([&] { read_arff(str, "", {}, x, y, &names); });
  EXPECT_TRUE(has(e, "line 2") && has(e, "'string'") && has(e, "numeric")) << e;
  const std::string nodata = dir.write("n.arff", "@relation r\n@attribute a numeric\n");
  e = error_of<InputError>([&] { read_arff(nodata, "", {}, x, y, &names); });
  EXPECT_TRUE(has(e, "no @data")) << e;
  const std::string missing = dir.write("m.arff", "@relation r\n@attribute a numeric\n"
                                                  "@attribute c {x,y}\n@data\n1,x\n?,y\n");
  e = error_of<InputError>([&] { read_arff(missing, "", {}, x, y, &names); });
  EXPECT_TRUE(has(e, "ARFF") && has(e, "'?'") && has(e, "line 6")) << e;
}

TEST(DataArff, LoadThroughTheDataBlock) {
  TempDir dir;
  DataOptions o;
  o.dataset = "arff";
  o.path = dir.write("jets.arff", kArff);
  o.label_column = "";
  o.test_fraction = 0.25;
  o.val_fraction = 0.0;
  const Splits s = load(o, 0);
  EXPECT_EQ(s.class_names, (std::vector<std::string>{"g", "q", "t", "w"}));
  EXPECT_EQ(s.train.size() + s.test.size(), 4);
  EXPECT_EQ(s.sample_shape, (std::vector<int64_t>{3}));
}

// Standardization of rows of features: statistics from the train split only, applied to every
// split through a transform that the model carries; read back from the metadata it gives the
// same inputs.
TEST(DataFeatureScaler, FromTheTrainSplitAndCarriedAsMetadata) {
  DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = 2000;
  const Splits s = load(o, 0);
  ASSERT_TRUE(s.transform);
  const at::Tensor raw = s.train.x.to(at::kDouble);
  for (int f : {0, 14, 15}) {
    EXPECT_NEAR(s.transform->mean[f], raw.select(1, f).mean().item<double>(), 1e-9);
    EXPECT_NEAR(s.transform->std[f], raw.select(1, f).std(false).item<double>(), 1e-6);
  }
  // The test split is not part of the statistics.
  const at::Tensor test_in = s.test.inputs(0, s.test.size());
  EXPECT_GT(test_in.mean(0).abs().max().item<float>(), 1e-4f);
  const Transform back = Transform::from_metadata(s.transform->to_metadata(), "model.sqz");
  EXPECT_TRUE(back.apply(s.test.x).equal(test_in));
  // The wrong number of features is refused before anything runs.
  const std::string e = error_of<ConfigError>([&] { back.output_shape({15}, "data"); });
  EXPECT_TRUE(has(e, "15 features") && has(e, "16 means")) << e;
}

TEST(DataFeatureScaler, NoneLeavesRowsAlone) {
  DataOptions o;
  o.dataset = "synthetic-jets";
  o.samples = 500;
  o.normalize = "none";
  const Splits s = load(o, 0);
  EXPECT_FALSE(s.transform);
  EXPECT_TRUE(s.train.inputs(0, 10).equal(s.train.x.narrow(0, 0, 10)));
}

TEST(DataClassNames, MetadataRoundTripAndMapping) {
  const std::vector<std::string> names = {"g", "a,b", "back\\slash", "t"};
  const auto md = class_names_metadata(names);
  ASSERT_EQ(md.size(), 1u);
  EXPECT_EQ(class_names_from_metadata(md), names);
  EXPECT_TRUE(class_names_from_metadata({}).empty());
  EXPECT_TRUE(class_names_metadata({}).empty());

  // Data that holds only t and w (labels 0 and 1 in its own sorted order) evaluated by a model
  // of g q t w z: renumbered to 2 and 3.
  Splits s;
  s.class_names = {"t", "w"};
  s.num_classes = 2;
  s.test.y = at::tensor({0, 1, 1}, at::kLong);
  s.train.y = at::tensor({1}, at::kLong);
  map_to_model_classes(s, jet_class_names(), "data.yaml");
  EXPECT_TRUE(s.test.y.equal(at::tensor({2, 3, 3}, at::kLong)));
  EXPECT_TRUE(s.train.y.equal(at::tensor({3}, at::kLong)));
  EXPECT_EQ(s.class_names, jet_class_names());
  EXPECT_EQ(s.num_classes, 5);
  // A class the model does not know.
  Splits bad;
  bad.class_names = {"t", "higgs"};
  bad.test.y = at::tensor({0, 1}, at::kLong);
  const std::string e =
      error_of<InputError>([&] { map_to_model_classes(bad, jet_class_names(), "data.yaml"); });
  EXPECT_TRUE(has(e, "data.yaml") && has(e, "'higgs'") && has(e, "g, q, t, w, z")) << e;
}

#ifdef SQUEEZE_HAVE_HDF5

// One data set per feature, labels one-hot: how many jet files store them.
TEST(DataHdf5Columns, OneDataSetPerFeature) {
  TempDir dir;
  const std::string p = dir.file("jets.h5");
  const Dataset d = make_synthetic_jets(40, 0.2, 1);
  {
    H5::H5File f(p, H5F_ACC_TRUNC);
    f.createGroup("features");
    for (int i = 0; i < 16; ++i) {
      const hsize_t n = 40;
      H5::DataSpace space(1, &n);
      H5::DataSet ds = f.createDataSet("features/" + jet_feature_names()[i],
                                       H5::PredType::NATIVE_FLOAT, space);
      const at::Tensor col = d.x.select(1, i).contiguous();
      ds.write(col.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
    }
    const at::Tensor onehot = at::eye(5, at::kFloat).index_select(0, d.y).contiguous();
    hsize_t dims[2] = {40, 5};
    H5::DataSpace space(2, dims);
    H5::DataSet ds = f.createDataSet("labels", H5::PredType::NATIVE_FLOAT, space);
    ds.write(onehot.data_ptr<float>(), H5::PredType::NATIVE_FLOAT);
  }
  std::vector<std::string> cols;
  for (const auto& n : jet_feature_names()) cols.push_back("features/" + n);
  at::Tensor x, y;
  read_hdf5_columns(p, cols, "labels", x, y);
  EXPECT_TRUE(x.equal(d.x));
  EXPECT_TRUE(y.equal(d.y));
  // In another order: the columns follow the list.
  read_hdf5_columns(p, {cols[15], cols[0]}, "labels", x, y);
  EXPECT_TRUE(x.select(1, 0).equal(d.x.select(1, 15)));
  // A missing feature names the file, the name and what the file holds.
  const std::string e = error_of<InputError>(
      [&] { read_hdf5_columns(p, {"features/j_pt"}, "labels", x, y); });
  EXPECT_TRUE(has(e, "jets.h5") && has(e, "'features/j_pt'") && has(e, "features/j_zlogz")) << e;
}

#endif
