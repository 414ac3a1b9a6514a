// The workspace against a real git: repositories, feature worktrees, the path
// check, file tools and idempotent commits.

#include "af/workspace/workspace.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/test_util.h"
#include "workspace/git_lib.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using af::testing::RunCommand;
using af::testing::TempDir;

// Runs git in `dir` and returns stdout (trimmed); fails the test on error.
std::string Git(const fs::path& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/git", "-C", dir.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class WorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() / "workspaces" / "proj";
    auto ws = Workspace::Open(root_);
    ASSERT_TRUE(ws.ok()) << ws.status().ToString();
    ws_ = std::move(ws).value();
    auto tree = ws_->OpenFeature("feat-1");
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    tree_ = std::move(tree).value();
  }

  TempDir tmp_;
  fs::path root_;
  std::unique_ptr<Workspace> ws_;
  std::unique_ptr<FeatureTree> tree_;
};

TEST_F(WorkspaceTest, InitCreatesRepositoryOnMainWithInitialCommit) {
  EXPECT_TRUE(fs::is_directory(root_ / ".git"));
  EXPECT_EQ(ws_->base_branch(), "main");
  EXPECT_EQ(Git(root_, {"symbolic-ref", "--short", "HEAD"}), "main");
  EXPECT_EQ(Git(root_, {"rev-list", "--count", "main"}), "1");
  EXPECT_NE(testing::ReadFile(root_ / "README.md").find("managed by Agent Factory"),
            std::string::npos);
  // .af/ is excluded so worktrees never show as untracked files.
  EXPECT_EQ(Git(root_, {"status", "--porcelain"}), "");
  EXPECT_NE(testing::ReadFile(root_ / ".git" / "info" / "exclude").find(".af/"), std::string::npos);
}

TEST_F(WorkspaceTest, OpenFeatureCreatesBranchAndWorktreeAndReopensAfterRestart) {
  EXPECT_EQ(tree_->branch(), "af/feat-1");
  EXPECT_EQ(tree_->root(), fs::canonical(root_ / ".af" / "worktrees" / "feat-1"));
  EXPECT_EQ(Git(tree_->root(), {"symbolic-ref", "--short", "HEAD"}), "af/feat-1");
  auto exists = ws_->BranchExists("af/feat-1");
  ASSERT_TRUE(exists.ok());
  EXPECT_TRUE(*exists);
  EXPECT_FALSE(*ws_->BranchExists("af/nope"));

  ASSERT_TRUE(tree_->WriteFile("a.txt", "one\n").ok());
  auto sha = tree_->CommitTask("t1", "add a", {"a.txt"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  ASSERT_TRUE(tree_->WriteFile("pending.txt", "not committed\n").ok());

  // "Restart": new objects on the same directory.
  tree_.reset();
  ws_.reset();
  auto ws2 = Workspace::Open(root_);
  ASSERT_TRUE(ws2.ok()) << ws2.status().ToString();
  auto tree2 = (*ws2)->OpenFeature("feat-1");
  ASSERT_TRUE(tree2.ok()) << tree2.status().ToString();
  EXPECT_EQ(*(*tree2)->HeadSha(), *sha);
  EXPECT_EQ(*(*tree2)->ReadFile("pending.txt"), "not committed\n");
  EXPECT_EQ(Git(root_, {"rev-list", "--count", "main"}), "1");

  // After the worktree is removed (branch kept) it comes back from the branch.
  ASSERT_TRUE((*ws2)->RemoveFeatureTree("feat-1").ok());
  EXPECT_FALSE(fs::exists(root_ / ".af" / "worktrees" / "feat-1"));
  EXPECT_TRUE(*(*ws2)->BranchExists("af/feat-1"));
  auto tree3 = (*ws2)->OpenFeature("feat-1");
  ASSERT_TRUE(tree3.ok()) << tree3.status().ToString();
  EXPECT_EQ(*(*tree3)->HeadSha(), *sha);
  EXPECT_EQ(*(*tree3)->ReadFile("a.txt"), "one\n");
}

TEST_F(WorkspaceTest, RefusesBadFeatureIds) {
  for (const char* id : {"", "../x", "a/b", ".hidden", "-x", "a..b", "a b"}) {
    auto t = ws_->OpenFeature(id);
    ASSERT_FALSE(t.ok()) << id;
    EXPECT_EQ(t.status().code(), Code::kInvalidArgument) << id;
  }
}

TEST_F(WorkspaceTest, WriteReadEditListSearch) {
  ASSERT_TRUE(tree_->WriteFile("src/deep/x.cc", "int x = 1;\nint y = 2;\n").ok());
  EXPECT_EQ(*tree_->ReadFile("src/deep/x.cc"), "int x = 1;\nint y = 2;\n");
  ASSERT_TRUE(tree_->EditFile("src/deep/x.cc", "y = 2", "y = 3").ok());
  EXPECT_EQ(*tree_->ReadFile("src/deep/x.cc"), "int x = 1;\nint y = 3;\n");

  auto missing = tree_->ReadFile("nope.txt");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.txt"), std::string::npos);
  EXPECT_EQ(tree_->ReadFile("src").status().code(), Code::kInvalidArgument);

  auto all = tree_->ListFiles();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(Contains(*all, "README.md"));
  EXPECT_TRUE(Contains(*all, "src/deep/x.cc"));
  for (const auto& f : *all) EXPECT_EQ(f.find(".git"), std::string::npos) << f;
  auto sub = tree_->ListFiles("src");
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(*sub, std::vector<std::string>{"src/deep/x.cc"});

  // Build outputs and caches are counted, not listed, unless asked for.
  ASSERT_TRUE(tree_->WriteFile("build/CMakeCache.txt", "x").ok());
  ASSERT_TRUE(tree_->WriteFile("src/__pycache__/x.cpython-311.pyc", "x").ok());
  auto listed = tree_->ListFiles();
  ASSERT_TRUE(listed.ok());
  EXPECT_FALSE(Contains(*listed, "build/CMakeCache.txt"));
  EXPECT_FALSE(Contains(*listed, "src/__pycache__/x.cpython-311.pyc"));
  EXPECT_EQ(listed->back(),
            "... [2 build output or cache files not listed: list their directory to see them]");
  auto build = tree_->ListFiles("build");
  ASSERT_TRUE(build.ok());
  EXPECT_EQ(*build, std::vector<std::string>{"build/CMakeCache.txt"});

  ASSERT_TRUE(tree_->WriteFile("bin.dat", std::string("ab\0cd int y", 11)).ok());
  auto hits = tree_->Search("int y");
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 1u);  // the binary file is skipped
  EXPECT_EQ((*hits)[0].path, "src/deep/x.cc");
  EXPECT_EQ((*hits)[0].line, 2);
  EXPECT_EQ((*hits)[0].text, "int y = 3;");
  EXPECT_EQ(tree_->Search("").status().code(), Code::kInvalidArgument);
  EXPECT_NE(tree_->ReadFile("bin.dat")->find("binary file"), std::string::npos);
}

// A sandboxed command can rewrite the tree's `.git` file. One pointing at a
// git directory it made, whose config names a program to run (fsmonitor,
// a clean filter), must not make the server run that program outside the
// sandbox: git and libgit2 are pointed at the tree's registration instead.
TEST_F(WorkspaceTest, ARewrittenDotGitFileIsNotFollowed) {
  ASSERT_TRUE(tree_->WriteFile("a.txt", "one\n").ok());
  const fs::path root = tree_->root();
  const fs::path fake = tmp_.path() / "fake-gitdir";
  const fs::path pwned = tmp_.path() / "pwned";
  auto init =
      RunCommand({"/usr/bin/git", "init", "-q", "--bare", fake.string()}, {}, tmp_.path().string());
  ASSERT_EQ(init.exit_code, 0) << init.err;
  std::ofstream(fake / "config", std::ios::app)
      << "[core]\n\tbare = false\n\tfsmonitor = \"touch " << pwned.string() << "; false\"\n"
      << "[filter \"x\"]\n\tclean = \"touch " << pwned.string() << "; cat\"\n";
  std::ofstream(root / ".gitattributes") << "* filter=x\n";
  std::ofstream(root / ".git", std::ios::trunc) << "gitdir: " << fake.string() << "\n";

  auto snapshot = tree_->ChangeSnapshot();  // git status
  ASSERT_TRUE(snapshot.ok()) << snapshot.status().ToString();
  EXPECT_TRUE(snapshot->count("a.txt")) << "read from the real repository";
  ASSERT_TRUE(tree_->Search("one").ok());                     // git ls-files
  auto commit = tree_->CommitTask("t1", "add a", {"a.txt"});  // libgit2
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  EXPECT_FALSE(fs::exists(pwned)) << "a program from the fake git directory ran";
  auto log = RunCommand({"/usr/bin/git", "-C", root_.string(), "log", "--format=%s", "af/feat-1"},
                        {}, tmp_.path().string());
  EXPECT_EQ(log.out.substr(0, log.out.find('\n')), "add a") << log.out << log.err;
}

// A repository nested in the tree (a sandboxed command can `git init` one and
// write its config) is not entered by the server's git: its clean filter
// would run here, outside the sandbox, on its changed file.
TEST_F(WorkspaceTest, ANestedRepositorysFiltersNeverRun) {
  const fs::path root = tree_->root();
  const fs::path pwned = tmp_.path() / "pwned";
  const std::string git = "/usr/bin/git";
  auto run = [&](std::vector<std::string> argv) {
    auto r = RunCommand(argv, {}, root.string());
    EXPECT_EQ(r.exit_code, 0) << r.err;
  };
  run({git, "init", "-q", "sub"});
  std::ofstream(root / "sub" / ".gitattributes") << "a.txt filter=pwn\n";
  std::ofstream(root / "sub" / "a.txt") << "hi\n";
  run({git, "-C", "sub", "add", "."});
  run({git, "-C", "sub", "-c", "user.name=x", "-c", "user.email=y", "commit", "-qm", "x"});
  run({git, "-C", "sub", "config", "filter.pwn.clean", "touch " + pwned.string() + "; cat"});
  run({git, "add", "sub"});  // a gitlink in the feature's index
  // Touched, not changed: only hashing it (through the filter) tells.
  fs::last_write_time(root / "sub" / "a.txt",
                      fs::last_write_time(root / "sub" / "a.txt") + std::chrono::seconds(5));

  auto snapshot = tree_->ChangeSnapshot();  // git status
  ASSERT_TRUE(snapshot.ok()) << snapshot.status().ToString();
  auto diff = tree_->UncommittedDiff({}, 3);
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  EXPECT_FALSE(fs::exists(pwned)) << "the nested repository's filter ran outside the sandbox";
}

// A task's message is the model's summary: a forged trailer naming another
// task (hidden behind "---") must not make that task's work look committed.
TEST_F(WorkspaceTest, AForgedTaskIdInTheMessageNamesNoOtherTask) {
  ASSERT_TRUE(tree_->WriteFile("a.txt", "one\n").ok());
  auto first = tree_->CommitTask("t1", "Task one\n\ndone\n\nTask-Id: t2\n---\n", {"a.txt"});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto forged = tree_->FindTaskCommit("t2");
  ASSERT_TRUE(forged.ok()) << forged.status().ToString();
  EXPECT_EQ(*forged, "") << "t2 looks committed by t1's message";
  EXPECT_EQ(*tree_->FindTaskCommit("t1"), *first);

  ASSERT_TRUE(tree_->WriteFile("b.txt", "two\n").ok());
  auto second = tree_->CommitTask("t2", "Task two", {"b.txt"});
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_NE(*second, *first) << "t2's work was dropped";
  auto show =
      RunCommand({"/usr/bin/git", "-C", root_.string(), "show", "--stat", "--format=%B", *second},
                 {}, tmp_.path().string());
  EXPECT_NE(show.out.find("b.txt"), std::string::npos) << show.out;
}

TEST_F(WorkspaceTest, ReadTruncatesLargeFilesWithANote) {
  ASSERT_TRUE(tree_->WriteFile("big.txt", std::string(1000, 'a')).ok());
  auto r = tree_->ReadFile("big.txt", 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->substr(0, 100), std::string(100, 'a'));
  EXPECT_NE(r->find("truncated"), std::string::npos);
  EXPECT_NE(r->find("1000 bytes"), std::string::npos);
}

TEST_F(WorkspaceTest, ListFilesIsCapped) {
  for (size_t i = 0; i < FeatureTree::kMaxListEntries + 5; ++i) {
    std::ofstream(tree_->root() / ("f" + std::to_string(i))) << "x";
  }
  auto files = tree_->ListFiles();
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), FeatureTree::kMaxListEntries + 1);
  EXPECT_NE(files->back().find("truncated"), std::string::npos);
}

