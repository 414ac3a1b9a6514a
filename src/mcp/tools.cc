// The MCP tools: each parses its (already schema-checked) arguments, calls the
// knowledge base, the store or the running server, and shapes the answer.
#include <cctype>

#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "af/llm/http_transport.h"
#include "af/mcp/mcp_server.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"

namespace af::mcp {
namespace {

using json = nlohmann::json;

json ResultsJson(const std::vector<SearchResult>& results) {
  json out = json::array();
  for (const auto& r : results) out.push_back(r.ToJson());
  return json{{"results", out}};
}

// --- Schema pieces ---------------------------------------------------------------

json Str(const std::string& description) {
  return {{"type", "string"}, {"description", description}};
}
json NonEmptyStr(const std::string& description) {
  return {{"type", "string"}, {"minLength", 1}, {"description", description}};
}
json Int(int lo, int hi, const std::string& description) {
  return {{"type", "integer"}, {"minimum", lo}, {"maximum", hi}, {"description", description}};
}
json StrList(const std::string& description) {
  return {{"type", "array"}, {"items", {{"type", "string"}}}, {"description", description}};
}
json MemoryType(const std::string& description) {
  return {{"type", "string"}, {"enum", kMemoryTypes}, {"description", description}};
}
json Threshold() {
  return {{"type", "number"},
          {"minimum", 0},
          {"maximum", 1},
          {"description", "Drop results whose vector similarity is below this (0 = off)"}};
}
json Namespace() {
  return Str(
      "\"global\", \"project:NAME\" or \"session:PROJECT:ID\"; a search falls back session -> "
      "project -> global");
}

json Schema(json properties, std::vector<std::string> required = {}) {
  json s = {
      {"type", "object"}, {"properties", std::move(properties)}, {"additionalProperties", false}};
  if (!required.empty()) s["required"] = required;
  return s;
}

std::vector<std::string> SearchNamespaces(const json& args) {
  return NamespaceFallback(args.value("namespace", ""));
}

// --- The running server ---------------------------------------------------------------

Result<json> CallServer(const ToolContext& ctx, const std::string& method, const std::string& path,
                        const std::string& body = {}) {
  ClientRequest req;
  req.method = method;
  req.url = ctx.server_url + path;
  req.timeout = std::chrono::seconds(30);
  req.connect_timeout = std::chrono::seconds(3);
  req.headers.emplace_back("Accept", "application/json");
  if (!ctx.api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + ctx.api_key);
  if (!body.empty()) {
    req.headers.emplace_back("Content-Type", "application/json");
    req.body = body;
  }
  auto resp = ctx.transport->Send(req, {});
  if (!resp.ok()) {
    return Unavailable("cannot reach the Agent Factory server at " + ctx.server_url,
                       "start it with `agent-factory serve` (same data directory), or set "
                       "server.host/server.port to where it runs");
  }
  json reply = json::parse(resp->body, nullptr, false);
  if (resp->status >= 200 && resp->status < 300) {
    if (reply.is_discarded() || !reply.is_object()) {
      return Internal("the server at " + ctx.server_url + " answered " + path + " with no JSON",
                      "is another program listening on that port?");
    }
    return reply;
  }
  if (resp->status == 401 && ctx.api_key.empty() && !ctx.api_key_status.ok()) {
    return Unauthenticated(ctx.api_key_status.message(), ctx.api_key_status.hint());
  }
  std::string message = "the server answered HTTP " + std::to_string(resp->status);
  std::string hint = "is " + ctx.server_url + " an Agent Factory server?";
  if (reply.is_object() && reply.contains("error") && reply["error"].is_object()) {
    const json& e = reply["error"];
    // A challenged request's message lists its issues already (as details.issues).
    message = Field(e, "message", message);
    hint = Field(e, "hint", "");
  }
  const Code code = resp->status == 404   ? Code::kNotFound
                    : resp->status == 401 ? Code::kUnauthenticated
                    : resp->status == 403 ? Code::kPermissionDenied
                    : resp->status < 500  ? Code::kInvalidArgument
                                          : Code::kUnavailable;
  return Status(code, message, hint);
}

}  // namespace

std::vector<Tool> MakeTools(ToolContext context) {
  if (!context.transport) context.transport = MakeCurlTransport();
  auto ctx = std::make_shared<const ToolContext>(std::move(context));
  // Every knowledge tool needs the service; without it, say why.
  auto need_kb = [ctx]() -> Result<KnowledgeBase*> {
    if (ctx->kb) return ctx->kb;
    Status s = ctx->kb_status.ok() ? Unavailable("the knowledge base is not open",
                                                 "check the data directory and the logs")
                                   : ctx->kb_status;
    return Status(s.code(), "the knowledge base is unavailable: " + s.message(), s.hint());
  };

  std::vector<Tool> tools;

  tools.push_back(
      {"memory_remember",
       "Store a memory (something learned about a codebase: a decision, a pattern, a fix) so "
       "it can be recalled later. Returns the stored record with its id.",
       Schema({{"content", NonEmptyStr("What to remember")},
               {"type", MemoryType("Kind of memory (default insight)")},
               {"importance", Int(1, 10, "1 (trivial) to 10 (critical); default 5")},
               {"tags", StrList("Tags for filtering")},
               {"namespace", Namespace()},
               {"summary", Str("One-line summary")}},
              {"content"}),
       [need_kb](const json& a) -> Result<json> {
         AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, need_kb());
         Memory m;
         m.content = a["content"];
         if (a.contains("type")) m.type = a["type"];
         if (a.contains("importance")) m.importance = a["importance"].get<int>();
         if (a.contains("tags")) m.tags = a["tags"].get<std::vector<std::string>>();
         if (a.contains("namespace")) m.ns = a["namespace"];
         if (a.contains("summary")) m.summary = a["summary"];
         m.source = {{"via", "mcp"}};
         AF_ASSIGN_OR_RETURN(Memory stored, kb->Remember(std::move(m)));
         return MemoryJson(stored);
       }});

