// The Redis Streams bus: the bus conformance suite on a private redis-server,
// plus what only a shared, external server shows: two Bus objects (two
// processes) on one queue, redelivery to the other one after ack_timeout,
// dead letters, a Redis restart, and a password that never leaks.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "af/bus/bus.h"
#include "support/bus_conformance.h"
#include "support/redis_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using std::chrono::milliseconds;

// One server for the conformance suite of this binary; every test starts on
// an empty server (heartbeats are one hash for everyone).
Result<std::unique_ptr<Bus>> OpenOnSharedRedis(const BusOptions& options) {
  static RedisServer server;
  if (!server.ok()) return Unavailable(server.error());
  static std::string last_test;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string test = info ? std::string(info->test_suite_name()) + "." + info->name() : "";
  if (test != last_test) {
    last_test = test;
    if (!server.FlushAll()) return Unavailable("FLUSHALL failed on the test's redis-server");
  }
  BusOptions o = options;
  o.url = server.Url();
  return Bus::Open(o);
}

INSTANTIATE_TEST_SUITE_P(Redis, BusConformanceTest,
                         ::testing::Values(BusBackend{"redis", &OpenOnSharedRedis,
                                                      /*server_clock=*/true,
                                                      &RedisServer::SkipReason}),
                         BusBackendName);

class RedisBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = RedisServer::SkipReason(); !why.empty()) GTEST_SKIP() << why;
    server_ = std::make_unique<RedisServer>();
    ASSERT_TRUE(server_->ok()) << server_->error();
  }

  std::unique_ptr<Bus> Open(milliseconds ack_timeout = std::chrono::minutes(5),
                            int max_attempts = 5) {
    BusOptions o;
    o.url = server_->Url();
    o.ack_timeout = ack_timeout;
    o.max_attempts = max_attempts;
    auto bus = Bus::Open(o);
    EXPECT_TRUE(bus.ok()) << bus.status().ToString();
    return bus.ok() ? std::move(bus).value() : nullptr;
  }

  static BusMessage Msg(int n) { return BusMessage{"test.work", nlohmann::json{{"n", n}}}; }

  std::unique_ptr<RedisServer> server_;
};

TEST_F(RedisBusTest, TwoBusesOnOneServerShareAQueueEachMessageOnce) {
  auto a = Open(), b = Open();
  ASSERT_TRUE(a && b);
  constexpr int kMessages = 60;
  std::mutex mu;
  std::vector<int> got;
  std::atomic<int> done{0};
  auto consume = [&](Bus& bus, const std::string& name) {
    while (done.load() < kMessages) {
      auto r = bus.Receive("role:coder", name, milliseconds(50));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      if (!r->has_value()) continue;
      {
        std::lock_guard lock(mu);
        got.push_back((**r).payload["n"].get<int>());
      }
      ASSERT_TRUE(bus.Ack("role:coder", (**r).id).ok());
      ++done;
    }
  };
  std::thread ta([&] { consume(*a, "coder-a"); });
  std::thread tb([&] { consume(*b, "coder-b"); });
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(a->Send("role:coder", Msg(i)).ok());
  ta.join();
  tb.join();
  std::sort(got.begin(), got.end());
  ASSERT_EQ(got.size(), static_cast<size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(got[i], i);
  // Both see the same, now empty, queue.
  auto sa = a->Stats("role:coder"), sb = b->Stats("role:coder");
  ASSERT_TRUE(sa.ok() && sb.ok());
  EXPECT_EQ(sa->ready + sa->pending, 0);
  EXPECT_EQ(sb->ready + sb->pending, 0);
}

TEST_F(RedisBusTest, UnackedMessageIsRedeliveredToTheOtherProcessAfterAckTimeout) {
  auto a = Open(milliseconds(300)), b = Open(milliseconds(300));
  ASSERT_TRUE(a && b);
  auto id = a->Send("role:tester", Msg(1));
  ASSERT_TRUE(id.ok());
  auto first = a->Receive("role:tester", "tester-a", milliseconds(0));
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((**first).attempts, 1);
  // "tester-a" never acks (its process died). B, already waiting, gets it
  // once the ack timeout is over: the wait is far longer, so only the expiry
  // can end it in time.
  const auto start = std::chrono::steady_clock::now();
  auto second = b->Receive("role:tester", "tester-b", std::chrono::seconds(20));
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ASSERT_TRUE(second->has_value());
  EXPECT_EQ((**second).id, *id);
  EXPECT_EQ((**second).attempts, 2);
  EXPECT_EQ((**second).payload["n"], 1);
  EXPECT_LT(waited, std::chrono::seconds(10));
  EXPECT_TRUE(b->Ack("role:tester", *id).ok());
  EXPECT_EQ(a->Ack("role:tester", *id).code(), Code::kNotFound);  // acked already
}

TEST_F(RedisBusTest, DeadLettersAfterMaxAttemptsAreSeenByEveryProcess) {
  auto a = Open(milliseconds(100), 2), b = Open(milliseconds(100), 2);
  ASSERT_TRUE(a && b);
  auto id = a->Send("role:coder", BusMessage{"task.poison", {{"n", 9}}});
  ASSERT_TRUE(id.ok());
  auto d1 = a->Receive("role:coder", "crashy-a", milliseconds(0));
  ASSERT_TRUE(d1.ok() && d1->has_value());
  auto d2 = b->Receive("role:coder", "crashy-b", std::chrono::seconds(10));
  ASSERT_TRUE(d2.ok() && d2->has_value());
  EXPECT_EQ((**d2).attempts, 2);
  // The second delivery times out too: dead-lettered, never delivered again.
  auto none = a->Receive("role:coder", "crashy-a", milliseconds(600));
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
  for (Bus* bus : {a.get(), b.get()}) {
    auto dead = bus->DeadLetters("role:coder");
    ASSERT_TRUE(dead.ok()) << dead.status().ToString();
    ASSERT_EQ(dead->size(), 1u);
    EXPECT_EQ((*dead)[0].id, *id);
    EXPECT_EQ((*dead)[0].type, "task.poison");
    EXPECT_EQ((*dead)[0].attempts, 2);
    auto stats = bus->Stats("role:coder");
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->dead, 1);
    EXPECT_EQ(stats->ready + stats->pending, 0);
  }
}

