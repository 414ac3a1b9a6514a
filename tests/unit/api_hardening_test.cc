// The HTTP surface against hostile input, below the socket: nesting depth of
// every JSON input, integer ranges, bounded search texts, no server paths or
// internals in error bodies, artifact paths relative to the data directory,
// the last admin key, the failed-authentication throttle (fake clock), the
// access_token rule, the CORS refusal warning and private data files.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "af/agents/prp.h"
#include "af/api/auth.h"
#include "af/api/errors.h"
#include "af/api/middleware.h"
#include "af/api/routes.h"
#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/core/private_files.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"
#include "llm/wire_codec.h"
#include "support/fake_clock.h"
#include "support/test_util.h"

namespace af {
namespace {

using json = nlohmann::json;

std::string Nested(int depth) {
  return std::string(static_cast<size_t>(depth), '[') + "1" +
         std::string(static_cast<size_t>(depth), ']');
}

std::unique_ptr<Store> MemStore() {
  StoreOptions o;
  o.url = "sqlite::memory:";
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

// The knowledge base over `store`, its vector indexes in memory.
std::unique_ptr<KnowledgeBase> MemKb(Store* store) {
  auto kb = KnowledgeBase::Open(store, KnowledgeOptions{});
  EXPECT_TRUE(kb.ok()) << kb.status().ToString();
  return kb.ok() ? std::move(kb).value() : nullptr;
}

int Mode(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 0777);
}

// --- JSON depth ------------------------------------------------------------------

TEST(JsonDepthTest, DeepInputIsRefusedBeforeParsingAndStringsDoNotCount) {
  EXPECT_TRUE(ParseJson(Nested(kMaxJsonDepth), "x").ok());
  auto deep = ParseJson(Nested(70000), "request body");
  ASSERT_EQ(deep.status().code(), Code::kInvalidArgument);
  EXPECT_NE(deep.status().message().find("request body nests deeper than 64 levels"),
            std::string::npos)
      << deep.status().message();
  EXPECT_NE(deep.status().message().find("at byte 65"), std::string::npos);
  // Brackets inside strings (escaped quotes included) are text, not nesting.
  std::string in_string = "{\"a\":\"\\\"" + std::string(500, '[') + "\"}";
  EXPECT_TRUE(ParseJson(in_string, "x").ok());
  auto bad = ParseJson("{\"a\":", "request body");
  EXPECT_NE(bad.status().message().find("request body is not valid JSON (at byte"),
            std::string::npos)
      << bad.status().message();
}

// Each outside input goes through the cap: a request body (the memory's
// source), a PRP file, a provider reply, tool arguments from the model. Before
// the cap, 70,000 levels crashed the process (recursive parse and destroy).
TEST(JsonDepthTest, EveryOutsideInputIsCapped) {
  auto store = MemStore();
  ApiBackend b;
  b.store = store.get();
  HttpRequest r;
  r.body = "{\"content\":\"x\",\"source\":";
  for (int i = 0; i < 70000; ++i) r.body += "{\"a\":";
  r.body += "1" + std::string(70000, '}') + "}";
  auto added = AddMemory(b, r);
  ASSERT_EQ(added.status().code(), Code::kInvalidArgument);
  EXPECT_NE(added.status().message().find("nests deeper than 64"), std::string::npos);

  testing::TempDir dir;
  auto prp = LoadPrpFile(dir.Write("deep.json", "{\"title\":" + Nested(100000) + "}"));
  ASSERT_EQ(prp.status().code(), Code::kInvalidArgument);
  EXPECT_NE(prp.status().message().find("nests deeper than 64"), std::string::npos)
      << prp.status().message();

  auto reply = llm::ParseProviderJson("anthropic", Nested(100000));
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.status().message().find("nests deeper than 64"), std::string::npos);
  auto args = llm::ParseToolArguments("openai", "write_file", "{\"a\":" + Nested(100000) + "}");
  ASSERT_EQ(args.status().code(), Code::kInvalidArgument);
  EXPECT_NE(args.status().message().find("write_file"), std::string::npos);
}

// --- Integers, search texts ------------------------------------------------------------

TEST(ApiInputTest, OutOfRangeIntegersAreRefusedNotWrapped) {
  auto store = MemStore();
  auto kb = MemKb(store.get());
  ApiBackend b;
  b.store = store.get();
  b.kb = kb.get();
  HttpRequest r;
  for (const char* bad : {"4294967301", "0", "11", "-1", "18446744073709551615", "5.5"}) {
    r.body = std::string(R"({"content":"x","importance":)") + bad + "}";
    auto added = AddMemory(b, r);
    ASSERT_EQ(added.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(added.status().message().find("from 1 to 10"), std::string::npos) << bad;
  }
  r.body = R"({"content":"x","importance":10})";
  auto ok = AddMemory(b, r);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ((*ok)["importance"], 10);

  HttpRequest list;
  list.query_params["limit"] = "4294967301";
  EXPECT_EQ(ListMemories(b, list).status().code(), Code::kInvalidArgument);
}

TEST(ApiInputTest, LongSearchTextsAreA400NamingTheLimit) {
  auto store = MemStore();
  auto kb = MemKb(store.get());
  ApiBackend b;
  b.store = store.get();
  b.kb = kb.get();
  HttpRequest r;
  std::string words;
  for (int i = 0; i < 1000; ++i) words += "w" + std::to_string(i % 10) + " ";
  r.query_params["query"] = words;
  for (auto fn : {&SearchKnowledge, &ListMemories}) {
    auto got = fn(b, r);
    ASSERT_EQ(got.status().code(), Code::kInvalidArgument);
    EXPECT_NE(got.status().message().find("the limit is 1000"), std::string::npos)
        << got.status().message();
  }
  r.query_params["query"] = std::string(40 * 2, ' ');
  for (int i = 0; i < 40; ++i) r.query_params["query"] += "a ";
  auto many = SearchKnowledge(b, r);
  ASSERT_EQ(many.status().code(), Code::kInvalidArgument);
  EXPECT_NE(many.status().message().find("40 words; the limit is 32"), std::string::npos);
  r.query_params["query"] = "a b c";
  EXPECT_TRUE(SearchKnowledge(b, r).ok());
}

// --- What error bodies may show ------------------------------------------------------

TEST(ApiErrorBodyTest, InternalErrorsAreGenericAndServerPathsAreHidden) {
  ClearServerPathsForTest();
  AddServerPath("/srv/af/data", "<data_dir>");
  HttpResponse internal =
      ErrorResponse(Internal("Expression tree is too large (maximum depth 1000) (database "
                             "/srv/af/data/agent-factory.db)",
                             "this is a bug; please report it"),
                    "req_1");
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.body.find("/srv/af"), std::string::npos) << internal.body;
  EXPECT_EQ(internal.body.find("Expression tree"), std::string::npos) << internal.body;
  json e = json::parse(internal.body)["error"];
  EXPECT_EQ(e["code"], "INTERNAL");
  EXPECT_NE(e["hint"].get<std::string>().find("req_1"), std::string::npos);

  HttpResponse locked =
      ErrorResponse(Unavailable("reading: database /srv/af/data/agent-factory.db stayed locked",
                                "check /srv/af/data/logs"),
                    "req_2");
  EXPECT_EQ(locked.status, 503);
  EXPECT_EQ(locked.body.find("/srv/af"), std::string::npos) << locked.body;
  EXPECT_NE(locked.body.find("<data_dir>/agent-factory.db stayed locked"), std::string::npos)
      << locked.body;
  ClearServerPathsForTest();
}

TEST(ApiErrorBodyTest, ArtifactFilesAreRelativeToTheDataDirectory) {
  auto store = MemStore();
  testing::TempDir dir;
  ApiBackend b;
  b.store = store.get();
  b.data_dir = dir.path() / "data";
  b.artifacts_dir = b.data_dir / "artifacts";
  Feature f;
  f.title = "t";
  auto stored = store->CreateFeature(f);
  ASSERT_TRUE(stored.ok());
  const std::string patch = (b.artifacts_dir / stored->id / "changes.patch").string();
  ASSERT_TRUE(store
                  ->TransitionFeature(stored->id, std::nullopt, "completed", "",
                                      {{"artifacts", {patch, "/elsewhere/secret/summary.md"}}})
                  .ok());
  HttpRequest r;
  r.path_params["id"] = stored->id;
  auto d = GetFeature(b, r);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)["artifacts"]["files"],
            json({"artifacts/" + stored->id + "/changes.patch", "summary.md"}));
}

