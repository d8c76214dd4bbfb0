// A clean stop on SIGINT / SIGTERM for long searches: the first signal sets a flag that long
// loops (the trainer, between batches; the autotune pipeline, between trials) check and answer by
// throwing Interrupted, so the caller can give work back and write what is finished. A second
// signal ends the process at once (the default action). Nothing changes for a process that never
// calls InterruptScope: the flag is then never set and Ctrl-C stops it as before.
#pragma once

#include "squeeze/util/error.h"

namespace squeeze::interrupt {

// Thrown by check() once a signal arrived. Not a UserError: the CLI maps it to 128 + signal.
class Interrupted : public Error {
 public:
  explicit Interrupted(int signal);
  int signal() const { return signal_; }

 private:
  int signal_;
};

// Installs the SIGINT/SIGTERM handlers for its lifetime (nestable; the outermost restores the
// previous handlers) and clears the flag on entry.
class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
};

// The signal received since the outermost InterruptScope started, or 0.
int pending();
// Throws Interrupted when a signal is pending.
void check();
// Sets the flag as a signal would (tests).
void raise_for_test(int signal);

}  // namespace squeeze::interrupt
