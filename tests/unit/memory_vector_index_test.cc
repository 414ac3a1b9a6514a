#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "af/memory/vector_index.h"
#include "support/test_util.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr const char* kEmb = "local-hash-v1/16";

std::vector<float> Unit(std::vector<float> v) {
  double s = 0;
  for (float x : v) s += x * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(s));
  return v;
}

std::vector<float> RandomUnit(std::mt19937& rng, int dims) {
  std::normal_distribution<float> n(0, 1);
  std::vector<float> v(static_cast<size_t>(dims));
  for (float& x : v) x = n(rng);
  return Unit(v);
}

float Cos(const std::vector<float>& a, const std::vector<float>& b) {
  float s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// e_i (+ a little of e_{i+1}) in 16 dimensions.
std::vector<float> Axis(int i, float tilt = 0) {
  std::vector<float> v(16, 0);
  v[static_cast<size_t>(i % 16)] = 1;
  v[static_cast<size_t>((i + 1) % 16)] = tilt;
  return Unit(v);
}

std::unique_ptr<VectorIndex> Open(const fs::path& path, const std::string& emb = kEmb,
                                  int dims = 16) {
  auto r = VectorIndex::Open(path, emb, dims);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

TEST(VectorIndexTest, AddSearchRemoveReplace) {
  auto idx = Open("");
  EXPECT_EQ(idx->embedder_id(), kEmb);
  EXPECT_EQ(idx->dimensions(), 16);
  EXPECT_TRUE(idx->Search(Axis(0), 3).empty());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(idx->Add(100 + i, Axis(i)).ok());
  EXPECT_EQ(idx->size(), 10u);
  auto hits = idx->Search(Axis(3, 0.1f), 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].first, 103);
  EXPECT_NEAR(hits[0].second, Cos(Axis(3, 0.1f), Axis(3)), 1e-5);
  EXPECT_EQ(hits[1].first, 104);

  ASSERT_TRUE(idx->Remove(103).ok());
  ASSERT_TRUE(idx->Remove(103).ok());    // twice: fine
  ASSERT_TRUE(idx->Remove(99999).ok());  // absent: fine
  EXPECT_FALSE(idx->Contains(103));
  EXPECT_EQ(idx->size(), 9u);
  // (Tilted towards 104: every other element is orthogonal to e_3, a tie
  // that the label breaks.)
  EXPECT_EQ(idx->Search(Axis(3, 0.1f), 1)[0].first, 104);

  // Replacing moves the label, it does not add a second element.
  ASSERT_TRUE(idx->Add(100, Axis(3)).ok());
  EXPECT_EQ(idx->size(), 9u);
  EXPECT_EQ(idx->Search(Axis(3), 1)[0].first, 100);
  // Re-adding a removed label revives it.
  ASSERT_TRUE(idx->Add(103, Axis(12)).ok());
  EXPECT_TRUE(idx->Contains(103));
  EXPECT_EQ(idx->size(), 10u);
  EXPECT_EQ(idx->Search(Axis(12), 1)[0].first, 103);

  auto labels = idx->Labels();
  EXPECT_EQ(labels.size(), 10u);
  EXPECT_TRUE(std::is_sorted(labels.begin(), labels.end()));

  auto bad = idx->Add(1, std::vector<float>(8, 0.5f));
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_TRUE(idx->Search(std::vector<float>(8, 0.5f), 3).empty());
  EXPECT_TRUE(idx->Search(Axis(0), 0).empty());

  idx->Clear();
  EXPECT_EQ(idx->size(), 0u);
  EXPECT_TRUE(idx->Search(Axis(0), 5).empty());
}

TEST(VectorIndexTest, GrowsPastItsInitialCapacity) {
  auto idx = Open("", "e", 32);
  std::mt19937 rng(1);
  std::vector<std::vector<float>> vs;
  for (int i = 0; i < 3000; ++i) {
    vs.push_back(RandomUnit(rng, 32));
    ASSERT_TRUE(idx->Add(i, vs.back()).ok());
  }
  EXPECT_EQ(idx->size(), 3000u);
  EXPECT_EQ(idx->Search(vs[2500], 1)[0].first, 2500);
}

TEST(VectorIndexTest, AcceptFilterSearchesWiderUntilEnough) {
  auto idx = Open("", "e", 32);
  std::mt19937 rng(2);
  std::vector<std::pair<int64_t, std::vector<float>>> all;
  for (int i = 0; i < 2000; ++i) {
    all.emplace_back(i, RandomUnit(rng, 32));
    ASSERT_TRUE(idx->Add(i, all.back().second).ok());
  }
  auto q = RandomUnit(rng, 32);
  // A filter that accepts 1 in 100: the nearest accepted are far down the ranking.
  auto accept = [](int64_t l) { return l % 100 == 7; };
  auto hits = idx->Search(q, 5, accept);
  ASSERT_EQ(hits.size(), 5u);
  for (const auto& [l, s] : hits) EXPECT_TRUE(accept(l));
  std::vector<std::pair<int64_t, std::vector<float>>> accepted;
  for (const auto& p : all) {
    if (accept(p.first)) accepted.push_back(p);
  }
  auto exact = ExactSearch(accepted, q, 5);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(hits[i].first, exact[i].first);
  // Fewer accepted than asked: all of them.
  auto few = idx->Search(q, 10, [](int64_t l) { return l == 5 || l == 1500; });
  EXPECT_EQ(few.size(), 2u);
  EXPECT_TRUE(idx->Search(q, 3, [](int64_t) { return false; }).empty());
}

TEST(VectorIndexTest, SaveAndLoadRoundTrip) {
  TempDir dir;
  const fs::path path = dir.path() / "kb" / "vectors.hnsw";
  std::mt19937 rng(3);
  std::vector<std::vector<float>> vs;
  {
    auto idx = Open(path);
    ASSERT_TRUE(idx->Save().ok());  // an empty index saves too
    EXPECT_TRUE(fs::exists(path));
    for (int i = 0; i < 500; ++i) {
      vs.push_back(RandomUnit(rng, 16));
      ASSERT_TRUE(idx->Add(i, vs.back()).ok());
    }
    ASSERT_TRUE(idx->Remove(7).ok());
    ASSERT_TRUE(idx->Save().ok());
    EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
    EXPECT_FALSE(fs::exists(path.string() + ".json.tmp"));
  }
  auto header = nlohmann::json::parse(testing::ReadFile(path.string() + ".json"));
  EXPECT_EQ(header["embedder"], kEmb);
  EXPECT_EQ(header["dimensions"], 16);
  EXPECT_EQ(header["count"], 499);
  EXPECT_EQ(header["format"], 2);

  auto idx = Open(path);
  ASSERT_NE(idx, nullptr);
  EXPECT_EQ(idx->size(), 499u);
  EXPECT_FALSE(idx->Contains(7));
  EXPECT_TRUE(idx->Contains(8));
  EXPECT_EQ(idx->Search(vs[42], 1)[0].first, 42);
  // Still usable: add, remove, save again.
  ASSERT_TRUE(idx->Add(1000, Axis(1)).ok());
  ASSERT_TRUE(idx->Remove(8).ok());
  ASSERT_TRUE(idx->Save().ok());
  auto again = Open(path);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->size(), 499u);
  EXPECT_TRUE(again->Contains(1000));
}

