#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "af/api/health.h"
#include "support/test_util.h"

namespace af {
namespace {

HealthInputs AllGood() {
  HealthInputs in;
  in.version = "0.1.0";
  in.environment = "test";
  in.database = "healthy";
  in.redis = "disabled";
  in.vector_store = "healthy";
  in.llm = "replay";
  in.agents = {{"coordinator", "running"}, {"coder", "idle"}, {"reviewer", "busy"}};
  return in;
}

std::chrono::system_clock::time_point Jan2() {
  // 2025-01-02T03:04:05Z
  return std::chrono::system_clock::time_point(std::chrono::seconds(1735787045));
}

TEST(HealthTest, JsonHasTheSpecShape) {
  nlohmann::json j = HealthJson(AllGood(), Jan2());
  EXPECT_EQ(j.size(), 6u);
  EXPECT_TRUE(j["workers"].is_array());  // the processes running agents (none here)
  EXPECT_TRUE(j["workers"].empty());
  EXPECT_EQ(j["status"], "healthy");
  EXPECT_EQ(j["version"], "0.1.0");
  EXPECT_EQ(j["environment"], "test");
  EXPECT_EQ(j["timestamp"], "2025-01-02T03:04:05Z");
  const auto& c = j["components"];
  EXPECT_EQ(c.size(), 5u);
  EXPECT_EQ(c["database"], "healthy");
  EXPECT_EQ(c["redis"], "disabled");
  EXPECT_EQ(c["vector_store"], "healthy");
  EXPECT_EQ(c["llm"], "replay");
  EXPECT_EQ(c["agents"]["coordinator"], "running");
  EXPECT_EQ(c["agents"].size(), 3u);
}

TEST(HealthTest, NoAgentsIsAnEmptyObject) {
  HealthInputs in = AllGood();
  in.agents.clear();
  nlohmann::json j = HealthJson(in, Jan2());
  EXPECT_TRUE(j["components"]["agents"].is_object());
  EXPECT_TRUE(j["components"]["agents"].empty());
}

TEST(HealthTest, HealthyWhenEverythingWorksIncludingDisabledRedis) {
  HealthVerdict v = EvaluateHealth(AllGood());
  EXPECT_EQ(v.status, "healthy");
  EXPECT_TRUE(v.reasons.empty());
}

TEST(HealthTest, UnhealthyDatabaseMakesUnhealthy) {
  HealthInputs in = AllGood();
  in.database = "unhealthy: disk full";
  in.agents["coder"] = "offline";  // unhealthy wins over degraded
  HealthVerdict v = EvaluateHealth(in);
  EXPECT_EQ(v.status, "unhealthy");
  ASSERT_GE(v.reasons.size(), 1u);
  EXPECT_EQ(v.reasons[0], "database: unhealthy: disk full");
  EXPECT_EQ(HealthJson(in, Jan2())["status"], "unhealthy");
}

TEST(HealthTest, DegradedOrOfflineAgentDegrades) {
  for (const char* state : {"degraded", "offline", "degraded: slow heartbeats"}) {
    SCOPED_TRACE(state);
    HealthInputs in = AllGood();
    in.agents["reviewer"] = state;
    HealthVerdict v = EvaluateHealth(in);
    EXPECT_EQ(v.status, "degraded");
    ASSERT_EQ(v.reasons.size(), 1u);
    EXPECT_EQ(v.reasons[0], std::string("agent reviewer: ") + state);
  }
}

TEST(HealthTest, UnhealthyOptionalComponentsDegrade) {
  {
    HealthInputs in = AllGood();
    in.vector_store = "unhealthy: index missing";
    EXPECT_EQ(EvaluateHealth(in).status, "degraded");
  }
  {
    HealthInputs in = AllGood();
    in.redis = "unhealthy: connection refused";
    EXPECT_EQ(EvaluateHealth(in).status, "degraded");
  }
  {
    HealthInputs in = AllGood();
    in.llm = "unhealthy: no API key";
    EXPECT_EQ(EvaluateHealth(in).status, "degraded");
  }
  {
    HealthInputs in = AllGood();
    in.database = "degraded: slow";
    EXPECT_EQ(EvaluateHealth(in).status, "degraded");
  }
}

TEST(HealthTest, BusyAndIdleAgentsAreHealthy) {
  HealthInputs in = AllGood();
  in.agents = {{"a", "running"}, {"b", "busy"}, {"c", "idle"}};
  EXPECT_EQ(EvaluateHealth(in).status, "healthy");
}

TEST(HealthTest, TimestampFormat) {
  EXPECT_EQ(FormatUtcTimestamp(std::chrono::system_clock::time_point{}), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatUtcTimestamp(Jan2() + std::chrono::milliseconds(999)), "2025-01-02T03:04:05Z");
}

// /health serves a snapshot: requests do not each take one (a database round
// trip in the server), and a change shows within the refresh period.
TEST(HealthSnapshotTest, ServesACopyRefreshedInTheBackground) {
  std::atomic<int> takes{0};
  std::atomic<bool> db_down{false};
  HealthSnapshot snap(
      [&] {
        ++takes;
        HealthInputs in = AllGood();
        if (db_down) in.database = "unhealthy: disk I/O error";
        return in;
      },
      std::chrono::milliseconds(50));
  EXPECT_EQ(snap.Get().database, "healthy");
  const int before = takes.load();
  for (int i = 0; i < 10'000; ++i) ASSERT_EQ(snap.Get().version, "0.1.0");
  // 10,000 requests in far less than the 4 s a take each would allow at 50 ms.
  EXPECT_LT(takes.load() - before, 100);
  db_down = true;
  EXPECT_TRUE(testing::WaitFor([&] { return snap.Get().database != "healthy"; }));
  EXPECT_EQ(snap.Get().database, "unhealthy: disk I/O error");
}

}  // namespace
}  // namespace af
