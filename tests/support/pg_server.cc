#include "support/pg_server.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <pqxx/pqxx>

namespace af::testing {
namespace {

namespace fs = std::filesystem;

// PG_BINDIR if set, else the newest /usr/lib/postgresql/N/bin holding initdb.
std::string FindBinDir() {
  if (const char* env = std::getenv("PG_BINDIR"); env != nullptr && *env != '\0') {
    return fs::exists(fs::path(env) / "initdb") ? std::string(env) : std::string();
  }
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    fs::path bin = entry.path() / "bin";
    if (!fs::exists(bin / "initdb") || !fs::exists(bin / "pg_ctl")) continue;
    int version = std::atoi(entry.path().filename().c_str());
    found.emplace_back(version, bin.string());
  }
  if (found.empty()) return {};
  return std::max_element(found.begin(), found.end())->second;
}

}  // namespace

Status PgServer::RunAs(const std::vector<std::string>& argv, const std::string& doing) const {
  std::vector<std::string> full;
  if (as_postgres_user_) full = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (auto& a : full) args.push_back(a.data());
  args.push_back(nullptr);
  // Not RunCommand: `pg_ctl start` leaves the postmaster running, and it
  // would inherit every descriptor of this process (RunCommand's output
  // pipes, the listening sockets of fake servers). Output goes to a file and
  // the child closes everything else before exec.
  fs::path out = dir_.path() / "command.out";
  pid_t pid = fork();
  if (pid < 0) return Unavailable("test PostgreSQL: fork failed", "check process limits");
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (devnull < 0 || fd < 0 || chdir(dir_.path().c_str()) != 0) _exit(126);
    dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    for (int i = 3; i < 4096; ++i) close(i);
    setenv("LC_ALL", "C", 1);  // initdb must not depend on the machine's locales
    setenv("LANG", "C", 1);
    execv(args[0], args.data());
    _exit(127);
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return Status::Ok();
  std::string log = ReadFile(dir_.path() / "server.log");
  return Unavailable("test PostgreSQL: " + doing + " failed (status " + std::to_string(wstatus) +
                         "): " + ReadFile(out) + (log.empty() ? "" : "\nserver.log:\n" + log),
                     "see the output above");
}

Result<std::unique_ptr<PgServer>> PgServer::Start() {
  std::string bindir = FindBinDir();
  if (bindir.empty()) {
    return Unavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
        "or $PG_BINDIR: the PostgreSQL store tests are SKIPPED",
        "run scripts/setup (it installs postgresql and libpqxx-dev)");
  }
  std::unique_ptr<PgServer> s(new PgServer());
  s->bindir_ = bindir;
  s->as_postgres_user_ = geteuid() == 0;
  if (s->as_postgres_user_) {
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return Unavailable("running as root and there is no `postgres` user to run PostgreSQL as",
                         "run scripts/setup (the postgresql package creates the user) or run "
                         "the tests as an ordinary user");
    }
    // The temp dir is root's and 0700: hand it to postgres (root can still
    // remove it).
    if (chown(s->dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Unavailable("cannot chown " + s->dir_.path().string() + " to postgres",
                         "check the temp directory's file system");
    }
  }
  AF_RETURN_IF_ERROR(s->InitDataDir());
  s->port_ = FreePort();
  AF_RETURN_IF_ERROR(s->StartAgain());
  return s;
}