TEST(VectorIndexTest, SaveIsANoOpWhenNothingChanged) {
  TempDir dir;
  const fs::path path = dir.path() / "v.hnsw";
  auto idx = Open(path);
  ASSERT_TRUE(idx->Add(1, Axis(1)).ok());
  ASSERT_TRUE(idx->Save().ok());
  fs::remove(path.string() + ".json");
  ASSERT_TRUE(idx->Save().ok());
  EXPECT_FALSE(fs::exists(path.string() + ".json"));
}

TEST(VectorIndexTest, RefusesAnotherEmbedderOrDimensions) {
  TempDir dir;
  const fs::path path = dir.path() / "v.hnsw";
  {
    auto idx = Open(path);
    ASSERT_TRUE(idx->Add(1, Axis(1)).ok());
    ASSERT_TRUE(idx->Save().ok());
  }
  auto other = VectorIndex::Open(path, "openai-compatible:http://h/v1#m", 16);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(other.status().message().find(kEmb), std::string::npos);
  EXPECT_NE(other.status().message().find("openai-compatible:http://h/v1#m"), std::string::npos);
  EXPECT_NE(other.status().hint().find("agent-factory kb reindex"), std::string::npos);
  auto dims = VectorIndex::Open(path, kEmb, 32);
  ASSERT_FALSE(dims.ok());
  EXPECT_EQ(dims.status().code(), Code::kFailedPrecondition);
}

