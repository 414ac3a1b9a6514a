#include "store/pg_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "af/core/dag.h"
#include "af/core/fault.h"
#include "af/core/ids.h"
#include "af/core/log.h"
#include "af/core/private_files.h"
#include "af/core/strings.h"
#include "store/migrations_pg.h"
#include "store/sqlite_store.h"
#include "store/store_rows.h"
#include "store/store_rules.h"

namespace af::store_internal {
namespace {

using nlohmann::json;

// The URL's "host:port" (libpq's defaults when absent), its password (for
// scrubbing) and the URL with a connect timeout added when it names none.
struct UrlParts {
  std::string endpoint;
  std::string password;
  std::string conn_url;
};

UrlParts ParseUrl(const std::string& url) {
  UrlParts p;
  size_t scheme = url.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  size_t end = url.find_first_of("/?", start);
  std::string authority =
      url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  size_t at = authority.rfind('@');
  if (at != std::string::npos) {
    std::string userinfo = authority.substr(0, at);
    size_t colon = userinfo.find(':');
    if (colon != std::string::npos) p.password = userinfo.substr(colon + 1);
    authority = authority.substr(at + 1);
  }
  size_t q = url.find('?');
  if (q != std::string::npos) {
    size_t pw = url.find("password=", q);
    if (pw != std::string::npos) {
      size_t e = url.find('&', pw);
      p.password = url.substr(pw + 9, e == std::string::npos ? std::string::npos : e - pw - 9);
    }
  }
  std::string host = authority, port = "5432";
  // "[::1]:5432" or "host:5432".
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) host = "localhost";
  p.endpoint = host + ":" + port;
  p.conn_url = url;
  // Without it libpq may wait minutes for an unreachable host.
  if (url.find("connect_timeout=") == std::string::npos) {
    p.conn_url += (q == std::string::npos ? "?" : "&");
    p.conn_url += "connect_timeout=10";
  }
  return p;
}

}  // namespace

std::string RedactUrl(const std::string& url) { return MaskUrlPasswords(url); }

std::string CleanText(const std::string& s) {
  std::string out = ReplaceInvalidUtf8(s);
  // PostgreSQL text cannot hold NUL either.
  for (size_t at = out.find('\0'); at != std::string::npos; at = out.find('\0', at)) {
    out.replace(at, 1, "\xEF\xBF\xBD");  // U+FFFD
  }
  return out;
}

std::string PgStore::DumpJson(const json& v) { return DumpStoredJson(v); }

json PgStore::ParseJson(const std::string& text) { return ParseStoredJson(text); }

// --- Connections and transactions ----------------------------------------------

PgStore::PgStore(std::string url, StoreOptions options)
    : url_(std::move(url)), redacted_url_(RedactUrl(url_)), options_(std::move(options)) {
  if (!options_.now_ms) options_.now_ms = SystemNowMs;
  UrlParts parts = ParseUrl(url_);
  endpoint_ = parts.endpoint;
  password_ = parts.password;
  conn_url_ = parts.conn_url;
}

PgStore::~PgStore() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (listen_thread_.joinable()) listen_thread_.join();
}

int64_t PgStore::NowMs() const { return options_.now_ms(); }

std::string PgStore::Describe() const { return redacted_url_; }

std::string PgStore::Detail(const std::exception& e) const {
  // One line: libpq breaks its messages with newlines and tabs ("Connection
  // refused\n\tIs the server running..."), which split log lines and /health.
  std::string detail;
  for (const char c : std::string_view(e.what())) {
    const bool space = c == '\n' || c == '\t' || c == '\r' || c == ' ';
    if (!space) {
      detail += c;
    } else if (!detail.empty() && detail.back() != ' ') {
      detail += ' ';
    }
  }
  while (!detail.empty() && detail.back() == ' ') detail.pop_back();
  // libpq messages name host and user, not the password; this is the belt
  // to those braces.
  if (!password_.empty()) {
    for (size_t at; (at = detail.find(password_)) != std::string::npos;) {
      detail.replace(at, password_.size(), "***");
    }
  }
  return detail;
}

Status PgStore::ErrorFrom(std::string_view doing, const std::exception& e) const {
  const std::string detail = Detail(e);
  std::string what = std::string(doing) + ": ";
  const std::string server = "PostgreSQL at " + endpoint_;
  const std::string down_hint =
      "is PostgreSQL running and reachable? check DATABASE_URL (host, port, user, password, "
      "database); "
      "retry once it is back";
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return Unavailable(what + "lost the connection to " + server + " (" + detail + ")", down_hint);
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return Unavailable(what + "the connection to " + server +
                           " broke while committing: the change may or may not have been saved (" +
                           detail + ")",
                       "check the record, then retry if it is missing; " + down_hint);
  }
  const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
  if (sql == nullptr) {
    return Internal(what + detail + " (" + server + ")", "this is a bug; please report it");
  }
  const std::string& state = sql->sqlstate();
  auto cls = [&](const char* c) { return state.compare(0, 2, c) == 0; };
  if (state == "42P01" || state == "42703") {  // undefined table / column
    return FailedPrecondition(
        what + "database " + redacted_url_ + " is not migrated (" + detail + ")",
        "run 'agent-factory db migrate'");
  }
  if (state == "23505") {  // unique_violation
    return AlreadyExists(what + "already exists (" + detail + ")",
                         "use a different id, or leave it empty to get a new one");
  }
  if (cls("23")) return InvalidArgument(what + detail, "refer only to records that exist");
  if (state == "55P03" || state == "40001" || state == "40P01") {
    return Unavailable(
        what + "the database stayed locked or the transaction conflicted (" + detail + ")",
        "another process is writing the same records; retry");
  }
  if (state == "53100") {
    return ResourceExhausted(what + "the PostgreSQL server's disk is full (" + detail + ")",
                             "free disk space on the database server");
  }
  if (cls("08") || cls("57") || cls("53")) {
    return Unavailable(what + server + " is unavailable (" + detail + ")", down_hint);
  }
  if (cls("28")) {
    return FailedPrecondition(what + server + " refused the credentials (" + detail + ")",
                              "check the user and password in DATABASE_URL");
  }
  return Internal(what + detail + " (" + server + ")", "this is a bug; please report it");
}

