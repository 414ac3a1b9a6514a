// The product scaled out on one machine, as separate processes: a real
// redis-server for the bus, one SQLite file for the store, `serve --no-agents`
// (API and coordinator) and two `worker` processes running every role, all
// talking to a scripted fake model. A feature submitted over HTTP completes;
// so does one whose worker is killed mid-task, and one whose Redis restarts
// mid-feature. Each time: one commit per task, and no recorded model answer
// paid for twice (only the call in flight when a worker died is asked again).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cctype>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/http_client.h"
#include "support/pipeline_harness.h"
#include "support/redis_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

// Who asks and where in the conversation: "planner::0", "coder:b:1", ...
std::string KeyOf(const RecordedRequest& r) {
  const std::string title = TaskTitleOf(r);
  const std::string task = title == "Write a.txt" ? "a" : title == "Write b.txt" ? "b" : "";
  return AgentRoleOf(r) + ":" + task + ":" + std::to_string(AssistantTurns(r));
}

// Two tasks, t2 after t1, each a write and a finish; then an approving review.
FakeReply Answer(const std::string& key) {
  if (key == "planner::0") {
    json plan = {{"tasks",
                  {{{"id", "t1"},
                    {"title", "Write a.txt"},
                    {"description", "a.txt with alpha"},
                    {"role", "coder"}},
                   {{"id", "t2"},
                    {"title", "Write b.txt"},
                    {"description", "b.txt with beta"},
                    {"role", "coder"},
                    {"dependencies", {"t1"}}}}}};
    return FakeReply::Tools({Call("submit_plan", plan, "p1")});
  }
  if (key == "coder:a:0")
    return FakeReply::Tools(
        {Call("write_file", {{"path", "a.txt"}, {"content", "alpha\n"}}, "w1")});
  if (key == "coder:b:0")
    return FakeReply::Tools({Call("write_file", {{"path", "b.txt"}, {"content", "beta\n"}}, "w1")});
  if (key == "coder:a:1" || key == "coder:b:1")
    return FakeReply::Tools({Call("finish", {{"summary", "wrote the file"}}, "f1")});
  if (key == "reviewer::0") {
    return FakeReply::Tools(
        {Call("submit_review", {{"verdict", "approve"}, {"comments", {"the gate passed"}}}, "r1")});
  }
  return FakeReply::Status(400, R"({"error":{"message":"unexpected request )" + key + R"("}})");
}

