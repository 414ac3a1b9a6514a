// The SQLite backend: the shared conformance suite on a real file, plus what
// only SQLite has (files, WAL, migrations on disk).

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "af/store/store.h"
#include "store/migrations_sqlite.h"
#include "store/sqlite_store.h"
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

// Column `col` of every row `sql` gives, read with the raw C API,
// independent of the store.
std::vector<std::string> RawColumn(const fs::path& db, const char* sql, int col = 0) {
  std::vector<std::string> out;
  sqlite3* h = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(h, sql, -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(h);
  while (sqlite3_step(s) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, col)));
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

std::vector<std::string> Tables(const fs::path& db) {
  return RawColumn(db,
                   "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                   "'sqlite_%' ORDER BY name");
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

TEST(SqliteStoreTest, OtherUrlsAreRoutedOrRefusedWithoutThePassword) {
  StoreOptions options;
  // A PostgreSQL URL goes to that backend: nothing listens here, so it is
  // Unavailable naming host:port but not the password.
  const std::string endpoint = "127.0.0.1:" + std::to_string(testing::FreePort());
  options.url = "postgresql://af:s3cret@" + endpoint + "/af";
  auto r = Store::Open(options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("PostgreSQL at " + endpoint), std::string::npos)
      << r.status().ToString();
  EXPECT_NE(r.status().hint().find("DATABASE_URL"), std::string::npos);
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

// The daily budget sums today's model cost before every model call: from an
// index alone, not each call's row with its request and response (which
// made every check slower as the day's calls grew).
// The plan of a statement the store runs, one step per line (EXPLAIN QUERY
// PLAN's detail column).
std::string PlanOf(const fs::path& db, const std::string& sql) {
  std::string plan;
  for (const auto& step : RawColumn(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), 3))
    plan += step + "\n";
  return plan;
}

TEST(SqliteStoreTest, TodaysCostIsSummedFromAnIndexAlone) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  auto store = MustOpen("sqlite:" + db.string());
  ASSERT_NE(store, nullptr);
  const std::string plan = PlanOf(db, store_internal::kCostSinceSql);
  EXPECT_NE(plan.find("COVERING INDEX llm_calls_cost_by_created"), std::string::npos) << plan;
}

// Whatever the namespaces, the full-text index is the outer loop and each
// match looks its memory up by label. The other order evaluates the MATCH
// again for every memory of the namespace, which SQLite chose by itself for
// one namespace (0.17 s at 1,000 memories).
TEST(SqliteStoreTest, MemoryTextSearchReadsTheFullTextIndexFirst) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  auto store = MustOpen("sqlite:" + db.string());
  ASSERT_NE(store, nullptr);
  for (size_t namespaces : {0, 1, 2, 3}) {
    const std::string plan = PlanOf(db, store_internal::MemoryTextSql(namespaces));
    const size_t fts = plan.find("SCAN memories_fts VIRTUAL TABLE");
    const size_t by_label = plan.find("SEARCH m USING INDEX memories_by_label");
    EXPECT_EQ(fts, 0u) << namespaces << " namespace(s):\n" << plan;
    EXPECT_NE(by_label, std::string::npos) << namespaces << " namespace(s):\n" << plan;
  }
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

// Reads go to their own connections: a reader does not wait for a write
// that is still in progress in this process. The events listener runs on the
// writing thread while the store still serialises writers, so a read started
// from it must finish before the listener returns (with one connection behind
// one mutex it would wait for the write, i.e. forever, and time out here).
TEST(SqliteStoreTest, ReadsDoNotWaitBehindAWriteInProgress) {
  TempDir dir;
  StoreOptions options;
  options.url = "sqlite:" + (dir.path() / "readers.db").string();
  auto store = Store::Open(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto f = (*store)->CreateFeature(Feature{.title = "read me"});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  std::atomic<int> listened{0};
  std::atomic<bool> read_in_time{false};
  std::string read_status;
  // Outlives the listener: without read connections the read can only end
  // after the write, which waits for the listener.
  std::future<size_t> read;
  (*store)->SetEventsListener([&] {
    if (listened++ > 0) return;
    read = std::async(std::launch::async, [&] {
      auto got = (*store)->GetFeature(f->id);
      auto events = (*store)->ListEvents(EventFilter{});
      read_status = got.ok() ? got->status : got.status().ToString();
      return events.ok() ? events->size() : size_t{0};
    });
    read_in_time = read.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  });
  ASSERT_TRUE((*store)->AppendEvent(Event{.type = "note", .feature_id = f->id}).ok());
  ASSERT_TRUE(read.valid());
  // The snapshot read before the commit's listener ran holds the created
  // event and the note (committed before the listener is called).
  EXPECT_EQ(read.get(), 2u);
  EXPECT_TRUE(read_in_time) << "a read waited for the write in progress";
  EXPECT_EQ(read_status, "queued");
  (*store)->SetEventsListener(nullptr);
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

// Both full-text indexes agree with the rows they index (FTS5's own check of
// an external-content table against its table).
void ExpectFullTextInSync(const fs::path& db) {
  RawExec(db, "INSERT INTO kb_chunks_fts (kb_chunks_fts, rank) VALUES ('integrity-check', 1)");
  RawExec(db, "INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)");
}

TEST(SqliteStoreTest, MigratingAVersion4DatabaseKeepsItsMemoriesAndLabelsThem) {
  TempDir dir;
  fs::path db = dir.path() / "v4.db";
  // A database as a version-4 binary left it, with memories in it.
  RawExec(db,
          "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
          "applied_at INTEGER NOT NULL)");
  for (const auto& m : store_internal::SqliteMigrations()) {
    if (m.version > 4) break;
    RawExec(db, m.sql);
    RawExec(db, ("INSERT INTO schema_migrations VALUES (" + std::to_string(m.version) + ", '" +
                 m.name + "', 1)")
                    .c_str());
  }
  RawExec(db,
          "INSERT INTO memories (id, namespace, content, summary, type, importance, tags, source, "
          "created_ms, updated_ms, accessed_ms, access_count, archived) VALUES "
          "('mem-a', 'global', 'parse_config reads the file', '', 'insight', 5, '[\"cfg\"]', "
          "'{}', 1, 1, 0, 0, 0), "
          "('mem-b', 'project:demo', 'old config lore', 'lore', 'insight', 3, '[]', '{}', 2, 2, "
          "0, 0, 1), "
          "('mem-c', 'global', 'prefer small commits', '', 'preference', 7, '[]', '{}', 3, 3, 0, "
          "4, 0)");

  auto store = MustOpen("sqlite:" + db.string());
  ASSERT_NE(store, nullptr);
  auto st = store->GetMigrationStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->pending.empty());
  std::set<int64_t> labels;
  for (const char* id : {"mem-a", "mem-b", "mem-c"}) {
    auto m = store->GetMemory(id);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_GT(m->vector_label, 0) << id;
    EXPECT_TRUE(m->superseded_by.empty());
    labels.insert(m->vector_label);
  }
  EXPECT_EQ(labels.size(), 3u);
  EXPECT_EQ(store->GetMemory("mem-c")->access_count, 4);
  // The old rows are in the full-text index; archived ones are not found.
  auto hits = store->SearchMemoryText({}, "config", 10);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].label, store->GetMemory("mem-a")->vector_label);
  auto listed = store->MemoryLabels();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);
  // New labels follow the old ones.
  Memory m;
  m.content = "new";
  auto added = store->AddMemory(m);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_GT(added->vector_label, *labels.rbegin());
  EXPECT_TRUE(store->KnowledgeGeneration().ok());
  store.reset();
  ExpectFullTextInSync(db);
}

