#pragma once
// Framework-neutral HTTP request/response values. Handlers are plain functions
// from HttpRequest to HttpResponse, so they can be unit-tested without a
// server; only src/api/http_server.cc knows the HTTP library (RESTinio).

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace af {

struct HttpRequest {
  std::string method;      // upper case: "GET", "POST", ...
  std::string path;        // raw (still percent-encoded) path, no query: "/api/v1/features/f-1"
  std::string query;       // raw query string without '?': "status=running&limit=10"
  std::string body;        // the whole body (bounded by HttpServerOptions::max_body_bytes)
  std::string request_id;  // the id echoed in X-Request-Id and in error bodies
  std::map<std::string, std::string> headers;       // names lower-case; repeats joined by ", "
  std::map<std::string, std::string> query_params;  // percent-decoded; the first of repeats wins
  std::map<std::string, std::string> path_params;   // ":id" -> "f-1", percent-decoded
  // The peer's IP address ("127.0.0.1", "::1"); empty when unknown (tests).
  std::string remote_address;

  // The header's value, or `fallback` when absent. `name` must be lower-case.
  std::string Header(std::string_view name, std::string_view fallback = {}) const;
  // The query parameter's value, or `fallback` when absent.
  std::string Query(std::string_view name, std::string_view fallback = {}) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";  // empty: no Content-Type header
  std::string body;
  // Extra headers ("Retry-After", "Cache-Control", ...). The server always sets
  // X-Request-Id itself and ignores one given here; Content-Type and
  // Content-Length come from the fields above.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Handlers run on the server's I/O threads (possibly several at once): they
// must be thread-safe and should not block for long. An exception thrown by a
// handler becomes a 500 INTERNAL response; it never reaches the server.
using Handler = std::function<HttpResponse(const HttpRequest&)>;

// The standard reason phrase for an HTTP status ("Not Found"), or "Unknown".
std::string_view ReasonPhrase(int status);

// Decodes %XX escapes (and '+' as space when `plus_is_space`). Malformed
// escapes are kept literally rather than rejected.
std::string PercentDecode(std::string_view in, bool plus_is_space);

// Parses "a=1&b=x%20y&c" into {a:1, b:"x y", c:""}; the first of repeated keys wins.
std::map<std::string, std::string> ParseQueryString(std::string_view query);

}  // namespace af
