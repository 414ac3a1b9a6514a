// What the agents are given to read, through the whole pipeline against the
// fake LLM server over both wire formats: a fix task's context (the failing
// gate's first error and last lines, the feature's files and diff), a
// reviewer's context without build outputs, a coder told which files its
// parallel siblings own, and a conversation summarised by the model once it
// grows above context.preserve_at.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

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

bool Has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

json PlanTask(const std::string& id, const std::string& title, std::vector<std::string> files,
              std::vector<std::string> deps = {}) {
  json t = {{"id", id}, {"title", title}, {"description", "Do " + title + "."}, {"role", "coder"}};
  t["files"] = files;
  t["dependencies"] = deps;
  return t;
}

FakeReply Plan(json tasks) { return FakeReply::Tools({Call("submit_plan", {{"tasks", tasks}})}); }
FakeReply Write(const std::string& path, const std::string& content) {
  return FakeReply::Tools({Call("write_file", {{"path", path}, {"content", content}})});
}
FakeReply Finish() { return FakeReply::Tools({Call("finish", {{"summary", "done"}})}); }
FakeReply Approve() {
  return FakeReply::Tools(
      {Call("submit_review", {{"verdict", "approve"}, {"comments", {"gates pass"}}})});
}

class ContextPipeline : public ::testing::TestWithParam<Wire> {
 protected:
  ContextPipeline() : h_(GetParam()) {}

  Feature Run(const FeatureRequest& request) {
    Status s = h_.Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    auto f = h_.pipeline().Submit(request);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    if (!f.ok()) return {};
    auto done = h_.pipeline().WaitFor(f->id, kWait);
    EXPECT_TRUE(done.ok()) << done.status().ToString();
    return done.ok() ? *done : Feature{};
  }

  std::string Failure(const std::string& feature_id) {
    for (const auto& e : h_.Events(feature_id))
      if (e.type == "feature.status" && e.data.value("to", "") == "failed") return e.data.dump();
    return {};
  }

  PipelineHarness h_;
  std::mutex mu_;
};

// A fix task starts from the failing gate's first error and last lines (not
// only the last 6,000 characters), the files the feature changed and its diff.
TEST_P(ContextPipeline, FixTaskCarriesGateHeadAndTailAndTheFeaturesChange) {
  std::string fix_context;  // guarded by mu_
  h_.fake().SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    const int turn = testing::AssistantTurns(req);
    if (role == "planner") return Plan(json::array({PlanTask("t1", "Write notes", {"notes.txt"})}));
    if (role == "reviewer") return Approve();
    if (role != "coder") return std::nullopt;
    const bool fix = testing::TaskTitleOf(req).rfind("Fix failing validation gates", 0) == 0;
    if (fix && turn == 0) {
      std::lock_guard lock(mu_);
      fix_context = testing::FirstUserText(req);
    }
    if (turn > 0) return Finish();
    return fix ? Write("ok.txt", "ok\n") : Write("notes.txt", "NOTES-CONTENT\n");
  });
  // About 24,000 characters of output: the first error first, noise, a summary last
  // (printf, so the lines to find are not in the gate's text, which the context quotes).
  Feature f = Run(PipelineHarness::Request(
      "Gate head and tail",
      {"test -f ok.txt || (printf 'HEAD%s\\n' -ERROR-LINE; seq 1 5000; printf 'TAIL%s\\n' "
       "-SUMMARY-LINE; exit 1)"}));
  EXPECT_EQ(f.status, "completed") << Failure(f.id);
  std::lock_guard lock(mu_);
  ASSERT_FALSE(fix_context.empty()) << "the fix task never asked the model";
  EXPECT_TRUE(Has(fix_context, "HEAD-ERROR-LINE")) << "the gate's first error was cut off";
  EXPECT_TRUE(Has(fix_context, "TAIL-SUMMARY-LINE"));
  EXPECT_TRUE(Has(fix_context, "Files the feature changed so far:\n- notes.txt\n")) << fix_context;
  EXPECT_TRUE(Has(fix_context, "+NOTES-CONTENT")) << "the feature's diff is missing";
}

