#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "af/store/import.h"
#include "af/store/store.h"
#include "store/pg_store.h"

namespace af {
namespace {

using store_internal::PgStore;

// The core tables, parents first, with the columns both schemas share.
struct CoreTable {
  const char* name;
  const char* columns;
  int64_t ImportReport::*count;
};
const CoreTable kCoreTables[] = {
    {"projects", "name, created_ms", &ImportReport::projects},
    {"features", "id, project, title, status, priority, request, reason, created_ms, updated_ms",
     &ImportReport::features},
    {"tasks",
     "id, feature_id, position, title, description, role, status, files, attempts, "
     "assigned_agent, result, created_ms, updated_ms",
     &ImportReport::tasks},
    {"task_dependencies", "task_id, depends_on, position", nullptr},
    {"events", "seq, type, feature_id, task_id, agent, ts_ms, data", &ImportReport::events},
    {"agents", "id, role, state, last_heartbeat_ms, current_task, counters, host, pid",
     &ImportReport::agents},
    {"llm_calls",
     "id, feature_id, task_id, role, provider, model, input_tokens, output_tokens, cost_usd, "
     "latency_ms, status, error, request_hash, response, created_ms",
     &ImportReport::llm_calls},
    {"api_keys", "id, name, key_hash, prefix, permissions, created_ms, last_used_ms, revoked",
     &ImportReport::api_keys},
};

// Rows of one INSERT: big enough to keep round trips few, small enough to
// keep one statement's text modest.
constexpr int kRowsPerInsert = 200;

// A read-only handle on the source file, closed on scope exit.
class Source {
 public:
  explicit Source(const std::string& path) : path_(path) {}
  ~Source() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }
  Status Open() {
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
      return Error("opening");
    return Status::Ok();
  }
  Status Error(const std::string& doing) const {
    return Unavailable(doing + " the SQLite database " + path_ + ": " +
                           (db_ != nullptr ? sqlite3_errmsg(db_) : "cannot open"),
                       "check that the file is an Agent Factory database and readable");
  }
  // Runs `sql` and calls fn(stmt) for each row.
  template <typename F>
  Status ForEachRow(const std::string& sql, const std::string& bind, F&& fn) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) return Error("reading");
    if (!bind.empty()) sqlite3_bind_text(s, 1, bind.data(), static_cast<int>(bind.size()), nullptr);
    int rc;
    Status st;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && st.ok()) st = fn(s);
    sqlite3_finalize(s);
    if (!st.ok()) return st;
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? Status::Ok() : Error("reading");
  }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

std::string Column(sqlite3_stmt* s, int i) {
  const unsigned char* p = sqlite3_column_text(s, i);
  return p == nullptr ? std::string()
                      : std::string(reinterpret_cast<const char*>(p),
                                    static_cast<size_t>(sqlite3_column_bytes(s, i)));
}

Status CheckEmpty(Store& target) {
  AF_ASSIGN_OR_RETURN(int64_t seq, target.LatestEventSeq());
  AF_ASSIGN_OR_RETURN(FeaturePage features, target.ListFeatures(FeatureFilter{.limit = 1}));
  AF_ASSIGN_OR_RETURN(KbCounts kb, target.CountKnowledge());
  if (seq == 0 && features.total == 0 && kb.documents == 0 && kb.memories == 0 &&
      kb.archived_memories == 0)
    return Status::Ok();
  return FailedPrecondition(
      target.Describe() + " already holds data (" + std::to_string(features.total) + " features, " +
          std::to_string(seq) + " events, " + std::to_string(kb.documents) + " documents, " +
          std::to_string(kb.memories + kb.archived_memories) + " memories)",
      "import into an empty database: create a new one (createdb) and point DATABASE_URL at it");
}

// The core tables in one transaction of the target.
Status CopyCore(Source& src, PgStore& pg, ImportReport* report) {
  return pg.Tx("importing the core tables", [&](pqxx::work& w) -> Status {
    ImportReport counts;
    for (const CoreTable& t : kCoreTables) {
      const std::string insert =
          std::string("INSERT INTO ") + t.name + " (" + t.columns + ") VALUES ";
      std::string values;
      int rows = 0;
      int64_t total = 0;
      auto flush = [&] {
        if (rows > 0) w.exec(insert + values);
        values.clear();
        rows = 0;
      };
      AF_RETURN_IF_ERROR(src.ForEachRow(
          std::string("SELECT ") + t.columns + " FROM " + t.name, "", [&](sqlite3_stmt* s) {
            values += rows == 0 ? "(" : ", (";
            for (int i = 0, n = sqlite3_column_count(s); i < n; ++i) {
              if (i > 0) values += ", ";
              values += sqlite3_column_type(s, i) == SQLITE_NULL
                            ? std::string("NULL")
                            : w.quote(store_internal::CleanText(Column(s, i)));
            }
            values += ")";
            ++total;
            if (++rows == kRowsPerInsert) flush();
            return Status::Ok();
          }));
      flush();
      if (t.count != nullptr) counts.*t.count = total;
    }
    // New events continue above every seq the source handed out (its
    // AUTOINCREMENT counter may be above the highest row left).
    int64_t last = 0;
    AF_RETURN_IF_ERROR(
        src.ForEachRow("SELECT MAX(n) FROM (SELECT MAX(seq) AS n FROM events UNION ALL "
                       "SELECT seq FROM sqlite_sequence WHERE name = 'events')",
                       "", [&](sqlite3_stmt* s) {
                         last = sqlite3_column_int64(s, 0);
                         return Status::Ok();
                       }));
    w.exec("UPDATE event_seq SET last_seq = GREATEST(last_seq, " + std::to_string(last) + ")");
    counts.last_event_seq = last;
    *report = counts;
    return Status::Ok();
  });
}