// Every way a file can be damaged is refused with the reindex hint, never a crash.
TEST(VectorIndexTest, RefusesTruncatedOrGarbageFiles) {
  TempDir dir;
  const fs::path path = dir.path() / "v.hnsw";
  std::mt19937 rng(4);
  {
    auto idx = Open(path);
    for (int i = 0; i < 300; ++i) ASSERT_TRUE(idx->Add(i, RandomUnit(rng, 16)).ok());
    ASSERT_TRUE(idx->Save().ok());
  }
  const std::string good = testing::ReadFile(path);
  const std::string good_header = testing::ReadFile(path.string() + ".json");
  auto write = [&](const fs::path& p, const std::string& bytes) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  };
  auto expect_refused = [&](const std::string& what) {
    auto r = VectorIndex::Open(path, kEmb, 16);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << what;
    EXPECT_NE(r.status().hint().find("agent-factory kb reindex"), std::string::npos) << what;
  };
  auto fix_header = [&](const std::string& bytes) {
    // A header that matches the damaged file, so the structural checks are reached.
    auto h = nlohmann::json::parse(good_header);
    h["bytes"] = bytes.size();
    uint64_t hsum = 0x9e3779b97f4a7c15ull;
    size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, bytes.data() + i, 8);
      hsum = (hsum ^ w) * 0x100000001b3ull;
      hsum ^= hsum >> 29;
    }
    for (; i < bytes.size(); ++i)
      hsum = (hsum ^ static_cast<unsigned char>(bytes[i])) * 0x100000001b3ull;
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(hsum));
    h["checksum"] = buf;
    write(path.string() + ".json", h.dump());
  };

  for (size_t cut : {size_t{0}, size_t{10}, size_t{96}, good.size() / 2, good.size() - 1}) {
    std::string t = good.substr(0, cut);
    write(path, t);
    expect_refused("truncated to " + std::to_string(cut) + " (header unchanged)");
    fix_header(t);
    expect_refused("truncated to " + std::to_string(cut) + " (header matching)");
  }
  // Random bytes at random places, with a matching header.
  for (int round = 0; round < 200; ++round) {
    std::string t = good;
    std::uniform_int_distribution<size_t> pos(0, round < 100 ? 95 : t.size() - 1);
    for (int k = 0; k < 4; ++k) t[pos(rng)] = static_cast<char>(rng());
    write(path, t);
    fix_header(t);
    auto r = VectorIndex::Open(path, kEmb, 16);
    if (r.ok()) {
      // Damage to vector values is not detectable structurally; it must still work.
      (*r)->Search(RandomUnit(rng, 16), 10);
      continue;
    }
    EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  }
  write(path, std::string(5000, '\x07'));
  fix_header(std::string(5000, '\x07'));
  expect_refused("garbage");

  write(path, good);
  write(path.string() + ".json", "{not json");
  expect_refused("bad header");
  fs::remove(path.string() + ".json");
  expect_refused("missing header");
  write(path.string() + ".json", good_header);
  fs::remove(path);
  expect_refused("missing index");
}

