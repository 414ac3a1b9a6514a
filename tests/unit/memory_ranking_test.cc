#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

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

// Rank fusion: these tests give ranks only. (Score fusion, the default, is
// tested below with scores.)
FusionOptions RankFusion() {
  FusionOptions o;
  o.method = FusionMethod::kRrf;
  return o;
}

FusionOptions Plain() {
  FusionOptions o = RankFusion();
  o.importance_weight = 0;
  o.recency_weight = 0;
  return o;
}

TEST(FuseRankingsTest, EmptyInputGivesNothing) {
  EXPECT_TRUE(FuseRankings({}, FusionOptions{}, kNow).empty());
  EXPECT_TRUE(FuseRankings({}, RankFusion(), kNow).empty());
}

TEST(FuseRankingsTest, FirstInBothBeatsFirstInOneAndScoresOne) {
  FusionOptions equal = Plain();  // equal votes, so first in either ranking ties
  equal.text_weight = equal.vector_weight = 1;
  auto out = FuseRankings({C(1, 1, 0), C(2, 1, 1), C(3, 0, 1)}, equal, kNow);
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
  FusionOptions o = RankFusion();
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
  FusionOptions with = RankFusion();
  with.recency_weight = 0;
  EXPECT_EQ(FuseRankings(in, with, kNow)[0].label, 2);
  FusionOptions without = with;
  without.importance_weight = 0;
  EXPECT_EQ(FuseRankings(in, without, kNow)[0].label, 1);
}

TEST(FuseRankingsTest, RecencyMovesCloseOnesAndCanBeTurnedOff) {
  std::vector<Candidate> in = {C(1, 1, 3, 5, kNow - 365 * kDay), C(2, 2, 3, 5, kNow - kDay)};
  FusionOptions with = RankFusion();
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
  EXPECT_EQ(FuseRankings(in, RankFusion(), kNow)[0].label, 1);
}

TEST(FuseRankingsTest, TiesAreStableAndDeterministic) {
  std::vector<Candidate> in;
  for (int64_t l : {9, 3, 7, 1, 5}) in.push_back(C(l, 4, 4));
  auto a = FuseRankings(in, RankFusion(), kNow);
  std::reverse(in.begin(), in.end());
  auto b = FuseRankings(in, RankFusion(), kNow);
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

// Score fusion: a candidate with BM25 score `text` (0 = not matched by words)
// and cosine `sim`.
Candidate S(int64_t label, double text, double sim) {
  Candidate c;
  c.label = label;
  c.text_score = text;
  c.similarity = sim;
  return c;
}

FusionOptions PlainScores(double text_share) {
  FusionOptions o;
  o.method = FusionMethod::kScores;
  o.text_share = text_share;
  o.importance_weight = 0;
  o.recency_weight = 0;
  return o;
}

std::vector<Candidate> Ranked(std::vector<Candidate> in) {
  // text_rank from text_score (as the full-text search gives them).
  std::vector<size_t> order;
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].text_score > 0) order.push_back(i);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return in[a].text_score > in[b].text_score; });
  for (size_t r = 0; r < order.size(); ++r) in[order[r]].text_rank = static_cast<int>(r) + 1;
  return in;
}

TEST(FuseScoresTest, IsTheDefault) { EXPECT_EQ(FusionOptions{}.method, FusionMethod::kScores); }

TEST(FuseScoresTest, ConvexCombinationOfMaxNormalisedScores) {
  // 1: best words, weak vector; 2: half the words, best vector; 3: vector only.
  auto in = Ranked({S(1, 10, 0.2), S(2, 5, 0.4), S(3, 0, 0.3)});
  auto out = FuseRankings(in, PlainScores(0.7), kNow);
  ASSERT_EQ(out.size(), 3u);
  // 1: 0.7*1 + 0.3*0.5 = 0.85; 2: 0.7*0.5 + 0.3*1 = 0.65; 3: 0.3*0.75 = 0.225.
  EXPECT_EQ(out[0].label, 1);
  EXPECT_EQ(out[1].label, 2);
  EXPECT_EQ(out[2].label, 3);
  EXPECT_NEAR(out[0].score, 0.85, 1e-9);
  EXPECT_NEAR(out[1].score, 0.65, 1e-9);
  EXPECT_NEAR(out[2].score, 0.225, 1e-9);
  // A smaller text share lets the vector side win.
  EXPECT_EQ(FuseRankings(in, PlainScores(0.3), kNow)[0].label, 2);
}

TEST(FuseScoresTest, DistancesMatterNotOnlyOrder) {
  // Rank fusion sees the same order in both cases; score fusion sees that in
  // the first, 1 is far ahead on words, and in the second only just.
  auto far = Ranked({S(1, 20, 0.30), S(2, 4, 0.40)});
  auto near = Ranked({S(1, 20, 0.30), S(2, 19, 0.40)});
  EXPECT_EQ(FuseRankings(far, PlainScores(0.5), kNow)[0].label, 1);
  EXPECT_EQ(FuseRankings(near, PlainScores(0.5), kNow)[0].label, 2);
  EXPECT_EQ(FuseRankings(far, Plain(), kNow)[0].label, FuseRankings(near, Plain(), kNow)[0].label);
}

TEST(FuseScoresTest, BestInBothScoresOneAndOddInputsAreSafe) {
  auto out = FuseRankings(Ranked({S(1, 8, 0.9), S(2, 3, 0.5)}), PlainScores(0.6), kNow);
  EXPECT_DOUBLE_EQ(out[0].score, 1.0);
  // Negative similarity counts as none; NaN share is the default; shares
  // outside [0, 1] are clamped; nothing known scores 0.
  auto odd = FuseRankings(Ranked({S(1, 0, -0.5), S(2, 2, 0)}), PlainScores(7), kNow);
  EXPECT_EQ(odd[0].label, 2);
  EXPECT_DOUBLE_EQ(odd[0].score, 1.0);
  EXPECT_EQ(odd[1].score, 0.0);
  auto nan = FuseRankings(Ranked({S(1, 4, 0.2)}), PlainScores(std::nan("")), kNow);
  EXPECT_GE(nan[0].score, 0.0);
  EXPECT_LE(nan[0].score, 1.0);
}

}  // namespace
}  // namespace af
