// What keeps many agents sharing one provider client from hammering it: the
// shared pause after a rate-limit answer, the token bucket and the circuit
// breaker, against the fake LLM server on a fake clock (no real waits).

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "af/api/metrics.h"
#include "af/app/services.h"
#include "af/llm/llm_client.h"
#include "support/fake_clock.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeClock;
using testing::FakeLlmServer;
using testing::FakeReply;
using testing::RecordedRequest;

constexpr char kKey[] = "sk-test-SECRET-resilience-0123456789";

// Runs `fn` when the scope ends, also when an ASSERT returns early: the tests
// below use it to wake and join their threads, so a failure is a failure and
// not a crash.
class AtExit {
 public:
  explicit AtExit(std::function<void()> fn) : fn_(std::move(fn)) {}
  ~AtExit() { fn_(); }
  AtExit(const AtExit&) = delete;
  AtExit& operator=(const AtExit&) = delete;

 private:
  std::function<void()> fn_;
};

void JoinAll(std::vector<std::thread>& threads) {
  for (auto& t : threads)
    if (t.joinable()) t.join();
}

class LlmResilienceTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool anthropic() const { return GetParam() == "anthropic"; }

  // max_retries 0 and no rate limit unless a test says otherwise; time from `clock`.
  LlmOptions Options(FakeClock& clock) {
    LlmOptions o;
    o.provider = GetParam();
    o.model = anthropic() ? "claude-sonnet-4-5" : "gpt-4o";
    o.api_key = kKey;
    o.base_url = anthropic() ? server_.base_url() : server_.base_url() + "/v1";
    o.timeout = milliseconds(10000);
    o.max_retries = 0;
    o.seed = 7;
    o.clock = clock.clock();
    o.sleep = clock.sleeper();
    o.on_call = [this](const LlmCallRecord& r) {
      std::lock_guard lock(mu_);
      records_.push_back(r);
    };
    return o;
  }

  std::unique_ptr<LlmClient> Make(const LlmOptions& o) {
    auto c = LlmClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  static LlmRequest Request(const std::string& user = "hello") {
    LlmRequest r;
    r.system = "You are a test agent.";
    r.messages = {Message::User(user)};
    r.agent_role = "coder";
    r.feature_id = "feat-r";
    return r;
  }

  std::vector<LlmCallRecord> records() {
    std::lock_guard lock(mu_);
    return records_;
  }

  FakeLlmServer server_;
  std::mutex mu_;
  std::vector<LlmCallRecord> records_;
};

// --- shared pause ------------------------------------------------------------

TEST_P(LlmResilienceTest, RateLimitPausesEveryThreadUntilRetryAfter) {
  FakeClock clock(/*auto_advance=*/false);
  const FakeClock::time_point t0 = clock.Now();
  // When each request reached the server, on the fake clock.
  std::mutex seen_mu;
  std::vector<FakeClock::time_point> seen_at;
  server_.SetResponder([&](const RecordedRequest&) -> std::optional<FakeReply> {
    std::lock_guard lock(seen_mu);
    seen_at.push_back(clock.Now());
    if (seen_at.size() == 1) {
      return FakeReply::Status(429, R"({"error":{"message":"slow down"}})", {{"retry-after", "5"}});
    }
    return FakeReply::Text("fine");
  });
  LlmOptions o = Options(clock);
  o.max_retries = 2;
  auto c = Make(o);

  std::atomic<int> ok{0};
  auto call = [&] {
    auto r = c->Complete(Request());
    if (r.ok() && r->text == "fine") ++ok;
  };
  std::vector<std::thread> threads;
  AtExit cleanup([&] {
    clock.SetAutoAdvance(true);
    JoinAll(threads);
  });
  threads.emplace_back(call);
  // A got the 429 and sleeps for its retry-after.
  ASSERT_TRUE(clock.WaitForSleepers(1));
  EXPECT_EQ(server_.request_count(), 1u);
  threads.emplace_back(call);
  threads.emplace_back(call);
  // B and D do not send: they wait for the pause A was told about.
  ASSERT_TRUE(clock.WaitForSleepers(3));
  EXPECT_EQ(server_.request_count(), 1u);
  for (const auto& w : clock.waits()) EXPECT_EQ(w.duration, milliseconds(5000));
  EXPECT_EQ(c->Health().rate_limit_pauses, 1);

  clock.Advance(milliseconds(5000));
  JoinAll(threads);
  EXPECT_EQ(ok.load(), 3);
  ASSERT_EQ(server_.request_count(), 4u);
  std::lock_guard lock(seen_mu);
  for (size_t i = 1; i < seen_at.size(); ++i) {
    EXPECT_GE(seen_at[i] - t0, seconds(5)) << "request " << i << " was sent during the pause";
  }
}

