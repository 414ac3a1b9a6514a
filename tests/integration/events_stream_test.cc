// Server-sent events end to end: a real HttpServer + EventHub on a real
// SQLite store in a temporary directory, spoken to over loopback sockets.
#include "af/api/events_stream.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "af/api/auth.h"
#include "af/api/errors.h"
#include "af/api/http_server.h"
#include "af/api/metrics.h"
#include "af/api/middleware.h"
#include "af/core/log.h"
#include "af/store/store.h"
#include "support/fake_clock.h"
#include "support/faulty_store.h"
#include "support/http_client.h"
#include "support/sse_client.h"
#include "support/test_util.h"

namespace af {
namespace {

using testing::SseClient;
using testing::SseMessage;

constexpr char kToken[] = "Bearer test-token";

// The key of a request: the test token, in the header or (where the route
// allows it) in ?access_token=.
Result<ApiKey> TestAuthenticate(const HttpRequest& request, bool query_token) {
  const bool ok = request.Header("authorization") == kToken ||
                  (query_token && request.Query("access_token") == "test-token");
  if (!ok) return Unauthenticated("missing or bad API key", "send Authorization: Bearer <key>");
  ApiKey key;
  key.id = "key-test";
  key.name = "test";
  key.permissions = {"features:read"};
  return key;
}

testing::HttpCallOptions AuthOptions(std::map<std::string, std::string> extra = {}) {
  testing::HttpCallOptions options;
  options.headers = std::move(extra);
  options.headers["Authorization"] = kToken;
  return options;
}

class EventsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({}); }

