#include "workspace/git.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "af/core/strings.h"
#include "workspace/subprocess.h"

extern char** environ;

namespace af::workspace_internal {

namespace {

// The caller's GIT_* variables (GIT_DIR, GIT_INDEX_FILE, GIT_WORK_TREE, a
// hook's environment...) would redirect git away from the tree we name.
std::vector<std::string> GitEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    if (strncmp(*e, "GIT_", 4) == 0 || strncmp(*e, "LC_ALL=", 7) == 0) continue;
    env.emplace_back(*e);
  }
  for (const char* who : {"AUTHOR", "COMMITTER"}) {
    env.push_back(std::string("GIT_") + who + "_NAME=" + kCommitterName);
    env.push_back(std::string("GIT_") + who + "_EMAIL=" + kCommitterEmail);
  }
  for (const char* kv : {"GIT_TERMINAL_PROMPT=0", "LC_ALL=C"}) env.emplace_back(kv);
  for (const auto& kv : extra) env.push_back(kv);
  return env;
}

}  // namespace

Result<GitOutput> RunGitRaw(const std::string& git, const std::filesystem::path& dir,
                            const std::vector<std::string>& args,
                            const std::vector<std::string>& extra_env) {
  SpawnOptions opts;
  opts.argv = {git, "-C", dir.string(), "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false",
               "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
               // A repository nested in a work tree (a sandboxed command can make
               // one, with its own config naming filter programs) is never
               // entered: git would run its filters here, outside the sandbox.
               "-c", "submodule.recurse=false", "-c", "diff.ignoreSubmodules=all", "-c",
               "status.submoduleSummary=false", "-c", "gc.auto=0",
               // Or every commit starts a `git maintenance run --auto` child
               // that only finds gc.auto off.
               "-c", "maintenance.auto=false", "-c", "core.quotepath=false", "-c", "color.ui=false",
               "-c", "core.pager=cat"};
  opts.argv.insert(opts.argv.end(), args.begin(), args.end());
  opts.env = GitEnv(extra_env);
  opts.merge_output = false;
  AF_ASSIGN_OR_RETURN(SpawnResult r, Spawn(opts));
  return GitOutput{r.exit_code, std::move(r.out), std::move(r.err)};
}

Result<std::string> RunGit(const std::string& git, const std::filesystem::path& dir,
                           const std::vector<std::string>& args,
                           const std::vector<std::string>& extra_env) {
  AF_ASSIGN_OR_RETURN(GitOutput r, RunGitRaw(git, dir, args, extra_env));
  if (r.exit_code != 0) {
    // Appended piecewise: GCC 12 warns falsely (-Warray-bounds) on the
    // equivalent chain of operator+.
    std::string msg = "git";
    for (const auto& a : args) {
      msg.push_back(' ');
      msg.append(a);
    }
    if (msg.size() > 200) {
      msg.resize(200);
      msg.append("...");
    }
    msg.append(" failed in ").append(dir.string());
    msg.append(" (exit ").append(std::to_string(r.exit_code)).append("): ");
    msg.append(TrimRight(r.err));
    return Internal(std::move(msg), "check the repository state with `git status` there");
  }
  return std::move(r.out);
}

std::filesystem::path LocksDir(const std::filesystem::path& repo_root) {
  return repo_root / ".af" / "locks";
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // also releases the lock
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Result<FileLock> FileLock::Open(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Internal("cannot open the lock file " + path.string() + ": " + std::strerror(errno),
                    "check that the workspace directory is writable by this user");
  }
  return FileLock(fd);
}

Result<FileLock> FileLock::Exclusive(const std::filesystem::path& path) {
  AF_ASSIGN_OR_RETURN(FileLock lock, Open(path));
  AF_RETURN_IF_ERROR(lock.LockExclusive());
  return lock;
}

namespace {
Status Flock(int fd, int op) {
  while (::flock(fd, op) != 0) {
    if (errno == EINTR) continue;
    return Internal(std::string("flock failed: ") + std::strerror(errno));
  }
  return Status::Ok();
}
}  // namespace

Status FileLock::LockExclusive() { return Flock(fd_, LOCK_EX); }
Status FileLock::LockShared() { return Flock(fd_, LOCK_SH); }

Result<bool> FileLock::TryLockExclusive() {
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return false;
    return Internal(std::string("flock failed: ") + std::strerror(errno));
  }
  return true;
}

void FileLock::Unlock() {
  if (fd_ >= 0) (void)::flock(fd_, LOCK_UN);
}

}  // namespace af::workspace_internal
