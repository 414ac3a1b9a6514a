#include "af/core/utc_time.h"

#include <gtest/gtest.h>

namespace af {
namespace {

TEST(UtcTime, FormatsInUtcWithAnyStrftimeFormat) {
  const int64_t t = 1'764'378'245'678;  // 2025-11-29T01:04:05.678Z
  EXPECT_EQ(FormatUtc(t, "%Y-%m-%dT%H:%M:%SZ"), "2025-11-29T01:04:05Z");
  EXPECT_EQ(FormatUtc(t, "%Y%m%d-%H%M%S"), "20251129-010405");
  EXPECT_EQ(FormatUtc(-1, "%Y-%m-%dT%H:%M:%SZ"), "1969-12-31T23:59:59Z");
}

TEST(UtcTime, StartOfDayIsTheMidnightAtOrBefore) {
  const int64_t midnight = 1'764'374'400'000;  // 2025-11-29T00:00:00Z
  EXPECT_EQ(StartOfUtcDayMs(midnight), midnight);
  EXPECT_EQ(StartOfUtcDayMs(midnight + 86'399'999), midnight);
  EXPECT_EQ(StartOfUtcDayMs(midnight - 1), midnight - 86'400'000);
  EXPECT_EQ(StartOfUtcDayMs(-1), -86'400'000);
  EXPECT_GT(UnixNowMs(), midnight);
}

}  // namespace
}  // namespace af
