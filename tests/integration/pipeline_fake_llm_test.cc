// The whole agent pipeline (planner, coders, tester, reviewer, devops and the
// coordinator) against the fake LLM server, over both wire formats. The fake
// model answers by role, task and turn (a responder, since parallel coders
// make the request order nondeterministic); every test checks what the
// pipeline did with those answers: the store's events and tasks, the git
// branch, the files on disk and what was sent back to the model.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "af/agents/pipeline.h"
#include "af/llm/pricing.h"
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
using testing::Wire;

// Upper bound only: WaitFor returns as soon as the feature is terminal.
constexpr std::chrono::seconds kWait{60};

using Handler = std::function<FakeReply(const RecordedRequest&)>;

// What the fake model does for each role. An empty handler (or a request of
// no known role) falls through to the queue, which is empty: HTTP 500.
struct Script {
  Handler planner, coder, reviewer;
};

void Install(PipelineHarness& h, Script s) {
  h.fake().SetResponder([s = std::move(s)](const RecordedRequest& req) -> std::optional<FakeReply> {
    const std::string role = testing::AgentRoleOf(req);
    if (role == "planner" && s.planner) return s.planner(req);
    if (role == "coder" && s.coder) return s.coder(req);
    if (role == "reviewer" && s.reviewer) return s.reviewer(req);
    return std::nullopt;
  });
}

// A task owning "<id>.txt" (tasks that may run in parallel must name their
// files, and no two of them the same one).
json PlanTask(const std::string& id, const std::string& title, std::vector<std::string> deps = {}) {
  return {{"id", id},        {"title", title},       {"description", "Do " + title + "."},
          {"role", "coder"}, {"dependencies", deps}, {"files", {id + ".txt"}}};
}

FakeReply Plan(json tasks) { return FakeReply::Tools({Call("submit_plan", {{"tasks", tasks}})}); }

Handler OneTaskPlanner(const std::string& title = "Write the file") {
  return [title](const RecordedRequest&) { return Plan(json::array({PlanTask("t1", title)})); };
}

FakeReply Review(const std::string& verdict, std::vector<std::string> comments) {
  return FakeReply::Tools(
      {Call("submit_review", {{"verdict", verdict}, {"comments", std::move(comments)}})});
}

Handler Approver() {
  return [](const RecordedRequest&) { return Review("approve", {"gates pass; diff matches"}); };
}

FakeReply Write(const std::string& path, const std::string& content = "ok\n") {
  return FakeReply::Tools({Call("write_file", {{"path", path}, {"content", content}})});
}

FakeReply Finish(const std::string& summary = "done") {
  return FakeReply::Tools({Call("finish", {{"summary", summary}})});
}

// Turn 0 writes `path`, turn 1 finishes.
Handler WriteThenFinish(const std::string& path) {
  return [path](const RecordedRequest& req) {
    return testing::AssistantTurns(req) == 0 ? Write(path) : Finish("wrote " + path);
  };
}

// The plainest feature: one task writes `path` and finishes, the reviewer
// approves.
void InstallOneFileFeature(PipelineHarness& h, const std::string& path = "it.txt") {
  Install(h, Script{OneTaskPlanner(), WriteThenFinish(path), Approver()});
}

// A coder that never finishes: it lists files on every turn, each answer
// `latency` late.
Handler ListForever(std::chrono::milliseconds latency = {}) {
  return [latency](const RecordedRequest&) {
    FakeReply r = FakeReply::Tools({Call("list_files", {{"path", "."}})});
    r.latency = latency;
    return r;
  };
}

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Seq of the first `task.status` event moving `task_id` to `to` (0 = none).
int64_t TaskSeq(const std::vector<Event>& events, const std::string& task_id,
                const std::string& to) {
  for (const auto& e : events)
    if (e.type == "task.status" && e.task_id == task_id && e.data.value("to", "") == to)
      return e.seq;
  return 0;
}

const Event* FeatureStatusEvent(const std::vector<Event>& events, const std::string& to) {
  for (const auto& e : events)
    if (e.type == "feature.status" && e.data.value("to", "") == to) return &e;
  return nullptr;
}

std::string FailureMessage(const std::vector<Event>& events) {
  const Event* e = FeatureStatusEvent(events, "failed");
  return e ? e->data.value("message", "") : "(no failed event)";
}

// The types of the memories the coordinator stored from feature `id`, read
// once one of type `last` is among them (it learns after the end, in order:
// outcome, plan, fixes, review insights).
std::multiset<std::string> LearnedTypes(PipelineHarness& h, const std::string& id,
                                        const std::string& last) {
  std::multiset<std::string> types;
  testing::WaitFor(
      [&] {
        types.clear();
        for (const auto& e : h.Events(id))
          if (e.type == "memory.stored") types.insert(e.data.value("type", ""));
        return types.count(last) > 0;
      },
      kWait);
  return types;
}

std::optional<Task> FindTask(Store& store, const std::string& id) {
  auto t = store.GetTask(id);
  if (!t.ok()) return std::nullopt;
  return *t;
}

class PipelineFakeLlm : public ::testing::TestWithParam<Wire> {
 protected:
  PipelineFakeLlm() : h_(GetParam()) {}

  // Starts the pipeline, submits `request` and waits for the end.
  Feature Run(const FeatureRequest& request) {
    Feature f = Submit(request);
    return Wait(f.id);
  }
  Feature Submit(const FeatureRequest& request) {
    if (!started_) {
      Status s = h_.Start();
      EXPECT_TRUE(s.ok()) << s.ToString();
      started_ = true;
    }
    auto f = h_.pipeline().Submit(request);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? *f : Feature{};
  }
  Feature Wait(const std::string& id) {
    auto f = h_.pipeline().WaitFor(id, kWait);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? *f : Feature{};
  }

  PipelineHarness h_;
  bool started_ = false;
};

