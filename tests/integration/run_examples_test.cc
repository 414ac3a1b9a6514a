// `agent-factory run examples/prp/X.md` offline (replay provider): every
// example reaches completed, its branch exists, and its gates pass when run by
// hand on a checkout of that branch.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "af/agents/prp.h"
#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

class RunExamplesTest : public ::testing::TestWithParam<std::string> {};

const std::map<std::string, std::string> kOffline = {
    {"AF_LLM_PROVIDER", "\x01unset"}, {"ANTHROPIC_API_KEY", "\x01unset"},
    {"OPENAI_API_KEY", "\x01unset"},  {"AF_DATA_DIR", "\x01unset"},
    {"DATABASE_URL", "\x01unset"},    {"AF_LOG", "\x01unset"}};

TEST_P(RunExamplesTest, CompletesOfflineAndTheBranchPassesItsGates) {
  TempDir dir;
  const std::string prp = std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/" + GetParam() + ".md";
  auto run = RunCommand({BinaryPath(), "run", prp, "--json"}, kOffline, dir.path().string());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  auto report = nlohmann::json::parse(run.out);
  EXPECT_EQ(report["status"], "completed");
  EXPECT_FALSE(report["tasks"].empty());
  for (const auto& t : report["tasks"]) {
    EXPECT_EQ(t["status"], "completed") << t.dump();
    EXPECT_FALSE(t["commit"].get<std::string>().empty()) << t.dump();
  }
  EXPECT_EQ(report["review"], "approve");
  EXPECT_TRUE(report["error"].is_null()) << report["error"];
  for (const auto& a : report["artifacts"])
    EXPECT_TRUE(std::filesystem::exists(a.get<std::string>())) << a;

  auto request = LoadPrpFile(prp);
  ASSERT_TRUE(request.ok());
  const std::string repo = (dir.path() / "data" / "workspaces" / request->project).string();
  const std::string branch = report["branch"];
  auto checkout = dir.path() / "checkout";
  auto clone = RunCommand({"/usr/bin/git", "clone", "-q", "-b", branch, repo, checkout.string()});
  ASSERT_EQ(clone.exit_code, 0) << clone.err;
  for (const auto& gate : request->validation_gates) {
    auto g = RunCommand({"/bin/sh", "-c", gate}, {}, checkout.string());
    EXPECT_EQ(g.exit_code, 0) << gate << "\n" << g.out << g.err;
  }
  // What was learned is stored as a memory of the project.
  auto store = Store::Open(
      {.url = "sqlite:" + (dir.path() / "data" / "agent-factory.db").string(), .migrate = false});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto memories = (*store)->FindMemories({"project:" + request->project}, "completed", 10);
  ASSERT_TRUE(memories.ok());
  ASSERT_EQ(memories->size(), 1u);
  EXPECT_EQ((*memories)[0].type, "success");
  EXPECT_NE((*memories)[0].content.find(request->title), std::string::npos)
      << (*memories)[0].content;

  // One commit per task, each carrying its task id.
  auto log =
      RunCommand({"/usr/bin/git", "-C", repo, "log",
                  "--format=%(trailers:key=Task-Id,valueonly,separator=)", "main.." + branch});
  std::string expected;
  for (auto it = report["tasks"].rbegin(); it != report["tasks"].rend(); ++it)
    expected += (*it)["id"].get<std::string>() + "\n";
  EXPECT_EQ(log.out, expected);
}

INSTANTIATE_TEST_SUITE_P(Examples, RunExamplesTest,
                         ::testing::Values("python-slugify", "cpp-ring-buffer", "shell-wordfreq"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

size_t Count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t pos = text.find(part); pos != std::string::npos; pos = text.find(part, pos + 1)) ++n;
  return n;
}

// The registered worktrees of a repository ("worktree PATH" lines).
std::vector<std::string> Worktrees(const std::string& repo) {
  auto r = RunCommand({"/usr/bin/git", "-C", repo, "worktree", "list", "--porcelain"});
  std::vector<std::string> paths;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("worktree ", 0) == 0) paths.push_back(line.substr(9));
  return paths;
}

