#include "support/bus_conformance.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace af::testing {

using std::chrono::milliseconds;

std::string BusBackendName(const ::testing::TestParamInfo<BusBackend>& info) {
  return info.param.name;
}

void PrintTo(const BusBackend& backend, std::ostream* os) { *os << backend.name; }

void BusConformanceTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  prefix_ = std::string(info->test_suite_name()) + "." + info->name() + ":";
  if (GetParam().skip_reason) {
    if (std::string why = GetParam().skip_reason(); !why.empty()) GTEST_SKIP() << why;
  }
  bus_ = OpenBus(Options());
}

void BusConformanceTest::Advance(int64_t ms) {
  now_ms_ += ms;
  if (GetParam().server_clock) {
    // The margin covers the server's millisecond rounding of idle times.
    constexpr int64_t kMarginMs = 15;
    std::this_thread::sleep_for(milliseconds(std::min(ms, kAckTimeoutMs) + kMarginMs));
  }
}

void BusConformanceTest::TearDown() {
  if (bus_) bus_->Close();
  bus_.reset();
}

BusOptions BusConformanceTest::Options() {
  BusOptions o;
  o.ack_timeout = milliseconds(kAckTimeoutMs);
  o.max_attempts = kMaxAttempts;
  o.now_ms = [this] { return now_ms_.load(); };
  return o;
}

std::unique_ptr<Bus> BusConformanceTest::OpenBus(const BusOptions& options) {
  auto bus = GetParam().open(options);
  EXPECT_TRUE(bus.ok()) << bus.status().ToString();
  return bus.ok() ? std::move(bus).value() : nullptr;
}

std::string BusConformanceTest::Q(const std::string& name) const { return prefix_ + name; }

namespace {

BusMessage Msg(int n, std::string type = "test.work") {
  return BusMessage{std::move(type), nlohmann::json{{"n", n}}};
}

// Takes one delivery, failing the test if there is none.
Delivery MustReceive(Bus& bus, const std::string& queue, const std::string& consumer) {
  auto r = bus.Receive(queue, consumer, milliseconds(0));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok() || !r->has_value()) {
    ADD_FAILURE() << "expected a delivery on " << queue;
    return Delivery{};
  }
  return **r;
}

void ExpectEmpty(Bus& bus, const std::string& queue) {
  auto r = bus.Receive(queue, "probe", milliseconds(0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->has_value()) << "unexpected delivery " << (*r)->id;
}

// Collects broadcast messages; lets a test wait (without sleeping) for a count.
class Collector {
 public:
  std::function<void(const BusMessage&)> Handler() {
    return [this](const BusMessage& m) {
      std::lock_guard lock(mu_);
      got_.push_back(m.payload.value("n", -1));
      cv_.notify_all();
    };
  }
  // Waits until `n` messages arrived; the long limit only guards a hang.
  bool WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return got_.size() >= n; });
  }
  std::vector<int> Got() {
    std::lock_guard lock(mu_);
    return got_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> got_;
};

}  // namespace

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BusConformanceTest);

TEST_P(BusConformanceTest, DeliversInSendOrderWithFields) {
  const std::string q = Q("role:coder");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto id = bus_->Send(q, Msg(i));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  for (int i = 0; i < 5; ++i) {
    Delivery d = MustReceive(*bus_, q, "coder-1");
    EXPECT_EQ(d.payload["n"], i);
    EXPECT_EQ(d.id, ids[i]);
    EXPECT_EQ(d.queue, q);
    EXPECT_EQ(d.type, "test.work");
    EXPECT_EQ(d.attempts, 1);
    EXPECT_EQ(d.enqueued_ms, now());
    EXPECT_TRUE(bus_->Ack(q, d.id).ok());
  }
  ExpectEmpty(*bus_, q);
}

// Generation moves only when the server lost messages: never in ordinary use.
TEST_P(BusConformanceTest, GenerationStaysWhileNothingIsLost) {
  const uint64_t before = bus_->Generation();
  const std::string q = Q("role:coder");
  ASSERT_TRUE(bus_->Send(q, Msg(1)).ok());
  Delivery d = MustReceive(*bus_, q, "coder-1");
  ASSERT_TRUE(bus_->Ack(q, d.id).ok());
  EXPECT_TRUE(bus_->Check().ok());
  EXPECT_EQ(bus_->Generation(), before);
}

