// The real HTTP server on 127.0.0.1 (ephemeral port), spoken to over real
// sockets with the test client.
#include "af/api/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "af/api/errors.h"
#include "af/api/health.h"
#include "af/api/web_assets.h"
#include "support/http_client.h"
#include "support/sse_client.h"
#include "support/test_util.h"

namespace af {
namespace {

using testing::HttpCall;
using testing::HttpCallOptions;
using testing::HttpReply;

HttpReply Call(int port, const std::string& method, const std::string& path,
               const HttpCallOptions& options = {}) {
  Result<HttpReply> reply = HttpCall(port, method, path, options);
  EXPECT_TRUE(reply.ok()) << method << " " << path << ": " << reply.status().ToString();
  return reply.ok() ? *reply : HttpReply{};
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.port = 0;
    options.threads = 2;
    options.max_body_bytes = 1024;
    options.access_log = [this](const AccessLogEntry& e) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(e);
      log_cv_.notify_all();
    };
    server_ = std::make_unique<HttpServer>(options);
    AddHealthRoutes(*server_, [this] {
      std::lock_guard<std::mutex> lock(inputs_mu_);
      return inputs_;
    });
    AddWebAssetRoutes(*server_);
    server_->Route("GET", "/echo/:id", [](const HttpRequest& r) {
      nlohmann::json j = {{"id", r.path_params.at("id")},
                          {"query", r.query},
                          {"params", r.query_params},
                          {"request_id", r.request_id},
                          {"agent", r.Header("x-agent")}};
      return JsonResponse(200, j);
    });
    server_->Route("POST", "/upload", [](const HttpRequest& r) {
      HttpResponse resp;
      resp.status = 201;
      resp.content_type = "text/plain";
      resp.body = std::to_string(r.body.size());
      resp.headers.emplace_back("X-Request-Id", "handler-must-not-override");
      resp.headers.emplace_back("Cache-Control", "no-store");
      return resp;
    });
    server_->Route("GET", "/boom", [](const HttpRequest&) -> HttpResponse {
      throw std::runtime_error("handler exploded");
    });
    Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
    port_ = server_->port();
    ASSERT_GT(port_, 0);
  }

  void SetDatabase(const std::string& state) {
    std::lock_guard<std::mutex> lock(inputs_mu_);
    inputs_.database = state;
  }

  // Waits (bounded) for the access log to mention `request_id`.
  bool WaitForLog(const std::string& request_id, AccessLogEntry* out) {
    std::unique_lock<std::mutex> lock(log_mu_);
    return log_cv_.wait_for(lock, std::chrono::seconds(10), [&] {
      for (const auto& e : log_) {
        if (e.request_id == request_id) {
          *out = e;
          return true;
        }
      }
      return false;
    });
  }

  static HealthInputs DefaultInputs() {
    HealthInputs in;
    in.version = "9.9.9";
    in.environment = "test";
    in.database = "healthy";
    in.redis = "disabled";
    in.vector_store = "healthy";
    in.llm = "replay";
    in.agents = {{"coordinator", "running"}};
    return in;
  }

  std::mutex inputs_mu_;
  HealthInputs inputs_ = DefaultInputs();
  std::mutex log_mu_;
  std::condition_variable log_cv_;
  std::vector<AccessLogEntry> log_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
};

TEST_F(HttpServerTest, HealthHasShapeContentTypeAndRequestId) {
  HttpReply r = Call(port_, "GET", "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("x-request-id").rfind("req_", 0), 0u) << r.Header("x-request-id");
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["status"], "healthy");
  EXPECT_EQ(j["version"], "9.9.9");
  EXPECT_EQ(j["components"]["redis"], "disabled");
  EXPECT_EQ(j["components"]["agents"]["coordinator"], "running");
  EXPECT_TRUE(j["timestamp"].is_string());
}

TEST_F(HttpServerTest, LiveIsAlwaysAlive) {
  SetDatabase("unhealthy: gone");
  HttpReply r = Call(port_, "GET", "/health/live");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(nlohmann::json::parse(r.body), nlohmann::json({{"status", "alive"}}));
}

