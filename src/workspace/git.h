#pragma once
// Internal to the workspace module: the git CLI run through Spawn.

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "af/core/status.h"

namespace af::workspace_internal {

class GitRepo;

// State shared by a Workspace and the FeatureTrees it hands out.
struct RepoShared {
  std::string git;  // absolute path of the git binary
  std::mutex mu;    // serializes repository-wide operations (worktree add/remove)
  // The main repository, kept open (GitRepo::Kept: opening reads every
  // config file). Guarded by mu.
  std::unique_ptr<GitRepo> repo;
  // One git mutex per feature worktree, shared by every handle on it. Guarded by mu.
  std::map<std::string, std::shared_ptr<std::mutex>> tree_mu;
};

// Where the cross-process locks of a repository live: <root>/.af/locks (next
// to the worktrees, outside every tree, so no commit or clean touches them).
std::filesystem::path LocksDir(const std::filesystem::path& repo_root);

// An flock(2) on a file, released when the object goes (or the process dies:
// the kernel drops the locks of a dead process, so a crash never leaves one
// behind). flock locks belong to the open file, not the process: two
// FileLocks on one path in the same process exclude each other like two
// processes do.
class FileLock {
 public:
  FileLock() = default;
  ~FileLock();
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // Opens (creating it and its directory) `path` without locking it.
  // Internal naming the path when it cannot.
  static Result<FileLock> Open(const std::filesystem::path& path);
  // Opens `path` and waits for an exclusive lock on it.
  static Result<FileLock> Exclusive(const std::filesystem::path& path);

  // Blocking exclusive / shared lock (a shared lock held here is converted),
  // a non-blocking exclusive attempt (false when another open file holds any
  // lock), and unlock. Retry on EINTR; a failure other than contention is
  // Internal.
  Status LockExclusive();
  Status LockShared();
  Result<bool> TryLockExclusive();
  void Unlock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Who commits: every commit Agent Factory makes, by the git CLI or libgit2.
inline constexpr char kCommitterName[] = "Agent Factory";
inline constexpr char kCommitterEmail[] = "agent-factory@localhost";

struct GitOutput {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `git -C dir <fixed -c options> args...` with the Agent Factory identity
// and no hooks. Errors only when git could not be started.
Result<GitOutput> RunGitRaw(const std::string& git, const std::filesystem::path& dir,
                            const std::vector<std::string>& args,
                            const std::vector<std::string>& extra_env = {});

// Like RunGitRaw but a non-zero exit is Internal with git's stderr; returns stdout.
Result<std::string> RunGit(const std::string& git, const std::filesystem::path& dir,
                           const std::vector<std::string>& args,
                           const std::vector<std::string>& extra_env = {});

}  // namespace af::workspace_internal
