#pragma once
// Internal: the PostgreSQL backend behind Store::Open ("postgresql://..." and
// "postgres://..." URLs). Built on libpqxx; this header is private to the
// store layer, so pqxx never reaches a public header.
//
// The class is split over files that share this declaration:
//   pg_store.cc            connection pool, transactions, migrations and the
//                          core tables (projects, features, tasks, events,
//                          agents, LLM calls, API keys, health, backup)
//   pg_store_knowledge.cc  memories, memory links and the knowledge base
//   pg_store_agents.cc     agent liveness writes beyond the upsert
// All reach the database only through Tx(), so pooling, retry and error
// mapping are one rule in one place.
//
// Concurrency: a small pool of connections (kPoolSize) shared by all threads;
// each call borrows one for the duration of its transaction and never holds
// it between calls. Other processes share the database through PostgreSQL's
// own locking.
//
// Event order: seqs are taken from a one-row counter inside the appending
// transaction (see AppendEventTx), so appends commit in seq order and a
// reader of `seq > after` never skips an event that commits late. Appends
// NOTIFY af_events; SetEventsListener LISTENs, so the listener also wakes for
// events other processes append.
//
// BackupTo: PostgreSQL has no file to copy; the backup is a SQLite database
// (what Store::BackupTo promises: a file `Store::Open("sqlite:" + path)` opens)
// made by copying every table inside one REPEATABLE READ snapshot. For a
// native dump of a large database use pg_dump.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "af/store/store.h"
#include "store/store_rules.h"

namespace af::store_internal {

// `url` is the postgresql:// (or postgres://) URL as given (a libpq
// connection URI). Connects, checks the server answers and, when
// options.migrate, applies pending migrations. Unavailable (naming host:port,
// never the password, with a hint) when the server cannot be reached.
Result<std::unique_ptr<Store>> OpenPgStore(const std::string& url, const StoreOptions& options);

// "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db"; also
// hides a `password=` query parameter. Any database URL ends up in messages
// and Describe(): Store::Open redacts every URL it reports through this.
std::string RedactUrl(const std::string& url);

// Text PostgreSQL accepts: invalid UTF-8 and NUL bytes become U+FFFD (SQLite
// stores any bytes; PostgreSQL refuses both, and text from tools, commands and
// providers may hold them). Returns `s` itself when it is already valid.
std::string CleanText(const std::string& s);

// Runs `sql` with $1.. bound to `args`; every std::string argument passes
// through CleanText. Throws pqxx exceptions (Tx maps them).
template <typename T>
const T& PgParam(const T& v) {
  return v;
}
inline std::string PgParam(const std::string& s) { return CleanText(s); }
inline std::string PgParam(const char* s) { return CleanText(s); }
template <typename... Args>
pqxx::result PgExec(pqxx::work& w, const std::string& sql, const Args&... args) {
  return w.exec_params(sql, PgParam(args)...);
}

// A column's value, NULL read as "" / 0 / 0.0 (most columns are NOT NULL;
// the few nullable ones mean "none").
inline std::string Text(const pqxx::field& f) {
  return f.is_null() ? std::string() : std::string(f.c_str(), f.size());
}
inline int64_t Int(const pqxx::field& f) { return f.is_null() ? 0 : f.as<int64_t>(); }
inline double Real(const pqxx::field& f) { return f.is_null() ? 0.0 : f.as<double>(); }

// A result row as the shared record readers take it (store_rows.h).
class PgRow {
 public:
  explicit PgRow(pqxx::row r) : r_(std::move(r)) {}
  std::string Text(int c) const { return store_internal::Text(r_[c]); }
  int64_t Int(int c) const { return store_internal::Int(r_[c]); }
  double Real(int c) const { return store_internal::Real(r_[c]); }
  bool Bool(int c) const { return !r_[c].is_null() && r_[c].as<bool>(); }
  nlohmann::json Json(int c) const { return ParseStoredJson(Text(c)); }

 private:
  pqxx::row r_;  // a handle on the shared result: cheap to copy
};

// One table copied into the SQLite file BackupTo writes: `select` runs in the
// PostgreSQL snapshot and its columns, in order, fill `sqlite_columns` of
// `sqlite_table` (INSERT OR REPLACE, every value bound as text or NULL and
// converted by the SQLite column's type; select booleans as integers).
struct BackupTable {
  const char* sqlite_table;
  const char* sqlite_columns;
  const char* select;
};

class PgStore final : public Store {
 public:
  // Why 4: enough for the API threads, the coordinator and a few agents to
  // overlap short transactions, while N processes x 4 stays far below
  // PostgreSQL's default max_connections (100).
  static constexpr int kPoolSize = 4;

  PgStore(std::string url, StoreOptions options);
  ~PgStore() override;

  // Opens the first connection (so a bad URL fails at open, not at first use).
  Status Connect();

  // --- Migrations (pg_store.cc) -------------------------------------------
  Result<std::vector<Migration>> Migrate() override;
  Result<MigrationStatus> GetMigrationStatus() override;
  Result<std::vector<Migration>> MigrationHistory() override;

