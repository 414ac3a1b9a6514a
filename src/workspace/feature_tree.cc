#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <system_error>

#include "af/core/log.h"
#include "af/core/strings.h"
#include "af/workspace/workspace.h"
#include "workspace/git.h"
#include "workspace/git_lib.h"

namespace af {

namespace fs = std::filesystem;
using workspace_internal::FileLock;
using workspace_internal::GitRepo;
using workspace_internal::RepoShared;
using workspace_internal::RunGit;
using workspace_internal::RunGitRaw;

namespace {

constexpr size_t kBinaryProbeBytes = 8192;

// One git operation at a time on a worktree: the mutex orders this process's
// threads, then the flock orders processes. Several worker processes may run
// tasks of one feature; two commits interleaving would mix their staging, and
// the diffs share a temporary index file in the worktree's git directory. A
// lock that cannot be taken (an fd error, never contention) leaves the mutex
// alone in charge, as with a single process.
class GitLock {
 public:
  GitLock(std::mutex& mu, FileLock* file) : guard_(mu), file_(file) {
    locked_ = file_ != nullptr && file_->LockExclusive().ok();
  }
  ~GitLock() {
    if (locked_) file_->Unlock();
  }
  GitLock(const GitLock&) = delete;
  GitLock& operator=(const GitLock&) = delete;