  tools.push_back(
      {"memory_recall",
       "Find memories relevant to a query (full-text and vector search fused, weighted by "
       "importance and recency). Returns {results:[{id, source, chunk, score, content, ...}]}.",
       Schema({{"query", NonEmptyStr("What to look for")},
               {"max_results", Int(1, 100, "At most this many results (default 5)")},
               {"namespace", Namespace()},
               {"types",
                {{"type", "array"},
                 {"items", MemoryType("")},
                 {"description", "Only memories of these types"}}},
               {"tags", StrList("Only memories carrying every one of these tags")},
               {"similarity_threshold", Threshold()}},
              {"query"}),
       [need_kb](const json& a) -> Result<json> {
         AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, need_kb());
         SearchQuery q;
         q.text = a["query"];
         q.max_results = a.value("max_results", 5);
         q.namespaces = SearchNamespaces(a);
         if (a.contains("types")) q.types = a["types"].get<std::vector<std::string>>();
         if (a.contains("tags")) q.tags = a["tags"].get<std::vector<std::string>>();
         q.similarity_threshold = a.value("similarity_threshold", 0.0);
         AF_ASSIGN_OR_RETURN(auto results, kb->Recall(q));
         return ResultsJson(results);
       }});

  tools.push_back(
      {"memory_list",
       "List memories by namespace, type and tags, most important first. Returns {memories:[...]}.",
       Schema({{"namespace", Str("Only this namespace")},
               {"type", MemoryType("Only this type")},
               {"tags", StrList("Only memories carrying every one of these tags")},
               {"limit", Int(1, 100, "At most this many (default 20)")},
               {"include_archived",
                {{"type", "boolean"}, {"description", "Archived and superseded ones too"}}}}),
       [ctx](const json& a) -> Result<json> {
         MemoryFilter f;
         if (a.contains("namespace")) f.namespaces = {a["namespace"].get<std::string>()};
         if (a.contains("type")) f.types = {a["type"].get<std::string>()};
         if (a.contains("tags")) f.tags = a["tags"].get<std::vector<std::string>>();
         f.limit = a.value("limit", 20);
         f.include_archived = a.value("include_archived", false);
         AF_ASSIGN_OR_RETURN(auto found, ctx->store->ListMemories(f));
         json out = json::array();
         for (const auto& m : found) out.push_back(MemoryJson(m));
         return json{{"memories", out}};
       }});

  tools.push_back(
      {"memory_graph",
       "A memory and the memories linked to it within `depth` links, with the typed, weighted "
       "links. Returns {nodes, edges}.",
       Schema(
           {{"id", NonEmptyStr("Memory id")}, {"depth", Int(1, 5, "Links to follow (default 1)")}},
           {"id"}),
       [need_kb](const json& a) -> Result<json> {
         AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, need_kb());
         AF_ASSIGN_OR_RETURN(MemoryGraph g, kb->Graph(a["id"], a.value("depth", 1)));
         return g.ToJson();
       }});

  tools.push_back(
      {"memory_update",
       "Change a memory: content, summary, importance, tags, type, or archive it. Fields not "
       "given stay as they are. Returns the stored record.",
       Schema({{"id", NonEmptyStr("Memory id")},
               {"content", NonEmptyStr("New content")},
               {"summary", Str("New summary")},
               {"importance", Int(1, 10, "1 to 10")},
               {"tags", StrList("New tags (replace the old ones)")},
               {"type", MemoryType("New type")},
               {"archived", {{"type", "boolean"}, {"description", "Archive or restore it"}}}},
              {"id"}),
       [ctx, need_kb](const json& a) -> Result<json> {
         AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, need_kb());
         AF_ASSIGN_OR_RETURN(Memory m, ctx->store->GetMemory(a["id"]));
         if (a.contains("content")) m.content = a["content"];
         if (a.contains("summary")) m.summary = a["summary"];
         if (a.contains("importance")) m.importance = a["importance"].get<int>();
         if (a.contains("tags")) m.tags = a["tags"].get<std::vector<std::string>>();
         if (a.contains("type")) m.type = a["type"];
         if (a.contains("archived")) m.archived = a["archived"];
         AF_ASSIGN_OR_RETURN(Memory stored, kb->Update(m));
         return MemoryJson(stored);
       }});

  tools.push_back({"memory_delete", "Delete a memory and its links. Returns {deleted: id}.",
                   Schema({{"id", NonEmptyStr("Memory id")}}, {"id"}),
                   [need_kb](const json& a) -> Result<json> {
                     AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, need_kb());
                     AF_RETURN_IF_ERROR(kb->Forget(a["id"]));
                     return json{{"deleted", a["id"]}};
                   }});

  tools.push_back(
      {"kb_search",
       "Search the knowledge base (documents ingested with `agent-factory kb populate`). Returns "
       "{results:[{id, source, chunk, score, content, ...}]}, best first.",
       Schema({{"query", NonEmptyStr("What to look for")},
               {"max_results", Int(1, 100, "At most this many results (default 5)")},
               {"similarity_threshold", Threshold()},
               {"namespace", Namespace()}},
              {"query"}),
       [need_kb](const json& a) -> Result<json> {
         AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, need_kb());
         SearchQuery q;
         q.text = a["query"];
         q.max_results = a.value("max_results", 5);
         q.similarity_threshold = a.value("similarity_threshold", 0.0);
         q.namespaces = SearchNamespaces(a);
         AF_ASSIGN_OR_RETURN(auto results, kb->Search(q));
         return ResultsJson(results);
       }});

  tools.push_back(
      {"feature_submit",
       "Submit a feature request to the running Agent Factory server (started with "
       "`agent-factory serve`). Returns {id, status, created_at, events_url}.",
       Schema({{"title", NonEmptyStr("Short title")},
               {"description", NonEmptyStr("What to build and why")},
               {"requirements", StrList("Requirements, one per item")},
               {"acceptance_criteria", StrList("How to tell it is done")},
               {"validation_gates", StrList("Shell commands that must pass, e.g. pytest -q")},
               {"tech_stack", Str("e.g. \"python3 + pytest\"")},
               {"context", Str("Free text: file references, URLs, constraints")},
               {"project", Str("Project (workspace) name; default \"default\"")},
               {"priority",
                {{"type", "string"},
                 {"enum", {"low", "medium", "high", "critical"}},
                 {"description", "Default medium"}}},
               {"challenge_vague_requirements",
                {{"type", "boolean"},
                 {"description",
                  "false lets a terse request through the work plan check (an empty one never "
                  "passes); default: the server's validation.challenge_vague_requirements"}}}},
              {"title", "description"}),
       [ctx](const json& a) -> Result<json> {
         return CallServer(*ctx, "POST", "/api/v1/features", a.dump());
       }});

  tools.push_back(
      {"feature_status",
       "A feature's status with its tasks, branch and usage, from the running server.",
       Schema({{"id", NonEmptyStr("Feature id")}}, {"id"}), [ctx](const json& a) -> Result<json> {
         return CallServer(*ctx, "GET",
                           "/api/v1/features/" + PercentEncode(a["id"].get<std::string>()));
       }});
  return tools;
}

}  // namespace af::mcp
