// Small string helpers shared across modules.
#pragma once

#include <cstddef>
#include <cstdint>
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

// FNV-1a 64 over bytes, continuing from `hash` (the offset basis by default).
uint64_t fnv1a64(const char* data, size_t n, uint64_t hash = 0xcbf29ce484222325ULL);

// Lower-case hex FNV-1a 64 of the text.
std::string fnv1a_hex(const std::string& text);

}  // namespace squeeze
