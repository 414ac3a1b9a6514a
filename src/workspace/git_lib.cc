#include "workspace/git_lib.h"

#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
#include <strings.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string_view>
#include <system_error>

#include "af/core/fault.h"
#include "af/core/strings.h"
#include "workspace/mailbox.h"

namespace af::workspace_internal {

namespace fs = std::filesystem;

namespace {

template <class T, void (*Free)(T*)>
struct Freer {
  void operator()(T* p) const {
    if (p) Free(p);
  }
};
template <class T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Freer<T, Free>>;
using Object = Owned<git_object, git_object_free>;
using Commit = Owned<git_commit, git_commit_free>;
using Tree = Owned<git_tree, git_tree_free>;
using Index = Owned<git_index, git_index_free>;
using Walk = Owned<git_revwalk, git_revwalk_free>;
using StatusList = Owned<git_status_list, git_status_list_free>;
using Signature = Owned<git_signature, git_signature_free>;
using Config = Owned<git_config, git_config_free>;
using ConfigIter = Owned<git_config_iterator, git_config_iterator_free>;
using WorktreeHandle = Owned<git_worktree, git_worktree_free>;
using Reference = Owned<git_reference, git_reference_free>;

struct Buf {
  git_buf b = GIT_BUF_INIT;
  ~Buf() { git_buf_dispose(&b); }
};

void InitOnce() {
  // Once per process, never shut down: handles may live until exit.
  static const int inited = git_libgit2_init();
  (void)inited;
}

Status Fail(const std::string& what) {
  const git_error* e = git_error_last();
  return Internal("git (libgit2): " + what + " failed: " +
                      (e && e->message ? std::string(e->message) : std::string("unknown error")),
                  "check the repository state with `git status` there");
}

std::string Hex(const git_oid* oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof buf, oid);
  return buf;
}

bool NotThere(int rc) {
  return rc == GIT_ENOTFOUND || rc == GIT_EINVALIDSPEC || rc == GIT_EUNBORNBRANCH ||
         rc == GIT_EAMBIGUOUS || rc == GIT_EPEEL;
}

// `path` is `rel` or lies below it (a literal pathspec of one path).
bool Under(std::string_view path, std::string_view rel) {
  return path == rel ||
         (path.size() > rel.size() && path.substr(0, rel.size()) == rel && path[rel.size()] == '/');
}

bool UnderAny(std::string_view path, const std::vector<std::string>& rels) {
  if (rels.empty()) return true;
  for (const auto& r : rels)
    if (Under(path, r)) return true;
  return false;
}

// Pathspec arrays point into `rels`, which must outlive them.
struct Pathspec {
  explicit Pathspec(const std::vector<std::string>& rels) {
    for (const auto& r : rels) ptrs.push_back(const_cast<char*>(r.c_str()));
    spec.strings = ptrs.data();
    spec.count = ptrs.size();
  }
  // No pathspec (everything) when there are no paths.
  const git_strarray* get() const { return ptrs.empty() ? nullptr : &spec; }
  std::vector<char*> ptrs;
  git_strarray spec{};
};

// What the add/update callbacks need: libgit2 matches pathspecs as globs in
// git_index_update_all, so each path is checked literally here too.
struct StageFilter {
  git_index* index;
  const std::vector<std::string>* rels;
  std::function<bool(std::string_view path, bool tracked)> skip;
};

int StageCallback(const char* path, const char*, void* payload) {
  auto* f = static_cast<StageFilter*>(payload);
  if (!UnderAny(path, *f->rels)) return 1;
  if (f->skip && f->skip(path, git_index_get_bypath(f->index, path, 0) != nullptr)) return 1;
  return 0;
}

// Small objects written through a stream are kept in memory until their id
// is known. libgit2 streams every staged file to a temporary file in the
// object directory and deletes it when the object is there already: the
// same file staged for a diff, committed and hashed for the tree id made
// two files per change to delete. On ext4 without a journal every file
// created scans the inodes freed in the last half minute, so those
// deletions cost each later file. A new object is then written by the
// default loose backend (git_odb_write); a larger one streams as before.
// Standard layout (libgit2 hands back &base): the bytes live elsewhere.
struct BufferedStream {
  git_odb_stream base;
  std::string* data;
  git_object_t type;
};
BufferedStream* AsBuffered(git_odb_stream* stream) {
  return reinterpret_cast<BufferedStream*>(stream);
}

constexpr git_object_size_t kMaxBufferedObject = 1 << 20;

int BufferedWrite(git_odb_stream* stream, const char* data, size_t len) {
  AsBuffered(stream)->data->append(data, len);
  return 0;
}

// Called only when the object is not in the database yet.
int BufferedFinalize(git_odb_stream* stream, const git_oid* expected) {
  const BufferedStream* s = AsBuffered(stream);
  git_oid written;
  int rc = git_odb_write(&written, stream->backend->odb, s->data->data(), s->data->size(), s->type);
  if (rc == 0 && !git_oid_equal(&written, expected)) {
    git_error_set_str(GIT_ERROR_ODB, "a buffered object was written under another id");
    return -1;
  }
  return rc;
}

void BufferedFree(git_odb_stream* stream) {
  BufferedStream* s = AsBuffered(stream);
  delete s->data;
  delete s;
}

int BufferedWriteStream(git_odb_stream** out, git_odb_backend* backend, git_object_size_t size,
                        git_object_t type) {
  if (size > kMaxBufferedObject) return GIT_PASSTHROUGH;  // to the loose backend's stream
  auto* s = new BufferedStream{};
  s->data = new std::string;
  s->data->reserve(static_cast<size_t>(size));
  s->type = type;
  s->base.backend = backend;
  s->base.mode = GIT_STREAM_WRONLY;
  s->base.write = BufferedWrite;
  s->base.finalize_write = BufferedFinalize;
  s->base.free = BufferedFree;
  *out = &s->base;
  return 0;
}

// git_odb_foreach calls every backend's: this one holds nothing.
int ForeachNothing(git_odb_backend*, git_odb_foreach_cb, void*) { return 0; }

void FreeBufferingBackend(git_odb_backend* backend) { delete backend; }

// Adds the buffering backend to `repo`'s object database, once; it only
// writes, so reads, existence checks and freshening go to the others.
int BufferSmallWrites(git_repository* repo) {
  git_odb* odb = nullptr;
  if (int rc = git_repository_odb(&odb, repo); rc != 0) return rc;
  Owned<git_odb, git_odb_free> owned(odb);
  for (size_t i = 0, n = git_odb_num_backends(odb); i < n; ++i) {
    git_odb_backend* b = nullptr;
    if (git_odb_get_backend(&b, odb, i) == 0 && b->writestream == BufferedWriteStream) return 0;
  }
  auto* backend = new git_odb_backend;
  git_odb_init_backend(backend, GIT_ODB_BACKEND_VERSION);
  backend->writestream = BufferedWriteStream;
  backend->foreach = ForeachNothing;
  backend->free = FreeBufferingBackend;
  // Above the default loose (1) and pack (2) backends: streams come here first.
  int rc = git_odb_add_backend(odb, backend, 100);
  if (rc != 0) delete backend;
  return rc;
}

// `git add -A -- <rels>` into `index` (everything when rels is empty).
int StageAll(git_repository* repo, git_index* index, const std::vector<std::string>& rels,
             unsigned flags, const std::function<bool(std::string_view, bool)>& skip) {
  if (int rc = BufferSmallWrites(repo); rc != 0) return rc;
  Pathspec ps(rels);
  StageFilter filter{index, &rels, skip};
  int rc = git_index_add_all(index, ps.get(), flags | GIT_INDEX_ADD_DISABLE_PATHSPEC_MATCH,
                             StageCallback, &filter);
  if (rc != 0) return rc;
  // Tracked files deleted from the work tree.
  return git_index_update_all(index, ps.get(), StageCallback, &filter);
}

}  // namespace

