// The REST handler functions over an in-memory store, the error mapping, the
// rate limiter, CORS and the OpenAPI document's coverage of the routes.
#include <gtest/gtest.h>

#include <set>

#include "af/api/errors.h"
#include "af/api/middleware.h"
#include "af/api/openapi.h"
#include "af/api/routes.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"
#include "support/test_util.h"

namespace af {
namespace {

using json = nlohmann::json;

class ApiRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.url = "sqlite::memory:";
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    backend_.store = store_.get();
    backend_.now_ms = [this] { return now_ms_; };
    backend_.submit = [this](const FeatureRequest& r) -> Result<Feature> {
      submitted_.push_back(r);
      Feature f;
      f.title = r.title;
      f.project = r.project;
      f.request = r.ToJson();
      return store_->CreateFeature(f);
    };
  }

  HttpRequest Req(std::map<std::string, std::string> query = {}) {
    HttpRequest r;
    r.query_params = std::move(query);
    return r;
  }

  std::unique_ptr<Store> store_;
  ApiBackend backend_;
  int64_t now_ms_ = 1'700'000'000'000;
  std::vector<FeatureRequest> submitted_;
};

TEST_F(ApiRoutesTest, UsageByDayRoleAndModel) {
  auto f = store_->CreateFeature(Feature{});
  ASSERT_TRUE(f.ok());
  auto call = [&](const std::string& feature, const std::string& role, const std::string& model,
                  double cost, int64_t at) {
    LlmCall c;
    c.feature_id = feature;
    c.role = role;
    c.provider = "anthropic";
    c.model = model;
    c.input_tokens = 100;
    c.output_tokens = 10;
    c.cost_usd = cost;
    c.created_ms = at;
    ASSERT_TRUE(store_->RecordLlmCall(c).ok());
  };
  const int64_t day = 86'400'000;
  call(f->id, "planner", "big", 1.0, now_ms_);
  call(f->id, "coder", "big", 2.0, now_ms_ - day);
  call(f->id, "coder", "small", 0.5, now_ms_ - day);
  call("f-other", "coder", "big", 4.0, now_ms_ - 10 * day);  // before the window

  HttpRequest r;
  r.path_params["id"] = f->id;
  auto d = GetFeature(backend_, r);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const json& u = (*d)["usage"];
  EXPECT_EQ(u["calls"], 3);
  EXPECT_DOUBLE_EQ(u["cost_usd"].get<double>(), 3.5);
  EXPECT_DOUBLE_EQ(u["by_role"]["coder"]["cost_usd"].get<double>(), 2.5);
  EXPECT_EQ(u["by_role"]["planner"]["calls"], 1);
  EXPECT_DOUBLE_EQ(u["by_model"]["anthropic/small"]["cost_usd"].get<double>(), 0.5);

  auto all = GetUsage(backend_, Req({{"days", "2"}}));
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_DOUBLE_EQ((*all)["total"]["cost_usd"].get<double>(), 3.5);
  ASSERT_EQ((*all)["days"].size(), 2u);
  EXPECT_DOUBLE_EQ((*all)["days"][0]["cost_usd"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ((*all)["days"][0]["by_role"]["coder"]["cost_usd"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ((*all)["days"][1]["by_role"]["planner"]["cost_usd"].get<double>(), 1.0);
  auto wide = GetUsage(backend_, Req({{"days", "30"}}));
  ASSERT_TRUE(wide.ok());
  EXPECT_DOUBLE_EQ((*wide)["total"]["cost_usd"].get<double>(), 7.5);
  EXPECT_DOUBLE_EQ((*wide)["by_role"]["coder"]["cost_usd"].get<double>(), 6.5);
  for (const char* bad : {"0", "367", "x"})
    EXPECT_EQ(GetUsage(backend_, Req({{"days", bad}})).status().code(), Code::kInvalidArgument);
}

TEST_F(ApiRoutesTest, SubmitsJsonAndMarkdownAndAnswersIdStatusEventsUrl) {
  HttpRequest r;
  r.headers["content-type"] = "application/json; charset=utf-8";
  r.body = R"({"title":"Slugify","description":"d","tech_stack":"python3"})";
  auto out = SubmitFeature(backend_, r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)["status"], "queued");
  EXPECT_EQ((*out)["events_url"],
            "/api/v1/features/" + (*out)["id"].get<std::string>() + "/events");
  EXPECT_TRUE((*out)["created_at"].is_string());

  r.headers["content-type"] = "text/markdown";
  r.body = "# Title here\n\n## Goal\nMake a thing.\n\n## Tech Stack\npython3\n";
  ASSERT_TRUE(SubmitFeature(backend_, r).ok());
  ASSERT_EQ(submitted_.size(), 2u);
  EXPECT_EQ(submitted_[1].tech_stack, "python3");
}

TEST_F(ApiRoutesTest, BadBodiesAreValidationErrorsNamingTheField) {
  HttpRequest r;
  r.headers["content-type"] = "application/json";
  r.body = "{\"title\": ";
  auto s = SubmitFeature(backend_, r).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("not valid JSON"), std::string::npos);
  r.body = R"({"title": 5})";
  s = SubmitFeature(backend_, r).status();
  EXPECT_NE(s.message().find("title"), std::string::npos) << s.message();
  r.body = R"({"titel": "x"})";
  s = SubmitFeature(backend_, r).status();
  EXPECT_NE(s.message().find("titel"), std::string::npos) << s.message();
  r.body = "[]";
  EXPECT_NE(SubmitFeature(backend_, r).status().message().find("JSON object"), std::string::npos);
  r.headers["content-type"] = "application/xml";
  r.body = "<x/>";
  EXPECT_NE(SubmitFeature(backend_, r).status().message().find("Content-Type"), std::string::npos);
  EXPECT_TRUE(submitted_.empty());
  EXPECT_EQ(ApiError(s).EffectiveCode(), ApiErrorCode::kValidationError);
}

TEST_F(ApiRoutesTest, ChallengedWorkPlanMapsTo422WithIssues) {
  Status s = InvalidArgument(
      "Work plan challenged:\n  - Tech stack not specified\n  - Vague requirement: 'just'",
      "add the missing parts");
  ApiError e = ToApiError(s);
  EXPECT_EQ(e.EffectiveCode(), ApiErrorCode::kWorkPlanChallenged);
  EXPECT_EQ(HttpStatusOf(e.EffectiveCode()), 422);
  EXPECT_EQ(e.details["issues"], json({"Tech stack not specified", "Vague requirement: 'just'"}));
  EXPECT_EQ(ToApiError(InvalidArgument("x")).EffectiveCode(), ApiErrorCode::kValidationError);
}

TEST_F(ApiRoutesTest, WithoutAPipelineSubmitIs503NamingTheLlmProblem) {
  backend_.submit = nullptr;
  backend_.pipeline_status =
      Unavailable("no usable LLM provider: ANTHROPIC_API_KEY is not set", "set it");
  HttpRequest r;
  r.body = R"({"title":"x"})";
  Status s = SubmitFeature(backend_, r).status();
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("ANTHROPIC_API_KEY"), std::string::npos);
  EXPECT_EQ(HttpStatusOf(ToApiError(s).EffectiveCode()), 503);
}

TEST_F(ApiRoutesTest, ListPaginatesAndValidatesParameters) {
  for (int i = 0; i < 5; ++i) {
    Feature f;
    f.title = "f" + std::to_string(i);
    ASSERT_TRUE(store_->CreateFeature(f).ok());
  }
  auto page = ListFeatures(backend_, Req({{"limit", "2"}, {"offset", "2"}}));
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ((*page)["features"].size(), 2u);
  EXPECT_EQ((*page)["pagination"],
            json({{"total", 5}, {"limit", 2}, {"offset", 2}, {"has_more", true}}));
  auto last = ListFeatures(backend_, Req({{"limit", "2"}, {"offset", "4"}}));
  EXPECT_EQ((*last)["pagination"]["has_more"], false);
  EXPECT_EQ((*ListFeatures(backend_, Req({{"status", "completed"}})))["pagination"]["total"], 0);

  for (auto bad : std::vector<std::map<std::string, std::string>>{
           {{"limit", "0"}}, {{"limit", "abc"}}, {{"offset", "-1"}}, {{"status", "done"}}}) {
    Status s = ListFeatures(backend_, Req(bad)).status();
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find(bad.begin()->first), std::string::npos) << s.message();
  }
}

