#pragma once
// The health model: what /health and `agent-factory health` report, as plain
// functions over a snapshot of component states (the composition root takes
// the snapshot; the API serves it).
//
// Component strings: "healthy", "disabled", "replay", "running", ... are fine;
// a value starting with "unhealthy" (e.g. "unhealthy: disk full") is a failure,
// one starting with "degraded" (or exactly "offline") a partial failure.
// Overall status:
//   unhealthy - the database is unhealthy (nothing works without the store);
//   degraded  - the database is degraded, or vector_store / redis / llm is
//               unhealthy or degraded, or an agent is degraded or offline;
//   healthy   - otherwise.
// GET /health answers 503 only when unhealthy, 200 otherwise.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "af/agents/liveness.h"

namespace af {

struct HealthInputs {
  std::string version;      // e.g. AF_VERSION
  std::string environment;  // e.g. "development"
  std::string database;     // "healthy" | "unhealthy: why"
  std::string redis;        // "disabled" on the embedded bus
  std::string vector_store;
  std::string llm;                            // e.g. "replay", "anthropic"
  std::map<std::string, std::string> agents;  // role -> "running|busy|idle|degraded|offline"
  // Every process that runs agents (serve, workers), by the liveness rule of
  // af/agents/liveness.h. Informational: the verdict reads `agents` only, so
  // a worker that was stopped (or died and was replaced) does not keep the
  // service degraded.
  std::vector<WorkerStatus> workers;
};

struct HealthVerdict {
  std::string status;                // "healthy" | "degraded" | "unhealthy"
  std::vector<std::string> reasons;  // why it is not healthy: "database: unhealthy: disk full"
};

// Applies the rules above.
HealthVerdict EvaluateHealth(const HealthInputs& inputs);

// {"status","version","environment","components":{"database","redis",
// "vector_store","llm","agents":{...}},"workers":[{"kind","host","pid","roles",
// "agents","live","state","last_heartbeat"}],"timestamp":"2025-01-02T03:04:05Z"}
// (last_heartbeat RFC 3339 UTC, null when it never beat).
nlohmann::json HealthJson(const HealthInputs& inputs, std::chrono::system_clock::time_point now);

// The latest HealthInputs, taken on a thread of its own: at construction,
// then every `period`. What GET /health serves, so a request costs a copy,
// not a database round trip (a load balancer may ask many times a second).
// Thread-safe; the destructor stops the thread (within a wake-up).
class HealthSnapshot {
 public:
  explicit HealthSnapshot(std::function<HealthInputs()> take,
                          std::chrono::milliseconds period = std::chrono::milliseconds(500));
  ~HealthSnapshot();
  HealthSnapshot(const HealthSnapshot&) = delete;
  HealthSnapshot& operator=(const HealthSnapshot&) = delete;

  // At most `period` plus the time of one take old.
  HealthInputs Get() const;

 private:
  void Run();

  const std::function<HealthInputs()> take_;
  const std::chrono::milliseconds period_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;    // guarded by mu_
  HealthInputs latest_;  // guarded by mu_
  std::thread thread_;   // last: starts once the members above exist
};

// RFC 3339 UTC with second precision: "2025-01-02T03:04:05Z".
std::string FormatUtcTimestamp(std::chrono::system_clock::time_point t);

}  // namespace af
