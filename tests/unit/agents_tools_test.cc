#include <gtest/gtest.h>

#include "af/agents/optimizer.h"
#include "af/agents/tools.h"
#include "support/test_util.h"

namespace af {
namespace {

using json = nlohmann::json;

// A task owning "<id>.py" (tasks that may run in parallel must name their files).
json Task(std::string id, std::vector<std::string> deps = {}) {
  return {{"id", id},        {"title", "T " + id},   {"description", "do " + id},
          {"role", "coder"}, {"dependencies", deps}, {"files", {id + ".py"}}};
}

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

TEST(CheckPlanTest, AcceptsADagAndNamesEveryProblem) {
  EXPECT_TRUE(CheckPlan({{"tasks", {Task("a"), Task("b"), Task("c", {"a", "b"})}}}).empty());
  EXPECT_EQ(CheckPlan(json::object()).size(), 1u);
  EXPECT_NE(Joined(CheckPlan({{"tasks", json::array()}})).find("no tasks"), std::string::npos);
  auto unknown = Joined(CheckPlan({{"tasks", {Task("a", {"zz"})}}}));
  EXPECT_NE(unknown.find("depends on unknown task 'zz'"), std::string::npos) << unknown;
  auto cycle = Joined(CheckPlan({{"tasks", {Task("a", {"b"}), Task("b", {"a"})}}}));
  EXPECT_NE(cycle.find("cycle"), std::string::npos) << cycle;
  auto dup = Joined(CheckPlan({{"tasks", {Task("a"), Task("a")}}}));
  EXPECT_NE(dup.find("listed twice"), std::string::npos) << dup;
  json bad_role = Task("a");
  bad_role["role"] = "reviewer";
  EXPECT_NE(Joined(CheckPlan({{"tasks", {bad_role}}})).find("use 'coder'"), std::string::npos);
  json executor = Task("a");
  executor["role"] = "executor";  // alias of coder
  EXPECT_TRUE(CheckPlan({{"tasks", {executor}}}).empty());
  json bad_id = Task("a b/../c");
  EXPECT_NE(Joined(CheckPlan({{"tasks", {bad_id}}})).find("must be 1-40 letters"),
            std::string::npos);
  json no_title = Task("a");
  no_title.erase("title");
  EXPECT_NE(Joined(CheckPlan({{"tasks", {no_title}}})).find("needs a non-empty 'title'"),
            std::string::npos);
}

TEST(ToolsTest, RolesGetTheToolsOfTheContract) {
  auto names = [](const std::string& role) {
    std::vector<std::string> out;
    for (const auto& t : ToolsForRole(role)) out.push_back(t.name);
    return out;
  };
  EXPECT_EQ(names("coder"), (std::vector<std::string>{"list_files", "read_file", "write_file",
                                                      "edit_file", "search_code", "run_command",
                                                      "finish", "recall", "remember"}));
  EXPECT_EQ(names("executor"), names("coder"));
  EXPECT_EQ(names("planner").front(), "submit_plan");
  EXPECT_EQ(names("reviewer").front(), "submit_review");
  for (const auto& t : ToolsForRole("coder")) {
    EXPECT_EQ(t.input_schema["type"], "object") << t.name;
    EXPECT_TRUE(t.input_schema.contains("properties")) << t.name;
  }
}

TEST(ToolsTest, BadArgumentsComeBackAsErrorsNotCrashes) {
  ToolContext ctx;  // no workspace, no store
  auto run = [&](const std::string& name, json args) {
    return ExecuteTool({"id1", name, std::move(args)}, ctx);
  };
  auto r = run("write_file", {{"content", "x"}});
  EXPECT_TRUE(r.is_error);
  EXPECT_FALSE(r.terminal);
  r = run("read_file", {{"path", 42}});
  EXPECT_TRUE(r.is_error);
  r = run("frobnicate", json::object());
  EXPECT_TRUE(r.is_error);
  EXPECT_NE(r.content.find("unknown tool 'frobnicate'"), std::string::npos);
  r = run("finish", json::array());
  EXPECT_TRUE(r.is_error);
  r = run("finish", {{"summary", "done"}});
  EXPECT_TRUE(r.terminal);
  EXPECT_FALSE(r.is_error);
  r = run("submit_review", {{"verdict", "maybe"}, {"comments", json::array()}});
  EXPECT_TRUE(r.is_error);
  r = run("submit_review", {{"verdict", "request_changes"}, {"comments", json::array()}});
  EXPECT_TRUE(r.is_error) << "request_changes without a comment gives the coder nothing to do";
  r = run("submit_review", {{"verdict", "approve"}, {"comments", {"gates passed"}}});
  EXPECT_TRUE(r.terminal);
  r = run("submit_plan", {{"tasks", {Task("a", {"a"})}}});
  EXPECT_TRUE(r.is_error);
  EXPECT_NE(r.content.find("plan refused"), std::string::npos);
  r = run("read_file", {{"path", "x"}});
  EXPECT_TRUE(r.is_error);
  EXPECT_NE(r.content.find("no workspace"), std::string::npos);
}

LlmRequest Conversation(int turns, size_t chars_each) {
  LlmRequest r;
  r.system = "system";
  r.messages.push_back(Message::User("first message stays whole"));
  for (int i = 0; i < turns; ++i) {
    r.messages.push_back(Message::Assistant("", {{"c", "read_file", {{"path", "x"}}}}));
    r.messages.push_back(Message::ToolResult("c", std::string(chars_each, 'a' + i % 26)));
  }
  return r;
}

TEST(OptimizerTest, CondensesOlderTurnsAbovePreserveAtAndRefusesAboveCriticalAt) {
  Optimizer opt(ContextBudget{10'000, 0.75, 0.90}, {}, nullptr);
  LlmRequest small = Conversation(2, 1000);
  LlmRequest before = small;
  ASSERT_TRUE(opt.Fit(small).ok());
  EXPECT_EQ(small.messages.back().text, before.messages.back().text);  // under budget: untouched

  LlmRequest big = Conversation(20, 2400);  // ~12k tokens of tool output
  ASSERT_GT(EstimateTokens(big), 7'500);
  ASSERT_TRUE(opt.Fit(big).ok());
  EXPECT_LE(EstimateTokens(big), 9'000);
  EXPECT_EQ(big.messages[0].text, "first message stays whole");
  EXPECT_NE(big.messages[2].text.find("shown earlier]"), std::string::npos);  // a stub
  EXPECT_EQ(big.messages.back().text.size(), 2400u);  // the last turns stay whole

  LlmRequest huge;
  huge.messages.push_back(
      Message::User(std::string(50'000, 'x')));  // one message, nothing to condense
  Status s = opt.Fit(huge);
  EXPECT_EQ(s.code(), Code::kResourceExhausted);
  EXPECT_NE(s.message().find("context.critical_at"), std::string::npos);
}

TEST(OptimizerTest, SkillsMatchTheTechStackAndContextStaysInBudget) {
  testing::TempDir dir;
  dir.Write("skills/python.md", "# Python\nkeywords: python, python3, unittest\nUse unittest.\n");
  dir.Write("skills/cpp.md", "# C++\nkeywords: c++, cmake\nUse CMake.\n");
  Optimizer opt(ContextBudget{4'000, 0.75, 0.90}, LoadSkills(dir.path() / "skills"), nullptr);
  json req = {
      {"title", "slugify"}, {"description", "a module"}, {"tech_stack", "python3 + unittest"}};
  auto skills = opt.SkillsFor(req);
  ASSERT_EQ(skills.size(), 1u);
  EXPECT_EQ(skills[0]->name, "python");
  EXPECT_EQ(opt.SkillsFor({{"tech_stack", "C++17 with CMake"}}).front()->name, "cpp");

  ContextInput in;
  in.role = "coder";
  in.request = req;
  in.project = "p";
  in.task_title = "Write it";
  in.history.push_back(std::string(100'000, 'h'));
  std::string ctx = opt.BuildContext(in, nullptr);
  EXPECT_NE(ctx.find("# Feature: slugify"), std::string::npos);
  EXPECT_NE(ctx.find("# Your task: Write it"), std::string::npos);
  EXPECT_NE(ctx.find("Use unittest."), std::string::npos);
  EXPECT_NE(ctx.find("characters left out"), std::string::npos);
  EXPECT_LE(ctx.size(), static_cast<size_t>(4'000 * 0.75 * 4));
  EXPECT_EQ(ctx, opt.BuildContext(in, nullptr));  // deterministic: resumed steps replay
}

}  // namespace
}  // namespace af
