// Black-box tests of the REST API: the real binary (`serve`, replay provider,
// data in a temp dir) over real HTTP on 127.0.0.1. Every REST route, every
// error code, auth and permissions, the admin key file, CORS, rate limits,
// the OpenAPI document against the routes the server answers, a Markdown PRP
// run to completed, and the CLI clients.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "af/store/store.h"
#include "support/http_client.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;

std::map<std::string, std::string> Env(int port, const std::filesystem::path& data) {
  return {{"AF_PORT", std::to_string(port)},
          {"AF_HOST", "\x01unset"},
          {"AF_DATA_DIR", data.string()},
          {"DATABASE_URL", "\x01unset"},
          {"REDIS_URL", "\x01unset"},
          {"AF_LLM_PROVIDER", "\x01unset"},
          {"AF_LOG", "warn"},
          {"ANTHROPIC_API_KEY", "\x01unset"},
          {"OPENAI_API_KEY", "\x01unset"}};
}

// One server process with its own directory and configuration.
class Server {
 public:
  explicit Server(const std::string& toml, std::map<std::string, std::string> extra_env = {})
      : port_(FreePort()) {
    dir_.Write("agent-factory.toml", toml);
    env_ = Env(port_, dir_.path() / "data");
    for (auto& [k, v] : extra_env) env_[k] = v;
    child_ = std::make_unique<ChildProcess>(std::vector<std::string>{BinaryPath(), "serve"}, env_,
                                            dir_.path().string());
    ready_ = WaitFor(
                 [&] {
                   auto r = HttpCall(port_, "GET", "/health/live");
                   return (r.ok() && r->status == 200) || !child_->Running();
                 },
                 std::chrono::seconds(20)) &&
             child_->Running();
    if (ready_) admin_key_ = Trim(ReadFile(dir_.path() / "data" / "admin.key"));
  }
  static std::string Trim(std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    return s;
  }

  Result<HttpReply> Call(const std::string& method, const std::string& path,
                         const std::string& key = "", const std::string& body = "",
                         std::map<std::string, std::string> headers = {}) {
    HttpCallOptions o;
    o.headers = std::move(headers);
    if (!key.empty()) o.headers["Authorization"] = "Bearer " + key;
    if (!body.empty() && !o.headers.count("Content-Type"))
      o.headers["Content-Type"] = "application/json";
    o.body = body;
    return HttpCall(port_, method, path, o);
  }
  // As admin.
  Result<HttpReply> Admin(const std::string& method, const std::string& path,
                          const std::string& body = "", std::map<std::string, std::string> h = {}) {
    return Call(method, path, admin_key_, body, std::move(h));
  }
  CommandResult Cli(std::vector<std::string> args,
                    const std::map<std::string, std::string>& extra_env = {}) {
    args.insert(args.begin(), BinaryPath());
    auto env = env_;
    for (const auto& [k, v] : extra_env) env[k] = v;
    return RunCommand(args, env, dir_.path().string());
  }

  bool ready() const { return ready_; }
  int port() const { return port_; }
  const std::string& admin_key() const { return admin_key_; }
  const TempDir& dir() const { return dir_; }
  ChildProcess& child() { return *child_; }

 private:
  TempDir dir_;
  int port_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<ChildProcess> child_;
  bool ready_ = false;
  std::string admin_key_;
};

json Body(const Result<HttpReply>& r) {
  if (!r.ok()) return json();
  return json::parse(r->body, nullptr, false);
}

// Asserts the error shape {"error":{"code","message",...}} and code (docs/API.md).
void ExpectError(const Result<HttpReply>& r, int status, const std::string& code,
                 const std::string& message_part = "") {
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, status) << r->body;
  json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  const json& e = j["error"];
  EXPECT_EQ(e["code"], code) << r->body;
  for (auto k : {"code", "message", "details", "request_id", "hint"})
    EXPECT_TRUE(e.contains(k)) << k;
  EXPECT_EQ(e["request_id"], r->Header("x-request-id"));
  if (!message_part.empty()) {
    EXPECT_NE(e["message"].get<std::string>().find(message_part), std::string::npos) << r->body;
  }
}

