// File helpers: atomic writes (temporary file in the same folder, then rename).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace squeeze {

// Every writer below creates the missing folders of `path` first. Errors name `path` (the user's
// path), never the temporary file; they are UserError (exit code 2) when the user can fix them
// by choosing another path (a parent is a regular file, no permission, `path` is a folder) and
// Error otherwise (disk full, I/O error).

// Writes the chunks to a temporary file next to path ("path.tmp-<pid>-<random>"), fsyncs it and
// renames it over path, so readers see the old file or the new one, never a partial one. On any
// failure the temporary file is removed and the error names path and the cause.
void write_file_atomic(const std::string& path, const std::vector<std::string_view>& chunks);

// write_file_atomic of one text.
void write_text_atomic(const std::string& path, const std::string& text);

// A temporary path next to `path` for an atomic write ("path.tmp-<pid>-<n>"). Creates the
// parent folders of `path` and checks that they are writable (throws as above otherwise), so a
// library that writes the temporary file itself does not fail naming it.
std::string temp_path_for(const std::string& path);

// Renames tmp onto path; on failure removes tmp and throws, naming path.
void commit_temp(const std::string& tmp, const std::string& path);

// Reads a whole file; throws InputError naming the path when it cannot.
std::string read_text(const std::string& path);

}  // namespace squeeze
