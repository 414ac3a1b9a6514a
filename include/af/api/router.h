#pragma once
// Method + path-pattern routing, independent of any HTTP library, so routing
// rules (404 vs 405, path parameters, precedence) are unit-tested directly.
//
// Patterns are '/'-separated segments; a segment ":name" captures one
// percent-decoded path segment into HttpRequest::path_params["name"]. When
// several patterns match, the most specific wins: comparing segment by
// segment, a literal beats a parameter ("/features/stats" beats
// "/features/:id"). A trailing '/' on the request path is ignored ("/health/"
// is "/health"). HEAD falls back to the GET handler when no HEAD route exists
// (the server then omits the body).
//
// Thread safety: Add() is for set-up only; Dispatch() and Find() are const and
// safe to call from many threads once set-up is over.

#include <map>
#include <string>
#include <vector>

#include "af/api/http_types.h"

namespace af {

class Router {
 public:
  Router() = default;
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Registers `handler` for `method` (e.g. "GET"; upper-cased) and `pattern`.
  // Throws std::invalid_argument for a malformed pattern (not starting with
  // '/', an empty ":" name, a repeated parameter name) or a duplicate
  // method+pattern: both are programming errors found at start-up.
  void Add(std::string method, std::string pattern, Handler handler);

  enum class Outcome { kFound, kNotFound, kMethodNotAllowed };
  struct Match {
    Outcome outcome = Outcome::kNotFound;
    const Handler* handler = nullptr;           // set when kFound; owned by the Router
    std::map<std::string, std::string> params;  // path parameters when kFound
    std::vector<std::string> allowed;           // methods of the path when kMethodNotAllowed
    std::string pattern;                        // the matched route's pattern when kFound
  };
  // Finds the handler for method + raw path (no query).
  Match Find(const std::string& method, const std::string& path) const;

  // Routes `request` (its path_params are filled in) and runs the handler.
  // Never throws: unknown path -> 404 NOT_FOUND, known path with another
  // method -> 405 METHOD_NOT_ALLOWED with an Allow header, a handler that
  // throws -> 500 INTERNAL; all with the JSON error body of api/errors.h.
  HttpResponse Dispatch(HttpRequest& request) const;
  // Same, for a match Find() already returned for this request.
  HttpResponse Dispatch(HttpRequest& request, Match match) const;

  size_t size() const { return routes_.size(); }

 private:
  struct Segment {
    std::string text;  // literal text, or the parameter name
    bool param = false;
  };
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<Segment> segments;
    Handler handler;
  };
  static std::vector<std::string> SplitPath(const std::string& path);
  static bool MatchSegments(const Route& route, const std::vector<std::string>& parts,
                            std::map<std::string, std::string>* params);

  std::vector<Route> routes_;
};

}  // namespace af