Result<std::unique_ptr<pqxx::connection>> PgStore::OpenConnection() const {
  try {
    auto conn = std::make_unique<pqxx::connection>(conn_url_);
    pqxx::nontransaction n(*conn);
    // Times are stored as unix milliseconds, so the session time zone only
    // matters for the day buckets of UsageBreakdown: UTC, as promised.
    n.exec("SET TIME ZONE 'UTC'");
    // A lock wait is bounded like SQLite's busy timeout.
    n.exec("SET lock_timeout = " + std::to_string(options_.busy_timeout.count()));
    return conn;
  } catch (const std::exception& e) {
    Status s = ErrorFrom("connecting to PostgreSQL", e);
    if (s.code() == Code::kInternal || s.code() == Code::kUnavailable) {
      return Unavailable("cannot connect to PostgreSQL at " + endpoint_ + " (" + Detail(e) + ")",
                         "is PostgreSQL running and reachable? check DATABASE_URL=" +
                             redacted_url_ + " (host, port, user, password, database)");
    }
    return s;
  }
}

Result<std::unique_ptr<pqxx::connection>> PgStore::Acquire() {
  std::unique_lock<std::mutex> lock(pool_mu_);
  // Under load many threads queue here (hundreds of features at once, each
  // commit waiting for the disk): a long wait is fine while connections keep
  // coming back. Only a pool from which nothing came back for a whole
  // busy_timeout is an error: something holds its connections (a bug).
  const auto window = std::max(options_.busy_timeout, std::chrono::milliseconds(1000));
  for (uint64_t seen = returned_;; seen = returned_) {
    if (pool_cv_.wait_for(lock, window, [&] { return !idle_.empty() || open_ < kPoolSize; })) break;
    if (returned_ == seen) {
      return Unavailable("all " + std::to_string(kPoolSize) + " connections to PostgreSQL at " +
                             endpoint_ + " stayed busy and none came back for " +
                             std::to_string(window.count()) + " ms",
                         "retry; if it persists, report it (a call is holding a connection)");
    }
  }
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return conn;
  }
  ++open_;
  lock.unlock();
  auto conn = OpenConnection();
  if (!conn.ok()) {
    lock.lock();
    --open_;
    pool_cv_.notify_one();
  }
  return conn;
}

void PgStore::Release(std::unique_ptr<pqxx::connection> conn) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  ++returned_;
  if (conn && conn->is_open()) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  pool_cv_.notify_one();
}

void PgStore::DropIdle() {
  std::lock_guard<std::mutex> lock(pool_mu_);
  open_ -= static_cast<int>(idle_.size());
  idle_.clear();
  pool_cv_.notify_all();
}

Status PgStore::RunTx(std::string_view doing, const std::function<Status(pqxx::work&)>& fn) {
  for (int attempt = 0;; ++attempt) {
    AF_ASSIGN_OR_RETURN(std::unique_ptr<pqxx::connection> conn, Acquire());
    Status st;
    bool broken = false;
    bool committing = false;
    try {
      pqxx::work w(*conn);
      st = fn(w);
      if (st.ok()) {
        committing = true;
        w.commit();
      }
      // Not ok: the work's destructor rolls back.
    } catch (const pqxx::broken_connection& e) {
      broken = true;
      st = ErrorFrom(doing, e);
    } catch (const pqxx::in_doubt_error& e) {
      broken = true;
      st = ErrorFrom(doing, e);
    } catch (const std::exception& e) {
      st = ErrorFrom(doing, e);
      broken = !conn->is_open();
    }
    if (broken) {
      conn.reset();
      Release(nullptr);
      DropIdle();
    } else {
      Release(std::move(conn));
    }
    // Once, and only when nothing can have been committed: a server restart
    // breaks every pooled connection, and the first call after it should
    // just work on a new one.
    if (broken && !committing && attempt == 0) continue;
    return st;
  }
}

Status PgStore::Connect() {
  return Tx("connecting to PostgreSQL", [](pqxx::work& w) -> Status {
    w.exec("SELECT 1");
    return Status::Ok();
  });
}

// --- Migrations -----------------------------------------------------------------

Result<MigrationStatus> PgStore::StatusTx(pqxx::work& w) {
  MigrationStatus st;
  std::set<int> done;
  pqxx::result exists = w.exec("SELECT to_regclass('schema_migrations') IS NOT NULL");
  if (exists[0][0].as<bool>()) {
    for (const auto& row : w.exec("SELECT version FROM schema_migrations")) {
      int v = row[0].as<int>();
      done.insert(v);
      st.current_version = std::max(st.current_version, v);
    }
  }
  for (const SqlMigration& m : PgMigrations()) {
    st.latest_version = std::max(st.latest_version, m.version);
    if (done.count(m.version) == 0) st.pending.push_back({m.version, m.name, 0});
  }
  return st;
}

Result<MigrationStatus> PgStore::GetMigrationStatus() {
  return Tx("reading the schema version", [&](pqxx::work& w) { return StatusTx(w); });
}

