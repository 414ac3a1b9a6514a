#include <gtest/gtest.h>

#include "af/llm/llm_client.h"
#include "llm/replay.h"
#include "support/test_util.h"

namespace af::llm {
namespace {

LlmRequest Req(std::string role, std::string system, std::string user, int assistant_turns = 0) {
  LlmRequest r;
  r.agent_role = std::move(role);
  r.system = std::move(system);
  r.messages.push_back(Message::User(std::move(user)));
  for (int i = 0; i < assistant_turns; ++i) {
    r.messages.push_back(Message::Assistant("", {{"id" + std::to_string(i), "finish", {}}}));
    r.messages.push_back(Message::ToolResult("id" + std::to_string(i), "ok"));
  }
  return r;
}

constexpr char kRecordings[] =
    R"({"match": {"role": "planner", "contains": "todo app", "turn": 0}, "response": {"text": "planner-todo-0", "tool_calls": [{"id": "p1", "name": "submit_plan", "arguments": {"tasks": []}}], "stop_reason": "tool_use", "usage": {"input_tokens": 1200, "output_tokens": 300}}}
{"match": {"role": "planner", "turn": 1}, "response": {"text": "planner-any-1"}}

{"match": {"role": "planner"}, "response": {"text": "planner-any"}}
{"match": {"contains": "SYSTEM-MARK"}, "response": {"text": "by-system"}}
{"response": {"text": "reviewer-any"}, "match": {"role": "reviewer"}}
)";

TEST(ReplayTest, MatchesByRoleContainsTurnFirstWins) {
  auto entries = ParseReplay(kRecordings, "rec.jsonl");
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  ASSERT_EQ(entries->size(), 5u);
  EXPECT_EQ((*entries)[1].line, 2);
  EXPECT_EQ((*entries)[2].line, 4);  // the blank line counts

  auto m = MatchReplay(*entries, Req("planner", "sys", "Build a todo app please"));
  ASSERT_TRUE(m.ok());
  const LlmResponse& r = (*m)->response;
  EXPECT_EQ(r.text, "planner-todo-0");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "submit_plan");
  EXPECT_EQ(r.tool_calls[0].arguments, (nlohmann::json{{"tasks", nlohmann::json::array()}}));
  EXPECT_EQ(r.stop_reason, "tool_use");
  EXPECT_EQ(r.usage.input_tokens, 1200);
  EXPECT_EQ(r.usage.output_tokens, 300);
  EXPECT_EQ(r.provider, "replay");
  EXPECT_EQ(r.model, "replay");

  // "contains" also looks at the system prompt.
  m = MatchReplay(*entries, Req("planner", "plan the todo app", "go"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->response.text, "planner-todo-0");

  // Turn 1 skips the turn-0 line; the first matching line wins over the later one.
  m = MatchReplay(*entries, Req("planner", "sys", "todo app", 1));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->response.text, "planner-any-1");

  m = MatchReplay(*entries, Req("planner", "sys", "something else", 2));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->response.text, "planner-any");

  m = MatchReplay(*entries, Req("coder", "SYSTEM-MARK", "x"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->response.text, "by-system");
  EXPECT_EQ((*m)->response.stop_reason, "end_turn");  // derived
}

TEST(ReplayTest, TurnCountsAssistantMessages) {
  EXPECT_EQ(ReplayTurn(Req("x", "", "", 0)), 0);
  EXPECT_EQ(ReplayTurn(Req("x", "", "", 3)), 3);
}

TEST(ReplayTest, NoMatchMessageAndHint) {
  auto entries = ParseReplay(kRecordings, "rec.jsonl");
  ASSERT_TRUE(entries.ok());
  auto m = MatchReplay(*entries, Req("coder", "sys", "unknown feature", 2));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kNotFound);
  EXPECT_EQ(m.status().message(), "no recorded response for role=coder turn=2 (replay provider)");
  EXPECT_NE(m.status().hint().find("export ANTHROPIC_API_KEY and set AF_LLM_PROVIDER=anthropic"),
            std::string::npos);
  EXPECT_NE(m.status().hint().find("OPENAI_API_KEY/OPENAI_BASE_URL with AF_LLM_PROVIDER=openai"),
            std::string::npos);
}

