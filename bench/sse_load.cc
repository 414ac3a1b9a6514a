// SSE load: N concurrent clients on GET /api/v1/events while events are
// appended to the store at a fixed rate; measures the delivery lag (append ->
// client receive) and the server's memory.
//
// The server (HttpServer + EventHub on a SQLite file) runs in a forked child,
// so its RSS is its own; the parent appends events to the same database file
// (the store is the source of truth, as with agents in other processes) and
// drives the clients from --client-threads epoll threads (default 2, each
// with its share of the connections). Loopback only.
//
// Usage: af_sse_load [--clients N] [--rate EVENTS_PER_S] [--seconds S]
//                    [--poll-ms MS] [--threads T] [--in-process 1]
//                    [--database-url postgresql://USER@HOST:PORT/DB]
//                    [--client-threads C] [--watch-file 0|1] [--no-delay 0|1]
//                    [--delivery-threads D]
//
// --delivery-threads D: the hub's threads writing live events (default 2).
//
// --no-delay 0: the streams' connections keep Nagle's algorithm (no
// TCP_NODELAY), to measure what it costs.
//
// --watch-file 0: the hub does not watch the SQLite file, so appends from
// another process wait for its poll (the behaviour before the watch).
//
// The clients' threads matter on a busy machine: the scheduler gives each
// runnable thread about the same share, so one thread reading 200,000 events
// a second (1,000 clients x 200/s) falls behind the server long before the
// server does, and the lag measured is the load generator's.
//
// --in-process 1: the server's own process appends the events (as agents in
// `serve` do), so the hub is woken by the store's commit announcement
// instead of finding them at its next poll.
//
// --database-url: the store is a fresh database created on that PostgreSQL
// server instead of a SQLite file; appends from another process then wake the
// hub too (PostgreSQL announces every commit of events with NOTIFY).
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "af/api/events_stream.h"
#include "af/api/http_server.h"
#include "af/api/middleware.h"
#include "af/store/store.h"
#include "bench_pg.h"

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // system-wide: comparable across processes
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

std::string StatusField(int pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return line.substr(std::strlen(field));
  return "?";
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// CPU time (user + system) a process has used so far, in ms; -1 unknown.
int64_t CpuMs(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is field 3,
  // utime and stime are fields 14 and 15.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  int64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::atoll(field.c_str());
    if (i == 15) stime = std::atoll(field.c_str());
  }
  return (utime + stime) * 1000 / sysconf(_SC_CLK_TCK);
}

// `db`: a SQLite file, or a postgresql:// URL.
af::StoreOptions StoreAt(const std::string& db) {
  af::StoreOptions options;
  options.url = db.rfind("postgres", 0) == 0 ? db : "sqlite:" + db;
  return options;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "sse_load: %s\n", what.c_str());
  std::exit(1);
}

// Appends `rate` small events a second for `seconds`, each carrying the time
// it was appended; returns how many were appended.
int64_t AppendAtRate(af::Store& store, int rate, int seconds) {
  int64_t appended = 0;
  const auto period = std::chrono::nanoseconds(1000000000LL / rate);
  auto next = std::chrono::steady_clock::now();
  const auto end = next + std::chrono::seconds(seconds);
  while (next < end) {
    std::this_thread::sleep_until(next);
    af::Event e;
    e.type = "bench.tick";
    e.feature_id = "f-bench";
    e.data = {{"t_ns", NowNs()}, {"note", "a typical small event payload"}};
    if (store.AppendEvent(e).ok()) ++appended;
    next += period;
  }
  return appended;
}

struct InProcess {
  bool on = false;
  int go_fd = -1;  // a byte here starts the appends
  int rate = 0, seconds = 0;
};

// The child: serve until SIGTERM; writes the bound port to `port_fd` (and,
// appending in-process, the number appended when done).
[[noreturn]] void RunServer(const std::string& db, int port_fd, int poll_ms, bool watch_file,
                            bool no_delay, int delivery_threads, int threads,
                            InProcess in_process) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto store = af::Store::Open(StoreAt(db));
  if (!store.ok()) Die(store.status().ToString());
  af::EventHubOptions hub_options;
  hub_options.poll_interval = std::chrono::milliseconds(poll_ms);
  hub_options.watch_file = watch_file;
  hub_options.tcp_no_delay = no_delay;
  hub_options.delivery_threads = delivery_threads;
  af::EventHub hub(store->get(), hub_options);
  if (!hub.Start().ok()) Die("hub start");
  af::HttpServerOptions options;
  options.port = 0;
  options.threads = threads;
  af::HttpServer server(options);
  // Every client admitted, no rate limit: the bench measures the streams.
  af::ApiGateOptions gate_options;
  gate_options.rate_limit_per_minute = 0;
  af::ApiGate gate(
      [](const af::HttpRequest&, bool) -> af::Result<af::ApiKey> {
        af::ApiKey key;
        key.id = "bench";
        key.permissions = {"admin"};
        return key;
      },
      gate_options);
  af::AddEventRoutes(server, hub, **store, gate);
  if (af::Status s = server.Start(); !s.ok()) Die(s.ToString());
  int port = server.port();
  if (write(port_fd, &port, sizeof port) != sizeof port) Die("pipe");
  std::thread appender;
  if (in_process.on) {
    appender = std::thread([&] {
      char go;
      if (read(in_process.go_fd, &go, 1) != 1) Die("go pipe");
      int64_t n = AppendAtRate(**store, in_process.rate, in_process.seconds);
      if (write(port_fd, &n, sizeof n) != sizeof n) Die("pipe");
    });
  }
  int sig = 0;
  sigwait(&set, &sig);
  if (appender.joinable()) appender.join();
  server.Stop();
  hub.Stop();
  std::_Exit(0);
}

