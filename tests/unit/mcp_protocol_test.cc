// The MCP protocol core, line in -> line out, over a small tool table; and
// the tools' schemas and their answers without a knowledge base or a server.
#include <gtest/gtest.h>

#include <sstream>

#include "af/llm/http_transport.h"
#include "af/mcp/mcp_server.h"

namespace af::mcp {
namespace {

using json = nlohmann::json;

json Schema() {
  return {{"type", "object"},
          {"properties",
           {{"text", {{"type", "string"}, {"minLength", 1}}},
            {"n", {{"type", "integer"}, {"minimum", 1}, {"maximum", 10}}},
            {"kind", {{"type", "string"}, {"enum", {"a", "b"}}}},
            {"tags", {{"type", "array"}, {"items", {{"type", "string"}}}}},
            {"x", {{"type", "number"}, {"minimum", 0}, {"maximum", 1}}},
            {"flag", {{"type", "boolean"}}}}},
          {"required", {"text"}},
          {"additionalProperties", false}};
}

std::vector<Tool> TestTools(json* last_args = nullptr) {
  return {
      {"echo", "Echoes its arguments", Schema(),
       [last_args](const json& a) -> Result<json> {
         if (last_args) *last_args = a;
         return json{{"echo", a}};
       }},
      {"fail",
       "Always fails",
       {{"type", "object"}, {"properties", json::object()}},
       [](const json&) -> Result<json> {
         return Unavailable("the thing is down", "start the thing");
       }},
      {"throws",
       "Throws",
       {{"type", "object"}},
       [](const json&) -> Result<json> { throw std::runtime_error("boom"); }},
  };
}

json Call(Protocol& p, const json& message) {
  auto reply = p.HandleLine(message.dump());
  if (!reply) return nullptr;
  return json::parse(*reply);
}

json Request(int id, const std::string& method, json params = json::object()) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
}

TEST(McpProtocol, InitializeEchoesASupportedVersionElseOffersTheLatest) {
  Protocol p(TestTools(), "1.2.3");
  json r = Call(p, Request(1, "initialize",
                           {{"protocolVersion", "2025-03-26"},
                            {"capabilities", json::object()},
                            {"clientInfo", {{"name", "t"}, {"version", "1"}}}}));
  EXPECT_EQ(r["jsonrpc"], "2.0");
  EXPECT_EQ(r["id"], 1);
  EXPECT_EQ(r["result"]["protocolVersion"], "2025-03-26");
  EXPECT_TRUE(r["result"]["capabilities"].contains("tools"));
  EXPECT_EQ(r["result"]["serverInfo"]["name"], "agent-factory");
  EXPECT_EQ(r["result"]["serverInfo"]["version"], "1.2.3");

  r = Call(p, Request(2, "initialize", {{"protocolVersion", "1999-01-01"}}));
  EXPECT_EQ(r["result"]["protocolVersion"], SupportedProtocolVersions().front());
}

TEST(McpProtocol, NotificationsGetNoReply) {
  Protocol p(TestTools(), "1");
  EXPECT_FALSE(p.HandleLine(R"({"jsonrpc":"2.0","method":"notifications/initialized"})"));
  // Even an unknown method or a tool call: no id, no reply.
  EXPECT_FALSE(p.HandleLine(R"({"jsonrpc":"2.0","method":"nope"})"));
  EXPECT_FALSE(p.HandleLine(R"({"jsonrpc":"2.0","result":{},"id":5})"));  // a response
  EXPECT_FALSE(p.HandleLine(""));
  EXPECT_FALSE(p.HandleLine("   \r"));
}

TEST(McpProtocol, PingAndStringIds) {
  Protocol p(TestTools(), "1");
  json r = Call(p, {{"jsonrpc", "2.0"}, {"id", "abc"}, {"method", "ping"}});
  EXPECT_EQ(r["id"], "abc");
  EXPECT_EQ(r["result"], json::object());
}

TEST(McpProtocol, ErrorsUseTheJsonRpcCodes) {
  Protocol p(TestTools(), "1");
  json r = json::parse(*p.HandleLine("{not json"));
  EXPECT_EQ(r["error"]["code"], kParseError);
  EXPECT_TRUE(r["id"].is_null());

  r = json::parse(*p.HandleLine("42"));
  EXPECT_EQ(r["error"]["code"], kInvalidRequest);

  r = Call(p, {{"jsonrpc", "1.0"}, {"id", 3}, {"method", "ping"}});
  EXPECT_EQ(r["error"]["code"], kInvalidRequest);
  EXPECT_EQ(r["id"], 3);

  r = Call(p, {{"jsonrpc", "2.0"}, {"id", {1, 2}}, {"method", "ping"}});
  EXPECT_EQ(r["error"]["code"], kInvalidRequest);

  r = Call(p, Request(4, "resources/list"));
  EXPECT_EQ(r["error"]["code"], kMethodNotFound);
  EXPECT_EQ(r["id"], 4);

  r = Call(p, {{"jsonrpc", "2.0"}, {"id", 5}, {"method", "tools/list"}, {"params", {1}}});
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
}

TEST(McpProtocol, DeeplyNestedInputIsAParseErrorNotACrash) {
  Protocol p(TestTools(), "1");
  std::string deep(100000, '[');
  json r = json::parse(*p.HandleLine(deep));
  EXPECT_EQ(r["error"]["code"], kParseError);
}

TEST(McpProtocol, ToolsListGivesEveryToolWithItsSchema) {
  Protocol p(TestTools(), "1");
  json r = Call(p, Request(1, "tools/list"));
  ASSERT_EQ(r["result"]["tools"].size(), 3u);
  EXPECT_EQ(r["result"]["tools"][0]["name"], "echo");
  EXPECT_EQ(r["result"]["tools"][0]["description"], "Echoes its arguments");
  EXPECT_EQ(r["result"]["tools"][0]["inputSchema"], Schema());
}

TEST(McpProtocol, ToolsCallReturnsTextAndStructuredContent) {
  json seen;
  Protocol p(TestTools(&seen), "1");
  json r = Call(
      p, Request(7, "tools/call", {{"name", "echo"}, {"arguments", {{"text", "hi"}, {"n", 3}}}}));
  ASSERT_TRUE(r.contains("result")) << r.dump();
  const json& res = r["result"];
  EXPECT_EQ(res["isError"], false);
  EXPECT_EQ(res["structuredContent"]["echo"]["text"], "hi");
  ASSERT_EQ(res["content"].size(), 1u);
  EXPECT_EQ(res["content"][0]["type"], "text");
  EXPECT_EQ(json::parse(res["content"][0]["text"].get<std::string>()), res["structuredContent"]);
  EXPECT_EQ(seen["n"], 3);
}

TEST(McpProtocol, UnknownToolAndBadArgumentsAreInvalidParams) {
  json seen;
  Protocol p(TestTools(&seen), "1");
  json r = Call(p, Request(1, "tools/call", {{"name", "nope"}}));
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("nope"), std::string::npos);

