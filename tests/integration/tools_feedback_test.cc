// The coder's tools against a real worktree and sandbox: what they tell the
// model when it reads a long file, misquotes an edit, searches a tree with
// build outputs, runs a command that creates files or hangs, and finishes too
// early.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "af/agents/tools.h"
#include "af/workspace/sandbox.h"
#include "af/workspace/workspace.h"
#include "support/test_util.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using af::testing::TempDir;

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class ToolsFeedbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ws = Workspace::Open(tmp_.path() / "proj");
    ASSERT_TRUE(ws.ok()) << ws.status().ToString();
    ws_ = std::move(ws).value();
    auto tree = ws_->OpenFeature("feat-1");
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    tree_ = std::move(tree).value();
    SandboxOptions opts;
    opts.mode = SandboxOptions::Mode::kProcess;  // fast; the tools do not care which kind
    opts.timeout = std::chrono::milliseconds(20000);
    auto sb = Sandbox::Create(opts);
    ASSERT_TRUE(sb.ok()) << sb.status().ToString();
    sandbox_ = std::move(sb).value();
    ctx_.tree = tree_.get();
    ctx_.sandbox = sandbox_.get();
    ctx_.touched = &touched_;
  }

  ToolOutcome Run(const std::string& name, json args) {
    return ExecuteTool({"call-1", name, std::move(args)}, ctx_);
  }

  void Write(const std::string& rel, const std::string& content) {
    ASSERT_TRUE(tree_->WriteFile(rel, content).ok()) << rel;
  }

  TempDir tmp_;
  std::unique_ptr<Workspace> ws_;
  std::unique_ptr<FeatureTree> tree_;
  std::unique_ptr<Sandbox> sandbox_;
  std::set<std::string> touched_;
  ToolContext ctx_;
};

TEST_F(ToolsFeedbackTest, ReadFileNumbersLinesTakesARangeAndStopsAtItsCap) {
  Write("small.py", "a = 1\nb = 2\n");
  auto r = Run("read_file", {{"path", "small.py"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_EQ(r.content, "    1\ta = 1\n    2\tb = 2\n");

  std::string big;
  for (int i = 1; i <= 3000; ++i) big += "line number " + std::to_string(i) + " of the file\n";
  Write("big.txt", big);
  r = Run("read_file", {{"path", "big.txt"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_LE(r.content.size(), 16500u);
  EXPECT_TRUE(Has(r.content, "    1\tline number 1 of the file\n"));
  EXPECT_FALSE(Has(r.content, "line number 3000 "));
  EXPECT_TRUE(Has(r.content, "more lines not shown")) << r.content.substr(r.content.size() - 400);
  EXPECT_TRUE(Has(r.content, "start_line=")) << r.content.substr(r.content.size() - 400);
  EXPECT_TRUE(Has(r.content, "search_code"));

  r = Run("read_file", {{"path", "big.txt"}, {"start_line", 2999}, {"end_line", 3005}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_EQ(r.content,
            " 2999\tline number 2999 of the file\n 3000\tline number 3000 of the file\n"
            "[shown: lines 2999-3000 of 3000]\n");

  r = Run("read_file", {{"path", "big.txt"}, {"start_line", 4000}});
  EXPECT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "has 3000 lines")) << r.content;
  r = Run("read_file", {{"path", "big.txt"}, {"start_line", "ten"}});
  EXPECT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "'start_line' must be an integer, got the string \"ten\""))
      << r.content;
  // A whole number sent as a string (local models do) is that number.
  r = Run("read_file", {{"path", "big.txt"}, {"start_line", " 2999"}, {"end_line", "3005"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_TRUE(Has(r.content, "[shown: lines 2999-3000 of 3000]")) << r.content;
}

TEST_F(ToolsFeedbackTest, EditWithNoMatchShowsTheClosestLinesAndWhy) {
  Write("app.py",
        "import os\n\n\ndef greet(name):\n    return 'hello ' + name\n\n\ndef other():\n"
        "    pass\n");
  // Wrong indentation: the model's old_text uses two spaces.
  auto r = Run("edit_file", {{"path", "app.py"},
                             {"old_text", "def greet(name):\n  return 'hello ' + name\n"},
                             {"new_text", "x"}});
  ASSERT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "not found in app.py")) << r.content;
  EXPECT_TRUE(Has(r.content, "except for whitespace")) << r.content;
  EXPECT_TRUE(Has(r.content, "    4\tdef greet(name):\n")) << r.content;
  EXPECT_TRUE(Has(r.content, "    5\t    return 'hello ' + name\n")) << r.content;

  // A near miss names the closest lines too.
  r = Run("edit_file",
          {{"path", "app.py"}, {"old_text", "    return 'helo ' + nam\n"}, {"new_text", "x"}});
  ASSERT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "closest lines")) << r.content;
  EXPECT_TRUE(Has(r.content, "    5\t    return 'hello ' + name\n")) << r.content;

  // read_file's numbers copied into old_text are called out.
  r = Run("edit_file",
          {{"path", "app.py"}, {"old_text", "    8\tdef other():\n"}, {"new_text", "x"}});
  ASSERT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "line numbers")) << r.content;
  EXPECT_TRUE(Has(r.content, "not part of the file")) << r.content;
  EXPECT_TRUE(touched_.empty());
}

TEST_F(ToolsFeedbackTest, EditWithTwoMatchesGivesTheirLines) {
  Write("two.txt", "x = 1\ny = 2\nx = 1\n");
  auto r = Run("edit_file", {{"path", "two.txt"}, {"old_text", "x = 1"}, {"new_text", "x = 3"}});
  ASSERT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "occurs 2 times")) << r.content;
  EXPECT_TRUE(Has(r.content, "lines 1, 3")) << r.content;
  EXPECT_EQ(*tree_->ReadFile("two.txt"), "x = 1\ny = 2\nx = 1\n");
}

