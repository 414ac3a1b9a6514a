// The HTTP providers against the fake LLM server: one suite run for
// {anthropic, openai} x {plain, streamed}.

#include "af/llm/llm_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "af/llm/pricing.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af {
namespace {

using std::chrono::milliseconds;
using testing::FakeLlmServer;
using testing::FakeReply;
using testing::FakeToolCall;

constexpr char kKey[] = "sk-test-SECRET-0123456789abcdef";

struct Param {
  std::string provider;
  bool stream;
};
void PrintTo(const Param& p, std::ostream* os) {
  *os << p.provider << (p.stream ? "/streamed" : "/plain");
}

class LlmClientTest : public ::testing::TestWithParam<Param> {
 protected:
  bool anthropic() const { return GetParam().provider == "anthropic"; }
  std::string model() const { return anthropic() ? "claude-sonnet-4-5" : "gpt-4o"; }
  std::string key_env() const { return anthropic() ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY"; }

  LlmOptions Options() {
    LlmOptions o;
    o.provider = GetParam().provider;
    o.model = model();
    o.api_key = kKey;
    o.base_url = anthropic() ? server_.base_url() : server_.base_url() + "/v1";
    o.timeout = milliseconds(10000);
    o.max_retries = 4;
    o.seed = 42;
    o.sleep = [this](milliseconds d) { sleeps_.push_back(d); };
    o.on_call = [this](const LlmCallRecord& r) { records_.push_back(r); };
    return o;
  }

  std::unique_ptr<LlmClient> Make(const LlmOptions& o) {
    auto c = LlmClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  LlmRequest Request(std::string user = "Say hello.") {
    LlmRequest r;
    r.system = "You are a test agent.";
    r.messages = {Message::User(std::move(user))};
    r.stream = GetParam().stream;
    r.agent_role = "coder";
    r.feature_id = "feat-1";
    r.task_id = "task-1";
    return r;
  }

  Result<LlmResponse> Run(LlmClient& c, const LlmRequest& r) {
    return c.Complete(r, [this](std::string_view d) { deltas_.emplace_back(d); });
  }

  std::string path() const { return anthropic() ? "/v1/messages" : "/v1/chat/completions"; }

  FakeLlmServer server_;
  std::vector<milliseconds> sleeps_;
  std::vector<LlmCallRecord> records_;
  std::vector<std::string> deltas_;
};

TEST_P(LlmClientTest, TextReply) {
  server_.Push(FakeReply::Text("Hello there, this is the fake model."));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "Hello there, this is the fake model.");
  EXPECT_TRUE(r->tool_calls.empty());
  EXPECT_EQ(r->stop_reason, "end_turn");
  EXPECT_EQ(r->provider, GetParam().provider);
  EXPECT_EQ(r->model, model());
  EXPECT_EQ(r->usage.input_tokens, 11);
  EXPECT_EQ(r->usage.output_tokens, 7);
  EXPECT_EQ(r->attempts, 1);
  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, path());
  EXPECT_EQ(seen[0].body["model"], model());
  EXPECT_EQ(seen[0].body["max_tokens"], 4096);
  if (GetParam().stream) {
    EXPECT_EQ(seen[0].body["stream"], true);
    if (!anthropic()) EXPECT_EQ(seen[0].body["stream_options"]["include_usage"], true);
    // Several deltas arrived, and together they are the final text.
    EXPECT_GT(deltas_.size(), 1u);
    std::string joined;
    for (const auto& d : deltas_) joined += d;
    EXPECT_EQ(joined, r->text);
  } else {
    EXPECT_FALSE(seen[0].body.contains("stream"));
    EXPECT_TRUE(deltas_.empty());
  }
}

TEST_P(LlmClientTest, MultipleToolCallsParsed) {
  server_.Push(FakeReply::Tools(
      {{"call_a", "read_file", {{"path", "src/a.cc"}}, ""},
       {"call_b", "write_file", {{"path", "b.txt"}, {"content", "line 1\nline \"2\""}}, ""}},
      "Let me look."));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "Let me look.");
  EXPECT_EQ(r->stop_reason, "tool_use");
  ASSERT_EQ(r->tool_calls.size(), 2u);
  EXPECT_EQ(r->tool_calls[0].id, "call_a");
  EXPECT_EQ(r->tool_calls[0].name, "read_file");
  EXPECT_EQ(r->tool_calls[0].arguments, (nlohmann::json{{"path", "src/a.cc"}}));
  EXPECT_EQ(r->tool_calls[1].id, "call_b");
  EXPECT_EQ(r->tool_calls[1].name, "write_file");
  EXPECT_EQ(r->tool_calls[1].arguments["content"], "line 1\nline \"2\"");
}

