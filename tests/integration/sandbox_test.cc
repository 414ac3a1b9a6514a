// The sandbox, run for every kind that works on this machine: bubblewrap
// (skipped loudly when it cannot work here) and plain processes.

#include "af/workspace/sandbox.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "support/test_util.h"

namespace af {
namespace {

namespace fs = std::filesystem;
using af::testing::TempDir;
using Mode = SandboxOptions::Mode;

std::string Marker() {
  static std::atomic<int> n{0};
  std::random_device rd;
  return "AFMARK" + std::to_string(getpid()) + "x" + std::to_string(rd() % 1000000) + "x" +
         std::to_string(n++);
}

// Pids of live processes whose command line contains `marker`.
std::vector<int> ProcessesWith(const std::string& marker) {
  std::vector<int> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = testing::ReadFile(entry.path() / "cmdline");
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (cmdline.find(marker) != std::string::npos) found.push_back(std::stoi(name));
  }
  return found;
}

class SandboxTest : public ::testing::TestWithParam<Mode> {
 protected:
  // A sandbox of the parameter's kind (SetUp skipped the test if there is none).
  std::unique_ptr<Sandbox> Make(SandboxOptions options = {}) {
    options.mode = GetParam();
    auto sb = Sandbox::Create(options);
    if (!sb.ok()) {
      ADD_FAILURE() << sb.status().ToString();
      return nullptr;
    }
    return std::move(sb).value();
  }

  void SetUp() override {
    if (GetParam() == Mode::kBubblewrap) {
      auto sb = Sandbox::Create({.mode = Mode::kBubblewrap});
      if (!sb.ok()) {
        GTEST_SKIP() << "\n*** BUBBLEWRAP SANDBOX NOT TESTED: " << sb.status().ToString()
                     << " ***\n";
      }
    }
  }

  RunResult MustRun(Sandbox& sb, const std::string& cmd) {
    auto r = sb.Run(cmd, work_.path());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : RunResult{};
  }

  bool bwrap() const { return GetParam() == Mode::kBubblewrap; }

  TempDir work_;
};

TEST_P(SandboxTest, ExitCodeAndInterleavedOutput) {
  auto sb = Make();
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->kind(), bwrap() ? "bubblewrap" : "process");
  RunResult r = MustRun(*sb, "echo one; echo two >&2; echo three; exit 3");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.output, "one\ntwo\nthree\n");
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(r.sandbox, sb->kind());
  EXPECT_EQ(r.ToText().substr(0, 7), "exit 3\n");
  EXPECT_NE(r.ToText().find("one\ntwo"), std::string::npos);
  EXPECT_EQ(MustRun(*sb, "true").exit_code, 0);
  // The environment is clean: nothing of the test process leaks in.
  setenv("AF_SANDBOX_LEAK", "visible", 1);
  EXPECT_EQ(MustRun(*sb, "echo \"[$AF_SANDBOX_LEAK]\"").output, "[]\n");
  unsetenv("AF_SANDBOX_LEAK");
}

TEST_P(SandboxTest, OutputTruncationKeepsHeadAndTail) {
  auto sb = Make({.max_output_bytes = 4096});
  ASSERT_TRUE(sb);
  RunResult r =
      MustRun(*sb, "echo HEAD-MARK; head -c 200000 /dev/zero | tr '\\0' x; echo; echo TAIL-MARK");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.output.substr(0, 10), "HEAD-MARK\n");
  EXPECT_EQ(r.output.substr(r.output.size() - 10), "TAIL-MARK\n");
  EXPECT_NE(r.output.find("bytes truncated] ..."), std::string::npos);
  EXPECT_LT(r.output.size(), 4096u + 100u);
}