const char kConfig[] =
    "[api]\n"
    "cors_origins = [\"https://ok.example\"]\n"
    "rate_limit_per_minute = 100000\n"
    "max_body_bytes = 65536\n";

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new Server(kConfig); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(server_->ready()) << server_->child().Out() << server_->child().Err();
  }
  static Server* server_;
};
Server* ApiTest::server_ = nullptr;

TEST_F(ApiTest, FirstStartWritesA0600AdminKeyAndPrintsItOnce) {
  const auto file = server_->dir().path() / "data" / "admin.key";
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_TRUE(std::regex_match(server_->admin_key(), std::regex("af_[0-9a-f]{64}")));
  EXPECT_NE(server_->child().Out().find("Admin API key (shown once, also in " + file.string() +
                                        "): " + server_->admin_key()),
            std::string::npos)
      << server_->child().Out();
  // The key itself never reaches the log file.
  std::string log = ReadFile(server_->dir().path() / "data" / "logs" / "agent-factory.log");
  EXPECT_EQ(log.find(server_->admin_key()), std::string::npos);
}

TEST_F(ApiTest, AuthenticationAndPermissions) {
  ExpectError(server_->Call("GET", "/api/v1/features"), 401, "UNAUTHORIZED", "missing API key");
  ExpectError(server_->Call("GET", "/api/v1/features", "af_" + std::string(64, '0')), 401,
              "UNAUTHORIZED", "invalid API key");
  ExpectError(server_->Call("GET", "/api/v1/agents", "garbage"), 401, "UNAUTHORIZED");

  auto created = server_->Admin("POST", "/api/v1/auth/api-keys",
                                R"({"name":"reader","permissions":["features:read"]})");
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(created->status, 201) << created->body;
  const std::string reader = Body(created)["key"];
  const std::string reader_id = Body(created)["id"];
  EXPECT_EQ(server_->Call("GET", "/api/v1/features", reader)->status, 200);
  // access_token is for the event streams only (EventSource cannot send
  // headers); a key in the URL of any other route is refused.
  ExpectError(server_->Call("GET", "/api/v1/features?access_token=" + reader), 401, "UNAUTHORIZED",
              "accepted only on the event streams");
  ExpectError(server_->Call("POST", "/api/v1/features", reader, R"({"title":"x"})"), 403,
              "FORBIDDEN", "features:create");
  ExpectError(server_->Call("GET", "/api/v1/agents", reader), 403, "FORBIDDEN", "agents:read");
  ExpectError(server_->Call("GET", "/api/v1/auth/api-keys", reader), 403, "FORBIDDEN", "admin");

  auto list = server_->Admin("GET", "/api/v1/auth/api-keys");
  ASSERT_EQ(list->status, 200);
  bool seen = false;
  const json keys = Body(list);
  for (const auto& k : keys["api_keys"]) {
    EXPECT_FALSE(k.contains("key"));
    EXPECT_FALSE(k.contains("key_hash"));
    if (k["id"] == reader_id) seen = true;
  }
  EXPECT_TRUE(seen) << list->body << " " << reader_id;
  EXPECT_EQ(list->body.find(reader), std::string::npos);

  auto revoked = server_->Admin("DELETE", "/api/v1/auth/api-keys/" + reader_id);
  ASSERT_EQ(revoked->status, 200) << revoked->body;
  ExpectError(server_->Call("GET", "/api/v1/features", reader), 401, "UNAUTHORIZED", "revoked");
  ExpectError(server_->Admin("DELETE", "/api/v1/auth/api-keys/key-nope"), 404, "NOT_FOUND");
  ExpectError(
      server_->Admin("POST", "/api/v1/auth/api-keys", R"({"name":"x","permissions":["root"]})"),
      400, "VALIDATION_ERROR", "root");
}

