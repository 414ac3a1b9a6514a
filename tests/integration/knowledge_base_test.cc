// The knowledge base service against a real SQLite file and real index files:
// ingestion idempotency, hybrid search, namespaces, index recovery and the
// evolution rules (with a clock seam).
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>

#include "af/memory/knowledge.h"
#include "af/store/store.h"
#include "support/faulty_store.h"
#include "support/test_util.h"

namespace af {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kDay = 86'400'000;

class KnowledgeBaseTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenStore(); }

  void OpenStore() {
    StoreOptions o;
    o.url = "sqlite:" + (dir_.path() / "af.db").string();
    o.now_ms = [this] { return now_ms_; };
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  KnowledgeOptions Options() {
    KnowledgeOptions o;
    o.index_dir = dir_.path() / "kb";
    o.chunking.chunk_size = 400;
    o.chunking.overlap = 50;
    o.now_ms = [this] { return now_ms_; };
    return o;
  }

  std::unique_ptr<KnowledgeBase> Open() {
    auto kb = KnowledgeBase::Open(store_.get(), Options());
    EXPECT_TRUE(kb.ok()) << kb.status().ToString();
    return kb.ok() ? std::move(kb).value() : nullptr;
  }

  static std::vector<SearchResult> Find(KnowledgeBase& kb, const std::string& text,
                                        const std::string& mode = "hybrid", int n = 5) {
    SearchQuery q;
    q.text = text;
    q.mode = mode;
    q.max_results = n;
    auto r = kb.Search(q);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<SearchResult>{};
  }

  Memory Mem(const std::string& content, const std::string& ns = "project:demo", int importance = 5,
             const std::string& type = "insight") {
    Memory m;
    m.content = content;
    m.ns = ns;
    m.importance = importance;
    m.type = type;
    return m;
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  int64_t now_ms_ = 1'800'000'000'000;
};

TEST_F(KnowledgeBaseTest, PopulateIsIdempotentReplacesChangedFilesAndDropsDeletedOnes) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  dir_.Write("docs/install.md", "# Install\n\nRun make to build the retry scheduler.\n");
  dir_.Write("docs/usage.md", "# Usage\n\nStart the server with serve.\n\n## Flags\n\n--port\n");
  const std::string docs = (dir_.path() / "docs").string();

  auto first = kb->Populate({docs}, "global", {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->added, 2);
  EXPECT_GT(first->chunks_added, 0);

  auto again = kb->Populate({docs}, "global", {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->added, 0);
  EXPECT_EQ(again->unchanged, 2);
  EXPECT_EQ(again->chunks_added, 0);
  auto stats = kb->Stats();
  ASSERT_TRUE(stats.ok());
  const int64_t chunks = stats->counts.chunks;
  EXPECT_EQ(stats->counts.documents, 2);
  EXPECT_EQ(stats->chunk_vectors, chunks);

  dir_.Write("docs/install.md", "# Install\n\nRun cmake, then the exponential backoff tests.\n");
  auto changed = kb->Populate({docs}, "global", {});
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->changed, 1);
  EXPECT_GT(changed->chunks_removed, 0);
  EXPECT_TRUE(Find(*kb, "retry scheduler", "text").empty()) << "old chunks still found";
  auto found = Find(*kb, "exponential backoff");
  ASSERT_FALSE(found.empty());
  EXPECT_EQ(found[0].source, docs + "/install.md");

  fs::remove(dir_.path() / "docs/usage.md");
  auto removed = kb->Populate({docs}, "global", {});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->removed, 1);
  stats = kb->Stats();
  EXPECT_EQ(stats->counts.documents, 1);
  EXPECT_EQ(stats->chunk_vectors, stats->counts.chunks);
  EXPECT_TRUE(Find(*kb, "serve port", "text").empty());
}

