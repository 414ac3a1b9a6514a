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

TEST(StringsTest, ShellQuoteQuotesOnlyWhatAShellWouldSplitOrExpand) {
  EXPECT_EQ(ShellQuote("/tmp/data/workspaces/word-freq_2"), "/tmp/data/workspaces/word-freq_2");
  EXPECT_EQ(ShellQuote("my dir"), "'my dir'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("$HOME"), "'$HOME'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote(std::string_view("a\0b", 3)), std::string("'a\0b'", 5));
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

TEST(StringsTest, EscapeControlsLeavesNothingATerminalWouldObey) {
  EXPECT_EQ(EscapeControls("esc \x1b]0;PWNED\x07 \x1b[2J title"),
            "esc \\x1b]0;PWNED\\x07 \\x1b[2J title");
  EXPECT_EQ(EscapeControls("del\x7f c1 \xc2\x9b"
                           "2J"),
            "del\\x7f c1 \\u009b2J");
  // Text, tabs, newlines and other UTF-8 pass unchanged.
  for (const char* same : {"plain", "a\tb\nc", "caf\xc3\xa9 \xc2\xa9 \xe2\x82\xac", ""})
    EXPECT_EQ(EscapeControls(same), same);
}

TEST(StringsTest, ReplaceInvalidUtf8ReplacesEachBadByteAndKeepsTheRest) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(ReplaceInvalidUtf8("a\xff b"), "a" + fffd + " b");
  EXPECT_EQ(ReplaceInvalidUtf8("cut \xe2\x82"), "cut " + fffd + fffd);
  EXPECT_EQ(ReplaceInvalidUtf8("overlong \xc0\xaf"), "overlong " + fffd + fffd);
  EXPECT_EQ(ReplaceInvalidUtf8("surrogate \xed\xa0\xbd"), "surrogate " + fffd + fffd + fffd);
  for (const char* same : {"plain", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", ""})
    EXPECT_EQ(ReplaceInvalidUtf8(same), same);
  EXPECT_EQ(ReplaceInvalidUtf8(std::string("nul\0kept", 9)), std::string("nul\0kept", 9));
}

TEST(StringsTest, MaskUrlPasswordsHidesEveryPasswordAndKeepsTheRest) {
  EXPECT_EQ(MaskUrlPasswords("redis://:s3cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
  EXPECT_EQ(MaskUrlPasswords("postgresql://af:PG@ss@db:5432/af"), "postgresql://af:***@db:5432/af");
  EXPECT_EQ(MaskUrlPasswords("cannot connect to http://bob:pw@127.0.0.1:1/v1/models (refused); "
                             "also https://x:y@h?q=a@b"),
            "cannot connect to http://bob:***@127.0.0.1:1/v1/models (refused); also "
            "https://x:***@h?q=a@b");
  EXPECT_EQ(MaskUrlPasswords("url = \"http://u:p@h\" and more"),
            "url = \"http://u:***@h\" and more");
  // Nothing to hide: no password, no user, an @ outside the authority.
  for (const char* same : {"postgresql://af@db/af", "http://127.0.0.1:8080/x@y", "mailto:a@b",
                           "http://h:80/path", "sqlite:///data/af.db", "://", "a@b://", ""}) {
    EXPECT_EQ(MaskUrlPasswords(same), same);
  }
  EXPECT_EQ(MaskUrlPasswords("redis://:***@h"), "redis://:***@h");
  // libpq's query-string password, alone or with others, in a longer text.
  EXPECT_EQ(MaskUrlPasswords("postgresql://127.0.0.1:15432/af?user=af&password=s3cretPW"),
            "postgresql://127.0.0.1:15432/af?user=af&password=***");
  EXPECT_EQ(MaskUrlPasswords("at postgresql:///af?password=pw&host=/run x?password=kept"),
            "at postgresql:///af?password=***&host=/run x?password=kept");
  EXPECT_EQ(MaskUrlPasswords("postgresql://u:a@h/db?password=b&sslmode=require#f"),
            "postgresql://u:***@h/db?password=***&sslmode=require#f");
  EXPECT_EQ(MaskUrlPasswords("http://h/x?mypassword=v"), "http://h/x?mypassword=v");
}

}  // namespace
}  // namespace af
