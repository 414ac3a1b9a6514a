// LlmClient::CompleteAsync on the HTTP providers: calls run on the one I/O
// thread, so a thousand calls waiting on the network (or on a retry's
// backoff) hold no thread each; retries, broken streams, streaming,
// cancellation and the circuit breaker behave as for Complete.

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "af/llm/http_transport.h"
#include "af/llm/llm_client.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeLlmServer;
using testing::FakeReply;

constexpr char kKey[] = "sk-test-SECRET-async-0123456789";

// A thousand sockets at once need more than the common default of 1024.
void RaiseFileLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// af_fake_llm (tests/fake_llm) in a child process: its thread per connection
// does not count against this process.
class FakeLlmProcess {
 public:
  explicit FakeLlmProcess(std::vector<std::string> args)
      : child_([&] {
          args.insert(args.begin(), AF_FAKE_LLM_BINARY);
          return args;
        }()) {
    testing::WaitFor([this] { return child_.Out().find('\n') != std::string::npos; });
    const std::string out = child_.Out();
    if (out.rfind("port ", 0) == 0) port_ = std::stoi(out.substr(5));
  }
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  testing::ChildProcess child_;
  int port_ = 0;
};

// Collects the outcomes of asynchronous calls, each by its index.
class Outcomes {
 public:
  explicit Outcomes(size_t n) : results_(n) {}
  LlmClient::CompleteDone Slot(size_t i) {
    return [this, i](Result<LlmResponse> r) {
      std::lock_guard lock(mu_);
      results_[i] = std::move(r);
      ++done_;
      cv_.notify_all();
    };
  }
  size_t done() {
    std::lock_guard lock(mu_);
    return done_;
  }
  // Waits for all of them (false after `timeout`), sampling testing::ThreadsOfThisProcess()
  // meanwhile into *peak_threads when given.
  bool WaitAll(milliseconds timeout, int* peak_threads = nullptr) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mu_);
    while (done_ < results_.size()) {
      if (peak_threads) *peak_threads = std::max(*peak_threads, testing::ThreadsOfThisProcess());
      if (cv_.wait_until(lock, std::min(end, std::chrono::steady_clock::now() +
                                                 milliseconds(20))) == std::cv_status::timeout &&
          std::chrono::steady_clock::now() >= end) {
        return done_ == results_.size();
      }
    }
    return true;
  }
  const std::optional<Result<LlmResponse>>& at(size_t i) {
    std::lock_guard lock(mu_);
    return results_[i];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::optional<Result<LlmResponse>>> results_;  // guarded by mu_
  size_t done_ = 0;                                          // guarded by mu_
};

class LlmAsyncTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool anthropic() const { return GetParam() == "anthropic"; }

  LlmOptions Options(const std::string& base_url) {
    LlmOptions o;
    o.provider = GetParam();
    o.model = anthropic() ? "claude-sonnet-4-5" : "gpt-4o";
    o.api_key = kKey;
    o.base_url = anthropic() ? base_url : base_url + "/v1";
    o.timeout = seconds(60);
    o.max_retries = 0;
    o.seed = 11;
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

  // Starts `n` calls at once asking "<prefix><i>" (the odd ones streamed
  // when `stream_odd`), checks that none held this thread until its reply,
  // waits up to `timeout` for all and checks each echoes its question after
  // `attempts` attempts. *peak: the most threads this process had meanwhile.
  void CallAllAtOnce(LlmClient* c, size_t n, const std::string& prefix, bool stream_odd,
                     int attempts, milliseconds timeout, int* peak) {
    Outcomes out(n);
    for (size_t i = 0; i < n; ++i) {
      c->CompleteAsync(Request(prefix + std::to_string(i), stream_odd && i % 2 == 1), {},
                       out.Slot(i));
      ASSERT_TRUE(i > 0 || out.done() == 0)
          << "CompleteAsync held the calling thread until the reply came";
    }
    *peak = testing::ThreadsOfThisProcess();
    ASSERT_TRUE(out.WaitAll(timeout, peak)) << out.done() << " of " << n << " done";
    for (size_t i = 0; i < n; ++i) {
      const auto& r = out.at(i);
      ASSERT_TRUE(r.has_value()) << i;
      ASSERT_TRUE(r->ok()) << i << ": " << r->status().ToString();
      EXPECT_EQ((*r)->text, "echo: " + prefix + std::to_string(i));
      EXPECT_EQ((*r)->attempts, attempts);
    }
  }

  static LlmRequest Request(const std::string& user, bool stream = false) {
    LlmRequest r;
    r.system = "You are a test agent.";
    r.messages = {Message::User(user)};
    r.stream = stream;
    r.agent_role = "coder";
    r.feature_id = "feat-async";
    return r;
  }

  std::vector<LlmCallRecord> records() {
    std::lock_guard lock(mu_);
    return records_;
  }

  std::mutex mu_;
  std::vector<LlmCallRecord> records_;
};

