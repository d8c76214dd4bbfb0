// c10d's TCPStore and ProcessGroupGloo behind squeeze::dist (train/distributed.h). The c10d
// headers are included here only; without Gloo (no libgloo-dev at build time) init() of more
// than one process says what to install.
#include "squeeze/train/distributed.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#ifdef SQUEEZE_HAVE_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include "squeeze/util/log.h"

namespace squeeze::dist {

namespace {

struct Peer {
  std::string host;
  long pid = 0;
};

struct State {
  bool active = false;
  int rank = 0;
  int world = 1;
  double timeout_s = 60.0;
  std::vector<Peer> peers;
#ifdef SQUEEZE_HAVE_GLOO
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
#endif
};

State& state() {
  static State s;
  return s;
}

Counters g_counters;

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "?";
  return buf;
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

// A process of this machine that is gone: no such pid, or a zombie not yet reaped.
bool process_gone(long pid) {
  if (pid <= 0) return false;
  if (kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return true;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

// What can be said about the ranks a failed collective lost: those on this machine whose
// process is gone, by number; otherwise that one did not answer.
std::string lost_description() {
  const State& s = state();
  const std::string me = host_name();
  std::vector<std::string> gone;
  bool remote = false, local = false;
  // A killed peer's sockets close while its process is still exiting (before it is a zombie), so
  // the connection error can arrive first: look again for up to a second.
  for (int attempt = 0; attempt < 20 && gone.empty(); ++attempt) {
    if (attempt > 0) {
      if (!local) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (int q = 0; q < static_cast<int>(s.peers.size()); ++q) {
      if (q == s.rank) continue;
      if (s.peers[q].host != me) {
        remote = true;
        continue;
      }
      local = true;
      if (process_gone(s.peers[q].pid)) gone.push_back(msg("rank ", q, " (pid ", s.peers[q].pid, ")"));
    }
  }
  if (!gone.empty()) {
    std::string out;
    for (size_t i = 0; i < gone.size(); ++i) out += (i ? ", " : "") + gone[i];
    return out + (gone.size() == 1 ? " is gone" : " are gone");
  }
  return msg("a peer rank stopped answering or closed its connection",
             remote ? " (ranks on other machines cannot be checked from here)" : "",
             "; no rank answered within the timeout of ", s.timeout_s,
             " s or a connection was closed");
}

std::string first_line(const std::string& text) {
  const size_t nl = text.find('\n');
  return nl == std::string::npos ? text : text.substr(0, nl);
}

[[noreturn]] void lost(const char* what, const std::string& detail) {
  throw PeerLost(msg("data-parallel training (rank ", state().rank, " of ", state().world, "): ",
                     what, " failed: ", lost_description(), " [", first_line(detail), "]"));
}

int64_t nbytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

// Runs `op` on each bucket of consecutive same-dtype tensors (flattened into one buffer of at
// most kBucketBytes, or one tensor when it alone is larger) and copies the result back.
template <typename Op>
void bucketed(const std::vector<at::Tensor>& tensors, Op op) {
  at::NoGradGuard no_grad;
  // Grouped by dtype (in order within each), so that interleaved dtypes (a scale, a zero point,
  // the next scale...) still make few collectives.
  std::vector<at::Tensor> ts;
  std::vector<at::ScalarType> dtypes;
  for (const at::Tensor& t : tensors)
    if (t.defined() && t.numel() > 0 &&
        std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end())
      dtypes.push_back(t.scalar_type());
  for (at::ScalarType d : dtypes)
    for (const at::Tensor& t : tensors)
      if (t.defined() && t.numel() > 0 && t.scalar_type() == d) ts.push_back(t.detach());
  size_t i = 0;
  while (i < ts.size()) {
    const auto dtype = ts[i].scalar_type();
    size_t j = i;
    int64_t bytes = 0;
    while (j < ts.size() && ts[j].scalar_type() == dtype &&
           (j == i || bytes + nbytes(ts[j]) <= kBucketBytes)) {
      bytes += nbytes(ts[j]);
      ++j;
    }
    std::vector<at::Tensor> parts;
    for (size_t k = i; k < j; ++k) parts.push_back(ts[k].reshape({-1}));
    at::Tensor flat = parts.size() == 1 ? parts[0].clone() : at::cat(parts);
    op(flat);
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      ts[k].copy_(flat.narrow(0, off, ts[k].numel()).view(ts[k].sizes()));
      off += ts[k].numel();
    }
    g_counters.bytes += bytes;
    i = j;
  }
}

}  // namespace

void validate(const Options& o) {
  if (o.world_size < 1)
    throw ConfigError(msg("--world-size: ", o.world_size, " is invalid; valid: 1 or more processes"));
  if (o.rank < 0 || o.rank >= o.world_size)
    throw ConfigError(msg("--rank: ", o.rank, " is outside the world of ", o.world_size,
                          " processes (valid: 0 to ", o.world_size - 1, ")"));
  if (o.master_port < 1 || o.master_port > 65535)
    throw ConfigError(msg("--master: port ", o.master_port, " is invalid (valid: 1 to 65535)"));
  if (o.master_addr.empty()) throw ConfigError("--master: the address is empty (ADDR:PORT)");
  if (!(o.timeout_s > 0))
    throw ConfigError(msg("--dist-timeout: ", o.timeout_s, " is invalid; valid: seconds > 0"));
}

void parse_master(const std::string& text, const std::string& what, std::string& addr, int& port) {
  const std::string form = " (expected ADDR:PORT, e.g. 127.0.0.1:29500, node0:29500 or [::1]:29500)";
  std::string host, p;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw ConfigError(msg(what, ": '", text, "' is malformed", form));
    host = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon)
      throw ConfigError(msg(what, ": '", text, "' is malformed", form));
    host = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (host.empty()) throw ConfigError(msg(what, ": '", text, "' has no address", form));
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    throw ConfigError(msg(what, ": '", text, "' has no valid port", form));
  port = std::stoi(p);
  if (port < 1 || port > 65535)
    throw ConfigError(msg(what, ": port ", port, " is invalid (valid: 1 to 65535)"));
  addr = host;
}

std::optional<Options> options_from_env() {
  const char* ws = std::getenv("WORLD_SIZE");
  if (!ws) return std::nullopt;
  auto number = [](const char* name, const char* value) {
    std::string v = value ? value : "";
    if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
      throw ConfigError(msg("environment variable ", name, "='", v,
                            "' is not a non-negative integer (torchrun's variables: RANK, "
                            "WORLD_SIZE, MASTER_ADDR, MASTER_PORT)"));
    return std::stoi(v);
  };
  Options o;
  o.world_size = number("WORLD_SIZE", ws);
  const char* r = std::getenv("RANK");
  if (!r && o.world_size > 1)
    throw ConfigError("environment variable WORLD_SIZE is set but RANK is not (torchrun sets both)");
  o.rank = r ? number("RANK", r) : 0;
  if (const char* a = std::getenv("MASTER_ADDR")) o.master_addr = a;
  if (const char* p = std::getenv("MASTER_PORT")) o.master_port = number("MASTER_PORT", p);
  return o;
}

bool port_free(const std::string& addr, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if (getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
    return true;  // an address this machine cannot resolve is not ours to bind
  bool free = true;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE) free = false;
    close(fd);
  }
  freeaddrinfo(res);
  return free;
}

int free_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(msg("--nproc: cannot open a socket: ", std::strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string e = std::strerror(errno);
    close(fd);
    throw Error("--nproc: cannot find a free port on 127.0.0.1: " + e);
  }
  close(fd);
  return ntohs(a.sin_port);
}

bool available() {
#ifdef SQUEEZE_HAVE_GLOO
  return true;
#else
  return false;
#endif
}

void init(const Options& o) {
  validate(o);
  shutdown();
  State& s = state();
  s.timeout_s = o.timeout_s;
  if (o.world_size == 1) return;
#ifndef SQUEEZE_HAVE_GLOO
  throw UnsupportedError(
      "data-parallel runs (--nproc, --world-size, WORLD_SIZE) need c10d's Gloo backend, and this "
      "squeeze was built without it: install libgloo-dev and rebuild");
#else
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000.0));
  const std::string where = msg(o.master_addr, ":", o.master_port);
  if (o.rank == 0 && !port_free(o.master_addr, o.master_port))
    throw ConfigError(msg("--master: port ", o.master_port, " on ", o.master_addr,
                          " is in use, so rank 0 cannot host the rendezvous there; choose a free "
                          "port (--nproc picks one when --master is not given)"));
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(o.master_port);
  so.isServer = o.rank == 0;
  so.numWorkers = static_cast<std::size_t>(o.world_size);
  so.waitWorkers = false;
  so.timeout = timeout;
  try {
    s.store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    if (o.rank == 0 && what.find("in use") != std::string::npos)
      throw ConfigError(msg("--master: port ", o.master_port, " on ", o.master_addr,
                            " is in use; choose a free port"));
    throw PeerLost(msg("data-parallel rendezvous: rank ", o.rank,
                       o.rank == 0 ? " could not host the store at " : " could not reach rank 0 at ",
                       where, " within ", o.timeout_s, " s (--dist-timeout) [",
                       first_line(what), "]"));
  }
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  try {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(o.master_addr))
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 1;
    s.store->set(msg("squeeze/peer/", o.rank), [&] {
      const std::string v = msg(host_name(), " ", static_cast<long>(getpid()));
      return std::vector<uint8_t>(v.begin(), v.end());
    }());
    s.group = c10::make_intrusive<c10d::ProcessGroupGloo>(s.store, o.rank, o.world_size, options);
    s.peers.assign(static_cast<size_t>(o.world_size), Peer{});
    for (int q = 0; q < o.world_size; ++q) {
      const std::vector<uint8_t> v = s.store->get(msg("squeeze/peer/", q));
      std::istringstream in(std::string(v.begin(), v.end()));
      in >> s.peers[q].host >> s.peers[q].pid;
    }
  } catch (const std::exception& e) {
    s.group.reset();
    s.store.reset();
    throw PeerLost(msg("data-parallel rendezvous at ", where, ": not all ", o.world_size,
                       " ranks arrived within ", o.timeout_s, " s (--dist-timeout), or one left [",
                       first_line(e.what()), "]"));
  }
  s.rank = o.rank;
  s.world = o.world_size;
  s.active = true;
  barrier();
  log::info("data-parallel: rank ", o.rank, " of ", o.world_size, " joined at ", where,
            " (Gloo over TCP, timeout ", o.timeout_s, " s)");
