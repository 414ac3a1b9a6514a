#include "af/api/middleware.h"

#include <algorithm>
#include <cmath>

namespace af {

RateLimiter::RateLimiter(int per_minute, Clock clock)
    : per_minute_(per_minute), clock_(std::move(clock)) {}

RateLimiter::Decision RateLimiter::Take(const std::string& key) {
  Decision d;
  d.limit = per_minute_;
  if (per_minute_ <= 0) return d;
  const double capacity = per_minute_;
  const double per_second = capacity / 60.0;
  const auto now = clock_();
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = buckets_.try_emplace(key, Bucket{capacity, now});
  Bucket& b = it->second;
  if (!inserted) {
    const double elapsed = std::chrono::duration<double>(now - b.updated).count();
    if (elapsed > 0) b.tokens = std::min(capacity, b.tokens + elapsed * per_second);
    b.updated = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    d.allowed = true;
  } else {
    d.allowed = false;
    d.retry_after_seconds = std::max(1, static_cast<int>(std::ceil((1.0 - b.tokens) / per_second)));
  }
  d.remaining = static_cast<int>(std::floor(b.tokens));
  d.reset_seconds = static_cast<int>(std::ceil((capacity - b.tokens) / per_second));
  return d;
}

std::vector<std::pair<std::string, std::string>> RateLimiter::Headers(const Decision& d) {
  if (d.limit <= 0) return {};
  std::vector<std::pair<std::string, std::string>> h = {
      {"X-RateLimit-Limit", std::to_string(d.limit)},
      {"X-RateLimit-Remaining", std::to_string(d.remaining)},
      {"X-RateLimit-Reset", std::to_string(d.reset_seconds)}};
  if (!d.allowed) h.emplace_back("Retry-After", std::to_string(d.retry_after_seconds));
  return h;
}

Cors::Cors(std::vector<std::string> allowed_origins) : origins_(std::move(allowed_origins)) {
  // "https://x/" and "https://x" are the same origin; browsers send no slash.
  for (auto& o : origins_) {
    while (!o.empty() && o.back() == '/') o.pop_back();
  }
}

bool Cors::Allowed(const HttpRequest& request) const {
  const std::string origin = request.Header("origin");
  if (origin.empty()) return false;
  for (const auto& o : origins_) {
    if (o == "*" || o == origin) return true;
  }
  return false;
}

void Cors::Decorate(const HttpRequest& request, HttpResponse& response) const {
  if (!Allowed(request)) return;
  response.headers.emplace_back("Access-Control-Allow-Origin", request.Header("origin"));
  response.headers.emplace_back("Vary", "Origin");
  response.headers.emplace_back(
      "Access-Control-Expose-Headers",
      "X-Request-Id, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset");
}

HttpResponse Cors::Preflight(const HttpRequest& request, const std::string& methods) const {
  HttpResponse r;
  r.status = 204;
  r.content_type.clear();
  if (!Allowed(request)) return r;
  r.headers.emplace_back("Access-Control-Allow-Origin", request.Header("origin"));
  r.headers.emplace_back("Vary", "Origin");
  r.headers.emplace_back("Access-Control-Allow-Methods", methods);
  r.headers.emplace_back("Access-Control-Allow-Headers",
                         "Authorization, Content-Type, Last-Event-ID, X-Request-Id");
  r.headers.emplace_back("Access-Control-Max-Age", "600");
  return r;
}

}  // namespace af
