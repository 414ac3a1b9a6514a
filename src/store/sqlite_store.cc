#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "af/core/dag.h"
#include "af/core/fault.h"
#include "af/core/ids.h"
#include "af/core/private_files.h"
#include "store/knowledge_rules.h"
#include "store/migrations_sqlite.h"
#include "store/store_rows.h"
#include "store/store_rules.h"

namespace af::store_internal {
namespace {

using nlohmann::json;

class SqliteStore;

// One SQLite connection and its prepared statements. The store has one
// writer connection (guarded by the store's mu_) and a small pool of read
// connections: in WAL mode readers see the last commit and never wait behind
// a writer, so the hot reads (a feature's status before every tool call, the
// SSE tail, API-key lookups) do not queue behind a long write transaction.
struct Conn {
  struct Cached {
    sqlite3_stmt* stmt;
    bool in_use;
  };
  sqlite3* db = nullptr;
  std::unordered_map<std::string, Cached> cache;

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    for (auto& [sql, cached] : cache) sqlite3_finalize(cached.stmt);
    if (db != nullptr) sqlite3_close_v2(db);
  }

  // Runs one statement that returns no rows (BEGIN, COMMIT, ROLLBACK) from
  // the statement cache: sqlite3_exec would parse it again on every read and
  // every write. Returns SQLITE_OK or the error code (sqlite3_errmsg(db)
  // says more).
  int RunCached(const char* sql) {
    auto it = cache.find(sql);
    if (it == cache.end()) {
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return rc;
      }
      it = cache.emplace(sql, Cached{stmt, false}).first;
    }
    int rc = sqlite3_step(it->second.stmt);
    sqlite3_reset(it->second.stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
  }
};

// The read connection this thread borrowed (SqliteStore::ReadScope) and its
// store; statements of that store prepared on this thread use it.
thread_local const SqliteStore* t_read_owner = nullptr;
thread_local Conn* t_read_conn = nullptr;

// A prepared statement for the duration of one use: binds left to right. A
// cached one (in_use != nullptr) is reset and handed back on scope exit; an
// uncached one (made because the cached copy was busy) is finalized.
class Stmt {
 public:
  Stmt(SqliteStore* store, sqlite3_stmt* s, bool* in_use) : store_(store), s_(s), in_use_(in_use) {}
  Stmt(Stmt&& o) noexcept
      : store_(o.store_),
        s_(std::exchange(o.s_, nullptr)),
        in_use_(std::exchange(o.in_use_, nullptr)),
        idx_(o.idx_) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt() {
    if (s_ == nullptr) return;
    if (in_use_ == nullptr) {
      sqlite3_finalize(s_);
      return;
    }
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    *in_use_ = false;
  }

  Stmt& Bind(int64_t v) {
    sqlite3_bind_int64(s_, ++idx_, v);
    return *this;
  }
  Stmt& Bind(int v) { return Bind(static_cast<int64_t>(v)); }
  Stmt& Bind(bool v) { return Bind(static_cast<int64_t>(v ? 1 : 0)); }
  Stmt& Bind(double v) {
    sqlite3_bind_double(s_, ++idx_, v);
    return *this;
  }
  Stmt& Bind(std::string_view v) {
    sqlite3_bind_text(s_, ++idx_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(const std::string& v) { return Bind(std::string_view(v)); }
  Stmt& Bind(const char* v) { return Bind(std::string_view(v)); }
  Stmt& BindJson(const json& v) { return Bind(DumpStoredJson(v)); }

  // true: a row is ready; false: done.
  Result<bool> Step(std::string_view doing);
  // Runs to completion, ignoring rows.
  Status Run(std::string_view doing) {
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, Step(doing));
      if (!row) return Status::Ok();
    }
  }

  int64_t Int(int c) const { return sqlite3_column_int64(s_, c); }
  double Real(int c) const { return sqlite3_column_double(s_, c); }
  std::string Text(int c) const {
    const unsigned char* p = sqlite3_column_text(s_, c);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<size_t>(sqlite3_column_bytes(s_, c)));
  }
  bool Bool(int c) const { return Int(c) != 0; }
  json Json(int c) const { return ParseStoredJson(Text(c)); }

 private:
  SqliteStore* store_;
  sqlite3_stmt* s_;
  bool* in_use_;
  int idx_ = 0;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, StoreOptions options)
      : path_(std::move(path)), options_(std::move(options)) {
    if (!options_.now_ms) options_.now_ms = SystemNowMs;
  }

  ~SqliteStore() override = default;

  Status Init();

  // Maps a SQLite result code to a Status naming the path and the fix.
  Status Error(int rc, std::string_view doing) const;

  Result<std::vector<Migration>> Migrate() override {
    std::lock_guard<std::mutex> lock(mu_);
    return MigrateLocked();
  }
  Result<MigrationStatus> GetMigrationStatus() override {
    ReadScope read(this);
    return StatusLocked();
  }
  Result<std::vector<Migration>> MigrationHistory() override;

  Result<Project> EnsureProject(const std::string& name) override;
  Result<std::vector<Project>> ListProjects() override;

  Result<Feature> CreateFeature(Feature feature) override;
  Result<Feature> GetFeature(const std::string& id) override {
    ReadScope read(this);
    return GetFeatureLocked(id);
  }
  Result<std::string> FeatureStatus(const std::string& id) override;
  Result<FeaturePage> ListFeatures(const FeatureFilter& filter) override;
  Result<int64_t> TransitionFeature(const std::string& id, std::optional<std::string> expected_from,
                                    const std::string& to, const std::string& reason,
                                    const json& event_data) override;

  Result<std::vector<Task>> CreateTasks(const std::string& feature_id,
                                        std::vector<Task> tasks) override;
  Result<Task> GetTask(const std::string& id) override {
    ReadScope read(this);
    return GetTaskLocked(id);
  }
  Result<std::vector<Task>> ListTasks(const std::string& feature_id) override;
  Result<int64_t> TransitionTask(const std::string& id, std::optional<std::string> expected_from,
                                 const std::string& to, const TaskUpdate& update,
                                 const json& event_data) override;

  Result<int64_t> AppendEvent(Event event) override;
  Result<std::vector<Event>> ListEvents(const EventFilter& filter) override;
  Result<int64_t> LatestEventSeq() override;
  void SetEventsListener(std::function<void()> listener) override {
    std::lock_guard<std::mutex> lock(mu_);
    events_listener_ = std::move(listener);
  }

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
  Result<StoreStats> Stats() override;

  Result<Memory> AddMemory(Memory memory) override;
  Result<std::vector<Memory>> FindMemories(const std::vector<std::string>& namespaces,
                                           const std::string& query, int limit) override;
  Result<Memory> GetMemory(const std::string& id) override;
  Result<std::vector<Memory>> MemoriesByLabel(const std::vector<int64_t>& labels) override;
  Result<std::vector<Memory>> MemoryHeadsByLabel(const std::vector<int64_t>& labels) override;
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
  Result<std::vector<int64_t>> DeleteDocument(const std::string& document_id) override;
  Status ReplaceDocuments(std::vector<DocumentWrite>* writes) override;
  Result<std::vector<TextHit>> SearchChunkText(const std::vector<std::string>& namespaces,
                                               const std::string& query, int limit) override;
  Result<std::vector<KbChunk>> ChunksByLabel(const std::vector<int64_t>& labels) override;
  Result<std::vector<LabelledText>> ChunkTexts(int64_t after_label, int limit) override;
  Result<std::vector<LabelledText>> MemoryTexts(int64_t after_label, int limit) override;
  Result<std::vector<int64_t>> ChunkLabels() override;
  Result<std::vector<int64_t>> MemoryLabels() override;
  Result<KbCounts> CountKnowledge() override;
  Result<int64_t> KnowledgeGeneration() override;

  Status Check() override;
  std::string Describe() const override { return "sqlite:" + path_; }
  Status BackupTo(const std::string& path) override;

 private:
  friend class Txn;

  // A write transaction. BEGIN IMMEDIATE takes the write lock up front so two
  // processes never deadlock upgrading read locks; the destructor rolls back
  // anything not committed, so every early return leaves no partial write.
  class Txn {
   public:
    explicit Txn(SqliteStore* store) : store_(store) {}
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    ~Txn() {
      if (active_) store_->writer_.RunCached("ROLLBACK");
      store_->durable_event_.clear();
      store_->appended_ = false;
    }
    Status Begin() {
      AF_RETURN_IF_ERROR(store_->ExecCached("BEGIN IMMEDIATE", "starting a write transaction"));
      active_ = true;
      return Status::Ok();
    }
    Status Commit() {
      AF_RETURN_IF_ERROR(store_->ExecCached("COMMIT", "committing"));
      active_ = false;
      store_->EventDurable();
      return Status::Ok();
    }

   private:
    SqliteStore* store_;
    bool active_ = false;
  };

  // A feature's event (and the change it records) just became durable: a
  // crash point for recovery tests (af/core/fault.h). Caller holds mu_.
  // Also announces committed events to the listener (SetEventsListener).
  void EventDurable() {
    if (std::exchange(appended_, false) && events_listener_) events_listener_();
    if (durable_event_.empty()) return;
    fault::CrashPoint("event " + std::exchange(durable_event_, {}));
  }
  std::string durable_event_;              // type of the feature event not yet committed; mu_
  bool appended_ = false;                  // an event was appended and not yet committed; mu_
  std::function<void()> events_listener_;  // mu_

  int64_t Now() const { return options_.now_ms(); }
  Status Exec(const char* sql, std::string_view doing);
  // Exec for one statement without rows, prepared once per connection.
  Status ExecCached(const char* sql, std::string_view doing);
  Result<Stmt> Prepare(const std::string& sql);

  // The *Locked helpers expect mu_ held by the caller, or (the reading ones)
  // a ReadScope on the caller's thread.
  Result<bool> TableExistsLocked(const char* name);
  Result<std::vector<Migration>> AppliedLocked();
  Result<MigrationStatus> StatusLocked();
  Result<std::vector<Migration>> MigrateLocked();
  Status EnsureProjectLocked(const std::string& name, int64_t now);
  Result<Feature> GetFeatureLocked(const std::string& id);
  Result<Task> GetTaskLocked(const std::string& id);
  Result<int64_t> AppendEventLocked(Event event);
  Status UpsertAgentLocked(const AgentRecord& agent);     // checked by the caller
  Status UpsertMemoryLinkLocked(const MemoryLink& link);  // checked; in a transaction
  Result<Memory> GetMemoryLocked(const std::string& id);
  Result<int64_t> NextMemoryLabelLocked();
  Status BumpGenerationLocked();
  Result<std::vector<int64_t>> DeleteDocumentLocked(const std::string& document_id);
  Status ReplaceDocumentLocked(int64_t now, DocumentWrite* w);
  // The FTS5 expression searching `words` (see AffordableWords), with the
  // term statistics of `vocab`.
  Result<std::string> MatchLocked(const char* vocab, std::vector<std::string> words);
  // Each word with the number of rows of `vocab`'s table holding it (0 when
  // none), in the order given; cached until the knowledge generation moves.
  Result<std::vector<std::pair<std::string, int64_t>>> TermRowsLocked(
      const char* vocab, std::vector<std::string> words);
  Result<std::vector<int64_t>> LabelsLocked(const std::string& sql, std::string_view doing);
  // The rows of `sql` (a search ending with its WHERE clause) that the
  // newest `scored` matches give: all of them when there are no more.
  Result<std::vector<TextHit>> NewestScoredLocked(const std::string& sql, const char* rowid,
                                                  const std::vector<std::string>& namespaces,
                                                  const std::string& match, int scored);
  Result<std::vector<TextHit>> HitsLocked(const std::string& sql,
                                          const std::vector<std::string>& namespaces,
                                          const std::string& match, int limit);

  // Reads in one transaction on a borrowed read connection (a consistent
  // snapshot across the method's statements). Without read connections (an
  // in-memory database is private to its connection) it takes mu_ and reads
  // on the writer instead.
  class ReadScope {
   public:
    explicit ReadScope(SqliteStore* store);
    ~ReadScope();
    ReadScope(const ReadScope&) = delete;
    ReadScope& operator=(const ReadScope&) = delete;

   private:
    SqliteStore* store_;
    std::unique_ptr<Conn> conn_;
    std::unique_lock<std::mutex> writer_lock_;
  };
  // An idle read connection, a new one while fewer than kMaxReaders are open,
  // or null (when none can be opened: the caller reads on the writer).
  std::unique_ptr<Conn> BorrowReader();
  void ReturnReader(std::unique_ptr<Conn> conn);
  // The connection statements go to on this thread: its borrowed reader, or
  // the writer.
  Conn& Current() const {
    return t_read_owner == this && t_read_conn != nullptr ? *t_read_conn : writer_;
  }

  std::mutex mu_;  // guards writer_: held for the whole of every public call that writes
  const std::string path_;
  StoreOptions options_;
  mutable Conn writer_;
  // Read connections, opened on demand (none for ":memory:").
  static constexpr int kMaxReaders = 4;
  std::mutex readers_mu_;
  std::condition_variable readers_cv_;
  std::vector<std::unique_ptr<Conn>> idle_readers_;  // readers_mu_
  int open_readers_ = 0;                             // readers_mu_
  // Rows per full-text term ("<vocab table>:<term>"), as read at knowledge
  // generation df_generation_ (see TermRowsLocked). Guarded by mu_.
  static constexpr size_t kMaxCachedTerms = 100000;
  static constexpr int64_t kTermCountGenerations = 64;
  std::unordered_map<std::string, int64_t> df_cache_;
  int64_t df_generation_ = -1;
};

