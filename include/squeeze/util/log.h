// Console output: levelled log lines on stderr and progress bars (rate and ETA on a terminal,
// plain periodic lines otherwise). --quiet and --log-level set the level.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "squeeze/util/error.h"

namespace squeeze::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kQuiet = 4 };

void set_level(Level level);
Level level();
Level parse_level(const std::string& name);  // debug|info|warn|error|quiet; ConfigError otherwise

// Whether a line at `level` goes anywhere: the console at its level, or a log file (FileSink),
// which takes info, warnings and errors whatever the console's level.
bool enabled(Level level);

// Writes the line to the console when its level is shown there, and to the log file if any.
void write(Level level, const std::string& text);

template <typename... Args>
void info(const Args&... args) {
  if (enabled(Level::kInfo)) write(Level::kInfo, msg(args...));
}
template <typename... Args>
void warn(const Args&... args) {
  if (enabled(Level::kWarn)) write(Level::kWarn, msg(args...));
}
template <typename... Args>
void debug(const Args&... args) {
  if (enabled(Level::kDebug)) write(Level::kDebug, msg(args...));
}

// While it lives, every log line at info level or above is also kept for a log file, each with a
// UTC time stamp ("2026-12-03T11:38:11Z "): held in memory until open(path), then appended to
// the file, flushed per line so that a killed process leaves every line it wrote. One sink at a
// time (a second replaces the first until it ends).
class FileSink {
 public:
  FileSink();
  ~FileSink();
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;
  // Opens `path` for appending, writes `marker` (a line as is, e.g. "== resumed ... ==") and
  // the lines held so far. Throws UserError naming the path when it cannot be opened.
  void open(const std::string& path, const std::string& marker);

  struct Impl;  // log.cpp's

 private:
  Impl* impl_;
  Impl* previous_;
};

// A progress bar over `total` units. On a terminal it redraws one line (at most 10 times a
// second); otherwise it prints a plain line every `interval` seconds and at the end.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it", double interval_s = 10.0);
  ~Progress();
  void update(int64_t n = 1, const std::string& status = "");
  void finish(const std::string& status = "");

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  double interval_s_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace squeeze::log