// A link in a project (a sandboxed command can make one to any path) is not
// followed: the file it points to stays out of the knowledge base.
TEST_F(KnowledgeBaseTest, IngestingAProjectDoesNotFollowLinksOutOfIt) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  dir_.Write("outside/secret.txt", "walrus-canary-7741 is the identity key\n");
  dir_.Write("project/readme.md", "# Project\n\nThe retry scheduler lives here.\n");
  fs::create_symlink(dir_.path() / "outside" / "secret.txt", dir_.path() / "project" / "notes.md");
  fs::create_directories(dir_.path() / "project" / "sub");
  fs::create_symlink(dir_.path() / "outside", dir_.path() / "project" / "sub" / "linked-dir");
  auto report = kb->IngestDirectory(dir_.path() / "project", "project:demo", {});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->added, 1);
  EXPECT_FALSE(Find(*kb, "retry scheduler", "text").empty());
  EXPECT_TRUE(Find(*kb, "walrus-canary-7741", "text").empty());
  for (const auto& r : Find(*kb, "identity key walrus canary"))
    EXPECT_EQ(r.content.find("walrus-canary"), std::string::npos) << r.source;
}

TEST_F(KnowledgeBaseTest, SearchResultsNameSourceChunkAndScoreBestFirst) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  auto r1 = kb->IngestText("auth.md", "Tokens are hashed with SHA-256 before they are stored.",
                           "global", {});
  auto r2 = kb->IngestText("cache.md", "The cache evicts the least recently used entry first.",
                           "global", {});
  ASSERT_TRUE(r1.ok() && r2.ok());
  for (const std::string mode : {"hybrid", "text", "vector"}) {
    auto found = Find(*kb, "how are tokens hashed", mode);
    ASSERT_FALSE(found.empty()) << mode;
    EXPECT_EQ(found[0].source, "auth.md") << mode;
    EXPECT_EQ(found[0].chunk, 0);
    EXPECT_GT(found[0].score, 0);
    EXPECT_LE(found[0].score, 1.0);
    for (size_t i = 1; i < found.size(); ++i) EXPECT_GE(found[i - 1].score, found[i].score);
    auto j = found[0].ToJson();
    for (const char* k : {"id", "source", "chunk", "score", "content"})
      EXPECT_TRUE(j.contains(k)) << k;
  }
  // A near-miss in spelling is still found through the vectors, not BM25.
  EXPECT_TRUE(Find(*kb, "hashing tokenz", "text").empty());
  auto fuzzy = Find(*kb, "hashing tokenz", "vector");
  ASSERT_FALSE(fuzzy.empty());
  EXPECT_EQ(fuzzy[0].source, "auth.md");
  // Bad queries are refused, naming the problem.
  SearchQuery bad;
  bad.text = "  ";
  EXPECT_EQ(kb->Search(bad).status().code(), Code::kInvalidArgument);
  bad.text = "x";
  bad.max_results = 0;
  EXPECT_NE(kb->Search(bad).status().message().find("max_results"), std::string::npos);
}

TEST_F(KnowledgeBaseTest, RecallFallsBackFromSessionToProjectToGlobal) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  ASSERT_TRUE(kb->Remember(Mem("deploy with the blue green script", "global")).ok());
  ASSERT_TRUE(kb->Remember(Mem("deploy by pushing the release tag", "project:demo")).ok());
  ASSERT_TRUE(kb->Remember(Mem("deploy only after the smoke test", "session:demo:s1")).ok());
  ASSERT_TRUE(kb->Remember(Mem("deploy on fridays never", "project:other")).ok());
  SearchQuery q;
  q.text = "deploy";
  q.namespaces = {"session:demo:s1", "project:demo", "global"};
  auto r = kb->Recall(q);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].ns, "session:demo:s1");
  EXPECT_EQ((*r)[1].ns, "project:demo");
  EXPECT_EQ((*r)[2].ns, "global");
  q.namespaces = {"project:demo", "global"};
  r = kb->Recall(q);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].ns, "project:demo");
  // Type and tag filters.
  Memory tagged = Mem("deploy keys live in the vault", "global", 5, "configuration");
  tagged.tags = {"secrets", "ops"};
  ASSERT_TRUE(kb->Remember(tagged).ok());
  q.types = {"configuration"};
  q.tags = {"ops"};
  r = kb->Recall(q);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].memory->tags, (std::vector<std::string>{"secrets", "ops"}));
  EXPECT_EQ(kb->Remember(Mem("x", "project:")).status().code(), Code::kInvalidArgument);
}