TEST(SqliteStoreTest, FullTextIndexesNeverDriftFromTheirRows) {
  TempDir dir;
  fs::path db = dir.path() / "af.db";
  {
    auto store = MustOpen("sqlite:" + db.string());
    ASSERT_NE(store, nullptr);
    std::vector<Memory> mems;
    for (int i = 0; i < 20; ++i) {
      Memory m;
      m.content = "memory number " + std::to_string(i) + " about config";
      m.tags = {"t" + std::to_string(i % 3)};
      auto r = store->AddMemory(m);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      mems.push_back(*r);
    }
    for (int i = 0; i < 20; i += 2) {
      Memory m = mems[i];
      m.content += " revised";
      m.archived = i % 4 == 0;
      ASSERT_TRUE(store->UpdateMemory(m).ok());
    }
    ASSERT_TRUE(store->TouchMemories({mems[1].id, mems[3].id}).ok());
    for (int i = 1; i < 20; i += 5) ASSERT_TRUE(store->DeleteMemory(mems[i].id).ok());
    for (int round = 0; round < 3; ++round) {
      for (int d = 0; d < 5; ++d) {
        KbDocument doc;
        doc.source = "doc" + std::to_string(d) + ".md";
        std::vector<KbChunk> chunks;
        for (int c = 0; c < 10 + round; ++c) {
          KbChunk k;
          k.heading = "# part " + std::to_string(c);
          k.content = "round " + std::to_string(round) + " chunk " + std::to_string(c);
          chunks.push_back(k);
        }
        ASSERT_TRUE(store->ReplaceDocument(doc, chunks, nullptr).ok());
      }
    }
    auto doc = store->FindDocument("global", "doc0.md");
    ASSERT_TRUE(doc.ok());
    ASSERT_TRUE(store->DeleteDocument(doc->id).ok());
    auto hits = store->SearchChunkText({}, "round", 1000);
    ASSERT_TRUE(hits.ok());
    EXPECT_EQ(hits->size(), 4u * 12u);  // only the last round's chunks, doc0 gone
  }
  ExpectFullTextInSync(db);
}

