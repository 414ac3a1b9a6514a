// The OpenAI-compatible embeddings client against a real HTTP server on
// loopback (tests/support/fake_embeddings_server.h) through libcurl.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "af/memory/embedder.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"
#include "support/fake_embeddings_server.h"
#include "support/test_util.h"

namespace af {
namespace {

using testing::EmbeddingsFault;
using testing::FakeEmbeddingsServer;

constexpr const char* kKey = "sk-embed-test-secret-0123456789";

std::unique_ptr<Embedder> Client(const std::string& base, int batch = 64,
                                 const std::string& key = kKey) {
  EmbedderOptions o;
  o.base_url = base;
  o.model = "fake-embed";
  o.api_key = key;
  o.batch_size = batch;
  o.timeout = std::chrono::seconds(10);
  auto e = Embedder::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

std::vector<float> Unit(std::vector<float> v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(s));
  return v;
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5);
}

void ExpectNoKey(const Status& st) {
  EXPECT_EQ(st.message().find(kKey), std::string::npos) << st.message();
  EXPECT_EQ(st.hint().find(kKey), std::string::npos) << st.hint();
}

TEST(EmbeddingsClientTest, BatchesSendsModelAndKeyAndNormalises) {
  FakeEmbeddingsServer server(8);
  auto e = Client(server.base_url(), /*batch=*/2);
  EXPECT_EQ(e->Id(), "openai-compatible:" + server.base_url() + "/v1#fake-embed");
  std::vector<std::string> texts = {"alpha", "beta", "gamma", "delta", "alpha"};
  auto r = e->Embed(texts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 5u);
  for (size_t i = 0; i < texts.size(); ++i) ExpectNear((*r)[i], Unit(server.VectorFor(texts[i])));
  ExpectNear((*r)[0], (*r)[4]);

  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  std::vector<size_t> sizes;
  for (const auto& q : reqs) {
    EXPECT_EQ(q.method, "POST");
    EXPECT_EQ(q.path, "/v1/embeddings");
    EXPECT_EQ(q.headers.at("authorization"), std::string("Bearer ") + kKey);
    EXPECT_EQ(q.body["model"], "fake-embed");
    sizes.push_back(q.body["input"].size());
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{2, 2, 1}));
  EXPECT_EQ(reqs[1].body["input"][0], "gamma");
}

TEST(EmbeddingsClientTest, BaseWithV1AndNoKey) {
  FakeEmbeddingsServer server;
  auto e = Client(server.base_url() + "/v1/", 64, /*key=*/"");
  auto r = e->Embed({"x"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].path, "/v1/embeddings");
  EXPECT_EQ(reqs[0].headers.count("authorization"), 0u);
}

TEST(EmbeddingsClientTest, NoTextsNoRequest) {
  FakeEmbeddingsServer server;
  auto r = Client(server.base_url())->Embed({});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_TRUE(server.requests().empty());
}

