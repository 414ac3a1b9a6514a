// The liveness rule every view shows agents by, the per-process grouping
// (/health "workers", /metrics af_worker_*), and the sweep that marks agents
// of dead processes offline once.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "af/agents/liveness.h"
#include "af/api/health.h"
#include "af/api/metrics.h"
#include "af/api/routes.h"
#include "af/bus/bus.h"
#include "af/core/config.h"
#include "af/core/json_util.h"
#include "af/store/store.h"

namespace af {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int64_t kNow = 1'735'787'045'000;  // 2025-01-02T03:04:05Z
constexpr milliseconds kOfflineAfter = seconds(90);

AgentRecord Agent(const std::string& id, const std::string& role, const std::string& state,
                  int64_t age_ms, const std::string& host = "box", int64_t pid = 100) {
  AgentRecord a;
  a.id = id;
  a.role = role;
  a.state = state;
  a.last_heartbeat_ms = kNow - age_ms;
  a.host = host;
  a.pid = pid;
  return a;
}

TEST(Liveness, OfflineAfterThreeHeartbeatIntervals) {
  Config c;
  EXPECT_EQ(HeartbeatInterval(c), seconds(30));
  EXPECT_EQ(OfflineAfter(c), seconds(90));
  c.bus.heartbeat_interval = 1;
  EXPECT_EQ(OfflineAfter(c), seconds(3));
}

TEST(Liveness, ARecordOlderThanOfflineAfterShowsOffline) {
  EXPECT_EQ(DisplayedAgentState(Agent("c", "coder", "busy", 90'000), kNow, kOfflineAfter), "busy");
  EXPECT_EQ(DisplayedAgentState(Agent("c", "coder", "busy", 90'001), kNow, kOfflineAfter),
            "offline");
  AgentRecord never = Agent("c", "coder", "idle", 0);
  never.last_heartbeat_ms = 0;
  EXPECT_EQ(DisplayedAgentState(never, kNow, kOfflineAfter), "offline");
  // The API shows the same.
  EXPECT_EQ(AgentJson(Agent("c", "coder", "busy", 120'000), kNow, kOfflineAfter)["state"],
            "offline");
  EXPECT_EQ(AgentJson(Agent("c", "coder", "busy", 1'000), kNow, kOfflineAfter)["state"], "busy");
}

TEST(Liveness, RoleStatesCountStoppedAgentsAsGoneAndSilentOnesAsDown) {
  const std::vector<AgentRecord> agents = {
      Agent("coder-1", "coder", "busy", 1'000),
      Agent("coder-w-9-1", "coder", "busy", 200'000, "w", 9),  // killed: down
      Agent("tester-1", "tester", "idle", 1'000),
      Agent("tester-w-8-1", "tester", "offline", 500'000, "w", 8),  // stopped: gone
      Agent("planner-w-7-1", "planner", "offline", 500'000, "w", 7),
      Agent("reviewer-w-6-1", "reviewer", "idle", 100'000, "w", 6),
  };
  auto roles = RoleStates(agents, kNow, kOfflineAfter);
  EXPECT_EQ(roles["coder"], "degraded");
  EXPECT_EQ(roles["tester"], "running");
  EXPECT_EQ(roles["planner"], "offline");
  EXPECT_EQ(roles["reviewer"], "offline");
}

TEST(Liveness, WorkerStatusesGroupByHostAndPid) {
  std::vector<AgentRecord> agents = {
      Agent("coordinator", "coordinator", "running", 2'000, "main", 1),
      Agent("optimizer", "optimizer", "running", 2'000, "main", 1),
      Agent("tester-b-7-1", "tester", "idle", 1'000, "b", 7),
      Agent("coder-b-7-1", "coder", "busy", 1'000, "b", 7),
      Agent("coder-b-7-2", "coder", "idle", 1'500, "b", 7),
      Agent("coder-c-8-1", "coder", "busy", 95'000, "c", 8),  // killed
      Agent("coder-d-9-1", "coder", "degraded", 3'000, "d", 9),
      Agent("coder-e-5-1", "coder", "offline", 400'000, "e", 5),  // stopped
  };
  auto workers = WorkerStatuses(agents, kNow, kOfflineAfter);
  ASSERT_EQ(workers.size(), 5u);
  // Live first, newest beat first.
  EXPECT_EQ(workers[0].host, "b");
  EXPECT_EQ(workers[0].kind, "worker");
  EXPECT_EQ(workers[0].pid, 7);
  EXPECT_EQ(workers[0].roles, (std::vector<std::string>{"coder", "tester"}));  // pipeline order
  EXPECT_EQ(workers[0].agents, 3);
  EXPECT_EQ(workers[0].live, 3);
  EXPECT_EQ(workers[0].state, "running");
  EXPECT_EQ(workers[0].last_heartbeat_ms, kNow - 1'000);
  EXPECT_EQ(workers[1].host, "main");
  EXPECT_EQ(workers[1].roles, (std::vector<std::string>{"coordinator", "optimizer"}));
  EXPECT_EQ(workers[1].kind, "serve");  // `serve --no-agents`: the API and the coordinator
  EXPECT_EQ(workers[1].state, "running");
  EXPECT_EQ(workers[2].host, "d");
  EXPECT_EQ(workers[2].state, "degraded");  // its agent waits for the provider
  EXPECT_EQ(workers[3].host, "c");
  EXPECT_EQ(workers[3].state, "offline");
  EXPECT_EQ(workers[3].live, 0);
  EXPECT_EQ(workers[4].host, "e");
  EXPECT_EQ(workers[4].state, "offline");

  // One agent of a process silent, another beating: degraded.
  agents.push_back(Agent("tester-c-8-1", "tester", "idle", 1'000, "c", 8));
  workers = WorkerStatuses(agents, kNow, kOfflineAfter);
  auto c = std::find_if(workers.begin(), workers.end(), [](auto& w) { return w.host == "c"; });
  ASSERT_NE(c, workers.end());
  EXPECT_EQ(c->state, "degraded");
  EXPECT_EQ(c->live, 1);
}

TEST(Liveness, HealthJsonListsWorkersBesideTheComponents) {
  HealthInputs in;
  in.database = "healthy";
  in.agents = {{"coder", "running"}};
  in.workers = WorkerStatuses({Agent("coder-b-7-1", "coder", "busy", 1'000, "b", 7),
                               Agent("coder-c-8-1", "coder", "busy", 95'000, "c", 8)},
                              kNow, kOfflineAfter);
  const auto j = HealthJson(in, std::chrono::system_clock::time_point(milliseconds(kNow)));
  EXPECT_TRUE(j["components"]["agents"].is_object());  // the contract shape stays
  EXPECT_EQ(j["components"].size(), 5u);
  ASSERT_EQ(j["workers"].size(), 2u);
  const auto& w = j["workers"][0];
  EXPECT_EQ(w["kind"], "worker");
  EXPECT_EQ(w["host"], "b");
  EXPECT_EQ(w["pid"], 7);
  EXPECT_EQ(w["roles"], nlohmann::json::array({"coder"}));
  EXPECT_EQ(w["agents"], 1);
  EXPECT_EQ(w["live"], 1);
  EXPECT_EQ(w["state"], "running");
  EXPECT_EQ(w["last_heartbeat"], "2025-01-02T03:04:04Z");
  EXPECT_EQ(j["workers"][1]["state"], "offline");
  // A worker offline does not by itself degrade the verdict: the role map does.
  EXPECT_EQ(j["status"], "healthy");
}

class StoreLivenessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.url = "sqlite::memory:";
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  std::vector<Event> OfflineEvents() {
    auto events = store_->ListEvents(EventFilter{});
    EXPECT_TRUE(events.ok());
    std::vector<Event> out;
    for (auto& e : events.ok() ? *events : std::vector<Event>{})
      if (e.type == "agent.offline") out.push_back(e);
    return out;
  }
  std::unique_ptr<Store> store_;
};

TEST_F(StoreLivenessTest, MetricsHaveAGaugePerWorkerWithEscapedLabels) {
  // RenderMetrics reads the real clock: age the records from it.
  const int64_t shift =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() -
      kNow;
  for (AgentRecord a : {Agent("coder-b-7-1", "coder", "busy", 1'000, "b", 7),
                        Agent("tester-b-7-1", "tester", "idle", 1'000, "b", 7),
                        Agent("coder-q-8-1", "coder", "busy", 95'000, "we\"ird\\host", 8)}) {
    a.last_heartbeat_ms += shift;
    ASSERT_TRUE(store_->UpsertAgent(a).ok());
  }
  const std::string t = RenderMetrics({.store = store_.get(), .offline_after = kOfflineAfter});
  EXPECT_NE(t.find("# TYPE af_worker_up gauge\n"), std::string::npos) << t;
  EXPECT_NE(t.find("af_worker_up{host=\"b\",pid=\"7\",roles=\"coder,tester\"} 1\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("af_worker_agents{host=\"b\",pid=\"7\",roles=\"coder,tester\"} 2\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("af_worker_up{host=\"we\\\"ird\\\\host\",pid=\"8\",roles=\"coder\"} 0\n"),
            std::string::npos)
      << t;
  // The per-role counts follow the same rule: the silent coder is offline.
  EXPECT_NE(t.find("af_agents{role=\"coder\",state=\"offline\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("af_agents{role=\"coder\",state=\"busy\"} 1\n"), std::string::npos) << t;
}

TEST_F(StoreLivenessTest, SweepMarksLostAgentsOfflineOnceWithAnEvent) {
  ASSERT_TRUE(store_->UpsertAgent(Agent("coder-b-7-1", "coder", "busy", 1'000, "b", 7)).ok());
  AgentRecord lost = Agent("coder-c-8-1", "coder", "busy", 95'000, "c", 8);
  lost.current_task = "t-1";
  ASSERT_TRUE(store_->UpsertAgent(lost).ok());
  ASSERT_TRUE(store_->UpsertAgent(Agent("coder-e-5-1", "coder", "offline", 400'000, "e", 5)).ok());

  auto marked = SweepLostAgents(*store_, kNow, kOfflineAfter);
  ASSERT_TRUE(marked.ok()) << marked.status().ToString();
  ASSERT_EQ(marked->size(), 1u);
  EXPECT_EQ((*marked)[0].id, "coder-c-8-1");
  auto got = store_->GetAgent("coder-c-8-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state, "offline");
  EXPECT_EQ(got->current_task, "");
  EXPECT_EQ(store_->GetAgent("coder-b-7-1")->state, "busy");

  auto events = OfflineEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].agent, "coder-c-8-1");
  EXPECT_EQ(events[0].data["reason"], "heartbeat lost");
  EXPECT_EQ(events[0].data["host"], "c");
  EXPECT_EQ(events[0].data["pid"], 8);

  // Again (the next snapshot, a restarted serve, a second serve): nothing.
  marked = SweepLostAgents(*store_, kNow + 60'000, kOfflineAfter);
  ASSERT_TRUE(marked.ok());
  EXPECT_TRUE(marked->empty());
  EXPECT_EQ(OfflineEvents().size(), 1u);
}

// serve forgets a process whose agents are all offline and silent for
// longer than the threshold (an hour in serve; 10 s here).
TEST_F(StoreLivenessTest, ProcessesOfflineLongerThanTheThresholdAreForgotten) {
  constexpr milliseconds kForget = seconds(10);
  for (const auto& a : {
           Agent("coder-a-1-1", "coder", "offline", 11'000, "a", 1),  // stopped long ago
           Agent("tester-a-1-1", "tester", "offline", 12'000, "a", 1),
           Agent("coder-k-2-1", "coder", "busy", 11'000, "k", 2),     // killed, not swept yet
           Agent("coder-s-3-1", "coder", "offline", 5'000, "s", 3),   // stopped recently
           Agent("coder-m-4-1", "coder", "offline", 11'000, "m", 4),  // one agent stopped,
           Agent("tester-m-4-1", "tester", "idle", 1'000, "m", 4),    // the other still beats
       }) {
    ASSERT_TRUE(store_->UpsertAgent(a).ok());
  }
  auto gone = ForgetGoneProcesses(*store_, nullptr, kNow, kForget);
  ASSERT_TRUE(gone.ok()) << gone.status().ToString();
  ASSERT_EQ(gone->size(), 1u);
  EXPECT_EQ((*gone)[0].host, "a");
  EXPECT_EQ((*gone)[0].agents, 2);
  EXPECT_EQ(store_->GetAgent("coder-a-1-1").status().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetAgent("tester-a-1-1").status().code(), Code::kNotFound);
  for (const char* kept : {"coder-k-2-1", "coder-s-3-1", "coder-m-4-1", "tester-m-4-1"})
    EXPECT_TRUE(store_->GetAgent(kept).ok()) << kept;

  // The killed one, once swept offline, goes too; the others stay.
  ASSERT_TRUE(SweepLostAgents(*store_, kNow, seconds(10)).ok());
  gone = ForgetGoneProcesses(*store_, nullptr, kNow, kForget);
  ASSERT_TRUE(gone.ok());
  ASSERT_EQ(gone->size(), 1u);
  EXPECT_EQ((*gone)[0].host, "k");
  auto left = store_->ListAgents();
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), 3u);
  // The constant serve uses.
  EXPECT_EQ(kForgetProcessAfter, std::chrono::hours(1));
}

// A coordinator's reply queue is read by its process only: forgetting the
// process deletes it from the bus too. A live coordinator's stays.
TEST_F(StoreLivenessTest, ForgettingAProcessDeletesItsCoordinatorsReplyQueue) {
  auto bus = Bus::Open(BusOptions{});
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  AgentRecord gone = Agent("coordinator-1", "coordinator", "offline", 20'000, "a", 1);
  gone.counters = {{"reply_queue", "coordinator:co-gone"}};
  AgentRecord live = Agent("coordinator-2", "coordinator", "running", 1'000, "b", 2);
  live.counters = {{"reply_queue", "coordinator:co-live"}};
  for (const auto& a : {gone, live}) {
    ASSERT_TRUE(store_->UpsertAgent(a).ok());
    ASSERT_TRUE((*bus)->Send(Field(a.counters, "reply_queue", ""), {"reply", {}}).ok());
  }
  auto forgot = ForgetGoneProcesses(*store_, bus->get(), kNow, seconds(10));
  ASSERT_TRUE(forgot.ok()) << forgot.status().ToString();
  ASSERT_EQ(forgot->size(), 1u);
  auto queues = (*bus)->Queues();
  ASSERT_TRUE(queues.ok());
  EXPECT_EQ(*queues, std::vector<std::string>{"coordinator:co-live"});
  EXPECT_EQ(store_->GetAgent("coordinator-1").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace af
