#pragma once
// Plain records kept by the Store. Times are unix milliseconds (`*_ms`), JSON
// blobs are nlohmann::json, ids are strings from af::NewId. No behaviour here
// beyond the event's wire shape and the lists of allowed status values.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af {

// Allowed status values and priorities, in pipeline order.
inline constexpr std::string_view kFeatureStatuses[] = {"queued",    "planning",  "implementing",
                                                        "testing",   "reviewing", "delivering",
                                                        "completed", "failed",    "cancelled"};
inline constexpr std::string_view kTaskStatuses[] = {"pending",   "ready",  "in_progress",
                                                     "completed", "failed", "cancelled"};
inline constexpr std::string_view kAgentStates[] = {"running", "busy", "idle", "degraded",
                                                    "offline"};
inline constexpr std::string_view kPriorities[] = {"low", "medium", "high", "critical"};

bool IsFeatureStatus(std::string_view s);
bool IsTaskStatus(std::string_view s);
bool IsAgentState(std::string_view s);
bool IsPriority(std::string_view s);

// Ok when `project` may name a workspace directory (workspaces/<project>/):
// [A-Za-z0-9][A-Za-z0-9._-]{0,63}, so no name escapes the data directory or
// hides as a dot file; InvalidArgument naming it and that form otherwise. The
// one rule: the PRP parsers, `run --project` and the store all apply it.
Status CheckProjectName(const std::string& project);

// "2024-01-02T03:04:05.678Z" for a unix-milliseconds time.
std::string FormatUtcMillis(int64_t unix_ms);

struct Project {
  std::string name;
  int64_t created_ms = 0;
};

struct Feature {
  std::string id;  // assigned by CreateFeature when empty ("f-...")
  std::string project = "default";
  std::string title;
  std::string status = "queued";                      // one of kFeatureStatuses
  std::string priority = "medium";                    // one of kPriorities
  nlohmann::json request = nlohmann::json::object();  // the whole PRP request
  std::string reason;                                 // failure/cancel reason, may be empty
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

struct Task {
  std::string id;  // assigned by CreateTasks when empty ("t-...")
  std::string feature_id;
  std::string title;
  std::string description;
  std::string role;
  std::string status = "pending";         // one of kTaskStatuses
  std::vector<std::string> dependencies;  // ids of tasks of the same feature
  std::vector<std::string> files;
  int attempts = 0;
  std::string assigned_agent;
  nlohmann::json result;  // null until there is one
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

struct Event {
  int64_t seq = 0;   // assigned by the store: strictly increasing, never reused
  std::string type;  // e.g. "feature.status"
  std::string feature_id;
  std::string task_id;
  std::string agent;
  int64_t ts_ms = 0;  // the store sets it from its clock when 0
  nlohmann::json data = nlohmann::json::object();