TEST(EmbeddingsClientTest, OrdersByIndexNotByPosition) {
  FakeEmbeddingsServer server;
  server.SetReverseOrder(true);
  auto r = Client(server.base_url())->Embed({"one", "two", "three"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectNear((*r)[0], Unit(server.VectorFor("one")));
  ExpectNear((*r)[2], Unit(server.VectorFor("three")));
}

TEST(EmbeddingsClientTest, RefusedKeyIsAFailedPreconditionWithoutTheKey) {
  FakeEmbeddingsServer server;
  server.Fail(EmbeddingsFault::kUnauthorized);
  auto r = Client(server.base_url())->Embed({"x"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("embeddings endpoint refused the key"), std::string::npos);
  EXPECT_NE(r.status().hint().find("embeddings.api_key"), std::string::npos);
  ExpectNoKey(r.status());
}

TEST(EmbeddingsClientTest, UnknownModelNamesModelAndUrl) {
  FakeEmbeddingsServer server;
  server.Fail(EmbeddingsFault::kNotFound);
  auto r = Client(server.base_url())->Embed({"x"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("fake-embed"), std::string::npos);
  EXPECT_NE(r.status().message().find(server.base_url() + "/v1/embeddings"), std::string::npos);
  EXPECT_NE(r.status().hint().find("embeddings.model"), std::string::npos);
  ExpectNoKey(r.status());
}

TEST(EmbeddingsClientTest, ServerErrorIsUnavailable) {
  FakeEmbeddingsServer server;
  server.Fail(EmbeddingsFault::kServerError);
  auto e = Client(server.base_url());
  auto r = e->Embed({"x"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  ExpectNoKey(r.status());
  // The next call works again.
  EXPECT_TRUE(e->Embed({"x"}).ok());
}

TEST(EmbeddingsClientTest, MalformedRepliesAreInternal) {
  FakeEmbeddingsServer server;
  for (EmbeddingsFault f :
       {EmbeddingsFault::kMalformed, EmbeddingsFault::kWrongSize, EmbeddingsFault::kMissingItem}) {
    server.Fail(f);
    auto r = Client(server.base_url())->Embed({"a", "b", "c"});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInternal) << r.status().ToString();
    EXPECT_NE(r.status().message().find(server.base_url()), std::string::npos);
    ExpectNoKey(r.status());
  }
}

TEST(EmbeddingsClientTest, SizeChangeBetweenBatchesIsRefused) {
  FakeEmbeddingsServer server(8);
  auto e = Client(server.base_url(), /*batch=*/2);
  server.Fail(EmbeddingsFault::kServerError);  // consumed below, keeps the queue simple
  EXPECT_FALSE(e->Embed({"x"}).ok());
  // Batch 1 fine (8 dims), batch 2 has a shorter last vector.
  auto ok = e->Embed({"a", "b"});
  ASSERT_TRUE(ok.ok());
  server.Fail(EmbeddingsFault::kWrongSize);
  auto r = e->Embed({"c"});  // one input, one shorter (7-dim) vector
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_NE(r.status().message().find("different sizes"), std::string::npos);
}

TEST(EmbeddingsClientTest, UnreachableServerIsUnavailableWithHint) {
  const std::string base = "http://127.0.0.1:" + std::to_string(testing::FreePort());
  auto r = Client(base)->Embed({"x"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find(base + "/v1/embeddings"), std::string::npos);
  EXPECT_NE(r.status().hint().find("embeddings.base_url"), std::string::npos);
  ExpectNoKey(r.status());
}

// Hybrid search with a remote embedder: a result found by its words only
// (outside the vector search's candidates) gets its cosine to the query from
// its vector stored in the index, with no request beyond the query's own.
TEST(EmbeddingsClientTest, HybridSearchTakesWordOnlyMatchesSimilarityFromTheIndex) {
  FakeEmbeddingsServer server(8);
  testing::TempDir dir;
  StoreOptions so;
  so.url = "sqlite:" + (dir.path() / "af.db").string();
  auto store = Store::Open(so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  KnowledgeOptions ko;
  ko.index_dir = dir.path() / "kb";
  ko.embedder.base_url = server.base_url();
  ko.embedder.model = "fake-embed";
  ko.embedder.batch_size = 256;
  auto kb = KnowledgeBase::Open(store->get(), ko);
  ASSERT_TRUE(kb.ok()) << kb.status().ToString();
  constexpr int kN = 120;
  std::vector<std::vector<float>> vectors;
  for (int i = 0; i < kN; ++i) {
    const std::string text = "note " + std::to_string(i) + " uniq" + std::to_string(i);
    dir.Write("docs/n" + std::to_string(1000 + i) + ".txt", text);
    vectors.push_back(Unit(server.VectorFor(text)));
  }
  auto ingested = (*kb)->Populate({(dir.path() / "docs").string()}, "global", {});
  ASSERT_TRUE(ingested.ok()) << ingested.status().ToString();
  ASSERT_EQ(ingested->chunks_added, kN);
  // A note whose unique word is the query and which is not among the 50
  // nearest vectors to that query (a search asks the index for 50).
  auto cos = [](const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
  };
  int pick = -1;
  double want = 0;
  for (int i = 0; i < kN && pick < 0; ++i) {
    const auto q = Unit(server.VectorFor("uniq" + std::to_string(i)));
    const double mine = cos(q, vectors[i]);
    int closer = 0;
    for (const auto& v : vectors) closer += cos(q, v) > mine ? 1 : 0;
    if (closer >= 55 && mine > 0.05) {
      pick = i;
      want = mine;
    }
  }
  ASSERT_GE(pick, 0) << "no note is far enough from its own word";
  const size_t before = server.requests().size();
  SearchQuery q;
  q.text = "uniq" + std::to_string(pick);
  q.max_results = 5;
  auto found = (*kb)->Search(q);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(server.requests().size(), before + 1);  // the query only
  auto it = std::find_if(found->begin(), found->end(), [&](const SearchResult& r) {
    return r.source.ends_with("n" + std::to_string(1000 + pick) + ".txt");
  });
  ASSERT_NE(it, found->end());
  EXPECT_GT(it->text_score, 0);
  EXPECT_NEAR(it->similarity, want, 1e-4);
}

}  // namespace
}  // namespace af