Result<bool> Stmt::Step(std::string_view doing) {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return store_->Error(rc, doing);
}

Status SqliteStore::Error(int rc, std::string_view doing) const {
  sqlite3* conn = Current().db;
  std::string detail = conn != nullptr ? sqlite3_errmsg(conn) : sqlite3_errstr(rc);
  std::string what = std::string(doing) + ": ";
  std::string db = "database " + path_;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Unavailable(what + db + " stayed locked for more than " +
                             std::to_string(options_.busy_timeout.count()) + " ms (" + detail + ")",
                         "another process is writing to it; retry, or raise the store busy "
                         "timeout");
    case SQLITE_NOTADB:
      return FailedPrecondition(what + path_ + " is not a SQLite database (" + detail + ")",
                                "move the file aside or point DATABASE_URL at another path; if it "
                                "held your data, restore a backup: copy it over this file while "
                                "agent-factory is stopped");
    case SQLITE_CORRUPT:
      return FailedPrecondition(what + db + " is corrupt (" + detail + ")",
                                "restore a backup (copy it over this file while agent-factory is "
                                "stopped), or move the file aside to start empty");
    case SQLITE_CANTOPEN:
      return Unavailable(what + "cannot open " + db + " (" + detail + ")",
                         "check that its directory exists and is writable, or choose another "
                         "location with --data-dir / AF_DATA_DIR / DATABASE_URL");
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return FailedPrecondition(what + db + " is not writable (" + detail + ")",
                                "fix the permissions of the file and its directory");
    case SQLITE_FULL:
      return ResourceExhausted(what + "disk full writing " + db, "free some disk space");
    case SQLITE_IOERR:
      return Unavailable(what + "I/O error on " + db + " (" + detail + ")",
                         "check the disk and the file system holding it");
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return AlreadyExists(what + "already exists (" + detail + ")",
                             "use a different id, or leave it empty to get a new one");
      }
      return InvalidArgument(what + detail, "refer only to records that exist");
    case SQLITE_ERROR:
      if (detail.find("no such table") != std::string::npos) {
        return FailedPrecondition(what + db + " is not migrated (" + detail + ")",
                                  "run 'agent-factory db migrate'");
      }
      break;
    default:
      break;
  }
  return Internal(what + detail + " (" + db + ")", "this is a bug; please report it");
}

Status SqliteStore::Exec(const char* sql, std::string_view doing) {
  int rc = sqlite3_exec(Current().db, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::Ok() : Error(rc, doing);
}

Status SqliteStore::ExecCached(const char* sql, std::string_view doing) {
  int rc = Current().RunCached(sql);
  return rc == SQLITE_OK ? Status::Ok() : Error(rc, doing);
}

Result<Stmt> SqliteStore::Prepare(const std::string& sql) {
  Conn& conn = Current();
  auto it = conn.cache.find(sql);
  if (it != conn.cache.end() && !it->second.in_use) {
    it->second.in_use = true;
    return Stmt(this, it->second.stmt, &it->second.in_use);
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(conn.db, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Error(rc, "preparing a query");
  }
  // A statement still running further up the stack must not be reset under
  // it: a nested use of the same SQL gets its own one-off statement.
  if (it != conn.cache.end()) return Stmt(this, stmt, nullptr);
  Conn::Cached& cached = conn.cache[sql];  // node-based map: the address stays valid
  cached = {stmt, true};
  return Stmt(this, stmt, &cached.in_use);
}

Status SqliteStore::Init() {
  namespace fs = std::filesystem;
  if (path_ != ":memory:") {
    fs::path parent = fs::path(path_).parent_path();
    std::error_code ec;
    // Private: the database holds key hashes and every feature's history.
    if (!parent.empty()) ec = CreatePrivateDirectories(parent);
    if (ec) {
      return Unavailable("cannot create directory " + parent.string() + " for database " + path_ +
                             ": " + ec.message(),
                         "choose a writable data directory (--data-dir / AF_DATA_DIR) or fix "
                         "the permissions");
    }
    if (fs::is_directory(path_, ec)) {
      return FailedPrecondition(
          "database path " + path_ + " is a directory",
          "point DATABASE_URL at a file, e.g. sqlite:" + path_ + "/agent-factory.db");
    }
    // Made 0600 before SQLite opens it: SQLite gives its -wal and -shm files
    // the permissions of the database file.
    (void)CreatePrivateFile(path_);
  }
  // Without memory statistics (nothing here reads them) SQLite's allocator
  // takes no process-wide mutex, which the writer's and the readers' threads
  // were seen waiting on. Possible only before SQLite initializes; later
  // calls are refused and harmless.
  static const int no_memstatus = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)no_memstatus;
  // NOMUTEX: this object's own mutex already serialises every use of the connection.
  int rc =
      sqlite3_open_v2(path_.c_str(), &writer_.db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "opening the store");
  sqlite3_extended_result_codes(writer_.db, 1);
  sqlite3_busy_timeout(writer_.db, static_cast<int>(options_.busy_timeout.count()));

  // The first statement that reads the file is where "not a database" and
  // corruption show up, so it carries the wording of the open.
  AF_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL", "opening the store"));
  AF_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON", "opening the store"));
  AF_RETURN_IF_ERROR(Exec("PRAGMA synchronous=NORMAL", "opening the store"));
  AF_RETURN_IF_ERROR(Exec("SELECT count(*) FROM sqlite_master", "opening the store"));

  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(MigrationStatus status, StatusLocked());
  if (options_.migrate) {
    AF_RETURN_IF_ERROR(CheckSchemaNotNewer(status).WithContext("database " + path_));
    AF_RETURN_IF_ERROR(MigrateLocked().status());
  }
  return Status::Ok();
}

// --- Read connections -------------------------------------------------------

std::unique_ptr<Conn> SqliteStore::BorrowReader() {
  if (path_ == ":memory:") return nullptr;
  {
    std::unique_lock lock(readers_mu_);
    readers_cv_.wait(lock,
                     [this] { return !idle_readers_.empty() || open_readers_ < kMaxReaders; });
    if (!idle_readers_.empty()) {
      auto conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return conn;
    }
    ++open_readers_;
  }
  auto conn = std::make_unique<Conn>();
  // query_only: a bug that writes through a reader fails instead of taking
  // the write lock behind the writer's back.
  int rc = sqlite3_open_v2(path_.c_str(), &conn->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(conn->db, 1);
    sqlite3_busy_timeout(conn->db, static_cast<int>(options_.busy_timeout.count()));
    rc = sqlite3_exec(conn->db, "PRAGMA query_only=1", nullptr, nullptr, nullptr);
  }
  if (rc == SQLITE_OK) return conn;
  std::lock_guard lock(readers_mu_);
  --open_readers_;
  readers_cv_.notify_one();
  return nullptr;
}

void SqliteStore::ReturnReader(std::unique_ptr<Conn> conn) {
  std::lock_guard lock(readers_mu_);
  idle_readers_.push_back(std::move(conn));
  readers_cv_.notify_one();
}

SqliteStore::ReadScope::ReadScope(SqliteStore* store)
    : store_(store), conn_(store->BorrowReader()) {
  if (conn_ != nullptr && conn_->RunCached("BEGIN") == SQLITE_OK) {
    t_read_owner = store_;
    t_read_conn = conn_.get();
    return;
  }
  if (conn_ != nullptr) store_->ReturnReader(std::move(conn_));
  writer_lock_ = std::unique_lock(store_->mu_);
}

SqliteStore::ReadScope::~ReadScope() {
  if (conn_ == nullptr) return;
  t_read_owner = nullptr;
  t_read_conn = nullptr;
  // Ends the snapshot, so the WAL can be checkpointed past it.
  conn_->RunCached("COMMIT");
  store_->ReturnReader(std::move(conn_));
}

// --- Migrations -------------------------------------------------------------

Result<bool> SqliteStore::TableExistsLocked(const char* name) {
  AF_ASSIGN_OR_RETURN(Stmt s,
                      Prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"));
  s.Bind(name);
  return s.Step("reading the schema");
}

Result<std::vector<Migration>> SqliteStore::AppliedLocked() {
  std::vector<Migration> out;
  AF_ASSIGN_OR_RETURN(bool exists, TableExistsLocked("schema_migrations"));
  if (!exists) return out;
  AF_ASSIGN_OR_RETURN(
      Stmt s, Prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version"));
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading migration history"));
    if (!row) break;
    out.push_back({static_cast<int>(s.Int(0)), s.Text(1), s.Int(2)});
  }
  return out;
}

Result<MigrationStatus> SqliteStore::StatusLocked() {
  AF_ASSIGN_OR_RETURN(std::vector<Migration> applied, AppliedLocked());
  MigrationStatus st;
  std::set<int> done;
  for (const Migration& m : applied) {
    done.insert(m.version);
    st.current_version = std::max(st.current_version, m.version);
  }
  for (const SqlMigration& m : SqliteMigrations()) {
    st.latest_version = std::max(st.latest_version, m.version);
    if (done.count(m.version) == 0) st.pending.push_back({m.version, m.name, 0});
  }
  return st;
}

Result<std::vector<Migration>> SqliteStore::MigrateLocked() {
  AF_RETURN_IF_ERROR(
      Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
           "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
           "creating schema_migrations"));
  std::vector<Migration> applied_now;
  for (const SqlMigration& m : SqliteMigrations()) {
    std::string doing = "applying migration " + std::to_string(m.version) + " (" + m.name + ")";
    Txn txn(this);
    AF_RETURN_IF_ERROR(txn.Begin());
    // Checked inside the write transaction: two processes migrating at once
    // serialise here and the second finds the work done.
    {
      AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT 1 FROM schema_migrations WHERE version = ?"));
      s.Bind(m.version);
      AF_ASSIGN_OR_RETURN(bool done, s.Step(doing));
      if (done) continue;
    }
    AF_RETURN_IF_ERROR(Exec(m.sql, doing));
    Migration rec{m.version, m.name, Now()};
    {
      AF_ASSIGN_OR_RETURN(
          Stmt s,
          Prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"));
      s.Bind(rec.version).Bind(rec.name).Bind(rec.applied_ms);
      AF_RETURN_IF_ERROR(s.Run(doing));
    }
    AF_RETURN_IF_ERROR(txn.Commit());
    applied_now.push_back(std::move(rec));
  }
  AF_ASSIGN_OR_RETURN(MigrationStatus st, StatusLocked());
  AF_RETURN_IF_ERROR(CheckSchemaNotNewer(st).WithContext("database " + path_));
  return applied_now;
}

Result<std::vector<Migration>> SqliteStore::MigrationHistory() {
  ReadScope read(this);
  return AppliedLocked();
}

// --- Projects ---------------------------------------------------------------

Status SqliteStore::EnsureProjectLocked(const std::string& name, int64_t now) {
  AF_RETURN_IF_ERROR(CheckProjectName(name));
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO projects (name, created_ms) VALUES (?, ?) "
                                      "ON CONFLICT (name) DO NOTHING"));
  s.Bind(name).Bind(now);
  return s.Run("creating project " + Quote(name));
}

