// File helpers: atomic writes (temporary file in the same folder, then rename).
#pragma once

#include <string>

namespace squeeze {

// Writes the text to path atomically; creates parent folders. Throws Error on failure and
// leaves no temporary file behind.
void write_text_atomic(const std::string& path, const std::string& text);

// A temporary path next to `path` for an atomic write ("path.tmp-<pid>-<n>").
std::string temp_path_for(const std::string& path);

// Renames tmp onto path; on failure removes tmp and throws Error naming path.
void commit_temp(const std::string& tmp, const std::string& path);

// Reads a whole file; throws InputError naming the path when it cannot.
std::string read_text(const std::string& path);

}  // namespace squeeze
