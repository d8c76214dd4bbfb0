#include "launch.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <ostream>
#include <thread>

#include "squeeze/util/error.h"

extern char** environ;

namespace squeeze::cli {

namespace {

std::string g_program;
volatile sig_atomic_t g_signal = 0;

void on_signal(int sig) { g_signal = sig; }

std::string describe(int status) {
  if (WIFEXITED(status)) return msg("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    return msg("was killed by signal ", s, " (", strsignal(s), ")");
  }
  return "stopped";
}

bool failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

}  // namespace

void set_program(const std::string& path) { g_program = path; }

std::optional<dist::Options> resolve_group(const DistFlags& f) {
  const bool flags = f.rank >= 0 || f.world_size >= 0;
  if (f.nproc >= 0 && (flags || f.nproc == 0)) {
    if (f.nproc < 1)
      throw ConfigError(msg("--nproc: ", f.nproc, " is invalid; valid: 1 or more processes"));
    throw ConfigError(
        "--nproc starts the ranks of one machine itself; it cannot be combined with --rank or "
        "--world-size (those start one rank of a group by hand)");
  }
  if (f.nproc >= 1) {
    // The launcher reads --master (launch); one process has no group to meet at.
    if (f.nproc == 1 && !f.master.empty())
      throw ConfigError("--master: --nproc 1 runs one process, which meets no group; leave "
                        "--master out or start 2 or more");
    return std::nullopt;
  }
  std::optional<dist::Options> o;
  if (flags) {
    if (f.rank < 0 || f.world_size < 0)
      throw ConfigError(msg("--rank and --world-size go together (given: ",
                            f.rank >= 0 ? "--rank" : "--world-size",
                            "); e.g. --rank 0 --world-size 2 --master node0:29500"));
    o = dist::Options{};
    o->rank = f.rank;
    o->world_size = f.world_size;
    if (auto env = dist::options_from_env()) {
      o->master_addr = env->master_addr;
      o->master_port = env->master_port;
    }
  } else {
    o = dist::options_from_env();
    if (!o && !f.master.empty())
      throw ConfigError("--master: only with --nproc, or with --rank and --world-size");
  }
  if (!o) return std::nullopt;
  if (!f.master.empty()) dist::parse_master(f.master, "--master", o->master_addr, o->master_port);
  o->timeout_s = f.timeout_s;
  dist::validate(*o);
  if (o->world_size == 1) return std::nullopt;
  return o;
}

std::vector<std::string> rank_arguments(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--nproc" || a == "--master") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0 || a.rfind("--master=", 0) == 0) continue;
    out.push_back(a);
  }
  return out;
}

int launch(int nproc, const DistFlags& flags, const std::vector<std::string>& args,
           const std::string& resume_hint, std::ostream& err) {
  if (g_program.empty())
    throw ConfigError("--nproc starts copies of the squeeze program, which this caller is not "
                      "(run the squeeze executable)");
  std::string addr = "127.0.0.1";
  int port = 0;
  if (!flags.master.empty()) {
    dist::parse_master(flags.master, "--master", addr, port);
    if (!dist::port_free(addr, port))
      throw ConfigError(msg("--master: port ", port, " on ", addr,
                            " is in use, so rank 0 cannot host the rendezvous there; choose a free "
                            "port, or leave --master out and --nproc picks one"));
  } else {
    port = dist::free_loopback_port();
  }
  dist::Options check;
  check.world_size = nproc;
  check.master_addr = addr;
  check.master_port = port;
  check.timeout_s = flags.timeout_s;
  dist::validate(check);
  if (!dist::available())
    throw UnsupportedError(
        "--nproc: this squeeze was built without c10d's Gloo backend; install libgloo-dev and "
        "rebuild");

  // Each rank's environment: this one with torchrun's variables set.
  std::map<std::string, std::string> base;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) base[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  base["WORLD_SIZE"] = std::to_string(nproc);
  base["LOCAL_WORLD_SIZE"] = std::to_string(nproc);
  base["MASTER_ADDR"] = addr;
  base["MASTER_PORT"] = std::to_string(port);

  // SIGTERM is passed on to the ranks. Ctrl-C reaches them from the terminal (one process
  // group), and a second SIGINT would end them without saving, so it is only waited out here.
  struct sigaction sa {}, old_term {}, old_int {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_signal = 0;
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGINT, &sa, &old_int);

  std::vector<pid_t> pids;
  std::vector<std::string> argv_s{g_program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (int r = 0; r < nproc; ++r) {
    auto env = base;
    env["RANK"] = std::to_string(r);
    env["LOCAL_RANK"] = std::to_string(r);
    std::vector<std::string> env_s;
    for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, g_program.c_str(), nullptr, nullptr, argv.data(), envp.data());
    if (rc != 0) {
      for (pid_t p : pids) kill(p, SIGTERM);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      sigaction(SIGTERM, &old_term, nullptr);
      sigaction(SIGINT, &old_int, nullptr);
      throw Error(msg("--nproc: cannot start rank ", r, " (", g_program, "): ", std::strerror(rc)));
    }
    pids.push_back(pid);
  }

  using Clock = std::chrono::steady_clock;
  std::vector<int> status(pids.size(), 0);
  std::vector<bool> done(pids.size(), false);
  std::vector<int> order;  // ranks in the order they failed
  size_t remaining = pids.size();
  std::optional<Clock::time_point> term_at, kill_at;
  bool forwarded = false;
  while (remaining > 0) {
    for (size_t r = 0; r < pids.size(); ++r) {
      if (done[r]) continue;
      int st = 0;
      if (waitpid(pids[r], &st, WNOHANG) != pids[r]) continue;
      done[r] = true;
      status[r] = st;
      --remaining;
      if (!failed(st)) continue;
      order.push_back(static_cast<int>(r));
      err << "squeeze: rank " << r << " (pid " << pids[r] << ") " << describe(st) << "\n";
      // The others see the loss at their next collective, or after the timeout at most.
      if (!term_at)
        term_at = Clock::now() + std::chrono::milliseconds(
                                     static_cast<int64_t>((flags.timeout_s + 15.0) * 1000.0));
    }
    if (g_signal == SIGTERM && !forwarded) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (!done[r]) kill(pids[r], SIGTERM);
      forwarded = true;
    }
    if (remaining > 0 && term_at && Clock::now() > *term_at && !kill_at) {
      err << "squeeze: the other ranks did not stop within the timeout; sending SIGTERM\n";
      for (size_t r = 0; r < pids.size(); ++r)
        if (!done[r]) kill(pids[r], SIGTERM);
      kill_at = Clock::now() + std::chrono::seconds(10);
    }
    if (remaining > 0 && kill_at && Clock::now() > *kill_at) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (!done[r]) kill(pids[r], SIGKILL);
      kill_at = Clock::now() + std::chrono::hours(1);
    }
    if (remaining > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  if (order.empty()) return 0;

  const int first = order.front();
  const int st = status[first];
  int code = 1;
  if (WIFEXITED(st) && (WEXITSTATUS(st) == 2 || WEXITSTATUS(st) > 128)) code = WEXITSTATUS(st);
  std::string summary;
  for (size_t i = 0; i < order.size(); ++i)
    summary += msg(i ? "; " : "", "rank ", order[i], " ", describe(status[order[i]]));
  err << "error: data-parallel run of " << nproc << " processes failed (" << summary
      << "; the first to fail was rank " << first << ")";
  if (code != 2 && !resume_hint.empty()) err << ". " << resume_hint;
  err << "\n";
  return code;
}

}  // namespace squeeze::cli
