#pragma once
// The OpenAPI 3 document served at GET /openapi.json: every route of the
// server (REST routes from ApiRouteSpecs(), their CORS preflights, health,
// metrics, the SSE streams, the dashboard and its embedded files).
// Pure; thread-safe.

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace af {

nlohmann::json OpenApiDocument();

// "/api/v1/features/:id" -> "/api/v1/features/{id}".
std::string OpenApiPath(const std::string& router_pattern);

// Every (METHOD, path) of a document, methods upper-case, sorted.
std::vector<std::pair<std::string, std::string>> OpenApiOperations(const nlohmann::json& doc);

}  // namespace af
