#include "af/api/openapi.h"

#include <algorithm>
#include <cctype>

#include "af/api/errors.h"
#include "af/api/routes.h"
#include "af/api/web_assets.h"

namespace af {
namespace {

using json = nlohmann::json;

// Every code the server can send, from the one list (errors.h).
json AllErrorNames() {
  json names = json::array();
  for (int c = 0; c <= static_cast<int>(ApiErrorCode::kTimeout); ++c)
    names.push_back(std::string(ApiErrorName(static_cast<ApiErrorCode>(c))));
  return names;
}

std::string LowerMethod(std::string m) {
  for (char& c : m) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return m;
}

json ErrorResponses(bool authenticated) {
  json r = {{"400", {{"$ref", "#/components/responses/Error"}}},
            {"404", {{"$ref", "#/components/responses/Error"}}},
            {"500", {{"$ref", "#/components/responses/Error"}}}};
  if (authenticated) {
    r["401"] = {{"$ref", "#/components/responses/Error"}};
    r["403"] = {{"$ref", "#/components/responses/Error"}};
    r["429"] = {{"$ref", "#/components/responses/Error"}};
  }
  return r;
}

json PathParameters(const std::string& path) {
  json params = json::array();
  size_t pos = 0;
  while ((pos = path.find('{', pos)) != std::string::npos) {
    size_t end = path.find('}', pos);
    params.push_back({{"name", path.substr(pos + 1, end - pos - 1)},
                      {"in", "path"},
                      {"required", true},
                      {"schema", {{"type", "string"}}}});
    pos = end;
  }
  return params;
}

json QueryParameters(const std::string& method, const std::string& path) {
  auto q = [](const char* name, const char* type, const char* description) {
    return json{{"name", name},
                {"in", "query"},
                {"required", false},
                {"description", description},
                {"schema", {{"type", type}}}};
  };
  json params = json::array();
  if (method != "GET") return params;
  if (path == "/api/v1/features") {
    params.push_back(q("status", "string", "queued|planning|...|completed|failed|cancelled"));
    params.push_back(q("project", "string", "only this project"));
    params.push_back(q("limit", "integer", "1-1000, default 50"));
    params.push_back(q("offset", "integer", ">= 0, default 0"));
  } else if (path == "/api/v1/knowledge/search") {
    params.push_back(
        q("query", "string", "the words to search for (required; at most 1000 bytes, 32 words)"));
    params.push_back(q("max_results", "integer", "1-100, default 5"));
    params.push_back(q("similarity_threshold", "number", "0-1, default 0 (off)"));
    params.push_back(q("namespace", "string", "global, project:NAME or session:PROJECT:ID"));
  } else if (path == "/api/v1/memories") {
    params.push_back(q("query", "string",
                       "search (hybrid recall, each memory with its score; at most 1000 bytes, "
                       "32 words); without it, a listing"));
    params.push_back(
        q("namespace", "string",
          "global, project:NAME or session:PROJECT:ID (falls back to the wider ones)"));
    params.push_back(q("type", "string", "only this memory type"));
    params.push_back(q("tag", "string", "only memories with this tag"));
    params.push_back(q("limit", "integer", "1-1000, default 50 (with query: 1-100, default 20)"));
    params.push_back(q("offset", "integer", ">= 0, default 0 (listing only)"));
  } else if (path.find("/events") != std::string::npos) {
    params.push_back(q("access_token", "string",
                       "the API key, for EventSource (no headers); accepted on the event "
                       "streams only"));
  }
  return params;
}

void AddOp(json& paths, const std::string& method, const std::string& path,
           const std::string& summary, const std::string& permission, const json& ok) {
  json op = {{"summary", summary}, {"responses", ErrorResponses(!permission.empty())}};
  op["responses"].update(ok);
  json params = PathParameters(path);
  for (auto& p : QueryParameters(method, path)) params.push_back(p);
  if (!params.empty()) op["parameters"] = params;
  if (!permission.empty()) {
    op["security"] = json::array({{{"bearerAuth", json::array()}}});
    op["x-permission"] = permission;
  } else {
    op["security"] = json::array();
  }
  if (method == "POST" && path == "/api/v1/features") {
    op["requestBody"] = {
        {"required", true},
        {"content",
         {{"application/json", {{"schema", {{"$ref", "#/components/schemas/FeatureRequest"}}}}},
          {"text/markdown", {{"schema", {{"type", "string"}}}}}}}};
    op["responses"]["422"] = {{"$ref", "#/components/responses/Error"}};
    op["responses"]["503"] = {{"$ref", "#/components/responses/Error"}};
  } else if (method == "POST") {
    op["requestBody"] = {{"required", true},
                         {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
  }
  paths[path][LowerMethod(method)] = op;
}

}  // namespace

std::string OpenApiPath(const std::string& pattern) {
  std::string out;
  size_t i = 0;
  while (i < pattern.size()) {
    if (pattern[i] == ':' && (i == 0 || pattern[i - 1] == '/')) {
      size_t end = pattern.find('/', i);
      if (end == std::string::npos) end = pattern.size();
      out += "{" + pattern.substr(i + 1, end - i - 1) + "}";
      i = end;
    } else {
      out.push_back(pattern[i++]);
    }
  }
  return out;
}

json OpenApiDocument() {
  json paths = json::object();
  const json ok_json = {{"200", {{"description", "OK (JSON)"}}}};
  const json created = {{"201", {{"description", "Created (JSON)"}}}};
  const json sse = {{"200",
                     {{"description",
                       "text/event-stream; id = event seq, data = event JSON; "
                       "Last-Event-ID resumes"}}}};

  // REST routes and their preflights, from the same table as the registration.
  std::vector<std::string> patterns;
  for (const ApiRouteSpec& s : ApiRouteSpecs()) {
    AddOp(paths, s.method, OpenApiPath(s.pattern), s.summary, s.permission,
          s.method == "POST" ? created : ok_json);
    if (std::find(patterns.begin(), patterns.end(), s.pattern) == patterns.end()) {
      patterns.push_back(s.pattern);
    }
  }
  // The event streams have preflights too: they pass the same gate.
  for (const char* p : {"/api/v1/events", "/api/v1/features/:id/events", "/events"}) {
    patterns.push_back(p);
  }
  for (const auto& p : patterns) {
    paths[OpenApiPath(p)]["options"] = {
        {"summary", "CORS preflight (Access-Control-Allow-* for origins in api.cors_origins)"},
        {"security", json::array()},
        {"responses", {{"204", {{"description", "No Content"}}}}}};
  }
  // Served by other modules.
  AddOp(
      paths, "GET", "/health", "Health report (503 when unhealthy)", "",
      {{"200", {{"description", "healthy or degraded"}}}, {"503", {{"description", "unhealthy"}}}});
  AddOp(paths, "GET", "/health/live", "Liveness", "", ok_json);
  AddOp(paths, "GET", "/health/ready", "Readiness (503 when unhealthy)", "", ok_json);
  AddOp(paths, "GET", "/metrics", "Prometheus metrics (text format)", "",
        {{"200", {{"description", "text/plain; version=0.0.4"}}}});
  AddOp(paths, "GET", "/api/v1/events", "All events (SSE)", "features:read", sse);
  AddOp(paths, "GET", "/api/v1/features/{id}/events", "A feature's events (SSE)", "features:read",
        sse);
  AddOp(paths, "GET", "/events", "Alias of GET /api/v1/events (SSE)", "features:read", sse);
  AddOp(paths, "GET", "/", "The dashboard", "", {{"200", {{"description", "text/html"}}}});
  for (const WebAsset& a : WebAssets()) {
    AddOp(paths, "GET", std::string(a.path), "Dashboard file", "",
          {{"200", {{"description", std::string(a.content_type)}}}});
  }

  json error_schema = {{"type", "object"},
                       {"properties",
                        {{"error",
                          {{"type", "object"},
                           {"properties",
                            {{"code", {{"type", "string"}, {"enum", AllErrorNames()}}},
                             {"message", {{"type", "string"}}},
                             {"details", {{"type", "object"}}},
                             {"request_id", {{"type", "string"}}},
                             {"hint", {{"type", "string"}, {"nullable", true}}}}}}}}}};
  auto str = json{{"type", "string"}};
  auto strs = json{{"type", "array"}, {"items", str}};
  json feature_request = {
      {"type", "object"},
      {"additionalProperties", false},
      {"properties",
       {{"title", str},
        {"description", str},
        {"requirements", strs},
        {"acceptance_criteria", strs},
        {"success_criteria", strs},
        {"tech_stack", str},
        {"validation_gates", strs},
        {"context", str},
        {"priority", {{"type", "string"}, {"enum", {"low", "medium", "high", "critical"}}}},
        {"project", str},
        {"challenge_vague_requirements", {{"type", "boolean"}}}}}};

  json error_response;
  error_response["description"] = "An error";
  error_response["content"]["application/json"]["schema"]["$ref"] = "#/components/schemas/Error";
  json doc;
  doc["openapi"] = "3.0.3";
  doc["info"]["title"] = "Agent Factory API";
  doc["info"]["version"] = AF_VERSION;
  doc["info"]["description"] =
      "REST API of Agent Factory. Authenticate with 'Authorization: Bearer <key>'. Errors are "
      "{\"error\":{code,message,details,request_id,hint}}.";
  doc["paths"] = paths;
  doc["components"]["securitySchemes"]["bearerAuth"] = {{"type", "http"}, {"scheme", "bearer"}};
  doc["components"]["schemas"]["Error"] = error_schema;
  doc["components"]["schemas"]["FeatureRequest"] = feature_request;
  doc["components"]["responses"]["Error"] = error_response;
  return doc;
}

std::vector<std::pair<std::string, std::string>> OpenApiOperations(const json& doc) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [path, ops] : doc.at("paths").items()) {
    for (auto& [method, op] : ops.items()) {
      std::string m = method;
      for (char& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      out.emplace_back(m, path);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace af
