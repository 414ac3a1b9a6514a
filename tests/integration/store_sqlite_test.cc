// The SQLite backend: the shared conformance suite on a real file, plus what
// only SQLite has (files, WAL, migrations on disk).

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "af/store/store.h"
#include "support/store_conformance.h"
#include "support/test_util.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// One directory for the whole suite, one fresh file per test.
Result<std::unique_ptr<Store>> OpenFreshSqliteStore() {
  static TempDir dir;
  static std::atomic<int> counter{0};
  StoreOptions options;
  options.url =
      "sqlite:" + (dir.path() / ("conformance-" + std::to_string(++counter) + ".db")).string();
  return Store::Open(options);
}

}  // namespace
}  // namespace af

AF_INSTANTIATE_STORE_CONFORMANCE(Sqlite, [] { return af::OpenFreshSqliteStore(); });

namespace af {
namespace {

std::unique_ptr<Store> MustOpen(const std::string& url, bool migrate = true) {
  StoreOptions options;
  options.url = url;
  options.migrate = migrate;
  auto r = Store::Open(options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// Reads the schema with the raw C API, independent of the store.
std::vector<std::string> Tables(const fs::path& db) {
  std::vector<std::string> out;
  sqlite3* h = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(h,
                               "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                               "LIKE 'sqlite_%' ORDER BY name",
                               -1, &s, nullptr),
            SQLITE_OK);
  while (sqlite3_step(s) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

void RawExec(const fs::path& db, const char* sql) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(h, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(h);
}

TEST(SqliteStoreTest, MigrationsAreRecordedAndIdempotent) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  {
    auto store = MustOpen("sqlite:" + db.string());
    ASSERT_NE(store, nullptr);
    auto history = store->MigrationHistory();
    ASSERT_TRUE(history.ok());
    ASSERT_GE(history->size(), 3u);
    for (size_t i = 0; i < history->size(); ++i) {
      EXPECT_EQ((*history)[i].version, static_cast<int>(i) + 1);
      EXPECT_FALSE((*history)[i].name.empty());
    }
    auto again = store->Migrate();
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_TRUE(again->empty());
  }
  std::vector<std::string> tables = Tables(db);
  for (const char* t : {"agents", "api_keys", "events", "features", "llm_calls", "projects",
                        "schema_migrations", "task_dependencies", "tasks"}) {
    EXPECT_NE(std::find(tables.begin(), tables.end(), t), tables.end()) << t;
  }
  // Reopening applies nothing and keeps the same history.
  auto store = MustOpen("sqlite:" + db.string());
  ASSERT_NE(store, nullptr);
  auto st = store->GetMigrationStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->pending.empty());
  EXPECT_EQ(st->current_version, st->latest_version);
  EXPECT_EQ(store->MigrationHistory()->size(), static_cast<size_t>(st->latest_version));
}

TEST(SqliteStoreTest, MigrateFalseOnFreshFileReportsAllPendingAndCreatesNoTables) {
  TempDir dir;
  fs::path db = dir.path() / "fresh.db";
  auto store = MustOpen("sqlite:" + db.string(), /*migrate=*/false);
  ASSERT_NE(store, nullptr);
  auto st = store->GetMigrationStatus();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->current_version, 0);
  ASSERT_GE(st->latest_version, 3);
  ASSERT_EQ(st->pending.size(), static_cast<size_t>(st->latest_version));
  EXPECT_EQ(st->pending[0].version, 1);
  EXPECT_FALSE(st->pending[0].name.empty());
  EXPECT_TRUE(store->MigrationHistory()->empty());
  EXPECT_TRUE(Tables(db).empty());

  // Using it before migrating says what to do.
  auto r = store->GetFeature("f-1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().hint().find("db migrate"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(store->Check().ok());

  auto applied = store->Migrate();
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(applied->size(), static_cast<size_t>(st->latest_version));
  EXPECT_TRUE(store->Check().ok());
  EXPECT_TRUE(store->GetMigrationStatus()->pending.empty());
}

TEST(SqliteStoreTest, FileThatIsNotADatabaseGivesAClearErrorNamingThePath) {
  TempDir dir;
  fs::path bogus = dir.Write("notes.db", std::string(4096, 'x') + "this is not sqlite\n");
  StoreOptions options;
  options.url = "sqlite:" + bogus.string();
  auto r = Store::Open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find(bogus.string()), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("not a SQLite database"), std::string::npos);
  EXPECT_FALSE(r.status().hint().empty());
  // And the file is left as it was.
  EXPECT_EQ(testing::ReadFile(bogus), std::string(4096, 'x') + "this is not sqlite\n");
}

TEST(SqliteStoreTest, CorruptFileGivesAClearErrorNamingThePath) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  ASSERT_NE(MustOpen("sqlite:" + db.string()), nullptr);
  {
    // Keep the 100-byte header, wreck the schema page behind it.
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    std::string junk(3996, '\xff');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  StoreOptions options;
  options.url = "sqlite:" + db.string();
  auto r = Store::Open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find(db.string()), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("corrupt"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().hint().find("restore"), std::string::npos);
}

TEST(SqliteStoreTest, UncreatableDirectoryNamesThePath) {
  TempDir dir;
  fs::path file = dir.Write("plain-file", "x");
  StoreOptions options;
  options.url = "sqlite:" + (file / "sub" / "af.db").string();
  auto r = Store::Open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(file.string()), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(r.status().hint().empty());
}

TEST(SqliteStoreTest, CreatesParentDirectoriesAndDescribesTheAbsolutePath) {
  TempDir dir;
  fs::path db = dir.path() / "a" / "b" / "agent-factory.db";
  auto store = MustOpen("sqlite:" + db.string());
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(fs::exists(db));
  EXPECT_EQ(store->Describe(), "sqlite:" + db.string());
  auto mem = MustOpen("sqlite::memory:");
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(mem->Describe(), "sqlite::memory:");
  EXPECT_TRUE(mem->Check().ok());
}

TEST(SqliteStoreTest, PostgresUrlIsRefusedLoudlyWithoutThePassword) {
  StoreOptions options;
  options.url = "postgresql://af:s3cret@db.example:5432/af";
  auto r = Store::Open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("PostgreSQL backend is not built yet"), std::string::npos);
  EXPECT_NE(r.status().hint().find("sqlite"), std::string::npos);
  EXPECT_EQ(r.status().ToString().find("s3cret"), std::string::npos);

