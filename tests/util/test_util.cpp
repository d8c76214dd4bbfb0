#include <gtest/gtest.h>

#include <filesystem>

#include "squeeze/deploy/latency.h"
#include "squeeze/io/model_io.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/env.h"
#include "squeeze/util/error.h"
#include "squeeze/util/fs.h"
#include "squeeze/util/strings.h"
#include "testing/asserts.h"

namespace squeeze {
namespace {

TEST(Strings, GlobMatch) {
  EXPECT_TRUE(glob_match("fc*", "fc1"));
  EXPECT_TRUE(glob_match("*conv?", "layer1_conv2"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_FALSE(glob_match("fc*", "conv1"));
  EXPECT_FALSE(glob_match("conv?", "conv12"));
  EXPECT_TRUE(glob_match("a*b*c", "axxbyyc"));
  EXPECT_FALSE(glob_match("a*b*c", "axxbyy"));
}

TEST(Strings, NumbersForPeople) {
  EXPECT_EQ(with_commas(421642), "421,642");
  EXPECT_EQ(with_commas(-1000), "-1,000");
  EXPECT_EQ(with_commas(12), "12");
  EXPECT_EQ(human_bytes(512), "512 B");
  EXPECT_EQ(human_bytes(1686568), "1.69 MB");
  EXPECT_EQ(fnv1a_hex(""), "cbf29ce484222325");
}

TEST(Fs, AtomicWriteReplacesWholeFilesOnly) {
  testing::TempDir dir;
  std::string path = dir.file("sub/a.txt");
  write_text_atomic(path, "first");
  EXPECT_EQ(read_text(path), "first");
  write_text_atomic(path, "second");
  EXPECT_EQ(read_text(path), "second");
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos);
  // Writing onto a directory fails, leaves the directory and no temporary file.
  EXPECT_THROW(write_text_atomic(dir.file("sub"), "x"), Error);
  EXPECT_TRUE(std::filesystem::is_directory(dir.file("sub")));
  EXPECT_THROW(read_text(dir.file("missing")), InputError);
}

TEST(Fs, AtomicWritesCreateFoldersAndNameTheUsersPathOnFailure) {
  testing::TempDir dir;
  write_file_atomic(dir.file("x/y/z.bin"), {"abc"});
  EXPECT_EQ(read_text(dir.file("x/y/z.bin")), "abc");
  // A library that writes the temporary file itself finds its folder ready.
  const std::string tmp = temp_path_for(dir.file("p/q/r.pt"));
  EXPECT_TRUE(std::filesystem::is_directory(dir.file("p/q")));
  EXPECT_EQ(tmp.rfind(dir.file("p/q/r.pt.tmp-"), 0), 0u) << tmp;

  dir.write("plain", "keep me");
  for (const std::string& path : {dir.file("plain/a.txt"), dir.file("plain/sub/a.txt")}) {
    try {
      write_text_atomic(path, "x");
      FAIL() << "no error for " << path;
    } catch (const UserError& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find("cannot write '" + path + "'"), std::string::npos) << w;
      EXPECT_NE(w.find("'" + dir.file("plain") + "' is a file, not a folder"), std::string::npos)
          << w;
      EXPECT_EQ(w.find(".tmp-"), std::string::npos) << w;
    }
    EXPECT_THROW(temp_path_for(path), UserError);
  }
  EXPECT_EQ(read_text(dir.file("plain")), "keep me");
  try {
    write_text_atomic(dir.file("x"), "onto a folder");
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("it is a folder"), std::string::npos) << e.what();
  }
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(Env, ReportsThreadsAndBlas) {
  EXPECT_EQ(env::set_threads(1), 1);
  auto d = env::describe();
  EXPECT_EQ(d["threads"], "1");
  EXPECT_FALSE(d["libtorch"].empty());
  // The machine this suite targets has OpenBLAS installed (scripts/install-deps.sh).
  EXPECT_NE(env::blas_name(), "reference");
  env::set_threads(0);
}

TEST(ModelIo, ZooSpecsWithParameters) {
  ir::Graph g = io::load_model("zoo:mlp?in_features=6&hidden=8,4&num_classes=3", 0);
  EXPECT_EQ(g.inputs[0].shape, (ir::Shape{ir::kDynamic, 6}));
  EXPECT_EQ(g.shape_of(g.outputs[0]), (ir::Shape{ir::kDynamic, 3}));
  EXPECT_THROW(io::load_model("zoo:mlp?in_features", 0), ConfigError);
  EXPECT_THROW(io::load_model("zoo:nothing", 0), ConfigError);
  EXPECT_THROW(io::load_model("/no/such/file.sqz", 0), InputError);
}

TEST(Latency, InterleavedMeasurementOfSeveralModels) {
  ir::Graph a = models::build("jet_tagger", {}, 0), b = models::build("mlp", {{"in_features", "16"}}, 0);
  deploy::LatencyOptions o;
  o.warmup = 1;
  o.min_runs = 3;
  o.max_runs = 3;
  auto stats = deploy::measure_latency({&a, &b}, 4, o);
  ASSERT_EQ(stats.size(), 2u);
  for (const auto& s : stats) {
    EXPECT_EQ(s.batch, 4);
    EXPECT_EQ(s.runs, 3);
    EXPECT_LE(s.min_us, s.median_us);
    EXPECT_LE(s.median_us, s.max_us);
    EXPECT_GT(s.samples_per_s, 0.0);
  }
}

}  // namespace
}  // namespace squeeze
