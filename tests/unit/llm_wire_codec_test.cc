// The codecs' shared helpers (wire_codec.h) on what imperfect servers and
// models send.

#include <gtest/gtest.h>

#include "llm/wire_codec.h"

namespace af::llm {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";  // U+FFFD

std::string TextOf(std::string_view body) {
  auto j = ParseProviderJson("openai", body);
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  return j.ok() ? j->value("t", std::string("(none)")) : "(not parsed)";
}

TEST(WireCodecTest, BadCharactersInAReplyAreReplacedAndTheRestKept) {
  EXPECT_EQ(TextOf("{\"t\": \"a \xFF b\"}"), "a " + kFffd + " b");
  EXPECT_EQ(TextOf(R"({"t": "x \ud83d y"})"), "x " + kFffd + " y");
  EXPECT_EQ(TextOf(R"({"t": "low \udc00"})"), "low " + kFffd);
  EXPECT_EQ(TextOf(R"({"t": "end \ud83d"})"), "end " + kFffd);
  EXPECT_EQ(TextOf(R"({"t": "\ud83d\ud83d\ude00"})"), kFffd + "\xF0\x9F\x98\x80");
  // What is fine stays as it is: a pair, an escaped backslash before "ud83d".
  EXPECT_EQ(TextOf(R"({"t": "\ud83d\ude00 \\ud83d \u00e9"})"), "\xF0\x9F\x98\x80 \\ud83d \xC3\xA9");
  // Not JSON at all is still an error.
  EXPECT_FALSE(ParseProviderJson("openai", "<html>\xFF</html>").ok());
}

TEST(WireCodecTest, ErrorInReplyIsClassifiedAsTheStatusItStandsFor) {
  auto error = [](const char* body) { return ErrorInReply("openai", nlohmann::json::parse(body)); };
  EXPECT_TRUE(error(R"({"choices": []})").ok());
  EXPECT_TRUE(error(R"({"error": null, "choices": []})").ok());
  for (const char* transient :
       {R"({"error": "Model is loading"})", R"({"error": {"message": "Model unloaded"}})",
        R"({"error": {"message": "busy", "code": 503}})",
        R"({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})",
        R"({"error": {"message": "slow down", "type": "rate_limit_error"}})"}) {
    SCOPED_TRACE(transient);
    Status s = error(transient);
    EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  }
  Status s = error(R"({"error": {"message": "Model unloaded, please retry"}})");
  EXPECT_NE(s.message().find("Model unloaded, please retry"), std::string::npos) << s.message();
  for (const char* final :
       {R"({"error": {"message": "bad", "code": 400}})",
        R"({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})",
        R"({"error": {"message": "no", "type": "authentication_error"}})"}) {
    SCOPED_TRACE(final);
    EXPECT_EQ(error(final).code(), Code::kInvalidArgument);
  }
}

TEST(WireCodecTest, ContextTooLongIsRecognised) {
  for (const char* text :
       {"This model's maximum context length is 8192 tokens. However, you requested 17190 tokens",
        R"({"error":{"type":"exceed_context_size_error","message":"x"}})",
        "the request exceeds the available context size, try increasing it",
        R"({"error":{"code":"context_length_exceeded","message":"Your input is too big."}})",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit: 195000 + 8192 > 200000",
        "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens"}) {
    EXPECT_TRUE(SaysContextTooLong(text)) << text;
  }
  for (const char* text : {"model 'x' not found", "invalid tool schema", "temperature too high"}) {
    EXPECT_FALSE(SaysContextTooLong(text)) << text;
  }
}

std::vector<std::string> Ids(const std::vector<ToolCall>& calls) {
  std::vector<std::string> ids;
  for (const ToolCall& c : calls) ids.push_back(c.id);
  return ids;
}

TEST(WireCodecTest, ToolCallsWithoutUniqueIdsGetMadeUpOnes) {
  std::vector<ToolCall> calls(5);
  calls[0].id = "a";
  calls[2].id = "a";  // a duplicate of the first
  calls[3].id = "b";
  AssignToolCallIds({}, &calls);
  EXPECT_EQ(Ids(calls),
            (std::vector<std::string>{"a", "call_af_0", "call_af_1", "b", "call_af_2"}));

  // Later in a conversation: the numbers go on, and ids already used (also
  // made-up ones, or one the model reuses) are not given again.
  std::vector<ToolCall> later(3);
  later[1].id = "a";
  later[2].id = "call_af_4";
  AssignToolCallIds({"a", "b", "call_af_0", "call_af_1", "call_af_2"}, &later);
  EXPECT_EQ(Ids(later), (std::vector<std::string>{"call_af_5", "call_af_6", "call_af_4"}));

  // The same reply in the same conversation: the same ids.
  std::vector<ToolCall> again(3);
  again[1].id = "a";
  again[2].id = "call_af_4";
  AssignToolCallIds({"a", "b", "call_af_0", "call_af_1", "call_af_2"}, &again);
  EXPECT_EQ(Ids(again), Ids(later));
}

TEST(WireCodecTest, ArgumentsInAMarkdownFenceAreUnwrapped) {
  const nlohmann::json want = {{"path", "a.txt"}};
  for (const char* text : {"```json\n{\"path\": \"a.txt\"}\n```", "```\n{\"path\": \"a.txt\"}\n```",
                           "  ```json {\"path\": \"a.txt\"}```\n", "```{\"path\": \"a.txt\"}```"}) {
    SCOPED_TRACE(text);
    ToolCall call = DecodeToolCall("c1", "read_file", text);
    EXPECT_TRUE(call.valid_arguments()) << call.arguments_error;
    EXPECT_EQ(call.arguments, want);
  }
  // Still refused: not JSON inside the fence, not an object, text around it.
  for (const char* text : {"```json\n{\"path\": \n```", "```json\n[1]\n```",
                           "here: ```json\n{\"path\": \"a.txt\"}\n```", "```"}) {
    SCOPED_TRACE(text);
    ToolCall call = DecodeToolCall("c1", "read_file", text);
    EXPECT_FALSE(call.valid_arguments());
    EXPECT_EQ(call.raw_arguments, text);
  }
}

}  // namespace
}  // namespace af::llm
