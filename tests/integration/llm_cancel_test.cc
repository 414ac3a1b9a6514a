// A model call whose work has ended sends nothing more: LlmRequest::cancelled
// is asked before every attempt, during backoff and during the transfer. And a
// proxy that wants credentials is named as such, once, not retried.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "af/llm/llm_client.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeLlmServer;
using testing::FakeReply;

constexpr char kKey[] = "sk-test-cancel-0123456789abcdef";

LlmOptions OpenAiOptions(const std::string& base_url) {
  LlmOptions o;
  o.provider = "openai";
  o.model = "gpt-4o-mini";
  o.api_key = kKey;
  o.base_url = base_url;
  o.timeout = seconds(120);  // the default: without cancellation a slow reply is waited out
  o.max_retries = 4;
  o.circuit_failures = 0;
  return o;
}

LlmRequest Hello(std::atomic<bool>* stop) {
  LlmRequest r;
  r.messages.push_back(Message::User("Say hello."));
  r.cancelled = [stop] { return stop->load(); };
  return r;
}

std::unique_ptr<LlmClient> Make(const LlmOptions& o) {
  auto c = LlmClient::Create(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

// Runs client->Complete(request) on a thread; Join() returns its result.
class Call {
 public:
  Call(LlmClient* client, LlmRequest request)
      : thread_([this, client, request = std::move(request)] {
          result_ = client->Complete(request);
          done_ = true;
        }) {}
  ~Call() {
    if (thread_.joinable()) thread_.join();
  }
  bool done() const { return done_; }
  Result<LlmResponse> Join() {
    thread_.join();
    return result_;
  }

 private:
  Result<LlmResponse> result_ = Internal("not run");
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Starts a call on the fake server, ends the work once the server has its
// request, and expects the call to give up within seconds (instead of what it
// would otherwise wait out), cancelled and without sending anything more.
void ExpectCallGivesUpWhenTheWorkEnds(FakeLlmServer& fake, const std::string& instead) {
  auto client = Make(OpenAiOptions(fake.base_url() + "/v1"));
  ASSERT_NE(client, nullptr);
  std::atomic<bool> stop{false};
  Call call(client.get(), Hello(&stop));
  ASSERT_TRUE(testing::WaitFor([&] { return fake.request_count() == 1; }));
  stop = true;
  ASSERT_TRUE(testing::WaitFor([&] { return call.done(); }, seconds(5)))
      << "the call still " << instead;
  auto r = call.Join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCancelled) << r.status().ToString();
  EXPECT_EQ(fake.request_count(), 1u);  // and no retry of the abandoned attempt
}

TEST(LlmCancelTest, ASlowReplyIsAbandonedWhenTheWorkEnds) {
  FakeLlmServer fake;
  FakeReply slow = FakeReply::Text("too late");
  slow.latency = seconds(60);
  fake.Push(slow);
  ExpectCallGivesUpWhenTheWorkEnds(fake, "waits for the 60 s reply");
}

TEST(LlmCancelTest, NoRetryIsSentOnceTheWorkEndedDuringTheBackoff) {
  FakeLlmServer fake;
  fake.SetResponder([](const testing::RecordedRequest&) -> std::optional<FakeReply> {
    return FakeReply::Status(500, R"({"error":{"message":"overloaded"}})", {{"retry-after", "30"}});
  });
  ExpectCallGivesUpWhenTheWorkEnds(fake, "sleeps out the 30 s retry-after");
}

TEST(LlmCancelTest, AnEndedCallSendsNothingAtAll) {
  FakeLlmServer fake;
  fake.Push(FakeReply::Text("unused"));
  auto client = Make(OpenAiOptions(fake.base_url() + "/v1"));
  ASSERT_NE(client, nullptr);
  std::atomic<bool> stop{true};
  auto r = client->Complete(Hello(&stop));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCancelled);
  EXPECT_EQ(fake.request_count(), 0u);
  EXPECT_EQ(client->Health().consecutive_failures, 0);  // not an outage
}

// A loopback HTTP proxy that answers every request (CONNECT or a plain
// forward) with 407 Proxy Authentication Required.
class DenyingProxy {
 public:
  DenyingProxy() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len)) {
      throw std::runtime_error("cannot listen");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~DenyingProxy() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_; }
  std::string first_line() const {
    std::lock_guard lock(mu_);
    return first_line_;
  }

 private:
  void Loop() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        if (first_line_.empty()) first_line_ = head.substr(0, head.find("\r\n"));
      }
      ++requests_;
      const std::string reply =
          "HTTP/1.1 407 Proxy Authentication Required\r\n"
          "Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n"
          "Connection: close\r\n\r\n";
      ssize_t ignored = ::write(c, reply.data(), reply.size());
      (void)ignored;
      ::close(c);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> requests_{0};
  mutable std::mutex mu_;
  std::string first_line_;
  std::thread thread_;
};

// Sets proxy variables for this process (libcurl reads them per transfer)
// and puts the old values back.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::map<std::string, std::string> vars) {
    for (const char* name : {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                             "no_proxy", "NO_PROXY"}) {
      if (const char* v = std::getenv(name)) saved_[name] = v;
      ::unsetenv(name);
    }
    for (const auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
    set_ = std::move(vars);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : set_) ::unsetenv(k.c_str());
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
  }

 private:
  std::map<std::string, std::string> saved_, set_;
};

void ExpectProxyNamed(const Status& s, const DenyingProxy& proxy, const std::string& var) {
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("proxy " + proxy.url() + " (from " + var + ")"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("407"), std::string::npos) << s.message();
  EXPECT_NE(s.hint().find(var), std::string::npos) << s.hint();
  EXPECT_NE(s.hint().find("NO_PROXY"), std::string::npos) << s.hint();
  EXPECT_EQ(s.ToString().find("retried automatically"), std::string::npos) << s.ToString();
  EXPECT_EQ(s.ToString().find(kKey), std::string::npos);
}

TEST(LlmProxyTest, HttpsThroughAProxyThatWantsCredentialsIsNamedAndNotRetried) {
  DenyingProxy proxy;
  ScopedEnv env({{"HTTPS_PROXY", proxy.url()}});
  auto client = Make(OpenAiOptions("https://provider.invalid/v1"));
  ASSERT_NE(client, nullptr);
  std::atomic<bool> never{false};
  auto r = client->Complete(Hello(&never));
  ASSERT_FALSE(r.ok());
  ExpectProxyNamed(r.status(), proxy, "HTTPS_PROXY");
  EXPECT_EQ(proxy.first_line().rfind("CONNECT provider.invalid:443", 0), 0u) << proxy.first_line();
  EXPECT_EQ(proxy.requests(), 1);
}

TEST(LlmProxyTest, PlainHttpThroughAProxyThatWantsCredentialsIsNamedAndNotRetried) {
  DenyingProxy proxy;
  ScopedEnv env({{"http_proxy", proxy.url()}});
  auto client = Make(OpenAiOptions("http://provider.invalid/v1"));
  ASSERT_NE(client, nullptr);
  std::atomic<bool> never{false};
  auto r = client->Complete(Hello(&never));
  ASSERT_FALSE(r.ok());
  ExpectProxyNamed(r.status(), proxy, "http_proxy");
  EXPECT_EQ(proxy.first_line().rfind("POST http://provider.invalid/v1/chat/completions", 0), 0u)
      << proxy.first_line();
  EXPECT_EQ(proxy.requests(), 1);
}

}  // namespace
}  // namespace af
