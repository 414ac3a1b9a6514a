// Crash-point recovery test, the way storage engines test their logs: a
// scripted feature (write, run_command, remember, edit, commit, gate, review,
// delivery) runs once uninterrupted; then, for every side effect k it makes, a
// fresh run is killed (SIGKILL, from inside, deterministically: af/core/fault.h)
// right after the k-th one, `serve` resumes it, and the result must equal the
// uninterrupted run: same branch tree and commit list, the model asked no more
// often, one memory, one delivery.
//
// Sharded (k mod kShards) so ctest runs the shards side by side.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;

constexpr int kShards = 4;

const char* kPrp = R"PRP(# crash points: a greeting script

## Goal
Create a shell script greet.sh that prints hello, then extend it to also print bye, so that the
crash-point test sees every kind of side effect of a feature: files written and edited, commands
run, commits, gates, the review and the delivery.

## Why
Because a feature resumed after kill -9 must end exactly as an uninterrupted one.

## What
- greet.sh prints hello on its first line
- greet.sh prints bye on its second line

## Success Criteria
- bash greet.sh prints hello and bye

## Tech Stack
bash

## Validation Loop
```bash
test "$(bash greet.sh | tr '\n' ' ')" = "hello bye "
```
)PRP";

// Who asks, for which task, at which turn.
std::string KeyOf(const RecordedRequest& r) {
  const json& msgs = r.body["messages"];
  const std::string system = msgs[0].value("content", "");
  const std::string first_user = msgs.size() > 1 ? msgs[1].value("content", "") : "";
  int turn = 0;
  for (const auto& m : msgs) turn += m.value("role", "") == "assistant";
  const std::string role = system.find("You are the planner") != std::string::npos    ? "planner"
                           : system.find("You are the reviewer") != std::string::npos ? "reviewer"
                                                                                      : "coder";
  const std::string task =
      first_user.find("# Your task: Write greet.sh") != std::string::npos    ? "write"
      : first_user.find("# Your task: Extend greet.sh") != std::string::npos ? "extend"
                                                                             : "";
  return role + ":" + task + ":" + std::to_string(turn);
}

FakeReply Answer(const std::string& key) {
  auto tools = [](std::vector<FakeToolCall> calls) { return FakeReply::Tools(std::move(calls)); };
  if (key == "planner::0") {
    json plan = {{"tasks",
                  {{{"id", "t1"},
                    {"title", "Write greet.sh"},
                    {"description", "greet.sh prints hello"},
                    {"role", "coder"},
                    {"files", {"greet.sh"}}},
                   {{"id", "t2"},
                    {"title", "Extend greet.sh"},
                    {"description", "greet.sh also prints bye"},
                    {"role", "coder"},
                    {"dependencies", {"t1"}},
                    {"files", {"greet.sh"}}}}}};
    return tools({{"p1", "submit_plan", plan}});
  }
  if (key == "coder:write:0") {
    return tools({{"w1", "write_file", {{"path", "greet.sh"}, {"content", "echo hello\n"}}},
                  {"c1", "run_command", {{"command", "bash greet.sh"}}}});
  }
  if (key == "coder:write:1") {
    return tools(
        {{"m1", "remember", {{"content", "greet.sh is run with bash"}, {"type", "code_pattern"}}},
         {"f1", "finish", {{"summary", "greet.sh prints hello"}}}});
  }
  if (key == "coder:extend:0") {
    // Applied twice, this edit would leave "bye" twice: what resuming must never do.
    return tools({{"e1",
                   "edit_file",
                   {{"path", "greet.sh"},
                    {"old_text", "echo hello\n"},
                    {"new_text", "echo hello\necho bye\n"}}}});
  }
  if (key == "coder:extend:1") return tools({{"f1", "finish", {{"summary", "greet.sh says bye"}}}});
  if (key == "reviewer::0") {
    return tools(
        {{"r1", "submit_review", {{"verdict", "approve"}, {"comments", {"the gate passed"}}}}});
  }
  return FakeReply::Status(400, R"({"error":{"message":"unexpected request )" + key + R"("}})");
}

struct Outcome {
  bool crashed = false;    // the first life was killed at its crash point
  std::string crash_kind;  // what it had just done
  std::string status, reason;
  std::string tree;           // the branch's tree
  std::string commits;        // per commit: tree, subject, Task-Id (feature id as F)
  std::string script;         // greet.sh on the branch
  size_t model_requests = 0;  // both lives together
  std::string asked;          // who asked what, in order
  int memories = 0;           // the coder's remembered pattern
  int deliveries = 0;         // delivery.result events
  int delivery_runs = 0;      // times delivery.command ran (it appends a line)
  std::string delivery_env;   // the environment it ran with
  std::string log;            // for failure messages
};

