// The SSE wire format, Last-Event-ID parsing and the Prometheus text format.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "af/api/events_stream.h"
#include "af/api/metrics.h"
#include "af/store/store.h"
#include "cli/commands.h"
#include "support/sse_client.h"

namespace af {
namespace {

TEST(SseFormat, EventIsIdTypeAndOneLineOfJson) {
  Event e;
  e.seq = 42;
  e.type = "feature.status";
  e.feature_id = "f-1";
  e.ts_ms = 1700000000123;
  e.data = {{"note", "two\nlines"}};
  std::string text = FormatSseEvent(e);
  const std::string prefix = "id: 42\nevent: feature.status\ndata: ";
  ASSERT_EQ(text.substr(0, prefix.size()), prefix);
  ASSERT_EQ(text.substr(text.size() - 2), "\n\n");
  // Exactly three lines: a newline inside the data cannot split the field.
  std::string body = text.substr(0, text.size() - 2);
  EXPECT_EQ(std::count(body.begin(), body.end(), '\n'), 2);
  auto json = nlohmann::json::parse(body.substr(body.find("data: ") + 6));
  EXPECT_EQ(json["seq"], 42);
  EXPECT_EQ(json["type"], "feature.status");
  EXPECT_EQ(json["feature_id"], "f-1");
  EXPECT_TRUE(json["task_id"].is_null());
  EXPECT_EQ(json["data"]["note"], "two\nlines");

  // What a client parser makes of it.
  testing::SseBlockParser parser;
  parser.Feed(text.substr(0, 10));
  EXPECT_FALSE(parser.Pop().has_value());
  parser.Feed(text.substr(10));
  auto m = parser.Pop();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->id, "42");
  EXPECT_EQ(m->event, "feature.status");
  EXPECT_EQ(nlohmann::json::parse(m->data), json);
}

TEST(SseFormat, LastEventIdParsing) {
  auto none = ParseLastEventId("");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto seven = ParseLastEventId("7");
  ASSERT_TRUE(seven.ok());
  EXPECT_EQ(**seven, 7);
  auto zero = ParseLastEventId("0");
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(**zero, 0);
  for (const char* bad : {"x", "-1", "1.5", "12a", " 3", "99999999999999999999"}) {
    auto r = ParseLastEventId(bad);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(PromText, ValuesAndLabelEscaping) {
  EXPECT_EQ(FormatMetricValue(3), "3");
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatMetricValue(NAN), "NaN");
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");

  PromWriter w;
  w.Family("af_x", "gauge", "An x.");
  w.Sample("af_x", {{"k", "v\"1"}, {"j", "2"}}, 5);
  w.Sample("af_x", {}, 1.5);
  EXPECT_EQ(w.text(),
            "# HELP af_x An x.\n# TYPE af_x gauge\naf_x{k=\"v\\\"1\",j=\"2\"} 5\naf_x 1.5\n");
}

TEST(PromText, HttpHistogramIsCumulativeWithInfSumAndCount) {
  HttpMetrics m({0.01, 0.1});
  auto entry = [](std::string route, int status, int64_t us) {
    AccessLogEntry e;
    e.method = "GET";
    e.path = "/raw/path/123";
    e.route = std::move(route);
    e.status = status;
    e.duration_us = us;
    return e;
  };
  m.Observe(entry("/a/:id", 200, 5000));    // 0.005 s -> le 0.01
  m.Observe(entry("/a/:id", 200, 50000));   // 0.05 s  -> le 0.1
  m.Observe(entry("/a/:id", 500, 500000));  // 0.5 s   -> +Inf only
  m.Observe(entry("", 404, 100));           // unmatched
  PromWriter w;
  m.Render(w);
  const std::string& t = w.text();
  auto has = [&](const std::string& line) {
    EXPECT_NE(t.find(line + "\n"), std::string::npos) << "missing: " << line << "\n" << t;
  };
  has("# TYPE af_http_requests_total counter");
  has("af_http_requests_total{method=\"GET\",route=\"/a/:id\",status=\"200\"} 2");
  has("af_http_requests_total{method=\"GET\",route=\"/a/:id\",status=\"500\"} 1");
  has("af_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1");
  has("# TYPE af_http_request_duration_seconds histogram");
  has("af_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a/:id\",le=\"0.01\"} 1");
  has("af_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a/:id\",le=\"0.1\"} 2");
  has("af_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a/:id\",le=\"+Inf\"} 3");
  const std::string sum_key =
      "af_http_request_duration_seconds_sum{method=\"GET\",route=\"/a/:id\"} ";
  ASSERT_NE(t.find(sum_key), std::string::npos);
  EXPECT_NEAR(std::stod(t.substr(t.find(sum_key) + sum_key.size())), 0.555, 1e-9);
  has("af_http_request_duration_seconds_count{method=\"GET\",route=\"/a/:id\"} 3");
  EXPECT_EQ(t.find("/raw/path"), std::string::npos);
  // Every family is declared once, before its samples.
  EXPECT_EQ(t.find("# TYPE af_http_requests_total"), t.rfind("# TYPE af_http_requests_total"));
  EXPECT_LT(t.find("# TYPE af_http_request_duration_seconds"),
            t.find("af_http_request_duration_seconds_bucket"));
}

TEST(PromText, RenderWithoutSourcesStillServesScrapeErrors) {
  std::string t = RenderMetrics({});
  EXPECT_NE(t.find("# TYPE af_scrape_errors_total counter\naf_scrape_errors_total "),
            std::string::npos);
}

TEST(PromText, CostByRoleAndToday) {
  StoreOptions o;
  o.url = "sqlite::memory:";
  auto store = Store::Open(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (auto [role, cost, at] : {std::tuple{"coder", 1.5, now}, std::tuple{"coder", 1.0, now},
                                std::tuple{"planner", 0.25, now - int64_t{3} * 86'400'000}}) {
    LlmCall c;
    c.feature_id = "f-1";
    c.role = role;
    c.provider = "openai";
    c.model = "m";
    c.cost_usd = cost;
    c.created_ms = at;
    ASSERT_TRUE((*store)->RecordLlmCall(c).ok());
  }
  std::string t = RenderMetrics({.store = store->get()});
  EXPECT_NE(t.find("af_llm_cost_usd_by_role_total{role=\"coder\"} 2.5\n"), std::string::npos) << t;
  EXPECT_NE(t.find("af_llm_cost_usd_by_role_total{role=\"planner\"} 0.25\n"), std::string::npos)
      << t;
  // The planner's call, three days old, is not today's.
  EXPECT_NE(t.find("af_llm_cost_usd_today 2.5\n"), std::string::npos) << t;
}

TEST(FeatureEventsCli, EndStatusAndLineFormat) {
  nlohmann::json done = {{"seq", 9},
                         {"type", "feature.status"},
                         {"ts", "2026-01-01T00:00:00.000Z"},
                         {"task_id", nullptr},
                         {"agent", nullptr},
                         {"data", {{"from", "delivering"}, {"to", "completed"}, {"reason", ""}}}};
  EXPECT_EQ(cli::FeatureEndStatus(done), "completed");
  EXPECT_EQ(cli::FormatEventLine(done),
            "2026-01-01T00:00:00.000Z  #9  feature.status  \"delivering\" -> \"completed\"");
  nlohmann::json running = done;
  running["data"]["to"] = "testing";
  EXPECT_FALSE(cli::FeatureEndStatus(running).has_value());
  nlohmann::json task = {{"seq", 3},           {"type", "task.status"},
                         {"ts", "T"},          {"task_id", "t-1"},
                         {"agent", "coder-1"}, {"data", {{"from", "a"}, {"to", "completed"}}}};
  EXPECT_FALSE(cli::FeatureEndStatus(task).has_value());  // a task ending is not the feature
  EXPECT_EQ(cli::FormatEventLine(task),
            "T  #3  task.status  t-1 (coder-1)  \"a\" -> \"completed\"");
  nlohmann::json odd = {{"seq", 4}, {"type", "llm.call"}, {"data", {{"tokens", 5}}}};
  EXPECT_EQ(cli::FormatEventLine(odd), "  #4  llm.call  {\"tokens\":5}");
  EXPECT_FALSE(cli::FeatureEndStatus(nlohmann::json::array()).has_value());
}

}  // namespace
}  // namespace af
