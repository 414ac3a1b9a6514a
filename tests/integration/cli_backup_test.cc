// `agent-factory backup`, `restore` and `reset` as a user runs them: a round
// trip of a data directory with a finished feature, a backup taken while a
// server is in the middle of a feature (restored elsewhere, the feature
// resumes there), every refusal, and no planted secret anywhere on disk.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "af/core/archive.h"
#include "af/store/store.h"
#include "support/fake_llm_server.h"
#include "support/http_client.h"
#include "support/test_util.h"
#include "support/two_task_script.h"

namespace af::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// A data directory of its own, the replay provider, no outside settings.
std::map<std::string, std::string> Env(const fs::path& data_dir) {
  return {{"AF_DATA_DIR", data_dir.string()},
          {"AF_LLM_PROVIDER", "\x01unset"},
          {"ANTHROPIC_API_KEY", "\x01unset"},
          {"OPENAI_API_KEY", "\x01unset"},
          {"DATABASE_URL", "\x01unset"},
          {"REDIS_URL", "\x01unset"},
          {"AF_LOG", "\x01unset"},
          {"AF_PORT", std::to_string(FreePort())},
          {"AF_CONFIG_DIR", "\x01unset"}};
}

CommandResult Af(const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env, const fs::path& cwd) {
  std::vector<std::string> argv = {BinaryPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, env, cwd.string());
}

