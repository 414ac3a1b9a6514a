// SIGTERM stops the process within about 2 s whatever is in flight (a slow
// model call, a validation gate that sleeps), and the next start resumes the
// interrupted work to the end. And the log file keeps its info lines when the
// process is killed with SIGKILL.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/pipeline_harness.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

// Generous for CI; measured locally: about 0.3 s. Without the prompt stop the
// exit waits out the 60 s reply or the 60 s gate.
constexpr double kStopBoundSeconds = 10.0;

std::string Prp(const std::string& gate) {
  return R"(# prompt stop demo: one file

## Goal
Create a text file a.txt in the workspace holding one word, so that the stop test can
interrupt the work at a slow step and check that the next start finishes it.

## Why
Because a stop must take at most two seconds with a slow step in flight, and must lose no work.

## What
- a.txt contains the word alpha

## Success Criteria
- a.txt exists with the right content

## Tech Stack
bash

## Validation Loop
```bash
)" + gate +
         R"(
```
)";
}

// The scripted model; the planner's first answer takes `planner_latency`.
FakeReply Answer(const RecordedRequest& r, std::chrono::milliseconds planner_latency) {
  const std::string role = AgentRoleOf(r);
  const int turn = AssistantTurns(r);
  if (role == "planner") {
    json plan = {{"tasks",
                  {{{"id", "t1"},
                    {"title", "Write a.txt"},
                    {"description", "a.txt with alpha"},
                    {"role", "coder"}}}}};
    FakeReply reply = FakeReply::Tools({Call("submit_plan", plan, "p1")});
    reply.latency = planner_latency;
    return reply;
  }
  if (role == "coder" && turn == 0)
    return FakeReply::Tools(
        {Call("write_file", {{"path", "a.txt"}, {"content", "alpha\n"}}, "w1")});
  if (role == "coder")
    return FakeReply::Tools({Call("finish", {{"summary", "wrote a.txt"}}, "f1")});
  if (role == "reviewer") {
    return FakeReply::Tools(
        {Call("submit_review", {{"verdict", "approve"}, {"comments", {"fine"}}}, "r1")});
  }
  return FakeReply::Status(400, R"({"error":{"message":"unexpected request"}})");
}

std::map<std::string, std::string> Env(const FakeLlmServer& fake) {
  return {{"AF_LLM_PROVIDER", "openai"},
          {"OPENAI_BASE_URL", fake.base_url() + "/v1"},
          {"OPENAI_API_KEY", "sk-test-stop-0123456789abcdef"},
          {"AF_LLM_MODEL", "gpt-4o-mini"},
          {"AF_DATA_DIR", "\x01unset"},
          {"DATABASE_URL", "\x01unset"},
          {"REDIS_URL", "\x01unset"},
          {"AF_LOG", "\x01unset"},
          {"AF_PORT", std::to_string(FreePort())}};
}

// The only feature of the data directory under `dir`, as stored now.
std::optional<Feature> TheFeature(const TempDir& dir) {
  const auto db = dir.path() / "data" / "agent-factory.db";
  if (!std::filesystem::exists(db)) return std::nullopt;
  auto store = Store::Open({.url = "sqlite:" + db.string(), .migrate = false});
  if (!store.ok()) return std::nullopt;
  auto page = (*store)->ListFeatures({});
  if (!page.ok() || page->features.empty()) return std::nullopt;
  return page->features[0];
}

// Sends SIGTERM and returns how long the process took to exit (-1 if it did
// not within 70 s).
double SecondsToStop(ChildProcess& p, int* exit_code) {
  const auto t0 = std::chrono::steady_clock::now();
  *exit_code = p.Stop(SIGTERM, seconds(70));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return *exit_code == -2 ? -1 : took;
}

// The next start (`serve`) resumes the feature and completes it.
void ExpectResumedToCompletion(const TempDir& dir, const FakeLlmServer& fake) {
  ChildProcess serve({BinaryPath(), "serve"}, Env(fake), dir.path().string());
  std::optional<Feature> f;
  bool ended = WaitFor(
      [&] {
        f = TheFeature(dir);
        return f && (f->status == "completed" || f->status == "failed" || f->status == "cancelled");
      },
      seconds(90));
  ASSERT_TRUE(ended) << "the resumed feature did not end; it is "
                     << (f ? f->status : std::string("missing")) << "\n"
                     << serve.Err();
  EXPECT_EQ(f->status, "completed") << f->reason << "\n" << serve.Err();
  // Signals sent before serve listens for them would kill it.
  ASSERT_TRUE(WaitFor([&] { return serve.Out().find("listening on") != std::string::npos; }));
  EXPECT_EQ(serve.Stop(SIGTERM, seconds(20)), 0) << serve.Err();
}