 private:
  std::lock_guard<std::mutex> guard_;
  FileLock* file_;
  bool locked_ = false;
};

// Visits every entry below `start` except `.git` and the tree's own `.af/`,
// without descending into symlinked directories; `visit` returns false to stop.
void WalkTree(const fs::path& root, const fs::path& start,
              const std::function<bool(const fs::directory_entry&)>& visit) {
  std::error_code ec;
  fs::recursive_directory_iterator it(start, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name == ".git" || (name == ".af" && p.parent_path() == root)) {
      it.disable_recursion_pending();
      continue;
    }
    if (!visit(*it)) return;
  }
}
constexpr size_t kMaxSearchFileBytes = 2 << 20;
constexpr size_t kMaxEditFileBytes = 16 << 20;

std::string Shown(std::string_view rel) {
  std::string s(rel.substr(0, 200));
  if (rel.size() > 200) s += "...";
  return s;
}

bool Within(const fs::path& p, const fs::path& root) {
  const std::string& ps = p.native();
  const std::string& rs = root.native();
  return ps == rs || (ps.size() > rs.size() && ps.compare(0, rs.size(), rs) == 0 &&
                      (rs.back() == '/' || ps[rs.size()] == '/'));
}

bool IsBinary(std::string_view data) {
  return data.substr(0, kBinaryProbeBytes).find('\0') != std::string_view::npos;
}

// Reads at most `limit` bytes of an open descriptor.
Result<std::string> ReadFd(int fd, size_t limit, const std::string& shown) {
  std::string data;
  char buf[65536];
  while (data.size() < limit) {
    ssize_t n = read(fd, buf, std::min(sizeof buf, limit - data.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal("cannot read '" + shown + "': " + strerror(errno));
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

Status WriteAll(int fd, std::string_view content, const std::string& shown) {
  while (!content.empty()) {
    ssize_t n = write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal("cannot write '" + shown + "': " + strerror(errno));
    content.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// ":(literal)" keeps git from reading '*', '?' or '[' in an agent's path as a glob.
std::string Literal(const std::string& rel) { return ":(literal)" + rel; }

// Build outputs and caches (see IsBuildOutputOrCache): directory names at any
// depth, directory name prefixes and suffixes, and file name suffixes.
constexpr std::string_view kGeneratedDirs[] = {
    ".git",    ".af",    "build",         "_build",        "node_modules", "__pycache__",
    "dist",    "target", ".cache",        ".pytest_cache", ".mypy_cache",  ".ruff_cache",
    ".tox",    ".nox",   ".venv",         "venv",          ".eggs",        "CMakeFiles",
    ".gradle", ".next",  ".parcel-cache", "htmlcov"};
constexpr std::string_view kGeneratedDirPrefixes[] = {"cmake-build-"};
constexpr std::string_view kGeneratedDirSuffixes[] = {".egg-info"};
constexpr std::string_view kGeneratedFileSuffixes[] = {".o",     ".obj",   ".a",    ".so",
                                                       ".dylib", ".dll",   ".exe",  ".pyc",
                                                       ".pyo",   ".class", ".gcda", ".gcno"};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// `paths` relative to the tree's top, each through FeatureTree::Resolve; the
// top itself is refused with `whole_tree` (a path must name something in it).
Result<std::vector<std::string>> TopRelative(const FeatureTree& tree,
                                             const std::vector<std::string>& paths,
                                             const Status& whole_tree) {
  const fs::path top = tree.root();
  std::vector<std::string> rels;
  for (const auto& p : paths) {
    AF_ASSIGN_OR_RETURN(fs::path abs, tree.Resolve(p));
    if (abs == top) return whole_tree;
    rels.push_back(abs.lexically_relative(top).string());
  }
  return rels;
}

// The same rule as git pathspecs, so git itself skips those trees (a build
// directory may hold tens of thousands of files) instead of listing them.
std::vector<std::string> GeneratedExcludes() {
  std::vector<std::string> specs = {"."};
  for (auto d : kGeneratedDirs) specs.push_back(":(exclude,glob)**/" + std::string(d) + "/**");
  for (auto d : kGeneratedDirPrefixes)
    specs.push_back(":(exclude,glob)**/" + std::string(d) + "*/**");
  for (auto d : kGeneratedDirSuffixes)
    specs.push_back(":(exclude,glob)**/*" + std::string(d) + "/**");
  for (auto f : kGeneratedFileSuffixes) specs.push_back(":(exclude,glob)**/*" + std::string(f));
  return specs;
}

// Splits NUL-separated git output.
std::vector<std::string> SplitNul(const std::string& out) {
  std::vector<std::string> parts;
  std::istringstream in(out);
  for (std::string p; std::getline(in, p, '\0');) {
    if (!p.empty()) parts.push_back(std::move(p));
  }
  return parts;
}

bool PathMatches(const std::string& path, std::string glob) {
  while (glob.rfind("./", 0) == 0) glob.erase(0, 2);
  if (glob.empty()) return true;
  if (glob.find_first_of("*?[") == std::string::npos) {
    std::string dir = glob;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    if (dir == "." || dir == "./") return true;
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                           path[dir.size()] == '/');
  }
  return fnmatch(glob.c_str(), path.c_str(), 0) == 0;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

bool IsBuildOutputOrCache(std::string_view rel) {
  size_t start = 0;
  while (start < rel.size()) {
    size_t end = rel.find('/', start);
    const bool last = end == std::string_view::npos;
    if (last) end = rel.size();
    std::string_view part = rel.substr(start, end - start);
    start = end + 1;
    if (part.empty()) continue;
    if (last) {
      for (auto f : kGeneratedFileSuffixes)
        if (EndsWith(part, f)) return true;
      // A file named like a cache directory ("build", "dist") is a source file.
      break;
    }
    for (auto d : kGeneratedDirs)
      if (part == d) return true;
    for (auto d : kGeneratedDirPrefixes)
      if (part.substr(0, d.size()) == d) return true;
    for (auto d : kGeneratedDirSuffixes)
      if (EndsWith(part, d)) return true;
  }
  return false;
}

FeatureTree::FeatureTree(fs::path root, fs::path git_dir, std::string branch,
                         std::string base_branch, std::shared_ptr<RepoShared> shared,
                         std::shared_ptr<std::mutex> git_mu, fs::path lock_base,
                         std::unique_ptr<FileLock> git_lock)
    : root_(std::move(root)),
      git_dir_(std::move(git_dir)),
      branch_(std::move(branch)),
      base_branch_(std::move(base_branch)),
      shared_(std::move(shared)),
      git_mu_(std::move(git_mu)),
      lock_base_(std::move(lock_base)),
      git_lock_(std::move(git_lock)) {}

FeatureTree::~FeatureTree() = default;

Result<GitRepo*> FeatureTree::RepoLocked() { return GitRepo::Kept(&repo_, git_dir_); }

std::vector<std::string> FeatureTree::InTree(std::vector<std::string> args) const {
  args.insert(args.begin(), {"--git-dir=" + git_dir_.string(), "--work-tree=" + root_.string()});
  return args;
}

Result<bool> FeatureTree::Attach() {
  std::lock_guard<std::mutex> guard(attach_mu_);
  if (use_lock_) return false;
  AF_ASSIGN_OR_RETURN(FileLock lock, FileLock::Open(fs::path(lock_base_.string() + ".use")));
  // Exclusive only when no other handle holds the tree: then nobody's work in
  // progress is in it and the reset is safe. Held through the reset, so a
  // handle attaching meanwhile waits for it below instead of starting on a
  // tree about to be wiped.
  AF_ASSIGN_OR_RETURN(bool sole, lock.TryLockExclusive());
  if (sole) AF_RETURN_IF_ERROR(ResetToLastCommit());
  // Downgrade (or, when another handle holds it, wait for a shared lock).
  AF_RETURN_IF_ERROR(lock.LockShared());
  use_lock_ = std::make_unique<FileLock>(std::move(lock));
  return sole;
}

Result<fs::path> FeatureTree::Resolve(std::string_view rel) const {
  const std::string shown = Shown(rel);
  if (rel.empty()) {
    return InvalidArgument("path is empty",
                           "give a path relative to the workspace root, e.g. src/main.cc");
  }
  if (rel.find('\0') != std::string_view::npos) {
    return InvalidArgument("path contains a NUL byte");
  }
  if (rel[0] == '/') {
    return PermissionDenied("path '" + shown +
                            "' is absolute: use a path relative to the workspace root");
  }
  // Lexical normalization first: '..' may never climb above the root, whatever
  // the file system says.
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string_view::npos) end = rel.size();
    std::string part(rel.substr(start, end - start));
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) {
        return PermissionDenied("path '" + shown +
                                "' escapes the workspace: use a path relative to the workspace "
                                "root");
      }
      parts.pop_back();
      continue;
    }
    parts.push_back(std::move(part));
  }
  auto git_refusal = [&] {
    return PermissionDenied("path '" + shown +
                            "' is inside .git: repository metadata cannot be read or changed "
                            "with file tools");
  };
  for (const auto& p : parts) {
    if (p == ".git") return git_refusal();
  }

  // The deepest part that exists decides where the path really leads; what
  // follows it does not exist yet and so cannot be a symlink.
  fs::path existing = root_;
  size_t i = 0;
  for (; i < parts.size(); ++i) {
    fs::path next = existing / parts[i];
    struct stat st;
    if (lstat(next.c_str(), &st) != 0) break;
    existing = std::move(next);
  }
  char real[PATH_MAX];
  if (realpath(existing.c_str(), real) == nullptr) {
    return PermissionDenied(
        "path '" + shown + "' goes through a symbolic link whose target does not exist",
        "remove the link or use another path");
  }
  fs::path resolved = real;
  if (!Within(resolved, root_)) {
    return PermissionDenied("path '" + shown +
                            "' escapes the workspace through a symbolic link: use a path "
                            "relative to the workspace root that stays inside it");
  }
  for (const auto& p : resolved.lexically_relative(root_)) {
    if (p == ".git") return git_refusal();
  }
  for (; i < parts.size(); ++i) resolved /= parts[i];
  return resolved;
}

Result<std::string> FeatureTree::ReadFile(std::string_view rel, size_t max_bytes) const {
  AF_ASSIGN_OR_RETURN(fs::path path, Resolve(rel));
  const std::string shown = Shown(rel);
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return NotFound("file '" + shown + "' not found", "use list_files to see which files exist");
    }
    if (errno == ELOOP) return PermissionDenied("path '" + shown + "' is a symbolic link");
    return Internal("cannot open '" + shown + "': " + strerror(errno));
  }
  struct stat st;
  fstat(fd, &st);
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return InvalidArgument("'" + shown + "' is a directory", "use list_files to see its files");
  }
  auto data = ReadFd(fd, max_bytes + 1, shown);
  close(fd);
  if (!data.ok()) return data.status();
  std::string text = std::move(data).value();
  if (IsBinary(text)) {
    return "[binary file '" + shown + "', " + std::to_string(st.st_size) + " bytes: not shown]";
  }
  if (text.size() > max_bytes) {
    text.resize(max_bytes);
    text += "\n... [truncated: '" + shown + "' is " + std::to_string(st.st_size) +
            " bytes, showing the first " + std::to_string(max_bytes) + "]";
  }
  return text;
}

