// The pipeline through a provider outage: the circuit opens, the agent waits
// for it in state "degraded" instead of failing the feature, and the feature
// completes once the provider answers again. Time is a fake clock that moves
// when the client sleeps, so the 30 s cooldowns take no real time.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "af/agents/agent_loop.h"
#include "af/agents/budget.h"
#include "af/agents/pipeline.h"
#include "af/store/store.h"
#include "support/fake_clock.h"
#include "support/pipeline_harness.h"

namespace af {
namespace {

using json = nlohmann::json;
using testing::Call;
using testing::FakeClock;
using testing::FakeReply;
using testing::PipelineHarness;
using testing::RecordedRequest;
using testing::Wire;

class PipelineCircuit : public ::testing::TestWithParam<Wire> {
 protected:
  PipelineCircuit() : h_(GetParam()) {}
  // An agent may still sleep on the manual clock: let it run to the stop.
  ~PipelineCircuit() override {
    manual_.SetAutoAdvance(true);
    h_.Stop();
  }

  // Every event of the store (agent heartbeats have no feature).
  std::vector<Event> AllEvents() {
    std::vector<Event> out;
    EXPECT_TRUE(ForEachEvent(h_.store(), "", [&](const Event& e) { out.push_back(e); }).ok());
    return out;
  }

  // Declared before the harness: they outlive the client that reads them.
  FakeClock clock_;                           // auto-advance
  FakeClock manual_{/*auto_advance=*/false};  // moves only when told
  PipelineHarness h_;
};

// A scripted model for one task: plan it, write the file, approve.
std::optional<FakeReply> OneTaskModel(const RecordedRequest& req) {
  const std::string role = testing::AgentRoleOf(req);
  if (role == "planner") {
    json task = {{"id", "t1"},      {"title", "Write the file"},     {"description", "Write it."},
                 {"role", "coder"}, {"dependencies", json::array()}, {"files", json::array()}};
    return FakeReply::Tools({Call("submit_plan", {{"tasks", json::array({task})}})});
  }
  if (role == "coder") {
    if (testing::AssistantTurns(req) == 0) {
      return FakeReply::Tools({Call("write_file", {{"path", "out.txt"}, {"content", "ok\n"}})});
    }
    return FakeReply::Tools({Call("finish", {{"summary", "wrote out.txt"}})});
  }
  if (role == "reviewer") {
    return FakeReply::Tools(
        {Call("submit_review", {{"verdict", "approve"}, {"comments", {"file is there"}}})});
  }
  return std::nullopt;
}

// The one-task model, after failing `outage` requests with 500.
void InstallFlakyModel(PipelineHarness& h, int outage, std::atomic<int>* requests) {
  h.fake().SetResponder([outage, requests](const RecordedRequest& req) -> std::optional<FakeReply> {
    if (++*requests <= outage) return FakeReply::Status(500, R"({"error":{"message":"down"}})");
    return OneTaskModel(req);
  });
}

TEST_P(PipelineCircuit, FeatureSurvivesAnOutageWhileTheAgentWaitsDegraded) {
  h_.config().llm.circuit_failures = 2;
  h_.config().llm.circuit_cooldown = 30;
  h_.AdjustLlmOptions([this](LlmOptions& o) {
    o.clock = clock_.clock();
    o.sleep = clock_.sleeper();
  });
  std::atomic<int> requests{0};
  // Two failures open the circuit; the first probe fails too (re-opens it);
  // the second probe succeeds.
  InstallFlakyModel(h_, 3, &requests);
  ASSERT_TRUE(h_.Start().ok());
  auto submitted = h_.pipeline().Submit(PipelineHarness::Request("Outage", {"test -f out.txt"}));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  auto f = h_.pipeline().WaitFor(submitted->id, std::chrono::seconds(60));
  ASSERT_TRUE(f.ok());
  std::string why;
  for (const auto& e : h_.Events(f->id))
    if (e.type == "error" || e.type == "feature.status") why += e.type + " " + e.data.dump() + "\n";
  ASSERT_EQ(f->status, "completed") << f->reason << "\n" << why;

  // The planner showed "degraded" while it waited, then went on.
  std::vector<std::string> planner_states;
  for (const auto& e : AllEvents())
    if (e.type == "agent.heartbeat" && e.agent == "planner-1")
      planner_states.push_back(e.data.value("state", ""));
  auto degraded = std::find(planner_states.begin(), planner_states.end(), "degraded");
  ASSERT_NE(degraded, planner_states.end()) << ::testing::PrintToString(planner_states);
  EXPECT_NE(std::find(degraded, planner_states.end(), "busy"), planner_states.end())
      << "not busy again after the outage: " << ::testing::PrintToString(planner_states);

  // One llm.circuit event per opening, saying until when, and one when the
  // provider answered again (what `run` shows live).
  const std::string provider = testing::WireName(GetParam());
  std::vector<std::string> circuit_states;
  for (const auto& e : h_.Events(f->id)) {
    if (e.type != "llm.circuit") continue;
    circuit_states.push_back(e.data.value("state", ""));
    EXPECT_EQ(e.agent, "planner-1");
    EXPECT_EQ(e.data.value("provider", ""), provider);
    if (e.data.value("state", "") == "open")
      EXPECT_GT(e.data.value("next_attempt_ms", int64_t{0}), 0);
  }
  EXPECT_EQ(circuit_states, (std::vector<std::string>{"open", "open", "closed"}));

  // The waits were the cooldowns, on the fake clock: 2 x 30 s, nothing sent
  // meanwhile (3 failed requests, then planner, coder x2, reviewer).
  int64_t waited_ms = 0;
  for (const auto& w : clock_.waits()) waited_ms += w.duration.count();
  EXPECT_EQ(waited_ms, 60000);
  EXPECT_EQ(requests.load(), 3 + 4);
  EXPECT_EQ(h_.services().llm->Health().state, "closed");
  // Only calls that reached the provider count (toward limits.max_steps too):
  // none an open circuit refused.
  auto usage = h_.store().FeatureUsage(f->id);
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->calls, requests.load());
}

TEST_P(PipelineCircuit, CancelEndsTheWaitForAnOpenCircuit) {
  h_.config().llm.circuit_failures = 1;
  h_.config().llm.circuit_cooldown = 3600;
  // A clock that only moves when told: the agent waits for the circuit until
  // the test has cancelled the feature.
  h_.AdjustLlmOptions([this](LlmOptions& o) {
    o.clock = manual_.clock();
    o.sleep = manual_.sleeper();
  });
  std::atomic<int> requests{0};
  InstallFlakyModel(h_, 1000, &requests);
  ASSERT_TRUE(h_.Start().ok());
  auto submitted = h_.pipeline().Submit(PipelineHarness::Request("Never up"));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  // The planner waits for the circuit.
  ASSERT_TRUE(manual_.WaitForSleepers(1));
  EXPECT_EQ(requests.load(), 1);
  ASSERT_TRUE(h_.pipeline().Cancel(submitted->id).ok());
  // Each sleep is at most 1 s of fake time: advancing wakes the agent, which
  // then sees the cancellation.
  manual_.Advance(std::chrono::seconds(1));
  auto f = h_.pipeline().WaitFor(submitted->id, std::chrono::seconds(30));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->status, "cancelled");
  ASSERT_TRUE(testing::WaitFor([&] {
    auto a = h_.store().GetAgent("planner-1");
    return a.ok() && a->state == "idle";
  }));
  EXPECT_EQ(requests.load(), 1);
  h_.Stop();
}