  void Open(EventHubOptions hub_options, ApiGateOptions gate_options = DefaultGate()) {
    if (server_) server_->Stop();
    if (hub_) hub_->Stop();
    server_.reset();
    hub_.reset();
    faulty_.reset();
    store_.reset();
    StoreOptions so;
    so.url = "sqlite:" + (dir_.path() / "af.db").string();
    auto store = Store::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    // Fast polls keep the tests quick, unless a test sets its own.
    if (hub_options.poll_interval == EventHubOptions{}.poll_interval)
      hub_options.poll_interval = std::chrono::milliseconds(20);
    Store* hub_store = store_.get();
    if (policy_) {
      faulty_ = std::make_unique<testing::FaultyStore>(store_.get(), policy_);
      hub_store = faulty_.get();
    }
    hub_ = std::make_unique<EventHub>(hub_store, hub_options);
    ASSERT_TRUE(hub_->Start().ok());
    HttpServerOptions options;
    options.port = 0;
    options.threads = 2;
    options.access_log = [this](const AccessLogEntry& e) { http_metrics_.Observe(e); };
    server_ = std::make_unique<HttpServer>(options);
    gate_ = std::make_unique<ApiGate>(
        [this](const HttpRequest& r, bool q) { return authenticate_(r, q); }, gate_options);
    AddEventRoutes(*server_, *hub_, *store_, *gate_);
    AddMetricsRoute(*server_, MetricsSources{store_.get(), nullptr, hub_.get(), &http_metrics_});
    server_->Route("GET", "/ping", [](const HttpRequest&) { return JsonResponse(200, {}); });
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  static ApiGateOptions DefaultGate() {
    ApiGateOptions o;
    o.cors_origins = {"https://ok.example"};
    o.rate_limit_per_minute = 100000;
    return o;
  }

  void TearDown() override {
    if (server_) server_->Stop();
    if (hub_) hub_->Stop();
  }

  int64_t Append(const std::string& feature = "", size_t payload = 0) {
    Event e;
    e.type = "test.event";
    e.feature_id = feature;
    if (payload) e.data = {{"pad", std::string(payload, 'x')}};
    auto seq = store_->AppendEvent(e);
    EXPECT_TRUE(seq.ok()) << seq.status().ToString();
    return seq.ok() ? *seq : -1;
  }

  std::unique_ptr<SseClient> Connect(const std::string& path,
                                     std::map<std::string, std::string> headers = {}) {
    headers.emplace("Authorization", kToken);
    auto c = SseClient::Connect(server_->port(), path, headers);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (!c.ok()) return nullptr;
    EXPECT_EQ((*c)->status(), 200);
    EXPECT_EQ((*c)->Header("content-type"), "text/event-stream");
    return std::move(c).value();
  }

  // Reads events until `n` arrived; returns their seqs (checking id == data.seq).
  std::vector<int64_t> ReadSeqs(SseClient& c, size_t n) {
    std::vector<int64_t> seqs;
    while (seqs.size() < n) {
      auto m = c.NextEvent();
      if (!m.ok()) {
        ADD_FAILURE() << "after " << seqs.size() << " events: " << m.status().ToString();
        break;
      }
      nlohmann::json data = nlohmann::json::parse(m->data);
      EXPECT_EQ(m->id, std::to_string(data["seq"].get<int64_t>()));
      EXPECT_EQ(m->event, data["type"].get<std::string>());
      seqs.push_back(std::stoll(m->id));
    }
    return seqs;
  }

  static std::vector<int64_t> Range(int64_t first, int64_t last) {
    std::vector<int64_t> v;
    for (int64_t s = first; s <= last; ++s) v.push_back(s);
    return v;
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  // How the gate authenticates (a test may use the store's real keys).
  std::function<Result<ApiKey>(const HttpRequest&, bool)> authenticate_ = TestAuthenticate;
  // When a test sets policy_ before Open(), the hub reads the store through
  // a FaultyStore with it (to count or fail its calls).
  testing::FaultyStore::Policy policy_;
  std::unique_ptr<testing::FaultyStore> faulty_;
  std::unique_ptr<EventHub> hub_;
  HttpMetrics http_metrics_;
  std::unique_ptr<ApiGate> gate_;
  std::unique_ptr<HttpServer> server_;
};

// A stream outlives the request that opened it: revoking its key ends it
// (with an error event) within a recheck, as new requests are refused.
TEST_F(EventsStreamTest, RevokingTheKeyEndsItsOpenStreams) {
  EventHubOptions options;
  options.key_recheck_interval = std::chrono::milliseconds(50);
  Open(options);
  Auth auth(*store_);
  authenticate_ = [&auth](const HttpRequest& r, bool q) { return auth.Authenticate(r, q); };
  auto made = auth.CreateKey("spy", {"features:read"});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  auto kept = auth.CreateKey("kept", {"features:read"});
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  auto spy = SseClient::Connect(server_->port(), "/api/v1/events",
                                {{"Authorization", "Bearer " + made->second}});
  auto other = SseClient::Connect(server_->port(), "/api/v1/events",
                                  {{"Authorization", "Bearer " + kept->second}});
  ASSERT_TRUE(spy.ok() && other.ok());
  ASSERT_EQ((*spy)->status(), 200);
  const int64_t before = Append();
  EXPECT_EQ(ReadSeqs(**spy, 1), std::vector<int64_t>{before});

  ASSERT_TRUE(store_->RevokeApiKey(made->first.id).ok());
  auto ended = (*spy)->NextEvent();
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(ended->event, "error");
  EXPECT_NE(ended->data.find("revoked"), std::string::npos) << ended->data;
  const int64_t after = Append();
  EXPECT_FALSE((*spy)->NextEvent().ok()) << "the stream goes on after its key was revoked";
  // Another key's stream is not affected.
  EXPECT_EQ(ReadSeqs(**other, 2), (std::vector<int64_t>{before, after}));
}

TEST_F(EventsStreamTest, LiveEventsArriveInOrderWithIdEqualToSeq) {
  auto c = Connect("/api/v1/events");
  ASSERT_TRUE(c);
  auto first = c->Next();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->retry, 3000);  // the reconnection hint comes first

  int64_t a = Append("f-1");
  Append();
  int64_t last = Append("f-2");
  EXPECT_EQ(ReadSeqs(*c, 3), Range(a, last));
}

// The store announces each commit of new events: delivery does not wait for
// the next poll (here a minute away, far past the client's read timeout).
TEST_F(EventsStreamTest, NewEventsWakeTheHubWithoutAPoll) {
  EventHubOptions slow;
  slow.poll_interval = std::chrono::minutes(1);
  Open(slow);
  auto c = Connect("/api/v1/events");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Next().ok());  // retry:
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));
  // The hub's one poll (at its start) can deliver the first at most.
  for (int i = 0; i < 3; ++i) {
    const int64_t seq = Append("f-1");
    EXPECT_EQ(ReadSeqs(*c, 1), std::vector<int64_t>{seq});
  }
}