TEST_F(ApiRoutesTest, FeatureDetailHasTasksArtifactsUsageAndUnknownIs404) {
  Feature f;
  f.title = "t";
  auto stored = store_->CreateFeature(f);
  ASSERT_TRUE(stored.ok());
  Task t;
  t.title = "do it";
  t.role = "coder";
  ASSERT_TRUE(store_->CreateTasks(stored->id, {t}).ok());
  ASSERT_TRUE(store_
                  ->TransitionFeature(stored->id, std::nullopt, "completed", "",
                                      {{"branch", "af/x"}, {"commit", "abc"}, {"artifacts", {"p"}}})
                  .ok());
  HttpRequest r;
  r.path_params["id"] = stored->id;
  auto d = GetFeature(backend_, r);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)["status"], "completed");
  ASSERT_EQ((*d)["tasks"].size(), 1u);
  EXPECT_EQ((*d)["tasks"][0]["role"], "coder");
  EXPECT_EQ((*d)["artifacts"]["branch"], "af/x");
  EXPECT_EQ((*d)["artifacts"]["files"], json({"p"}));
  EXPECT_EQ((*d)["usage"]["calls"], 0);

  EXPECT_TRUE((*d)["ended"].is_null());

  r.path_params["id"] = "f-nope";
  EXPECT_EQ(GetFeature(backend_, r).status().code(), Code::kNotFound);
  EXPECT_EQ(CancelFeature(backend_, r).status().code(), Code::kNotFound);
}