TEST(VectorIndexTest, CompactsWhenTombstonesOutnumberLiveOnes) {
  TempDir dir;
  const fs::path path = dir.path() / "v.hnsw";
  auto idx = Open(path, "e", 16);
  std::mt19937 rng(5);
  std::vector<std::vector<float>> vs;
  for (int i = 0; i < 400; ++i) {
    vs.push_back(RandomUnit(rng, 16));
    ASSERT_TRUE(idx->Add(i, vs.back()).ok());
  }
  ASSERT_TRUE(idx->Save().ok());
  const auto full = fs::file_size(path);
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(idx->Remove(i).ok());
  EXPECT_EQ(idx->size(), 100u);
  ASSERT_TRUE(idx->Save().ok());
  EXPECT_LT(fs::file_size(path), full / 2);
  EXPECT_EQ(idx->Search(vs[350], 1)[0].first, 350);
  auto reopened = Open(path, "e", 16);
  EXPECT_EQ(reopened->size(), 100u);
  EXPECT_EQ(reopened->Search(vs[399], 1)[0].first, 399);
}

TEST(VectorIndexTest, ConcurrentSearchesWhileWriting) {
  auto idx = Open("", "e", 32);
  std::mt19937 rng(6);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(idx->Add(i, RandomUnit(rng, 32)).ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 r(100 + t);
      while (!stop) idx->Search(RandomUnit(r, 32), 10, [](int64_t l) { return l % 3 == 0; });
    });
  }
  for (int i = 1000; i < 1500; ++i) {
    ASSERT_TRUE(idx->Add(i, RandomUnit(rng, 32)).ok());
    if (i % 5 == 0) ASSERT_TRUE(idx->Remove(i - 500).ok());
  }
  stop = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(idx->size(), 1400u);
}

TEST(VectorIndexTest, RecallAgainstExactSearch) {
  constexpr int kDims = 128, kN = 5000, kQueries = 200, kK = 10;
  auto idx = Open("", "e", kDims);
  std::mt19937 rng(7);
  std::vector<std::pair<int64_t, std::vector<float>>> all;
  for (int i = 0; i < kN; ++i) {
    all.emplace_back(i, RandomUnit(rng, kDims));
    ASSERT_TRUE(idx->Add(i, all.back().second).ok());
  }
  size_t found = 0;
  for (int q = 0; q < kQueries; ++q) {
    auto query = RandomUnit(rng, kDims);
    auto exact = ExactSearch(all, query, kK);
    auto approx = idx->Search(query, kK);
    ASSERT_EQ(approx.size(), static_cast<size_t>(kK));
    for (const auto& [l, s] : exact) {
      for (const auto& [a, sa] : approx) found += a == l;
    }
  }
  double recall = static_cast<double>(found) / (kQueries * kK);
  std::printf("recall@10 = %.4f (5,000 random unit vectors, 128 dims)\n", recall);
  EXPECT_GE(recall, 0.95);
}