// --- API keys ---------------------------------------------------------------------------

TEST(ApiKeysTest, TheLastAdminKeyCannotBeRevokedAndAdminKeyFileFollows) {
  auto store = MemStore();
  testing::TempDir dir;
  Auth auth(*store);
  auto first = auth.EnsureAdminKey(dir.path());
  ASSERT_TRUE(first.ok() && first->has_value());
  ApiBackend b;
  b.store = store.get();
  b.data_dir = dir.path();
  auto keys = store->ListApiKeys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  HttpRequest del;
  del.path_params["id"] = (*keys)[0].id;
  auto refused = RevokeApiKey(b, del);
  ASSERT_EQ(refused.status().code(), Code::kFailedPrecondition);  // 409
  EXPECT_NE(refused.status().message().find("last admin key"), std::string::npos);
  EXPECT_NE(refused.status().hint().find("create another admin key first"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "admin.key"));

  // A reader key does not count as an admin.
  ASSERT_TRUE(auth.CreateKey("reader", {"features:read"}).ok());
  EXPECT_EQ(RevokeApiKey(b, del).status().code(), Code::kFailedPrecondition);

  ASSERT_TRUE(auth.CreateKey("second", {"admin"}).ok());
  auto revoked = RevokeApiKey(b, del);
  ASSERT_TRUE(revoked.ok()) << revoked.status().ToString();
  // admin.key held the revoked key: it goes, rather than keep a key that fails.
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "admin.key"));
  EXPECT_TRUE(revoked->contains("admin_key_file"));
}