TEST_P(LlmClientTest, ConversationEncodedInWireFormat) {
  server_.Push(FakeReply::Text("done"));
  auto c = Make(Options());
  LlmRequest req = Request("Fix the bug.");
  req.tools = {{"read_file",
                "Read a file",
                {{"type", "object"},
                 {"properties", {{"path", {{"type", "string"}}}}},
                 {"required", {"path"}}}}};
  req.messages.push_back(Message::Assistant("Reading.", {{"t1", "read_file", {{"path", "a.cc"}}},
                                                         {"t2", "read_file", {{"path", "b.cc"}}}}));
  req.messages.push_back(Message::ToolResult("t1", "int main() {}"));
  req.messages.push_back(Message::ToolResult("t2", "no such file", /*is_error=*/true));
  ASSERT_TRUE(Run(*c, req).ok());

  auto seen = server_.requests();
  ASSERT_EQ(seen.size(), 1u);
  const auto& h = seen[0].headers;
  const nlohmann::json& b = seen[0].body;
  EXPECT_EQ(b["model"], model());
  EXPECT_EQ(h.at("content-type"), "application/json");
  if (anthropic()) {
    EXPECT_EQ(h.at("x-api-key"), kKey);
    EXPECT_EQ(h.at("anthropic-version"), "2023-06-01");
    EXPECT_EQ(h.count("authorization"), 0u);
    // Prompt caching: breakpoints on the system prompt, the last tool, the
    // first user message (the prefix every turn repeats) and the last block
    // of the last message (what the next turn repeats), nowhere else.
    const nlohmann::json ephemeral = {{"type", "ephemeral"}};
    EXPECT_EQ(b["system"], (nlohmann::json::array({{{"type", "text"},
                                                    {"text", "You are a test agent."},
                                                    {"cache_control", ephemeral}}})));
    ASSERT_EQ(b["tools"].size(), 1u);
    EXPECT_EQ(b["tools"][0]["cache_control"], ephemeral);
    EXPECT_EQ(b["messages"][0]["content"][0]["cache_control"], ephemeral);
    EXPECT_FALSE(b["messages"][1]["content"][0].contains("cache_control"));
    const nlohmann::json& last = b["messages"].back()["content"];
    EXPECT_EQ(last.back()["cache_control"], ephemeral);
    int breakpoints = 0;
    for (const auto& msg : b["messages"])
      for (const auto& block : msg["content"]) breakpoints += block.contains("cache_control");
    EXPECT_EQ(breakpoints, 2);  // + system + tools: the API's limit of four
    EXPECT_EQ(b["tools"][0]["name"], "read_file");
    EXPECT_EQ(b["tools"][0]["description"], "Read a file");
    EXPECT_EQ(b["tools"][0]["input_schema"], req.tools[0].input_schema);
    const nlohmann::json& m = b["messages"];
    ASSERT_EQ(m.size(), 3u) << m.dump();
    EXPECT_EQ(m[0]["role"], "user");
    EXPECT_EQ(m[0]["content"][0]["text"], "Fix the bug.");
    EXPECT_EQ(m[1]["role"], "assistant");
    ASSERT_EQ(m[1]["content"].size(), 3u);
    EXPECT_EQ(m[1]["content"][0], (nlohmann::json{{"type", "text"}, {"text", "Reading."}}));
    EXPECT_EQ(m[1]["content"][1]["type"], "tool_use");
    EXPECT_EQ(m[1]["content"][1]["id"], "t1");
    EXPECT_EQ(m[1]["content"][1]["name"], "read_file");
    EXPECT_EQ(m[1]["content"][1]["input"], (nlohmann::json{{"path", "a.cc"}}));
    // Both tool results are merged into one user message.
    EXPECT_EQ(m[2]["role"], "user");
    ASSERT_EQ(m[2]["content"].size(), 2u);
    EXPECT_EQ(m[2]["content"][0]["type"], "tool_result");
    EXPECT_EQ(m[2]["content"][0]["tool_use_id"], "t1");
    EXPECT_EQ(m[2]["content"][0]["content"], "int main() {}");
    EXPECT_FALSE(m[2]["content"][0].value("is_error", false));
    EXPECT_EQ(m[2]["content"][1]["tool_use_id"], "t2");
    EXPECT_EQ(m[2]["content"][1]["is_error"], true);
  } else {
    EXPECT_EQ(h.at("authorization"), std::string("Bearer ") + kKey);
    EXPECT_EQ(h.count("x-api-key"), 0u);
    EXPECT_FALSE(b.contains("system"));
    ASSERT_EQ(b["tools"].size(), 1u);
    EXPECT_EQ(b["tools"][0]["type"], "function");
    EXPECT_EQ(b["tools"][0]["function"]["name"], "read_file");
    EXPECT_EQ(b["tools"][0]["function"]["description"], "Read a file");
    EXPECT_EQ(b["tools"][0]["function"]["parameters"], req.tools[0].input_schema);
    const nlohmann::json& m = b["messages"];
    ASSERT_EQ(m.size(), 5u) << m.dump();
    EXPECT_EQ(m[0], (nlohmann::json{{"role", "system"}, {"content", "You are a test agent."}}));
    EXPECT_EQ(m[1], (nlohmann::json{{"role", "user"}, {"content", "Fix the bug."}}));
    EXPECT_EQ(m[2]["role"], "assistant");
    EXPECT_EQ(m[2]["content"], "Reading.");
    ASSERT_EQ(m[2]["tool_calls"].size(), 2u);
    EXPECT_EQ(m[2]["tool_calls"][0]["id"], "t1");
    EXPECT_EQ(m[2]["tool_calls"][0]["type"], "function");
    EXPECT_EQ(m[2]["tool_calls"][0]["function"]["name"], "read_file");
    // Arguments travel as a JSON string.
    ASSERT_TRUE(m[2]["tool_calls"][0]["function"]["arguments"].is_string());
    EXPECT_EQ(
        nlohmann::json::parse(m[2]["tool_calls"][0]["function"]["arguments"].get<std::string>()),
        (nlohmann::json{{"path", "a.cc"}}));
    EXPECT_EQ(m[3]["role"], "tool");
    EXPECT_EQ(m[3]["tool_call_id"], "t1");
    EXPECT_EQ(m[3]["content"], "int main() {}");
    EXPECT_EQ(m[4]["role"], "tool");
    EXPECT_EQ(m[4]["tool_call_id"], "t2");
    EXPECT_NE(m[4]["content"].get<std::string>().find("no such file"), std::string::npos);
  }
}