// A batch inserts from 2 threads into a graph it grows first, replaces the
// labels it has (the last vector of a label given twice wins), and keeps
// recall: the same graph quality as inserting one by one.
TEST(VectorIndexTest, AddBatchInParallelKeepsRecallAndReplaces) {
  constexpr int kDims = 128, kN = 5000, kQueries = 200, kK = 10;
  auto idx = Open("", "e", kDims);
  std::mt19937 rng(7);
  std::vector<std::pair<int64_t, std::vector<float>>> all;
  std::vector<int64_t> labels;
  std::vector<std::vector<float>> vectors;
  for (int i = 0; i < kN; ++i) {
    all.emplace_back(i, RandomUnit(rng, kDims));
    labels.push_back(i);
    vectors.push_back(all.back().second);
  }
  ASSERT_TRUE(idx->AddBatch(labels, vectors, 2).ok());
  EXPECT_EQ(idx->size(), static_cast<size_t>(kN));
  size_t found = 0;
  for (int q = 0; q < kQueries; ++q) {
    auto query = RandomUnit(rng, kDims);
    auto exact = ExactSearch(all, query, kK);
    auto approx = idx->Search(query, kK);
    ASSERT_EQ(approx.size(), static_cast<size_t>(kK));
    for (const auto& [l, s] : exact) {
      for (const auto& [a, sa] : approx) found += a == l;
    }
  }
  EXPECT_GE(static_cast<double>(found) / (kQueries * kK), 0.95);

  // Label 3 is replaced (twice: the second vector wins), label 9 revived.
  ASSERT_TRUE(idx->Remove(9).ok());
  auto v1 = RandomUnit(rng, kDims), v2 = RandomUnit(rng, kDims), v3 = RandomUnit(rng, kDims);
  ASSERT_TRUE(idx->AddBatch({3, 9, 3, kN}, {v1, v2, v3, v1}).ok());
  EXPECT_EQ(idx->size(), static_cast<size_t>(kN + 1));
  auto near3 = idx->Search(v3, 1);
  ASSERT_EQ(near3.size(), 1u);
  EXPECT_EQ(near3[0].first, 3);
  EXPECT_NEAR(near3[0].second, 1.0, 1e-4);
  EXPECT_TRUE(idx->Contains(9));

  EXPECT_EQ(idx->AddBatch({1, 2}, {v1}).code(), Code::kInvalidArgument);
  EXPECT_EQ(idx->AddBatch({kN + 5}, {std::vector<float>(3, 0.5f)}).code(), Code::kInvalidArgument);
  EXPECT_FALSE(idx->Contains(kN + 5));
}

// The stored vectors' cosines, by label: what fusion uses for candidates
// the vector search did not reach.
TEST(VectorIndexTest, SimilaritiesReadTheStoredVectors) {
  auto idx = Open("");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(idx->Add(10 + i, Axis(i)).ok());
  ASSERT_TRUE(idx->Remove(12).ok());
  const auto q = Axis(3, 0.5f);
  auto sims = idx->Similarities(q, {13, 12, 99, 14, 10});
  ASSERT_EQ(sims.size(), 5u);
  ASSERT_TRUE(sims[0].has_value());
  EXPECT_NEAR(*sims[0], Cos(q, Axis(3)), 1e-5);
  EXPECT_FALSE(sims[1].has_value());  // removed
  EXPECT_FALSE(sims[2].has_value());  // never added
  ASSERT_TRUE(sims[3].has_value());
  EXPECT_NEAR(*sims[3], Cos(q, Axis(4)), 1e-5);
  ASSERT_TRUE(sims[4].has_value());
  EXPECT_NEAR(*sims[4], 0.0, 1e-6);
  // A query of other dimensions knows none.
  auto wrong = idx->Similarities(std::vector<float>(3, 0.5f), {13});
  ASSERT_EQ(wrong.size(), 1u);
  EXPECT_FALSE(wrong[0].has_value());
}

