#pragma once
// The retry policy shared by the HTTP providers. Internal to the LLM layer.

#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <string>

namespace af::llm {

struct BackoffPolicy {
  std::chrono::milliseconds base{500};
  std::chrono::milliseconds max{30000};
};

// True for the HTTP statuses worth retrying: 429, 500, 502, 503, 504, 529.
bool IsRetryableHttpStatus(int status);

// The wait the server asks for, from `retry-after-ms` (milliseconds) or
// `retry-after` (seconds, possibly fractional); header names lower-case.
// nullopt when absent or unreadable (an HTTP date is not honoured).
std::optional<std::chrono::milliseconds> ParseRetryAfter(
    const std::map<std::string, std::string>& headers);

// The cap for retry number `retry` (0 = the first retry): base * 2^retry,
// never above policy.max.
std::chrono::milliseconds BackoffCap(const BackoffPolicy& policy, int retry);

// The wait before retry number `retry`: uniformly drawn between
// min(base, cap) and BackoffCap (jitter spreads the retries of many agents),
// and at least `retry_after` when the server asked for one.
std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int retry,
                                       std::optional<std::chrono::milliseconds> retry_after,
                                       std::mt19937_64& rng);

}  // namespace af::llm
