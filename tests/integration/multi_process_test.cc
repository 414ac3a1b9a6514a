// The product scaled out on one machine, as separate processes: a real
// redis-server for the bus, the store on one SQLite file or on a PostgreSQL
// server (every case runs on both), `serve --no-agents` (API and coordinator)
// and two `worker` processes running every role, all talking to a scripted
// fake model. A feature submitted over HTTP completes; so does one whose
// worker is killed mid-task, one whose Redis restarts mid-feature and (on
// PostgreSQL) one whose database restarts mid-feature. Each time: one commit
// per task, and no recorded model answer paid for twice (only the call in
// flight when a worker died or the database went away is asked again). The
// three examples complete on PostgreSQL + Redis with the replay provider.
//
// Time: one PostgreSQL server per test binary (a fresh database per case)
// and one Redis per suite (flushed per case).
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <cctype>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "af/agents/prp.h"
#include "af/bus/bus.h"
#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/http_client.h"
#include "support/pg_server.h"
#include "support/pipeline_harness.h"
#include "support/redis_server.h"
#include "support/test_util.h"
#include "support/two_task_script.h"

namespace af::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

// Where the processes keep their store.
enum class StoreKind { kSqliteFile, kPostgres };

std::string StoreName(const ::testing::TestParamInfo<StoreKind>& info) {
  return info.param == StoreKind::kPostgres ? "Pg" : "Sqlite";
}
// For gtest's listing (and so ctest's names): "GetParam() = Pg".
void PrintTo(StoreKind kind, std::ostream* os) {
  *os << (kind == StoreKind::kPostgres ? "Pg" : "Sqlite");
}