  // The SSE `data:` shape:
  // {"seq","type","feature_id","task_id","agent","ts","data"}; ts is ISO-8601
  // UTC with milliseconds, empty feature_id/task_id/agent are null.
  nlohmann::json ToJson() const;
};

struct AgentRecord {
  std::string id;
  std::string role;
  std::string state = "idle";  // one of kAgentStates
  int64_t last_heartbeat_ms = 0;
  std::string current_task;  // empty when none
  nlohmann::json counters = nlohmann::json::object();
  std::string host;
  int64_t pid = 0;
};

struct LlmCall {
  std::string id;  // assigned by RecordLlmCall when empty ("llm-...")
  std::string feature_id;
  std::string task_id;
  std::string role;
  std::string provider;
  std::string model;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double cost_usd = 0;
  int64_t latency_ms = 0;
  std::string status = "ok";  // "ok" or an error code name
  std::string error;
  std::string request_hash;
  nlohmann::json response;  // recorded so a resumed step can replay it
  int64_t created_ms = 0;   // the store sets it from its clock when 0
};

struct UsageTotals {
  int64_t calls = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  double cost_usd = 0;
};

// Store::UsageBreakdown's filter: one feature's calls ("" = every feature),
// made at or after since_ms.
struct UsageQuery {
  std::string feature_id;
  int64_t since_ms = 0;
};

// LLM usage summed per UTC day, role, provider and model.
struct UsageRow {
  std::string day;  // "2026-11-29" (UTC, from created_ms)
  std::string role, provider, model;
  UsageTotals totals;
};

// Counts for monitoring (/metrics), computed at once by Store::Stats().
struct StoreStats {
  struct Count {
    std::string key;  // feature status, or "role/status" for tasks
    int64_t count = 0;
  };
  struct LlmUsage {
    std::string provider;
    std::string model;
    std::string status;  // "ok" or an error code name
    int64_t calls = 0;
    int64_t input_tokens = 0;
    int64_t output_tokens = 0;
    double cost_usd = 0;
  };
  std::vector<Count> features_by_status;    // only statuses with rows, by status
  std::vector<Count> tasks_by_role_status;  // key "role/status", by key
  std::vector<LlmUsage> llm_usage;          // by provider, model, status
};

struct ApiKey {
  std::string id;  // assigned by CreateApiKey when empty ("key-...")
  std::string name;
  std::string key_hash;  // hash of the secret; the secret itself is never stored
  std::string prefix;    // first characters of the secret, for display
  std::vector<std::string> permissions;
  int64_t created_ms = 0;
  int64_t last_used_ms = 0;  // 0 = never used
  bool revoked = false;
};

// A memory: something learned, stored for agents to recall. The
// memory layer adds search, links and evolution on top of these rows.
// The longest memory content accepted: memories go into agents' contexts,
// so a long text belongs in the knowledge base, with a memory naming it.
inline constexpr size_t kMaxMemoryContentBytes = 64 * 1024;

struct Memory {
  std::string id;             // assigned when empty ("mem-...")
  std::string ns = "global";  // "global", "project:NAME", "session:PROJECT:ID"
  std::string content;
  std::string summary;
  std::string type =
      "insight";       // architecture_decision, code_pattern, bug_fix, ..., failure, success
  int importance = 5;  // 1..10
  std::vector<std::string> tags;
  nlohmann::json source = nlohmann::json::object();  // {feature, task, file, commit}
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t accessed_ms = 0;
  int64_t access_count = 0;
  bool archived = false;
  std::string superseded_by;  // id of the memory that replaced this one ("" = none)
  // The memory's label in the vector index (> 0 once stored). A new label is
  // given whenever the embedded text (content, summary or tags) changes, and
  // labels are never reused, so an index that holds a label holds the vector
  // of the current text.
  int64_t vector_label = 0;
};

// A typed, weighted edge between two memories ("relates_to", "supersedes",
// "caused_by", "fixes", ...). Strength is in (0, 1]; evolution decays it.
struct MemoryLink {
  std::string from_id, to_id;
  std::string type = "relates_to";
  double strength = 0.5;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// Which memories a listing returns. Empty fields filter nothing.
struct MemoryFilter {
  std::vector<std::string> namespaces;  // any of these ("" = all namespaces)
  std::vector<std::string> types;       // any of these
  std::vector<std::string> tags;        // every one of these
  bool include_archived = false;        // archived and superseded ones too
  int limit = 100;
  int offset = 0;
};

// An ingested file (or text given through the API): its chunks are replaced
// together when its content hash changes.
struct KbDocument {
  std::string id;             // assigned when empty ("doc-...")
  std::string ns = "global";  // namespace, as for memories
  std::string source;         // the path as given, or a caller's name for a text
  std::string content_hash;   // hex SHA-256 of the whole content
  nlohmann::json provenance = nlohmann::json::object();  // {feature, task, commit, ...}
  int64_t chunk_count = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
};

// One piece of a document. `label` is its row number: its key in the
// full-text index and its label in the vector index (never reused).
struct KbChunk {
  int64_t label = 0;  // assigned by the store
  std::string document_id;
  std::string source;                // the document's source (copied for results)
  std::string ns;                    // the document's namespace
  int ordinal = 0;                   // 0-based position in the document
  std::string heading;               // the Markdown heading path or code definition, "" if none
  int line_start = 0, line_end = 0;  // 1-based, inclusive
  std::string content;
};

// One document of Store::ReplaceDocuments: the document and its chunks in,
// the chunks' new labels and the replaced chunks' labels out.
struct DocumentWrite {
  KbDocument doc;
  std::vector<KbChunk> chunks;
  std::vector<int64_t> labels;   // set by the store, in the order of `chunks`
  std::vector<int64_t> removed;  // set by the store: labels of the chunks that went
};

// A full-text match: the label of a chunk or memory, and its BM25 score
// (higher = better; the store negates SQLite's "smaller is better").
struct TextHit {
  int64_t label = 0;
  double score = 0;
};

// Sizes of the knowledge base (kb stats).
struct KbCounts {
  int64_t documents = 0;
  int64_t chunks = 0;
  int64_t memories = 0;           // not archived
  int64_t archived_memories = 0;  // archived or superseded
  int64_t links = 0;
};

// The memory types (architecture_decision, code_pattern, bug_fix, ...).
extern const std::vector<std::string> kMemoryTypes;
// Ok for one of kMemoryTypes, else InvalidArgument naming it and listing them.
Status CheckMemoryType(const std::string& type);

struct Migration {
  int version = 0;
  std::string name;
  int64_t applied_ms = 0;  // 0 for a pending migration
};

struct MigrationStatus {
  int current_version = 0;         // highest applied (0 = none)
  int latest_version = 0;          // highest this binary knows
  std::vector<Migration> pending;  // known but not applied, ascending
};

}  // namespace af