Result<std::vector<Migration>> PgStore::MigrationHistory() {
  return Tx("reading migration history", [&](pqxx::work& w) -> Result<std::vector<Migration>> {
    std::vector<Migration> out;
    pqxx::result exists = w.exec("SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (!exists[0][0].as<bool>()) return out;
    for (const auto& r :
         w.exec("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")) {
      out.push_back({r[0].as<int>(), Text(r[1]), Int(r[2])});
    }
    return out;
  });
}

Result<std::vector<Migration>> PgStore::Migrate() {
  std::vector<Migration> applied_now;
  for (const SqlMigration& m : PgMigrations()) {
    std::string doing = "applying migration " + std::to_string(m.version) + " (" + m.name + ")";
    std::optional<Migration> applied;
    AF_RETURN_IF_ERROR(Tx(doing, [&](pqxx::work& w) -> Status {
      applied.reset();
      // Two processes migrating at once queue on this lock (held until the
      // commit) and the second finds the work done. The key is arbitrary,
      // fixed: "af migrate".
      w.exec("SELECT pg_advisory_xact_lock(7361726)");
      w.exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
          "name TEXT NOT NULL, applied_at BIGINT NOT NULL)");
      if (!PgExec(w, "SELECT 1 FROM schema_migrations WHERE version = $1", m.version).empty()) {
        return Status::Ok();
      }
      w.exec(m.sql);
      Migration rec{m.version, m.name, NowMs()};
      PgExec(w, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
             rec.version, rec.name, rec.applied_ms);
      applied = rec;
      return Status::Ok();
    }));
    if (applied) applied_now.push_back(*applied);
  }
  AF_ASSIGN_OR_RETURN(MigrationStatus st, GetMigrationStatus());
  AF_RETURN_IF_ERROR(CheckSchemaNotNewer(st).WithContext("database " + redacted_url_));
  return applied_now;
}

// --- Projects ---------------------------------------------------------------------

namespace {

Status EnsureProjectTx(pqxx::work& w, const std::string& name, int64_t now) {
  AF_RETURN_IF_ERROR(CheckProjectName(name));
  PgExec(w, "INSERT INTO projects (name, created_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
         name, now);
  return Status::Ok();
}

Result<Feature> GetFeatureTx(pqxx::work& w, const std::string& id, bool for_update) {
  pqxx::result r = PgExec(w,
                          std::string("SELECT " AF_FEATURE_COLS " FROM features WHERE id = $1") +
                              (for_update ? " FOR UPDATE" : ""),
                          id);
  if (r.empty()) {
    return NotFound("feature " + id + " not found",
                    "list features with 'agent-factory feature list'");
  }
  return ReadFeature(PgRow(r[0]));
}

Result<Task> GetTaskTx(pqxx::work& w, const std::string& id, bool for_update) {
  pqxx::result r = PgExec(w,
                          std::string("SELECT " AF_TASK_COLS " FROM tasks WHERE id = $1") +
                              (for_update ? " FOR UPDATE" : ""),
                          id);
  if (r.empty()) {
    return NotFound("task " + id + " not found",
                    "list a feature's tasks with 'agent-factory feature status ID'");
  }
  Task t = ReadTask(PgRow(r[0]));
  for (const auto& d :
       PgExec(w, "SELECT depends_on FROM task_dependencies WHERE task_id = $1 ORDER BY position",
              id)) {
    t.dependencies.push_back(Text(d[0]));
  }
  return t;
}

}  // namespace

Result<Project> PgStore::EnsureProject(const std::string& name) {
  AF_RETURN_IF_ERROR(CheckProjectName(name));
  return Tx("creating project " + Quote(name), [&](pqxx::work& w) -> Result<Project> {
    AF_RETURN_IF_ERROR(EnsureProjectTx(w, name, NowMs()));
    pqxx::result r = PgExec(w, "SELECT name, created_ms FROM projects WHERE name = $1", name);
    if (r.empty()) {
      return Internal("project " + Quote(name) + " vanished right after being created");
    }
    return Project{Text(r[0][0]), Int(r[0][1])};
  });
}

Result<std::vector<Project>> PgStore::ListProjects() {
  return Tx("listing projects", [&](pqxx::work& w) -> Result<std::vector<Project>> {
    std::vector<Project> out;
    // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
    for (const auto& r :
         w.exec("SELECT name, created_ms FROM projects ORDER BY name COLLATE \"C\"")) {
      out.push_back({Text(r[0]), Int(r[1])});
    }
    return out;
  });
}

// --- Events ----------------------------------------------------------------------

Result<int64_t> PgStore::AppendEventTx(pqxx::work& w, Event e, std::string* last_feature_event) {
  AF_RETURN_IF_ERROR(CheckEvent(e));
  if (e.ts_ms == 0) e.ts_ms = NowMs();
  // The seq comes from the one-row counter, not a SEQUENCE: the UPDATE locks
  // the row until this transaction ends, so the next appender gets seq + 1
  // only after this one has committed (or rolled back, when it reuses this
  // number). Seqs therefore become visible in ascending order, and a reader
  // of `seq > after` cannot skip an event that commits late. The price is
  // that appends serialise on one row; each holds it only from its append
  // to its commit, which is why appends come last in every transaction.
  pqxx::result r =
      w.exec("UPDATE event_seq SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq");
  if (r.empty()) {
    return FailedPrecondition("the event counter row is missing from database " + redacted_url_,
                              "restore a backup, or insert it: INSERT INTO event_seq VALUES (1, "
                              "(SELECT COALESCE(MAX(seq), 0) FROM events))");
  }
  int64_t seq = Int(r[0][0]);
  // Delivered at commit (once per transaction however many appends) to
  // every process listening: their SSE hubs read at once instead of at
  // their next poll.
  w.exec("NOTIFY af_events");
  PgExec(w, "INSERT INTO events (" AF_EVENT_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7)", seq,
         e.type, e.feature_id, e.task_id, e.agent, e.ts_ms, DumpJson(e.data));
  if (!e.feature_id.empty() && last_feature_event != nullptr) *last_feature_event = e.type;
  return seq;
}

void PgStore::EventsCommitted(const std::string& last_feature_event) {
  {
    std::lock_guard<std::mutex> lock(listener_mu_);
    if (listener_) listener_();
  }
  if (!last_feature_event.empty()) fault::CrashPoint("event " + last_feature_event);
}

void PgStore::SetEventsListener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(listener_mu_);
  listener_ = std::move(listener);
  if (listener_ && !listen_thread_.joinable())
    listen_thread_ = std::thread([this] { ListenLoop(); });
}