// 1. Tasks run in DAG order, independent ones in parallel on three coders,
// and each task lands as exactly one commit carrying its Task-Id.
TEST_P(PipelineFakeLlm, DagOrderAndParallelCoders) {
  h_.config().agents["coder"].replicas = 3;
  std::mutex mu;
  std::map<std::string, std::string> deps_when_d_asked;  // task -> status, guarded by mu
  Script s;
  s.planner = [](const RecordedRequest&) {
    return Plan(json::array({PlanTask("a", "Task a"), PlanTask("b", "Task b"),
                             PlanTask("c", "Task c"), PlanTask("d", "Task d", {"a", "b"})}));
  };
  s.coder = [&](const RecordedRequest& req) {
    const std::string title = testing::TaskTitleOf(req);  // "Task x"
    const std::string letter = title.substr(title.size() - 1);
    const int turn = testing::AssistantTurns(req);
    if (letter == "d" && turn == 0) {
      // What the store says about d's dependencies when d first asks the model.
      auto page = h_.store().ListFeatures({});
      if (page.ok() && page->features.size() == 1) {
        auto tasks = h_.store().ListTasks(page->features[0].id);
        std::lock_guard lock(mu);
        if (tasks.ok())
          for (const auto& t : *tasks) deps_when_d_asked[t.title] = t.status;
      }
    }
    FakeReply r = turn == 0 ? Write(letter + ".txt", letter + "\n") : Finish("wrote " + letter);
    r.latency = std::chrono::milliseconds(1000);
    return r;
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request(
      "Four files", {"test -f a.txt && test -f b.txt && test -f c.txt && test -f d.txt"}));
  ASSERT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));

  auto events = h_.Events(f.id);
  auto id = [&](const std::string& local) { return f.id + "-" + local; };
  int64_t max_start = 0, min_done = INT64_MAX;
  for (const std::string t : {"a", "b", "c"}) {
    int64_t start = TaskSeq(events, id(t), "in_progress"),
            done = TaskSeq(events, id(t), "completed");
    ASSERT_GT(start, 0) << t;
    ASSERT_GT(done, 0) << t;
    max_start = std::max(max_start, start);
    min_done = std::min(min_done, done);
  }
  // Parallelism without timing: all three were in progress before any finished.
  EXPECT_LT(max_start, min_done) << "a, b and c did not overlap: they ran one after another";
  // Order: d started only after both of its dependencies completed.
  const int64_t d_start = TaskSeq(events, id("d"), "in_progress");
  EXPECT_GT(d_start, TaskSeq(events, id("a"), "completed"));
  EXPECT_GT(d_start, TaskSeq(events, id("b"), "completed"));
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(deps_when_d_asked["Task a"], "completed");
    EXPECT_EQ(deps_when_d_asked["Task b"], "completed");
  }

  std::vector<std::string> commits = h_.CommitTaskIds(f.id);
  std::sort(commits.begin(), commits.end());
  EXPECT_EQ(commits, (std::vector<std::string>{id("a"), id("b"), id("c"), id("d")}));

  const Event* impl = FeatureStatusEvent(events, "implementing");
  const Event* test = FeatureStatusEvent(events, "testing");
  if (impl && test) {
    std::cout << "[ info ] " << testing::WireName(GetParam())
              << ": coding stage (4 tasks, 3 coders, 1 s per model reply) took "
              << (test->ts_ms - impl->ts_ms) << " ms\n";
  }
}

// 2. Paths that leave the workspace are refused, the model is told which and
// why, nothing is written outside, and the feature still completes.
TEST_P(PipelineFakeLlm, PathEscapesAreRefusedAndReported) {
  const std::string tag = std::to_string(getpid()) + "-" + testing::WireName(GetParam());
  const std::string dotdot = "../af-escape-" + tag;
  const std::string abs = "/etc/af-escape-test";
  const std::string via_link = "link/af-x-" + tag;
  ASSERT_FALSE(fs::exists(abs)) << abs << " exists before the test: remove it (an earlier escape?)";
  std::mutex mu;
  std::vector<testing::SentToolResult> results;  // guarded by mu
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [&](const RecordedRequest& req) {
    if (testing::AssistantTurns(req) == 0) {
      return FakeReply::Tools({Call("write_file", {{"path", dotdot}, {"content", "x"}}),
                               Call("write_file", {{"path", abs}, {"content", "x"}}),
                               Call("run_command", {{"command", "ln -s /tmp link"}}),
                               Call("write_file", {{"path", via_link}, {"content", "x"}}),
                               Call("write_file", {{"path", "inside.txt"}, {"content", "x"}})});
    }
    std::lock_guard lock(mu);
    // The first turn's results (a finish refused because the gate sees the
    // uncommitted link would make a later turn).
    if (testing::AssistantTurns(req) == 1) results = testing::LatestToolResults(req);
    return Finish("tried to escape");
  };
  s.reviewer = Approver();
  Install(h_, s);

  // The gate judges what is committed: the one legitimate write, not the link
  // the sandboxed ln -s left uncommitted.
  Feature f =
      Run(PipelineHarness::Request("Escape attempts", {"test -f inside.txt && ! test -e link"}));
  EXPECT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));

  const fs::path tree = h_.TreeRoot(f.id);
  EXPECT_FALSE(fs::exists(tree.parent_path() / ("af-escape-" + tag)));
  EXPECT_FALSE(fs::exists(abs));
  EXPECT_FALSE(fs::exists(fs::path("/tmp") / ("af-x-" + tag)));
  auto committed = testing::RunCommand(
      {"/usr/bin/git", "-C", h_.WorkspaceRoot().string(), "show", "af/" + f.id + ":inside.txt"});
  EXPECT_EQ(committed.exit_code, 0) << committed.err;

  std::lock_guard lock(mu);
  ASSERT_EQ(results.size(), 5u);
  auto refused = [&](size_t i, const std::string& path) {
    EXPECT_TRUE(results[i].is_error) << results[i].content;
    EXPECT_NE(results[i].content.find(path), std::string::npos)
        << "the refusal does not name " << path << ": " << results[i].content;
  };
  refused(0, dotdot);
  refused(1, abs);
  EXPECT_FALSE(results[2].is_error) << results[2].content;
  refused(3, via_link);
  EXPECT_FALSE(results[4].is_error) << results[4].content;
}

// 3. A failing gate becomes a fix task carrying the gate's output, which the
// fix coder sees; once fixed, the gate passes and the feature completes.
TEST_P(PipelineFakeLlm, FailingGateGoesBackToCoderWithItsOutput) {
  std::mutex mu;
  std::string fix_first_message;  // guarded by mu
  Script s;
  s.planner = OneTaskPlanner("Write notes");
  s.coder = [&](const RecordedRequest& req) {
    const bool fix = StartsWith(testing::TaskTitleOf(req), "Fix failing validation gates");
    if (fix && testing::AssistantTurns(req) == 0) {
      std::lock_guard lock(mu);
      fix_first_message = testing::FirstUserText(req);
    }
    return WriteThenFinish(fix ? "ok.txt" : "notes.txt")(req);
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Gate feedback",
                                           {"test -f ok.txt || (echo MISSING-OK-FILE; exit 1)"}));
  EXPECT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));

  auto fix = FindTask(h_.store(), f.id + "-fixtest-1");
  ASSERT_TRUE(fix.has_value()) << "no fix task was created";
  EXPECT_NE(fix->description.find("MISSING-OK-FILE"), std::string::npos) << fix->description;
  EXPECT_EQ(fix->status, "completed");
  EXPECT_FALSE(FindTask(h_.store(), f.id + "-fixtest-2").has_value());
  {
    std::lock_guard lock(mu);
    EXPECT_NE(fix_first_message.find("MISSING-OK-FILE"), std::string::npos) << fix_first_message;
  }
  std::vector<bool> gates;
  for (const auto& e : h_.Events(f.id))
    if (e.type == "gate.result") gates.push_back(e.data.value("passed", false));
  EXPECT_EQ(gates, (std::vector<bool>{false, true}));
  // The fix that made the gate pass is a lesson.
  EXPECT_EQ(LearnedTypes(h_, f.id, "bug_fix").count("bug_fix"), 1u);
}

