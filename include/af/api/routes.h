#pragma once
// The JSON REST routes under /api/v1 (docs/API.md) (SSE and /metrics live in
// their own module), as thin handlers over plain functions that take an
// ApiBackend and a request and return the response body or a Status. The
// handlers add authentication, permissions, the per-key rate limit, CORS and
// the one error mapping of api/errors.h.
//
// Error mapping beyond errors.h: a Pipeline "Work plan challenged:" refusal
// becomes 422 WORK_PLAN_CHALLENGED with details {"issues":[...]}; a missing
// pipeline (no usable LLM) makes POST /features answer 503 UNAVAILABLE naming
// the LLM problem.
//
// Thread safety: the functions are as thread-safe as the backend's store and
// callbacks (all thread-safe in production).

#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "af/agents/prp.h"
#include "af/api/auth.h"
#include "af/api/errors.h"
#include "af/api/http_types.h"
#include "af/core/status.h"
#include "af/store/types.h"

namespace af {

class ApiGate;
class HttpServer;
class KnowledgeBase;
class Store;

// What the handlers call. `store` is borrowed and must outlive the routes.
struct ApiBackend {
  Store* store = nullptr;
  // The knowledge base and memory service (borrowed). Null when it could not
  // be opened: the /knowledge and /memories routes then answer 503
  // UNAVAILABLE with `kb_status`'s message and hint.
  KnowledgeBase* kb = nullptr;
  Status kb_status = Unavailable("the knowledge base is not open");
  // Pipeline::Submit / Cancel / Retry; empty when no pipeline runs, then
  // `pipeline_status` says why (e.g. the LLM provider's error).
  std::function<Result<Feature>(const FeatureRequest&)> submit;
  std::function<Status(const std::string& feature_id)> cancel;
  std::function<Result<Feature>(const std::string& feature_id)> retry;
  Status pipeline_status = Unavailable("the agents are not running");
  // Clock seam, unix ms; empty = system clock.
  std::function<int64_t()> now_ms;
  // An agent whose heartbeat is older than this shows "offline" (three
  // missed 30 s beats).
  std::chrono::milliseconds offline_after{90000};  // default 90 s
  // Where delivery writes <feature-id>/changes.patch (<data_dir>/artifacts);
  // empty = no diffs are served.
  std::filesystem::path artifacts_dir;
  // The server's data directory: artifact paths are shown relative to it
  // (clients never see the server's file system layout), and its admin.key is
  // kept in step when the key in it is revoked. Empty = paths shown by file
  // name only, no admin.key handling.
  std::filesystem::path data_dir;
};

// Bounds of a search text (?query= of /knowledge/search and /memories): each
// word becomes a condition of the store's query, and a database refuses a
// query with too many. Longer texts are refused with 400 naming the limit.
inline constexpr size_t kMaxSearchBytes = 1000;
inline constexpr size_t kMaxSearchWords = 32;

// --- Plain functions (unit-tested directly) --------------------------------

// The PRP of a POST /features body: application/json (a PRP's fields) or
// text/markdown (a Markdown PRP). InvalidArgument naming the field, the JSON
// error position, or the unsupported Content-Type.
Result<FeatureRequest> ParseFeatureBody(const HttpRequest& request);
// Parses a JSON object body; InvalidArgument with the parser's position.
Result<nlohmann::json> ParseJsonObjectBody(const std::string& body);
// The same for a request, whose Content-Type must be application/json (or
// absent): a form or text body is refused by name, not read as JSON.
Result<nlohmann::json> ParseJsonObjectBody(const HttpRequest& request);

// The API's mapping of a handler failure (422 for challenged work plans).
ApiError ToApiError(const Status& status);

// Wire shapes.
nlohmann::json FeatureJson(const Feature& f);  // id, project, title, status, ..., events_url
nlohmann::json TaskJson(const Task& t);
nlohmann::json AgentJson(const AgentRecord& a, int64_t now_ms,
                         std::chrono::milliseconds offline_after);
nlohmann::json ApiKeyJson(const ApiKey& k);  // never the hash

// POST /features -> {id, status, created_at, events_url}.
Result<nlohmann::json> SubmitFeature(const ApiBackend& b, const HttpRequest& r);
// GET /features?status=&limit=&offset= -> {features, pagination}.
Result<nlohmann::json> ListFeatures(const ApiBackend& b, const HttpRequest& r);
// GET /features/{id}: the feature plus tasks, artifacts (files relative to the
// data directory), usage ({calls, input_tokens, output_tokens, cost_usd,
// by_role, by_model}), and `ended`:
// null, or for a failed or cancelled feature {stage (the status it was in),
// message, hint} from its last transition.
Result<nlohmann::json> GetFeature(const ApiBackend& b, const HttpRequest& r);
// DELETE /features/{id} -> the feature, now cancelled.
Result<nlohmann::json> CancelFeature(const ApiBackend& b, const HttpRequest& r);
// GET /features/{id}/diff -> {feature_id, available, diff, bytes, truncated}:
// the delivered changes.patch (at most kMaxDiffBytes of it). Before delivery
// `available` is false and `diff` empty; 404 for an unknown feature.
inline constexpr size_t kMaxDiffBytes = 2 << 20;
Result<nlohmann::json> GetFeatureDiff(const ApiBackend& b, const HttpRequest& r);
Result<nlohmann::json> GetTask(const ApiBackend& b, const HttpRequest& r);
// GET /usage?days=N (1..366, default 7; UTC days, today included) -> {since,
// total, by_role, by_model, days: [{day, by_role, calls, input_tokens,
// output_tokens, cost_usd}]}: LLM calls summed (failed ones too).
Result<nlohmann::json> GetUsage(const ApiBackend& b, const HttpRequest& r);
Result<nlohmann::json> ListAgents(const ApiBackend& b, const HttpRequest& r);  // {agents}
Result<nlohmann::json> GetAgent(const ApiBackend& b, const HttpRequest& r);
// GET /knowledge/search?query=&max_results=&similarity_threshold=&namespace=
// -> {"results":[{id, source, chunk, score, content, ...}]}, best first
// (chunks and memories; a namespace falls back session -> project -> global,
// none given = every namespace).
Result<nlohmann::json> SearchKnowledge(const ApiBackend& b, const HttpRequest& r);
// POST /knowledge {source, content, namespace?} -> the ingestion report
// {files, added, changed, unchanged, removed, chunks_added, ...}; the same
// source again replaces its chunks (or changes nothing when equal).
Result<nlohmann::json> AddKnowledge(const ApiBackend& b, const HttpRequest& r);
// GET /memories: with ?query= the hybrid recall (each memory with its score),
// else a listing by ?namespace=&type=&tag=&limit= -> {memories}.
Result<nlohmann::json> ListMemories(const ApiBackend& b, const HttpRequest& r);
// POST /memories -> the stored memory.
Result<nlohmann::json> AddMemory(const ApiBackend& b, const HttpRequest& r);
// GET /memories/{id} -> the memory plus "links" (its typed, weighted edges)
// and "linked" (the memories at their other ends).
Result<nlohmann::json> GetMemory(const ApiBackend& b, const HttpRequest& r);
// POST /auth/api-keys {name, permissions[]} -> the key record plus "key" (once).
Result<nlohmann::json> CreateApiKey(Auth& auth, const HttpRequest& r);
Result<nlohmann::json> ListApiKeys(const ApiBackend& b, const HttpRequest& r);  // {api_keys}
Result<nlohmann::json> RevokeApiKey(const ApiBackend& b, const HttpRequest& r);

// --- Registration ----------------------------------------------------------

// One REST route, the one table both the registration and the OpenAPI
// document read: a new route is one row.
struct ApiRouteSpec {
  std::string method;      // "GET"
  std::string pattern;     // router pattern, "/api/v1/features/:id"
  std::string permission;  // required permission; empty = public
  std::string summary;
  // What answers it (after the gate admitted the request); a POST answers 201.
  Result<nlohmann::json> (*handler)(const ApiBackend&, Auth&, const HttpRequest&) = nullptr;
};
// Every route AddApiRoutes registers (without the OPTIONS preflights, which
// it adds for each distinct pattern), in registration order.
const std::vector<ApiRouteSpec>& ApiRouteSpecs();

// Registers ApiRouteSpecs() plus OPTIONS preflight for each of their
// patterns, and GET /openapi.json. Every route is admitted by `gate` (key,
// permission, rate limit, CORS; see ApiGate), the same gate the event
// streams use. `backend` is copied; `auth` and `gate` are borrowed and must
// outlive the server.
void AddApiRoutes(HttpServer& server, ApiBackend backend, Auth& auth, ApiGate& gate);

}  // namespace af