// Another process appending to the same SQLite file (a `worker`): its
// commits are not announced to this process's store, so here a second Store
// on the file stands in for it. The hub sees the file change and reads at
// once instead of at its next poll (a minute away, past the client's read
// timeout).
TEST_F(EventsStreamTest, EventsAppendedByAnotherProcessWakeTheHubWithoutAPoll) {
  EventHubOptions slow;
  slow.poll_interval = std::chrono::minutes(1);
  Open(slow);
  StoreOptions so;
  so.url = "sqlite:" + (dir_.path() / "af.db").string();
  auto other = Store::Open(so);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  auto c = Connect("/api/v1/events");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Next().ok());  // retry:
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));
  for (int i = 0; i < 3; ++i) {
    Event e;
    e.type = "test.event";
    e.feature_id = "f-other";
    auto seq = (*other)->AppendEvent(e);
    ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    EXPECT_EQ(ReadSeqs(*c, 1), std::vector<int64_t>{*seq});
  }
}

// With nobody subscribed the hub reads nothing from the store: not the
// events, not even the latest seq (its own appends do not wake it either).
// A subscriber arriving later still gets every new event.
TEST_F(EventsStreamTest, WithoutSubscribersPollsReadNothing) {
  // Shared: the hub runs until TearDown, past this body.
  auto reads = std::make_shared<std::atomic<int>>(0);
  policy_ = [reads](std::string_view, bool) {
    ++*reads;
    return Status::Ok();
  };
  EventHubOptions fast;
  fast.poll_interval = std::chrono::milliseconds(2);
  Open(fast);
  const int after_start = reads->load();  // Start reads the latest seq once
  for (int i = 0; i < 20; ++i) Append("f-1");
  // About 25 polls' worth of time: a read by any of them would show.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(reads->load(), after_start);

  auto c = Connect("/api/v1/events");
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Next().ok());  // retry:
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));
  const int64_t seq = Append("f-1");
  EXPECT_EQ(ReadSeqs(*c, 1), std::vector<int64_t>{seq});
  EXPECT_GT(reads->load(), after_start);
}

// A Last-Event-ID beyond the newest event (kept by a client across a reset of
// the database, whose numbers start again) does not make the stream wait for
// that far ahead: it starts with new events, as without an id.
TEST_F(EventsStreamTest, AnIdBeyondTheNewestEventStartsWithNewEvents) {
  const int64_t last = Append("f-1");
  auto c = Connect("/api/v1/events", {{"Last-Event-ID", std::to_string(last + 100000)}});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Next().ok());  // retry:
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));
  const int64_t seq = Append("f-1");
  EXPECT_EQ(ReadSeqs(*c, 1), std::vector<int64_t>{seq});
}

TEST_F(EventsStreamTest, RootAliasStreamsToo) {
  auto c = Connect("/events");
  ASSERT_TRUE(c);
  int64_t a = Append();
  EXPECT_EQ(ReadSeqs(*c, 1), std::vector<int64_t>{a});
}

TEST_F(EventsStreamTest, LastEventIdReplaysExactlyTheMissedEventsThenLiveOnes) {
  for (int i = 0; i < 10; ++i) Append();
  const int64_t seen = 4;  // the client saw 1..4 before it disconnected
  auto c = Connect("/api/v1/events", {{"Last-Event-ID", std::to_string(seen)}});
  ASSERT_TRUE(c);
  EXPECT_EQ(ReadSeqs(*c, 6), Range(5, 10));
  for (int i = 0; i < 5; ++i) Append();
  EXPECT_EQ(ReadSeqs(*c, 5), Range(11, 15));
}