Status FeatureTree::WriteFile(std::string_view rel, std::string_view content) {
  AF_ASSIGN_OR_RETURN(fs::path path, Resolve(rel));
  const std::string shown = Shown(rel);
  if (path == root_) return InvalidArgument("cannot write to the workspace root itself");
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) {
    return InvalidArgument("cannot create the directory of '" + shown + "': " + ec.message(),
                           "a file with that name may already exist where a directory is needed");
  }
  // The parents may have changed since Resolve (another task, a sandboxed
  // program): check again where they lead now.
  char real[PATH_MAX];
  if (realpath(path.parent_path().c_str(), real) == nullptr || !Within(real, root_)) {
    return PermissionDenied("path '" + shown + "' escapes the workspace through a symbolic link");
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == ELOOP) return PermissionDenied("path '" + shown + "' is a symbolic link");
    if (errno == EISDIR) return InvalidArgument("'" + shown + "' is a directory");
    return Internal("cannot write '" + shown + "': " + strerror(errno));
  }
  Status s = WriteAll(fd, content, shown);
  if (close(fd) != 0 && s.ok()) s = Internal("cannot write '" + shown + "': " + strerror(errno));
  return s;
}

Status FeatureTree::EditFile(std::string_view rel, std::string_view old_text,
                             std::string_view new_text) {
  const std::string shown = Shown(rel);
  if (old_text.empty()) {
    return InvalidArgument("old_text is empty", "quote the exact text to replace");
  }
  std::lock_guard<std::mutex> lock(edit_mu_);
  AF_ASSIGN_OR_RETURN(std::string content, ReadFile(rel, kMaxEditFileBytes));
  if (content.rfind("[binary file '", 0) == 0) {
    return InvalidArgument("'" + shown + "' is a binary file", "use write_file to replace it");
  }
  size_t first = content.find(old_text);
  if (first == std::string::npos) {
    return NotFound("old_text not found in " + shown,
                    "read the file again and quote the text exactly, whitespace included");
  }
  size_t count = 0;
  for (size_t pos = first; pos != std::string::npos; pos = content.find(old_text, pos + 1)) {
    ++count;
  }
  if (count > 1) {
    return InvalidArgument("old_text occurs " + std::to_string(count) + " times in " + shown +
                           "; include more context");
  }
  content.replace(first, old_text.size(), new_text);
  return WriteFile(rel, content);
}

