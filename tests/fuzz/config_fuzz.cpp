// Fuzz target: the workflow config parser (pipeline::parse_config from YAML text: yaml-cpp, the
// Params tree, every section's keys and values, the methods' parameter checks). See
// fuzz_target.h.
#include <string>

#include "fuzz/fuzz_target.h"
#include "squeeze/pipeline/config.h"
#include "squeeze/util/error.h"

SQUEEZE_FUZZ_TARGET(config) {
  squeeze::fuzz::init();
  try {
    squeeze::pipeline::parse_config(std::string(reinterpret_cast<const char*>(data), size), {},
                                    "fuzz.yaml");
  } catch (const squeeze::UserError&) {
  }
  return 0;
}