TEST_F(EventsStreamTest, ResumeWhileEventsAreBeingAppendedHasNoGapAndNoDuplicate) {
  // Replay and the live tail overlap in time: the appender never pauses.
  for (int i = 0; i < 300; ++i) Append();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> last_appended{0};
  std::thread appender([&] {
    for (int n = 0; n < 3000 && !stop; ++n) last_appended = Append();
  });
  auto c = Connect("/api/v1/events?last_event_id=100");
  ASSERT_TRUE(c);
  // Read a good while into the live part, then stop and drain.
  auto seqs = ReadSeqs(*c, 600);
  stop = true;
  appender.join();
  const int64_t final_seq = last_appended.load();
  // Delivery may keep up with the appender: then nothing is left to drain.
  ASSERT_GE(final_seq, seqs.back());
  auto rest = ReadSeqs(*c, static_cast<size_t>(final_seq - seqs.back()));
  seqs.insert(seqs.end(), rest.begin(), rest.end());
  EXPECT_EQ(seqs, Range(101, final_seq));
}

// Deliveries are coalesced (all a client's pending events in one write, one
// formatted text shared by every client at the head) and shared out among
// the hub's delivery threads (from 128 clients on): a burst of 5,000 events
// to 130 clients, read while it is appended, still reaches each one whole
// and in order, the ones filtered to a feature get exactly theirs, and a
// client that drops out halfway resumes from its Last-Event-ID exactly.
TEST_F(EventsStreamTest, ABurstToManyClientsArrivesWholeInOrderAndResumesExactly) {
  Feature fa;
  fa.title = "a";
  auto a = store_->CreateFeature(fa);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  constexpr int kClients = 130;
  constexpr int kEvents = 5000;
  std::vector<std::unique_ptr<SseClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    // Every tenth client wants feature a only (half the events).
    clients.push_back(
        Connect(i % 10 == 9 ? "/api/v1/events?feature_id=" + a->id : "/api/v1/events"));
    ASSERT_TRUE(clients.back());
  }
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == kClients; }));
  const int64_t first = store_->LatestEventSeq().value() + 1;
  std::thread appender([&] {
    for (int i = 0; i < kEvents; ++i) Append(i % 2 == 0 ? a->id : "f-other");
  });
  // Client 0 reads half the burst, then drops out.
  std::vector<std::vector<int64_t>> got(kClients);
  std::vector<std::thread> readers;
  for (int i = 0; i < kClients; ++i) {
    const size_t want = i == 0 ? kEvents / 2 : i % 10 == 9 ? kEvents / 2 : kEvents;
    readers.emplace_back([&, i, want] { got[i] = ReadSeqs(*clients[i], want); });
  }
  appender.join();
  for (auto& r : readers) r.join();

  std::vector<int64_t> only_a;
  for (int64_t s = first; s < first + kEvents; s += 2) only_a.push_back(s);
  for (int i = 1; i < kClients; ++i) {
    if (i % 10 == 9) {
      EXPECT_EQ(got[i], only_a) << "client " << i;
    } else {
      EXPECT_EQ(got[i], Range(first, first + kEvents - 1)) << "client " << i;
    }
  }
  ASSERT_EQ(got[0], Range(first, first + kEvents / 2 - 1));
  clients[0].reset();
  auto again = Connect("/api/v1/events", {{"Last-Event-ID", std::to_string(got[0].back())}});
  ASSERT_TRUE(again);
  EXPECT_EQ(ReadSeqs(*again, kEvents / 2), Range(first + kEvents / 2, first + kEvents - 1));
  const int64_t next = Append();
  EXPECT_EQ(ReadSeqs(*again, 1), std::vector<int64_t>{next});
}