Result<Project> SqliteStore::EnsureProject(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_RETURN_IF_ERROR(EnsureProjectLocked(name, Now()));
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT name, created_ms FROM projects WHERE name = ?"));
  s.Bind(name);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading project " + Quote(name)));
  if (!row) return Internal("project " + Quote(name) + " vanished right after being created");
  return Project{s.Text(0), s.Int(1)};
}

Result<std::vector<Project>> SqliteStore::ListProjects() {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT name, created_ms FROM projects ORDER BY name"));
  std::vector<Project> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing projects"));
    if (!row) return out;
    out.push_back({s.Text(0), s.Int(1)});
  }
}

// --- Events -----------------------------------------------------------------

Result<int64_t> SqliteStore::AppendEventLocked(Event e) {
  AF_RETURN_IF_ERROR(CheckEvent(e));
  if (e.ts_ms == 0) e.ts_ms = Now();
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO events (type, feature_id, task_id, agent, "
                                      "ts_ms, data) VALUES (?, ?, ?, ?, ?, ?)"));
  s.Bind(e.type).Bind(e.feature_id).Bind(e.task_id).Bind(e.agent).Bind(e.ts_ms).BindJson(e.data);
  AF_RETURN_IF_ERROR(s.Run("appending event " + Quote(e.type)));
  if (!e.feature_id.empty()) durable_event_ = e.type;
  appended_ = true;
  // Safe: mu_ is held, so no other insert on this connection can interleave.
  return static_cast<int64_t>(sqlite3_last_insert_rowid(writer_.db));
}

Result<int64_t> SqliteStore::AppendEvent(Event event) {
  std::lock_guard<std::mutex> lock(mu_);
  auto seq = AppendEventLocked(std::move(event));  // its own (autocommit) transaction
  EventDurable();
  return seq;
}

Result<std::vector<Event>> SqliteStore::ListEvents(const EventFilter& filter) {
  AF_RETURN_IF_ERROR(CheckEventFilter(filter));
  ReadScope read(this);
  std::string sql = "SELECT " AF_EVENT_COLS " FROM events WHERE seq > ?";
  if (filter.feature_id) sql += " AND feature_id = ?";
  sql += " ORDER BY seq LIMIT ?";
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
  s.Bind(filter.after_seq);
  if (filter.feature_id) s.Bind(*filter.feature_id);
  s.Bind(filter.limit);
  std::vector<Event> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing events"));
    if (!row) return out;
    out.push_back(ReadEvent(s));
  }
}

Result<int64_t> SqliteStore::LatestEventSeq() {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT COALESCE(MAX(seq), 0) FROM events"));
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading the latest event"));
  return row ? s.Int(0) : int64_t{0};
}

// --- Features ---------------------------------------------------------------

Result<Feature> SqliteStore::GetFeatureLocked(const std::string& id) {
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_FEATURE_COLS " FROM features WHERE id = ?"));
  s.Bind(id);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading feature " + id));
  if (!row) {
    return NotFound("feature " + id + " not found",
                    "list features with 'agent-factory feature list'");
  }
  return ReadFeature(s);
}

Result<std::string> SqliteStore::FeatureStatus(const std::string& id) {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT status FROM features WHERE id = ?"));
  s.Bind(id);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading feature " + id));
  if (!row) return GetFeatureLocked(id).status();  // its "not found"
  return s.Text(0);
}

Result<Feature> SqliteStore::CreateFeature(Feature f) {
  AF_RETURN_IF_ERROR(CheckNewFeature(f));
  if (f.id.empty()) f.id = NewId("f");
  std::lock_guard<std::mutex> lock(mu_);
  f.created_ms = f.updated_ms = Now();
  std::string doing = "creating feature " + f.id;
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  AF_RETURN_IF_ERROR(EnsureProjectLocked(f.project, f.created_ms));
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO features (" AF_FEATURE_COLS
                                        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    s.Bind(f.id).Bind(f.project).Bind(f.title).Bind(f.status).Bind(f.priority);
    s.BindJson(f.request).Bind(f.reason).Bind(f.created_ms).Bind(f.updated_ms);
    AF_RETURN_IF_ERROR(s.Run(doing));
  }
  AF_RETURN_IF_ERROR(AppendEventLocked(FeatureCreatedEvent(f)).status());
  AF_RETURN_IF_ERROR(txn.Commit());
  return f;
}

Result<FeaturePage> SqliteStore::ListFeatures(const FeatureFilter& filter) {
  AF_RETURN_IF_ERROR(CheckFeatureFilter(filter));
  std::string where = " WHERE 1 = 1";
  if (filter.status) where += " AND status = ?";
  if (filter.project) where += " AND project = ?";
  ReadScope read(this);
  FeaturePage page;
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT COUNT(*) FROM features" + where));
    if (filter.status) s.Bind(*filter.status);
    if (filter.project) s.Bind(*filter.project);
    AF_ASSIGN_OR_RETURN(bool row, s.Step("counting features"));
    page.total = row ? s.Int(0) : 0;
  }
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_FEATURE_COLS " FROM features" + where +
                                      " ORDER BY created_ms DESC, id DESC LIMIT ? OFFSET ?"));
  if (filter.status) s.Bind(*filter.status);
  if (filter.project) s.Bind(*filter.project);
  s.Bind(filter.limit).Bind(filter.offset);
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing features"));
    if (!row) return page;
    page.features.push_back(ReadFeature(s));
  }
}

Result<int64_t> SqliteStore::TransitionFeature(const std::string& id,
                                               std::optional<std::string> expected_from,
                                               const std::string& to, const std::string& reason,
                                               const json& event_data) {
  AF_RETURN_IF_ERROR(CheckFeatureTransition(expected_from, to, event_data));
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  AF_ASSIGN_OR_RETURN(Feature cur, GetFeatureLocked(id));
  AF_RETURN_IF_ERROR(CheckExpectedStatus("feature", id, cur.status, expected_from, to));
  if (cur.status == to) return int64_t{0};
  int64_t now = Now();
  {
    AF_ASSIGN_OR_RETURN(
        Stmt s, Prepare("UPDATE features SET status = ?, reason = ?, updated_ms = ? WHERE id = ?"));
    s.Bind(to).Bind(reason).Bind(now).Bind(id);
    AF_RETURN_IF_ERROR(s.Run("updating feature " + id));
  }
  AF_ASSIGN_OR_RETURN(int64_t seq, AppendEventLocked(FeatureStatusEvent(id, cur.status, to, reason,
                                                                        now, event_data)));
  AF_RETURN_IF_ERROR(txn.Commit());
  return seq;
}

// --- Tasks ------------------------------------------------------------------