TEST_F(HttpServerTest, ReadyAndHealthFollowTheDatabase) {
  HttpReply ready = Call(port_, "GET", "/health/ready");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(nlohmann::json::parse(ready.body)["status"], "ready");

  SetDatabase("unhealthy: cannot open af.db");
  HttpReply unready = Call(port_, "GET", "/health/ready");
  EXPECT_EQ(unready.status, 503);
  EXPECT_EQ(unready.Header("retry-after"), "5");
  auto e = nlohmann::json::parse(unready.body)["error"];
  EXPECT_EQ(e["code"], "UNAVAILABLE");
  EXPECT_NE(e["message"].get<std::string>().find("database: unhealthy: cannot open af.db"),
            std::string::npos);
  EXPECT_EQ(e["request_id"], unready.Header("x-request-id"));

  HttpReply health = Call(port_, "GET", "/health");
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(nlohmann::json::parse(health.body)["status"], "unhealthy");
}

TEST_F(HttpServerTest, RootServesTheEmbeddedDashboard) {
  const WebAsset* index = nullptr;
  for (const WebAsset& a : WebAssets()) {
    if (a.path == "/index.html") index = &a;
  }
  ASSERT_NE(index, nullptr) << "web/index.html is not embedded";
  for (const char* path : {"/", "/index.html"}) {
    HttpReply r = Call(port_, "GET", path);
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.Header("content-type"), "text/html; charset=utf-8") << path;
    EXPECT_EQ(r.body, index->content) << path;
    EXPECT_NE(r.body.find("<html"), std::string::npos);
  }
}

TEST_F(HttpServerTest, HeadAnswersHeadersWithoutBody) {
  HttpReply r = Call(port_, "HEAD", "/health/live");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-length"),
            std::to_string(std::string(R"({"status":"alive"})").size()));
  EXPECT_TRUE(r.body.empty());
}

TEST_F(HttpServerTest, UnknownRouteIs404JsonWithMatchingRequestId) {
  HttpReply r = Call(port_, "GET", "/no/such/thing?x=1");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.Header("content-type"), "application/json");
  auto e = nlohmann::json::parse(r.body)["error"];
  EXPECT_EQ(e["code"], "NOT_FOUND");
  EXPECT_FALSE(r.Header("x-request-id").empty());
  EXPECT_EQ(e["request_id"], r.Header("x-request-id"));
  EXPECT_TRUE(e.contains("details"));
  EXPECT_TRUE(e.contains("hint"));
  EXPECT_NE(e["message"].get<std::string>().find("/no/such/thing"), std::string::npos);
}

TEST_F(HttpServerTest, WrongMethodIs405JsonWithAllow) {
  HttpReply r = Call(port_, "DELETE", "/health");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("allow"), "GET, HEAD");
  auto e = nlohmann::json::parse(r.body)["error"];
  EXPECT_EQ(e["code"], "METHOD_NOT_ALLOWED");
  EXPECT_EQ(e["request_id"], r.Header("x-request-id"));
}

TEST_F(HttpServerTest, SaneRequestIdIsEchoedOthersReplaced) {
  HttpCallOptions sane;
  sane.headers["X-Request-Id"] = "client-abc.123";
  HttpReply a = Call(port_, "GET", "/nope", sane);
  EXPECT_EQ(a.Header("x-request-id"), "client-abc.123");
  EXPECT_EQ(nlohmann::json::parse(a.body)["error"]["request_id"], "client-abc.123");

  HttpCallOptions insane;
  insane.headers["X-Request-Id"] = "<script>alert(1)</script>";
  HttpReply b = Call(port_, "GET", "/echo/x", insane);
  EXPECT_EQ(b.Header("x-request-id").rfind("req_", 0), 0u);
  EXPECT_EQ(nlohmann::json::parse(b.body)["request_id"], b.Header("x-request-id"));
}

TEST_F(HttpServerTest, PathAndQueryParamsReachTheHandler) {
  HttpCallOptions options;
  options.headers["X-Agent"] = "tester \t ";  // spaces around a value are not part of it
  HttpReply r = Call(port_, "GET", "/echo/f%2D1?status=running&limit=10&q=a+b%26c", options);
  ASSERT_EQ(r.status, 200);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["id"], "f-1");
  EXPECT_EQ(j["query"], "status=running&limit=10&q=a+b%26c");
  EXPECT_EQ(j["params"]["status"], "running");
  EXPECT_EQ(j["params"]["limit"], "10");
  EXPECT_EQ(j["params"]["q"], "a b&c");
  EXPECT_EQ(j["agent"], "tester");
}