TEST_P(BusConformanceTest, QueuesAreIndependent) {
  ASSERT_TRUE(bus_->Send(Q("agent:coder-1"), Msg(1)).ok());
  ExpectEmpty(*bus_, Q("agent:coder-2"));
  EXPECT_EQ(MustReceive(*bus_, Q("agent:coder-1"), "c").payload["n"], 1);
}

TEST_P(BusConformanceTest, CompetingConsumersProcessEachMessageOnce) {
  const std::string q = Q("role:tester");
  constexpr int kMessages = 300;
  constexpr int kConsumers = 4;
  std::atomic<int> acked{0};
  std::vector<std::vector<int>> seen(kConsumers);
  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      const std::string name = "tester-" + std::to_string(c);
      while (acked.load() < kMessages) {
        auto r = bus_->Receive(q, name, milliseconds(20));
        if (!r.ok()) {
          ADD_FAILURE() << r.status().ToString();
          return;
        }
        if (!r->has_value()) continue;
        seen[c].push_back((**r).payload["n"].get<int>());
        EXPECT_TRUE(bus_->Ack(q, (**r).id).ok());
        ++acked;
      }
    });
  }
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(bus_->Send(q, Msg(i)).ok());
  for (auto& t : consumers) t.join();

  std::vector<int> all;
  for (const auto& s : seen) all.insert(all.end(), s.begin(), s.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(all[i], i);
  auto stats = bus_->Stats(q);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->ready + stats->pending + stats->dead, 0);
}

TEST_P(BusConformanceTest, UnackedDeliveryIsRedeliveredAfterAckTimeout) {
  const std::string q = Q("role:coder");
  ASSERT_TRUE(bus_->Send(q, Msg(7)).ok());
  Delivery first = MustReceive(*bus_, q, "coder-1");
  EXPECT_EQ(first.attempts, 1);

  ExpectEmpty(*bus_, q);  // pending, not deliverable
  // Still pending just before the timeout (a server clock cannot be stopped
  // at an exact millisecond: half-way there).
  const int64_t before = GetParam().server_clock ? kAckTimeoutMs / 2 : kAckTimeoutMs - 1;
  Advance(before);
  ExpectEmpty(*bus_, q);
  Advance(kAckTimeoutMs - before);
  Delivery second = MustReceive(*bus_, q, "coder-2");
  EXPECT_EQ(second.id, first.id);
  EXPECT_EQ(second.attempts, 2);
  EXPECT_EQ(second.payload, first.payload);
  EXPECT_EQ(second.enqueued_ms, first.enqueued_ms);
  EXPECT_TRUE(bus_->Ack(q, second.id).ok());
  Advance(kAckTimeoutMs * 10);
  ExpectEmpty(*bus_, q);
}

TEST_P(BusConformanceTest, ExtendKeepsADeliveryWithItsConsumer) {
  const std::string q = Q("role:coder");
  ASSERT_TRUE(bus_->Send(q, Msg(3)).ok());
  Delivery d = MustReceive(*bus_, q, "coder-1");
  // Renewed before each timeout: never deliverable to another consumer.
  const int64_t step = GetParam().server_clock ? kAckTimeoutMs / 2 : kAckTimeoutMs - 1;
  for (int i = 0; i < 3; ++i) {
    Advance(step);
    ASSERT_TRUE(bus_->Extend(q, d.id, "coder-1").ok()) << "renewal " << i;
    ExpectEmpty(*bus_, q);
  }
  EXPECT_EQ(bus_->Extend(q, d.id, "coder-2").code(), Code::kNotFound);  // not its delivery
  EXPECT_EQ(bus_->Extend(q, "0-1", "coder-1").code(), Code::kNotFound);
  // No longer renewed: expires as usual, and a renewal counts no delivery.
  Advance(kAckTimeoutMs);
  Delivery again = MustReceive(*bus_, q, "coder-2");
  EXPECT_EQ(again.id, d.id);
  EXPECT_EQ(again.attempts, 2);
  // Taken back: the first consumer cannot keep it any more.
  EXPECT_EQ(bus_->Extend(q, d.id, "coder-1").code(), Code::kNotFound);
  ASSERT_TRUE(bus_->Ack(q, again.id).ok());
  EXPECT_EQ(bus_->Extend(q, again.id, "coder-2").code(), Code::kNotFound);
}

