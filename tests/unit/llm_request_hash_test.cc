#include <gtest/gtest.h>

#include <functional>

#include "af/llm/types.h"

namespace af {
namespace {

LlmRequest Base() {
  LlmRequest r;
  r.model = "claude-sonnet-4-5";
  r.system = "You are the coder.";
  r.messages = {Message::User("Implement it."),
                Message::Assistant("ok", {{"c1", "read_file", {{"path", "a.cc"}}}}),
                Message::ToolResult("c1", "int x;")};
  r.tools = {{"read_file", "Read", {{"type", "object"}}}};
  return r;
}

TEST(RequestHashTest, StableHexSha256) {
  const std::string h = RequestHash(Base());
  EXPECT_EQ(h.size(), 64u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(h, RequestHash(Base()));
  // Argument key order does not matter (canonical JSON).
  LlmRequest a = Base();
  a.messages[1].tool_calls[0].arguments = nlohmann::json::parse(R"({"b": 1, "a": 2})");
  LlmRequest b = Base();
  b.messages[1].tool_calls[0].arguments = nlohmann::json::parse(R"({"a": 2, "b": 1})");
  EXPECT_EQ(RequestHash(a), RequestHash(b));
}

TEST(RequestHashTest, KnownValueOfEmptyRequest) {
  // Pins the canonical form: changing it would orphan every stored result.
  LlmRequest r;
  EXPECT_EQ(
      CanonicalRequestJson(r).dump(),
      R"({"max_tokens":4096,"messages":[],"model":"","system":"","temperature":0.2,"tools":[]})");
}

TEST(RequestHashTest, MetadataAndStreamIgnored) {
  LlmRequest r = Base();
  r.agent_role = "coder";
  r.feature_id = "f-123";
  r.task_id = "t-9";
  r.stream = true;
  r.request_hash = "a hash given by the caller";
  EXPECT_EQ(RequestHash(r), RequestHash(Base()));
}

TEST(RequestHashTest, EveryContentChangeChangesIt) {
  const std::string base = RequestHash(Base());
  std::vector<std::function<void(LlmRequest&)>> edits = {
      [](LlmRequest& r) { r.model = "gpt-4o"; },
      [](LlmRequest& r) { r.system += "!"; },
      [](LlmRequest& r) { r.messages[0].text = "Implement it!"; },
      [](LlmRequest& r) { r.messages[0].role = Role::kAssistant; },
      [](LlmRequest& r) { r.messages[1].tool_calls[0].id = "c2"; },
      [](LlmRequest& r) { r.messages[1].tool_calls[0].name = "write_file"; },
      [](LlmRequest& r) { r.messages[1].tool_calls[0].arguments["path"] = "b.cc"; },
      [](LlmRequest& r) { r.messages[2].tool_call_id = "c9"; },
      [](LlmRequest& r) { r.messages[2].is_error = true; },
      [](LlmRequest& r) { r.messages.push_back(Message::User("more")); },
      [](LlmRequest& r) { r.tools[0].description = "Read a file"; },
      [](LlmRequest& r) { r.tools[0].input_schema["required"] = {"path"}; },
      [](LlmRequest& r) { r.tools.clear(); },
      [](LlmRequest& r) { r.max_tokens = 1024; },
      [](LlmRequest& r) { r.temperature = 0.0; },
  };
  std::set<std::string> seen = {base};
  for (size_t i = 0; i < edits.size(); ++i) {
    LlmRequest r = Base();
    edits[i](r);
    const std::string h = RequestHash(r);
    EXPECT_NE(h, base) << "edit " << i;
    EXPECT_TRUE(seen.insert(h).second) << "edit " << i << " collides";
  }
}

}  // namespace
}  // namespace af