Result<GitRepo> GitRepo::Open(const fs::path& dir) {
  InitOnce();
  git_repository* repo = nullptr;
  if (git_repository_open_ext(&repo, dir.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) != 0)
    return Fail("opening the repository at " + dir.string());
  return GitRepo(repo);
}

GitRepo::GitRepo(GitRepo&& other) noexcept : repo_(other.repo_) { other.repo_ = nullptr; }

GitRepo& GitRepo::operator=(GitRepo&& other) noexcept {
  if (this != &other) {
    if (repo_) git_repository_free(repo_);
    repo_ = other.repo_;
    other.repo_ = nullptr;
  }
  return *this;
}

GitRepo::~GitRepo() {
  if (repo_) git_repository_free(repo_);
}

Result<GitRepo*> GitRepo::Kept(std::unique_ptr<GitRepo>* kept, const fs::path& dir) {
  if (*kept) {
    git_repository_set_index((*kept)->repo_, nullptr);
  } else {
    AF_ASSIGN_OR_RETURN(GitRepo repo, Open(dir));
    *kept = std::make_unique<GitRepo>(std::move(repo));
  }
  return kept->get();
}

Result<std::string> GitRepo::ResolveCommit(const std::string& rev) {
  git_object* raw = nullptr;
  int rc = git_revparse_single(&raw, repo_, rev.c_str());
  if (NotThere(rc)) return std::string();
  if (rc != 0) return Fail("resolving " + rev);
  Object obj(raw);
  git_object* peeled = nullptr;
  rc = git_object_peel(&peeled, obj.get(), GIT_OBJECT_COMMIT);
  if (NotThere(rc)) return std::string();
  if (rc != 0) return Fail("resolving " + rev);
  Object commit(peeled);
  return Hex(git_object_id(commit.get()));
}

Result<bool> GitRepo::RefExists(const std::string& refname) {
  git_oid oid;
  int rc = git_reference_name_to_id(&oid, repo_, refname.c_str());
  if (NotThere(rc)) return false;
  if (rc != 0) return Fail("looking up " + refname);
  return true;
}

Result<std::string> GitRepo::MergeBase(const std::string& a, const std::string& b) {
  AF_ASSIGN_OR_RETURN(std::string sha_a, ResolveCommit(a));
  AF_ASSIGN_OR_RETURN(std::string sha_b, ResolveCommit(b));
  if (sha_a.empty() || sha_b.empty())
    return Internal("git (libgit2): no merge base of " + a + " and " + b + ": " +
                        (sha_a.empty() ? a : b) + " names no commit",
                    "check the repository state with `git status` there");
  git_oid oa, ob, base;
  git_oid_fromstr(&oa, sha_a.c_str());
  git_oid_fromstr(&ob, sha_b.c_str());
  if (git_merge_base(&base, repo_, &oa, &ob) != 0) return Fail("merge base of " + a + " and " + b);
  return Hex(&base);
}