Result<std::vector<std::string>> FeatureTree::ListFiles(std::string_view rel) const {
  fs::path start = root_;
  if (!rel.empty()) {
    AF_ASSIGN_OR_RETURN(start, Resolve(rel));
  }
  std::error_code ec;
  auto status = fs::symlink_status(start, ec);
  if (ec || !fs::exists(status)) {
    return NotFound("'" + Shown(rel) + "' not found", "use list_files with no path to see all");
  }
  std::vector<std::string> files;
  if (!fs::is_directory(status)) {
    files.push_back(start.lexically_relative(root_).string());
    return files;
  }
  bool truncated = false;
  // Build outputs and caches are counted, not listed, unless the listing is
  // of such a directory itself.
  const bool hide_generated = !IsBuildOutputOrCache(std::string(rel) + "/x");
  size_t hidden = 0;
  WalkTree(root_, start, [&](const fs::directory_entry& e) {
    std::error_code entry_ec;
    if (e.is_directory(entry_ec) && !e.is_symlink(entry_ec)) return true;
    std::string path = e.path().lexically_relative(root_).string();
    if (hide_generated && IsBuildOutputOrCache(path)) {
      ++hidden;
      return true;
    }
    if (files.size() >= kMaxListEntries) {
      truncated = true;
      return false;
    }
    files.push_back(std::move(path));
    return true;
  });
  std::sort(files.begin(), files.end());
  if (truncated) {
    files.push_back("... [list truncated at " + std::to_string(kMaxListEntries) +
                    " entries: list a subdirectory]");
  }
  if (hidden > 0) {
    files.push_back("... [" + std::to_string(hidden) +
                    " build output or cache files not listed: list their directory to see them]");
  }
  return files;
}