TEST_P(LlmResilienceTest, PauseAlsoHoldsBackCallsAfterTheLimitedCallGaveUp) {
  FakeClock clock;  // auto-advance: a sleep moves the clock
  server_.Push(FakeReply::Status(529, R"({"error":{"message":"overloaded"}})"));
  server_.Push(FakeReply::Status(503, "{}", {{"retry-after", "3"}}));
  server_.Push(FakeReply::Status(500, R"({"error":{"message":"boom"}})"));
  server_.Push(FakeReply::Text("a"));
  auto c = Make(Options(clock));

  // 529 without retry-after: the next call waits the backoff delay (0.5 s).
  ASSERT_FALSE(c->Complete(Request()).ok());
  // 503 with retry-after: the next call waits 3 s.
  ASSERT_FALSE(c->Complete(Request()).ok());
  // 500 without retry-after: a failure of this call only, nobody pauses.
  ASSERT_FALSE(c->Complete(Request()).ok());
  ASSERT_TRUE(c->Complete(Request()).ok());
  const auto waits = clock.waits();
  ASSERT_EQ(waits.size(), 2u);
  EXPECT_EQ(waits[0].duration, milliseconds(500));
  EXPECT_EQ(waits[1].duration, milliseconds(3000));
  EXPECT_EQ(c->Health().rate_limit_pauses, 2);
}

// A wait longer than a call holds its caller (a daily quota: 400 s here)
// ends that call at once, but every later call still waits the whole time:
// the agent's retry must not ask again at once, and again.
TEST_P(LlmResilienceTest, ALongRetryAfterEndsTheCallAndHoldsBackTheNextOnes) {
  FakeClock clock;  // auto-advance: a sleep moves the clock
  server_.Push(
      FakeReply::Status(429, R"({"error":{"message":"daily limit"}})", {{"retry-after", "400"}}));
  server_.Push(FakeReply::Text("later"));
  LlmOptions o = Options(clock);
  o.max_retries = 2;
  auto c = Make(o);
  auto first = c->Complete(Request());
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), Code::kResourceExhausted);
  EXPECT_NE(first.status().message().find("the server asks to wait 400 s"), std::string::npos)
      << first.status().message();
  EXPECT_EQ(server_.request_count(), 1u);
  EXPECT_TRUE(clock.waits().empty()) << "the limited call itself does not wait";
  auto second = c->Complete(Request());
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ASSERT_EQ(clock.waits().size(), 1u);
  EXPECT_EQ(clock.waits()[0].duration, milliseconds(400000));
  EXPECT_EQ(server_.request_count(), 2u);
}

// --- token bucket ------------------------------------------------------------

TEST_P(LlmResilienceTest, TokenBucketMakesThe61stRequestOfAMinuteWait) {
  FakeClock clock;
  server_.SetResponder([](const RecordedRequest&) { return FakeReply::Text("ok"); });
  LlmOptions o = Options(clock);
  o.requests_per_minute = 60;
  auto c = Make(o);
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(c->Complete(Request()).ok()) << i;
  EXPECT_TRUE(clock.waits().empty()) << "a minute's worth goes at once";
  ASSERT_TRUE(c->Complete(Request()).ok());
  ASSERT_EQ(clock.waits().size(), 1u);
  EXPECT_EQ(clock.waits()[0].duration, milliseconds(1000));
  // The bucket refills one token a second: the next one waits again.
  ASSERT_TRUE(c->Complete(Request()).ok());
  ASSERT_EQ(clock.waits().size(), 2u);
  EXPECT_EQ(clock.waits()[1].duration, milliseconds(1000));
  EXPECT_EQ(server_.request_count(), 62u);
}

TEST_P(LlmResilienceTest, RetriesTakeTokensToo) {
  FakeClock clock;
  server_.Push(FakeReply::Status(500, R"({"error":{"message":"boom"}})"));
  server_.Push(FakeReply::Text("retried"));
  server_.Push(FakeReply::Text("second call"));
  LlmOptions o = Options(clock);
  o.requests_per_minute = 2;  // a token every 30 s, two at once
  o.max_retries = 1;
  auto c = Make(o);
  ASSERT_TRUE(c->Complete(Request()).ok());  // both tokens: the attempt and its retry
  ASSERT_EQ(clock.waits().size(), 1u);       // the backoff only
  const milliseconds backoff = clock.waits()[0].duration;
  auto r = c->Complete(Request());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "second call");
  ASSERT_EQ(clock.waits().size(), 2u);
  EXPECT_EQ(clock.waits()[1].duration, milliseconds(30000) - backoff);
}

