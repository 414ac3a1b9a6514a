#include "af/api/routes.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "af/agents/liveness.h"
#include "af/api/http_server.h"
#include "af/api/middleware.h"
#include "af/api/openapi.h"
#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "af/core/utc_time.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"

namespace af {
namespace {

using json = nlohmann::json;

int64_t Now(const ApiBackend& b) {
  if (b.now_ms) return b.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json TimeOrNull(int64_t ms) { return ms > 0 ? json(FormatUtcMillis(ms)) : json(nullptr); }
json StringOrNull(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// An integer query parameter in [lo, hi]; `fallback` when absent.
Result<int> IntParam(const HttpRequest& r, const std::string& name, int fallback, int lo, int hi) {
  auto it = r.query_params.find(name);
  if (it == r.query_params.end() || it->second.empty()) return fallback;
  const std::string& v = it->second;
  int out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || end != v.data() + v.size() || out < lo || out > hi) {
    return InvalidArgument(name + " must be an integer from " + std::to_string(lo) + " to " +
                               std::to_string(hi) + " (got '" + v + "')",
                           "fix the '" + name + "' query parameter");
  }
  return out;
}

Result<double> DoubleParam(const HttpRequest& r, const std::string& name, double fallback,
                           double lo, double hi) {
  auto it = r.query_params.find(name);
  if (it == r.query_params.end() || it->second.empty()) return fallback;
  const std::string& v = it->second;
  char* end = nullptr;
  double out = std::strtod(v.c_str(), &end);
  if (end != v.c_str() + v.size() || !std::isfinite(out) || out < lo || out > hi) {
    return InvalidArgument(name + " must be a number from " + std::to_string(lo).substr(0, 3) +
                               " to " + std::to_string(hi).substr(0, 3) + " (got '" + v + "')",
                           "fix the '" + name + "' query parameter");
  }
  return out;
}

// Refuses fields outside `allowed`, naming every unknown one.
Status CheckFields(const json& j, std::initializer_list<std::string_view> allowed) {
  std::string unknown;
  for (auto& [k, v] : j.items()) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      unknown += (unknown.empty() ? "'" : ", '") + k + "'";
    }
  }
  if (unknown.empty()) return Status::Ok();
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  return InvalidArgument("unknown field " + unknown, "the accepted fields are: " + list);
}

Result<std::optional<std::string>> StringField(const json& j, const std::string& name,
                                               bool required) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) return InvalidArgument(name + " is required", "add a \"" + name + "\" string");
    return std::optional<std::string>();
  }
  if (!it->is_string()) {
    return InvalidArgument(name + " must be a string (got " + std::string(it->type_name()) + ")",
                           "send \"" + name + "\" as a JSON string");
  }
  std::string v = it->get<std::string>();
  if (required && Trim(v).empty()) {
    return InvalidArgument(name + " must not be empty", "add a non-empty \"" + name + "\"");
  }
  return std::optional<std::string>(std::move(v));
}

Result<std::vector<std::string>> StringArrayField(const json& j, const std::string& name,
                                                  bool required) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) return InvalidArgument(name + " is required", "add a \"" + name + "\" array");
    return std::vector<std::string>();
  }
  if (!it->is_array()) {
    return InvalidArgument(
        name + " must be an array of strings (got " + std::string(it->type_name()) + ")",
        "send \"" + name + "\" as a JSON array of strings");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& item = (*it)[i];
    if (!item.is_string()) {
      return InvalidArgument(name + " must be an array of strings (item " + std::to_string(i + 1) +
                                 " is " + std::string(item.type_name()) + ")",
                             "send \"" + name + "\" as a JSON array of strings");
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// An integer body field in [lo, hi]; nullopt when absent or null. The range is
// checked on the JSON number itself, before any narrowing: 4294967301 must
// be refused, not stored as 5.
Result<std::optional<int64_t>> IntegerField(const json& j, const std::string& name, int64_t lo,
                                            int64_t hi) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::optional<int64_t>();
  const std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!it->is_number_integer()) {
    return InvalidArgument(
        name + " must be " + range + " (got " + std::string(it->type_name()) + ")",
        "send \"" + name + "\" as a JSON integer");
  }
  const bool in_range = it->is_number_unsigned()
                            ? it->get<uint64_t>() <= static_cast<uint64_t>(hi) &&
                                  static_cast<int64_t>(it->get<uint64_t>()) >= lo
                            : it->get<int64_t>() >= lo && it->get<int64_t>() <= hi;
  if (!in_range) {
    return InvalidArgument(name + " must be " + range + " (got " + it->dump() + ")",
                           "send \"" + name + "\" as " + range);
  }
  return std::optional<int64_t>(it->get<int64_t>());
}

