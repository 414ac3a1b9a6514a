#include "af/workspace/workspace.h"

#include <fstream>
#include <sstream>
#include <system_error>

#include "af/core/strings.h"
#include "workspace/git.h"
#include "workspace/git_lib.h"
#include "workspace/subprocess.h"

namespace af {

namespace fs = std::filesystem;
using workspace_internal::FileLock;
using workspace_internal::GitRepo;
using workspace_internal::LocksDir;
using workspace_internal::RepoShared;
using workspace_internal::RunGit;
using workspace_internal::RunGitRaw;

namespace {

Status ValidateFeatureId(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 100 && id[0] != '.' && id[0] != '-';
  for (char c : id) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) ok = false;
  }
  if (ok && id.find("..") != std::string::npos) ok = false;
  if (ok && id.size() >= 5 && id.compare(id.size() - 5, 5, ".lock") == 0) ok = false;
  if (!ok) {
    return InvalidArgument("invalid feature id '" + id.substr(0, 100) + "'",
                           "use 1-100 characters of [A-Za-z0-9._-], not starting with '.' or '-'");
  }
  return Status::Ok();
}

fs::path Canonical(const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::canonical(p, ec);
  return ec ? p.lexically_normal() : c;
}

// Appends ".af/" to the repository's info/exclude so worktrees under .af never
// show up as untracked files of the main checkout.
Status ExcludeAfDir(const std::string& git, const fs::path& root) {
  AF_ASSIGN_OR_RETURN(std::string common, RunGit(git, root, {"rev-parse", "--git-common-dir"}));
  fs::path dir = TrimRight(common);
  if (dir.is_relative()) dir = root / dir;
  fs::path exclude = dir / "info" / "exclude";
  std::string content;
  {
    std::ifstream in(exclude);
    std::stringstream ss;
    ss << in.rdbuf();
    content = ss.str();
  }
  std::istringstream lines(content);
  for (std::string line; std::getline(lines, line);) {
    if (line == ".af/" || line == "/.af/" || line == ".af") return Status::Ok();
  }
  std::error_code ec;
  fs::create_directories(exclude.parent_path(), ec);
  std::ofstream out(exclude, std::ios::app);
  if (!content.empty() && content.back() != '\n') out << "\n";
  out << "# Agent Factory feature worktrees\n.af/\n";
  if (!out) return Internal("cannot write " + exclude.string());
  return Status::Ok();
}

}  // namespace

Workspace::Workspace(fs::path root, std::string base_branch, std::shared_ptr<RepoShared> shared)
    : root_(std::move(root)), base_branch_(std::move(base_branch)), shared_(std::move(shared)) {}

Workspace::~Workspace() = default;

Result<std::unique_ptr<Workspace>> Workspace::Open(fs::path root) {
  auto shared = std::make_shared<RepoShared>();
  shared->git = workspace_internal::FindProgram("git");
  if (shared->git.empty()) {
    return FailedPrecondition("git is not installed (needed for the workspace)",
                              "install it: apt-get install git (scripts/setup does)");
  }
  const std::string& git = shared->git;
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    return FailedPrecondition("cannot create workspace directory " + root.string() + ": " +
                              ec.message());
  }
  root = Canonical(root);
  // Two processes opening a new project at once must not both create it.
  AF_ASSIGN_OR_RETURN(FileLock repo_lock, FileLock::Exclusive(LocksDir(root) / "repo"));

  AF_ASSIGN_OR_RETURN(auto top, RunGitRaw(git, root, {"rev-parse", "--show-toplevel"}));
  bool is_repo = top.exit_code == 0 && Canonical(TrimRight(top.out)) == root;
  if (!is_repo) {
    AF_RETURN_IF_ERROR(RunGit(git, root, {"init", "-q", "-b", "main"}).status());
    const fs::path readme = root / "README.md";
    if (!fs::exists(readme, ec)) {
      std::ofstream out(readme);
      out << "# " << root.filename().string() << "\n\nWorkspace of project "
          << root.filename().string() << ", managed by Agent Factory.\n";
      if (!out) return Internal("cannot write " + readme.string());
    }
    AF_RETURN_IF_ERROR(RunGit(git, root, {"add", "--", "README.md"}).status());
    AF_RETURN_IF_ERROR(
        RunGit(git, root, {"commit", "-q", "-m", "Initial commit (Agent Factory)"}).status());
  } else {
    AF_ASSIGN_OR_RETURN(auto head,
                        RunGitRaw(git, root, {"rev-parse", "--verify", "-q", "HEAD^{commit}"}));
    if (head.exit_code != 0) {
      // A repository without any commit cannot be branched from.
      AF_RETURN_IF_ERROR(
          RunGit(git, root,
                 {"commit", "-q", "--allow-empty", "-m", "Initial commit (Agent Factory)"})
              .status());
    }
  }

  std::string base = "main";
  AF_ASSIGN_OR_RETURN(auto has_main,
                      RunGitRaw(git, root, {"rev-parse", "--verify", "-q", "refs/heads/main"}));
  if (has_main.exit_code != 0) {
    AF_ASSIGN_OR_RETURN(auto sym, RunGitRaw(git, root, {"symbolic-ref", "--short", "-q", "HEAD"}));
    if (sym.exit_code != 0 || TrimRight(sym.out).empty()) {
      return FailedPrecondition(
          "repository " + root.string() + " has no branch 'main' and HEAD is detached",
          "check out the branch features should start from");
    }
    base = TrimRight(sym.out);
  }
  AF_RETURN_IF_ERROR(ExcludeAfDir(git, root));
  // Registrations whose files are gone (a crash while a tree was removed):
  // features only ever read their own, so stale ones are pruned here.
  AF_ASSIGN_OR_RETURN(GitRepo repo, GitRepo::Open(root));
  AF_RETURN_IF_ERROR(repo.PruneStaleWorktrees());
  return std::unique_ptr<Workspace>(new Workspace(root, base, std::move(shared)));
}

