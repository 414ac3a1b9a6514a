// Store and bus throughput on the single-machine backends (SQLite file,
// in-process bus) beside the scaled-out ones (PostgreSQL, Redis Streams), in
// one run on one machine.
//
// Store: T threads share one Store (as the agents of one process do) and each
// appends small events through Store::AppendEvent for --seconds; reported:
// events/s over all threads and the latency of one append (p50, p99, max).
// The SQLite file is a fresh one in a temp dir (WAL, synchronous=NORMAL, as
// the product opens it); PostgreSQL is a fresh database created on the
// server given by --database-url (its settings are the server's: the bench
// script runs it with fsync and synchronous_commit on, the defaults), and
// again on a database with synchronous_commit off (ALTER DATABASE): commits
// then return before the WAL reaches the disk, which is what SQLite's
// synchronous=NORMAL does in WAL mode, so that row compares like with like.
//
// Bus: one producer thread Sends small messages to one queue as fast as it
// can while C consumer threads Receive and Ack them; reported: messages/s
// from the first Send to the last Ack. Then one message at a time (Send,
// Receive, Ack, next): the round trip's p50 and p99. The Redis queue has a
// name of its own per run, so an old stream never counts.
//
// Usage: af_scale_bench [--database-url postgresql://USER@HOST:PORT/DB]
//                       [--redis-url redis://HOST:PORT[/DB]] [--seconds S]
// Without a URL, that backend is skipped (said so in the output). One line
// per figure starts with "RESULT " and holds key=value pairs.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "af/bus/bus.h"
#include "af/store/store.h"
#include "bench_pg.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "scale_bench: %s\n", what.c_str());
  std::exit(2);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

double Percentile(std::vector<int64_t>& v, double p) {  // ns -> ms
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i] / 1e6;
}

// A new empty database on the server of `url`; returns its URL.
std::string CreateDatabase(const std::string& url, const std::string& name,
                           bool synchronous_commit = true) {
  std::string error;
  std::string created = af::bench::CreateDatabase(url, name, &error);
  if (created.empty()) Die(error);
  if (!synchronous_commit) {
    try {
      pqxx::connection c(created);
      pqxx::nontransaction tx(c);
      tx.exec0("ALTER DATABASE " + name + " SET synchronous_commit = off");
    } catch (const std::exception& e) {
      Die(std::string("ALTER DATABASE failed: ") + e.what());
    }
  }
  return created;
}

// T threads append for `seconds` through one store.
void StoreRun(const std::string& backend, const std::string& url, int threads, int seconds) {
  af::StoreOptions options;
  options.url = url;
  auto store = af::Store::Open(options);
  if (!store.ok()) Die(backend + ": " + store.status().ToString());
  // Warm up: the first append pays for statement preparation and the first pages.
  for (int i = 0; i < 50; ++i) {
    af::Event e;
    e.type = "bench.warmup";
    (void)(*store)->AppendEvent(e);
  }
  std::vector<std::vector<int64_t>> lat(threads);
  std::atomic<int64_t> failures{0};
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      lat[t].reserve(200000);
      for (int64_t i = 0; Clock::now() < end; ++i) {
        af::Event e;
        e.type = "bench.append";
        e.feature_id = "f-bench-" + std::to_string(t);
        e.agent = "bench-" + std::to_string(t);
        e.data = {{"i", i}, {"note", "a typical small event payload"}};
        const auto t0 = Clock::now();
        if (!(*store)->AppendEvent(e).ok()) ++failures;
        lat[t].push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
      }
    });
  }
  for (auto& th : pool) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<int64_t> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  const size_t n = all.size();
  const double p50 = Percentile(all, 0.5), p99 = Percentile(all, 0.99), max = Percentile(all, 1.0);
  std::printf(
      "RESULT what=append backend=%s threads=%d events=%zu events_per_s=%.0f p50_ms=%.3f "
      "p99_ms=%.3f max_ms=%.2f failures=%lld load=\"%s\"\n",
      backend.c_str(), threads, n, n / wall, p50, p99, max, static_cast<long long>(failures.load()),
      LoadAverage().c_str());
  std::fflush(stdout);
}

af::BusMessage Message(int64_t i) {
  return {"bench.job", {{"i", i}, {"task_id", "t-bench"}, {"note", "a small job payload"}}};
}

