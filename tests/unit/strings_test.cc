#include "af/core/strings.h"

#include <gtest/gtest.h>

namespace af {
namespace {

TEST(StringsTest, TrimDropsWhitespaceOnBothSides) {
  EXPECT_EQ(Trim("  a b \t\r\n"), "a b");
  EXPECT_EQ(Trim("\v\fx\f"), "x");
  EXPECT_EQ(Trim(""), "");
  EXPECT_EQ(Trim(" \n\t "), "");
  EXPECT_EQ(Trim("x"), "x");
}

TEST(StringsTest, TrimReturnsAViewIntoItsArgument) {
  std::string s = "  abc  ";
  std::string_view t = Trim(s);
  EXPECT_EQ(t.data(), s.data() + 2);
}

TEST(StringsTest, TrimRightKeepsLeadingWhitespace) {
  EXPECT_EQ(TrimRight("  main\n"), "  main");
  EXPECT_EQ(TrimRight("sha\r\n"), "sha");
  EXPECT_EQ(TrimRight("\n\n"), "");
}

TEST(StringsTest, LowerFoldsAsciiOnly) {
  EXPECT_EQ(Lower("Content-Type"), "content-type");
  EXPECT_EQ(Lower("ÉTÉ Just"), "ÉtÉ just");  // UTF-8 bytes unchanged
  EXPECT_EQ(Lower(""), "");
}

TEST(StringsTest, StartsWith) {
  EXPECT_TRUE(StartsWith("sqlite:///x", "sqlite:"));
  EXPECT_TRUE(StartsWith("abc", ""));
  EXPECT_FALSE(StartsWith("ab", "abc"));
  EXPECT_FALSE(StartsWith("xabc", "abc"));
}

}  // namespace
}  // namespace af
