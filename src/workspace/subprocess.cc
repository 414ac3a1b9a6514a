#include "workspace/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

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

// A file descriptor closed when it goes out of scope (in the parent; the
// child execs or _exits and never runs destructors).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) Reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read, write;
};

Status OpenPipe(Pipe* p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Internal(std::string("pipe: ") + strerror(errno));
  p->read.Reset(fds[0]);
  p->write.Reset(fds[1]);
  return Status::Ok();
}

// What the child gets, all prepared before the clone: the child shares the
// parent's memory until it execs, so it may only make system calls (no
// allocation, no locks), like a child of fork in a multi-threaded process.
struct ChildSetup {
  char* const* argv;
  char* const* envp;
  int stdin_fd;   // /dev/null, or -1 to inherit
  int stdout_fd;  // write end of the output pipe
  int stderr_fd;  // the same, or the write end of the error pipe
  int status_fd;  // where a failed set-up step is reported
};

// In the child: sets up the process as `options` say and execs, or reports
// the failing step on the status pipe and exits 127.
[[noreturn]] void RunChild(const SpawnOptions& options, const ChildSetup& c) {
  const int sfd = c.status_fd;
  // Reset what the parent may have changed (blocked or ignored signals are
  // inherited across exec and would make e.g. SIGPIPE/SIGTERM not work). The
  // handlers go first, while every signal is still blocked (see Spawn): a
  // parent's handler must never run here, on memory the parent owns.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  }
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  if (options.new_session && setsid() < 0) ChildFail(sfd, kStageSetsid);
  if (!options.cgroup_procs.empty()) {
    int fd = open(options.cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) ChildFail(sfd, kStageCgroup);
    close(fd);
  }
  if (c.stdin_fd >= 0 && dup2(c.stdin_fd, 0) < 0) ChildFail(sfd, kStageDup);
  if (dup2(c.stdout_fd, 1) < 0) ChildFail(sfd, kStageDup);
  if (dup2(c.stderr_fd, 2) < 0) ChildFail(sfd, kStageDup);
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
  execve(c.argv[0], c.argv, c.envp);
  ChildFail(sfd, kStageExec);
}

struct ChildArgs {
  const SpawnOptions* options;
  const ChildSetup* setup;
};

int ChildEntry(void* arg) {
  const auto* a = static_cast<const ChildArgs*>(arg);
  RunChild(*a->options, *a->setup);
}

