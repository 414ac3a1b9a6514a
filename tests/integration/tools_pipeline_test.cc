// The coder's tools inside the whole pipeline, over both wire formats: a
// premature finish is shown its failing gate and the task's diff and is
// fixed in the same task; files a command makes are delivered.

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "af/agents/pipeline.h"
#include "af/store/store.h"
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

FakeReply Tool(const std::string& name, json args) {
  return FakeReply::Tools({Call(name, std::move(args))});
}

class ToolsPipelineTest : public ::testing::TestWithParam<Wire> {
 protected:
  ToolsPipelineTest() : h_(GetParam()) {}

  // Planner: one task. Reviewer: approves. Coder: `coder`.
  Feature Run(const std::vector<std::string>& gates,
              std::function<FakeReply(const RecordedRequest&)> coder) {
    h_.fake().SetResponder(
        [coder = std::move(coder)](const RecordedRequest& req) -> std::optional<FakeReply> {
          const std::string role = testing::AgentRoleOf(req);
          if (role == "planner") {
            json task = {{"id", "t1"},
                         {"title", "Make the answer"},
                         {"description", "x"},
                         {"role", "coder"},
                         {"dependencies", json::array()}};
            return Tool("submit_plan", {{"tasks", json::array({task})}});
          }
          if (role == "coder") return coder(req);
          if (role == "reviewer")
            return Tool("submit_review", {{"verdict", "approve"}, {"comments", {"gates pass"}}});
          return std::nullopt;
        });
    Status s = h_.Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    auto f = h_.pipeline().Submit(PipelineHarness::Request("The answer", gates));
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    if (!f.ok()) return {};
    auto done = h_.pipeline().WaitFor(f->id, kWait);
    EXPECT_TRUE(done.ok()) << done.status().ToString();
    return done.ok() ? *done : Feature{};
  }

  PipelineHarness h_;
};

TEST_P(ToolsPipelineTest, APrematureFinishSeesTheFailingGateAndTheDiffAndIsFixed) {
  std::mutex mu;
  std::string refusal;  // what the coder was told after its first finish, guarded by mu
  Feature f =
      Run({"grep -q 42 answer.txt || { echo 'want 42, got:'; cat answer.txt; exit 1; }"},
          [&](const RecordedRequest& req) {
            switch (testing::AssistantTurns(req)) {
              case 0:
                return Tool("write_file", {{"path", "answer.txt"}, {"content", "41\n"}});
              case 1:
                return Tool("finish", {{"summary", "wrote the answer"}});
              case 2: {
                auto latest = testing::LatestToolResults(req);
                std::lock_guard lock(mu);
                if (!latest.empty()) refusal = latest.back().content;
                return Tool("edit_file",
                            {{"path", "answer.txt"}, {"old_text", "41"}, {"new_text", "42"}});
              }
              default:
                return Tool("finish", {{"summary", "fixed the answer"}});
            }
          });
  ASSERT_EQ(f.status, "completed") << f.reason;
  std::lock_guard lock(mu);
  EXPECT_NE(refusal.find("finish refused"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("want 42, got:\n41"), std::string::npos) << refusal;  // the gate's output
  EXPECT_NE(refusal.find("+41"), std::string::npos) << refusal;                // the task's diff
  // Fixed inside the task: no fix task was needed, and one commit holds 42.
  auto tasks = h_.store().ListTasks(f.id);
  ASSERT_TRUE(tasks.ok());
  EXPECT_EQ(tasks->size(), 1u);
  EXPECT_EQ(h_.CommitTaskIds(f.id).size(), 1u);
}

TEST_P(ToolsPipelineTest, FilesACommandCreatesAreDelivered) {
  Feature f = Run({"test \"$(cat gen/answer.txt)\" = 42"}, [](const RecordedRequest& req) {
    if (testing::AssistantTurns(req) == 0)
      return Tool("run_command", {{"command", "mkdir -p gen && echo 42 > gen/answer.txt"}});
    return Tool("finish", {{"summary", "generated the answer"}});
  });
  ASSERT_EQ(f.status, "completed") << f.reason;
  auto tasks = h_.store().ListTasks(f.id);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0].result.value("files", json::array()), json::array({"gen/answer.txt"}));
}

INSTANTIATE_TEST_SUITE_P(Wires, ToolsPipelineTest,
                         ::testing::Values(Wire::kOpenAi, Wire::kAnthropic),
                         [](const auto& info) { return testing::WireName(info.param); });

}  // namespace
}  // namespace af
