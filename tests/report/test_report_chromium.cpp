// report.html rendered by a real browser (Debian's chromium, headless): every chart is laid out
// with a real size inside the page, nothing is wider than the window, and the rendered page is
// not blank. Skipped, saying so, only when chromium is not installed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "report/report_fixture.h"
#include "squeeze/report/report.h"

namespace squeeze::report {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::ship_report;
using testing::TempDir;

std::string chromium_path() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// Runs chromium headless on `html`; returns its stdout (the DOM with --dump-dom).
std::string run_chromium(const std::string& chromium, const std::string& profile,
                         const std::string& args, const std::string& html, int* code) {
  // --no-sandbox: the tests may run as root, where chromium refuses its sandbox.
  const std::string cmd = "timeout 120 " + chromium +
                          " --headless --disable-gpu --no-sandbox --no-first-run "
                          "--disable-extensions --user-data-dir=" + profile + " " + args +
                          " file://" + html + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *code = -1;
    return "";
  }
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// The test's own copy of report.html with a script that writes what the browser laid out into
// the DOM (report.html itself has no script: it must open offline and stay inert).
const char* kProbe = R"(<script>
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('svg.chart').forEach(function (s) {
    var b = s.getBoundingClientRect();
    out.push(s.id + ':' + Math.round(b.width) + 'x' + Math.round(b.height) + '@' +
             Math.round(b.right) + ':' + s.querySelectorAll('circle,rect,path,line').length);
  });
  var p = document.createElement('pre');
  p.id = 'probe';
  p.textContent = 'charts=' + out.join(';') + '|scroll=' + document.documentElement.scrollWidth +
                  '|window=' + window.innerWidth;
  document.body.appendChild(p);
});
</script>)";

TEST(ReportChromium, ChartsRenderInsideThePage) {
  const std::string chromium = chromium_path();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (apt-get install chromium)";
  TempDir dir;
  write_report(ship_report(), dir.path());
  std::string html = read_file(dir.file("report.html"));
  ASSERT_EQ(html.find("<script"), std::string::npos);
  html.insert(html.rfind("</body>"), kProbe);
  {
    std::ofstream(dir.file("probe.html")) << html;
  }
  int code = 0;
  const std::string dom = run_chromium(chromium, dir.file("profile"),
                                       "--window-size=1200,900 --dump-dom",
                                       dir.file("probe.html"), &code);
  ASSERT_EQ(code, 0) << dom;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("charts=([^|]*)\\|scroll=(\\d+)\\|window=(\\d+)")))
      << dom.substr(0, 2000);
  const std::string charts = m[1];
  const int scroll = std::stoi(m[2]), window = std::stoi(m[3]);
  EXPECT_LE(scroll, window) << "the page is wider than the window: a table or chart overflows";
  // Every chart the report writes, laid out with a real size, inside the window, with marks.
  for (const char* id : {"chart-accuracy-size", "chart-accuracy-latency", "chart-accuracy-bars",
                         "chart-layers-1", "chart-layers-2", "chart-layers-3", "chart-layers-4",
                         "chart-curves"}) {
    std::smatch c;
    ASSERT_TRUE(std::regex_search(charts, c,
                                  std::regex(std::string(id) + ":(\\d+)x(\\d+)@(\\d+):(\\d+)")))
        << id << " not rendered; charts: " << charts;
    EXPECT_GT(std::stoi(c[1]), 300) << id;
    EXPECT_GT(std::stoi(c[2]), 100) << id;
    EXPECT_LE(std::stoi(c[3]), window) << id;
    EXPECT_GT(std::stoi(c[4]), 5) << id;  // points, bars, lines drawn
  }
}

TEST(ReportChromium, ScreenshotIsNotBlank) {
  const std::string chromium = chromium_path();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (apt-get install chromium)";
  TempDir dir;
  write_report(ship_report(), dir.path());
  std::ofstream(dir.file("blank.html")) << "<!DOCTYPE html><html><body></body></html>\n";
  int code = 0;
  run_chromium(chromium, dir.file("profile"),
               "--window-size=1200,1600 --hide-scrollbars --screenshot=" + dir.file("report.png"),
               dir.file("report.html"), &code);
  ASSERT_EQ(code, 0);
  run_chromium(chromium, dir.file("profile"),
               "--window-size=1200,1600 --hide-scrollbars --screenshot=" + dir.file("blank.png"),
               dir.file("blank.html"), &code);
  ASSERT_EQ(code, 0);
  const std::string png = read_file(dir.file("report.png"));
  const std::string blank = read_file(dir.file("blank.png"));
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  // A page of charts and tables compresses far worse than an empty one.
  EXPECT_GT(png.size(), 5 * blank.size()) << png.size() << " vs blank " << blank.size();
}

}  // namespace
}  // namespace squeeze::report