TEST_P(LlmResilienceTest, TokensAreSharedByConcurrentCallers) {
  FakeClock clock(/*auto_advance=*/false);
  server_.SetResponder([](const RecordedRequest&) { return FakeReply::Text("ok"); });
  LlmOptions o = Options(clock);
  o.requests_per_minute = 2;
  auto c = Make(o);
  std::vector<std::thread> threads;
  AtExit cleanup([&] {
    clock.SetAutoAdvance(true);
    JoinAll(threads);
  });
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] { ok += c->Complete(Request()).ok(); });
  }
  // Two go at once; the other two each hold a later slot (30 s, 60 s).
  ASSERT_TRUE(clock.WaitForSleepers(2));
  EXPECT_TRUE(testing::WaitFor([&] { return server_.request_count() == 2; }));
  std::vector<milliseconds> waits;
  for (const auto& w : clock.waits()) waits.push_back(w.duration);
  std::sort(waits.begin(), waits.end());
  EXPECT_EQ(waits, (std::vector<milliseconds>{milliseconds(30000), milliseconds(60000)}));
  clock.Advance(milliseconds(30000));
  EXPECT_TRUE(testing::WaitFor([&] { return server_.request_count() == 3; }));
  clock.Advance(milliseconds(30000));
  JoinAll(threads);
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(server_.request_count(), 4u);
}

// --- circuit breaker -----------------------------------------------------------

TEST_P(LlmResilienceTest, CircuitOpensFailsFastHalfOpensAndCloses) {
  FakeClock clock;
  for (int i = 0; i < 4; ++i) {
    server_.Push(
        FakeReply::Status(500, R"({"error":{"message":"boom )" + std::to_string(i) + "\"}}"));
  }
  server_.Push(FakeReply::Text("back"));
  server_.Push(FakeReply::Text("again"));
  LlmOptions o = Options(clock);
  o.circuit_failures = 3;
  o.circuit_cooldown = seconds(30);
  auto c = Make(o);
  EXPECT_TRUE(c->Health().breaker);

  for (int i = 0; i < 3; ++i) {
    auto r = c->Complete(Request());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kUnavailable);
    EXPECT_EQ(c->Health().state, i < 2 ? "closed" : "open") << i;
  }
  LlmHealth h = c->Health();
  EXPECT_EQ(h.consecutive_failures, 3);
  EXPECT_EQ(h.retry_in_ms, 30000);
  EXPECT_GT(h.open_until_ms, 0);
  EXPECT_NE(h.last_error.find("HTTP 500"), std::string::npos) << h.last_error;
  EXPECT_NE(h.last_error.find("boom 2"), std::string::npos) << h.last_error;

  // Open: fails at once, nothing reaches the server, the call is still recorded.
  auto fast = c->Complete(Request());
  ASSERT_FALSE(fast.ok());
  EXPECT_EQ(fast.status().code(), Code::kUnavailable);
  const std::string provider = GetParam();
  EXPECT_EQ(fast.status().message(), "LLM provider '" + provider +
                                         "' is unavailable: circuit open after 3 consecutive "
                                         "failures (last: " +
                                         h.last_error + "); next attempt in 30 s");
  EXPECT_NE(fast.status().hint().find("status page"), std::string::npos);
  EXPECT_NE(fast.status().hint().find(anthropic() ? "ANTHROPIC_BASE_URL" : "OPENAI_BASE_URL"),
            std::string::npos);
  EXPECT_EQ(server_.request_count(), 3u);
  ASSERT_EQ(records().size(), 4u);
  EXPECT_EQ(records().back().status, "unavailable");
  EXPECT_EQ(records().back().attempts, 0);

  clock.Advance(seconds(29));
  auto still = c->Complete(Request());
  ASSERT_FALSE(still.ok());
  EXPECT_NE(still.status().message().find("next attempt in 1 s"), std::string::npos);
  EXPECT_EQ(server_.request_count(), 3u);

  // Cooldown over: one probe goes through; it fails, so the circuit re-opens.
  clock.Advance(seconds(1));
  EXPECT_EQ(c->Health().state, "half_open");
  ASSERT_FALSE(c->Complete(Request()).ok());
  EXPECT_EQ(server_.request_count(), 4u);
  h = c->Health();
  EXPECT_EQ(h.state, "open");
  EXPECT_EQ(h.retry_in_ms, 30000);
  EXPECT_EQ(h.consecutive_failures, 4);
  ASSERT_FALSE(c->Complete(Request()).ok());
  EXPECT_EQ(server_.request_count(), 4u);

  // The next probe succeeds: closed, and calls flow again.
  clock.Advance(seconds(30));
  auto probe = c->Complete(Request());
  ASSERT_TRUE(probe.ok()) << probe.status().ToString();
  EXPECT_EQ(probe->text, "back");
  h = c->Health();
  EXPECT_EQ(h.state, "closed");
  EXPECT_EQ(h.consecutive_failures, 0);
  EXPECT_EQ(h.last_error, "");
  EXPECT_EQ(h.open_until_ms, 0);
  ASSERT_TRUE(c->Complete(Request()).ok());
  EXPECT_EQ(server_.request_count(), 6u);
  EXPECT_TRUE(clock.waits().empty());
}

