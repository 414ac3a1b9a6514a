#pragma once
// The Store keeps all durable state: projects, features, tasks, the event log,
// agents, LLM call records and API keys. State lives here; the bus only
// carries work. Every status transition is one transaction that also appends
// its event, so the event log never disagrees with the rows it describes.
//
// Backends: SQLite ("sqlite:PATH", "sqlite::memory:") and PostgreSQL
// ("postgresql://USER:PASSWORD@HOST:PORT/DB", also "postgres://"). Every
// backend must pass the conformance suite in tests/support/store_conformance.h.
//
// Errors: every method returns a Status / Result. Codes used:
//   kInvalidArgument    bad input (unknown status value, dependency cycle, ...);
//                       nothing was written
//   kNotFound           the named record does not exist (the id is in the message)
//   kAlreadyExists      a create collides with an existing id / key hash
//   kFailedPrecondition expected status did not match (nothing changed); database
//                       not migrated, newer than this binary, corrupt, or not a
//                       database (the message names the path, the hint the fix)
//   kUnavailable        the database is locked longer than busy_timeout, cannot
//                       be opened, or the backend is not built
//   kInternal           anything else the database reported
//
// Thread safety: all methods may be called from any thread concurrently. The
// SQLite backend uses ONE connection guarded by one mutex: each call holds the
// mutex for its whole duration (so each call is atomic with respect to others
// in this process); other processes on the same file are serialised by SQLite
// locks, waiting up to busy_timeout. The PostgreSQL backend runs each call as
// one transaction on a small pool of connections; a connection found broken
// is reopened and the call retried once, and a server that stays away gives
// kUnavailable naming host:port. Callers never hold store locks between
// calls. Ownership: the Store owns its connections; records are returned by value.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "af/core/status.h"
#include "af/store/types.h"

namespace af {

struct StoreOptions {
  // "sqlite:PATH" (relative or absolute; "sqlite:///abs/path" also works),
  // "sqlite::memory:" (private, gone on close), or a libpq URL
  // "postgresql://USER:PASSWORD@HOST:PORT/DB" (also "postgres://"). Default:
  // ./data/agent-factory.db.
  std::string url = "sqlite:data/agent-factory.db";
  // Apply pending migrations on open (default). false opens without changing
  // the schema, e.g. for `db status`; methods that need missing tables then
  // fail with kFailedPrecondition and a hint to run `agent-factory db migrate`.
  bool migrate = true;
  // How long a write waits for another process's lock (PostgreSQL: the
  // session's lock_timeout). Default 5 s.
  std::chrono::milliseconds busy_timeout{5000};
  // Clock seam: unix milliseconds. Default (empty): the system clock.
  std::function<int64_t()> now_ms;
};

class Store;

// Ok, or the error for a database whose schema is newer than this binary
// knows (a newer agent-factory migrated it): "the database schema is version
// N, newer than this binary knows (M)", with what to do. One wording for
// `serve`, `run` and `db status`.
Status CheckSchemaNotNewer(const MigrationStatus& status);

// Calls `fn` for every event of `feature_id` (all events when empty) in seq
// order, paging through ListEvents. Stops at the first error.
Status ForEachEvent(Store& store, const std::string& feature_id,
                    const std::function<void(const Event&)>& fn);

struct FeatureFilter {
  std::optional<std::string> status;  // one of kFeatureStatuses
  std::optional<std::string> project;
  int limit = 50;  // 1..1000
  int offset = 0;  // >= 0
};

struct FeaturePage {
  std::vector<Feature> features;  // newest first (created_ms, then id, descending)
  int64_t total = 0;              // matching the filter, ignoring limit/offset
};

struct EventFilter {
  int64_t after_seq = 0;  // only events with seq > after_seq
  std::optional<std::string> feature_id;
  int limit = 1000;  // 1..10000
};

// Changes applied together with a task transition.
struct TaskUpdate {
  std::optional<std::string> assigned_agent;  // set (empty string clears)
  std::optional<nlohmann::json> result;       // replace
  int add_attempts = 0;                       // added to attempts (>= 0)
};

class Store {
 public:
  // Opens the backend named by options.url. For SQLite: creates the parent
  // directory, enables WAL, busy_timeout, foreign keys, synchronous=NORMAL and,
  // when options.migrate, applies pending migrations. Fails (naming the path
  // and what to do) on an unwritable directory, a file that is not a database
  // or is corrupt, or a schema newer than this binary (with migrate = true).
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);

  Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  virtual ~Store() = default;