  options.url = "mysql://x";
  EXPECT_EQ(Store::Open(options).status().code(), Code::kInvalidArgument);
  options.url = "sqlite:";
  EXPECT_EQ(Store::Open(options).status().code(), Code::kInvalidArgument);
}

TEST(SqliteStoreTest, DataSurvivesCloseAndReopen) {
  TempDir dir;
  std::string url = "sqlite:" + (dir.path() / "af.db").string();
  std::string feature_id;
  int64_t last_seq = 0;
  {
    auto store = MustOpen(url);
    ASSERT_NE(store, nullptr);
    Feature f;
    f.title = "persist me";
    f.request = {{"title", "persist me"}};
    auto made = store->CreateFeature(f);
    ASSERT_TRUE(made.ok());
    feature_id = made->id;
    Task t;
    t.id = "t-keep";
    t.title = "keep";
    ASSERT_TRUE(store->CreateTasks(feature_id, {t}).ok());
    ASSERT_TRUE(store->TransitionFeature(feature_id, "queued", "planning", "", nullptr).ok());
    last_seq = *store->LatestEventSeq();
  }
  auto store = MustOpen(url);
  ASSERT_NE(store, nullptr);
  auto f = store->GetFeature(feature_id);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->title, "persist me");
  EXPECT_EQ(f->status, "planning");
  EXPECT_EQ(f->request["title"], "persist me");
  EXPECT_TRUE(store->GetTask("t-keep").ok());
  EXPECT_EQ(*store->LatestEventSeq(), last_seq);
  Event e;
  e.type = "after.reopen";
  EXPECT_GT(*store->AppendEvent(e), last_seq);
}

TEST(SqliteStoreTest, WalModeIsOn) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  auto store = MustOpen("sqlite:" + db.string());
  ASSERT_NE(store, nullptr);
  // The database header records WAL as file format versions 2/2 (bytes 18, 19).
  std::string header = testing::ReadFile(db).substr(0, 20);
  ASSERT_EQ(header.size(), 20u);
  EXPECT_EQ(header[18], 2);
  EXPECT_EQ(header[19], 2);
}

TEST(SqliteStoreTest, SeqNeverGoesBackAfterDeletes) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  std::string url = "sqlite:" + db.string();
  int64_t high = 0;
  {
    auto store = MustOpen(url);
    ASSERT_NE(store, nullptr);
    Event e;
    e.type = "x";
    for (int i = 0; i < 5; ++i) high = *store->AppendEvent(e);
  }
  RawExec(db, "DELETE FROM events");
  auto store = MustOpen(url);
  ASSERT_NE(store, nullptr);
  Event e;
  e.type = "y";
  EXPECT_GT(*store->AppendEvent(e), high);
}

TEST(SqliteStoreTest, NewerSchemaThanTheBinaryIsRefusedButCanBeInspected) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  std::string url = "sqlite:" + db.string();
  ASSERT_NE(MustOpen(url), nullptr);
  RawExec(db,
          "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 1)");
  StoreOptions options;
  options.url = url;
  auto r = Store::Open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("999"), std::string::npos);
  EXPECT_NE(r.status().message().find(db.string()), std::string::npos);
  EXPECT_NE(r.status().hint().find("upgrade"), std::string::npos);

  auto look = MustOpen(url, /*migrate=*/false);
  ASSERT_NE(look, nullptr);
  auto st = look->GetMigrationStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->current_version, 999);
  EXPECT_LT(st->latest_version, 999);
}

TEST(SqliteStoreTest, TwoStoresOnOneFileShareItLikeTwoProcesses) {
  TempDir dir;
  std::string url = "sqlite:" + (dir.path() / "shared.db").string();
  auto a = MustOpen(url);
  auto b = MustOpen(url);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<std::vector<int64_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    Store* s = t % 2 ? b.get() : a.get();
    threads.emplace_back([s, &got, t] {
      for (int i = 0; i < 100; ++i) {
        Event e;
        e.type = "shared";
        auto r = s->AppendEvent(e);
        if (r.ok()) got[t].push_back(*r);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<int64_t> all;
  for (const auto& v : got) {
    EXPECT_EQ(v.size(), 100u);
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), 400u);
  EventFilter f;
  auto seen_by_a = a->ListEvents(f);
  ASSERT_TRUE(seen_by_a.ok());
  EXPECT_EQ(seen_by_a->size(), 400u);
}

TEST(SqliteStoreTest, ClockSeamSetsTimes) {
  StoreOptions options;
  options.url = "sqlite::memory:";
  options.now_ms = [] { return int64_t{1700000000000}; };
  auto store = Store::Open(options);
  ASSERT_TRUE(store.ok());
  Feature f;
  f.title = "clocked";
  auto made = (*store)->CreateFeature(f);
  ASSERT_TRUE(made.ok());
  EXPECT_EQ(made->created_ms, 1700000000000);
  auto events = (*store)->ListEvents({});
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].ToJson()["ts"], "2023-11-14T22:13:20.000Z");
}

}  // namespace
}  // namespace af