TEST_P(SandboxTest, NoNetwork) {
  auto sb = Make();
  ASSERT_TRUE(sb);
  if (!bwrap()) {
    // Never attempt a connection without isolation: only the report is checked.
    EXPECT_FALSE(sb->isolation().network);
    EXPECT_FALSE(sb->isolation().filesystem);
    EXPECT_FALSE(sb->warning().empty());
    return;
  }
  EXPECT_TRUE(sb->isolation().network);
  RunResult r =
      MustRun(*sb,
              "python3 -c \"import socket; "
              "socket.create_connection(('1.1.1.1', 80), timeout=2); print('CONNECTED')\"");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("CONNECTED"), std::string::npos);
  EXPECT_NE(r.output.find("unreachable"), std::string::npos) << r.output;
  // Loopback works inside.
  RunResult lo = MustRun(*sb,
                         "python3 -c \"import socket; s = socket.socket(); "
                         "s.bind(('127.0.0.1', 0)); s.listen(); "
                         "c = socket.create_connection(s.getsockname()); print('LOOPBACK')\"");
  EXPECT_EQ(lo.exit_code, 0) << lo.output;
  EXPECT_EQ(lo.output, "LOOPBACK\n");
}

TEST_P(SandboxTest, WritesOutsideTheWorkdirFail) {
  auto sb = Make();
  ASSERT_TRUE(sb);
  if (!bwrap()) GTEST_SKIP() << "process mode has no file system isolation (reported)";
  TempDir other;
  const std::string name = "af-test-" + Marker();
  RunResult r = MustRun(*sb, "touch /etc/" + name + " || echo ETC-REFUSED; touch /usr/" + name +
                                 " || echo USR-REFUSED; touch " + (other.path() / name).string() +
                                 " || echo OTHER-REFUSED");
  EXPECT_NE(r.output.find("ETC-REFUSED"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("USR-REFUSED"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("OTHER-REFUSED"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists("/etc/" + name));
  EXPECT_FALSE(fs::exists("/usr/" + name));
  EXPECT_FALSE(fs::exists(other.path() / name));
  // The host's private files are not visible.
  EXPECT_NE(MustRun(*sb, "ls " + other.path().string()).exit_code, 0);
  EXPECT_EQ(MustRun(*sb, "cat /etc/shadow").output.find("root:"), std::string::npos);
  // Nor is anything of /etc that others may not read, even when the server
  // (and so the sandbox's root) is root: /etc/shadow- (the backup copy),
  // TLS keys, /etc/default/agent-factory with the provider keys.
  std::error_code ec;
  int checked = 0;
  for (fs::recursive_directory_iterator it("/etc", fs::directory_options::skip_permission_denied,
                                           ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & S_IROTH))
      continue;
    RunResult read = MustRun(*sb, "cat '" + it->path().string() + "' 2>/dev/null | wc -c");
    EXPECT_EQ(read.output, "0\n") << it->path() << " is readable in the sandbox";
    ++checked;
  }
  std::cout << checked << " files of /etc that others may not read were checked\n";
}

TEST_P(SandboxTest, TheSandboxTmpIsBoundedLikeItsMemory) {
  auto sb = Make({.memory_mb = 64});
  ASSERT_TRUE(sb);
  if (!bwrap()) GTEST_SKIP() << "process mode has no private /tmp (reported)";
  // A tmpfs is memory: 200 MB in /tmp would otherwise be held for the run.
  RunResult r = MustRun(*sb,
                        "head -c 200000000 /dev/zero > /tmp/big; echo rc=$?; "
                        "du -k /tmp/big | cut -f1");
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("rc=0"), std::string::npos) << r.output;
}

TEST_P(SandboxTest, ExtraReadOnlyPathsAreVisibleButNotWritable) {
  TempDir shared;
  std::ofstream(shared.path() / "data.txt") << "shared data\n";
  auto sb = Make({.read_only_paths = {shared.path()}});
  ASSERT_TRUE(sb);
  RunResult r = MustRun(*sb, "cat " + (shared.path() / "data.txt").string() + " && touch " +
                                 (shared.path() / "new").string() + " || echo REFUSED");
  EXPECT_NE(r.output.find("shared data"), std::string::npos) << r.output;
  if (bwrap()) {
    EXPECT_NE(r.output.find("REFUSED"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(shared.path() / "new"));
  }
  // The workdir stays writable.
  EXPECT_EQ(MustRun(*sb, "echo w > w.txt && cat w.txt").output, "w\n");
}

TEST_P(SandboxTest, WorkdirIsWritableAndTmpIsPrivate) {
  auto sb = Make();
  ASSERT_TRUE(sb);
  const std::string name = "af-private-" + Marker();
  RunResult r = MustRun(*sb, "mkdir -p sub && echo hi > sub/out.txt && echo tmp > \"$TMPDIR/" +
                                 name + "\" && cat \"$TMPDIR/" + name + "\" && pwd");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "tmp\n" + fs::canonical(work_.path()).string() + "\n");
  EXPECT_EQ(testing::ReadFile(work_.path() / "sub" / "out.txt"), "hi\n");
  // Scratch files stay out of the workspace and are gone afterwards.
  EXPECT_FALSE(fs::exists(work_.path() / name));
  EXPECT_FALSE(fs::exists(fs::path("/tmp") / name));
  if (bwrap()) {
    TempDir host_file_dir;  // in the host's /tmp
    RunResult t = MustRun(*sb, "echo x > /tmp/" + name + " && ls /tmp");
    EXPECT_EQ(t.exit_code, 0);
    EXPECT_NE(t.output.find(name), std::string::npos);
    EXPECT_EQ(t.output.find(host_file_dir.path().filename().string()), std::string::npos)
        << t.output;
    EXPECT_FALSE(fs::exists(fs::path("/tmp") / name));
  }
}

TEST_P(SandboxTest, InfiniteLoopIsKilledAtTheTimeout) {
  auto sb = Make({.timeout = std::chrono::milliseconds(500)});
  ASSERT_TRUE(sb);
  const std::string marker = Marker();
  RunResult r = MustRun(*sb, "echo started; while :; do :; done; echo " + marker);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.output, "started\n");
  EXPECT_EQ(r.ToText().substr(0, 9), "timed out");
  EXPECT_TRUE(ProcessesWith(marker).empty());
}