TEST_F(ApiRoutesTest, FailedFeatureSaysInWhichStageAndWhy) {
  auto stored = store_->CreateFeature(Feature{.title = "t"});
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(store_->TransitionFeature(stored->id, "queued", "planning", "", {}).ok());
  ASSERT_TRUE(store_
                  ->TransitionFeature(
                      stored->id, "planning", "failed", "agent_error",
                      {{"message", "no recorded response"}, {"hint", "set AF_LLM_PROVIDER"}})
                  .ok());
  HttpRequest r;
  r.path_params["id"] = stored->id;
  auto d = GetFeature(backend_, r);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)["ended"], json({{"stage", "planning"},
                                 {"message", "no recorded response"},
                                 {"hint", "set AF_LLM_PROVIDER"}}));
}

TEST(ApiBodyTest, NumbersBeyondADoubleAreAValidationErrorNotAnInternalOne) {
  // Found by fuzz.http: nlohmann throws out_of_range, not parse_error, here.
  auto r = ParseJsonObjectBody(R"({"title": 1e400})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not valid JSON"), std::string::npos) << r.status().message();
}

TEST_F(ApiRoutesTest, DiffIsServedFromArtifactsAndCappedAndAbsentBeforeDelivery) {
  auto stored = store_->CreateFeature(Feature{.title = "t"});
  ASSERT_TRUE(stored.ok());
  testing::TempDir dir;
  backend_.artifacts_dir = dir.path();
  HttpRequest r;
  r.path_params["id"] = stored->id;
  auto before = GetFeatureDiff(backend_, r);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_FALSE((*before)["available"].get<bool>());
  EXPECT_EQ((*before)["diff"], "");

  dir.Write(stored->id + "/changes.patch", "+++ b/x\n+hello\n");
  auto small = GetFeatureDiff(backend_, r);
  ASSERT_TRUE(small.ok());
  EXPECT_TRUE((*small)["available"].get<bool>());
  EXPECT_EQ((*small)["diff"], "+++ b/x\n+hello\n");
  EXPECT_FALSE((*small)["truncated"].get<bool>());

  dir.Write(stored->id + "/changes.patch", std::string(kMaxDiffBytes + 10, 'x'));
  auto big = GetFeatureDiff(backend_, r);
  ASSERT_TRUE(big.ok());
  EXPECT_TRUE((*big)["truncated"].get<bool>());
  EXPECT_EQ((*big)["bytes"], kMaxDiffBytes);

  r.path_params["id"] = "f-nope";
  EXPECT_EQ(GetFeatureDiff(backend_, r).status().code(), Code::kNotFound);
}

