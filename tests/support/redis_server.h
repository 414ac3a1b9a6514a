#pragma once
// A private redis-server for tests: bound to 127.0.0.1 on a free port, its
// files in a temporary directory, no persistence (a restart loses every key,
// as a real Redis without RDB/AOF does). The destructor kills it.
//
// Tests that need it call SkipReason() first and GTEST_SKIP with it when it
// is not empty (redis-server not installed: scripts/setup installs it).

#include <memory>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace af::testing {

class RedisServer {
 public:
  // Why Redis tests cannot run on this machine; empty when they can.
  static std::string SkipReason();

  // Starts the server (with `requirepass` when `password` is not empty) and
  // waits until it answers PING. Check ok() / error().
  explicit RedisServer(std::string password = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  bool ok() const { return error_.empty(); }
  // Why the last Start failed, with the server's output.
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  // redis://[:password@]127.0.0.1:<port>/<db>
  std::string Url(int db = 0) const;

  // Stops the server (SIGTERM, then waits); the port stays reserved for Start.
  void Stop();
  // Starts it again on the same port, empty; true once it answers PING.
  bool Start();
  bool Restart() {
    Stop();
    return Start();
  }
  // Deletes every key of every database (FLUSHALL); true on success.
  bool FlushAll();
  // Runs one command (e.g. {"CLIENT", "KILL", "TYPE", "normal"}); true unless
  // it failed.
  bool Run(const std::vector<std::string>& argv);

 private:
  std::string password_;
  int port_ = 0;
  std::string error_;
  TempDir dir_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace af::testing