TEST_F(HttpServerTest, BodyLimitGives413AndAllowsTheLimitItself) {
  HttpCallOptions at_limit;
  at_limit.body = std::string(1024, 'a');
  HttpReply ok = Call(port_, "POST", "/upload", at_limit);
  EXPECT_EQ(ok.status, 201);
  EXPECT_EQ(ok.body, "1024");
  // The server owns X-Request-Id; other handler headers pass through.
  EXPECT_NE(ok.Header("x-request-id"), "handler-must-not-override");
  EXPECT_EQ(ok.Header("cache-control"), "no-store");

  HttpCallOptions over;
  over.body = std::string(1025, 'a');
  HttpReply r = Call(port_, "POST", "/upload", over);
  EXPECT_EQ(r.status, 413);
  auto e = nlohmann::json::parse(r.body)["error"];
  EXPECT_EQ(e["code"], "PAYLOAD_TOO_LARGE");
  EXPECT_EQ(e["details"]["max_body_bytes"], 1024);
  EXPECT_EQ(e["request_id"], r.Header("x-request-id"));
}

// Sends `request` as is over a fresh connection (as much of it as the
// server takes) and reads until the server closes: what a client sees.
Result<HttpReply> RawExchange(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Internal("socket failed");
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return Unavailable("connect failed");
  }
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server stopped reading: its answer is what counts
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (raw.empty()) return Unavailable("the connection was closed without an answer");
  return testing::ParseHttpResponse(raw);
}