TEST_P(LlmClientTest, RateLimitHonoursRetryAfter) {
  server_.Push(
      FakeReply::Status(429, R"({"error":{"message":"slow down"}})", {{"retry-after", "2"}}));
  server_.Push(FakeReply::Text("ok now"));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "ok now");
  EXPECT_EQ(r->attempts, 2);
  EXPECT_EQ(server_.request_count(), 2u);
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_GE(sleeps_[0], milliseconds(2000));
}

TEST_P(LlmClientTest, ServerErrorsRetriedThenSuccess) {
  server_.Push(FakeReply::Status(500, R"({"error":{"message":"boom"}})"));
  server_.Push(FakeReply::Status(
      529, R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"));
  server_.Push(FakeReply::Text("finally"));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "finally");
  EXPECT_EQ(r->attempts, 3);
  EXPECT_EQ(server_.request_count(), 3u);
  EXPECT_EQ(sleeps_.size(), 2u);
}

TEST_P(LlmClientTest, RetriesExhaustedNamesStatus) {
  for (int i = 0; i < 3; ++i) {
    server_.Push(FakeReply::Status(503, R"({"error":{"message":"try later"}})"));
  }
  LlmOptions o = Options();
  o.max_retries = 2;
  auto c = Make(o);
  auto r = Run(*c, Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("HTTP 503"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("try later"), std::string::npos);
  EXPECT_NE(r.status().message().find("3 attempts"), std::string::npos);
  EXPECT_EQ(server_.request_count(), 3u);
  EXPECT_EQ(sleeps_.size(), 2u);
}

TEST_P(LlmClientTest, HangPastTimeoutIsDeadlineExceeded) {
  server_.Push(FakeReply::Hang());
  LlmOptions o = Options();
  o.timeout = milliseconds(300);
  o.max_retries = 0;
  auto c = Make(o);
  auto r = Run(*c, Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().ToString();
  EXPECT_EQ(server_.request_count(), 1u);
}

TEST_P(LlmClientTest, MalformedJsonIsClearError) {
  server_.Push(FakeReply::Malformed());
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_NE(r.status().message().find("malformed JSON"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("not json"), std::string::npos) << r.status().message();
  EXPECT_LT(r.status().message().size(), 400u);
  EXPECT_EQ(server_.request_count(), 1u);
}

TEST_P(LlmClientTest, CutStreamRetriedThenSuccess) {
  server_.Push(FakeReply::Cut(3));
  server_.Push(FakeReply::Text("complete answer"));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "complete answer");
  EXPECT_EQ(r->attempts, 2);
  EXPECT_EQ(server_.request_count(), 2u);
}

TEST_P(LlmClientTest, CutStreamClearErrorWhenRetriesExhausted) {
  server_.Push(FakeReply::Cut(3));
  server_.Push(FakeReply::Cut(3));
  LlmOptions o = Options();
  o.max_retries = 1;
  auto c = Make(o);
  auto r = Run(*c, Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("2 attempts"), std::string::npos) << r.status().message();
  EXPECT_EQ(server_.request_count(), 2u);
}

TEST_P(LlmClientTest, UnauthorizedFailsAtOnceWithoutLeakingKey) {
  // The body echoes the key, as some providers do in part.
  server_.Push(FakeReply::Status(
      401, std::string(R"({"error":{"type":"authentication_error","message":"bad key )") + kKey +
               "\"}}"));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnauthenticated);
  const std::string all = r.status().ToString();
  EXPECT_NE(all.find("Invalid API key"), std::string::npos) << all;
  EXPECT_NE(all.find(GetParam().provider), std::string::npos) << all;
  EXPECT_NE(all.find(key_env()), std::string::npos) << all;
  EXPECT_NE(all.find("export " + key_env() + "=..."), std::string::npos) << all;
  EXPECT_NE(all.find("agent-factory config show-key"), std::string::npos) << all;
  EXPECT_EQ(all.find(kKey), std::string::npos) << all;
  EXPECT_EQ(server_.request_count(), 1u);
  EXPECT_TRUE(sleeps_.empty());
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0].status, "unauthenticated");
  EXPECT_EQ(records_[0].error.find(kKey), std::string::npos);
}

