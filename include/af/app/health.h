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
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace af {

struct HealthInputs {
  std::string version;      // e.g. AF_VERSION
  std::string environment;  // e.g. "development"
  std::string database;     // "healthy" | "unhealthy: why"
  std::string redis;        // "disabled" on the embedded bus
  std::string vector_store;
  std::string llm;                            // e.g. "replay", "anthropic"
  std::map<std::string, std::string> agents;  // role -> "running|busy|idle|degraded|offline"
};

struct HealthVerdict {
  std::string status;                // "healthy" | "degraded" | "unhealthy"
  std::vector<std::string> reasons;  // why it is not healthy: "database: unhealthy: disk full"
};

// Applies the rules above.
HealthVerdict EvaluateHealth(const HealthInputs& inputs);

// {"status","version","environment","components":{"database","redis",
// "vector_store","llm","agents":{...}},"timestamp":"2025-01-02T03:04:05Z"}.
nlohmann::json HealthJson(const HealthInputs& inputs, std::chrono::system_clock::time_point now);

// RFC 3339 UTC with second precision: "2025-01-02T03:04:05Z".
std::string FormatUtcTimestamp(std::chrono::system_clock::time_point t);

}  // namespace af