TEST_F(ApiTest, ErrorCodes) {
  ExpectError(server_->Admin("POST", "/api/v1/features", "{not json"), 400, "VALIDATION_ERROR",
              "not valid JSON");
  ExpectError(server_->Admin("POST", "/api/v1/features", R"({"title":["a"]})"), 400,
              "VALIDATION_ERROR", "title");
  ExpectError(server_->Admin("POST", "/api/v1/features", R"({"title":"a","colour":"red"})"), 400,
              "VALIDATION_ERROR", "colour");
  ExpectError(server_->Admin("GET", "/api/v1/features?limit=0"), 400, "VALIDATION_ERROR", "limit");
  ExpectError(server_->Admin("GET", "/api/v1/features/f-missing"), 404, "NOT_FOUND");
  ExpectError(server_->Admin("GET", "/api/v1/tasks/t-missing"), 404, "NOT_FOUND");
  ExpectError(server_->Admin("GET", "/api/v1/agents/nobody"), 404, "NOT_FOUND");
  ExpectError(server_->Admin("GET", "/api/v1/memories/mem-missing"), 404, "NOT_FOUND");
  ExpectError(server_->Admin("DELETE", "/api/v1/features/f-missing"), 404, "NOT_FOUND");
  ExpectError(server_->Admin("GET", "/api/v1/nothing-here"), 404, "NOT_FOUND");
  ExpectError(server_->Admin("PUT", "/api/v1/features"), 405, "METHOD_NOT_ALLOWED");
  ExpectError(server_->Admin("POST", "/api/v1/features", std::string(70000, ' ')), 413,
              "PAYLOAD_TOO_LARGE");

  auto challenged = server_->Admin(
      "POST", "/api/v1/features",
      R"({"title":"Thing","description":"just make it quick","acceptance_criteria":["works"]})");
  ExpectError(challenged, 422, "WORK_PLAN_CHALLENGED", "Work plan challenged");
  json issues = Body(challenged)["error"]["details"]["issues"];
  ASSERT_TRUE(issues.is_array()) << challenged->body;
  std::set<std::string> got(issues.begin(), issues.end());
  EXPECT_TRUE(got.count("Tech stack not specified")) << issues.dump();
  EXPECT_TRUE(got.count("Vague requirement: 'just'")) << issues.dump();
  EXPECT_EQ(Body(server_->Admin("GET", "/api/v1/features?status=queued"))["pagination"]["total"]
                .is_number(),
            true);
}