// The fallback fills the slots the narrower namespace cannot fill with
// relevant results: a project's unrelated memories (only near neighbours of
// the query's vector) do not push out the global one that answers it.
TEST_F(KnowledgeBaseTest, AnswersFromTheWiderNamespaceBeatFillersFromTheNarrowerOne) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(kb->Remember(Mem("Feature 'calc helper " + std::to_string(i) +
                                 "' completed with 2 task(s); gates that passed: pytest"))
                    .ok());
  }
  ASSERT_TRUE(
      kb->Remember(Mem("Team convention: every Python module starts with a module docstring",
                       "global", 8, "preference"))
          .ok());
  SearchQuery q;
  q.text = "module docstring convention";
  q.namespaces = {"project:demo", "global"};
  q.max_results = 5;
  auto r = kb->Recall(q);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_FALSE(r->empty());
  EXPECT_EQ((*r)[0].ns, "global") << (*r)[0].content;
  // With a relevant project memory, the project's comes first again.
  ASSERT_TRUE(kb->Remember(Mem("calc modules keep their module docstring to one line")).ok());
  r = kb->Recall(q);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_GE(r->size(), 2u);
  EXPECT_EQ((*r)[0].ns, "project:demo") << (*r)[0].content;
  EXPECT_EQ((*r)[1].ns, "global") << (*r)[1].content;
}

TEST_F(KnowledgeBaseTest, TheNextOpenRepairsAnIndexThatMissedWritesOrKeptDeletedOnes) {
  {
    auto kb = Open();
    ASSERT_TRUE(kb);
    ASSERT_TRUE(kb->Remember(Mem("first memory about sqlite wal mode")).ok());
    ASSERT_TRUE(kb->IngestText("a.md", "alpha document about vectors", "global", {}).ok());
  }
  // Rows written behind the index's back (a crash between the database and
  // the index, or another process).
  ASSERT_TRUE(store_->AddMemory(Mem("second memory about postgres vacuum")).ok());
  auto gone = store_->ListMemories({});
  ASSERT_TRUE(gone.ok());
  std::string first_id;
  for (const auto& m : *gone)
    if (m.content.find("first") != std::string::npos) first_id = m.id;
  ASSERT_TRUE(store_->DeleteMemory(first_id).ok());

  auto kb = Open();
  ASSERT_TRUE(kb);
  auto stats = kb->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->memory_vectors, 1);
  SearchQuery q;
  q.text = "postgres vacuum";
  q.mode = "vector";
  auto r = kb->Recall(q);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->empty());
  EXPECT_NE((*r)[0].content.find("second"), std::string::npos);

  // A live knowledge base notices another writer's rows before searching.
  ASSERT_TRUE(store_->AddMemory(Mem("third memory about redis streams")).ok());
  q.text = "redis streams";
  r = kb->Recall(q);
  ASSERT_FALSE(r->empty());
  EXPECT_NE((*r)[0].content.find("third"), std::string::npos);

  // Index files deleted: rebuilt from the database at the next open.
  kb.reset();
  fs::remove_all(dir_.path() / "kb");
  kb = Open();
  ASSERT_TRUE(kb);
  stats = kb->Stats();
  EXPECT_EQ(stats->memory_vectors, 2);
  EXPECT_EQ(stats->chunk_vectors, stats->counts.chunks);
}