// A delivered feature leaves its branch, not a checked-out worktree: the user
// can check the branch out in the project's repository.
TEST(RunCommandTest, TheDeliveredBranchCanBeCheckedOutInTheWorkspace) {
  TempDir dir;
  const std::string prp = std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md";
  const auto data = dir.path() / "D";
  auto run = RunCommand({BinaryPath(), "run", prp, "--data-dir", data.string(), "--json"}, kOffline,
                        dir.path().string());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  auto report = nlohmann::json::parse(run.out);
  auto request = LoadPrpFile(prp);
  ASSERT_TRUE(request.ok());
  const std::string repo = (data / "workspaces" / request->project).string();
  EXPECT_EQ(Worktrees(repo), std::vector<std::string>{std::filesystem::canonical(repo).string()});
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(repo) / ".af" / "worktrees" /
                                       report["id"].get<std::string>()));
  auto checkout = RunCommand({"/usr/bin/git", "-C", repo, "checkout", "-q", report["branch"]});
  EXPECT_EQ(checkout.exit_code, 0) << checkout.err;
  auto head = RunCommand({"/usr/bin/git", "-C", repo, "rev-parse", "HEAD"});
  EXPECT_EQ(head.out, report["commit"].get<std::string>() + "\n");

  // A crash between the feature's end and the removal leaves the worktree;
  // the next process to resume features removes it.
  ASSERT_EQ(RunCommand({"/usr/bin/git", "-C", repo, "checkout", "-q", "main"}).exit_code, 0);
  const std::string left = repo + "/.af/worktrees/" + report["id"].get<std::string>();
  auto add = RunCommand({"/usr/bin/git", "-C", repo, "worktree", "add", "-q", left,
                         report["branch"].get<std::string>()});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  auto again = RunCommand({BinaryPath(), "run", prp, "--data-dir", data.string(), "--json"},
                          kOffline, dir.path().string());
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_FALSE(std::filesystem::exists(left));
  EXPECT_EQ(Worktrees(repo), std::vector<std::string>{std::filesystem::canonical(repo).string()});
}

// The merge command `run` prints works as printed: afterwards the base
// branch holds the feature, and the project's next feature builds on it.
TEST(RunCommandTest, ThePrintedMergeCommandBringsTheFeatureIntoTheBaseBranch) {
  TempDir dir;
  const std::string prp = std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md";
  const auto data = dir.path() / "my data";  // a path the command must quote
  auto run = RunCommand({BinaryPath(), "run", prp, "--data-dir", data.string()}, kOffline,
                        dir.path().string());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const std::string label = "  merge     ";
  const size_t at = run.out.find(label);
  ASSERT_NE(at, std::string::npos) << run.out;
  const std::string line =
      run.out.substr(at + label.size(), run.out.find('\n', at) - at - label.size());
  const std::string command = line.substr(0, line.find("   ("));
  auto request = LoadPrpFile(prp);
  ASSERT_TRUE(request.ok());
  const std::string repo = (data / "workspaces" / request->project).string();
  // Whatever the user has checked out meanwhile, the feature goes into the
  // base branch, where the next feature starts.
  ASSERT_EQ(RunCommand({"/usr/bin/git", "-C", repo, "checkout", "-q", "-b", "dev"}).exit_code, 0);
  auto merged = RunCommand({"/bin/sh", "-c", command}, {}, dir.path().string());
  ASSERT_EQ(merged.exit_code, 0) << command << "\n" << merged.err;
  auto files = RunCommand({"/usr/bin/git", "-C", repo, "ls-tree", "-r", "--name-only", "main"});
  EXPECT_NE(files.out.find("bin/wordfreq"), std::string::npos) << files.out;
}

// Everything a run leaves in the data directory (the database, the project's
// repository and worktrees, artifacts, the knowledge base) is the user's
// alone, even when the caller's umask would let others read it.
TEST(RunCommandTest, TheDataDirectoryIsPrivateWhateverTheUmask) {
  TempDir dir;
  const std::string prp = std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md";
  const auto data = dir.path() / "D";
  const mode_t before = umask(022);
  auto run = RunCommand({BinaryPath(), "run", prp, "--data-dir", data.string(), "--json"}, kOffline,
                        dir.path().string());
  umask(before);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  int checked = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(data)) {
    if (e.is_symlink()) continue;
    struct stat st {};
    ASSERT_EQ(::lstat(e.path().c_str(), &st), 0) << e.path();
    EXPECT_EQ(st.st_mode & 077, 0u) << e.path() << " is mode " << std::oct << (st.st_mode & 07777);
    ++checked;
  }
  EXPECT_GT(checked, 50);  // the repository, its worktree's leftovers, kb/, artifacts/
}