const std::string& PathParam(const HttpRequest& r, const std::string& name) {
  static const std::string kEmpty;
  auto it = r.path_params.find(name);
  return it == r.path_params.end() ? kEmpty : it->second;
}

// Artifact paths as a client may see them: relative to the data directory
// ("artifacts/<id>/changes.patch"), or the bare file name for anything
// outside it. The server's absolute layout is not the client's business.
json RelativeFiles(const ApiBackend& b, const json& files) {
  json out = json::array();
  if (!files.is_array()) return out;
  std::error_code ec;
  const auto root =
      b.data_dir.empty() ? std::filesystem::path() : std::filesystem::absolute(b.data_dir, ec);
  for (const auto& f : files) {
    if (!f.is_string()) continue;
    std::filesystem::path p = std::filesystem::absolute(f.get<std::string>(), ec);
    std::filesystem::path rel;
    if (!root.empty()) rel = p.lexically_normal().lexically_relative(root.lexically_normal());
    if (rel.empty() || *rel.begin() == "..") rel = p.filename();
    out.push_back(rel.generic_string());
  }
  return out;
}

// The ?query= search text, trimmed and bounded (kMaxSearchBytes, kMaxSearchWords).
Result<std::string> SearchText(const HttpRequest& r) {
  std::string query(Trim(r.Query("query")));
  if (query.size() > kMaxSearchBytes) {
    return InvalidArgument("query is " + std::to_string(query.size()) +
                               " bytes long; the limit is " + std::to_string(kMaxSearchBytes),
                           "search with fewer, more specific words");
  }
  size_t words = 0;
  bool in_word = false;
  for (char c : query) {
    const bool space = std::isspace(static_cast<unsigned char>(c));
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  if (words > kMaxSearchWords) {
    return InvalidArgument("query has " + std::to_string(words) + " words; the limit is " +
                               std::to_string(kMaxSearchWords),
                           "search with at most " + std::to_string(kMaxSearchWords) + " words");
  }
  return query;
}

// The namespaces a search covers: ?namespace= with its fallback.
std::vector<std::string> Namespaces(const HttpRequest& r) {
  return NamespaceFallback(std::string(Trim(r.Query("namespace"))));
}

}  // namespace

// --- Shapes ------------------------------------------------------------------

json FeatureJson(const Feature& f) {
  return {{"id", f.id},
          {"project", f.project},
          {"title", f.title},
          {"status", f.status},
          {"priority", f.priority},
          {"reason", StringOrNull(f.reason)},
          {"created_at", TimeOrNull(f.created_ms)},
          {"updated_at", TimeOrNull(f.updated_ms)},
          {"events_url", "/api/v1/features/" + f.id + "/events"}};
}

json TaskJson(const Task& t) {
  return {{"id", t.id},
          {"feature_id", t.feature_id},
          {"title", t.title},
          {"description", t.description},
          {"role", t.role},
          {"status", t.status},
          {"dependencies", t.dependencies},
          {"files", t.files},
          {"attempts", t.attempts},
          {"assigned_agent", StringOrNull(t.assigned_agent)},
          {"result", t.result},
          {"created_at", TimeOrNull(t.created_ms)},
          {"updated_at", TimeOrNull(t.updated_ms)}};
}

json AgentJson(const AgentRecord& a, int64_t now_ms, std::chrono::milliseconds offline_after) {
  return {{"id", a.id},
          {"role", a.role},
          {"state", DisplayedAgentState(a, now_ms, offline_after)},
          {"last_heartbeat", TimeOrNull(a.last_heartbeat_ms)},
          {"heartbeat_age_s",
           a.last_heartbeat_ms > 0 ? json((now_ms - a.last_heartbeat_ms) / 1000) : json(nullptr)},
          {"current_task", StringOrNull(a.current_task)},
          {"counters", a.counters.is_null() ? json::object() : a.counters},
          {"host", a.host},
          {"pid", a.pid}};
}

json TotalsJson(const UsageTotals& u) {
  return {{"calls", u.calls},
          {"input_tokens", u.input_tokens},
          {"output_tokens", u.output_tokens},
          {"cost_usd", u.cost_usd}};
}

void AddTo(UsageTotals& sum, const UsageTotals& u) {
  sum.calls += u.calls;
  sum.input_tokens += u.input_tokens;
  sum.output_tokens += u.output_tokens;
  sum.cost_usd += u.cost_usd;
}

