// `db import`: a SQLite database moved into PostgreSQL keeps every record a
// running system needs (features, tasks, events with their seqs, recorded
// model answers, API keys, memories, links, knowledge documents), and new
// events continue after the imported ones. Skipped, loudly, without
// PostgreSQL.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "af/store/import.h"
#include "af/store/store.h"
#include "support/pg_server.h"
#include "support/test_util.h"

namespace af {
namespace {

using testing::PgServer;
using testing::TempDir;

std::unique_ptr<Store> MustOpen(const std::string& url, bool migrate = true) {
  StoreOptions options;
  options.url = url;
  options.migrate = migrate;
  auto r = Store::Open(options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// A SQLite database with a bit of everything.
void Fill(Store& s) {
  auto f = s.CreateFeature(Feature{.project = "textkit", .title = "Slugify"});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  Task a{.id = "t-a", .title = "write", .role = "coder"};
  Task b{.id = "t-b", .title = "test", .role = "tester"};
  b.dependencies = {"t-a"};
  ASSERT_TRUE(s.CreateTasks(f->id, {a, b}).ok());
  ASSERT_TRUE(s.TransitionFeature(f->id, "queued", "planning", "", {{"n", 1}}).ok());
  ASSERT_TRUE(s.AppendEvent(Event{.type = "note", .feature_id = f->id, .data = {{"x", "é"}}}).ok());
  LlmCall call;
  call.feature_id = f->id;
  call.role = "coder";
  call.provider = "openai";
  call.model = "m";
  call.status = "ok";
  call.request_hash = "h1";
  call.response = {{"text", "recorded"}};
  call.input_tokens = 10;
  ASSERT_TRUE(s.RecordLlmCall(call).ok());
  ApiKey key;
  key.name = "ci";
  key.key_hash = "hash-1";
  key.permissions = {"read"};
  ASSERT_TRUE(s.CreateApiKey(key).ok());
  auto m1 = s.AddMemory(Memory{.content = "Use pathlib for paths", .tags = {"python"}});
  auto m2 = s.AddMemory(Memory{.ns = "project:textkit", .content = "Slugs are lowercase"});
  ASSERT_TRUE(m1.ok() && m2.ok());
  ASSERT_TRUE(s.UpsertMemoryLink(MemoryLink{.from_id = m1->id, .to_id = m2->id}).ok());
  KbDocument doc{.ns = "project:textkit", .source = "docs/guide.md", .content_hash = "abc"};
  std::vector<KbChunk> chunks(2);
  chunks[0].content = "The slugify function turns titles into slugs";
  chunks[1].content = "Unicode letters are transliterated";
  chunks[1].ordinal = 1;
  ASSERT_TRUE(s.ReplaceDocument(doc, chunks, nullptr).ok());
}

TEST(PgImportTest, ASqliteDatabaseMovesIntoPostgresWithItsSeqsAndRecordings) {
  AF_PG_SERVER_OR_SKIP(server);
  TempDir dir;
  const std::string file = (dir.path() / "agent-factory.db").string();
  auto sqlite = MustOpen("sqlite:" + file);
  ASSERT_TRUE(sqlite);
  Fill(*sqlite);
  auto url = server->CreateDatabase();
  ASSERT_TRUE(url.ok()) << url.status().ToString();
  auto pg = MustOpen(*url);
  ASSERT_TRUE(pg);

  auto report = ImportSqliteDatabase(file, *pg);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->features, 1);
  EXPECT_EQ(report->tasks, 2);
  EXPECT_EQ(report->llm_calls, 1);
  EXPECT_EQ(report->api_keys, 1);
  EXPECT_EQ(report->memories, 2);
  EXPECT_EQ(report->links, 1);
  EXPECT_EQ(report->documents, 1);
  EXPECT_EQ(report->chunks, 2);

  auto before = sqlite->ListEvents(EventFilter{});
  auto after = pg->ListEvents(EventFilter{});
  ASSERT_TRUE(before.ok() && after.ok());
  ASSERT_EQ(before->size(), after->size());
  EXPECT_EQ(report->events, static_cast<int64_t>(before->size()));
  for (size_t i = 0; i < before->size(); ++i) {
    EXPECT_EQ((*before)[i].seq, (*after)[i].seq);
    EXPECT_EQ((*before)[i].type, (*after)[i].type);
    EXPECT_EQ((*before)[i].data, (*after)[i].data);
  }
  auto features = pg->ListFeatures(FeatureFilter{});
  ASSERT_TRUE(features.ok());
  ASSERT_EQ(features->features.size(), 1u);
  EXPECT_EQ(features->features[0].status, "planning");
  EXPECT_EQ(features->features[0].project, "textkit");
  auto tasks = pg->ListTasks(features->features[0].id);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 2u);
  EXPECT_EQ((*tasks)[1].dependencies, std::vector<std::string>{"t-a"});
  // A resumed feature replays the recorded answer instead of paying again.
  auto recorded = pg->FindRecordedLlmCall(features->features[0].id, "h1");
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_EQ((**recorded).response["text"], "recorded");
  auto key = pg->FindApiKeyByHash("hash-1");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->name, "ci");
  // Knowledge is searchable in its new home.
  auto hits = pg->SearchChunkText({"project:textkit"}, "slugify titles", 5);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  EXPECT_FALSE(hits->empty());
  auto memories = pg->SearchMemoryText({"global"}, "pathlib", 5);
  ASSERT_TRUE(memories.ok());
  EXPECT_EQ(memories->size(), 1u);
  auto links = pg->AllMemoryLinks();
  ASSERT_TRUE(links.ok());
  EXPECT_EQ(links->size(), 1u);
  // New events continue above the imported seqs.
  auto next = pg->AppendEvent(Event{.type = "after.import"});
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, before->back().seq + 1);

  // A second import into the now non-empty database changes nothing.
  auto again = ImportSqliteDatabase(file, *pg);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("already holds data"), std::string::npos);
  auto count = pg->ListFeatures(FeatureFilter{});
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->total, 1);
}

TEST(PgImportTest, RefusesASqliteTargetAMissingFileAndAnUnmigratedSource) {
  AF_PG_SERVER_OR_SKIP(server);
  TempDir dir;
  auto sqlite_target = MustOpen("sqlite:" + (dir.path() / "target.db").string());
  ASSERT_TRUE(sqlite_target);
  auto to_sqlite = ImportSqliteDatabase((dir.path() / "target.db").string(), *sqlite_target);
  ASSERT_FALSE(to_sqlite.ok());
  EXPECT_NE(to_sqlite.status().hint().find("DATABASE_URL=postgresql://"), std::string::npos);

  auto url = server->CreateDatabase();
  ASSERT_TRUE(url.ok());
  auto pg = MustOpen(*url);
  ASSERT_TRUE(pg);
  auto missing = ImportSqliteDatabase((dir.path() / "nope.db").string(), *pg);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);

  const std::string old = (dir.path() / "old.db").string();
  ASSERT_TRUE(MustOpen("sqlite:" + old, /*migrate=*/false));  // no schema at all
  auto unmigrated = ImportSqliteDatabase(old, *pg);
  ASSERT_FALSE(unmigrated.ok());
  EXPECT_NE(unmigrated.status().hint().find("db migrate"), std::string::npos);
  auto seq = pg->LatestEventSeq();
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 0);
}

}  // namespace
}  // namespace af