// 4. limits.max_steps counts every model call of the feature, planner
// included, and stops the feature at the limit.
TEST_P(PipelineFakeLlm, StepLimitStopsTheFeature) {
  h_.config().limits.max_steps = 6;
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = ListForever();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Never finishes"));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "max_steps");
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("limits.max_steps"), std::string::npos)
      << FailureMessage(h_.Events(f.id));
  h_.Stop();
  EXPECT_EQ(h_.fake().request_count(), 6u);
}

// 4a. limits.max_turns bounds one conversation, whatever limits.max_steps
// allows the feature: a coder listing files forever stops at its turn limit
// with reason max_turns, and from its third identical call on it is told
// that repeating the call changes nothing. The task that waited for it is
// cancelled with the feature.
TEST_P(PipelineFakeLlm, TurnLimitStopsAConversationThatNeverFinishes) {
  h_.config().limits.max_steps = 1000;
  h_.config().limits.max_turns = 5;
  Script s;
  s.planner = [](const RecordedRequest&) {
    return Plan(json::array({PlanTask("t1", "Loop"), PlanTask("t2", "After it", {"t1"})}));
  };
  s.coder = ListForever();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Never finishes"));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "max_turns") << FailureMessage(h_.Events(f.id));
  const std::string message = FailureMessage(h_.Events(f.id));
  EXPECT_NE(message.find("made 5 model calls and never called finish (limits.max_turns = 5)"),
            std::string::npos)
      << message;
  auto waiting = FindTask(h_.store(), f.id + "-t2");
  ASSERT_TRUE(waiting.has_value());
  EXPECT_EQ(waiting->status, "cancelled");
  h_.Stop();
  // The planner's call and the coder's five.
  EXPECT_EQ(h_.fake().request_count(), 6u);
  const auto requests = h_.fake().requests();
  ASSERT_FALSE(requests.empty());
  const std::string last = requests.back().body.dump();
  EXPECT_NE(last.find("same list_files call 4 times in a row"), std::string::npos) << last;
  EXPECT_EQ(requests[2].body.dump().find("times in a row"), std::string::npos);
}

// 4a'. A task still running when a sibling fails the feature stops with it:
// cancelled, as the waiting tasks are, not failed (nothing went wrong in it).
TEST_P(PipelineFakeLlm, ARunningSiblingOfAFailedTaskIsCancelled) {
  h_.config().limits.max_turns = 3;
  h_.config().agents["coder"].replicas = 2;
  Script s;
  s.planner = [](const RecordedRequest&) {
    return Plan(json::array({PlanTask("t1", "Loop"), PlanTask("t2", "Slow")}));
  };
  s.coder = [this](const RecordedRequest& req) {
    if (req.body.dump().find("Do Slow.") == std::string::npos) return ListForever()(req);
    // Held until t1 has failed the feature: t2 is in flight then.
    testing::WaitFor(
        [&] {
          auto failed = h_.store().ListFeatures({.status = "failed"});
          return failed.ok() && failed->total > 0;
        },
        kWait);
    return Write("t2.txt");
  };
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Fails beside a running task"));
  EXPECT_EQ(f.reason, "max_turns") << FailureMessage(h_.Events(f.id));
  // t2's answer comes once the feature failed; its next step sees the end.
  std::optional<Task> running;
  testing::WaitFor(
      [&] {
        running = FindTask(h_.store(), f.id + "-t2");
        return running && running->status != "in_progress";
      },
      kWait);
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(running->status, "cancelled") << running->result.dump();
  EXPECT_EQ(running->result.value("reason", ""), "cancelled") << running->result.dump();
  for (const auto& e : h_.Events(f.id))
    EXPECT_FALSE(e.type == "error" && e.task_id == f.id + "-t2") << e.data.dump();
}

// 4a''. Two tasks running side by side in one worktree cannot both write one
// file: the second is told the first has uncommitted changes there, and each
// task's commit holds its own files only (before, the later write wiped the
// earlier and the first task's commit carried the second's content). A write
// that failed claims nothing, and what a command does to the other task's
// files is undone.
TEST_P(PipelineFakeLlm, ParallelTasksCannotWriteAFileTheOtherChanged) {
  h_.config().agents["coder"].replicas = 2;
  std::mutex mu;
  std::condition_variable cv;
  bool a_wrote = false, b_tried = false;  // guarded by mu
  std::vector<testing::SentToolResult> b_results, b_command;
  Script s;
  s.planner = [](const RecordedRequest&) {
    return Plan(json::array({PlanTask("a", "Task a"), PlanTask("b", "Task b")}));
  };
  s.coder = [&](const RecordedRequest& req) {
    const bool a = testing::TaskTitleOf(req) == "Task a";
    const std::string me = a ? "a" : "b";
    std::unique_lock lock(mu);
    const int turn = testing::AssistantTurns(req);
    if (turn == 0) {
      // b writes once a has written and is still running; a first tries an
      // edit of b's file that fails (no such file yet).
      if (!a) cv.wait_for(lock, kWait, [&] { return a_wrote; });
      std::vector<testing::FakeToolCall> calls;
      if (a) {
        calls.push_back(
            Call("edit_file", {{"path", "b.txt"}, {"old_text", "x"}, {"new_text", "y"}}));
      }
      calls.push_back(Call("write_file", {{"path", me + ".txt"}, {"content", me}}));
      calls.push_back(Call("write_file", {{"path", "NOTES.md"}, {"content", me}}));
      return FakeReply::Tools(calls);
    }
    if (a) {
      a_wrote = true;
      cv.notify_all();
      cv.wait_for(lock, kWait, [&] { return b_tried; });  // commits after b tried
    } else if (turn == 1) {
      b_results = testing::LatestToolResults(req);
      // A command that appends to a's NOTES.md and removes a's a.txt.
      return FakeReply::Tools(
          {Call("run_command", {{"command", "echo extra >> NOTES.md; rm -f a.txt"}})});
    } else {
      b_tried = true;
      b_command = testing::LatestToolResults(req);
      cv.notify_all();
    }
    return Finish("wrote " + me + ".txt");
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Side by side"));
  ASSERT_EQ(f.status, "completed") << FailureMessage(h_.Events(f.id));
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(b_results.size(), 2u);
    EXPECT_FALSE(b_results[0].is_error) << b_results[0].content;  // a's failed edit claimed nothing
    EXPECT_TRUE(b_results[1].is_error);
    EXPECT_NE(b_results[1].content.find("NOTES.md has changes by task " + f.id + "-a"),
              std::string::npos)
        << b_results[1].content;
    ASSERT_EQ(b_command.size(), 1u);
    EXPECT_NE(b_command[0].content.find("they are back as that task left them: NOTES.md (task " +
                                        f.id + "-a), a.txt (task " + f.id + "-a)"),
              std::string::npos)
        << b_command[0].content;
  }
  auto files_of = [&](const std::string& task) {
    auto t = FindTask(h_.store(), f.id + "-" + task);
    if (!t) return std::string("(no task)");
    return testing::RunCommand({"/usr/bin/git", "-C", h_.WorkspaceRoot().string(), "show",
                                "--name-only", "--format=", t->result.value("commit", "")})
        .out;
  };
  EXPECT_EQ(files_of("a"), "NOTES.md\na.txt\n");
  EXPECT_EQ(files_of("b"), "b.txt\n");
  auto notes = testing::RunCommand(
      {"/usr/bin/git", "-C", h_.WorkspaceRoot().string(), "show", "af/" + f.id + ":NOTES.md"});
  EXPECT_EQ(notes.out, "a");
}