TEST_F(EventsStreamTest, FeatureStreamCarriesOnlyThatFeature) {
  Feature f1, f2;
  f1.title = "one";
  f2.title = "two";
  auto one = store_->CreateFeature(f1);
  auto two = store_->CreateFeature(f2);
  ASSERT_TRUE(one.ok() && two.ok());
  auto c = Connect("/api/v1/features/" + one->id + "/events", {{"Last-Event-ID", "0"}});
  ASSERT_TRUE(c);
  // Replayed: its feature.created, not the other's.
  auto created = c->NextEvent();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->event, "feature.created");
  EXPECT_EQ(nlohmann::json::parse(created->data)["feature_id"], one->id);
  Append(two->id);
  Append();
  int64_t mine = Append(one->id);
  auto next = c->NextEvent();
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->id, std::to_string(mine));

  // ?feature_id= filters the global stream the same way.
  auto g = Connect("/api/v1/events?feature_id=" + two->id);
  ASSERT_TRUE(g);
  Append(one->id);
  int64_t theirs = Append(two->id);
  EXPECT_EQ(ReadSeqs(*g, 1), std::vector<int64_t>{theirs});
}

TEST_F(EventsStreamTest, UnknownFeatureIs404Json) {
  auto reply =
      testing::HttpCall(server_->port(), "GET", "/api/v1/features/f-nope/events", AuthOptions());
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 404);
  auto body = nlohmann::json::parse(reply->body);
  EXPECT_EQ(body["error"]["code"], "NOT_FOUND");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("f-nope"), std::string::npos);
}

TEST_F(EventsStreamTest, WithoutTheTokenIs401AndNothingIsStreamed) {
  for (const char* path : {"/api/v1/events", "/events", "/api/v1/features/x/events"}) {
    auto reply = testing::HttpCall(server_->port(), "GET", path);
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(reply->status, 401) << path;
    EXPECT_EQ(nlohmann::json::parse(reply->body)["error"]["code"], "UNAUTHORIZED") << path;
  }
  EXPECT_EQ(hub_->subscribers(), 0u);
}

TEST_F(EventsStreamTest, BadLastEventIdIs400) {
  auto reply = testing::HttpCall(server_->port(), "GET", "/api/v1/events",
                                 AuthOptions({{"Last-Event-ID", "x1"}}));
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 400);
  EXPECT_EQ(nlohmann::json::parse(reply->body)["error"]["code"], "VALIDATION_ERROR");
}

TEST_F(EventsStreamTest, KeepAliveCommentsArriveWhenIdle) {
  TearDown();
  EventHubOptions options;
  options.keepalive_interval = std::chrono::milliseconds(50);
  Open(options);
  auto c = Connect("/api/v1/events");
  ASSERT_TRUE(c);
  bool got = false;
  for (int i = 0; i < 5 && !got; ++i) {
    auto m = c->Next();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    got = m->comment == "keep-alive";
  }
  EXPECT_TRUE(got);
}

TEST_F(EventsStreamTest, AClientThatStopsReadingBlocksNobodyAndIsCutOffThenResumes) {
  TearDown();
  EventHubOptions options;
  options.max_buffered_bytes = 256 * 1024;
  options.max_stall = std::chrono::milliseconds(300);
  Open(options);
  auto stalled = SseClient::Connect(server_->port(), "/api/v1/events", {{"Authorization", kToken}},
                                    std::chrono::seconds(10), /*receive_buffer=*/4096);
  ASSERT_TRUE(stalled.ok()) << stalled.status().ToString();
  auto reader = Connect("/api/v1/events");
  ASSERT_TRUE(reader);
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 2; }));

  // 200 events of ~40 KB (8 MB): far more than the stalled client's socket
  // buffers plus its allowance. The appender and the reader must not notice.
  const int64_t first = store_->LatestEventSeq().value() + 1;
  for (int i = 0; i < 200; ++i) Append("", 40000);
  EXPECT_EQ(ReadSeqs(*reader, 200), Range(first, first + 199));

  // The stalled stream is dropped by the hub once it stalls (the reader stays).
  EXPECT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));
  EXPECT_LE((*stalled)->status(), 200);
  // Reconnecting with the last id it managed to read resumes it fully.
  auto again = Connect("/api/v1/events", {{"Last-Event-ID", std::to_string(first - 1)}});
  ASSERT_TRUE(again);
  EXPECT_EQ(ReadSeqs(*again, 200), Range(first, first + 199));
}