// (a) A thousand calls at once against a server answering after 300 ms: all
// are under way together and all come back right, on a handful of threads.
TEST_P(LlmAsyncTest, AThousandCallsInFlightHoldNoThreadEach) {
  RaiseFileLimit();
  FakeLlmProcess server({"--latency-ms", "300"});
  ASSERT_NE(server.port(), 0) << "af_fake_llm did not start";
  auto c = Make(Options(server.base_url()));
  ASSERT_NE(c, nullptr);
  constexpr size_t kCalls = 1000;
  const int threads_before = testing::ThreadsOfThisProcess();
  int peak = 0;
  // Every other call streamed: both decoders run on the I/O thread.
  CallAllAtOnce(c.get(), kCalls, "call ", /*stream_odd=*/true, 1, seconds(120), &peak);
  if (HasFatalFailure()) return;
  EXPECT_EQ(records().size(), kCalls);
  std::printf("threads: %d before the calls, at most %d with %zu calls in flight\n", threads_before,
              peak, kCalls);
  EXPECT_LT(peak, 20) << "threads before: " << threads_before;
  EXPECT_LE(peak - threads_before, 2) << "the calls took threads of their own";
}

// (b) Retries after 503s with their backoff: 200 calls each fail twice and
// then succeed, all waiting out their backoffs at the same time on timers.
TEST_P(LlmAsyncTest, RetryBackoffsOfManyCallsHoldNoThreadEach) {
  RaiseFileLimit();
  FakeLlmProcess server({"--latency-ms", "50", "--fail-first", "2"});
  ASSERT_NE(server.port(), 0) << "af_fake_llm did not start";
  LlmOptions o = Options(server.base_url());
  o.max_retries = 3;
  o.backoff_base = milliseconds(200);
  o.backoff_max = milliseconds(400);
  o.circuit_failures = 0;  // 400 failed attempts are not an outage here
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  constexpr size_t kCalls = 200;
  const int threads_before = testing::ThreadsOfThisProcess();
  int peak = 0;
  CallAllAtOnce(c.get(), kCalls, "retry ", /*stream_odd=*/false, 3, seconds(60), &peak);
  if (HasFatalFailure()) return;
  EXPECT_LE(peak - threads_before, 2) << "backoff waits took threads of their own";
}

TEST_P(LlmAsyncTest, RateLimitAndBrokenStreamAreRetried) {
  FakeLlmServer fake;
  fake.Push(
      FakeReply::Status(429, R"({"error":{"message":"slow down"}})", {{"retry-after-ms", "150"}}));
  fake.Push(FakeReply::Cut(2));
  fake.Push(FakeReply::Text("third time lucky"));
  LlmOptions o = Options(fake.base_url());
  o.max_retries = 2;
  o.backoff_base = milliseconds(10);
  o.backoff_max = milliseconds(20);
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  Outcomes out(1);
  std::string deltas;
  c->CompleteAsync(
      Request("hi", /*stream=*/true), [&](std::string_view d) { deltas += d; }, out.Slot(0));
  ASSERT_TRUE(out.WaitAll(seconds(20)));
  const auto& r = out.at(0);
  ASSERT_TRUE(r->ok()) << r->status().ToString();
  EXPECT_EQ((*r)->text, "third time lucky");
  EXPECT_EQ((*r)->attempts, 3);
  // The deltas of the broken attempt came first; the last attempt's are whole.
  EXPECT_NE(deltas.find("third time lucky"), std::string::npos) << deltas;
  EXPECT_EQ(fake.request_count(), 3u);
  EXPECT_EQ(c->Health().rate_limit_pauses, 1);
  ASSERT_EQ(records().size(), 1u);
  EXPECT_EQ(records()[0].attempts, 3);
  EXPECT_EQ(records()[0].status, "ok");
}