// 4b. The step limit holds with agents calling in parallel: a call counts
// from the moment it is reserved, not from when its answer is recorded. Three
// coders start together with one step left between them; the model is slow,
// so without reservations all three calls would be in flight at once.
TEST_P(PipelineFakeLlm, ParallelCodersNeverOvershootTheStepLimit) {
  h_.config().agents["coder"].replicas = 3;
  h_.config().limits.max_steps = 3;  // the planner's call + two coder calls
  Script s;
  s.planner = [](const RecordedRequest&) {
    return Plan(
        json::array({PlanTask("a", "Task a"), PlanTask("b", "Task b"), PlanTask("c", "Task c")}));
  };
  s.coder = ListForever(std::chrono::milliseconds(500));
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Three at once"));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "max_steps");
  h_.Stop();
  // At most max_steps; a reserved call may also be cancelled before it is
  // sent, when another coder's refusal ends the feature first.
  EXPECT_LE(h_.fake().request_count(), 3u) << "the model was asked more often than max_steps";
  EXPECT_GE(h_.fake().request_count(), 2u) << "the planner and at least one coder asked";
}

// limits.feature_timeout ends a feature whose agents are still working, with
// reason "timeout", and the agents stop asking the model.
TEST_P(PipelineFakeLlm, FeatureTimeoutStopsTheFeature) {
  h_.config().limits.feature_timeout = 1;  // second
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = ListForever(std::chrono::milliseconds(300));
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Slow forever"));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "timeout");
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("limits.feature_timeout"), std::string::npos)
      << FailureMessage(h_.Events(f.id));
  h_.Stop();
  const size_t after_stop = h_.fake().request_count();
  EXPECT_LT(after_stop, 20u);  // 1 s at 300 ms a reply: a handful, not a runaway loop
}

// 5a. request_changes becomes a fix task with the comments; the second
// review approves and the feature completes.
TEST_P(PipelineFakeLlm, ReviewRequestsChangesOnceThenApproves) {
  std::atomic<int> reviews{0};
  std::mutex mu;
  std::string fix_first_message;  // guarded by mu
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [&](const RecordedRequest& req) {
    const bool fix = StartsWith(testing::TaskTitleOf(req), "Address review comments");
    if (fix && testing::AssistantTurns(req) == 0) {
      std::lock_guard lock(mu);
      fix_first_message = testing::FirstUserText(req);
    }
    return WriteThenFinish(fix ? "renamed.txt" : "first.txt")(req);
  };
  std::string second_review;  // guarded by mu: the reviewer's round 2 question
  s.reviewer = [&](const RecordedRequest& req) {
    if (reviews == 1 && testing::AssistantTurns(req) == 0) {
      std::lock_guard lock(mu);
      second_review = testing::FirstUserText(req);
    }
    return ++reviews == 1 ? Review("request_changes", {"RENAME-THE-FUNCTION"})
                          : Review("approve", {"renamed as asked"});
  };
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Review loop", {"test -f first.txt"}));
  EXPECT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));
  auto fix = FindTask(h_.store(), f.id + "-fixreview-1");
  ASSERT_TRUE(fix.has_value()) << "no review fix task was created";
  EXPECT_NE(fix->description.find("RENAME-THE-FUNCTION"), std::string::npos) << fix->description;
  EXPECT_EQ(fix->status, "completed");
  {
    std::lock_guard lock(mu);
    EXPECT_NE(fix_first_message.find("RENAME-THE-FUNCTION"), std::string::npos);
    // Round 2 is told what round 1 asked and what the coder says it did.
    EXPECT_NE(second_review.find("In round 1 you requested changes:\n- RENAME-THE-FUNCTION"),
              std::string::npos)
        << second_review;
    EXPECT_NE(second_review.find("Address review comments (round 1) (completed), the coder's "
                                 "summary: wrote renamed.txt"),
              std::string::npos)
        << second_review;
  }
  std::vector<std::string> verdicts;
  for (const auto& e : h_.Events(f.id))
    if (e.type == "review.verdict") verdicts.push_back(e.data.value("verdict", ""));
  EXPECT_EQ(verdicts, (std::vector<std::string>{"request_changes", "approve"}));
  EXPECT_EQ(reviews.load(), 2);
}

// 5b. With no review rounds allowed, request_changes ends the feature.
TEST_P(PipelineFakeLlm, ReviewRejectedWhenNoRoundsLeft) {
  h_.config().limits.review_rounds = 0;
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = WriteThenFinish("first.txt");
  s.reviewer = [](const RecordedRequest&) { return Review("request_changes", {"REDO-IT"}); };
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Rejected", {"test -f first.txt"}));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "review_rejected");
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("REDO-IT"), std::string::npos);
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("limits.review_rounds = 0 allows no round"),
            std::string::npos)
      << FailureMessage(h_.Events(f.id));
  const std::vector<Event> events = h_.Events(f.id);
  const Event* failed = FeatureStatusEvent(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_NE(failed->data.value("hint", "").find("raise limits.review_rounds"), std::string::npos)
      << failed->data.dump();
  EXPECT_FALSE(FindTask(h_.store(), f.id + "-fixreview-1").has_value());
  // What the reviewer said is the lesson the failure memory keeps.
  h_.Stop();
  bool kept = false;
  for (const auto& e : h_.Events(f.id))
    kept = kept || (e.type == "memory.stored" && e.data.value("type", "") == "failure");
  EXPECT_TRUE(kept) << "no failure memory";
}

// 5c. Each review round is a new question to the model, even when the fix
// left the diff as it was: the second round must not replay the first
// round's recorded answer (replay is for resuming a step, not for repeating one).
TEST_P(PipelineFakeLlm, EveryReviewRoundAsksTheModel) {
  std::atomic<int> reviews{0};
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [](const RecordedRequest& req) {
    if (StartsWith(testing::TaskTitleOf(req), "Address review comments"))
      return Finish("the code already does this; nothing to change");
    return WriteThenFinish("first.txt")(req);
  };
  s.reviewer = [&](const RecordedRequest&) {
    return ++reviews == 1 ? Review("request_changes", {"EXPLAIN-WHY"})
                          : Review("approve", {"explained"});
  };
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Review without change", {"test -f first.txt"}));
  EXPECT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));
  EXPECT_EQ(reviews.load(), 2);
  // A fix that changed nothing is no lesson ("fixed by" a change never made).
  const auto learned = LearnedTypes(h_, f.id, "insight");
  EXPECT_EQ(learned.count("insight"), 1u);
  EXPECT_EQ(learned.count("bug_fix"), 0u);
}