TEST_P(LlmClientTest, OtherClientErrorFailsAtOnceWithProviderMessageButNoKey) {
  server_.Push(FakeReply::Status(
      400, std::string(R"({"error":{"message":"max_tokens too large for key )") + kKey + "\"}}"));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("max_tokens too large"), std::string::npos);
  EXPECT_EQ(r.status().ToString().find(kKey), std::string::npos);
  EXPECT_EQ(server_.request_count(), 1u);
}

TEST_P(LlmClientTest, MissingKeyFailsBeforeAnyRequest) {
  LlmOptions o = Options();
  o.api_key.clear();
  if (!anthropic()) o.base_url.clear();  // OpenAI's own endpoint needs a key
  auto c = LlmClient::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(c.status().message(), key_env() + " not set");
  EXPECT_EQ(c.status().hint(), "export " + key_env() + "=... (or put it in .env)");
  EXPECT_EQ(server_.request_count(), 0u);
}

// A call whose arguments are not JSON does not cost the whole reply: the
// other calls and the text come through, and the bad call keeps its text and
// what is wrong with it, so the agent can ask the model again.
TEST_P(LlmClientTest, InvalidToolArgumentsAreKeptWithTheirError) {
  const std::string raw = "{\"path\": \"a.txt\", oops";
  FakeToolCall bad{"c1", "write_file", nlohmann::json::object(), raw};
  FakeToolCall good{"c2", "read_file", {{"path", "b.txt"}}, ""};
  FakeToolCall array{"c3", "finish", nlohmann::json::object(), "[1, 2]"};
  server_.Push(FakeReply::Tools({bad, good, array}, "let me write"));
  auto c = Make(Options());
  auto r = Run(*c, Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "let me write");
  ASSERT_EQ(r->tool_calls.size(), 3u);
  const ToolCall& b = r->tool_calls[0];
  EXPECT_EQ(b.id, "c1");
  EXPECT_EQ(b.name, "write_file");
  EXPECT_FALSE(b.valid_arguments());
  EXPECT_EQ(b.raw_arguments, raw);
  EXPECT_EQ(b.arguments, nlohmann::json::object());
  EXPECT_NE(b.arguments_error.find("not valid JSON"), std::string::npos) << b.arguments_error;
  EXPECT_NE(b.arguments_error.find("column"), std::string::npos) << b.arguments_error;
  EXPECT_EQ(b.arguments_error.find("json.exception"), std::string::npos) << b.arguments_error;
  EXPECT_TRUE(r->tool_calls[1].valid_arguments());
  EXPECT_EQ(r->tool_calls[1].arguments["path"], "b.txt");
  EXPECT_NE(r->tool_calls[2].arguments_error.find("not an object"), std::string::npos)
      << r->tool_calls[2].arguments_error;
  EXPECT_EQ(server_.request_count(), 1u);

  // Recorded and replayed (a resumed feature) with its error.
  auto back = ResponseFromJson(ResponseToJson(*r));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->tool_calls[0].raw_arguments, raw);
  EXPECT_EQ(back->tool_calls[0].arguments_error, b.arguments_error);
  EXPECT_TRUE(back->tool_calls[1].valid_arguments());
}