void ExpectRefusal(const Result<HttpReply>& r, int status, const std::string& code,
                   const std::string& what) {
  ASSERT_TRUE(r.ok()) << what << ": " << r.status().ToString();
  EXPECT_EQ(r->status, status) << what << ": " << r->body;
  EXPECT_EQ(r->Header("connection"), "close") << what;
  auto body = nlohmann::json::parse(r->body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << what << ": " << r->body;
  EXPECT_EQ(body["error"]["code"], code) << what;
  EXPECT_EQ(body["error"]["request_id"], r->Header("x-request-id")) << what;
}

// Requests RESTinio's parser refuses used to get the connection closed with
// no answer; the client must see why.
TEST_F(HttpServerTest, OversizedAndMalformedRequestsGetAnAnswerNotAClosedConnection) {
  // A body far over the limit, refused from its Content-Length: all 5 MiB
  // are sent, and the answer still arrives.
  ExpectRefusal(RawExchange(port_,
                            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5242880"
                            "\r\n\r\n" +
                                std::string(5 << 20, 'a')),
                413, "PAYLOAD_TOO_LARGE", "5 MiB body");
  // Chunked, growing past the limit.
  ExpectRefusal(RawExchange(port_,
                            "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                            "chunked\r\n\r\n1000\r\n" +
                                std::string(4096, 'a') + "\r\n0\r\n\r\n"),
                413, "PAYLOAD_TOO_LARGE", "chunked body");
  std::string many = "GET /health/live HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 10000; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  ExpectRefusal(RawExchange(port_, many + "\r\n"), 431, "HEADERS_TOO_LARGE", "10,000 headers");
  ExpectRefusal(RawExchange(port_, "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                       std::string(1 << 20, 'a') + "\r\n\r\n"),
                431, "HEADERS_TOO_LARGE", "1 MB header");
  ExpectRefusal(RawExchange(port_, "GET /echo/1?" + std::string(100000, 'a') +
                                       " HTTP/1.1\r\nHost: x\r\n\r\n"),
                414, "URI_TOO_LONG", "100 kB URL");
  ExpectRefusal(RawExchange(port_,
                            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                400, "VALIDATION_ERROR", "Content-Length with Transfer-Encoding");
  auto huge_chunk = RawExchange(port_,
                                "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                "chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\na\r\n0\r\n\r\n");
  ExpectRefusal(huge_chunk, 400, "VALIDATION_ERROR", "a chunk size past 2^64");
  ASSERT_TRUE(huge_chunk.ok());
  EXPECT_NE(huge_chunk->body.find("chunk's size is out of range"), std::string::npos)
      << huge_chunk->body;
  ExpectRefusal(RawExchange(port_, "HELLO\r\n\r\n"), 400, "VALIDATION_ERROR", "not HTTP");
  // Within the limits all is as before, and the server kept serving.
  EXPECT_EQ(Call(port_, "GET", "/health/live").status, 200);
  EXPECT_EQ(Call(port_, "GET", "/echo/1?" + std::string(8000, 'a')).status, 200);
}

TEST_F(HttpServerTest, ThrowingHandlerGives500AndServerKeepsServing) {
  HttpReply r = Call(port_, "GET", "/boom");
  EXPECT_EQ(r.status, 500);
  auto e = nlohmann::json::parse(r.body)["error"];
  EXPECT_EQ(e["code"], "INTERNAL");
  EXPECT_EQ(e["request_id"], r.Header("x-request-id"));
  EXPECT_EQ(Call(port_, "GET", "/health/live").status, 200);
  EXPECT_EQ(Call(port_, "GET", "/boom").status, 500);
  EXPECT_EQ(Call(port_, "GET", "/health/live").status, 200);
}

TEST_F(HttpServerTest, AccessLogSeesEveryAnsweredRequest) {
  HttpCallOptions options;
  options.headers["X-Request-Id"] = "log-me-1";
  HttpReply r = Call(port_, "GET", "/no/where?secret=1", options);
  ASSERT_EQ(r.status, 404);
  AccessLogEntry entry;
  ASSERT_TRUE(WaitForLog("log-me-1", &entry));
  EXPECT_EQ(entry.method, "GET");
  EXPECT_EQ(entry.path, "/no/where");  // no query in the log
  EXPECT_EQ(entry.status, 404);
  EXPECT_GE(entry.duration_us, 0);
}

TEST_F(HttpServerTest, SecondServerOnSamePortFailsWithClearMessage) {
  HttpServerOptions options;
  options.port = port_;
  HttpServer second(options);
  Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  const std::string p = std::to_string(port_);
  EXPECT_EQ(s.message(), "port " + p + " on 127.0.0.1 is already in use");
  EXPECT_EQ(s.hint(), "stop the other process (e.g. 'ss -ltnp | grep :" + p +
                          "') or choose another port with --port or AF_PORT");
  EXPECT_FALSE(second.running());
  second.Stop();  // harmless on a server that never started
  // The first server is unaffected.
  EXPECT_EQ(Call(port_, "GET", "/health/live").status, 200);
}

TEST_F(HttpServerTest, StopIsPromptWithOpenConnectionsAndIdempotent) {
  // An idle keep-alive connection must not hold Stop() until its idle timeout
  // (60 s here; the test's own timeout would catch a hang).
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};  // a server that failed to close it makes recv fail, not hang
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string req = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  char buf[4096];
  ASSERT_GT(recv(fd, buf, sizeof buf, 0), 0);  // answered; the connection stays open

  EXPECT_TRUE(server_->running());
  server_->Stop();
  EXPECT_FALSE(server_->running());
  server_->Stop();
  // The open connection was closed by the server: EOF or reset, not a timeout.
  errno = 0;
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << std::strerror(errno);
  close(fd);
  EXPECT_FALSE(HttpCall(port_, "GET", "/health/live").ok());
  EXPECT_EQ(server_->Start().code(), Code::kFailedPrecondition);
  server_.reset();  // destructor after Stop is fine too
}

TEST_F(HttpServerTest, FiftyConcurrentRequestsAllAnswered) {
  constexpr int kThreads = 5, kPerThread = 10;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        Result<HttpReply> r = HttpCall(port_, "GET", "/echo/" + id + "?n=" + std::to_string(i));
        if (r.ok() && r->status == 200) {
          auto j = nlohmann::json::parse(r->body, nullptr, false);
          if (!j.is_discarded() && j["id"] == id && j["params"]["n"] == std::to_string(i)) ++good;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), kThreads * kPerThread);
}

TEST(HttpServerStartTest, BadOptionsAreInvalidArgument) {
  HttpServerOptions bad_host;
  bad_host.host = "not-an-ip";
  bad_host.port = 0;
  Status s = HttpServer(bad_host).Start();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("not-an-ip"), std::string::npos);
  EXPECT_FALSE(s.hint().empty());

  HttpServerOptions bad_port;
  bad_port.port = 70000;
  EXPECT_EQ(HttpServer(bad_port).Start().code(), Code::kInvalidArgument);

  HttpServerOptions no_threads;
  no_threads.port = 0;
  no_threads.threads = 0;
  EXPECT_EQ(HttpServer(no_threads).Start().code(), Code::kInvalidArgument);
}

TEST(HttpServerStartTest, ForeignAddressIsAClearBindFailure) {
  HttpServerOptions options;
  options.host = "192.0.2.1";  // TEST-NET-1: never an address of this machine
  options.port = 0;
  HttpServer server(options);
  Status s = server.Start();
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("192.0.2.1 is not an address of this machine"), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.hint().find("--host"), std::string::npos);
  EXPECT_FALSE(server.running());
}

