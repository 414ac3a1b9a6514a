#pragma once
// Wall-clock times in UTC, the one copy of the formatting and day arithmetic
// that file names, manifests, reports and daily cost totals share.

#include <cstdint>
#include <string>

namespace af {

// Unix milliseconds now (the system clock).
int64_t UnixNowMs();

// `unix_ms` in UTC through strftime's `format`, e.g. "%Y%m%d-%H%M%S" for a
// file name or "%Y-%m-%dT%H:%M:%SZ" for RFC 3339 (seconds; the milliseconds
// are dropped).
std::string FormatUtc(int64_t unix_ms, const char* format);

// The UTC midnight at or before `unix_ms` (the start of its day), in unix ms.
int64_t StartOfUtcDayMs(int64_t unix_ms);

}  // namespace af