  // --- Migrations ---------------------------------------------------------
  // Applies pending migrations, each in its own transaction; returns those
  // applied now (empty when up to date: re-running is a no-op).
  virtual Result<std::vector<Migration>> Migrate() = 0;
  // Never changes the database (works on a fresh file opened with migrate=false).
  virtual Result<MigrationStatus> GetMigrationStatus() = 0;
  // Applied migrations, ascending by version.
  virtual Result<std::vector<Migration>> MigrationHistory() = 0;

  // --- Projects -----------------------------------------------------------
  // Creates the project if missing; returns it (existing created_ms kept).
  virtual Result<Project> EnsureProject(const std::string& name) = 0;
  virtual Result<std::vector<Project>> ListProjects() = 0;  // by name

  // --- Features -----------------------------------------------------------
  // Assigns an id when empty, ensures the project, sets created/updated times
  // and appends `feature.created` in the same transaction. Returns the stored row.
  virtual Result<Feature> CreateFeature(Feature feature) = 0;
  virtual Result<Feature> GetFeature(const std::string& id) = 0;
  // GetFeature(id)->status (the same error when there is no such feature),
  // without reading the rest of the row: the pipeline asks before each step
  // of every feature. The default reads the whole row.
  virtual Result<std::string> FeatureStatus(const std::string& id) {
    AF_ASSIGN_OR_RETURN(Feature f, GetFeature(id));
    return std::move(f.status);
  }
  virtual Result<FeaturePage> ListFeatures(const FeatureFilter& filter) = 0;
  // Atomically: if expected_from is given and differs from the current status,
  // fails with kFailedPrecondition naming both and changes nothing; otherwise
  // sets status, reason and updated_ms and appends `feature.status` with data
  // {"from","to","reason"} plus the keys of event_data (an object or null).
  // Returns the event's seq, or 0 when the status already equals `to` (then
  // nothing is written). The store does not judge which transitions make
  // sense; the coordinator owns the state machine.
  virtual Result<int64_t> TransitionFeature(const std::string& id,
                                            std::optional<std::string> expected_from,
                                            const std::string& to, const std::string& reason,
                                            const nlohmann::json& event_data) = 0;

  // --- Tasks --------------------------------------------------------------
  // Inserts all tasks, their dependencies and one `task.created` event each in
  // one transaction. Empty ids are assigned. A dependency must name a task of
  // this batch or an existing task of the same feature; unknown ids and cycles
  // are kInvalidArgument and nothing is written. Returns the stored tasks in
  // the given order.
  virtual Result<std::vector<Task>> CreateTasks(const std::string& feature_id,
                                                std::vector<Task> tasks) = 0;
  virtual Result<Task> GetTask(const std::string& id) = 0;
  // In creation order; an unknown feature gives kNotFound.
  virtual Result<std::vector<Task>> ListTasks(const std::string& feature_id) = 0;
  // Same atomic rule as TransitionFeature, with a `task.status` event
  // ({"from","to"} plus event_data; agent = the task's assigned agent). When
  // the status already equals `to`, `update` is still applied but no event is
  // appended and 0 is returned.
  virtual Result<int64_t> TransitionTask(const std::string& id,
                                         std::optional<std::string> expected_from,
                                         const std::string& to, const TaskUpdate& update,
                                         const nlohmann::json& event_data) = 0;

  // --- Events -------------------------------------------------------------
  // Appends and returns the new seq (strictly greater than every earlier one,
  // even after rows are deleted). ts_ms = clock when 0. type must be non-empty.
  virtual Result<int64_t> AppendEvent(Event event) = 0;
  // Ascending by seq. Reading again with after_seq = last seen seq continues
  // without gap or duplicate.
  virtual Result<std::vector<Event>> ListEvents(const EventFilter& filter) = 0;
  virtual Result<int64_t> LatestEventSeq() = 0;  // 0 when there are none
  // Called after events appended through this object became durable (once
  // per commit), so a reader of the event table can wait for a call instead
  // of polling. Events other processes append are not announced by SQLite;
  // PostgreSQL announces them too (LISTEN/NOTIFY, from a thread of its own).
  // It runs on the appending thread (or that thread), may hold the store's
  // lock: it must be quick and must not call the store. Replaces any earlier listener; {} removes
  // it. The default implementation never calls it.
  virtual void SetEventsListener(std::function<void()> listener) { (void)listener; }

