// The word-cutting rule both store backends share (src/store/knowledge_rules.h):
// PostgreSQL indexes rows with it, so what it folds decides what a search finds.

#include <gtest/gtest.h>

#include "store/knowledge_rules.h"

namespace af::store_internal {
namespace {

using Words = std::vector<std::string>;

TEST(TextWordsTest, SplitsOnPunctuationUnderscoreAndBadBytesKeepingRepeats) {
  EXPECT_EQ(TextWords("parse_config reads CONFIG, then config."),
            (Words{"parse", "config", "reads", "config", "then", "config"}));
  EXPECT_EQ(TextWords("a'b\"c\\d:e*f(g)h&i|j!k"),
            (Words{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}));
  EXPECT_EQ(TextWords(std::string("conf\0ig \xff\xfeok \xed\xa0\x80x", 17)),
            (Words{"conf", "ig", "ok", "x"}));
  // Non-ASCII punctuation and emoji separate; other characters join words.
  EXPECT_EQ(TextWords("caf\xc3\xa9\xe2\x80\x94"
                      "config \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac"),
            (Words{"cafe", "config", "\xe6\x97\xa5\xe6\x9c\xac"}));
  EXPECT_TRUE(TextWords("  -- ** ").empty());
  // U+FFFD (what a store keeps for a bad byte) separates as the byte did.
  EXPECT_EQ(TextWords("bad\xef\xbf\xbd"
                      "bytes"),
            (Words{"bad", "bytes"}));
}

TEST(TextWordsTest, FoldsDiacriticsAndCaseAsSqliteUnicode61Does) {
  // é, È, Ç, ñ, Ü, ÿ, Ā, ő, Ž, İ lose their marks and case.
  EXPECT_EQ(TextWords("\xc3\xa9\xc3\x88 \xc3\x87\xc3\xb1 \xc3\x9c\xc3\xbf \xc4\x80\xc5\x91 "
                      "\xc5\xbd\xc4\xb0"),
            (Words{"ee", "cn", "uy", "ao", "zi"}));
  // Letters without a decomposition keep their shape, lower-cased: Æ -> æ,
  // Ø -> ø, Ł -> ł; ß stays.
  EXPECT_EQ(TextWords("\xc3\x86 \xc3\x98 \xc5\x81 \xc3\x9f"),
            (Words{"\xc3\xa6", "\xc3\xb8", "\xc5\x82", "\xc3\x9f"}));
  // Greek and Cyrillic capitals: ΑΩ -> αω, ЖЁ -> жё.
  EXPECT_EQ(TextWords("\xce\x91\xce\xa9 \xd0\x96\xd0\x81"),
            (Words{"\xce\xb1\xcf\x89", "\xd0\xb6\xd1\x91"}));
}

TEST(QueryWordsTest, DeduplicatesAfterFoldingAndDropsStopwordsUnlessAlone) {
  EXPECT_EQ(QueryWords("Caf\xc3\xa9 CAFE cafe the"), (Words{"cafe"}));
  EXPECT_EQ(QueryWords("to be or not"), (Words{"not"}));
  EXPECT_EQ(QueryWords("THE the"), (Words{"the"}));
  EXPECT_TRUE(QueryWords(std::string(kMaxWordBytes + 1, 'a')).empty());
  std::string many;
  for (int i = 0; i < 100; ++i) many += "w" + std::to_string(i) + " ";
  EXPECT_EQ(QueryWords(many).size(), kMaxQueryWords);
}

TEST(BestHitsTest, KeepsTheBestHighestFirstNewerLabelOnTies) {
  std::vector<TextHit> hits = {{1, 0.5}, {2, 2.0}, {3, 0.5}, {4, 1.0}};
  auto best = BestHits(hits, 3);
  ASSERT_EQ(best.size(), 3u);
  EXPECT_EQ(best[0].label, 2);
  EXPECT_EQ(best[1].label, 4);
  EXPECT_EQ(best[2].label, 3);  // ties with 1: the newer label first
  EXPECT_EQ(BestHits(hits, 10).size(), 4u);
  EXPECT_TRUE(BestHits(hits, 0).empty());
}

TEST(SubstringWordsTest, SplitsAtAsciiSpaceAndLowerCasesAsciiOnly) {
  EXPECT_EQ(SubstringWords("  Parse_Config\tREADS\n\xc3\x89t\xc3\xa9 "),
            (Words{"parse_config", "reads", "\xc3\x89t\xc3\xa9"}));
  EXPECT_TRUE(SubstringWords(" \t ").empty());
  EXPECT_EQ(SubstringWords("x"), (Words{"x"}));
}

}  // namespace
}  // namespace af::store_internal
