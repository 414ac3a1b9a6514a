// kill -9 in the middle of a feature, then start again: the feature completes,
// no model call whose answer was recorded is paid for again, no commit is doubled.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>

#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;

const char* kPrp = R"(# resume demo: two files

## Goal
Create two text files a.txt and b.txt in the workspace, each holding one word, so that the
resume test can check that work finished before a crash is not repeated after the restart.

## Why
Because the pipeline must survive kill -9 at any moment without paying twice for a model answer.

## What
- a.txt contains the word alpha
- b.txt contains the word beta, written only after a.txt exists

## Success Criteria
- a.txt and b.txt exist with the right content

## Tech Stack
bash

## Validation Loop
```bash
grep -qx alpha a.txt && grep -qx beta b.txt
```
)";

// What the model is asked, reduced to who asks and where in the conversation.
std::string KeyOf(const RecordedRequest& r) {
  const json& msgs = r.body["messages"];
  std::string system = msgs[0].value("content", "");
  std::string first_user = msgs.size() > 1 ? msgs[1].value("content", "") : "";
  int turn = 0;
  for (const auto& m : msgs) turn += m.value("role", "") == "assistant";
  std::string role = system.find("You are the planner") != std::string::npos    ? "planner"
                     : system.find("You are the reviewer") != std::string::npos ? "reviewer"
                                                                                : "coder";
  std::string task = first_user.find("# Your task: Write a.txt") != std::string::npos   ? "a"
                     : first_user.find("# Your task: Write b.txt") != std::string::npos ? "b"
                                                                                        : "";
  return role + ":" + task + ":" + std::to_string(turn);
}

FakeReply Answer(const std::string& key) {
  auto tools = [](std::vector<FakeToolCall> calls) {
    FakeReply r = FakeReply::Tools(std::move(calls));
    r.latency = std::chrono::milliseconds(300);
    return r;
  };
  if (key == "planner::0") {
    json plan = {{"tasks",
                  {{{"id", "t1"},
                    {"title", "Write a.txt"},
                    {"description", "a.txt with alpha"},
                    {"role", "coder"}},
                   {{"id", "t2"},
                    {"title", "Write b.txt"},
                    {"description", "b.txt with beta"},
                    {"role", "coder"},
                    {"dependencies", {"t1"}}}}}};
    return tools({{"p1", "submit_plan", plan}});
  }
  if (key == "coder:a:0")
    return tools({{"w1", "write_file", {{"path", "a.txt"}, {"content", "alpha\n"}}}});
  if (key == "coder:b:0")
    return tools({{"w1", "write_file", {{"path", "b.txt"}, {"content", "beta\n"}}}});
  if (key == "coder:a:1" || key == "coder:b:1")
    return tools({{"f1", "finish", {{"summary", "wrote the file"}}}});
  if (key == "reviewer::0") {
    return tools(
        {{"r1", "submit_review", {{"verdict", "approve"}, {"comments", {"the gate passed"}}}}});
  }
  return FakeReply::Status(400, R"({"error":{"message":"unexpected request )" + key + R"("}})");
}

// The environment of a run or serve against `fake`, in the test's directory.
std::map<std::string, std::string> Env(const FakeLlmServer& fake) {
  return {{"AF_LLM_PROVIDER", "openai"},
          {"OPENAI_BASE_URL", fake.base_url() + "/v1"},
          {"OPENAI_API_KEY", "sk-test-resume-0123456789abcdef"},
          {"AF_LLM_MODEL", "gpt-4o-mini"},
          {"AF_DATA_DIR", "\x01unset"},
          {"DATABASE_URL", "\x01unset"},
          {"AF_LOG", "\x01unset"},
          {"AF_PORT", std::to_string(FreePort())}};
}

// The run's store once it has made it (nullptr before), read as it is.
std::unique_ptr<Store> StoreOnceMade(const std::string& db_path) {
  if (!std::filesystem::exists(db_path)) return nullptr;
  auto store = Store::Open({.url = "sqlite:" + db_path, .migrate = false});
  return store.ok() ? std::move(store).value() : nullptr;
}