CommandResult Git(const fs::path& repo, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/git", "-C", repo.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

std::unique_ptr<Store> OpenStore(const fs::path& data_dir) {
  auto store =
      Store::Open({.url = "sqlite:" + (data_dir / "agent-factory.db").string(), .migrate = false});
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

// What a data directory's store holds, comparable across two directories.
struct Contents {
  std::vector<std::string> features;  // "id status"
  int64_t events = 0;
  KbCounts kb;
  bool operator==(const Contents& o) const {
    return features == o.features && events == o.events && kb.documents == o.kb.documents &&
           kb.chunks == o.kb.chunks && kb.memories == o.kb.memories && kb.links == o.kb.links;
  }
};
Contents Read(const fs::path& data_dir) {
  Contents c;
  auto store = OpenStore(data_dir);
  if (!store) return c;
  auto page = store->ListFeatures({});
  EXPECT_TRUE(page.ok());
  for (const auto& f : page->features) c.features.push_back(f.id + " " + f.status);
  EXPECT_TRUE(ForEachEvent(*store, "", [&](const Event&) { ++c.events; }).ok());
  c.kb = *store->CountKnowledge();
  return c;
}

std::string BackupOf(const fs::path& data_dir, const fs::path& cwd) {
  auto r = Af({"backup", "--json"}, Env(data_dir), cwd);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = json::parse(r.out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << r.out;
  return j.is_object() ? j.value("path", "") : "";
}

// Every file below `dir` whose bytes contain `needle`.
std::vector<std::string> FilesContaining(const fs::path& dir, const std::string& needle) {
  std::vector<std::string> hits;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file() && ReadFile(it->path()).find(needle) != std::string::npos)
      hits.push_back(it->path().string());
  }
  return hits;
}

// --- round trip ---------------------------------------------------------------

TEST(CliBackupTest, RoundTripKeepsFeaturesMemoriesKnowledgeAndTheBranch) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  const auto env = Env(data);
  const std::string prp = std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md";
  auto run = Af({"run", prp, "--json"}, env, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const json report = json::parse(run.out);
  const std::string branch = report["branch"];
  dir.Write("docs/pelican.md", "# Pelican\n\nThe pelican release moves to March, says the plan.\n");
  auto populate = Af({"kb", "populate", (dir.path() / "docs").string()}, env, dir.path());
  ASSERT_EQ(populate.exit_code, 0) << populate.err;
  auto remember =
      Af({"memory", "remember", "quokkas prefer the blue build server", "--tags", "infra"}, env,
         dir.path());
  ASSERT_EQ(remember.exit_code, 0) << remember.err;

  // A project's own lock file is kept; a lock left in .git by an
  // interrupted git command is not (it would block git after a restore).
  const fs::path repo_old = data / "workspaces" / report.value("project", "default");
  std::ofstream(repo_old / "Cargo.lock") << "# project lock file\n";
  std::ofstream(repo_old / ".git" / "index.lock") << "";

  auto human = Af({"backup"}, env, dir.path());
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(
      human.out.find("backup written: " + (data / "backups").string() + "/agent-factory-backup-"),
      std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("1 features"), std::string::npos) << human.out;
  fs::remove_all(data / "backups");
  const std::string archive = BackupOf(data, dir.path());
  ASSERT_FALSE(archive.empty());
  EXPECT_EQ(fs::status(archive).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(data / "backups").permissions() & fs::perms::all, fs::perms::owner_all);
  // The manifest describes the archive; logs and the lock are not in it.
  auto manifest = json::parse(*ReadTarGzFile(archive, "manifest.json"));
  EXPECT_EQ(manifest["format_version"], 1);
  EXPECT_GT(manifest["schema_version"].get<int>(), 0);
  EXPECT_EQ(manifest["counts"]["features"], 1);
  EXPECT_GE(manifest["counts"]["memories"].get<int>(), 1);
  EXPECT_GE(manifest["counts"]["chunks"].get<int>(), 1);
  bool project_lock = false;
  std::string names;
  auto entries = ListTarGz(archive);  // kept: a range-for over *temporary would dangle
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  for (const auto& e : *entries) {
    names += e.name + "\n";
    project_lock |= e.name == "workspaces/" + repo_old.filename().string() + "/Cargo.lock";
    EXPECT_EQ(e.name.find(".git/index.lock"), std::string::npos) << e.name;
    EXPECT_NE(e.name.rfind("logs/", 0), 0u) << e.name;
    EXPECT_NE(e.name.rfind("backups", 0), 0u) << e.name;
    EXPECT_NE(e.name, "coordinator.lock");
    EXPECT_NE(e.name, "agent-factory.db-wal");
  }
  EXPECT_TRUE(project_lock) << names;
  fs::remove(repo_old / ".git" / "index.lock");

  const fs::path restored = dir.path() / "elsewhere" / "restored";
  auto r = Af({"restore", archive, "--data-dir", restored.string()}, Env(restored), dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("restored " + archive + " into " + restored.string()), std::string::npos)
      << r.out;
  EXPECT_EQ(fs::status(restored).permissions() & fs::perms::all, fs::perms::owner_all);
  // No staging directory is left beside it.
  int siblings = 0;
  for (const auto& e : fs::directory_iterator(restored.parent_path()))
    siblings += !e.path().empty();
  EXPECT_EQ(siblings, 1);

  const Contents before = Read(data), after = Read(restored);
  EXPECT_TRUE(before == after) << before.events << " vs " << after.events;
  EXPECT_EQ(after.features.size(), 1u);
  for (const std::string mode : {"text", "vector"}) {
    auto q1 = Af({"kb", "query", "pelican release", "--mode", mode, "--json"}, env, dir.path());
    auto q2 =
        Af({"kb", "query", "pelican release", "--mode", mode, "--json"}, Env(restored), dir.path());
    ASSERT_EQ(q2.exit_code, 0) << q2.err;
    EXPECT_EQ(q1.out, q2.out) << mode;
    EXPECT_NE(q2.out.find("pelican"), std::string::npos) << q2.out;
  }
  auto recall = Af({"memory", "recall", "quokkas", "--json"}, Env(restored), dir.path());
  EXPECT_NE(recall.out.find("blue build server"), std::string::npos) << recall.out << recall.err;

  // The feature's branch is in the restored repository, at the same commit.
  const fs::path repo_new = restored / "workspaces" / report.value("project", "default");
  auto sha_old = Git(repo_old, {"rev-parse", "--verify", branch});
  auto sha_new = Git(repo_new, {"rev-parse", "--verify", branch});
  ASSERT_EQ(sha_new.exit_code, 0) << sha_new.err;
  EXPECT_EQ(sha_old.out, sha_new.out);
  EXPECT_EQ(Git(repo_new, {"fsck", "--no-dangling"}).exit_code, 0);
  auto worktrees = Git(repo_new, {"worktree", "list", "--porcelain"});
  ASSERT_EQ(worktrees.exit_code, 0) << worktrees.err;
  std::istringstream lines(worktrees.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("worktree ", 0) == 0)
      EXPECT_NE(line.find(restored.filename().string()), std::string::npos) << worktrees.out;
    EXPECT_EQ(line.find("prunable"), std::string::npos) << worktrees.out;
  }
}