TEST_F(WorkspaceTest, EditFileNeedsExactlyOneMatch) {
  ASSERT_TRUE(tree_->WriteFile("e.txt", "foo bar foo\n").ok());
  Status none = tree_->EditFile("e.txt", "baz", "x");
  EXPECT_EQ(none.code(), Code::kNotFound);
  EXPECT_EQ(none.message(), "old_text not found in e.txt");
  Status two = tree_->EditFile("e.txt", "foo", "x");
  EXPECT_EQ(two.code(), Code::kInvalidArgument);
  EXPECT_EQ(two.message(), "old_text occurs 2 times in e.txt; include more context");
  EXPECT_EQ(*tree_->ReadFile("e.txt"), "foo bar foo\n");  // unchanged
}

TEST_F(WorkspaceTest, ResolveRefusesEscapes) {
  const fs::path outside = tmp_.path() / "outside";
  fs::create_directories(outside);
  std::ofstream(outside / "secret.txt") << "secret";
  fs::create_symlink("/etc", tree_->root() / "etc-link");
  fs::create_symlink(outside / "secret.txt", tree_->root() / "secret-link");
  fs::create_symlink(outside, tree_->root() / "outdir");
  fs::create_symlink(tmp_.path() / "missing", tree_->root() / "dangling");

  for (const char* bad :
       {"../x", "/etc/x", "a/../../x", ".git/config", ".git", "sub/.git/x", "etc-link/passwd",
        "etc-link", "secret-link", "outdir/secret.txt", "outdir/new.txt", "dangling"}) {
    auto r = tree_->Resolve(bad);
    ASSERT_FALSE(r.ok()) << bad << " resolved to " << r->string();
    EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(tree_->Resolve("../x").status().message(),
            "path '../x' escapes the workspace: use a path relative to the workspace root");
  EXPECT_EQ(tree_->Resolve("").status().code(), Code::kInvalidArgument);

  // Reads and writes through the links are refused and touch nothing outside.
  EXPECT_EQ(tree_->ReadFile("etc-link/passwd").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->ReadFile("secret-link").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->WriteFile("secret-link", "pwned").code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->WriteFile("outdir/new.txt", "pwned").code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->WriteFile("dangling", "pwned").code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->WriteFile("etc-link/af-test-x", "pwned").code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->EditFile("secret-link", "secret", "x").code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->ListFiles("outdir").status().code(), Code::kPermissionDenied);
  EXPECT_EQ(testing::ReadFile(outside / "secret.txt"), "secret");
  EXPECT_FALSE(fs::exists(outside / "new.txt"));
  EXPECT_FALSE(fs::exists(tmp_.path() / "missing"));
  EXPECT_FALSE(fs::exists("/etc/af-test-x"));
  // Listing and search do not follow the links out.
  auto hits = tree_->Search("secret");
  ASSERT_TRUE(hits.ok());
  EXPECT_TRUE(hits->empty());
}

TEST_F(WorkspaceTest, ResolveAcceptsPathsThatStayInside) {
  const fs::path root = tree_->root();
  EXPECT_EQ(*tree_->Resolve("a/b/../c"), root / "a" / "c");
  EXPECT_EQ(*tree_->Resolve("./x//y"), root / "x" / "y");
  EXPECT_EQ(*tree_->Resolve("."), root);
  // A symlink that stays inside the tree is fine and resolves to its target.
  ASSERT_TRUE(tree_->WriteFile("real/f.txt", "inside").ok());
  fs::create_symlink("real", root / "alias");
  EXPECT_EQ(*tree_->Resolve("alias/f.txt"), root / "real" / "f.txt");
  EXPECT_EQ(*tree_->ReadFile("alias/f.txt"), "inside");
}

TEST_F(WorkspaceTest, CommitTaskCommitsOnlyTheGivenPathsOnce) {
  ASSERT_TRUE(tree_->WriteFile("mine.txt", "mine\n").ok());
  ASSERT_TRUE(tree_->WriteFile("other.txt", "another task's half-done file\n").ok());
  ASSERT_TRUE(tree_->WriteFile("README.md", "changed by someone else\n").ok());
  auto before = tree_->HeadSha();

  auto sha = tree_->CommitTask("task-42", "Add mine", {"mine.txt"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  EXPECT_EQ(sha->size(), 40u);
  EXPECT_NE(*sha, *before);
  EXPECT_EQ(Git(tree_->root(), {"show", "--name-only", "--format=", *sha}), "mine.txt");
  EXPECT_EQ(Git(tree_->root(), {"log", "-1", "--format=%(trailers:key=Task-Id,valueonly)"}),
            "task-42");
  EXPECT_EQ(Git(tree_->root(), {"log", "-1", "--format=%an <%ae>"}),
            "Agent Factory <agent-factory@localhost>");
  // The other files stay uncommitted.
  std::string status = Git(tree_->root(), {"status", "--porcelain"});
  EXPECT_NE(status.find("other.txt"), std::string::npos);
  EXPECT_NE(status.find("README.md"), std::string::npos);
  EXPECT_EQ(status.find("mine.txt"), std::string::npos);

  // A resumed task commits nothing and gets the same sha, even with new changes.
  ASSERT_TRUE(tree_->WriteFile("mine.txt", "mine, again\n").ok());
  auto again = tree_->CommitTask("task-42", "Add mine", {"mine.txt"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *sha);
  EXPECT_EQ(*tree_->HeadSha(), *sha);
  // A task id that merely starts like another one is a different task.
  auto prefixed = tree_->CommitTask("task-4", "x", {"mine.txt"});
  ASSERT_TRUE(prefixed.ok());
  EXPECT_NE(*prefixed, *sha);

  // No changes: "" and nothing committed.
  auto head = *tree_->HeadSha();
  auto empty = tree_->CommitTask("task-43", "nothing", {"mine.txt"});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
  EXPECT_EQ(*tree_->HeadSha(), head);
  EXPECT_EQ(*tree_->CommitTask("task-44", "gone", {"never-existed.txt"}), "");

  // Deletions are committed too; escapes and empty lists are refused.
  fs::remove(tree_->root() / "mine.txt");
  auto del = tree_->CommitTask("task-45", "remove mine", {"mine.txt"});
  ASSERT_TRUE(del.ok()) << del.status().ToString();
  EXPECT_NE(*del, "");
  EXPECT_EQ(Git(tree_->root(), {"ls-tree", "--name-only", "HEAD", "mine.txt"}), "");
  EXPECT_EQ(tree_->CommitTask("t", "x", {"../x"}).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(tree_->CommitTask("t", "x", {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(tree_->CommitTask("", "x", {"a"}).status().code(), Code::kInvalidArgument);
}

// What a resumed task starts from and what gates and review see: the last
// commit, nothing else (an edit left by a killed process would be applied twice).
TEST_F(WorkspaceTest, ResetToLastCommitAndTaskCommitLookup) {
  ASSERT_TRUE(tree_->WriteFile("greet.sh", "echo hello\n").ok());
  auto sha = tree_->CommitTask("f-t1", "Write greet", {"greet.sh"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  EXPECT_EQ(*tree_->FindTaskCommit("f-t1"), *sha);
  EXPECT_EQ(*tree_->FindTaskCommit("f-t2"), "");
  EXPECT_EQ(*tree_->FindTaskCommit("f-t"), "");  // a prefix is another task

  // Half a task: an edit, a new file, an ignored file, a new directory.
  ASSERT_TRUE(tree_->EditFile("greet.sh", "echo hello\n", "echo hello\necho bye\n").ok());
  ASSERT_TRUE(tree_->WriteFile("half/done.txt", "x\n").ok());
  ASSERT_TRUE(tree_->WriteFile(".gitignore", "*.pyc\n").ok());
  ASSERT_TRUE(tree_->CommitTask("f-t0", "ignore pyc", {".gitignore"}).ok());
  ASSERT_TRUE(tree_->WriteFile("cache.pyc", "bytes").ok());
  EXPECT_TRUE(*tree_->HasCommittedChange());
  auto committed = tree_->CommittedDiff();
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_NE(committed->find("+echo hello"), std::string::npos) << *committed;
  EXPECT_EQ(committed->find("echo bye"), std::string::npos) << "uncommitted edits are not shown";
  EXPECT_EQ(committed->find("half/done.txt"), std::string::npos);

  ASSERT_TRUE(tree_->ResetToLastCommit().ok());
  EXPECT_EQ(testing::ReadFile(tree_->root() / "greet.sh"), "echo hello\n");
  EXPECT_FALSE(fs::exists(tree_->root() / "half"));
  EXPECT_FALSE(fs::exists(tree_->root() / "cache.pyc"));
  EXPECT_EQ(Git(tree_->root(), {"status", "--porcelain", "--ignored"}), "");
  // The edit applies again, once.
  ASSERT_TRUE(tree_->EditFile("greet.sh", "echo hello\n", "echo hello\necho bye\n").ok());
  EXPECT_EQ(testing::ReadFile(tree_->root() / "greet.sh"), "echo hello\necho bye\n");

  // The locks a killed git leaves (index, HEAD, the branch) do not stop the
  // reset: the tree's own lock proves nobody's git is working there.
  const fs::path reg = root_ / ".git" / "worktrees" / "feat-1";
  const fs::path ref_lock = root_ / ".git" / "refs" / "heads" / "af" / "feat-1.lock";
  for (const fs::path& lock : {reg / "index.lock", reg / "HEAD.lock", ref_lock})
    std::ofstream(lock) << "";
  ASSERT_TRUE(tree_->ResetToLastCommit().ok());
  EXPECT_EQ(testing::ReadFile(tree_->root() / "greet.sh"), "echo hello\n");
  for (const fs::path& lock : {reg / "index.lock", reg / "HEAD.lock", ref_lock})
    EXPECT_FALSE(fs::exists(lock)) << lock;
  ASSERT_TRUE(tree_->WriteFile("after.txt", "x\n").ok());
  EXPECT_TRUE(tree_->CommitTask("f-t9", "after the locks", {"after.txt"}).ok());

  // A branch with no commit of its own has an empty committed diff.
  auto other = ws_->OpenFeature("feat-2");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*(*other)->CommittedDiff(), "");
  EXPECT_FALSE(*(*other)->HasCommittedChange());
}

// Several processes may use one feature's tree (worker processes running its
// tasks). Each Workspace object stands for a process here: flock locks belong
// to open files, so they exclude each other like processes do.
TEST_F(WorkspaceTest, AttachResetsOnlyATreeNoOtherHandleUses) {
  auto open_tree = [&] {
    auto ws = Workspace::Open(root_);
    EXPECT_TRUE(ws.ok());
    auto tree = (*ws)->OpenFeature("feat-1");
    EXPECT_TRUE(tree.ok()) << tree.status().ToString();
    return std::move(tree).value();
  };
  // The first user: leftovers of a dead process are reset.
  ASSERT_TRUE(tree_->WriteFile("left.txt", "by a dead process\n").ok());
  EXPECT_TRUE(*tree_->Attach());
  EXPECT_FALSE(fs::exists(tree_->root() / "left.txt"));
  EXPECT_FALSE(*tree_->Attach());  // once per handle

  // Work in progress of a live user stays when another one attaches.
  ASSERT_TRUE(tree_->WriteFile("wip.txt", "half done\n").ok());
  auto second = open_tree();
  EXPECT_FALSE(*second->Attach());
  EXPECT_TRUE(fs::exists(tree_->root() / "wip.txt"));

  // The first user goes (its lock with it, as when a process dies): the
  // second is still there, so a third does not reset either...
  tree_.reset();
  auto third = open_tree();
  EXPECT_FALSE(*third->Attach());
  EXPECT_TRUE(fs::exists(third->root() / "wip.txt"));
  // ...until nobody else uses the tree.
  second.reset();
  third.reset();
  auto fourth = open_tree();
  EXPECT_TRUE(*fourth->Attach());
  EXPECT_FALSE(fs::exists(fourth->root() / "wip.txt"));
}

// Git on one tree from another process waits for the one running: each
// operation holds an exclusive flock on <root>/.af/locks/<feature>.git.
TEST_F(WorkspaceTest, GitOperationsWaitForAnotherProcessesLock) {
  const fs::path lock_file = root_ / ".af" / "locks" / "feat-1.git";
  ASSERT_TRUE(fs::exists(lock_file));
  int fd = ::open(lock_file.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);  // "another process" is committing
  std::atomic<bool> done{false};
  std::thread t([&] {
    (void)tree_->HeadSha();
    done = true;
  });
  EXPECT_FALSE(testing::WaitFor([&] { return done.load(); }, std::chrono::milliseconds(300)));
  ::close(fd);  // released
  EXPECT_TRUE(testing::WaitFor([&] { return done.load(); }));
  t.join();
}

TEST_F(WorkspaceTest, DiffPatchAndChangedFiles) {
  ASSERT_TRUE(tree_->WriteFile("lib.py", "def f():\n    return 41\n").ok());
  ASSERT_TRUE(tree_->CommitTask("t1", "Add lib", {"lib.py"}).ok());
  ASSERT_TRUE(tree_->EditFile("lib.py", "return 41", "return 42").ok());
  ASSERT_TRUE(tree_->WriteFile("new_untracked.txt", "fresh\n").ok());

  auto diff = tree_->Diff();
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  EXPECT_NE(diff->find("+    return 42"), std::string::npos) << *diff;  // uncommitted
  EXPECT_NE(diff->find("+def f():"), std::string::npos);                // committed
  EXPECT_NE(diff->find("new_untracked.txt"), std::string::npos);        // untracked
  // Diff does not change the real index.
  EXPECT_NE(Git(tree_->root(), {"status", "--porcelain"}).find("?? new_untracked.txt"),
            std::string::npos);

  auto changed = tree_->ChangedFiles();
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(*changed, (std::vector<std::string>{"lib.py", "new_untracked.txt"}));

  const fs::path out = tmp_.path() / "artifacts" / "feat-1.patch";
  auto patch = tree_->WritePatch(out);
  ASSERT_TRUE(patch.ok()) << patch.status().ToString();
  EXPECT_NE(patch->find("Subject: [PATCH] Add lib"), std::string::npos) << *patch;
  EXPECT_NE(patch->find("+    return 41"), std::string::npos);
  EXPECT_EQ(testing::ReadFile(out), *patch);
  // The patch applies to main.
  TempDir clone;
  auto r = RunCommand(
      {"/usr/bin/git", "clone", "-q", "-b", "main", root_.string(), (clone.path() / "c").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCommand({"/usr/bin/git", "-C", (clone.path() / "c").string(), "apply", out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadFile(clone.path() / "c" / "lib.py"), "def f():\n    return 41\n");
}

TEST_F(WorkspaceTest, FeaturesRunInParallelOnSeparateBranches) {
  auto other = ws_->OpenFeature("feat-2");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  FeatureTree* a = tree_.get();
  FeatureTree* b = other->get();
  std::vector<std::string> errors(2);
  auto work = [](FeatureTree* t, const std::string& tag, std::string* error) {
    for (int i = 0; i < 5; ++i) {
      std::string file = tag + "_" + std::to_string(i) + ".txt";
      Status s = t->WriteFile(file, tag + "\n");
      auto sha = s.ok() ? t->CommitTask(tag + "-" + std::to_string(i), "add " + file, {file})
                        : Result<std::string>(s);
      if (!sha.ok()) *error = sha.status().ToString();
    }
  };
  std::thread ta(work, a, "a", &errors[0]);
  std::thread tb(work, b, "b", &errors[1]);
  // Several tasks of one feature in parallel on the same tree, too.
  std::thread tc(work, a, "c", &errors[0]);
  ta.join();
  tb.join();
  tc.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(Git(root_, {"rev-list", "--count", "main..af/feat-1"}), "10");
  EXPECT_EQ(Git(root_, {"rev-list", "--count", "main..af/feat-2"}), "5");
  EXPECT_FALSE(fs::exists(a->root() / "b_0.txt"));
  EXPECT_FALSE(fs::exists(b->root() / "a_0.txt"));
  EXPECT_EQ(Git(root_, {"rev-list", "--count", "main"}), "1");
}

// Task commits are made in-process (libgit2); they must be what `git commit
// --only --cleanup=whitespace -- <paths>` after `git add -A -- <paths>` made.
TEST_F(WorkspaceTest, TaskCommitsMatchTheGitCliOnes) {
  // Directories are committed recursively, deletions under them too.
  ASSERT_TRUE(tree_->WriteFile("pkg/a.py", "a\n").ok());
  ASSERT_TRUE(tree_->WriteFile("pkg/sub/b.py", "b\n").ok());
  ASSERT_TRUE(tree_->WriteFile("pkg-other.py", "not named\n").ok());
  auto sha = tree_->CommitTask("d1", "  Add pkg  \n\n\n\nwith two files   \n\n", {"pkg"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  EXPECT_EQ(Git(tree_->root(), {"show", "--name-only", "--format=", *sha}),
            "pkg/a.py\npkg/sub/b.py");
  // --cleanup=whitespace: trailing spaces and repeated blank lines go,
  // leading spaces stay; the trailer is the last paragraph.
  EXPECT_EQ(Git(tree_->root(), {"log", "-1", "--format=%B"}),
            "  Add pkg\n\nwith two files\n\nTask-Id: d1");  // (Git trims the end)
  EXPECT_EQ(Git(tree_->root(), {"log", "-1", "--format=%an <%ae>|%cn <%ce>"}),
            "Agent Factory <agent-factory@localhost>|Agent Factory <agent-factory@localhost>");
  EXPECT_EQ(Git(tree_->root(), {"rev-parse", "HEAD^"}), Git(root_, {"rev-parse", "main"}));
  EXPECT_EQ(Git(tree_->root(), {"rev-parse", "af/feat-1"}), *sha);
  // The index holds the commit; the unnamed file stays untracked.
  EXPECT_EQ(Git(tree_->root(), {"status", "--porcelain"}), "?? pkg-other.py");
  fs::remove(tree_->root() / "pkg" / "sub" / "b.py");
  auto del = tree_->CommitTask("d2", "drop b", {"pkg"});
  ASSERT_TRUE(del.ok()) << del.status().ToString();
  EXPECT_EQ(Git(tree_->root(), {"ls-tree", "-r", "--name-only", "HEAD", "pkg"}), "pkg/a.py");

  // Paths are literal: '[1]' is not a glob matching "x1.txt".
  ASSERT_TRUE(tree_->WriteFile("x[1].txt", "literal\n").ok());
  ASSERT_TRUE(tree_->WriteFile("x1.txt", "glob match\n").ok());
  auto lit = tree_->CommitTask("d3", "literal", {"x[1].txt"});
  ASSERT_TRUE(lit.ok()) << lit.status().ToString();
  EXPECT_EQ(Git(tree_->root(), {"show", "--name-only", "--format=", *lit}), "x[1].txt");

  // Staged changes of other paths stay staged and out of the commit.
  ASSERT_TRUE(tree_->WriteFile("staged.txt", "s\n").ok());
  Git(tree_->root(), {"add", "staged.txt"});
  ASSERT_TRUE(tree_->WriteFile("mine.txt", "m\n").ok());
  auto only = tree_->CommitTask("d4", "mine", {"mine.txt"});
  ASSERT_TRUE(only.ok()) << only.status().ToString();
  EXPECT_EQ(Git(tree_->root(), {"show", "--name-only", "--format=", *only}), "mine.txt");
  EXPECT_EQ(Git(tree_->root(), {"diff", "--cached", "--name-only"}), "staged.txt");

  // An ignored file is refused, as `git add` refuses it.
  ASSERT_TRUE(tree_->WriteFile(".gitignore", "*.log\n").ok());
  ASSERT_TRUE(tree_->CommitTask("d5", "ignore logs", {".gitignore"}).ok());
  ASSERT_TRUE(tree_->WriteFile("debug.log", "x\n").ok());
  auto ignored = tree_->CommitTask("d6", "log", {"debug.log"});
  EXPECT_FALSE(ignored.ok());
  // git fsck finds nothing wrong with what was written.
  auto fsck = RunCommand({"/usr/bin/git", "-C", root_.string(), "fsck", "--no-progress"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

// A filter driver that runs a program (Git LFS's clean, here `tr`) is run by
// the git CLI only: commits and diffs then go through it.
TEST_F(WorkspaceTest, FilterDriversAreRunByTheGitCli) {
  Git(root_, {"config", "filter.upper.clean", "tr a-z A-Z"});
  Git(root_, {"config", "filter.upper.smudge", "cat"});
  ASSERT_TRUE(tree_->WriteFile(".gitattributes", "*.up filter=upper\n").ok());
  ASSERT_TRUE(tree_->WriteFile("note.up", "shout\n").ok());
  auto sha = tree_->CommitTask("u1", "upper", {".gitattributes", "note.up"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  EXPECT_EQ(Git(tree_->root(), {"show", "HEAD:note.up"}), "SHOUT");
  EXPECT_EQ(Git(tree_->root(), {"log", "-1", "--format=%(trailers:key=Task-Id,valueonly)"}), "u1");
  EXPECT_EQ(*tree_->FindTaskCommit("u1"), *sha);
}

// A diff driver's textconv program is run by the git CLI only: the
// committed diff then comes from it.
TEST_F(WorkspaceTest, TextconvDriversAreRunByTheGitCli) {
  Git(root_, {"config", "diff.upper.textconv", "tr a-z A-Z <"});
  ASSERT_TRUE(tree_->WriteFile(".gitattributes", "*.up diff=upper\n").ok());
  ASSERT_TRUE(tree_->WriteFile("note.up", "quiet\n").ok());
  ASSERT_TRUE(tree_->CommitTask("c1", "upper", {".gitattributes", "note.up"}).ok());
  auto diff = tree_->CommittedDiff();
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  EXPECT_NE(diff->find("+QUIET"), std::string::npos) << *diff;
}

// Every task commit and diff looks for filter drivers in the configuration.
// Doing so with libgit2 1.5's glob iterator leaked ~20 KB (the PCRE2 match
// data) per configuration entry it did not match, hundreds of MB over 500
// features in one server. The heap must not grow with the number of looks.
TEST_F(WorkspaceTest, LookingForFilterDriversDoesNotGrowTheHeap) {
  ASSERT_TRUE(tree_->WriteFile("a.txt", "a\n").ok());
  auto in_use = [] {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;  // all arenas, plus mmap'ed blocks
  };
  ASSERT_TRUE(tree_->UncommittedDiff({"a.txt"}, 4096).ok());  // one-time caches
  const size_t before = in_use();
  constexpr int kLooks = 200;
  for (int i = 0; i < kLooks; ++i) {
    auto diff = tree_->UncommittedDiff({"a.txt"}, 4096);
    ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  }
  const size_t after = in_use();
  // The leak was >= 4 entries x 20 KB a look (16 MB here); allow 2 MB of noise.
  EXPECT_LT(after, before + 2 * 1024 * 1024)
      << "heap grew by " << (after - before) / 1024 << " KB over " << kLooks << " diffs";
}

namespace {
// A diff or mailbox without the data lines of binary patches (after
// "literal N" up to the next file), which zlib compresses differently.
std::string WithoutBinaryData(const std::string& text) {
  std::string out;
  bool data = false;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("literal ", 0) == 0) data = true;
    if (line.rfind("diff --git ", 0) == 0 || line.rfind("From ", 0) == 0) data = false;
    if (!data) out += line + "\n";
  }
  return out;
}

std::string FormatPatch(const fs::path& top) {
  auto cli = RunCommand({"/usr/bin/git", "-C", top.string(), "-c", "core.quotepath=false",
                         "format-patch", "--stdout", "--no-signature", "--binary", "main..HEAD"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  return cli.out;
}

// Commits everything in `top` with git, as `author` on `date` (a user's own
// commit on the feature branch, or a message CommitTask would not write).
void GitCommitAll(const fs::path& top, const std::string& message, const std::string& date,
                  const std::string& author = "Ada Lovelace") {
  auto add = RunCommand({"/usr/bin/git", "-C", top.string(), "add", "-A"});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  auto r = RunCommand({"/usr/bin/git", "-C", top.string(), "commit", "-q", "--allow-empty",
                       "--cleanup=verbatim", "-m", message},
                      {{"GIT_AUTHOR_NAME", author},
                       {"GIT_AUTHOR_EMAIL", "ada@example.org"},
                       {"GIT_AUTHOR_DATE", date},
                       {"GIT_COMMITTER_NAME", "c"},
                       {"GIT_COMMITTER_EMAIL", "c@c"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
}
}  // namespace

// The committed diff the reviewer reads is printed in-process. It is the
// text `git diff --binary` prints for edits (hunk headers naming the
// function, the indent heuristic), new, deleted, renamed and executable
// files and lines without a final newline. A binary file's patch is
// compressed differently (zlib's settings) but applies all the same.
TEST_F(WorkspaceTest, CommittedDiffIsWhatGitPrints) {
  auto write = [&](const fs::path& dir, const std::string& rel, const std::string& text) {
    fs::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel, std::ios::binary) << text;
  };
  std::string code = "#include <stdio.h>\n\nint first(void) {\n  return 1;\n}\n\n";
  code += "int second(int x) {\n";
  for (int i = 0; i < 12; ++i) code += "  x += " + std::to_string(i) + ";\n";
  code += "  return x;\n}\n";
  std::string moved;
  for (int i = 0; i < 20; ++i) moved += "line " + std::to_string(i) + " of a file that moves\n";
  write(root_, "src/code.c", code);
  write(root_, "old/name.txt", moved);
  write(root_, "run.sh", "#!/bin/sh\necho hi\n");
  write(root_, "nonl.txt", "no newline at the end");
  write(root_, "gone.txt", "deleted by the feature\n");
  Git(root_, {"add", "-A"});
  Git(root_, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base"});
  auto opened = ws_->OpenFeature("diffs");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  FeatureTree& tree = **opened;
  const fs::path top = tree.root();

  code.replace(code.find("  x += 6;\n"), 10, "  x *= 6;\n  x -= 1;\n");
  write(top, "src/code.c", code);
  fs::create_directories(top / "new");
  fs::rename(top / "old" / "name.txt", top / "new" / "name.txt");
  write(top, "new/name.txt", moved + "one more line\n");
  fs::permissions(top / "run.sh", fs::perms::owner_all);
  write(top, "nonl.txt", "still no newline, changed");
  fs::remove(top / "gone.txt");
  write(top, "added.txt", "a new file\n");
  write(top, "empty.txt", "");
  write(top, "blob.bin", std::string("\0\1\2\3binary\xff\xfe", 12));
  auto sha = tree.CommitTask("d1", "changes",
                             {"src/code.c", "old", "new", "run.sh", "nonl.txt", "gone.txt",
                              "added.txt", "empty.txt", "blob.bin"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();

  auto ours = tree.CommittedDiff();
  ASSERT_TRUE(ours.ok()) << ours.status().ToString();
  const std::string base = Git(top, {"merge-base", "main", "HEAD"});
  auto cli = RunCommand({"/usr/bin/git", "-C", top.string(), "-c", "core.quotepath=false", "diff",
                         "--no-ext-diff", "--binary", base, "HEAD"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(WithoutBinaryData(*ours), WithoutBinaryData(cli.out));
  for (const char* part :
       {"@@ int second(int x)", "rename from old/name.txt", "new mode 100755",
        "\\ No newline at end of file", "deleted file mode", "GIT binary patch"}) {
    EXPECT_NE(ours->find(part), std::string::npos) << part;
  }
  // The whole of it, binary patch included, undoes the feature's commit.
  const fs::path patch = tmp_.path() / "ours.patch";
  std::ofstream(patch, std::ios::binary) << *ours;
  auto applies = RunCommand(
      {"/usr/bin/git", "-C", top.string(), "apply", "--check", "--reverse", patch.string()});
  EXPECT_EQ(applies.exit_code, 0) << applies.err;
}

// The delivered patch is printed in-process: the text `git format-patch`
// prints (binary data lines aside) for several commits with numbered,
// folded subjects, bodies, dates in other time zones, and diffstats that
// scale their graphs, cut long names and count binary files. `git am` of it
// on the base branch gives the branch's tree.
TEST_F(WorkspaceTest, DeliveredPatchIsWhatFormatPatchPrints) {
  auto write = [&](const std::string& rel, const std::string& text) {
    ASSERT_TRUE(tree_->WriteFile(rel, text).ok()) << rel;
  };
  std::string code = "int first(void) {\n  return 1;\n}\n\nint second(int x) {\n";
  for (int i = 0; i < 12; ++i) code += "  x += " + std::to_string(i) + ";\n";
  code += "  return x;\n}\n";
  write("src/code.c", code);
  write("gone.txt", "deleted later\n");
  write("run.sh", "#!/bin/sh\necho hi\n");
  write("old.bin", std::string("\0\1\2old", 6));
  write("was-empty.txt", "");
  ASSERT_TRUE(tree_
                  ->CommitTask("p0", "Base files",
                               {"src/code.c", "gone.txt", "run.sh", "old.bin", "was-empty.txt"})
                  .ok());

  code.replace(code.find("  x += 6;\n"), 10, "  x *= 6;\n  x -= 1;\n");
  write("src/code.c", code);
  std::string many;
  for (int i = 0; i < 200; ++i) many += "line " + std::to_string(i) + "\n";
  write("docs/many.txt", many);
  write("a/deeply/nested/directory/with/a-file-name-long-enough-to-be-cut-short.txt", "x\n");
  write("nonl.txt", "no newline at the end");
  write("empty.txt", "");
  write("new.bin", std::string("\0\1\2\3binary\xff\xfe", 12));
  fs::remove(tree_->root() / "gone.txt");
  fs::permissions(tree_->root() / "run.sh", fs::perms::owner_all);
  ASSERT_TRUE(tree_
                  ->CommitTask("p1",
                               "Scale the graph of a long diffstat, cut a long name short and "
                               "fold this subject line where git folds it",
                               {"src/code.c", "docs", "a", "nonl.txt", "empty.txt", "new.bin",
                                "gone.txt", "run.sh"})
                  .ok());

  write("old.bin", std::string("\0\1\2new and longer", 16));
  write("nonl.txt", "still none, changed");
  fs::remove(tree_->root() / "was-empty.txt");
  GitCommitAll(tree_->root(), "Edit by hand\n\nA body of two\nlines.\n",
               "2026-12-01T08:05:09-0130");
  write("src/code.c", "int first(void) {\n  return 2;\n}\n");
  GitCommitAll(tree_->root(), "Short\n", "1999-01-09T23:59:59+0545");

  const fs::path out = tmp_.path() / "changes.patch";
  auto ours = tree_->WritePatch(out);
  ASSERT_TRUE(ours.ok()) << ours.status().ToString();
  const std::string cli = FormatPatch(tree_->root());
  EXPECT_EQ(WithoutBinaryData(*ours), WithoutBinaryData(cli));
  // Printed in-process, not by git, even with settings for difftool and
  // colours (which do not change the patch).
  Git(tree_->root(), {"config", "diff.tool", "vimdiff"});
  Git(tree_->root(), {"config", "diff.colorMoved", "zebra"});
  EXPECT_EQ(FormatPatch(tree_->root()), cli);
  auto repo = workspace_internal::GitRepo::Open(tree_->root());
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto in_process = repo->MailboxText("main", "HEAD");
  ASSERT_TRUE(in_process.ok()) << in_process.status().ToString();
  ASSERT_TRUE(in_process->has_value());
  EXPECT_EQ(**in_process, *ours);
  for (const char* part :
       {"Subject: [PATCH 2/4] Scale the graph", "short\n and fold this subject",
        "Date: Tue, 1 Dec 2026 08:05:09 -0130", "+0545", " ...", "Bin 6 -> 16 bytes", "| 200 +++",
        " mode change 100644 => 100755 run.sh", " delete mode 100644 gone.txt", "Task-Id: p1",
        "A body of two\nlines.\n---"}) {
    EXPECT_NE(ours->find(part), std::string::npos) << part << " in\n" << *ours;
  }

  TempDir clone;
  const std::string c = (clone.path() / "c").string();
  auto r = RunCommand({"/usr/bin/git", "clone", "-q", "-b", "main", root_.string(), c});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCommand({"/usr/bin/git", "-C", c, "am", "-q", out.string()},
                 {{"GIT_COMMITTER_NAME", "c"}, {"GIT_COMMITTER_EMAIL", "c@c"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Git(c, {"rev-parse", "HEAD^{tree}"}), Git(tree_->root(), {"rev-parse", "HEAD^{tree}"}));
  EXPECT_EQ(Git(c, {"log", "--format=%an|%ad|%s", "--date=raw", "-4"}),
            Git(tree_->root(), {"log", "--format=%an|%ad|%s", "--date=raw", "-4"}));
}

// What the in-process mailbox does not reproduce is left to git, whose text
// is delivered unchanged: a rename, a subject outside ASCII, a name git
// quotes, an empty commit, a user's format.* setting.
TEST_F(WorkspaceTest, DeliveredPatchFallsBackToGitWhereItWouldDiffer) {
  std::string moved;
  for (int i = 0; i < 20; ++i) moved += "line " + std::to_string(i) + " of a file that moves\n";
  ASSERT_TRUE(tree_->WriteFile("old.txt", moved).ok());
  ASSERT_TRUE(tree_->CommitTask("f0", "base", {"old.txt"}).ok());
  const fs::path out = tmp_.path() / "changes.patch";
  auto check = [&](const char* what) {
    auto repo = workspace_internal::GitRepo::Open(tree_->root());
    ASSERT_TRUE(repo.ok()) << repo.status().ToString();
    auto in_process = repo->MailboxText("main", "HEAD");
    ASSERT_TRUE(in_process.ok()) << what << ": " << in_process.status().ToString();
    EXPECT_FALSE(in_process->has_value()) << what;
    auto ours = tree_->WritePatch(out);
    ASSERT_TRUE(ours.ok()) << what << ": " << ours.status().ToString();
    EXPECT_EQ(*ours, FormatPatch(tree_->root())) << what;
  };
  fs::rename(tree_->root() / "old.txt", tree_->root() / "new.txt");
  ASSERT_TRUE(tree_->CommitTask("f1", "rename", {"old.txt", "new.txt"}).ok());
  check("a rename");
  ASSERT_TRUE(tree_->WriteFile("x.txt", "x\n").ok());
  GitCommitAll(tree_->root(), "Caf\xc3\xa9 au lait\n", "2026-11-30T10:00:00+0000");
  check("a subject outside ASCII");
  ASSERT_TRUE(tree_->WriteFile("y.txt", "y\n").ok());
  GitCommitAll(tree_->root(), "plain\n", "2026-11-30T10:00:00+0000", "A. Lovelace");
  check("an author name git quotes");
  GitCommitAll(tree_->root(), "nothing\n", "2026-11-30T10:00:00+0000");
  check("an empty commit");
  ASSERT_TRUE(tree_->WriteFile("empty-a.txt", "").ok());
  GitCommitAll(tree_->root(), "empty a\n", "2026-11-30T10:00:00+0000");
  fs::rename(tree_->root() / "empty-a.txt", tree_->root() / "empty-b.txt");
  GitCommitAll(tree_->root(), "an empty file goes, another comes\n", "2026-11-30T10:00:00+0000");
  check("an empty file deleted and another added (libgit2 sees a rename, git does not)");
  // git signs off as the committer it runs as: Agent Factory.
  Git(tree_->root(), {"config", "format.signOff", "true"});
  ASSERT_TRUE(workspace_internal::GitRepo::Open(tree_->root())->MailboxText("main", "HEAD").ok());
  EXPECT_FALSE(
      workspace_internal::GitRepo::Open(tree_->root())->MailboxText("main", "HEAD")->has_value());
  auto signed_off = tree_->WritePatch(out);
  ASSERT_TRUE(signed_off.ok()) << signed_off.status().ToString();
  EXPECT_NE(signed_off->find("\nSigned-off-by: Agent Factory <agent-factory@localhost>\n---\n"),
            std::string::npos)
      << *signed_off;
}

// A path libgit2 would spell otherwise than git (core.quotepath=false)
// does, with an accent or a space, keeps the committed diff on the git CLI.
TEST_F(WorkspaceTest, CommittedDiffOfPathsWithAccentsOrSpacesIsGits) {
  const std::string name = "caf\xc3\xa9 menu.txt";
  ASSERT_TRUE(tree_->WriteFile(name, "a name with a space and an accent\n").ok());
  ASSERT_TRUE(tree_->CommitTask("n1", "menu", {name}).ok());
  auto ours = tree_->CommittedDiff();
  ASSERT_TRUE(ours.ok()) << ours.status().ToString();
  const std::string base = Git(tree_->root(), {"merge-base", "main", "HEAD"});
  auto cli = RunCommand({"/usr/bin/git", "-C", tree_->root().string(), "-c", "core.quotepath=false",
                         "diff", "--no-ext-diff", "--binary", base, "HEAD"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(*ours, cli.out);
  EXPECT_NE(ours->find("+++ b/" + name), std::string::npos) << *ours;
}

// A tree keeps its repository open between operations. What one operation
// leaves in it (a temporary index, an index staged in memory) must not leak
// into the next, and what git processes change meanwhile must be seen.
TEST_F(WorkspaceTest, OperationsStartFromTheRepositoryOnDisk) {
  ASSERT_TRUE(tree_->WriteFile("a.txt", "one\n").ok());
  ASSERT_TRUE(tree_->WriteFile("b.txt", "two\n").ok());
  // Both stage the work tree into an index that is not the real one.
  ASSERT_TRUE(tree_->UncommittedDiff({"a.txt", "b.txt"}, 1 << 20).ok());
  ASSERT_TRUE(tree_->WorkTreeId().ok());
  ASSERT_TRUE(tree_->CommitTask("o1", "only a", {"a.txt"}).ok());
  // The real index has a.txt as committed and b.txt still unstaged.
  EXPECT_EQ(Git(tree_->root(), {"status", "--porcelain"}), "?? b.txt");
  EXPECT_EQ(Git(tree_->root(), {"show", "--name-only", "--format=", "HEAD"}), "a.txt");

  // A commit made by git itself, then this handle's view of it.
  ASSERT_TRUE(tree_->WriteFile("c.txt", "three\n").ok());
  Git(tree_->root(), {"add", "c.txt"});
  Git(tree_->root(), {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "by git"});
  auto head = tree_->HeadSha();
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(*head, Git(tree_->root(), {"rev-parse", "HEAD"}));
  auto changed = tree_->HasUncommittedChange({"c.txt"});
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_FALSE(*changed);
  ASSERT_TRUE(tree_->CommitTask("o2", "b too", {"b.txt"}).ok());
  EXPECT_EQ(Git(tree_->root(), {"status", "--porcelain"}), "");
  EXPECT_EQ(Git(tree_->root(), {"log", "--format=%s", "-3"}), "b too\nby git\nonly a");
}

// Whether a task changed anything is found in-process; it agrees with the
// diff git prints for the same paths, case by case.
TEST_F(WorkspaceTest, HasUncommittedChangeAgreesWithTheDiff) {
  ASSERT_TRUE(tree_->WriteFile(".gitignore", "*.log\n").ok());
  ASSERT_TRUE(tree_->WriteFile("kept.txt", "one\n").ok());
  ASSERT_TRUE(tree_->CommitTask("h0", "base", {".gitignore", "kept.txt"}).ok());
  auto check = [&](const std::vector<std::string>& paths, bool expected, const char* what) {
    auto has = tree_->HasUncommittedChange(paths);
    ASSERT_TRUE(has.ok()) << what << ": " << has.status().ToString();
    auto diff = tree_->UncommittedDiff(paths, 1 << 20);
    ASSERT_TRUE(diff.ok()) << what << ": " << diff.status().ToString();
    EXPECT_EQ(*has, expected) << what;
    EXPECT_EQ(*has, !diff->empty()) << what << ": the diff says\n" << *diff;
  };
  check({"kept.txt"}, false, "nothing changed");
  check({"missing.txt"}, false, "a path that never existed");
  ASSERT_TRUE(tree_->WriteFile("kept.txt", "two\n").ok());
  check({"kept.txt"}, true, "an edit");
  check({"README.md"}, false, "another path than the edited one");
  ASSERT_TRUE(tree_->WriteFile("kept.txt", "one\n").ok());
  check({"kept.txt"}, false, "an edit undone");
  ASSERT_TRUE(tree_->WriteFile("dir/new.txt", "x\n").ok());
  check({"dir"}, true, "a new file in a new directory, named by the directory");
  check({"dir/new.txt"}, true, "a new file");
  ASSERT_TRUE(tree_->WriteFile("run.log", "noise\n").ok());
  check({"run.log"}, false, "an ignored file");
  ASSERT_TRUE(tree_->WriteFile("__pycache__/m.cpython-311.pyc", "bytes").ok());
  check({"__pycache__"}, false, "a cache");
  fs::remove(tree_->root() / "kept.txt");
  check({"kept.txt"}, true, "a deletion");
}

// libgit2 streams each staged file to a temporary file in the object
// directory and deletes it when the object is stored already. Staging,
// diffing and hashing a change already stored creates no file there (each
// deleted file makes later file creations slower on ext4 without a
// journal); a new object is still written whole.
TEST_F(WorkspaceTest, StagingContentAlreadyStoredCreatesNoObjectFile) {
  ASSERT_TRUE(tree_->WriteFile("a.txt", "same\n").ok());
  auto first = tree_->WorkTreeId();  // stores the blob and the tree
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const fs::path objects = root_ / ".git" / "objects";
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_GE(inotify_add_watch(fd, objects.c_str(), IN_CREATE), 0);
  auto again = tree_->WorkTreeId();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *first);
  ASSERT_TRUE(tree_->UncommittedDiff({"a.txt"}, 4096).ok());
  std::string created;
  alignas(inotify_event) char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) {
    for (char* p = buf; p < buf + n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      if (ev->len > 0) created += std::string(ev->name) + " ";
      p += sizeof(inotify_event) + ev->len;
    }
  }
  close(fd);
  EXPECT_EQ(created, "") << "created in " << objects;

  ASSERT_TRUE(tree_->WriteFile("b.txt", "new\n").ok());
  auto sha = tree_->CommitTask("o1", "b", {"b.txt"});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  EXPECT_EQ(Git(tree_->root(), {"show", "HEAD:b.txt"}), "new");
  auto fsck = RunCommand({"/usr/bin/git", "-C", root_.string(), "fsck", "--no-progress"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

// What the gates saw, by tree: the work tree's id before the commit is
// HEAD's tree after committing exactly that work.
TEST_F(WorkspaceTest, WorkTreeIdIsTheTreeTheWorkCommitsTo) {
  auto head_tree = tree_->HeadTreeId();
  ASSERT_TRUE(head_tree.ok()) << head_tree.status().ToString();
  EXPECT_EQ(*head_tree, Git(tree_->root(), {"rev-parse", "HEAD^{tree}"}));
  EXPECT_EQ(*tree_->WorkTreeId(), *head_tree);  // nothing changed

  ASSERT_TRUE(tree_->WriteFile("app.py", "print(1)\n").ok());
  ASSERT_TRUE(tree_->WriteFile("__pycache__/app.cpython-311.pyc", "bytes").ok());
  ASSERT_TRUE(tree_->WriteFile("build/out.o", "obj").ok());
  fs::remove(tree_->root() / "README.md");
  auto work = tree_->WorkTreeId();
  ASSERT_TRUE(work.ok()) << work.status().ToString();
  EXPECT_NE(*work, *head_tree);
  // Neither the index nor the branch moved.
  EXPECT_EQ(Git(tree_->root(), {"diff", "--cached", "--name-only"}), "");
  EXPECT_EQ(*tree_->HeadTreeId(), *head_tree);

  ASSERT_TRUE(tree_->CommitTask("w1", "app", {"app.py", "README.md"}).ok());
  EXPECT_EQ(*tree_->HeadTreeId(), *work);
  EXPECT_EQ(*tree_->WorkTreeId(), *work);  // build outputs and caches left out
  ASSERT_TRUE(tree_->WriteFile("app.py", "print(2)\n").ok());
  EXPECT_NE(*tree_->WorkTreeId(), *work);
}

// A reset with nothing to reset is done in-process; it still leaves the tree
// as `git reset --hard && git clean -fdx` would (empty directories go).
TEST_F(WorkspaceTest, ResetOfAPristineTreeRemovesEmptyDirectories) {
  fs::create_directories(tree_->root() / "empty" / "deeper");
  ASSERT_TRUE(tree_->WriteFile("kept/file.txt", "k\n").ok());
  ASSERT_TRUE(tree_->CommitTask("e1", "kept", {"kept/file.txt"}).ok());
  fs::create_directories(tree_->root() / "kept" / "empty");
  ASSERT_TRUE(tree_->ResetToLastCommit().ok());
  EXPECT_FALSE(fs::exists(tree_->root() / "empty"));
  EXPECT_FALSE(fs::exists(tree_->root() / "kept" / "empty"));
  EXPECT_TRUE(fs::exists(tree_->root() / "kept" / "file.txt"));
  EXPECT_TRUE(fs::exists(tree_->root() / ".git"));
  EXPECT_EQ(Git(tree_->root(), {"status", "--porcelain", "--ignored"}), "");
}

// A worktree whose directory vanished (a crash, a user's rm -rf) is made
// again; removing one leaves no registration behind.
TEST_F(WorkspaceTest, VanishedWorktreeIsRecreatedAndRemovalLeavesNoRegistration) {
  ASSERT_TRUE(tree_->WriteFile("a.txt", "a\n").ok());
  auto sha = tree_->CommitTask("v1", "a", {"a.txt"});
  ASSERT_TRUE(sha.ok());
  const fs::path path = tree_->root();
  tree_.reset();
  fs::remove_all(path);
  auto again = ws_->OpenFeature("feat-1");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*(*again)->HeadSha(), *sha);
  EXPECT_EQ(*(*again)->ReadFile("a.txt"), "a\n");
  auto list = Git(root_, {"worktree", "list", "--porcelain"});
  EXPECT_EQ(list.find("prunable"), std::string::npos) << list;
  again->reset();
  ASSERT_TRUE(ws_->RemoveFeatureTree("feat-1").ok());
  EXPECT_EQ(Git(root_, {"worktree", "list", "--porcelain"}).find("feat-1"), std::string::npos);
  EXPECT_FALSE(fs::exists(root_ / ".git" / "worktrees" / "feat-1"));
  EXPECT_TRUE(*ws_->BranchExists("af/feat-1"));
}

// A process killed while it checked a feature's tree out leaves the
// registration and some files but no `.git` file (written last): that is no
// worktree, so it is made again from scratch, not used half made. A
// registration whose files are gone (a crash while a tree was removed) is
// pruned when the project is opened, as `git worktree prune` would.
TEST_F(WorkspaceTest, HalfMadeWorktreeIsMadeAgainAndStaleRegistrationsArePruned) {
  const fs::path path = tree_->root();
  tree_.reset();
  fs::remove(path / ".git");  // as if killed before the last step of the add
  std::ofstream(path / "half.txt") << "left by the cut checkout\n";
  auto again = ws_->OpenFeature("feat-1");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(fs::exists(path / "half.txt"));
  EXPECT_EQ(Git(path, {"status", "--porcelain", "--ignored"}), "");
  EXPECT_EQ(Git(path, {"symbolic-ref", "HEAD"}), "refs/heads/af/feat-1");
  again->reset();

  auto other = ws_->OpenFeature("feat-2");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  const fs::path other_path = (*other)->root();
  other->reset();
  fs::remove_all(other_path);  // killed between removing the files and the registration
  EXPECT_NE(Git(root_, {"worktree", "list", "--porcelain"}).find("prunable"), std::string::npos);
  auto reopened = Workspace::Open(root_);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  const std::string list = Git(root_, {"worktree", "list", "--porcelain"});
  EXPECT_EQ(list.find("prunable"), std::string::npos) << list;
  EXPECT_EQ(list.find("feat-2"), std::string::npos) << list;
  EXPECT_NE(list.find("feat-1"), std::string::npos) << list;
}

// A feature's worktree is made in-process (libgit2), and what it leaves is
// what `git worktree add` leaves: git lists it the same way, its files and
// index match, its status is clean, fsck is happy. git is reached through a
// logging wrapper on PATH, so the test also sees that no git process was
// started for it; with a filter driver that runs a program (Git LFS) the CLI
// is kept.
TEST(WorkspaceWorktreeTest, InProcessWorktreeMatchesTheGitCliOne) {
  TempDir tmp;
  const fs::path bin = tmp.path() / "bin";
  const fs::path log = tmp.path() / "git.log";
  fs::create_directories(bin);
  {
    std::ofstream w(bin / "git");
    w << "#!/bin/sh\necho \"$*\" >> '" << log.string() << "'\nexec /usr/bin/git \"$@\"\n";
  }
  fs::permissions(bin / "git", fs::perms::owner_all);
  const std::string old_path = getenv("PATH") ? getenv("PATH") : "";
  setenv("PATH", (bin.string() + ":" + old_path).c_str(), 1);
  const fs::path root = tmp.path() / "proj";
  auto ws = Workspace::Open(root);
  setenv("PATH", old_path.c_str(), 1);
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();

  // Content worth checking out: nested directories, an executable, a symlink.
  fs::create_directories(root / "src" / "deep");
  std::ofstream(root / "src" / "deep" / "a.txt") << "a\n";
  std::ofstream(root / "run.sh") << "#!/bin/sh\necho hi\n";
  fs::permissions(root / "run.sh", fs::perms::owner_all);
  fs::create_symlink("src/deep/a.txt", root / "link");
  Git(root, {"add", "-A"});
  Git(root, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "content"});

  fs::remove(log);
  auto tree = (*ws)->OpenFeature("lib");
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  EXPECT_FALSE(fs::exists(log)) << "git was started: " << testing::ReadFile(log);
  // The reference: the CLI's worktree of the same commit, beside it.
  const fs::path cli = root / ".af" / "worktrees" / "cli";
  Git(root, {"worktree", "add", "-q", "-b", "af/cli", cli.string(), "main"});
  const fs::path lib = (*tree)->root();
  const fs::path common = fs::canonical(root / ".git");

  // `git worktree list --porcelain`: both entries alike but for the name.
  const std::string list = Git(root, {"worktree", "list", "--porcelain"});
  const std::string head = Git(root, {"rev-parse", "main"});
  for (const std::string name : {"lib", "cli"}) {
    const std::string entry = "worktree " +
                              fs::canonical(root / ".af" / "worktrees" / name).string() +
                              "\nHEAD " + head + "\nbranch refs/heads/af/" + name + "\n";
    EXPECT_NE((list + "\n").find(entry), std::string::npos) << list;
  }
  EXPECT_EQ(list.find("prunable"), std::string::npos) << list;
  EXPECT_EQ(list.find("locked"), std::string::npos) << list;

  for (const std::string name : {"lib", "cli"}) {
    SCOPED_TRACE(name);
    const fs::path wt = fs::canonical(root / ".af" / "worktrees" / name);
    const fs::path admin = common / "worktrees" / name;
    // The files git reads, byte for byte as git writes them.
    EXPECT_EQ(testing::ReadFile(wt / ".git"), "gitdir: " + admin.string() + "\n");
    EXPECT_EQ(testing::ReadFile(admin / "commondir"), "../..\n");
    EXPECT_EQ(testing::ReadFile(admin / "gitdir"), (wt / ".git").string() + "\n");
    EXPECT_EQ(testing::ReadFile(admin / "HEAD"), "ref: refs/heads/af/" + name + "\n");
    EXPECT_EQ(Git(wt, {"rev-parse", "--git-dir"}), admin.string());
    EXPECT_EQ(Git(wt, {"rev-parse", "--git-common-dir"}), common.string());
    EXPECT_EQ(Git(wt, {"symbolic-ref", "HEAD"}), "refs/heads/af/" + name);
    // Clean, nothing untracked or ignored, and the index as the CLI's.
    EXPECT_EQ(Git(wt, {"status", "--porcelain", "--ignored"}), "");
    EXPECT_EQ(Git(wt, {"ls-files", "--stage"}), Git(cli, {"ls-files", "--stage"}));
    EXPECT_EQ(Git(wt, {"reflog", "show", "--format=%gs", "af/" + name}),
              "branch: Created from main");
    EXPECT_EQ(fs::read_symlink(wt / "link"), "src/deep/a.txt");
    EXPECT_NE(fs::status(wt / "run.sh").permissions() & fs::perms::owner_exec, fs::perms::none);
    EXPECT_EQ(testing::ReadFile(wt / "src" / "deep" / "a.txt"), "a\n");
  }
  auto fsck = RunCommand({"/usr/bin/git", "-C", root.string(), "fsck", "--no-progress"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  // The git CLI works on it afterwards: a commit there, then its removal.
  std::ofstream(lib / "b.txt") << "b\n";
  Git(lib, {"add", "b.txt"});
  Git(lib, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "b"});
  EXPECT_EQ(Git(root, {"rev-parse", "af/lib^"}), head);
  tree->reset();
  Git(root, {"worktree", "remove", lib.string()});
  EXPECT_FALSE(fs::exists(common / "worktrees" / "lib"));

  // A filter driver that runs a program: the CLI checks the tree out.
  Git(root, {"config", "filter.upper.clean", "tr a-z A-Z"});
  Git(root, {"config", "filter.upper.smudge", "cat"});
  auto filtered = (*ws)->OpenFeature("filtered");
  ASSERT_TRUE(filtered.ok()) << filtered.status().ToString();
  EXPECT_NE(testing::ReadFile(log).find("worktree add"), std::string::npos);
  EXPECT_EQ(Git((*filtered)->root(), {"status", "--porcelain"}), "");
}

TEST(WorkspaceExistingRepoTest, PreExistingRepositoryIsUsedAsIs) {
  TempDir tmp;
  const fs::path repo = tmp.path() / "user-code";
  fs::create_directories(repo);
  ASSERT_EQ(RunCommand({"/usr/bin/git", "init", "-q", "-b", "trunk", repo.string()}).exit_code, 0);
  std::ofstream(repo / "app.c") << "int main(){return 0;}\n";
  const std::map<std::string, std::string> id = {{"GIT_AUTHOR_NAME", "U"},
                                                 {"GIT_AUTHOR_EMAIL", "u@x"},
                                                 {"GIT_COMMITTER_NAME", "U"},
                                                 {"GIT_COMMITTER_EMAIL", "u@x"}};
  ASSERT_EQ(RunCommand({"/usr/bin/git", "-C", repo.string(), "add", "app.c"}, id).exit_code, 0);
  ASSERT_EQ(RunCommand({"/usr/bin/git", "-C", repo.string(), "-c", "commit.gpgsign=false", "commit",
                        "-q", "-m", "user commit"},
                       id)
                .exit_code,
            0);
  const std::string user_head = Git(repo, {"rev-parse", "HEAD"});

  auto ws = Workspace::Open(repo);
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  EXPECT_EQ((*ws)->base_branch(), "trunk");
  EXPECT_EQ(Git(repo, {"rev-parse", "HEAD"}), user_head);  // no commit added
  EXPECT_FALSE(fs::exists(repo / "README.md"));
  auto tree = (*ws)->OpenFeature("f");
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  EXPECT_EQ(*(*tree)->ReadFile("app.c"), "int main(){return 0;}\n");
  EXPECT_EQ(*(*tree)->HeadSha(), user_head);
  // Only the user's branch and ours exist.
  EXPECT_EQ(Git(repo, {"branch", "--format=%(refname:short)"}), "af/f\ntrunk");
}

TEST(WorkspaceExistingRepoTest, DirectoryInsideAnotherRepositoryGetsItsOwn) {
  TempDir tmp;
  ASSERT_EQ(RunCommand({"/usr/bin/git", "init", "-q", "-b", "main", tmp.path().string()}).exit_code,
            0);
  const fs::path root = tmp.path() / "data" / "workspaces" / "p";
  auto ws = Workspace::Open(root);
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  EXPECT_TRUE(fs::is_directory(root / ".git"));
  EXPECT_EQ(Git(root, {"rev-parse", "--show-toplevel"}), fs::canonical(root).string());
  EXPECT_EQ(Git(root, {"rev-list", "--count", "main"}), "1");
}

}  // namespace
}  // namespace af