TEST(ReplayTest, BadLineNamesFileAndLine) {
  const std::string text =
      "{\"response\": {\"text\": \"fine\"}}\n"
      "\n"
      "{\"match\": {\"turn\": \"zero\"}, \"response\": {}}\n";
  auto e = ParseReplay(text, "examples/replay/x.jsonl");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kInvalidArgument);
  EXPECT_NE(e.status().message().find("examples/replay/x.jsonl:3"), std::string::npos)
      << e.status().message();
  EXPECT_NE(e.status().message().find("turn"), std::string::npos);

  e = ParseReplay("{\"response\": {\"text\": \"a\"}}\n{not json\n", "f.jsonl");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("f.jsonl:2"), std::string::npos);

  e = ParseReplay("{\"match\": {}}\n", "g.jsonl");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("g.jsonl:1"), std::string::npos);
  EXPECT_NE(e.status().message().find("response"), std::string::npos);

  e = ParseReplay(
      "{\"response\": {\"tool_calls\": [{\"name\": \"finish\", \"arguments\": \"{}\"}]}}\n",
      "h.jsonl");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("h.jsonl:1"), std::string::npos);
}

TEST(ReplayTest, ClientLoadsFileOnceAndRecordsCalls) {
  testing::TempDir dir;
  auto path = dir.Write("rec.jsonl", kRecordings);
  std::vector<LlmCallRecord> records;
  LlmOptions o;
  o.provider = "replay";
  o.replay_file = path.string();
  o.on_call = [&](const LlmCallRecord& r) { records.push_back(r); };
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->provider(), "replay");
  // The file is not read again: removing it changes nothing.
  std::filesystem::remove(path);

  LlmRequest req = Req("planner", "sys", "todo app");
  req.stream = true;
  std::string streamed;
  auto r = (*c)->Complete(req, [&](std::string_view d) { streamed += d; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "planner-todo-0");
  EXPECT_EQ(streamed, r->text);
  EXPECT_EQ(r->provider, "replay");
  EXPECT_EQ(r->attempts, 1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].provider, "replay");
  EXPECT_EQ(records[0].model, "replay");
  EXPECT_EQ(records[0].cost_usd, 0);
  // Measured from what was sent, not the recording's hand-set 1200.
  EXPECT_EQ(records[0].input_tokens, EstimateTokens(req));
  EXPECT_EQ(records[0].status, "ok");
  EXPECT_EQ(records[0].request_hash, RequestHash(req));

  LlmRequest missing = Req("tester", "", "nothing");
  // A hash the caller computed already is recorded as given, not computed again.
  missing.request_hash = "computed-by-the-caller";
  auto miss = (*c)->Complete(missing);
  ASSERT_FALSE(miss.ok());
  EXPECT_EQ(miss.status().code(), Code::kNotFound);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].status, "not_found");
  EXPECT_EQ(records[1].request_hash, "computed-by-the-caller");
}

TEST(ReplayTest, CreateWithoutAFileOrWithABadOne) {
  LlmOptions o;
  o.provider = "replay";
  auto c = LlmClient::Create(o);  // no file: the recordings built into the binary
  ASSERT_TRUE(c.ok()) << c.status().ToString();

  o.replay_file = "/nonexistent/rec.jsonl";
  c = LlmClient::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kNotFound);
  EXPECT_NE(c.status().message().find("/nonexistent/rec.jsonl"), std::string::npos);

  testing::TempDir dir;
  o.replay_file = dir.Write("bad.jsonl", "{\"response\": {}}\n[1,2]\n").string();
  c = LlmClient::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("bad.jsonl:2"), std::string::npos);
}

}  // namespace
}  // namespace af::llm