// 6. Cancel while a slow coder works: the feature is cancelled at once and
// the coder stops asking the model at its next step.
TEST_P(PipelineFakeLlm, CancelStopsARunningCoder) {
  std::atomic<int> coder_requests{0};
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [&](const RecordedRequest&) {
    ++coder_requests;
    FakeReply r = FakeReply::Tools({Call("list_files", {{"path", "."}})});
    r.latency = std::chrono::milliseconds(2000);
    return r;
  };
  Install(h_, s);

  Feature f = Submit(PipelineHarness::Request("Slow coder"));
  ASSERT_TRUE(testing::WaitFor([&] { return coder_requests.load() >= 2; }, kWait))
      << "the coder never got going";
  const size_t at_cancel = h_.fake().request_count();
  ASSERT_TRUE(h_.pipeline().Cancel(f.id).ok());
  Feature after = Wait(f.id);
  EXPECT_EQ(after.status, "cancelled");
  EXPECT_EQ(after.reason, "cancelled");

  // The coder notices at its next step (after the reply in flight) and marks
  // its task cancelled.
  const std::string task_id = f.id + "-t1";
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto t = FindTask(h_.store(), task_id);
        return t && t->status == "cancelled";
      },
      kWait))
      << "the coder did not notice the cancellation";
  const size_t at_notice = h_.fake().request_count();
  h_.Stop();  // joins every agent: nothing can ask the model after this
  EXPECT_EQ(h_.fake().request_count(), at_notice);
  // At most one request may have been past its check when Cancel ran.
  EXPECT_LE(at_notice, at_cancel + 1);
  EXPECT_EQ(h_.pipeline().Cancel(f.id).code(), Code::kFailedPrecondition);
}

// A coder conversation outlasting the bus's ack_timeout stays with its
// agent: the heartbeat renews the delivery, so the idle second coder never
// gets the same job (it would ask the model again and work the same task at
// the same time).
TEST_P(PipelineFakeLlm, AJobLongerThanTheAckTimeoutStaysWithItsAgent) {
  h_.config().agents["coder"].replicas = 2;
  h_.config().bus.ack_timeout = 1;  // seconds; the coder's first answer takes 3
  std::atomic<int> first_turns{0};
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [&](const RecordedRequest& req) {
    if (testing::AssistantTurns(req) > 0) return Finish("wrote t1.txt");
    ++first_turns;
    FakeReply r = Write("t1.txt");
    r.latency = std::chrono::milliseconds(3000);
    return r;
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Slow first answer", {"test -f t1.txt"}));
  EXPECT_EQ(f.status, "completed") << FailureMessage(h_.Events(f.id));
  EXPECT_EQ(first_turns.load(), 1) << "the job went to a second coder while the first worked on it";
}

// Agents waiting for the model hold no thread: 16 coders' first calls are
// all held by the fake model at once while the agents' threads go away;
// released, the feature completes with every task's work.
TEST_P(PipelineFakeLlm, ModelCallsInFlightHoldNoAgentThread) {
  constexpr int kTasks = 16;
  h_.config().agents["coder"].replicas = kTasks;
  std::mutex mu;
  std::condition_variable cv;
  int held = 0;          // guarded by mu
  bool release = false;  // guarded by mu
  auto let_go = [&] {
    {
      std::lock_guard lock(mu);
      release = true;
    }
    cv.notify_all();
  };
  // Held calls are let go however the test ends (the fake server joins them).
  std::shared_ptr<void> let_go_at_end(nullptr, [&](void*) { let_go(); });
  Script s;
  s.planner = [](const RecordedRequest&) {
    json tasks = json::array();
    for (int i = 1; i <= kTasks; ++i)
      tasks.push_back(PlanTask("t" + std::to_string(i), "t" + std::to_string(i)));
    return Plan(tasks);
  };
  s.coder = [&](const RecordedRequest& req) {
    const std::string file = testing::TaskTitleOf(req) + ".txt";  // title = the task's id
    if (testing::AssistantTurns(req) > 0) return Finish("wrote " + file);
    std::unique_lock lock(mu);
    ++held;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return Write(file);
  };
  s.reviewer = Approver();
  Install(h_, s);

  const Feature submitted = Submit(PipelineHarness::Request("Sixteen files at once"));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return held == kTasks; }))
        << "only " << held << " coder calls arrived at once";
  }
  // Idle pool threads leave after 2 s; a thread blocked in a call never does.
  const bool freed = testing::WaitFor([] { return testing::ThreadsOfThisProcess("af-agent") <= 2; },
                                      std::chrono::seconds(10));
  const int left = testing::ThreadsOfThisProcess("af-agent");
  let_go();
  EXPECT_TRUE(freed) << left << " agent threads stayed while " << kTasks << " model calls waited";
  const Feature f = Wait(submitted.id);
  EXPECT_EQ(f.status, "completed") << FailureMessage(h_.Events(f.id));
  auto tasks = h_.store().ListTasks(f.id);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), static_cast<size_t>(kTasks));
  for (const auto& t : *tasks) EXPECT_EQ(t.status, "completed") << t.id;
}

// 7a. A budget smaller than any call: the feature fails before the first request.
TEST_P(PipelineFakeLlm, BudgetTooSmallForAnyCall) {
  h_.config().budget.feature_usd = 0.000001;
  Script s;
  s.planner = OneTaskPlanner();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Too expensive"));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "budget_exceeded");
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("budget.feature_usd"), std::string::npos)
      << FailureMessage(h_.Events(f.id));
  EXPECT_EQ(h_.fake().request_count(), 0u);
  // A stop at a budget teaches nothing about the code: no failure memory
  // (it would outrank what later features did learn).
  h_.Stop();
  for (const auto& e : h_.Events(f.id)) EXPECT_NE(e.type, "memory.stored") << e.data.dump();
}

// 7b. A budget that fits the planner's call; the planner's reported usage
// spends it, so the coder's first call is refused before it is made.
TEST_P(PipelineFakeLlm, BudgetSpentStopsTheNextCall) {
  Config& c = h_.config();
  c.llm.max_tokens = 1000;
  // Well above what the first request may cost (its estimate is a few
  // thousand input tokens at most), below what the planner reports using.
  c.budget.feature_usd = CostUsd(testing::WireName(GetParam()), c.llm.model, Usage{20000, 1000});
  ASSERT_GT(c.budget.feature_usd, 0) << "the model must be priced";
  Script s;
  s.planner = [](const RecordedRequest& req) {
    FakeReply r = OneTaskPlanner()(req);
    r.input_tokens = 100000;
    return r;
  };
  s.coder = WriteThenFinish("never.txt");
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Spends its budget"));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "budget_exceeded");
  EXPECT_EQ(h_.fake().request_count(), 1u);
  auto usage = h_.store().FeatureUsage(f.id);
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->calls, 1);
  EXPECT_GT(usage->cost_usd, c.budget.feature_usd);
}

