#pragma once
// A throwaway PostgreSQL server for tests: initdb in a TempDir, listening on
// 127.0.0.1 on a free port (and a unix socket inside the temp dir only),
// trust authentication, fsync off (the data is thrown away). initdb and
// postgres refuse to run as root, so when the test runs as root they run as
// the `postgres` system user (which owns the temp dir); otherwise as the
// current user. The cluster is a copy of one made once per machine (see
// InitDataDir): initdb is the slow part. The destructor stops the server at
// once (pg_ctl stop -m immediate) and removes the directory.
//
// Typical use: one server per test binary (Shared()), a fresh database per
// test (CreateDatabase()):
//
//   AF_PG_SERVER_OR_SKIP(server);
//   auto url = server->CreateDatabase();

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "af/core/status.h"
#include "support/test_util.h"

namespace af::testing {

class PgServer {
 public:
  // initdb + start. Unavailable, with a message naming scripts/setup, when
  // the PostgreSQL server binaries are not installed (tests then skip).
  static Result<std::unique_ptr<PgServer>> Start();
  // The binary-wide server, started on first use and stopped at exit. Not
  // owned by the caller. Fails like Start (and keeps failing the same way).
  static Result<PgServer*> Shared();

  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // "postgresql://postgres@127.0.0.1:PORT/db".
  std::string url(const std::string& db) const;
  int port() const { return port_; }
  // A new empty database with a unique name; returns its URL.
  Result<std::string> CreateDatabase();
  // Stops the server (fast shutdown: clients are disconnected). Idempotent.
  Status Stop();
  // Starts it again on the same data directory and port (after Stop()).
  Status StartAgain();
  // Stop + StartAgain: every client connection is broken.
  Status Restart();
  bool running() const { return running_; }

 private:
  PgServer() = default;
  Status RunAs(const std::vector<std::string>& argv, const std::string& doing) const;
  // Makes dir_/data a new cluster. initdb takes seconds, and under ctest
  // every test is a process of its own that needs one: the first makes a
  // template under the temp directory (per user and server version, under a
  // file lock, so concurrent test processes make it once) and every start
  // copies it. Falls back to initdb when the lock cannot be had.
  Status InitDataDir();

  TempDir dir_;
  std::string bindir_;
  int port_ = 0;
  bool running_ = false;
  bool as_postgres_user_ = false;  // euid 0: run the binaries as `postgres`
  std::atomic<int> next_db_{0};
};

}  // namespace af::testing

// Declares `PgServer* var` bound to the shared server. Skips the test, loudly,
// when PostgreSQL is not installed (the hint names scripts/setup); any other
// failure to start it fails the test.
#define AF_PG_SERVER_OR_SKIP(var)                                                 \
  auto var##_result_ = ::af::testing::PgServer::Shared();                         \
  if (!var##_result_.ok()) {                                                      \
    if (var##_result_.status().hint().find("scripts/setup") != std::string::npos) \
      GTEST_SKIP() << var##_result_.status().ToString();                          \
    FAIL() << var##_result_.status().ToString();                                  \
  }                                                                               \
  ::af::testing::PgServer* var = *var##_result_