TEST_P(LlmResilienceTest, RejectedRequestsDoNotCountAsOutages) {
  FakeClock clock;
  server_.Push(FakeReply::Status(500));
  server_.Push(FakeReply::Status(400, R"({"error":{"message":"bad request"}})"));
  server_.Push(FakeReply::Status(401));
  server_.Push(FakeReply::Status(404, R"({"error":{"message":"no such model"}})"));
  server_.Push(FakeReply::Status(413, R"({"error":{"message":"too big"}})"));
  server_.Push(FakeReply::Text("ok"));  // a success resets the count
  server_.Push(FakeReply::Status(500));
  server_.Push(FakeReply::Status(502));
  LlmOptions o = Options(clock);
  o.circuit_failures = 2;
  auto c = Make(o);
  const Code expected[] = {Code::kUnavailable, Code::kInvalidArgument, Code::kUnauthenticated,
                           Code::kNotFound,    Code::kInvalidArgument, Code::kOk,
                           Code::kUnavailable};
  for (Code code : expected) {
    auto r = c->Complete(Request());
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
    EXPECT_EQ(c->Health().state, "closed") << r.status().ToString();
  }
  EXPECT_EQ(c->Health().consecutive_failures, 1);
  ASSERT_FALSE(c->Complete(Request()).ok());
  EXPECT_EQ(c->Health().state, "open");
  EXPECT_EQ(c->Health().consecutive_failures, 2);
}

TEST_P(LlmResilienceTest, HalfOpenLetsOneProbeThroughAndWaitersLearnItsOutcome) {
  FakeClock clock;
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool release = false;
  server_.SetResponder([&](const RecordedRequest&) -> std::optional<FakeReply> {
    if (server_.request_count() == 1) return FakeReply::Status(503);
    // The probe: held until the test lets it answer.
    std::unique_lock lock(gate_mu);
    gate_cv.wait(lock, [&] { return release; });
    return FakeReply::Text("probe ok");
  });
  LlmOptions o = Options(clock);
  o.circuit_failures = 1;
  o.circuit_cooldown = seconds(10);
  auto c = Make(o);
  ASSERT_FALSE(c->Complete(Request()).ok());
  ASSERT_EQ(c->Health().state, "open");
  // WaitForProbe sleeps (on the fake clock) until the cooldown is over.
  EXPECT_FALSE(c->WaitForProbe(seconds(4)));
  EXPECT_FALSE(c->WaitForProbe(seconds(60)));
  ASSERT_EQ(clock.waits().size(), 2u);
  EXPECT_EQ(clock.waits()[0].duration, milliseconds(4000));
  EXPECT_EQ(clock.waits()[1].duration, milliseconds(6000));
  EXPECT_TRUE(c->WaitForProbe(seconds(60)));

  auto let_probe_answer = [&] {
    {
      std::lock_guard lock(gate_mu);
      release = true;
    }
    gate_cv.notify_all();
  };
  std::vector<std::thread> threads;
  AtExit cleanup([&] {
    let_probe_answer();
    JoinAll(threads);
  });
  threads.emplace_back([&] { EXPECT_TRUE(c->Complete(Request()).ok()); });
  ASSERT_TRUE(testing::WaitFor([&] { return server_.request_count() == 2; }));
  // While the probe is out, other calls fail fast.
  auto other = c->Complete(Request());
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), Code::kUnavailable);
  EXPECT_NE(other.status().message().find("a probe call is under way"), std::string::npos)
      << other.status().message();
  EXPECT_EQ(server_.request_count(), 2u);
  // A waiter learns the probe's outcome as soon as it is known.
  std::atomic<bool> waiter_result{false};
  threads.emplace_back([&] { waiter_result = c->WaitForProbe(seconds(30)); });
  let_probe_answer();
  JoinAll(threads);
  EXPECT_TRUE(waiter_result.load());
  EXPECT_EQ(c->Health().state, "closed");
}