TEST_P(BusConformanceTest, LateAckAfterTimeoutStillRemovesTheMessage) {
  const std::string q = Q("role:coder");
  ASSERT_TRUE(bus_->Send(q, Msg(1)).ok());
  Delivery d = MustReceive(*bus_, q, "slow");
  Advance(kAckTimeoutMs);
  EXPECT_TRUE(bus_->Ack(q, d.id).ok());
  ExpectEmpty(*bus_, q);
  EXPECT_EQ(bus_->Ack(q, d.id).code(), Code::kNotFound);
}

TEST_P(BusConformanceTest, RedeliveredMessageGoesBeforeNewer) {
  const std::string q = Q("role:coder");
  ASSERT_TRUE(bus_->Send(q, Msg(1)).ok());
  Delivery d = MustReceive(*bus_, q, "a");
  ASSERT_TRUE(bus_->Send(q, Msg(2)).ok());
  ASSERT_TRUE(bus_->Nack(q, d.id).ok());
  // Redeliveries may overtake (not required to); both must arrive exactly once.
  std::multiset<int> got;
  got.insert(MustReceive(*bus_, q, "b").payload["n"].get<int>());
  got.insert(MustReceive(*bus_, q, "b").payload["n"].get<int>());
  EXPECT_EQ(got, (std::multiset<int>{1, 2}));
  ExpectEmpty(*bus_, q);
}

TEST_P(BusConformanceTest, NackMakesDeliverableAtOnce) {
  const std::string q = Q("role:reviewer");
  ASSERT_TRUE(bus_->Send(q, Msg(3)).ok());
  Delivery d = MustReceive(*bus_, q, "r1");
  ASSERT_TRUE(bus_->Nack(q, d.id).ok());
  Delivery again = MustReceive(*bus_, q, "r2");
  EXPECT_EQ(again.id, d.id);
  EXPECT_EQ(again.attempts, 2);
  EXPECT_EQ(again.payload["n"], 3);
  EXPECT_EQ(bus_->Nack(q, "no-such-id").code(), Code::kNotFound);
}

TEST_P(BusConformanceTest, ReclaimFromReturnsOnlyThatConsumersDeliveries) {
  const std::string q = Q("role:coder");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(bus_->Send(q, Msg(i)).ok());
  Delivery a0 = MustReceive(*bus_, q, "dead-worker");
  Delivery a1 = MustReceive(*bus_, q, "dead-worker");
  Delivery b = MustReceive(*bus_, q, "live-worker");

  auto n = bus_->ReclaimFrom(q, "dead-worker");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 2);
  std::set<std::string> again;
  for (int i = 0; i < 2; ++i) {
    Delivery d = MustReceive(*bus_, q, "live-worker");
    EXPECT_EQ(d.attempts, 2);
    again.insert(d.id);
  }
  EXPECT_EQ(again, (std::set<std::string>{a0.id, a1.id}));
  ExpectEmpty(*bus_, q);  // b is still pending with live-worker

  auto none = bus_->ReclaimFrom(q, "never-seen");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
  EXPECT_TRUE(bus_->Ack(q, b.id).ok());
}

TEST_P(BusConformanceTest, TimedOutMessageIsDeadLetteredAfterMaxAttempts) {
  const std::string q = Q("role:coder");
  auto id = bus_->Send(q, Msg(9, "task.poison"));
  ASSERT_TRUE(id.ok());
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    Delivery d = MustReceive(*bus_, q, "crashy");
    EXPECT_EQ(d.attempts, attempt);
    Advance(kAckTimeoutMs);
  }
  ExpectEmpty(*bus_, q);
  auto stats = bus_->Stats(q);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->ready, 0);
  EXPECT_EQ(stats->pending, 0);
  EXPECT_EQ(stats->dead, 1);

  auto dead = bus_->DeadLetters(q);
  ASSERT_TRUE(dead.ok()) << dead.status().ToString();
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].id, *id);
  EXPECT_EQ((*dead)[0].type, "task.poison");
  EXPECT_EQ((*dead)[0].payload["n"], 9);
  EXPECT_EQ((*dead)[0].attempts, kMaxAttempts);
  EXPECT_EQ(bus_->Ack(q, *id).code(), Code::kNotFound);
}

TEST_P(BusConformanceTest, NackedMessageIsDeadLetteredAfterMaxAttempts) {
  const std::string q = Q("role:coder");
  ASSERT_TRUE(bus_->Send(q, Msg(1)).ok());
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    Delivery d = MustReceive(*bus_, q, "c");
    ASSERT_TRUE(bus_->Nack(q, d.id).ok());
  }
  ExpectEmpty(*bus_, q);
  auto dead = bus_->DeadLetters(q);
  ASSERT_TRUE(dead.ok());
  EXPECT_EQ(dead->size(), 1u);
}