TEST(HttpServerStartTest, RouteAfterStartIsAProgrammingError) {
  HttpServerOptions options;
  options.port = 0;
  options.host = "localhost";
  HttpServer server(options);
  server.Route("GET", "/a", [](const HttpRequest&) { return HttpResponse{}; });
  ASSERT_TRUE(server.Start().ok());
  EXPECT_THROW(server.Route("GET", "/b", [](const HttpRequest&) { return HttpResponse{}; }),
               std::logic_error);
  EXPECT_EQ(Call(server.port(), "GET", "/a").status, 200);
}

// A stream's writes leave from the writer's thread: an event reaches its
// client while every I/O thread is busy in a slow handler (they used to be
// queued for the event loop, so a slow request delayed every SSE client).
// The response head is the one streams always had, and Close() ends it.
TEST(HttpServerStreamTest, WritesReachTheClientWhileTheIoThreadsAreBusy) {
  HttpServerOptions options;
  options.port = 0;
  options.threads = 1;
  HttpServer server(options);
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<ResponseStream> stream;
  bool in_slow = false, release = false;
  StreamOptions stream_options;
  stream_options.headers = {{"X-Accel-Buffering", "no"}};
  server.RouteStream(
      "GET", "/stream",
      [&](const HttpRequest&,
          const std::shared_ptr<ResponseStream>& s) -> std::optional<HttpResponse> {
        s->AddHeader("X-Extra", "1");
        s->Write("retry: 5\n\n");  // before the head is sent: follows it
        std::lock_guard<std::mutex> lock(mu);
        stream = s;
        cv.notify_all();
        return std::nullopt;
      },
      stream_options);
  server.Route("GET", "/slow", [&](const HttpRequest&) {
    std::unique_lock<std::mutex> lock(mu);
    in_slow = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return JsonResponse(200, {});
  });
  ASSERT_TRUE(server.Start().ok());
  auto client = testing::SseClient::Connect(server.port(), "/stream");
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_EQ((*client)->status(), 200);
  EXPECT_EQ((*client)->Header("content-type"), "text/event-stream");
  EXPECT_EQ((*client)->Header("cache-control"), "no-cache");
  EXPECT_EQ((*client)->Header("connection"), "close");
  EXPECT_EQ((*client)->Header("x-accel-buffering"), "no");
  EXPECT_EQ((*client)->Header("x-extra"), "1");
  EXPECT_EQ((*client)->Header("x-request-id").rfind("req_", 0), 0u);
  auto retry = (*client)->Next();
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_EQ(retry->retry, 5);

  // The server's only I/O thread is held in /slow.
  std::thread slow([&] { (void)HttpCall(server.port(), "GET", "/slow"); });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return in_slow; }));
  }
  EXPECT_TRUE(stream->Write("id: 1\ndata: while busy\n\n"));
  auto event = (*client)->Next(std::chrono::seconds(3));
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  }
  slow.join();
  ASSERT_TRUE(event.ok()) << event.status().ToString();
  EXPECT_EQ(event->data, "while busy");

  stream->Close();
  EXPECT_TRUE((*client)->WaitClosed(std::chrono::seconds(10)));
  EXPECT_FALSE(stream->Write("data: late\n\n"));
  server.Stop();
}

}  // namespace
}  // namespace af
