// Feature load: N minimal features submitted at once to `agent-factory serve`,
// against a scripted fake model with a fixed latency; measures the wall time,
// the server's CPU per feature (and its children's: git, the sandbox), the time
// from created to delivered, and the server's peak memory.
//
// The minimal feature: a plan with one task that writes one file, gate `true`,
// four model calls (planner submit_plan; coder write_file, then finish;
// reviewer approve). The fake model (tests/support/fake_llm_server.h) answers
// by the role in the system prompt and the number of assistant turns so far,
// over the OpenAI wire format, each reply after --latency-ms, on connections
// kept open for the next request as providers do.
//
// Each N gets a fresh server (free port, temp data dir, replicas of the
// per-feature roles and limits.max_active_features raised to N; replicas stop
// at 64, the most the configuration accepts). One warm-up
// feature runs first on every server and is reported apart: it also creates
// the project's repository, a one-time cost. N = 1 ("alone") runs
// --alone-repeats features one after another; its median wall time is the
// reference of the efficiency figure (wall of one alone / wall of all), so it
// runs first when the list has it.
//
// Every figure is measured: wall time from just before the first POST to the
// last delivery (the store's event timestamps), CPU from /proc/<pid>/stat
// (utime+stime of the server, cutime+cstime of its reaped children, in clock
// ticks: 10 ms resolution), peak RSS from VmHWM. While features run, the bench
// asks the server for the number of finished features every 200 ms (one small
// query; that cost is in the server's CPU figure). A feature that does not
// complete, a model request the script does not know, or a timeout is printed
// loudly and makes the exit status 1.
//
// Usage: af_feature_load [--features N|LIST]... [--latency-ms MS]
//                        [--binary PATH] [--alone-repeats R] [--timeout-s S]
//                        [--show-events] [--database-url URL] [--redis-url URL]
//                        [--workers K] [--watch-pid PID]...
// e.g. --features 1,50,500 (or --features 1 --features 50). One line per N
// starts with "RESULT " and holds key=value pairs, for bench/feature_load.sh.
// --show-events also prints every event of one feature of each N, with its
// time after the feature was created.
//
// Scaled out (bench/scale.sh starts the servers): --database-url names a
// PostgreSQL server (postgresql://USER@HOST:PORT/DB; each N's server gets a
// fresh database created there), --redis-url a redis-server (each N's server
// gets a Redis database number of its own, 1..15 in turn). --workers K: serve
// runs with --no-agents and K `worker` processes (every per-feature role,
// the replicas split between them) share its data directory, store and bus;
// the CPU and peak RSS figures are then the sums over serve and the workers.
// --watch-pid PID (repeatable, e.g. the postmaster and redis-server): their
// CPU over each batch (their own, their live children's and their reaped
// children's) is reported per feature as backend_cpu_ms.
//
// af_feature_load --fake-only [--latency-ms MS]: serves only the scripted fake
// model, prints "FAKE_URL http://127.0.0.1:PORT" and runs until SIGTERM/SIGINT
// (then prints how many requests each role made and its CPU time), so other
// implementations of the same feature (bench/langgraph) call the same model.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_pg.h"
#include "support/fake_llm_server.h"
#include "support/http_client.h"
#include "support/pipeline_harness.h"
#include "support/test_util.h"

namespace {

using json = nlohmann::json;
using af::testing::FakeReply;
using af::testing::RecordedRequest;
using Clock = std::chrono::steady_clock;

constexpr const char* kTerminal[] = {"completed", "failed", "cancelled"};
// The per-feature roles; the coordinator and optimizer run one instance whatever is configured.
constexpr const char* kScaledRoles[] = {"PLANNER", "CODER", "TESTER", "REVIEWER", "DEVOPS"};

// The configuration refuses more replicas of a role than this.
constexpr int kMaxReplicas = 64;
int Replicas(int n) { return std::min(n, kMaxReplicas); }

// "1.00 0.80 0.50" (/proc/loadavg: 1, 5 and 15 minutes).
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "feature_load: %s\n", what.c_str());
  std::exit(2);
}

// --- The scripted model -------------------------------------------------------

// What the fake model saw, by role; requests it has no script for are counted
// apart (and answered with an error, which fails their feature).
struct ModelLog {
  std::mutex mu;
  std::map<std::string, int64_t> by_role;
  int64_t unscripted = 0;
  std::string first_unscripted;  // the start of its system prompt
};

FakeReply Tools(std::vector<af::testing::FakeToolCall> calls, std::chrono::milliseconds latency) {
  FakeReply r = FakeReply::Tools(std::move(calls));
  r.latency = latency;
  return r;
}