// The processes of one scaled-out installation, on a fresh directory (and a
// fresh PostgreSQL database).
class MultiProcessTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  // One Redis for the suite; each case starts from an empty one.
  static void SetUpTestSuite() {
    if (RedisServer::SkipReason().empty()) shared_redis_ = new RedisServer();
  }
  static void TearDownTestSuite() {
    delete shared_redis_;
    shared_redis_ = nullptr;
  }

  void SetUp() override {
    if (std::string why = RedisServer::SkipReason(); !why.empty()) GTEST_SKIP() << why;
    redis_ = shared_redis_;
    // A case that failed with Redis stopped left it so.
    if (!redis_->FlushAll()) ASSERT_TRUE(redis_->Start()) << redis_->error();
    ASSERT_TRUE(redis_->FlushAll());
    if (GetParam() == StoreKind::kPostgres) {
      AF_PG_SERVER_OR_SKIP(pg);
      pg_ = pg;
      // A case that failed with PostgreSQL stopped left it so.
      ASSERT_TRUE(pg_->StartAgain().ok());
      auto url = pg_->CreateDatabase();
      ASSERT_TRUE(url.ok()) << url.status().ToString();
      database_url_ = *url;
    } else {
      database_url_ = "sqlite:" + (dir_.path() / "data/agent-factory.db").string();
    }
    // The first time the coder asks for its second step of t2 (b.txt
    // written, not committed), the answer waits for Release(): the task is
    // in flight in one worker. Every other request is answered at once.
    fake_.SetResponder([this](const RecordedRequest& r) -> std::optional<FakeReply> {
      const std::string key = TwoTaskKeyOf(r);
      if (key == "coder:b:1" && !held_.exchange(true)) {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return released_; });
      }
      return TwoTaskAnswer(key);
    });
    port_ = FreePort();
    StartProcesses();
  }

  // serve, then the two workers once serve answers.
  void StartProcesses() {
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
    StartWorkers();
  }

  // Two workers running every role.
  void StartWorkers() {
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
    if (pg_ != nullptr) EXPECT_TRUE(pg_->StartAgain().ok());  // for the next case
  }

  std::map<std::string, std::string> Env() const {
    std::map<std::string, std::string> env = {
        {"AF_PORT", std::to_string(port_)},
        {"AF_HOST", "\x01unset"},
        {"AF_DATA_DIR", "\x01unset"},  // ./data, the same for every process
        {"DATABASE_URL", GetParam() == StoreKind::kPostgres ? database_url_ : "\x01unset"},
        {"REDIS_URL", redis_->Url()},
        {"ANTHROPIC_API_KEY", "\x01unset"},
        {"AF_API_KEY", "\x01unset"},
        {"AF_LOG", "info"}};
    for (const auto& [k, v] : CaseEnv()) env[k] = v;
    return env;
  }
  // What differs between the cases: the model every process talks to (here
  // the scripted fake server) and the bus's ack timeout (here short, so a
  // dead worker's job is redelivered soon; no job here takes that long).
  virtual std::map<std::string, std::string> CaseEnv() const {
    return {{"AF_BUS_ACK_TIMEOUT", "2"},
            {"AF_LLM_PROVIDER", "openai"},
            {"OPENAI_BASE_URL", fake_.base_url() + "/v1"},
            {"OPENAI_API_KEY", "sk-test-multiprocess-0123456789abcdef"},
            {"AF_LLM_MODEL", "gpt-4o-mini"}};
  }
  std::string Cwd() const { return dir_.path().string(); }

  Result<HttpReply> Api(const std::string& method, const std::string& path,
                        const std::string& body = {},
                        const std::string& content_type = "application/json") {
    HttpCallOptions o;
    o.headers["Authorization"] = "Bearer " + admin_key_;
    if (!body.empty()) o.headers["Content-Type"] = content_type;
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
  json WaitEnded(const std::string& id, std::chrono::milliseconds timeout = seconds(60)) {
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

  // Stops serve (SIGSTOP) at a moment it holds no SQLite write lock: stopped
  // inside a write, it would keep every worker's write waiting until it
  // runs again. (PostgreSQL locks rows, not the database.)
  ::testing::AssertionResult FreezeServe() {
    for (int attempt = 0; attempt < 200; ++attempt) {
      if (::kill(server_->pid(), SIGSTOP) != 0) return ::testing::AssertionFailure() << "SIGSTOP";
      if (GetParam() != StoreKind::kSqliteFile || !SqliteWriteLocked()) {
        return ::testing::AssertionSuccess();
      }
      ::kill(server_->pid(), SIGCONT);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // lets it finish the write
    }
    return ::testing::AssertionFailure() << "serve held a write lock at every attempt";
  }

  // Whether some process holds the SQLite store's write lock now.
  bool SqliteWriteLocked() {
    sqlite3* db = nullptr;
    const std::string path = database_url_.substr(std::string("sqlite:").size());
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      return true;  // cannot tell: try again
    }
    const bool locked = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK;
    if (!locked) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    return locked;
  }
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
    for (const auto& r : fake_.requests()) ++asked[TwoTaskKeyOf(r)];
    for (const auto& key : TwoTaskKeys()) EXPECT_EQ(asked[key], key == twice ? 2 : 1) << key;
    EXPECT_EQ(asked.size(), TwoTaskKeys().size()) << "an unexpected request";

    EXPECT_EQ(PaidAnswers(id), 6u);
  }

  // The distinct requests whose answers the store recorded as paid for;
  // fails the test when one was recorded twice.
  size_t PaidAnswers(const std::string& id) {
    auto store = Store::Open({.url = database_url_, .migrate = false});
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? DistinctPaidAnswers(**store, id) : 0;
  }

  std::string Logs() const {
    std::string out = "--- serve:\n" + server_->Err();
    for (const auto& w : workers_)
      out += "--- worker " + std::to_string(w->pid()) + ":\n" + w->Err();
    return out;
  }

  static RedisServer* shared_redis_;
  TempDir dir_;
  // The hold outlives the fake server (its responder uses them), the fake
  // server outlives the processes that call it.
  std::atomic<bool> held_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;  // guarded by mu_
  FakeLlmServer fake_;
  RedisServer* redis_ = nullptr;  // shared_redis_
  PgServer* pg_ = nullptr;        // the binary's, on PostgreSQL only
  std::string database_url_;
  int port_ = 0;
  std::string admin_key_;
  std::unique_ptr<ChildProcess> server_;
  std::unique_ptr<ChildProcess> workers_[2];
};

RedisServer* MultiProcessTest::shared_redis_ = nullptr;

