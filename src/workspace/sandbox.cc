#include "af/workspace/sandbox.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <system_error>
#include <vector>

#include "af/core/log.h"
#include "workspace/cgroup.h"
#include "workspace/subprocess.h"

namespace af {

namespace fs = std::filesystem;
using workspace_internal::PidsCgroup;
using workspace_internal::RunCgroup;
using workspace_internal::Spawn;
using workspace_internal::SpawnOptions;
using workspace_internal::SpawnResult;

namespace {

constexpr const char* kPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Nobody answers a command here (stdin is /dev/null): pagers print instead of
// waiting, tools skip colour codes and prompts (CI=1), and Python leaves no
// __pycache__ behind in the workspace.
constexpr const char* kNonInteractive[] = {"PAGER=cat",
                                           "GIT_PAGER=cat",
                                           "NO_COLOR=1",
                                           "TERM=dumb",
                                           "CI=1",
                                           "PYTHONDONTWRITEBYTECODE=1",
                                           "GIT_TERMINAL_PROMPT=0",
                                           "DEBIAN_FRONTEND=noninteractive"};

// A fresh directory under /tmp, removed with its content on destruction: the
// HOME and TMPDIR of a process-mode run, so tools do not litter the workspace.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = "/tmp/af-sandbox-XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What of /etc others may not read but this process may: files (shown as
// empty) and directories (shown empty), found once per process. The
// sandbox's root is the host's root when the server runs as root, and /etc
// holds secrets only root reads: password hashes, TLS keys, the provider keys
// in the service's environment file under /etc/default. The sandbox sees /etc
// as any other user would. What this process cannot read the sandbox cannot
// either, so a server not run as root masks nothing (each mask is a mount
// bubblewrap makes on every run).
struct EtcHidden {
  std::vector<std::string> files;
  std::vector<std::string> dirs;
};
const EtcHidden& HiddenInEtc() {
  static const EtcHidden hidden = [] {
    EtcHidden h;
    std::error_code ec;
    fs::recursive_directory_iterator it("/etc", fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      struct stat st;
      if (lstat(it->path().c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        if ((st.st_mode & S_IROTH) == 0 || (st.st_mode & S_IXOTH) == 0) {
          if (::access(it->path().c_str(), R_OK | X_OK) == 0) h.dirs.push_back(it->path().string());
          it.disable_recursion_pending();
        }
      } else if (S_ISREG(st.st_mode) && (st.st_mode & S_IROTH) == 0 &&
                 ::access(it->path().c_str(), R_OK) == 0) {
        h.files.push_back(it->path().string());
      }
    }
    return h;
  }();
  return hidden;
}

// bwrap's arguments up to (not including) the command: the system read-only,
// private /tmp, minimal /proc and /dev, the workdir read-write at its own path.
// `tmp_bytes` > 0 bounds each private /tmp (a tmpfs is memory).
std::vector<std::string> BwrapArgs(const std::string& bwrap, const std::string& workdir,
                                   bool network, const std::vector<fs::path>& read_only,
                                   uint64_t tmp_bytes = 0) {
  std::vector<std::string> a = {bwrap, "--die-with-parent", "--new-session", "--unshare-all"};
  if (network) a.push_back("--share-net");
  a.insert(a.end(), {"--ro-bind", "/usr", "/usr"});
  for (const char* dir : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st;
    if (lstat(dir, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      fs::path target = fs::read_symlink(dir, ec);
      if (!ec) a.insert(a.end(), {"--symlink", target.string(), dir});
    } else if (S_ISDIR(st.st_mode)) {
      a.insert(a.end(), {"--ro-bind", dir, dir});
    }
  }
  a.insert(a.end(), {"--ro-bind", "/etc", "/etc"});
  const EtcHidden& hidden = HiddenInEtc();
  for (const auto& f : hidden.files) a.insert(a.end(), {"--ro-bind", "/dev/null", f});
  for (const auto& d : hidden.dirs) a.insert(a.end(), {"--tmpfs", d});
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev"});
  for (const char* tmp : {"/tmp", "/var/tmp"}) {
    if (tmp_bytes > 0) a.insert(a.end(), {"--size", std::to_string(tmp_bytes)});
    a.insert(a.end(), {"--tmpfs", tmp});
  }
  // After the tmpfs mounts (which would hide them) and before the workdir
  // (which stays writable even when it lies under one of them).
  for (const auto& p : read_only) {
    if (p.is_absolute()) a.insert(a.end(), {"--ro-bind-try", p.string(), p.string()});
  }
  a.insert(a.end(), {"--bind", workdir, workdir, "--chdir", workdir});
  return a;
}

struct BwrapProbe {
  bool works = false;
  std::string bwrap;
  std::string reason;
};

// Runs `true` under bubblewrap once per process: binaries exist on machines
// where namespaces are forbidden (containers, hardened kernels).
const BwrapProbe& ProbeBwrap() {
  static const BwrapProbe probe = [] {
    BwrapProbe p;
    p.bwrap = workspace_internal::FindProgram("bwrap");
    if (p.bwrap.empty()) {
      p.reason = "bwrap not found on PATH";
      return p;
    }
    ScratchDir dir;
    if (dir.path().empty()) {
      p.reason = "cannot create a temporary directory";
      return p;
    }
    SpawnOptions opts;
    opts.argv = BwrapArgs(p.bwrap, dir.path(), false, {});
    opts.argv.insert(opts.argv.end(), {"/bin/sh", "-c", "true"});
    opts.env = {std::string("PATH=") + kPath};
    opts.new_session = true;
    opts.timeout = std::chrono::seconds(20);
    opts.max_output_bytes = 4096;
    auto r = Spawn(opts);
    if (!r.ok()) {
      p.reason = r.status().message();
    } else if (r->exit_code != 0) {
      std::string out = r->out;
      while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
      p.reason = r->timed_out ? "bwrap did not finish `true` within 20 s"
                              : "bwrap failed (exit " + std::to_string(r->exit_code) +
                                    (out.empty() ? ")" : "): " + out);
    } else {
      p.works = true;
    }
    return p;
  }();
  return probe;
}

// A run's result, or Cancelled (with `cancelled_hint`) when it was killed
// because its caller said so.
Result<RunResult> Finished(SpawnResult r, const std::string& command, const std::string& sandbox,
                           const char* cancelled_hint) {
  if (r.cancelled) {
    return Cancelled("`" + command.substr(0, 80) + "` was killed: the work it ran for ended",
                     cancelled_hint);
  }
  RunResult out;
  out.exit_code = r.exit_code;
  out.timed_out = r.timed_out;
  out.output = std::move(r.out);
  out.truncated = r.truncated;
  out.duration = r.duration;
  out.sandbox = sandbox;
  return out;
}

class SandboxImpl : public Sandbox {
 public:
  SandboxImpl(SandboxOptions options, std::string kind, std::string bwrap)
      : Sandbox(std::move(options), std::move(kind)), bwrap_(std::move(bwrap)) {}

  void Describe(std::string warning) {
    const bool isolated = !bwrap_.empty();
    const auto& cg = PidsCgroup();
    isolation_.filesystem = isolated;
    isolation_.network = isolated && !options_.network;
    isolation_.memory_limit = options_.memory_mb > 0;
    if (options_.max_processes > 0) {
      if (cg.available) {
        isolation_.process_limit = true;
        isolation_.process_limit_by = cg.kind;
      } else if (geteuid() != 0) {
        isolation_.process_limit = true;
        isolation_.process_limit_by = "RLIMIT_NPROC";
      }
    }
    if (options_.max_processes > 0 && !isolation_.process_limit) {
      if (!warning.empty()) warning += "; ";
      warning += "max_processes is not enforced: no writable cgroup pids controller (" + cg.reason +
                 ") and RLIMIT_NPROC does not bind root";
    }
    warning_ = std::move(warning);
  }

  Result<RunResult> Run(const std::string& command, const fs::path& workdir,
                        const std::function<bool()>& cancelled) override {
    std::error_code ec;
    if (!workdir.is_absolute() || !fs::is_directory(workdir, ec)) {
      return InvalidArgument("sandbox workdir '" + workdir.string() +
                             "' is not an existing absolute directory");
    }
    const std::string dir = fs::canonical(workdir, ec).string();
    if (ec) return InvalidArgument("sandbox workdir '" + workdir.string() + "': " + ec.message());

    if (stopped_) return Stopped(command);
    SpawnOptions opts;
    opts.new_session = true;
    opts.cancelled = [this, &cancelled] { return stopped_.load() || (cancelled && cancelled()); };
    opts.timeout = options_.timeout;
    opts.max_output_bytes = options_.max_output_bytes;
    opts.merge_output = true;
    opts.cwd = dir;
    if (options_.memory_mb > 0) opts.rlimit_as_bytes = options_.memory_mb * 1024 * 1024;

    std::unique_ptr<RunCgroup> cgroup;
    if (options_.max_processes > 0) {
      if (isolation_.process_limit_by.rfind("cgroup", 0) == 0) {
        // bwrap itself takes two processes of the budget.
        AF_ASSIGN_OR_RETURN(cgroup, RunCgroup::Create(options_.max_processes + 2));
        opts.cgroup_procs = cgroup->procs_file();
        RunCgroup* cg = cgroup.get();
        opts.kill_extra = [cg] { cg->KillAll(); };
      } else if (geteuid() != 0) {
        opts.rlimit_nproc = options_.max_processes;
      }
    }

    std::optional<ScratchDir> scratch;  // process mode only: bwrap mounts a private /tmp
    if (bwrap_.empty()) {
      scratch.emplace();
      if (scratch->path().empty()) return Internal("cannot create a scratch directory in /tmp");
      opts.argv = {"/bin/sh", "-c", command};
      opts.env = {std::string("PATH=") + kPath, "HOME=" + scratch->path(),
                  "TMPDIR=" + scratch->path(), "LANG=C.UTF-8"};
      opts.env.insert(opts.env.end(), std::begin(kNonInteractive), std::end(kNonInteractive));
    } else {
      // The private /tmp is memory too: bounded as the process is.
      opts.argv = BwrapArgs(bwrap_, dir, options_.network, options_.read_only_paths,
                            static_cast<uint64_t>(options_.memory_mb) * 1024 * 1024);
      opts.argv.insert(opts.argv.end(), {"/bin/sh", "-c", command});
      opts.env = {std::string("PATH=") + kPath, "HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"};
      opts.env.insert(opts.env.end(), std::begin(kNonInteractive), std::end(kNonInteractive));
    }
    AF_ASSIGN_OR_RETURN(SpawnResult r, Spawn(opts));
    cgroup.reset();  // kills leftovers and removes the cgroup before we return
    if (r.cancelled && stopped_) return Stopped(command);
    return Finished(std::move(r), command, kind_,
                    "nothing to do: the feature was cancelled, failed or timed out");
  }

 private:
  static Status Stopped(const std::string& command) {
    return Cancelled("`" + command.substr(0, 80) + "` was not run to its end: the sandbox stopped",
                     "the work resumes on the next start");
  }

  std::string bwrap_;  // empty in process mode
};

}  // namespace

Result<RunResult> RunOnHost(const std::string& command, const fs::path& workdir,
                            std::vector<std::string> env, std::chrono::milliseconds timeout,
                            const std::function<bool()>& cancelled) {
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", command};
  opts.env = std::move(env);
  opts.cwd = workdir.string();
  opts.new_session = true;
  opts.timeout = timeout;
  opts.max_output_bytes = SandboxOptions().max_output_bytes;
  opts.merge_output = true;
  opts.cancelled = cancelled;
  AF_ASSIGN_OR_RETURN(SpawnResult r, Spawn(opts));
  return Finished(std::move(r), command, "none", "nothing to do: it runs again on the next start");
}

std::string RunResult::ToText() const {
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f s", static_cast<double>(duration.count()) / 1000.0);
  std::string head;
  if (timed_out) {
    head = std::string("timed out: killed after ") + secs;
  } else if (exit_code < 0) {
    head = std::string("killed by a signal after ") + secs;
  } else {
    // No duration here: the text goes back to the model, and a conversation
    // resumed after a crash replays its recorded answers only while it sends
    // the same text (a command that took 0.2 s instead of 0.1 s would make
    // the model be asked, and paid, again).
    head = "exit " + std::to_string(exit_code);
  }
  return head + "\n" + (output.empty() ? "(no output)" : output);
}

Result<std::unique_ptr<Sandbox>> Sandbox::Create(const SandboxOptions& options) {
  if (options.timeout.count() <= 0) return InvalidArgument("sandbox timeout must be positive");
  if (options.memory_mb < 0 || (options.memory_mb > 0 && options.memory_mb < 16)) {
    return InvalidArgument("sandbox memory_mb must be 0 (no limit) or at least 16");
  }
  if (options.max_processes < 0) return InvalidArgument("sandbox max_processes must be >= 0");
  if (options.max_output_bytes < 1024) {
    return InvalidArgument("sandbox max_output_bytes must be at least 1024");
  }

  using Mode = SandboxOptions::Mode;
  std::unique_ptr<SandboxImpl> sandbox;
  std::string warning;
  if (options.mode == Mode::kProcess) {
    sandbox = std::make_unique<SandboxImpl>(options, "process", "");
    warning =
        "process sandbox (requested): commands run as plain processes with timeout and "
        "process-group kill only; no file system or network isolation";
  } else {
    const BwrapProbe& probe = ProbeBwrap();
    if (probe.works) {
      sandbox = std::make_unique<SandboxImpl>(options, "bubblewrap", probe.bwrap);
    } else if (options.mode == Mode::kBubblewrap) {
      return FailedPrecondition("bubblewrap sandbox unavailable: " + probe.reason,
                                "install bubblewrap (apt-get install bubblewrap) and allow user "
                                "namespaces, or use sandbox mode auto/process");
    } else {
      sandbox = std::make_unique<SandboxImpl>(options, "process", "");
      warning = "bubblewrap unavailable (" + probe.reason +
                "): commands run as plain processes with timeout and process-group kill only; "
                "install bubblewrap for isolation";
      static std::once_flag logged;
      std::call_once(logged, [&] { af::log::Get("workspace")->warn("{}", warning); });
    }
  }
  sandbox->Describe(std::move(warning));
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

}  // namespace af
