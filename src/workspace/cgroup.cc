#include "workspace/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

namespace af::workspace_internal {

namespace fs = std::filesystem;

namespace {

bool WriteText(const fs::path& file, const std::string& text) {
  std::ofstream out(file);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

std::string ReadText(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Candidate {
  fs::path parent;
  std::string kind;
};

// Mount points of the pids hierarchies (v1 with the pids option, v2) joined
// with this process's own cgroup path in each.
std::vector<Candidate> FindCandidates() {
  fs::path v1_mount, v2_mount;
  std::ifstream mountinfo("/proc/self/mountinfo");
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string x; fields >> x;) f.push_back(x);
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 5 || dash + 3 >= f.size()) continue;
    const std::string& fstype = f[dash + 1];
    const std::string opts = "," + f[dash + 3] + ",";
    if (fstype == "cgroup" && opts.find(",pids,") != std::string::npos) v1_mount = f[4];
    if (fstype == "cgroup2" && v2_mount.empty()) v2_mount = f[4];
  }
  std::string v1_path, v2_path;
  std::ifstream self("/proc/self/cgroup");
  for (std::string line; std::getline(self, line);) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    std::string path = line.substr(b + 1);
    if (controllers == ",,") v2_path = path;
    if (controllers.find(",pids,") != std::string::npos) v1_path = path;
  }
  std::vector<Candidate> out;
  auto join = [](const fs::path& mount, const std::string& path) {
    return path.empty() || path == "/" ? mount : mount / path.substr(1);
  };
  if (!v1_mount.empty()) out.push_back({join(v1_mount, v1_path), "cgroup v1 pids"});
  if (!v2_mount.empty()) out.push_back({join(v2_mount, v2_path), "cgroup v2 pids"});
  return out;
}

std::atomic<int> g_counter{0};

fs::path NewName(const fs::path& parent, const char* what) {
  return parent / ("af-sandbox-" + std::string(what) + "-" + std::to_string(getpid()) + "-" +
                   std::to_string(g_counter.fetch_add(1)));
}

PidsCgroupSupport Probe() {
  PidsCgroupSupport s;
  std::vector<Candidate> candidates = FindCandidates();
  if (candidates.empty()) {
    s.reason = "no cgroup file system is mounted";
    return s;
  }
  for (const auto& c : candidates) {
    std::error_code ec;
    if (c.kind == "cgroup v2 pids") {
      // The controller must be enabled for children; this fails when the
      // parent also holds processes (v2's no-internal-process rule).
      if (ReadText(c.parent / "cgroup.controllers").find("pids") == std::string::npos) {
        s.reason += (s.reason.empty() ? "" : "; ") + c.kind + ": controller not delegated here";
        continue;
      }
      WriteText(c.parent / "cgroup.subtree_control", "+pids");
    }
    fs::path probe = NewName(c.parent, "probe");
    if (!fs::create_directory(probe, ec)) {
      s.reason += (s.reason.empty() ? "" : "; ") + c.kind + ": cannot create a cgroup under " +
                  c.parent.string() + " (" + ec.message() + ")";
      continue;
    }
    bool ok = fs::exists(probe / "pids.max", ec) && WriteText(probe / "pids.max", "16");
    fs::remove(probe, ec);
    if (ok) {
      s.available = true;
      s.parent = c.parent;
      s.kind = c.kind;
      s.reason.clear();
      return s;
    }
    s.reason += (s.reason.empty() ? "" : "; ") + c.kind + ": pids.max not writable";
  }
  return s;
}

}  // namespace

const PidsCgroupSupport& PidsCgroup() {
  static const PidsCgroupSupport support = Probe();
  return support;
}

Result<std::unique_ptr<RunCgroup>> RunCgroup::Create(int max_pids) {
  const auto& support = PidsCgroup();
  if (!support.available) return FailedPrecondition("no pids cgroup: " + support.reason);
  fs::path dir = NewName(support.parent, "run");
  std::error_code ec;
  if (!fs::create_directory(dir, ec)) {
    return Internal("cannot create cgroup " + dir.string() + ": " + ec.message());
  }
  std::unique_ptr<RunCgroup> cg(new RunCgroup(dir));
  if (!WriteText(dir / "pids.max", std::to_string(max_pids))) {
    return Internal("cannot set pids.max in " + dir.string());
  }
  cg->procs_fd_ = open((dir / "cgroup.procs").c_str(), O_RDONLY | O_CLOEXEC);
  if (cg->procs_fd_ < 0) {
    return Internal("cannot open " + (dir / "cgroup.procs").string() + ": " + std::strerror(errno));
  }
  return cg;
}

std::vector<pid_t> RunCgroup::Members() const {
  std::vector<pid_t> out;
  if (procs_fd_ < 0) return out;
  std::string text;
  char buf[4096];
  if (lseek(procs_fd_, 0, SEEK_SET) != 0) return out;
  for (ssize_t n; (n = read(procs_fd_, buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<size_t>(n));
  std::istringstream pids(text);
  for (pid_t pid; pids >> pid;)
    if (pid > 0) out.push_back(pid);
  return out;
}

void RunCgroup::KillAll() {
  // Called twice per run, when the command ends and when the run is over, and
  // almost always finds the cgroup empty: then one read of the file opened at
  // Create is all it costs (opening cgroupfs files was most of a run's CPU in
  // this process).
  if (Members().empty()) return;
  std::error_code ec;
  if (fs::exists(dir_ / "cgroup.kill", ec) && WriteText(dir_ / "cgroup.kill", "1")) return;
  // v1: forbid new forks first so one sweep catches everything.
  WriteText(dir_ / "pids.max", "0");
  for (int round = 0; round < 100; ++round) {
    std::vector<pid_t> pids = Members();
    if (pids.empty()) return;
    for (pid_t pid : pids) kill(pid, SIGKILL);
  }
}

RunCgroup::~RunCgroup() {
  // The killed processes leave the cgroup asynchronously; rmdir succeeds once
  // it is empty.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    // Usually empty already (the run's end killed what was left): then the
    // rmdir alone is enough.
    if (rmdir(dir_.c_str()) == 0 || errno == ENOENT) break;
    KillAll();
    if (rmdir(dir_.c_str()) == 0 || errno == ENOENT) break;
    if (std::chrono::steady_clock::now() > deadline) break;  // left behind, empty later
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (procs_fd_ >= 0) close(procs_fd_);
}

}  // namespace af::workspace_internal