// The project's knowledge the agents read is the base commit they work on:
// not a checkout's uncommitted edits, nor its untracked files (local notes,
// configs), which their worktree does not have and the provider must not get.
TEST_P(ContextPipeline, KnowledgeOfTheProjectIsItsCommittedTree) {
  const auto repo = h_.WorkspaceRoot();
  std::filesystem::create_directories(repo);
  auto write = [&](const std::string& rel, const std::string& content) {
    std::ofstream(repo / rel) << content;
  };
  auto git = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/git", "-C", repo.string(), "-c", "user.name=t", "-c",
                               "user.email=t@example.com"});
    return testing::RunCommand(args);
  };
  ASSERT_EQ(git({"init", "-q", "-b", "main"}).exit_code, 0);
  write("greeter.py", "def greet(name):\n    return 'COMMITTED-GREETING'\n");
  ASSERT_EQ(git({"add", "greeter.py"}).exit_code, 0);
  ASSERT_EQ(git({"commit", "-q", "-m", "greeter"}).exit_code, 0);
  write("greeter.py", "def greet(name):\n    return 'COMMITTED-GREETING'\n# UNCOMMITTED-EDIT\n");
  write("notes.txt", "UNTRACKED-NOTES greet greeting\n");
  std::string planner_context;  // guarded by mu_
  h_.fake().SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    if (role == "planner") {
      std::lock_guard lock(mu_);
      if (planner_context.empty()) planner_context = testing::FirstUserText(req);
      return Plan(json::array({PlanTask("t1", "Greet loudly", {"loud.py"})}));
    }
    if (role == "reviewer") return Approve();
    return testing::AssistantTurns(req) == 0 ? Write("loud.py", "x = 1\n") : Finish();
  });
  FeatureRequest request = PipelineHarness::Request("Greet the greeting loudly");
  request.description = "Make greet return the greeting in capitals; keep greeter.py's greet.";
  Feature f = Run(request);
  EXPECT_EQ(f.status, "completed") << Failure(f.id);
  std::lock_guard lock(mu_);
  EXPECT_TRUE(Has(planner_context, "COMMITTED-GREETING")) << planner_context;
  EXPECT_FALSE(Has(planner_context, "UNCOMMITTED-EDIT")) << planner_context;
  EXPECT_FALSE(Has(planner_context, "UNTRACKED-NOTES")) << planner_context;
}

// The reviewer reads the change, not build outputs and caches: neither a
// committed build file in the diff nor what the gates left in the tree.
TEST_P(ContextPipeline, ReviewerSeesNoBuildOutputsOrCaches) {
  std::string review_context;  // guarded by mu_
  h_.fake().SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    const int turn = testing::AssistantTurns(req);
    if (role == "planner")
      return Plan(json::array({PlanTask("t1", "Write the code", {"app.py", "build/gen.o"})}));
    if (role == "reviewer") {
      std::lock_guard lock(mu_);
      if (turn == 0) review_context = testing::FirstUserText(req);
      return Approve();
    }
    if (role != "coder") return std::nullopt;
    if (turn == 0) return Write("app.py", "REAL-CHANGE = 1\n");
    if (turn == 1) return Write("build/gen.o", "GENERATED-OBJECT-BYTES\n");
    return Finish();
  });
  Feature f = Run(PipelineHarness::Request(
      "No build outputs for the reviewer",
      {"mkdir -p __pycache__ && echo x > __pycache__/$(echo junk)-cache.pyc && test -f app.py"}));
  EXPECT_EQ(f.status, "completed") << Failure(f.id);
  std::lock_guard lock(mu_);
  ASSERT_FALSE(review_context.empty());
  EXPECT_TRUE(Has(review_context, "+REAL-CHANGE = 1"));
  EXPECT_FALSE(Has(review_context, "GENERATED-OBJECT-BYTES")) << review_context;
  EXPECT_FALSE(Has(review_context, "junk-cache.pyc")) << review_context;  // left by the gate
  EXPECT_TRUE(Has(review_context, "1 build output or cache file(s) left out of this diff"));
}

