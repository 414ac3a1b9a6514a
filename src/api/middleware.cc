#include "af/api/middleware.h"

#include <algorithm>
#include <cmath>

#include "af/api/errors.h"
#include "af/core/log.h"

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
  // Refused: the browser only says "blocked by CORS policy", so the server
  // names the setting, once per origin (bounded: origins are client input).
  std::lock_guard<std::mutex> lock(logged_mu_);
  if (logged_.size() < 100 && logged_.insert(origin).second) {
    log::Get("api")->warn(
        "refused a cross-origin request from {}: it is not in api.cors_origins; add it there "
        "(or to AF_API_CORS_ORIGINS) if that page should use the API",
        origin.substr(0, 200));
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

// --- AuthThrottle ---------------------------------------------------------------

AuthThrottle::AuthThrottle(int max_failures, std::chrono::seconds window, Clock clock)
    : max_failures_(max_failures), window_(window), clock_(std::move(clock)) {}

int AuthThrottle::RetryAfterSeconds(const std::string& address) {
  if (max_failures_ <= 0) return 0;
  const auto now = clock_();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(address);
  if (it == failures_.end()) return 0;
  auto& stamps = it->second;
  while (!stamps.empty() && now - stamps.front() >= window_) stamps.pop_front();
  if (static_cast<int>(stamps.size()) < max_failures_) return 0;
  const double left = std::chrono::duration<double>(stamps.front() + window_ - now).count();
  return std::max(1, static_cast<int>(std::ceil(left)));
}

void AuthThrottle::Failed(const std::string& address) {
  if (max_failures_ <= 0) return;
  const auto now = clock_();
  std::lock_guard<std::mutex> lock(mu_);
  if (failures_.size() > 10000) PruneLocked(now);
  auto& stamps = failures_[address];
  stamps.push_back(now);
  while (static_cast<int>(stamps.size()) > max_failures_) stamps.pop_front();
}

void AuthThrottle::PruneLocked(std::chrono::steady_clock::time_point now) {
  for (auto it = failures_.begin(); it != failures_.end();) {
    if (it->second.empty() || now - it->second.back() >= window_) {
      it = failures_.erase(it);
    } else {
      ++it;
    }
  }
}

// --- ApiGate -------------------------------------------------------------------

ApiGate::ApiGate(Authenticator authenticate, ApiGateOptions options)
    : authenticate_(std::move(authenticate)),
      throttle_(options.max_auth_failures, options.auth_failure_window, options.clock),
      limiter_(options.rate_limit_per_minute, options.clock),
      cors_(std::move(options.cors_origins)) {}

ApiGate::ApiGate(Auth& auth, ApiGateOptions options)
    : ApiGate([&auth](const HttpRequest& r,
                      bool query_token) { return auth.Authenticate(r, query_token); },
              std::move(options)) {}

ApiGate::Admission ApiGate::Admit(const HttpRequest& request, std::string_view permission,
                                  bool query_token) {
  Admission a;
  if (permission.empty()) return a;
  const std::string& address = request.remote_address;
  if (int wait = throttle_.RetryAfterSeconds(address); wait > 0) {
    ApiError e(ResourceExhausted(
                   "too many failed authentications from " +
                       (address.empty() ? std::string("this address") : address) + ": " +
                       std::to_string(throttle_.max_failures()) + " in " +
                       std::to_string(throttle_.window().count()) + " s",
                   "check the API key (the first admin key is in <data_dir>/admin.key) and retry "
                   "after " +
                       std::to_string(wait) + " s (Retry-After)"),
               ApiErrorCode::kRateLimitExceeded);
    e.retry_after_seconds = wait;
    e.details = {{"retry_after_seconds", wait}};
    a.refusal = ErrorResponse(e, request.request_id);
    return a;
  }
  Result<ApiKey> key = authenticate_(request, query_token);
  if (!key.ok()) {
    // Only a key that was presented and refused counts: a request without
    // one is not a guess, and a store outage is not the client's fault.
    const bool presented =
        !request.Header("authorization").empty() || !request.Query("access_token").empty();
    if (presented && key.status().code() == Code::kUnauthenticated) throttle_.Failed(address);
    a.refusal = ErrorResponse(key.status(), request.request_id);
    return a;
  }
  if (Status s = Auth::Require(*key, permission); !s.ok()) {
    a.refusal = ErrorResponse(s, request.request_id);
    return a;
  }
  RateLimiter::Decision d = limiter_.Take(key->id);
  a.headers = RateLimiter::Headers(d);
  if (!d.allowed) {
    ApiError e(ResourceExhausted("rate limit exceeded: API key '" + key->name + "' may make " +
                                     std::to_string(d.limit) + " requests per minute",
                                 "retry after " + std::to_string(d.retry_after_seconds) +
                                     " s (Retry-After), or raise api.rate_limit_per_minute"),
               ApiErrorCode::kRateLimitExceeded);
    e.retry_after_seconds = d.retry_after_seconds;
    e.details = {{"limit", d.limit}, {"retry_after_seconds", d.retry_after_seconds}};
    a.refusal = ErrorResponse(e, request.request_id);
    // ErrorResponse already sets Retry-After.
    std::erase_if(a.headers, [](const auto& h) { return h.first == "Retry-After"; });
  }
  a.key = std::move(key).value();
  return a;
}

std::vector<std::pair<std::string, std::string>> ApiGate::Headers(
    const HttpRequest& request, const Admission& admission) const {
  HttpResponse scratch;
  scratch.headers = admission.headers;
  cors_.Decorate(request, scratch);
  return std::move(scratch.headers);
}

void ApiGate::Decorate(const HttpRequest& request, const Admission& admission,
                       HttpResponse& response) const {
  for (auto& h : Headers(request, admission)) response.headers.push_back(std::move(h));
}

HttpResponse ApiGate::Preflight(const HttpRequest& request, const std::string& methods) const {
  return cors_.Preflight(request, methods);
}

}  // namespace af
