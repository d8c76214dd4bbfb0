// Data-parallel training across processes on libtorch's c10d: rendezvous through a TCPStore
// (hosted by rank 0), collectives through ProcessGroupGloo (TCP; loopback on one machine).
//
// One process-wide group: init() joins it, train::fit uses it when it is active (gradients
// all-reduced in buckets, data sharded by rank), and the workflow writes only on rank 0
// (writes()). Every rank runs the same workflow, so the collectives line up: each rank makes the
// same passes on the same graph, and fit broadcasts rank 0's parameters, masks and quantization
// parameters so that they are identical whatever the passes did.
//
// Failure: a collective that cannot complete (a peer process died, its connection closed, or
// nothing arrived within the timeout) throws PeerLost naming the lost rank when it can tell
// (ranks on this machine are checked by process id), never hangs past the timeout.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "squeeze/util/error.h"

namespace squeeze::dist {

struct Options {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // Rendezvous and every collective: a rank that is not heard from within this many seconds is
  // taken as lost (Gloo's and the store's timeout).
  double timeout_s = 60.0;
};

// A collective failed because a rank is gone or silent. Exit code 1 (a runtime failure).
class PeerLost : public Error {
 public:
  using Error::Error;
};

// Checks the options (world size >= 1, 0 <= rank < world size, port in 1..65535, timeout > 0);
// ConfigError naming the flag (--rank, --world-size, --master, --dist-timeout) and its value.
void validate(const Options& o);

// "ADDR:PORT" (a host name, an IPv4 address, or [IPv6]:PORT) into addr and port; ConfigError
// naming `what` ("--master") with the value and the expected form otherwise.
void parse_master(const std::string& text, const std::string& what, std::string& addr, int& port);

// torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR (default 127.0.0.1), MASTER_PORT
// (default 29500). nullopt when WORLD_SIZE is not set; ConfigError naming the variable when one
// is not a number.
std::optional<Options> options_from_env();

// True when `port` can be bound on `addr` now (a free port for the store).
bool port_free(const std::string& addr, int port);
// A port of the loopback interface that was free a moment ago (for --nproc).
int free_loopback_port();

// Whether this build has c10d's Gloo backend (libgloo-dev at build time).
bool available();

// Joins the group: rank 0 hosts the TCPStore at master_addr:master_port, every rank connects
// and builds the Gloo group. A world size of 1 does nothing. Throws ConfigError when rank 0
// cannot listen on the port (in use), PeerLost when the others do not all arrive within the
// timeout, UnsupportedError when the build has no Gloo.
void init(const Options& o);
// Leaves the group (idempotent); at exit of a run.
void shutdown();

bool active();       // init() made a group of 2 or more processes
int rank();          // 0 when not active
int world_size();    // 1 when not active
// False on ranks other than 0 of an active group: they write no file (report, journal,
// checkpoints, run.log) and skip what is only reported (test evaluation, latency).
bool writes();
double timeout_seconds();

// The largest bucket of a bucketed collective, in bytes (PyTorch DDP's default, 25 MiB).
constexpr int64_t kBucketBytes = 25 * 1024 * 1024;

// In-place collectives over the tensors (any dtypes, any shapes; each flattened into buckets of
// consecutive same-dtype tensors of at most kBucketBytes). No autograd is recorded.
void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
void all_reduce_sum(const std::vector<at::Tensor>& tensors);
// Sums of a few numbers (epoch statistics).
std::vector<double> all_reduce_sum(const std::vector<double>& values);
void barrier();

// Time spent in collectives since the last reset (for the per-step figures of fit).
struct Counters {
  double seconds = 0.0;
  int64_t calls = 0;
  int64_t bytes = 0;
};
Counters& counters();

// The contiguous share of `n` items that `rank` of `world` takes: [begin, end). Shares differ
// by at most one item; ranks after the n-th get none.
void shard(int64_t n, int rank, int world, int64_t& begin, int64_t& end);

}  // namespace squeeze::dist