TEST(RunCommandTest, AVagueRequestIsChallengedWithExitTwoAndChangesNothing) {
  TempDir dir;
  auto prp = dir.Write("vague.md", "# Make it better\n\nJust make it quick and easy somehow.\n");
  auto validate =
      RunCommand({BinaryPath(), "validate", prp.string()}, kOffline, dir.path().string());
  EXPECT_EQ(validate.exit_code, 2);
  for (const char* issue :
       {"Tech stack not specified", "Success criteria not provided", "Prompt lacks detail",
        "Vague requirement: 'just'", "Vague requirement: 'quick'", "Vague requirement: 'easy'",
        "Vague requirement: 'somehow'"}) {
    EXPECT_NE(validate.out.find(issue), std::string::npos) << issue << "\n" << validate.out;
  }
  auto run = RunCommand({BinaryPath(), "run", prp.string()}, kOffline, dir.path().string());
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("Work plan challenged"), std::string::npos) << run.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));
}

TEST(RunCommandTest, ABadProjectIsRefusedBeforeAnythingIsCreated) {
  TempDir dir;
  const auto data = dir.path() / "D";
  auto run = RunCommand(
      {BinaryPath(), "run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md",
       "--project", "../evil", "--data-dir", data.string()},
      kOffline, dir.path().string());
  EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
  EXPECT_NE(
      run.err.find("--project: project must match [A-Za-z0-9][A-Za-z0-9._-]{0,63} (got '../evil')"),
      std::string::npos)
      << run.err;
  EXPECT_FALSE(std::filesystem::exists(data));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "evil"));
}

TEST(RunCommandTest, ZeroReplicasOfANeededRoleIsRefusedInsteadOfHanging) {
  TempDir dir;
  auto env = kOffline;
  env["AF_AGENTS_CODER_REPLICAS"] = "0";
  auto run = RunCommand(
      {BinaryPath(), "run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md"},
      env, dir.path().string());
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("environment AF_AGENTS_CODER_REPLICAS: agents.coder.replicas: is 0"),
            std::string::npos)
      << run.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));
}

TEST(RunCommandTest, ValidateAcceptsEveryExampleAndNamesAMissingFile) {
  for (const char* ex : {"python-slugify", "cpp-ring-buffer", "shell-wordfreq"}) {
    auto r = RunCommand({BinaryPath(), "validate",
                         std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/" + ex + ".md"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("Work plan OK"), std::string::npos) << r.out;
  }
  auto missing = RunCommand({BinaryPath(), "run", "/nonexistent/feature.md"}, kOffline);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("/nonexistent/feature.md"), std::string::npos) << missing.err;
}

TEST(RunCommandTest, AnUnrecordedRequestFailsWithHowToConfigureARealModel) {
  TempDir dir;
  auto prp = dir.Write("other.md", R"(# Count lines in a file

## Goal
Write a bash script `count.sh` that prints the number of lines of the file given as its argument,
because the team wants a tiny tool to check log sizes in scripts without remembering wc flags.

## What
- count.sh FILE prints the line count of FILE
- a missing FILE prints an error and exits 1

## Success Criteria
- `bash count.sh count.sh` prints a number

## Tech Stack
bash

## Validation Loop
```bash
bash count.sh count.sh
```
)");
  auto run = RunCommand({BinaryPath(), "run", prp.string()}, kOffline, dir.path().string());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.out.find("failed (agent_error)"), std::string::npos) << run.out;
  // The error is printed once, on stderr, with its hint on a line of its own.
  EXPECT_EQ(Count(run.out + run.err, "no recorded response for role=planner"), 1u)
      << run.out << run.err;
  EXPECT_NE(run.err.find("error: no recorded response for role=planner"), std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("\n  hint: the replay provider only knows"), std::string::npos) << run.err;
  EXPECT_EQ(Count(run.out + run.err, "AF_LLM_PROVIDER=anthropic"), 1u) << run.out << run.err;

  // --json: the report names the error, message and hint apart.
  auto json_run =
      RunCommand({BinaryPath(), "run", prp.string(), "--json"}, kOffline, dir.path().string());
  EXPECT_EQ(json_run.exit_code, 1);
  auto report = nlohmann::json::parse(json_run.out);
  EXPECT_EQ(report["status"], "failed");
  EXPECT_EQ(report["reason"], "agent_error");
  EXPECT_EQ(report["error"]["message"],
            "no recorded response for role=planner turn=0 (replay provider)")
      << report.dump(2);
  EXPECT_NE(report["error"]["hint"].get<std::string>().find("AF_LLM_PROVIDER=anthropic"),
            std::string::npos)
      << report.dump(2);
  EXPECT_EQ(Count(json_run.err, "no recorded response for role=planner"), 1u) << json_run.err;
  // A failed feature does not keep its worktree either.
  const std::string repo = (dir.path() / "data" / "workspaces" / "default").string();
  EXPECT_EQ(Worktrees(repo), std::vector<std::string>{std::filesystem::canonical(repo).string()});
}

