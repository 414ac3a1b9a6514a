// Model calls in flight: what 1,000 calls waiting on a slow provider cost the
// calling process, with LlmClient::CompleteAsync (one I/O thread drives them
// all) beside the thread-per-call way (a thread blocked in Complete each).
// The provider is the tests' fake LLM server in a child process of its own
// (af_fake_llm), so its thread per connection is not counted here.
//
//   af_llm_async_bench [--calls 1000] [--latency-ms 1000] [--provider openai|anthropic]
//                      [--mode async|threads|both]
//
// Prints one markdown table row per mode: calls, latency, wall time, threads
// before and at most while the calls were out, RSS before and at most. With
// --mode both (the default) each mode runs in a fresh process of its own
// (this program again), so neither inherits the other's heap.

#include <dirent.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "af/llm/llm_client.h"
#include "support/test_util.h"

namespace {

using Clock = std::chrono::steady_clock;

int ThreadCount() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

// VmRSS of this process in KiB.
long RssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

struct Figures {
  double wall_s = 0;
  int threads_before = 0, threads_peak = 0;
  long rss_before_kb = 0, rss_peak_kb = 0;
  int ok = 0;
};

// Waits until `done` reaches `n`, sampling threads and RSS every 10 ms.
void Watch(const std::atomic<int>& done, int n, Figures* f) {
  while (done.load() < n) {
    f->threads_peak = std::max(f->threads_peak, ThreadCount());
    f->rss_peak_kb = std::max(f->rss_peak_kb, RssKb());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

af::LlmRequest Request(int i) {
  af::LlmRequest r;
  r.system = "You are a benchmark agent.";
  r.messages = {af::Message::User("call " + std::to_string(i))};
  r.agent_role = "coder";
  return r;
}

Figures RunAsync(af::LlmClient& client, int calls) {
  Figures f;
  f.threads_before = f.threads_peak = ThreadCount();
  f.rss_before_kb = f.rss_peak_kb = RssKb();
  std::atomic<int> done{0}, ok{0};
  const auto start = Clock::now();
  for (int i = 0; i < calls; ++i) {
    client.CompleteAsync(Request(i), {}, [&](af::Result<af::LlmResponse> r) {
      ok += r.ok();
      ++done;
    });
  }
  Watch(done, calls, &f);
  f.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  f.ok = ok;
  return f;
}

Figures RunThreads(af::LlmClient& client, int calls) {
  Figures f;
  f.threads_before = f.threads_peak = ThreadCount();
  f.rss_before_kb = f.rss_peak_kb = RssKb();
  std::atomic<int> done{0}, ok{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  threads.reserve(calls);
  for (int i = 0; i < calls; ++i) {
    threads.emplace_back([&, i] {
      ok += client.Complete(Request(i)).ok();
      ++done;
    });
  }
  Watch(done, calls, &f);
  f.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& t : threads) t.join();
  f.ok = ok;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 1000, latency_ms = 1000;
  std::string provider = "openai", mode = "both";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--calls")
      calls = std::stoi(v);
    else if (k == "--latency-ms")
      latency_ms = std::stoi(v);
    else if (k == "--provider")
      provider = v;
    else if (k == "--mode")
      mode = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (mode == "both") {
    std::printf(
        "| mode | calls | model latency | wall | ok | threads before / peak | RSS before / peak |\n"
        "|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    for (const char* m : {"async", "threads"}) {
      std::vector<std::string> args = {argv[0],
                                       "--calls",
                                       std::to_string(calls),
                                       "--latency-ms",
                                       std::to_string(latency_ms),
                                       "--provider",
                                       provider,
                                       "--mode",
                                       m};
      std::vector<char*> cargs;
      for (auto& a : args) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      pid_t pid = 0;
      int status = 0;
      if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, cargs.data(), environ) != 0 ||
          waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "the %s run failed\n", m);
        return 1;
      }
    }
    return 0;
  }
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  af::testing::ChildProcess server(
      {AF_FAKE_LLM_BINARY, "--latency-ms", std::to_string(latency_ms)});
  af::testing::WaitFor([&] { return server.Out().find('\n') != std::string::npos; });
  const std::string out = server.Out();
  if (out.rfind("port ", 0) != 0) {
    std::fprintf(stderr, "af_fake_llm did not start: %s\n", server.Err().c_str());
    return 1;
  }
  const std::string base = "http://127.0.0.1:" + std::to_string(std::stoi(out.substr(5)));

  af::LlmOptions o;
  o.provider = provider;
  o.model = provider == "anthropic" ? "claude-sonnet-4-5" : "gpt-4o";
  o.api_key = "sk-bench-0123456789";
  o.base_url = provider == "anthropic" ? base : base + "/v1";
  o.max_retries = 0;
  o.timeout = std::chrono::seconds(120);
  auto client = af::LlmClient::Create(o);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }
  // One call first, so the I/O thread and libcurl's first-use allocations
  // are in the "before" figures of both modes alike.
  (*client)->Complete(Request(-1));

  for (const std::string m : {"async", "threads"}) {
    if (mode != m) continue;
    Figures f = m == "async" ? RunAsync(**client, calls) : RunThreads(**client, calls);
    std::printf("| %s | %d | %d ms | %.2f s | %d | %d / %d | %.1f / %.1f MB |\n",
                m == "async" ? "CompleteAsync (one I/O thread)" : "a thread per call (Complete)",
                calls, latency_ms, f.wall_s, f.ok, f.threads_before, f.threads_peak,
                f.rss_before_kb / 1024.0, f.rss_peak_kb / 1024.0);
    std::fflush(stdout);
  }
  return 0;
}