Result<std::string> GitRepo::TreeOf(const std::string& rev) {
  git_object* raw = nullptr;
  if (git_revparse_single(&raw, repo_, rev.c_str()) != 0) return Fail("resolving " + rev);
  Object obj(raw);
  git_object* peeled = nullptr;
  if (git_object_peel(&peeled, obj.get(), GIT_OBJECT_TREE) != 0) return Fail("the tree of " + rev);
  Object tree(peeled);
  return Hex(git_object_id(tree.get()));
}

namespace {

using Diff = Owned<git_diff, git_diff_free>;
using Patch = Owned<git_patch, git_patch_free>;

// `git diff --binary` of two trees with git's defaults: the indent heuristic,
// renames found at 50% similarity.
Result<Diff> DiffTrees(git_repository* repo, git_tree* from, git_tree* to) {
  git_diff_options opts = GIT_DIFF_OPTIONS_INIT;
  opts.flags = GIT_DIFF_SHOW_BINARY | GIT_DIFF_INDENT_HEURISTIC;
  git_diff* raw = nullptr;
  if (git_diff_tree_to_tree(&raw, repo, from, to, &opts) != 0) return Fail("comparing two trees");
  Diff diff(raw);
  git_diff_find_options find = GIT_DIFF_FIND_OPTIONS_INIT;
  find.flags = GIT_DIFF_FIND_RENAMES;
  if (git_diff_find_similar(diff.get(), &find) != 0) return Fail("finding renames");
  return diff;
}

// Whether git (core.quotepath=false) and libgit2 print every file of `diff`
// alike: libgit2 quotes non-ASCII bytes in octal, git ends a ---/+++ line
// whose name has a space with a tab, and libgit2 pairs an empty file deleted
// with one added as a rename, which git does not.
bool PrintedAlike(git_diff* diff) {
  auto plain = [](const char* path) {
    for (const char* p = path; p && *p; ++p) {
      const auto c = static_cast<unsigned char>(*p);
      if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\') return false;
    }
    return true;
  };
  for (size_t i = 0, n = git_diff_num_deltas(diff); i < n; ++i) {
    const git_diff_delta* d = git_diff_get_delta(diff, i);
    if (!plain(d->old_file.path) || !plain(d->new_file.path)) return false;
    if (d->status == GIT_DELTA_RENAMED && d->old_file.size == 0) return false;
  }
  return true;
}

// The patch text of `diff` (git's, see PrintedAlike), and with `stats` what
// the diffstat needs of each file. Each file's patch is made once for both.
Result<std::string> PatchOf(git_diff* diff, std::vector<StatFile>* stats = nullptr) {
  std::string out;
  for (size_t i = 0, n = git_diff_num_deltas(diff); i < n; ++i) {
    git_patch* raw = nullptr;
    if (git_patch_from_diff(&raw, diff, i) != 0) return Fail("reading a file's diff");
    Patch patch(raw);
    Buf text;
    if (git_patch_to_buf(&text.b, patch.get()) != 0) return Fail("printing the diff");
    std::string part(text.b.ptr ? text.b.ptr : "", text.b.size);
    const git_diff_delta* d = git_patch_get_delta(patch.get());
    const bool binary = (d->flags & GIT_DIFF_FLAG_BINARY) != 0;
    // A file added or deleted empty has no hunk: git prints no ---/+++ lines
    // for it, libgit2 does (its last two).
    if (git_patch_num_hunks(patch.get()) == 0 && !binary &&
        (d->status == GIT_DELTA_ADDED || d->status == GIT_DELTA_DELETED)) {
      const size_t minus = part.rfind("\n--- ");
      if (minus != std::string::npos && part.find("\n+++ ", minus) != std::string::npos)
        part.resize(minus + 1);
    }
    out += part;
    if (stats == nullptr) continue;
    StatFile f;
    f.status = d->status == GIT_DELTA_ADDED ? 'A' : d->status == GIT_DELTA_DELETED ? 'D' : 'M';
    f.path = f.status == 'D' ? d->old_file.path : d->new_file.path;
    f.old_mode = d->old_file.mode;
    f.new_mode = d->new_file.mode;
    f.binary = binary;
    if (binary) {
      f.added = d->new_file.size;
      f.deleted = d->old_file.size;
    } else {
      size_t adds = 0, dels = 0;
      if (git_patch_line_stats(nullptr, &adds, &dels, patch.get()) != 0)
        return Fail("counting a file's lines");
      f.added = adds;
      f.deleted = dels;
    }
    stats->push_back(std::move(f));
  }
  return out;
}

// Whether each file of `diff` is added, deleted or modified: the diffstat
// printed here has no rename or copy lines.
bool AddedDeletedOrModified(git_diff* diff) {
  for (size_t i = 0, n = git_diff_num_deltas(diff); i < n; ++i) {
    const git_delta_t status = git_diff_get_delta(diff, i)->status;
    if (status != GIT_DELTA_ADDED && status != GIT_DELTA_DELETED && status != GIT_DELTA_MODIFIED)
      return false;
  }
  return true;
}

bool PrintableAscii(std::string_view s, bool newlines) {
  for (char c : s)
    if ((c < ' ' || c > '~') && !(newlines && c == '\n')) return false;
  return true;
}

}  // namespace