std::string Git(const std::filesystem::path& repo, std::vector<std::string> args) {
  std::vector<std::string> argv = {"/usr/bin/git", "-C", repo.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv);
  return r.exit_code == 0 ? r.out : "git failed: " + r.err;
}

// Crash point `n` and its kind from a trace file ("<n> <kind>" lines).
std::vector<std::string> ReadTrace(const std::filesystem::path& p) {
  std::vector<std::string> kinds;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    auto sp = line.find(' ');
    if (sp != std::string::npos) kinds.push_back(line.substr(sp + 1));
  }
  return kinds;
}

class CrashPointTest : public ::testing::TestWithParam<int> {
 protected:
  // One feature from a fresh data directory; crash_after = 0: uninterrupted.
  Outcome Run(int crash_after, std::vector<std::string>* trace = nullptr) {
    Outcome o;
    TempDir dir;
    auto prp = dir.Write("greet.md", kPrp);
    const auto runs_file = dir.path() / "deliveries.txt";
    const auto env_file = dir.path() / "delivery.env";
    dir.Write("agent-factory.toml", "[delivery]\ncommand = \"bash greet.sh && echo ran >> '" +
                                        runs_file.string() + "' && env > '" + env_file.string() +
                                        "'\"\n");
    const auto trace_file = dir.path() / "trace";
    std::map<std::string, std::string> env = {{"AF_LLM_PROVIDER", "openai"},
                                              {"OPENAI_BASE_URL", fake_.base_url() + "/v1"},
                                              {"OPENAI_API_KEY", "sk-test-crash-0123456789abcdef"},
                                              {"AF_LLM_MODEL", "gpt-4o-mini"},
                                              {"AF_DATA_DIR", "\x01unset"},
                                              {"DATABASE_URL", "\x01unset"},
                                              {"AF_LOG", "\x01unset"},
                                              {"AF_PORT", std::to_string(FreePort())},
                                              {"AF_TEST_CRASH_TRACE", trace_file.string()}};
    if (crash_after > 0) env["AF_TEST_CRASH_AFTER"] = std::to_string(crash_after);
    const size_t asked_before = fake_.request_count();

    auto first = RunCommand({BinaryPath(), "run", prp.string()}, env, dir.path().string());
    o.log = "first life (exit " + std::to_string(first.exit_code) + "):\n" + first.err;
    const auto kinds = ReadTrace(trace_file);
    if (trace) *trace = kinds;
    o.crashed = first.exit_code == -1;
    if (o.crashed && crash_after >= 1 && static_cast<size_t>(crash_after) <= kinds.size())
      o.crash_kind = kinds[crash_after - 1];

    const std::string db_path = (dir.path() / "data" / "agent-factory.db").string();
    auto feature = [&]() -> std::optional<Feature> {
      auto store = Store::Open({.url = "sqlite:" + db_path, .migrate = false});
      if (!store.ok()) return std::nullopt;
      auto page = (*store)->ListFeatures({});
      if (!page.ok() || page->features.empty()) return std::nullopt;
      return page->features[0];
    };
    if (o.crashed) {
      // Second life: serve resumes the feature (if it was accepted at all).
      env.erase("AF_TEST_CRASH_AFTER");
      env["AF_TEST_CRASH_TRACE"] = (dir.path() / "trace2").string();
      ChildProcess serve({BinaryPath(), "serve"}, env, dir.path().string());
      bool ended = WaitFor(
          [&] {
            auto f = feature();
            return !serve.Running() || (f && (f->status == "completed" || f->status == "failed" ||
                                              f->status == "cancelled"));
          },
          std::chrono::seconds(90));
      serve.Stop(SIGTERM);
      o.log += "\nsecond life (ended: " + std::to_string(ended) + "):\n" + serve.Err();
    }
    o.model_requests = fake_.request_count() - asked_before;
    const auto all = fake_.requests();
    for (size_t i = asked_before; i < all.size(); ++i) o.asked += KeyOf(all[i]) + " ";

    auto f = feature();
    if (!f) {
      o.status = "(no feature)";
      return o;
    }
    o.status = f->status;
    o.reason = f->reason;
    const auto repo = dir.path() / "data" / "workspaces" / "default";
    const std::string branch = "af/" + f->id;
    o.tree = Git(repo, {"rev-parse", branch + "^{tree}"});
    o.commits = std::regex_replace(
        Git(repo,
            {"log", "--reverse", "--format=%T %s [%(trailers:key=Task-Id,valueonly,separator=)]",
             "main.." + branch}),
        std::regex(f->id), "F");
    o.script = Git(repo, {"show", branch + ":greet.sh"});
    auto store = Store::Open({.url = "sqlite:" + db_path, .migrate = false});
    if (store.ok()) {
      auto mems = (*store)->FindMemories({"project:default"}, "greet.sh is run with bash", 50);
      if (mems.ok())
        for (const auto& m : *mems) o.memories += m.type == "code_pattern";
      auto events = (*store)->ListEvents({.feature_id = f->id, .limit = 10000});
      if (events.ok())
        for (const auto& e : *events) o.deliveries += e.type == "delivery.result";
    }
    std::ifstream runs(runs_file);
    for (std::string line; std::getline(runs, line);) o.delivery_runs += line == "ran";
    o.delivery_env = ReadFile(env_file);
    return o;
  }