Result<Task> SqliteStore::GetTaskLocked(const std::string& id) {
  Task t;
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_TASK_COLS " FROM tasks WHERE id = ?"));
    s.Bind(id);
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading task " + id));
    if (!row) {
      return NotFound("task " + id + " not found",
                      "list a feature's tasks with 'agent-factory feature status ID'");
    }
    t = ReadTask(s);
  }
  AF_ASSIGN_OR_RETURN(
      Stmt s,
      Prepare("SELECT depends_on FROM task_dependencies WHERE task_id = ? ORDER BY position"));
  s.Bind(id);
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading dependencies of task " + id));
    if (!row) return t;
    t.dependencies.push_back(s.Text(0));
  }
}

Result<std::vector<Task>> SqliteStore::CreateTasks(const std::string& feature_id,
                                                   std::vector<Task> tasks) {
  AF_ASSIGN_OR_RETURN(std::vector<DagNode> graph, PrepareTaskBatch(&tasks));
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  AF_RETURN_IF_ERROR(GetFeatureLocked(feature_id).status());
  std::set<std::string> existing;
  int64_t position = 0;
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT id, position FROM tasks WHERE feature_id = ?"));
    s.Bind(feature_id);
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, s.Step("reading tasks of feature " + feature_id));
      if (!row) break;
      existing.insert(s.Text(0));
      position = std::max(position, s.Int(1) + 1);
    }
  }
  AF_RETURN_IF_ERROR(CheckDependenciesKnown(graph, existing, feature_id));
  int64_t now = Now();
  for (Task& t : tasks) {
    t.feature_id = feature_id;
    t.created_ms = t.updated_ms = now;
    AF_ASSIGN_OR_RETURN(Stmt s,
                        Prepare("INSERT INTO tasks (" AF_TASK_COLS
                                ", position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    s.Bind(t.id).Bind(feature_id).Bind(t.title).Bind(t.description).Bind(t.role).Bind(t.status);
    s.BindJson(json(t.files)).Bind(t.attempts).Bind(t.assigned_agent).BindJson(t.result);
    s.Bind(t.created_ms).Bind(t.updated_ms).Bind(position++);
    AF_RETURN_IF_ERROR(s.Run("creating task " + t.id));
  }
  // After all inserts: a dependency's foreign key needs its target row present.
  for (const Task& t : tasks) {
    int64_t dep_pos = 0;
    for (const std::string& d : t.dependencies) {
      AF_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO task_dependencies (task_id, depends_on, "
                                          "position) VALUES (?, ?, ?)"));
      s.Bind(t.id).Bind(d).Bind(dep_pos++);
      AF_RETURN_IF_ERROR(s.Run("recording dependencies of task " + t.id));
    }
    AF_RETURN_IF_ERROR(AppendEventLocked(TaskCreatedEvent(t, now)).status());
  }
  AF_RETURN_IF_ERROR(txn.Commit());
  return tasks;
}

Result<std::vector<Task>> SqliteStore::ListTasks(const std::string& feature_id) {
  ReadScope read(this);
  AF_RETURN_IF_ERROR(GetFeatureLocked(feature_id).status());
  std::vector<Task> out;
  std::map<std::string, size_t> at;
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_TASK_COLS
                                        " FROM tasks WHERE feature_id = ? ORDER BY position"));
    s.Bind(feature_id);
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, s.Step("listing tasks of feature " + feature_id));
      if (!row) break;
      out.push_back(ReadTask(s));
      at[out.back().id] = out.size() - 1;
    }
  }
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT d.task_id, d.depends_on FROM task_dependencies d "
                                      "JOIN tasks t ON t.id = d.task_id WHERE t.feature_id = ? "
                                      "ORDER BY d.task_id, d.position"));
  s.Bind(feature_id);
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing task dependencies of feature " + feature_id));
    if (!row) return out;
    auto it = at.find(s.Text(0));
    if (it != at.end()) out[it->second].dependencies.push_back(s.Text(1));
  }
}

Result<int64_t> SqliteStore::TransitionTask(const std::string& id,
                                            std::optional<std::string> expected_from,
                                            const std::string& to, const TaskUpdate& update,
                                            const json& event_data) {
  AF_RETURN_IF_ERROR(CheckTaskTransition(expected_from, to, update, event_data));
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  AF_ASSIGN_OR_RETURN(Task cur, GetTaskLocked(id));
  AF_RETURN_IF_ERROR(CheckExpectedStatus("task", id, cur.status, expected_from, to));
  std::string from = cur.status;
  cur.status = to;
  if (update.assigned_agent) cur.assigned_agent = *update.assigned_agent;
  if (update.result) cur.result = *update.result;
  cur.attempts += update.add_attempts;
  int64_t now = Now();
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE tasks SET status = ?, attempts = ?, "
                                        "assigned_agent = ?, result = ?, updated_ms = ? "
                                        "WHERE id = ?"));
    s.Bind(cur.status).Bind(cur.attempts).Bind(cur.assigned_agent).BindJson(cur.result);
    s.Bind(now).Bind(id);
    AF_RETURN_IF_ERROR(s.Run("updating task " + id));
  }
  int64_t seq = 0;
  if (from != to) {
    AF_ASSIGN_OR_RETURN(seq, AppendEventLocked(TaskStatusEvent(cur, from, now, event_data)));
  }
  AF_RETURN_IF_ERROR(txn.Commit());
  return seq;
}

// --- Agents -----------------------------------------------------------------

Status SqliteStore::UpsertAgent(const AgentRecord& a) {
  AF_RETURN_IF_ERROR(CheckAgent(a));
  std::lock_guard<std::mutex> lock(mu_);
  return UpsertAgentLocked(a);
}

Result<int64_t> SqliteStore::UpsertAgentWithEvent(const AgentRecord& a, Event event) {
  AF_RETURN_IF_ERROR(CheckAgent(a));
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  AF_RETURN_IF_ERROR(UpsertAgentLocked(a));
  AF_ASSIGN_OR_RETURN(int64_t seq, AppendEventLocked(std::move(event)));
  AF_RETURN_IF_ERROR(txn.Commit());  // announces the event
  return seq;
}

Status SqliteStore::UpsertAgentLocked(const AgentRecord& a) {
  AF_ASSIGN_OR_RETURN(
      Stmt s,
      Prepare("INSERT INTO agents (" AF_AGENT_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
              "ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = excluded.state, "
              "last_heartbeat_ms = excluded.last_heartbeat_ms, "
              "current_task = excluded.current_task, counters = excluded.counters, "
              "host = excluded.host, pid = excluded.pid"));
  s.Bind(a.id).Bind(a.role).Bind(a.state).Bind(a.last_heartbeat_ms).Bind(a.current_task);
  s.BindJson(a.counters).Bind(a.host).Bind(a.pid);
  return s.Run("recording agent " + a.id);
}

Result<AgentRecord> SqliteStore::GetAgent(const std::string& id) {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_AGENT_COLS " FROM agents WHERE id = ?"));
  s.Bind(id);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading agent " + id));
  if (!row)
    return NotFound("agent " + id + " not found", "list agents with 'agent-factory agents'");
  return ReadAgent(s);
}

Result<std::vector<AgentRecord>> SqliteStore::ListAgents() {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_AGENT_COLS " FROM agents ORDER BY id"));
  std::vector<AgentRecord> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing agents"));
    if (!row) return out;
    out.push_back(ReadAgent(s));
  }
}

Result<bool> SqliteStore::MarkAgentOffline(const std::string& id, int64_t last_heartbeat_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE agents SET state = 'offline', current_task = '' "
                                      "WHERE id = ? AND state <> 'offline' "
                                      "AND last_heartbeat_ms = ?"));
  s.Bind(id).Bind(last_heartbeat_ms);
  AF_RETURN_IF_ERROR(s.Run("marking agent " + id + " offline"));
  if (sqlite3_changes(writer_.db) > 0) return true;
  AF_ASSIGN_OR_RETURN(Stmt q, Prepare("SELECT 1 FROM agents WHERE id = ?"));
  q.Bind(id);
  AF_ASSIGN_OR_RETURN(bool row, q.Step("reading agent " + id));
  if (!row)
    return NotFound("agent " + id + " not found", "list agents with 'agent-factory agents'");
  return false;
}

Result<bool> SqliteStore::DeleteOfflineAgent(const std::string& id, int64_t last_heartbeat_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("DELETE FROM agents WHERE id = ? AND state = 'offline' "
                                      "AND last_heartbeat_ms = ?"));
  s.Bind(id).Bind(last_heartbeat_ms);
  AF_RETURN_IF_ERROR(s.Run("deleting agent " + id));
  return sqlite3_changes(writer_.db) > 0;
}

// --- Memories ---------------------------------------------------------------
// (The rules every backend shares are in knowledge_rules.h.)

// The FTS5 expression matching rows that hold any of `words` (from
// QueryWords): each quoted as an FTS5 string, so it cannot be anything but a
// search for its words.
std::string OrExpression(const std::vector<std::string>& words) {
  std::string expr;
  for (const auto& w : words) {
    if (!expr.empty()) expr += " OR ";
    expr += "\"" + w + "\"";  // no '"' can be inside: quotes separate words
  }
  return expr;
}

// The FTS5 expression matching rows that hold every one of `words`.
std::string AndExpression(const std::vector<std::string>& words) {
  std::string expr;
  for (const auto& w : words) {
    if (!expr.empty()) expr += " AND ";
    expr += "\"" + w + "\"";
  }
  return expr;
}

std::string Placeholders(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += i ? ", ?" : "?";
  return out;
}

Result<int64_t> SqliteStore::NextMemoryLabelLocked() {
  int64_t label = 0;
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT next_memory_label FROM kb_meta WHERE id = 1"));
    AF_ASSIGN_OR_RETURN(bool row, s.Step("assigning a memory label"));
    if (!row) return Internal("kb_meta has no row", "the database was edited by hand; restore it");
    label = s.Int(0);
  }
  AF_ASSIGN_OR_RETURN(Stmt u, Prepare("UPDATE kb_meta SET next_memory_label = ? WHERE id = 1"));
  u.Bind(label + 1);
  AF_RETURN_IF_ERROR(u.Run("assigning a memory label"));
  return label;
}

Status SqliteStore::BumpGenerationLocked() {
  AF_ASSIGN_OR_RETURN(Stmt s,
                      Prepare("UPDATE kb_meta SET generation = generation + 1 WHERE id = 1"));
  return s.Run("raising the knowledge generation");
}

