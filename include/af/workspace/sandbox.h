#pragma once
// Where generated code and validation gates run: read-only system,
// no network, writes only in the working directory, wall-clock timeout, memory
// and process limits, and the whole process tree killed at the end.
//
// Two kinds:
//  - "bubblewrap" (/usr/bin/bwrap): the system bound read-only, the workdir
//    read-write at the same path, a private /tmp, minimal /proc and /dev, all
//    namespaces unshared (no network: loopback only), a clean environment.
//  - "process": a plain child in its own session with rlimits, the timeout
//    and a process-group kill. No file system or network isolation: used only
//    when bubblewrap cannot work here, with a loud warning().
// In both, when a cgroup `pids` controller is writable (v1 or v2) every run
// gets its own cgroup with `pids.max` = max_processes, and everything in it is
// killed at the end (this is what contains a fork bomb when running as root,
// where RLIMIT_NPROC is not enforced). Memory is limited with RLIMIT_AS.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af {

struct SandboxOptions {
  std::chrono::milliseconds timeout{300000};  // wall clock per Run; default 300 s
  int64_t memory_mb = 2048;                   // RLIMIT_AS of the command; 0 = no limit
  int max_processes = 256;                    // processes/threads of one run; 0 = no limit
  size_t max_output_bytes = 64 * 1024;        // kept: first and last half; default 64 KiB
  bool network = false;                       // false: no network (bubblewrap only can enforce it)
  // More paths visible read-only at the same place inside bubblewrap (e.g. the
  // repository's .git so `git` works in a worktree, a toolchain in /opt).
  // Missing ones are skipped. Default none; no effect in process mode.
  std::vector<std::filesystem::path> read_only_paths;
  enum class Mode {
    kAuto,        // bubblewrap when it works here, else process with a warning
    kBubblewrap,  // bubblewrap or FailedPrecondition
    kProcess,     // plain processes (no file system or network isolation)
  };
  Mode mode = Mode::kAuto;
};

struct RunResult {
  int exit_code = -1;  // -1 if killed (timeout or signal)
  bool timed_out = false;
  std::string output;      // stdout and stderr interleaved in order, capped
  bool truncated = false;  // the middle of the output was dropped
  std::chrono::milliseconds duration{0};
  std::string sandbox;  // "bubblewrap" | "process"
  // For the model: "exit 1\n<output>" (or "timed out: killed after 0.5 s\n...").
  // Depends only on the exit and the output, so a resumed conversation that
  // runs the command again sends the same text.
  std::string ToText() const;
};

// What a sandbox actually enforces on this machine.
struct SandboxIsolation {
  bool filesystem = false;     // read-only system, private /tmp, workdir-only writes
  bool network = false;        // no network (loopback only)
  bool process_limit = false;  // max_processes holds (cgroup pids.max, or RLIMIT_NPROC as non-root)
  std::string process_limit_by;  // "cgroup v1 pids", "cgroup v2 pids", "RLIMIT_NPROC" or ""
  bool memory_limit = false;     // RLIMIT_AS set
};

// Runs shell commands in isolation. Thread-safe: Run may be called from
// several threads at once (each run has its own processes and cgroup).
class Sandbox {
 public:
  // kAuto probes once per process whether bubblewrap works (runs `true` under
  // it) and falls back to "process" with a warning(). kBubblewrap fails with
  // FailedPrecondition naming the reason when bubblewrap cannot work.
  // InvalidArgument on nonsensical options (timeout <= 0, negative limits,
  // max_output_bytes < 1024).
  static Result<std::unique_ptr<Sandbox>> Create(const SandboxOptions& options = {});

  virtual ~Sandbox() = default;
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Runs `command` with /bin/sh -c in `workdir` (absolute, an existing
  // directory, writable by the command). Waits for it, up to the timeout;
  // whatever it started is killed when it ends. A failing or timed-out command
  // is a RunResult, not an error. `cancelled` (optional) is asked about every
  // 100 ms; once it says so the command is killed like on a stop (say the
  // feature it works for was cancelled). Errors: InvalidArgument for a bad
  // workdir, Internal when the command cannot be started, Cancelled when the
  // sandbox was stopped or `cancelled` said so (the command was killed).
  virtual Result<RunResult> Run(const std::string& command, const std::filesystem::path& workdir,
                                const std::function<bool()>& cancelled = {}) = 0;

  // For a prompt shutdown: kills every run in flight (its whole process
  // group and cgroup, within about 100 ms) and refuses every later one; their
  // Run calls return Cancelled. Their results would be thrown away anyway:
  // the work they belong to resumes on the next start. Not undone.
  void Stop() { stopped_ = true; }
  bool stopped() const { return stopped_; }

  std::string_view kind() const { return kind_; }
  // Empty when everything the options ask for is enforced; else what is not,
  // and how to fix it. Callers should log it (e.g. at start-up).
  const std::string& warning() const { return warning_; }
  const SandboxIsolation& isolation() const { return isolation_; }
  const SandboxOptions& options() const { return options_; }

 protected:
  Sandbox(SandboxOptions options, std::string kind)
      : options_(std::move(options)), kind_(std::move(kind)) {}

  SandboxOptions options_;
  std::string kind_;
  std::string warning_;
  SandboxIsolation isolation_;
  std::atomic<bool> stopped_{false};
};

// Runs `command` with /bin/sh in `workdir` as this process's user, outside
// any sandbox: for the operator's own command (delivery.command), which needs
// the network, the repository and the user's credentials to push or open a
// pull request. `env` is the complete environment. It runs in a session of
// its own, killed whole at `timeout` (a RunResult with timed_out) or when
// `cancelled` says so (Cancelled). Output capped as SandboxOptions's default.
Result<RunResult> RunOnHost(const std::string& command, const std::filesystem::path& workdir,
                            std::vector<std::string> env, std::chrono::milliseconds timeout,
                            const std::function<bool()>& cancelled = {});

}  // namespace af