// The knowledge base at the size it must handle: 100,000 chunks, stored in
// bulk and searched. How fast is a benchmark's question (bench/kb_bench.cc,
// bench/RESULTS.md), not this test's: it only prints the figures it saw.
TEST(SqliteStoreTest, HundredThousandChunksAreStoredAndSearched) {
  TempDir dir;
  auto store = MustOpen("sqlite:" + (dir.path() / "big.db").string());
  ASSERT_NE(store, nullptr);
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  uint64_t rng = 88172645463325252ull;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  constexpr int kDocs = 20, kChunksPerDoc = 5000, kWords = 24;
  double insert_s = 0;
  for (int d = 0; d < kDocs; ++d) {
    KbDocument doc;
    doc.source = "src/file" + std::to_string(d) + ".cc";
    std::vector<KbChunk> chunks(kChunksPerDoc);
    for (auto& c : chunks) {
      c.heading = "fn_" + std::to_string(next() % 20000);
      for (int w = 0; w < kWords; ++w) c.content += "w" + std::to_string(next() % 5000) + " ";
    }
    auto start = Clock::now();
    auto r = store->ReplaceDocument(doc, std::move(chunks), nullptr);
    insert_s += seconds(Clock::now() - start);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  double rate = kDocs * kChunksPerDoc / insert_s;
  auto start = Clock::now();
  int searches = 0;
  for (const char* q : {"w17", "w4242 fn_10", "w1 w2 w3 w4 w5", "nothing_matches_this"}) {
    for (const auto& ns : std::vector<std::vector<std::string>>{{}, {"global"}}) {
      auto hits = store->SearchChunkText(ns, q, 20);
      ASSERT_TRUE(hits.ok()) << hits.status().ToString();
      // Each of the 5,000 words is in about 480 chunks: a full page, or none.
      EXPECT_EQ(hits->size(), std::string(q) == "nothing_matches_this" ? 0u : 20u) << q;
      ++searches;
    }
  }
  double search_ms = seconds(Clock::now() - start) * 1000 / searches;
  std::printf("100k chunks: %.0f chunks/s stored, %.1f ms per search\n", rate, search_ms);
  auto counts = store->CountKnowledge();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->chunks, kDocs * kChunksPerDoc);
}

