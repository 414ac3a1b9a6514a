// Micro-benchmarks of the foundation: what every request or agent step pays.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "af/bus/bus.h"
#include "af/core/config.h"
#include "af/core/log.h"
#include "af/llm/types.h"
#include "af/store/store.h"

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

}  // namespace
}  // namespace af

BENCHMARK_MAIN();
