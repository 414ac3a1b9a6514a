#pragma once
// Pieces of the text `git format-patch` prints around a commit's diff, so the
// delivered patch is made in-process (GitRepo::MailboxText) and reads the
// same as git's. Each handles the plain case only and says so (nullopt) where
// git would print something else: the caller then runs git.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace af::workspace_internal {

// One file of a commit's diff, as the diffstat needs it.
struct StatFile {
  std::string path;                     // printable ASCII without spaces (others are left to git)
  char status = 'M';                    // 'A' added, 'D' deleted, 'M' modified
  uint32_t old_mode = 0, new_mode = 0;  // 0 on the side that does not exist
  bool binary = false;
  // Lines added and deleted; for a binary file its sizes in bytes after and
  // before ("Bin <deleted> -> <added> bytes").
  uint64_t added = 0, deleted = 0;
};

// The diffstat of `git format-patch` (72 columns, graphs scaled, long names
// cut to "...<tail>"), its "N files changed" line and the create, delete and
// mode change lines, each line starting with a space and ending in "\n".
std::string GitDiffStat(const std::vector<StatFile>& files);

// "Subject: " + `prefix` + `summary`, folded at 78 columns as git folds it
// (continuation lines start with a space). nullopt unless `summary` is
// printable ASCII words separated by single spaces.
std::optional<std::string> FoldedSubject(std::string_view prefix, std::string_view summary);

// An RFC 2822 date as git prints it in a mail: "Mon, 30 Nov 2026 19:28:02 +0000"
// for seconds since the epoch and the author's offset from UTC in minutes.
std::string MailDate(int64_t seconds, int offset_minutes);

// Whether `name` can follow "From: " as it is: printable ASCII without the
// characters that make git quote or encode it.
bool PlainMailName(std::string_view name);

}  // namespace af::workspace_internal