TEST_F(ApiRoutesTest, AgentsWithOldHeartbeatsAreOffline) {
  AgentRecord fresh{"coder-1", "coder", "busy", now_ms_ - 10'000, "t-1"};
  AgentRecord stale{"tester-1", "tester", "idle", now_ms_ - 91'000, ""};
  ASSERT_TRUE(store_->UpsertAgent(fresh).ok());
  ASSERT_TRUE(store_->UpsertAgent(stale).ok());
  auto all = ListAgents(backend_, Req());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ((*all)["agents"].size(), 2u);
  EXPECT_EQ((*all)["agents"][0]["state"], "busy");
  EXPECT_EQ((*all)["agents"][0]["current_task"], "t-1");
  EXPECT_EQ((*all)["agents"][1]["state"], "offline");
  EXPECT_TRUE((*all)["agents"][1]["current_task"].is_null());
  HttpRequest r;
  r.path_params["id"] = "coder-1";
  EXPECT_EQ((*GetAgent(backend_, r))["heartbeat_age_s"], 10);
  r.path_params["id"] = "nobody";
  EXPECT_EQ(GetAgent(backend_, r).status().code(), Code::kNotFound);
}

// The knowledge base on the test's store, its vector indexes in memory.
std::unique_ptr<KnowledgeBase> OpenKb(Store* store) {
  KnowledgeOptions options;  // empty index_dir: in memory
  auto kb = KnowledgeBase::Open(store, options);
  EXPECT_TRUE(kb.ok()) << kb.status().ToString();
  return kb.ok() ? std::move(kb).value() : nullptr;
}

TEST_F(ApiRoutesTest, KnowledgeAndMemoriesRoundTrip) {
  auto kb = OpenKb(store_.get());
  ASSERT_TRUE(kb);
  backend_.kb = kb.get();
  HttpRequest add;
  add.body = R"({"content":"Use pytest fixtures for temp dirs","source":"docs/testing.md"})";
  auto added = AddKnowledge(backend_, add);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_EQ((*added)["added"], 1) << added->dump();
  EXPECT_GE((*added)["chunks_added"].get<int>(), 1);
  auto again = AddKnowledge(backend_, add);  // the same text: nothing new
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["unchanged"], 1) << again->dump();
  auto found = SearchKnowledge(backend_, Req({{"query", "pytest"}, {"max_results", "3"}}));
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_EQ((*found)["results"].size(), 1u);
  const json& hit = (*found)["results"][0];
  for (auto k : {"id", "source", "chunk", "score", "content"}) EXPECT_TRUE(hit.contains(k)) << k;
  EXPECT_EQ(hit["source"], "docs/testing.md");
  EXPECT_EQ(SearchKnowledge(backend_, Req()).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SearchKnowledge(backend_, Req({{"query", "x"}, {"similarity_threshold", "2"}}))
                .status()
                .code(),
            Code::kInvalidArgument);
  add.body = R"({"content":"no source"})";
  EXPECT_NE(AddKnowledge(backend_, add).status().message().find("source"), std::string::npos);

  HttpRequest mem;
  mem.body =
      R"({"content":"the build needs -j2","type":"configuration","importance":7,"namespace":"project:p"})";
  auto m = AddMemory(backend_, mem);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)["importance"], 7);
  mem.body = R"({"content":"make uses two cores","links":[{"to":")" +
             (*m)["id"].get<std::string>() + R"(","type":"relates_to","strength":0.8}]})";
  auto linked = AddMemory(backend_, mem);
  ASSERT_TRUE(linked.ok()) << linked.status().ToString();
  HttpRequest get;
  get.path_params["id"] = (*m)["id"];
  auto got = GetMemory(backend_, get);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["content"], "the build needs -j2");
  ASSERT_EQ((*got)["links"].size(), 1u) << got->dump();
  EXPECT_EQ((*got)["links"][0]["from"], (*linked)["id"]);
  EXPECT_EQ((*got)["links"][0]["type"], "relates_to");
  EXPECT_DOUBLE_EQ((*got)["links"][0]["strength"].get<double>(), 0.8);
  ASSERT_EQ((*got)["linked"].size(), 1u);
  EXPECT_EQ((*got)["linked"][0]["content"], "make uses two cores");

  auto list = ListMemories(backend_, Req({{"namespace", "project:p"}}));
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ((*list)["memories"].size(), 2u);  // project:p, then its global fallback
  auto recalled = ListMemories(backend_, Req({{"query", "build j2"}}));
  ASSERT_TRUE(recalled.ok()) << recalled.status().ToString();
  ASSERT_FALSE((*recalled)["memories"].empty());
  EXPECT_EQ((*recalled)["memories"][0]["id"], (*m)["id"]);
  EXPECT_TRUE((*recalled)["memories"][0].contains("score"));

  // A form or text body is refused by name on every JSON route, and a list
  // filter is checked as the POST checks it.
  HttpRequest form = mem;
  form.headers["content-type"] = "application/x-www-form-urlencoded";
  EXPECT_NE(AddMemory(backend_, form).status().message().find("Content-Type"), std::string::npos);
  form.body = R"({"content":"x","source":"y"})";
  form.headers["content-type"] = "text/plain";
  EXPECT_NE(AddKnowledge(backend_, form).status().message().find("Content-Type"),
            std::string::npos);
  auto evil = ListMemories(backend_, Req({{"type", "evil"}}));
  EXPECT_EQ(evil.status().code(), Code::kInvalidArgument);
  EXPECT_NE(evil.status().message().find("unknown memory type 'evil'"), std::string::npos);
  mem.body = R"({"content":"x","importance":"high"})";
  EXPECT_NE(AddMemory(backend_, mem).status().message().find("importance"), std::string::npos);
  mem.body = R"({"content":"x","colour":"red"})";
  EXPECT_NE(AddMemory(backend_, mem).status().message().find("'colour'"), std::string::npos);
  // A link to nothing stores nothing.
  const size_t before = (*ListMemories(backend_, Req()))["memories"].size();
  mem.body = R"({"content":"dangling","links":[{"to":"mem-nope"}]})";
  EXPECT_NE(AddMemory(backend_, mem).status().message().find("mem-nope"), std::string::npos);
  EXPECT_EQ((*ListMemories(backend_, Req()))["memories"].size(), before);
  get.path_params["id"] = "mem-nope";
  EXPECT_EQ(GetMemory(backend_, get).status().code(), Code::kNotFound);
}