// The minimal feature's four calls (the same script as the integration tests' perfect run).
std::optional<FakeReply> MinimalFeatureTurn(const RecordedRequest& req,
                                            std::chrono::milliseconds latency, ModelLog& log) {
  using af::testing::Call;
  const std::string role = af::testing::AgentRoleOf(req);
  const int turn = af::testing::AssistantTurns(req);
  {
    std::lock_guard<std::mutex> lock(log.mu);
    if (role.empty() || (role == "coder" && turn > 1) || (role != "coder" && turn > 0)) {
      if (log.unscripted++ == 0) log.first_unscripted = af::testing::SystemText(req).substr(0, 120);
      FakeReply r = FakeReply::Status(
          500, R"({"error":{"type":"api_error","message":"bench: no script for this request"}})");
      r.latency = latency;
      return r;
    }
    ++log.by_role[role];
  }
  if (role == "planner") {
    return Tools({Call("submit_plan", {{"tasks", json::array({{
                                                     {"id", "t1"},
                                                     {"title", "Write the file"},
                                                     {"description", "Write it.txt."},
                                                     {"role", "coder"},
                                                     {"dependencies", json::array()},
                                                     {"files", {"it.txt"}},
                                                 }})}})},
                 latency);
  }
  if (role == "coder") {
    return turn == 0
               ? Tools({Call("write_file", {{"path", "it.txt"}, {"content", "ok\n"}})}, latency)
               : Tools({Call("finish", {{"summary", "wrote it.txt"}})}, latency);
  }
  return Tools({Call("submit_review", {{"verdict", "approve"}, {"comments", {"the gate passes"}}})},
               latency);
}

std::string RoleCounts(ModelLog& log) {
  std::lock_guard<std::mutex> lock(log.mu);
  std::string out;
  for (const auto& [role, n] : log.by_role) out += " " + role + "=" + std::to_string(n);
  out += " unscripted=" + std::to_string(log.unscripted);
  return out;
}

// --- The server process -------------------------------------------------------

struct Cpu {
  int64_t self_ticks = 0;      // utime + stime
  int64_t children_ticks = 0;  // cutime + cstime (reaped children only)
};

std::optional<Cpu> ReadCpu(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(paren + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  // Fields from 3 (state) on: utime is field 14, i.e. f[11].
  if (f.size() < 15) return std::nullopt;
  Cpu c;
  c.self_ticks = std::stoll(f[11]) + std::stoll(f[12]);
  c.children_ticks = std::stoll(f[13]) + std::stoll(f[14]);
  return c;
}

double TicksToMs(int64_t ticks) { return 1000.0 * ticks / sysconf(_SC_CLK_TCK); }

// A "Name:" line of /proc/<pid>/status, e.g. VmHWM ("123456 kB"), as a number.
int64_t StatusNumber(int pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + ":", 0) == 0) return std::atoll(line.c_str() + name.size() + 1);
  }
  return -1;
}

