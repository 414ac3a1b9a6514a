#include <gtest/gtest.h>

#include <algorithm>

#include "af/memory/ranking.h"

namespace af {
namespace {

constexpr int64_t kDay = 86400000;
constexpr int64_t kNow = 1'800'000'000'000;

Candidate C(int64_t label, int text_rank, int vector_rank, int importance = 5,
            int64_t updated_ms = 0) {
  Candidate c;
  c.label = label;
  c.text_rank = text_rank;
  c.vector_rank = vector_rank;
  c.importance = importance;
  c.updated_ms = updated_ms;
  return c;
}

FusionOptions Plain() {
  FusionOptions o;
  o.importance_weight = 0;
  o.recency_weight = 0;
  return o;
}

TEST(FuseRankingsTest, EmptyInputGivesNothing) {
  EXPECT_TRUE(FuseRankings({}, FusionOptions{}, kNow).empty());
}

TEST(FuseRankingsTest, FirstInBothBeatsFirstInOneAndScoresOne) {
  auto out = FuseRankings({C(1, 1, 0), C(2, 1, 1), C(3, 0, 1)}, Plain(), kNow);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].label, 2);
  EXPECT_DOUBLE_EQ(out[0].score, 1.0);
  // The two found by one ranking only tie and break by label.
  EXPECT_EQ(out[1].label, 1);
  EXPECT_EQ(out[2].label, 3);
  EXPECT_DOUBLE_EQ(out[1].score, out[2].score);
  EXPECT_NEAR(out[1].score, 0.5, 1e-12);
}

TEST(FuseRankingsTest, BestScoresBelowOneWhenNotFirstInBoth) {
  auto out = FuseRankings({C(7, 1, 0), C(8, 2, 0)}, Plain(), kNow);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].label, 7);
  EXPECT_LT(out[0].score, 1.0);
  EXPECT_GT(out[0].score, out[1].score);
}

TEST(FuseRankingsTest, ScoresStayInUnitRangeWithBoosts) {
  FusionOptions o;
  o.importance_weight = 1.0;
  o.recency_weight = 1.0;
  auto out = FuseRankings({C(1, 1, 1, 10, kNow), C(2, 5, 3, 1, kNow - 400 * kDay), C(3, 2, 0, 7)},
                          o, kNow);
  for (const Scored& s : out) {
    EXPECT_GE(s.score, 0.0);
    EXPECT_LE(s.score, 1.0);
  }
  EXPECT_DOUBLE_EQ(out[0].score, 1.0);
}

TEST(FuseRankingsTest, ImportanceMovesCloseOnesAndCanBeTurnedOff) {
  // 1 is a rank ahead in one ranking; 2 is more important.
  std::vector<Candidate> in = {C(1, 1, 3, 5), C(2, 2, 3, 9)};
  FusionOptions with;
  with.recency_weight = 0;
  EXPECT_EQ(FuseRankings(in, with, kNow)[0].label, 2);
  FusionOptions without = with;
  without.importance_weight = 0;
  EXPECT_EQ(FuseRankings(in, without, kNow)[0].label, 1);
}

TEST(FuseRankingsTest, RecencyMovesCloseOnesAndCanBeTurnedOff) {
  std::vector<Candidate> in = {C(1, 1, 3, 5, kNow - 365 * kDay), C(2, 2, 3, 5, kNow - kDay)};
  FusionOptions with;
  with.importance_weight = 0;
  with.recency_weight = 0.1;
  EXPECT_EQ(FuseRankings(in, with, kNow)[0].label, 2);
  FusionOptions without = with;
  without.recency_weight = 0;
  EXPECT_EQ(FuseRankings(in, without, kNow)[0].label, 1);
  // An unknown time gets no boost; a future one counts as new, not as more.
  std::vector<Candidate> unknown = {C(1, 1, 3, 5, 0), C(2, 1, 3, 5, kNow + 10 * kDay)};
  auto out = FuseRankings(unknown, with, kNow);
  EXPECT_EQ(out[0].label, 2);
  EXPECT_NEAR(out[1].score / out[0].score, 1.0 / 1.1, 1e-9);
}

TEST(FuseRankingsTest, RecencyDoesNotOverturnAClearLead) {
  // First in both (and old) vs. tenth in both (and new).
  std::vector<Candidate> in = {C(1, 1, 1, 5, kNow - 1000 * kDay), C(2, 10, 10, 5, kNow)};
  EXPECT_EQ(FuseRankings(in, FusionOptions{}, kNow)[0].label, 1);
}

TEST(FuseRankingsTest, TiesAreStableAndDeterministic) {
  std::vector<Candidate> in;
  for (int64_t l : {9, 3, 7, 1, 5}) in.push_back(C(l, 4, 4));
  auto a = FuseRankings(in, FusionOptions{}, kNow);
  std::reverse(in.begin(), in.end());
  auto b = FuseRankings(in, FusionOptions{}, kNow);
  ASSERT_EQ(a.size(), 5u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].label, b[i].label);
    EXPECT_EQ(a[i].score, b[i].score);
  }
  EXPECT_EQ(a[0].label, 1);
  EXPECT_EQ(a[4].label, 9);
}

TEST(FuseRankingsTest, CarriesDisplayFieldsAndWeights) {
  Candidate c = C(4, 2, 1);
  c.similarity = 0.8;
  c.text_score = 12.5;
  auto out = FuseRankings({c}, Plain(), kNow);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_DOUBLE_EQ(out[0].similarity, 0.8);
  EXPECT_DOUBLE_EQ(out[0].text_score, 12.5);
  // With the text ranking weighted out, first in the vector ranking is the best possible.
  FusionOptions vector_only = Plain();
  vector_only.text_weight = 0;
  EXPECT_DOUBLE_EQ(FuseRankings({c}, vector_only, kNow)[0].score, 1.0);
}

TEST(FuseRankingsTest, NotFoundByEitherScoresZero) {
  auto out = FuseRankings({C(1, 0, 0), C(2, 3, 0)}, Plain(), kNow);
  EXPECT_EQ(out[0].label, 2);
  EXPECT_EQ(out[1].score, 0.0);
}

}  // namespace
}  // namespace af
