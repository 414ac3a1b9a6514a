// The composition root: a configuration becomes a store, a bus and an LLM client
// whose every call lands in llm_calls.
#include "af/app/services.h"

#include <gtest/gtest.h>

#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af {
namespace {

using testing::FakeLlmServer;
using testing::FakeReply;

Config ConfigFor(const testing::TempDir& dir, const std::string& provider, const std::string& url) {
  Config c;
  c.data_dir = dir.path().string();
  c.llm.provider = provider;
  c.llm.model = "claude-sonnet-4-5";
  c.llm.max_retries = 0;
  c.anthropic.api_key = "sk-ant-test-0123456789abcdef-KEY1";
  c.anthropic.base_url = url;
  return c;
}

LlmRequest Hello() {
  LlmRequest req;
  req.system = "You are terse.";
  req.messages = {Message::User("hello")};
  req.agent_role = "planner";
  req.feature_id = "f-test";
  req.task_id = "t-1";
  return req;
}

TEST(ServicesTest, EveryLlmCallIsRecordedWithUsageAndCost) {
  testing::TempDir dir;
  FakeLlmServer fake;
  fake.Push(FakeReply::Text("hi"));
  fake.Push(FakeReply::Status(
      401,
      R"({"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}})"));
  auto services = Services::Open(ConfigFor(dir, "anthropic", fake.base_url()));
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  Services& s = **services;
  ASSERT_NE(s.llm, nullptr) << s.llm_status.ToString();

  auto ok = s.llm->Complete(Hello());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  auto bad = s.llm->Complete(Hello());
  ASSERT_FALSE(bad.ok());

  auto calls = s.store->ListLlmCalls("f-test");
  ASSERT_TRUE(calls.ok());
  ASSERT_EQ(calls->size(), 2u);
  const LlmCall& first = (*calls)[0];
  EXPECT_EQ(first.status, "ok");
  EXPECT_EQ(first.role, "planner");
  EXPECT_EQ(first.task_id, "t-1");
  EXPECT_EQ(first.provider, "anthropic");
  EXPECT_EQ(first.model, "claude-sonnet-4-5");
  EXPECT_EQ(first.input_tokens, 11);
  EXPECT_EQ(first.output_tokens, 7);
  EXPECT_GT(first.cost_usd, 0.0);
  EXPECT_EQ(first.request_hash, RequestHash(Hello()));
  const LlmCall& second = (*calls)[1];
  EXPECT_EQ(second.status, "unauthenticated");
  EXPECT_NE(second.error.find("Invalid API key"), std::string::npos) << second.error;
  EXPECT_EQ(second.error.find("0123456789abcdef"), std::string::npos);

  auto usage = s.store->FeatureUsage("f-test");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->calls, 2);
  EXPECT_EQ(usage->input_tokens, 11);

  HealthInputs h = s.Health();
  EXPECT_EQ(h.database, "healthy");
  EXPECT_EQ(h.redis, "disabled");
  EXPECT_EQ(h.llm, "anthropic");
}

// A call an open circuit refuses never reaches the provider: it is not
// recorded, so it neither costs nor counts toward limits.max_steps.
TEST(ServicesTest, CallsRefusedByAnOpenCircuitAreNotRecorded) {
  testing::TempDir dir;
  FakeLlmServer fake;
  fake.Push(
      FakeReply::Status(500, R"({"type":"error","error":{"type":"api_error","message":"boom"}})"));
  Config c = ConfigFor(dir, "anthropic", fake.base_url());
  c.llm.circuit_failures = 1;
  c.llm.circuit_cooldown = 3600;
  auto services = Services::Open(c);
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  Services& s = **services;
  ASSERT_NE(s.llm, nullptr) << s.llm_status.ToString();

  ASSERT_FALSE(s.llm->Complete(Hello()).ok());  // reaches the server, opens the circuit
  auto refused = s.llm->Complete(Hello());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("circuit open"), std::string::npos)
      << refused.status().ToString();
  EXPECT_EQ(fake.request_count(), 1u);
  auto usage = s.store->FeatureUsage("f-test");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->calls, 1);
}

TEST(ServicesTest, MissingKeyLeavesTheLlmOutWithTheReason) {
  testing::TempDir dir;
  Config c = ConfigFor(dir, "anthropic", "");
  c.anthropic.api_key.clear();
  auto services = Services::Open(c);
  ASSERT_TRUE(services.ok());
  EXPECT_EQ((*services)->llm, nullptr);
  EXPECT_EQ((*services)->llm_status.message(), "ANTHROPIC_API_KEY not set");
  EXPECT_EQ((*services)->Health().llm, "unhealthy: ANTHROPIC_API_KEY not set");
}

TEST(ServicesTest, ReplayIsTheOfflineDefault) {
  testing::TempDir dir;
  Config c;
  c.data_dir = dir.path().string();
  auto services = Services::Open(c);
  ASSERT_TRUE(services.ok()) << services.status().ToString();
  ASSERT_NE((*services)->llm, nullptr) << (*services)->llm_status.ToString();
  EXPECT_EQ((*services)->llm->provider(), "replay");
  // A request the recordings do not cover says how to configure a real model.
  auto r = (*services)->llm->Complete(Hello());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().hint().find("AF_LLM_PROVIDER=anthropic"), std::string::npos);
}

}  // namespace
}  // namespace af