// "2024-01-02T03:04:05.678Z" -> unix ms (-1 when it is not that form).
int64_t ParseUtcMillis(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return int64_t{timegm(&tm)} * 1000 + ms;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// One feature's history, from the replay of its event stream.
struct FeatureHistory {
  std::string id;
  std::string status;  // the last status it reached
  int64_t created_ms = -1;
  int64_t delivered_ms = -1;                              // the transition to completed
  std::string ended;                                      // how a failed or cancelled feature ended
  std::vector<std::pair<int64_t, std::string>> entered;   // (when, status), in event order
  std::vector<std::pair<int64_t, std::string>> timeline;  // (ts, "type [to]") of every event
};

// Where the store and the bus live, and how the agents run.
struct Backends {
  std::string database_url;  // empty: SQLite in the data dir
  std::string redis_url;     // empty: the in-process bus
  int workers = 0;           // 0: the agents run in serve
  std::vector<int> watch_pids;
};

// A fresh database for one server; its URL.
std::string CreateDatabase(const std::string& url) {
  static int next = 0;
  const std::string name =
      "af_feature_load_" + std::to_string(getpid()) + "_" + std::to_string(++next);
  std::string error;
  std::string created = af::bench::CreateDatabase(url, name, &error);
  if (created.empty()) Die(error);
  return created;
}

// A Redis database number of its own for each server (1..15 in turn), emptied first.
std::string FreshRedisDb(const std::string& url) {
  static int next = 0;
  const int db = 1 + (next++ % 15);
  std::string base = url;
  if (size_t scheme = base.find("://"); scheme != std::string::npos) {
    if (size_t slash = base.find('/', scheme + 3); slash != std::string::npos) base.resize(slash);
  }
  std::string hostport = base.substr(base.find("://") + 3);
  if (size_t at = hostport.rfind('@'); at != std::string::npos) hostport = hostport.substr(at + 1);
  const std::string host = hostport.substr(0, hostport.find(':'));
  const std::string port =
      hostport.find(':') == std::string::npos ? "6379" : hostport.substr(hostport.find(':') + 1);
  auto r = af::testing::RunCommand(
      {"/usr/bin/redis-cli", "-h", host, "-p", port, "-n", std::to_string(db), "FLUSHDB"});
  if (r.exit_code != 0) Die("redis-cli FLUSHDB failed: " + r.out + r.err);
  return base + "/" + std::to_string(db);
}

// CPU of `pid` and of its live children (e.g. PostgreSQL's backends), reaped ones included.
Cpu TreeCpu(int pid) {
  Cpu total;
  if (auto c = ReadCpu(pid)) total = *c;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return total;
  for (dirent* d; (d = readdir(proc)) != nullptr;) {
    const int child = std::atoi(d->d_name);
    if (child <= 0) continue;
    std::ifstream in("/proc/" + std::to_string(child) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t paren = text.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(text.substr(paren + 2));
    std::string state;
    int ppid = 0;
    fields >> state >> ppid;
    if (ppid != pid) continue;
    if (auto c = ReadCpu(child)) total.self_ticks += c->self_ticks + c->children_ticks;
  }
  closedir(proc);
  return total;
}

class Server {
 public:
  Server(const std::string& binary, int n, const std::string& fake_url, const Backends& backends)
      : backends_(backends) {
    port_ = af::testing::FreePort();
    std::map<std::string, std::string> env = {
        {"AF_LOG", "warn"},
        {"AF_PORT", std::to_string(port_)},
        {"AF_DATA_DIR", dir_.path().string()},
        {"AF_LLM_PROVIDER", "openai"},
        {"AF_LLM_MODEL", "gpt-4o-mini"},
        {"OPENAI_API_KEY", "sk-bench-feature-load-0000"},
        {"OPENAI_BASE_URL", fake_url + "/v1"},
        {"AF_LLM_MAX_RETRIES", "0"},
        {"AF_LIMITS_MAX_ACTIVE_FEATURES", std::to_string(n)},
        {"AF_API_RATE_LIMIT_PER_MINUTE", "10000000"},
    };
    // With workers, the replicas are split between them.
    const int workers = std::max(0, backends.workers);
    const int replicas =
        workers == 0 ? Replicas(n) : std::max(1, (Replicas(n) + workers - 1) / workers);
    for (const char* role : kScaledRoles) {
      env[std::string("AF_AGENTS_") + role + "_REPLICAS"] = std::to_string(replicas);
    }
    env["DATABASE_URL"] =
        backends.database_url.empty() ? "\x01unset" : CreateDatabase(backends.database_url);
    env["REDIS_URL"] = backends.redis_url.empty() ? "\x01unset" : FreshRedisDb(backends.redis_url);
    std::vector<std::string> argv = {binary, "serve"};
    if (workers > 0) argv.push_back("--no-agents");
    // cwd = the data dir, so no agent-factory.toml or .env of the caller applies.
    child_ = std::make_unique<af::testing::ChildProcess>(argv, env, dir_.path().string());
    bool up = af::testing::WaitFor(
        [&] {
          if (!child_->Running()) return true;
          auto r = af::testing::HttpCall(port_, "GET", "/health/live");
          return r.ok() && r->status == 200;
        },
        std::chrono::seconds(60));
    // Die() exits without destructors: stop the child first, so it is not left behind.
    if (!up || !child_->Running()) {
      child_->Stop(SIGKILL);
      Die("the server did not start (" + binary + "): " + child_->Err().substr(0, 2000));
    }
    for (int w = 0; w < workers; ++w) {
      workers_.push_back(std::make_unique<af::testing::ChildProcess>(
          std::vector<std::string>{binary, "worker", "--roles",
                                   "planner,coder,tester,reviewer,devops"},
          env, dir_.path().string()));
      auto& worker = *workers_.back();
      bool ready = af::testing::WaitFor(
          [&] {
            return !worker.Running() ||
                   worker.Out().find("Agent Factory worker on") != std::string::npos;
          },
          std::chrono::seconds(60));
      if (!ready || !worker.Running()) {
        for (auto& p : workers_) p->Stop(SIGKILL);
        child_->Stop(SIGKILL);
        Die("worker " + std::to_string(w + 1) + " did not start: " + worker.Err().substr(0, 2000));
      }
    }
    key_ = af::testing::ReadFile(dir_.path() / "admin.key");
    while (!key_.empty() && (key_.back() == '\n' || key_.back() == '\r')) key_.pop_back();
    if (key_.empty()) {
      for (auto& p : workers_) p->Stop(SIGKILL);
      child_->Stop(SIGKILL);
      Die("no admin key in the data dir");
    }
  }

  ~Server() {
    for (auto& w : workers_) {
      if (w->Running() && w->Stop(SIGTERM, std::chrono::seconds(60)) == -2) {
        std::fprintf(stderr, "feature_load: a worker did not stop within 60 s of SIGTERM\n");
      }
    }
    if (child_->Running() && child_->Stop(SIGTERM, std::chrono::seconds(60)) == -2) {
      std::fprintf(stderr, "feature_load: the server did not stop within 60 s of SIGTERM\n");
    }
  }

  int pid() const { return child_->pid(); }
  bool Running() {
    for (auto& w : workers_) {
      if (!w->Running()) return false;
    }
    return child_->Running();
  }
  std::string Err() const {
    std::string err = child_->Err();
    for (auto& w : workers_) err += w->Err();
    return err;
  }
  // CPU of serve and the workers together (nullopt if one cannot be read).
  std::optional<Cpu> ReadAllCpu() {
    auto total = ReadCpu(child_->pid());
    for (auto& w : workers_) {
      auto c = ReadCpu(w->pid());
      if (!total || !c) return std::nullopt;
      total->self_ticks += c->self_ticks;
      total->children_ticks += c->children_ticks;
    }
    return total;
  }
  // CPU of the watched processes (the database and Redis servers), all in self_ticks.
  int64_t BackendTicks() const {
    int64_t ticks = 0;
    for (int pid : backends_.watch_pids) {
      Cpu c = TreeCpu(pid);
      ticks += c.self_ticks + c.children_ticks;
    }
    return ticks;
  }
  // A "Name:" number of /proc/<pid>/status summed over serve and the workers.
  int64_t SumStatus(const std::string& name) const {
    int64_t sum = StatusNumber(child_->pid(), name);
    for (auto& w : workers_) sum += StatusNumber(w->pid(), name);
    return sum;
  }
  size_t workers() const { return workers_.size(); }

  af::Result<af::testing::HttpReply> Call(const std::string& method, const std::string& path,
                                          const std::string& body = {}) {
    af::testing::HttpCallOptions o;
    o.headers = {{"Authorization", "Bearer " + key_}};
    if (!body.empty()) o.headers["Content-Type"] = "application/json";
    o.body = body;
    o.timeout = std::chrono::seconds(120);
    return af::testing::HttpCall(port_, method, path, o);
  }

  // Submits a minimal feature; its id, or the error.
  af::Result<std::string> Submit(const std::string& title) {
    json body = {{"title", title},
                 {"description",
                  "A benchmark feature driven by a scripted fake model: one task writes one "
                  "file, the gate is `true`."},
                 {"requirements", {"write it.txt"}},
                 {"acceptance_criteria", {"the validation gates pass"}},
                 {"tech_stack", "posix shell"},
                 {"validation_gates", {"true"}},
                 {"challenge_vague_requirements", false}};
    auto r = Call("POST", "/api/v1/features", body.dump());
    if (!r.ok()) return r.status();
    if (r->status != 201) {
      return af::Internal("POST /api/v1/features answered " + std::to_string(r->status) + ": " +
                          r->body.substr(0, 300));
    }
    return json::parse(r->body, nullptr, false).value("id", "");
  }

  // How many features are in `status` (-1 when the server did not answer).
  int64_t Count(const std::string& status) {
    auto r = Call("GET", "/api/v1/features?status=" + status + "&limit=1");
    if (!r.ok() || r->status != 200) return -1;
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j.contains("pagination")) return -1;
    return j["pagination"].value("total", int64_t{-1});
  }

  // The replay of a finished feature's events (the stream ends after it).
  FeatureHistory History(const std::string& id) {
    FeatureHistory h;
    h.id = id;
    // Only a finished feature's stream ends after its history; a running
    // one's would stream on, so it is reported by its status alone.
    auto f = Call("GET", "/api/v1/features/" + id);
    if (!f.ok() || f->status != 200) {
      h.ended = "could not read it: " +
                (f.ok() ? "HTTP " + std::to_string(f->status) : f.status().ToString());
      return h;
    }
    const std::string status = json::parse(f->body, nullptr, false).value("status", "");
    if (status != "completed" && status != "failed" && status != "cancelled") {
      h.status = status;
      return h;
    }
    auto r = Call("GET", "/api/v1/features/" + id + "/events");
    if (!r.ok() || r->status != 200) {
      h.ended = "could not read its events: " +
                (r.ok() ? "HTTP " + std::to_string(r->status) : r.status().ToString());
      return h;
    }
    std::istringstream lines(r->body);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("data: ", 0) != 0) continue;
      json e = json::parse(line.substr(6), nullptr, false);
      if (!e.is_object()) continue;
      const std::string type = e.value("type", "");
      const int64_t ts = ParseUtcMillis(e.value("ts", ""));
      const json data = e.value("data", json::object());
      h.timeline.emplace_back(
          ts, type + (type == "feature.status" ? " -> " + data.value("to", "") : "") +
                  (e.value("agent", json()).is_string() ? " (" + e["agent"].get<std::string>() + ")"
                                                        : ""));
      if (type == "feature.created") {
        h.created_ms = ts;
        h.status = data.value("status", "queued");
        h.entered.emplace_back(ts, h.status);
      } else if (type == "feature.status") {
        h.status = data.value("to", "");
        h.entered.emplace_back(ts, h.status);
        if (h.status == "completed") h.delivered_ms = ts;
        if (h.status == "failed" || h.status == "cancelled") {
          h.ended = "in " + data.value("from", std::string("?")) + ": " +
                    data.value("message", std::string()) +
                    (data.value("hint", std::string()).empty()
                         ? ""
                         : " (hint: " + data.value("hint", std::string()) + ")");
        }
      }
    }
    return h;
  }

 private:
  af::testing::TempDir dir_;
  int port_ = 0;
  std::string key_;
  Backends backends_;
  std::unique_ptr<af::testing::ChildProcess> child_;
  std::vector<std::unique_ptr<af::testing::ChildProcess>> workers_;
};