  // --- Agents -------------------------------------------------------------
  virtual Status UpsertAgent(const AgentRecord& agent) = 0;  // by id
  // UpsertAgent and AppendEvent in one transaction: an agent's state change
  // and the event that announces it (twice per job), seen together or not at
  // all. Returns the event's seq. The default makes the two calls in turn.
  virtual Result<int64_t> UpsertAgentWithEvent(const AgentRecord& agent, Event event);
  virtual Result<AgentRecord> GetAgent(const std::string& id) = 0;
  virtual Result<std::vector<AgentRecord>> ListAgents() = 0;  // by id
  // Sets the agent's state to offline and clears its current task, in one
  // statement, only while its record is not offline and its last heartbeat
  // is still `last_heartbeat_ms` (a compare-and-set: an agent that beat since
  // keeps its state). True when this call changed the record, so of several
  // processes sweeping the same lost agent exactly one sees true. NotFound
  // for an unknown id.
  virtual Result<bool> MarkAgentOffline(const std::string& id, int64_t last_heartbeat_ms) = 0;
  // Deletes the agent's record, in one statement, only while it is recorded
  // offline and its last heartbeat is still `last_heartbeat_ms` (an agent
  // that beat since keeps it). For forgetting processes gone for good. True
  // when this call deleted it; false when it changed meanwhile or is gone
  // already (another sweeper deleted it).
  virtual Result<bool> DeleteOfflineAgent(const std::string& id, int64_t last_heartbeat_ms) = 0;

  // --- LLM calls ----------------------------------------------------------
  // Assigns id when empty and created_ms when 0; returns the stored record.
  virtual Result<LlmCall> RecordLlmCall(LlmCall call) = 0;
  // The most recent call of this feature with status "ok" and this request
  // hash, if any: what a resumed step replays instead of paying again. Scoped
  // to the feature so two features never share a model's answer.
  virtual Result<std::optional<LlmCall>> FindRecordedLlmCall(const std::string& feature_id,
                                                             const std::string& hash) = 0;
  virtual Result<std::vector<LlmCall>> ListLlmCalls(const std::string& feature_id) = 0;
  // Sums over every recorded call of the feature (failed calls count too:
  // their tokens and cost were spent). Unknown feature: all zero.
  virtual Result<UsageTotals> FeatureUsage(const std::string& feature_id) = 0;
  // Total cost_usd of calls with created_ms >= since_ms (the daily budget).
  virtual Result<double> CostSince(int64_t since_ms) = 0;
  // The calls the query selects (failed ones too), summed per UTC day, role,
  // provider and model; ordered by day, role, provider, model.
  virtual Result<std::vector<UsageRow>> UsageBreakdown(const UsageQuery& query) = 0;

  // --- API keys -----------------------------------------------------------
  // Assigns id when empty and created_ms when 0. A duplicate key_hash is
  // kAlreadyExists. key_hash and name must be non-empty.
  virtual Result<ApiKey> CreateApiKey(ApiKey key) = 0;
  // Revoked keys are returned too (revoked = true): the caller refuses them.
  // Unknown hash: kNotFound (the hash is not echoed).
  virtual Result<ApiKey> FindApiKeyByHash(const std::string& key_hash) = 0;
  virtual Result<std::vector<ApiKey>> ListApiKeys() = 0;   // by created_ms, id
  virtual Status RevokeApiKey(const std::string& id) = 0;  // idempotent; kNotFound if unknown
  virtual Status TouchApiKey(const std::string& id, int64_t used_ms) = 0;  // kNotFound if unknown
  virtual Result<int64_t> CountActiveApiKeys() = 0;                        // not revoked

