#include "af/core/utc_time.h"

#include <chrono>
#include <ctime>

namespace af {

int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatUtc(int64_t unix_ms, const char* format) {
  // Floor, so a time just before the epoch is not rounded into it.
  std::time_t t = static_cast<std::time_t>(unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

int64_t StartOfUtcDayMs(int64_t unix_ms) {
  constexpr int64_t kDayMs = 86'400'000;
  const int64_t day = unix_ms >= 0 ? unix_ms / kDayMs : (unix_ms - kDayMs + 1) / kDayMs;
  return day * kDayMs;
}

}  // namespace af