TEST_F(ApiRoutesTest, WithoutTheKnowledgeBaseTheRoutesAreUnavailableWithTheReason) {
  backend_.kb = nullptr;
  backend_.kb_status = FailedPrecondition("the chunk index was built by local-hash-v1/256",
                                          "run `agent-factory kb reindex`");
  HttpRequest body;
  body.body = R"({"content":"x","source":"a.md"})";
  HttpRequest memory;
  memory.body = R"({"content":"x"})";
  HttpRequest get;
  get.path_params["id"] = "mem-1";
  for (const Status& s :
       {SearchKnowledge(backend_, Req({{"query", "x"}})).status(),
        AddKnowledge(backend_, body).status(), ListMemories(backend_, Req()).status(),
        AddMemory(backend_, memory).status(), GetMemory(backend_, get).status()}) {
    EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
    EXPECT_NE(s.message().find("local-hash-v1/256"), std::string::npos) << s.ToString();
    EXPECT_NE(s.hint().find("kb reindex"), std::string::npos) << s.ToString();
    EXPECT_EQ(HttpStatusOf(ToApiError(s).EffectiveCode()), 503);
  }
}

TEST_F(ApiRoutesTest, ApiKeyRoutesCreateListRevokeWithoutLeakingHashes) {
  Auth auth(*store_);
  HttpRequest r;
  r.body = R"({"name":"ci","permissions":["features:read"]})";
  auto created = CreateApiKey(auth, r);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ((*created)["key"].get<std::string>().substr(0, 3), "af_");
  auto list = ListApiKeys(backend_, Req());
  ASSERT_EQ((*list)["api_keys"].size(), 1u);
  EXPECT_FALSE((*list)["api_keys"][0].contains("key"));
  EXPECT_FALSE((*list)["api_keys"][0].contains("key_hash"));
  HttpRequest del;
  del.path_params["id"] = (*created)["id"];
  ASSERT_TRUE(RevokeApiKey(backend_, del).ok());
  EXPECT_EQ((*ListApiKeys(backend_, Req()))["api_keys"][0]["revoked"], true);
  del.path_params["id"] = "key-nope";
  EXPECT_EQ(RevokeApiKey(backend_, del).status().code(), Code::kNotFound);

  r.body = R"({"name":"ci","permissions":"admin"})";
  EXPECT_NE(CreateApiKey(auth, r).status().message().find("permissions"), std::string::npos);
  r.body = R"({"name":"ci","permissions":["admin"],"expires":1})";
  EXPECT_NE(CreateApiKey(auth, r).status().message().find("'expires'"), std::string::npos);
  // Names are short single-line labels: none of these is stored.
  r.body =
      json{{"name", std::string(kMaxApiKeyNameBytes + 1, 'n')}, {"permissions", {"features:read"}}}
          .dump();
  EXPECT_NE(CreateApiKey(auth, r).status().message().find("-byte limit"), std::string::npos);
  r.body = json{{"name", "esc \x1b]0;PWNED\x07"}, {"permissions", {"features:read"}}}.dump();
  EXPECT_NE(CreateApiKey(auth, r).status().message().find("control"), std::string::npos);
  // Characters that reorder or hide the text around them, and C1 controls.
  for (const char* name : {"x\u202Ey", "a\u2066b", "c\u200Fd", "csi\u009B2J"}) {
    r.body = json{{"name", name}, {"permissions", {"features:read"}}}.dump();
    EXPECT_NE(CreateApiKey(auth, r).status().message().find("text-direction"), std::string::npos)
        << name;
  }
  r.body = json{{"name", "caf\u00e9 \u2713 ci"}, {"permissions", {"features:read"}}}.dump();
  EXPECT_TRUE(CreateApiKey(auth, r).ok());  // other non-ASCII text is fine
  EXPECT_EQ((*ListApiKeys(backend_, Req()))["api_keys"].size(), 2u);
}

