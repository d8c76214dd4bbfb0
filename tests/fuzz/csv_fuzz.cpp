// Fuzz target: the CSV reader (data::read_csv with the label column "label" and every other
// column as a feature, as a csv data block without `features:` reads it). See fuzz_target.h.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "squeeze/data/dataset.h"
#include "squeeze/util/error.h"

SQUEEZE_FUZZ_TARGET(csv) {
  const std::string& path = squeeze::fuzz::input_file("csv", data, size);
  try {
    at::Tensor x, y;
    std::vector<std::string> class_names;
    squeeze::data::read_csv(path, "label", {}, x, y, &class_names);
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