// Usage rows summed overall ("total"), per role and per model (and per day
// when `per_day`), each as TotalsJson.
json UsageJson(const std::vector<UsageRow>& rows, bool per_day) {
  UsageTotals total;
  std::map<std::string, UsageTotals> roles, models;
  std::map<std::string, std::pair<UsageTotals, std::map<std::string, UsageTotals>>> days;
  for (const UsageRow& r : rows) {
    AddTo(total, r.totals);
    AddTo(roles[r.role], r.totals);
    AddTo(models[r.provider + "/" + r.model], r.totals);
    AddTo(days[r.day].first, r.totals);
    AddTo(days[r.day].second[r.role], r.totals);
  }
  auto by = [](const std::map<std::string, UsageTotals>& m) {
    json out = json::object();
    for (const auto& [k, u] : m) out[k] = TotalsJson(u);
    return out;
  };
  json out = {{"total", TotalsJson(total)}, {"by_role", by(roles)}, {"by_model", by(models)}};
  if (per_day) {
    json list = json::array();
    for (const auto& [day, d] : days) {
      json entry = TotalsJson(d.first);
      entry["day"] = day;
      entry["by_role"] = by(d.second);
      list.push_back(entry);
    }
    out["days"] = list;
  }
  return out;
}

json ApiKeyJson(const ApiKey& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"prefix", k.prefix},
          {"permissions", k.permissions},
          {"created_at", TimeOrNull(k.created_ms)},
          {"last_used_at", TimeOrNull(k.last_used_ms)},
          {"revoked", k.revoked}};
}

// --- Parsing and errors ------------------------------------------------------

Result<json> ParseJsonObjectBody(const std::string& body) {
  if (Trim(body).empty()) {
    return InvalidArgument("request body is empty", "send a JSON object");
  }
  auto parsed = ParseJson(body, "request body");
  if (!parsed.ok()) return parsed.status();
  json j = std::move(parsed).value();
  if (!j.is_object()) {
    return InvalidArgument(
        "request body must be a JSON object (got " + std::string(j.type_name()) + ")",
        "send a JSON object");
  }
  return j;
}

namespace {

// The media type of a request body, lower case, without parameters.
std::string MediaType(const HttpRequest& r) {
  std::string type = Lower(Trim(r.Header("content-type")));
  return std::string(Trim(type.substr(0, type.find(';'))));
}

}  // namespace

Result<json> ParseJsonObjectBody(const HttpRequest& r) {
  const std::string type = MediaType(r);
  if (!type.empty() && type != "application/json") {
    return InvalidArgument("Content-Type '" + type + "' is not supported here",
                           "send the body as application/json");
  }
  return ParseJsonObjectBody(r.body);
}

Result<FeatureRequest> ParseFeatureBody(const HttpRequest& r) {
  const std::string type = MediaType(r);
  if (type.empty() || type == "application/json") {
    AF_ASSIGN_OR_RETURN(json j, ParseJsonObjectBody(r.body));
    return FeatureRequestFromJson(j);
  }
  if (type == "text/markdown" || type == "text/x-markdown" || type == "text/plain") {
    if (Trim(r.body).empty()) {
      return InvalidArgument("request body is empty", "send a Markdown PRP (see examples/prp/)");
    }
    return ParseMarkdownPrp(r.body, "request body");
  }
  return InvalidArgument("Content-Type '" + type + "' is not supported for a feature request",
                         "send application/json (the fields of a PRP) or text/markdown (a "
                         "Markdown PRP)");
}

ApiError ToApiError(const Status& status) {
  if (auto issues = ChallengedIssues(status)) {
    ApiError e(status, ApiErrorCode::kWorkPlanChallenged);
    e.details = {{"issues", *issues}};
    return e;
  }
  return ApiError(status);
}

// --- Features ------------------------------------------------------------------

Result<json> SubmitFeature(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(FeatureRequest request, ParseFeatureBody(r));
  if (!b.submit) {
    const Status& why = b.pipeline_status;
    return Unavailable(
        "features cannot run now: " + why.message(),
        why.hint().empty() ? "configure an LLM provider and restart the server" : why.hint());
  }
  AF_ASSIGN_OR_RETURN(Feature f, b.submit(request));
  return json{{"id", f.id},
              {"status", f.status},
              {"created_at", TimeOrNull(f.created_ms)},
              {"events_url", "/api/v1/features/" + f.id + "/events"}};
}

Result<json> ListFeatures(const ApiBackend& b, const HttpRequest& r) {
  FeatureFilter filter;
  std::string status = r.Query("status");
  if (!status.empty()) {
    if (!IsFeatureStatus(status)) {
      return InvalidArgument("status '" + status + "' is not a feature status",
                             "use one of queued, planning, implementing, testing, reviewing, "
                             "delivering, completed, failed, cancelled");
    }
    filter.status = status;
  }
  if (std::string project = r.Query("project"); !project.empty()) filter.project = project;
  AF_ASSIGN_OR_RETURN(filter.limit, IntParam(r, "limit", 50, 1, 1000));
  AF_ASSIGN_OR_RETURN(filter.offset, IntParam(r, "offset", 0, 0, 1 << 30));
  AF_ASSIGN_OR_RETURN(FeaturePage page, b.store->ListFeatures(filter));
  json features = json::array();
  for (const auto& f : page.features) features.push_back(FeatureJson(f));
  const bool has_more = filter.offset + static_cast<int64_t>(page.features.size()) < page.total;
  return json{{"features", features},
              {"pagination",
               {{"total", page.total},
                {"limit", filter.limit},
                {"offset", filter.offset},
                {"has_more", has_more}}}};
}