TEST_P(LlmAsyncTest, RetriesRunOutWithTheLastStatus) {
  FakeLlmServer fake;
  for (int i = 0; i < 2; ++i) fake.Push(FakeReply::Status(502, R"({"error":{"message":"bad"}})"));
  LlmOptions o = Options(fake.base_url());
  o.max_retries = 1;
  o.backoff_base = milliseconds(10);
  o.backoff_max = milliseconds(10);
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  Outcomes out(1);
  c->CompleteAsync(Request("hi"), {}, out.Slot(0));
  ASSERT_TRUE(out.WaitAll(seconds(20)));
  const auto& r = out.at(0);
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->status().code(), Code::kUnavailable);
  EXPECT_NE(r->status().message().find("HTTP 502"), std::string::npos) << r->status().ToString();
  EXPECT_NE(r->status().message().find("gave up after 2 attempts"), std::string::npos);
  EXPECT_EQ(r->status().ToString().find(kKey), std::string::npos);
  ASSERT_EQ(records().size(), 1u);
  EXPECT_EQ(records()[0].attempts, 2);
  EXPECT_EQ(records()[0].status, "unavailable");
}

// (c) Cancellation: a slow reply, and a long retry-after, are both given up
// within moments once the work ends, with nothing more sent.
TEST_P(LlmAsyncTest, CancellingAnInFlightCallEndsItAtOnce) {
  FakeLlmServer fake;
  FakeReply slow = FakeReply::Text("too late");
  slow.latency = seconds(60);
  fake.Push(slow);
  auto c = Make(Options(fake.base_url()));
  ASSERT_NE(c, nullptr);
  auto stop = std::make_shared<std::atomic<bool>>(false);
  LlmRequest req = Request("hi");
  req.cancelled = [stop] { return stop->load(); };
  Outcomes out(1);
  c->CompleteAsync(req, {}, out.Slot(0));
  ASSERT_TRUE(testing::WaitFor([&] { return fake.request_count() == 1; }));
  EXPECT_EQ(out.done(), 0u);
  *stop = true;
  ASSERT_TRUE(out.WaitAll(seconds(5))) << "the call still waits for the 60 s reply";
  const auto& r = out.at(0);
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->status().code(), Code::kCancelled) << r->status().ToString();
  EXPECT_EQ(fake.request_count(), 1u);
  EXPECT_EQ(c->Health().consecutive_failures, 0);
}

TEST_P(LlmAsyncTest, CancellingDuringTheBackoffSendsNoRetry) {
  FakeLlmServer fake;
  fake.SetResponder([](const testing::RecordedRequest&) -> std::optional<FakeReply> {
    return FakeReply::Status(500, R"({"error":{"message":"overloaded"}})", {{"retry-after", "30"}});
  });
  LlmOptions o = Options(fake.base_url());
  o.max_retries = 4;
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  auto stop = std::make_shared<std::atomic<bool>>(false);
  LlmRequest req = Request("hi");
  req.cancelled = [stop] { return stop->load(); };
  Outcomes out(1);
  c->CompleteAsync(req, {}, out.Slot(0));
  ASSERT_TRUE(testing::WaitFor([&] { return fake.request_count() == 1; }));
  *stop = true;
  ASSERT_TRUE(out.WaitAll(seconds(5))) << "the call still sleeps out the 30 s retry-after";
  const auto& r = out.at(0);
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->status().code(), Code::kCancelled) << r->status().ToString();
  EXPECT_EQ(fake.request_count(), 1u);
}

