#pragma once
// Internal: the input checks every Store backend applies the same way, before
// it touches its database, so a caller gets the same refusal (message and
// hint) from SQLite and PostgreSQL. One definition each, here; the backends
// keep only what depends on their database. Tests and docs quote these
// messages: change them here and there together.
//
// The memory and knowledge rules (CheckMemory, CheckPage, word cutting) are
// in knowledge_rules.h.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/dag.h"
#include "af/store/store.h"
#include "af/store/types.h"

namespace af::store_internal {

// --- Small shared helpers ----------------------------------------------------

// Wall-clock milliseconds since the epoch: the default StoreOptions::now_ms.
int64_t SystemNowMs();

// 's' in single quotes, for names in messages.
std::string Quote(std::string_view s);

// A JSON value as stored in a text column (bad UTF-8 replaced, never thrown),
// and back: "" or text that no longer parses reads as null rather than
// failing every read of the row.
std::string DumpStoredJson(const nlohmann::json& v);
nlohmann::json ParseStoredJson(const std::string& text);

// The strings of a JSON array (other elements skipped); empty for a non-array.
std::vector<std::string> StringList(const nlohmann::json& j);

// --- Features and tasks ------------------------------------------------------

// CreateFeature: a known status and priority, a valid project name.
Status CheckNewFeature(const Feature& f);

// ListFeatures: 1 <= limit <= 1000, offset >= 0, a known status if any.
Status CheckFeatureFilter(const FeatureFilter& filter);

// TransitionFeature / TransitionTask before any read: known statuses (`to`
// and `expected_from`), attempts that only grow, event data that is an
// object or null.
Status CheckFeatureTransition(const std::optional<std::string>& expected_from,
                              const std::string& to, const nlohmann::json& event_data);
Status CheckTaskTransition(const std::optional<std::string>& expected_from, const std::string& to,
                           const TaskUpdate& update, const nlohmann::json& event_data);

// The compare of a compare-and-set transition: FailedPrecondition when
// `expected_from` is given and the stored `current` status differs. `kind` is
// "feature" or "task".
Status CheckExpectedStatus(std::string_view kind, const std::string& id, const std::string& current,
                           const std::optional<std::string>& expected_from, const std::string& to);

// CreateTasks, everything that needs no database (a refused batch writes
// nothing): gives tasks without an id a new one, checks statuses, refuses an
// id given twice, drops repeated dependencies (keeping the first of each)
// and refuses a cycle. Existing tasks cannot depend on new ones, so a cycle
// can only run through the batch. Returns the batch as a graph, for
// CheckDependenciesKnown once the stored tasks are read.
Result<std::vector<DagNode>> PrepareTaskBatch(std::vector<Task>* tasks);

// Every dependency of the batch names a task of the batch or one of
// `existing` (the feature's stored task ids).
Status CheckDependenciesKnown(const std::vector<DagNode>& batch,
                              const std::set<std::string>& existing, const std::string& feature_id);

// --- Events ------------------------------------------------------------------

// The events a store appends with its writes, the same on every backend:
// feature.created, feature.status (from, to, reason over the caller's
// event data), task.created and task.status (from, to over the caller's
// event data; `task` as updated). The caller sets nothing else.
Event FeatureCreatedEvent(const Feature& f);
Event FeatureStatusEvent(const std::string& id, const std::string& from, const std::string& to,
                         const std::string& reason, int64_t now_ms,
                         const nlohmann::json& event_data);
Event TaskCreatedEvent(const Task& t, int64_t now_ms);
Event TaskStatusEvent(const Task& task, const std::string& from, int64_t now_ms,
                      const nlohmann::json& event_data);

// An event needs a type.
Status CheckEvent(const Event& e);
// Event data (and transition event data) is a JSON object or null.
Status CheckEventData(const nlohmann::json& data);
// ListEvents: 1 <= limit <= 10000, after_seq >= 0.
Status CheckEventFilter(const EventFilter& filter);

// --- Agents, LLM calls, API keys ----------------------------------------------

// UpsertAgent: an id and a known state.
Status CheckAgent(const AgentRecord& a);
// RecordLlmCall: a status.
Status CheckLlmCall(const LlmCall& c);
// CreateApiKey: a name and a key hash.
Status CheckApiKey(const ApiKey& k);

// --- Memories and knowledge --------------------------------------------------

// ListMemories: 1 <= limit <= 10000, offset >= 0.
Status CheckMemoryFilter(const MemoryFilter& filter);
// UpsertMemoryLink: both ends and a type, strength in (0, 1] (NaN refused).
Status CheckMemoryLink(const MemoryLink& l);
// ReplaceDocuments: every document names its source.
Status CheckDocumentWrites(const std::vector<DocumentWrite>& writes);

// --- Health and backup -------------------------------------------------------

// Check(): FailedPrecondition when migrations are pending; `database` names
// the database in the message (a path or a redacted URL).
Status CheckSchemaCurrent(const MigrationStatus& st, const std::string& database);

// BackupTo: refuses a `path` that exists, then creates it empty and private
// (owner-only), so the copy is never readable by others even while written.
Status CreateBackupFile(const std::string& path);

}  // namespace af::store_internal