// The newest feature's id; "" when there is none (yet).
std::string NewestFeatureId(Store& store) {
  auto page = store.ListFeatures({});
  return page.ok() && !page->features.empty() ? page->features[0].id : std::string();
}

TEST(ResumeTest, KillNineMidFeatureThenRestartCompletesWithoutRepeatingPaidCalls) {
  TempDir dir;
  FakeLlmServer fake;
  fake.SetResponder(
      [](const RecordedRequest& r) -> std::optional<FakeReply> { return Answer(KeyOf(r)); });
  auto prp = dir.Write("resume.md", kPrp);
  const std::string db_path = (dir.path() / "data" / "agent-factory.db").string();
  const auto env = Env(fake);

  // First life: killed in the middle of task t2's conversation, once its first
  // model answer is recorded (t1 is committed and completed by then).
  std::string feature_id;
  {
    ChildProcess run({BinaryPath(), "run", prp.string()}, env, dir.path().string());
    bool t2_started = WaitFor(
        [&] {
          if (!run.Running()) return true;
          auto store = StoreOnceMade(db_path);
          if (!store) return false;
          feature_id = NewestFeatureId(*store);
          if (feature_id.empty()) return false;
          auto calls = store->ListLlmCalls(feature_id);
          if (!calls.ok()) return false;
          for (const auto& c : *calls)
            if (c.task_id == feature_id + "-t2") return true;
          return false;
        },
        std::chrono::seconds(60));
    ASSERT_TRUE(t2_started) << run.Out() << run.Err();
    ASSERT_TRUE(run.Running()) << run.Err() << "the feature finished before it could be killed:\n"
                               << run.Out();
    EXPECT_EQ(run.Stop(SIGKILL), -1);
  }
  const size_t requests_before_restart = fake.request_count();

  // Second life: `serve` resumes every unfinished feature.
  ChildProcess serve({BinaryPath(), "serve"}, env, dir.path().string());
  Feature final;
  bool done = WaitFor(
      [&] {
        auto store = Store::Open({.url = "sqlite:" + db_path, .migrate = false});
        if (!store.ok()) return false;
        auto f = (*store)->GetFeature(feature_id);
        if (!f.ok()) return false;
        final = *f;
        return final.status == "completed" || final.status == "failed" ||
               final.status == "cancelled";
      },
      std::chrono::seconds(60));
  ASSERT_TRUE(done) << serve.Err();
  // The log says a feature was resumed and, in one line, how it ended.
  EXPECT_TRUE(WaitFor([&] {
    return serve.Err().find("resumed feature " + feature_id + " ended " + final.status) !=
           std::string::npos;
  })) << serve.Err();
  EXPECT_NE(serve.Err().find("resuming feature " + feature_id), std::string::npos) << serve.Err();
  EXPECT_EQ(serve.Stop(SIGTERM), 0) << serve.Err();
  ASSERT_EQ(final.status, "completed") << final.reason << "\n" << serve.Err();
  EXPECT_GT(fake.request_count(), requests_before_restart);

  // Each conversation step was asked once; only a step in flight at the kill
  // (its answer never recorded) may have been asked twice.
  std::map<std::string, int> asked;
  for (const auto& r : fake.requests()) ++asked[KeyOf(r)];
  int repeated = 0;
  for (const auto& [key, n] : asked) {
    EXPECT_LE(n, 2) << key;
    repeated += n > 1;
  }
  EXPECT_LE(repeated, 1);
  EXPECT_EQ(asked["planner::0"], 1);
  EXPECT_EQ(asked["coder:a:0"], 1);
  EXPECT_EQ(asked["coder:a:1"], 1);
  // t2's first answer was recorded before the kill: the resumed conversation
  // replays it from the store instead of asking (and paying) again.
  EXPECT_EQ(asked["coder:b:0"], 1);
  EXPECT_EQ(asked["reviewer::0"], 1);

  // Recorded answers are unique per request.
  auto store = Store::Open({.url = "sqlite:" + db_path, .migrate = false});
  ASSERT_TRUE(store.ok());
  auto calls = (*store)->ListLlmCalls(feature_id);
  ASSERT_TRUE(calls.ok());
  std::set<std::string> hashes;
  for (const auto& c : *calls) {
    if (c.status == "ok")
      EXPECT_TRUE(hashes.insert(c.request_hash).second) << "paid twice: " << c.request_hash;
  }

  // One commit per task on the feature branch.
  auto log = RunCommand(
      {"/usr/bin/git", "-C", (dir.path() / "data" / "workspaces" / "default").string(), "log",
       "--format=%(trailers:key=Task-Id,valueonly,separator=)", "main..af/" + feature_id});
  ASSERT_EQ(log.exit_code, 0) << log.err;
  EXPECT_EQ(log.out, feature_id + "-t2\n" + feature_id + "-t1\n");
}

