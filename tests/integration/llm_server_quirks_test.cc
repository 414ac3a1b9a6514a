// What OpenAI-compatible local servers (llama.cpp, vLLM, Ollama, LM Studio)
// and Anthropic-format stand-ins send that the real APIs do not, against the
// fake LLM server: replies hand-written as the fake's status replies.

#include <gtest/gtest.h>

#include "af/llm/llm_client.h"
#include "support/fake_llm_server.h"

namespace af {
namespace {

using std::chrono::milliseconds;
using testing::FakeLlmServer;
using testing::FakeReply;

const std::string kFffd = "\xEF\xBF\xBD";  // U+FFFD

class LlmServerQuirksTest : public ::testing::Test {
 protected:
  std::unique_ptr<LlmClient> Make(const std::string& provider, int max_retries = 2) {
    LlmOptions o;
    o.provider = provider;
    o.model = provider == "anthropic" ? "claude-sonnet-4-5" : "llama3";
    o.api_key = "sk-test-0123456789";
    o.base_url = provider == "anthropic" ? server_.base_url() : server_.base_url() + "/v1";
    o.max_retries = max_retries;
    o.seed = 7;
    o.sleep = [this](milliseconds d) { sleeps_.push_back(d); };
    auto c = LlmClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  static LlmRequest Request(bool stream = false) {
    LlmRequest r;
    r.system = "You are a test agent.";
    r.messages = {Message::User("Say hello to the people reading this test.")};
    r.stream = stream;
    return r;
  }

  // A plain 200 reply with `body` as it is.
  void Push200(std::string body) { server_.Push(FakeReply::Status(200, std::move(body))); }
  // A streamed 200 reply made of `events` (each "data: ...\n\n" or with an event line).
  void PushSse(std::string events) {
    server_.Push(
        FakeReply::Status(200, std::move(events), {{"Content-Type", "text/event-stream"}}));
  }

  FakeLlmServer server_;
  std::vector<milliseconds> sleeps_;
};

// --- Usage ---

TEST_F(LlmServerQuirksTest, ReplyWithoutUsageIsChargedAnEstimate) {
  Push200(R"({"model":"llama3","choices":[{"index":0,"message":{"role":"assistant",)"
          R"("content":"Hello, people reading this test."},"finish_reason":"stop"}]})");
  Push200(R"({"content":[{"type":"text","text":"Hello, people reading this test."}],)"
          R"("stop_reason":"end_turn","model":"claude-sonnet-4-5"})");
  for (const char* provider : {"openai", "anthropic"}) {
    SCOPED_TRACE(provider);
    auto c = Make(provider);
    const LlmRequest req = Request();
    auto r = c->Complete(req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->usage.input_tokens, EstimateTokens(req));
    EXPECT_EQ(r->usage.output_tokens, EstimateTokens(*r));
    EXPECT_GT(r->usage.input_tokens, 0);
    EXPECT_GT(r->usage.output_tokens, 1);
  }
}

// --- A glitch in one reply ---

TEST_F(LlmServerQuirksTest, ErrorInA200ReplyIsRetried) {
  Push200(R"({"error":{"message":"Model unloaded, please retry"}})");
  Push200(R"({"error":"Model is loading"})");
  Push200(R"({"choices":[{"message":{"role":"assistant","content":"back"},)"
          R"("finish_reason":"stop"}]})");
  auto c = Make("openai");
  auto r = c->Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "back");
  EXPECT_EQ(r->attempts, 3);
  EXPECT_EQ(sleeps_.size(), 2u);
}

TEST_F(LlmServerQuirksTest, ErrorInA200ReplyIsReportedAsTheServersOwnMessage) {
  Push200(R"({"error":{"message":"Model unloaded, please retry"}})");
  auto c = Make("openai", /*max_retries=*/0);
  auto r = c->Complete(Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("Model unloaded, please retry"), std::string::npos)
      << r.status().ToString();
  EXPECT_EQ(r.status().hint().find("does not speak"), std::string::npos) << r.status().hint();
}

TEST_F(LlmServerQuirksTest, ErrorInA200ReplyNamingAFaultOfTheRequestIsNotRetried) {
  Push200(R"({"error":{"message":"bad temperature","type":"invalid_request_error","code":400}})");
  auto c = Make("openai");
  auto r = c->Complete(Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("bad temperature"), std::string::npos);
  EXPECT_EQ(server_.request_count(), 1u);
}

TEST_F(LlmServerQuirksTest, AnthropicErrorInA200ReplyIsRetried) {
  Push200(R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})");
  Push200(R"({"content":[{"type":"text","text":"back"}],"stop_reason":"end_turn",)"
          R"("usage":{"input_tokens":3,"output_tokens":1}})");
  auto c = Make("anthropic");
  auto r = c->Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "back");
  EXPECT_EQ(r->attempts, 2);
}

