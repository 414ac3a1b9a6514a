// `agent-factory doctor [--json] [--fix]`: the checks against this machine.
// Every check is bounded in time (network calls 5 s, the sandbox probe its
// own timeout) and never prints a secret (keys are masked).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "af/app/services.h"
#include "af/bus/bus.h"
#include "af/core/json_util.h"
#include "af/core/private_files.h"
#include "af/core/strings.h"
#include "af/llm/http_transport.h"
#include "af/memory/embedder.h"
#include "af/memory/knowledge.h"
#include "af/memory/vector_index.h"
#include "af/store/store.h"
#include "af/workspace/programs.h"
#include "af/workspace/sandbox.h"
#include "cli/doctor.h"

extern char** environ;

namespace af::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr auto kNetTimeout = std::chrono::seconds(5);

std::map<std::string, std::string> ProcessEnv() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

DoctorCheck Ok(std::string name, std::string found) {
  DoctorCheck c;
  c.name = std::move(name);
  c.found = std::move(found);
  return c;
}

DoctorCheck Bad(std::string name, std::string found, std::string fix) {
  DoctorCheck c;
  c.name = std::move(name);
  c.ok = false;
  c.found = std::move(found);
  c.fix = std::move(fix);
  return c;
}

DoctorCheck FromFinding(std::string name, const Finding& f) {
  return f.ok ? Ok(std::move(name), f.found) : Bad(std::move(name), f.found, f.fix);
}

std::string Octal(unsigned mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

std::string FirstLine(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

// The things the checks share: the configuration, and the store and the
// server once found.
struct Context {
  LoadedConfig loaded;
  std::map<std::string, std::string> env;
  std::unique_ptr<Store> store;  // open (schema current), or null
  std::string store_absent;      // why the store is not open, for later checks
  std::string server;            // base URL of an answering agent-factory, or ""
  json health;                   // its /health answer
  std::shared_ptr<HttpTransport> http = MakeCurlTransport();

  const Config& config() const { return loaded.config; }
};

// --- Configuration and data directory ----------------------------------------

DoctorCheck CheckConfig(const Context& ctx) {
  const auto& issues = ctx.loaded.issues;
  if (issues.empty()) {
    std::string files;
    for (const auto& f : ctx.loaded.files) files += (files.empty() ? "" : ", ") + f;
    return Ok("config", "valid (" +
                            (files.empty() ? std::string("built-in defaults and environment")
                                           : "read " + files) +
                            ")");
  }
  std::string found =
      std::to_string(issues.size()) + " problem" + (issues.size() == 1 ? "" : "s") + ": ";
  for (size_t i = 0; i < issues.size(); ++i) found += (i ? "; " : "") + issues[i].ToString();
  return Bad("config", found,
             "correct the named settings; `agent-factory config validate` checks again");
}

DoctorCheck CheckDataDir(const Context& ctx) {
  const std::string dir = ctx.config().data_dir;
  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) {
    // Below a file (AF_DATA_DIR=/etc/hosts/data), nothing can create it.
    fs::path up = fs::path(dir).parent_path();
    while (!up.empty() && up != up.root_path() && !fs::exists(up, ec)) up = up.parent_path();
    if (!up.empty() && fs::exists(up, ec) && !fs::is_directory(up, ec)) {
      return Bad("data_dir",
                 dir + " does not exist and cannot be created: " + up.string() +
                     " is a file, not a directory",
                 "set AF_DATA_DIR (or --data-dir) to a path under a directory");
    }
    DoctorCheck c = Bad("data_dir", dir + " does not exist",
                        "`agent-factory doctor --fix` creates it (mode 0700), or point "
                        "AF_DATA_DIR at the right directory");
    c.apply = [dir]() -> Result<std::string> {
      if (std::error_code e = CreatePrivateDirectories(dir))
        return Unavailable("cannot create " + dir + ": " + e.message(),
                           "create it yourself, or choose another AF_DATA_DIR");
      return "created " + dir + " (mode 0700)";
    };
    return c;
  }
  if (!fs::is_directory(st)) {
    return Bad("data_dir", dir + " is not a directory",
               "move that file aside, or set AF_DATA_DIR to a directory");
  }
  // access(W_OK) says yes to root on a read-only mount: really create a file.
  const std::string probe = dir + "/.doctor-probe-" + std::to_string(getpid());
  int fd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    return Bad("data_dir", dir + " is not writable (" + std::strerror(err) + ")",
               "make it writable by this user (chown/chmod), or set AF_DATA_DIR=/a/writable/dir");
  }
  ::close(fd);
  ::unlink(probe.c_str());
  struct stat sb {};
  ::stat(dir.c_str(), &sb);
  Finding mode = PrivateModeFinding(dir, sb.st_mode, true);
  if (!mode.ok) {
    DoctorCheck c = Bad("data_dir", mode.found, mode.fix);
    c.apply = [dir]() -> Result<std::string> {
      if (::chmod(dir.c_str(), 0700) != 0)
        return Unavailable("cannot chmod " + dir + ": " + std::strerror(errno), "");
      return "chmod 700 " + dir;
    };
    return c;
  }
  return Ok("data_dir", dir + " exists, is writable, mode " + Octal(sb.st_mode));
}