// A `run` started after an interrupted one takes up the unfinished feature too
// (it spends model calls on it), and says so with the feature's id.
// After an interrupted run, a run of another request says which unfinished
// features it also resumes; a run of the same request goes on with its
// feature instead of starting (and paying for) a second one.
TEST(ResumeTest, ARunAfterAnInterruptedOneResumesItsFeatureAndNamesTheOthers) {
  TempDir dir;
  FakeLlmServer fake;
  // A run is killed while its model is slow, so surely before its feature ends.
  auto slow = std::make_shared<std::atomic<bool>>(true);
  fake.SetResponder([slow](const RecordedRequest& r) -> std::optional<FakeReply> {
    FakeReply reply = Answer(KeyOf(r));
    if (*slow) reply.latency = std::chrono::seconds(5);
    return reply;
  });
  const std::string db_path = (dir.path() / "data" / "agent-factory.db").string();
  const auto env = Env(fake);
  // Runs `prp` until it has made a feature newer than `before`, kills it and
  // returns the feature's id.
  auto interrupted_run = [&](const std::filesystem::path& prp, const std::string& before) {
    *slow = true;
    std::string made;
    ChildProcess run({BinaryPath(), "run", prp.string()}, env, dir.path().string());
    EXPECT_TRUE(WaitFor(
        [&] {
          auto store = StoreOnceMade(db_path);
          if (!store) return false;
          made = NewestFeatureId(*store);
          return !made.empty() && made != before;
        },
        std::chrono::seconds(60)))
        << run.Err();
    run.Stop(SIGKILL);
    *slow = false;
    return made;
  };
  auto prp = dir.Write("resume.md", kPrp);
  const std::string first = interrupted_run(prp, "");
  ASSERT_FALSE(first.empty());

  // The same request again: its feature goes on.
  auto again = RunCommand({BinaryPath(), "run", prp.string()}, env, dir.path().string());
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("feature " + first + ": "), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("resumed where an earlier run of this request stopped"),
            std::string::npos)
      << again.out;
  EXPECT_EQ(again.err.find("also resuming"), std::string::npos) << again.err;
  {
    auto store = StoreOnceMade(db_path);
    ASSERT_TRUE(store);
    auto all = store->ListFeatures({});
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->features.size(), 1u);
    EXPECT_EQ(all->features[0].status, "completed");
  }

  // Another request interrupted, then the first one run again: a new
  // feature (the first one ended), and the interrupted one is named.
  std::string other_prp = kPrp;
  other_prp.replace(0, std::string("# resume demo").size(), "# another resume demo");
  const std::string second = interrupted_run(dir.Write("other.md", other_prp), first);
  ASSERT_NE(second, first);
  auto third = RunCommand({BinaryPath(), "run", prp.string()}, env, dir.path().string());
  EXPECT_EQ(third.exit_code, 0) << third.err;
  EXPECT_NE(third.err.find("also resuming 1 unfinished feature(s) of this data directory, until "
                           "this run ends:\n  " +
                           second + " ("),
            std::string::npos)
      << third.err;
  EXPECT_EQ(third.out.find("resumed where"), std::string::npos) << third.out;
}