Result<json> GetFeature(const ApiBackend& b, const HttpRequest& r) {
  const std::string& id = PathParam(r, "id");
  AF_ASSIGN_OR_RETURN(Feature f, b.store->GetFeature(id));
  AF_ASSIGN_OR_RETURN(auto tasks, b.store->ListTasks(id));
  AF_ASSIGN_OR_RETURN(auto usage_rows, b.store->UsageBreakdown({id, 0}));
  json out = FeatureJson(f);
  out["request"] = f.request;
  out["tasks"] = json::array();
  for (const auto& t : tasks) out["tasks"].push_back(TaskJson(t));
  // The delivery result travels on the transition to completed (branch,
  // commit, artifact files); gate results and review verdicts are events too.
  json artifacts = {{"branch", nullptr}, {"commit", nullptr}, {"files", json::array()}};
  json gates = json::array(), reviews = json::array();
  json ended = nullptr;  // how a failed or cancelled feature ended
  AF_RETURN_IF_ERROR(ForEachEvent(*b.store, id, [&](const Event& e) {
    const std::string to = e.type == "feature.status" ? e.data.value("to", "") : "";
    if (to == "failed" || to == "cancelled") {
      ended = {{"stage", e.data.value("from", "")},
               {"message", e.data.value("message", "")},
               {"hint", e.data.value("hint", "")}};
    }
    if (e.type == "feature.status" && to == "completed") {
      if (e.data.contains("branch")) artifacts["branch"] = e.data["branch"];
      if (e.data.contains("commit")) artifacts["commit"] = e.data["commit"];
      if (e.data.contains("artifacts")) artifacts["files"] = RelativeFiles(b, e.data["artifacts"]);
      if (e.data.contains("delivery")) artifacts["delivery"] = e.data["delivery"];
    } else if (e.type == "gate.result") {
      gates.push_back(e.ToJson());
    } else if (e.type == "review.verdict") {
      reviews.push_back(e.ToJson());
    }
  }));
  // A feature that ended otherwise keeps its tasks' commits on its branch:
  // name it (and its last task commit), not delivered, so the work paid for
  // can be found.
  artifacts["delivered"] = !artifacts["branch"].is_null();
  if (artifacts["branch"].is_null()) {
    int64_t latest = -1;
    for (const auto& t : tasks) {
      const std::string commit = Field(t.result, "commit", "");
      if (commit.empty() || t.updated_ms < latest) continue;
      latest = t.updated_ms;
      artifacts["branch"] = "af/" + f.id;
      artifacts["commit"] = commit;
    }
  }
  artifacts["gate_results"] = gates;
  artifacts["review_verdicts"] = reviews;
  out["artifacts"] = artifacts;
  out["ended"] = ended;
  // The totals at the top (calls, tokens, cost), then by role and by model.
  json usage = UsageJson(usage_rows, false);
  out["usage"] = usage["total"];
  out["usage"]["by_role"] = usage["by_role"];
  out["usage"]["by_model"] = usage["by_model"];
  return out;
}

// LLM usage and cost of the last `days` UTC days (today included): per day
// (and role within it), per role, per model, and in total.
Result<json> GetUsage(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(int days, IntParam(r, "days", 7, 1, 366));
  const int64_t since_ms = StartOfUtcDayMs(Now(b)) - int64_t{days - 1} * 86'400'000;
  AF_ASSIGN_OR_RETURN(auto rows, b.store->UsageBreakdown({"", since_ms}));
  json out = UsageJson(rows, true);
  out["since"] = FormatUtcMillis(since_ms);
  return out;
}

Result<json> GetFeatureDiff(const ApiBackend& b, const HttpRequest& r) {
  const std::string& id = PathParam(r, "id");
  AF_RETURN_IF_ERROR(b.store->GetFeature(id).status());
  json out = {
      {"feature_id", id}, {"available", false}, {"diff", ""}, {"bytes", 0}, {"truncated", false}};
  // Feature ids come from the store (checked above), so the path stays inside
  // artifacts_dir.
  if (b.artifacts_dir.empty()) return out;
  const auto path = b.artifacts_dir / id / "changes.patch";
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) return out;
  const bool truncated = size > kMaxDiffBytes;
  std::string diff(truncated ? kMaxDiffBytes : static_cast<size_t>(size), '\0');
  in.read(diff.data(), static_cast<std::streamsize>(diff.size()));
  diff.resize(static_cast<size_t>(in.gcount()));
  out["available"] = true;
  out["bytes"] = diff.size();
  out["truncated"] = truncated;
  out["diff"] = std::move(diff);  // JsonResponse replaces invalid UTF-8
  return out;
}