TEST_F(LlmServerQuirksTest, EmptyChoicesAreRetriedAndNamed) {
  Push200(R"({"choices":[]})");
  Push200(R"({"choices":[{"message":{"role":"assistant","content":"second"},)"
          R"("finish_reason":"stop"}]})");
  Push200(R"({"id":"x","choices":[]})");
  auto c = Make("openai", /*max_retries=*/1);
  auto r = c->Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "second");
  EXPECT_EQ(r->attempts, 2);

  auto once = Make("openai", /*max_retries=*/0);
  auto failed = once->Complete(Request());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), Code::kUnavailable);
  EXPECT_NE(failed.status().message().find("no choices"), std::string::npos)
      << failed.status().ToString();
  EXPECT_EQ(failed.status().hint().find("does not speak"), std::string::npos);
}

// A server that is no LLM at all is told apart from a glitch: not retried,
// and the hint says to check the base URL.
TEST_F(LlmServerQuirksTest, ServerThatIsNoLlmIsNotRetried) {
  Push200(R"({"status":"ok","service":"something else"})");
  server_.Push(
      FakeReply::Status(200, "<html><body>Welcome</body></html>", {{"Content-Type", "text/html"}}));
  auto c = Make("openai");
  for (int i = 0; i < 2; ++i) {
    auto r = c->Complete(Request());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInternal) << r.status().ToString();
    EXPECT_NE(r.status().hint().find("check the base URL"), std::string::npos)
        << r.status().ToString();
  }
  EXPECT_EQ(server_.request_count(), 2u);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(LlmServerQuirksTest, InvalidUtf8AndLoneSurrogatesAreReplaced) {
  Push200(
      "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":"
      "\"caf\xC3\xA9 \xFF cut \\ud83d end \\ud83d\\ude00 \\\\ud83d\"},"
      "\"finish_reason\":\"stop\"}]}");
  Push200(
      "{\"content\":[{\"type\":\"text\",\"text\":\"bad \xC0 byte \\udc00\"}],"
      "\"stop_reason\":\"end_turn\"}");
  auto openai = Make("openai");
  auto r = openai->Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "caf\xC3\xA9 " + kFffd + " cut " + kFffd + " end \xF0\x9F\x98\x80 \\ud83d");
  EXPECT_EQ(r->attempts, 1);
  auto anthropic = Make("anthropic");
  r = anthropic->Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "bad " + kFffd + " byte " + kFffd);
}

TEST_F(LlmServerQuirksTest, InvalidUtf8InAStreamIsReplaced) {
  PushSse(
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one \xFF\"}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" two \\ud83d\"},"
      "\"finish_reason\":\"stop\"}]}\n\n"
      "data: [DONE]\n\n");
  auto c = Make("openai");
  auto r = c->Complete(Request(/*stream=*/true));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "one " + kFffd + " two " + kFffd);
}

// --- A request too long for the model's context ---

TEST_F(LlmServerQuirksTest, ContextTooLongNamesTheSettingsThatFixIt) {
  const std::vector<std::pair<std::string, std::string>> refusals = {
      {"openai",  // vLLM
       R"({"object":"error","message":"This model's maximum context length is 8192 tokens. )"
       R"(However, you requested 17190 tokens (806 in the messages, 16384 in the completion). )"
       R"(Please reduce the length of the messages or completion.","type":"BadRequestError",)"
       R"("param":null,"code":400})"},
      {"openai",  // llama.cpp
       R"({"error":{"code":400,"message":"the request exceeds the available context size, try )"
       R"(increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}})"},
      {"openai",  // OpenAI
       R"({"error":{"message":"Your input is too big.","type":"invalid_request_error",)"
       R"("param":"messages","code":"context_length_exceeded"}})"},
      {"anthropic",
       R"({"type":"error","error":{"type":"invalid_request_error","message":"prompt is too )"
       R"(long: 210000 tokens > 200000 maximum"}})"},
      {"anthropic",
       R"({"type":"error","error":{"type":"invalid_request_error","message":"input length )"
       R"(and `max_tokens` exceed context limit: 195000 + 16384 > 200000"}})"},
  };
  for (const auto& [provider, body] : refusals) {
    SCOPED_TRACE(body);
    server_.Push(FakeReply::Status(400, body));
    auto c = Make(provider);
    auto r = c->Complete(Request());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().hint().find("agents.<role>.max_tokens"), std::string::npos)
        << r.status().ToString();
    EXPECT_NE(r.status().hint().find("llm.max_tokens"), std::string::npos);
    EXPECT_NE(r.status().hint().find("context.window_tokens"), std::string::npos);
  }
  EXPECT_EQ(server_.request_count(), refusals.size());  // none retried
  EXPECT_TRUE(sleeps_.empty());

  // Any other refusal keeps its hint.
  server_.Push(FakeReply::Status(400, R"({"error":{"message":"model 'x' not found"}})"));
  auto r = Make("openai")->Complete(Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().hint(), "check the model name and the LLM settings");
}

// --- Tool calls ---

std::vector<std::string> Ids(const std::vector<ToolCall>& calls) {
  std::vector<std::string> ids;
  for (const ToolCall& c : calls) ids.push_back(c.id);
  return ids;
}

// The reply's calls, then their results, appended to the conversation.
void AddTurn(LlmRequest* req, const LlmResponse& r) {
  req->messages.push_back(Message::Assistant(r.text, r.tool_calls));
  for (const ToolCall& call : r.tool_calls) {
    req->messages.push_back(Message::ToolResult(call.id, "result of " + call.name));
  }
}