TEST_F(EventsStreamTest, StopClosesOpenStreams) {
  std::vector<std::unique_ptr<SseClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Connect(i == 0 ? "/events" : "/api/v1/events"));
    ASSERT_TRUE(clients.back());
  }
  ASSERT_TRUE(testing::WaitFor([&] { return server_->open_streams() == 3; }));
  server_->Stop();
  for (auto& c : clients) EXPECT_TRUE(c->WaitClosed(std::chrono::seconds(10)));
  EXPECT_EQ(server_->open_streams(), 0u);
  // Writers are told: the hub drops every stream at its next poll.
  Append();
  EXPECT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 0; }));
}

TEST_F(EventsStreamTest, MetricsCountRoutesByPatternAndShowSseClientsAndStoreCounts) {
  Feature f;
  f.title = "m";
  ASSERT_TRUE(store_->CreateFeature(f).ok());
  ASSERT_TRUE(testing::HttpCall(server_->port(), "GET", "/ping").ok());
  ASSERT_TRUE(
      testing::HttpCall(server_->port(), "GET", "/api/v1/features/f-x/events", AuthOptions()).ok());
  auto c = Connect("/api/v1/events");
  ASSERT_TRUE(c);
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));

  auto reply = testing::HttpCall(server_->port(), "GET", "/metrics");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = reply->body;
  EXPECT_NE(m.find("af_http_requests_total{method=\"GET\",route=\"/ping\",status=\"200\"} 1\n"),
            std::string::npos)
      << m;
  // The pattern, not the raw id.
  EXPECT_NE(m.find("route=\"/api/v1/features/:id/events\",status=\"404\"} 1\n"), std::string::npos)
      << m;
  EXPECT_EQ(m.find("f-x"), std::string::npos);
  EXPECT_NE(m.find("af_http_request_duration_seconds_count{method=\"GET\",route=\"/ping\"} 1\n"),
            std::string::npos);
  EXPECT_NE(m.find("af_sse_clients 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("af_features{status=\"queued\"} 1\n"), std::string::npos) << m;
}

// The streams go through the same gate as the JSON routes: the per-key rate
// limit, CORS headers and the preflight (once 405, limits never applied).
TEST_F(EventsStreamTest, StreamsAreRateLimitedAndSpeakCorsLikeEveryRoute) {
  testing::FakeClock clock;
  ApiGateOptions gate = DefaultGate();
  gate.rate_limit_per_minute = 2;
  gate.clock = [&clock] { return clock.Now(); };
  Open({}, gate);

  auto first = Connect("/api/v1/events", {{"Origin", "https://ok.example"}});
  ASSERT_TRUE(first);
  EXPECT_EQ(first->Header("access-control-allow-origin"), "https://ok.example");
  EXPECT_EQ(first->Header("x-ratelimit-limit"), "2");
  ASSERT_TRUE(Connect("/events"));
  auto third = testing::HttpCall(server_->port(), "GET", "/api/v1/events", AuthOptions());
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->status, 429) << third->body;
  EXPECT_EQ(nlohmann::json::parse(third->body)["error"]["code"], "RATE_LIMIT_EXCEEDED");
  EXPECT_FALSE(third->Header("retry-after").empty());

  for (const char* path : {"/api/v1/events", "/events", "/api/v1/features/x/events"}) {
    testing::HttpCallOptions o;
    o.headers = {{"Origin", "https://ok.example"}, {"Access-Control-Request-Method", "GET"}};
    auto pre = testing::HttpCall(server_->port(), "OPTIONS", path, o);
    ASSERT_TRUE(pre.ok());
    EXPECT_EQ(pre->status, 204) << path << " " << pre->body;
    EXPECT_EQ(pre->Header("access-control-allow-origin"), "https://ok.example") << path;
    EXPECT_NE(pre->Header("access-control-allow-headers").find("Last-Event-ID"), std::string::npos);
  }
}