Result<json> CancelFeature(const ApiBackend& b, const HttpRequest& r) {
  const std::string& id = PathParam(r, "id");
  AF_RETURN_IF_ERROR(b.store->GetFeature(id).status());  // 404 before 503
  if (!b.cancel) {
    return Unavailable("features cannot be cancelled now: " + b.pipeline_status.message(),
                       "configure an LLM provider and restart the server");
  }
  AF_RETURN_IF_ERROR(b.cancel(id));
  AF_ASSIGN_OR_RETURN(Feature f, b.store->GetFeature(id));
  return FeatureJson(f);
}

Result<json> RetryFeature(const ApiBackend& b, const HttpRequest& r) {
  const std::string& id = PathParam(r, "id");
  AF_RETURN_IF_ERROR(b.store->GetFeature(id).status());  // 404 before 503
  if (!b.retry) {
    return Unavailable("features cannot be retried now: " + b.pipeline_status.message(),
                       "configure an LLM provider and restart the server");
  }
  AF_ASSIGN_OR_RETURN(Feature f, b.retry(id));
  return FeatureJson(f);
}

Result<json> GetTask(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(Task t, b.store->GetTask(PathParam(r, "id")));
  return TaskJson(t);
}

// --- Agents --------------------------------------------------------------------

Result<json> ListAgents(const ApiBackend& b, const HttpRequest&) {
  AF_ASSIGN_OR_RETURN(auto agents, b.store->ListAgents());
  const int64_t now = Now(b);
  json out = json::array();
  for (const auto& a : agents) out.push_back(AgentJson(a, now, b.offline_after));
  return json{{"agents", out}};
}

Result<json> GetAgent(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(AgentRecord a, b.store->GetAgent(PathParam(r, "id")));
  return AgentJson(a, Now(b), b.offline_after);
}

// --- Knowledge and memories ------------------------------------------------------
// Thin edges over the KnowledgeBase service: parse, call, shape.

namespace {

Result<KnowledgeBase*> NeedKb(const ApiBackend& b) {
  if (b.kb) return b.kb;
  const Status& s = b.kb_status;
  return Unavailable("the knowledge base is unavailable" +
                         (s.message().empty() ? std::string() : ": " + s.message()),
                     s.hint().empty() ? "see the server log" : s.hint());
}

json ResultsJson(const std::vector<SearchResult>& results) {
  json out = json::array();
  for (const auto& r : results) out.push_back(r.ToJson());
  return out;
}

json LinkJson(const MemoryLink& l) {
  return {{"from", l.from_id},
          {"to", l.to_id},
          {"type", l.type},
          {"strength", l.strength},
          {"created_at", TimeOrNull(l.created_ms)},
          {"updated_at", TimeOrNull(l.updated_ms)}};
}

}  // namespace

Result<json> SearchKnowledge(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(std::string query, SearchText(r));
  if (query.empty()) {
    return InvalidArgument("query is required", "add ?query=WORDS to the URL");
  }
  SearchQuery q;
  q.text = query;
  AF_ASSIGN_OR_RETURN(q.max_results, IntParam(r, "max_results", 5, 1, 100));
  AF_ASSIGN_OR_RETURN(q.similarity_threshold,
                      DoubleParam(r, "similarity_threshold", 0.0, 0.0, 1.0));
  q.namespaces = Namespaces(r);
  AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, NeedKb(b));
  AF_ASSIGN_OR_RETURN(auto results, kb->Search(q));
  return json{{"results", ResultsJson(results)}};
}

Result<json> AddKnowledge(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(json j, ParseJsonObjectBody(r));
  AF_RETURN_IF_ERROR(CheckFields(j, {"source", "content", "namespace"}));
  AF_ASSIGN_OR_RETURN(auto source, StringField(j, "source", true));
  AF_ASSIGN_OR_RETURN(auto content, StringField(j, "content", true));
  AF_ASSIGN_OR_RETURN(auto ns, StringField(j, "namespace", false));
  AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, NeedKb(b));
  AF_ASSIGN_OR_RETURN(IngestReport report,
                      kb->IngestText(*source, *content, ns.value_or("global"), {{"via", "api"}}));
  return report.ToJson();
}