TEST_F(ApiTest, CorsPreflightAllowedAndRefused) {
  auto ok = server_->Call("OPTIONS", "/api/v1/features", "", "",
                          {{"Origin", "https://ok.example"},
                           {"Access-Control-Request-Method", "POST"},
                           {"Access-Control-Request-Headers", "authorization, content-type"}});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 204);
  EXPECT_EQ(ok->Header("access-control-allow-origin"), "https://ok.example");
  EXPECT_NE(ok->Header("access-control-allow-methods").find("POST"), std::string::npos);
  EXPECT_NE(ok->Header("access-control-allow-headers").find("Authorization"), std::string::npos);

  auto evil = server_->Call(
      "OPTIONS", "/api/v1/features", "", "",
      {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(evil.ok());
  EXPECT_EQ(evil->Header("access-control-allow-origin"), "");
  EXPECT_EQ(evil->Header("access-control-allow-methods"), "");

  auto get = server_->Admin("GET", "/api/v1/features", "", {{"Origin", "https://ok.example"}});
  EXPECT_EQ(get->Header("access-control-allow-origin"), "https://ok.example");
  auto get_evil =
      server_->Admin("GET", "/api/v1/features", "", {{"Origin", "https://evil.example"}});
  EXPECT_EQ(get_evil->status, 200);
  EXPECT_EQ(get_evil->Header("access-control-allow-origin"), "");
}

TEST_F(ApiTest, AgentsKnowledgeAndMemories) {
  for (const char* path : {"/api/v1/agents", "/agents"}) {
    auto r = server_->Admin("GET", path);
    ASSERT_EQ(r->status, 200) << r->body;
    json agents = Body(r)["agents"];
    ASSERT_FALSE(agents.empty()) << r->body;  // the pipeline's agents
    for (auto k : {"id", "role", "state", "last_heartbeat", "current_task", "counters"})
      EXPECT_TRUE(agents[0].contains(k)) << k;
    auto one = server_->Admin("GET", "/api/v1/agents/" + agents[0]["id"].get<std::string>());
    EXPECT_EQ(one->status, 200) << one->body;
    EXPECT_EQ(Body(one)["role"], agents[0]["role"]);
  }
  auto added = server_->Admin(
      "POST", "/api/v1/knowledge",
      R"({"content":"Slugs are lower-case ascii joined by hyphens","source":"docs/slug.md"})");
  ASSERT_EQ(added->status, 201) << added->body;
  auto search = server_->Admin(
      "GET", "/api/v1/knowledge/search?query=hyphens&max_results=3&similarity_threshold=0");
  ASSERT_EQ(search->status, 200) << search->body;
  json results = Body(search)["results"];
  ASSERT_EQ(results.size(), 1u) << search->body;
  EXPECT_EQ(results[0]["source"], "docs/slug.md");
  for (auto k : {"id", "source", "chunk", "score", "content"}) EXPECT_TRUE(results[0].contains(k));
  ExpectError(server_->Admin("GET", "/api/v1/knowledge/search"), 400, "VALIDATION_ERROR", "query");

  auto mem = server_->Admin("POST", "/api/v1/memories",
                            R"({"content":"prefer pytest -q","type":"preference","importance":6})");
  ASSERT_EQ(mem->status, 201) << mem->body;
  const std::string id = Body(mem)["id"];
  auto got = server_->Admin("GET", "/api/v1/memories/" + id);
  ASSERT_EQ(got->status, 200) << got->body;
  EXPECT_EQ(Body(got)["importance"], 6);
  EXPECT_EQ(Body(got)["links"], json::array()) << got->body;
  auto second = server_->Admin("POST", "/api/v1/memories",
                               R"({"content":"run the gates quietly","links":[{"to":")" + id +
                                   R"(","type":"relates_to"}]})");
  ASSERT_EQ(second->status, 201) << second->body;
  got = server_->Admin("GET", "/api/v1/memories/" + id);
  ASSERT_EQ(Body(got)["links"].size(), 1u) << got->body;
  EXPECT_EQ(Body(got)["links"][0]["from"], Body(second)["id"]);
  EXPECT_EQ(Body(got)["linked"][0]["content"], "run the gates quietly");
  auto list = server_->Admin("GET", "/api/v1/memories?query=pytest");
  ASSERT_EQ(list->status, 200);
  ASSERT_FALSE(Body(list)["memories"].empty()) << list->body;
  EXPECT_EQ(Body(list)["memories"][0]["id"], id) << list->body;
  ExpectError(server_->Admin("POST", "/api/v1/memories", R"({"content":"x","type":"nonsense"})"),
              400, "VALIDATION_ERROR", "type");
}