// Memories, links and documents through the target's own writes.
Status CopyKnowledge(Source& src, Store& from, Store& to, ImportReport* report) {
  MemoryFilter filter;
  filter.include_archived = true;
  filter.limit = 1000;
  for (;; filter.offset += filter.limit) {
    AF_ASSIGN_OR_RETURN(std::vector<Memory> page, from.ListMemories(filter));
    for (Memory& m : page) {
      m.vector_label = 0;  // the target gives a new one
      AF_RETURN_IF_ERROR(to.AddMemory(std::move(m)).status());
      ++report->memories;
    }
    if (page.size() < static_cast<size_t>(filter.limit)) break;
  }
  AF_ASSIGN_OR_RETURN(std::vector<MemoryLink> links, from.AllMemoryLinks());
  for (const MemoryLink& l : links) {
    AF_RETURN_IF_ERROR(to.UpsertMemoryLink(l));
    ++report->links;
  }
  std::vector<std::string> namespaces;
  AF_RETURN_IF_ERROR(
      src.ForEachRow("SELECT DISTINCT namespace FROM kb_documents", "", [&](sqlite3_stmt* s) {
        namespaces.push_back(Column(s, 0));
        return Status::Ok();
      }));
  for (const std::string& ns : namespaces) {
    AF_ASSIGN_OR_RETURN(std::vector<KbDocument> docs, from.ListDocuments(ns));
    std::vector<DocumentWrite> batch;
    auto flush = [&]() -> Status {
      if (batch.empty()) return Status::Ok();
      AF_RETURN_IF_ERROR(to.ReplaceDocuments(&batch));
      batch.clear();
      return Status::Ok();
    };
    for (KbDocument& doc : docs) {
      DocumentWrite write;
      AF_RETURN_IF_ERROR(
          src.ForEachRow("SELECT ordinal, heading, line_start, line_end, content FROM kb_chunks "
                         "WHERE document_id = ? ORDER BY ordinal",
                         doc.id, [&](sqlite3_stmt* s) {
                           KbChunk c;
                           c.document_id = doc.id;
                           c.source = doc.source;
                           c.ns = doc.ns;
                           c.ordinal = sqlite3_column_int(s, 0);
                           c.heading = Column(s, 1);
                           c.line_start = sqlite3_column_int(s, 2);
                           c.line_end = sqlite3_column_int(s, 3);
                           c.content = Column(s, 4);
                           write.chunks.push_back(std::move(c));
                           return Status::Ok();
                         }));
      report->chunks += static_cast<int64_t>(write.chunks.size());
      ++report->documents;
      write.doc = std::move(doc);
      batch.push_back(std::move(write));
      if (batch.size() >= 200) AF_RETURN_IF_ERROR(flush());
    }
    AF_RETURN_IF_ERROR(flush());
  }
  return Status::Ok();
}

}  // namespace

Result<ImportReport> ImportSqliteDatabase(const std::string& sqlite_path, Store& target) {
  auto* pg = dynamic_cast<PgStore*>(&target);
  if (pg == nullptr) {
    return FailedPrecondition(
        "db import moves a SQLite database into PostgreSQL; the configured database is " +
            target.Describe(),
        "set DATABASE_URL=postgresql://USER@HOST/DB (an empty database) and run it again; to move "
        "a SQLite database elsewhere, copy the file (agent-factory backup / restore)");
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(sqlite_path, ec)) {
    return NotFound("no SQLite database at " + sqlite_path,
                    "give the path of an agent-factory.db file, e.g. ./data/agent-factory.db");
  }
  StoreOptions options;
  options.url = "sqlite:" + sqlite_path;
  options.migrate = false;
  AF_ASSIGN_OR_RETURN(std::unique_ptr<Store> from, Store::Open(options));
  AF_ASSIGN_OR_RETURN(MigrationStatus status, from->GetMigrationStatus());
  AF_RETURN_IF_ERROR(CheckSchemaNotNewer(status).WithContext(sqlite_path));
  if (!status.pending.empty()) {
    return FailedPrecondition(
        sqlite_path + " is at schema version " + std::to_string(status.current_version) + " of " +
            std::to_string(status.latest_version),
        "migrate it first: DATABASE_URL=sqlite:" + sqlite_path + " agent-factory db migrate");
  }
  AF_RETURN_IF_ERROR(CheckEmpty(target));
  Source src(sqlite_path);
  AF_RETURN_IF_ERROR(src.Open());
  ImportReport report;
  AF_RETURN_IF_ERROR(CopyCore(src, *pg, &report));
  Status knowledge = CopyKnowledge(src, *from, target, &report);
  if (!knowledge.ok()) {
    return knowledge.WithContext(
        "the core tables were imported, then copying memories and documents failed after " +
        std::to_string(report.memories) + " memories and " + std::to_string(report.documents) +
        " documents");
  }
  return report;
}

}  // namespace af