struct Conn {
  int fd = -1;
  std::string raw;   // bytes not yet de-chunked
  std::string text;  // de-chunked text not yet split into events
  bool head_done = false;
  int64_t events = 0;
};

void Consume(Conn& c, std::vector<int64_t>& lags, int64_t now) {
  if (!c.head_done) {
    size_t end = c.raw.find("\r\n\r\n");
    if (end == std::string::npos) return;
    c.raw.erase(0, end + 4);
    c.head_done = true;
  }
  for (;;) {  // de-chunk
    size_t eol = c.raw.find("\r\n");
    if (eol == std::string::npos) break;
    size_t size = std::strtoul(c.raw.c_str(), nullptr, 16);
    if (c.raw.size() < eol + 2 + size + 2) break;
    c.text.append(c.raw, eol + 2, size);
    c.raw.erase(0, eol + 2 + size + 2);
  }
  size_t start = 0, end;
  while ((end = c.text.find("\n\n", start)) != std::string::npos) {
    size_t t = c.text.find("\"t_ns\":", start);
    if (t != std::string::npos && t < end) {
      int64_t sent = std::strtoll(c.text.c_str() + t + 7, nullptr, 10);
      lags.push_back(now - sent);
      ++c.events;
    }
    start = end + 2;
  }
  c.text.erase(0, start);
}

}  // namespace