DoctorCheck CheckFreeSpace(const Context& ctx) {
  fs::path dir = ctx.config().data_dir;
  std::error_code ec;
  while (!dir.empty() && !fs::exists(dir, ec) && dir != dir.parent_path()) dir = dir.parent_path();
  struct statvfs sv {};
  if (::statvfs(dir.c_str(), &sv) != 0) {
    return Bad("free_space",
               "cannot measure the free space of " + dir.string() + ": " + std::strerror(errno),
               "check that the data directory's parent exists");
  }
  return FromFinding(
      "free_space", FreeSpaceFinding(dir.string(), static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize,
                                     static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize));
}

// --- The store -------------------------------------------------------------------

Result<std::unique_ptr<Store>> OpenStore(const Config& c, bool migrate) {
  StoreOptions opts;
  opts.url = c.DatabaseUrl();
  opts.migrate = migrate;
  opts.busy_timeout = std::chrono::milliseconds(c.database.busy_timeout_ms);
  return Store::Open(opts);
}

std::string SqlitePath(const std::string& url) {
  if (url.rfind("sqlite:", 0) != 0 || url == "sqlite::memory:") return "";
  std::string path = url.substr(7);
  if (path.rfind("//", 0) == 0) path = path.substr(2);
  return path;
}

// Adds "database" and "schema"; leaves ctx.store open when the schema is current.
void CheckStore(Context& ctx, std::vector<DoctorCheck>* out) {
  const Config& c = ctx.config();
  const std::string url = c.DatabaseUrl();
  const std::string path = SqlitePath(url);
  std::error_code ec;
  if (!path.empty() && !fs::exists(path, ec)) {
    out->push_back(Ok("database", path + " not created yet (made at the first start)"));
    out->push_back(Ok("schema", "no database yet: every migration runs at the first start"));
    ctx.store_absent = "no database yet";
    return;
  }
  auto store = OpenStore(c, false);
  if (!store.ok()) {
    out->push_back(Bad("database", store.status().message(),
                       store.status().hint().empty() ? "check database.url / DATABASE_URL"
                                                     : store.status().hint()));
    ctx.store_absent = "the database cannot be opened";
    return;
  }
  out->push_back(Ok("database", (*store)->Describe() + " opens"));
  auto status = (*store)->GetMigrationStatus();
  if (!status.ok()) {
    out->push_back(Bad("schema", status.status().message(), status.status().hint()));
    ctx.store_absent = "the schema cannot be read";
    return;
  }
  if (Status newer = CheckSchemaNotNewer(*status); !newer.ok()) {
    out->push_back(Bad("schema", newer.message(), newer.hint()));
    ctx.store_absent = "the schema is newer than this binary";
    return;
  }
  if (!status->pending.empty()) {
    DoctorCheck check = Bad(
        "schema",
        "version " + std::to_string(status->current_version) + " of " +
            std::to_string(status->latest_version) + ": " + std::to_string(status->pending.size()) +
            " migration" + (status->pending.size() == 1 ? "" : "s") + " pending",
        "agent-factory db migrate (or `agent-factory doctor --fix`); take a backup first");
    Config copy = c;
    check.apply = [copy]() -> Result<std::string> {
      AF_ASSIGN_OR_RETURN(auto s, OpenStore(copy, false));
      AF_ASSIGN_OR_RETURN(auto applied, s->Migrate());
      return "applied " + std::to_string(applied.size()) + " migration" +
             (applied.size() == 1 ? "" : "s") + " (what `agent-factory db migrate` does)";
    };
    out->push_back(std::move(check));
    ctx.store_absent = "migrations are pending";
    return;
  }
  out->push_back(
      Ok("schema", "version " + std::to_string(status->current_version) + " (up to date)"));
  ctx.store = std::move(*store);
}

