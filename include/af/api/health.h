#pragma once
// Health endpoints (/health, /health/live, /health/ready) as plain functions over a snapshot of
// component states, plus the routes that serve them and the embedded web files.
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
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "af/api/web_assets.h"

namespace af {

class HttpServer;

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

// Registers GET /health (the JSON above; 503 when unhealthy), GET /health/live
// ({"status":"alive"}, always 200) and GET /health/ready ({"status":"ready"}
// 200 unless unhealthy, else 503 UNAVAILABLE error body whose message gives
// the reasons). `inputs` is called once per request on an I/O thread: it must
// be thread-safe and quick (report cached states, do not probe). `clock`
// supplies the timestamp (a seam for tests).
void AddHealthRoutes(
    HttpServer& server, std::function<HealthInputs()> inputs,
    std::function<std::chrono::system_clock::time_point()> clock = std::chrono::system_clock::now);

// Registers GET for every embedded web file at its path, and GET / for
// /index.html when present. Served with the asset's content type and
// "Cache-Control: no-cache" (the dashboard changes with the binary).
void AddWebAssetRoutes(HttpServer& server, const std::vector<WebAsset>& assets = WebAssets());

}  // namespace af