namespace {

class EventsReceiver final : public pqxx::notification_receiver {
 public:
  EventsReceiver(pqxx::connection& c, std::function<void()> on_notify)
      : pqxx::notification_receiver(c, "af_events"), on_notify_(std::move(on_notify)) {}
  void operator()(const std::string&, int) override { on_notify_(); }

 private:
  std::function<void()> on_notify_;
};

}  // namespace

void PgStore::ListenLoop() {
  auto call_listener = [this] {
    std::lock_guard<std::mutex> lock(listener_mu_);
    if (listener_) listener_();
  };
  bool lost = false;  // said once per outage, not once per attempt
  while (!stopping_) {
    try {
      pqxx::connection conn(conn_url_);
      EventsReceiver receiver(conn, call_listener);
      if (lost) {
        log::Get("store")->info("listening for new events on PostgreSQL at {} again", endpoint_);
        lost = false;
      }
      // Events committed while there was no LISTEN (before the first connect,
      // or while reconnecting) are not announced: wake the reader once.
      call_listener();
      // A short wait so shutdown is prompt; notifications end it at once.
      // libpqxx 6 does not throw once the connection is gone: its waits just
      // return, and the LISTEN would be lost for good (the server restarted).
      while (!stopping_) {
        conn.await_notification(0, 200000);
        if (!conn.is_open()) throw pqxx::broken_connection("the LISTEN connection was closed");
      }
    } catch (const std::exception& e) {
      // The server went away: the hub's poll covers the gap; try again in a
      // second (or stop at once on shutdown).
      if (!lost && !stopping_) {
        log::Get("store")->warn("{}; live events wait for the next poll, reconnecting every second",
                                ErrorFrom("listening for new events", e).ToString());
      }
      lost = true;
      std::unique_lock<std::mutex> lock(stop_mu_);
      stop_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_.load(); });
    }
  }
}

Result<int64_t> PgStore::AppendEvent(Event event) {
  std::string feature_event;
  auto seq = Tx("appending event " + Quote(event.type), [&](pqxx::work& w) {
    feature_event.clear();
    return AppendEventTx(w, event, &feature_event);
  });
  if (seq.ok()) EventsCommitted(feature_event);
  return seq;
}