TEST_P(SandboxTest, BackgroundChildrenAreKilledWhenTheCommandEnds) {
  auto sb = Make({.timeout = std::chrono::seconds(30)});
  ASSERT_TRUE(sb);
  const std::string marker = Marker();
  // One child in the command's process group, one that left it with setsid;
  // the command ends only once both run (so the setsid has happened).
  RunResult r = MustRun(
      *sb, "sh -c 'touch ready1; sleep 1000; echo " + marker +
               "' >/dev/null 2>&1 & setsid sh -c 'touch ready2; sleep 1000; echo " + marker +
               "' >/dev/null 2>&1 & while [ ! -e ready1 ] || [ ! -e ready2 ]; "
               "do :; done; echo started");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.timed_out);  // the run did not wait for them
  EXPECT_EQ(r.output, "started\n");
  const bool contains_escapes = bwrap() || sb->isolation().process_limit_by.rfind("cgroup", 0) == 0;
  if (contains_escapes) {
    EXPECT_EQ(ProcessesWith(marker), std::vector<int>{});
  } else {
    // Without a pid namespace or cgroup only the process group is reachable.
    EXPECT_LE(ProcessesWith(marker).size(), 1u);
    for (int pid : ProcessesWith(marker)) kill(pid, SIGKILL);
  }
}