DoctorCheck CheckRedis(const Context& ctx) {
  BusOptions opts;
  opts.url = ctx.config().redis.url;
  auto bus = Bus::Open(opts);
  if (!bus.ok()) {
    return Bad("redis", "REDIS_URL is set: " + bus.status().message(), bus.status().hint());
  }
  // Open connects (and authenticates): reaching this line means Redis answers.
  return Ok("redis", "connected to " + (*bus)->Describe());
}

// --- Programs and the sandbox ----------------------------------------------------

DoctorCheck CheckProgram(const std::string& check, const std::string& program,
                         const std::string& install) {
  const std::string path = FindProgramOnPath(program);
  if (path.empty()) {
    return Bad(check, program + " not found on PATH", "install it: " + install);
  }
  auto r = RunProgram({path, "--version"}, kNetTimeout);
  if (!r.ok()) return Bad(check, path + " cannot be started: " + r.status().message(), install);
  if (r->exit_code != 0) {
    return Bad(
        check,
        path + " --version failed (" +
            (r->timed_out ? std::string("timed out") : "exit " + std::to_string(r->exit_code)) +
            (r->output.empty() ? "" : ": " + FirstLine(r->output)) + ")",
        "reinstall it: " + install);
  }
  return Ok(check, FirstLine(r->output) + " (" + path + ")");
}

// Runs a probe in the sandbox that tries to write outside its directory and
// to reach a port this process listens on: both must fail.
DoctorCheck CheckSandbox() {
  const std::string fix =
      "install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces "
      "(sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 also "
      "kernel.apparmor_restrict_unprivileged_userns=0)";
  SandboxOptions opts;
  opts.timeout = std::chrono::seconds(10);
  auto sandbox = Sandbox::Create(opts);
  if (!sandbox.ok()) return Bad("sandbox", sandbox.status().message(), fix);
  if ((*sandbox)->kind() != "bubblewrap") {
    return Bad("sandbox",
               "bubblewrap cannot run here, so commands would run without file-system or "
               "network isolation: " +
                   (*sandbox)->warning(),
               fix);
  }
  char work_t[] = "/tmp/af-doctor-work-XXXXXX";
  char out_t[] = "/tmp/af-doctor-outside-XXXXXX";
  if (!mkdtemp(work_t) || !mkdtemp(out_t))
    return Bad("sandbox", std::string("cannot make a temporary directory: ") + std::strerror(errno),
               "check that /tmp is writable");
  const std::string outside = std::string(out_t) + "/escaped";
  // A listener on the host's loopback: a sandbox without its own network
  // namespace could connect to it.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (lfd >= 0 && ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::listen(lfd, 4) == 0 && ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  const std::string cmd =
      "{ echo escaped > " + outside +
      "; } 2>/dev/null; cat /proc/net/dev 2>/dev/null; if command -v bash >/dev/null; then "
      "bash -c 'exec 3<>/dev/tcp/127.0.0.1/" +
      std::to_string(port) + "' 2>/dev/null && echo NET-REACHED; fi; exit 0";
  auto r = (*sandbox)->Run(cmd, work_t);
  bool reached = false;
  if (lfd >= 0) {
    int c = ::accept(lfd, nullptr, nullptr);
    if (c >= 0) {
      reached = true;
      ::close(c);
    }
    ::close(lfd);
  }
  std::error_code ec;
  const bool escaped = fs::exists(outside, ec);
  fs::remove_all(work_t, ec);
  fs::remove_all(out_t, ec);
  if (!r.ok()) return Bad("sandbox", "the probe could not run: " + r.status().message(), fix);
  std::vector<std::string> interfaces;
  for (size_t pos = 0; pos < r->output.size();) {
    size_t end = r->output.find('\n', pos);
    if (end == std::string::npos) end = r->output.size();
    std::string line = r->output.substr(pos, end - pos);
    pos = end + 1;
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.find('|') != std::string::npos) continue;
    // "  eth0: 1234 5 0 ..." (an interface and its counters).
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    const size_t first = line.find_first_not_of(' ', colon + 1);
    const bool counters =
        first != std::string::npos && std::isdigit(static_cast<unsigned char>(line[first]));
    if (counters && !name.empty() && name != "lo" && name.find_first_of(" /") == std::string::npos)
      interfaces.push_back(name);
  }
  if (r->output.find("NET-REACHED") != std::string::npos) reached = true;
  if (escaped || reached || !interfaces.empty()) {
    std::string what;
    if (escaped) what += "a write outside the workspace succeeded";
    if (reached)
      what += std::string(what.empty() ? "" : "; ") + "the host's loopback was reachable";
    if (!interfaces.empty())
      what += std::string(what.empty() ? "" : "; ") + "network interface " + interfaces[0] +
              " is visible";
    return Bad("sandbox", "bubblewrap runs but does not isolate: " + what,
               "use Debian's /usr/bin/bwrap (not a wrapper), and check that nothing on PATH "
               "shadows it");
  }
  return Ok("sandbox",
            "bubblewrap isolates: a write outside the workspace and a connection to the host "
            "both failed");
}