Result<json> ListMemories(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(std::string query, SearchText(r));
  std::vector<std::string> types, tags;
  if (std::string type = r.Query("type"); !type.empty()) {
    AF_RETURN_IF_ERROR(CheckMemoryType(type));  // as a POST would say, not an empty list
    types = {type};
  }
  if (std::string tag = r.Query("tag"); !tag.empty()) tags = {tag};
  json out = json::array();
  if (!query.empty()) {
    SearchQuery q;
    q.text = query;
    AF_ASSIGN_OR_RETURN(q.max_results, IntParam(r, "limit", 20, 1, 100));
    AF_ASSIGN_OR_RETURN(q.similarity_threshold,
                        DoubleParam(r, "similarity_threshold", 0.0, 0.0, 1.0));
    q.namespaces = Namespaces(r);
    q.types = types;
    q.tags = tags;
    AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, NeedKb(b));
    AF_ASSIGN_OR_RETURN(auto results, kb->Recall(q));
    for (const auto& hit : results) {
      if (!hit.memory) continue;
      json m = MemoryJson(*hit.memory);
      m["score"] = hit.score;
      out.push_back(std::move(m));
    }
    return json{{"memories", out}};
  }
  MemoryFilter f;
  AF_ASSIGN_OR_RETURN(f.limit, IntParam(r, "limit", 50, 1, 1000));
  AF_ASSIGN_OR_RETURN(f.offset, IntParam(r, "offset", 0, 0, 1000000));
  f.namespaces = Namespaces(r);
  f.types = types;
  f.tags = tags;
  // A listing reads rows only, but says so when the knowledge base is down
  // like every other memory route.
  AF_RETURN_IF_ERROR(NeedKb(b).status());
  AF_ASSIGN_OR_RETURN(auto found, b.store->ListMemories(f));
  for (const auto& m : found) out.push_back(MemoryJson(m));
  return json{{"memories", out}};
}

Result<json> AddMemory(const ApiBackend& b, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(json j, ParseJsonObjectBody(r));
  AF_RETURN_IF_ERROR(CheckFields(
      j, {"content", "namespace", "summary", "type", "importance", "tags", "source", "links"}));
  Memory m;
  AF_ASSIGN_OR_RETURN(auto content, StringField(j, "content", true));
  m.content = *content;
  AF_ASSIGN_OR_RETURN(auto ns, StringField(j, "namespace", false));
  if (ns) m.ns = *ns;
  AF_ASSIGN_OR_RETURN(auto summary, StringField(j, "summary", false));
  if (summary) m.summary = *summary;
  AF_ASSIGN_OR_RETURN(auto type, StringField(j, "type", false));
  if (type) m.type = *type;
  AF_ASSIGN_OR_RETURN(m.tags, StringArrayField(j, "tags", false));
  AF_ASSIGN_OR_RETURN(auto importance, IntegerField(j, "importance", 1, 10));
  if (importance) m.importance = static_cast<int>(*importance);
  if (j.contains("source") && !j["source"].is_null()) {
    if (!j["source"].is_object()) {
      return InvalidArgument("source must be an object {feature, task, file, commit}",
                             "send \"source\" as a JSON object");
    }
    m.source = j["source"];
  }
  // links: [{to, type?, strength?}] from the new memory to existing ones.
  std::vector<MemoryLink> links;
  if (j.contains("links") && !j["links"].is_null()) {
    const auto bad = InvalidArgument(
        "links must be an array of {\"to\": ID, \"type\"?: TEXT, \"strength\"?: (0,1]}",
        "fix the \"links\" field");
    if (!j["links"].is_array()) return bad;
    for (const auto& l : j["links"]) {
      if (!l.is_object() || !l.contains("to") || !l["to"].is_string()) return bad;
      AF_RETURN_IF_ERROR(CheckFields(l, {"to", "type", "strength"}));
      MemoryLink link;
      link.to_id = l["to"];
      link.type = Field(l, "type", "relates_to");
      if (l.contains("strength")) {
        if (!l["strength"].is_number()) return bad;
        link.strength = l["strength"].get<double>();
      }
      // Checked before storing, so a bad link stores nothing.
      if (!b.store->GetMemory(link.to_id).ok()) {
        return InvalidArgument("links: memory " + link.to_id + " not found",
                               "link to the id of an existing memory");
      }
      links.push_back(std::move(link));
    }
  }
  AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, NeedKb(b));
  AF_ASSIGN_OR_RETURN(Memory stored, kb->Remember(std::move(m)));
  for (auto& link : links) {
    link.from_id = stored.id;
    AF_RETURN_IF_ERROR(
        kb->Link(link).WithContext("memory " + stored.id + " was stored, but a link"));
  }
  return MemoryJson(stored);
}