  // --- Memories -------------------------------------------------------------
  // Validates type (kMemoryTypes), importance (1..10) and a non-empty content;
  // assigns id (when empty), times and a fresh vector_label (the given one is
  // ignored). InvalidArgument names the bad field; AlreadyExists when the id
  // is taken.
  virtual Result<Memory> AddMemory(Memory memory) = 0;
  // Memories of the namespaces that are neither archived nor superseded (the
  // first namespace's matches first: session -> project -> global fallback),
  // every word of `query` matched as a case-insensitive substring, by
  // importance then recency; empty query = all. Marks the returned ones
  // accessed.
  virtual Result<std::vector<Memory>> FindMemories(const std::vector<std::string>& namespaces,
                                                   const std::string& query, int limit) = 0;
  // One memory, archived or not. NotFound names the id.
  virtual Result<Memory> GetMemory(const std::string& id) = 0;
  // Memories by vector label, in the order of `labels`; unknown labels are
  // skipped (the index may hold a label whose row went).
  virtual Result<std::vector<Memory>> MemoriesByLabel(const std::vector<int64_t>& labels) = 0;
  // MemoriesByLabel, but content, summary and source may come back empty
  // (SQLite leaves them out); everything a search filters and ranks by is
  // there (id, namespace, type, importance, tags, times, access, archived,
  // superseded_by, label). For weighing many candidates of which few are
  // returned. The default reads the whole rows.
  virtual Result<std::vector<Memory>> MemoryHeadsByLabel(const std::vector<int64_t>& labels) {
    return MemoriesByLabel(labels);
  }
  // By filter, most important then most recent first. limit 1..10000 and
  // offset >= 0, InvalidArgument otherwise.
  virtual Result<std::vector<Memory>> ListMemories(const MemoryFilter& filter) = 0;
  // Replaces content, summary, type, importance, tags, source, archived and
  // superseded_by of an existing memory (validated as in AddMemory); a change
  // to the embedded text (content, summary or tags: see MemoryTexts) gets a
  // new vector_label. Returns the stored record. NotFound.
  virtual Result<Memory> UpdateMemory(const Memory& memory) = 0;
  // Deletes a memory and its links. NotFound when unknown.
  virtual Status DeleteMemory(const std::string& id) = 0;
  // Marks memories accessed now (access_count + 1): recall and search
  // results. Unknown ids are skipped.
  virtual Status TouchMemories(const std::vector<std::string>& ids) = 0;
  // BM25 full-text search over the content, summary and tags of memories that
  // are neither archived nor superseded, in the namespaces (all when empty).
  // `query` is free text: it is tokenised and its words OR-ed, never parsed as
  // an FTS expression, so any input is safe; a query without words finds
  // nothing. Best first, at most `limit` (capped at 1000; < 1 = none).
  virtual Result<std::vector<TextHit>> SearchMemoryText(const std::vector<std::string>& namespaces,
                                                        const std::string& query, int limit) = 0;

  // Links: one per (from, to, type). Upsert keeps created_ms. Both ends must
  // exist (NotFound otherwise); type must be non-empty and strength in (0, 1]
  // (InvalidArgument).
  virtual Status UpsertMemoryLink(const MemoryLink& link) = 0;
  // Several links in one transaction, all or none (a new memory's links to
  // its neighbours). The default upserts them in turn.
  virtual Status UpsertMemoryLinks(const std::vector<MemoryLink>& links);
  // Links touching a memory, either direction, strongest first.
  virtual Result<std::vector<MemoryLink>> MemoryLinks(const std::string& memory_id) = 0;
  virtual Result<std::vector<MemoryLink>> AllMemoryLinks() = 0;  // by from, to, type
  // NotFound when there is no such link.
  virtual Status DeleteMemoryLink(const std::string& from_id, const std::string& to_id,
                                  const std::string& type) = 0;