// A coordinator's reply queue goes once its process is gone: messages,
// deliveries in progress, dead letters and the name. Sending again makes it
// anew; deleting what is not there is no error.
TEST_P(BusConformanceTest, DeleteQueueRemovesItWhole) {
  const std::string q = Q("coordinator:gone");
  const std::string other = Q("role:coder");
  ASSERT_TRUE(bus_->Send(q, Msg(1)).ok());
  ASSERT_TRUE(bus_->Send(q, Msg(2)).ok());
  ASSERT_TRUE(bus_->Send(other, Msg(3)).ok());
  Delivery taken = MustReceive(*bus_, q, "c");  // in progress, never acked
  for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
    Delivery d = MustReceive(*bus_, q, "c");  // the second message, dead at the last
    ASSERT_TRUE(bus_->Nack(q, d.id).ok());
  }
  auto before = bus_->Stats(q);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->dead, 1);

  ASSERT_TRUE(bus_->DeleteQueue(q).ok());
  auto names = bus_->Queues();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(std::count(names->begin(), names->end(), q), 0);
  EXPECT_EQ(std::count(names->begin(), names->end(), other), 1);
  auto after = bus_->Stats(q);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->ready + after->pending + after->dead, 0);
  auto dead = bus_->DeadLetters(q);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->empty());
  ExpectEmpty(*bus_, q);
  EXPECT_EQ(bus_->Ack(q, taken.id).code(), Code::kNotFound);
  EXPECT_EQ(MustReceive(*bus_, other, "c").payload["n"], 3);  // the others untouched

  EXPECT_TRUE(bus_->DeleteQueue(q).ok());  // already gone
  ASSERT_TRUE(bus_->Send(q, Msg(4)).ok());
  EXPECT_EQ(MustReceive(*bus_, q, "c").payload["n"], 4);
}

TEST_P(BusConformanceTest, ReceiveTimesOutWithNullopt) {
  auto r = bus_->Receive(Q("empty"), "c", milliseconds(10));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->has_value());
}

TEST_P(BusConformanceTest, BlockedReceiveGetsALaterSend) {
  const std::string q = Q("role:planner");
  auto fut = std::async(std::launch::async,
                        [&] { return bus_->Receive(q, "planner-1", std::chrono::seconds(30)); });
  ASSERT_TRUE(bus_->Send(q, Msg(5)).ok());
  auto r = fut.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((**r).payload["n"], 5);
}

TEST_P(BusConformanceTest, ExpiryWakesABlockedReceiveWithoutANewSend) {
  // Real clock here: the point is the timed wake-up on expiry.
  BusOptions o = Options();
  o.now_ms = nullptr;
  o.ack_timeout = milliseconds(50);
  auto bus = OpenBus(o);
  ASSERT_TRUE(bus);
  const std::string q = Q("role:coder");
  ASSERT_TRUE(bus->Send(q, Msg(1)).ok());
  Delivery d = MustReceive(*bus, q, "gone");
  // The wait is far longer than the guard below: only the expiry wake-up can
  // finish it in time (the 30 s guard is a hang check, not a timing claim).
  auto fut = std::async(std::launch::async,
                        [&] { return bus->Receive(q, "other", std::chrono::minutes(10)); });
  if (fut.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    bus->Close();  // unblocks the Receive so the test can end
    FAIL() << "expired delivery was not redelivered to a blocked Receive";
  }
  auto r = fut.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((**r).id, d.id);
  EXPECT_EQ((**r).attempts, 2);
}

TEST_P(BusConformanceTest, CloseWakesBlockedReceiveWithCancelled) {
  auto fut = std::async(std::launch::async,
                        [&] { return bus_->Receive(Q("idle"), "c", std::chrono::minutes(10)); });
  bus_->Close();
  // Whether Close came before or during the wait, the answer is Cancelled.
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(fut.get().status().code(), Code::kCancelled);
  EXPECT_EQ(bus_->Send(Q("idle"), Msg(1)).status().code(), Code::kCancelled);
  EXPECT_EQ(bus_->Publish(Q("t"), Msg(1)).code(), Code::kCancelled);
  EXPECT_EQ(bus_->Check().code(), Code::kCancelled);
  bus_->Close();  // idempotent
}