// Chunk search when the words are common: the rows holding every word are
// searched first and, when there are enough of them, are the answer; when
// there are too few, the OR of the words still answers in full, those rows
// first. A query of one common word only, or of words no row holds
// together, answers too.
TEST(SqliteStoreTest, ChunkSearchOfCommonWordsTriesTheirAndThenTheirOr) {
  TempDir dir;
  auto store = MustOpen("sqlite:" + (dir.path() / "and.db").string());
  ASSERT_NE(store, nullptr);
  // 700 rows hold "apple", 700 "pear"; 80 of them both (labels noted); 30
  // hold "plum" and "apple" only.
  std::vector<KbChunk> chunks;
  for (int i = 0; i < 1400; ++i) {
    KbChunk c;
    c.content = (i < 700 ? "apple filler " : "pear filler ") + std::to_string(i);
    if (i >= 620 && i < 700) c.content += " pear";
    if (i < 30) c.content += " plum";
    chunks.push_back(c);
  }
  KbDocument doc;
  doc.source = "fruit.txt";
  std::vector<int64_t> labels;
  {
    auto r = store->ReplaceDocument(doc, chunks, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    labels = *r;
  }
  const std::set<int64_t> both(labels.begin() + 620, labels.begin() + 700);

  // 80 rows hold both words: asked for 50, they are the answer.
  auto hits = store->SearchChunkText({}, "apple pear", 50);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 50u);
  for (const auto& h : *hits) EXPECT_EQ(both.count(h.label), 1u) << h.label;
  // Asked for 100, there are too few: the OR answers, the 80 first.
  hits = store->SearchChunkText({"global"}, "apple pear", 100);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 100u);
  for (size_t i = 0; i < 80; ++i) EXPECT_EQ(both.count((*hits)[i].label), 1u) << i;
  for (size_t i = 80; i < 100; ++i) EXPECT_EQ(both.count((*hits)[i].label), 0u) << i;
  for (size_t i = 1; i < hits->size(); ++i) EXPECT_GE((*hits)[i - 1].score, (*hits)[i].score);
  // No row holds "plum" and "pear": the OR still finds the plums first.
  hits = store->SearchChunkText({}, "plum pear", 10);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 10u);
  for (const auto& h : *hits) EXPECT_LT(h.label, labels[30]);
  // One common word.
  hits = store->SearchChunkText({}, "filler", 20);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 20u);
}

// No chunk search scores more than 3,000 rows: a query of a word 4,000 rows
// hold ranks the newest 3,000 of them, so its cost stays bounded however
// common its words are.
TEST(SqliteStoreTest, ChunkSearchScoresAtMostTheNewest3000Rows) {
  TempDir dir;
  auto store = MustOpen("sqlite:" + (dir.path() / "cap.db").string());
  ASSERT_NE(store, nullptr);
  std::vector<KbChunk> chunks;
  for (int i = 0; i < 4000; ++i) {
    KbChunk c;
    // The oldest rows are the best matches by BM25 (the word twice, short).
    c.content = i < 500 ? "lemon lemon" : "lemon and a much longer text " + std::to_string(i);
    chunks.push_back(c);
  }
  KbDocument doc;
  doc.source = "lemons.txt";
  auto labels = store->ReplaceDocument(doc, chunks, nullptr);
  ASSERT_TRUE(labels.ok()) << labels.status().ToString();
  auto hits = store->SearchChunkText({}, "lemon", 10);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 10u);
  for (const auto& h : *hits) EXPECT_GE(h.label, (*labels)[1000]) << h.label;
  // Asking for more than that is still answered in full.
  hits = store->SearchChunkText({}, "lemon", 1000);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 1000u);
}

}  // namespace
}  // namespace af