// delivery.command runs outside the sandbox, so it outlives a killed run. The
// next run waits for it to end and records its result instead of starting
// it again beside it (a push made twice at once).
// Without a server, `feature cancel` cancels in the data directory's store:
// an interrupted feature the user gave up on is not resumed (and paid for)
// by the next run of another request.
TEST(ResumeTest, AnInterruptedFeatureIsCancelledWithoutAServer) {
  TempDir dir;
  FakeLlmServer fake;
  fake.SetResponder([](const RecordedRequest& r) -> std::optional<FakeReply> {
    FakeReply reply = Answer(KeyOf(r));
    reply.latency = std::chrono::seconds(5);  // the run is killed before it ends
    return reply;
  });
  const auto env = Env(fake);
  const std::string db_path = (dir.path() / "data" / "agent-factory.db").string();
  std::string id;
  {
    ChildProcess run({BinaryPath(), "run", dir.Write("first.md", kPrp).string()}, env,
                     dir.path().string());
    ASSERT_TRUE(WaitFor(
        [&] {
          auto store = StoreOnceMade(db_path);
          if (store) id = NewestFeatureId(*store);
          return !id.empty();
        },
        std::chrono::seconds(60)))
        << run.Err();
    run.Stop(SIGKILL);
  }
  auto cancel = RunCommand({BinaryPath(), "feature", "cancel", id}, env, dir.path().string());
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_NE(cancel.out.find("Feature " + id + " is cancelled (no server answered"),
            std::string::npos)
      << cancel.out;
  auto store = StoreOnceMade(db_path);
  ASSERT_TRUE(store);
  auto f = store->GetFeature(id);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->status, "cancelled");
  auto again = RunCommand({BinaryPath(), "feature", "cancel", id}, env, dir.path().string());
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("is already cancelled"), std::string::npos) << again.err;
  // Retrying needs a process to drive it: the hint names both ways.
  auto retry = RunCommand({BinaryPath(), "feature", "retry", id}, env, dir.path().string());
  EXPECT_EQ(retry.exit_code, 1);
  EXPECT_NE(retry.err.find("'agent-factory run FILE --retry'"), std::string::npos) << retry.err;
}

// A feature stopped at a limit goes on with `run --retry` once the limit is
// raised: its committed task is not redone, no recorded answer is paid for
// again, and it completes as one feature with one commit per task.
TEST(ResumeTest, ARetryAfterRaisingALimitGoesOnWhereTheFeatureStopped) {
  TempDir dir;
  FakeLlmServer fake;
  std::mutex mu;
  std::vector<std::string> asked;  // guarded by mu
  fake.SetResponder([&](const RecordedRequest& r) -> std::optional<FakeReply> {
    std::lock_guard lock(mu);
    asked.push_back(KeyOf(r));
    return Answer(KeyOf(r));
  });
  auto env = Env(fake);
  const std::string prp = dir.Write("retry.md", kPrp).string();
  auto nothing = RunCommand({BinaryPath(), "run", prp, "--retry"}, env, dir.path().string());
  EXPECT_EQ(nothing.exit_code, 1);
  EXPECT_NE(nothing.err.find("no failed or cancelled feature of this request"), std::string::npos)
      << nothing.err;
  // The planner, t1's two calls and t2's first: t2's second is over the limit.
  env["AF_LIMITS_MAX_STEPS"] = "4";
  auto stopped = RunCommand({BinaryPath(), "run", prp}, env, dir.path().string());
  EXPECT_EQ(stopped.exit_code, 1) << stopped.out;
  EXPECT_NE(stopped.out.find("(max_steps)"), std::string::npos) << stopped.out;
  EXPECT_NE(stopped.out.find("  retry     agent-factory run " + prp + " --retry"),
            std::string::npos)
      << stopped.out;
  size_t paid = 0;
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(asked,
              (std::vector<std::string>{"planner::0", "coder:a:0", "coder:a:1", "coder:b:0"}));
    paid = asked.size();
  }
  env["AF_LIMITS_MAX_STEPS"] = "20";
  auto retried = RunCommand({BinaryPath(), "run", prp, "--retry"}, env, dir.path().string());
  EXPECT_EQ(retried.exit_code, 0) << retried.out << retried.err;
  EXPECT_NE(retried.out.find("retried where it stopped (it had failed: max_steps"),
            std::string::npos)
      << retried.out;
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(std::vector<std::string>(asked.begin() + static_cast<long>(paid), asked.end()),
              (std::vector<std::string>{"coder:b:1", "reviewer::0"}));
  }
  auto store = StoreOnceMade((dir.path() / "data" / "agent-factory.db").string());
  ASSERT_TRUE(store);
  auto all = store->ListFeatures({});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->features.size(), 1u);
  EXPECT_EQ(all->features[0].status, "completed");
  const std::string id = all->features[0].id;
  auto log =
      RunCommand({"/usr/bin/git", "-C", (dir.path() / "data/workspaces/default").string(), "log",
                  "--format=%(trailers:key=Task-Id,valueonly,separator=)", "main..af/" + id});
  EXPECT_EQ(log.out, id + "-t2\n" + id + "-t1\n");
}