TEST_P(BusConformanceTest, BroadcastReachesEverySubscriberInOrder) {
  const std::string topic = Q("events");
  ASSERT_TRUE(bus_->Publish(topic, Msg(-1)).ok());  // before anyone listens: nobody gets it
  Collector a, b, other;
  auto sa = bus_->Subscribe(topic, a.Handler());
  auto sb = bus_->Subscribe(topic, b.Handler());
  auto so = bus_->Subscribe(Q("other-topic"), other.Handler());
  ASSERT_TRUE(sa.ok() && sb.ok() && so.ok());
  constexpr int kCount = 50;
  std::vector<int> want;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(bus_->Publish(topic, Msg(i)).ok());
    want.push_back(i);
  }
  ASSERT_TRUE(a.WaitFor(kCount));
  ASSERT_TRUE(b.WaitFor(kCount));
  EXPECT_EQ(a.Got(), want);
  EXPECT_EQ(b.Got(), want);
  ASSERT_TRUE(bus_->Publish(Q("other-topic"), Msg(100)).ok());
  ASSERT_TRUE(other.WaitFor(1));
  EXPECT_EQ(other.Got(), std::vector<int>{100});
}

TEST_P(BusConformanceTest, UnsubscribeStopsDelivery) {
  const std::string topic = Q("events");
  Collector a, b;
  auto sa = bus_->Subscribe(topic, a.Handler());
  auto sb = bus_->Subscribe(topic, b.Handler());
  ASSERT_TRUE(sa.ok() && sb.ok());
  ASSERT_TRUE(bus_->Publish(topic, Msg(1)).ok());
  ASSERT_TRUE(a.WaitFor(1));
  sa->Reset();
  EXPECT_FALSE(sa->active());
  ASSERT_TRUE(bus_->Publish(topic, Msg(2)).ok());
  ASSERT_TRUE(b.WaitFor(2));
  EXPECT_EQ(a.Got(), std::vector<int>{1});
  EXPECT_EQ(b.Got(), (std::vector<int>{1, 2}));
}

TEST_P(BusConformanceTest, UnsubscribeWaitsForARunningHandler) {
  const std::string topic = Q("events");
  std::promise<void> entered, release;
  std::atomic<bool> finished{false};
  auto release_future = release.get_future().share();
  auto sub = bus_->Subscribe(topic, [&](const BusMessage&) {
    entered.set_value();
    release_future.wait();
    finished = true;
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(bus_->Publish(topic, Msg(1)).ok());
  entered.get_future().wait();
  std::atomic<bool> resetting{false};
  auto reset = std::async(std::launch::async, [&] {
    resetting = true;
    sub->Reset();
    return finished.load();  // must already be true: the handler ended first
  });
  while (!resetting.load()) std::this_thread::yield();
  release.set_value();
  EXPECT_TRUE(reset.get());
}

TEST_P(BusConformanceTest, HandlerMayUnsubscribeItself) {
  const std::string topic = Q("events");
  Subscription self;
  std::atomic<int> calls{0};
  Collector witness;
  auto s = bus_->Subscribe(topic, [&](const BusMessage&) {
    ++calls;
    self.Reset();
  });
  ASSERT_TRUE(s.ok());
  self = std::move(*s);
  auto w = bus_->Subscribe(topic, witness.Handler());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(bus_->Publish(topic, Msg(1)).ok());
  ASSERT_TRUE(bus_->Publish(topic, Msg(2)).ok());
  ASSERT_TRUE(witness.WaitFor(2));
  EXPECT_EQ(calls.load(), 1);
}

TEST_P(BusConformanceTest, SubscriptionMayOutliveTheBus) {
  Collector c;
  auto s = bus_->Subscribe(Q("events"), c.Handler());
  ASSERT_TRUE(s.ok());
  Subscription kept = std::move(*s);
  bus_.reset();
  kept.Reset();  // must not touch freed memory (ASan would tell)
  EXPECT_FALSE(kept.active());
}

TEST_P(BusConformanceTest, HeartbeatsKeepTheLatestPerAgent) {
  ASSERT_TRUE(bus_->Heartbeat({"coder-1", "coder", "idle", "", 10}).ok());
  ASSERT_TRUE(bus_->Heartbeat({"tester-1", "tester", "idle", "", 11}).ok());
  ASSERT_TRUE(bus_->Heartbeat({"coder-1", "coder", "busy", "t-42", 20}).ok());
  ASSERT_TRUE(bus_->Heartbeat({"planner-1", "planner", "idle", "", 0}).ok());
  auto beats = bus_->Beats();
  ASSERT_TRUE(beats.ok()) << beats.status().ToString();
  ASSERT_EQ(beats->size(), 3u);
  EXPECT_EQ((*beats)[0].agent_id, "coder-1");
  EXPECT_EQ((*beats)[0].state, "busy");
  EXPECT_EQ((*beats)[0].current_task, "t-42");
  EXPECT_EQ((*beats)[0].ts_ms, 20);
  EXPECT_EQ((*beats)[1].agent_id, "planner-1");
  EXPECT_EQ((*beats)[1].ts_ms, now());  // 0 = stamped by the bus clock
  EXPECT_EQ((*beats)[2].agent_id, "tester-1");
  EXPECT_EQ(bus_->Heartbeat({"", "coder", "idle", "", 1}).code(), Code::kInvalidArgument);
}

TEST_P(BusConformanceTest, StatsCountReadyPendingDead) {
  const std::string q = Q("role:devops");
  auto empty = bus_->Stats(q);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->ready + empty->pending + empty->dead, 0);

  for (int i = 0; i < 3; ++i) ASSERT_TRUE(bus_->Send(q, Msg(i)).ok());
  Delivery d = MustReceive(*bus_, q, "devops-1");
  auto s = bus_->Stats(q);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->ready, 2);
  EXPECT_EQ(s->pending, 1);
  EXPECT_EQ(s->dead, 0);
  ASSERT_TRUE(bus_->Ack(q, d.id).ok());
  s = bus_->Stats(q);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->ready, 2);
  EXPECT_EQ(s->pending, 0);

  auto queues = bus_->Queues();
  ASSERT_TRUE(queues.ok());
  EXPECT_NE(std::find(queues->begin(), queues->end(), q), queues->end());
}

