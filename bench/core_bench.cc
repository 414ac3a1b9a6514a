// Micro-benchmarks of the foundation: what every request or agent step pays.
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "af/bus/bus.h"
#include "af/core/config.h"
#include "af/core/log.h"
#include "af/llm/types.h"
#include "af/store/store.h"
#include "af/workspace/sandbox.h"
#include "workspace/subprocess.h"

namespace af {
namespace {

std::filesystem::path BenchDir() {
  auto p = std::filesystem::temp_directory_path() / "af-bench";
  std::filesystem::create_directories(p);
  return p;
}

void BM_LoadConfigDefaults(benchmark::State& state) {
  ConfigSources src;
  src.dotenv_file = "/nonexistent/.env";
  for (auto _ : state) benchmark::DoNotOptimize(LoadConfig(src));
}
BENCHMARK(BM_LoadConfigDefaults);

void BM_RedactLogLine(benchmark::State& state) {
  log::AddSecret("sk-ant-api03-benchmark-secret-value-xyz");
  std::string line =
      "POST /v1/messages model=claude-sonnet-4-5 in=1200 out=300 status=ok "
      "latency=812ms feature=f-01hxyz task=t-01hxyz attempts=1";
  for (auto _ : state) benchmark::DoNotOptimize(log::Redact(line));
}
BENCHMARK(BM_RedactLogLine);

void BM_StoreAppendEvent(benchmark::State& state) {
  auto path = BenchDir() / "events.db";
  std::filesystem::remove(path);
  auto store = Store::Open({.url = "sqlite:" + path.string()});
  if (!store.ok()) {
    state.SkipWithError(store.status().ToString().c_str());
    return;
  }
  Event e;
  e.type = "tool.call";
  e.agent = "coder-1";
  e.data = {{"tool", "write_file"}, {"path", "src/app.py"}};
  for (auto _ : state) benchmark::DoNotOptimize((*store)->AppendEvent(e));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StoreAppendEvent);

void BM_StoreListEvents(benchmark::State& state) {
  auto path = BenchDir() / "list.db";
  std::filesystem::remove(path);
  auto store = Store::Open({.url = "sqlite:" + path.string()});
  Event e;
  e.type = "llm.call";
  e.data = {{"tokens", 1234}};
  for (int i = 0; i < 10000; ++i) (void)(*store)->AppendEvent(e);
  for (auto _ : state) {
    auto page = (*store)->ListEvents({.after_seq = 5000, .limit = 100});
    benchmark::DoNotOptimize(page);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_StoreListEvents);

// The smallest read: one row, so the read transaction around it (BEGIN and
// COMMIT on a pooled read connection) is most of its cost.
void BM_StoreGetFeature(benchmark::State& state) {
  auto path = BenchDir() / "get.db";
  std::filesystem::remove(path);
  auto store = Store::Open({.url = "sqlite:" + path.string()});
  Feature f;
  f.project = "bench";
  f.title = "one feature";
  auto made = (*store)->CreateFeature(f);
  if (!made.ok()) {
    state.SkipWithError(made.status().ToString().c_str());
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize((*store)->GetFeature(made->id));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StoreGetFeature);

void BM_BusSendReceiveAck(benchmark::State& state) {
  auto bus = Bus::Open({});
  BusMessage m{"task.assign", {{"task_id", "t-1"}}};
  for (auto _ : state) {
    (void)(*bus)->Send("role:coder", m);
    auto d = (*bus)->Receive("role:coder", "coder-1", std::chrono::milliseconds(0));
    (void)(*bus)->Ack("role:coder", (**d).id);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BusSendReceiveAck);

void BM_RequestHash(benchmark::State& state) {
  LlmRequest req;
  req.model = "claude-sonnet-4-5";
  req.system = std::string(4000, 's');
  for (int i = 0; i < 20; ++i) req.messages.push_back(Message::User(std::string(2000, 'u')));
  for (auto _ : state) benchmark::DoNotOptimize(RequestHash(req));
}
BENCHMARK(BM_RequestHash);

// Starting a child process from a server-sized process (512 MB of touched
// heap, 8 idle threads besides): Spawn (clone with a shared address space,
// like vfork) against a plain fork + exec of the same program, the way every
// git and sandbox command was started before. Arg 0 = Spawn, 1 = fork.
void BM_SpawnTrue(benchmark::State& state) {
  static std::vector<char> ballast = [] {
    std::vector<char> v(512u << 20);
    for (size_t i = 0; i < v.size(); i += 4096) v[i] = 1;  // resident, not just reserved
    return v;
  }();
  static std::vector<std::thread> idle = [] {
    std::vector<std::thread> t;
    for (int i = 0; i < 8; ++i)
      t.emplace_back([] { std::this_thread::sleep_for(std::chrono::hours(24)); });
    for (auto& th : t) th.detach();
    return t;
  }();
  benchmark::DoNotOptimize(ballast.data());
  workspace_internal::SpawnOptions o;
  o.argv = {"/bin/true"};
  for (auto _ : state) {
    if (state.range(0) == 0) {
      auto r = workspace_internal::Spawn(o);
      if (!r.ok() || r->exit_code != 0) state.SkipWithError("spawn failed");
    } else {
      pid_t pid = fork();
      if (pid == 0) {
        char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
        execv(argv[0], argv);
        _exit(127);
      }
      int st = 0;
      waitpid(pid, &st, 0);
    }
  }
  state.SetLabel(state.range(0) == 0 ? "Spawn (clone CLONE_VM|CLONE_VFORK)" : "fork + exec");
}
BENCHMARK(BM_SpawnTrue)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

// One gate run as a feature's checks run it: `true` in the default sandbox
// (bubblewrap and a pids cgroup where the machine allows them). Counters are
// CPU per run: this process's own (setting up and reaping) and its
// children's (bwrap, the shell).
void BM_SandboxTrue(benchmark::State& state) {
  SandboxOptions options;
  if (state.range(0) == 0) options.max_processes = 0;
  auto sandbox = Sandbox::Create(options);
  if (!sandbox.ok()) {
    state.SkipWithError(sandbox.status().ToString().c_str());
    return;
  }
  const auto dir = BenchDir() / "sandbox";
  std::filesystem::create_directories(dir);
  auto cpu_ms = [](int who) {
    rusage u{};
    getrusage(who, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
  };
  const double self0 = cpu_ms(RUSAGE_SELF), children0 = cpu_ms(RUSAGE_CHILDREN);
  for (auto _ : state) {
    auto r = (*sandbox)->Run("true", dir, nullptr);
    if (!r.ok() || r->exit_code != 0) state.SkipWithError("the sandbox run failed");
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["self_cpu_ms"] = (cpu_ms(RUSAGE_SELF) - self0) / n;
  state.counters["children_cpu_ms"] = (cpu_ms(RUSAGE_CHILDREN) - children0) / n;
  state.SetLabel((*sandbox)->isolation().process_limit_by.empty()
                     ? "no process limit"
                     : (*sandbox)->isolation().process_limit_by);
}
BENCHMARK(BM_SandboxTrue)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace af

BENCHMARK_MAIN();
