#include "testing/postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

#ifdef SQUEEZE_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

namespace squeeze::testing {
namespace {

namespace fs = std::filesystem;

const char* kUser = "squeeze";   // the server's superuser (initdb -U)

bool executable(const fs::path& p) { return access(p.c_str(), X_OK) == 0; }

// The folder holding initdb, pg_ctl and postgres: $SQUEEZE_PG_BINDIR, Debian's
// /usr/lib/postgresql/<newest>/bin, or the PATH. "" when there is none.
std::string find_bindir() {
  auto complete = [](const fs::path& d) {
    return executable(d / "initdb") && executable(d / "pg_ctl") && executable(d / "postgres");
  };
  if (const char* env = std::getenv("SQUEEZE_PG_BINDIR"); env && *env)
    return complete(env) ? env : "";
  std::vector<std::pair<int, fs::path>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string v = e.path().filename().string();
    if (complete(e.path() / "bin") && !v.empty() && std::isdigit(static_cast<unsigned char>(v[0])))
      found.push_back({std::atoi(v.c_str()), e.path() / "bin"});
  }
  if (!found.empty()) return std::max_element(found.begin(), found.end())->second.string();
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    size_t start = 0;
    while (start <= p.size()) {
      size_t end = std::min(p.find(':', start), p.size());
      const fs::path d = p.substr(start, end - start);
      if (!d.empty() && complete(d)) return d.string();
      start = end + 1;
    }
  }
  return "";
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command; its exit code, output (stdout and stderr) in *out.
int run(const std::string& command, std::string* out) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out->append(buf.data(), n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string tail(const std::string& path, size_t max = 3000) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > max ? text.substr(text.size() - max) : text;
}

// A loopback port nobody listens on right now.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

std::unique_ptr<PostgresServer>& the_server() {
  static std::unique_ptr<PostgresServer> server;
  return server;
}

}  // namespace

PostgresServer* PostgresServer::instance(std::string* why_not) {
#ifndef SQUEEZE_HAVE_LIBPQ
  *why_not =
      "this build of squeeze has no PostgreSQL study backend (libpq-dev was not found when it "
      "was configured): install libpq-dev and reconfigure to run the PostgreSQL study tests";
  return nullptr;
#else
  auto& server = the_server();
  if (server) return server.get();
  const std::string bin = find_bindir();
  if (bin.empty()) {
    *why_not =
        "the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in "
        "/usr/lib/postgresql/*/bin, $SQUEEZE_PG_BINDIR or the PATH: install the Debian package "
        "postgresql to run the PostgreSQL study tests";
    return nullptr;
  }
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  s->bin_ = bin;
  s->start();
  server = std::move(s);
  return server.get();
#endif
}

void PostgresServer::start() {
  owner_pid_ = static_cast<int>(getpid());
  std::string tmpl = (fs::temp_directory_path() / "squeeze-pg-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("PostgresServer: mkdtemp failed");
  dir_ = tmpl;
  const std::string data = dir_ + "/data", run_dir = dir_ + "/run";
  // As root the server runs as nobody: initdb and postgres refuse root.
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (geteuid() == 0) {
    const passwd* nobody = getpwnam("nobody");
    const char* runuser = executable("/usr/sbin/runuser") ? "/usr/sbin/runuser"
                          : executable("/sbin/runuser")   ? "/sbin/runuser"
                                                          : nullptr;
    if (!nobody || !runuser)
      throw std::runtime_error(
          "PostgresServer: the tests run as root, where initdb refuses to run, and there is no "
          "user 'nobody' or no runuser (util-linux) to run the server as another user");
    uid = nobody->pw_uid;
    gid = nobody->pw_gid;
    as_user_ = std::string(runuser) + " -u nobody -- ";
  }
  chmod(dir_.c_str(), 0755);
  for (const std::string& d : {data, run_dir}) {
    mkdir(d.c_str(), 0700);
    if (chown(d.c_str(), uid, gid) != 0)
      throw std::runtime_error("PostgresServer: cannot hand " + d + " to the server's user");
  }

  std::string out;
  const std::string initdb = as_user_ + quote(bin_ + "/initdb") + " -D " + quote(data) +
                             " -U " + kUser + " -A trust -E UTF8 --locale=C --no-sync";
  if (run(initdb, &out) != 0) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    throw std::runtime_error("PostgresServer: initdb failed:\n" + out);
  }

  // The watchdog: stops the server and removes the folder once this process is gone (its end of
  // the pipe closes however the process ends). Its own session, so a Ctrl-C to the test run
  // does not kill it before it has cleaned up.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("PostgresServer: pipe failed");
  const std::string cleanup = "read _; " + as_user_ + quote(bin_ + "/pg_ctl") + " -D " +
                              quote(data) + " -m fast -w -t 60 stop >/dev/null 2>&1; rm -rf " +
                              quote(dir_);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    dup2(fds[0], 0);
    execl("/bin/sh", "sh", "-c", cleanup.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[0]);
  watchdog_fd_ = fds[1];
  watchdog_pid_ = static_cast<int>(pid);

  // The port is free when chosen but may be taken before the server binds it: try a few.
  std::string log;
  for (int attempt = 0; attempt < 4; ++attempt) {
    port_ = free_port();
    out.clear();
    const std::string options = "-c listen_addresses=127.0.0.1 -p " + std::to_string(port_) +
                                " -k " + run_dir +
                                " -c fsync=off -c synchronous_commit=off"
                                " -c full_page_writes=off -c max_connections=100";
    const std::string start = as_user_ + quote(bin_ + "/pg_ctl") + " -D " + quote(data) +
                              " -l " + quote(run_dir + "/server.log") + " -w -t 60 -o " +
                              quote(options) + " start";
    if (run(start, &out) == 0) return;
    log = out + "\n" + tail(run_dir + "/server.log");
  }
  throw std::runtime_error("PostgresServer: pg_ctl start failed:\n" + log);
}

PostgresServer::~PostgresServer() {
  if (static_cast<int>(getpid()) != owner_pid_ || watchdog_fd_ < 0) return;
  close(watchdog_fd_);
  int status = 0;
  waitpid(watchdog_pid_, &status, 0);
}

std::string PostgresServer::url(const std::string& database) const {
  return "postgresql://" + std::string(kUser) + "@127.0.0.1:" + std::to_string(port_) + "/" +
         database;
}

std::string PostgresServer::create_database() {
  const std::string name = "t" + std::to_string(getpid()) + "_" + std::to_string(++databases_);
  sql(url("postgres"), "CREATE DATABASE " + name);
  return url(name);
}

std::string PostgresServer::sql(const std::string& url, const std::string& statements) {
#ifdef SQUEEZE_HAVE_LIBPQ
  PGconn* c = PQconnectdb(url.c_str());
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(c, &PQfinish);
  if (PQstatus(c) != CONNECTION_OK)
    throw std::runtime_error("PostgresServer: cannot connect to " + url + ": " +
                             PQerrorMessage(c));
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  if (!PQsendQuery(c, statements.c_str()))
    throw std::runtime_error("PostgresServer: " + std::string(PQerrorMessage(c)));
  std::string value, error;
  while (PGresult* r = PQgetResult(c)) {
    const ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK) {
      value = PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    } else if (st != PGRES_COMMAND_OK && error.empty()) {
      error = PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  if (!error.empty()) throw std::runtime_error("PostgresServer: " + statements + ": " + error);
  return value;
#else
  throw std::runtime_error("PostgresServer: this build has no libpq");
#endif
}

}  // namespace squeeze::testing
