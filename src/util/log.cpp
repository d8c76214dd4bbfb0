#include "squeeze/util/log.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>

namespace squeeze::log {

namespace {
Level g_level = Level::kInfo;

std::string human_time(double s) {
  if (s < 0 || s > 1e7) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "quiet") return Level::kQuiet;
  throw ConfigError(msg("--log-level: unknown level '", name, "' (valid: debug, info, warn, error, quiet)"));
}

struct FileSink::Impl {
  std::ofstream out;
  std::string held;  // lines before open()
  void add(const std::string& line) {
    if (out.is_open())
      out << line << std::endl;
    else
      held += line + "\n";
  }
};

namespace {
FileSink::Impl* g_sink = nullptr;

std::string utc_stamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}
}  // namespace

bool enabled(Level l) { return l >= g_level || (g_sink && l >= Level::kInfo && l < Level::kQuiet); }

void write(Level l, const std::string& text) {
  const char* prefix = l == Level::kWarn ? "warning: " : l == Level::kError ? "error: " : "";
  if (l >= g_level) std::cerr << prefix << text << std::endl;
  if (g_sink && l >= Level::kInfo) g_sink->add(utc_stamp() + " " + prefix + text);
}

FileSink::FileSink() : impl_(new Impl), previous_(g_sink) { g_sink = impl_; }

void FileSink::open(const std::string& path, const std::string& marker) {
  impl_->out.open(path, std::ios::app);
  if (!impl_->out)
    throw UserError(msg("cannot append to the log file '", path, "': ", std::strerror(errno)));
  impl_->out << marker << "\n" << impl_->held << std::flush;
  impl_->held.clear();
}

FileSink::~FileSink() {
  g_sink = previous_;
  delete impl_;
}


Progress::Progress(std::string label, int64_t total, std::string unit, double interval_s)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      interval_s_(interval_s),
      tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_ && done_ > 0) finish();
}

void Progress::update(int64_t n, const std::string& status) {
  done_ += n;
  if (!status.empty()) status_ = status;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.1 : interval_s_)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  draw(true);
}

void Progress::draw(bool final) {
  if (level() > Level::kInfo) return;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  double eta = rate > 0 ? (total_ - done_) / rate : -1;
  char line[512];
  if (tty_) {
    int width = 24;
    int filled = total_ > 0 ? static_cast<int>(width * std::min<double>(1.0, double(done_) / total_)) : 0;
    std::string bar(filled, '#');
    bar += std::string(width - filled, '.');
    std::snprintf(line, sizeof line, "\r%s [%s] %lld/%lld %s, %.1f %s/s, %s %s %s\033[K", label_.c_str(), bar.c_str(),
                  (long long)done_, (long long)total_, unit_.c_str(), rate, unit_.c_str(),
                  final ? "took" : "ETA", human_time(final ? elapsed : eta).c_str(), status_.c_str());
    std::fputs(line, stderr);
    if (final) std::fputs("\n", stderr);
  } else {
    std::snprintf(line, sizeof line, "%s: %lld/%lld %s (%.0f%%), %.1f %s/s, %s %s %s\n", label_.c_str(),
                  (long long)done_, (long long)total_, unit_.c_str(), total_ > 0 ? 100.0 * done_ / total_ : 100.0,
                  rate, unit_.c_str(), final ? "took" : "ETA", human_time(final ? elapsed : eta).c_str(),
                  status_.c_str());
    std::fputs(line, stderr);
  }
  std::fflush(stderr);
}

}  // namespace squeeze::log
