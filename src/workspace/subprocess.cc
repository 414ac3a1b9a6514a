#include "workspace/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace af::workspace_internal {

void HeadTailBuffer::Append(const char* data, size_t n) {
  if (limit_ == 0) {
    head_.append(data, n);
    return;
  }
  const size_t head_cap = limit_ / 2;
  const size_t tail_cap = limit_ - head_cap;
  if (head_.size() < head_cap) {
    size_t take = std::min(n, head_cap - head_.size());
    head_.append(data, take);
    data += take;
    n -= take;
  }
  if (n == 0) return;
  tail_.append(data, n);
  // Trim lazily (at twice the cap) so the cost stays linear in the input.
  if (tail_.size() > 2 * tail_cap) {
    size_t cut = tail_.size() - tail_cap;
    dropped_ += cut;
    tail_.erase(0, cut);
  }
}

std::string HeadTailBuffer::Take() {
  if (limit_ != 0) {
    const size_t tail_cap = limit_ - limit_ / 2;
    if (tail_.size() > tail_cap) {
      size_t cut = tail_.size() - tail_cap;
      dropped_ += cut;
      tail_.erase(0, cut);
    }
  }
  std::string out = std::move(head_);
  if (dropped_ > 0) {
    out += "\n... [" + std::to_string(dropped_) + " bytes truncated] ...\n";
  }
  out += tail_;
  head_.clear();
  tail_.clear();
  return out;
}

std::string FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty() && dir[0] == '/') {
      std::string candidate = dir + "/" + name;
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = end + 1;
  }
  return "";
}

namespace {

// Child-side failure report: the stage and errno travel over a CLOEXEC pipe,
// so an empty read in the parent means exec succeeded.
struct ChildError {
  int stage;
  int err;
};
enum Stage { kStageCgroup = 1, kStageChdir, kStageRlimit, kStageExec, kStageSetsid, kStageDup };

const char* StageName(int stage) {
  switch (stage) {
    case kStageCgroup:
      return "joining the cgroup";
    case kStageChdir:
      return "changing to the working directory";
    case kStageRlimit:
      return "setting resource limits";
    case kStageExec:
      return "exec";
    case kStageSetsid:
      return "setsid";
    case kStageDup:
      return "redirecting output";
  }
  return "start-up";
}

[[noreturn]] void ChildFail(int fd, int stage) {
  ChildError e{stage, errno};
  ssize_t ignored = write(fd, &e, sizeof e);
  (void)ignored;
  _exit(127);
}

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace

Result<SpawnResult> Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty() || options.argv[0][0] != '/') {
    return Internal("Spawn needs an absolute program path");
  }
  // Everything the child touches is prepared before fork: after fork in a
  // multi-threaded process only async-signal-safe calls are allowed.
  std::vector<std::string> argv_copy = options.argv;
  std::vector<std::string> env_copy = options.env;
  std::vector<char*> argv, envp;
  for (auto& s : argv_copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env_copy) envp.push_back(s.data());
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2] = {-1, -1}, status_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return Internal(std::string("pipe: ") + strerror(errno));
  if (!options.merge_output && pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return Internal(std::string("pipe: ") + strerror(errno));
  }
  if (pipe2(status_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    if (err_pipe[0] >= 0) close(err_pipe[0]), close(err_pipe[1]);
    return Internal(std::string("pipe: ") + strerror(errno));
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], status_pipe[0],
                   status_pipe[1], devnull}) {
      if (fd >= 0) close(fd);
    }
    return Internal(std::string("fork: ") + strerror(e), "the machine may be out of processes");
  }
  if (pid == 0) {
    const int sfd = status_pipe[1];
    if (options.new_session && setsid() < 0) ChildFail(sfd, kStageSetsid);
    // Reset what the parent may have changed (blocked or ignored signals are
    // inherited across exec and would make e.g. SIGPIPE/SIGTERM not work).
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, nullptr);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
    }
    if (!options.cgroup_procs.empty()) {
      int fd = open(options.cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, "0", 1) != 1) ChildFail(sfd, kStageCgroup);
      close(fd);
    }
    if (devnull >= 0 && dup2(devnull, 0) < 0) ChildFail(sfd, kStageDup);
    if (dup2(out_pipe[1], 1) < 0) ChildFail(sfd, kStageDup);
    if (dup2(options.merge_output ? out_pipe[1] : err_pipe[1], 2) < 0) ChildFail(sfd, kStageDup);
    if (options.rlimit_as_bytes > 0) {
      struct rlimit rl = {static_cast<rlim_t>(options.rlimit_as_bytes),
                          static_cast<rlim_t>(options.rlimit_as_bytes)};
      if (setrlimit(RLIMIT_AS, &rl) != 0) ChildFail(sfd, kStageRlimit);
    }
    if (options.rlimit_nproc > 0) {
      struct rlimit rl = {static_cast<rlim_t>(options.rlimit_nproc),
                          static_cast<rlim_t>(options.rlimit_nproc)};
      if (setrlimit(RLIMIT_NPROC, &rl) != 0) ChildFail(sfd, kStageRlimit);
    }
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) ChildFail(sfd, kStageChdir);
      // Descriptors other threads opened without O_CLOEXEC must not leak into
      // the program (it may be untrusted code).
