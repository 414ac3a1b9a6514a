#pragma once
// Internal to the workspace module: one cgroup per sandbox run with the `pids`
// controller, so a run's process count is bounded (a fork bomb is contained
// even for root, whom RLIMIT_NPROC does not bind) and everything the run
// started can be found and killed, whichever session or pid namespace it is in.

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "af/core/status.h"

namespace af::workspace_internal {

// Where per-run cgroups can be made. Probed once per process.
struct PidsCgroupSupport {
  bool available = false;
  std::filesystem::path parent;  // the directory new cgroups go under
  std::string kind;              // "cgroup v1 pids" | "cgroup v2 pids"
  std::string reason;            // why it is unavailable
};
const PidsCgroupSupport& PidsCgroup();

class RunCgroup {
 public:
  // A fresh cgroup under PidsCgroup().parent with pids.max = max_pids.
  static Result<std::unique_ptr<RunCgroup>> Create(int max_pids);
  // Kills everything left and removes the cgroup (waiting briefly for the
  // killed processes to leave it).
  ~RunCgroup();
  RunCgroup(const RunCgroup&) = delete;
  RunCgroup& operator=(const RunCgroup&) = delete;

  // The file a process writes "0" into to join.
  std::string procs_file() const { return (dir_ / "cgroup.procs").string(); }
  // SIGKILLs every process in the cgroup (no new ones can be forked meanwhile).
  void KillAll();

 private:
  explicit RunCgroup(std::filesystem::path dir) : dir_(std::move(dir)) {}
  // The pids in cgroup.procs, read through procs_fd_.
  std::vector<pid_t> Members() const;

  std::filesystem::path dir_;
  int procs_fd_ = -1;  // cgroup.procs, open from Create to the destructor's end
};

}  // namespace af::workspace_internal