Result<Memory> SqliteStore::AddMemory(Memory m) {
  AF_RETURN_IF_ERROR(CheckMemory(m));
  if (m.ns.empty()) m.ns = "global";
  if (m.id.empty()) m.id = NewId("mem");
  std::lock_guard<std::mutex> lock(mu_);
  if (m.created_ms == 0) m.created_ms = Now();
  m.updated_ms = m.created_ms;
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT 1 FROM memories WHERE id = ?"));
    s.Bind(m.id);
    AF_ASSIGN_OR_RETURN(bool taken, s.Step("storing memory " + m.id));
    if (taken) {
      return AlreadyExists("memory " + m.id + " already exists",
                           "use UpdateMemory to change it, or leave the id empty to get a new one");
    }
  }
  AF_ASSIGN_OR_RETURN(m.vector_label, NextMemoryLabelLocked());
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO memories (" AF_MEMORY_COLS
                                        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    s.Bind(m.id).Bind(m.ns).Bind(m.content).Bind(m.summary).Bind(m.type).Bind(m.importance);
    s.BindJson(json(m.tags)).BindJson(m.source).Bind(m.created_ms).Bind(m.updated_ms);
    s.Bind(m.accessed_ms).Bind(m.access_count).Bind(m.archived).Bind(m.superseded_by);
    s.Bind(m.vector_label);
    AF_RETURN_IF_ERROR(s.Run("storing memory " + m.id));
  }
  AF_RETURN_IF_ERROR(BumpGenerationLocked());
  AF_RETURN_IF_ERROR(txn.Commit());
  return m;
}

Result<Memory> SqliteStore::GetMemoryLocked(const std::string& id) {
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_MEMORY_COLS " FROM memories WHERE id = ?"));
  s.Bind(id);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading memory " + id));
  if (!row) {
    return NotFound("memory " + id + " not found",
                    "it may have been deleted; list memories with 'agent-factory memory list'");
  }
  return ReadMemory(s);
}

Result<Memory> SqliteStore::GetMemory(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  return GetMemoryLocked(id);
}

Result<std::vector<Memory>> SqliteStore::MemoriesByLabel(const std::vector<int64_t>& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Memory> out;
  out.reserve(labels.size());
  for (int64_t label : labels) {
    AF_ASSIGN_OR_RETURN(Stmt s,
                        Prepare("SELECT " AF_MEMORY_COLS " FROM memories WHERE vector_label = ?"));
    s.Bind(label);
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading memories by label"));
    if (row) out.push_back(ReadMemory(s));
  }
  return out;
}

Result<std::vector<Memory>> SqliteStore::MemoryHeadsByLabel(const std::vector<int64_t>& labels) {
  // On a read connection: a recall weighs hundreds of candidates, and need
  // not wait behind a writer for it.
  ReadScope read(this);
  // One statement for all of them (the labels as a JSON array), then put in
  // the order asked: a statement per label cost more than the lookups.
  AF_ASSIGN_OR_RETURN(
      Stmt s, Prepare("SELECT id, namespace, type, importance, tags, created_ms, updated_ms, "
                      "accessed_ms, access_count, archived, superseded_by, vector_label "
                      "FROM memories WHERE vector_label IN (SELECT value FROM json_each(?))"));
  s.Bind(json(labels).dump());
  std::unordered_map<int64_t, Memory> found;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading memories by label"));
    if (!row) break;
    Memory m;
    m.id = s.Text(0);
    m.ns = s.Text(1);
    m.type = s.Text(2);
    m.importance = static_cast<int>(s.Int(3));
    // Most memories have no tags: no JSON to parse for them.
    if (std::string tags = s.Text(4); tags != "[]") m.tags = StringList(ParseStoredJson(tags));
    m.created_ms = s.Int(5);
    m.updated_ms = s.Int(6);
    m.accessed_ms = s.Int(7);
    m.access_count = s.Int(8);
    m.archived = s.Bool(9);
    m.superseded_by = s.Text(10);
    m.vector_label = s.Int(11);
    found.emplace(m.vector_label, std::move(m));
  }
  std::vector<Memory> out;
  out.reserve(found.size());
  for (int64_t label : labels)
    if (auto it = found.find(label); it != found.end()) out.push_back(it->second);
  return out;
}

Result<std::vector<Memory>> SqliteStore::ListMemories(const MemoryFilter& f) {
  AF_RETURN_IF_ERROR(CheckMemoryFilter(f));
  std::string sql = "SELECT " AF_MEMORY_COLS " FROM memories WHERE 1 = 1";
  bool by_ns = !AllNamespaces(f.namespaces);
  if (by_ns) sql += " AND namespace IN (" + Placeholders(f.namespaces.size()) + ")";
  if (!f.types.empty()) sql += " AND type IN (" + Placeholders(f.types.size()) + ")";
  for (size_t i = 0; i < f.tags.size(); ++i) {
    sql += " AND EXISTS (SELECT 1 FROM json_each(memories.tags) WHERE json_each.value = ?)";
  }
  if (!f.include_archived) sql += " AND archived = 0 AND superseded_by = ''";
  sql += " ORDER BY importance DESC, created_ms DESC, id LIMIT ? OFFSET ?";
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
  if (by_ns)
    for (const auto& ns : f.namespaces) s.Bind(ns);
  for (const auto& t : f.types) s.Bind(t);
  for (const auto& t : f.tags) s.Bind(t);
  s.Bind(f.limit).Bind(f.offset);
  std::vector<Memory> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing memories"));
    if (!row) return out;
    out.push_back(ReadMemory(s));
  }
}

Result<Memory> SqliteStore::UpdateMemory(const Memory& m) {
  AF_RETURN_IF_ERROR(CheckMemory(m));
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  AF_ASSIGN_OR_RETURN(Memory cur, GetMemoryLocked(m.id));
  bool text_changed = cur.content != m.content || cur.summary != m.summary || cur.tags != m.tags;
  bool listed_changed = cur.archived != m.archived || cur.superseded_by != m.superseded_by;
  if (text_changed) {
    AF_ASSIGN_OR_RETURN(cur.vector_label, NextMemoryLabelLocked());
  }
  cur.content = m.content;
  cur.summary = m.summary;
  cur.type = m.type;
  cur.importance = m.importance;
  cur.tags = m.tags;
  cur.source = m.source;
  cur.archived = m.archived;
  cur.superseded_by = m.superseded_by;
  cur.updated_ms = Now();
  {
    AF_ASSIGN_OR_RETURN(
        Stmt s, Prepare("UPDATE memories SET content = ?, summary = ?, type = ?, importance = ?, "
                        "tags = ?, source = ?, archived = ?, superseded_by = ?, "
                        "vector_label = ?, updated_ms = ? WHERE id = ?"));
    s.Bind(cur.content).Bind(cur.summary).Bind(cur.type).Bind(cur.importance);
    s.BindJson(json(cur.tags)).BindJson(cur.source).Bind(cur.archived).Bind(cur.superseded_by);
    s.Bind(cur.vector_label).Bind(cur.updated_ms).Bind(cur.id);
    AF_RETURN_IF_ERROR(s.Run("updating memory " + cur.id));
  }
  if (text_changed || listed_changed) AF_RETURN_IF_ERROR(BumpGenerationLocked());
  AF_RETURN_IF_ERROR(txn.Commit());
  return cur;
}

Status SqliteStore::DeleteMemory(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  {
    // Links go by ON DELETE CASCADE, the full-text entry by trigger.
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("DELETE FROM memories WHERE id = ?"));
    s.Bind(id);
    AF_RETURN_IF_ERROR(s.Run("deleting memory " + id));
  }
  if (sqlite3_changes(writer_.db) == 0) {
    return NotFound("memory " + id + " not found", "it may have been deleted already");
  }
  AF_RETURN_IF_ERROR(BumpGenerationLocked());
  return txn.Commit();
}

Status SqliteStore::TouchMemories(const std::vector<std::string>& ids) {
  if (ids.empty()) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = Now();
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  for (const auto& id : ids) {
    AF_ASSIGN_OR_RETURN(Stmt u, Prepare("UPDATE memories SET accessed_ms = ?, access_count = "
                                        "access_count + 1 WHERE id = ?"));
    u.Bind(now).Bind(id);
    AF_RETURN_IF_ERROR(u.Run("marking memory " + id + " accessed"));
  }
  return txn.Commit();
}

Result<std::vector<TextHit>> SqliteStore::HitsLocked(const std::string& sql,
                                                     const std::vector<std::string>& namespaces,
                                                     const std::string& match, int limit) {
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
  s.Bind(match);
  if (!AllNamespaces(namespaces))
    for (const auto& ns : namespaces) s.Bind(ns);
  s.Bind(limit);
  std::vector<TextHit> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("searching the full-text index"));
    if (!row) return out;
    out.push_back({s.Int(0), s.Real(1)});
  }
}

Result<std::vector<TextHit>> SqliteStore::NewestScoredLocked(
    const std::string& sql, const char* rowid, const std::vector<std::string>& namespaces,
    const std::string& match, int scored) {
  // FTS5's own (ascending) order first: newest first makes it load each
  // word's whole row list to walk it backwards, about twice the work. Only a
  // query matching more than `scored` rows is read again, newest first.
  AF_ASSIGN_OR_RETURN(auto hits, HitsLocked(sql + " LIMIT ?", namespaces, match, scored + 1));
  if (hits.size() <= static_cast<size_t>(scored)) return hits;
  return HitsLocked(sql + " ORDER BY " + rowid + " DESC LIMIT ?", namespaces, match, scored);
}

Result<std::vector<std::pair<std::string, int64_t>>> SqliteStore::TermRowsLocked(
    const char* vocab, std::vector<std::string> words) {
  // fts5vocab counts a term's rows by walking its whole list (milliseconds
  // for a common word at 100,000 rows), so counts are kept while the
  // knowledge generation stays within kTermCountGenerations of the one they
  // were read at. They only choose which words to search and how: a count a
  // little stale costs no correctness. (Cleared at every move, they were
  // read again after every feature's memories: a fifth of the statements a
  // minimal feature ran.)
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT generation FROM kb_meta WHERE id = 1"));
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading the knowledge generation"));
    const int64_t generation = row ? s.Int(0) : -1;
    if (generation < df_generation_ || generation >= df_generation_ + kTermCountGenerations ||
        df_cache_.size() > kMaxCachedTerms) {
      df_cache_.clear();
      df_generation_ = generation;
    }
  }
  std::vector<std::pair<std::string, int64_t>> df;
  for (auto& w : words) {
    std::string key = std::string(vocab) + ":" + w;
    auto it = df_cache_.find(key);
    if (it == df_cache_.end()) {
      AF_ASSIGN_OR_RETURN(Stmt s,
                          Prepare(std::string("SELECT doc FROM ") + vocab + " WHERE term = ?"));
      s.Bind(w);
      AF_ASSIGN_OR_RETURN(bool row, s.Step("reading full-text term statistics"));
      it = df_cache_.emplace(std::move(key), row ? s.Int(0) : 0).first;
    }
    df.emplace_back(std::move(w), it->second);
  }
  return df;
}