Result<bool> Workspace::BranchExists(const std::string& name) {
  if (name.empty()) return InvalidArgument("branch name is empty");
  AF_ASSIGN_OR_RETURN(GitRepo repo, GitRepo::Open(root_));
  return repo.RefExists("refs/heads/" + name);
}

Result<std::unique_ptr<FeatureTree>> Workspace::OpenFeature(const std::string& feature_id) {
  AF_RETURN_IF_ERROR(ValidateFeatureId(feature_id));
  const std::string& git = shared_->git;
  const fs::path path = root_ / ".af" / "worktrees" / feature_id;
  const std::string branch = "af/" + feature_id;

  std::lock_guard<std::mutex> lock(shared_->mu);
  // Another process may be adding or removing this worktree right now.
  AF_ASSIGN_OR_RETURN(FileLock repo_lock, FileLock::Exclusive(LocksDir(root_) / "repo"));
  auto& tree_mu = shared_->tree_mu[feature_id];
  if (!tree_mu) tree_mu = std::make_shared<std::mutex>();
  const fs::path lock_base = LocksDir(root_) / feature_id;
  AF_ASSIGN_OR_RETURN(FileLock git_lock, FileLock::Open(fs::path(lock_base.string() + ".git")));

  AF_ASSIGN_OR_RETURN(GitRepo * main_repo, GitRepo::Kept(&shared_->repo, root_));
  GitRepo& repo = *main_repo;
  // Only this feature's registration is read: listing every worktree here
  // cost each new feature a read of all the others.
  const std::string registered = repo.RegisteredWorktree(path);
  if (registered.empty()) {
    // A crash may have left a half-made directory (no `.git` file yet), and
    // this feature's registration with it.
    std::error_code ec;
    if (fs::exists(path, ec)) fs::remove_all(path, ec);
    AF_RETURN_IF_ERROR(repo.PruneIfStale(feature_id));
    fs::create_directories(path.parent_path(), ec);
    AF_ASSIGN_OR_RETURN(bool filters, repo.HasExternalFilters());
    // The CLI picks another admin name when the directory's is taken (a
    // registration of another path); libgit2 would refuse.
    const bool name_taken = fs::exists(repo.CommonDir() / "worktrees" / feature_id, ec);
    if (!filters && !name_taken) {
      // In-process: the same files as `git worktree add`, without the four
      // processes it starts (git, then its branch, symbolic-ref and reset).
      // A checkout that runs filter programs (Git LFS) stays on the CLI.
      AF_RETURN_IF_ERROR(repo.AddWorktree(feature_id, path, branch, base_branch_));
    } else {
      // The CLI refuses a path a stale registration (of another name) names.
      AF_RETURN_IF_ERROR(repo.PruneStaleWorktrees());
      AF_ASSIGN_OR_RETURN(bool has_branch, repo.RefExists("refs/heads/" + branch));
      std::vector<std::string> args = {"worktree", "add", "-q", path.string(), branch};
      if (!has_branch) args = {"worktree", "add", "-q", "-b", branch, path.string(), base_branch_};
      AF_RETURN_IF_ERROR(RunGit(git, root_, args).status());
    }
  }
  // Checked against the registration's own record of its path, so a `.git`
  // file rewritten to name another directory is not believed.
  const std::string name = registered.empty() ? repo.RegisteredWorktree(path) : registered;
  if (name.empty()) {
    return Internal("git: " + path.string() + " is not a registered worktree after adding it",
                    "run 'git worktree prune' in " + root_.string() + ", then retry");
  }
  return std::unique_ptr<FeatureTree>(new FeatureTree(
      Canonical(path), Canonical(repo.CommonDir() / "worktrees" / name), branch, base_branch_,
      shared_, tree_mu, lock_base, std::make_unique<FileLock>(std::move(git_lock))));
}

Status Workspace::RemoveFeatureTree(const std::string& feature_id) {
  AF_RETURN_IF_ERROR(ValidateFeatureId(feature_id));
  const fs::path path = root_ / ".af" / "worktrees" / feature_id;
  std::lock_guard<std::mutex> lock(shared_->mu);
  AF_ASSIGN_OR_RETURN(FileLock repo_lock, FileLock::Exclusive(LocksDir(root_) / "repo"));
  AF_ASSIGN_OR_RETURN(GitRepo * main_repo, GitRepo::Kept(&shared_->repo, root_));
  GitRepo& repo = *main_repo;
  // As `git worktree remove --force --force` (its files, then its
  // registration, locked or not), reading only this feature's registration.
  // Stale ones of others (a crash between the two steps) are pruned when the
  // project is opened (Workspace::Open).
  const std::string name = repo.RegisteredWorktree(path);
  std::error_code ec;
  if (fs::exists(path, ec)) fs::remove_all(path, ec);
  if (ec) return Internal("cannot remove " + path.string() + ": " + ec.message());
  if (!name.empty()) AF_RETURN_IF_ERROR(repo.PruneWorktree(name));
  AF_RETURN_IF_ERROR(repo.PruneIfStale(feature_id));  // half made: no `.git` file came
  // The feature's lock files go with its tree (the feature has ended).
  for (const char* suffix : {".git", ".use"})
    fs::remove(LocksDir(root_) / (feature_id + suffix), ec);
  return Status::Ok();
}

}  // namespace af