// agents.<role>.fallback_model: while the primary model's circuit is open the
// roles' calls go to the fallback (its own client and circuit), which the
// events name, and its cost comes from the configured price table.
TEST_P(PipelineCircuit, RolesUseTheirFallbackModelWhileTheCircuitIsOpen) {
  h_.config().llm.circuit_failures = 1;
  h_.config().llm.circuit_cooldown = 3600;
  h_.config().llm.prices = {"backup-model=1/2"};
  for (const char* role : {"planner", "coder", "reviewer"})
    h_.config().agents[role].fallback_model = "backup-model";
  // The fake clock moves only when a client sleeps: nothing does, so the
  // primary stays open for the whole feature.
  h_.AdjustLlmOptions([this](LlmOptions& o) {
    o.clock = manual_.clock();
    o.sleep = manual_.sleeper();
  });
  std::atomic<int> primary{0}, backup{0};
  h_.fake().SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    if (req.body.value("model", "") != "backup-model") {
      ++primary;
      return FakeReply::Status(503, R"({"error":{"message":"overloaded"}})");
    }
    ++backup;
    return OneTaskModel(req);
  });
  ASSERT_TRUE(h_.Start().ok());
  auto submitted = h_.pipeline().Submit(PipelineHarness::Request("Fallback", {"test -f out.txt"}));
  ASSERT_TRUE(submitted.ok()) << submitted.status().ToString();
  auto f = h_.pipeline().WaitFor(submitted->id, std::chrono::seconds(60));
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->status, "completed") << f->reason;

  EXPECT_EQ(primary.load(), 1) << "one failure opened the circuit; no call waited for it";
  EXPECT_EQ(backup.load(), 4);  // planner, coder x2, reviewer
  const std::string provider = testing::WireName(GetParam());
  std::vector<std::string> fallback_roles;
  double event_cost = 0;
  for (const auto& e : h_.Events(f->id)) {
    if (e.type == "llm.fallback") {
      fallback_roles.push_back(e.data.value("role", ""));
      EXPECT_EQ(e.data.value("provider", ""), provider);
      EXPECT_EQ(e.data.value("fallback_provider", ""), provider);
      EXPECT_EQ(e.data.value("fallback_model", ""), "backup-model");
      EXPECT_NE(e.data.value("model", ""), "backup-model");
      EXPECT_NE(e.data.value("reason", "").find("503"), std::string::npos) << e.data.dump();
    }
    if (e.type == "llm.call") {
      EXPECT_EQ(e.data.value("model", ""), "backup-model");
      const double in = e.data.value("input_tokens", 0.0), out = e.data.value("output_tokens", 0.0);
      EXPECT_DOUBLE_EQ(e.data.value("cost_usd", -1.0), (in * 1 + out * 2) / 1e6);
      event_cost += e.data.value("cost_usd", 0.0);
    }
  }
  // Each agent announces the switch once per opening of the circuit.
  std::sort(fallback_roles.begin(), fallback_roles.end());
  EXPECT_EQ(fallback_roles, (std::vector<std::string>{"coder", "planner", "reviewer"}));
  EXPECT_EQ(h_.services().llm->Health().state, "open");

  // The recorded usage, by model, carries the fallback's calls and cost.
  auto rows = h_.store().UsageBreakdown({f->id, 0});
  ASSERT_TRUE(rows.ok());
  double backup_cost = 0;
  int64_t backup_calls = 0;
  for (const auto& r : *rows) {
    if (r.model != "backup-model") continue;
    backup_calls += r.totals.calls;
    backup_cost += r.totals.cost_usd;
  }
  EXPECT_EQ(backup_calls, 4);
  EXPECT_GT(backup_cost, 0);
  EXPECT_NEAR(backup_cost, event_cost, 1e-12);
}