Result<std::vector<SearchHit>> FeatureTree::Search(std::string_view query,
                                                   const SearchOptions& options) const {
  if (query.empty()) return InvalidArgument("search query is empty");
  // Git knows which files belong to the project: tracked ones, and untracked
  // ones its ignore files (.gitignore, info/exclude) do not exclude.
  std::vector<std::string> args = {"ls-files",           "-z", "--cached", "--others",
                                   "--exclude-standard", "--"};
  for (auto& spec : GeneratedExcludes()) args.push_back(std::move(spec));
  Result<std::string> listed = [&] {
    GitLock lock(*git_mu_, git_lock_.get());
    return RunGit(shared_->git, root_, InTree(args));
  }();
  if (!listed.ok()) return listed.status();
  std::set<std::string> rels;  // sorted, and an unmerged file is listed once
  for (auto& rel : SplitNul(*listed)) {
    if (!IsBuildOutputOrCache(rel) && PathMatches(rel, options.path_glob)) rels.insert(rel);
  }
  const std::string needle = options.ignore_case ? AsciiLower(query) : std::string(query);
  std::vector<SearchHit> hits;
  for (const auto& rel : rels) {
    if (hits.size() >= options.max_hits) break;
    const fs::path p = root_ / rel;
    // Symlinks are not followed: their targets may lie outside the tree.
    // (A listed file may be gone: deleted, or removed by another task.)
    struct stat st;
    if (lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<size_t>(st.st_size) > kMaxSearchFileBytes) {
      continue;
    }
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string data = ss.str();
    if (IsBinary(data)) continue;
    int line_no = 0;
    size_t pos = 0;
    while (pos <= data.size() && hits.size() < options.max_hits) {
      size_t end = data.find('\n', pos);
      if (end == std::string::npos) end = data.size();
      ++line_no;
      std::string_view line(data.data() + pos, end - pos);
      const bool found = options.ignore_case ? AsciiLower(line).find(needle) != std::string::npos
                                             : line.find(needle) != std::string_view::npos;
      if (found) {
        std::string text(line.substr(0, 300));
        if (!text.empty() && text.back() == '\r') text.pop_back();
        hits.push_back({rel, line_no, std::move(text)});
      }
      if (end == data.size()) break;
      pos = end + 1;
    }
  }
  return hits;
}

Result<std::map<std::string, std::string>> FeatureTree::ChangeSnapshot() const {
  std::vector<std::string> args = {
      "status",       "--porcelain=v1",          "-z", "--untracked-files=all",
      "--no-renames", "--ignore-submodules=all", "--"};
  for (auto& spec : GeneratedExcludes()) args.push_back(std::move(spec));
  Result<std::string> out = [&] {
    GitLock lock(*git_mu_, git_lock_.get());
    // No optional locks: a snapshot must not take the index lock that a
    // command running at the same time (say `git add`) may need.
    return RunGit(shared_->git, root_, InTree(args), {"GIT_OPTIONAL_LOCKS=0"});
  }();
  if (!out.ok()) return out.status();
  std::map<std::string, std::string> snapshot;
  for (const auto& entry : SplitNul(*out)) {
    if (entry.size() < 4) continue;
    std::string rel = entry.substr(3);
    if (IsBuildOutputOrCache(rel)) continue;
    std::string sig = entry.substr(0, 2);
    struct stat st;
    if (lstat((root_ / rel).c_str(), &st) == 0) {
      sig += " " + std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
             std::to_string(st.st_mtim.tv_nsec) + " " + std::to_string(st.st_mode);
    } else {
      sig += " gone";
    }
    snapshot[rel] = std::move(sig);
  }
  return snapshot;
}

Result<std::string> FeatureTree::UncommittedDiff(const std::vector<std::string>& paths,
                                                 size_t max_bytes) {
  if (paths.empty()) return std::string();
  AF_ASSIGN_OR_RETURN(
      std::vector<std::string> rels,
      TopRelative(*this, paths, InvalidArgument("cannot diff the whole tree as a path")));
  std::vector<std::string> specs;
  for (const auto& r : rels) specs.push_back(Literal(r));
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  const fs::path tmp = repo->GitDir() / "af-task-diff-index";
  // Only the paths diffed need staging.
  auto env = TempIndexLocked(*repo, tmp, /*skip_generated=*/true, rels);
  Result<std::string> out = env.status();
  if (env.ok()) {
    std::vector<std::string> diff = {"diff", "--cached", "--no-ext-diff", "--stat", "--patch",
                                     "HEAD", "--"};
    diff.insert(diff.end(), specs.begin(), specs.end());
    out = GitLocked(diff, {*env});
  }
  std::error_code ec;
  fs::remove(tmp, ec);
  if (!out.ok()) return out.status();
  std::string text = std::move(out).value();
  if (text.size() > max_bytes) {
    const size_t total = text.size();
    text.resize(max_bytes);
    text += "\n... [diff cut at " + std::to_string(max_bytes) + " of " + std::to_string(total) +
            " bytes]\n";
  }
  return text;
}

