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

// Checks, before any work starts, that `dir` can be an output folder: the path is not under a
// regular file, the missing folders can be created and a file can be created and written in it
// (a real test, since root passes every permission check: read-only mounts, /proc). Folders it
// created for the test are removed again. Throws UserError (exit code 2) "WHAT 'DIR' cannot be
// used: <why>; choose a folder you can write ...".
void check_output_folder(const std::string& dir, const std::string& what);

// Removes the temporary files ("NAME.tmp-PID-N") under `dir` that dead processes left behind
// (a kill in the middle of an atomic write); returns their paths. Files of live processes stay.
std::vector<std::string> remove_stale_temps(const std::string& dir);

// Fault injection, for the tests of what a full disk or a kill leaves behind. The environment
// variable SQUEEZE_FAULT selects one atomic write by its 1-based index in the process (every
// write_file_atomic and commit_temp counts):
//   write-error:N    the N-th write fails with ENOSPC after half its data reached the temporary
//                    file (which is removed, as for a real ENOSPC);
//   kill-in-write:N  the process raises SIGKILL halfway through the N-th write (for commit_temp:
//                    before the rename), leaving the temporary file.
// Unset, nothing changes. check_fault_injection() throws ConfigError for a malformed value; the
// CLI calls it first, so a typo is not a silent normal run.
void check_fault_injection();

// Reads a whole file; throws InputError naming the path when it cannot.
std::string read_text(const std::string& path);

}  // namespace squeeze