// 8. Unknown tools and missing arguments come back as error results; the
// model can recover and the feature completes.
TEST_P(PipelineFakeLlm, BadToolCallsComeBackAsErrors) {
  std::mutex mu;
  std::vector<testing::SentToolResult> results;  // guarded by mu
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [&](const RecordedRequest& req) {
    if (testing::AssistantTurns(req) == 0) {
      return FakeReply::Tools(
          {Call("teleport", {{"to", "mars"}}), Call("write_file", {{"content", "no path"}})});
    }
    {
      std::lock_guard lock(mu);
      results = testing::LatestToolResults(req);
    }
    return FakeReply::Tools({Call("write_file", {{"path", "good.txt"}, {"content", "fine\n"}}),
                             Call("finish", {{"summary", "recovered"}})});
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Bad tool calls", {"test -f good.txt"}));
  EXPECT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));
  std::lock_guard lock(mu);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].is_error);
  EXPECT_NE(results[0].content.find("the coder has no tool 'teleport'"), std::string::npos)
      << results[0].content;
  EXPECT_TRUE(results[1].is_error);
  EXPECT_NE(results[1].content.find("'path'"), std::string::npos) << results[1].content;
}

// 9. A coder may finish without changing anything (e.g. another task already
// did the work): its task completes with no commit instead of hanging.
TEST_P(PipelineFakeLlm, TaskWithoutChangesCompletes) {
  Script s;
  s.planner = [](const RecordedRequest&) {
    return Plan(json::array({PlanTask("w", "Write it"), PlanTask("v", "Verify it", {"w"})}));
  };
  s.coder = [](const RecordedRequest& req) {
    if (testing::TaskTitleOf(req) == "Verify it") return Finish("nothing to change");
    return WriteThenFinish("it.txt")(req);
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("No-op task", {"test -f it.txt"}));
  EXPECT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));
  auto v = FindTask(h_.store(), f.id + "-v");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->status, "completed");
  EXPECT_EQ(h_.CommitTaskIds(f.id), (std::vector<std::string>{f.id + "-w"}));
}

// 9b. A tool the role was not offered is refused like a bad call: a planner
// that calls finish is told it has no such tool and can still submit a plan
// (accepting it used to end planning with an empty plan and a "completed"
// feature that built nothing).
TEST_P(PipelineFakeLlm, PlannerCallingFinishIsToldToSubmitAPlan) {
  std::mutex mu;
  std::vector<testing::SentToolResult> told;  // guarded by mu
  Script s;
  s.planner = [&](const RecordedRequest& req) {
    if (testing::AssistantTurns(req) == 0) return Finish("planned it in my head");
    std::lock_guard lock(mu);
    told = testing::LatestToolResults(req);
    return Plan(json::array({PlanTask("t1", "Write the file")}));
  };
  s.coder = WriteThenFinish("it.txt");
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Planner mistake", {"test -f it.txt"}));
  EXPECT_EQ(f.status, "completed") << f.reason << "\n" << FailureMessage(h_.Events(f.id));
  std::lock_guard lock(mu);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_TRUE(told[0].is_error);
  EXPECT_NE(told[0].content.find("the planner has no tool 'finish'"), std::string::npos)
      << told[0].content;
  EXPECT_NE(told[0].content.find("submit_plan"), std::string::npos) << told[0].content;
}

// 9c. A planner that never submits a plan fails the feature with the step
// limit: never "completed" with nothing planned.
TEST_P(PipelineFakeLlm, PlannerThatNeverPlansFailsTheFeature) {
  h_.config().limits.max_steps = 3;
  Script s;
  s.planner = [](const RecordedRequest&) { return Finish("nothing to plan"); };
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Never planned", {"true"}));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "max_steps") << FailureMessage(h_.Events(f.id));
  auto tasks = h_.store().ListTasks(f.id);
  ASSERT_TRUE(tasks.ok());
  EXPECT_TRUE(tasks->empty());
}

// 9d. Every task finished without changing a file: nothing was built, so the
// feature fails with its reason even though the gate passes.
TEST_P(PipelineFakeLlm, FeatureWithoutAChangeFails) {
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [](const RecordedRequest&) { return Finish("it is already there"); };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Run(PipelineHarness::Request("Builds nothing", {"true"}));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "no_change");
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("nothing was built"), std::string::npos)
      << FailureMessage(h_.Events(f.id));
  for (const auto& e : h_.Events(f.id)) EXPECT_NE(e.type, "review.verdict");
}

// 9e. A gate whose test runner ran no test has checked nothing: it does not
// pass, and its result says why.
TEST_P(PipelineFakeLlm, GateThatRanNoTestDoesNotPass) {
  h_.config().limits.fix_attempts = 0;
  InstallOneFileFeature(h_);

  // What `python3 -m unittest -q` prints (exit 0 before Python 3.12) in a tree
  // without tests.
  Feature f = Run(PipelineHarness::Request(
      "No tests", {"printf '\\n----\\nRan 0 tests in 0.000s\\n\\nOK\\n'"}));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "gates_failed");
  int gates = 0;
  for (const auto& e : h_.Events(f.id)) {
    if (e.type != "gate.result") continue;
    ++gates;
    EXPECT_FALSE(e.data.value("passed", true));
    EXPECT_EQ(e.data.value("exit_code", -1), 0);
    EXPECT_NE(e.data.value("note", "").find("ran no test"), std::string::npos) << e.data.dump();
  }
  EXPECT_EQ(gates, 1);
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("ran no test"), std::string::npos)
      << FailureMessage(h_.Events(f.id));
}

// 9e'. A gate stopped at sandbox.timeout_s says it timed out, where the user
// reads why the feature failed (and the coder asked to fix it would), and a
// long output keeps its end, where a traceback says what is wrong.
TEST_P(PipelineFakeLlm, GateFailuresSayTheyTimedOutAndKeepTheOutputsEnd) {
  h_.config().limits.fix_attempts = 0;
  h_.config().sandbox.timeout_s = 1;
  InstallOneFileFeature(h_);

  Feature f = Run(PipelineHarness::Request(
      "Gates", {"sleep 30", "seq 1 400; echo THE-LAST-LINE-SAYS-WHY; exit 1"}));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "gates_failed");
  const std::string message = FailureMessage(h_.Events(f.id));
  EXPECT_NE(message.find("timed out: stopped after 1 s (sandbox.timeout_s)"), std::string::npos)
      << message;
  EXPECT_NE(message.find("THE-LAST-LINE-SAYS-WHY"), std::string::npos) << message;
  const std::vector<Event> events = h_.Events(f.id);
  const Event* failed = FeatureStatusEvent(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_NE(message.find("limits.fix_attempts = 0 allows no fix"), std::string::npos) << message;
  // The hint names the limit that stopped the gate, not the fix rounds.
  EXPECT_NE(failed->data.value("hint", "").find("raise sandbox.timeout_s"), std::string::npos)
      << failed->data.dump();
}

// 9f. The store refuses the write that completes a task (a full disk, say):
// the feature fails at once naming the store's error, instead of waiting for
// the task until limits.feature_timeout.
TEST_P(PipelineFakeLlm, StoreFailureCompletingATaskFailsTheFeaturePromptly) {
  h_.config().limits.feature_timeout = 40;
  std::atomic<int> transitions{0};
  // A one-task feature moves its task pending -> ready -> in_progress ->
  // in_progress (finished) -> completed: the fourth write is the completion.
  h_.InjectStoreFaults([&](std::string_view method, bool) {
    if (method == "TransitionTask" && ++transitions == 4)
      return Unavailable("injected: disk full writing the task", "free some disk space");
    return Status::Ok();
  });
  InstallOneFileFeature(h_);

  Feature f = Run(PipelineHarness::Request("Store fails", {"test -f it.txt"}));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.reason, "agent_error") << "not \"timeout\": it must not wait for the task";
  EXPECT_NE(FailureMessage(h_.Events(f.id)).find("injected: disk full"), std::string::npos)
      << FailureMessage(h_.Events(f.id));
}