TEST_F(ApiTest, MarkdownPrpRunsToCompletedWithTasksAndPagination) {
  const std::string prp =
      ReadFile(std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/python-slugify.md");
  auto submitted =
      server_->Admin("POST", "/api/v1/features", prp, {{"Content-Type", "text/markdown"}});
  ASSERT_EQ(submitted->status, 201) << submitted->body;
  json s = Body(submitted);
  const std::string id = s["id"];
  EXPECT_EQ(s["events_url"], "/api/v1/features/" + id + "/events");
  EXPECT_TRUE(s["created_at"].is_string());
  EXPECT_TRUE(s["status"].is_string());

  json feature;
  ASSERT_TRUE(WaitFor(
      [&] {
        feature = Body(server_->Admin("GET", "/api/v1/features/" + id));
        std::string st = feature.value("status", "");
        return st == "completed" || st == "failed" || st == "cancelled";
      },
      std::chrono::seconds(180)));
  ASSERT_EQ(feature["status"], "completed") << feature.dump(2);
  ASSERT_FALSE(feature["tasks"].empty());
  EXPECT_TRUE(feature["artifacts"]["branch"].is_string()) << feature["artifacts"].dump();
  EXPECT_EQ(feature["artifacts"]["delivered"], true);
  EXPECT_GT(feature["usage"]["calls"].get<int>(), 0);
  auto task =
      server_->Admin("GET", "/api/v1/tasks/" + feature["tasks"][0]["id"].get<std::string>());
  ASSERT_EQ(task->status, 200) << task->body;
  EXPECT_EQ(Body(task)["feature_id"], id);
  // The delivered diff is the patch of the branch: it adds the slugify module.
  auto diff = server_->Admin("GET", "/api/v1/features/" + id + "/diff");
  ASSERT_EQ(diff->status, 200) << diff->body;
  EXPECT_TRUE(Body(diff)["available"].get<bool>());
  EXPECT_NE(Body(diff)["diff"].get<std::string>().find("+++ b/"), std::string::npos)
      << diff->body.substr(0, 500);
  ExpectError(server_->Admin("GET", "/api/v1/features/f-nope/diff"), 404, "NOT_FOUND");

  // Cancelling a finished feature is a conflict, not a change; so is
  // retrying a completed one.
  ExpectError(server_->Admin("DELETE", "/api/v1/features/" + id), 409, "CONFLICT");
  ExpectError(server_->Admin("POST", "/api/v1/features/" + id + "/retry"), 409, "CONFLICT",
              "only a failed or cancelled feature can be retried");
  ExpectError(server_->Admin("POST", "/api/v1/features/f-nope/retry"), 404, "NOT_FOUND");

  // A second feature, bypassing the challenge; the replay provider has no
  // answers for it, so it ends (failed) or is cancelled first.
  auto second = server_->Admin(
      "POST", "/api/v1/features",
      R"({"title":"Other","description":"x","challenge_vague_requirements":false,"tech_stack":"sh"})");
  ASSERT_EQ(second->status, 201) << second->body;
  const std::string id2 = Body(second)["id"];
  auto cancel = server_->Admin("DELETE", "/api/v1/features/" + id2);
  if (cancel->status == 200) {
    EXPECT_EQ(Body(cancel)["status"], "cancelled");
  } else {
    ExpectError(cancel, 409, "CONFLICT");
  }

  auto page1 = Body(server_->Admin("GET", "/api/v1/features?limit=1&offset=0"));
  auto page2 = Body(server_->Admin("GET", "/api/v1/features?limit=1&offset=1"));
  ASSERT_EQ(page1["features"].size(), 1u);
  ASSERT_EQ(page2["features"].size(), 1u);
  EXPECT_GE(page1["pagination"]["total"].get<int>(), 2);
  EXPECT_EQ(page1["pagination"]["limit"], 1);
  EXPECT_EQ(page1["pagination"]["has_more"], true);
  EXPECT_NE(page1["features"][0]["id"], page2["features"][0]["id"]);
  auto done = Body(server_->Admin("GET", "/api/v1/features?status=completed"));
  for (const auto& f : done["features"]) EXPECT_EQ(f["status"], "completed");
  EXPECT_GE(done["pagination"]["total"].get<int>(), 1);
}

// The document lists exactly the routes the server answers: for every
// documented path, a method nobody registers (PATCH) gets 405 whose Allow
// header names every registered method of that path.
// A feature that failed after some of its tasks committed names the branch
// that holds them, not delivered, in the API and in `feature status`: the
// work paid for can be found. (Written to the store directly: the failure is
// the point, not how it came.)
TEST_F(ApiTest, AFailedFeatureNamesTheBranchHoldingItsTaskCommits) {
  std::string id;
  {
    auto store =
        Store::Open({.url = "sqlite:" + (server_->dir().path() / "data/agent-factory.db").string(),
                     .migrate = false});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto f = (*store)->CreateFeature(Feature{.title = "Fails after a commit"});
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    id = f->id;
    Task done{.title = "Committed", .role = "coder"};
    Task open{.title = "Never done", .role = "coder"};
    auto tasks = (*store)->CreateTasks(id, {done, open});
    ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
    TaskUpdate u;
    u.result = json{{"commit", "0123456789abcdef0123456789abcdef01234567"}, {"summary", "x"}};
    ASSERT_TRUE((*store)->TransitionTask((*tasks)[0].id, std::nullopt, "completed", u, {}).ok());
    ASSERT_TRUE((*store)->TransitionFeature(id, std::nullopt, "failed", "max_steps", {}).ok());
  }
  json feature = Body(server_->Admin("GET", "/api/v1/features/" + id));
  EXPECT_EQ(feature["artifacts"]["branch"], "af/" + id) << feature.dump();
  EXPECT_EQ(feature["artifacts"]["commit"], "0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(feature["artifacts"]["delivered"], false);
  auto status = server_->Cli({"feature", "status", id});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("branch: af/" + id + " at 0123456789abcdef"), std::string::npos)
      << status.out;
  EXPECT_NE(status.out.find("not delivered"), std::string::npos) << status.out;
}

TEST_F(ApiTest, OpenApiDocumentMatchesTheServedRoutes) {
  auto r = server_->Call("GET", "/openapi.json");
  ASSERT_EQ(r->status, 200);
  json doc = Body(r);
  ASSERT_EQ(doc["openapi"], "3.0.3");
  int checked = 0;
  for (auto& [path, ops] : doc["paths"].items()) {
    std::set<std::string> documented;
    for (auto& [m, op] : ops.items()) {
      std::string up = m;
      for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      documented.insert(up);
    }
    if (documented.count("GET")) documented.insert("HEAD");
    const std::string concrete = std::regex_replace(path, std::regex("\\{[^}]+\\}"), "x-1");
    auto probe = server_->Call("PATCH", concrete);
    ASSERT_TRUE(probe.ok());
    ASSERT_EQ(probe->status, 405) << path << ": " << probe->body;
    std::set<std::string> allowed;
    std::string allow = probe->Header("allow");
    for (size_t pos = 0; pos < allow.size();) {
      size_t comma = allow.find(',', pos);
      std::string m =
          allow.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      m.erase(0, m.find_first_not_of(' '));
      allowed.insert(m);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    EXPECT_EQ(allowed, documented) << path;
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

TEST(ApiLimitsTest, RateLimitAnswers429WithRetryAfterAndHeaders) {
  Server server("[api]\nrate_limit_per_minute = 3\n");
  ASSERT_TRUE(server.ready()) << server.child().Err();
  for (int i = 0; i < 3; ++i) {
    auto r = server.Admin("GET", "/api/v1/features");
    ASSERT_EQ(r->status, 200) << i << r->body;
    EXPECT_EQ(r->Header("x-ratelimit-limit"), "3");
    EXPECT_EQ(r->Header("x-ratelimit-remaining"), std::to_string(2 - i));
  }
  auto limited = server.Admin("GET", "/api/v1/features");
  ExpectError(limited, 429, "RATE_LIMIT_EXCEEDED", "rate limit");
  EXPECT_GE(std::stoi(limited->Header("retry-after")), 1);
  EXPECT_EQ(limited->Header("x-ratelimit-limit"), "3");
  EXPECT_EQ(limited->Header("x-ratelimit-remaining"), "0");
  EXPECT_FALSE(limited->Header("x-ratelimit-reset").empty());
  // Public routes are not limited.
  EXPECT_EQ(server.Call("GET", "/health/live")->status, 200);
}

// The hostile-client findings, end to end against the real binary.
TEST(ApiHardeningTest, QueryKeysDeepJsonLongSearchesAndPrivateFiles) {
  Server server("[api]\nrate_limit_per_minute = 100000\nmax_body_bytes = 4194304\n");
  ASSERT_TRUE(server.ready()) << server.child().Err();
  const std::string& admin = server.admin_key();

  // An admin key in the URL of a non-stream route creates nothing.
  ExpectError(server.Call("POST", "/api/v1/auth/api-keys?access_token=" + admin, "",
                          R"({"name":"sneaky","permissions":["admin"]})"),
              401, "UNAUTHORIZED", "accepted only on the event streams");
  EXPECT_EQ(Body(server.Admin("GET", "/api/v1/auth/api-keys"))["api_keys"].size(), 1u);

  // 70,000 nested objects used to crash the server.
  std::string deep = R"({"content":"x","source":)";
  for (int i = 0; i < 70000; ++i) deep += R"({"a":)";
  deep += "1" + std::string(70000, '}') + "}";
  ExpectError(server.Admin("POST", "/api/v1/memories", deep), 400, "VALIDATION_ERROR",
              "nests deeper than 64 levels");
  EXPECT_TRUE(server.child().Running());

  // ~1,000 search words: 400 naming the limit, no server path, no SQL.
  std::string words;
  for (int i = 0; i < 1000; ++i) words += (i ? "+" : "") + std::string("word");
  for (const char* route : {"/api/v1/knowledge/search?query=", "/api/v1/memories?query="}) {
    auto r = server.Admin("GET", route + words);
    ExpectError(r, 400, "VALIDATION_ERROR", "the limit is 1000");
    EXPECT_EQ(r->body.find(server.dir().path().string()), std::string::npos) << r->body;
  }
  ExpectError(
      server.Admin("POST", "/api/v1/memories", R"({"content":"x","importance":4294967301})"), 400,
      "VALIDATION_ERROR", "from 1 to 10");

  // Owner-only data: directory 0700, database, WAL and log 0600.
  const auto data = server.dir().path() / "data";
  auto mode = [](const std::filesystem::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
  };
  EXPECT_EQ(mode(data), 0700);
  EXPECT_EQ(mode(data / "agent-factory.db"), 0600);
  EXPECT_EQ(mode(data / "agent-factory.db-wal"), 0600);
  EXPECT_EQ(mode(data / "logs" / "agent-factory.log"), 0600);
}

TEST(ApiHardeningTest, TheLastAdminKeyStaysAndWrongKeysAreThrottled) {
  Server server("[api]\nrate_limit_per_minute = 100000\n");
  ASSERT_TRUE(server.ready()) << server.child().Err();
  auto keys = Body(server.Admin("GET", "/api/v1/auth/api-keys"));
  ASSERT_EQ(keys["api_keys"].size(), 1u);
  const std::string admin_id = keys["api_keys"][0]["id"];
  ExpectError(server.Admin("DELETE", "/api/v1/auth/api-keys/" + admin_id), 409, "CONFLICT",
              "last admin key");
  EXPECT_EQ(server.Admin("GET", "/api/v1/features")->status, 200);
  EXPECT_TRUE(std::filesystem::exists(server.dir().path() / "data" / "admin.key"));

  // Guessing keys: 10 tries a minute per address, then 429 with Retry-After.
  const std::string wrong = "af_" + std::string(64, '1');
  for (int i = 0; i < 10; ++i) {
    ExpectError(server.Call("GET", "/api/v1/features", wrong), 401, "UNAUTHORIZED");
  }
  auto locked = server.Call("GET", "/api/v1/features", wrong);
  ExpectError(locked, 429, "RATE_LIMIT_EXCEEDED", "failed authentications");
  EXPECT_FALSE(locked->Header("retry-after").empty());
}

TEST(ApiLimitsTest, WithoutAnLlmSubmitIs503NamingTheProblem) {
  // The recordings the replay provider needs are missing: no usable model.
  Server server("", {{"AF_LLM_REPLAY_FILE", "/nonexistent/recordings.jsonl"}});
  ASSERT_TRUE(server.ready()) << server.child().Err();
  auto r = server.Admin("POST", "/api/v1/features",
                        R"({"title":"x","description":"y","challenge_vague_requirements":false})");
  ExpectError(r, 503, "UNAVAILABLE", "LLM");
  EXPECT_NE(r->body.find("/nonexistent/recordings.jsonl"), std::string::npos) << r->body;
}

TEST(ApiCliTest, ClientCommandsTalkToTheServer) {
  Server server("");
  ASSERT_TRUE(server.ready()) << server.child().Err();
  const std::string prp = std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/python-slugify.md";

  auto submit = server.Cli({"feature", "submit", prp, "--json"});
  ASSERT_EQ(submit.exit_code, 0) << submit.out << submit.err;
  const std::string id = json::parse(submit.out)["id"];
  auto human = server.Cli({"feature", "status", id});
  EXPECT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find(id), std::string::npos);
  EXPECT_NE(human.out.find("status: "), std::string::npos);
  auto list = server.Cli({"feature", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find(id), std::string::npos) << list.out;
  auto cancel = server.Cli({"feature", "cancel", id});
  // It may have finished already: then the server's conflict is printed.
  if (cancel.exit_code == 0) {
    EXPECT_NE(cancel.out.find("cancelled"), std::string::npos) << cancel.out;
  } else {
    EXPECT_NE(cancel.err.find("is already"), std::string::npos) << cancel.err;
  }
  auto missing = server.Cli({"feature", "status", "f-missing"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("error: "), std::string::npos);
  EXPECT_NE(missing.err.find("f-missing"), std::string::npos) << missing.err;

  auto agents = server.Cli({"agents"});
  EXPECT_EQ(agents.exit_code, 0) << agents.err;
  EXPECT_NE(agents.out.find("ROLE"), std::string::npos);

  auto created =
      server.Cli({"keys", "create", "bot", "--permissions", "features:read,agents:read", "--json"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  json key = json::parse(created.out);
  auto keys = server.Cli({"keys", "list"});
  EXPECT_NE(keys.out.find("bot"), std::string::npos) << keys.out;
  // The new key works for reading and is refused for submitting.
  auto as_bot = server.Cli({"feature", "list", "--api-key", key["key"]});
  EXPECT_EQ(as_bot.exit_code, 0) << as_bot.err;
  auto bot_submit = server.Cli({"feature", "submit", prp, "--api-key", key["key"]});
  EXPECT_NE(bot_submit.exit_code, 0);
  EXPECT_NE(bot_submit.err.find("features:create"), std::string::npos) << bot_submit.err;
  // AF_API_KEY is the key of every client command, ahead of admin.key.
  const std::map<std::string, std::string> as_bot_env = {{"AF_API_KEY", key["key"]}};
  auto env_submit = server.Cli({"feature", "submit", prp}, as_bot_env);
  EXPECT_NE(env_submit.exit_code, 0) << env_submit.out;
  EXPECT_NE(env_submit.err.find("features:create"), std::string::npos) << env_submit.err;
  auto bogus = server.Cli({"agents"}, {{"AF_API_KEY", "af_" + std::string(64, '0')}});
  EXPECT_NE(bogus.exit_code, 0) << bogus.out;
  EXPECT_NE(bogus.err.find("invalid API key"), std::string::npos) << bogus.err;
  auto revoke = server.Cli({"keys", "revoke", key["id"]});
  EXPECT_EQ(revoke.exit_code, 0) << revoke.err;
  auto after = server.Cli({"agents", "--api-key", key["key"]});
  EXPECT_NE(after.exit_code, 0);
  EXPECT_NE(after.err.find("revoked API key"), std::string::npos) << after.err;
  EXPECT_NE(after.err.find("hint: "), std::string::npos) << after.err;

  auto challenged = server.Cli(
      {"feature", "submit", server.dir().Write("bad.json", R"({"title":"x"})").string()});
  EXPECT_EQ(challenged.exit_code, 2) << challenged.err;
  EXPECT_NE(challenged.err.find("Work plan challenged"), std::string::npos) << challenged.err;
  // A directory or an empty file is named as such before anything is sent.
  std::filesystem::create_directories(server.dir().path() / "adir.md");
  auto dir = server.Cli({"feature", "submit", (server.dir().path() / "adir.md").string()});
  EXPECT_EQ(dir.exit_code, 2) << dir.err;
  EXPECT_NE(dir.err.find("adir.md: not a regular file"), std::string::npos) << dir.err;
  auto empty = server.Cli({"feature", "submit", server.dir().Write("empty.md", "").string()});
  EXPECT_EQ(empty.exit_code, 2) << empty.err;
  EXPECT_NE(empty.err.find("empty.md: the PRP file is empty"), std::string::npos) << empty.err;

  // Unreachable: the same message as `health`.
  const std::string nowhere = "http://127.0.0.1:" + std::to_string(FreePort());
  auto down = server.Cli({"feature", "list", "--server", nowhere});
  auto health = server.Cli({"health", "--server", nowhere});
  EXPECT_NE(down.exit_code, 0);
  EXPECT_EQ(down.err, health.err);
  EXPECT_NE(down.err.find("cannot reach the server at " + nowhere), std::string::npos) << down.err;
}

}  // namespace
}  // namespace af::testing
