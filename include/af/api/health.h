#pragma once
// The health routes (GET /health, /health/live, /health/ready) over the
// health model of af/app/health.h, and the routes of the embedded web files.

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "af/api/web_assets.h"
#include "af/app/health.h"

namespace af {

class HttpServer;

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
