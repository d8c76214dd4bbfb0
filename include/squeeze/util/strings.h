// Small string helpers shared across modules.
#pragma once

#include <string>
#include <vector>

namespace squeeze {

// Shell-style pattern: `*` any run of characters, `?` one character.
bool glob_match(const std::string& pattern, const std::string& text);

// "1,234,567"
std::string with_commas(int64_t n);

// "1.23 MB", "512 B"
std::string human_bytes(double bytes);

std::string join(const std::vector<std::string>& items, const std::string& sep);

// Lower-case hex FNV-1a 64 of the text.
std::string fnv1a_hex(const std::string& text);

}  // namespace squeeze
