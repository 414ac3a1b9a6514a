#pragma once
// Cross-cutting request policies of the HTTP API, as plain testable pieces:
// the per-key token-bucket rate limit, the per-address throttle of failed
// authentications, CORS, and ApiGate, the one admission path every protected
// route (REST and SSE alike) goes through.

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "af/api/auth.h"
#include "af/api/http_types.h"

namespace af {

// A token bucket per key: `per_minute` tokens, refilled continuously at
// per_minute/60 per second, each request takes one.
// Thread safety: Take() may be called from many threads (one mutex; the
// critical section is a map lookup and a few arithmetic operations).
class RateLimiter {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // per_minute <= 0 disables limiting (every Take is allowed).
  explicit RateLimiter(int per_minute, Clock clock = std::chrono::steady_clock::now);

  struct Decision {
    bool allowed = true;
    int limit = 0;                // X-RateLimit-Limit: requests per minute
    int remaining = 0;            // X-RateLimit-Remaining: whole tokens left after this request
    int reset_seconds = 0;        // X-RateLimit-Reset: seconds until the bucket is full again
    int retry_after_seconds = 0;  // Retry-After when refused: seconds until one token is back
  };
  Decision Take(const std::string& key);

  // The X-RateLimit-* headers of a decision (and Retry-After when refused).
  static std::vector<std::pair<std::string, std::string>> Headers(const Decision& d);

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point updated;
  };
  const int per_minute_;
  Clock clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

// CORS with an allow-list of origins ("https://app.example.com"; "*" allows
// any origin). Origins not on the list get no Access-Control-* header at all,
// so browsers refuse the cross-origin read; the server logs a warning naming
// the origin and api.cors_origins, once per origin (for the first 100).
class Cors {
 public:
  explicit Cors(std::vector<std::string> allowed_origins);

  // True when the request's Origin header is on the list.
  bool Allowed(const HttpRequest& request) const;
  // Adds Access-Control-Allow-Origin (+ Vary, Expose-Headers) to `response`
  // when the request's origin is allowed; otherwise leaves it unchanged.
  void Decorate(const HttpRequest& request, HttpResponse& response) const;
  // The answer to an OPTIONS preflight: 204 with Access-Control-Allow-Origin,
  // -Methods (`methods`, e.g. "GET, POST, OPTIONS"), -Headers, -Max-Age when
  // the origin is allowed; 204 with no Access-Control-* header otherwise.
  HttpResponse Preflight(const HttpRequest& request, const std::string& methods) const;

 private:
  std::vector<std::string> origins_;
  // Origins already logged as refused (a warning once per origin).
  mutable std::mutex logged_mu_;
  mutable std::set<std::string> logged_;
};

// Failed authentications per client address: after `max_failures` within
// `window`, the address is refused (429 with Retry-After) until the oldest of
// those failures is `window` old. Guessing keys is then bounded to
// max_failures per window per address; other addresses are not affected.
// Memory is bounded: at most max_failures stamps per address, and addresses
// whose failures all expired are dropped once more than 10,000 are tracked.
// Thread safety: all methods may be called from many threads (one mutex).
class AuthThrottle {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // max_failures <= 0 disables the throttle.
  explicit AuthThrottle(int max_failures = 10,
                        std::chrono::seconds window = std::chrono::seconds(60),
                        Clock clock = std::chrono::steady_clock::now);

  // Seconds until `address` may try again (>= 1), or 0 when it may now.
  int RetryAfterSeconds(const std::string& address);
  // Records one failed authentication of `address`.
  void Failed(const std::string& address);

  int max_failures() const { return max_failures_; }
  std::chrono::seconds window() const { return window_; }

 private:
  void PruneLocked(std::chrono::steady_clock::time_point now);
  const int max_failures_;
  const std::chrono::seconds window_;
  Clock clock_;
  std::mutex mu_;
  std::unordered_map<std::string, std::deque<std::chrono::steady_clock::time_point>> failures_;
};

// Options of ApiGate (the api.* settings).
struct ApiGateOptions {
  std::vector<std::string> cors_origins;  // api.cors_origins; empty = no CORS
  int rate_limit_per_minute = 600;        // api.rate_limit_per_minute; <= 0 = off
  int max_auth_failures = 10;             // per address and window; <= 0 = off
  std::chrono::seconds auth_failure_window{60};
  // Clock of the rate limit and the throttle (a seam for tests).
  std::function<std::chrono::steady_clock::time_point()> clock = std::chrono::steady_clock::now;
};

// The one admission path of the HTTP API: every route that needs a key, the
// JSON routes and the event streams alike, asks Admit() and sends what it
// answers, and every answer (success, refusal, stream, preflight) gets the
// same CORS and rate-limit headers from Decorate(). In order:
//   1. an address over the failed-authentication limit: 429;
//   2. the key: Authorization: Bearer, or ?access_token= only where the route
//      allows it (the event streams, whose browser client cannot send
//      headers); a key presented and refused counts against the address: 401;
//   3. the permission: 403;
//   4. the per-key rate limit: 429 with Retry-After.
// Thread safety: Admit/Decorate/Preflight may be called from many threads.
class ApiGate {
 public:
  // Identifies the key of a request (Auth::Authenticate in production);
  // `query_token` says whether ?access_token= may carry it.
  using Authenticator = std::function<Result<ApiKey>(const HttpRequest&, bool query_token)>;
  explicit ApiGate(Authenticator authenticate, ApiGateOptions options = {});
  // With Auth (borrowed; it must outlive the gate).
  explicit ApiGate(Auth& auth, ApiGateOptions options = {});

  struct Admission {
    std::optional<HttpResponse> refusal;  // set when the request must not proceed
    std::optional<ApiKey> key;            // the caller's key when authenticated
    std::vector<std::pair<std::string, std::string>> headers;  // X-RateLimit-*
  };
  // `permission` empty = a public route (always admitted, no headers).
  Admission Admit(const HttpRequest& request, std::string_view permission,
                  bool query_token = false);
  // Adds the admission's headers and the CORS headers to `response`.
  void Decorate(const HttpRequest& request, const Admission& admission,
                HttpResponse& response) const;
  // The headers Decorate would add (for a stream's response headers).
  std::vector<std::pair<std::string, std::string>> Headers(const HttpRequest& request,
                                                           const Admission& admission) const;
  // The answer to an OPTIONS preflight (see Cors::Preflight).
  HttpResponse Preflight(const HttpRequest& request, const std::string& methods) const;

 private:
  Authenticator authenticate_;
  AuthThrottle throttle_;
  RateLimiter limiter_;
  Cors cors_;
};

}  // namespace af
