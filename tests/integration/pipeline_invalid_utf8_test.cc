// Bytes that are not UTF-8 (a provider's garbage reply, a command's binary
// output) reach JSON that is stored and sent to the model. nlohmann::json's
// dump() throws type_error 316 on them by default; thrown from an agent thread
// that terminates the whole process (run or serve). These tests fail by
// crashing the test binary without the fix.
#include <gtest/gtest.h>

#include "af/agents/pipeline.h"
#include "support/pipeline_harness.h"

namespace af {
namespace {

using json = nlohmann::json;
using testing::Call;
using testing::FakeReply;
using testing::PipelineHarness;
using testing::RecordedRequest;
using testing::Wire;

constexpr std::chrono::seconds kWait{60};

class PipelineInvalidUtf8 : public ::testing::TestWithParam<Wire> {
 protected:
  PipelineInvalidUtf8() : h_(GetParam()) {}
  PipelineHarness h_;
};

// A provider that answers 200 with bytes that are neither JSON nor UTF-8: the
// feature fails with the "malformed JSON" error; the process survives.
TEST_P(PipelineInvalidUtf8, ProviderGarbageFailsTheFeatureWithoutCrashing) {
  h_.fake().SetResponder([](const RecordedRequest&) -> std::optional<FakeReply> {
    return FakeReply::Status(200, std::string("\xff\xfe not json \xc3"),
                             {{"content-type", "application/json"}});
  });
  ASSERT_TRUE(h_.Start().ok());
  auto f = h_.pipeline().Submit(PipelineHarness::Request("Garbage provider", {"true"}));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto done = h_.pipeline().WaitFor(f->id, kWait);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->status, "failed");
  bool named = false;
  int errors = 0;
  for (const auto& e : h_.Events(f->id)) {
    if (e.type != "error") continue;
    ++errors;
    if (e.data.value("message", "").find("malformed JSON") != std::string::npos) named = true;
  }
  EXPECT_TRUE(named) << "no error event names the malformed reply";
  EXPECT_EQ(errors, 1) << "one failure, one error event";
}

// A command whose output is not UTF-8 (here Latin-1 "café"): the tool result
// reaches the model (bad bytes replaced) and the feature completes.
TEST_P(PipelineInvalidUtf8, NonUtf8CommandOutputReachesTheModel) {
  h_.fake().SetResponder([](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    if (role == "planner") {
      json task = {{"id", "t1"},      {"title", "Print bytes"},        {"description", "Run it."},
                   {"role", "coder"}, {"dependencies", json::array()}, {"files", json::array()}};
      return FakeReply::Tools({Call("submit_plan", {{"tasks", json::array({task})}})});
    }
    if (role == "coder") {
      switch (testing::AssistantTurns(req)) {
        case 0:
          return FakeReply::Tools({Call("run_command", {{"command", "printf 'caf\\351\\n'"}})});
        case 1:
          return FakeReply::Tools({Call("write_file", {{"path", "out.txt"}, {"content", "x\n"}})});
        default:
          return FakeReply::Tools({Call("finish", {{"summary", "printed"}})});
      }
    }
    if (role == "reviewer")
      return FakeReply::Tools(
          {Call("submit_review", {{"verdict", "approve"}, {"comments", {"ok"}}})});
    return std::nullopt;
  });
  ASSERT_TRUE(h_.Start().ok());
  auto f =
      h_.pipeline().Submit(PipelineHarness::Request("Latin-1 output", {"printf 'caf\\351\\n'"}));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto done = h_.pipeline().WaitFor(f->id, kWait);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->status, "completed") << done->reason;
  bool seen = false;
  for (const auto& r : h_.fake().requests())
    for (const auto& t : testing::ToolResults(r))
      if (t.content.find("caf") != std::string::npos) seen = true;
  EXPECT_TRUE(seen) << "the command output never reached the model";
}

INSTANTIATE_TEST_SUITE_P(Wires, PipelineInvalidUtf8,
                         ::testing::Values(Wire::kOpenAi, Wire::kAnthropic),
                         [](const auto& info) { return testing::WireName(info.param); });

}  // namespace
}  // namespace af