// 9f'. The store does not answer at all for a while (PostgreSQL restarting:
// every call fails Unavailable, its health check too) just as the coder's
// finish comes: the coordinator and the agent wait for it instead of failing
// the feature, and the task is redone once the store is back.
TEST_P(PipelineFakeLlm, AStoreAwayMidTaskIsWaitedOutAndTheFeatureCompletes) {
  std::atomic<bool> down{false};
  std::atomic<int> probes{0};  // health checks refused while down
  h_.InjectStoreFaults([&](std::string_view method, bool) {
    if (!down) return Status::Ok();
    if (method == "Check") ++probes;
    return Unavailable("injected: the database is away", "start it again");
  });
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [&](const RecordedRequest& req) {
    if (testing::AssistantTurns(req) == 1) down = true;  // the finish comes while it is away
    return WriteThenFinish("it.txt")(req);
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature f = Submit(PipelineHarness::Request("Store away", {"test -f it.txt"}));
  // Both wait, each probing the store: then it comes back.
  ASSERT_TRUE(testing::WaitFor([&] { return probes.load() >= 6; }, kWait));
  down = false;
  f = Wait(f.id);
  EXPECT_EQ(f.status, "completed") << f.reason << ": " << FailureMessage(h_.Events(f.id));
  EXPECT_EQ(h_.CommitTaskIds(f.id), std::vector<std::string>{f.id + "-t1"});
}

// 9g. Cancelling a feature kills the command its coder is running (only a
// process stop did before): the tool call ends long before the command would.
TEST_P(PipelineFakeLlm, CancelKillsTheRunningCommand) {
  std::atomic<bool> running{false};
  Script s;
  s.planner = OneTaskPlanner();
  s.coder = [&](const RecordedRequest& req) {
    if (testing::AssistantTurns(req) == 0) {
      running = true;
      return FakeReply::Tools({Call("run_command", {{"command", "sleep 120"}})});
    }
    return Finish("slept");
  };
  Install(h_, s);

  Feature f = Submit(PipelineHarness::Request("Long command"));
  ASSERT_TRUE(testing::WaitFor([&] { return running.load(); }, kWait));
  // The command is under way once its task is in progress and no tool.call
  // has come back yet; give it a moment to start, polling the store.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto t = FindTask(h_.store(), f.id + "-t1");
        return t && t->status == "in_progress";
      },
      kWait));
  ASSERT_TRUE(h_.pipeline().Cancel(f.id).ok());
  // The run_command result comes back (killed) within seconds, not 120 s.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        for (const auto& e : h_.Events(f.id))
          if (e.type == "tool.call" && e.data.value("tool", "") == "run_command") return true;
        return false;
      },
      std::chrono::seconds(30)))
      << "the command was not killed when its feature was cancelled";
  for (const auto& e : h_.Events(f.id)) {
    if (e.type == "tool.call" && e.data.value("tool", "") == "run_command") {
      EXPECT_FALSE(e.data.value("ok", true));
      EXPECT_NE(e.data.value("result", "").find("was killed"), std::string::npos) << e.data.dump();
    }
  }
}

// Lines of /proc/self/maps: every mapping of this process.
size_t MappingCount() {
  std::ifstream maps("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

// 10. A coordinator thread that has ended is joined when the next feature
// starts: an ended thread that is never joined keeps its stack and guard page
// mapped, and a server that had run ~32k features could start no thread at all
// (vm.max_map_count), failing every submission with a 500.
TEST(PipelineDrivers, EndedDriversReleaseTheirStacks) {
  // The replay provider knows no recording of these requests, so every
  // feature fails in planning; the fake server (whose connection threads
  // live until it stops) sees no call.
  PipelineHarness h(Wire::kOpenAi);
  h.config().llm.provider = "replay";
  h.config().llm.replay_file.clear();  // the examples' recordings
  Status started = h.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  auto run_one = [&](int i) {
    auto f = h.pipeline().Submit(PipelineHarness::Request("Feature " + std::to_string(i)));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    auto done = h.pipeline().WaitFor(f->id, kWait);
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    ASSERT_EQ(done->status, "failed");
    // The driver's last act is storing the failure as a memory; after it the
    // pool thread takes the next feature.
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    auto learned = [&] {
      for (const auto& e : h.Events(f->id))
        if (e.type == "memory.stored") return true;
      return false;
    };
    while (!learned() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(learned()) << "feature " << f->id << " stored no memory";
  };
  // Warm-up: malloc arenas, glibc's cache of thread stacks, the workspace.
  for (int i = 0; i < 5; ++i) ASSERT_NO_FATAL_FAILURE(run_one(i));
  const size_t before = MappingCount();
  constexpr int kFeatures = 50;
  for (int i = 0; i < kFeatures; ++i) ASSERT_NO_FATAL_FAILURE(run_one(100 + i));
  // Never joined, the 50 ended threads would hold 100 more mappings.
  EXPECT_LT(MappingCount(), before + kFeatures / 2) << "before: " << before;
}

// A feature being driven holds no thread while it waits for its agents: 64
// features wait at once for the one planner (its call held at the model)
// while the process keeps the threads it had before they came, give or take
// a few; released, they all complete. (Each driver was a thread of its own.)
TEST(PipelineDrivers, FeaturesWaitingForAgentsHoldNoThread) {
  constexpr int kFeatures = 64;
  PipelineHarness h(Wire::kOpenAi);
  h.config().limits.max_active_features = kFeatures;
  h.config().agents["planner"].replicas = 1;
  std::mutex mu;
  std::condition_variable cv;
  bool asked = false, release = false;  // guarded by mu
  std::shared_ptr<void> let_go_at_end(nullptr, [&](void*) {
    {
      std::lock_guard lock(mu);
      release = true;
    }
    cv.notify_all();
  });
  Script s;
  s.planner = [&](const RecordedRequest&) {
    std::unique_lock lock(mu);
    asked = true;
    cv.notify_all();
    cv.wait_for(lock, kWait, [&] { return release; });
    return Plan(json::array({PlanTask("t1", "Write the file")}));
  };
  s.coder = WriteThenFinish("t1.txt");
  s.reviewer = Approver();
  Install(h, s);
  const int before = testing::ThreadsOfThisProcess("");  // the fake model's, this one
  Status started = h.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();

  std::vector<std::string> ids;
  for (int i = 0; i < kFeatures; ++i) {
    auto f = h.pipeline().Submit(
        PipelineHarness::Request("Feature " + std::to_string(i), {"test -f t1.txt"}));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ids.push_back(f->id);
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return asked; }));
  }
  // Every feature is being driven (planning), and all but one wait for the
  // planner in its queue.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (const auto& id : ids) {
          auto f = h.store().GetFeature(id);
          if (!f.ok() || f->status != "planning") return false;
        }
        return true;
      },
      kWait));
  const int during = testing::ThreadsOfThisProcess("");
  // The pipeline's own threads (dispatchers, heartbeat, reply router, LLM
  // I/O, a few pool threads) number about 15 here.
  EXPECT_LT(during, before + 32) << "the pipeline with " << kFeatures << " waiting features has "
                                 << during - before << " threads";
  std::cout << "threads: " << before << " before the pipeline, " << during << " with " << kFeatures
            << " features waiting\n";
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  for (const auto& id : ids) {
    auto f = h.pipeline().WaitFor(id, kWait);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->status, "completed") << id;
  }
}

