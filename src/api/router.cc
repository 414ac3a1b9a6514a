#include "af/api/router.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <set>
#include <stdexcept>

#include "af/api/errors.h"

namespace af {
namespace {

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<std::string> Router::SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  std::string_view p = path;
  if (!p.empty() && p.front() == '/') p.remove_prefix(1);
  if (!p.empty() && p.back() == '/') p.remove_suffix(1);
  if (p.empty()) return parts;
  size_t pos = 0;
  while (true) {
    size_t slash = p.find('/', pos);
    parts.emplace_back(p.substr(pos, slash == std::string_view::npos ? p.npos : slash - pos));
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  return parts;
}

void Router::Add(std::string method, std::string pattern, Handler handler) {
  method = Upper(std::move(method));
  if (method.empty()) throw std::invalid_argument("route method is empty for '" + pattern + "'");
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route pattern '" + pattern + "' must start with '/'");
  }
  if (!handler) throw std::invalid_argument("route " + method + " " + pattern + " has no handler");
  Route route;
  route.method = method;
  route.pattern = pattern;
  route.handler = std::move(handler);
  std::set<std::string> names;
  for (std::string& part : SplitPath(pattern)) {
    Segment seg;
    if (!part.empty() && part.front() == ':') {
      seg.param = true;
      seg.text = part.substr(1);
      if (seg.text.empty()) {
        throw std::invalid_argument("route pattern '" + pattern + "' has an unnamed ':' segment");
      }
      if (!names.insert(seg.text).second) {
        throw std::invalid_argument("route pattern '" + pattern +
                                    "' repeats parameter ':" + seg.text + "'");
      }
    } else {
      seg.text = std::move(part);
    }
    route.segments.push_back(std::move(seg));
  }
  for (const Route& existing : routes_) {
    if (existing.method != route.method || existing.segments.size() != route.segments.size()) {
      continue;
    }
    bool same = true;
    for (size_t i = 0; i < route.segments.size() && same; ++i) {
      const Segment& a = existing.segments[i];
      const Segment& b = route.segments[i];
      same = a.param == b.param && (a.param || a.text == b.text);
    }
    if (same) {
      throw std::invalid_argument("route " + method + " " + pattern + " is registered twice (as '" +
                                  existing.pattern + "')");
    }
  }
  routes_.push_back(std::move(route));
}

bool Router::MatchSegments(const Route& route, const std::vector<std::string>& parts,
                           std::map<std::string, std::string>* params) {
  if (route.segments.size() != parts.size()) return false;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Segment& seg = route.segments[i];
    if (seg.param) {
      // An empty segment ("/features//tasks") is not a value for a parameter.
      if (parts[i].empty()) return false;
      if (params) (*params)[seg.text] = PercentDecode(parts[i], /*plus_is_space=*/false);
    } else if (seg.text != parts[i]) {
      return false;
    }
  }
  return true;
}

Router::Match Router::Find(const std::string& method_in, const std::string& path) const {
  const std::string method = Upper(method_in);
  const std::vector<std::string> parts = SplitPath(path);
  Match match;
  const Route* best = nullptr;
  const Route* best_get = nullptr;  // for the HEAD -> GET fallback
  std::vector<bool> best_rank, best_get_rank;
  std::set<std::string> allowed;
  for (const Route& route : routes_) {
    if (!MatchSegments(route, parts, nullptr)) continue;
    allowed.insert(route.method);
    // Literal-vs-parameter profile; lexicographically larger is more specific.
    std::vector<bool> rank;
    for (const Segment& s : route.segments) rank.push_back(!s.param);
    if (route.method == method && (!best || rank > best_rank)) {
      best = &route;
      best_rank = rank;
    }
    if (route.method == "GET" && (!best_get || rank > best_get_rank)) {
      best_get = &route;
      best_get_rank = rank;
    }
  }
  if (!best && method == "HEAD") best = best_get;
  if (best) {
    match.outcome = Outcome::kFound;
    match.handler = &best->handler;
    match.pattern = best->pattern;
    MatchSegments(*best, parts, &match.params);
    return match;
  }
  if (allowed.empty()) return match;  // kNotFound
  if (allowed.count("GET")) allowed.insert("HEAD");
  match.outcome = Outcome::kMethodNotAllowed;
  match.allowed.assign(allowed.begin(), allowed.end());
  return match;
}

HttpResponse Router::Dispatch(HttpRequest& request) const {
  return Dispatch(request, Find(request.method, request.path));
}

HttpResponse Router::Dispatch(HttpRequest& request, Match match) const {
  switch (match.outcome) {
    case Outcome::kNotFound:
      return ErrorResponse(NotFound("no route for " + request.method + " " + request.path,
                                    "check the URL; the API lives under /api/v1 and GET "
                                    "/openapi.json lists every route"),
                           request.request_id);
    case Outcome::kMethodNotAllowed: {
      std::string allow;
      for (const std::string& m : match.allowed) allow += (allow.empty() ? "" : ", ") + m;
      ApiError error(
          InvalidArgument("method " + request.method + " is not allowed on " + request.path,
                          "use one of: " + allow),
          ApiErrorCode::kMethodNotAllowed);
      error.details = {{"allowed_methods", match.allowed}};
      HttpResponse response = ErrorResponse(error, request.request_id);
      response.headers.emplace_back("Allow", allow);
      return response;
    }
    case Outcome::kFound:
      break;
  }
  request.path_params = std::move(match.params);
  std::string what;
  try {
    return (*match.handler)(request);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  return ErrorResponse(Internal("unexpected error while handling " + request.method + " " +
                                    request.path + ": " + what,
                                "this is a bug in the server; report it with the request id"),
                       request.request_id);
}

}  // namespace af