Result<std::optional<std::string>> GitRepo::PatchText(const std::string& from,
                                                      const std::string& to) {
  Tree trees[2];
  for (int i = 0; i < 2; ++i) {
    const std::string spec = (i == 0 ? from : to) + "^{tree}";
    git_object* raw = nullptr;
    if (git_revparse_single(&raw, repo_, spec.c_str()) != 0) return Fail("resolving " + spec);
    trees[i].reset(reinterpret_cast<git_tree*>(raw));
  }
  AF_ASSIGN_OR_RETURN(Diff diff, DiffTrees(repo_, trees[0].get(), trees[1].get()));
  if (!PrintedAlike(diff.get())) return std::optional<std::string>();
  AF_ASSIGN_OR_RETURN(std::string text, PatchOf(diff.get()));
  return std::optional<std::string>(std::move(text));
}

Result<std::optional<std::string>> GitRepo::MailboxText(const std::string& from,
                                                        const std::string& to) {
  using Text = std::optional<std::string>;
  // Settings that change what format-patch prints (signoff, prefixes, the
  // diff algorithm, encodings...) are left to git: every diff.* one but those
  // for difftool and colours (which git's color.ui=false turns off).
  AF_ASSIGN_OR_RETURN(
      bool settings, AnyConfigName([](std::string_view name) {
        static constexpr std::string_view kHarmless[] = {"diff.tool", "diff.guitool",
                                                         "diff.colormoved", "diff.colormovedws",
                                                         "diff.wserrorhighlight"};
        if (std::find(std::begin(kHarmless), std::end(kHarmless), name) != std::end(kHarmless))
          return false;
        return StartsWith(name, "format.") || StartsWith(name, "diff.") ||
               StartsWith(name, "i18n.") || name == "core.abbrev";
      }));
  if (settings) return Text();
  git_oid ends[2];
  for (int i = 0; i < 2; ++i) {
    const std::string& rev = i == 0 ? from : to;
    git_object* raw = nullptr;
    if (git_revparse_single(&raw, repo_, (rev + "^{commit}").c_str()) != 0)
      return Fail("resolving " + rev);
    git_oid_cpy(&ends[i], git_object_id(raw));
    git_object_free(raw);
  }
  git_revwalk* walk_raw = nullptr;
  if (git_revwalk_new(&walk_raw, repo_) != 0) return Fail("walking the history");
  Walk walk(walk_raw);
  git_revwalk_sorting(walk.get(), GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE);
  if (git_revwalk_push(walk.get(), &ends[1]) != 0 || git_revwalk_hide(walk.get(), &ends[0]) != 0)
    return Fail("walking " + from + ".." + to);
  std::vector<git_oid> ids;
  for (git_oid id; git_revwalk_next(&id, walk.get()) == 0;) ids.push_back(id);

  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    git_commit* raw = nullptr;
    if (git_commit_lookup(&raw, repo_, &ids[i]) != 0) return Fail("reading a commit");
    Commit commit(raw);
    // Merges and empty commits (which git leaves out but counts) stay with git.
    if (git_commit_parentcount(commit.get()) != 1) return Text();
    git_commit* parent_raw = nullptr;
    if (git_commit_parent(&parent_raw, commit.get(), 0) != 0) return Fail("reading a parent");
    Commit parent(parent_raw);
    if (git_oid_equal(git_commit_tree_id(commit.get()), git_commit_tree_id(parent.get())))
      return Text();
    // The message exactly as "<summary>\n" or "<summary>\n\n<body>\n", in
    // plain ASCII: anything else git prints in ways not reproduced here.
    const git_signature* author = git_commit_author(commit.get());
    const char* summary = git_commit_summary(commit.get());
    if (summary == nullptr) return Fail("reading a commit's summary");
    const char* body = git_commit_body(commit.get());
    const std::string message = git_commit_message(commit.get());
    const std::string rebuilt =
        std::string(summary) + "\n" + (body ? "\n" + std::string(body) + "\n" : "");
    if (git_commit_message_encoding(commit.get()) != nullptr || message != rebuilt ||
        !PrintableAscii(message, true) || !PlainMailName(author->name) ||
        !PrintableAscii(author->email, false) ||
        std::string_view(author->email).find_first_of("<>") != std::string_view::npos) {
      return Text();
    }
    const std::string prefix = ids.size() == 1 ? "[PATCH] "
                                               : "[PATCH " + std::to_string(i + 1) + "/" +
                                                     std::to_string(ids.size()) + "] ";
    std::optional<std::string> subject = FoldedSubject(prefix, summary);
    if (!subject) return Text();

    git_tree* trees[2] = {nullptr, nullptr};
    if (git_commit_tree(&trees[0], parent.get()) != 0) return Fail("reading a tree");
    Tree before(trees[0]);
    if (git_commit_tree(&trees[1], commit.get()) != 0) return Fail("reading a tree");
    Tree after(trees[1]);
    AF_ASSIGN_OR_RETURN(Diff diff, DiffTrees(repo_, before.get(), after.get()));
    if (!PrintedAlike(diff.get()) || !AddedDeletedOrModified(diff.get())) return Text();
    std::vector<StatFile> stat;
    AF_ASSIGN_OR_RETURN(std::string patch, PatchOf(diff.get(), &stat));

    if (i > 0) out += "\n";
    out += "From " + Hex(&ids[i]) + " Mon Sep 17 00:00:00 2001\n";
    out += std::string("From: ") + author->name + " <" + author->email + ">\n";
    out += "Date: " + MailDate(author->when.time, author->when.offset) + "\n";
    out += *subject + "\n\n";
    if (body) out += std::string(body) + "\n";
    out += "---\n" + GitDiffStat(stat) + "\n" + patch;
  }
  return Text(std::move(out));
}