// The processes of one scaled-out installation, on a fresh directory.
class MultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = RedisServer::SkipReason(); !why.empty()) GTEST_SKIP() << why;
    redis_ = std::make_unique<RedisServer>();
    ASSERT_TRUE(redis_->ok()) << redis_->error();
    // The first time the coder asks for its second step of t2 (b.txt
    // written, not committed), the answer waits for Release(): the task is
    // in flight in one worker. Every other request is answered at once.
    fake_.SetResponder([this](const RecordedRequest& r) -> std::optional<FakeReply> {
      const std::string key = KeyOf(r);
      if (key == "coder:b:1" && !held_.exchange(true)) {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return released_; });
      }
      return Answer(key);
    });
    port_ = FreePort();
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{BinaryPath(), "serve", "--no-agents"}, Env(), Cwd());
    ASSERT_TRUE(WaitFor([&] {
      auto r = HttpCall(port_, "GET", "/health/live");
      return (r.ok() && r->status == 200) || !server_->Running();
    })) << server_->Err();
    ASSERT_TRUE(server_->Running()) << server_->Err();
    // The admin key serve made on its first start.
    admin_key_ = ReadFile(dir_.path() / "data/admin.key");
    while (!admin_key_.empty() && std::isspace(static_cast<unsigned char>(admin_key_.back())))
      admin_key_.pop_back();
    ASSERT_FALSE(admin_key_.empty());
    for (auto& w : workers_) {
      w = std::make_unique<ChildProcess>(
          std::vector<std::string>{BinaryPath(), "worker", "--roles",
                                   "planner,coder,tester,reviewer,devops"},
          Env(), Cwd());
    }
    for (auto& w : workers_) {
      ASSERT_TRUE(WaitFor([&] {
        return w->Out().find("Agent Factory worker on") != std::string::npos || !w->Running();
      })) << w->Err();
      ASSERT_TRUE(w->Running()) << w->Err();
    }
  }

  void TearDown() override {
    Release();
    for (auto& w : workers_) {
      if (w && w->Running()) EXPECT_EQ(w->Stop(SIGTERM), 0) << w->Err();
    }
    if (server_ && server_->Running()) EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Err();
  }

  std::map<std::string, std::string> Env() const {
    return {{"AF_PORT", std::to_string(port_)},
            {"AF_HOST", "\x01unset"},
            {"AF_DATA_DIR", "\x01unset"},  // ./data, the same for every process
            {"DATABASE_URL", "\x01unset"},
            {"REDIS_URL", redis_->Url()},
            {"AF_BUS_ACK_TIMEOUT", "2"},
            {"AF_LLM_PROVIDER", "openai"},
            {"OPENAI_BASE_URL", fake_.base_url() + "/v1"},
            {"OPENAI_API_KEY", "sk-test-multiprocess-0123456789abcdef"},
            {"AF_LLM_MODEL", "gpt-4o-mini"},
            {"ANTHROPIC_API_KEY", "\x01unset"},
            {"AF_API_KEY", "\x01unset"},
            {"AF_LOG", "info"}};
  }
  std::string Cwd() const { return dir_.path().string(); }

  Result<HttpReply> Api(const std::string& method, const std::string& path,
                        const std::string& body = {}) {
    HttpCallOptions o;
    o.headers["Authorization"] = "Bearer " + admin_key_;
    if (!body.empty()) o.headers["Content-Type"] = "application/json";
    o.body = body;
    return HttpCall(port_, method, path, o);
  }

  // Submits the two-file feature; returns its id (empty on failure).
  std::string Submit() {
    json req = {{"title", "multi-process demo"},
                {"description",
                 "Two text files a.txt and b.txt written by agents in two worker processes, to "
                 "check that a scaled-out installation completes features once."},
                {"requirements", {"a.txt holds alpha", "b.txt holds beta"}},
                {"acceptance_criteria", {"the validation gates pass"}},
                {"tech_stack", "posix shell"},
                {"validation_gates", {"grep -qx alpha a.txt && grep -qx beta b.txt"}}};
    auto r = Api("POST", "/api/v1/features", req.dump());
    EXPECT_TRUE(r.ok() && r->status == 201) << (r.ok() ? r->body : r.status().ToString());
    if (!r.ok() || r->status != 201) return {};
    return json::parse(r->body).value("id", "");
  }

  // Polls the feature until it ends; its final JSON (null if it never did).
  json WaitEnded(const std::string& id, std::chrono::milliseconds timeout = seconds(45)) {
    json last;
    WaitFor(
        [&] {
          auto r = Api("GET", "/api/v1/features/" + id);
          if (!r.ok() || r->status != 200) return false;
          last = json::parse(r->body);
          const std::string s = last.value("status", "");
          return s == "completed" || s == "failed" || s == "cancelled";
        },
        timeout);
    return last;
  }

  json Agents() {
    auto r = Api("GET", "/api/v1/agents");
    if (!r.ok() || r->status != 200) return json::array();
    return json::parse(r->body)["agents"];
  }

  bool Held() const { return held_.load(); }
  void Release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

  // What every case must show once the feature completed: one commit per
  // task, each step asked once (`twice` twice: it was in flight when its
  // worker died, so no answer was recorded to replay), and one paid answer
  // per distinct request.
  void ExpectDoneOnce(const std::string& id, const std::string& twice = {}) {
    auto log =
        RunCommand({"/usr/bin/git", "-C", (dir_.path() / "data/workspaces/default").string(), "log",
                    "--format=%(trailers:key=Task-Id,valueonly,separator=)", "main..af/" + id});
    ASSERT_EQ(log.exit_code, 0) << log.err;
    EXPECT_EQ(log.out, id + "-t2\n" + id + "-t1\n");

    std::map<std::string, int> asked;
    for (const auto& r : fake_.requests()) ++asked[KeyOf(r)];
    for (const char* key :
         {"planner::0", "coder:a:0", "coder:a:1", "coder:b:0", "coder:b:1", "reviewer::0"}) {
      EXPECT_EQ(asked[key], key == twice ? 2 : 1) << key;
    }
    EXPECT_EQ(asked.size(), 6u) << "an unexpected request";

    auto store = Store::Open(
        {.url = "sqlite:" + (dir_.path() / "data/agent-factory.db").string(), .migrate = false});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto calls = (*store)->ListLlmCalls(id);
    ASSERT_TRUE(calls.ok());
    std::set<std::string> hashes;
    for (const auto& c : *calls) {
      if (c.status == "ok")
        EXPECT_TRUE(hashes.insert(c.request_hash).second) << "paid twice: " << c.request_hash;
    }
    EXPECT_EQ(hashes.size(), 6u);
  }

  std::string Logs() const {
    std::string out = "--- serve:\n" + server_->Err();
    for (const auto& w : workers_)
      out += "--- worker " + std::to_string(w->pid()) + ":\n" + w->Err();
    return out;
  }

  TempDir dir_;
  // The hold outlives the fake server (its responder uses them), the fake
  // server outlives the processes that call it.
  std::atomic<bool> held_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;  // guarded by mu_
  FakeLlmServer fake_;
  std::unique_ptr<RedisServer> redis_;
  int port_ = 0;
  std::string admin_key_;
  std::unique_ptr<ChildProcess> server_;
  std::unique_ptr<ChildProcess> workers_[2];
};