Result<std::string> SqliteStore::MatchLocked(const char* vocab, std::vector<std::string> words) {
  if (words.size() > 2) {
    AF_ASSIGN_OR_RETURN(auto df, TermRowsLocked(vocab, std::move(words)));
    words = AffordableWords(std::move(df));
  }
  return OrExpression(words);
}

Result<std::vector<TextHit>> SqliteStore::SearchMemoryText(
    const std::vector<std::string>& namespaces, const std::string& query, int limit) {
  std::vector<std::string> words = QueryWords(query);
  if (words.empty() || limit < 1) return std::vector<TextHit>{};
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(std::string match, MatchLocked("memories_fts_vocab", std::move(words)));
  AF_ASSIGN_OR_RETURN(
      auto hits,
      NewestScoredLocked(MemoryTextSql(AllNamespaces(namespaces) ? 0 : namespaces.size()),
                         "memories_fts.rowid", namespaces, match, static_cast<int>(kScoredRows)));
  return BestHits(std::move(hits), std::min(limit, kMaxTextHits));
}

// --- Memory links -----------------------------------------------------------

Status SqliteStore::UpsertMemoryLink(const MemoryLink& l) { return UpsertMemoryLinks({l}); }

Status SqliteStore::UpsertMemoryLinks(const std::vector<MemoryLink>& links) {
  for (const auto& l : links) AF_RETURN_IF_ERROR(CheckMemoryLink(l));
  if (links.empty()) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  for (const auto& l : links) AF_RETURN_IF_ERROR(UpsertMemoryLinkLocked(l));
  return txn.Commit();
}

Status SqliteStore::UpsertMemoryLinkLocked(const MemoryLink& l) {
  for (const std::string* id : {&l.from_id, &l.to_id}) {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT 1 FROM memories WHERE id = ?"));
    s.Bind(*id);
    AF_ASSIGN_OR_RETURN(bool row, s.Step("linking memory " + *id));
    if (!row) {
      return NotFound("memory " + *id + " not found; cannot link it",
                      "link only memories that exist");
    }
  }
  int64_t now = Now();
  {
    AF_ASSIGN_OR_RETURN(
        Stmt s, Prepare("INSERT INTO memory_links (" AF_LINK_COLS ") VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (from_id, to_id, type) DO UPDATE SET "
                        "strength = excluded.strength, updated_ms = excluded.updated_ms"));
    s.Bind(l.from_id).Bind(l.to_id).Bind(l.type).Bind(l.strength);
    s.Bind(l.created_ms != 0 ? l.created_ms : now).Bind(now);
    AF_RETURN_IF_ERROR(s.Run("linking memory " + l.from_id + " to " + l.to_id));
  }
  return Status::Ok();
}

Result<std::vector<MemoryLink>> SqliteStore::MemoryLinks(const std::string& memory_id) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_LINK_COLS " FROM memory_links "
                                      "WHERE from_id = ? OR to_id = ? "
                                      "ORDER BY strength DESC, from_id, to_id, type"));
  s.Bind(memory_id).Bind(memory_id);
  std::vector<MemoryLink> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing links of memory " + memory_id));
    if (!row) return out;
    out.push_back(ReadLink(s));
  }
}

Result<std::vector<MemoryLink>> SqliteStore::AllMemoryLinks() {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(
      Stmt s, Prepare("SELECT " AF_LINK_COLS " FROM memory_links ORDER BY from_id, to_id, type"));
  std::vector<MemoryLink> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing memory links"));
    if (!row) return out;
    out.push_back(ReadLink(s));
  }
}

Status SqliteStore::DeleteMemoryLink(const std::string& from_id, const std::string& to_id,
                                     const std::string& type) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(
      Stmt s, Prepare("DELETE FROM memory_links WHERE from_id = ? AND to_id = ? AND type = ?"));
  s.Bind(from_id).Bind(to_id).Bind(type);
  AF_RETURN_IF_ERROR(s.Run("deleting a memory link"));
  if (sqlite3_changes(writer_.db) == 0) {
    return NotFound("no " + Quote(type) + " link from memory " + from_id + " to " + to_id,
                    "list a memory's links first");
  }
  return Status::Ok();
}

// --- Knowledge base ---------------------------------------------------------

Result<KbDocument> SqliteStore::FindDocument(const std::string& ns, const std::string& source) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_DOC_COLS " FROM kb_documents "
                                      "WHERE namespace = ? AND source = ?"));
  s.Bind(ns).Bind(source);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading document " + source));
  if (!row) {
    return NotFound("no document " + Quote(source) + " in namespace " + Quote(ns),
                    "ingest it first, or list documents to see what is there");
  }
  return ReadDocument(s);
}

Result<std::vector<KbDocument>> SqliteStore::ListDocuments(const std::string& ns) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql = "SELECT " AF_DOC_COLS " FROM kb_documents";
  if (!ns.empty()) sql += " WHERE namespace = ?";
  sql += " ORDER BY namespace, source";
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
  if (!ns.empty()) s.Bind(ns);
  std::vector<KbDocument> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing documents"));
    if (!row) return out;
    out.push_back(ReadDocument(s));
  }
}

Result<std::vector<int64_t>> SqliteStore::LabelsLocked(const std::string& sql,
                                                       std::string_view doing) {
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
  std::vector<int64_t> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step(doing));
    if (!row) return out;
    out.push_back(s.Int(0));
  }
}

// Caller holds mu_ inside a write transaction. Returns the removed labels.
Result<std::vector<int64_t>> SqliteStore::DeleteDocumentLocked(const std::string& document_id) {
  std::vector<int64_t> labels;
  {
    AF_ASSIGN_OR_RETURN(
        Stmt s, Prepare("SELECT label FROM kb_chunks WHERE document_id = ? ORDER BY label"));
    s.Bind(document_id);
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, s.Step("reading chunks of document " + document_id));
      if (!row) break;
      labels.push_back(s.Int(0));
    }
  }
  {
    // The full-text entries go by trigger.
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("DELETE FROM kb_chunks WHERE document_id = ?"));
    s.Bind(document_id);
    AF_RETURN_IF_ERROR(s.Run("deleting chunks of document " + document_id));
  }
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("DELETE FROM kb_documents WHERE id = ?"));
  s.Bind(document_id);
  AF_RETURN_IF_ERROR(s.Run("deleting document " + document_id));
  return labels;
}

Result<std::vector<int64_t>> SqliteStore::ReplaceDocument(KbDocument doc,
                                                          std::vector<KbChunk> chunks,
                                                          std::vector<int64_t>* removed) {
  std::vector<DocumentWrite> writes(1);
  writes[0].doc = std::move(doc);
  writes[0].chunks = std::move(chunks);
  AF_RETURN_IF_ERROR(ReplaceDocuments(&writes));
  if (removed != nullptr) *removed = std::move(writes[0].removed);
  return std::move(writes[0].labels);
}

Status SqliteStore::ReplaceDocuments(std::vector<DocumentWrite>* writes) {
  if (writes->empty()) return Status::Ok();
  AF_RETURN_IF_ERROR(CheckDocumentWrites(*writes));
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = Now();
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  Status st = Status::Ok();
  for (auto& w : *writes) {
    st = ReplaceDocumentLocked(now, &w);
    if (!st.ok()) break;
  }
  if (st.ok()) st = BumpGenerationLocked();
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) {
    // Rolled back: no label handed out here exists.
    for (auto& w : *writes) {
      w.labels.clear();
      w.removed.clear();
    }
  }
  return st;
}

// One document of ReplaceDocuments, inside its transaction.
Status SqliteStore::ReplaceDocumentLocked(int64_t now, DocumentWrite* w) {
  KbDocument& doc = w->doc;
  if (doc.ns.empty()) doc.ns = "global";
  std::string old_id;
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT id, created_ms FROM kb_documents "
                                        "WHERE namespace = ? AND source = ?"));
    s.Bind(doc.ns).Bind(doc.source);
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading document " + doc.source));
    if (row) {
      // Re-ingesting keeps the document's identity and first ingestion time.
      old_id = s.Text(0);
      if (doc.created_ms == 0) doc.created_ms = s.Int(1);
    }
  }
  w->removed.clear();
  if (!old_id.empty()) {
    AF_ASSIGN_OR_RETURN(w->removed, DeleteDocumentLocked(old_id));
    if (doc.id.empty()) doc.id = old_id;
  }
  if (doc.id.empty()) doc.id = NewId("doc");
  if (doc.created_ms == 0) doc.created_ms = now;
  doc.updated_ms = now;
  doc.chunk_count = static_cast<int64_t>(w->chunks.size());
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO kb_documents (" AF_DOC_COLS
                                        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
    s.Bind(doc.id).Bind(doc.ns).Bind(doc.source).Bind(doc.content_hash).BindJson(doc.provenance);
    s.Bind(doc.chunk_count).Bind(doc.created_ms).Bind(doc.updated_ms);
    AF_RETURN_IF_ERROR(s.Run("storing document " + doc.source));
  }
  w->labels.clear();
  w->labels.reserve(w->chunks.size());
  for (size_t i = 0; i < w->chunks.size(); ++i) {
    const KbChunk& c = w->chunks[i];
    AF_ASSIGN_OR_RETURN(Stmt s,
                        Prepare("INSERT INTO kb_chunks (document_id, ordinal, heading, "
                                "line_start, line_end, content) VALUES (?, ?, ?, ?, ?, ?)"));
    s.Bind(doc.id).Bind(static_cast<int64_t>(i)).Bind(c.heading).Bind(c.line_start);
    s.Bind(c.line_end).Bind(c.content);
    AF_RETURN_IF_ERROR(s.Run("storing a chunk of document " + doc.source));
    // Safe: mu_ is held, so no other insert on this connection can interleave.
    w->labels.push_back(static_cast<int64_t>(sqlite3_last_insert_rowid(writer_.db)));
  }
  return Status::Ok();
}

Result<std::vector<int64_t>> SqliteStore::DeleteDocument(const std::string& document_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Txn txn(this);
  AF_RETURN_IF_ERROR(txn.Begin());
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT 1 FROM kb_documents WHERE id = ?"));
    s.Bind(document_id);
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading document " + document_id));
    if (!row) {
      return NotFound("document " + document_id + " not found",
                      "list documents to see what is there");
    }
  }
  AF_ASSIGN_OR_RETURN(std::vector<int64_t> gone, DeleteDocumentLocked(document_id));
  AF_RETURN_IF_ERROR(BumpGenerationLocked());
  AF_RETURN_IF_ERROR(txn.Commit());
  return gone;
}

