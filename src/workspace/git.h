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

// State shared by a Workspace and the FeatureTrees it hands out.
struct RepoShared {
  std::string git;  // absolute path of the git binary
  std::mutex mu;    // serializes repository-wide operations (worktree add/remove)
  // One git mutex per feature worktree, shared by every handle on it. Guarded by mu.
  std::map<std::string, std::shared_ptr<std::mutex>> tree_mu;
};

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