fs::path GitRepo::GitDir() const {
  std::string p = git_repository_path(repo_);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

fs::path GitRepo::CommonDir() const {
  std::string p = git_repository_commondir(repo_);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

Result<fs::path> GitRepo::IndexPath() const {
  Buf buf;
  if (git_repository_item_path(&buf.b, repo_, GIT_REPOSITORY_ITEM_INDEX) != 0)
    return Fail("the index path");
  return fs::path(buf.b.ptr);
}

Result<std::string> GitRepo::FindCommitWithTrailer(const std::string& key,
                                                   const std::string& value) {
  git_revwalk* raw = nullptr;
  if (git_revwalk_new(&raw, repo_) != 0) return Fail("walking the history");
  Walk walk(raw);
  git_revwalk_sorting(walk.get(), GIT_SORT_TIME);
  int rc = git_revwalk_push_head(walk.get());
  if (NotThere(rc)) return std::string();
  if (rc != 0) return Fail("walking the history");
  // As `git log --fixed-strings --grep`: a cheap look at the message first.
  const std::string needle = key + ": " + value;
  git_oid oid;
  while ((rc = git_revwalk_next(&oid, walk.get())) == 0) {
    git_commit* c = nullptr;
    if (git_commit_lookup(&c, repo_, &oid) != 0) return Fail("reading commit " + Hex(&oid));
    Commit commit(c);
    const char* msg = git_commit_message(commit.get());
    if (msg == nullptr || std::strstr(msg, needle.c_str()) == nullptr) continue;
    git_message_trailer_array trailers{};
    if (git_message_trailers(&trailers, msg) != 0) continue;
    bool found = false;
    for (size_t i = 0; i < trailers.count && !found; ++i) {
      // Keys compare without case, as %(trailers:key=...) does.
      found = strcasecmp(trailers.trailers[i].key, key.c_str()) == 0 &&
              TrimRight(trailers.trailers[i].value) == value;
    }
    git_message_trailer_array_free(&trailers);
    if (found) return Hex(&oid);
  }
  if (rc != GIT_ITEROVER) return Fail("walking the history");
  return std::string();
}

Result<bool> GitRepo::IsPristine() {
  git_status_options opts = GIT_STATUS_OPTIONS_INIT;
  opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
  // Submodules' own contents are not what reset --hard or clean touch.
  opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_INCLUDE_IGNORED |
               GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
  git_status_list* raw = nullptr;
  if (git_status_list_new(&raw, repo_, &opts) != 0) return Fail("status");
  StatusList list(raw);
  return git_status_list_entrycount(list.get()) == 0;
}

Result<bool> GitRepo::DiffersFromHead(const std::vector<std::string>& rels,
                                      const std::function<bool(std::string_view)>& skip) {
  Tree head;
  git_object* obj = nullptr;
  int rc = git_revparse_single(&obj, repo_, "HEAD^{tree}");
  if (rc == 0) {
    head.reset(reinterpret_cast<git_tree*>(obj));
  } else if (!NotThere(rc)) {
    return Fail("reading HEAD's tree");
  }  // an unborn HEAD: against the empty tree
  Pathspec ps(rels);
  git_diff_options opts = GIT_DIFF_OPTIONS_INIT;
  opts.flags = GIT_DIFF_INCLUDE_UNTRACKED | GIT_DIFF_RECURSE_UNTRACKED_DIRS |
               GIT_DIFF_DISABLE_PATHSPEC_MATCH | GIT_DIFF_IGNORE_SUBMODULES;
  if (ps.get() != nullptr) opts.pathspec = *ps.get();
  git_diff* raw = nullptr;
  if (git_diff_tree_to_workdir_with_index(&raw, repo_, head.get(), &opts) != 0)
    return Fail("comparing the work tree with HEAD");
  Owned<git_diff, git_diff_free> diff(raw);
  for (size_t i = 0, n = git_diff_num_deltas(diff.get()); i < n; ++i) {
    const git_diff_delta* d = git_diff_get_delta(diff.get(), i);
    const char* path = d->new_file.path ? d->new_file.path : d->old_file.path;
    if (!skip || !skip(path)) return true;
  }
  return false;
}

Result<bool> GitRepo::AnyConfigName(const std::function<bool(std::string_view)>& wanted) {
  git_config* raw = nullptr;
  if (git_repository_config_snapshot(&raw, repo_) != 0) return Fail("reading the configuration");
  Config cfg(raw);
  // Names matched here, not with git_config_iterator_glob_new: libgit2 1.5
  // leaks the PCRE2 match data (~20 KB) of every entry a glob does not match,
  // and this runs for every task commit and diff (hundreds of MB over 500
  // features in one server).
  git_config_iterator* it_raw = nullptr;
  if (git_config_iterator_new(&it_raw, cfg.get()) != 0) return Fail("reading the configuration");
  ConfigIter it(it_raw);
  git_config_entry* entry = nullptr;
  while (git_config_next(&entry, it.get()) == 0)
    if (wanted(entry->name)) return true;
  return false;
}

namespace {
// "<section>.<name>.<key>" with a non-empty <name>; libgit2 lower-cases
// section and key.
bool IsSubsectionKey(std::string_view name, std::string_view section, std::string_view key) {
  return name.size() >= section.size() + key.size() + 3 && StartsWith(name, section) &&
         name[section.size()] == '.' && name[name.size() - key.size() - 1] == '.' &&
         name.substr(name.size() - key.size()) == key;
}
}  // namespace

Result<bool> GitRepo::HasExternalFilters() {
  return AnyConfigName([](std::string_view name) {
    return IsSubsectionKey(name, "filter", "clean") || IsSubsectionKey(name, "filter", "process");
  });
}

Result<bool> GitRepo::HasTextconv() {
  return AnyConfigName(
      [](std::string_view name) { return IsSubsectionKey(name, "diff", "textconv"); });
}

Result<std::string> GitRepo::CommitPaths(const std::vector<std::string>& rels,
                                         const std::string& message, const std::string& name,
                                         const std::string& email) {
  git_index* index_raw = nullptr;
  if (git_repository_index(&index_raw, repo_) != 0) return Fail("reading the index");
  Index index(index_raw);
  const fs::path top = git_repository_workdir(repo_);

  // Only paths that exist or are tracked (`git add` refuses a pathspec that
  // matches nothing, e.g. a file the task created and deleted again).
  std::vector<std::string> wanted;
  for (const auto& r : rels) {
    struct stat st;
    bool keep = ::lstat((top / r).c_str(), &st) == 0;
    for (int stage = 0; stage <= 3 && !keep; ++stage)
      keep = git_index_get_bypath(index.get(), r.c_str(), stage) != nullptr;
    size_t pos = 0;
    keep = keep || git_index_find_prefix(&pos, index.get(), (r + "/").c_str()) == 0;
    if (keep) wanted.push_back(r);
  }
  if (wanted.empty()) return std::string();

  int rc = StageAll(repo_, index.get(), wanted, GIT_INDEX_ADD_CHECK_PATHSPEC, nullptr);
  if (rc == GIT_EINVALIDSPEC) {
    const git_error* e = git_error_last();
    return Internal(
        std::string("git add: a path to commit is ignored by the repository's ignore files (") +
            (e && e->message ? e->message : "") + ")",
        "remove the pattern from .gitignore or leave the file out of the task");
  }
  if (rc != 0) return Fail("staging the task's files");
  if (git_index_write(index.get()) != 0) return Fail("writing the index");

  // The commit's tree: HEAD's, with exactly the wanted paths as now staged.
  git_oid head_oid;
  if (git_reference_name_to_id(&head_oid, repo_, "HEAD") != 0) return Fail("resolving HEAD");
  git_commit* head_raw = nullptr;
  if (git_commit_lookup(&head_raw, repo_, &head_oid) != 0) return Fail("reading HEAD");
  Commit head(head_raw);
  git_tree* head_tree_raw = nullptr;
  if (git_commit_tree(&head_tree_raw, head.get()) != 0) return Fail("reading HEAD's tree");
  Tree head_tree(head_tree_raw);
  git_index* only_raw = nullptr;
  if (git_index_new(&only_raw) != 0) return Fail("making an index");
  Index only(only_raw);
  if (git_index_read_tree(only.get(), head_tree.get()) != 0) return Fail("reading HEAD's tree");
  for (const auto& r : wanted) {
    (void)git_index_remove(only.get(), r.c_str(), 0);
    (void)git_index_remove_directory(only.get(), r.c_str(), 0);
  }
  const size_t n = git_index_entrycount(index.get());
  for (size_t i = 0; i < n; ++i) {
    const git_index_entry* e = git_index_get_byindex(index.get(), i);
    if (!UnderAny(e->path, wanted)) continue;
    if (git_index_entry_stage(e) != 0) {
      return Internal(std::string("git commit: ") + e->path + " is unmerged",
                      "resolve the conflict in the file and commit again");
    }
    if (git_index_add(only.get(), e) != 0) return Fail("staging " + std::string(e->path));
  }
  git_oid tree_oid;
  if (git_index_write_tree_to(&tree_oid, only.get(), repo_) != 0)
    return Fail("writing the commit's tree");
  if (git_oid_equal(&tree_oid, git_tree_id(head_tree.get()))) return std::string();

  git_tree* tree_raw = nullptr;
  if (git_tree_lookup(&tree_raw, repo_, &tree_oid) != 0) return Fail("reading the new tree");
  Tree tree(tree_raw);
  Buf msg;
  // strip_comments = 0: exactly --cleanup=whitespace.
  if (git_message_prettify(&msg.b, message.c_str(), 0, '#') != 0)
    return Fail("cleaning the message");
  git_signature* sig_raw = nullptr;
  if (git_signature_now(&sig_raw, name.c_str(), email.c_str()) != 0) return Fail("the signature");
  Signature sig(sig_raw);
  const git_commit* parents[] = {head.get()};
  git_oid commit_oid;
  // Updates HEAD's branch only if it still points at `head`.
  if (git_commit_create(&commit_oid, repo_, "HEAD", sig.get(), sig.get(), nullptr, msg.b.ptr,
                        tree.get(), 1, parents) != 0)
    return Fail("committing");
  return Hex(&commit_oid);
}

Status GitRepo::StageInto(const fs::path& index_file, const std::vector<std::string>& rels,
                          const std::function<bool(std::string_view)>& skip) {
  AF_ASSIGN_OR_RETURN(fs::path real, IndexPath());
  std::error_code ec;
  fs::remove(index_file, ec);
  if (fs::exists(real, ec)) {
    fs::copy_file(real, index_file, fs::copy_options::overwrite_existing, ec);
    if (ec) return Internal("cannot copy the git index: " + ec.message());
  }
  git_index* raw = nullptr;
  if (git_index_open(&raw, index_file.c_str()) != 0) return Fail("opening " + index_file.string());
  Index index(raw);
  // The repository's index until Kept drops it, so staging knows the work tree
  // and the ignore rules.
  if (git_repository_set_index(repo_, index.get()) != 0) return Fail("using a temporary index");
  std::function<bool(std::string_view, bool)> skip_any;
  if (skip) skip_any = [&skip](std::string_view p, bool) { return skip(p); };
  if (StageAll(repo_, index.get(), rels, 0, skip_any) != 0) return Fail("staging the work tree");
  if (git_index_write(index.get()) != 0) return Fail("writing " + index_file.string());
  return Status::Ok();
}

Result<std::string> GitRepo::WorkTreeId(
    const std::function<bool(std::string_view)>& skip_untracked) {
  git_index* raw = nullptr;
  if (git_repository_index(&raw, repo_) != 0) return Fail("reading the index");
  Index index(raw);
  // Changed in memory only: never written back.
  std::function<bool(std::string_view, bool)> skip;
  if (skip_untracked)
    skip = [&](std::string_view p, bool tracked) { return !tracked && skip_untracked(p); };
  if (StageAll(repo_, index.get(), {}, 0, skip) != 0) return Fail("staging the work tree");
  git_oid oid;
  if (git_index_write_tree(&oid, index.get()) != 0) return Fail("writing the work tree's tree");
  return Hex(&oid);
}

Result<std::vector<GitRepo::Worktree>> GitRepo::Worktrees() {
  git_strarray names{};
  if (git_worktree_list(&names, repo_) != 0) return Fail("listing worktrees");
  std::vector<Worktree> out;
  for (size_t i = 0; i < names.count; ++i) {
    Worktree w;
    w.name = names.strings[i];
    git_worktree* raw = nullptr;
    if (git_worktree_lookup(&raw, repo_, names.strings[i]) != 0) {
      w.stale = true;  // no readable gitdir file
      out.push_back(std::move(w));
      continue;
    }
    WorktreeHandle wt(raw);
    w.path = git_worktree_path(wt.get());
    std::error_code ec;
    // As `git worktree prune`: its checkout is gone, and it is not locked.
    w.stale = !fs::exists(w.path / ".git", ec) && git_worktree_is_locked(nullptr, wt.get()) <= 0;
    out.push_back(std::move(w));
  }
  git_strarray_dispose(&names);
  return out;
}

Status GitRepo::PruneWorktree(const std::string& name) {
  git_worktree* raw = nullptr;
  int rc = git_worktree_lookup(&raw, repo_, name.c_str());
  if (rc != 0) {
    // Unreadable registration: remove its directory as prune would.
    std::error_code ec;
    fs::remove_all(CommonDir() / "worktrees" / name, ec);
    if (ec)
      return Internal("cannot remove the worktree registration " + name + ": " + ec.message());
    return Status::Ok();
  }
  WorktreeHandle wt(raw);
  git_worktree_prune_options opts = GIT_WORKTREE_PRUNE_OPTIONS_INIT;
  // The registration only: its files are the caller's.
  opts.flags = GIT_WORKTREE_PRUNE_VALID | GIT_WORKTREE_PRUNE_LOCKED;
  if (git_worktree_prune(wt.get(), &opts) != 0) return Fail("pruning worktree " + name);
  return Status::Ok();
}

}  // namespace af::workspace_internal

namespace af::workspace_internal {

namespace {

// Replaces `file` with `text` through a temporary file and a rename, so a
// crash leaves the old or the new content, never half of it.
Status WriteFileAtomically(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) return Internal("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) return Internal("cannot replace " + file.string() + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

Status GitRepo::AddWorktree(const std::string& name, const fs::path& path,
                            const std::string& branch, const std::string& base) {
  const fs::path admin = CommonDir() / "worktrees" / name;
  std::error_code exists_ec;
  if (fs::exists(admin, exists_ec) || fs::exists(path, exists_ec)) {
    return Internal("git (libgit2): cannot add worktree " + path.string() + ": " +
                        (fs::exists(path, exists_ec) ? path.string() : admin.string()) +
                        " exists already",
                    "remove it, or run `git worktree prune` in the repository");
  }
  const std::string refname = "refs/heads/" + branch;
  git_reference* raw = nullptr;
  int rc = git_reference_lookup(&raw, repo_, refname.c_str());
  if (rc == GIT_ENOTFOUND) {
    // As `git branch <branch> <base>` (what `worktree add -b` runs first).
    AF_ASSIGN_OR_RETURN(std::string sha, ResolveCommit(base));
    if (sha.empty()) return Internal("git (libgit2): '" + base + "' names no commit");
    git_oid oid;
    if (git_oid_fromstr(&oid, sha.c_str()) != 0) return Fail("reading " + sha);
    rc = git_reference_create(&raw, repo_, refname.c_str(), &oid, /*force=*/0,
                              ("branch: Created from " + base).c_str());
    if (rc != 0) return Fail("creating branch " + branch);
  } else if (rc != 0) {
    return Fail("reading branch " + branch);
  }
  Reference ref(raw);

  // The files `git worktree add` writes, by hand rather than through
  // git_worktree_add: that one first asks whether the branch is checked out
  // in any other worktree by opening every one of them, so adding the Nth
  // worktree cost N repository opens (most of the server's CPU with hundreds
  // of features at once). Each feature's branch is its own, and the caller
  // holds the repository lock. The `.git` file that makes the directory a
  // worktree comes last: a checkout cut short (a crash) leaves a directory
  // RegisteredWorktree does not accept, so it is made again.
  std::error_code ec;
  fs::create_directories(admin.parent_path(), ec);
  Status status = Status::Ok();
  if (!fs::create_directory(admin, ec) || !fs::create_directory(path, ec)) {
    status = Internal("cannot create " + (fs::exists(admin) ? path : admin).string() + ": " +
                      ec.message());
  }
  if (status.ok()) status = WriteFileAtomically(admin / "commondir", "../..\n");
  if (status.ok()) status = WriteFileAtomically(admin / "gitdir", (path / ".git").string() + "\n");
  if (status.ok()) status = WriteFileAtomically(admin / "HEAD", "ref: " + refname + "\n");
  if (status.ok()) {
    // Opened through its admin directory: libgit2 finds the work tree in its
    // `gitdir` file, so the checkout needs no `.git` file yet.
    auto worktree = Open(admin);
    if (!worktree.ok()) {
      status = worktree.status();
    } else {
      git_checkout_options opts = GIT_CHECKOUT_OPTIONS_INIT;
      // A fresh directory: everything is written, as `git reset --hard` does.
      opts.checkout_strategy = GIT_CHECKOUT_FORCE;
      if (git_checkout_head(worktree->repo_, &opts) != 0)
        status = Fail("checking out " + branch + " into " + path.string());
    }
  }
  if (status.ok()) {
    fault::CrashPoint("worktree checkout");  // files and registration, no `.git` yet
    status = WriteFileAtomically(path / ".git", "gitdir: " + admin.string() + "\n");
  }
  if (!status.ok()) {
    // As the CLI does when its checkout fails: nothing half-made stays.
    fs::remove_all(path, ec);
    fs::remove_all(admin, ec);
  }
  return status;
}

namespace {

std::string FirstLine(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// Where the registration `name` says its files are; empty when there is no
// such registration or it is unreadable.
fs::path WorktreePathOf(const fs::path& common_dir, const std::string& name) {
  const std::string link = FirstLine(common_dir / "worktrees" / name / "gitdir");
  return link.empty() ? fs::path() : fs::path(link).parent_path();
}

}  // namespace

Status GitRepo::PruneIfStale(const std::string& name) {
  std::error_code ec;
  if (!fs::exists(CommonDir() / "worktrees" / name, ec)) return Status::Ok();
  const fs::path path = WorktreePathOf(CommonDir(), name);
  if (!path.empty() && fs::exists(path / ".git", ec)) return Status::Ok();
  return PruneWorktree(name);
}

std::string GitRepo::RegisteredWorktree(const fs::path& path) {
  const std::string link = FirstLine(path / ".git");
  constexpr std::string_view kPrefix = "gitdir: ";
  if (!StartsWith(link, kPrefix)) return std::string();
  const fs::path admin = link.substr(kPrefix.size());
  std::error_code ec;
  if (!fs::equivalent(admin.parent_path(), CommonDir() / "worktrees", ec)) return std::string();
  const fs::path named = WorktreePathOf(CommonDir(), admin.filename().string());
  if (named.empty() || !fs::equivalent(named, path, ec)) return std::string();
  return admin.filename().string();
}

Status GitRepo::PruneStaleWorktrees() {
  AF_ASSIGN_OR_RETURN(auto registered, Worktrees());
  for (const auto& w : registered)
    if (w.stale) AF_RETURN_IF_ERROR(PruneWorktree(w.name));
  return Status::Ok();
}

}  // namespace af::workspace_internal
