#pragma once
// Internal to the workspace module: git in-process through libgit2, for the
// operations every feature runs (refs, status, staging, task commits, merge
// bases, worktree registrations, the committed diff the reviewer reads, the
// patch delivered). Each one used to start a git process: from a large
// server that costs a process start, the dynamic loader's CPU probe and git's
// own set-up, several times per task. What stays on the git CLI (see git.h)
// is diffs of uncommitted work (the API's, a refused finish's), the patch
// where git would print it otherwise (MailboxText), and whatever a filter or
// textconv program must run for (Git LFS).
//
// libgit2 is included by git_lib.cc only. A GitRepo is not thread-safe. Its
// owner keeps it open between operations (opening reads every config file)
// and uses it under its tree or repository lock; refs, objects and config
// are read from disk as libgit2 needs them, and Kept makes the next
// operation read the index file again, so a handle sees what other
// processes changed meanwhile. (libgit2 caches core.* settings such as
// core.filemode for the handle's life.)

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

struct git_repository;

namespace af::workspace_internal {

class GitRepo {
 public:
  // Opens the repository or worktree whose top is exactly `dir` (no search
  // upward). Initializes libgit2 once per process. Internal with libgit2's
  // message when `dir` is not one.
  static Result<GitRepo> Open(const std::filesystem::path& dir);

  GitRepo(GitRepo&& other) noexcept;
  GitRepo& operator=(GitRepo&& other) noexcept;
  GitRepo(const GitRepo&) = delete;
  GitRepo& operator=(const GitRepo&) = delete;
  ~GitRepo();

  // The handle kept in *kept for the repository at `dir`: opened into it on
  // first use; on later uses the index an earlier operation loaded or
  // replaced (StageInto) is dropped, so this one reads the index file again.
  // The caller holds the lock that guards *kept.
  static Result<GitRepo*> Kept(std::unique_ptr<GitRepo>* kept, const std::filesystem::path& dir);

  // The commit `rev` names (a sha, a branch name, HEAD...), as a sha; "" when
  // it names nothing (a missing ref, an unborn HEAD).
  Result<std::string> ResolveCommit(const std::string& rev);
  // Whether the full ref name (e.g. "refs/heads/main") resolves.
  Result<bool> RefExists(const std::string& refname);
  // The best common ancestor of two commits, as a sha.
  Result<std::string> MergeBase(const std::string& a, const std::string& b);
  // The tree sha of commit `rev`.
  Result<std::string> TreeOf(const std::string& rev);
  // `git diff --binary <from> <to>` of two commits, printed by libgit2: the
  // same text for ordinary changes (no textconv, no external diff program);
  // nullopt when a changed path is one the two spell differently (a byte
  // outside printable ASCII, a space, a quote or a backslash).
  Result<std::optional<std::string>> PatchText(const std::string& from, const std::string& to);
  // `git format-patch --stdout --no-signature --binary <from>..<to>` printed
  // in-process, with git's diffstat and subject folding (mailbox.h): the
  // same text but for binary data lines, as PatchText. nullopt where git
  // would print otherwise: merges, empty commits, renames, a path PatchText
  // refuses, a message or author outside plain ASCII (or one git would quote),
  // a summary that folds unusually, format.*, diff.* (but difftool and colour
  // ones), i18n.* or core.abbrev settings.
  Result<std::optional<std::string>> MailboxText(const std::string& from, const std::string& to);

  // This worktree's own git directory (absolute), the repository's common
  // one (where worktrees/ and info/ live) and the index file.
  std::filesystem::path GitDir() const;
  std::filesystem::path CommonDir() const;
  Result<std::filesystem::path> IndexPath() const;

  // The sha of the newest commit reachable from HEAD (commit-date order, as
  // `git log`) whose message carries the trailer `key: value`; "" for none.
  Result<std::string> FindCommitWithTrailer(const std::string& key, const std::string& value);

  // Whether the work tree has nothing `git reset --hard && git clean -fdx`
  // would change: index and tracked files as in HEAD, no untracked or ignored
  // file. (Empty directories are not seen here: git does not track them.)
  Result<bool> IsPristine();

  // Whether any path under `rels` (matched literally, directories
  // recursively; everything when empty) differs between HEAD's tree and the
  // work tree: changed, added, deleted, or untracked and not ignored
  // (submodules' contents aside). Paths for which `skip` says true do not
  // count. Nothing is written (no object, no index). Only for repositories
  // without external filters.
  Result<bool> DiffersFromHead(const std::vector<std::string>& rels,
                               const std::function<bool(std::string_view)>& skip);