  struct Case {
    json args;
    std::string says;
  } cases[] = {
      {json::object(), "text: is required"},
      {{{"text", ""}}, "text: must not be empty"},
      {{{"text", 5}}, "text: must be string"},
      {{{"text", "a"}, {"n", 11}}, "n: must be at most 10"},
      {{{"text", "a"}, {"n", 0}}, "n: must be at least 1"},
      {{{"text", "a"}, {"n", 2.5}}, "n: must be integer"},
      {{{"text", "a"}, {"kind", "c"}}, "kind: must be one of \"a\", \"b\""},
      {{{"text", "a"}, {"tags", {"x", 1}}}, "tags[1]: must be string"},
      {{{"text", "a"}, {"x", 1.5}}, "x: must be at most 1"},
      {{{"text", "a"}, {"flag", "yes"}}, "flag: must be boolean"},
      {{{"text", "a"}, {"extra", 1}}, "unknown argument 'extra'"},
  };
  for (const auto& c : cases) {
    seen = nullptr;
    r = Call(p, Request(2, "tools/call", {{"name", "echo"}, {"arguments", c.args}}));
    ASSERT_TRUE(r.contains("error")) << c.args.dump() << " -> " << r.dump();
    EXPECT_EQ(r["error"]["code"], kInvalidParams);
    EXPECT_NE(r["error"]["message"].get<std::string>().find(c.says), std::string::npos)
        << r["error"]["message"] << " should say " << c.says;
    EXPECT_TRUE(seen.is_null()) << "the tool must not run on bad arguments";
  }
  // An integral float is an integer; arguments may be omitted when none are required.
  r = Call(
      p, Request(3, "tools/call", {{"name", "echo"}, {"arguments", {{"text", "a"}, {"n", 2.0}}}}));
  EXPECT_EQ(r["result"]["isError"], false) << r.dump();
  r = Call(p, Request(4, "tools/call", {{"name", "fail"}}));
  EXPECT_TRUE(r.contains("result")) << r.dump();
}