TEST_P(LlmClientTest, ObserverReceivesTokensCostAttemptsStatus) {
  server_.Push(FakeReply::Status(500));
  FakeReply reply = FakeReply::Text("answer");
  reply.input_tokens = 1000;
  reply.output_tokens = 500;
  server_.Push(reply);
  auto c = Make(Options());
  LlmRequest req = Request();
  ASSERT_TRUE(Run(*c, req).ok());
  ASSERT_EQ(records_.size(), 1u);
  const LlmCallRecord& rec = records_[0];
  EXPECT_EQ(rec.provider, GetParam().provider);
  EXPECT_EQ(rec.model, model());
  EXPECT_EQ(rec.agent_role, "coder");
  EXPECT_EQ(rec.feature_id, "feat-1");
  EXPECT_EQ(rec.task_id, "task-1");
  EXPECT_EQ(rec.request_hash, RequestHash(req));
  EXPECT_EQ(rec.input_tokens, 1000);
  EXPECT_EQ(rec.output_tokens, 500);
  EXPECT_GT(rec.cost_usd, 0);
  EXPECT_DOUBLE_EQ(rec.cost_usd, CostUsd(GetParam().provider, model(), {1000, 500}));
  EXPECT_EQ(rec.attempts, 2);
  EXPECT_EQ(rec.status, "ok");
  EXPECT_TRUE(rec.error.empty());
}