TEST_P(LlmResilienceTest, ZeroFailuresTurnsTheBreakerOff) {
  FakeClock clock;
  for (int i = 0; i < 3; ++i) server_.Push(FakeReply::Status(500));
  LlmOptions o = Options(clock);
  o.circuit_failures = 0;
  auto c = Make(o);
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(c->Complete(Request()).ok());
  EXPECT_EQ(server_.request_count(), 3u);
  EXPECT_FALSE(c->Health().breaker);
  EXPECT_EQ(c->Health().state, "closed");
}

INSTANTIATE_TEST_SUITE_P(Providers, LlmResilienceTest, ::testing::Values("anthropic", "openai"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// --- health and metrics --------------------------------------------------------

TEST(LlmResilienceServicesTest, OpenCircuitDegradesHealthAndShowsInMetrics) {
  testing::TempDir dir;
  FakeLlmServer fake;
  fake.Push(FakeReply::Status(529));
  fake.Push(FakeReply::Status(500));
  fake.Push(FakeReply::Text("back"));
  FakeClock clock;
  Config config;
  config.data_dir = dir.path().string();
  config.llm.provider = "anthropic";
  config.llm.model = "claude-sonnet-4-5";
  config.llm.max_retries = 0;
  config.llm.circuit_failures = 2;
  config.llm.circuit_cooldown = 30;
  config.anthropic.api_key = kKey;
  config.anthropic.base_url = fake.base_url();
  auto services = Services::Open(config, [&](LlmOptions& o) {
    o.clock = clock.clock();
    o.sleep = clock.sleeper();
  });
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  Services& s = **services;
  ASSERT_NE(s.llm, nullptr);
  EXPECT_EQ(s.Health().llm, "anthropic");
  EXPECT_EQ(EvaluateHealth(s.Health()).status, "healthy");

  LlmRequest req;
  req.messages = {Message::User("hi")};
  ASSERT_FALSE(s.llm->Complete(req).ok());  // 529: also pauses calls
  ASSERT_FALSE(s.llm->Complete(req).ok());  // 500: the circuit opens
  HealthInputs h = s.Health();
  EXPECT_EQ(
      h.llm,
      "degraded: anthropic: circuit open after 2 consecutive failures (next attempt in 30 s)");
  HealthVerdict verdict = EvaluateHealth(h);
  EXPECT_EQ(verdict.status, "degraded");
  ASSERT_EQ(verdict.reasons.size(), 1u);
  EXPECT_EQ(verdict.reasons[0], "llm: " + h.llm);
  EXPECT_EQ(HealthJson(h, std::chrono::system_clock::now())["status"], "degraded");

  std::string metrics = RenderMetrics(MetricsSources{.llm = s.llm.get()});
  EXPECT_NE(metrics.find("af_llm_circuit_state{provider=\"anthropic\",state=\"open\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("af_llm_circuit_state{provider=\"anthropic\",state=\"closed\"} 0"),
            std::string::npos);
  EXPECT_NE(metrics.find("af_llm_circuit_consecutive_failures{provider=\"anthropic\"} 2"),
            std::string::npos);
  EXPECT_NE(metrics.find("af_llm_rate_limit_pauses_total{provider=\"anthropic\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("# TYPE af_llm_rate_limit_pauses_total counter"), std::string::npos);

  clock.Advance(seconds(30));
  EXPECT_EQ(s.Health().llm, "degraded: anthropic: circuit half-open (probing)");
  ASSERT_TRUE(s.llm->Complete(req).ok());
  EXPECT_EQ(s.Health().llm, "anthropic");
  EXPECT_EQ(EvaluateHealth(s.Health()).status, "healthy");
  metrics = RenderMetrics(MetricsSources{.llm = s.llm.get()});
  EXPECT_NE(metrics.find("af_llm_circuit_state{provider=\"anthropic\",state=\"closed\"} 1"),
            std::string::npos)
      << metrics;
}

TEST(LlmResilienceServicesTest, ReplayHasNoBreakerAndNoLlmMetrics) {
  testing::TempDir dir;
  Config config;
  config.data_dir = dir.path().string();
  auto services = Services::Open(config);
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  ASSERT_NE((*services)->llm, nullptr);
  EXPECT_FALSE((*services)->llm->Health().breaker);
  EXPECT_EQ((*services)->Health().llm, "replay");
  EXPECT_EQ(RenderMetrics(MetricsSources{.llm = (*services)->llm.get()}).find("af_llm_circuit"),
            std::string::npos);
}

}  // namespace
}  // namespace af
