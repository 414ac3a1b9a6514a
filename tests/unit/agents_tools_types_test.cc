// Tool arguments of the wrong JSON type (a model's integer task id, a string
// limit) must come back to the model as tool errors, never throw out of the
// agent thread (an uncaught nlohmann::type_error terminates the process).
#include <gtest/gtest.h>

#include "af/agents/tools.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"
#include "support/test_util.h"

namespace af {
namespace {

using json = nlohmann::json;

TEST(ToolArgumentTypes, PlanWithNumericTaskIdIsRefusedNotThrown) {
  json tasks = json::array({{{"id", 1}, {"title", "T"}, {"description", "d"}, {"role", "coder"}}});
  std::vector<std::string> problems;
  ASSERT_NO_THROW(problems = CheckPlan({{"tasks", tasks}}));
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems[0].find("id"), std::string::npos) << problems[0];
}

TEST(ToolArgumentTypes, RecallAndRememberWithWrongNumberTypesAreToolErrors) {
  testing::TempDir dir;
  auto store = Store::Open({.url = "sqlite:" + (dir.path() / "t.db").string(), .migrate = true});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto kb = KnowledgeBase::Open(store->get(), {});
  ASSERT_TRUE(kb.ok()) << kb.status().ToString();
  ToolContext ctx;
  ctx.kb = kb->get();
  ctx.project = "p";
  auto run = [&](const std::string& name, json args) {
    return ExecuteTool({"id1", name, std::move(args)}, ctx);
  };
  ToolOutcome r;
  ASSERT_NO_THROW(r = run("recall", {{"query", "x"}, {"limit", "three"}}));
  EXPECT_TRUE(r.is_error);
  EXPECT_NE(r.content.find("limit"), std::string::npos) << r.content;
  ASSERT_NO_THROW(r = run("recall", {{"query", "x"}, {"limit", json::array({3})}}));
  EXPECT_TRUE(r.is_error);
  // A whole number sent as a string is that number.
  ASSERT_NO_THROW(r = run("recall", {{"query", "x"}, {"limit", "3"}}));
  EXPECT_FALSE(r.is_error) << r.content;
  ASSERT_NO_THROW(r = run("remember", {{"content", "c"}, {"importance", "high"}}));
  EXPECT_TRUE(r.is_error);
  EXPECT_NE(r.content.find("importance"), std::string::npos) << r.content;
  // The right types still work.
  ASSERT_NO_THROW(r = run("remember", {{"content", "c"}, {"importance", 7}}));
  EXPECT_FALSE(r.is_error) << r.content;
  ASSERT_NO_THROW(r = run("recall", {{"query", "c"}, {"limit", 3}}));
  EXPECT_FALSE(r.is_error) << r.content;
}

}  // namespace
}  // namespace af