TEST_F(LlmServerQuirksTest, ToolCallsWithoutUniqueIdsGetMadeUpOnesForTheWholeConversation) {
  const std::string calls =
      R"({"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[)"
      R"({"type":"function","function":{"name":"read_file","arguments":"{\"path\":\"a\"}"}},)"
      R"({"id":"","type":"function","function":{"name":"read_file","arguments":"{}"}},)"
      R"({"id":"x","type":"function","function":{"name":"list_files","arguments":"{}"}},)"
      R"({"id":"x","type":"function","function":{"name":"list_files","arguments":"{}"}}]},)"
      R"("finish_reason":"tool_calls"}]})";
  const std::string one_call =
      R"({"choices":[{"message":{"role":"assistant","tool_calls":[)"
      R"({"type":"function","function":{"name":"finish","arguments":"{}"}}]},)"
      R"("finish_reason":"tool_calls"}]})";
  Push200(calls);
  Push200(one_call);
  Push200(one_call);
  auto c = Make("openai");
  LlmRequest req = Request();
  auto first = c->Complete(req);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(Ids(first->tool_calls),
            (std::vector<std::string>{"call_af_0", "call_af_1", "x", "call_af_2"}));
  EXPECT_EQ(first->tool_calls[0].arguments["path"], "a");

  // The next turn sends them back as they were given, and its own call gets
  // an id the conversation does not have yet, the same every time.
  AddTurn(&req, *first);
  auto second = c->Complete(req);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(Ids(second->tool_calls), (std::vector<std::string>{"call_af_4"}));
  auto again = c->Complete(req);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Ids(again->tool_calls), Ids(second->tool_calls));
  const nlohmann::json sent = server_.requests()[1].body["messages"];
  ASSERT_EQ(sent.size(), 7u);  // system, user, assistant, 4 results
  std::vector<std::string> called, answered;
  for (const auto& call : sent[2]["tool_calls"]) called.push_back(call["id"]);
  for (size_t i = 3; i < sent.size(); ++i) answered.push_back(sent[i]["tool_call_id"]);
  EXPECT_EQ(called, Ids(first->tool_calls));
  EXPECT_EQ(answered, Ids(first->tool_calls));
}

TEST_F(LlmServerQuirksTest, AnthropicAndStreamedToolCallsWithoutIdsGetMadeUpOnes) {
  Push200(R"({"content":[{"type":"tool_use","name":"read_file","input":{"path":"a"}},)"
          R"({"type":"tool_use","id":"","name":"read_file","input":{"path":"b"}}],)"
          R"("stop_reason":"tool_use"})");
  auto anthropic = Make("anthropic");
  LlmRequest req = Request();
  auto r = anthropic->Complete(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Ids(r->tool_calls), (std::vector<std::string>{"call_af_0", "call_af_1"}));
  AddTurn(&req, *r);
  Push200(R"({"content":[{"type":"text","text":"done"}],"stop_reason":"end_turn"})");
  ASSERT_TRUE(anthropic->Complete(req).ok());
  const nlohmann::json sent = server_.requests()[1].body["messages"];
  ASSERT_EQ(sent.size(), 3u);  // user, assistant, user (the results)
  EXPECT_EQ(sent[1]["content"][0]["id"], "call_af_0");
  EXPECT_EQ(sent[1]["content"][1]["id"], "call_af_1");
  EXPECT_EQ(sent[2]["content"][0]["tool_use_id"], "call_af_0");
  EXPECT_EQ(sent[2]["content"][1]["tool_use_id"], "call_af_1");

  PushSse(
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
      "\"function\":{\"name\":\"read_file\",\"arguments\":\"{\\\"pa\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
      "\"function\":{\"arguments\":\"th\\\":\\\"a\\\"}\"}}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
      "data: [DONE]\n\n");
  auto openai = Make("openai");
  r = openai->Complete(Request(/*stream=*/true));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Ids(r->tool_calls), (std::vector<std::string>{"call_af_0"}));
  EXPECT_EQ(r->tool_calls[0].arguments["path"], "a");
}

// Some local models wrap the arguments in a markdown fence.
TEST_F(LlmServerQuirksTest, ToolArgumentsInAMarkdownFenceAreUsed) {
  for (const char* provider : {"openai", "anthropic"}) {
    for (bool stream : {false, true}) {
      SCOPED_TRACE(std::string(provider) + (stream ? " streamed" : " plain"));
      server_.Push(FakeReply::Tools({{"c1", "write_file", nlohmann::json::object(),
                                      "```json\n{\"path\": \"a.txt\", \"content\": \"x\"}\n```"}}));
      auto r = Make(provider)->Complete(Request(stream));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_EQ(r->tool_calls.size(), 1u);
      EXPECT_TRUE(r->tool_calls[0].valid_arguments()) << r->tool_calls[0].arguments_error;
      EXPECT_EQ(r->tool_calls[0].arguments, (nlohmann::json{{"path", "a.txt"}, {"content", "x"}}));
    }
  }
}

}  // namespace
}  // namespace af