// --- One batch ------------------------------------------------------------------

struct Batch {
  int n = 0;
  int64_t submitted = 0;
  int64_t completed = 0;
  bool timed_out = false;
  double wall_s = -1;                      // first POST -> last delivery
  double cpu_ms = 0, children_cpu_ms = 0;  // per feature
  double backend_cpu_ms = 0;               // per feature: the watched processes
  std::vector<double> latencies_ms;        // created -> delivered, per completed feature
  std::map<std::string, std::vector<double>> stage_ms;  // status -> time spent in it
  std::map<std::string, int> failures;                  // reason -> count
  int64_t polls = 0;
  FeatureHistory first;  // the first completed feature's history (for --show-events)
};

// Submits `n` features at once (from up to 32 client threads), waits until all
// are finished or `timeout` passes, and measures. `finished_before`: features
// already finished on this server (warm-up, earlier rounds).
Batch RunBatch(Server& server, int n, int64_t finished_before, std::chrono::seconds timeout,
               const std::string& label) {
  Batch b;
  b.n = n;
  auto cpu0 = server.ReadAllCpu();
  const int64_t backend0 = server.BackendTicks();
  if (!cpu0) {
    ++b.failures["cannot read /proc/" + std::to_string(server.pid()) + "/stat"];
    b.timed_out = true;  // nothing was measured: the run is reported as failed
    return b;
  }
  const int64_t start_ms = NowUnixMs();
  const auto start = Clock::now();
  std::vector<std::string> ids(n);
  std::mutex mu;
  std::atomic<int> next{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < std::min(n, 32); ++t) {
    clients.emplace_back([&] {
      for (int i; (i = next++) < n;) {
        auto id = server.Submit(label + " #" + std::to_string(i + 1));
        std::lock_guard<std::mutex> lock(mu);
        if (id.ok() && !id->empty()) {
          ids[i] = *id;
        } else {
          ++b.failures["not accepted: " +
                       (id.ok() ? std::string("no id") : id.status().ToString())];
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  for (const auto& id : ids) b.submitted += !id.empty();

  // Wait: finished = completed + failed + cancelled (each a count query).
  int64_t finished = 0;
  auto last_report = Clock::now();
  while (true) {
    if (!server.Running()) {
      ++b.failures["the server exited: " + server.Err().substr(0, 500)];
      break;
    }
    finished = 0;
    for (const char* s : kTerminal) finished += std::max<int64_t>(0, server.Count(s));
    ++b.polls;
    if (finished - finished_before >= b.submitted) break;
    if (Clock::now() - start > timeout) {
      b.timed_out = true;
      break;
    }
    if (Clock::now() - last_report > std::chrono::seconds(15)) {
      last_report = Clock::now();
      std::fprintf(stderr, "  ... %s: %lld of %lld finished after %.0f s\n", label.c_str(),
                   static_cast<long long>(finished - finished_before),
                   static_cast<long long>(b.submitted),
                   std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto cpu1 = server.ReadAllCpu();
  if (cpu1) {
    b.cpu_ms = TicksToMs(cpu1->self_ticks - cpu0->self_ticks) / std::max(1, n);
    b.children_cpu_ms = TicksToMs(cpu1->children_ticks - cpu0->children_ticks) / std::max(1, n);
  }
  b.backend_cpu_ms = TicksToMs(server.BackendTicks() - backend0) / std::max(1, n);

  // Each feature's history (after the CPU reading: this costs the server too).
  int64_t last_delivery = -1;
  std::vector<FeatureHistory> histories(n);
  next = 0;
  clients.clear();
  for (int t = 0; t < std::min(n, 8); ++t) {
    clients.emplace_back([&] {
      for (int i; (i = next++) < n;) {
        if (!ids[i].empty()) histories[i] = server.History(ids[i]);
      }
    });
  }
  for (auto& t : clients) t.join();
  for (const auto& h : histories) {
    if (h.id.empty()) continue;
    if (h.status == "completed" && h.created_ms > 0 && h.delivered_ms > 0) {
      if (b.completed++ == 0) b.first = h;
      b.latencies_ms.push_back(static_cast<double>(h.delivered_ms - h.created_ms));
      last_delivery = std::max(last_delivery, h.delivered_ms);
      // Time in each status: until the next one was entered (in event order:
      // a feature enters planning in the same millisecond it is created).
      for (size_t i = 0; i + 1 < h.entered.size(); ++i) {
        b.stage_ms[h.entered[i].second].push_back(
            static_cast<double>(h.entered[i + 1].first - h.entered[i].first));
      }
    } else if (h.status == "failed" || h.status == "cancelled") {
      ++b.failures[h.status + " " + h.ended.substr(0, 300)];
    } else if (!h.ended.empty()) {
      ++b.failures[h.ended];
    } else {
      ++b.failures["not finished (last status: " + (h.status.empty() ? "?" : h.status) + ")"];
    }
  }
  if (last_delivery > 0 && b.completed == b.submitted && !b.timed_out) {
    b.wall_s = (last_delivery - start_ms) / 1000.0;
  } else {
    b.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return b;
}

// --- Report -----------------------------------------------------------------------

struct Options {
  std::vector<int> features;
  int latency_ms = 50;
  std::string binary;
  int alone_repeats = 5;
  int timeout_s = 600;
  bool show_events = false;
  bool fake_only = false;
  Backends backends;
};

std::string Fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// One N; returns false when something did not complete. `alone_wall_s`: the
// reference for the efficiency figure (<= 0: none yet; set by N = 1).
bool RunN(const Options& o, int n, double* alone_wall_s) {
  ModelLog log;
  af::testing::FakeLlmServer fake;
  const auto latency = std::chrono::milliseconds(o.latency_ms);
  fake.SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    return MinimalFeatureTurn(req, latency, log);
  });
  Server server(o.binary, n, fake.base_url(), o.backends);
  const auto timeout = std::chrono::seconds(o.timeout_s);
  std::printf(
      "== N=%d, model latency %d ms (limits.max_active_features %d, %d replicas of each "
      "per-feature role%s; server pid %d; store %s, bus %s, agents %s; load average %s)\n",
      n, o.latency_ms, n, Replicas(n), Replicas(n) < n ? ", the most the configuration allows" : "",
      server.pid(), o.backends.database_url.empty() ? "SQLite" : "PostgreSQL",
      o.backends.redis_url.empty() ? "in-process" : "Redis",
      server.workers() == 0 ? "in serve"
                            : (std::to_string(server.workers()) + " worker processes").c_str(),
      LoadAverage().c_str());

  Batch warm = RunBatch(server, 1, 0, timeout, "warm-up");
  std::printf(
      "warm-up (first feature on a fresh data dir; creates the project's repository): "
      "%s, wall %.3f s, server CPU %.0f ms, children %.0f ms\n",
      warm.completed == 1 ? "completed" : "DID NOT COMPLETE", warm.wall_s, warm.cpu_ms,
      warm.children_cpu_ms);
  int64_t finished = 1;

  std::vector<Batch> rounds;
  const int round_count = n == 1 ? std::max(1, o.alone_repeats) : 1;
  for (int r = 0; r < round_count; ++r) {
    rounds.push_back(RunBatch(server, n, finished, timeout, "N=" + std::to_string(n)));
    finished += rounds.back().submitted;
    if (rounds.back().timed_out) break;
  }
  const int64_t peak_rss_kb = server.SumStatus("VmHWM");
  const int64_t threads = server.SumStatus("Threads");

  // Merge the rounds (N = 1: the repeats).
  Batch all;
  all.n = n;
  std::vector<double> walls;
  double cpu = 0, children = 0, backend = 0;
  for (const Batch& b : rounds) {
    all.submitted += b.submitted;
    all.completed += b.completed;
    all.timed_out |= b.timed_out;
    all.polls += b.polls;
    walls.push_back(b.wall_s);
    cpu += b.cpu_ms;
    children += b.children_cpu_ms;
    backend += b.backend_cpu_ms;
    all.latencies_ms.insert(all.latencies_ms.end(), b.latencies_ms.begin(), b.latencies_ms.end());
    for (const auto& [s, v] : b.stage_ms)
      all.stage_ms[s].insert(all.stage_ms[s].end(), v.begin(), v.end());
    for (const auto& [why, k] : b.failures) all.failures[why] += k;
  }
  all.failures.insert(warm.failures.begin(), warm.failures.end());
  all.cpu_ms = cpu / rounds.size();
  all.children_cpu_ms = children / rounds.size();
  all.backend_cpu_ms = backend / rounds.size();
  all.wall_s = Percentile(walls, 0.5);
  const int64_t expected = static_cast<int64_t>(n) * round_count;
  const bool ok = all.completed == expected && !all.timed_out && warm.completed == 1 && [&] {
    std::lock_guard<std::mutex> lock(log.mu);
    return log.unscripted == 0;
  }();
  if (n == 1 && ok) *alone_wall_s = all.wall_s;
  const double efficiency = *alone_wall_s > 0 && ok ? *alone_wall_s / all.wall_s : -1;

  if (n == 1) {
    std::printf("alone, %d features one after another: wall median %.3f s (", round_count,
                all.wall_s);
    for (size_t i = 0; i < walls.size(); ++i) std::printf("%s%.3f", i ? " " : "", walls[i]);
    std::printf(")\n");
  } else {
    std::printf("%d at once: wall %.3f s%s\n", n, all.wall_s,
                efficiency > 0 ? (", efficiency " + Fmt("%.3f", efficiency)).c_str() : "");
  }
  std::printf(
      "server CPU per feature %.1f ms (children: %.1f ms; clock tick %ld ms), peak RSS %.1f "
      "MB, %lld threads at the end%s\n",
      all.cpu_ms, all.children_cpu_ms, 1000 / sysconf(_SC_CLK_TCK), peak_rss_kb / 1024.0,
      static_cast<long long>(threads),
      server.workers() > 0 ? " (sums over serve and the workers)" : "");
  if (!o.backends.watch_pids.empty()) {
    std::printf("database and Redis servers' CPU per feature: %.1f ms\n", all.backend_cpu_ms);
  }
  std::printf("created -> delivered: p50 %.0f ms, p99 %.0f ms, max %.0f ms over %zu features\n",
              Percentile(all.latencies_ms, 0.5), Percentile(all.latencies_ms, 0.99),
              Percentile(all.latencies_ms, 1.0), all.latencies_ms.size());
  std::printf("median time in each stage (ms):");
  for (const char* s :
       {"queued", "planning", "implementing", "testing", "reviewing", "delivering"}) {
    auto it = all.stage_ms.find(s);
    if (it != all.stage_ms.end()) std::printf(" %s %.0f", s, Percentile(it->second, 0.5));
  }
  if (o.show_events && !rounds.empty() && !rounds.front().first.id.empty()) {
    const FeatureHistory& h = rounds.front().first;
    std::printf("\nevents of %s (ms after it was created):", h.id.c_str());
    for (const auto& [ts, what] : h.timeline) {
      std::printf("\n  %6lld %s", static_cast<long long>(ts - h.created_ms), what.c_str());
    }
  }
  std::printf("\nmodel requests by role:%s; bench polls during the run: %lld\n",
              RoleCounts(log).c_str(), static_cast<long long>(all.polls));
  if (!ok) {
    std::printf("!! NOT ALL FEATURES COMPLETED: %lld of %lld completed%s\n",
                static_cast<long long>(all.completed), static_cast<long long>(expected),
                all.timed_out ? (" when the timeout of " + std::to_string(o.timeout_s) +
                                 " s ran out (wall so far " + Fmt("%.1f", all.wall_s) + " s)")
                                    .c_str()
                              : "");
    for (const auto& [why, k] : all.failures) std::printf("!!   %d x %s\n", k, why.c_str());
    std::lock_guard<std::mutex> lock(log.mu);
    if (log.unscripted > 0) {
      std::printf("!!   %lld model requests had no script; the first: \"%s\"\n",
                  static_cast<long long>(log.unscripted), log.first_unscripted.c_str());
    }
  }
  std::printf(
      "RESULT impl=agent-factory n=%d latency_ms=%d completed=%lld/%lld wall_s=%.3f efficiency=%s "
      "cpu_ms=%.1f children_cpu_ms=%.1f p50_ms=%.0f p99_ms=%.0f peak_rss_mb=%.1f ok=%d "
      "backend_cpu_ms=%.1f load=%s\n",
      n, o.latency_ms, static_cast<long long>(all.completed), static_cast<long long>(expected),
      all.wall_s, efficiency > 0 ? Fmt("%.3f", efficiency).c_str() : "-", all.cpu_ms,
      all.children_cpu_ms, Percentile(all.latencies_ms, 0.5), Percentile(all.latencies_ms, 0.99),
      peak_rss_kb / 1024.0, ok ? 1 : 0, all.backend_cpu_ms,
      LoadAverage().substr(0, LoadAverage().find(' ')).c_str());
  std::fflush(stdout);
  return ok;
}

int FakeOnly(const Options& o) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before the server's threads start
  ModelLog log;
  af::testing::FakeLlmServer fake;
  const auto latency = std::chrono::milliseconds(o.latency_ms);
  fake.SetResponder([&](const RecordedRequest& req) -> std::optional<FakeReply> {
    return MinimalFeatureTurn(req, latency, log);
  });
  std::printf("FAKE_URL %s\n", fake.base_url().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  const double cpu_ms = (self.ru_utime.tv_sec + self.ru_stime.tv_sec) * 1000.0 +
                        (self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1000.0;
  std::fprintf(stderr, "fake model: requests by role:%s; its CPU %.0f ms\n",
               RoleCounts(log).c_str(), cpu_ms);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.binary = AF_BINARY;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--features") {
      std::stringstream list(value());
      for (std::string item; std::getline(list, item, ',');) {
        int n = std::atoi(item.c_str());
        if (n <= 0) Die("--features takes positive numbers, not '" + item + "'");
        o.features.push_back(n);
      }
    } else if (a == "--latency-ms") {
      o.latency_ms = std::atoi(value().c_str());
    } else if (a == "--binary") {
      o.binary = value();
    } else if (a == "--alone-repeats") {
      o.alone_repeats = std::atoi(value().c_str());
    } else if (a == "--timeout-s") {
      o.timeout_s = std::atoi(value().c_str());
    } else if (a == "--show-events") {
      o.show_events = true;
    } else if (a == "--fake-only") {
      o.fake_only = true;
    } else if (a == "--database-url") {
      o.backends.database_url = value();
    } else if (a == "--redis-url") {
      o.backends.redis_url = value();
    } else if (a == "--workers") {
      o.backends.workers = std::atoi(value().c_str());
    } else if (a == "--watch-pid") {
      o.backends.watch_pids.push_back(std::atoi(value().c_str()));
    } else {
      Die("unknown flag " + a +
          " (flags: --features N|LIST, --latency-ms MS, --binary PATH, --alone-repeats R, "
          "--timeout-s S, --show-events, --fake-only, --database-url URL, --redis-url URL, "
          "--workers K, --watch-pid PID)");
    }
  }
  if (o.fake_only) return FakeOnly(o);
  if (o.backends.workers > 0 && o.backends.redis_url.empty()) {
    Die("--workers needs --redis-url: workers receive their jobs over a shared bus");
  }
  if (o.features.empty()) o.features = {1, 50};
  // N = 1 first: it is the reference of every efficiency figure.
  std::stable_partition(o.features.begin(), o.features.end(), [](int n) { return n == 1; });
  double alone_wall_s = -1;
  bool ok = true;
  for (int n : o.features) ok &= RunN(o, n, &alone_wall_s);
  if (!ok) std::printf("!! feature_load: some features did not complete (see above)\n");
  return ok ? 0 : 1;
}