// --- online: a backup taken mid-feature resumes elsewhere -----------------------

const char* kTwoFilePrp = R"(# backup demo: two files

## Goal
Create two text files a.txt and b.txt in the workspace, each holding one word, so that the
backup test can restore a feature taken in flight and see it finish.

## Why
Because a backup taken while the server works must be usable to carry on the work.

## What
- a.txt contains the word alpha
- b.txt contains the word beta, written only after a.txt exists

## Success Criteria
- a.txt and b.txt exist with the right content

## Tech Stack
bash

## Validation Loop
```bash
grep -qx alpha a.txt && grep -qx beta b.txt
```
)";

bool Live(int port) {
  auto r = HttpCall(port, "GET", "/health/live");
  return r.ok() && r->status == 200;
}

TEST(CliBackupTest, BackupTakenMidFeatureResumesInANewDirectoryWithoutDoubleCommits) {
  TempDir dir;
  FakeLlmServer fake;
  // t2's last step is held (the server waits on it) until the backup is taken.
  std::atomic<bool> hold{true};
  fake.SetResponder([&](const RecordedRequest& r) -> std::optional<FakeReply> {
    const std::string key = TwoTaskKeyOf(r);
    if (key == "coder:b:1" && hold) return FakeReply::Hang();
    return TwoTaskAnswer(key);
  });
  auto env_for = [&](const fs::path& data, int port) {
    auto env = Env(data);
    env["AF_LLM_PROVIDER"] = "openai";
    env["OPENAI_BASE_URL"] = fake.base_url() + "/v1";
    env["OPENAI_API_KEY"] = "sk-test-backup-0123456789abcdef";
    env["AF_LLM_MODEL"] = "gpt-4o-mini";
    env["AF_PORT"] = std::to_string(port);
    return env;
  };
  const fs::path data = dir.path() / "data";
  const int port = FreePort();
  const auto env = env_for(data, port);
  auto prp = dir.Write("backup.md", kTwoFilePrp);

  std::string archive, feature_id;
  {
    ChildProcess serve({BinaryPath(), "serve"}, env, dir.path().string());
    ASSERT_TRUE(WaitFor([&] { return Live(port) || !serve.Running(); })) << serve.Err();
    auto submit = Af({"feature", "submit", prp.string(), "--json"}, env, dir.path());
    ASSERT_EQ(submit.exit_code, 0) << submit.out << submit.err;
    feature_id = json::parse(submit.out).value("id", "");
    ASSERT_FALSE(feature_id.empty()) << submit.out;
    // In flight: t1 committed, t2's file written, its last model call held.
    ASSERT_TRUE(WaitFor(
        [&] {
          for (const auto& r : fake.requests())
            if (TwoTaskKeyOf(r) == "coder:b:1") return true;
          return !serve.Running();
        },
        std::chrono::seconds(60)))
        << serve.Err();
    ASSERT_TRUE(serve.Running()) << serve.Err();

    archive = BackupOf(data, dir.path());
    ASSERT_FALSE(archive.empty());
    // The live directory cannot be restored into (nor reset), even with --yes.
    auto into_live = Af({"restore", archive}, env, dir.path());
    EXPECT_EQ(into_live.exit_code, 1);
    EXPECT_NE(into_live.err.find("is in use by a running agent-factory"), std::string::npos)
        << into_live.err;
    auto reset_live = Af({"reset", "--yes"}, env, dir.path());
    EXPECT_EQ(reset_live.exit_code, 1);
    EXPECT_NE(reset_live.err.find("is in use by a running agent-factory"), std::string::npos)
        << reset_live.err;
    EXPECT_TRUE(fs::exists(data / "agent-factory.db"));
    EXPECT_EQ(serve.Stop(SIGKILL), -1);
  }
  hold = false;

  // Restored into a new directory, the feature carries on there and ends.
  const fs::path restored = dir.path() / "restored";
  const int port2 = FreePort();
  const auto env2 = env_for(restored, port2);
  auto r = Af({"restore", archive}, env2, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  {
    auto store = OpenStore(restored);
    ASSERT_TRUE(store);
    auto f = store->GetFeature(feature_id);
    ASSERT_TRUE(f.ok());
    EXPECT_NE(f->status, "completed");  // it was taken in flight
  }
  ChildProcess serve2({BinaryPath(), "serve"}, env2, dir.path().string());
  Feature final;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto store = Store::Open(
            {.url = "sqlite:" + (restored / "agent-factory.db").string(), .migrate = false});
        if (!store.ok()) return false;
        auto f = (*store)->GetFeature(feature_id);
        if (!f.ok()) return false;
        final = *f;
        return final.status == "completed" || final.status == "failed" ||
               final.status == "cancelled";
      },
      std::chrono::seconds(90)))
      << serve2.Err();
  EXPECT_NE(serve2.Err().find("resuming feature " + feature_id), std::string::npos) << serve2.Err();
  EXPECT_EQ(serve2.Stop(SIGTERM), 0) << serve2.Err();
  ASSERT_EQ(final.status, "completed") << final.reason << "\n" << serve2.Err();

  // Its events show the whole story in the new store: ended completed.
  auto store = OpenStore(restored);
  ASSERT_TRUE(store);
  bool completed_event = false;
  ASSERT_TRUE(ForEachEvent(*store, feature_id, [&](const Event& e) {
                completed_event |=
                    e.type == "feature.status" && e.data.value("to", "") == "completed";
              }).ok());
  EXPECT_TRUE(completed_event);

  // One commit per task on the branch of the restored repository; the old
  // directory's repository was not touched by the new server.
  const fs::path repo = restored / "workspaces" / "default";
  auto log = Git(repo, {"log", "--format=%(trailers:key=Task-Id,valueonly,separator=)",
                        "main..af/" + feature_id});
  ASSERT_EQ(log.exit_code, 0) << log.err;
  EXPECT_EQ(log.out, feature_id + "-t2\n" + feature_id + "-t1\n");
  auto list = Git(repo, {"worktree", "list", "--porcelain"});
  EXPECT_EQ(list.out.find((data / "workspaces").string()), std::string::npos) << list.out;
}

