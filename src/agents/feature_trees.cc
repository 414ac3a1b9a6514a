#include "agents/pipeline_impl.h"

namespace af {

using json = nlohmann::json;

Result<std::shared_ptr<FeatureTree>> Pipeline::Impl::TreeFor(const Feature& f) {
  std::lock_guard lock(trees_mu_);
  auto it = trees_.find(f.id);
  if (it != trees_.end()) return it->second;
  // Re-read under the lock: a feature that ended meanwhile had its worktree
  // removed (ReleaseTree) and must not get it back.
  AF_ASSIGN_OR_RETURN(Feature now, deps_.store->GetFeature(f.id));
  if (IsTerminalFeatureStatus(now.status))
    return FailedPrecondition("feature " + f.id + " is " + now.status);
  auto& ws = workspaces_[f.project];
  if (!ws) {
    AF_ASSIGN_OR_RETURN(
        ws, Workspace::Open(std::filesystem::path(cfg_.data_dir) / "workspaces" / f.project));
  }
  AF_ASSIGN_OR_RETURN(auto tree, ws->OpenFeature(f.id));
  // The first use of a tree in this process: anything uncommitted in it was
  // left by a process that died mid-task. Resumed tasks replay their model
  // answers and redo their tool calls, so they must start from the last
  // commit, or an edit would be applied twice.
  AF_RETURN_IF_ERROR(tree->ResetToLastCommit());
  std::shared_ptr<FeatureTree> shared = std::move(tree);
  trees_[f.id] = shared;
  return shared;
}

// An ended feature's worktree goes (its branch and commits stay), so the user
// can check out af/<id> in the project's repository.
void Pipeline::Impl::ReleaseTree(const Feature& f) {
  std::lock_guard lock(trees_mu_);
  trees_.erase(f.id);
  const auto root = std::filesystem::path(cfg_.data_dir) / "workspaces" / f.project;
  auto& ws = workspaces_[f.project];
  if (!ws) {
    // Opening creates the repository: only when a worktree (say from before a
    // crash) is there to remove.
    std::error_code ec;
    if (!std::filesystem::exists(root / ".af" / "worktrees" / f.id, ec)) return;
    auto opened = Workspace::Open(root);
    if (!opened.ok()) return;
    ws = std::move(opened).value();
  }
  if (Status s = ws->RemoveFeatureTree(f.id); !s.ok())
    log::Get("coordinator")->warn("feature {}: cannot remove its worktree: {}", f.id, s.ToString());
}

// Worktrees left by features that ended just before a crash (between their
// last transition and ReleaseTree): removed at start-up by the process that
// resumes features.
void Pipeline::Impl::SweepEndedTrees() {
  std::error_code ec;
  const auto workspaces = std::filesystem::path(cfg_.data_dir) / "workspaces";
  for (const auto& project : std::filesystem::directory_iterator(workspaces, ec)) {
    std::error_code ec2;
    for (const auto& tree :
         std::filesystem::directory_iterator(project.path() / ".af" / "worktrees", ec2)) {
      auto f = deps_.store->GetFeature(tree.path().filename().string());
      if (f.ok() && IsTerminalFeatureStatus(f->status) &&
          f->project == project.path().filename().string()) {
        log::Get("coordinator")
            ->info("removing the worktree left by {} feature {}", f->status, f->id);
        ReleaseTree(*f);
      }
    }
  }
}

}  // namespace af