TEST_P(MultiProcessTest, AFeatureCompletesWithTwoWorkersAndAgentsShowsBoth) {
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

TEST_P(MultiProcessTest, AWorkerKilledMidTaskHasItsJobRedeliveredToTheOther) {
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

TEST_P(MultiProcessTest, ARedisRestartMidFeatureIsSurvivedByServeAndTheWorkers) {
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

INSTANTIATE_TEST_SUITE_P(Store, MultiProcessTest,
                         ::testing::Values(StoreKind::kSqliteFile, StoreKind::kPostgres),
                         StoreName);

// Redis has no persistence here: a restart loses the jobs waiting in its
// queues. The plan job waits for a planner (no worker runs) when Redis
// restarts; serve notices the loss and sends it again, and the workers
// started afterwards complete the feature, each step asked once.
TEST_P(MultiProcessTest, AJobLostInARedisRestartIsSentAgainByServe) {
  Release();  // nothing held
  for (auto& w : workers_) ASSERT_EQ(w->Stop(SIGTERM), 0) << w->Err();
  const std::string id = Submit();
  ASSERT_FALSE(id.empty());
  {
    auto bus = Bus::Open({.url = redis_->Url()});
    ASSERT_TRUE(bus.ok()) << bus.status().ToString();
    EXPECT_TRUE(WaitFor([&] {
      auto stats = (*bus)->Stats("role:planner");
      return stats.ok() && stats->ready == 1;
    })) << Logs();
  }
  ASSERT_TRUE(redis_->Restart()) << redis_->error();
  EXPECT_TRUE(WaitFor([&] {
    return server_->Err().find("feature " + id +
                               ": Redis lost its queued jobs (restarted without persistence?); "
                               "re-sending 1 job(s)") != std::string::npos;
  })) << Logs();
  StartWorkers();
  json f = WaitEnded(id);
  ASSERT_EQ(f.value("status", ""), "completed") << f.dump() << "\n" << Logs();
  ExpectDoneOnce(id);
}

// The reply lost instead: t2's code.done waits in the feature's mailbox
// (serve is frozen) when Redis restarts empty. serve notices the loss, finds
// t2 done in the store and goes on, so nothing is asked or committed twice.
TEST_P(MultiProcessTest, AReplyLostInARedisRestartDoesNotStopTheFeature) {
  const std::string id = Submit();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return Held(); }, seconds(30))) << Logs();
  ASSERT_TRUE(FreezeServe()) << Logs();
  {
    // serve may have been frozen in a blocked read of its mailbox: a probe
    // (a type it drops) ends that read, so the reply stays in Redis rather
    // than in serve's socket.
    auto bus = Bus::Open({.url = redis_->Url()});
    ASSERT_TRUE(bus.ok()) << bus.status().ToString();
    // Replies come to serve's own queue, "coordinator:<id>".
    std::string replies;
    auto queues = (*bus)->Queues();
    ASSERT_TRUE(queues.ok()) << queues.status().ToString();
    for (const auto& q : *queues)
      if (q.rfind("coordinator:", 0) == 0) replies = q;
    ASSERT_FALSE(replies.empty()) << Logs();
    auto in_mailbox = [&](int64_t n) {
      auto stats = (*bus)->Stats(replies);
      return stats.ok() && stats->ready + stats->pending == n;
    };
    ASSERT_TRUE((*bus)->Send(replies, BusMessage{"test.probe", json::object()}).ok());
    ASSERT_TRUE(WaitFor([&] { return in_mailbox(1); })) << Logs();
    Release();
    EXPECT_TRUE(WaitFor([&] { return in_mailbox(2); })) << Logs();
  }
  ASSERT_TRUE(redis_->Restart()) << redis_->error();
  ASSERT_EQ(::kill(server_->pid(), SIGCONT), 0);
  json f = WaitEnded(id);
  ASSERT_EQ(f.value("status", ""), "completed") << f.dump() << "\n" << Logs();
  ExpectDoneOnce(id);
}

// Cases only PostgreSQL has: a database server that can go away.
class MultiProcessPgTest : public MultiProcessTest {};

