// PostgreSQL-only behaviour of the memories and knowledge half of the store
// (the shared behaviour is the conformance suite, store_pg_test.cc): search
// input full of tsquery syntax, text PostgreSQL cannot hold as given, very
// long texts, and concurrent knowledge writers on several connections.

#include <atomic>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "af/store/store.h"
#include "support/pg_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

// A store on a new database; `url_out` (may be null) receives its URL.
std::unique_ptr<Store> OpenFresh(PgServer* server, std::string* url_out = nullptr) {
  auto url = server->CreateDatabase();
  EXPECT_TRUE(url.ok()) << url.status().ToString();
  if (!url.ok()) return nullptr;
  if (url_out != nullptr) *url_out = *url;
  StoreOptions options;
  options.url = *url;
  auto store = Store::Open(options);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

Memory MakeMemory(const std::string& content, const std::string& ns = "global") {
  Memory m;
  m.ns = ns;
  m.content = content;
  return m;
}

KbChunk MakeChunk(const std::string& content) {
  KbChunk c;
  c.content = content;
  c.line_start = 1;
  c.line_end = 1;
  return c;
}

KbDocument MakeDocument(const std::string& source) {
  KbDocument d;
  d.source = source;
  d.content_hash = "h";
  return d;
}

// The search statistics the store keeps by hand (kb_terms: how many rows
// hold each word; kb_meta: rows and words per table) equal what the rows
// say, counted from scratch.
void ExpectStatisticsMatchTheRows(const std::string& url) {
  pqxx::connection c(url);
  pqxx::work w(c);
  for (const auto& [table, column, totals] :
       {std::tuple{"kb_chunks", "chunks", "SELECT chunk_rows, chunk_words FROM kb_meta"},
        std::tuple{"memories", "memories", "SELECT memory_rows, memory_words FROM kb_meta"}}) {
    pqxx::row wrong =
        w.exec1(std::string("SELECT COUNT(*) FROM (SELECT u.lexeme, COUNT(*) AS n FROM ") + table +
                " x, unnest(x.fts) u GROUP BY u.lexeme) a FULL JOIN (SELECT term, " + column +
                " AS n FROM kb_terms WHERE " + column +
                " <> 0) t ON t.term = a.lexeme WHERE a.n IS DISTINCT FROM t.n");
    EXPECT_EQ(wrong[0].as<int64_t>(), 0) << "words whose " << column << " count is wrong";
    pqxx::row kept = w.exec1(totals);
    pqxx::row real = w.exec1(std::string("SELECT COUNT(*), COALESCE(SUM(words), 0) FROM ") + table);
    EXPECT_EQ(kept[0].as<int64_t>(), real[0].as<int64_t>()) << table << " rows";
    EXPECT_EQ(kept[1].as<int64_t>(), real[1].as<int64_t>()) << table << " words";
  }
}

// tsquery has its own syntax (& | ! <-> :* quotes, parentheses, weights);
// none of it may reach the server as syntax, nor make a search fail.
TEST(PgKnowledgeTest, TsquerySyntaxInSearchInputIsNeverAnError) {
  AF_PG_SERVER_OR_SKIP(server);
  auto store = OpenFresh(server);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AddMemory(MakeMemory("config & parser | lexer ! x:* 'q'")).ok());
  ASSERT_TRUE(store
                  ->ReplaceDocument(MakeDocument("a.md"),
                                    {MakeChunk("config & parser | lexer ! x:* 'q'")}, nullptr)
                  .ok());
  const std::vector<std::string> finds_config = {
      "config & !parser", "config | (",        "!config",         "config:*",
      "config:A",         "config <-> parser", "config <2>",      "'config'",
      "''config''",       "\\'config",         "config\\",        "(config))",
      "config & & |",     "'config' & 'x",     "config:*AB & !!", "config)|(!x",
  };
  for (const auto& q : finds_config) {
    auto m = store->SearchMemoryText({}, q, 10);
    ASSERT_TRUE(m.ok()) << "[" << q << "]: " << m.status().ToString();
    EXPECT_EQ(m->size(), 1u) << q;
    // Namespaces holding array-literal syntax are data too.
    auto c = store->SearchChunkText({"global", "it's \"quoted\" {a,b}", "\\"}, q, 10);
    ASSERT_TRUE(c.ok()) << "[" << q << "]: " << c.status().ToString();
    EXPECT_EQ(c->size(), 1u) << q;
    auto f = store->FindMemories({"global"}, q, 10);  // substring search: never an error
    EXPECT_TRUE(f.ok()) << "[" << q << "]: " << f.status().ToString();
  }
  for (const std::string q : {"& | ! <-> :* ( ) ' \\", "'", "''", "\\", ":*", "!", "<->"}) {
    auto m = store->SearchMemoryText({}, q, 10);
    ASSERT_TRUE(m.ok()) << "[" << q << "]: " << m.status().ToString();
    EXPECT_TRUE(m->empty()) << q;
    auto c = store->SearchChunkText({}, q, 10);
    ASSERT_TRUE(c.ok()) << "[" << q << "]: " << c.status().ToString();
    EXPECT_TRUE(c->empty()) << q;
  }
  // Array-literal syntax in namespaces, tags and ids is data too.
  MemoryFilter f;
  f.namespaces = {"{global}", "a\",\"b", "\\"};
  f.tags = {"}", "{\"x\"}"};
  f.types = {"insight\"}"};
  auto listed = store->ListMemories(f);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_TRUE(listed->empty());
  EXPECT_TRUE(store->TouchMemories({"{a,b}", "\"", "\\"}).ok());
}

