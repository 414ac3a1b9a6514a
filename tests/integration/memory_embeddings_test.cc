// The OpenAI-compatible embeddings client against a real HTTP server on
// loopback (tests/support/fake_embeddings_server.h) through libcurl.
#include <gtest/gtest.h>

#include <cmath>

#include "af/memory/embedder.h"
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

}  // namespace
}  // namespace af