// A step that the fallback model answered before a crash is replayed on
// resume, whichever way the circuit stands now: no answered call is paid for
// twice.
TEST(CallModelFallback, TheFallbacksRecordedAnswerIsReplayedNotPaidAgain) {
  testing::TempDir dir;
  StoreOptions so;
  so.url = "sqlite:" + (dir.path() / "af.db").string();
  auto store = Store::Open(so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  testing::FakeLlmServer fake;
  Config cfg;
  cfg.llm.provider = "openai";
  cfg.llm.model = "primary-model";
  LlmOptions o;
  o.provider = "openai";
  o.base_url = fake.base_url() + "/v1";
  o.api_key = "sk-test";
  o.max_retries = 0;
  auto primary = LlmClient::Create(o);
  auto backup = LlmClient::Create(o);
  ASSERT_TRUE(primary.ok() && backup.ok());
  BudgetLedger budget(store->get(), &cfg);
  const std::map<std::string, LlmFallback> fallbacks = {{"coder", {backup->get(), "backup-model"}}};
  AgentEnv env;
  env.store = store->get();
  env.llm = primary->get();
  env.fallbacks = &fallbacks;
  env.config = &cfg;
  env.budget = &budget;

  LlmRequest req;
  req.model = "primary-model";
  req.agent_role = "coder";
  req.feature_id = "f-1";
  req.messages.push_back(Message::User("write it"));
  LlmRequest alt = req;
  alt.model = "backup-model";
  LlmResponse answered;
  answered.text = "answered by the fallback";
  answered.model = "backup-model";
  answered.provider = "openai";
  LlmCall recorded;
  recorded.feature_id = "f-1";
  recorded.role = "coder";
  recorded.provider = "openai";
  recorded.model = "backup-model";
  recorded.request_hash = RequestHash(alt);
  recorded.response = ResponseToJson(answered);
  ASSERT_TRUE((*store)->RecordLlmCall(recorded).ok());

  auto r = CallModel(env, req, "coder-1");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "answered by the fallback");
  EXPECT_EQ(fake.request_count(), 0u);
  std::vector<Event> events;
  ASSERT_TRUE(ForEachEvent(**store, "f-1", [&](const Event& e) { events.push_back(e); }).ok());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "llm.call");
  EXPECT_TRUE(events[0].data.value("replayed", false));
  EXPECT_EQ(events[0].data.value("model", ""), "backup-model");
}

INSTANTIATE_TEST_SUITE_P(Wires, PipelineCircuit, ::testing::Values(Wire::kOpenAi, Wire::kAnthropic),
                         [](const ::testing::TestParamInfo<Wire>& p) {
                           return testing::WireName(p.param);
                         });

}  // namespace
}  // namespace af