Result<bool> FeatureTree::HasUncommittedChange(const std::vector<std::string>& paths) {
  if (paths.empty()) return false;
  AF_ASSIGN_OR_RETURN(
      std::vector<std::string> rels,
      TopRelative(*this, paths, InvalidArgument("cannot diff the whole tree as a path")));
  {
    GitLock lock(*git_mu_, git_lock_.get());
    AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
    AF_ASSIGN_OR_RETURN(bool filters, repo->HasExternalFilters());
    if (!filters) {
      return repo->DiffersFromHead(rels,
                                   [](std::string_view rel) { return IsBuildOutputOrCache(rel); });
    }
  }
  // A filter program (say Git LFS's clean) decides what differs: the CLI's diff.
  AF_ASSIGN_OR_RETURN(std::string diff, UncommittedDiff(paths, 1));
  return !diff.empty();
}

Result<std::string> FeatureTree::GitLocked(const std::vector<std::string>& args,
                                           const std::vector<std::string>& extra_env) {
  return RunGit(shared_->git, root_, InTree(args), extra_env);
}

Result<std::string> FeatureTree::MergeBaseLocked(GitRepo& repo) {
  return repo.MergeBase(base_branch_, "HEAD");
}

Result<std::string> FeatureTree::TempIndexLocked(GitRepo& repo, const fs::path& tmp,
                                                 bool skip_generated,
                                                 const std::vector<std::string>& rels) {
  std::string env = "GIT_INDEX_FILE=" + tmp.string();
  AF_ASSIGN_OR_RETURN(bool filters, repo.HasExternalFilters());
  if (!filters) {
    std::function<bool(std::string_view)> skip;
    if (skip_generated) skip = [](std::string_view rel) { return IsBuildOutputOrCache(rel); };
    AF_RETURN_IF_ERROR(repo.StageInto(tmp, rels, skip));
    return env;
  }
  // A filter driver that runs a program (say Git LFS's clean) decides what
  // is staged, and only the git CLI runs it.
  AF_ASSIGN_OR_RETURN(fs::path index, repo.IndexPath());
  std::error_code ec;
  fs::remove(tmp, ec);
  if (fs::exists(index, ec)) {
    fs::copy_file(index, tmp, fs::copy_options::overwrite_existing, ec);
    if (ec) return Internal("cannot copy the git index: " + ec.message());
  }
  std::vector<std::string> add = {"add", "-A", "--"};
  if (skip_generated) {
    for (auto& spec : GeneratedExcludes()) add.push_back(std::move(spec));
  } else {
    add.push_back(".");
  }
  AF_RETURN_IF_ERROR(GitLocked(add, {env}).status());
  return env;
}

Result<std::string> FeatureTree::FindTaskCommit(const std::string& task_id) {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  return repo->FindCommitWithTrailer("Task-Id", task_id);
}

namespace {

// Removes the directories under `dir` that hold no file at any depth (what
// `git clean -d` removes of a tree with no untracked file); true when `dir`
// itself is left empty.
bool RemoveEmptyDirs(const fs::path& dir) {
  bool empty = true;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_directory(type_ec) && !it->is_symlink(type_ec) && it->path().filename() != ".git" &&
        RemoveEmptyDirs(it->path()) && fs::remove(it->path(), type_ec)) {
      continue;
    }
    empty = false;
  }
  return empty && !ec;
}

}  // namespace

Status FeatureTree::ResetToLastCommit() {
  GitLock lock(*git_mu_, git_lock_.get());
  // A git process killed mid-operation (with the process that ran it, or by
  // the OOM killer) leaves its lock files, and every later git command on the
  // tree then fails with "File exists". The tree's lock is held here, so no
  // git of any agent-factory process works on it: they are stale.
  for (const fs::path& stale :
       {git_dir_ / "index.lock", git_dir_ / "HEAD.lock",
        git_dir_.parent_path().parent_path() / "refs" / "heads" / (branch_ + ".lock")}) {
    std::error_code ec;
    if (fs::remove(stale, ec))
      log::Get("workspace")
          ->warn("removed a stale git lock {} (left by a killed git)", stale.string());
  }
  // Usually nothing to reset (a new tree, a tree right after its commits):
  // looked at in-process, without the two git processes.
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  AF_ASSIGN_OR_RETURN(bool pristine, repo->IsPristine());
  if (pristine) {
    (void)RemoveEmptyDirs(root_);
    return Status::Ok();
  }
  // The CLI for the real work: it rewrites changed files as the repository's
  // filters and attributes say, and knows which nested repositories clean
  // must leave alone.
  AF_RETURN_IF_ERROR(GitLocked({"reset", "-q", "--hard", "HEAD"}).status());
  return GitLocked({"clean", "-q", "-f", "-d", "-x"}).status();
}