// An index file built with other graph options (m, ef_construction: saved
// before the defaults changed) is rebuilt with the current ones at open,
// from its own vectors, and saved so; its contents are unchanged.
TEST(VectorIndexTest, RebuildsAGraphBuiltWithOtherOptions) {
  TempDir dir;
  const fs::path path = dir.path() / "v.hnsw";
  std::mt19937 rng(11);
  std::vector<std::pair<int64_t, std::vector<float>>> all;
  {
    auto old = VectorIndex::Open(path, kEmb, 16, {.m = 8, .ef_construction = 20});
    ASSERT_TRUE(old.ok()) << old.status().ToString();
    for (int i = 0; i < 600; ++i) {
      all.emplace_back(i, RandomUnit(rng, 16));
      ASSERT_TRUE((*old)->Add(i, all.back().second).ok());
    }
    ASSERT_TRUE((*old)->Remove(5).ok());
    ASSERT_TRUE((*old)->Save().ok());
  }
  auto header = nlohmann::json::parse(testing::ReadFile(path.string() + ".json"));
  EXPECT_EQ(header["m"], 8);
  EXPECT_EQ(header["ef_construction"], 20);
  const auto before = testing::ReadFile(path.string());

  const VectorIndexOptions now;  // the defaults
  ASSERT_NE(now.m, 8);
  {
    auto idx = Open(path);
    ASSERT_NE(idx, nullptr);
    EXPECT_EQ(idx->size(), 599u);
    EXPECT_FALSE(idx->Contains(5));
    EXPECT_EQ(idx->Search(all[42].second, 1)[0].first, 42);
    ASSERT_TRUE(idx->Save().ok());  // not a no-op: the graph changed
  }
  EXPECT_NE(testing::ReadFile(path.string()), before);
  header = nlohmann::json::parse(testing::ReadFile(path.string() + ".json"));
  EXPECT_EQ(header["m"], now.m);
  EXPECT_EQ(header["ef_construction"], now.ef_construction);
  // The hnswlib file itself records the new degree (its 11th field, after
  // six size_t, an int and a uint32, then max_m and max_m0).
  const std::string file = testing::ReadFile(path.string());
  size_t m = 0;
  std::memcpy(
      &m, file.data() + 6 * sizeof(size_t) + sizeof(int) + sizeof(uint32_t) + 2 * sizeof(size_t),
      sizeof(m));
  EXPECT_EQ(m, static_cast<size_t>(now.m));
  // Opened again with the same options: nothing to rebuild, saving is a no-op.
  auto again = Open(path);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->size(), 599u);
  fs::remove(path.string() + ".json");
  ASSERT_TRUE(again->Save().ok());
  EXPECT_FALSE(fs::exists(path.string() + ".json"));

  // A build beam below m (hnswlib records m instead) is no reason to rebuild.
  const fs::path low = dir.path() / "low.hnsw";
  const VectorIndexOptions narrow{.m = 16, .ef_construction = 8};
  {
    auto idx = VectorIndex::Open(low, kEmb, 16, narrow);
    ASSERT_TRUE(idx.ok());
    for (int i = 0; i < 50; ++i) ASSERT_TRUE((*idx)->Add(i, all[i].second).ok());
    ASSERT_TRUE((*idx)->Save().ok());
  }
  auto reopened = VectorIndex::Open(low, kEmb, 16, narrow);
  ASSERT_TRUE(reopened.ok());
  fs::remove(low.string() + ".json");
  ASSERT_TRUE((*reopened)->Save().ok());
  EXPECT_FALSE(fs::exists(low.string() + ".json"));
}