// --- The gate: access_token, failed-authentication throttle --------------------------------

TEST(ApiGateTest, AccessTokenOnlyWhereTheRouteAllowsIt) {
  auto store = MemStore();
  Auth auth(*store);
  auto key = auth.CreateKey("admin", {"admin"});
  ASSERT_TRUE(key.ok());
  ApiGate gate(auth);
  HttpRequest r;
  r.remote_address = "10.0.0.1";
  r.query_params["access_token"] = key->second;
  auto rest = gate.Admit(r, "admin");
  ASSERT_TRUE(rest.refusal);
  EXPECT_EQ(rest.refusal->status, 401);
  EXPECT_NE(rest.refusal->body.find("accepted only on the event streams"), std::string::npos)
      << rest.refusal->body;
  auto stream = gate.Admit(r, "features:read", /*query_token=*/true);
  EXPECT_FALSE(stream.refusal) << stream.refusal->body;
}

TEST(AuthThrottleTest, TenFailuresInAMinuteLockOutThatAddressOnly) {
  testing::FakeClock clock;
  AuthThrottle throttle(10, std::chrono::seconds(60), [&] { return clock.Now(); });
  for (int i = 0; i < 9; ++i) {
    throttle.Failed("10.0.0.1");
    clock.Advance(std::chrono::seconds(1));
  }
  EXPECT_EQ(throttle.RetryAfterSeconds("10.0.0.1"), 0);
  throttle.Failed("10.0.0.1");
  // The oldest failure (t=0) ages out at t=60; now is t=9.
  EXPECT_EQ(throttle.RetryAfterSeconds("10.0.0.1"), 51);
  EXPECT_EQ(throttle.RetryAfterSeconds("10.0.0.2"), 0);
  clock.Advance(std::chrono::seconds(51));
  EXPECT_EQ(throttle.RetryAfterSeconds("10.0.0.1"), 0);
  // Disabled.
  AuthThrottle off(0);
  for (int i = 0; i < 100; ++i) off.Failed("a");
  EXPECT_EQ(off.RetryAfterSeconds("a"), 0);
}