TEST(McpProtocol, AFailingToolIsAnIsErrorResultWithWhatToDo) {
  Protocol p(TestTools(), "1");
  json r = Call(p, Request(1, "tools/call", {{"name", "fail"}, {"arguments", json::object()}}));
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(r["result"]["isError"], true);
  const std::string text = r["result"]["content"][0]["text"];
  EXPECT_NE(text.find("the thing is down"), std::string::npos);
  EXPECT_NE(text.find("hint: start the thing"), std::string::npos);

  r = Call(p, Request(2, "tools/call", {{"name", "throws"}}));
  EXPECT_EQ(r["error"]["code"], kInternalError);
}

TEST(McpProtocol, BatchesAreAnsweredInOneArray) {
  Protocol p(TestTools(), "1");
  json batch = {Request(1, "ping"),
                {{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}},
                Request(2, "nope")};
  json r = Call(p, batch);
  ASSERT_TRUE(r.is_array());
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0]["id"], 1);
  EXPECT_EQ(r[1]["error"]["code"], kMethodNotFound);
  EXPECT_EQ(Call(p, json::array())["error"]["code"], kInvalidRequest);
  EXPECT_TRUE(Call(p, {{{"jsonrpc", "2.0"}, {"method", "x"}}}).is_null());
}

TEST(McpProtocol, ServeStreamAnswersLineByLineAndSurvivesAnOversizedLine) {
  Protocol p(TestTools(), "1");
  std::string input = Request(1, "ping").dump() + "\n";
  input += "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":{\"pad\":\"" +
           std::string(kMaxLineBytes + 10, 'x') + "\"}}\n";
  input += R"({"jsonrpc":"2.0","method":"notifications/initialized"})"
           "\n";
  input += Request(3, "ping").dump();  // the last line may lack its newline
  std::istringstream in(input);
  std::ostringstream out;
  ServeStream(p, in, out);
  std::istringstream lines(out.str());
  std::vector<json> replies;
  for (std::string line; std::getline(lines, line);) replies.push_back(json::parse(line));
  ASSERT_EQ(replies.size(), 3u) << out.str().substr(0, 500);
  EXPECT_EQ(replies[0]["id"], 1);
  EXPECT_EQ(replies[1]["error"]["code"], kInvalidRequest);
  EXPECT_NE(replies[1]["error"]["message"].get<std::string>().find("MiB"), std::string::npos);
  EXPECT_EQ(replies[2]["id"], 3);
}

// --- The tools, without a knowledge base or a server ---------------------------

class RefusingTransport : public HttpTransport {
 public:
  Result<ClientResponse> Send(const ClientRequest& req,
                              const std::function<bool(std::string_view)>&) override {
    last_url = req.url;
    return Unavailable("connection refused to " + req.url);
  }
  std::string last_url;
};

// The feature tools' context with `transport` standing in for the server.
ToolContext ServerAt(std::shared_ptr<HttpTransport> transport) {
  ToolContext ctx;
  ctx.server_url = "http://127.0.0.1:1";
  ctx.transport = std::move(transport);
  return ctx;
}

// Answers every request as the server answers a challenged feature, and
// keeps the body it was sent.
class ChallengingTransport : public HttpTransport {
 public:
  Result<ClientResponse> Send(const ClientRequest& req,
                              const std::function<bool(std::string_view)>&) override {
    last_body = req.body;
    ClientResponse r;
    r.status = 422;
    r.body = json{{"error",
                   {{"code", "WORK_PLAN_CHALLENGED"},
                    {"message", "Work plan challenged:\n  - Tech stack not specified"},
                    {"details", {{"issues", {"Tech stack not specified"}}}},
                    {"hint",
                     "add the missing parts, or bypass with "
                     "\"challenge_vague_requirements\": false"}}}}
                 .dump();
    return r;
  }
  std::string last_body;
};

// The bypass the challenge's hint names is an argument feature_submit takes,
// and the issues are said once.
TEST(McpTools, FeatureSubmitTakesTheBypassItsChallengeNames) {
  auto transport = std::make_shared<ChallengingTransport>();
  Protocol p(MakeTools(ServerAt(transport)), "1");
  json r = Call(p, Request(1, "tools/call",
                           {{"name", "feature_submit"},
                            {"arguments", {{"title", "make it better"}, {"description", "d"}}}}));
  ASSERT_TRUE(r.contains("result")) << r.dump();
  const std::string text = r["result"]["content"][0]["text"];
  EXPECT_EQ(text.find("Tech stack not specified"), text.rfind("Tech stack not specified")) << text;
  r = Call(
      p,
      Request(2, "tools/call",
              {{"name", "feature_submit"},
               {"arguments",
                {{"title", "t"}, {"description", "d"}, {"challenge_vague_requirements", false}}}}));
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(json::parse(transport->last_body)["challenge_vague_requirements"], false);
}

TEST(McpTools, NineToolsEachWithAClosedObjectSchemaAndADescription) {
  ToolContext ctx;
  auto tools = MakeTools(ctx);
  std::vector<std::string> names;
  for (const auto& t : tools) {
    names.push_back(t.name);
    EXPECT_FALSE(t.description.empty()) << t.name;
    EXPECT_EQ(t.input_schema["type"], "object") << t.name;
    EXPECT_EQ(t.input_schema["additionalProperties"], false) << t.name;
    EXPECT_TRUE(t.input_schema["properties"].is_object()) << t.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"memory_remember", "memory_recall", "memory_list",
                                             "memory_graph", "memory_update", "memory_delete",
                                             "kb_search", "feature_submit", "feature_status"}));
}