// Starts the child like vfork: it shares the parent's memory (no page tables
// copied, which is what fork of a large multi-threaded process spends its
// time on) and the calling thread waits until it has exec'd or exited, as
// glibc's posix_spawn does; posix_spawn itself cannot set resource limits
// or join a cgroup. Every signal stays blocked in this thread meanwhile, so
// none is handled in the child before it has reset the handlers.
pid_t StartChild(const SpawnOptions& options, const ChildSetup& setup) {
  constexpr size_t kStack = 64 * 1024;  // RunChild makes only system calls
  std::unique_ptr<char[]> stack(new char[kStack]);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  ChildArgs args{&options, &setup};
  const pid_t pid =
      clone(ChildEntry, stack.get() + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  const int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = clone_errno;
  return pid;
}

// In the parent: waits for the exec (the status pipe closes) or the child's
// report of the step that failed; on failure reaps the child and says why.
Status AwaitExec(const SpawnOptions& options, pid_t pid, Fd status_read) {
  ChildError child_error{0, 0};
  ssize_t got;
  do {
    got = read(status_read.get(), &child_error, sizeof child_error);
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(sizeof child_error)) return Status::Ok();
  int wstatus;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  std::string msg = "could not start " + options.argv[0] + ": " + StageName(child_error.stage) +
                    " failed: " + strerror(child_error.err);
  if (child_error.stage == kStageExec && child_error.err == ENOENT) return NotFound(msg);
  return Internal(msg);
}

// In the parent, once the program runs: collects its output, enforces the
// timeout and cancellation, and reaps it (and, with a new session, its
// process group). Fills all of `result` but the output.
class ChildWatch {
 public:
  using Clock = std::chrono::steady_clock;

  ChildWatch(const SpawnOptions& options, pid_t pid, Clock::time_point start, Fd out, Fd err)
      : options_(options),
        pid_(pid),
        start_(start),
        out_fd_(std::move(out)),
        err_fd_(std::move(err)),
        pidfd_(PidfdOpen(pid)),
        out_buf_(options.max_output_bytes),
        err_buf_(options.max_output_bytes) {}

  SpawnResult Run() {
    const bool has_deadline = options_.timeout.count() > 0;
    const auto deadline = start_ + options_.timeout;
    while (out_fd_.valid() || err_fd_.valid() || !exited_) {
      if (exited_ && !draining_) StartDraining();
      int wait_ms = PollTimeout(has_deadline, deadline);
      struct pollfd fds[3];
      int nfds = 0, out_i = -1, err_i = -1, pid_i = -1;
      if (out_fd_.valid()) fds[out_i = nfds++] = {out_fd_.get(), POLLIN, 0};
      if (err_fd_.valid()) fds[err_i = nfds++] = {err_fd_.get(), POLLIN, 0};
      if (!exited_ && pidfd_.valid()) fds[pid_i = nfds++] = {pidfd_.get(), POLLIN, 0};

      int n = nfds > 0 ? poll(fds, nfds, wait_ms) : 0;
      if (n < 0 && errno != EINTR) break;
      const auto now = Clock::now();
      if (n > 0) {
        if (out_i >= 0 && fds[out_i].revents) ReadInto(out_fd_, out_buf_);
        if (err_i >= 0 && fds[err_i].revents) ReadInto(err_fd_, err_buf_);
      }
      if (!exited_ && ChildGone(pid_i >= 0 && n > 0 && fds[pid_i].revents)) {
        OnChildExit();
        continue;
      }
      if (options_.cancelled && !exited_ && !result_.cancelled && !result_.timed_out &&
          options_.cancelled()) {
        result_.cancelled = true;
        KillAll();
        continue;
      }
      if (has_deadline && !result_.timed_out && !exited_ && now >= deadline) {
        result_.timed_out = true;
        KillAll();
        continue;
      }
      if (draining_ && now >= drain_deadline_) break;  // something escaped and holds the pipe
    }
    out_fd_.Reset();
    err_fd_.Reset();
    pidfd_.Reset();
    if (!exited_) {
      KillAll();
      Reap(true);
    }
    return Finish();
  }

 private:
  // How long the next poll may sleep (-1 = until something happens).
  int PollTimeout(bool has_deadline, Clock::time_point deadline) const {
    const auto now = Clock::now();
    auto until = [&](Clock::time_point t) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count();
      return static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(ms + 1, 60000)));
    };
    int wait_ms = -1;
    if (draining_) {
      wait_ms = until(drain_deadline_);
    } else if (has_deadline && !result_.timed_out) {
      wait_ms = until(deadline);
    }
    // Without a pidfd the exit is noticed by polling waitpid.
    if (!exited_ && !pidfd_.valid() && (wait_ms < 0 || wait_ms > 20)) wait_ms = 20;
    if (options_.cancelled && !exited_ && !result_.cancelled && (wait_ms < 0 || wait_ms > 100))
      wait_ms = 100;
    return wait_ms;
  }

  void ReadInto(Fd& fd, HeadTailBuffer& into) {
    ssize_t r = read(fd.get(), buf_, sizeof buf_);
    if (r > 0) {
      into.Append(buf_, static_cast<size_t>(r));
    } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
      fd.Reset();
    }
  }

  // Whether the child has exited (not yet reaped): the pidfd said so, or
  // without a pidfd, waitid without reaping.
  bool ChildGone(bool pidfd_ready) const {
    if (pidfd_ready) return true;
    if (pidfd_.valid()) return false;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    return waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_;
  }

  void KillAll() {
    if (options_.new_session) kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    if (options_.kill_extra) options_.kill_extra();
  }

  void Reap(bool block) {
    if (exited_) return;
    pid_t r;
    do {
      r = waitpid(pid_, &wstatus_, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) exited_ = true;
  }

  void OnChildExit() {
    // Kill the group while the leader is still an unreaped zombie, so its
    // pid (= the group id) cannot have been reused by then.
    if (options_.new_session) kill(-pid_, SIGKILL);
    if (options_.kill_extra) options_.kill_extra();
    Reap(true);
    StartDraining();
  }

  // The child is gone: read what is left, but not forever.
  void StartDraining() {
    draining_ = true;
    drain_deadline_ = Clock::now() + std::chrono::seconds(2);
  }

  SpawnResult Finish() {
    result_.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
    if (WIFEXITED(wstatus_) && !result_.timed_out && !result_.cancelled) {
      result_.exit_code = WEXITSTATUS(wstatus_);
    } else {
      result_.exit_code = -1;
      if (WIFSIGNALED(wstatus_)) result_.term_signal = WTERMSIG(wstatus_);
    }
    result_.truncated = out_buf_.truncated() || err_buf_.truncated();
    result_.out = out_buf_.Take();
    result_.err = err_buf_.Take();
    return std::move(result_);
  }

  const SpawnOptions& options_;
  const pid_t pid_;
  const Clock::time_point start_;
  Fd out_fd_, err_fd_, pidfd_;
  HeadTailBuffer out_buf_, err_buf_;
  SpawnResult result_;
  bool exited_ = false;
  int wstatus_ = 0;
  bool draining_ = false;
  Clock::time_point drain_deadline_{};
  char buf_[65536];
};

}  // namespace

Result<SpawnResult> Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty() || options.argv[0][0] != '/') {
    return Internal("Spawn needs an absolute program path");
  }
  // Everything the child touches is prepared before it starts.
  std::vector<std::string> argv_copy = options.argv;
  std::vector<std::string> env_copy = options.env;
  std::vector<char*> argv, envp;
  for (auto& s : argv_copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env_copy) envp.push_back(s.data());
  envp.push_back(nullptr);

  Pipe out, err, status;
  AF_RETURN_IF_ERROR(OpenPipe(&out));
  if (!options.merge_output) AF_RETURN_IF_ERROR(OpenPipe(&err));
  AF_RETURN_IF_ERROR(OpenPipe(&status));
  Fd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  const ChildSetup setup{argv.data(),
                         envp.data(),
                         devnull.get(),
                         out.write.get(),
                         options.merge_output ? out.write.get() : err.write.get(),
                         status.write.get()};

  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = StartChild(options, setup);
  if (pid < 0) {
    return Internal(std::string("clone: ") + strerror(errno),
                    "the machine may be out of processes");
  }

  // The child holds its own copies of the write ends; ours must close so that
  // reads see end-of-file when the child is done.
  out.write.Reset();
  err.write.Reset();
  status.write.Reset();
  devnull.Reset();
  AF_RETURN_IF_ERROR(AwaitExec(options, pid, std::move(status.read)));
  return ChildWatch(options, pid, start, std::move(out.read), std::move(err.read)).Run();
}

}  // namespace af::workspace_internal