// Local servers often report no usage, or zeros: the call is charged the
// estimate the replay provider uses, so token budgets hold and the usage
// shown is not "0 tokens in, 0 out".
TEST_P(LlmClientTest, UsageReportedAsZeroIsEstimated) {
  FakeReply reply = FakeReply::Text("A reply of some length from a server that counts nothing.");
  reply.input_tokens = 0;
  reply.output_tokens = 0;
  server_.Push(reply);
  auto c = Make(Options());
  const LlmRequest req = Request("Say something long enough to be worth counting, please.");
  auto r = Run(*c, req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->usage.input_tokens, EstimateTokens(req));
  EXPECT_EQ(r->usage.output_tokens, EstimateTokens(*r));
  EXPECT_GT(r->usage.output_tokens, 10);
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0].input_tokens, r->usage.input_tokens);
  EXPECT_EQ(records_[0].output_tokens, r->usage.output_tokens);
}

TEST_P(LlmClientTest, ConcurrentCallsShareOneClient) {
  constexpr int kThreads = 6;
  for (int i = 0; i < kThreads; ++i) server_.Push(FakeReply::Text("same answer"));
  LlmOptions o = Options();
  o.on_call = nullptr;
  o.sleep = nullptr;
  o.max_retries = 0;
  auto c = Make(o);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      auto r = c->Complete(Request());
      if (r.ok() && r->text == "same answer") ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads);
  EXPECT_EQ(server_.request_count(), static_cast<size_t>(kThreads));
}

INSTANTIATE_TEST_SUITE_P(Providers, LlmClientTest,
                         ::testing::Values(Param{"anthropic", false}, Param{"anthropic", true},
                                           Param{"openai", false}, Param{"openai", true}),
                         [](const ::testing::TestParamInfo<Param>& p) {
                           return p.param.provider + (p.param.stream ? "_streamed" : "_plain");
                         });

// Not parameterized: behaviour specific to one provider or to the transport.

TEST(LlmClientStandaloneTest, OpenAiCompatibleServerWithoutKey) {
  FakeLlmServer server;
  server.Push(FakeReply::Text("local model says hi"));
  LlmOptions o;
  o.provider = "openai";
  o.model = "llama3";
  o.base_url = server.base_url() + "/v1/";  // trailing slash tolerated
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto r = (*c)->Complete(LlmRequest{.messages = {Message::User("hi")}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "local model says hi");
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].path, "/v1/chat/completions");
  EXPECT_EQ(seen[0].headers.count("authorization"), 0u);
}

TEST(LlmClientStandaloneTest, ConnectionRefusedNamesUrlAndHint) {
  const int port = testing::FreePort();
  LlmOptions o;
  o.provider = "anthropic";
  o.model = "claude-sonnet-4-5";
  o.api_key = kKey;
  o.base_url = "http://127.0.0.1:" + std::to_string(port);
  o.max_retries = 1;
  std::vector<milliseconds> sleeps;
  o.sleep = [&](milliseconds d) { sleeps.push_back(d); };
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Complete(LlmRequest{.messages = {Message::User("hi")}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find(o.base_url + "/v1/messages"), std::string::npos)
      << r.status().ToString();
  EXPECT_NE(r.status().hint().find("base URL"), std::string::npos);
  EXPECT_EQ(sleeps.size(), 1u);  // retried once
}

TEST(LlmClientStandaloneTest, AnthropicStreamErrorEventIsError) {
  // A non-retryable error event mid-stream is reported at once.
  FakeLlmServer server;
  // A hand-made stream: the fake's status reply with an SSE body.
  const std::string sse =
      "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
      "\"message\":\"prompt is too long\"}}\n\n";
  server.Push(FakeReply::Status(200, sse, {{"Content-Type", "text/event-stream"}}));
  LlmOptions o;
  o.provider = "anthropic";
  o.model = "claude-sonnet-4-5";
  o.api_key = kKey;
  o.base_url = server.base_url();
  o.sleep = [](milliseconds) {};
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok());
  LlmRequest req{.messages = {Message::User("hi")}, .stream = true};
  auto r = (*c)->Complete(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("prompt is too long"), std::string::npos)
      << r.status().ToString();
  EXPECT_EQ(server.request_count(), 1u);
}