// The index file's checksum as the index computes it (8 bytes at a time).
std::string ChecksumHex(const std::string& bytes) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * 0x100000001b3ull;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// An hnswlib 0.6.2 file of the first format, written by hand (hnswlib's
// header cannot be included by a second translation unit): every element
// on level 0, each linked to its `m0` nearest, the float vector alone as
// its data, then its label; `deleted` carries hnswlib's tombstone mark.
std::string FloatOnlyHnswFile(const std::vector<std::pair<int64_t, std::vector<float>>>& all,
                              size_t m, int64_t deleted) {
  const size_t dims = all[0].second.size(), m0 = 2 * m, n = all.size();
  const size_t links0 = m0 * 4 + 4, data = dims * 4, element = links0 + data + 8;
  std::string f;
  Put<size_t>(&f, 0);              // offset of level 0
  Put<size_t>(&f, n);              // capacity
  Put<size_t>(&f, n);              // elements
  Put<size_t>(&f, element);        // bytes per element
  Put<size_t>(&f, links0 + data);  // label offset
  Put<size_t>(&f, links0);         // data offset
  Put<int>(&f, 0);                 // top level
  Put<uint32_t>(&f, 0);            // entry point
  Put<size_t>(&f, m);
  Put<size_t>(&f, m0);
  Put<size_t>(&f, m);
  Put<double>(&f, 1 / std::log(static_cast<double>(m)));
  Put<size_t>(&f, 64);  // ef_construction
  for (size_t i = 0; i < n; ++i) {
    std::vector<std::pair<float, uint32_t>> near;
    for (size_t j = 0; j < n; ++j)
      if (j != i) near.emplace_back(-Cos(all[i].second, all[j].second), static_cast<uint32_t>(j));
    std::sort(near.begin(), near.end());
    uint32_t head = static_cast<uint32_t>(std::min(m0, near.size()));
    if (all[i].first == deleted) head |= 1u << 16;  // hnswlib's delete mark (third byte)
    Put<uint32_t>(&f, head);
    for (size_t k = 0; k < m0; ++k) Put<uint32_t>(&f, k < near.size() ? near[k].second : 0);
    for (float x : all[i].second) Put<float>(&f, x);
    Put<size_t>(&f, static_cast<size_t>(all[i].first));
  }
  for (size_t i = 0; i < n; ++i) Put<uint32_t>(&f, 0);  // no upper levels
  return f;
}

// A file of the first format (the float vectors alone in hnswlib's
// elements) is rebuilt at open into the current one from its own vectors,
// keeps its contents, and the next save writes the current format.
TEST(VectorIndexTest, RebuildsAFileOfTheFloatOnlyFormat) {
  TempDir dir;
  const fs::path path = dir.path() / "v.hnsw";
  constexpr int kDims = 40;  // not a multiple of the code's padding
  std::mt19937 rng(12);
  std::vector<std::pair<int64_t, std::vector<float>>> all;
  for (int i = 0; i < 300; ++i) all.emplace_back(i, RandomUnit(rng, kDims));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << FloatOnlyHnswFile(all, 8, 5);
  const std::string bytes = testing::ReadFile(path.string());
  nlohmann::json h = {{"format", 1},  {"embedder", kEmb},      {"dimensions", kDims},
                      {"count", 299}, {"bytes", bytes.size()}, {"checksum", ChecksumHex(bytes)},
                      {"m", 8},       {"ef_construction", 64}};
  std::ofstream(path.string() + ".json", std::ios::binary | std::ios::trunc) << h.dump();

  {
    auto idx = Open(path, kEmb, kDims);
    ASSERT_NE(idx, nullptr);
    EXPECT_EQ(idx->size(), 299u);
    EXPECT_FALSE(idx->Contains(5));
    auto near = idx->Search(all[42].second, 1);
    ASSERT_EQ(near.size(), 1u);
    EXPECT_EQ(near[0].first, 42);
    EXPECT_NEAR(near[0].second, 1.0, 1e-5);
    const auto q = RandomUnit(rng, kDims);
    auto sims = idx->Similarities(q, {7, 200});
    ASSERT_TRUE(sims[0].has_value() && sims[1].has_value());
    EXPECT_NEAR(*sims[0], Cos(q, all[7].second), 1e-5);
    EXPECT_NEAR(*sims[1], Cos(q, all[200].second), 1e-5);
    ASSERT_TRUE(idx->Save().ok());  // not a no-op: the file is in the old format
  }
  h = nlohmann::json::parse(testing::ReadFile(path.string() + ".json"));
  EXPECT_EQ(h["format"], 2);
  EXPECT_EQ(h["count"], 299);
  EXPECT_NE(testing::ReadFile(path.string()), bytes);
  auto again = Open(path, kEmb, kDims);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->size(), 299u);
  EXPECT_EQ(again->Search(all[200].second, 1)[0].first, 200);
  // Nothing left to rebuild: saving is a no-op.
  fs::remove(path.string() + ".json");
  ASSERT_TRUE(again->Save().ok());
  EXPECT_FALSE(fs::exists(path.string() + ".json"));

  // A format this program does not know is refused with the reindex hint.
  const std::string current = testing::ReadFile(path.string());
  h["format"] = 3;
  h["bytes"] = current.size();
  h["checksum"] = ChecksumHex(current);
  std::ofstream(path.string() + ".json", std::ios::binary | std::ios::trunc) << h.dump();
  auto future = VectorIndex::Open(path, kEmb, kDims);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(future.status().hint().find("agent-factory kb reindex"), std::string::npos);
}

