#pragma once
// Small helpers shared by the test suites.

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace af::testing {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  // Writes `content` to path()/rel (creating parent dirs) and returns the full path.
  std::filesystem::path Write(const std::string& rel, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs argv (argv[0] is a path, no shell) with `env` added to a clean copy of
// the current environment (a value of "\x01unset" removes the variable), in
// `cwd` if not empty, stdin from /dev/null, and waits for it.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {},
                         const std::string& cwd = {});

// A child process running in the background with stdout/stderr captured to
// files (so a chatty child never blocks on a full pipe). The destructor kills
// it (SIGKILL) if it still runs.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv,
               const std::map<std::string, std::string>& env = {}, const std::string& cwd = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  int pid() const { return pid_; }
  // True while it has not exited (reaps it when it has).
  bool Running();
  // Sends `sig` and waits up to `timeout` for the exit; returns the exit code
  // (-1 when killed by a signal, -2 when it did not exit in time).
  int Stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits for a natural exit (same return values as Stop).
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::string Out() const;
  std::string Err() const;

 private:
  int pid_ = -1;
  int exit_code_ = -2;
  TempDir dir_;
};

// Threads of this process now; with `name`, only those of that name (as
// pthread_setname_np set it).
int ThreadsOfThisProcess(const std::string& name = {});

// Polls `probe` every 20 ms until it returns true or `timeout` passes.
bool WaitFor(const std::function<bool()>& probe,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The built agent-factory binary.
std::string BinaryPath();

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

std::string ReadFile(const std::filesystem::path& p);

}  // namespace af::testing