// --- The port and a running server ---------------------------------------------------

// True when something accepts TCP connections at host:port (within 2 s).
bool SomethingListens(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
  bool listening = false;
  for (addrinfo* ai = res; ai && !listening; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc == 0) {
      listening = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 2000) == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        listening = err == 0;
      }
    }
    ::close(fd);
  }
  freeaddrinfo(res);
  return listening;
}

Result<ClientResponse> HttpGet(Context& ctx, const std::string& url,
                               std::vector<std::pair<std::string, std::string>> headers = {}) {
  ClientRequest req;
  req.method = "GET";
  req.url = url;
  req.headers = std::move(headers);
  req.timeout = kNetTimeout;
  req.connect_timeout = kNetTimeout;
  return ctx.http->Send(req, nullptr);
}

void CheckPort(Context& ctx, std::vector<DoctorCheck>* out) {
  const Config& c = ctx.config();
  std::string host = c.server.host;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  const std::string where = "port " + std::to_string(c.server.port) + " on " + c.server.host;
  if (!SomethingListens(host, c.server.port)) {
    out->push_back(Ok("port", where + " is free (no server running)"));
    return;
  }
  const std::string base = "http://" +
                           (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                           std::to_string(c.server.port);
  auto live = HttpGet(ctx, base + "/health/live");
  json live_body = live.ok() ? json::parse(live->body, nullptr, false) : json();
  if (!live.ok() || live->status != 200 || !live_body.is_object() ||
      live_body.value("status", "") != "alive") {
    out->push_back(Bad("port",
                       where +
                           " is held by another program (not an agent-factory: it does not answer "
                           "/health/live)",
                       "find it with `ss -ltnp | grep :" + std::to_string(c.server.port) +
                           "` and stop it, or use another port (--port / AF_PORT)"));
    return;
  }
  ctx.server = base;
  out->push_back(
      Ok("port", where + " is held by a running agent-factory (it answers /health/live)"));
  auto health = HttpGet(ctx, base + "/health");
  ctx.health = health.ok() ? json::parse(health->body, nullptr, false) : json();
  if (!ctx.health.is_object()) {
    out->push_back(Bad("server_health", "the running server's /health did not answer with JSON",
                       "look at <data_dir>/logs/agent-factory.log"));
    return;
  }
  const std::string status = ctx.health.value("status", "unknown");
  std::string components;
  if (ctx.health.contains("components") && ctx.health["components"].is_object()) {
    for (auto& [k, v] : ctx.health["components"].items()) {
      if (v.is_string() && v.get<std::string>() != "healthy")
        components += (components.empty() ? "" : ", ") + k + " " + v.get<std::string>();
    }
  }
  const std::string found = "the server (" + ctx.health.value("version", "?") + ") is " + status +
                            (components.empty() ? "" : ": " + components);
  out->push_back(status == "healthy" ? Ok("server_health", found)
                                     : Bad("server_health", found,
                                           "`agent-factory health` shows each component; the log "
                                           "(<data_dir>/logs/agent-factory.log) says why"));
}

// --- Agents and queues ---------------------------------------------------------------

DoctorCheck CheckAgents(Context& ctx) {
  if (!ctx.server.empty() && ctx.health.is_object() && ctx.health.contains("components")) {
    const json& agents = ctx.health["components"].value("agents", json::object());
    std::string bad, all;
    for (auto& [role, state] : agents.items()) {
      const std::string s = state.is_string() ? state.get<std::string>() : DumpJson(state);
      all += (all.empty() ? "" : ", ") + role + " " + s;
      if (s == "offline" || s.rfind("degraded", 0) == 0)
        bad += (bad.empty() ? "" : ", ") + role + " " + s;
    }
    if (!bad.empty()) {
      return Bad(
          "agents",
          "in the running server: " + bad + " (an agent is offline after 90 s without a heartbeat)",
          "read the server log for that role's errors; restart `agent-factory serve` if "
          "it stays so");
    }
    // The agent list (with the admin key the server wrote) says how many there are.
    std::string count;
    std::ifstream key_file(fs::path(ctx.config().data_dir) / "admin.key");
    std::string key;
    std::getline(key_file, key);
    if (!key.empty()) {
      auto list = HttpGet(ctx, ctx.server + "/api/v1/agents", {{"Authorization", "Bearer " + key}});
      json body =
          list.ok() && list->status == 200 ? json::parse(list->body, nullptr, false) : json();
      if (body.is_object() && body.contains("agents") && body["agents"].is_array())
        count = std::to_string(body["agents"].size()) + " agents; ";
    }
    return Ok("agents",
              "in the running server: " + count + (all.empty() ? "none registered" : all));
  }
  if (!ctx.store) return Ok("agents", "not checked: " + ctx.store_absent);
  auto agents = ctx.store->ListAgents();
  if (!agents.ok()) return Bad("agents", agents.status().message(), agents.status().hint());
  int64_t last = 0;
  for (const auto& a : *agents) last = std::max(last, a.last_heartbeat_ms);
  std::string found = "no server running; " + std::to_string(agents->size()) + " agents recorded";
  if (last > 0) found += ", last heartbeat " + FormatUtcMillis(last);
  return Ok("agents", found);
}

DoctorCheck CheckQueues(Context& ctx) {
  if (!ctx.store) return Ok("queues", "not checked: " + ctx.store_absent);
  std::map<std::string, int> waiting;  // role -> tasks not yet done
  int features = 0;
  for (std::string_view status :
       {"queued", "planning", "implementing", "testing", "reviewing", "delivering"}) {
    FeatureFilter filter;
    filter.status = std::string(status);
    filter.limit = 1000;
    auto page = ctx.store->ListFeatures(filter);
    if (!page.ok()) return Bad("queues", page.status().message(), page.status().hint());
    for (const auto& f : page->features) {
      ++features;
      auto tasks = ctx.store->ListTasks(f.id);
      if (!tasks.ok()) return Bad("queues", tasks.status().message(), tasks.status().hint());
      if (tasks->empty()) ++waiting["planner"];
      for (const auto& t : *tasks) {
        if (t.status == "pending" || t.status == "ready" || t.status == "in_progress")
          ++waiting[t.role];
      }
    }
  }
  std::string orphaned, fix;
  for (const auto& [role, n] : waiting) {
    auto it = ctx.config().agents.find(role);
    if (it != ctx.config().agents.end() && it->second.replicas < 1) {
      orphaned += (orphaned.empty() ? "" : "; ") + std::to_string(n) + " " + role + " task" +
                  (n == 1 ? "" : "s") + " waiting with agents." + role + ".replicas = 0";
      fix += (fix.empty() ? "" : " and ") + ("agents." + role + ".replicas");
    }
  }
  if (!orphaned.empty()) {
    return Bad("queues", orphaned + ": nobody consumes them",
               "set " + fix + " to 1 or more and restart");
  }
  if (features == 0) return Ok("queues", "no unfinished feature");
  std::string roles;
  for (const auto& [role, n] : waiting)
    roles += (roles.empty() ? "" : ", ") + role + " " + std::to_string(n);
  return Ok("queues", std::to_string(features) + " unfinished feature" +
                          (features == 1 ? "" : "s") + "; work waiting for " +
                          (roles.empty() ? "nobody" : roles) + ", each role has agents");
}

// --- The knowledge index ---------------------------------------------------------------

DoctorCheck CheckKnowledgeIndex(Context& ctx) {
  if (!ctx.store) return Ok("knowledge_index", "not checked: " + ctx.store_absent);
  KnowledgeOptions ko = KnowledgeOptionsFromConfig(ctx.config());
  const std::string reindex = "agent-factory kb reindex (or `agent-factory doctor --fix`)";
  Config copy = ctx.config();
  auto apply = [copy]() -> Result<std::string> {
    AF_ASSIGN_OR_RETURN(auto store, OpenStore(copy, false));
    AF_ASSIGN_OR_RETURN(
        auto kb, KnowledgeBase::OpenForRebuild(store.get(), KnowledgeOptionsFromConfig(copy)));
    AF_RETURN_IF_ERROR(kb->Reindex());
    AF_ASSIGN_OR_RETURN(auto stats, kb->Stats());
    return "rebuilt the knowledge index (what `agent-factory kb reindex` does): " +
           std::to_string(stats.chunk_vectors) + " chunk vectors, " +
           std::to_string(stats.memory_vectors) + " memory vectors";
  };
  auto embedder = Embedder::Create(ko.embedder);
  if (!embedder.ok())
    return Bad("knowledge_index", embedder.status().message(), embedder.status().hint());
  auto probe = (*embedder)->Embed({"dimension probe"});
  if (!probe.ok() || probe->empty() || (*probe)[0].empty()) {
    return Bad(
        "knowledge_index",
        "the embedder does not answer: " +
            (probe.ok() ? std::string("no vector") : probe.status().message()),
        probe.ok() ? "check embeddings.base_url and embeddings.model" : probe.status().hint());
  }
  const int dims = static_cast<int>((*probe)[0].size());
  struct Part {
    const char* file;
    const char* what;
    Result<std::vector<int64_t>> labels;
  } parts[] = {{"chunks.hnsw", "chunk", ctx.store->ChunkLabels()},
               {"memories.hnsw", "memory", ctx.store->MemoryLabels()}};
  std::string problems, summary;
  for (auto& part : parts) {
    if (!part.labels.ok())
      return Bad("knowledge_index", part.labels.status().message(), part.labels.status().hint());
    auto index = VectorIndex::Open(ko.index_dir / part.file, (*embedder)->Id(), dims, ko.index);
    if (!index.ok()) {
      DoctorCheck c = Bad("knowledge_index", index.status().message(), reindex);
      c.apply = apply;
      return c;
    }
    std::vector<int64_t> have = (*index)->Labels();
    const std::vector<int64_t>& want = *part.labels;
    std::vector<int64_t> missing, extra;
    std::set_difference(want.begin(), want.end(), have.begin(), have.end(),
                        std::back_inserter(missing));
    std::set_difference(have.begin(), have.end(), want.begin(), want.end(),
                        std::back_inserter(extra));
    if (!missing.empty() || !extra.empty()) {
      problems += (problems.empty() ? "" : "; ") + std::string(part.what) + " index " + part.file +
                  " has " + std::to_string(have.size()) + " vectors for " +
                  std::to_string(want.size()) + " rows (" + std::to_string(missing.size()) +
                  " missing, " + std::to_string(extra.size()) + " extra)";
    }
    const bool memory = std::string(part.what) == "memory";
    summary += (summary.empty() ? "" : ", ") + std::to_string(want.size()) + " " +
               (want.size() == 1 ? part.what : (memory ? "memories" : "chunks"));
  }
  if (!problems.empty()) {
    DoctorCheck c = Bad("knowledge_index", problems + ": out of step with the database", reindex);
    c.apply = apply;
    return c;
  }
  return Ok("knowledge_index",
            "in step with the database (" + summary + " indexed by " + (*embedder)->Id() + ")");
}

// --- The model provider ------------------------------------------------------------------

std::string SourceOf(const LoadedConfig& loaded, const std::string& key) {
  auto it = loaded.origin.find(key);
  return it == loaded.origin.end() ? "unknown" : it->second;
}

void CheckProvider(Context& ctx, std::vector<DoctorCheck>* out) {
  const Config& c = ctx.config();
  const std::string provider = c.llm.provider;
  if (provider != "anthropic" && provider != "openai") {
    out->push_back(Ok("provider", "'" + provider +
                                      "' (recorded answers, offline): no key, network, clock or "
                                      "proxy check needed"));
    return;
  }
  const bool anthropic = provider == "anthropic";
  const Config::Provider& p = anthropic ? c.anthropic : c.openai;
  const std::string key_name = anthropic ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY";
  std::string base = p.base_url.empty()
                         ? (anthropic ? "https://api.anthropic.com" : "https://api.openai.com/v1")
                         : p.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  // Anthropic's base has no /v1; OpenAI's (and compatible servers') has it.
  const std::string url = base + (anthropic ? "/v1/models" : "/models");

  if (p.api_key.empty()) {
    if (!anthropic && !p.base_url.empty()) {
      out->push_back(
          Ok("provider_key", "no key (the local server at " + base + " may not need one)"));
    } else {
      out->push_back(Bad("provider_key", key_name + " not set",
                         "export " + key_name +
                             "=... (or put it in .env); "
                             "`agent-factory config show-key` shows what is configured"));
    }
  } else {
    out->push_back(Ok("provider_key", provider + " key " + MaskSecret(p.api_key) + " (from " +
                                          SourceOf(ctx.loaded, provider + ".api_key") + ")"));
  }
  std::vector<std::pair<std::string, std::string>> headers;
  if (anthropic) {
    headers = {{"anthropic-version", "2023-06-01"}};
    if (!p.api_key.empty()) headers.emplace_back("x-api-key", p.api_key);
  } else if (!p.api_key.empty()) {
    headers.emplace_back("Authorization", "Bearer " + p.api_key);
  }
  const int64_t before = static_cast<int64_t>(std::time(nullptr));
  auto r = HttpGet(ctx, url, headers);
  const int64_t after = static_cast<int64_t>(std::time(nullptr));
  const std::string base_var = anthropic ? "ANTHROPIC_BASE_URL" : "OPENAI_BASE_URL";
  if (!r.ok()) {
    const Status& s = r.status();
    std::string found = s.code() == Code::kDeadlineExceeded
                            ? "no answer from " + url + " within 5 s: " + s.message()
                            : "unreachable: " + s.message();  // it names the URL
    out->push_back(Bad("provider", found,
                       s.code() == Code::kFailedPrecondition && !s.hint().empty()
                           ? s.hint()
                           : "check " + base_var +
                                 ", that the server runs, the network and the proxy settings "
                                 "(see the proxy check)"));
    out->push_back(Ok("clock", "not checked: the provider did not answer"));
  } else {
    if (r->status == 401 || r->status == 403) {
      out->push_back(Bad("provider",
                         provider + " refused the key " + MaskSecret(p.api_key) + " (HTTP " +
                             std::to_string(r->status) + " from " + url + ")",
                         "check the key for typos or expiry (`agent-factory config show-key` "
                         "shows it masked and its source); set a valid " +
                             key_name));
    } else if (r->status >= 200 && r->status < 300) {
      out->push_back(Ok("provider", url + " answered " + std::to_string(r->status) +
                                        ": reachable, key accepted"));
    } else {
      out->push_back(Bad("provider", url + " answered HTTP " + std::to_string(r->status),
                         "check " + base_var +
                             " (it must be the API's base URL) and the "
                             "provider's status page"));
    }
    auto date = r->headers.find("date");
    std::optional<int64_t> server_s =
        date == r->headers.end() ? std::nullopt : ParseHttpDate(date->second);
    if (!server_s) {
      out->push_back(Ok("clock", "not checked: the provider's answer has no Date header"));
    } else {
      // The local time nearest the server's during the exchange: latency is not skew.
      const int64_t local = *server_s < before ? before : (*server_s > after ? after : *server_s);
      std::string host =
          base.substr(base.find("://") == std::string::npos ? 0 : base.find("://") + 3);
      host = host.substr(0, host.find('/'));
      if (size_t at = host.rfind('@'); at != std::string::npos) host = host.substr(at + 1);
      out->push_back(FromFinding("clock", ClockSkewFinding(host, local, *server_s)));
    }
  }
  out->push_back(FromFinding("proxy", ProxyFinding(ctx.env, url)));
}

// --- Secrets files -------------------------------------------------------------------------

DoctorCheck CheckSecretsFiles(const Context& ctx) {
  const Config& c = ctx.config();
  std::vector<fs::path> files = {fs::path(c.config_dir) / "secrets.age",
                                 fs::path(c.config_dir) / "identity.key",
                                 fs::path(c.data_dir) / "admin.key"};
  std::string problems, fixes, seen;
  std::vector<std::string> loose;
  for (const auto& f : files) {
    struct stat sb {};
    if (::stat(f.c_str(), &sb) != 0) continue;
    seen += (seen.empty() ? "" : ", ") + f.filename().string();
    Finding m = PrivateModeFinding(f.string(), sb.st_mode, false);
    if (!m.ok) {
      problems += (problems.empty() ? "" : "; ") + m.found;
      fixes += (fixes.empty() ? "" : "; ") + m.fix;
      loose.push_back(f.string());
    }
  }
  if (!loose.empty()) {
    DoctorCheck check = Bad("secrets_files", problems, fixes);
    check.apply = [loose]() -> Result<std::string> {
      std::string done;
      for (const auto& f : loose) {
        if (::chmod(f.c_str(), 0600) != 0)
          return Unavailable("cannot chmod " + f + ": " + std::strerror(errno), "");
        done += (done.empty() ? "" : "; ") + ("chmod 600 " + f);
      }
      return done;
    };
    return check;
  }
  if (seen.empty())
    return Ok("secrets_files", "not used (no secrets file in " + c.config_dir + ")");
  return Ok("secrets_files", seen + ": mode 0600");
}

std::vector<DoctorCheck> RunChecks(const GlobalOptions& g) {
  Context ctx;
  ctx.loaded = LoadForCli(g);
  ctx.env = ProcessEnv();
  std::vector<DoctorCheck> out;
  out.push_back(CheckConfig(ctx));
  out.push_back(CheckDataDir(ctx));
  out.push_back(CheckFreeSpace(ctx));
  CheckStore(ctx, &out);
  if (!ctx.config().redis.url.empty()) out.push_back(CheckRedis(ctx));
  out.push_back(CheckProgram("git", "git", "apt-get install git"));
  out.push_back(CheckProgram("bubblewrap", "bwrap", "apt-get install bubblewrap"));
  out.push_back(CheckSandbox());
  CheckPort(ctx, &out);
  out.push_back(CheckAgents(ctx));
  out.push_back(CheckQueues(ctx));
  out.push_back(CheckKnowledgeIndex(ctx));
  CheckProvider(ctx, &out);
  out.push_back(CheckSecretsFiles(ctx));
  // Checks quote the URLs they called: their passwords never reach the report.
  for (auto& c : out) {
    c.found = MaskUrlPasswords(c.found);
    c.fix = MaskUrlPasswords(c.fix);
  }
  return out;
}

}  // namespace

DoctorReport RunDoctor(const GlobalOptions& g, bool fix) {
  DoctorReport report;
  report.checks = RunChecks(g);
  if (!fix) return report;
  std::map<std::string, std::string> fixed;
  for (auto& c : report.checks) {
    if (c.ok || !c.apply) continue;
    auto done = c.apply();
    fixed[c.name] = done.ok() ? *done : std::string(kCouldNotFix) + done.status().message();
  }
  if (fixed.empty()) return report;
  report.checks = RunChecks(g);
  for (auto& c : report.checks) {
    if (auto it = fixed.find(c.name); it != fixed.end()) c.fixed = it->second;
  }
  return report;
}

int Doctor(const GlobalOptions& g, bool fix) {
  DoctorReport report = RunDoctor(g, fix);
  if (g.json) {
    std::cout << DumpJson(report.ToJson(), 2) << "\n";
  } else {
    std::cout << report.ToText();
  }
  return report.ok() ? kExitOk : kExitFailure;
}

}  // namespace af::cli