// The graph compares 8-bit codes, but what a search returns is ranked and
// scored by the exact vectors: its similarities are the exact cosines and
// its order is theirs, at sizes that are and are not a multiple of the
// code's padding, also with a filter.
TEST(VectorIndexTest, SearchScoresAreExactCosines) {
  for (int dims : {16, 100, 256}) {
    auto idx = Open("", "e", dims);
    std::mt19937 rng(13);
    std::vector<std::pair<int64_t, std::vector<float>>> all;
    for (int i = 0; i < 800; ++i) {
      all.emplace_back(i, RandomUnit(rng, dims));
      ASSERT_TRUE(idx->Add(i, all.back().second).ok());
    }
    for (int q = 0; q < 20; ++q) {
      const auto query = RandomUnit(rng, dims);
      for (bool filtered : {false, true}) {
        auto accept = [](int64_t l) { return l % 2 == 0; };
        auto got = filtered ? idx->Search(query, 10, accept) : idx->Search(query, 10);
        ASSERT_EQ(got.size(), 10u) << dims;
        for (size_t i = 0; i < got.size(); ++i) {
          EXPECT_NEAR(got[i].second, Cos(query, all[static_cast<size_t>(got[i].first)].second),
                      1e-5)
              << dims << " dimensions";
          if (i > 0) EXPECT_GE(got[i - 1].second, got[i].second);
          if (filtered) EXPECT_EQ(got[i].first % 2, 0);
        }
        // At this size the beam (512 wide) and the exact re-ranking find the
        // exact result.
        std::vector<std::pair<int64_t, std::vector<float>>> pool;
        for (const auto& e : all)
          if (!filtered || accept(e.first)) pool.push_back(e);
        auto exact = ExactSearch(pool, query, 10);
        for (size_t i = 0; i < exact.size(); ++i) EXPECT_EQ(got[i].first, exact[i].first) << dims;
      }
    }
  }
}

TEST(ExactSearchTest, BestFirstTiesByLabel) {
  std::vector<std::pair<int64_t, std::vector<float>>> v = {
      {5, Axis(1)}, {2, Axis(1)}, {9, Axis(2)}, {1, Axis(3)}};
  auto r = ExactSearch(v, Axis(1), 3);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].first, 2);
  EXPECT_EQ(r[1].first, 5);
  EXPECT_TRUE(ExactSearch(v, Axis(1), 0).empty());
  EXPECT_EQ(ExactSearch(v, Axis(1), 100).size(), 4u);
}

// ExactSearch's scores are dot products at any size, also those that are
// not a multiple of the vector kernel's width (the tail is summed apart).
TEST(ExactSearchTest, ScoresAreDotProductsAtAnySize) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int dims : {1, 3, 7, 8, 9, 16, 31, 32, 33, 65, 256, 300}) {
    std::vector<float> a(static_cast<size_t>(dims)), b(a.size());
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
    double want = 0;
    for (size_t i = 0; i < a.size(); ++i) want += double(a[i]) * b[i];
    auto r = ExactSearch({{1, a}}, b, 1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_NEAR(r[0].second, want, 1e-4) << dims << " dimensions";
  }
}

}  // namespace
}  // namespace af