Result<std::vector<TextHit>> SqliteStore::SearchChunkText(
    const std::vector<std::string>& namespaces, const std::string& query, int limit) {
  std::vector<std::string> words = QueryWords(query);
  if (words.empty() || limit < 1) return std::vector<TextHit>{};
  limit = std::min(limit, kMaxTextHits);
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(auto df, TermRowsLocked("kb_chunks_fts_vocab", std::move(words)));
  std::vector<std::string> kept = AffordableWords(df);
  // The kept words the index knows (a word it does not know matches nothing,
  // and would make the AND below match nothing), and the rows they hold.
  std::vector<std::string> known;
  int64_t kept_rows = 0;
  for (const auto& w : kept) {
    for (const auto& [word, rows] : df) {
      if (word != w || rows == 0) continue;
      known.push_back(w);
      kept_rows += rows;
    }
  }
  // Bounded ranking: FTS5 scores every matching row before it can keep the
  // best, so the rows are taken newest first, at most kScoredRows of them,
  // scored, and the best `limit` kept here. When fewer rows match (nearly
  // always, see below) this is exactly FTS5's own ranking; when more do (a
  // query of very common words only), the best among the newest kScoredRows
  // are returned rather than spending tens of milliseconds on a query that
  // says little.
  std::string sql;
  if (AllNamespaces(namespaces)) {
    sql = "SELECT rowid, -bm25(kb_chunks_fts) FROM kb_chunks_fts WHERE kb_chunks_fts MATCH ?";
  } else {
    sql =
        "SELECT kb_chunks_fts.rowid, -bm25(kb_chunks_fts) FROM kb_chunks_fts "
        "JOIN kb_chunks c ON c.label = kb_chunks_fts.rowid "
        "JOIN kb_documents d ON d.id = c.document_id "
        "WHERE kb_chunks_fts MATCH ? AND d.namespace IN (" +
        Placeholders(namespaces.size()) + ")";
  }
  const int scored = std::max(limit, static_cast<int>(kScoredRows));
  auto best = [&](const std::string& match) -> Result<std::vector<TextHit>> {
    AF_ASSIGN_OR_RETURN(auto hits,
                        NewestScoredLocked(sql, "kb_chunks_fts.rowid", namespaces, match, scored));
    return BestHits(std::move(hits), limit);
  };
  // When the kept words' rows are many, the rows holding all of them are
  // tried first: they are few, cheap to score, and BM25 ranks them near the
  // top anyway. Only when they are fewer than asked does the OR run as well.
  // (Only the kept words: BM25 walks the whole row list of every word of
  // the expression once per query, to weigh it, so a common word costs
  // milliseconds even in an AND.)
  if (known.size() >= 2 && kept_rows > kAndFirstRows) {
    AF_ASSIGN_OR_RETURN(auto all, best(AndExpression(known)));
    if (all.size() >= static_cast<size_t>(limit)) return all;
  }
  return best(OrExpression(kept));
}

Result<std::vector<KbChunk>> SqliteStore::ChunksByLabel(const std::vector<int64_t>& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<KbChunk> out;
  out.reserve(labels.size());
  for (int64_t label : labels) {
    AF_ASSIGN_OR_RETURN(Stmt s,
                        Prepare("SELECT c.label, c.document_id, d.source, d.namespace, c.ordinal, "
                                "c.heading, c.line_start, c.line_end, c.content FROM kb_chunks c "
                                "JOIN kb_documents d ON d.id = c.document_id WHERE c.label = ?"));
    s.Bind(label);
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading chunks by label"));
    if (!row) continue;
    KbChunk c;
    c.label = s.Int(0);
    c.document_id = s.Text(1);
    c.source = s.Text(2);
    c.ns = s.Text(3);
    c.ordinal = static_cast<int>(s.Int(4));
    c.heading = s.Text(5);
    c.line_start = static_cast<int>(s.Int(6));
    c.line_end = static_cast<int>(s.Int(7));
    c.content = s.Text(8);
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::vector<Store::LabelledText>> SqliteStore::ChunkTexts(int64_t after_label, int limit) {
  AF_RETURN_IF_ERROR(CheckPage(limit, "chunk text paging"));
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT c.label, d.namespace, c.heading, c.content "
                                      "FROM kb_chunks c JOIN kb_documents d "
                                      "ON d.id = c.document_id WHERE c.label > ? "
                                      "ORDER BY c.label LIMIT ?"));
  s.Bind(after_label).Bind(limit);
  std::vector<LabelledText> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading chunk texts"));
    if (!row) return out;
    out.push_back({s.Int(0), s.Text(1), ChunkEmbedText(s.Text(2), s.Text(3))});
  }
}

Result<std::vector<Store::LabelledText>> SqliteStore::MemoryTexts(int64_t after_label, int limit) {
  AF_RETURN_IF_ERROR(CheckPage(limit, "memory text paging"));
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT vector_label, namespace, summary, content, tags "
                                      "FROM memories WHERE vector_label > ? AND archived = 0 "
                                      "AND superseded_by = '' ORDER BY vector_label LIMIT ?"));
  s.Bind(after_label).Bind(limit);
  std::vector<LabelledText> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("reading memory texts"));
    if (!row) return out;
    out.push_back(
        {s.Int(0), s.Text(1), MemoryEmbedText(s.Text(2), s.Text(3), StringList(s.Json(4)))});
  }
}

Result<std::vector<int64_t>> SqliteStore::ChunkLabels() {
  std::lock_guard<std::mutex> lock(mu_);
  return LabelsLocked("SELECT label FROM kb_chunks ORDER BY label", "listing chunk labels");
}

Result<std::vector<int64_t>> SqliteStore::MemoryLabels() {
  std::lock_guard<std::mutex> lock(mu_);
  return LabelsLocked(
      "SELECT vector_label FROM memories WHERE archived = 0 AND superseded_by = '' "
      "ORDER BY vector_label",
      "listing memory labels");
}

Result<KbCounts> SqliteStore::CountKnowledge() {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(
      Stmt s, Prepare("SELECT (SELECT COUNT(*) FROM kb_documents), "
                      "(SELECT COUNT(*) FROM kb_chunks), "
                      "(SELECT COUNT(*) FROM memories WHERE archived = 0 AND superseded_by = ''), "
                      "(SELECT COUNT(*) FROM memories WHERE archived != 0 OR superseded_by != ''), "
                      "(SELECT COUNT(*) FROM memory_links)"));
  AF_ASSIGN_OR_RETURN(bool row, s.Step("counting the knowledge base"));
  KbCounts c;
  if (row) {
    c.documents = s.Int(0);
    c.chunks = s.Int(1);
    c.memories = s.Int(2);
    c.archived_memories = s.Int(3);
    c.links = s.Int(4);
  }
  return c;
}

Result<int64_t> SqliteStore::KnowledgeGeneration() {
  ReadScope read(this);  // asked before every recall: never behind a writer
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT generation FROM kb_meta WHERE id = 1"));
  AF_ASSIGN_OR_RETURN(bool row, s.Step("reading the knowledge generation"));
  if (!row) return Internal("kb_meta has no row", "the database was edited by hand; restore it");
  return s.Int(0);
}

Result<std::vector<Memory>> SqliteStore::FindMemories(const std::vector<std::string>& namespaces,
                                                      const std::string& query, int limit) {
  const std::vector<std::string> words = SubstringWords(query);
  std::string sql = "SELECT " AF_MEMORY_COLS
                    " FROM memories WHERE archived = 0 AND superseded_by = '' "
                    "AND namespace = ?";
  for (size_t i = 0; i < words.size(); ++i) sql += " AND instr(lower(content), ?) > 0";
  sql += " ORDER BY importance DESC, created_ms DESC, id LIMIT ?";
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Memory> out;
  for (const auto& ns : namespaces) {
    if (static_cast<int>(out.size()) >= limit) break;
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
    s.Bind(ns);
    for (const auto& w : words) s.Bind(w);
    s.Bind(static_cast<int64_t>(limit - out.size()));
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, s.Step("searching memories"));
      if (!row) break;
      out.push_back(ReadMemory(s));
    }
  }
  int64_t now = Now();
  for (auto& m : out) {
    AF_ASSIGN_OR_RETURN(Stmt u, Prepare("UPDATE memories SET accessed_ms = ?, access_count = "
                                        "access_count + 1 WHERE id = ?"));
    u.Bind(now).Bind(m.id);
    AF_RETURN_IF_ERROR(u.Run("marking memory " + m.id + " accessed"));
    m.accessed_ms = now;
    ++m.access_count;
  }
  return out;
}

// --- LLM calls --------------------------------------------------------------

Result<LlmCall> SqliteStore::RecordLlmCall(LlmCall c) {
  AF_RETURN_IF_ERROR(CheckLlmCall(c));
  if (c.id.empty()) c.id = NewId("llm");
  std::lock_guard<std::mutex> lock(mu_);
  if (c.created_ms == 0) c.created_ms = Now();
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO llm_calls (" AF_LLM_COLS
                                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  s.Bind(c.id).Bind(c.feature_id).Bind(c.task_id).Bind(c.role).Bind(c.provider).Bind(c.model);
  s.Bind(c.input_tokens).Bind(c.output_tokens).Bind(c.cost_usd).Bind(c.latency_ms);
  s.Bind(c.status).Bind(c.error).Bind(c.request_hash).BindJson(c.response).Bind(c.created_ms);
  AF_RETURN_IF_ERROR(s.Run("recording LLM call " + c.id));
  return c;
}

Result<std::optional<LlmCall>> SqliteStore::FindRecordedLlmCall(const std::string& feature_id,
                                                                const std::string& hash) {
  if (hash.empty()) return std::optional<LlmCall>();
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s,
                      Prepare("SELECT " AF_LLM_COLS " FROM llm_calls WHERE request_hash = ? "
                              "AND feature_id = ? AND status = 'ok' "
                              "ORDER BY created_ms DESC, id DESC LIMIT 1"));
  s.Bind(hash);
  s.Bind(feature_id);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("looking up a recorded LLM call"));
  if (!row) return std::optional<LlmCall>();
  return std::optional<LlmCall>(ReadLlmCall(s));
}

Result<std::vector<LlmCall>> SqliteStore::ListLlmCalls(const std::string& feature_id) {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_LLM_COLS " FROM llm_calls WHERE feature_id = ? "
                                      "ORDER BY created_ms, id"));
  s.Bind(feature_id);
  std::vector<LlmCall> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing LLM calls of feature " + feature_id));
    if (!row) return out;
    out.push_back(ReadLlmCall(s));
  }
}

