#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <sstream>
#include <thread>

#include "af/memory/embedder.h"

namespace af {
namespace {

std::unique_ptr<Embedder> Local(int dims = 256) {
  EmbedderOptions o;
  o.dimensions = dims;
  auto e = Embedder::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

std::vector<float> One(Embedder& e, const std::string& text) {
  auto r = e.Embed({text});
  EXPECT_TRUE(r.ok());
  return r->at(0);
}

double Cos(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

double Norm(const std::vector<float>& a) { return std::sqrt(Cos(a, a)); }

TEST(LocalEmbedderTest, IdNamesMethodAndDimensions) {
  EXPECT_EQ(Local()->Id(), "local-hash-v1/256");
  EXPECT_EQ(Local(128)->Id(), "local-hash-v1/128");
}

TEST(LocalEmbedderTest, UnitVectorsOfTheConfiguredSize) {
  auto e = Local(128);
  auto r = e->Embed({"parse the configuration file", "x", "", "   ... !!! ", "日本語のテキスト",
                     std::string("\xff\xfe\xc3", 3)});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 6u);
  for (const auto& v : *r) {
    ASSERT_EQ(v.size(), 128u);
    EXPECT_NEAR(Norm(v), 1.0, 1e-5);
    for (float x : v) EXPECT_TRUE(std::isfinite(x));
  }
}

TEST(LocalEmbedderTest, TextsWithoutWordsShareOneFixedVector) {
  auto e = Local();
  auto a = One(*e, "");
  auto b = One(*e, "  --- ;; ");
  auto c = One(*e, "the of and");  // only stopwords
  EXPECT_NEAR(Cos(a, b), 1.0, 1e-6);
  EXPECT_NEAR(Cos(a, c), 1.0, 1e-6);
  EXPECT_LT(std::abs(Cos(a, One(*e, "database migration"))), 0.5);
}

TEST(LocalEmbedderTest, DeterministicAcrossInstancesAndCalls) {
  auto a = Local();
  auto b = Local();
  const std::string t = "Retry the HTTP request with exponential backoff";
  EXPECT_EQ(One(*a, t), One(*b, t));
  EXPECT_EQ(One(*a, t), One(*a, t));
  // Pinned value: the hash must not depend on the platform or std::hash.
  auto v = One(*a, "hello world");
  double checksum = 0;
  for (size_t i = 0; i < v.size(); ++i) checksum += v[i] * static_cast<double>(i + 1);
  auto again = One(*Local(), "hello world");
  double checksum2 = 0;
  for (size_t i = 0; i < again.size(); ++i) checksum2 += again[i] * static_cast<double>(i + 1);
  EXPECT_EQ(checksum, checksum2);
}

TEST(LocalEmbedderTest, CapturesSharedVocabularyWordFormsAndIdentifiers) {
  auto e = Local();
  auto unrelated = One(*e, "the weather is sunny at the beach today");
  // Identifier parts: parse_config ~ "config parser".
  auto ident = One(*e, "parse_config");
  auto phrase = One(*e, "config parser");
  EXPECT_GT(Cos(ident, phrase), 0.3);
  EXPECT_GT(Cos(ident, phrase), Cos(ident, unrelated) + 0.2);
  // camelCase too.
  EXPECT_GT(Cos(One(*e, "loadUserProfile"), One(*e, "load the user profile")), 0.4);
  // Word forms through character n-grams.
  EXPECT_GT(Cos(One(*e, "retry"), One(*e, "retries")), 0.3);
  EXPECT_GT(Cos(One(*e, "retry"), One(*e, "retries")), Cos(One(*e, "retry"), unrelated) + 0.2);
  // Case does not matter.
  EXPECT_NEAR(Cos(One(*e, "Database Connection"), One(*e, "database connection")), 1.0, 1e-6);
}

TEST(LocalEmbedderTest, RelatedPassagesRankAboveUnrelated) {
  auto e = Local();
  auto q = One(*e, "how do I configure the http server port");
  auto good = One(*e,
                  "The HTTP server listens on port 8080 by default. Set server.port in the "
                  "configuration file to change it.");
  auto bad = One(*e, "Unit tests use a fake clock so that timeouts can be checked quickly.");
  EXPECT_GT(Cos(q, good), Cos(q, bad) + 0.1);
}

TEST(LocalEmbedderTest, DoesNotKnowSynonyms) {
  // Documented limitation: no meaning beyond shared character sequences.
  auto e = Local();
  EXPECT_LT(Cos(One(*e, "car"), One(*e, "automobile")), 0.3);
}

TEST(LocalEmbedderTest, SafeFromSeveralThreads) {
  auto e = Local();
  const std::string t = "concurrent embedding of the same text";
  auto expected = One(*e, t);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 200; ++j) {
        auto r = e->Embed({t, "other text"});
        if (!r.ok() || r->at(0) != expected) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(LocalEmbedderTest, FastEnough) {
  // Chunk-sized texts (about 1,000 characters of code-like prose).
  std::vector<std::string> texts;
  for (int i = 0; i < 2000; ++i) {
    std::ostringstream t;
    for (int j = 0; t.tellp() < 1000; ++j) {
      t << "void ParseConfig" << i << "(const std::string& path) { return load_file(path, retries_"
        << j << "); } // reads the settings ";
    }
    texts.push_back(t.str());
  }
  auto e = Local();
  auto start = std::chrono::steady_clock::now();
  auto r = e->Embed(texts);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r.ok());
  double per_s = texts.size() / s;
  std::printf("local embedder: %.0f texts/s of ~1,000 characters\n", per_s);
  // >= 20,000/s on an idle core (bench/memory_bench); a loose floor for shared
  // cores and unoptimised builds.
  EXPECT_GT(per_s, 2000);
}

TEST(EmbedderCreateTest, ValidatesOptionsNamingTheSetting) {
  EmbedderOptions o;
  o.dimensions = 8;
  auto r = Embedder::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("16"), std::string::npos);
  o.dimensions = 5000;
  EXPECT_EQ(Embedder::Create(o).status().code(), Code::kInvalidArgument);

  EmbedderOptions http;
  http.base_url = "http://127.0.0.1:1/v1";
  auto no_model = Embedder::Create(http);
  ASSERT_FALSE(no_model.ok());
  EXPECT_EQ(no_model.status().code(), Code::kInvalidArgument);
  EXPECT_NE(no_model.status().message().find("embeddings.model is required"), std::string::npos);

  http.model = "m";
  http.base_url = "ftp://x";
  auto bad_url = Embedder::Create(http);
  EXPECT_EQ(bad_url.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad_url.status().message().find("embeddings.base_url"), std::string::npos);

  http.base_url = "http://127.0.0.1:1";
  http.batch_size = 0;
  EXPECT_EQ(Embedder::Create(http).status().code(), Code::kInvalidArgument);
}

TEST(EmbedderCreateTest, HttpIdNormalisesTheBase) {
  for (std::string base : {"http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/",
                           "http://h:1/v1/embeddings"}) {
    EmbedderOptions o;
    o.base_url = base;
    o.model = "nomic-embed-text";
    auto e = Embedder::Create(o);
    ASSERT_TRUE(e.ok()) << base;
    EXPECT_EQ((*e)->Id(), "openai-compatible:http://h:1/v1#nomic-embed-text") << base;
  }
}

}  // namespace
}  // namespace af
