#pragma once
// Internal to the workspace module: runs one program by fork/exec with an
// argument vector (never through a shell with caller data), captures its
// output, enforces a wall-clock timeout and kills what it leaves behind.
// Used by the git wrapper and by both sandbox kinds.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "af/core/status.h"

namespace af::workspace_internal {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] must be an absolute path
  std::vector<std::string> env;   // the complete environment, "KEY=VALUE"
  std::string cwd;                // empty = inherit
  bool merge_output = true;       // stderr goes into the same pipe as stdout
  // setsid() in the child; the whole process group is SIGKILLed on timeout and
  // when the child exits (so background children do not outlive the run).
  bool new_session = false;
  std::chrono::milliseconds timeout{0};  // 0 = no timeout
  size_t max_output_bytes = 0;           // 0 = unlimited; else keep head + tail
  int64_t rlimit_as_bytes = 0;           // 0 = unchanged
  int64_t rlimit_nproc = 0;              // 0 = unchanged
  // A cgroup.procs file the child moves itself into before exec ("" = none).
  // Failing to join is an error: the limits it carries would not hold.
  std::string cgroup_procs;
  // Called on timeout and after the child exits, to kill what escaped the
  // process group (e.g. everything in a cgroup). May be empty.
  std::function<void()> kill_extra;
  // Asked about every 100 ms while the program runs; once it returns true
  // the program (and its group) is killed as on timeout, and the result says
  // `cancelled`. Empty = never.
  std::function<bool()> cancelled;
};

struct SpawnResult {
  int exit_code = -1;   // -1 when killed by a signal or timed out
  int term_signal = 0;  // the signal that ended it, if any
  bool timed_out = false;
  bool cancelled = false;  // killed because options.cancelled said so
  std::string out;         // stdout (and stderr when merged)
  std::string err;         // stderr when not merged
  bool truncated = false;
  std::chrono::milliseconds duration{0};
};

// Runs the program and waits for it. Errors only when it could not be started
// (Internal / NotFound naming the program); a non-zero exit is a result.
Result<SpawnResult> Spawn(const SpawnOptions& options);

// Keeps the first and last `limit / 2` bytes of a stream, counting the rest.
class HeadTailBuffer {
 public:
  explicit HeadTailBuffer(size_t limit) : limit_(limit) {}
  void Append(const char* data, size_t n);
  bool truncated() const { return dropped_ > 0; }
  // Head + "\n... [N bytes truncated] ...\n" + tail, or everything.
  std::string Take();

 private:
  size_t limit_;  // 0 = unlimited
  std::string head_;
  std::string tail_;  // ring buffer of the last limit_/2 bytes
  size_t tail_pos_ = 0;
  size_t dropped_ = 0;
};

// The absolute path of `name` found on $PATH (or the fallbacks), "" if none.
std::string FindProgram(const std::string& name);

}  // namespace af::workspace_internal