  // --- Knowledge base -------------------------------------------------------
  // The document with this namespace and source, NotFound when none.
  virtual Result<KbDocument> FindDocument(const std::string& ns, const std::string& source) = 0;
  // By namespace, then source. "" = all namespaces.
  virtual Result<std::vector<KbDocument>> ListDocuments(const std::string& ns) = 0;
  // In one transaction: deletes the document of (ns, source) with its chunks
  // if any, then inserts `doc` and `chunks` (labels assigned, returned in
  // order). `removed` (may be null) receives the labels of the chunks that
  // went, for the vector index. The store sets the document's id when empty
  // (the replaced document's, else a new one), created_ms when 0 (likewise),
  // updated_ms and chunk_count, and each chunk's document_id, ns, source and
  // ordinal (its position in `chunks`). An empty source is InvalidArgument;
  // nothing is written on any error.
  virtual Result<std::vector<int64_t>> ReplaceDocument(KbDocument doc, std::vector<KbChunk> chunks,
                                                       std::vector<int64_t>* removed) = 0;
  // ReplaceDocument for each write in order, all in one transaction (one
  // commit for thousands of chunks, which is what makes bulk ingestion
  // fast): every document is written, or none is and the first error is
  // returned. Fills each write's `labels` and `removed` as ReplaceDocument
  // returns them; a source written twice in one batch is replaced by its
  // later write (the first write's labels then appear in `removed`).
  virtual Status ReplaceDocuments(std::vector<DocumentWrite>* writes) = 0;
  // Deletes a document and its chunks; returns the removed chunk labels.
  // NotFound when unknown.
  virtual Result<std::vector<int64_t>> DeleteDocument(const std::string& document_id) = 0;
  // BM25 over chunk content and headings, as SearchMemoryText.
  virtual Result<std::vector<TextHit>> SearchChunkText(const std::vector<std::string>& namespaces,
                                                       const std::string& query, int limit) = 0;
  // Chunks by label, in the order of `labels`; unknown labels skipped.
  virtual Result<std::vector<KbChunk>> ChunksByLabel(const std::vector<int64_t>& labels) = 0;
  // Every chunk label / non-archived, non-superseded memory label with its
  // text, ascending by label, in pages (after_label exclusive; limit
  // 1..10000): for rebuilding and repairing the vector index. `text` is what
  // gets embedded: a chunk's heading, a newline and its content (just the
  // content without a heading); a memory's summary and a newline (when there
  // is a summary), its content, then a newline and its tags separated by
  // spaces (when it has tags).
  struct LabelledText {
    int64_t label = 0;
    std::string ns;
    std::string text;
  };
  virtual Result<std::vector<LabelledText>> ChunkTexts(int64_t after_label, int limit) = 0;
  virtual Result<std::vector<LabelledText>> MemoryTexts(int64_t after_label, int limit) = 0;
  // All labels, ascending (cheap: no text), to compare with an index.
  virtual Result<std::vector<int64_t>> ChunkLabels() = 0;
  // Labels of memories neither archived nor superseded, ascending.
  virtual Result<std::vector<int64_t>> MemoryLabels() = 0;
  virtual Result<KbCounts> CountKnowledge() = 0;
  // A counter raised in the same transaction as every write that adds or
  // removes a chunk or memory label (archiving and superseding included), by
  // any process: a KnowledgeBase whose index was synced at another value
  // repairs it before searching.
  virtual Result<int64_t> KnowledgeGeneration() = 0;

  // --- Health -------------------------------------------------------------
  virtual Status Check() = 0;  // a cheap query, for /health
  // Features by status, tasks by role and status, LLM usage by provider,
  // model and status; grouped counts over whole tables, for /metrics.
  virtual Result<StoreStats> Stats() = 0;
  // "sqlite:/abs/path/agent-factory.db", "sqlite::memory:" or the PostgreSQL
  // URL with its password replaced by ***; never a password.
  virtual std::string Describe() const = 0;

  // --- Backup -------------------------------------------------------------
  // Writes a copy of the whole database as it was at one moment to a new
  // file at `path` (mode 0600), while this and other processes keep reading
  // and writing: the store part of an online backup. The copy is a
  // standalone database that Store::Open("sqlite:" + path) opens as is.
  // SQLite uses its online backup API from a separate connection, so the
  // copy neither blocks this store's other calls nor waits for writers.
  // PostgreSQL copies every table into a new SQLite file from one
  // REPEATABLE READ snapshot on a connection of its own (same promise; for a
  // native dump of a large database use pg_dump).
  // kAlreadyExists when `path` exists (nothing is overwritten);
  // kResourceExhausted when the disk fills; on any error no file is left.
  virtual Status BackupTo(const std::string& path) = 0;
};

}  // namespace af