TEST_P(MultiProcessPgTest, APostgresRestartMidFeatureIsSurvivedByServeAndTheWorkers) {
  const std::string id = Submit();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return Held(); }, seconds(30))) << Logs();
  // PostgreSQL stops (fast shutdown: every connection is closed) while t2's
  // model answer is held. The coordinator, waiting for t2, waits for it.
  ASSERT_TRUE(pg_->Stop().ok());
  EXPECT_TRUE(WaitFor([&] {
    return server_->Err().find("is unreachable: the coordinator of feature " + id) !=
           std::string::npos;
  })) << Logs();
  // t2's answer comes while the database is away: its worker cannot save
  // the task's end, so it waits too, to give the job back.
  Release();
  EXPECT_TRUE(WaitFor([&] {
    for (const auto& w : workers_) {
      if (w->Err().find("is unreachable: coder-") != std::string::npos) return true;
    }
    return false;
  })) << Logs();
  // Started again on the same port and data: every process reconnects.
  ASSERT_TRUE(pg_->StartAgain().ok());
  json f = WaitEnded(id);
  ASSERT_EQ(f.value("status", ""), "completed") << f.dump() << "\n" << Logs();
  // The held answer came when it could not be recorded: asked again.
  ExpectDoneOnce(id, "coder:b:1");
  // serve's live-events LISTEN connection said it went and came back.
  EXPECT_TRUE(WaitFor([&] {
    return server_->Err().find("listening for new events on PostgreSQL at") != std::string::npos;
  })) << Logs();
}

INSTANTIATE_TEST_SUITE_P(Store, MultiProcessPgTest, ::testing::Values(StoreKind::kPostgres),
                         StoreName);

// The three examples, with the replay provider's recorded answers (as
// `agent-factory run` plays them offline) instead of the fake server. Their
// jobs run commands (a CMake build) that outlast the 2 s ack timeout: the
// agents renew their jobs, so none goes to the other worker meanwhile.
class MultiProcessExamplesTest : public MultiProcessTest {
 protected:
  std::map<std::string, std::string> CaseEnv() const override {
    return {{"AF_BUS_ACK_TIMEOUT", "2"},
            {"AF_LLM_PROVIDER", "\x01unset"},
            {"OPENAI_API_KEY", "\x01unset"},
            {"OPENAI_BASE_URL", "\x01unset"},
            {"AF_LLM_MODEL", "\x01unset"}};
  }
};

TEST_P(MultiProcessExamplesTest, TheThreeExamplesCompleteWithOneCommitPerTask) {
  Release();                               // nothing held (the fake server is not used)
  std::map<std::string, std::string> ids;  // example -> feature id
  for (const std::string name : {"python-slugify", "cpp-ring-buffer", "shell-wordfreq"}) {
    const std::string prp = std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/" + name + ".md";
    auto r = Api("POST", "/api/v1/features", ReadFile(prp), "text/markdown");
    ASSERT_TRUE(r.ok() && r->status == 201) << name << ": " << (r.ok() ? r->body : "");
    ids[name] = json::parse(r->body).value("id", "");
  }
  for (const auto& [name, id] : ids) {
    json f = WaitEnded(id, seconds(240));
    ASSERT_EQ(f.value("status", ""), "completed") << name << ": " << f.dump() << "\n" << Logs();
    auto prp = LoadPrpFile(std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/" + name + ".md");
    ASSERT_TRUE(prp.ok()) << prp.status().ToString();
    // Every task completed with a commit of its own on the feature's branch
    // (tasks without a dependency between them may commit in either order).
    std::multiset<std::string> tasks;
    ASSERT_FALSE(f["tasks"].empty()) << name;
    for (const auto& t : f["tasks"]) {
      EXPECT_EQ(t.value("status", ""), "completed") << name << ": " << t.dump();
      EXPECT_FALSE(t["result"].value("commit", "").empty()) << name << ": " << t.dump();
      tasks.insert(t.value("id", ""));
    }
    const std::string branch = f["artifacts"].value("branch", "");
    ASSERT_FALSE(branch.empty()) << f["artifacts"].dump();
    auto log = RunCommand(
        {"/usr/bin/git", "-C", (dir_.path() / "data/workspaces" / prp->project).string(), "log",
         "--format=%(trailers:key=Task-Id,valueonly,separator=)", "main.." + branch});
    ASSERT_EQ(log.exit_code, 0) << log.err;
    std::multiset<std::string> commits;
    std::istringstream lines(log.out);
    for (std::string line; std::getline(lines, line);) commits.insert(line);
    EXPECT_EQ(commits, tasks) << name << ":\n" << log.out;
    EXPECT_GT(PaidAnswers(id), 0u) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Store, MultiProcessExamplesTest, ::testing::Values(StoreKind::kPostgres),
                         StoreName);

}  // namespace
}  // namespace af::testing