TEST(LlmClientStandaloneTest, AnthropicOverloadedEventMidStreamIsRetried) {
  FakeLlmServer server;
  const std::string sse =
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
      "{\"input_tokens\":5}}}\n\n"
      "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
      "\"message\":\"Overloaded\"}}\n\n";
  server.Push(FakeReply::Status(200, sse, {{"Content-Type", "text/event-stream"}}));
  server.Push(FakeReply::Text("second try"));
  LlmOptions o;
  o.provider = "anthropic";
  o.model = "claude-sonnet-4-5";
  o.api_key = kKey;
  o.base_url = server.base_url();
  int sleeps = 0;
  o.sleep = [&](milliseconds) { ++sleeps; };
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok());
  LlmRequest req{.messages = {Message::User("hi")}, .stream = true};
  auto r = (*c)->Complete(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "second try");
  EXPECT_EQ(r->attempts, 2);
  EXPECT_EQ(sleeps, 1);
}

TEST(LlmClientStandaloneTest, StreamedRequestAnsweredWithPlainJson) {
  // Some compatible servers ignore "stream": the JSON answer is still used.
  FakeLlmServer server;
  server.Push(FakeReply::Status(
      200, R"({"model":"llama3","choices":[{"index":0,"message":{"role":"assistant",)"
           R"("content":"not streamed"},"finish_reason":"stop"}],)"
           R"("usage":{"prompt_tokens":3,"completion_tokens":2}})"));
  LlmOptions o;
  o.provider = "openai";
  o.model = "llama3";
  o.base_url = server.base_url() + "/v1";
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok());
  LlmRequest req{.messages = {Message::User("hi")}, .stream = true};
  std::string streamed;
  auto r = (*c)->Complete(req, [&](std::string_view d) { streamed += d; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->text, "not streamed");
  EXPECT_EQ(streamed, "not streamed");
  EXPECT_EQ(r->usage.output_tokens, 2);
}

TEST(LlmClientStandaloneTest, OpenAiReasoningModelsGetMaxCompletionTokens) {
  FakeLlmServer server;
  server.Push(FakeReply::Text("a"));
  server.Push(FakeReply::Text("b"));
  LlmOptions o;
  o.provider = "openai";
  o.api_key = kKey;
  o.base_url = server.base_url() + "/v1";
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok());
  LlmRequest req{.model = "gpt-5-mini", .messages = {Message::User("hi")}, .max_tokens = 99};
  ASSERT_TRUE((*c)->Complete(req).ok());
  req.model = "gpt-4o";
  ASSERT_TRUE((*c)->Complete(req).ok());
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].body["max_completion_tokens"], 99);
  EXPECT_FALSE(seen[0].body.contains("max_tokens"));
  EXPECT_FALSE(seen[0].body.contains("temperature"));
  EXPECT_EQ(seen[1].body["max_tokens"], 99);
  EXPECT_DOUBLE_EQ(seen[1].body["temperature"].get<double>(), 0.2);
}

TEST(LlmClientStandaloneTest, NoModelIsInvalidArgument) {
  FakeLlmServer server;
  LlmOptions o;
  o.provider = "anthropic";
  o.api_key = kKey;
  o.base_url = server.base_url();
  auto c = LlmClient::Create(o);
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Complete(LlmRequest{.messages = {Message::User("hi")}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(server.request_count(), 0u);
}

TEST(LlmClientStandaloneTest, UnknownProviderRejected) {
  LlmOptions o;
  o.provider = "gemini";
  auto c = LlmClient::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("gemini"), std::string::npos);
}

}  // namespace
}  // namespace af