TEST_F(RedisBusTest, SurvivesARedisRestartWhileAConsumerWaits) {
  auto bus = Open(std::chrono::seconds(30));
  ASSERT_TRUE(bus);
  std::mutex mu;
  std::vector<int> heard;
  auto sub = bus->Subscribe("events", [&](const BusMessage& m) {
    std::lock_guard lock(mu);
    heard.push_back(m.payload.value("n", -1));
  });
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  ASSERT_TRUE(bus->Send("role:coder", Msg(1)).ok());
  auto before = bus->Receive("role:coder", "coder-1", milliseconds(0));
  ASSERT_TRUE(before.ok() && before->has_value());

  auto waiting = std::async(std::launch::async, [&] {
    return bus->Receive("role:idle", "coder-1", std::chrono::seconds(5));
  });
  server_->Stop();
  // While Redis is down: Unavailable, naming where, with what to check.
  auto down = bus->Send("role:coder", Msg(2));
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), Code::kUnavailable);
  EXPECT_NE(down.status().message().find("127.0.0.1:" + std::to_string(server_->port())),
            std::string::npos)
      << down.status().ToString();
  EXPECT_NE(down.status().hint().find("is redis-server running? check REDIS_URL"),
            std::string::npos);
  EXPECT_EQ(bus->Check().code(), Code::kUnavailable);
  // The blocked consumer: an error that says Redis is unavailable, or (if it
  // got through after the restart) a normal answer.
  auto w = waiting.get();
  if (!w.ok()) EXPECT_EQ(w.status().code(), Code::kUnavailable) << w.status().ToString();

  ASSERT_TRUE(server_->Start()) << server_->error();
  // The restarted server is empty (no persistence): the group is recreated
  // on the next Receive, and connections are replaced on the next call.
  auto id = bus->Send("role:coder", Msg(3));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto after = bus->Receive("role:coder", "coder-1", std::chrono::seconds(5));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  ASSERT_TRUE(after->has_value());
  EXPECT_EQ((**after).id, *id);
  EXPECT_EQ((**after).attempts, 1);
  EXPECT_TRUE(bus->Ack("role:coder", *id).ok());
  EXPECT_TRUE(bus->Check().ok());
  // The subscription subscribed again on its own (broadcasts are at most
  // once: those published while it reconnects are lost, so keep publishing).
  int n = 100;
  EXPECT_TRUE(WaitFor([&] {
    (void)bus->Publish("events", Msg(n++));
    std::lock_guard lock(mu);
    return !heard.empty();
  }));
}