// A delivery.command that failed is fixed, and the retry delivers: the
// command runs again and nothing else is redone (no model call).
TEST(ResumeTest, ARetryAfterAFailedDeliveryDeliversOnlyAgain) {
  TempDir dir;
  FakeLlmServer fake;
  std::atomic<int> calls{0};
  fake.SetResponder([&](const RecordedRequest& r) -> std::optional<FakeReply> {
    ++calls;
    return Answer(KeyOf(r));
  });
  auto env = Env(fake);
  const std::string prp = dir.Write("deliver.md", kPrp).string();
  const std::string log = (dir.path() / "deliveries").string();
  env["AF_DELIVERY_COMMAND"] = "echo broken >> " + log + "; exit 3";
  auto failed = RunCommand({BinaryPath(), "run", prp}, env, dir.path().string());
  EXPECT_EQ(failed.exit_code, 1) << failed.out;
  EXPECT_NE(failed.out.find("(delivery_failed)"), std::string::npos) << failed.out;
  EXPECT_NE(failed.err.find("then retry the feature"), std::string::npos) << failed.err;
  const int paid = calls.load();
  env["AF_DELIVERY_COMMAND"] = "echo fixed >> " + log;
  auto retried = RunCommand({BinaryPath(), "run", prp, "--retry"}, env, dir.path().string());
  EXPECT_EQ(retried.exit_code, 0) << retried.out << retried.err;
  EXPECT_EQ(calls.load(), paid);
  EXPECT_EQ(ReadFile(log), "broken\nfixed\n");
}

TEST(ResumeTest, ADeliveryStillRunningAfterAKillIsWaitedForNotRunAgain) {
  TempDir dir;
  FakeLlmServer fake;
  fake.SetResponder(
      [](const RecordedRequest& r) -> std::optional<FakeReply> { return Answer(KeyOf(r)); });
  const auto runs = dir.path() / "deliveries.txt";
  dir.Write("agent-factory.toml", "[delivery]\ncommand = \"echo start >> '" + runs.string() +
                                      "'; sleep 3; echo end >> '" + runs.string() + "'\"\n");
  auto prp = dir.Write("resume.md", kPrp);
  const auto env = Env(fake);
  {
    ChildProcess run({BinaryPath(), "run", prp.string()}, env, dir.path().string());
    ASSERT_TRUE(WaitFor([&] { return ReadFile(runs).find("start") != std::string::npos; },
                        std::chrono::seconds(60)))
        << run.Err();
    run.Stop(SIGKILL);
  }
  EXPECT_EQ(ReadFile(runs), "start\n") << "the command ends after the kill";
  auto again = RunCommand({BinaryPath(), "run", prp.string()}, env, dir.path().string());
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("resumed where an earlier run of this request stopped"),
            std::string::npos)
      << again.out;
  EXPECT_EQ(ReadFile(runs), "start\nend\n");
}

}  // namespace
}  // namespace af::testing
