// Every process that runs agents is visible (/health "workers", /metrics
// af_worker_*, /api/v1/agents, the `agents` and `health` commands), and the
// agents of a worker killed with -9 show offline everywhere once their
// heartbeat is three intervals old; `serve` marks them offline in the store
// once, with one agent.offline "heartbeat lost" event, even across a restart.
// Real processes: a redis-server for the bus, one SQLite file, `serve
// --no-agents` and `worker`s, with a 1 s heartbeat (offline after 3 s).
#include <gtest/gtest.h>
#include <signal.h>

#include <cctype>
#include <nlohmann/json.hpp>

#include "af/store/store.h"
#include "support/http_client.h"
#include "support/redis_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

class WorkersLivenessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = RedisServer::SkipReason(); !why.empty()) GTEST_SKIP() << why;
    redis_ = std::make_unique<RedisServer>();
    ASSERT_TRUE(redis_->ok()) << redis_->error();
    port_ = FreePort();
    StartServe();
    admin_key_ = ReadFile(dir_.path() / "data/admin.key");
    while (!admin_key_.empty() && std::isspace(static_cast<unsigned char>(admin_key_.back())))
      admin_key_.pop_back();
    ASSERT_FALSE(admin_key_.empty());
  }

  void TearDown() override {
    for (auto& w : workers_)
      if (w && w->Running()) w->Stop(SIGTERM);
    if (serve_ && serve_->Running()) EXPECT_EQ(serve_->Stop(SIGTERM), 0) << serve_->Err();
  }

  std::map<std::string, std::string> Env() const {
    return {{"AF_PORT", std::to_string(port_)}, {"AF_HOST", "\x01unset"},
            {"AF_DATA_DIR", "\x01unset"},  // ./data, the same for every process
            {"DATABASE_URL", "\x01unset"},      {"REDIS_URL", redis_->Url()},
            {"AF_BUS_HEARTBEAT_INTERVAL", "1"}, {"AF_LLM_PROVIDER", "replay"},
            {"ANTHROPIC_API_KEY", "\x01unset"}, {"OPENAI_API_KEY", "\x01unset"},
            {"AF_API_KEY", "\x01unset"},        {"AF_LOG", "info"}};
  }

  void StartServe() {
    serve_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{BinaryPath(), "serve", "--no-agents"}, Env(),
        dir_.path().string());
    ASSERT_TRUE(WaitFor([&] {
      auto r = HttpCall(port_, "GET", "/health/live");
      return (r.ok() && r->status == 200) || !serve_->Running();
    })) << serve_->Err();
    ASSERT_TRUE(serve_->Running()) << serve_->Err();
  }

  ChildProcess* StartWorker(const std::string& roles) {
    workers_.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{BinaryPath(), "worker", "--roles", roles}, Env(),
        dir_.path().string()));
    ChildProcess* w = workers_.back().get();
    EXPECT_TRUE(WaitFor([&] {
      return w->Out().find("Agent Factory worker on") != std::string::npos || !w->Running();
    })) << w->Err();
    EXPECT_TRUE(w->Running()) << w->Err();
    return w;
  }

  json Health() {
    auto r = HttpCall(port_, "GET", "/health");
    if (!r.ok() || r->body.empty()) return json::object();
    return json::parse(r->body, nullptr, false);
  }
  // The /health "workers" entry of a process; null when not listed.
  json WorkerEntry(int pid) {
    json h = Health();
    for (const auto& w : h.value("workers", json::array()))
      if (w.value("pid", 0) == pid) return w;
    return nullptr;
  }
  std::string WorkerState(int pid) {
    json w = WorkerEntry(pid);
    return w.is_object() ? w.value("state", "") : "";
  }
  std::string Metrics() {
    auto r = HttpCall(port_, "GET", "/metrics");
    return r.ok() ? r->body : "";
  }
  json Agents() {
    HttpCallOptions o;
    o.headers["Authorization"] = "Bearer " + admin_key_;
    auto r = HttpCall(port_, "GET", "/api/v1/agents", o);
    if (!r.ok()) return json::array();
    return json::parse(r->body, nullptr, false).value("agents", json::array());
  }
  // The store as the processes share it.
  std::unique_ptr<Store> OpenStore() {
    StoreOptions o;
    o.url = "sqlite:" + (dir_.path() / "data/agent-factory.db").string();
    auto s = Store::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  // agent.offline events of the agents of process `pid`, by reason.
  std::map<std::string, int> OfflineEvents(int pid) {
    std::map<std::string, int> out;
    auto store = OpenStore();
    if (!store) return out;
    const std::string tag = "-" + std::to_string(pid) + "-";
    auto events = store->ListEvents(EventFilter{.limit = 10000});
    EXPECT_TRUE(events.ok());
    if (!events.ok()) return out;
    for (const auto& e : *events) {
      if (e.type == "agent.offline" && e.agent.find(tag) != std::string::npos)
        ++out[e.data.value("reason", "")];
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<RedisServer> redis_;
  int port_ = 0;
  std::string admin_key_;
  std::unique_ptr<ChildProcess> serve_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

TEST_F(WorkersLivenessTest, EveryWorkerIsShownAndAKilledOneGoesOfflineOnce) {
  ChildProcess* coder = StartWorker("coder");
  ChildProcess* checker = StartWorker("tester,reviewer");
  ASSERT_FALSE(HasFailure());
  const int coder_pid = coder->pid();
  const int checker_pid = checker->pid();

  // serve (coordinator and optimizer) and both workers, running.
  ASSERT_TRUE(WaitFor([&] {
    return WorkerState(coder_pid) == "running" && WorkerState(checker_pid) == "running" &&
           WorkerState(serve_->pid()) == "running";
  })) << Health().dump(2);
  json h = Health();
  EXPECT_TRUE(h["components"]["agents"].is_object());
  EXPECT_EQ(h["components"]["agents"]["coder"], "running");
  json w = WorkerEntry(checker_pid);
  EXPECT_EQ(w["roles"], json::array({"tester", "reviewer"}));
  EXPECT_EQ(w["kind"], "worker");
  EXPECT_EQ(w["agents"], 2);
  EXPECT_FALSE(w["host"].get<std::string>().empty());
  EXPECT_TRUE(w["last_heartbeat"].is_string());
  EXPECT_EQ(WorkerEntry(serve_->pid())["roles"], json::array({"coordinator", "optimizer"}));
  EXPECT_EQ(WorkerEntry(serve_->pid())["kind"], "serve");  // --no-agents: API and coordinator
  const std::string coder_up = "af_worker_up{host=\"" + w["host"].get<std::string>() + "\",pid=\"" +
                               std::to_string(coder_pid) + "\",roles=\"coder\"} ";
  EXPECT_NE(Metrics().find(coder_up + "1\n"), std::string::npos) << Metrics();

  // kill -9: the worker writes nothing more. Three missed beats later every
  // view shows its agent offline; the other worker, beating every second,
  // never did.
  EXPECT_EQ(coder->Stop(SIGKILL), -1);
  ASSERT_TRUE(WaitFor([&] { return WorkerState(coder_pid) == "offline"; }, seconds(15)))
      << Health().dump(2);
  EXPECT_EQ(WorkerState(checker_pid), "running");
  // The sweep is what made it so in the store: the record says offline.
  ASSERT_TRUE(WaitFor([&] { return OfflineEvents(coder_pid)["heartbeat lost"] == 1; }));
  auto store = OpenStore();
  ASSERT_TRUE(store);
  auto records = store->ListAgents();
  ASSERT_TRUE(records.ok());
  int coder_records = 0;
  for (const auto& a : *records) {
    if (a.pid != coder_pid) continue;
    ++coder_records;
    EXPECT_EQ(a.state, "offline") << a.id;
  }
  EXPECT_EQ(coder_records, 1);
  EXPECT_EQ(OfflineEvents(coder_pid).count("stopped"), 0u);
  for (const auto& a : Agents()) {
    if (a.value("pid", 0) == coder_pid) EXPECT_EQ(a["state"], "offline") << a.dump();
    if (a.value("pid", 0) == checker_pid) EXPECT_NE(a["state"], "offline") << a.dump();
  }
  EXPECT_NE(Metrics().find(coder_up + "0\n"), std::string::npos) << Metrics();
  EXPECT_EQ(Health()["components"]["agents"]["coder"], "offline");  // no coder left
  auto agents_cli = RunCommand(
      {BinaryPath(), "agents"},
      [&] {
        auto env = Env();
        env["AF_API_KEY"] = admin_key_;
        return env;
      }(),
      dir_.path().string());
  EXPECT_EQ(agents_cli.exit_code, 0) << agents_cli.err;
  EXPECT_NE(agents_cli.out.find("coder-"), std::string::npos) << agents_cli.out;
  {
    const std::string& out = agents_cli.out;
    const auto at = out.find("-" + std::to_string(coder_pid) + "-1");
    ASSERT_NE(at, std::string::npos) << out;
    const auto line = out.substr(at, out.find('\n', at) - at);
    EXPECT_NE(line.find("offline"), std::string::npos) << out;
  }
  auto health_cli = RunCommand({BinaryPath(), "health"}, Env(), dir_.path().string());
  EXPECT_NE(health_cli.out.find("worker        " + w["host"].get<std::string>() + " pid " +
                                std::to_string(coder_pid) + " (coder): offline"),
            std::string::npos)
      << health_cli.out;

  // A worker stopped cleanly is offline too, without a "heartbeat lost".
  EXPECT_EQ(checker->Stop(SIGTERM), 0) << checker->Err();
  EXPECT_TRUE(WaitFor([&] { return WorkerState(checker_pid) == "offline"; })) << Health().dump(2);
  EXPECT_EQ(OfflineEvents(checker_pid), (std::map<std::string, int>{{"stopped", 2}}));

  // A restarted serve does not mark (or announce) the dead worker again:
  // once it has swept another killed worker, the first still has one event.
  EXPECT_EQ(serve_->Stop(SIGTERM), 0) << serve_->Err();
  StartServe();
  ChildProcess* second = StartWorker("coder");
  ASSERT_FALSE(HasFailure());
  const int second_pid = second->pid();
  ASSERT_TRUE(WaitFor([&] { return WorkerState(second_pid) == "running"; })) << Health().dump(2);
  EXPECT_EQ(second->Stop(SIGKILL), -1);
  ASSERT_TRUE(
      WaitFor([&] { return OfflineEvents(second_pid)["heartbeat lost"] == 1; }, seconds(15)));
  EXPECT_EQ(OfflineEvents(coder_pid), (std::map<std::string, int>{{"heartbeat lost", 1}}));
  EXPECT_EQ(OfflineEvents(checker_pid), (std::map<std::string, int>{{"stopped", 2}}));
  EXPECT_NE(ReadFile(dir_.path() / "data/logs/agent-factory.log").find("marked offline"),
            std::string::npos);
}

}  // namespace
}  // namespace af::testing
