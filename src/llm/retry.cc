#include "llm/retry.h"

#include <algorithm>
#include <cstdlib>

namespace af::llm {

bool IsRetryableHttpStatus(int status) {
  switch (status) {
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
    case 529:
      return true;
    default:
      return false;
  }
}

std::optional<std::chrono::milliseconds> ParseRetryAfter(
    const std::map<std::string, std::string>& headers) {
  auto parse = [](const std::string& s) -> std::optional<double> {
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || *end != '\0' || !(v >= 0)) return std::nullopt;
    return v;
  };
  if (auto it = headers.find("retry-after-ms"); it != headers.end()) {
    if (auto v = parse(it->second)) return std::chrono::milliseconds(static_cast<int64_t>(*v));
  }
  if (auto it = headers.find("retry-after"); it != headers.end()) {
    if (auto v = parse(it->second)) {
      return std::chrono::milliseconds(static_cast<int64_t>(*v * 1000.0));
    }
  }
  return std::nullopt;
}

std::chrono::milliseconds BackoffCap(const BackoffPolicy& policy, int retry) {
  int64_t cap = std::max<int64_t>(policy.base.count(), 0);
  for (int i = 0; i < retry && cap < policy.max.count(); ++i) cap *= 2;
  return std::chrono::milliseconds(std::min<int64_t>(cap, policy.max.count()));
}

std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int retry,
                                       std::optional<std::chrono::milliseconds> retry_after,
                                       std::mt19937_64& rng) {
  const int64_t cap = BackoffCap(policy, retry).count();
  const int64_t low = std::clamp<int64_t>(policy.base.count(), 0, cap);
  std::uniform_int_distribution<int64_t> dist(low, cap);
  std::chrono::milliseconds delay(dist(rng));
  if (retry_after && *retry_after > delay) delay = *retry_after;
  return delay;
}

}  // namespace af::llm
