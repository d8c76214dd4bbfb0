#include "squeeze/util/interrupt.h"

#include <signal.h>

#include <atomic>
#include <cstring>

namespace squeeze::interrupt {

namespace {

std::atomic<int> g_signal{0};
int g_depth = 0;
struct sigaction g_old_int, g_old_term;

extern "C" void on_signal(int sig) {
  if (g_signal.load() != 0) {
    // The second signal: the user insists; the default action ends the process.
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g_signal.store(sig);
}

}  // namespace

Interrupted::Interrupted(int signal)
    : Error(msg("interrupted by ", signal == SIGTERM ? "SIGTERM" : "SIGINT")), signal_(signal) {}

InterruptScope::InterruptScope() {
  if (g_depth++ > 0) return;
  g_signal.store(0);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;  // a signal during a SQLite or file call must not fail it
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptScope::~InterruptScope() {
  if (--g_depth > 0) return;
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
  g_signal.store(0);
}

int pending() { return g_signal.load(); }

void check() {
  if (int s = g_signal.load()) throw Interrupted(s);
}

void raise_for_test(int signal) { g_signal.store(signal); }

}  // namespace squeeze::interrupt