// Browsers' EventSource cannot send headers: the key may come in the URL here.
TEST_F(EventsStreamTest, StreamsTakeTheKeyFromAccessToken) {
  auto c = SseClient::Connect(server_->port(), "/api/v1/events?access_token=test-token", {});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->status(), 200);
}

TEST_F(EventsStreamTest, UnknownFeatureIdFilterIs404LikeTheFeatureRoute) {
  auto reply =
      testing::HttpCall(server_->port(), "GET", "/api/v1/events?feature_id=f-nope", AuthOptions());
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 404) << reply->body;
  EXPECT_EQ(nlohmann::json::parse(reply->body)["error"]["code"], "NOT_FOUND");
  EXPECT_EQ(hub_->subscribers(), 0u);
}

// A new user opens the stream of a feature that already ended: they get its
// history from the start, then the stream ends (nothing more will come).
TEST_F(EventsStreamTest, FinishedFeatureStreamReplaysItsHistoryThenEnds) {
  Feature f;
  f.title = "done";
  auto done = store_->CreateFeature(f);
  ASSERT_TRUE(done.ok());
  Append(done->id);
  ASSERT_TRUE(store_->TransitionFeature(done->id, std::nullopt, "completed", "", nullptr).ok());
  Append();  // another feature's: not in this stream

  auto c = Connect("/api/v1/features/" + done->id + "/events");
  ASSERT_TRUE(c);
  std::vector<std::string> types;
  for (;;) {
    auto m = c->NextEvent();
    if (!m.ok()) break;
    EXPECT_EQ(nlohmann::json::parse(m->data)["feature_id"], done->id);
    types.push_back(m->event);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"feature.created", "test.event", "feature.status"}));
  EXPECT_TRUE(c->WaitClosed(std::chrono::seconds(10)));

  // A running feature's stream still starts at the live edge.
  Feature r;
  r.title = "running";
  auto running = store_->CreateFeature(r);
  ASSERT_TRUE(running.ok());
  auto live = Connect("/api/v1/features/" + running->id + "/events");
  ASSERT_TRUE(live);
  ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));
  int64_t next = Append(running->id);
  auto m = live->NextEvent();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->id, std::to_string(next));
}

// Keeps what a logger writes, for the test to read while it logs.
class CapturingSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    text_.append(msg.payload.data(), msg.payload.size());
    text_ += '\n';
  }
  void flush_() override {}

 private:
  std::string text_;
};

// The store away (a PostgreSQL restart) fails every poll, many a second: the
// log says so once, not at each poll, and once when reading works again.
TEST_F(EventsStreamTest, ReadFailuresAreLoggedOnceThenOnceWhenBack) {
  // Shared: the hub runs until TearDown, past this body.
  auto down = std::make_shared<std::atomic<bool>>(false);
  auto failed = std::make_shared<std::atomic<int>>(0);
  policy_ = [down, failed](std::string_view method, bool) {
    if (!*down || method != "ListEvents") return Status::Ok();
    ++*failed;
    return Unavailable("the database is away");
  };
  auto sink = std::make_shared<CapturingSink>();
  auto logger = log::Get("api");
  logger->sinks().push_back(sink);
  {
    Open({.poll_interval = std::chrono::milliseconds(2), .watch_file = false});
    // Only a hub with someone to deliver to reads the store.
    auto c = Connect("/api/v1/events");
    ASSERT_TRUE(c);
    ASSERT_TRUE(testing::WaitFor([&] { return hub_->subscribers() == 1; }));
    *down = true;
    EXPECT_TRUE(testing::WaitFor([&] { return *failed >= 50; }));
    *down = false;
    EXPECT_TRUE(
        testing::WaitFor([&] { return sink->text().find("works again") != std::string::npos; }));
    hub_->Stop();
  }
  auto& sinks = logger->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  const std::string text = sink->text();
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("event stream: reading new events failed: "), 1u) << text;
  EXPECT_EQ(count("the database is away"), 1u) << text;
  EXPECT_EQ(count("event stream: reading new events works again, after "), 1u) << text;
}

}  // namespace
}  // namespace af