// --- refusals ------------------------------------------------------------------

class CliBackupRefusalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.path() / "data";
    auto remember =
        Af({"memory", "remember", "the walrus deploys on Tuesdays"}, Env(data_), dir_.path());
    ASSERT_EQ(remember.exit_code, 0) << remember.err;
    archive_ = BackupOf(data_, dir_.path());
    ASSERT_FALSE(archive_.empty());
  }

  // Restores `archive` into a fresh directory; expects exit 1 and nothing created.
  std::string RefusedInto(const std::string& archive) {
    const fs::path target = dir_.path() / ("target-" + std::to_string(++n_));
    auto r = Af({"restore", archive, "--data-dir", target.string()}, Env(target), dir_.path());
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_FALSE(fs::exists(target));
    for (const auto& e : fs::directory_iterator(dir_.path()))
      EXPECT_EQ(e.path().filename().string().find(".target-"), std::string::npos) << e.path();
    EXPECT_NE(r.err.find("hint: "), std::string::npos) << r.err;
    return r.err;
  }

  TempDir dir_;
  fs::path data_;
  std::string archive_;
  int n_ = 0;
};

TEST_F(CliBackupRefusalTest, RestoreIntoADirectoryWithADatabaseIsRefusedWithTheFix) {
  auto r = Af({"restore", archive_}, Env(data_), dir_.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already holds a database"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--data-dir"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("agent-factory reset"), std::string::npos) << r.err;
  // A directory holding other things is not written into either.
  dir_.Write("busy/notes.txt", "mine\n");
  auto busy = Af({"restore", archive_}, Env(dir_.path() / "busy"), dir_.path());
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_NE(busy.err.find("is not empty (it holds notes.txt)"), std::string::npos) << busy.err;
}

