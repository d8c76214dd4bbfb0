// What `squeeze config --example` and `squeeze methods` print: an annotated workflow, and every
// method's parameters as compress::method_params records them from the validating code.
#pragma once

#include <string>

namespace squeeze::cli {

// An annotated workflow with every top-level key; it parses and runs (tests check both).
const std::string& example_config();

// Every method's parameters (`name` empty), or one method's (name or alias; ConfigError naming
// the valid methods when unknown), as plain text or as the Markdown of docs/methods.md.
std::string methods_text(const std::string& name);
std::string methods_markdown();

}  // namespace squeeze::cli
