#include <cerrno>
#include <cstring>

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
  // The first use of a tree in this process. When no other process uses it,
  // anything uncommitted in it was left by a process that died mid-task:
  // resumed tasks replay their model answers and redo their tool calls, so
  // they must start from the last commit, or an edit would be applied twice.
  // When another live process (a worker running another task of the feature)
  // uses it, its uncommitted files are that process's work in progress and
  // must stay: Attach decides with a lock the kernel drops when a process
  // dies (see FeatureTree::Attach).
  AF_ASSIGN_OR_RETURN(bool reset, tree->Attach());
  if (reset) log::Get("agents")->debug("feature {}: tree reset to its last commit", f.id);
  std::shared_ptr<FeatureTree> shared = std::move(tree);
  trees_[f.id] = shared;
  return shared;
}

void Pipeline::Impl::DropEndedTrees() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(trees_mu_);
    for (const auto& [id, tree] : trees_) ids.push_back(id);
  }
  for (const auto& id : ids) {
    auto f = deps_.store->GetFeature(id);
    if (!f.ok() || !IsTerminalFeatureStatus(f->status)) continue;
    std::lock_guard lock(trees_mu_);
    trees_.erase(id);  // a job still running keeps its handle until it ends
  }
}

namespace {

constexpr char kWorkspacesIdFile[] = ".af-workspaces-id";

std::string ReadWorkspacesId(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string id;
  std::getline(in, id);
  return id;
}

}  // namespace

Status Pipeline::Impl::PublishWorkspacesId() {
  const auto dir = std::filesystem::path(cfg_.data_dir) / "workspaces";
  const auto file = dir / kWorkspacesIdFile;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string id = ReadWorkspacesId(file);
  if (id.empty()) {
    // Written aside and renamed: a worker never reads half an id.
    id = NewId("ws");
    const auto tmp = dir / (std::string(kWorkspacesIdFile) + ".tmp");
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << id << "\n";
      if (!out) {
        return FailedPrecondition("cannot write " + tmp.string(),
                                  "check that the data directory is writable by this user");
      }
    }
    std::filesystem::rename(tmp, file, ec);
    if (ec) return FailedPrecondition("cannot write " + file.string() + ": " + ec.message());
  }
  workspaces_id_ = id;
  return Status::Ok();
}

Status Pipeline::Impl::CheckSharedWorkspaces() {
  const auto dir = std::filesystem::path(cfg_.data_dir) / "workspaces";
  const std::string fix =
      "mount the coordinator's shared data directory at the same path on this machine, or pass "
      "--data-dir with the path where it is mounted (docs/OPERATIONS.md, Worker processes)";
  auto coordinator = deps_.store->GetAgent("coordinator-1");
  const std::string recorded =
      coordinator.ok() ? Field(coordinator->counters, "workspaces_id", "") : "";
  if (recorded.empty()) {
    return FailedPrecondition(
        "no coordinator has recorded its workspaces directory in the store",
        "start `agent-factory serve` (it coordinates) first, with the same DATABASE_URL");
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return FailedPrecondition(
        "the workspaces directory " + dir.string() +
            " does not exist: a worker edits code in the coordinator's worktrees, so it needs the "
            "coordinator's data directory (shared storage) at the same path",
        fix);
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    return FailedPrecondition("the workspaces directory " + dir.string() +
                                  " is not writable by this user: " + std::strerror(errno),
                              fix);
  }
  const std::string found = ReadWorkspacesId(dir / kWorkspacesIdFile);
  if (found != recorded) {
    return FailedPrecondition("the workspaces directory " + dir.string() +
                                  " is not the coordinator's (" +
                                  (found.empty() ? std::string("it has no ") + kWorkspacesIdFile
                                                 : "its id " + found + " is not " + recorded) +
                                  ")",
                              fix);
  }
  return Status::Ok();
}

std::shared_ptr<PathClaims> Pipeline::Impl::ClaimsFor(const std::string& feature_id) {
  std::lock_guard lock(trees_mu_);
  auto& claims = claims_[feature_id];
  if (!claims) claims = std::make_shared<PathClaims>();
  return claims;
}

// An ended feature's worktree goes (its branch and commits stay), so the user
// can check out af/<id> in the project's repository.
void Pipeline::Impl::ReleaseTree(const Feature& f) {
  std::weak_ptr<FeatureTree> in_use;
  {
    std::lock_guard lock(trees_mu_);
    if (auto it = trees_.find(f.id); it != trees_.end()) {
      in_use = it->second;
      trees_.erase(it);
    }
    claims_.erase(f.id);
  }
  // A job of this process may still be in the tree (a cancel reaches the
  // driver at once, the job's command a moment later): its files go once it
  // let go, or its command would fail for want of a directory rather than
  // end as killed. Bounded: a job that does not stop keeps its tree until
  // the next start sweeps it.
  for (int i = 0; i < 1000 && !in_use.expired(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!in_use.expired()) {
    log::Get("coordinator")
        ->warn("feature {}: a job still works in its worktree; it is removed at the next start",
               f.id);
    return;
  }
  std::lock_guard lock(trees_mu_);
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