// limits.max_active_features bounds the features driven at once; the rest
// wait as "queued" and start by priority, then in arrival order.
TEST(PipelineDrivers, AtMostMaxActiveFeaturesRunTheRestWaitByPriority) {
  PipelineHarness h(Wire::kOpenAi);
  h.config().limits.max_active_features = 1;
  std::mutex mu;
  std::condition_variable cv;
  bool blocker_asked = false, release = false;  // guarded by mu
  Script s;
  s.planner = [&](const RecordedRequest& req) {
    if (testing::FirstUserText(req).find("Blocker") != std::string::npos) {
      std::unique_lock lock(mu);
      blocker_asked = true;
      cv.notify_all();
      cv.wait_for(lock, kWait, [&] { return release; });
    }
    return Plan(json::array({PlanTask("t1", "Write the file")}));
  };
  s.coder = WriteThenFinish("out.txt");
  s.reviewer = Approver();
  Install(h, s);
  Status started = h.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();

  auto submit = [&](const std::string& title, const std::string& priority) {
    FeatureRequest r = PipelineHarness::Request(title, {"test -f out.txt"});
    r.priority = priority;
    auto f = h.pipeline().Submit(r);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? f->id : std::string();
  };
  const std::string blocker = submit("Blocker", "medium");
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return blocker_asked; }));
  }
  const std::string low = submit("Low one", "low");
  const std::string critical = submit("Critical one", "critical");
  // The one slot is taken: both wait, untouched.
  for (const std::string& id : {low, critical}) {
    auto f = h.store().GetFeature(id);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f->status, "queued") << id;
  }
  EXPECT_EQ(h.fake().request_count(), 1u);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  for (const std::string& id : {blocker, low, critical}) {
    auto f = h.pipeline().WaitFor(id, kWait);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->status, "completed") << id;
  }
  auto planning_seq = [&](const std::string& id) {
    const std::vector<Event> events = h.Events(id);
    const Event* e = FeatureStatusEvent(events, "planning");
    return e ? e->seq : int64_t{0};
  };
  ASSERT_GT(planning_seq(critical), 0);
  EXPECT_LT(planning_seq(critical), planning_seq(low))
      << "the critical feature waited behind a low one";
}

// 14. Memory makes the second feature on a project better informed: what the
// first one learned (the coder's own note, and the coordinator's record of
// the plan) is retrieved into the second one's contexts, and the
// context.retrieved event names it. The project's code was ingested too.
TEST_P(PipelineFakeLlm, SecondFeatureRetrievesWhatTheFirstLearned) {
  Script s;
  std::atomic<int> second_planner_saw_memory{0};
  s.planner = [&](const RecordedRequest& req) {
    if (testing::FirstUserText(req).find("greeting script must be run with bash") !=
        std::string::npos)
      ++second_planner_saw_memory;
    return Plan(json::array({PlanTask("t1", "Write the greeting script")}));
  };
  s.coder = [](const RecordedRequest& req) {
    switch (testing::AssistantTurns(req)) {
      case 0:
        return Write("greet.sh", "#!/bin/bash\necho hello \"$1\"\n");
      case 1:
        return FakeReply::Tools(
            {Call("remember", {{"content", "The greeting script must be run with bash, not sh"},
                               {"type", "code_pattern"},
                               {"importance", 8}})});
      default:
        return Finish("wrote greet.sh");
    }
  };
  s.reviewer = Approver();
  Install(h_, s);

  Feature first = Run(PipelineHarness::Request("Add a greeting script", {"bash greet.sh x"}));
  ASSERT_EQ(first.status, "completed") << FailureMessage(h_.Events(first.id));
  // The coordinator learns after the end: wait for its memories.
  std::set<std::string> stored;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        stored.clear();
        for (const auto& e : h_.Events(first.id))
          if (e.type == "memory.stored") stored.insert(e.data.value("id", ""));
        return stored.size() >= 2;  // the outcome and the plan
      },
      kWait));
  auto remembered = h_.store().FindMemories({"project:default"}, "must be run with bash", 5);
  ASSERT_TRUE(remembered.ok());
  ASSERT_EQ(remembered->size(), 1u);
  stored.insert((*remembered)[0].id);

  // A document committed to the project (its base branch's files are
  // ingested when a feature starts on it).
  {
    std::ofstream style(h_.WorkspaceRoot("default") / "STYLE.md");
    style << "# Greeting style\n\nThe greeting script prints the name in capitals.\n";
  }
  const std::string repo = h_.WorkspaceRoot("default").string();
  ASSERT_EQ(testing::RunCommand({"/usr/bin/git", "-C", repo, "add", "STYLE.md"}).exit_code, 0);
  ASSERT_EQ(testing::RunCommand({"/usr/bin/git", "-C", repo, "-c", "user.name=t", "-c",
                                 "user.email=t@example.com", "commit", "-q", "-m", "style"})
                .exit_code,
            0);
  Feature second =
      Run(PipelineHarness::Request("Let the greeting script greet by name", {"bash greet.sh x"}));
  ASSERT_EQ(second.status, "completed") << FailureMessage(h_.Events(second.id));
  EXPECT_GE(second_planner_saw_memory.load(), 1) << "the planner's context lacked the memory";
  std::set<std::string> used;
  bool ingested_code = false;
  for (const auto& e : h_.Events(second.id)) {
    if (e.type != "context.retrieved") continue;
    for (const auto& id : e.data.value("memories", json::array()))
      used.insert(id.get<std::string>());
    for (const auto& k : e.data.value("knowledge", json::array()))
      ingested_code |= k.get<std::string>().rfind("STYLE.md#", 0) == 0;
  }
  std::vector<std::string> both;
  std::set_intersection(stored.begin(), stored.end(), used.begin(), used.end(),
                        std::back_inserter(both));
  EXPECT_FALSE(both.empty()) << "no memory of the first feature was retrieved";
  EXPECT_TRUE(used.count((*remembered)[0].id)) << "the coder's note was not retrieved";
  EXPECT_TRUE(ingested_code) << "the project's STYLE.md was not retrieved as knowledge";
}

INSTANTIATE_TEST_SUITE_P(Wires, PipelineFakeLlm, ::testing::Values(Wire::kOpenAi, Wire::kAnthropic),
                         [](const auto& info) { return testing::WireName(info.param); });

}  // namespace
}  // namespace af