TEST_F(MultiProcessTest, AFeatureCompletesWithTwoWorkersAndAgentsShowsBoth) {
  Release();  // nothing held
  const std::string id = Submit();
  ASSERT_FALSE(id.empty());
  json f = WaitEnded(id);
  ASSERT_EQ(f.value("status", ""), "completed") << f.dump() << "\n" << Logs();
  ExpectDoneOnce(id);

  // Every worker's agents, five roles each, named by host and pid; the
  // records of serve (the coordinator, its optimizer) carry serve's pid.
  const std::set<std::string> all = {"planner", "coder", "tester", "reviewer", "devops"};
  std::map<int, std::set<std::string>> roles_by_pid;
  const json agents = Agents();
  for (const auto& a : agents) {
    const int pid = a.value("pid", 0);
    EXPECT_FALSE(a.value("host", "").empty()) << a.dump();
    if (!all.count(a.value("role", ""))) {
      EXPECT_EQ(pid, server_->pid()) << a.dump();
      continue;
    }
    roles_by_pid[pid].insert(a.value("role", ""));
    EXPECT_NE(a.value("id", "").find("-" + std::to_string(pid) + "-"), std::string::npos)
        << a.dump();
  }
  EXPECT_EQ(roles_by_pid.size(), 2u) << agents.dump();
  for (const auto& w : workers_) EXPECT_EQ(roles_by_pid[w->pid()], all) << w->pid();
}

TEST_F(MultiProcessTest, AWorkerKilledMidTaskHasItsJobRedeliveredToTheOther) {
  const std::string id = Submit();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return Held(); }, seconds(30))) << Logs();
  // The coder agent busy with t2 tells which worker is mid-task.
  int busy_pid = 0;
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& a : Agents()) {
      if (a.value("state", "") == "busy" && a["current_task"] == id + "-t2")
        busy_pid = a.value("pid", 0);
    }
    return busy_pid != 0;
  })) << Agents().dump();
  int killed = -1;
  for (int i = 0; i < 2; ++i) {
    if (workers_[i]->pid() == busy_pid) killed = i;
  }
  ASSERT_NE(killed, -1) << busy_pid;
  EXPECT_EQ(workers_[killed]->Stop(SIGKILL), -1);

  // The other worker gets the job after the ack timeout, replays t2's first
  // answer from the store and asks for the second step again.
  json f = WaitEnded(id);
  ASSERT_EQ(f.value("status", ""), "completed") << f.dump() << "\n" << Logs();
  ExpectDoneOnce(id, "coder:b:1");
  Release();  // the dead worker's call gets its answer nowhere
}

TEST_F(MultiProcessTest, ARedisRestartMidFeatureIsSurvivedByServeAndTheWorkers) {
  const std::string id = Submit();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return Held(); }, seconds(30))) << Logs();
  // Redis stops while t2's model answer is held, and starts again empty (no
  // persistence) on the same port; every process must reconnect.
  redis_->Stop();
  // Down long enough to be seen (serve's health snapshot says so), so every
  // process's polling calls meet the outage.
  EXPECT_TRUE(WaitFor([&] {
    auto r = HttpCall(port_, "GET", "/health");
    return r.ok() && json::parse(r->body)["components"].value("redis", "") != "healthy";
  })) << Logs();
  // t2 finishes while Redis is down: its answer to the coordinator waits.
  Release();
  EXPECT_TRUE(WaitFor([&] {
    for (const auto& w : workers_)
      if (w->Err().find("cannot send code.done") != std::string::npos) return true;
    return false;
  })) << Logs();
  ASSERT_TRUE(redis_->Start()) << redis_->error();
  json f = WaitEnded(id);
  ASSERT_EQ(f.value("status", ""), "completed") << f.dump() << "\n" << Logs();
  ExpectDoneOnce(id);
}

}  // namespace
}  // namespace af::testing
