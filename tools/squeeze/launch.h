// `squeeze run --nproc N`: starts N ranks of this program on this machine (torchrun's
// environment variables set), waits for them and reports the first failure.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/train/distributed.h"

namespace squeeze::cli {

// The data-parallel flags of `run` (unset: -1 / empty).
struct DistFlags {
  int nproc = -1;
  int rank = -1;
  int world_size = -1;
  std::string master;      // ADDR:PORT
  double timeout_s = 60.0;
};

// The program --nproc starts (main() sets it to /proc/self/exe; empty in-process, where --nproc
// is refused).
void set_program(const std::string& path);

// The group this process joins: from --rank/--world-size/--master, else from torchrun's
// environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); nullopt for one process (also for a
// world size of 1). ConfigError (exit 2) for an impossible combination, naming the flags.
std::optional<dist::Options> resolve_group(const DistFlags& flags);

// Starts `nproc` ranks of the program with `args` (the run's arguments without --nproc and
// --master) on 127.0.0.1 (a free port unless --master names one: ConfigError when it is in use)
// and waits. When a rank fails, the others get the group's timeout (plus a grace) to fail on
// their own, then SIGTERM, then SIGKILL. SIGINT and SIGTERM to this process go to the ranks.
// Returns 0 when every rank succeeded; otherwise the first failed rank's code (2 stays 2, an
// interrupt 128 + signal, anything else 1), after a message on `err` naming each failed rank.
int launch(int nproc, const DistFlags& flags, const std::vector<std::string>& args,
           const std::string& resume_hint, std::ostream& err);

// args without the launcher's own options (--nproc N, --master ADDR:PORT, with = or not).
std::vector<std::string> rank_arguments(const std::vector<std::string>& args);

}  // namespace squeeze::cli