  // Whether a filter driver runs a program (filter.<name>.clean/.process in
  // the configuration, e.g. Git LFS): libgit2 does not run those, so content
  // must then be staged by the git CLI.
  Result<bool> HasExternalFilters();
  // Whether a diff driver converts files to text for diffs
  // (diff.<name>.textconv): only the git CLI's diff applies it.
  Result<bool> HasTextconv();

  // `git add -A -- <rels>` on the real index (rels relative to the top,
  // matched literally; directories recursively), then a commit of exactly
  // those paths (as `git commit --only -- <rels>`: other staged changes stay
  // staged, out of it) on HEAD's branch with `message` cleaned as
  // --cleanup=whitespace, author and committer `name <email>` now. Returns the
  // new sha, or "" when those paths do not differ from HEAD (nothing
  // committed). Internal when a named path is ignored and untracked (as
  // `git add` refuses it) or unmerged (as `git commit` refuses it).
  Result<std::string> CommitPaths(const std::vector<std::string>& rels, const std::string& message,
                                  const std::string& name, const std::string& email);

  // Writes to `index_file` a copy of the index with the work tree's changes
  // staged (`git add -A`), limited to `rels` when not empty; paths for which
  // `skip` says true are left as they are in the index (as with a pathspec
  // exclude). The real index is not touched; blobs of the staged files are
  // written to the object store.
  Status StageInto(const std::filesystem::path& index_file, const std::vector<std::string>& rels,
                   const std::function<bool(std::string_view)>& skip);

  // The tree sha of the work tree as it is: tracked files as they are on disk
  // (deleted ones gone) and untracked files that are not ignored, except those
  // `skip_untracked` says to leave out. Neither the index nor HEAD changes.
  Result<std::string> WorkTreeId(const std::function<bool(std::string_view)>& skip_untracked);

  struct Worktree {
    std::string name;            // its directory under <common dir>/worktrees
    std::filesystem::path path;  // where its files are ("" when unreadable)
    bool stale = false;          // what `git worktree prune` would remove
  };
  // The linked worktrees registered in the repository.
  Result<std::vector<Worktree>> Worktrees();
  // Removes a worktree's registration (its admin directory), as `git worktree
  // prune` does for a stale one; its files are the caller's to remove.
  Status PruneWorktree(const std::string& name);
  // `git worktree prune`: removes every stale registration (Worktrees()).
  // Reads every registration: for start-up and rare paths, not per feature.
  Status PruneStaleWorktrees();
  // The name of the linked worktree whose files are at `path`, when `path`
  // holds a `.git` file naming a registration of this repository that names
  // `path` back; "" otherwise (no worktree there, half made, or registered
  // elsewhere). Reads two small files: it does not list the others.
  std::string RegisteredWorktree(const std::filesystem::path& path);
  // Removes the registration `name` when there is one and its files are gone
  // (no `.git` file where it points, or it is unreadable), locked or not.
  Status PruneIfStale(const std::string& name);

  // As `git worktree add <path> <branch>`, or `git worktree add -b <branch>
  // <path> <base>` when the branch does not exist yet (it is created at
  // `base` first, reflog "branch: Created from <base>"): registers the linked
  // worktree `name` (<common dir>/worktrees/<name>), points its HEAD at the
  // branch, checks the branch's tree out into `path` and writes its index.
  // The files git reads are written as git writes them (a relative
  // `commondir`, a `gitdir:` line without a trailing slash), so the git CLI
  // sees the same worktree either way. `path` must not exist (its parent
  // must); libgit2 runs no filter program, so the caller keeps the CLI when
  // HasExternalFilters(). Unlike the CLI it does not check that the branch is
  // checked out in no other worktree (that reads every worktree): the branch
  // must be the caller's own. Its `.git` file is written last, so a checkout
  // cut short leaves no directory RegisteredWorktree accepts. Internal with
  // libgit2's message otherwise (e.g. `name` is registered already); the
  // worktree's directory and registration are then removed (the branch, once
  // created, stays, as with the CLI).
  Status AddWorktree(const std::string& name, const std::filesystem::path& path,
                     const std::string& branch, const std::string& base);

 private:
  explicit GitRepo(git_repository* repo) : repo_(repo) {}
  // Whether the configuration (all levels) has an entry whose name `wanted`
  // accepts.
  Result<bool> AnyConfigName(const std::function<bool(std::string_view)>& wanted);
  git_repository* repo_ = nullptr;
};

}  // namespace af::workspace_internal
