// A provider that fails for as long as a feature may run: the feature ends
// naming the provider and what it did (not "raise limits.feature_timeout"),
// in `run`, the API's `ended`, `feature status`; /health says degraded from the
// first failed attempts; `run` shows the circuit and rate-limit pauses live.

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <optional>

#include "af/agents/pipeline.h"
#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/http_client.h"
#include "support/pipeline_harness.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A 503 storm: the circuit never opens (a high threshold), so only the
// attempts tell that the provider fails.
TEST(ProviderOutage, A503StormEndsTheFeatureNamingTheProviderAndHealthIsDegradedAtOnce) {
  PipelineHarness h(Wire::kAnthropic);
  h.config().llm.circuit_failures = 1000;
  h.config().llm.max_retries = 1;  // a backoff between attempts, not a busy loop
  h.config().limits.feature_timeout = 2;
  h.fake().SetResponder([](const RecordedRequest&) -> std::optional<FakeReply> {
    return FakeReply::Status(503, R"({"type":"error","error":{"message":"overloaded"}})");
  });
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.services().Health().llm, "anthropic");  // nothing failed yet
  auto submitted = h.pipeline().Submit(PipelineHarness::Request("Storm"));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();

  // Degraded from the first failed attempt, long before any circuit opens.
  std::string llm_health;
  ASSERT_TRUE(WaitFor([&] {
    llm_health = h.services().Health().llm;
    return llm_health.rfind("degraded: ", 0) == 0;
  })) << llm_health;
  EXPECT_NE(llm_health.find("anthropic failing for"), std::string::npos) << llm_health;
  EXPECT_NE(llm_health.find("server error (HTTP 503)"), std::string::npos) << llm_health;
  EXPECT_EQ(h.services().llm->Health().state, "closed");

  auto f = h.pipeline().WaitFor(submitted->id, std::chrono::seconds(30));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->status, "failed");
  EXPECT_EQ(f->reason, "timeout");
  json ended;
  for (const auto& e : h.Events(f->id))
    if (e.type == "feature.status" && e.data.value("to", "") == "failed") ended = e.data;
  const std::string message = ended.value("message", "");
  EXPECT_EQ(message.rfind("anthropic failing for ", 0), 0u) << ended.dump();
  EXPECT_NE(message.find("anthropic server error (HTTP 503): overloaded"), std::string::npos)
      << message;
  EXPECT_NE(message.find("gave up at limits.feature_timeout (2 s)"), std::string::npos) << message;
  EXPECT_EQ(message.find("raise limits.feature_timeout"), std::string::npos) << message;
  EXPECT_NE(ended.value("hint", "").find("status page"), std::string::npos) << ended.dump();
}

// One shared pause after a 429 is one event on the feature, with the real wait.
TEST(ProviderOutage, ARateLimitPauseIsOneEventWithItsWait) {
  PipelineHarness h(Wire::kOpenAi);
  h.config().llm.max_retries = 2;
  std::atomic<int> requests{0};
  h.fake().SetResponder([&requests](const RecordedRequest& req) -> std::optional<FakeReply> {
    if (++requests == 1)
      return FakeReply::Status(429, R"({"error":{"message":"slow down"}})", {{"retry-after", "1"}});
    if (AgentRoleOf(req) == "planner") {
      json task = {{"id", "t1"},      {"title", "Write the file"},     {"description", "Write it."},
                   {"role", "coder"}, {"dependencies", json::array()}, {"files", json::array()}};
      return FakeReply::Tools({Call("submit_plan", {{"tasks", json::array({task})}})});
    }
    if (AgentRoleOf(req) == "coder") {
      if (AssistantTurns(req) == 0)
        return FakeReply::Tools({Call("write_file", {{"path", "out.txt"}, {"content", "ok\n"}})});
      return FakeReply::Tools({Call("finish", {{"summary", "wrote out.txt"}})});
    }
    return FakeReply::Tools(
        {Call("submit_review", {{"verdict", "approve"}, {"comments", {"ok"}}})});
  });
  ASSERT_TRUE(h.Start().ok());
  auto submitted = h.pipeline().Submit(PipelineHarness::Request("Limited", {"test -f out.txt"}));
  ASSERT_TRUE(submitted.ok());
  auto f = h.pipeline().WaitFor(submitted->id, std::chrono::seconds(60));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->status, "completed") << f->reason;
  int pauses = 0;
  for (const auto& e : h.Events(f->id)) {
    if (e.type != "llm.rate_limited") continue;
    ++pauses;
    EXPECT_EQ(e.data.value("provider", ""), "openai");
    EXPECT_EQ(e.data.value("wait_ms", int64_t{0}), 1000) << e.data.dump();
    EXPECT_NE(e.data.value("error", "").find("HTTP 429"), std::string::npos) << e.data.dump();
  }
  EXPECT_EQ(pauses, 1);
}