  // --- Core (pg_store.cc) ---------------------------------------------------
  Result<Project> EnsureProject(const std::string& name) override;
  Result<std::vector<Project>> ListProjects() override;
  Result<Feature> CreateFeature(Feature feature) override;
  Result<Feature> GetFeature(const std::string& id) override;
  Result<FeaturePage> ListFeatures(const FeatureFilter& filter) override;
  Result<int64_t> TransitionFeature(const std::string& id, std::optional<std::string> expected_from,
                                    const std::string& to, const std::string& reason,
                                    const nlohmann::json& event_data) override;
  Result<std::vector<Task>> CreateTasks(const std::string& feature_id,
                                        std::vector<Task> tasks) override;
  Result<Task> GetTask(const std::string& id) override;
  Result<std::vector<Task>> ListTasks(const std::string& feature_id) override;
  Result<int64_t> TransitionTask(const std::string& id, std::optional<std::string> expected_from,
                                 const std::string& to, const TaskUpdate& update,
                                 const nlohmann::json& event_data) override;
  Result<int64_t> AppendEvent(Event event) override;
  Result<std::vector<Event>> ListEvents(const EventFilter& filter) override;
  Result<int64_t> LatestEventSeq() override;
  void SetEventsListener(std::function<void()> listener) override;
  Status UpsertAgent(const AgentRecord& agent) override;
  Result<int64_t> UpsertAgentWithEvent(const AgentRecord& agent, Event event) override;
  Result<AgentRecord> GetAgent(const std::string& id) override;
  Result<std::vector<AgentRecord>> ListAgents() override;
  Result<bool> MarkAgentOffline(const std::string& id, int64_t last_heartbeat_ms) override;
  Result<bool> DeleteOfflineAgent(const std::string& id, int64_t last_heartbeat_ms) override;
  Result<LlmCall> RecordLlmCall(LlmCall call) override;
  Result<std::optional<LlmCall>> FindRecordedLlmCall(const std::string& feature_id,
                                                     const std::string& hash) override;
  Result<std::vector<LlmCall>> ListLlmCalls(const std::string& feature_id) override;
  Result<UsageTotals> FeatureUsage(const std::string& feature_id) override;
  Result<double> CostSince(int64_t since_ms) override;
  Result<std::vector<UsageRow>> UsageBreakdown(const UsageQuery& query) override;
  Result<ApiKey> CreateApiKey(ApiKey key) override;
  Result<ApiKey> FindApiKeyByHash(const std::string& key_hash) override;
  Result<std::vector<ApiKey>> ListApiKeys() override;
  Status RevokeApiKey(const std::string& id) override;
  Status TouchApiKey(const std::string& id, int64_t used_ms) override;
  Result<int64_t> CountActiveApiKeys() override;
  Status Check() override;
  Result<StoreStats> Stats() override;
  std::string Describe() const override;
  Status BackupTo(const std::string& path) override;

  // --- Memories and knowledge (pg_store_knowledge.cc) -----------------------
  Result<Memory> AddMemory(Memory memory) override;
  Result<std::vector<Memory>> FindMemories(const std::vector<std::string>& namespaces,
                                           const std::string& query, int limit) override;
  Result<Memory> GetMemory(const std::string& id) override;
  Result<std::vector<Memory>> MemoriesByLabel(const std::vector<int64_t>& labels) override;
  Result<std::vector<Memory>> ListMemories(const MemoryFilter& filter) override;
  Result<Memory> UpdateMemory(const Memory& memory) override;
  Status DeleteMemory(const std::string& id) override;
  Status TouchMemories(const std::vector<std::string>& ids) override;
  Result<std::vector<TextHit>> SearchMemoryText(const std::vector<std::string>& namespaces,
                                                const std::string& query, int limit) override;
  Status UpsertMemoryLink(const MemoryLink& link) override;
  Status UpsertMemoryLinks(const std::vector<MemoryLink>& links) override;
  Result<std::vector<MemoryLink>> MemoryLinks(const std::string& memory_id) override;
  Result<std::vector<MemoryLink>> AllMemoryLinks() override;
  Status DeleteMemoryLink(const std::string& from_id, const std::string& to_id,
                          const std::string& type) override;
  Result<KbDocument> FindDocument(const std::string& ns, const std::string& source) override;
  Result<std::vector<KbDocument>> ListDocuments(const std::string& ns) override;
  Result<std::vector<int64_t>> ReplaceDocument(KbDocument doc, std::vector<KbChunk> chunks,
                                               std::vector<int64_t>* removed) override;
  Status ReplaceDocuments(std::vector<DocumentWrite>* writes) override;
  Result<std::vector<int64_t>> DeleteDocument(const std::string& document_id) override;
  Result<std::vector<TextHit>> SearchChunkText(const std::vector<std::string>& namespaces,
                                               const std::string& query, int limit) override;
  Result<std::vector<KbChunk>> ChunksByLabel(const std::vector<int64_t>& labels) override;
  Result<std::vector<LabelledText>> ChunkTexts(int64_t after_label, int limit) override;
  Result<std::vector<LabelledText>> MemoryTexts(int64_t after_label, int limit) override;
  Result<std::vector<int64_t>> ChunkLabels() override;
  Result<std::vector<int64_t>> MemoryLabels() override;
  Result<KbCounts> CountKnowledge() override;
  Result<int64_t> KnowledgeGeneration() override;