int main(int argc, char** argv) {
  int clients = 1000, rate = 200, seconds = 10, poll_ms = 50, threads = 2, in_process = 0;
  int client_threads = 2, watch_file = 1, no_delay = 1, delivery_threads = 2;
  std::string database_url;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (a == "--database-url")
      database_url = argv[i + 1];
    else if (a == "--clients")
      clients = v;
    else if (a == "--rate")
      rate = v;
    else if (a == "--seconds")
      seconds = v;
    else if (a == "--poll-ms")
      poll_ms = v;
    else if (a == "--threads")
      threads = v;
    else if (a == "--in-process")
      in_process = v;
    else if (a == "--watch-file")
      watch_file = v;
    else if (a == "--no-delay")
      no_delay = v;
    else if (a == "--delivery-threads")
      delivery_threads = v;
    else if (a == "--client-threads")
      client_threads = std::max(1, v);
    else
      Die("unknown flag " + a);
  }
  rlimit lim{static_cast<rlim_t>(clients + 256), static_cast<rlim_t>(clients + 256)};
  setrlimit(RLIMIT_NOFILE, &lim);

  char tmpl[] = "/tmp/sse_load.XXXXXX";
  if (!mkdtemp(tmpl)) Die("mkdtemp");
  std::string db = std::string(tmpl) + "/af.db";
  if (!database_url.empty()) {
    std::string error;
    db = af::bench::CreateDatabase(database_url, "af_sse_load_" + std::to_string(getpid()), &error);
    if (db.empty()) Die(error);
  }
  {  // create and migrate before forking
    auto store = af::Store::Open(StoreAt(db));
    if (!store.ok()) Die(store.status().ToString());
  }
  int pipefd[2], gofd[2];
  if (pipe(pipefd) != 0 || pipe(gofd) != 0) Die("pipe");
  pid_t child = fork();
  if (child == 0) {
    close(pipefd[0]);
    close(gofd[1]);
    RunServer(db, pipefd[1], poll_ms, watch_file != 0, no_delay != 0, delivery_threads, threads,
              {in_process != 0, gofd[0], rate, seconds});
  }
  close(pipefd[1]);
  close(gofd[0]);
  int port = 0;
  if (read(pipefd[0], &port, sizeof port) != sizeof port) Die("server did not start");
  std::printf("server pid %d port %d; RSS idle %s\n", child, port,
              StatusField(child, "VmRSS:").c_str());

  std::vector<int> eps(static_cast<size_t>(client_threads));
  for (int& e : eps) e = epoll_create1(0);
  std::vector<Conn> conns(static_cast<size_t>(clients));
  const std::string request =
      "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
  for (int i = 0; i < clients; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("connect");
    if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size()))
      Die("send");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    conns[i].fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(eps[i % client_threads], EPOLL_CTL_ADD, fd, &ev);
  }

  // One per client thread: its lags, its epoll set, its buffers.
  struct Pumper {
    std::vector<int64_t> lags;
    std::vector<epoll_event> ready = std::vector<epoll_event>(256);
    std::vector<char> buf = std::vector<char>(65536);
  };
  std::vector<Pumper> pumpers(static_cast<size_t>(client_threads));
  for (Pumper& p : pumpers)
    p.lags.reserve(static_cast<size_t>(clients / client_threads + 1) * rate * seconds + 1024);
  auto pump = [&](int t, int timeout_ms, bool record) {
    Pumper& p = pumpers[t];
    auto& ready = p.ready;
    char* buf = p.buf.data();
    const size_t buf_size = p.buf.size();
    int n = epoll_wait(eps[t], ready.data(), static_cast<int>(ready.size()), timeout_ms);
    const int64_t now = NowNs();
    std::vector<int64_t> ignored;
    for (int k = 0; k < n; ++k) {
      Conn& c = conns[ready[k].data.u32];
      for (;;) {
        ssize_t r = recv(c.fd, buf, buf_size, 0);
        if (r <= 0) break;
        c.raw.append(buf, static_cast<size_t>(r));
      }
      Consume(c, record ? p.lags : ignored, now);
    }
  };
  // Wait for every response head (the stream is open), draining retry lines.
  auto connect_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < connect_deadline &&
         std::any_of(conns.begin(), conns.end(), [](const Conn& c) { return !c.head_done; }))
    for (int t = 0; t < client_threads; ++t) pump(t, 50 / client_threads, false);
  const int heads = static_cast<int>(
      std::count_if(conns.begin(), conns.end(), [](const Conn& c) { return c.head_done; }));
  std::printf("%d/%d streams open; RSS with clients %s\n", heads, clients,
              StatusField(child, "VmRSS:").c_str());

  const int64_t server_cpu_before = CpuMs(child);
  const int64_t load_cpu_before = CpuMs(getpid());
  std::atomic<bool> done{false};
  std::atomic<int64_t> appended{0};
  std::thread appender([&] {
    if (in_process) {  // the server appends; it says how many when done
      if (write(gofd[1], "g", 1) != 1) Die("go pipe");
      int64_t n = 0;
      if (read(pipefd[0], &n, sizeof n) != sizeof n) Die("server did not report its appends");
      appended = n;
    } else {
      auto store = af::Store::Open(StoreAt(db));
      if (!store.ok()) Die(store.status().ToString());
      appended = AppendAtRate(**store, rate, seconds);
    }
    done = true;
  });
  std::atomic<bool> drained{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < client_threads; ++t) {
    readers.emplace_back([&, t] {
      while (!drained) pump(t, 20, true);
    });
  }
  std::string rss_under_load;
  auto half = std::chrono::steady_clock::now() + std::chrono::seconds(seconds) / 2;
  while (!done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a sampling period
    if (rss_under_load.empty() && std::chrono::steady_clock::now() > half)
      rss_under_load = StatusField(child, "VmRSS:");
  }
  appender.join();
  // Drain: let the last events arrive.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  drained = true;
  for (auto& r : readers) r.join();
  std::vector<int64_t> lags;
  for (Pumper& p : pumpers) lags.insert(lags.end(), p.lags.begin(), p.lags.end());

  const std::string hwm = StatusField(child, "VmHWM:");
  const int64_t server_cpu = CpuMs(child) - server_cpu_before;
  const int64_t load_cpu = CpuMs(getpid()) - load_cpu_before;
  kill(child, SIGTERM);
  waitpid(child, nullptr, 0);
  std::filesystem::remove_all(tmpl);

  std::sort(lags.begin(), lags.end());
  auto pct = [&](double p) {
    if (lags.empty()) return 0.0;
    size_t i = std::min(lags.size() - 1, static_cast<size_t>(p * lags.size()));
    return lags[i] / 1e6;
  };
  int64_t min_events = INT64_MAX, max_events = 0;
  for (const Conn& c : conns) {
    min_events = std::min(min_events, c.events);
    max_events = std::max(max_events, c.events);
  }
  std::printf(
      "clients %d (%d client threads), rate %d/s, %d s, poll %d ms, file watch %s, TCP_NODELAY %s, "
      "delivery threads %d, server threads %d, store %s, appended %s\n"
      "events appended %lld; per client received min %lld max %lld\n"
      "delivery lag ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  (%zu deliveries)\n"
      "server RSS under load %s; peak (VmHWM) %s\n"
      "CPU during the run: server %lld ms (%.2f us per delivery), load generator %lld ms; "
      "load average %s\n",
      clients, client_threads, rate, seconds, poll_ms, watch_file ? "on" : "off",
      no_delay ? "on" : "off", delivery_threads, threads,
      database_url.empty() ? "SQLite" : "PostgreSQL",
      in_process ? "in the server's process" : "by another process",
      static_cast<long long>(appended.load()), static_cast<long long>(min_events),
      static_cast<long long>(max_events), pct(0.5), pct(0.9), pct(0.99),
      lags.empty() ? 0.0 : lags.back() / 1e6, lags.size(), rss_under_load.c_str(), hwm.c_str(),
      static_cast<long long>(server_cpu),
      lags.empty() ? 0.0 : server_cpu * 1000.0 / static_cast<double>(lags.size()),
      static_cast<long long>(load_cpu), LoadAverage().c_str());
  return min_events == appended.load() ? 0 : 2;
}