Result<std::vector<Event>> PgStore::ListEvents(const EventFilter& filter) {
  AF_RETURN_IF_ERROR(CheckEventFilter(filter));
  return Tx("listing events", [&](pqxx::work& w) -> Result<std::vector<Event>> {
    pqxx::result r =
        filter.feature_id
            ? PgExec(w,
                     "SELECT " AF_EVENT_COLS
                     " FROM events WHERE seq > $1 AND feature_id = $2 ORDER BY seq LIMIT $3",
                     filter.after_seq, *filter.feature_id, filter.limit)
            : PgExec(w, "SELECT " AF_EVENT_COLS " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                     filter.after_seq, filter.limit);
    std::vector<Event> out;
    out.reserve(r.size());
    for (const auto& row : r) out.push_back(ReadEvent(PgRow(row)));
    return out;
  });
}

Result<int64_t> PgStore::LatestEventSeq() {
  return Tx("reading the latest event", [&](pqxx::work& w) -> Result<int64_t> {
    return Int(w.exec("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0]);
  });
}

// --- Features ----------------------------------------------------------------------

Result<Feature> PgStore::GetFeature(const std::string& id) {
  return Tx("reading feature " + id, [&](pqxx::work& w) { return GetFeatureTx(w, id, false); });
}

Result<Feature> PgStore::CreateFeature(Feature f) {
  AF_RETURN_IF_ERROR(CheckNewFeature(f));
  if (f.id.empty()) f.id = NewId("f");
  f.created_ms = f.updated_ms = NowMs();
  std::string feature_event;
  auto created = Tx("creating feature " + f.id, [&](pqxx::work& w) -> Result<Feature> {
    feature_event.clear();
    AF_RETURN_IF_ERROR(EnsureProjectTx(w, f.project, f.created_ms));
    PgExec(w,
           "INSERT INTO features (" AF_FEATURE_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
           f.id, f.project, f.title, f.status, f.priority, DumpJson(f.request), f.reason,
           f.created_ms, f.updated_ms);
    AF_RETURN_IF_ERROR(AppendEventTx(w, FeatureCreatedEvent(f), &feature_event).status());
    return f;
  });
  if (created.ok()) EventsCommitted(feature_event);
  return created;
}

Result<FeaturePage> PgStore::ListFeatures(const FeatureFilter& filter) {
  AF_RETURN_IF_ERROR(CheckFeatureFilter(filter));
  // A flag per filter ("any" when true): one statement text for every filter.
  const std::string status = filter.status.value_or("");
  const std::string project = filter.project.value_or("");
  const bool any_status = !filter.status, any_project = !filter.project;
  const std::string where = " WHERE ($1 OR status = $2) AND ($3 OR project = $4)";
  return Tx("listing features", [&](pqxx::work& w) -> Result<FeaturePage> {
    FeaturePage page;
    page.total = Int(PgExec(w, "SELECT COUNT(*) FROM features" + where, any_status, status,
                            any_project, project)[0][0]);
    for (const auto& r :
         PgExec(w,
                "SELECT " AF_FEATURE_COLS " FROM features" + where +
                    " ORDER BY created_ms DESC, id COLLATE \"C\" DESC LIMIT $5 OFFSET $6",
                any_status, status, any_project, project, filter.limit, filter.offset)) {
      page.features.push_back(ReadFeature(PgRow(r)));
    }
    return page;
  });
}

Result<int64_t> PgStore::TransitionFeature(const std::string& id,
                                           std::optional<std::string> expected_from,
                                           const std::string& to, const std::string& reason,
                                           const json& event_data) {
  AF_RETURN_IF_ERROR(CheckFeatureTransition(expected_from, to, event_data));
  std::string feature_event;
  auto seq = Tx("moving feature " + id + " to " + to, [&](pqxx::work& w) -> Result<int64_t> {
    feature_event.clear();
    // FOR UPDATE: the compare and the set are one step; a concurrent
    // transition waits here and then compares against the new status.
    AF_ASSIGN_OR_RETURN(Feature cur, GetFeatureTx(w, id, /*for_update=*/true));
    AF_RETURN_IF_ERROR(CheckExpectedStatus("feature", id, cur.status, expected_from, to));
    if (cur.status == to) return int64_t{0};
    int64_t now = NowMs();
    PgExec(w, "UPDATE features SET status = $1, reason = $2, updated_ms = $3 WHERE id = $4", to,
           reason, now, id);
    return AppendEventTx(w, FeatureStatusEvent(id, cur.status, to, reason, now, event_data),
                         &feature_event);
  });
  if (seq.ok() && *seq > 0) EventsCommitted(feature_event);
  return seq;
}

// --- Tasks -------------------------------------------------------------------------

Result<Task> PgStore::GetTask(const std::string& id) {
  return Tx("reading task " + id, [&](pqxx::work& w) { return GetTaskTx(w, id, false); });
}

Result<std::vector<Task>> PgStore::CreateTasks(const std::string& feature_id,
                                               std::vector<Task> tasks) {
  AF_ASSIGN_OR_RETURN(std::vector<DagNode> graph, PrepareTaskBatch(&tasks));
  std::string feature_event;
  auto created = Tx(
      "creating tasks of feature " + feature_id, [&](pqxx::work& w) -> Result<std::vector<Task>> {
        feature_event.clear();
        // FOR UPDATE: two batches for one feature take positions one after
        // the other.
        AF_RETURN_IF_ERROR(GetFeatureTx(w, feature_id, /*for_update=*/true).status());
        std::set<std::string> existing;
        int64_t position = 0;
        for (const auto& r :
             PgExec(w, "SELECT id, position FROM tasks WHERE feature_id = $1", feature_id)) {
          existing.insert(Text(r[0]));
          position = std::max(position, Int(r[1]) + 1);
        }
        AF_RETURN_IF_ERROR(CheckDependenciesKnown(graph, existing, feature_id));
        std::vector<Task> out = tasks;
        int64_t now = NowMs();
        for (Task& t : out) {
          t.feature_id = feature_id;
          t.created_ms = t.updated_ms = now;
          PgExec(w,
                 "INSERT INTO tasks (" AF_TASK_COLS
                 ", position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                 t.id, feature_id, t.title, t.description, t.role, t.status,
                 DumpJson(json(t.files)), t.attempts, t.assigned_agent, DumpJson(t.result),
                 t.created_ms, t.updated_ms, position++);
        }
        // After all inserts: a dependency's foreign key needs its target row.
        for (const Task& t : out) {
          int64_t dep_pos = 0;
          for (const std::string& d : t.dependencies) {
            PgExec(w,
                   "INSERT INTO task_dependencies (task_id, depends_on, position) "
                   "VALUES ($1, $2, $3)",
                   t.id, d, dep_pos++);
          }
        }
        // Events last: the event counter's lock is held from here to commit.
        for (const Task& t : out) {
          AF_RETURN_IF_ERROR(AppendEventTx(w, TaskCreatedEvent(t, now), &feature_event).status());
        }
        return out;
      });
  if (created.ok() && !created->empty()) EventsCommitted(feature_event);
  return created;
}

Result<std::vector<Task>> PgStore::ListTasks(const std::string& feature_id) {
  return Tx(
      "listing tasks of feature " + feature_id, [&](pqxx::work& w) -> Result<std::vector<Task>> {
        AF_RETURN_IF_ERROR(GetFeatureTx(w, feature_id, false).status());
        std::vector<Task> out;
        std::map<std::string, size_t> at;
        for (const auto& r :
             PgExec(w, "SELECT " AF_TASK_COLS " FROM tasks WHERE feature_id = $1 ORDER BY position",
                    feature_id)) {
          out.push_back(ReadTask(PgRow(r)));
          at[out.back().id] = out.size() - 1;
        }
        for (const auto& r : PgExec(w,
                                    "SELECT d.task_id, d.depends_on FROM task_dependencies d "
                                    "JOIN tasks t ON t.id = d.task_id WHERE t.feature_id = $1 "
                                    "ORDER BY d.task_id, d.position",
                                    feature_id)) {
          auto it = at.find(Text(r[0]));
          if (it != at.end()) out[it->second].dependencies.push_back(Text(r[1]));
        }
        return out;
      });
}

Result<int64_t> PgStore::TransitionTask(const std::string& id,
                                        std::optional<std::string> expected_from,
                                        const std::string& to, const TaskUpdate& update,
                                        const json& event_data) {
  AF_RETURN_IF_ERROR(CheckTaskTransition(expected_from, to, update, event_data));
  std::string feature_event;
  auto seq = Tx("moving task " + id + " to " + to, [&](pqxx::work& w) -> Result<int64_t> {
    feature_event.clear();
    AF_ASSIGN_OR_RETURN(Task cur, GetTaskTx(w, id, /*for_update=*/true));
    AF_RETURN_IF_ERROR(CheckExpectedStatus("task", id, cur.status, expected_from, to));
    std::string from = cur.status;
    cur.status = to;
    if (update.assigned_agent) cur.assigned_agent = *update.assigned_agent;
    if (update.result) cur.result = *update.result;
    cur.attempts += update.add_attempts;
    int64_t now = NowMs();
    PgExec(w,
           "UPDATE tasks SET status = $1, attempts = $2, assigned_agent = $3, result = $4, "
           "updated_ms = $5 WHERE id = $6",
           cur.status, cur.attempts, cur.assigned_agent, DumpJson(cur.result), now, id);
    if (from == to) return int64_t{0};
    return AppendEventTx(w, TaskStatusEvent(cur, from, now, event_data), &feature_event);
  });
  if (seq.ok() && *seq > 0) EventsCommitted(feature_event);
  return seq;
}

// --- Agents ------------------------------------------------------------------------

void PgStore::UpsertAgentTx(pqxx::work& w, const AgentRecord& a) {
  PgExec(w,
         "INSERT INTO agents (" AF_AGENT_COLS
         ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
         "ON CONFLICT (id) DO UPDATE SET role = excluded.role, state = excluded.state, "
         "last_heartbeat_ms = excluded.last_heartbeat_ms, "
         "current_task = excluded.current_task, counters = excluded.counters, "
         "host = excluded.host, pid = excluded.pid",
         a.id, a.role, a.state, a.last_heartbeat_ms, a.current_task, DumpJson(a.counters), a.host,
         a.pid);
}

Status PgStore::UpsertAgent(const AgentRecord& a) {
  AF_RETURN_IF_ERROR(CheckAgent(a));
  return Tx("recording agent " + a.id, [&](pqxx::work& w) -> Status {
    UpsertAgentTx(w, a);
    return Status::Ok();
  });
}

Result<int64_t> PgStore::UpsertAgentWithEvent(const AgentRecord& a, Event event) {
  AF_RETURN_IF_ERROR(CheckAgent(a));
  std::string feature_event;
  auto seq = Tx("recording agent " + a.id, [&](pqxx::work& w) {
    UpsertAgentTx(w, a);
    feature_event.clear();
    return AppendEventTx(w, event, &feature_event);
  });
  if (seq.ok()) EventsCommitted(feature_event);
  return seq;
}

Result<AgentRecord> PgStore::GetAgent(const std::string& id) {
  return Tx("reading agent " + id, [&](pqxx::work& w) -> Result<AgentRecord> {
    pqxx::result r = PgExec(w, "SELECT " AF_AGENT_COLS " FROM agents WHERE id = $1", id);
    if (r.empty()) {
      return NotFound("agent " + id + " not found", "list agents with 'agent-factory agents'");
    }
    return ReadAgent(PgRow(r[0]));
  });
}

Result<std::vector<AgentRecord>> PgStore::ListAgents() {
  return Tx("listing agents", [&](pqxx::work& w) -> Result<std::vector<AgentRecord>> {
    std::vector<AgentRecord> out;
    for (const auto& r : w.exec("SELECT " AF_AGENT_COLS " FROM agents ORDER BY id COLLATE \"C\"")) {
      out.push_back(ReadAgent(PgRow(r)));
    }
    return out;
  });
}

// --- LLM calls ---------------------------------------------------------------------

Result<LlmCall> PgStore::RecordLlmCall(LlmCall c) {
  AF_RETURN_IF_ERROR(CheckLlmCall(c));
  if (c.id.empty()) c.id = NewId("llm");
  if (c.created_ms == 0) c.created_ms = NowMs();
  return Tx("recording LLM call " + c.id, [&](pqxx::work& w) -> Result<LlmCall> {
    PgExec(w,
           "INSERT INTO llm_calls (" AF_LLM_COLS
           ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
           c.id, c.feature_id, c.task_id, c.role, c.provider, c.model, c.input_tokens,
           c.output_tokens, c.cost_usd, c.latency_ms, c.status, c.error, c.request_hash,
           DumpJson(c.response), c.created_ms);
    return c;
  });
}

Result<std::optional<LlmCall>> PgStore::FindRecordedLlmCall(const std::string& feature_id,
                                                            const std::string& hash) {
  if (hash.empty()) return std::optional<LlmCall>();
  return Tx("looking up a recorded LLM call", [&](pqxx::work& w) -> Result<std::optional<LlmCall>> {
    pqxx::result r = PgExec(w,
                            "SELECT " AF_LLM_COLS
                            " FROM llm_calls WHERE request_hash = $1 "
                            "AND feature_id = $2 AND status = 'ok' "
                            "ORDER BY created_ms DESC, id COLLATE \"C\" DESC LIMIT 1",
                            hash, feature_id);
    if (r.empty()) return std::optional<LlmCall>();
    return std::optional<LlmCall>(ReadLlmCall(PgRow(r[0])));
  });
}

Result<std::vector<LlmCall>> PgStore::ListLlmCalls(const std::string& feature_id) {
  return Tx(
      "listing LLM calls of feature " + feature_id,
      [&](pqxx::work& w) -> Result<std::vector<LlmCall>> {
        std::vector<LlmCall> out;
        for (const auto& r : PgExec(w,
                                    "SELECT " AF_LLM_COLS " FROM llm_calls WHERE feature_id = $1 "
                                    "ORDER BY created_ms, id COLLATE \"C\"",
                                    feature_id)) {
          out.push_back(ReadLlmCall(PgRow(r)));
        }
        return out;
      });
}

Result<UsageTotals> PgStore::FeatureUsage(const std::string& feature_id) {
  return Tx("summing usage of feature " + feature_id, [&](pqxx::work& w) -> Result<UsageTotals> {
    pqxx::result r = PgExec(w,
                            "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), "
                            "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0.0) "
                            "FROM llm_calls WHERE feature_id = $1",
                            feature_id);
    return UsageTotals{Int(r[0][0]), Int(r[0][1]), Int(r[0][2]), Real(r[0][3])};
  });
}

Result<double> PgStore::CostSince(int64_t since_ms) {
  return Tx("summing LLM cost", [&](pqxx::work& w) -> Result<double> {
    return Real(PgExec(w,
                       "SELECT COALESCE(SUM(cost_usd), 0.0) FROM llm_calls WHERE created_ms >= $1",
                       since_ms)[0][0]);
  });
}

Result<std::vector<UsageRow>> PgStore::UsageBreakdown(const UsageQuery& query) {
  return Tx("summing LLM usage", [&](pqxx::work& w) -> Result<std::vector<UsageRow>> {
    std::vector<UsageRow> rows;
    // Whole seconds, as SQLite's 'unixepoch' bucketing; the session is UTC.
    for (const auto& r : PgExec(
             w,
             "SELECT to_char(to_timestamp(created_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') "
             "AS day, role, provider, model, COUNT(*), COALESCE(SUM(input_tokens), 0), "
             "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0.0) "
             "FROM llm_calls WHERE ($1::text = '' OR feature_id = $1::text) AND created_ms >= $2 "
             "GROUP BY 1, 2, 3, 4 "
             "ORDER BY 1, role COLLATE \"C\", provider COLLATE \"C\", model COLLATE \"C\"",
             query.feature_id, query.since_ms)) {
      UsageRow u;
      u.day = Text(r[0]);
      u.role = Text(r[1]);
      u.provider = Text(r[2]);
      u.model = Text(r[3]);
      u.totals = {Int(r[4]), Int(r[5]), Int(r[6]), Real(r[7])};
      rows.push_back(std::move(u));
    }
    return rows;
  });
}

// --- API keys ----------------------------------------------------------------------

Result<ApiKey> PgStore::CreateApiKey(ApiKey k) {
  AF_RETURN_IF_ERROR(CheckApiKey(k));
  if (k.id.empty()) k.id = NewId("key");
  if (k.created_ms == 0) k.created_ms = NowMs();
  return Tx("creating API key " + Quote(k.name), [&](pqxx::work& w) -> Result<ApiKey> {
    PgExec(w, "INSERT INTO api_keys (" AF_KEY_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
           k.id, k.name, k.key_hash, k.prefix, DumpJson(json(k.permissions)), k.created_ms,
           k.last_used_ms, k.revoked);
    return k;
  });
}

Result<ApiKey> PgStore::FindApiKeyByHash(const std::string& key_hash) {
  return Tx("looking up an API key", [&](pqxx::work& w) -> Result<ApiKey> {
    pqxx::result r =
        PgExec(w, "SELECT " AF_KEY_COLS " FROM api_keys WHERE key_hash = $1", key_hash);
    if (r.empty())
      return NotFound("no API key matches", "create one with 'agent-factory keys create'");
    return ReadApiKey(PgRow(r[0]));
  });
}

Result<std::vector<ApiKey>> PgStore::ListApiKeys() {
  return Tx("listing API keys", [&](pqxx::work& w) -> Result<std::vector<ApiKey>> {
    std::vector<ApiKey> out;
    for (const auto& r :
         w.exec("SELECT " AF_KEY_COLS " FROM api_keys ORDER BY created_ms, id COLLATE \"C\"")) {
      out.push_back(ReadApiKey(PgRow(r)));
    }
    return out;
  });
}

Status PgStore::RevokeApiKey(const std::string& id) {
  return Tx("revoking API key " + id, [&](pqxx::work& w) -> Status {
    if (PgExec(w, "UPDATE api_keys SET revoked = TRUE WHERE id = $1", id).affected_rows() == 0) {
      return NotFound("API key " + id + " not found", "list keys with 'agent-factory keys list'");
    }
    return Status::Ok();
  });
}

Status PgStore::TouchApiKey(const std::string& id, int64_t used_ms) {
  return Tx("recording use of API key " + id, [&](pqxx::work& w) -> Status {
    if (PgExec(w, "UPDATE api_keys SET last_used_ms = $1 WHERE id = $2", used_ms, id)
            .affected_rows() == 0) {
      return NotFound("API key " + id + " not found", "list keys with 'agent-factory keys list'");
    }
    return Status::Ok();
  });
}

Result<int64_t> PgStore::CountActiveApiKeys() {
  return Tx("counting API keys", [&](pqxx::work& w) -> Result<int64_t> {
    return Int(w.exec("SELECT COUNT(*) FROM api_keys WHERE NOT revoked")[0][0]);
  });
}

// --- Health ------------------------------------------------------------------------

Status PgStore::Check() {
  AF_ASSIGN_OR_RETURN(MigrationStatus st, GetMigrationStatus());
  return CheckSchemaCurrent(st, redacted_url_);
}

Result<StoreStats> PgStore::Stats() {
  return Tx("counting for metrics", [&](pqxx::work& w) -> Result<StoreStats> {
    StoreStats stats;
    for (const auto& r : w.exec("SELECT status, COUNT(*) FROM features GROUP BY status "
                                "ORDER BY status COLLATE \"C\"")) {
      stats.features_by_status.push_back({Text(r[0]), Int(r[1])});
    }
    for (const auto& r :
         w.exec("SELECT k, n FROM (SELECT role || '/' || status AS k, COUNT(*) AS n "
                "FROM tasks GROUP BY k) t ORDER BY k COLLATE \"C\"")) {
      stats.tasks_by_role_status.push_back({Text(r[0]), Int(r[1])});
    }
    for (const auto& r :
         w.exec("SELECT provider, model, status, COUNT(*), COALESCE(SUM(input_tokens), 0), "
                "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0.0) "
                "FROM llm_calls GROUP BY provider, model, status "
                "ORDER BY provider COLLATE \"C\", model COLLATE \"C\", status COLLATE \"C\"")) {
      stats.llm_usage.push_back(
          {Text(r[0]), Text(r[1]), Text(r[2]), Int(r[3]), Int(r[4]), Int(r[5]), Real(r[6])});
    }
    return stats;
  });
}

// --- Backup ------------------------------------------------------------------------

namespace {

// The core tables, parents before children (the copy checks foreign keys).
const std::vector<BackupTable>& CoreBackupTables() {
  static const std::vector<BackupTable> kTables = {
      {"projects", "name, created_ms", "SELECT name, created_ms FROM projects"},
      {"features", AF_FEATURE_COLS, "SELECT " AF_FEATURE_COLS " FROM features"},
      {"tasks", AF_TASK_COLS ", position", "SELECT " AF_TASK_COLS ", position FROM tasks"},
      {"task_dependencies", "task_id, depends_on, position",
       "SELECT task_id, depends_on, position FROM task_dependencies"},
      {"events", AF_EVENT_COLS, "SELECT " AF_EVENT_COLS " FROM events ORDER BY seq"},
      {"agents", AF_AGENT_COLS, "SELECT " AF_AGENT_COLS " FROM agents"},
      {"llm_calls", AF_LLM_COLS, "SELECT " AF_LLM_COLS " FROM llm_calls"},
      {"api_keys", AF_KEY_COLS,
       "SELECT id, name, key_hash, prefix, permissions, created_ms, last_used_ms, "
       "revoked::int FROM api_keys"},
  };
  return kTables;
}

}  // namespace

Status PgStore::BackupTo(const std::string& path) {
  namespace fs = std::filesystem;
  AF_RETURN_IF_ERROR(CreateBackupFile(path));
  auto remove_copy = [&] {
    std::error_code rm;
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) fs::remove(path + suffix, rm);
  };
  // The SQLite schema, made by the SQLite store's own migrations.
  {
    StoreOptions sqlite_options;
    sqlite_options.url = "sqlite:" + path;
    auto made = OpenSqliteStore(path, sqlite_options);
    if (!made.ok()) {
      remove_copy();
      return made.status().WithContext("creating the backup copy " + path);
    }
  }
  sqlite3* dest = nullptr;
  auto fail = [&](const std::string& doing) {
    std::string detail = dest != nullptr ? sqlite3_errmsg(dest) : "cannot open";
    int rc = dest != nullptr ? sqlite3_errcode(dest) : SQLITE_CANTOPEN;
    if (dest != nullptr) sqlite3_close_v2(dest);
    dest = nullptr;
    remove_copy();
    if (rc == SQLITE_FULL) {
      return ResourceExhausted("disk full " + doing + " (backup copy " + path + ")",
                               "free some disk space, or write the backup to another file system");
    }
    return Internal(doing + " (backup copy " + path + "): " + detail,
                    "check the disk holding the copy, then retry");
  };
  if (sqlite3_open_v2(path.c_str(), &dest, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    return fail("opening the backup copy");
  }
  if (sqlite3_exec(dest, "PRAGMA journal_mode=DELETE; PRAGMA foreign_keys=OFF; BEGIN", nullptr,
                   nullptr, nullptr) != SQLITE_OK) {
    return fail("starting the backup copy");
  }
  std::vector<BackupTable> tables = CoreBackupTables();
  for (const BackupTable& t : KnowledgeBackupTables()) tables.push_back(t);
  Status copy_error;
  Status read = Status::Ok();
  try {
    auto conn = OpenConnection();
    if (!conn.ok()) {
      read = conn.status();
    } else {
      // One snapshot for every table: the copy is one moment's state while
      // other writers go on (they are neither blocked nor seen).
      pqxx::transaction<pqxx::isolation_level::repeatable_read, pqxx::readwrite_policy::read_only>
          snap(**conn);
      for (const BackupTable& t : tables) {
        int ncols = 1 + static_cast<int>(std::count(
                            t.sqlite_columns, t.sqlite_columns + strlen(t.sqlite_columns), ','));
        std::string marks;
        for (int i = 0; i < ncols; ++i) marks += i == 0 ? "?" : ", ?";
        std::string insert = std::string("INSERT OR REPLACE INTO ") + t.sqlite_table + " (" +
                             t.sqlite_columns + ") VALUES (" + marks + ")";
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(dest, insert.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
          copy_error = fail(std::string("preparing the copy of table ") + t.sqlite_table);
          break;
        }
        // Streamed in batches so a big table is never held whole in memory.
        pqxx::stateless_cursor<pqxx::cursor_base::read_only, pqxx::cursor_base::owned> cursor(
            snap, t.select, std::string("af_backup_") + t.sqlite_table, false);
        for (size_t at = 0;; at += 1000) {
          pqxx::result r = cursor.retrieve(at, at + 1000);
          for (const auto& row : r) {
            for (int i = 0; i < ncols; ++i) {
              if (i >= static_cast<int>(row.size()) || row[i].is_null()) {
                sqlite3_bind_null(stmt, i + 1);
              } else {
                sqlite3_bind_text(stmt, i + 1, row[i].c_str(), static_cast<int>(row[i].size()),
                                  SQLITE_TRANSIENT);
              }
            }
            if (sqlite3_step(stmt) != SQLITE_DONE) {
              sqlite3_finalize(stmt);
              stmt = nullptr;
              copy_error = fail(std::string("copying table ") + t.sqlite_table);
              break;
            }
            sqlite3_reset(stmt);
          }
          if (!copy_error.ok() || r.size() < 1000) break;
        }
        if (stmt != nullptr) sqlite3_finalize(stmt);
        if (!copy_error.ok()) break;
      }
      snap.commit();
      // The connection was opened for this copy alone (not from the pool:
      // a long copy must not starve other calls); it closes here.
    }
  } catch (const std::exception& e) {
    read = ErrorFrom("reading the database for the backup", e);
  }
  if (!copy_error.ok()) return copy_error;
  if (!read.ok()) {
    (void)fail("");
    return read;
  }
  // The counter that makes seqs never go back: events' AUTOINCREMENT. Rows
  // inserted with explicit seqs already raised it to the highest copied one.
  if (sqlite3_exec(dest, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail("finishing the backup copy");
  }
  if (sqlite3_close(dest) != SQLITE_OK) return fail("closing the backup copy");
  return Status::Ok();
}

// --- Open ---------------------------------------------------------------------------

Result<std::unique_ptr<Store>> OpenPgStore(const std::string& url, const StoreOptions& options) {
  if (options.busy_timeout.count() < 0) {
    return InvalidArgument("store busy_timeout must not be negative",
                           "use 0 or more milliseconds (default 5000)");
  }
  auto store = std::make_unique<PgStore>(url, options);
  AF_RETURN_IF_ERROR(store->Connect());
  if (options.migrate) {
    AF_ASSIGN_OR_RETURN(MigrationStatus status, store->GetMigrationStatus());
    AF_RETURN_IF_ERROR(CheckSchemaNotNewer(status).WithContext("database " + store->Describe()));
    AF_RETURN_IF_ERROR(store->Migrate().status());
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace af::store_internal