TEST_F(CliBackupRefusalTest, TruncatedWrongKindAndNewerArchivesAreRefusedBeforeWriting) {
  std::string bytes = ReadFile(archive_);
  auto cut = dir_.Write("cut.tar.gz", bytes.substr(0, bytes.size() / 2));
  EXPECT_NE(RefusedInto(cut.string()).find("is not a readable agent-factory backup"),
            std::string::npos);
  auto text = dir_.Write("notes.txt", "not an archive at all\n");
  EXPECT_NE(RefusedInto(text.string()).find("is not a readable agent-factory backup"),
            std::string::npos);
  EXPECT_NE(RefusedInto((dir_.path() / "missing.tar.gz").string()).find("no such file"),
            std::string::npos);

  // A tar.gz that is not a backup.
  {
    auto w = TarGzWriter::Create(dir_.path() / "other.tar.gz");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddData("hello.txt", "hi\n").ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  EXPECT_NE(RefusedInto((dir_.path() / "other.tar.gz").string()).find("has no manifest.json"),
            std::string::npos);

  // A backup made by a newer agent-factory, whose schema this binary does not know.
  {
    auto manifest = json::parse(*ReadTarGzFile(archive_, "manifest.json"));
    manifest["schema_version"] = 9999;
    manifest["agent_factory_version"] = "99.0.0";
    auto w = TarGzWriter::Create(dir_.path() / "newer.tar.gz");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddData("manifest.json", manifest.dump()).ok());
    ASSERT_TRUE(
        (*w)->AddData("agent-factory.db", *ReadTarGzFile(archive_, "agent-factory.db")).ok());
    ASSERT_TRUE((*w)->Finish().ok());
  }
  std::string newer = RefusedInto((dir_.path() / "newer.tar.gz").string());
  EXPECT_NE(newer.find("schema version 9999 (made by agent-factory 99.0.0), newer than this "
                       "binary knows"),
            std::string::npos)
      << newer;
  EXPECT_NE(newer.find("restore it with agent-factory 99.0.0 or newer"), std::string::npos);
}

