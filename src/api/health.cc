#include "af/api/health.h"

#include <ctime>
#include <string_view>

#include "af/api/errors.h"
#include "af/api/http_server.h"

namespace af {
void AddHealthRoutes(HttpServer& server, std::function<HealthInputs()> inputs,
                     std::function<std::chrono::system_clock::time_point()> clock) {
  server.Route("GET", "/health", [inputs, clock](const HttpRequest&) {
    nlohmann::json body = HealthJson(inputs(), clock());
    return JsonResponse(body["status"] == "unhealthy" ? 503 : 200, body);
  });
  server.Route("GET", "/health/live", [](const HttpRequest&) {
    return JsonResponse(200, {{"status", "alive"}});
  });
  server.Route("GET", "/health/ready", [inputs](const HttpRequest& request) {
    HealthVerdict verdict = EvaluateHealth(inputs());
    if (verdict.status != "unhealthy") return JsonResponse(200, {{"status", "ready"}});
    std::string why;
    for (const std::string& reason : verdict.reasons) why += (why.empty() ? "" : "; ") + reason;
    ApiError error(Unavailable("not ready: " + why,
                               "GET /health (or 'agent-factory health') shows every "
                               "component; fix the failing one"));
    error.details = {{"status", verdict.status}, {"reasons", verdict.reasons}};
    error.retry_after_seconds = 5;
    return ErrorResponse(error, request.request_id);
  });
}

void AddWebAssetRoutes(HttpServer& server, const std::vector<WebAsset>& assets) {
  for (const WebAsset& asset : assets) {
    auto serve = [asset](const HttpRequest&) {
      HttpResponse response;
      response.content_type = std::string(asset.content_type);
      response.body = std::string(asset.content);
      response.headers.emplace_back("Cache-Control", "no-cache");
      // The dashboard loads only its own files and talks only to this server;
      // a key kept in localStorage is then out of reach of injected scripts.
      response.headers.emplace_back("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; "
                                    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
      response.headers.emplace_back("X-Content-Type-Options", "nosniff");
      return response;
    };
    server.Route("GET", std::string(asset.path), serve);
    if (asset.path == "/index.html") server.Route("GET", "/", serve);
  }
}

}  // namespace af