#ifdef SYS_close_range
    syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
#endif
    execve(argv[0], argv.data(), envp.data());
    ChildFail(sfd, kStageExec);
  }

  close(out_pipe[1]);
  if (err_pipe[1] >= 0) close(err_pipe[1]);
  close(status_pipe[1]);
  if (devnull >= 0) close(devnull);

  ChildError child_error{0, 0};
  ssize_t got;
  do {
    got = read(status_pipe[0], &child_error, sizeof child_error);
  } while (got < 0 && errno == EINTR);
  close(status_pipe[0]);
  if (got == static_cast<ssize_t>(sizeof child_error)) {
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    close(out_pipe[0]);
    if (err_pipe[0] >= 0) close(err_pipe[0]);
    std::string msg = "could not start " + options.argv[0] + ": " + StageName(child_error.stage) +
                      " failed: " + strerror(child_error.err);
    if (child_error.stage == kStageExec && child_error.err == ENOENT) return NotFound(msg);
    return Internal(msg);
  }

  HeadTailBuffer out_buf(options.max_output_bytes);
  HeadTailBuffer err_buf(options.max_output_bytes);
  int out_fd = out_pipe[0];
  int err_fd = err_pipe[0];
  int pidfd = PidfdOpen(pid);
  bool exited = false;
  int wstatus = 0;
  SpawnResult result;

  using Clock = std::chrono::steady_clock;
  const bool has_deadline = options.timeout.count() > 0;
  const auto deadline = start + options.timeout;
  bool draining = false;  // child gone: read what is left, but not forever
  Clock::time_point drain_deadline{};

  auto kill_all = [&] {
    if (options.new_session) kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    if (options.kill_extra) options.kill_extra();
  };
  auto reap = [&](bool block) {
    if (exited) return;
    pid_t r;
    do {
      r = waitpid(pid, &wstatus, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid) exited = true;
  };
  auto on_child_exit = [&] {
    // Kill the group while the leader is still an unreaped zombie, so its
    // pid (= the group id) cannot have been reused by then.
    if (options.new_session) kill(-pid, SIGKILL);
    if (options.kill_extra) options.kill_extra();
    reap(true);
    draining = true;
    drain_deadline = Clock::now() + std::chrono::seconds(2);
  };

  char buf[65536];
  while (out_fd >= 0 || err_fd >= 0 || !exited) {
    if (exited && !draining) {
      draining = true;
      drain_deadline = Clock::now() + std::chrono::seconds(2);
    }
    struct pollfd fds[3];
    int nfds = 0, out_i = -1, err_i = -1, pid_i = -1;
    if (out_fd >= 0) fds[out_i = nfds++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[err_i = nfds++] = {err_fd, POLLIN, 0};
    if (!exited && pidfd >= 0) fds[pid_i = nfds++] = {pidfd, POLLIN, 0};

    int wait_ms = -1;
    auto now = Clock::now();
    auto until = [&](Clock::time_point t) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count();
      return static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(ms + 1, 60000)));
    };
    if (draining) {
      wait_ms = until(drain_deadline);
    } else if (has_deadline && !result.timed_out) {
      wait_ms = until(deadline);
    }
    // Without a pidfd the exit is noticed by polling waitpid.
    if (!exited && pidfd < 0 && (wait_ms < 0 || wait_ms > 20)) wait_ms = 20;
    if (options.cancelled && !exited && !result.cancelled && (wait_ms < 0 || wait_ms > 100))
      wait_ms = 100;

    int n = nfds > 0 ? poll(fds, nfds, wait_ms) : 0;
    if (n < 0 && errno != EINTR) break;
    now = Clock::now();

    auto read_fd = [&](int& fd, HeadTailBuffer& into) {
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        into.Append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(fd);
        fd = -1;
      }
    };
    if (n > 0) {
      if (out_i >= 0 && fds[out_i].revents) read_fd(out_fd, out_buf);
      if (err_i >= 0 && fds[err_i].revents) read_fd(err_fd, err_buf);
    }
    if (!exited) {
      bool gone = false;
      if (pid_i >= 0 && n > 0 && fds[pid_i].revents) {
        gone = true;
      } else if (pidfd < 0) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        gone = waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
      }
      if (gone) {
        on_child_exit();
        continue;
      }
    }
    if (options.cancelled && !exited && !result.cancelled && !result.timed_out &&
        options.cancelled()) {
      result.cancelled = true;
      kill_all();
      continue;
    }
    if (has_deadline && !result.timed_out && !exited && now >= deadline) {
      result.timed_out = true;
      kill_all();
      continue;
    }
    if (draining && now >= drain_deadline) break;  // something escaped and holds the pipe
  }
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (pidfd >= 0) close(pidfd);
  if (!exited) {
    kill_all();
    reap(true);
  }

  result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (WIFEXITED(wstatus) && !result.timed_out && !result.cancelled) {
    result.exit_code = WEXITSTATUS(wstatus);
  } else {
    result.exit_code = -1;
    if (WIFSIGNALED(wstatus)) result.term_signal = WTERMSIG(wstatus);
  }
  result.truncated = out_buf.truncated() || err_buf.truncated();
  result.out = out_buf.Take();
  result.err = err_buf.Take();
  return result;
}

}  // namespace af::workspace_internal