// A Redis without persistence that restarts loses every queued message: each
// bus says so by a new generation (the coordinator then sends again what it
// waits for). A connection merely replaced, a new bus, or a second bus
// noticing the same loss do not count twice.
TEST_F(RedisBusTest, GenerationGrowsOnceWhenTheServerLostItsData) {
  auto a = Open(), b = Open();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->Generation(), 0u);
  ASSERT_TRUE(a->Send("role:planner", Msg(1)).ok());
  EXPECT_TRUE(b->Check().ok());

  // Connections killed, data kept: the same server.
  ASSERT_TRUE(server_->Run({"CLIENT", "KILL", "TYPE", "normal"}));
  EXPECT_TRUE(WaitFor([&] { return a->Check().ok() && b->Check().ok(); }));
  EXPECT_TRUE(a->Send("role:planner", Msg(2)).ok());
  EXPECT_EQ(a->Generation(), 0u);
  EXPECT_EQ(b->Generation(), 0u);

  ASSERT_TRUE(server_->Restart()) << server_->error();
  EXPECT_TRUE(WaitFor([&] { return a->Check().ok() && b->Check().ok(); }));
  EXPECT_EQ(a->Generation(), 1u);
  EXPECT_EQ(b->Generation(), 1u);
  auto stats = a->Stats("role:planner");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->ready, 0) << "the restarted server was expected empty";
  // A bus opened after the loss starts at 0; later calls change nothing.
  auto c = Open();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Send("role:planner", Msg(3)).ok());
  ASSERT_TRUE(server_->Run({"CLIENT", "KILL", "TYPE", "normal"}));
  EXPECT_TRUE(WaitFor([&] { return a->Check().ok() && c->Check().ok(); }));
  EXPECT_EQ(a->Generation(), 1u);
  EXPECT_EQ(c->Generation(), 0u);

  // A flush is a loss too, noticed on the next connection.
  ASSERT_TRUE(server_->FlushAll());
  ASSERT_TRUE(server_->Run({"CLIENT", "KILL", "TYPE", "normal"}));
  EXPECT_TRUE(WaitFor([&] { return a->Check().ok(); }));
  EXPECT_EQ(a->Generation(), 2u);
}

TEST_F(RedisBusTest, PasswordInTheUrlWorksAndNeverLeaks) {
  const std::string kPassword = "s3cret-pw";
  server_ = std::make_unique<RedisServer>(kPassword);
  ASSERT_TRUE(server_->ok()) << server_->error();
  BusOptions o;
  o.url = server_->Url();
  ASSERT_NE(o.url.find(kPassword), std::string::npos);
  auto bus = Bus::Open(o);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  ASSERT_TRUE((*bus)->Send("role:coder", Msg(1)).ok());
  auto d = (*bus)->Receive("role:coder", "c", milliseconds(0));
  ASSERT_TRUE(d.ok() && d->has_value());
  EXPECT_EQ((*bus)->Describe().find(kPassword), std::string::npos);
  EXPECT_NE((*bus)->Describe().find(std::to_string(server_->port())), std::string::npos);

  BusOptions wrong = o;
  wrong.url = "redis://:not-the-pw@127.0.0.1:" + std::to_string(server_->port());
  auto refused = Bus::Open(wrong);
  EXPECT_EQ(refused.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(refused.status().ToString().find("not-the-pw"), std::string::npos);
  BusOptions none = o;
  none.url = "redis://127.0.0.1:" + std::to_string(server_->port());
  EXPECT_EQ(Bus::Open(none).status().code(), Code::kUnauthenticated);

  server_->Stop();
  auto down = (*bus)->Send("role:coder", Msg(2));
  EXPECT_EQ(down.status().code(), Code::kUnavailable);
  EXPECT_EQ(down.status().ToString().find(kPassword), std::string::npos);
  auto reopen = Bus::Open(o);
  EXPECT_EQ(reopen.status().code(), Code::kUnavailable);
  EXPECT_EQ(reopen.status().ToString().find(kPassword), std::string::npos);
}

}  // namespace
}  // namespace af::testing