TEST_F(CliBackupRefusalTest, ResetNeedsAConfirmationThenKeepsOnlyBackups) {
  // No terminal and no --yes: refused, nothing removed.
  auto refused = Af({"reset"}, Env(data_), dir_.path());
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("needs a confirmation"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--yes"), std::string::npos) << refused.err;
  EXPECT_TRUE(fs::exists(data_ / "agent-factory.db"));
  EXPECT_TRUE(fs::exists(data_ / "kb"));

  auto reset = Af({"reset", "--yes"}, Env(data_), dir_.path());
  ASSERT_EQ(reset.exit_code, 0) << reset.err;
  EXPECT_NE(reset.out.find("agent-factory backup"), std::string::npos) << reset.out;
  EXPECT_NE(reset.out.find((data_ / "agent-factory.db").string()), std::string::npos) << reset.out;
  EXPECT_FALSE(fs::exists(data_ / "agent-factory.db"));
  EXPECT_FALSE(fs::exists(data_ / "agent-factory.db-wal"));
  EXPECT_FALSE(fs::exists(data_ / "kb"));
  EXPECT_FALSE(fs::exists(data_ / "logs"));
  EXPECT_TRUE(fs::exists(archive_));

  // A reset directory takes the restore (beside its backups/).
  auto r = Af({"restore", archive_}, Env(data_), dir_.path());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(fs::exists(archive_));
  auto recall = Af({"memory", "recall", "walrus", "--json"}, Env(data_), dir_.path());
  EXPECT_NE(recall.out.find("deploys on Tuesdays"), std::string::npos) << recall.out << recall.err;
}

// Runs argv on a pseudo-terminal (so the program sees a terminal on stdin),
// answers `answer` once `prompt` appears, and returns the exit code and all
// the terminal showed.
CommandResult RunOnTerminal(const std::vector<std::string>& argv,
                            const std::map<std::string, std::string>& env, const fs::path& cwd,
                            const std::string& prompt, const std::string& answer) {
  CommandResult result;
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  if (pid < 0) return result;
  if (pid == 0) {
    if (chdir(cwd.c_str()) != 0) _exit(126);
    for (const auto& [k, v] : env) {
      if (v == "\x01unset") {
        unsetenv(k.c_str());
      } else {
        setenv(k.c_str(), v.c_str(), 1);
      }
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  bool answered = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{master, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) break;  // EIO: the child closed the terminal
    result.out.append(buf, static_cast<size_t>(n));
    if (!answered && result.out.find(prompt) != std::string::npos) {
      const std::string line = answer + "\n";
      EXPECT_EQ(write(master, line.data(), line.size()), static_cast<ssize_t>(line.size()));
      answered = true;
    }
  }
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST_F(CliBackupRefusalTest, ResetOnATerminalAsksForTheDirectoryName) {
  const std::vector<std::string> argv = {BinaryPath(), "reset"};
  auto wrong = RunOnTerminal(argv, Env(data_), dir_.path(), "to confirm: ", "yes please");
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out;
  EXPECT_NE(wrong.out.find("Type the directory's name (data)"), std::string::npos) << wrong.out;
  EXPECT_NE(wrong.out.find("nothing was removed"), std::string::npos) << wrong.out;
  EXPECT_TRUE(fs::exists(data_ / "agent-factory.db"));

  auto right = RunOnTerminal(argv, Env(data_), dir_.path(), "to confirm: ", "data");
  EXPECT_EQ(right.exit_code, 0) << right.out;
  EXPECT_FALSE(fs::exists(data_ / "agent-factory.db"));
  EXPECT_TRUE(fs::exists(archive_));
}

TEST_F(CliBackupRefusalTest, BackupWithoutADatabaseOrOfPostgresSaysWhatToDo) {
  auto none = Af({"backup"}, Env(dir_.path() / "empty"), dir_.path());
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("nothing to back up"), std::string::npos) << none.err;
  auto env = Env(data_);
  env["DATABASE_URL"] = "postgresql://af:secret@db.example/af";
  auto pg = Af({"backup"}, env, dir_.path());
  EXPECT_NE(pg.exit_code, 0);
  EXPECT_NE(pg.err.find("pg_dump"), std::string::npos) << pg.err;
  EXPECT_EQ(pg.err.find("secret"), std::string::npos) << pg.err;
}

// --output naming a directory puts a dated file in it; naming a file that
// exists is refused without touching it.
TEST_F(CliBackupRefusalTest, OutputIsAFileToWriteOrADirectoryToPutOneIn) {
  const fs::path shelf = dir_.path() / "shelf";
  fs::create_directories(shelf);
  auto into_dir = Af({"backup", "--output", shelf.string(), "--json"}, Env(data_), dir_.path());
  ASSERT_EQ(into_dir.exit_code, 0) << into_dir.err;
  const fs::path written = json::parse(into_dir.out).at("path").get<std::string>();
  EXPECT_EQ(written.parent_path(), shelf);
  EXPECT_EQ(written.filename().string().rfind("agent-factory-backup-", 0), 0u) << written;
  EXPECT_TRUE(fs::is_regular_file(written));

  const std::string before = ReadFile(written);
  auto again = Af({"backup", "--output", written.string()}, Env(data_), dir_.path());
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("or a directory to put a dated file in"), std::string::npos)
      << again.err;
  EXPECT_EQ(ReadFile(written), before);
}

// --- secrets -------------------------------------------------------------------

// A provider key in the environment reaches the provider and nothing on disk:
// not the logs, the events, the database file (nor its WAL), a backup, nor
// the debug bundle.
TEST(CliBackupSecretsTest, APlantedProviderKeyIsNowhereOnDiskNorInTheBackup) {
  std::random_device rd;
  const std::string key = "sk-ant-PLANTED-" + std::to_string(rd()) + std::to_string(rd());
  FakeLlmServer fake;
  fake.SetResponder([](const RecordedRequest& r) -> std::optional<FakeReply> {
    return TwoTaskAnswer(TwoTaskKeyOf(r));
  });
  TempDir dir;
  const fs::path data = dir.path() / "data";
  auto env = Env(data);
  env["AF_LLM_PROVIDER"] = "anthropic";
  env["AF_LLM_MODEL"] = "claude-test";
  env["ANTHROPIC_API_KEY"] = key;
  env["ANTHROPIC_BASE_URL"] = fake.base_url();
  env["AF_LOG"] = "debug";
  auto prp = dir.Write("secret.md", kTwoFilePrp);
  auto run = Af({"run", prp.string()}, env, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  // The key was really used.
  ASSERT_FALSE(fake.requests().empty());
  EXPECT_EQ(fake.requests()[0].headers.at("x-api-key"), key);
  EXPECT_EQ(run.out.find(key), std::string::npos);
  EXPECT_EQ(run.err.find(key), std::string::npos);

  const std::string archive = BackupOf(data, dir.path());
  ASSERT_FALSE(archive.empty());
  const fs::path bundle = dir.path() / "bundle.tar.gz";
  auto collect = Af({"logs", "collect", "--output", bundle.string()}, env, dir.path());
  ASSERT_EQ(collect.exit_code, 0) << collect.out << collect.err;
  EXPECT_EQ(collect.out.find(key), std::string::npos);
  EXPECT_EQ(collect.err.find(key), std::string::npos);
  const fs::path unpacked = dir.path() / "bundle";
  ASSERT_TRUE(ExtractTarGz(bundle, unpacked).ok());
  EXPECT_TRUE(fs::exists(unpacked)) << "the bundle holds files";
  EXPECT_EQ(FilesContaining(unpacked, key), std::vector<std::string>{});
  EXPECT_EQ(ReadFile(bundle).find(key), std::string::npos);

  EXPECT_TRUE(fs::exists(data / "logs"));
  EXPECT_EQ(FilesContaining(data / "logs", key), std::vector<std::string>{});
  // The database file and its WAL, byte for byte (whatever is in them).
  for (const char* f : {"agent-factory.db", "agent-factory.db-wal"}) {
    if (fs::exists(data / f)) EXPECT_EQ(ReadFile(data / f).find(key), std::string::npos) << f;
  }
  auto store = OpenStore(data);
  ASSERT_TRUE(store);
  std::string events;
  ASSERT_TRUE(ForEachEvent(*store, "", [&](const Event& e) { events += e.ToJson().dump(); }).ok());
  EXPECT_FALSE(events.empty());
  EXPECT_EQ(events.find(key), std::string::npos);
  // Everything in the data directory, and the backup's extracted files.
  EXPECT_EQ(FilesContaining(data, key), std::vector<std::string>{});
  const fs::path extracted = dir.path() / "extracted";
  ASSERT_TRUE(ExtractTarGz(archive, extracted).ok());
  EXPECT_TRUE(fs::exists(extracted / "agent-factory.db"));
  EXPECT_EQ(FilesContaining(extracted, key), std::vector<std::string>{});
  EXPECT_EQ(ReadFile(archive).find(key), std::string::npos);
}

}  // namespace
}  // namespace af::testing