// `run` against a provider nobody listens for: the progress shows the circuit
// opening and what to check meanwhile, the end names the provider, the address and what to check;
// the API's `ended` and `feature status` say the same afterwards.
TEST(ProviderOutage, AnUnreachableProviderIsNamedByRunTheApiAndFeatureStatus) {
  TempDir dir;
  const int dead_port = FreePort();  // nothing listens there
  const std::string url = "http://127.0.0.1:" + std::to_string(dead_port);
  std::map<std::string, std::string> env = {
      {"AF_DATA_DIR", "\x01unset"},
      {"DATABASE_URL", "\x01unset"},
      {"REDIS_URL", "\x01unset"},
      {"AF_LOG", "\x01unset"},
      {"AF_HOST", "\x01unset"},
      {"AF_API_KEY", "\x01unset"},
      {"OPENAI_API_KEY", "\x01unset"},
      {"AF_LLM_PROVIDER", "anthropic"},
      {"AF_LLM_MODEL", "claude-sonnet-4-5"},
      {"ANTHROPIC_API_KEY", "sk-ant-test-outage-0123456789abcdef"},
      {"ANTHROPIC_BASE_URL", url},
      {"AF_LLM_MAX_RETRIES", "0"},
      {"AF_LLM_CIRCUIT_FAILURES", "2"},
      {"AF_LLM_CIRCUIT_COOLDOWN", "1"},
      {"AF_LIMITS_FEATURE_TIMEOUT", "4"}};
  auto run = RunCommand(
      {BinaryPath(), "run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md"},
      env, dir.path().string());
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  // Live: the failed calls and the circuit, not just "== planning".
  EXPECT_NE(run.out.find("model call failed, will retry: cannot connect to " + url),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("! anthropic circuit open after 2 failed calls"), std::string::npos)
      << run.out;
  // ... and, once, what to do while the feature waits.
  EXPECT_EQ(Count(run.out, "     check ANTHROPIC_BASE_URL"), 1u) << run.out;
  EXPECT_NE(run.out.find("waits for it up to limits.feature_timeout (4 s), or press Ctrl-C"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("failed (timeout)"), std::string::npos) << run.out;
  // The end: the provider, what it did, the address; what to check.
  const std::string want = "anthropic unreachable for ";
  EXPECT_NE(run.err.find("error: " + want), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("cannot connect to " + url + "/v1/messages"), std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("hint: check ANTHROPIC_BASE_URL"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("raise limits.feature_timeout"), std::string::npos) << run.err;
  EXPECT_EQ(Count(run.out + run.err, "sk-ant-test-outage"), 0u);
  const std::string first = run.out.substr(0, run.out.find('\n'));
  ASSERT_EQ(first.rfind("feature ", 0), 0u) << run.out;
  const std::string id = first.substr(8, first.find(':') - 8);

  // Afterwards, from a server on the same data directory.
  const int port = FreePort();
  auto serve_env = env;
  serve_env["AF_PORT"] = std::to_string(port);
  ChildProcess server({BinaryPath(), "serve"}, serve_env, dir.path().string());
  ASSERT_TRUE(WaitFor([&] {
    auto r = HttpCall(port, "GET", "/health/live");
    return (r.ok() && r->status == 200) || !server.Running();
  }));
  ASSERT_TRUE(server.Running()) << server.Err();
  HttpCallOptions auth;
  std::string key = ReadFile(dir.path() / "data" / "admin.key");  // serve made it
  key = key.substr(0, key.find_last_not_of("\n \t") + 1);
  auth.headers["Authorization"] = "Bearer " + key;
  auto got = HttpCall(port, "GET", "/api/v1/features/" + id, auth);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->status, 200) << got->body;
  json ended = json::parse(got->body)["ended"];
  EXPECT_EQ(ended.value("message", "").rfind(want, 0), 0u) << ended.dump();
  EXPECT_NE(ended.value("hint", "").find("ANTHROPIC_BASE_URL"), std::string::npos) << ended.dump();

  auto status = RunCommand({BinaryPath(), "feature", "status", id, "--server",
                            "http://127.0.0.1:" + std::to_string(port)},
                           serve_env, dir.path().string());
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("reason: timeout"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("error: " + want), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("hint: check ANTHROPIC_BASE_URL"), std::string::npos) << status.out;
}

}  // namespace
}  // namespace af::testing