  FakeLlmServer fake_;

  void SetUp() override {
    fake_.SetResponder(
        [](const RecordedRequest& r) -> std::optional<FakeReply> { return Answer(KeyOf(r)); });
  }
};

TEST_P(CrashPointTest, EveryCrashPointResumesToTheUninterruptedResult) {
  std::vector<std::string> kinds;
  const Outcome base = Run(0, &kinds);
  ASSERT_EQ(base.status, "completed") << base.reason << "\n" << base.log;
  ASSERT_FALSE(base.crashed);
  EXPECT_EQ(base.script, "echo hello\necho bye\n");
  EXPECT_EQ(base.memories, 1);
  EXPECT_EQ(base.deliveries, 1);
  EXPECT_EQ(base.delivery_runs, 1);
  // It runs outside the sandbox (it wrote outside the worktree above), told
  // what was delivered, and without the server's secrets.
  EXPECT_NE(base.delivery_env.find("AF_BRANCH=af/"), std::string::npos) << base.delivery_env;
  EXPECT_NE(base.delivery_env.find("AF_COMMIT="), std::string::npos) << base.delivery_env;
  EXPECT_EQ(base.delivery_env.find("sk-test-crash"), std::string::npos) << base.delivery_env;
  // Two task commits, in order.
  EXPECT_NE(base.commits.find("Write greet.sh [F-t1]"), std::string::npos) << base.commits;
  EXPECT_NE(base.commits.find("Extend greet.sh [F-t2]"), std::string::npos) << base.commits;

  // Every kind of side effect has crash points.
  const std::set<std::string> seen(kinds.begin(), kinds.end());
  for (const char* kind : {"tool write_file", "tool run_command", "tool remember", "tool edit_file",
                           "commit", "gate", "event review.verdict", "delivery",
                           "event delivery.result", "llm call", "event feature.created",
                           "event task.status", "event feature.status", "worktree checkout"}) {
    EXPECT_TRUE(seen.count(kind)) << "no crash point of kind '" << kind << "'";
  }
  const int total = static_cast<int>(kinds.size());
  ASSERT_GT(total, 20);

  int tried = 0;
  for (int k = 1 + GetParam(); k <= total; k += kShards) {
    const Outcome o = Run(k);
    if (!o.crashed) continue;  // thread interleaving left fewer points this time
    ++tried;
    const std::string at = "crash after point " + std::to_string(k) + " (" + o.crash_kind + ")";
    EXPECT_EQ(o.status, base.status) << at << ": " << o.reason << "\n" << o.log;
    EXPECT_EQ(o.tree, base.tree) << at;
    EXPECT_EQ(o.commits, base.commits) << at;
    EXPECT_EQ(o.script, base.script) << at;
    // No model answer that was recorded is asked for (and paid) again: every
    // crash point comes after the recording of the calls before it.
    EXPECT_EQ(o.model_requests, base.model_requests)
        << at << "\nasked: " << o.asked << "\nuninterrupted: " << base.asked << "\n"
        << o.log;
    EXPECT_EQ(o.memories, 1) << at;
    EXPECT_EQ(o.deliveries, 1) << at;
    EXPECT_EQ(o.delivery_runs, 1) << at;
  }
  std::cout << "shard " << GetParam() << ": " << tried << " of " << total
            << " crash points tried (every " << kShards << "th)\n";
  EXPECT_GT(tried, total / kShards / 2) << "most runs should reach their crash point";
}

INSTANTIATE_TEST_SUITE_P(Shards, CrashPointTest, ::testing::Range(0, kShards));

}  // namespace
}  // namespace af::testing
