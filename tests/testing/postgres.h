// A private PostgreSQL server for the tests of this process, so that `make test` needs nothing
// running beforehand: started on first use (initdb into a temporary folder, pg_ctl start on a
// free loopback port, its socket in that folder), stopped and removed when the process ends.
//
// As root (CI), initdb refuses to run, so the server runs as the user nobody (runuser). A
// watchdog process stops the server and removes the folder when this process ends in any way,
// SIGKILL and crashes included.
//
// Tests skip only when the server binaries (Debian package postgresql) are absent or this build
// has no PostgreSQL backend; a server that is there but fails to start is a test failure.
#pragma once

#include <string>

namespace squeeze::testing {

class PostgresServer {
 public:
  // The server of this process, started on the first call. nullptr, with the reason in *why_not,
  // when the tests cannot have one (no server binaries; a build without libpq). Throws
  // std::runtime_error, with initdb's or the server's log, when the binaries are there but the
  // server does not start.
  static PostgresServer* instance(std::string* why_not);

  // A new, empty database on the server: its URL, postgresql://squeeze@127.0.0.1:PORT/NAME.
  std::string create_database();
  // Runs `statements` (one or more, ';'-separated) in the database at `url`; the first column of
  // the first row of the last result ("" when none). Throws std::runtime_error with the server's
  // message.
  std::string sql(const std::string& url, const std::string& statements);

  int port() const { return port_; }
  std::string url(const std::string& database) const;

  ~PostgresServer();

 private:
  PostgresServer() = default;
  void start();

  std::string dir_, bin_, as_user_;   // as_user_: "runuser -u nobody --" or ""
  int port_ = 0;
  int watchdog_fd_ = -1;   // the write end: closing it makes the watchdog stop the server
  int watchdog_pid_ = -1;
  int owner_pid_ = -1;
  int databases_ = 0;
};

}  // namespace squeeze::testing