TEST(McpTools, WithoutTheKnowledgeBaseTheToolsSayWhyAndWhatToDo) {
  ToolContext ctx;
  ctx.kb_status = FailedPrecondition("the index was built by another embedder",
                                     "run `agent-factory kb reindex`");
  Protocol p(MakeTools(ctx), "1");
  json r = Call(p, Request(1, "tools/call",
                           {{"name", "memory_remember"}, {"arguments", {{"content", "x"}}}}));
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(r["result"]["isError"], true);
  const std::string text = r["result"]["content"][0]["text"];
  EXPECT_NE(text.find("another embedder"), std::string::npos) << text;
  EXPECT_NE(text.find("kb reindex"), std::string::npos) << text;

  // The schema still guards it: importance 11 is a protocol error.
  r = Call(p, Request(2, "tools/call",
                      {{"name", "memory_remember"},
                       {"arguments", {{"content", "x"}, {"importance", 11}}}}));
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
  r = Call(p, Request(3, "tools/call",
                      {{"name", "memory_remember"},
                       {"arguments", {{"content", "x"}, {"type", "gossip"}}}}));
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
  r = Call(p, Request(4, "tools/call",
                      {{"name", "memory_recall"},
                       {"arguments", {{"query", "x"}, {"max_results", 101}}}}));
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
}

TEST(McpTools, FeatureToolsWithNoServerSayToStartIt) {
  auto transport = std::make_shared<RefusingTransport>();
  Protocol p(MakeTools(ServerAt(transport)), "1");
  json r = Call(
      p, Request(1, "tools/call", {{"name", "feature_status"}, {"arguments", {{"id", "feat 1"}}}}));
  ASSERT_TRUE(r.contains("result")) << r.dump();
  EXPECT_EQ(r["result"]["isError"], true);
  const std::string text = r["result"]["content"][0]["text"];
  EXPECT_NE(text.find("agent-factory serve"), std::string::npos) << text;
  EXPECT_EQ(transport->last_url, "http://127.0.0.1:1/api/v1/features/feat%201");

  r = Call(
      p, Request(2, "tools/call",
                 {{"name", "feature_submit"},
                  {"arguments", {{"title", "t"}, {"description", "d"}, {"priority", "urgent"}}}}));
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
}

}  // namespace
}  // namespace af::mcp