TEST(ApiGateTest, WrongKeysAreThrottledPerAddressWithRetryAfter) {
  auto store = MemStore();
  Auth auth(*store);
  auto key = auth.CreateKey("ci", {"features:read"});
  ASSERT_TRUE(key.ok());
  testing::FakeClock clock;
  ApiGateOptions o;
  o.clock = [&] { return clock.Now(); };
  ApiGate gate(auth, o);
  HttpRequest guess;
  guess.remote_address = "10.0.0.1";
  guess.headers["authorization"] = "Bearer af_" + std::string(64, '0');
  for (int i = 0; i < 10; ++i) {
    auto a = gate.Admit(guess, "features:read");
    ASSERT_TRUE(a.refusal);
    EXPECT_EQ(a.refusal->status, 401) << i;
  }
  auto locked = gate.Admit(guess, "features:read");
  ASSERT_TRUE(locked.refusal);
  EXPECT_EQ(locked.refusal->status, 429);
  EXPECT_NE(locked.refusal->body.find("RATE_LIMIT_EXCEEDED"), std::string::npos);
  std::map<std::string, std::string> h(locked.refusal->headers.begin(),
                                       locked.refusal->headers.end());
  EXPECT_EQ(h["Retry-After"], "60");
  // Even the right key from that address waits; another address is not affected.
  HttpRequest good = guess;
  good.headers["authorization"] = "Bearer " + key->second;
  EXPECT_EQ(gate.Admit(good, "features:read").refusal->status, 429);
  good.remote_address = "10.0.0.2";
  EXPECT_FALSE(gate.Admit(good, "features:read").refusal);
  // Requests with no key at all are not guesses.
  HttpRequest none;
  none.remote_address = "10.0.0.3";
  for (int i = 0; i < 20; ++i) EXPECT_EQ(gate.Admit(none, "features:read").refusal->status, 401);
  clock.Advance(std::chrono::seconds(60));
  good.remote_address = "10.0.0.1";
  EXPECT_FALSE(gate.Admit(good, "features:read").refusal);
}

// --- CORS refusal is explained in the log --------------------------------------------------

TEST(CorsLogTest, ARefusedOriginIsLoggedOnceWithTheSetting) {
  testing::TempDir dir;
  auto file = dir.path() / "af.log";
  ASSERT_TRUE(log::Init({.level = "warn", .file = file.string(), .console = false}).ok());
  Cors cors({"https://ok.example"});
  HttpRequest evil;
  evil.headers["origin"] = "https://evil.example";
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(cors.Allowed(evil));
  log::Get("api")->flush();
  const std::string text = testing::ReadFile(file);
  size_t first = text.find("https://evil.example");
  ASSERT_NE(first, std::string::npos) << text;
  EXPECT_EQ(text.find("https://evil.example", first + 1), std::string::npos) << "logged twice";
  EXPECT_NE(text.find("api.cors_origins"), std::string::npos);
  ASSERT_TRUE(log::Init({.level = "warn", .console = false}).ok());
}

// --- Private data files ------------------------------------------------------------------

TEST(PrivateFilesTest, DataDirectoryDatabaseWalAndLogAreOwnerOnly) {
  testing::TempDir dir;
  const auto data = dir.path() / "a" / "data";
  StoreOptions so;
  so.url = "sqlite:" + (data / "agent-factory.db").string();
  auto store = Store::Open(so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(Mode(dir.path() / "a"), 0700);
  EXPECT_EQ(Mode(data), 0700);
  EXPECT_EQ(Mode(data / "agent-factory.db"), 0600);
  EXPECT_EQ(Mode(data / "agent-factory.db-wal"), 0600);

  const auto log_file = dir.path() / "l" / "logs" / "agent-factory.log";
  ASSERT_TRUE(log::Init({.level = "warn", .file = log_file.string(), .console = false}).ok());
  EXPECT_EQ(Mode(log_file.parent_path()), 0700);
  EXPECT_EQ(Mode(log_file), 0600);
  ASSERT_TRUE(log::Init({.level = "warn", .console = false}).ok());

  // An existing directory keeps the mode its owner chose.
  std::filesystem::create_directories(dir.path() / "mine");
  ::chmod((dir.path() / "mine").c_str(), 0750);
  EXPECT_FALSE(CreatePrivateDirectories(dir.path() / "mine"));
  EXPECT_EQ(Mode(dir.path() / "mine"), 0750);
}

}  // namespace
}  // namespace af
