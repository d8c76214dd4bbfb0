#include "squeeze/deploy/export.h"

#include "squeeze/deploy/cpp_export.h"
#include "squeeze/deploy/torchscript.h"
#include "squeeze/io/onnx.h"
#include "squeeze/io/qonnx.h"
#include "squeeze/util/error.h"
#include "squeeze/util/strings.h"

namespace squeeze::deploy {

namespace {
const std::vector<std::string> kAllFormats = {"onnx", "qonnx", "torchscript", "cpp"};
}

std::vector<std::string> export_formats() { return {"onnx", "qonnx", "torchscript", "cpp"}; }

void check_export_format(const std::string& format, const std::string& where) {
  if (std::find(kAllFormats.begin(), kAllFormats.end(), format) == kAllFormats.end())
    throw ConfigError(msg(where, ": unknown export format '", format, "' (valid: ", join(kAllFormats, ", "), ")"));
  auto avail = export_formats();
  if (std::find(avail.begin(), avail.end(), format) == avail.end())
    throw UnsupportedError(msg(where, ": export to '", format, "' is not available in this build yet (available: ",
                               join(avail, ", "), ")"));
}

std::string export_extension(const std::string& format) {
  if (format == "onnx") return ".onnx";
  if (format == "qonnx") return ".qonnx.onnx";
  if (format == "torchscript") return ".pt";
  if (format == "cpp") return "_cpp";  // a folder
  throw ConfigError(msg("unknown export format '", format, "'"));
}

void export_model(const ir::Graph& graph, const std::string& format, const std::string& path) {
  check_export_format(format, "export");
  if (format == "onnx") return io::export_onnx(graph, path);
  if (format == "qonnx") return io::export_qonnx(graph, path);
  if (format == "torchscript") return export_torchscript(graph, path);
  if (format == "cpp") return export_cpp(graph, CppExportOptions{}, path);
}

}  // namespace squeeze::deploy
