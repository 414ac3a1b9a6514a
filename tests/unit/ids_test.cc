#include "af/core/ids.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

namespace af {
namespace {

bool BodyIsLowercaseAlnum(const std::string& id, size_t prefix_len) {
  if (id.size() != prefix_len + kIdBodyLength) return false;
  for (size_t i = prefix_len; i < id.size(); ++i) {
    char c = id[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) return false;
  }
  return true;
}

TEST(IdsTest, ShapeIsPrefixDashAndTwentyLowercaseChars) {
  std::string id = NewId("f");
  EXPECT_EQ(id.substr(0, 2), "f-");
  EXPECT_TRUE(BodyIsLowercaseAlnum(id, 2)) << id;
  EXPECT_EQ(NewId("task-").substr(0, 5), "task-");
  EXPECT_TRUE(BodyIsLowercaseAlnum(NewId("task-"), 5));
}

TEST(IdsTest, SuccessiveIdsAreUniqueAndSortInCreationOrder) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5000; ++i) ids.push_back(NewId("e"));
  for (size_t i = 1; i < ids.size(); ++i) ASSERT_LT(ids[i - 1], ids[i]) << "at " << i;
}

TEST(IdsTest, LaterTimeSortsLaterRegardlessOfRandomPart) {
  for (int i = 0; i < 200; ++i) {
    EXPECT_LT(NewIdAt("f", 1700000000000), NewIdAt("f", 1700000000001));
    EXPECT_LT(NewIdAt("f", 999), NewIdAt("f", 1700000000000));
  }
}

TEST(IdsTest, RandomPartDiffersForTheSameMillisecond) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(NewIdAt("k", 42));
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(NewIdAt("k", 42).substr(0, 12), "k-000000001a");  // 42 = 1*32 + 10
}

TEST(IdsTest, ConcurrentCallersNeverCollide) {
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& out : per_thread) {
    threads.emplace_back([&out] {
      for (int i = 0; i < 1000; ++i) out.push_back(NewId("t"));
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (auto& v : per_thread) {
    for (size_t i = 1; i < v.size(); ++i) EXPECT_LT(v[i - 1], v[i]);
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), 4000u);
}

}  // namespace
}  // namespace af