Result<json> GetMemory(const ApiBackend& b, const HttpRequest& r) {
  const std::string& id = PathParam(r, "id");
  AF_ASSIGN_OR_RETURN(KnowledgeBase * kb, NeedKb(b));
  auto graph = kb->Graph(id, 1);
  if (!graph.ok()) {
    if (graph.status().code() != Code::kNotFound) return graph.status();
    return NotFound("memory " + id + " not found",
                    "list memories with GET /api/v1/memories (add ?namespace= for session ones)");
  }
  if (graph->nodes.empty()) return NotFound("memory " + id + " not found", "check the id");
  json out = MemoryJson(graph->nodes.front());
  json links = json::array();
  for (const auto& e : graph->edges) links.push_back(LinkJson(e));
  json linked = json::array();
  for (size_t i = 1; i < graph->nodes.size(); ++i) {
    const Memory& m = graph->nodes[i];
    linked.push_back({{"id", m.id},
                      {"type", m.type},
                      {"importance", m.importance},
                      {"summary", m.summary},
                      {"content", m.content}});
  }
  out["links"] = std::move(links);
  out["linked"] = std::move(linked);
  return out;
}

// --- API keys --------------------------------------------------------------------

Result<json> CreateApiKey(Auth& auth, const HttpRequest& r) {
  AF_ASSIGN_OR_RETURN(json j, ParseJsonObjectBody(r));
  AF_RETURN_IF_ERROR(CheckFields(j, {"name", "permissions"}));
  AF_ASSIGN_OR_RETURN(auto name, StringField(j, "name", true));
  AF_ASSIGN_OR_RETURN(auto permissions, StringArrayField(j, "permissions", true));
  AF_ASSIGN_OR_RETURN(auto created, auth.CreateKey(*name, permissions));
  json out = ApiKeyJson(created.first);
  out["key"] = created.second;
  return out;
}

Result<json> ListApiKeys(const ApiBackend& b, const HttpRequest&) {
  AF_ASSIGN_OR_RETURN(auto keys, b.store->ListApiKeys());
  json out = json::array();
  for (const auto& k : keys) out.push_back(ApiKeyJson(k));
  return json{{"api_keys", out}};
}

Result<json> RevokeApiKey(const ApiBackend& b, const HttpRequest& r) {
  const std::string& id = PathParam(r, "id");
  // "Not the last admin key" and the revocation happen as one step, or two
  // concurrent revocations could each see the other key still active.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  AF_ASSIGN_OR_RETURN(auto keys, b.store->ListApiKeys());
  auto is_admin = [](const ApiKey& k) {
    return !k.revoked &&
           std::find(k.permissions.begin(), k.permissions.end(), "admin") != k.permissions.end();
  };
  const ApiKey* target = nullptr;
  int admins = 0;
  for (const auto& k : keys) {
    if (k.id == id) target = &k;
    if (is_admin(k)) ++admins;
  }
  if (target && is_admin(*target) && admins == 1) {
    return FailedPrecondition(
        "API key '" + target->name + "' (" + target->prefix +
            "...) is the last admin key; revoking it would leave nobody able to manage keys",
        "create another admin key first (POST /api/v1/auth/api-keys with \"permissions\": "
        "[\"admin\"], or 'agent-factory keys create NAME --permissions admin'), then revoke "
        "this one");
  }
  AF_RETURN_IF_ERROR(b.store->RevokeApiKey(id));
  json out = {{"id", id}, {"revoked", true}};
  // admin.key must not keep a key that no longer works: the CLI would send it
  // and get 401 with no clue why.
  if (target && !b.data_dir.empty()) {
    auto file_key = ReadAdminKeyFile(b.data_dir);
    if (file_key.ok() && HashesEqual(HashApiKey(*file_key), target->key_hash)) {
      std::error_code ec;
      std::filesystem::remove(b.data_dir / "admin.key", ec);
      out["admin_key_file"] = ec ? "the key in <data_dir>/admin.key is revoked; delete the file"
                                 : "removed: it held this key";
    }
  }
  return out;
}

// --- Registration ------------------------------------------------------------------

namespace {

// Adapts a handler that needs only the backend to the table's signature.
template <Result<json> (*F)(const ApiBackend&, const HttpRequest&)>
Result<json> WithBackend(const ApiBackend& b, Auth&, const HttpRequest& r) {
  return F(b, r);
}

Result<json> CreateApiKeyRoute(const ApiBackend&, Auth& auth, const HttpRequest& r) {
  return CreateApiKey(auth, r);
}

Result<json> ServeOpenApi(const ApiBackend&, Auth&, const HttpRequest&) {
  static const json kDoc = OpenApiDocument();  // the table does not change
  return kDoc;
}

}  // namespace