// PostgreSQL's text holds neither NUL bytes nor invalid UTF-8: they are
// stored as U+FFFD instead of failing the write, and the rest stays
// searchable. Words longer than any query and texts longer than a tsvector's
// positions are indexed without error.
TEST(PgKnowledgeTest, TextPostgresCannotHoldAsGivenIsStoredAndSearchable) {
  AF_PG_SERVER_OR_SKIP(server);
  std::string url;
  auto store = OpenFresh(server, &url);
  ASSERT_NE(store, nullptr);
  Memory m =
      MakeMemory(std::string("nul\0glued and bad\xff\xfe"
                             "bytes",
                             24));
  m.tags = {std::string("t\0g", 3), "ok"};
  auto stored = store->AddMemory(m);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  auto got = store->GetMemory(stored->id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->content,
            "nul\xEF\xBF\xBDglued and bad\xEF\xBF\xBD\xEF\xBF\xBD"
            "bytes");
  // U+FFFD separates words as the bad byte did: "bad" and "bytes" stay words.
  EXPECT_EQ(got->tags, (std::vector<std::string>{"t\xEF\xBF\xBDg", "ok"}));
  // Unchanged (as stored) text keeps its label.
  Memory again = m;
  again.id = stored->id;
  auto same = store->UpdateMemory(again);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_EQ(same->vector_label, stored->vector_label);
  for (const char* word : {"bytes", "glued"}) {
    auto hits = store->SearchMemoryText({}, word, 10);
    ASSERT_TRUE(hits.ok()) << hits.status().ToString();
    EXPECT_EQ(hits->size(), 1u) << word;
  }
  MemoryFilter by_tag;
  by_tag.tags = {"ok"};
  auto tagged = store->ListMemories(by_tag);
  ASSERT_TRUE(tagged.ok()) << tagged.status().ToString();
  EXPECT_EQ(tagged->size(), 1u);

  std::string big;
  for (int i = 0; i < 40000; ++i) big += "w" + std::to_string(i % 5000) + " ";
  big += std::string(5000, 'x') + " needle";
  auto labels = store->ReplaceDocument(
      MakeDocument(std::string("bad\xff.md")),
      {MakeChunk(big), MakeChunk(std::string("chunk \0 with nul", 16))}, nullptr);
  ASSERT_TRUE(labels.ok()) << labels.status().ToString();
  auto needle = store->SearchChunkText({}, "needle", 10);
  ASSERT_TRUE(needle.ok()) << needle.status().ToString();
  EXPECT_EQ(needle->size(), 1u);
  auto nul = store->SearchChunkText({}, "nul", 10);
  ASSERT_TRUE(nul.ok()) << nul.status().ToString();
  EXPECT_EQ(nul->size(), 1u);
  ExpectStatisticsMatchTheRows(url);
}