TEST(PromptStopTest, SigtermDuringASlowModelCallExitsAtOnceAndTheWorkResumes) {
  TempDir dir;
  FakeLlmServer fake;
  std::atomic<bool> slow{true};
  fake.SetResponder([&slow](const RecordedRequest& r) -> std::optional<FakeReply> {
    return Answer(r, slow ? std::chrono::milliseconds(60000) : std::chrono::milliseconds(0));
  });
  auto prp = dir.Write("stop.md", Prp("grep -qx alpha a.txt"));
  {
    ChildProcess run({BinaryPath(), "run", prp.string()}, Env(fake), dir.path().string());
    ASSERT_TRUE(WaitFor([&] { return fake.request_count() >= 1 || !run.Running(); }, seconds(30)))
        << run.Err();
    ASSERT_TRUE(run.Running()) << run.Out() << run.Err();
    int code = 0;
    const double took = SecondsToStop(run, &code);
    std::printf("stop during a 60 s model call took %.2f s\n", took);
    ASSERT_GE(took, 0) << "still running 70 s after SIGTERM\n" << run.Err();
    EXPECT_LT(took, kStopBoundSeconds) << run.Err();
    EXPECT_EQ(code, 130) << run.Err();
    EXPECT_NE(run.Err().find("goes on with 'agent-factory serve'"), std::string::npos) << run.Err();
  }
  // The abandoned call was not retried after the stop.
  EXPECT_EQ(fake.request_count(), 1u);
  auto f = TheFeature(dir);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, "planning");  // stays where it was: nothing marked failed
  slow = false;
  ExpectResumedToCompletion(dir, fake);
}

// True once a file named `name` exists anywhere under `root`.
bool ExistsUnder(const std::filesystem::path& root, const std::string& name) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           root, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() == name) return true;
  }
  return false;
}

TEST(PromptStopTest, SigtermDuringASleepingGateKillsItAtOnceAndTheGatesRunAgain) {
  TempDir dir;
  FakeLlmServer fake;
  fake.SetResponder([](const RecordedRequest& r) -> std::optional<FakeReply> {
    return Answer(r, std::chrono::milliseconds(0));
  });
  // The gate sleeps while a flag outside the worktree exists (readable in the
  // sandbox through sandbox.read_only_paths); the test removes it before the
  // restart. The gate marks the worktree when it runs, to say it started
  // (the restart puts the worktree back to its last commit, mark included).
  const auto flags = dir.path() / "flags";
  const auto slow = dir.Write("flags/slow", "");
  dir.Write("agent-factory.toml", "[sandbox]\nread_only_paths = [\"" + flags.string() + "\"]\n");
  auto prp = dir.Write("stop.md", Prp("touch .gate-started; if test -e " + slow.string() +
                                      "; then sleep 60; fi; grep -qx alpha a.txt"));
  {
    ChildProcess run({BinaryPath(), "run", prp.string()}, Env(fake), dir.path().string());
    ASSERT_TRUE(
        WaitFor([&] { return ExistsUnder(dir.path() / "data", ".gate-started") || !run.Running(); },
                seconds(60)))
        << run.Err();
    ASSERT_TRUE(run.Running()) << run.Out() << run.Err();
    int code = 0;
    const double took = SecondsToStop(run, &code);
    std::printf("stop during a 60 s gate took %.2f s\n", took);
    ASSERT_GE(took, 0) << "still running 70 s after SIGTERM\n" << run.Err();
    EXPECT_LT(took, kStopBoundSeconds) << run.Err();
    EXPECT_EQ(code, 130) << run.Err();
  }
  auto f = TheFeature(dir);
  ASSERT_TRUE(f);
  // The killed gate's result was not taken as a failure. The first run of the
  // gate is the coder's finish check (the tester's comes after): either is
  // where the stop may land.
  EXPECT_TRUE(f->status == "implementing" || f->status == "testing") << f->status;
  std::filesystem::remove(slow);
  ExpectResumedToCompletion(dir, fake);
}

TEST(PromptStopTest, InfoLinesAreInTheLogFileAfterKillNine) {
  TempDir dir;
  FakeLlmServer fake;
  ChildProcess serve({BinaryPath(), "serve"}, Env(fake), dir.path().string());
  ASSERT_TRUE(
      WaitFor([&] { return serve.Out().find("listening on") != std::string::npos; }, seconds(30)))
      << serve.Err();
  const auto log_file = dir.path() / "data" / "logs" / "agent-factory.log";
  // No warning comes after this info line to flush it; the periodic flush must.
  EXPECT_TRUE(WaitFor([&] { return ReadFile(log_file).find("listening on") != std::string::npos; },
                      seconds(5)))
      << "the info line is not in the file 5 s after it was logged";
  EXPECT_EQ(serve.Stop(SIGKILL), -1);
  EXPECT_NE(ReadFile(log_file).find("listening on"), std::string::npos);
}

}  // namespace
}  // namespace af::testing