const std::vector<ApiRouteSpec>& ApiRouteSpecs() {
  static const std::vector<ApiRouteSpec> kSpecs = {
      {"GET", "/openapi.json", "", "This OpenAPI document", &ServeOpenApi},
      {"POST", "/api/v1/features", "features:create", "Submit a feature (JSON or Markdown PRP)",
       &WithBackend<SubmitFeature>},
      {"GET", "/api/v1/features", "features:read", "List features (status, limit, offset)",
       &WithBackend<ListFeatures>},
      {"GET", "/api/v1/features/:id", "features:read", "A feature with tasks, artifacts, usage",
       &WithBackend<GetFeature>},
      {"DELETE", "/api/v1/features/:id", "features:create", "Cancel a feature",
       &WithBackend<CancelFeature>},
      {"POST", "/api/v1/features/:id/retry", "features:create",
       "Take a failed or cancelled feature up again where it stopped", &WithBackend<RetryFeature>},
      {"GET", "/api/v1/features/:id/diff", "features:read", "The delivered diff of a feature",
       &WithBackend<GetFeatureDiff>},
      {"GET", "/api/v1/tasks/:id", "features:read", "A task", &WithBackend<GetTask>},
      {"GET", "/api/v1/usage", "features:read",
       "LLM tokens and cost per day, role and model (days)", &WithBackend<GetUsage>},
      {"GET", "/api/v1/agents", "agents:read", "The agents and their states",
       &WithBackend<ListAgents>},
      {"GET", "/api/v1/agents/:id", "agents:read", "One agent", &WithBackend<GetAgent>},
      {"GET", "/agents", "agents:read", "Alias of GET /api/v1/agents", &WithBackend<ListAgents>},
      {"GET", "/api/v1/knowledge/search", "knowledge:read", "Search the knowledge base",
       &WithBackend<SearchKnowledge>},
      {"POST", "/api/v1/knowledge", "knowledge:write", "Ingest a text (source, content, namespace)",
       &WithBackend<AddKnowledge>},
      {"GET", "/api/v1/memories", "knowledge:read", "List or search memories",
       &WithBackend<ListMemories>},
      {"POST", "/api/v1/memories", "knowledge:write", "Store a memory", &WithBackend<AddMemory>},
      {"GET", "/api/v1/memories/:id", "knowledge:read", "One memory", &WithBackend<GetMemory>},
      {"POST", "/api/v1/auth/api-keys", "admin", "Create an API key (returned once)",
       &CreateApiKeyRoute},
      {"GET", "/api/v1/auth/api-keys", "admin", "List API keys (never the secrets)",
       &WithBackend<ListApiKeys>},
      {"DELETE", "/api/v1/auth/api-keys/:id", "admin", "Revoke an API key",
       &WithBackend<RevokeApiKey>},
  };
  return kSpecs;
}

namespace {

struct Shared {
  Shared(ApiBackend b, Auth& a, ApiGate& g) : backend(std::move(b)), auth(a), gate(g) {}
  ApiBackend backend;
  Auth& auth;
  ApiGate& gate;
};

Handler Wrap(const std::shared_ptr<Shared>& s, const ApiRouteSpec& spec) {
  auto* handler = spec.handler;
  if (!handler)
    throw std::logic_error("no handler for API route " + spec.method + " " + spec.pattern);
  const int ok_status = spec.method == "POST" ? 201 : 200;
  std::string permission = spec.permission;
  return [s, handler, ok_status, permission](const HttpRequest& r) {
    ApiGate::Admission admission = s->gate.Admit(r, permission);
    HttpResponse resp;
    if (admission.refusal) {
      resp = std::move(*admission.refusal);
    } else {
      Result<json> body = handler(s->backend, s->auth, r);
      resp = body.ok() ? JsonResponse(ok_status, *body)
                       : ErrorResponse(ToApiError(body.status()), r.request_id);
    }
    s->gate.Decorate(r, admission, resp);
    return resp;
  };
}

}  // namespace

void AddApiRoutes(HttpServer& server, ApiBackend backend, Auth& auth, ApiGate& gate) {
  auto shared = std::make_shared<Shared>(std::move(backend), auth, gate);
  std::map<std::string, std::set<std::string>> methods;  // pattern -> methods
  std::vector<std::string> order;
  for (const ApiRouteSpec& spec : ApiRouteSpecs()) {
    server.Route(spec.method, spec.pattern, Wrap(shared, spec));
    if (methods[spec.pattern].empty()) order.push_back(spec.pattern);
    methods[spec.pattern].insert(spec.method);
  }
  // Preflights need no key: browsers send them without credentials.
  for (const std::string& pattern : order) {
    std::string allow;
    for (const auto& m : methods[pattern]) allow += m + ", ";
    allow += "OPTIONS";
    server.Route("OPTIONS", pattern, [shared, allow](const HttpRequest& r) {
      return shared->gate.Preflight(r, allow);
    });
  }
}

}  // namespace af
