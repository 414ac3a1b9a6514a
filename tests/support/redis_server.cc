#include "support/redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <vector>

namespace af::testing {
namespace {

std::string FindRedisServer() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/usr/sbin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::filesystem::path p = std::filesystem::path(dir) / "redis-server";
    if (!dir.empty() && access(p.c_str(), X_OK) == 0) return p.string();
  }
  return access("/usr/bin/redis-server", X_OK) == 0 ? "/usr/bin/redis-server" : "";
}

// Runs one command on a short-lived connection; true if it did not fail.
bool Command(int port, const std::string& password, const std::vector<std::string>& argv) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (!c || c->err) {
    if (c) redisFree(c);
    return false;
  }
  redisSetTimeout(c, timeval{5, 0});
  bool ok = true;
  auto run = [&](const std::vector<std::string>& args) {
    std::vector<const char*> v;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      v.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(v.size()), v.data(), lens.data()));
    ok = ok && r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
  };
  if (!password.empty()) run({"AUTH", password});
  run(argv);
  redisFree(c);
  return ok;
}

}  // namespace

std::string RedisServer::SkipReason() {
  if (FindRedisServer().empty()) {
    return "!!! redis-server is not installed: the Redis bus tests are SKIPPED. "
           "Run scripts/setup (it installs redis-server and libhiredis-dev) !!!";
  }
  return {};
}

RedisServer::RedisServer(std::string password) : password_(std::move(password)) {
  port_ = FreePort();
  Start();
}

RedisServer::~RedisServer() { Stop(); }

std::string RedisServer::Url(int db) const {
  return "redis://" + (password_.empty() ? "" : ":" + password_ + "@") +
         "127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
}

void RedisServer::Stop() {
  if (process_ && process_->Running()) process_->Stop(SIGTERM);
  process_.reset();
}

bool RedisServer::Start() {
  Stop();
  const std::string bin = FindRedisServer();
  if (bin.empty()) {
    error_ = SkipReason();
    return false;
  }
  std::vector<std::string> argv{bin,
                                "--port",
                                std::to_string(port_),
                                "--bind",
                                "127.0.0.1",
                                "--dir",
                                dir_.path().string(),
                                "--save",
                                "",
                                "--appendonly",
                                "no",
                                "--daemonize",
                                "no"};
  if (!password_.empty()) {
    argv.push_back("--requirepass");
    argv.push_back(password_);
  }
  process_ = std::make_unique<ChildProcess>(argv);
  const bool up =
      WaitFor([&] { return !process_->Running() || Command(port_, password_, {"PING"}); },
              std::chrono::seconds(10));
  if (!up || !process_->Running()) {
    error_ = "redis-server did not start on port " + std::to_string(port_) + ": " +
             process_->Out() + process_->Err();
    return false;
  }
  error_.clear();
  return true;
}

bool RedisServer::FlushAll() { return Command(port_, password_, {"FLUSHALL"}); }

bool RedisServer::Run(const std::vector<std::string>& argv) {
  return Command(port_, password_, argv);
}

}  // namespace af::testing