// Saving rewrites the whole index file (117 MB at 100,000 chunks), so texts
// added one at a time do not each save it; Flush does, and a file left
// behind is completed from the database at the next open.
TEST_F(KnowledgeBaseTest, IngestTextDoesNotRewriteTheIndexFileEveryTime) {
  auto saved_count = [&] {
    std::ifstream in(dir_.path() / "kb" / "chunks.hnsw.json");
    auto h = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    return h.is_object() && h.contains("count") ? h["count"].get<int64_t>() : -1;
  };
  {
    auto kb = Open();
    ASSERT_TRUE(kb);
    ASSERT_TRUE(kb->IngestText("a.md", "alpha document about vectors", "global", {}).ok());
    EXPECT_EQ(saved_count(), 1);  // the first one saves
    ASSERT_TRUE(kb->IngestText("b.md", "beta document about graphs", "global", {}).ok());
    ASSERT_TRUE(kb->IngestText("c.md", "gamma document about queues", "global", {}).ok());
    EXPECT_EQ(saved_count(), 1);  // the next ones, moments later, do not
    ASSERT_TRUE(kb->Flush().ok());
    EXPECT_EQ(saved_count(), 3);
    ASSERT_TRUE(kb->IngestText("d.md", "delta document about caches", "global", {}).ok());
    EXPECT_EQ(saved_count(), 3);
    // As after a crash: the files as they were before the destructor saved.
    for (const char* f : {"chunks.hnsw", "chunks.hnsw.json"})
      fs::copy_file(dir_.path() / "kb" / f, dir_.path() / f);
    kb.reset();
    for (const char* f : {"chunks.hnsw", "chunks.hnsw.json"})
      fs::rename(dir_.path() / f, dir_.path() / "kb" / f);
    EXPECT_EQ(saved_count(), 3);
  }
  auto kb = Open();
  ASSERT_TRUE(kb);
  auto stats = kb->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->chunk_vectors, 4);
  auto found = Find(*kb, "delta caches", "vector", 1);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].source, "d.md");
}

TEST_F(KnowledgeBaseTest, AnIndexBuiltByAnotherEmbedderIsRefusedUntilReindexed) {
  {
    auto kb = Open();
    ASSERT_TRUE(kb);
    ASSERT_TRUE(kb->IngestText("a.md", "alpha document about vectors", "global", {}).ok());
  }
  KnowledgeOptions other = Options();
  other.embedder.dimensions = 64;  // another embedder id
  auto refused = KnowledgeBase::Open(store_.get(), other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.status().hint().find("kb reindex"), std::string::npos)
      << refused.status().ToString();
  auto rebuild = KnowledgeBase::OpenForRebuild(store_.get(), other);
  ASSERT_TRUE(rebuild.ok()) << rebuild.status().ToString();
  ASSERT_TRUE((*rebuild)->Reindex().ok());
  rebuild->reset();
  auto reopened = KnowledgeBase::Open(store_.get(), other);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ((*reopened)->embedder().Id().find("64") != std::string::npos, true);
  EXPECT_FALSE(Find(**reopened, "vectors").empty());
}