TEST(RateLimiterTest, TokenBucketRefusesThenRefills) {
  auto now = std::chrono::steady_clock::time_point{};
  RateLimiter limiter(60, [&] { return now; });  // one token per second
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(limiter.Take("k").allowed) << i;
  auto refused = limiter.Take("k");
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_seconds, 1);
  EXPECT_EQ(refused.remaining, 0);
  EXPECT_EQ(refused.limit, 60);
  EXPECT_TRUE(limiter.Take("other").allowed);  // per key
  auto headers = RateLimiter::Headers(refused);
  std::map<std::string, std::string> h(headers.begin(), headers.end());
  EXPECT_EQ(h["Retry-After"], "1");
  EXPECT_EQ(h["X-RateLimit-Limit"], "60");
  now += std::chrono::seconds(1);
  EXPECT_TRUE(limiter.Take("k").allowed);
  EXPECT_TRUE(RateLimiter(0).Take("k").allowed);  // disabled
}

TEST(CorsTest, AllowsListedOriginsOnly) {
  Cors cors({"https://app.example.com/"});
  HttpRequest ok;
  ok.headers["origin"] = "https://app.example.com";
  HttpResponse pre = cors.Preflight(ok, "GET, POST, OPTIONS");
  EXPECT_EQ(pre.status, 204);
  std::map<std::string, std::string> h(pre.headers.begin(), pre.headers.end());
  EXPECT_EQ(h["Access-Control-Allow-Origin"], "https://app.example.com");
  EXPECT_EQ(h["Access-Control-Allow-Methods"], "GET, POST, OPTIONS");
  EXPECT_NE(h["Access-Control-Allow-Headers"].find("Authorization"), std::string::npos);

  HttpRequest evil;
  evil.headers["origin"] = "https://evil.example.com";
  EXPECT_TRUE(cors.Preflight(evil, "GET").headers.empty());
  HttpResponse resp;
  cors.Decorate(evil, resp);
  EXPECT_TRUE(resp.headers.empty());
  cors.Decorate(ok, resp);
  EXPECT_FALSE(resp.headers.empty());
}