TEST_P(BusConformanceTest, AckOfUnknownOrNeverDeliveredIdIsNotFound) {
  const std::string q = Q("role:coder");
  EXPECT_EQ(bus_->Ack(q, "no-such-id").code(), Code::kNotFound);
  auto id = bus_->Send(q, Msg(1));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(bus_->Ack(q, *id).code(), Code::kNotFound);  // not delivered yet
  EXPECT_EQ(bus_->Ack(Q("other"), *id).code(), Code::kNotFound);
  Delivery d = MustReceive(*bus_, q, "c");
  EXPECT_EQ(bus_->Ack(Q("other"), d.id).code(), Code::kNotFound);  // wrong queue
  EXPECT_TRUE(bus_->Ack(q, d.id).ok());
  EXPECT_EQ(bus_->Ack(q, d.id).code(), Code::kNotFound);  // twice
}

TEST_P(BusConformanceTest, InvalidNamesAreInvalidArgument) {
  const auto kBad = Code::kInvalidArgument;
  EXPECT_EQ(bus_->Send("", Msg(1)).status().code(), kBad);
  EXPECT_EQ(bus_->Send("has space", Msg(1)).status().code(), kBad);
  EXPECT_EQ(bus_->Send(std::string(500, 'q'), Msg(1)).status().code(), kBad);
  EXPECT_EQ(bus_->Send(Q("q"), BusMessage{"", {}}).status().code(), kBad);
  EXPECT_EQ(bus_->Receive("", "c", milliseconds(0)).status().code(), kBad);
  EXPECT_EQ(bus_->Receive(Q("q"), "", milliseconds(0)).status().code(), kBad);
  EXPECT_EQ(bus_->Ack("", "1").code(), kBad);
  EXPECT_EQ(bus_->Nack("", "1").code(), kBad);
  EXPECT_EQ(bus_->ReclaimFrom("", "c").status().code(), kBad);
  EXPECT_EQ(bus_->Stats("").status().code(), kBad);
  EXPECT_EQ(bus_->DeadLetters("").status().code(), kBad);
  EXPECT_EQ(bus_->Publish("", Msg(1)).code(), kBad);
  EXPECT_EQ(bus_->Subscribe("", [](const BusMessage&) {}).status().code(), kBad);
  auto stats = bus_->Stats(Q("q"));
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->ready, 0);  // nothing was enqueued by the rejected Send
}

TEST_P(BusConformanceTest, CheckAndDescribe) {
  EXPECT_TRUE(bus_->Check().ok());
  EXPECT_FALSE(bus_->Describe().empty());
}

}  // namespace af::testing