TEST_F(KnowledgeBaseTest, GraphFollowsTypedLinksInBothDirectionsWithinDepth) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  auto a = kb->Remember(Mem("a: use WAL mode"));
  auto b = kb->Remember(Mem("b: readers never block writers"));
  auto c = kb->Remember(Mem("c: checkpoint on shutdown"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(kb->Link({a->id, b->id, "caused_by", 0.8}).ok());
  ASSERT_TRUE(kb->Link({c->id, b->id, "relates_to", 0.4}).ok());
  EXPECT_EQ(kb->Link({a->id, a->id, "relates_to", 0.5}).code(), Code::kInvalidArgument);
  auto g1 = kb->Graph(a->id, 1);
  ASSERT_TRUE(g1.ok()) << g1.status().ToString();
  EXPECT_EQ(g1->nodes.size(), 2u);
  EXPECT_EQ(g1->nodes[0].id, a->id);
  auto g2 = kb->Graph(a->id, 2);
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ(g2->nodes.size(), 3u);
  auto strong = kb->Graph(a->id, 2, 0.5);
  EXPECT_EQ(strong->nodes.size(), 2u);
  EXPECT_EQ(kb->Graph("mem-unknown", 1).status().code(), Code::kNotFound);
  EXPECT_EQ(kb->Graph(a->id, 9).status().code(), Code::kInvalidArgument);
  // Forgetting a memory takes its links.
  ASSERT_TRUE(kb->Forget(b->id).ok());
  auto after = kb->Graph(a->id, 2);
  EXPECT_EQ(after->nodes.size(), 1u);
}

TEST_F(KnowledgeBaseTest, EvolveDecaysArchivesAndConsolidatesWithoutDeleting) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  auto old_minor = kb->Remember(Mem("the staging host is called tarragon", "global", 3));
  auto old_major = kb->Remember(Mem("never force push to the release branch", "global", 9));
  auto dup_a = kb->Remember(Mem("run the unit tests with make test before every commit",
                                "project:demo", 6, "code_pattern"));
  now_ms_ += kDay;
  auto dup_b = kb->Remember(Mem("run the unit tests with make test before every commit!",
                                "project:demo", 4, "code_pattern"));
  auto other = kb->Remember(Mem("the api listens on port 8080", "project:demo"));
  ASSERT_TRUE(old_minor.ok() && old_major.ok() && dup_a.ok() && dup_b.ok() && other.ok());
  ASSERT_TRUE(kb->Link({old_major->id, other->id, "relates_to", 0.3}).ok());

  now_ms_ += 200 * kDay;  // long unused
  EvolveOptions dry;
  dry.dry_run = true;
  auto preview = kb->Evolve(dry);
  ASSERT_TRUE(preview.ok()) << preview.status().ToString();
  EXPECT_GT(preview->actions.size(), 0u);
  EXPECT_FALSE(store_->GetMemory(old_minor->id)->archived) << "dry run changed something";

  auto report = kb->Evolve({});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->consolidated, 1);
  auto a = store_->GetMemory(dup_a->id);
  auto b = store_->GetMemory(dup_b->id);
  ASSERT_TRUE(a.ok() && b.ok()) << "consolidation deleted a memory";
  // The more important one is kept; the other points at it.
  EXPECT_EQ(b->superseded_by, a->id);
  EXPECT_TRUE(a->superseded_by.empty());
  // Unused and unimportant: archived, not deleted. Important: decayed only.
  auto minor = store_->GetMemory(old_minor->id);
  ASSERT_TRUE(minor.ok());
  EXPECT_TRUE(minor->archived);
  auto major = store_->GetMemory(old_major->id);
  EXPECT_FALSE(major->archived);
  EXPECT_LT(major->importance, 9);
  EXPECT_GE(report->decayed, 1);
  // The 0.3 link decayed over 200 days (half-life 60) below 0.05: removed.
  EXPECT_EQ(report->links_removed, 1);
  // Neither the superseded nor the archived one is recalled any more.
  SearchQuery q;
  q.text = "unit tests make test commit";
  auto r = kb->Recall(q);
  ASSERT_TRUE(r.ok());
  for (const auto& x : *r) EXPECT_NE(x.id, dup_b->id);
  q.text = "staging host tarragon";
  r = kb->Recall(q);
  for (const auto& x : *r) EXPECT_NE(x.id, old_minor->id);
}

TEST_F(KnowledgeBaseTest, RememberIsIdempotentByIdAndUpdateReembeds) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  Memory m = Mem("the parser rejects tabs");
  m.id = "mem-fixed-id-0000000000001";
  auto first = kb->Remember(m);
  auto second = kb->Remember(m);
  ASSERT_TRUE(first.ok() && second.ok()) << second.status().ToString();
  EXPECT_EQ(first->id, second->id);
  EXPECT_EQ(kb->Stats()->counts.memories, 1);
  Memory changed = *first;
  changed.content = "the lexer accepts unicode identifiers";
  auto updated = kb->Update(changed);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_NE(updated->vector_label, first->vector_label);
  SearchQuery q;
  q.text = "unicode identifiers lexer";
  q.mode = "vector";
  auto r = kb->Recall(q);
  ASSERT_FALSE(r->empty());
  EXPECT_EQ((*r)[0].id, first->id);
  EXPECT_EQ(kb->Stats()->memory_vectors, 1);
}