// The route table is the one list: every row carries its handler, and no
// method and pattern appear twice.
TEST(OpenApiTest, EveryRouteRowHasAHandlerAndIsListedOnce) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const ApiRouteSpec& s : ApiRouteSpecs()) {
    EXPECT_NE(s.handler, nullptr) << s.method << " " << s.pattern;
    EXPECT_TRUE(seen.insert({s.method, s.pattern}).second) << s.method << " " << s.pattern;
  }
}

// The Error schema lists every code the server sends, 414 and 431 included.
TEST(OpenApiTest, TheErrorSchemaListsEveryCodeTheServerSends) {
  const json codes = OpenApiDocument()["components"]["schemas"]["Error"]["properties"]["error"]
                                      ["properties"]["code"]["enum"];
  for (const char* name : {"URI_TOO_LONG", "HEADERS_TOO_LARGE", "VALIDATION_ERROR", "TIMEOUT"})
    EXPECT_NE(std::find(codes.begin(), codes.end(), name), codes.end()) << name << " in " << codes;
  EXPECT_EQ(codes.size(), static_cast<size_t>(ApiErrorCode::kTimeout) + 1);
}

TEST(OpenApiTest, DocumentsEveryRestRouteItsPreflightAndTheOtherModules) {
  json doc = OpenApiDocument();
  EXPECT_EQ(doc["openapi"], "3.0.3");
  std::set<std::pair<std::string, std::string>> ops;
  for (auto& op : OpenApiOperations(doc)) ops.insert(op);
  for (const ApiRouteSpec& s : ApiRouteSpecs()) {
    EXPECT_TRUE(ops.count({s.method, OpenApiPath(s.pattern)})) << s.method << " " << s.pattern;
    EXPECT_TRUE(ops.count({"OPTIONS", OpenApiPath(s.pattern)})) << s.pattern;
  }
  for (auto path : {"/health", "/health/live", "/health/ready", "/metrics", "/", "/api/v1/events",
                    "/api/v1/features/{id}/events", "/events"}) {
    EXPECT_TRUE(ops.count({"GET", path})) << path;
  }
  EXPECT_EQ(OpenApiPath("/api/v1/features/:id/events"), "/api/v1/features/{id}/events");
  EXPECT_EQ(doc["paths"]["/api/v1/features/{id}"]["get"]["x-permission"], "features:read");
}

}  // namespace
}  // namespace af
