#include "squeeze/io/model_io.h"

#include <filesystem>

#include "squeeze/io/onnx.h"
#include "squeeze/io/sqz.h"
#include "squeeze/models/zoo.h"
#include "squeeze/util/error.h"

namespace squeeze::io {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

ir::Graph load_model(const std::string& spec, uint64_t seed) {
  if (spec.rfind("zoo:", 0) == 0) {
    std::string rest = spec.substr(4);
    std::string name = rest.substr(0, rest.find('?'));
    std::map<std::string, std::string> params;
    if (rest.find('?') != std::string::npos) {
      std::string query = rest.substr(rest.find('?') + 1);
      size_t start = 0;
      while (start < query.size()) {
        size_t end = query.find('&', start);
        std::string kv = query.substr(start, end == std::string::npos ? std::string::npos : end - start);
        size_t eq = kv.find('=');
        if (eq == std::string::npos)
          throw ConfigError(msg("model '", spec, "': parameter '", kv, "' must be key=value"));
        params[kv.substr(0, eq)] = kv.substr(eq + 1);
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    return models::build(name, params, seed);
  }
  if (!std::filesystem::exists(spec))
    throw InputError(msg("model file '", spec, "' does not exist (MODEL is an .onnx file, a .sqz checkpoint or zoo:NAME)"));
  if (ends_with(spec, ".sqz")) {
    ir::Graph g = load_sqz(spec);
    ir::verify(g);
    return g;
  }
  if (ends_with(spec, ".onnx")) return import_onnx(spec);
  throw ConfigError(msg("model '", spec, "': unknown file type (valid: .onnx, .sqz, or zoo:NAME)"));
}

void save_model(const ir::Graph& graph, const std::string& path) {
  if (ends_with(path, ".onnx"))
    export_onnx(graph, path);
  else
    save_sqz(graph, path);
}

}  // namespace squeeze::io
