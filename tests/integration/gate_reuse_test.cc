// The validation gates run once per tree: a coder's task checks (at finish)
// that passed on exactly the tree its commit leaves are the tester's result
// too. Counted at the sandbox: every command the pipeline runs goes through
// it.

#include <gtest/gtest.h>

#include <map>
#include <mutex>

#include "af/agents/pipeline.h"
#include "af/store/store.h"
#include "support/pipeline_harness.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::Call;
using testing::FakeReply;
using testing::PipelineHarness;
using testing::RecordedRequest;

// Counts each command, then runs it in the real sandbox.
class CountingSandbox : public Sandbox {
 public:
  explicit CountingSandbox(std::unique_ptr<Sandbox> inner)
      : Sandbox(inner->options(), std::string(inner->kind())), inner_(std::move(inner)) {}

  Result<RunResult> Run(const std::string& command, const fs::path& workdir,
                        const std::function<bool()>& cancelled) override {
    {
      std::lock_guard lock(mu_);
      ++runs_[command];
    }
    if (stopped()) return Cancelled("the sandbox was stopped");
    return inner_->Run(command, workdir, cancelled);
  }

  int Runs(const std::string& command) {
    std::lock_guard lock(mu_);
    return runs_[command];
  }

 private:
  std::unique_ptr<Sandbox> inner_;
  std::mutex mu_;
  std::map<std::string, int> runs_;
};

class GateReuseTest : public ::testing::Test {
 protected:
  GateReuseTest() : h_(testing::Wire::kOpenAi) {}

  // The minimal feature: a plan of one task writing `file` with `content`,
  // then finishing; the reviewer approves. Returns the ended feature.
  Feature RunOneTask(const std::string& file, const std::string& content, const std::string& gate) {
    h_.fake().SetResponder([=](const RecordedRequest& req) -> std::optional<FakeReply> {
      const std::string role = testing::AgentRoleOf(req);
      if (role == "planner") {
        json task = {{"id", "t1"},      {"title", "Write the file"},     {"description", "Do it."},
                     {"role", "coder"}, {"dependencies", json::array()}, {"files", {file}}};
        return FakeReply::Tools({Call("submit_plan", {{"tasks", json::array({task})}})});
      }
      if (role == "coder") {
        if (testing::AssistantTurns(req) == 0)
          return FakeReply::Tools({Call("write_file", {{"path", file}, {"content", content}})});
        return FakeReply::Tools({Call("finish", {{"summary", "wrote " + file}})});
      }
      if (role == "reviewer") {
        return FakeReply::Tools(
            {Call("submit_review", {{"verdict", "approve"}, {"comments", {"fine"}}})});
      }
      return std::nullopt;
    });
    EXPECT_TRUE(h_.OpenServices().ok());
    auto inner = Sandbox::Create();
    EXPECT_TRUE(inner.ok()) << inner.status().ToString();
    auto counting = std::make_unique<CountingSandbox>(std::move(inner).value());
    sandbox_ = counting.get();
    PipelineOptions options;
    options.sandbox = std::move(counting);
    auto pipeline = Pipeline::Start(h_.services().ForPipeline(), std::move(options));
    EXPECT_TRUE(pipeline.ok()) << pipeline.status().ToString();
    pipeline_ = std::move(pipeline).value();
    auto f = pipeline_->Submit(PipelineHarness::Request("Gate once", {gate}));
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    auto ended = pipeline_->WaitFor(f->id, std::chrono::seconds(60));
    EXPECT_TRUE(ended.ok()) << ended.status().ToString();
    pipeline_->Stop();
    return *ended;
  }

  std::vector<json> GateResults(const std::string& feature_id) {
    std::vector<json> out;
    for (const auto& e : h_.Events(feature_id))
      if (e.type == "gate.result") out.push_back(e.data);
    return out;
  }

  PipelineHarness h_;
  CountingSandbox* sandbox_ = nullptr;
  std::unique_ptr<Pipeline> pipeline_;
};

// The coder's finish runs the gate on its (uncommitted) work; its commit
// leaves the branch with that very tree, so the tester takes the result.
TEST_F(GateReuseTest, MinimalFeatureRunsItsGateOnce) {
  const std::string gate = "test \"$(cat out.txt)\" = done";
  Feature f = RunOneTask("out.txt", "done\n", gate);
  ASSERT_EQ(f.status, "completed") << f.reason;
  EXPECT_EQ(sandbox_->Runs(gate), 1) << "the gate ran again on an identical tree";

  auto results = GateResults(f.id);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].value("passed", false)) << results[0].dump();
  EXPECT_TRUE(results[0].value("reused", false)) << results[0].dump();
  EXPECT_EQ(results[0].value("from_task", ""), f.id + "-t1");
  EXPECT_EQ(results[0].value("exit_code", -1), 0);

  // Kept with the task (it survives a restart): the tree the gate ran on,
  // which is the branch's.
  auto task = h_.store().GetTask(f.id + "-t1");
  ASSERT_TRUE(task.ok());
  const json checks = task->result.value("checks", json());
  ASSERT_TRUE(checks.is_object()) << task->result.dump();
  auto branch_tree = testing::RunCommand(
      {"/usr/bin/git", "-C", h_.WorkspaceRoot().string(), "rev-parse", "af/" + f.id + "^{tree}"});
  EXPECT_EQ(checks.value("tree", "") + "\n", branch_tree.out);
}

// A gate that rewrites the task's file (a formatter) passes at finish on the
// tree before it ran; the commit then holds the rewritten file, another
// tree, so the tester runs the gate itself.
TEST_F(GateReuseTest, AnotherTreeRunsTheGateAgain) {
  const std::string gate = "sed -i s/draft/final/ out.txt && grep -q final out.txt";
  Feature f = RunOneTask("out.txt", "draft\n", gate);
  ASSERT_EQ(f.status, "completed") << f.reason;
  EXPECT_EQ(sandbox_->Runs(gate), 2);
  auto results = GateResults(f.id);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].value("passed", false)) << results[0].dump();
  EXPECT_FALSE(results[0].value("reused", false)) << results[0].dump();
  auto show = testing::RunCommand(
      {"/usr/bin/git", "-C", h_.WorkspaceRoot().string(), "show", "af/" + f.id + ":out.txt"});
  EXPECT_EQ(show.out, "final\n");
}

}  // namespace
}  // namespace af
