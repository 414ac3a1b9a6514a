// The pieces of `git format-patch` text made in-process. Checked against git
// itself in tests/integration/workspace_test.cc; here the edges.
#include <gtest/gtest.h>

#include "workspace/mailbox.h"

namespace af::workspace_internal {
namespace {

TEST(MailboxTest, SubjectsFoldAt78ColumnsWithASpaceOnEachNewLine) {
  EXPECT_EQ(FoldedSubject("[PATCH] ", "Short"), "Subject: [PATCH] Short");
  // "Subject: [PATCH] " is 17 columns: a line may reach column 78 exactly.
  const std::string fits(61, 'a');
  EXPECT_EQ(FoldedSubject("[PATCH] ", fits), "Subject: [PATCH] " + fits);
  EXPECT_EQ(FoldedSubject("[PATCH] ", "x " + std::string(59, 'b')),
            "Subject: [PATCH] x " + std::string(59, 'b'));
  EXPECT_EQ(FoldedSubject("[PATCH] ", "x " + std::string(60, 'b')),
            "Subject: [PATCH] x\n " + std::string(60, 'b'));
  EXPECT_EQ(FoldedSubject("[PATCH 1/2] ", "one two"), "Subject: [PATCH 1/2] one two");
}

TEST(MailboxTest, SubjectsGitWouldPrintOtherwiseAreRefused) {
  for (const std::string summary :
       {std::string(), std::string(" lead"), std::string("trail "), std::string("two  spaces"),
        std::string("tab\there"), std::string("caf\xc3\xa9"), std::string(62, 'a')}) {
    EXPECT_FALSE(FoldedSubject("[PATCH] ", summary).has_value()) << summary;
  }
}

TEST(MailboxTest, DatesAreInTheAuthorsZoneWithoutPaddingTheDay) {
  EXPECT_EQ(MailDate(0, 0), "Thu, 1 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(MailDate(0, -90), "Wed, 31 Dec 1969 22:30:00 -0130");
  EXPECT_EQ(MailDate(1796000000, 345), "Mon, 30 Nov 2026 06:38:20 +0545");
}

TEST(MailboxTest, NamesGitQuotesOrEncodesAreNotPlain) {
  EXPECT_TRUE(PlainMailName("Agent Factory"));
  EXPECT_TRUE(PlainMailName("o'Brien-Smith"));
  for (const char* name : {"", "A. Lovelace", "Doe, John", "x@y", "caf\xc3\xa9", "a\"b"})
    EXPECT_FALSE(PlainMailName(name)) << name;
}

TEST(MailboxTest, DiffstatScalesTheGraphAndCountsBinaryFilesApart) {
  std::vector<StatFile> files = {
      {"big.txt", 'M', 0100644, 0100644, false, 300, 100},
      {"img.png", 'A', 0, 0100644, true, 2048, 0},
      {"small.txt", 'D', 0100644, 0, false, 0, 1},
      {"run.sh", 'M', 0100644, 0100755, false, 0, 0},
  };
  // As `git format-patch` printed it for these changes: 72 columns, the
  // short names leave 54 to the graph.
  EXPECT_EQ(GitDiffStat(files),
            " big.txt   | 400 ++++++++++++++++++++++++++++++++++++++++--------------\n"
            " img.png   | Bin 0 -> 2048 bytes\n"
            " small.txt |   1 -\n"
            " run.sh    |   0\n"
            " 4 files changed, 300 insertions(+), 101 deletions(-)\n"
            " create mode 100644 img.png\n"
            " delete mode 100644 small.txt\n"
            " mode change 100644 => 100755 run.sh\n");
  EXPECT_EQ(GitDiffStat({{"a", 'M', 0100644, 0100644, false, 1, 0}}),
            " a | 1 +\n 1 file changed, 1 insertion(+)\n");
}

}  // namespace
}  // namespace af::workspace_internal