// Recall weighs its candidates by their heads (no texts) and reads whole only
// the ones it returns: what it returns is the whole memory all the same, and
// each is marked accessed.
TEST_F(KnowledgeBaseTest, RecallReturnsWholeMemoriesAndMarksThemAccessed) {
  auto kb = Open();
  ASSERT_TRUE(kb);
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(kb->Remember(Mem("feature " + std::to_string(i) + " completed")).ok());
  Memory m = Mem("the feature with the parser completed", "project:demo", 9, "success");
  m.summary = "parser done";
  m.tags = {"outcome", "parser"};
  m.source = {{"feature", "f-parser"}};
  auto stored = kb->Remember(m);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  SearchQuery q;
  q.text = "parser feature completed";
  q.namespaces = {"project:demo", "global"};
  q.max_results = 3;
  for (const std::string mode : {"hybrid", "text", "vector"}) {
    q.mode = mode;
    auto r = kb->Recall(q);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->size(), 3u) << mode;
    EXPECT_EQ((*r)[0].id, stored->id) << mode;
    for (const auto& one : *r) {
      ASSERT_TRUE(one.memory.has_value());
      EXPECT_FALSE(one.content.empty()) << mode;
      EXPECT_EQ(one.content, one.memory->content) << mode;
    }
    const Memory& got = *(*r)[0].memory;
    EXPECT_EQ(got.content, m.content) << mode;
    EXPECT_EQ(got.summary, "parser done") << mode;
    EXPECT_EQ(got.tags, m.tags) << mode;
    EXPECT_EQ(got.source, m.source) << mode;
    EXPECT_EQ(got.importance, 9) << mode;
  }
  auto after = store_->GetMemory(stored->id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->access_count, 3);
}

// This process's own Remember keeps the indexes in step: the next search does
// not list every label to repair them. Another writer's row still makes it.
TEST_F(KnowledgeBaseTest, ASearchAfterRememberNeedsNoRepairButOneAfterAnotherWriterDoes) {
  std::atomic<int> listed{0};
  testing::FaultyStore store(store_.get(), [&](std::string_view method, bool) {
    if (method == "MemoryLabels") ++listed;
    return Status::Ok();
  });
  auto opened = KnowledgeBase::Open(&store, Options());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto& kb = **opened;
  SearchQuery q;
  q.text = "sqlite wal mode";
  ASSERT_TRUE(kb.Recall(q).ok());
  const int at_start = listed.load();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(kb.Remember(Mem("memory " + std::to_string(i) + " about sqlite wal mode")).ok());
    auto r = kb.Recall(q);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->size(), static_cast<size_t>(i + 1));
  }
  EXPECT_EQ(listed.load(), at_start);

  ASSERT_TRUE(store_->AddMemory(Mem("another writer's memory about redis streams")).ok());
  q.text = "redis streams";
  q.mode = "vector";
  auto r = kb.Recall(q);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_FALSE(r->empty());
  EXPECT_NE((*r)[0].content.find("another writer"), std::string::npos);
  EXPECT_GT(listed.load(), at_start);
}

// A project ingested again unchanged (the pipeline does it at every feature)
// does not rewrite the index files; one that changed is saved at once.
TEST_F(KnowledgeBaseTest, IngestingAnUnchangedDirectoryDoesNotRewriteTheIndexFiles) {
  auto saved_memories = [&] {
    std::ifstream in(dir_.path() / "kb" / "memories.hnsw.json");
    auto h = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    return h.is_object() && h.contains("count") ? h["count"].get<int64_t>() : -1;
  };
  auto kb = Open();
  ASSERT_TRUE(kb);
  dir_.Write("project/README.md", "# Demo\n\nA demo project about queues.\n");
  const fs::path root = dir_.path() / "project";
  auto first = kb->IngestDirectory(root, "project:demo", {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->added, 1);
  const int64_t before = saved_memories();
  ASSERT_GE(before, 0);
  ASSERT_TRUE(kb->Remember(Mem("queues drain before shutdown")).ok());  // not saved yet

  auto again = kb->IngestDirectory(root, "project:demo", {});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->unchanged, 1);
  EXPECT_EQ(saved_memories(), before);

  dir_.Write("project/README.md", "# Demo\n\nA demo project about queues and caches.\n");
  auto changed = kb->IngestDirectory(root, "project:demo", {});
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_EQ(changed->changed, 1);
  EXPECT_EQ(saved_memories(), before + 1);
}

}  // namespace
}  // namespace af