Result<UsageTotals> SqliteStore::FeatureUsage(const std::string& feature_id) {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s,
                      Prepare("SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), "
                              "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0.0) "
                              "FROM llm_calls WHERE feature_id = ?"));
  s.Bind(feature_id);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("summing usage of feature " + feature_id));
  UsageTotals u;
  if (row) {
    u.calls = s.Int(0);
    u.input_tokens = s.Int(1);
    u.output_tokens = s.Int(2);
    u.cost_usd = s.Real(3);
  }
  return u;
}

Result<StoreStats> SqliteStore::Stats() {
  ReadScope read(this);
  StoreStats stats;
  {
    AF_ASSIGN_OR_RETURN(
        Stmt s, Prepare("SELECT status, COUNT(*) FROM features GROUP BY status ORDER BY status"));
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, s.Step("counting features by status"));
      if (!row) break;
      stats.features_by_status.push_back({s.Text(0), s.Int(1)});
    }
  }
  {
    AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT role || '/' || status AS k, COUNT(*) FROM tasks "
                                        "GROUP BY k ORDER BY k"));
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, s.Step("counting tasks by role and status"));
      if (!row) break;
      stats.tasks_by_role_status.push_back({s.Text(0), s.Int(1)});
    }
  }
  {
    AF_ASSIGN_OR_RETURN(
        Stmt s, Prepare("SELECT provider, model, status, COUNT(*), COALESCE(SUM(input_tokens), 0), "
                        "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0.0) "
                        "FROM llm_calls GROUP BY provider, model, status "
                        "ORDER BY provider, model, status"));
    for (;;) {
      AF_ASSIGN_OR_RETURN(bool row, s.Step("summing LLM usage by model"));
      if (!row) break;
      stats.llm_usage.push_back(
          {s.Text(0), s.Text(1), s.Text(2), s.Int(3), s.Int(4), s.Int(5), s.Real(6)});
    }
  }
  return stats;
}

Result<double> SqliteStore::CostSince(int64_t since_ms) {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare(kCostSinceSql));
  s.Bind(since_ms);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("summing LLM cost"));
  return row ? s.Real(0) : 0.0;
}

Result<std::vector<UsageRow>> SqliteStore::UsageBreakdown(const UsageQuery& query) {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(
      Stmt s, Prepare("SELECT strftime('%Y-%m-%d', created_ms / 1000, 'unixepoch'), role, "
                      "provider, model, COUNT(*), COALESCE(SUM(input_tokens), 0), "
                      "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0.0) "
                      "FROM llm_calls WHERE (?1 = '' OR feature_id = ?1) AND created_ms >= ?2 "
                      "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"));
  s.Bind(query.feature_id).Bind(query.since_ms);
  std::vector<UsageRow> rows;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("summing LLM usage"));
    if (!row) break;
    UsageRow r;
    r.day = s.Text(0);
    r.role = s.Text(1);
    r.provider = s.Text(2);
    r.model = s.Text(3);
    r.totals = {s.Int(4), s.Int(5), s.Int(6), s.Real(7)};
    rows.push_back(std::move(r));
  }
  return rows;
}

// --- API keys ---------------------------------------------------------------

Result<ApiKey> SqliteStore::CreateApiKey(ApiKey k) {
  AF_RETURN_IF_ERROR(CheckApiKey(k));
  if (k.id.empty()) k.id = NewId("key");
  std::lock_guard<std::mutex> lock(mu_);
  if (k.created_ms == 0) k.created_ms = Now();
  AF_ASSIGN_OR_RETURN(
      Stmt s, Prepare("INSERT INTO api_keys (" AF_KEY_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  s.Bind(k.id).Bind(k.name).Bind(k.key_hash).Bind(k.prefix).BindJson(json(k.permissions));
  s.Bind(k.created_ms).Bind(k.last_used_ms).Bind(k.revoked);
  AF_RETURN_IF_ERROR(s.Run("creating API key " + Quote(k.name)));
  return k;
}

Result<ApiKey> SqliteStore::FindApiKeyByHash(const std::string& key_hash) {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT " AF_KEY_COLS " FROM api_keys WHERE key_hash = ?"));
  s.Bind(key_hash);
  AF_ASSIGN_OR_RETURN(bool row, s.Step("looking up an API key"));
  if (!row) return NotFound("no API key matches", "create one with 'agent-factory keys create'");
  return ReadApiKey(s);
}

Result<std::vector<ApiKey>> SqliteStore::ListApiKeys() {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s,
                      Prepare("SELECT " AF_KEY_COLS " FROM api_keys ORDER BY created_ms, id"));
  std::vector<ApiKey> out;
  for (;;) {
    AF_ASSIGN_OR_RETURN(bool row, s.Step("listing API keys"));
    if (!row) return out;
    out.push_back(ReadApiKey(s));
  }
}

Status SqliteStore::RevokeApiKey(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE api_keys SET revoked = 1 WHERE id = ?"));
  s.Bind(id);
  AF_RETURN_IF_ERROR(s.Run("revoking API key " + id));
  if (sqlite3_changes(writer_.db) == 0) {
    return NotFound("API key " + id + " not found", "list keys with 'agent-factory keys list'");
  }
  return Status::Ok();
}

Status SqliteStore::TouchApiKey(const std::string& id, int64_t used_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE api_keys SET last_used_ms = ? WHERE id = ?"));
  s.Bind(used_ms).Bind(id);
  AF_RETURN_IF_ERROR(s.Run("recording use of API key " + id));
  if (sqlite3_changes(writer_.db) == 0) {
    return NotFound("API key " + id + " not found", "list keys with 'agent-factory keys list'");
  }
  return Status::Ok();
}

Result<int64_t> SqliteStore::CountActiveApiKeys() {
  ReadScope read(this);
  AF_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT COUNT(*) FROM api_keys WHERE revoked = 0"));
  AF_ASSIGN_OR_RETURN(bool row, s.Step("counting API keys"));
  return row ? s.Int(0) : int64_t{0};
}

// --- Health -----------------------------------------------------------------

Status SqliteStore::Check() {
  ReadScope read(this);
  // Reads a real page of the file (unlike SELECT 1), so a vanished or damaged
  // database shows up here.
  AF_ASSIGN_OR_RETURN(MigrationStatus st, StatusLocked());
  return CheckSchemaCurrent(st, path_);
}

// --- Backup -----------------------------------------------------------------

Status SqliteStore::BackupTo(const std::string& path) {
  namespace fs = std::filesystem;
  AF_RETURN_IF_ERROR(CreateBackupFile(path));
  sqlite3* dest = nullptr;
  sqlite3* src = nullptr;
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  auto fail = [&](int rc, const std::string& doing) {
    std::string detail = sqlite3_errstr(rc);
    if (dest != nullptr) sqlite3_close_v2(dest);
    if (src != nullptr && src != writer_.db) sqlite3_close_v2(src);
    dest = src = nullptr;
    std::error_code rm;
    fs::remove(path, rm);
    fs::remove(path + "-journal", rm);
    fs::remove(path + "-wal", rm);
    fs::remove(path + "-shm", rm);
    if ((rc & 0xff) == SQLITE_FULL) {
      return ResourceExhausted("disk full " + doing + " (copy of " + path_ + " to " + path + ")",
                               "free some disk space, or write the backup to another file system");
    }
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
      return Unavailable(doing + ": database " + path_ + " stayed locked (" + detail + ")",
                         "retry in a moment");
    }
    return Internal(doing + " (copy of " + path_ + " to " + path + "): " + detail,
                    "check the disk holding both files, then retry");
  };
  int rc =
      sqlite3_open_v2(path.c_str(), &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "opening the backup copy");
  if (path_ == ":memory:") {
    // Only this connection sees a private in-memory database.
    lock.lock();
    src = writer_.db;
  } else {
    // A connection of its own: the copy runs without holding mu_, so the
    // store's other calls go on meanwhile; in WAL mode the copy's read
    // transaction neither blocks writers nor sees their later commits.
    rc = sqlite3_open_v2(path_.c_str(), &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return fail(rc, "opening the database for the backup");
    sqlite3_busy_timeout(src, static_cast<int>(options_.busy_timeout.count()));
  }
  sqlite3_backup* backup = sqlite3_backup_init(dest, "main", src, "main");
  if (backup == nullptr) return fail(sqlite3_extended_errcode(dest), "starting the backup");
  // Every page in one step: one read transaction, hence one moment's state.
  rc = sqlite3_backup_step(backup, -1);
  const int finish = sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) return fail(rc, "copying the database");
  if (finish != SQLITE_OK) return fail(finish, "finishing the backup");
  if (src != writer_.db) sqlite3_close_v2(src);
  src = nullptr;
  if (lock.owns_lock()) lock.unlock();
  // One self-contained file: no -wal beside it to forget (the store turns
  // WAL on again when it opens the copy).
  rc = sqlite3_exec(dest, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "finishing the backup copy");
  rc = sqlite3_close(dest);
  dest = nullptr;
  if (rc != SQLITE_OK) return fail(rc, "closing the backup copy");
  return Status::Ok();
}

}  // namespace

const char* const kCostSinceSql =
    "SELECT COALESCE(SUM(cost_usd), 0.0) FROM llm_calls WHERE created_ms >= ?";

std::string MemoryTextSql(size_t namespaces) {
  // bm25() is "smaller is better"; the score is its negation. The newest
  // kScoredRows matches are scored, as chunks are, and the best kept by the
  // caller: FTS5's own ORDER BY rank would add a sorting sub-query that costs
  // about as much again (116 memories, a 15-word query: 0.86 -> 0.22 ms).
  // CROSS JOIN keeps the full-text index the outer loop (see the header).
  std::string sql =
      "SELECT memories_fts.rowid, -bm25(memories_fts) FROM memories_fts "
      "CROSS JOIN memories m ON m.vector_label = memories_fts.rowid "
      "WHERE memories_fts MATCH ? AND m.archived = 0 AND m.superseded_by = ''";
  if (namespaces > 0) sql += " AND m.namespace IN (" + Placeholders(namespaces) + ")";
  return sql;
}

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                               const StoreOptions& options) {
  std::string shown = path;
  if (path != ":memory:") {
    std::error_code ec;
    auto abs = std::filesystem::absolute(path, ec);
    if (!ec) shown = abs.lexically_normal().string();
  }
  auto store = std::make_unique<SqliteStore>(shown, options);
  AF_RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace af::store_internal