Result<std::string> FeatureTree::CommittedDiff() {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  AF_ASSIGN_OR_RETURN(std::string base, MergeBaseLocked(*repo));
  // The reviewer reads it, and recorded model requests that carry it must be
  // sent again byte for byte: libgit2 prints what `git diff --binary` does,
  // without a git process, unless a textconv driver (which only git runs)
  // is configured or a path is one libgit2 spells differently.
  AF_ASSIGN_OR_RETURN(bool textconv, repo->HasTextconv());
  if (!textconv) {
    AF_ASSIGN_OR_RETURN(std::optional<std::string> text, repo->PatchText(base, "HEAD"));
    if (text) return std::move(*text);
  }
  return GitLocked({"diff", "--no-ext-diff", "--binary", base, "HEAD"});
}

Result<bool> FeatureTree::HasCommittedChange() {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  AF_ASSIGN_OR_RETURN(std::string base, MergeBaseLocked(*repo));
  // Two commits differ exactly when their trees do.
  AF_ASSIGN_OR_RETURN(std::string base_tree, repo->TreeOf(base));
  AF_ASSIGN_OR_RETURN(std::string head_tree, repo->TreeOf("HEAD"));
  return base_tree != head_tree;
}

Result<std::string> FeatureTree::HeadTreeId() {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  return repo->TreeOf("HEAD");
}

Result<std::string> FeatureTree::WorkTreeId() {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  return repo->WorkTreeId([](std::string_view rel) { return IsBuildOutputOrCache(rel); });
}

Result<std::string> FeatureTree::CommitTask(const std::string& task_id, const std::string& message,
                                            const std::vector<std::string>& paths) {
  if (task_id.empty() || task_id.find_first_of("\r\n") != std::string::npos) {
    return InvalidArgument("task id must be a non-empty single line");
  }
  if (paths.empty()) {
    return InvalidArgument("no paths to commit", "name the files this task changed");
  }
  AF_ASSIGN_OR_RETURN(std::vector<std::string> rels,
                      TopRelative(*this, paths,
                                  InvalidArgument("cannot commit the whole tree as a path",
                                                  "name the files this task changed")));

  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  // A resumed task must not commit twice: look for its trailer on the branch.
  AF_ASSIGN_OR_RETURN(std::string done, repo->FindCommitWithTrailer("Task-Id", task_id));
  if (!done.empty()) return done;

  // The message is the model's: none of its lines may pass for the trailer
  // that names the task (a forged "Task-Id: <other task>" made that task's
  // work look committed), nor for the "---" after which git reads no more
  // trailers.
  std::string msg;
  for (std::string_view rest = TrimRight(message); !rest.empty();) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    const std::string lower = AsciiLower(std::string(Trim(line)));
    if (lower.rfind("task-id", 0) == 0) continue;
    msg += (line.rfind("---", 0) == 0 ? " " : "") + std::string(line) + "\n";
  }
  msg = std::string(TrimRight(msg));
  if (msg.empty()) msg = "Task " + task_id;
  msg += "\n\nTask-Id: " + task_id + "\n";
  AF_ASSIGN_OR_RETURN(bool filters, repo->HasExternalFilters());
  if (!filters) {
    return repo->CommitPaths(rels, msg, workspace_internal::kCommitterName,
                             workspace_internal::kCommitterEmail);
  }
  // A filter driver that runs a program (say Git LFS's clean) decides what
  // is committed, and only the git CLI runs it.

  // Only paths that exist or are tracked: `git add` refuses a pathspec that
  // matches nothing (e.g. a file the task created and deleted again).
  std::vector<std::string> specs;
  for (const auto& r : rels) specs.push_back(Literal(r));
  std::vector<std::string> ls = {"ls-files", "-z", "--"};
  ls.insert(ls.end(), specs.begin(), specs.end());
  AF_ASSIGN_OR_RETURN(std::string tracked_out, GitLocked(ls));
  std::vector<std::string> wanted;
  for (const auto& r : rels) {
    struct stat st;
    bool exists = lstat((root_ / r).c_str(), &st) == 0;
    bool tracked = false;
    size_t pos = 0;
    while (pos < tracked_out.size()) {
      size_t end = tracked_out.find('\0', pos);
      if (end == std::string::npos) end = tracked_out.size();
      std::string_view t(tracked_out.data() + pos, end - pos);
      if (t == r || (t.size() > r.size() && t.compare(0, r.size(), r) == 0 && t[r.size()] == '/')) {
        tracked = true;
        break;
      }
      pos = end + 1;
    }
    if (exists || tracked) wanted.push_back(Literal(r));
  }
  if (wanted.empty()) return std::string();

  std::vector<std::string> add = {"add", "-A", "--"};
  add.insert(add.end(), wanted.begin(), wanted.end());
  AF_RETURN_IF_ERROR(GitLocked(add).status());
  std::vector<std::string> diff = {"diff", "--cached", "--quiet", "HEAD", "--"};
  diff.insert(diff.end(), wanted.begin(), wanted.end());
  AF_ASSIGN_OR_RETURN(auto changed, RunGitRaw(shared_->git, root_, InTree(diff)));
  if (changed.exit_code == 0) return std::string();
  if (changed.exit_code != 1) {
    return Internal("git diff --cached failed: " + std::string(TrimRight(changed.err)));
  }

  // With paths, `git commit` takes only those (--only): another task's staged
  // or modified files stay out of this commit.
  std::vector<std::string> commit = {"commit", "-q", "--cleanup=whitespace", "-m", msg, "--"};
  commit.insert(commit.end(), wanted.begin(), wanted.end());
  AF_RETURN_IF_ERROR(GitLocked(commit).status());
  AF_ASSIGN_OR_RETURN(std::string sha, GitLocked({"rev-parse", "HEAD"}));
  return std::string(TrimRight(sha));
}