TEST_P(SandboxTest, ForkBombIsContainedAndCleanedUp) {
  auto sb = Make({.timeout = std::chrono::seconds(2), .max_processes = 32});
  ASSERT_TRUE(sb);
  if (!sb->isolation().process_limit) {
    GTEST_SKIP() << "\n*** FORK BOMB NOT RUN: the process limit is not enforced here: "
                 << sb->warning() << " ***\n";
  }
  const std::string marker = Marker();
  // dash will not let ':' be a function name, so the bomb has a real one; it
  // stays in the foreground so its processes pile up instead of dying young.
  RunResult r = MustRun(*sb, "bomb() { bomb | bomb; }; bomb; echo " + marker);
  EXPECT_NE(r.output.find("fork"), std::string::npos) << "the process limit was never hit:\n"
                                                      << r.output.substr(0, 2000);
  EXPECT_EQ(ProcessesWith(marker), std::vector<int>{});
  // The sandbox still works afterwards.
  EXPECT_EQ(MustRun(*sb, "echo ok").output, "ok\n");
}

TEST_P(SandboxTest, MemoryLimitStopsABigAllocation) {
  auto sb = Make({.memory_mb = 256});
  ASSERT_TRUE(sb);
  EXPECT_TRUE(sb->isolation().memory_limit);
  RunResult r = MustRun(*sb,
                        "/usr/bin/python3 -c \"x = bytearray(1024 * 1024 * 1024); "
                        "print('ALLOCATED')\"");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.output.find("ALLOCATED"), std::string::npos);
  EXPECT_NE(r.output.find("MemoryError"), std::string::npos) << r.output;
  // A small allocation under the same limit works.
  RunResult ok = MustRun(*sb,
                         "/usr/bin/python3 -c \"x = bytearray(32 * 1024 * 1024); "
                         "print('ALLOCATED')\"");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

TEST_P(SandboxTest, ParallelRuns) {
  auto sb = Make();
  ASSERT_TRUE(sb);
  std::vector<std::string> outputs(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto r = sb->Run("echo run" + std::to_string(i), work_.path());
      outputs[i] = r.ok() ? r->output : r.status().ToString();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(outputs[i], "run" + std::to_string(i) + "\n");
}

TEST_P(SandboxTest, BadWorkdirIsRefused) {
  auto sb = Make();
  ASSERT_TRUE(sb);
  EXPECT_EQ(sb->Run("true", "relative/dir").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(sb->Run("true", work_.path() / "missing").status().code(), Code::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Kinds, SandboxTest, ::testing::Values(Mode::kBubblewrap, Mode::kProcess),
                         [](const auto& info) {
                           return info.param == Mode::kBubblewrap ? std::string("Bubblewrap")
                                                                  : std::string("Process");
                         });

TEST(SandboxCreateTest, RejectsBadOptions) {
  EXPECT_EQ(Sandbox::Create({.timeout = std::chrono::milliseconds(0)}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Sandbox::Create({.memory_mb = -1}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Sandbox::Create({.max_output_bytes = 10}).status().code(), Code::kInvalidArgument);
}

TEST(SandboxCreateTest, AutoPrefersBubblewrapAndWarnsOnFallback) {
  auto autosb = Sandbox::Create({});
  ASSERT_TRUE(autosb.ok()) << autosb.status().ToString();
  auto bw = Sandbox::Create({.mode = Mode::kBubblewrap});
  if (bw.ok()) {
    EXPECT_EQ((*autosb)->kind(), "bubblewrap");
    EXPECT_TRUE((*autosb)->isolation().filesystem);
  } else {
    EXPECT_EQ(bw.status().code(), Code::kFailedPrecondition);
    EXPECT_EQ((*autosb)->kind(), "process");
    EXPECT_NE((*autosb)->warning().find("bubblewrap unavailable"), std::string::npos);
  }
  auto proc = Sandbox::Create({.mode = Mode::kProcess});
  ASSERT_TRUE(proc.ok());
  EXPECT_EQ((*proc)->kind(), "process");
  EXPECT_NE((*proc)->warning().find("no file system or network isolation"), std::string::npos);
}

}  // namespace
}  // namespace af