// Several connections write memories and documents at once: every
// knowledge write takes the same lock first, so none fails with a deadlock
// and the generation and labels stay right.
TEST(PgKnowledgeTest, ConcurrentKnowledgeWritersNeverDeadlock) {
  AF_PG_SERVER_OR_SKIP(server);
  auto url = server->CreateDatabase();
  ASSERT_TRUE(url.ok()) << url.status().ToString();
  StoreOptions options;
  options.url = *url;
  auto first = Store::Open(options);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = Store::Open(options);  // another process's pool, as far as locks go
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  Store* stores[2] = {first->get(), second->get()};

  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    auto m = stores[0]->AddMemory(MakeMemory("shared memory " + std::to_string(i)));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ids.push_back(m->id);
  }
  auto g0 = stores[0]->KnowledgeGeneration();
  ASSERT_TRUE(g0.ok());

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Store* s = stores[t % 2];
      for (int i = 0; i < 15; ++i) {
        Status st = Status::Ok();
        const std::string& a = ids[(t + i) % ids.size()];
        const std::string& b = ids[(t + 2 * i + 1) % ids.size()];
        switch ((t + i) % 5) {
          case 0: {
            auto m = s->GetMemory(a);
            if (m.ok()) {
              m->content = "edited by " + std::to_string(t) + " at " + std::to_string(i);
              st = s->UpdateMemory(*m).status();
            }
            break;
          }
          case 1:
            st = s->TouchMemories({b, a, b});
            break;
          case 2:
            st = s->UpsertMemoryLink({a, b, "relates_to", 0.5});
            break;
          case 3:
            st = s->ReplaceDocument(MakeDocument("doc" + std::to_string(i % 3) + ".md"),
                                    {MakeChunk("text " + std::to_string(t)), MakeChunk("more")},
                                    nullptr)
                     .status();
            break;
          case 4: {
            // Deleted and made again under the same id, while others
            // update, touch and link it.
            st = s->DeleteMemory(a);
            Memory again = MakeMemory("again " + std::to_string(t));
            again.id = a;
            Status added = s->AddMemory(again).status();
            if (st.ok() || st.code() == Code::kNotFound) st = added;
            if (st.code() == Code::kAlreadyExists) st = Status::Ok();
            break;
          }
        }
        if (!st.ok() && st.code() != Code::kNotFound) {
          ADD_FAILURE() << "thread " << t << " step " << i << ": " << st.ToString();
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto g1 = stores[1]->KnowledgeGeneration();
  ASSERT_TRUE(g1.ok());
  EXPECT_GT(*g1, *g0);
  // Labels stay unique, and the full-text statistics agree with the rows:
  // every current chunk is found by its own words.
  auto labels = stores[1]->ChunkLabels();
  ASSERT_TRUE(labels.ok());
  auto counts = stores[1]->CountKnowledge();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->documents, 3);
  EXPECT_EQ(static_cast<int64_t>(labels->size()), counts->chunks);
  auto more = stores[0]->SearchChunkText({}, "more", 100);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->size(), 3u);
  ExpectStatisticsMatchTheRows(*url);
}

// BackupTo's SQLite copy holds the knowledge too: the rows with their labels,
// searchable there (SQLite's own full-text indexes fill as they go in), and
// a memory added to the copy gets a label above every one handed out here.
TEST(PgKnowledgeTest, BackupCopyHoldsTheKnowledgeSearchable) {
  AF_PG_SERVER_OR_SKIP(server);
  auto store = OpenFresh(server);
  ASSERT_NE(store, nullptr);
  Memory a = MakeMemory("backups keep the retry policy", "project:demo");
  a.tags = {"ops"};
  auto ma = store->AddMemory(a);
  ASSERT_TRUE(ma.ok()) << ma.status().ToString();
  auto mb = store->AddMemory(MakeMemory("archived note"));
  ASSERT_TRUE(mb.ok());
  mb->archived = true;
  ASSERT_TRUE(store->UpdateMemory(*mb).ok());
  ASSERT_TRUE(store->UpsertMemoryLink({ma->id, mb->id, "relates_to", 0.7}).ok());
  auto gone = store->AddMemory(MakeMemory("deleted, its label stays used"));
  ASSERT_TRUE(gone.ok());
  ASSERT_TRUE(store->DeleteMemory(gone->id).ok());
  auto labels = store->ReplaceDocument(
      MakeDocument("guide.md"), {MakeChunk("retry with backoff"), MakeChunk("other")}, nullptr);
  ASSERT_TRUE(labels.ok()) << labels.status().ToString();

  TempDir dir;
  const std::string copy = (dir.path() / "copy.db").string();
  Status backed = store->BackupTo(copy);
  ASSERT_TRUE(backed.ok()) << backed.ToString();
  StoreOptions options;
  options.url = "sqlite:" + copy;
  auto opened = Store::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& sqlite = **opened;

  auto got = sqlite.GetMemory(ma->id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->vector_label, ma->vector_label);
  EXPECT_EQ(got->tags, (std::vector<std::string>{"ops"}));
  auto hits = sqlite.SearchMemoryText({}, "retry", 10);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].label, ma->vector_label);
  auto chunks = sqlite.SearchChunkText({}, "retry", 10);
  ASSERT_TRUE(chunks.ok()) << chunks.status().ToString();
  ASSERT_EQ(chunks->size(), 1u);
  EXPECT_EQ((*chunks)[0].label, (*labels)[0]);
  auto counts = sqlite.CountKnowledge();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->documents, 1);
  EXPECT_EQ(counts->chunks, 2);
  EXPECT_EQ(counts->memories, 1);
  EXPECT_EQ(counts->archived_memories, 1);
  EXPECT_EQ(counts->links, 1);
  auto added = sqlite.AddMemory(MakeMemory("added to the copy"));
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_GT(added->vector_label, gone->vector_label);
}

}  // namespace
}  // namespace af::testing
