#pragma once
// Cross-cutting request policies of the REST API, as plain testable pieces:
// the per-key token-bucket rate limit and CORS (SPEC §10).

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

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
// so browsers refuse the cross-origin read.
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
};

}  // namespace af
