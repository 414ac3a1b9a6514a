#include "store/store_rules.h"

#include <chrono>
#include <filesystem>
#include <utility>

#include "af/core/ids.h"
#include "af/core/private_files.h"

namespace af::store_internal {

using nlohmann::json;

namespace {

constexpr const char* kFeatureStatuses =
    "use one of queued, planning, implementing, testing, reviewing, "
    "delivering, completed, failed, cancelled";
constexpr const char* kTaskStatuses =
    "use one of pending, ready, in_progress, completed, failed, cancelled";

}  // namespace

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string DumpStoredJson(const json& v) {
  // Text from tools, commands and providers may not be UTF-8: replace bad
  // bytes (U+FFFD) instead of throwing out of whichever thread records it.
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

json ParseStoredJson(const std::string& text) {
  if (text.empty()) return nullptr;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  // A value that no longer parses was written by something else; surface null
  // rather than failing every read of the row.
  return j.is_discarded() ? json(nullptr) : j;
}

std::vector<std::string> StringList(const json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& v : j) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

// --- Features and tasks ------------------------------------------------------

Status CheckNewFeature(const Feature& f) {
  if (!IsFeatureStatus(f.status)) {
    return InvalidArgument("unknown feature status " + Quote(f.status), kFeatureStatuses);
  }
  if (!IsPriority(f.priority)) {
    return InvalidArgument("unknown priority " + Quote(f.priority),
                           "use one of low, medium, high, critical");
  }
  return CheckProjectName(f.project);
}

Status CheckFeatureFilter(const FeatureFilter& filter) {
  if (filter.limit < 1 || filter.limit > 1000 || filter.offset < 0) {
    return InvalidArgument("feature listing needs 1 <= limit <= 1000 and offset >= 0",
                           "e.g. limit=50&offset=0");
  }
  if (filter.status && !IsFeatureStatus(*filter.status)) {
    return InvalidArgument("unknown feature status " + Quote(*filter.status), kFeatureStatuses);
  }
  return Status::Ok();
}

Status CheckFeatureTransition(const std::optional<std::string>& expected_from,
                              const std::string& to, const json& event_data) {
  if (!IsFeatureStatus(to) || (expected_from && !IsFeatureStatus(*expected_from))) {
    return InvalidArgument(
        "unknown feature status " + Quote(IsFeatureStatus(to) ? *expected_from : to),
        kFeatureStatuses);
  }
  return CheckEventData(event_data);
}

Status CheckTaskTransition(const std::optional<std::string>& expected_from, const std::string& to,
                           const TaskUpdate& update, const json& event_data) {
  if (!IsTaskStatus(to) || (expected_from && !IsTaskStatus(*expected_from))) {
    return InvalidArgument("unknown task status " + Quote(IsTaskStatus(to) ? *expected_from : to),
                           kTaskStatuses);
  }
  if (update.add_attempts < 0) {
    return InvalidArgument("attempts can only grow", "pass add_attempts >= 0");
  }
  return CheckEventData(event_data);
}

Status CheckExpectedStatus(std::string_view kind, const std::string& id, const std::string& current,
                           const std::optional<std::string>& expected_from, const std::string& to) {
  if (!expected_from || current == *expected_from) return Status::Ok();
  const std::string k(kind);
  return FailedPrecondition(k + " " + id + " is " + Quote(current) + ", not the expected " +
                                Quote(*expected_from) + "; not moved to " + Quote(to),
                            "reload the " + k + "; another step already moved it");
}

Result<std::vector<DagNode>> PrepareTaskBatch(std::vector<Task>* tasks) {
  std::set<std::string> batch_ids;
  for (Task& t : *tasks) {
    if (t.id.empty()) t.id = NewId("t");
    if (!IsTaskStatus(t.status)) {
      return InvalidArgument("task " + t.id + " has unknown status " + Quote(t.status),
                             kTaskStatuses);
    }
    if (!batch_ids.insert(t.id).second) {
      return InvalidArgument("task id " + t.id + " appears twice in the batch",
                             "give every task its own id");
    }
    // Repeated dependencies say nothing new; keep the first of each.
    std::vector<std::string> unique_deps;
    std::set<std::string> seen;
    for (const std::string& d : t.dependencies) {
      if (seen.insert(d).second) unique_deps.push_back(d);
    }
    t.dependencies = std::move(unique_deps);
  }
  std::vector<DagNode> graph;
  for (const Task& t : *tasks) graph.push_back({t.id, t.dependencies});
  if (auto cycle = CycleIds(graph); !cycle.empty()) {
    std::string ids;
    for (const std::string& id : cycle) ids += (ids.empty() ? "" : ", ") + id;
    return InvalidArgument("task dependencies form a cycle through " + ids,
                           "a task may only depend on tasks that can finish before it");
  }
  return graph;
}

Status CheckDependenciesKnown(const std::vector<DagNode>& batch,
                              const std::set<std::string>& existing,
                              const std::string& feature_id) {
  auto unknown = UnknownDependencies(batch, existing);
  if (unknown.empty()) return Status::Ok();
  const auto& [id, d] = unknown.front();
  return InvalidArgument("task " + id + " depends on unknown task " + Quote(d),
                         "dependencies must name tasks of feature " + feature_id +
                             " created before or in the same batch");
}

// --- Events ------------------------------------------------------------------

Event FeatureCreatedEvent(const Feature& f) {
  Event e;
  e.type = "feature.created";
  e.feature_id = f.id;
  e.ts_ms = f.created_ms;
  e.data = {
      {"title", f.title}, {"project", f.project}, {"priority", f.priority}, {"status", f.status}};
  return e;
}

Event FeatureStatusEvent(const std::string& id, const std::string& from, const std::string& to,
                         const std::string& reason, int64_t now_ms, const json& event_data) {
  Event e;
  e.type = "feature.status";
  e.feature_id = id;
  e.ts_ms = now_ms;
  e.data = event_data.is_object() ? event_data : json::object();
  e.data["from"] = from;
  e.data["to"] = to;
  e.data["reason"] = reason;
  return e;
}

Event TaskCreatedEvent(const Task& t, int64_t now_ms) {
  Event e;
  e.type = "task.created";
  e.feature_id = t.feature_id;
  e.task_id = t.id;
  e.ts_ms = now_ms;
  e.data = {{"title", t.title}, {"role", t.role}, {"dependencies", t.dependencies}};
  return e;
}

Event TaskStatusEvent(const Task& task, const std::string& from, int64_t now_ms,
                      const json& event_data) {
  Event e;
  e.type = "task.status";
  e.feature_id = task.feature_id;
  e.task_id = task.id;
  e.agent = task.assigned_agent;
  e.ts_ms = now_ms;
  e.data = event_data.is_object() ? event_data : json::object();
  e.data["from"] = from;
  e.data["to"] = task.status;
  return e;
}

Status CheckEvent(const Event& e) {
  if (e.type.empty()) {
    return InvalidArgument("event type is empty", "name the event, e.g. \"feature.status\"");
  }
  return Status::Ok();
}

Status CheckEventData(const json& data) {
  if (data.is_null() || data.is_object()) return Status::Ok();
  return InvalidArgument("event data must be a JSON object, got " + std::string(data.type_name()),
                         "pass an object such as {\"key\": \"value\"} or null");
}

Status CheckEventFilter(const EventFilter& filter) {
  if (filter.limit < 1 || filter.limit > 10000 || filter.after_seq < 0) {
    return InvalidArgument("event listing needs 1 <= limit <= 10000 and after_seq >= 0",
                           "page with after_seq = the last seq you received");
  }
  return Status::Ok();
}

// --- Agents, LLM calls, API keys ----------------------------------------------

Status CheckAgent(const AgentRecord& a) {
  if (a.id.empty()) return InvalidArgument("agent id is empty", "give every agent an id");
  if (!IsAgentState(a.state)) {
    return InvalidArgument("agent " + a.id + " has unknown state " + Quote(a.state),
                           "use one of running, busy, idle, degraded, offline");
  }
  return Status::Ok();
}

Status CheckLlmCall(const LlmCall& c) {
  if (c.status.empty()) {
    return InvalidArgument("LLM call status is empty", "use \"ok\" or an error code name");
  }
  return Status::Ok();
}

Status CheckApiKey(const ApiKey& k) {
  if (k.name.empty() || k.key_hash.empty()) {
    return InvalidArgument("an API key needs a name and a key hash",
                           "name the key, e.g. 'ci', and store only the hash of its secret");
  }
  return Status::Ok();
}

// --- Memories and knowledge --------------------------------------------------

Status CheckMemoryFilter(const MemoryFilter& filter) {
  if (filter.limit < 1 || filter.limit > 10000 || filter.offset < 0) {
    return InvalidArgument("memory listing needs 1 <= limit <= 10000 and offset >= 0",
                           "page with offset = the number of memories already read");
  }
  return Status::Ok();
}

Status CheckMemoryLink(const MemoryLink& l) {
  if (l.from_id.empty() || l.to_id.empty() || l.type.empty()) {
    return InvalidArgument("a memory link needs from_id, to_id and type",
                           "name both memories and the kind of link, e.g. relates_to");
  }
  if (!(l.strength > 0 && l.strength <= 1)) {  // also refuses NaN
    return InvalidArgument(
        "memory link strength " + std::to_string(l.strength) + " is out of range (0, 1]",
        "use a weight above 0 and at most 1");
  }
  return Status::Ok();
}

Status CheckDocumentWrites(const std::vector<DocumentWrite>& writes) {
  for (const auto& w : writes) {
    if (w.doc.source.empty()) {
      return InvalidArgument("a document needs a source",
                             "give the file's path, or a name for a text given directly");
    }
  }
  return Status::Ok();
}

// --- Health and backup -------------------------------------------------------

Status CheckSchemaCurrent(const MigrationStatus& st, const std::string& database) {
  if (st.pending.empty()) return Status::Ok();
  return FailedPrecondition("database " + database + " is at schema version " +
                                std::to_string(st.current_version) + " of " +
                                std::to_string(st.latest_version),
                            "run 'agent-factory db migrate'");
}

Status CreateBackupFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return AlreadyExists("backup copy " + path + " already exists",
                         "choose another file name, or move the existing file aside");
  }
  if (std::error_code err = CreatePrivateFile(path)) {
    return Unavailable("cannot create the backup copy " + path + ": " + err.message(),
                       "check that its directory exists and is writable");
  }
  return Status::Ok();
}

}  // namespace af::store_internal