// One producer, `consumers` consumers, `seconds` of sending; then one at a time.
void BusRun(const std::string& backend, const std::string& url, int consumers, int seconds) {
  af::BusOptions options;
  options.url = url;
  auto bus = af::Bus::Open(options);
  if (!bus.ok()) Die(backend + ": " + bus.status().ToString());
  const std::string queue = "bench:" + std::to_string(getpid()) + ":" + std::to_string(consumers);
  std::atomic<int64_t> sent{0}, acked{0}, failures{0};
  std::atomic<bool> sending{true};
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int c = 0; c < consumers; ++c) {
    pool.emplace_back([&, c] {
      const std::string me = "bench-consumer-" + std::to_string(c);
      while (true) {
        auto d = (*bus)->Receive(queue, me, std::chrono::milliseconds(100));
        if (!d.ok()) {
          ++failures;
          continue;
        }
        if (!*d) {
          if (!sending && acked.load() >= sent.load()) return;
          continue;
        }
        if ((*bus)->Ack(queue, (*d)->id).ok()) {
          ++acked;
        } else {
          ++failures;
        }
      }
    });
  }
  const auto stop_sending = start + std::chrono::seconds(seconds);
  for (int64_t i = 0; Clock::now() < stop_sending; ++i) {
    // Keep the backlog bounded, so the figure is throughput, not queue growth.
    while (sent.load() - acked.load() > 1000) std::this_thread::yield();
    if ((*bus)->Send(queue, Message(i)).ok()) {
      ++sent;
    } else {
      ++failures;
    }
  }
  sending = false;
  for (auto& th : pool) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "RESULT what=bus backend=%s consumers=%d messages=%lld msgs_per_s=%.0f failures=%lld "
      "load=\"%s\"\n",
      backend.c_str(), consumers, static_cast<long long>(acked.load()), acked.load() / wall,
      static_cast<long long>(failures.load()), LoadAverage().c_str());

  // One at a time: Send, Receive, Ack.
  std::vector<int64_t> rt;
  const std::string one = queue + ":one";
  const auto one_end = Clock::now() + std::chrono::seconds(std::max(1, seconds / 2));
  while (Clock::now() < one_end) {
    const auto t0 = Clock::now();
    if (!(*bus)->Send(one, Message(0)).ok()) Die(backend + ": Send failed");
    auto d = (*bus)->Receive(one, "bench-one", std::chrono::seconds(5));
    if (!d.ok() || !*d) Die(backend + ": the message sent did not arrive");
    if (!(*bus)->Ack(one, (*d)->id).ok()) Die(backend + ": Ack failed");
    rt.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  }
  const size_t n = rt.size();
  const double p50 = Percentile(rt, 0.5), p99 = Percentile(rt, 0.99);
  std::printf(
      "RESULT what=bus_round_trip backend=%s consumers=%d round_trips=%zu p50_ms=%.3f "
      "p99_ms=%.3f load=\"%s\"\n",
      backend.c_str(), consumers, n, p50, p99, LoadAverage().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string database_url, redis_url;
  int seconds = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) Die(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--database-url") {
      database_url = v;
    } else if (a == "--redis-url") {
      redis_url = v;
    } else if (a == "--seconds") {
      seconds = std::max(1, std::atoi(v.c_str()));
    } else {
      Die("unknown flag " + a + " (flags: --database-url URL, --redis-url URL, --seconds S)");
    }
  }
  std::printf("== store appends and bus jobs, %d s each (%u cores, load average %s)\n", seconds,
              std::thread::hardware_concurrency(), LoadAverage().c_str());
  char tmpl[] = "/tmp/af_scale_bench.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Die("mkdtemp failed");
  for (int threads : {1, 4}) {
    const std::string file = std::string(tmpl) + "/t" + std::to_string(threads) + ".db";
    StoreRun("sqlite", "sqlite:" + file, threads, seconds);
    if (!database_url.empty()) {
      const std::string db =
          "af_scale_" + std::to_string(getpid()) + "_t" + std::to_string(threads);
      StoreRun("postgresql", CreateDatabase(database_url, db), threads, seconds);
      StoreRun("postgresql-sync-off", CreateDatabase(database_url, db + "_async", false), threads,
               seconds);
    }
  }
  if (database_url.empty()) std::printf("(no --database-url: PostgreSQL skipped)\n");
  std::filesystem::remove_all(tmpl);
  for (int consumers : {1, 4}) {
    BusRun("in-process", "", consumers, seconds);
    if (!redis_url.empty()) BusRun("redis", redis_url, consumers, seconds);
  }
  if (redis_url.empty()) std::printf("(no --redis-url: Redis skipped)\n");
  return 0;
}