// (d) Streaming: the deltas arrive on the I/O thread before done, and add up
// to the reply.
TEST_P(LlmAsyncTest, StreamedDeltasArriveBeforeDone) {
  FakeLlmServer fake;
  fake.Push(FakeReply::Text("Hello from the streaming side of the fake server"));
  auto c = Make(Options(fake.base_url()));
  ASSERT_NE(c, nullptr);
  std::mutex mu;
  std::vector<std::string> deltas;
  std::thread::id delta_thread;
  bool done_seen_before_delta = false;
  std::atomic<bool> done{false};
  Outcomes out(1);
  auto slot = out.Slot(0);
  c->CompleteAsync(
      Request("stream please", /*stream=*/true),
      [&](std::string_view d) {
        std::lock_guard lock(mu);
        if (done) done_seen_before_delta = true;
        deltas.emplace_back(d);
        delta_thread = std::this_thread::get_id();
      },
      [&, slot](Result<LlmResponse> r) {
        done = true;
        slot(std::move(r));
      });
  ASSERT_TRUE(out.WaitAll(seconds(20)));
  const auto& r = out.at(0);
  ASSERT_TRUE(r->ok()) << r->status().ToString();
  std::lock_guard lock(mu);
  EXPECT_GT(deltas.size(), 1u);
  std::string joined;
  for (const auto& d : deltas) joined += d;
  EXPECT_EQ(joined, (*r)->text);
  EXPECT_EQ((*r)->text, "Hello from the streaming side of the fake server");
  EXPECT_FALSE(done_seen_before_delta);
  EXPECT_NE(delta_thread, std::this_thread::get_id());
}

// (e) The circuit opens after failed async calls; then a call fails fast,
// before CompleteAsync returns, with nothing sent.
TEST_P(LlmAsyncTest, CircuitOpensThroughAsyncCallsAndThenFailsFast) {
  FakeLlmServer fake;
  fake.Push(FakeReply::Status(500, R"({"error":{"message":"boom 1"}})"));
  fake.Push(FakeReply::Status(503, R"({"error":{"message":"boom 2"}})"));
  LlmOptions o = Options(fake.base_url());
  o.circuit_failures = 2;
  o.circuit_cooldown = seconds(30);
  auto c = Make(o);
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 2; ++i) {
    Outcomes out(1);
    c->CompleteAsync(Request("hi"), {}, out.Slot(0));
    ASSERT_TRUE(out.WaitAll(seconds(20)));
    EXPECT_EQ(out.at(0)->status().code(), Code::kUnavailable);
  }
  LlmHealth h = c->Health();
  EXPECT_EQ(h.state, "open");
  EXPECT_EQ(h.consecutive_failures, 2);
  EXPECT_NE(h.last_error.find("boom 2"), std::string::npos) << h.last_error;

  Outcomes fast(1);
  c->CompleteAsync(Request("hi"), {}, fast.Slot(0));
  ASSERT_EQ(fast.done(), 1u) << "an open circuit answers before CompleteAsync returns";
  const auto& r = fast.at(0);
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->status().code(), Code::kUnavailable);
  EXPECT_NE(r->status().message().find("circuit open after 2 consecutive failures"),
            std::string::npos)
      << r->status().message();
  EXPECT_EQ(fake.request_count(), 2u);
  ASSERT_EQ(records().size(), 3u);
  EXPECT_EQ(records().back().attempts, 0);
  EXPECT_EQ(records().back().status, "unavailable");
}