  // --- The seam both halves use ---------------------------------------------
  // Runs fn(work) in one transaction on a pooled connection and commits when
  // fn returns ok; a non-ok result (or an exception) rolls back. fn returns
  // Status or Result<T>; Tx returns the same type. pqxx exceptions become a
  // Status whose message says `doing` and what the server reported (never the
  // password), with a hint: a missing table is FailedPrecondition ("run
  // agent-factory db migrate"), a lost server is Unavailable (host:port, "is
  // PostgreSQL running? check DATABASE_URL"). A connection found broken
  // before commit is reopened and fn is run ONCE more (so fn must only write
  // through `work` and to its own outputs, which it must reset on entry); a
  // connection lost during commit is not retried (the outcome is unknown)
  // and comes back as Unavailable saying so. fn must not call the store's
  // public methods: each borrows another connection, and kPoolSize callers
  // doing so at once would wait on each other.
  template <typename F>
  auto Tx(std::string_view doing, F&& fn) -> std::invoke_result_t<F&, pqxx::work&> {
    using R = std::invoke_result_t<F&, pqxx::work&>;
    if constexpr (std::is_same_v<R, Status>) {
      return RunTx(doing, std::function<Status(pqxx::work&)>(std::ref(fn)));
    } else {
      std::optional<R> out;
      Status s = RunTx(doing, [&](pqxx::work& w) -> Status {
        out.emplace(fn(w));
        return out->ok() ? Status::Ok() : out->status();
      });
      if (!s.ok()) return R(std::move(s));
      return std::move(*out);
    }
  }
  // The non-template core of Tx.
  Status RunTx(std::string_view doing, const std::function<Status(pqxx::work&)>& fn);

  // Maps an exception thrown while `doing` to a Status (see Tx). Public so the
  // knowledge half can map one it catches itself.
  // e.what() on one line, the password scrubbed.
  std::string Detail(const std::exception& e) const;
  Status ErrorFrom(std::string_view doing, const std::exception& e) const;

  // The store's clock (StoreOptions::now_ms, else the system clock), unix ms.
  int64_t NowMs() const;
  // The knowledge half's tables for BackupTo, after the core ones (defined in
  // pg_store_knowledge.cc).
  static const std::vector<BackupTable>& KnowledgeBackupTables();

  // "host:port" of the server, for messages (never the password).
  const std::string& Endpoint() const { return endpoint_; }

  // JSON as stored in TEXT columns: invalid UTF-8 replaced (never throws);
  // parsing gives null for empty or unparseable text.
  static std::string DumpJson(const nlohmann::json& v);
  static nlohmann::json ParseJson(const std::string& text);

 private:
  Result<std::unique_ptr<pqxx::connection>> OpenConnection() const;
  Result<std::unique_ptr<pqxx::connection>> Acquire();
  void Release(std::unique_ptr<pqxx::connection> conn);
  // Appends inside an open transaction; returns the seq (see the file comment).
  // Records in *last_feature_event the type of an event that names a feature.
  Result<int64_t> AppendEventTx(pqxx::work& w, Event event, std::string* last_feature_event);
  void UpsertAgentTx(pqxx::work& w, const AgentRecord& agent);  // checked by the caller
  // After the commit of a transaction that appended events: wakes the events
  // listener, and passes the crash point for recovery tests ("event TYPE",
  // as the SQLite store does) when one of them named a feature.
  void EventsCommitted(const std::string& last_feature_event);
  // Drops every idle connection (after one was found broken: the others
  // most likely went with the same server).
  void DropIdle();
  Result<MigrationStatus> StatusTx(pqxx::work& w);

  const std::string url_;           // as given (holds the password, if any)
  const std::string redacted_url_;  // for messages and Describe()
  std::string conn_url_;            // url_ plus a connect timeout
  std::string endpoint_;            // "host:port"
  std::string password_;            // scrubbed from any message that echoes it
  StoreOptions options_;

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;  // guarded by pool_mu_
  int open_ = 0;                                         // connections lent or idle
  uint64_t returned_ = 0;  // connections given back so far (Acquire tells a queue from a leak)

  std::mutex listener_mu_;
  std::function<void()> listener_;  // guarded by listener_mu_

  // LISTEN af_events on a connection of its own (started by the first
  // SetEventsListener with a listener): every process's appends NOTIFY at
  // commit, so the listener wakes for other processes' events too.
  void ListenLoop();
  std::thread listen_thread_;  // guarded by listener_mu_ (start only)
  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;  // wakes the reconnect wait on shutdown
};

}  // namespace af::store_internal