// A provider that refuses the key: the feature fails and says so once, on
// stderr, with what to do (not again in the progress lines or the log).
TEST(RunCommandTest, AnAuthFailureIsReportedOnceWithItsHint) {
  TempDir dir;
  FakeLlmServer fake;
  fake.SetResponder([](const RecordedRequest&) -> std::optional<FakeReply> {
    return FakeReply::Status(
        401,
        R"({"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}})");
  });
  auto env = kOffline;
  env["AF_LLM_PROVIDER"] = "anthropic";
  env["ANTHROPIC_API_KEY"] = "sk-ant-test-wrong-0123456789abcdef";
  env["ANTHROPIC_BASE_URL"] = fake.base_url();
  env["AF_LLM_MODEL"] = "claude-sonnet-4-5";
  auto run = RunCommand(
      {BinaryPath(), "run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md"},
      env, dir.path().string());
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_EQ(Count(run.out + run.err, "Invalid API key"), 1u) << run.out << run.err;
  EXPECT_NE(run.err.find("error: Invalid API key for anthropic (HTTP 401)\n  hint: "),
            std::string::npos)
      << run.err;
  EXPECT_EQ(Count(run.out + run.err, "config show-key"), 1u) << run.out << run.err;
}

// The model's commands, outputs and review comments are shown by `run`, with
// their terminal escapes escaped: a model cannot retitle or recolour the
// user's terminal. Scripted with a replay file of our own.
TEST(RunOutputTest, TheModelsTerminalEscapesAreShownEscaped) {
  TempDir dir;
  const std::string title = "escapes: one file";
  dir.Write("prp.md",
            "# " + title + "\n\n## Goal\nWrite x.txt holding one line.\n\n## Tech Stack\nbash\n");
  const std::string esc = "\x1b]0;PWNED\x07\x1b[31mRED\x1b[0m";
  auto line = [](const std::string& role, const std::string& contains, int turn,
                 const nlohmann::json& calls) {
    return nlohmann::json{{"match", {{"role", role}, {"contains", contains}, {"turn", turn}}},
                          {"response", {{"text", "."}, {"tool_calls", calls}}}}
               .dump() +
           "\n";
  };
  auto call = [](const std::string& name, const nlohmann::json& args) {
    return nlohmann::json{{"id", name + "-1"}, {"name", name}, {"arguments", args}};
  };
  const nlohmann::json task = {{"id", "t1"},
                               {"role", "coder"},
                               {"title", "Write x"},
                               {"description", "x.txt with one line"},
                               {"files", nlohmann::json::array({"x.txt"})},
                               {"dependencies", nlohmann::json::array()}};
  dir.Write("replay.jsonl",
            line("planner", "# Feature: " + title, 0,
                 nlohmann::json::array(
                     {call("submit_plan", {{"tasks", nlohmann::json::array({task})}})})) +
                line("coder", "# Your task: Write x", 0,
                     {call("write_file", {{"path", "x.txt"}, {"content", "x\n"}}),
                      call("run_command", {{"command", "printf '" + esc + "'"}})}) +
                line("coder", "# Your task: Write x", 1,
                     nlohmann::json::array({call("finish", {{"summary", "wrote x.txt " + esc}})})) +
                line("reviewer", "# Feature: " + title, 0,
                     nlohmann::json::array({call(
                         "submit_review", {{"verdict", "approve"},
                                           {"comments", nlohmann::json::array({"ok " + esc})}})})));
  auto env = kOffline;
  env["AF_LLM_PROVIDER"] = "replay";
  env["AF_LLM_REPLAY_FILE"] = (dir.path() / "replay.jsonl").string();
  env["AF_VALIDATION_CHALLENGE_VAGUE_REQUIREMENTS"] = "false";
  auto run =
      RunCommand({BinaryPath(), "run", (dir.path() / "prp.md").string()}, env, dir.path().string());
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("run_command printf"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("ok \\x1b]0;PWNED"), std::string::npos) << run.out;
  EXPECT_EQ((run.out + run.err).find('\x1b'), std::string::npos)
      << "a raw ESC reached the terminal";
  EXPECT_EQ((run.out + run.err).find('\x07'), std::string::npos)
      << "a raw BEL reached the terminal";
}

}  // namespace
}  // namespace af::testing