Result<std::string> FeatureTree::Diff() {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  AF_ASSIGN_OR_RETURN(std::string base, MergeBaseLocked(*repo));
  const fs::path tmp = repo->GitDir() / "af-diff-index";
  auto env = TempIndexLocked(*repo, tmp);
  Result<std::string> out =
      env.ok() ? GitLocked({"diff", "--cached", "--no-ext-diff", "--binary", base}, {*env})
               : Result<std::string>(env.status());
  std::error_code ec;
  fs::remove(tmp, ec);
  return out;
}

Result<std::vector<std::string>> FeatureTree::ChangedFiles() {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  AF_ASSIGN_OR_RETURN(std::string base, MergeBaseLocked(*repo));
  const fs::path tmp = repo->GitDir() / "af-diff-index";
  auto env = TempIndexLocked(*repo, tmp);
  Result<std::string> out = env.ok()
                                ? GitLocked({"diff", "--cached", "--name-only", "-z", base}, {*env})
                                : Result<std::string>(env.status());
  std::error_code ec;
  fs::remove(tmp, ec);
  if (!out.ok()) return out.status();
  std::vector<std::string> files;
  std::istringstream names(*out);
  for (std::string n; std::getline(names, n, '\0');) {
    if (!n.empty()) files.push_back(n);
  }
  return files;
}

Result<std::string> FeatureTree::WritePatch(const fs::path& out) {
  std::string patch;
  {
    GitLock lock(*git_mu_, git_lock_.get());
    // In-process where libgit2 prints what git does (GitRepo::MailboxText).
    AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
    AF_ASSIGN_OR_RETURN(std::optional<std::string> text, repo->MailboxText(base_branch_, "HEAD"));
    if (text) {
      patch = std::move(*text);
    } else {
      AF_ASSIGN_OR_RETURN(patch, GitLocked({"format-patch", "--stdout", "--no-signature",
                                            "--binary", base_branch_ + "..HEAD"}));
    }
  }
  std::error_code ec;
  if (out.has_parent_path()) fs::create_directories(out.parent_path(), ec);
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f << patch;
  f.close();
  if (!f) return Internal("cannot write the patch to " + out.string());
  return patch;
}

Result<std::string> FeatureTree::HeadSha() {
  GitLock lock(*git_mu_, git_lock_.get());
  AF_ASSIGN_OR_RETURN(GitRepo * repo, RepoLocked());
  AF_ASSIGN_OR_RETURN(std::string sha, repo->ResolveCommit("HEAD"));
  if (sha.empty()) return Internal("HEAD names no commit in " + root_.string());
  return sha;
}

}  // namespace af