// Parallel coders share one worktree: each is told what its siblings own.
TEST_P(ContextPipeline, CoderIsToldWhatItsParallelSiblingsOwn) {
  std::map<std::string, std::string> contexts;  // task title -> first message, guarded by mu_
  h_.config().agents["coder"].replicas = 2;
  h_.fake().SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    const int turn = testing::AssistantTurns(req);
    if (role == "planner") {
      return Plan(
          json::array({PlanTask("a", "Task a", {"a.txt"}), PlanTask("b", "Task b", {"b.txt"}),
                       PlanTask("c", "Task c", {"c.txt"}, {"a"})}));
    }
    if (role == "reviewer") return Approve();
    if (role != "coder") return std::nullopt;
    const std::string title = testing::TaskTitleOf(req);
    if (turn > 0) return Finish();
    {
      std::lock_guard lock(mu_);
      contexts[title] = testing::FirstUserText(req);
    }
    return Write(title.substr(title.size() - 1) + ".txt", "x\n");
  });
  Feature f = Run(PipelineHarness::Request("Siblings", {"test -f a.txt && test -f c.txt"}));
  EXPECT_EQ(f.status, "completed") << Failure(f.id);
  std::lock_guard lock(mu_);
  // a runs beside b (and c, which follows a, is not a's sibling).
  EXPECT_TRUE(Has(contexts["Task a"], "do not edit the files they own:\n- Task b: b.txt\n"))
      << contexts["Task a"];
  EXPECT_FALSE(Has(contexts["Task a"], "- Task c: c.txt"));
  // c follows a, but may run beside b.
  EXPECT_TRUE(Has(contexts["Task c"], "- Task b: b.txt")) << contexts["Task c"];
  EXPECT_FALSE(Has(contexts["Task c"], "- Task a: a.txt"));
}

// Above context.preserve_at an older span is summarised by the model (a call
// of its own, announced by a context.summary event), the summary goes into
// the first message, and it is reused rather than asked for every turn.
TEST_P(ContextPipeline, LongConversationIsSummarisedByTheModel) {
  h_.config().context.window_tokens = 16'000;  // preserve_at 12,000, critical_at 14,400
  int summary_calls = 0;                       // guarded by mu_
  bool coder_saw_summary = false;              // guarded by mu_
  const std::string thinking(3000, 'r');       // ~750 tokens a turn that stubs do not shorten
  h_.fake().SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    const int turn = testing::AssistantTurns(req);
    if (Has(testing::SystemText(req), "You condense the working history")) {
      std::lock_guard lock(mu_);
      ++summary_calls;
      return FakeReply::Text("SUMMARY-OF-EARLIER-TURNS: listed the files " +
                             std::to_string(summary_calls) + " time(s)");
    }
    if (role == "planner") return Plan(json::array({PlanTask("t1", "Write it", {"out.txt"})}));
    if (role == "reviewer") return Approve();
    if (role != "coder") return std::nullopt;
    if (Has(testing::FirstUserText(req), "SUMMARY-OF-EARLIER-TURNS")) {
      std::lock_guard lock(mu_);
      coder_saw_summary = true;
    }
    if (turn < 18) return FakeReply::Tools({Call("list_files", {{"path", "."}})}, thinking);
    if (turn == 18) return Write("out.txt", "ok\n");
    return Finish();
  });
  Feature f = Run(PipelineHarness::Request("Long conversation", {"test -f out.txt"}));
  EXPECT_EQ(f.status, "completed") << Failure(f.id);
  int events = 0;
  for (const auto& e : h_.Events(f.id)) {
    if (e.type != "context.summary") continue;
    ++events;
    EXPECT_TRUE(e.data.value("summarized", false)) << e.data.dump();
    EXPECT_LT(e.data.value("tokens_after", 0), e.data.value("tokens_before", 0));
  }
  std::lock_guard lock(mu_);
  EXPECT_TRUE(coder_saw_summary);
  EXPECT_GE(summary_calls, 1);
  EXPECT_LE(summary_calls, 4) << "a summary should be reused, not asked for every turn";
  EXPECT_EQ(events, summary_calls);
}

INSTANTIATE_TEST_SUITE_P(Wires, ContextPipeline, ::testing::Values(Wire::kOpenAi, Wire::kAnthropic),
                         [](const auto& info) { return testing::WireName(info.param); });

}  // namespace
}  // namespace af
