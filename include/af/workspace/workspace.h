#pragma once
// The git repositories where agents edit code.
//
// A Workspace is one project's repository at `<data_dir>/workspaces/<project>`
// (or a repository the user pointed at, used as is). Each feature works in its
// own git worktree at `<root>/.af/worktrees/<feature_id>` on branch
// `af/<feature_id>`, so several features of one project run at once without
// seeing each other's half-done files.
//
// Git runs in-process through libgit2 for what every task does (refs, status,
// staging, task commits, the committed diff, the delivered patch), and as the
// `git` CLI, started with argument vectors (never a shell), for diffs of
// uncommitted work (the API's, a refused finish's), resets that have work to
// do and patches libgit2 would print otherwise. Either way with a fixed
// identity ("Agent Factory" <agent-factory@localhost>), no signing, no hooks
// (`core.hooksPath=/dev/null`; libgit2 runs none: nothing from the repository
// runs outside the sandbox) and no automatic gc, so it works on a machine with
// no git configuration. Where a filter driver runs a program (Git LFS),
// staging and task commits go through the CLI, which runs it.
//
// Every path an agent gives goes through FeatureTree::Resolve, which refuses
// anything that leaves the tree (see there). Errors are Status values whose
// message a model can read and act on.

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af {

class FeatureTree;

namespace workspace_internal {
struct RepoShared;
class FileLock;
class GitRepo;
}  // namespace workspace_internal

// One project's repository. Thread-safe: OpenFeature / RemoveFeatureTree may
// be called from several threads, and from several processes on one
// repository (worker processes sharing the data directory): they serialize
// on the repository, across processes through an flock on
// `<root>/.af/locks/repo` (Open takes it too while it creates the repository).
// FeatureTrees it hands out share its state and may outlive it.
class Workspace {
 public:
  // Opens the repository at `root`, creating the directory and `git init -b
  // main` with an initial commit (README.md) when it is not a repository yet.
  // An existing repository is used as is; features branch from `main`, or from
  // the branch checked out when there is no `main`. Adds `.af/` to the
  // repository's info/exclude. A directory inside another repository's tree
  // gets its own (nested) repository. An existing repository without any
  // commit gets an empty initial commit (nothing can branch from it otherwise).
  // Errors: FailedPrecondition when git is missing or HEAD is detached in a
  // repository without `main`; Internal when a git command fails (the message
  // carries git's stderr).
  static Result<std::unique_ptr<Workspace>> Open(std::filesystem::path root);

  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // Creates, or reopens (e.g. after a restart), the worktree of a feature at
  // `<root>/.af/worktrees/<feature_id>` on branch `af/<feature_id>`, branched
  // from the base branch when the branch does not exist yet. `feature_id`:
  // 1-100 characters of [A-Za-z0-9._-], not starting with '.' or '-'
  // (InvalidArgument otherwise).
  Result<std::unique_ptr<FeatureTree>> OpenFeature(const std::string& feature_id);

  // Removes the feature's worktree directory (uncommitted changes in it are
  // lost) and keeps the branch. Ok when there is no such worktree.
  Status RemoveFeatureTree(const std::string& feature_id);

  // Whether refs/heads/<name> exists.
  Result<bool> BranchExists(const std::string& name);

  const std::filesystem::path& root() const { return root_; }
  // The branch features start from ("main" for repositories it created).
  const std::string& base_branch() const { return base_branch_; }

 private:
  Workspace(std::filesystem::path root, std::string base_branch,
            std::shared_ptr<workspace_internal::RepoShared> shared);

  std::filesystem::path root_;
  std::string base_branch_;
  std::shared_ptr<workspace_internal::RepoShared> shared_;
};

// A match of FeatureTree::Search.
struct SearchHit {
  std::string path;  // relative to the tree root
  int line = 0;      // 1-based
  std::string text;  // the line, cut at 300 bytes
};

// What FeatureTree::Search looks for and where.
struct SearchOptions {
  size_t max_hits = 50;
  bool ignore_case = false;  // ASCII letters only
  // Only paths matching this glob (fnmatch, '*' also crosses '/'), or under
  // this directory when it has no wildcard, e.g. "src", "*.py", "tests/*_test.cc".
  // Empty = everywhere.
  std::string path_glob;
};

// Build outputs and caches: paths that are made by building or running the
// code, never written by hand (build/, node_modules/, __pycache__/, dist/,
// target/, .pytest_cache/, *.o, *.pyc, ... at any depth; .git/ and .af/ too).
// The one rule for what search skips and what a task's commit leaves out
// besides the repository's own ignore files. `rel` is relative to the tree root.
bool IsBuildOutputOrCache(std::string_view rel);

// One feature's worktree. Thread-safe: several tasks of one feature may use it
// at once, also from several processes. Git operations serialize on one
// mutex per feature in a process and, across processes (and across handles
// from different Workspace objects), on an exclusive flock of
// `<root>/.af/locks/<feature_id>.git` held around each one; file operations
// run concurrently (EditFile's read-modify-write serializes with other edits).
class FeatureTree {
 public:
  static constexpr size_t kDefaultMaxReadBytes = 256 * 1024;
  static constexpr size_t kMaxListEntries = 2000;

  ~FeatureTree();
  FeatureTree(const FeatureTree&) = delete;
  FeatureTree& operator=(const FeatureTree&) = delete;

  // THE path check. `rel` is relative to the tree root. Refuses (with a
  // message for the model): empty paths and NUL bytes (InvalidArgument);
  // absolute paths, `..` that leaves the tree, anything inside `.git`, a path
  // whose existing part resolves outside the tree through a symlink, and
  // dangling symlinks (PermissionDenied). Returns the absolute path with the
  // existing part resolved (no symlinks left in it). "." is the root itself.
  Result<std::filesystem::path> Resolve(std::string_view rel) const;

  // The file's content. NotFound names the path; a directory is
  // InvalidArgument. A binary file (NUL byte in the first 8 KiB) yields a one
  // line note instead of its bytes; a file larger than `max_bytes` is cut there
  // with a note giving its size.
  Result<std::string> ReadFile(std::string_view rel, size_t max_bytes = kDefaultMaxReadBytes) const;

  // Writes (creates or truncates) the file, creating parent directories. Never
  // writes through a symlink that leads out of the tree.
  Status WriteFile(std::string_view rel, std::string_view content);

  // Replaces the one occurrence of `old_text` with `new_text`. NotFound when it
  // does not occur ("old_text not found in PATH"), InvalidArgument when it
  // occurs more than once or is empty.
  Status EditFile(std::string_view rel, std::string_view old_text, std::string_view new_text);

  // Files (not directories) under `rel` ("" = the root), recursively, as paths
  // relative to the tree root, sorted; skips .git and .af and does not follow
  // symlinked directories. At most kMaxListEntries, then an entry
  // "... [list truncated at 2000 entries]". Build outputs and caches
  // (IsBuildOutputOrCache) are not listed unless `rel` is inside one: a last
  // entry "... [N build output or cache files not listed: ...]" counts them.
  Result<std::vector<std::string>> ListFiles(std::string_view rel = "") const;

  // Plain substring search over the text files git would consider (tracked
  // ones and untracked ones not ignored by .gitignore and friends), skipping
  // build outputs and caches (IsBuildOutputOrCache), symlinks, binary files
  // and files over 2 MiB, in path order. At most options.max_hits hits.
  // InvalidArgument on an empty query.
  Result<std::vector<SearchHit>> Search(std::string_view query,
                                        const SearchOptions& options = {}) const;

  // The paths that differ from HEAD in the tree (changed, added, deleted and
  // untracked files; ignored files and build outputs/caches left out), each
  // with a signature (git status, size, modification time) that changes when
  // the file does. Two snapshots taken around a command tell which files it
  // created, changed or removed.
  Result<std::map<std::string, std::string>> ChangeSnapshot() const;

  // Stat and unified diff (capped at `max_bytes`, then a note) of `paths`
  // in the tree against HEAD, uncommitted new files included; "" when they
  // have no change.
  Result<std::string> UncommittedDiff(const std::vector<std::string>& paths, size_t max_bytes);
  // Whether UncommittedDiff(paths) would be non-empty, found in-process
  // without writing anything (the diff's text needs a git process).
  Result<bool> HasUncommittedChange(const std::vector<std::string>& paths);

  // Commits exactly `paths` (additions, changes and deletions; other modified
  // files stay uncommitted) with `message` plus a `Task-Id: <task_id>` trailer
  // and returns the new commit's sha. Idempotent: when the branch already has a
  // commit with that trailer, returns its sha and commits nothing. Returns ""
  // when the paths have no changes. InvalidArgument on an empty task id or
  // path list; PermissionDenied when a path escapes the tree.
  Result<std::string> CommitTask(const std::string& task_id, const std::string& message,
                                 const std::vector<std::string>& paths);

  // The sha of the branch's commit carrying `Task-Id: <task_id>`, or "" when
  // there is none.
  Result<std::string> FindTaskCommit(const std::string& task_id);

  // Registers this handle as a user of the worktree, across processes, until
  // it is destroyed (a shared flock on `<root>/.af/locks/<feature_id>.use`),
  // and first recovers the tree when no other handle uses it: anything
  // uncommitted was then left by a process that died mid-task, and resumed
  // tasks replay their model answers and redo their tool calls, so they must
  // start from the last commit (ResetToLastCommit) or an edit would be applied
  // twice. While another live handle (another worker process) uses the tree,
  // its uncommitted files are its work in progress and stay. The kernel drops
  // a dead process's lock, so its leftovers are reset by the next process to
  // attach once no other one is attached. (Until then they stay: a task redone
  // meanwhile replays its edits over them; a whole-file write is unaffected,
  // an edit already applied fails and the model is told.) Returns whether it
  // reset; a second call does nothing and returns false. Errors: the lock file
  // cannot be opened, git fails.
  Result<bool> Attach();

  // Puts the tree back to its last commit: uncommitted changes and untracked
  // files (ignored ones too) are removed. What a task resumed after a crash
  // starts from, and what the gates and the reviewer see: exactly what is
  // delivered.
  Status ResetToLastCommit();

  // Unified diff of the tree (committed and uncommitted changes, new files
  // included) against the point where the branch left the base branch.
  Result<std::string> Diff();

  // Unified diff of the branch's commits only (what is delivered) against the
  // point where it left the base branch; empty when nothing was committed.
  Result<std::string> CommittedDiff();

  // Whether that diff is non-empty, without producing it.
  Result<bool> HasCommittedChange();

  // Writes the branch's commits since the base branch as a format-patch
  // mailbox to `out` (parent directories created) and returns that text:
  // what `git format-patch --stdout --binary` prints (binary data lines are
  // compressed differently), made in-process unless git would print it
  // otherwise (then by git).
  Result<std::string> WritePatch(const std::filesystem::path& out);

  Result<std::string> HeadSha();

  // The tree sha of HEAD: what the gates see after ResetToLastCommit.
  Result<std::string> HeadTreeId();

  // The tree sha the work tree would commit as it is now (tracked files as on
  // disk, untracked ones not ignored, build outputs and caches left out:
  // IsBuildOutputOrCache), without changing the index or the branch. Equal to
  // HeadTreeId() after the work is committed exactly, so a result obtained on
  // the uncommitted tree holds for the commit.
  Result<std::string> WorkTreeId();

  // Paths changed against the base branch, committed or not (new files too).
  Result<std::vector<std::string>> ChangedFiles();

  std::filesystem::path root() const { return root_; }
  std::string branch() const { return branch_; }
  // The branch it started from (the project's `main`, or what was checked out).
  std::string base_branch() const { return base_branch_; }

 private:
  friend class Workspace;
  FeatureTree(std::filesystem::path root, std::filesystem::path git_dir, std::string branch,
              std::string base_branch, std::shared_ptr<workspace_internal::RepoShared> shared,
              std::shared_ptr<std::mutex> git_mu, std::filesystem::path lock_base,
              std::unique_ptr<workspace_internal::FileLock> git_lock);

  // Runs git in the tree; the caller holds git_mu_.
  Result<std::string> GitLocked(const std::vector<std::string>& args,
                                const std::vector<std::string>& extra_env = {});
  // `args` for the git CLI with the tree's git directory and work tree named
  // (see git_dir_).
  std::vector<std::string> InTree(std::vector<std::string> args) const;
  // A throwaway index at `tmp` with the tree's changes staged (so untracked
  // files show in diffs), of `rels` only when not empty, without touching the
  // real index; with `skip_generated`, build outputs and caches stay out.
  // Returns the GIT_INDEX_FILE= setting for git. Caller holds git_mu_.
  Result<std::string> TempIndexLocked(workspace_internal::GitRepo& repo,
                                      const std::filesystem::path& tmp, bool skip_generated = false,
                                      const std::vector<std::string>& rels = {});
  Result<std::string> MergeBaseLocked(workspace_internal::GitRepo& repo);
  // This handle's repository, opened on first use and kept: opening reads
  // every git config file and finds the worktree's directories, which cost
  // more than most operations. The index an earlier operation loaded (or
  // replaced with a temporary one) is dropped, so each starts from the file.
  // Caller holds git_mu_.
  Result<workspace_internal::GitRepo*> RepoLocked();

  std::filesystem::path root_;  // canonical
  // The worktree's registration in the main repository (.git/worktrees/<name>),
  // where git and libgit2 are pointed explicitly: the `.git` file in root_ is
  // writable by sandboxed commands, and one pointing at a git directory they
  // made (with core.fsmonitor, filters or hooks in its config) would have the
  // server run their programs outside the sandbox.
  std::filesystem::path git_dir_;
  std::string branch_;
  std::string base_branch_;
  std::shared_ptr<workspace_internal::RepoShared> shared_;
  // Shared by every FeatureTree object of the same feature (from the
  // Workspace), so two handles on one worktree still serialize git.
  std::shared_ptr<std::mutex> git_mu_;
  // `<root>/.af/locks/<feature_id>`: + ".git" is git_lock_'s file, + ".use" Attach's.
  std::filesystem::path lock_base_;
  // This handle's open lock file for git operations (see the class comment).
  std::unique_ptr<workspace_internal::FileLock> git_lock_;
  std::unique_ptr<workspace_internal::GitRepo> repo_;       // RepoLocked's; guarded by git_mu_
  std::unique_ptr<workspace_internal::FileLock> use_lock_;  // set by Attach
  std::mutex attach_mu_;                                    // guards use_lock_
  std::mutex edit_mu_;
};

}  // namespace af