TEST_F(ToolsFeedbackTest, EditShowsTheEditedLinesAndASyntaxCheck) {
  std::string text;
  for (int i = 1; i <= 20; ++i) text += "v" + std::to_string(i) + " = " + std::to_string(i) + "\n";
  Write("m.py", text);
  auto r =
      Run("edit_file", {{"path", "m.py"}, {"old_text", "v10 = 10\n"}, {"new_text", "v10 = 100\n"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_TRUE(Has(r.content, "   10\tv10 = 100\n")) << r.content;
  EXPECT_TRUE(Has(r.content, "    7\tv7 = 7\n")) << r.content;
  EXPECT_TRUE(Has(r.content, "   13\tv13 = 13\n")) << r.content;
  EXPECT_FALSE(Has(r.content, "    1\tv1 = 1\n")) << r.content;
  EXPECT_FALSE(Has(r.content, "syntax")) << r.content;
  EXPECT_EQ(touched_.count("m.py"), 1u);

  // A syntax error does not undo the edit; it is reported.
  r = Run("edit_file", {{"path", "m.py"}, {"old_text", "v11 = 11\n"}, {"new_text", "def f(:\n"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_TRUE(Has(r.content, "syntax check")) << r.content;
  EXPECT_TRUE(Has(r.content, "SyntaxError")) << r.content;
  EXPECT_TRUE(Has(*tree_->ReadFile("m.py"), "def f(:"));
  EXPECT_FALSE(fs::exists(tree_->root() / "__pycache__"));
}

TEST_F(ToolsFeedbackTest, WriteFileChecksShellAndPythonSyntax) {
  auto r = Run("write_file", {{"path", "ok.sh"}, {"content", "#!/bin/bash\necho hi\n"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_FALSE(Has(r.content, "syntax")) << r.content;
  r = Run("write_file",
          {{"path", "bin/tool"}, {"content", "#!/usr/bin/env bash\nif then fi\nfor\n"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_TRUE(Has(r.content, "syntax check (bash -n)")) << r.content;
  r = Run("write_file", {{"path", "bad.py"}, {"content", "print('x'\n"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_TRUE(Has(r.content, "syntax check (python3 compile)")) << r.content;
  r = Run("write_file", {{"path", "notes.md"}, {"content", "# def f(:\n"}});
  EXPECT_EQ(r.content, "wrote notes.md (10 bytes)");
}

TEST_F(ToolsFeedbackTest, SearchRespectsGitignoreSkipsBuildOutputsAndSaysWhenItStopped) {
  Write(".gitignore", "secret_out/\n*.log\n");
  Write("src/main.py", "TOKEN = 1\nprint(TOKEN)\n");
  Write("secret_out/gen.py", "TOKEN = 2\n");
  Write("run.log", "TOKEN\n");
  Write("build/gen.py", "TOKEN = 3\n");
  Write("node_modules/pkg/index.js", "TOKEN\n");
  Write("pkg/__pycache__/m.txt", "TOKEN\n");
  Write("obj.o", "TOKEN\n");
  auto r = Run("search_code", {{"query", "TOKEN"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_EQ(r.content, "src/main.py:1: TOKEN = 1\nsrc/main.py:2: print(TOKEN)\n");

  r = Run("search_code", {{"query", "token"}});
  EXPECT_TRUE(Has(r.content, "no matches")) << r.content;
  EXPECT_TRUE(Has(r.content, "ignore_case")) << r.content;
  r = Run("search_code", {{"query", "token"}, {"ignore_case", true}});
  EXPECT_TRUE(Has(r.content, "src/main.py:1: TOKEN = 1")) << r.content;

  std::string many;
  for (int i = 0; i < 60; ++i) many += "needle " + std::to_string(i) + "\n";
  Write("lib/many.txt", many);
  Write("lib/one.py", "needle\n");
  r = Run("search_code", {{"query", "needle"}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_TRUE(Has(r.content, "stopped at 50 matches")) << r.content;
  EXPECT_TRUE(Has(r.content, "path")) << r.content;
  r = Run("search_code", {{"query", "needle"}, {"path", "*.py"}});
  EXPECT_EQ(r.content, "lib/one.py:1: needle\n");
  r = Run("search_code", {{"query", "TOKEN"}, {"path", "src"}});
  EXPECT_EQ(r.content, "src/main.py:1: TOKEN = 1\nsrc/main.py:2: print(TOKEN)\n");
  r = Run("search_code", {{"query", "x"}, {"ignore_case", "yes"}});
  EXPECT_TRUE(r.is_error);
}

TEST_F(ToolsFeedbackTest, CommandRunsNonInteractivelyAndItsFilesJoinTheTask) {
  Write(".gitignore", "*.log\n");
  ASSERT_TRUE(tree_->CommitTask("setup", "ignore logs", {".gitignore"}).ok());
  auto r = Run("run_command",
               {{"command",
                 "echo \"$PAGER $GIT_PAGER $NO_COLOR $TERM $CI $PYTHONDONTWRITEBYTECODE\"; "
                 "mkdir -p gen build && echo made > gen/made.txt && echo o > build/x.o && "
                 "echo l > run.log && echo c > cache.pyc && rm README.md && read line; "
                 "echo \"read:$?\""}});
  ASSERT_FALSE(r.is_error) << r.content;
  EXPECT_TRUE(Has(r.content, "cat cat 1 dumb 1 1")) << r.content;
  EXPECT_TRUE(Has(r.content, "read:1")) << r.content;  // stdin is empty, not a terminal
  EXPECT_EQ(touched_, (std::set<std::string>{"README.md", "gen/made.txt"}));

  // A link out of the workspace is not the task's to commit (the path check
  // of the file tools), and the model is told.
  touched_.clear();
  r = Run("run_command", {{"command", "ln -s /tmp outlink"}});
  EXPECT_TRUE(touched_.empty());
  EXPECT_TRUE(Has(r.content, "not part of the task's change")) << r.content;
  EXPECT_TRUE(Has(r.content, "outlink")) << r.content;
  ASSERT_TRUE(fs::remove(tree_->root() / "outlink"));

  // Nor is a file too big for a source change (the server would hold it
  // several times over to commit and diff it); a small one beside it is.
  touched_.clear();
  r = Run("run_command",
          {{"command", "head -c 40000000 /dev/zero > big.bin && echo s > small.txt"}});
  EXPECT_EQ(touched_, (std::set<std::string>{"small.txt"}));
  EXPECT_TRUE(Has(r.content, "larger than 32 MiB")) << r.content;
  EXPECT_TRUE(Has(r.content, "big.bin")) << r.content;
  ASSERT_TRUE(fs::remove(tree_->root() / "big.bin"));
  ASSERT_TRUE(fs::remove(tree_->root() / "small.txt"));

  // git's "not a git repository" (the repository is outside the sandbox)
  // comes with what to do instead.
  r = Run("run_command", {{"command", "echo 'fatal: not a git repository: /x' >&2; exit 128"}});
  EXPECT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "committed for you when you call finish")) << r.content;

  // A file the command changes again later is seen too.
  touched_.clear();
  r = Run("run_command", {{"command", "echo more >> gen/made.txt"}});
  EXPECT_EQ(touched_, (std::set<std::string>{"gen/made.txt"}));

  // And the task's commit takes them: what the gates see is what is delivered.
  touched_ = {"README.md", "gen/made.txt"};
  auto sha = tree_->CommitTask("t1", "task", {touched_.begin(), touched_.end()});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  auto diff = tree_->CommittedDiff();
  ASSERT_TRUE(diff.ok());
  EXPECT_TRUE(Has(*diff, "gen/made.txt"));
  EXPECT_TRUE(Has(*diff, "deleted file"));
  EXPECT_FALSE(Has(*diff, "x.o"));
}

TEST_F(ToolsFeedbackTest, ATimeoutIsExplained) {
  SandboxOptions opts;
  opts.mode = SandboxOptions::Mode::kProcess;
  opts.timeout = std::chrono::milliseconds(300);
  auto sb = Sandbox::Create(opts);
  ASSERT_TRUE(sb.ok());
  ctx_.sandbox = sb->get();
  auto r = Run("run_command", {{"command", "sleep 5"}});
  EXPECT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "timed out")) << r.content;
  EXPECT_TRUE(Has(r.content, "time limit of 0.3 s")) << r.content;
  EXPECT_TRUE(Has(r.content, "waits for input")) << r.content;
  EXPECT_TRUE(Has(r.content, "smaller steps")) << r.content;
}

TEST_F(ToolsFeedbackTest, FinishRefusesOnceWhenChecksFailThenAccepts) {
  int ran = 0;
  bool pass = false;
  ctx_.run_checks = [&]() -> Result<TaskChecks> {
    ++ran;
    TaskChecks c;
    c.passed = pass;
    c.report = pass ? "$ make test\nPASSED, exit 0\n" : "$ make test\nFAILED, exit 1\nboom\n";
    return c;
  };
  ASSERT_FALSE(Run("write_file", {{"path", "feature.txt"}, {"content", "new\n"}}).is_error);
  auto r = Run("finish", {{"summary", "done"}});
  EXPECT_TRUE(r.is_error);
  EXPECT_FALSE(r.terminal);
  EXPECT_TRUE(Has(r.content, "FAILED, exit 1\nboom")) << r.content;
  EXPECT_TRUE(Has(r.content, "feature.txt")) << r.content;  // the task's diff
  EXPECT_TRUE(Has(r.content, "+new")) << r.content;
  EXPECT_TRUE(Has(r.content, "call finish again")) << r.content;
  r = Run("finish", {{"summary", "done, checks still fail"}});
  EXPECT_TRUE(r.terminal);
  EXPECT_FALSE(r.is_error);
  EXPECT_EQ(ran, 2);

  // Checks that pass: accepted at once.
  ToolContext fresh = ctx_;
  fresh.finish_refusals = std::make_shared<std::atomic<int>>(0);
  pass = true;
  r = ExecuteTool({"c", "finish", {{"summary", "ok"}}}, fresh);
  EXPECT_TRUE(r.terminal) << r.content;
  EXPECT_TRUE(Has(r.content, "checks pass")) << r.content;
}

TEST_F(ToolsFeedbackTest, FinishAcceptsFailuresThatMayBeASiblingsButNotAnEmptyTask) {
  ctx_.run_checks = []() -> Result<TaskChecks> {
    TaskChecks c;
    c.passed = false;
    c.binding = false;
    c.report = "$ pytest\nFAILED\n";
    return c;
  };
  ASSERT_FALSE(Run("write_file", {{"path", "lib.py"}, {"content", "X = 1\n"}}).is_error);
  auto r = Run("finish", {{"summary", "lib done"}});
  EXPECT_TRUE(r.terminal) << r.content;

  // Nothing changed (the file already has this content): refused once.
  ASSERT_TRUE(tree_->CommitTask("t0", "lib", {"lib.py"}).ok());
  ToolContext again = ctx_;
  again.finish_refusals = std::make_shared<std::atomic<int>>(0);
  again.run_checks = nullptr;
  r = ExecuteTool({"c", "finish", {{"summary", "nothing to do"}}}, again);
  EXPECT_TRUE(r.is_error);
  EXPECT_TRUE(Has(r.content, "changed no file")) << r.content;
  r = ExecuteTool({"c", "finish", {{"summary", "nothing to do: t0 did it"}}}, again);
  EXPECT_TRUE(r.terminal);
}

}  // namespace
}  // namespace af