Status PgServer::InitDataDir() {
  const fs::path data = dir_.path() / "data";
  const std::vector<std::string> initdb = {
      bindir_ + "/initdb", "-U",        "postgres", "-A", "trust", "-E", "UTF8",
      "--locale=C",        "--no-sync", "-D"};
  // Named by user, server version and these initdb options ("v1": change it
  // when they change).
  std::string key = bindir_;
  std::replace(key.begin(), key.end(), '/', '_');
  const fs::path tmpl = fs::temp_directory_path() /
                        ("af-test-pg-template-" + std::to_string(geteuid()) + key + "-v1");
  const std::string lock_path = tmpl.string() + ".lock";
  const int lock = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) {  // no template then: a cluster of its own
    if (lock >= 0) close(lock);
    std::vector<std::string> argv = initdb;
    argv.push_back(data.string());
    return RunAs(argv, "initdb");
  }
  Status made = Status::Ok();
  std::error_code ec;
  if (!fs::exists(tmpl / "PG_VERSION", ec)) {
    // Made aside and renamed once complete: an interrupted initdb leaves no
    // half template behind.
    const fs::path fresh = tmpl.string() + ".new-" + std::to_string(getpid());
    fs::remove_all(fresh, ec);
    std::vector<std::string> argv = initdb;
    argv.push_back(fresh.string());
    made = RunAs(argv, "initdb");
    if (made.ok()) {
      fs::remove_all(tmpl, ec);
      fs::rename(fresh, tmpl, ec);
      if (ec)
        made = Unavailable("test PostgreSQL: cannot rename " + fresh.string() + ": " + ec.message(),
                           "check the temp directory");
    }
    if (!made.ok()) fs::remove_all(fresh, ec);
  }
  // cp -a as the server's user keeps the owner and the 0700 mode it needs.
  if (made.ok())
    made = RunAs({"/bin/cp", "-a", tmpl.string(), data.string()}, "copying " + tmpl.string());
  flock(lock, LOCK_UN);
  close(lock);
  return made;
}

Result<PgServer*> PgServer::Shared() {
  static std::mutex mu;
  static std::unique_ptr<PgServer> server;
  static Status failure;
  std::lock_guard<std::mutex> lock(mu);
  if (server) return server.get();
  if (!failure.ok()) return failure;
  auto started = Start();
  if (!started.ok()) {
    failure = started.status();
    return failure;
  }
  server = std::move(started).value();
  return server.get();
}

Status PgServer::StartAgain() {
  if (running_) return Status::Ok();
  // -F: no fsync (throwaway data). -k: the unix socket stays in the temp dir
  // (not /var/run/postgresql, which may not exist or be writable).
  std::string opts = "-p " + std::to_string(port_) + " -h 127.0.0.1 -k " + dir_.path().string() +
                     " -F -c max_connections=200";
  AF_RETURN_IF_ERROR(
      RunAs({bindir_ + "/pg_ctl", "-D", (dir_.path() / "data").string(), "-l",
             (dir_.path() / "server.log").string(), "-o", opts, "-w", "-t", "60", "start"},
            "pg_ctl start"));
  running_ = true;
  return Status::Ok();
}

Status PgServer::Stop() {
  if (!running_) return Status::Ok();
  running_ = false;
  return RunAs(
      {bindir_ + "/pg_ctl", "-D", (dir_.path() / "data").string(), "-m", "fast", "-w", "stop"},
      "pg_ctl stop");
}

Status PgServer::Restart() {
  AF_RETURN_IF_ERROR(Stop());
  return StartAgain();
}

PgServer::~PgServer() {
  if (running_) {
    (void)RunAs({bindir_ + "/pg_ctl", "-D", (dir_.path() / "data").string(), "-m", "immediate",
                 "-w", "stop"},
                "pg_ctl stop");
  }
}

std::string PgServer::url(const std::string& db) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

Result<std::string> PgServer::CreateDatabase() {
  std::string name = "af_test_" + std::to_string(getpid()) + "_" + std::to_string(++next_db_);
  try {
    pqxx::connection c(url("postgres"));
    pqxx::nontransaction n(c);
    n.exec0("CREATE DATABASE " + name);
  } catch (const std::exception& e) {
    return Unavailable("test PostgreSQL: CREATE DATABASE " + name + " failed: " + e.what(),
                       "see server.log in the test server's temp directory");
  }
  return url(name);
}

}  // namespace af::testing