#endif
}

void shutdown() {
  State& s = state();
#ifdef SQUEEZE_HAVE_GLOO
  s.group.reset();
  s.store.reset();
#endif
  s.active = false;
  s.rank = 0;
  s.world = 1;
  s.peers.clear();
}

bool active() { return state().active; }
int rank() { return state().rank; }
int world_size() { return state().world; }
bool writes() { return !state().active || state().rank == 0; }
double timeout_seconds() { return state().timeout_s; }
Counters& counters() { return g_counters; }

void shard(int64_t n, int rank, int world, int64_t& begin, int64_t& end) {
  begin = n * rank / world;
  end = n * (rank + 1) / world;
}

#ifdef SQUEEZE_HAVE_GLOO
namespace {
void wait(const char* what, const c10::intrusive_ptr<c10d::Work>& work) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    lost(what, e.what());
  }
}

template <typename F>
void timed(F f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  g_counters.seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  g_counters.calls += 1;
}
}  // namespace
#endif

void broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (!active()) return;
#ifdef SQUEEZE_HAVE_GLOO
  timed([&] {
    bucketed(tensors, [&](at::Tensor& flat) {
      std::vector<at::Tensor> v{flat};
      c10d::BroadcastOptions bo;
      bo.rootRank = root;
      c10::intrusive_ptr<c10d::Work> work;
      try {
        work = state().group->broadcast(v, bo);
      } catch (const std::exception& e) {
        lost("broadcast", e.what());
      }
      wait("broadcast", work);
    });
  });
#endif
}

void all_reduce_sum(const std::vector<at::Tensor>& tensors) {
  if (!active()) return;
#ifdef SQUEEZE_HAVE_GLOO
  timed([&] {
    bucketed(tensors, [&](at::Tensor& flat) {
      std::vector<at::Tensor> v{flat};
      c10::intrusive_ptr<c10d::Work> work;
      try {
        work = state().group->allreduce(v);
      } catch (const std::exception& e) {
        lost("all-reduce", e.what());
      }
      wait("all-reduce", work);
    });
  });
#endif
}

std::vector<double> all_reduce_sum(const std::vector<double>& values) {
  if (!active() || values.empty()) return values;
  at::Tensor t = at::tensor(values, at::kDouble);
  all_reduce_sum(std::vector<at::Tensor>{t});
  auto a = t.accessor<double, 1>();
  std::vector<double> out(values.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[static_cast<int64_t>(i)];
  return out;
}

void barrier() {
  if (!active()) return;
  // An all-reduce of one number: the same failure reporting as the other collectives.
  all_reduce_sum(std::vector<double>{1.0});
}

}  // namespace squeeze::dist