// A blocking Complete from a callback on the I/O thread would wait for
// itself: it fails at once, saying so.
TEST_P(LlmAsyncTest, BlockingCallFromTheIoThreadFailsInsteadOfDeadlocking) {
  FakeLlmServer fake;
  fake.Push(FakeReply::Text("first"));
  auto c = Make(Options(fake.base_url()));
  ASSERT_NE(c, nullptr);
  Outcomes out(1);
  std::optional<Result<LlmResponse>> nested;
  c->CompleteAsync(Request("hi"), {}, [&, slot = out.Slot(0)](Result<LlmResponse> r) {
    nested = c->Complete(Request("nested"));
    slot(std::move(r));
  });
  ASSERT_TRUE(out.WaitAll(seconds(20)));
  ASSERT_TRUE(out.at(0)->ok());
  ASSERT_TRUE(nested.has_value());
  ASSERT_FALSE(nested->ok());
  EXPECT_EQ(nested->status().code(), Code::kFailedPrecondition);
  EXPECT_NE(nested->status().message().find("I/O thread"), std::string::npos);
  EXPECT_EQ(fake.request_count(), 1u);
}

// A client destroyed while the conclusion of a call (its record and `done`)
// waits in the caller's queue (`post`) waits for it to run, and the record
// still names the provider and the model: nothing of the client is used
// after it went.
TEST_P(LlmAsyncTest, DestroyingTheClientWaitsForConclusionsStillPosted) {
  FakeLlmServer fake;
  fake.Push(FakeReply::Text("answer"));
  auto c = Make(Options(fake.base_url()));
  ASSERT_NE(c, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::function<void()>> queue;  // guarded by mu
  std::atomic<bool> done{false};
  c->CompleteAsync(
      Request("hi"), {}, [&](Result<LlmResponse> r) { done = r.ok(); },
      [&](std::function<void()> fn) {
        std::lock_guard lock(mu);
        queue.push_back(std::move(fn));
        cv.notify_all();
      });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, seconds(20), [&] { return !queue.empty(); }));
  }
  std::atomic<bool> destroyed{false};
  std::thread destroyer([&] {
    c.reset();
    destroyed = true;
  });
  std::this_thread::sleep_for(milliseconds(200));  // the destructor has had its chance
  EXPECT_FALSE(destroyed) << "the client went while its call's conclusion was still queued";
  std::function<void()> fn;
  {
    std::lock_guard lock(mu);
    fn = std::move(queue.front());
  }
  fn();
  destroyer.join();
  EXPECT_TRUE(destroyed);
  EXPECT_TRUE(done);
  const auto recs = records();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].provider, GetParam());
  EXPECT_EQ(recs[0].model, anthropic() ? "claude-sonnet-4-5" : "gpt-4o");
}

// Exchanges with the same host share connections (one multi handle for the
// process): five calls one after the other reach a keep-alive server over
// one connection, not five.
TEST(CurlTransportReuseTest, SequentialCallsToOneHostReuseTheConnection) {
  int port = 0;
  const int listen_fd = testing::ListenOnLoopback(&port, "keep-alive server");
  std::atomic<int> accepted{0};
  std::thread server([&] {
    for (;;) {
      const int fd = ::accept(listen_fd, nullptr, nullptr);
      if (fd < 0) return;
      ++accepted;
      // Answers requests on this connection until the client closes it.
      std::thread([fd] {
        testing::RecordedRequest req;
        while (testing::ReadHttpRequest(fd, &req)) {
          req = {};
          if (!testing::SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) break;
        }
        ::close(fd);
      }).detach();
    }
  });
  auto transport = MakeCurlTransport();
  for (int i = 0; i < 5; ++i) {
    ClientRequest r;
    r.method = "GET";
    r.url = "http://127.0.0.1:" + std::to_string(port) + "/ping";
    auto resp = transport->Send(r, {});
    ASSERT_TRUE(resp.ok()) << resp.status().ToString();
    EXPECT_EQ(resp->status, 200);
    EXPECT_EQ(resp->body, "ok");
  }
  EXPECT_EQ(accepted.load(), 1) << "each call opened a connection of its own";
  transport.reset();
  ::shutdown(listen_fd, SHUT_RDWR);
  ::close(listen_fd);
  server.join();
}

INSTANTIATE_TEST_SUITE_P(Providers, LlmAsyncTest, ::testing::Values("anthropic", "openai"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace af
